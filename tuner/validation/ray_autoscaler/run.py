"""One validation: the burst on a real fake cluster (always stopped, its processes killed by PID,
before this returns or raises), then on the model, compared; or the model side redone from an
earlier output. `run_command` is what `scripts/validate_ray_autoscaler.py` does once its
arguments are parsed: the JSON, the PNG beside it, Ray's logs in <out>-logs/, the report."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tuner.validation.ray_autoscaler.compare import compare
from tuner.validation.ray_autoscaler.fake_cluster import FakeAutoscalingCluster
from tuner.validation.ray_autoscaler.plot import plot
from tuner.validation.ray_autoscaler.real_burst import run_burst
from tuner.validation.ray_autoscaler.report import report

KEPT_LOGS = ("monitor.log", "monitor.out", "gcs_server.out")
BURST_PARAMS = ("n_actors", "actor_cpus", "node_cpus", "infeasible_actors", "max_workers", "hold_s",
                "idle_timeout_s", "loop_s")


def ray_version() -> str:
    import ray

    return ray.__version__


def validate(n_actors: int = 6, actor_cpus: float = 1.0, node_cpus: float = 2.0, max_workers: int = 4,
             hold_s: float = 30.0, idle_timeout_s: float = 15.0, loop_s: int = 5, pod_start_s: float | None = None,
             infeasible: int = 0, keep_logs: Path | None = None, temp_dir: str | None = None, log=print) -> dict:
    """Run the burst on the real autoscaler, then on the model, and compare. The real cluster is
    stopped (its processes killed by PID) before this returns or raises."""
    cluster = FakeAutoscalingCluster({"CPU": node_cpus}, max_workers=max_workers, idle_timeout_s=idle_timeout_s,
                                     loop_s=loop_s, temp_dir=temp_dir)
    wall = time.monotonic()
    try:
        log("starting a Ray head with the autoscaler v2 (fake multi-node provider)")
        cluster.start()
        log(f"  gcs {cluster.gcs_address}, temp dir {cluster.temp_dir} ({time.monotonic() - wall:.1f} s)")
        real = run_burst(cluster, n_actors, actor_cpus, hold_s, infeasible=infeasible,
                         max_wait_after_release_s=idle_timeout_s + 6 * loop_s + 30, log=log)
    finally:
        cluster.stop()
        leftover = cluster.leftover()
        logs = cluster.session_logs()
        if keep_logs is not None and logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for name in KEPT_LOGS:
                if (logs / name).exists():
                    shutil.copy(logs / name, keep_logs / name)
        cluster.remove_temp_dir()
    real["wall_s"] = round(time.monotonic() - wall, 1)
    real["leftover_processes"] = leftover
    params = {"n_actors": n_actors, "actor_cpus": actor_cpus, "node_cpus": node_cpus, "infeasible_actors": infeasible,
              "max_workers": max_workers, "hold_s": hold_s, "idle_timeout_s": idle_timeout_s, "loop_s": loop_s,
              "pod_start_s": pod_start_s}
    return compare(real, params, ray_version())


def redo(previous: dict, pod_start_s: float | None = None) -> dict:
    """The model side and the comparison again, on an earlier output's real run (no Ray cluster)."""
    params = {k: previous["params"][k] for k in BURST_PARAMS}
    params["pod_start_s"] = pod_start_s
    return compare(previous["real_raw"], params, ray_version())


def run_command(out: Path, from_json: Path | None = None, pod_start_s: float | None = None,
                temp_dir: str | None = None, n_actors: int = 6, actor_cpus: float = 1.0, node_cpus: float = 2.0,
                max_workers: int = 4, hold_s: float = 30.0, idle_timeout_s: float = 15.0, loop_s: int = 5,
                infeasible: int = 0) -> int:
    """Validate (or, with `from_json`, redo the comparison), write the JSON to `out` with a PNG
    beside it, print the report; 1 if any of the cluster's processes outlived it, else 0."""
    out.parent.mkdir(parents=True, exist_ok=True)
    logs_dir = out.with_name(out.stem + "-logs")
    if from_json:
        old = json.loads(from_json.read_text())
        res = redo(old, pod_start_s)
        logs_dir = Path(old.get("logs", logs_dir))
    else:
        res = validate(n_actors=n_actors, actor_cpus=actor_cpus, node_cpus=node_cpus, max_workers=max_workers,
                       hold_s=hold_s, idle_timeout_s=idle_timeout_s, loop_s=loop_s, pod_start_s=pod_start_s,
                       infeasible=infeasible, keep_logs=logs_dir, temp_dir=temp_dir)
    png = plot(res, out.with_suffix(".png"))
    res["plot"] = png
    res["logs"] = str(logs_dir)
    out.write_text(json.dumps(res, indent=1))
    print()
    print(report(res))
    print()
    print(f"wrote {out}" + (f" and {png}" if png else " (matplotlib missing: no plot)") + f"; logs in {logs_dir}")
    if res["real"]["leftover_processes"]:
        print("WARNING: processes left:", res["real"]["leftover_processes"])
        return 1
    return 0
