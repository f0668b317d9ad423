"""One deployment on its own in the simulator: arrivals in, per-request outcomes and the
replica timeline out (the building block the app graph composes; also what the tests check
against queueing theory)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.policies.serve import ServeAutoscaling, initial_target
from tuner.sim.deployment import DeploymentSpec, Request, ServiceTime, SimDeployment
from tuner.sim.engine import Engine
from tuner.sim.serve_autoscaler import ServeAutoscaler


@dataclass
class SingleRun:
    arrival: np.ndarray
    end: np.ndarray
    status: np.ndarray
    timeline: list[tuple[float, int]]
    events: int


def simulate_deployment(spec: DeploymentSpec, service: ServiceTime, arrival_times: np.ndarray, *,
                        replicas: int = 1, autoscaling: ServeAutoscaling | None = None, start_s: float = 0.0,
                        seed: int = 0, until: float | None = None) -> SingleRun:
    """Send one request per arrival time; with `autoscaling`, Serve's controller sizes the
    deployment from its initial replicas (running at time 0, as a settled trial starts) until
    `until` (default: 60 s after the last arrival)."""
    engine, rng = Engine(), np.random.default_rng(seed)
    start = initial_target(autoscaling) if autoscaling else replicas
    dep = SimDeployment(engine, spec, start, service, rng, start_s=start_s)
    horizon = until if until is not None else (float(arrival_times[-1]) if len(arrival_times) else 0.0) + 60.0
    if autoscaling:
        ServeAutoscaler(engine, dep, autoscaling, horizon)
    finished: list[Request] = []
    for i, t in enumerate(arrival_times):
        engine.at(float(t), dep.submit, Request(i, float(t), finished.append))
    engine.run()  # the controller's timers stop at the horizon; what is in flight finishes
    done = {r.id: r for r in finished}
    n = len(arrival_times)
    end = np.array([done[i].end if i in done else np.nan for i in range(n)])
    status = np.array([done[i].status if i in done else 0 for i in range(n)])
    return SingleRun(arrival=np.asarray(arrival_times, dtype=float), end=end, status=status,
                     timeline=list(dep.timeline), events=engine.events)
