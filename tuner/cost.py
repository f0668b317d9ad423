"""The cost model (pure), shared by real trials and the simulator.

Cost = each deployment's replicas over time x its resources (`ray_actor_options`: CPUs, GPUs,
memory) x a price table (read from its file by tuner/prices_file.py), integrated over the
measured window. When the cluster layer is part
of a trial and its node types are priced, what is paid is the nodes over time instead: the
replicas' share is still reported, so the two can be compared.

Timelines are step functions: (t, value) samples, each value held until the next sample; the
first value also covers the time before it.
"""

from __future__ import annotations

from typing import Annotated, Sequence

from pydantic import BaseModel, ConfigDict, Field

from tuner.names import app_name, deployment_key

GIB = 2**30

Timeline = Sequence[tuple[float, float]]


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Prices(BaseModel):
    """A price table; every price is per hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "USD"
    cpu_hour: Price
    gpu_hour: Price
    memory_gib_hour: Price
    node_hour: dict[str, Price] = Field(default_factory=dict)
    accelerator_hour: dict[str, Price] = Field(
        default_factory=dict, description="one card of an emulated accelerator class (its table's name) for an hour")


class Resources(BaseModel):
    """What one replica reserves from Ray, and the emulated accelerators it owns (by class)."""

    model_config = ConfigDict(frozen=True)

    cpus: float = Field(1.0, ge=0)
    gpus: float = Field(0.0, ge=0)
    memory_gib: float = Field(0.0, ge=0)
    accelerators: dict[str, float] = Field(default_factory=dict)


class DeploymentCost(BaseModel):
    replica_seconds: float
    cpu_seconds: float
    gpu_seconds: float
    memory_gib_seconds: float
    cost: float


class Cost(BaseModel):
    """A trial's cost over `window_s`; `cost` is what is paid (nodes if priced, else replicas)."""

    window_s: float
    currency: str
    deployments: dict[str, DeploymentCost]
    replica_seconds: float
    replica_cost: float
    node_seconds: dict[str, float] = Field(default_factory=dict)
    node_cost: float | None = None
    cost: float
    cost_per_hour: float


def hourly(r: Resources, prices: Prices) -> float:
    """What `r` costs per hour at the per-unit prices; an emulated accelerator of a class the table
    does not price costs a GPU-hour."""
    return (r.cpus * prices.cpu_hour + r.gpus * prices.gpu_hour + r.memory_gib * prices.memory_gib_hour
            + sum(n * prices.accelerator_hour.get(kind, prices.gpu_hour) for kind, n in r.accelerators.items()))


def with_node_prices(prices: Prices, node_types: dict[str, Resources]) -> Prices:
    """`prices` with a node-hour price for each node type it does not list: the node's
    resources at the per-unit prices (what per-pod billing charges)."""
    filled = dict(prices.node_hour)
    for kind, r in node_types.items():
        filled.setdefault(kind, hourly(r, prices))
    return prices.model_copy(update={"node_hour": filled})


def emulated_accelerators(deployment: dict) -> dict[str, float]:
    """The accelerators a replica emulates (its `user_config.compute`), by class: a replica that
    stands for a GPU replica costs what that GPU costs, though it asks Ray only for CPU."""
    compute = (deployment.get("user_config") or {}).get("compute")
    if not isinstance(compute, dict) or compute.get("mode") != "emulated":
        return {}
    kind = compute.get("accelerator") if compute.get("table") is None else None
    return {str(kind or "inline table"): float(compute.get("devices", 1))}


def deployment_resources(serve_config: dict) -> dict[str, Resources]:
    """Each deployment's per-replica resources from a Serve config (Serve's default: 1 CPU)."""
    out = {}
    for app in serve_config.get("applications") or []:
        for dep in app.get("deployments") or []:
            opts = dep.get("ray_actor_options") or {}
            cpus = opts.get("num_cpus")
            out[deployment_key(app_name(app), dep["name"])] = Resources(
                cpus=1.0 if cpus is None else float(cpus), gpus=float(opts.get("num_gpus") or 0),
                memory_gib=float(opts.get("memory") or 0) / GIB, accelerators=emulated_accelerators(dep))
    return out


def step_integral(samples: Timeline, t0: float, t1: float) -> float:
    """The integral over [t0, t1] of a step function given by (t, value) samples."""
    if t1 <= t0 or not samples:
        return 0.0
    pts = sorted(samples, key=lambda s: s[0])  # stable: of equal times, the later sample wins
    total = 0.0
    for i, (t, v) in enumerate(pts):
        start = t0 if i == 0 else max(t, t0)
        end = pts[i + 1][0] if i + 1 < len(pts) else t1
        end = min(end, t1)
        if end > start:
            total += v * (end - start)
    return total


def trial_cost(replicas: dict[str, Timeline], resources: dict[str, Resources], prices: Prices,
               t0: float, t1: float, nodes: dict[str, Timeline] | None = None) -> Cost:
    """Cost of the window [t0, t1] from replica timelines (and node timelines by node type)."""
    window = max(0.0, t1 - t0)
    deployments = {}
    for key in sorted(set(replicas) | set(resources)):
        res = resources.get(key, Resources())
        rs = step_integral(replicas.get(key, ()), t0, t1)
        cpu_s, gpu_s, mem_s = rs * res.cpus, rs * res.gpus, rs * res.memory_gib
        cost = rs * hourly(res, prices) / 3600
        deployments[key] = DeploymentCost(replica_seconds=rs, cpu_seconds=cpu_s, gpu_seconds=gpu_s,
                                          memory_gib_seconds=mem_s, cost=cost)
    replica_cost = sum(d.cost for d in deployments.values())
    node_seconds = {kind: step_integral(tl, t0, t1) for kind, tl in (nodes or {}).items()}
    node_cost = None
    if node_seconds and all(kind in prices.node_hour for kind in node_seconds):
        node_cost = sum(s * prices.node_hour[kind] for kind, s in node_seconds.items()) / 3600
    paid = replica_cost if node_cost is None else node_cost
    return Cost(window_s=window, currency=prices.currency, deployments=deployments,
                replica_seconds=sum(d.replica_seconds for d in deployments.values()), replica_cost=replica_cost,
                node_seconds=node_seconds, node_cost=node_cost, cost=paid,
                cost_per_hour=paid * 3600 / window if window else 0.0)
