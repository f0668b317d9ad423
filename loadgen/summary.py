"""Exact percentiles from raw records: per route, overall, per time window; generator health.

Every percentile is `numpy.percentile` (linear interpolation) over every request's own value;
no histogram is involved. Latency counts from the scheduled time (what a user sees), service
time from the actual send. Requests still running when the run was cut off enter the latency
percentiles at their lower bound (cut time - scheduled) and are counted as `unfinished`:
leaving them out would hide exactly the overload the run is meant to show. `errors` counts
failed responses; `error_rate` is (failed + unfinished) / sent: a request never answered
failed from the user's side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99, 99.9)


def _pcts(values, prefix: str) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    out = {f"{prefix}_p{q:g}": (float(np.percentile(arr, q)) if arr.size else None) for q in PERCENTILES}
    out[f"{prefix}_max"] = float(arr.max()) if arr.size else None
    out[f"{prefix}_mean"] = float(arr.mean()) if arr.size else None
    return out


def ok_mask(df: pd.DataFrame) -> pd.Series:
    """Arrivals answered with success (sent, finished, no error, status 2xx/3xx)."""
    return (~df["dropped"]) & (~df["unfinished"]) & df["error"].isna() & df["status"].between(200, 399)


def _group(df: pd.DataFrame, span_s: float) -> dict:
    sent = df[~df["dropped"]]
    done = sent[~sent["unfinished"]]
    ok = ok_mask(df)
    itl = np.concatenate([np.empty(0)] + [np.asarray(x, dtype=float) for x in sent["itl_ms"].dropna()])
    errors = sent[~ok[sent.index]]
    out = {
        "arrivals": int(len(df)),
        "sent": int(len(sent)),
        "ok": int(ok.sum()),
        "errors": int(len(errors) - sent["unfinished"].sum()),
        "dropped": int(df["dropped"].sum()),
        "unfinished": int(sent["unfinished"].sum()),
        "offered_rps": len(df) / span_s if span_s > 0 else None,
        "throughput_rps": int(ok.sum()) / span_s if span_s > 0 else None,
        "error_rate": float((len(errors)) / len(sent)) if len(sent) else None,
        "top_errors": {str(k): int(v) for k, v in
                       errors["error"].fillna("HTTP " + errors["status"].astype("Int64").astype(str)).value_counts().head(5).items()},
    }
    out |= _pcts(sent["latency_ms"], "latency_ms")
    out |= _pcts(done["service_ms"], "service_ms")
    out |= _pcts(sent["lag_ms"], "lag_ms")
    out |= _pcts(sent["ttft_ms"], "ttft_ms")
    out |= _pcts(itl, "itl_ms")
    return out


def summarize(df: pd.DataFrame) -> dict:
    """Counts, rates and exact percentiles, overall and per route."""
    if df.empty:
        return {"span_s": 0.0, "overall": _group(df, 0.0), "routes": {}}
    start, stop = float(df["scheduled"].min()), float(df["scheduled"].max())
    span = max(stop - start, 1e-9)
    return {
        "start": start,
        "span_s": span,
        "overall": _group(df, span),
        "routes": {route: _group(g, span) for route, g in df.groupby("route", sort=True)},
    }


def windows(df: pd.DataFrame, window_s: float, route: str | None = None) -> pd.DataFrame:
    """Per window of `window_s` (by scheduled time): arrivals, ok, errors, dropped and exact latency percentiles."""
    if route is not None:
        df = df[df["route"] == route]
    if df.empty:
        return pd.DataFrame()
    t = df["scheduled"] - df["scheduled"].min()
    keys = (t // window_s * window_s).rename("t_s")
    rows = []
    for start, g in df.groupby(keys, sort=True):
        sent = g[~g["dropped"]]
        ok = ok_mask(g)
        row = {"t_s": float(start), "arrivals": len(g), "ok": int(ok.sum()), "dropped": int(g["dropped"].sum()),
               "errors": int(len(sent) - ok.sum() - sent["unfinished"].sum()), "unfinished": int(sent["unfinished"].sum())}
        lat = sent["latency_ms"].dropna().to_numpy()
        for q in (50, 90, 99):
            row[f"p{q}_ms"] = float(np.percentile(lat, q)) if lat.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def health(df: pd.DataFrame, cpu_by_generator: dict[str, float], max_lag_ms: float, max_cpu_pct: float) -> dict:
    """Whether the generator kept its schedule: lag p99 and CPU against the limits, per generator."""
    out, reasons = {}, []
    for gen, g in df.groupby("generator", sort=True):
        lag = g.loc[~g["dropped"], "lag_ms"].dropna().to_numpy()
        lag_p99 = float(np.percentile(lag, 99)) if lag.size else 0.0
        cpu = cpu_by_generator.get(gen)
        out[gen] = {"lag_ms_p99": lag_p99, "cpu_pct": cpu, "requests": int(len(g))}
        if lag_p99 > max_lag_ms:
            busy = "" if cpu is None or cpu > max_cpu_pct else f" with its own CPU at {cpu:.0f}%: other processes held the CPUs"
            reasons.append(f"{gen}: schedule lag p99 {lag_p99:.1f} ms > {max_lag_ms:g} ms{busy}")
        if cpu is not None and cpu > max_cpu_pct:
            reasons.append(f"{gen}: CPU {cpu:.0f}% > {max_cpu_pct:g}%")
    return {"generators": out, "saturated": bool(reasons), "reasons": reasons,
            "limits": {"max_lag_ms": max_lag_ms, "max_cpu_pct": max_cpu_pct}}


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:,.1f}"


def render(summary: dict, gen_health: dict | None = None) -> str:
    """A plain-text table in the style of Locust's own summary."""
    head = f"{'route':<24}{'arrivals':>9}{'ok':>8}{'err':>6}{'drop':>6}{'unfin':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}{'lag p99':>9}"
    lines = ["Exact percentiles from every request (latency in ms from the scheduled send):", head, "-" * len(head)]
    rows = list(summary["routes"].items()) + [("Aggregated", summary["overall"])]
    for name, s in rows:
        lines.append(
            f"{name[:23]:<24}{s['arrivals']:>9}{s['ok']:>8}{s['errors']:>6}{s['dropped']:>6}{s['unfinished']:>6}"
            f"{_fmt(s['latency_ms_p50']):>9}{_fmt(s['latency_ms_p90']):>9}{_fmt(s['latency_ms_p99']):>9}"
            f"{_fmt(s['latency_ms_p99.9']):>9}{_fmt(s['latency_ms_max']):>9}{_fmt(s['lag_ms_p99']):>9}"
        )
    o = summary["overall"]
    if o.get("ttft_ms_p50") is not None:
        lines.append(f"streamed: TTFT p50 {_fmt(o['ttft_ms_p50'])} ms, p99 {_fmt(o['ttft_ms_p99'])} ms; "
                     f"ITL p50 {_fmt(o['itl_ms_p50'])} ms, p99 {_fmt(o['itl_ms_p99'])} ms")
    if gen_health:
        for gen, h in gen_health["generators"].items():
            lines.append(f"generator {gen}: lag p99 {h['lag_ms_p99']:.2f} ms, CPU {_fmt(h['cpu_pct'])}%, {h['requests']} arrivals")
        if gen_health["saturated"]:
            lines.append("WARNING: the load generator fell behind its schedule; latencies include its own delay: "
                         + "; ".join(gen_health["reasons"]))
    return "\n".join(lines)
