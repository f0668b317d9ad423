"""Fixtures that start real servers; every one stops what it started, also on failure."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tuner.ports import free_port


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="session")
def llm_emulator():
    """The LLM emulator as a subprocess on a free loopback port; yields its /v1 base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "target_app.llm_server.server", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
