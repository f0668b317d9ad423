"""Trace replay: the Azure LLM conversation trace (loadgen/data/), its arrival times and token counts.

Each request is a streamed /rag question whose earlier conversation has the trace's prompt
size and whose `max_tokens` is the trace's output length. The hour-long trace is compressed
(`--speedup`) and thinned or copied (`--rate-scale`) to fit this machine; the defaults play
its first 60 s of compressed time at about 2 requests/s:
`locust -f scenarios/trace_replay.py --headless -t 60s`.
"""

from locust import events

from loadgen.openloop import OpenLoopShape, OpenLoopUser, Traffic, scenario  # noqa: F401 - Locust finds the user and shape here
from loadgen.shapes import Trace
from loadgen.traces import AZURE_CONV, load_trace


@events.init_command_line_parser.add_listener
def arguments(parser):
    parser.add_argument("--trace", default=str(AZURE_CONV), help="trace file (Azure CSV, Mooncake JSONL, or time_s CSV)")
    parser.add_argument("--speedup", type=float, default=4.0, help="time compression: 4 plays an hour in 15 minutes")
    parser.add_argument("--rate-scale", type=float, default=0.1, help="keep this fraction of requests (>1 adds copies)")
    parser.set_defaults(mix="rag=1")


@scenario
def traffic(opts, seconds):
    data = load_trace(opts.trace)
    shape = Trace(times_s=data.times_s, speedup=opts.speedup, rate_scale=opts.rate_scale, window_s=seconds)
    return Traffic(shape, data)
