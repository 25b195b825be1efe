#!/usr/bin/env bash
# Two builds of the bench example side by side: ROUNDS rounds, each running A then B (B then A on
# even rounds) at 640x640 for FRAMES frames; prints each round's wall median and CPU per frame and
# the medians of the per-round ratios B / A. For before/after figures on a shared, noisy machine.
#   [WEIGHTS=weights/fall-yolov8s.safetensors] bash scripts/bench_ab.sh A_BINARY B_BINARY [ROUNDS] [FRAMES] [THREADS] [PRECISION]
# e.g. cp target/debug/examples/bench /tmp/bench_before; (change, cargo build -p haven-pose --example bench);
#      bash scripts/bench_ab.sh /tmp/bench_before target/debug/examples/bench 7 10 1 int8
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-7} frames=${4:-10} threads=${5:-1} precision=${6:-int8}
run() { RAYON_NUM_THREADS=$threads BENCH_PRECISION=$precision BENCH_SIZES=640x640 "$1" "${WEIGHTS:-weights/yolo11n-pose.safetensors}" "$frames" | sed -n 's/.*median \([0-9.]*\).*cpu \([0-9.]*\).*/\1 \2/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $precision, $threads thread(s), $frames frames a run"
rw=() rc=() aw=() ac=() bw=() bc=()
for r in $(seq "$rounds"); do
  if (( r % 2 )); then read -r x xc <<<"$(run "$a")"; read -r y yc <<<"$(run "$b")";
  else read -r y yc <<<"$(run "$b")"; read -r x xc <<<"$(run "$a")"; fi
  echo "round $r: A $x ms (cpu $xc), B $y ms (cpu $yc)"
  aw+=("$x") ac+=("$xc") bw+=("$y") bc+=("$yc")
  rw+=("$(awk -v p="$y" -v q="$x" 'BEGIN {printf "%.3f", p / q}')") rc+=("$(awk -v p="$yc" -v q="$xc" 'BEGIN {printf "%.3f", p / q}')")
done
m() { printf '%s\n' "$@" | median; }
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians: A $(m "${aw[@]}") ms (cpu $(m "${ac[@]}")), B $(m "${bw[@]}") ms (cpu $(m "${bc[@]}")); B / A per round, median: wall $(m "${rw[@]}"), cpu $(m "${rc[@]}")"
