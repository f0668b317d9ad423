"""Locust's web UI and reports for open-loop load, without servers: the open-loop view's rates
and counts, and the command line a real trial gives Locust (its HTML report beside the trial's files)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadgen.shapes import Ramp, Steady
from loadgen.webui import WINDOW_S, LiveView


def counts(sent: int, ok: int, failed: int, dropped: int, in_flight: int) -> dict[str, int]:
    return {"sent": sent, "ok": ok, "failed": failed, "dropped": dropped, "in_flight": in_flight}


def total(view: LiveView) -> dict:
    assert view.rows[-1]["name"] == "Total"
    return view.rows[-1]


def test_the_view_shows_offered_against_sent_ok_and_dropped_per_second():
    clock = {"t": 0.0}
    # each second: 20 arrivals, 15 sent, 5 dropped at the cap; of those sent, 14 ok and 1 failed
    view = LiveView(local=lambda: {"gen-a": counts(15 * int(clock["t"]), 14 * int(clock["t"]), int(clock["t"]),
                                                   5 * int(clock["t"]), 7)})
    epoch = 1000.0
    view.start(epoch, Steady(rps=20, seconds=60))
    for s in range(0, 16):
        clock["t"] = s
        view.sample(epoch + s)
    row = total(view)
    assert row["offered_rps"] == pytest.approx(20)
    assert (row["sent_rps"], row["ok_rps"], row["failed_rps"], row["dropped_rps"]) == pytest.approx((15, 14, 1, 5))
    assert (row["sent"], row["ok"], row["failed"], row["dropped"], row["in_flight"]) == (225, 210, 15, 75, 7)
    assert [r["name"] for r in view.rows] == ["gen-a", "Total"]
    assert view.rows[0]["offered_rps"] == pytest.approx(20)
    points = view.live()["points"]
    assert [p["t_s"] for p in points] == list(range(1, 16))  # a rate needs two samples
    assert points[-1]["sent_rps"] == pytest.approx(15) and points[-1]["offered_rps"] == pytest.approx(20)


def test_offered_is_the_shapes_mean_over_the_same_window_as_the_counts():
    view = LiveView(local=lambda: {"g": counts(0, 0, 0, 0, 0)})
    epoch = 50.0
    view.start(epoch, Ramp(start_rps=0, end_rps=100, seconds=100))  # rate(t) = t
    for s in range(0, 31):
        view.sample(epoch + s)
    assert total(view)["offered_rps"] == pytest.approx(30 - WINDOW_S / 2)  # the mean of t over [20, 30)
    assert view.offered(epoch - 10, epoch) == 0  # before time 0 of the shape nothing is offered


def test_a_master_sums_its_workers_reports_over_the_times_they_were_taken():
    view = LiveView()
    view.start(200.0, Steady(rps=40, seconds=60))
    view.update(100.0, {"w1": counts(999, 999, 0, 0, 0)}, at=150.0)  # a late report of the previous test
    view.update(200.0, {"w1": counts(0, 0, 0, 0, 0)}, at=201.0)
    view.update(200.0, {"w2": counts(0, 0, 0, 0, 0)}, at=202.0)
    view.sample(203.0)
    view.update(200.0, {"w1": counts(200, 200, 0, 0, 2)}, at=211.0)  # 20 sent/s over its 10 s
    view.update(200.0, {"w2": counts(100, 90, 0, 100, 3)}, at=212.0)  # 10 sent/s and 10 dropped/s
    view.sample(212.5)
    by_name = {r["name"]: r for r in view.rows}
    assert set(by_name) == {"w1", "w2", "Total"}
    assert by_name["w1"]["sent_rps"] == pytest.approx(20) and by_name["w2"]["dropped_rps"] == pytest.approx(10)
    assert by_name["w1"]["offered_rps"] == pytest.approx(20) == by_name["w2"]["offered_rps"]  # half of 40 each
    total = by_name["Total"]
    assert (total["offered_rps"], total["sent_rps"], total["ok_rps"]) == pytest.approx((40, 30, 29))
    assert (total["sent"], total["dropped"], total["in_flight"]) == (300, 100, 5)


def test_a_generator_with_one_report_has_counts_but_no_rates_yet():
    view = LiveView()
    view.start(0.0, Steady(rps=10, seconds=60))
    view.update(0.0, {"w1": counts(5, 4, 0, 1, 1)}, at=1.0)
    view.sample(2.0)
    assert view.rows[-1]["sent"] == 5 and view.rows[-1]["sent_rps"] is None and view.rows[-1]["offered_rps"] is None
    assert view.live()["points"] == []


def test_after_a_stop_the_chart_runs_one_window_more_and_a_new_test_starts_it_afresh():
    view = LiveView(local=lambda: {"g": counts(1, 1, 0, 0, 0)})
    view.start(0.0, Steady(rps=1, seconds=5))
    for s in range(5):
        view.sample(float(s))
    view.stop(4.5)
    for s in range(5, 30):
        view.sample(float(s))
    assert view.live()["points"][-1]["t_s"] == 4.5 + WINDOW_S - 0.5
    assert len(view.live(epoch=0.0, since=10.0)["points"]) == 4  # the points after t = 10 s only
    view.start(100.0, Steady(rps=1, seconds=5))
    assert view.live()["points"] == [] and view.live(epoch=0.0, since=10.0)["epoch"] == 100.0


def test_a_trial_asks_locust_for_its_html_report_only_where_given_a_file(tmp_path):
    from tuner.plan import make_plan
    from tuner.trial import locust_argv

    plan = make_plan(config=None, serve_config={"applications": []}, scenario="steady", scenario_args=["--rate", "3"],
                     target="p99<1s", duration_s=5, out=tmp_path / "trial", check=False)
    load = locust_argv(plan, "http://127.0.0.1:8000", 5, tmp_path / "trial" / "load", html=tmp_path / "trial" / "locust.html")
    assert load[:3] == [sys.executable, "-m", "locust"]
    assert load[load.index("--html") + 1] == str(tmp_path / "trial" / "locust.html")
    assert {"--headless", "--only-summary"} <= set(load) and load[load.index("-t") + 1] == "5s"
    assert load[load.index("--rate") + 1] == "3" and Path(load[load.index("-f") + 1]).name == "steady.py"
    without = locust_argv(plan, "http://127.0.0.1:8000", 5, tmp_path / "trial" / "load")
    assert without == load[:load.index("--html")]
