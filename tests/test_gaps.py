"""Holes in Prometheus's record of a trial: found from the scrape times, and judged by whether
the replica counts on both sides agree."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.gaps import Gap, find_gaps, gap_problems, max_spacing_s

START, END, INTERVAL = 1000.0, 1060.0, 1.0
EVERY = list(np.arange(START - 10, END + 5, INTERVAL))


def without(lo: float, hi: float) -> list[float]:
    return [t for t in EVERY if not lo < t < hi]


def test_regular_scrapes_have_no_gap_and_one_missed_scrape_is_not_one():
    assert find_gaps(EVERY, START, END, INTERVAL) == []
    assert find_gaps(without(1020, 1022), START, END, INTERVAL) == []  # 1021 missed: 2 s apart


def test_a_restart_is_one_gap_between_the_scrapes_around_it():
    assert find_gaps(without(1020, 1031), START, END, INTERVAL) == [Gap(1020.0, 1031.0)]
    assert Gap(1020.0, 1031.0).seconds == 11


def test_no_scrape_at_all_is_one_gap_over_the_window():
    assert find_gaps([], START, END, INTERVAL) == [Gap(START, END)]


def test_a_gap_with_the_same_replicas_on_both_sides_is_a_note():
    replicas = {"rag/RAG": [(t, 2.0) for t in EVERY]}
    problems, notes = gap_problems([Gap(1020, 1031)], START, END, INTERVAL, replicas)
    assert problems == [] and "11 s" in notes[0] and "+20 s to +31 s" in notes[0]


def test_scaling_inside_a_gap_breaks_the_trial():
    replicas = {"rag/RAG": [(t, 2.0 if t < 1025 else 3.0) for t in EVERY], "rag/Other": [(t, 1.0) for t in EVERY]}
    problems, notes = gap_problems([Gap(1020, 1031)], START, END, INTERVAL, replicas)
    assert notes == [] and "rag/RAG scaled meanwhile" in problems[0] and "Other" not in problems[0]


def test_a_gap_at_the_window_edge_breaks_the_trial_and_one_outside_is_ignored():
    replicas = {"rag/RAG": [(t, 2.0) for t in EVERY]}
    assert "edge" in gap_problems([Gap(1050, 1070)], START, END, INTERVAL, replicas)[0][0]
    assert "edge" in gap_problems([Gap(990, 1005)], START, END, INTERVAL, replicas)[0][0]
    assert gap_problems([Gap(900, 990)], START, END, INTERVAL, replicas) == ([], [])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(START - 20, END + 20, allow_nan=False), max_size=80), st.floats(0.5, 5))
def test_gaps_are_exactly_the_long_spacings(scrapes, interval):
    gaps = find_gaps(scrapes, START, END, interval)
    for g in gaps:
        assert g.seconds > max_spacing_s(interval)
        assert not any(g.start < t < g.end for t in scrapes)  # nothing was scraped inside a gap
    assert all(a.end <= b.start for a, b in zip(gaps, gaps[1:]))
