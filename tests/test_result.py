"""result.json: client figures from a loadgen summary, the atomic write and its round trip,
and how repeats of a trial combine (medians, re-judged verdict, chosen repeat, spread)."""

from __future__ import annotations

import os

import json
import statistics

import numpy as np
import pytest

from loadgen import summary
from tuner import result as res
from tuner.cost import Resources, trial_cost
from tuner.prices_file import load_prices
from tuner.result import (ClauseVerdict, ConfigInfo, Percentiles, RouteResult, ScenarioInfo, TargetResult,
                          TrialResult, Window, combine_repeats, load_result, route_from_summary, spread, write_result)
from tests.record_rows import RecordRows
from tuner.target import parse_target

T0 = 2000.0


def _rows() -> RecordRows:
    rows = RecordRows(T0, 0.25, 0.002)
    add = rows.add
    for i, ms in enumerate([120.0, 80.0, 300.0, 95.0, 410.0, 150.0]):
        add("/rag", ms, status=200, **(dict(ttft_ms=20.0 + i, itl_ms=[1.0, 2.0 * i]) if i < 3 else {}))
    for ms in [10.0, 12.0, 9.0]:
        add("/predict", ms, status=200)
    add("/predict", 30.0, status=503)
    add("/predict", 25.0, error="ReadTimeout")
    add("/predict", dropped=True, error="dropped: 4 requests in flight")
    add("/predict", dropped=True, error="dropped: 4 requests in flight")
    add("/rag", 4000.0, unfinished=True, error="unfinished at stop")
    return rows


@pytest.fixture(scope="module")
def summ():
    return summary.summarize(_rows().frame())


# ---- route_from_summary ----

@pytest.mark.parametrize("name,counts,error_rate", [
    # arrivals, sent, ok, errors, dropped, unfinished
    ("overall", (14, 12, 9, 2, 2, 1), 5 / 14),
    ("/predict", (7, 5, 3, 2, 2, 0), 4 / 7),
    ("/rag", (7, 7, 6, 0, 0, 1), 1 / 7),
])
def test_route_from_summary(summ, name, counts, error_rate):
    g = summ["overall"] if name == "overall" else summ["routes"][name]
    r = route_from_summary(g)
    assert isinstance(r, RouteResult)
    assert (r.arrivals, r.sent, r.ok, r.errors, r.dropped, r.unfinished) == counts
    assert r.error_rate == pytest.approx(error_rate)
    assert r.error_rate == pytest.approx((r.errors + r.unfinished + r.dropped) / r.arrivals)
    assert r.throughput_rps == pytest.approx(r.ok / summ["span_s"]) and r.offered_rps == g["offered_rps"]
    for field, prefix in (("latency_ms", "latency_ms"), ("service_ms", "service_ms"), ("ttft_ms", "ttft_ms"),
                          ("itl_ms", "itl_ms")):
        p = getattr(r, field)
        assert (p.p50, p.p90, p.p95, p.p99, p.max, p.mean) == (
            g[f"{prefix}_p50"], g[f"{prefix}_p90"], g[f"{prefix}_p95"], g[f"{prefix}_p99"],
            g[f"{prefix}_max"], g[f"{prefix}_mean"])
        assert p.p99_9 == g[f"{prefix}_p99.9"]
    assert r.top_errors == g["top_errors"]
    assert r.server_latency_ms is None


def test_route_from_summary_values(summ):
    rag = route_from_summary(summ["routes"]["/rag"])
    sent = [120.0, 80.0, 300.0, 95.0, 410.0, 150.0, 4000.0]
    assert rag.latency_ms.p99_9 == pytest.approx(np.percentile(sent, 99.9), abs=1e-6)
    assert rag.latency_ms.max == pytest.approx(4000.0, abs=1e-6)
    assert rag.ttft_ms.p50 == pytest.approx(21.0)
    assert rag.itl_ms.max == pytest.approx(4.0)
    predict = route_from_summary(summ["routes"]["/predict"])
    assert predict.top_errors == {"HTTP 503": 1, "ReadTimeout": 1}  # of the requests sent
    assert predict.ttft_ms == Percentiles()
    dumped = json.loads(rag.model_dump_json())
    assert "p99.9" in dumped["latency_ms"] and "p99_9" not in dumped["latency_ms"]


def test_route_from_summary_without_arrivals():
    empty = summary.summarize(RecordRows(T0, 1, 0).frame())
    r = route_from_summary(empty["overall"])
    assert r.arrivals == 0 and r.error_rate is None and r.latency_ms.p99 is None


# ---- write / load ----

def full_result(summ) -> TrialResult:
    target = parse_target("p99<500ms, error_rate<1%")
    values = [410.0, 0.02]
    verdicts = [ClauseVerdict(clause=c, client=v, server=v * 0.9, passed=c.holds(v), margin=c.margin(v))
                for c, v in zip(target.clauses, values)]
    replicas = {"rag/RAGService": [(0.0, 1.0), (2.5, 2.0)]}
    cost = trial_cost(replicas, {"rag/RAGService": Resources(cpus=0.5)}, load_prices(), 0.0, 60.0)
    return TrialResult(
        backend="real", status="missed", reasons=["a note"],
        config=ConfigInfo(path="target_app/serve_config.yaml", hash="abc", serve_config={"applications": []}),
        scenario=ScenarioInfo(name="burst", options=["--rate", "2"], duration_s=60.0, expected_arrivals=120.0),
        target=TargetResult(text=target.text, clauses=verdicts),
        window=Window(start=T0, end=T0 + 60.0, drained=T0 + 61.5),
        overall=route_from_summary(summ["overall"]),
        routes={r: route_from_summary(g) for r, g in summ["routes"].items()},
        deployments={"rag/RAGService": res.DeploymentResult(replicas_min=1, replicas_max=2,
                                                            processing_ms=Percentiles(p99=12.5, **{"p99.9": 20.0}))},
        cost=cost, replicas=replicas, timings_s={"load": 60.2}, versions={"ray": "2.60.0"},
        files={"records": "records.parquet"})


def test_write_then_load_round_trips(tmp_path, summ):
    r = full_result(summ)
    path = tmp_path / "runs" / "trial-1" / "result.json"
    write_result(path, r)
    back = load_result(path)
    assert back == r
    assert back.exit_code == 1
    assert back.deployments["rag/RAGService"].processing_ms.p99_9 == 20.0
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and raw["kind"] == "trial"
    assert raw["overall"]["latency_ms"]["p99.9"] == r.overall.latency_ms.p99_9


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, summ, monkeypatch):
    path = tmp_path / "result.json"
    first = full_result(summ)
    write_result(path, first)
    second = first.model_copy(update={"status": "met"})
    write_result(path, second)
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert load_result(path).status == "met"

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_result(path, first)
    assert load_result(path) == second  # the old file is intact: the new one went to a temp file


# ---- combine_repeats ----

TARGET = parse_target("p99[/rag]<500ms, error_rate<1%")


def trial(overall_p99: float | None, rag_p99: float | None, err: float | None, *, status: str | None = None,
          server_rag_p99: float | None = None, tag: str = "", partial: bool = False,
          reasons: list[str] | None = None, throughput: float = 10.0) -> TrialResult:
    verdicts = [ClauseVerdict(clause=c, client=v, server=s, passed=c.holds(v), margin=c.margin(v))
                for c, v, s in zip(TARGET.clauses, (rag_p99, err), (server_rag_p99, None))]
    overall = None if overall_p99 is None else RouteResult(
        arrivals=100, sent=100, ok=100, errors=0, dropped=0, unfinished=0, offered_rps=10.0,
        throughput_rps=throughput, error_rate=0.0, latency_ms=Percentiles(p50=overall_p99 / 3, p99=overall_p99),
        service_ms=Percentiles(), ttft_ms=Percentiles(), itl_ms=Percentiles(),
        server_latency_ms=Percentiles(p99=overall_p99 * 0.8))
    return TrialResult(
        backend="sim", status=status or res.verdict_status(verdicts), partial=partial, reasons=reasons or [],
        config=ConfigInfo(path=None, hash=f"hash-{tag}", serve_config={}),
        scenario=ScenarioInfo(name="steady", duration_s=30.0),
        target=TargetResult(text=TARGET.text, clauses=verdicts), overall=overall,
        files={"records": "records.parquet", "log": "locust.log"})


NAMES = ["r1", "r2", "r3"]


def test_combine_takes_medians_and_the_median_p99_repeat():
    runs = [
        trial(300.0, 600.0, 0.02, server_rag_p99=550.0, tag="1"),  # missed
        trial(100.0, 400.0, 0.0, server_rag_p99=380.0, tag="2"),
        trial(200.0, 450.0, 0.005, tag="3"),
    ]
    out = combine_repeats(runs, NAMES)
    rag, err = out.target.clauses
    assert rag.client == 450.0 and rag.passed and rag.margin == pytest.approx(0.1)
    assert rag.server == pytest.approx((550.0 + 380.0) / 2)  # median of the measured ones
    assert err.client == 0.005 and err.passed and err.margin == pytest.approx(0.5)
    assert out.status == "met" and out.exit_code == 0
    # chosen: the repeat with the median overall client p99 (r3: 200 among 100, 200, 300)
    assert out.repeat.chosen == "r3" and out.config.hash == "hash-3"
    assert out.files == {"records": "r3/records.parquet", "log": "r3/locust.log"}
    assert out.repeat.count == 3 and out.repeat.runs == NAMES
    sp = out.repeat.spread
    assert sp["client p99"].values == [300.0, 100.0, 200.0] and sp["client p99"].median == 200.0
    assert sp["client p99"].cv == pytest.approx(100.0 / 200.0)  # sample stdev / mean
    assert sp["target p99[/rag]"].median == 450.0
    assert sp["target p99[/rag]"].cv == pytest.approx(statistics.stdev([600, 400, 450]) / statistics.mean([600, 400, 450]))
    assert sp["target p99[/rag] (server)"].values == [550.0, 380.0, None]
    assert sp["target error_rate"].values == [0.02, 0.0, 0.005]
    assert sp["server p99"].median == pytest.approx(160.0)
    assert sp["cost"].values == [None, None, None] and sp["cost"].median is None
    # the inputs are untouched
    assert runs[2].repeat is None and runs[2].files["records"] == "records.parquet"


def test_combine_rejudges_the_verdict_on_medians():
    runs = [
        trial(100.0, 600.0, 0.0, tag="1"),
        trial(200.0, 450.0, 0.0, tag="2"),  # the chosen repeat met the target on its own
        trial(300.0, 700.0, 0.0, tag="3"),
    ]
    assert runs[1].status == "met"
    out = combine_repeats(runs, NAMES)
    assert out.repeat.chosen == "r2"
    rag = out.target.clauses[0]
    assert rag.client == 600.0 and not rag.passed and rag.margin == pytest.approx(-0.2)
    assert out.status == "missed"


def test_combine_with_an_aborted_repeat_misses_even_where_the_medians_hold():
    from tuner.result import AbortInfo

    runs = [trial(100.0, 400.0, 0.0, tag="1"), trial(200.0, 450.0, 0.0, tag="2"), trial(300.0, 420.0, 0.0, tag="3")]
    runs[2] = runs[2].model_copy(update={"aborted": AbortInfo(clause="p99[/rag]<500ms", at_s=12.0), "status": "missed"})
    out = combine_repeats(runs, NAMES)
    assert out.target.clauses[0].passed  # the median alone would have met it
    assert out.status == "missed" and out.aborted.clause == "p99[/rag]<500ms" and out.exit_code == 1


def test_combine_with_an_unmeasured_repeat_is_unmeasured():
    runs = [
        trial(100.0, 400.0, 0.0, tag="1"),
        trial(None, None, None, status="unmeasured", tag="2", partial=True,
              reasons=["a note", "no replica series from Prometheus for rag/X"]),
        trial(300.0, 420.0, 0.0, tag="3"),
    ]
    out = combine_repeats(runs, NAMES)
    assert out.status == "unmeasured" and out.exit_code == 3
    assert out.reasons == ["r2: no replica series from Prometheus for rag/X"]
    assert out.partial is True
    assert out.repeat.chosen == "r1"  # among the measured ones, the lower median of two
    assert out.repeat.spread["client p99"].values == [100.0, None, 300.0]
    assert out.target.clauses[0].client == 410.0 and out.target.clauses[0].passed


def test_combine_when_nothing_was_measured():
    runs = [trial(None, None, None, status="unmeasured", tag=t, reasons=[f"broke {t}"]) for t in "12"]
    out = combine_repeats(runs, ["a", "b"])
    assert out.status == "unmeasured" and out.repeat.chosen == "b"
    assert out.reasons == ["a: broke 1", "b: broke 2"]
    assert out.target.clauses[0].client is None and not out.target.clauses[0].passed


def test_combine_of_one_repeat_keeps_its_verdict():
    out = combine_repeats([trial(200.0, 600.0, 0.0, tag="x")], ["only"])
    assert out.status == "missed" and out.repeat.chosen == "only"
    assert out.repeat.spread["client p99"].cv is None


# ---- spread ----

@pytest.mark.parametrize("values,median,cv", [
    ([1.0, 2.0, 3.0], 2.0, 0.5),
    ([1.0, None, 3.0], 2.0, statistics.stdev([1, 3]) / 2.0),
    ([10.0, 10.0, 10.0], 10.0, 0.0),
    ([5.0], 5.0, None),
    ([5.0, None], 5.0, None),
    ([None, None], None, None),
    ([], None, None),
    ([0.0, 0.0], 0.0, None),   # mean 0: no coefficient of variation
    ([-2.0, -4.0], -3.0, statistics.stdev([-2, -4]) / 3.0),
])
def test_spread(values, median, cv):
    s = spread(values)
    assert s.values == values and s.median == median
    if cv is None:
        assert s.cv is None
    else:
        assert s.cv == pytest.approx(cv)


# ---- run_repeated ----

def test_repeats_end_early_once_settled_and_combine_the_runs_made(tmp_path, monkeypatch):
    """A repeat that settles the verdict ends the rest: the result combines the runs made and
    names only their folders; without `settled` every repeat runs."""
    from dataclasses import dataclass
    from pathlib import Path

    from tuner import trial as trial_mod

    @dataclass(frozen=True)
    class Plan:
        out: Path

    made = []

    def run_trial(system, plan, report):
        made.append(plan.out.name)
        return trial(700.0, 600.0, 0.0, tag=plan.out.name)  # /rag p99 600 ms: over its 500 ms bound

    monkeypatch.setattr(trial_mod, "run_trial", run_trial)
    out = trial_mod.run_repeated(None, Plan(tmp_path / "a"), 3, settled=lambda runs, n: len(runs) == 2)
    assert made == ["repeat-1", "repeat-2"] and out.repeat.count == 2
    assert res.load_result(tmp_path / "a" / "result.json").repeat.runs == ["repeat-1", "repeat-2"]
    made.clear()
    trial_mod.run_repeated(None, Plan(tmp_path / "b"), 3)
    assert made == ["repeat-1", "repeat-2", "repeat-3"]
