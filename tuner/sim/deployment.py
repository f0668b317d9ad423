"""One Serve deployment in the simulator: a caller-side queue and replicas that batch.

A request is accepted by a replica while that replica holds fewer than `max_ongoing_requests`;
otherwise it waits in the caller's queue (FIFO), or is refused with 503 when that queue already
holds `max_queued_requests`. Inside a replica, `@serve.batch` forms batches as Ray Serve's
`_BatchQueue` does (python/ray/serve/batching.py): a batch opens with the first waiting request
and closes when it is full or `batch_wait_timeout_s` after it opened; up to
`max_concurrent_batches` run at once, each for the service time of its size; the next batch
forms while others run. A deployment without batching is batches of one; its concurrency says
how many requests its code serves at once (1 for CPU-bound code, more for I/O-bound).

Assignment: a freed slot takes the head of the queue at once, and a new request goes to the
less loaded of two random running replicas with room (power of two choices). The router's
cached queue lengths and retry backoff are not modelled yet.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from tuner.policies import Frozen
from tuner.sim.engine import Engine

ServiceTime = Callable[[int, np.random.Generator], float]


class DeploymentSpec(Frozen):
    """The deployment's Serve settings that shape queueing."""

    name: str
    max_ongoing_requests: PositiveInt = 5
    max_queued_requests: int = -1
    max_batch_size: PositiveInt = 1
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    max_concurrent_batches: PositiveInt = 1

    @field_validator("max_queued_requests")
    @classmethod
    def _queued(cls, v: int) -> int:
        if v != -1 and v < 1:
            raise ValueError(f"max_queued_requests must be -1 (no limit) or >= 1 (got {v})")
        return v


class Request:
    """A request in flight; `done` is called once, with the status (200, or 503 refused)."""

    __slots__ = ("id", "arrival", "end", "status", "done")

    def __init__(self, rid: int, arrival: float, done: Callable[["Request"], None]):
        self.id, self.arrival, self.done = rid, arrival, done
        self.end = float("nan")
        self.status = 0


STARTING, RUNNING, STOPPING, STOPPED = "starting", "running", "stopping", "stopped"


class Replica:
    """Accepted requests, the batch being formed, formed batches and running ones; its state."""

    __slots__ = ("dep", "state", "created", "ongoing", "waiting", "ready", "running", "forming", "_token")

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

    def accept(self, req: Request) -> None:
        self.ongoing += 1
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
            self.running += 1
            dep.engine.after(dep.service(len(batch), dep.rng), self._finish, batch)

    def _finish(self, batch: list[Request]) -> None:
        self.running -= 1
        now = self.dep.engine.now
        for req in batch:
            req.end, req.status = now, 200
            req.done(req)
        self.ongoing -= len(batch)
        self._start()
        if self.state == RUNNING:
            self.dep.released(self)


class SimDeployment:
    """A deployment's replicas and its callers' queue; `scale_to` starts and stops replicas as
    Serve does (a new replica routes after `start_s`; a stopped one leaves routing at once,
    drains, and is gone at the first `drain_poll_s` check that finds it empty)."""

    def __init__(self, engine: Engine, spec: DeploymentSpec, replicas: int, service: ServiceTime,
                 rng: np.random.Generator, start_s: float = 0.0, drain_poll_s: float = 2.0):
        self.engine, self.spec, self.service, self.rng = engine, spec, service, rng
        self.start_s, self.drain_poll_s = start_s, drain_poll_s
        self.replicas = [Replica(self) for _ in range(replicas)]
        self._live = list(self.replicas)  # running replicas, in start order
        # Routing picks use a fast stdlib generator seeded from the run's numpy one.
        self._pick_rng = random.Random(int(rng.integers(2**63)))
        self.queue: deque[Request] = deque()
        self.target = replicas
        self.timeline: list[tuple[float, int]] = [(engine.now, replicas)]
        self.on_queued: Callable[[], None] = lambda: None  # the autoscaler's cold-start push

    @property
    def running(self) -> int:
        """Replicas that take requests."""
        return len(self._live)

    def in_flight(self) -> int:
        """Requests queued at the caller or accepted by a replica (what Serve's autoscaler counts)."""
        return len(self.queue) + sum(r.ongoing for r in self._live)

    def submit(self, req: Request) -> None:
        """A caller sends `req`: to a replica with room, else the queue, else 503."""
        replica = None if self.queue else self._pick()
        if replica is not None:
            replica.accept(req)
        elif self.spec.max_queued_requests != -1 and len(self.queue) >= self.spec.max_queued_requests:
            req.end, req.status = self.engine.now, 503
            req.done(req)
        else:
            self.queue.append(req)
            self.on_queued()

    def _pick(self) -> Replica | None:
        """Power of two choices: the less loaded of two random running replicas if one has room,
        else any with room (the router's retry finds it), else None."""
        live, cap = self._live, self.spec.max_ongoing_requests
        if len(live) >= 2:
            i = self._pick_rng.randrange(len(live))
            j = self._pick_rng.randrange(len(live) - 1)
            a, b = live[i], live[j + (j >= i)]
            best = a if a.ongoing <= b.ongoing else b
            if best.ongoing < cap:
                return best
        return min((r for r in live if r.ongoing < cap), key=lambda r: r.ongoing, default=None)

    def released(self, replica: Replica) -> None:
        """A replica has room: it takes the queue's head requests."""
        while self.queue and replica.ongoing < self.spec.max_ongoing_requests:
            replica.accept(self.queue.popleft())

    def scale_to(self, target: int) -> None:
        """Start or stop replicas toward `target`: stopping takes replicas not yet running
        first, then the newest running ones (one node, so Serve's node order does not apply)."""
        self.target = target
        alive = [r for r in self.replicas if r.state in (STARTING, RUNNING)]
        for _ in range(target - len(alive)):
            replica = Replica(self, STARTING)
            self.replicas.append(replica)
            self.engine.after(self.start_s, self._started, replica)
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
        self.replicas.remove(replica)

    def _record(self) -> None:
        n = self.running
        if n != self.timeline[-1][1]:
            self.timeline.append((self.engine.now, n))
