"""The search space: which settings `tuner optimize` may change, their ranges, and how a set of
values becomes a Serve config (pure).

A space file (YAML; the shipped one is tuner/data/search_space.yaml) lists, per deployment of
the Serve config, parameters with a range or choices and a scale:

    serve:
      QueryRewriter:
        target_ongoing_requests: {type: float, low: 1, high: 32, scale: log}
        max_replicas: {type: int, low: 1, high: 8}
        max_batch_size: {type: int, low: 1, high: 32, scale: log}

and per cluster layer (`ray-autoscaler`: worker bounds, `idle_timeout_s`, `upscaling_mode`;
`hpa`: replica bounds, metric target, tolerance, stabilisation windows, policy percents).
A Serve parameter's name says where it lands: autoscaling fields in `autoscaling_config`,
`max_ongoing_requests`, `max_queued_requests` and `num_replicas` on the deployment,
`max_batch_size` and `batch_wait_timeout_s` in `user_config.batch`, the multiplex cache size
(`max_models_per_replica`) in `user_config`, the emulated accelerator a replica owns (`devices`:
whole cards or a share of one) in `user_config.compute`, `num_cpus` in `ray_actor_options`. Constraints
between parameters hold by construction: values are repaired after sampling (min <= initial <=
max replicas; max_ongoing_requests >= target_ongoing_requests), so every evaluated
configuration is valid and the sampler still sees fixed ranges.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuner.errors import UsageError, first_problem, read_yaml
from tuner.paths import SEARCH_SPACES

AUTOSCALING = ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests", "upscale_delay_s",
               "downscale_delay_s", "downscale_to_zero_delay_s", "upscaling_factor", "downscaling_factor",
               "look_back_period_s")
DEPLOYMENT = ("max_ongoing_requests", "max_queued_requests", "num_replicas")
BATCH = ("max_batch_size", "batch_wait_timeout_s")
USER_CONFIG = ("max_models_per_replica",)
COMPUTE = ("devices",)
ACTOR = ("num_cpus",)
SERVE_PARAMS = AUTOSCALING + DEPLOYMENT + BATCH + USER_CONFIG + COMPUTE + ACTOR
CLUSTER_PARAMS = {
    "ray-autoscaler": ("min_workers", "max_workers", "idle_timeout_s", "upscaling_mode"),
    "hpa": ("min_replicas", "max_replicas", "target", "tolerance", "scale_up_stabilization_s",
            "scale_down_stabilization_s", "scale_up_percent", "scale_down_percent"),
}
INTEGER = {"min_replicas", "max_replicas", "initial_replicas", "max_ongoing_requests", "max_queued_requests",
           "num_replicas", "max_batch_size", "max_models_per_replica"}


Bound = Annotated[float, Field(allow_inf_nan=False)]


class Param(BaseModel):
    """One parameter: an int or float range (linear or log scale), or a list of choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "categorical"]
    low: Bound | None = None
    high: Bound | None = None
    scale: Literal["linear", "log"] = "linear"
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Param":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes `choices`, not low/high")
            odd = [c for c in self.choices if not isinstance(c, (bool, int, float, str, type(None)))]
            if odd:  # what Optuna can store as a categorical value
                raise ValueError(f"choices must be numbers, strings, booleans or null (got {odd[0]!r})")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs `low` and `high`")
        if self.choices is not None:
            raise ValueError(f"an {self.type} parameter takes low/high, not `choices`")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must be <= high ({self.high:g})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0 (got {self.low:g})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs whole low and high")
        return self


class Space(BaseModel):
    """Parameters per deployment (Serve layer); `cluster` per layer name (Ray autoscaler, HPA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serve: dict[str, dict[str, Param]] = Field(default_factory=dict)
    cluster: dict[str, dict[str, Param]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> "Space":
        for dep, params in self.serve.items():
            for name, p in params.items():
                if name not in SERVE_PARAMS:
                    raise ValueError(f"serve.{dep}.{name}: unknown parameter; allowed: {', '.join(SERVE_PARAMS)}")
                if name in INTEGER and p.type == "float":
                    raise ValueError(f"serve.{dep}.{name}: must be an int parameter (got float)")
        for layer, params in self.cluster.items():
            if layer not in CLUSTER_PARAMS:
                raise ValueError(f"cluster.{layer}: unknown layer; allowed: {', '.join(CLUSTER_PARAMS)}")
            for name in params:
                if name not in CLUSTER_PARAMS[layer]:
                    raise ValueError(f"cluster.{layer}.{name}: unknown parameter; allowed: "
                                     f"{', '.join(CLUSTER_PARAMS[layer])}")
        return self

    def names(self) -> list[str]:
        """Every parameter as `layer.owner.name`, in file order."""
        return [f"serve.{d}.{n}" for d, ps in self.serve.items() for n in ps] + \
               [f"cluster.{layer}.{n}" for layer, ps in self.cluster.items() for n in ps]

    def param(self, key: str) -> Param:
        layer, owner, name = key.split(".", 2)
        return (self.serve if layer == "serve" else self.cluster)[owner][name]


def load_space(path: Path | None, serve_config: dict) -> Space:
    """A space file checked against the Serve config (UsageError naming the field)."""
    path = path or SEARCH_SPACES / "search_space.yaml"
    raw = read_yaml(path, "--space") or {}
    try:
        space = Space.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"--space {path}: {first_problem(e)}") from None
    known = {d["name"] for a in serve_config.get("applications") or [] for d in a.get("deployments") or []}
    unknown = sorted(set(space.serve) - known)
    if unknown:
        raise UsageError(f"--space {path}: serve.{unknown[0]}: no such deployment in the Serve config "
                         f"(it has {', '.join(sorted(known))})")
    emulated = {d["name"] for a in serve_config.get("applications") or [] for d in a.get("deployments") or []
                if ((d.get("user_config") or {}).get("compute") or {}).get("mode") == "emulated"}
    for dep, params in space.serve.items():
        if "devices" in params and dep not in emulated:
            raise UsageError(f"--space {path}: serve.{dep}.devices: the deployment does not run in compute mode "
                             "'emulated' in the Serve config, so it owns no emulated accelerator")
    if not space.names():
        raise UsageError(f"--space {path}: no parameters to search")
    return space


def repair(values: dict[str, Any], space: Space, serve_config: dict) -> dict[str, Any]:
    """The values with the constraints between parameters made to hold (per deployment, with
    the config's own value for a bound the space does not search): min <= initial <= max
    replicas (a maximum below the minimum is raised to it, the initial count clamped) and
    max_ongoing_requests >= target_ongoing_requests."""
    out = dict(values)
    current = _current(serve_config)
    for dep in space.serve:
        def get(name):
            return out.get(f"serve.{dep}.{name}", current.get(dep, {}).get(name))

        lo, hi, start = get("min_replicas"), get("max_replicas"), get("initial_replicas")
        if lo is not None and hi is not None and hi < lo:  # a searched minimum wins over the maximum
            out[f"serve.{dep}.max_replicas"] = hi = lo
        if start is not None and lo is not None and hi is not None and not lo <= start <= hi:
            out[f"serve.{dep}.initial_replicas"] = min(max(start, lo), hi)
        target, ongoing = get("target_ongoing_requests"), get("max_ongoing_requests")
        if target is not None and ongoing is not None and ongoing < target:
            if f"serve.{dep}.max_ongoing_requests" in out:
                out[f"serve.{dep}.max_ongoing_requests"] = int(math.ceil(target))
            else:
                out[f"serve.{dep}.target_ongoing_requests"] = float(ongoing)
    return out


def _current(serve_config: dict) -> dict[str, dict]:
    """Each deployment's present settings, by parameter name."""
    out = {}
    for app in serve_config.get("applications") or []:
        for d in app.get("deployments") or []:
            n = d.get("num_replicas", 1)
            # a fixed deployment given an autoscaling field starts from its replica count (apply)
            auto = d.get("autoscaling_config") or {"min_replicas": n, "initial_replicas": n, "max_replicas": n}
            uc = d.get("user_config") or {}
            out[d["name"]] = {**{k: auto[k] for k in AUTOSCALING if k in auto},
                              **{k: d[k] for k in DEPLOYMENT if k in d},
                              **{k: (uc.get("batch") or {})[k] for k in BATCH if k in (uc.get("batch") or {})},
                              **{k: uc[k] for k in USER_CONFIG if k in uc},
                              **{k: (uc.get("compute") or {})[k] for k in COMPUTE if k in (uc.get("compute") or {})},
                              **{k: (d.get("ray_actor_options") or {})[k] for k in ACTOR
                                 if k in (d.get("ray_actor_options") or {})}}
    return out


def apply(serve_config: dict, values: dict[str, Any]) -> dict:
    """A new Serve config with the Serve-layer values set (the input is not changed). Setting
    an autoscaling field on a deployment with fixed replicas makes it autoscaled from its
    replica count; setting `num_replicas` on an autoscaled one fixes it."""
    cfg = copy.deepcopy(serve_config)
    by_name = {d["name"]: d for a in cfg.get("applications") or [] for d in a.get("deployments") or []}
    for key, value in values.items():
        layer, dep, name = key.split(".", 2)
        if layer != "serve":
            continue
        d = by_name[dep]
        if name in AUTOSCALING:
            if "autoscaling_config" not in d:
                n = d.pop("num_replicas", 1)
                d["autoscaling_config"] = {"min_replicas": n, "initial_replicas": n, "max_replicas": n}
            d["autoscaling_config"][name] = value
        elif name == "num_replicas":
            d.pop("autoscaling_config", None)
            d["num_replicas"] = value
        elif name in DEPLOYMENT:
            d[name] = value
        elif name in BATCH:
            d.setdefault("user_config", {}).setdefault("batch", {})[name] = value
        elif name in USER_CONFIG:
            d.setdefault("user_config", {})[name] = value
        elif name in COMPUTE:
            d.setdefault("user_config", {}).setdefault("compute", {})[name] = value
        else:
            d.setdefault("ray_actor_options", {})[name] = value
    return cfg


def distributions(space: Space) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each parameter's Optuna distribution: what `suggest` asks the sampler for, and what a
    warm start's prior trials are recorded under."""
    out = {}
    for key in space.names():
        p = space.param(key)
        if p.type == "categorical":
            out[key] = optuna.distributions.CategoricalDistribution(p.choices)
        elif p.type == "int":
            out[key] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.scale == "log")
        else:
            out[key] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.scale == "log")
    return out


def suggest(trial, space: Space) -> dict[str, Any]:
    """The trial's value for every parameter (Optuna's suggest API, fixed ranges)."""
    out = {}
    for key, d in distributions(space).items():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            out[key] = trial.suggest_categorical(key, d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution):
            out[key] = trial.suggest_int(key, d.low, d.high, log=d.log)
        else:
            out[key] = trial.suggest_float(key, d.low, d.high, log=d.log)
    return out


def apply_cluster(cluster, values: dict[str, Any]):
    """A ClusterSpec with the values of its own layer's parameters set (others ignored):
    Ray autoscaler worker bounds (every group), idle timeout and upscaling mode; the HPA's
    replica bounds, first metric's target, tolerance, stabilisation windows and the Percent
    policy of each direction."""
    from tuner.policies.hpa import HPABehavior, HPAPolicy, HPAScalingRules

    mine = {k.split(".", 2)[2]: v for k, v in values.items() if k.startswith(f"cluster.{cluster.layer}.")}
    if not mine:
        return cluster
    if cluster.layer == "ray-autoscaler":
        ra = cluster.ray_autoscaler
        bounds = {k: int(mine[k]) for k in ("min_workers", "max_workers") if k in mine}
        groups = tuple(g.model_copy(update=bounds) for g in ra.groups)
        if "min_workers" in bounds and "max_workers" not in bounds:  # keep each group valid
            groups = tuple(g.model_copy(update={"max_workers": max(g.max_workers, g.min_workers)}) for g in groups)
        upd = {k: mine[k] for k in ("idle_timeout_s", "upscaling_mode") if k in mine}
        return cluster.model_copy(update={"ray_autoscaler": ra.model_copy(update={**upd, "groups": groups})})
    if cluster.layer == "hpa":
        hpa, spec = cluster.hpa, cluster.hpa.spec
        upd: dict[str, Any] = {k: int(mine[k]) for k in ("min_replicas", "max_replicas") if k in mine}
        if upd.get("min_replicas", spec.min_replicas) > upd.get("max_replicas", spec.max_replicas):
            upd["max_replicas"] = upd.get("min_replicas", spec.min_replicas)
        if "tolerance" in mine:
            upd["tolerance"] = float(mine["tolerance"])
        if "target" in mine:
            upd["metrics"] = (spec.metrics[0].model_copy(update={"target": int(mine["target"])}), *spec.metrics[1:])
        behavior = spec.behavior or HPABehavior()
        up, down = behavior.scale_up, behavior.scale_down
        if "scale_up_stabilization_s" in mine:
            up = up.model_copy(update={"stabilization_window_s": int(mine["scale_up_stabilization_s"])})
        if "scale_down_stabilization_s" in mine:
            down = down.model_copy(update={"stabilization_window_s": int(mine["scale_down_stabilization_s"])})
        if "scale_up_percent" in mine:
            up = up.model_copy(update={"policies": (HPAPolicy(type="Percent", value=int(mine["scale_up_percent"]),
                                                              period_s=15),)})
        if "scale_down_percent" in mine:
            down = down.model_copy(update={"policies": (HPAPolicy(type="Percent", value=int(mine["scale_down_percent"]),
                                                                  period_s=15),)})
        if any(k.startswith("scale_") for k in mine):
            upd["behavior"] = HPABehavior(scale_up=HPAScalingRules(**up.model_dump()),
                                          scale_down=HPAScalingRules(**down.model_dump()))
        groups = tuple(g.model_copy(update={"max_workers": max(g.max_workers, upd.get("max_replicas", 0))})
                       if g.name == hpa.group else g for g in cluster.groups)
        return cluster.model_copy(update={"groups": groups, "hpa": hpa.model_copy(update={"spec": spec.model_copy(update=upd)})})
    return cluster
