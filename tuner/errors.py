"""Errors the CLI maps to exit codes, each with a one-line message."""

from __future__ import annotations

from pathlib import Path

import yaml


class TunerError(Exception):
    """Base: `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(TunerError):
    """Bad input from the user: a file, an option, a port in use."""

    exit_code = 2


class StackError(TunerError):
    """A part of the stack could not be started or reached."""

    exit_code = 3


def read_yaml(path: Path, option: str):
    """A YAML file the user named with `option` (None when empty); a missing file or bad
    YAML is a UsageError naming the option, the path and, for YAML, the first problem."""
    if not path.is_file():
        raise UsageError(f"{option}: {path} " + ("is not a file" if path.exists() else "does not exist"))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"{option} {path}: not YAML: {str(e).splitlines()[0]}") from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise UsageError(f"{option} {path}: not YAML: {yaml_problem(e)}") from None


def yaml_problem(e: UnicodeDecodeError | RecursionError) -> str:
    """What makes a file that the YAML parser cannot take unreadable, in a few words."""
    return "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "nested too deeply"


def first_problem(e) -> str:
    """A pydantic ValidationError's first problem as one line: `field.path: message`."""
    err = e.errors()[0]
    # keys and messages can carry the user's line breaks: quoted, or joined, they stay one line
    where = ".".join(str(x) if str(x).isprintable() else repr(x) for x in err["loc"])
    msg = " ".join(err["msg"].removeprefix("Value error, ").splitlines())
    return f"{where}: {msg}" if where else msg
