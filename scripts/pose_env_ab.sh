#!/usr/bin/env bash
# Two settings of HAVEN's pose engine side by side, interleaved in one run (the order alternating
# per round): the same bench binary under environment A and B (e.g. HAVEN_ZMM_KERNEL=0 and =1) at
# 640x640; prints each round's medians (wall ms and CPU ms per frame) and the medians of the
# per-round ratios B / A.
#   bash scripts/pose_env_ab.sh ROUNDS FRAMES THREADS 'VAR=a ...' 'VAR=b ...'
# Needs: cargo build -p haven-pose --example bench (a -p build: see docs/pose.md). BENCH=path
# measures another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1 frames=$2 threads=$3 envA=$4 envB=$5
bench=${BENCH:-./target/debug/examples/bench}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
run() { env $1 RAYON_NUM_THREADS="$threads" BENCH_SIZES=640x640 "$bench" weights/yolo11n-pose.safetensors "$frames" |
  sed -n 's/.*median \([0-9.]*\).*cpu \([0-9.]*\) ms.*/\1 \2/p'; }
wr="" cr=""
for r in $(seq "$rounds"); do
  if (( r % 2 )); then a=$(run "$envA"); b=$(run "$envB"); else b=$(run "$envB"); a=$(run "$envA"); fi
  read -r aw ac <<< "$a"; read -r bw bc <<< "$b"
  w=$(awk -v a="$aw" -v b="$bw" 'BEGIN {printf "%.3f", b / a}')
  c=$(awk -v a="$ac" -v b="$bc" 'BEGIN {printf "%.3f", b / a}')
  wr="$wr $w" cr="$cr $c"
  echo "round $r, $threads thread(s): A ($envA) $aw ms wall, $ac ms cpu; B ($envB) $bw ms wall, $bc ms cpu; B / A wall $w, cpu $c"
done
echo "B / A over $rounds rounds, $threads thread(s): median wall $(echo "$wr" | tr ' ' '\n' | grep . | median), median cpu $(echo "$cr" | tr ' ' '\n' | grep . | median)"
echo "load: $(uptime | sed 's/.*load average: //')"
