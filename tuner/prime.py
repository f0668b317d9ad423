"""The models a trial starts with: every multiplexed model id it will ask for, loaded once.

A replica that serves many models (Serve's `@serve.multiplexed`; here the LoRA adapters) keeps
the ones it loaded in an LRU cache, so its latency depends on what it served before. A trial
that inherits the caches of the trials before it measures the order it ran in: the same config
repeated gave a /v1 p99 of 636 ms on the first repeat and 320-401 ms on the four after it
(BENCHMARKS.md, "Noise"), and the simulator, whose trials start empty, put the floor of every
configuration 60-80 ms above the real one. A running service holds its popular models, so a
trial starts there, the same way in both backends: fresh replicas of the multiplexed
deployments (`tuner.deploy.with_fresh`), then one request for each model id of the trial, the least
requested first and the most requested last (an LRU keeps the last it loaded), `GAP_S` apart,
ending where the warm-up begins. Serve routes them as it routes any request (a model goes to a
replica holding the fewest), so the caches are what Serve itself makes of the trial's models.

`prime_rows` is pure (the simulator replays its rows); `send` is the real backend's I/O.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pandas as pd

# Seconds between two priming requests: about half a cache miss on the shipped L4 LoRA card
# (167 ms load + 226 ms request), so at most two overlap and a trial of 32 adapters primes in 8 s.
GAP_S = 0.25


def prime_rows(arrivals: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """One arrival per model id requested before `horizon_s`, each the first that asks for it,
    the least requested first (ties by id), with `t` the seconds before the warm-up starts."""
    if "adapter" not in arrivals:
        return arrivals[:0]
    asked = arrivals[(arrivals["t"] < horizon_s) & arrivals["adapter"].notna()]
    counts = asked["adapter"].value_counts()
    firsts = asked.drop_duplicates("adapter").set_index("adapter", drop=False)
    order = sorted(firsts.index, key=lambda a: (counts[a], a))
    rows = firsts.loc[order].reset_index(drop=True)
    rows["t"] = -GAP_S * (len(rows) - np.arange(len(rows), dtype=float))
    return rows


def lead_s(rows: pd.DataFrame) -> float:
    """Seconds the priming takes before the warm-up."""
    return GAP_S * len(rows)


def send(host: str, rows: pd.DataFrame, timeout_s: float = 60.0) -> dict:
    """Send each row's request (its `path` and JSON `body`) on the rows' schedule, open loop as
    the load is; wait for every answer. Returns how many were sent and failed, and the seconds."""
    return asyncio.run(_send(host.rstrip("/"), rows, timeout_s))


async def _send(host: str, rows: pd.DataFrame, timeout_s: float) -> dict:
    import httpx

    failures: list[str] = []

    async def one(client: httpx.AsyncClient, at: float, path: str, body: str) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        try:
            r = await client.post(host + path, json=json.loads(body))
            if r.status_code != 200:
                failures.append(f"{path} answered {r.status_code}")
        except httpx.HTTPError as e:
            failures.append(f"{path}: {type(e).__name__}")

    start = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        await asyncio.gather(*(one(client, start + lead_s(rows) + float(t), p, b)
                               for t, p, b in zip(rows["t"], rows["path"], rows["body"])))
    return {"sent": len(rows), "failed": len(failures), "first_failure": failures[0] if failures else None,
            "seconds": round(time.monotonic() - start, 2)}
