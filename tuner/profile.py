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
- each route's ingress takes what the client saw at concurrency 1 beyond what the simulator
  explains with the rest (`settle_ingresses`), and counts as host CPU only where its own
  processes' CPU, measured per process group, was at least half of it;
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
import psutil

from loadgen.mix import MixSettings, RequestMix
from target_app.llm_server.profile import load_profile
from target_app.topology import BATCHED, BY_DOMAIN, LLM_CALLER, MULTIPLEXED, RAG_STAGES, ROUTES, callees
from tuner import promql
from tuner.calibration_file import save_calibration
from tuner.processes import group_of, started_after_boot_s
from tuner.prometheus import Prometheus
from tuner.sim.calibration import Calibration, LLMCalibration, StageTiming

MIX_ROUTE = {"/rag": "rag", "/predict": "predict", "/v1/completions": "lora"}
LEVELS = (1, 2, 4, 8)
BURSTS = (4, 8, 16)
SEED = 0  # of the phases' requests (the mix); `settle_ingresses` simulates the same ones


@dataclass
class Phase:
    route: str
    concurrency: int
    start: float
    end: float
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict] = field(default_factory=list)
    errors: int = 0
    busy_cores: float | None = None  # CPU the stack's processes used over the phase, in cores
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group over the phase
    burst: bool = False  # `concurrency` requests sent at once per round, not closed-loop
    deployments: dict[str, dict] = field(default_factory=dict)


async def _drive(host: str, route: str, concurrency: int, seconds: float, seed: int = SEED, burst: bool = False) -> Phase:
    """Closed loop with `concurrency` clients; or, with `burst`, rounds of `concurrency`
    requests sent at once (so they reach the first batched stage together)."""
    import httpx

    mix = RequestMix(MixSettings(weights={MIX_ROUTE[route]: 1.0}, rag_stream=False), np.zeros(4096), seed)
    phase = Phase(route, concurrency, time.time(), 0.0, burst=burst)
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def one(client):
        await worker(client, once=True)

    async def worker(client, once: bool = False):
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
            if once:
                return

    async with httpx.AsyncClient(base_url=host, limits=httpx.Limits(max_connections=256)) as client:
        if not burst:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        while burst and time.monotonic() < stop:
            await asyncio.gather(*(one(client) for _ in range(concurrency)))
            await asyncio.sleep(0.3)
    phase.end = time.time()
    return phase


def stack_cpu_s(pids: list[int]) -> dict[tuple[int, float, str], float]:
    """CPU seconds (user + system) used so far by each of the stack's processes and their
    descendants (Ray's workers, replicas and agents, the proxy, Milvus, the LLM server,
    Prometheus), keyed by (pid, start time, group) so a reused PID is another process and a
    replica's CPU is its deployment's (`group_of`)."""
    out: dict[tuple[int, float, str], float] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                out[(p.pid, started_after_boot_s(p), group_of(p))] = t.user + t.system
            except psutil.Error:
                pass
    return out


def cpu_used_s(before: dict[tuple, float], after: dict[tuple, float]) -> float:
    """CPU the processes alive at the end used since `before` (all of it for one started
    since). A process that exited in between drops out rather than subtracting its total,
    which made a phase where a replica was replaced read negative."""
    return sum(cpu_by_group(before, after).values())


def cpu_by_group(before: dict[tuple, float], after: dict[tuple, float]) -> dict[str, float]:
    """`cpu_used_s` per process group (a deployment's replicas, the proxy, Milvus, ...)."""
    out: dict[str, float] = {}
    for key, cpu in after.items():
        out[key[2]] = out.get(key[2], 0.0) + cpu - before.get(key, 0.0)
    return out


def measure(host: str, phase_s: float, levels=LEVELS, seed: int = SEED, report=print,
            pids: list[int] = (), settle_s: float = 2.0) -> tuple[float, list[Phase]]:
    """The stack's busy cores with no load, then each route at each concurrency level, one
    phase after another, with the stack's busy cores in each. `settle_s` apart: a phase's
    metrics reach Prometheus that late, and its window must not take in the next phase's."""
    def busy_cpu_s() -> dict[tuple[int, float, str], float]:
        return stack_cpu_s(list(pids))

    report(f"idle stack for {min(phase_s, 10):g}s")
    c0, t0 = busy_cpu_s(), time.monotonic()
    time.sleep(min(phase_s, 10))
    idle = cpu_used_s(c0, busy_cpu_s()) / (time.monotonic() - t0)
    phases = []
    for route in ROUTES:
        for c in levels:
            report(f"{route} at concurrency {c} for {phase_s:g}s")
            c0, t0 = busy_cpu_s(), time.monotonic()
            phase = asyncio.run(_drive(host, route, c, phase_s, seed))
            c1 = busy_cpu_s()
            phase.busy_cores = cpu_used_s(c0, c1) / (time.monotonic() - t0)
            phase.cpu_s = cpu_by_group(c0, c1)
            phases.append(phase)
            time.sleep(settle_s)
    for k in BURSTS:  # batches of known size at the RAG chain's first batched stage
        report(f"/rag in bursts of {k} for {phase_s:g}s")
        phases.append(asyncio.run(_drive(host, "/rag", k, phase_s, seed, burst=True)))
        time.sleep(settle_s)
    return idle, phases


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


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.mean(xs) if xs else None


def request_cpu_ms(phases: list[Phase], idle_cores: float, own_cpu_ms: dict[str, float]) -> dict[str, float]:
    """Host CPU a request of each route costs beyond its deployments' own CPU work: the slope
    of the stack's busy cores (over the idle stack's) against the route's request rate across
    its closed-loop phases, less that own work."""
    out = {}
    for route in ROUTES:
        # Every closed-loop phase: near saturation contention itself burns CPU on this kind of
        # oversubscribed host, and that cost belongs to the requests that cause it.
        pts = [(len(p.latencies_ms) / (p.end - p.start), p.busy_cores - idle_cores) for p in phases
               if p.route == route and p.busy_cores is not None and p.end > p.start and not p.burst]
        sxx = sum(x * x for x, _ in pts)
        if sxx > 0:
            per_request_ms = 1000 * sum(x * y for x, y in pts) / sxx
            out[route] = round(max(0.0, per_request_ms - own_cpu_ms.get(route, 0.0)), 3)
    return out


def _batch_points(dep: str, s1: float, max_size: int, one: Phase, mine: list[Phase], fig) -> tuple:
    """Service time against batch size: size 1 exact; larger sizes from the bursts, each at the
    exact mean batch size (Prometheus' counts) and `s1` times the ratio of the burst's batch
    time to the concurrency-1 phase's (Ray's bucket-midpoint sums are coarse; their ratio is
    what is used). Without bursts for a stage its time is taken as flat in the batch size."""
    pts: dict[int, list[float]] = {1: [s1]}
    base = fig(one, dep, "batch_ms")
    for p in mine:
        if not (p.burst and base and fig(p, dep, "batches") and fig(p, dep, "batch_ms")):
            continue
        size = fig(p, dep, "processed") / fig(p, dep, "batches")
        if size >= 1.5:
            pts.setdefault(min(max_size, round(size)), []).append(s1 * fig(p, dep, "batch_ms") / base)
    return tuple((b, round(max(0.2, statistics.mean(v)), 3)) for b, v in sorted(pts.items()))


def _mostly_cpu(dep: str, timing: StageTiming, one: Phase) -> bool:
    """Whether a stage's own time is mostly its processes' CPU, as measured in the phase at
    concurrency 1 (at least half of it); without that measurement (older files), yes. An
    ingress' own time can be mostly waiting: the LoRA route's spends about 8 ms of CPU of 50-85
    ms between the proxy and the model (Serve's handle and router), time the host model must
    not count as CPU."""
    cpu_s, n = one.cpu_s.get(dep), one.deployments.get(dep, {}).get("processed")
    if cpu_s is None or not n:
        return True
    return cpu_s * 1000 / n >= 0.5 * timing.mean_ms(1)


def settle_ingresses(cal: Calibration, single: dict[str, Phase], serve_config: dict) -> dict[str, StageTiming]:
    """Each route's ingress takes, as its own time, what the client saw at concurrency 1 beyond
    what the simulator explains with the rest of the calibration and the emulated tables: the
    same requests as the phase (one at a time, from empty adapter caches) simulated with the
    ingress as derived, the difference in mean latency added to it. What it covers: Serve's
    proxy and handle calls, the replicas' own overhead around an emulated device, and HTTP,
    none of which Prometheus' coarse means can split between deployments."""
    import pandas as pd

    from tuner.calibration_file import accelerator_tables
    from tuner.sim.cluster import ClusterSpec
    from tuner.sim.run import simulate

    tables, stages = accelerator_tables(serve_config), dict(cal.stages)
    for route, one in single.items():
        if len(one.latencies_ms) < 3:
            continue
        ingress, n = ROUTES[route], len(one.latencies_ms)
        mix = RequestMix(MixSettings(weights={MIX_ROUTE[route]: 1.0}, rag_stream=False), np.zeros(4096), SEED)
        reqs = [mix.request(i % 4096) for i in range(n)]
        gap_s = 2 * max(one.latencies_ms) / 1000 + 1  # one at a time, as the closed loop sent them
        plan = pd.DataFrame({"t": np.arange(n) * gap_s, "path": [r.path for r in reqs], "stream": [r.stream for r in reqs],
                             "adapter": [r.adapter for r in reqs], "domain": [r.body.get("domain") for r in reqs],
                             "prompt_tokens": [r.prompt_tokens for r in reqs], "max_tokens": [r.max_tokens for r in reqs]})
        out = simulate(serve_config, plan, cal.model_copy(update={"stages": stages}), ClusterSpec(),
                       duration_s=n * gap_s, tables=tables, seed=SEED)
        ok = out.records[out.records["status"] == 200]
        if ok.empty:
            continue
        missing = statistics.mean(one.latencies_ms) - float(ok["latency_ms"].mean())
        own = max(0.2, stages[ingress].mean_ms(1) + missing)
        stages[ingress] = stages[ingress].model_copy(update={"service_ms": ((1, round(own, 3)),)})
    return stages


def derive(phases: list[Phase], startup_ms: dict[str, float], llm_profile: str, source: str, serve_config: dict,
           name: str = "measured", host_cpus: float | None = None, idle_cores: float | None = None) -> Calibration:
    """The calibration from measured phases (see the module's docstring)."""
    from tuner.sim.app import deployments_from_config

    deployed = deployments_from_config(serve_config)
    single = {p.route: p for p in phases if p.concurrency == 1 and not p.burst}
    fig = lambda p, dep, k: p.deployments.get(dep, {}).get(k)  # noqa: E731
    route_of = {}
    for route, ingress in ROUTES.items():
        todo = [ingress]
        while todo:
            d = todo.pop()
            route_of[d] = route
            todo += list(callees(d))
    rag = single["/rag"]
    stage = {k: _mean(st.get(k) for st in rag.stages_ms) or 0.0 for k in RAG_STAGES.values()}
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
                         for c in callees(dep)) if n else 0.0
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
        if dep in BATCHED:
            timing["service_ms"] = _batch_points(dep, s1, spec.max_batch_size, one, mine, fig)
        else:
            timing["service_ms"] = ((1, round(s1, 3)),)
        if not callees(dep) and dep != LLM_CALLER and dep not in BATCHED:
            sustained = max(((fig(p, dep, "processed") or 0.0) / p.deployments["__duration__"]["s"] * s1 / 1000
                             for p in mine if not p.burst), default=1.0)
            timing["concurrency"] = max(1, round(sustained))
        stages[dep] = StageTiming(**timing)
    # The proxy's share: a route's client latency less its ingress' processing (the short
    # routes, where the coarse processing time matters least). Each ingress' own time is then
    # settled against the client's latency (`settle_ingresses`).
    proxies = [statistics.mean(p.latencies_ms) - (fig(p, ROUTES[r], "processing_ms") or 0.0)
               for r, p in single.items() if r != "/rag" and p.latencies_ms]
    proxy = max(0.0, statistics.median(proxies)) if proxies else 2.0
    prompts = [p.deployments["__llm__"]["prompt_tokens"] for p in phases if p.route == "/rag"]
    prompt = _mean(prompts)
    llm = LLMCalibration(profile=load_profile(llm_profile), prompt_tokens=max(1, round(prompt)) if prompt else 400,
                         http_ms=0.0)
    base = Calibration(name=name, source=source, proxy_ms=round(proxy, 3), hop_ms=0.0, stages=stages, llm=llm)
    stages = settle_ingresses(base, single, serve_config)
    for dep, d in deployed.items():  # waiting on the LLM server, or holding an emulated device, is no CPU work
        compute = (d.user_config.get("compute") or {}).get("mode")
        if dep in stages and (dep == LLM_CALLER or compute == "emulated" or not _mostly_cpu(dep, stages[dep], single[route_of[dep]])):
            stages[dep] = stages[dep].model_copy(update={"cpu_bound": False})
    if not (host_cpus and idle_cores is not None):
        return base.model_copy(update={"stages": stages})

    def host(stages: dict[str, StageTiming]) -> dict:
        own = {r: sum(stages[d].mean_ms(1) for d, rr in route_of.items() if rr == r and stages[d].cpu_bound
                      and d not in BY_DOMAIN.get("DomainRouter", {}).values()) for r in ROUTES}
        classifiers = [stages[d].mean_ms(1) if stages[d].cpu_bound else 0.0 for d in BY_DOMAIN["DomainRouter"].values()]
        own["/predict"] += statistics.mean(classifiers)  # one classifier per request
        for dep in MULTIPLEXED:  # adapter loads are the model's own work too, when it computes
            one = single[route_of[dep]]
            n = fig(one, dep, "processed") or 0.0
            if stages[dep].cpu_bound and n:
                own[route_of[dep]] += stages[dep].load_ms * (fig(one, dep, "loads") or 0.0) / n
        return {"host_cpus": round(max(0.5, host_cpus - idle_cores), 3),
                "request_cpu_ms": request_cpu_ms(phases, idle_cores, own)}

    # The stack's CPU beyond the stages runs on each request's way in (tuner.sim.app): settle the
    # ingresses again with it, so what the client saw at concurrency 1 is not counted twice.
    cal = base.model_copy(update={"stages": stages, **host(stages)})
    stages = settle_ingresses(cal, single, serve_config)
    return cal.model_copy(update={"stages": stages, **host(stages)})


def run_profile(stack, out: Path, phase_s: float = 15.0, levels=LEVELS, name: str = "measured",
                report=print) -> Calibration:
    """Measure the running stack; write measurements.json (everything measured) and
    calibration.yaml (derived from it) to `out`."""
    prom = Prometheus(stack.prometheus_url)
    serve_config = stack.read_state().get("serve_config") or {}
    pids = [p["pid"] for p in stack.read_state().get("processes", [])]
    # Ray's export, then up to two scrapes: how late a phase's last requests show in Prometheus
    lag = stack.cfg.ray_metrics_report_ms / 1000 + 2 * stack.cfg.scrape_interval_s + 1
    idle, phases = measure(stack.serve_url(serve_config), phase_s, levels, report=report, pids=pids, settle_s=lag)
    read_phases(prom, phases, lag)
    measured = {"phases": [asdict(p) for p in phases],
                "startup_ms": _by_deployment(prom.vector(promql.replica_startup_mean_ms())),
                "llm_profile": stack.cfg.llm_profile, "host_cpus": float(os.cpu_count() or 1), "idle_cores": idle,
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
        raise UsageError(f"--from-measurements: {path} does not exist (run `tuner profile --out {folder}` first)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--from-measurements: {path} is not a profile's measurements: {e}") from None
    cal = derive(phases, m["startup_ms"], m["llm_profile"], m["source"], m["serve_config"], name, m.get("host_cpus"),
                 m.get("idle_cores"))
    save_calibration(cal, folder / "calibration.yaml")
    return cal
