//! Memory the kernels share: the pooled feature-map buffer [`PBuf`] and [`SendPtr`], the raw
//! pointer parallel tasks write disjoint parts of one output through.
//!
//! Owns: the buffer pool (recycling, its byte cap, [`pooled_bytes`]). Imports nothing from the crate.
//! Unsafe boundary: `SendPtr`'s `Send`/`Sync` impls; every write through it is an `unsafe` block in
//! the kernel that hands out the disjoint regions.

/// A pooled f32 buffer: feature maps and scratch space are recycled between layers and frames, which
/// saves the page faults and zeroing of fresh large allocations. Its initial contents are unspecified
/// (old values, never uninitialised memory): use [`PBuf::zeroed`] where zeros are needed.
/// (vector, length in use: the vector keeps its longest initialised length so that reuse does not
/// zero-fill it again)
pub(crate) struct PBuf(Vec<f32>, usize);

/// The idle buffers, each with the time it was given back (for [`trim_pool`]).
static POOL: std::sync::Mutex<Vec<(Vec<f32>, Instant)>> = std::sync::Mutex::new(Vec::new());
pub(crate) const POOL_MIN: usize = 16 * 1024; // floats; smaller buffers come from malloc
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bound of the recycled memory by default (the working set at 640x640 is ~60 MB per
/// concurrent frame).
const POOL_MAX_BYTES: usize = 256 << 20;
/// The bound in force ([`set_pool_limit`]).
static POOL_LIMIT: AtomicUsize = AtomicUsize::new(POOL_MAX_BYTES);

/// Sets how many bytes of idle buffers the pool may hold (a server that must stay within a memory
/// budget, issue 25); the buffers given back longest ago go first when a newer one needs room.
/// Returns the bytes freed to get under a lower bound at once.
pub fn set_pool_limit(bytes: usize) -> usize {
    POOL_LIMIT.store(bytes, Ordering::Relaxed);
    let evicted = evict_for(
        &mut POOL.lock().unwrap_or_else(|e| e.into_inner()),
        0,
        bytes,
    );
    evicted.iter().map(|v| v.capacity() * 4).sum()
}

/// Takes the buffers given back longest ago out of `pool` until `room` more bytes fit under `limit`.
fn evict_for(pool: &mut Vec<(Vec<f32>, Instant)>, room: usize, limit: usize) -> Vec<Vec<f32>> {
    let mut total: usize = pool.iter().map(|(b, _)| b.capacity() * 4).sum();
    let mut out = Vec::new();
    while total + room > limit && !pool.is_empty() {
        let oldest = (0..pool.len()).min_by_key(|&i| pool[i].1).unwrap_or(0);
        let (v, _) = pool.swap_remove(oldest);
        total -= v.capacity() * 4;
        out.push(v);
    }
    out
}

/// Bytes the feature-map pool holds for reuse (not counting buffers in use).
pub fn pooled_bytes() -> usize {
    POOL.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(b, _)| b.capacity() * 4)
        .sum()
}

/// Frees the idle buffers that nothing has taken for `idle` or longer and returns their bytes. The
/// pool keeps what recent passes used; sizes only an earlier pass needed (another model's, larger
/// regions') would otherwise stay resident until the process ends (issue 25).
pub fn trim_pool(idle: Duration) -> usize {
    let now = Instant::now();
    let stale: Vec<Vec<f32>> = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let (keep, stale) = std::mem::take(&mut *pool)
            .into_iter()
            .partition(|(_, at)| now.saturating_duration_since(*at) < idle);
        *pool = keep;
        stale.into_iter().map(|(v, _)| v).collect()
    };
    // freed outside the lock
    stale.iter().map(|v| v.capacity() * 4).sum()
}

impl PBuf {
    pub fn new(len: usize) -> Self {
        if len >= POOL_MIN {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, (v, _))| v.capacity() >= len && v.capacity() <= 4 * len)
                .min_by_key(|(_, (v, _))| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let (mut v, _) = pool.swap_remove(i);
                drop(pool);
                if v.len() < len {
                    v.resize(len, 0.0);
                }
                return PBuf(v, len);
            }
        }
        PBuf(vec![0f32; len], len)
    }

    /// The buffer's vector, without a copy, to become a Candle tensor's storage: the values in use
    /// come first, and the vector keeps its whole initialised length (possibly longer: the tensor
    /// then covers only its first values, as a view does), so that once [`recycle`]d it serves
    /// larger buffers again without being zero-filled. The memory leaves the pool until then.
    pub fn into_storage(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for PBuf {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.0));
    }
}

/// Gives a vector's memory to the pool (if large enough), for a later [`PBuf::new`], making room
/// under the limit by freeing the buffers given back longest ago; its contents stay as they are
/// (pooled buffers' contents are unspecified).
pub(crate) fn recycle(v: Vec<f32>) {
    let (bytes, limit) = (v.capacity() * 4, POOL_LIMIT.load(Ordering::Relaxed));
    if v.capacity() >= POOL_MIN && bytes <= limit {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = evict_for(&mut pool, bytes, limit);
        pool.push((v, Instant::now()));
        drop(pool);
        drop(evicted); // freed outside the lock
    }
}

impl std::ops::Deref for PBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[..self.1]
    }
}

impl std::ops::DerefMut for PBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[..self.1]
    }
}
/// A raw pointer that may cross rayon tasks; each task writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: a SendPtr is only an address; sending or sharing it between threads is harmless by
// itself. Each use dereferences it in an `unsafe` block whose caller splits the pointee into
// regions that no two tasks write (and that nothing reads while they are written), and the
// pointee outlives the parallel section (rayon's scoped `for_each` joins before it returns).
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: `&SendPtr` gives only a copy of the address.
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recycled buffers come back at the requested length, pooled bytes stay under the cap, and
    /// small buffers never enter the pool.
    #[test]
    fn pool_recycles_within_its_cap() {
        let n = POOL_MIN * 3 + 5;
        let mut a = PBuf::new(n);
        assert_eq!(a.len(), n);
        a.fill(7.0);
        drop(a);
        let b = PBuf::new(n - 3);
        assert_eq!(b.len(), n - 3);
        let v = b.into_storage();
        assert!(v.len() >= n - 3);
        recycle(v);
        assert!(pooled_bytes() <= POOL_LIMIT.load(Ordering::Relaxed));
        let small = PBuf::new(10);
        assert_eq!(&small[..], &[0.0; 10]);
        recycle(vec![1.0, 2.0, 3.0]);
    }

    /// Making room under the limit frees the buffers given back longest ago, only as many as needed.
    #[test]
    fn room_is_made_by_freeing_the_oldest_buffers_first() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut pool = vec![
            (Vec::<f32>::with_capacity(100), at(20)),
            (Vec::with_capacity(200), at(10)),
            (Vec::with_capacity(300), at(30)),
        ];
        // 2400 bytes held; 400 more under a limit of 2400: the oldest (200 floats) goes, enough
        let out = evict_for(&mut pool, 400, 2400);
        assert_eq!(out.iter().map(|v| v.capacity()).collect::<Vec<_>>(), [200]);
        assert_eq!(pool.len(), 2);
        // nothing to make room for
        assert!(evict_for(&mut pool, 0, 1600).is_empty());
        // a limit below what is held: oldest first until it fits
        let out = evict_for(&mut pool, 0, 1200);
        assert_eq!(out.iter().map(|v| v.capacity()).collect::<Vec<_>>(), [100]);
        assert_eq!(pool[0].0.capacity(), 300);
    }

    /// `trim_pool` frees the buffers idle for at least its age and keeps the fresher ones; other
    /// tests share the pool, so only this test's own buffers are counted (64 MiB each: no other
    /// test asks for a quarter of that, so none takes them; calloc'd, never touched).
    #[test]
    fn trim_pool_frees_only_buffers_idle_long_enough() {
        let n = 1 << 24;
        let mine = || {
            POOL.lock()
                .unwrap()
                .iter()
                .filter(|(v, _)| v.capacity() == n)
                .count()
        };
        recycle(vec![0.0; n]);
        assert!(mine() >= 1);
        trim_pool(Duration::from_secs(3600));
        assert!(mine() >= 1, "a fresh buffer stays");
        std::thread::sleep(Duration::from_millis(20));
        recycle(vec![0.0; n]);
        let before = mine();
        assert!(trim_pool(Duration::from_millis(10)) >= n * 4);
        assert_eq!(mine(), before - 1, "only the older buffer went");
        trim_pool(Duration::ZERO);
        assert_eq!(mine(), 0);
    }
}
