"""The whole stack through the real CLI: up, every route over HTTP, Prometheus, an
in-place config update, up twice, a port in use, and down leaving nothing behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pandas as pd
import pytest
import yaml

from target_app import corpus
from target_app.paths import DEFAULT_SERVE_CONFIG
from tests.conftest import our_processes, pid_snapshot
from tuner import deploy
from tuner.ports import free_port
from tuner.prometheus import Prometheus

pytestmark = pytest.mark.e2e
TUNER = [sys.executable, "-m", "tuner.cli"]


def tuner(*args, timeout=900):
    return subprocess.run([*TUNER, *args], capture_output=True, text=True, timeout=timeout)


class Stack:
    def __init__(self, tmp):
        self.state_dir = tmp / "state"
        self.ports = {name: free_port() for name in ("ray-gcs", "ray-dashboard", "ray-metrics", "llm", "milvus", "prometheus")}
        self.http_port = free_port()
        cfg = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
        cfg["http_options"]["port"] = self.http_port
        self.config_path = tmp / "serve_config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.config = cfg
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dashboard = f"http://127.0.0.1:{self.ports['ray-dashboard']}"
        self.prometheus = Prometheus(f"http://127.0.0.1:{self.ports['prometheus']}")

    def port_args(self):
        return [x for name, port in self.ports.items() for x in (f"--{name}-port", str(port))]

    def headers(self):
        return {"Authorization": "Bearer " + (self.state_dir / "ray-auth-token").read_text().strip()}

    def recorded_pids(self):
        state = json.loads((self.state_dir / "state.json").read_text())
        return sorted(p["pid"] for p in state["processes"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, built_models):
    s = Stack(tmp_path_factory.mktemp("stack"))
    s.before = pid_snapshot()
    # 2 s scrapes: the wait for Prometheus after each trial is 10 s rather than 22 (the suite's time).
    # Not 1 s scrapes: a scrape times out at its interval, and a busy host's slow scrapes would
    # read as gaps.
    r = tuner("stack", "up", "--config", str(s.config_path), "--state-dir", str(s.state_dir), *s.port_args(),
              "--scrape-interval", "2", "--metrics-report-ms", "2000")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        s.up_output = r.stdout
        yield s
    finally:
        tuner("stack", "down", "--state-dir", str(s.state_dir), timeout=120)


def post(stack, path, body, **kw):
    return httpx.post(stack.url + path, json=body, timeout=60, **kw)


def test_status_reports_every_part_healthy(stack):
    r = tuner("stack", "status", "--state-dir", str(stack.state_dir))
    assert r.returncode == 0, r.stdout
    for part in ("prometheus", "milvus", "llm", "ray", "serve"):
        assert part in r.stdout


def test_every_server_we_start_listens_on_loopback_only(stack):
    """Our servers (Prometheus, Milvus, the LLM emulator, the Ray dashboard, metrics and Serve's
    proxy) and Ray's agents listen on loopback only. Ray's core gRPC servers (GCS, raylet,
    workers) listen on every interface in this Ray version, with token authentication on."""
    from tests.conftest import beyond_loopback, listening
    from tuner.processes import ProcessRecord, descendants

    state = json.loads((stack.state_dir / "state.json").read_text())
    records = [ProcessRecord.from_dict(d) for d in state["processes"]]
    sockets = listening([p for rec in [*records, *descendants(records)] if (p := rec.process()) is not None])
    ours = {*stack.ports.values(), stack.http_port}
    assert ours <= {port for _, _, port in sockets}, (ours, sockets)
    assert not beyond_loopback(sockets), sockets
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for _, ip, port in sockets if port in ours), sockets


def test_milvus_keeps_the_memory_its_searches_free(stack):
    """Milvus Lite's server runs one search thread with glibc told to keep freed memory, so a
    search does not fault its temporaries back in from the hypervisor (tuner.stack)."""
    from tuner.processes import ProcessRecord
    from tuner.stack import MILVUS_ENV

    state = json.loads((stack.state_dir / "state.json").read_text())
    milvus = next(ProcessRecord.from_dict(d) for d in state["processes"] if d["name"] == "milvus").process()
    env = milvus.environ()
    assert {k: env.get(k) for k in MILVUS_ENV} == MILVUS_ENV
    assert "MALLOC_TRIM_THRESHOLD_" in MILVUS_ENV and MILVUS_ENV["OMP_NUM_THREADS"] == "1"


def test_rag_answers_with_five_sources_from_milvus(stack):
    from pymilvus import MilvusClient

    docs = corpus.passages()
    q = corpus.questions(docs, 1, seed=42)[0]
    r = post(stack, "/rag", {"query": q.text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] and len(body["sources"]) == 5
    assert q.passage_id in body["sources"]
    client = MilvusClient(f"http://127.0.0.1:{stack.ports['milvus']}")
    rows = client.query("docs", ids=body["sources"], output_fields=["text"])
    client.close()
    assert sorted(row["id"] for row in rows) == sorted(body["sources"])
    assert {row["id"]: row["text"] for row in rows}[q.passage_id] == docs[q.passage_id].text


def test_rag_streams_when_asked(stack):
    with httpx.stream("POST", stack.url + "/rag", json={"query": "What is Vorhalzan concerned with?", "stream": True},
                      timeout=60) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert len(json.loads(events[0])["sources"]) == 5
    assert events[-1] == "[DONE]"
    generator = stack.config["applications"][0]["deployments"][4]["user_config"]
    # Tokens come in batches of the stream interval (the first alone): all of them, in fewer events.
    deltas = [json.loads(e) for e in events[1:-1]]
    assert sum(d["tokens"] for d in deltas) == generator["max_tokens"] and 2 <= len(deltas) < generator["max_tokens"]


def test_predict_routes_by_domain_and_refuses_unknown(stack):
    r = post(stack, "/predict", {"domain": "finance", "text": "merchant refund on a card payment"})
    assert r.status_code == 200 and r.json()["label"] == "payments" and r.json()["compute"] == "emulated:l4"
    r = post(stack, "/predict", {"domain": "sports", "text": "offside"})
    assert r.status_code == 400 and "unknown domain 'sports'" in r.json()["detail"]


def test_lora_cold_then_warm_on_the_replica_holding_the_adapter(stack):
    body = {"model": "lora-29", "prompt": "Summarise the policy", "max_tokens": 8}
    t0 = time.perf_counter()
    cold = post(stack, "/v1/completions", body)
    cold_s = time.perf_counter() - t0
    assert cold.status_code == 200, cold.text
    assert cold.json()["serve"]["adapter_cache"] == "miss"
    home = cold.json()["serve"]["replica"]
    warm_s = []
    for i in range(6):
        kw = {"headers": {"serve_multiplexed_model_id": "lora-29"}} if i % 2 else {}
        payload = {k: v for k, v in body.items() if not (i % 2 and k == "model")}
        t0 = time.perf_counter()
        warm = post(stack, "/v1/completions", payload, **kw)
        warm_s.append(time.perf_counter() - t0)
        assert warm.json()["serve"] == {**warm.json()["serve"], "adapter_cache": "hit", "replica": home}
        assert warm.json()["choices"][0]["text"] == cold.json()["choices"][0]["text"]
    assert sorted(warm_s)[len(warm_s) // 2] < cold_s
    models = httpx.get(stack.url + "/v1/models", timeout=30).json()["data"]
    assert len(models) >= 32


def test_priming_leaves_the_trials_most_requested_adapters_loaded(stack, tmp_path):
    """A trial's prime phase on the real stack (that the trial's deploy replaces the LoRA
    replicas first is checked on the `trial` fixture's result)."""
    from tuner.plan import make_plan, scenario_arrivals
    from tuner.trial import prime_models

    plan = make_plan(config=stack.config_path, scenario="steady", scenario_args=["--rate", "1", "--mix", "lora=1"],
                     target="p99<5s", duration_s=5, warmup_s=0, out=tmp_path)
    adapters = plan.prime_rows(scenario_arrivals(plan)[1])["adapter"].tolist()
    note = prime_models(plan, stack.url)
    assert len(adapters) >= 2 and note.startswith(f"primed {len(adapters)} multiplexed models in ") and "failed" not in note
    for adapter in adapters[-2:]:  # the most requested, primed last: an LRU holds them whatever it evicted
        r = post(stack, "/v1/completions", {"model": adapter, "prompt": "Summarise the policy", "max_tokens": 8})
        assert r.status_code == 200 and r.json()["serve"]["adapter_cache"] == "hit", (adapter, r.text[:300])


def test_every_route_answers_right_with_every_stage_local(stack):
    """The same app with every model computed on this CPU (compute.mode local): right passages,
    right labels, real completions; the shipped emulated config is deployed back after."""
    from tests.cpu_config import cpu_config

    local = {**cpu_config(), "http_options": stack.config["http_options"]}
    apps = [a["name"] for a in local["applications"]]
    try:
        deploy.deploy(stack.dashboard, local, stack.headers())
        deploy.wait_running(stack.dashboard, apps, 600, stack.headers())
        docs = corpus.passages()
        for q in corpus.questions(docs, 3, seed=21):
            body = post(stack, "/rag", {"query": q.text}).json()
            assert q.passage_id in body["sources"] and body["compute"] == {"rewrite": "local", "rerank": "local"}
        r = post(stack, "/predict", {"domain": "finance", "text": "merchant refund on a card payment"}).json()
        assert r["label"] == "payments" and r["compute"] == "local" and 0 < r["score"] <= 1
        r = post(stack, "/v1/completions", {"model": "lora-11", "prompt": "Summarise the policy", "max_tokens": 4}).json()
        assert r["usage"]["completion_tokens"] == 4 and r["serve"]["compute"] == "local"
    finally:
        deploy.deploy(stack.dashboard, stack.config, stack.headers())
        deploy.wait_running(stack.dashboard, apps, 600, stack.headers())


def test_prometheus_has_serve_and_vllm_series(stack):
    want_apps = {a["name"] for a in stack.config["applications"]}
    deadline = time.monotonic() + 60
    while True:
        apps = {m.get("application") for m, _ in stack.prometheus.vector("ray_serve_num_http_requests_total")}
        deployments = {m["deployment"] for m, _ in stack.prometheus.vector("ray_serve_deployment_replica_healthy")}
        llm_ok = stack.prometheus.scalar('sum(vllm:request_success_total)')
        if want_apps <= apps and len(deployments) == 11 and llm_ok:
            break
        assert time.monotonic() < deadline, (apps, deployments, llm_ok)
        time.sleep(2)
    assert stack.prometheus.vector("vllm:num_requests_running")
    assert stack.prometheus.vector('ray_serve_deployment_processing_latency_ms_bucket{deployment="QueryRewriter"}')


def _replicas(stack, deployment):
    details = deploy.serve_details(stack.dashboard, stack.headers())
    reps = details["applications"]["rag"]["deployments"][deployment]["replicas"]
    return sorted((r["replica_id"], r["actor_id"]) for r in reps)


def _live_batch_settings(stack):
    script = textwrap.dedent(f"""
        import json, ray
        from ray import serve
        ray.init(address="127.0.0.1:{stack.ports['ray-gcs']}", log_to_driver=False)
        h = serve.get_deployment_handle("QueryRewriter", app_name="rag")
        print(json.dumps(h.batch_settings.remote().result()))
    """)
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(stack.state_dir / "ray-auth-token"),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # as the stack's node: on loopback
    import os

    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


BURST = ["--scenario", "scenarios/burst.py", "--rate", "2", "--burst-first", "5", "--burst-width", "4",
         "--burst-rps", "3"]
MET = "p99<5s,p95[/rag]<5s,ttft_p99<5s,itl_p99<1s,error_rate<5%,throughput>=0.5rps"


@pytest.fixture(scope="module")
def trial(stack, tmp_path_factory):
    """One real trial of the burst scenario against a target it meets."""
    out = tmp_path_factory.mktemp("trial") / "met"
    r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--target", MET,
              "--duration", "15", "--warmup", "3", "--out", str(out), *BURST, timeout=600)
    from tuner.result import load_result

    return r, out, load_result(out / "result.json")


def test_run_meets_a_generous_target_with_a_table(trial):
    r, out, result = trial
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert result.status == "met" and "MET" in r.stdout and "deployments (Prometheus)" in r.stdout
    assert [c.clause.text for c in result.target.clauses] == MET.split(",")
    assert all(c.passed and c.client is not None and c.server is not None for c in result.target.clauses)
    for name in ("records.parquet", "series.parquet", "serve_config.yaml", "locust.log", "client_summary.json"):
        assert (out / name).is_file(), name
    assert set(result.routes) == {"/rag", "/predict", "/v1/completions"}
    # health is reported; a late generator (CPU contention here) still gives a verdict when its lag does not decide it
    assert result.generator.lag_ms_p99 is not None and result.generator.cpu_pct is not None
    assert {"check", "deploy", "prime", "warmup", "load", "collect"} <= set(result.timings_s)
    # the stack deployed this config; the trial's hold-and-release is in place, but the
    # multiplexed deployment starts on new replicas, which the trial's adapters then prime
    assert result.deploy.replaced == ["lora/MultiLoRAModel"] and result.deploy.replicas["lora/MultiLoRAModel"] == 2
    assert result.scenario.prime and any(r.startswith("primed ") and "failed" not in r for r in result.reasons)
    assert result.versions["ray"] == "2.60.0" and result.versions["prometheus"] != "unknown"


def test_run_client_numbers_are_the_records(trial):
    import numpy as np

    from loadgen import records
    from tuner.target import client_value

    _, out, result = trial
    rec = records.load(out / "records.parquet")
    assert len(rec) == result.overall.arrivals
    assert result.overall.arrivals == pytest.approx(result.scenario.expected_arrivals, rel=0.5)
    assert result.window.end - result.window.start == 15
    assert rec["scheduled"].between(result.window.start, result.window.end).all()
    for route, r in result.routes.items():
        lat = rec.loc[(rec["route"] == route) & ~rec["dropped"], "latency_ms"]
        assert r.latency_ms.p99 == pytest.approx(float(np.percentile(lat, 99)))
    for cv in result.target.clauses:
        assert cv.client == client_value(cv.clause, rec, 15)


def test_run_server_numbers_are_prometheus_and_agree_with_the_client(trial, stack):
    from tuner import collect, promql

    _, _, result = trial
    w = result.window
    for cv in result.target.clauses:
        # the same query at the same instant; Prometheus may sum the series in another order
        assert cv.server == pytest.approx(collect.clause_value(stack.prometheus, cv.clause, w.start, w.collected_at, 15),
                                          rel=1e-9)
    buckets = (0,) + promql.SERVE_LATENCY_BUCKETS_MS
    for route, r in result.routes.items():
        # The proxy's p99 is interpolated inside one bucket; the client's own p99 of the same
        # requests (from the actual send) must fall in or next to that bucket.
        server = r.server_latency_ms.p99
        hi = next(b for b in buckets if b >= server)
        lo = buckets[buckets.index(hi) - 1]
        assert lo / 1.5 <= r.service_ms.p99 <= hi * 1.5, (route, r.service_ms.p99, server)
        assert r.server_requests == pytest.approx(r.ok + r.errors, abs=2 + 0.1 * r.ok)


def test_run_replica_timelines_and_cost(trial, stack):
    from tuner.cost import deployment_resources, hourly
    from tuner.prices_file import load_prices

    _, _, result = trial
    resources = deployment_resources(stack.config)
    assert set(result.replicas) == set(resources) == set(result.deployments)
    prices = load_prices()
    total = 0.0
    for key, timeline in result.replicas.items():
        assert timeline and all(n >= 1 for _, n in timeline)
        d = result.cost.deployments[key]
        # replicas are steady in this short trial: replica-seconds = replicas x window
        assert d.replica_seconds == pytest.approx(result.deployments[key].replicas_mean * 15, rel=0.1)
        total += d.replica_seconds * hourly(resources[key], prices) / 3600  # emulated cards at their price
    assert result.cost.cost == pytest.approx(total)


def test_promql_queries_return_series_for_the_apps_deployments(trial, stack):
    from tuner import promql

    _, _, result = trial
    at, window = result.window.collected_at, "60s"
    deployments = {(a["name"], d["name"]) for a in stack.config["applications"] for d in a["deployments"]}
    per_deployment = [promql.replicas_by_deployment(), promql.target_replicas_by_deployment(),
                      promql.ongoing_requests_by_deployment(), promql.deployment_latency_quantile_ms(0.99, window),
                      promql.replica_starts("1h")]
    for expr in per_deployment:
        got = {(m["application"], m["deployment"]) for m, _ in stack.prometheus.vector(expr, at)}
        assert got == deployments, expr
    queued = {(m["application"], m["deployment"]) for m, _ in stack.prometheus.vector(promql.queued_requests_by_deployment(), at)}
    assert queued and queued <= deployments
    routes = {"/rag", "/predict", "/v1/completions"}
    for expr in (promql.http_latency_quantile_ms(0.99, window), promql.http_request_rate(window),
                 promql.http_requests(window)):
        # /v1/models too: the generator asks it how many adapters the app serves
        assert routes <= {m["route"] for m, _ in stack.prometheus.vector(expr, at)}, expr
    for expr in (promql.http_ok_requests(window), promql.http_error_ratio(window), promql.llm_requests_running(),
                 promql.llm_requests_waiting(), promql.llm_ttft_quantile_s(0.99, window),
                 promql.llm_itl_quantile_s(0.99, window), promql.nodes_by_type(), promql.node_cpu_utilization_pct(),
                 promql.node_memory_used_bytes()):
        assert stack.prometheus.vector(expr, at), expr
    series = set(promql.trial_series())
    import pandas as pd

    recorded = set(pd.read_parquet(trial[1] / "series.parquet")["query"])
    assert series - recorded <= {"error_rate"}  # no failures, so no failure series


def test_run_prints_a_live_view_that_prometheus_serves(trial, stack):
    """The live view printed at the start is Prometheus's graph page, and each of its panels'
    queries evaluates on the stack's Prometheus (no Grafana needed to watch a trial)."""
    from urllib.parse import parse_qs, urlsplit

    import httpx

    r, _, result = trial
    url = next(line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("live view (Prometheus):"))
    # Debian's build serves the classic UI: /graph redirects there, the panels' parameters kept
    page = httpx.get(url, timeout=10, follow_redirects=True)
    assert page.status_code == 200 and "g0.expr" in str(page.url) and "Prometheus" in page.text, page.url
    exprs = [v[0] for k, v in parse_qs(urlsplit(url).query).items() if k.endswith(".expr")]
    assert len(exprs) == 5
    assert url.startswith(stack.prometheus.url + "/graph?")
    # evaluated by the stack's Prometheus (a bad query raises); the load's series are there
    answers = [stack.prometheus.vector(expr, result.window.collected_at) for expr in exprs]
    assert sum(bool(a) for a in answers) >= 3, exprs


def test_run_misses_an_impossible_target_and_repeats(stack, tmp_path):
    out = tmp_path / "missed"
    r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path),
              "--target", "p50<1ms", "--duration", "5", "--warmup", "0", "--repeat", "2", "--no-prime", "--out", str(out),
              *BURST, timeout=600)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    from tuner.result import load_result

    result = load_result(out / "result.json")
    assert result.status == "missed" and not result.target.clauses[0].passed
    assert result.repeat.count == 2 and result.repeat.runs == ["repeat-1", "repeat-2"]
    values = result.repeat.spread["target p50"].values
    assert len(values) == 2 and result.target.clauses[0].client == pytest.approx(sum(values) / 2)
    assert all(load_result(out / f"repeat-{i}" / "result.json").status == "missed" for i in (1, 2))
    assert "2 repeats" in r.stdout


def test_run_with_a_config_serve_cannot_deploy_exits_3_and_keeps_the_record(stack, tmp_path):
    cfg = json.loads(json.dumps(stack.config))
    # A setting every check passes but the replica cannot apply: the classifier's folder is missing.
    clf = next(d for a in cfg["applications"] for d in a["deployments"] if d["name"] == "LegalClassifier")
    clf["user_config"]["model_path"] = str(tmp_path / "no-such-model")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "failed"
    try:
        r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(bad), "--target", "p99<1s",
                  "--duration", "5", "--warmup", "0", "--settle-timeout", "120", "--out", str(out), *BURST,
                  timeout=600)
        assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        from tuner.result import load_result

        result = load_result(out / "result.json")
        assert result.status == "unmeasured" and result.partial
        assert "DEPLOY_FAILED" in result.reasons[-1] or "did not settle" in result.reasons[-1]
        assert (out / "serve_config.yaml").is_file() and result.overall is None
    finally:
        deploy.deploy(stack.dashboard, stack.config, stack.headers())
        deploy.wait_running(stack.dashboard, [a["name"] for a in stack.config["applications"]], 300, stack.headers())


def test_trace_replay_sends_prompt_size_and_output_length_through_rag(stack, tmp_path):
    cmd = [sys.executable, "-m", "locust", "-f", "scenarios/trace_replay.py", "--headless", "-t", "10s",
           "-H", stack.url, "--out", str(tmp_path), "--speedup", "4", "--rate-scale", "0.1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from loadgen import records
    from loadgen.traces import load_trace

    rec = records.load(next(tmp_path.glob("*/records.parquet")))
    assert len(rec) >= 2 and (rec["status"] == 200).all()
    # the emulator generated exactly the trace's output length, streamed one delta per token
    assert rec["output_tokens"].isin(load_trace().output_tokens).all()


def test_user_config_batch_change_applies_in_place(stack):
    before = _replicas(stack, "QueryRewriter")
    assert _live_batch_settings(stack) == {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}
    cfg = json.loads(json.dumps(stack.config))
    rewriter = next(d for d in cfg["applications"][0]["deployments"] if d["name"] == "QueryRewriter")
    rewriter["user_config"]["batch"] = {"max_batch_size": 5, "batch_wait_timeout_s": 0.02}
    deploy.deploy(stack.dashboard, cfg, stack.headers())
    deadline = time.monotonic() + 60
    while _live_batch_settings(stack) != {"max_batch_size": 5, "batch_wait_timeout_s": 0.02}:
        assert time.monotonic() < deadline
        time.sleep(1)
    deploy.wait_running(stack.dashboard, ["rag"], 60, stack.headers())
    assert _replicas(stack, "QueryRewriter") == before  # same replicas and actors: no restart
    assert post(stack, "/rag", {"query": "What is Vorhalzan concerned with?"}).status_code == 200


def test_profile_writes_a_calibration_the_simulator_runs(stack, tmp_path):
    from tuner.calibration_file import load_calibration

    r = tuner("profile", "--state-dir", str(stack.state_dir), "--out", str(tmp_path / "calib"), "--phase-seconds", "3",
              "--levels", "1", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cal = load_calibration(tmp_path / "calib" / "calibration.yaml")
    assert set(cal.stages) == {d["name"] for a in stack.config["applications"] for d in a["deployments"]}
    assert cal.host_cpus and cal.llm.prompt_tokens > 50
    for dep in ("QueryRewriter", "VectorSearch", "Reranker", "LLMGenerator", "MultiLoRAModel"):
        assert 0.2 <= cal.stage(dep).mean_ms(1) < 2000, dep
    assert cal.stage("MultiLoRAModel").load_ms > 0 and cal.stage("QueryRewriter").start_s > 0
    assert not cal.stage("Reranker").cpu_bound  # profile mode holds the batch: no CPU work
    measured = json.loads((tmp_path / "calib" / "measurements.json").read_text())
    assert len(measured["phases"]) == 6 and all(p["latencies_ms"] for p in measured["phases"])  # 3 routes x 1 level, 3 bursts
    assert [p["concurrency"] for p in measured["phases"] if p["burst"]] == [4, 8, 16]
    assert len(cal.stage("QueryRewriter").service_ms) >= 2  # bursts gave batches of more than one
    assert measured["idle_cores"] > 0 and all(p["busy_cores"] > 0 for p in measured["phases"] if not p["burst"])
    s = tuner("sim", "--calibration", str(tmp_path / "calib" / "calibration.yaml"), "--duration", "20",
              "--out", str(tmp_path / "sim"), *BURST, timeout=300)
    assert s.returncode in (0, 1), s.stderr


def test_validate_compares_a_short_real_trial_with_the_simulator(stack, tmp_path):
    from tuner.result import load_result

    out = tmp_path / "val"
    r = tuner("validate", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--duration", "12",
              "--warmup", "0", "--out", str(out), *BURST, timeout=600)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    assert "real against simulated" in r.stdout and "replica trajectories" in r.stdout
    real, sim = load_result(out / "real" / "result.json"), load_result(out / "sim" / "result.json")
    assert (real.backend, sim.backend) == ("real", "sim")
    assert real.scenario.expected_arrivals == sim.scenario.expected_arrivals
    assert real.overall.arrivals == sim.overall.arrivals  # the very same arrivals on both sides
    cmp = json.loads((out / "validation.json").read_text())
    p99 = next(x for x in cmp["latency"] if x["route"] == "all" and x["metric"] == "p99")
    assert p99["real"] == pytest.approx(real.overall.latency_ms.p99)
    assert p99["error"] == pytest.approx((sim.overall.latency_ms.p99 - p99["real"]) / p99["real"])
    assert len(cmp["replicas"]) == 11 and (out / "replicas.png").stat().st_size > 1000
    assert cmp["all_met"] == (r.returncode == 0)


OPTIMIZE = ("--scenario", "steady:--rate 2", "--duration", "10", "--warmup", "0", "--trials", "6")


def test_a_short_hybrid_search_verifies_on_the_real_stack_and_its_best_config_deploys(stack, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    out = tmp_path / "opt"
    r = tuner("optimize", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--target", "p99<10s",
              "--max-real", "1", "--real-repeat", "1", "--sim-baselines", "--out", str(out), *OPTIMIZE)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "a candidate passed on the real stack" in r.stdout
    page = (out / "report.html").read_text()  # written by default, with the verified candidate
    assert 'data-plot="real-vs-sim"' in page and 'data-plot="best-cost"' in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["backend"] == "real" and summary["hybrid"]["real_candidates"] == 1
    assert summary["trials"]["real"] == 1 and summary["trials"]["sim"] == 6
    verified = summary["hybrid"]["verified"][0]
    assert verified["passed"] and verified["p99_ms"] == summary["best"]["p99_ms"] and verified["sim_p99_ms"] > 0
    label = verified["label"]
    assert summary["best"]["runs"] == {"steady": f"real/{label}/steady"}  # recorded, relative to the study
    real = json.loads((out / summary["best"]["runs"]["steady"] / "result.json").read_text())
    assert real["backend"] == "real" and real["status"] == "met"
    assert real["cost"]["cost_per_hour"] == pytest.approx(summary["best"]["cost_per_hour"])
    best = yaml.safe_load((out / "best_serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(best)
    assert best == yaml.safe_load((out / "real" / label / "steady" / "serve_config.yaml").read_text())
    try:  # the file deploys as it is, and serves
        deploy.deploy(stack.dashboard, best, headers=stack.headers())
        deploy.wait_running(stack.dashboard, ["rag", "router", "lora"], 300, headers=stack.headers())
        assert post(stack, "/predict", {"domain": "legal", "text": "a contract clause"}).status_code == 200
    finally:
        deploy.deploy(stack.dashboard, stack.config, headers=stack.headers())
        deploy.wait_running(stack.dashboard, ["rag", "router", "lora"], 300, headers=stack.headers())


def test_a_real_bench_night_records_the_median_of_its_repeats_and_its_report(stack, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "e2e", "real": {
        "duration_s": 5, "warmup_s": 0, "repeat": 2,
        "cases": [{"name": "steady", "scenario": "steady", "args": ["--rate", "2"], "config": str(stack.config_path),
                   "target": "p99<10s"}]}}))
    out, hist = tmp_path / "night", tmp_path / "history"
    r = tuner("bench", "--state-dir", str(stack.state_dir), "--suite", str(suite), "--backend", "real", "--out", str(out),
              "--history", str(hist))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = pd.read_csv(hist / "nightly.csv")
    assert set(rows["backend"]) == {"real"} and len(rows) == 5 and rows["value"].notna().all()
    result = json.loads((out / "real" / "steady" / "result.json").read_text())
    assert result["repeat"]["count"] == 2
    p99 = rows.loc[rows["metric"] == "p99_ms", "value"].item()
    assert p99 == pytest.approx(result["repeat"]["spread"]["client p99"]["median"])
    assert (out / "report.html").stat().st_size > 10_000


def test_rag_degrades_when_the_llm_fails_and_recovers(stack):
    """The LLM hangs: /rag answers within its budget with sources, marked degraded. It errors:
    the breaker opens after `failures` calls and refuses at once. The fault clears: after the
    cool-down a trial call closes the breaker and answers are whole again."""
    import copy

    llm = f"http://127.0.0.1:{stack.ports['llm']}/admin/fault"
    cfg = copy.deepcopy(stack.config)
    for app in cfg["applications"]:
        for dep in app["deployments"]:
            if dep["name"] == "RAGService":
                dep["user_config"]["generate_budget_s"] = 2
            if dep["name"] == "LLMGenerator":
                dep["user_config"]["breaker"] = {"failures": 3, "cool_down_s": 3}
    ask = {"query": "How long is the notice period for terminating an employment contract?"}
    try:
        deploy.deploy(stack.dashboard, cfg, headers=stack.headers())  # user_config only: in place
        deploy.wait_running(stack.dashboard, ["rag", "router", "lora"], 300, headers=stack.headers())
        httpx.post(llm, json={"mode": "hang", "duration_s": 6}, timeout=10).raise_for_status()
        t = time.monotonic()
        body = post(stack, "/rag", ask).json()
        assert time.monotonic() - t < 5 and body["degraded"] and len(body["sources"]) == 5 and body["answer"] is None
        assert "budget" in body["degraded_reason"]
        time.sleep(6)
        httpx.post(llm, json={"mode": "error", "status_code": 503, "duration_s": 4}, timeout=10).raise_for_status()
        reasons = [post(stack, "/rag", ask).json()["degraded_reason"] for _ in range(5)]
        assert reasons[0].startswith("LLM backend") and reasons[-1] == "circuit open", reasons
        events = [line for line in post(stack, "/rag", {**ask, "stream": True}).text.splitlines() if line.startswith("data:")]
        assert json.loads(events[0][5:])["sources"] and json.loads(events[-2][5:])["degraded"] is True
        time.sleep(8)  # the fault expires, then the cool-down passes
        body = post(stack, "/rag", ask).json()
        assert body["degraded"] is False and body["answer"], body
    finally:
        httpx.post(llm, json={"mode": "none"}, timeout=10)
        deploy.deploy(stack.dashboard, stack.config, headers=stack.headers())
        deploy.wait_running(stack.dashboard, ["rag", "router", "lora"], 300, headers=stack.headers())


def test_an_llm_outage_degrades_rag_and_the_trial_measures_the_recovery(stack, tmp_path):
    out = tmp_path / "outage"
    r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--target", "p99<20s",
              "--scenario", "steady", "--rate", "4", "--duration", "24", "--warmup", "0", "--no-prime", "--out", str(out),
              "--fault", "llm-outage@4s+6s", "--fault", "llm-slow@18s+4s:factor=4")
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    assert "faults injected" in r.stdout
    result = json.loads((out / "result.json").read_text())
    f, slow = result["faults"]
    assert f["kind"] == "llm-outage" and f["error"] is None and "refuse" in f["done"]
    assert slow["kind"] == "llm-slow" and "'slow_factor': 4.0" in slow["done"] and slow["effect"]["during"]["requests"] > 0
    assert f["injected_s"] == pytest.approx(4, abs=1)
    e = f["effect"]
    assert e["before"]["degraded"] == 0 and e["during"]["degraded"] > 0  # /rag answered without its LLM
    assert e["recovery_s"] is not None and e["recovery_s"] < 20  # the breaker's trial call closed it again
    records = pd.read_parquet(out / "records.parquet")
    assert records.loc[records["degraded"], "route"].eq("/rag").all()
    page = (out / "report.html").read_text()
    assert "Faults injected" in page and "llm-outage@4s+6s" in page


def test_a_prometheus_gap_a_killed_replica_and_controller_are_injected_and_the_trial_survives(stack, tmp_path):
    out = tmp_path / "kills"
    # Prometheus down 12 s: a hole counts as a gap past three scrape intervals without one.
    r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--target", "p99<20s",
              "--scenario", "steady", "--rate", "3", "--duration", "34", "--warmup", "0", "--no-prime", "--out", str(out),
              "--fault", "prometheus-restart@6s+12s", "--fault", "kill-replica@22s:deployment=VectorSearch",
              "--fault", "kill-controller@25s")
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    done = {f["kind"]: f for f in result["faults"]}
    assert done["kill-replica"]["done"].startswith("killed rag/VectorSearch replica")
    assert done["kill-controller"]["done"].startswith("killed the Serve controller")
    assert done["prometheus-restart"]["done"] == "Prometheus restarted after 12 s down"
    assert result["status"] in ("met", "missed") and result["overall"]["arrivals"] > 0
    (gap,) = result["gaps"]  # noted: nothing scaled while Prometheus was down, so the trial stands
    assert gap["start_s"] < 7 and gap["end_s"] - gap["start_s"] >= 12
    assert any("Prometheus recorded nothing from Ray" in x and "taken as constant" in x for x in result["reasons"])
    r = tuner("stack", "status", "--state-dir", str(stack.state_dir))
    assert r.returncode == 0, r.stdout  # Prometheus is back, Serve replaced the replica


def test_backpressure_rejects_with_503_at_once_counted_apart_from_timeouts(stack, tmp_path):
    import copy

    cfg = copy.deepcopy(stack.config)
    rag = next(d for d in cfg["applications"][0]["deployments"] if d["name"] == "RAGService")
    rag |= {"max_ongoing_requests": 1, "max_queued_requests": 1}
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "backpressure"
    try:
        r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(path), "--target", "error_rate<100%",
                  "--scenario", "steady", "--rate", "8", "--mix", "rag=1,predict=0,lora=0", "--duration", "10",
                  "--warmup", "0", "--out", str(out))
        assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
        rag_route = json.loads((out / "result.json").read_text())["routes"]["/rag"]
        assert rag_route["rejected"] > 0 and rag_route["errors"] >= rag_route["rejected"] + rag_route["timeouts"]
        records = pd.read_parquet(out / "records.parquet")
        refused = records[records["status"] == 503]
        assert len(refused) == rag_route["rejected"]
        assert (refused["end"] - refused["sent"]).median() < 0.5  # refused at once, not after queueing
    finally:
        deploy.deploy(stack.dashboard, stack.config, stack.headers())
        deploy.wait_running(stack.dashboard, [a["name"] for a in stack.config["applications"]], 300, stack.headers())


def test_up_twice_reports_the_running_stack(stack):
    pids = stack.recorded_pids()
    r = tuner("stack", "up", "--config", str(stack.config_path), "--state-dir", str(stack.state_dir), *stack.port_args())
    assert r.returncode == 0 and "already running" in r.stdout
    assert stack.recorded_pids() == pids


def test_a_port_in_use_is_named_and_nothing_starts(stack, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        before = pid_snapshot()
        r = tuner("stack", "up", "--no-app", "--state-dir", str(tmp_path / "other"), "--prometheus-port", str(port),
                  "--ray-gcs-port", str(free_port()), "--ray-dashboard-port", str(free_port()),
                  "--ray-metrics-port", str(free_port()), "--llm-port", str(free_port()), "--milvus-port", str(free_port()))
    assert r.returncode == 2
    assert f"port {port} (prometheus) is already in use" in r.stderr and "Traceback" not in r.stderr
    assert our_processes(before) == []


def test_a_stack_that_dies_mid_trial_exits_3_and_keeps_what_was_recorded(stack, tmp_path):
    """Last but one: it kills the stack's LLM server, and only `stack down` follows."""
    import threading

    out = tmp_path / "dies"
    llm = next(p for p in json.loads((stack.state_dir / "state.json").read_text())["processes"] if p["name"] == "llm")

    def kill_when_loading():
        deadline = time.monotonic() + 300
        while not list((out / "load").glob("*/epoch")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        os.kill(llm["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_when_loading, daemon=True)
    killer.start()
    r = tuner("run", "--state-dir", str(stack.state_dir), "--config", str(stack.config_path), "--target", "p99<20s",
              "--scenario", "steady", "--rate", "3", "--duration", "10", "--warmup", "0", "--no-prime", "--out", str(out))
    killer.join(5)
    assert r.returncode == 3, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "the stack died during the load: llm" in r.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "unmeasured" and result["partial"]
    assert result["overall"]["arrivals"] > 0 and (out / "records.parquet").is_file()


def test_down_leaves_nothing_of_ours(stack):
    r = tuner("stack", "down", "--state-dir", str(stack.state_dir), timeout=120)
    assert r.returncode == 0 and "stopped ray" in r.stdout
    time.sleep(1)
    assert our_processes(stack.before) == []
    assert not (stack.state_dir / "state.json").exists()
