"""Trace replay: the Azure LLM conversation trace (loadgen/data/), its arrival times and token counts.

Each request is a streamed /rag question whose earlier conversation has the trace's prompt
size and whose `max_tokens` is the trace's output length. The hour-long trace is compressed
(`--speedup`) and thinned or copied (`--rate-scale`) to fit this machine; the defaults play
its first 60 s of compressed time at about 2 requests/s (`--trace-start` plays from later on):
`locust -f scenarios/trace_replay.py --headless -t 60s`.
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import Traffic, option, scenario
from loadgen.shapes import Trace
from loadgen.traces import AZURE_CONV, load_trace


@scenario(
    option("--trace", default=str(AZURE_CONV), help="trace file (Azure CSV, Mooncake JSONL, or time_s CSV)"),
    option("--speedup", type=float, default=4.0, help="time compression: 4 plays an hour in 15 minutes"),
    option("--rate-scale", type=float, default=0.1, help="keep this fraction of requests (>1 adds copies)"),
    option("--trace-start", type=float, default=0.0, help="seconds into the trace (its own time) to start from"),
    defaults={"mix": "rag=1"},
)
def traffic(opts, seconds):
    if opts.trace_start < 0:
        raise ValueError(f"--trace-start must be >= 0, got {opts.trace_start:g}")
    data = load_trace(opts.trace).starting_at(opts.trace_start)
    shape = Trace(times_s=data.times_s, speedup=opts.speedup, rate_scale=opts.rate_scale, window_s=seconds)
    return Traffic(shape, data)
