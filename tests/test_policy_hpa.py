"""tuner.policies.hpa against Kubernetes' own HPA tests: cases transcribed from kubernetes/kubernetes
pkg/controller/podautoscaler/replica_calculator_test.go and horizontal_test.go as of v1.35.0
(the versions with the HPAConfigurableTolerance tests, as tuner/policies/hpa.py says), each
named after its Go test (a table row as "TestName/row name"), plus
properties over random specs and load sequences.

Fixtures follow the Go fake clients: quantities in milli-units, times relative to a fixed NOW,
0.0 standing for Go's zero time (long before NOW)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tuner.policies.hpa import (
    HPABehavior, HPAPolicy, HPAScalingRules, HPASpec, HPAState, MetricError, MetricTarget,
    Observed, PodSample, Recommendation, ScaleEvent, group_pods, limit_legacy, limit_with_behavior, reconcile,
    replicas_changed, replicas_for_metric, replicas_for_metrics, scale_down_limit, scale_up_limit, stabilize_legacy,
    stabilize_with_behavior, store_scale_event,
)

NOW = 1_000_000.0
HOT, COOL = NOW, NOW - 180.0          # hotCPUCreationTime(), coolCPUCreationTime()
MIN = 60.0
# defaultTestingTolerance, defaultTestingCPUInitializationPeriod, defaultTestingDelayOfInitialReadinessStatus
TESTING = dict(tolerance=0.1, cpu_initialization_period_s=120.0, initial_readiness_delay_s=10.0)

F, T = False, True


def cpu_util(target: int) -> MetricTarget:
    return MetricTarget(source="Resource", name="cpu", target_type="Utilization", target=target)


def qps(target: int) -> MetricTarget:
    return MetricTarget(source="Pods", name="qps", target_type="AverageValue", target=target)


def obj(target_type: str, target: int) -> MetricTarget:
    return MetricTarget(source="Object", name="qps", target_type=target_type, target=target)


def ext(target_type: str, target: int) -> MetricTarget:
    return MetricTarget(source="External", name="qps", target_type=target_type, target=target)


def spec(max_replicas: int = 100, min_replicas: int = 1, metrics=(), tol: tuple[float, float] | None = None, **kw) -> HPASpec:
    """A spec with the Go tests' controller settings; `tol` = Tolerances{scaleDown, scaleUp}."""
    if tol is not None:
        kw["behavior"] = HPABehavior(scale_down=HPAScalingRules(tolerance=tol[0]), scale_up=HPAScalingRules(tolerance=tol[1]))
    return HPASpec(min_replicas=min_replicas, max_replicas=max_replicas, metrics=metrics, **{**TESTING, **kw})


# ------------------------------------------------------------ replica_calculator_test.go

def rc_pods(current: int, requests=(), levels=(), metric: str = "cpu", readiness=(), start=(), phase=(), deleting=()):
    """Pods as replicaCalcTestCase.prepareTestClientSet and its metrics clients build them:
    max(currentReplicas, len(podPhase)) pods, two containers each requesting requests[i] (so the
    pod requests twice that), resource levels per container (makePodMetricLevels: the pod uses
    twice the level), custom levels per pod; Ready lastTransitionTime and sample timestamp left at
    the zero time, one-minute windows."""
    pods = []
    for i in range(max(current, len(phase))):
        sample = {} if i >= len(levels) else {metric: 2 * levels[i] if metric == "cpu" else levels[i]}
        pods.append(PodSample(
            phase=phase[i] if phase else "Running", ready=readiness[i] if i < len(readiness) else True,
            start_s=start[i] if start else 0.0, deleting=deleting[i] if deleting else False,
            requests={"cpu": 2 * requests[i]} if i < len(requests) else {}, metrics=sample))
    return tuple(pods)


R1000 = (1000,) * 7

RESOURCE_CASES = [
    # current, per-container requests, per-container levels, target %, pod fields -> (replicas, utilization, raw value)
    pytest.param(3, R1000[:3], (300, 500, 700), 30, {}, (5, 50, 2 * 500), id="TestReplicaCalcScaleUp"),
    pytest.param(3, R1000[:3], (300, 500, 700), 30, dict(readiness=(F, T, T)), (4, 60, 2 * 600),
                 id="TestReplicaCalcScaleUpUnreadyLessScale"),
    pytest.param(3, R1000[:3], (300, 500, 700), 30, dict(start=(HOT, COOL, COOL)), (4, 60, 2 * 600),
                 id="TestReplicaCalcScaleUpHotCpuLessScale"),
    pytest.param(3, R1000[:3], (400, 500, 700), 30, dict(readiness=(T, F, F)), (3, 40, 2 * 400),
                 id="TestReplicaCalcScaleUpUnreadyNoScale"),
    pytest.param(3, R1000[:3], (400, 500, 700), 30, dict(readiness=(T, F, F), start=(COOL, HOT, HOT)), (3, 40, 2 * 400),
                 id="TestReplicaCalcScaleHotCpuNoScale"),
    pytest.param(2, R1000[:4], (500, 700), 30, dict(readiness=(T, T, F, F), phase=("Running", "Running", "Failed", "Failed")),
                 (4, 60, 2 * 600), id="TestReplicaCalcScaleUpIgnoresFailedPods"),
    pytest.param(2, R1000[:4], (500, 700), 30, dict(readiness=(T, T, F, F), phase=("Running",) * 4, deleting=(F, F, T, T)),
                 (4, 60, 2 * 600), id="TestReplicaCalcScaleUpIgnoresDeletionPods"),
    pytest.param(5, R1000[:5], (100, 300, 500, 250, 250), 50, {}, (3, 28, 2 * 280), id="TestReplicaCalcScaleDown"),
    pytest.param(5, R1000[:5], (100, 300, 500, 250, 250), 50, dict(readiness=(T, T, T, F, F)), (2, 30, 2 * 300),
                 id="TestReplicaCalcScaleDownExcludeUnreadyPods"),
    pytest.param(5, R1000[:5], (100,), 50, dict(readiness=(T, F, F, F, F), phase=("Running",) + ("Pending",) * 4),
                 (1, 10, 2 * 100), id="TestReplicaCalcScaleDownExcludeUnscheduledPods"),
    pytest.param(5, R1000[:5], (100, 300, 500, 250, 250), 50, dict(start=(COOL, COOL, COOL, HOT, HOT)), (2, 30, 2 * 300),
                 id="TestReplicaCalcScaleDownIgnoreHotCpuPods"),
    pytest.param(5, R1000[:7], (100, 300, 500, 250, 250), 50,
                 dict(readiness=(T,) * 5 + (F, F), phase=("Running",) * 5 + ("Failed",) * 2), (3, 28, 2 * 280),
                 id="TestReplicaCalcScaleDownIgnoresFailedPods"),
    pytest.param(5, R1000[:7], (100, 300, 500, 250, 250), 50,
                 dict(readiness=(T,) * 5 + (F, F), phase=("Running",) * 7, deleting=(F,) * 5 + (T, T)), (3, 28, 2 * 280),
                 id="TestReplicaCalcScaleDownIgnoresDeletionPods"),
    pytest.param(3, (900, 1000, 1100), (1010, 1030, 1020), 100, {}, (3, 102, 2 * 1020), id="TestReplicaCalcTolerance"),
    pytest.param(4, R1000[:4], (400, 95), 100, {}, (3, 24, 495), id="TestReplicaCalcMissingMetrics"),
    pytest.param(2, R1000[:2], (1000,), 100, {}, (2, 100, 2 * 1000), id="TestReplicaCalcMissingMetricsNoChangeEq"),
    pytest.param(2, R1000[:2], (1900,), 100, {}, (2, 190, 2 * 1900), id="TestReplicaCalcMissingMetricsNoChangeGt"),
    pytest.param(2, R1000[:2], (600,), 100, {}, (2, 60, 2 * 600), id="TestReplicaCalcMissingMetricsNoChangeLt"),
    pytest.param(3, R1000[:3], (100, 450), 50, dict(readiness=(F, T, T)), (3, 45, 2 * 450),
                 id="TestReplicaCalcMissingMetricsUnreadyChange"),
    pytest.param(3, R1000[:3], (100, 450), 50, dict(start=(HOT, COOL, COOL)), (3, 45, 2 * 450),
                 id="TestReplicaCalcMissingMetricsHotCpuNoChange"),
    pytest.param(3, R1000[:3], (100, 2000), 50, dict(readiness=(F, T, T)), (4, 200, 2 * 2000),
                 id="TestReplicaCalcMissingMetricsUnreadyScaleUp"),
    pytest.param(3, R1000[:3], (100, 2000), 50, dict(readiness=(F, T, T), start=(HOT, COOL, COOL)), (4, 200, 2 * 2000),
                 id="TestReplicaCalcMissingMetricsHotCpuScaleUp"),
    pytest.param(4, R1000[:4], (100, 100, 100), 50, dict(readiness=(F, T, T, T)), (3, 10, 2 * 100),
                 id="TestReplicaCalcMissingMetricsUnreadyScaleDown"),
    pytest.param(4, (1000, 1000, 2000, 2000), (200, 100, 100), 300, dict(readiness=(F, T, T, T)), (2, 6, 2 * 100),
                 id="TestReplicaCalcMissingMetricsScaleDownTargetOver100"),
    pytest.param(2, R1000[:3], (100, 100), 50, dict(phase=("Running",) * 3), (2, 10, 2 * 100),
                 id="TestReplicaCalcDuringRollingUpdateWithMaxSurge"),
]


@pytest.mark.parametrize("current,requests,levels,target,pod_fields,expected", RESOURCE_CASES)
def test_resource_utilization_matches_replica_calculator_test(current, requests, levels, target, pod_fields, expected):
    # replica_calculator_test.go (GetResourceReplicas, CPU)
    observed = Observed(current_replicas=current, pods=rc_pods(current, requests, levels, **pod_fields))
    got = replicas_for_metric(cpu_util(target), observed, spec(), NOW)
    assert (got.replicas, got.utilization, got.usage) == expected


def test_computed_tolerance_alg_implementation():
    # replica_calculator_test.go TestReplicaCalcComputedToleranceAlgImplementation (same expressions)
    start_pods, used = 10, 10 * 150
    requested = 2 * used
    requested_to_used = float(requested // used)
    per_pod = requested // start_pods
    target = abs(1 / (requested_to_used * (1 - 0.1))) + .01
    final_pods = math.ceil(used / (requested * target) * start_pods)
    requests = tuple(per_pod + d for d in (100, -100, 10, -10, 2, -2, 1, -1, 0, 0))
    observed = Observed(current_replicas=start_pods, pods=rc_pods(start_pods, requests, (used // 10,) * 10))
    got = replicas_for_metric(cpu_util(int(target * 100)), observed, spec(), NOW)
    assert (got.replicas, got.utilization, got.usage) == (final_pods, used * 100 // requested, 2 * used // 10) == (9, 50, 300)
    near = abs(1 / (requested_to_used * (1 - 0.1))) + .004   # within the tolerance: no scaling
    assert replicas_for_metric(cpu_util(int(near * 100)), observed, spec(), NOW).replicas == start_pods


CONFIGURABLE_TOLERANCE = [
    # Tolerances{scaleDown, scaleUp}, per-container requests, levels -> (replicas, utilization); target 100 %, 3 pods
    pytest.param((0.0, 0.0), (909, 1010, 1111), (4, 101), id="TestReplicaCalcConfigurableTolerance/Outside of a 0% tolerance"),
    pytest.param((0.1, 2.0), (1890, 1910, 1900), (3, 190),
                 id="TestReplicaCalcConfigurableTolerance/Within a 200% scale-up tolerance"),
    pytest.param((2.0, .08), (1100, 1080, 1090), (4, 109),
                 id="TestReplicaCalcConfigurableTolerance/Outside 8% scale-up tolerance (and superfuous scale-down tolerance)"),
    pytest.param((.36, 0.1), (660, 640, 650), (3, 65),
                 id="TestReplicaCalcConfigurableTolerance/Within a 36% scale-down tolerance"),
    pytest.param((.34, 0.1), (660, 640, 650), (2, 65),
                 id="TestReplicaCalcConfigurableTolerance/Outside a 34% scale-down tolerance"),
]


@pytest.mark.parametrize("tol,levels,expected", CONFIGURABLE_TOLERANCE)
def test_configurable_tolerance_matches_replica_calculator_test(tol, levels, expected):
    # replica_calculator_test.go (newest version, with Tolerances)
    observed = Observed(current_replicas=3, pods=rc_pods(3, (900, 1000, 1100), levels))
    got = replicas_for_metric(cpu_util(100), observed, spec(tol=tol), NOW)
    assert (got.replicas, got.utilization) == expected


METRIC_CASES = [
    # metric, current, levels (per pod; Object: the value; External: the series), pod fields, tolerances -> (replicas, usage)
    pytest.param(qps(15000), 3, (20000, 10000, 30000), {}, None, (4, 20000), id="TestReplicaCalcScaleUpCM"),
    pytest.param(qps(15000), 3, (50000, 10000, 30000), dict(readiness=(T, T, F), start=(COOL, COOL, HOT)), None, (6, 30000),
                 id="TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale"),
    pytest.param(qps(15000), 3, (50000, 15000, 30000), dict(readiness=(F, T, F), start=(HOT, COOL, HOT)), None, (7, 31666),
                 id="TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown"),
    # Kubernetes' own case runs a pods metric despite its name.
    pytest.param(qps(4400), 1, (8600,), {}, None, (2, 8600), id="TestReplicaCalcScaleUpCMExternal"),
    pytest.param(qps(20000), 5, (12000,) * 5, {}, None, (3, 12000), id="TestReplicaCalcScaleDownCM"),
    pytest.param(qps(20000), 3, (20000, 21000, 21000), {}, None, (3, 20666), id="TestReplicaCalcToleranceCM"),
    pytest.param(qps(20000), 5, (20000, 19000, 21000), {}, None, (5, 20000),
                 id="TestPlainMetricReplicaCalcMissingMetricsNoChangeEq"),
    pytest.param(qps(17000), 2, (10000, 10000), dict(phase=("Running",) * 3), None, (2, 10000),
                 id="TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM"),
    pytest.param(qps(20000), 3, (20000, 21000, 21000), {}, (0.1, .01), (4, 20666), id="TestReplicaCalcConfigurableToleranceCM"),
    pytest.param(obj("Value", 15000), 3, (20000,), {}, None, (4, 20000), id="TestReplicaCalcScaleUpCMObject"),
    pytest.param(obj("AverageValue", 5000), 3, (20000,), {}, None, (4, 6667), id="TestReplicaCalcScaleUpCMPerPodObject"),
    pytest.param(obj("Value", 10000), 3, (50000,), dict(readiness=(F, T, F)), None, (5, 50000),
                 id="TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods"),
    pytest.param(obj("AverageValue", 2000), 5, (6000,), {}, None, (3, 1200), id="TestReplicaCalcScaleDownPerPodCMObject"),
    pytest.param(obj("Value", 20000), 5, (12000,), {}, None, (3, 12000), id="TestReplicaCalcScaleDownCMObject"),
    pytest.param(obj("Value", 20000), 3, (20666,), {}, None, (3, 20666), id="TestReplicaCalcToleranceCMObject"),
    pytest.param(obj("AverageValue", 5000), 4, (20166,), {}, None, (4, 5042), id="TestReplicaCalcTolerancePerPodCMObject"),
    pytest.param(obj("Value", 20000), 3, (20666,), {}, (0.1, .01), (4, 20666),
                 id="TestReplicaCalcConfigurableToleranceCMObject"),
    pytest.param(obj("AverageValue", 5000), 4, (20208,), {}, (0.1, .01), (5, 5052),
                 id="TestReplicaCalcConfigurableTolerancePerPodCMObject"),
    pytest.param(ext("Value", 4400), 3, (8600,), dict(readiness=(F, T, F)), None, (2, 8600),
                 id="TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods"),
    pytest.param(ext("AverageValue", 2150), 3, (8600,), {}, None, (4, 2867), id="TestReplicaCalcScaleUpPerPodCMExternal"),
    pytest.param(ext("Value", 14334), 5, (8600,), {}, None, (3, 8600), id="TestReplicaCalcScaleDownCMExternal"),
    pytest.param(ext("AverageValue", 2867), 5, (8600,), {}, None, (3, 1720), id="TestReplicaCalcScaleDownPerPodCMExternal"),
    pytest.param(ext("Value", 8888), 3, (8600,), {}, None, (3, 8600), id="TestReplicaCalcToleranceCMExternal"),
    pytest.param(ext("AverageValue", 2900), 3, (8600,), {}, None, (3, 2867), id="TestReplicaCalcTolerancePerPodCMExternal"),
    pytest.param(ext("Value", 8800), 3, (8900,), {}, (0.1, .01), (4, 8900),
                 id="TestReplicaCalcConfigurableToleranceCMExternal"),
    pytest.param(ext("AverageValue", 2800), 3, (8600,), {}, (0.1, .01), (4, 2867),
                 id="TestReplicaCalcConfigurableTolerancePerPodCMExternal"),
]


@pytest.mark.parametrize("metric,current,levels,pod_fields,tol,expected", METRIC_CASES)
def test_metrics_match_replica_calculator_test(metric, current, levels, pod_fields, tol, expected):
    # replica_calculator_test.go (GetMetricReplicas, GetObject[PerPod]MetricReplicas, GetExternal[PerPod]MetricReplicas)
    pod_levels = levels if metric.source == "Pods" else ()
    observed = Observed(current_replicas=current, pods=rc_pods(current, levels=pod_levels, metric="qps", **pod_fields),
                        object_metrics={"qps": levels[0]}, external_metrics={"qps": levels})
    got = replicas_for_metric(metric, observed, spec(tol=tol), NOW)
    assert (got.replicas, got.usage) == expected


@pytest.mark.parametrize("current,requests,levels", [
    pytest.param(4, R1000[:3], (), id="TestReplicaCalcEmptyMetrics"),
    pytest.param(1, (), (200,), id="TestReplicaCalcEmptyCPURequest"),
])
def test_resource_errors_match_replica_calculator_test(current, requests, levels):
    # replica_calculator_test.go: no samples at all, or a pod without a CPU request, is an error
    observed = Observed(current_replicas=current, pods=rc_pods(current, requests, levels))
    got = replicas_for_metric(cpu_util(100), observed, spec(), NOW)
    assert isinstance(got, MetricError) and got.reason == "FailedGetResourceMetric"


def gp(name, phase="Succeeded", ready=None, changed=0.0, start=None, sample=None, window=0.0, metric="cpu"):
    """A TestGroupPods pod: its name, and whether `metrics` holds a sample for it (`sample`: its timestamp)."""
    pod = PodSample(phase=phase, ready=ready, ready_changed_s=changed, start_s=start, deleting=name == "deleted",
                    metrics={} if sample is None else {metric: 1}, sample_s=sample or 0.0, sample_window_s=window)
    return name, pod


GROUP_PODS = [
    # pods, resource -> (ready count, unready, missing, ignored)
    pytest.param([], "cpu", (0, set(), set(), set()), id="TestGroupPods/void"),
    pytest.param([gp("bentham", sample=NOW, window=MIN, metric="memory")], "memory", (1, set(), set(), set()),
                 id="TestGroupPods/count in a ready pod - memory"),
    pytest.param([gp("lucretius", start=NOW, sample=0.0)], "cpu", (0, {"lucretius"}, set(), set()),
                 id="TestGroupPods/unready a pod without ready condition - CPU"),
    pytest.param([gp("bentham", start=NOW - MIN, ready=T, changed=NOW - 30, sample=NOW, window=30)], "cpu",
                 (1, set(), set(), set()),
                 id="TestGroupPods/count in a ready pod with fresh metrics during initialization period - CPU"),
    pytest.param([gp("bentham", start=NOW - MIN, ready=T, changed=NOW - 30, sample=NOW, window=MIN)], "cpu",
                 (0, {"bentham"}, set(), set()),
                 id="TestGroupPods/unready a ready pod without fresh metrics during initialization period - CPU"),
    pytest.param([gp("lucretius", start=NOW - 600, ready=F, changed=NOW - 594, sample=0.0)], "cpu",
                 (0, {"lucretius"}, set(), set()),
                 id="TestGroupPods/unready an unready pod during initialization period - CPU"),
    pytest.param([gp("bentham", start=NOW - 180, ready=T, changed=NOW - 180, sample=NOW - 120, window=MIN)], "cpu",
                 (1, set(), set(), set()),
                 id="TestGroupPods/count in a ready pod without fresh metrics after initialization period - CPU"),
    pytest.param([gp("lucretius", start=NOW - 600, ready=F, changed=NOW - 540, sample=0.0)], "cpu", (1, set(), set(), set()),
                 id="TestGroupPods/count in an unready pod that was ready after initialization period - CPU"),
    pytest.param([gp("lucretius", start=NOW - 600, ready=F, changed=NOW - 590, sample=0.0)], "cpu", (1, set(), set(), set()),
                 id="TestGroupPods/unready pod that has never been ready after initialization period - CPU"),
    pytest.param([gp("epicurus", start=NOW - 180)], "cpu", (0, set(), {"epicurus"}, set()), id="TestGroupPods/a missing pod"),
    pytest.param([gp("lucretius", start=NOW, sample=0.0),
                  gp("niccolo", start=NOW - 180, ready=T, changed=NOW - 180, sample=0.0),
                  gp("epicurus", start=NOW - 180)], "cpu", (1, {"lucretius"}, {"epicurus"}, set()),
                  id="TestGroupPods/several pods"),
    pytest.param([gp("unscheduled", phase="Pending")], "cpu", (0, {"unscheduled"}, set(), set()),
                 id="TestGroupPods/pending pods are unreadied"),
    pytest.param([gp("deleted", phase="Pending", sample=0.0)], "cpu", (0, set(), set(), {"deleted"}),
                 id="TestGroupPods/ignore pods with deletion timestamps"),
    pytest.param([gp("failed", phase="Failed", sample=0.0)], "cpu", (0, set(), set(), {"failed"}),
                 id="TestGroupPods/ignore pods in a failed state"),
]


@pytest.mark.parametrize("named,resource,expected", GROUP_PODS)
def test_group_pods_matches_replica_calculator_test(named, resource, expected):
    # replica_calculator_test.go TestGroupPods
    names = [n for n, _ in named]
    metric = MetricTarget(source="Resource", name=resource, target_type="Utilization", target=50)
    g = group_pods(tuple(p for _, p in named), metric, spec(), NOW)
    named_groups = ({names[i] for i in group} for group in (g.unready, g.missing, g.ignored))
    assert (len(g.ready), *named_groups) == expected


# ------------------------------------------------------------ horizontal_test.go: whole syncs

def hz_pods(count: int, levels=(), requests=(), readiness=(), start=(), phase=(), deleting=()):
    """Pods as horizontal_test.go's testCase.prepareTestClient builds them: one per reported CPU
    request (else statusReplicas of them, requesting 1.0), each request split over two containers
    (MilliValue()/2 each), each container using half the reported level (integer division), a
    sample stamped now with a one-minute window, Ready lastTransitionTime = start time; the same
    levels serve the "qps" pods metric."""
    pods = []
    for i in range(len(requests) or count):
        at = start[i] if start else 0.0
        sample = {} if i >= len(levels) else {"cpu": 2 * (levels[i] // 2), "qps": levels[i]}
        pods.append(PodSample(
            phase=phase[i] if phase else "Running", ready=readiness[i] if readiness else True, ready_changed_s=at,
            start_s=at, deleting=deleting[i] if deleting else False,
            requests={"cpu": 2 * ((requests[i] if requests else 1000) // 2)}, metrics=sample, sample_s=NOW))
    return tuple(pods)


def status_ok(*overrides: tuple[str, bool, str]) -> tuple[tuple[str, bool, str], ...]:
    """statusOkWithOverrides."""
    conditions = {"AbleToScale": (T, "SucceededRescale"), "ScalingActive": (T, "ValidMetricFound"),
                  "ScalingLimited": (F, "DesiredWithinRange")}
    for kind, status, reason in overrides:
        conditions[kind] = (status, reason)
    return tuple((k, s, r) for k, (s, r) in conditions.items())


def generate_scaling_rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> HPAScalingRules:
    """generateScalingRules (no policy given: the defaults fill them in)."""
    policies = ([HPAPolicy(type="Pods", value=pods, period_s=pods_period)] if pods else []) + \
               ([HPAPolicy(type="Percent", value=percent, period_s=percent_period)] if percent else [])
    return HPAScalingRules(stabilization_window_s=window, select_policy="Max", policies=tuple(policies) or None)


REQ3 = (1000, 1000, 1000)
REQ5 = (1000,) * 5
REQ7 = (1000,) * 7
SMALL = (900, 1000, 1100)
OK = status_ok()
READY_FOR_NEW_SCALE = status_ok(("AbleToScale", T, "ReadyForNewScale"))
TOO_MANY = status_ok(("ScalingLimited", T, "TooManyReplicas"))
TOO_FEW = status_ok(("ScalingLimited", T, "TooFewReplicas"))
SCALE_DOWN_STABILIZED = status_ok(("AbleToScale", T, "ScaleDownStabilized"))
UP_CAP = HPABehavior(scale_up=generate_scaling_rules(0, 0, 700, 60, 0))

SYNC_CASES = [
    # spec kwargs, spec replicas, status replicas, pod kwargs, object/external levels, recommendations -> replicas, conditions
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 3, 3,
                 dict(levels=(300, 500, 700), requests=REQ3), None, None, 5, OK, id="TestScaleUp"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 3, 3,
                 dict(levels=(300, 500, 700), requests=REQ3, readiness=(F, T, T)), None, None, 4, OK,
                 id="TestScaleUpUnreadyLessScale"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 3, 3,
                 dict(levels=(300, 500, 700), requests=REQ3, start=(HOT, COOL, COOL)), None, None, 4, OK,
                 id="TestScaleUpHotCpuLessScale"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 3, 3,
                 dict(levels=(400, 500, 700), requests=REQ3, readiness=(T, F, F)), None, None, 3, READY_FOR_NEW_SCALE,
                 id="TestScaleUpUnreadyNoScale"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 3, 3,
                 dict(levels=(400, 500, 700), requests=REQ3, readiness=(T, F, F), start=(COOL, HOT, HOT)), None, None, 3,
                 READY_FOR_NEW_SCALE, id="TestScaleUpHotCpuNoScale"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 2, 2,
                 dict(levels=(500, 700), requests=REQ3 + (1000,), readiness=(T, T, F, F),
                      phase=("Running", "Running", "Failed", "Failed")), None, None, 4, OK, id="TestScaleUpIgnoresFailedPods"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30),)), 2, 2,
                 dict(levels=(500, 700), requests=REQ3 + (1000,), readiness=(T, T, F, F), deleting=(F, F, T, T)),
                 None, None, 4, OK,
                 id="TestScaleUpIgnoresDeletionPods"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(qps(15000),)), 3, 3,
                 dict(levels=(20000, 10000, 30000), requests=REQ3), None, None, 4, OK, id="TestScaleUpCM"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(qps(15000),)), 3, 3,
                 dict(levels=(50000, 10000, 30000), requests=REQ3, readiness=(T, T, F), start=(COOL, COOL, HOT)),
                 None, None, 6, OK,
                 id="TestScaleUpCMUnreadyAndHotCpuNoLessScale"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(qps(15000),)), 3, 3,
                 dict(levels=(50000, 15000, 30000), requests=REQ3, readiness=(F, T, F), start=(HOT, COOL, HOT)), None, None, 6,
                 TOO_MANY, id="TestScaleUpCMUnreadyandCpuHot"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(qps(15000),)), 3, 3,
                 dict(levels=(50000, 15000, 30000), requests=REQ3, start=(HOT, COOL, HOT)), None, None, 6, TOO_MANY,
                 id="TestScaleUpHotCpuNoScaleWouldScaleDown"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(obj("Value", 15000),)), 3, 3, {}, (20000,), None, 4, OK,
                 id="TestScaleUpCMObject"),
    pytest.param(dict(min_replicas=0, max_replicas=6, metrics=(obj("Value", 15000),)), 0, 0, {}, (20000,), None, 2, OK,
                 id="TestScaleUpFromZeroCMObject"),
    pytest.param(dict(min_replicas=0, max_replicas=6, metrics=(obj("Value", 1000),)), 0, 0, {}, (1000,), None, 1, OK,
                 id="TestScaleUpFromZeroIgnoresToleranceCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(obj("AverageValue", 10000),)), 3, 3, {}, (40000,), None, 4, OK,
                 id="TestScaleUpPerPodCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("Value", 6666),)), 3, 3, {}, (8600,), None, 4, OK,
                 id="TestScaleUpCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("AverageValue", 2222),)), 3, 3, {}, (8600,), None, 4, OK,
                 id="TestScaleUpPerPodCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5), None, (), 3, OK, id="TestScaleDown"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),),
                      behavior=HPABehavior(scale_up=generate_scaling_rules(0, 0, 100, 15, 30))), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5), None, (), 3, OK, id="TestScaleDownWithScalingRules"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5), None, None, 5,
                 status_ok(("AbleToScale", T, "ReadyForNewScale"), ("AbleToScale", T, "ScaleDownStabilized")),
                 id="TestScaleDownStabilizeInitialSize"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(qps(20000),)), 5, 5,
                 dict(levels=(12000,) * 5, requests=REQ5), None, (), 3, OK, id="TestScaleDownCM"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(obj("Value", 20000),)), 5, 5, dict(requests=REQ5), (12000,), (),
                 3, OK, id="TestScaleDownCMObject"),
    pytest.param(dict(min_replicas=0, max_replicas=6, metrics=(obj("Value", 20000),)), 5, 5, dict(requests=REQ5), (0,), (),
                 0, OK, id="TestScaleDownToZeroCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(obj("AverageValue", 20000),)), 5, 5, dict(requests=REQ5),
                 (60000,), (), 3, OK, id="TestScaleDownPerPodCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("Value", 14400),)), 5, 5, {}, (8600,), (), 3, OK,
                 id="TestScaleDownCMExternal"),
    pytest.param(dict(min_replicas=0, max_replicas=6, metrics=(ext("Value", 14400),)), 5, 5, {}, (0,), (), 0, OK,
                 id="TestScaleDownToZeroCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("AverageValue", 3000),)), 5, 5, {}, (8600,), (), 3, OK,
                 id="TestScaleDownPerPodCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5, readiness=(T, T, T, F, F)), None, (), 2, OK,
                 id="TestScaleDownIncludeUnreadyPods"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5, start=(COOL, COOL, COOL, HOT, HOT)), None, (), 2, OK,
                 id="TestScaleDownIgnoreHotCpuPods"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ7, readiness=(T,) * 5 + (F, F),
                      phase=("Running",) * 5 + ("Failed",) * 2), None, (), 3, OK, id="TestScaleDownIgnoresFailedPods"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50),)), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ7, readiness=(T,) * 5 + (F, F), deleting=(F,) * 5 + (T, T)),
                 None, (), 3, OK, id="TestScaleDownIgnoresDeletionPods"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(100),)), 3, 3,
                 dict(levels=(1010, 1030, 1020), requests=SMALL), None, None, 3, READY_FOR_NEW_SCALE, id="TestTolerance"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(qps(20000),)), 3, 3,
                 dict(levels=(20000, 20001, 21000), requests=SMALL), None, None, 3, READY_FOR_NEW_SCALE, id="TestToleranceCM"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(obj("Value", 20000),)), 3, 3, dict(requests=SMALL),
                 (20050,), None,
                 3, READY_FOR_NEW_SCALE, id="TestToleranceCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("Value", 8666),)), 4, 4, {}, (8600,), None, 4,
                 READY_FOR_NEW_SCALE, id="TestToleranceCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(obj("AverageValue", 2200),)), 4, 4, {}, (8600,), None, 4,
                 READY_FOR_NEW_SCALE, id="TestTolerancePerPodCMObject"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(ext("AverageValue", 2200),)), 4, 4, {}, (8600,), None, 4,
                 READY_FOR_NEW_SCALE, id="TestTolerancePerPodCMExternal"),
    pytest.param(dict(min_replicas=2, max_replicas=5, metrics=(cpu_util(90),)), 3, 3,
                 dict(levels=(10, 95, 10), requests=SMALL), None, (), 2, TOO_FEW, id="TestMinReplicas"),
    pytest.param(dict(min_replicas=0, max_replicas=5, metrics=(cpu_util(90),)), 3, 3,
                 dict(levels=(0, 0, 0), requests=SMALL), None, (), 0, OK, id="TestZeroMinReplicasDesiredZero"),
    pytest.param(dict(min_replicas=2, max_replicas=5, metrics=(cpu_util(90),)), 3, 3,
                 dict(levels=(0, 0, 0), requests=SMALL), None, (), 2, TOO_FEW, id="TestMinReplicasDesiredZero"),
    pytest.param(dict(min_replicas=3, max_replicas=5, metrics=(cpu_util(90),)), 0, 0, {}, None, None, 0,
                 (("AbleToScale", T, "SucceededGetScale"), ("ScalingActive", F, "ScalingDisabled")), id="TestZeroReplicas"),
    pytest.param(dict(min_replicas=3, max_replicas=5, metrics=(cpu_util(90),)), 2, 2, {}, None, None, 3,
                 (("AbleToScale", T, "SucceededRescale"),), id="TestTooFewReplicas"),
    pytest.param(dict(min_replicas=3, max_replicas=5, metrics=(cpu_util(90),)), 10, 10, {}, None, None, 5,
                 (("AbleToScale", T, "SucceededRescale"),), id="TestTooManyReplicas"),
    pytest.param(dict(min_replicas=2, max_replicas=5, metrics=(cpu_util(90),)), 3, 3,
                 dict(levels=(8000, 9500, 1000), requests=SMALL), None, None, 5, TOO_MANY, id="TestMaxReplicas"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(100),)), 4, 4,
                 dict(levels=(400, 95), requests=(1000,) * 4), None, (), 3, OK, id="TestMissingMetrics"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(100),)), 4, 4, dict(requests=(1000,) * 4),
                 None, None, 4,
                 (("AbleToScale", T, "SucceededGetScale"), ("ScalingActive", F, "FailedGetResourceMetric")),
                 id="TestEmptyMetrics"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(100),)), 1, 1, dict(count=0), None, None, 1,
                 (("AbleToScale", T, "SucceededGetScale"), ("ScalingActive", F, "FailedGetResourceMetric")),
                 id="TestEmptyCPURequest"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(50),)), 1, 1, dict(levels=(200,), requests=(200,)),
                 None, None, 2, OK, id="TestEventCreated"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(50),)), 2, 2,
                 dict(levels=(200, 200), requests=(400, 400)),
                 None, None, 2, READY_FOR_NEW_SCALE, id="TestEventNotCreated"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(50),)), 4, 4, dict(levels=(200,), requests=(200,)),
                 None, (), 2, OK, id="TestMissingReports"),
    pytest.param(dict(min_replicas=1, max_replicas=100, metrics=(cpu_util(10),), behavior=UP_CAP), 3, 3,
                 dict(levels=(100, 200, 300), requests=(100,) * 3), None, None, 24,
                 status_ok(("ScalingLimited", T, "ScaleUpLimit")),
                 id="TestUpscaleCap"),
    pytest.param(dict(min_replicas=1, max_replicas=20, metrics=(cpu_util(10),), behavior=UP_CAP), 3, 3,
                 dict(levels=(100, 200, 300), requests=(100,) * 3), None, None, 20, TOO_MANY,
                 id="TestUpscaleCapGreaterThanMaxReplicas"),
    pytest.param(dict(min_replicas=1, max_replicas=8, metrics=(cpu_util(50),)), 4, 5,
                 dict(levels=(500,) * 5, requests=(1000,) * 5), None, None, 4, READY_FOR_NEW_SCALE,
                 id="TestMoreReplicasThanSpecNoScale"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(qps(15000),)), 3, 3,
                 dict(levels=(20000, 10000, 30000), requests=REQ3),
                 None, None, 4, OK, id="TestNoBackoffUpscaleCM"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(10), qps(15000))), 3, 3,
                 dict(levels=(20000, 10000, 30000), requests=REQ3), None, None, 5, TOO_MANY,
                 id="TestNoBackoffUpscaleCMNoBackoffCpu"),
    pytest.param(dict(min_replicas=1, max_replicas=5, metrics=(cpu_util(100),)), 4, 4,
                 dict(levels=(50, 50, 50), requests=(100,) * 3),
                 None, (Recommendation(replicas=10, at_s=NOW - 600), Recommendation(replicas=4, at_s=NOW - 60)), 4,
                 SCALE_DOWN_STABILIZED, id="TestStabilizeDownscale"),
    pytest.param(dict(min_replicas=2, max_replicas=6), 1, 1, dict(levels=(0,) * 4, requests=(1000,) * 4), None, None, 2,
                 (("AbleToScale", T, "SucceededRescale"),), id="TestScaleUpRCImmediately"),
    pytest.param(dict(min_replicas=2, max_replicas=5, metrics=(cpu_util(50),)), 6, 6,
                 dict(levels=(8000, 9500, 1000), requests=SMALL),
                 None, None, 5, (("AbleToScale", T, "SucceededRescale"),), id="TestScaleDownRCImmediately"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(30), ext("Value", 100))), 3, 3,
                 dict(levels=(300, 400, 500), requests=REQ3), "fail", None, 4, OK, id="TestScaleUpOneMetricEmpty"),
    pytest.param(dict(min_replicas=2, max_replicas=6, metrics=(cpu_util(50), ext("Value", 1000))), 5, 5,
                 dict(levels=(100, 300, 500, 250, 250), requests=REQ5), "fail", (), 5,
                 (("AbleToScale", T, "SucceededGetScale"), ("ScalingActive", F, "FailedGetExternalMetric")),
                 id="TestNoScaleDownOneMetricEmpty"),
    *[pytest.param(dict(min_replicas=1, max_replicas=100, metrics=(m,)), 3, 3, dict(requests=(100,) * 3), "fail", None, 3,
                   (("AbleToScale", T, "SucceededGetScale"), ("ScalingActive", F, reason)),
                   id=f"TestConditionFailedGetMetrics/{reason}")
      for reason, m in [("FailedGetResourceMetric", cpu_util(10)), ("FailedGetPodsMetric", qps(15000)),
                        ("FailedGetObjectMetric", obj("Value", 15000)), ("FailedGetExternalMetric", ext("Value", 300))]],
]


def hz_observed(spec_replicas, status_replicas, pod_kwargs, levels) -> Observed:
    """The scale, pods and Object/External values of one horizontal_test.go case ("fail": the
    metrics API errors for Object and External metrics)."""
    kw = {"count": status_replicas, **pod_kwargs}
    values = {} if levels in (None, "fail") else {"object_metrics": {"qps": levels[0]}, "external_metrics": {"qps": levels}}
    return Observed(current_replicas=spec_replicas, status_replicas=status_replicas, pods=hz_pods(**kw), **values)


@pytest.mark.parametrize("spec_kw,spec_replicas,status_replicas,pod_kwargs,levels,recs,expected,conditions", SYNC_CASES)
def test_sync_matches_horizontal_test(spec_kw, spec_replicas, status_replicas, pod_kwargs, levels, recs, expected, conditions):
    # horizontal_test.go (testCase.runTest: one reconcileAutoscaler; recommendations nil vs empty as in the case)
    observed = hz_observed(spec_replicas, status_replicas, pod_kwargs, levels)
    decision = reconcile(spec(**spec_kw), observed, HPAState(recommendations=recs), NOW)
    assert decision.desired_replicas == expected
    assert tuple((c.type, c.status, c.reason) for c in decision.conditions) == conditions


def test_computed_tolerance_alg_implementation_sync():
    # horizontal_test.go TestComputedToleranceAlgImplementation (tc1 scales to 9, tc2 stays at 10)
    used, requested, per_pod = 1500, 3000, 300
    target = abs(1 / (float(requested // used) * (1 - 0.1))) + .01
    final_pods = math.ceil(used / (requested * target) * 10)
    pods = dict(levels=(used // 10,) * 10, requests=tuple(per_pod + d for d in (100, -100, 10, -10, 2, -2, 1, -1, 0, 0)))
    hpa = dict(min_replicas=0, max_replicas=1000)
    observed, fresh = hz_observed(10, 10, pods, None), HPAState(recommendations=())
    d1 = reconcile(spec(**hpa, metrics=(cpu_util(int(target * 100)),)), observed, fresh, NOW)
    near = abs(1 / (float(requested // used) * (1 - 0.1))) + .004
    d2 = reconcile(spec(**hpa, metrics=(cpu_util(int(near * 100)),)), observed, fresh, NOW)
    assert (d1.desired_replicas, d2.desired_replicas) == (final_pods, 10) == (9, 10)
    assert tuple((c.type, c.status, c.reason) for c in d2.conditions) == READY_FOR_NEW_SCALE


# ------------------------------------------------------------ horizontal_test.go: the normalisation tables

@pytest.mark.parametrize("current,desired,lo,hi,expected", [
    pytest.param(5, 7, 3, 8, (7, "DesiredWithinRange"),
                 id="TestConvertDesiredReplicasWithRules/prenormalized desired replicas within range"),
    pytest.param(3, 1, 2, 8, (2, "TooFewReplicas"),
                 id="TestConvertDesiredReplicasWithRules/prenormalized desired replicas < minReplicas"),
    pytest.param(1, 0, 0, 10, (0, "DesiredWithinRange"),
                 id="TestConvertDesiredReplicasWithRules/prenormalized desired zeroed replicas within range"),
    pytest.param(20, 1000, 1, 10, (10, "TooManyReplicas"),
                 id="TestConvertDesiredReplicasWithRules/maxReplicas is the limit because maxReplicas < scaleUpLimit"),
    # calculateScaleUpLimit(3) under the test file's init(): scaleUpLimitFactor = 8
    pytest.param(3, 1000, 1, 2000, (24, "ScaleUpLimit"),
                 id="TestConvertDesiredReplicasWithRules/scaleUpLimit is the limit because scaleUpLimit < maxReplicas"),
])
def test_legacy_limits_match_horizontal_test(current, desired, lo, hi, expected):
    # horizontal_test.go TestConvertDesiredReplicasWithRules (horizontal_test.go sets scaleUpLimitFactor = 8)
    assert limit_legacy(current, desired, lo, hi, factor=8) == expected


def recs(*pairs: tuple[int, float]) -> tuple[Recommendation, ...]:
    return tuple(Recommendation(replicas=r, at_s=NOW - ago) for r, ago in pairs)


@pytest.mark.parametrize("history,desired,expected,length", [
    pytest.param((), 5, 5, 1, id="TestNormalizeDesiredReplicas/empty log"),
    pytest.param(((4, 120), (5, 60)), 3, 5, 3, id="TestNormalizeDesiredReplicas/stabilize"),
    pytest.param(((1, 120), (2, 60)), 3, 3, 3, id="TestNormalizeDesiredReplicas/no stabilize"),
    pytest.param(((10, 600), (9, 540)), 3, 3, 2, id="TestNormalizeDesiredReplicas/no stabilize - old recommendations"),
    pytest.param(((10, 600), (4, 60), (5, 120), (9, 540)), 3, 5, 4,
                 id="TestNormalizeDesiredReplicas/stabilize - old recommendations"),
])
def test_legacy_stabilization_matches_horizontal_test(history, desired, expected, length):
    # horizontal_test.go TestNormalizeDesiredReplicas (stabilizeRecommendation, 5-minute window)
    stabilized, stored = stabilize_legacy(recs(*history), desired, 300.0, NOW)
    assert (stabilized, len(stored)) == (expected, length)


@pytest.mark.parametrize("history,current,desired,up_s,down_s,expected,stored", [
    pytest.param((), 100, 5, 0, 0, 5, (5,),
                 id="TestNormalizeDesiredReplicasWithBehavior/empty recommendations for scaling down"),
    pytest.param(((4, 120), (5, 60)), 100, 3, 0, 180, 5, (4, 5, 3),
                 id="TestNormalizeDesiredReplicasWithBehavior/simple scale down stabilization"),
    pytest.param(((4, 120), (5, 60)), 1, 7, 300, 0, 4, (4, 5, 7),
                 id="TestNormalizeDesiredReplicasWithBehavior/simple scale up stabilization"),
    pytest.param(((1, 120), (2, 60)), 100, 3, 300, 0, 3, (1, 2, 3),
                 id="TestNormalizeDesiredReplicasWithBehavior/no scale down stabilization"),
    pytest.param(((4, 120), (5, 60)), 1, 3, 0, 300, 3, (4, 5, 3),
                 id="TestNormalizeDesiredReplicasWithBehavior/no scale up stabilization"),
    pytest.param(((10, 600), (9, 540)), 100, 3, 0, 0, 3, (10, 3),
                 id="TestNormalizeDesiredReplicasWithBehavior/no scale down stabilization, reuse recommendation element"),
    pytest.param(((10, 600), (9, 540)), 1, 100, 0, 0, 100, (10, 100),
                 id="TestNormalizeDesiredReplicasWithBehavior/no scale up stabilization, reuse recommendation element"),
    pytest.param(((10, 600), (4, 60), (5, 120), (9, 540)), 100, 3, 0, 180, 5, (10, 4, 5, 3),
                 id="TestNormalizeDesiredReplicasWithBehavior/"
                    "scale down stabilization, reuse one of obsolete recommendation element"),
    pytest.param(((10, 6000), (6, 60), (5, 120), (9, 180)), 1, 100, 300, 0, 5, (100, 6, 5, 9),
                 id="TestNormalizeDesiredReplicasWithBehavior/"
                    "scale up stabilization, reuse one of obsolete recommendation element"),
    pytest.param(((2, 6000), (3, 180)), 2, 1, 300, 300, 2, None,
                 id="TestNormalizeDesiredReplicasWithBehavior/"
                    "scale up and down stabilization, do not scale up when prenormalized rec goes down"),
    pytest.param(((2, 6000), (1, 180)), 2, 3, 300, 300, 2, None,
                 id="TestNormalizeDesiredReplicasWithBehavior/"
                    "scale up and down stabilization, do not scale down when prenormalized rec goes up"),
])
def test_behavior_stabilization_matches_horizontal_test(history, current, desired, up_s, down_s, expected, stored):
    # horizontal_test.go TestNormalizeDesiredReplicasWithBehavior (stabilizeRecommendationWithBehaviors)
    got, kept, _ = stabilize_with_behavior(recs(*history), current, desired, up_s, down_s, NOW)
    assert got == expected
    assert stored is None or tuple(r.replicas for r in kept) == stored


def uniform_events(changes: list[int], period_s: int) -> tuple[ScaleEvent, ...]:
    """generateEventsUniformDistribution: events centred in equal slices of the last `period_s`
    (the offset truncated to whole seconds, as Go's time.Duration conversion does)."""
    segment = period_s / len(changes)
    return tuple(ScaleEvent(change=c, at_s=NOW - int(period_s - segment * (i + 1) + segment / 2))
                 for i, c in enumerate(changes))


G = generate_scaling_rules
E = uniform_events
SCALING_WITH_RULES = [
    # up events, down events, min, max, scale-up rules, scale-down rules, current, desired -> replicas, condition
    ("prenormalized desired replicas within range", (), (), 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", (), (), 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
    ("prenormalized desired replicas within range when minReplicas is 0",
     (), (), 0, 10, None, None, 1, 0, 0, "DesiredWithinRange"),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", (), (), 1, 10, None, None, 20, 1000, 10, "TooManyReplicas"),
    ("desired replica count is more than the maximum replica count",
     (), (), 100, 150, None, None, 100, 1000, 150, "TooManyReplicas"),
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
     (), (), 1, 2000, G(0, 0, 1, 60, 0), None,
     3, 1000, 4, "ScaleUpLimit"),
    ("scaleUp with default behavior", (), (), 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    ("scaleUp with pods policy larger than percent policy",
     (), (), 1, 1000, G(100, 60, 100, 60, 0), None, 10, 500, 110, "ScaleUpLimit"),
    ("scaleUp with percent policy larger than pods policy",
     (), (), 1, 1000, G(2, 60, 100, 60, 0), None, 10, 500, 20, "ScaleUpLimit"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", (), (), 1, 1000, G(100, 60, 0, 0, 0), None, 10, 50, 50,
     "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy",
     (), (), 1, 1000, G(10000, 60, 0, 0, 0), None, 10, 50, 50,
     "DesiredWithinRange"),
    ("scaleUp with pod policy limitation", (), (), 1, 1000, G(30, 60, 0, 0, 0), None, 10, 50, 40, "ScaleUpLimit"),
    ("scaleUp with percent policy limitation", (), (), 1, 1000, G(0, 0, 200, 60, 0), None, 10, 50, 30, "ScaleUpLimit"),
    ("scaleDown with percent policy larger than pod policy",
     (), (), 1, 1000, None, G(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit"),
    ("scaleDown with pod policy larger than percent policy",
     (), (), 1, 1000, None, G(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy",
     (), (), 1, 1000, None, G(100, 60, 0, 0, 300), 10, 0, 1,
     "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy", (), (), 1, 1000, None, G(100, 60, 0, 0, 300), 10, 0, 1,
     "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy",
     (), (), 5, 1000, None, G(0, 0, 100, 60, 300), 10, 2, 5,
     "TooFewReplicas"),
    ("scaleDown with pod policy limitation", (), (), 1, 1000, None, G(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation", (), (), 1, 1000, None, G(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", E([1, 5, 9], 120), (), 1, 200,
     G(300, 60, 0, 0, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events", E([1, 5, 9], 120), (), 1, 200,
     G(0, 0, 10000, 60, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
     E([1, 5, 9], 120), (),
     1, 1000, G(5, 120, 0, 0, 0), None, 100, 500, 100, "ScaleUpLimit"),
    ("scaleUp with pod policy and previous scale up events",
     E([1, 5, 9], 120), (), 1, 1000, G(150, 120, 0, 0, 0), None, 100, 500,
     235, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up events",
     E([1, 5, 9], 120), (), 1, 1000, G(0, 0, 200, 120, 0), None, 100,
     500, 255, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up and down events",
     E([4], 120), E([2], 120), 1, 1000, G(0, 0, 300, 300, 0),
     None, 6, 24, 16, "ScaleUpLimit"),
    ("scaleDown with default policy and previous events",
     (), E([1, 5, 9], 120), 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", (), E([1, 5, 9], 120), 1, 1000,
     None, G(115, 120, 0, 0, 300), 100, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", (), E([1, 5, 9], 120), 5, 1000,
     None, G(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", (), E([1, 5, 9], 120), 5, 1000,
     None, G(0, 0, 100, 120, 300), 100, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation and previous events",
     (), E([1, 5, 9], 120), 1, 1000, None, G(5, 120, 0, 0, 300), 100,
     2, 100, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation and previous events",
     (), E([2, 4, 6], 120), 1, 1000, None, G(0, 0, 50, 120, 300),
     100, 0, 56, "ScaleDownLimit"),
    ("scaleDown with percent policy and previous scale up and down events", E([2], 120), E([4], 120), 1, 1000, None,
     G(0, 0, 50, 180, 0), 10, 1, 6, "ScaleDownLimit"),
    ("scaleDown with previous events preventing further scale down",
     (), E([10, 10, 10], 120), 1, 1000, None, G(0, 0, 10, 120, 300),
     100, 0, 100, "ScaleDownLimit"),
    ("scaleDown with with previous events still allowing more scale down", (), E([10, 10, 10], 120), 1, 1000, None,
     G(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for up",
     E([8, 12, 9, 11], 120), (), 1, 1000, G(1000, 60, 0, 0, 0), None,
     100, 200, 200, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up",
     E([8, 12, 9, 11], 120), (),
     1, 1000, G(1000, 120, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for up", E([8, 12, 9, 11], 120), (),
     1, 1000, G(1000, 30, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for down",
     (), E([8, 12, 9, 11], 120), 1, 1000, None, G(1000, 60, 0, 0, 300),
     100, 5, 5, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for down",
     (), E([8, 12, 9, 11], 120),
     1, 1000, None, G(1000, 120, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for down", (), E([8, 12, 9, 11], 120),
     1, 1000, None, G(1000, 30, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
]


@pytest.mark.parametrize("up_events,down_events,lo,hi,up_rules,down_rules,current,desired,expected,condition",
                         [pytest.param(*row[1:], id=f"TestScalingWithRules/{row[0]}") for row in SCALING_WITH_RULES])
def test_rate_limits_match_horizontal_test(up_events, down_events, lo, hi, up_rules, down_rules, current, desired, expected,
                                           condition):
    # horizontal_test.go TestScalingWithRules (convertDesiredReplicasWithBehaviorRate over GenerateHPAScale{Up,Down}Rules)
    behavior = HPABehavior(**{k: v for k, v in (("scale_up", up_rules), ("scale_down", down_rules)) if v is not None})
    hpa = HPASpec(min_replicas=lo, max_replicas=hi, behavior=behavior)
    state = HPAState(up_events=up_events, down_events=down_events)
    assert limit_with_behavior(hpa, current, desired, state, NOW) == (expected, condition)


MIN_POLICY = HPAScalingRules(stabilization_window_s=300, select_policy="Min", policies=(
    HPAPolicy(type="Pods", value=2, period_s=60), HPAPolicy(type="Percent", value=50, period_s=60)))


def test_scale_up_limit_with_min_policy():
    # horizontal_test.go TestCalculateScaleUpLimitWithScalingRules
    assert scale_up_limit(1, (), (), MIN_POLICY, NOW) == 2


def test_scale_down_limit_with_min_policy():
    # horizontal_test.go TestCalculateScaleDownLimitWithBehaviors
    assert scale_down_limit(5, (), (), MIN_POLICY, NOW) == 3


def ev(*triples: tuple[int, float, bool]) -> tuple[ScaleEvent, ...]:
    return tuple(ScaleEvent(change=c, at_s=NOW - ago, outdated=o) for c, ago, o in triples)


STORE_SCALE_EVENTS = [
    # previous events (change, seconds ago, outdated), rules -> stored (change, outdated), change over the last 60 s
    pytest.param((), None, (), 0, id="TestStoreScaleEvents/empty entries with default behavior"),
    pytest.param((), G(10, 60, 100, 60, 0), ((5, F),), 0, id="TestStoreScaleEvents/empty entries with two-policy-behavior"),
    pytest.param(((7, 61, F),), None, ((7, F),), 0,
                 id="TestStoreScaleEvents/one outdated entry to be kept untouched without behavior"),
    pytest.param(((7, 61, F),), G(10, 60, 100, 60, 0), ((5, F),), 0,
                 id="TestStoreScaleEvents/one outdated entry to be replaced with behavior"),
    pytest.param(((7, 58, F),), G(10, 60, 100, 60, 0), ((7, F), (5, F)), 7,
                 id="TestStoreScaleEvents/one actual entry to be not touched with behavior"),
    pytest.param(((7, 61, F), (6, 59, F)), G(10, 60, 0, 0, 0), ((5, F), (6, F)), 6,
                 id="TestStoreScaleEvents/two entries, one of them to be replaced"),
    pytest.param(((8, 29, F), (6, 59, F), (7, 61, F), (9, 61, F)), G(10, 60, 100, 30, 0), ((8, F), (6, F), (7, T), (5, F)), 14,
                 id="TestStoreScaleEvents/replace one entry, use policies with different periods"),
    pytest.param(((7, 58, F), (6, 59, F)), G(10, 120, 100, 30, 0), ((7, F), (6, F), (5, F)), 13,
                 id="TestStoreScaleEvents/two entries, both actual"),
]


@pytest.mark.parametrize("previous,rules,stored,change_60s", STORE_SCALE_EVENTS)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_scale_events_match_horizontal_test(previous, rules, stored, change_60s, direction):
    # horizontal_test.go TestStoreScaleEvents (each case run for scale-up and for scale-down)
    events = ev(*previous)
    behavior = None if rules is None else HPABehavior(**{f"scale_{direction}": rules})
    state = HPAState(**{f"{direction}_events": events})
    assert replicas_changed(events, 60, NOW) == change_60s
    after = store_scale_event(behavior, state, 10, 15 if direction == "up" else 5, NOW)
    assert tuple((e.change, e.outdated) for e in getattr(after, f"{direction}_events")) == stored


# ------------------------------------------------------------ our own checks

def test_behavior_defaults_apply_only_when_behavior_is_given():
    up_only = HPABehavior(scale_up=HPAScalingRules(stabilization_window_s=60))
    assert up_only.scale_up.select_policy == "Max" and [p.type for p in up_only.scale_up.policies] == ["Pods", "Percent"]
    assert up_only.scale_down.stabilization_window_s is None  # the controller's downscale flag decides
    assert up_only.scale_down.policies == (HPAPolicy(type="Percent", value=100, period_s=15),)
    assert HPASpec(max_replicas=3).behavior is None
    assert HPASpec(max_replicas=3).metrics == (cpu_util(80),)


def test_behavior_scale_down_window_falls_back_to_the_controller_flag():
    hpa = spec(max_replicas=10, metrics=(qps(1000),), behavior=HPABehavior(), downscale_stabilization_s=120.0)
    pods = tuple(PodSample(metrics={"qps": 100}) for _ in range(4))
    state = HPAState(recommendations=(Recommendation(replicas=4, at_s=NOW - 119),))
    held = reconcile(hpa, Observed(current_replicas=4, pods=pods), state, NOW)
    assert held.desired_replicas == 4
    released = reconcile(hpa, Observed(current_replicas=4, pods=pods), state, NOW + 2)
    assert released.desired_replicas == 1


@pytest.mark.parametrize("kwargs,field", [
    (dict(min_replicas=5, max_replicas=3), "min_replicas"),
    (dict(max_replicas=0), "max_replicas"),
    (dict(max_replicas=3, metrics=(dict(source="Pods", name="qps", target_type="Value", target=1),)), "target_type"),
    (dict(max_replicas=3, behavior=dict(scale_up=dict(policies=()))), "policies"),
    (dict(max_replicas=3, behavior=dict(scale_down=dict(policies=(dict(type="Pods", value=1, period_s=0),)))), "period_s"),
])
def test_invalid_specs_are_rejected_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        HPASpec(**kwargs)


@pytest.mark.parametrize("mean", [900, 1100])
def test_tolerance_band_is_inclusive(mean):
    # isWithin: (1 - down) <= ratio <= (1 + up); the older |1 - ratio| <= tol would scale at 1.1
    pods = tuple(PodSample(metrics={"qps": mean}) for _ in range(4))
    assert replicas_for_metric(qps(1000), Observed(current_replicas=4, pods=pods), spec(), NOW).replicas == 4


def test_utilization_is_truncated_before_the_tolerance_check():
    # 110.9 % counts as 110 %, which is inside the band; untruncated it would ask for 2 replicas
    pod = PodSample(requests={"cpu": 1000}, metrics={"cpu": 1109}, start_s=0.0, ready_changed_s=0.0)
    got = replicas_for_metric(cpu_util(100), Observed(current_replicas=1, pods=(pod,)), spec(), NOW)
    assert (got.replicas, got.utilization) == (1, 110)


def test_unready_pods_count_as_idle_on_a_scale_up_weighted_by_their_request():
    # the busy ready pod alone says 300 %, three times one pod; with the unready pod's larger
    # request at 0 % the ratio is 1.0 and nothing changes
    ready = PodSample(requests={"cpu": 1000}, metrics={"cpu": 3000})
    unready = PodSample(ready=False, requests={"cpu": 2000}, metrics={"cpu": 2000})
    got = replicas_for_metric(cpu_util(100), Observed(current_replicas=2, pods=(ready, unready)), spec(), NOW)
    assert (got.replicas, got.utilization) == (2, 300)


def test_average_value_targets_use_the_status_replica_count():
    # 5200 over 5 status replicas is 1040 per pod, within 10 % of 1000: keep the status count
    observed = Observed(current_replicas=4, status_replicas=5, external_metrics={"qps": (5200,)})
    got = replicas_for_metric(ext("AverageValue", 1000), observed, spec(), NOW)
    assert (got.replicas, got.usage) == (5, 1040)


def test_one_failed_metric_does_not_block_a_scale_up_but_blocks_a_scale_down():
    pods = tuple(PodSample(metrics={"qps": v}) for v in (3000, 3000))
    up = HPASpec(max_replicas=10, metrics=(qps(1000), ext("Value", 5)))
    assert replicas_for_metrics(up, Observed(current_replicas=2, pods=pods), NOW).replicas == 6
    down = HPASpec(max_replicas=10, metrics=(qps(10000), ext("Value", 5)))
    assert replicas_for_metrics(down, Observed(current_replicas=2, pods=pods), NOW).replicas is None


# ------------------------------------------------------------ properties

policies = st.lists(st.builds(HPAPolicy, type=st.sampled_from(["Pods", "Percent"]), value=st.integers(1, 300),
                              period_s=st.integers(1, 120)), min_size=1, max_size=2).map(tuple)
rules = st.builds(HPAScalingRules, stabilization_window_s=st.one_of(st.none(), st.integers(0, 600)),
                  select_policy=st.sampled_from([None, "Max", "Min", "Disabled"]), policies=st.one_of(st.none(), policies))
behaviors = st.one_of(st.none(), st.builds(HPABehavior, scale_up=rules, scale_down=rules))


@st.composite
def specs(draw, behavior=behaviors):
    lo = draw(st.integers(0, 5))
    return HPASpec(min_replicas=lo, max_replicas=draw(st.integers(max(lo, 1), 25)), metrics=(qps(1000),),
                   behavior=draw(behavior),
                   downscale_stabilization_s=draw(st.sampled_from([0.0, 60.0, 300.0])))


loads = st.lists(st.tuples(st.sampled_from([5.0, 15.0, 15.0, 30.0]), st.integers(0, 30_000)), min_size=1, max_size=25)


def run(hpa: HPASpec, start: int, seq):
    """Sync after sync: each sees `start` (then the last decision) replicas, one pod each, sharing
    `load` milli-qps; yields (now, current, observed, state before, decision, inputs unchanged)."""
    current, state, now = start, HPAState(), NOW
    for dt, load in seq:
        now += dt
        pods = tuple(PodSample(metrics={"qps": load // max(current, 1)}) for _ in range(current))
        observed = Observed(current_replicas=current, pods=pods)
        before = (observed.model_dump(), state.model_dump())
        decision = reconcile(hpa, observed, state, now)
        yield now, current, observed, state, decision, before == (observed.model_dump(), state.model_dump())
        current, state = decision.desired_replicas, decision.state


@settings(max_examples=300, deadline=None)
@given(hpa=specs(), start=st.integers(0, 30), seq=loads)
def test_result_stays_within_bounds_and_inputs_are_untouched(hpa, start, seq):
    for _, current, _, _, decision, untouched in run(hpa, start, seq):
        if current == 0 and hpa.min_replicas != 0:
            assert decision.desired_replicas == 0
        elif current > hpa.max_replicas:
            assert decision.desired_replicas == hpa.max_replicas
        else:
            assert hpa.min_replicas <= decision.desired_replicas <= hpa.max_replicas
        assert untouched


@settings(max_examples=300, deadline=None)
@given(hpa=specs(), start=st.integers(1, 25), seq=loads)
def test_stabilization_never_drops_below_the_window_maximum(hpa, start, seq):
    down = None if hpa.behavior is None else hpa.behavior.scale_down.stabilization_window_s
    window = hpa.downscale_stabilization_s if down is None else down
    if hpa.behavior is None:  # the legacy path keeps entries not older than the window, the behavior path newer ones
        def counted(at, now): return at >= now - window
    else:
        def counted(at, now): return at > now - window
    history = []  # every stored recommendation, computed independently
    for now, current, observed, state, decision, _ in run(hpa, start, seq):
        if state.recommendations is None:
            history.append((now, current))  # the first sync records the current count
        proposal = replicas_for_metrics(hpa, observed, now).replicas
        if proposal is None or not hpa.min_replicas <= current <= hpa.max_replicas:
            continue
        window_max = max([proposal, *(p for at, p in history if counted(at, now))])
        history.append((now, proposal))
        assert decision.desired_replicas >= min(current, window_max)


@settings(max_examples=300, deadline=None)
@given(hpa=specs(behavior=st.builds(HPABehavior, scale_up=rules, scale_down=rules)), start=st.integers(1, 25), seq=loads,
       direction=st.sampled_from(["up", "down"]))
def test_disabled_select_policy_never_moves_that_way(hpa, start, seq, direction):
    rules_off = getattr(hpa.behavior, f"scale_{direction}").model_copy(update={"select_policy": "Disabled"})
    hpa = hpa.model_copy(update={"behavior": hpa.behavior.model_copy(update={f"scale_{direction}": rules_off})})
    for _, current, _, _, decision, _ in run(hpa, start, seq):
        if hpa.min_replicas <= current <= hpa.max_replicas:
            moved = decision.desired_replicas - current
            assert (moved <= 0) if direction == "up" else (moved >= 0)
