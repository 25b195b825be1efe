//! REST: camera statuses and the engine.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiError, AppState};
use crate::hub::{GetEngineInfo, GetStatus, Statuses};

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cameras = state.hub.send(Statuses).await?;
    Ok(HttpResponse::Ok().json(json!({ "total_cameras": cameras.len(), "cameras": cameras })))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let status = state.hub.send(GetStatus(path.into_inner())).await??;
    Ok(HttpResponse::Ok().json(status))
}

pub async fn engine(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.hub.send(GetEngineInfo).await?))
}
