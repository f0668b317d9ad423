"""The price table files: the shipped default (tuner/data/prices.yaml) and a user's override
(`--prices`), read into tuner.cost's Prices. The cost model itself opens no file."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tuner.cost import Prices
from tuner.errors import UsageError, first_problem, read_yaml
from tuner.paths import PRICES


def load_prices(path: Path | None = None) -> Prices:
    """The default price table, with the keys of `path` (if given) overriding it."""
    data = _read_prices(PRICES)
    if path is not None:
        data = {**data, **_read_prices(path)}
    try:
        return Prices.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"--prices {path or PRICES}: {first_problem(e)} (got {e.errors()[0].get('input')!r})") from e


def _read_prices(path: Path) -> dict:
    data = read_yaml(path, "--prices")
    if data is None:  # an empty file overrides nothing
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--prices {path}: must be a mapping of prices")
    return data
