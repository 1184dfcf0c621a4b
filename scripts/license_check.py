#!/usr/bin/env python3
"""Licence check for the OctoLLM workspace, equivalent to cargo-deny's ``[licenses]`` check.

Runs ``cargo metadata --format-version 1 --all-features`` (no platform filter, so every target's
dependencies are included, as are dev- and build-dependencies), walks the resolved dependency graph
from the workspace members and evaluates each package's SPDX ``license`` expression. A package is
accepted when its expression can be satisfied using only the permissive licences in ``ALLOWED``
(``OR`` needs one acceptable side, ``AND`` needs both, ``X WITH E`` needs that exact pair to be
allowed). Copyleft, unknown, unparsable and missing licences are refused: each offender is printed
with its version and the dependency path that pulls it in, and the script exits with status 1.

It also pins ``evalexpr`` to exactly 11.3.1 when that crate is in the graph.

Usage: ``python3 scripts/license_check.py [--manifest-path Cargo.toml] [--metadata FILE.json]``
(``--metadata`` reads a saved ``cargo metadata`` output instead of running cargo).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Union

#: Licences accepted on their own.
ALLOWED_LICENSES = frozenset(
    {
        "MIT",
        "MIT-0",
        "Apache-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "Zlib",
        "0BSD",
        "Unicode-3.0",
        "Unicode-DFS-2016",
        "CC0-1.0",
        "Unlicense",
        "BSL-1.0",
        "CDLA-Permissive-2.0",
        "OpenSSL",
    }
)

#: ``licence WITH exception`` pairs accepted (an exception never makes a refused licence acceptable,
#: and an unknown exception on an allowed licence is refused, as cargo-deny does).
ALLOWED_EXCEPTIONS = frozenset({("Apache-2.0", "LLVM-exception")})

#: Prefixes of copyleft licence ids (matched case-insensitively), refused with a specific reason.
COPYLEFT_PREFIXES = ("GPL", "LGPL", "AGPL", "MPL", "EPL", "EUPL", "CDDL", "SSPL", "OSL")

#: Crates whose version is pinned exactly.
PINNED_VERSIONS = {"evalexpr": "11.3.1"}

_CANONICAL = {name.lower(): name for name in ALLOWED_LICENSES}
_CANONICAL_EXCEPTIONS = {(lic.lower(), exc.lower()): (lic, exc) for lic, exc in ALLOWED_EXCEPTIONS}


class SpdxError(ValueError):
    """The expression is not valid SPDX (or legacy ``/``-separated) syntax."""


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class License:
    """A licence id, optionally with ``WITH <exception>``."""

    id: str
    exception: str | None = None

    def __str__(self) -> str:
        return f"{self.id} WITH {self.exception}" if self.exception else self.id


@dataclass(frozen=True)
class And:
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Or:
    left: "Expr"
    right: "Expr"


Expr = Union[License, And, Or]

_TOKEN_RE = re.compile(r"\s*(?:(\()|(\))|(/)|([A-Za-z0-9][A-Za-z0-9.+:\-]*))")
_OPERATORS = {"AND", "OR", "WITH"}


def tokenize(text: str) -> list[str]:
    """Splits an expression into ``(``, ``)``, ``OR``, ``AND``, ``WITH`` and licence ids.

    The legacy separator ``/`` (``MIT/Apache-2.0``) becomes ``OR``; operators are accepted in any
    case (``or``, ``and``), as crates.io once allowed.
    """
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise SpdxError(f"unexpected character {text[pos:].strip()[:1]!r} at {pos} in {text!r}")
        pos = m.end()
        lparen, rparen, slash, word = m.groups()
        if lparen:
            tokens.append("(")
        elif rparen:
            tokens.append(")")
        elif slash:
            tokens.append("OR")
        elif word.upper() in _OPERATORS:
            tokens.append(word.upper())
        else:
            tokens.append(word)
        pos = _skip_space(text, pos)
    return tokens


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def parse(text: str) -> Expr:
    """Parses an SPDX licence expression. Precedence: ``WITH`` > ``AND`` > ``OR``."""
    if text is None or not text.strip():
        raise SpdxError("empty licence expression")
    tokens = tokenize(text)
    parser = _Parser(tokens, text)
    expr = parser.parse_or()
    if parser.pos != len(tokens):
        raise SpdxError(f"unexpected {tokens[parser.pos]!r} in {text!r}")
    return expr


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise SpdxError(f"unexpected end of {self.text!r}")
        self.pos += 1
        return tok

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self._peek() == "OR":
            self.pos += 1
            left = Or(left, self.parse_and())
        return left

    def parse_and(self) -> Expr:
        left = self.parse_atom()
        while self._peek() == "AND":
            self.pos += 1
            left = And(left, self.parse_atom())
        return left

    def parse_atom(self) -> Expr:
        tok = self._take()
        if tok == "(":
            inner = self.parse_or()
            if self._take() != ")":
                raise SpdxError(f"missing ')' in {self.text!r}")
            return inner
        if tok in _OPERATORS or tok == ")":
            raise SpdxError(f"expected a licence id, found {tok!r} in {self.text!r}")
        if self._peek() == "WITH":
            self.pos += 1
            exception = self._take()
            if exception in _OPERATORS or exception in ("(", ")"):
                raise SpdxError(f"expected an exception id after WITH in {self.text!r}")
            return License(tok, exception)
        return License(tok)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def is_copyleft(license_id: str) -> bool:
    """Whether ``license_id`` belongs to a copyleft family (GPL, LGPL, AGPL, MPL, EPL, ...)."""
    upper = license_id.upper()
    return any(upper.startswith(prefix) for prefix in COPYLEFT_PREFIXES)


def license_accepted(lic: License) -> bool:
    """Whether one licence (with its exception, if any) is on the allow-list."""
    if lic.exception is None:
        return lic.id.lower() in _CANONICAL
    return (lic.id.lower(), lic.exception.lower()) in _CANONICAL_EXCEPTIONS


def satisfiable(expr: Expr) -> bool:
    """Whether the licensee can satisfy ``expr`` using allowed licences only."""
    if isinstance(expr, License):
        return license_accepted(expr)
    if isinstance(expr, Or):
        return satisfiable(expr.left) or satisfiable(expr.right)
    return satisfiable(expr.left) and satisfiable(expr.right)


def leaves(expr: Expr) -> Iterable[License]:
    """All licences named in ``expr``, left to right."""
    if isinstance(expr, License):
        yield expr
    else:
        yield from leaves(expr.left)
        yield from leaves(expr.right)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def check_expression(text: str | None) -> Verdict:
    """Evaluates a package's ``license`` field; the reason explains a refusal."""
    if text is None or not str(text).strip():
        return Verdict(False, "missing licence (no SPDX `license` field)")
    try:
        expr = parse(text)
    except SpdxError as err:
        return Verdict(False, f"unparsable licence expression {text!r}: {err}")
    if satisfiable(expr):
        return Verdict(True, "")
    refused = [lic for lic in leaves(expr) if not license_accepted(lic)]
    copyleft = sorted({str(l) for l in refused if is_copyleft(l.id)})
    other = sorted({str(l) for l in refused if not is_copyleft(l.id)})
    parts = []
    if copyleft:
        parts.append("copyleft: " + ", ".join(copyleft))
    if other:
        parts.append("not allowed / unknown: " + ", ".join(other))
    return Verdict(False, f"{text!r} cannot be satisfied with permissive licences ({'; '.join(parts)})")


# --------------------------------------------------------------------------------------------------
# Dependency graph
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offender:
    name: str
    version: str
    reason: str
    path: list[str]

    def __str__(self) -> str:
        return f"{self.name} {self.version}: {self.reason}\n    pulled in by: {' -> '.join(self.path)}"


def _label(pkg: dict) -> str:
    return f"{pkg['name']} {pkg['version']}"


def reachable_paths(metadata: dict) -> dict[str, list[str]]:
    """Maps every package id reachable from the workspace members (breadth first, so the path is a
    shortest one) to the list of package ids from a member to it."""
    resolve = metadata.get("resolve")
    if not resolve:
        # `cargo metadata --no-deps`: only the workspace members themselves.
        return {pid: [pid] for pid in metadata.get("workspace_members", [])}
    nodes = {node["id"]: node for node in resolve["nodes"]}
    paths: dict[str, list[str]] = {}
    queue: deque[str] = deque()
    for member in sorted(metadata.get("workspace_members", [])):
        paths[member] = [member]
        queue.append(member)
    while queue:
        pid = queue.popleft()
        node = nodes.get(pid)
        if node is None:
            continue
        children = node.get("dependencies") or [d["pkg"] for d in node.get("deps", [])]
        for child in children:
            if child not in paths:
                paths[child] = paths[pid] + [child]
                queue.append(child)
    return paths


def check_metadata(metadata: dict) -> tuple[int, list[Offender]]:
    """Returns (number of packages checked, offenders) for a ``cargo metadata`` document."""
    packages = {pkg["id"]: pkg for pkg in metadata["packages"]}
    paths = reachable_paths(metadata)
    offenders: list[Offender] = []
    for pid in sorted(paths, key=lambda p: (packages.get(p, {}).get("name", p), p)):
        pkg = packages.get(pid)
        if pkg is None:
            continue
        path = [_label(packages[p]) if p in packages else p for p in paths[pid]]
        verdict = check_expression(pkg.get("license"))
        if not verdict.ok:
            offenders.append(Offender(pkg["name"], pkg["version"], verdict.reason, path))
        pinned = PINNED_VERSIONS.get(pkg["name"])
        if pinned is not None and pkg["version"] != pinned:
            offenders.append(
                Offender(pkg["name"], pkg["version"], f"must be exactly version {pinned}", path)
            )
    return len(paths), offenders


def cargo_metadata(manifest_path: str | None) -> dict:
    cmd = ["cargo", "metadata", "--format-version", "1", "--all-features"]
    if manifest_path:
        cmd += ["--manifest-path", manifest_path]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"licence check: `{' '.join(cmd)}` failed with status {proc.returncode}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest-path", help="Cargo.toml of the workspace (default: cargo's search)")
    ap.add_argument("--metadata", help="read this saved `cargo metadata` JSON instead of running cargo")
    args = ap.parse_args(argv)
    if args.metadata:
        with open(args.metadata, encoding="utf-8") as f:
            metadata = json.load(f)
    else:
        metadata = cargo_metadata(args.manifest_path)
    count, offenders = check_metadata(metadata)
    if offenders:
        for offender in offenders:
            print(f"error: {offender}", file=sys.stderr)
        print(f"licence check: {count} packages, {len(offenders)} refused", file=sys.stderr)
        return 1
    print(f"licence check: {count} packages, all permissive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
