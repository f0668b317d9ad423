"""Burst: a base rate (--rate) with periodic bursts on top.

`locust -f scenarios/burst.py --headless -t 60s --burst-rps 10 --burst-width 5 --burst-period 20`
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Burst


@scenario(
    option("--burst-rps", type=float, default=8.0, help="rate added during each burst, requests/s"),
    option("--burst-width", type=float, default=5.0, help="seconds each burst lasts"),
    option("--burst-period", type=float, default=20.0, help="seconds from one burst's start to the next"),
    option("--burst-first", type=float, default=10.0, help="second at which the first burst starts"),
)
def traffic(opts, seconds):
    return Burst(base_rps=opts.rate, height_rps=opts.burst_rps, width_s=opts.burst_width,
                 period_s=opts.burst_period, first_s=opts.burst_first, seconds=seconds)
