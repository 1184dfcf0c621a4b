"""Measures how long the web panel's Overview takes to load and paint on a given request log.

    cargo build --release -p octo-bench && target/release/octo-fill-log target/panel-big.db 1000000
    target/sdk-venv/bin/python scripts/panel_paint.py target/panel-big.db

Starts `target/debug/octollm-server` (or $OCTOLLM_BIN_DIR's) on that SQLite file with a panel user,
opens the Overview in Debian's headless Chromium for every time range, unsplit and split by model
and by key, and prints, per view, the time from the statistics request to the next animation frame
after the charts were rendered (the panel's own `data-load-ms`), as the median of 5 loads, with the
rollup buckets the answer held. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sdk"))

from support import Proc, bin_path  # noqa: E402

RANGES = ["15m", "1h", "6h", "24h", "7d", "30d"]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def main() -> None:
    db = Path(sys.argv[1]).resolve()
    pw = "panel paint password"
    h = subprocess.run([str(bin_path("octollm-server")), "hash-password"], input=pw + "\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    d = Path(tempfile.mkdtemp())
    cfg = d / "paint.yaml"
    cfg.write_text(f"""listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", users: [{{name: paint, password: "{h}"}}]}}
storage: {{url: "sqlite://{db}", retention: forever}}
backends: {{b: {{base_url: "http://127.0.0.1:1", protocol: openai_chat}}}}
models: {{m: {{targets: [{{backend: b}}]}}}}
""")
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(cfg)],
                env={**os.environ, "OCTOLLM_LOG": "warn"})
    admin = re.search(r"admin on (http://\S+) ", "\n".join(proc._stdout_lines)).group(1)
    from playwright.sync_api import sync_playwright
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            pg = b.new_page(viewport={"width": 1360, "height": 900})
            pg.goto(admin + "/")
            pg.get_by_label("User name").fill("paint")
            pg.get_by_label("Password").fill(pw)
            pg.get_by_role("button", name="Sign in").click()
            pg.locator("section[data-load-ms]").wait_for(timeout=60000)
            print(f"{'range':>6} {'split':>7} {'median ms':>10} {'max ms':>7} {'buckets':>8}")
            for group in ["", "model", "user"]:
                for r in RANGES:
                    times = []
                    buckets = 0
                    for _ in range(5):
                        with pg.expect_response(lambda resp: "/api/v1/stats" in resp.url) as info:
                            pg.goto(f"{admin}/#/overview?range={r}&group={group}")
                            pg.reload()
                        buckets = len(info.value.json()["buckets"])
                        pg.locator("section[data-load-ms]").wait_for(timeout=60000)
                        times.append(int(pg.locator("section[data-load-ms]").get_attribute("data-load-ms")))
                    print(f"{r:>6} {group or '-':>7} {statistics.median(times):>10} {max(times):>7} {buckets:>8}")
            b.close()
    finally:
        proc.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
