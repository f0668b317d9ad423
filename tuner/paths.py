"""Where the tuner finds what it ships: the one place that builds paths from this file's location.

Everything is resolved against the repository, so a command gives the same answer from any
working directory. The app's own paths (its Serve config, its accelerator tables, the data it
builds) live in `target_app.paths`; the tuner reads them from there.
"""

from __future__ import annotations

from pathlib import Path

from target_app.paths import DEFAULT_SERVE_CONFIG

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
DATA = PACKAGE / "data"

SCENARIOS = REPO / "scenarios"
SERVE_CONFIG = DEFAULT_SERVE_CONFIG
PRICES = DATA / "prices.yaml"
CLUSTERS = DATA / "cluster.yaml"
CALIBRATIONS = DATA / "calibration"
SEARCH_SPACES = DATA
SUITES = DATA / "suites"
REPORT_TEMPLATES = REPO / "reports" / "templates"
K8S_SCHEMAS = REPO / "k8s" / "schemas"
K8S_TEMPLATES = REPO / "k8s" / "templates"
