#!/usr/bin/env bash
# The one command that runs every OctoLLM check and test, on a fresh Debian machine that has only
# the Rust toolchain (rustup), Python 3.11 with pip, and Node:
#
#   format, clippy, rustdoc, cargo-deny (licences, bans, sources; installed once into target/tools),
#   the web panel's build checked against its committed output (npm ci), build, cargo test, then
#   the Python suites (the official OpenAI / Anthropic / Google GenAI SDKs driven through the real
#   gateway against the mock, the official Node SDKs (npm ci into target/node-sdks), the web panel
#   in Debian's headless Chromium with Playwright (chromium installed with apt-get when missing),
#   and real coding agents (Claude Code, Codex CLI, Gemini CLI; installed with npm into
#   target/agents); the Node parts are skipped with the reason printed when npm or the registry is
#   unavailable) in a venv at target/sdk-venv. The desktop tray app (crates/octo-desktop) is
#   checked, built and tested with the workspace after its Debian packages (GTK, WebKitGTK, Xvfb,
#   trayer; apt-get when missing), and run end to end under Xvfb (scripts/desktop_e2e.sh).
#
# The last line printed is pytest's summary (`N passed in Xs`). Any failing step fails the script.
#
# Environment:
#   PYTHON            interpreter used to create the venv (default: python3.11, else python3)
#   OCTOLLM_BIN_DIR   where the SDK suite finds octollm-server and octo-mock (default target/debug)
#   SDK_PYTEST_ARGS   extra arguments for the final pytest run (e.g. "-x -k anthropic")
#   OCTOLLM_SKIP_DESKTOP  1 leaves the desktop app out (its apt packages, build, tests, Xvfb run)
#   OCTOLLM_AGENT_PACKAGES  npm specs of the coding agents (default: the pinned versions in
#                     tests/sdk/agents.py; e.g. "@anthropic-ai/claude-code@latest @openai/codex@latest")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

step() {
    printf '\n==> %s\n' "$*"
}

# ------------------------------------------------------------------------------------ toolchain
step "toolchain"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy || echo "warning: 'rustup component add rustfmt clippy' failed; continuing"
fi
cargo --version
rustc --version
# The gateway binary's allocator (tikv-jemalloc-sys) builds jemalloc from source with its
# configure script and make; a C compiler is already needed (aws-lc-sys), make may be missing.
if ! command -v make >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends make >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends make >/dev/null
    fi
fi

# ------------------------------------------------------------------------------------ Rust checks
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

# The desktop tray app (crates/octo-desktop, docs/desktop.md) builds against GTK and WebKitGTK:
# their Debian packages first (apt-get when missing; with Xvfb, trayer and scrot for its
# end-to-end run below). It is then checked, built and tested with the rest of the workspace, in
# the same cargo runs: a separate `-p octo-desktop` run would resolve other features for shared
# crates (tokio, serde, reqwest) and rebuild the whole graph a second time.
# OCTOLLM_SKIP_DESKTOP=1 leaves it out of every step (saying so).
if [ "${OCTOLLM_SKIP_DESKTOP:-0}" = 1 ]; then
    step "desktop app: skipped (OCTOLLM_SKIP_DESKTOP=1): --exclude octo-desktop everywhere"
    DESKTOP_EXCLUDE=(--exclude octo-desktop)
else
    step "desktop app: Debian packages (scripts/desktop_e2e.sh --install-only)"
    scripts/desktop_e2e.sh --install-only
    DESKTOP_EXCLUDE=()
fi

step "cargo clippy --workspace ${DESKTOP_EXCLUDE[*]} --all-targets -- -D warnings"
cargo clippy --workspace "${DESKTOP_EXCLUDE[@]}" --all-targets -- -D warnings

step "cargo doc --workspace ${DESKTOP_EXCLUDE[*]} --no-deps (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace "${DESKTOP_EXCLUDE[@]}" --no-deps

# cargo-deny, pinned, built once into target/tools and reused while its version matches. It is
# built without optimisation (`--debug`): the check runs for seconds either way, and an optimised
# build takes several times longer on a two-core machine. It reads deny.toml: permissive licences
# only, evalexpr pinned to 11.3.1, crates.io as the only source. Advisories are left out: they need
# the RustSec database from GitHub (see deny.toml).
CARGO_DENY_VERSION=0.20.2
CARGO_DENY="$ROOT/target/tools/bin/cargo-deny"
step "cargo-deny $CARGO_DENY_VERSION check licenses bans sources"
if [ "$("$CARGO_DENY" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    cargo install --debug --locked --version "$CARGO_DENY_VERSION" --root "$ROOT/target/tools" cargo-deny
fi
# Every platform's crates are in the graph; fetch them once so the check itself needs no network.
cargo fetch --locked
# --workspace: every member is a root of the graph (without it cargo-deny starts from the root
# package `octollm` alone and never sees octo-bench or octo-desktop).
"$CARGO_DENY" --offline --workspace check licenses bans sources

# The web panel's built files are committed (crates/octo-server/panel/dist, embedded in the binary,
# so building the server needs no Node). Rebuild them from the TypeScript sources with the locked
# toolchain (npm ci: package-lock.json) into target/panel-build and fail when they differ from the
# committed ones: the build is deterministic (fixed file names, no timestamps).
step "web panel: npm ci, type check and build; compare with the committed panel/dist"
PANEL="$ROOT/crates/octo-server/panel"
if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: install Node.js 20.19+ (Debian: apt-get install nodejs npm) to check the panel build" >&2
    exit 1
fi
(cd "$PANEL" && npm ci --no-audit --no-fund --loglevel=error && PANEL_OUT_DIR="$ROOT/target/panel-build" npm run --silent build >/dev/null)
if ! diff -r "$PANEL/dist" "$ROOT/target/panel-build"; then
    echo "crates/octo-server/panel/dist differs from a build of its sources: run 'npm ci && npm run build' in crates/octo-server/panel and commit dist/" >&2
    exit 1
fi
echo "panel/dist matches its sources ($(cat "$PANEL"/dist/index.html "$PANEL"/dist/assets/* | wc -c) bytes)"

step "cargo build --workspace ${DESKTOP_EXCLUDE[*]} --bins"
cargo build --workspace "${DESKTOP_EXCLUDE[@]}" --bins

# The engine model builds without the hyper front (docs/architecture.md, "What the core holds").
step "cargo clippy -p octo-core -p octo-convert --no-default-features -- -D warnings"
cargo clippy -p octo-core -p octo-convert --no-default-features -- -D warnings

step "servers for the storage and limits tests (scripts/services.sh: PostgreSQL, MariaDB, Redis)"
scripts/services.sh
# shellcheck source=/dev/null
source "$(scripts/services.sh env)"

step "cargo test --workspace ${DESKTOP_EXCLUDE[*]}"
cargo test --workspace "${DESKTOP_EXCLUDE[@]}"

step "benchmarks, each run once as a smoke test (cargo test --benches)"
cargo test --workspace "${DESKTOP_EXCLUDE[@]}" --benches

step "load harness smoke run (octo-loadtest --smoke on the debug binaries; never asserts a timing)"
mkdir -p target/loadtest
target/debug/octo-loadtest --smoke --no-pin --no-litellm --out target/loadtest/smoke.json \
    > target/loadtest/smoke.log 2>&1 || { cat target/loadtest/smoke.log; exit 1; }
tail -n 12 target/loadtest/smoke.log

# A short soak (docs/reliability.md, "Soak"): 90 seconds of mixed load with streams, conversions,
# upstream and mid-stream errors, client disconnects and config reloads against the debug binaries;
# fails on RSS growth after warm-up, growing open files or threads, or any unexpected answer. It
# runs without the request log, whose SQLite cache fills for longer than this run's warm-up (the
# full run, `scripts/soak.sh`, 30 minutes, has it on).
step "short soak (scripts/soak.sh --debug --minutes 1.5 --no-storage)"
scripts/soak.sh --debug --minutes 1.5 --warmup 0.4 --reload-every 15 --no-storage \
    --out target/soak-ci > target/soak-ci.log 2>&1 || { cat target/soak-ci.log; exit 1; }
tail -n 12 target/soak-ci/report.md

# ------------------------------------------------------------------------------------ Python suites
if command -v python3.11 >/dev/null 2>&1; then
    SYS_PYTHON="${PYTHON:-python3.11}"
else
    SYS_PYTHON="${PYTHON:-python3}"
fi
VENV="$ROOT/target/sdk-venv"
step "python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    if ! "$SYS_PYTHON" -m venv "$VENV"; then
        # Debian's own python3 lacks ensurepip unless python3-venv is installed: fall back to
        # virtualenv from PyPI.
        echo "venv module unavailable; trying virtualenv"
        rm -rf "$VENV"
        "$SYS_PYTHON" -m pip install -q --user virtualenv \
            || "$SYS_PYTHON" -m pip install -q --user --break-system-packages virtualenv
        "$SYS_PYTHON" -m virtualenv -q "$VENV"
    fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -Ei '^(openai|anthropic|google-genai|pytest) ' || true

step "coding agents for tests/sdk/test_agents.py (npm install into target/agents)"
# Never fails the run: without npm or the registry the agent tests skip, printing why.
"$VENV/bin/python" tests/sdk/agents.py install \
    || echo "warning: installing the coding agents failed; their tests will be skipped"
# The fixture does not retry the install (an unreachable registry is waited for once).
export OCTOLLM_AGENT_INSTALL=0

step "Node SDKs for tests/sdk/test_node_sdks.py (npm ci into target/node-sdks)"
# Never fails the run: without Node, npm or the registry the Node SDK tests skip, printing why.
"$VENV/bin/python" tests/sdk/node_sdks.py install \
    || echo "warning: installing the Node SDKs failed; their tests will be skipped"
export OCTOLLM_NODE_SDKS_INSTALL=0

# The panel's browser tests (tests/sdk/test_panel.py) drive Debian's Chromium with Playwright for
# Python (in the venv above; Playwright's own browser download is never used).
step "chromium for the panel's browser tests"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
    fi
fi
chromium --version
export OCTOLLM_REQUIRE_BROWSER=1

# The desktop tray app end to end (docs/desktop.md): the binary built above, under Xvfb with a
# tray host, official-SDK requests through it, screenshots in target/desktop-screenshots/.
if [ "${OCTOLLM_SKIP_DESKTOP:-0}" != 1 ]; then
    step "desktop app end to end under Xvfb (scripts/desktop_e2e.sh)"
    OCTOLLM_DESKTOP_BIN="$ROOT/target/debug/octollm-desktop" scripts/desktop_e2e.sh
fi

step "pytest: SDK suite (tests/sdk) + price-snapshot script unit tests"
export OCTOLLM_BIN_DIR="${OCTOLLM_BIN_DIR:-$ROOT/target/debug}"
# -rs prints the reason of every skipped test (e.g. the coding agents could not be installed).
# shellcheck disable=SC2086 # SDK_PYTEST_ARGS is split on purpose.
exec "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider ${SDK_PYTEST_ARGS:-} \
    tests/sdk scripts/test_update_prices.py
