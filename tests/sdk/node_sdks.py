"""The official Node SDKs (`openai`, `@anthropic-ai/sdk`, `@google/genai`) the Node suite drives,
installed with `npm ci` from ``tests/node/package-lock.json`` into a cache under ``target/``
(never into the repository).

``python tests/sdk/node_sdks.py install`` installs them (``scripts/test.sh`` runs it before pytest
and carries on when it fails); :func:`ensure` does the same lazily for the pytest fixture. The
install is skipped while the lockfile is the one last installed (a stamp holds its digest). When
Node or npm is missing, or the registry cannot be reached, :func:`ensure` returns the reason
instead of raising, and the Node tests skip with it: CI never fails because the registry is down.

Environment:
    OCTOLLM_NODE_SDKS_DIR      where `node_modules` goes (default ``<repo>/target/node-sdks``)
    OCTOLLM_NODE_SDKS_INSTALL  ``0``: the fixture does not run npm itself (``scripts/test.sh`` sets
                               it after its own install step); the reason of that step's failure is
                               then read from ``<dir>/install-failure.txt``
    OCTOLLM_AGENT_INSTALL_TIMEOUT  seconds allowed for ``npm ci`` (default 600)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The Node suite: test files, the reporter, package.json and its lockfile (the pinned versions).
NODE_DIR = REPO / "tests" / "node"
FAILURE_FILE = "install-failure.txt"
STAMP_FILE = "installed-lock.sha256"
#: The oldest Node the pinned SDKs run on.
MIN_NODE_MAJOR = 20


def install_dir() -> Path:
    return Path(os.environ.get("OCTOLLM_NODE_SDKS_DIR") or REPO / "target" / "node-sdks")


def lock_digest() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


@dataclass
class NodeSdks:
    """The outcome of :func:`ensure`: `node` and the `node_modules` to resolve from, or why not."""

    node: str | None
    modules: Path
    problem: str | None


def _node_problem() -> tuple[str | None, str | None]:
    node = shutil.which("node")
    if node is None:
        return None, "node is not on PATH (Node.js is needed for the Node SDK suite)"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"`node --version` failed: {err}"
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return None, f"unrecognised `node --version`: {version!r}"
    if major < MIN_NODE_MAJOR:
        return None, f"node {version} is older than {MIN_NODE_MAJOR}, which the pinned SDKs need"
    return node, None


def install() -> str | None:
    """`npm ci` into :func:`install_dir` unless the stamp says this lockfile is installed. Returns
    None on success, else the reason (also written to `install-failure.txt`)."""
    target = install_dir()
    stamp = target / STAMP_FILE
    digest = lock_digest()
    if (target / "node_modules").is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return None
    failure = _npm_ci(target)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if failure is None:
            stamp.write_text(digest + "\n")
            (target / FAILURE_FILE).unlink(missing_ok=True)
        else:
            stamp.unlink(missing_ok=True)
            (target / FAILURE_FILE).write_text(failure, encoding="utf-8")
    except OSError:
        pass
    return failure


def _npm_ci(target: Path) -> str | None:
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH (Node.js is needed to install the Node SDKs)"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NODE_DIR / name, target / name)
    timeout = float(os.environ.get("OCTOLLM_AGENT_INSTALL_TIMEOUT", "600"))
    argv = [npm, "ci", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not finish within {timeout:.0f}s (registry unreachable?)"
    except OSError as err:
        return f"could not run npm: {err}"
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        return f"`{' '.join(argv)}` failed with status {done.returncode}:\n" + "\n".join(lines[:8])
    return None


def ensure() -> NodeSdks:
    """Node and the installed SDKs, installing them first unless told not to."""
    target = install_dir()
    node, problem = _node_problem()
    if problem is not None:
        return NodeSdks(None, target / "node_modules", problem)
    if os.environ.get("OCTOLLM_NODE_SDKS_INSTALL") == "0":
        try:
            failure = (target / FAILURE_FILE).read_text(encoding="utf-8")
        except OSError:
            failure = None
    else:
        failure = install()
    if failure is None and not (target / "node_modules").is_dir():
        failure = f"{target / 'node_modules'} is missing (run `python tests/sdk/node_sdks.py install`)"
    return NodeSdks(node if failure is None else None, target / "node_modules", failure)


def main(argv: list[str]) -> int:
    """`install`: install and print the SDK versions. Exits 0 when npm or the registry is the
    problem: the Node tests then skip with the reason."""
    if argv[1:] != ["install"]:
        print("usage: node_sdks.py install", file=sys.stderr)
        return 2
    sdks = ensure()
    if sdks.problem:
        print(f"warning: {sdks.problem}\nthe Node SDK tests will be skipped", file=sys.stderr)
        return 0
    for package in ("openai", "@anthropic-ai/sdk", "@google/genai"):
        manifest = sdks.modules / package / "package.json"
        try:
            import json

            print(f"{package}: {json.loads(manifest.read_text())['version']}")
        except (OSError, ValueError, KeyError):
            print(f"{package}: ?")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
