"""JUnit XML of trial verdicts, for CI systems (pure): `tuner run/sim/bench --junit FILE`.

One <testsuite> per trial (a bench: per case), one <testcase> per target clause, named by the
clause's text, its class the scenario and route (`burst/rag`). A clause met passes; one missed
is a <failure> with the measured value, the bound and the margin; when the trial could not be
measured every clause is an <error> with the reasons (no verdict stands on such a run).
Nothing is skipped. A suite's `time` is the trial's wall time (its phases); its `timestamp` the
load window's start, in UTC, for real trials (a simulated window has no wall clock).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from tuner.result import TrialResult
from tuner.target import Clause, parse_target

# What XML 1.0 cannot hold, even escaped: an error message quoting a raw response might carry it.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _describe(clause: Clause, value: float | None, margin: float | None, server: float | None) -> str:
    bound = f"bound {clause.op}{clause.display(clause.threshold)}"
    if value is None:
        return f"{clause.name}: no value measured ({bound})"
    seen = f", server {clause.display(server)}" if server is not None else ""
    return f"{clause.name} = {clause.display(value)}, {bound}, margin {margin:+.1%}{seen}"


def trial_suite(name: str, result: TrialResult) -> ET.Element:
    """The trial's verdicts as one <testsuite>."""
    verdicts = {v.clause.text: v for v in result.target.clauses}
    # A trial stopped before its verdict has no clause verdicts: its target still names the cases.
    clauses = [v.clause for v in result.target.clauses] or list(parse_target(result.target.text).clauses)
    unmeasured = result.status == "unmeasured"
    suite = ET.Element("testsuite", name=name)
    props = ET.SubElement(suite, "properties")
    for key, value in (("status", result.status), ("backend", result.backend), ("scenario", result.scenario.name),
                       ("config_hash", result.config.hash), ("duration_s", f"{result.scenario.duration_s:g}"),
                       ("seed", str(result.scenario.seed))):
        ET.SubElement(props, "property", name=key, value=value)
    if result.aborted is not None:
        ET.SubElement(props, "property", name="aborted", value=f"{result.aborted.clause} at {result.aborted.at_s:g} s")
    failures = errors = 0
    for clause in clauses:
        case = ET.SubElement(suite, "testcase", name=clause.text, classname=result.scenario.name + (clause.route or ""))
        v = verdicts.get(clause.text)
        told = _describe(clause, v.client, v.margin, v.server) if v is not None else None
        if unmeasured:
            errors += 1
            reasons = result.reasons or ["no reason recorded"]
            err = ET.SubElement(case, "error", type="unmeasured", message=_clean(f"trial unmeasured: {reasons[-1]}"))
            err.text = _clean("\n".join(reasons + ([f"as measured: {told}"] if told else [])))
        elif not v.passed:
            failures += 1
            stopped = (f"; it could no longer hold from {result.aborted.at_s:g} s, when the load "
                       f"{'would have been' if result.backend == 'sim' else 'was'} stopped"
                       if result.aborted is not None and result.aborted.clause == clause.text else "")
            fail = ET.SubElement(case, "failure", type="missed", message=_clean(told + stopped))
            fail.text = _clean(told + stopped)
        else:
            ET.SubElement(case, "system-out").text = _clean(told)
    suite.set("tests", str(len(clauses)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", f"{sum(result.timings_s.values()):.3f}")
    if result.backend == "real" and result.window is not None:
        suite.set("timestamp", datetime.fromtimestamp(result.window.start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return suite


def junit_xml(trials: list[tuple[str, TrialResult]]) -> str:
    """A JUnit XML document of (suite name, result) pairs, with their totals on <testsuites>."""
    root = ET.Element("testsuites", name="tuner")
    suites = [trial_suite(name, result) for name, result in trials]
    root.extend(suites)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key)) for s in suites)))
    root.set("time", f"{sum(float(s.get('time')) for s in suites):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def suite_name(result: TrialResult) -> str:
    """A trial's suite: its backend and scenario (`real/burst`)."""
    return f"{result.backend}/{result.scenario.name}"
