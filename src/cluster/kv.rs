//! The key-value buckets the cluster keeps its state in, as the cluster uses them: NATS JetStream
//! KV in production (`nats_kv`), an in-memory store in the tests (`memory_kv`).

use std::sync::Arc;

use futures_util::future::BoxFuture;

/// A live value and the revision that wrote it (what a compare-and-set names).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    /// `create` of a key that holds a value.
    #[error("key exists")]
    AlreadyExists,
    /// `update` at a revision that is not the key's last (another write came first, or it expired).
    #[error("wrong last revision")]
    WrongRevision,
    /// The store did not answer (unreachable, slow, refused): the message says why.
    #[error("{0}")]
    Unavailable(String),
}

pub type KvResult<T> = Result<T, KvError>;

/// One bucket. Values of a bucket made with a max age expire that long after their last write.
pub trait Bucket: Send + Sync {
    /// The key's value, `None` when it was never written, was deleted or expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<Option<Entry>>>;
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>>;
    /// Writes only if the key holds no value: who creates a lease holds it.
    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>>;
    /// Writes only if `revision` is the key's last (compare-and-set).
    fn update<'a>(&'a self, key: &'a str, value: Vec<u8>, revision: u64) -> BoxFuture<'a, KvResult<u64>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<()>>;
    /// Deletes only if `revision` is the key's last: a released lease, never another node's.
    fn delete_at<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, KvResult<()>>;
    /// The keys that hold a value.
    fn keys(&self) -> BoxFuture<'_, KvResult<Vec<String>>>;
}

/// The cluster's buckets (docs/scaling.md, "How it works").
#[derive(Clone)]
pub struct Buckets {
    /// `haven_cameras`: camera id → its `CameraConfig` as JSON.
    pub cameras: Arc<dyn Bucket>,
    /// `haven_leases` (max age a lease): camera id → owner node.
    pub leases: Arc<dyn Bucket>,
    /// `haven_nodes` (max age a lease): node → its heartbeat.
    pub nodes: Arc<dyn Bucket>,
    /// `haven_status` (max age a lease): camera id → `{owner, status}`.
    pub status: Arc<dyn Bucket>,
}
