"""Raw request records: buffer -> Arrow batch -> IPC bytes round trip, and the Parquet writer
whose file `records.load` reads back with the derived latency columns."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from loadgen import records

ROWS = [
    dict(scheduled=100.0, sent=100.25, first_byte=100.5, end=101.0, route="/rag", status=200, bytes=512,
         prompt_tokens=12, output_tokens=3, ttft_ms=500.0, itl_ms=[1.5, 2.25], generator="g1"),
    dict(scheduled=100.5, route="/predict", dropped=True, error="dropped: 8 requests in flight", generator="g1"),
    dict(scheduled=101.0, sent=101.0, end=104.0, route="/v1/completions", adapter="lora-03", unfinished=True,
         error="unfinished at stop", generator="g2"),
]


def buffer_of(rows) -> records.RecordBuffer:
    buf = records.RecordBuffer()
    for row in rows:
        buf.add(**row)
    return buf


def full(row: dict) -> dict:
    """A row as it reads back: every field, nulls where missing, flags False by default."""
    return {name: row.get(name, False if name in records.FLAGS else None) for name in records.FIELDS}


def test_take_empties_the_buffer():
    buf = buffer_of(ROWS)
    assert len(buf) == 3
    batch = buf.take()
    assert batch.schema == records.SCHEMA and batch.num_rows == 3
    assert len(buf) == 0 and buf.take().num_rows == 0


def test_encode_decode_round_trip_keeps_values_and_nulls():
    table = records.decode(records.encode(buffer_of(ROWS).take()))
    assert table.schema == records.SCHEMA
    assert table.to_pylist() == [full(r) for r in ROWS]


def test_writer_and_load_with_derived_latencies(tmp_path):
    path = tmp_path / "run" / "records.parquet"  # the folder is created
    writer = records.RecordWriter(path)
    writer.write(buffer_of(ROWS[:2]).take())
    writer.write(records.RecordBuffer().take())  # an empty batch writes nothing
    writer.write(pa.Table.from_batches([buffer_of(ROWS[2:]).take()]))
    writer.close()
    assert writer.rows == 3

    df = records.load(path)
    assert df["route"].tolist() == [r["route"] for r in ROWS]
    assert list(df["itl_ms"][0]) == [1.5, 2.25] and pd.isna(df["itl_ms"][1])
    assert records.itl_values(df["itl_ms"]).tolist() == [1.5, 2.25] + list(ROWS[2].get("itl_ms") or [])
    assert isinstance(df["route"].dtype, pd.CategoricalDtype)  # one string per category, not per row
    assert df["dropped"].tolist() == [False, True, False] and df["unfinished"].tolist() == [False, False, True]
    assert df["latency_ms"][[0, 2]].tolist() == pytest.approx([1000, 3000])  # end - scheduled
    assert df["service_ms"][[0, 2]].tolist() == pytest.approx([750, 3000])  # end - sent
    assert df["lag_ms"][[0, 2]].tolist() == pytest.approx([250, 0])  # sent - scheduled
    assert df["latency_ms"].isna().tolist() == [False, True, False]  # a dropped arrival has no latency


def test_load_without_the_time_columns_derives_nothing(tmp_path):
    writer = records.RecordWriter(tmp_path / "r.parquet")
    writer.write(buffer_of(ROWS).take())
    writer.close()
    df = records.load(tmp_path / "r.parquet", columns=["route", "status"])
    assert list(df.columns) == ["route", "status"]


def test_small_batches_are_gathered_into_row_groups_in_order(tmp_path):
    import pyarrow.parquet as pq

    writer = records.RecordWriter(tmp_path / "r.parquet", group_rows=100)
    for i in range(300):  # a generator's one-second flushes at a few requests/s
        buf = records.RecordBuffer()
        for k in range(3):
            buf.add(scheduled=float(3 * i + k), route="/rag", generator="g")
        writer.write(buf.take())
    writer.close()
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    assert writer.rows == meta.num_rows == 900 and meta.num_row_groups <= 9
    assert records.load(tmp_path / "r.parquet", columns=["scheduled"])["scheduled"].tolist() == list(map(float, range(900)))


def test_batched_stream_events_count_their_tokens_and_spread_the_gap():
    from loadgen.sse import itl_ms, tokens_in

    assert tokens_in(b'{"delta": "a b c", "tokens": 3}') == 3 and tokens_in(b'{"delta": "a"}') == 1
    itl = itl_ms([(0.0, 1), (0.05, 5), (0.06, 1)])
    assert itl == pytest.approx([10.0] * 5 + [10.0])
