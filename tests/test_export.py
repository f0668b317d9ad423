"""`tuner export`: manifests from the shipped config and from finished sim studies, checked
offline (CRDs, Kubernetes' OpenAPI, ServeDeploySchema, promtool) and read back."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from target_app.paths import DEFAULT_SERVE_CONFIG
from tuner.errors import UsageError
from tuner.export import autoscaling, bundle, check, inputs, monitoring
from tuner.export.settings import ExportSettings
from tuner.export.sizing import Demand, PodShape, plan_groups, pods_needed
from tuner.policies.hpa import HPABehavior, HPAPolicy, HPAScalingRules, HPASpec, MetricTarget
from tuner.policies.ray_autoscaler import per_node_limit
from tuner.prices_file import load_prices
from tuner.target import parse_target

ROOT = Path(__file__).resolve().parents[1]
TARGET = "p99<2s,p95[/rag]<1500ms,error_rate<1%,throughput>=5rps,ttft_p99<1s,itl_p99<80ms"
EXPECTED = {"serve_config.yaml", "rayservice.yaml", "networkpolicy.yaml", "llm-backend.yaml", "hpa.yaml",
            "prometheus-adapter-values.yaml", "monitoring.yaml", "grafana-dashboard.json", "grafana-dashboard.yaml"}


def tuner(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def export_to(out: Path, tuned: inputs.Tuned, settings: ExportSettings | None = None) -> dict[str, str]:
    settings = settings or ExportSettings()
    files = bundle.build(tuned, settings, bundle.FORMATS, load_prices())
    bundle.write(out, files)
    return files


def docs(path: Path) -> list[dict]:
    return bundle.read_docs(path)


@pytest.fixture(scope="module", params=["ray-autoscaler", "hpa"])
def shipped(request, tmp_path_factory):
    tuned = inputs.from_config(DEFAULT_SERVE_CONFIG, request.param, None, TARGET)
    out = tmp_path_factory.mktemp(f"export-{request.param}")
    export_to(out, tuned)
    return tuned, out


def test_the_shipped_config_exports_files_that_pass_every_offline_check(shipped):
    tuned, out = shipped
    assert {p.name for p in out.iterdir()} == EXPECTED
    assert check.check_folder(out, "1.35") == []
    assert check.round_trip(out, tuned, ExportSettings()) == []


def test_the_rayservice_runs_the_tuned_applications_with_the_layer_that_sizes_it(shipped):
    tuned, out = shipped
    rs, *rest = docs(out / "rayservice.yaml")
    assert rs["kind"] == "RayService"
    served = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert served["applications"] == tuned.serve_config["applications"]
    assert served["http_options"]["host"] == "0.0.0.0" and served["proxy_location"] == "EveryNode"
    rc = rs["spec"]["rayClusterConfig"]
    head = rc["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["rayStartParams"]["num-cpus"] == "0"
    assert "readinessProbe" not in head["template"]["spec"]["containers"][0]  # KubeRay's own probes
    assert rc["gcsFaultToleranceOptions"]["redisAddress"] == "redis.ray-serve.svc.cluster.local:6379"
    assert rs["spec"]["serviceUnhealthySecondThreshold"] > 0 and rs["spec"]["deploymentUnhealthySecondThreshold"] > 0
    if tuned.cluster.layer == "ray-autoscaler":
        assert rc["enableInTreeAutoscaling"] is True
        assert rc["autoscalerOptions"] == {"upscalingMode": "Default", "idleTimeoutSeconds": 60}
        (group,) = rc["workerGroupSpecs"]
        assert group["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/-/healthz",
                                                                                         "port": 8000}
        # 3 CPUs of replicas at the lower bounds, 4.75 at the upper, on 4-CPU pods.
        assert (group["minReplicas"], group["maxReplicas"]) == (1, 2)
        assert rest == []
    else:
        assert rc["enableInTreeAutoscaling"] is False and rc["workerGroupSpecs"] == []
        (workers,) = rest
        assert workers["kind"] == "Deployment" and workers["metadata"]["name"] == "target-app-cpu-workers"
        (hpa_workers,) = [d for d in docs(out / "hpa.yaml") if d["spec"]["scaleTargetRef"]["name"] == "target-app-cpu-workers"]
        assert (hpa_workers["spec"]["minReplicas"], hpa_workers["spec"]["maxReplicas"]) == (1, 2)


def test_the_llm_hpa_scales_vllm_on_its_queue_through_prometheus_adapter(shipped):
    _, out = shipped
    (llm,) = [d for d in docs(out / "hpa.yaml") if d["spec"]["scaleTargetRef"]["name"] == "vllm"]
    (metric,) = llm["spec"]["metrics"]
    assert metric == {"type": "Pods", "pods": {"metric": {"name": "vllm_num_requests_waiting"},
                                               "target": {"type": "AverageValue", "averageValue": "5"}}}
    (values,) = docs(out / "prometheus-adapter-values.yaml")
    assert autoscaling.adapter_series(values) == {"vllm_num_requests_waiting": "vllm:num_requests_waiting"}
    vllm, svc = docs(out / "llm-backend.yaml")
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--served-model-name") + 1] == "emulated-llama-3.1-8b"
    assert svc["kind"] == "Service"


def test_alerts_and_dashboard_use_the_trials_promql_for_each_clause(shipped):
    tuned, out = shipped
    rule = next(d for d in docs(out / "monitoring.yaml") if d["kind"] == "PrometheusRule")
    (target_group,) = [g for g in rule["spec"]["groups"] if g["name"] == "rayserve-tuner.target"]
    exprs = {r["labels"]["clause"]: r["expr"] for r in target_group["rules"]}
    assert set(exprs) == {c.text for c in tuned.target.clauses}
    from tuner import promql

    assert exprs["p99<2s"] == f"{promql.http_latency_quantile_ms(0.99, '5m', None, per_route=False)} >= 2000"
    assert exprs["p95[/rag]<1500ms"].endswith(" >= 1500") and 'route="/rag"' in exprs["p95[/rag]<1500ms"]
    assert exprs["throughput>=5rps"] == f"{promql.http_ok_rate('5m')} < 5"
    assert exprs["error_rate<1%"] == f"{promql.http_error_ratio('5m')} >= 0.01"
    board = json.loads((out / "grafana-dashboard.json").read_text())
    titles = [p["title"] for p in board["panels"]]
    assert any("Latency" in t for t in titles) and any("Replicas" in t for t in titles)
    assert any("queued" in t for t in titles) and any("LLM" in t for t in titles) and any("cost" in t for t in titles)
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in board["panels"])
    latency = board["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert latency[-1]["value"] == 2000
    (cm,) = docs(out / "grafana-dashboard.yaml")
    assert json.loads(cm["data"]["target-app.json"]) == board


def test_replica_cost_query_prices_each_deployment():
    from tuner import promql

    q = promql.replica_cost_per_hour({("rag", "Reranker"): 0.045, ("rag", "Free"): 0.0})
    assert q == '0.045 * (sum(ray_serve_deployment_replica_healthy{application="rag",deployment="Reranker"}) or vector(0))'
    assert promql.replica_cost_per_hour({}) == "vector(0)"


# ---- the checks fail when they should


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for p in out.iterdir():
        (dst / p.name).write_text(p.read_text())
    return dst


def _rewrite(path: Path, edit) -> None:
    ds = docs(path)
    edit(ds)
    path.write_text(yaml.safe_dump_all(ds, sort_keys=False))


def test_a_crd_violation_and_a_bad_serve_config_in_the_rayservice_are_caught(shipped, tmp_path):
    _, out = shipped
    bad = _copy(out, tmp_path)

    def edit(ds):
        ds[0]["spec"]["rayClusterConfig"]["autoscalerOptions"] = {"upscalingMode": "Eager"}
        cfg = yaml.safe_load(ds[0]["spec"]["serveConfigV2"])
        cfg["applications"][0]["deployments"][0]["max_ongoing_requests"] = -3
        ds[0]["spec"]["serveConfigV2"] = yaml.safe_dump(cfg)

    _rewrite(bad / "rayservice.yaml", edit)
    found = check.check_folder(bad, "1.35")
    assert any("RayService/target-app: spec.rayClusterConfig.autoscalerOptions.upscalingMode" in p for p in found)
    assert any("spec.serveConfigV2:" in p and "max_ongoing_requests" in p for p in found)


def test_an_unknown_serve_field_in_the_rayservice_is_caught(shipped, tmp_path):
    _, out = shipped
    bad = _copy(out, tmp_path)

    def edit(ds):
        cfg = yaml.safe_load(ds[0]["spec"]["serveConfigV2"])
        cfg["applications"][0]["deployments"][0]["autoscaling_config"] = {"min_replica": 1}
        ds[0]["spec"]["serveConfigV2"] = yaml.safe_dump(cfg)

    _rewrite(bad / "rayservice.yaml", edit)
    found = check.check_folder(bad, "1.35")
    assert any("spec.serveConfigV2: applications.0.deployments.0.autoscaling_config.min_replica: unknown field" in p
               for p in found), found


def test_core_objects_are_checked_strictly_for_the_stated_kubernetes_version(shipped, tmp_path):
    _, out = shipped
    bad = _copy(out, tmp_path)
    _rewrite(bad / "networkpolicy.yaml", lambda ds: ds[0]["spec"].update(podSelectors={}))

    def to_raycluster(ds):
        ds[0]["spec"]["scaleTargetRef"] = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "x"}
        ds[0]["spec"]["behavior"] = {"scaleUp": {"tolerance": "0.05"}}

    _rewrite(bad / "hpa.yaml", to_raycluster)
    found = check.check_folder(bad, "1.35")
    assert any("NetworkPolicy/target-app-ray-head: spec: Additional properties" in p for p in found)
    assert any("has no scale subresource" in p for p in found)
    # Per-direction tolerance is a 1.35 field (HPAConfigurableTolerance beta): 1.32 refuses it.
    assert any("tolerance" in p for p in check.check_folder(bad, "1.32"))


def test_promql_is_parsed_by_promtool(shipped, tmp_path):
    _, out = shipped
    bad = _copy(out, tmp_path)
    board = json.loads((bad / "grafana-dashboard.json").read_text())
    board["panels"][2]["targets"][0]["expr"] = "sum by (deployment (ray_serve_deployment_replica_healthy)"
    (bad / "grafana-dashboard.json").write_text(json.dumps(board))

    def bad_alert(ds):
        ds[-1]["spec"]["groups"][0]["rules"][0]["expr"] = "histogram_quantile(0.99, rate(x[5m]) >"

    _rewrite(bad / "monitoring.yaml", bad_alert)
    found = [p for p in check.check_folder(bad, "1.35") if p.startswith("promtool:")]
    assert any("grafana-dashboard.json: panel 'Replicas per deployment'" in p for p in found)
    assert any("PrometheusRule/target-app-target" in p and "could not parse" in p for p in found)


def test_the_round_trip_catches_a_setting_that_is_not_the_tuned_one(shipped, tmp_path):
    tuned, out = shipped
    bad = _copy(out, tmp_path)

    def more_replicas(ds):
        ds[0]["spec"]["maxReplicas"] += 1

    _rewrite(bad / "hpa.yaml", more_replicas)

    def other_target(ds):
        cfg = yaml.safe_load(ds[0]["spec"]["serveConfigV2"])
        cfg["applications"][0]["deployments"][1]["autoscaling_config"]["target_ongoing_requests"] = 9
        ds[0]["spec"]["serveConfigV2"] = yaml.safe_dump(cfg)

    _rewrite(bad / "rayservice.yaml", other_target)
    found = check.round_trip(bad, tuned, ExportSettings())
    assert any("does not carry the tuned settings" in p for p in found)
    assert any("serveConfigV2's applications differ" in p for p in found)


# ---- pure parts


def test_pods_are_packed_first_fit_and_gpu_deployments_get_a_gpu_group():
    shape = PodShape(cpus=4, memory_gib=16)
    reqs = [Demand(deployment="a", cpus=3, gpus=0, memory_gib=0)] * 2 + [Demand(deployment="b", cpus=1, gpus=0, memory_gib=0)] * 2
    assert pods_needed(reqs, shape) == 2
    assert pods_needed([Demand(deployment="m", cpus=0.5, gpus=0, memory_gib=10)] * 3, shape) == 3
    # max_replicas_per_node 2: five half-CPU replicas need three pods, not one
    limited = Demand(deployment="l", cpus=0.5, gpus=0, memory_gib=0, limit=per_node_limit("app", "l", 2))
    assert pods_needed([limited] * 5, shape) == 3
    cfg = copy.deepcopy(inputs.from_config(DEFAULT_SERVE_CONFIG, None, None, None).serve_config)
    rerank = next(d for d in cfg["applications"][0]["deployments"] if d["name"] == "Reranker")
    rerank["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 1}
    tuned = inputs.from_config(DEFAULT_SERVE_CONFIG, None, None, None).model_copy(update={"serve_config": cfg})
    plans = {g.name: g for g in plan_groups(cfg, tuned.cluster, False, ExportSettings().gpu_pod)}
    assert (plans["gpu-workers"].min_workers, plans["gpu-workers"].max_workers) == (1, 3)
    rs = bundle.build(tuned, ExportSettings(), ("rayservice",), load_prices())["rayservice.yaml"]
    gpu = next(g for g in yaml.safe_load(rs.split("---")[0])["spec"]["rayClusterConfig"]["workerGroupSpecs"]
               if g["groupName"] == "gpu-workers")
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    rerank["ray_actor_options"] = {"num_cpus": 16}
    with pytest.raises(UsageError, match="Reranker: a replica asks for 16 CPU"):
        plan_groups(cfg, tuned.cluster, False, ExportSettings().gpu_pod)


def test_an_hpa_spec_survives_the_manifest_and_back():
    spec = HPASpec(min_replicas=2, max_replicas=9, tolerance=0.05,
                   metrics=(MetricTarget(source="Resource", name="cpu", target_type="Utilization", target=55),
                            MetricTarget(source="Pods", name="vllm:num_requests_running", target_type="AverageValue",
                                         target=2500)),
                   behavior=HPABehavior(scale_up=HPAScalingRules(stabilization_window_s=30, select_policy="Min",
                                                                 policies=(HPAPolicy(type="Percent", value=50, period_s=30),)),
                                        scale_down=HPAScalingRules(stabilization_window_s=120)))
    doc = autoscaling.hpa(spec, "vllm", ExportSettings())
    assert doc["spec"]["metrics"][1]["pods"]["target"]["averageValue"] == "2500m"
    assert doc["spec"]["behavior"]["scaleUp"]["tolerance"] == "0.05"
    series = autoscaling.adapter_series(autoscaling.adapter_values(spec))
    assert autoscaling.same_settings(autoscaling.read_hpa(doc, series), spec)
    assert not autoscaling.same_settings(autoscaling.read_hpa(doc, series), spec.model_copy(update={"max_replicas": 8}))
    with pytest.raises(UsageError, match="Object"):
        autoscaling.hpa(HPASpec(max_replicas=2, metrics=(MetricTarget(source="Object", name="q", target_type="Value",
                                                                      target=1),)), "x", ExportSettings())


def test_each_clause_becomes_an_alert_on_its_violation():
    t = parse_target("p99.9[/v1/completions]<=400ms,throughput>20rps,ttft_p95<1s")
    alerts = [monitoring.clause_alert(c, t.text) for c in t.clauses]
    assert [a["alert"] for a in alerts] == ["TargetMissedLatencyP99_9V1Completions", "TargetMissedThroughput",
                                           "TargetMissedTtftP95"]
    assert alerts[0]["expr"].endswith(" > 400") and "histogram_quantile(0.999" in alerts[0]["expr"]
    assert alerts[1]["expr"].endswith(" <= 20")
    assert alerts[2]["expr"].startswith("1000 * histogram_quantile(0.95") and alerts[2]["expr"].endswith(" >= 1000")


# ---- the command


def test_export_all_is_byte_identical_when_repeated_and_passes_check(tmp_path):
    first = tuner("export", "--config", "target_app/serve_config.yaml", "--format", "all", "--out", str(tmp_path / "a"),
                  "--check")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "checks passed" in first.stdout
    again = tuner("export", "--config", "target_app/serve_config.yaml", "--out", str(tmp_path / "b"))
    assert again.returncode == 0
    for p in (tmp_path / "a").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name
    alone = tuner("export", "--check", "--out", str(tmp_path / "a"))
    assert alone.returncode == 0 and "checks passed" in alone.stdout
    hpa = tmp_path / "a" / "hpa.yaml"
    hpa.write_text(hpa.read_text().replace("maxReplicas:", "maxReplica:"))
    failed = tuner("export", "--check", "--out", str(tmp_path / "a"))
    assert failed.returncode == 1
    assert "check failed: hpa.yaml: HorizontalPodAutoscaler/vllm:" in failed.stdout and "maxReplica" in failed.stdout
    missing = tuner("export", "--check", "--out", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_one_format_writes_only_its_files(tmp_path):
    r = tuner("export", "--config", "target_app/serve_config.yaml", "--format", "hpa", "--format", "grafana",
              "--out", str(tmp_path), "--llm-url", "http://llm.example:8000/v1", "--cluster", "hpa")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"hpa.yaml", "grafana-dashboard.json", "grafana-dashboard.yaml"}
    # An existing LLM endpoint is not ours to scale: only the workers' HPA.
    assert [d["spec"]["scaleTargetRef"]["name"] for d in docs(tmp_path / "hpa.yaml")] == ["target-app-cpu-workers"]


@pytest.mark.parametrize("args, message", [
    (["--config", "{bad}"], "rag/QueryRewriter.autoscaling_config: max_replicas (3) must be greater than or equal to "
                            "min_replicas (5)"),
    (["--config", "missing.yaml"], "serve config missing.yaml: does not exist"),
    (["--config", "target_app/serve_config.yaml", "--cluster", "fixed"], "is not one of ray-autoscaler, hpa"),
    (["--config", "target_app/serve_config.yaml", "--format", "helm"], "--format: 'helm' is not one of"),
    (["--config", "target_app/serve_config.yaml", "--namespace", "Prod_NS"], "--namespace: 'Prod_NS' is not a DNS-1123"),
    (["--config", "target_app/serve_config.yaml", "--target", "p99<"], "--target"),
    (["--study", "{tmp}"], "holds no summary.json"),
    ([], "give --config FILE or --study DIR"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_SERVE_CONFIG.read_text().replace("min_replicas: 1", "min_replicas: 5", 1))
    out = tmp_path / "out"
    r = tuner("export", *[a.format(bad=bad, tmp=tmp_path) for a in args], "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ---- from a finished sim study

HPA_SPACE = """
serve:
  MultiLoRAModel:
    max_replicas: {type: int, low: 2, high: 5}
cluster:
  hpa:
    min_replicas: {type: int, low: 1, high: 3}
    max_replicas: {type: int, low: 3, high: 8}
    target: {type: int, low: 40, high: 90}
    scale_down_stabilization_s: {type: int, low: 30, high: 600}
    scale_up_percent: {type: int, low: 50, high: 300}
"""


@pytest.fixture(scope="module", params=["ray-autoscaler", "hpa"])
def study(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"study-{request.param}")
    space = tmp / "space.yaml"
    space.write_text(HPA_SPACE)
    args = ["optimize", "--backend", "sim", "--cluster", request.param, "--target", "p99<5s", "--trials", "8",
            "--duration", "20", "--warmup", "0", "--scenario", "steady", "--out", str(tmp / "study"), "--seed", "3"]
    r = tuner(*args, *(["--space", str(space)] if request.param == "hpa" else []))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return request.param, tmp / "study"


def test_a_study_exports_its_best_config_and_tuned_layer(study, tmp_path):
    layer, folder = study
    r = tuner("export", "--study", str(folder), "--out", str(tmp_path / "k8s"), "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cluster layer {layer}" in r.stdout
    best = yaml.safe_load((folder / "best_serve_config.yaml").read_text())
    assert yaml.safe_load((tmp_path / "k8s" / "serve_config.yaml").read_text()) == best
    tuned = inputs.from_study(folder, None, None, None)
    assert tuned.tuned_cluster and tuned.target.text == "p99<5s"
    cluster = yaml.safe_load((folder / "best_cluster.yaml").read_text())[layer]
    rs = docs(tmp_path / "k8s" / "rayservice.yaml")[0]["spec"]["rayClusterConfig"]
    if layer == "ray-autoscaler":
        ra = cluster["ray_autoscaler"]
        assert rs["autoscalerOptions"] == {"upscalingMode": ra["upscaling_mode"], "idleTimeoutSeconds": int(ra["idle_timeout_s"])}
        (g,) = rs["workerGroupSpecs"]
        assert (g["minReplicas"], g["maxReplicas"]) == (ra["groups"][0]["min_workers"], ra["groups"][0]["max_workers"])
    else:
        spec = HPASpec.model_validate(cluster["hpa"]["spec"])
        (hpa,) = [d for d in docs(tmp_path / "k8s" / "hpa.yaml") if d["spec"]["scaleTargetRef"]["name"] != "vllm"]
        assert autoscaling.same_settings(autoscaling.read_hpa(hpa), spec)
        assert hpa["spec"]["maxReplicas"] == spec.max_replicas


def test_a_study_conflicts_are_usage_errors(study, tmp_path):
    layer, folder = study
    other = "hpa" if layer == "ray-autoscaler" else "ray-autoscaler"
    r = tuner("export", "--study", str(folder), "--cluster", other, "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and f"the study searched the {layer} layer" in r.stderr
    empty = tmp_path / "unmet"
    empty.mkdir()
    (empty / "summary.json").write_text(json.dumps({"target": "p99<1ms", "best": None}))
    r = tuner("export", "--study", str(empty), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "no best configuration" in r.stderr

