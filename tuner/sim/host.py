"""CPU shared by processes on one host, in the simulator: processor sharing over `cores`.

On the local stack, Ray offers more logical CPUs than the machine has cores, so replicas'
CPU-bound work (model forward passes, Python request handling) slows down when more of it runs
at once than there are cores. Each job runs at rate min(1, cores / jobs running); the next
completion is re-planned whenever a job starts or ends (a timer with a token, so outdated
timers are ignored).
"""

from __future__ import annotations

from typing import Any, Callable

from tuner.sim.engine import Engine

_EPS = 1e-12


class Host:
    """Processor sharing: `run(work_s, fn, arg)` calls `fn(arg)` once `work_s` of CPU is done."""

    __slots__ = ("engine", "cores", "jobs", "_last", "_token", "_ids")

    def __init__(self, engine: Engine, cores: float):
        self.engine, self.cores = engine, cores
        self.jobs: dict[int, list] = {}  # id -> [remaining CPU seconds, fn, arg]
        self._last = engine.now
        self._token = 0
        self._ids = 0

    def _rate(self) -> float:
        n = len(self.jobs)
        return 1.0 if n <= self.cores else self.cores / n

    def _advance(self) -> None:
        now = self.engine.now
        if self.jobs and now > self._last:
            done = (now - self._last) * self._rate()
            for job in self.jobs.values():
                job[0] -= done
        self._last = now

    def _plan(self) -> None:
        self._token += 1
        if self.jobs:
            first = min(job[0] for job in self.jobs.values())
            self.engine.after(max(0.0, first) / self._rate(), self._due, self._token)

    def run(self, work_s: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Start a job of `work_s` CPU seconds."""
        self._advance()
        self._ids += 1
        self.jobs[self._ids] = [work_s, fn, arg]
        self._plan()

    def _due(self, token: int) -> None:
        if token != self._token:  # planned before a job started or ended
            return
        self._advance()
        finished = [k for k, job in self.jobs.items() if job[0] <= _EPS]
        calls = [self.jobs.pop(k) for k in finished]
        self._plan()
        for _, fn, arg in calls:
            fn(arg)
