"""The stack's pure and local parts: config, ports, PID records, the CLI's exit codes."""

import socket
import subprocess
import sys
import time

import pytest
import yaml

from tuner import deploy, ports
from tuner.errors import UsageError
from tuner.processes import ProcessRecord, spawn, stop
from tuner.prometheus_config import prometheus_config
from tuner.stack_config import StackConfig, StackPorts

TUNER = [sys.executable, "-m", "tuner.cli"]


def test_ports_must_be_distinct_and_in_range():
    with pytest.raises(ValueError, match="ports.llm and ports.ray_metrics are both 8090|ports.ray_metrics"):
        StackPorts(llm=8090)
    with pytest.raises(ValueError):
        StackPorts(prometheus=80)


def test_prometheus_scrapes_ray_llm_and_itself_on_loopback():
    cfg = StackConfig(ports=StackPorts(ray_metrics=9001, llm=9002, prometheus=9003), scrape_interval_s=2)
    doc = prometheus_config(cfg)
    assert doc["global"]["scrape_interval"] == "2s"
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in doc["scrape_configs"]}
    assert targets == {"ray": ["127.0.0.1:9001"], "llm": ["127.0.0.1:9002"], "prometheus": ["127.0.0.1:9003"]}


def test_a_taken_port_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ports.port_in_use(port)
        with pytest.raises(UsageError, match=f"port {port} \\(prometheus\\) is already in use"):
            ports.require_free({"llm": ports.free_port(), "prometheus": port})


def test_stop_takes_the_process_and_its_children(tmp_path):
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    rec = spawn("tree", [sys.executable, "-c", script], tmp_path / "tree.log")
    time.sleep(1.0)
    child = rec.process().children()[0]
    stopped = stop([rec], timeout_s=5)
    assert {r.pid for r in stopped} == {rec.pid, child.pid}
    assert not rec.alive()
    assert not child.is_running() or child.status() == "zombie"


def test_a_record_with_another_start_time_is_not_ours(tmp_path):
    rec = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "s.log")
    impostor = ProcessRecord("sleeper", rec.pid, rec.started_after_boot_s - 100, rec.argv, rec.log)
    assert rec.alive() and not impostor.alive()
    assert stop([impostor]) == []
    assert rec.alive()
    stop([rec])
    assert not rec.alive()


def test_a_wall_clock_step_leaves_our_processes_ours(tmp_path, monkeypatch):
    """NTP stepping /proc/stat's btime by a second once made a running stack look dead."""
    import psutil._pslinux as pslinux

    rec = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "s.log")
    try:
        btime = pslinux.boot_time()
        monkeypatch.setattr(pslinux, "boot_time", lambda: btime + 1.0)
        assert rec.alive()
        assert stop([ProcessRecord("sleeper", rec.pid, rec.started_after_boot_s + 1.0, rec.argv, rec.log)]) == []
    finally:
        monkeypatch.undo()
        stop([rec])
    assert not rec.alive()


def test_a_record_written_by_an_earlier_version_still_finds_its_process(tmp_path):
    import psutil

    rec = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "s.log")
    try:
        legacy = {"name": rec.name, "pid": rec.pid, "create_time": psutil.Process(rec.pid).create_time(),
                  "argv": rec.argv, "log": rec.log}
        assert ProcessRecord.from_dict(legacy).alive()
    finally:
        stop([rec])


def test_serve_config_errors_are_one_line_usage_errors(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("applications:\n  - name: [unclosed\n")
    with pytest.raises(UsageError) as info:
        deploy.load_serve_config(bad_yaml)
    assert str(info.value) == f"serve config {bad_yaml}: not YAML at line 3: expected ',' or ']', but got '<stream end>'"
    bad_field = tmp_path / "field.yaml"
    bad_field.write_text(yaml.safe_dump({"applications": [{"name": "a", "import_path": "x:y", "route_prefix": "/",
                                                          "deployments": [{"name": "D", "max_ongoing_requests": -3}]}]}))
    with pytest.raises(UsageError, match="max_ongoing_requests"):
        deploy.load_serve_config(bad_field)
    with pytest.raises(UsageError) as info:
        deploy.load_serve_config(tmp_path / "missing.yaml")
    assert str(info.value) == f"serve config {tmp_path / 'missing.yaml'}: does not exist"


def run_tuner(*args, cwd=None):
    return subprocess.run([*TUNER, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_usage_errors_exit_2_with_one_line(tmp_path):
    r = run_tuner("stack", "up", "--llm-port", "80", "--state-dir", str(tmp_path))
    assert r.returncode == 2
    assert "ports.llm" in r.stderr and "Traceback" not in r.stderr + r.stdout
    r = run_tuner("stack", "up", "--config", str(tmp_path / "nope.yaml"), "--state-dir", str(tmp_path))
    assert r.returncode == 2 and f"serve config {tmp_path / 'nope.yaml'}: does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_tuner("stack", "up", "--no-such-flag")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_status_without_a_stack_exits_1(tmp_path):
    r = run_tuner("stack", "status", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "no stack recorded" in r.stdout


def test_the_first_start_says_where_the_model_build_and_embedding_are(tmp_path):
    """`stack up` relays the preparation's latest line while it waits, once per change."""
    from tuner.stack import Stack, last_line
    from tuner.stack_config import StackConfig

    stack = Stack(StackConfig(state_dir=tmp_path / "state"))
    stack.logs.mkdir(parents=True)
    log_path = stack.logs / "prepare.log"
    script = ("import sys, time\n"
              "for line in ['building the local models', 'embedded 1,024 of 10,000 passages', "
              "'embedded 2,048 of 10,000 passages']:\n"
              "    print(line, flush=True); time.sleep(0.4)\n")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out)
        said: list[str] = []
        assert stack._wait_prepare(proc, time.perf_counter(), said.append, every_s=0.1) == 0
    relayed = [x.split(": ", 1)[1] for x in said]
    assert relayed == sorted(set(relayed), key=relayed.index)  # each line once
    assert "embedded 1,024 of 10,000 passages" in relayed
    assert last_line(log_path) == "embedded 2,048 of 10,000 passages" and last_line(tmp_path / "none") is None
