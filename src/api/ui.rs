//! The web UI: plain HTML, CSS and ES modules from `ui/`, embedded in the binary (no build step,
//! nothing fetched at run time).

use actix_web::{web, HttpResponse};

use super::ApiError;

/// `(name, content type, bytes)` of every file under `ui/`.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../ui/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../ui/style.css")),
    ("events.html", "text/html; charset=utf-8", include_str!("../../ui/events.html")),
    ("events.js", "text/javascript; charset=utf-8", include_str!("../../ui/events.js")),
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

pub async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&name)
}
