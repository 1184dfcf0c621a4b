"""Unit tests for scripts/license_check.py (the SPDX evaluator and the graph walk)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import license_check as lc  # noqa: E402


def ok(expr: str | None) -> bool:
    return lc.check_expression(expr).ok


# ---------------------------------------------------------------------------------------------- parse


def test_tokenize_operators_parens_and_legacy_slash():
    assert lc.tokenize("(MIT OR Apache-2.0) AND Unicode-3.0") == [
        "(", "MIT", "OR", "Apache-2.0", ")", "AND", "Unicode-3.0",
    ]
    assert lc.tokenize("MIT/Apache-2.0") == ["MIT", "OR", "Apache-2.0"]
    assert lc.tokenize("Apache-2.0 / MIT") == ["Apache-2.0", "OR", "MIT"]
    assert lc.tokenize("mit or apache-2.0") == ["mit", "OR", "apache-2.0"]
    assert lc.tokenize("GPL-2.0+ WITH Classpath-exception-2.0") == [
        "GPL-2.0+", "WITH", "Classpath-exception-2.0",
    ]


def test_precedence_with_binds_tighter_than_and_than_or():
    expr = lc.parse("A OR B AND C WITH E")
    assert expr == lc.Or(lc.License("A"), lc.And(lc.License("B"), lc.License("C", "E")))
    expr = lc.parse("(A OR B) AND C")
    assert expr == lc.And(lc.Or(lc.License("A"), lc.License("B")), lc.License("C"))


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "MIT OR", "OR MIT", "(MIT", "MIT)", "MIT AND AND ISC", "MIT WITH", "MIT WITH (X)",
     "MIT, Apache-2.0", "MIT Apache-2.0"],
)
def test_invalid_expressions_raise(bad):
    with pytest.raises(lc.SpdxError):
        lc.parse(bad)


# ---------------------------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize(
    "expr",
    [
        "MIT",
        "MIT-0",
        "Apache-2.0",
        "MIT OR Apache-2.0",
        "Apache-2.0 OR MIT",
        "Unlicense/MIT",
        "Apache-2.0 / MIT",
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        "ISC AND (Apache-2.0 OR ISC) AND Apache-2.0 AND MIT AND BSD-3-Clause",
        "Apache-2.0 WITH LLVM-exception",
        "Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT",
        "MIT OR Apache-2.0 OR LGPL-2.1-or-later",  # the licensee picks a permissive option
        "MPL-2.0 OR MIT",
        "BSD-2-Clause AND 0BSD AND Zlib AND CC0-1.0 AND BSL-1.0 AND OpenSSL",
        "Unicode-DFS-2016 AND CDLA-Permissive-2.0",
        "mit or apache-2.0",  # case-insensitive ids and operators
        "((MIT))",
    ],
)
def test_permissive_expressions_are_accepted(expr):
    assert ok(expr), lc.check_expression(expr).reason


@pytest.mark.parametrize(
    "expr, word",
    [
        ("GPL-3.0-only", "copyleft: GPL-3.0-only"),
        ("GPL-2.0+", "copyleft: GPL-2.0+"),
        ("LGPL-2.1-or-later", "copyleft"),
        ("AGPL-3.0", "copyleft"),
        ("MPL-2.0", "copyleft: MPL-2.0"),
        ("EPL-2.0", "copyleft"),
        ("EUPL-1.2", "copyleft"),
        ("CDDL-1.0", "copyleft"),
        ("SSPL-1.0", "copyleft"),
        ("OSL-3.0", "copyleft"),
        ("MIT AND GPL-3.0", "copyleft: GPL-3.0"),  # AND needs both sides
        ("(MIT OR Apache-2.0) AND MPL-2.0", "copyleft: MPL-2.0"),
        ("GPL-2.0 WITH Classpath-exception-2.0", "copyleft"),  # an exception does not help
        ("Apache-2.0 WITH Some-unknown-exception", "unknown: Apache-2.0 WITH Some-unknown-exception"),
        ("LicenseRef-Proprietary", "unknown: LicenseRef-Proprietary"),
        ("Foo-1.0 OR Bar", "unknown: Bar, Foo-1.0"),
        ("WTFPL", "unknown: WTFPL"),
    ],
)
def test_copyleft_and_unknown_are_refused(expr, word):
    verdict = lc.check_expression(expr)
    assert not verdict.ok
    assert word in verdict.reason


@pytest.mark.parametrize("missing", [None, "", "  "])
def test_missing_licence_is_refused(missing):
    verdict = lc.check_expression(missing)
    assert not verdict.ok
    assert "missing" in verdict.reason


def test_unparsable_licence_is_refused():
    verdict = lc.check_expression("MIT,Apache-2.0")
    assert not verdict.ok
    assert "unparsable" in verdict.reason


def test_copyleft_families():
    assert lc.is_copyleft("LGPL-3.0")
    assert lc.is_copyleft("gpl-2.0")
    assert not lc.is_copyleft("MIT")
    assert not lc.is_copyleft("Apache-2.0")


# ---------------------------------------------------------------------------------------------- graph


def _pkg(name, version, license):
    return {"id": f"{name} {version}", "name": name, "version": version, "license": license}


def _metadata(packages, edges, members):
    nodes = [{"id": p["id"], "dependencies": edges.get(p["id"], []), "deps": []} for p in packages]
    return {"packages": packages, "workspace_members": members, "resolve": {"nodes": nodes, "root": None}}


def test_graph_walk_reports_offender_with_path(capsys, tmp_path):
    app = _pkg("app", "0.1.0", "MIT OR Apache-2.0")
    mid = _pkg("mid", "1.2.3", "MIT")
    bad = _pkg("badlib", "0.9.0", "GPL-3.0-only")
    nolic = _pkg("nolic", "2.0.0", None)
    unreachable = _pkg("orphan", "1.0.0", "GPL-3.0")  # in `packages` but not in the graph
    meta = _metadata(
        [app, mid, bad, nolic, unreachable],
        {app["id"]: [mid["id"], nolic["id"]], mid["id"]: [bad["id"]]},
        [app["id"]],
    )
    count, offenders = lc.check_metadata(meta)
    assert count == 4
    by_name = {o.name: o for o in offenders}
    assert set(by_name) == {"badlib", "nolic"}
    assert by_name["badlib"].version == "0.9.0"
    assert by_name["badlib"].path == ["app 0.1.0", "mid 1.2.3", "badlib 0.9.0"]
    assert "app 0.1.0 -> mid 1.2.3 -> badlib 0.9.0" in str(by_name["badlib"])
    assert "missing" in by_name["nolic"].reason

    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta))
    assert lc.main(["--metadata", str(path)]) == 1
    err = capsys.readouterr().err
    assert "badlib 0.9.0" in err and "nolic 2.0.0" in err
    assert "orphan" not in err


def test_graph_walk_all_permissive_summary(capsys, tmp_path):
    app = _pkg("app", "0.1.0", "MIT OR Apache-2.0")
    dep = _pkg("dep", "1.0.0", "Apache-2.0 / MIT")
    meta = _metadata([app, dep], {app["id"]: [dep["id"]]}, [app["id"]])
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta))
    assert lc.main(["--metadata", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "licence check: 2 packages, all permissive"


def test_evalexpr_must_be_pinned():
    app = _pkg("app", "0.1.0", "MIT")
    good = _pkg("evalexpr", "11.3.1", "MIT")
    meta = _metadata([app, good], {app["id"]: [good["id"]]}, [app["id"]])
    assert lc.check_metadata(meta)[1] == []
    bad = _pkg("evalexpr", "12.0.0", "MIT")
    meta = _metadata([app, bad], {app["id"]: [bad["id"]]}, [app["id"]])
    (offender,) = lc.check_metadata(meta)[1]
    assert offender.name == "evalexpr" and "11.3.1" in offender.reason


def test_deps_field_is_used_when_dependencies_is_absent():
    app = _pkg("app", "0.1.0", "MIT")
    dep = _pkg("dep", "1.0.0", "AGPL-3.0-only")
    meta = {
        "packages": [app, dep],
        "workspace_members": [app["id"]],
        "resolve": {"nodes": [{"id": app["id"], "deps": [{"pkg": dep["id"]}]}, {"id": dep["id"], "deps": []}]},
    }
    (offender,) = lc.check_metadata(meta)[1]
    assert offender.name == "dep" and "copyleft" in offender.reason
