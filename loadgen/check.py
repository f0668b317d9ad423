"""Check a scenario's options without sending anything: `python -m loadgen.check [--plan OUT] FILE [ARGS...]`.

Parses ARGS with Locust's own parser (so unknown options fail exactly as `locust` would) and
builds the scenario's traffic (so bad values fail the same way). Exit 0 and print the traffic
as JSON, or exit 2 with one line on stderr. With `--plan OUT` it also writes every arrival the
scenario would send (due time, path, adapter, domain, tokens, JSON body) to the Parquet file OUT: the
simulator replays exactly what Locust would send. `FILE --help` prints Locust's help with the
scenario's options, which `locust -f FILE --help` cannot: Locust answers it before importing
FILE. Tools that drive Locust run this in a process of its own: Locust patches the standard
library with gevent on import.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


class Refused(Exception):
    """The scenario or its options are unusable (the message is the one line to print)."""


def load(path: str, args: list[str]):
    """The parsed options, traffic, arrival process, mix and duration of a scenario run."""
    from locust.argument_parser import get_parser
    from locust.util.load_locustfile import load_locustfile

    from loadgen import openloop
    from loadgen.options import traffic_seconds
    from loadgen.scenario import registry
    from loadgen.traces import TraceError

    registry.clear()  # a file without a scenario must not run the one loaded before it
    try:
        load_locustfile(path)
    except (OSError, SyntaxError, ImportError) as e:
        raise Refused(f"cannot load scenario {path}: {e}") from None
    declared = registry.current
    if declared is None:
        raise Refused("no @scenario function in the locustfile")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            opts = get_parser().parse_args(["-f", path, *args])
    except SystemExit as e:
        if e.code == 0:  # --help or --version: the parser has printed the answer
            raise
        text = err.getvalue().split("error: ", 1)[-1].strip()
        raise Refused(f"scenario options: {'; '.join(text.splitlines()) or 'invalid'}") from None
    seconds = traffic_seconds(opts)
    try:
        traffic, process, mix = openloop.build_traffic(declared, opts, seconds)
    except (ValueError, TraceError) as e:
        raise Refused(str(e)) from None
    return opts, traffic, process, mix, seconds


def write_plan(out: str, traffic, process, mix, seed: int) -> int:
    """Every arrival's request, as the generators would build it, to Parquet; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loadgen.arrivals import arrivals
    from loadgen.mix import RequestMix

    arr = arrivals(traffic.shape, process)
    trace = traffic.trace
    reqs = RequestMix(mix, arr.times, seed, trace.prompt_tokens if trace else None,
                      trace.output_tokens if trace else None)
    rows = [reqs.request(i, None if arr.rows is None else int(arr.rows[i])) for i in range(arr.times.size)]
    pq.write_table(pa.table({
        "t": pa.array(arr.times, pa.float64()),
        "path": pa.array([r.path for r in rows], pa.string()),
        "stream": pa.array([r.stream for r in rows], pa.bool_()),
        "adapter": pa.array([r.adapter for r in rows], pa.string()),
        "domain": pa.array([r.body.get("domain") for r in rows], pa.string()),
        "prompt_tokens": pa.array([r.prompt_tokens for r in rows], pa.int32()),
        "max_tokens": pa.array([r.max_tokens for r in rows], pa.int32()),
        "body": pa.array([json.dumps(r.body) for r in rows], pa.string()),
    }), out)
    return len(rows)


def main(argv: list[str]) -> int:
    plan_out = None
    if argv[:1] == ["--plan"]:
        if len(argv) < 2:
            argv = []
        else:
            plan_out, argv = argv[1], argv[2:]
    if not argv:
        print("usage: python -m loadgen.check [--plan OUT] LOCUSTFILE [ARGS...]", file=sys.stderr)
        return 2
    try:
        opts, traffic, process, mix, seconds = load(argv[0], argv[1:])
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the scenario's own code failed: still the one line tools show
        print(f"error: scenario {argv[0]} failed: {type(e).__name__}: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    shape = traffic.shape
    info = {"seconds": seconds, "expected_arrivals": shape.expected(0, shape.duration),
            "peak_rps": shape.peak(), "shape": shape.model_dump(mode="json", exclude={"times_s"}),
            "process": process.model_dump(mode="json"), "mix": mix.model_dump(mode="json"),
            "request_timeout_s": opts.request_timeout, "drain_s": opts.drain, "max_in_flight": opts.max_in_flight}
    if plan_out:
        info["arrivals"] = write_plan(plan_out, traffic, process, mix, opts.seed)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
