"""Exact summaries from hand-made records: numpy.percentile values per route and overall,
ok / error / dropped / unfinished counts, time windows, generator health and the text table."""

from __future__ import annotations

import numpy as np
import pytest

from loadgen import records, summary

T0 = 1000.0  # scheduled time of the first arrival (seconds)
GAP_S = 0.1  # between scheduled times
CUT_MS = 5000.0  # how long the unfinished request had been running at the cut
RNG = np.random.default_rng(0)
OK_LATENCY = {"rag": RNG.uniform(5, 500, 20), "predict": RNG.uniform(1, 50, 30), "lora": RNG.uniform(20, 900, 10)}
LAG_MS = 2.0
TTFT_MS, ITL_MS = [40.0, 60.0], [[1.0, 3.0], [2.0, 8.0, 4.0]]


def build() -> tuple[list[dict], dict[str, list[float]]]:
    """The rows in scheduled order, and each route's latencies (ms) of the requests that were sent."""
    rows, sent = [], {route: [] for route in OK_LATENCY}

    def add(route, latency_ms=None, **extra):
        scheduled = T0 + len(rows) * GAP_S
        row = dict(scheduled=scheduled, route=route, generator="g1", **extra)
        if latency_ms is not None:
            row |= dict(sent=scheduled + LAG_MS / 1000, end=scheduled + latency_ms / 1000)
            sent[route].append(latency_ms)
        rows.append(row)

    for route, latencies in OK_LATENCY.items():
        for i, latency in enumerate(latencies):
            streamed = route == "rag" and i < len(TTFT_MS)
            add(route, latency, status=200, **(dict(ttft_ms=TTFT_MS[i], itl_ms=ITL_MS[i]) if streamed else {}))
    add("predict", 70.0, status=500)  # an HTTP error
    add("predict", 30.0, error="ConnectError: connection refused")  # no response at all
    add("predict", dropped=True, error="dropped: 8 requests in flight")  # never sent: no latency
    add("lora", CUT_MS, unfinished=True, error="unfinished at stop")  # enters latency at its lower bound
    return rows, sent


ROWS, SENT_LATENCY = build()
EXPECTED_COUNTS = {  # arrivals, sent, ok, errors, dropped, unfinished
    "rag": (20, 20, 20, 0, 0, 0),
    "predict": (33, 32, 30, 2, 1, 0),
    "lora": (11, 11, 10, 0, 0, 1),
    "overall": (64, 63, 60, 2, 1, 1),
}


def frame(rows):
    buf = records.RecordBuffer()
    for row in rows:
        buf.add(**row)
    return records.with_derived(buf.take().to_pandas())


@pytest.fixture(scope="module")
def df():
    return frame(ROWS)


@pytest.fixture(scope="module")
def result(df):
    return summary.summarize(df)


def group(result, name):
    return result["overall"] if name == "overall" else result["routes"][name]


def latencies(name):
    return np.concatenate(list(SENT_LATENCY.values())) if name == "overall" else np.array(SENT_LATENCY[name])


@pytest.mark.parametrize("name", EXPECTED_COUNTS)
def test_counts(result, name):
    g = group(result, name)
    keys = ("arrivals", "sent", "ok", "errors", "dropped", "unfinished")
    assert tuple(g[k] for k in keys) == EXPECTED_COUNTS[name]
    assert g["ok"] + g["errors"] + g["unfinished"] == g["sent"]
    assert g["throughput_rps"] == pytest.approx(g["ok"] / result["span_s"])


def test_span_and_routes(result):
    assert set(result["routes"]) == {"rag", "predict", "lora"}
    assert result["start"] == T0 and result["span_s"] == pytest.approx((len(ROWS) - 1) * GAP_S)
    assert result["overall"]["offered_rps"] == pytest.approx(len(ROWS) / result["span_s"])


@pytest.mark.parametrize("name", EXPECTED_COUNTS)
def test_latency_percentiles_are_exact(result, name):
    g, expected = group(result, name), latencies(name)
    for q in summary.PERCENTILES:
        assert g[f"latency_ms_p{q:g}"] == pytest.approx(np.percentile(expected, q), abs=1e-6), f"p{q:g}"
    assert g["latency_ms_max"] == pytest.approx(expected.max(), abs=1e-6)
    assert g["latency_ms_mean"] == pytest.approx(expected.mean(), abs=1e-6)


def test_unfinished_is_in_latency_but_not_in_service_time(result):
    lora = result["routes"]["lora"]
    assert lora["latency_ms_max"] == pytest.approx(CUT_MS)  # its lower bound: the cut
    assert lora["service_ms_max"] == pytest.approx(OK_LATENCY["lora"].max() - LAG_MS)
    assert lora["lag_ms_p99"] == pytest.approx(LAG_MS)


def test_streaming_percentiles_pool_every_token(result):
    rag = result["routes"]["rag"]
    assert rag["ttft_ms_p50"] == pytest.approx(np.percentile(TTFT_MS, 50))
    pooled = np.concatenate(ITL_MS)
    assert rag["itl_ms_p90"] == pytest.approx(np.percentile(pooled, 90)) and rag["itl_ms_max"] == 8.0
    assert result["routes"]["predict"]["ttft_ms_p50"] is None


def test_windows_split_by_scheduled_time(df):
    win = summary.windows(df, window_s=2.0)  # 20 arrivals a window: rag, then predict, then the rest
    assert win["t_s"].tolist() == pytest.approx([0, 2, 4, 6])
    assert win["arrivals"].tolist() == [20, 20, 20, 4]
    assert win[["dropped", "unfinished", "errors"]].iloc[-1].tolist() == [1, 1, 2]
    assert win["p90_ms"][0] == pytest.approx(np.percentile(OK_LATENCY["rag"], 90), abs=1e-6)
    lora = summary.windows(df, window_s=100.0, route="lora")
    assert lora["arrivals"].tolist() == [11]
    assert lora["p99_ms"][0] == pytest.approx(np.percentile(latencies("lora"), 99))


@pytest.mark.parametrize("lag_ms,cpu,saturated,reason", [
    (2.0, 40.0, False, None),
    (30.0, 40.0, True, "schedule lag p99"),
    (2.0, 95.0, True, "CPU 95%"),
    (2.0, None, False, None),
])
def test_health_flags_a_saturated_generator(lag_ms, cpu, saturated, reason):
    rows = [dict(scheduled=T0 + i, sent=T0 + i + (lag_ms if i == 50 else 0.5) / 1000, end=T0 + i + 0.1,
                 route="rag", status=200, generator="busy") for i in range(60)]
    rows += [dict(scheduled=T0, sent=T0 + 0.001, end=T0 + 0.1, route="rag", status=200, generator="calm")]
    rows += [dict(scheduled=T0, route="rag", dropped=True, generator="calm")]  # no lag: never sent
    cpu_by_generator = {"calm": 10.0} if cpu is None else {"busy": cpu, "calm": 10.0}
    h = summary.health(frame(rows), cpu_by_generator, max_lag_ms=10.0, max_cpu_pct=80.0)
    assert h["saturated"] is saturated
    assert h["generators"]["busy"]["lag_ms_p99"] == pytest.approx(np.percentile([0.5] * 59 + [lag_ms], 99))
    assert h["generators"]["calm"]["requests"] == 2
    if reason:
        assert len(h["reasons"]) == 1 and h["reasons"][0].startswith("busy:") and reason in h["reasons"][0]
    else:
        assert h["reasons"] == []


def test_health_counts_scheduled_arrivals_without_a_record():
    rows = [dict(scheduled=T0 + i, sent=T0 + i, end=T0 + i + 0.1, route="rag", status=200, generator="g1") for i in range(5)]
    h = summary.health(frame(rows), {}, max_lag_ms=10.0, max_cpu_pct=80.0, scheduled={"g1": 5, "g2": 3})
    assert h["lost_records"] == 3 and h["generators"]["g2"]["requests"] == 0  # g2 reported but recorded nothing
    assert h["generators"]["g1"]["scheduled"] == 5
    assert "3 scheduled arrivals have no record" in summary.render(summary.summarize(frame(rows)), h)
    assert summary.health(frame(rows), {}, 10.0, 80.0, scheduled={"g1": 5})["lost_records"] == 0


def test_render_names_every_route_and_the_total(df, result):
    h = summary.health(df, {"g1": 99.0}, max_lag_ms=10.0, max_cpu_pct=80.0)
    text = summary.render(result, h)
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    for name in ("rag", "predict", "lora", "Aggregated"):
        assert name in lines
    assert lines["Aggregated"].split()[1:8] == ["64", "60", "2", "0", "0", "1", "1"]
    assert "TTFT" in text and "WARNING" in text and "generator g1" in text
    assert "WARNING" not in summary.render(result)


def test_summarize_empty(df):
    empty = summary.summarize(df.iloc[:0])
    assert empty["routes"] == {} and empty["overall"]["arrivals"] == 0 and empty["overall"]["latency_ms_p50"] is None


def test_failure_kinds_split_backpressure_from_timeouts():
    rows = [dict(scheduled=T0 + i, sent=T0 + i, end=T0 + i + 0.1, route="rag", generator="g1", **kw) for i, kw in enumerate([
        dict(status=200),
        dict(status=200, degraded=True),
        dict(status=503),  # Serve's max_queued_requests refusing at once
        dict(error="TimeoutError: timed out"),  # the client gave up
        dict(status=408),  # Serve's request_timeout_s
        dict(error="ConnectionTimeout: connect timeout"),
        dict(status=500),
        dict(error="ConnectError: connection refused"),
        dict(unfinished=True, error="unfinished at stop"),
        dict(dropped=True, error="dropped: 8 requests in flight"),
    ])]
    df = frame(rows)
    assert list(summary.failure_kind(df)) == ["ok", "degraded", "rejected", "timeout", "timeout", "timeout",
                                              "error", "error", "unfinished", "dropped"]
    g = summary.summarize(df)["overall"]
    assert (g["ok"], g["degraded"], g["errors"], g["rejected"], g["timeouts"]) == (2, 1, 6, 1, 3)
    text = summary.render(summary.summarize(df))
    assert "503" in text and "t/o" in text
