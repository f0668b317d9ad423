"""The load generator's own limits on this machine, side by side in one run. Prints Markdown.

- schedule lag (send time - due time) at 100, 300 and 1,000 requests/s, Poisson arrivals;
- maximum requests/s on one core: this generator, plain Locust FastHttpUser (closed loop,
  no wait) and wrk (Debian package `wrk`), all against the same echo server;
- generator CPU at the rates the scenarios use here (a few requests/s, the real mix);
- memory of the records path for 1,000,000 requests (buffer -> Arrow IPC -> Parquet) and
  of the exact-percentile summary over them.

The echo server runs on core 1 and every generator on core 0 (taskset), so they do not
share a core.

    .venv/bin/python scripts/bench_loadgen.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd

from tuner.paths import REPO
from tuner.ports import free_port

PY = sys.executable


def pinned(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd]


def open_loop(host: str, out: Path, rate: float, seconds: float, mix: str = "predict=1",
              extra: tuple[str, ...] = ()) -> dict:
    """One headless run of scenarios/steady.py on core 0; its summary.json."""
    cmd = pinned(0, [PY, "-m", "locust", "-f", "scenarios/steady.py", "--headless", "-H", host, "--out", str(out),
                     "--rate", str(rate), "-t", f"{seconds:g}s", "--mix", mix, "--max-in-flight", "2000", *extra])
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds * 4 + 120)
    if r.returncode not in (0, 1):
        raise RuntimeError(r.stderr[-2000:])
    summary = json.loads(sorted(out.glob("*/summary.json"))[-1].read_text())
    shutil.rmtree(out)
    return summary


def plain_locust(host: str, tmp: Path, seconds: float, users: int) -> float:
    """Requests/s of plain closed-loop Locust FastHttpUser with no wait, on core 0."""
    f = tmp / "plain.py"
    f.write_text(textwrap.dedent("""
        from locust import FastHttpUser, constant, task
        class Plain(FastHttpUser):
            wait_time = constant(0)
            @task
            def predict(self):
                self.client.post("/predict", json={"domain": "legal", "text": "a lease"})
    """))
    cmd = pinned(0, [PY, "-m", "locust", "-f", str(f), "--headless", "-H", host, "-u", str(users), "-r", str(users),
                     "-t", f"{seconds:g}s", "--csv", str(tmp / "plain")])
    subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds * 4 + 60)
    stats = pd.read_csv(tmp / "plain_stats.csv")
    return float(stats.loc[stats["Name"] == "Aggregated", "Requests/s"].iloc[0])


def wrk(host: str, seconds: float, conns: int) -> float | None:
    """Requests/s of wrk with one thread on core 0 (None when wrk is not installed)."""
    if not shutil.which("wrk"):
        return None
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua.write_text('wrk.method = "POST"\nwrk.body = \'{"domain": "legal", "text": "a lease"}\'\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(pinned(0, ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "-s", str(lua), f"{host}/predict"]),
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    lua.unlink()
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


MEMORY = textwrap.dedent("""
    import resource, sys, time, numpy as np
    from loadgen import records, summary
    n, path = int(sys.argv[1]), sys.argv[2]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    buf, w, t0 = records.RecordBuffer(), records.RecordWriter(path), time.time()
    routes = ["/rag", "/predict", "/v1/completions"]
    for i in range(n):
        s = t0 + i / 1000
        buf.add(scheduled=s, sent=s + 0.0005, first_byte=s + 0.01, end=s + 0.02 + (i % 97) / 1000, route=routes[i % 3],
                status=200, bytes=120, generator="g", ttft_ms=12.5 if i % 3 == 0 else None,
                itl_ms=[5.0, 5.5, 6.0] if i % 3 == 0 else None)
        if len(buf) >= 2000:  # the generator's flush size; each batch goes through Arrow IPC like a worker's
            w.write(records.decode(records.encode(buf.take())))
    w.write(records.decode(records.encode(buf.take())))
    w.close()
    write_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = summary.summarize(records.load(path, columns=summary.COLUMNS))
    total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(base / 1024, write_peak / 1024, total / 1024, s["overall"]["arrivals"])
""")


def memory(n: int, tmp: Path) -> tuple[float, float, float]:
    """(baseline MB, peak MB after writing n records, peak MB after summarising them)."""
    out = subprocess.run([PY, "-c", MEMORY, str(n), str(tmp / "mem.parquet")], cwd=REPO, capture_output=True,
                         text=True, timeout=1200, check=True).stdout.split()
    assert int(out[3]) == n
    return float(out[0]), float(out[1]), float(out[2])


def _print_memory(n: int, tmp: Path) -> None:
    base, write_peak, total = memory(n, tmp)
    print(f"\nRecords path for {n:,} requests: peak RSS {write_peak:.0f} MB while writing "
          f"({write_peak - base:.0f} MB above the {base:.0f} MB of the imports); "
          f"{total:.0f} MB after loading them and computing the exact summary.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--memory-only", action="store_true", help="only the records path's memory (no load runs)")
    a = ap.parse_args()
    if a.memory_only:
        tmp = Path(tempfile.mkdtemp())
        try:
            _print_memory(a.records, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(pinned(1, [PY, "-m", "loadgen.echo_server", "--port", str(port), "--itl-ms", "5"]),
                              cwd=REPO, stdout=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp())
    try:
        time.sleep(1.5)
        print(f"## Load generator (scripts/bench_loadgen.py --seconds {a.seconds:g})\n")
        print("| offered req/s | sent | lag p50 ms | lag p99 ms | lag max ms | generator CPU % |")
        print("|---|---|---|---|---|---|")
        for rate in (100, 300, 1000):
            s = open_loop(host, tmp / "run", rate, a.seconds)
            o, h = s["overall"], next(iter(s["generator_health"]["generators"].values()))
            print(f"| {rate} | {o['sent']} | {o['lag_ms_p50']:.2f} | {o['lag_ms_p99']:.2f} | {o['lag_ms_max']:.2f} | {h['cpu_pct']:.0f} |")
        print("\nMaximum requests/s on one core against the same echo server (core 1). An open-loop generator's"
              " maximum is the highest offered rate it keeps on schedule (lag p99 <= 10 ms, no drops):\n")
        print("| offered req/s | completed req/s | lag p99 ms | dropped | generator CPU % |\n|---|---|---|---|---|")
        kept = 0
        for rate in (1000, 1500, 2000, 2500, 3000, 4000):
            s = open_loop(host, tmp / "run", rate, a.seconds / 2)
            o, h = s["overall"], next(iter(s["generator_health"]["generators"].values()))
            print(f"| {rate} | {o['throughput_rps']:,.0f} | {o['lag_ms_p99']:,.1f} | {o['dropped']} | {h['cpu_pct']:.0f} |")
            if o["lag_ms_p99"] <= 10 and not o["dropped"]:
                kept = rate
        print("\n| generator | req/s on one core |\n|---|---|")
        print(f"| this generator, open loop, on schedule | {kept:,} |")
        print(f"| plain Locust FastHttpUser, closed loop, 50 users, no wait | {plain_locust(host, tmp, a.seconds / 2, 50):,.0f} |")
        w = wrk(host, a.seconds / 2, 50)
        print(f"| wrk -t1 -c50 (C, closed loop) | {w:,.0f} |" if w else "| wrk | not installed (apt-get install -y wrk) |")
        print("\nGenerator CPU at the scenarios' rates (real mix, streamed /rag):\n")
        print("| offered req/s | generator CPU % | lag p99 ms |\n|---|---|---|")
        for rate in (5, 20):
            s = open_loop(host, tmp / "run", rate, a.seconds, mix="rag=1,predict=1,lora=1")
            h = next(iter(s["generator_health"]["generators"].values()))
            print(f"| {rate} | {h['cpu_pct']:.1f} | {h['lag_ms_p99']:.2f} |")
        _print_memory(a.records, tmp)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
