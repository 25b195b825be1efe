//! `GET /metrics` in the Prometheus text format. Every metric's name, type and help is declared
//! once, in `METRICS`.

use std::fmt::Write;

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState};
use crate::camera::CameraStatusView;
use crate::hub::GetMetrics;

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// The per-camera value; `None` for metrics rendered specially below.
    value: Option<fn(&CameraStatusView) -> f64>,
}

const METRICS: &[Metric] = &[
    Metric { name: "haven_camera_connected", kind: "gauge", help: "1 while the camera's source is open and delivering frames.", value: Some(|c| c.connected as u8 as f64) },
    Metric { name: "haven_camera_viewers", kind: "gauge", help: "WebSocket viewers subscribed to the camera.", value: Some(|c| c.viewers as f64) },
    Metric { name: "haven_camera_decode_fps", kind: "gauge", help: "Frames decoded per second (processed and skipped), over the last second.", value: Some(|c| c.decode_fps) },
    Metric { name: "haven_camera_processed_fps", kind: "gauge", help: "Frames processed per second, over the last second.", value: Some(|c| c.fps) },
    Metric { name: "haven_camera_detection_fps", kind: "gauge", help: "Frames run through the pose model per second, over the last second.", value: Some(|c| c.detection_fps) },
    Metric { name: "haven_camera_frames_decoded_total", kind: "counter", help: "Frames decoded from the source.", value: Some(|c| c.frames_decoded as f64) },
    Metric { name: "haven_camera_frames_processed_total", kind: "counter", help: "Frames that went through the pipeline.", value: Some(|c| c.frames_processed as f64) },
    Metric { name: "haven_camera_frames_fenced_total", kind: "counter", help: "Frames shown to this node's viewers only, past the camera's cluster fence (lease not renewed in time).", value: Some(|c| c.frames_fenced as f64) },
    Metric { name: "haven_camera_frames_encoded_total", kind: "counter", help: "Frames JPEG-encoded (once per frame, whatever the number of viewers).", value: Some(|c| c.frames_encoded as f64) },
    Metric { name: "haven_camera_dropped_frames_total", kind: "counter", help: "Frames skipped because processing fell behind the source.", value: Some(|c| c.dropped_frames as f64) },
    Metric { name: "haven_camera_reconnects_total", kind: "counter", help: "Attempts to reopen the source after a failure.", value: Some(|c| c.reconnects as f64) },
    Metric { name: "haven_camera_loops_total", kind: "counter", help: "Times a looping file source restarted at its end.", value: Some(|c| c.loops as f64) },
    Metric { name: "haven_camera_cpu_percent", kind: "gauge", help: "CPU of the camera's own thread (decode, motion, drawing, encoding) over the last second, percent of one core.", value: Some(|c| c.cpu_percent) },
    Metric { name: "haven_camera_region_budget", kind: "gauge", help: "What the camera's regions may cost, as a fraction of one square pass (less while its frames wait for the model).", value: Some(|c| c.region_budget) },
    Metric { name: "haven_camera_motion", kind: "gauge", help: "1 while something moves in the camera's newest frame.", value: Some(|c| c.motion as u8 as f64) },
    Metric { name: "haven_camera_motion_area", kind: "gauge", help: "Fraction of the newest frame that moved.", value: Some(|c| c.motion_area) },
    Metric { name: "haven_camera_detect_fps_setting", kind: "gauge", help: "Passes of the model per second while something moves (0: every frame).", value: Some(|c| c.detect_fps) },
    Metric { name: "haven_camera_inferences_total", kind: "counter", help: "Frames of the camera the model looked at.", value: Some(|c| c.inferences as f64) },
    Metric { name: "haven_camera_inferences_skipped_total", kind: "counter", help: "Frames not looked at because nothing moved and nobody was tracked.", value: Some(|c| c.inferences_skipped as f64) },
    Metric { name: "haven_camera_inferences_replaced_total", kind: "counter", help: "Frames replaced by a newer one while waiting for the shared model.", value: Some(|c| c.inferences_replaced as f64) },
    Metric { name: "haven_camera_inference_seconds", kind: "histogram", help: "Time of one pass of the model over the camera's frame.", value: None },
    Metric { name: "haven_camera_inference_queue_seconds", kind: "histogram", help: "Time a frame waited for the shared model.", value: None },
    Metric { name: "haven_camera_renditions_encoded_total", kind: "counter", help: "JPEGs encoded for renditions other than the full frame (once per frame each, whatever the number of their viewers).", value: Some(|c| c.renditions_encoded as f64) },
    Metric { name: "haven_camera_rendition_viewers", kind: "gauge", help: "Viewers of each rendition the camera encodes now (width 0: full size; quality 0: the camera's).", value: None },
    Metric { name: "haven_camera_model_inferences_total", kind: "counter", help: "Frames of the camera each model looked at (one pass each).", value: None },
    Metric { name: "haven_camera_model_inference_seconds", kind: "gauge", help: "Time of each model's last pass over the camera's frame.", value: None },
    Metric { name: "haven_engine_inferences_total", kind: "counter", help: "Inference calls of the shared models, all models and cameras together.", value: None },
    Metric { name: "haven_engine_model_inferences_total", kind: "counter", help: "Inference calls of each shared model, all cameras together.", value: None },
    Metric { name: "haven_process_resident_memory_bytes", kind: "gauge", help: "Resident memory of the HAVEN process.", value: None },
];

fn resident_bytes() -> f64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(0.0);
    pages * 4096.0
}

/// A unit enum as its serde name (`"client"` → `client`).
fn serde_plain(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Label values escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `GET /metrics`: the caller's cameras' only (the engine and process lines are no camera's).
pub async fn render(state: web::Data<AppState>, caller: super::access::Caller) -> Result<HttpResponse, ApiError> {
    let (mut cameras, engine) = state.hub.send(GetMetrics).await?;
    cameras.retain(|c| caller.0.sees(&c.view.camera_id));
    let mut out = String::with_capacity(4096);
    for m in METRICS {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", m.name, m.help, m.name, m.kind);
        match (m.value, m.name) {
            (Some(value), _) => {
                for c in &cameras {
                    let _ = writeln!(out, "{}{{camera=\"{}\"}} {}", m.name, label(&c.view.camera_id), value(&c.view));
                }
            }
            (None, name @ ("haven_camera_inference_seconds" | "haven_camera_inference_queue_seconds")) => {
                for c in &cameras {
                    let id = label(&c.view.camera_id);
                    let (buckets, count, sum) = if name == "haven_camera_inference_seconds" { &c.inference } else { &c.queue };
                    for (le, n) in buckets {
                        let _ = writeln!(out, "{}_bucket{{camera=\"{id}\",le=\"{}\"}} {n}", m.name, le / 1000.0);
                    }
                    let _ = writeln!(out, "{}_bucket{{camera=\"{id}\",le=\"+Inf\"}} {count}", m.name);
                    let _ = writeln!(out, "{}_sum{{camera=\"{id}\"}} {sum}", m.name);
                    let _ = writeln!(out, "{}_count{{camera=\"{id}\"}} {count}", m.name);
                }
            }
            (None, "haven_camera_rendition_viewers") => {
                for c in &cameras {
                    for r in &c.view.renditions {
                        let _ = writeln!(
                            out,
                            "{}{{camera=\"{}\",width=\"{}\",quality=\"{}\",overlay=\"{}\",format=\"{}\"}} {}",
                            m.name,
                            label(&c.view.camera_id),
                            r.width.unwrap_or(0),
                            r.quality.unwrap_or(0),
                            serde_plain(&r.overlay),
                            serde_plain(&r.format),
                            r.viewers
                        );
                    }
                }
            }
            (None, name @ ("haven_camera_model_inferences_total" | "haven_camera_model_inference_seconds")) => {
                for c in &cameras {
                    for (model, stats) in &c.view.models_stats {
                        let value = if name == "haven_camera_model_inferences_total" { stats.inferences as f64 } else { stats.inference_ms / 1000.0 };
                        let _ = writeln!(out, "{name}{{camera=\"{}\",model=\"{}\"}} {value}", label(&c.view.camera_id), label(model));
                    }
                }
            }
            (None, "haven_engine_inferences_total") => {
                let _ = writeln!(out, "{} {}", m.name, engine.calls);
            }
            (None, "haven_engine_model_inferences_total") => {
                for model in &engine.models {
                    let _ = writeln!(out, "{}{{model=\"{}\"}} {}", m.name, label(&model.name), model.calls);
                }
            }
            (None, "haven_process_resident_memory_bytes") => {
                let _ = writeln!(out, "{} {}", m.name, resident_bytes());
            }
            (None, other) => unreachable!("metric {other} has no renderer"),
        }
    }
    // The node's own health and the notification targets name no camera but the relay counters
    // do; all of it is for callers who see every camera.
    if !caller.0.cameras.is_all() {
        return Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(out));
    }
    if let Some(cluster) = &state.cluster {
        render_cluster(&mut out, &cluster.view());
    }
    render_notify(&mut out, &state.notify.targets());
    if let Some(mqtt) = &state.mqtt {
        render_mqtt(&mut out, &mqtt.view());
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(out))
}

/// Each notification target's deliveries (no address, no secret: only its name).
fn render_notify(out: &mut String, targets: &[crate::notify::TargetView]) {
    type Value = fn(&crate::notify::TargetView) -> u64;
    let metrics: [(&str, &str, &str, Value); 3] = [
        ("haven_notify_delivered_total", "counter", "Notifications the target took, since this process started.", |t| t.delivered),
        ("haven_notify_pending", "gauge", "Notifications waiting in the outbox for the target (retried with backoff).", |t| t.pending),
        ("haven_notify_failed_total", "counter", "Notifications given up after [notify] max_age_secs, since this process started.", |t| t.failed),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for t in targets {
            let _ = writeln!(out, "{name}{{target=\"{}\"}} {}", label(&t.name), value(t));
        }
    }
}

/// The MQTT link: connected, messages published, event changes dropped (never the credentials).
fn render_mqtt(out: &mut String, v: &crate::mqtt::MqttView) {
    for (name, kind, help, value) in [
        ("haven_mqtt_connected", "gauge", "1 while HAVEN is connected to its MQTT broker.", v.connected as u8 as u64),
        ("haven_mqtt_published_total", "counter", "MQTT messages handed to the broker (event changes once acknowledged).", v.published),
        ("haven_mqtt_dropped_total", "counter", "Event changes dropped from the full queue while the MQTT broker was away.", v.dropped),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// `GET /api/mqtt`: the broker link (its URL with credentials masked), or `enabled: false`.
pub async fn mqtt(state: web::Data<AppState>) -> HttpResponse {
    let view = state.mqtt.as_ref().map_or_else(crate::mqtt::MqttLink::off_view, |m| m.view());
    HttpResponse::Ok().json(view)
}

/// A cluster node's health: its NATS connection, its leases, its relays.
fn render_cluster(out: &mut String, v: &crate::cluster::ClusterView) {
    let node = label(&v.node);
    let scalars = [
        ("haven_cluster_nats_connected", "gauge", "1 while the node is connected to NATS.", v.nats_connected as u8 as f64),
        ("haven_cluster_live_nodes", "gauge", "Nodes whose heartbeat this node sees (itself included).", v.live_nodes.len() as f64),
        ("haven_cluster_cameras_owned", "gauge", "Cameras whose lease this node holds.", v.cameras_owned.len() as f64),
        ("haven_cluster_lease_renewals_total", "counter", "Lease renewals that succeeded.", v.lease_renewals as f64),
        ("haven_cluster_lease_renewal_failures_total", "counter", "Lease renewals that failed (NATS unreachable, or the lease lost).", v.lease_renewal_failures as f64),
        ("haven_cluster_leases_taken_total", "counter", "Cameras this node took over.", v.leases_taken as f64),
        ("haven_cluster_leases_lost_total", "counter", "Cameras whose lease another node held at renewal: stopped here at once.", v.leases_lost as f64),
        ("haven_cluster_leases_released_total", "counter", "Leases given up (drain, rebalance, camera removed).", v.leases_released as f64),
        ("haven_cluster_events_published_total", "counter", "Event changes (start, end, snapshot, clip) this node stored in the cluster's events stream.", v.events_published as f64),
        ("haven_cluster_events_unpublished_total", "counter", "Event changes given up after two minutes of failed publishing (kept on this node only).", v.events_unpublished as f64),
        ("haven_cluster_events_received_total", "counter", "Other nodes' event changes taken into this node's store.", v.events_received as f64),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {value}");
    }
    for (name, help, map) in [
        ("haven_cluster_relay_published_total", "Packets published for other nodes' viewers, per camera owned here.", &v.relay_published),
        ("haven_cluster_relay_published_bytes_total", "Bytes of the packets published for other nodes' viewers, per camera owned here.", &v.relay_published_bytes),
        ("haven_cluster_relay_received_total", "Packets received from the owner for this node's viewers, per camera.", &v.relay_received),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let mut cams: Vec<_> = map.iter().collect();
        cams.sort();
        for (camera, n) in cams {
            let _ = writeln!(out, "{name}{{node=\"{node}\",camera=\"{}\"}} {n}", label(camera));
        }
    }
}
