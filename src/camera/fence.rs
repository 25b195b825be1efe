//! A camera's fence: the moment (monotonic) after which its worker must not analyse frames or hand
//! them to other nodes, because the lease that makes this node the camera's owner may have expired.
//! A single server's cameras are never fenced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Shared by the camera's handle (the cluster moves the deadline on each renewal of the lease) and
/// its worker (which reads it before each frame).
#[derive(Clone, Debug)]
pub struct Fence {
    /// Milliseconds since `epoch()`; `u64::MAX`: never.
    deadline_ms: Arc<AtomicU64>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64
}

impl Default for Fence {
    fn default() -> Self {
        Self::open()
    }
}

impl Fence {
    /// A fence that never closes: a single server's cameras.
    pub fn open() -> Self {
        Self { deadline_ms: Arc::new(AtomicU64::new(u64::MAX)) }
    }

    /// Frames may be analysed until `deadline` (process-monotonic: a pause such as SIGSTOP counts).
    pub fn extend_to(&self, deadline: Instant) {
        self.deadline_ms.store(millis(deadline), Ordering::Release);
    }

    /// Closes the fence now.
    pub fn close(&self) {
        self.deadline_ms.store(0, Ordering::Release);
    }

    pub fn expired(&self) -> bool {
        let deadline = self.deadline_ms.load(Ordering::Acquire);
        deadline != u64::MAX && millis(Instant::now()) >= deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_closes_at_its_deadline_and_a_renewal_moves_it() {
        let fence = Fence::open();
        assert!(!fence.expired());
        fence.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(!fence.expired());
        let shared = fence.clone();
        shared.extend_to(Instant::now() - Duration::from_millis(1));
        assert!(fence.expired(), "a clone is the same fence");
        fence.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(!fence.expired(), "a renewal opens it again");
        fence.close();
        assert!(fence.expired());
    }
}
