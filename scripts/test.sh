#!/usr/bin/env bash
# Sets the machine up (idempotent) and runs every test: unit tests, the pose engine's golden
# parity tests and the integration tests against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One test at a time: they start real servers and measure frame rates on a small machine.
cargo test --workspace -- --test-threads=1 "$@"
# The web UI's modules on their own (node's test runner, no browser, no packages).
node --test tests/ui/
# The web UI in a real browser (Debian's chromium driven by playwright-core) against the real server.
cargo build --quiet -p haven
bash tests/browser/setup.sh
node tests/browser/run.mjs
node tests/browser/models.mjs
node tests/browser/zones.mjs
node tests/browser/accounts.mjs
