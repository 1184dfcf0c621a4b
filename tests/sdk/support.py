"""Helpers of the SDK suite: process management, the mock's introspection API, the gateway config,
and the checks every test makes on what the upstream (the mock) received."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: The key every SDK client sends; it must never reach the upstream.
CLIENT_KEY = "sk-client-secret"

#: How long a binary may take to print its "listening on" line.
STARTUP_TIMEOUT = float(os.environ.get("OCTOLLM_SDK_STARTUP_TIMEOUT", "60"))
#: Per-request client timeout (seconds), so that a hung gateway fails a test instead of the run.
CLIENT_TIMEOUT = 30.0

#: Environment given to the gateway process; the Anthropic backend's key is read from it.
GATEWAY_ENV = {"OCTO_SDK_TEST_ANTH_KEY": "sk-upstream-anth"}


@dataclass(frozen=True)
class Backend:
    name: str
    protocol: str
    key: str
    #: Request header in which the gateway must send the key upstream, and its value.
    key_header: str
    key_value: str


BACKENDS = {
    "oa-chat": Backend("oa-chat", "openai_chat", "sk-upstream-chat", "authorization", "Bearer sk-upstream-chat"),
    "oa-resp": Backend("oa-resp", "openai_responses", "sk-upstream-resp", "authorization", "Bearer sk-upstream-resp"),
    "anth": Backend("anth", "anthropic", "sk-upstream-anth", "x-api-key", "sk-upstream-anth"),
    "gem": Backend("gem", "gemini", "sk-upstream-gem", "x-goog-api-key", "sk-upstream-gem"),
}

#: Exposed model name → (backend, upstream model name).
MODELS = {
    "chat-model": ("oa-chat", "mock-gpt"),
    "responses-model": ("oa-resp", "mock-resp"),
    "claude-model": ("anth", "mock-claude"),
    "gemini-model": ("gem", "mock-gemini"),
}

#: Embeddings models: exposed name → (backend, upstream model). The OpenAI backends come with
#: OpenAI's embeddings API, the Gemini backend with Gemini's (docs/conversion.md, "Embeddings").
EMBED_MODELS = {
    "embed-oa": ("oa-chat", "mock-embed"),
    "embed-gem": ("gem", "mock-gemini-embed"),
}

#: Every model the session gateway lists.
ALL_MODELS = {**MODELS, **EMBED_MODELS}

#: Extra header configured on the OpenAI chat backend (checked upstream).
CHAT_EXTRA_HEADER = ("x-octo-sdk-test", "chat-backend")

REPLY_PREFIX = "Hello from octo-mock. You said: "


def bin_path(name: str) -> Path:
    bin_dir = Path(os.environ.get("OCTOLLM_BIN_DIR") or REPO / "target" / "debug")
    path = bin_dir / name
    if not path.is_file():
        raise RuntimeError(
            f"{path} not found: build it with `cargo build --workspace --bins` "
            "(or point OCTOLLM_BIN_DIR at the directory holding octollm-server and octo-mock)"
        )
    return path


def write_gateway_config(path: Path, mock_url: str, listen: str = "127.0.0.1:0") -> None:
    """One backend per protocol, all on the mock, each with its own fake upstream key.

    The key forms differ on purpose: `api_keys` lists, a single `api_key`, and `${ENV}`
    interpolation (Anthropic), so that the config loader's documented variants are all used.
    """
    name, value = CHAT_EXTRA_HEADER
    text = f"""\
# Written by tests/sdk/conftest.py
listen: "{listen}"
backends:
  oa-chat:
    base_url: "{mock_url}"
    protocol: openai_chat
    api_keys: ["{BACKENDS['oa-chat'].key}"]
    headers: {{{name}: "{value}"}}
  oa-resp:
    base_url: "{mock_url}"
    protocol: openai_responses
    api_key: "{BACKENDS['oa-resp'].key}"
  anth:
    base_url: "{mock_url}"
    protocol: anthropic
    api_keys: ["${{OCTO_SDK_TEST_ANTH_KEY}}"]
  gem:
    base_url: "{mock_url}"
    protocol: gemini
    api_keys: ["{BACKENDS['gem'].key}"]
models:
"""
    # One attempt per request: these tests pin what each SDK sees of one upstream answer (a 429
    # passed through, not retried); retries and failover are tested in the Rust suites.
    for exposed, (backend, upstream) in ALL_MODELS.items():
        text += (
            f"  {exposed}:\n    retry: {{max_attempts: 1}}\n"
            f"    targets:\n      - {{backend: {backend}, model: {upstream}}}\n"
        )
    path.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------------ processes

#: Every process started by the session fixtures, for failure reports.
RUNNING: list["Proc"] = []


class Proc:
    """A child process that announces its URL with a `<name> listening on http://...` stdout line.

    The constructor returns once that line has been read (or raises when the process exits first or
    does not print it within STARTUP_TIMEOUT). The rest of stdout is drained by a thread, so a
    chatty process never blocks on a full pipe; stderr goes to a temporary file.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self._stderr = tempfile.TemporaryFile()
        self._stdout_lines: list[str] = []
        self._lock = threading.Lock()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=str(REPO),
        )
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True).start()

    def _wait_ready(self) -> str:
        pattern = re.compile(rf"^{re.escape(self.name)} listening on (http://\S+?)/?\s*$")
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    self._stdout_lines.append(line)
                    m = pattern.match(line)
                    if m:
                        self._rest = buf
                        return m.group(1)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(
                        f"{self.name} did not print '{self.name} listening on http://...' within "
                        f"{STARTUP_TIMEOUT:.0f}s\n{self.output_tail()}"
                    )
                if not sel.select(remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.popen.wait()
                    raise RuntimeError(
                        f"{self.name} exited with status {code} before it was ready: "
                        f"{' '.join(self.argv)}\n{self.output_tail()}"
                    )
                buf += chunk

    def _drain(self) -> None:
        buf = self._rest
        stdout = self.popen.stdout
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                with self._lock:
                    self._stdout_lines.append(raw.decode("utf-8", "replace"))
                    del self._stdout_lines[:-500]
            try:
                chunk = os.read(stdout.fileno(), 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            buf += chunk

    def output_tail(self, limit: int = 6000) -> str:
        with self._lock:
            out = "\n".join(self._stdout_lines)[-limit:]
        try:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace")[-limit:]
        except (OSError, ValueError):
            err = "<closed>"
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{err}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Sends `sig`; kills the process if it has not exited within `timeout` s. Returns the
        exit status, or None when it had to be killed."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None
        finally:
            if self in RUNNING:
                RUNNING.remove(self)


# ------------------------------------------------------------------------------------------ HTTP


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """A plain HTTP request with the standard library: (status, headers, body)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@dataclass
class Gateway:
    url: str
    proc: Proc


@dataclass
class MockClient:
    url: str
    proc: Proc

    def requests(self, body: bool = False) -> list[dict]:
        """The recorded requests; with `body`, each also has its `body` (JSON when it parses)."""
        query = "?body=1" if body else ""
        status, _, body = http("GET", f"{self.url}/_mock/requests{query}")
        assert status == 200, body
        return json.loads(body)

    def stats(self) -> dict:
        status, _, body = http("GET", f"{self.url}/_mock/stats")
        assert status == 200, body
        return json.loads(body)

    def reset(self) -> None:
        status, _, body = http("POST", f"{self.url}/_mock/reset")
        assert status in (200, 204), body

    def only_request(self) -> dict:
        """The single request the mock received in this test."""
        reqs = self.requests()
        assert len(reqs) == 1, f"expected exactly one upstream request, got {len(reqs)}: {reqs}"
        return reqs[0]


# ------------------------------------------------------------------------------------------ client side


@dataclass
class SentRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SentLog:
    """Requests an SDK client sent, recorded by an httpx2 `request` event hook."""

    requests: list[SentRequest] = field(default_factory=list)

    def hook(self, request) -> None:
        body = request.read()
        self.requests.append(
            SentRequest(request.method, str(request.url), {k.lower(): v for k, v in request.headers.items()}, body)
        )

    def only(self) -> SentRequest:
        assert len(self.requests) == 1, f"expected one client request, got {len(self.requests)}"
        return self.requests[0]


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def with_model(body: bytes, exposed: str, upstream: str) -> bytes:
    """`body` with the value of its top-level `"model"` member replaced, bytes otherwise untouched."""
    pattern = re.compile(rb'("model"\s*:\s*)' + re.escape(json.dumps(exposed).encode()))
    new, n = pattern.subn(lambda m: m.group(1) + json.dumps(upstream).encode(), body, count=1)
    assert n == 1, f"client body has no \"model\": {exposed!r} member: {body[:200]!r}"
    return new


# ------------------------------------------------------------------------------------------ assertions


def assert_no_client_key(record: dict) -> None:
    """The client's key appears nowhere in what the mock recorded (headers, path and query)."""
    dumped = json.dumps(record)
    assert CLIENT_KEY not in dumped, f"client key leaked upstream: {record}"


def asks_no_stream_usage(body: bytes) -> bool:
    """Whether an OpenAI Chat request streams without asking for usage: the gateway then asks the
    upstream for it (`stream_options` inserted first in the object, every other byte kept) and
    removes it from the client's stream (docs/config.md, `stream_usage`)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    options = doc.get("stream_options")
    return doc.get("stream") is True and options is None


def assert_upstream_request(
    record: dict,
    *,
    backend: str,
    path: str | re.Pattern,
    sent: SentRequest | None = None,
    exposed_model: str | None = None,
    upstream_model: str | None = None,
) -> None:
    """Checks one request as the mock saw it.

    - method POST and the expected path (exact string or regex on `path_and_query`);
    - the backend's upstream key in the protocol's header, and the client key nowhere;
    - when the client request is given and the model is in the body: the body is the client's,
      byte for byte, except for the model name (compared by length and FNV-1a 64 digest, which is
      all the mock exposes); when the model is in the path (Gemini), the body is identical.
    """
    b = BACKENDS[backend]
    assert record["method"] == "POST", record
    pq = record["path_and_query"]
    if isinstance(path, re.Pattern):
        assert path.fullmatch(pq), f"upstream path {pq!r} does not match {path.pattern!r}"
    else:
        assert pq == path, f"upstream path {pq!r} != {path!r}"
    headers = {k.lower(): v for k, v in record["headers"].items()}
    assert headers.get(b.key_header) == b.key_value, (
        f"upstream {b.key_header} is {headers.get(b.key_header)!r}, expected {b.key_value!r}; headers: {headers}"
    )
    assert_no_client_key(record)
    if sent is not None:
        if exposed_model is not None and upstream_model is not None:
            expected = with_model(sent.body, exposed_model, upstream_model)
            what = f"the client's body with model {exposed_model!r} -> {upstream_model!r}"
        else:
            expected = sent.body
            what = "the client's body unchanged"
        if b.protocol == "openai_chat" and asks_no_stream_usage(sent.body):
            expected = b'{"stream_options":{"include_usage":true},' + expected[1:]
            what += ", with stream_options.include_usage added (backend `stream_usage`)"
        assert (record["body_len"], record["body_fnv64"]) == (len(expected), fnv1a64(expected)), (
            f"upstream body (len {record['body_len']}, fnv {record['body_fnv64']}) is not {what} "
            f"(len {len(expected)}, fnv {fnv1a64(expected)}); client body: {sent.body[:300]!r}"
        )
