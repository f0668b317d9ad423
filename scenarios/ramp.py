"""Ramp: linear from --rate to --rate-end over the run. `locust -f scenarios/ramp.py --headless -t 120s`."""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Ramp


@scenario(
    option("--rate-end", type=float, default=8.0, help="rate at the end of the ramp, requests/s"),
    defaults={"rate": 1.0},
)
def traffic(opts, seconds):
    return Ramp(start_rps=opts.rate, end_rps=opts.rate_end, seconds=seconds)
