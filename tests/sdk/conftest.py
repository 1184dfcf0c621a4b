"""Session fixtures for the SDK suite: the real ``octo-mock`` and ``octollm-server`` binaries.

``octo-mock`` is started on an ephemeral port; a temporary gateway config with one backend per
protocol, all pointing at the mock, is written; ``octollm-server --config`` is started on an
ephemeral port. Readiness is the ``... listening on http://...`` line each binary prints once its
socket is bound (no sleeps, no polling). Both are terminated at the end of the session.

The binaries are taken from ``$OCTOLLM_BIN_DIR`` (default ``<repo>/target/debug``); build them with
``cargo build --workspace --bins``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import CLIENT_KEY, MockClient, Proc, bin_path, write_gateway_config  # noqa: E402


@pytest.fixture(scope="session")
def mock() -> MockClient:
    proc = Proc("octo-mock", [str(bin_path("octo-mock")), "--listen", "127.0.0.1:0"])
    support.RUNNING.append(proc)
    try:
        yield MockClient(proc.url, proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def gateway_config(mock: MockClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "octollm.yaml"
    write_gateway_config(path, mock.url)
    return path


@pytest.fixture(scope="session")
def gateway_env() -> dict[str, str]:
    """Environment of the gateway process: the Anthropic backend's key comes from `${ENV}`."""
    env = dict(os.environ)
    env.update(support.GATEWAY_ENV)
    return env


@pytest.fixture(scope="session")
def gateway(gateway_config: Path, gateway_env: dict[str, str]) -> support.Gateway:
    proc = Proc(
        "octollm-server",
        [str(bin_path("octollm-server")), "--config", str(gateway_config)],
        env=gateway_env,
    )
    support.RUNNING.append(proc)
    try:
        yield support.Gateway(proc.url, proc)
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def _fresh_mock_log(gateway: support.Gateway, mock: MockClient) -> None:
    """Every test starts with an empty mock request log, so `mock.requests()` is that test's."""
    mock.reset()


# ------------------------------------------------------------------------------------------ clients


@pytest.fixture
def sent() -> support.SentLog:
    """What the SDK client put on the wire (filled by an httpx2 request hook)."""
    return support.SentLog()


@pytest.fixture
def openai_client(gateway: support.Gateway, sent: support.SentLog):
    import httpx2
    import openai

    http_client = httpx2.Client(event_hooks={"request": [sent.hook]}, timeout=support.CLIENT_TIMEOUT)
    client = openai.OpenAI(
        api_key=CLIENT_KEY,
        base_url=f"{gateway.url}/v1",
        max_retries=0,
        timeout=support.CLIENT_TIMEOUT,
        http_client=http_client,
    )
    yield client
    client.close()


@pytest.fixture
def anthropic_client(gateway: support.Gateway, sent: support.SentLog):
    import anthropic
    import httpx2

    http_client = httpx2.Client(event_hooks={"request": [sent.hook]}, timeout=support.CLIENT_TIMEOUT)
    client = anthropic.Anthropic(
        api_key=CLIENT_KEY,
        base_url=gateway.url,
        max_retries=0,
        timeout=support.CLIENT_TIMEOUT,
        http_client=http_client,
    )
    yield client
    client.close()


@pytest.fixture
def genai_client_factory(gateway: support.Gateway, sent: support.SentLog):
    """`factory(api_version)` → a `genai.Client` on the gateway; kept alive until the test ends."""
    from google import genai
    from google.genai import types

    clients = []

    def make(api_version: str | None):
        client = genai.Client(
            api_key=CLIENT_KEY,
            http_options=types.HttpOptions(
                base_url=gateway.url,
                api_version=api_version,
                timeout=int(support.CLIENT_TIMEOUT * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
                client_args={"event_hooks": {"request": [sent.hook]}},
            ),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failure, attach the tail of the gateway's and the mock's output to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for proc in support.RUNNING:
            report.sections.append((f"{proc.name} output (tail)", proc.output_tail()))
