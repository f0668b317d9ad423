"""The `tuner` command line: parse, call, map errors to exit codes. No logic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuner.errors import TunerError, UsageError, first_problem
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

STATE_DIR = typer.Option(Path(".tuner/stack"), "--state-dir", help="folder for the stack's PIDs, logs and data")


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
    serve_config: Path = typer.Option(Path("target_app/serve_config.yaml"), "--config", help="Serve config to deploy"),
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
        _print_status(existing.status())
        return
    stack = Stack(cfg)
    timings = stack.up(log=console.print)
    console.print(f"stack up in {timings['total']:.1f}s")
    _print_status(stack.status())


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
    _print_status(parts)
    if not all(p.healthy for p in parts):
        raise typer.Exit(1)


def _print_status(parts) -> None:
    table = Table("part", "health", "url", "pid", "detail")
    for p in parts:
        table.add_row(p.name, "[green]up[/]" if p.healthy else "[red]down[/]", p.url, str(p.pid or ""), p.detail)
    console.print(table)


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    config: Path = typer.Option(Path("target_app/serve_config.yaml"), "--config", help="Serve config to deploy"),
    scenario: str = typer.Option("burst", "--scenario", help="a locustfile, or a scenario name in scenarios/"),
    target: str = typer.Option(..., "--target", help="e.g. 'p99<500ms' or 'p95[/rag]<800ms,error_rate<1%'"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of measured load"),
    out: Path = typer.Option(..., "--out", help="folder for result.json, records and series"),
    warmup: float = typer.Option(20.0, "--warmup", min=0, max=3600, help="seconds of the scenario first, not measured"),
    repeat: int = typer.Option(1, "--repeat", min=1, max=50, help="run the trial N times and report the spread"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    settle_timeout: float = typer.Option(300.0, "--settle-timeout", min=10, help="seconds to wait for deploy and replicas"),
    stack_up: bool = typer.Option(False, "--stack-up", help="start the stack first if it is not running"),
    force: bool = typer.Option(False, "--force", help="replace what --out already holds"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
    fault: list[str] = typer.Option([], "--fault", metavar="SPEC", help="inject a fault, e.g. llm-outage@30s+20s or "
                                    "kill-replica@20s:deployment=Reranker (repeatable; see tuner/faults.py)"),
    state_dir: Path = STATE_DIR,
) -> None:
    """One trial: deploy the config, drive the scenario, read Prometheus, judge the target.

    Options the command does not know go to the scenario, e.g. `--rate 4 --burst-rps 10`.
    Exit 0 target met, 1 missed, 2 usage error, 3 could not measure."""
    from tuner import cost, deploy, trial
    from tuner.faults import parse_fault
    from tuner.outdir import prepare_out
    from tuner.run_view import PhaseProgress, print_result
    from tuner.target import parse_target

    tgt = parse_target(target)
    faults = tuple(parse_fault(f, duration) for f in fault)
    serve_config = deploy.load_serve_config(config)
    price_table = cost.load_prices(prices)
    path = trial.scenario_path(scenario)
    info = trial.check_scenario(path, duration, list(ctx.args))
    prepare_out(out, force)
    stack = _stack(state_dir)
    if stack_up and not stack.running():
        from tuner.stack import Stack

        stack = Stack(_stack_config(state_dir, config))
        stack.up(log=console.print)
    spec = trial.TrialSpec(serve_config=serve_config, config_path=config, scenario=path,
                           scenario_args=tuple(ctx.args), target=tgt, duration_s=duration, out=out,
                           prices=price_table, warmup_s=warmup, seed=seed, settle_timeout_s=settle_timeout,
                           scenario_info=info, faults=faults)
    try:
        with PhaseProgress(console) as progress:
            result = trial.run_repeated(stack, spec, repeat, progress)
    finally:
        console.print(f"results in {out}/ (result.json)")
    print_result(result, console)
    if not no_report:
        _write_report(out)
    raise typer.Exit(result.exit_code)


@app.command("sim", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sim(
    ctx: typer.Context,
    config: Path = typer.Option(Path("target_app/serve_config.yaml"), "--config", help="Serve config to simulate"),
    scenario: str = typer.Option("burst", "--scenario", help="a locustfile, or a scenario name in scenarios/"),
    out: Path = typer.Option(..., "--out", help="folder for result.json and records"),
    target: str = typer.Option("p99<500ms", "--target", help="e.g. 'p99<500ms' or 'p95[/rag]<800ms,error_rate<1%'"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=7 * 24 * 3600, help="seconds of measured load"),
    warmup: float = typer.Option(20.0, "--warmup", min=0, max=3600, help="seconds of the scenario first, not measured"),
    calibration: str = typer.Option("local", "--calibration", help="local, gpu-h100, or a file from `tuner profile`"),
    cluster: str = typer.Option("fixed", "--cluster", help="fixed, ray-autoscaler or hpa"),
    cluster_file: Optional[Path] = typer.Option(None, "--cluster-file", help="cluster layers overriding tuner/data/cluster.yaml"),
    llm_hpa: bool = typer.Option(False, "--llm-hpa", help="an HPA sizes the LLM engines on their waiting requests"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals, request mix and service times"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    force: bool = typer.Option(False, "--force", help="replace what --out already holds"),
) -> None:
    """One simulated trial: the same scenario, target and result.json as `tuner run`, in seconds.

    Options the command does not know go to the scenario, e.g. `--rate 4 --burst-rps 10`.
    Exit 0 target met, 1 missed, 2 usage error."""
    from tuner import cost, deploy, simulate, trial
    from tuner.outdir import prepare_out
    from tuner.run_view import print_result
    from tuner.sim.calibration import load_calibration
    from tuner.target import parse_target

    tgt = parse_target(target)
    serve_config = deploy.load_serve_config(config)
    price_table = cost.load_prices(prices)
    cal = load_calibration(calibration)
    layer, llm = simulate.load_cluster(cluster, cluster_file, llm_hpa)
    path = trial.scenario_path(scenario)
    info, plan = simulate.scenario_plan(path, duration, list(ctx.args), seed)
    prepare_out(out, force)
    spec = simulate.SimSpec(serve_config=serve_config, config_path=config, scenario=path, scenario_args=tuple(ctx.args),
                            target=tgt, duration_s=duration, out=out, prices=price_table, calibration=cal,
                            cluster=layer, llm_hpa=llm, warmup_s=warmup, seed=seed, scenario_info=info)
    result = simulate.run_sim(spec, info, plan)
    console.print(f"results in {out}/ (result.json)")
    print_result(result, console)
    raise typer.Exit(result.exit_code)


@app.command("validate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def validate(
    ctx: typer.Context,
    config: Path = typer.Option(Path("target_app/serve_config.yaml"), "--config", help="Serve config to deploy and simulate"),
    scenario: str = typer.Option("burst", "--scenario", help="a locustfile, or a scenario name in scenarios/"),
    out: Path = typer.Option(..., "--out", help="folder for real/, sim/, validation.json and replicas.png"),
    target: str = typer.Option("p99<500ms", "--target", help="the target both trials are judged on"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of measured load"),
    warmup: float = typer.Option(20.0, "--warmup", min=0, max=3600, help="seconds of the scenario first, not measured"),
    repeat: int = typer.Option(1, "--repeat", min=1, max=50, help="real trials to take the median of"),
    calibration: str = typer.Option("local", "--calibration", help="local, gpu-h100, or a file from `tuner profile`"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix (both sides)"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    real_dir: Optional[Path] = typer.Option(None, "--real", help="compare with this finished real trial instead of running one "
                                            "(its config, scenario, options, seed and duration are used)"),
    force: bool = typer.Option(False, "--force", help="replace what --out already holds"),
    state_dir: Path = STATE_DIR,
) -> None:
    """Run the same trial for real and in the simulator; print p50/p99, throughput and
    replica-trajectory errors against the goals. Exit 0 all goals met, 1 some missed,
    2 usage error, 3 the real trial could not be measured."""
    from tuner import cost, deploy, simulate, trial
    from tuner import validate as val
    from tuner.outdir import prepare_out
    from tuner.run_view import PhaseProgress
    from tuner.sim.calibration import load_calibration
    from tuner.target import parse_target

    real = val.real_from(real_dir) if real_dir else None
    args = tuple(ctx.args)
    if real is not None:  # the sim repeats exactly the recorded trial
        serve_config, config = real.config.serve_config, Path(real.config.path or config)
        scenario, args, seed = real.scenario.path or real.scenario.name, tuple(real.scenario.options), real.scenario.seed
        duration, warmup, target = real.scenario.duration_s, real.scenario.warmup_s, real.target.text
    else:
        serve_config = deploy.load_serve_config(config)
    tgt = parse_target(target)
    price_table = cost.load_prices(prices)
    cal = load_calibration(calibration)
    layer, _ = simulate.load_cluster("fixed")
    path = trial.scenario_path(scenario)
    info = trial.check_scenario(path, duration, list(args))
    prepare_out(out, force)
    stack = _stack(state_dir)
    real_spec = trial.TrialSpec(serve_config=serve_config, config_path=config, scenario=path, scenario_args=args,
                                target=tgt, duration_s=duration, out=out, prices=price_table, warmup_s=warmup, seed=seed,
                                scenario_info=info)
    sim_spec = simulate.SimSpec(serve_config=serve_config, config_path=config, scenario=path, scenario_args=args,
                                target=tgt, duration_s=duration, out=out, prices=price_table, calibration=cal,
                                cluster=layer, warmup_s=warmup, seed=seed, scenario_info=info)
    with PhaseProgress(console) as progress:
        _real, _sim, cmp = val.run_validation(stack, real_spec, sim_spec, repeat, progress, real)
    _print_validation(cmp)
    console.print(f"results in {out}/ (validation.json, replicas.png, {'' if real else 'real/, '}sim/)")
    raise typer.Exit(0 if cmp["all_met"] else 1)


def _print_validation(cmp: dict) -> None:
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


@app.command("optimize")
def optimize(
    target: str = typer.Option(..., "--target", help="e.g. 'p99<500ms' or 'p95[/rag]<800ms,error_rate<1%'"),
    scenario: list[str] = typer.Option(["burst"], "--scenario", metavar="SCENARIO", help="a scenario (repeat: the target must hold on each); "
                                       "options after a colon, e.g. 'steady:--rate 6'"),
    out: Path = typer.Option(..., "--out", help="folder for the study, best_serve_config.yaml, trials.csv, summary.json"),
    config: Path = typer.Option(Path("target_app/serve_config.yaml"), "--config", help="the starting Serve config"),
    space_file: Optional[Path] = typer.Option(None, "--space", help="search space (default tuner/data/search_space.yaml)"),
    backend: str = typer.Option("hybrid", "--backend", help="hybrid (search simulated, verify real), sim, or real"),
    cluster: str = typer.Option("fixed", "--cluster", help="fixed, ray-autoscaler or hpa: the layer searched (sim only)"),
    trials: int = typer.Option(40, "--trials", min=1, max=100_000,
                               help="completed trials to reach, baselines included (hybrid: simulated trials per round)"),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="seconds of searching at most"),
    patience: Optional[int] = typer.Option(None, "--patience", min=1, help="stop after N trials without a better result"),
    pareto: bool = typer.Option(False, "--pareto", help="search cost against p99 and report the front"),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, gp or random"),
    baseline: list[Path] = typer.Option([], "--baseline", metavar="FILE", help="a Serve config to evaluate as a baseline (repeatable)"),
    max_real: int = typer.Option(4, "--max-real", min=1, max=100, help="hybrid: candidates verified for real at most"),
    real_repeat: int = typer.Option(2, "--real-repeat", min=1, max=20, help="hybrid: real runs per candidate"),
    noise_floor: float = typer.Option(0.15, "--noise-floor", min=0, max=1,
                                      help="hybrid: least relative margin a real pass needs (this machine's p99 CV)"),
    static_sweep: int = typer.Option(3, "--static-sweep", min=0, max=20,
                                     help="baselines: the searched deployments fixed at 1..N replicas each (0: none); "
                                          "the hybrid runs them for real until one meets the target"),
    real_baselines: bool = typer.Option(True, "--real-baselines/--sim-baselines",
                                        help="hybrid: run the baselines on the real stack too"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of load per trial"),
    warmup: float = typer.Option(20.0, "--warmup", min=0, max=3600, help="seconds of each scenario first, not measured"),
    calibration: str = typer.Option("local", "--calibration", help="local, gpu-h100, or a file from `tuner profile`"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampler, arrivals and service times"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in --out)"),
    resume: bool = typer.Option(False, "--resume", help="continue the study in --out (or --storage)"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    settle_timeout: float = typer.Option(300.0, "--settle-timeout", min=10, help="real: seconds to wait for deploy and replicas"),
    stack_up: bool = typer.Option(False, "--stack-up", help="real, hybrid: start the stack first if it is not running"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
    state_dir: Path = STATE_DIR,
) -> None:
    """Search Serve's settings for the cheapest configuration that meets the target.

    Exit 0 a configuration met the target (for hybrid and real: on the real stack), 1 none
    within the budget, 2 usage error, 3 the real stack could not be measured."""
    import shlex

    import optuna

    from tuner import cost, deploy, simulate, trial
    from tuner.errors import StackError
    from tuner.optimize.evaluate import RealBackend, SimBackend
    from tuner.optimize.hybrid import Hybrid, HybridSettings
    from tuner.optimize.output import write_outputs
    from tuner.optimize.space import load_space
    from tuner.optimize.study import (
        SAMPLERS,
        best_trial,
        completed,
        open_storage,
        pareto_front,
        run_study,
        static_baselines,
    )
    from tuner.outdir import holds_files, make_out
    from tuner.run_view import PhaseProgress
    from tuner.sim.calibration import load_calibration
    from tuner.target import parse_target

    if backend not in ("hybrid", "sim", "real"):
        raise UsageError(f"--backend: {backend!r} is not one of hybrid, sim, real")
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if backend != "sim" and cluster != "fixed":
        raise UsageError(f"--cluster {cluster} with --backend {backend}: the local stack is one fixed node; "
                         "search a cluster layer with --backend sim")
    tgt = parse_target(target)
    serve_config = deploy.load_serve_config(config)
    named = {"seed article": deploy.load_serve_config(SEED_CONFIG)}
    for path in baseline:
        named[f"baseline {path.name}"] = deploy.load_serve_config(path)
    space = load_space(space_file, serve_config)
    named.update(static_baselines(space, serve_config, range(1, static_sweep + 1)))
    layer, _ = simulate.load_cluster(cluster)
    space = space.model_copy(update={"cluster": {k: v for k, v in space.cluster.items() if k == cluster}})
    cal = load_calibration(calibration)
    price_table = cost.load_prices(prices)
    scenarios = []
    for item in scenario:
        name, _, rest = item.partition(":")
        path, args = trial.scenario_path(name), tuple(shlex.split(rest))
        scenarios.append((path, args, trial.check_scenario(path, duration, list(args))))
    if holds_files(out) and not resume:
        raise UsageError(f"--out {out} already holds a study; pass --resume to continue it, or choose another folder")
    stack = None
    if backend != "sim":
        stack = _stack(state_dir)
        if not stack.running():
            if not stack_up:
                raise StackError(f"--backend {backend} needs the stack: none is running from {state_dir}; "
                                 "run `tuner stack up` or pass --stack-up")
            from tuner.stack import Stack

            stack = Stack(_stack_config(state_dir, config))
            stack.up(log=console.print)
    make_out(out)
    url = storage or f"sqlite:///{out.resolve() / 'study.db'}"
    store = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sim_spec = simulate.SimSpec(serve_config=serve_config, config_path=config, scenario=scenarios[0][0], scenario_args=(),
                                target=tgt, duration_s=duration, out=out, prices=price_table, calibration=cal,
                                cluster=layer, warmup_s=warmup, seed=seed)
    info = {"target": tgt.text, "backend": backend, "scenarios": [f"{p.stem} {' '.join(a)}".strip() for p, a, _ in scenarios],
            "calibration": cal.name, "cluster": cluster, "sampler": sampler, "storage": url, "duration_s": duration,
            "warmup_s": warmup}
    with PhaseProgress(console) as progress:
        show = _trial_printer(progress, trials)
        real_backend = None
        if stack is not None:
            base = trial.TrialSpec(serve_config=serve_config, config_path=None, scenario=scenarios[0][0], scenario_args=(),
                                   target=tgt, duration_s=duration, out=out, prices=price_table, warmup_s=warmup,
                                   seed=seed, settle_timeout_s=settle_timeout)
            real_backend = RealBackend(stack, base, scenarios, out / "real", repeat=1 if backend == "real" else real_repeat,
                                       report=progress)
        common = dict(seed=seed, sampler=sampler, pareto=pareto, named_baselines=named)
        if backend == "hybrid":
            settings = HybridSettings(sim_trials=trials, patience=patience, max_real=max_real, repeat=real_repeat, noise_floor=noise_floor,
                                      real_baselines=real_baselines)
            sim_backend = SimBackend(sim_spec, [(p, a) for p, a, _ in scenarios])
            outcome = Hybrid(sim_backend, real_backend, space, serve_config, tgt, storage=store, settings=settings,
                             time_budget_s=time_budget, on_trial=show, on_real=_real_printer(progress), **common).run()
            studies = [("sim", s) for s in outcome.rounds] + [("real", outcome.real)]
            best = ("real", outcome.best) if outcome.best else None
            front = pareto_front(outcome.rounds[-1]) if pareto else None
            candidates = [t for t in completed(outcome.real) if not t.user_attrs.get("baselines")]
            extra = {"hybrid": {"reason": outcome.reason, "rounds": len(outcome.rounds),
                                "real_candidates": len(candidates),
                                "sim_winners_failed": sum(not t.user_attrs.get("passed") for t in candidates),
                                "correction": outcome.factors, "noise_floor": noise_floor, "real_repeat": real_repeat,
                                "verified": [{"trial": t.number, "label": t.user_attrs.get("label"),
                                              "round": t.user_attrs.get("round"), "cost_per_hour": t.values[0],
                                              "sim_cost_per_hour": t.user_attrs.get("sim_cost"),
                                              "p99_ms": t.user_attrs.get("p99_ms"),
                                              "sim_p99_ms": t.user_attrs.get("sim_p99_ms"),
                                              "met": t.user_attrs.get("feasible"), "margin": t.user_attrs.get("margin"),
                                              "noise": t.user_attrs.get("noise_used"),
                                              "passed": t.user_attrs.get("passed")} for t in candidates]}}
        else:
            evaluator = SimBackend(sim_spec, [(p, a) for p, a, _ in scenarios]) if backend == "sim" else real_backend
            study = run_study(evaluator, space, serve_config, trials=trials, storage=store, name="tuner",
                              time_budget_s=time_budget, patience=patience, resume=resume, on_trial=show, **common)
            studies, extra = [(backend, study)], {}
            found = best_trial(study)
            best = (backend, found) if found else None
            front = pareto_front(study) if pareto else None
    summary = write_outputs(out, serve_config, info, studies, best, cluster=layer, pareto=front, extra=extra)
    _print_optimize(summary)
    files = "best_serve_config.yaml, " if summary["best"] else ""
    console.print(f"results in {out}/ ({files}trials.csv, summary.json, the study)")
    if not no_report:
        _write_report(out)
    raise typer.Exit(0 if summary["best"] else 1)


# The shipped config carries the seed article's settings (target_app was built from it): a
# baseline of its own, the same trial as the starting config when that is the shipped one.
SEED_CONFIG = Path(__file__).resolve().parents[1] / "target_app" / "serve_config.yaml"


def _trial_printer(progress, total: int):
    """A line per finished trial and a bar of the search with the best so far."""
    progress.counter("search", total)
    state = {"n": 0}

    def show(t, best):
        state["n"] += 1
        mark = "met" if t.user_attrs.get("feasible") else "missed"
        label = f" ({', '.join(t.user_attrs['baselines'])})" if t.user_attrs.get("baselines") else ""
        best_txt = f"best {best.values[0]:.4f}/h (trial {best.number})" if best else "none met yet"
        progress.count(state["n"], best_txt)
        progress.print(f"trial {t.number}{label}: {t.values[0]:.4f}/h, p99 {t.user_attrs.get('p99_ms') or 0:.0f} ms, "
                       f"{mark}; {best_txt}")
    return show


def _real_printer(progress):
    def show(label, t):
        a = t.user_attrs
        verdict = "passed" if a.get("passed") else ("met (baseline)" if a.get("feasible") and a.get("baselines")
                                                    else "met, margin below noise" if a.get("feasible") else "missed")
        progress.print(f"real {label}: {t.values[0]:.4f}/h (simulated {a.get('sim_cost') or 0:.4f}/h), p99 "
                       f"{a.get('p99_ms') or 0:.0f} ms (simulated {a.get('sim_p99_ms') or 0:.0f}), margin "
                       f"{a.get('margin') or 0:+.0%} against noise {a.get('noise_used') or 0:.0%}: {verdict}")
    return show


def _print_optimize(summary: dict) -> None:
    table = Table("configuration", "backend", "trial", "cost / h", "p99 ms", "target", "saving by the best",
                  title=f"target {escape(repr(summary['target']))} on {', '.join(summary['scenarios'])}")
    best = summary["best"]
    met: dict[str, float] = {}
    for name, b in summary["baselines"].items():
        # A baseline that missed the target is no alternative to the best: no saving against it.
        saving = (best["savings"].get(name) or {}).get("saving") if best and b["feasible"] else None
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
        console.print("no configuration met the target within the budget")


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
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    stack_up: bool = typer.Option(False, "--stack-up", help="real: start the stack first if it is not running"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
    force: bool = typer.Option(False, "--force", help="replace what --out holds (an earlier night's folder is "
                               "replaced without it: its figures are in the history)"),
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
    from tuner import cost, history
    from tuner.changepoint import DEFAULT_DETECTOR
    from tuner.errors import StackError
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
        from tuner.sim.calibration import load_calibration

        b.check_cases(the_suite, backends)
        price_table, cal = cost.load_prices(prices), load_calibration(calibration)
    # An earlier night's folder is replaced: its figures are in the history. Other files are not.
    prepare_out(out, force or (out / "bench.json").is_file())
    if not analyze_only:
        stack = None
        if "real" in backends:
            stack = _stack(state_dir)
            if not stack.running():
                if not stack_up:
                    raise StackError(f"--backend {backend} needs the stack: none is running from {state_dir}; "
                                     "run `tuner stack up` or pass --stack-up")
                from tuner.stack import Stack

                stack = Stack(_stack_config(state_dir))
                stack.up(log=console.print)
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
    (out / ".bench.json.tmp").write_text(json.dumps(summary, indent=1, default=str))
    (out / ".bench.json.tmp").replace(out / "bench.json")
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
    force: bool = typer.Option(False, "--force", help="replace what --out already holds"),
) -> None:
    """Write Kubernetes manifests (KubeRay RayService, HPA, monitoring, NetworkPolicy, Grafana)
    for a Serve config or a study's best configuration.

    Exit 0 written (and with --check, every check passed), 1 a check failed, 2 usage error.
    With --check and no --config/--study, checks the files already in --out."""
    from pydantic import ValidationError

    from tuner import cost
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
        _print_checks(problems, out, round_trip=False)
        raise typer.Exit(1 if problems else 0)
    tuned = (inputs.from_config(config, cluster, cluster_file, target) if config
             else inputs.from_study(study, cluster, cluster_file, target))
    files = bundle.build(tuned, settings, formats, cost.load_prices(prices))
    prepare_out(out, force)
    bundle.write(out, files)
    console.print(f"wrote {', '.join(files)} to {out}/ (cluster layer {tuned.cluster.layer})")
    if check:
        problems = checks.check_folder(out, settings.kubernetes_version) + checks.round_trip(out, tuned, settings)
        _print_checks(problems, out, round_trip=True)
        raise typer.Exit(1 if problems else 0)


def _print_checks(problems: list[str], out: Path, round_trip: bool) -> None:
    for p in problems:
        console.print(f"[red]check failed:[/] {escape(p)}", highlight=False, soft_wrap=True)
    if not problems:
        ran = "CRD schemas, Kubernetes OpenAPI, ServeDeploySchema, promtool" + (", round trip" if round_trip else "")
        console.print(f"checks passed: {out}/ ({ran})")


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
    from tuner.errors import StackError
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
        stack = _stack(state_dir)
        if not stack.running():
            raise StackError(f"no stack is running from {state_dir}: run `tuner stack up` first")
        cal = prof.run_profile(stack, out, phase_seconds, tuple(sorted(set(lv))), name, report=console.print)
    table = Table("deployment", "service ms by batch size", "cv", "concurrency", "CPU", "start s", "load ms")
    for dep, t in cal.stages.items():
        table.add_row(dep, ", ".join(f"{b}: {ms:g}" for b, ms in t.service_ms), f"{t.cv:g}", str(t.concurrency or "-"),
                      "yes" if t.cpu_bound else "no", f"{t.start_s:g}", f"{t.load_ms:g}" if t.load_ms else "-")
    console.print(table)
    console.print(f"proxy {cal.proxy_ms:g} ms; LLM prompt {cal.llm.prompt_tokens} tokens; written to {out}/calibration.yaml")


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
