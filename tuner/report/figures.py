"""The reports' plots (matplotlib), each returned as inline SVG so a report is one file that
opens without a network. Inputs are plain data (records, timelines, tables); no file I/O."""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 96, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "font.size": 9})
SIZE = (8.0, 3.0)


def svg(fig) -> str:
    """The figure as an <svg> element (the XML prolog dropped), and the figure closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


def _bins(t: np.ndarray, width: float) -> np.ndarray:
    return np.floor(t / width) * width


Spans = list[tuple[float, float, str]]
GAP_LABEL = "Prometheus gap"  # a span shaded grey: no record, not a fault


def _shade(ax, spans: Spans) -> None:
    """Faults (red) and holes in Prometheus's record (grey) as shaded spans, labelled once each."""
    for start, end, label in spans:
        ax.axvspan(start, end, color="grey" if label == GAP_LABEL else "red", alpha=0.12, lw=0)
        ax.annotate(label, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="darkred",
                    va="top", xytext=(2, -2), textcoords="offset points")


def latency_over_time(t: np.ndarray, latency_ms: np.ndarray, bounds_ms: list[float], width: float = 5.0,
                      spans: Spans = ()):
    """Client latency percentiles per `width`-second bin of send time, with the target's
    latency bounds as lines."""
    fig, ax = plt.subplots(figsize=SIZE)
    df = pd.DataFrame({"bin": _bins(t, width), "ms": latency_ms}).dropna()
    for q, style in ((0.5, "-"), (0.95, "--"), (0.99, "-")):
        s = df.groupby("bin")["ms"].quantile(q)
        ax.plot(s.index, s.values, style, lw=1.4 if q == 0.99 else 1, label=f"p{q * 100:g}")
    for b in bounds_ms:
        ax.axhline(b, color="red", lw=1, ls=":", label=f"target {b:g} ms")
    _shade(ax, spans)
    ax.set(xlabel="seconds into the load window", ylabel="latency (ms)")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def load_over_time(t_sched: np.ndarray, t_ok: np.ndarray, width: float = 5.0, spans: Spans = ()):
    """Offered load (arrivals by scheduled time) against throughput (answers by end time)."""
    fig, ax = plt.subplots(figsize=SIZE)
    for values, label in ((t_sched, "offered"), (t_ok, "throughput (ok)")):
        if len(values):
            s = pd.Series(1, index=_bins(values, width)).groupby(level=0).sum() / width
            ax.step(s.index, s.values, where="post", label=label)
    _shade(ax, spans)
    ax.set(xlabel="seconds into the load window", ylabel="requests / s")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def timelines(lines: dict[str, list[tuple[float, float]]], ylabel: str, *, overlay: dict | None = None,
              spans: Spans = ()):
    """Step timelines (replicas per deployment, pods per group); `overlay` adds a second set
    dashed (e.g. the simulator's against the real run)."""
    fig, ax = plt.subplots(figsize=SIZE)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, tl) in enumerate(sorted(lines.items())):
        if tl:
            ts, vs = zip(*tl)
            ax.step(ts, vs, where="post", color=colors[i % len(colors)], label=name)
        if overlay and overlay.get(name):
            ts, vs = zip(*overlay[name])
            ax.step(ts, vs, where="post", ls="--", color=colors[i % len(colors)], alpha=0.8)
    _shade(ax, spans)
    ax.set(xlabel="seconds into the load window", ylabel=ylabel)
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    return fig


def labelled_series(frame: pd.DataFrame, ylabel: str):
    """Prometheus range series (t, value per label set) as lines."""
    fig, ax = plt.subplots(figsize=SIZE)
    for label, g in frame.groupby("label", sort=True):
        if g["value"].abs().max() > 0:  # an idle deployment's flat zero only hides the others
            ax.plot(g["t"], g["value"], lw=1, label=label)
    ax.set(xlabel="seconds into the load window", ylabel=ylabel)
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    return fig


def p99_overlay(frames: dict[str, tuple[np.ndarray, np.ndarray]], width: float = 5.0):
    """p99 per bin of send time for each named run (real solid, others dashed)."""
    fig, ax = plt.subplots(figsize=SIZE)
    for name, (t, lat) in frames.items():
        s = pd.DataFrame({"bin": _bins(t, width), "ms": lat}).dropna().groupby("bin")["ms"].quantile(0.99)
        ax.plot(s.index, s.values, "-" if name == "real" else "--", label=f"p99 {name}")
    ax.set(xlabel="seconds into the load window", ylabel="latency (ms)")
    ax.legend(fontsize=8)
    return fig


def errors_over_time(t: np.ndarray, kinds: pd.Series, width: float = 5.0, spans: Spans = ()):
    """Failed requests per bin, stacked by kind (loadgen.summary.FAILURE_KINDS: rejected,
    timeout, error, unfinished, dropped, and answers the app marked degraded)."""
    fig, ax = plt.subplots(figsize=SIZE)
    df = pd.DataFrame({"bin": _bins(t, width), "kind": kinds})
    table = df.groupby(["bin", "kind"]).size().unstack(fill_value=0) if len(df) else pd.DataFrame()
    bottom = np.zeros(len(table))
    for kind in table.columns:
        ax.bar(table.index, table[kind].values, width=width * 0.9, align="edge", bottom=bottom, label=str(kind))
        bottom += table[kind].values
    _shade(ax, spans)
    ax.set(xlabel="seconds into the load window", ylabel=f"requests per {width:g} s")
    if len(table.columns):
        ax.legend(loc="upper left", fontsize=8)
    return fig


def latency_distribution(latency_ms: np.ndarray, bounds_ms: list[float]):
    """The latency CDF of answered requests (log axis), with the target's bounds."""
    fig, ax = plt.subplots(figsize=SIZE)
    xs = np.sort(latency_ms[np.isfinite(latency_ms)])
    if len(xs):
        ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post")
        ax.set_xscale("log")
    for b in bounds_ms:
        ax.axvline(b, color="red", lw=1, ls=":")
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests")
    return fig


def best_so_far(numbers: np.ndarray, cost: np.ndarray, feasible: np.ndarray):
    """Every trial's cost (met / missed) and the best feasible cost so far."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.scatter(numbers[~feasible], cost[~feasible], s=12, marker="x", color="grey", label="missed the target")
    ax.scatter(numbers[feasible], cost[feasible], s=14, color="tab:blue", label="met the target")
    best = np.minimum.accumulate(np.where(feasible, cost, np.inf))
    shown = np.isfinite(best)
    ax.step(numbers[shown], best[shown], where="post", color="tab:green", label="best so far")
    ax.set(xlabel="trial", ylabel="cost per hour")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def cost_against_p99(cost: np.ndarray, p99: np.ndarray, feasible: np.ndarray, front: list[tuple[float, float]],
                     bounds_ms: list[float]):
    """Cost against p99 of every trial, the Pareto front of the feasible ones joined."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.scatter(p99[~feasible], cost[~feasible], s=12, marker="x", color="grey", label="missed")
    ax.scatter(p99[feasible], cost[feasible], s=14, color="tab:blue", label="met")
    if front:
        c, p = zip(*sorted(front, key=lambda x: x[1]))
        ax.plot(p, c, "o-", color="tab:orange", label="Pareto front")
    for b in bounds_ms:
        ax.axvline(b, color="red", lw=1, ls=":")
    ax.set(xlabel="p99 (ms)", ylabel="cost per hour")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def bars(labels: list[str], values: list[float], xlabel: str):
    """Horizontal bars, largest on top."""
    fig, ax = plt.subplots(figsize=(SIZE[0], max(1.6, 0.3 * len(labels) + 0.8)))
    order = np.argsort(values)
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="tab:blue")
    ax.set(xlabel=xlabel)
    return fig


def compared(labels: list[str], groups: dict[str, list[float]], ylabel: str):
    """Grouped bars: each label's value per group (e.g. cost and p99 of best and baselines)."""
    fig, ax = plt.subplots(figsize=SIZE)
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(labels))
    for i, (name, vals) in enumerate(groups.items()):
        ax.bar(x + i * width, [v if v is not None and math.isfinite(v) else 0 for v in vals], width, label=name)
    ax.set_xticks(x + width * (len(groups) - 1) / 2, labels, fontsize=8)
    ax.set(ylabel=ylabel)
    ax.legend(fontsize=8)
    return fig


def real_against_sim(sim: list[float], real: list[float], labels: list[str]):
    """Each verified candidate's real p99 against its simulated one; the diagonal is agreement."""
    fig, ax = plt.subplots(figsize=(4.5, 4.0))
    ax.scatter(sim, real, color="tab:purple")
    for s, r, lab in zip(sim, real, labels):
        ax.annotate(lab, (s, r), fontsize=7, xytext=(3, 3), textcoords="offset points")
    hi = max([*sim, *real, 1.0]) * 1.1
    ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--")
    ax.set(xlabel="simulated p99 (ms)", ylabel="real p99 (ms)", xlim=(0, hi), ylim=(0, hi))
    return fig


def history(nights: list[str], panels: dict[str, tuple[np.ndarray, list[int], int | None]]):
    """One case's metrics night by night, one panel each, change points as vertical lines
    (red where the change is a flagged regression)."""
    n = max(1, len(panels))
    fig, axes = plt.subplots(n, 1, figsize=(SIZE[0], 1.6 * n + 0.6), sharex=True, squeeze=False)
    x = np.arange(len(nights))
    for ax, (metric, (values, points, flagged)) in zip(axes[:, 0], panels.items()):
        ax.plot(x, values, "o-", ms=3, lw=1)
        for p in points:
            ax.axvline(p - 0.5, color="red" if p == flagged else "orange", lw=1.2, ls="--")
        ax.set_ylabel(metric, fontsize=8)
    axes[-1, 0].set_xticks(x, [s[5:16].replace("T", " ") for s in nights], rotation=45, ha="right", fontsize=7)
    return fig
