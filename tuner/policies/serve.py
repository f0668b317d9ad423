"""Ray Serve 2.60's default autoscaling decision, pure and clock-injected.

One call is one evaluation on one controller tick (every 0.1 s plus the step's duration):
the cold-start fast path, the default policy (total ongoing requests / target_ongoing_requests),
the scaling factors with their rounding, the wall-clock up/down/to-zero delays, then the
min/max bounds. Read from ray-project/ray@ray-2.60.0 (the installed Ray),
python/ray/serve/autoscaling_policy.py and python/ray/serve/_private/autoscaling_state.py;
tests/test_policy_serve.py checks it against Ray's own functions on thousands of random contexts
and clock sequences.
"""

from __future__ import annotations

import math

from pydantic import ConfigDict, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tuner import serve_defaults as default
from tuner.policies import Frozen

# Ray compares elapsed wall-clock time with this slack (float drift of large timestamps).
_DELAY_EPS_S = 1e-6


class ServeAutoscaling(Frozen):
    """A deployment's `autoscaling_config`, with Ray Serve's defaults (tuner/serve_defaults.py) and checks.

    Fields that shape only the metrics pipeline (`aggregation_function`) or select a custom
    policy (`policy`) are accepted and not used here."""

    model_config = ConfigDict(extra="ignore")

    min_replicas: NonNegativeInt = default.MIN_REPLICAS
    initial_replicas: NonNegativeInt | None = None
    max_replicas: PositiveInt = default.MAX_REPLICAS
    target_ongoing_requests: PositiveFloat = default.TARGET_ONGOING_REQUESTS
    metrics_interval_s: PositiveFloat = default.METRICS_INTERVAL_S
    look_back_period_s: PositiveFloat = default.LOOK_BACK_PERIOD_S
    smoothing_factor: PositiveFloat = default.SMOOTHING_FACTOR
    upscale_smoothing_factor: PositiveFloat | None = None
    downscale_smoothing_factor: PositiveFloat | None = None
    upscaling_factor: PositiveFloat | None = None
    downscaling_factor: PositiveFloat | None = None
    downscale_delay_s: NonNegativeFloat = default.DOWNSCALE_DELAY_S
    downscale_to_zero_delay_s: NonNegativeFloat | None = None
    upscale_delay_s: NonNegativeFloat = default.UPSCALE_DELAY_S

    @model_validator(mode="after")
    def _bounds(self) -> "ServeAutoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must be between min_replicas "
                             f"({self.min_replicas}) and max_replicas ({self.max_replicas})")
        return self

    @property
    def up_factor(self) -> float:
        """The effective upscaling factor (Ray's resolution of the deprecated aliases)."""
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    @property
    def down_factor(self) -> float:
        """The effective downscaling factor."""
        return self.downscaling_factor or self.downscale_smoothing_factor or self.smoothing_factor


class DelayState(Frozen):
    """What the policy carries between ticks: the direction of the current run of same-way
    wishes (its length, signed: > 0 up, < 0 down) and when that run began."""

    counter: int = 0
    since: float | None = None


class Decision(Frozen):
    """One tick's outcome: the bounded target, the policy's value before the bounds (Ray's
    `ray_serve_autoscaling_desired_replicas`), and the state for the next tick."""

    target: int
    unbounded: int
    state: DelayState


def scaled_replicas(desired: float, current: int, cfg: ServeAutoscaling) -> int:
    """The desired count after the scaling factors, rounded up; a downscale the factor would
    round away still removes one replica."""
    if current == 0:
        return math.ceil(desired)
    delta = desired - current
    factor = cfg.up_factor if delta > 0 else cfg.down_factor
    scaled = math.ceil(current + factor * delta)
    if math.ceil(float(desired)) < current and scaled == current:
        scaled -= 1
    return scaled


def apply_delays(wanted: int, target: int, cfg: ServeAutoscaling, state: DelayState, now: float) -> tuple[int, DelayState]:
    """Hold a change until the wish has lasted its delay (wall clock, from the first tick of an
    uninterrupted run of same-direction wishes); returns the new target and state."""
    counter, since = state.counter, state.since
    if wanted > target:
        if counter < 0:
            counter, since = 0, None
        counter += 1
        since = now if since is None else since
        if now - since + _DELAY_EPS_S >= cfg.upscale_delay_s:
            return wanted, DelayState()
        return target, DelayState(counter=counter, since=since)
    if wanted < target:
        if counter > 0:
            counter, since = 0, None
        counter -= 1
        if target == 1:  # only 1 -> 0 is a scale to zero
            delay = cfg.downscale_delay_s if cfg.downscale_to_zero_delay_s is None else cfg.downscale_to_zero_delay_s
        else:
            delay = cfg.downscale_delay_s
            wanted = max(1, wanted)  # never more than one replica down to zero in a step
        since = now if since is None else since
        if now - since + _DELAY_EPS_S >= delay:
            return wanted, DelayState()
        return target, DelayState(counter=counter, since=since)
    return target, DelayState()


def bounds(cfg: ServeAutoscaling) -> tuple[int, int]:
    """The replica bounds (no target capacity set: min_replicas, max_replicas)."""
    return cfg.min_replicas, cfg.max_replicas


def decide(cfg: ServeAutoscaling, current: int, target: int, total_requests: float,
           state: DelayState, now: float) -> Decision:
    """One controller tick for one deployment.

    `current`: RUNNING replicas; `target`: the target set by the last decision;
    `total_requests`: ongoing + queued requests aggregated over the look-back window;
    `now`: the controller's clock (seconds)."""
    if current == 0 and total_requests > 0:  # cold start: no delays
        unbounded, new_state = max(math.ceil(cfg.up_factor), target), state
    else:
        desired = target if current == 0 else current * (total_requests / (cfg.target_ongoing_requests * current))
        scaled = scaled_replicas(desired, current, cfg)
        if current == 0 and scaled > 0:
            unbounded, new_state = scaled, state
        else:
            unbounded, new_state = apply_delays(max(0, scaled), target, cfg, state, now)
    lo, hi = bounds(cfg)
    return Decision(target=max(lo, min(hi, unbounded)), unbounded=unbounded, state=new_state)


def initial_target(cfg: ServeAutoscaling) -> int:
    """The target a deployment starts with (and returns to when its config changes)."""
    lo, hi = bounds(cfg)
    start = cfg.initial_replicas if cfg.initial_replicas is not None else 0
    return max(lo, min(hi, start))
