"""Steady: a constant open-loop rate. `locust -f scenarios/steady.py --headless -t 60s --rate 4`."""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import scenario
from loadgen.shapes import Steady


@scenario()
def traffic(opts, seconds):
    return Steady(rps=opts.rate, seconds=seconds)
