#!/bin/bash
# The server under heaptrack, for a benchmark example to start in place of the server and stop with
# SIGTERM (docs/performance.md, "Memory"):
#   ./target/debug/examples/demo_memory --skip-this --warmup 70 --window 20 --exe scripts/heaptrack_haven.sh=heaptrack
# writes target/heaptrack-PID.zst; then: python3 scripts/heap_breakdown.py target/heaptrack-PID.zst
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/heaptrack-$$.zst"
pipe="$root/target/heaptrack-$$.pipe"
mkfifo "$pipe"
/usr/lib/heaptrack/libexec/heaptrack_interpret < "$pipe" | zstd -q -c > "$out" &
interpret=$!
LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT="$pipe" "$root/target/debug/haven" "$@" &
child=$!
trap 'kill -TERM $child' TERM
wait $child
wait $child
wait $interpret
rm -f "$pipe"
echo "heaptrack: $out" >&2
