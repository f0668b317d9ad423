"""One Serve deployment in the simulator: its callers' router and queue, and replicas that batch.

A request is accepted by a replica while that replica holds fewer than `max_ongoing_requests`;
otherwise it waits in the caller's queue (FIFO), or is refused with 503 when that queue already
holds `max_queued_requests`. Inside a replica, `@serve.batch` forms batches as Ray Serve's
`_BatchQueue` does (ray-project/ray@ray-2.60.0 python/ray/serve/batching.py): a batch opens with
the first waiting request and closes when it is full or `batch_wait_timeout_s` after it opened;
up to `max_concurrent_batches` run at once; the next batch forms while others run. A deployment
without batching is batches of one; its concurrency says how many requests its code serves at
once (1 for CPU-bound code, more for I/O-bound). What a batch does is the deployment's `work`
(by default: hold for the service time of its size); composite deployments call others there.

Routing (Ray Serve's PowerOfTwoChoicesRequestRouter, read from ray-project/ray@ray-2.60.0
python/ray/serve/_private/request_router/pow_2_router.py and request_router.py, with the
constants in python/ray/serve/_private/constants.py): a new request goes to the less loaded of
two random running replicas with room; with a multiplexed model id, first among the replicas
that hold the model, then those holding the fewest models, then (after the matching timeout)
all. A request that finds no room waits for a routing task: up to min(queued, 2 x replicas, 50)
tasks retry, the first round at once, then after min(0.025 x 2^k, 0.5) s, so a freed slot is
taken at the next retry, not the instant it frees (`backoff=False` gives the ideal router the
queueing-theory tests compare against). The router's queue-length cache is exact here: one
caller sends everything, so its cache counts what it sent.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict, deque
from typing import Callable

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from tuner import serve_defaults as default
from tuner.policies import Frozen
from tuner.sim.engine import Engine

ServiceTime = Callable[[int, np.random.Generator], float]
Work = Callable[["Replica", list["Request"]], None]

BACKOFF_S, MAX_BACKOFF_S = 0.025, 0.5  # RAY_SERVE_ROUTER_RETRY_INITIAL/MAX_BACKOFF_S
MAX_ATTEMPT_EXPONENT = math.ceil(math.log2(MAX_BACKOFF_S / BACKOFF_S))
MAX_ROUTING_TASKS = 50
MODEL_MATCH_TIMEOUT_S = 1.5  # mean of Serve's Uniform(1.0, 2.0) s matching timeout


class DeploymentSpec(Frozen):
    """The deployment's Serve settings that shape queueing."""

    name: str
    max_ongoing_requests: PositiveInt = default.MAX_ONGOING_REQUESTS
    max_queued_requests: int = default.MAX_QUEUED_REQUESTS
    max_batch_size: PositiveInt = 1
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    max_concurrent_batches: PositiveInt = 1
    max_models_per_replica: int = Field(0, ge=-1, description="multiplexed LRU size; 0: not multiplexed, -1: no limit")

    @field_validator("max_queued_requests")
    @classmethod
    def _queued(cls, v: int) -> int:
        if v != -1 and v < 1:
            raise ValueError(f"max_queued_requests must be -1 (no limit) or >= 1 (got {v})")
        return v


class Request:
    """A request in flight; `done` is called once, with the status (200; 503 refused; 500 failed
    downstream). `model` is its multiplexed model id; `data` is what the app model carries."""

    __slots__ = ("id", "arrival", "end", "status", "done", "model", "data", "queued_at", "miss")

    def __init__(self, rid: int, arrival: float, done: Callable[["Request"], None], model: str | None = None,
                 data=None):
        self.id, self.arrival, self.done, self.model, self.data = rid, arrival, done, model, data
        self.end = float("nan")
        self.status = 0
        self.queued_at = arrival
        self.miss = False  # its model was not loaded on the replica that accepted it


STARTING, RUNNING, STOPPING, STOPPED, LOST = "starting", "running", "stopping", "stopped", "lost"


class Replica:
    """Accepted requests, the batch being formed, formed batches and running ones; its state;
    its multiplexed models (LRU, most recent last) and the time it spent with work running."""

    __slots__ = ("dep", "state", "created", "ongoing", "waiting", "ready", "running", "forming", "_token",
                 "models", "busy_s", "_busy_from", "node")

    def __init__(self, dep: "SimDeployment", state: str = RUNNING):
        self.dep = dep
        self.state = state
        self.created = dep.engine.now
        self.ongoing = 0
        self.waiting: deque[Request] = deque()
        self.ready: deque[list[Request]] = deque()
        self.running = 0
        self.forming = False
        self._token = 0
        self.models: OrderedDict[str, None] = OrderedDict()
        self.busy_s = 0.0
        self._busy_from = 0.0
        self.node = None

    def accept(self, req: Request) -> None:
        self.ongoing += 1
        if req.model is not None:
            req.miss = not self.dep.note_model(self, req.model)
        self.waiting.append(req)
        if not self.forming:
            self._open()
        elif len(self.waiting) >= self.dep.spec.max_batch_size:
            self._close(self._token)

    def _open(self) -> None:
        self.forming = True
        self._token += 1
        if len(self.waiting) >= self.dep.spec.max_batch_size:
            self._close(self._token)
        else:
            self.dep.engine.after(self.dep.spec.batch_wait_timeout_s, self._close, self._token)

    def _close(self, token: int) -> None:
        if not self.forming or token != self._token:  # a timer of a batch that already closed
            return
        size = min(len(self.waiting), self.dep.spec.max_batch_size)
        self.ready.append([self.waiting.popleft() for _ in range(size)])
        self.forming = False
        self._start()
        if self.waiting:
            self._open()

    def _start(self) -> None:
        dep = self.dep
        while self.ready and self.running < dep.spec.max_concurrent_batches:
            batch = self.ready.popleft()
            if self.running == 0:
                self._busy_from = dep.engine.now
            self.running += 1
            dep.work(self, batch)

    def busy_until_now(self) -> float:
        """Seconds this replica has had work running, up to now."""
        return self.busy_s + (self.dep.engine.now - self._busy_from if self.running else 0.0)

    def finish(self, batch: list[Request], status: int = 200) -> None:
        """The batch's work is done: answer its requests and free their slots."""
        self.running -= 1
        now = self.dep.engine.now
        if self.running == 0:
            self.busy_s += now - self._busy_from
        if self.state == LOST:  # its node went away while it ran: the caller gets an error
            status = 500
        for req in batch:
            req.end, req.status = now, req.status or status
            req.done(req)
        self.ongoing -= len(batch)
        self._start()
        if self.state == RUNNING:
            self.dep.released(self)


class SimDeployment:
    """A deployment's replicas and its callers' queue; `scale_to` starts and stops replicas as
    Serve does (a new replica is placed by `placer`, routes `start_s` after that; a stopped one
    leaves routing at once, drains, and is gone at the first `drain_poll_s` check that finds it
    empty)."""

    def __init__(self, engine: Engine, spec: DeploymentSpec, replicas: int, service: ServiceTime,
                 rng: np.random.Generator, start_s: float = 0.0, drain_poll_s: float = 2.0,
                 work: Work | None = None, backoff: bool = False, placer=None, demand: dict | None = None):
        self.engine, self.spec, self.service, self.rng = engine, spec, service, rng
        self.start_s, self.drain_poll_s = start_s, drain_poll_s
        self.work: Work = work or self._hold
        self.backoff = backoff
        self.placer, self.demand = placer, demand or {}
        # A settled start: the starting replicas run at once (on a cluster, once placed).
        self.replicas = [Replica(self, STARTING if placer else RUNNING) for _ in range(replicas)]
        self._live = [] if placer else list(self.replicas)  # running replicas, in start order
        # Routing picks use a fast stdlib generator seeded from the run's numpy one.
        self._pick_rng = random.Random(int(rng.integers(2**63)))
        self.queue: deque[Request] = deque()
        self.tasks = 0  # routing tasks retrying for queued requests
        self.target = replicas
        self.timeline: list[tuple[float, int]] = [(engine.now, replicas)]
        self.on_queued: Callable[[], None] = lambda: None  # the autoscaler's cold-start push
        self.retired_busy_s = 0.0
        if placer is not None:
            self.timeline = [(engine.now, 0)]
            for r in self.replicas:
                placer.request(r, self._started)

    @property
    def running(self) -> int:
        """Replicas that take requests."""
        return len(self._live)

    def in_flight(self) -> int:
        """Requests queued at the caller or accepted by a replica (what Serve's autoscaler counts)."""
        return len(self.queue) + sum(r.ongoing for r in self._live)

    def _hold(self, replica: Replica, batch: list[Request]) -> None:
        self.engine.after(self.service(len(batch), self.rng), replica.finish, batch)

    def submit(self, req: Request) -> None:
        """A caller sends `req`: to a replica with room, else the queue, else 503."""
        replica = None if self.queue else self._pick(req)
        if replica is not None:
            replica.accept(req)
        elif self.spec.max_queued_requests != -1 and len(self.queue) >= self.spec.max_queued_requests:
            req.end, req.status = self.engine.now, 503
            req.done(req)
        else:
            req.queued_at = self.engine.now
            self.queue.append(req)
            self.on_queued()
            if self.backoff:
                self._spawn_tasks()

    def _pick(self, req: Request) -> Replica | None:
        live, cap = self._live, self.spec.max_ongoing_requests
        if req.model is not None and live:
            holding = [r for r in live if req.model in r.models]
            if holding:
                found = self._two_choices(holding, cap)
                if found is not None:
                    return found
            fewest = min(len(r.models) for r in live)
            found = self._two_choices([r for r in live if len(r.models) == fewest], cap)
            if found is not None or self.engine.now - req.queued_at < MODEL_MATCH_TIMEOUT_S:
                return found
        return self._two_choices(live, cap)

    def _two_choices(self, live: list[Replica], cap: int) -> Replica | None:
        """The less loaded of two random replicas if one has room, else any with room (the
        router's next rounds find it), else None."""
        n = len(live)
        if n >= 2:
            draw = self._pick_rng.random
            i = int(draw() * n)
            j = int(draw() * (n - 1))
            a, b = live[i], live[j + (j >= i)]
            best = a if a.ongoing <= b.ongoing else b
            if best.ongoing < cap:
                return best
        return min((r for r in live if r.ongoing < cap), key=lambda r: r.ongoing, default=None)

    def released(self, replica: Replica) -> None:
        """A replica has room: the ideal router hands it the queue's head at once; Serve's
        routing tasks find it at their next retry."""
        if self.backoff:
            return
        while self.queue and replica.ongoing < self.spec.max_ongoing_requests:
            replica.accept(self.queue.popleft())

    def _spawn_tasks(self) -> None:
        cap = min(len(self.queue), MAX_ROUTING_TASKS, max(1, 2 * len(self._live)))
        while self.tasks < cap:
            self.tasks += 1
            self.engine.after(0.0, self._retry, 0)

    def _retry(self, attempt: int) -> None:
        """One routing task's round: serve the oldest queued request if a replica has room
        (then start over for the next one), else sleep and try again."""
        while self.queue:
            replica = self._pick(self.queue[0])
            if replica is None:
                delay = min(BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S)
                # The delay is capped from here on; a growing exponent would overflow a float.
                self.engine.after(delay, self._retry, min(attempt + 1, MAX_ATTEMPT_EXPONENT))
                return
            replica.accept(self.queue.popleft())
            attempt = 0
        self.tasks -= 1

    def note_model(self, replica: Replica, model: str) -> bool:
        """The replica is asked for `model`: it becomes its most recent; loading a new one evicts
        the least recent over `max_models_per_replica` (the replica reports loaded + loading).
        Whether it was loaded already."""
        models, cap = replica.models, self.spec.max_models_per_replica
        if model in models:
            models.move_to_end(model)
            return True
        models[model] = None
        while cap > 0 and len(models) > cap:
            models.popitem(last=False)
        return False

    def scale_to(self, target: int) -> None:
        """Start or stop replicas toward `target`: stopping takes replicas not yet running
        first, then the newest running ones (Serve's order on one node)."""
        self.target = target
        alive = [r for r in self.replicas if r.state in (STARTING, RUNNING)]
        for _ in range(target - len(alive)):
            replica = Replica(self, STARTING)
            self.replicas.append(replica)
            if self.placer is None:
                self.engine.after(self.start_s, self._started, replica)
            else:
                self.placer.request(replica, lambda r: self.engine.after(self.start_s, self._started, r))
        excess = len(alive) - target
        if excess > 0:
            for replica in sorted(alive, key=lambda r: (r.state == RUNNING, -r.created))[:excess]:
                self._stop(replica)
        self._record()

    def _started(self, replica: Replica) -> None:
        if replica.state == STARTING:
            replica.state = RUNNING
            self._live.append(replica)
            self._record()
            if self.backoff:
                if self.queue:
                    self._spawn_tasks()
            else:
                self.released(replica)

    def _stop(self, replica: Replica) -> None:
        was_running = replica.state == RUNNING
        replica.state = STOPPING
        if was_running:
            self._live.remove(replica)
            self.engine.after(self.drain_poll_s, self._drained, replica)
        else:
            self._drained(replica)

    def _drained(self, replica: Replica) -> None:
        if replica.ongoing:  # counts requests waiting for, in and running a batch
            self.engine.after(self.drain_poll_s, self._drained, replica)
            return
        replica.state = STOPPED
        self.retired_busy_s += replica.busy_s
        self.replicas.remove(replica)
        if self.placer is not None:
            self.placer.release(replica)

    def lost(self, replica: Replica) -> None:
        """The replica's node is gone: what it holds fails, and Serve starts a replacement."""
        was = replica.state
        replica.state = LOST
        if replica in self._live:
            self._live.remove(replica)
        if replica in self.replicas:
            self.replicas.remove(replica)
        now = self.engine.now
        failed = list(replica.waiting) + [r for b in replica.ready for r in b]
        replica.waiting.clear()
        replica.ready.clear()
        replica.ongoing -= len(failed)
        for req in failed:
            req.end, req.status = now, 500
            req.done(req)
        if was in (STARTING, RUNNING):
            self.scale_to(self.target)
        self._record()

    def _record(self) -> None:
        n = self.running
        if n != self.timeline[-1][1]:
            self.timeline.append((self.engine.now, n))
