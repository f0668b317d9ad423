"""The shipped Serve config as a CPU deployment: every model stage in `local` mode, reserving
the CPU a model replica needs. Tests of the simulator's mechanics (hops, placement, pods) are
written against this shape, with timings from their own calibrations."""

import copy

import yaml

from target_app.paths import DEFAULT_SERVE_CONFIG

CPUS = {"QueryRewriter": 1.0, "Reranker": 1.0, "MultiLoRAModel": 1.0, "VectorSearch": 0.5,
        "LegalClassifier": 0.5, "MedicalClassifier": 0.5, "FinanceClassifier": 0.5}


def cpu_config() -> dict:
    cfg = copy.deepcopy(yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text()))
    for app in cfg["applications"]:
        for d in app["deployments"]:
            if d["name"] in CPUS:
                d["ray_actor_options"] = {"num_cpus": CPUS[d["name"]]}
            if "compute" in (d.get("user_config") or {}):
                d["user_config"]["compute"] = {"mode": "local"}
    return cfg
