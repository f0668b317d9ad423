"""Exact percentiles from raw records: per route, overall, per time window; generator health.

Every percentile is `numpy.percentile` (linear interpolation) over every request's own value;
no histogram is involved. Latency counts from the scheduled time (what a user sees), service
time from the actual send. Requests still running when the run was cut off enter the latency
percentiles at their lower bound (cut time - scheduled) and are counted as `unfinished`:
leaving them out would hide exactly the overload the run is meant to show. `errors` counts
failed responses; `error_rate` is (failed + unfinished) / sent: a request never answered
failed from the user's side. Failed answers are further split by kind (`failure_kind`):
`rejected` (503: Serve's backpressure once `max_queued_requests` is full, answered at once)
is a different fault from `timeouts` (no answer in time), and a tuner should see which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadgen.records import itl_values

PERCENTILES = (50, 90, 95, 99, 99.9)
# the record fields a summary reads: loading only these keeps a million records small
COLUMNS = ["scheduled", "sent", "end", "route", "status", "error", "ttft_ms", "itl_ms", "generator",
           "dropped", "unfinished", "degraded"]


def percentiles(values, prefix: str) -> dict[str, float | None]:
    """`prefix_pN` for each of PERCENTILES, `prefix_max` and `prefix_mean` of the finite values (None if none)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    out = {f"{prefix}_p{q:g}": (float(np.percentile(arr, q)) if arr.size else None) for q in PERCENTILES}
    out[f"{prefix}_max"] = float(arr.max()) if arr.size else None
    out[f"{prefix}_mean"] = float(arr.mean()) if arr.size else None
    return out


def ok_mask(df: pd.DataFrame) -> pd.Series:
    """Arrivals answered with success (sent, finished, no error, status 2xx/3xx)."""
    return (~df["dropped"]) & (~df["unfinished"]) & df["error"].isna() & df["status"].between(200, 399)


FAILURE_KINDS = ("ok", "degraded", "rejected", "timeout", "error", "unfinished", "dropped")
REJECTED_STATUS = 503  # what Serve's proxy answers when a deployment's queue is full
TIMEOUT_STATUS = (408, 504)  # Serve's request_timeout_s, a gateway's timeout


def _matches(values: pd.Series, pattern: str) -> np.ndarray:
    """Which values contain `pattern` (a case-insensitive regex); null never does. A categorical
    column is matched once per category, not once per row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        hit = np.asarray(values.cat.categories.astype(str).str.contains(pattern, case=False, regex=True), dtype=bool)
        codes = values.cat.codes.to_numpy()
        return np.append(hit, False)[np.where(codes >= 0, codes, len(hit))]
    return values.astype(str).str.contains(pattern, case=False, na=False).to_numpy(dtype=bool) & values.notna().to_numpy()


def failure_kind(df: pd.DataFrame) -> pd.Series:
    """Each record's outcome, one of FAILURE_KINDS: answered well (`ok`, or `degraded` when the
    app marked its answer so), refused by backpressure, timed out (the client's or the server's
    timeout), another failure, never answered, or never sent."""
    ok = ok_mask(df).to_numpy()
    status = df["status"].to_numpy()
    degraded = df["degraded"].fillna(False).to_numpy(dtype=bool) if "degraded" in df else np.zeros(len(df), bool)
    timed_out = np.isin(status, TIMEOUT_STATUS) | _matches(df["error"], "timeout|timed out")
    code = np.select([df["dropped"].to_numpy(), df["unfinished"].to_numpy(), ok & degraded, ok,
                      status == REJECTED_STATUS, timed_out],
                     [6, 5, 1, 0, 2, 3], default=4)
    return pd.Series(pd.Categorical.from_codes(code, FAILURE_KINDS), index=df.index)


def _group(df: pd.DataFrame, rows: np.ndarray, kinds: pd.Series, ok: np.ndarray, span_s: float) -> dict:
    """The figures of the records where `rows` is true; masks, not copies of the frame, so a
    million records summarise in little more memory than they take."""
    dropped, unfinished = df["dropped"].to_numpy(), df["unfinished"].to_numpy()
    sent = rows & ~dropped
    done = sent & ~unfinished
    good = rows & ok
    failed = sent & ~ok
    n_sent, n_failed, n_unfinished = int(sent.sum()), int(failed.sum()), int((sent & unfinished).sum())
    counts = kinds[rows].value_counts()
    errors = df.loc[failed, ["error", "status"]]
    labels = errors["error"].astype(object).where(errors["error"].notna(),
                                                  "HTTP " + errors["status"].astype("Int64").astype(str))
    out = {
        "arrivals": int(rows.sum()),
        "sent": n_sent,
        "ok": int(good.sum()),
        "errors": n_failed - n_unfinished,
        "rejected": int(counts.get("rejected", 0)),
        "timeouts": int(counts.get("timeout", 0)),
        "degraded": int(counts.get("degraded", 0)),
        "dropped": int((rows & dropped).sum()),
        "unfinished": n_unfinished,
        "offered_rps": int(rows.sum()) / span_s if span_s > 0 else None,
        "throughput_rps": int(good.sum()) / span_s if span_s > 0 else None,
        "error_rate": n_failed / n_sent if n_sent else None,
        "top_errors": {str(k): int(v) for k, v in labels.value_counts().head(5).items()},
    }
    out |= percentiles(df["latency_ms"].to_numpy()[sent], "latency_ms")
    out |= percentiles(df["service_ms"].to_numpy()[done], "service_ms")
    out |= percentiles(df["lag_ms"].to_numpy()[sent], "lag_ms")
    out |= percentiles(df["ttft_ms"].to_numpy(dtype=float, na_value=np.nan)[sent], "ttft_ms")
    out |= percentiles(itl_values(df["itl_ms"][sent]) if "itl_ms" in df else np.empty(0), "itl_ms")
    return out


def summarize(df: pd.DataFrame) -> dict:
    """Counts, rates and exact percentiles, overall and per route."""
    kinds, ok, everything = failure_kind(df), ok_mask(df).to_numpy(), np.ones(len(df), bool)
    if df.empty:
        return {"span_s": 0.0, "overall": _group(df, everything, kinds, ok, 0.0), "routes": {}}
    start, stop = float(df["scheduled"].min()), float(df["scheduled"].max())
    span = max(stop - start, 1e-9)
    routes = df["route"].astype(object).to_numpy()
    return {
        "start": start,
        "span_s": span,
        "overall": _group(df, everything, kinds, ok, span),
        "routes": {route: _group(df, routes == route, kinds, ok, span) for route in sorted(set(routes) - {None})},
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


def health(df: pd.DataFrame, cpu_by_generator: dict[str, float], max_lag_ms: float, max_cpu_pct: float,
           scheduled: dict[str, int] | None = None) -> dict:
    """Whether the generator kept its schedule (lag p99 and CPU against the limits) and recorded
    every arrival it was given (`scheduled`, per generator), per generator."""
    out, reasons, lost = {}, [], 0
    counts = df["generator"].astype(object).value_counts().to_dict() if len(df) else {}
    for gen in sorted(set(counts) | set(scheduled or {})):
        g = df[(df["generator"] == gen).to_numpy()] if gen in counts else df.iloc[:0]
        lag = g.loc[~g["dropped"], "lag_ms"].dropna().to_numpy()
        lag_p99 = float(np.percentile(lag, 99)) if lag.size else 0.0
        cpu = cpu_by_generator.get(gen)
        out[gen] = {"lag_ms_p99": lag_p99, "cpu_pct": cpu, "requests": int(counts.get(gen, 0))}
        if lag_p99 > max_lag_ms:
            busy = "" if cpu is None or cpu > max_cpu_pct else f" with its own CPU at {cpu:.0f}%: other processes held the CPUs"
            reasons.append(f"{gen}: schedule lag p99 {lag_p99:.1f} ms > {max_lag_ms:g} ms{busy}")
        if cpu is not None and cpu > max_cpu_pct:
            reasons.append(f"{gen}: CPU {cpu:.0f}% > {max_cpu_pct:g}%")
        if scheduled and gen in scheduled:
            out[gen]["scheduled"] = int(scheduled[gen])
            lost += max(0, int(scheduled[gen]) - int(counts.get(gen, 0)))
    return {"generators": out, "saturated": bool(reasons), "reasons": reasons, "lost_records": lost,
            "limits": {"max_lag_ms": max_lag_ms, "max_cpu_pct": max_cpu_pct}}


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:,.1f}"


def render(summary: dict, gen_health: dict | None = None) -> str:
    """A plain-text table in the style of Locust's own summary."""
    head = f"{'route':<24}{'arrivals':>9}{'ok':>8}{'err':>6}{'503':>6}{'t/o':>6}{'drop':>6}{'unfin':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}{'lag p99':>9}"
    lines = ["Exact percentiles from every request (latency in ms from the scheduled send; "
             "of the errors, 503 = refused by backpressure, t/o = timed out):", head, "-" * len(head)]
    rows = list(summary["routes"].items()) + [("Aggregated", summary["overall"])]
    for name, s in rows:
        lines.append(
            f"{name[:23]:<24}{s['arrivals']:>9}{s['ok']:>8}{s['errors']:>6}{s.get('rejected', 0):>6}{s.get('timeouts', 0):>6}{s['dropped']:>6}{s['unfinished']:>6}"
            f"{_fmt(s['latency_ms_p50']):>9}{_fmt(s['latency_ms_p90']):>9}{_fmt(s['latency_ms_p99']):>9}"
            f"{_fmt(s['latency_ms_p99.9']):>9}{_fmt(s['latency_ms_max']):>9}{_fmt(s['lag_ms_p99']):>9}"
        )
    o = summary["overall"]
    if o.get("ttft_ms_p50") is not None:
        lines.append(f"streamed: TTFT p50 {_fmt(o['ttft_ms_p50'])} ms, p99 {_fmt(o['ttft_ms_p99'])} ms; "
                     f"ITL p50 {_fmt(o['itl_ms_p50'])} ms, p99 {_fmt(o['itl_ms_p99'])} ms")
    if gen_health:
        for gen, h in gen_health["generators"].items():
            of = f" of {h['scheduled']} scheduled" if "scheduled" in h else ""
            lines.append(f"generator {gen}: lag p99 {h['lag_ms_p99']:.2f} ms, CPU {_fmt(h['cpu_pct'])}%, {h['requests']} arrivals recorded{of}")
        if gen_health.get("lost_records"):
            lines.append(f"WARNING: {gen_health['lost_records']} scheduled arrivals have no record")
        if gen_health["saturated"]:
            lines.append("WARNING: the load generator fell behind its schedule; latencies include its own delay: "
                         + "; ".join(gen_health["reasons"]))
    return "\n".join(lines)
