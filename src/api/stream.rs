//! WebSocket viewers: one task per socket, each throttled by its own FPS and holding only the
//! newest packet of its camera.
//!
//! Sessions run over `actix-ws` rather than `actix-web-actors`: the actor context's write buffer
//! has no bound and no way to see how full it is, so a viewer that stops reading would grow the
//! server's memory. `actix-ws` bounds its queue, but at 32 messages, seconds of video on a slow
//! link; so a viewer sends its next frame only once the connection has taken the previous one
//! (`Outgoing`), holds just the newest packet meanwhile, and is closed if the connection takes
//! nothing for `send_timeout_secs`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::CloseCode;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

use super::ws::{close_reason, send_binary, send_text, upgrade, Liveness, Step, Throttle, Timeouts};
use super::access::Caller;
use super::{ApiError, AppState};
use crate::camera::packet::Message as FrameMessage;
use crate::camera::rendition::{Format, Rendition};
use crate::camera::{Feed, FramePacket};
use crate::hub::{CameraLink, Subscribe};

/// `WS /ws/stream/{camera_id}`.
pub async fn camera(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, actix_web::Error> {
    open(req, body, state, Some(path.into_inner()), query.into_inner()).await
}

/// `WS /ws/stream`: the first configured camera, for clients of the single-camera server.
pub async fn legacy(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<HttpResponse, actix_web::Error> {
    // A caller limited to some cameras gets the first of theirs.
    let camera = match caller.0.cameras.is_all() {
        true => None,
        false => {
            let statuses = state.hub.send(crate::hub::Statuses).await.map_err(ApiError::from)?;
            let first = statuses.into_iter().find(|s| caller.0.sees(&s.camera_id));
            Some(first.ok_or_else(|| ApiError::NotFound("no cameras are configured".into()))?.camera_id)
        }
    };
    open(req, body, state, camera, query.into_inner()).await
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    camera_id: Option<String>,
    query: HashMap<String, String>,
) -> Result<HttpResponse, actix_web::Error> {
    let fps = viewer_fps(&query, state.stream.get().fps_limit, state.stream.get().max_fps)?;
    let view = (Rendition::from_query(&query).map_err(ApiError::from)?, Format::from_query(&query).map_err(ApiError::from)?);
    let link = state
        .hub
        .send(Subscribe { camera_id: camera_id.clone() })
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| match camera_id {
            Some(id) => ApiError::NotFound(format!("unknown camera: {id}")),
            None => ApiError::NotFound("no cameras are configured".into()),
        })?;
    let (response, session, messages, pending) = upgrade(&req, body).await?;
    let taken = Arc::new(Taken { all: AtomicBool::new(true), changed: Notify::new() });
    let response = response
        .map_body(|_, inner| Outgoing { inner, taken: taken.clone() })
        .map_into_boxed_body();
    let limits = Limits {
        period: Duration::from_secs_f64(1.0 / fps),
        timeouts: Timeouts::from(&*state.stream.get()),
    };
    log::debug!("[{}] viewer joined at {fps} fps", link.camera_id);
    actix_web::rt::spawn(run_viewer(link, view, session, messages, taken, limits, pending));
    Ok(response)
}

/// Whether the connection has taken everything the session queued (it writes a socket's response
/// only as fast as the socket drains, asking the body for more once its own buffer has room).
struct Taken {
    /// `false` from a frame's send until the connection has taken it.
    all: AtomicBool,
    changed: Notify,
}

impl Taken {
    fn all(&self) -> bool {
        self.all.load(Ordering::Acquire)
    }

    fn expect_more(&self) {
        self.all.store(false, Ordering::Release);
    }

    fn took_all(&self) {
        self.all.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    async fn wait(&self) {
        loop {
            let changed = self.changed.notified();
            if self.all() {
                return;
            }
            changed.await;
        }
    }
}

/// The WebSocket's response body, reporting through `Taken` each time it has nothing more to give.
struct Outgoing {
    inner: BoxBody,
    taken: Arc<Taken>,
}

impl MessageBody for Outgoing {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        if polled.is_pending() {
            this.taken.took_all();
        }
        polled
    }
}

/// `?fps=` if given (bounded by `max_fps`), else the server's default.
pub fn viewer_fps(query: &HashMap<String, String>, default: f64, max: f64) -> Result<f64, ApiError> {
    let Some(raw) = query.get("fps") else {
        return Ok(default);
    };
    match raw.parse::<f64>() {
        // The period 1/fps must be a Duration too: a rate so small that its period overflows one
        // (below about 5.4e-20) would panic the request.
        Ok(fps) if fps > 0.0 && fps <= max && Duration::try_from_secs_f64(1.0 / fps).is_ok() => Ok(fps),
        _ => Err(ApiError::BadRequest(format!("fps must be a number above 0 and at most {max}, got {raw:?}"))),
    }
}

struct Limits {
    period: Duration,
    timeouts: Timeouts,
}

async fn run_viewer(
    mut link: CameraLink,
    (rendition, format): (Rendition, Format),
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    taken: Arc<Taken>,
    limits: Limits,
    pending: Arc<AtomicUsize>,
) {
    let mut latest: Option<Arc<FramePacket>> = None;
    let mut last_sent_seq = 0u64;
    let mut throttle = Throttle::new(limits.period);
    // When the frame the connection has not yet taken was sent.
    let mut sent_at = Instant::now();
    let mut live = Liveness::new(&limits.timeouts, pending).await;
    // The camera encodes this viewer's rendition from its next frame on, until the viewer leaves.
    let _wanted = link.want(rendition, format);
    // A packet published before this viewer came counts as news, so the first frame goes out at once.
    link.feed.mark_changed();

    let step = loop {
        let has_unsent = latest.as_ref().is_some_and(|p| p.seq != last_sent_seq);
        let can_send = taken.all();
        let due = match &latest {
            Some(p) if throttle.admits(p.timestamp) => sent_at,
            _ => throttle.fallback_at(),
        };
        let step = tokio::select! {
            changed = link.feed.changed() => {
                if changed.is_err() {
                    break Step::Close(close_reason(CloseCode::Away, "camera removed"));
                }
                let feed = link.feed.borrow_and_update().clone();
                match feed {
                    Feed::Frame(packet) => latest = Some(packet),
                    Feed::Waiting => {}
                    Feed::Closed(why) => break Step::Close(close_reason(CloseCode::Away, why)),
                }
                Step::Continue
            }
            _ = sleep_until(due), if has_unsent && can_send => {
                let packet = latest.take().expect("has_unsent implies a packet");
                // A frame made before the camera knew of this viewer's rendition is passed over.
                match packet.message(&rendition, format) {
                    None => Step::Continue,
                    Some(message) => {
                        last_sent_seq = packet.seq;
                        sent_at = Instant::now();
                        throttle.take(packet.timestamp, sent_at);
                        taken.expect_more();
                        match message {
                            FrameMessage::Text(text) => send_text(&mut session, text, limits.timeouts.send_timeout).await,
                            FrameMessage::Binary(bytes) => send_binary(&mut session, bytes, limits.timeouts.send_timeout).await,
                        }
                    }
                }
            }
            took = tokio::time::timeout_at(sent_at + limits.timeouts.send_timeout, taken.wait()), if !can_send => match took {
                Ok(()) => Step::Continue,
                Err(_elapsed) => Step::Close(close_reason(CloseCode::Policy, "viewer stopped reading")),
            },
            _ = live.heartbeat.tick() => live.on_tick(&mut session).await,
            msg = messages.recv() => live.on_message(&mut session, msg).await,
        };
        if !matches!(step, Step::Continue) {
            break step;
        }
    };
    let Step::Close(reason) = step else { return };
    log::debug!("[{}] viewer left: {:?}", link.camera_id, reason);
    let _ = session.close(reason).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str) -> HashMap<String, String> {
        HashMap::from([("fps".to_string(), v.to_string())])
    }

    #[test]
    fn fps_defaults_and_bounds() {
        assert_eq!(viewer_fps(&HashMap::new(), 10.0, 30.0).unwrap(), 10.0);
        assert_eq!(viewer_fps(&q("2.5"), 10.0, 30.0).unwrap(), 2.5);
        for bad in ["0", "-1", "31", "abc", "NaN", "", "1e-20", "5e-324"] {
            assert!(viewer_fps(&q(bad), 10.0, 30.0).is_err(), "{bad} accepted");
        }
    }
}
