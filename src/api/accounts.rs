//! Signing in and out (`/api/session`), accounts (`/api/users`), API tokens (`/api/tokens`) and the
//! audit log (`/api/audit`). Who may call each is `access::need`'s; these only do the work.

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::access::{Access, Caller, COOKIE};
use super::cameras::read_json;
use super::{ApiError, AppState};
use crate::auth::{password, Role, Scope, StoreError};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<password::PasswordError> for ApiError {
    fn from(e: password::PasswordError) -> Self {
        match e {
            password::PasswordError::Hash(_) => ApiError::Internal(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Runs blocking work (argon2, the store) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    web::block(f).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    name: String,
    password: String,
}

/// `POST /api/session` `{"name", "password"}`: a session cookie (HttpOnly, SameSite=Strict, Secure
/// over TLS) and who signed in. A wrong name or password is one answer (401), and past
/// `[auth] failed_sign_ins_per_minute` failures for the account or the address, 429 without looking.
pub async fn sign_in(req: HttpRequest, state: web::Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let SignIn { name, password } = read_json(body, state.api.max_body_bytes).await?;
    let access = state.access.clone();
    let address = access.address(&req);
    if let Err(wait) = access.throttle.check(&name, address, Access::now()) {
        log::warn!("sign-in refused (too many failures): account {:?} from {}", crate::text::shown(&name), shown_address(address));
        return Err(ApiError::TooMany(wait));
    }
    if password.len() > password::MAX_BYTES {
        access.throttle.fail(&name, address, Access::now());
        return Err(ApiError::BadRequest(format!("the password must have at most {} bytes", password::MAX_BYTES)));
    }
    let store = access.store.clone();
    let hours = access.settings.session_hours;
    let who = name.clone();
    let signed = blocking(move || {
        let found = store.user(&who)?;
        // An unknown name costs the same hashing as a known one.
        let phc = found.as_ref().map_or(password::decoy(), |(_, phc)| phc.as_str());
        match (password::verify(&password, phc), found) {
            (true, Some((user, _))) => Ok(Some((user, store.create_session(&who, hours)?))),
            _ => Ok(None),
        }
    })
    .await?;
    let Some((user, (secret, expires_at))) = signed else {
        access.throttle.fail(&name, address, Access::now());
        log::warn!("sign-in refused: wrong name or password for account {:?} from {}", crate::text::shown(&name), shown_address(address));
        return Err(ApiError::Unauthorized("wrong name or password".into()));
    };
    access.store.audit(&user.name, "sign in", &format!("from {}", shown_address(address)), "");
    let cookie = Cookie::build(COOKIE, secret)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(CookieAge::seconds((hours * 3600.0) as i64))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({ "name": user.name, "role": user.role, "cameras": user.cameras, "expires_at": expires_at })))
}

fn shown_address(address: Option<std::net::IpAddr>) -> String {
    address.map_or_else(|| "an unknown address".into(), |a| a.to_string())
}

/// `GET /api/session`: who the caller is, and whether this server has accounts (also in the 401
/// for nobody, so that a page knows to show the login page rather than ask for a token).
pub async fn whoami(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let accounts = state.access.has_accounts()?;
    match state.access.identify(&req) {
        Ok(Some(who)) => Ok(HttpResponse::Ok().json(json!({ "name": who.name, "role": who.role, "cameras": who.cameras, "via": who.via, "accounts": accounts }))),
        Ok(None) | Err(ApiError::Unauthorized(_)) => Ok(HttpResponse::Unauthorized().json(json!({ "error": "not signed in", "accounts": accounts }))),
        Err(e) => Err(e),
    }
}

/// `DELETE /api/session`: ends the cookie's session (204 whether or not it was alive).
pub async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(c) = req.cookie(COOKIE) {
        let who = state.access.store.session(c.value())?;
        state.access.store.end_session(c.value())?;
        if let Some(who) = who {
            state.access.store.audit(&who.name, "sign out", "", "");
        }
    }
    let mut gone = Cookie::build(COOKIE, "").path("/").http_only(true).same_site(SameSite::Strict).finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

fn scope_of(cameras: Option<Vec<String>>) -> Result<Scope, ApiError> {
    Scope::new(cameras.unwrap_or_default()).map_err(ApiError::BadRequest)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    role: Role,
    cameras: Option<Vec<String>>,
}

/// `GET /api/users`.
pub async fn users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "users": state.access.store.users()? })))
}

/// `POST /api/users` `{"name", "password", "role", "cameras"}`: 201 with the account (no hash).
pub async fn add_user(state: web::Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let NewUser { name, password, role, cameras } = read_json(body, state.api.max_body_bytes).await?;
    crate::auth::store::check_name("name", &name)?;
    let scope = scope_of(cameras)?;
    let store = state.access.store.clone();
    let user = blocking(move || Ok(store.add_user(&name, &password::hash(&password)?, role, &scope)?)).await?;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    password: Option<String>,
    role: Option<Role>,
    cameras: Option<Vec<String>>,
}

/// `PATCH /api/users/{name}` `{"password"?, "role"?, "cameras"?}`: a new password ends its sessions;
/// the last admin stays an admin.
pub async fn update_user(state: web::Data<AppState>, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let UserPatch { password, role, cameras } = read_json(body, state.api.max_body_bytes).await?;
    let scope = cameras.map(|c| scope_of(Some(c))).transpose()?;
    let store = state.access.store.clone();
    let name = path.into_inner();
    let user = blocking(move || {
        let phc = password.map(|p| password::hash(&p)).transpose()?;
        Ok(store.update_user(&name, phc.as_deref(), role, scope.as_ref())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `DELETE /api/users/{name}`: 204; its sessions end. The last admin stays.
pub async fn remove_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.access.store.remove_user(&path, true)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/users/{name}/sessions`: signs the account out everywhere (its tokens are apart).
pub async fn end_sessions(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let ended = state.access.store.end_sessions_of(&path)?;
    Ok(HttpResponse::Ok().json(json!({ "name": path.into_inner(), "sessions_ended": ended })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    cameras: Option<Vec<String>>,
    expires_in_days: Option<u32>,
}

/// `GET /api/tokens`: names, roles, cameras, expiry; never a token.
pub async fn tokens(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "tokens": state.access.store.tokens()? })))
}

/// `POST /api/tokens` `{"name", "role", "cameras", "expires_in_days"}`: 201 with the token, shown
/// this once (only its hash is kept).
pub async fn add_token(state: web::Data<AppState>, caller: Caller, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let NewToken { name, role, cameras, expires_in_days } = read_json(body, state.api.max_body_bytes).await?;
    if expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(ApiError::BadRequest("expires_in_days must lie in 1..=3650 (or be left out: never)".into()));
    }
    let (secret, view) = state.access.store.add_token(&name, role, &scope_of(cameras)?, expires_in_days, &caller.0.name)?;
    let mut body = serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["token"] = secret.into();
    Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(body))
}

/// `DELETE /api/tokens/{name}`: 204; the token stops working at once.
pub async fn revoke_token(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.access.store.remove_token(&path)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/audit?limit=&offset=`: newest first.
pub async fn audit(state: web::Data<AppState>, query: web::Query<std::collections::HashMap<String, String>>) -> Result<HttpResponse, ApiError> {
    let number = |name: &str, default: usize, max: usize| match query.get(name) {
        None => Ok(default),
        Some(raw) => raw.parse::<usize>().ok().filter(|n| *n <= max).ok_or_else(|| ApiError::BadRequest(format!("{name} must be a whole number up to {max}, got {raw:?}"))),
    };
    let (limit, offset) = (number("limit", 100, 1000)?.max(1), number("offset", 0, i64::MAX as usize)?);
    let (total, entries) = state.access.store.audit_log(limit, offset)?;
    Ok(HttpResponse::Ok().json(json!({ "total": total, "offset": offset, "entries": entries })))
}
