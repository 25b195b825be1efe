#!/usr/bin/env bash
# HAVEN's pose engine against onnxruntime, side by side: ROUNDS rounds, each running HAVEN then
# onnxruntime at 640x640 for every thread count, FRAMES frames each (medians per run); prints each
# pair and, per thread count, the median of the per-round ratios HAVEN / onnxruntime.
#   bash scripts/pose_vs_onnxruntime.sh [ROUNDS] [FRAMES] [THREADS...]     (defaults: 4 20 1 2)
# Needs: cargo build -p haven-pose --example bench; pip install onnxruntime numpy.
# HAVEN's time is the whole engine (BGR u8 frame -> detections: conversion, network, decode, NMS);
# onnxruntime's is the network alone on a ready NCHW float tensor.
# BEFORE=/path/to/an/older/bench also runs that build in every round (before the current one) and
# prints its ratio to onnxruntime and the current build's ratio to it: a change measured side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
frames=${2:-20}
shift $(( $# < 2 ? $# : 2 ))
threads=("$@")
[ ${#threads[@]} -eq 0 ] && threads=(1 2)
onnx=../shared/golden/yolo11n-pose/yolo11n-pose.onnx
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A ratios bratios gains
before=${BEFORE:-}
run_bench() { RAYON_NUM_THREADS=$2 BENCH_SIZES=640x640 "$1" weights/yolo11n-pose.safetensors "$frames" | sed -n 's/.*median \([0-9.]*\).*/\1/p'; }
for r in $(seq "$rounds"); do
  for t in "${threads[@]}"; do
    [ -n "$before" ] && b=$(run_bench "$before" "$t")
    h=$(RAYON_NUM_THREADS=$t BENCH_SIZES=640x640 ./target/debug/examples/bench weights/yolo11n-pose.safetensors "$frames" |
      sed -n 's/.*median \([0-9.]*\).*/\1/p')
    o=$(python3 scripts/bench_onnxruntime.py "$onnx" "$frames" "$t" | sed -n 's/.*median \([0-9.]*\).*/\1/p')
    q=$(awk -v h="$h" -v o="$o" 'BEGIN {printf "%.3f", h / o}')
    ratios[$t]="${ratios[$t]:-} $q"
    echo "round $r, $t thread(s): HAVEN $h ms, onnxruntime $o ms, ratio $q"
    if [ -n "$before" ]; then
      bq=$(awk -v b="$b" -v o="$o" 'BEGIN {printf "%.3f", b / o}')
      g=$(awk -v h="$h" -v b="$b" 'BEGIN {printf "%.3f", h / b}')
      bratios[$t]="${bratios[$t]:-} $bq"
      gains[$t]="${gains[$t]:-} $g"
      echo "round $r, $t thread(s): before $b ms, ratio $bq; current / before $g"
    fi
  done
done
for t in "${threads[@]}"; do
  echo "$t thread(s): median ratio $(echo "${ratios[$t]}" | tr ' ' '\n' | grep . | median) over $rounds rounds"
done
if [ -n "$before" ]; then
  for t in "${threads[@]}"; do
    echo "$t thread(s): before: median ratio $(echo "${bratios[$t]}" | tr ' ' '\n' | grep . | median); current / before: median $(echo "${gains[$t]}" | tr ' ' '\n' | grep . | median)"
  done
fi
echo "load: $(uptime | sed 's/.*load average: //')"
