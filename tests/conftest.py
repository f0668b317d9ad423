"""Shared fixtures: the built models (once per session) and process-leak checks."""

from __future__ import annotations

import re

import psutil
import pytest

OUR_PROCESS = re.compile(r"raylet|gcs_server|ray::|ray start|prometheus|milvus_lite|llm_server|dashboard|locust|echo_server", re.I)


@pytest.fixture(scope="session")
def built_models():
    """The app's local models, built if missing (takes about 90 s on a fresh machine)."""
    from target_app.models.build import build_all

    return build_all()


def our_processes(exclude: set[int]) -> list[str]:
    """Live processes of the stack's kinds, other than those in `exclude` (pids)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["pid"] in exclude or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if OUR_PROCESS.search(cmd):
                found.append(f"{p.info['pid']}: {cmd[:120]}")
        except psutil.Error:
            pass
    return found


def pid_snapshot() -> set[int]:
    """The pids alive now."""
    return set(psutil.pids())
