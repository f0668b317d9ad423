"""The `tuner` command line: parse, call, map errors to exit codes. No logic here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tuner.errors import TunerError, UsageError
from tuner.stack_config import StackConfig, StackPorts

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Load-test and tune Ray Serve autoscaling.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Ray + Serve app, LLM emulator, Milvus Lite, Prometheus.")
app.add_typer(stack_app, name="stack")
console = Console()

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


@app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(
    ctx: typer.Context,
    state_dir: Path = STATE_DIR,
    scenario: str = typer.Option("burst", "--scenario", help="a scenario in scenarios/ (steady, burst, trace_replay, ...)"),
    duration: float = typer.Option(60.0, "--duration", min=1, max=3600, help="seconds of traffic"),
    out: Path = typer.Option(Path("runs/loadgen"), "--out", help="folder for the run's records and summary"),
) -> None:
    """Drive one Locust scenario against the running stack; print its exact percentiles and Prometheus' view.

    Arguments after the options go to Locust unchanged, e.g. `tuner demo --scenario burst -- --rate 4`."""
    from tuner.demo import run_demo

    rc = run_demo(_stack(state_dir), scenario, duration, out, list(ctx.args), console)
    if rc:
        raise typer.Exit(rc)


def main() -> None:
    """Entry point: a TunerError becomes one line on stderr and its exit code; typer/click
    handle their own usage errors (exit 2)."""
    try:
        app()
    except TunerError as e:
        Console(stderr=True).print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code)


if __name__ == "__main__":
    main()
