"""`tuner optimize` below its options: the baselines, the backends, the study (or the hybrid's
rounds), and what the search leaves in its folder. The CLI validates the options and prints;
everything between is here, so a script or a test runs the same search the command runs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from tuner.errors import UsageError
from tuner.optimize.space import Space
from tuner.plan import TrialPlan
from tuner.simulate import SimSetup

BACKENDS = ("hybrid", "sim", "real")


@dataclass(frozen=True)
class SearchSettings:
    """How the search runs (the options of `tuner optimize` beyond the trial's plan)."""

    backend: str = "hybrid"
    trials: int = 40
    time_budget_s: float | None = None
    patience: int | None = None
    pareto: bool = False
    sampler: str = "auto"
    max_real: int = 4
    real_repeat: int = 2
    noise_floor: float = 0.15
    real_baselines: bool = True
    storage: str | None = None
    resume: bool = False

    def check(self, cluster: str) -> None:
        """UsageError naming the option whose value cannot be searched."""
        from tuner.optimize.study import SAMPLERS

        if self.backend not in BACKENDS:
            raise UsageError(f"--backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler: {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if self.backend != "sim" and cluster != "fixed":
            raise UsageError(f"--cluster {cluster} with --backend {self.backend}: the local stack is one fixed node; "
                             "search a cluster layer with --backend sim")


def named_baselines(serve_config: dict, seed_config: dict, extra: dict[str, dict], space: Space,
                    static_sweep: int) -> dict[str, dict]:
    """The configurations every search also evaluates: the seed article's, the user's, and the
    static sweep (the searched deployments fixed at 1..N replicas)."""
    from tuner.optimize.study import static_baselines

    named = {"seed article": seed_config, **{f"baseline {k}": v for k, v in extra.items()}}
    named.update(static_baselines(space, serve_config, range(1, static_sweep + 1)))
    return named


@dataclass
class Search:
    """One search: the starting plan (its config, target, duration, seed), the scenarios it
    must hold on (each `(path, options, traffic summary)`), the space and baselines."""

    plan: TrialPlan
    setup: SimSetup
    scenarios: list[tuple[Path, tuple[str, ...], dict]]
    space: Space
    named: dict[str, dict]
    settings: SearchSettings
    prior: list | None = None  # an earlier search's trials to start from (tuner.optimize.warm_start)

    def info(self, calibration: str, cluster: str, storage_url: str) -> dict:
        """What summary.json says the search was (the sampler as resolved: `auto` says which)."""
        from tuner.optimize.study import resolve_sampler

        return {"target": self.plan.target.text, "backend": self.settings.backend,
                "scenarios": [f"{p.stem} {' '.join(a)}".strip() for p, a, _ in self.scenarios],
                "calibration": calibration, "cluster": cluster,
                "sampler": resolve_sampler(self.settings.sampler, bool(self.prior)),
                "storage": storage_url, "duration_s": self.plan.duration_s, "warmup_s": self.plan.warmup_s,
                "prior_trials": len(self.prior or [])}

    def run(self, system, out: Path, progress, on_trial: Callable, on_real: Callable) -> dict:
        """Search, write the folder's outputs, and return its summary."""
        import optuna

        from tuner.optimize.evaluate import RealBackend, SimBackend
        from tuner.optimize.hybrid import Hybrid, HybridSettings, hybrid_summary
        from tuner.optimize.output import write_outputs
        from tuner.optimize.study import best_trial, open_storage, pareto_front, run_study
        from tuner.outdir import make_out

        s, plan = self.settings, replace(self.plan, out=out)
        make_out(out)
        url = s.storage or f"sqlite:///{out.resolve() / 'study.db'}"
        store = open_storage(url)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sim_scenarios = [(p, a) for p, a, _ in self.scenarios]
        real = None
        if system is not None:
            real = RealBackend(system, plan, self.scenarios, out / "real", repeat=1 if s.backend == "real" else s.real_repeat,
                               report=progress)
        common = dict(seed=plan.seed, sampler=s.sampler, pareto=s.pareto, named_baselines=self.named, prior=self.prior)
        if s.backend == "hybrid":
            hybrid = HybridSettings(sim_trials=s.trials, patience=s.patience, max_real=s.max_real, repeat=s.real_repeat,
                                    noise_floor=s.noise_floor, real_baselines=s.real_baselines)
            outcome = Hybrid(SimBackend(plan, self.setup, sim_scenarios), real, self.space, plan.serve_config, plan.target,
                             storage=store, settings=hybrid, time_budget_s=s.time_budget_s, on_trial=on_trial,
                             on_real=on_real, **common).run()
            studies = [("sim", st) for st in outcome.rounds] + [("real", outcome.real)]
            best = ("real", outcome.best) if outcome.best else None
            front = pareto_front(outcome.rounds[-1]) if s.pareto else None
            extra = {"hybrid": hybrid_summary(outcome, s.noise_floor, s.real_repeat, out)}
        else:
            evaluator = SimBackend(plan, self.setup, sim_scenarios) if s.backend == "sim" else real
            study = run_study(evaluator, self.space, plan.serve_config, trials=s.trials, storage=store, name="tuner",
                              time_budget_s=s.time_budget_s, patience=s.patience, resume=s.resume, on_trial=on_trial,
                              **common)
            studies, extra = [(s.backend, study)], {}
            found = best_trial(study)
            best = (s.backend, found) if found else None
            front = pareto_front(study) if s.pareto else None
        info = self.info(self.setup.calibration.name, self.setup.cluster.layer, url)
        return write_outputs(out, plan.serve_config, info, studies, best, cluster=self.setup.cluster, pareto=front,
                             extra=extra)
