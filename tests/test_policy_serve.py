"""tuner.policies.serve against Ray Serve 2.60's own default policy: the same decision on
every tick of thousands of random configs, load sequences and clocks."""

from __future__ import annotations

import math
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tuner.policies.serve import DelayState, ServeAutoscaling, apply_delays, decide, initial_target, scaled_replicas

ray_policy = pytest.importorskip("ray.serve.autoscaling_policy")
from ray.serve._private.common import DeploymentID  # noqa: E402
from ray.serve.config import AutoscalingConfig, AutoscalingContext  # noqa: E402

RAY_DEFAULT = ray_policy._apply_autoscaling_config(ray_policy.replica_queue_length_autoscaling_policy)


def ray_decide(cfg: AutoscalingConfig, current: int, target: int, total: float, state: dict, now: float):
    ctx = AutoscalingContext(
        deployment_id=DeploymentID(name="D", app_name="app"), deployment_name="D", app_name="app",
        current_num_replicas=current, target_num_replicas=target, running_replicas=[],
        total_num_requests=total, total_queued_requests=0.0, aggregated_metrics={}, raw_metrics={},
        capacity_adjusted_min_replicas=cfg.min_replicas, capacity_adjusted_max_replicas=cfg.max_replicas,
        policy_state=state, last_scale_up_time=None, last_scale_down_time=None, current_time=now, config=cfg)
    with mock.patch.object(ray_policy.time, "time", return_value=now):
        decision, new_state = RAY_DEFAULT(ctx)
    if isinstance(decision, float):
        decision = math.ceil(decision)
    return decision, new_state


factors = st.one_of(st.none(), st.floats(0.05, 4.0))
delays = st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0])


@st.composite
def configs(draw):
    lo = draw(st.integers(0, 4))
    hi = draw(st.integers(max(lo, 1), 12))
    initial = draw(st.one_of(st.none(), st.integers(lo, hi)))
    return dict(min_replicas=lo, max_replicas=hi, initial_replicas=initial,
                target_ongoing_requests=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 8.0])),
                upscale_delay_s=draw(delays), downscale_delay_s=draw(delays),
                downscale_to_zero_delay_s=draw(st.one_of(st.none(), delays)),
                upscaling_factor=draw(factors), downscaling_factor=draw(factors))


ticks = st.lists(st.tuples(st.floats(0.0, 3.0),                                   # seconds since last tick
                           st.one_of(st.just(0.0), st.floats(0.0, 80.0)),          # total ongoing + queued
                           st.integers(-3, 3)),                                    # running replicas lag the target
                 min_size=1, max_size=60)


@settings(max_examples=1500, deadline=None)
@given(cfg=configs(), seq=ticks, t0=st.floats(1e3, 2e9))
def test_every_tick_matches_rays_default_policy(cfg, seq, t0):
    ours_cfg, ray_cfg = ServeAutoscaling(**cfg), AutoscalingConfig(**cfg)
    target = initial_target(ours_cfg)
    ours, theirs, now = DelayState(), {}, t0
    for dt, total, lag in seq:
        now += dt
        current = max(0, target + lag)
        expected, theirs = ray_decide(ray_cfg, current, target, total, theirs, now)
        got = decide(ours_cfg, current, target, total, ours, now)
        assert got.unbounded == expected
        assert got.target == max(cfg["min_replicas"], min(cfg["max_replicas"], expected))
        ours, target = got.state, got.target


def test_scale_up_waits_for_its_delay_then_jumps_to_the_desired_count():
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=10, target_ongoing_requests=2, upscale_delay_s=30)
    state, t = DelayState(), 100.0
    d = decide(cfg, 1, 1, 10.0, state, t)          # wants 5
    assert d.target == 1 and d.state.since == t
    d = decide(cfg, 1, 1, 10.0, d.state, t + 29.9)
    assert d.target == 1
    d = decide(cfg, 1, 1, 12.0, d.state, t + 30.0)  # the tick on which the delay expires sets the size
    assert d.target == 6 and d.state == DelayState()


def test_an_opposite_wish_restarts_the_timer():
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=10, target_ongoing_requests=2, upscale_delay_s=10,
                           downscale_delay_s=10)
    d = decide(cfg, 3, 3, 20.0, DelayState(), 0.0)   # up
    d = decide(cfg, 3, 3, 1.0, d.state, 5.0)          # down: up run reset
    assert d.state.counter == -1 and d.state.since == 5.0
    d = decide(cfg, 3, 3, 20.0, d.state, 12.0)        # up again from 12
    assert d.target == 3 and d.state.since == 12.0


def test_scale_to_zero_takes_two_steps():
    cfg = ServeAutoscaling(min_replicas=0, max_replicas=5, downscale_delay_s=5, downscale_to_zero_delay_s=60,
                           downscaling_factor=100)
    d = decide(cfg, 3, 3, 0.0, DelayState(), 0.0)
    d = decide(cfg, 3, 3, 0.0, d.state, 5.0)
    assert d.target == 1                               # not 0: only 1 -> 0 may reach zero
    d = decide(cfg, 1, 1, 0.0, d.state, 6.0)
    d = decide(cfg, 1, 1, 0.0, d.state, 65.9)
    assert d.target == 1                               # 59.9 s of the 60 s to-zero delay
    d = decide(cfg, 1, 1, 0.0, d.state, 66.0)
    assert d.target == 0 and d.state == DelayState()


def test_cold_start_ignores_delays():
    cfg = ServeAutoscaling(min_replicas=0, max_replicas=5, upscale_delay_s=300, upscaling_factor=2.5)
    d = decide(cfg, 0, 0, 1.0, DelayState(), 0.0)
    assert d.target == 3                               # ceil(1 * 2.5)


def test_scaling_factor_rounding():
    cfg = ServeAutoscaling(max_replicas=100, upscaling_factor=0.5, downscaling_factor=0.1)
    assert scaled_replicas(10.0, 4, cfg) == 7          # ceil(4 + 0.5 * 6)
    assert scaled_replicas(2.9, 4, cfg) == 3           # ceil(4 - 0.11) == 4 would be stuck: one down
    assert scaled_replicas(3.2, 4, cfg) == 4           # ceil(3.2) == 4: nothing to remove
    assert scaled_replicas(4.0, 4, cfg) == 4


def test_delay_zero_fires_at_once():
    cfg = ServeAutoscaling(max_replicas=10, upscale_delay_s=0)
    assert apply_delays(5, 2, cfg, DelayState(), 0.0) == (5, DelayState())


@pytest.mark.parametrize("fields, message", [
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas (3) must be <= max_replicas (2)"),
    ({"min_replicas": 1, "max_replicas": 4, "initial_replicas": 5}, "initial_replicas (5) must be between"),
    ({"target_ongoing_requests": 0}, "greater than 0"),
    ({"upscale_delay_s": -1}, "greater than or equal to 0"),
])
def test_invalid_configs_name_the_field(fields, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServeAutoscaling(**fields)
