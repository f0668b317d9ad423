"""One simulated trial: a scenario's arrivals through the app, from a settled start, warm-up
included, to client records in loadgen's schema (pure: data in, data out).

As a real trial does, the app starts at each deployment's starting replicas (the multiplexed
ones with empty caches), the trial's models are primed (`tuner.prime`), the scenario's first
`warmup_s` seconds run unmeasured, then the load window [0, duration) runs and the client
waits `drain_s` for answers; a request over the timeout is an error, one still running at the
end of the drain is unfinished, one over the generator's in-flight cap is dropped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd

from tuner.sim.app import ClientRequest, SimApp
from tuner import settle
from tuner.sim.calibration import Calibration
from tuner.sim.cluster import HEAD, ClusterSpec
from tuner.sim.emulated import EmulatedTables
from tuner.sim.llm import HPAOnLLM

Timeline = list[tuple[float, float]]


@dataclass
class Outcome:
    records: pd.DataFrame
    replicas: dict[str, Timeline]
    nodes: dict[str, Timeline]
    llm_engines: Timeline
    replica_starts: dict[str, int]
    events: int
    wall_s: float


def _column(plan: pd.DataFrame, name: str, n: int) -> list:
    if name not in plan:
        return [None] * n
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in plan[name].tolist()]


def _requests(plan: pd.DataFrame, offset: float, first_id: int) -> list[ClientRequest]:
    n = len(plan)
    t = plan["t"].to_numpy(dtype=float) + offset
    cols = {c: _column(plan, c, n) for c in ("path", "stream", "adapter", "domain", "prompt_tokens", "max_tokens")}
    return [ClientRequest(first_id + k, float(t[k]), cols["path"][k], bool(cols["stream"][k]), cols["adapter"][k],
                          cols["domain"][k], None if cols["prompt_tokens"][k] is None else int(cols["prompt_tokens"][k]),
                          None if cols["max_tokens"][k] is None else int(cols["max_tokens"][k])) for k in range(n)]


def _from_start(tl) -> Timeline:
    """A timeline from the window's start: what happened during warm-up becomes its value at 0."""
    out = [(max(0.0, t), v) for t, v in tl]
    kept = [p for p in out if p[0] > 0]
    before = [p for p in out if p[0] == 0]
    return ([before[-1]] if before else []) + kept


def simulate(serve_config: dict, plan: pd.DataFrame, cal: Calibration, cluster: ClusterSpec, *, duration_s: float,
             tables: EmulatedTables, warmup_s: float = 0.0, seed: int = 0, request_timeout_s: float = 60.0,
             drain_s: float = 10.0, max_in_flight: int = 1000, llm_hpa: HPAOnLLM | None = None,
             prime: pd.DataFrame | None = None) -> Outcome:
    """Run the plan's arrivals (columns t, path, stream, adapter, domain, prompt_tokens,
    max_tokens; t in seconds of the load window) through the app, whose emulated deployments
    replay `tables`; `prime` (tuner.prime.prime_rows, t before the warm-up) runs first."""
    wall = time.perf_counter()
    load = plan[plan["t"] < duration_s]
    warm = plan[plan["t"] < min(warmup_s, duration_s)]
    primed = prime if prime is not None else plan[:0]
    end = duration_s + drain_s
    # Serve's controller took the trial's config this long before the first request (tuner.settle)
    first = -warmup_s + (float(primed["t"].min()) if len(primed) else 0.0) - settle.LEAD_S
    app = SimApp(serve_config, cal, cluster, seed=seed, start=first, until=end, tables=tables, llm_hpa=llm_hpa,
                 max_in_flight=max_in_flight)
    prime_reqs = _requests(primed, -warmup_s, -len(warm) - len(primed))
    warm_reqs = _requests(warm, -warmup_s, -len(warm))
    reqs = _requests(load, 0.0, 0)
    for cr in prime_reqs + warm_reqs + reqs:
        app.send(cr)
    timeout = min(request_timeout_s, app.http_timeout_s)
    # Far enough for every request's verdict: one not answered by then has exceeded its timeout.
    app.run(end + timeout)
    rows = []
    for k, cr in enumerate(reqs):
        latency = cr.end - cr.t
        row = {"scheduled": cr.t, "route": cr.path, "adapter": cr.adapter, "prompt_tokens": cr.prompt_tokens,
               "generator": "sim", "dropped": cr.dropped, "unfinished": False}
        if cr.dropped:
            row["error"] = f"dropped: {max_in_flight} requests in flight"
        elif latency > timeout or math.isnan(latency):
            row |= {"sent": cr.t, "end": cr.t + timeout, "status": 408 if timeout == app.http_timeout_s else 0,
                    "error": None if timeout == app.http_timeout_s else "timeout"}
        elif cr.end > end:
            row |= {"sent": cr.t, "end": end, "unfinished": True}
        else:
            row |= {"sent": cr.t, "first_byte": cr.end, "end": cr.end, "status": cr.status,
                    "output_tokens": cr.output_tokens}
            if not math.isnan(cr.first_token):
                row["ttft_ms"] = (cr.first_token - cr.t) * 1000
            if cr.itl is not None:
                row["itl_ms"] = cr.itl
        rows.append(row)
    from loadgen.records import FIELDS, with_derived

    df = pd.DataFrame(rows, columns=FIELDS)
    df["dropped"] = df["dropped"].astype(bool)
    df["unfinished"] = df["unfinished"].astype(bool)
    df["degraded"] = False  # the simulator models no LLM failure
    nodes = {g: _from_start(tl) for g, tl in app.cluster.timeline.items() if g != HEAD}
    return Outcome(records=with_derived(df), replicas={k: _from_start(tl) for k, tl in app.timelines().items()},
                   nodes=nodes, llm_engines=_from_start(app.llm.timeline), replica_starts=app.replica_starts(0.0),
                   events=app.engine.events, wall_s=time.perf_counter() - wall)
