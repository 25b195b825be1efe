#!/usr/bin/env bash
# Runs every benchmark side by side on this machine and writes the tables and plots to docs/plots/:
# fan-out (AI on and off), capture-to-viewer latency, throughput with 1/3/6 cameras, the camera step.
# About 12 minutes. The soak (10 minutes more) is separate: cargo run --example soak.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p haven --examples --bins
mkdir -p docs/plots
cargo run --quiet --example fanout -- --viewers 1,10,100,500 --rounds 3 --window 10 --ai > docs/plots/fanout-ai.md
cargo run --quiet --example fanout -- --viewers 1,10,100,500 --rounds 3 --window 10 > docs/plots/fanout-noai.md
cargo run --quiet --example latency > docs/plots/latency.md
cargo run --quiet --example throughput > docs/plots/throughput.md
for t in 2 1; do RAYON_NUM_THREADS=$t cargo run --quiet --example camera_step -- --frames 40; done > docs/plots/camera-step.md
python3 scripts/plot_bench.py docs/plots
