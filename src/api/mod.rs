//! HTTP and WebSocket routes.

pub mod access;
pub mod accounts;
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
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
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
    /// Accounts, tokens, sessions: who may do what (`access::gate`).
    pub access: std::sync::Arc<access::Access>,
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
    Forbidden(String),
    /// Too many failed sign-ins: try again after this many seconds.
    #[error("too many failed sign-ins: try again in {0} s")]
    TooMany(u64),
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
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::TooMany(secs) = self {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        res.json(json!({ "error": self.to_string() }))
    }
}

/// Every route; what each needs from its caller is decided in one place, `access::need` (the gate
/// wraps the whole app).
pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, resource};
    cfg.service(
        web::scope("/api")
            .service(resource("/cameras").route(get().to(cameras::list)).route(post().to(cameras::create)).default_service(allow("GET, POST")))
            .service(
                resource("/cameras/{camera_id}")
                    .route(get().to(cameras::get))
                    .route(patch().to(cameras::update))
                    .route(delete().to(cameras::remove))
                    .default_service(allow("GET, PATCH, DELETE")),
            )
            .service(resource("/cameras/{camera_id}/snooze").route(post().to(cameras::snooze)).default_service(allow("POST")))
            .service(resource("/notify").route(get().to(notify::status)).default_service(allow("GET")))
            .service(resource("/cameras/{camera_id}/snapshot.jpg").route(get().to(media::snapshot)).default_service(allow("GET")))
            .service(resource("/cameras/{camera_id}/mjpeg").route(get().to(media::mjpeg)).default_service(allow("GET")))
            .service(resource("/engine").route(get().to(cameras::engine)).default_service(allow("GET")))
            .service(resource("/overlay").route(get().to(overlay::get)).default_service(allow("GET")))
            .service(resource("/cluster").route(get().to(cameras::cluster)).default_service(allow("GET")))
            .service(resource("/mqtt").route(get().to(metrics::mqtt)).default_service(allow("GET")))
            .service(resource("/events").route(get().to(events::list)).default_service(allow("GET")))
            .service(resource("/events/{id}").route(get().to(events::get)).default_service(allow("GET")))
            .service(resource("/events/{id}/ack").route(post().to(ack::ack)).default_service(allow("POST")))
            .service(resource("/events/{id}/snapshot.jpg").route(get().to(events::snapshot)).default_service(allow("GET")))
            .service(resource("/events/{id}/clip.mp4").route(get().to(events::clip)).default_service(allow("GET")))
            .service(
                resource("/session")
                    .route(get().to(accounts::whoami))
                    .route(post().to(accounts::sign_in))
                    .route(delete().to(accounts::sign_out))
                    .default_service(allow("GET, POST, DELETE")),
            )
            .service(resource("/users").route(get().to(accounts::users)).route(post().to(accounts::add_user)).default_service(allow("GET, POST")))
            .service(
                resource("/users/{name}")
                    .route(patch().to(accounts::update_user))
                    .route(delete().to(accounts::remove_user))
                    .default_service(allow("PATCH, DELETE")),
            )
            .service(resource("/users/{name}/sessions").route(delete().to(accounts::end_sessions)).default_service(allow("DELETE")))
            .service(resource("/tokens").route(get().to(accounts::tokens)).route(post().to(accounts::add_token)).default_service(allow("GET, POST")))
            .service(resource("/tokens/{name}").route(delete().to(accounts::revoke_token)).default_service(allow("DELETE")))
            .service(resource("/audit").route(get().to(accounts::audit)).default_service(allow("GET")))
            .service(resource("/openapi.json").route(get().to(openapi)).default_service(allow("GET"))),
    )
    .service(resource("/metrics").route(get().to(metrics::render)).default_service(allow("GET")))
    .service(resource("/").route(get().to(ui::index)).default_service(allow("GET")))
    .service(resource("/events").route(get().to(ui::events)).default_service(allow("GET")))
    .service(resource("/login").route(get().to(ui::login)).default_service(allow("GET")))
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
