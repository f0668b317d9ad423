"""Milvus Lite's search latency with and without the stack's memory settings, side by side.

Builds the `docs` collection (10,000 passages, the cached embeddings) in a temporary folder,
copies it, and starts two Milvus Lite servers that load it from disk as the stack's does: one
with the stack's environment (`tuner.stack.MILVUS_ENV`: one search thread, glibc keeping freed
memory), one with the search thread only. Then sends the same top-20 searches (with the passage
text, as VectorSearch asks) to both, alternating, one at a time with a pause between, and prints
each server's percentiles. Needs no stack; stops the servers it started, also on failure.

    .venv/bin/python scripts/bench_milvus.py --searches 400 --pause-ms 100
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from target_app.vector_store import DIM, build  # noqa: E402
from tuner import ports  # noqa: E402
from tuner.processes import spawn, terminate  # noqa: E402
from tuner.stack import MILVUS_ENV, milvus_argv  # noqa: E402

PLAIN_ENV = {"OMP_NUM_THREADS": MILVUS_ENV["OMP_NUM_THREADS"]}


def serve(tmp: Path, name: str, data: Path, env: dict, started: list) -> str:
    port = ports.free_port()
    started.append(spawn(f"milvus-{name}", milvus_argv(data, port), tmp / f"{name}.log", env=env))
    if not ports.wait_listening(port, 60):
        sys.exit(f"Milvus Lite ({name}) did not listen; see {tmp / (name + '.log')}")
    return f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--searches", type=int, default=400, help="searches per server")
    ap.add_argument("--pause-ms", type=float, default=100, help="pause after each pair of searches")
    a = ap.parse_args()
    from pymilvus import MilvusClient

    started: list = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    try:
        uri = serve(tmp, "build", tmp / "plain", PLAIN_ENV, started)
        build(uri)
        # Ctrl-C is the server's orderly stop: it closes the database, which finishes writing
        # the index (SIGTERM would leave it half written).
        builder = started[-1].process()
        builder.send_signal(signal.SIGINT)
        builder.wait(60)
        started.clear()
        shutil.copytree(tmp / "plain", tmp / "stack", ignore=shutil.ignore_patterns("LOCK"))
        (tmp / "plain" / "LOCK").unlink(missing_ok=True)
        clients = {name: MilvusClient(serve(tmp, name, tmp / name, env, started))
                   for name, env in (("stack", MILVUS_ENV), ("plain", PLAIN_ENV))}
        for c in clients.values():
            c.load_collection("docs")
        rng = np.random.default_rng(0)
        ms: dict[str, list[float]] = {name: [] for name in clients}
        for i in range(a.searches):
            v = rng.standard_normal(DIM).astype("float32")
            v = (v / np.linalg.norm(v)).tolist()
            for name in (list(clients) if i % 2 else list(clients)[::-1]):
                t = time.perf_counter()
                clients[name].search("docs", data=[v], limit=20, output_fields=["text"])
                ms[name].append((time.perf_counter() - t) * 1000)
            time.sleep(a.pause_ms / 1000)
        print(f"{a.searches} top-20 searches each, {a.pause_ms:g} ms apart, alternating; ms")
        print(f"{'server':<44} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} {'> 80 ms':>8}")
        for name, label in (("plain", "one search thread"), ("stack", "the stack's (+ glibc keeps freed memory)")):
            x = np.array(ms[name])
            p50, p90, p99 = np.percentile(x, [50, 90, 99])
            print(f"{label:<44} {p50:6.1f} {p90:6.1f} {p99:6.1f} {x.max():6.1f} {int((x > 80).sum()):8d}")
    finally:
        terminate(started)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
