"""`tuner sweep`: the highest rate a configuration sustains under a target.

Each load level is one trial (`tuner.plan`) run by either backend, the scenario's `--rate` set
to the level (every scenario takes it: loadgen/options.py), in `OUT/rate-X/` with its own
result.json. The search:

1. **A coarse ladder**, lowest rate first: `--rates`, or `--steps` rates spaced geometrically
   from `--min-rate` to `--max-rate` (by default 1, 2, 4, 8, 16/s). Before the first trial the
   capacity is unknown to within an order of magnitude; a geometric ladder spends the same
   number of trials on each factor of load, where an even one spends most of them far above
   or far below the knee. The ladder stops at the first rate that misses: above capacity an
   open-loop queue grows for the whole duration, so a higher rate misses too, and on the real
   stack those are the slowest trials (requests wait out their timeouts).
2. **Bisection** between the last rate that met and the first that missed, at most
   `--refine` midpoints (default 4: a doubling bracket narrows to 1/16, about 6 %), and none
   once the two are within 5 % of each other: at 4/s over the default 120 s a trial's
   Poisson arrival count varies by about 5 % on its own, so a finer step would chase noise.
   At most len(ladder) + refine trials, known before the first.

The answer is the highest rate that met the target, and its goodput (`tuner.goodput`).
None met (the lowest rate missed) is exit 1; a trial that could not be measured stops the
search (the boundary cannot be placed past it) and is exit 3, what was found kept.

Why not as others do it:
- GuideLLM's sweep (vllm-project/guidellm, src/guidellm/benchmark/profiles/sweep.py) runs a
  synchronous benchmark (one request at a time) and a throughput one (everything at once) to
  find the floor and ceiling, then constant rates spaced evenly between them. It describes the
  curve; it looks for no target. An open-loop scenario has no "as fast as possible" mode, and
  a closed-loop ceiling is not where an open-loop latency target breaks.
- `vllm bench sweep serve_sla` (vllm-project/vllm, vllm/benchmarks/sweep/serve_sla.py) does
  look for the highest request rate meeting SLAs: it tries the maximum and the minimum, then
  interpolates the SLA margin against the rate (PCHIP) to its root until the failing and
  passing rates are 1 req/s apart. Near the knee a p99 jumps rather than bends and one trial's
  p99 is noisy (README, "Noise": 15 %), so a root of the interpolated margin lands anywhere
  in the jump; bisection reads only the verdict, and its number of trials is fixed in advance.
- vLLM's `bench serve` (vllm/benchmarks/serve.py) runs one `--request-rate` per call; users
  loop over rates themselves. Its goodput and TPOT are the ones `tuner.goodput` computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from loadgen import records as rec
from tuner.atomic import write_text
from tuner.errors import StackError, UsageError
from tuner.goodput import LoadFigures, load_figures
from tuner.plan import TrialPlan, check_scenario, scenario_arrivals
from tuner.result import Status, TrialResult, load_result
from tuner.target import Target

if TYPE_CHECKING:
    from tuner.simulate import SimSetup

BACKENDS = ("real", "sim")
DEFAULT_LADDER = (1.0, 16.0, 5)  # --min-rate, --max-rate, --steps: 1, 2, 4, 8, 16/s
MAX_RATES = 50
REFINE = 4
MIN_GAP = 0.05  # relative: bisection stops once the bracket is this narrow (see above)
RATE = "--rate"
SweepStatus = Literal["running", "found", "none", "unmeasured"]
EXIT_CODES = {"found": 0, "none": 1, "unmeasured": 3}


class RatePoint(LoadFigures):
    """One load level: its trial's verdict and what users saw (tuner.goodput.LoadFigures)."""

    rate: float = Field(description="the scenario's --rate, requests/s")
    phase: Literal["ladder", "bisect"]
    folder: str = Field(description="the trial's folder, relative to sweep.json")
    status: Status
    failed: list[str] = Field(default_factory=list, description="the target's clauses that missed")
    reasons: list[str] = Field(default_factory=list, description="why it could not be measured")


class SweepResult(BaseModel):
    """`sweep.json`: every load level tried, in the order run, and the answer."""

    schema_version: Literal[1] = 1
    kind: Literal["sweep"] = "sweep"
    backend: Literal["real", "sim"]
    status: SweepStatus = Field(description="found: a rate met the target; none: none did; unmeasured: "
                                            "a trial could not be measured; running: the sweep has not ended")
    target: str
    scenario: str
    options: list[str] = Field(description="the scenario's options, --rate aside")
    config: str | None
    duration_s: float
    warmup_s: float
    seed: int
    ladder: list[float]
    refine: int = Field(description="bisection steps allowed")
    points: list[RatePoint] = Field(default_factory=list)
    skipped: list[float] = Field(default_factory=list, description="ladder rates above the first miss, not run")
    best_rate: float | None = Field(None, description="the highest rate that met the target")
    best_goodput_rps: float | None = None
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def parse_rates(text: str) -> list[float]:
    """`--rates 2,4,8`: the rates, sorted and without repeats (UsageError naming the option)."""
    try:
        rates = [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"--rates: {text!r} is not a comma-separated list of numbers") from None
    bad = next((r for r in rates if not (math.isfinite(r) and r > 0)), None)
    if bad is not None:
        raise UsageError(f"--rates: every rate must be a finite number above 0 (got {bad:g})")
    rates = sorted({float(f"{r:g}") for r in rates})  # as the scenario and the folder names get them
    if len(rates) > MAX_RATES:
        raise UsageError(f"--rates: at most {MAX_RATES} rates (got {len(rates)})")
    return rates


def _sig(x: float) -> float:
    """Three significant digits: rates a person reads and folders named after them."""
    return float(f"{x:.3g}")


def geometric(min_rate: float, max_rate: float, steps: int) -> list[float]:
    """`steps` rates from `min_rate` to `max_rate`, each the same factor above the last."""
    return sorted({_sig(min_rate * (max_rate / min_rate) ** (i / (steps - 1))) for i in range(steps)})


def ladder(rates: str | None, min_rate: float | None, max_rate: float | None, steps: int | None) -> list[float]:
    """The coarse ladder from the options: `--rates`, or the geometric one (defaults filled)."""
    if rates is not None:
        if (min_rate, max_rate, steps) != (None, None, None):
            raise UsageError("--rates: give either --rates or --min-rate/--max-rate/--steps, not both")
        return parse_rates(rates)
    low, high, n = (given if given is not None else default
                    for given, default in zip((min_rate, max_rate, steps), DEFAULT_LADDER))
    for name, value in (("--min-rate", low), ("--max-rate", high)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{name}: must be a finite number above 0 (got {value:g})")
    if low >= high:
        raise UsageError(f"--min-rate: must be below --max-rate (got {low:g} and {high:g})")
    if not 2 <= n <= MAX_RATES:
        raise UsageError(f"--steps: must be between 2 and {MAX_RATES} (got {n})")
    return geometric(low, high, n)


def check_backend(backend: str) -> None:
    """`--backend` names one (UsageError naming the choices)."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")


def check_target(target: Target) -> None:
    """A target the sweep can search on: one that gets harder as the rate grows. A throughput
    floor gets easier, so a ladder that stops at the first miss would stop at once."""
    floor = next((c for c in target.clauses if c.metric == "throughput"), None)
    if floor is not None:
        raise UsageError(f"--target: {floor.text!r} is a lower bound on throughput, which a higher rate meets more "
                         "easily; the sweep finds the highest rate, so give latency and error-rate clauses")


def scenario_options(args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scenario's options from the command line; the sweep sets `--rate` itself."""
    if any(a == RATE or a.startswith(RATE + "=") for a in args):
        raise UsageError("--rate: the sweep sets the scenario's rate; give --rates or --min-rate/--max-rate/--steps")
    return tuple(args)


def rate_folder(rate: float) -> str:
    return f"rate-{rate:g}"


def rate_plan(plan: TrialPlan, rate: float) -> TrialPlan:
    """The trial at `rate`: the sweep's plan with the scenario's rate set, in its own folder."""
    return replace(plan, scenario_args=(*plan.scenario_args, RATE, f"{rate:g}"), out=plan.out / rate_folder(rate))


def check_first(plan: TrialPlan, rate: float) -> None:
    """The scenario's options checked once, at the first rate, before anything runs."""
    check_scenario(plan.scenario, plan.duration_s, rate_plan(plan, rate).generator_args())


def with_info(plan: TrialPlan) -> TrialPlan:
    """A real trial's plan with its scenario's traffic summary (the result's header shows it)."""
    return replace(plan, scenario_info=check_scenario(plan.scenario, plan.duration_s, plan.generator_args()))


def sim_runner(setup: SimSetup) -> Callable[[TrialPlan], TrialResult]:
    """Run a trial in the simulator, as `tuner sim` does."""
    from tuner.simulate import run_sim

    def run(plan: TrialPlan) -> TrialResult:
        info, arrivals = scenario_arrivals(plan)
        return run_sim(replace(plan, scenario_info=info), setup, info, arrivals)
    return run


def _measured(run_trial: Callable[[TrialPlan], TrialResult], plan: TrialPlan) -> TrialResult:
    """The trial's result; one the stack could not measure is read back from what it wrote
    (a real trial writes its result.json, marked partial, whatever stopped it)."""
    try:
        return run_trial(plan)
    except StackError:
        if not (plan.out / "result.json").is_file():
            raise
        return load_result(plan.out / "result.json")


def rate_point(result: TrialResult, plan: TrialPlan, rate: float, phase: str) -> RatePoint:
    """A trial's point: its verdict and the figures of its client records."""
    path = plan.out / result.files.get("records", "records.parquet")
    figures = load_figures(rec.load(path), plan.target, plan.duration_s) if path.is_file() else LoadFigures()
    return RatePoint(**figures.model_dump(), rate=rate, phase=phase, folder=rate_folder(rate), status=result.status,
                     failed=[c.clause.text for c in result.target.clauses if not c.passed],
                     reasons=result.reasons if result.status == "unmeasured" else [])


@dataclass
class Search:
    """What a search did: the points in the order run, the ladder rates it skipped, and why it ended."""

    points: list[RatePoint] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)
    reason: str = ""


def midpoint(lo: float, hi: float) -> float | None:
    """The next rate between `lo` and `hi`, or None once they are too close to split."""
    mid = _sig((lo + hi) / 2)
    return mid if hi - lo > MIN_GAP * lo and lo < mid < hi else None


def search(rates: list[float], run: Callable[[float, str], RatePoint], refine: int = REFINE) -> Search:
    """The ladder, lowest first, to its first miss; then bisection between the last rate that
    met and that miss. `run(rate, phase)` runs one trial; an unmeasured one ends the search."""
    out = Search()
    lo = hi = None
    for i, rate in enumerate(rates):
        point = run(rate, "ladder")
        out.points.append(point)
        if point.status != "met":
            out.skipped = rates[i + 1:]
            if point.status == "unmeasured":
                out.reason = f"{rate:g}/s could not be measured, so the search stopped there"
                return out
            hi = rate
            break
        lo = rate
    if hi is None:
        out.reason = f"the target held at every rate up to {lo:g}/s: the limit is higher; raise --max-rate or add rates"
        return out
    if lo is None:
        out.reason = f"the lowest rate, {hi:g}/s, missed the target: lower --min-rate or --rates"
        return out
    for _ in range(refine):
        mid = midpoint(lo, hi)
        if mid is None:
            break
        point = run(mid, "bisect")
        out.points.append(point)
        if point.status == "unmeasured":
            out.reason = f"{mid:g}/s could not be measured, so the search stopped there"
            return out
        lo, hi = (mid, hi) if point.status == "met" else (lo, mid)
    out.reason = f"the limit lies between {lo:g}/s (met) and {hi:g}/s (missed)"
    return out


def summarize(sweep: SweepResult, found: Search) -> SweepResult:
    """The sweep's answer from its search: the highest rate that met, and its goodput."""
    met = [p for p in found.points if p.status == "met"]
    best = max(met, key=lambda p: p.rate, default=None)
    unmeasured = any(p.status == "unmeasured" for p in found.points)
    return sweep.model_copy(update={
        "points": found.points, "skipped": found.skipped, "reason": found.reason,
        "status": "unmeasured" if unmeasured else "found" if best else "none",
        "best_rate": best.rate if best else None, "best_goodput_rps": best.goodput_rps if best else None})


def run_sweep(plan: TrialPlan, rates: list[float], backend: str, run_trial: Callable[[TrialPlan], TrialResult],
              refine: int = REFINE, on_point: Callable[[RatePoint], None] = lambda p: None) -> SweepResult:
    """Search `rates` with `run_trial` (either backend) and write `plan.out/sweep.json`: after
    every trial (status `running`, so an interrupted sweep keeps what it found) and at the end."""
    sweep = SweepResult(backend=backend, status="running", target=plan.target.text, scenario=plan.scenario.stem,
                        options=list(plan.scenario_args), config=str(plan.config_path) if plan.config_path else None,
                        duration_s=plan.duration_s, warmup_s=plan.warmup_s, seed=plan.seed, ladder=rates, refine=refine)
    path = plan.out / "sweep.json"

    def run(rate: float, phase: str) -> RatePoint:
        trial_plan = rate_plan(plan, rate)
        point = rate_point(_measured(run_trial, trial_plan), trial_plan, rate, phase)
        sweep.points.append(point)
        write_text(path, sweep.model_dump_json(indent=1))
        on_point(point)
        return point

    done = summarize(sweep, search(rates, run, refine))
    write_text(path, done.model_dump_json(indent=1))
    return done
