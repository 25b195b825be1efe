//! Acknowledgement and long lie end to end: the real server and model, a real (rendered) fall,
//! acknowledged through the API; what `/ws/alerts`, `/api/events` and `/api/events/{id}` say.

use std::time::{Duration, Instant};

use awc::ws::Frame;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::events::{write_fall_video_lying, AlertSocket};
use crate::pose::pose_engine;
use crate::support::*;

const TOKEN: &str = "ack-s3cret";

/// POSTs `body` (raw) to `path` with `token` as the bearer; the status and the JSON answer.
async fn post(server: &TestServer, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = awc::Client::new().post(server.url(path)).insert_header(("Content-Type", "application/json"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send_body(body.to_string()).await.expect("POST answers");
    let status = res.status().as_u16();
    let body = res.body().limit(1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The next alert `pred` accepts (others are skipped), within a generous deadline.
async fn next_alert(alerts: &mut AlertSocket, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), alerts.next()).await {
            Ok(Some(Ok(Frame::Text(bytes)))) => {
                let ev: Value = serde_json::from_slice(&bytes).unwrap();
                if pred(&ev) {
                    return ev;
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("alerts socket ended waiting for {what}: {other:?}"),
        }
    }
    panic!("no alert for {what} within 60 s");
}

/// The wrong requests first: no token, a wrong one, bad bodies (each naming its field), an unknown id.
async fn bad_acks_change_nothing(server: &TestServer, id: i64) {
    let path = format!("/api/events/{id}/ack");
    let good = r#"{"by": "Ann"}"#;
    for token in [None, Some("wrong")] {
        let (code, body) = post(server, &path, token, good).await;
        assert_eq!(code, 401, "{token:?}: {body}");
        assert!(!body.to_string().contains(TOKEN), "a 401 never shows the token: {body}");
    }
    for (body, field) in [
        ("", "JSON object"),
        (r#"{"note": "x"}"#, "by is required"),
        (r#"{"by": ""}"#, "by must have 1 to 64"),
        (&format!(r#"{{"by": "{}"}}"#, "x".repeat(65)), "by must have 1 to 64"),
        (r#"{"by": "Ann", "note": 7}"#, "note must be a string"),
        (&format!(r#"{{"by": "Ann", "note": "{}"}}"#, "n".repeat(1001)), "note must have at most 1000"),
    ] {
        let (code, answer) = post(server, &path, Some(TOKEN), body).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(field), "{body}: {answer}");
    }
    let (code, answer) = post(server, "/api/events/999999999/ack", Some(TOKEN), good).await;
    assert_eq!((code, answer["error"].as_str()), (404, Some("no such event: 999999999")));
    let (code, answer) = post(server, "/api/events/nope/ack", Some(TOKEN), good).await;
    assert_eq!(code, 404, "{answer}");
    let (_, stored) = server.get(&format!("/api/events/{id}")).await;
    assert_eq!((&stored["acknowledged_at"], &stored["acknowledged_by"]), (&Value::Null, &Value::Null), "{stored}");
}

#[actix_web::test]
async fn a_real_fall_acknowledged_through_the_api_then_a_long_lie_reach_every_alert_viewer() {
    let s = Scratch::new("ack");
    let video = s.path("fall.mp4");
    // Upright 2 s, down in 0.8 s, then 9 s lying still.
    write_fall_video_lying(&video, 9.0, false);
    let mut cam = camera("ward", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let mut settings = settings(vec![cam]);
    settings.api.token = TOKEN.into();
    settings.events.fall.long_lie_secs = 4.0;
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;
    let (_, mut alerts) = awc::Client::new().ws(server.ws_url("/ws/alerts?camera=ward")).connect().await.unwrap();

    let fall = next_alert(&mut alerts, "the fall", |e| e["kind"] == "fall" && e["phase"] == "start").await;
    let id = fall["id"].as_i64().expect("stored");
    assert_eq!((&fall["acknowledged_at"], &fall["long_lie"]), (&Value::Null, &json!(false)), "{fall}");
    bad_acks_change_nothing(&server, id).await;

    // Acknowledged: the answer, the alert viewers and the store say who, when and what.
    let before = haven::events::now();
    let (code, acked) = post(&server, &format!("/api/events/{id}/ack"), Some(TOKEN), r#"{"by": "Ann", "note": "on my way"}"#).await;
    assert_eq!(code, 200, "{acked}");
    assert_eq!((acked["id"].as_i64(), acked["acknowledged_by"].as_str(), acked["ack_note"].as_str()), (Some(id), Some("Ann"), Some("on my way")));
    let at = acked["acknowledged_at"].as_f64().unwrap();
    assert!(at >= before - 1.0 && at <= haven::events::now() + 1.0, "{acked}");
    let update = next_alert(&mut alerts, "the acknowledgement", |e| e["id"] == id && e["acknowledged_by"] == "Ann").await;
    assert_eq!(update["acknowledged_at"].as_f64(), Some(at));
    let (_, one) = server.get(&format!("/api/events/{id}")).await;
    assert_eq!((one["acknowledged_at"].as_f64(), one["acknowledged_by"].as_str(), one["ack_note"].as_str()), (Some(at), Some("Ann"), Some("on my way")));
    let (_, list) = server.get("/api/events?camera=ward&kind=fall").await;
    assert_eq!(list["events"][0]["acknowledged_by"], "Ann", "{list}");

    // A second acknowledgement keeps the first: 200, the event as it was.
    let (code, again) = post(&server, &format!("/api/events/{id}/ack"), Some(TOKEN), r#"{"by": "Bob"}"#).await;
    assert_eq!((code, again["acknowledged_by"].as_str(), again["acknowledged_at"].as_f64()), (200, Some("Ann"), Some(at)), "{again}");

    // Still down long_lie_secs after it was raised: published again, the acknowledgement kept.
    let long = next_alert(&mut alerts, "the long lie", |e| e["id"] == id && e["long_lie"] == true).await;
    assert_eq!((long["phase"].as_str(), long["acknowledged_by"].as_str()), (Some("start"), Some("Ann")), "{long}");
    let after = long["long_lie_at"].as_f64().unwrap() - fall["raised_at"].as_f64().unwrap();
    assert!((4.0..6.0).contains(&after), "a long lie {after:.2} s after it was raised");
    let end = next_alert(&mut alerts, "the fall's end", |e| e["id"] == id && e["phase"] == "end").await;
    assert_eq!((end["long_lie"].as_bool(), end["acknowledged_by"].as_str()), (Some(true), Some("Ann")), "the end keeps both: {end}");
    let (_, one) = server.get(&format!("/api/events/{id}")).await;
    assert_eq!((one["long_lie"].as_bool(), one["long_lie_at"].as_f64()), (Some(true), long["long_lie_at"].as_f64()), "{one}");

    // An ended event is acknowledged just the same, and pushed as an update of the ended event.
    let person = next_alert(&mut alerts, "the person's end", |e| e["kind"] == "person_detected" && e["phase"] == "end").await;
    let pid = person["id"].as_i64().unwrap();
    let (code, acked) = post(&server, &format!("/api/events/{pid}/ack"), Some(TOKEN), r#"{"by": "Cy"}"#).await;
    assert_eq!((code, acked["acknowledged_by"].as_str(), acked["ack_note"].is_null()), (200, Some("Cy"), true), "{acked}");
    let update = next_alert(&mut alerts, "the ended event's acknowledgement", |e| e["id"] == pid && e["acknowledged_by"] == "Cy").await;
    assert_eq!(update["phase"], "end");
    server.stop().await;
}
