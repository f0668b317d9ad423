"""The hybrid search: search in the simulator, verify the best candidates on the real stack,
correct the simulator by what the real runs showed, and repeat until a candidate passes for
real with a margin larger than the measured noise. The real verdict is the one reported.

Rounds. Round k is an Optuna study `sim-k`: the simulator's trials, each clause's value scaled
by the correction known when the round began (so the sampler steers towards what is feasible
for real). The constraints the sampler reads are the shortfalls plus the noise floor: a trial
is feasible to it only with the margin a real pass needs. Minimising cost, a sampler told the
bound packs its feasible trials against it, where no real run passes by the margin: on the
trace's search (BENCHMARKS.md, "Outcome") all 40 simulated trials under 2.7/h landed 2-6 %
inside `ttft_p99<500ms` and both candidates failed for real; asked for the margin, the same
sampler found 1.88/h at a simulated 386 ms, which passed for real. (The trials' own verdicts,
`feasible`, stay the plain ones: the reports and the simulated baselines read them.) A new
round starts with every earlier simulated trial copied in and judged again under the new
correction (nothing is simulated twice), then samples `sim_trials` more; a warm start's prior
trials (tuner.optimize.warm_start) join round 0 constrained the same way, and the later rounds
carry them.
The correction, per clause, is the ratio of the real value to the simulated one for the same
configuration (real p99 / simulated p99 for an upper bound): the median over every real run,
baselines included (`correction`), so one pathological run moves it only by its vote. A failed
candidate is never proposed again, so the search moves on to the next cheapest.

Verification (study `real`): a candidate's scenarios on the stack, `repeat` runs each. It
passes when every clause holds on the median of the runs with a relative margin above the
noise: the larger of the runs' own spread and the noise floor measured for this machine. The
repeats stop as soon as the runs so far fail it whatever the rest measure (`settled_miss`).

Real runs are spent where the saving is. The user's references (the starting config, Ray's
defaults) run once each before the first candidate: they are what a saving is counted against,
and the correction's first votes. The static replica sweep, an engineer's fallback, runs after
the candidates and only for counts cheaper than what passed: on the recorded searches it took 2
of 6 real runs and could never beat a candidate that passed cheaper. A candidate is verified
only while the budget also leaves the sweep the runs it may need to reach a count the
corrected simulator has passing with the margin, so the answer is never worse than the
engineer's sweep for want of time.
Everything lives in the study storage, so `resume` carries on where a killed search stopped.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna

from tuner.optimize.attrs import StudyTrial, TrialAttrs
from tuner.optimize.evaluate import Evaluation, judge
from tuner.optimize.space import Space, apply
from tuner.optimize.study import STATIC, completed, cost_of, open_storage, open_study, rank, record, run_study
from tuner.result import TrialResult
from tuner.target import Clause, Target



@dataclass(frozen=True)
class HybridSettings:
    """How much of each backend the search may use."""

    sim_trials: int = 60  # new simulated trials per round
    patience: int | None = None  # end a round after this many simulated trials without a better one
    candidates: int = 1  # verified per round before a new round starts
    max_real: int = 4  # candidate verifications in all (baselines not counted)
    repeat: int = 2  # real runs per candidate
    noise_floor: float = 0.15  # this machine's p99 CV over repeats of one trial (BENCHMARKS.md, Trials)
    real_baselines: bool = True


@dataclass
class HybridOutcome:
    """Where the search ended and why."""

    rounds: list[optuna.Study]
    real: optuna.Study
    best: StudyTrial | None  # the cheapest configuration that passed for real with the margin
    reason: str
    factors: dict[str, float] = field(default_factory=dict)


def correction(real_trials: list[StudyTrial], clauses: dict[str, Clause]) -> dict[str, float]:
    """Per clause, the ratio of real to simulated value the search trusts: the median over every
    configuration run for real, baselines and candidates alike. A median moves by little for
    one pathological run once three or more are in (on the recorded searches, one run made x10
    worse moved the final correction by x1.02 at the median, x1.07 at most), where the rule it
    replaced, the least favourable ratio of a failed candidate, moved it by x9.85 and ended
    searches; both predicted the recorded real verdicts equally well (scripts/bench_correction.py,
    BENCHMARKS.md)."""
    ratios: dict[str, list[float]] = {}
    for t in real_trials:
        a = TrialAttrs.of(t)
        for real_vals, sim_vals in zip(a.clause_values, a.sim_clause_values):
            for text, rv in real_vals.items():
                sv = sim_vals.get(text)
                if rv is not None and sv is not None and rv > 0 and sv > 0 and text in clauses:
                    ratios.setdefault(text, []).append(rv / sv)
    return {text: statistics.median(rs) for text, rs in ratios.items()}


def rejudge(trial: StudyTrial, clauses: dict[str, Clause], factors: dict[str, float]) -> tuple[list[str], list[float], bool]:
    """A simulated trial's verdict under a correction, from the clause values it stored."""
    a = TrialAttrs.of(trial)
    return judge(a.clause_values, clauses, [s != "unmeasured" for s in a.statuses], factors)


def settled_miss(runs: list[TrialResult], planned: int) -> bool:
    """Whether the runs so far fail a verification of `planned` runs whatever the rest measure:
    more than half of the planned runs missed one clause, so its median misses; or, of a pair,
    one run missed an upper bound. A pair's median is its mean m, and a run at or above the bound
    B puts the pair's CV at no less than sqrt(2)(B - m)/m, above the margin (B - m)/B a pass must
    exceed it by. (A lower bound, a throughput, has no such limit: a far better second run can
    carry it.)"""
    missed = [cv.clause for r in runs for cv in r.target.clauses if not cv.passed]
    return (any(2 * n > planned for n in Counter(c.text for c in missed).values())
            or (planned == 2 and any(c.upper for c in missed)))


def roomy(shortfalls: list[float], noise_floor: float) -> bool:
    """Whether every clause holds by more than the noise floor (shortfalls relative to the
    bounds, <= 0 where a clause holds): what a real pass needs, and what the rounds' sampler is
    asked for (its constraints are the shortfalls plus the floor)."""
    return all(-s > noise_floor for s in shortfalls)


def margin_and_noise(ev: Evaluation, noise_floor: float) -> tuple[float, float]:
    """The smallest relative margin over the clauses, and the noise it must exceed."""
    return min(-v for v in ev.violations), max(ev.noise() or 0.0, noise_floor)


class Hybrid:
    """One hybrid search over a simulator backend and a real backend sharing one storage."""

    def __init__(self, sim, real, space: Space, serve_config: dict, target: Target, *, storage, seed: int = 0,
                 sampler: str = "tpe", pareto: bool = False, named_baselines: dict[str, dict] | None = None,
                 settings: HybridSettings = HybridSettings(), time_budget_s: float | None = None,
                 on_trial: Callable[[StudyTrial, StudyTrial | None], None] = lambda t, b: None,
                 on_real: Callable[[str, StudyTrial], None] = lambda label, t: None,
                 prior: list[StudyTrial] | None = None, clock: Callable[[], float] = time.monotonic):
        self.sim, self.real, self.space, self.serve_config = sim, real, space, serve_config
        self.clauses = {c.text: c for c in target.clauses}
        self.seed, self.sampler, self.pareto = seed, sampler, pareto
        self.named, self.settings, self.on_trial, self.on_real = named_baselines, settings, on_trial, on_real
        self.clock, self.prior = clock, prior
        self.deadline = None if time_budget_s is None else clock() + time_budget_s
        self.run_s: list[float] = []  # seconds per real run so far: what the next one will take
        self.store = open_storage(storage) if isinstance(storage, str) else storage
        self.real_study = open_study(self.store, "real", seed=seed, sampler="random", pareto=pareto)
        for t in self.real_study.trials:  # left running by a killed search: run again, not counted
            if t.state == optuna.trial.TrialState.RUNNING:
                self.real_study.tell(t.number, state=optuna.trial.TrialState.FAIL)

    def run(self) -> HybridOutcome:
        """Rounds of search and verification until a pass, no candidate, or a budget ends."""
        rounds: list[optuna.Study] = []
        while True:
            k = len(rounds)
            study = self._round(k, rounds[-1] if rounds else None)
            rounds.append(study)
            if k == 0 and self.settings.real_baselines:
                self._verify_baselines(study, sweep=False)
            for _ in range(self.settings.candidates - self._verified_in(k)):
                reserve = self._sweep_reserve(rounds[0])
                what = "a verification" + (f" and the static sweep's {reserve} run(s)" if reserve else "")
                if short := self._no_time_for(self.settings.repeat + reserve, what):
                    return self._end(rounds, short)
                if len(candidates(self.real_study)) >= self.settings.max_real:
                    return self._end(rounds, f"all {self.settings.max_real} real verifications of candidates used")
                cand = self._pick(rounds)
                if cand is None:
                    return self._end(rounds, "no cheaper simulated configuration meets the target under the "
                                             "correction the real runs measured")
                t = self._verify(cand, k, f"real-{len(self.real_study.trials):03d}")
                if TrialAttrs.of(t).passed:
                    return self._end(rounds, "a candidate passed on the real stack")
            if self._over_time():
                return self._end(rounds, "the time budget ran out")

    # -- rounds ------------------------------------------------------------------------------

    def factors(self) -> dict[str, float]:
        """The correction the real runs so far give."""
        return correction(completed(self.real_study), self.clauses)

    def _round(self, k: int, prev: optuna.Study | None) -> optuna.Study:
        name = f"sim-{k}"
        factors = self.factors()
        names = set(optuna.study.get_all_study_names(self.store))
        study = open_study(self.store, name, seed=self.seed + k, sampler=self.sampler, pareto=self.pareto)
        if name not in names:
            study.set_user_attr("factors", factors)
            for t in completed(prev) if prev else []:
                study.add_trial(self._judged_copy(t, factors, copied_from=TrialAttrs.of(t).copied_from
                                                  or f"{prev.study_name}:{t.number}"))
            study.set_user_attr("seeded", len(study.trials))
        factors = study.user_attrs.get("factors", {})
        prior = [self._judged_copy(t, factors) for t in self.prior or []] if k == 0 else None
        return run_study(self.sim, self.space, self.serve_config, trials=study.user_attrs["seeded"] + self.settings.sim_trials,
                         storage=self.store, name=name, seed=self.seed + k, sampler=self.sampler,
                         pareto=self.pareto, named_baselines=self.named, factors=factors or None,
                         guard=self.settings.noise_floor, time_budget_s=self._left(),
                         patience=self.settings.patience, resume=True, prior=prior, on_trial=self.on_trial)

    def _judged_copy(self, t: StudyTrial, factors: dict[str, float], **update) -> StudyTrial:
        """A simulated (or prior) trial judged again under `factors`, as a new trial whose
        constraints carry the round's guard (the noise floor)."""
        clauses, violations, feasible = rejudge(t, self.clauses, factors)
        copy = TrialAttrs.of(t).model_copy(update={"violations": violations, "feasible": feasible, **update})
        return optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, values=t.values, user_attrs=copy.as_user_attrs(),
            system_attrs={f"constraints:{c}": v + self.settings.noise_floor for c, v in zip(clauses, violations)})

    def _pick(self, rounds: list[optuna.Study]) -> StudyTrial | None:
        """The cheapest simulated configuration of the latest round that meets the target under
        the present correction, has not been run for real, and costs less than the best that
        passed there (at equal cost, the lower simulated p99). Of those, the ones whose corrected
        margin already exceeds the noise floor come first: a real pass needs that margin, so a
        candidate at the bound would only spend real runs failing it."""
        factors, tried = self.factors(), [TrialAttrs.of(t).values for t in completed(self.real_study)]
        best = self._best()
        ok, with_margin = [], []
        for t in completed(rounds[-1]):
            _, shortfalls, feasible = rejudge(t, self.clauses, factors)
            if feasible and TrialAttrs.of(t).values not in tried and (best is None or rank(t)[0] < rank(best)[0]):
                ok.append(t)
                if roomy(shortfalls, self.settings.noise_floor):
                    with_margin.append(t)
        return min(with_margin or ok, key=rank) if ok else None

    # -- verification ------------------------------------------------------------------------

    def _verify_baselines(self, round0: optuna.Study, sweep: bool) -> None:
        """Run baselines once each for real (`_baselines_left`), while the budget has a run left."""
        while (left := self._baselines_left(round0, sweep)) and not self._no_time_for(1):
            labels = TrialAttrs.of(left[0]).baselines
            self._verify(left[0], 0, "baseline-" + labels[0].replace(" ", "-"), repeat=1, labels=list(labels))

    def _baselines_left(self, round0: optuna.Study, sweep: bool) -> list[StudyTrial]:
        """The baselines still to run for real: the named ones (`sweep` False), or the static
        sweep's counts (`sweep` True) in rising replica counts, each only while it costs less
        than the cheapest configuration that passed: more replicas cost more. A static count
        the simulator, corrected by the real runs so far, puts far from the target is reported
        as simulated (`_hopeless`): a real run would only confirm the miss. A configuration
        already run for real (a candidate the sweep's count equals) is not run again."""
        real = [TrialAttrs.of(t) for t in completed(self.real_study)]
        done, tried = {tuple(a.baselines) for a in real}, [a.values for a in real]
        best, left = self._best(), []
        for t in completed(round0):
            a = TrialAttrs.of(t)
            labels = tuple(a.baselines)
            if (not labels or labels in done or a.values in tried
                    or all(label.startswith(STATIC) for label in labels) != sweep):
                continue
            if sweep and (self._hopeless(t) or (best is not None and rank(t)[0] >= rank(best)[0])):
                continue
            left.append(t)
        return left

    def _sweep_reserve(self, round0: optuna.Study) -> int:
        """Real runs the static sweep may need to reach a pass: its counts left, up to the first
        that the corrected simulator has passing with a margin above the noise floor (the sweep
        stops at a pass). 0 when no count left has that margin: a real pass needs it, so such a
        sweep is no fallback to keep time for (on the diurnal search that made this rule, the
        reserve for static 2 and 3, neither with the margin in the simulator and both met by only
        4 % for real, stopped a second candidate from being verified), and 0 when the search runs
        no baselines for real."""
        if not self.settings.real_baselines:
            return 0
        factors = self.factors()
        for n, t in enumerate(self._baselines_left(round0, sweep=True), start=1):
            _, shortfalls, feasible = rejudge(t, self.clauses, factors)
            if feasible and roomy(shortfalls, self.settings.noise_floor):
                return n
        return 0

    def _hopeless(self, sim_trial: StudyTrial) -> bool:
        """Whether the simulated trial, corrected by the real runs so far, misses some clause by
        more than twice the noise floor (relative to its bound): beyond what noise and one
        run's error could turn into a pass."""
        factors = self.factors()
        if not factors:
            return False
        _, shortfalls, _ = rejudge(sim_trial, self.clauses, factors)
        return any(s > 2 * self.settings.noise_floor for s in shortfalls)

    def _verify(self, sim_trial: StudyTrial, k: int, label: str, repeat: int | None = None,
                labels: list[str] | None = None) -> StudyTrial:
        sim = TrialAttrs.of(sim_trial)
        values = sim.values
        self.real_study.enqueue_trial(sim_trial.params)
        with warnings.catch_warnings():  # real runs are asked for one by one; a killed one is failed at start
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.real_study.ask(sim_trial.distributions)
        runs, t0 = repeat or self.settings.repeat, self.clock()
        try:
            ev = self.real.evaluate(apply(self.serve_config, values), values, label, runs, settled_miss)
        except BaseException:
            self.real_study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        # Seconds per repeat of every scenario, what `_no_time_for` multiplies: the load trials
        # made, over the scenarios (a verification that stopped early made fewer).
        self.run_s.append((self.clock() - t0) * len(ev.results) / ev.run_count())
        objective = record(trial, values, ev)
        margin, noise = margin_and_noise(ev, self.settings.noise_floor)
        TrialAttrs(label=label, round=k, sim_trial=f"sim-{k}:{sim_trial.number}", sim_cost=cost_of(sim_trial),
                   sim_p99_ms=sim.p99_ms, sim_clause_values=sim.clause_values, baselines=labels or [],
                   margin=margin, noise_used=noise, passed=bool(ev.feasible and margin > noise),
                   real_runs=ev.run_count()).store(trial)
        frozen = self.real_study.tell(trial, objective)
        self.on_real(label, frozen)
        return frozen

    # -- bookkeeping -------------------------------------------------------------------------

    def _verified_in(self, k: int) -> int:
        return sum(TrialAttrs.of(t).round == k for t in candidates(self.real_study))

    def _left(self) -> float | None:
        return None if self.deadline is None else max(1.0, self.deadline - self.clock())

    def _over_time(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def _no_time_for(self, runs: int, what: str = "a verification") -> str | None:
        """Why `runs` real runs (`what` they are), each as long as the median one so far, would
        not end within the budget (None when they would): a verification started just before
        the deadline would overrun it by minutes."""
        if self.deadline is None:
            return None
        left = self.deadline - self.clock()
        if left <= 0:
            return "the time budget ran out"
        if self.run_s and statistics.median(self.run_s) * runs > left:
            return (f"the time budget left ({left:.0f} s) is shorter than {what} "
                    f"({runs} x {statistics.median(self.run_s):.0f} s)")
        return None

    def _best(self) -> StudyTrial | None:
        """The cheapest configuration, baselines included, that passed on the real stack."""
        passed = [t for t in completed(self.real_study) if TrialAttrs.of(t).passed]
        return min(passed, key=rank) if passed else None

    def _end(self, rounds: list[optuna.Study], reason: str) -> HybridOutcome:
        if self.settings.real_baselines:
            self._verify_baselines(rounds[0], sweep=True)
        return HybridOutcome(rounds, self.real_study, self._best(), reason, self.factors())


def candidates(real: optuna.Study) -> list[StudyTrial]:
    """The real study's verified candidates (its completed trials that are no baseline)."""
    return [t for t in completed(real) if not TrialAttrs.of(t).baselines]


def hybrid_summary(outcome: HybridOutcome, noise_floor: float, real_repeat: int, folder: Path) -> dict:
    """What summary.json says of a hybrid search (its "hybrid" entry): why it ended, the rounds,
    the correction, and each verified candidate's real verdict beside the simulator's, with its
    trial folders relative to the search's `folder`."""
    verified = [(t, TrialAttrs.of(t)) for t in candidates(outcome.real)]
    runs = [TrialAttrs.of(t).real_runs for t in completed(outcome.real)]
    return {"reason": outcome.reason, "rounds": len(outcome.rounds), "real_candidates": len(verified),
            "real_runs": sum(runs) if None not in runs else None,
            "sim_winners_failed": sum(not a.passed for _, a in verified),
            "correction": outcome.factors, "noise_floor": noise_floor, "real_repeat": real_repeat,
            "verified": [{"trial": t.number, "label": a.label, "round": a.round, "cost_per_hour": t.values[0],
                          "sim_cost_per_hour": a.sim_cost, "p99_ms": a.p99_ms, "sim_p99_ms": a.sim_p99_ms,
                          "met": a.feasible, "margin": a.margin, "noise": a.noise_used, "passed": a.passed,
                          "real_runs": a.real_runs,
                          "runs": a.runs_under(folder)}
                         for t, a in verified]}
