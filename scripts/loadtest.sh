#!/usr/bin/env bash
# Runs OctoLLM's end-to-end load harness: builds the release binaries (octo-mock, octo-floor,
# octollm-server, octo-loadtest), raises the open-file limit as far as allowed, and runs
# octo-loadtest with the given arguments (`--quick` for a run of seconds, `--memory-only` for the
# memory rows alone; see `--help`).
# Results: the table on stdout and target/loadtest/results.json. See docs/performance.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p octo-bench -p octo-server -p octo-mock
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/octo-loadtest "$@"
