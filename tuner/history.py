"""The nightly history: one row per metric per night (night, commit, machine, suite, backend,
case, metric, value), kept as CSV, and its analysis: a change-point detector over each
metric's series (tuner.changepoint) flags the changes for the worse among the newest nights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from tuner.atomic import write_text
from tuner.bench import METRICS
from tuner.changepoint import ChangePoint, change_points, regression
from tuner.errors import UsageError

COLUMNS = ["night", "commit", "machine", "suite", "backend", "case", "metric", "value", "status"]
SERIES = ["machine", "suite", "backend", "case", "metric"]
FILE = "nightly.csv"
SHOWN = 90


def history_file(folder: Path) -> Path:
    return folder / FILE


def read_history(folder: Path) -> pd.DataFrame:
    """The history in `folder` (empty when there is none yet); a file that is not a history
    is a UsageError naming what is missing."""
    path = history_file(folder)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        df = pd.read_csv(path, dtype={"commit": str})
    except (ValueError, pd.errors.ParserError) as e:
        raise UsageError(f"--history: {path} is not a CSV history: {str(e).splitlines()[0]}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UsageError(f"--history: {path} lacks the columns {', '.join(missing)}")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df[COLUMNS]


def append(folder: Path, rows: list[dict]) -> pd.DataFrame:
    """The history with this night's rows added, written atomically."""
    df = read_history(folder)
    new = pd.DataFrame(rows, columns=COLUMNS)
    both = new if df.empty else pd.concat([df, new], ignore_index=True)
    write_text(history_file(folder), both.to_csv(index=False))
    return both


@dataclass(frozen=True)
class Regression:
    """A change for the worse in one metric's series, among the newest nights."""

    machine: str
    suite: str
    backend: str
    case: str
    metric: str
    before: float
    after: float
    change: float
    first_bad_night: str
    commits: tuple[str, str]  # the last good night's commit, the first bad night's

    def line(self) -> str:
        unit = METRICS.get(self.metric, ("", True))[0]
        return (f"{self.backend}/{self.case} {self.metric}: {self.before:.4g} -> {self.after:.4g} {unit} "
                f"({self.change:+.1%}) from night {self.first_bad_night}, commits {self.commits[0]}..{self.commits[1]}")


def series(history: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Each metric's nights in order, keyed by (machine, suite, backend, case, metric)."""
    return {key: g.sort_values("night", kind="stable").reset_index(drop=True)
            for key, g in history.groupby(SERIES, sort=True)}


def analyse(history: pd.DataFrame, recent: int = 3, min_change: float = 0.05) -> tuple[list[Regression], dict]:
    """Regressions among the last `recent` nights of every series, and every series' change
    points (for the report), keyed as `series`."""
    found, points = [], {}
    for key, g in series(history).items():
        values = g["value"].to_numpy(dtype=float)
        # The report marks change points over the last SHOWN nights: E-divisive is quadratic in
        # the history's length, and a year of nights would cost seconds per metric.
        start = max(0, len(values) - SHOWN)
        points[key] = [replace(p, index=p.index + start) for p in change_points(values[start:])]
        higher_is_worse = METRICS.get(key[-1], ("", True))[1]
        cp: ChangePoint | None = regression(values, higher_is_worse, recent=recent, min_change=min_change)
        if cp is None:
            continue
        good = g["commit"].iloc[cp.index - 1] if cp.index > 0 else "-"
        found.append(Regression(*key, before=cp.before, after=cp.after, change=cp.change,
                                first_bad_night=str(g["night"].iloc[cp.index]), commits=(str(good), str(g["commit"].iloc[cp.index]))))
    return found, points


def as_dicts(found: list[Regression]) -> list[dict]:
    return [asdict(r) | {"summary": r.line()} for r in found]
