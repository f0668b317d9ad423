"""The pure continuous-batching scheduler of the LLM emulator (no clock, no asyncio).

It decides what each engine step computes and how long that step lasts under a
``LatencyProfile``. The emulator's ``Engine`` runs it in real time; the tuner's simulator runs
the very same scheduler in simulated time, so the two agree by construction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from target_app.llm_server.profile import LatencyProfile

SeqId = int


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

    Call ``plan_step`` and ``complete_step`` (or ``advance``) alternately; the
    time between them is the step's ``duration_ms``. A decoding sequence's last
    step is known when it gets its first token, so a step costs time in the
    sequences that start or finish in it, not in every running one.
    """

    def __init__(self, profile: LatencyProfile) -> None:
        self.profile = profile
        # dicts keep insertion order, which gives FIFO order plus O(1) cancel.
        self._waiting: dict[SeqId, _Sequence] = {}
        self._prefilling: dict[SeqId, _Sequence] = {}  # admitted, prompt not all processed
        self._decoding: dict[SeqId, _Sequence] = {}    # admitted, one token per step
        self._last_step: dict[int, list[SeqId]] = {}    # step number -> sequences whose last token it gives
        self._steps = 0
        self._in_flight: StepPlan | None = None

    @property
    def num_running(self) -> int:
        """Sequences admitted to the batch (prefilling or decoding)."""
        return len(self._prefilling) + len(self._decoding)

    @property
    def num_waiting(self) -> int:
        """Sequences queued for admission."""
        return len(self._waiting)

    @property
    def steps_completed(self) -> int:
        """Steps completed so far (the number of the last completed step)."""
        return self._steps

    def add(self, seq_id: SeqId, prompt_tokens: int, max_tokens: int) -> None:
        """Queue a new sequence; raises ``ValueError`` if it can never fit."""
        if seq_id in self._waiting or seq_id in self._prefilling or seq_id in self._decoding:
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
            or self._prefilling.pop(seq_id, None) is not None
            or self._decoding.pop(seq_id, None) is not None
        )

    def plan_step(self) -> StepPlan | None:
        """Decide the next step's batch; ``None`` when there is nothing to do."""
        if self._in_flight is not None:
            raise RuntimeError("plan_step called before complete_step of the previous step")
        budget = self.profile.max_num_batched_tokens
        # The profile guarantees max_num_batched_tokens >= max_num_seqs, so all
        # decodes always fit in the budget.
        decode = tuple(self._decoding)
        budget -= len(decode)

        prefill: list[tuple[SeqId, int]] = []
        for sid, seq in self._prefilling.items():
            if budget == 0:
                break
            chunk = min(seq.prefill_remaining, budget)
            prefill.append((sid, chunk))
            budget -= chunk

        admitted: list[SeqId] = []
        while self._waiting and budget > 0 and self.num_running < self.profile.max_num_seqs:
            sid = next(iter(self._waiting))
            seq = self._prefilling[sid] = self._waiting.pop(sid)
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

    def advance(self, plan: StepPlan) -> tuple[list[SeqId], list[SeqId], list[SeqId]]:
        """Apply the finished step: the sequences that got their first token, the sequences
        that decoded a token, and those whose last token this was (any of the first two)."""
        if plan is not self._in_flight:
            raise RuntimeError("complete_step called with a plan that is not in flight")
        self._in_flight = None
        self._steps += 1
        step = self._steps
        first: list[SeqId] = []
        finished: list[SeqId] = []
        for sid, chunk in plan.prefill:
            seq = self._prefilling.get(sid)
            if seq is None:  # cancelled
                continue
            seq.prefilled += chunk
            if seq.prefill_remaining == 0:
                del self._prefilling[sid]
                first.append(sid)
                if seq.max_tokens == 1:
                    finished.append(sid)
                else:
                    self._decoding[sid] = seq
                    self._last_step.setdefault(step + seq.max_tokens - 1, []).append(sid)
        decoding = self._decoding
        decoded = [sid for sid in plan.decode if sid in decoding]
        for sid in self._last_step.pop(step, ()):
            if decoding.pop(sid, None) is not None:
                finished.append(sid)
        return first, decoded, finished

    def complete_step(self, plan: StepPlan) -> list[tuple[SeqId, SeqEvent]]:
        """Apply the finished step's progress and report per-sequence events, in
        order: prefill completions (``FIRST_TOKEN``) first, then decodes
        (``TOKEN``); each sequence's last token is followed by ``FINISHED``."""
        first, decoded, finished = self.advance(plan)
        done = set(finished)
        events: list[tuple[SeqId, SeqEvent]] = []
        for sid in first:
            events.append((sid, SeqEvent.FIRST_TOKEN))
            if sid in done:
                events.append((sid, SeqEvent.FINISHED))
        for sid in decoded:
            events.append((sid, SeqEvent.TOKEN))
            if sid in done:
                events.append((sid, SeqEvent.FINISHED))
        return events
