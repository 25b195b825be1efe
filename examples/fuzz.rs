//! Bounded fuzzing of the two places HAVEN parses untrusted text: the settings file and the API's
//! request bodies and query strings. Deterministic (seeded xorshift), time-bounded, no extra crates.
//!
//! `cargo build && cargo run --example fuzz -- [--settings-secs 60] [--api-secs 120] [--seed N]`
//!
//! Part 1, in process: settings texts made by mutating the shipped `settings/default.toml` (byte flips,
//! deleted spans, duplicated and swapped lines, values replaced by hostile tokens: NaN, inf, 1e309,
//! i64 extremes, 1e-30, strings, arrays, tables; truncation; random bytes) are fed to
//! `Settings::from_toml` and, one in ten, written to a file for `Settings::load` (the `config` crate
//! path the server really uses). Checked: no panic; whatever is accepted passes `validate()` again and
//! every duration it implies (1/fps, timeouts, rolls) converts to a `Duration` without panicking.
//!
//! Part 2, against the real `target/debug/haven` (one camera, AI off, settings in a scratch copy):
//! POST /api/cameras and PATCH /api/cameras/{id} with structured random bodies (each field present or
//! not, with a valid, boundary, wrong-typed or hostile value), mutated valid bodies, random bytes and
//! deep nesting; GET /api/events with random filters, GET /api/events/{random id}, and the viewer rate
//! `?fps=` of /api/cameras/{id}/mjpeg. Checked: every request is answered; 2xx or 4xx, never 5xx; a 4xx
//! carries `{"error": "…"}`; a camera created is deleted again (204); the server is up at the end, its
//! camera still streams, and its log holds no panic. Failures are listed with a reproducer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use haven::settings::Settings;
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;
use support::{repo, Haven};


struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOML_TOKENS: &[&str] = &[
    "nan", "inf", "-inf", "+inf", "1e309", "-1e309", "1e-30", "1e-300", "0", "-0", "-1", "0.0", "-0.5",
    "9223372036854775807", "-9223372036854775808", "99999999999999999999", "18446744073709551616",
    "4294967296", "65536", "255", "256", "2048", "2049", "31", "33", "120.000001", "3600.1", "true", "false",
    "\"\"", "\"x\"", "\"80\"", "\"../../etc/passwd\"", "\"rtsp://u:p@h/x\"", "[]", "[1, 2]", "{}", "{ a = 1 }",
    "1979-05-27T07:32:00Z", "0x10", "0o7", "0b1", "1_000", "'''multi\nline'''", "\"\\u0000\"", "\"é\"",
    "[[cameras]]", "[server]", "[events.fall]", "=", "[", "]", "\"", "#", "\n", "\u{0}", "\u{feff}",
];

/// One mutation of `text`.
fn mutate_toml(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match rng.below(8) {
        // A value replaced by a hostile token (the most productive: it gets past the parser).
        0..=2 => {
            let candidates: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
            if let Some(&i) = candidates.get(rng.below(candidates.len())) {
                let key = lines[i].split(" = ").next().unwrap().to_string();
                lines[i] = format!("{key} = {}", rng.pick(TOML_TOKENS));
            }
        }
        3 => {
            // A line duplicated, deleted or swapped.
            if !lines.is_empty() {
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                match rng.below(3) {
                    0 => {
                        let l = lines[i].clone();
                        lines.insert(j, l);
                    }
                    1 => {
                        lines.remove(i);
                    }
                    _ => lines.swap(i, j),
                }
            }
        }
        4 => {
            // A token inserted anywhere.
            let i = rng.below(lines.len() + 1);
            lines.insert(i.min(lines.len()), rng.pick(TOML_TOKENS).to_string());
        }
        5 => {
            // A new key in a random table.
            let i = rng.below(lines.len() + 1);
            lines.insert(i.min(lines.len()), format!("k{} = {}", rng.below(100), rng.pick(TOML_TOKENS)));
        }
        _ => {
            // Byte-level: flips, a deleted span, or a truncation.
            let mut bytes = lines.join("\n").into_bytes();
            if bytes.is_empty() {
                return String::new();
            }
            match rng.below(3) {
                0 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.next() as u8;
                    }
                }
                1 => {
                    let a = rng.below(bytes.len());
                    let b = (a + rng.below(200)).min(bytes.len());
                    bytes.drain(a..b);
                }
                _ => bytes.truncate(rng.below(bytes.len())),
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    lines.join("\n")
}

/// Whatever the server derives from accepted settings must not panic later.
fn check_accepted(s: &Settings) -> Result<(), String> {
    s.validate().map_err(|e| format!("accepted but validate() now fails: {e}"))?;
    let secs = [
        ("1/stream.fps_limit", 1.0 / s.stream.fps_limit),
        ("1/stream.max_fps", 1.0 / s.stream.max_fps),
        ("stream.heartbeat_interval_secs", s.stream.heartbeat_interval_secs),
        ("stream.client_timeout_secs", s.stream.client_timeout_secs),
        ("stream.send_timeout_secs", s.stream.send_timeout_secs),
        ("capture.watchdog_secs", s.capture.watchdog_secs),
        ("capture.reconnect_initial_secs", s.capture.reconnect_initial_secs),
        ("capture.reconnect_max_secs", s.capture.reconnect_max_secs),
        ("events.pre_roll_secs", s.events.pre_roll_secs),
        ("events.post_roll_secs", s.events.post_roll_secs),
        ("events.max_clip_secs", s.events.max_clip_secs),
        ("events.person_min_secs", s.events.person_min_secs),
        ("events.retention_days (as seconds)", s.events.retention_days * 86400.0),
        ("events.tracker.max_unseen_secs", s.events.tracker.max_unseen_secs),
        ("events.fall.min_duration_secs", s.events.fall.min_duration_secs as f64),
    ];
    for (name, v) in secs {
        if Duration::try_from_secs_f64(v).is_err() {
            return Err(format!("accepted {name} = {v:e}, which is no Duration (the server would panic on it)"));
        }
    }
    for cam in &s.cameras {
        if let Some(f) = &cam.fall {
            if Duration::try_from_secs_f64(f.min_duration_secs as f64).is_err() {
                return Err(format!("camera {}: accepted fall.min_duration_secs = {}", cam.camera_id, f.min_duration_secs));
            }
        }
    }
    Ok(())
}

/// The lines of `text` that the shipped file lacks: a short reproducer.
fn changed_lines(text: &str, shipped: &str) -> String {
    let known: std::collections::HashSet<&str> = shipped.lines().collect();
    let changed: Vec<&str> = text.lines().filter(|l| !known.contains(l)).collect();
    format!("shipped settings with: {}", changed.join(" | "))
}

fn fuzz_settings(rng: &mut Rng, seconds: f64, failures: &mut BTreeMap<String, String>) -> (u64, u64, u64) {
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("haven-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fuzz.toml");
    let (mut total, mut accepted, mut loaded) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    // Panics are caught and recorded; keep their messages off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        let text = if rng.chance(0.03) {
            let n = rng.below(2000);
            String::from_utf8_lossy(&(0..n).map(|_| rng.next() as u8).collect::<Vec<_>>()).into_owned()
        } else {
            let mut t = shipped.clone();
            for _ in 0..1 + rng.below(4) {
                t = mutate_toml(rng, &t);
            }
            t
        };
        total += 1;
        let result = std::panic::catch_unwind(|| Settings::from_toml(&text, "fuzz.toml"));
        match result {
            Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.entry(format!("from_toml panicked: {}", msg.unwrap_or_default())).or_insert(changed_lines(&text, &shipped));
            }
            Ok(Ok(s)) => {
                accepted += 1;
                if let Err(e) = check_accepted(&s) {
                    failures.entry(format!("from_toml {e}")).or_insert(changed_lines(&text, &shipped));
                }
            }
            Ok(Err(_)) => {}
        }
        if total % 10 == 0 {
            std::fs::write(&file, &text).unwrap();
            match std::panic::catch_unwind(|| Settings::load(&file)) {
                Err(_) => {
                    failures.entry("Settings::load panicked".into()).or_insert(changed_lines(&text, &shipped));
                }
                Ok(Ok(s)) => {
                    loaded += 1;
                    if let Err(e) = check_accepted(&s) {
                        failures.entry(format!("load {e}")).or_insert(changed_lines(&text, &shipped));
                    }
                }
                Ok(Err(_)) => {}
            }
        }
    }
    let _ = std::panic::take_hook();
    let _ = std::fs::remove_dir_all(&dir);
    (total, accepted, loaded)
}

/// A value for a camera field: valid, boundary, wrong type or hostile.
fn field_value(rng: &mut Rng, field: &str) -> Value {
    let hostile = [json!(null), json!(""), json!([]), json!({}), json!(1e308), json!(-1), json!("x".repeat(5000)), json!(true)];
    if rng.chance(0.2) {
        return rng.pick(&hostile).clone();
    }
    match field {
        "camera_id" => json!(rng.pick(&["fz", "cam1", "", " ", "a b", "ü", "../x", "a.b-c_d", "x\u{0}y"]).to_string() + &rng.below(1000).to_string()),
        "source" => json!(*rng.pick(&[
            "data/1.mp4", "data/2.mp4", "/etc/passwd", "data/../data/1.mp4", "data/nope.mp4", "data", "",
            "rtsp://u:p@127.0.0.1:1/x", "rtsp://", "file:///etc/passwd", "data/1.mp4\u{0}.txt", "./data/1.mp4",
        ])),
        "source_type" => rng.pick(&[json!("video_file"), json!("rtsp"), json!("webcam"), json!(1), json!("VIDEO_FILE")]).clone(),
        "loop_video" | "ai_enabled" => rng.pick(&[json!(true), json!(false), json!("yes"), json!(0), json!(1)]).clone(),
        "resize_width" => rng.pick(&[json!(null), json!(0), json!(15), json!(16), json!(320), json!(7680), json!(7681), json!(-1), json!(4294967296u64), json!("640"), json!(320.5)]).clone(),
        "jpeg_quality" => rng.pick(&[json!(0), json!(1), json!(80), json!(100), json!(101), json!(255), json!(256), json!(-1), json!("80"), json!(80.5)]).clone(),
        "max_fps" => rng.pick(&[json!(null), json!(0), json!(-1), json!(1e-300), json!(5e-324), json!(0.5), json!(120), json!(120.0001), json!(1e308), json!("5")]).clone(),
        "fall" => rng.pick(&[
            json!(null), json!({}), json!({"enabled": true, "sensitivity": 0.5, "min_duration_secs": 1.5}),
            json!({"enabled": true, "sensitivity": 2, "min_duration_secs": 1}), json!({"enabled": true, "sensitivity": -1, "min_duration_secs": 1}),
            json!({"enabled": true, "sensitivity": 0.5, "min_duration_secs": 3.4e38}), json!({"enabled": true, "sensitivity": 0.5, "min_duration_secs": -1}),
            json!({"enabled": true, "sensitivity": 0.5, "min_duration_secs": 0}), json!({"enabled": "no"}), json!({"colour": 1}),
        ]).clone(),
        _ => json!(rng.below(10)),
    }
}

const CAMERA_FIELDS: &[&str] = &["camera_id", "source", "source_type", "loop_video", "ai_enabled", "resize_width", "jpeg_quality", "max_fps", "fall"];
const PATCH_FIELDS: &[&str] = &["ai_enabled", "jpeg_quality", "resize_width", "loop_video", "max_fps"];

fn body(rng: &mut Rng, fields: &[&str]) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    if fields.len() > 5 && rng.chance(0.3) {
        // A valid camera with one field (or none) replaced: gets past validation far more often.
        obj = json!({"camera_id": format!("fz{}", rng.below(1_000_000)), "source": "data/1.mp4", "source_type": "video_file",
            "ai_enabled": false, "resize_width": 160, "max_fps": 2}).as_object().unwrap().clone();
        if rng.chance(0.8) {
            let f = *rng.pick(fields);
            obj.insert(f.to_string(), field_value(rng, f));
        }
        return serde_json::to_vec(&Value::Object(obj)).unwrap();
    }
    for f in fields {
        if rng.chance(0.7) {
            obj.insert(f.to_string(), field_value(rng, f));
        }
    }
    if rng.chance(0.1) {
        obj.insert(format!("extra{}", rng.below(10)), json!(1));
    }
    let mut bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
    match rng.below(20) {
        0 => {
            // Byte flips in an otherwise valid body.
            for _ in 0..1 + rng.below(4) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
            }
        }
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 => bytes = (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        3 => {
            let depth = 1 + rng.below(5000);
            bytes = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        4 => bytes = format!("{{\"camera_id\": \"{}\"}}", "a".repeat(rng.below(70_000))).into_bytes(),
        5 => bytes = rng.pick(&[&b"null"[..], b"[]", b"1", b"\"x\"", b"", b"{}", b"{\"a\":1,\"a\":2}"]).to_vec(),
        _ => {}
    }
    bytes
}

fn query_value(rng: &mut Rng) -> String {
    rng.pick(&["1", "0", "-1", "5", "1000", "5000", "1e400", "nan", "NaN", "inf", "-inf", "1e-20", "1e-300", "abc", "", "%00", "%FF", "1.5", "99999999999999999999", "person_detected", "fall", "cam1"]).to_string()
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("fuzz.rs"));
    let (mut settings_secs, mut api_secs, mut seed) = (60.0, 120.0, 0x2545_f491_4f6c_dd1du64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--settings-secs" => settings_secs = args.next().unwrap().parse().unwrap(),
            "--api-secs" => api_secs = args.next().unwrap().parse().unwrap(),
            "--seed" => seed = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut rng = Rng(seed | 1);
    let mut failures: BTreeMap<String, String> = BTreeMap::new();

    let t0 = Instant::now();
    let (total, accepted, loaded) = fuzz_settings(&mut rng, settings_secs, &mut failures);
    println!("# settings: {total} texts in {:.0} s ({accepted} accepted by from_toml, {} through Settings::load, {loaded} accepted)",
        t0.elapsed().as_secs_f64(), total / 10);

    // Part 2: the real server.
    let dir = std::env::temp_dir().join(format!("haven-fuzz-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = dir.join("haven.toml");
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let one = shipped.split("[[cameras]]").take(2).collect::<Vec<_>>().join("[[cameras]]");
    std::fs::write(&settings, one.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", dir.join("events").display()))).unwrap();
    let log_path = dir.join("server.log");
    let mut haven = Haven::start(&settings, &[("HAVEN__MODEL__ENABLED", "false"), ("RUST_BACKTRACE", "0")], Some(&log_path));
    let port = haven.port;

    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let mut codes: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    let (mut requests, mut created) = (0u64, 0u64);
    let t1 = Instant::now();
    let deadline = t1 + Duration::from_secs_f64(api_secs);
    while Instant::now() < deadline {
        let kind = rng.below(10);
        let (label, method, path, payload): (&str, &str, String, Option<Vec<u8>>) = match kind {
            0..=3 => ("POST /api/cameras", "POST", "/api/cameras".into(), Some(body(&mut rng, CAMERA_FIELDS))),
            4..=6 => {
                let id = if rng.chance(0.9) { "cam1".to_string() } else { rng.pick(&["nope", "%2e%2e", "cam1%00", "x".repeat(3000).as_str()]).to_string() };
                ("PATCH /api/cameras/{id}", "PATCH", format!("/api/cameras/{id}"), Some(body(&mut rng, PATCH_FIELDS)))
            }
            7 => {
                let mut q = Vec::new();
                for k in ["camera", "kind", "since", "until", "limit"] {
                    if rng.chance(0.5) {
                        q.push(format!("{k}={}", query_value(&mut rng)));
                    }
                }
                ("GET /api/events?…", "GET", format!("/api/events?{}", q.join("&")), None)
            }
            8 => ("GET /api/events/{id}", "GET", format!("/api/events/{}", query_value(&mut rng)), None),
            _ => ("GET /api/cameras/cam1/mjpeg?fps=", "GET", format!("/api/cameras/cam1/mjpeg?fps={}", query_value(&mut rng)), None),
        };
        requests += 1;
        let url = format!("http://127.0.0.1:{port}{path}");
        let req = match method {
            "POST" => client.post(url),
            "PATCH" => client.patch(url),
            _ => client.get(url),
        };
        let sent = match &payload {
            Some(b) => req.content_type("application/json").send_body(b.clone()).await,
            None => req.send().await,
        };
        let repro = format!("{method} {path} {}", payload.as_ref().map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()).unwrap_or_default());
        let mut res = match sent {
            Ok(r) => r,
            Err(e) => {
                *codes.entry(label.into()).or_default().entry(0).or_default() += 1;
                failures.entry(format!("{label}: no answer ({e})")).or_insert(repro);
                continue;
            }
        };
        let code = res.status().as_u16();
        *codes.entry(label.into()).or_default().entry(code).or_default() += 1;
        if label.contains("mjpeg") && code == 200 {
            continue; // a stream: its headers are the answer
        }
        let bytes = res.body().limit(8 << 20).await.unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if code >= 500 {
            failures.entry(format!("{label}: {code} {}", answer["error"].as_str().unwrap_or("?").chars().take(120).collect::<String>())).or_insert(repro.clone());
        } else if code >= 400 && !answer["error"].is_string() {
            failures.entry(format!("{label}: {code} without a JSON error")).or_insert(repro.clone());
        }
        if method == "POST" && code == 201 {
            created += 1;
            let id = answer["camera_id"].as_str().unwrap_or_default().to_string();
            let url = format!("http://127.0.0.1:{port}/api/cameras/{}", id);
            match client.delete(url).send().await {
                Ok(r) if r.status().as_u16() == 204 => {}
                other => {
                    failures.entry(format!("DELETE of a created camera: {:?}", other.map(|r| r.status()))).or_insert(repro);
                }
            }
        }
    }
    let elapsed = t1.elapsed().as_secs_f64();

    // The server is up, its camera streams, its log holds no panic.
    let alive = haven.child.try_wait().unwrap().is_none();
    let status: Value = match client.get(format!("http://127.0.0.1:{port}/api/cameras/cam1")).send().await {
        Ok(mut r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let f0 = status["frames_decoded"].as_u64().unwrap_or(0);
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let f1 = match client.get(format!("http://127.0.0.1:{port}/api/cameras/cam1")).send().await {
        Ok(mut r) => r.json::<Value>().await.unwrap_or(Value::Null)["frames_decoded"].as_u64().unwrap_or(0),
        Err(_) => 0,
    };
    let exit = haven.stop();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut panics: BTreeMap<String, u64> = BTreeMap::new();
    let lines: Vec<&str> = log.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("panicked at") {
            let what = lines.get(i + 1).copied().unwrap_or("");
            *panics.entry(format!("{} — {what}", l.split("panicked at").nth(1).unwrap_or("").trim())).or_default() += 1;
        }
    }

    println!("# API: {requests} requests in {elapsed:.0} s against the real server ({created} cameras created and deleted)");
    println!("| request | answers by status |");
    println!("|---|---|");
    for (label, by) in &codes {
        let list: Vec<String> = by.iter().map(|(c, n)| if *c == 0 { format!("no answer: {n}") } else { format!("{c}: {n}") }).collect();
        println!("| {label} | {} |", list.join(", "));
    }
    println!("server alive at the end: {alive}; cam1 decoded {} frames in the last 2 s; exit after SIGTERM: {exit}", f1.saturating_sub(f0));
    println!("panics in the server log: {}", if panics.is_empty() { "none".to_string() } else { String::new() });
    for (p, n) in &panics {
        println!("  {n}× {p}");
    }
    println!("failures: {}", failures.len());
    for (what, repro) in &failures {
        println!("- {what}\n    reproducer: {}", repro.replace('\n', "\\n").chars().take(400).collect::<String>());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
