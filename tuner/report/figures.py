"""The reports' plots (matplotlib), each returned as inline SVG so a report is one file that
opens without a network. Inputs are plain data (records, timelines, tables); no file I/O.

Every time plot of a page takes the page's x-range (`xlim`, seconds into the load window: the
window itself, from the warm-up's start where the page shows it), so plots read one under
another line up. Legends sit above the plotting area, never over data; where lines would hide
each other (deployments on the same count, routes of different speeds) each gets its own panel."""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 96, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "font.size": 9,
                     "axes.titlesize": 8, "axes.titlelocation": "left"})
SIZE = (9.5, 3.0)
PANEL_H = 1.3  # inches per small-multiple panel
ROW_H = 0.22  # inches per row of the panel that lists constant timelines
TIME_LABEL = "seconds into the load window"

Range = tuple[float, float]
Spans = list[tuple[float, float, str]]
Bounds = list[tuple[float, str | None]]  # a latency bound in ms, and the route it holds for (None: every route)
GAP_LABEL = "Prometheus gap"  # a span shaded grey: no record, not a fault
WARMUP_LABEL = "warm-up"
# Simulated and real results apart at a glance: colour and marker both differ, so neither
# colour vision nor a greyscale print is needed to tell them.
BACKENDS = {"sim": ("tab:blue", "o", "simulated"), "real": ("tab:orange", "D", "real")}
PERCENTILES = ((0.5, "tab:green", "-"), (0.95, "tab:blue", "--"), (0.99, "tab:red", "-"))


def svg(fig) -> str:
    """The figure as an <svg> element (the XML prolog dropped), and the figure closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


def _bins(t: np.ndarray, width: float) -> np.ndarray:
    return np.floor(t / width) * width


def _single(height: float = SIZE[1]):
    fig, ax = plt.subplots(figsize=(SIZE[0], height), layout="constrained")
    return fig, ax


def _panels(n: int, *, tail_rows: int = 0):
    """`n` stacked panels (two columns past three; one, left empty, when there is nothing to
    draw) and, given `tail_rows`, one full-width panel under them sized for that many rows."""
    n = n if n or tail_rows else 1
    ncols = 1 if n <= 3 else 2
    heights = [PANEL_H] * math.ceil(n / ncols) + ([ROW_H * (tail_rows + 1) + 0.5] if tail_rows else [])
    fig = plt.figure(figsize=(SIZE[0], sum(heights) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(n)]
    return fig, axes, fig.add_subplot(grid[-1, :]) if tail_rows else None


def _legend(fig) -> None:
    """One legend for the whole figure, above its panels (each label once)."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside upper left", ncol=min(6, len(entries)),
                   frameon=False, fontsize=8)


def _time_axis(ax, xlim: Range, spans: Spans = (), labelled: bool = True) -> None:
    """The page's x-range, with the warm-up (before 0) shaded light grey, faults red and holes
    in Prometheus's record grey; `labelled` names each span (once per figure is enough)."""
    shaded = ([(xlim[0], 0.0, WARMUP_LABEL)] if xlim[0] < 0 else []) + list(spans)
    for start, end, label in shaded:
        color = {WARMUP_LABEL: "0.5", GAP_LABEL: "grey"}.get(label, "red")
        ax.axvspan(start, end, color=color, alpha=0.12, lw=0, zorder=0)
        if labelled:
            ax.annotate(label, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top",
                        color="0.3" if color != "red" else "darkred", xytext=(2, -2), textcoords="offset points")
    ax.set_xlim(xlim)


def _held(timeline: list[tuple[float, float]], xlim: Range) -> tuple[list[float], list[float]]:
    """A step timeline (its changes only) as drawn over `xlim`: the value in effect at the
    range's start, each change inside it, and the last value held to the range's end."""
    points = sorted(timeline)
    before = [p for p in points if p[0] <= xlim[0]]
    drawn = before[-1:] + [p for p in points if xlim[0] < p[0] < xlim[1]]
    if not drawn:
        return [], []
    drawn = [(max(drawn[0][0], xlim[0]), drawn[0][1]), *drawn[1:], (xlim[1], drawn[-1][1])]
    return [p[0] for p in drawn], [p[1] for p in drawn]


def latency_over_time(t: np.ndarray, latency_ms: np.ndarray, routes: np.ndarray, bounds: Bounds, *, xlim: Range,
                      width: float = 5.0, spans: Spans = ()):
    """Client latency percentiles per `width`-second bin of send time, one panel per route
    (routes differ by orders of magnitude), with the target's latency bounds as lines."""
    names = sorted(set(routes))
    fig, axes, _ = _panels(len(names))
    for i, (ax, route) in enumerate(zip(axes, names)):
        sel = routes == route
        df = pd.DataFrame({"bin": _bins(t[sel], width) + width / 2, "ms": latency_ms[sel]}).dropna()
        for q, color, style in PERCENTILES:
            s = df.groupby("bin")["ms"].quantile(q)
            ax.plot(s.index, s.values, style, color=color, lw=1.4 if q == 0.99 else 1, label=f"p{q * 100:g}")
        for ms, scope in bounds:
            if scope in (None, route):
                ax.axhline(ms, color="red", lw=1, ls=":", label=f"target {ms:g} ms")
        ax.set_title(route)
        ax.set_ylim(bottom=0)
        _time_axis(ax, xlim, spans, labelled=i == 0)
    fig.supxlabel(TIME_LABEL, fontsize=9)
    fig.supylabel("latency (ms)", fontsize=9)
    _legend(fig)
    return fig


def load_over_time(t_sched: np.ndarray, t_ok: np.ndarray, *, xlim: Range, width: float = 5.0, spans: Spans = ()):
    """Offered load (arrivals by scheduled time) against throughput (answers by end time)."""
    fig, ax = _single()
    for values, label in ((t_sched, "offered"), (t_ok, "throughput (ok)")):
        if len(values):
            s = pd.Series(1, index=_bins(values, width)).groupby(level=0).sum() / width
            # held to the last bin's end, not stopped at its start
            ax.step([*s.index, s.index[-1] + width], [*s.values, s.values[-1]], where="post", label=label)
    _time_axis(ax, xlim, spans)
    ax.set(xlabel=TIME_LABEL, ylabel="requests / s")
    _legend(fig)
    return fig


def timelines(lines: dict[str, list[tuple[float, float]]], ylabel: str, *, xlim: Range, overlay: dict | None = None,
              spans: Spans = ()):
    """Step timelines (replicas per deployment, pods per group) over the page's x-range: a
    panel for each one that changes, and one panel listing those that hold one value
    throughout (on one axis they would lie on each other). `overlay` adds a second set,
    dashed: the simulator's against the real run; a name is constant only if both agree."""
    held = {name: _held(tl, xlim) for name, tl in lines.items()}
    other = {name: _held(tl, xlim) for name, tl in (overlay or {}).items()}
    values = {name: set(held.get(name, ([], []))[1]) | set(other.get(name, ([], []))[1]) for name in held | other}
    changing = sorted(name for name, v in values.items() if len(v) > 1)
    constant = sorted(name for name, v in values.items() if len(v) == 1)
    fig, axes, tail = _panels(len(changing), tail_rows=len(constant))
    # Beside an overlay the runs take their backends' colours and names; alone, one plain line.
    solid = BACKENDS["real"] if overlay else ("tab:blue", None, None)
    for i, (ax, name) in enumerate(zip(axes, changing)):
        if held.get(name, ([], []))[0]:
            ax.step(*held[name], where="post", color=solid[0], label=solid[2])
        if other.get(name, ([], []))[0]:
            ax.step(*other[name], where="post", color=BACKENDS["sim"][0], ls="--", label=BACKENDS["sim"][2])
        ax.set_title(name)
        ax.set_ylim(0, max(values[name]) * 1.15 + 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        _time_axis(ax, xlim, spans, labelled=i == 0)
    if tail is not None:
        # Names written on their lines rather than as tick labels: long tick labels would
        # push this figure's axes right of the page's other time plots.
        for row, name in enumerate(constant):
            tail.hlines(row, *xlim, color="0.45", lw=2)
            tail.annotate(f"{name}: {next(iter(values[name])):g}", (0, row), xycoords=("axes fraction", "data"),
                          xytext=(3, 1.5), textcoords="offset points", fontsize=7, va="bottom")
        tail.set_yticks([])
        tail.set_ylim(len(constant) - 0.4, -1.5)  # room at the top for the spans' labels
        tail.set_title(f"constant over the window ({ylabel})")
        _time_axis(tail, xlim, spans, labelled=not changing)
    if changing:
        fig.supylabel(ylabel, fontsize=9)
    fig.supxlabel(TIME_LABEL, fontsize=9)
    _legend(fig)
    return fig


def labelled_series(frame: pd.DataFrame, ylabel: str, *, xlim: Range):
    """Prometheus range series (t, value per label set), a panel each on one shared scale."""
    names = sorted(frame["label"].unique())
    fig, axes, _ = _panels(len(names))
    top = float(frame["value"].max()) if len(frame) else 1.0
    for i, (ax, name) in enumerate(zip(axes, names)):
        g = frame[frame["label"] == name].sort_values("t")
        ax.plot(g["t"], g["value"], lw=1, color="tab:blue")
        ax.set_title(name)
        ax.set_ylim(0, top * 1.1 or 1.0)
        _time_axis(ax, xlim, labelled=i == 0)
    fig.supxlabel(TIME_LABEL, fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    return fig


def p99_overlay(frames: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, xlim: Range, width: float = 5.0):
    """p99 per bin of send time of the real and the simulated run (`frames` by backend: send
    time, latency ms and route per request; real solid, simulated dashed), a panel per route."""
    names = sorted({r for _, _, routes in frames.values() for r in set(routes)})
    fig, axes, _ = _panels(len(names))
    for i, (ax, route) in enumerate(zip(axes, names)):
        for run, (t, lat, routes) in frames.items():
            sel = routes == route
            s = (pd.DataFrame({"bin": _bins(t[sel], width) + width / 2, "ms": lat[sel]}).dropna()
                 .groupby("bin")["ms"].quantile(0.99))
            color, _, name = BACKENDS[run]
            ax.plot(s.index, s.values, "-" if run == "real" else "--", color=color, label=f"p99, {name}")
        ax.set_title(route)
        ax.set_ylim(bottom=0)
        _time_axis(ax, xlim, labelled=i == 0)
    fig.supxlabel(TIME_LABEL, fontsize=9)
    fig.supylabel("latency (ms)", fontsize=9)
    _legend(fig)
    return fig


def errors_over_time(t: np.ndarray, kinds: pd.Series, *, xlim: Range, width: float = 5.0, spans: Spans = ()):
    """Failed requests per bin, stacked by kind (loadgen.summary.FAILURE_KINDS: rejected,
    timeout, error, unfinished, dropped, and answers the app marked degraded)."""
    fig, ax = _single()
    df = pd.DataFrame({"bin": _bins(t, width), "kind": kinds})
    table = df.groupby(["bin", "kind"], observed=True).size().unstack(fill_value=0) if len(df) else pd.DataFrame()
    bottom = np.zeros(len(table))
    for kind in table.columns:
        ax.bar(table.index, table[kind].values, width=width * 0.9, align="edge", bottom=bottom, label=str(kind))
        bottom += table[kind].values
    _time_axis(ax, xlim, spans)
    ax.set(xlabel=TIME_LABEL, ylabel=f"requests per {width:g} s")
    _legend(fig)
    return fig


def _log_ms_axis(ax, lo: float, hi: float) -> None:
    """A log latency axis labelled in plain milliseconds at 1-2-5 steps (every step within a
    decade, only the decades over many), minor ticks unlabelled: matplotlib's default labels
    every minor tick of a short range as 3x10^2 and the labels run into each other."""
    decades = math.log10(max(hi, lo * 1.0001) / lo)
    subs = np.arange(1.0, 10.0) if decades < 1 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def latency_distribution(latency_ms: np.ndarray, routes: np.ndarray, bounds: Bounds):
    """The latency CDF of answered requests per route (log axis), with the target's bounds."""
    fig, ax = _single()
    finite = np.isfinite(latency_ms) & (latency_ms > 0)
    for route in sorted(set(routes[finite])):
        xs = np.sort(latency_ms[finite & (routes == route)])
        ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=route)
    for ms, scope in bounds:
        ax.axvline(ms, color="red", lw=1, ls=":", label=f"target {ms:g} ms" + (f" ({scope})" if scope else ""))
    if finite.any():
        edges = [*latency_ms[finite], *(ms for ms, _ in bounds)]
        _log_ms_axis(ax, min(edges), max(edges))
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests")
    _legend(fig)
    return fig


def _by_backend(ax, x: np.ndarray, y: np.ndarray, met: np.ndarray, backends: np.ndarray) -> None:
    """Points by backend (colour and marker) and verdict (filled: met, hollow: missed)."""
    for backend, (color, marker, name) in BACKENDS.items():
        sel = backends == backend
        if (sel & met).any():
            ax.scatter(x[sel & met], y[sel & met], s=18, marker=marker, color=color, label=f"{name}, met")
        if (sel & ~met).any():
            ax.scatter(x[sel & ~met], y[sel & ~met], s=18, marker=marker, facecolors="none", edgecolors=color,
                       label=f"{name}, missed")


def best_so_far(numbers: np.ndarray, cost: np.ndarray, feasible: np.ndarray, backends: np.ndarray):
    """Every trial's cost by backend and verdict, and each backend's best feasible cost so far."""
    fig, ax = _single()
    _by_backend(ax, numbers, cost, feasible, backends)
    for backend, (color, _, name) in BACKENDS.items():
        sel = backends == backend
        best = np.minimum.accumulate(np.where(feasible[sel], cost[sel], np.inf)) if sel.any() else np.array([])
        shown = np.isfinite(best)
        if shown.any():  # held half a trial past the backend's last, so a best found last still shows
            ax.step([*numbers[sel][shown], numbers[sel][-1] + 0.5], [*best[shown], best[-1]], where="post", color=color,
                    lw=1.2, label=f"best so far ({name})")
    ax.set(xlabel="trial", ylabel="cost per hour")
    _legend(fig)
    return fig


def cost_against_p99(cost: np.ndarray, p99: np.ndarray, feasible: np.ndarray, backends: np.ndarray,
                     front: list[tuple[float, float]], bounds_ms: list[float], front_backend: str = "sim"):
    """Cost against p99 of every trial by backend and verdict, the Pareto front of the
    feasible ones (of `front_backend`'s trials) joined."""
    fig, ax = _single()
    _by_backend(ax, p99, cost, feasible, backends)
    if front:
        c, p = zip(*sorted(front, key=lambda x: x[1]))
        ax.plot(p, c, "-", color="0.3", lw=1, zorder=0, label=f"Pareto front ({BACKENDS[front_backend][2]})")
    for b in bounds_ms:
        ax.axvline(b, color="red", lw=1, ls=":", label=f"target {b:g} ms")
    ax.set(xlabel="p99 (ms)", ylabel="cost per hour")
    _legend(fig)
    return fig


def bars(labels: list[str], values: list[float], xlabel: str):
    """Horizontal bars, largest on top."""
    fig, ax = _single(max(1.6, 0.3 * len(labels) + 0.8))
    order = np.argsort(values)
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="tab:blue")
    ax.set(xlabel=xlabel)
    return fig


def compared(labels: list[str], values: list[float | None], backends: list[str], met: list[bool], xlabel: str):
    """One horizontal bar per label (best and baselines), coloured by the backend that measured
    it, hatched where it missed the target; the names sit on the axis, where long ones fit."""
    fig, ax = _single(max(1.6, 0.3 * len(labels) + 0.9))
    y = np.arange(len(labels))[::-1]
    for backend, (color, _, name) in BACKENDS.items():
        for ok in (True, False):
            sel = [i for i, (b, m) in enumerate(zip(backends, met)) if b == backend and bool(m) == ok]
            if sel:
                ax.barh(y[sel], [values[i] if values[i] is not None and math.isfinite(values[i]) else 0 for i in sel],
                        color=color if ok else "none", edgecolor=color, hatch=None if ok else "///",
                        label=f"{name}, {'met' if ok else 'missed'}")
    ax.set_yticks(y, labels, fontsize=8)
    ax.grid(False, axis="y")
    ax.set(xlabel=xlabel)
    _legend(fig)
    return fig


def real_against_sim(sim: list[float], real: list[float], labels: list[str]):
    """Each verified candidate's real p99 against its simulated one; the diagonal is agreement."""
    fig, ax = plt.subplots(figsize=(4.5, 4.0), layout="constrained")
    ax.scatter(sim, real, color=BACKENDS["real"][0], marker=BACKENDS["real"][1])
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
