#!/usr/bin/env bash
# Sets the machine up (idempotent) and runs HAVEN on the shipped settings: http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --quiet -- --settings settings/default.toml "$@"
