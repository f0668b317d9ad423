"""`tuner report DIR`: one self-contained HTML page (reports/templates/, plots inline as SVG)
for whatever DIR holds: a trial (`tuner run`/`tuner sim`), a study (`tuner optimize`), a
validation (`tuner validate`) or a nightly bench (`tuner bench`)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import jinja2
import numpy as np
import pandas as pd

from tuner.errors import UsageError
from tuner.paths import REPORT_TEMPLATES
from tuner.report import figures as F


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPORT_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    return env


def kind_of(folder: Path) -> str:
    """What `folder` holds: trial, study, validation or bench."""
    if (folder / "bench.json").is_file():
        return "bench"
    if (folder / "validation.json").is_file():
        return "validation"
    if (folder / "summary.json").is_file() and (folder / "trials.csv").is_file():
        return "study"
    if (folder / "result.json").is_file():
        return "trial"
    raise UsageError(f"{folder}: holds no result.json, summary.json, validation.json or bench.json to report on")


def _figure(fid: str, title: str, fig, caption: str = "") -> dict:
    return {"id": fid, "title": title, "svg": F.svg(fig), "caption": caption}


def _section(sid: str, heading: str, *, text: str = "", tables=(), figures=()) -> dict:
    return {"id": sid, "heading": heading, "text": text, "tables": list(tables), "figures": list(figures)}


def _verdict(status: str) -> dict:
    return {"text": status, "css": {"met": "good", "missed": "bad", "no regression": "good"}.get(status, "bad"
                                                                                               if "regress" in status or status == "unmeasured" else "neutral")}


# ---- a trial


def _records(folder: Path, result) -> pd.DataFrame | None:
    from loadgen.records import with_derived

    rel = result.files.get("records")
    path = folder / rel if rel else folder / "records.parquet"
    return with_derived(pd.read_parquet(path)) if path.is_file() else None


def _series(folder: Path, result, t0: float) -> pd.DataFrame | None:
    rel = result.files.get("series")
    path = folder / rel if rel else None
    if path is None or not path.is_file():
        return None
    s = pd.read_parquet(path)
    s["t"] = s["t"] - t0
    s["label"] = ["/".join(str(v) for v in json.loads(x).values()) or q for x, q in zip(s["labels"], s["query"])]
    return s


def _t0(result) -> float:
    """The load window's start, unix time: a trial's timestamps minus this are seconds into it."""
    return result.window.start if result.window else 0.0


def x_range(result, series: pd.DataFrame | None) -> tuple[float, float]:
    """The x-range every time plot of a trial's page shares: the load window, from the
    warm-up's start when some of its timelines begin before the window (a real trial's
    Prometheus timelines do; its requests and a simulation's timelines do not), so that
    plots read one under another line up."""
    lines = [tl for tl in (*result.replicas.values(), *result.nodes.values()) if tl]
    starts = [min(t for t, _ in tl) for tl in lines] + ([float(series["t"].min())] if series is not None and len(series) else [])
    warmup = result.scenario.warmup_s
    return (-warmup if warmup > 0 and any(t < 0 for t in starts) else 0.0, result.scenario.duration_s)


def _bounds(target) -> list[tuple[float, str | None]]:
    """The target's latency bounds (ms), each with the route it holds for (None: every route)."""
    return [(c.clause.threshold, c.clause.route) for c in target.clauses if c.clause.metric == "latency"]


def _routes(df: pd.DataFrame) -> np.ndarray:
    return df["route"].astype(str).to_numpy(dtype=object)


def trial_sections(folder: Path, result, prefix: str = "") -> list[dict]:
    """The sections of one trial: verdict, latency, load, replicas, queues, errors, distribution,
    generator health."""
    from loadgen.summary import failure_kind, ok_mask

    t0 = _t0(result)
    bounds = _bounds(result.target)
    verdicts = {"headers": ["clause", "client", "server", "margin", "passed"],
                "rows": [[c.clause.text, c.clause.display(c.client), c.clause.display(c.server),
                          f"{c.margin:+.1%}" if c.margin is not None else None, c.passed] for c in result.target.clauses]}
    routes = {"headers": ["route", "arrivals", "ok", "degraded", "errors", "rejected (503)", "timeouts", "dropped",
                          "unfinished", "p50 ms", "p99 ms", "throughput rps"],
              "rows": [[name, r.arrivals, r.ok, r.degraded, r.errors, r.rejected, r.timeouts, r.dropped, r.unfinished,
                        r.latency_ms.p50, r.latency_ms.p99, r.throughput_rps]
                       for name, r in ({"all": result.overall} | result.routes).items() if r]}
    sections = [_section(f"{prefix}verdict", "Verdict", tables=[verdicts, routes],
                         text="; ".join(result.reasons))]
    if result.faults:
        from tuner.run_view import FAULT_HEADERS, fault_rows

        sections.append(_section(f"{prefix}faults", "Faults injected", tables=[{"headers": FAULT_HEADERS,
                                                                                  "rows": fault_rows(result)}],
                                 text="shaded on the timelines below; recovery is from the fault's end until no "
                                      "request fails or is answered degraded"))
    spans = [(f.injected_s, f.injected_s + (f.duration_s or 0.5), f.kind) for f in result.faults if f.injected_s is not None]
    spans += [(g.start_s, g.end_s, F.GAP_LABEL) for g in result.gaps]
    df = _records(folder, result)
    series = _series(folder, result, t0)
    xlim = x_range(result, series)
    figs = []
    measured = df is not None and len(df) > 0
    ok = ok_mask(df).to_numpy() if measured else None
    if measured:
        t = (df["scheduled"] - t0).to_numpy(dtype=float)
        figs.append(_figure(f"{prefix}latency", "Latency percentiles over time per route, against the target",
                            F.latency_over_time(t[ok], df.loc[ok, "latency_ms"].to_numpy(dtype=float), _routes(df)[ok],
                                                bounds, xlim=xlim, spans=spans),
                            "client latency from the scheduled send, per 5 s of send time"))
        figs.append(_figure(f"{prefix}load", "Offered load and throughput",
                            F.load_over_time(t, (df.loc[ok, "end"] - t0).to_numpy(dtype=float), xlim=xlim, spans=spans)))
    replicas = {k: [(float(a), float(b)) for a, b in v] for k, v in result.replicas.items()}
    if replicas:
        figs.append(_figure(f"{prefix}replicas", "Replicas per deployment",
                            F.timelines(replicas, "running replicas", xlim=xlim, spans=spans),
                            "a panel for each deployment whose count changed; the others, constant, in the last one"))
    if result.nodes:
        nodes = {k: [(float(a), float(b)) for a, b in v] for k, v in result.nodes.items()}
        figs.append(_figure(f"{prefix}nodes", "Cluster layer: pods per group", F.timelines(nodes, "pods", xlim=xlim)))
    if series is not None:
        for query, title in (("ongoing_requests", "Ongoing requests per deployment"),
                             ("queued_requests", "Queued requests per deployment")):
            part = series[series["query"] == query]
            peak = part.groupby("label")["value"].apply(lambda v: v.abs().max())
            if (peak > 0).any():
                idle = sorted(peak.index[peak == 0])
                figs.append(_figure(f"{prefix}{query}", title, F.labelled_series(part[part["label"].isin(peak.index[peak > 0])],
                                                                                 "requests", xlim=xlim),
                                    f"zero throughout: {', '.join(idle)}" if idle else ""))
    if measured:
        kinds = failure_kind(df)
        hurt = kinds != "ok"
        if hurt.any():
            figs.append(_figure(f"{prefix}errors", "Errors, drops and degraded answers over time",
                                F.errors_over_time((df.loc[hurt, "scheduled"] - t0).to_numpy(dtype=float), kinds[hurt],
                                                   xlim=xlim, spans=spans)))
        figs.append(_figure(f"{prefix}distribution", "Latency distribution per route",
                            F.latency_distribution(df.loc[ok, "latency_ms"].to_numpy(dtype=float), _routes(df)[ok],
                                                   bounds)))
    shown = (f"from {-xlim[0]:g} s before the load window (its warm-up, shaded) to its end at {xlim[1]:g} s"
             if xlim[0] < 0 else f"over the load window, 0 to {xlim[1]:g} s")
    sections.append(_section(f"{prefix}timelines", "Over the load window", figures=figs,
                             text=f"Every time plot spans the same range: {shown}." if df is not None
                             else "no request records in this folder"))
    if result.generator is not None:
        sections.append(_generator_section(result.generator, df, prefix))
    return sections


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _generator_section(g, df, prefix: str) -> dict:
    """How closely the open-loop generator kept its schedule: the lag of each send behind its
    scheduled time, by percentile, and its own CPU. A noisy trial is often a late generator."""
    rows = [["saturated (past a limit below)", g.saturated], ["reasons", "; ".join(g.reasons) or "-"]]
    if df is not None and "lag_ms" in df and len(df):
        from loadgen.summary import percentiles

        lag = percentiles(df.loc[~df["dropped"].astype(bool), "lag_ms"], "lag")
        for q in ("p50", "p90", "p99"):
            rows.append([f"send lag {q}, ms behind schedule", _round(lag[f"lag_{q}"])])
        rows.append(["send lag max, ms", _round(lag["lag_max"])])
    else:
        rows.append(["send lag p99, ms behind schedule", g.lag_ms_p99])
    rows += [["generator CPU, % of one core", g.cpu_pct], ["arrivals without a record", g.lost_records]]
    rows += [[f"limit: {k}", v] for k, v in g.limits.items()]
    return _section(f"{prefix}generator", "Load generator health", tables=[{"headers": ["figure", "value"], "rows": rows}],
                    text="Open loop: each request is due at its scheduled time whatever the answers before it; the "
                         "lag is how late it was sent, and counts in its latency.")


def trial_page(folder: Path) -> dict:
    from tuner.result import load_result

    result = load_result(folder / "result.json")
    meta = [("backend", result.backend), ("scenario", f"{result.scenario.name} {' '.join(result.scenario.options)}".strip()),
            ("duration", f"{result.scenario.duration_s:g} s after {result.scenario.warmup_s:g} s of warm-up"),
            ("config", result.config.path or result.config.hash[:12]),
            ("cost", f"{result.cost.cost_per_hour:.4f} {result.cost.currency}/h" if result.cost else "-")]
    if result.repeat:
        meta.append(("repeats", f"{result.repeat.count} (tables and timelines: {result.repeat.chosen})"))
    return {"title": f"Trial: {result.scenario.name} against {result.target.text}", "subtitle": str(folder),
            "verdict": _verdict(result.status), "meta": meta, "sections": trial_sections(folder, result)}


# ---- a study


def _importances(folder: Path, summary: dict) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances of the search's simulated study, for cost and for p99."""
    import optuna

    from tuner.optimize.attrs import TrialAttrs

    url = summary.get("storage") or f"sqlite:///{(folder / 'study.db').resolve()}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(url)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = "tuner" if "tuner" in names else max((n for n in names if n.startswith("sim-")), default=None)
        if name is None:
            return {}
        study = optuna.load_study(study_name=name, storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) < 4 or len(study.directions) != 1:
            return {}
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's note that low values are what is sought: they are
            out["cost"] = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
            if all(TrialAttrs.of(t).p99_ms is not None for t in done):
                out["p99"] = optuna.importance.get_param_importances(study, target=lambda t: TrialAttrs.of(t).p99_ms)
        return out
    except (ValueError, RuntimeError, optuna.exceptions.OptunaError):
        return {}


def _run_links(folder: Path, base: Path, entry: dict) -> dict | None:
    """Links to the trials a real evaluation (`entry`, summary.json's brief of it) left, one per
    scenario: the trial folders it records (relative to the study `folder`), each to its
    report.html or, where none was written, its result.json. Relative to `base`, the folder the
    page is written to, so the study folder can be moved whole."""
    links = []
    for stem, run in (entry.get("runs") or {}).items():
        page = next((f for f in (folder / run / "report.html", folder / run / "result.json") if f.is_file()), None)
        if page is not None:
            rel = Path(os.path.relpath(page.resolve(), base.resolve())).as_posix()
            links.append({"text": stem if page.name == "report.html" else f"{stem} (result.json)", "href": quote(rel)})
    return {"links": links} if links else None


def study_page(folder: Path, base: Path | None = None) -> dict:
    """A study's page; its links to the real runs are relative to `base` (default `folder`)."""
    from tuner.target import parse_target

    base = base or folder
    summary = json.loads((folder / "summary.json").read_text())
    trials = pd.read_csv(folder / "trials.csv")
    scenarios = summary.get("scenarios", [])
    bounds = [c.threshold for c in parse_target(summary["target"]).clauses if c.metric == "latency"]
    done = trials[trials["state"] == "COMPLETE"].reset_index(drop=True)
    figs = []
    if len(done):
        numbers = np.arange(len(done))
        feasible = done["feasible"].astype(str).str.lower().eq("true").to_numpy()
        cost = done["cost_per_hour"].to_numpy(dtype=float)
        backends = done["backend"].astype(str).to_numpy()
        figs.append(_figure("best-cost", "Best cost against trials", F.best_so_far(numbers, cost, feasible, backends),
                            "every evaluated trial in order" + (" (the simulated rounds, then the real runs)" if
                                                                summary.get("hybrid") else "")
                            + "; filled: met the target, hollow: missed it"))
        front = [(p["cost_per_hour"], p["p99_ms"]) for p in summary.get("pareto") or []]
        figs.append(_figure("pareto", "Cost against p99" + (" and the Pareto front" if front else ""),
                            F.cost_against_p99(cost, done["p99_ms"].to_numpy(dtype=float), feasible, backends, front, bounds,
                                               front_backend="real" if summary.get("backend") == "real" else "sim")))
    importance_of = "real" if summary.get("backend") == "real" else "simulated"
    for target, imp in _importances(folder, summary).items():
        figs.append(_figure("importance" if target == "cost" else f"importance-{target}",
                            f"Parameter importances for {target} (Optuna's default evaluator, {importance_of} trials)",
                            F.bars(list(imp), list(imp.values()), f"importance for {target}")))
    best = summary.get("best")
    entries = ([("best", best)] if best else []) + list((summary.get("baselines") or {}).items())
    rows = [[label, b["backend"], b["cost_per_hour"], b["p99_ms"], b["feasible"],
             f"{best['savings'][label]['saving']:+.1%}" if best and best["savings"].get(label, {}).get("saving") is not None
             else None, _run_links(folder, base, b) if b["backend"] == "real" else None] for label, b in entries]
    if best:
        figs.append(_figure("against-baselines", "Best configuration against the baselines",
                            F.compared([r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows],
                                       [bool(r[4]) for r in rows], "cost per hour")))
    verified = (summary.get("hybrid") or {}).get("verified") or []
    pairs = [(v["sim_p99_ms"], v["p99_ms"], v.get("label") or f"#{v['trial']}") for v in verified
             if v.get("sim_p99_ms") is not None and v.get("p99_ms") is not None]
    if pairs:
        s, r, lab = zip(*pairs)
        figs.append(_figure("real-vs-sim", "Verified candidates: real against simulated p99",
                            F.real_against_sim(list(s), list(r), list(lab))))
    meta = [("target", summary["target"]), ("backend", summary.get("backend")), ("scenarios", ", ".join(scenarios)),
            ("trials", ", ".join(f"{k}: {v}" for k, v in (summary.get("trials") or {}).items()))]
    hybrid = summary.get("hybrid") or {}
    if hybrid:
        meta += [("stopped", hybrid.get("reason")),
                 ("correction of the simulator's p99", ", ".join(f"{k}: x{v:.2f}" for k, v in (hybrid.get("correction") or {}).items())
                  or "none")]
    headers = ["", "backend", "cost per hour", "p99 ms", "met", "best saves (against those that met)", "real run"]
    if not any(r[-1] for r in rows):  # nothing ran on the real stack: no column of dashes
        headers, rows = headers[:-1], [r[:-1] for r in rows]
    tables = [{"caption": "Best and baselines", "headers": headers, "rows": rows}]
    if best:
        start = _starting_values(trials)
        where = "on the real stack" if best["backend"] == "real" else "in the simulator"
        tables.append({"caption": f"Best values, beside the starting config's (the best as measured {where})",
                       "headers": ["parameter", "tuned", "starting"],
                       "rows": [[k, v, start.get(k)] for k, v in sorted(best["values"].items())]})
    if verified:
        tables.append({"caption": "Verified on the real stack",
                       "headers": ["trial", "label", "real cost/h", "sim cost/h", "real p99 ms", "sim p99 ms", "margin",
                                   "passed", "real run"],
                       "rows": [[v["trial"], v.get("label"), v["cost_per_hour"], v.get("sim_cost_per_hour"),
                                 v.get("p99_ms"), v.get("sim_p99_ms"), v.get("margin"), v.get("passed"),
                                 _run_links(folder, base, v)] for v in verified]})
    return {"title": f"Study: the cheapest configuration for {summary['target']}", "subtitle": str(folder),
            "verdict": _study_verdict(summary, done), "meta": meta,
            "sections": [_section("result", "Result", tables=tables), _section("search", "The search", figures=figs)]}


def _starting_values(trials: pd.DataFrame) -> dict:
    """The searched parameters as the starting config has them (its baseline trial's row)."""
    rows = trials[trials["baselines"].fillna("").str.contains("starting config", regex=False)]
    if not len(rows):
        return {}
    row = rows.iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if "." in str(k) and pd.notna(v)}


def _study_verdict(summary: dict, done: pd.DataFrame) -> dict:
    """Met or missed, and where: a hybrid's verdict is the real stack's, whatever the simulated
    trials said, and the badge says so rather than sit red above green simulated dots."""
    met = summary.get("best") is not None
    if not summary.get("hybrid"):
        return _verdict("met" if met else "missed")
    sim_met = int((done["backend"].eq("sim") & done["feasible"].astype(str).str.lower().eq("true")).sum())
    verdict = _verdict("met" if met else "missed")
    verdict["text"] = f"{'met' if met else 'missed'} on the real stack ({sim_met} simulated trials met the target)"
    return verdict


# ---- a validation


def validation_page(folder: Path) -> dict:
    from tuner.result import load_result

    cmp = json.loads((folder / "validation.json").read_text())
    runs = {name: load_result(folder / name / "result.json") for name in ("real", "sim")
            if (folder / name / "result.json").is_file()}
    real, sim = runs.get("real"), runs.get("sim")
    figs = []
    ranges = [x_range(r, _series(folder / name, r, _t0(r))) for name, r in runs.items()]
    xlim = (min((a for a, _ in ranges), default=0.0), max((b for _, b in ranges), default=0.0))  # both runs on one
    if real and sim and real.replicas:
        figs.append(_figure("replicas-overlay", "Replicas: real (solid) and simulated (dashed)",
                            F.timelines(real.replicas, "running replicas", xlim=xlim, overlay=sim.replicas),
                            "a panel for each deployment whose count changed in either run; the others, constant and "
                            "equal in both, in the last one"))
    frames = {}
    for name, res in runs.items():
        df = _records(folder / name, res)
        if df is not None and len(df):
            frames[name] = ((df["scheduled"] - _t0(res)).to_numpy(dtype=float), df["latency_ms"].to_numpy(dtype=float), _routes(df))
    if frames:
        figs.append(_figure("latency-overlay", "p99 over time per route: real and simulated", F.p99_overlay(frames, xlim=xlim)))
    latency = [[r["route"], r["metric"], r["real"], r["sim"], r["error"], r["goal"], r["met"]] for r in cmp.get("latency", [])]
    replicas = [[r["deployment"], r["real_mean"], r["sim_mean"], r["mae"], r["goal"], r["met"]] for r in cmp.get("replicas", [])]
    scenario = (real or sim).scenario.name if runs else folder.name
    return {"title": f"Validation: {scenario}, real against simulated", "subtitle": str(folder),
            "verdict": _verdict("met" if cmp.get("all_met") else "missed"),
            "meta": [("simulated seconds per wall second", cmp.get("sim_speedup"))],
            "sections": [_section("errors", "Errors of the simulator (relative to the real value)", tables=[
                {"caption": "Latency, throughput, errors", "headers": ["route", "figure", "real", "simulated", "error",
                                                                       "goal", "met"], "rows": latency},
                {"caption": "Replicas (mean absolute error over the load window)",
                 "headers": ["deployment", "real mean", "simulated mean", "MAE", "goal", "met"], "rows": replicas}]),
                         _section("timelines", "Timelines", figures=figs,
                                  text="" if real else "the real trial is not in this folder (validated with --real)")]}


# ---- a nightly bench


def bench_page(folder: Path) -> dict:
    from tuner import history

    night = json.loads((folder / "bench.json").read_text())
    hist = history.read_history(Path(night["history"]))
    regressions = night.get("regressions") or []
    _, points = history.analyse(hist)
    flagged = {(r["machine"], r["suite"], r["backend"], r["case"], r["metric"]): r["first_bad_night"] for r in regressions}
    figs = []
    for (machine, suite, backend, case), g in hist.groupby(["machine", "suite", "backend", "case"], sort=True):
        nights = sorted(g["night"].unique())
        panels = {}
        for metric, m in g.groupby("metric", sort=True):
            m = m.set_index("night")["value"].reindex(nights)
            key = (machine, suite, backend, case, metric)
            bad = flagged.get(key)
            panels[metric] = (m.to_numpy(dtype=float), [p.index for p in points.get(key, [])],
                              nights.index(bad) if bad in nights else None)
        figs.append(_figure(f"history-{backend}-{case}", f"{backend} / {case} ({machine})", F.history(nights, panels),
                            "each metric night by night; dashed lines are change points, red where flagged as a regression"))
    rows = [[r["backend"], r["case"], r["metric"], r["before"], r["after"], f"{r['change']:+.1%}", r["first_bad_night"],
             f"{r['commits'][0]}..{r['commits'][1]}"] for r in regressions]
    this = [[r["backend"], r["case"], r["metric"], r["value"], r["status"]] for r in night.get("rows", [])]
    status = f"{len(regressions)} regression{'s' * (len(regressions) != 1)}" if regressions else "no regression"
    return {"title": f"Nightly bench: {night['suite']}", "subtitle": f"{night['night']} · commit {night['commit']} · {night['machine']}",
            "verdict": _verdict(status),
            "meta": [("history", f"{night['history']} ({hist['night'].nunique()} nights)"), ("detector", night.get("detector", "-")),
                     ("wall time", f"{night.get('wall_s', 0):.0f} s")],
            "sections": [_section("regressions", "Regressions among the newest nights",
                                  text="none" if not rows else "",
                                  tables=[{"headers": ["backend", "case", "metric", "before", "after", "change", "first bad night",
                                                       "commits"], "rows": rows}] if rows else []),
                         _section("history", "History", figures=figs),
                         _section("tonight", "This night's figures",
                                  text="" if this else "none: the history was analysed as it was (--analyze-only)",
                                  tables=[{"headers": ["backend", "case", "metric", "value", "status"], "rows": this}]
                                  if this else [])]}


PAGES = {"trial": trial_page, "study": study_page, "validation": validation_page, "bench": bench_page}


def render(folder: Path, base: Path | None = None) -> str:
    """The HTML report of `folder`; its links are relative to `base`, the folder the page is
    written to (default `folder`)."""
    from tuner import project_version

    kind = kind_of(folder)
    page = study_page(folder, base) if kind == "study" else PAGES[kind](folder)
    return _env().get_template("report.html.j2").render(version=project_version(), source=str(folder), **page)


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Render `folder`'s report to `out` (default DIR/report.html), atomically."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    out = out or folder / "report.html"
    html = render(folder, out.parent)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html)
    os.replace(tmp, out)
    return out
