"""Step: a staircase of rates, each held for an equal part of the run.

`locust -f scenarios/step.py --headless -t 120s --steps 1,2,4,8`
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Step


@scenario(option("--steps", default="1,2,4,8", help="comma-separated rates, requests/s, one per step"))
def traffic(opts, seconds):
    try:
        rates = [float(r) for r in opts.steps.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--steps must be comma-separated numbers, got {opts.steps!r}") from None
    return Step(rates_rps=rates, step_seconds=seconds / max(1, len(rates)))
