"""Raw request records: one row per arrival, streamed to Parquet with bounded memory.

Times are wall-clock seconds (epoch) so records from several generator processes line up.
`scheduled` is when the arrival was due, `sent` when the request left, `first_byte` when the
response headers came, `end` when the body was read. A dropped arrival (over the in-flight
cap) has `dropped=True` and no send; a request still running when the run was cut off has
`unfinished=True` and `end` at the cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Arrow's default allocator (mimalloc) keeps the buffers of decompressed row groups for reuse:
# reading a million records and summarising them peaked 15 MB higher with it (285 MB against
# 270 MB with the system allocator; BENCHMARKS.md, "Load generator").
pa.set_memory_pool(pa.system_memory_pool())

SCHEMA = pa.schema([
    ("scheduled", pa.float64()),
    ("sent", pa.float64()),
    ("first_byte", pa.float64()),
    ("end", pa.float64()),
    ("route", pa.string()),
    ("status", pa.int32()),
    ("error", pa.string()),
    ("bytes", pa.int64()),
    ("adapter", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("output_tokens", pa.int32()),
    ("ttft_ms", pa.float64()),
    ("itl_ms", pa.list_(pa.float32())),
    ("generator", pa.string()),
    ("dropped", pa.bool_()),
    ("unfinished", pa.bool_()),
    ("degraded", pa.bool_()),  # answered, but marked degraded by the app (e.g. /rag without its LLM)
])
FIELDS = SCHEMA.names
FLAGS = ("dropped", "unfinished", "degraded")


class RecordBuffer:
    """Rows collected column by column; `take()` hands them over as one Arrow batch."""

    def __init__(self):
        self._cols: dict[str, list] = {name: [] for name in FIELDS}

    def __len__(self) -> int:
        return len(self._cols["scheduled"])

    def add(self, **row) -> None:
        """Append one record; missing fields are null (flags default to False)."""
        for name, col in self._cols.items():
            col.append(row.get(name, False if name in FLAGS else None))

    def take(self) -> pa.RecordBatch:
        """The buffered rows as a batch; the buffer is empty afterwards."""
        batch = pa.RecordBatch.from_pydict(self._cols, schema=SCHEMA)
        self._cols = {name: [] for name in FIELDS}
        return batch


def encode(batch: pa.RecordBatch) -> bytes:
    """A batch as Arrow IPC bytes, to ship from a worker to the master."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    """The inverse of `encode`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class RecordWriter:
    """Streams batches to one Parquet file; memory stays at one row group of `group_rows`.

    Generators ship a batch every second, often of a few rows. Written as it comes, each would
    be a row group whose metadata (about 14 KB) the writer keeps until the footer: a soak at a
    few requests/s grew 40 MB an hour that way. Batches are gathered into row groups instead."""

    def __init__(self, path: str | Path, group_rows: int = 10_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self.path, SCHEMA, compression="zstd")
        self.group_rows = group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append a batch (or table) of records."""
        if batch.num_rows:
            self._pending.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
            self._pending_rows += batch.num_rows
            self.rows += batch.num_rows
            if self._pending_rows >= self.group_rows:
                self._flush()
            elif len(self._pending) >= 64:  # many tiny tables cost more than their rows: compact them
                self._pending = [pa.concat_tables(self._pending).combine_chunks()]

    def _flush(self) -> None:
        if self._pending:
            self._writer.write(pa.concat_tables(self._pending), row_group_size=self._pending_rows)
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        """Write what is gathered and finish the file (its footer); it is readable from then on."""
        self._flush()
        self._writer.close()


STRINGS = ("route", "error", "adapter", "generator")


def load(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Records as a DataFrame, with derived `latency_ms` (from scheduled), `service_ms` (from send), `lag_ms`.

    Read one column at a time, strings as categoricals and `itl_ms` as an Arrow list column
    (no Python object per row): a million records take about 70 MB, and reading them peaks
    at little more, where a plain `to_pandas()` of the whole table peaks near 350 MB."""
    f = pq.ParquetFile(path, read_dictionary=[c for c in STRINGS if columns is None or c in columns])
    out = {}
    for name in [c for c in f.schema_arrow.names if columns is None or c in columns]:
        col = f.read(columns=[name], use_threads=False).column(0)
        if name in STRINGS:
            out[name] = pd.Categorical(col.to_pandas())
        elif name == "itl_ms":
            out[name] = pd.arrays.ArrowExtensionArray(col)
        else:  # an integer column with nulls becomes float with NaN, as to_pandas() would
            out[name] = col.to_numpy()
        del col
    return with_derived(pd.DataFrame(out, copy=False))


def itl_values(itl: pd.Series) -> np.ndarray:
    """Every inter-token gap in an `itl_ms` column, flattened into one array."""
    arr = itl.array
    if isinstance(arr, pd.arrays.ArrowExtensionArray):
        return pc.list_flatten(pa.array(arr)).to_numpy(zero_copy_only=False).astype(float)
    return np.concatenate([np.empty(0)] + [np.asarray(x, dtype=float) for x in itl.dropna()])


def with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Add the derived latency columns to raw records."""
    if {"scheduled", "sent", "end"} <= set(df.columns):
        df["latency_ms"] = (df["end"] - df["scheduled"]) * 1000
        df["service_ms"] = (df["end"] - df["sent"]) * 1000
        df["lag_ms"] = (df["sent"] - df["scheduled"]) * 1000
    return df
