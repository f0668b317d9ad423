"""Compute modes of the model deployments.

`local` runs the model on this machine. `profile` holds each batch for the service time
a profile table gives for its size (for example the H100 measurements), so that a 2-core
machine can host the timing shape of a GPU deployment; the replica then returns
deterministic stand-in outputs instead of model outputs.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from target_app.paths import PROFILES_DIR


class ComputeConfig(BaseModel):
    """How a model deployment computes; part of its `user_config`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local", "profile"] = "local"
    profile: str | None = Field(
        None, description="profile file: a name in target_app/profiles/ (without .json) or a path"
    )
    stage: str | None = Field(None, description="row key in the profile file, e.g. minilm-l6-embed-seq64")
    dtype: str | None = Field(None, description="dtype column to select in the profile file")
    statistic: Literal["median_ms", "p90_ms"] = "median_ms"
    table: list[tuple[int, float]] | None = Field(
        None, description="inline [[batch_size, milliseconds], ...], instead of a profile file"
    )

    @model_validator(mode="after")
    def _profile_source(self) -> "ComputeConfig":
        if self.mode == "profile" and self.table is None and (self.profile is None or self.stage is None):
            raise ValueError("compute.mode 'profile' needs either 'table' or both 'profile' and 'stage'")
        if self.table is not None:
            if not self.table:
                raise ValueError("compute.table must have at least one [batch_size, ms] row")
            for batch, ms in self.table:
                if batch < 1 or ms < 0:
                    raise ValueError("compute.table rows need batch_size >= 1 and ms >= 0")
        return self


class ServiceTimeProfile:
    """Service time against batch size, piecewise linear between measured points.

    Beyond the largest measured batch the last segment's slope continues, since a saturated
    accelerator's time grows roughly linearly with work; below the smallest it is flat.
    """

    def __init__(self, points: list[tuple[int, float]]):
        if not points:
            raise ValueError("a service-time profile needs at least one point")
        merged: dict[int, float] = {}
        for batch, ms in points:
            merged[int(batch)] = float(ms)
        self.batches = sorted(merged)
        self.ms = [merged[b] for b in self.batches]

    def milliseconds(self, batch_size: int) -> float:
        """Service time in ms for one batch of `batch_size` items."""
        b, xs, ys = max(1, batch_size), self.batches, self.ms
        if len(xs) == 1 or b <= xs[0]:
            return ys[0]
        i = bisect.bisect_left(xs, b)
        if i < len(xs) and xs[i] == b:
            return ys[i]
        lo, hi = (i - 1, i) if i < len(xs) else (len(xs) - 2, len(xs) - 1)
        slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])
        return max(0.0, ys[lo] + slope * (b - xs[lo]))

    @classmethod
    def from_config(cls, cfg: ComputeConfig) -> "ServiceTimeProfile":
        """Build from a `profile`-mode ComputeConfig (inline table or profile file row)."""
        if cfg.table is not None:
            return cls(list(cfg.table))
        return cls(load_profile_rows(cfg.profile, cfg.stage, cfg.dtype, cfg.statistic))


def _profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return p
    packaged = PROFILES_DIR / f"{name_or_path}.json"
    if packaged.exists():
        return packaged
    known = sorted(x.stem for x in PROFILES_DIR.glob("*.json"))
    raise ValueError(f"compute.profile {name_or_path!r} not found; packaged profiles: {known}")


def load_profile_rows(name_or_path: str, stage: str, dtype: str | None, statistic: str) -> list[tuple[int, float]]:
    """(batch, ms) points of one stage from a profile JSON with columns model/dtype/batch/…"""
    doc = json.loads(_profile_path(name_or_path).read_text())
    cols = doc["columns"]
    rows = [dict(zip(cols, r)) for r in doc["rows"]]
    chosen = [r for r in rows if r["model"] == stage and (dtype is None or r["dtype"] == dtype)]
    if not chosen:
        stages = sorted({(r["model"], r["dtype"]) for r in rows})
        raise ValueError(f"compute.stage {stage!r} (dtype {dtype}) not in {name_or_path}; available: {stages}")
    dtypes = {r["dtype"] for r in chosen}
    if len(dtypes) > 1:
        raise ValueError(f"compute.stage {stage!r} has several dtypes {sorted(dtypes)}: set compute.dtype")
    return [(int(r["batch"]), float(r[statistic])) for r in chosen]


async def hold_for(profile: ServiceTimeProfile, batch_size: int) -> None:
    """Occupy the replica for the profiled time of one batch without using the CPU."""
    await asyncio.sleep(profile.milliseconds(batch_size) / 1000.0)


def standin_vector(text: str, dim: int = 384) -> list[float]:
    """A deterministic unit vector for `text`: the embedder's output in profile mode."""
    import hashlib

    import numpy as np

    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype("float32").tolist()


def standin_index(text: str, n: int) -> int:
    """A deterministic choice in range(n) for `text`: a classifier's label in profile mode."""
    import zlib

    return zlib.crc32(text.encode()) % n
