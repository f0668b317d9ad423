"""`tuner sweep`: goodput and TPOT on hand-made records, the ladder and its options, the search
on a fake backend (the boundary it finds, the trials it spends), sweep.json from fake trials,
the command end to end on the simulator, and its real branch with the stack stood in for."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.record_rows import RecordRows
from tuner import sweep as sw
from tuner.errors import StackError, UsageError
from tuner.goodput import good_mask, load_figures, tpot_ms
from tuner.plan import make_plan, result_header
from tuner.result import write_result
from tuner.target import parse_target

ROOT = Path(__file__).resolve().parents[1]


def records():
    """Eight arrivals a second apart, one of each kind the goodput tells apart."""
    r = RecordRows(t0=1000.0, step_s=1.0, send_delay_s=0.0)
    r.add("/rag", 400, status=200, ttft_ms=100.0, output_tokens=31)       # good: TPOT 10 ms
    r.add("/rag", 600, status=200, ttft_ms=100.0, output_tokens=11)       # too slow (TPOT 50 ms)
    r.add("/rag", 450, status=200, ttft_ms=350.0, output_tokens=2)        # first token too late
    r.add("/rag", 300, status=200, degraded=True)                          # degraded: not good
    r.add("/predict", 50, status=200)                                      # good: no TTFT, no bound on it
    r.add("/predict", 20, status=503)                                      # rejected
    r.add("/v1/completions", 200, status=200, ttft_ms=80.0, output_tokens=1)  # good: one token, no TPOT
    r.add("/predict", None, dropped=True)                                  # never sent
    return r.frame()


def test_tpot_is_decode_time_per_token_after_the_first():
    tpot = tpot_ms(records())
    assert tpot[0] == pytest.approx((400 - 100) / 30) and tpot[1] == pytest.approx(50.0)
    assert tpot[2] == pytest.approx(100.0)  # two tokens: one gap
    assert all(math.isnan(x) for x in tpot[3:])  # not streamed, one token, never sent


def test_a_good_request_succeeded_and_met_every_latency_bound():
    df = records()
    assert list(good_mask(df, parse_target("p99<500ms,ttft_p99<300ms"))) == [True, False, False, False, True, False, True, False]
    # a bound narrowed to a route leaves the others alone; error_rate judges the run, not a request
    assert list(good_mask(df, parse_target("p99[/predict]<30ms,error_rate<1%"))) == [True, True, True, False, False, False, True, False]
    # an ITL bound holds each request to its TPOT, as vLLM's per-request `tpot` objective does
    assert list(good_mask(df, parse_target("itl_p99<60ms"))) == [True, True, False, False, True, False, True, False]


def test_load_figures_count_per_second_of_the_window():
    f = load_figures(records(), parse_target("p99<500ms,ttft_p99<300ms"), window_s=4.0)
    assert (f.arrivals, f.ok, f.good) == (8, 6, 3)  # the degraded answer is ok (throughput), not good
    assert (f.offered_rps, f.throughput_rps, f.goodput_rps) == (2.0, 1.5, 0.75)
    assert f.error_rate == pytest.approx(2 / 8)
    assert f.output_tokens_per_s == pytest.approx((31 + 11 + 2 + 1) / 4)
    assert f.latency_p50_ms == pytest.approx(300.0)  # the seven sent, failures included
    assert f.ttft_p50_ms == pytest.approx(100.0) and f.tpot_p99_ms == pytest.approx(99.0, rel=0.01)


def test_load_figures_of_no_records_are_empty():
    f = load_figures(records().iloc[:0], parse_target("p99<1s"), window_s=10.0)
    assert f.arrivals == 0 and f.goodput_rps is None and f.latency_p99_ms is None


def test_the_ladder_is_geometric_and_the_default_doubles():
    assert sw.ladder(None, None, None, None) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert sw.ladder(None, 2.0, 20.0, 3) == [2.0, 6.32, 20.0]
    assert sw.ladder("8,2,4,4", None, None, None) == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("args, message", [
    (("2,x", None, None, None), "--rates: '2,x' is not a comma-separated list of numbers"),
    (("2,0", None, None, None), "--rates: every rate must be a finite number above 0 (got 0)"),
    (("2,inf", None, None, None), "--rates: every rate must be a finite number above 0 (got inf)"),
    (("2", 1.0, None, None), "--rates: give either --rates or --min-rate/--max-rate/--steps, not both"),
    ((None, -1.0, None, None), "--min-rate: must be a finite number above 0 (got -1)"),
    ((None, 8.0, 4.0, None), "--min-rate: must be below --max-rate (got 8 and 4)"),
    ((None, None, None, 1), "--steps: must be between 2 and 50 (got 1)"),
    ((None, None, None, 51), "--steps: must be between 2 and 50 (got 51)"),
])
def test_bad_ladders_are_one_line_usage_errors(args, message):
    with pytest.raises(UsageError) as e:
        sw.ladder(*args)
    assert str(e.value) == message


def fake_backend(capacity: float, unmeasured: float | None = None):
    """A run function whose system meets the target up to `capacity`; the rates it was asked for."""
    asked = []

    def run(rate, phase):
        asked.append((rate, phase))
        status = "unmeasured" if rate == unmeasured else "met" if rate <= capacity else "missed"
        return sw.RatePoint(rate=rate, phase=phase, folder=sw.rate_folder(rate), status=status)
    return run, asked


def test_the_search_climbs_to_the_first_miss_then_bisects_to_the_boundary():
    run, asked = fake_backend(capacity=5.3)
    found = sw.search([1, 2, 4, 8, 16], run, refine=4)
    assert asked == [(1, "ladder"), (2, "ladder"), (4, "ladder"), (8, "ladder"),
                     (6, "bisect"), (5, "bisect"), (5.5, "bisect"), (5.25, "bisect")]
    assert found.skipped == [16] and "between 5.25/s (met) and 5.5/s (missed)" in found.reason


def test_the_bisection_stops_once_the_bracket_is_within_the_noise():
    run, asked = fake_backend(capacity=5.3)
    sw.search([1, 2, 4, 8, 16], run, refine=10)
    assert len(asked) == 8  # 5.25 and 5.5 are under 5 % apart: no further trial


@pytest.mark.parametrize("capacity, unmeasured, tried, reason", [
    (0.5, None, [1.0], "the lowest rate, 1/s, missed"),
    (100.0, None, [1.0, 2.0, 4.0], "the target held at every rate up to 4/s"),
    (100.0, 2.0, [1.0, 2.0], "2/s could not be measured"),
])
def test_no_bisection_without_a_bracket(capacity, unmeasured, tried, reason):
    run, asked = fake_backend(capacity, unmeasured)
    found = sw.search([1.0, 2.0, 4.0], run)
    assert asked == [(r, "ladder") for r in tried] and reason in found.reason


def fake_trial(capacity: float, unmeasured: float | None = None):
    """A trial function writing what a backend writes: records whose latency grows with the
    rate, and result.json; the unmeasured rate raises StackError after writing it."""
    def run(plan):
        rate = float(plan.scenario_args[-1])
        rows = RecordRows(t0=0.0, step_s=1.0 / rate, send_delay_s=0.0)
        for _ in range(int(rate * plan.duration_s)):
            rows.add("/predict", 100 * rate, status=200)
        plan.out.mkdir(parents=True)
        rows.frame().drop(columns=["latency_ms", "service_ms", "lag_ms"]).to_parquet(plan.out / "records.parquet")
        result = result_header(plan, "sim")
        result.status = "unmeasured" if rate == unmeasured else "met" if rate <= capacity else "missed"
        result.files["records"] = "records.parquet"
        write_result(plan.out / "result.json", result)
        if rate == unmeasured:
            raise StackError("the stack died")
        return result
    return run


def plan_in(out: Path):
    return make_plan(config=None, scenario="steady", target="p99<550ms", duration_s=10.0, out=out, check=False,
                     serve_config={"applications": []})


def test_sweep_json_holds_every_rate_and_the_highest_that_met(tmp_path):
    seen = []
    result = sw.run_sweep(plan_in(tmp_path), [1.0, 4.0, 8.0], "sim", fake_trial(capacity=5.0), refine=2, on_point=seen.append)
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["status"] == "found" and result.exit_code == 0 and data["kind"] == "sweep"
    assert [p["rate"] for p in data["points"]] == [1.0, 4.0, 8.0, 6.0, 5.0] == [p.rate for p in seen]
    assert data["best_rate"] == 5.0 and data["best_goodput_rps"] == pytest.approx(5.0)
    four = data["points"][1]
    assert (four["folder"], four["arrivals"], four["goodput_rps"], four["latency_p99_ms"]) == ("rate-4", 40, 4.0, pytest.approx(400))
    assert data["points"][3]["goodput_rps"] == 0.0  # 600 ms each: answered, none within 550 ms
    assert (tmp_path / "rate-6" / "result.json").is_file()


def test_an_unmeasured_trial_ends_the_sweep_with_exit_3_and_keeps_what_was_found(tmp_path):
    result = sw.run_sweep(plan_in(tmp_path), [1.0, 2.0, 4.0], "real", fake_trial(capacity=5.0, unmeasured=2.0))
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert result.exit_code == 3 and data["status"] == "unmeasured" and data["best_rate"] == 1.0
    assert [p["status"] for p in data["points"]] == ["met", "unmeasured"] and data["skipped"] == [4.0]


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", "sweep", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_sweep_on_the_simulator_finds_the_highest_rate_that_meets_the_target(tmp_path):
    out = tmp_path / "sweep"
    r = tuner("--backend", "sim", "--scenario", "steady", "--target", "p99<1s", "--rates", "4,16,32", "--refine", "1",
              "--duration", "20", "--warmup", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert [(p["rate"], p["phase"], p["status"]) for p in data["points"]] == [
        (4.0, "ladder", "met"), (16.0, "ladder", "met"), (32.0, "ladder", "missed"), (24.0, "bisect", "missed")]
    assert data["best_rate"] == 16.0 and data["status"] == "found" and data["backend"] == "sim"
    for p in data["points"]:
        trial = json.loads((out / p["folder"] / "result.json").read_text())
        assert trial["status"] == p["status"] and trial["scenario"]["options"][-2:] == ["--rate", f"{p['rate']:g}"]
        assert 0 < p["goodput_rps"] <= p["throughput_rps"] <= p["offered_rps"]
        assert p["ttft_p50_ms"] > 0 and p["tpot_p99_ms"] > 0 and p["output_tokens_per_s"] > 0
    assert data["points"][2]["failed"] == ["p99<1s"] and data["points"][2]["goodput_rps"] < data["points"][2]["throughput_rps"]
    for header in ("goodput/s", "TTFT p99", "TPOT p50", "verdict"):
        assert header in r.stdout
    assert "highest sustainable rate: 16/s" in r.stdout


def test_sweep_exits_1_when_the_lowest_rate_misses(tmp_path):
    r = tuner("--backend", "sim", "--target", "p99<1s", "--rates", "48,64", "--duration", "20", "--warmup", "5",
              "--out", str(tmp_path / "sweep"))
    assert r.returncode == 1, r.stderr
    data = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert data["status"] == "none" and data["skipped"] == [64.0] and data["best_rate"] is None
    assert "no rate met the target" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--rates", "2,x"], "--rates: '2,x' is not a comma-separated list of numbers"),
    (["--min-rate", "8", "--max-rate", "4"], "--min-rate: must be below --max-rate (got 8 and 4)"),
    (["--steps", "1"], "--steps: must be between 2 and 50 (got 1)"),
    (["--rate", "3"], "--rate: the sweep sets the scenario's rate"),
    (["--backend", "k8s"], "--backend: 'k8s' is not one of real, sim"),
    (["--target", "p99<1s,throughput>=5rps"], "--target: 'throughput>=5rps' is a lower bound on throughput"),
])
def test_bad_options_exit_2_with_one_line_naming_the_option(tmp_path, args, message):
    r = tuner("--backend", "sim", "--target", "p99<1s", "--out", str(tmp_path / "sweep"), *args)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert message in lines[0] and not (tmp_path / "sweep").exists()


def test_the_real_backend_runs_each_rate_as_a_tuner_run_trial(tmp_path, monkeypatch):
    """The command's real branch, with the stack and `tuner.trial.run_repeated` stood in for."""
    from typer.testing import CliRunner

    from tuner import cli

    ran = []

    def run_repeated(stack, plan, count, report):
        ran.append((stack, count, plan.scenario_info["expected_arrivals"]))
        return fake_trial(capacity=3.0)(plan)

    monkeypatch.setattr("tuner.stack.running_stack", lambda *a, **k: "the stack")
    monkeypatch.setattr("tuner.trial.run_repeated", run_repeated)
    r = CliRunner().invoke(cli.app, ["sweep", "--target", "p99<550ms", "--rates", "2,4", "--refine", "0",
                                     "--duration", "10", "--out", str(tmp_path / "sweep")])
    assert r.exit_code == 0, r.output
    assert ran == [("the stack", 1, 20.0), ("the stack", 1, 40.0)]  # each trial's header from its own rate
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["best_rate"] == 2.0
