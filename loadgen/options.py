"""The command-line options every scenario shares, and how loadgen adds options to Locust's parser.

loadgen.openloop adds them, and the scenario's own, through Locust's custom-argument hook:
Locust parses them, ships them from the master to its workers, and shows each as a field of the
web UI's form. `python -m loadgen.check scenarios/X.py --help` lists them, each group under its
title (Locust's own `--help` is answered before it imports the scenario).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlparse

from loadgen.abort import parse_rules
from loadgen.scenario import Option, Scenario, option

DEFAULT_HOST = "http://127.0.0.1:8000"  # the stack's Serve HTTP proxy
DEFAULT_SECONDS = 60.0

COMMON = (
    option("--rate", type=float, default=2.0, help="scenario base rate, requests/s (all generators together)"),
    option("--duration", type=float, default=None,
           help="traffic duration in seconds (default: -t/--run-time, else 60)"),
    option("--seed", type=int, default=0, help="seed of arrivals and request mix"),
    option("--arrival", choices=["poisson", "deterministic", "gamma", "replay"], default=None,
           help="arrival process within the shape (default poisson; replay for traces)"),
    option("--burstiness", type=float, default=1.0,
           help="gamma shape for --arrival gamma: 1 Poisson, <1 burstier, >1 more even"),
    option("--mix", default="rag=1,predict=1,lora=1", help="route weights, e.g. rag=2,predict=1,lora=0"),
    option("--rag-no-stream", action="store_true", default=False,
           help="ask /rag for whole answers (default: streamed, to measure TTFT and ITL)"),
    option("--adapters", type=int, default=0,
           help="LoRA adapters to draw from (0: ask the app's /v1/models, else 32)"),
    option("--zipf", type=float, default=1.0, help="Zipf exponent of adapter popularity"),
    option("--max-in-flight", type=int, default=1000,
           help="cap on outstanding requests per generator; arrivals over it are dropped and counted"),
    option("--request-timeout", type=float, default=60.0, help="seconds before a request counts as timed out"),
    option("--drain", type=float, default=10.0,
           help="seconds to wait for outstanding requests after the last arrival or a stop"),
    option("--out", default="runs/loadgen",
           help="folder for each run's records.parquet and summary.json (a subfolder per run)"),
    option("--max-lag-ms", type=float, default=10.0,
           help="schedule lag p99 above which the generator counts as saturated"),
    option("--max-cpu", type=float, default=90.0,
           help="generator CPU percent above which it counts as saturated"),
    option("--allow-remote", action="store_true", default=False,
           help="allow a target host that is not loopback"),
    option("--abort-when", default="", metavar="RULES",
           help="stop sending once one of these rules can no longer hold, whatever the rest of the run does: a "
                "JSON list of {clause, metric, op, bound, route, q, window_s} (loadgen/abort.py; "
                "`tuner run --abort-on-fail` writes it from its target)"),
    option("--abort-grace", type=float, default=0.0,
           help="seconds into the load before --abort-when may stop it"),
)

# What Locust's `parser.add_argument` takes beyond argparse's: marks its web UI reads off each
# action to build its form. An option may set them; by default every option is a form field.
WEB_UI_MARKS = {"include_in_web_ui": True, "is_secret": False, "is_required": False, "is_multiple": False}


def add_arguments(parser, declared: Scenario | None) -> None:
    """Add the shared options, and those of the `declared` scenario, to Locust's parser."""
    _add_group(parser, "open-loop load (loadgen)", COMMON)
    if declared is not None:
        _add_group(parser, f"{declared.name} scenario", declared.options)
        parser.set_defaults(**declared.defaults)


def _add_group(parser, title: str, options: Iterable[Option]) -> None:
    group = parser.add_argument_group(title)
    for opt in options:
        kwargs = dict(opt.kwargs)
        marks = {name: kwargs.pop(name, default) for name, default in WEB_UI_MARKS.items()}
        action = group.add_argument(*opt.flags, **kwargs)
        # An argument group's add_argument is argparse's own: it takes no marks and sets none,
        # and an action without them is left out of the web UI.
        for name, value in marks.items():
            setattr(action, name, value)


# option: (lowest, whether the lowest itself is allowed, highest or None); Locust's parser
# checks only the type, and the shapes and the mix check their own options.
RANGES = {
    "max_in_flight": (1, True, 1_000_000),
    "request_timeout": (0, False, 86_400),
    "drain": (0, True, 86_400),
    # No ceiling: `tuner run` derives the lag from the target's bounds, which have none, and a
    # generator's threads can take it past 100 % of one core.
    "max_lag_ms": (0, False, None),
    "max_cpu": (0, False, None),
    "abort_grace": (0, True, None),
}


def check_options(opts) -> None:
    """The shared options the generator itself uses are in range, and --abort-when's rules
    readable (ValueError naming the option)."""
    for name, (low, low_allowed, high) in RANGES.items():
        value = getattr(opts, name)
        above = low <= value if low_allowed else low < value
        if not (above and (value <= high if high is not None else value < float("inf"))):  # NaN fails too
            wanted = (">= " if low_allowed else "> ") + f"{low:g}"
            wanted = f"a finite number {wanted}" if high is None else f"{wanted} and <= {high:g}"
            raise ValueError(f"--{name.replace('_', '-')} must be {wanted} (got {value:g})")
    if getattr(opts, "abort_when", None):
        parse_rules(opts.abort_when)


def traffic_seconds(opts) -> float:
    """The traffic duration: --duration, else -t/--run-time, else 60 s."""
    if getattr(opts, "duration", None):
        return float(opts.duration)
    if getattr(opts, "run_time", None):
        return float(opts.run_time)
    return DEFAULT_SECONDS


def non_loopback_reason(host: str | None) -> str | None:
    """Why `host` is not a loopback target (None when it is)."""
    if not host:
        return None
    try:
        url = urlparse(host if "://" in host else f"http://{host}")
        name, _ = url.hostname, url.port  # .port raises for a port that is not one
    except ValueError as e:  # an unclosed IPv6 bracket, a port out of range
        return f"cannot read a host name from {host!r}: {e}"
    if not name:
        return f"cannot read a host name from {host!r}"
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except socket.gaierror as e:
        return f"cannot resolve {name!r}: {e.strerror}"
    except UnicodeError:  # IDNA refuses the name: an empty label, or one over 63 characters
        return f"cannot resolve {name!r}: not a valid host name"
    remote = sorted(a for a in addrs if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    return f"{name} resolves to {', '.join(remote)}, not loopback" if remote else None
