#!/usr/bin/env bash
# HAVEN's 8-bit path against its f32 path and onnxruntime (fp32, and its own int8 QDQ model when
# given), side by side: ROUNDS rounds, each running every engine at 640x640 for every thread count,
# FRAMES frames each (medians per run); prints each round and, per thread count, the medians of the
# per-round ratios.
#   bash scripts/int8_vs_onnxruntime.sh [ROUNDS] [FRAMES] [THREADS...]   (defaults: 4 20 1 2)
# ORT_INT8=/tmp/yolo11n-pose.int8.qdq.onnx (made by scripts/int8_onnxruntime.py) adds onnxruntime's int8.
# Needs: cargo build -p haven-pose --example bench; pip install onnxruntime numpy.
# HAVEN's times are the whole engine (BGR u8 frame -> detections); onnxruntime's the network alone.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
frames=${2:-20}
shift $(( $# < 2 ? $# : 2 ))
threads=("$@")
[ ${#threads[@]} -eq 0 ] && threads=(1 2)
onnx=../shared/golden/yolo11n-pose/yolo11n-pose.onnx
ort_int8=${ORT_INT8:-}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# "wall-median cpu-per-frame" (ms): the CPU time is the steadier figure on a loaded machine at 1 thread
# (at 2, onnxruntime's spinning threads add CPU time that is no work)
haven() { RAYON_NUM_THREADS=$2 BENCH_PRECISION=$1 BENCH_SIZES=640x640 ./target/debug/examples/bench weights/yolo11n-pose.safetensors "$frames" | sed -n 's/.*median \([0-9.]*\).*cpu \([0-9.]*\).*/\1 \2/p'; }
ortb() { python3 scripts/bench_onnxruntime.py "$1" "$frames" "$2" | sed -n 's/.*median \([0-9.]*\).*cpu \([0-9.]*\).*/\1 \2/p'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
declare -A r_q_o r_q_f r_oq_o c_q_o c_q_f c_oq_o
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for t in "${threads[@]}"; do
    read -r f fc <<<"$(haven f32 "$t")"; read -r q qc <<<"$(haven int8 "$t")"; read -r o oc <<<"$(ortb "$onnx" "$t")"
    oq=""; oqc=""; [ -n "$ort_int8" ] && read -r oq oqc <<<"$(ortb "$ort_int8" "$t")"
    r_q_o[$t]="${r_q_o[$t]:-} $(ratio "$q" "$o")"; c_q_o[$t]="${c_q_o[$t]:-} $(ratio "$qc" "$oc")"
    r_q_f[$t]="${r_q_f[$t]:-} $(ratio "$q" "$f")"; c_q_f[$t]="${c_q_f[$t]:-} $(ratio "$qc" "$fc")"
    [ -n "$oq" ] && r_oq_o[$t]="${r_oq_o[$t]:-} $(ratio "$oq" "$o")" && c_oq_o[$t]="${c_oq_o[$t]:-} $(ratio "$oqc" "$oc")"
    echo "round $r, $t thread(s), wall (cpu) ms: HAVEN f32 $f ($fc), HAVEN int8 $q ($qc), onnxruntime fp32 $o ($oc)${oq:+, onnxruntime int8 $oq ($oqc)}"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${threads[@]}"; do
  m() { echo "$1" | tr ' ' '\n' | grep . | median; }
  echo "$t thread(s), medians over $rounds rounds, wall (cpu): HAVEN int8 / onnxruntime fp32 $(m "${r_q_o[$t]}") ($(m "${c_q_o[$t]}")), HAVEN int8 / HAVEN f32 $(m "${r_q_f[$t]}") ($(m "${c_q_f[$t]}"))${ort_int8:+, onnxruntime int8 / onnxruntime fp32 $(m "${r_oq_o[$t]:-}") ($(m "${c_oq_o[$t]:-}"))}"
done
