"""Hand-made client records for tests: one arrival at a time, evenly spaced."""

from __future__ import annotations

import pandas as pd

from loadgen import records


class RecordRows:
    """Rows in loadgen's record schema, arrivals `step_s` apart from `t0`, each sent
    `send_delay_s` after it was due."""

    def __init__(self, t0: float, step_s: float, send_delay_s: float):
        self.t0, self.step_s, self.send_delay_s = t0, step_s, send_delay_s
        self.rows: list[dict] = []

    def add(self, route: str, latency_ms: float | None = None, **extra) -> None:
        """One arrival; with `latency_ms` it was sent and ended that long after it was due."""
        scheduled = self.t0 + len(self.rows) * self.step_s
        row = dict(scheduled=scheduled, route=route, generator="g1", **extra)
        if latency_ms is not None:
            row |= dict(sent=scheduled + self.send_delay_s, end=scheduled + latency_ms / 1000)
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        """The rows as loadgen.records.load would return them (derived columns added)."""
        buf = records.RecordBuffer()
        for row in self.rows:
            buf.add(**row)
        return records.with_derived(buf.take().to_pandas())
