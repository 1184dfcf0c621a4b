#!/usr/bin/env bash
# End-to-end run of the desktop tray app (octollm-desktop, docs/desktop.md) on a virtual X display
# with a tray host, as a user would meet it:
#
#   1. first run on an empty data directory: the starter config is written, the gateway starts in
#      front of the in-process mock, the panel window opens signed in on the Get started page;
#      official-SDK requests go through the gateway; the tray's status line counts them;
#      SIGTERM quits (the gateway drains, the request log is written);
#   2. second run on the same directory: the panel (Overview) and the log window open, more SDK
#      requests, the status line counts both runs' requests; screenshots; quit.
#
# Screenshots (PNG) land in target/desktop-screenshots/: welcome.png (first run), screen.png (the
# whole display), tray.png (the tray host's corner, enlarged), panel.png and logs.png (the windows).
#
# Installs what it needs with apt-get when missing (Debian: xvfb, trayer, scrot, dbus-x11, the
# GTK/WebKitGTK libraries) and builds the app (cargo build -p octo-desktop). Fails loudly on any
# failure. Uses the official OpenAI Python SDK from target/sdk-venv (scripts/test.sh makes it);
# without that venv it falls back to curl and says so.
#
# `--install-only` installs the packages and stops (scripts/test.sh, before building the crate).
# Environment: OCTOLLM_DESKTOP_BIN (a built binary; default: build target/debug/octollm-desktop).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
OUT="$ROOT/target/desktop-screenshots"
WORK="$ROOT/target/desktop-e2e"
VENV_PY="$ROOT/target/sdk-venv/bin/python"

say() { printf '[desktop-e2e] %s\n' "$*"; }
die() { printf '[desktop-e2e] FAILED: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------------------ packages
# The -dev packages build the app; xvfb, xauth, trayer (an XEmbed tray host), dbus and scrot run
# and photograph it.
PKGS=(libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev xvfb xauth trayer scrot dbus dbus-x11)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in Xvfb trayer scrot dbus-run-session; do
    command -v "$tool" >/dev/null || die "$tool is missing after installing ${PKGS[*]}"
done
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi

# ------------------------------------------------------------------------------------ build
BIN="${OCTOLLM_DESKTOP_BIN:-}"
if [ -z "$BIN" ]; then
    say "cargo build -p octo-desktop"
    cargo build -q -p octo-desktop
    BIN="$ROOT/target/debug/octollm-desktop"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

rm -rf "$WORK" "$OUT"
mkdir -p "$WORK" "$OUT"

# The rest runs inside one D-Bus session (tray-icon's libayatana-appindicator talks D-Bus and
# falls back to XEmbed when no StatusNotifier host answers; trayer is that XEmbed host).
if [ -z "${DESKTOP_E2E_INNER:-}" ]; then
    export DESKTOP_E2E_INNER=1 OCTOLLM_DESKTOP_BIN="$BIN"
    exec dbus-run-session -- "$0" "$@"
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# A free display: Xvfb picks it and writes its number to fd 3.
W=1920
H=1080
Xvfb -displayfd 3 -screen 0 "${W}x${H}x24" -nolisten tcp 3>"$WORK/display" >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
    [ -s "$WORK/display" ] && break
    sleep 0.1
done
[ -s "$WORK/display" ] || die "Xvfb did not start: $(cat "$WORK/xvfb.log")"
export DISPLAY=":$(head -n 1 "$WORK/display")"
say "Xvfb on $DISPLAY"
trayer --edge top --align right --widthtype request --height 40 --SetDockType true \
    --transparent false --tint 0x24292f --expand false >"$WORK/trayer.log" 2>&1 &
PIDS+=($!)

export OCTOLLM_DESKTOP_DIR="$WORK/data"
export OCTOLLM_DESKTOP_LISTEN=127.0.0.1:0
export NO_AT_BRIDGE=1

APP_PID=""
# Starts the app with windows $1 open; stdout in $WORK/app-$2.out.
start_app() {
    OCTOLLM_DESKTOP_OPEN="$1" "$BIN" >"$WORK/app-$2.out" 2>"$WORK/app-$2.err" &
    APP_PID=$!
    PIDS+=("$APP_PID")
}

# Waits (bounded) until the app's stdout ($1) has a line matching $2; prints it.
wait_for_line() {
    local file="$1" pattern="$2" i
    for i in $(seq 1 600); do
        if grep -qE "$pattern" "$file" 2>/dev/null; then
            grep -E "$pattern" "$file" | tail -n 1
            return 0
        fi
        kill -0 "$APP_PID" 2>/dev/null || { tail -n 30 "${file%.out}.err" >&2; die "the app exited before printing /$pattern/"; }
        sleep 0.1
    done
    tail -n 30 "${file%.out}.err" >&2
    die "no line /$pattern/ in $file within 60 s"
}

# Sends $2 requests through the gateway at $1 with the official OpenAI SDK (one of them streamed).
sdk_requests() {
    local base="$1" n="$2"
    if [ -x "$VENV_PY" ] && "$VENV_PY" -c 'import openai' 2>/dev/null; then
        "$VENV_PY" - "$base" "$n" <<'PY'
import sys
from openai import OpenAI

base, n = sys.argv[1], int(sys.argv[2])
client = OpenAI(base_url=base + "/v1", api_key="sk-desktop-e2e")
for i in range(n - 1):
    r = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"hello from the SDK {i}"}])
    assert r.choices[0].message.content, r
stream = client.chat.completions.create(model="mock-claude", stream=True, messages=[{"role": "user", "content": "stream please"}])
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert text, "empty stream"
print(f"openai SDK: {n} requests through {base}")
PY
    else
        say "target/sdk-venv has no openai SDK (scripts/test.sh installs it): using curl"
        for _ in $(seq 1 "$n"); do
            curl -fsS "$base/v1/chat/completions" -H 'content-type: application/json' \
                -d '{"model":"mock-gpt","messages":[{"role":"user","content":"hello from curl"}]}' >/dev/null
        done
    fi
}

stop_app() {
    kill -TERM "$APP_PID"
    local rc=0
    wait "$APP_PID" || rc=$?
    [ "$rc" = 0 ] || { tail -n 30 "$WORK/app-$1.err" >&2; die "the app exited with $rc on SIGTERM"; }
    grep -q "quit (the gateway has drained)" "$WORK/app-$1.out" || die "no graceful quit in run $1"
}

shot() { scrot -o "$@"; }

# ------------------------------------------------------------------------------------ run 1
say "first run (empty data directory)"
start_app "" 1
line=$(wait_for_line "$WORK/app-1.out" '^octollm-desktop: running on http://')
GATEWAY=$(sed -E 's|.*running on (http://[0-9.:]+).*|\1|' <<<"$line")
say "$line"
[ -f "$OCTOLLM_DESKTOP_DIR/config.yaml" ] || die "no starter config written"
sdk_requests "$GATEWAY" 3
wait_for_line "$WORK/app-1.out" 'status: Running on .* 3 requests today · \$' >/dev/null
# The panel opened by itself (first run) on Get started; give WebKit time to paint it.
sleep 4
shot "$OUT/welcome.png"
stop_app 1
[ -s "$OCTOLLM_DESKTOP_DIR/octollm.db" ] || die "no database in the data directory"

# ------------------------------------------------------------------------------------ run 2
say "second run (same directory): panel and log windows"
start_app "panel,logs" 2
line=$(wait_for_line "$WORK/app-2.out" '^octollm-desktop: running on http://')
GATEWAY=$(sed -E 's|.*running on (http://[0-9.:]+).*|\1|' <<<"$line")
say "$line"
sdk_requests "$GATEWAY" 4
status=$(wait_for_line "$WORK/app-2.out" 'status: Running on .* 7 requests today · \$')
say "tray ${status#octollm-desktop: }"
# The Overview refreshes every 5 s: let it show the second run's requests.
sleep 7
shot "$OUT/screen.png"
shot -a "$((W - 160)),0,160,40" "$OUT/tray.png"
shot -a "20,50,1200,800" "$OUT/panel.png"
shot -a "1240,50,660,800" "$OUT/logs.png"
stop_app 2

for f in welcome screen tray panel logs; do
    [ -s "$OUT/$f.png" ] || die "screenshot $f.png is missing"
done
say "screenshots: $(cd "$OUT" && ls -1 | tr '\n' ' ')in target/desktop-screenshots/"
say "OK"
