"""The open-loop view in Locust's web UI: offered against achieved rate, drops, requests in flight.

Locust's user count and its "Number of Users" chart say nothing about open-loop load: each
generator runs one dispatching user and the shape sets the rate. What says something is
whether the requests the shape offers are sent (or dropped at the in-flight cap) and
answered. This module shows that through the extension points Locust's web UI maintains
(its `extend_web_ui` example):

- an "Open loop" tab (`template_args["extended_tabs"]` and `["extended_tables"]`) whose rows
  ride on `/stats/requests`, which the UI polls every 2 s, as `extended_stats`: per generator
  and in total, the offered rate (from the shape), sent, ok, failed and dropped per second
  over the last `WINDOW_S`, and the requests in flight;
- a page at `/loadgen/` that draws offered, sent, ok and dropped per second over the test,
  linked from the "Download Data" tab (`extended_csv_files`), and its data at `/loadgen/live`;
- the form's user count and ramp-up disabled as for any shape without common options (Locust
  shows them as 0, "Disabled for tests using LoadTestShape class"). Locust disables its run
  time field with them; the traffic duration is the scenario's `duration` field.

The counts come from the generators (`loadgen.openloop`): a single process is read every
second; a worker adds its counts to the stats report it sends the master every 3 s
(`report_to_master`, Locust's own channel for extra stats), so a master's figures are up to
3 s old (each generator's rates span the times its counts were taken, so they stay right).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable

import gevent
import numpy as np
from flask import Blueprint, Response, jsonify, request, url_for

log = logging.getLogger("loadgen")

WINDOW_S = 10.0  # rates over the last 10 s, the window of Locust's own current RPS
SAMPLE_S = 1.0
HISTORY_POINTS = 86_400  # a point a second: a day of the chart's data
TAB = "open-loop"
REPORT_KEY = "loadgen_live"  # a worker's counts in its stats report

Counts = dict[str, dict[str, int]]  # generator -> cumulative counts (sent, ok, failed, dropped) and in_flight

# (key, title, decimals in the tab; None: shown as is)
COLUMNS = (
    ("name", f"Generator (rates over the last {WINDOW_S:g} s)", None),
    ("offered_rps", "Offered req/s (shape)", 2),
    ("sent_rps", "Sent req/s", 2),
    ("ok_rps", "OK req/s (throughput)", 2),
    ("failed_rps", "Failed req/s", 2),
    ("dropped_rps", "Dropped req/s (in-flight cap full)", 2),
    ("in_flight", "In flight", None),
    ("sent", "Sent", None),
    ("ok", "OK", None),
    ("failed", "Failed", None),
    ("dropped", "Dropped", None),
)
_COUNTED = ("sent", "ok", "failed", "dropped")


class LiveView:
    """Samples the generators' counts once a second; the tab's rows and the chart's points.

    `local` returns this process's own counts (a single-process run); a master has none and
    gets its workers' counts through `update`. Each generator's rates, and the share of the
    offered rate they are set against, span the times its counts were taken: a worker's
    report is seconds old when the master samples it."""

    def __init__(self, local: Callable[[], Counts] | None = None):
        self.local = local
        self.epoch: float | None = None
        self.stopped: float | None = None
        self.latest: dict[str, tuple[float, dict[str, int]]] = {}  # generator -> (when taken, its counts)
        self.samples: deque[dict[str, tuple[float, dict[str, int]]]] = deque()
        self.times: deque[float] = deque()
        self.history: deque[dict] = deque(maxlen=HISTORY_POINTS)
        self.rows: list[dict] = []
        self._edges = self._cumulative = None

    def start(self, epoch: float, shape) -> None:
        """A test starts: time 0 of its `shape` is `epoch`; counts and points so far are dropped."""
        self.epoch, self.stopped = epoch, None
        self._edges, self._cumulative = shape.grid()  # once: the offered rate is read every second
        self.latest, self.rows = {}, []
        self.samples.clear()
        self.times.clear()
        self.history.clear()

    def stop(self, now: float) -> None:
        """The test stopped: the chart goes on for one window (the rates fall to what is left), then ends."""
        self.stopped = now

    def update(self, epoch: float, counts: Counts, at: float) -> None:
        """A worker's counts, taken at `at`, for the test that started at `epoch` (a report of an
        earlier test is late: ignored)."""
        if epoch == self.epoch:
            self.latest.update({g: (at, c) for g, c in counts.items()})

    def offered(self, t0: float, t1: float) -> float | None:
        """Requests/s the shape offers over [t0, t1) (wall-clock times), all generators together."""
        if self.epoch is None or t1 <= t0:
            return None
        lo, hi = np.interp([t0 - self.epoch, t1 - self.epoch], self._edges, self._cumulative)
        return float(hi - lo) / (t1 - t0)

    def sample(self, now: float) -> None:
        """Take this second's counts; recompute the rows and add a chart point."""
        if self.local is not None:
            self.latest.update({g: (now, c) for g, c in self.local().items()})
        self.samples.append(dict(self.latest))
        self.times.append(now)
        while len(self.times) > 2 and self.times[1] <= now - WINDOW_S:
            self.samples.popleft()
            self.times.popleft()
        last = self.samples[-1]
        rows = []
        for g in sorted(last):
            first = next(s[g] for s in self.samples if g in s)  # its oldest counts in the window
            offered = self.offered(first[0], last[g][0])
            rows.append(_row(g, first, last[g], None if offered is None else offered / len(last)))
        total = _total(rows)
        self.rows = [*rows, total]
        charting = self.epoch is not None and (self.stopped is None or now <= self.stopped + WINDOW_S)
        if charting and total["sent_rps"] is not None:
            self.history.append({"t_s": round(now - self.epoch, 3),
                                 **{k: total[k] for k in ("offered_rps", "sent_rps", "ok_rps", "failed_rps",
                                                          "dropped_rps", "in_flight")}})

    def live(self, epoch: float | None = None, since: float | None = None) -> dict:
        """The rows and the chart's points (those after `since` when `epoch` is this test's)."""
        points = list(self.history)
        if since is not None and epoch == self.epoch:
            points = [p for p in points if p["t_s"] > since]
        return {"epoch": self.epoch, "window_s": WINDOW_S, "rows": self.rows, "points": points}


def _row(name: str, first: tuple[float, dict], last: tuple[float, dict], offered: float | None) -> dict:
    """A generator's row: rates between its `first` and `last` (time, counts) in the window."""
    (t0, before), (t1, after) = first, last

    def rate(key: str) -> float | None:
        return (after.get(key, 0) - before.get(key, 0)) / (t1 - t0) if t1 > t0 else None

    return {"name": name, "offered_rps": offered, **{f"{k}_rps": rate(k) for k in _COUNTED},
            "in_flight": after.get("in_flight", 0), **{k: after.get(k, 0) for k in _COUNTED}}


def _total(rows: list[dict]) -> dict:
    """The sum of the generators' rows; a rate no generator has yet is None."""
    out: dict = {"name": "Total"}
    for key in ("offered_rps", *(f"{k}_rps" for k in _COUNTED)):
        known = [r[key] for r in rows if r[key] is not None]
        out[key] = sum(known) if known else None
    for key in ("in_flight", *_COUNTED):
        out[key] = sum(r[key] for r in rows)
    return out


def attach(environment, view: LiveView) -> None:
    """Add the open-loop tab, page and data to the web UI, disable its user fields, and sample every second."""
    # Imported here: importing locust monkey-patches the process, which LiveView alone does not need.
    from locust.log import greenlet_exception_logger

    web_ui = environment.web_ui
    web_ui.template_args.update(
        extended_tabs=[{"title": "Open loop", "key": TAB}],
        extended_tables=[{"key": TAB, "structure": [{"key": k, "title": t, **({"round": r} if r else {})}
                                                    for k, t, r in COLUMNS]}],
        extended_csv_files=[{"href": "./loadgen/", "title": "Open-loop chart: offered, sent, ok and dropped per second"}],
    )
    _disable_user_fields(web_ui)

    @web_ui.app.after_request
    def _with_open_loop_rows(response: Response) -> Response:
        if request.endpoint == "locust.request_stats" and response.is_json:
            response.set_data(json.dumps({**response.get_json(), "extended_stats": [{"key": TAB, "data": view.rows}]}))
        return response

    pages = Blueprint("loadgen", __name__, url_prefix=getattr(environment.parsed_options, "web_base_path", None))

    @pages.route("/loadgen/")
    @web_ui.auth_required_if_enabled
    def chart() -> str:
        return CHART_PAGE.replace("{{LIVE}}", url_for("loadgen.live")).replace("{{COLUMNS}}", json.dumps(COLUMNS))

    @pages.route("/loadgen/live")
    @web_ui.auth_required_if_enabled
    def live() -> Response:
        epoch, since = request.args.get("epoch", type=float), request.args.get("since", type=float)
        return jsonify(view.live(epoch, since))

    web_ui.app.register_blueprint(pages)

    def sampler() -> None:
        while True:
            view.sample(time.time())
            gevent.sleep(SAMPLE_S)

    gevent.spawn(sampler).link_exception(greenlet_exception_logger(log))


def _disable_user_fields(web_ui) -> None:
    """Set the form's `hide_common_options`. Locust recomputes it from the shape on every page
    load (`update_template_args`), which has no setting to keep it, so the update is wrapped."""
    update = web_ui.update_template_args

    def update_without_user_fields() -> None:
        update()
        web_ui.template_args["hide_common_options"] = True

    web_ui.update_template_args = update_without_user_fields
    web_ui.template_args["hide_common_options"] = True


CHART_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Open-loop load</title>
<style>
body{font:14px sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .8em;text-align:right;border-bottom:1px solid #ddd}
td:first-child,th:first-child{text-align:left}
svg{width:100%;height:360px;border:1px solid #ddd}
#key span{margin-right:1.5em}#key i{display:inline-block;width:1.2em;height:.25em;vertical-align:middle;margin-right:.3em}
</style></head><body>
<h2>Open-loop load: offered against achieved</h2>
<p>The shape sets the rate; Locust's user count (one dispatching user per generator) means nothing here.
Rates are per second over the last <span id="window"></span> s; dropped: arrivals not sent because the
in-flight cap was full.</p>
<table id="rows"></table>
<div id="key"></div>
<svg id="chart" viewBox="0 0 1000 360" preserveAspectRatio="none"></svg>
<script>
const LIVE = "{{LIVE}}", COLUMNS = {{COLUMNS}};
const LINES = [["offered_rps", "#888888", "offered (shape)"], ["sent_rps", "#0099ff", "sent"],
               ["ok_rps", "#00ca5a", "ok (throughput)"], ["dropped_rps", "#ff6d6d", "dropped"]];
let epoch = null, points = [];
document.getElementById("key").innerHTML =
  LINES.map(([, color, title]) => `<span><i style="background:${color}"></i>${title}</span>`).join("");

function table(rows) {
  const el = document.getElementById("rows");
  el.replaceChildren();
  const head = el.insertRow();
  COLUMNS.forEach(([, title]) => { const th = document.createElement("th"); th.textContent = title; head.append(th); });
  rows.forEach(row => {
    const tr = el.insertRow();
    COLUMNS.forEach(([key, , round]) => {
      const v = row[key];
      tr.insertCell().textContent = v == null ? "" : round ? v.toFixed(round) : v;
    });
  });
}

function chart() {
  const svg = document.getElementById("chart"), W = 1000, H = 360;
  const tMax = Math.max(1, ...points.map(p => p.t_s));
  const yMax = Math.max(1, ...points.flatMap(p => LINES.map(([k]) => p[k] || 0))) * 1.1;
  const x = t => (Math.max(t, 0) / tMax) * W, y = v => H - ((v || 0) / yMax) * H;
  svg.innerHTML = LINES.map(([k, color]) =>
    `<polyline fill="none" stroke="${color}" stroke-width="2" vector-effect="non-scaling-stroke"
       points="${points.map(p => `${x(p.t_s)},${y(p[k])}`).join(" ")}"/>`).join("") +
    `<text x="4" y="14" font-size="12">${yMax.toFixed(1)} req/s</text>` +
    `<text x="${W - 4}" y="${H - 4}" font-size="12" text-anchor="end">${tMax.toFixed(0)} s</text>`;
}

async function refresh() {
  const since = points.length ? `&since=${points[points.length - 1].t_s}` : "";
  const live = await (await fetch(`${LIVE}?epoch=${epoch}${since}`)).json();
  if (live.epoch !== epoch) { epoch = live.epoch; points = []; }
  points = points.concat(live.points);
  document.getElementById("window").textContent = live.window_s;
  table(live.rows);
  chart();
}
refresh();
setInterval(refresh, 2000);
</script></body></html>
"""
