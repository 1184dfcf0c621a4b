#!/usr/bin/env bash
# Instructions and heap allocations per request of the release gateway, counted by callgrind
# (deterministic: the figures do not depend on the machine's load). The method of
# docs/performance.md: the gateway (`--storage off`, the harness's config) under
# `valgrind --tool=callgrind`, driven by `octo-loadtest --drive` with sequential requests after a
# warm-up, the counters zeroed in between.
#
#   scripts/callgrind.sh [--bin-dir DIR] [--transport auto|hyper|reqwest] [--bytes N]
#                        [--requests N] [--stream] [--model bench-model|bench-convert]
#
# Without --transport the config has no `transport` key (a build from before it existed).
# CALLGRIND_KEEP=FILE keeps the profile (for callgrind_annotate).
# Prints one line: instructions and malloc/calloc/realloc calls per request. Needs valgrind and
# the release binaries (cargo build --release -p octo-server -p octo-bench -p octo-mock).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
transport=
bytes=160
requests=2000
warmup=200
stream=()
model=bench-model
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --stream) stream=(--drive-stream); shift ;;
    --model) model=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_line() { # file prefix -> the address after the prefix
  for _ in $(seq 1 600); do
    if line=$(grep -m1 "$2" "$1" 2>/dev/null); then
      echo "${line#*http://}"
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  exit 1
}

"$bin/octo-mock" --listen 127.0.0.1:0 >"$work/mock.out" 2>&1 &
pids+=($!)
mock=$(wait_line "$work/mock.out" "octo-mock listening on ")
transport_line=
if [ -n "$transport" ]; then transport_line=$'\n'"    transport: $transport"; fi
cat >"$work/gateway.yaml" <<EOF
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
  tokens: ["callgrind-admin-token-0123456789"]
backends:
  mock:
    base_url: "http://$mock"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-bench"$transport_line
    timeouts: {connect: 5s, first_byte: 60s, idle: 120s, total: 900s}
  mock-openai:
    base_url: "http://$mock"
    protocol: openai_chat
    api_key: "sk-bench"$transport_line
    timeouts: {connect: 5s, first_byte: 60s, idle: 120s, total: 900s}
models:
  bench-model: {targets: [{backend: mock}]}
  bench-convert: {targets: [{backend: mock-openai}]}
EOF
OCTOLLM_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$bin/octollm-server" --config "$work/gateway.yaml" --watch-interval 0 --storage off \
  >"$work/gw.out" 2>"$work/gw.err" &
vg=$!
pids+=($vg)
gw=$(wait_line "$work/gw.out" "octollm-server listening on ")
drive() {
  "$bin/octo-loadtest" --drive "$gw" --drive-requests "$1" --drive-bytes "$bytes" \
    --drive-model "$model" "${stream[@]}" >/dev/null
}
drive "$warmup"
callgrind_control -z "$vg" >/dev/null
drive "$requests"
callgrind_control -d "$vg" >/dev/null
kill "$vg"
wait "$vg" 2>/dev/null || true
dump=$(ls "$work"/cg.out.* | head -1)
if [ -n "${CALLGRIND_KEEP:-}" ]; then cp "$dump" "$CALLGRIND_KEEP"; fi
python3 - "$dump" "$requests" "$transport" "$bytes" "$model" <<'EOF'
import re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, total, allocs, cfn = {}, 0, 0, None
# glibc's names, and jemalloc's (the release binary's allocator since 2026-12-02).
alloc_fns = {"malloc", "calloc", "realloc", "_rjem_malloc", "_rjem_mallocx", "_rjem_calloc",
             "_rjem_realloc", "_rjem_rallocx"}
for line in open(path, errors="replace"):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        called, i, name = m.group(1), m.group(2), m.group(3)
        if name:
            names[i] = name.strip()
        if called:
            cfn = names.get(i)
        continue
    if line.startswith("calls=") and cfn in alloc_fns:
        allocs += int(line[6:].split()[0])
print(f"transport={sys.argv[3] or 'default'} model={sys.argv[5]} bytes={sys.argv[4]}: "
      f"{total / n / 1000:.1f}k instructions, {allocs / n:.1f} allocations per request ({n} requests)")
EOF
