//! Snapshots and MJPEG: the packet's JPEG (of the rendition asked for) as it is, never encoded again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::stream::viewer_fps;
use super::ws::Throttle;
use super::{ApiError, AppState};
use crate::camera::rendition::{Format, Rendition, RenditionError, Wanted};
use crate::camera::{Feed, FramePacket};
use crate::hub::{GetStatus, Subscribe};

/// A packet younger than this is served as the snapshot; an older one means nobody was watching,
/// and the next frame (which this request makes the camera encode) is awaited.
const FRESH: Duration = Duration::from_millis(1000);
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);
const BOUNDARY: &str = "havenframe";

/// The rendition a snapshot or MJPEG request asks for (`width`, `quality`, `overlay`).
fn rendition(query: &HashMap<String, String>) -> Result<Rendition, ApiError> {
    if query.contains_key("format") {
        return Err(RenditionError::FormatNotHere.into());
    }
    Ok(Rendition::from_query(query)?)
}

/// Follows a camera's feed, with the camera asked to make `rendition` while the guard lives.
async fn follow(state: &AppState, id: String, rendition: Rendition) -> Result<(watch::Receiver<Feed>, Wanted), ApiError> {
    state
        .hub
        .send(Subscribe { camera_id: Some(id.clone()) })
        .await?
        .map(|link| {
            let wanted = link.want(rendition, Format::Jpeg);
            (link.feed, wanted)
        })
        .ok_or_else(|| ApiError::NotFound(format!("unknown camera: {id}")))
}

/// The next packet after the one numbered `after` that has `rendition`, or `None` once the camera is
/// gone. The feed only ever holds the newest packet, so any other `seq` is a newer one: also when a
/// cluster camera moved to a node whose numbering starts again.
async fn next_packet(feed: &mut watch::Receiver<Feed>, after: u64, rendition: &Rendition) -> Option<Arc<FramePacket>> {
    loop {
        if let Feed::Frame(p) = &*feed.borrow_and_update() {
            if p.seq != after && p.jpeg_of(rendition).is_some() {
                return Some(p.clone());
            }
        }
        if matches!(&*feed.borrow(), Feed::Closed(_)) || feed.changed().await.is_err() {
            return None;
        }
    }
}

/// `GET /api/cameras/{id}/snapshot.jpg[?width=&quality=&overlay=]`: the latest annotated frame.
pub async fn snapshot(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let rendition = rendition(&query)?;
    let (mut feed, _wanted) = follow(&state, id.clone(), rendition).await?;
    let fresh = match &*feed.borrow() {
        Feed::Frame(p) if p.created.elapsed() < FRESH && p.jpeg_of(&rendition).is_some() => Some(p.clone()),
        _ => None,
    };
    let packet = match fresh {
        Some(p) => Some(p),
        // A cluster node that does not own the camera waits for the owner's next packet.
        None if state.cluster.is_some() || state.hub.send(GetStatus(id.clone())).await??.connected => {
            let after = match &*feed.borrow() {
                Feed::Frame(p) => p.seq,
                _ => 0,
            };
            tokio::time::timeout(SNAPSHOT_WAIT, next_packet(&mut feed, after, &rendition)).await.ok().flatten()
        }
        None => None,
    };
    match packet.and_then(|p| Some((p.frame_index, p.jpeg_of(&rendition)?))) {
        Some((frame_index, jpeg)) => Ok(HttpResponse::Ok()
            .content_type("image/jpeg")
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("X-Frame-Index", frame_index.to_string()))
            .body(jpeg)),
        None => {
            let status = state.hub.send(GetStatus(id.clone())).await??;
            let why = status.last_error.unwrap_or_else(|| format!("camera is {:?}", status.state).to_lowercase());
            Err(ApiError::Unavailable(format!("camera {id} has no frame to show: {why}")))
        }
    }
}

/// `GET /api/cameras/{id}/mjpeg?fps=N[&width=&quality=&overlay=]`: `multipart/x-mixed-replace`,
/// usable in a plain `<img>`.
/// The stream is produced only as fast as the client takes it, holding one packet at most.
pub async fn mjpeg(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let period = Duration::from_secs_f64(1.0 / viewer_fps(&query, state.stream.get().fps_limit, state.stream.get().max_fps)?);
    let rendition = rendition(&query)?;
    let (feed, wanted) = follow(&state, path.into_inner(), rendition).await?;
    let start = (feed, wanted, 0u64, Throttle::new(period));
    let parts = stream::unfold(start, move |(mut feed, wanted, last, mut throttle)| async move {
        let mut packet = next_packet(&mut feed, last, &rendition).await?;
        while !throttle.admits(packet.timestamp) {
            let fallback = throttle.fallback_at();
            tokio::select! {
                newer = next_packet(&mut feed, packet.seq, &rendition) => packet = newer?,
                _ = sleep_until(fallback) => break,
            }
        }
        throttle.take(packet.timestamp, Instant::now());
        let jpeg = packet.jpeg_of(&rendition)?;
        let header = format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len());
        let chunks = [Bytes::from(header), jpeg, Bytes::from_static(b"\r\n")];
        Some((stream::iter(chunks.map(Ok::<_, actix_web::Error>)), (feed, wanted, packet.seq, throttle)))
    })
    .flatten();
    Ok(HttpResponse::Ok()
        .content_type(format!("multipart/x-mixed-replace; boundary={BOUNDARY}"))
        .insert_header(("Cache-Control", "no-store"))
        .streaming(parts))
}
