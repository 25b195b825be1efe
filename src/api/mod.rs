//! HTTP and WebSocket routes.

pub mod ack;
pub mod cameras;
pub mod config;
pub mod events;
pub mod notify;
pub mod media;
pub mod metrics;
pub mod overlay;
pub mod stream;
pub mod ui;
pub mod ws;

use actix::Addr;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::hub::{HubError, StreamHub};
use crate::api::config::{AlertsSettings, ApiSettings, StreamSettings};
use crate::config::Live;

/// Shared by every handler.
pub struct AppState {
    pub hub: Addr<StreamHub>,
    /// `[stream]` and `[alerts]`, as the settings file has them now: each socket takes them when it opens.
    pub stream: Live<StreamSettings>,
    pub alerts: Live<AlertsSettings>,
    pub api: ApiSettings,
    /// `Some` on a node of a cluster (`[cluster]`).
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// Where event changes are notified (`GET /api/notify`, snoozes).
    pub notify: std::sync::Arc<crate::notify::Notifier>,
    /// `Some` with `[mqtt] url` set.
    pub mqtt: Option<std::sync::Arc<crate::mqtt::MqttLink>>,
}

/// Every failure the API reports, as a status code and a JSON body `{"error": "…"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::UnknownCamera(_) => ApiError::NotFound(e.to_string()),
            HubError::Duplicate(_) => ApiError::Conflict(e.to_string()),
            HubError::InvalidCamera(_) => ApiError::BadRequest(e.to_string()),
            HubError::Persist(_) | HubError::Reload(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError as E;
        match e {
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::camera::rendition::RenditionError> for ApiError {
    fn from(e: crate::camera::rendition::RenditionError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable("the camera registry is not answering".into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(json!({ "error": self.to_string() }))
    }
}

/// Requests need `Authorization: Bearer <token>` when a token is configured (or `?token=` where
/// `query_allowed`, for clients that cannot set a header).
pub fn authorize(req: &HttpRequest, api: &ApiSettings, query_allowed: bool) -> Result<(), ApiError> {
    if api.token.is_empty() {
        return Ok(());
    }
    let header = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let query = || {
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("token").cloned())
    };
    let given = header.map(str::to_string).or_else(|| query_allowed.then(query).flatten());
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), api.token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token".into())),
        None => Err(ApiError::Unauthorized("this request needs Authorization: Bearer <token>".into())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// With `api.protect_reads`, every read (GET) but the UI's own files needs the token (from the
/// header or `?token=`).
pub async fn guard_reads(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    let ui_file = path == "/" || path == "/events" || path.starts_with("/ui/");
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    let protected = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.api.protect_reads);
    guarded(req, next, protected && is_read && !ui_file, true).await
}

/// Every write route (`write(...)` in [`routes`]) needs the token whenever one is configured, from
/// the `Authorization` header only: a token in a URL ends up in logs and histories.
pub async fn guard_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    guarded(req, next, true, false).await
}

/// Calls `next` if the request need not or does carry the token; a 401 otherwise (which never
/// echoes a token, given or configured).
async fn guarded(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    needs_token: bool,
    query_allowed: bool,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if needs_token {
        let checked = match req.app_data::<web::Data<AppState>>() {
            Some(state) => authorize(req.request(), &state.api, query_allowed),
            None => Err(ApiError::Internal("the API settings are missing".into())),
        };
        if let Err(e) = checked {
            return Ok(req.into_response(e.error_response()).map_into_right_body());
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// A route that changes something: it goes through [`guard_writes`].
fn write(route: actix_web::Route) -> actix_web::Route {
    route.wrap(actix_web::middleware::from_fn(guard_writes))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, resource};
    cfg.service(
        web::scope("/api")
            .service(resource("/cameras").route(get().to(cameras::list)).route(write(post().to(cameras::create))).default_service(allow("GET, POST")))
            .service(
                resource("/cameras/{camera_id}")
                    .route(get().to(cameras::get))
                    .route(write(patch().to(cameras::update)))
                    .route(write(delete().to(cameras::remove)))
                    .default_service(allow("GET, PATCH, DELETE")),
            )
            .service(resource("/cameras/{camera_id}/snooze").route(write(post().to(cameras::snooze))).default_service(allow("POST")))
            .service(resource("/notify").route(get().to(notify::status)).default_service(allow("GET")))
            .service(resource("/cameras/{camera_id}/snapshot.jpg").route(get().to(media::snapshot)).default_service(allow("GET")))
            .service(resource("/cameras/{camera_id}/mjpeg").route(get().to(media::mjpeg)).default_service(allow("GET")))
            .service(resource("/engine").route(get().to(cameras::engine)).default_service(allow("GET")))
            .service(resource("/overlay").route(get().to(overlay::get)).default_service(allow("GET")))
            .service(resource("/cluster").route(get().to(cameras::cluster)).default_service(allow("GET")))
            .service(resource("/mqtt").route(get().to(metrics::mqtt)).default_service(allow("GET")))
            .service(resource("/events").route(get().to(events::list)).default_service(allow("GET")))
            .service(resource("/events/{id}").route(get().to(events::get)).default_service(allow("GET")))
            .service(resource("/events/{id}/ack").route(write(post().to(ack::ack))).default_service(allow("POST")))
            .service(resource("/events/{id}/snapshot.jpg").route(get().to(events::snapshot)).default_service(allow("GET")))
            .service(resource("/events/{id}/clip.mp4").route(get().to(events::clip)).default_service(allow("GET")))
            .service(resource("/openapi.json").route(get().to(openapi)).default_service(allow("GET"))),
    )
    .service(resource("/metrics").route(get().to(metrics::render)).default_service(allow("GET")))
    .service(resource("/").route(get().to(ui::index)).default_service(allow("GET")))
    .service(resource("/events").route(get().to(ui::events)).default_service(allow("GET")))
    .service(resource("/ui/{file}").route(get().to(ui::file)).default_service(allow("GET")))
    .service(resource("/ws/alerts").route(get().to(events::alerts)).default_service(allow("GET")))
    .service(resource("/ws/stream").route(get().to(stream::legacy)).default_service(allow("GET")))
    .service(resource("/ws/stream/{camera_id}").route(get().to(stream::camera)).default_service(allow("GET")))
    .default_service(web::to(not_found));
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no such route: {} {}", req.method(), req.path())).error_response()
}

/// A known route asked with a method it does not take: 405 with the methods it does take.
fn allow(methods: &'static str) -> actix_web::Route {
    web::to(move |req: actix_web::HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, methods))
            .json(json!({ "error": format!("{} {} is not allowed; allowed: {methods}", req.method(), req.path()) }))
    })
}

/// `GET /api/openapi.json`: the REST API as OpenAPI 3 (kept beside the code it describes).
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}
