#!/usr/bin/env python3
"""Regenerates OctoLLM's embedded price snapshot, crates/octo-prices/data/prices.json.

The source is LiteLLM's `model_prices_and_context_window.json` (MIT, Copyright (c) 2023 Berri AI),
shipped inside the `litellm` wheel on PyPI as `litellm/model_prices_and_context_window_backup.json`.

    pip download litellm --no-deps -d /tmp/litellm
    python3 scripts/update_prices.py /tmp/litellm/litellm-*.whl

The snapshot keeps chat and responses models of the main providers, converts USD per token to USD
per million tokens, keeps input, output, cache read and cache write prices and the context tiers
(`…_above_200k_tokens`-style fields), and drops everything else (batch, flex and priority rates,
audio, images, search, the one-hour cache-write rate). `crates/octo-prices/src/table.rs` reads the
same LiteLLM fields the same way when a price sync points at a LiteLLM file.
"""

import argparse
import datetime
import json
import os
import re
import sys
import zipfile

SOURCE_PATH = "litellm/model_prices_and_context_window_backup.json"
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "octo-prices", "data", "prices.json")

# LiteLLM provider ids kept in the snapshot. The embedded file stays small; a sync can bring the rest.
PROVIDERS = [
    "openai",
    "anthropic",
    "gemini",
    "vertex_ai-language-models",
    "deepseek",
    "mistral",
    "xai",
    "groq",
    "cerebras",
    "perplexity",
    "moonshot",
    "zai",
    "dashscope",
    "cohere_chat",
]
MODES = {"chat", "responses"}

# `input_cost_per_token_above_200k_tokens`, `cache_read_input_token_cost_above_128k_tokens`, …
# Only plain tiers: `_priority`, `_flex`, `_batches` and `_above_1hr_…` variants do not match.
TIER = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|"
    r"cache_creation_input_token_cost)_above_(\d+)k_tokens$"
)
FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}


def per_million(v):
    """USD per token → USD per million tokens, without float noise (3e-06 → 3.0)."""
    return float(f"{v * 1_000_000:.10g}")


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def convert(entry):
    """One LiteLLM entry → a snapshot entry, or None when it has no token prices."""
    if not (number(entry.get("input_cost_per_token")) and number(entry.get("output_cost_per_token"))):
        return None
    if entry["input_cost_per_token"] == 0 and entry["output_cost_per_token"] == 0:
        # Free models and placeholders (per-request or per-second pricing) look alike; a zero
        # would bill nothing, while no price leaves the cost unknown, which is honest.
        return None
    out = {"provider": entry.get("litellm_provider", "")}
    for src, dst in FIELDS.items():
        if number(entry.get(src)):
            out[dst] = per_million(entry[src])
    tiers = {}
    for field, value in entry.items():
        m = TIER.match(field)
        if m and number(value):
            tiers.setdefault(int(m.group(2)) * 1000, {})[FIELDS[m.group(1)]] = per_million(value)
    if tiers:
        out["tiers"] = [{"above": above, **prices} for above, prices in sorted(tiers.items())]
    return out


def snapshot(data, version, date):
    """The snapshot document for a parsed LiteLLM price file."""
    models = {}
    for key, entry in sorted(data.items()):
        if key == "sample_spec" or not isinstance(entry, dict):
            continue
        if entry.get("litellm_provider") not in PROVIDERS or entry.get("mode") not in MODES:
            continue
        if key.startswith("ft:"):
            continue  # fine-tune prices are per org model (ft:gpt-4o:org:id); no name would match
        converted = convert(entry)
        if converted is not None:
            models[key] = converted
    return {
        "format": "octollm-prices/1",
        "source": f"LiteLLM model_prices_and_context_window.json (PyPI litellm {version}, {SOURCE_PATH})",
        "version": version,
        "date": date,
        "license": "MIT, Copyright (c) 2023 Berri AI",
        "unit": "USD per million tokens",
        "models": models,
    }


def render(doc):
    """The snapshot as text: one model per line, so it stays small and diffs stay readable."""
    lines = ["{"]
    for k in ("format", "source", "version", "date", "license", "unit"):
        lines.append(f"  {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)},")
    lines.append('  "models": {')
    items = list(doc["models"].items())
    for i, (k, v) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        lines.append(f"    {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}{sep}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wheel", help="a downloaded litellm-*.whl")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--date", help="snapshot date (default: today, UTC)")
    args = ap.parse_args()

    name = os.path.basename(args.wheel)
    m = re.match(r"litellm-([^-]+)-", name)
    if not m:
        sys.exit(f"{name} does not look like a litellm wheel")
    version = m.group(1)
    with zipfile.ZipFile(args.wheel) as z:
        data = json.loads(z.read(SOURCE_PATH))
    date = args.date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    doc = snapshot(data, version, date)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(render(doc))
    print(f"{len(doc['models'])} models from litellm {version} → {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
