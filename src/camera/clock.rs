//! A camera's sense of time, injected so that its pacing, backoff and rates can be tested in
//! simulated time (the way moonfire-nvr's streamer takes its `Clocks`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Monotonic time since the clock started.
    fn monotonic(&self) -> Duration;
    /// Wall-clock time in seconds since the Unix epoch: a frame's capture time.
    fn wall(&self) -> f64;
    fn sleep(&self, d: Duration);
    /// A number in [0, 1) that spreads retries of cameras that failed together.
    fn jitter(&self) -> f64;
}

/// The real clocks: `Instant` and `SystemTime`.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self { start: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }

    fn wall(&self) -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn jitter(&self) -> f64 {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        (nanos % 1000) as f64 / 1000.0
    }
}

/// Simulated time: sleeping moves time on at once, and so can a scripted source. Unit tests use it
/// with a breath of real time per sleep; `haven analyze` without one (a video as fast as the CPU
/// allows, in the video's own time).
pub struct SimClock {
    now: std::sync::Mutex<Duration>,
    jitter: f64,
    /// Real time slept per simulated sleep.
    breath: Duration,
}

/// Where simulated wall time starts (an arbitrary instant, 2027-01-15).
pub const SIM_EPOCH: f64 = 1_800_000_000.0;

impl SimClock {
    /// Starts at `SIM_EPOCH`; every `jitter()` returns `jitter`; each sleep lets 200 µs of real time
    /// pass, so that other threads (a live source's reader, the test, other cameras) run between
    /// simulated steps and a looping camera does not spin a core.
    pub fn new(jitter: f64) -> Self {
        Self { now: std::sync::Mutex::new(Duration::ZERO), jitter, breath: Duration::from_micros(200) }
    }

    /// Simulated time that never waits for real time.
    pub fn instant() -> Self {
        Self { breath: Duration::ZERO, ..Self::new(0.0) }
    }

    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Duration {
        *self.now.lock().unwrap()
    }

    fn wall(&self) -> f64 {
        SIM_EPOCH + self.monotonic().as_secs_f64()
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
        if !self.breath.is_zero() {
            std::thread::sleep(self.breath);
        }
    }

    fn jitter(&self) -> f64 {
        self.jitter
    }
}
