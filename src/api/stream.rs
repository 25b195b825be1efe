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
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::Stream;
use actix_ws::{CloseCode, CloseReason, Message, ProtocolError};
use bytestring::ByteString;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

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
) -> Result<HttpResponse, actix_web::Error> {
    open(req, body, state, None, query.into_inner()).await
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    camera_id: Option<String>,
    query: HashMap<String, String>,
) -> Result<HttpResponse, actix_web::Error> {
    let fps = viewer_fps(&query, state.stream.fps_limit, state.stream.max_fps)?;
    let bad = |e: crate::camera::rendition::RenditionError| ApiError::BadRequest(e.to_string());
    let view = (Rendition::from_query(&query).map_err(bad)?, Format::from_query(&query).map_err(bad)?);
    let link = state
        .hub
        .send(Subscribe { camera_id: camera_id.clone() })
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| match camera_id {
            Some(id) => ApiError::NotFound(format!("unknown camera: {id}")),
            None => ApiError::NotFound("no cameras are configured".into()),
        })?;
    let (body, pending) = bounded(&req, body, MAX_PENDING_BYTES).await?;
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(super::not_an_upgrade)?;
    let taken = Arc::new(Taken { all: AtomicBool::new(true), changed: Notify::new() });
    let response = response
        .map_body(|_, inner| Outgoing { inner, taken: taken.clone() })
        .map_into_boxed_body();
    let limits = Limits {
        period: Duration::from_secs_f64(1.0 / fps),
        heartbeat: Duration::from_secs_f64(state.stream.heartbeat_interval_secs),
        client_timeout: Duration::from_secs_f64(state.stream.client_timeout_secs),
        send_timeout: Duration::from_secs_f64(state.stream.send_timeout_secs),
    };
    log::debug!("[{}] viewer joined at {fps} fps", link.camera_id);
    let messages = messages.max_frame_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(run_viewer(link, view, session, messages, taken, limits, pending));
    Ok(response)
}

/// The largest frame a WebSocket client may send (it only ever needs pongs and a close).
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The most a WebSocket client may send without completing a message.
pub(crate) const MAX_PENDING_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// The socket's incoming bytes, cut off with an error once more than `limit` of them have arrived
/// without making a complete message. actix-http compares a frame's declared length with the limit
/// only once the whole frame has arrived, so without this a client that declares a huge frame grows
/// the server's memory as fast as it can send (1 GiB/s on loopback) until the heartbeat closes it.
struct Bounded {
    inner: web::Payload,
    pending: Arc<AtomicUsize>,
    limit: usize,
}

impl Stream for Bounded {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let pending = self.pending.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
                if pending > self.limit {
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            other => other,
        }
    }
}

/// `body` wrapped in `Bounded`; the session resets the counter each time a message comes out.
/// Every WebSocket route (`/ws/stream`, `/ws/alerts`) takes its body through this.
pub(crate) async fn bounded(req: &HttpRequest, body: web::Payload, limit: usize) -> Result<(web::Payload, Arc<AtomicUsize>), actix_web::Error> {
    let pending = Arc::new(AtomicUsize::new(0));
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Bounded { inner: body, pending: pending.clone(), limit });
    let mut payload = actix_web::dev::Payload::Stream { payload: stream };
    Ok((web::Payload::from_request(req, &mut payload).await?, pending))
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

/// How many frames a viewer's throttle may save up (see `Throttle`).
const BURST: f64 = 1.5;
/// How early (in periods of the viewer's rate) a frame may be captured and still go out.
const SLACK: f64 = 0.25;

/// A viewer's frame-rate cap: a token bucket that fills by one frame per period of the frames'
/// *capture* times and holds at most `BURST`; a frame goes out the moment it arrives if its capture
/// time earns (nearly) a whole token, and otherwise waits for a newer one.
///
/// Counted in send times, as it first was, a viewer whose limit equals its camera's rate (the
/// default: 10 and 10) locked on to the slowest frame it had seen: a frame published late (a slow
/// inference) was sent late, the next one, on time, found less than a token and waited a period
/// after it, and so on for good, since at equal rates nothing refills the bucket (100 viewers with
/// AI on: p50 124-132 ms against inference 58-64 ms). Capture times do not carry the processing
/// jitter, so at equal rates every frame earns its token.
/// A frame refused by the bucket still goes out two periods after the last one if nothing newer has
/// come (a camera that stalls or ends shows its newest frame; one period would let the publishing
/// jitter of a faster camera send frames early).
pub struct Throttle {
    period: f64,
    tokens: f64,
    /// The capture time and send time of the last frame sent.
    last: Option<(f64, Instant)>,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self { period: period.as_secs_f64(), tokens: 0.0, last: None }
    }

    fn earned(&self, captured: f64) -> f64 {
        match self.last {
            Some((last, _)) => (self.tokens + (captured - last) / self.period).min(BURST),
            None => 1.0,
        }
    }

    /// Whether a frame captured at `captured` (seconds, the packet's timestamp) may go out at once.
    pub fn admits(&self, captured: f64) -> bool {
        self.earned(captured) >= 1.0 - SLACK
    }

    /// When a frame that [`Throttle::admits`] refuses goes out anyway.
    pub fn fallback_at(&self) -> Instant {
        match self.last {
            // A rate small enough for its period to pass the clock's range means "not in our lifetime".
            Some((_, at)) => Duration::try_from_secs_f64(2.0 * self.period)
                .ok()
                .and_then(|p| at.checked_add(p))
                .unwrap_or_else(|| at + Duration::from_secs(1 << 32)),
            None => Instant::now(),
        }
    }

    /// The frame captured at `captured` went out at `now`.
    pub fn take(&mut self, captured: f64, now: Instant) {
        self.tokens = (self.earned(captured) - 1.0).max(-1.0);
        self.last = Some((captured, now));
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
    heartbeat: Duration,
    client_timeout: Duration,
    send_timeout: Duration,
}

fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason { code, description: Some(description.to_string()) })
}

/// What every WebSocket session does besides its own traffic: ping the client, answer its pings, hear
/// its close, and close it when it has been silent too long. Shared by viewers and `/ws/alerts`.
pub(crate) struct Liveness {
    last_heard: Instant,
    pub(crate) heartbeat: tokio::time::Interval,
    client_timeout: Duration,
    /// Bytes received towards an unfinished message (see `bounded`); reset by every whole message.
    pending: Arc<AtomicUsize>,
}

/// What a session loop does after `Liveness` has looked at an event.
pub(crate) enum Step {
    Continue,
    /// Close with this reason (none: the client closed).
    Close(Option<CloseReason>),
    /// The socket is gone; nothing to close.
    Gone,
}

impl Liveness {
    pub(crate) async fn new(every: Duration, client_timeout: Duration, pending: Arc<AtomicUsize>) -> Self {
        let mut heartbeat = tokio::time::interval(every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        Self { last_heard: Instant::now(), heartbeat, client_timeout, pending }
    }

    /// A heartbeat tick: close a silent client, ping the others.
    pub(crate) async fn on_tick(&mut self, session: &mut actix_ws::Session) -> Step {
        if self.last_heard.elapsed() > self.client_timeout {
            return Step::Close(close_reason(CloseCode::Policy, "heartbeat timeout"));
        }
        match session.ping(b"haven").await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Gone,
        }
    }

    /// A message from the client (or the end of its stream).
    pub(crate) async fn on_message(
        &mut self,
        session: &mut actix_ws::Session,
        msg: Option<Result<Message, ProtocolError>>,
    ) -> Step {
        self.last_heard = Instant::now();
        self.pending.store(0, Ordering::Relaxed);
        match msg {
            Some(Ok(Message::Ping(bytes))) => match session.pong(&bytes).await {
                Ok(()) => Step::Continue,
                Err(_) => Step::Gone,
            },
            Some(Ok(Message::Close(_))) | None => Step::Close(None),
            Some(Ok(_)) => Step::Continue,
            Some(Err(e)) => Step::Close(close_reason(CloseCode::Protocol, &e.to_string())),
        }
    }
}

/// Sends one text message, waiting at most `timeout` for the socket to take it.
pub(crate) async fn send_text(session: &mut actix_ws::Session, text: impl Into<ByteString>, timeout: Duration) -> Step {
    sent(tokio::time::timeout(timeout, session.text(text)).await)
}

async fn send_binary(session: &mut actix_ws::Session, bytes: Bytes, timeout: Duration) -> Step {
    sent(tokio::time::timeout(timeout, session.binary(bytes)).await)
}

fn sent(outcome: Result<Result<(), actix_ws::Closed>, tokio::time::error::Elapsed>) -> Step {
    match outcome {
        Ok(Ok(())) => Step::Continue,
        Ok(Err(_closed)) => Step::Gone,
        Err(_elapsed) => Step::Close(close_reason(CloseCode::Policy, "viewer stopped reading")),
    }
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
    let mut live = Liveness::new(limits.heartbeat, limits.client_timeout, pending).await;
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
                            FrameMessage::Text(text) => send_text(&mut session, text, limits.send_timeout).await,
                            FrameMessage::Binary(bytes) => send_binary(&mut session, bytes, limits.send_timeout).await,
                        }
                    }
                }
            }
            took = tokio::time::timeout_at(sent_at + limits.send_timeout, taken.wait()), if !can_send => match took {
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

    /// Frames as (capture, arrival) in ms; the viewer sends the newest whenever the throttle allows.
    /// Returns (capture, arrival, sent) per frame sent.
    fn simulate(period_ms: u64, frames: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
        let t0 = Instant::now();
        let ms = |at: Instant| at.saturating_duration_since(t0).as_millis() as u64;
        let mut throttle = Throttle::new(Duration::from_millis(period_ms));
        let mut sent = Vec::new();
        let mut pending: Option<(u64, u64)> = None;
        let mut next = frames.iter().copied().peekable();
        while next.peek().is_some() || pending.is_some() {
            let send_at = match pending {
                Some((captured, arrived)) if throttle.admits(captured as f64 / 1000.0) => Some(arrived),
                Some((_, arrived)) => Some(ms(throttle.fallback_at()).max(arrived)),
                None => None,
            };
            match (send_at, next.peek()) {
                (Some(at), Some(&(_, a))) if a < at => pending = next.next(),
                (Some(at), _) => {
                    let (captured, arrived) = pending.take().unwrap();
                    throttle.take(captured as f64 / 1000.0, t0 + Duration::from_millis(at));
                    sent.push((captured, arrived, at));
                }
                (None, _) => pending = next.next(),
            }
        }
        sent
    }

    /// A camera whose frames are published `delay` ms after capture, plus a jitter of up to `jitter`
    /// ms (inference time varies; frames stay in order).
    fn camera(period_ms: u64, count: u64, delay: u64, jitter: u64) -> Vec<(u64, u64)> {
        (0..count).map(|i| (1000 + i * period_ms, 1000 + i * period_ms + delay + (i * 37 % (jitter + 1)))).collect()
    }

    #[test]
    fn a_viewer_as_fast_as_its_camera_gets_every_frame_without_waiting() {
        // 10 fps, published 55-100 ms after capture.
        let frames = camera(100, 300, 55, 45);
        let sent = simulate(100, &frames);
        assert_eq!(sent.len(), frames.len());
        let worst = sent.iter().map(|(_, a, s)| s - a).max().unwrap();
        assert_eq!(worst, 0, "a frame waited {worst} ms");
    }

    #[test]
    fn a_faster_camera_is_capped_at_the_viewers_rate_never_closer_than_half_a_period() {
        // 30 fps camera, viewer at 10 fps, for 10 s.
        let sent = simulate(100, &camera(100 / 3, 300, 10, 20));
        assert!((99..=102).contains(&sent.len()), "{} frames in 10 s", sent.len());
        let closest = sent.windows(2).map(|w| w[1].0 - w[0].0).min().unwrap();
        assert!(closest >= 50, "two frames captured {closest} ms apart");
        // (the last frame has nothing newer after it: it goes out by the stall rule, later)
        let waited = sent[..sent.len() - 1].iter().map(|(_, a, s)| s - a).max().unwrap();
        assert_eq!(waited, 0, "a frame waited {waited} ms");
    }

    #[test]
    fn a_camera_that_stops_still_shows_its_newest_frame() {
        // Two frames 20 ms apart, then nothing: the second goes out two periods after the first.
        let sent = simulate(100, &[(0, 60), (20, 80)]);
        assert_eq!(sent, vec![(0, 60, 60), (20, 80, 260)]);
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
