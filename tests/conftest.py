"""Shared fixtures: the built models (once per session) and process-leak checks."""

from __future__ import annotations

import os
import re
import time
import uuid

import psutil
import pytest

SESSION_ENV = "TUNER_TEST_SESSION"  # inherited by every process a test starts, and its children
OUR_PROCESS = re.compile(r"raylet|gcs_server|ray::|ray start|prometheus|milvus_lite|llm_server|dashboard|locust|echo_server", re.I)


@pytest.fixture(scope="session")
def built_models():
    """The app's local models, built if missing (takes about 90 s on a fresh machine)."""
    from target_app.models.build import build_all

    return build_all()


def our_processes(exclude: set[int], session: str | None = None) -> list[str]:
    """Live processes of the stack's kinds, other than those in `exclude` (pids), started under
    `session` (default: this test session; another pytest run's, such as the fast tests that
    `scripts/test.sh` runs beside the end-to-end ones, are not ours)."""
    session = session or os.environ.get(SESSION_ENV)
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["pid"] in exclude or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if OUR_PROCESS.search(cmd) and (session is None or p.environ().get(SESSION_ENV) == session):
                found.append(f"{p.info['pid']}: {cmd[:120]}")
        except psutil.Error:
            pass
    return found


def listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(command, address, port) of every socket `processes` listen on."""
    out = []
    for p in processes:
        try:
            name = (p.cmdline() or [p.name()])[0]
            out += [(name, c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return out


def beyond_loopback(sockets: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The sockets not on loopback other than Ray's core gRPC servers (GCS, raylet, workers),
    which listen on every interface in this Ray version whatever is set (token authentication
    makes them refuse strangers)."""
    import ipaddress

    outward = [(n, ip, port) for n, ip, port in sockets if not ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback]
    return [(n, ip, port) for n, ip, port in outward
            if not (ip in ("0.0.0.0", "::") and (n.endswith(("gcs_server", "raylet")) or n.startswith("ray::")))]


def pid_snapshot() -> set[int]:
    """The pids alive now."""
    return set(psutil.pids())


def wait_gone(before: set[int], timeout_s: float, session: str | None = None) -> list[str]:
    """`our_processes(before, session)` once it is empty, or what is still there after
    `timeout_s` (Ray's daemons take a few seconds to exit after a shutdown)."""
    deadline = time.monotonic() + timeout_s
    while (left := our_processes(before, session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """After the whole session (every other fixture torn down, failures included), no process
    of the stack's kinds that started during it may still run: fail, naming them, and stop them."""
    session = os.environ.setdefault(SESSION_ENV, uuid.uuid4().hex)
    before = pid_snapshot()
    yield
    left = wait_gone(before, 30, session)
    if left:
        for line in left:
            try:
                psutil.Process(int(line.split(":")[0])).kill()
            except psutil.Error:
                pass
        pytest.fail("processes left behind by the tests (now killed):\n" + "\n".join(left), pytrace=False)
