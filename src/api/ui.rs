//! The web UI: plain HTML, CSS and ES modules from `ui/`, embedded in the binary (no build step,
//! nothing fetched at run time).

use actix_web::{web, HttpResponse};

use super::ApiError;

const JS: &str = "text/javascript; charset=utf-8";

/// `(name, content type, bytes)` of every file under `ui/`.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../ui/index.html")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../ui/style.css")),
    ("events.html", "text/html; charset=utf-8", include_str!("../../ui/events.html")),
    ("login.html", "text/html; charset=utf-8", include_str!("../../ui/login.html")),
    ("admin.html", "text/html; charset=utf-8", include_str!("../../ui/admin.html")),
    ("admin.js", JS, include_str!("../../ui/admin.js")),
    ("ack.js", JS, include_str!("../../ui/ack.js")),
    ("alerts.js", JS, include_str!("../../ui/alerts.js")),
    ("api.js", JS, include_str!("../../ui/api.js")),
    ("app.js", JS, include_str!("../../ui/app.js")),
    ("camera-dialogs.js", JS, include_str!("../../ui/camera-dialogs.js")),
    ("clip-player.js", JS, include_str!("../../ui/clip-player.js")),
    ("display-menu.js", JS, include_str!("../../ui/display-menu.js")),
    ("dom.js", JS, include_str!("../../ui/dom.js")),
    ("event-labels.js", JS, include_str!("../../ui/event-labels.js")),
    ("event-viewer.js", JS, include_str!("../../ui/event-viewer.js")),
    ("events-list.js", JS, include_str!("../../ui/events-list.js")),
    ("events-page.js", JS, include_str!("../../ui/events-page.js")),
    ("events-state.js", JS, include_str!("../../ui/events-state.js")),
    ("events.js", JS, include_str!("../../ui/events.js")),
    ("format.js", JS, include_str!("../../ui/format.js")),
    ("frames.js", JS, include_str!("../../ui/frames.js")),
    ("grid.js", JS, include_str!("../../ui/grid.js")),
    ("live-state.js", JS, include_str!("../../ui/live-state.js")),
    ("login.js", JS, include_str!("../../ui/login.js")),
    ("motion.js", JS, include_str!("../../ui/motion.js")),
    ("overlay.js", JS, include_str!("../../ui/overlay.js")),
    ("player.js", JS, include_str!("../../ui/player.js")),
    ("prefs.js", JS, include_str!("../../ui/prefs.js")),
    ("renditions.js", JS, include_str!("../../ui/renditions.js")),
    ("session.js", JS, include_str!("../../ui/session.js")),
    ("tile-models.js", JS, include_str!("../../ui/tile-models.js")),
    ("tile-status.js", JS, include_str!("../../ui/tile-status.js")),
    ("tile.js", JS, include_str!("../../ui/tile.js")),
    ("zones.js", JS, include_str!("../../ui/zones.js")),
];

fn serve(name: &str) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no such file: /ui/{name}")))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .body(*body))
}

pub async fn index() -> Result<HttpResponse, ApiError> {
    serve("index.html")
}

pub async fn events() -> Result<HttpResponse, ApiError> {
    serve("events.html")
}

/// `GET /login`: the one page open to everyone once accounts exist.
pub async fn login() -> Result<HttpResponse, ApiError> {
    serve("login.html")
}

pub async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&name)
}

#[cfg(test)]
mod tests {
    use super::FILES;

    #[test]
    fn every_module_in_ui_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".js") {
                assert!(FILES.iter().any(|(n, _, _)| *n == name), "ui/{name} is not in FILES: the page would fail to import it");
            }
        }
    }
}
