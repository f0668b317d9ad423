"""tuner.processes' kill-by-PID helper (`terminate`) and finding processes by command line
(`naming`): only recorded processes that are still the ones recorded are signalled."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psutil

from tuner.processes import ProcessRecord, naming, spawn, stop, terminate

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
TREE = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        " time.sleep(60)")


def _wait_children(pid: int, n: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while len(kids := psutil.Process(pid).children(recursive=True)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return kids


def test_terminate_signals_the_records_only_not_their_children(tmp_path):
    rec = spawn("tree", [sys.executable, "-c", TREE], tmp_path / "tree.log")
    child = ProcessRecord.of(_wait_children(rec.pid, 1)[0], "tree/child")
    try:
        assert [r.pid for r in terminate([rec], timeout_s=5)] == [rec.pid]
        assert not rec.alive() and child.alive()
    finally:
        stop([rec, child])
    assert not child.alive()


def test_terminate_skips_a_record_whose_pid_is_another_process_now(tmp_path):
    rec = spawn("sleeper", SLEEP, tmp_path / "s.log")
    impostor = ProcessRecord(rec.name, rec.pid, rec.started_after_boot_s - 50, rec.argv, rec.log)
    try:
        assert terminate([impostor], timeout_s=1) == []
        assert rec.alive()
        # a stale and a live record of one PID: the live one is signalled, once
        assert terminate([impostor, rec, rec], timeout_s=5) == [rec]
        assert not rec.alive()
    finally:
        stop([rec])


def test_terminate_kills_what_ignores_sigterm(tmp_path):
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      "print('ready', flush=True); time.sleep(60)"]
    rec = spawn("stubborn", stubborn, tmp_path / "s.log")
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "s.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert terminate([rec], timeout_s=0.5) == [rec]
    assert 0.4 < time.monotonic() - started < 5 and not rec.alive()


def test_naming_finds_processes_by_command_line_with_their_descendants_never_this_one():
    tag = f"tag-{uuid.uuid4().hex}"
    parent = subprocess.Popen([sys.executable, "-c", TREE, tag])
    other = subprocess.Popen(SLEEP)
    try:
        child = _wait_children(parent.pid, 1)[0]
        found = naming(tag, "tagged")
        assert {r.pid for r in found} == {parent.pid, child.pid}
        assert {r.name for r in found} == {"tagged", "tagged/child"}
        assert all(r.alive() for r in found)
        assert naming(f"tag-{uuid.uuid4().hex}") == []
        assert psutil.Process().pid not in {r.pid for r in naming(sys.executable)}
        assert {r.pid for r in terminate(found, timeout_s=5)} == {parent.pid, child.pid}
        assert parent.wait(5) is not None and naming(tag) == []
        assert other.poll() is None
    finally:
        for p in (parent, other):
            p.kill()
            p.wait(5)
