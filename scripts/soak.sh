#!/usr/bin/env bash
# The soak run: mixed load (streams, conversions, upstream errors, mid-stream errors, client
# disconnects, config reloads) against the real gateway and the mock for a long time, sampling the
# gateway's RSS, open files and threads; writes target/soak/report.{json,md} and exits non-zero
# when a goal fails (RSS growth after warm-up < 5%, open files and threads stable, zero unexpected
# errors). See docs/reliability.md ("Soak").
#
#   scripts/soak.sh                  # 30 minutes, release build
#   scripts/soak.sh --minutes 3      # a short run
#   scripts/soak.sh --debug ...      # the debug build (what scripts/test.sh uses: no release build)
#
# Other arguments are passed to octo-soak (`--workers N`, `--reload-every S`, `--warmup F`,
# `--max-rss-growth P`, `--out DIR`; `target/debug/octo-soak --help` lists them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROFILE=release
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) PROFILE=debug ;;
        --release) PROFILE=release ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done

if [ "$PROFILE" = release ]; then
    cargo build --release -p octo-server -p octo-mock -p octo-bench --bins
else
    cargo build -p octo-server -p octo-mock -p octo-bench --bins
fi
# Each worker holds a connection to the gateway and the gateway one upstream: a few hundred
# files at most, but raise the soft limit anyway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "soak: $PROFILE build, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec "target/$PROFILE/octo-soak" --bin-dir "target/$PROFILE" "${ARGS[@]}"
