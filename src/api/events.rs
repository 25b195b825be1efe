//! Events: the store's list and items, their snapshots and clips (with HTTP range requests so that
//! a browser can seek), and `WS /ws/alerts`, every event as it happens.
//!
//! Handlers take the process's `EventHub` as `web::Data<Arc<EventHub>>`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::CloseCode;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::api::ws::{close_reason, send_text, upgrade, Liveness, Step, Timeouts};
use crate::api::access::Caller;
use crate::api::{ApiError, AppState};
use crate::events::{ClipStatus, Event, EventFilter, EventHub, EventKind};

/// `GET /api/events` returns at most this many events.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

type Hub = web::Data<Arc<EventHub>>;

fn unix_time(query: &HashMap<String, String>, name: &str) -> Result<Option<f64>, ApiError> {
    match query.get(name).map(|s| s.trim()) {
        None => Ok(None),
        Some(raw) => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(ApiError::BadRequest(format!("{name} must be a unix time in seconds, got {raw:?}"))),
        },
    }
}

/// The filter `?camera=&kind=&class=&zone=&since=&until=&limit=&offset=` stands for.
pub fn parse_filter(query: &HashMap<String, String>) -> Result<EventFilter, ApiError> {
    let kind = match query.get("kind").map(String::as_str).filter(|s| !s.is_empty()) {
        None => None,
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
            ApiError::BadRequest(format!("kind must be person_detected, fall or object_detected, got {k:?}"))
        })?),
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::BadRequest(format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {raw:?}"))),
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| ApiError::BadRequest(format!("offset must be a whole number from 0, got {raw:?}")))?,
    };
    let filter = EventFilter {
        camera_id: query.get("camera").filter(|s| !s.is_empty()).cloned(),
        kind,
        class: query.get("class").filter(|s| !s.is_empty()).cloned(),
        zone: query.get("zone").filter(|s| !s.is_empty()).cloned(),
        since: unix_time(query, "since")?,
        until: unix_time(query, "until")?,
        limit: Some(limit),
        offset: Some(offset),
        camera_globs: Vec::new(),
    };
    if let (Some(s), Some(u)) = (filter.since, filter.until) {
        if s > u {
            return Err(ApiError::BadRequest(format!("since ({s}) is after until ({u})")));
        }
    }
    Ok(filter)
}

fn event_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| ApiError::NotFound(format!("no such event: {raw}")))
}

/// Runs a store query off the async workers.
async fn with_store<T: Send + 'static>(
    hub: &Hub,
    f: impl FnOnce(&crate::events::EventStore) -> Result<T, crate::events::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let hub = hub.get_ref().clone();
    web::block(move || f(&hub.store()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The event numbered `raw`, if the caller sees its camera: another camera's event is "no such
/// event", as one that does not exist.
pub(crate) async fn find(hub: &Hub, raw: &str, caller: &Caller) -> Result<Event, ApiError> {
    let id = event_id(raw)?;
    with_store(hub, move |s| s.get(id)).await?.filter(|e| caller.0.sees(&e.camera_id)).ok_or_else(|| ApiError::NotFound(format!("no such event: {id}")))
}

/// `GET /api/events?camera=&kind=&class=&zone=&since=&until=&limit=&offset=`: newest first; `total` counts every
/// event the filter selects, so a client pages with `offset` until it has them all. A caller limited
/// to some cameras gets their events only: the store selects by the caller's camera patterns.
pub async fn list(hub: Hub, caller: Caller, query: web::Query<HashMap<String, String>>) -> Result<HttpResponse, ApiError> {
    let filter = EventFilter { camera_globs: caller.0.cameras.patterns().to_vec(), ..parse_filter(&query)? };
    let offset = filter.offset.unwrap_or(0);
    let (total, events) = with_store(&hub, move |s| Ok((s.count(&filter)?, s.list(&filter)?))).await?;
    Ok(HttpResponse::Ok().json(json!({ "total": total, "offset": offset, "events": events })))
}

/// `GET /api/events/{id}`.
pub async fn get(hub: Hub, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(find(&hub, &path, &caller).await?))
}

/// A snapshot or clip, whole: from this node's disk, else (on a cluster node: another node wrote
/// it, or this node's retention deleted it) from the cluster's media store.
async fn read_media(hub: &Hub, state: Option<&web::Data<AppState>>, rel: &str, what: &str, path: &str) -> Result<Vec<u8>, ApiError> {
    let file = hub.store().resolve(rel);
    let local = web::block(move || std::fs::read(file)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    match (local, state.and_then(|s| s.cluster.as_ref())) {
        (Ok(bytes), _) => Ok(bytes),
        (Err(e), Some(cluster)) if e.kind() == std::io::ErrorKind::NotFound => match cluster.media(rel).await? {
            Some(bytes) => Ok(bytes),
            None => Err(ApiError::NotFound(format!("event {path}: {what} is neither on this node nor in the cluster's media store"))),
        },
        (Err(e), _) => Err(ApiError::NotFound(format!("event {path}: {what} unreadable: {e}"))),
    }
}

/// `GET /api/events/{id}/snapshot.jpg`.
pub async fn snapshot(hub: Hub, caller: Caller, state: Option<web::Data<AppState>>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let event = find(&hub, &path, &caller).await?;
    let rel = event.snapshot_path.ok_or_else(|| ApiError::NotFound(format!("event {path} has no snapshot")))?;
    let bytes = read_media(&hub, state.as_ref(), &rel, "snapshot", &path).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((header::CACHE_CONTROL, "private, max-age=86400"))
        .body(bytes))
}

/// A `Range` header for a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one we do not serve as a range (several ranges, another unit, bad syntax): the whole file.
    Full,
    /// Bytes `start..=end`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses one `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14.1.2).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match parse(b) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => RangeRequest::Partial(size.saturating_sub(n), size - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        // bytes=a-
        (false, true) => match parse(a) {
            Some(start) if start < size => RangeRequest::Partial(start, size - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start < size {
                    RangeRequest::Partial(start, end.min(size - 1))
                } else {
                    RangeRequest::Unsatisfiable
                }
            }
            _ => RangeRequest::Full,
        },
        (true, true) => RangeRequest::Full,
    }
}

fn read_range(path: &std::path::Path, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `GET /api/events/{id}/clip.mp4`, with single-range requests: 206 and `Content-Range`, 416 when
/// the range starts past the end.
pub async fn clip(req: HttpRequest, hub: Hub, caller: Caller, state: Option<web::Data<AppState>>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let event = find(&hub, &path, &caller).await?;
    let rel = event.clip_path.ok_or_else(|| {
        ApiError::NotFound(match (event.clip_status, &event.clip_error) {
            (ClipStatus::Recording, _) => format!("event {path}: the clip is still being recorded"),
            (ClipStatus::Failed, Some(why)) => format!("event {path} has no clip: {why}"),
            _ => format!("event {path} has no clip: none is recorded for it"),
        })
    })?;
    let file = hub.store().resolve(&rel);
    // Another node's clip (or one retention deleted here): whole from the media store, then ranged.
    let remote = match (std::fs::metadata(&file), state.as_ref().and_then(|s| s.cluster.as_ref())) {
        (Err(e), Some(_)) if e.kind() == std::io::ErrorKind::NotFound => Some(read_media(&hub, state.as_ref(), &rel, "clip", &path).await?),
        (Err(e), _) => return Err(ApiError::NotFound(format!("event {path}: clip unreadable: {e}"))),
        (Ok(_), _) => None,
    };
    let size = match &remote {
        Some(bytes) => bytes.len() as u64,
        None => std::fs::metadata(&file).map_err(|e| ApiError::NotFound(format!("event {path}: clip unreadable: {e}")))?.len(),
    };
    let range = parse_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), size);
    let (status, start, end) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size.saturating_sub(1)),
        RangeRequest::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        RangeRequest::Unsatisfiable => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .json(json!({ "error": format!("range not satisfiable: the clip has {size} bytes") })));
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let bytes = match remote {
        Some(mut bytes) => {
            bytes.truncate((start + len) as usize);
            bytes.drain(..start as usize);
            bytes
        }
        None => web::block(move || read_range(&file, start, len))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(format!("event {path}: clip unreadable: {e}")))?,
    };
    let mut res = HttpResponse::build(status);
    res.content_type("video/mp4")
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=86400"));
    if status == StatusCode::PARTIAL_CONTENT {
        res.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
    }
    Ok(res.body(bytes))
}

/// `WS /ws/alerts?camera=`: first the events still active (so a viewer joining late knows of a fall
/// in progress), then every event as it starts and ends, and again (same id, fields updated) when
/// it is acknowledged or becomes a long lie, each as one JSON text message (an [`Event`]). A viewer too slow to keep up skips the alerts it missed (`ALERT_CAPACITY`) rather
/// than holding them in memory.
pub async fn alerts(
    req: HttpRequest,
    body: web::Payload,
    hub: Hub,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<HttpResponse, actix_web::Error> {
    let camera = query.get("camera").filter(|c| !c.is_empty()).cloned();
    if let Some(c) = camera.as_ref().filter(|c| !caller.0.sees(c)) {
        return Err(ApiError::NotFound(format!("unknown camera: {c}")).into());
    }
    let (response, session, messages, pending) = upgrade(&req, body).await?;
    let (mut active, rx) = hub.subscribe(camera.as_deref());
    active.retain(|e| caller.0.sees(&e.camera_id));
    let timeouts = Timeouts::from(&*state.alerts.get());
    let wanted = Wanted { camera, scope: caller.0.cameras };
    actix_web::rt::spawn(run_alerts(session, messages, wanted, active, rx, pending, timeouts));
    Ok(response)
}

/// The alerts a socket gets: one camera's (`?camera=`) or all, within the caller's cameras.
struct Wanted {
    camera: Option<String>,
    scope: crate::auth::Scope,
}

impl Wanted {
    fn admits(&self, event: &Event) -> bool {
        self.camera.as_ref().is_none_or(|c| *c == event.camera_id) && self.scope.admits(&event.camera_id)
    }
}

async fn run_alerts(
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    wanted: Wanted,
    active: Vec<Event>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    pending: Arc<AtomicUsize>,
    timeouts: Timeouts,
) {
    let text = |event: &Event| serde_json::to_string(event).unwrap_or_default();
    let mut live = Liveness::new(&timeouts, pending).await;
    let mut step = Step::Continue;
    for event in &active {
        step = send_text(&mut session, text(event), timeouts.send_timeout).await;
        if !matches!(step, Step::Continue) {
            break;
        }
    }
    while matches!(step, Step::Continue) {
        step = tokio::select! {
            event = rx.recv() => match event {
                Ok(event) if !wanted.admits(&event) => Step::Continue,
                Ok(event) => send_text(&mut session, text(&event), timeouts.send_timeout).await,
                Err(RecvError::Lagged(n)) => {
                    log::warn!("alerts viewer fell behind: {n} alerts skipped");
                    Step::Continue
                }
                Err(RecvError::Closed) => {
                    Step::Close(close_reason(CloseCode::Away, "server shutting down"))
                }
            },
            _ = live.heartbeat.tick() => live.on_tick(&mut session).await,
            msg = messages.recv() => live.on_message(&mut session, msg).await,
        };
    }
    let Step::Close(reason) = step else { return };
    let _ = session.close(reason).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |h: &str| parse_range(Some(h), 1000);
        assert_eq!(parse_range(None, 1000), Full);
        assert_eq!(r("bytes=0-99"), Partial(0, 99));
        assert_eq!(r("bytes=500-"), Partial(500, 999));
        assert_eq!(r("bytes=-100"), Partial(900, 999));
        assert_eq!(r("bytes=-5000"), Partial(0, 999));
        assert_eq!(r("bytes=900-5000"), Partial(900, 999));
        assert_eq!(r("bytes=999-999"), Partial(999, 999));
        assert_eq!(r("bytes=1000-"), Unsatisfiable);
        assert_eq!(r("bytes=1000-1001"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Full);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(r("bytes=x-y"), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn filters() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let f = parse_filter(&q(&[("camera", "cam1"), ("kind", "fall"), ("since", "10"), ("until", "20.5"), ("limit", "5"), ("offset", "10")])).unwrap();
        assert_eq!(f.camera_id.as_deref(), Some("cam1"));
        assert_eq!((f.kind, f.since, f.until, f.limit, f.offset), (Some(EventKind::Fall), Some(10.0), Some(20.5), Some(5), Some(10)));
        assert_eq!(parse_filter(&q(&[])).unwrap().limit, Some(DEFAULT_LIMIT));
        assert_eq!(parse_filter(&q(&[])).unwrap().offset, Some(0));
        for bad in [
            &[("kind", "dance")][..],
            &[("since", "yesterday")],
            &[("limit", "0")],
            &[("limit", "5000")],
            &[("since", "5"), ("until", "1")],
            &[("offset", "-1")],
            &[("offset", "99999999999999999999")],
            &[("offset", "")],
            &[("limit", "")],
            &[("since", "")],
        ] {
            assert!(matches!(parse_filter(&q(bad)), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }

    use std::future::Future;
    use std::path::Path;

    use actix_web::dev::ServiceResponse;
    use actix_web::test::{call_service, init_service, read_body, read_body_json, TestRequest};
    use actix_web::App;

    use crate::events::store::tests::{event, TempDir};
    use crate::events::{now, ClipInfo, EventSettings};

    /// A fall (ended, with its clip of `clip` bytes and its snapshot under `dir`) and, after it, a
    /// person event without files: their ids.
    fn a_fall_with_its_files_then_a_person(hub: &EventHub, dir: &Path, clip: &[u8], t: f64) -> (i64, i64) {
        let store = hub.store();
        let fall = store.insert(&event("cam1", EventKind::Fall, t - 10.0), false).unwrap();
        store.set_ended(fall, t - 5.0).unwrap();
        std::fs::create_dir_all(dir.join("clips/cam1")).unwrap();
        std::fs::create_dir_all(dir.join("snapshots/cam1")).unwrap();
        std::fs::write(dir.join("clips/cam1/1-fall.mp4"), clip).unwrap();
        std::fs::write(dir.join("snapshots/cam1/1-fall.jpg"), b"\xff\xd8jpeg").unwrap();
        let info = ClipInfo { path: "clips/cam1/1-fall.mp4".into(), frames: 10, fps: 10.0, started_at: t - 13.0, bytes: 1000 };
        store.set_clip(fall, &info).unwrap();
        store.set_snapshot(fall, "snapshots/cam1/1-fall.jpg", 6).unwrap();
        let person = store.insert(&event("cam2", EventKind::PersonDetected, t - 1.0), false).unwrap();
        (fall, person)
    }

    async fn json(res: ServiceResponse) -> serde_json::Value {
        read_body_json(res).await
    }

    /// `GET /api/events`: newest first, filtered, paged with the total of every match; a bad
    /// filter is refused, naming it.
    async fn the_list_filters_and_pages<F: Fn(String) -> R, R: Future<Output = ServiceResponse>>(get: &F, person: i64) {
        let res = get("/api/events".into()).await;
        assert_eq!(res.status(), 200);
        let body = json(res).await;
        assert_eq!(body["total"], 2);
        assert_eq!(body["events"][0]["id"], person);
        assert_eq!(body["events"][1]["kind"], "fall");
        assert_eq!(body["events"][1]["phase"], "end");
        let body = json(get("/api/events?kind=fall&camera=cam1".into()).await).await;
        assert_eq!(body["total"], 1);
        // A page of one: the total still counts both, the second page holds the older one.
        let body = json(get("/api/events?limit=1&offset=1".into()).await).await;
        assert_eq!((body["total"].as_u64(), body["offset"].as_u64()), (Some(2), Some(1)));
        assert_eq!(body["events"].as_array().unwrap().len(), 1);
        assert_eq!(body["events"][0]["kind"], "fall");
        let res = get("/api/events?kind=nope".into()).await;
        assert_eq!(res.status(), 400);
        let body = json(res).await;
        assert!(body["error"].as_str().unwrap().contains("kind"));
    }

    /// `GET /api/events/{id}`: the event with its clip's status; an unknown or malformed id is 404.
    async fn one_event_by_its_id<F: Fn(String) -> R, R: Future<Output = ServiceResponse>>(get: &F, fall: i64, person: i64) {
        let body = json(get(format!("/api/events/{fall}")).await).await;
        assert_eq!((&body["clip_frames"], &body["clip_status"]), (&json!(10), &json!("ready")));
        let person_body = json(get(format!("/api/events/{person}")).await).await;
        assert_eq!((&person_body["clip_status"], &person_body["clip_error"]), (&json!("none"), &json!(null)));
        assert_eq!(get("/api/events/9999".into()).await.status(), 404);
        assert_eq!(get("/api/events/abc".into()).await.status(), 404);
    }

    /// The fall's snapshot is a JPEG; the person event has no snapshot, and no clip, saying why.
    async fn a_snapshot_and_a_clip_never_recorded<F: Fn(String) -> R, R: Future<Output = ServiceResponse>>(get: &F, fall: i64, person: i64) {
        let res = get(format!("/api/events/{fall}/snapshot.jpg")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("content-type").unwrap(), "image/jpeg");
        assert_eq!(get(format!("/api/events/{person}/snapshot.jpg")).await.status(), 404);
        let res = get(format!("/api/events/{person}/clip.mp4")).await;
        assert_eq!(res.status(), 404);
        let body = json(res).await;
        assert_eq!(body["error"], format!("event {person} has no clip: none is recorded for it"), "not \"still being recorded\"");
    }

    /// The fall's clip whole (`bytes`), then by ranges: a slice, a suffix, one past the end (416).
    async fn the_clip_whole_and_by_ranges<G, F, R>(get: &G, ranged: &F, fall: i64, bytes: &[u8])
    where
        G: Fn(String) -> R,
        F: Fn(String, &'static str) -> R,
        R: Future<Output = ServiceResponse>,
    {
        let uri = format!("/api/events/{fall}/clip.mp4");
        let res = get(uri.clone()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("accept-ranges").unwrap(), "bytes");
        assert_eq!(res.headers().get("content-type").unwrap(), "video/mp4");
        assert_eq!(read_body(res).await.to_vec(), bytes);

        let res = ranged(uri.clone(), "bytes=100-199").await;
        assert_eq!(res.status(), 206);
        assert_eq!(res.headers().get("content-range").unwrap(), "bytes 100-199/1000");
        assert_eq!(read_body(res).await.to_vec(), bytes[100..200].to_vec());
        let res = ranged(uri.clone(), "bytes=-10").await;
        assert_eq!(res.headers().get("content-range").unwrap(), "bytes 990-999/1000");
        assert_eq!(read_body(res).await.len(), 10);
        let res = ranged(uri, "bytes=1000-").await;
        assert_eq!(res.status(), 416);
        assert_eq!(res.headers().get("content-range").unwrap(), "bytes */1000");
    }

    #[actix_web::test]
    async fn list_get_snapshot_and_clip_with_ranges() {
        let dir = TempDir::new("api-events");
        let hub = EventHub::open(&EventSettings { data_dir: dir.0.clone(), ..EventSettings::default() }).unwrap();
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let (fall, person) = a_fall_with_its_files_then_a_person(&hub, &dir.0, &bytes, now());
        let app = init_service(
            App::new()
                .app_data(web::Data::new(hub.clone()))
                .route("/api/events", web::get().to(list))
                .route("/api/events/{id}", web::get().to(get))
                .route("/api/events/{id}/snapshot.jpg", web::get().to(snapshot))
                .route("/api/events/{id}/clip.mp4", web::get().to(clip)),
        )
        .await;
        let send = |uri: String, range: Option<&'static str>| {
            let req = TestRequest::get().uri(&uri);
            let req = match range {
                Some(range) => req.insert_header(("Range", range)),
                None => req,
            };
            call_service(&app, req.to_request())
        };
        let get = |uri: String| send(uri, None);
        let ranged = |uri: String, range: &'static str| send(uri, Some(range));

        the_list_filters_and_pages(&get, person).await;
        one_event_by_its_id(&get, fall, person).await;
        a_snapshot_and_a_clip_never_recorded(&get, fall, person).await;
        the_clip_whole_and_by_ranges(&get, &ranged, fall, &bytes).await;
    }
}
