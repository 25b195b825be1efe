//! `GET /api/notify`: each notification target's deliveries.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// Each target's delivered / pending / failed (given up) counts and last error; addresses with
/// their credentials masked, secrets never.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "targets": state.notify.targets() }))
}
