"""`tuner run` without a stack: every usage error exits 2 with one line before anything is
deployed, and a missing stack exits 3 before anything is written."""

import subprocess
import sys

import pytest

TUNER = [sys.executable, "-m", "tuner.cli", "run"]


def run(tmp_path, *args, out="out"):
    cmd = [*TUNER, "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / out), "--duration", "2",
           "--warmup", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def one_line_error(r) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("target, expected", [
    ("p99<500", "missing unit after 500 (use ms or s) at column 8"),
    ("p99<500ms,,error_rate<1%", "clause 2 '': empty clause"),
    ("throughput<5rps", "throughput must be a lower bound"),
    ("p99[rag]<1s", "route must be a path"),
])
def test_malformed_target_exits_2_naming_the_place(tmp_path, target, expected):
    r = run(tmp_path, "--target", target)
    assert r.returncode == 2
    assert expected in one_line_error(r)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--scenario", "burst", "--burst-rsp", "3"], "unrecognized arguments: --burst-rsp"),
    (["--scenario", "burst", "--burst-width", "-1"], "Burst.width_s"),
    (["--scenario", "nope"], "choose one of burst, diurnal"),
    (["--config", "{tmp}/bad.yaml"], "import_path"),
    (["--prices", "{tmp}/prices.yaml"], "cpu_hour"),
])
def test_bad_input_exits_2_before_anything_runs(tmp_path, args, expected):
    (tmp_path / "bad.yaml").write_text("applications: [{name: x}]\n")
    (tmp_path / "prices.yaml").write_text("cpu_hour: -1\n")
    r = run(tmp_path, "--target", "p99<1s", *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    assert expected in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_out_folder_with_files_is_refused_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.json").write_text("{}")
    r = run(tmp_path, "--target", "p99<1s")
    assert r.returncode == 2 and "--force" in one_line_error(r)
    assert (tmp_path / "out" / "result.json").read_text() == "{}"


def test_no_stack_exits_3_before_anything_is_written(tmp_path):
    """Every command that needs the stack says so the same way (run, validate, optimize, bench),
    before it starts: no result that was never measured is left behind."""
    r = run(tmp_path, "--target", "p99<1s")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "tuner run needs the stack" in r.stderr and "tuner stack up" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize("command", [["run"], ["stack", "up"], ["stack", "down"], ["stack", "status"]])
def test_help_renders(command):
    r = subprocess.run([sys.executable, "-m", "tuner.cli", *command, "--help"], capture_output=True, text=True,
                       timeout=60, env={"COLUMNS": "120", "PATH": ""})
    assert r.returncode == 0 and "Usage" in r.stdout and "Traceback" not in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("command", [["run"], ["sim"], ["optimize"]])
def test_help_at_80_columns_shows_every_example_whole_and_flags_without_a_value(command):
    r = subprocess.run([sys.executable, "-m", "tuner.cli", *command, "--help"], capture_output=True, text=True,
                       timeout=60, env={"COLUMNS": "80", "PATH": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "'p95[/rag]<800ms,error_rate<1%'" in r.stdout and "…" not in r.stdout
    assert "<bool>" not in r.stdout and "list[" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
