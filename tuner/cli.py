"""The `tuner` command line: parse, call, map errors to exit codes. No logic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuner.errors import TunerError, UsageError
from tuner.stack_config import StackConfig, StackPorts

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Load-test and tune Ray Serve autoscaling.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Ray + Serve app, LLM emulator, Milvus Lite, Prometheus.")
app.add_typer(stack_app, name="stack")
# Tables are wide; a pipe or CI log gets a width that fits them rather than the 80 columns default.
console = Console(width=None if sys.stdout.isatty() else 160)

STATE_DIR = typer.Option(Path(".tuner/stack"), "--state-dir", help="folder for the stack's PIDs, logs and data")


def _stack_config(state_dir: Path, serve_config: Path | None = None, **ports: Optional[int]) -> StackConfig:
    from pydantic import ValidationError

    given = {k: v for k, v in ports.items() if v is not None}
    try:
        extra = {"serve_config": serve_config} if serve_config else {}
        return StackConfig(ports=StackPorts(**given), state_dir=state_dir, **extra)
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(f"ports.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from e


def _stack(state_dir: Path):
    """The stack recorded in `state_dir`, with the config it was started with."""
    import json

    from tuner.stack import STATE_FILE, Stack

    try:
        recorded = json.loads((state_dir / STATE_FILE).read_text())["config"]
        return Stack(StackConfig.model_validate(recorded))
    except (FileNotFoundError, KeyError, ValueError):
        return Stack(StackConfig(state_dir=state_dir))


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
) -> None:
    """Start the stack on 127.0.0.1 and deploy the Serve app."""
    from tuner.stack import Stack

    cfg = _stack_config(state_dir, serve_config, ray_gcs=ray_gcs_port, ray_dashboard=ray_dashboard_port,
                        ray_metrics=ray_metrics_port, llm=llm_port, milvus=milvus_port, prometheus=prometheus_port)
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
    target: str = typer.Option(..., "--target", help="e.g. 'p99<500ms' or 'p95\\[/rag]<800ms,error_rate<1%'"),
    duration: float = typer.Option(120.0, "--duration", min=1, max=24 * 3600, help="seconds of measured load"),
    out: Path = typer.Option(..., "--out", help="folder for result.json, records and series"),
    warmup: float = typer.Option(20.0, "--warmup", min=0, max=3600, help="seconds of the scenario first, not measured"),
    repeat: int = typer.Option(1, "--repeat", min=1, max=50, help="run the trial N times and report the spread"),
    seed: int = typer.Option(0, "--seed", help="seed of arrivals and request mix"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="price table overriding tuner/data/prices.yaml"),
    settle_timeout: float = typer.Option(300.0, "--settle-timeout", min=10, help="seconds to wait for deploy and replicas"),
    stack_up: bool = typer.Option(False, "--stack-up", help="start the stack first if it is not running"),
    force: bool = typer.Option(False, "--force", help="replace what --out already holds"),
    state_dir: Path = STATE_DIR,
) -> None:
    """One trial: deploy the config, drive the scenario, read Prometheus, judge the target.

    Options the command does not know go to the scenario, e.g. `--rate 4 --burst-rps 10`.
    Exit 0 target met, 1 missed, 2 usage error, 3 could not measure."""
    from tuner import cost, deploy, trial
    from tuner.run_view import PhaseProgress, print_result
    from tuner.target import parse_target

    tgt = parse_target(target)
    serve_config = deploy.load_serve_config(config)
    price_table = cost.load_prices(prices)
    path = trial.scenario_path(scenario)
    info = trial.check_scenario(path, duration, list(ctx.args))
    trial.prepare_out(out, force)
    stack = _stack(state_dir)
    if stack_up and not stack.running():
        from tuner.stack import Stack

        stack = Stack(_stack_config(state_dir, config))
        stack.up(log=console.print)
    spec = trial.TrialSpec(serve_config=serve_config, config_path=config, scenario=path,
                           scenario_args=tuple(ctx.args), target=tgt, duration_s=duration, out=out,
                           prices=price_table, warmup_s=warmup, seed=seed, settle_timeout_s=settle_timeout,
                           scenario_info=info)
    try:
        with PhaseProgress(console) as progress:
            result = trial.run_repeated(stack, spec, repeat, progress)
    finally:
        console.print(f"results in {out}/ (result.json)")
    print_result(result, console)
    raise typer.Exit(result.exit_code)


def main() -> None:
    """Entry point: a TunerError becomes one line on stderr and its exit code; typer/click
    handle their own usage errors (exit 2)."""
    try:
        app()
    except TunerError as e:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: what was recorded is kept (marked partial)", soft_wrap=True)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
