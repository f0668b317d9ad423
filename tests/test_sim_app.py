"""The simulated app: its graph, the LLM backend, the cluster layers, multiplexing and Serve's
router timing; conservation and determinism on the shipped config."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pandas as pd
import pytest

from target_app.llm_server.profile import LatencyProfile
from tuner.calibration_file import accelerator_tables
from tuner.policies.hpa import HPASpec, MetricTarget
from tuner.policies.ray_autoscaler import RayAutoscalerConfig, WorkerGroup
from tuner.sim.app import ClientRequest, SimApp, deployments_from_config
from tuner.sim.calibration import Calibration, LLMCalibration, StageTiming
from tuner.sim.cluster import Cluster, ClusterSpec, HPAOnWorkers
from tuner.sim.deployment import DeploymentSpec, Request, SimDeployment
from tuner.sim.engine import Engine
from tuner.sim.llm import SimLLM
from tuner.sim.run import simulate

from tests.cpu_config import cpu_config

CONFIG = cpu_config()
FIXED = ClusterSpec()


def plan(n: int, rate: float, paths=("/rag", "/predict", "/v1/completions"), seed: int = 0, adapters: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n))
    path = rng.choice(paths, n)
    return pd.DataFrame({"t": t, "path": path, "stream": path == "/rag",
                         "adapter": [f"lora-{i:02d}" if p == "/v1/completions" else None
                                     for p, i in zip(path, rng.integers(0, adapters, n))],
                         "domain": [d if p == "/predict" else None for p, d in zip(path, rng.choice(["legal", "medical", "finance"], n))],
                         "prompt_tokens": None, "max_tokens": None})


def calibration(**stages) -> Calibration:
    return Calibration(name="test", proxy_ms=2.0, hop_ms=1.0, stages={k: StageTiming(**v) for k, v in stages.items()},
                       default_stage=StageTiming(service_ms=((1, 1.0),), cv=0.0))


def test_the_config_maps_onto_the_graph_with_its_settings():
    d = deployments_from_config(CONFIG)
    assert d["QueryRewriter"].spec.max_batch_size == 16 and d["QueryRewriter"].spec.batch_wait_timeout_s == 0.005
    assert d["Reranker"].spec.max_batch_size == 4 and d["MultiLoRAModel"].spec.max_models_per_replica == 4
    assert d["MultiLoRAModel"].replicas == 2 and d["MultiLoRAModel"].autoscaling.max_replicas == 4
    assert d["RAGService"].spec.max_concurrent_batches == 64 and d["RAGService"].demand == {"CPU": 0.25}
    broken = {"applications": [a for a in CONFIG["applications"] if a["name"] != "router"]}
    with pytest.raises(ValueError, match="DomainRouter"):
        deployments_from_config(broken)


def test_a_lone_request_takes_the_sum_of_its_hops():
    """/predict at idle: proxy + router's own time + a hop + the batch timeout + the classifier."""
    cal = calibration(DomainRouter={"service_ms": ((1, 3.0),), "cv": 0.0},
                      LegalClassifier={"service_ms": ((1, 20.0),), "cv": 0.0})
    p = pd.DataFrame({"t": [1.0], "path": ["/predict"], "stream": [False], "adapter": [None], "domain": ["legal"],
                      "prompt_tokens": [None], "max_tokens": [None]})
    out = simulate(CONFIG, p, cal, FIXED, tables=accelerator_tables(CONFIG), duration_s=5, warmup_s=0)
    assert out.records["latency_ms"].iloc[0] == pytest.approx(2.0 + 3.0 + 1.0 + 5.0 + 20.0)


def test_the_llm_backend_follows_the_emulators_scheduler():
    prof = LatencyProfile(step_base_ms=5.0, step_per_seq_ms=0.5, prefill_per_token_ms=0.01)
    e = Engine()
    llm = SimLLM(e, prof, engines=1, seed=0)
    seen = {}
    llm.submit(100, 4, lambda t: seen.setdefault("first", t), lambda itl: seen.setdefault("itl", itl))
    e.run()
    assert seen["first"] == pytest.approx((5.0 + 0.01 * 100) / 1000)
    assert seen["itl"] == pytest.approx([5.5, 5.5, 5.5])


def test_every_arrival_ends_exactly_once_and_a_seed_repeats():
    p = plan(3000, 40.0)
    cal = calibration(QueryRewriter={"service_ms": ((1, 10.0), (16, 40.0))}, Reranker={"service_ms": ((1, 15.0),)},
                      MultiLoRAModel={"service_ms": ((1, 60.0),), "concurrency": 1, "load_ms": 40.0})
    a = simulate(CONFIG, p, cal, FIXED, tables=accelerator_tables(CONFIG), duration_s=75, warmup_s=5, seed=3, max_in_flight=200)
    b = simulate(CONFIG, p, cal, FIXED, tables=accelerator_tables(CONFIG), duration_s=75, warmup_s=5, seed=3, max_in_flight=200)
    r = a.records
    assert len(r) == (p["t"] < 75).sum()
    ended = r["dropped"] | r["unfinished"] | r["status"].notna()
    assert ended.all()
    assert not (r["dropped"] & r["status"].notna()).any()
    pd.testing.assert_frame_equal(a.records, b.records)
    assert a.replicas == b.replicas
    c = simulate(CONFIG, p, cal, FIXED, tables=accelerator_tables(CONFIG), duration_s=75, warmup_s=5, seed=4, max_in_flight=200)
    assert not c.records["latency_ms"].equals(a.records["latency_ms"])


def test_overload_scales_the_autoscaled_deployments_up():
    p = plan(6000, 60.0, paths=("/v1/completions",))
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 80.0),), "concurrency": 1, "start_s": 2.0})
    out = simulate(CONFIG, p, cal, FIXED, tables=accelerator_tables(CONFIG), duration_s=90, warmup_s=0)
    tl = out.replicas["lora/MultiLoRAModel"]
    assert max(v for _, v in tl) == 4  # max_replicas
    first_up = next(t for t, v in tl if v > 2)
    assert first_up >= 10.0  # upscale_delay_s after the metrics show the load


def test_multiplexing_keeps_adapters_where_they_are_loaded():
    spec = DeploymentSpec(name="m", max_ongoing_requests=4, max_concurrent_batches=1, max_models_per_replica=2)
    e = Engine()
    dep = SimDeployment(e, spec, 4, lambda n, rng: 0.01, np.random.default_rng(0), backoff=True)
    done: list[Request] = []
    rng = random.Random(1)
    reqs = [Request(i, i * 0.05, done.append, model=f"a{rng.randrange(4)}") for i in range(400)]
    for r in reqs:
        e.at(r.arrival, dep.submit, r)
    e.run()
    misses = sum(r.miss for r in reqs)
    assert len(done) == 400 and misses <= 8  # 4 adapters over 4 replicas x 2 slots: each loads once or twice
    dep2 = SimDeployment(Engine(), spec.model_copy(update={"max_models_per_replica": 1}), 1, lambda n, rng: 0.01,
                         np.random.default_rng(0))
    out: list[Request] = []
    for i in range(40):
        dep2.engine.at(i * 0.05, dep2.submit, Request(i, i * 0.05, out.append, model=f"a{i % 2}"))
    dep2.engine.run()
    assert sum(r.miss for r in out) == 40  # LRU of one, alternating adapters: every request loads


def test_serves_router_takes_a_freed_slot_at_its_next_retry():
    spec = DeploymentSpec(name="d", max_ongoing_requests=1)
    results = {}
    for backoff in (False, True):
        e = Engine()
        dep = SimDeployment(e, spec, 1, lambda n, rng: 0.1, np.random.default_rng(0), backoff=backoff)
        done: list[Request] = []
        for i in range(2):
            e.at(0.0, dep.submit, Request(i, 0.0, done.append))
        e.run()
        results[backoff] = sorted(r.end for r in done)
    assert results[False] == pytest.approx([0.1, 0.2])
    # queued at 0: retries at 0, 0.025, 0.075, 0.175 -> the slot freed at 0.1 is taken at 0.175
    assert results[True] == pytest.approx([0.1, 0.275])


def test_the_ray_autoscaler_adds_pods_for_pending_replicas_and_removes_idle_ones():
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=RayAutoscalerConfig(
        groups=(WorkerGroup(name="w", resources={"CPU": 4}, min_workers=0, max_workers=5),),
        idle_timeout_s=20, loop_s=5, pod_start_s=30))
    p = plan(4000, 60.0, paths=("/v1/completions",))
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 80.0),), "concurrency": 1, "start_s": 2.0})
    out = simulate(CONFIG, p, cal, spec, tables=accelerator_tables(CONFIG), duration_s=200, warmup_s=0, drain_s=120)
    pods = out.nodes["w"]
    assert pods[0] == (0.0, 2)  # settled: the starting replicas' 7.5 CPUs on 4-CPU pods
    assert max(v for _, v in pods) == 3  # MultiLoRAModel up to 4 replicas: 2 more CPUs
    grown = next(t for t, v in pods if v == 3)
    running = next(t for t, v in out.replicas["lora/MultiLoRAModel"] if v == 4)
    assert running >= grown + 30  # the pod joins after pod_start_s, then the replica starts
    assert pods[-1][1] == 2  # after the load, the idle pod goes


def test_max_replicas_per_node_puts_each_replica_on_its_own_pod():
    """Serve's per-node limit through Ray's implicit resource: pods big enough for every replica
    still take one MultiLoRAModel replica each, and the autoscaler adds one pod per new replica."""
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=RayAutoscalerConfig(
        groups=(WorkerGroup(name="w", resources={"CPU": 16}, min_workers=0, max_workers=8),),
        idle_timeout_s=20, loop_s=5, pod_start_s=10))
    p = plan(4000, 60.0, paths=("/v1/completions",))
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 80.0),), "concurrency": 1, "start_s": 2.0})
    runs = {}
    for limit in (None, 1):
        cfg = copy.deepcopy(CONFIG)
        lora = next(d for a in cfg["applications"] for d in a["deployments"] if d["name"] == "MultiLoRAModel")
        if limit:
            lora["max_replicas_per_node"] = limit
        runs[limit] = simulate(cfg, p, cal, spec, tables=accelerator_tables(cfg), duration_s=120, warmup_s=0)
    assert runs[None].nodes["w"][0] == (0.0, 1)   # every starting replica fits one 16-CPU pod
    assert runs[1].nodes["w"][0] == (0.0, 2)      # two LoRA replicas at start: two pods
    lora_peak = max(v for _, v in runs[1].replicas["lora/MultiLoRAModel"])
    assert lora_peak == 4 and max(v for _, v in runs[1].nodes["w"]) == lora_peak


def test_an_hpa_on_busy_worker_pods_adds_pods():
    hpa = HPAOnWorkers(group="w", spec=HPASpec(min_replicas=2, max_replicas=6, metrics=(
        MetricTarget(source="Resource", name="cpu", target_type="Utilization", target=30),)), pod_start_s=10)
    spec = ClusterSpec(layer="hpa", head={"CPU": 0}, groups=(WorkerGroup(name="w", resources={"CPU": 4}, max_workers=6),), hpa=hpa)
    p = plan(6000, 60.0, paths=("/v1/completions",))
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 80.0),), "concurrency": 1, "start_s": 2.0})
    out = simulate(CONFIG, p, cal, spec, tables=accelerator_tables(CONFIG), duration_s=100, warmup_s=0)
    assert out.nodes["w"][0] == (0.0, 2) and max(v for _, v in out.nodes["w"]) > 2


def test_placement_waits_for_room_and_frees_it():
    e = Engine()
    c = Cluster(e, ClusterSpec(head={"CPU": 1}), lambda r: {"CPU": 1})

    class R:
        node = None
    a, b = R(), R()
    placed = []
    c.request(a, placed.append)
    c.request(b, placed.append)
    assert placed == [a] and len(c.pending) == 1
    c.release(a)
    assert placed == [a, b] and not c.pending


def test_a_client_request_over_the_in_flight_cap_is_dropped():
    app = SimApp(CONFIG, calibration(), FIXED, seed=0, start=0.0, until=10.0, tables=accelerator_tables(CONFIG),
                 max_in_flight=1)
    a = ClientRequest(0, 0.0, "/predict", False, None, "legal", None, None)
    b = ClientRequest(1, 0.001, "/predict", False, None, "legal", None, None)
    app.send(a)
    app.send(b)
    app.run()
    assert a.status == 200 and b.dropped and math.isnan(b.end)


def test_calibration_interpolates_and_draws_with_its_mean_and_spread():
    t = StageTiming(service_ms=((1, 10.0), (4, 16.0)), cv=0.5)
    assert t.mean_ms(2) == pytest.approx(12.0) and t.mean_ms(8) == pytest.approx(24.0) and t.mean_ms(1) == 10.0
    draw = t.sampler(random.Random(0))
    xs = np.array([draw(4) for _ in range(40000)])
    assert xs.mean() == pytest.approx(0.016, rel=0.02) and xs.std() / xs.mean() == pytest.approx(0.5, rel=0.05)
    assert LLMCalibration().profile.max_num_seqs == 256


@pytest.mark.parametrize("cores, owners, ends", [
    (1.0, ("a", "b"), [2.0, 2.0]), (2.0, ("a", "b"), [1.0, 1.0]), (4.0, ("a", "b"), [1.0, 1.0]),
    (2.0, ("a", "a"), [2.0, 2.0]),  # one process: its jobs share one core however many the host has
])
def test_the_host_shares_its_cores_among_processes_and_a_process_among_its_jobs(cores, owners, ends):
    from tuner.sim.host import Host

    e = Engine()
    h = Host(e, cores)
    seen = []
    for owner in owners:
        h.run(1.0, lambda _: seen.append(e.now), None, owner)
    e.run()
    assert seen == pytest.approx(ends)


def test_a_job_started_later_shares_only_from_then_on():
    from tuner.sim.host import Host

    e = Engine()
    h = Host(e, 1.0)
    seen = {}
    h.run(1.0, lambda _: seen.setdefault("a", e.now), None, "p")
    e.at(0.5, lambda _: h.run(0.25, lambda _: seen.setdefault("b", e.now), None, "q"))
    e.at(0.5, lambda _: h.run(0.25, lambda _: seen.setdefault("c", e.now), None, "q"))
    e.run()
    # from 0.5: p gets half a core for its last 0.5 s of work, q the other half shared by b and
    # c (0.25 s each): all three are done at 1.5
    assert seen == pytest.approx({"a": 1.5, "b": 1.5, "c": 1.5})


def test_a_request_waiting_for_hours_keeps_retrying_at_the_capped_backoff():
    # With no replica ever free the router retries every MAX_BACKOFF_S, however long it waits
    # (an uncapped exponent overflowed a float after about a thousand retries).
    spec = DeploymentSpec(name="d", max_ongoing_requests=1)
    e = Engine()
    dep = SimDeployment(e, spec, 1, lambda n, rng: 4000.0, np.random.default_rng(0))
    done: list[Request] = []
    for i in range(2):
        e.at(0.0, dep.submit, Request(i, 0.0, done.append))
    e.run()
    assert sorted(r.end for r in done) == pytest.approx([4000.0, 8000.0], abs=0.5)


def test_replicas_that_never_fit_leave_requests_timed_out_not_a_run_without_end():
    # 9 CPUs of minimum replicas on at most two 4-CPU pods: some never start, and requests
    # routed to them wait until the run's end (they used to retry for ever).
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=RayAutoscalerConfig(
        groups=(WorkerGroup(name="w", resources={"CPU": 4}, min_workers=0, max_workers=1),), loop_s=5, pod_start_s=5))
    p = plan(4000, 20.0, paths=("/v1/completions",))
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 80.0),), "concurrency": 1, "start_s": 2.0})
    cfg = copy.deepcopy(CONFIG)
    for app in cfg["applications"]:
        for dep in app["deployments"]:
            if dep["name"] == "MultiLoRAModel":
                dep["ray_actor_options"] = {"num_cpus": 8}
    out = simulate(cfg, p, cal, spec, tables=accelerator_tables(cfg), duration_s=20, warmup_s=0, drain_s=5, request_timeout_s=30)
    lora = out.records[out.records["route"] == "/v1/completions"]
    assert len(lora) > 0 and (lora["error"] == "timeout").all()
