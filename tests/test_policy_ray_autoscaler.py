"""The Ray autoscaler's decision (tuner.policies.ray_autoscaler) on hand-worked cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tuner.policies.ray_autoscaler import IMPLICIT_PREFIX, Node, RayAutoscalerConfig, WorkerGroup, decide, per_node_limit

CPU4 = WorkerGroup(name="cpu", resources={"CPU": 4}, max_workers=10)
GPU1 = WorkerGroup(name="gpu", resources={"CPU": 8, "GPU": 1}, max_workers=4)
HEAD = Node(id="head", group=None, total={"CPU": 0}, available={"CPU": 0})


def worker(i, group="cpu", free=None, total=None, status="running", idle_since=None):
    total = total or {"CPU": 4}
    return Node(id=f"{group}-{i}", group=group, status=status, total=total,
                available=total if free is None else free, idle_since=idle_since)


def test_pending_replicas_are_packed_onto_new_pods():
    cfg = RayAutoscalerConfig(groups=(CPU4,))
    d = decide(cfg, [HEAD], [{"CPU": 1}] * 6, now=0)
    assert d.launch == {"cpu": 2} and d.terminate == () and d.infeasible == ()


def test_free_room_on_running_pods_is_used_first():
    cfg = RayAutoscalerConfig(groups=(CPU4,))
    d = decide(cfg, [HEAD, worker(0, free={"CPU": 3})], [{"CPU": 1}] * 5, now=0)
    assert d.launch == {"cpu": 1}      # 3 fit on cpu-0, 2 need one new pod


def test_pending_pods_count_as_capacity():
    cfg = RayAutoscalerConfig(groups=(CPU4,))
    d = decide(cfg, [HEAD, worker(0, status="pending")], [{"CPU": 1}] * 4, now=0)
    assert d.launch == {}


def test_gpu_demand_goes_to_the_gpu_group_and_cpu_demand_avoids_it():
    cfg = RayAutoscalerConfig(groups=(CPU4, GPU1))
    assert decide(cfg, [HEAD], [{"CPU": 1}], now=0).launch == {"cpu": 1}
    # with a GPU demand in the same pass, the CPU one fits on the GPU pod too (as Ray packs)
    assert decide(cfg, [HEAD], [{"CPU": 1, "GPU": 1}, {"CPU": 1}], now=0).launch == {"gpu": 1}
    # what is left after the GPU pod is full goes to a CPU pod, not a second GPU pod
    assert decide(cfg, [HEAD], [{"CPU": 1, "GPU": 1}, {"CPU": 4}, {"CPU": 4}], now=0).launch == {"gpu": 1, "cpu": 1}


def test_max_workers_caps_the_group_and_infeasible_demand_is_reported():
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"max_workers": 1}),))
    d = decide(cfg, [HEAD], [{"CPU": 1}] * 8 + [{"CPU": 16}], now=0)
    assert d.launch == {"cpu": 1} and d.infeasible == ({"CPU": 16},)


def test_min_workers_are_launched_without_demand():
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"min_workers": 2}),))
    assert decide(cfg, [HEAD], [], now=0).launch == {"cpu": 2}
    assert decide(cfg, [HEAD], [{"CPU": 1}] * 8, now=0).launch == {"cpu": 2}   # min pods hold the demand


@pytest.mark.parametrize("mode, running, want, expected", [
    ("Conservative", 0, 5, 1),     # max(1, ceil(1 x max(0, 1)))
    ("Conservative", 3, 10, 3),
    ("Default", 0, 5, 5),
    ("Default", 0, 30, 10),        # max_concurrent_launches
])
def test_launch_rate_caps(mode, running, want, expected):
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"max_workers": 100}),), upscaling_mode=mode)
    nodes = [HEAD] + [worker(i, free={"CPU": 0}) for i in range(running)]
    d = decide(cfg, nodes, [{"CPU": 4}] * want, now=0)
    assert d.queued == {"cpu": want} and d.launch == {"cpu": expected}


def test_global_launch_cap_counts_pods_already_pending():
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"max_workers": 100}),))
    nodes = [HEAD] + [worker(i, status="pending", free={"CPU": 0}) for i in range(8)]
    assert decide(cfg, nodes, [{"CPU": 4}] * 5, now=0).launch == {"cpu": 2}


def test_idle_pods_go_after_the_timeout_longest_idle_first_keeping_min_workers():
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"min_workers": 1}),), idle_timeout_s=60)
    nodes = [HEAD, worker(0, idle_since=0), worker(1, idle_since=10), worker(2, idle_since=50), worker(3)]
    assert decide(cfg, nodes, [], now=69.9).terminate == ("cpu-0",)
    assert decide(cfg, nodes, [], now=110.5).terminate == ("cpu-0", "cpu-1", "cpu-2")
    few = [HEAD, worker(0, idle_since=0), worker(1, idle_since=0)]
    assert decide(cfg, few, [], now=1000).terminate == ("cpu-0",)          # one kept for min_workers


def test_group_idle_timeout_overrides_the_global_one():
    cfg = RayAutoscalerConfig(groups=(CPU4.model_copy(update={"idle_timeout_s": 10}),), idle_timeout_s=600)
    assert decide(cfg, [HEAD, worker(0, idle_since=0)], [], now=10).terminate == ()  # Ray: idle must exceed it
    assert decide(cfg, [HEAD, worker(0, idle_since=0)], [], now=10.5).terminate == ("cpu-0",)


def test_idle_pods_stay_while_demand_waits():
    cfg = RayAutoscalerConfig(groups=(CPU4, GPU1))
    nodes = [HEAD, worker(0, idle_since=0)]
    d = decide(cfg, nodes, [{"CPU": 1}], now=1000)    # the idle pod takes the demand
    assert d.terminate == () and d.launch == {}


def test_demand_that_fits_no_pod_does_not_keep_idle_pods():
    """Found against the real autoscaler (scripts/validate_ray_autoscaler.py --infeasible-actors 1):
    Ray removes idle pods while an unplaceable request waits."""
    cfg = RayAutoscalerConfig(groups=(CPU4,))
    d = decide(cfg, [HEAD, worker(0, idle_since=0)], [{"CPU": 3}, {"CPU": 64}], now=100)
    assert d.terminate == () and d.infeasible == ({"CPU": 64},)  # the pod takes the 3-CPU demand
    d = decide(cfg, [HEAD, worker(0, idle_since=0)], [{"CPU": 64}], now=100)
    assert d.terminate == ("cpu-0",) and d.infeasible == ({"CPU": 64},)


def test_invalid_group_names_the_field():
    with pytest.raises(ValidationError, match=r"cpu: min_workers \(3\) must be <= max_workers \(2\)"):
        WorkerGroup(name="cpu", resources={"CPU": 4}, min_workers=3, max_workers=2)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 60), size=st.sampled_from([0.5, 1.0, 2.0, 4.0]), running=st.integers(0, 5),
       mx=st.integers(1, 20), mode=st.sampled_from(["Default", "Conservative"]))
def test_launches_never_exceed_caps_and_cover_demand_when_allowed(n, size, running, mx, mode):
    group = WorkerGroup(name="cpu", resources={"CPU": 4}, max_workers=max(mx, running))
    cfg = RayAutoscalerConfig(groups=(group,), upscaling_mode=mode)
    nodes = [HEAD] + [worker(i, free={"CPU": 0}) for i in range(running)]
    d = decide(cfg, nodes, [{"CPU": size}] * n, now=0)
    launched = d.launch.get("cpu", 0)
    wanted = d.queued.get("cpu", 0)
    per_pod = int(4 // size)
    assert wanted == min(-(-n // per_pod) if n else 0, group.max_workers - running)
    assert launched <= wanted and launched <= cfg.max_concurrent_launches
    assert launched <= max(1, -(-int(cfg.upscaling_speed * max(running, 1)) // 1))
    assert running + launched <= group.max_workers


# -- implicit per-node resources (Serve's max_replicas_per_node), against Ray's own scheduler --

def _ray_launches(groups: tuple[WorkerGroup, ...], demands: list[dict]) -> dict[str, int]:
    """Worker pods Ray's installed v2 scheduler (ResourceDemandScheduler) asks for, on an empty
    cluster; launch caps are the reconciler's, so this compares with `queued`."""
    from ray.autoscaler.v2.instance_manager.config import NodeTypeConfig
    from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
    from ray.autoscaler.v2.utils import ResourceRequestUtil

    req = SchedulingRequest(
        disable_launch_config_check=True, max_num_nodes=10_000, idle_timeout_s=60,
        node_type_configs={g.name: NodeTypeConfig(name=g.name, min_worker_nodes=g.min_workers,
                                                  max_worker_nodes=g.max_workers, resources=dict(g.resources))
                           for g in groups},
        resource_requests=ResourceRequestUtil.group_by_count([ResourceRequestUtil.make(d) for d in demands]))
    out: dict[str, int] = {}
    for launch in ResourceDemandScheduler().schedule(req).to_launch:
        out[launch.instance_type] = out.get(launch.instance_type, 0) + launch.count
    return out


def test_the_prefix_is_rays():
    from ray._raylet import IMPLICIT_RESOURCE_PREFIX
    assert IMPLICIT_PREFIX == IMPLICIT_RESOURCE_PREFIX


def test_max_replicas_per_node_spreads_replicas_over_pods():
    cfg = RayAutoscalerConfig(groups=(WorkerGroup(name="cpu", resources={"CPU": 8}, max_workers=10),))
    one_each = [{"CPU": 1, **per_node_limit("lora", "MultiLoRAModel", 1)}] * 3
    assert decide(cfg, [HEAD], one_each, now=0).queued == {"cpu": 3}     # CPU alone would fit one pod
    two_each = [{"CPU": 1, **per_node_limit("lora", "MultiLoRAModel", 2)}] * 5
    assert decide(cfg, [HEAD], two_each, now=0).queued == {"cpu": 3}
    # a pod already holding one replica has room for one more under a limit of 2, none under 1
    holder = worker(0, total={"CPU": 8}, free={"CPU": 7, **{k: 0.5 for k in per_node_limit("lora", "MultiLoRAModel", 2)}})
    assert decide(cfg, [HEAD, holder], two_each[:3], now=0).queued == {"cpu": 1}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from([None, 1, 2, 3]), st.integers(1, 6)), min_size=1, max_size=3),
       st.sampled_from([4, 8]), st.booleans())
def test_launches_match_rays_scheduler_on_implicit_demands(deployments, node_cpus, gpu_group):
    """Replicas of up to three deployments (CPU each, a per-node limit or none) on a CPU group,
    with or without a GPU group beside it: the pods per group Ray's scheduler wants."""
    groups = (WorkerGroup(name="cpu", resources={"CPU": node_cpus}, max_workers=50),)
    if gpu_group:
        groups += (WorkerGroup(name="gpu", resources={"CPU": 8, "GPU": 1}, max_workers=50),)
    demands = []
    for i, (cpus, limit, replicas) in enumerate(deployments):
        d = {"CPU": float(min(cpus, node_cpus))}
        if limit:
            d |= per_node_limit("app", f"D{i}", limit)
        demands += [d] * replicas
    cfg = RayAutoscalerConfig(groups=groups)
    assert decide(cfg, [HEAD], demands, now=0).queued == _ray_launches(groups, demands)
