"""Locust's web UI and reports on open-loop runs against the local echo server: the web UI's
open-loop tab and page (offered against achieved rate, drops, in flight; no user count), the
line that tells Locust's approximated tables from the exact one, and a trial's HTML report."""

from __future__ import annotations

import json
import re
import sys
import time

import httpx
import pytest

from tests.e2e.test_loadgen import LOCUST, start, stop, wait_port
from tuner.ports import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def echo_slow():
    """An echo server answering after 300 ms: two requests in flight serve about 6.7 requests/s."""
    port = free_port()
    proc = start([sys.executable, "-m", "loadgen.echo_server", "--port", str(port), "--delay-ms", "300"])
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def template_args(html: str) -> dict:
    return json.loads(re.search(r"window\.templateArgs = (.*)$", html, re.M).group(1))  # one line of JSON


def test_web_ui_shows_offered_against_achieved_rate_drops_and_in_flight(echo_slow, tmp_path):
    """20 arrivals/s, at most 2 in flight, 300 ms each: most arrivals are dropped, and the tab says so."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = start([*LOCUST, "-f", "scenarios/steady.py", "--web-host", "127.0.0.1", "--web-port", str(port),
                "-H", echo_slow, "--out", str(tmp_path), "--mix", "predict=1", "--arrival", "deterministic"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                index = httpx.get(f"{base}/", timeout=1).text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "web UI did not come up"
                time.sleep(0.2)
        args = template_args(index)
        assert args["hide_common_options"] is True  # the form's user count and ramp-up: disabled
        assert {"title": "Open loop", "key": "open-loop"} in args["extended_tabs"]
        columns = [c["key"] for c in args["extended_tables"][0]["structure"]]
        assert {"offered_rps", "sent_rps", "ok_rps", "dropped_rps", "in_flight"} <= set(columns)

        r = httpx.post(f"{base}/swarm", data={"host": echo_slow, "rate": "20", "duration": "8", "max_in_flight": "2"},
                       timeout=10)
        assert r.status_code == 200 and r.json()["success"], r.text
        seen, deadline = [], time.monotonic() + 30
        while not list(tmp_path.glob("*/summary.json")):
            assert time.monotonic() < deadline, "the run did not finish"
            stats = httpx.get(f"{base}/stats/requests", timeout=5).json()
            tab = next(e["data"] for e in stats["extended_stats"] if e["key"] == "open-loop")
            if tab and tab[-1]["sent"] > 0:
                seen.append(tab[-1])
            time.sleep(0.5)
        summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())["overall"]
        deadline = time.monotonic() + 10
        while (last := httpx.get(f"{base}/loadgen/live", timeout=5).json()["rows"][-1])["dropped"] != summary["dropped"]:
            assert time.monotonic() < deadline, (last, summary)
            time.sleep(0.5)
        page = httpx.get(f"{base}/loadgen/", timeout=5)
        live = httpx.get(f"{base}/loadgen/live", timeout=5).json()
    finally:
        stop(ui)

    mid = [row for row in seen if row["sent"] + row["dropped"] >= 80]  # 4 s of arrivals and more in the window
    assert mid, seen
    for row in mid:
        assert row["name"] == "Total"
        assert row["offered_rps"] == pytest.approx(row["sent_rps"] + row["dropped_rps"], abs=1.0)
        assert row["dropped_rps"] > 5 and 3 < row["ok_rps"] < 9 and 0 <= row["in_flight"] <= 2
    assert max(row["in_flight"] for row in seen) == 2
    assert (last["sent"], last["ok"], last["dropped"]) == (summary["sent"], summary["ok"], summary["dropped"])
    assert summary["dropped"] > summary["sent"] > 0
    assert page.status_code == 200 and "offered" in page.text and "/loadgen/live" in page.text
    assert live["points"] and 10 < max(p["offered_rps"] for p in live["points"]) <= 20.01  # 8 s of 20/s in a 10 s window


@pytest.fixture(scope="module")
def trial_load(tmp_path_factory):
    """A trial's load phase as `tuner run` runs it (tuner.trial.run_locust), against the echo server."""
    from tuner.plan import make_plan
    from tuner.progress import Silent
    from tuner.trial import run_locust

    out = tmp_path_factory.mktemp("trial")
    port = free_port()
    echo = start([sys.executable, "-m", "loadgen.echo_server", "--port", str(port), "--delay-ms", "5"])
    try:
        wait_port(port)
        plan = make_plan(config=None, serve_config={"applications": []}, scenario="steady",
                         scenario_args=["--rate", "20", "--mix", "predict=1"], target="p99<1s", duration_s=3,
                         out=out, check=False)
        rc, run_dir = run_locust(plan, f"http://127.0.0.1:{port}", 3, out / "load", out / "locust.log", Silent(),
                                 html=out / "locust.html")
    finally:
        stop(echo)
    log = (out / "locust.log").read_text()
    assert rc == 0 and run_dir is not None, log[-3000:]
    return out, run_dir, log


def test_locusts_approximated_tables_are_announced_after_the_exact_summary(trial_load):
    _, _, log = trial_load
    said = "Locust's own tables below approximate"
    exact = log.index("Exact percentiles from every request")
    note = log.index(said)
    assert exact < note < log.index("Response time percentiles (approximated)")
    assert note < log.index("# reqs")  # before Locust's request table too: its first table in the log
    assert log.count(said) == 1 and "the exact figures, from every request, are in the table above" in log


def test_a_trials_load_phase_leaves_locusts_html_report(trial_load):
    out, run_dir, _ = trial_load
    html = (out / "locust.html").read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet", html)  # its script and styles are inline
    args = template_args(html)
    summary = json.loads((run_dir / "summary.json").read_text())["overall"]
    by_name = {s["name"]: s for s in args["requests_statistics"]}
    assert by_name["Aggregated"]["num_requests"] == summary["sent"] > 40
    assert set(by_name) == {"/predict", "Aggregated"} and args["history"]
