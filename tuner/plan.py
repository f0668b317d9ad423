"""What one trial is, whichever backend runs it: the plan both backends stand on.

A `TrialPlan` is built once at the edge (`make_plan`, from what the user gave) and handed to
the real backend (`tuner.trial`) or the simulated one (`tuner.simulate`, which adds only the
simulator's calibration and cluster layer). Everything the two would otherwise each write
lives here: finding a scenario, asking the scenario to check its options (and, for the
simulator, to list its arrivals), the config's hash, the result's header and the client-side
verdicts. So a new trial option is a field here and an option in the CLI, nothing more.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tuner.abort import abort_spec
from tuner.cost import Prices
from tuner.errors import UsageError
from tuner.paths import SCENARIOS
from tuner.result import ClauseVerdict, ConfigInfo, ScenarioInfo, TargetResult, TrialResult
from tuner.target import Target, client_value

if TYPE_CHECKING:
    import pandas as pd

# Seconds of the scenario sent before the measured window: replicas, caches and the generator's
# connections warm up, and the autoscaler sees traffic before it is judged.
WARMUP_S = 20.0
SETTLE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class TrialPlan:
    """Everything one trial needs, validated at the edge."""

    serve_config: dict
    config_path: Path | None
    scenario: Path
    scenario_args: tuple[str, ...]
    target: Target
    duration_s: float
    out: Path
    prices: Prices
    warmup_s: float = WARMUP_S
    seed: int = 0
    settle_timeout_s: float = SETTLE_TIMEOUT_S
    scenario_info: dict = field(default_factory=dict)
    faults: tuple = ()  # tuner.faults.Fault, injected during the load window (real trials)
    abort_on_fail: bool = False  # stop the load once a clause can no longer hold (tuner.abort)
    abort_grace_s: float = 0.0  # seconds into the load window before it may
    prime: bool = True  # load each multiplexed model the trial asks for before the warm-up (tuner.prime)

    def prime_rows(self, arrivals: "pd.DataFrame") -> "pd.DataFrame":
        """The requests that prime this trial's models (none with `prime` off)."""
        from tuner.prime import prime_rows

        return prime_rows(arrivals if self.prime else arrivals[:0], max(self.duration_s, self.warmup_s))

    def generator_args(self) -> list[str]:
        """The options the scenario's generators get, in either backend: the user's, the lag
        the target allows unless the user set it, and with `abort_on_fail` the target's abort rules."""
        given = any(a.startswith("--max-lag-ms") for a in self.scenario_args)
        abort = (["--abort-when", abort_spec(self.target, self.duration_s), "--abort-grace", f"{self.abort_grace_s:g}"]
                 if self.abort_on_fail else [])
        return [*self.scenario_args, *([] if given else ["--max-lag-ms", f"{max_lag_ms(self.target):g}"]), *abort]


def max_lag_ms(target: Target) -> float:
    """How late the generator may send before it counts as saturated: a tenth of the tightest
    latency bound (a lag that small cannot move a verdict by more than that), else 100 ms."""
    bounds = target.latency_bounds_ms()
    return max(10.0, 0.1 * min(bounds)) if bounds else 100.0


def scenario_path(name_or_path: str | Path) -> Path:
    """A scenario by path, or by name in scenarios/ (UsageError naming the choices)."""
    p = Path(name_or_path)
    if p.suffix == ".py":
        if not p.is_file():
            raise UsageError(f"--scenario: {p} does not exist")
        return p
    path = SCENARIOS / f"{name_or_path}.py"
    if not path.is_file():
        names = ", ".join(sorted(x.stem for x in SCENARIOS.glob("*.py")))
        raise UsageError(f"--scenario: no scenario {name_or_path!r}; choose one of {names}, or a path to a locustfile")
    return path


def split_scenario(item: str) -> tuple[Path, tuple[str, ...]]:
    """`NAME[:OPTIONS]` (as `tuner optimize --scenario 'steady:--rate 6'` takes it): the
    scenario's path and its options."""
    import shlex

    name, _, rest = item.partition(":")
    return scenario_path(name), tuple(shlex.split(rest))


def _loadgen_check(path: Path, seconds: float, args: list[str], timeout_s: float, arrivals_to: Path | None = None,
                   seed: int = 0) -> dict:
    """`python -m loadgen.check` in its own process (Locust patches the standard library with
    gevent on import): the scenario's traffic summary, or a UsageError with its one line. With
    `arrivals_to`, every arrival of the run seeded `seed` is written there too."""
    listing = ["--plan", str(arrivals_to)] if arrivals_to else []
    seeded = ["--seed", str(seed)] if arrivals_to else []
    r = subprocess.run([sys.executable, "-m", "loadgen.check", *listing, str(path), "-t", f"{seconds:g}s", *seeded, *args],
                       capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
        raise UsageError((lines[-1][7:] if lines else r.stderr.strip()[-300:]) + f" (scenario {path.name})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_scenario(path: Path, seconds: float, args: list[str] | tuple[str, ...]) -> dict:
    """Validate scenario options as Locust and the scenario would (UsageError with their message)."""
    return _loadgen_check(path, seconds, list(args), timeout_s=120)


def scenario_arrivals(plan: TrialPlan) -> tuple[dict, "pd.DataFrame"]:
    """The plan's arrivals, exactly as its generators would send them, and the traffic summary."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp) / "arrivals.parquet"
        info = _loadgen_check(plan.scenario, plan.duration_s, plan.generator_args(), timeout_s=600,
                              arrivals_to=where, seed=plan.seed)
        return info, pd.read_parquet(where)


def config_hash(serve_config: dict) -> str:
    """sha256 of the config's canonical JSON: equal configs hash equal whatever the YAML layout."""
    return hashlib.sha256(json.dumps(serve_config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def result_header(plan: TrialPlan, backend: str, info: dict | None = None) -> TrialResult:
    """A result that says what was tried and nothing measured yet: the backend fills the rest."""
    info = plan.scenario_info if info is None else info
    return TrialResult(
        backend=backend, status="unmeasured",
        config=ConfigInfo(path=str(plan.config_path) if plan.config_path else None,
                          hash=config_hash(plan.serve_config), serve_config=plan.serve_config),
        scenario=ScenarioInfo(name=plan.scenario.stem, path=str(plan.scenario), options=list(plan.scenario_args),
                              duration_s=plan.duration_s, warmup_s=plan.warmup_s, seed=plan.seed, prime=plan.prime,
                              expected_arrivals=info.get("expected_arrivals"), peak_rps=info.get("peak_rps")),
        target=TargetResult(text=plan.target.text, clauses=[]),
        files={"serve_config": "serve_config.yaml"})


def write_config(plan: TrialPlan) -> None:
    """The trial's folder, with the config it tried beside its result."""
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / "serve_config.yaml").write_text(yaml.safe_dump(plan.serve_config, sort_keys=False))


def client_verdicts(target: Target, records, duration_s: float, server: dict | None = None) -> list[ClauseVerdict]:
    """Each clause judged on the client's records (what users saw), the server's value beside it."""
    return [ClauseVerdict(clause=c, client=(v := client_value(c, records, duration_s)),
                          server=(server or {}).get(c.text), passed=c.holds(v), margin=c.margin(v))
            for c in target.clauses]


def make_plan(*, config: Path | None, scenario: str | Path, scenario_args: tuple[str, ...] | list[str] = (),
              target: str | Target, duration_s: float, out: Path, warmup_s: float = WARMUP_S, seed: int = 0,
              prices: Path | Prices | None = None, settle_timeout_s: float = SETTLE_TIMEOUT_S,
              faults: tuple[str, ...] | list[str] = (), serve_config: dict | None = None,
              check: bool = True, abort_on_fail: bool = False, abort_grace_s: float = 0.0,
              prime: bool = True) -> TrialPlan:
    """A plan from what the user gave, each part validated (UsageError naming the option).

    `serve_config` given is used as it is (a recorded trial's), else `config` is read; the
    scenario is checked with its options unless `check` is off (a search checks each of its
    scenarios itself)."""
    from tuner import deploy
    from tuner.faults import parse_fault
    from tuner.prices_file import load_prices
    from tuner.target import parse_target

    tgt = parse_target(target) if isinstance(target, str) else target
    parsed_faults = tuple(parse_fault(f, duration_s) for f in faults)
    cfg = serve_config if serve_config is not None else deploy.load_serve_config(config)
    table = prices if isinstance(prices, Prices) else load_prices(prices)
    plan = TrialPlan(serve_config=cfg, config_path=config, scenario=scenario_path(scenario),
                     scenario_args=tuple(scenario_args), target=tgt, duration_s=duration_s, out=out, prices=table,
                     warmup_s=warmup_s, seed=seed, settle_timeout_s=settle_timeout_s, faults=parsed_faults,
                     abort_on_fail=abort_on_fail, abort_grace_s=abort_grace_s, prime=prime)
    if not check:
        return plan
    return replace(plan, scenario_info=check_scenario(plan.scenario, duration_s, plan.generator_args()))
