"""Open-loop load in Locust, free of coordinated omission.

A scenario file imports `OpenLoopUser` and `OpenLoopShape` (so Locust finds them) and declares,
with `loadgen.scenario`'s `@scenario(option(...), ...)`, the function that turns the parsed options
into a shape; the options join Locust's parser here. Then:

- the master (or the single local process) resolves the run's duration, picks one common
  start time, and sends each generator process its plan: start time, index, count;
- every generator computes the same arrival schedule from (shape, process, seed) and sends
  its round-robin share, so N workers together produce the shape's rate, not N times it;
- each arrival is sent at its due time whatever is still outstanding (one greenlet per
  request over Locust's FastHttpSession, whose pool is as large as the in-flight cap);
  over the cap it is dropped and counted, never delayed;
- Locust's own stats get the latency from the due time, so its UI, CSV and HTML show the
  coordinated-omission-free numbers; the raw records go to the master in Arrow batches
  and into one Parquet file; at the end the exact-percentile summary is printed and saved,
  and a line before Locust's own closing tables says that theirs are approximations;
- with the web UI, an "Open loop" tab shows offered against achieved rate, drops and requests
  in flight (`loadgen.webui`), from counts each generator keeps and reports to the master.

`OpenLoopShape` runs one dispatching user per generator process and ends the test when
every generator has finished its schedule and drained, or `--drain` seconds after the end.

With `--abort-when RULES` (loadgen.abort) the master counts each batch of records as it comes;
once a rule's clause can no longer hold whatever the rest of the run does (and `--abort-grace`
seconds of the window have passed) it tells every generator to stop sending; they drain and
report done as at the end, and the summary says `aborted: {clause, at_s}`.

A process's run state (its scenario, plan, generator and collector) is a `RunState` on Locust's
`Environment`, as `environment.loadgen`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import gevent
import psutil
from gevent.event import Event
from gevent.pool import Group
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadgen import records as rec
from loadgen import summary as summ
from loadgen import webui
from loadgen.sse import itl_ms, tokens_in
from loadgen.abort import Watch, parse_rules
from loadgen.arrivals import ArrivalProcess, Arrivals, arrivals
from loadgen.mix import NUM_ADAPTERS, MixSettings, RequestMix, parse_weights
from loadgen.options import DEFAULT_HOST, add_arguments, check_options, non_loopback_reason, traffic_seconds
from loadgen.scenario import Scenario, Traffic, registry
from loadgen.traces import TraceError

log = logging.getLogger("loadgen")

PLAN, RECORDS, DONE = "loadgen:plan", "loadgen:records", "loadgen:done"
ABORT = "loadgen:abort"  # master -> generators: a clause can no longer hold, stop sending
# the record fields the abort rules read (loadgen.abort.bad_rows, with the derived latency)
_WATCHED = ["scheduled", "sent", "end", "route", "status", "error", "ttft_ms", "dropped", "unfinished"]
LEAD_S = 1.0  # start time this far ahead, so every generator has its schedule ready
FLUSH_ROWS, FLUSH_S = 2000, 1.0
# Locust's tables go to its stats logger (stderr), after the exact summary (stdout); the note goes with them.
LOCUST_TABLES_NOTE = ("Locust's own tables below approximate: their percentiles come from response times rounded "
                      "to 2 significant digits, and they leave out dropped arrivals; the exact figures, from every "
                      "request, are in the table above (and in summary.json).")
_HEADERS = {"Accept-Encoding": "identity"}  # SSE events must arrive as sent, not inside a compressed stream


def build_traffic(declared: Scenario, opts, seconds: float,
                  adapters: int = NUM_ADAPTERS) -> tuple[Traffic, ArrivalProcess, MixSettings]:
    """The scenario's traffic, arrival process and mix for the parsed options (raises ValueError)."""
    check_options(opts)
    made = declared.traffic(opts, seconds)
    traffic = made if isinstance(made, Traffic) else Traffic(made)
    kind = opts.arrival or ("replay" if traffic.trace is not None else "poisson")
    process = ArrivalProcess(kind=kind, burstiness=opts.burstiness, seed=opts.seed)
    mix = MixSettings(weights=parse_weights(opts.mix), rag_stream=not opts.rag_no_stream,
                      adapters=opts.adapters or adapters, zipf_exponent=opts.zipf,
                      shift_s=getattr(opts, "shift_every", None) or None)
    return traffic, process, mix


def abort_watch(declared: Scenario, opts, adapters: int) -> Watch | None:
    """The run's `--abort-when` rules, with the exact arrivals of each route: the seeded schedule
    every generator sends, which the rules' certainty needs (its expectation would not do)."""
    if not getattr(opts, "abort_when", None):
        return None
    rules = parse_rules(opts.abort_when)
    seconds = traffic_seconds(opts)
    traffic, process, mix = build_traffic(declared, opts, seconds, adapters)
    arr = arrivals(traffic.shape, process)
    counts: dict[str | None, int] = {None: len(arr)}
    if any(r.route for r in rules):  # each arrival's path, as its generator will build the request
        trace = traffic.trace
        reqs = RequestMix(mix, arr.times, opts.seed, trace.prompt_tokens if trace else None,
                          trace.output_tokens if trace else None)
        counts |= Counter(reqs.request(i, None if arr.rows is None else int(arr.rows[i])).path for i in range(len(arr)))
    return Watch(rules, counts, seconds, opts.abort_grace)


def _discover_adapters(host: str, timeout: float) -> int | None:
    """How many adapters the app serves, from its OpenAI-style /v1/models (None if unknown)."""
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        data = httpx.get(f"{host.rstrip('/')}/v1/models", timeout=timeout).json()["data"]
        return len(data) or None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


class Generator:
    """One process's share of a run: dispatches its arrivals, sends, records."""

    def __init__(self, environment, declared: Scenario, plan: dict):
        opts = environment.parsed_options
        self.env = environment
        self.traffic, process, mix = build_traffic(declared, opts, plan["seconds"], plan["adapters"])
        self.arrivals: Arrivals = arrivals(self.traffic.shape, process)
        trace = self.traffic.trace
        self.mix = RequestMix(mix, self.arrivals.times, opts.seed,
                              trace.prompt_tokens if trace else None, trace.output_tokens if trace else None)
        self.epoch = plan["epoch"]
        self.mine = self.arrivals.partition(plan["index"], plan["count"])
        if self.mine.size:  # build the question set now, not on the first due request
            self.mix.request(int(self.mine[0]), None if self.arrivals.rows is None else int(self.arrivals.rows[self.mine[0]]))
        self.gen_id = generator_id()
        self.tally = environment.loadgen.tally
        self.cap = opts.max_in_flight
        self.drain_s = opts.drain
        self.buffer = rec.RecordBuffer()
        self.group = Group()
        self.inflight: dict[int, dict] = {}
        self.claimed = self.finished = False
        self.halt = environment.loadgen.halt  # set when the master aborts the run
        self.dispatched = 0  # arrivals sent or dropped so far
        self._last_flush = time.time()
        self._proc = psutil.Process()
        self._cpu0, self._wall0 = self._cpu_s(), time.time()

    def _cpu_s(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def run(self, client) -> None:
        """Send this generator's arrivals at their due times, then drain and report done."""
        times, rows = self.arrivals.times, self.arrivals.rows
        for k in self.mine:
            due = self.epoch + float(times[k])
            delay = due - time.time()
            if delay > 0:
                self.halt.wait(delay)
            if self.halt.is_set():
                break
            self.dispatched += 1
            row = None if rows is None else int(rows[k])
            if len(self.group) >= self.cap:
                req = self.mix.request(int(k), row)
                self._record(scheduled=due, route=req.path, adapter=req.adapter, dropped=True,
                             error=f"dropped: {self.cap} requests in flight")
                continue
            self.tally["sent"] += 1
            self.group.spawn(self._send, client, int(k), row, due)
        self.finish()

    def _send(self, client, k: int, row: int | None, due: float) -> None:
        req = self.mix.request(k, row)
        sent = time.time()
        r = {"scheduled": due, "sent": sent, "route": req.path, "adapter": req.adapter,
             "prompt_tokens": req.prompt_tokens, "output_tokens": None}
        self.inflight[k] = r
        try:
            with client.request("POST", req.path, json=req.body, name=req.path, stream=True,
                                headers=_HEADERS, catch_response=True) as resp:
                r["first_byte"] = time.time()
                r["status"] = int(resp.status_code or 0)
                r["bytes"], stream = self._read(resp, req.stream and r["status"] == 200)
                r["end"] = time.time()
                r.update(stream)
                err = getattr(resp, "error", None)
                if err is not None:
                    r["error"] = f"{type(err).__name__}: {err}"[:200]
                elif stream.get("incomplete"):
                    r["error"] = "stream ended before [DONE]"
                    resp.failure(r["error"])
                resp.request_meta["response_time"] = (r["end"] - due) * 1000
                resp.request_meta["response_length"] = r["bytes"]
        except Exception as e:  # noqa: BLE001 - a failed read is a failed request, recorded as such
            r.setdefault("end", time.time())
            r["error"] = f"{type(e).__name__}: {e}"[:200]
        finally:
            r.pop("incomplete", None)
            if self.inflight.pop(k, None) is not None:
                self._record(**r)

    @staticmethod
    def _read(resp, sse: bool) -> tuple[int, dict]:
        """Read the body; for an SSE stream, note token times (TTFT, ITL) and the token count."""
        if not sse:
            body = resp.content or b""
            return len(body), {"degraded": b'"degraded":true' in body.replace(b" ", b"")}
        n, token_times, done, degraded = 0, [], False, False
        # One SSE event per read, as it arrives (a sized read would wait for the whole buffer).
        while event := resp._response.readline(b"\n\n"):
            now = time.time()
            n += len(event)
            data = bytes(event).strip().removeprefix(b"data:").strip()
            if data == b"[DONE]":
                done = True
            elif b'"delta"' in data or b'"choices"' in data:
                token_times.append((now, tokens_in(data)))
            elif b'"degraded"' in data:
                degraded = True
        out = {"output_tokens": sum(k for _, k in token_times), "incomplete": not done, "degraded": degraded}
        if token_times:
            out["first_token"] = token_times[0][0]
            out["itl_ms"] = itl_ms(token_times)
        return n, out

    def _record(self, **row) -> None:
        self.tally[_outcome(row)] += 1
        if "first_token" in row:
            row["ttft_ms"] = (row.pop("first_token") - row["scheduled"]) * 1000
        self.buffer.add(generator=self.gen_id, **row)
        now = time.time()
        if len(self.buffer) >= FLUSH_ROWS or now - self._last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Ship buffered records to the collector (the master, or this process's own)."""
        self._last_flush = time.time()
        if len(self.buffer):
            self.env.runner.send_message(RECORDS, rec.encode(self.buffer.take()))

    def finish(self) -> None:
        """Record what is still outstanding as unfinished, flush, and report done (once)."""
        if self.finished:
            return
        self.finished = True
        self.group.join(timeout=self.drain_s)
        cut = time.time()
        for r in list(self.inflight.values()):
            self._record(**{**r, "end": cut, "unfinished": True, "error": "unfinished at stop"})
        self.inflight.clear()
        self.group.kill(block=False)
        self.flush()
        wall = max(time.time() - self._wall0, 1e-9)
        # Aborted, the arrivals after the stop were never due: only those before it must have records.
        given = self.dispatched if self.halt.is_set() else int(self.mine.size)
        self.env.runner.send_message(DONE, {"generator": self.gen_id,
                                            "cpu_pct": 100 * (self._cpu_s() - self._cpu0) / wall,
                                            "arrivals": given})


def generator_id() -> str:
    """This process's generator, as its records name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _outcome(row: dict) -> str:
    """A record's place in the live counts: `dropped`, `ok` (as `summary.ok_mask` counts it) or `failed`."""
    if row.get("dropped"):
        return "dropped"
    ok = row.get("error") is None and 200 <= (row.get("status") or 0) <= 399
    return "ok" if ok else "failed"


class Collector:
    """On the master (or the single process): writes records, then summarises the run."""

    def __init__(self, environment, generators: int, watch: Watch | None = None):
        opts = environment.parsed_options
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = Path(getattr(opts, "locustfile", "") or "run").stem
        self.dir = Path(opts.out) / f"{stamp}-{name}"
        self.writer = rec.RecordWriter(self.dir / "records.parquet")
        self.env, self.expected = environment, generators
        self.done: dict[str, dict] = {}
        self.epoch: float | None = None
        self.closed = False
        self.watch = watch
        self.aborted: dict | None = None

    def add(self, data: bytes) -> None:
        if not self.closed:
            batch = rec.decode(data)
            self.writer.write(batch)
            if self.watch is not None and self.aborted is None:
                self.watch.add(rec.with_derived(batch.select(_WATCHED).to_pandas()))
                self.check_abort()

    def check_abort(self) -> None:
        """Tell every generator to stop once a clause can no longer hold and the grace is over
        (on each batch, and on the shape's tick: a grace can end between batches)."""
        if self.watch is None or self.aborted is not None or self.epoch is None:
            return
        fired = self.watch.due(time.time() - self.epoch)
        if fired is not None:
            self.aborted = {"clause": fired.clause, "at_s": round(fired.at_s, 3)}
            log.warning("aborting at %.1f s: %s can no longer hold", fired.at_s, fired.clause)
            self.env.runner.send_message(ABORT, self.aborted)

    def all_done(self) -> bool:
        return len(self.done) >= self.expected

    def close(self) -> None:
        """Finish the records file, print the exact-percentile summary, write summary.json."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        opts = self.env.parsed_options
        df = rec.load(self.writer.path, columns=summ.COLUMNS)
        summary = summ.summarize(df)
        cpu = {g: d["cpu_pct"] for g, d in self.done.items()}
        scheduled = {g: d["arrivals"] for g, d in self.done.items() if "arrivals" in d}
        summary["generator_health"] = summ.health(df, cpu, opts.max_lag_ms, opts.max_cpu, scheduled)
        summary["records"] = str(self.writer.path)
        summary["epoch"] = self.epoch  # time 0 of the shape: the load window starts here
        summary["traffic_seconds"] = traffic_seconds(opts)
        summary["aborted"] = self.aborted  # {clause, at_s} when --abort-when stopped the run
        summary["options"] = {k: v for k, v in vars(opts).items() if isinstance(v, (int, float, str, bool, type(None)))}
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        text = summ.render(summary, summary["generator_health"])
        print(f"\n{text}\nrecords: {self.writer.path} ({self.writer.rows} rows)", file=sys.stdout, flush=True)
        if self.aborted:
            print(f"ABORTED at {self.aborted['at_s']:g} s: {self.aborted['clause']} can no longer hold", flush=True)
        if summary["generator_health"]["saturated"]:
            log.warning("load generator fell behind: %s", "; ".join(summary["generator_health"]["reasons"]))


@dataclass
class RunState:
    """One process's run, as `environment.loadgen`: the scenario it was started with, and the
    plan, generator and collector of the test now running (none without a scenario); the
    generator's counts for the web UI (`tally`, kept after the test stops); the web UI's
    open-loop view (`live`, where this process serves the UI); whether an exact summary was
    printed (`summarized`)."""

    scenario: Scenario | None
    plan: dict | None = None
    generator: Generator | None = None
    collector: Collector | None = None
    halt: Event = field(default_factory=Event)  # the master's abort for the test now running (its generator stops)
    tally: Counter = field(default_factory=Counter)
    live: webui.LiveView | None = None
    summarized: bool = False


def _live_counts(run: RunState) -> dict[str, dict[str, int]]:
    """This process's counts of the test now running (or the last one), by generator."""
    gen = run.generator
    return {generator_id(): {**run.tally, "in_flight": len(gen.group) if gen is not None else 0}}


# Locust builds the parser of a run after importing the locustfile: the scenario declared there is known.
@events.init_command_line_parser.add_listener
def _arguments(parser):
    add_arguments(parser, registry.current)


def _fail(environment, message: str) -> None:
    log.error(message)
    environment.process_exit_code = 2
    if environment.runner is not None:
        gevent.spawn(environment.runner.quit)


@events.init.add_listener
def _init(environment, **_kw):
    runner = environment.runner
    if runner is None:
        return
    run = environment.loadgen = RunState(registry.current)
    if run.scenario is None:
        return
    opts = environment.parsed_options
    if not isinstance(runner, WorkerRunner):
        reason = None if getattr(opts, "allow_remote", False) else non_loopback_reason(environment.host)
        if reason:
            print(f"error: target host {environment.host}: {reason} (pass --allow-remote to allow it)", file=sys.stderr)
            sys.exit(2)
        try:
            build_traffic(run.scenario, opts, traffic_seconds(opts))
        except (ValueError, TraceError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        runner.register_message(RECORDS, _on_records)
        runner.register_message(DONE, _on_done)
        if environment.web_ui is not None:
            local = None if isinstance(runner, MasterRunner) else (lambda: _live_counts(run))
            run.live = webui.LiveView(local)
            webui.attach(environment, run.live)
    if not isinstance(runner, MasterRunner):
        runner.register_message(PLAN, _on_plan)
        runner.register_message(ABORT, _on_abort)
    # Workers add their counts to the stats report they send the master every few seconds.
    if isinstance(runner, WorkerRunner):
        @environment.events.report_to_master.add_listener
        def _report(data, **_kw):
            if run.plan is not None:
                data[webui.REPORT_KEY] = {"epoch": run.plan["epoch"], "counts": _live_counts(run), "at": time.time()}
    elif isinstance(runner, MasterRunner) and run.live is not None:
        @environment.events.worker_report.add_listener
        def _worker_report(data, **_kw):
            if webui.REPORT_KEY in data:
                run.live.update(**data[webui.REPORT_KEY])


def _on_plan(environment, msg, **_kw):
    run = environment.loadgen
    run.plan = msg.data
    run.generator = None
    run.halt = Event()  # an abort may come before this process has built its generator
    run.tally = Counter()


def _on_abort(environment, msg, **_kw):
    environment.loadgen.halt.set()


def _on_records(environment, msg, **_kw):
    if environment.loadgen.collector is not None:
        environment.loadgen.collector.add(msg.data)


def _on_done(environment, msg, **_kw):
    if environment.loadgen.collector is not None:
        environment.loadgen.collector.done[msg.data["generator"]] = msg.data


@events.test_start.add_listener
def _test_start(environment, **_kw):
    runner = environment.runner
    run = environment.loadgen
    if run.scenario is None or isinstance(runner, WorkerRunner):
        return
    clients = sorted(c.id for c in runner.clients.ready + runner.clients.running + runner.clients.spawning) \
        if isinstance(runner, MasterRunner) else [None]
    opts = environment.parsed_options
    adapters = opts.adapters or _discover_adapters(environment.host or DEFAULT_HOST, 5.0) or NUM_ADAPTERS
    run.collector = Collector(environment, len(clients), abort_watch(run.scenario, opts, adapters))
    epoch = time.time() + LEAD_S
    run.collector.epoch = epoch
    # Published at once, so a harness can act at times of the load window (faults, tuner/inject.py).
    run.collector.dir.mkdir(parents=True, exist_ok=True)
    (run.collector.dir / "epoch").write_text(f"{epoch!r}\n")
    for index, client in enumerate(clients):
        runner.send_message(PLAN, {"epoch": epoch, "index": index, "count": len(clients),
                                   "seconds": traffic_seconds(opts), "adapters": adapters}, client_id=client)
    if run.live is not None:
        run.live.start(epoch, build_traffic(run.scenario, opts, traffic_seconds(opts))[0].shape)


@events.test_stop.add_listener
def _test_stop(environment, **_kw):
    run = environment.loadgen
    if run.scenario is None:
        return
    if run.generator is not None:
        run.generator.finish()
        run.generator = None
    if run.live is not None:
        run.live.stop(time.time())
    if run.collector is not None and not isinstance(environment.runner, WorkerRunner):
        run.collector.close()
        run.collector = None
        run.summarized = True


# Locust prints its own request and percentile tables after this event; they approximate and
# would read as a second, different answer to the exact summary printed at the test's stop.
@events.quitting.add_listener
def _before_locusts_tables(environment, **_kw):
    run = getattr(environment, "loadgen", None)
    # With --json-file Locust prints no tables.
    if run is None or not run.summarized or getattr(environment.parsed_options, "json_file", None):
        return
    tables = logging.getLogger("locust.stats_logger")
    tables.info("")
    tables.info(LOCUST_TABLES_NOTE)


class OpenLoopUser(FastHttpUser):
    """One per generator process: dispatches that process's share of the arrivals."""

    host = DEFAULT_HOST

    def __init__(self, environment):
        opts = environment.parsed_options
        self.concurrency = opts.max_in_flight
        self.network_timeout = self.connection_timeout = opts.request_timeout
        super().__init__(environment)

    @task
    def dispatch(self):
        run = self.environment.loadgen
        while run.plan is None:
            gevent.sleep(0.05)
        if run.generator is None:
            run.generator = Generator(self.environment, run.scenario, run.plan)
        gen = run.generator
        if gen.claimed:  # more users than generators: the extra ones idle
            gevent.sleep(3600)
            return
        gen.claimed = True
        gen.run(self.client)
        while True:
            gevent.sleep(3600)


class OpenLoopShape(LoadTestShape):
    """One dispatching user per generator; stops once all have finished (or `--drain` s past the end)."""

    use_common_options = True  # -t/--run-time sets the traffic duration

    def tick(self):
        runner = self.runner
        opts = runner.environment.parsed_options
        n = max(1, runner.worker_count) if isinstance(runner, MasterRunner) else 1
        col = runner.environment.loadgen.collector
        elapsed = self.get_run_time()
        if col is not None:
            col.check_abort()
        if col is not None and col.all_done() or elapsed > LEAD_S + traffic_seconds(opts) + opts.drain + 5:
            return None
        return n, n
