"""The comparison as a PNG: the real node-count timelines (polled and from the GCS log) and the
three simulated variants, with the burst, the release and the real add/remove decisions."""

from __future__ import annotations

from pathlib import Path

from tuner.validation.ray_autoscaler.compare import VARIANTS


def plot(res: dict, path: Path) -> str | None:
    """Write the figure to `path`; its path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    t_end = max(res["sim"][v]["mae_horizon_s"] for v, _ in VARIANTS)

    def xy(series):
        xs, ys = [p[0] for p in series], [p[1] for p in series]
        return xs + [t_end], ys + [ys[-1] if ys else 0]

    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.step(*xy(res["real"]["samples"]), where="post", label="real: ray.nodes() alive (0.5 s poll)", lw=2.5)
    ax.step(*xy(res["real"]["gcs_series"]), where="post", label="real: GCS register/death log times", lw=1,
            color="black", alpha=0.6)
    ax.step(*xy(res["sim"]["aligned"]["running"]), where="post", lw=1.5, ls="--",
            label="sim, ticks aligned to the real first launch")
    ax.step(*xy(res["sim"]["replayed"]["running"]), where="post", lw=1, ls="-.",
            label="sim, ticks at the real autoscaler's iterations")
    ax.step(*xy(res["sim"]["default_phase"]["running"]), where="post", lw=1, ls=":",
            label="sim, first tick loop_s after the burst")
    ax.axvline(0, color="grey", lw=0.8)
    ax.axvline(res["real"]["released_at"], color="grey", lw=0.8)
    for e in res["real"]["events"]:
        if e["kind"] in ("add", "remove"):
            ax.axvline(e["t"], color="green" if e["kind"] == "add" else "red", lw=0.6, alpha=0.6)
    p = res["params"]
    extra = f" + {p['infeasible_actors']} infeasible" if p["infeasible_actors"] else ""
    ax.set_title(f"{p['n_actors']} actors x {p['actor_cpus']:g} CPU{extra} on {p['node_cpus']:g}-CPU nodes; "
                 f"idle {p['idle_timeout_s']:g} s, loop {p['loop_s']} s, pod start {p['pod_start_s']:.2f} s",
                 fontsize=9)
    ax.set_xlabel("seconds from the burst (grey: burst, release; green/red: real autoscaler add/remove)")
    ax.set_ylabel("alive worker nodes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(-0.15, res["real"]["figures"]["peak"] + 0.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
