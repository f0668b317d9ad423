"""The LLM backend in the simulator: engine replicas behind one endpoint (a Kubernetes Service
picks one at random per request), each running the emulator's own continuous-batching
scheduler (target_app/llm_server/scheduler.py) in simulated time, so simulated and emulated
TTFT and ITL follow the same model. Optionally an HPA sizes the engines on a per-pod custom
metric (vLLM's `vllm:num_requests_waiting` through prometheus-adapter, as a Pods metric).
"""

from __future__ import annotations

import random
from typing import Callable

from pydantic import NonNegativeFloat, PositiveFloat

from target_app.llm_server.profile import LatencyProfile
from target_app.llm_server.scheduler import Scheduler
from tuner.policies import Frozen
from tuner.policies.hpa import HPASpec, HPAState, Observed, PodSample, reconcile
from tuner.sim.engine import Engine

class HPAOnLLM(Frozen):
    """An HPA on the LLM engines' Deployment; its metrics name `num_requests_waiting` or
    `num_requests_running` (per pod, milli-units as Kubernetes reports them)."""

    spec: HPASpec
    sync_period_s: PositiveFloat = 15.0
    pod_start_s: NonNegativeFloat = 60.0


class _Seq:
    __slots__ = ("on_first", "on_done", "first_step")

    def __init__(self, on_first, on_done):
        self.on_first, self.on_done = on_first, on_done
        self.first_step = 0


class SimEngine:
    """One engine: the scheduler's steps back to back while it has work. Every decoding
    sequence gets one token per step, so a sequence's inter-token gaps are the durations of the
    steps after its first token (kept per step, read once when it finishes)."""

    def __init__(self, sim: Engine, profile: LatencyProfile, started: float):
        self.sim, self.sched = sim, Scheduler(profile)
        self.seqs: dict[int, _Seq] = {}
        self.stepping = False
        self.accepting = True
        self.started = started
        self.step_ms: list[float] = [0.0]  # duration of step n at index n

    def add(self, sid: int, prompt: int, max_tokens: int, seq: _Seq) -> None:
        self.sched.add(sid, prompt, max_tokens)
        self.seqs[sid] = seq
        if not self.stepping:
            self._step()

    def _step(self, _=None) -> None:
        plan = self.sched.plan_step()
        self.stepping = plan is not None
        if plan is not None:
            self.sim.after(plan.duration_ms / 1000, self._complete, plan)

    def _complete(self, plan) -> None:
        now = self.sim.now
        self.step_ms.append(plan.duration_ms)
        step = len(self.step_ms) - 1
        first, _decoded, finished = self.sched.advance(plan)
        seqs = self.seqs
        for sid in first:
            seq = seqs[sid]
            seq.first_step = step
            seq.on_first(now)
        for sid in finished:
            seq = seqs.pop(sid)
            seq.on_done(self.step_ms[seq.first_step + 1:step + 1])
        self._step()


class SimLLM:
    """The endpoint: `submit` a request, get its first-token time and its inter-token gaps."""

    def __init__(self, sim: Engine, profile: LatencyProfile, engines: int, seed: int, start_s: float = 60.0):
        self.sim, self.profile, self.start_s = sim, profile, start_s
        self.engines = [SimEngine(sim, profile, sim.now) for _ in range(engines)]
        self.starting = 0
        self._cancelled = 0
        self._rng = random.Random(seed)
        self._ids = 0
        self.timeline: list[tuple[float, int]] = [(sim.now, engines)]

    def submit(self, prompt_tokens: int, max_tokens: int, on_first: Callable[[float], None],
               on_done: Callable[[list[float] | None], None]) -> None:
        """Send one completion; `on_done(None)` if no engine serves (503) or it can never fit."""
        ready = [e for e in self.engines if e.accepting]
        limit = self.profile.max_model_len
        if not ready or prompt_tokens + max_tokens > limit:
            on_done(None)
            return
        self._ids += 1
        ready[self._rng.randrange(len(ready))].add(self._ids, max(1, prompt_tokens), max(1, max_tokens),
                                                 _Seq(on_first, on_done))

    def waiting(self) -> list[tuple[SimEngine, int]]:
        return [(e, e.sched.num_waiting) for e in self.engines if e.accepting]

    def scale_to(self, n: int) -> None:
        """Start engine pods (serving after start_s) or stop the newest (they finish what they hold)."""
        live = [e for e in self.engines if e.accepting]
        have = len(live) + self.starting
        for _ in range(n - have):
            self.starting += 1
            self.sim.after(self.start_s, self._started)
        excess = max(0, have - n)
        cancel = min(excess, self.starting)  # pods not yet serving go first, as a ReplicaSet deletes them
        self.starting -= cancel
        self._cancelled += cancel
        for e in sorted(live, key=lambda e: -e.started)[:excess - cancel]:
            e.accepting = False
        self._record()

    def _started(self, _=None) -> None:
        if self._cancelled:
            self._cancelled -= 1
            return
        self.starting -= 1
        self.engines.append(SimEngine(self.sim, self.profile, self.sim.now))
        self._record()

    def pods(self) -> int:
        return sum(1 for e in self.engines if e.accepting) + self.starting

    def _record(self) -> None:
        n = sum(1 for e in self.engines if e.accepting)
        if self.timeline[-1][1] != n:
            self.timeline.append((self.sim.now, n))


class HPALLMLoop:
    """An HPA syncing the engine count every period on the engines' per-pod queue metrics."""

    def __init__(self, sim: Engine, llm: SimLLM, cfg: HPAOnLLM, until: float):
        self.sim, self.llm, self.cfg, self.until = sim, llm, cfg, until
        self.state = HPAState()
        self.pods_timeline: list[tuple[float, int]] = [(sim.now, llm.pods())]
        sim.after(cfg.sync_period_s, self._sync)

    def _sample(self, e: SimEngine) -> dict[str, int]:
        return {"num_requests_waiting": e.sched.num_waiting * 1000, "vllm:num_requests_waiting": e.sched.num_waiting * 1000,
                "num_requests_running": e.sched.num_running * 1000, "vllm:num_requests_running": e.sched.num_running * 1000}

    def _sync(self, _=None) -> None:
        now, llm = self.sim.now, self.llm
        pods = [PodSample(ready=True, start_s=e.started, ready_changed_s=e.started, metrics=self._sample(e), sample_s=now)
                for e in llm.engines if e.accepting]
        pods += [PodSample(phase="Pending", ready=False, start_s=None) for _ in range(llm.starting)]
        d = reconcile(self.cfg.spec, Observed(current_replicas=llm.pods(), pods=tuple(pods)), self.state, now)
        self.state = d.state
        if d.desired_replicas != llm.pods():
            llm.scale_to(d.desired_replicas)
        if self.pods_timeline[-1][1] != llm.pods():
            self.pods_timeline.append((now, llm.pods()))
        if now + self.cfg.sync_period_s <= self.until:
            self.sim.after(self.cfg.sync_period_s, self._sync)
