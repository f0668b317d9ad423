"""Stage timings of emulated deployments, read from the same accelerator tables the app replays.

A deployment whose `user_config.compute.mode` is `emulated` holds an emulated device for a table
time instead of computing, so its timing is a fact of the Serve config, not of a calibration:
the simulator takes it from target_app's tables (one home for each figure), spends no host CPU
on it, and keeps the calibration's start time and spread of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from target_app.compute import ComputeConfig, ServiceTimeTable
from target_app.user_config import LORA_TABLES, compute_tables
from tuner.sim.calibration import StageTiming

# An emulated device is an asyncio sleep: what spread it shows is the event loop's, small.
EMULATED_CV = 0.05


def _compute(user_config: dict) -> ComputeConfig | None:
    raw = user_config.get("compute")
    if not isinstance(raw, dict) or raw.get("mode") != "emulated":
        return None
    return ComputeConfig.model_validate(raw)


def emulated_stage(user_config: dict, calibrated: StageTiming, largest_batch: int) -> StageTiming | None:
    """The timing of a batched stage in emulated mode (None in local mode): the table's points up to
    `largest_batch` (the largest batch it can form), off the host's cores."""
    compute = _compute(user_config)
    if compute is None:
        return None
    table = compute_tables(compute)[""]
    sizes = sorted({b for b in table.batches if b <= largest_batch} | {1, largest_batch})
    points = tuple((b, table.milliseconds(b)) for b in sizes)
    return calibrated.model_copy(update={"service_ms": points, "cv": EMULATED_CV, "cpu_bound": False,
                                         "concurrency": None, "load_ms": 0.0})


@dataclass(frozen=True)
class EmulatedLoRA:
    """The emulated LoRA model's tables: a request's time is its prefill plus one decode step per
    further token at the batch it runs in; an adapter load on a miss adds `load_ms`."""

    prefill: ServiceTimeTable
    decode: ServiceTimeTable
    load_ms: float

    @classmethod
    def from_user_config(cls, user_config: dict) -> "EmulatedLoRA | None":
        compute = _compute(user_config)
        if compute is None:
            return None
        t = compute_tables(compute, LORA_TABLES)
        return cls(t["-prefill"], t["-decode"], t["-load"].milliseconds(1))

    def seconds(self, prompt_tokens: int, tokens: int, running: int) -> float:
        """One request of `prompt_tokens` generating `tokens` among `running` sequences."""
        decode = max(0, tokens - 1) * self.decode.milliseconds(max(1, running))
        return (self.prefill.milliseconds(prompt_tokens) + decode) / 1000
