#!/usr/bin/env bash
# Per-layer median times of HAVEN's pose engine at 640x640, to set beside scripts/profile_onnxruntime.py.
#   bash scripts/pose_layers.sh [THREADS] [FRAMES] [PRECISION]   (after: cargo build -p haven-pose --example bench;
#   PRECISION f32 (default) or int8)
set -euo pipefail
cd "$(dirname "$0")/.."
RAYON_NUM_THREADS=${1:-1} BENCH_PRECISION=${3:-f32} HAVEN_POSE_PROFILE=1 BENCH_SIZES=640x640 ./target/debug/examples/bench weights/yolo11n-pose.safetensors "${2:-11}" 2>&1 |
  python3 -c '
import collections, statistics, sys
t = collections.defaultdict(list)
for line in sys.stdin:
    f = line.split()
    if f and f[0] == "layer":
        t[int(f[1])].append(float(f[3]))
m = {k: statistics.median(v[1:] or v) for k, v in t.items()}
print(f"HAVEN, sum of layer medians: {sum(m.values()):.1f} ms per frame")
print(" ".join(f"{k}:{m[k]:.2f}" for k in sorted(m)))'
