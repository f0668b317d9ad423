"""`--abort-when` in real Locust runs against the echo server: a target missed early stops the
run long before its duration (in one process and with workers), one that holds runs whole."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_loadgen import echo, locust  # noqa: F401 - `echo` is a fixture, found by its name here
from tuner.abort import abort_spec
from tuner.result import ConfigInfo, ScenarioInfo, TargetResult, TrialResult
from tuner.trial import _keep_client_side
from tuner.target import parse_target

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("workers", [[], ["--processes", "2"]], ids=["local", "workers"])
def test_a_target_missed_early_stops_the_run_after_the_grace(echo, tmp_path, workers):  # noqa: F811
    host = echo("--delay-ms", "200")  # every answer takes 200 ms: p99<50ms is lost with the first few
    spec = abort_spec(parse_target("p99<50ms,error_rate<50%"), 30.0)
    t0 = time.monotonic()
    run = locust("steady", host, tmp_path, "--rate", "20", "-t", "30s", "--mix", "predict=1",
                 "--abort-when", spec, "--abort-grace", "3", *workers, timeout=60)
    wall = time.monotonic() - t0
    assert run.rc == 0, run.output[-3000:]
    aborted = run.summary["aborted"]
    assert aborted["clause"] == "p99<50ms" and 3.0 <= aborted["at_s"] < 8.0, aborted
    assert wall < 20, wall
    assert "ABORTED at" in run.output
    # only the arrivals due before the stop were sent, each with its record: none lost
    assert 40 <= len(run.records) < 200
    assert run.records["scheduled"].max() - run.summary["epoch"] <= aborted["at_s"] + 0.5
    assert run.summary["generator_health"]["lost_records"] == 0 and not run.records["unfinished"].any()
    # the trial reads it from the client summary: the window ends at the abort, and the reason says why
    result = TrialResult(backend="real", status="unmeasured", config=ConfigInfo(path=None, hash="", serve_config={}),
                         scenario=ScenarioInfo(name="steady", duration_s=30.0),
                         target=TargetResult(text="p99<50ms", clauses=[]))
    run_dir = next(tmp_path.glob("*/summary.json")).parent
    (tmp_path / "trial").mkdir()
    _keep_client_side(result, tmp_path / "trial", run.rc, run_dir, tmp_path / "log")
    assert result.aborted.clause == "p99<50ms"
    assert result.window.end - result.window.start == pytest.approx(aborted["at_s"])
    assert result.reasons == [f"aborted at {aborted['at_s']:g} s: p99<50ms could no longer hold, "
                              f"whatever the rest of the run did"]


def test_a_target_that_holds_runs_to_its_end(echo, tmp_path):  # noqa: F811
    spec = abort_spec(parse_target("p99<2s,error_rate<1%,throughput>=15rps"), 4.0)
    run = locust("steady", echo(), tmp_path, "--rate", "20", "-t", "4s", "--arrival", "deterministic", "--mix",
                 "predict=1", "--abort-when", spec, timeout=60)
    assert run.rc == 0, run.output[-3000:]
    assert run.summary["aborted"] is None and "ABORTED" not in run.output
    assert len(run.records) >= 80 and run.summary["generator_health"]["lost_records"] == 0  # every arrival was sent
