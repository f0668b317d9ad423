"""The module map's rules, checked: the two backends stand side by side on the plan, only the real
backend's callers import it, and the simulator's core opens no file (its inputs are read at the
edge and handed in)."""

import ast
import builtins
import io
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Who may import the real backend: the commands and library parts that run real trials.
REAL_BACKEND_CALLERS = {"tuner/cli.py", "tuner/bench.py", "tuner/validate.py", "tuner/optimize/evaluate.py"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_the_real_backends_callers_import_it():
    importers = {str(p.relative_to(ROOT)) for p in (ROOT / "tuner").rglob("*.py")
                 if p.name != "trial.py" and "tuner.trial" in _imports(p)}
    assert importers <= REAL_BACKEND_CALLERS, importers - REAL_BACKEND_CALLERS


def test_the_simulated_backend_loads_nothing_of_the_real_one():
    code = ("import sys, tuner.simulate, tuner.plan, tuner.optimize.evaluate; "
            "print([m for m in ('tuner.trial', 'tuner.stack', 'tuner.prometheus', 'httpx', 'psutil', "
            "'prometheus_api_client') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_scenarios_and_the_pure_cores_import_no_io_library():
    for path in (ROOT / "scenarios").glob("*.py"):
        assert {n.split(".")[0] for n in _imports(path)} <= {"loadgen", "__future__"}, path.name
    io_libraries = {"httpx", "psutil", "ray", "locust", "prometheus_api_client", "subprocess", "requests"}
    pure = [ROOT / "loadgen/shapes.py", ROOT / "loadgen/arrivals.py", ROOT / "tuner/target.py", ROOT / "tuner/cost.py",
            ROOT / "tuner/result.py", *(ROOT / "tuner/policies").glob("*.py"), *(ROOT / "tuner/sim").glob("*.py")]
    for path in pure:
        assert not {n.split(".")[0] for n in _imports(path)} & io_libraries, path


def test_a_simulated_trial_opens_no_file_once_its_inputs_are_read():
    """The simulator's core gets the config, the arrivals, the calibration, the cluster and the
    accelerator tables; with every way of opening a file refused, it still runs."""
    from tuner.calibration_file import accelerator_tables, load_calibration
    from tuner.paths import SERVE_CONFIG
    from tuner.sim.cluster import ClusterSpec
    from tuner.sim.run import simulate

    from target_app.compute import accelerator_rows

    config = yaml.safe_load(SERVE_CONFIG.read_text())
    cal, tables = load_calibration("local"), accelerator_tables(config)
    accelerator_rows.cache_clear()  # a table read again inside would have to open its file
    arrivals = pd.DataFrame({"t": [0.5, 1.0, 1.5], "path": ["/rag", "/predict", "/v1/completions"],
                             "stream": [True, False, False], "adapter": [None, None, "lora-01"],
                             "domain": [None, "legal", None], "prompt_tokens": [None] * 3, "max_tokens": [None, None, 8]})

    def refused(*args, **kwargs):
        raise AssertionError(f"the simulator opened a file: {args[:1]}")

    with mock.patch.object(builtins, "open", refused), mock.patch.object(io, "open", refused), \
            mock.patch.object(Path, "open", refused), mock.patch.object(Path, "read_text", refused), \
            mock.patch.object(Path, "read_bytes", refused):
        out = simulate(config, arrivals, cal, ClusterSpec(), tables=tables, duration_s=5, warmup_s=0)
    assert len(out.records) == 3 and out.records["status"].eq(200).all()
