"""How `tuner run` looks on a terminal: a progress bar per phase, then the verdict tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.result import RouteResult, TrialResult


class PhaseProgress:
    """A rich progress display: `phase(name, seconds)` starts a phase (a bar when its length is
    known), `tick(elapsed)` moves it. Use as a context manager."""

    def __init__(self, console: Console):
        self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.fields[note]}"),
                                  TimeElapsedColumn(), console=console)
        self._task = None

    def __enter__(self) -> "PhaseProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._finish()
        self._progress.stop()

    def _finish(self) -> None:
        if self._task is not None:
            total = self._progress.tasks[self._task].total or 1
            self._progress.update(self._task, total=total, completed=total)
            self._progress.stop_task(self._task)

    def phase(self, name: str, seconds: float | None) -> None:
        self._finish()
        self._task = self._progress.add_task(name, total=seconds, note="")

    def counter(self, name: str, total: int) -> None:
        """A bar that stays beside the phases: `count` moves it and sets its note."""
        self._counter = self._progress.add_task(name, total=total, note="")

    def count(self, done: int, note: str) -> None:
        total = self._progress.tasks[self._counter].total or 0
        self._progress.update(self._counter, completed=done, total=max(total, done), note=note)

    def print(self, text: str) -> None:
        """A line above the bars."""
        self._progress.console.print(text, highlight=False, soft_wrap=True)

    def tick(self, elapsed_s: float) -> None:
        if self._task is not None:
            total = self._progress.tasks[self._task].total
            note = f"{elapsed_s:.0f}/{total:.0f}s" if total else ""
            self._progress.update(self._task, completed=min(elapsed_s, total or elapsed_s), note=note)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def print_result(result: TrialResult, console: Console) -> None:
    """The verdict per clause (client and server), routes, replicas and cost."""
    verb = "would have stopped" if result.backend == "sim" else "stopped"  # a simulation runs to its end
    stopped = (f" ({verb} at {result.aborted.at_s:g} s: {escape(result.aborted.clause)} could no longer hold)"
               if result.aborted else "")
    verdict = Table("clause", "client", "server", "margin", "verdict",
                    title=f"target {escape(repr(result.target.text))}: [bold]{result.status.upper()}[/]{stopped}")
    for cv in result.target.clauses:
        mark = "[green]pass[/]" if cv.passed else "[red]fail[/]"
        margin = "-" if cv.margin is None else f"{cv.margin:+.0%}"
        verdict.add_row(escape(cv.clause.text), cv.clause.display(cv.client), cv.clause.display(cv.server), margin, mark)
    console.print(verdict)
    routes = Table("route", "arrivals", "ok", "degr", "err", "503", "t/o", "drop", "p50", "p99", "server p50", "server p99", "rps",
                   title="latency in ms: client from the scheduled send (exact); server at the Serve proxy (histogram); "
                         "err counts unanswered requests, of which 503 = refused by backpressure, t/o = timed out")
    rows: list[tuple[str, RouteResult]] = list(result.routes.items())
    if result.overall:
        rows.append(("all", result.overall))
    for name, r in rows:
        s = r.server_latency_ms
        routes.add_row(escape(name), str(r.arrivals), str(r.ok), str(r.degraded), str(r.errors + r.unfinished),
                       str(r.rejected), str(r.timeouts), str(r.dropped),
                       _ms(r.latency_ms.p50), _ms(r.latency_ms.p99), _ms(s.p50 if s else None), _ms(s.p99 if s else None),
                       "-" if r.throughput_rps is None else f"{r.throughput_rps:.2f}")
    console.print(routes)
    if result.deployments:
        deps = Table("deployment", "replicas min-max", "mean", "starts", "ongoing max", "queued max", "p99 ms",
                     "replica-s", "cost",
                     title="deployments (simulated)" if result.backend == "sim" else "deployments (Prometheus)")
        for key, d in result.deployments.items():
            c = result.cost.deployments.get(key) if result.cost else None
            deps.add_row(key, f"{_ms(d.replicas_min)}-{_ms(d.replicas_max)}",
                         "-" if d.replicas_mean is None else f"{d.replicas_mean:.2f}", str(d.replica_starts),
                         _ms(d.ongoing_max), _ms(d.queued_max), _ms(d.processing_ms.p99 if d.processing_ms else None),
                         "-" if c is None else f"{c.replica_seconds:.0f}", "-" if c is None else f"{c.cost:.5f}")
        console.print(deps)
    if result.cost:
        c = result.cost
        console.print(f"cost: {c.cost:.5f} {c.currency} for {c.window_s:.0f}s ({c.cost_per_hour:.3f} {c.currency}/h), "
                      f"{c.replica_seconds:.0f} replica-seconds"
                      + (f"; paid as nodes: {', '.join(f'{k} {v:.0f} node-s' for k, v in c.node_seconds.items())}"
                         if c.node_cost is not None else ""))
    if result.faults:
        console.print(fault_table(result))
    if result.simulation:
        s = result.simulation
        console.print(f"simulated: calibration {s.calibration}, cluster {s.cluster}{' + LLM HPA' if s.llm_hpa else ''}, "
                      f"{s.events:,} events in {s.wall_s:.2f}s ({s.speedup:,.0f}x real time)")
    if result.generator:
        g = result.generator
        flag = "" if not g.saturated else (" [red]SATURATED[/]" if result.status == "unmeasured"
                                            else " [yellow]behind schedule; the verdict does not depend on it[/]")
        console.print(f"load generator: sends p99 {g.lag_ms_p99 or 0:.1f} ms behind schedule, its CPU "
                      f"{g.cpu_pct or 0:.0f}% of a core{flag}")
    if result.repeat:
        spread = Table("figure", "median", "CV", "values", title=f"{result.repeat.count} repeats (spread)")
        for name, s in result.repeat.spread.items():
            spread.add_row(name, "-" if s.median is None else f"{s.median:.4g}", "-" if s.cv is None else f"{s.cv:.1%}",
                           ", ".join("-" if v is None else f"{v:.4g}" for v in s.values))
        console.print(spread)
    for reason in result.reasons:
        console.print(f"note: {escape(reason)}", highlight=False)


def fault_rows(result: TrialResult) -> list[list]:
    """Per fault: its spec, when it was injected, what was done, and its effect (failed and
    degraded requests and p99 before and during it, recovery time)."""
    rows = []
    for f in result.faults:
        e = f.effect or {}
        b, d = e.get("before", {}), e.get("during", {})
        rows.append([f.spec, None if f.injected_s is None else round(f.injected_s, 1), f.error or f.done,
                     f"{b.get('failed', '-')}/{b.get('requests', '-')}", f"{d.get('failed', '-')}/{d.get('requests', '-')}",
                     d.get("degraded"), b.get("p99_ms"), d.get("p99_ms"), e.get("recovery_s"), e.get("latency_recovery_s")])
    return rows


FAULT_HEADERS = ["fault", "at s", "done", "failed before", "failed during", "degraded during", "p99 before ms",
                 "p99 during ms", "recovered after s", "latency back after s"]


def fault_table(result: TrialResult) -> Table:
    table = Table(*FAULT_HEADERS, title="faults injected (recovery: from the fault's end until no failure or "
                                        "degraded answer; latency: until the p90 is back under twice the p99 before)")
    for row in fault_rows(result):
        table.add_row(*[escape("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
    return table
