"""The nightly workflow parses, runs on schedule and on demand, installs the README's way,
runs the nightly bench on both backends, keeps the history, uploads the report and fails on a
regression; every shell step is valid bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    (job,) = load()["jobs"].values()
    return job["steps"]


def runs() -> str:
    return "\n".join(s.get("run", "") for s in steps())


def test_it_runs_nightly_and_on_demand():
    data = load()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    assert data["permissions"]["contents"] == "write"  # it pushes the history branch


def test_it_installs_the_readme_way_and_runs_the_nightly_bench():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup.sh" in runs() and "scripts/setup.sh" in readme
    bench = next(s["run"] for s in steps() if "tuner bench" in s.get("run", ""))
    assert "--suite nightly --backend both" in bench and "--history reports/history" in bench
    assert "tuner bench --suite nightly" in readme


def test_it_keeps_the_history_uploads_the_report_and_fails_on_a_regression():
    text = runs()
    assert "bench-history" in text and "git push origin bench-history" in text
    upload = next(s for s in steps() if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "runs/night/report.html" in upload["with"]["path"] and upload["if"] == "always()"
    last = steps()[-1]
    assert last["if"] == "steps.bench.outputs.rc != '0'" and "exit 1" in last["run"]


def test_every_shell_step_is_valid_bash(tmp_path):
    for i, step in enumerate(s for s in steps() if "run" in s):
        script = tmp_path / f"step{i}.sh"
        script.write_text(step["run"].replace("${{ steps.bench.outputs.rc }}", "1"))
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{step.get('name')}: {r.stderr}"
