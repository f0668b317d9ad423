"""Trace files: load and validate request traces (arrival times and token counts).

Formats, recognised by extension and columns:
- Azure LLM inference traces (CSV): `TIMESTAMP` (wall clock), `ContextTokens`, `GeneratedTokens`;
- Mooncake-style JSONL: `timestamp` (milliseconds), `input_length`, `output_length`;
- a plain CSV with `time_s` (seconds), and optional `prompt_tokens`, `output_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

AZURE_CONV = Path(__file__).parent / "data" / "azure_llm_2023_conv.csv"
MAX_TOKENS = 1e9  # token counts past this are not a trace's, and would overflow on the way to int64


class TraceError(ValueError):
    """A trace file is missing, unreadable or lacks the columns a format needs."""


@dataclass(frozen=True)
class TraceData:
    """Arrival offsets in seconds from the first request, with per-request token counts (or None)."""

    times_s: np.ndarray
    prompt_tokens: np.ndarray | None
    output_tokens: np.ndarray | None

    def __len__(self) -> int:
        return self.times_s.size

    def starting_at(self, start_s: float) -> "TraceData":
        """The trace from `start_s` seconds in (trace time), its offsets counted from there: a
        window other than the first, say to check a tuned configuration on traffic it was
        not tuned on."""
        keep = self.times_s >= start_s
        if not keep.any():
            raise TraceError(f"the trace ends at {self.times_s[-1]:.0f} s; nothing is left from {start_s:g} s")

        def cut(a):
            return None if a is None else a[keep]
        return TraceData(self.times_s[keep] - start_s, cut(self.prompt_tokens), cut(self.output_tokens))


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    try:
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl")
        return pd.read_csv(path)
    except (ValueError, TypeError, pd.errors.ParserError) as e:  # TypeError: JSON lines of mixed kinds
        raise TraceError(f"cannot read trace {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


def _times(df: pd.DataFrame, path: Path) -> np.ndarray:
    if "TIMESTAMP" in df:
        # fractions may vary by row; utc: offsets may too (naive stamps keep their spacing)
        stamps = pd.to_datetime(df["TIMESTAMP"], errors="coerce", format="mixed", utc=True)
        if stamps.isna().any():
            raise TraceError(f"{path}: TIMESTAMP row {int(stamps.isna().idxmax()) + 2} is not a date-time")
        return (stamps - stamps.min()).dt.total_seconds().to_numpy()
    if "timestamp" in df:
        ms = _numbers(df["timestamp"])
        return (ms - ms.min()) / 1000.0
    if "time_s" in df:
        s = _numbers(df["time_s"])
        return s - s.min()
    raise TraceError(f"{path}: no arrival-time column (TIMESTAMP, timestamp in ms, or time_s)")


def _numbers(col: pd.Series) -> np.ndarray:
    """A column as floats; text, booleans and nulls become NaN (JSON has all three)."""
    col = col.astype(object).map(lambda v: None if isinstance(v, (bool, np.bool_)) else v)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)


def _column(df: pd.DataFrame, names: tuple[str, ...], path: Path) -> np.ndarray | None:
    for name in names:
        if name in df:
            col = _numbers(df[name])
            if not (np.isfinite(col) & (col >= 0) & (col <= MAX_TOKENS) & (col == np.round(col))).all():
                raise TraceError(f"{path}: column {name} must hold non-negative whole numbers up to {MAX_TOKENS:g}")
            return col.astype(np.int64)
    return None


def load_trace(path: str | Path = AZURE_CONV) -> TraceData:
    """Read a trace file into arrival offsets (sorted) and token counts. Times may be
    unsorted or negative (offsets count from the earliest); a file that cannot be replayed is
    a TraceError naming the file and what is wrong."""
    path = Path(path)
    df = _read(path)
    if df.empty:
        raise TraceError(f"{path}: the trace holds no requests")
    times = _times(df, path)
    if not np.isfinite(times).all():
        raise TraceError(f"{path}: arrival times must be numbers")
    order = np.argsort(times, kind="stable")
    prompt = _column(df, ("ContextTokens", "input_length", "prompt_tokens"), path)
    output = _column(df, ("GeneratedTokens", "output_length", "output_tokens"), path)
    return TraceData(times[order], None if prompt is None else prompt[order], None if output is None else output[order])
