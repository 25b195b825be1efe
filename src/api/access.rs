//! Who is asking and what they may do: the one middleware every request passes ([`gate`]).
//!
//! It finds the caller ([`Access::identify`]: a bearer token — `api.token` or an API token — or a
//! session cookie, or nobody), decides from the route alone what the request needs ([`need`]), and
//! answers 401 (no valid credentials), 403 (a role's forbidden request) or 404 (a camera outside the
//! caller's cameras: its name is not confirmed) before any handler runs. Handlers that list cameras
//! or events take the caller ([`Caller`]) to leave out what it may not see. Every change that
//! succeeds is written to the audit log with who made it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, AppState};
use crate::auth::throttle::Throttle;
use crate::auth::proxies::TrustedProxies;
use crate::auth::{constant_time_eq, AccountStore, AuthSettings, Identity, Role};

/// The session cookie's name.
pub const COOKIE: &str = "haven_session";

/// The accounts, the legacy token and the sign-in throttle, shared by every request.
pub struct Access {
    pub store: Arc<AccountStore>,
    /// `api.token`: an admin token, as before accounts.
    legacy_token: String,
    /// `api.protect_reads`: without accounts, reads need `api.token` too.
    protect_reads: bool,
    pub settings: AuthSettings,
    pub throttle: Throttle,
    proxies: TrustedProxies,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the login page and its files, signing in and out, unknown routes (404) and
    /// methods a route does not take (405).
    Open,
    /// A caller with at least this role.
    Role(Role),
    /// A caller who sees every camera (views that name all cameras: cluster, notify targets, MQTT).
    AllCameras,
}

/// What each route needs, by method and route pattern: the one table of permissions.
pub fn need(method: &Method, pattern: Option<&str>) -> Need {
    use Role::*;
    let Some(pattern) = pattern else { return Need::Open };
    let read = matches!(*method, Method::GET | Method::HEAD);
    match (method.as_str(), pattern) {
        (_, "/ui/{file}" | "/login" | "/api/session") => Need::Open,
        (_, "/api/users" | "/api/users/{name}" | "/api/users/{name}/sessions" | "/api/tokens" | "/api/tokens/{name}" | "/api/audit") => Need::Role(Admin),
        (_, "/api/cluster" | "/api/notify" | "/api/mqtt") if read => Need::AllCameras,
        _ if read => Need::Role(Viewer),
        ("POST", "/api/events/{id}/ack" | "/api/cameras/{camera_id}/snooze") => Need::Role(Operator),
        ("POST", "/api/cameras") | ("PATCH" | "DELETE", "/api/cameras/{camera_id}") => Need::Role(Admin),
        _ => Need::Open,
    }
}

/// How a request proved who it is: the credentials found, not yet checked.
enum Credentials {
    Bearer(String),
    Session(String),
    None,
}

impl Access {
    pub fn new(store: Arc<AccountStore>, api: &super::config::ApiSettings, settings: AuthSettings) -> Self {
        let throttle = Throttle::new(settings.failed_sign_ins_per_minute);
        // validated at start-up with the rest of the settings
        let proxies = TrustedProxies::parse(&settings.trusted_proxies).unwrap_or_default();
        Self { store, legacy_token: api.token.clone(), protect_reads: api.protect_reads, settings, throttle, proxies }
    }

    /// Whether anyone may do anything without credentials: no account, no `api.token`.
    pub fn is_open(&self) -> Result<bool, ApiError> {
        Ok(self.legacy_token.is_empty() && !self.has_accounts()?)
    }

    pub fn has_accounts(&self) -> Result<bool, ApiError> {
        self.store.has_users().map_err(|e| ApiError::Internal(e.to_string()))
    }

    fn credentials(req: &HttpRequest, query_allowed: bool) -> Credentials {
        // Another scheme (`Basic …` from a proxy) is no credential of ours, as before accounts.
        let header = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if let Some(t) = header {
            return Credentials::Bearer(t.to_string());
        }
        if query_allowed {
            let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok();
            if let Some(t) = query.and_then(|q| q.get("token").cloned()) {
                return Credentials::Bearer(t);
            }
        }
        match req.cookie(COOKIE) {
            Some(c) => Credentials::Session(c.value().to_string()),
            None => Credentials::None,
        }
    }

    /// Who is asking: `Ok(None)` for nobody, an error (401) for credentials that are not valid. A
    /// token in the URL (`?token=`) counts for reads only: in a URL it ends up in logs and histories.
    pub fn identify(&self, req: &HttpRequest) -> Result<Option<Identity>, ApiError> {
        let reading = matches!(*req.method(), Method::GET | Method::HEAD);
        let internal = |e: crate::auth::StoreError| ApiError::Internal(e.to_string());
        match Self::credentials(req, reading) {
            Credentials::Bearer(t) if !self.legacy_token.is_empty() && constant_time_eq(t.as_bytes(), self.legacy_token.as_bytes()) => {
                Ok(Some(Identity::legacy_token()))
            }
            Credentials::Bearer(t) => match self.store.token(&t).map_err(internal)? {
                Some(who) => Ok(Some(who)),
                // An open server (loopback only) ignores a token it does not know, as before.
                None if self.is_open()? => Ok(self.nobody(reading)),
                None => Err(ApiError::Unauthorized("invalid bearer token".into())),
            },
            Credentials::Session(s) => match self.store.session(&s).map_err(internal)? {
                Some(who) => Ok(Some(who)),
                None if self.has_accounts()? => Err(ApiError::Unauthorized("the session has ended or is not this server's: sign in again".into())),
                None => Ok(self.nobody(reading)),
            },
            Credentials::None if self.has_accounts()? => Ok(None),
            Credentials::None => Ok(self.nobody(reading)),
        }
    }

    /// The caller without credentials on a server without accounts: everything when no token is
    /// set either (loopback only), reads unless they are protected, nothing else.
    fn nobody(&self, reading: bool) -> Option<Identity> {
        match (self.legacy_token.is_empty(), self.protect_reads && reading) {
            (true, _) => Some(Identity::open()),
            (false, true) => None,
            (false, false) => Some(Identity::reader()),
        }
    }

    /// Checks `need` against the caller; `Ok` lets the request through.
    fn admit(&self, req: &HttpRequest, need: Need) -> Result<Option<Identity>, ApiError> {
        if need == Need::Open {
            return Ok(self.identify(req).ok().flatten());
        }
        let who = self.identify(req)?;
        let Some(who) = who else { return Err(self.unauthenticated()) };
        let allowed = match need {
            Need::Open => true,
            Need::Role(role) => who.role.may(role),
            Need::AllCameras => who.cameras.is_all(),
        };
        match (allowed, who.via) {
            (true, _) => Ok(Some(who)),
            // Nobody (a server with only api.token): credentials would help.
            (false, "open") => Err(self.unauthenticated()),
            (false, _) => Err(ApiError::Forbidden(format!("{} ({}) may not {} {}", who.name, who.role.as_str(), req.method(), req.path()))),
        }
    }

    fn unauthenticated(&self) -> ApiError {
        match self.has_accounts() {
            Ok(true) => ApiError::Unauthorized("sign in (POST /api/session) or send Authorization: Bearer <token>".into()),
            _ => ApiError::Unauthorized("this request needs Authorization: Bearer <token>".into()),
        }
    }

    /// The client's address, for throttling sign-ins and the audit log: the connection's, or, from a
    /// trusted proxy (`[auth] trusted_proxies`), the client its `X-Forwarded-For` names.
    pub fn address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let forwarded: Vec<&str> = req.headers().get_all("X-Forwarded-For").filter_map(|v| v.to_str().ok()).collect();
        Some(self.proxies.client(peer, &forwarded))
    }

    pub fn now() -> Instant {
        Instant::now()
    }
}

/// The camera a route's path names (`/api/cameras/{camera_id}…`, `/ws/stream/{camera_id}`),
/// percent-decoded as the handler will see it.
fn camera_in_path(pattern: &str, path: &str) -> Option<String> {
    if !pattern.contains("{camera_id}") {
        return None;
    }
    path.split('/').nth(3).map(percent_decode)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every request passes here (see the module's documentation).
pub async fn gate(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let e = ApiError::Internal("the API state is missing".into());
        return Ok(req.into_response(e.error_response()).map_into_right_body());
    };
    let pattern = req.match_pattern();
    let mut need = need(req.method(), pattern.as_deref());
    // The pages hold no data: without accounts they load for everyone (the page then asks for
    // api.token where reads need it); with accounts, a browser without a session goes to /login.
    if matches!(pattern.as_deref(), Some("/" | "/events")) && !state.access.has_accounts().unwrap_or(true) {
        need = Need::Open;
    }
    let who = match state.access.admit(req.request(), need) {
        Ok(who) => who,
        Err(e) => return Ok(refuse(req, pattern.as_deref(), e)),
    };
    if let (Some(who), Some(id)) = (&who, pattern.as_deref().and_then(|p| camera_in_path(p, req.path()))) {
        if !who.sees(&id) {
            // The same answer as for a camera that does not exist.
            let e = ApiError::NotFound(format!("unknown camera: {id}"));
            return Ok(req.into_response(e.error_response()).map_into_right_body());
        }
    }
    let audited = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && pattern.as_deref().is_some_and(|p| p != "/api/session");
    let (req, fields) = if audited { body_fields(req).await } else { (req, String::new()) };
    if let Some(who) = &who {
        req.extensions_mut().insert(who.clone());
    }
    let (method, path) = (req.method().clone(), req.path().to_string());
    let res = next.call(req).await?;
    if audited && res.status().is_success() {
        let who = who.map_or_else(|| "anonymous".to_string(), |w| w.name);
        let action = format!("{method} {}", pattern.unwrap_or_default());
        state.access.store.audit(&who, &action, &path, &format!("{}{fields}", res.status().as_u16()));
    }
    Ok(res.map_into_left_body())
}

/// A write's JSON body's top-level field names (for the audit log: what was changed, never the
/// values, so no password is ever recorded), the body put back for the handler. Bodies without a
/// length or over 64 KiB are left as they are.
async fn body_fields(mut req: ServiceRequest) -> (ServiceRequest, String) {
    let length = req.headers().get("Content-Length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if !length.is_some_and(|n| n > 0 && n <= 64 << 10) {
        return (req, String::new());
    }
    let Ok(bytes) = req.extract::<web::Bytes>().await else {
        return (req, String::new());
    };
    let fields = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => map.keys().map(|k| crate::text::shown(k)).collect::<Vec<_>>().join(", "),
        _ => String::new(),
    };
    req.set_payload(Payload::from(bytes));
    let fields = if fields.is_empty() { fields } else { format!("; fields: {fields}") };
    (req, fields)
}

/// The refusal: the error's JSON, but a page (`/`, `/events`) asked for without a session is sent
/// to the login page.
fn refuse<B>(req: ServiceRequest, pattern: Option<&str>, e: ApiError) -> ServiceResponse<EitherBody<B>> {
    let page = matches!(pattern, Some("/" | "/events")) && matches!(e, ApiError::Unauthorized(_));
    let res = if page { HttpResponse::SeeOther().insert_header(("Location", "/login")).finish() } else { e.error_response() };
    req.into_response(res).map_into_right_body()
}

/// The caller, as the gate found it, for handlers that filter what they show.
pub struct Caller(pub Identity);

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Without the gate (unit tests that build a bare app) there is nobody to limit.
        std::future::ready(Ok(Caller(req.extensions().get::<Identity>().cloned().unwrap_or_else(Identity::open))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_permissions() {
        use crate::auth::Role as R;
        use Need::{AllCameras, Open};
        let n = |m: &str, p: &str| need(&Method::from_bytes(m.as_bytes()).unwrap(), Some(p));
        assert_eq!(n("GET", "/api/cameras"), Need::Role(R::Viewer));
        assert_eq!(n("GET", "/ws/alerts"), Need::Role(R::Viewer));
        assert_eq!(n("POST", "/api/events/{id}/ack"), Need::Role(R::Operator));
        assert_eq!(n("POST", "/api/cameras/{camera_id}/snooze"), Need::Role(R::Operator));
        assert_eq!(n("PATCH", "/api/cameras/{camera_id}"), Need::Role(R::Admin));
        assert_eq!(n("GET", "/api/users"), Need::Role(R::Admin));
        assert_eq!(n("GET", "/api/audit"), Need::Role(R::Admin));
        assert_eq!(n("DELETE", "/api/users/{name}/sessions"), Need::Role(R::Admin));
        assert_eq!(n("GET", "/api/cluster"), AllCameras);
        assert_eq!(n("POST", "/api/session"), Open);
        assert_eq!(n("GET", "/ui/{file}"), Open);
        assert_eq!(n("DELETE", "/api/engine"), Open, "a 405");
        assert_eq!(need(&Method::GET, None), Open, "a 404");
    }

    #[test]
    fn the_camera_a_path_names_decoded() {
        assert_eq!(camera_in_path("/api/cameras/{camera_id}/mjpeg", "/api/cameras/ward-a-1/mjpeg").as_deref(), Some("ward-a-1"));
        assert_eq!(camera_in_path("/ws/stream/{camera_id}", "/ws/stream/do%6Fr").as_deref(), Some("door"));
        assert_eq!(camera_in_path("/api/cameras", "/api/cameras"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
