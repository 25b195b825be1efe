//! REST: camera statuses, cameras added, changed and removed at run time, the engine.

use std::path::{Component, Path};

use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::access::Caller;
use super::{ApiError, AppState};
use crate::camera::{CameraPatch, CameraStatusView};
use crate::hub::{CheckModels, GetEngineInfo, GetStatus, Register, Remove, Statuses, Update};
use crate::api::config::ApiSettings;
use crate::camera::config::{CameraConfig, SourceType};

/// The status with what the notifier knows of the camera (its snooze).
fn with_snooze(state: &AppState, mut view: CameraStatusView) -> CameraStatusView {
    view.snoozed_until = state.notify.snoozed_until(&view.camera_id);
    view
}

/// `GET /api/cameras`: the caller's cameras only.
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let cameras: Vec<_> = state.hub.send(Statuses).await?.into_iter().filter(|v| caller.0.sees(&v.camera_id)).map(|v| with_snooze(&state, v)).collect();
    if let Some(cluster) = &state.cluster {
        let cameras = cluster.list(cameras);
        return Ok(HttpResponse::Ok().json(json!({ "total_cameras": cameras.len(), "cameras": cameras })));
    }
    Ok(HttpResponse::Ok().json(json!({ "total_cameras": cameras.len(), "cameras": cameras })))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let status = with_snooze(&state, state.hub.send(GetStatus(path.into_inner())).await??);
    match &state.cluster {
        Some(cluster) => Ok(HttpResponse::Ok().json(cluster.list(vec![status]).pop())),
        None => Ok(HttpResponse::Ok().json(status)),
    }
}

/// `GET /api/cluster`: this node's view of the cluster (404 on a single server).
pub async fn cluster(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match &state.cluster {
        Some(cluster) => Ok(HttpResponse::Ok().json(cluster.view())),
        None => Err(ApiError::NotFound("this server is not part of a cluster (no [cluster] settings)".into())),
    }
}

pub async fn engine(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.hub.send(GetEngineInfo).await?))
}

/// `POST /api/cameras`: 201 with the new camera's status.
pub async fn create(state: web::Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let config: CameraConfig = read_json(body, state.api.max_body_bytes).await?;
    config.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_media_path(&config, &state.api)?;
    if let Some(cluster) = &state.cluster {
        state.hub.send(CheckModels(config.clone())).await??;
        // Into the inventory: every node registers it, the rendezvous winner takes its lease.
        cluster.add_camera(&config).await?;
        cluster.sync().await?;
        let status = state.hub.send(GetStatus(config.camera_id)).await??;
        return Ok(HttpResponse::Created().json(cluster.list(vec![status]).pop()));
    }
    let status = state.hub.send(Register { config, persist: true }).await??;
    Ok(HttpResponse::Created().json(status))
}

/// `PATCH /api/cameras/{id}`: live changes, no restart.
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let patch: CameraPatch = read_json(body, state.api.max_body_bytes).await.map_err(|e| match e {
        ApiError::BadRequest(message) => ApiError::BadRequest(format!("camera \"{id}\": {message}")),
        other => other,
    })?;
    if let Some(cluster) = &state.cluster {
        // The models and classes it names, against this node's (every node loads the same settings).
        if patch.models.is_some() || patch.object_events.is_some() {
            let mut named = CameraConfig::new(&id, "-", SourceType::VideoFile);
            patch.apply(&mut named);
            state.hub.send(CheckModels(named)).await??;
        }
        // In the inventory, at the revision read: every node applies it live at its next round (the
        // owner's worker from its next frame), as a single server does.
        cluster
            .update_camera(&id, |config| {
                patch.apply(config);
                config.validate().map_err(|e| e.to_string())
            })
            .await?;
        cluster.sync().await?;
        let status = with_snooze(&state, state.hub.send(GetStatus(id)).await??);
        return Ok(HttpResponse::Ok().json(cluster.list(vec![status]).pop()));
    }
    let status = with_snooze(&state, state.hub.send(Update(id, patch)).await??);
    Ok(HttpResponse::Ok().json(status))
}

/// `POST /api/cameras/{id}/snooze` `{"minutes": N}`: no notifications for the camera for N
/// minutes (0 ends a snooze; its events go on). Kept in the event store: a restart keeps it; in a
/// cluster, shared with every node.
pub async fn snooze(state: web::Data<AppState>, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snooze {
        minutes: u32,
    }
    let Snooze { minutes } = read_json(body, state.api.max_body_bytes).await?;
    if minutes > MAX_SNOOZE_MINUTES {
        return Err(ApiError::BadRequest(format!("minutes must lie in 0..={MAX_SNOOZE_MINUTES} (a week), got {minutes}")));
    }
    let id = path.into_inner();
    state.hub.send(GetStatus(id.clone())).await??;
    let until = state.notify.snooze(&id, minutes);
    if let Some(cluster) = &state.cluster {
        // For every node: the one that runs the camera notifies its events, now or after a failover.
        cluster.snooze(&id, until).await?;
    }
    log::info!("camera {id:?}: notifications {}", match until {
        Some(t) => format!("snoozed for {minutes} min (until {t})"),
        None => "no longer snoozed".into(),
    });
    Ok(HttpResponse::Ok().json(json!({ "camera_id": id, "snoozed_until": until })))
}

/// The longest snooze: a week.
pub const MAX_SNOOZE_MINUTES: u32 = 7 * 24 * 60;

/// `DELETE /api/cameras/{id}`: stops it and closes its viewers.
pub async fn remove(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if let Some(cluster) = &state.cluster {
        cluster.remove_camera(&path).await?;
        cluster.sync().await?;
        return Ok(HttpResponse::NoContent().finish());
    }
    state.hub.send(Remove(path.into_inner())).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Reads a JSON body of at most `limit` bytes; errors name the offending field.
pub(crate) async fn read_json<T: DeserializeOwned>(mut body: web::Payload, limit: usize) -> Result<T, ApiError> {
    use futures_util::StreamExt;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::BadRequest(format!("body larger than {limit} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    // Every body here is a JSON object (serde would also build a struct from an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest("invalid body: expected a JSON object".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::BadRequest(format!("invalid body: {inner}"))
        } else {
            ApiError::BadRequest(format!("invalid {path}: {inner}"))
        }
    })
}

/// File sources added through the API must lie inside a configured media directory: the API must not
/// become a way to read arbitrary files of the host.
fn check_media_path(config: &CameraConfig, api: &ApiSettings) -> Result<(), ApiError> {
    if config.source_type != SourceType::VideoFile {
        return Ok(());
    }
    let source = Path::new(&config.source);
    if source.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ApiError::BadRequest("source must not contain '..'".into()));
    }
    let absolute = |p: &Path| std::path::absolute(p).ok();
    let Some(source_abs) = absolute(source) else {
        return Err(ApiError::BadRequest(format!("source {} is not a valid path", config.source)));
    };
    // Resolve symlinks where the file exists, so a link inside a media directory cannot point out of it.
    let source_real = source_abs.canonicalize().unwrap_or(source_abs);
    let inside = api.media_dirs.iter().any(|dir| {
        let dir = absolute(dir).map(|d| d.canonicalize().unwrap_or(d));
        dir.is_some_and(|d| source_real.starts_with(d))
    });
    if inside {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "source {} is outside the media directories ({})",
            config.source,
            api.media_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )))
    }
}
