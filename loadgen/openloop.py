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
  and into one Parquet file; at the end the exact-percentile summary is printed and saved.

`OpenLoopShape` runs one dispatching user per generator process and ends the test when
every generator has finished its schedule and drained, or `--drain` seconds after the end.

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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import gevent
import psutil
from gevent.pool import Group
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadgen import records as rec
from loadgen import summary as summ
from loadgen.sse import itl_ms, tokens_in
from loadgen.arrivals import ArrivalProcess, Arrivals, arrivals
from loadgen.mix import NUM_ADAPTERS, MixSettings, RequestMix, parse_weights
from loadgen.options import DEFAULT_HOST, add_arguments, check_options, non_loopback_reason, traffic_seconds
from loadgen.scenario import Scenario, Traffic, registry
from loadgen.traces import TraceError

log = logging.getLogger("loadgen")

PLAN, RECORDS, DONE = "loadgen:plan", "loadgen:records", "loadgen:done"
LEAD_S = 1.0  # start time this far ahead, so every generator has its schedule ready
FLUSH_ROWS, FLUSH_S = 2000, 1.0
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
        self.gen_id = f"{socket.gethostname()}:{os.getpid()}"
        self.cap = opts.max_in_flight
        self.drain_s = opts.drain
        self.buffer = rec.RecordBuffer()
        self.group = Group()
        self.inflight: dict[int, dict] = {}
        self.claimed = self.finished = False
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
                gevent.sleep(delay)
            row = None if rows is None else int(rows[k])
            if len(self.group) >= self.cap:
                req = self.mix.request(int(k), row)
                self._record(scheduled=due, route=req.path, adapter=req.adapter, dropped=True,
                             error=f"dropped: {self.cap} requests in flight")
                continue
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
        self.env.runner.send_message(DONE, {"generator": self.gen_id,
                                            "cpu_pct": 100 * (self._cpu_s() - self._cpu0) / wall,
                                            "arrivals": int(self.mine.size)})


class Collector:
    """On the master (or the single process): writes records, then summarises the run."""

    def __init__(self, environment, generators: int):
        opts = environment.parsed_options
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = Path(getattr(opts, "locustfile", "") or "run").stem
        self.dir = Path(opts.out) / f"{stamp}-{name}"
        self.writer = rec.RecordWriter(self.dir / "records.parquet")
        self.env, self.expected = environment, generators
        self.done: dict[str, dict] = {}
        self.epoch: float | None = None
        self.closed = False

    def add(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(rec.decode(data))

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
        summary["options"] = {k: v for k, v in vars(opts).items() if isinstance(v, (int, float, str, bool, type(None)))}
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        text = summ.render(summary, summary["generator_health"])
        print(f"\n{text}\nrecords: {self.writer.path} ({self.writer.rows} rows)", file=sys.stdout, flush=True)
        if summary["generator_health"]["saturated"]:
            log.warning("load generator fell behind: %s", "; ".join(summary["generator_health"]["reasons"]))


@dataclass
class RunState:
    """One process's run, as `environment.loadgen`: the scenario it was started with, and the
    plan, generator and collector of the test now running (none without a scenario)."""

    scenario: Scenario | None
    plan: dict | None = None
    generator: Generator | None = None
    collector: Collector | None = None


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
    if not isinstance(runner, MasterRunner):
        runner.register_message(PLAN, _on_plan)


def _on_plan(environment, msg, **_kw):
    run = environment.loadgen
    run.plan = msg.data
    run.generator = None


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
    run.collector = Collector(environment, len(clients))
    epoch = time.time() + LEAD_S
    run.collector.epoch = epoch
    # Published at once, so a harness can act at times of the load window (faults, tuner/inject.py).
    run.collector.dir.mkdir(parents=True, exist_ok=True)
    (run.collector.dir / "epoch").write_text(f"{epoch!r}\n")
    for index, client in enumerate(clients):
        runner.send_message(PLAN, {"epoch": epoch, "index": index, "count": len(clients),
                                   "seconds": traffic_seconds(opts), "adapters": adapters}, client_id=client)


@events.test_stop.add_listener
def _test_stop(environment, **_kw):
    run = environment.loadgen
    if run.scenario is None:
        return
    if run.generator is not None:
        run.generator.finish()
        run.generator = None
    if run.collector is not None and not isinstance(environment.runner, WorkerRunner):
        run.collector.close()
        run.collector = None


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
        if col is not None and col.all_done() or elapsed > LEAD_S + traffic_seconds(opts) + opts.drain + 5:
            return None
        return n, n
