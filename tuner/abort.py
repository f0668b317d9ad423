"""`--abort-on-fail`: a target's clauses as the load generator's abort rules (pure).

The rules themselves, and why each is exact, are loadgen's (`loadgen/abort.py`): the generator's
master applies them to the records as they arrive. Here the target becomes those rules, and the
simulator applies the same rules to its records after the fact.
"""

from __future__ import annotations

import pandas as pd

from loadgen.abort import Fired, Rule, first_abort, format_rules
from tuner.target import Target


def abort_rules(target: Target, window_s: float) -> tuple[Rule, ...]:
    """Every clause the generator can decide early, in its numbers (ms, a fraction, requests/s
    over `window_s`, the window the verdict divides by). Inter-token latency has none: the gaps
    the requests still to come will add are unbounded, so it is never certain."""
    return tuple(Rule(clause=c.text, metric=c.metric, op=c.op, bound=c.threshold, route=c.route, q=c.quantile,
                      window_s=window_s if c.metric == "throughput" else None)
                 for c in target.clauses if c.metric != "itl")


def abort_spec(target: Target, window_s: float) -> str:
    """`--abort-when` for the target."""
    return format_rules(abort_rules(target, window_s))


def arrivals_by_route(paths: pd.Series) -> dict[str | None, int]:
    """Arrivals per route, and in all (key None), from each arrival's path."""
    counts = {str(k): int(v) for k, v in paths.astype(object).value_counts().items()}
    return {None: int(len(paths)), **counts}


def simulated_abort(target: Target, records: pd.DataFrame, paths: pd.Series, window_s: float,
                    grace_s: float) -> Fired | None:
    """When `--abort-on-fail` would have stopped this simulated run (its records' clock starts at
    the window's start; `paths`: the path of each arrival of the window), or None."""
    rules = abort_rules(target, window_s)
    return first_abort(rules, records, arrivals_by_route(paths), window_s, grace_s) if rules else None
