//! What every WebSocket route (`/ws/stream`, `/ws/alerts`) shares: the upgrade with its bounded
//! incoming bytes, the heartbeat and close handling (`Liveness`), sends with a timeout, and the
//! timeouts themselves; and the token bucket (`Throttle`) that caps a viewer's frame rate (WebSocket
//! and MJPEG viewers alike).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, ProtocolError};
use bytestring::ByteString;
use futures_util::Stream;
use tokio::time::Instant;

use super::ApiError;
use crate::api::config::{AlertsSettings, StreamSettings};

/// A socket's timeouts: how often the server pings, how long a silent client may stay, how long one
/// send may wait (`[stream]` for viewers, `[alerts]` for `/ws/alerts`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    pub send_timeout: Duration,
}

impl Timeouts {
    fn from_secs(heartbeat: f64, client_timeout: f64, send_timeout: f64) -> Self {
        Self {
            heartbeat: Duration::from_secs_f64(heartbeat),
            client_timeout: Duration::from_secs_f64(client_timeout),
            send_timeout: Duration::from_secs_f64(send_timeout),
        }
    }
}

impl From<&StreamSettings> for Timeouts {
    fn from(s: &StreamSettings) -> Self {
        Self::from_secs(s.heartbeat_interval_secs, s.client_timeout_secs, s.send_timeout_secs)
    }
}

impl From<&AlertsSettings> for Timeouts {
    fn from(s: &AlertsSettings) -> Self {
        Self::from_secs(s.heartbeat_interval_secs, s.client_timeout_secs, s.send_timeout_secs)
    }
}

/// A WebSocket route asked without a valid upgrade: a 400 with a JSON body like every other error.
fn not_an_upgrade(e: actix_web::Error) -> ApiError {
    ApiError::BadRequest(format!("not a WebSocket upgrade request: {e}"))
}

/// Accepts the upgrade: the response to return, the session, the client's messages (frames capped at
/// `MAX_FRAME_BYTES`) and the counter of bytes towards an unfinished message (for `Liveness`).
pub(crate) async fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(HttpResponse, actix_ws::Session, actix_ws::MessageStream, Arc<AtomicUsize>), actix_web::Error> {
    let (body, pending) = bounded(req, body, MAX_PENDING_BYTES).await?;
    let (response, session, messages) = actix_ws::handle(req, body).map_err(not_an_upgrade)?;
    Ok((response, session, messages.max_frame_size(MAX_FRAME_BYTES), pending))
}

/// The largest frame a WebSocket client may send (it only ever needs pongs and a close).
const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The most a WebSocket client may send without completing a message.
const MAX_PENDING_BYTES: usize = 4 * MAX_FRAME_BYTES;

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
async fn bounded(req: &HttpRequest, body: web::Payload, limit: usize) -> Result<(web::Payload, Arc<AtomicUsize>), actix_web::Error> {
    let pending = Arc::new(AtomicUsize::new(0));
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Bounded { inner: body, pending: pending.clone(), limit });
    let mut payload = actix_web::dev::Payload::Stream { payload: stream };
    Ok((web::Payload::from_request(req, &mut payload).await?, pending))
}

pub(crate) fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
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
    pub(crate) async fn new(timeouts: &Timeouts, pending: Arc<AtomicUsize>) -> Self {
        let client_timeout = timeouts.client_timeout;
        let mut heartbeat = tokio::time::interval(timeouts.heartbeat);
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

/// Sends one binary message, waiting at most `timeout` for the socket to take it.
pub(crate) async fn send_binary(session: &mut actix_ws::Session, bytes: Bytes, timeout: Duration) -> Step {
    sent(tokio::time::timeout(timeout, session.binary(bytes)).await)
}

fn sent(outcome: Result<Result<(), actix_ws::Closed>, tokio::time::error::Elapsed>) -> Step {
    match outcome {
        Ok(Ok(())) => Step::Continue,
        Ok(Err(_closed)) => Step::Gone,
        Err(_elapsed) => Step::Close(close_reason(CloseCode::Policy, "viewer stopped reading")),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
