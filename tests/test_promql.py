"""The named queries' helpers that need no Prometheus (the queries themselves run in tests/e2e)."""


def test_the_live_view_is_prometheus_graph_page_of_the_trial_series():
    from urllib.parse import parse_qs, urlsplit

    from tuner import promql

    url = promql.live_view_url("http://127.0.0.1:9090/", "10s", range_s=300)
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("127.0.0.1:9090", "/graph")
    q = parse_qs(parts.query)
    series = promql.trial_series("10s")
    assert [q[f"g{i}.expr"][0] for i in range(len(promql.LIVE_PANELS))] == [series[n] for n in promql.LIVE_PANELS]
    assert all(q[f"g{i}.range_input"] == ["300s"] for i in range(len(promql.LIVE_PANELS)))
