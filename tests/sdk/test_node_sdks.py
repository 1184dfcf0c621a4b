"""The official Node SDKs through the real gateway against the mock: `openai`, `@anthropic-ai/sdk`
and `@google/genai` (pinned in ``tests/node/package-lock.json``), with their stream helpers, on
passthrough and converted paths for every protocol each SDK speaks. Their stream parsers are not
the Python SDKs' (the reason this suite exists beside the Python one).

The cases are ``node:test`` tests in ``tests/node/*.test.cjs``. One ``node --test`` run (against
this session's gateway and mock, sequentially, since every case resets the mock's log) reports
each case through ``tests/node/reporter.cjs``; each case is then a pytest test of its own, so a
failure names the case and shows its error. A case written in a file but not reported (a file that
did not load) fails too. The SDKs are installed with ``npm ci`` into ``target/node-sdks``
(``node_sdks.py``); without Node, npm or the registry every case skips with the reason.

A case is a top-level ``test("name", …)`` call whose name is a plain string literal (that is how
they are found here, without running Node at collection time).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import node_sdks

#: How long the whole Node run may take.
NODE_TIMEOUT = float(os.environ.get("OCTOLLM_NODE_TIMEOUT", "300"))

_CASE = re.compile(r"""^test\(\s*"((?:[^"\\]|\\.)+)"\s*,""", re.MULTILINE)


def node_cases() -> list[tuple[str, str]]:
    """(file, case name) of every case written in the Node suite."""
    cases = []
    for path in sorted(node_sdks.NODE_DIR.glob("*.test.cjs")):
        for m in _CASE.finditer(path.read_text(encoding="utf-8")):
            cases.append((path.name, json.loads(f'"{m.group(1)}"')))
    return cases


@dataclass
class NodeRun:
    results: dict[tuple[str, str], dict]
    output: str
    returncode: int | None


@pytest.fixture(scope="session")
def node_run(gateway, mock) -> NodeRun:
    sdks = node_sdks.ensure()
    if sdks.problem:
        pytest.skip(f"the Node SDK suite cannot run: {sdks.problem}")
    with tempfile.TemporaryDirectory(prefix="octo-node-") as tmp:
        results_file = Path(tmp) / "results.jsonl"
        files = [str(p) for p in sorted(node_sdks.NODE_DIR.glob("*.test.cjs"))]
        argv = [
            sdks.node,
            "--test",
            "--test-concurrency=1",
            f"--test-reporter={node_sdks.NODE_DIR / 'reporter.cjs'}",
            f"--test-reporter-destination={results_file}",
            "--test-reporter=spec",
            "--test-reporter-destination=stdout",
            *files,
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "NODE_PATH": str(sdks.modules),
            "OCTO_GATEWAY_URL": gateway.url,
            "OCTO_MOCK_URL": mock.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "NO_COLOR": "1",
        }
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=NODE_TIMEOUT, env=env, cwd=tmp, stdin=subprocess.DEVNULL
            )
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as err:
            output = f"{err.stdout or ''}{err.stderr or ''}\n[killed after {NODE_TIMEOUT:g}s]"
            code = None
        results = {}
        if results_file.exists():
            for line in results_file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    r = json.loads(line)
                    results[(r["file"], r["name"])] = r
    return NodeRun(results, output, code)


@pytest.mark.parametrize("case", node_cases(), ids=lambda c: f"{c[0]}::{c[1]}")
def test_node_sdk(node_run: NodeRun, case: tuple[str, str]) -> None:
    result = node_run.results.get(case)
    if result is None:
        pytest.fail(
            f"{case[0]}: case {case[1]!r} was not reported by node (exit status {node_run.returncode})\n"
            f"{node_run.output[-6000:]}"
        )
    if result.get("skipped"):
        pytest.skip(f"skipped in node: {case[1]}")
    assert result["passed"], f"{case[0]}: {case[1]}\n{result.get('error')}"


def test_node_suite_reports_only_known_cases(node_run: NodeRun) -> None:
    """Every reported case is one this file knows (a case whose name is not a plain literal would
    otherwise go unreported), and the run ended cleanly when every case passed."""
    unknown = set(node_run.results) - set(node_cases())
    assert not unknown, f"cases node ran that are not found by name here: {sorted(unknown)}"
    if all(r["passed"] for r in node_run.results.values()) and len(node_run.results) == len(node_cases()):
        assert node_run.returncode == 0, node_run.output[-6000:]
