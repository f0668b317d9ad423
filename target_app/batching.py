"""`@serve.batch` settings that come from `user_config`, applied without a restart."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field


class BatchSettings(BaseModel):
    """The tunable knobs of one `@serve.batch` method."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(8, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0, le=10.0)


def apply_batch_settings(batched_method: Any, settings: BatchSettings) -> None:
    """Set a bound `@serve.batch` method's size and wait; Serve applies them to the live queue."""
    batched_method.set_max_batch_size(settings.max_batch_size)
    batched_method.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)


def live_batch_settings(batched_method: Any) -> dict:
    """The settings Serve's batch queue is using now."""
    return {
        "max_batch_size": batched_method._get_max_batch_size(),
        "batch_wait_timeout_s": batched_method._get_batch_wait_timeout_s(),
    }


def set_torch_threads(n: int) -> None:
    """Cap torch's intra-op threads: several replicas share this machine's few cores."""
    import torch

    torch.set_num_threads(n)


async def off_loop(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run blocking model code in a thread, so the replica keeps forming the next batch."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
