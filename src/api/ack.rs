//! `POST /api/events/{id}/ack`: a person says they have seen an event and are on it. The first
//! acknowledgement is kept; a second one answers 200 with the event as it is (so a retried request
//! is harmless) and changes nothing. Pushed to `/ws/alerts` and the cluster as an update.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::{Map, Value};

use crate::api::access::Caller;
use crate::api::ApiError;
use crate::events::{now, EventHub};

/// The longest name `by` may be, in characters.
pub const MAX_BY: usize = 64;
/// The longest note, in characters.
pub const MAX_NOTE: usize = 1000;

/// An acknowledgement's body, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub by: String,
    pub note: Option<String>,
}

/// Reads `{"by": "…", "note": "…"}`: `by` 1 to 64 printable characters (trimmed), `note` optional
/// (null or a string of at most 1000 characters; line breaks and tabs allowed). Each error names
/// the field.
pub fn parse(body: &[u8]) -> Result<Ack, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body must be a JSON object {{\"by\": \"…\", \"note\": \"…\"}}: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object {\"by\": \"…\", \"note\": \"…\"}".into());
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "by" && *k != "note") {
        return Err(format!("unknown field {unknown:?}: an acknowledgement has by and note"));
    }
    let by = match fields.get("by") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(format!("by must be a string (your name), got {other}")),
        None => return Err("by is required: who acknowledges (a name)".into()),
    };
    let chars = by.chars().count();
    if chars == 0 || chars > MAX_BY {
        return Err(format!("by must have 1 to {MAX_BY} characters, got {chars}"));
    }
    if by.chars().any(char::is_control) {
        return Err("by must be printable (no control characters)".into());
    }
    Ok(Ack { by, note: note(&fields)? })
}

fn note(fields: &Map<String, Value>) -> Result<Option<String>, String> {
    let note = match fields.get("note") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(other) => return Err(format!("note must be a string, got {other}")),
    };
    let chars = note.chars().count();
    if chars > MAX_NOTE {
        return Err(format!("note must have at most {MAX_NOTE} characters, got {chars}"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("note must be printable (line breaks and tabs allowed)".into());
    }
    Ok((!note.is_empty()).then(|| note.to_string()))
}

/// `POST /api/events/{id}/ack` (a write: the token when one is set): 200 with the event,
/// acknowledged (by this request, or by the first one); 404 for an unknown id; 400 naming the field.
pub async fn ack(hub: web::Data<Arc<EventHub>>, caller: Caller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let id: i64 = path.parse().map_err(|_| ApiError::NotFound(format!("no such event: {path}")))?;
    let ack = parse(&body).map_err(ApiError::BadRequest)?;
    // Another camera's event is "no such event".
    super::events::find(&hub, &path, &caller).await?;
    let hub = hub.get_ref().clone();
    let done = web::block(move || hub.acknowledge(id, now(), &ack.by, ack.note.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (event, _) = done.ok_or_else(|| ApiError::NotFound(format!("no such event: {id}")))?;
    Ok(HttpResponse::Ok().json(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_names_the_field_it_gets_wrong() {
        assert_eq!(parse(br#"{"by": " Ann "}"#), Ok(Ack { by: "Ann".into(), note: None }));
        assert_eq!(parse(br#"{"by": "Ann", "note": "on my way\nroom 4"}"#).unwrap().note.as_deref(), Some("on my way\nroom 4"));
        assert_eq!(parse(br#"{"by": "Ann", "note": null}"#).unwrap().note, None);
        let err = |b: &[u8]| parse(b).unwrap_err();
        assert!(err(b"").contains("JSON object"));
        assert!(err(b"[1]").contains("JSON object"));
        assert!(err(br#"{}"#).starts_with("by is required"));
        assert!(err(br#"{"by": 3}"#).starts_with("by must be a string"));
        assert!(err(br#"{"by": "  "}"#).starts_with("by must have 1 to 64"));
        assert!(err(format!(r#"{{"by": "{}"}}"#, "a".repeat(65)).as_bytes()).contains("got 65"));
        assert!(parse(format!(r#"{{"by": "{}"}}"#, "é".repeat(64)).as_bytes()).is_ok(), "characters, not bytes");
        assert!(err(br#"{"by": "a\u0007b"}"#).contains("printable"));
        assert!(err(br#"{"by": "Ann", "note": 5}"#).starts_with("note must be a string"));
        assert!(err(format!(r#"{{"by": "Ann", "note": "{}"}}"#, "n".repeat(1001)).as_bytes()).starts_with("note must have at most 1000"));
        assert!(err(br#"{"by": "Ann", "note": "a\u0000"}"#).starts_with("note must be printable"));
        assert!(err(br#"{"by": "Ann", "who": "x"}"#).contains("unknown field \"who\""));
    }
}
