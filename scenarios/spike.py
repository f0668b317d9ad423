"""Spike: a base rate (--rate) that jumps once to --spike-rps and falls back.

`locust -f scenarios/spike.py --headless -t 90s --spike-rps 12 --spike-at 30 --spike-width 10`
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Spike


@scenario(
    option("--spike-rps", type=float, default=12.0,
           help="rate during the spike, requests/s (default: within this host's ceiling, BENCHMARKS.md)"),
    option("--spike-at", type=float, default=None, help="second the spike starts (default: a third in)"),
    option("--spike-width", type=float, default=10.0, help="seconds the spike lasts"),
)
def traffic(opts, seconds):
    at = seconds / 3 if opts.spike_at is None else opts.spike_at
    return Spike(base_rps=opts.rate, peak_rps=opts.spike_rps, at_s=at, width_s=opts.spike_width, seconds=seconds)
