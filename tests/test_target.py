"""The --target grammar: every valid form in base units, every malformed one as a one-line
TargetError with the right column, property-based parsing, clause verdicts and client values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.record_rows import RecordRows
from tuner.errors import UsageError
from tuner.target import Clause, Target, TargetError, client_value, parse_target, without_lag


def only(text: str) -> Clause:
    target = parse_target(text)
    assert len(target.clauses) == 1
    return target.clauses[0]


@pytest.mark.parametrize("text,metric,quantile,route,op,threshold,unit", [
    ("p99<500ms", "latency", 99.0, None, "<", 500.0, "ms"),
    ("p95<=300ms", "latency", 95.0, None, "<=", 300.0, "ms"),
    ("p50<100ms", "latency", 50.0, None, "<", 100.0, "ms"),
    ("p99.9<2s", "latency", 99.9, None, "<", 2000.0, "s"),
    ("p0.5<1ms", "latency", 0.5, None, "<", 1.0, "ms"),
    ("p99<1.5s", "latency", 99.0, None, "<", 1500.0, "s"),
    ("p99<.5s", "latency", 99.0, None, "<", 500.0, "s"),
    ("p99<5.s", "latency", 99.0, None, "<", 5000.0, "s"),
    ("ttft_p99<1s", "ttft", 99.0, None, "<", 1000.0, "s"),
    ("ttft_p50<=250ms", "ttft", 50.0, None, "<=", 250.0, "ms"),
    ("itl_p99<50ms", "itl", 99.0, None, "<", 50.0, "ms"),
    ("error_rate<1%", "error_rate", None, None, "<", 0.01, "%"),
    ("error_rate<=0.5%", "error_rate", None, None, "<=", 0.005, "%"),
    ("error_rate<=0%", "error_rate", None, None, "<=", 0.0, "%"),
    ("error_rate<100%", "error_rate", None, None, "<", 1.0, "%"),
    ("throughput>=20rps", "throughput", None, None, ">=", 20.0, "rps"),
    ("throughput>2.5rps", "throughput", None, None, ">", 2.5, "rps"),
    ("p99[/rag]<800ms", "latency", 99.0, "/rag", "<", 800.0, "ms"),
    ("p95[/v1/completions]<=2s", "latency", 95.0, "/v1/completions", "<=", 2000.0, "s"),
    ("ttft_p90[/rag]<300ms", "ttft", 90.0, "/rag", "<", 300.0, "ms"),
    ("error_rate[/predict]<2%", "error_rate", None, "/predict", "<", 0.02, "%"),
    ("throughput[/predict]>=5rps", "throughput", None, "/predict", ">=", 5.0, "rps"),
])
def test_valid_clause(text, metric, quantile, route, op, threshold, unit):
    c = only(text)
    assert (c.metric, c.quantile, c.route, c.op, c.unit) == (metric, quantile, route, op, unit)
    assert c.threshold == pytest.approx(threshold, rel=1e-12, abs=1e-15)
    assert c.text == text


@pytest.mark.parametrize("text", [
    " p99 < 500 ms ",
    "p99\t<\t500\tms",
    "p99<500 ms",
    "p99[ /rag ]<500ms",
])
def test_spaces_around_tokens_are_ignored(text):
    c = only(text)
    assert (c.metric, c.op, c.threshold, c.unit) == ("latency", "<", 500.0, "ms")
    assert c.text == text.strip()


def test_combination_of_clauses():
    text = "p99<500ms, p95[/rag]<=800ms,ttft_p99<1s ,  itl_p99<50ms,error_rate<1%, throughput>=20rps"
    t = parse_target(text)
    assert isinstance(t, Target) and t.text == text
    got = [(c.metric, c.quantile, c.route, c.op, c.threshold) for c in t.clauses]
    assert got == [
        ("latency", 99.0, None, "<", 500.0),
        ("latency", 95.0, "/rag", "<=", 800.0),
        ("ttft", 99.0, None, "<", 1000.0),
        ("itl", 99.0, None, "<", 50.0),
        ("error_rate", None, None, "<", pytest.approx(0.01)),
        ("throughput", None, None, ">=", 20.0),
    ]
    assert [c.text for c in t.clauses] == ["p99<500ms", "p95[/rag]<=800ms", "ttft_p99<1s", "itl_p99<50ms",
                                           "error_rate<1%", "throughput>=20rps"]
    assert t.latency_bounds_ms() == [500.0, 800.0, 1000.0, 50.0]


def test_clause_names():
    t = parse_target("p99<1s,p99.9[/rag]<2s,ttft_p50<1s,itl_p95<1s,error_rate<1%,throughput[/predict]>1rps")
    assert [c.name for c in t.clauses] == ["p99", "p99.9[/rag]", "ttft_p50", "itl_p95", "error_rate",
                                           "throughput[/predict]"]


# text, clause number, the clause as the message names it, column (1-based), what the message says
INVALID = [
    ("p99<500ms,", 2, "", 11, "empty clause"),
    (",p99<1s", 1, "", 1, "empty clause"),
    ("p99<500ms,,p95<1s", 2, "", 11, "empty clause"),
    ("p99<1s, ,p95<1s", 2, "", 9, "empty clause"),
    ("x99<1s", 1, "x99<1s", 1, "expected a metric"),
    ("  latency<1s", 1, "latency<1s", 3, "expected a metric"),
    ("P99<1s", 1, "P99<1s", 1, "expected a metric"),
    ("p<1s", 1, "p<1s", 1, "expected a metric"),
    ("p0<1s", 1, "p0<1s", 2, "percentile must be between 0 and 100"),
    ("p100<1s", 1, "p100<1s", 2, "percentile must be between 0 and 100"),
    ("ttft_p0<1s", 1, "ttft_p0<1s", 7, "percentile must be between 0 and 100"),
    ("p99<1s,itl_p100<1s", 2, "itl_p100<1s", 13, "percentile must be between 0 and 100"),
    ("p99[/rag<1s", 1, "p99[/rag<1s", 4, "'[' without ']'"),
    ("p99[rag]<1s", 1, "p99[rag]<1s", 5, "route must be a path"),
    ("p99[/r a]<1s", 1, "p99[/r a]<1s", 5, "route must be a path"),
    ("p99[]<1s", 1, "p99[]<1s", 5, "route must be a path"),
    ('p99[/a"b]<1s', 1, 'p99[/a"b]<1s', 5, "route must be a path"),
    ("p99=1s", 1, "p99=1s", 4, "expected one of < <= > >="),
    ("p99", 1, "p99", 4, "expected one of < <= > >="),
    ("p99.<1s", 1, "p99.<1s", 4, "expected one of < <= > >="),
    ("p99 [/rag]<1s", 1, "p99 [/rag]<1s", 5, "expected one of < <= > >="),
    ("p99>1s", 1, "p99>1s", 4, "latency must be an upper bound"),
    ("ttft_p99>=1s", 1, "ttft_p99>=1s", 9, "latency must be an upper bound"),
    ("error_rate>1%", 1, "error_rate>1%", 11, "error_rate must be an upper bound"),
    ("throughput<5rps", 1, "throughput<5rps", 11, "throughput must be a lower bound"),
    ("p99<1s,itl_p99>=5ms", 2, "itl_p99>=5ms", 15, "latency must be an upper bound"),
    ("p99<ms", 1, "p99<ms", 5, "expected a number after '<'"),
    ("p99<-1ms", 1, "p99<-1ms", 5, "expected a number after '<'"),
    ("p99<=", 1, "p99<=", 6, "expected a number after '<='"),
    ("p99<500", 1, "p99<500", 8, "missing unit after 500"),
    ("error_rate<1", 1, "error_rate<1", 13, "missing unit after 1"),
    ("p99<500us", 1, "p99<500us", 8, "unknown unit 'us' for latency"),
    ("p99<1e3ms", 1, "p99<1e3ms", 6, "unknown unit 'e3ms'"),
    ("ttft_p99<1%", 1, "ttft_p99<1%", 11, "unknown unit '%' for ttft"),
    ("throughput>1/s", 1, "throughput>1/s", 13, "unknown unit '/s' for throughput"),
    ("p99 <= 500 xs", 1, "p99 <= 500 xs", 12, "unknown unit 'xs'"),
    ("p99<500ms, p95<1x", 2, "p95<1x", 17, "unknown unit 'x'"),
    ("p99<500ms p95<1s", 1, "p99<500ms p95<1s", 10, "unexpected 'p95<1s' after 500ms: join clauses with commas"),
    ("p99<500ms; error_rate<1%", 1, "p99<500ms; error_rate<1%", 10,
     "unexpected '; error_rate<1%' after 500ms: join clauses with commas, e.g. 'p99<500ms,error_rate<1%'"),
    ("error_rate<1% and p99<1s", 1, "error_rate<1% and p99<1s", 14, "unexpected 'and p99<1s' after 1%: join clauses"),
    ("p99<500mss", 1, "p99<500mss", 8, "unknown unit 'mss'"),
    ("error_rate<101%", 1, "error_rate<101%", 12, "error_rate cannot exceed 100%"),
    ("p99<0ms", 1, "p99<0ms", 5, "latency bound must be above 0"),
    ("itl_p99<0.0s", 1, "itl_p99<0.0s", 9, "itl bound must be above 0"),
    ("throughput>=0rps", 1, "throughput>=0rps", 13, "throughput bound must be above 0"),
]


@pytest.mark.parametrize("text,n,clause,column,what", INVALID, ids=[row[0] for row in INVALID])
def test_invalid_target(text, n, clause, column, what):
    with pytest.raises(TargetError) as info:
        parse_target(text)
    e = info.value
    msg = str(e)
    assert isinstance(e, UsageError) and e.exit_code == 2
    assert len(msg.splitlines()) == 1 and "\n" not in msg
    assert f"clause {n} {clause!r}:" in msg
    assert msg.endswith(f"at column {column}"), msg
    assert what in msg


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_target(text):
    with pytest.raises(TargetError) as info:
        parse_target(text)
    assert info.value.exit_code == 2 and "empty" in str(info.value) and "\n" not in str(info.value)


def test_error_message_escapes_control_characters():
    with pytest.raises(TargetError) as info:
        parse_target("p99<1s,\np95<1x")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    assert msg.endswith("at column 14")  # the 'x': index 13


# ---- property-based ----

SPACE = st.sampled_from(["", " ", "  ", "\t"])
ROUTE = st.from_regex(r"/[a-z0-9_/.-]{0,12}", fullmatch=True)
QUANTILE = st.one_of(
    st.integers(1, 99).map(str),
    st.tuples(st.integers(0, 99), st.integers(1, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
)


@st.composite
def number(draw, max_value: float | None = None, allow_zero: bool = False) -> str:
    whole = draw(st.integers(0, 10**6 if max_value is None else int(max_value)))
    frac = draw(st.text("0123456789", min_size=1, max_size=4))
    text = draw(st.sampled_from([str(whole), f"{whole}.", f"{whole}.{frac}", f".{frac}"]))
    value = float(text)
    if max_value is not None and value > max_value:
        text, value = str(int(max_value)), float(int(max_value))
    if value == 0 and not allow_zero:
        text = f"{text}1" if "." in text else "1"
    return text


@st.composite
def clause(draw):
    """(clause text, expected (metric, quantile, route, op, threshold, unit))."""
    kind = draw(st.sampled_from(["p", "ttft_p", "itl_p", "error_rate", "throughput"]))
    if kind.endswith("p"):
        q = draw(QUANTILE)
        head, metric, quantile = f"{kind}{q}", {"p": "latency", "ttft_p": "ttft", "itl_p": "itl"}[kind], float(q)
    else:
        head, metric, quantile = kind, kind, None
    route = draw(st.one_of(st.none(), ROUTE))
    if route is not None:
        head += f"[{route}]"
    op = draw(st.sampled_from([">", ">="] if metric == "throughput" else ["<", "<="]))
    if metric == "error_rate":
        num, unit, factor = draw(number(max_value=100, allow_zero=True)), "%", 0.01
    elif metric == "throughput":
        num, unit, factor = draw(number()), "rps", 1.0
    else:
        unit = draw(st.sampled_from(["ms", "s"]))
        num, factor = draw(number()), {"ms": 1.0, "s": 1000.0}[unit]
    s = [draw(SPACE) for _ in range(5)]
    text = f"{s[0]}{head}{s[1]}{op}{s[2]}{num}{s[3]}{unit}{s[4]}"
    return text, (metric, quantile, route, op, float(num) * factor, unit)


@settings(max_examples=300, deadline=None)
@given(st.lists(clause(), min_size=1, max_size=4))
def test_generated_valid_targets_parse(clauses):
    text = ",".join(c[0] for c in clauses)
    target = parse_target(text)
    assert len(target.clauses) == len(clauses)
    for got, (part, (metric, quantile, route, op, threshold, unit)) in zip(target.clauses, clauses):
        assert (got.metric, got.quantile, got.route, got.op, got.unit) == (metric, quantile, route, op, unit)
        assert got.threshold == pytest.approx(threshold, rel=1e-12, abs=0)
        assert got.text == part.strip()


GRAMMAR_CHARS = st.text(alphabet="p9.05tf_il[]/rag<=>, %smerohuxy\t\n-", max_size=40)


def parse_or_usage_error(text: str) -> None:
    try:
        result = parse_target(text)
    except TargetError as e:
        msg = str(e)
        assert msg and len(msg.splitlines()) == 1, repr(msg)
        assert e.exit_code == 2
        if text.strip():
            assert re.search(r"at column \d+$", msg), msg
        return
    assert isinstance(result, Target) and result.clauses


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_text_parses_or_raises_a_one_line_target_error(text):
    parse_or_usage_error(text)


@settings(max_examples=500, deadline=None)
@given(GRAMMAR_CHARS)
def test_near_grammar_text_parses_or_raises_a_one_line_target_error(text):
    parse_or_usage_error(text)


# ---- verdicts ----

@pytest.mark.parametrize("text,value,holds", [
    ("p99<500ms", 499.9, True),
    ("p99<500ms", 500.0, False),
    ("p99<=500ms", 500.0, True),
    ("p99<=500ms", 500.1, False),
    ("error_rate<1%", 0.0099, True),
    ("error_rate<1%", 0.01, False),
    ("throughput>20rps", 20.0, False),
    ("throughput>20rps", 20.1, True),
    ("throughput>=20rps", 20.0, True),
    ("throughput>=20rps", 19.9, False),
    ("p99<500ms", None, False),
    ("throughput>=20rps", None, False),
    ("p99<500ms", float("nan"), False),
    ("throughput>=20rps", float("nan"), False),
])
def test_holds(text, value, holds):
    assert only(text).holds(value) is holds


@pytest.mark.parametrize("text,value,margin", [
    ("p99<500ms", 400.0, 0.2),      # 20 % below the bound
    ("p99<500ms", 600.0, -0.2),     # 20 % over it
    ("p99<=500ms", 500.0, 0.0),
    ("error_rate<2%", 0.005, 0.75),
    ("throughput>=20rps", 25.0, 0.25),   # a lower bound: above it is slack
    ("throughput>=20rps", 15.0, -0.25),
    ("error_rate<=0%", 0.01, -0.01),   # a zero bound: slack in absolute terms
])
def test_margin(text, value, margin):
    c = only(text)
    assert c.margin(value) == pytest.approx(margin)
    assert (c.margin(value) >= 0) == c.holds(value)


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_margin_and_display_without_a_value(value):
    c = only("p99<500ms")
    assert c.margin(value) is None
    assert c.display(value) == "-"


@pytest.mark.parametrize("text,value,shown", [
    ("p99<500ms", 432.0, "432ms"),
    ("p99<2s", 1500.0, "1.5s"),
    ("ttft_p99<1s", 250.0, "0.25s"),
    ("error_rate<1%", 0.004, "0.4%"),
    ("throughput>=20rps", 21.5, "21.5rps"),
    ("p99<500ms", 123456.0, "1.235e+05ms"),
])
def test_display_in_the_clause_unit(text, value, shown):
    assert only(text).display(value) == shown


# ---- client values on hand-made records ----

WINDOW_S = 10.0
T0 = 1000.0
RAG_MS = [100.0, 250.0, 300.0, 420.0, 180.0]
PREDICT_OK_MS = [10.0, 20.0, 35.0]
TTFT = [12.0, 30.0]
ITL = [[1.0, 2.0], [3.0, 4.0, 5.5]]
CUT_MS = 5000.0


@pytest.fixture(scope="module")
def recs():
    rows = RecordRows(T0, 0.5, 0.001)
    add = rows.add
    for i, ms in enumerate(RAG_MS):
        extra = dict(ttft_ms=TTFT[i], itl_ms=ITL[i]) if i < len(TTFT) else {}
        add("/rag", ms, status=200, **extra)
    for ms in PREDICT_OK_MS:
        add("/predict", ms, status=200)
    add("/predict", 50.0, status=500)                                    # an HTTP error
    add("/predict", 40.0, error="ConnectError: refused")                 # no response
    add("/predict", dropped=True, error="dropped: 8 requests in flight")  # never sent
    add("/predict", CUT_MS, unfinished=True, error="unfinished at stop")  # cut off
    return rows.frame()


PREDICT_SENT_MS = PREDICT_OK_MS + [50.0, 40.0, CUT_MS]


@pytest.mark.parametrize("q", [50, 90, 99, 99.9])
@pytest.mark.parametrize("route,values", [
    ("/rag", RAG_MS),
    ("/predict", PREDICT_SENT_MS),
    (None, RAG_MS + PREDICT_SENT_MS),
])
def test_client_latency_percentile(recs, q, route, values):
    c = only(f"p{q:g}[{route}]<1s" if route else f"p{q:g}<1s")
    assert client_value(c, recs, WINDOW_S) == pytest.approx(np.percentile(values, q), abs=1e-6)


def test_client_ttft_and_itl(recs):
    assert client_value(only("ttft_p50<1s"), recs, WINDOW_S) == pytest.approx(np.percentile(TTFT, 50))
    assert client_value(only("ttft_p99[/rag]<1s"), recs, WINDOW_S) == pytest.approx(np.percentile(TTFT, 99))
    pooled = np.concatenate(ITL)
    for q in (50, 90, 99):
        assert client_value(only(f"itl_p{q}<1s"), recs, WINDOW_S) == pytest.approx(np.percentile(pooled, q))
    assert client_value(only("ttft_p99[/predict]<1s"), recs, WINDOW_S) is None  # nothing streamed there
    assert client_value(only("itl_p99[/predict]<1s"), recs, WINDOW_S) is None


def test_client_error_rate_counts_errors_unfinished_and_dropped(recs):
    # /predict: 7 arrivals, 3 ok; overall 12 arrivals, 8 ok
    assert client_value(only("error_rate[/predict]<1%"), recs, WINDOW_S) == pytest.approx(4 / 7)
    assert client_value(only("error_rate<1%"), recs, WINDOW_S) == pytest.approx(4 / 12)
    assert client_value(only("error_rate[/rag]<1%"), recs, WINDOW_S) == 0.0


def test_client_throughput_is_ok_answers_per_second(recs):
    assert client_value(only("throughput>1rps"), recs, WINDOW_S) == pytest.approx(8 / WINDOW_S)
    assert client_value(only("throughput[/predict]>1rps"), recs, WINDOW_S) == pytest.approx(3 / WINDOW_S)
    assert client_value(only("throughput>1rps"), recs, 0.0) is None


@pytest.mark.parametrize("text", ["p99[/nope]<1s", "error_rate[/nope]<1%", "throughput[/nope]>1rps",
                                  "ttft_p99[/nope]<1s", "itl_p99[/nope]<1s"])
def test_client_value_of_an_unknown_route_is_none(recs, text):
    assert client_value(only(text), recs, WINDOW_S) is None


def test_client_value_verdict(recs):
    c = only("p50[/rag]<200ms")
    v = client_value(c, recs, WINDOW_S)
    assert v == pytest.approx(250.0) and not c.holds(v) and c.margin(v) == pytest.approx(-0.25)


@pytest.mark.parametrize("text", ["p99<5\u0665ms", "p\u0669<1s"])
def test_non_ascii_digits_are_refused(text):
    with pytest.raises(TargetError):
        parse_target(text)


def test_without_lag_removes_the_generators_delay_from_latency_and_ttft():
    df = pd.DataFrame({"latency_ms": [100.0, 50.0], "ttft_ms": [40.0, None], "lag_ms": [30.0, 0.0],
                       "route": ["/rag", "/predict"], "dropped": [False, False]})
    out = without_lag(df)
    assert out["latency_ms"].tolist() == [70.0, 50.0]
    assert out["ttft_ms"].tolist()[0] == 10.0 and pd.isna(out["ttft_ms"].tolist()[1])
    assert df["latency_ms"].tolist() == [100.0, 50.0]  # the input is not changed
