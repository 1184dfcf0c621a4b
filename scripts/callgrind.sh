#!/usr/bin/env bash
# Instructions and heap allocations per request of the release gateway, counted by callgrind
# (deterministic: the figures do not depend on the machine's load). The method of
# docs/performance.md: the gateway (`--storage off`, the harness's config) under
# `valgrind --tool=callgrind`, driven by `octo-loadtest --drive` with sequential requests after a
# warm-up, the counters zeroed in between.
#
#   scripts/callgrind.sh [--bin-dir DIR] [--transport auto|hyper|reqwest] [--bytes N]
#                        [--requests N] [--stream] [--model bench-model|bench-convert]
#                        [--protocol chat|anthropic] [--redis-limit admit|refuse]
#
# --protocol is the client's: OpenAI Chat (`/v1/chat/completions`) or Anthropic Messages
# (`/v1/messages`). It defaults to anthropic with `--model bench-convert` (whose backend speaks
# only OpenAI Chat, so the request is converted: the harness's conversion row; `--stream` then
# measures the converted stream) and to chat otherwise. `--protocol anthropic --model bench-model`
# is the passthrough the harness compares conversion with (the backend speaks Anthropic).
# The run fails if any driven request fails.
#
# --redis-limit gives both models a Redis-backed `rate_limit` (the harness's
# `OCTOLLM_BENCH_OPS=limits` gateway): `admit` with limits never reached (rpm + tpm: one admission
# script per request, and its settlement), `refuse` with `rpm: 1` (every measured request is
# refused). It needs a Redis: `scripts/services.sh && source "$(scripts/services.sh env)"` (reads
# OCTOLLM_TEST_REDIS_URL).
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
protocol=
redis_limit=
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --stream) stream=(--drive-stream); shift ;;
    --model) model=$2; shift 2 ;;
    --protocol) protocol=$2; shift 2 ;;
    --redis-limit) redis_limit=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$protocol" ]; then
  if [ "$model" = bench-convert ]; then protocol=anthropic; else protocol=chat; fi
fi
case "$protocol" in
  chat) anthropic=() ;;
  anthropic) anthropic=(--drive-anthropic) ;;
  *) echo "--protocol must be chat or anthropic, not $protocol" >&2; exit 2 ;;
esac
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
limit_line=
redis_section=
case "$redis_limit" in
  "") ;;
  admit) limit_line=", rate_limit: {rpm: 100000000, tpm: 100000000000}" ;;
  refuse) limit_line=", rate_limit: {rpm: 1}" ;;
  *) echo "--redis-limit takes admit or refuse" >&2; exit 2 ;;
esac
if [ -n "$redis_limit" ]; then
  : "${OCTOLLM_TEST_REDIS_URL:?--redis-limit needs OCTOLLM_TEST_REDIS_URL (source the env of scripts/services.sh)}"
  redis_section="redis: {url: \"$OCTOLLM_TEST_REDIS_URL\", key_prefix: \"octollm-callgrind-$$-$(date +%s):\"}"
fi
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
  bench-model: {targets: [{backend: mock}]$limit_line}
  bench-convert: {targets: [{backend: mock-openai}]$limit_line}
$redis_section
EOF
OCTOLLM_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$bin/octollm-server" --config "$work/gateway.yaml" --watch-interval 0 --storage off \
  >"$work/gw.out" 2>"$work/gw.err" &
vg=$!
pids+=($vg)
gw=$(wait_line "$work/gw.out" "octollm-server listening on ")
drive() {
  "$bin/octo-loadtest" --drive "$gw" --drive-requests "$1" --drive-bytes "$bytes" \
    --drive-model "$model" "${stream[@]}" "${anthropic[@]}" >"$work/drive.out"
  if ! grep -q "errors 0$" "$work/drive.out"; then
    echo "driven requests failed: $(cat "$work/drive.out")" >&2
    exit 1
  fi
}
drive "$warmup"
callgrind_control -z "$vg" >/dev/null
drive "$requests"
callgrind_control -d "$vg" >/dev/null
kill "$vg"
wait "$vg" 2>/dev/null || true
dump=$(ls "$work"/cg.out.* | head -1)
if [ -n "${CALLGRIND_KEEP:-}" ]; then cp "$dump" "$CALLGRIND_KEEP"; fi
python3 - "$dump" "$requests" "$transport" "$bytes" "$model" "$protocol" "$redis_limit" <<'EOF'
import re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, total, allocs, cfn = {}, 0, 0, None
# The system allocator's entry points, and jemalloc's (the release server's allocator).
alloc_fns = {"malloc", "calloc", "realloc", "_rjem_malloc", "_rjem_calloc", "_rjem_realloc",
             "_rjem_mallocx", "_rjem_rallocx"}
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
limit = f" redis-limit={sys.argv[7]}" if sys.argv[7] else ""
print(f"transport={sys.argv[3] or 'default'} model={sys.argv[5]} protocol={sys.argv[6]}{limit} "
      f"bytes={sys.argv[4]}: "
      f"{total / n / 1000:.1f}k instructions, {allocs / n:.1f} allocations per request ({n} requests)")
EOF
