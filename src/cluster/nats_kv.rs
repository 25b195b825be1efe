//! The buckets on NATS JetStream KV: the `kv::Bucket` adapter, and how a bucket is opened or made.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::kv::{Bucket, Buckets, Entry, KvError, KvResult};
use super::ClusterError;
use crate::cluster::config::ClusterSettings;

pub const CAMERAS: &str = "haven_cameras";
pub const LEASES: &str = "haven_leases";
pub const NODES: &str = "haven_nodes";
pub const STATUS: &str = "haven_status";
pub const SHARED: &str = "haven_cluster";
pub const SNOOZES: &str = "haven_snoozes";
pub const ACCOUNTS: &str = "haven_accounts";

pub struct NatsBucket(kv::Store);

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl Bucket for NatsBucket {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<Option<Entry>>> {
        async move {
            let entry = self.0.entry(key).await.map_err(unavailable)?;
            Ok(entry.filter(|e| e.operation == kv::Operation::Put).map(|e| Entry { value: e.value.to_vec(), revision: e.revision }))
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>> {
        async move { self.0.put(key, value.into()).await.map_err(unavailable) }.boxed()
    }

    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>> {
        async move {
            self.0.create(key, value.into()).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => KvError::AlreadyExists,
                _ => unavailable(e),
            })
        }
        .boxed()
    }

    fn update<'a>(&'a self, key: &'a str, value: Vec<u8>, revision: u64) -> BoxFuture<'a, KvResult<u64>> {
        async move {
            self.0.update(key, value.into(), revision).await.map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => KvError::WrongRevision,
                _ => unavailable(e),
            })
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<()>> {
        async move { self.0.delete(key).await.map_err(unavailable) }.boxed()
    }

    fn delete_at<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, KvResult<()>> {
        async move { self.0.delete_expect_revision(key, Some(revision)).await.map_err(unavailable) }.boxed()
    }

    fn keys(&self) -> BoxFuture<'_, KvResult<Vec<String>>> {
        async move {
            let mut keys = self.0.keys().await.map_err(unavailable)?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                out.push(key.map_err(unavailable)?);
            }
            Ok(out)
        }
        .boxed()
    }
}

/// Opens (or makes) the cluster's buckets, and `haven_cluster` (the settings every node shares).
pub async fn open(js: &jetstream::Context, settings: &ClusterSettings) -> Result<(Buckets, NatsBucket), ClusterError> {
    let lease = Duration::from_secs_f64(settings.lease_secs);
    let replicas = settings.replicas;
    let cameras = bucket(js, CAMERAS, "HAVEN camera inventory", Duration::ZERO, replicas).await?;
    let leases = bucket(js, LEASES, "HAVEN camera leases (value: owner node)", lease, replicas).await?;
    let nodes = bucket(js, NODES, "HAVEN node heartbeats", lease, replicas).await?;
    let status = bucket(js, STATUS, "HAVEN owned cameras' statuses", lease, replicas).await?;
    let shared = bucket(js, SHARED, "HAVEN settings every node must share", Duration::ZERO, replicas).await?;
    let buckets = Buckets { cameras: Arc::new(cameras), leases: Arc::new(leases), nodes: Arc::new(nodes), status: Arc::new(status) };
    Ok((buckets, shared))
}

async fn bucket(js: &jetstream::Context, name: &'static str, description: &str, max_age: Duration, replicas: usize) -> Result<NatsBucket, ClusterError> {
    store(js, name, description, max_age, replicas).await.map(NatsBucket)
}

/// A bucket whose values never expire, as NATS's own client reads it.
pub async fn open_plain(js: &jetstream::Context, name: &'static str, description: &str, replicas: usize) -> Result<kv::Store, ClusterError> {
    store(js, name, description, Duration::ZERO, replicas).await
}

async fn store(js: &jetstream::Context, name: &'static str, description: &str, max_age: Duration, replicas: usize) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The stream a KV bucket is, made directly: `create_key_value` first reads the account's limits
    // in a form nats-server 2.9 (Debian's) does not send. Same settings as the NATS KV convention.
    let fail = |e: &dyn std::fmt::Display| ClusterError::Bucket { bucket: name, message: e.to_string() };
    let made = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some(description.to_string()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    if let Err(e) = made {
        // Another node may have made it meanwhile.
        if js.get_key_value(name).await.is_err() {
            return Err(fail(&e));
        }
    }
    js.get_key_value(name).await.map_err(|e| fail(&e))
}
