"""`tuner bench`: the suite file, the history and its analysis, and the simulated suite end to
end twice; an injected regression is flagged with exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tuner import bench, history
from tuner.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]

SMALL_SUITE = {
    "name": "small",
    "sim": {"duration_s": 30, "warmup_s": 5, "cases": [
        {"name": "steady", "scenario": "steady", "args": ["--rate", "4"], "target": "p99<2s"},
        {"name": "burst-hpa", "scenario": "burst", "cluster": "hpa", "target": "p99<2s"}]},
}


def tuner(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900, env={**os.environ, "TUNER_BENCH_MACHINE": "test-machine", **(env or {})})


def test_the_shipped_nightly_suite_is_valid_and_has_both_parts():
    suite = bench.load_suite("nightly")
    assert suite.real is not None and suite.sim is not None
    assert len(suite.sim.cases) > len(suite.real.cases) and suite.real.repeat >= 3
    bench.check_cases(suite, ("sim", "real"))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["sim"]["cases"].append(dict(s["sim"]["cases"][0])), "case names must be unique: steady"),
    (lambda s: s["sim"]["cases"][0].update(name="Bad Name"), "sim.cases.0.name"),
    (lambda s: s["sim"].update(duration_s=0), "sim.duration_s"),
    (lambda s: s["sim"]["cases"][0].update(config="nope.yaml"), "config nope.yaml does not exist"),
    (lambda s: s["sim"]["cases"][0].update(colour="red"), "colour"),
])
def test_a_bad_suite_file_names_the_field(tmp_path, edit, message):
    data = json.loads(json.dumps(SMALL_SUITE))
    edit(data)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        bench.load_suite(str(path))
    with pytest.raises(UsageError, match="no suite 'weekly'"):
        bench.load_suite("weekly")


def _history(values: dict[str, list[float]], nights: int, case="steady", machine="test-machine") -> pd.DataFrame:
    rows = []
    for n in range(nights):
        for metric, vs in values.items():
            rows.append({"night": f"2026-10-{n + 1:02d}T02:00:00Z", "commit": f"c{n:03d}", "machine": machine,
                         "suite": "small", "backend": "sim", "case": case, "metric": metric, "value": vs[n],
                         "status": "met"})
    return pd.DataFrame(rows)


def test_a_step_in_the_newest_nights_is_a_regression_with_its_commit_range():
    rng = np.random.default_rng(1)
    p99 = list(1000 * (1 + 0.03 * rng.standard_normal(20))) + [1250, 1240, 1260]
    tput = list(10 * (1 + 0.03 * rng.standard_normal(23)))
    found, points = history.analyse(_history({"p99_ms": p99, "throughput_rps": tput}, 23))
    (r,) = found
    assert (r.case, r.metric, r.first_bad_night) == ("steady", "p99_ms", "2026-10-21T02:00:00Z")
    assert r.commits == ("c019", "c020") and r.change == pytest.approx(0.25, abs=0.05)
    assert "p99_ms" in r.line() and "c019..c020" in r.line()


def test_noise_alone_and_an_improvement_are_not_regressions():
    rng = np.random.default_rng(2)
    p99 = list(1000 * (1 + 0.03 * rng.standard_normal(20))) + [700, 690, 710]  # faster: good
    found, _ = history.analyse(_history({"p99_ms": p99, "p50_ms": list(100 * (1 + 0.03 * rng.standard_normal(23)))}, 23))
    assert found == []


def test_history_is_appended_atomically_and_read_back(tmp_path):
    rows = _history({"p99_ms": [1.0, 2.0]}, 2).to_dict("records")
    history.append(tmp_path, rows[:1])
    both = history.append(tmp_path, rows[1:])
    assert len(both) == 2 and list(history.read_history(tmp_path)["value"]) == [1.0, 2.0]
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / history.FILE).write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="lacks the columns night"):
        history.read_history(tmp_path)


def test_bench_sim_runs_twice_appends_and_reports_the_history(tmp_path):
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump(SMALL_SUITE))
    hist, out = tmp_path / "history", tmp_path / "night"
    for night in (1, 2):  # the second night replaces the first one's folder
        r = tuner("bench", "--suite", str(suite), "--backend", "sim", "--out", str(out), "--history", str(hist))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "10 figures appended" in r.stdout
        df = history.read_history(hist)
        assert df["night"].nunique() == night and len(df) == 10 * night
    assert set(df["metric"]) == set(bench.METRICS) and set(df["case"]) == {"steady", "burst-hpa"}
    # The simulator is deterministic: both nights measured the same figures.
    first, second = (g.sort_values(["case", "metric"])["value"].to_numpy() for _, g in df.groupby("night"))
    assert np.allclose(first, second, equal_nan=True)
    night = json.loads((out / "bench.json").read_text())
    assert night["regressions"] == [] and set(night["cases"]) == {"sim/steady", "sim/burst-hpa"}
    html = (out / "report.html").read_text()
    assert "History" in html and html.count('class="plot"') == 2 and "<svg" in html


def test_an_injected_regression_is_flagged_with_exit_1(tmp_path):
    rng = np.random.default_rng(3)
    hist = tmp_path / "history"
    df = _history({"p99_ms": list(800 * (1 + 0.02 * rng.standard_normal(12))) + [1000, 1010],
                   "cost_per_hour": [0.5] * 14}, 14)
    history.append(hist, df.to_dict("records"))
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump(SMALL_SUITE))
    r = tuner("bench", "--suite", str(suite), "--analyze-only", "--out", str(tmp_path / "out"), "--history", str(hist))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "regression: sim/steady p99_ms" in r.stdout and "c011..c012" in r.stdout
    night = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert night["regressions"][0]["metric"] == "p99_ms"
    assert "1 regression" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["--backend", "gpu"], "--backend: 'gpu' is not one of sim, real, both"),
    (["--suite", "weekly"], "no suite 'weekly'"),
    (["--backend", "real", "--state-dir", "{tmp}/no-stack"], "needs the stack"),
])
def test_bench_usage_errors(tmp_path, args, message):
    r = tuner("bench", "--out", str(tmp_path / "out"), "--history", str(tmp_path / "h"),
              *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode in (2, 3) and message in r.stderr and "Traceback" not in r.stderr
