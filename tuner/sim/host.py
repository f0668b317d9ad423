"""CPU shared by processes on one host, in the simulator: two-level processor sharing.

On the local stack, Ray offers more logical CPUs than the machine has cores, so replicas'
CPU-bound work (model forward passes, Python request handling) slows down when more of it runs
at once than there are cores. The operating system shares the cores among processes, and a
replica is one process whose Python work runs on one thread: each process with work gets
min(1, cores / processes with work) of a core, and its jobs share that equally. The next
completion is re-planned whenever a job starts or ends (a timer with a token, so outdated
timers are ignored).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from tuner.sim.engine import Engine

_EPS = 1e-9  # CPU seconds: a job this close to done is done (float rounding)


class Host:
    """`run(work_s, fn, arg, owner)` calls `fn(arg)` once `work_s` of the owner process's CPU is done."""

    __slots__ = ("engine", "cores", "jobs", "owners", "_last", "_token", "_ids")

    def __init__(self, engine: Engine, cores: float):
        self.engine, self.cores = engine, cores
        self.jobs: dict[int, list] = {}  # id -> [remaining CPU seconds, fn, arg, owner]
        self.owners: dict[Hashable, int] = {}  # process -> its jobs running
        self._last = engine.now
        self._token = 0
        self._ids = 0

    def _share(self) -> float:
        """A busy process's share of a core."""
        n = len(self.owners)
        return 1.0 if n <= self.cores else self.cores / n

    def _advance(self) -> None:
        now = self.engine.now
        if self.jobs and now > self._last:
            span, share, owners = now - self._last, self._share(), self.owners
            for job in self.jobs.values():
                job[0] -= span * share / owners[job[3]]
        self._last = now

    def _plan(self) -> None:
        self._token += 1
        if self.jobs:
            share, owners = self._share(), self.owners
            first = min(max(0.0, job[0]) * owners[job[3]] for job in self.jobs.values()) / share
            self.engine.after(first, self._due, self._token)

    def run(self, work_s: float, fn: Callable[[Any], None], arg: Any = None, owner: Hashable = None) -> None:
        """Start a job of `work_s` CPU seconds in process `owner`."""
        self._advance()
        self._ids += 1
        self.jobs[self._ids] = [work_s, fn, arg, owner]
        self.owners[owner] = self.owners.get(owner, 0) + 1
        self._plan()

    def _due(self, token: int) -> None:
        if token != self._token:  # planned before a job started or ended
            return
        self._advance()
        calls = [self.jobs.pop(k) for k, job in list(self.jobs.items()) if job[0] <= _EPS]
        for _, _, _, owner in calls:
            left = self.owners[owner] - 1
            if left:
                self.owners[owner] = left
            else:
                del self.owners[owner]
        self._plan()
        for _, fn, arg, _ in calls:
            fn(arg)
