"""The terminal's account of a search without an answer."""

from rich.console import Console

from tuner.views import no_best, print_optimize


def summary(static3_feasible: bool, candidate_met: bool) -> dict:
    base = {"backend": "real", "trial": 0, "cost_per_hour": 5.0, "p99_ms": 1100.0, "feasible": False, "margin": -1.2}
    return {
        "target": "p99<500ms", "scenarios": ["burst"], "best": None,
        "baselines": {"Ray defaults": base,
                      "static 3 replicas": base | {"trial": 4, "cost_per_hour": 8.2, "p99_ms": 474.0,
                                                   "feasible": static3_feasible, "margin": 0.052}},
        "hybrid": {"reason": "the time budget ran out", "rounds": 2, "real_candidates": 1, "sim_winners_failed": 1,
                   "correction": {"p99<500ms": 1.11},
                   "verified": [{"label": "real-005", "met": candidate_met, "margin": 0.064 if candidate_met else -0.06}]},
    }


def test_what_met_by_less_than_the_noise_is_named_not_denied():
    text = no_best(summary(True, True))
    assert text.startswith("no configuration passed within the budget")
    assert "static 3 replicas by 5%" in text and "real-005 by 6%" in text and "Ray defaults" not in text


def test_nothing_met_says_so():
    assert no_best(summary(False, False)) == "no configuration met the target within the budget"


def test_the_table_and_the_last_line_agree():
    console = Console(record=True, width=200)
    print_optimize(summary(True, False), console)
    out = console.export_text()
    assert "static 3 replicas" in out and "met" in out
    assert "no configuration passed within the budget" in out and "static 3 replicas by 5%" in out
    assert "no configuration met the target" not in out


def test_a_simulated_baseline_is_not_called_met_on_the_real_stack():
    s = summary(True, False)
    s["baselines"]["static 3 replicas"]["backend"] = "sim"
    assert no_best(s) == "no configuration met the target within the budget"
