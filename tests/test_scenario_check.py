"""`python -m loadgen.check`: scenario options checked in a process of its own, JSON on
success, exit 2 with one `error:` line on stderr otherwise. Sends nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen.check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def test_valid_options_print_the_traffic():
    p = check("scenarios/burst.py", "-t", "5s", "--rate", "2")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout.strip().splitlines()[-1])
    assert info["seconds"] == 5.0
    assert info["expected_arrivals"] > 0
    assert info["expected_arrivals"] == pytest.approx(10.0)  # 2 rps for 5 s; the first burst comes at 10 s
    assert info["shape"]["kind"] == "burst" and info["shape"]["base_rps"] == 2.0
    assert info["peak_rps"] == 2.0


def test_unknown_option():
    p = check("scenarios/burst.py", "-t", "5s", "--rate", "2", "--bogus", "1")
    assert p.returncode == 2
    line = one_error_line(p)
    assert "unrecognized arguments" in line and "--bogus" in line
    assert p.stdout.strip() == ""


def test_negative_rate_names_the_field():
    p = check("scenarios/burst.py", "-t", "5s", "--rate", "-1")
    assert p.returncode == 2
    assert "Burst.base_rps" in one_error_line(p)
    assert p.stdout.strip() == ""


def test_missing_trace_file():
    p = check("scenarios/trace_replay.py", "-t", "5s", "--trace", "/nonexistent")
    assert p.returncode == 2
    assert "/nonexistent" in one_error_line(p)


def test_missing_scenario_file(tmp_path):
    p = check(str(tmp_path / "nope.py"))
    assert p.returncode == 2
    one_error_line(p)


def test_no_arguments_is_a_usage_error():
    p = check()
    assert p.returncode == 2 and p.stderr.startswith("usage:")


def test_the_plan_holds_every_arrival_as_the_generators_would_send_it(tmp_path):
    import pandas as pd

    from loadgen.arrivals import ArrivalProcess, arrivals
    from loadgen.mix import MixSettings, RequestMix
    from loadgen.shapes import Burst

    out = tmp_path / "plan.parquet"
    p = check("--plan", str(out), "scenarios/burst.py", "-t", "30s", "--rate", "3", "--seed", "7", "--adapters", "8")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    plan = pd.read_parquet(out)
    shape = Burst(base_rps=3, height_rps=8, width_s=5, period_s=20, first_s=10, seconds=30)
    times = arrivals(shape, ArrivalProcess(kind="poisson", seed=7)).times
    mix = RequestMix(MixSettings(adapters=8), times, 7)
    assert info["arrivals"] == len(plan) == len(times) and plan["t"].tolist() == times.tolist()
    for i in (0, len(times) // 2, len(times) - 1):
        r = mix.request(i)
        row = plan.iloc[i]
        got = tuple(None if pd.isna(row[c]) else row[c] for c in ("path", "adapter", "domain"))
        assert got == (r.path, r.adapter, r.body.get("domain"))
    assert set(plan["path"]) == {"/rag", "/predict", "/v1/completions"}
    assert info["request_timeout_s"] == 60.0 and info["drain_s"] == 10.0
