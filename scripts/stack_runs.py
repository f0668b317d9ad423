"""What the stack benchmarks share: the running stack, and a `tuner run` on it with faults."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.stack import Stack  # noqa: E402


def running_stack(state_dir: Path) -> Stack:
    """The stack recorded in `state_dir`; exits with a message when none is running."""
    stack = Stack.recorded(state_dir)
    if not stack.running():
        sys.exit(f"no stack is running from {state_dir}: run `tuner stack up` first")
    return stack


def tuner_run(stack: Stack, out: Path, scenario: list[str], duration_s: float, faults: list[str]) -> list[str]:
    """The command of one trial of the stack's own config, with a target every run meets."""
    return [sys.executable, "-m", "tuner.cli", "run", "--state-dir", str(stack.state_dir),
            "--config", str(stack.cfg.serve_config), *scenario, "--target", "p99<60s", "--duration", f"{duration_s:g}",
            "--warmup", "0", "--out", str(out), "--force", *[x for f in faults for x in ("--fault", f)]]
