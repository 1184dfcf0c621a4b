#!/usr/bin/env bash
# Instructions per request of the release gateway with the request log off and on, counted by
# valgrind's callgrind (every thread, the SQLite writer included): deterministic, so the ratio
# means something on a shared, busy machine where wall-clock throughput does not.
#
#   cargo build --release -p octo-server -p octo-bench -p octo-mock
#   scripts/callgrind_storage.sh                 # both modes, 2,000 requests each
#   scripts/callgrind_storage.sh sqlite          # one mode: off | sqlite
#   REQUESTS=5000 KEEP=1 scripts/callgrind_storage.sh
#
# For each mode: the mock upstream and the gateway (under callgrind) start on ephemeral ports,
# 200 warm-up requests of 160 B (OpenAI Chat, passthrough, one at a time) go through, the counters
# are zeroed, $REQUESTS more go through, the script waits 2 s (the writer flushes every 100 ms),
# dumps the counters and prints instructions per request. Profiles are kept in
# target/callgrind-storage/ (read them with callgrind_annotate). KEEP=1 keeps the SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${OCTOLLM_BIN_DIR:-target/release}
REQUESTS=${REQUESTS:-2000}
OUT=target/callgrind-storage
mkdir -p "$OUT"
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(off sqlite)

wait_line() { # file prefix [pid] -> the rest of the first line starting with prefix
    local f=$1 p=$2 pid=${3:-} i
    for i in $(seq 1 3000); do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            echo "the process exited before printing '$p':" >&2
            cat "$f" "${f%.out}.err" >&2 2>/dev/null
            return 1
        fi
        if grep -q "^$p" "$f" 2>/dev/null; then
            grep -m1 "^$p" "$f" | sed "s|^$p||"
            return 0
        fi
        sleep 0.2
    done
    echo "timed out waiting for '$p' in $f" >&2
    cat "$f" >&2
    return 1
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN/octo-mock" --listen 127.0.0.1:0 >"$OUT/mock.out" 2>&1 &
pids+=($!)
mock=$(wait_line "$OUT/mock.out" "octo-mock listening on ")

for mode in "${modes[@]}"; do
    dir=$(mktemp -d)
    case $mode in
        off) storage=off ;;
        sqlite) storage="sqlite://$dir/log.db" ;;
        *) echo "unknown mode $mode (off | sqlite)" >&2; exit 2 ;;
    esac
    cat >"$dir/gateway.yaml" <<EOF
listen: "127.0.0.1:0"
admin: {listen: "127.0.0.1:0", tokens: ["callgrind-storage-token"]}
backends:
  mock: {base_url: "$mock", protocol: openai_chat, api_key: "sk-bench"}
models:
  bench-model: {targets: [{backend: mock}]}
EOF
    prof="$OUT/$mode.callgrind"
    rm -f "$prof"*
    OCTOLLM_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$prof" \
        "$BIN/octollm-server" --config "$dir/gateway.yaml" --watch-interval 0 --storage "$storage" \
        >"$dir/gateway.out" 2>"$dir/gateway.err" &
    gw=$!
    pids+=($gw)
    addr=$(wait_line "$dir/gateway.out" "octollm-server listening on http://" "$gw")
    "$BIN/octo-loadtest" --drive "$addr" --drive-requests 200 >/dev/null
    callgrind_control -z "$gw" >/dev/null
    "$BIN/octo-loadtest" --drive "$addr" --drive-requests "$REQUESTS"
    sleep 2
    callgrind_control -d "$gw" >/dev/null
    kill "$gw"
    wait "$gw" 2>/dev/null || true
    # The explicit dump is the file with the highest part number.
    part=$(ls "$prof".* 2>/dev/null | sort -t. -k3 -n | tail -1)
    total=$(grep -m1 '^totals:' "$part" | awk '{print $2}')
    [ -n "$total" ] || total=$(grep -m1 '^summary:' "$part" | awk '{print $2}')
    echo "$mode: $total instructions for $REQUESTS requests = $((total / REQUESTS)) per request ($part)"
    if [ "$mode" = sqlite ] && [ -f "$dir/log.db" ]; then
        rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from request_log').fetchone()[0])" "$dir/log.db")
        echo "  request_log rows: $rows"
    fi
    if [ "${KEEP:-}" = 1 ]; then echo "  kept $dir"; else rm -rf "$dir"; fi
done
