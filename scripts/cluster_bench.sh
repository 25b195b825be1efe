#!/usr/bin/env bash
# The cluster benchmark (docs/scaling.md "Measured"): three nats-servers in one NATS cluster and
# three haven nodes on loopback; failover after kill -9, relay latency, NATS traffic per relayed
# camera, the owner's CPU with 100 remote viewers vs 1.
#   bash scripts/cluster_bench.sh [--window 10] [--rounds 3] [--failovers 3] [--lease 6]
# Needs nats-server (scripts/setup.sh installs it) and the demo videos (data/*.mp4).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "nats-server is not installed: run scripts/setup.sh" >&2; exit 1; }
cargo build -q --bin haven --example cluster_bench
exec target/debug/examples/cluster_bench "$@"
