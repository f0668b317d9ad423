"""The real run's burst on the simulator: `tuner.sim.cluster.Cluster` + `RayAutoscalerLoop` on
the project's Engine, with the loop's ticks at a chosen phase or at given times. Pure."""

from __future__ import annotations

from tuner.policies.ray_autoscaler import RayAutoscalerConfig
from tuner.sim.cluster import Cluster, ClusterSpec, RayAutoscalerLoop
from tuner.sim.engine import Engine
from tuner.validation.ray_autoscaler.timelines import steps


class FakeReplica:
    """A replica as the simulated Cluster sees it: its demand, and the node it is on."""

    __slots__ = ("node", "placed_at", "demand")

    def __init__(self, demand: dict):
        self.node = None
        self.placed_at = None
        self.demand = demand


def simulate(cfg: RayAutoscalerConfig, n_actors: int, actor_cpus: float, release_at: float, until: float,
             first_tick_at: float | None = None, tick_times: list[float] | None = None, infeasible: int = 0) -> dict:
    """The same burst on the model: `Cluster` + `RayAutoscalerLoop` on the project's Engine.

    Ticks every loop_s from first_tick_at (its phase), or, by default, loop_s after t=0 as
    `RayAutoscalerLoop` starts; or, with `tick_times`, exactly then (the real autoscaler's
    iterations replayed: the loop's own schedule is spent on one empty tick before the burst).
    Returns the running (joined) worker nodes and all of them (pending included) as exact step
    timelines."""
    start = 0.0  # RayAutoscalerLoop ticks loop_s after the engine's start
    loop_until = until
    if tick_times is not None:
        start, loop_until = -cfg.loop_s - 0.5, -0.5  # one tick at -0.5 s, nothing to do yet
    elif first_tick_at is not None:
        phase = first_tick_at % cfg.loop_s or cfg.loop_s  # the first tick in (0, loop_s]
        start = phase - cfg.loop_s
    engine = Engine(start)
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=cfg)
    cluster = Cluster(engine, spec, demand_of=lambda r: r.demand)
    loop = RayAutoscalerLoop(engine, cluster, cfg, loop_until)
    for t in tick_times or ():
        engine.at(t, loop._tick)  # the loop's own iteration, at the real autoscaler's times
    replicas = [FakeReplica({"CPU": actor_cpus}) for _ in range(n_actors)]
    node_cpus = cfg.groups[0].resources["CPU"]
    stuck = [FakeReplica({"CPU": node_cpus + 1}) for _ in range(infeasible)]

    def placed(r):
        r.placed_at = engine.now

    def burst(_):
        for r in replicas + stuck:
            cluster.request(r, placed)

    def release(_):
        for r in replicas:
            cluster.release(r)

    engine.at(0.0, burst)
    engine.at(release_at, release)
    engine.run(until)
    if tick_times is not None:
        ticks = [t for t in tick_times if t <= until]
    else:
        ticks = [round(start + k * cfg.loop_s, 3) for k in range(1, int((until - start) / cfg.loop_s) + 1)]
    group = cfg.groups[0].name
    return {"running": steps(cluster.joined[group]), "pods": steps(cluster.timeline[group]), "ticks": ticks,
            "replica_placed": [None if r.placed_at is None else round(r.placed_at, 3) for r in replicas]}
