"""Where the app keeps what it builds: models, the document set, Milvus Lite data.

One directory, `TARGET_APP_DATA` (default `<repo>/var`), so that a Ray worker in any
working directory, the stack and the tests all find the same artefacts.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ACCELERATOR_TABLES = PACKAGE_DIR / "accelerators"
DEFAULT_SERVE_CONFIG = PACKAGE_DIR / "serve_config.yaml"


def data_dir() -> Path:
    """The artefact directory, created on first use."""
    path = Path(os.environ.get("TARGET_APP_DATA", PACKAGE_DIR.parent / "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve(path: str | os.PathLike) -> Path:
    """Resolve a config path: absolute as given, relative against the data directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else data_dir() / p
