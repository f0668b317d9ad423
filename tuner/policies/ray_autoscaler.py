"""The Ray autoscaler (v2, the default since Ray 2.47) as KubeRay runs it, pure and clock-injected.

One call is one autoscaler iteration (every 5 s on the head pod): worker pods to add per group
and idle pods to remove, from the logical resources that pending replica actors ask for (not
from CPU use). Read from the installed Ray 2.60.0: ray/autoscaler/v2/scheduler.py
(ResourceDemandScheduler: min workers, bin-packing of demands onto existing then new nodes with
its utilisation score, idle termination) and v2/instance_manager/reconciler.py
(`_compute_to_launch`: per-type and global launch caps), and KubeRay's mapping of
`autoscalerOptions` (ray/autoscaler/_private/kuberay/autoscaling_config.py): upscalingMode
Conservative -> upscaling_speed 1, else 1000; idleTimeoutSeconds (default 60), per group too.
Ray's implicit per-node resources count as Ray counts them (`fits`, `take`, `give`); label
selectors, group priorities, placement groups and in-place pod resize are not modelled.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tuner.policies import Frozen

Resources = dict[str, float]

# Every Ray node holds 1 of each resource named with this prefix without listing it
# (ray._raylet.IMPLICIT_RESOURCE_PREFIX); Serve's `max_replicas_per_node` asks 1/limit of one named
# for the deployment per replica (ray/serve/_private/deployment_scheduler.py), so at most `limit`
# replicas share a node. Ray's schedulers read a missing key of this kind as 1 free
# (autoscaler/_private/resource_demand_scheduler.py `_fits`, `_inplace_subtract`).
IMPLICIT_PREFIX = "node:__internal_implicit_resource_"


def per_node_limit(app: str, deployment: str, limit: int) -> Resources:
    """The implicit resource a replica of a deployment with `max_replicas_per_node: limit` asks."""
    return {f"{IMPLICIT_PREFIX}{app}:{deployment}": 1.0 / int(limit)}


def _free(available: Resources, key: str) -> float:
    return available.get(key, 1.0 if key.startswith(IMPLICIT_PREFIX) else 0.0)


def fits(available: Resources, demand: Resources) -> bool:
    """Whether `demand` fits in what a node has free (Ray's `_fits`, with a float tolerance)."""
    return all(_free(available, k) + 1e-9 >= v for k, v in demand.items() if v > 0)


def take(available: Resources, demand: Resources) -> None:
    """Reserve `demand` on a node's free resources, in place."""
    for k, v in demand.items():
        available[k] = _free(available, k) - v


def give(available: Resources, demand: Resources) -> None:
    """Return a reservation; an implicit resource never exceeds its 1 (Serve's `__add__`)."""
    for k, v in demand.items():
        back = _free(available, k) + v
        available[k] = min(1.0, back) if k.startswith(IMPLICIT_PREFIX) else back


class WorkerGroup(Frozen):
    """A KubeRay worker group: the resources one pod gives Ray, and its replica bounds."""

    name: str
    resources: Resources = Field(description="per pod, e.g. {'CPU': 4, 'GPU': 1, 'memory': 16e9}")
    min_workers: NonNegativeInt = 0
    max_workers: NonNegativeInt = 2**31 - 1
    idle_timeout_s: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "WorkerGroup":
        if self.min_workers > self.max_workers:
            raise ValueError(f"{self.name}: min_workers ({self.min_workers}) must be <= max_workers ({self.max_workers})")
        return self


class RayAutoscalerConfig(Frozen):
    """`enableInTreeAutoscaling` with `autoscalerOptions`, and the worker groups."""

    groups: tuple[WorkerGroup, ...]
    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] = "Default"
    idle_timeout_s: NonNegativeFloat = 60.0
    max_concurrent_launches: PositiveInt = 10
    loop_s: PositiveFloat = Field(5.0, description="AUTOSCALER_UPDATE_INTERVAL_S")
    pod_start_s: NonNegativeFloat = Field(30.0, description="pod scheduled to Ray node joined (for the simulator)")
    demand_lag_s: NonNegativeFloat = Field(1.0, description="pending demand reaches the autoscaler after this "
                                                            "(gcs_pull_resource_loads_period_milliseconds; for the simulator)")

    @property
    def upscaling_speed(self) -> float:
        """KubeRay's mapping: Conservative launches at most as many pods as are running."""
        return 1.0 if self.upscaling_mode == "Conservative" else 1000.0

    def group(self, name: str) -> WorkerGroup:
        return next(g for g in self.groups if g.name == name)


class Node(Frozen):
    """A Ray node as the autoscaler sees it; `group` None for the head."""

    id: str
    group: str | None
    status: Literal["running", "pending"] = "running"
    total: Resources
    available: Resources
    idle_since: float | None = Field(None, description="when it last became idle (no actors); None if busy")


class AutoscalerDecision(Frozen):

    launch: dict[str, int] = Field(default_factory=dict, description="pods to add per group this iteration")
    terminate: tuple[str, ...] = ()
    infeasible: tuple[Resources, ...] = Field((), description="demands no group can ever place")
    queued: dict[str, int] = Field(default_factory=dict, description="pods wanted, before the launch caps")


class _Slot:
    """A node being filled during one scheduling pass."""

    def __init__(self, group: str | None, total: Resources, available: Resources, new: bool, node_id: str = ""):
        self.group, self.total, self.available, self.new, self.id = group, total, dict(available), new, node_id
        self.placed: list[Resources] = []


def _try_fill(slot: _Slot, demands: list[Resources]) -> tuple[Resources, list[Resources], list[Resources]]:
    """Place what fits of `demands` (in order) on a copy of the slot's free resources."""
    free, placed, rest = dict(slot.available), [], []
    for d in demands:
        if fits(free, d):
            take(free, d)
            placed.append(d)
        else:
            rest.append(d)
    return free, placed, rest


def _score(slot: _Slot, free: Resources, placed: list[Resources]) -> tuple:
    """Ray's utilisation score: avoid GPU nodes for non-GPU work, match more resource kinds,
    then the highest minimum and mean of total x utilisation^3 over the node's resources."""
    kinds = {k for d in placed for k, v in d.items() if v > 0}
    matching = sum(1 for k in kinds if k in slot.total)
    utils = [v * ((v - free.get(k, 0.0)) / v) ** 3 for k, v in slot.total.items() if v > 0]
    gpu_ok = not (slot.total.get("GPU", 0) > 0 and not any("GPU" in d for d in placed))
    return (gpu_ok, matching, min(utils) if utils else 0.0, sum(utils) / len(utils) if utils else 0.0)


def _best(candidates: list[_Slot], demands: list[Resources]) -> tuple[_Slot | None, list[Resources]]:
    """Give the best-scoring candidate every demand that fits on it; the demands left."""
    best = None
    for slot in candidates:
        free, placed, rest = _try_fill(slot, demands)
        if placed:
            score = _score(slot, free, placed)
            if best is None or score > best[0]:
                best = (score, slot, free, placed, rest)
    if best is None:
        return None, demands
    _, slot, free, placed, rest = best
    slot.available, slot.placed = free, slot.placed + placed
    return slot, rest


def _sort_key(d: Resources) -> tuple:
    return (len(d), sum(d.values()), sorted(d.items()))


def decide(cfg: RayAutoscalerConfig, nodes: list[Node], demands: list[Resources], now: float) -> AutoscalerDecision:
    """One autoscaler iteration: pods to launch per group and idle pods to terminate.

    `nodes`: running and pending Ray nodes (pending: launched, not yet joined);
    `demands`: resource bundles of actors and tasks that could not be placed (one per replica)."""
    demands = sorted((d for d in demands if any(v > 0 for v in d.values())), key=_sort_key, reverse=True)
    count = {g.name: sum(1 for n in nodes if n.group == g.name) for g in cfg.groups}
    slots = [_Slot(n.group, n.total, n.available, False, n.id) for n in nodes]
    for g in cfg.groups:  # min_workers first: those pods come whatever the demand
        slots += [_Slot(g.name, g.resources, g.resources, True) for _ in range(max(0, g.min_workers - count[g.name]))]
    used, rest, candidates = [], demands, list(slots)
    while rest and candidates:  # existing and min_workers pods first, best-scoring pod each round
        slot, rest = _best(candidates, rest)
        if slot is None:
            break
        candidates.remove(slot)
        used.append(slot)
    added = [s for s in slots if s.new]
    room = {g.name: g.max_workers - count[g.name] - sum(1 for s in added if s.group == g.name) for g in cfg.groups}
    while rest:  # then new pods, one at a time, of the best-scoring group with room
        slot, rest = _best([_Slot(g.name, g.resources, g.resources, True) for g in cfg.groups if room[g.name] > 0], rest)
        if slot is None:
            break
        added.append(slot)
        room[slot.group] -= 1
    infeasible = tuple(d for d in rest if not any(fits(g.resources, d) for g in cfg.groups))
    queued = {g.name: sum(1 for s in added if s.group == g.name) for g in cfg.groups}
    return AutoscalerDecision(launch=_launch_caps(cfg, nodes, queued), queued={k: v for k, v in queued.items() if v},
                              terminate=_idle(cfg, nodes, {s.id for s in used if not s.new}, now),
                              infeasible=infeasible)


def _launch_caps(cfg: RayAutoscalerConfig, nodes: list[Node], queued: dict[str, int]) -> dict[str, int]:
    """Per group at most max(1, ceil(speed x max(running, 1))); overall at most
    max_concurrent_launches pods pending at once."""
    budget = cfg.max_concurrent_launches - sum(1 for n in nodes if n.group and n.status == "pending")
    out = {}
    for name, want in queued.items():
        running = sum(1 for n in nodes if n.group == name and n.status == "running")
        n = max(0, min(want, max(1, math.ceil(cfg.upscaling_speed * max(running, 1))), budget))
        if n:
            out[name] = n
            budget -= n
    return out


def _idle(cfg: RayAutoscalerConfig, nodes: list[Node], wanted: set[str], now: float) -> tuple[str, ...]:
    """Running worker pods idle longer than their timeout, longest idle first, keeping
    min_workers per group and the pods this pass placed demand on (Ray's
    `_enforce_idle_termination`: demand that fits nowhere does not keep idle pods)."""
    out = []
    for g in cfg.groups:
        timeout = cfg.idle_timeout_s if g.idle_timeout_s is None else g.idle_timeout_s
        members = [n for n in nodes if n.group == g.name]
        idle = sorted((n for n in members if n.status == "running" and n.idle_since is not None
                       and n.id not in wanted and now - n.idle_since > timeout), key=lambda n: n.idle_since)
        spare = len(members) - g.min_workers
        out += [n.id for n in idle[:max(0, spare)]]
    return tuple(out)
