"""`--abort-on-fail`'s rules (loadgen/abort.py, tuner/abort.py): each clause kind fires exactly
when the records so far make it fail whatever the rest of the run does, and a run that ends up
meeting its target is never stopped by them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.abort import (Rule, Tally, Watch, bad_rows, certain_miss, first_abort, format_rules, needed_bad,
                           parse_rules, tally)
from loadgen.records import FIELDS, with_derived
from tuner.abort import abort_rules, abort_spec, arrivals_by_route
from tuner.target import client_value, parse_target

ROUTES = ("/rag", "/predict")


def records(rows: list[dict]) -> pd.DataFrame:
    """Records in loadgen's schema from partial rows (scheduled at 0 unless given)."""
    full = [{"scheduled": 0.0, "sent": None, "end": None, "route": "/rag", "status": 200, "error": None,
             "ttft_ms": np.nan, "dropped": False, "unfinished": False, "degraded": False, **r} for r in rows]
    for r in full:
        if not r["dropped"] and r["sent"] is None:
            r["sent"] = r["scheduled"]
    df = pd.DataFrame(full, columns=FIELDS)
    return with_derived(df.astype({"scheduled": float, "sent": float, "end": float, "ttft_ms": float}))


def ok(latency_ms: float, route: str = "/rag", **kw) -> dict:
    return {"end": latency_ms / 1000, "route": route, **kw}


def rule(text: str, window_s: float = 10.0) -> Rule:
    (r,) = abort_rules(parse_target(text), window_s)
    return r


# ---- the percentile rule's count, against numpy's own percentile

@pytest.mark.parametrize("q", [0.5, 1, 33.3, 50, 90, 95, 99, 99.9, 99.99])
def test_needed_bad_is_numpys_threshold_exactly(q):
    """With `needed_bad(n)` values at the bound the percentile is at it whatever the others are
    (all zero: the best case); with one fewer, a run exists whose percentile is below it."""
    for n in range(1, 600):
        k = needed_bad(n, q)
        worst_case = np.zeros(n)
        worst_case[n - k:] = 500.0
        assert np.percentile(worst_case, q) >= 500.0, (n, k)
        one_fewer = np.zeros(n)
        one_fewer[n - k + 1:] = 500.0
        assert np.percentile(one_fewer, q) < 500.0, (n, k)


def test_the_one_percent_shortcut_is_not_exact():
    """floor(0.01 N) + 1 slow requests do not decide p99 for every N: of 150, two at the bound
    leave p99 below it (linear interpolation); three decide it."""
    assert needed_bad(1000, 99) == 11 and needed_bad(100, 99) == 2
    assert needed_bad(150, 99) == 3
    two = np.zeros(150)
    two[-2:] = 500.0
    assert np.percentile(two, 99) < 500.0


# ---- each clause kind

def test_latency_fires_on_the_deciding_slow_request_and_not_before():
    r = rule("p99<500ms")  # 1000 arrivals: 11 at or past 500 ms decide it
    assert not certain_miss(r, Tally(records=10, values=10, bad=10), 1000, 10.0)
    assert certain_miss(r, Tally(records=11, values=11, bad=11), 1000, 10.0)
    # `<` fails at the bound itself, `<=` only past it
    at_bound = records([ok(500.0)])
    assert tally(r, at_bound).bad == 1 and tally(rule("p99<=500ms"), at_bound).bad == 0


def test_latency_counts_errors_at_their_latency_and_dropped_arrivals_not_at_all():
    r = rule("p99<500ms")
    df = records([ok(900.0, status=503, error="HTTP 503"), ok(10.0, status=500, error="x"),
                  {"dropped": True, "error": "dropped"}, ok(900.0, unfinished=True, error="unfinished at stop")])
    # the slow error and the cut request count past the bound, the fast error below it; the drop has no value
    assert tally(r, df) == Tally(records=4, values=3, bad=2)


def test_drops_lower_the_count_a_percentile_can_end_at():
    r = rule("p99<500ms")
    # 200 arrivals: 3 slow requests decide p99; once 150 were dropped at most 50 values are left, and 2 decide it
    assert needed_bad(200, 99) == 3 and needed_bad(50, 99) == 2
    assert not certain_miss(r, Tally(records=2, values=2, bad=2), 200, 10.0)
    assert certain_miss(r, Tally(records=152, values=2, bad=2), 200, 10.0)


def test_a_route_clause_counts_only_its_route():
    r = rule("p95[/predict]<100ms")
    df = records([ok(900.0, "/rag"), ok(900.0, "/predict"), ok(5.0, "/predict")])
    assert tally(r, df) == Tally(records=2, values=2, bad=1)


def test_ttft_counts_only_requests_that_can_still_give_a_value():
    r = rule("ttft_p90<200ms")
    df = records([ok(50.0, ttft_ms=300.0), ok(50.0), ok(50.0, ttft_ms=250.0)])
    assert tally(r, df) == Tally(records=3, values=2, bad=2)
    # 5 arrivals, 3 recorded with 2 values: at most 4 values, of which 2 past the bound decide p90; of 29, 4 would
    assert certain_miss(r, tally(r, df), 5, 10.0)
    assert not certain_miss(r, tally(r, df), 30, 10.0)


@pytest.mark.parametrize("text, fires_at", [("error_rate<1%", 10), ("error_rate<=1%", 11)])
def test_error_rate_fires_once_errors_alone_reach_the_bound(text, fires_at):
    r = rule(text)
    assert not certain_miss(r, Tally(records=500, bad=fires_at - 1), 1000, 10.0)
    assert certain_miss(r, Tally(records=500, bad=fires_at), 1000, 10.0)


def test_error_rate_counts_every_answer_that_is_not_ok():
    r = rule("error_rate<1%")
    df = records([ok(5.0), ok(5.0, status=404), ok(5.0, error="boom"), ok(5.0, unfinished=True),
                  {"dropped": True}, ok(5.0, status=302)])
    assert tally(r, df).bad == 4


@pytest.mark.parametrize("text, fires_at", [("throughput>=20rps", 51), ("throughput>20rps", 50)])
def test_throughput_fires_once_even_every_arrival_left_answering_falls_short(text, fires_at):
    r = rule(text, window_s=10.0)  # 250 arrivals over 10 s: at least 200 (>= 20 rps) must be answered well
    assert not certain_miss(r, Tally(records=100, bad=fires_at - 1), 250, 10.0)
    assert certain_miss(r, Tally(records=100, bad=fires_at), 250, 10.0)


def test_a_route_without_arrivals_can_never_meet_its_clause():
    r = rule("p99[/predict]<1s")
    assert certain_miss(r, Tally(), 0, 10.0)
    w = Watch((r,), {None: 10, "/rag": 10}, 10.0)
    assert w.due(0.0) == w.fired and w.fired.clause == "p99[/predict]<1s"


def test_the_watch_waits_for_the_grace_and_fires_once():
    r = rule("p99<100ms")
    w = Watch((r,), {None: 100}, 10.0, grace_s=3.0)
    w.add(records([ok(500.0)] * 2))  # 100 arrivals: 2 slow decide p99
    assert w.due(1.0) is None
    fired = w.due(3.5)
    assert fired.clause == "p99<100ms" and fired.at_s == 3.5
    assert w.due(4.0) is None and w.fired == fired


def test_first_abort_is_when_the_deciding_record_ended():
    r = rule("p99<100ms")
    df = records([ok(10.0, scheduled=t, end=t + 0.01) for t in range(50)]
                 + [ok(500.0, scheduled=10.0, end=10.5), ok(500.0, scheduled=20.0, end=20.5)])
    fired = first_abort((r,), df, {None: len(df)}, 60.0)
    assert fired.clause == "p99<100ms" and fired.at_s == pytest.approx(20.5)
    assert first_abort((r,), df, {None: len(df)}, 60.0, grace_s=30.0).at_s == 30.0
    assert first_abort((rule("p99<1s"),), df, {None: len(df)}, 60.0) is None


# ---- the tuner's translation and loadgen's option

def test_the_target_becomes_rules_in_base_units_without_itl():
    rules = abort_rules(parse_target("p99[/rag]<0.5s,itl_p99<50ms,error_rate<1%,throughput>=20rps"), 120.0)
    assert [(r.metric, r.route, r.q, r.op, r.bound, r.window_s) for r in rules] == [
        ("latency", "/rag", 99.0, "<", 500.0, None), ("error_rate", None, None, "<", 0.01, None),
        ("throughput", None, None, ">=", 20.0, 120.0)]
    assert parse_rules(format_rules(rules)) == rules
    assert parse_rules(abort_spec(parse_target("ttft_p95<=1s"), 60.0))[0].clause == "ttft_p95<=1s"


@pytest.mark.parametrize("text, message", [
    ("p99<1s", "not JSON"),
    ('{"metric": "latency"}', "JSON list of rule objects"),
    ('[{"metric": "itl", "op": "<", "bound": 5, "q": 99}]', "metric must be one of"),
    ('[{"metric": "latency", "op": ">", "bound": 5, "q": 99}]', "op must be one of < <="),
    ('[{"metric": "throughput", "op": "<", "bound": 5}]', "op must be one of > >="),
    ('[{"metric": "latency", "op": "<", "bound": 5, "q": 100}]', "q must be between 0 and 100"),
    ('[{"metric": "latency", "op": "<", "bound": "5", "q": 99}]', "bound must be a finite number"),
    ('[{"metric": "error_rate", "op": "<", "bound": 0.1, "route": "rag"}]', "route must be a path"),
    ('[{"metric": "error_rate", "op": "<", "bound": 0.1, "when": 1}]', "unknown field 'when'"),
])
def test_a_bad_abort_when_is_one_value_error_naming_the_option(text, message):
    with pytest.raises(ValueError, match="--abort-when") as info:
        parse_rules(text)
    assert message in str(info.value)


def test_arrivals_by_route_counts_each_path_and_the_total():
    assert arrivals_by_route(pd.Series(["/rag", "/rag", "/predict"])) == {None: 3, "/rag": 2, "/predict": 1}


# ---- the property: a rule that fires is never wrong

CLAUSES = st.one_of(
    st.builds(lambda q, route, op, ms: f"p{q:g}{route}{op}{ms}ms", st.sampled_from([50, 90, 95, 99, 99.9]),
              st.sampled_from(["", "[/rag]", "[/predict]"]), st.sampled_from(["<", "<="]), st.integers(1, 400)),
    st.builds(lambda q, op, ms: f"ttft_p{q:g}{op}{ms}ms", st.sampled_from([50, 90, 99]), st.sampled_from(["<", "<="]),
              st.integers(1, 400)),
    st.builds(lambda route, op, pct: f"error_rate{route}{op}{pct}%", st.sampled_from(["", "[/rag]"]),
              st.sampled_from(["<", "<="]), st.integers(0, 60)),
    st.builds(lambda route, op, rps: f"throughput{route}{op}{rps}rps", st.sampled_from(["", "[/predict]"]),
              st.sampled_from([">", ">="]), st.integers(1, 12)),
)
ROW = st.fixed_dictionaries({
    "route": st.sampled_from(ROUTES),
    "kind": st.sampled_from(["ok", "ok", "ok", "error", "status", "unfinished", "dropped"]),
    "latency": st.one_of(st.integers(0, 500).map(float), st.just(200.0)),  # ties at a bound, too
    "ttft": st.one_of(st.none(), st.integers(0, 500).map(float)),
    "scheduled": st.floats(0, 9.9),
})


def _row(x: dict) -> dict:
    r = {"route": x["route"], "scheduled": x["scheduled"], "end": x["scheduled"] + x["latency"] / 1000,
         "ttft_ms": np.nan if x["ttft"] is None else x["ttft"]}
    return r | {"ok": {}, "error": {"error": "boom", "status": 0}, "status": {"status": 503},
                "unfinished": {"unfinished": True, "error": "unfinished at stop"},
                "dropped": {"dropped": True, "end": None, "sent": None, "ttft_ms": np.nan,
                            "error": "dropped"}}[x["kind"]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=60), CLAUSES, st.randoms(use_true_random=False))
def test_a_rule_that_fires_on_any_prefix_means_the_whole_run_missed(rows, text, rnd):
    df = records([_row(x) for x in rows])
    clause = parse_target(text).clauses[0]
    window = 10.0
    met = clause.holds(client_value(clause, df, window))
    arrivals = arrivals_by_route(df["route"])
    for r in abort_rules(parse_target(text), window):
        order = list(range(len(df)))
        rnd.shuffle(order)  # records reach the master in any order
        rows_, has, bad = bad_rows(r, df)
        seen = Tally()
        for i in order:
            seen = seen + Tally(int(rows_[i]), int(has[i]), int(bad[i]))
            if certain_miss(r, seen, arrivals.get(r.route, 0), window):
                assert not met, (text, seen)
        assert seen == tally(r, df)
        fired = first_abort((r,), df, arrivals, window)
        assert fired is None or not met
        # With every record in, error_rate and throughput are known exactly: the rule then says
        # what the verdict says. (A percentile can miss with fewer values past the bound than
        # decide it in every run: the rule waits for those.)
        if r.metric in ("error_rate", "throughput"):
            assert certain_miss(r, seen, arrivals.get(r.route, 0), window) == (not met)
