"""`tuner bench`: a fixed suite of trials (scenarios x configurations, tuner/data/suites/),
run on the simulator, the real stack or both; each case's figures become one row per metric
in the night's results, which tuner.history appends and analyses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuner.errors import UsageError, first_problem, read_yaml
from tuner.paths import REPO, SERVE_CONFIG, SUITES
from tuner.result import TrialResult

Backend = Literal["sim", "real"]

# metric -> (unit, higher is worse)
METRICS: dict[str, tuple[str, bool]] = {
    "p50_ms": ("ms", True),
    "p99_ms": ("ms", True),
    "error_rate": ("fraction", True),
    "throughput_rps": ("req/s", False),
    "cost_per_hour": ("USD/h", True),
}


class Case(BaseModel):
    """One trial of the suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="lower-case letters, digits, '-'")
    scenario: str
    args: tuple[str, ...] = ()
    config: str = str(SERVE_CONFIG.relative_to(REPO))  # suite paths are relative to the repository
    target: str
    cluster: Literal["fixed", "ray-autoscaler", "hpa"] = "fixed"


class Part(BaseModel):
    """The cases one backend runs, and how long each runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float = Field(gt=0, le=3600)
    warmup_s: float = Field(0, ge=0, le=600)
    repeat: int = Field(1, ge=1, le=20, description="runs per case; the median of each figure is kept")
    seed: int = Field(0, ge=0, lt=2**63)
    cases: tuple[Case, ...] = Field(min_length=1)

    @field_validator("cases")
    @classmethod
    def _unique(cls, cases: tuple[Case, ...]) -> tuple[Case, ...]:
        names = [c.name for c in cases]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"case names must be unique: {', '.join(dup)}")
        return cases


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    real: Part | None = None
    sim: Part | None = None


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (tuner/data/suites/NAME.yaml) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITES / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml")))
            raise UsageError(f"--suite: no suite {name_or_path!r} (known: {known}; or give a .yaml path)")
    data = read_yaml(path, "--suite")
    try:
        suite = Suite.model_validate(data or {})
    except ValidationError as e:
        raise UsageError(f"--suite {path}: {first_problem(e)}") from None
    for part in (suite.real, suite.sim):
        for case in part.cases if part else ():
            if not (REPO / case.config).is_file():
                raise UsageError(f"--suite {path}: case {case.name}: config {case.config} does not exist")
    return suite


def metrics(result: TrialResult) -> dict[str, float | None]:
    """A trial's figures for the history: client p50 and p99 (with repeats, their medians),
    error rate, throughput and cost per hour."""
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    if result.overall is not None:
        out |= {"p50_ms": result.overall.latency_ms.p50, "p99_ms": result.overall.latency_ms.p99,
                "error_rate": result.overall.error_rate, "throughput_rps": result.overall.throughput_rps}
    if result.repeat is not None:
        spread = result.repeat.spread
        for key, name in (("p50_ms", "client p50"), ("p99_ms", "client p99"), ("throughput_rps", "throughput rps")):
            if name in spread and spread[name].median is not None:
                out[key] = spread[name].median
    if result.cost is not None:
        out["cost_per_hour"] = result.cost.cost_per_hour
    return out


@dataclass(frozen=True)
class CaseRun:
    """One case's outcome on one backend."""

    backend: Backend
    case: Case
    result: TrialResult
    folder: Path


def case_folder(out: Path, backend: Backend, case: Case) -> Path:
    return out / backend / case.name


def case_plan(case: Case, part: Part, folder: Path, prices):
    """The case's trial plan (its config, scenario, options and target), checked."""
    from tuner import deploy
    from tuner.plan import make_plan

    # Read from the repository, recorded as the suite names it (the same on every machine).
    return make_plan(config=Path(case.config), serve_config=deploy.load_serve_config(REPO / case.config),
                     scenario=case.scenario, scenario_args=case.args, target=case.target, duration_s=part.duration_s,
                     out=folder, warmup_s=part.warmup_s, seed=part.seed, prices=prices)


def run_sim_case(case: Case, part: Part, out: Path, prices, calibration) -> CaseRun:
    """One case in the simulator."""
    from tuner import simulate
    from tuner.plan import scenario_arrivals

    folder = case_folder(out, "sim", case)
    plan = case_plan(case, part, folder, prices)
    info, arrivals = scenario_arrivals(plan)
    setup = simulate.SimSetup(calibration=calibration, cluster=simulate.load_cluster(case.cluster)[0])
    return CaseRun("sim", case, simulate.run_sim(plan, setup, info, arrivals), folder)


def run_real_case(system, case: Case, part: Part, out: Path, prices, report) -> CaseRun:
    """One case on the system under test, `part.repeat` times."""
    from tuner import trial

    folder = case_folder(out, "real", case)
    plan = case_plan(case, part, folder, prices)
    return CaseRun("real", case, trial.run_repeated(system, plan, part.repeat, report), folder)


def check_cases(suite: Suite, backends: tuple[Backend, ...]) -> None:
    """Every case's scenario, options, target and Serve config are valid before anything runs."""
    for backend in backends:
        part = getattr(suite, backend)
        if part is None:
            raise UsageError(f"--backend {backend}: suite {suite.name} has no {backend} part")
        for case in part.cases:
            try:
                case_plan(case, part, Path("."), None)
            except UsageError as e:  # said of the suite's case, not of an option the user did not give
                raise UsageError(f"--suite {suite.name}: {backend} case {case.name}: {e}") from None


def night_rows(runs: list[CaseRun], night: str, commit: str, machine: str, suite: str) -> list[dict]:
    """One history row per metric of each case run."""
    rows = []
    for r in runs:
        for metric, value in metrics(r.result).items():
            rows.append({"night": night, "commit": commit, "machine": machine, "suite": suite, "backend": r.backend,
                         "case": r.case.name, "metric": metric, "value": value, "status": r.result.status})
    return rows


def junit_trials(runs: list[CaseRun]) -> list[tuple[str, TrialResult]]:
    """Each case run as a JUnit suite (tuner.junit): named `backend/case`, as bench.json names it."""
    return [(f"{r.backend}/{r.case.name}", r.result) for r in runs]


def run_suite(suite: Suite, backends: tuple[Backend, ...], out: Path, *, stack=None, prices, calibration,
              report=None, on_case: Callable[[CaseRun], None] = lambda r: None) -> list[CaseRun]:
    """Every case of the chosen parts, simulator first (seconds), then the real stack."""
    runs = []
    for backend in backends:
        part = getattr(suite, backend)
        for case in part.cases:
            if backend == "sim":
                run = run_sim_case(case, part, out, prices, calibration)
            else:
                run = run_real_case(stack, case, part, out, prices, report)
            runs.append(run)
            on_case(run)
    return runs


def machine_name() -> str:
    """Where the night ran: histories from different machines are analysed apart."""
    import os
    import platform

    return os.environ.get("TUNER_BENCH_MACHINE") or re.sub(r"[^A-Za-z0-9._-]", "-", platform.node() or "unknown")


def commit_id() -> str:
    """The repository's commit (`-dirty` with uncommitted changes), or `unknown` outside git."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")
