"""Continuous-batching model of a vLLM engine.

``Scheduler`` is pure (no clock, no asyncio): it decides what each engine step
computes and how long that step lasts under a ``LatencyProfile``. ``Engine`` drives
it in real time with ``asyncio.sleep`` and streams tokens to waiting requests.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from target_app.llm_server.metrics import EngineMetrics
from target_app.llm_server.profile import LatencyProfile

logger = logging.getLogger(__name__)

SeqId = int

# How far a busy engine may fall behind its modelled schedule and still catch up
# by shortening the next sleeps; beyond that (overloaded event loop) the schedule
# restarts from "now" instead of bursting steps.
_MAX_CATCH_UP_S = 0.05


def step_duration_ms(profile: LatencyProfile, num_decode: int, num_prefill_tokens: int) -> float:
    """Wall time of one engine step that decodes ``num_decode`` sequences (one token
    each) and prefills ``num_prefill_tokens`` prompt tokens."""
    return (
        profile.step_base_ms
        + profile.step_per_seq_ms * num_decode
        + profile.prefill_per_token_ms * num_prefill_tokens
    )


class SeqEvent(enum.Enum):
    """What happened to a sequence at the end of a step."""

    FIRST_TOKEN = "first_token"
    TOKEN = "token"
    # Emitted right after the sequence's last FIRST_TOKEN/TOKEN event.
    FINISHED = "finished"


@dataclass(frozen=True)
class StepPlan:
    """The work of one engine step, decided by ``Scheduler.plan_step``."""

    admitted: tuple[SeqId, ...]
    """Sequences moved from waiting to running by this step."""
    decode: tuple[SeqId, ...]
    """Sequences that generate one token in this step."""
    prefill: tuple[tuple[SeqId, int], ...]
    """``(seq_id, num_prompt_tokens)`` chunks prefilled in this step, FIFO order."""
    duration_ms: float

    @property
    def num_prefill_tokens(self) -> int:
        """Prompt tokens processed by this step."""
        return sum(n for _, n in self.prefill)

    @property
    def num_tokens(self) -> int:
        """Tokens this step charges against ``max_num_batched_tokens``."""
        return len(self.decode) + self.num_prefill_tokens


@dataclass
class _Sequence:
    prompt_tokens: int
    max_tokens: int
    prefilled: int = 0
    generated: int = 0

    @property
    def prefill_remaining(self) -> int:
        return self.prompt_tokens - self.prefilled


class Scheduler:
    """vLLM-V1-style continuous-batching scheduler with chunked prefill.

    Sequences wait in a FIFO queue and are admitted while fewer than
    ``max_num_seqs`` run and the step's token budget is not spent. Each step
    every prefilled running sequence decodes one token; the rest of the
    ``max_num_batched_tokens`` budget goes to prefill chunks, oldest first. A
    sequence gets its first token at the end of the step that completes its
    prefill, then one token per step until it has exactly ``max_tokens``
    (ignore-EOS), and then leaves.

    Call ``plan_step`` and ``complete_step`` alternately; the time between them
    is the step's ``duration_ms``.
    """

    def __init__(self, profile: LatencyProfile) -> None:
        self.profile = profile
        # dicts keep insertion order, which gives FIFO order plus O(1) cancel.
        self._waiting: dict[SeqId, _Sequence] = {}
        self._running: dict[SeqId, _Sequence] = {}
        self._in_flight: StepPlan | None = None

    @property
    def num_running(self) -> int:
        """Sequences admitted to the batch (prefilling or decoding)."""
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        """Sequences queued for admission."""
        return len(self._waiting)

    def add(self, seq_id: SeqId, prompt_tokens: int, max_tokens: int) -> None:
        """Queue a new sequence; raises ``ValueError`` if it can never fit."""
        if seq_id in self._waiting or seq_id in self._running:
            raise ValueError(f"duplicate sequence id {seq_id}")
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError("prompt_tokens and max_tokens must be >= 1")
        if prompt_tokens + max_tokens > self.profile.max_model_len:
            raise ValueError(
                f"prompt_tokens + max_tokens = {prompt_tokens + max_tokens} exceeds "
                f"max_model_len {self.profile.max_model_len}"
            )
        self._waiting[seq_id] = _Sequence(prompt_tokens, max_tokens)

    def cancel(self, seq_id: SeqId) -> bool:
        """Drop a waiting or running sequence (client went away).

        Returns whether it was still known. A cancelled sequence that is part of
        the in-flight step produces no events when that step completes.
        """
        return (
            self._waiting.pop(seq_id, None) is not None
            or self._running.pop(seq_id, None) is not None
        )

    def plan_step(self) -> StepPlan | None:
        """Decide the next step's batch; ``None`` when there is nothing to do."""
        if self._in_flight is not None:
            raise RuntimeError("plan_step called before complete_step of the previous step")
        budget = self.profile.max_num_batched_tokens
        # The profile guarantees max_num_batched_tokens >= max_num_seqs, so all
        # decodes always fit in the budget.
        decode = tuple(sid for sid, seq in self._running.items() if seq.prefill_remaining == 0)
        budget -= len(decode)

        prefill: list[tuple[SeqId, int]] = []
        for sid, seq in self._running.items():
            if budget == 0:
                break
            if seq.prefill_remaining > 0:
                chunk = min(seq.prefill_remaining, budget)
                prefill.append((sid, chunk))
                budget -= chunk

        admitted: list[SeqId] = []
        while self._waiting and budget > 0 and len(self._running) < self.profile.max_num_seqs:
            sid = next(iter(self._waiting))
            seq = self._running[sid] = self._waiting.pop(sid)
            admitted.append(sid)
            chunk = min(seq.prompt_tokens, budget)
            prefill.append((sid, chunk))
            budget -= chunk

        if not decode and not prefill:
            return None
        num_prefill = sum(n for _, n in prefill)
        plan = StepPlan(
            admitted=tuple(admitted),
            decode=decode,
            prefill=tuple(prefill),
            duration_ms=step_duration_ms(self.profile, len(decode), num_prefill),
        )
        self._in_flight = plan
        return plan

    def complete_step(self, plan: StepPlan) -> list[tuple[SeqId, SeqEvent]]:
        """Apply the finished step's progress and report per-sequence events, in
        order: prefill completions (``FIRST_TOKEN``) first, then decodes
        (``TOKEN``); each sequence's last token is followed by ``FINISHED``."""
        if plan is not self._in_flight:
            raise RuntimeError("complete_step called with a plan that is not in flight")
        self._in_flight = None
        events: list[tuple[SeqId, SeqEvent]] = []
        for sid, chunk in plan.prefill:
            seq = self._running.get(sid)
            if seq is None:
                continue
            seq.prefilled += chunk
            if seq.prefill_remaining == 0:
                self._emit_token(sid, seq, SeqEvent.FIRST_TOKEN, events)
        for sid in plan.decode:
            seq = self._running.get(sid)
            if seq is not None:
                self._emit_token(sid, seq, SeqEvent.TOKEN, events)
        return events

    def _emit_token(
        self, sid: SeqId, seq: _Sequence, event: SeqEvent, events: list[tuple[SeqId, SeqEvent]]
    ) -> None:
        seq.generated += 1
        events.append((sid, event))
        if seq.generated == seq.max_tokens:
            del self._running[sid]
            events.append((sid, SeqEvent.FINISHED))


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
