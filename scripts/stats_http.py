"""Times every statistics query the admin API serves, through the real server, on a given log.

    cargo build --release -p octo-bench -p octo-server
    target/release/octo-fill-log target/big.db 10000000
    OCTOLLM_BIN_DIR=target/release python3 scripts/stats_http.py target/big.db
    # or any storage URL (PostgreSQL, MySQL), filled the same way:
    target/release/octo-fill-log postgres://u@host/db 10000000
    OCTOLLM_BIN_DIR=target/release python3 scripts/stats_http.py postgres://u@host/db

Starts `octollm-server` ($OCTOLLM_BIN_DIR, default target/debug) on that file with an admin token,
then for each bucket width over the range the panel uses for it (minutes: the last 6 hours and the
last day; hours: the last 7 days and 30 days; days: 30 days) and each `group_by` (none, model,
backend, org, user, status) sends `GET /api/v1/stats` 11 times and prints the median and the
slowest of the last 10 wall times (client side, loopback, the answer read whole), with the buckets
the answer held and its size. Measures; asserts nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sdk"))

from support import Proc, bin_path  # noqa: E402

TOKEN = "stats-http-token"
QUERIES = [
    ("minute", dt.timedelta(hours=6)),
    ("minute", dt.timedelta(days=1)),
    ("hour", dt.timedelta(days=7)),
    ("hour", dt.timedelta(days=30)),
    ("day", dt.timedelta(days=30)),
]
GROUPS = ["", "model", "backend", "org", "user", "status"]


def main() -> None:
    arg = sys.argv[1]
    url = arg if "://" in arg else f"sqlite://{Path(arg).resolve()}"
    d = Path(tempfile.mkdtemp())
    cfg = d / "stats.yaml"
    cfg.write_text(f"""listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
storage: {{url: "{url}", retention: forever}}
backends: {{b: {{base_url: "http://127.0.0.1:1", protocol: openai_chat}}}}
models: {{m: {{targets: [{{backend: b}}]}}}}
""")
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(cfg)],
                env={**os.environ, "OCTOLLM_LOG": "warn"})
    admin = re.search(r"admin on (http://\S+) ", "\n".join(proc._stdout_lines)).group(1).rstrip("/")
    try:
        print(f"{'bucket':>6} {'range':>8} {'group_by':>8} {'median ms':>10} {'max ms':>7} {'buckets':>8} {'KiB':>7}")
        for bucket, span in QUERIES:
            for group in GROUPS:
                now = dt.datetime.now(dt.timezone.utc)
                q = {"bucket": bucket, "since": (now - span).isoformat(), "until": now.isoformat()}
                if group:
                    q["group_by"] = group
                url = f"{admin}/api/v1/stats?{urllib.parse.urlencode(q)}"
                req = urllib.request.Request(url, headers={"authorization": f"Bearer {TOKEN}"})
                times = []
                body = b""
                for _ in range(11):
                    t = time.perf_counter()
                    with urllib.request.urlopen(req, timeout=60) as r:
                        body = r.read()
                    times.append((time.perf_counter() - t) * 1000)
                times = times[1:]  # the first warms the page cache
                n = len(json.loads(body)["buckets"])
                label = f"{span.days}d" if span.days else f"{span.seconds // 3600}h"
                print(f"{bucket:>6} {label:>8} {group or '-':>8} {statistics.median(times):>10.1f} "
                      f"{max(times):>7.1f} {n:>8} {len(body) / 1024:>7.0f}")
    finally:
        proc.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
