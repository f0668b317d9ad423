"""Stage timings of emulated deployments, read from the same accelerator tables the app replays.

A deployment whose `user_config.compute.mode` is `emulated` holds an emulated device for a table
time instead of computing, so its timing is a fact of the Serve config, not of a calibration:
the simulator takes it from target_app's tables (one home for each figure), spends no host CPU
on it, and keeps the calibration's start time and spread of the rest. The tables come in
already read (`EmulatedTables`, read at the edge by tuner.calibration_file), so the simulator
opens no file.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from target_app.compute import ServiceTimeTable
from tuner.sim.calibration import StageTiming

# An emulated device is an asyncio sleep: what spread it shows is the event loop's, small.
EMULATED_CV = 0.05

# The tables of each emulated deployment, by table suffix ('' for a batched stage's one table,
# target_app.user_config.LORA_TABLES for the LoRA model's); a deployment in `local` mode has none.
EmulatedTables = dict[str, dict[str, ServiceTimeTable]]


def emulated_stage(tables: dict[str, ServiceTimeTable] | None, calibrated: StageTiming,
                   largest_batch: int, items: int = 1) -> StageTiming | None:
    """The timing of a batched stage in emulated mode (None without tables: local mode), by
    batch size in requests up to `largest_batch` (the largest batch it can form), off the host's
    cores. A request brings `items` to the model (the reranker: every candidate), and the app
    holds the card for the table's time of the batch's items, so a batch of b requests takes
    the table's time at b x items."""
    if not tables:
        return None
    table = tables[""]
    # Whole batch sizes around every breakpoint of the table in requests (fractional on a share
    # of a card, or when a request brings several items): linear interpolation between these
    # sizes then gives the app's own time at every size a batch can have.
    edges = {f(b / items) for b in table.batches for f in (math.floor, math.ceil)}
    sizes = sorted({b for b in edges if 1 <= b <= largest_batch} | {1, largest_batch})
    points = tuple((b, table.milliseconds(b * items)) for b in sizes)
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
    def from_tables(cls, t: dict[str, ServiceTimeTable] | None) -> "EmulatedLoRA | None":
        """The model's tables (None without: local mode)."""
        if not t:
            return None
        return cls(t["-prefill"], t["-decode"], t["-load"].milliseconds(1))



class SimCard:
    """One replica's emulated card in simulated time, as target_app.emulated runs it: holds
    (adapter loads, prefills, decode steps) take the card one at a time in the order asked, and
    one decode step serves every running sequence, as long as the table gives for their number.
    """

    def __init__(self, engine, lora: EmulatedLoRA):
        self.engine, self.lora = engine, lora
        self._holds: deque[tuple[float, Callable[[], None]]] = deque()
        self._busy = False
        self._running: dict[int, list] = {}  # id -> [tokens left, done]
        self._stepping = False
        self._ids = itertools.count()

    def load(self, then: Callable[[], None]) -> None:
        """An adapter brought onto the card, then `then()`."""
        self._hold(self.lora.load_ms / 1000, then)

    def generate(self, prompt_tokens: int, tokens: int, done: Callable[[], None]) -> None:
        """Prefill (its first token), then one token per decode step; `done()` after the last."""
        def prefilled() -> None:
            if tokens <= 1:
                done()
                return
            self._running[next(self._ids)] = [tokens - 1, done]
            self._step()

        self._hold(self.lora.prefill.milliseconds(prompt_tokens) / 1000, prefilled)

    def _step(self) -> None:
        if self._stepping or not self._running:
            return
        self._stepping = True
        batch = list(self._running)  # sequences that join while it waits take the next step

        def stepped() -> None:
            self._stepping = False
            for key in batch:
                entry = self._running[key]
                entry[0] -= 1
                if entry[0] <= 0:
                    del self._running[key]
                    entry[1]()
            self._step()

        self._hold(self.lora.decode.milliseconds(len(batch)) / 1000, stepped)

    def _hold(self, seconds: float, then: Callable[[], None]) -> None:
        self._holds.append((seconds, then))
        if not self._busy:
            self._next()

    def _next(self, _=None) -> None:
        if not self._holds:
            self._busy = False
            return
        self._busy = True
        seconds, then = self._holds.popleft()
        self.engine.after(seconds, self._release, then)

    def _release(self, then: Callable[[], None]) -> None:
        then()  # what it asks for next queues behind the holds already waiting
        self._next()
