"""The comparison as text: what was calibrated and decided, the timelines side by side on the
0.5 s grid, and the figures table with each variant's MAE and bound. Pure (a `compare` dict in,
a string out)."""

from __future__ import annotations

from tuner.validation.ray_autoscaler.compare import VARIANTS


def table(res: dict) -> str:
    r = res["real"]["figures"]
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = [("peak worker nodes", "peak"), ("time to first node (s)", "time_to_first_node_s"),
            ("time to peak (s)", "time_to_peak_s"),
            ("first scale-down after release (s)", "first_scale_down_after_release_s"),
            ("scale-down to 0 after release (s)", "scale_down_to_zero_after_release_s"),
            ("nodes at the end", "final")]
    lines = [f"{'':36}{'real':>8}" + "".join(f"{label:>17}" for _, label in VARIANTS)]
    for label, key in rows:
        lines.append(f"{label:36}{fmt(r[key]):>8}" + "".join(f"{fmt(res['sim'][v]['figures'][key]):>17}"
                                                            for v, _ in VARIANTS))
    lines.append(f"{'node-count MAE (0.5 s grid)':36}{'':>8}" + "".join(f"{res['sim'][v]['mae_nodes']:>17.3f}"
                                                                       for v, _ in VARIANTS))
    eb = res["error_budget"]
    lines.append(f"{'MAE bound (see error_budget)':36}{'':>8}" + "".join(f"{eb[v]['bound']:>17.3f}"
                                                                        for v, _ in VARIANTS))
    return "\n".join(lines)


def side_by_side(res: dict) -> str:
    """The timelines on the 0.5 s grid, one line per change."""
    grids = {v: {t: s for t, _, s in res["sim"][v]["grid"]} for v, _ in VARIANTS}
    longest = max((res["sim"][v]["grid"] for v, _ in VARIANTS), key=len)
    lines = [f"{'t (s)':>7} {'real':>5}" + "".join(f"{label:>17}" for _, label in VARIANTS)]
    prev = None
    for t, real, _ in longest:
        vals = tuple(grids[v].get(t, grids[v][max(grids[v])]) for v, _ in VARIANTS)
        if (real, *vals) != prev:
            lines.append(f"{t:7.1f} {real:5d}" + "".join(f"{x:17d}" for x in vals))
            prev = (real, *vals)
    return "\n".join(lines)


def report(res: dict) -> str:
    cal = res["calibration"]
    ps, its, g = cal["pod_start_s"], cal["real_iterations"], res["real"]["gcs_figures"]
    lines = [
        f"calibrated: loop_s={cal['loop_s']['value']} (AUTOSCALER_UPDATE_INTERVAL_S); "
        f"pod_start_s={ps['value']:.2f} (median of per-node launch->join delays {ps['delays']}, "
        f"from {ps['source']})",
        f"real autoscaler: demand first seen in the GCS's resource state at t={cal['demand_first_seen_in_gcs_s']} "
        f"(0.5 s polls); first launch at t={cal['first_launch_s']}; iteration period mean "
        f"{its['mean_period_s']} s, max {its['max_period_s']} s",
        "real decisions: " + ", ".join(f"{e['kind']} {e.get('count', '')} @ {e['t']:.2f}s"
                                        for e in res["real"]["events"] if e["kind"] in ("add", "remove")),
        f"released at t={res['real']['released_at']}; from the GCS log (exact): first node "
        f"{g['time_to_first_node_s']}, peak {g['peak']} at {g['time_to_peak_s']}, all gone "
        f"{g['scale_down_to_zero_after_release_s']} s after release",
        "",
        side_by_side(res),
        "",
        table(res),
    ]
    return "\n".join(lines)
