"""Output folders (`--out`): a command never mixes its results into an earlier run's files, or
replaces them, unless told to with --force."""

from __future__ import annotations

import shutil
from pathlib import Path

from tuner.errors import UsageError


def holds_files(out: Path) -> bool:
    """Whether the folder `out` exists with something in it (UsageError when `out` is a file)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    return out.is_dir() and any(out.iterdir())


# What a trial stopped at its check (no stack, Prometheus down) leaves: nothing measured.
UNMEASURED_FILES = {"result.json", "serve_config.yaml"}


def never_measured(out: Path) -> bool:
    """Whether `out` holds only a trial that stopped before it measured anything: its rerun
    may replace it, as no record would be lost."""
    import json

    if {p.name for p in out.iterdir()} != UNMEASURED_FILES:
        return False
    try:
        result = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and result.get("status") == "unmeasured" and not result.get("window")


def prepare_out(out: Path, force: bool) -> None:
    """An empty folder `out`: one that already holds files is refused, or with `force` emptied;
    one that holds only a trial that never measured anything is replaced."""
    if holds_files(out):
        if not force and not never_measured(out):
            raise UsageError(f"--out {out} already holds files; choose another folder or pass --force")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    make_out(out)


def make_out(out: Path) -> None:
    """The folder `out`, created with its parents where missing (UsageError when it cannot be)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the folder: {e.strerror or e}") from None
