"""Diurnal: a day compressed into the run, between --rate (night) and --rate-peak.

`locust -f scenarios/diurnal.py --headless -t 240s --rate 1 --rate-peak 8`; `--day-profile` takes
24 hourly relative loads instead of the sinusoid.
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Diurnal


@scenario(
    option("--rate-peak", type=float, default=8.0, help="rate at the busiest hour, requests/s"),
    option("--peak-at", type=float, default=0.5, help="fraction of the day at the peak (sinusoid)"),
    option("--day-profile", default="", help="24 comma-separated hourly loads (any scale)"),
    defaults={"rate": 1.0},
)
def traffic(opts, seconds):
    try:
        profile = [float(v) for v in opts.day_profile.split(",")] if opts.day_profile else None
    except ValueError:
        raise ValueError(f"--day-profile must be 24 comma-separated numbers, got {opts.day_profile!r}") from None
    return Diurnal(min_rps=opts.rate, max_rps=opts.rate_peak, seconds=seconds, peak_at=opts.peak_at, profile=profile)
