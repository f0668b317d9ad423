"""Burst: a base rate (--rate) with periodic bursts on top.

`locust -f scenarios/burst.py --headless -t 60s --burst-rps 10 --burst-width 5 --burst-period 20`
"""

from locust import events

from loadgen.openloop import OpenLoopShape, OpenLoopUser, scenario  # noqa: F401 - Locust finds the user and shape here
from loadgen.shapes import Burst


@events.init_command_line_parser.add_listener
def arguments(parser):
    parser.add_argument("--burst-rps", type=float, default=8.0, help="rate added during each burst, requests/s")
    parser.add_argument("--burst-width", type=float, default=5.0, help="seconds each burst lasts")
    parser.add_argument("--burst-period", type=float, default=20.0, help="seconds from one burst's start to the next")
    parser.add_argument("--burst-first", type=float, default=10.0, help="second at which the first burst starts")


@scenario
def traffic(opts, seconds):
    return Burst(base_rps=opts.rate, height_rps=opts.burst_rps, width_s=opts.burst_width,
                 period_s=opts.burst_period, first_s=opts.burst_first, seconds=seconds)
