"""Stack start time and the single-request latency of each route (one request at a time,
so no queueing). Starts the stack with the defaults, measures, stops it. Prints Markdown.

    .venv/bin/python scripts/bench_stack.py [--n 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from target_app import corpus
from timing import timed

TUNER = [sys.executable, "-m", "tuner.cli"]
BASE = "http://127.0.0.1:8000"


def lat(send, n: int) -> tuple[float, float]:
    """Timing of `n` sequential requests `send(i)`, each of which must succeed."""
    return timed(lambda i: send(i).raise_for_status(), n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    t0 = time.perf_counter()
    subprocess.run([*TUNER, "stack", "up"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    timings = json.loads(Path(".tuner/stack/state.json").read_text())["timings_s"]
    try:
        qs = [q.text for q in corpus.questions(corpus.passages(), args.n + 3, seed=2)]
        c = httpx.Client(base_url=BASE, timeout=60)
        post = lambda path, body: c.post(path, json=body)  # noqa: E731
        for i in range(3):
            post("/rag", {"query": qs[i]})
            post("/predict", {"domain": "legal", "text": "a signed lease"})
            post("/v1/completions", {"model": "lora-00", "prompt": "hi", "max_tokens": 16})
        rows = [
            ("POST /rag (32 generated tokens)", lat(lambda i: post("/rag", {"query": qs[i + 3]}), args.n)),
            ("POST /predict", lat(lambda i: post("/predict", {"domain": "medical", "text": "chest pain at night"}), args.n)),
            ("POST /v1/completions, warm adapter (16 tokens)",
             lat(lambda i: post("/v1/completions", {"model": "lora-00", "prompt": "Summarise the policy", "max_tokens": 16}), args.n)),
            ("POST /v1/completions, cold adapter (16 tokens)",
             lat(lambda i: post("/v1/completions", {"model": f"lora-{10 + i:02d}", "prompt": "Summarise the policy", "max_tokens": 16}), min(args.n, 20))),
        ]
    finally:
        subprocess.run([*TUNER, "stack", "down"], check=False, capture_output=True)
    print(f"stack up: {wall:.1f} s wall ({', '.join(f'{k} {v:.1f} s' for k, v in timings.items())})\n")
    print("| route | median ms | p90 ms |\n|---|---|---|")
    for name, (med, p90) in rows:
        print(f"| {name} | {med:.0f} | {p90:.0f} |")


if __name__ == "__main__":
    main()
