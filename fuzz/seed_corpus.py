#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets from the golden fixtures in ../tests/golden.

The first byte of every input selects the (client, upstream) pair exactly as
fuzz_targets/common.rs does; this script picks selectors that put each fixture on the side it was
written for. Usage: python3 seed_corpus.py  (writes corpus/<target>/, which git ignores)."""
import hashlib
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
GOLDEN = ROOT.parent / "tests" / "golden"
PROTOCOLS = ["openai_chat", "openai_responses", "anthropic", "gemini"]


def pair(selector):
    client = selector % 4
    others = [p for p in range(4) if p != client]
    return PROTOCOLS[client], PROTOCOLS[others[(selector // 4) % 3]]


def write(target, data):
    out = ROOT / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    # The config loader: every example config of the repository.
    for path in sorted((ROOT.parent / "examples").glob("*.yaml")):
        write("config", path.read_bytes())
    files = sorted(p for p in GOLDEN.rglob("*") if p.is_file() and p.suffix in (".json", ".sse"))
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".json":
            write("peek", data)
        kind, proto = path.name.split(".")[0], path.name.split(".")[1].split("_from_")[0]
        for selector in range(256):
            client, upstream = pair(selector)
            if kind == "request" and client == proto and selector < 64:
                write("request", bytes([selector]) + data)
            elif kind == "response" and upstream == proto and selector < 64:
                write("response", bytes([selector]) + data)
            elif kind == "stream" and upstream == proto and selector in (selector & 0x8F,):
                write("stream", bytes([selector]) + data)
        if path.suffix == ".sse":
            for size in (1, 7, 64, 255):
                write("sse_parser", bytes([size]) + data)
                write("sse_parser", bytes([size]) + data.replace(b"\n", b"\r\n"))


if __name__ == "__main__":
    main()
    for target in sorted(os.listdir(ROOT / "corpus")):
        print(target, len(os.listdir(ROOT / "corpus" / target)))
