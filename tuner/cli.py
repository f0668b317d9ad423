"""The `tuner` command line: parse, call, map errors to exit codes. No logic here."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from tuner import views
from tuner.errors import TunerError, UsageError, first_problem
from tuner.paths import SERVE_CONFIG
from tuner.plan import SETTLE_TIMEOUT_S, WARMUP_S
from tuner.stack_config import StackConfig

# Click's plain help, not rich's panels: these cut long help (a target's example) at the
# terminal's width with an ellipsis and print flags as if they took a `<bool>` value.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Load-test and tune Ray Serve autoscaling.")
stack_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="The local stack: Ray + Serve app, LLM emulator, Milvus Lite, Prometheus.")
app.add_typer(stack_app, name="stack")
# Tables are wide; a pipe or CI log gets a width that fits them rather than the 80 columns default.
console = Console(width=None if sys.stdout.isatty() else 160)

# Commands that drive a scenario hand the options they do not know to it (`--rate 4`, ...).
TO_SCENARIO = {"allow_extra_args": True, "ignore_unknown_options": True}
CONFIG_HELP = "Serve config (default: the shipped target_app/serve_config.yaml)"
STATE_DIR = typer.Option(Path(".tuner/stack"), "--state-dir", help="folder for the stack's PIDs, logs and data")
# Options several commands share, defined once so each means the same everywhere.
CONFIG = typer.Option(SERVE_CONFIG, "--config", help=CONFIG_HELP, show_default=False)
SCENARIO = typer.Option("burst", "--scenario", help="a locustfile, or a scenario name in scenarios/")
TARGET_HELP = "e.g. 'p99<500ms' or 'p95[/rag]<800ms,error_rate<1%'"
DURATION = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of measured load")
WARMUP = typer.Option(WARMUP_S, "--warmup", min=0, max=3600, help="seconds of the scenario first, not measured")
PRIME = typer.Option(True, "--prime/--no-prime", help="start from the trial's multiplexed models loaded, as a running "
                     "service holds them (each requested once before the warm-up), or from empty caches")
CALIBRATION = typer.Option("local", "--calibration", help="local, gpu-h100, or a file from `tuner profile`")
PRICES = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml")
SETTLE_TIMEOUT = typer.Option(SETTLE_TIMEOUT_S, "--settle-timeout", min=10, help="seconds to wait for deploy and replicas")
FORCE = typer.Option(False, "--force", help="replace what --out already holds")
NO_REPORT = typer.Option(False, "--no-report", help="skip report.html")
JUNIT = typer.Option(None, "--junit", metavar="FILE", help="also write the verdicts as JUnit XML for CI: a testsuite "
                     "per trial, a testcase per target clause (written whatever the exit code, once a result exists)")
ABORT_ON_FAIL = typer.Option(False, "--abort-on-fail", help="stop the load once a target clause can no longer hold "
                             "whatever the rest of the run does (exact, never on a trial that would meet it): missed")
ABORT_GRACE = typer.Option(0.0, "--abort-grace", min=0, metavar="SECONDS",
                           help="with --abort-on-fail: seconds into the measured load before it may stop it")


def _stack_config(state_dir: Path, serve_config: Path | None = None, settings: dict | None = None,
                  **ports: Optional[int]) -> StackConfig:
    """The stack's settings from the options given; a bad one is a usage error naming its field."""
    from pydantic import ValidationError

    given = {k: v for k, v in ports.items() if v is not None}
    extra = {k: v for k, v in (settings or {}).items() if v is not None}
    if serve_config:
        extra["serve_config"] = serve_config
    try:
        return StackConfig.model_validate({"ports": given, "state_dir": state_dir, **extra})
    except ValidationError as e:
        raise UsageError(first_problem(e)) from e


def _stack(state_dir: Path):
    from tuner.stack import Stack

    return Stack.recorded(state_dir)


@stack_app.command("up")
def stack_up(
    serve_config: Path = CONFIG,
    state_dir: Path = STATE_DIR,
    no_app: bool = typer.Option(False, "--no-app", help="start the services only, deploy no app"),
    ray_gcs_port: Optional[int] = typer.Option(None, "--ray-gcs-port"),
    ray_dashboard_port: Optional[int] = typer.Option(None, "--ray-dashboard-port"),
    ray_metrics_port: Optional[int] = typer.Option(None, "--ray-metrics-port", help="Ray's metrics export port"),
    llm_port: Optional[int] = typer.Option(None, "--llm-port"),
    milvus_port: Optional[int] = typer.Option(None, "--milvus-port"),
    prometheus_port: Optional[int] = typer.Option(None, "--prometheus-port"),
    scrape_interval: Optional[float] = typer.Option(
        None, "--scrape-interval", metavar="SECONDS",
        help="Prometheus's scrape interval (default 5): finer series and a shorter wait after each trial, for more CPU"),
    metrics_report_ms: Optional[int] = typer.Option(
        None, "--metrics-report-ms", metavar="MS", help="how often Ray's workers export metrics (default 5000)"),
) -> None:
    """Start the stack on 127.0.0.1 and deploy the Serve app."""
    from tuner.stack import Stack

    cfg = _stack_config(state_dir, serve_config,
                        {"scrape_interval_s": scrape_interval, "ray_metrics_report_ms": metrics_report_ms},
                        ray_gcs=ray_gcs_port, ray_dashboard=ray_dashboard_port, ray_metrics=ray_metrics_port,
                        llm=llm_port, milvus=milvus_port, prometheus=prometheus_port)
    if no_app:
        cfg = cfg.model_copy(update={"deploy_app": False})
    existing = _stack(state_dir)
    if existing.running():
        console.print(f"a stack from {state_dir} is already running:")
        views.print_status(existing.status(), console)
        return
    stack = Stack(cfg)
    timings = stack.up(log=console.print)
    console.print(f"stack up in {timings['total']:.1f}s")
    views.print_status(stack.status(), console)


@stack_app.command("down")
def stack_down(state_dir: Path = STATE_DIR) -> None:
    """Stop exactly what `up` started (by recorded PID)."""
    stopped = _stack(state_dir).down(log=console.print)
    if not stopped:
        console.print(f"no stack running from {state_dir}")


@stack_app.command("status")
def stack_status(state_dir: Path = STATE_DIR) -> None:
    """Each part's health and URL; exit 1 unless all are healthy."""
    stack = _stack(state_dir)
    if not stack.read_state():
        console.print(f"no stack recorded in {state_dir}")
        raise typer.Exit(1)
    parts = stack.status()
    views.print_status(parts, console)
    if not all(p.healthy for p in parts):
        raise typer.Exit(1)


def _print_live_view(system) -> None:
    """Where to watch the trial while it runs: Prometheus's graph page of its key series."""
    from tuner.promql import live_view_url

    url = live_view_url(system.prometheus_url, system.metrics.rate_window())
    console.print(f"live view (Prometheus): {url}", soft_wrap=True, highlight=False)


def _running_stack(state_dir: Path, needed_by: str, start: bool = False, config: Path | None = None,
                   can_start: bool = True):
    from tuner.stack import running_stack

    return running_stack(state_dir, needed_by, start=start, serve_config=config, can_start=can_start, log=console.print)


@app.command("run", context_settings=TO_SCENARIO)
def run(
    ctx: typer.Context,
    config: Path = CONFIG,
    scenario: str = SCENARIO,
    target: str = typer.Option(..., "--target", help=TARGET_HELP),
    duration: float = DURATION,
    out: Path = typer.Option(..., "--out", help="folder for result.json, records and series"),
    warmup: float = WARMUP,
    prime: bool = PRIME,
    repeat: int = typer.Option(1, "--repeat", min=1, max=50, help="run the trial N times and report the spread"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix"),
    prices: Optional[Path] = PRICES,
    settle_timeout: float = SETTLE_TIMEOUT,
    stack_up: bool = typer.Option(False, "--stack-up", help="start the stack first if it is not running"),
    force: bool = FORCE,
    no_report: bool = NO_REPORT,
    fault: list[str] = typer.Option([], "--fault", metavar="SPEC", help="inject a fault, e.g. llm-outage@30s+20s or "
                                    "kill-replica@20s:deployment=Reranker (repeatable; see tuner/faults.py)"),
    abort_on_fail: bool = ABORT_ON_FAIL,
    abort_grace: float = ABORT_GRACE,
    junit: Optional[Path] = JUNIT,
    state_dir: Path = STATE_DIR,
) -> None:
    """One trial: deploy the config, drive the scenario, read Prometheus, judge the target.

    Options the command does not know go to the scenario, e.g. `--rate 4 --burst-rps 10`.
    Exit 0 target met, 1 missed, 2 usage error, 3 could not measure."""
    from tuner import trial
    from tuner.outdir import prepare_out
    from tuner.plan import make_plan
    from tuner.run_view import PhaseProgress, print_result

    plan = make_plan(config=config, scenario=scenario, scenario_args=ctx.args, target=target, duration_s=duration,
                     out=out, warmup_s=warmup, seed=seed, prices=prices, settle_timeout_s=settle_timeout, faults=fault,
                     abort_on_fail=abort_on_fail, abort_grace_s=abort_grace, prime=prime)
    prepare_out(out, force)
    stack = _running_stack(state_dir, "tuner run", stack_up, config)
    _print_live_view(stack)
    try:
        with PhaseProgress(console) as progress:
            result = trial.run_repeated(stack, plan, repeat, progress)
    finally:
        console.print(f"results in {out}/ (result.json)")
        if junit is not None:  # also when the trial stopped on an error: result.json says what it got to
            _write_trial_junit(junit, out)
    print_result(result, console)
    if not no_report:
        _write_report(out)
    raise typer.Exit(result.exit_code)


@app.command("sim", context_settings=TO_SCENARIO)
def sim(
    ctx: typer.Context,
    config: Path = CONFIG,
    scenario: str = SCENARIO,
    out: Path = typer.Option(..., "--out", help="folder for result.json and records"),
    target: str = typer.Option("p99<500ms", "--target", help=TARGET_HELP),
    duration: float = typer.Option(120.0, "--duration", min=1, max=7 * 24 * 3600, help="seconds of measured load"),
    warmup: float = WARMUP,
    prime: bool = PRIME,
    calibration: str = CALIBRATION,
    cluster: str = typer.Option("fixed", "--cluster", help="fixed, ray-autoscaler or hpa"),
    cluster_file: Optional[Path] = typer.Option(None, "--cluster-file", help="cluster layers overriding tuner/data/cluster.yaml"),
    llm_hpa: bool = typer.Option(False, "--llm-hpa", help="an HPA sizes the LLM engines on their waiting requests"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals, request mix and service times"),
    prices: Optional[Path] = PRICES,
    force: bool = FORCE,
    abort_on_fail: bool = typer.Option(False, "--abort-on-fail", help="say when `tuner run --abort-on-fail` would have "
                                       "stopped the load (the simulated run is not cut; the verdict is the same)"),
    abort_grace: float = ABORT_GRACE,
    junit: Optional[Path] = JUNIT,
) -> None:
    """One simulated trial: the same scenario, target and result.json as `tuner run`, in seconds.

    Options the command does not know go to the scenario, e.g. `--rate 4 --burst-rps 10`.
    Exit 0 target met, 1 missed, 2 usage error."""
    from tuner import simulate
    from tuner.outdir import prepare_out
    from tuner.plan import make_plan, scenario_arrivals
    from tuner.run_view import print_result

    plan = make_plan(config=config, scenario=scenario, scenario_args=ctx.args, target=target, duration_s=duration,
                     out=out, warmup_s=warmup, seed=seed, prices=prices, check=False, abort_on_fail=abort_on_fail,
                     abort_grace_s=abort_grace, prime=prime)
    setup = simulate.sim_setup(calibration, cluster, cluster_file, llm_hpa)
    info, arrivals = scenario_arrivals(plan)
    prepare_out(out, force)
    result = simulate.run_sim(plan, setup, info, arrivals)
    console.print(f"results in {out}/ (result.json)")
    if junit is not None:
        _write_trial_junit(junit, out)
    print_result(result, console)
    raise typer.Exit(result.exit_code)


@app.command("validate", context_settings=TO_SCENARIO)
def validate(
    ctx: typer.Context,
    config: Path = CONFIG,
    scenario: str = SCENARIO,
    out: Path = typer.Option(..., "--out", help="folder for real/, sim/, validation.json and replicas.png"),
    target: str = typer.Option("p99<500ms", "--target", help="the target both trials are judged on"),
    duration: float = DURATION,
    warmup: float = WARMUP,
    prime: bool = PRIME,
    repeat: int = typer.Option(1, "--repeat", min=1, max=50, help="real trials to take the median of"),
    calibration: str = CALIBRATION,
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix (both sides)"),
    prices: Optional[Path] = PRICES,
    real_dir: Optional[Path] = typer.Option(None, "--real", help="compare with this finished real trial instead of running one "
                                            "(its config, scenario, options, seed and duration are used)"),
    force: bool = FORCE,
    state_dir: Path = STATE_DIR,
) -> None:
    """Run the same trial for real and in the simulator; print p50/p99, throughput and
    replica-trajectory errors against the goals. Exit 0 all goals met, 1 some missed,
    2 usage error, 3 the real trial could not be measured."""
    from tuner import simulate
    from tuner import validate as val
    from tuner.outdir import prepare_out
    from tuner.plan import make_plan
    from tuner.run_view import PhaseProgress

    real = val.real_from(real_dir) if real_dir else None
    given = dict(config=config, scenario=scenario, scenario_args=ctx.args, target=target, duration_s=duration,
                 warmup_s=warmup, seed=seed, serve_config=None, prime=prime)
    if real is not None:  # the sim repeats exactly the recorded trial
        sc = real.scenario
        given = dict(config=Path(real.config.path or config), serve_config=real.config.serve_config,
                     scenario=sc.path or sc.name, scenario_args=sc.options, target=real.target.text,
                     duration_s=sc.duration_s, warmup_s=sc.warmup_s, seed=sc.seed, prime=sc.prime)
    plan = make_plan(out=out, prices=prices, **given)
    setup = simulate.sim_setup(calibration)
    prepare_out(out, force)
    stack = None if real else _running_stack(state_dir, "tuner validate", can_start=False)
    with PhaseProgress(console) as progress:
        _real, _sim, cmp = val.run_validation(stack, plan, setup, repeat, progress, real)
    views.print_validation(cmp, console)
    console.print(f"results in {out}/ (validation.json, replicas.png, {'' if real else 'real/, '}sim/)")
    raise typer.Exit(0 if cmp["all_met"] else 1)


@app.command("optimize")
def optimize(
    target: str = typer.Option(..., "--target", help=TARGET_HELP),
    scenario: list[str] = typer.Option(["burst"], "--scenario", metavar="SCENARIO", help="a scenario (repeat: the target must hold on each); "
                                       "options after a colon, e.g. 'steady:--rate 6'"),
    out: Path = typer.Option(..., "--out", help="folder for the study, best_serve_config.yaml, trials.csv, summary.json"),
    config: Path = typer.Option(SERVE_CONFIG, "--config", help="the starting Serve config (default: the shipped one)",
                                show_default=False),
    space_file: Optional[Path] = typer.Option(None, "--space", help="search space (default tuner/data/search_space.yaml)"),
    backend: str = typer.Option("hybrid", "--backend", help="hybrid (search simulated, verify real), sim, or real"),
    cluster: str = typer.Option("fixed", "--cluster", help="fixed, ray-autoscaler or hpa: the layer searched (sim only)"),
    trials: int = typer.Option(40, "--trials", min=1, max=100_000,
                               help="completed trials to reach, baselines included (hybrid: simulated trials per round)"),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="seconds of searching at most"),
    patience: Optional[int] = typer.Option(None, "--patience", min=1, help="stop after N trials without a better result"),
    pareto: bool = typer.Option(False, "--pareto", help="search cost against p99 and report the front"),
    sampler: str = typer.Option("auto", "--sampler", help="auto (GP, or TPE after --warm-start), tpe, gp or random"),
    baseline: list[Path] = typer.Option([], "--baseline", metavar="FILE", help="a Serve config to evaluate as a baseline (repeatable)"),
    max_real: int = typer.Option(4, "--max-real", min=1, max=100, help="hybrid: candidates verified for real at most"),
    real_repeat: int = typer.Option(2, "--real-repeat", min=1, max=20, help="hybrid: real runs per candidate"),
    noise_floor: float = typer.Option(0.15, "--noise-floor", min=0, max=0.5,
                                      help="hybrid: least relative margin a real pass needs (a 45-s trial's p99 moves by this much between runs here)"),
    static_sweep: int = typer.Option(3, "--static-sweep", min=0, max=20,
                                     help="baselines: the searched deployments fixed at 1..N replicas each (0: none); "
                                          "the hybrid runs them for real until one meets the target"),
    real_baselines: bool = typer.Option(True, "--real-baselines/--sim-baselines",
                                        help="hybrid: run the baselines on the real stack too"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of load per trial"),
    warmup: float = typer.Option(WARMUP_S, "--warmup", min=0, max=3600, help="seconds of each scenario first, not measured"),
    prime: bool = PRIME,
    calibration: str = CALIBRATION,
    seed: int = typer.Option(0, "--seed", help="seed of the sampler, arrivals and service times"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in --out)"),
    resume: bool = typer.Option(False, "--resume", help="continue the study in --out (or --storage)"),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", metavar="FOLDER",
                                              help="start from the trials of an earlier search (its --out): the "
                                                   "sampler models them first; they count for nothing else"),
    prices: Optional[Path] = PRICES,
    settle_timeout: float = typer.Option(SETTLE_TIMEOUT_S, "--settle-timeout", min=10,
                                         help="real: seconds to wait for deploy and replicas"),
    stack_up: bool = typer.Option(False, "--stack-up", help="real, hybrid: start the stack first if it is not running"),
    no_report: bool = NO_REPORT,
    state_dir: Path = STATE_DIR,
) -> None:
    """Search Serve's settings for the cheapest configuration that meets the target.

    Exit 0 a configuration met the target (for hybrid and real: on the real stack), 1 none
    within the budget, 2 usage error, 3 the real stack could not be measured."""
    from tuner import deploy, simulate
    from tuner.optimize.search import Search, SearchSettings, named_baselines
    from tuner.optimize.space import load_space
    from tuner.optimize.warm_start import load_prior
    from tuner.outdir import holds_files
    from tuner.plan import check_scenario, make_plan, split_scenario
    from tuner.run_view import PhaseProgress

    settings = SearchSettings(backend=backend, trials=trials, time_budget_s=time_budget, patience=patience, pareto=pareto,
                              sampler=sampler, max_real=max_real, real_repeat=real_repeat, noise_floor=noise_floor,
                              real_baselines=real_baselines, storage=storage, resume=resume)
    settings.check(cluster)
    scenarios = [split_scenario(item) for item in scenario]
    # The plan's own scenario is each of them in turn; its options come with each.
    plan = make_plan(config=config, scenario=scenarios[0][0], target=target, duration_s=duration, out=out,
                     warmup_s=warmup, seed=seed, prices=prices, settle_timeout_s=settle_timeout, check=False, prime=prime)
    plan = dataclasses.replace(plan, config_path=None)
    extra = {path.name: deploy.load_serve_config(path) for path in baseline}
    space = load_space(space_file, plan.serve_config)
    # The shipped config carries the seed article's settings (target_app was built from it): a
    # baseline of its own, the same trial as the starting config when that is the shipped one.
    named = named_baselines(plan.serve_config, deploy.load_serve_config(SERVE_CONFIG), extra, space, static_sweep)
    setup = simulate.sim_setup(calibration, cluster)
    space = space.model_copy(update={"cluster": {k: v for k, v in space.cluster.items() if k == cluster}})
    checked = [(path, args, check_scenario(path, duration, args)) for path, args in scenarios]
    prior = load_prior(warm_start, space, {c.text: c for c in plan.target.clauses}, pareto) if warm_start else None
    if holds_files(out) and not resume:
        raise UsageError(f"--out {out} already holds a study; pass --resume to continue it, or choose another folder")
    system = None if backend == "sim" else _running_stack(state_dir, f"--backend {backend}", stack_up, config)
    if system is not None:
        _print_live_view(system)
    search = Search(plan, setup, checked, space, named, settings, prior)
    with PhaseProgress(console) as progress:
        summary = search.run(system, out, progress, views.trial_printer(progress, trials), views.real_printer(progress))
    views.print_optimize(summary, console)
    files = "best_serve_config.yaml, " if summary["best"] else ""
    console.print(f"results in {out}/ ({files}trials.csv, summary.json, the study)")
    if not no_report:
        _write_report(out)
    raise typer.Exit(0 if summary["best"] else 1)


@app.command("sweep", context_settings=TO_SCENARIO)
def sweep(
    ctx: typer.Context,
    target: str = typer.Option(..., "--target", help=TARGET_HELP + " (latency and error-rate clauses)"),
    out: Path = typer.Option(..., "--out", help="folder for sweep.json and a trial folder per rate (rate-X/)"),
    scenario: str = typer.Option("steady", "--scenario", help="a locustfile, or a scenario name in scenarios/"),
    rates: Optional[str] = typer.Option(None, "--rates", help="the ladder's rates, e.g. 2,4,8 (requests/s)"),
    min_rate: Optional[float] = typer.Option(None, "--min-rate", help="the ladder's lowest rate (default 1)"),
    max_rate: Optional[float] = typer.Option(None, "--max-rate", help="the ladder's highest rate (default 16)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="rates from --min-rate to --max-rate, geometric (default 5)"),
    refine: int = typer.Option(4, "--refine", min=0, max=10, help="bisection steps between the last rate met and the first missed"),
    backend: str = typer.Option("real", "--backend", help="real (the running stack) or sim"),
    config: Path = CONFIG,
    duration: float = DURATION,
    warmup: float = WARMUP,
    prime: bool = PRIME,
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix"),
    calibration: str = typer.Option("local", "--calibration", help="sim: local, gpu-h100, or a file from `tuner profile`"),
    prices: Optional[Path] = PRICES,
    stack_up: bool = typer.Option(False, "--stack-up", help="real: start the stack first if it is not running"),
    force: bool = FORCE,
    state_dir: Path = STATE_DIR,
) -> None:
    """The highest rate that meets the target: a geometric ladder of the scenario's --rate up to
    its first miss, then bisection (see tuner/sweep.py); a trial per rate, goodput per rate.

    Options the command does not know go to the scenario, e.g. `--mix rag=1,predict=0,lora=0`.
    Exit 0 a rate met the target, 1 none did, 2 usage error, 3 a trial could not be measured."""
    from tuner import simulate
    from tuner import sweep as sw
    from tuner.outdir import prepare_out
    from tuner.plan import make_plan
    from tuner.run_view import PhaseProgress

    sw.check_backend(backend)
    ladder = sw.ladder(rates, min_rate, max_rate, steps)
    plan = make_plan(config=config, scenario=scenario, scenario_args=sw.scenario_options(ctx.args), target=target,
                     duration_s=duration, out=out, warmup_s=warmup, seed=seed, prices=prices, check=False, prime=prime)
    sw.check_target(plan.target)
    sw.check_first(plan, ladder[0])
    setup = simulate.sim_setup(calibration) if backend == "sim" else None
    prepare_out(out, force)
    stack = _running_stack(state_dir, "tuner sweep --backend real", stack_up, config) if backend == "real" else None
    with PhaseProgress(console) as progress:
        if stack is None:
            run_trial = sw.sim_runner(setup)
        else:
            from tuner.trial import run_repeated

            def run_trial(p):
                return run_repeated(stack, sw.with_info(p), 1, progress)
        result = sw.run_sweep(plan, ladder, backend, run_trial, refine, lambda p: progress.print(views.sweep_line(p)))
    views.print_sweep(result, console)
    console.print(f"results in {out}/ (sweep.json, a folder per rate)")
    raise typer.Exit(result.exit_code)


@app.command("report")
def report(
    folder: Path = typer.Argument(..., help="a trial, study, validation or bench folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="the HTML file (default: FOLDER/report.html); an existing "
                                       "file is replaced: the page is derived from FOLDER, which is never changed"),
) -> None:
    """One self-contained HTML page with the plots for a trial (`tuner run`/`tuner sim`), a
    study (`tuner optimize`), a validation (`tuner validate`) or a nightly bench (`tuner bench`)."""
    from tuner.report.build import write_report

    path = write_report(folder, out)
    console.print(f"report: {path}")


def _write_junit(path: Path, trials: list) -> None:
    """(suite name, TrialResult) pairs as JUnit XML at `path`, written atomically."""
    from tuner.atomic import write_text
    from tuner.junit import junit_xml

    write_text(path, junit_xml(trials))
    console.print(f"JUnit XML: {path}")


def _write_trial_junit(path: Path, out: Path) -> None:
    """The trial in `out` as JUnit XML, if it wrote a result."""
    from tuner.junit import suite_name
    from tuner.result import load_result

    if (out / "result.json").is_file():
        result = load_result(out / "result.json")
        _write_junit(path, [(suite_name(result), result)])


def _write_report(folder: Path) -> None:
    """The command's report beside its results; a failure to draw one is said, not fatal."""
    from tuner.report.build import write_report

    try:
        console.print(f"report: {write_report(folder)}")
    except Exception as e:  # noqa: BLE001 - the results are written; the page is a convenience
        console.print(f"[yellow]no report written:[/] {escape(type(e).__name__ + ': ' + str(e))}", soft_wrap=True)


@app.command("bench")
def bench(
    out: Path = typer.Option(..., "--out", help="folder for this night's trials, bench.json and report.html"),
    suite: str = typer.Option("nightly", "--suite", help="a suite in tuner/data/suites/, or a .yaml path"),
    backend: str = typer.Option("sim", "--backend", help="sim, real or both"),
    history_dir: Path = typer.Option(Path("reports/history"), "--history", help="folder of the history (nightly.csv)"),
    recent: int = typer.Option(3, "--recent", min=1, max=30, help="nights a new regression is looked for in"),
    min_change: float = typer.Option(0.05, "--min-change", min=0, max=10, help="smallest relative change called a regression"),
    analyze_only: bool = typer.Option(False, "--analyze-only", help="run nothing: analyse the history as it is"),
    calibration: str = typer.Option("local", "--calibration", help="sim: local, gpu-h100, or a file from `tuner profile`"),
    prices: Optional[Path] = PRICES,
    stack_up: bool = typer.Option(False, "--stack-up", help="real: start the stack first if it is not running"),
    no_report: bool = NO_REPORT,
    force: bool = typer.Option(False, "--force", help="replace what --out holds (an earlier night's folder is "
                               "replaced without it: its figures are in the history)"),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="also write each case's verdicts as "
                                         "JUnit XML for CI: a testsuite per case, a testcase per target clause"),
    state_dir: Path = STATE_DIR,
) -> None:
    """Run the nightly suite, append its figures to the history, and flag regressions with a
    change-point detector over each metric's history.

    Exit 0 no regression, 1 a regression (metric, size, commits), 2 usage error, 3 a case
    could not be measured."""
    import json
    import time
    from datetime import datetime, timezone

    from tuner import bench as b
    from tuner import history
    from tuner.atomic import write_text
    from tuner.changepoint import DEFAULT_DETECTOR
    from tuner.outdir import prepare_out

    backends = {"sim": ("sim",), "real": ("real",), "both": ("sim", "real")}.get(backend)
    if backends is None:
        raise UsageError(f"--backend: {backend!r} is not one of sim, real, both")
    the_suite = b.load_suite(suite)
    hist = history.read_history(history_dir)
    started = time.monotonic()
    rows, runs = [], []
    night = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    commit, machine = b.commit_id(), b.machine_name()
    if not analyze_only:
        from tuner.calibration_file import load_calibration
        from tuner.prices_file import load_prices

        b.check_cases(the_suite, backends)
        price_table, cal = load_prices(prices), load_calibration(calibration)
    # An earlier night's folder is replaced: its figures are in the history. Other files are not.
    prepare_out(out, force or (out / "bench.json").is_file())
    if not analyze_only:
        stack = _running_stack(state_dir, f"--backend {backend}", stack_up) if "real" in backends else None
        from tuner.run_view import PhaseProgress

        with PhaseProgress(console) as progress:
            def show(run):
                m = b.metrics(run.result)
                progress.print(f"{run.backend}/{run.case.name}: {run.result.status}, p99 {m['p99_ms'] or float('nan'):.0f} ms, "
                               f"{m['cost_per_hour'] or float('nan'):.4f}/h")

            runs = b.run_suite(the_suite, backends, out, stack=stack, prices=price_table, calibration=cal,
                               report=progress, on_case=show)
        rows = b.night_rows(runs, night, commit, machine, the_suite.name)
        hist = history.append(history_dir, rows)
    found, _ = history.analyse(hist[hist["suite"] == the_suite.name], recent=recent, min_change=min_change)
    found = [r for r in found if r.machine == machine or analyze_only]
    summary = {"suite": the_suite.name, "night": night, "commit": commit, "machine": machine,
               "history": str(history_dir.resolve()), "detector": DEFAULT_DETECTOR, "recent": recent, "min_change": min_change,
               "wall_s": time.monotonic() - started, "rows": rows,
               "cases": {f"{r.backend}/{r.case.name}": {"status": r.result.status, "folder": str(r.folder)} for r in runs},
               "regressions": history.as_dicts(found)}
    write_text(out / "bench.json", json.dumps(summary, indent=1, default=str))
    if junit is not None:
        _write_junit(junit, b.junit_trials(runs))
    if not no_report:
        _write_report(out)
    for r in found:
        console.print(f"[red]regression:[/] {escape(r.line())}", highlight=False, soft_wrap=True)
    unmeasured = [k for k, v in summary["cases"].items() if v["status"] == "unmeasured"]
    console.print(f"{len(rows)} figures appended to {history.history_file(history_dir)} "
                  f"(nights: {hist['night'].nunique()}); regressions: {len(found)}; {time.monotonic() - started:.0f} s")
    if unmeasured:
        console.print(f"[red]could not measure:[/] {', '.join(unmeasured)}")
        raise typer.Exit(3)
    raise typer.Exit(1 if found else 0)


@app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="folder for the manifests (refused if it holds files, unless --force)"),
    config: Optional[Path] = typer.Option(None, "--config", help="a Serve config file to export"),
    study: Optional[Path] = typer.Option(None, "--study", help="a `tuner optimize --out` folder: its best configuration"),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="ray-autoscaler or hpa: what sizes the worker pods "
                                          "(default: the study's layer, else ray-autoscaler)"),
    cluster_file: Optional[Path] = typer.Option(None, "--cluster-file", help="cluster layers overriding tuner/data/cluster.yaml"),
    fmt: list[str] = typer.Option(["all"], "--format", metavar="FORMAT", help="serve, rayservice, hpa, monitoring, grafana or all (repeatable)"),
    target: Optional[str] = typer.Option(None, "--target", help="the target the alerts and dashboard watch (default: the study's)"),
    name: str = typer.Option("target-app", "--name", help="the RayService's name"),
    namespace: str = typer.Option("ray-serve", "--namespace", help="Kubernetes namespace"),
    image: Optional[str] = typer.Option(None, "--image", help="the image with Ray and target_app (k8s/Dockerfile builds it)"),
    kubernetes_version: str = typer.Option("1.35", "--kubernetes-version", help="the Kubernetes version checked against"),
    llm_url: Optional[str] = typer.Option(None, "--llm-url", help="an existing OpenAI-compatible endpoint (then no vLLM is exported)"),
    llm_model: str = typer.Option("meta-llama/Llama-3.1-8B-Instruct", "--llm-model", help="the model the exported vLLM loads"),
    milvus_uri: Optional[str] = typer.Option(None, "--milvus-uri", help="Milvus (default: the namespace's milvus Service)"),
    redis_address: Optional[str] = typer.Option(None, "--redis-address", help="Redis for GCS fault tolerance (host:port)"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table for the dashboard's cost panel"),
    check: bool = typer.Option(False, "--check", help="validate the files offline (schemas, promtool, round trip)"),
    force: bool = FORCE,
) -> None:
    """Write Kubernetes manifests (KubeRay RayService, HPA, monitoring, NetworkPolicy, Grafana)
    for a Serve config or a study's best configuration.

    Exit 0 written (and with --check, every check passed), 1 a check failed, 2 usage error.
    With --check and no --config/--study, checks the files already in --out."""
    from pydantic import ValidationError

    from tuner.prices_file import load_prices
    from tuner.export import bundle, check as checks, inputs
    from tuner.export.settings import ExportSettings
    from tuner.outdir import prepare_out

    if config and study:
        raise UsageError("--config and --study: give one of them")
    formats = bundle.FORMATS if "all" in fmt else tuple(dict.fromkeys(fmt))
    unknown = [f for f in formats if f not in bundle.FORMATS]
    if unknown:
        raise UsageError(f"--format: {unknown[0]!r} is not one of {', '.join(bundle.FORMATS)}, all")
    given = {"name": name, "namespace": namespace, "image": image, "kubernetes_version": kubernetes_version,
             "llm_url": llm_url, "llm_model": llm_model, "milvus_uri": milvus_uri, "redis_address": redis_address}
    try:
        settings = ExportSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        field = str(e.errors()[0]["loc"][0])
        raise UsageError(f"--{field.replace('_', '-')}: {first_problem(e).split(': ', 1)[-1]}") from None
    if not config and not study:
        if not check:
            raise UsageError("give --config FILE or --study DIR (or --check alone to check the files in --out)")
        if not out.is_dir():
            raise UsageError(f"--out {out}: no such folder to check")
        problems = checks.check_folder(out, settings.kubernetes_version)
        views.print_checks(problems, out, False, console)
        raise typer.Exit(1 if problems else 0)
    tuned = (inputs.from_config(config, cluster, cluster_file, target) if config
             else inputs.from_study(study, cluster, cluster_file, target))
    files = bundle.build(tuned, settings, formats, load_prices(prices))
    prepare_out(out, force)
    bundle.write(out, files)
    console.print(f"wrote {', '.join(files)} to {out}/ (cluster layer {tuned.cluster.layer})")
    if check:
        problems = checks.check_folder(out, settings.kubernetes_version) + checks.round_trip(out, tuned, settings)
        views.print_checks(problems, out, True, console)
        raise typer.Exit(1 if problems else 0)


@app.command("profile")
def profile(
    out: Path = typer.Option(Path("calib"), "--out", help="folder for calibration.yaml and the raw phases"),
    phase_seconds: float = typer.Option(15.0, "--phase-seconds", min=3, max=600, help="seconds per route and level"),
    levels: str = typer.Option("1,2,4,8", "--levels", help="closed-loop concurrency levels, e.g. 1,2,4,8"),
    name: str = typer.Option("measured", "--name", help="the calibration's name in results"),
    rederive: bool = typer.Option(False, "--from-measurements", help="derive again from --out's measurements.json, measure nothing"),
    force: bool = typer.Option(False, "--force", help="replace what --out already holds (a measurement run)"),
    state_dir: Path = STATE_DIR,
) -> None:
    """Measure the running stack (each route at each concurrency level) and write the
    simulator's calibration: service time against batch size, replica start and adapter load
    times, overheads, the LLM's prompt length and latency profile."""
    from tuner import profile as prof
    from tuner.outdir import prepare_out

    try:
        lv = tuple(int(x) for x in levels.split(","))
    except ValueError:
        raise UsageError(f"--levels: {levels!r} is not a comma-separated list of integers") from None
    if not lv or min(lv) < 1 or max(lv) > 256 or 1 not in lv:
        raise UsageError(f"--levels: {levels!r} must hold 1 and integers up to 256")
    if rederive:
        cal = prof.derive_from(out, name)
    else:
        prepare_out(out, force)
        stack = _running_stack(state_dir, "tuner profile", can_start=False)
        cal = prof.run_profile(stack, out, phase_seconds, tuple(sorted(set(lv))), name, report=console.print)
    views.print_calibration(cal, out, console)


def main() -> None:
    """Entry point: a TunerError, or a usage error typer finds in the options (a bad value, a
    missing or unknown option), becomes one line on stderr and its exit code (2 for usage)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # click's exceptions (typer vendors click), in place of typer's boxed message
        if type(e).__name__ == "NoArgsIsHelpError":  # typer has printed the help already (its own test, too)
            raise SystemExit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(" ".join(e.format_message().splitlines()) + hint, e.exit_code)
    except TunerError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: what was recorded is kept (marked partial)", soft_wrap=True)
        raise SystemExit(130)
    raise SystemExit(code)


def _fail(message: str, code: int) -> None:
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
