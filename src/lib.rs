//! HAVEN: a real-time multi-camera video analytics server.
//!
//! `Application::build` loads the engine, registers the cameras and binds the HTTP server;
//! tests start it in-process on port 0.

pub mod analyze;
pub mod api;
pub mod auth;
pub mod camera;
pub mod cluster;
pub mod config;
pub mod evaluate;
pub mod events;
pub mod frame_pool;
pub mod hub;
pub mod inference;
pub mod jpeg;
pub mod memory;
pub mod mqtt;
pub mod notify;
pub mod redact;
pub mod reload;
pub mod settings;
pub mod text;
pub mod tls;
pub mod zones;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::api::AppState;
use crate::camera::clock::SystemClock;
use crate::camera::source::OpenCvOpener;
use crate::camera::CameraDeps;
use crate::cluster::Cluster;
use crate::reload::{LiveSections, WatchedFile};
use crate::events::EventHub;
use crate::hub::{Register, SettingsFile, StartAll, StopAll, StreamHub};
use crate::hub::ModelCatalog;
use crate::inference::scheduler::Scheduler;
use crate::inference::Engines;
use crate::notify::Notifier;
use crate::settings::Settings;

/// The most a connection's kernel send buffer holds before the socket counts as full.
const UNSENT_BYTES_LIMIT: u32 = 32 * 1024;

/// Caps what the kernel queues for a client that reads slowly. Linux grows a socket's send buffer
/// to megabytes, on loopback dozens of frames: a slow viewer would see seconds-old video and a
/// close frame would wait behind it. With the cap, the socket takes a frame only when the previous
/// one has almost gone, and the viewer's session keeps the newest packet instead. A frame then goes
/// out in several writes, so Nagle's algorithm is turned off: with it, the last piece of each frame
/// waited for the client's delayed ACK (measured: +24 ms per frame while inference kept the cores busy).
fn limit_unsent_bytes(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_BYTES_LIMIT) {
            log::warn!("cannot cap a connection's send buffer: {e}");
        }
        let _ = stream.set_nodelay(true);
    }
}

/// How long shutdown waits for camera threads to let go of their sources.
const CAMERA_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the MQTT broker to take the last event changes and `offline`.
const MQTT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("{0}")]
    Hub(#[from] hub::HubError),
    #[error("event store: {0}")]
    Events(String),
    #[error("{0}")]
    Notify(#[from] notify::NotifyError),
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("the camera registry stopped during start-up")]
    Mailbox(#[from] actix::MailboxError),
    /// A camera names classes no loaded model has (`object_events`), or models the server lacks.
    #[error("{0}")]
    Models(String),
    #[error("{0}")]
    Mqtt(#[from] mqtt::MqttError),
    #[error("{0}")]
    Accounts(#[from] auth::StoreError),
    /// No account and no `api.token`: anyone reaching the server could do anything.
    #[error("server.bind {0} is not a loopback address, and this server has no account and no api.token: anyone reaching it could watch every camera and change everything. Add an account (haven user add NAME --role admin), or set api.token, or bind 127.0.0.1")]
    OpenOutsideLoopback(String),
}

/// Process-wide defaults OpenCV reads from the environment: quiet logs, RTSP over TCP (UDP loses
/// packets behind NAT and firewalls) with a short probe so the first frame comes fast. Call it before
/// any thread starts (`main` does); values already set by the user win.
pub fn configure_process_env() {
    for (key, value) in [
        ("OPENCV_LOG_LEVEL", "ERROR"),
        ("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;500000|probesize;500000"),
    ] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
}

/// A started HAVEN: cameras running, HTTP server bound (but served only once awaited).
pub struct Application {
    server: Server,
    port: u16,
    hub: Addr<StreamHub>,
    settings_file: Option<PathBuf>,
    cluster: Option<Arc<Cluster>>,
    mqtt: Option<Arc<mqtt::MqttLink>>,
    /// The accounts, for the audit log of reloads.
    accounts: Arc<auth::AccountStore>,
}

impl Application {
    /// Must run inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    /// `engines`: the loaded models by name (`Engines`), or one pose engine (`Option<Arc<dyn AiEngine>>`).
    pub async fn build(settings: Settings, engines: impl Into<Engines>) -> Result<Self, AppError> {
        let engines = engines.into();
        let catalog = ModelCatalog::new(settings.models.keys().cloned(), &engines);
        for camera in &settings.cameras {
            catalog.check(camera).map_err(|e| AppError::Models(format!("{}: {e}", settings.origin)))?;
        }
        let access = open_access(&settings)?;
        // Bind first: a taken port should fail before any camera thread starts.
        let bind_error = |source| AppError::Bind { bind: settings.server.bind.clone(), source };
        let listener = TcpListener::bind(&settings.server.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();

        // The store is always open (past events stay browsable); cameras feed it only when events are on.
        let events = EventHub::open(&settings.events).map_err(|e| AppError::Events(e.to_string()))?;
        // MQTT's event changes are one of the notifier's targets: prepared first, started later.
        let mqtt = mqtt::MqttLink::prepare(&settings.mqtt, settings.cluster.as_ref().map(|c| c.node_name.as_str()))?;
        let mut targets = Notifier::webhooks(&settings.notify)?;
        targets.extend(mqtt.as_ref().map(mqtt::Prepared::target));
        let notifier = Notifier::start(&settings.notify, targets, &events)?;
        let live = LiveSections::new(&settings, events.live_settings());
        // In a cluster the settings file only seeds the inventory, which lives in NATS from then on:
        // camera changes are not written back to the file, nor read from it again.
        let settings_file = if settings.cluster.is_some() { None } else { settings.file.clone() };
        let file = settings_file.clone().map(|path| Box::new(WatchedFile::new(path, settings.clone(), live.clone())) as Box<dyn SettingsFile>);
        let hub = StreamHub::new(camera_deps(&settings, engines, &events, &live), file).with_catalog(catalog).start();
        // Before the cameras: their first events go out too.
        let mqtt = mqtt.map(|prepared| mqtt::start(prepared, hub.clone(), events.clone(), notifier.clone(), access.store.clone()));
        let cluster = start_cameras(&settings, &hub, &events, &notifier, &access.store).await?;
        if let (Some(mqtt), Some(cluster)) = (&mqtt, &cluster) {
            mqtt.join_cluster(cluster.clone());
        }
        let accounts = access.store.clone();
        let state = AppState { hub: hub.clone(), stream: live.stream.clone(), alerts: live.alerts.clone(), api: settings.api.clone(), cluster: cluster.clone(), mqtt: mqtt.clone(), notify: notifier, access };
        let server = serve_http(&settings, listener, state, events).map_err(bind_error)?;
        match &cluster {
            Some(c) => log::info!("HAVEN listening on http://127.0.0.1:{port} (cluster node {})", c.node),
            None => log::info!("HAVEN listening on http://127.0.0.1:{port} ({} cameras)", settings.cameras.len()),
        }
        Ok(Self { server, port, hub, settings_file, cluster, mqtt, accounts })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn hub(&self) -> Addr<StreamHub> {
        self.hub.clone()
    }

    /// A handle that stops the whole application as SIGTERM would.
    pub fn stopper(&self) -> Stopper {
        Stopper { hub: self.hub.clone(), server: self.server.handle(), cluster: self.cluster.clone(), mqtt: self.mqtt.clone() }
    }

    /// Serves until SIGINT or SIGTERM, then stops cleanly. SIGHUP, or a change of the settings file
    /// on disk, reloads its cameras.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopper = self.stopper();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            log::info!("Shutting down...");
            stopper.stop().await;
        });
        self.run().await
    }

    /// Serves until stopped through a `Stopper`; watches the settings file it was loaded from.
    pub async fn run(self) -> std::io::Result<()> {
        if let Some(path) = self.settings_file.clone() {
            actix_web::rt::spawn(reload::watch(path, self.hub.clone(), Some(self.accounts.clone())));
        }
        self.server.await
    }
}

/// The accounts beside the event store. A server with neither accounts nor `api.token` is open to
/// whoever reaches it, so it binds loopback addresses only, and says so.
fn open_access(settings: &Settings) -> Result<Arc<api::access::Access>, AppError> {
    let store = Arc::new(auth::AccountStore::open(&settings.events.data_dir)?);
    let access = api::access::Access::new(store, &settings.api, settings.auth.clone());
    if access.is_open().map_err(|e| AppError::Events(e.to_string()))? {
        use std::net::ToSocketAddrs;
        let bind = &settings.server.bind;
        let loopback = bind.to_socket_addrs().is_ok_and(|mut addrs| addrs.all(|a| a.ip().is_loopback()));
        if !loopback {
            return Err(AppError::OpenOutsideLoopback(bind.clone()));
        }
        log::warn!("no account and no api.token: the API is open to anyone on this machine (loopback only); add an account with `haven user add NAME --role admin`");
    } else if access.has_accounts().unwrap_or(false) {
        log::info!("accounts: every route but the login page needs a session or a token");
    }
    Ok(Arc::new(access))
}

/// What every camera is given: the shared models, the live `[detection]`, the events, the real
/// source opener and clock.
fn camera_deps(settings: &Settings, engines: Engines, events: &Arc<EventHub>, live: &LiveSections) -> CameraDeps {
    let inference = (!engines.is_empty()).then(|| Scheduler::with_engines(engines, settings.detection.worker_count()));
    CameraDeps {
        inference,
        capture: Arc::new(settings.capture.clone()),
        detection: live.detection.clone(),
        events: settings.events.enabled.then(|| events.clone()),
        opener: Arc::new(OpenCvOpener),
        clock: Arc::new(SystemClock::default()),
        wait_for_models: false,
    }
}

/// A single server registers and starts its cameras; a cluster node joins the cluster, which
/// registers the inventory and starts cameras only where this node holds their lease.
async fn start_cameras(settings: &Settings, hub: &Addr<StreamHub>, events: &Arc<EventHub>, notifier: &Arc<Notifier>, accounts: &Arc<auth::AccountStore>) -> Result<Option<Arc<Cluster>>, AppError> {
    let Some(cluster) = &settings.cluster else {
        for camera in &settings.cameras {
            hub.send(Register { config: camera.clone(), persist: false }).await??;
        }
        hub.send(StartAll).await?;
        return Ok(None);
    };
    let cluster = Cluster::join(cluster, &settings.cameras, hub.clone()).await?;
    cluster.link_events(events.clone(), &settings.events).await?;
    let notifier = notifier.clone();
    cluster.share_snoozes(Box::new(move |camera, until| notifier.hold_snooze(camera, until))).await?;
    cluster.share_accounts(accounts.clone()).await?;
    cluster.sync().await?;
    actix_web::rt::spawn(cluster.clone().run());
    Ok(Some(cluster))
}

/// The HTTP server on the bound listener (served once awaited).
fn serve_http(settings: &Settings, listener: TcpListener, state: AppState, events: Arc<EventHub>) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let events = web::Data::new(events);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(events.clone())
            .wrap(actix_web::middleware::from_fn(api::access::gate))
            .configure(api::routes)
    })
    .on_connect(limit_unsent_bytes)
    .disable_signals()
    .shutdown_timeout(2);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.listen(listener)?.run())
}

#[derive(Clone)]
pub struct Stopper {
    hub: Addr<StreamHub>,
    server: ServerHandle,
    cluster: Option<Arc<Cluster>>,
    mqtt: Option<Arc<mqtt::MqttLink>>,
}

impl Stopper {
    /// Stops every camera (viewers get a close frame), hands a cluster node's cameras over (their
    /// leases deleted once they have stopped), then stops the HTTP server.
    pub async fn stop(&self) {
        let _ = self.hub.send(StopAll { timeout: CAMERA_STOP_TIMEOUT }).await;
        if let Some(cluster) = &self.cluster {
            cluster.drain().await;
        }
        // The cameras' last event changes, then `offline` (retained) and a clean disconnect.
        if let Some(mqtt) = &self.mqtt {
            mqtt.shutdown(MQTT_STOP_TIMEOUT).await;
        }
        // Give sessions a moment to flush their close frames.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.server.stop(true).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
