"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) controller, pure and clock-injected.

One `reconcile` call is one sync of one HPA (kube-controller-manager runs one every
`--horizontal-pod-autoscaler-sync-period`, 15 s): a replica proposal per metric (pod grouping
into ready / unready / missing / ignored, integer-truncated utilisation, the tolerance band, the
conservative second pass), the largest proposal with the rule for failed metrics, then either the
legacy normalisation (no `spec.behavior`: downscale stabilisation over the recommendation history,
scale-up cap max(2 * current, 4), min/max clamp) or the behavior path (scale-up and scale-down
stabilisation windows, Pods/Percent policies over their periods, selectPolicy), and the
bookkeeping the next sync needs (recommendations, scale events). The scale update is assumed to
succeed. Quantities are the controller's milli-units (ints); times are seconds on the caller's
clock.

Ported from kubernetes/kubernetes as of v1.35.0, the release in which the per-direction
tolerances (HPAConfigurableTolerance) are beta; read on master after that tag, where these
files had not changed in what is ported:
- pkg/controller/podautoscaler/replica_calculator.go: per-direction `Tolerances` and pod-level
  requests;
- pkg/controller/podautoscaler/horizontal.go: the context-aware 1.3x version just before the
  configurable-tolerance plumbing (same algorithm);
- pkg/controller/podautoscaler/metrics/utilization.go (GetResourceUtilizationRatio,
  GetMetricUsageRatio) and pkg/apis/autoscaling/v2/defaults.go (behavior defaults);
- the tables of replica_calculator_test.go and horizontal_test.go, transcribed in
  tests/test_policy_hpa.py.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import (BaseModel, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, field_validator,
                      model_validator)

from tuner.policies import Frozen

# horizontal.go's package variables for the legacy path (no behavior): at most
# max(factor * current, minimum) replicas after one sync.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

_FAILED_GET = {"Resource": "FailedGetResourceMetric", "Pods": "FailedGetPodsMetric",
               "Object": "FailedGetObjectMetric", "External": "FailedGetExternalMetric"}
_TARGET_TYPES = {"Resource": ("Utilization", "AverageValue"), "Pods": ("AverageValue",),
                 "Object": ("Value", "AverageValue"), "External": ("Value", "AverageValue")}


class MetricTarget(Frozen):
    """One entry of `spec.metrics`: the source, the metric (a resource name such as "cpu" for
    Resource), and the target: a percentage of the pods' requests (Utilization) or milli-units
    (AverageValue: per pod; Value: the metric as a whole)."""

    source: Literal["Resource", "Pods", "Object", "External"]
    name: str
    target_type: Literal["Utilization", "AverageValue", "Value"]
    target: PositiveInt

    @model_validator(mode="after")
    def _target_fits_source(self) -> "MetricTarget":
        allowed = _TARGET_TYPES[self.source]
        if self.target_type not in allowed:
            raise ValueError(f"target_type {self.target_type!r} is not valid for a {self.source} metric "
                             f"(allowed: {', '.join(allowed)})")
        return self


class HPAPolicy(Frozen):
    """One scaling policy: at most `value` pods (Pods) or percent (Percent) of the replicas at the
    start of the last `period_s` seconds."""

    type: Literal["Pods", "Percent"]
    value: PositiveInt
    period_s: int = Field(ge=1, le=1800)


class HPAScalingRules(Frozen):
    """`behavior.scaleUp` or `behavior.scaleDown`. Unset (None) fields take Kubernetes' defaults
    when an `HPABehavior` is built; scale-down's window stays None there, and the controller then
    uses its `--horizontal-pod-autoscaler-downscale-stabilization` (`HPASpec.downscale_stabilization_s`)."""

    stabilization_window_s: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: tuple[HPAPolicy, ...] | None = None
    tolerance: NonNegativeFloat | None = None

    @field_validator("policies")
    @classmethod
    def _some_policy(cls, policies: tuple[HPAPolicy, ...] | None) -> tuple[HPAPolicy, ...] | None:
        if policies is not None and not policies:
            raise ValueError("policies must hold at least one policy (leave it unset for the defaults)")
        return policies

    def filled(self, defaults: HPAScalingRules) -> HPAScalingRules:
        """These rules with each unset field taken from `defaults` (copyHPAScalingRules)."""
        given = {k: getattr(self, k) for k in type(self).model_fields if getattr(self, k) is not None}
        return defaults.model_copy(update=given)


_UP_DEFAULTS = HPAScalingRules(stabilization_window_s=0, select_policy="Max", policies=(
    HPAPolicy(type="Pods", value=4, period_s=15), HPAPolicy(type="Percent", value=100, period_s=15)))
_DOWN_DEFAULTS = HPAScalingRules(select_policy="Max", policies=(HPAPolicy(type="Percent", value=100, period_s=15),))


class HPABehavior(Frozen):
    """`spec.behavior`; a direction left out gets Kubernetes' default rules (API defaulting,
    which happens only when a behavior is given at all)."""

    scale_up: HPAScalingRules = _UP_DEFAULTS
    scale_down: HPAScalingRules = _DOWN_DEFAULTS

    @field_validator("scale_up")
    @classmethod
    def _fill_up(cls, rules: HPAScalingRules) -> HPAScalingRules:
        return rules.filled(_UP_DEFAULTS)

    @field_validator("scale_down")
    @classmethod
    def _fill_down(cls, rules: HPAScalingRules) -> HPAScalingRules:
        return rules.filled(_DOWN_DEFAULTS)


_DEFAULT_METRICS = (MetricTarget(source="Resource", name="cpu", target_type="Utilization", target=80),)


class HPASpec(Frozen):
    """An HPA's spec plus the controller flags that shape its decisions (kube-controller-manager
    defaults). No metrics means CPU at 80 % utilisation, as the API server defaults it.
    `min_replicas=0` is accepted as the controller handles it; the API server only allows it with
    the HPAScaleToZero gate and an Object or External metric."""

    min_replicas: NonNegativeInt = 1
    max_replicas: PositiveInt
    metrics: tuple[MetricTarget, ...] = _DEFAULT_METRICS
    behavior: HPABehavior | None = None
    tolerance: NonNegativeFloat = 0.1
    downscale_stabilization_s: NonNegativeFloat = 300.0
    cpu_initialization_period_s: NonNegativeFloat = 300.0
    initial_readiness_delay_s: NonNegativeFloat = 30.0

    @field_validator("metrics")
    @classmethod
    def _default_metrics(cls, metrics: tuple[MetricTarget, ...]) -> tuple[MetricTarget, ...]:
        return metrics or _DEFAULT_METRICS

    @model_validator(mode="after")
    def _bounds(self) -> "HPASpec":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self


class PodSample(Frozen):
    """One pod matched by the target's selector as the controller sees it (pod lister and metrics
    APIs). 0.0 for a time plays Go's zero time in Kubernetes' test fixtures."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] = "Running"
    ready: bool | None = True                    # the Ready condition's status; None: no such condition
    ready_changed_s: float = 0.0                 # that condition's lastTransitionTime
    start_s: float | None = 0.0                  # status.startTime; None: not started
    deleting: bool = False                       # has a deletionTimestamp
    requests: dict[str, int] = Field(default_factory=dict)  # resource -> the pod's request (all containers)
    metrics: dict[str, int] = Field(default_factory=dict)   # resource or Pods metric -> latest sample; absent: none
    sample_s: float = 0.0                        # timestamp of the resource sample
    sample_window_s: float = 60.0                # the window it averages over


class Observed(Frozen):
    """What one sync reads: the scale subresource, the selected pods, and the Object/External
    metric values (a name absent from the maps: the metrics API failed for it)."""

    current_replicas: NonNegativeInt             # scale.spec.replicas
    status_replicas: NonNegativeInt | None = None  # scale.status.replicas; None: the same as current
    pods: tuple[PodSample, ...] = ()
    object_metrics: dict[str, int] = Field(default_factory=dict)
    external_metrics: dict[str, tuple[int, ...]] = Field(default_factory=dict)  # every returned series

    @property
    def status(self) -> int:
        """scale.status.replicas."""
        return self.current_replicas if self.status_replicas is None else self.status_replicas


class Recommendation(Frozen):
    """A metric-based proposal as the controller stores it for stabilisation."""

    replicas: int
    at_s: float


class ScaleEvent(Frozen):
    """A replica change (absolute size) in one direction; `outdated` marks a slot free for reuse."""

    change: NonNegativeInt
    at_s: float
    outdated: bool = False


class HPAState(Frozen):
    """What the controller keeps per HPA between syncs. `recommendations` is None until the first
    sync, which records the current count (recordInitialRecommendation)."""

    recommendations: tuple[Recommendation, ...] | None = None
    up_events: tuple[ScaleEvent, ...] = ()
    down_events: tuple[ScaleEvent, ...] = ()


class MetricProposal(Frozen):
    """One metric's replica count and the usage reported in the HPA's status (milli-units; for a
    Utilization target also the integer utilisation %)."""

    replicas: int
    usage: int
    utilization: int | None = None


class MetricError(Frozen):
    """Why a metric gave no proposal: the ScalingActive reason and a message."""

    reason: str
    message: str


class MetricsOutcome(Frozen):
    """Every metric's result and the count the HPA acts on (None: no scaling this sync)."""

    replicas: int | None
    results: tuple[MetricProposal | MetricError, ...]


class PodGroups(Frozen):
    """Pod indices by how the replica calculator treats them (groupPods)."""

    ready: tuple[int, ...] = ()
    unready: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    ignored: tuple[int, ...] = ()


class Condition(Frozen):
    """An HPA status condition (type, status, reason)."""

    type: Literal["AbleToScale", "ScalingActive", "ScalingLimited"]
    status: bool
    reason: str


class Normalized(Frozen):
    """A normalisation's outcome: the count, the updated recommendations, the conditions it set."""

    replicas: int
    recommendations: tuple[Recommendation, ...]
    conditions: tuple[Condition, ...]


class HPADecision(Frozen):
    """One sync's outcome: the replica count to set (the current one when not rescaling), the
    state for the next sync, the status conditions in Kubernetes' order, each metric's result."""

    desired_replicas: int
    state: HPAState
    conditions: tuple[Condition, ...]
    metrics: tuple[MetricProposal | MetricError, ...] = ()


# ---------------------------------------------------------------- replica calculator


def tolerances(spec: HPASpec) -> tuple[float, float]:
    """(scale-down, scale-up) tolerance: a behavior direction's own where set, else the controller's."""
    if spec.behavior is None:
        return spec.tolerance, spec.tolerance
    down, up = spec.behavior.scale_down.tolerance, spec.behavior.scale_up.tolerance
    return (spec.tolerance if down is None else down), (spec.tolerance if up is None else up)


def _within(ratio: float, tol: tuple[float, float]) -> bool:
    """Tolerances.isWithin: close enough to 1 to leave the count alone."""
    return 1.0 - tol[0] <= ratio <= 1.0 + tol[1]


def _div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero; custom metrics may be negative)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _cpu_unready(pod: PodSample, spec: HPASpec, now: float) -> bool:
    """groupPods' CPU-only rule: while warming up a sample counts only from a Ready pod and once a
    full window has passed since it became Ready; later only pods never ready since start are set aside."""
    if pod.ready is None or pod.start_s is None:
        return True
    if pod.start_s + spec.cpu_initialization_period_s > now:
        return pod.ready is False or pod.sample_s < pod.ready_changed_s + pod.sample_window_s
    return pod.ready is False and pod.start_s + spec.initial_readiness_delay_s > pod.ready_changed_s


def _group(pod: PodSample, metric: MetricTarget, spec: HPASpec, now: float) -> str:
    """The group of one pod for a pod-based metric."""
    if pod.deleting or pod.phase == "Failed":
        return "ignored"
    if pod.phase == "Pending":
        return "unready"
    if metric.name not in pod.metrics:
        return "missing"
    if metric.source == "Resource" and metric.name == "cpu" and _cpu_unready(pod, spec, now):
        return "unready"
    return "ready"


def group_pods(pods: tuple[PodSample, ...], metric: MetricTarget, spec: HPASpec, now: float) -> PodGroups:
    """groupPods: which pods' samples count, which are set aside (unready, ignored), which lack one."""
    groups: dict[str, list[int]] = {"ready": [], "unready": [], "missing": [], "ignored": []}
    for i, pod in enumerate(pods):
        groups[_group(pod, metric, spec, now)].append(i)
    return PodGroups(**{k: tuple(v) for k, v in groups.items()})


def _error(metric: MetricTarget, message: str) -> MetricError:
    """A failed metric with the reason Kubernetes reports for its source."""
    return MetricError(reason=_FAILED_GET[metric.source], message=message)


def _measure(metric: MetricTarget, samples: dict[int, int], requests: list[int]) -> tuple[float, int, int | None]:
    """(usage ratio, mean usage, utilisation %) of the samples (pod index -> milli-units), with the
    integer truncations of metrics/utilization.go."""
    total = sum(samples.values())
    mean = _div(total, len(samples))
    if metric.target_type != "Utilization":
        return mean / metric.target, mean, None
    utilization = _div(total * 100, sum(requests[i] for i in samples))
    return utilization / metric.target, mean, utilization


def _conservative(samples: dict[int, int], groups: PodGroups, ratio: float, scale_down_fill: dict[int, int]) -> dict[int, int]:
    """The second pass's samples: missing pods at `scale_down_fill` on a scale-down and at 0 on a
    scale-up, unready pods at 0 on a scale-up (damping a decision made without them)."""
    filled = dict(samples)
    if ratio < 1.0:
        filled.update(scale_down_fill)
    elif ratio > 1.0:
        filled.update({i: 0 for i in (*groups.missing, *groups.unready)})
    return filled


def _rebalanced(ratio: float, new_ratio: float, pods: int, current: int, tol: tuple[float, float]) -> int:
    """The second pass's count; the current one if the change is small or would flip direction."""
    if _within(new_ratio, tol) or ratio < 1.0 < new_ratio or ratio > 1.0 > new_ratio:
        return current
    replicas = math.ceil(new_ratio * pods)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def _pod_metric_replicas(metric: MetricTarget, obs: Observed, spec: HPASpec, now: float) -> MetricProposal | MetricError:
    """GetResourceReplicas (Utilization) and calcPlainMetricReplicas (resource AverageValue, Pods)."""
    if not obs.pods:
        return _error(metric, "no pods returned by selector while calculating replica count")
    groups = group_pods(obs.pods, metric, spec, now)
    samples = {i: obs.pods[i].metrics[metric.name] for i in groups.ready}
    if not samples:
        return _error(metric, "did not receive metrics for targeted pods (pods might be unready)")
    requests: list[int] = []
    if metric.target_type == "Utilization":
        if any(metric.name not in p.requests for p in obs.pods):
            return _error(metric, f"missing request for {metric.name}")
        requests = [p.requests[metric.name] for p in obs.pods]
        if sum(requests[i] for i in samples) == 0:
            return _error(metric, "no metrics returned matched known pods")
    ratio, usage, utilization = _measure(metric, samples, requests)
    tol, current = tolerances(spec), obs.current_replicas
    if not (groups.unready and ratio > 1.0) and not groups.missing:
        replicas = current if _within(ratio, tol) else math.ceil(ratio * len(groups.ready))
        return MetricProposal(replicas=replicas, usage=usage, utilization=utilization)
    # Missing pods on a scale-down: the target (utilisation: the request, or more above 100 %).
    fill = {i: requests[i] * max(100, metric.target) // 100 if requests else metric.target for i in groups.missing}
    filled = _conservative(samples, groups, ratio, fill)
    new_ratio = _measure(metric, filled, requests)[0]
    replicas = _rebalanced(ratio, new_ratio, len(filled), current, tol)
    return MetricProposal(replicas=replicas, usage=usage, utilization=utilization)


def _value_replicas(usage: int, metric: MetricTarget, obs: Observed, tol: tuple[float, float]) -> MetricProposal | MetricError:
    """getUsageRatioReplicaCount (Value targets): usage / target times the Running and Ready pods;
    from zero replicas ceil(usage / target), tolerance ignored."""
    ratio = usage / metric.target
    if obs.current_replicas == 0:
        return MetricProposal(replicas=math.ceil(ratio), usage=usage)
    if _within(ratio, tol):
        return MetricProposal(replicas=obs.current_replicas, usage=usage)
    if not obs.pods:
        return _error(metric, "unable to calculate ready pods: no pods returned by selector")
    ready = sum(1 for p in obs.pods if p.phase == "Running" and p.ready is True)
    return MetricProposal(replicas=math.ceil(ratio * ready), usage=usage)


def _average_value_replicas(usage: int, metric: MetricTarget, obs: Observed, tol: tuple[float, float]) -> MetricProposal:
    """Get{Object,External}PerPodMetricReplicas: ceil(usage / per-pod target), judged against the
    scale's status replicas; the status shows usage per status replica."""
    status = obs.status
    # Go's float division: +Inf (or NaN) with no status replicas, which is never within tolerance.
    ratio = usage / (metric.target * status) if status else (math.inf if usage else math.nan)
    replicas = status if _within(ratio, tol) else math.ceil(usage / metric.target)
    return MetricProposal(replicas=replicas, usage=math.ceil(usage / status) if status else usage)


def _source_usage(metric: MetricTarget, obs: Observed) -> int | None:
    """An Object metric's value or the sum of an External metric's series; None if unavailable."""
    if metric.source == "Object":
        return obs.object_metrics.get(metric.name)
    series = obs.external_metrics.get(metric.name)
    return sum(series) if series else None  # the client treats an empty list as an error


def replicas_for_metric(metric: MetricTarget, observed: Observed, spec: HPASpec, now: float) -> MetricProposal | MetricError:
    """One metric's replica proposal (the ReplicaCalculator), or why it has none."""
    if metric.source in ("Resource", "Pods"):
        return _pod_metric_replicas(metric, observed, spec, now)
    usage = _source_usage(metric, observed)
    if usage is None:
        return _error(metric, f"unable to get {metric.source.lower()} metric {metric.name}")
    if metric.target_type == "Value":
        return _value_replicas(usage, metric, observed, tolerances(spec))
    return _average_value_replicas(usage, metric, observed, tolerances(spec))


def replicas_for_metrics(spec: HPASpec, observed: Observed, now: float) -> MetricsOutcome:
    """computeReplicasForMetrics: the largest proposal; none if every metric failed, or if one
    failed and the others would scale below the current count."""
    results = tuple(replicas_for_metric(m, observed, spec, now) for m in spec.metrics)
    proposals = [r.replicas for r in results if isinstance(r, MetricProposal)]
    replicas = max(proposals, default=0)
    if not proposals or (len(proposals) < len(results) and replicas < observed.current_replicas):
        return MetricsOutcome(replicas=None, results=results)
    return MetricsOutcome(replicas=replicas, results=results)


# ---------------------------------------------------------------- normalisation


def _store(items: tuple, new: BaseModel, expired) -> tuple:
    """Put `new` in the slot of the last expired item, else append it (the controller's reuse)."""
    slots = [i for i, item in enumerate(items) if expired(item)]
    if not slots:
        return (*items, new)
    return (*items[:slots[-1]], new, *items[slots[-1] + 1:])


def stabilize_legacy(recommendations: tuple[Recommendation, ...], desired: int, window_s: float,
                     now: float) -> tuple[int, tuple[Recommendation, ...]]:
    """stabilizeRecommendation: the highest proposal not older than `window_s` (this one
    included), and the history with this proposal stored."""
    cutoff = now - window_s
    stabilized = max([desired, *(r.replicas for r in recommendations if not r.at_s < cutoff)])
    return stabilized, _store(recommendations, Recommendation(replicas=desired, at_s=now), lambda r: r.at_s < cutoff)


def limit_legacy(current: int, desired: int, min_replicas: int, max_replicas: int, *,
                 factor: float = SCALE_UP_LIMIT_FACTOR, minimum: float = SCALE_UP_LIMIT_MINIMUM) -> tuple[int, str]:
    """convertDesiredReplicasWithRules: clamp to [min, min(max, max(factor * current, minimum))];
    returns the count and the ScalingLimited reason."""
    up_limit = int(max(factor * current, minimum))
    ceiling, reason = (up_limit, "ScaleUpLimit") if max_replicas > up_limit else (max_replicas, "TooManyReplicas")
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > ceiling:
        return ceiling, reason
    return desired, "DesiredWithinRange"


def normalize_legacy(spec: HPASpec, current: int, desired: int, recommendations: tuple[Recommendation, ...],
                     now: float) -> Normalized:
    """normalizeDesiredReplicas (no behavior): downscale stabilisation, then the legacy limits."""
    stabilized, recs = stabilize_legacy(recommendations, desired, spec.downscale_stabilization_s, now)
    replicas, limited = limit_legacy(current, stabilized, spec.min_replicas, spec.max_replicas)
    able = "ScaleDownStabilized" if stabilized != desired else "ReadyForNewScale"
    return Normalized(replicas=replicas, recommendations=recs, conditions=(
        Condition(type="AbleToScale", status=True, reason=able),
        Condition(type="ScalingLimited", status=replicas != stabilized, reason=limited)))


def stabilize_with_behavior(recommendations: tuple[Recommendation, ...], current: int, desired: int, up_window_s: float,
                            down_window_s: float, now: float) -> tuple[int, tuple[Recommendation, ...], str]:
    """stabilizeRecommendationWithBehaviors: move the current count toward the proposal no further
    than the lowest proposal of the scale-up window (going up) or the highest of the scale-down
    window (going down); store the proposal; return the count, the history and the reason."""
    up_cutoff, down_cutoff = now - up_window_s, now - down_window_s
    up = min([desired, *(r.replicas for r in recommendations if r.at_s > up_cutoff)])
    down = max([desired, *(r.replicas for r in recommendations if r.at_s > down_cutoff)])
    recs = _store(recommendations, Recommendation(replicas=desired, at_s=now),
                  lambda r: r.at_s < up_cutoff and r.at_s < down_cutoff)
    reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
    return min(max(current, up), down), recs, reason


def replicas_changed(events: tuple[ScaleEvent, ...], period_s: float, now: float) -> int:
    """getReplicasChangePerPeriod: replicas changed by the events of the last `period_s`."""
    return sum(e.change for e in events if e.at_s > now - period_s)


def _period_start(current: int, policy: HPAPolicy, up_events: tuple[ScaleEvent, ...],
                  down_events: tuple[ScaleEvent, ...], now: float) -> int:
    """The replica count at the start of the policy's period."""
    return current - replicas_changed(up_events, policy.period_s, now) + replicas_changed(down_events, policy.period_s, now)


def scale_up_limit(current: int, up_events: tuple[ScaleEvent, ...], down_events: tuple[ScaleEvent, ...],
                   rules: HPAScalingRules, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the (filled) scale-up rules allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = _period_start(current, p, up_events, down_events, now)
        # Percent rounds up, or a small count could never grow.
        proposals.append(start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100)))
    return (min if rules.select_policy == "Min" else max)(proposals)


def scale_down_limit(current: int, up_events: tuple[ScaleEvent, ...], down_events: tuple[ScaleEvent, ...],
                     rules: HPAScalingRules, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the (filled) scale-down rules allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = _period_start(current, p, up_events, down_events, now)
        proposals.append(start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100)))
    # "Max" selects the largest change, i.e. the fewest replicas.
    return (max if rules.select_policy == "Min" else min)(proposals)


def limit_with_behavior(spec: HPASpec, current: int, desired: int, state: HPAState, now: float) -> tuple[int, str]:
    """convertDesiredReplicasWithBehaviorRate: hold the count within the policies' rate (never
    past the current count) and min/max; returns the count and the ScalingLimited reason."""
    b = spec.behavior
    if desired > current:
        limit = max(scale_up_limit(current, state.up_events, state.down_events, b.scale_up, now), current)
        ceiling, reason = (limit, "ScaleUpLimit") if spec.max_replicas > limit else (spec.max_replicas, "TooManyReplicas")
        return (ceiling, reason) if desired > ceiling else (desired, "DesiredWithinRange")
    if desired < current:
        limit = min(scale_down_limit(current, state.up_events, state.down_events, b.scale_down, now), current)
        floor, reason = (limit, "ScaleDownLimit") if spec.min_replicas < limit else (spec.min_replicas, "TooFewReplicas")
        return (floor, reason) if desired < floor else (desired, "DesiredWithinRange")
    return desired, "DesiredWithinRange"


def normalize_with_behavior(spec: HPASpec, current: int, desired: int, state: HPAState, now: float) -> Normalized:
    """normalizeDesiredReplicasWithBehaviors: both stabilisation windows, then the rate policies."""
    b = spec.behavior
    down_window = b.scale_down.stabilization_window_s
    down_window = spec.downscale_stabilization_s if down_window is None else down_window
    stabilized, recs, reason = stabilize_with_behavior(state.recommendations or (), current, desired,
                                                       b.scale_up.stabilization_window_s, down_window, now)
    replicas, limited = limit_with_behavior(spec, current, stabilized, state, now)
    return Normalized(replicas=replicas, recommendations=recs, conditions=(
        Condition(type="AbleToScale", status=True, reason=reason if stabilized != desired else "ReadyForNewScale"),
        Condition(type="ScalingLimited", status=replicas != stabilized, reason=limited)))


def _stored_event(rules: HPAScalingRules, events: tuple[ScaleEvent, ...], change: int, now: float) -> tuple[ScaleEvent, ...]:
    """Mark events older than the rules' longest policy period outdated; record `change` in the
    last outdated slot, else append."""
    cutoff = now - max(p.period_s for p in rules.policies)
    marked = tuple(e.model_copy(update={"outdated": True}) if e.at_s < cutoff else e for e in events)
    return _store(marked, ScaleEvent(change=change, at_s=now), lambda e: e.outdated)


def store_scale_event(behavior: HPABehavior | None, state: HPAState, current: int, desired: int, now: float) -> HPAState:
    """storeScaleEvent: remember a rescale for the rate policies (only with a behavior)."""
    if behavior is None:
        return state
    if desired > current:
        events = _stored_event(behavior.scale_up, state.up_events, desired - current, now)
        return state.model_copy(update={"up_events": events})
    events = _stored_event(behavior.scale_down, state.down_events, current - desired, now)
    return state.model_copy(update={"down_events": events})


# ---------------------------------------------------------------- one sync


def _merged(conditions: list[Condition]) -> tuple[Condition, ...]:
    """setConditionInList: one condition per type, the latest wins, first-set order kept."""
    by_type: dict[str, Condition] = {}
    for c in conditions:
        by_type[c.type] = c
    return tuple(by_type.values())


def _from_metrics(spec: HPASpec, observed: Observed, state: HPAState,
                  now: float) -> tuple[int | None, HPAState, list[Condition], tuple[MetricProposal | MetricError, ...]]:
    """The metric-driven branch: proposals, then the normalisation for the spec's path."""
    outcome = replicas_for_metrics(spec, observed, now)
    if outcome.replicas is None:
        failed = next(r for r in outcome.results if isinstance(r, MetricError))
        return None, state, [Condition(type="ScalingActive", status=False, reason=failed.reason)], outcome.results
    desired = max(outcome.replicas, 0)  # a negative custom metric never asks for fewer than 0
    current = observed.current_replicas
    norm = (normalize_legacy(spec, current, desired, state.recommendations, now) if spec.behavior is None
            else normalize_with_behavior(spec, current, desired, state, now))
    state = state.model_copy(update={"recommendations": norm.recommendations})
    active = Condition(type="ScalingActive", status=True, reason="ValidMetricFound")
    return norm.replicas, state, [active, *norm.conditions], outcome.results


def reconcile(spec: HPASpec, observed: Observed, state: HPAState, now: float) -> HPADecision:
    """One sync of one HPA (reconcileAutoscaler), with the scale update assumed to succeed."""
    current = observed.current_replicas
    if state.recommendations is None:
        state = state.model_copy(update={"recommendations": (Recommendation(replicas=current, at_s=now),)})
    conditions = [Condition(type="AbleToScale", status=True, reason="SucceededGetScale")]
    results: tuple[MetricProposal | MetricError, ...] = ()
    if current == 0 and spec.min_replicas != 0:  # a target scaled to 0 by hand is left alone
        desired = None
        conditions.append(Condition(type="ScalingActive", status=False, reason="ScalingDisabled"))
    elif current > spec.max_replicas:
        desired = spec.max_replicas
    elif current < spec.min_replicas:
        desired = spec.min_replicas
    else:
        desired, state, more, results = _from_metrics(spec, observed, state, now)
        conditions += more
    if desired is None or desired == current:
        return HPADecision(desired_replicas=current, state=state, conditions=_merged(conditions), metrics=results)
    state = store_scale_event(spec.behavior, state, current, desired, now)
    conditions.append(Condition(type="AbleToScale", status=True, reason="SucceededRescale"))
    return HPADecision(desired_replicas=desired, state=state, conditions=_merged(conditions), metrics=results)
