"""The README's main job until `tuner run` (issue 03): one Locust scenario against the
running stack, then what Prometheus saw of it (server latency, replicas, LLM TTFT).

The traffic is plain Locust: `locust -f scenarios/<name>.py --headless`, open loop, with its
exact-percentile summary and records written under `--out`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tuner import promql
from tuner.errors import StackError, UsageError
from tuner.prometheus import Prometheus

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def scenario_path(name: str) -> Path:
    """The locustfile of scenario `name` (UsageError naming the choices if there is none)."""
    path = SCENARIOS / f"{name}.py"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.py")))
        raise UsageError(f"--scenario: no scenario {name!r}; choose one of {names}")
    return path


def run_demo(stack, scenario: str, duration: float, out: Path, locust_args: list[str], console: Console) -> int:
    """Run the scenario against the stack, print Prometheus' view; Locust's exit code."""
    path = scenario_path(scenario)
    if not stack.running():
        raise StackError(f"no stack is running from {stack.state_dir}: run `tuner stack up` first")
    t0 = time.time()
    cmd = [sys.executable, "-m", "locust", "-f", str(path), "--headless", "-t", f"{duration:g}s",
           "-H", stack.serve_url(), "--out", str(out), "--only-summary", *locust_args]
    console.print(f"$ {' '.join(cmd[1:])}", highlight=False)
    rc = subprocess.run(cmd).returncode
    if rc == 2:
        return rc
    time.sleep(5)  # Ray exports metrics every second and Prometheus scrapes every second
    _server_tables(Prometheus(stack.prometheus_url), f"{int(time.time() - t0) + 5}s", console)
    return rc


def _server_tables(prom: Prometheus, window: str, console: Console) -> None:
    p50 = {(m.get("application"), m.get("route")): v for m, v in prom.vector(promql.http_latency_quantile_ms(0.5, window))}
    p99 = {(m.get("application"), m.get("route")): v for m, v in prom.vector(promql.http_latency_quantile_ms(0.99, window))}
    table = Table("application", "route", "p50 ms", "p99 ms", title=f"server latency at the Serve proxy (Prometheus, last {window}; bucket-interpolated)")
    for key in sorted(p50):
        table.add_row(key[0], key[1], f"{p50[key]:.0f}", f"{p99.get(key, float('nan')):.0f}")
    console.print(table)
    reps = Table("application", "deployment", "replicas", title="replicas (Prometheus)")
    for m, v in sorted(prom.vector(promql.replicas_by_deployment()), key=lambda r: (r[0].get("application"), r[0].get("deployment"))):
        reps.add_row(m.get("application"), m.get("deployment"), f"{v:.0f}")
    console.print(reps)
    ttft = prom.scalar(promql.llm_ttft_quantile_s(0.99, window))
    if ttft is not None:
        console.print(f"LLM backend time to first token p99: {ttft * 1000:.0f} ms")
