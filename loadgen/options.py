"""The command-line options every scenario shares, through Locust's own custom-argument hook.

`locust -f scenarios/X.py --help` lists them under "Custom options"; the web UI shows them as
fields; Locust ships them from the master to its workers.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

DEFAULT_HOST = "http://127.0.0.1:8000"  # the stack's Serve HTTP proxy
DEFAULT_SECONDS = 60.0


def add_arguments(parser) -> None:
    """Register the shared scenario options on Locust's parser."""
    g = parser.add_argument_group("open-loop load (loadgen)")
    g.add_argument("--rate", type=float, default=2.0, help="scenario base rate, requests/s (all generators together)")
    g.add_argument("--duration", type=float, default=None,
                   help="traffic duration in seconds (default: -t/--run-time, else 60)")
    g.add_argument("--seed", type=int, default=0, help="seed of arrivals and request mix")
    g.add_argument("--arrival", choices=["poisson", "deterministic", "gamma", "replay"], default=None,
                   help="arrival process within the shape (default poisson; replay for traces)")
    g.add_argument("--burstiness", type=float, default=1.0,
                   help="gamma shape for --arrival gamma: 1 Poisson, <1 burstier, >1 more even")
    g.add_argument("--mix", default="rag=1,predict=1,lora=1", help="route weights, e.g. rag=2,predict=1,lora=0")
    g.add_argument("--rag-no-stream", action="store_true", default=False,
                   help="ask /rag for whole answers (default: streamed, to measure TTFT and ITL)")
    g.add_argument("--adapters", type=int, default=0,
                   help="LoRA adapters to draw from (0: ask the app's /v1/models, else 32)")
    g.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of adapter popularity")
    g.add_argument("--max-in-flight", type=int, default=1000,
                   help="cap on outstanding requests per generator; arrivals over it are dropped and counted")
    g.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request counts as timed out")
    g.add_argument("--drain", type=float, default=10.0,
                   help="seconds to wait for outstanding requests after the last arrival or a stop")
    g.add_argument("--out", default="runs/loadgen",
                   help="folder for each run's records.parquet and summary.json (a subfolder per run)")
    g.add_argument("--max-lag-ms", type=float, default=10.0,
                   help="schedule lag p99 above which the generator counts as saturated")
    g.add_argument("--max-cpu", type=float, default=90.0,
                   help="generator CPU percent above which it counts as saturated")
    g.add_argument("--allow-remote", action="store_true", default=False,
                   help="allow a target host that is not loopback")


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
}


def check_options(opts) -> None:
    """The shared options the generator itself uses are in range (ValueError naming the option)."""
    for name, (low, low_allowed, high) in RANGES.items():
        value = getattr(opts, name)
        above = low <= value if low_allowed else low < value
        if not (above and (value <= high if high is not None else value < float("inf"))):  # NaN fails too
            wanted = (">= " if low_allowed else "> ") + f"{low:g}"
            wanted = f"a finite number {wanted}" if high is None else f"{wanted} and <= {high:g}"
            raise ValueError(f"--{name.replace('_', '-')} must be {wanted} (got {value:g})")


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
