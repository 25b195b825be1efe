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
/// Blocks this large or larger are mapped on their own and unmapped when freed. glibc starts at
/// 128 KiB and raises its threshold to the largest mapped block freed (up to 32 MiB), so within
/// seconds frames, messages and feature maps all came from the arenas, where the gaps they left
/// stayed resident: 47 MiB free in the arenas of the README's demo, 10 MiB with this (issue 25,
/// docs/performance.md "Memory"). Smaller blocks (JPEGs, JSON) stay in the arenas. The price: each
/// decoded frame is mapped and faulted in afresh (about 5 % more CPU per model pass at 12 cameras).
const MMAP_THRESHOLD: i32 = 256 << 10;
/// How often freed memory is handed back to the system. Every 2 s held the README's demo no lower
/// within the noise, and a trim can hold an arena's lock for tens of milliseconds on a loaded
/// machine (the slowest of each minute is logged with glibc's figures; issue 25).
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// glibc's figures are logged every this many trims (a minute).
const LOG_EVERY: u64 = 6;
/// The pose engine's idle buffers that no pass has taken for this long are freed (sizes only an
/// earlier pass needed: another model's, larger regions'); the rest stay for the next passes.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The `mallopt` calls to make: each of HAVEN's choices unless glibc's own environment variable for
/// it (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is set: those win, they are how a choice is
/// measured.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocator_settings(is_set: impl Fn(&str) -> bool) -> Vec<(libc::c_int, libc::c_int)> {
    [("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, MAX_ARENAS), ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)]
        .into_iter()
        .filter(|(name, ..)| !is_set(name))
        .map(|(_, param, value)| (param, value))
        .collect()
}

/// Limits the allocator's arenas, maps large blocks on their own and starts a thread that returns
/// freed memory every `TRIM_EVERY`. Call once, early in `main`, before other threads start.
pub fn keep_tidy() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        for (param, value) in allocator_settings(|name| std::env::var_os(name).is_some()) {
            // SAFETY: mallopt is a thread-safe glibc call with plain integer arguments.
            unsafe { libc::mallopt(param, value) };
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// glibc's own variables win over HAVEN's choices, each on its own.
    #[test]
    fn the_environment_wins_over_each_allocator_choice() {
        let all = allocator_settings(|_| false);
        assert_eq!(all, [(libc::M_ARENA_MAX, MAX_ARENAS), (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)]);
        assert_eq!(allocator_settings(|n| n == "MALLOC_ARENA_MAX"), [(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)]);
        assert_eq!(allocator_settings(|n| n == "MALLOC_MMAP_THRESHOLD_"), [(libc::M_ARENA_MAX, MAX_ARENAS)]);
        assert!(allocator_settings(|_| true).is_empty());
    }

    /// With the threshold fixed, a block over it is mapped on its own even after a larger mapped
    /// block was freed (glibc's own rule would have raised its threshold to that block's size and
    /// served this one from an arena, where what it leaves when freed stays resident). Checked in a
    /// process of its own: in this one, blocks other tests freed into the arenas may serve it.
    #[test]
    fn blocks_over_the_threshold_are_mapped_even_after_a_larger_one_was_freed() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "memory::tests::a_block_over_the_threshold_in_a_fresh_process", "--include-ignored", "--test-threads=1"])
            .env("HAVEN_MEMORY_TEST_CHILD", "1")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && log.contains("1 passed"), "{log}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    #[ignore = "run by blocks_over_the_threshold_are_mapped_even_after_a_larger_one_was_freed, alone in its process"]
    fn a_block_over_the_threshold_in_a_fresh_process() {
        assert!(std::env::var_os("HAVEN_MEMORY_TEST_CHILD").is_some(), "run through its parent test");
        for (param, value) in allocator_settings(|_| false) {
            // SAFETY: mallopt is a thread-safe glibc call with plain integer arguments.
            unsafe { libc::mallopt(param, value) };
        }
        drop(std::hint::black_box(vec![1u8; 16 << 20]));
        let block = std::hint::black_box(vec![1u8; 4 << 20]);
        // SAFETY: the buffer came from glibc's malloc (the default System allocator, alignment 1),
        // which keeps each chunk's size word in the word just before the pointer it returns; bit 1
        // of that word is glibc's IS_MMAPPED flag. The read stays inside the chunk malloc gave.
        let size_word = unsafe { *(block.as_ptr() as *const usize).sub(1) };
        assert!(size_word & 2 != 0, "a 4 MiB block after a 16 MiB one was freed came from an arena");
    }
}
