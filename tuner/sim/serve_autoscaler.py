"""Serve's autoscaler in the simulator: the metrics pipeline from the callers to the controller,
and the controller loop that applies `tuner.policies.serve.decide` to a SimDeployment.

The pipeline follows ray-project/ray@ray-2.60.0 (the installed Ray): RouterMetricsManager in
python/ray/serve/_private/router.py (sampling and pushes) and
DeploymentAutoscalingState.get_total_num_requests in
python/ray/serve/_private/autoscaling_state.py (the window's aggregation). The caller samples
its queued plus running requests every `min(0.2 x look_back_period_s, metrics_interval_s)`,
keeps the samples of the last `look_back_period_s`, and pushes them every `metrics_interval_s`
(at once when the deployment has no running replica and requests are queued: the cold-start
push). The controller takes the time-weighted mean of the last push, holding its last value
until now, on every tick of its 0.1 s loop. One caller (one proxy) is modelled; timers start at
time 0.
"""

from __future__ import annotations

from collections import deque

from tuner.policies.serve import DelayState, ServeAutoscaling, decide
from tuner.sim.deployment import SimDeployment
from tuner.sim.engine import Engine

CONTROL_LOOP_S = 0.1  # RAY_SERVE_CONTROL_LOOP_INTERVAL_S; the step's own duration is not modelled


def window_mean(samples: list[tuple[float, float]], now: float) -> float:
    """Time-weighted mean of a step series from its first sample to `now`, the last value held
    (Ray's MEAN aggregation of one series; no samples -> 0)."""
    if not samples:
        return 0.0
    total = 0.0
    for (t0, v), (t1, _) in zip(samples, samples[1:]):
        total += v * (t1 - t0)
    last_t, last_v = samples[-1]
    tail = now - last_t if now - last_t > 0 else 1e-3
    span = last_t + tail - samples[0][0]
    return (total + last_v * tail) / span


class ServeAutoscaler:
    """Drives one SimDeployment's replica target from its own load, as Serve's controller does
    (from the deployment's current target: a trial starts settled at the initial replicas)."""

    def __init__(self, engine: Engine, dep: SimDeployment, cfg: ServeAutoscaling, until: float):
        self.engine, self.dep, self.cfg, self.until = engine, dep, cfg, until
        self.samples: deque[tuple[float, float]] = deque()
        self.pushed: list[tuple[float, float]] = []
        self.state = DelayState()
        self.record_s = min(0.2 * cfg.look_back_period_s, cfg.metrics_interval_s)
        dep.on_queued = self._maybe_cold_push
        engine.at(engine.now, self._record)
        engine.at(engine.now + cfg.metrics_interval_s, self._push)
        engine.at(engine.now, self._tick)

    def _record(self, _=None) -> None:
        now = self.engine.now
        self.samples.append((now, float(self.dep.in_flight())))
        self._prune(now)
        if now + self.record_s <= self.until:
            self.engine.after(self.record_s, self._record)

    def _prune(self, now: float) -> None:
        while self.samples and self.samples[0][0] < now - self.cfg.look_back_period_s:
            self.samples.popleft()

    def _push(self, _=None) -> None:
        now = self.engine.now
        self._prune(now)
        self.pushed = list(self.samples) or [(now, float(self.dep.in_flight()))]
        if now + self.cfg.metrics_interval_s <= self.until:
            self.engine.after(self.cfg.metrics_interval_s, self._push)

    def _maybe_cold_push(self) -> None:
        if self.dep.running == 0 and self.dep.queue:
            now = self.engine.now
            self.pushed = list(self.samples) + [(now, float(self.dep.in_flight()))]

    def _tick(self, _=None) -> None:
        now = self.engine.now
        d = decide(self.cfg, self.dep.running, self.dep.target, window_mean(self.pushed, now), self.state, now)
        self.state = d.state
        if d.target != self.dep.target:
            self.dep.scale_to(d.target)
        if now + CONTROL_LOOP_S <= self.until:
            self.engine.after(CONTROL_LOOP_S, self._tick)
