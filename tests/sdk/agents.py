"""The real coding agents the agent tests drive: Claude Code, Codex CLI and Gemini CLI, installed with npm into a
cache directory under ``target/`` (never into the repository, never globally).

``python tests/sdk/agents.py install`` installs them (``scripts/test.sh`` runs it before pytest and
carries on when it fails); the test fixture calls :func:`ensure` lazily as well. When npm is missing,
the registry cannot be reached or the install fails, :func:`ensure` returns the reason instead of
raising, and the tests skip with that reason: CI never fails because the registry is down.

Environment:
    OCTOLLM_AGENTS_DIR      npm prefix of the install (default ``<repo>/target/agents``)
    OCTOLLM_AGENT_PACKAGES  space-separated npm specs (default: the versions below, pinned so that a
                            new agent release cannot break CI unnoticed; set e.g.
                            ``@anthropic-ai/claude-code@latest @openai/codex@latest
                            @google/gemini-cli@latest`` to try the newest)
    OCTOLLM_AGENT_INSTALL_TIMEOUT  seconds allowed for ``npm install`` (default 600)
    OCTOLLM_AGENT_INSTALL   ``0``: the fixture does not run npm itself (``scripts/test.sh`` sets it
                            after its own install step, so an unreachable registry is waited for
                            once); the reason of that step's failure is then read from
                            ``<prefix>/install-failure.txt``
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The versions the suite was written against. Claude Code 2.1.197 is the newest release that still
#: runs on Node 20 (later ones declare `engines.node >= 22`); Gemini CLI 0.61.0 (a self-contained
#: bundle, `engines.node >= 20`) is the newest release.
DEFAULT_PACKAGES = ("@anthropic-ai/claude-code@2.1.197", "@openai/codex@0.169.0", "@google/gemini-cli@0.61.0")

#: npm package → the command it installs in `node_modules/.bin`.
COMMANDS = {"@anthropic-ai/claude-code": "claude", "@openai/codex": "codex", "@google/gemini-cli": "gemini"}


def agents_dir() -> Path:
    return Path(os.environ.get("OCTOLLM_AGENTS_DIR") or REPO / "target" / "agents")


def package_specs() -> list[str]:
    specs = os.environ.get("OCTOLLM_AGENT_PACKAGES", "").split()
    return specs or list(DEFAULT_PACKAGES)


def split_spec(spec: str) -> tuple[str, str | None]:
    """`@scope/name@1.2.3` → (`@scope/name`, `1.2.3`); no version → (`@scope/name`, None)."""
    at = spec.rfind("@")
    if at > 0:
        return spec[:at], spec[at + 1 :] or None
    return spec, None


def installed_version(prefix: Path, package: str) -> str | None:
    manifest = prefix / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


def _satisfied(prefix: Path, spec: str) -> bool:
    """Installed and, when the spec names an exact version, at that version. A tag or range
    (`latest`, `^2`) is satisfied by any installed version: `scripts/test.sh` refreshes those."""
    package, wanted = split_spec(spec)
    have = installed_version(prefix, package)
    if have is None or not (prefix / "node_modules" / ".bin" / COMMANDS.get(package, package)).exists():
        return False
    return wanted is None or not wanted[:1].isdigit() or have == wanted


@dataclass
class Agents:
    """The outcome of :func:`ensure`: per command, its path, or why it is unavailable."""

    prefix: Path
    paths: dict[str, Path]
    versions: dict[str, str]
    problems: dict[str, str]

    def command(self, name: str) -> Path:
        """The command's path, or a skip of the current test naming the reason."""
        import pytest

        if name in self.paths:
            return self.paths[name]
        pytest.skip(f"{name} is not available: {self.problems.get(name, 'not installed')}")


def _gist(text: str, max_lines: int = 8) -> str:
    """The first lines of an error output, without stack frames and npm's log-file pointer."""
    lines = [
        line
        for line in text.strip().splitlines()
        if line.strip()
        and not line.removeprefix("npm error").lstrip().startswith("at ")
        and "complete log of this run" not in line
    ]
    return "\n".join(lines[:max_lines] + (["…"] if len(lines) > max_lines else []))


FAILURE_FILE = "install-failure.txt"


def install(prefix: Path, specs: list[str], force: bool = False) -> str | None:
    """Runs `npm install` for the specs that are not installed yet (all of them with `force`).
    Returns None on success, else the reason it could not install (also written to
    `<prefix>/install-failure.txt`)."""
    todo = specs if force else [s for s in specs if not _satisfied(prefix, s)]
    if not todo:
        return None
    failure = _npm_install(prefix, todo)
    record = prefix / FAILURE_FILE
    try:
        if failure is None:
            record.unlink(missing_ok=True)
        else:
            prefix.mkdir(parents=True, exist_ok=True)
            record.write_text(failure, encoding="utf-8")
    except OSError:
        pass
    return failure


def _npm_install(prefix: Path, todo: list[str]) -> str | None:
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH (Node.js is needed to install the coding agents)"
    prefix.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("OCTOLLM_AGENT_INSTALL_TIMEOUT", "600"))
    argv = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *todo]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not finish within {timeout:.0f}s (registry unreachable?)"
    except OSError as err:
        return f"could not run npm: {err}"
    if done.returncode != 0:
        return f"`{' '.join(argv)}` failed with status {done.returncode}:\n{_gist(done.stderr or done.stdout)}"
    return None


def _probe(path: Path) -> tuple[str | None, str | None]:
    """(`--version` output, None) when the command runs, else (None, why not)."""
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"`{path} --version` failed: {err}"
    if done.returncode != 0:
        return None, f"`{path} --version` exited with {done.returncode}: {_gist(done.stderr or done.stdout)}"
    return done.stdout.strip(), None


def ensure() -> Agents:
    """Installs what is missing (see the module docs) and checks that each command runs."""
    prefix = agents_dir()
    specs = package_specs()
    if os.environ.get("OCTOLLM_AGENT_INSTALL") == "0":
        try:
            failure = (prefix / FAILURE_FILE).read_text(encoding="utf-8")
        except OSError:
            failure = None
    else:
        failure = install(prefix, specs)
    agents = Agents(prefix, {}, {}, {})
    for spec in specs:
        package, _ = split_spec(spec)
        name = COMMANDS.get(package, package)
        path = prefix / "node_modules" / ".bin" / name
        if not path.exists():
            agents.problems[name] = failure or f"{path} is missing after `npm install {spec}`"
            continue
        version, problem = _probe(path)
        if problem is not None:
            agents.problems[name] = problem
        else:
            agents.paths[name] = path
            agents.versions[name] = version
    return agents


def main(argv: list[str]) -> int:
    """`install`: install (or refresh, when a spec is a tag such as `latest`) and print the versions.
    Always exits 0 when the failure is the registry's or npm's: the tests then skip."""
    if argv[1:] != ["install"]:
        print("usage: agents.py install", file=sys.stderr)
        return 2
    prefix = agents_dir()
    specs = package_specs()
    floating = [s for s in specs if not (split_spec(s)[1] or "")[:1].isdigit()]
    failure = install(prefix, floating, force=True) if floating else None
    agents = ensure()
    for name, version in agents.versions.items():
        print(f"{name}: {version} ({agents.paths[name]})")
    for name, problem in {**({"npm": failure} if failure else {}), **agents.problems}.items():
        print(f"warning: {name}: {problem}\nthe agent tests will be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
