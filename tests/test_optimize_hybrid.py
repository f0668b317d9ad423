"""The hybrid search against a stand-in for the real stack whose latencies are the simulator's
times a factor: a simulator winner fails for real, the correction is learned, the next round's
candidate passes; baselines, budgets and resume."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from tuner.optimize.evaluate import Evaluation
from tuner.optimize.hybrid import Hybrid, HybridSettings, correction, settled_miss
from tuner.optimize.space import apply, repair
from tuner.result import RepeatInfo, verdict_status
from tuner.target import parse_target

sys.path.insert(0, str(Path(__file__).parent))
from test_optimize_study import CONFIG, SPACE, backend  # noqa: E402

SLOWER = 1.5
KEY = "serve.MultiLoRAModel.num_replicas"


class Slower:
    """The "real" system: the simulator's trial with every client value of a clause x factor
    (or x the factor for its replica count)."""

    name = "real"

    def __init__(self, sim, factor: float | dict[int, float]):
        self.sim, self.factor, self.calls, self.runs = sim, factor, [], []

    def evaluate(self, serve_config, values=None, label="", repeat=None, settled=None) -> Evaluation:
        """Every run of a configuration measures the same (the simulator is deterministic), so
        its repeats stop where `settled` says the first i runs decide."""
        self.calls.append((label, (values or {}).get(KEY), repeat))
        ev = self.sim.evaluate(serve_config, values, label)
        factor = self.factor[(values or {}).get(KEY)] if isinstance(self.factor, dict) else self.factor
        for r in ev.results:
            for cv in r.target.clauses:
                cv.client = cv.client * factor
                cv.passed, cv.margin = cv.clause.holds(cv.client), cv.clause.margin(cv.client)
            r.status = verdict_status(r.target.clauses)
            r.overall.latency_ms.p99 *= factor
            n = repeat or 1
            used = next((i for i in range(1, n) if settled and settled([r] * i, n)), n)
            r.repeat = RepeatInfo(count=used, runs=[f"repeat-{i}" for i in range(1, used + 1)], chosen="repeat-1",
                                  spread={})
            self.runs.append(used)
        return Evaluation(serve_config, ev.results)


@pytest.fixture(scope="module")
def p99():
    """Each replica count's simulated p99 on the LoRA scenario."""
    b = backend("p99<60s")
    return {n: b.evaluate(apply(CONFIG, repair({KEY: n}, SPACE, CONFIG))).p99_ms() for n in range(1, 5)}


def hybrid(target: str, tmp_path: Path, **settings) -> tuple[Hybrid, Slower]:
    sim = backend(target)
    real = Slower(backend(target), SLOWER)
    opts = dict(sim_trials=8, max_real=3, repeat=2, noise_floor=0.01, real_baselines=False) | settings
    return Hybrid(sim, real, SPACE, CONFIG, parse_target(target), storage=f"sqlite:///{tmp_path}/s.db", seed=3,
                  settings=HybridSettings(**opts)), real


def test_a_simulator_winner_that_fails_for_real_corrects_the_simulator_and_the_next_candidate_passes(p99, tmp_path):
    # a bound the simulator's 2 replicas meet and the real ones miss; 3 replicas meet it for real
    bound = SLOWER * (p99[2] + p99[3]) / 2
    assert p99[1] > bound > p99[2] and SLOWER * p99[2] > bound > SLOWER * p99[3]
    h, real = hybrid(f"p99<{bound:.0f}ms", tmp_path)
    outcome = h.run()
    assert [v for _, v, _ in real.calls] == [2, 3] and all(r == 2 for _, _, r in real.calls)
    first, second = sorted(optuna.load_study(study_name="real", storage=f"sqlite:///{tmp_path}/s.db").trials,
                           key=lambda t: t.number)
    assert not first.user_attrs["passed"] and second.user_attrs["passed"]
    # the failing pair stopped after its first run
    assert (first.user_attrs["real_runs"], second.user_attrs["real_runs"]) == (1, 2)
    assert outcome.best.user_attrs["values"][KEY] == 3 and outcome.reason == "a candidate passed on the real stack"
    assert outcome.factors[f"p99<{bound:.0f}ms"] == pytest.approx(SLOWER)
    assert [s.study_name for s in outcome.rounds] == ["sim-0", "sim-1"]
    # round 1 carried round 0's trials over, judged again under the correction: none re-simulated
    carried = [t for t in outcome.rounds[1].trials if "copied_from" in t.user_attrs]
    assert len(carried) == len(outcome.rounds[0].trials)
    two = [t for t in carried if t.user_attrs["values"][KEY] == 2]
    assert two and not any(t.user_attrs["feasible"] for t in two) and all(v > 0 for t in two for v in t.constraints.values())


def test_a_margin_below_the_noise_is_not_a_pass(p99, tmp_path):
    bound = SLOWER * p99[4] * 1.05  # only 4 replicas meet it for real, by 5 %
    h, real = hybrid(f"p99<{bound:.0f}ms", tmp_path, noise_floor=0.10, max_real=4)
    outcome = h.run()
    assert outcome.best is None and [v for _, v, _ in real.calls][-1] == 4
    assert "no cheaper simulated configuration" in outcome.reason


def test_the_sampler_reads_each_shortfall_plus_the_noise_floor_and_the_verdicts_stay_plain(p99, tmp_path):
    """A round's constraints ask for the margin a real pass needs; a trial's own verdict (what
    the reports and the simulated baselines read) is the plain one under the correction."""
    bound = SLOWER * p99[3] * 1.05  # 3 replicas meet for real, by 5 %: inside a 10 % floor
    h, _ = hybrid(f"p99<{bound:.0f}ms", tmp_path, noise_floor=0.10, max_real=4)
    outcome = h.run()
    trials = [t for study in outcome.rounds for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert any("copied_from" in t.user_attrs for t in trials)
    for t in trials:
        (violation,), (constraint,) = t.user_attrs["violations"], t.constraints.values()
        assert constraint == pytest.approx(violation + 0.10)
        assert t.user_attrs["feasible"] == (violation < 0)
    assert any(t.user_attrs["feasible"] and c > 0 for t in trials for c in t.constraints.values())


def test_no_verification_starts_that_would_end_after_the_time_budget(p99, tmp_path):
    """Each real run takes 100 s of a 250 s budget: the first candidate fails on its first run
    (a pair with one run over the bound cannot pass), and the next, whose two runs would end at
    300 s, is not started."""
    bound = SLOWER * (p99[2] + p99[3]) / 2  # 2 replicas fail for real, 3 would pass
    h, real = hybrid(f"p99<{bound:.0f}ms", tmp_path)
    outcome = on_a_clock(h, real, budget_s=250).run()
    assert [v for _, v, _ in real.calls] == [2] and real.runs == [1] and outcome.best is None
    assert outcome.reason == "the time budget left (150 s) is shorter than a verification (2 x 100 s)"


def on_a_clock(h: Hybrid, real: Slower, budget_s: float, run_s: float = 100.0) -> Hybrid:
    """The search on a clock that starts at 0 and that each real run moves by `run_s`."""
    now = [0.0]
    h.clock, h.deadline = (lambda: now[0]), budget_s
    evaluate = real.evaluate

    def slow_evaluate(serve_config, values=None, label="", repeat=None, settled=None):
        ev = evaluate(serve_config, values, label, repeat, settled)
        now[0] += run_s * ev.run_count()
        return ev

    real.evaluate = slow_evaluate
    return h


def test_a_baseline_that_passes_for_real_is_the_answer_when_nothing_cheaper_is_left(tmp_path):
    h, real = hybrid("p99<60s", tmp_path, real_baselines=True)
    outcome = h.run()
    # the starting config and Ray's defaults give one replica here: one baseline run, repeat 1
    assert real.calls == [("baseline-starting-config", 1, 1)]
    assert outcome.best.user_attrs["baselines"] == ["starting config", "Ray defaults"]
    assert "no cheaper" in outcome.reason


def test_resume_keeps_the_real_runs_and_a_killed_one_is_run_again(p99, tmp_path):
    bound = SLOWER * (p99[2] + p99[3]) / 2
    h, real = hybrid(f"p99<{bound:.0f}ms", tmp_path, max_real=1)
    assert h.run().best is None and [v for _, v, _ in real.calls] == [2]
    # a verification left running by a killed process
    study = optuna.load_study(study_name="real", storage=f"sqlite:///{tmp_path}/s.db")
    study.ask()
    h2, real2 = hybrid(f"p99<{bound:.0f}ms", tmp_path, max_real=3)
    outcome = h2.run()
    assert [v for _, v, _ in real2.calls] == [3] and outcome.best.user_attrs["values"][KEY] == 3
    states = [t.state for t in optuna.load_study(study_name="real", storage=f"sqlite:///{tmp_path}/s.db").trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and states.count(optuna.trial.TrialState.COMPLETE) == 2


def test_one_pathological_run_moves_the_correction_only_by_its_vote():
    clauses = {c.text: c for c in parse_target("p99<500ms").clauses}

    def run(real, sim, **attrs):
        return optuna.trial.create_trial(value=1.0, user_attrs={"clause_values": [{"p99<500ms": real}],
                                                                "sim_clause_values": [{"p99<500ms": sim}], **attrs})

    baselines = [run(1014.0, 981.0, baselines=["starting config"]), run(640.0, 639.0, baselines=["static 2"]),
                 run(608.0, 450.0, baselines=["static 3"])]
    assert correction(baselines, clauses)["p99<500ms"] == pytest.approx(1014 / 981)
    # a candidate that failed at 19x its simulated p99 (a ramp run once did): the median moves
    # to the next ratio up, it does not become 19 and close the search
    failed = run(7600.0, 400.0, passed=False)
    assert correction([*baselines, failed], clauses)["p99<500ms"] == pytest.approx((1014 / 981 + 608 / 450) / 2)
    passed = run(420.0, 440.0, passed=True)
    assert correction([*baselines, passed], clauses)["p99<500ms"] == pytest.approx((1014 / 981 + 640 / 639) / 2)


def test_correction_is_the_median_ratio_per_clause():
    target = parse_target("p99<1s,throughput>=5rps")
    clauses = {c.text: c for c in target.clauses}

    def real(values, sim):
        return optuna.trial.create_trial(value=1.0, user_attrs={"clause_values": [values], "sim_clause_values": [sim]})

    trials = [real({"p99<1s": 600.0, "throughput>=5rps": 9.0}, {"p99<1s": 300.0, "throughput>=5rps": 10.0}),
              real({"p99<1s": 500.0, "throughput>=5rps": 10.0}, {"p99<1s": 400.0, "throughput>=5rps": 10.0}),
              real({"p99<1s": 330.0, "throughput>=5rps": 11.0}, {"p99<1s": 300.0, "throughput>=5rps": 10.0}),
              real({"p99<1s": None, "throughput>=5rps": 0.0}, {"p99<1s": 100.0, "throughput>=5rps": 10.0})]
    assert correction(trials, clauses) == {"p99<1s": pytest.approx(1.25), "throughput>=5rps": pytest.approx(1.0)}

def test_a_static_count_the_corrected_simulator_puts_far_off_is_not_run_for_real(p99, tmp_path):
    from tuner.optimize.study import static_baselines
    bound = SLOWER * (p99[2] + p99[3]) / 2
    assert SLOWER * p99[1] > bound * 1.02  # 1 replica misses by more than twice the noise floor
    sim, real = backend(f"p99<{bound:.0f}ms"), Slower(backend(f"p99<{bound:.0f}ms"), SLOWER)
    static = {label: cfg for label, cfg in static_baselines(SPACE, CONFIG, range(1, 4)).items()}
    h = Hybrid(sim, real, SPACE, CONFIG, parse_target(f"p99<{bound:.0f}ms"), storage=f"sqlite:///{tmp_path}/s.db",
               seed=3, named_baselines=static,
               settings=HybridSettings(sim_trials=8, max_real=3, repeat=2, noise_floor=0.01, real_baselines=True))
    h.run()
    labels = [label for label, _, _ in real.calls]
    assert "baseline-static-1-replica" not in labels
    assert labels[0] == "baseline-starting-config"  # the correction comes from the runs before the sweep


def static_hybrid(bound: float, tmp_path: Path, factor: float | dict[int, float] = SLOWER,
                  **settings) -> tuple[Hybrid, Slower]:
    from tuner.optimize.study import static_baselines
    target = f"p99<{bound:.0f}ms"
    sim, real = backend(target), Slower(backend(target), factor)
    opts = dict(sim_trials=8, max_real=3, repeat=2, noise_floor=0.01, real_baselines=True) | settings
    return Hybrid(sim, real, SPACE, CONFIG, parse_target(target), storage=f"sqlite:///{tmp_path}/s.db", seed=3,
                  named_baselines=static_baselines(SPACE, CONFIG, range(1, 4)),
                  settings=HybridSettings(**opts)), real


def test_the_static_sweep_runs_after_the_candidates_and_not_when_one_passed_cheaper(p99, tmp_path):
    h, real = static_hybrid(SLOWER * (p99[2] + p99[3]) / 2, tmp_path)
    outcome = h.run()
    labels = [label for label, _, _ in real.calls]
    assert labels[0] == "baseline-starting-config" and not any("static" in label for label in labels)
    assert outcome.best.user_attrs["values"][KEY] == 3 and not outcome.best.user_attrs.get("baselines")


def test_when_no_candidate_passes_the_static_sweep_is_the_fallback(p99, tmp_path):
    # only 2 replicas are slower for real than simulated: the simulator's one candidate fails
    bound = p99[2] * 1.1
    assert p99[3] < bound < p99[2] * SLOWER
    h, real = static_hybrid(bound, tmp_path, factor={1: 1.0, 2: SLOWER, 3: 1.0, 4: 1.0}, max_real=1)
    outcome = h.run()
    # the sweep runs 3 only: the corrected simulator puts 1 replica far off, 2 is the candidate that failed
    assert [label for label, _, _ in real.calls] == ["baseline-starting-config", "real-001",
                                                     "baseline-static-3-replicas"]
    assert outcome.best.user_attrs["baselines"] == ["static 3 replicas"]


def verdicts(*runs: dict[str, float]) -> list:
    """Load trials whose target verdicts are the given values, per clause text."""
    from types import SimpleNamespace
    from tuner.target import parse_target as parse
    out = []
    for values in runs:
        clauses = [SimpleNamespace(clause=c, passed=c.holds(values[c.text]))
                   for text in values for c in parse(text).clauses]
        out.append(SimpleNamespace(target=SimpleNamespace(clauses=clauses)))
    return out


def test_a_pair_with_one_run_over_an_upper_bound_is_settled_after_that_run():
    assert settled_miss(verdicts({"p99<500ms": 501.0}), 2)
    assert not settled_miss(verdicts({"p99<500ms": 499.0}), 2)
    # a throughput below its bound can be carried by a far better second run
    assert not settled_miss(verdicts({"throughput>=5rps": 4.0}), 2)


def test_more_runs_settle_a_miss_only_once_the_median_must_miss():
    miss, hit = {"p99<500ms": 600.0}, {"p99<500ms": 400.0}
    assert not settled_miss(verdicts(miss), 3)
    assert not settled_miss(verdicts(miss, hit), 3)
    assert settled_miss(verdicts(miss, miss), 3)
    assert not settled_miss(verdicts(miss, miss), 4) and settled_miss(verdicts(miss, miss, miss), 4)
    # misses of different clauses do not add up
    assert not settled_miss(verdicts({"p99<500ms": 600.0, "p50<100ms": 50.0}, {"p99<500ms": 400.0, "p50<100ms": 200.0}), 3)


def test_a_candidate_is_not_verified_when_the_budget_would_leave_the_sweep_no_run(p99, tmp_path):
    """Each real run takes 100 s of 350. After the starting config (100 s), the candidate's pair
    and the one sweep run it may need (static 2, which the corrected simulator has passing)
    would end at 400 s: the sweep runs instead, static 2 misses for real, static 3 passes."""
    h, real = static_hybrid(p99[2] * 1.1, tmp_path, factor={1: 1.0, 2: SLOWER, 3: 1.0, 4: 1.0})
    outcome = on_a_clock(h, real, budget_s=350).run()
    assert [label for label, _, _ in real.calls] == ["baseline-starting-config", "baseline-static-2-replicas",
                                                     "baseline-static-3-replicas"]
    assert outcome.reason == ("the time budget left (250 s) is shorter than a verification and the static sweep's "
                              "1 run(s) (3 x 100 s)")
    assert outcome.best.user_attrs["baselines"] == ["static 3 replicas"]


def test_a_sweep_no_count_of_which_has_the_margin_keeps_no_time_from_a_candidate(p99, tmp_path):
    """The same clock and budget as above, but a floor only 4 replicas clear in the simulator:
    no static count (1-3) could pass by the margin, so none is reserved, and the candidate's
    pair runs after the starting config (the old reserve, every count left, refused it)."""
    floor = 0.2
    bound = (p99[3] + p99[4]) / 2 / (1 - floor)  # 4 replicas clear the floor, 3 do not
    assert p99[4] < bound * (1 - floor) < p99[3]
    h, real = static_hybrid(bound, tmp_path, factor=1.0, noise_floor=floor)
    outcome = on_a_clock(h, real, budget_s=350).run()
    assert [label for label, _, _ in real.calls] == ["baseline-starting-config", "real-001"]
    assert outcome.best.user_attrs["values"][KEY] == 4
