"""JUnit XML of verdicts (tuner/junit.py) and `--junit` / `--abort-on-fail` on the commands: the
XML keeps the constraints CI systems' JUnit schema puts on it, and is written whatever the exit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from tuner import cli
from tuner.errors import StackError
from tuner.junit import junit_xml, suite_name
from tuner.result import (AbortInfo, ClauseVerdict, ConfigInfo, ScenarioInfo, TargetResult, TrialResult, Window,
                          load_result, verdict_status, write_result)
from tuner.target import parse_target

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def verdicts(target: str, values: list[float | None]) -> list[ClauseVerdict]:
    return [ClauseVerdict(clause=c, client=v, server=None, passed=c.holds(v), margin=c.margin(v))
            for c, v in zip(parse_target(target).clauses, values)]


def trial(target: str, values: list[float | None] | None, status: str | None = None, backend: str = "real",
          reasons: tuple[str, ...] = (), aborted: AbortInfo | None = None) -> TrialResult:
    clauses = verdicts(target, values) if values is not None else []
    return TrialResult(backend=backend, status=status or verdict_status(clauses), reasons=list(reasons),
                       config=ConfigInfo(path=None, hash="ab" * 32, serve_config={}),
                       scenario=ScenarioInfo(name="burst", duration_s=60.0, seed=1),
                       target=TargetResult(text=target, clauses=clauses),
                       window=Window(start=(start := 0.0 if backend == "sim" else START), end=start + 60.0),
                       timings_s={"check": 1.5, "load": 60.25}, aborted=aborted)


def check_junit(text: str) -> ET.Element:
    """What the commonly used JUnit schemas (Jenkins', the Ant task's) require of a report,
    checked: well-formed, every suite named with its counts, the counts those of its cases, at
    most one outcome per case, numbers and timestamps in their formats."""
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    totals = dict.fromkeys(("tests", "failures", "errors"), 0)
    for suite in root:
        assert suite.tag == "testsuite" and suite.get("name")
        cases = suite.findall("testcase")
        counts = {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
                  "errors": sum(c.find("error") is not None for c in cases),
                  "skipped": sum(c.find("skipped") is not None for c in cases)}
        for key, n in counts.items():
            assert suite.get(key) == str(n), (key, suite.attrib)
        for key in totals:
            totals[key] += counts[key]
        assert re.fullmatch(r"\d+(\.\d+)?", suite.get("time"))
        assert suite.get("timestamp") is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
        assert all(p.tag == "property" and p.get("name") and p.get("value") is not None
                   for p in suite.findall("properties/*"))
        for case in cases:
            assert case.get("name") and case.get("classname")
            outcomes = [c for c in case if c.tag in ("failure", "error", "skipped")]
            assert len(outcomes) <= 1 and all(o.get("message") and o.get("type") for o in outcomes)
        assert [c.tag for c in suite if c.tag not in ("properties", "testcase", "system-out", "system-err")] == []
    assert {k: int(root.get(k)) for k in totals} == totals
    return root


def test_each_clause_is_a_case_a_missed_one_a_failure_with_value_bound_and_margin():
    res = trial("p99<500ms,p95[/rag]<=800ms,error_rate<1%", [0.432e3, 1.2e3, 0.002])
    root = check_junit(junit_xml([(suite_name(res), res)]))
    (suite,) = root
    assert suite.get("name") == "real/burst" and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("errors") == "0" and suite.get("skipped") == "0"
    assert suite.get("time") == "61.750" and suite.get("timestamp") == "2026-01-01T00:00:00"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert [c.get("classname") for c in cases.values()] == ["burst", "burst/rag", "burst"]
    failure = cases["p95[/rag]<=800ms"].find("failure")
    assert failure.get("type") == "missed"
    assert failure.get("message") == "p95[/rag] = 1200ms, bound <=800ms, margin -50.0%"
    assert cases["p99<500ms"].find("system-out").text == "p99 = 432ms, bound <500ms, margin +13.6%"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["status"] == "missed" and props["config_hash"] == "ab" * 32


def test_an_unmeasured_trial_is_an_error_per_clause_with_the_reasons():
    res = trial("p99<500ms,error_rate<1%", [300.0, 0.0], status="unmeasured",
                reasons=("deploy in place", "load generator saturated: CPU 99% > 90%\x1b[0m"))
    (suite,) = check_junit(junit_xml([("real/burst", res)]))
    assert suite.get("errors") == "2" and suite.get("failures") == "0"
    err = suite.find("testcase/error")
    assert err.get("type") == "unmeasured" and "load generator saturated" in err.get("message")
    assert "deploy in place" in err.text and "as measured: p99 = 300ms" in err.text
    assert "\x1b" not in err.text  # a control character XML cannot hold is replaced, the file stays well-formed


def test_a_trial_stopped_before_its_verdict_still_lists_its_clauses():
    res = trial("p99[/rag]<1s,throughput>=5rps", None, status="unmeasured", reasons=("stopped: KeyboardInterrupt",))
    (suite,) = check_junit(junit_xml([("real/burst", res)]))
    assert [c.get("name") for c in suite.findall("testcase")] == ["p99[/rag]<1s", "throughput>=5rps"]
    assert suite.get("errors") == "2" and "KeyboardInterrupt" in suite.find("testcase/error").get("message")


def test_an_aborted_trial_says_when_its_clause_could_no_longer_hold():
    res = trial("p99<100ms,error_rate<1%", [950.0, 0.0], aborted=AbortInfo(clause="p99<100ms", at_s=12.5))
    (suite,) = check_junit(junit_xml([("real/burst", res)]))
    message = suite.find("testcase/failure").get("message")
    assert "could no longer hold from 12.5 s, when the load was stopped" in message
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["aborted"] == "p99<100ms at 12.5 s"


def test_many_suites_add_up_and_a_simulated_one_has_no_wall_clock():
    a = trial("p99<500ms", [100.0], backend="sim")
    b = trial("p99<500ms,error_rate<1%", [900.0, 0.5])
    root = check_junit(junit_xml([("sim/a", a), ("real/b", b)]))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    assert root[0].get("timestamp") is None and root[1].get("timestamp") is not None
    assert check_junit(junit_xml([])).get("tests") == "0"


def test_a_result_json_written_before_the_aborted_field_still_loads(tmp_path):
    res = trial("p99<500ms", [100.0])
    data = json.loads(res.model_dump_json())
    del data["aborted"]
    (tmp_path / "result.json").write_text(json.dumps(data))
    assert load_result(tmp_path / "result.json").aborted is None


# ---- the commands

def test_tuner_sim_writes_junit_and_says_when_abort_on_fail_would_have_stopped_it(tmp_path):
    out, xml = tmp_path / "out", tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "tuner.cli", "sim", "--out", str(out), "--scenario", "steady",
                        "--rate", "4", "--duration", "30", "--warmup", "0", "--target", "p99<1ms,error_rate<50%",
                        "--abort-on-fail", "--abort-grace", "5", "--junit", str(xml)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    res = load_result(out / "result.json")
    assert res.status == "missed" and res.aborted.clause == "p99<1ms" and 5.0 <= res.aborted.at_s < 30.0
    assert any("would have stopped the load" in x for x in res.reasons)
    (suite,) = check_junit(xml.read_text())
    assert suite.get("name") == "sim/steady" and (suite.get("tests"), suite.get("failures")) == ("2", "1")


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """`tuner run` in this process, with the stack and the trial replaced: `outcome(plan)` writes
    the trial's result (and may raise, as a trial that stops on an error does)."""
    from tuner import trial as real_backend

    seen = {}

    def run(*args, outcome):
        def run_repeated(stack, plan, repeat, progress):
            seen["plan"] = plan
            return outcome(plan)

        monkeypatch.setattr(cli, "_running_stack", lambda *a, **k: object())
        monkeypatch.setattr(cli, "_print_live_view", lambda system: None, raising=False)
        monkeypatch.setattr(real_backend, "run_repeated", run_repeated)
        monkeypatch.setattr(sys, "argv", ["tuner", "run", "--out", str(tmp_path / "out"), "--scenario", "steady",
                                          "--duration", "5", "--warmup", "0", "--no-report", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        return info.value.code, seen["plan"]

    return run


def _written(plan, res: TrialResult) -> TrialResult:
    write_result(plan.out / "result.json", res)
    return res


def test_tuner_run_writes_junit_when_the_target_is_missed(fake_run, tmp_path):
    code, plan = fake_run("--target", "p99<100ms", "--junit", str(tmp_path / "j.xml"), "--abort-on-fail",
                          "--abort-grace", "7", outcome=lambda plan: _written(plan, trial("p99<100ms", [250.0])))
    assert code == 1
    (suite,) = check_junit((tmp_path / "j.xml").read_text())
    assert suite.get("failures") == "1"
    # the option reached the generators' arguments, and loadgen's own check accepted them
    args = plan.generator_args()
    assert args[args.index("--abort-grace") + 1] == "7"
    assert json.loads(args[args.index("--abort-when") + 1])[0]["clause"] == "p99<100ms"


@pytest.mark.parametrize("raises", [False, True], ids=["judged-unmeasured", "stopped-on-an-error"])
def test_tuner_run_writes_junit_when_the_trial_is_unmeasured(fake_run, tmp_path, raises):
    def outcome(plan):
        res = _written(plan, trial("p99<100ms", None, status="unmeasured", reasons=("the stack died during the load",)))
        if raises:
            raise StackError("the stack died during the load")
        return res

    code, _ = fake_run("--target", "p99<100ms", "--junit", str(tmp_path / "j.xml"), outcome=outcome)
    assert code == 3
    (suite,) = check_junit((tmp_path / "j.xml").read_text())
    assert suite.get("errors") == "1" and "stack died" in suite.find("testcase/error").get("message")


def test_tuner_bench_writes_a_suite_per_case(tmp_path):
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump({"name": "small", "sim": {"duration_s": 20, "cases": [
        {"name": "met", "scenario": "steady", "args": ["--rate", "2"], "target": "p99<5s"},
        {"name": "missed", "scenario": "steady", "args": ["--rate", "2"], "target": "p99<1ms,error_rate<50%"}]}}))
    xml = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "tuner.cli", "bench", "--suite", str(suite), "--backend", "sim",
                        "--out", str(tmp_path / "night"), "--history", str(tmp_path / "history"), "--no-report",
                        "--junit", str(xml)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr  # a bench's exit is about regressions; the verdicts are in the XML
    root = check_junit(xml.read_text())
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in root] == [("sim/met", "1", "0"),
                                                                                  ("sim/missed", "2", "1")]
