"""The README's main job for now: a burst of real traffic to every route of the running
stack, then client-side percentiles and what Prometheus saw (server latency, replicas).

Arrivals are open-loop (Poisson, seeded): each request leaves at its scheduled time
whatever is outstanding, and latency counts from that time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from loadgen.mix import mixed_requests
from tuner import promql
from tuner.errors import StackError
from tuner.prometheus import Prometheus

@dataclass
class Sample:
    route: str
    scheduled: float
    end: float
    status: int

    @property
    def latency_ms(self) -> float:
        return (self.end - self.scheduled) * 1000


async def _drive(base_url: str, duration: float, rate: float, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / rate, size=int(rate * duration * 2) + 10)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < duration]
    work = mixed_requests(len(offsets), seed)
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=512)) as client:

        async def one(path: str, body: dict, scheduled: float) -> None:
            try:
                r = await client.post(path, json=body)
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            samples.append(Sample(path, scheduled, time.perf_counter(), status))

        start = time.perf_counter()
        tasks = []
        for offset, (path, body) in zip(offsets, work):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(path, body, start + offset)))
        await asyncio.gather(*tasks)
    return samples


def run_demo(stack, duration: float, rate: float, seed: int, console: Console) -> None:
    """Drive the stack's Serve app and print client and server views of the run."""
    if not stack.running():
        raise StackError(f"no stack is running from {stack.state_dir}: run `tuner stack up` first")
    base = stack.serve_url()
    console.print(f"sending ~{rate:g} requests/s for {duration:g}s to {base} (/rag, /predict, /v1/completions)")
    t0 = time.time()
    samples = asyncio.run(_drive(base, duration, rate, seed))
    _client_table(samples, console)
    time.sleep(5)  # Ray exports metrics every second and Prometheus scrapes every second
    window = f"{int(time.time() - t0) + 5}s"
    _server_tables(Prometheus(stack.prometheus_url), window, console)


def _client_table(samples: list[Sample], console: Console) -> None:
    table = Table("route", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", title="client latency (from scheduled send)")
    for route in sorted({s.route for s in samples}):
        lat = np.array([s.latency_ms for s in samples if s.route == route and s.status == 200])
        errors = sum(1 for s in samples if s.route == route and s.status != 200)
        if len(lat):
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            table.add_row(route, str(len(lat) + errors), str(errors), f"{p50:.0f}", f"{p90:.0f}", f"{p99:.0f}", f"{lat.max():.0f}")
        else:
            table.add_row(route, str(errors), str(errors), "-", "-", "-", "-")
    console.print(table)


def _server_tables(prom: Prometheus, window: str, console: Console) -> None:
    p50 = {(m.get("application"), m.get("route")): v for m, v in prom.vector(promql.http_latency_quantile_ms(0.5, window))}
    p99 = {(m.get("application"), m.get("route")): v for m, v in prom.vector(promql.http_latency_quantile_ms(0.99, window))}
    table = Table("application", "route", "p50 ms", "p99 ms", title=f"server latency at the Serve proxy (Prometheus, last {window}; bucket-interpolated)")
    for key in sorted(p50):
        table.add_row(key[0], key[1], f"{p50[key]:.0f}", f"{p99.get(key, float('nan')):.0f}")
    console.print(table)
    reps = Table("application", "deployment", "replicas", title="replicas (Prometheus)")
    for m, v in sorted(prom.vector(promql.replicas_by_deployment()), key=lambda r: (r[0].get("application"), r[0].get("deployment"))):
        reps.add_row(m.get("application"), m.get("deployment"), f"{v:.0f}")
    console.print(reps)
    ttft = prom.scalar(promql.llm_ttft_quantile_s(0.99, window))
    if ttft is not None:
        console.print(f"LLM backend time to first token p99: {ttft * 1000:.0f} ms")
