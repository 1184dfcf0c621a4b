"""Process-level contract of `octollm-server`: readiness line, health endpoint, and clean exit on
SIGTERM / SIGINT."""

from __future__ import annotations

import re
import signal

import pytest

from support import Proc, bin_path, http


def test_healthz(gateway):
    status, _, _ = http("GET", f"{gateway.url}/healthz")
    assert status == 200


def test_listening_line_names_the_bound_port(gateway):
    assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", gateway.url), gateway.url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_exits_on_signal(gateway_config, gateway_env, sig):
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(gateway_config)], env=gateway_env)
    try:
        status, _, _ = http("GET", f"{proc.url}/healthz")
        assert status == 200
    finally:
        code = proc.stop(sig, timeout=10)
    assert code is not None, f"octollm-server did not exit within 10 s of {sig.name}"
    # A clean shutdown: status 0, or the conventional death-by-signal status.
    assert code in (0, -sig, 128 + sig), f"octollm-server exited with {code} on {sig.name}\n{proc.output_tail()}"
