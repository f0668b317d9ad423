"""The real backend: one trial on the system under test.

check (scenario options, system, Prometheus) -> deploy (pin autoscaled deployments at their
starting replicas and replace the multiplexed ones, then the config itself: the same start for
every trial, in place where only tunable fields changed) -> settle -> prime (each multiplexed
model the trial asks for, once: tuner.prime) -> warm up (the scenario's first seconds, not
measured) -> load (Locust headless, open loop) -> collect (records + Prometheus) -> verdict.
Everything recorded is written under the output folder, also when a later phase fails.
What the trial is comes from `tuner.plan`; what it needs of the system, from `tuner.system`.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Callable

from loadgen import records as rec
from target_app.topology import MULTIPLEXED
from tuner import deploy
from tuner.collect import collect
from tuner.cost import deployment_resources, trial_cost
from tuner.errors import StackError, UsageError
from tuner.gaps import find_gaps, gap_problems
from tuner.inject import Injector, epoch_in
from tuner.names import app_name
from tuner.paths import PACKAGE
from tuner.plan import TrialPlan, client_verdicts, result_header, write_config
from tuner.progress import Reporter, Silent
from tuner.prometheus import Prometheus
from tuner.result import (AbortInfo, DeployInfo, FaultResult, GapResult, GeneratorHealth, Percentiles, RouteResult,
                          TrialResult, Window, combine_repeats, load_result, route_from_summary, verdict_status,
                          write_result)
from tuner.system import SystemUnderTest
from tuner.target import client_value, without_lag


def deploy_for_trial(system: SystemUnderTest, serve_config: dict, timeout_s: float) -> dict:
    """Deploy so the trial starts from the config's starting replicas with fresh autoscaler
    state, and on new replicas of the deployments that keep state between requests (the
    multiplexed models' caches, tuner.prime); returns the deployments whose replicas were all
    replaced, how many replicas started and stopped, and the replica counts."""
    url, headers = system.dashboard_url, system.dashboard_headers()
    apps = [app_name(a) for a in serve_config["applications"]]
    try:
        before = deploy.running_replicas(deploy.serve_details(url, headers))
    except Exception as e:  # noqa: BLE001 - any failure to read means the dashboard is not usable
        raise StackError(f"cannot read Serve's status from {url}: {e}") from e
    expected = deploy.start_replicas(serve_config)
    marked = deploy.with_fresh(serve_config, MULTIPLEXED, str(time.time_ns()))
    for cfg in (deploy.pinned(marked), marked):
        deploy.deploy(url, cfg, headers)
        deploy.wait_running(url, apps, timeout_s, headers)
        view = deploy.wait_settled(url, expected, timeout_s, headers=headers)
    old = {k: set(before.get(k, {}).get("running", [])) for k in view}
    new = {k: set(v["running"]) for k, v in view.items()}
    return {"replaced": sorted(k for k in view if old[k] and new[k] and not old[k] & new[k]),
            "started": sum(len(new[k] - old[k]) for k in view), "stopped": sum(len(old[k] - new[k]) for k in view),
            "replicas": {k: len(v) for k, v in new.items()}}


def locust_argv(plan: TrialPlan, host: str, seconds: float, out: Path, html: Path | None = None) -> list[str]:
    """The command line of a headless run of the scenario for `seconds`; with `html`, Locust writes
    its HTML report there as it ends (from the stats it keeps anyway)."""
    return [sys.executable, "-m", "locust", "-f", str(plan.scenario), "--headless", "-t", f"{seconds:g}s",
            "-H", host, "--out", str(out), "--only-summary", "--seed", str(plan.seed), *plan.generator_args(),
            *(["--html", str(html)] if html is not None else [])]


def run_locust(plan: TrialPlan, host: str, seconds: float, out: Path, log: Path, report: Reporter,
               html: Path | None = None) -> tuple[int, Path | None]:
    """Run the scenario headless for `seconds`; Locust's exit code and its run folder."""
    cmd = locust_argv(plan, host, seconds, out, html)
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd[1:])}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        try:
            while proc.poll() is None:
                report.tick(time.monotonic() - t0)
                time.sleep(0.25)
        finally:
            if proc.poll() is None:  # interrupted: stop Locust so it writes what it has
                proc.terminate()
                proc.wait(60)
        rc = proc.returncode
    runs = sorted(out.glob("*/records.parquet"))
    return rc, runs[-1].parent if runs else None


def versions(prom: Prometheus) -> dict[str, str]:
    """Versions of everything that shapes a measurement."""
    out = {"python": platform.python_version()}
    for pkg in ("ray", "locust", "rayserve-tuner"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=PACKAGE, timeout=10).stdout.strip()
        if commit:
            out["commit"] = commit
    except OSError:
        pass
    out["prometheus"] = prom.build_version() or "unknown"
    return out


def run_trial(system: SystemUnderTest, plan: TrialPlan, report: Reporter = Silent()) -> TrialResult:
    """Run one trial and write result.json (and the records and series) under plan.out."""
    write_config(plan)
    timings: dict[str, float] = {}
    prom = Prometheus(system.prometheus_url)
    result = result_header(plan, "real")
    try:
        _measure(system, plan, prom, result, timings, report)
    except BaseException as e:  # recorded so far is kept, marked partial, whatever stopped the trial
        result.status, result.partial = "unmeasured", True
        result.reasons.append(str(e) if isinstance(e, Exception) and str(e) else f"stopped: {type(e).__name__}")
        raise
    finally:
        result.timings_s = {k: round(v, 2) for k, v in timings.items()}
        write_result(plan.out / "result.json", result)
    return result


@contextmanager
def _phase(name: str, seconds: float | None, report: Reporter, timings: dict[str, float]):
    report.phase(name, seconds)
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t


def _measure(system: SystemUnderTest, plan: TrialPlan, prom: Prometheus, result: TrialResult, timings: dict,
             report: Reporter) -> None:
    with _phase("check", None, report, timings):
        _check(system, plan, prom)
        result.versions = versions(prom)
    with _phase("deploy", None, report, timings):
        deployed = deploy_for_trial(system, plan.serve_config, plan.settle_timeout_s)
    result.deploy = DeployInfo(**deployed)
    moved = f"{deployed['started']} replicas started, {deployed['stopped']} stopped to reach the starting counts"
    fresh = [k for k in deployed["replaced"] if k.rpartition("/")[2] in MULTIPLEXED]
    others = [k for k in deployed["replaced"] if k not in fresh]
    result.reasons.append(("deploy replaced every replica of " + ", ".join(others) if others else "deploy in place")
                          + (f", with new replicas of {', '.join(fresh)} (empty model caches)" if fresh else "")
                          + f"; {moved}")
    host, log = system.serve_url(plan.serve_config), plan.out / "locust.log"
    result.files["locust_log"] = "locust.log"
    if plan.prime:
        with _phase("prime", None, report, timings):
            if note := prime_models(plan, host):
                result.reasons.append(note)
    if plan.warmup_s > 0:
        with _phase("warmup", plan.warmup_s, report, timings):
            # Not judged, so never aborted: the rules are the measured window's.
            run_locust(replace(plan, abort_on_fail=False), host, plan.warmup_s, plan.out / "warmup", log, report)
        result.files["warmup"] = "warmup"
    with _phase("load", plan.duration_s, report, timings):
        with Injector(system, list(plan.faults), lambda: epoch_in(plan.out / "load")) as injector:
            rc, run_dir = run_locust(plan, host, plan.duration_s, plan.out / "load", log, report,
                                     html=plan.out / "locust.html")
    if (plan.out / "locust.html").exists():  # not written when Locust was stopped by a signal
        result.files["locust_html"] = "locust.html"
    records = _keep_client_side(result, plan.out, rc, run_dir, log)
    result.faults = fault_results(plan.faults, injector.events, records, result.window)
    if died := system.died():
        raise StackError(f"the stack died during the load: {died}")
    with _phase("collect", None, report, timings):
        server = _collect_server(system, plan, prom, result)
    _judge(result, plan, records, server, rc, system.metrics.scrape_interval_s)


def prime_models(plan: TrialPlan, host: str) -> str:
    """Load the trial's multiplexed models as the simulator does (tuner.prime): one request for
    each, from the arrivals the scenario will send; returns what it did, for the result."""
    from tuner import prime
    from tuner.plan import scenario_arrivals

    rows = plan.prime_rows(scenario_arrivals(plan)[1])
    if rows.empty:
        return "no multiplexed model to prime"
    sent = prime.send(host, rows)
    failed = f"; {sent['failed']} failed (first: {sent['first_failure']})" if sent["failed"] else ""
    return f"primed {sent['sent']} multiplexed models in {sent['seconds']:g} s{failed}"


def fault_results(faults, events: list[dict], records, window) -> list[FaultResult]:
    """Each fault as injected, with its effect on the requests sent around it."""
    from loadgen.summary import failure_kind
    from tuner.faults import effect

    out = []
    t = (records["scheduled"] - window.start).to_numpy(dtype=float)
    t_end = (records["end"] - window.start).to_numpy(dtype=float)
    kinds = failure_kind(records)
    failed, degraded = (~kinds.isin(["ok", "degraded"])).to_numpy(), (kinds == "degraded").to_numpy()
    for f in faults:
        ev = next((e for e in events if e["spec"] == f.spec), {})
        at = ev["injected_at"] - window.start if ev.get("injected_at") else None
        eff = (effect(t, t_end, failed, degraded, records["latency_ms"].to_numpy(dtype=float), at, at + (f.duration_s or 0.0),
                      window.end - window.start) if at is not None and not ev.get("error") else None)
        out.append(FaultResult(spec=f.spec, kind=f.kind, start_s=f.start_s, duration_s=f.duration_s, options=f.options,
                               injected_s=at, done=ev.get("done"), error=ev.get("error"), effect=eff))
    return out


def _check(system: SystemUnderTest, plan: TrialPlan, prom: Prometheus) -> None:
    if why := system.unavailable():
        raise StackError(why)
    if not prom.ready():
        raise StackError(f"Prometheus is not answering at {system.prometheus_url}")
    running_http = deploy.http_endpoint(system.deployed_config())
    if deploy.http_endpoint(plan.serve_config) != running_http:
        raise UsageError(f"http_options {deploy.http_endpoint(plan.serve_config)} differ from the running stack's "
                         f"{running_http}: Serve cannot move its proxy; restart the stack with this config")


def _keep_client_side(result: TrialResult, out: Path, rc: int, run_dir: Path | None, log: Path):
    """Move Locust's records and summary into `out`; fill the window, routes and generator health."""
    if rc == 2:
        raise UsageError(f"the scenario refused its options; see {log}")
    if run_dir is None:
        raise StackError(f"Locust wrote no records (exit {rc}); see {log}")
    for name, dest in (("records.parquet", "records.parquet"), ("summary.json", "client_summary.json")):
        if (run_dir / name).exists():
            shutil.move(str(run_dir / name), out / dest)
    shutil.rmtree(out / "load", ignore_errors=True)
    result.files |= {"records": "records.parquet", "client_summary": "client_summary.json"}
    summary = json.loads((out / "client_summary.json").read_text())
    records = rec.load(out / "records.parquet")
    start = float(summary["epoch"])
    end = start + float(summary["traffic_seconds"])
    if aborted := summary.get("aborted"):  # the load stopped there, and its window with it
        end = min(end, start + float(aborted["at_s"]))
        result.aborted = AbortInfo(**aborted)
        result.reasons.append(f"aborted at {aborted['at_s']:g} s: {aborted['clause']} could no longer hold, "
                              f"whatever the rest of the run did")
    drained = float(records["end"].max()) if records["end"].notna().any() else end
    result.window = Window(start=start, end=end, drained=drained)
    result.overall = route_from_summary(summary["overall"])
    result.routes = {r: route_from_summary(g) for r, g in summary["routes"].items()}
    gh = summary["generator_health"]
    gens = list(gh["generators"].values())
    result.generator = GeneratorHealth(
        saturated=gh["saturated"], reasons=gh["reasons"], limits=gh["limits"],
        lag_ms_p99=max((g["lag_ms_p99"] for g in gens), default=None),
        cpu_pct=max((g["cpu_pct"] for g in gens if g["cpu_pct"] is not None), default=None),
        lost_records=gh.get("lost_records", 0))
    return records


def _collect_server(system: SystemUnderTest, plan: TrialPlan, prom: Prometheus, result: TrialResult):
    """Wait until Prometheus holds the whole window, then read it; fills server figures and cost."""
    metrics, w = system.metrics, result.window
    at = max(w.drained or w.end, w.end) + metrics.flush_s()
    # A scrape stamps its samples with its start but stores them when it ends (at most one
    # scrape timeout later): read `at` only once every scrape begun before it is stored, or a
    # later read of the same instant could see a sample this one did not.
    time.sleep(max(0.0, at + metrics.scrape_interval_s + 0.5 - time.time()))
    w.collected_at = at
    server = collect(prom, plan.target, w.start, w.end, at, metrics.scrape_interval_s, metrics.rate_window(),
                     series_from=w.start - plan.warmup_s - 5)
    server.series.to_parquet(plan.out / "series.parquet", index=False)
    result.files["series"] = "series.parquet"
    _attach_server(result, server)
    result.replicas = {k: [(round(ts - w.start, 3), v) for ts, v in tl] for k, tl in server.replicas.items()}
    result.cost = trial_cost(server.replicas, deployment_resources(plan.serve_config), plan.prices, w.start, w.end)
    return server


def _judge(result: TrialResult, plan: TrialPlan, records, server, rc: int, interval: float) -> None:
    result.target.clauses = client_verdicts(plan.target, records, plan.duration_s, server.clause_values)
    missing = sorted(set(deployment_resources(plan.serve_config)) - set(server.replicas))
    problems = [f"no replica series from Prometheus for {', '.join(missing)}"] if missing else []
    problems += _generator_problems(result, records, plan)
    w = result.window
    gaps = find_gaps(server.scrapes, w.start, w.end, interval)
    result.gaps = [GapResult(start_s=round(g.start - w.start, 3), end_s=round(g.end - w.start, 3)) for g in gaps]
    broken, notes = gap_problems(gaps, w.start, w.end, interval, server.replicas)
    problems += broken
    result.reasons.extend(notes)
    if rc not in (0, 1):
        problems.append(f"Locust exited {rc}; see locust.log")
    result.reasons.extend(problems)
    # An abort is a miss by construction; the clause's value on the cut records says so too.
    result.status = "unmeasured" if problems else "missed" if result.aborted else verdict_status(result.target.clauses)


def _generator_problems(result: TrialResult, records, plan: TrialPlan) -> list[str]:
    """Whether the generator's own delays make the trial unmeasured.

    A busy generator (CPU over its limit) cannot time anything. A generator that only sent
    late adds its lag to every latency it records; when judging the records with that lag
    removed gives the same verdict for every clause, the lag did not decide the trial and it
    stands (with a note); otherwise it is unmeasured."""
    g = result.generator
    if g.lost_records:
        return [f"{g.lost_records} arrivals the generator was given have no record"]
    if not g.saturated:
        return []
    why = "; ".join(g.reasons)
    if g.cpu_pct is not None and g.cpu_pct > g.limits.get("max_cpu_pct", 100):
        return [f"load generator saturated: {why}"]
    on_time = without_lag(records)
    flipped = [c.text for c in plan.target.clauses
               if c.holds(client_value(c, records, plan.duration_s)) != c.holds(client_value(c, on_time, plan.duration_s))]
    if flipped:
        return [f"load generator fell behind and its lag decides {', '.join(flipped)}: {why}"]
    result.reasons.append(f"load generator fell behind ({why}); without its lag every clause has the same verdict")
    return []


def _attach_server(result: TrialResult, server) -> None:
    def pct(d: dict) -> Percentiles:
        return Percentiles(**(d.get("latency") or {}))

    for route, r in result.routes.items():
        s = server.routes.get(route)
        if s:
            r.server_latency_ms = pct(s)
            r.server_requests = s.get("requests")
            r.server_error_rate = s["failed"] / s["requests"] if s.get("requests") else None
    o: RouteResult = result.overall
    o.server_latency_ms = pct(server.overall)
    o.server_requests = server.overall.get("requests")
    o.server_error_rate = (server.overall["failed"] / server.overall["requests"]) if server.overall.get("requests") else None
    result.deployments = server.deployments


class _Numbered:
    def __init__(self, inner: Reporter, i: int, count: int):
        self.inner, self.suffix = inner, f" ({i}/{count})"

    def phase(self, name: str, seconds: float | None) -> None:
        self.inner.phase(name + self.suffix, seconds)

    def tick(self, elapsed_s: float) -> None:
        self.inner.tick(elapsed_s)


def run_repeated(system: SystemUnderTest, plan: TrialPlan, count: int, report: Reporter = Silent(),
                 settled: Callable[[list[TrialResult], int], bool] | None = None) -> TrialResult:
    """Run the trial `count` times (same seed: the spread is the system's own noise) into
    repeat-N/ folders, and write the combined result.json (medians, with their spread).
    `settled(runs so far, count)` ends the repeats early once they decide what they were run
    for (the hybrid search's verdict on a candidate); the result then combines those runs."""
    if count == 1:
        return run_trial(system, plan, report)
    results, lost = [], False
    for i in range(1, count + 1):
        try:
            results.append(run_trial(system, replace(plan, out=plan.out / f"repeat-{i}"), _Numbered(report, i, count)))
        except StackError:
            results.append(load_result(plan.out / f"repeat-{i}" / "result.json"))
            lost = True
            break
        if i < count and settled is not None and settled(results, count):
            break
    combined = combine_repeats(results, [f"repeat-{i}" for i in range(1, len(results) + 1)])
    write_result(plan.out / "result.json", combined)
    if lost:
        raise StackError(f"repeat {len(results)} of {count} could not be measured: {results[-1].reasons[-1]}")
    return combined
