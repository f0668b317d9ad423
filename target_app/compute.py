"""Compute modes of the model deployments, and the accelerator tables the emulated mode replays.

`local` runs the model on this machine's CPU. `emulated` gives each replica its own emulated
accelerator(s) (target_app/emulated.py): a batch holds a device for the time an accelerator
table gives for its size, concurrent batches queue on the device as kernels do on one GPU,
and the stage spends next to no CPU. That is how a 2-core machine hosts the timing shape of
a GPU deployment in which every replica brings its own accelerator, so that a replica adds
capacity instead of contention.

Accelerator tables live in target_app/accelerators/<accelerator>.json (columns model, dtype, batch,
median_ms, p90_ms, ...); each file names its source. Nothing here imports Ray: the tuner checks
a Serve config's compute blocks with this module before anything deploys.
"""

from __future__ import annotations

import bisect
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from target_app.paths import ACCELERATOR_TABLES

# The smallest share of a card a replica may own: an eighth, about MIG's and MPS's finest
# useful partition of a data-centre card (an H100 has 7 MIG slices); below it a table's
# work would be extrapolated far past what was measured.
MIN_SHARE = 0.125


class ComputeConfig(BaseModel):
    """How a model deployment computes; the `compute` block of its `user_config`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local", "emulated"] = "local"
    accelerator: str | None = Field(
        None, description="accelerator table: a name in target_app/accelerators/ (h100, l4) or a .json path")
    stage: str | None = Field(None, description="the table's row key (its `model` column), e.g. minilm-l6-embed-seq64")
    dtype: str | None = Field(None, description="dtype column to select where the stage has several")
    statistic: Literal["median_ms", "p90_ms"] = "median_ms"
    table: list[tuple[int, float]] | None = Field(
        None, description="inline [[batch_size, milliseconds], ...], instead of an accelerator table")
    devices: float = Field(
        1, ge=MIN_SHARE, le=64,
        description="emulated accelerators each replica owns: whole cards, or a share of one card (an SM partition)")

    @model_validator(mode="after")
    def _table_source(self) -> "ComputeConfig":
        if self.mode == "emulated" and self.table is None and (self.accelerator is None or self.stage is None):
            raise ValueError("compute.mode 'emulated' needs either 'table' or both 'accelerator' and 'stage'")
        if self.devices > 1 and self.devices != int(self.devices):
            raise ValueError(f"compute.devices {self.devices:g}: give whole cards (1-64) or a share of one card "
                             f"({MIN_SHARE:g} to 1)")
        if self.table is not None:
            if not self.table:
                raise ValueError("compute.table must have at least one [batch_size, ms] row")
            for batch, ms in self.table:
                if batch < 1 or not ms >= 0 or ms == float("inf"):
                    raise ValueError(f"compute.table row [{batch}, {ms}]: batch_size must be >= 1 and ms a finite "
                                     "number >= 0")
        return self

    @property
    def cards(self) -> int:
        """Cards a replica runs batches on at once (a share of one card is one card, slower)."""
        return max(1, int(self.devices))

    @property
    def share(self) -> float:
        """The share of one card a replica owns (1 for whole cards)."""
        return min(1.0, self.devices)

    @property
    def label(self) -> str:
        """What produced an answer, as the responses say it: `local`, `emulated:l4`, `emulated:table`."""
        if self.mode == "local":
            return "local"
        return f"emulated:{self.accelerator if self.table is None else 'table'}"


class ServiceTimeTable:
    """Service time against batch size, piecewise linear between measured points.

    Beyond the largest measured batch the last segment's slope continues, since a saturated
    accelerator's time grows roughly linearly with work; below the smallest it is flat. A table
    of one point has no slope: `check_batch` refuses batch sizes beyond it.
    """

    def __init__(self, points: list[tuple[float, float]]):
        if not points:
            raise ValueError("a service-time table needs at least one point")
        merged: dict[float, float] = {}  # batches are counts, or work in batch units on a share of a card
        for batch, ms in points:
            merged[batch] = float(ms)
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

    def check_batch(self, batch_size: int) -> None:
        """ValueError when `batch_size` lies beyond a table that cannot extrapolate (one point)."""
        if len(self.batches) == 1 and batch_size > self.batches[0]:
            raise ValueError(f"batch size {batch_size} is beyond the table's only point ({self.batches[0]}), "
                             "which has no slope to extend: add a larger batch to the table")

    @classmethod
    def from_config(cls, cfg: ComputeConfig, suffix: str = "") -> "ServiceTimeTable":
        """The table of an `emulated` ComputeConfig: inline, or its accelerator file's row
        `stage + suffix` (a stage with several tables, such as the LoRA model's -prefill and
        -decode, names them by suffix)."""
        if cfg.table is not None:
            rows = list(cfg.table)
        else:
            rows = table_rows(cfg.accelerator, cfg.stage + suffix, cfg.dtype, cfg.statistic)
        return cls(rows).on_share(cfg.share)

    def on_share(self, share: float) -> "ServiceTimeTable":
        """This table on a partition of `share` of the card's SMs (NVIDIA MPS's active-thread
        percentage, as the Kubernetes device plugin's MPS sharing gives each of N replicas 1/N):
        a batch of b takes what the whole card takes for b / share, since each SM of the
        partition does the work that many SMs share on the whole card. A launch-bound batch
        (the small models' flat start) thus slows little, a saturating one by 1 / share. It is
        the pessimistic side of sharing: co-located replicas that time-slice a card (Ray's
        fractional `num_gpus` without MPS) get the whole card while the others idle, and about
        their share only under full load (target_app/accelerators/h100.md)."""
        if share >= 1:
            return self
        return ServiceTimeTable([(b * share, ms) for b, ms in zip(self.batches, self.ms)])


def accelerator_path(name_or_path: str) -> Path:
    """The accelerator table file for a packaged name (`h100`, `l4`) or a .json path."""
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        return p
    packaged = ACCELERATOR_TABLES / f"{name_or_path}.json"
    if packaged.is_file():
        return packaged
    raise ValueError(f"compute.accelerator {name_or_path!r} not found; packaged: {', '.join(packaged_accelerators())}")


def packaged_accelerators() -> list[str]:
    """Names of the accelerator tables shipped in target_app/accelerators/."""
    return sorted(p.stem for p in ACCELERATOR_TABLES.glob("*.json"))


@lru_cache(maxsize=32)
def accelerator_rows(path: Path) -> tuple[dict, ...]:
    """The rows of an accelerator table file, each a mapping of its columns (read once)."""
    doc = json.loads(path.read_text())
    return tuple(dict(zip(doc["columns"], r)) for r in doc["rows"])


def table_rows(accelerator: str, stage: str, dtype: str | None, statistic: str) -> list[tuple[int, float]]:
    """(batch, ms) points of one stage of an accelerator table (ValueError naming the field)."""
    rows = accelerator_rows(accelerator_path(accelerator))
    chosen = [r for r in rows if r["model"] == stage and (dtype is None or r["dtype"] == dtype)]
    if not chosen:
        stages = sorted({f"{r['model']} ({r['dtype']})" for r in rows})
        raise ValueError(f"compute.stage {stage!r} (dtype {dtype}) is not in accelerator {accelerator!r}; "
                         f"it has: {', '.join(stages)}")
    dtypes = {r["dtype"] for r in chosen}
    if len(dtypes) > 1:
        raise ValueError(f"compute.stage {stage!r} has several dtypes ({', '.join(sorted(dtypes))}): set compute.dtype")
    return [(int(r["batch"]), float(r[statistic])) for r in chosen]
