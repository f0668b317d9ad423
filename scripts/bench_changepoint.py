"""Detection quality of the nightly CI's change-point detectors (BENCHMARKS.md, "Change-point
detection (nightly CI)"; the goals: false alarms <= 5 % of nights on noise-only histories,
a 10 % step regression detected within 3 nights >= 90 %).

Synthetic histories of one value per night: a level of 1 times lognormal noise at a coefficient
of variation (the real trials' figures in BENCHMARKS.md: client p50 9.4 %, p99 14.8 %, cost 0.1 %), optionally the median
of several repeats a night, optionally times a per-night level factor (the level moving between
sessions). Every night n the CI calls `regression(history[:n+1], higher_is_worse=True)`:

- noise: 30 nights of noise, nights 10-29 checked; a flag is a false alarm.
- step: x1.10 from a night s in 15-27 of 40; detected if flagged on night s, s+1 or s+2; a flag
  on nights s+3 to s+12 is a repeated alarm (the same regression reported again under a later index).
- drift: +1 %/night compounded from night 10, 40 nights: the first night flagged and the drift
  accumulated by then.
- outlier: one night at x1.5 (s in 15-27); flagged on that night or the two after it.

    .venv/bin/python scripts/bench_changepoint.py [--seeds 200] [--out runs/bench-changepoint] \
        [--detectors "e-divisive;mann-whitney;t-test;pelt"] [--cases "p50,5 %"] [--jobs 2] [--first-seed 0]

A detector may carry parameters (`--detectors "e-divisive:sig=0.2;t-test:alpha=0.05,window=30"`);
the defaults were tuned with `--first-seed 1000`, on other histories than those reported. Writes
<out>/bench_changepoint.json (every figure) and prints two markdown tables: detection quality,
and the time of one regression() call on a 60-night history.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tuner.changepoint import regression  # noqa: E402

STEP, OUTLIER, DRIFT = 0.10, 0.5, 0.01
# The p99 level between sessions: three sessions' medians of 960, 1,347 and 1,239 ms (CV 16.9 %),
# less the noise of a 5-repeat median within a session (about 8 %): about 15 %. Three values: rough.
P99_LEVEL_CV = 0.147
# (label, noise CV of one run, repeats a night whose median is kept, CV of the per-night level)
CASES = [
    ("cost 0.1 % x1", 0.001, 1, 0.0),
    ("2 % x1", 0.02, 1, 0.0),
    ("3 % x1", 0.03, 1, 0.0),
    ("5 % x1", 0.05, 1, 0.0),
    ("p50 9.4 % x1", 0.094, 1, 0.0),
    ("p50 9.4 % median of 3", 0.094, 3, 0.0),
    ("p50 9.4 % median of 5", 0.094, 5, 0.0),
    ("p99 14.8 % x1", 0.148, 1, 0.0),
    ("p99 14.8 % median of 5", 0.148, 5, 0.0),
    ("p99 14.8 % median of 5 + level 14.7 %", 0.148, 5, P99_LEVEL_CV),
]


def noise(rng: np.random.Generator, nights: int, cv: float, repeats: int, level_cv: float) -> np.ndarray:
    """Multiplicative noise of each night's value around a level of 1."""
    def lognormal(c, size):
        s = np.sqrt(np.log1p(c * c))
        return np.exp(rng.normal(-s * s / 2, s, size))
    return np.median(lognormal(cv, (nights, repeats)), axis=1) * lognormal(level_cv, nights)


def flag(history: np.ndarray, night: int, params: dict):
    return regression(history[:night + 1], higher_is_worse=True, **params)


def run_case(job: tuple[str, dict, tuple[int, int], tuple]) -> dict:
    """All four scenarios for one detector and one noise case. Every detector sees the same
    histories (the generator is seeded by the seed and the case only)."""
    detector, params, (first, seeds), (label, cv, repeats, level_cv) = job
    kw = dict(detector=detector, **params)
    alarms = checks = detected = exact = repeated = drift_flagged = outliers = 0
    delays, drift_at = [], []
    for seed in range(first, first + seeds):
        rng = np.random.default_rng([seed, round(cv * 1e4), repeats, round(level_cv * 1e4)])
        h = noise(rng, 30, cv, repeats, level_cv)
        for n in range(10, 30):
            alarms += flag(h, n, kw) is not None
            checks += 1
        s = int(rng.integers(15, 28))
        h = noise(rng, 40, cv, repeats, level_cv)
        h[s:] *= 1 + STEP
        for n in range(s, s + 3):
            if (cp := flag(h, n, kw)) is not None:
                detected += 1
                delays.append(n - s)
                exact += cp.index == s
                break
        repeated += sum(flag(h, n, kw) is not None for n in range(s + 3, s + 13))
        h = noise(rng, 40, cv, repeats, level_cv) * (1 + DRIFT) ** np.clip(np.arange(40) - 9, 0, None)
        for n in range(10, 40):
            if flag(h, n, kw) is not None:
                drift_flagged += 1
                drift_at.append((1 + DRIFT) ** (n - 9) - 1)
                break
        o = int(rng.integers(15, 28))
        h = noise(rng, 30, cv, repeats, level_cv)
        h[o] *= 1 + OUTLIER
        outliers += any(flag(h, n, kw) is not None for n in range(o, o + 3))
    return dict(
        detector=detector, params=params, case=label, cv=cv, repeats=repeats, level_cv=level_cv, seeds=seeds,
        effective_cv=float(np.std(noise(np.random.default_rng(1), 20000, cv, repeats, level_cv))),
        false_alarm_per_night=alarms / checks, detected_within_3=detected / seeds,
        index_exact=exact / max(detected, 1), median_delay=float(np.median(delays)) if delays else None,
        repeated_alarm_per_night=repeated / (10 * seeds),
        drift_flagged=drift_flagged / seeds, drift_at_flag=float(np.median(drift_at)) if drift_at else None,
        outlier_flagged=outliers / seeds)


def timing(detector: str, params: dict, **extra) -> dict:
    """ms per regression() call on 60-night histories at the p50 noise, half with a step at night
    57; run alone (not beside the pool) so the figure is one core's."""
    kw = dict(detector=detector, **params, **extra)
    hists = [noise(np.random.default_rng(i), 60, 0.094, 1, 0.0) * np.where((np.arange(60) >= 57) & bool(i % 2), 1.1, 1)
             for i in range(40)]
    flag(hists[0], 59, kw)
    ms = []
    for h in hists:
        t0 = time.perf_counter()
        flag(h, 59, kw)
        ms.append((time.perf_counter() - t0) * 1000)
    return dict(detector=detector, params=params, **extra, mean_ms=float(np.mean(ms)), max_ms=float(np.max(ms)))


def parse_detector(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    params = {}
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        params[k] = float(v) if "." in v or "e-" in v else int(v)
    return name, params


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def label(name: str, params: dict) -> str:
    return name + ("" if not params else " " + ",".join(f"{k}={v}" for k, v in params.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=0, help="tune on other seeds than those reported")
    ap.add_argument("--detectors", default="e-divisive;mann-whitney;t-test;pelt",
                    help="';'-separated, each NAME or NAME:key=value,key=value")
    ap.add_argument("--cases", default="", help="substrings of case labels to keep (',' separated)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-changepoint"))
    args = ap.parse_args()
    detectors = [parse_detector(s) for s in args.detectors.split(";") if s]
    cases = [c for c in CASES if not args.cases or any(k in c[0] for k in args.cases.split(","))]
    jobs = [(d, p, (args.first_seed, args.seeds), c) for c in cases for d, p in detectors]
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_case, jobs))
    times = [timing(d, p) for d, p in detectors] + [timing(d, p, lookback=None) for d, p in detectors]
    args.out.mkdir(parents=True, exist_ok=True)
    result = dict(command=shlex.join(["python", *sys.argv]), seconds=round(time.time() - t0, 1),
                  step=STEP, outlier=OUTLIER, drift_per_night=DRIFT, rows=rows, timing=times)
    (args.out / "bench_changepoint.json").write_text(json.dumps(result, indent=1))
    print("| noise (CV of a night's value) | detector | false alarms / night | 10 % step found within 3 nights "
          "| median delay (nights) | repeated alarms / night after it | +1 %/night drift flagged (drift by then) "
          "| x1.5 outlier flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        meets = r["false_alarm_per_night"] <= 0.05 and r["detected_within_3"] >= 0.9
        print(f"| {r['case']} ({100 * r['effective_cv']:.1f} %) | {label(r['detector'], r['params'])} "
              f"| {pct(r['false_alarm_per_night'])} | {'**' if meets else ''}{pct(r['detected_within_3'])}"
              f"{'**' if meets else ''} | {r['median_delay'] if r['median_delay'] is not None else '-'} "
              f"| {pct(r['repeated_alarm_per_night'])} | {pct(r['drift_flagged'])} ({pct(r['drift_at_flag'])}) "
              f"| {pct(r['outlier_flagged'])} |")
    print("\n| detector | ms / regression() on 60 nights (last 30 analysed): mean, max | all 60 analysed: mean, max |")
    print("|---|---|---|")
    half = len(detectors)
    for a, b in zip(times[:half], times[half:]):
        print(f"| {label(a['detector'], a['params'])} | {a['mean_ms']:.1f}, {a['max_ms']:.1f} "
              f"| {b['mean_ms']:.1f}, {b['max_ms']:.1f} |")
    print(f"\n{len(jobs)} jobs, {result['seconds']} s; bold: both goals met")


if __name__ == "__main__":
    main()
