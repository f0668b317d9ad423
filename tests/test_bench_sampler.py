"""The sampler benchmark on the shipped space (scripts/bench_sampler.py): the command lines it
runs are the CLI's own, and a study's result is its cheapest feasible cost, the trial that first
reached it, against the space's cost floor."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_sampler", REPO / "scripts" / "bench_sampler.py")
bs = sys.modules["bench_sampler"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)


def test_the_command_it_runs_is_one_the_cli_accepts(tmp_path):
    import typer

    from tuner.cli import app

    optimize = typer.main.get_command(app).commands["optimize"]
    a = bs.parser().parse_args([])
    for sampler in a.samplers.split(","):
        args = bs.study_args(a, sampler, 3, tmp_path / "o")
        ctx = optimize.make_context("optimize", args[1:])
        assert ctx.params["sampler"] == sampler and ctx.params["backend"] == "sim" and ctx.params["trials"] == 40


def test_a_study_reads_as_its_cheapest_feasible_cost_first_reached_and_the_floor(tmp_path):
    a = bs.parser().parse_args(["--out", str(tmp_path)])
    out = tmp_path / "gp-0"
    out.mkdir()
    pd.DataFrame({"number": [0, 1, 2, 3, 4, 5],
                  "baselines": ["starting config", "Ray defaults; static 1 replica", "static 2 replicas", None, None, None],
                  "cost_per_hour": [5.7, 4.9, 7.4, 5.0, 5.0, 4.8],
                  "feasible": [True, False, True, True, True, False]}).to_csv(out / "trials.csv", index=False)
    (out / "wall_s").write_text("12.5")
    r = bs.run(a, "gp", 0)
    assert r == {"best": 5.0, "first": 3, "wall_s": 12.5}
    text = bs.table({"gp": [r, {**r, "best": 5.7, "first": 0}]}, floor=4.9)
    assert "| seeds at the floor (4.90/h) |" in text and "| gp | 5.00, 5.70 | 1 of 2 | 3 | 12 |" in text


def test_the_floor_is_the_shipped_spaces_cheapest_configuration():
    """Every deployment at one replica, the small models on an eighth of a card and the LoRA
    model on a whole one: 6 replicas on L4-class cards, 11 at their reserved CPU."""
    cpus = 10 * 0.25 + 0.5
    assert bs.shipped_floor() == pytest.approx(0.8 + 5 * 0.8 / 8 + cpus * 0.045)
