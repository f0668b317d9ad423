import pytest
from pydantic import ValidationError

from target_app.compute import ComputeConfig, ServiceTimeProfile, load_profile_rows, standin_index, standin_vector


def test_interpolates_between_points_and_extends_last_slope():
    p = ServiceTimeProfile([(1, 10.0), (5, 20.0), (9, 40.0)])
    assert p.milliseconds(1) == 10.0
    assert p.milliseconds(3) == pytest.approx(15.0)
    assert p.milliseconds(5) == 20.0
    assert p.milliseconds(7) == pytest.approx(30.0)
    assert p.milliseconds(13) == pytest.approx(60.0)  # slope 5 ms/item continues
    assert p.milliseconds(0) == 10.0


def test_single_point_profile_is_flat():
    assert ServiceTimeProfile([(4, 7.5)]).milliseconds(100) == 7.5


def test_h100_profile_rows_load_by_name():
    rows = load_profile_rows("gpu-profile-h100", "bge-reranker-large-seq256", None, "median_ms")
    assert (20, 13.211) in rows
    p = ServiceTimeProfile.from_config(
        ComputeConfig(mode="profile", profile="gpu-profile-h100", stage="bge-reranker-large-seq256")
    )
    assert 13.0 < p.milliseconds(20) < 14.0
    assert p.milliseconds(64) == pytest.approx(24.903)


def test_stage_with_two_dtypes_needs_dtype():
    with pytest.raises(ValueError, match="set compute.dtype"):
        load_profile_rows("gpu-profile-h100", "minilm-l6-embed-seq64", None, "median_ms")
    assert load_profile_rows("gpu-profile-h100", "minilm-l6-embed-seq64", "float16", "p90_ms")


@pytest.mark.parametrize("bad", [
    {"mode": "profile"},
    {"mode": "profile", "profile": "gpu-profile-h100"},
    {"mode": "profile", "table": []},
    {"mode": "profile", "table": [[0, 1.0]]},
    {"mode": "gpu"},
    {"mode": "local", "unknown": 1},
])
def test_invalid_compute_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        ComputeConfig.model_validate(bad)


def test_unknown_profile_or_stage_names_the_choices():
    with pytest.raises(ValueError, match="packaged profiles"):
        load_profile_rows("no-such-profile", "x", None, "median_ms")
    with pytest.raises(ValueError, match="available"):
        load_profile_rows("gpu-profile-h100", "no-such-stage", None, "median_ms")


def test_standins_are_deterministic():
    v = standin_vector("hello")
    assert v == standin_vector("hello") and v != standin_vector("hello!")
    assert abs(sum(x * x for x in v) - 1.0) < 1e-5
    assert standin_index("abc", 4) == standin_index("abc", 4) < 4
