"""`tuner sim` end to end (no stack needed), the validation arithmetic, and the profile's
derivation of a calibration from measured phases."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tuner.calibration_file import H100_TABLE, load_calibration
from tuner.profile import Phase, derive
from tuner.result import load_result
from tuner.sim.calibration import StageTiming
from tuner.validate import compare, replica_mae, sample

SIM = [sys.executable, "-m", "tuner.cli", "sim"]
CONFIG = yaml.safe_load(open("target_app/serve_config.yaml"))


def sim(tmp_path, *args, out="out"):
    cmd = [*SIM, "--out", str(tmp_path / out), "--duration", "40", "--warmup", "5", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def one_line_error(r) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    return lines[0]


def test_sim_writes_the_same_result_schema_as_a_real_trial(tmp_path):
    r = sim(tmp_path, "--scenario", "burst", "--rate", "3", "--target", "p99<2s,error_rate<5%")
    assert r.returncode in (0, 1), r.stderr
    res = load_result(tmp_path / "out" / "result.json")
    assert res.backend == "sim" and res.status in ("met", "missed") and res.exit_code == r.returncode
    assert res.overall.latency_ms.p99 > 0 and res.cost.cost > 0 and res.cost.window_s == 40
    assert set(res.routes) == {"/rag", "/predict", "/v1/completions"}
    assert len(res.replicas) == 11 and res.simulation.calibration == "local" and res.simulation.events > 0
    assert {c.clause.text for c in res.target.clauses} == {"p99<2s", "error_rate<5%"}
    assert (tmp_path / "out" / "records.parquet").exists()
    # the same inputs give the same trial
    sim(tmp_path, "--scenario", "burst", "--rate", "3", "--target", "p99<2s,error_rate<5%", out="again")
    a = json.loads((tmp_path / "out" / "result.json").read_text())
    b = json.loads((tmp_path / "again" / "result.json").read_text())
    for d in (a, b):
        d.pop("simulation"), d.pop("timings_s")
    assert a == b


def test_sim_on_a_cluster_layer_records_and_prices_the_pods(tmp_path):
    r = sim(tmp_path, "--cluster", "ray-autoscaler", "--llm-hpa", "--scenario", "steady", "--rate", "2")
    assert r.returncode in (0, 1), r.stderr
    res = load_result(tmp_path / "out" / "result.json")
    assert res.nodes["cpu-workers"][0] == (0.0, 1.0) and "llm-engines" in res.nodes  # 3 CPUs of replicas
    assert res.cost.node_cost == pytest.approx(res.cost.cost) and res.cost.node_seconds["cpu-workers"] > 0


@pytest.mark.parametrize("args, expected", [
    (["--cluster", "k8s"], "--cluster: 'k8s' is not one of fixed, ray-autoscaler, hpa"),
    (["--calibration", "tpu"], "--calibration: no calibration 'tpu'"),
    (["--scenario", "burst", "--burst-rsp", "3"], "unrecognized arguments: --burst-rsp"),
    (["--target", "p99<5"], "missing unit"),
])
def test_sim_usage_errors_exit_2_with_one_line(tmp_path, args, expected):
    r = sim(tmp_path, *args)
    assert r.returncode == 2 and expected in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_a_bad_calibration_file_names_the_field(tmp_path):
    bad = tmp_path / "cal.yaml"
    bad.write_text("name: x\nstages: {Reranker: {service_ms: [[1, -3]]}}\n")
    r = sim(tmp_path, "--calibration", str(bad))
    assert r.returncode == 2 and "stages.Reranker.service_ms" in one_line_error(r)


def test_the_gpu_calibration_takes_the_h100_rows():
    gpu = load_calibration("gpu-h100")
    rows = json.loads(H100_TABLE.read_text())["rows"]
    first = next(r for r in rows if r[0] == "bge-reranker-large-seq256" and r[1] == "float16" and r[2] == 1)
    assert gpu.stage("Reranker").mean_ms(1) == first[3]
    assert gpu.stage("VectorSearch") == load_calibration("local").stage("VectorSearch")


def test_step_timelines_are_compared_second_by_second():
    import numpy as np

    assert list(sample([(0.0, 1), (2.5, 3)], np.array([0.0, 2.0, 3.0]))) == [1, 1, 3]


def test_compare_reports_relative_errors_and_the_replica_mae(tmp_path):
    r = sim(tmp_path, "--scenario", "steady", "--rate", "2")
    assert r.returncode in (0, 1), r.stderr
    real = load_result(tmp_path / "out" / "result.json")
    fake = real.model_copy(deep=True)
    fake.overall.latency_ms.p99 = real.overall.latency_ms.p99 * 1.5
    fake.replicas = {k: [(0.0, v[0][1] + 1)] for k, v in real.replicas.items()}
    cmp = compare(real, fake)
    p99 = next(x for x in cmp["latency"] if x["route"] == "all" and x["metric"] == "p99")
    assert p99["error"] == pytest.approx(0.5) and p99["met"] is False
    assert set(replica_mae(real, fake, 40).values()) == {1.0} and not cmp["all_met"]
    assert compare(real, real)["all_met"]


def _phase(route, c, lat, deps, stages=None, llm=0.0, prompt=None):
    return Phase(route=route, concurrency=c, start=0.0, end=10.0, latencies_ms=lat, stages_ms=stages or [], burst=c == 4,
                 deployments={**deps, "__llm__": {"e2e_ms": llm, "prompt_tokens": prompt}, "__duration__": {"s": 10.0}})


def test_profile_derives_service_times_from_the_exact_figures_first():
    rag = {"RAGService": {"processing_ms": 300.0, "processed": 10}, "QueryRewriter": {"processing_ms": 30, "processed": 10,
           "batches": 10, "batch_ms": 20.0}, "VectorSearch": {"processing_ms": 40, "processed": 10},
           "Reranker": {"processing_ms": 20, "processed": 10, "batches": 10, "batch_ms": 14.0},
           "LLMGenerator": {"processing_ms": 200, "processed": 10}}
    burst = {**rag, "QueryRewriter": {"processing_ms": 40, "processed": 20, "batches": 5, "batch_ms": 30.0}}
    stages = [{"rewrite": 26.0, "search": 41.0, "rerank": 20.0, "generate": 210.0}] * 5
    phases = [
        _phase("/rag", 1, [300.0] * 5, rag, stages, llm=180.0, prompt=250.0),
        _phase("/rag", 2, [320.0] * 5, rag, stages, llm=180.0, prompt=250.0),
        _phase("/rag", 4, [400.0] * 5, burst, [{**stages[0], "rewrite": 40.0}] * 5, llm=180.0, prompt=250.0),
        _phase("/predict", 1, [20.0, 22.0, 24.0], {"DomainRouter": {"processing_ms": 15, "processed": 30},
               "LegalClassifier": {"processing_ms": 8, "processed": 30, "batches": 30, "batch_ms": 3.0}}),
        _phase("/v1/completions", 1, [150.0, 160.0], {"LoRACompletions": {"processing_ms": 140, "processed": 10},
               "MultiLoRAModel": {"processing_ms": 130, "processed": 10, "loads": 5, "load_ms": 40.0}}),
    ]
    cal = derive(phases, {"Reranker": 12000.0}, "h100-llama3-8b", "test", CONFIG, name="t")
    assert cal.stage("QueryRewriter").mean_ms(1) == pytest.approx(26.0 - 5.0)  # less the batch wait
    # the burst formed batches of 4 (20 requests in 5 batches) taking 1.5x the single batch's time
    assert cal.stage("QueryRewriter").service_ms == ((1, 21.0), (4, 31.5))
    assert cal.stage("LegalClassifier").service_ms == ((1, 3.0),)  # no burst: flat
    assert cal.stage("VectorSearch").mean_ms(1) == pytest.approx(41.0)
    assert cal.stage("LLMGenerator").mean_ms(1) == pytest.approx(30.0)  # less the LLM's own time
    assert cal.stage("MultiLoRAModel").mean_ms(1) == pytest.approx(130.0 - 0.5 * 40.0)
    assert cal.stage("MultiLoRAModel").load_ms == 40.0 and cal.stage("Reranker").start_s == 12.0
    assert cal.stage("LegalClassifier").mean_ms(1) == pytest.approx(3.0)
    assert cal.llm.prompt_tokens == 250
    # the proxy: the short routes' client latency less their ingress (median of 22-15, 155-140)
    assert cal.proxy_ms == pytest.approx(11.0)
    # each ingress takes what the client saw beyond what the simulator explains: settled again,
    # it moves by little (the simulated requests now take the phase's mean)
    from tuner.profile import settle_ingresses
    single = {p.route: p for p in phases if p.concurrency == 1}
    again = settle_ingresses(cal, single, CONFIG)
    for ingress in ("RAGService", "DomainRouter", "LoRACompletions"):
        assert again[ingress].mean_ms(1) == pytest.approx(cal.stage(ingress).mean_ms(1), rel=0.1, abs=2.0)
    assert cal.stage("RAGService").mean_ms(1) > 0.2  # the stages' hops it calls through are its time too
    assert not cal.stage("Reranker").cpu_bound and not cal.stage("LLMGenerator").cpu_bound  # emulated, HTTP wait
    assert not cal.stage("QueryRewriter").cpu_bound and cal.stage("VectorSearch").cpu_bound


def test_profile_charges_each_route_the_host_cpu_its_requests_cost_beyond_their_stages():
    from tuner.profile import request_cpu_ms

    def ph(route, n, busy):
        return Phase(route=route, concurrency=1, start=0.0, end=10.0, latencies_ms=[1.0] * n, busy_cores=busy)

    # 0.3 cores busy when idle; /predict: +0.05 cores per request/s -> 50 ms of CPU per request;
    # burst phases (no CPU figure) do not count
    burst = ph("/predict", 300, None)
    burst.burst = True
    phases = [ph("/predict", 100, 0.3 + 10 * 0.05), ph("/predict", 200, 0.3 + 20 * 0.05), burst, ph("/rag", 50, 0.3)]
    out = request_cpu_ms(phases, 0.3, {"/predict": 20.0, "/rag": 100.0})
    assert out["/predict"] == pytest.approx(30.0) and out["/rag"] == 0.0 and "/v1/completions" not in out


def test_stack_cpu_counts_a_replaced_process_without_going_negative():
    from tuner.profile import cpu_by_group, cpu_used_s

    before = {(10, 1.0, "LoRACompletions"): 50.0, (11, 1.0, "proxy"): 3.0}
    # 10 exited; its PID came back as a new process of the same deployment
    after = {(11, 1.0, "proxy"): 4.5, (12, 9.0, "Milvus Lite"): 0.7, (10, 8.0, "LoRACompletions"): 0.2}
    assert cpu_used_s(before, after) == pytest.approx(1.5 + 0.7 + 0.2)
    assert cpu_by_group(before, after) == pytest.approx({"proxy": 1.5, "Milvus Lite": 0.7, "LoRACompletions": 0.2})


def test_an_ingress_that_mostly_waits_is_not_cpu_work():
    from tuner.profile import _mostly_cpu

    one = Phase("/v1/completions", 1, 0.0, 20.0, deployments={"LoRACompletions": {"processed": 100.0}},
                cpu_s={"LoRACompletions": 0.8})   # 8 ms of CPU a request
    assert not _mostly_cpu("LoRACompletions", StageTiming(service_ms=((1, 60.0),)), one)
    assert _mostly_cpu("LoRACompletions", StageTiming(service_ms=((1, 12.0),)), one)
    assert _mostly_cpu("LoRACompletions", StageTiming(service_ms=((1, 60.0),)), Phase("/v1/completions", 1, 0.0, 20.0))
