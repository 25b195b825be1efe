#!/usr/bin/env bash
# Fuzzes the HTTP API from its own description (/api/openapi.json) with schemathesis for a bounded
# time, against the real server (target/debug/haven) on a scratch copy of the shipped settings (the
# three demo cameras, AI off, a token set so that changes need it). schemathesis is pip-installed once
# into target/schemathesis-venv (from PyPI). Usage: bash scripts/schemathesis.sh [SECONDS=120]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
port=${PORT:-18765}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi
[ -x target/debug/haven ] || cargo build -p haven
scratch=$(mktemp -d)
cp settings/default.toml "$scratch/haven.toml"
HAVEN__MODEL__ENABLED=false HAVEN__SERVER__BIND="127.0.0.1:$port" HAVEN__API__TOKEN=fuzz-token \
  HAVEN__EVENTS__DATA_DIR="$scratch/events" RUST_LOG=warn \
  ./target/debug/haven --settings "$scratch/haven.toml" >"$scratch/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/cameras" >/dev/null && break; sleep 0.2; done

status=0
# MJPEG is an endless response: a client that waits for its end never gets one.
"$venv/bin/st" run "http://127.0.0.1:$port/api/openapi.json" --max-time "$secs" --workers 1 --checks all \
  --continue-on-failure --request-timeout 10 --exclude-path-regex '/mjpeg$' \
  -H "Authorization: Bearer fuzz-token" || status=$?

echo
if kill -0 $pid 2>/dev/null && curl -sf "http://127.0.0.1:$port/api/cameras" >/dev/null; then
  echo "server: still up and answering after the run"
else
  echo "server: DOWN after the run"; status=1
fi
if grep -n "panicked" "$scratch/server.log"; then echo "server: panicked (above)"; status=1; fi
exit $status
