#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (what `cargo fuzz build` does,
# without needing cargo-fuzz or a nightly toolchain; no AddressSanitizer) and runs each named
# target for SECONDS, one at a time, at the lowest CPU priority, from its corpus (seeded first).
#
#   fuzz/run.sh SECONDS [TARGET...]     # default: every target in fuzz/Cargo.toml
#
# Binaries go to target/fuzz (inside the main target directory); corpora to fuzz/corpus/<target>,
# crashes to fuzz/artifacts/<target>/, a log per target to target/fuzz/logs/<target>.log.
#
# FUZZ_NO_BUILD=1 skips the build (a second run.sh in parallel with a first that built every
# target, `config` included, e.g. to fit two lanes of targets into a deadline).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECONDS_EACH="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    mapfile -t TARGETS < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^octollm-fuzz$')
fi
TARGET_DIR="$(pwd)/../target/fuzz"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps build scripts and proc macros uninstrumented.
# The `config` target needs the gateway crate (`--features config`), much longer to build.
FEATURES=()
for t in "${TARGETS[@]}"; do [ "$t" = config ] && FEATURES=(--features config); done
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    nice -n 19 cargo build --release --target "$TRIPLE" --target-dir "$TARGET_DIR" --bins "${FEATURES[@]}"
fi
python3 seed_corpus.py
mkdir -p "$TARGET_DIR/logs"
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dict=()
    case "$t" in request | response | peek | stream) dict=(-dict=json.dict) ;; esac
    echo "==> $t for ${SECONDS_EACH}s ($(date -u +%H:%M:%S) UTC)"
    nice -n 19 "$TARGET_DIR/$TRIPLE/release/$t" "corpus/$t" "${dict[@]}" \
        -max_total_time="$SECONDS_EACH" -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        > "$TARGET_DIR/logs/$t.log" 2>&1 || echo "    $t FAILED: see $TARGET_DIR/logs/$t.log"
    grep -E '^(Done|stat::number_of_executed_units)' "$TARGET_DIR/logs/$t.log" || tail -n 5 "$TARGET_DIR/logs/$t.log"
done
