//! Keeping the process's memory from creeping up over days.
//!
//! HAVEN's threads pass large buffers to one another: a JPEG and its JSON message are made on a
//! camera thread and freed on whichever HTTP worker sent them last; clip frames are freed on the
//! writer thread. glibc's allocator gives every thread an arena of its own and keeps what is freed
//! there for reuse rather than returning it to the system, so with buffers that change size from
//! frame to frame the arenas fragment and the resident size drifts up although the live data does
//! not grow (`docs/soak.md`). Fewer arenas and a periodic `malloc_trim` give it back; the pose
//! engine's buffer pool is trimmed of buffers no pass has wanted for a while first.

use std::time::Duration;

/// Arenas glibc may create (its default is 8 per core; 4 until issue 25, where 2 held the README's
/// demo 19 MiB lower, docs/performance.md "Memory").
const MAX_ARENAS: i32 = 2;
/// The pose engine's idle buffers held at most (the engine's own default is 256 MiB): one pose pass
/// at 640x480 leaves 36 MiB of them; what a rarer, larger pass (the fall model's) needs beyond this is
/// allocated afresh for it. `HAVEN_POOL_MAX_MIB` overrides it.
const POOL_MAX_MIB: usize = 48;
/// How often freed memory is handed back to the system. Every 2 s held the README's demo no lower
/// within the noise, and a trim can hold an arena's lock for tens of milliseconds on a loaded
/// machine (the slowest of each minute is logged with glibc's figures; issue 25).
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// glibc's figures are logged every this many trims (a minute).
const LOG_EVERY: u64 = 6;
/// The pose engine's idle buffers that no pass has taken for this long are freed (sizes only an
/// earlier pass needed: another model's, larger regions'); the rest stay for the next passes.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Limits the allocator's arenas and starts a thread that returns freed memory every `TRIM_EVERY`.
/// Call once, early in `main`, before other threads start.
pub fn keep_tidy() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's own variables (MALLOC_ARENA_MAX=…), when set, win: they are how a setting is measured.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt and malloc_trim are thread-safe glibc calls with plain integer arguments.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS) };
        }
        let mib = std::env::var("HAVEN_POOL_MAX_MIB").ok().and_then(|v| v.trim().parse::<usize>().ok());
        haven_pose::set_pool_limit(mib.unwrap_or(POOL_MAX_MIB) << 20);
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
            let mut slowest = Duration::ZERO;
            for round in 1u64.. {
                std::thread::sleep(TRIM_EVERY);
                let freed = haven_pose::trim_pool(POOL_IDLE);
                if freed > 0 {
                    log::trace!("freed {:.1} MiB of idle pose buffers", freed as f64 / 1048576.0);
                }
                let t0 = std::time::Instant::now();
                // SAFETY: malloc_trim is a thread-safe glibc call with a plain integer argument.
                unsafe { libc::malloc_trim(0) };
                slowest = slowest.max(t0.elapsed());
                if round % LOG_EVERY == 0 && log::log_enabled!(log::Level::Debug) {
                    // SAFETY: mallinfo2 only reads the allocator's counters.
                    let m = unsafe { libc::mallinfo2() };
                    log::debug!(
                        "heap: {:.1} MiB allocated in arenas + {:.1} MiB mmapped (the pose engine's idle pool: {:.1} MiB), {:.1} MiB free in arenas; slowest trim {:.2} ms",
                        m.uordblks as f64 / 1048576.0,
                        m.hblkhd as f64 / 1048576.0,
                        haven_pose::pooled_bytes() as f64 / 1048576.0,
                        m.fordblks as f64 / 1048576.0,
                        slowest.as_secs_f64() * 1e3
                    );
                    slowest = Duration::ZERO;
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!("cannot start the memory trimmer: {e}");
        }
    }
}
