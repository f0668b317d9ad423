"""Continuous-batching model of the LLM emulator, driven by a virtual clock."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from target_app.llm_server.engine import Engine
from target_app.llm_server.scheduler import Scheduler, SeqEvent, SeqId, StepPlan, step_duration_ms
from target_app.llm_server.profile import LatencyProfile, load_profile

PROFILE = LatencyProfile()


@dataclass
class VirtualRun:
    """Drives a Scheduler step by step; the clock is the sum of step durations."""

    scheduler: Scheduler
    now_ms: float = 0.0
    arrival_ms: dict[SeqId, float] = field(default_factory=dict)
    token_ms: dict[SeqId, list[float]] = field(default_factory=dict)
    events: dict[SeqId, list[SeqEvent]] = field(default_factory=dict)
    plans: list[StepPlan] = field(default_factory=list)

    def add(self, seq_id: SeqId, prompt_tokens: int, max_tokens: int) -> None:
        self.scheduler.add(seq_id, prompt_tokens, max_tokens)
        self.arrival_ms[seq_id] = self.now_ms

    def step(self) -> StepPlan:
        plan = self.scheduler.plan_step()
        assert plan is not None, "scheduler unexpectedly idle"
        self.plans.append(plan)
        self.now_ms += plan.duration_ms
        for seq_id, event in self.scheduler.complete_step(plan):
            self.events.setdefault(seq_id, []).append(event)
            if event is not SeqEvent.FINISHED:
                self.token_ms.setdefault(seq_id, []).append(self.now_ms)
        return plan

    def run_until_finished(self, seq_id: SeqId, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            if SeqEvent.FINISHED in self.events.get(seq_id, []):
                return
            self.step()
        raise AssertionError(f"sequence {seq_id} did not finish in {max_steps} steps")

    def ttft_ms(self, seq_id: SeqId) -> float:
        return self.token_ms[seq_id][0] - self.arrival_ms[seq_id]

    def mean_itl_ms(self, seq_id: SeqId) -> float:
        times = self.token_ms[seq_id]
        return (times[-1] - times[0]) / (len(times) - 1)


def test_step_duration_is_the_documented_linear_model() -> None:
    p = LatencyProfile(step_base_ms=5.0, step_per_seq_ms=0.5, prefill_per_token_ms=0.25)
    assert step_duration_ms(p, 0, 0) == 5.0
    assert step_duration_ms(p, 10, 0) == 10.0
    assert step_duration_ms(p, 10, 100) == 35.0


def test_default_profile_reproduces_its_calibration_targets() -> None:
    p = load_profile("h100-llama3-8b")
    single_stream_itl = step_duration_ms(p, 1, 0)
    assert 6.0 <= single_stream_itl <= 7.5
    saturated_tok_s = p.max_num_seqs / step_duration_ms(p, p.max_num_seqs, 0) * 1000
    assert 11_000 <= saturated_tok_s <= 12_500
    run = VirtualRun(Scheduler(p))
    run.add(0, prompt_tokens=1024, max_tokens=1)
    run.run_until_finished(0)
    assert 45.0 <= run.ttft_ms(0) <= 50.0


def test_ttft_grows_with_prompt_tokens() -> None:
    ttfts = []
    for prompt_tokens in (16, 256, 1024, 4096, 8000):
        run = VirtualRun(Scheduler(PROFILE))
        run.add(0, prompt_tokens, max_tokens=4)
        run.run_until_finished(0)
        ttfts.append(run.ttft_ms(0))
    assert ttfts == sorted(ttfts) and len(set(ttfts)) == len(ttfts)
    # Linear in prompt length at idle: one prefill step.
    assert ttfts[-1] == pytest.approx(step_duration_ms(PROFILE, 0, 8000))


@pytest.mark.parametrize("probe_prompt", [8, 512])
def test_ttft_and_itl_grow_with_running_batch(probe_prompt: int) -> None:
    ttfts, itls = [], []
    for batch in (0, 32, 128, 255):
        run = VirtualRun(Scheduler(PROFILE))
        for seq_id in range(1, batch + 1):
            run.add(seq_id, prompt_tokens=8, max_tokens=4000)
        if batch:
            run.step()  # all background prompts prefill in one step, then decode
        run.add(0, probe_prompt, max_tokens=16)
        run.run_until_finished(0)
        ttfts.append(run.ttft_ms(0))
        itls.append(run.mean_itl_ms(0))
    assert ttfts == sorted(ttfts) and len(set(ttfts)) == len(ttfts)
    assert itls == sorted(itls) and len(set(itls)) == len(itls)
    assert itls[0] == pytest.approx(step_duration_ms(PROFILE, 1, 0))
    assert itls[-1] == pytest.approx(step_duration_ms(PROFILE, 256, 0))


def test_max_num_seqs_bounds_running_and_the_rest_wait_fifo() -> None:
    run = VirtualRun(Scheduler(LatencyProfile(max_num_seqs=4)))
    for seq_id in range(10):
        run.add(seq_id, prompt_tokens=10, max_tokens=3 + seq_id)
    first = run.step()
    assert first.admitted == (0, 1, 2, 3)
    assert (run.scheduler.num_running, run.scheduler.num_waiting) == (4, 6)
    admitted_order = list(first.admitted)
    while run.scheduler.num_running or run.scheduler.num_waiting:
        plan = run.step()
        admitted_order.extend(plan.admitted)
        assert run.scheduler.num_running <= 4
        assert len(plan.decode) + len(plan.prefill) <= 4
    assert admitted_order == list(range(10))
    assert run.scheduler.plan_step() is None


def test_token_budget_is_respected_and_long_prompts_are_chunked() -> None:
    profile = LatencyProfile(max_num_seqs=8, max_num_batched_tokens=64)
    run = VirtualRun(Scheduler(profile))
    run.add(0, prompt_tokens=200, max_tokens=5)
    run.add(1, prompt_tokens=10, max_tokens=5)
    plans = [run.step() for _ in range(4)]
    assert [p.prefill for p in plans[:3]] == [((0, 64),)] * 3
    # Step 4 finishes seq 0's prompt and spends the leftover budget on seq 1.
    assert plans[3].prefill == ((0, 8), (1, 10))
    assert plans[3].admitted == (1,)
    assert run.events[0] == [SeqEvent.FIRST_TOKEN]
    # Decodes are reserved before prefill chunks.
    run.add(2, prompt_tokens=500, max_tokens=1)
    plan = run.step()
    assert plan.decode == (0, 1) and plan.prefill == ((2, 62),)
    while run.scheduler.num_running:
        run.step()
    assert all(p.num_tokens <= 64 for p in run.plans)
    assert sum(p.num_prefill_tokens for p in run.plans) == 200 + 10 + 500


@pytest.mark.parametrize("max_tokens", [1, 2, 7, 100])
def test_exact_output_token_count(max_tokens: int) -> None:
    run = VirtualRun(Scheduler(PROFILE))
    run.add(0, prompt_tokens=33, max_tokens=max_tokens)
    run.run_until_finished(0)
    expected = [SeqEvent.FIRST_TOKEN] + [SeqEvent.TOKEN] * (max_tokens - 1) + [SeqEvent.FINISHED]
    assert run.events[0] == expected
    assert len(run.token_ms[0]) == max_tokens
    assert run.scheduler.num_running == 0
    assert run.scheduler.plan_step() is None


def test_cancel_waiting_running_and_in_flight_sequences() -> None:
    run = VirtualRun(Scheduler(LatencyProfile(max_num_seqs=2)))
    for seq_id in range(4):
        run.add(seq_id, prompt_tokens=4, max_tokens=50)
    run.step()
    assert run.scheduler.cancel(3)  # waiting
    assert run.scheduler.cancel(0)  # running
    assert (run.scheduler.num_running, run.scheduler.num_waiting) == (1, 1)
    plan = run.scheduler.plan_step()
    assert plan is not None and plan.admitted == (2,)
    assert run.scheduler.cancel(2)  # in the in-flight step
    events = run.scheduler.complete_step(plan)
    assert {seq_id for seq_id, _ in events} == {1}
    assert not run.scheduler.cancel(2)
    assert not run.scheduler.cancel(99)
    run.run_until_finished(1)
    assert run.events[0] == [SeqEvent.FIRST_TOKEN]  # nothing after its cancel
    assert 2 not in run.events and 3 not in run.events


def test_scheduler_rejects_misuse() -> None:
    scheduler = Scheduler(LatencyProfile(max_model_len=100, default_max_tokens=10))
    with pytest.raises(ValueError, match="max_model_len"):
        scheduler.add(0, prompt_tokens=90, max_tokens=11)
    with pytest.raises(ValueError):
        scheduler.add(0, prompt_tokens=0, max_tokens=1)
    scheduler.add(0, prompt_tokens=5, max_tokens=5)
    with pytest.raises(ValueError, match="duplicate"):
        scheduler.add(0, prompt_tokens=5, max_tokens=5)
    plan = scheduler.plan_step()
    assert plan is not None
    with pytest.raises(RuntimeError):
        scheduler.plan_step()
    scheduler.complete_step(plan)
    with pytest.raises(RuntimeError):
        scheduler.complete_step(plan)


def test_profile_validation_names_field_and_range(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_num_seqs: 0\n")
    with pytest.raises(ValueError, match=r"max_num_seqs[\s\S]*greater than or equal to 1"):
        load_profile(bad)
    bad.write_text("max_num_seqs: 512\nmax_num_batched_tokens: 256\n")
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        load_profile(bad)
    bad.write_text("step_base_ms: 6\ntypo_field: 1\n")
    with pytest.raises(ValueError, match="typo_field"):
        load_profile(bad)
    with pytest.raises(FileNotFoundError, match="h100-llama3-8b"):
        load_profile("no-such-profile")


def test_engine_streams_tokens_and_aborts_on_close() -> None:
    fast = LatencyProfile(step_base_ms=0.5, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)

    async def scenario() -> None:
        engine = Engine(fast)
        assert [i async for i in engine.generate(3, 5)] == [0, 1, 2, 3, 4]
        async with aclosing(engine.generate(3, 1000)) as tokens:
            async for index in tokens:
                if index == 2:
                    break
        assert (engine.num_running, engine.num_waiting) == (0, 0)
        engine.pause()
        stream = engine.generate(3, 2)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.02)
        assert not first.done() and engine.num_waiting == 1
        engine.resume()
        assert await asyncio.wait_for(first, 1.0) == 0
        await stream.aclose()
        metrics = engine.metrics.render().decode()
        assert 'finished_reason="abort"' in metrics and 'finished_reason="length"' in metrics

    asyncio.run(scenario())
