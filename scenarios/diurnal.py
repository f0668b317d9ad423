"""Diurnal: a day compressed into the run, between --rate (night) and --rate-peak.

`locust -f scenarios/diurnal.py --headless -t 240s --rate 1 --rate-peak 8`; `--day-profile` takes
24 hourly relative loads instead of the sinusoid.
"""

from locust import events

from loadgen.openloop import OpenLoopShape, OpenLoopUser, scenario  # noqa: F401 - Locust finds the user and shape here
from loadgen.shapes import Diurnal


@events.init_command_line_parser.add_listener
def arguments(parser):
    parser.add_argument("--rate-peak", type=float, default=8.0, help="rate at the busiest hour, requests/s")
    parser.add_argument("--peak-at", type=float, default=0.5, help="fraction of the day at the peak (sinusoid)")
    parser.add_argument("--day-profile", default="", help="24 comma-separated hourly loads (any scale)")
    parser.set_defaults(rate=1.0)


@scenario
def traffic(opts, seconds):
    try:
        profile = [float(v) for v in opts.day_profile.split(",")] if opts.day_profile else None
    except ValueError:
        raise ValueError(f"--day-profile must be 24 comma-separated numbers, got {opts.day_profile!r}") from None
    return Diurnal(min_rps=opts.rate, max_rps=opts.rate_peak, seconds=seconds, peak_at=opts.peak_at, profile=profile)
