"""Continuous-batching model of a vLLM engine, in real time.

``Engine`` drives the pure ``Scheduler`` (scheduler.py) with ``asyncio.sleep`` and streams
tokens to waiting requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from target_app.llm_server.metrics import EngineMetrics
from target_app.llm_server.profile import LatencyProfile
from target_app.llm_server.scheduler import Scheduler, SeqEvent, SeqId

logger = logging.getLogger(__name__)

# How far a busy engine may fall behind its modelled schedule and still catch up
# by shortening the next sleeps; beyond that (overloaded event loop) the schedule
# restarts from "now" instead of bursting steps.
_MAX_CATCH_UP_S = 0.05


@dataclass
class _Request:
    arrival: float
    tokens: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    first_token_at: float | None = None
    last_token_at: float = 0.0
    num_generated: int = 0


class Engine:
    """Runs a ``Scheduler`` in real time on the current asyncio event loop.

    The step loop starts on the first ``generate`` call and idles on an event
    while there is no work. ``pause``/``resume`` freeze the engine (used for the
    "hang" fault) and ``slow_factor`` stretches every step.
    """

    def __init__(self, profile: LatencyProfile, metrics: EngineMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else EngineMetrics(profile.model_name)
        self._scheduler = Scheduler(profile)
        self._requests: dict[SeqId, _Request] = {}
        self._ids = itertools.count()
        self._has_work = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._task: asyncio.Task[None] | None = None
        self._slow_factor = 1.0
        self.metrics.track_queues(lambda: self.num_running, lambda: self.num_waiting)

    @property
    def num_running(self) -> int:
        """Requests in the running batch."""
        return self._scheduler.num_running

    @property
    def num_waiting(self) -> int:
        """Requests queued for admission."""
        return self._scheduler.num_waiting

    @property
    def slow_factor(self) -> float:
        """Multiplier applied to every modelled step duration (1 = as profiled)."""
        return self._slow_factor

    @slow_factor.setter
    def slow_factor(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"slow_factor must be > 0, got {value}")
        self._slow_factor = value

    @property
    def paused(self) -> bool:
        """Whether the engine is frozen (no steps run, requests still queue)."""
        return not self._unpaused.is_set()

    def pause(self) -> None:
        """Stop running steps after the current one; requests keep queueing."""
        self._unpaused.clear()

    def resume(self) -> None:
        """Undo ``pause``."""
        self._unpaused.set()

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncGenerator[int, None]:
        """Submit a request and yield its output token indices ``0 .. max_tokens-1``
        as the modelled engine produces them.

        Closing the generator early (client disconnect, task cancellation)
        removes the sequence from the scheduler. Use ``contextlib.aclosing`` so
        that happens promptly. Raises ``ValueError`` for requests that can never
        fit ``max_model_len``.
        """
        loop = asyncio.get_running_loop()
        seq_id = next(self._ids)
        self._scheduler.add(seq_id, prompt_tokens, max_tokens)
        request = self._requests[seq_id] = _Request(arrival=loop.time())
        self._ensure_started()
        self._has_work.set()
        try:
            while (index := await request.tokens.get()) is not None:
                yield index
        finally:
            # Still registered means the request did not finish: abort it.
            if self._requests.pop(seq_id, None) is not None:
                self._scheduler.cancel(seq_id)
                self._observe_finished("abort", request, loop.time())

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="llm-engine")
            self._task.add_done_callback(_log_crash)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        step_end = loop.time()
        while True:
            if self.paused:
                await self._unpaused.wait()
                step_end = loop.time()  # time spent frozen is no step time
            plan = self._scheduler.plan_step()
            if plan is None:
                self._has_work.clear()
                await self._has_work.wait()
                step_end = loop.time()  # idle time is no step time either
                continue
            now = loop.time()
            self._on_admitted(plan.admitted, now)
            # A GPU runs steps back to back, so a step is timed from the previous
            # step's modelled end, not from now: sleep overshoot and the bookkeeping
            # between steps then do not add up over a long generation.
            start = step_end if now - step_end < _MAX_CATCH_UP_S else now
            step_end = start + plan.duration_ms * self._slow_factor / 1000.0
            await asyncio.sleep(step_end - now)
            events = self._scheduler.complete_step(plan)
            self.metrics.observe_prefill(plan.num_prefill_tokens)
            self._deliver(events, loop.time())

    def _on_admitted(self, admitted: tuple[SeqId, ...], now: float) -> None:
        for sid in admitted:
            self.metrics.observe_queue_time(now - self._requests[sid].arrival)

    def _deliver(self, events: list[tuple[SeqId, SeqEvent]], now: float) -> None:
        for sid, event in events:
            # Cancelled sequences leave the scheduler and _requests together, so
            # every event here belongs to a live request.
            request = self._requests[sid]
            if event is SeqEvent.FINISHED:
                del self._requests[sid]
                request.tokens.put_nowait(None)
                self._observe_finished("length", request, now)
                continue
            if event is SeqEvent.FIRST_TOKEN:
                request.first_token_at = now
                self.metrics.observe_first_token(now - request.arrival)
            else:
                self.metrics.observe_token(now - request.last_token_at)
            request.last_token_at = now
            request.tokens.put_nowait(request.num_generated)
            request.num_generated += 1

    def _observe_finished(self, reason: str, request: _Request, now: float) -> None:
        ttft = None if request.first_token_at is None else request.first_token_at - request.arrival
        self.metrics.observe_finished(reason, now - request.arrival, ttft, request.num_generated)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("LLM engine loop crashed", exc_info=task.exception())
