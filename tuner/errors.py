"""Errors the CLI maps to exit codes, each with a one-line message, and the one reader of the
user's YAML files, whose every failure is such a message."""

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
    """The YAML file the user named with `option` (None when empty). Whatever keeps it from
    loading is one UsageError, `OPTION PATH: problem`: it does not exist or is not a file, what
    the system says of a file it may not read, not UTF-8 text, or the parser's first problem and
    its line."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a pipe that would block the read
        raise UsageError(f"{option} {path}: is not a file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as e:  # a file it may not read
        problem = e.strerror or str(e)
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except RecursionError:
        problem = "not YAML: nested too deeply"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = f"not YAML{where}: {(getattr(e, 'problem', None) or str(e)).splitlines()[0]}"
    raise UsageError(f"{option} {path}: {problem}")


def first_problem(e) -> str:
    """A pydantic ValidationError's first problem as one line: `field.path: message`."""
    err = e.errors()[0]
    # keys and messages can carry the user's line breaks: quoted, or joined, they stay one line
    where = ".".join(str(x) if str(x).isprintable() else repr(x) for x in err["loc"])
    msg = " ".join(err["msg"].removeprefix("Value error, ").splitlines())
    return f"{where}: {msg}" if where else msg
