//! `GET /api/cluster` and the `haven_cluster_*` metrics: this node's own view of the cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::Cluster;

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    pub nats_connected: bool,
    /// The NATS server this node is connected to now (its name, or host:port).
    pub nats_server: Option<String>,
    pub lease_secs: f64,
    pub capacity: f64,
    pub rebalance: bool,
    pub live_nodes: Vec<String>,
    pub cameras_owned: Vec<String>,
    pub lease_renewals: u64,
    pub lease_renewal_failures: u64,
    pub leases_taken: u64,
    pub leases_lost: u64,
    pub leases_released: u64,
    /// Packets published for other nodes, per camera owned here.
    pub relay_published: HashMap<String, u64>,
    /// Bytes of those messages (header and JPEGs).
    pub relay_published_bytes: HashMap<String, u64>,
    /// Packets received from owners, per camera followed here.
    pub relay_received: HashMap<String, u64>,
    /// Event changes this node stored in `HAVEN_EVENTS`, gave up on (NATS away too long), and
    /// took in from the other nodes.
    pub events_published: u64,
    pub events_unpublished: u64,
    pub events_received: u64,
}

impl Cluster {
    pub fn view(&self) -> ClusterView {
        let (mut live_nodes, cameras_owned) = {
            let book = self.book.lock().unwrap();
            let live: Vec<String> = book.live_nodes(Instant::now()).into_iter().map(|(n, _)| n).collect();
            (live, book.owned())
        };
        live_nodes.sort();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterView {
            node: self.node.clone(),
            nats_connected: self.nats_connected(),
            nats_server: self.client.try_server_info().map(|i| if i.server_name.is_empty() { format!("{}:{}", i.host, i.port) } else { i.server_name }),
            lease_secs: self.settings.lease_secs,
            capacity: self.settings.capacity,
            rebalance: self.settings.rebalance,
            live_nodes,
            cameras_owned,
            lease_renewals: load(&self.counters.renewals),
            lease_renewal_failures: load(&self.counters.renewal_failures),
            leases_taken: load(&self.counters.leases_taken),
            leases_lost: load(&self.counters.leases_lost),
            leases_released: load(&self.counters.leases_released),
            relay_published: self.relay.published_view(),
            relay_published_bytes: self.relay.published_bytes_view(),
            relay_received: self.relay.received_view(),
            events_published: load(&self.event_counters.published),
            events_unpublished: load(&self.event_counters.unpublished),
            events_received: load(&self.event_counters.received),
        }
    }
}
