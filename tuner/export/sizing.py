"""How many worker pods of each group the Serve config needs (pure): each deployment's
replicas at its bounds, packed onto pods first-fit as Ray places actors without a strategy,
at most `max_replicas_per_node` of a deployment on one pod. Groups with GPUs take the
deployments that ask for GPUs; the head runs no replicas."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from tuner.errors import UsageError
from tuner.export.settings import GIB, PodShape
from tuner.names import app_name, deployment_key
from tuner.policies.hpa import HPASpec
from tuner.policies.ray_autoscaler import Resources, fits, per_node_limit, take
from tuner.sim.cluster import ClusterSpec

# Serve's bounds for `num_replicas: auto` (its default AutoscalingConfig).
AUTO_BOUNDS = (1, 100)


class Demand(BaseModel):
    """One replica's logical resources."""

    model_config = ConfigDict(frozen=True)

    deployment: str
    cpus: float
    gpus: float
    memory_gib: float
    limit: dict[str, float] = {}  # Serve's per-node limit as Ray's implicit resource (max_replicas_per_node)

    @property
    def resources(self) -> Resources:
        return {"CPU": self.cpus, "GPU": self.gpus, "memory": self.memory_gib, **self.limit}


class GroupPlan(BaseModel):
    """One exported worker group."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: PodShape
    min_workers: int
    max_workers: int
    idle_timeout_s: float | None = None

    @property
    def gpu(self) -> bool:
        return self.shape.gpus > 0


def replica_bounds(dep: dict) -> tuple[int, int]:
    """(min, max) replicas of one deployment entry of a Serve config."""
    auto = dep.get("autoscaling_config")
    n = dep.get("num_replicas")
    if auto or n == "auto":
        auto = auto or {}
        return int(auto.get("min_replicas", AUTO_BOUNDS[0])), int(auto.get("max_replicas", AUTO_BOUNDS[1]))
    n = 1 if n is None else int(n)
    return n, n


def demands(serve_config: dict, bound: int) -> list[Demand]:
    """Every replica at the lower (`bound=0`) or upper (1) replica bound of each deployment."""
    out = []
    for app in serve_config.get("applications") or []:
        for dep in app.get("deployments") or []:
            opts = dep.get("ray_actor_options") or {}
            cpus = 1.0 if opts.get("num_cpus") is None else float(opts["num_cpus"])
            limit = per_node_limit(app_name(app), dep["name"], dep["max_replicas_per_node"]) \
                if dep.get("max_replicas_per_node") else {}
            one = Demand(deployment=deployment_key(app_name(app), dep["name"]), cpus=cpus,
                         gpus=float(opts.get("num_gpus") or 0), memory_gib=float(opts.get("memory") or 0) / GIB,
                         limit=limit)
            out += [one] * replica_bounds(dep)[bound]
    return out


def pods_needed(reqs: list[Demand], shape: PodShape) -> int:
    """Pods of `shape` that hold every replica, first-fit in decreasing size."""
    pods: list[Resources] = []
    for d in sorted(reqs, key=lambda d: (d.gpus, d.cpus, d.memory_gib), reverse=True):
        free = next((p for p in pods if fits(p, d.resources)), None)
        if free is None:
            free = {"CPU": shape.cpus, "GPU": float(shape.gpus), "memory": shape.memory_gib}
            pods.append(free)
        take(free, d.resources)
    return len(pods)


def _shape(resources: dict[str, float]) -> PodShape:
    return PodShape(cpus=resources.get("CPU", 0) or 1, memory_gib=(resources.get("memory") or 4 * GIB) / GIB,
                    gpus=int(math.ceil(resources.get("GPU", 0))))


def _fits(d: Demand, shape: PodShape, group: str) -> None:
    if d.cpus > shape.cpus + 1e-9 or d.gpus > shape.gpus + 1e-9 or d.memory_gib > shape.memory_gib + 1e-9:
        raise UsageError(f"{d.deployment}: a replica asks for {d.cpus:g} CPU, {d.gpus:g} GPU, {d.memory_gib:g} GiB; "
                         f"a {group} pod has {shape.cpus:g} CPU, {shape.gpus} GPU, {shape.memory_gib:g} GiB")


def plan_groups(serve_config: dict, cluster: ClusterSpec, tuned: bool, gpu_pod: PodShape) -> list[GroupPlan]:
    """The worker groups: the cluster layer's CPU group, and a GPU group when a deployment asks
    for GPUs. Tuned bounds are kept as searched; otherwise each group's bounds are the pods that
    hold every replica at the deployments' lower and upper bounds."""
    groups = cluster.all_groups()
    cpu = next((g for g in groups if not g.resources.get("GPU")), None)
    gpu = next((g for g in groups if g.resources.get("GPU")), None)
    if cpu is None:
        raise UsageError(f"the {cluster.layer} layer has no CPU worker group")
    lows, highs = demands(serve_config, 0), demands(serve_config, 1)
    plans = []
    for group, shape, wants in ((cpu, _shape(cpu.resources), lambda d: d.gpus == 0),
                                (gpu, _shape(gpu.resources) if gpu else gpu_pod, lambda d: d.gpus > 0)):
        mine_hi = [d for d in highs if wants(d)]
        if group is None and not mine_hi:
            continue
        name = group.name if group else "gpu-workers"
        for d in mine_hi:
            _fits(d, shape, name)
        if tuned and group is not None:
            lo, hi = group.min_workers, group.max_workers
        else:
            lo, hi = pods_needed([d for d in lows if wants(d)], shape), pods_needed(mine_hi, shape)
        plans.append(GroupPlan(name=name, shape=shape, min_workers=lo, max_workers=hi,
                               idle_timeout_s=group.idle_timeout_s if group else None))
    return plans


def worker_hpa(cluster: ClusterSpec, cpu_group: GroupPlan, tuned: bool) -> HPASpec:
    """The HPA on the CPU workers (hpa layer): as searched, or the shipped one bounded by the
    pods the deployments need (at least one: an HPA's minReplicas)."""
    spec = cluster.hpa.spec
    if tuned:
        return spec
    return spec.model_copy(update={"min_replicas": max(1, cpu_group.min_workers),
                                   "max_replicas": max(1, cpu_group.min_workers, cpu_group.max_workers)})
