"""The outcome benchmark's verdict (scripts/bench_outcome.py): the tuned configuration's saving
is taken against the cheapest baseline whose median meets the target, and a baseline or a
tuned answer that misses is never the reference."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_outcome", REPO / "scripts" / "bench_outcome.py")
bo = sys.modules["bench_outcome"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bo)


def row(cost: float, p99: float, met: bool) -> dict:
    return {"cost_per_hour": cost, "p99_ms": p99, "p99_runs": [p99 * 0.9, p99, p99 * 1.1], "met": met, "status": "x"}


def case(rows: dict) -> dict:
    return {"rows": rows, "hybrid": {"real_candidates": 1, "sim_winners_failed": 0, "correction": {"p99<500ms": 1.05},
                                     "real_repeat": 2},
            "trials": {"real": 5}, "search_wall_s": 900.0}


def test_the_saving_is_against_the_cheapest_baseline_that_meets():
    rows = {"Ray defaults": row(4.9, 1100, False), "seed article": row(5.7, 620, False),
            "static 2 replicas": row(7.4, 480, True), "static 3 replicas": row(8.2, 450, True),
            "tuned": row(5.8, 360, True), "tuned, held out (seed 1)": row(5.8, 420, True)}
    text = bo.table({"burst": case(rows)}, "p99<500ms", 3)
    line = next(x for x in text.splitlines() if x.startswith("| burst | static 2 replicas (7.40/h)"))
    assert "| 22% |" in line and "| seed 1: p99 420 ms, met |" in line and "| 6 | 0 of 1 | x1.05 | 15.0 |" in line


def test_a_streaming_target_is_judged_and_named_by_its_own_figure():
    rows = {"Ray defaults": row(4.9, 410, True), "tuned": row(2.4, 450, True),
            "tuned, held out (seed 1)": row(2.4, 470, True),
            "tuned, held out (seed 1, window at 1,800 s)": row(2.4, 640, False)}
    text = bo.table({"trace_replay": case(rows)}, "ttft_p99<500ms", 3)
    assert "| ttft_p99 ms (median; runs) |" in text
    line = next(x for x in text.splitlines() if x.startswith("| trace_replay | Ray defaults (4.90/h)"))
    assert "ttft_p99 450 ms" in line and "| 51% |" in line
    assert "| seed 1: ttft_p99 470 ms, met; seed 1, window at 1,800 s: ttft_p99 640 ms, missed |" in line


def test_a_tuned_answer_that_misses_saves_nothing_and_no_baseline_meeting_is_said():
    rows = {"Ray defaults": row(4.9, 1100, False), "tuned": row(3.0, 700, False)}
    line = next(x for x in bo.table({"diurnal": case(rows)}, "p99<500ms", 3).splitlines()
                if x.startswith("| diurnal | none"))
    assert "| - |" in line


def test_the_commands_it_runs_are_ones_the_cli_accepts(tmp_path):
    """Every `tuner` command line the benchmark builds parses as the CLI's own (options, ranges),
    a resumed search included."""
    import click
    import typer

    from tuner.cli import app

    commands = typer.main.get_command(app).commands
    a = bo.parser().parse_args([])
    search_out = tmp_path / "search"
    lines = [bo.search_args(a, "burst", search_out)]
    search_out.mkdir()
    (search_out / "study.db").write_text("")
    lines.append(bo.search_args(a, "burst", search_out))
    lines += [bo.measure_args(a, s, tmp_path / "c.yaml", tmp_path / "m", options)
              for s in bo.SCENARIOS for _, _, options in bo.HELD_OUT[s]]
    assert "--resume" in lines[1] and "--resume" not in lines[0]
    for args in lines:
        name, *rest = args
        with click.Context(commands[name]) as parent:
            commands[name].make_context(name, list(rest), parent=parent)


def test_the_tuned_configuration_is_the_one_the_search_hands_over(tmp_path):
    assert bo.tuned_config(tmp_path, {"best": {"serve_config": "best_serve_config.yaml", "runs": {}}}) == \
        tmp_path / "best_serve_config.yaml"
    assert bo.tuned_config(tmp_path, {"best": None}) is None


def test_the_real_runs_are_the_searchs_own_count_when_it_kept_one():
    counted = case({}) | {"hybrid": case({})["hybrid"] | {"real_runs": 4}}
    assert bo.real_runs(counted) == 4  # a pair stopped after one run counts one
    assert bo.real_runs(case({})) == 6  # before the count: 4 baselines, a candidate's 2 repeats
