"""`tuner profile`: measure the running stack and write the simulator's calibration.

Each route is driven closed-loop at a few concurrency levels, one phase per level, with the
requests the scenarios send. What is exact is used first:
- the RAG ingress reports each stage's wall time per request (`stages_ms`), so the rewrite,
  search, rerank and generate stages come from the client side at concurrency 1 (less the
  batch wait a lone request spends in @serve.batch, and for generation the LLM backend's own
  time from its histogram, which the emulator and vLLM export exactly);
- request and batch counts per deployment are exact in Prometheus, so each phase's mean batch
  size is exact; Ray exports histogram sums from bucket midpoints, so mean times read from
  Prometheus (batch time, the other deployments' processing time, replica startup, adapter
  load) are coarse, and are used only where nothing exact exists: the growth of a batch's time
  with its size, the /predict and /v1/completions split between ingress and model, the
  per-replica concurrency of unbatched models, start and load times;
- the proxy's share is a route's client latency less what the stages account for;
- the spread (cv) of service times is the client latency's at concurrency 1 on each route.
Measurements on this 2-core machine share the CPU with everything else; that is part of what
the calibration captures, and what `tuner validate` then checks.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from loadgen.mix import MixSettings, RequestMix
from target_app.llm_server.profile import load_profile
from tuner import promql
from tuner.prometheus import Prometheus
from tuner.sim.app import BATCHED, BY_DOMAIN, CHAIN, LLM_CALLER, MULTIPLEXED, ROUTES
from tuner.sim.calibration import Calibration, LLMCalibration, StageTiming, save_calibration

MIX_ROUTE = {"/rag": "rag", "/predict": "predict", "/v1/completions": "lora"}
LEVELS = (1, 2, 4, 8)


@dataclass
class Phase:
    route: str
    concurrency: int
    start: float
    end: float
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict] = field(default_factory=list)
    errors: int = 0
    deployments: dict[str, dict] = field(default_factory=dict)


async def _drive(host: str, route: str, concurrency: int, seconds: float, seed: int) -> Phase:
    import httpx

    mix = RequestMix(MixSettings(weights={MIX_ROUTE[route]: 1.0}, rag_stream=False), np.zeros(4096), seed)
    phase = Phase(route, concurrency, time.time(), 0.0)
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker(client):
        while time.monotonic() < stop:
            req = mix.request(next(counter) % 4096)
            t = time.perf_counter()
            try:
                r = await client.post(req.path, json=req.body, timeout=60)
                ok = r.status_code < 400
            except httpx.HTTPError:
                ok = False
            if ok:
                phase.latencies_ms.append((time.perf_counter() - t) * 1000)
                if route == "/rag":
                    phase.stages_ms.append(r.json().get("stages_ms") or {})
            else:
                phase.errors += 1

    async with httpx.AsyncClient(base_url=host) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    phase.end = time.time()
    return phase


def measure(host: str, phase_s: float, levels=LEVELS, seed: int = 0, report=print) -> list[Phase]:
    """Drive each route at each concurrency level, one phase after another."""
    phases = []
    for route in ROUTES:
        for c in levels:
            report(f"{route} at concurrency {c} for {phase_s:g}s")
            phases.append(asyncio.run(_drive(host, route, c, phase_s, seed)))
            time.sleep(2)  # let the phase's last requests and metrics settle apart from the next
    return phases


def _by_deployment(rows) -> dict[str, float]:
    return {m.get("deployment", ""): v for m, v in rows}


def read_phases(prom: Prometheus, phases: list[Phase], lag_s: float) -> None:
    """Fill each phase's per-deployment figures from Prometheus."""
    for p in phases:
        at = p.end + lag_s
        w = f"{max(1, int(math.ceil(at - p.start - 1)))}s"
        figures = {"processing_ms": promql.deployment_mean_processing_ms(w), "processed": promql.deployment_processed(w),
                   "batch_ms": promql.batch_mean_execution_ms(w), "batches": promql.batches_run(w),
                   "loads": promql.multiplexed_loads(w), "load_ms": promql.multiplexed_load_mean_ms(w)}
        for name, expr in figures.items():
            for dep, v in _by_deployment(prom.vector(expr, at)).items():
                p.deployments.setdefault(dep, {})[name] = v
        p.deployments["__llm__"] = {"e2e_ms": 1000 * (prom.scalar(promql.llm_mean_e2e_s(w), at) or 0.0),
                                    "prompt_tokens": prom.scalar(promql.llm_mean_prompt_tokens(w), at)}
        p.deployments["__duration__"] = {"s": p.end - p.start}


def _children(name: str) -> tuple[str, ...]:
    return CHAIN.get(name) or tuple(BY_DOMAIN.get(name, {}).values())


RAG_STAGES = {"QueryRewriter": "rewrite", "VectorSearch": "search", "Reranker": "rerank", "LLMGenerator": "generate"}


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.mean(xs) if xs else None


def derive(phases: list[Phase], startup_ms: dict[str, float], llm_profile: str, source: str, serve_config: dict,
           name: str = "measured", host_cpus: float | None = None) -> Calibration:
    """The calibration from measured phases (see the module's docstring)."""
    from tuner.sim.app import deployments_from_config

    deployed = deployments_from_config(serve_config)
    single = {p.route: p for p in phases if p.concurrency == 1}
    fig = lambda p, dep, k: p.deployments.get(dep, {}).get(k)  # noqa: E731
    route_of = {}
    for route, ingress in ROUTES.items():
        todo = [ingress]
        while todo:
            d = todo.pop()
            route_of[d] = route
            todo += list(_children(d))
    rag = single["/rag"]
    stage = {k: _mean(st.get(k) for st in rag.stages_ms) or 0.0 for k in ("rewrite", "search", "rerank", "generate")}
    llm_ms = rag.deployments["__llm__"]["e2e_ms"]
    cvs = {r: (statistics.pstdev(p.latencies_ms) / statistics.mean(p.latencies_ms)) if len(p.latencies_ms) > 2 else 0.25
           for r, p in single.items()}
    stages: dict[str, StageTiming] = {}
    own1: dict[str, float] = {}
    for dep, route in route_of.items():
        one, spec = single[route], deployed[dep].spec
        wait = spec.batch_wait_timeout_s * 1000 if dep in BATCHED else 0.0
        coarse = fig(one, dep, "processing_ms") or 0.0
        if dep in RAG_STAGES:
            s1 = stage[RAG_STAGES[dep]] - wait - (llm_ms if dep == LLM_CALLER else 0.0)
        elif dep in BATCHED or dep in MULTIPLEXED:
            s1 = coarse - wait
        else:  # a caller: its time less what it called (coarse), fixed below for the RAG ingress
            n = fig(one, dep, "processed") or 0.0
            called = sum((fig(one, c, "processing_ms") or 0.0) * (fig(one, c, "processed") or 0.0) / n
                         for c in _children(dep)) if n else 0.0
            s1 = coarse - called
        timing: dict = {"cv": round(min(cvs[route], 2.0), 3)}
        if dep in startup_ms:
            timing["start_s"] = round(startup_ms[dep] / 1000, 2)
        mine = [p for p in phases if p.route == route]
        if dep in MULTIPLEXED:
            loads, n = fig(one, dep, "loads") or 0.0, fig(one, dep, "processed") or 0.0
            load_ms = _mean(fig(p, dep, "load_ms") for p in mine) or 0.0
            timing["load_ms"] = round(load_ms, 2)
            s1 -= (loads / n if n else 0.0) * load_ms
        s1 = max(0.2, s1)
        own1[dep] = s1
        if dep in BATCHED:  # growth with batch size, from each phase's exact mean size and coarse time
            pts = [(fig(p, dep, "processed") / fig(p, dep, "batches"), fig(p, dep, "batch_ms")) for p in mine
                   if fig(p, dep, "batches") and fig(p, dep, "batch_ms") and fig(p, dep, "processed")]
            slope = 0.0
            if len(pts) >= 2 and max(b for b, _ in pts) - min(b for b, _ in pts) >= 0.2:
                b, ms = zip(*pts)
                slope = max(0.0, float(np.polyfit(b, ms, 1)[0]))
            top = spec.max_batch_size
            timing["service_ms"] = ((1, round(s1, 3)),) + (((top, round(s1 + slope * (top - 1), 3)),) if top > 1 else ())
        else:
            timing["service_ms"] = ((1, round(s1, 3)),)
        if not _children(dep) and dep != LLM_CALLER and dep not in BATCHED:
            sustained = max(((fig(p, dep, "processed") or 0.0) / p.deployments["__duration__"]["s"] * s1 / 1000
                             for p in mine), default=1.0)
            timing["concurrency"] = max(1, round(sustained))
        stages[dep] = StageTiming(**timing)
    # The proxy's share: a route's client latency less its ingress' processing (the short
    # routes, where the coarse processing time matters least); the RAG ingress' own time is
    # what the client saw beyond the four stages and the proxy.
    proxies = [statistics.mean(p.latencies_ms) - (fig(p, ROUTES[r], "processing_ms") or 0.0)
               for r, p in single.items() if r != "/rag" and p.latencies_ms]
    proxy = max(0.0, statistics.median(proxies)) if proxies else 2.0
    beyond = statistics.mean(rag.latencies_ms) - sum(stage.values())
    stages["RAGService"] = stages["RAGService"].model_copy(update={"service_ms": ((1, round(max(0.2, beyond - proxy), 3)),)})
    for dep, d in deployed.items():  # waiting on the LLM server, or holding for a profile, is no CPU work
        compute = (d.user_config.get("compute") or {}).get("mode")
        if dep in stages and (dep == LLM_CALLER or compute == "profile"):
            stages[dep] = stages[dep].model_copy(update={"cpu_bound": False})
    prompts = [p.deployments["__llm__"]["prompt_tokens"] for p in phases if p.route == "/rag"]
    prompt = _mean(prompts)
    llm = LLMCalibration(profile=load_profile(llm_profile), prompt_tokens=max(1, round(prompt)) if prompt else 400,
                         http_ms=0.0)
    return Calibration(name=name, source=source, proxy_ms=round(proxy, 3), hop_ms=0.0, host_cpus=host_cpus,
                       stages=stages, llm=llm)


def run_profile(stack, out: Path, phase_s: float = 15.0, levels=LEVELS, name: str = "measured",
                report=print) -> Calibration:
    """Measure the running stack; write measurements.json (everything measured) and
    calibration.yaml (derived from it) to `out`."""
    prom = Prometheus(stack.prometheus_url)
    serve_config = stack.read_state().get("serve_config") or {}
    phases = measure(stack.serve_url(serve_config), phase_s, levels, report=report)
    lag = stack.cfg.ray_metrics_report_ms / 1000 + 2 * stack.cfg.scrape_interval_s + 1
    time.sleep(lag)
    read_phases(prom, phases, lag)
    measured = {"phases": [asdict(p) for p in phases],
                "startup_ms": _by_deployment(prom.vector(promql.replica_startup_mean_ms())),
                "llm_profile": stack.cfg.llm_profile, "host_cpus": float(os.cpu_count() or 1),
                "serve_config": serve_config,
                "source": (f"tuner profile on {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), "
                           f"{time.strftime('%Y-%m-%d', time.gmtime())}; phases of {phase_s:g}s at concurrency "
                           f"{', '.join(map(str, levels))}")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "measurements.json").write_text(json.dumps(measured, indent=1))
    return derive_from(out, name)


def derive_from(folder: Path, name: str = "measured") -> Calibration:
    """(Re)derive calibration.yaml from the measurements.json a profile left in `folder`."""
    from tuner.errors import UsageError

    path = folder / "measurements.json"
    try:
        m = json.loads(path.read_text())
        phases = [Phase(**p) for p in m["phases"]]
    except FileNotFoundError:
        raise UsageError(f"--from: {path} does not exist (run `tuner profile --out {folder}` first)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--from: {path} is not a profile's measurements: {e}") from None
    cal = derive(phases, m["startup_ms"], m["llm_profile"], m["source"], m["serve_config"], name, m.get("host_cpus"))
    save_calibration(cal, folder / "calibration.yaml")
    return cal
