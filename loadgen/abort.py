"""Stopping a run once a target clause can no longer hold (k6's `abortOnFail`), decided exactly (pure).

A `Rule` is one clause of a target in plain numbers; `tuner run --abort-on-fail` writes them
from its `--target` (loadgen does not import the tuner) as `--abort-when`, a JSON list. The
master sees every record as it arrives and keeps a `Tally` per rule; once the records so far
make the clause fail *whatever the rest of the run does*, the run is stopped. That is decided
from the definitions the verdict uses (tuner/target.py, `client_value`), given N, the exact
number of arrivals of the rule's route in the run (the seeded schedule the generators send,
not its expectation):

- `pQ` / `ttft_pQ` below B (`<`; `<=` likewise with "above B"): the value is numpy's linear
  percentile of the finite latencies (TTFTs) of the route's sent records. Sorted, with n of them,
  it is x[lo] + t * (x[lo+1] - x[lo]) with lo = floor((n-1) * Q/100) and 0 <= t < 1, so never
  below x[lo]: once `bad` values are at or past B, x[lo] is past B as soon as bad >= n - lo.
  n is unknown until the end, but at most N - records so far + values so far (each arrival
  still to come adds at most one value, a dropped one none), and n - lo(n) does not decrease
  with n, so the largest n decides. Errors count with the latency they took and unfinished
  requests with their latency at the cut, dropped arrivals not at all, as in `client_value`.
- `error_rate` below x: (records - ok) / records, with N records at the end: once
  not-ok records so far / N is at or past x.
- `throughput` at least r: ok / window, ok at most N - not-ok records so far: once that is short.
- a route with no arrivals, or a percentile that no request can give a value, has no value, which
  never meets a clause: certain from the start.

Exact both ways for what they count: a rule fires only when every way the run can go on misses
the clause, and short of firing, some run with the same counts so far meets it (the rest answered
at once and well), so the counts alone could not decide sooner. Inter-token latency gets no rule:
how many gaps the requests still to come add is unbounded, so it is never certain.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from loadgen.summary import ok_mask

METRICS = ("latency", "ttft", "error_rate", "throughput")
_VALUE_COLUMN = {"latency": "latency_ms", "ttft": "ttft_ms"}
_UPPER, _LOWER = ("<", "<="), (">", ">=")
_FIELDS = {"clause", "metric", "op", "bound", "route", "q", "window_s"}


@dataclass(frozen=True)
class Rule:
    """One clause in numbers: `bound` in ms (latency, ttft), a fraction (error_rate) or
    requests/s (throughput); `window_s` the seconds throughput is over (default: the run's)."""

    clause: str
    metric: str
    op: str
    bound: float
    route: str | None = None
    q: float | None = None
    window_s: float | None = None

    def holds(self, value: float | None) -> bool:
        """Whether a value meets the clause, as tuner.target.Clause.holds: no value never does."""
        if value is None or not math.isfinite(value):
            return False
        return bool(_meets(self.op, value, self.bound))


def _meets(op: str, value, bound: float):
    """`value op bound`, for a number or elementwise for an array."""
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def parse_rules(text: str) -> tuple[Rule, ...]:
    """`--abort-when`'s JSON list of rules; ValueError naming what is wrong."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--abort-when: not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ValueError("--abort-when: must be a JSON list of rule objects")
    return tuple(_rule(n, x) for n, x in enumerate(items, 1))


def _rule(n: int, x: dict) -> Rule:
    def bad(msg: str) -> ValueError:
        return ValueError(f"--abort-when: rule {n} {x.get('clause', '')!r}: {msg}")

    unknown = sorted(set(x) - _FIELDS)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})")
    metric, op = x.get("metric"), x.get("op")
    if metric not in METRICS:
        raise bad(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
    if op not in (_LOWER if metric == "throughput" else _UPPER):
        raise bad(f"op must be one of {' '.join(_LOWER if metric == 'throughput' else _UPPER)} (got {op!r})")
    numbers = {k: x.get(k) for k in ("bound", "q", "window_s")}
    for k, v in numbers.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise bad(f"{k} must be a finite number (got {v!r})")
    if numbers["bound"] is None or numbers["bound"] < 0:
        raise bad("bound must be a number >= 0")
    q = numbers["q"]
    if metric in _VALUE_COLUMN and (q is None or not 0 < q < 100):
        raise bad(f"q must be between 0 and 100 (got {q!r})")
    if numbers["window_s"] is not None and numbers["window_s"] <= 0:
        raise bad("window_s must be > 0")
    route = x.get("route")
    if route is not None and not (isinstance(route, str) and route.startswith("/")):
        raise bad(f"route must be a path such as /rag (got {route!r})")
    return Rule(clause=str(x.get("clause") or ""), metric=metric, op=op, bound=float(numbers["bound"]), route=route,
                q=float(q) if metric in _VALUE_COLUMN else None,
                window_s=float(numbers["window_s"]) if numbers["window_s"] is not None else None)


def format_rules(rules: list[Rule] | tuple[Rule, ...]) -> str:
    """The JSON `--abort-when` takes."""
    return json.dumps([{k: v for k, v in asdict(r).items() if v is not None} for r in rules], separators=(",", ":"))


@dataclass
class Tally:
    """What a rule has seen of its route: records, of them values a percentile counts
    (latency, ttft), and bad ones (past the bound; for error_rate and throughput: not ok)."""

    records: int = 0
    values: int = 0
    bad: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.records + other.records, self.values + other.values, self.bad + other.bad)


def _route_rows(rule: Rule, records: pd.DataFrame) -> np.ndarray:
    if rule.route is None:
        return np.ones(len(records), bool)
    return (records["route"].astype(object) == rule.route).to_numpy(dtype=bool)


def bad_rows(rule: Rule, records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record (loadgen.records.with_derived columns): of the rule's route, has a value, is bad."""
    rows = _route_rows(rule, records)
    if rule.metric in _VALUE_COLUMN:
        v = records[_VALUE_COLUMN[rule.metric]].to_numpy(dtype=float, na_value=np.nan)
        has = rows & ~records["dropped"].to_numpy(dtype=bool) & np.isfinite(v)
        with np.errstate(invalid="ignore"):
            past = v >= rule.bound if rule.op == "<" else v > rule.bound
        return rows, has, has & past
    return rows, np.zeros(len(records), bool), rows & ~ok_mask(records).to_numpy(dtype=bool)


def tally(rule: Rule, records: pd.DataFrame) -> Tally:
    """The rule's counts over `records`."""
    rows, has, bad = bad_rows(rule, records)
    return Tally(int(rows.sum()), int(has.sum()), int(bad.sum()))


def floor_index(n: int, q: float) -> int:
    """The lower neighbour numpy's linear percentile Q of n values interpolates from: the same
    float arithmetic, (n - 1) * (Q / 100), so the same index whatever the rounding."""
    return min(max(math.floor((n - 1) * (q / 100)), 0), n - 1)


def needed_bad(n: int, q: float) -> int:
    """How many of n values past the bound put percentile Q past it whatever the others are."""
    return n - floor_index(n, q)


def certain_miss(rule: Rule, seen: Tally, arrivals: int, window_s: float) -> bool:
    """Whether the clause fails whatever the records still to come are, with `arrivals` the
    run's arrivals of the rule's route and `window_s` the seconds throughput is over."""
    if arrivals <= 0:
        return True
    if rule.metric in _VALUE_COLUMN:
        most = arrivals - seen.records + seen.values  # values the percentile can have at the end
        if most <= 0:
            return True
        if seen.bad < needed_bad(most, rule.q):
            return False
        # n - lo(n) never decreases in exact arithmetic; checking every n it can end at makes
        # that hold for the float index numpy uses too.
        ns = np.arange(max(seen.values, 1), most + 1)
        return bool(seen.bad >= (ns - np.floor((ns - 1) * (rule.q / 100))).max())
    if rule.metric == "error_rate":
        return not rule.holds(seen.bad / arrivals)
    window = rule.window_s or window_s
    return window <= 0 or not rule.holds((arrivals - seen.bad) / window)


@dataclass(frozen=True)
class Fired:
    """The clause that can no longer hold, and when the run was (or would have been) stopped:
    seconds from the load window's start."""

    clause: str
    at_s: float


class Watch:
    """A run's rules, fed its records as they arrive (the master's view).

    `arrivals` maps a route (None: all of them) to its arrivals in the run; `window_s` is the
    run's traffic duration; nothing fires before `grace_s` into the load window."""

    def __init__(self, rules: tuple[Rule, ...], arrivals: dict[str | None, int], window_s: float, grace_s: float = 0.0):
        self.rules, self.arrivals, self.window_s, self.grace_s = rules, arrivals, window_s, grace_s
        self.seen = [Tally() for _ in rules]
        self.fired: Fired | None = None

    def add(self, records: pd.DataFrame) -> None:
        """Count a batch of records (loadgen.records.with_derived columns)."""
        for i, rule in enumerate(self.rules):
            self.seen[i] = self.seen[i] + tally(rule, records)

    def certain(self) -> Rule | None:
        """The first rule whose clause can no longer hold, if any."""
        return next((r for r, s in zip(self.rules, self.seen)
                     if certain_miss(r, s, self.arrivals.get(r.route, 0), self.window_s)), None)

    def due(self, now_s: float) -> Fired | None:
        """Once, at `now_s` seconds into the window: the abort, if a clause can no longer hold
        and the grace is over."""
        if self.fired is not None or now_s < self.grace_s:
            return None
        rule = self.certain()
        if rule is None:
            return None
        self.fired = Fired(rule.clause, now_s)
        return self.fired


def seen_at(records: pd.DataFrame) -> np.ndarray:
    """When the master has each record: at its end (answered, failed, or cut), or when it was
    due for one never sent."""
    end = records["end"].to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(end), end, records["scheduled"].to_numpy(dtype=float))


def first_abort(rules: tuple[Rule, ...], records: pd.DataFrame, arrivals: dict[str | None, int], window_s: float,
                grace_s: float = 0.0) -> Fired | None:
    """After the fact: when a watch fed the records as they ended would have stopped the run
    (the records' clock counting from the window's start, as a simulated run's does), or None.
    The same rule as the master's, at the instant the deciding record ended, not at the next flush."""
    seen = seen_at(records)
    order = np.argsort(seen, kind="stable")
    when = seen[order]
    best: Fired | None = None
    for rule in rules:
        rows, has, bad = (a[order] for a in bad_rows(rule, records))
        counts = np.cumsum(rows), np.cumsum(has), np.cumsum(bad)
        n = arrivals.get(rule.route, 0)
        k = _first_certain(rule, counts, n, window_s)
        if k is None:
            continue
        at = max(grace_s, float(when[k]) if k >= 0 else 0.0)
        if best is None or at < best.at_s:
            best = Fired(rule.clause, at)
    return best


def _first_certain(rule: Rule, counts, arrivals: int, window_s: float) -> int | None:
    """The first prefix (index of its last record; -1 before any) after which the rule is
    certain, or None. A vectorised pass finds the candidates; `certain_miss` decides each."""
    if certain_miss(rule, Tally(), arrivals, window_s):
        return -1
    rows, has, bad = counts
    if rule.metric in _VALUE_COLUMN:
        most = arrivals - rows + has
        candidates = (most <= 0) | (bad >= most - np.floor((np.maximum(most, 1) - 1) * (rule.q / 100)))
    else:
        value = bad / arrivals if rule.metric == "error_rate" else (arrivals - bad) / (rule.window_s or window_s)
        candidates = ~_meets(rule.op, value, rule.bound)
    for k in np.flatnonzero(candidates):
        if certain_miss(rule, Tally(int(rows[k]), int(has[k]), int(bad[k])), arrivals, window_s):
            return int(k)
    return None
