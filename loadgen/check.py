"""Check a scenario's options without sending anything: `python -m loadgen.check FILE [ARGS...]`.

Parses ARGS with Locust's own parser (so unknown options fail exactly as `locust` would) and
builds the scenario's traffic (so bad values fail the same way). Exit 0 and print the traffic
as JSON, or exit 2 with one line on stderr. Tools that drive Locust run this first, in a
process of its own: Locust patches the standard library with gevent on import.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m loadgen.check LOCUSTFILE [ARGS...]", file=sys.stderr)
        return 2
    path, args = argv[0], argv[1:]
    from locust.argument_parser import get_parser
    from locust.util.load_locustfile import load_locustfile

    from loadgen import openloop
    from loadgen.options import traffic_seconds
    from loadgen.traces import TraceError

    try:
        load_locustfile(path)
    except (OSError, SyntaxError, ImportError) as e:
        print(f"error: cannot load scenario {path}: {e}", file=sys.stderr)
        return 2
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            opts = get_parser().parse_args(["-f", path, *args])
    except SystemExit:
        text = err.getvalue().split("error: ", 1)[-1].strip()
        print(f"error: scenario options: {'; '.join(text.splitlines()) or 'invalid'}", file=sys.stderr)
        return 2
    try:
        traffic, process, _mix = openloop.build_traffic(opts, traffic_seconds(opts))
    except (ValueError, TraceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shape = traffic.shape
    print(json.dumps({"seconds": traffic_seconds(opts), "expected_arrivals": shape.expected(0, shape.duration),
                      "peak_rps": shape.peak(), "shape": shape.model_dump(mode="json", exclude={"times_s"}),
                      "process": process.model_dump(mode="json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
