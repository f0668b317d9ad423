"""Real Locust runs of every scenario against the local echo server: records match the shape,
latency is free of coordinated omission, workers share the rate, the web UI drives a run,
and bad input is one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadgen import records
from loadgen.shapes import Burst, Diurnal, Ramp, Spike, Step
from tests.conftest import our_processes, pid_snapshot
from tuner.ports import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust"]


def start(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(port)


@pytest.fixture
def echo():
    """Start echo servers with given flags; yields a factory returning the base URL."""
    procs = []

    def make(*flags: str) -> str:
        port = free_port()
        procs.append(start([sys.executable, "-m", "loadgen.echo_server", "--port", str(port), *flags]))
        wait_port(port)
        return f"http://127.0.0.1:{port}"

    yield make
    for p in procs:
        stop(p)


class Run:
    """A finished headless Locust run: exit code, output, summary and records."""

    def __init__(self, proc: subprocess.CompletedProcess, out: Path):
        self.rc, self.output = proc.returncode, proc.stdout + proc.stderr
        runs = sorted(out.glob("*/summary.json"))
        self.summary = json.loads(runs[-1].read_text()) if runs else None
        self.records = records.load(runs[-1].parent / "records.parquet") if runs else None


def locust(scenario: str, host: str, out: Path, *args: str, timeout: float = 120) -> Run:
    cmd = [*LOCUST, "-f", f"scenarios/{scenario}.py", "--headless", "-H", host, "--out", str(out), *args]
    return Run(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout), out)


def counts_in(rec, edges: list[float]) -> np.ndarray:
    t = rec["scheduled"] - rec["scheduled"].min()
    return np.histogram(t, bins=edges)[0]


# (scenario, extra args, the shape the scenario should follow for those args)
SHAPED = [
    ("steady", ["--rate", "30", "-t", "6s"], None),
    ("ramp", ["--rate", "5", "--rate-end", "45", "-t", "6s"], Ramp(start_rps=5, end_rps=45, seconds=6)),
    ("step", ["--steps", "10,40", "-t", "6s"], Step(rates_rps=[10, 40], step_seconds=3)),
    ("burst", ["--rate", "10", "--burst-rps", "60", "--burst-first", "2", "--burst-width", "2", "--burst-period", "10",
               "-t", "6s"], Burst(base_rps=10, height_rps=60, width_s=2, period_s=10, first_s=2, seconds=6)),
    ("spike", ["--rate", "10", "--spike-rps", "60", "--spike-at", "2", "--spike-width", "2", "-t", "6s"],
     Spike(base_rps=10, peak_rps=60, at_s=2, width_s=2, seconds=6)),
    ("diurnal", ["--rate", "5", "--rate-peak", "60", "-t", "6s"], Diurnal(min_rps=5, max_rps=60, seconds=6)),
]


@pytest.mark.parametrize("scenario,args,shape", SHAPED, ids=[s[0] for s in SHAPED])
def test_scenario_records_follow_its_shape(echo, tmp_path, scenario, args, shape):
    run = locust(scenario, echo("--tokens", "3", "--itl-ms", "2"), tmp_path, "--arrival", "deterministic", *args)
    assert run.rc == 0, run.output[-3000:]
    assert "Exact percentiles from every request" in run.output and "Aggregated" in run.output
    rec = run.records
    assert len(rec) == run.summary["overall"]["arrivals"] > 0
    assert (rec["status"] == 200).all() and not rec["dropped"].any() and not rec["unfinished"].any()
    assert set(rec["route"]) == {"/rag", "/predict", "/v1/completions"}
    if shape is None:
        assert len(rec) == 180
        return
    assert abs(len(rec) - shape.expected()) <= 1
    edges = [0, 2, 4, 6]
    expected = [shape.expected(a, b) for a, b in zip(edges, edges[1:])]
    np.testing.assert_allclose(counts_in(rec, edges), expected, atol=2)


def test_streamed_rag_records_ttft_and_itl(echo, tmp_path):
    run = locust("steady", echo("--tokens", "6", "--itl-ms", "20"), tmp_path, "--rate", "10", "-t", "3s", "--mix", "rag=1")
    assert run.rc == 0, run.output[-3000:]
    rag = run.records
    assert (rag["output_tokens"] == 6).all()
    # the first delta comes one ITL after the sources event; then 5 gaps of ~20 ms each
    assert (rag["ttft_ms"] >= 19).all() and (rag["ttft_ms"] < rag["latency_ms"]).all()
    itl = np.concatenate(rag["itl_ms"].to_list())
    assert itl.size == 5 * len(rag) and 15 < np.median(itl) < 40


def test_trace_replay_sends_the_traces_tokens_at_its_times(echo, tmp_path):
    run = locust("trace_replay", echo("--tokens", "2", "--itl-ms", "1"), tmp_path, "-t", "8s", "--speedup", "20",
                 "--rate-scale", "0.5")
    assert run.rc == 0, run.output[-3000:]
    rec = run.records
    from loadgen.traces import load_trace

    trace = load_trace()
    first = trace.times_s[trace.times_s / 20 < 8]
    assert abs(len(rec) - first.size * 0.5) < 4 * np.sqrt(first.size * 0.25) + 2
    assert set(rec["route"]) == {"/rag"} and rec["prompt_tokens"].between(1, 6000).all()
    assert rec["prompt_tokens"].isin(np.minimum(trace.prompt_tokens, 6000)).all()


def test_lora_skew_draws_a_skewed_shifting_set_of_the_apps_adapters(echo, tmp_path):
    run = locust("lora_skew", echo("--adapters", "8"), tmp_path, "--rate", "100", "-t", "6s", "--zipf", "1.5",
                 "--shift-every", "3")
    assert run.rc == 0, run.output[-3000:]
    rec = run.records
    assert set(rec["route"]) == {"/v1/completions"}
    assert set(rec["adapter"]) <= {f"lora-{i:02d}" for i in range(8)}  # discovered from GET /v1/models
    t = rec["scheduled"] - rec["scheduled"].min()
    first, second = rec.loc[t < 3, "adapter"].value_counts(), rec.loc[t >= 3, "adapter"].value_counts()
    assert first.iloc[0] > 3 * first.iloc[-1]
    assert first.index[0] != second.index[0]


def test_latency_shows_the_stall_where_a_closed_loop_user_would_not(echo, tmp_path):
    """The server stalls 2 s of every 4 s. Open loop: every request due in a stall waits it out,
    so about half the requests are slow, in our records and in Locust's own stats. Closed loop:
    the one user is stuck on one request per stall, so almost no slow requests are recorded."""
    host = echo("--stall-every", "4", "--stall-for", "2")
    run = locust("steady", host, tmp_path / "open", "--rate", "20", "-t", "8s", "--arrival", "deterministic",
                 "--mix", "predict=1", "--csv", str(tmp_path / "open"))
    assert run.rc == 0, run.output[-3000:]
    slow = (run.records["latency_ms"] > 200).mean()
    assert 0.3 < slow < 0.65
    assert (run.records["lag_ms"] < 50).all()  # sent on time; the server, not the generator, held them
    closed = subprocess.run([*LOCUST, "-f", "tests/e2e/closed_loop_locustfile.py", "--headless", "-u", "1", "-r", "1",
                             "-t", "8s", "-H", host, "--csv", str(tmp_path / "closed")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert closed.returncode == 0, closed.stdout[-2000:] + closed.stderr[-2000:]

    def locust_p75(prefix: Path) -> float:
        import pandas as pd

        stats = pd.read_csv(f"{prefix}_stats.csv")
        return float(stats.loc[stats["Name"] == "Aggregated", "75%"].iloc[0])

    assert locust_p75(tmp_path / "open") > 200 > 50 > locust_p75(tmp_path / "closed")


def test_master_and_two_workers_produce_the_shapes_total_rate(echo, tmp_path):
    host = echo()
    port = free_port()
    before = pid_snapshot()
    workers = [start([*LOCUST, "-f", "scenarios/steady.py", "--worker", "--master-host", "127.0.0.1",
                      "--master-port", str(port)]) for _ in range(2)]
    try:
        cmd = [*LOCUST, "-f", "scenarios/steady.py", "--master", "--master-bind-host", "127.0.0.1",
               "--master-bind-port", str(port), "--expect-workers", "2", "--headless",
               "-H", host, "--out", str(tmp_path), "--rate", "40", "-t", "6s", "--arrival", "deterministic"]
        run = Run(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120), tmp_path)
        for w in workers:
            w.wait(30)
    finally:
        for w in workers:
            stop(w)
    assert run.rc == 0, run.output[-3000:]
    rec = run.records
    assert len(rec) == 240  # 40/s for 6 s, not 2 x 240
    assert rec["generator"].value_counts().tolist() == [120, 120]
    assert np.allclose(np.diff(np.sort(rec["scheduled"].to_numpy())), 1 / 40, atol=1e-6)
    assert [p for p in our_processes(before) if "locust" in p] == []


def test_web_ui_runs_the_scenario(echo, tmp_path):
    host = echo()
    port = free_port()
    ui = start([*LOCUST, "-f", "scenarios/steady.py", "--web-host", "127.0.0.1", "--web-port", str(port), "-H", host,
                "--out", str(tmp_path), "--rate", "20", "--duration", "3"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "web UI did not come up"
                time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/swarm", data={"host": host, "rate": "20", "duration": "3"}, timeout=10)
        assert r.status_code == 200 and r.json()["success"], r.text
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("*/summary.json")):
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.5)
        stats = httpx.get(f"http://127.0.0.1:{port}/stats/requests", timeout=5).json()
        total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
    finally:
        stop(ui)
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    assert total["num_requests"] == summary["overall"]["arrivals"] > 40


@pytest.mark.parametrize("args,message", [
    (["--burst-width", "30", "--burst-period", "10"], "width_s must be <= period_s"),
    (["--rate", "-3"], "rps: Input should be greater than or equal to 0"),
    (["--mix", "rag=1,foo=2"], "mix: 'foo=2' is not ROUTE=WEIGHT"),
    (["-H", "http://192.0.2.10:8000"], "not loopback (pass --allow-remote to allow it)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    cmd = [*LOCUST, "-f", "scenarios/burst.py", "--headless", "-t", "2s", "--out", str(tmp_path), *args]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr + r.stdout
