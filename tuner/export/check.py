"""Offline checks of an exported folder, since no cluster is reachable here:

- custom resources (KubeRay, Prometheus Operator) against their CRDs (tuner.export.crd), and a
  RayService's serveConfigV2 against Ray's ServeDeploySchema;
- core objects against Kubernetes' OpenAPI schemas for a stated version (kubernetes-validate,
  strict: unknown fields are errors); an HPA must target a kind with a scale subresource;
- every PromQL expression (alerts, dashboard panels, prometheus-adapter rules) and the alert
  rules themselves with `promtool check rules` (Prometheus' own parser);
- the round trip: the files read back carry exactly the tuned Serve and autoscaling settings.

Each problem is one line: `file: Kind/name: where: what`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from tuner.export import autoscaling, crd
from tuner.export.bundle import groups, hpas, read_docs
from tuner.export.cluster import cluster_serve_config
from tuner.export.inputs import Tuned
from tuner.export.settings import ExportSettings

# Kinds an HPA can scale: they have the scale subresource (KubeRay's CRDs do not).
SCALABLE = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "ReplicaSet"),
            ("v1", "ReplicationController")}
# prometheus-adapter's metricsQuery template, filled as the adapter fills it for one pod set.
ADAPTER_FILL = {"<<.Series>>": "", "<<.LabelMatchers>>": 'namespace="ns",pod=~"a|b"', "<<.GroupBy>>": "pod"}


def _serve_problems(cfg) -> list[str]:
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from tuner.deploy import unknown_field
    from tuner.errors import first_problem

    if isinstance(cfg, dict) and (problem := unknown_field(cfg, ServeDeploySchema)):
        return [problem]
    try:
        ServeDeploySchema.model_validate(cfg)
    except ValidationError as e:
        return [first_problem(e)]
    return []


def _core_problems(doc: dict, version: str) -> list[str]:
    import kubernetes_validate as kv

    try:
        kv.validate(doc, f"{version}.0", strict=True)
    except kv.ValidationError as e:
        return [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}"]
    except (kv.SchemaNotFoundError, kv.utils.VersionNotSupportedError) as e:
        return [str(e)]
    if doc.get("kind") == "HorizontalPodAutoscaler":
        ref = doc["spec"]["scaleTargetRef"]
        if (ref.get("apiVersion"), ref.get("kind")) not in SCALABLE:
            return [f"spec.scaleTargetRef: {ref.get('kind')} ({ref.get('apiVersion')}) has no scale subresource"]
    return []


def _dashboard_exprs(board: dict, where: str) -> list[tuple[str, str]]:
    return [(f"{where}: panel {p.get('title')!r}", t["expr"]) for p in board.get("panels", []) for t in p.get("targets", [])]


def _adapter_exprs(values: dict, where: str) -> list[tuple[str, str]]:
    out = []
    for rule in values["rules"]["custom"]:
        series = rule["seriesQuery"].split("{", 1)[0]
        q = rule["metricsQuery"]
        for k, v in {**ADAPTER_FILL, "<<.Series>>": series}.items():
            q = q.replace(k, v)
        out += [(f"{where}: seriesQuery", rule["seriesQuery"]), (f"{where}: metricsQuery", q)]
    return out


def promtool(groups: list[dict]) -> list[str]:
    """`promtool check rules` over rule groups (group names say where each came from)."""
    exe = shutil.which("promtool")
    if exe is None:
        return ["promtool not found: install Debian's prometheus package (apt-get install -y prometheus)"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        r = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        return []
    lines = [x.strip() for x in (r.stdout + r.stderr).splitlines() if str(path) in x and ":" in x]
    return [x.replace(f"{path}: ", "promtool: ") for x in lines] or [f"promtool: {r.stderr.strip() or r.stdout.strip()}"]


def check_folder(out: Path, kubernetes_version: str) -> list[str]:
    """Every problem of the exported files in `out` (empty: all pass)."""
    found: list[str] = []
    rule_groups: list[dict] = []
    exprs: list[tuple[str, str]] = []
    files = sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")) if out.is_dir() else []
    if not files:
        return [f"{out}: no exported files"]
    for path in files:
        if path.suffix == ".json":
            exprs += _dashboard_exprs(json.loads(path.read_text()), path.name)
            continue
        if path.suffix not in (".yaml", ".yml"):
            continue
        for doc in read_docs(path):
            if "kind" not in doc:
                if "applications" in doc:
                    found += [f"{path.name}: Serve config: {p}" for p in _serve_problems(doc)]
                elif "rules" in doc:
                    exprs += _adapter_exprs(doc, path.name)
                continue
            what = f"{path.name}: {doc['kind']}/{doc.get('metadata', {}).get('name')}"
            problems = crd.problems(doc) if crd.is_custom(doc) else _core_problems(doc, kubernetes_version)
            if doc["kind"] == "RayService":
                cfg = yaml.safe_load(doc["spec"].get("serveConfigV2") or "null")
                problems += [f"spec.serveConfigV2: {p}" for p in _serve_problems(cfg)]
            if doc["kind"] == "PrometheusRule":
                rule_groups += [{**g, "name": f"{what}: {g['name']}"} for g in doc["spec"]["groups"]]
            if doc["kind"] == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    if key.endswith(".json"):
                        exprs += _dashboard_exprs(json.loads(text), f"{what}: {key}")
            found += [f"{what}: {p}" for p in problems]
    rule_groups += [{"name": f"{where} #{i}", "rules": [{"record": "check:expr", "expr": e}]}
                    for i, (where, e) in enumerate(exprs)]
    if rule_groups:
        found += promtool(rule_groups)
    return found


def _docs_of(out: Path, name: str) -> list[dict]:
    path = out / name
    return read_docs(path) if path.is_file() else []


def round_trip(out: Path, tuned: Tuned, settings: ExportSettings) -> list[str]:
    """Differences between the tuned settings and what the written files carry."""
    found = []
    for doc in _docs_of(out, "serve_config.yaml"):
        if doc != tuned.serve_config:
            found.append("serve_config.yaml: differs from the tuned Serve config")
    for doc in _docs_of(out, "rayservice.yaml"):
        if doc["kind"] != "RayService":
            continue
        cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
        if cfg != cluster_serve_config(tuned.serve_config):
            found.append("rayservice.yaml: serveConfigV2's applications differ from the tuned ones")
        rc = doc["spec"]["rayClusterConfig"]
        ra = tuned.cluster.ray_autoscaler if tuned.cluster.layer == "ray-autoscaler" else None
        if ra is not None:
            want = {"upscalingMode": ra.upscaling_mode, "idleTimeoutSeconds": int(ra.idle_timeout_s)}
            got = rc.get("autoscalerOptions") or {}
            if not rc.get("enableInTreeAutoscaling") or {k: got.get(k) for k in want} != want:
                found.append(f"rayservice.yaml: autoscaler options {got} are not the tuned {want}")
        planned = {g.name: (g.min_workers, g.max_workers) for g in groups(tuned, settings) if ra is not None or g.gpu}
        written = {g["groupName"]: (g["minReplicas"], g["maxReplicas"]) for g in rc.get("workerGroupSpecs", [])}
        if written != planned:
            found.append(f"rayservice.yaml: worker group bounds {written} are not the planned {planned}")
    series = {}
    for doc in _docs_of(out, "prometheus-adapter-values.yaml"):
        series |= autoscaling.adapter_series(doc)
    want_hpas = hpas(tuned, settings)
    written_hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in _docs_of(out, "hpa.yaml")}
    if (out / "hpa.yaml").is_file() and set(written_hpas) != set(want_hpas):
        found.append(f"hpa.yaml: HPAs for {sorted(written_hpas)}, expected {sorted(want_hpas)}")
    for target, doc in written_hpas.items():
        if target in want_hpas and not autoscaling.same_settings(autoscaling.read_hpa(doc, series), want_hpas[target]):
            found.append(f"hpa.yaml: the HPA on {target} does not carry the tuned settings")
    return found
