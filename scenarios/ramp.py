"""Ramp: linear from --rate to --rate-end over the run. `locust -f scenarios/ramp.py --headless -t 120s`."""

from locust import events

from loadgen.openloop import OpenLoopShape, OpenLoopUser, scenario  # noqa: F401 - Locust finds the user and shape here
from loadgen.shapes import Ramp


@events.init_command_line_parser.add_listener
def arguments(parser):
    parser.add_argument("--rate-end", type=float, default=8.0, help="rate at the end of the ramp, requests/s")
    parser.set_defaults(rate=1.0)


@scenario
def traffic(opts, seconds):
    return Ramp(start_rps=opts.rate, end_rps=opts.rate_end, seconds=seconds)
