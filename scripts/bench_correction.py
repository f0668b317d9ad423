"""The hybrid search's correction rules, scored on recorded real runs (BENCHMARKS.md, "The hybrid
search's correction").

Every real run a hybrid search recorded (each study.db's `real` study: baselines and verified
candidates, each with its simulated clause values) is predicted, in the order the search ran
them, from the runs before it in the same search: real value = simulated value x the rule's
factor. Scored per rule: the median |log(real / predicted)|, and how often the predicted verdict
(value under the clause's bound) is the real one, split by what the real run did (a wrong
"fails" keeps the search from a configuration that passes; a wrong "passes" spends real runs).
Then the same with one pathological run injected: each run in turn has its real values
multiplied by `--outlier` (and counts as a failed candidate), and the runs after it are scored.

    .venv/bin/python scripts/bench_correction.py runs/main-*/study.db [/tmp/clone*/runs/main-*/study.db ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.optimize.attrs import TrialAttrs  # noqa: E402
from tuner.optimize.study import completed  # noqa: E402
from tuner.target import parse_target  # noqa: E402


# A correction rule: (history of (configuration values, real/simulated ratio, a candidate that
# failed), the configuration to judge, the clause is an upper bound) -> the factor to trust.
History = list[tuple[dict, float, bool]]


def _worst(upper: bool):
    return max if upper else min


def _worst_failed(history: History, values: dict, upper: bool) -> float:
    return _worst(upper)([statistics.median(r for _, r, _ in history), *(r for _, r, f in history if f)])


def _median(history: History, values: dict, upper: bool) -> float:
    return statistics.median(r for _, r, _ in history)


def _median_failed(history: History, values: dict, upper: bool) -> float:
    failed = [r for _, r, f in history if f]
    return _worst(upper)([_median(history, values, upper), *([statistics.median(failed)] if failed else [])])


def _quartile(history: History, values: dict, upper: bool) -> float:
    rs = sorted(r for _, r, _ in history)
    if len(rs) < 2:
        return rs[0]
    return statistics.quantiles(rs, n=4, method="inclusive")[2 if upper else 0]


def distance(a: dict, b: dict) -> float:
    """How far apart two configurations are: numbers on a log scale, anything else 0 or 1."""
    d = 0.0
    for k in set(a) | set(b):
        x, y = a.get(k), b.get(k)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool) and x >= 0 and y >= 0:
            d += abs(math.log1p(x) - math.log1p(y))
        else:
            d += x != y
    return d


def _nearest(history: History, values: dict, upper: bool, k: int = 3) -> float:
    near = sorted(history, key=lambda h: distance(h[0], values))[:k]
    return statistics.median(r for _, r, _ in near)


def _shipped(history: History, values: dict, upper: bool) -> float:
    """tuner.optimize.hybrid.correction's rule."""
    return _median(history, values, upper)


RULES = {"worst failed candidate (the rule replaced)": _worst_failed, "median (shipped)": _shipped,
         "median of the failed": _median_failed, "upper quartile": _quartile, "3 nearest": _nearest}


def runs_of(path: Path) -> list[dict]:
    """The real runs of one search, in order: values, per clause (real, simulated), and whether it
    was a candidate that failed."""
    study = optuna.load_study(study_name="real", storage=f"sqlite:///{path}")
    out = []
    for t in completed(study):
        a = TrialAttrs.of(t)
        pairs = {}
        for real, sim in zip(a.clause_values, a.sim_clause_values):
            for text, rv in real.items():
                if rv and sim.get(text):
                    pairs[text] = (rv, sim[text])
        out.append({"values": a.values or {}, "pairs": pairs, "failed": not a.baselines and not a.passed,
                    "candidate": not a.baselines})
    return out


def score(rule, searches: list[list[dict]], outlier: float) -> dict:
    """Predict every run from the ones before it. With `outlier` > 1, each run in turn is made
    pathological (its real values x outlier, a failed run) and the runs after it are scored."""
    errs, right, n, pass_as_fail, passes, fail_as_pass, fails, cand_right, cands = [], 0, 0, 0, 0, 0, 0, 0, 0
    for runs in searches:
        bad_ones = range(len(runs)) if outlier > 1 else [None]
        for bad in bad_ones:
            seen = [dict(r, pairs={k: (rv * outlier, sv) for k, (rv, sv) in r["pairs"].items()}, failed=r["candidate"])
                    if j == bad else r for j, r in enumerate(runs)]
            for i in range(1 if bad is None else bad + 1, len(runs)):
                now = runs[i]
                for text, (rv, sv) in now["pairs"].items():
                    history = [(r["values"], r["pairs"][text][0] / r["pairs"][text][1], r["failed"])
                               for r in seen[:i] if text in r["pairs"]]
                    if not history:
                        continue
                    clause = parse_target(text).clauses[0]
                    f = rule(history, now["values"], clause.op in ("<", "<="))
                    errs.append(abs(math.log(rv / (sv * f))))
                    real_ok, pred_ok = clause.holds(rv), clause.holds(sv * f)
                    n += 1
                    right += real_ok == pred_ok
                    passes += real_ok
                    fails += not real_ok
                    pass_as_fail += real_ok and not pred_ok
                    fail_as_pass += pred_ok and not real_ok
                    if now["candidate"]:
                        cands += 1
                        cand_right += real_ok == pred_ok
    return {"err": statistics.median(errs), "right": f"{right}/{n} ({right / n:.0%})",
            "pass_as_fail": f"{pass_as_fail}/{passes}", "fail_as_pass": f"{fail_as_pass}/{fails}",
            "cand": f"{cand_right}/{cands}"}


def shift(rule, searches: list[list[dict]], outlier: float) -> list[float]:
    """How far one pathological run moves a search's final correction: for each search and each
    run in it made pathological (real x outlier, a failed candidate), factor with it / without."""
    out = []
    for runs in searches:
        for bad in range(len(runs)):
            for text in runs[bad]["pairs"]:
                def hist(j_bad):
                    return [(r["values"], r["pairs"][text][0] / r["pairs"][text][1] * (outlier if j == j_bad else 1),
                             r["failed"] or j == j_bad) for j, r in enumerate(runs) if text in r["pairs"]]
                upper = parse_target(text).clauses[0].op in ("<", "<=")
                out.append(rule(hist(bad), {}, upper) / rule(hist(None), {}, upper))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="+", type=Path)
    ap.add_argument("--outlier", type=float, default=10.0, help="how pathological the injected run is (real x this)")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searches = [runs_of(p) for p in a.studies]
    print(f"{len(searches)} searches, {sum(len(s) for s in searches)} real runs\n")
    print("| rule | runs | median abs log error | verdict right | real pass predicted to fail | real fail predicted to pass "
          "| candidates: verdict right |")
    print("|---|---|---|---|---|---|---|")
    for name, rule in RULES.items():
        for outlier in (1.0, a.outlier):
            r = score(rule, searches, outlier)
            what = "as recorded" if outlier == 1 else f"one run x{outlier:g}"
            print(f"| {name} | {what} | {r['err']:.3f} | {r['right']} | {r['pass_as_fail']} | {r['fail_as_pass']} "
                  f"| {r['cand']} |")
    print(f"\nOne run made pathological (x{a.outlier:g}, a failed candidate), the search's final correction with it "
          f"over without it:\n\n| rule | median | largest |\n|---|---|---|")
    for name, rule in RULES.items():
        moved = shift(rule, searches, a.outlier)
        print(f"| {name} | x{statistics.median(moved):.2f} | x{max(moved):.2f} |")

if __name__ == "__main__":
    main()
