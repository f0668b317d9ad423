"""How the commands other than `tuner run` look on a terminal: their tables and progress lines."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_status(parts, console: Console) -> None:
    """Each part of the stack: health, URL, PID."""
    table = Table("part", "health", "url", "pid", "detail")
    for p in parts:
        table.add_row(p.name, "[green]up[/]" if p.healthy else "[red]down[/]", p.url, str(p.pid or ""), p.detail)
    console.print(table)


def print_validation(cmp: dict, console: Console) -> None:
    """Real against simulated figures and replica trajectories, each against its goal."""
    def pct(x):
        return "-" if x is None else f"{x:+.0%}"

    def num(x):
        return "-" if x is None else f"{x:.4g}"

    def met(m):
        return "" if m is None else ("[green]met[/]" if m else "[red]missed[/]")

    table = Table("route", "metric", "real", "sim", "error", "goal", "", title="real against simulated")
    for r in cmp["latency"]:
        table.add_row(escape(r["route"]), r["metric"], num(r["real"]), num(r["sim"]), pct(r["error"]),
                      "-" if r["goal"] is None else f"±{r['goal']:.0%}", met(r["met"]))
    console.print(table)
    reps = Table("deployment", "real mean", "sim mean", "MAE replicas", "goal", "", title="replica trajectories")
    for r in cmp["replicas"]:
        reps.add_row(r["deployment"], num(r["real_mean"]), num(r["sim_mean"]), f"{r['mae']:.2f}", f"<={r['goal']:g}", met(r["met"]))
    console.print(reps)
    if cmp["real_spread_cv"]:
        console.print("real spread (CV over repeats): " + ", ".join(
            f"{k} {v:.0%}" for k, v in cmp["real_spread_cv"].items() if v is not None and k.startswith("client p")))


def trial_printer(progress, total: int):
    """A line per finished study trial and a bar of the search with the best so far."""
    from tuner.optimize.attrs import TrialAttrs

    progress.counter("search", total)
    state = {"n": 0}

    def show(t, best):
        state["n"] += 1
        a = TrialAttrs.of(t)
        label = f" ({', '.join(a.baselines)})" if a.baselines else ""
        best_txt = f"best {best.values[0]:.4f}/h (trial {best.number})" if best else "none met yet"
        progress.count(state["n"], best_txt)
        progress.print(f"trial {t.number}{label}: {t.values[0]:.4f}/h, p99 {a.p99_ms or 0:.0f} ms, "
                       f"{'met' if a.feasible else 'missed'}; {best_txt}")
    return show


def real_printer(progress):
    """A line per configuration run for real in a hybrid search, beside its simulated figures."""
    from tuner.optimize.attrs import TrialAttrs

    def show(label, t):
        a = TrialAttrs.of(t)
        verdict = "passed" if a.passed else "met, margin below noise" if a.feasible else "missed"
        progress.print(f"real {label}: {t.values[0]:.4f}/h (simulated {a.sim_cost or 0:.4f}/h), p99 "
                       f"{a.p99_ms or 0:.0f} ms (simulated {a.sim_p99_ms or 0:.0f}), margin "
                       f"{a.margin or 0:+.0%} against noise {a.noise_used or 0:.0%}: {verdict}")
    return show


def print_optimize(summary: dict, console: Console) -> None:
    """The search's outcome: baselines, the best, the savings, the hybrid's story."""
    table = Table("configuration", "backend", "trial", "cost / h", "p99 ms", "target", "saving by the best",
                  title=f"target {escape(repr(summary['target']))} on {', '.join(summary['scenarios'])}")
    best = summary["best"]
    met: dict[str, float] = {}
    for name, b in summary["baselines"].items():
        saving = (best["savings"].get(name) or {}).get("saving") if best else None  # only those that met
        if saving is not None:
            met[name] = saving
        table.add_row(name, b["backend"], str(b["trial"]), f"{b['cost_per_hour']:.4f}", f"{b['p99_ms'] or 0:.0f}",
                      "met" if b["feasible"] else "missed", "-" if saving is None else f"{saving:+.0%}")
    if best:
        table.add_row("[bold]best[/]", best["backend"], str(best["trial"]), f"{best['cost_per_hour']:.4f}",
                      f"{best['p99_ms'] or 0:.0f}", "met", "")
    console.print(table)
    if best and met:
        name = min(met, key=met.get)  # the cheapest baseline that met the target saves least
        console.print(f"saving: {met[name]:+.0%} against the cheapest baseline that met the target ({name})",
                      highlight=False)
    if summary.get("prior_trials"):
        console.print(f"warm start: the sampler began from {summary['prior_trials']} trial(s) of the earlier search "
                      "(not counted above)", highlight=False)
    hybrid = summary.get("hybrid")
    if hybrid:
        console.print(f"hybrid: {hybrid['reason']}; {hybrid['rounds']} simulated round(s), {hybrid['real_candidates']} "
                      f"candidate(s) run for real, {hybrid['sim_winners_failed']} of them failed there; correction "
                      + (", ".join(f"{k} x{v:.2f}" for k, v in hybrid["correction"].items()) or "none"), highlight=False)
    if summary.get("pareto"):
        console.print("Pareto front (cost/h, p99 ms): " + ", ".join(f"{p['cost_per_hour']:.4f} @ {p['p99_ms']:.0f}"
                                                                   for p in summary["pareto"]), highlight=False)
    if best:
        console.print("best values: " + ", ".join(f"{k.removeprefix('serve.')}={v:.4g}" if isinstance(v, float)
                                                  else f"{k.removeprefix('serve.')}={v}" for k, v in best["values"].items()),
                      highlight=False, soft_wrap=True)
    else:
        console.print(no_best(summary), highlight=False)


def no_best(summary: dict) -> str:
    """Why a search has no answer: nothing met the target, or (hybrid) what met it on the real
    stack did so by less than the margin the noise demands, which is no pass."""
    close = [(name, b["margin"]) for name, b in summary["baselines"].items()
             if b["feasible"] and b["backend"] == "real" and b.get("margin") is not None]
    close += [(v["label"], v["margin"]) for v in (summary.get("hybrid") or {}).get("verified", []) if v["met"]]
    if not close:
        return "no configuration met the target within the budget"
    return ("no configuration passed within the budget: met on the real stack, by less than the margin the noise "
            "demands: " + ", ".join(f"{name} by {margin:.0%}" for name, margin in dict(close).items()))


def print_checks(problems: list[str], out: Path, round_trip: bool, console: Console) -> None:
    """Each failed check of exported manifests, or which checks passed."""
    for p in problems:
        console.print(f"[red]check failed:[/] {escape(p)}", highlight=False, soft_wrap=True)
    if not problems:
        ran = "CRD schemas, Kubernetes OpenAPI, ServeDeploySchema, promtool" + (", round trip" if round_trip else "")
        console.print(f"checks passed: {out}/ ({ran})")


def print_calibration(cal, out: Path, console: Console) -> None:
    """What `tuner profile` derived: each deployment's service times and start costs."""
    table = Table("deployment", "service ms by batch size", "cv", "concurrency", "CPU", "start s", "load ms")
    for dep, t in cal.stages.items():
        table.add_row(dep, ", ".join(f"{b}: {ms:g}" for b, ms in t.service_ms), f"{t.cv:g}", str(t.concurrency or "-"),
                      "yes" if t.cpu_bound else "no", f"{t.start_s:g}", f"{t.load_ms:g}" if t.load_ms else "-")
    console.print(table)
    console.print(f"proxy {cal.proxy_ms:g} ms; LLM prompt {cal.llm.prompt_tokens} tokens; written to {out}/calibration.yaml")


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def sweep_line(p) -> str:
    """A line per finished load level of `tuner sweep` (a tuner.sweep.RatePoint)."""
    verdict = p.status + (f" ({', '.join(p.failed)})" if p.failed else "")
    return (f"rate {p.rate:g}/s ({p.phase}): {verdict}; p99 {_num(p.latency_p99_ms, ',.0f')} ms, "
            f"goodput {_num(p.goodput_rps)}/s of {_num(p.offered_rps)}/s offered")


def print_sweep(sweep, console: Console) -> None:
    """`tuner sweep`'s summary (a tuner.sweep.SweepResult): a row per rate tried, lowest first,
    then the highest sustainable rate and its goodput."""
    table = Table("rate/s", "step", "offered/s", "throughput/s", "goodput/s", "p50 ms", "p99 ms", "errors", "tokens/s",
                  "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "verdict",
                  title=f"{escape(sweep.scenario)} against {escape(repr(sweep.target))} ({sweep.backend}, "
                        f"{sweep.duration_s:g} s a rate); goodput: answers that met every latency bound; TTFT, TPOT in ms")
    marks = {"met": "[green]met[/]", "missed": "[red]missed[/]", "unmeasured": "[yellow]unmeasured[/]"}
    for p in sorted(sweep.points, key=lambda p: p.rate):
        failed = f" {escape(', '.join(p.failed))}" if p.status == "missed" else ""
        table.add_row(f"{p.rate:g}", p.phase, _num(p.offered_rps), _num(p.throughput_rps), _num(p.goodput_rps),
                      _num(p.latency_p50_ms, ",.0f"), _num(p.latency_p99_ms, ",.0f"), _num(p.error_rate, ".1%"),
                      _num(p.output_tokens_per_s, ",.0f"), _num(p.ttft_p50_ms, ",.0f"), _num(p.ttft_p99_ms, ",.0f"),
                      _num(p.tpot_p50_ms, ",.1f"), _num(p.tpot_p99_ms, ",.1f"), marks[p.status] + failed)
    console.print(table)
    if sweep.best_rate is not None:
        answer = (f"highest sustainable rate: [bold]{sweep.best_rate:g}/s[/], goodput "
                  f"{_num(sweep.best_goodput_rps)}/s")
    else:
        answer = "[red]no rate met the target[/]"
    skipped = f"; not run: {', '.join(f'{r:g}' for r in sweep.skipped)}/s" if sweep.skipped else ""
    console.print(f"{answer} ({escape(sweep.reason)}{skipped})", highlight=False, soft_wrap=True)
