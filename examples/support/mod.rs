//! Shared by the benchmark examples: the real `haven` binary, started the way a user runs it.

#![allow(dead_code)] // each example uses its own part

pub mod help;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound and released; good enough for a benchmark).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `target/debug/haven` on `settings`, from the repository root, listening on its own port.
pub struct Haven {
    pub child: Child,
    pub port: u16,
}

impl Haven {
    /// Starts it with `env` added and returns once it listens. Its log goes to `log`, or nowhere.
    pub fn start(settings: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Haven {
        Self::start_exe(&repo().join("target/debug/haven"), settings, env, log)
    }

    /// Like `start`, with another build of the server (an older commit's, to compare side by side).
    pub fn start_exe(exe: &Path, settings: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Haven {
        assert!(exe.is_file(), "{} is missing: build the server first (cargo build)", exe.display());
        let port = free_port();
        let mut child = Command::new(exe)
            .current_dir(repo())
            .arg("--settings")
            .arg(settings)
            .env("HAVEN__SERVER__BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haven starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if line.contains("listening on") {
                break;
            }
        }
        let mut file = log.map(|p| std::fs::File::create(p).unwrap());
        std::thread::spawn(move || {
            for line in lines {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        assert!(child.try_wait().unwrap().is_none(), "haven exited during start-up");
        Haven { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

/// The shipped settings with only the first `n` of its cameras.
pub fn shipped_settings_with_cameras(n: usize) -> String {
    settings_with_cameras(&repo(), n)
}

fn settings_with_cameras(checkout: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(checkout.join("settings/default.toml")).unwrap();
    text.split("[[cameras]]").take(n + 1).collect::<Vec<_>>().join("[[cameras]]")
}

/// A build of the server to measure, with the settings file of the checkout it was built in (an
/// older build may not know a newer file's sections).
pub struct Build {
    pub exe: PathBuf,
    pub label: String,
}

impl Build {
    pub fn current() -> Self {
        Build { exe: repo().join("target/debug/haven"), label: "current".into() }
    }

    /// `PATH[=LABEL]`, PATH being `<checkout>/target/debug/haven`.
    pub fn parse(arg: &str) -> Self {
        let (path, label) = arg.split_once('=').unwrap_or((arg, arg));
        Build { exe: PathBuf::from(path), label: label.to_string() }
    }

    fn checkout(&self) -> PathBuf {
        self.exe.ancestors().nth(3).filter(|c| c.join("settings/default.toml").is_file()).map_or_else(repo, Path::to_path_buf)
    }

    pub fn settings_with_cameras(&self, n: usize) -> String {
        settings_with_cameras(&self.checkout(), n)
    }

    pub fn start(&self, settings: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Haven {
        Haven::start_exe(&self.exe, settings, env, log)
    }
}

/// The builds a benchmark runs side by side, round by round, each with environment added: this
/// tree's build ("this tree") and, from the command line, `--exe PATH[=LABEL]` (another checkout's
/// build, with that checkout's settings), `--variant LABEL:KEY=VALUE[,KEY=VALUE]` (this tree's build
/// with environment added: `HAVEN__MODEL__PRECISION=int8`, say), `--this COPY` (a copy of this tree's
/// build to run as this tree and its variants, so that building while it measures changes nothing)
/// and `--skip-this` (only the variants and other builds).
pub struct Builds {
    pub list: Vec<(Build, Vec<(String, String)>)>,
    this: PathBuf,
}

impl Builds {
    pub fn new() -> Self {
        let mut this = Build::current();
        this.label = "this tree".into();
        Builds { this: this.exe.clone(), list: vec![(this, Vec::new())] }
    }

    /// This tree's build (or its `--this` copy), under `label`.
    pub fn this(&self, label: &str) -> Build {
        Build { exe: self.this.clone(), label: label.to_string() }
    }

    /// Takes `arg` and, where it has one, its value when it is one of the options above; false when
    /// it is not.
    pub fn parse(&mut self, arg: &str, value: impl FnOnce() -> String) -> bool {
        match arg {
            "--skip-this" => self.list.retain(|(b, _)| b.label != "this tree"),
            "--this" => {
                let exe = PathBuf::from(value());
                for (b, _) in self.list.iter_mut().filter(|(b, _)| b.exe == self.this) {
                    b.exe = exe.clone();
                }
                self.this = exe;
            }
            "--exe" => self.list.push((Build::parse(&value()), Vec::new())),
            "--variant" => {
                let v = value();
                let (label, env) = v.split_once(':').expect("--variant LABEL:KEY=VALUE[,KEY=VALUE]");
                let env = env
                    .split(',')
                    .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).expect("KEY=VALUE"))
                    .collect();
                self.list.push((self.this(label), env));
            }
            _ => return false,
        }
        true
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// Minor page faults a process has taken so far.
pub fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(7).unwrap().parse().unwrap()
}

/// VmRSS, RssAnon and RssFile in MiB.
pub fn rss(pid: u32) -> [f64; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    [field("VmRSS:"), field("RssAnon:"), field("RssFile:")]
}

/// VmRSS in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    rss(pid)[0]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// A WebSocket viewer of `cam` (with a query string, if any) that reads every frame as a browser would (answering pings) and
/// hands each frame message's payload (text or binary) to `on_frame`, until the server closes.
pub async fn viewer(port: u16, cam: &str, mut on_frame: impl FnMut(&[u8]) + 'static) -> actix_web::rt::task::JoinHandle<()> {
    use futures_util::{SinkExt, StreamExt};
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{port}/ws/stream/{cam}"))
        .max_frame_size(16 << 20)
        .connect()
        .await
        .expect("viewer connects");
    actix_web::rt::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            match frame {
                awc::ws::Frame::Text(bytes) | awc::ws::Frame::Binary(bytes) => on_frame(&bytes),
                awc::ws::Frame::Ping(p) => {
                    let _ = ws.send(awc::ws::Message::Pong(p)).await;
                }
                _ => {}
            }
        }
    })
}
