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
less loaded of two random replicas with room (power of two choices). The router's cached
queue lengths and retry backoff are not modelled yet.
"""

from __future__ import annotations

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


class Replica:
    """Accepted requests, the batch being formed, formed batches and running ones."""

    __slots__ = ("dep", "ongoing", "waiting", "ready", "running", "forming", "_token")

    def __init__(self, dep: "SimDeployment"):
        self.dep = dep
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
        self.dep.released(self)


class SimDeployment:
    """A deployment with a fixed set of replicas (scaling comes with the controller loop)."""

    def __init__(self, engine: Engine, spec: DeploymentSpec, replicas: int, service: ServiceTime,
                 rng: np.random.Generator):
        self.engine, self.spec, self.service, self.rng = engine, spec, service, rng
        self.replicas = [Replica(self) for _ in range(replicas)]
        self.queue: deque[Request] = deque()

    def submit(self, req: Request) -> None:
        """A caller sends `req`: to a replica with room, else the queue, else 503."""
        free = [r for r in self.replicas if r.ongoing < self.spec.max_ongoing_requests]
        if free and not self.queue:
            self._assign(free, req)
        elif self.spec.max_queued_requests != -1 and len(self.queue) >= self.spec.max_queued_requests:
            req.end, req.status = self.engine.now, 503
            req.done(req)
        else:
            self.queue.append(req)

    def _assign(self, free: list[Replica], req: Request) -> None:
        if len(free) > 1:
            i, j = self.rng.choice(len(free), 2, replace=False)
            a, b = free[i], free[j]
            free = [a if a.ongoing <= b.ongoing else b]
        free[0].accept(req)

    def released(self, replica: Replica) -> None:
        """A replica finished work: its free slots take the queue's head requests."""
        while self.queue and replica.ongoing < self.spec.max_ongoing_requests:
            replica.accept(self.queue.popleft())


def simulate_deployment(spec: DeploymentSpec, replicas: int, service: ServiceTime, arrival_times: np.ndarray,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Send one request per arrival time to one deployment; per request: arrival, end, status."""
    engine, rng = Engine(), np.random.default_rng(seed)
    dep = SimDeployment(engine, spec, replicas, service, rng)
    finished: list[Request] = []
    for i, t in enumerate(arrival_times):
        engine.at(float(t), dep.submit, Request(i, float(t), finished.append))
    engine.run()
    finished.sort(key=lambda r: r.id)
    return {"arrival": np.array([r.arrival for r in finished]), "end": np.array([r.end for r in finished]),
            "status": np.array([r.status for r in finished]), "id": np.array([r.id for r in finished])}
