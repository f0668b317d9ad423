"""Change-point detection over a nightly benchmark history (the nightly CI).

A history is one value per metric per night. `change_points` splits it into segments of
constant level; `regression` says whether the newest nights made the metric worse. Values are
analysed on a log scale when all are positive, so a change is relative and the noise of a
latency (multiplicative) is symmetric. Four detectors, measured side by side in BENCHMARKS.md
("Change-point detection (nightly CI)", scripts/bench_changepoint.py); each default is the most
sensitive setting whose false alarms stayed under 4.5 % of nights at every noise level, on other
histories than those reported (the significance levels look loose because a flag must also be
among the last 3 nights, in the worse direction and at least 5 %):

- "e-divisive": E-divisive means (Matteson & James 2014, "A nonparametric approach for
  multiple change point analysis of multivariate data", JASA 109(505)), the method of MongoDB's
  performance CI (Daly et al. 2020, "The use of change point detection to identify software
  performance regressions in a continuous integration system", ICPE) and of Hunter / Apache
  Otava (Fleming et al. 2023, ICPE). Divisive bisection on the energy statistic (the split of a
  segment into two, as those tools use, not M&J's three-way search), each split kept only when
  a seeded permutation test finds it significant. The default: the most sensitive where the
  goals can be met (a nightly value with CV <= 3 %), the least fooled by a single bad night, and
  the method other performance CIs run.
- "pelt": penalised least squares as PELT solves it (Killick, Fearnhead & Eckley 2012, JASA
  107(500)), penalty `beta * sigma^2 * log(n)` with sigma the noise estimated from the history.
- "t-test": a sequential two-sample Student t-test: each night, the last 1..`last` values
  against the `window` values before them, within the current segment (a change, once found,
  starts a new segment, so one regression is reported once; a change that later nights do not
  confirm is withdrawn). One bad night is a 1-value step to it.
- "mann-whitney": the same scan with the exact Mann-Whitney U test (rank based: one wild night
  among the newest does not decide the test).

Pure: numpy and scipy only; deterministic (permutations are seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from scipy import special

MIN_VALUES = 6  # fewer valid values than this: no change points (no level to compare with)
# regression() looks at the last month: an older level says nothing about last night, and a long
# history costs e-divisive time (O(n^2) per permutation: about 390 ms at 365 nights).
LOOKBACK = 30


@dataclass(frozen=True)
class ChangePoint:
    """A change of level: the segment starting at `index` against the segment before it."""

    index: int  # first index of the new segment, in the caller's positions (NaNs counted)
    before: float  # median of the segment before
    after: float  # median of the segment from `index` to the next change point

    @property
    def change(self) -> float:
        """Relative change, after / before - 1 (+0.10: 10 % higher)."""
        if self.before == 0:
            return 0.0 if self.after == 0 else math.copysign(math.inf, self.after)
        return self.after / self.before - 1


# --- E-divisive means -------------------------------------------------------------------------

def _prefix2(d: np.ndarray) -> np.ndarray:
    """2-D prefix sums over the last two axes: p[..., i, j] = d[..., :i, :j].sum()."""
    p = np.zeros(d.shape[:-2] + (d.shape[-2] + 1, d.shape[-1] + 1))
    p[..., 1:, 1:] = d.cumsum(-1).cumsum(-2)
    return p


def _energy_q(d: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Matteson & James' statistic for every split tau of a segment, d (..., n, n) = |x_i - x_j|^a:
    Q = m k / n * (2 mean|X - Y|^a - mean|X - X'|^a - mean|Y - Y'|^a), X = the first m = tau
    values, Y = the other k, pairs within a side distinct. Prefix sums make all splits O(n) after
    O(n^2), so a batch of permutations is one array operation."""
    p = _prefix2(d)
    n = d.shape[-1]
    tau = np.arange(min_size, n - min_size + 1)
    m = tau.astype(float)
    k = n - m
    left = p[..., tau, tau]  # both orders of every pair within X
    cross = p[..., tau, n] - left
    right = p[..., n, n][..., None] - 2 * cross - left
    # A one-value side has no pairs: its within-term is 0 (M&J need >= 2; min_size keeps that).
    within_x = np.divide(left, m * (m - 1), out=np.zeros_like(left), where=m > 1)
    within_y = np.divide(right, k * (k - 1), out=np.zeros_like(right), where=k > 1)
    return tau, (m * k / n) * (2 * cross / (m * k) - within_x - within_y)


def e_divisive(values: Sequence[float], *, sig: float = 0.3, permutations: int = 99,
               min_size: int = 2, exponent: float = 1.0, seed: int = 0) -> list[int]:
    """E-divisive means: the best split of the best segment, while its permutation p-value < sig."""
    x = np.asarray(values, float)
    d = np.abs(x[:, None] - x[None, :]) ** exponent
    rng = np.random.default_rng(seed)
    bounds, best = [0, len(x)], {}

    def best_split(a: int, b: int):
        if b - a < 2 * min_size:
            return None
        tau, q = _energy_q(d[a:b, a:b], min_size)
        j = int(np.argmax(q))
        return a + int(tau[j]), float(q[j])

    def significant(a: int, b: int, q: float) -> bool:
        sub, n, exceed, done = d[a:b, a:b], b - a, 0, 0
        while done < permutations:  # in batches, stopping once p >= sig is certain
            batch = min(50, permutations - done)
            idx = np.argsort(rng.random((batch, n)), axis=1)
            qmax = _energy_q(sub[idx[:, :, None], idx[:, None, :]], min_size)[1].max(-1)
            exceed += int((qmax >= q - 1e-12).sum())
            done += batch
            if (exceed + 1) / (permutations + 1) >= sig:
                return False
        return True

    while True:
        found = []
        for a, b in zip(bounds, bounds[1:]):
            if (a, b) not in best:
                best[a, b] = best_split(a, b)
            if best[a, b]:
                found.append((best[a, b][1], a, b, best[a, b][0]))
        if not found:
            break
        q, a, b, tau = max(found)
        if not significant(a, b, q):
            break
        bounds = sorted(bounds + [tau])
    return bounds[1:-1]


# --- PELT ---------------------------------------------------------------------------------------

def _noise_sigma(x: np.ndarray) -> float:
    """Robust noise scale: MAD of the first differences / sqrt(2) (a level shift moves one
    difference, not the median), floored so a constant history still has a positive penalty."""
    diffs = np.diff(x)
    mad = float(np.median(np.abs(diffs - np.median(diffs)))) if len(diffs) else 0.0
    return max(1.4826 * mad / math.sqrt(2), 1e-6 * max(1.0, float(np.median(np.abs(x)))))


def pelt(values: Sequence[float], *, beta: float = 1.75, min_size: int = 2) -> list[int]:
    """Penalised least squares, squared-error cost, penalty beta * sigma^2 * log(n) with sigma the
    estimated noise: the exact optimum that PELT finds (Killick et al. 2012), computed here
    without PELT's pruning (the same segmentation as ruptures.Pelt(model="l2", jump=1), 50x
    faster at 60 values than ruptures' pure-Python loop)."""
    x = np.asarray(values, float)
    n = len(x)
    if n < 2 * min_size:
        return []
    pen = beta * _noise_sigma(x) ** 2 * math.log(n)
    c1, c2 = np.concatenate([[0.0], x.cumsum()]), np.concatenate([[0.0], (x * x).cumsum()])
    best, prev = np.full(n + 1, np.inf), np.zeros(n + 1, int)
    best[0] = -pen
    for t in range(min_size, n + 1):
        s = np.arange(0, t - min_size + 1)
        s = s[(s == 0) | (s >= min_size)]
        v = best[s] + c2[t] - c2[s] - (c1[t] - c1[s]) ** 2 / (t - s) + pen
        j = int(np.argmin(v))
        best[t], prev[t] = v[j], s[j]
    cuts, t = [], n
    while t > 0:
        t = int(prev[t])
        cuts.append(t)
    return sorted(cuts)[1:]


# --- Sequential two-sample tests ---------------------------------------------------------------

def _t_pvalue(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided Student t-test (pooled variance: a step moves the level, not the noise)."""
    m, k = len(before), len(after)
    ss = ((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum()
    sp = math.sqrt(ss / (m + k - 2))
    diff = after.mean() - before.mean()
    if sp == 0:
        return 0.0 if diff else 1.0
    t = diff / (sp * math.sqrt(1 / m + 1 / k))
    return float(2 * special.stdtr(m + k - 2, -abs(t)))


@lru_cache(maxsize=None)
def _u_counts(m: int, k: int) -> np.ndarray:
    """How many of the C(m+k, k) orderings give each U = #(after > before) pairs (exact null)."""
    if m == 0 or k == 0:
        return np.ones(1)
    # The largest value is an `after` (beats all m `before`s) or a `before` (beats none).
    with_after, with_before = _u_counts(m, k - 1), _u_counts(m - 1, k)
    out = np.zeros(m * k + 1)
    out[m:m + len(with_after)] += with_after
    out[:len(with_before)] += with_before
    return out


def _mw_pvalue(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided exact Mann-Whitney U test (a tie counts a half; the p-value is then rounded up)."""
    m, k = len(before), len(after)
    u = float((after[:, None] > before[None, :]).sum() + 0.5 * (after[:, None] == before[None, :]).sum())
    counts = _u_counts(m, k)
    total = counts.sum()
    lower = counts[: math.ceil(u) + 1].sum() / total  # P(U <= u)
    upper = counts[math.floor(u):].sum() / total  # P(U >= u)
    return min(1.0, 2 * min(lower, upper))


def _scan(x: np.ndarray, pvalue: Callable[[np.ndarray, np.ndarray], float], alpha: float, confirm: float,
          window: int, last: int, min_size: int, min_before: int) -> list[int]:
    """Replays the nights in order. On night e, each candidate i with min_size..last values after
    it is tested against up to `window` values before it, back to the last change; the smallest
    p-value below alpha / (number of candidates) makes i a change point. Night by night, so
    appending nights never moves an old change point, except for the withdrawal below."""
    found: list[int] = []
    for e in range(1, len(x) + 1):
        # A young change must stay significant (p < confirm) with every night since, or it is
        # withdrawn: a false alarm would otherwise blind the scan for min_before nights.
        while confirm and found and e - found[-1] < window:
            j, prev = found[-1], (found[-2] if len(found) > 1 else 0)
            if pvalue(x[max(prev, j - window):j], x[j:e]) < confirm:
                break
            found.pop()
        start = found[-1] if found else 0
        cands = range(max(start + min_before, e - last), e - min_size + 1)
        if not cands:
            continue
        p, i = min((pvalue(x[max(start, i - window):i], x[i:e]), i) for i in cands)
        if p < alpha / len(cands):
            found.append(i)
    return found


def t_test(values: Sequence[float], *, alpha: float = 0.08, confirm: float = 0.08, window: int = 20,
           last: int = 3, min_size: int = 1, min_before: int = 5) -> list[int]:
    """Sequential Student t-test of the newest 1..`last` values against the `window` before."""
    return _scan(np.asarray(values, float), _t_pvalue, alpha, confirm, window, last, min_size, min_before)


def mann_whitney(values: Sequence[float], *, alpha: float = 0.2, confirm: float = 0.2, window: int = 20,
                 last: int = 3, min_size: int = 1, min_before: int = 5) -> list[int]:
    """Sequential exact Mann-Whitney U test, same scan as t_test."""
    return _scan(np.asarray(values, float), _mw_pvalue, alpha, confirm, window, last, min_size, min_before)


DETECTORS: dict[str, Callable[..., list[int]]] = {
    "e-divisive": e_divisive,
    "pelt": pelt,
    "t-test": t_test,
    "mann-whitney": mann_whitney,
}
_TAIL_SCANS = {"t-test", "mann-whitney"}  # regression() sets their `last` to its `recent`
DEFAULT_DETECTOR = "e-divisive"


def _cuts(x: np.ndarray, detector: str, params: dict) -> list[int]:
    return list(DETECTORS[detector](np.log(x) if (x > 0).all() else x, **params))


def _segments(x: np.ndarray, positions: np.ndarray, cuts: list[int]) -> list[ChangePoint]:
    bounds = [0, *cuts, len(x)]
    return [ChangePoint(index=int(positions[c]), before=float(np.median(x[a:c])), after=float(np.median(x[c:b])))
            for a, c, b in zip(bounds, bounds[1:], bounds[2:])]


def change_points(values: Sequence[float], detector: str = DEFAULT_DETECTOR, **params) -> list[ChangePoint]:
    """The change points of a history, oldest first. NaNs are skipped; indices are the caller's."""
    raw = np.asarray(values, float)
    positions = np.flatnonzero(~np.isnan(raw))
    if len(positions) < MIN_VALUES:
        return []
    x = raw[positions]
    return _segments(x, positions, _cuts(x, detector, params))


def regression(values: Sequence[float], higher_is_worse: bool, *, recent: int = 3, min_change: float = 0.05,
               detector: str = DEFAULT_DETECTOR, lookback: int | None = LOOKBACK, **params) -> ChangePoint | None:
    """The newest change point among the last `recent` valid values that makes the metric worse
    by at least `min_change` (relative), else None: its median must be that much worse, and so
    must a majority of the values since it. Only the last `lookback` valid values are analysed.
    NaNs are skipped (a failed night neither counts as a value nor shortens the `recent`
    window); the index is the caller's position."""
    raw = np.asarray(values, float)
    positions = np.flatnonzero(~np.isnan(raw))
    if len(positions) < MIN_VALUES:
        return None
    if lookback:
        positions = positions[-lookback:]
    x = raw[positions]
    if detector in _TAIL_SCANS:
        params.setdefault("last", recent)
    cuts = _cuts(x, detector, params)
    # Splits that move the level less than min_change are merged away, weakest first (Hunter's
    # min_magnitude): a spurious split just before the newest nights would otherwise leave a
    # short, noisy segment as the level they are compared with.
    while cuts:
        changes = [abs(c.change) for c in _segments(x, positions, cuts)]
        weakest = int(np.argmin(changes))
        if changes[weakest] >= min_change:
            break
        del cuts[weakest]
    sign = 1 if higher_is_worse else -1
    bounds = [*cuts, len(x)]
    for cp, cut, end in reversed(list(zip(_segments(x, positions, cuts), bounds, bounds[1:]))):
        if cut < len(x) - recent:
            break
        # The median of two nights is their mean, which one wild night decides; a majority
        # keeps a single bad night from reading as a step (BENCHMARKS.md: outlier column).
        with np.errstate(divide="ignore", invalid="ignore"):  # an error rate's level can be 0
            worse = sign * (x[cut:end] / cp.before - 1) >= min_change
        if sign * cp.change >= min_change and 2 * worse.sum() > len(worse):
            return cp
    return None
