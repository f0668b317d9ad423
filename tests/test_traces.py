"""Trace files: the shipped Azure trace, Mooncake-style JSONL, plain time_s CSV, and clear
errors for files that cannot be used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadgen.traces import AZURE_CONV, TraceError, load_trace


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_azure_trace():
    data = load_trace(AZURE_CONV)
    assert len(data) == 19366
    assert data.times_s[0] == 0 and np.all(np.diff(data.times_s) >= 0)
    assert 3000 < data.times_s[-1] < 3700  # an hour of conversation traffic
    assert data.prompt_tokens.size == data.output_tokens.size == 19366
    assert data.prompt_tokens.min() >= 0 and data.output_tokens.min() >= 0
    assert load_trace().times_s.size == 19366  # the default path


def test_azure_csv_sorts_rows_and_tokens_together(tmp_path):
    path = write(tmp_path, "azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                        "2023-11-16 18:00:02.5,300,30\n2023-11-16 18:00:00,100,10\n")
    data = load_trace(path)
    assert data.times_s.tolist() == [0, 2.5]
    assert data.prompt_tokens.tolist() == [100, 300] and data.output_tokens.tolist() == [10, 30]


def test_mooncake_jsonl_in_milliseconds(tmp_path):
    rows = [{"timestamp": 5000, "input_length": 10, "output_length": 1},
            {"timestamp": 2000, "input_length": 20, "output_length": 2},
            {"timestamp": 2500, "input_length": 30, "output_length": 3}]
    path = write(tmp_path, "trace.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = load_trace(path)
    assert data.times_s.tolist() == [0, 0.5, 3.0]
    assert data.prompt_tokens.tolist() == [20, 30, 10] and data.output_tokens.tolist() == [2, 3, 1]


def test_time_s_csv_with_and_without_tokens(tmp_path):
    data = load_trace(write(tmp_path, "t.csv", "time_s,prompt_tokens,output_tokens\n10,5,50\n10.25,6,60\n"))
    assert data.times_s.tolist() == [0, 0.25]
    assert data.prompt_tokens.tolist() == [5, 6] and data.output_tokens.tolist() == [50, 60]
    bare = load_trace(write(tmp_path, "bare.csv", "time_s\n3\n1\n2\n"))
    assert bare.times_s.tolist() == [0, 1, 2] and bare.prompt_tokens is None and bare.output_tokens is None


@pytest.mark.parametrize("name,text,fragments", [
    ("missing.csv", None, ["not found", "missing.csv"]),
    ("empty.csv", "", ["cannot read trace", "empty.csv"]),
    ("header.csv", "time_s,prompt_tokens\n", ["holds no requests"]),
    ("no_time.csv", "when,prompt_tokens\n1,2\n", ["no arrival-time column", "time_s"]),
    ("negative.csv", "time_s,prompt_tokens\n0,5\n1,-3\n", ["prompt_tokens", "non-negative"]),
    ("negative.jsonl", '{"timestamp": 1, "input_length": 1, "output_length": -1}\n', ["output_length", "non-negative"]),
    ("text_time.csv", "time_s\n0\nsoon\n", ["arrival times must be numbers"]),
    ("bad_date.csv", "TIMESTAMP\n2023-11-16 18:00:00\nyesterday\n", ["TIMESTAMP row 3"]),
])
def test_unusable_files_raise_trace_error(tmp_path, name, text, fragments):
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert all(f in str(info.value) for f in fragments), str(info.value)


def test_a_later_window_starts_its_offsets_at_zero_with_its_own_tokens():
    data = load_trace(AZURE_CONV)
    later = data.starting_at(1800.0)
    first = int(np.searchsorted(data.times_s, 1800.0))
    assert later.times_s[0] == pytest.approx(data.times_s[first] - 1800.0) and later.times_s[0] >= 0
    assert len(later) == len(data) - first
    assert later.output_tokens[0] == data.output_tokens[first]
    with pytest.raises(TraceError, match="nothing is left from 99999 s"):
        data.starting_at(99999.0)
