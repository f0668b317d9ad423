"""The model on a real run's demand, calibrated from it, and the comparison: the output's
`params`, `calibration`, `real`, `sim` (three variants) and `error_budget`. Pure: a recorded
real run in (`real_burst.run_burst`'s dict, kept in the output as `real_raw`), a dict out, so
a comparison can be redone offline."""

from __future__ import annotations

from tuner.policies.ray_autoscaler import RayAutoscalerConfig, WorkerGroup
from tuner.validation.ray_autoscaler.calibration import decision_times, iteration_periods, measured_pod_start
from tuner.validation.ray_autoscaler.fake_cluster import NODE_TYPE
from tuner.validation.ray_autoscaler.ray_logs import gcs_series
from tuner.validation.ray_autoscaler.sim_burst import simulate
from tuner.validation.ray_autoscaler.timelines import GRID_S, figures, mae

# The simulated variants, by key in the output, with their column label.
VARIANTS = (("aligned", "sim"), ("replayed", "sim:real ticks"), ("default_phase", "sim:tick@loop_s"))


def compare(real: dict, params: dict, ray_version: str) -> dict:
    """The model on the real run's demand, calibrated from it, and the comparison. `real` is what
    `real_burst.run_burst` returned; `params` the burst's (n_actors, actor_cpus, node_cpus,
    max_workers, hold_s, idle_timeout_s, loop_s; infeasible_actors and pod_start_s optional,
    pod_start_s None = measured); `ray_version` is recorded with them."""
    n_actors, actor_cpus, node_cpus = params["n_actors"], params["actor_cpus"], params["node_cpus"]
    max_workers, idle_timeout_s, loop_s = params["max_workers"], params["idle_timeout_s"], params["loop_s"]
    infeasible, pod_start_s = params.get("infeasible_actors", 0), params.get("pod_start_s")
    pods = measured_pod_start(real)
    if pod_start_s is None:
        pod_start_s = pods["median"] if pods["median"] is not None else 0.0
    cfg = RayAutoscalerConfig(groups=(WorkerGroup(name=NODE_TYPE, resources={"CPU": node_cpus},
                                                  max_workers=max_workers),),
                              upscaling_mode="Default", idle_timeout_s=idle_timeout_s, loop_s=loop_s,
                              pod_start_s=pod_start_s)
    t_end = real["samples"][-1][0]
    first_add = next((e["t"] for e in real["events"] if e["kind"] == "add"), None)
    real_series = real["samples"]
    out = {
        "params": {**params, "infeasible_actors": infeasible, "pod_start_s": pod_start_s, "upscaling_speed": 1000.0,
                   "ray_version": ray_version, "poll_s": GRID_S},
        "calibration": {"loop_s": {"value": loop_s, "source": "AUTOSCALER_UPDATE_INTERVAL_S (ray/autoscaler/_private/"
                                   "constants.py, default 5), set for the real autoscaler's process"},
                        "pod_start_s": {"value": pod_start_s, **pods},
                        "first_launch_s": first_add,
                        "demand_first_seen_in_gcs_s": next(
                            (t for t, c in real.get("pending_demand", []) if t >= 0 and c > 0), None),
                        "real_iterations": iteration_periods(real["events"])},
        "real": {"samples": real_series, "released_at": real["released_at"], "joined": real["joined"],
                 "left": real["left"], "gcs": real["gcs"], "actor_ready": real["actor_ready"],
                 "events": [e for e in real["events"] if e["kind"] != "iteration"],
                 "figures": figures(real_series, real["released_at"]),
                 "gcs_series": gcs_series(real), "gcs_figures": figures(gcs_series(real), real["released_at"]),
                 "wall_s": real.get("wall_s"),
                 "leftover_processes": real.get("leftover_processes", [])},
        "sim": {},
        "real_raw": real,
    }
    # The sim runs past the real end so that its scale-down shows (or its missing one counts); the
    # real count is held at its last value (the run stops once it has settled) when they are compared.
    until = max(t_end, real["released_at"] + idle_timeout_s + 2 * loop_s + pod_start_s) + 1.0
    ticks = [t for t in decision_times(real["events"]) if t >= 0]
    variants = {"aligned": {"first_tick_at": first_add}, "replayed": {"tick_times": ticks},
                "default_phase": {}}
    if first_add is None:
        variants.pop("aligned")
    if not ticks:
        variants.pop("replayed")
    for name, kw in variants.items():
        sim = simulate(cfg, n_actors, actor_cpus, real["released_at"], until, infeasible=infeasible, **kw)
        horizon = until
        err, rows = mae(real_series, sim["running"], horizon)
        out["sim"][name] = {"first_tick_s": next((t for t in sim["ticks"] if t >= 0), None),
                            "running": sim["running"], "pods_incl_pending": sim["pods"], "ticks": sim["ticks"],
                            "replica_placed": sim["replica_placed"],
                            "figures": figures(sim["running"], real["released_at"]),
                            "mae_nodes": round(err, 4), "mae_horizon_s": horizon, "grid": rows}
    for name in ("aligned", "replayed"):
        out["sim"].setdefault(name, out["sim"]["default_phase"])
    out["error_budget"] = error_budget(out)
    return out


def error_budget(res: dict) -> dict:
    """An upper bound on the node-count MAE between the real and a simulated timeline from the error
    sources that the comparison cannot remove, in node-seconds over the compared duration:
    (1) ramp: the fake provider starts a launch's nodes one after another under a lock, the model
    all of them pod_start_s after launch: sum_k |d_k - pod_start_s|;
    (2) poll: each real transition is seen up to one poll late, on the way up and down:
    2 x peak x poll_s;
    (3) first launch: the model sees a demand at once, the real autoscaler once the raylet has
    reported it to the GCS (about a second later, `demand_first_seen_in_gcs_s`), so an iteration
    in between launches in the model and not in reality; and with the fixed-period loop the phase
    itself is only aligned to the real iteration that launched: up to one iteration, peak x loop_s;
    (4) scale-down phase (fixed-period loop only): the real period is AUTOSCALER_UPDATE_INTERVAL_S
    plus the iteration's own duration (seconds while the fake provider creates nodes: it holds the
    lock the iteration's node listing needs), so by the scale-down the real ticks can be up to one
    period off the model's: peak x loop_s. Replaying the real iteration times removes (4)."""
    p, cal = res["params"], res["calibration"]["pod_start_s"]
    peak = res["real"]["figures"]["peak"]
    terms = {"ramp_node_s": round(sum(abs(d - p["pod_start_s"]) for d in cal["delays"]), 3),
             "poll_node_s": 2 * peak * p["poll_s"], "first_launch_node_s": peak * p["loop_s"],
             "scale_down_phase_node_s": peak * p["loop_s"]}
    out = dict(terms)
    for name in ("aligned", "replayed", "default_phase"):
        sim = res["sim"][name]
        dur = len(sim["grid"]) * p["poll_s"]
        budget = sum(terms.values()) - (terms["scale_down_phase_node_s"] if name == "replayed" else 0.0)
        out[name] = {"bound": round(budget / dur, 4), "mae": sim["mae_nodes"], "duration_s": dur,
                     "within": sim["mae_nodes"] <= budget / dur}
    return out
