"""The leak check every session ends with (tests/conftest.py) sees a process of ours."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import SESSION_ENV, pid_snapshot, wait_gone


def test_the_leftover_check_sees_a_live_process_of_ours_and_not_a_stopped_one():
    before, session = pid_snapshot(), os.environ[SESSION_ENV]
    sleep = [sys.executable, "-c", "import time; time.sleep(60)", "echo_server"]
    p = subprocess.Popen(sleep)
    other = subprocess.Popen(sleep, env={**os.environ, SESSION_ENV: "another-run"})
    try:
        left = wait_gone(before, 1, session)
        assert [x for x in left if x.startswith(f"{p.pid}:")] and not [x for x in left if x.startswith(f"{other.pid}:")]
    finally:
        for x in (p, other):
            x.kill()
            x.wait()
    assert wait_gone(before, 5, session) == []
