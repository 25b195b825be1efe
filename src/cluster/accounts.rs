//! Accounts and API tokens cluster-wide: each node puts its accounts file's changes (whole rows,
//! `auth::shared`) into the bucket `haven_accounts` and applies what the bucket holds, so an
//! account or token made, changed or removed on any node (API or `haven user|token`) holds on
//! every node. Sessions stay with the node that made them.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::{nats_kv, ClusterError};
use crate::auth::shared::SharedRow;
use crate::auth::AccountStore;

/// How often a node looks for changes of its accounts file to share.
const EVERY: Duration = Duration::from_millis(500);

/// Opens (or makes) the bucket, then shares this node's accounts file and applies the others'.
pub async fn start(js: &jetstream::Context, replicas: usize, accounts: Arc<AccountStore>) -> Result<(), ClusterError> {
    let bucket = nats_kv::open_plain(js, nats_kv::ACCOUNTS, "HAVEN accounts and API tokens (password and token hashes only)", replicas).await?;
    actix_web::rt::spawn(watch(bucket.clone(), accounts.clone()));
    actix_web::rt::spawn(share(bucket, accounts));
    Ok(())
}

/// Shares this node's changes for good: each pending one put (or deleted) in the bucket, then
/// forgotten; after a failure they wait for the next round.
async fn share(bucket: kv::Store, accounts: Arc<AccountStore>) {
    loop {
        let store = accounts.clone();
        match tokio::task::spawn_blocking(move || store.to_share()).await {
            Ok(Ok((changes, upto))) if !changes.is_empty() => match put_all(&bucket, changes).await {
                Ok(()) => {
                    let store = accounts.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.shared_up_to(upto)).await {
                        log::warn!("cluster accounts: {e}");
                    }
                }
                Err(e) => log::warn!("cluster accounts: cannot share a change yet ({e}); trying again"),
            },
            Ok(Err(e)) => log::warn!("cluster accounts: {e}"),
            _ => {}
        }
        tokio::time::sleep(EVERY).await;
    }
}

async fn put_all(bucket: &kv::Store, changes: Vec<(String, Option<SharedRow>)>) -> Result<(), String> {
    for (key, row) in changes {
        match row {
            Some(row) => bucket.put(&key, serde_json::to_vec(&row).map_err(|e| e.to_string())?.into()).await.map(drop).map_err(|e| e.to_string())?,
            None => bucket.delete(&key).await.map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

/// Applies the bucket to this node's accounts file (what it holds first, then each change) until
/// the connection is gone for good; the watch is made again after an error.
async fn watch(bucket: kv::Store, accounts: Arc<AccountStore>) {
    loop {
        match bucket.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(entry) => apply(&accounts, entry).await,
                        Err(e) => {
                            log::warn!("cluster accounts: the watch failed ({e}); watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => log::warn!("cluster accounts: cannot watch {}: {e}", nats_kv::ACCOUNTS),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn apply(accounts: &Arc<AccountStore>, entry: kv::Entry) {
    let row = match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<SharedRow>(&entry.value) {
            Ok(row) => Some(row),
            Err(e) => return log::warn!("cluster accounts: {:?} holds no account or token ({e}); ignored", entry.key),
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    let store = accounts.clone();
    let key = entry.key.clone();
    match tokio::task::spawn_blocking(move || store.apply_shared(&key, row.as_ref())).await {
        Ok(Ok(true)) => log::info!("cluster accounts: {} applied from the cluster", entry.key),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => log::warn!("cluster accounts: {:?}: {e}", entry.key),
        Err(e) => log::warn!("cluster accounts: {e}"),
    }
}
