"""Unit tests for scripts/update_prices.py: the LiteLLM → snapshot conversion and the wheel reader.

`crates/octo-prices/tests/data/litellm_sample.snapshot.json` is the expected conversion of
`litellm_sample.json`; the Rust reader of LiteLLM files is held to the same file
(`crates/octo-prices/tests/converters.rs`), so the two converters cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import update_prices as up  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "crates", "octo-prices", "tests", "data")


def sample():
    with open(os.path.join(DATA, "litellm_sample.json")) as f:
        return json.load(f)


def test_the_sample_converts_to_the_expected_snapshot():
    with open(os.path.join(DATA, "litellm_sample.snapshot.json")) as f:
        expected = f.read()
    assert up.render(up.snapshot(sample(), "test", "2000-01-01")) == expected


def test_prices_become_per_million_with_tiers_and_without_noise():
    entry = {
        "litellm_provider": "anthropic", "mode": "chat",
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "input_cost_per_token_above_200k_tokens_priority": 1.0,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
    }
    assert up.convert(entry) == {
        "provider": "anthropic", "input": 3.0, "output": 15.0, "cache_read": 0.3,
        "tiers": [{"above": 200000, "input": 6.0}],
    }
    assert up.convert({"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}) is None
    assert up.convert({"input_cost_per_token": 1e-06}) is None
    assert up.convert({"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06}) is None


def test_the_script_reads_a_wheel_and_records_its_source(tmp_path):
    wheel = tmp_path / "litellm-9.8.7-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(up.SOURCE_PATH, json.dumps(sample()))
    out = tmp_path / "prices.json"
    subprocess.run(
        [sys.executable, up.__file__, str(wheel), "--out", str(out), "--date", "2001-02-03"],
        check=True, capture_output=True,
    )
    doc = json.loads(out.read_text())
    assert doc["version"] == "9.8.7" and doc["date"] == "2001-02-03"
    assert doc["license"].startswith("MIT")
    assert "litellm 9.8.7" in doc["source"]
    assert set(doc["models"]) == {
        "claude-sonnet-4-5", "deepseek-chat", "gemini-2.5-pro", "gemini/gemini-2.5-pro", "gpt-4o", "gpt-5",
    }
