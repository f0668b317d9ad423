"""Performing a trial's faults on the local stack (the edge of tuner/faults.py), and a thread that
waits for each fault's start and injects it, recording when it really happened.

LLM faults go to the emulator's `/admin/fault` (which clears them itself after the duration);
a replica or the Serve controller is killed by signalling its process (SIGKILL, as a crash);
Prometheus is restarted by the stack."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil

from tuner import deploy
from tuner.faults import Fault
from tuner.names import deployment_key

_LLM_MODES = {"llm-outage": "refuse", "llm-errors": "error", "llm-hang": "hang", "llm-slow": "slow"}


def _llm_body(f: Fault) -> dict:
    body = {"mode": _LLM_MODES[f.kind], "duration_s": f.duration_s}
    if f.kind == "llm-errors":
        body |= {"status_code": int(f.options["status"]), "error_rate": float(f.options["rate"])}
    if f.kind == "llm-slow":
        body["slow_factor"] = float(f.options["factor"])
    return body


def _replica_pid(stack, deployment: str) -> tuple[str, int]:
    details = deploy.serve_details(stack.dashboard_url, stack.dashboard_headers())
    for app_name, app in (details.get("applications") or {}).items():
        dep = (app.get("deployments") or {}).get(deployment)
        for r in (dep or {}).get("replicas") or []:
            if r.get("state") == "RUNNING" and r.get("pid"):
                return f"{deployment_key(app_name, deployment)} replica {r.get('replica_id')}", int(r["pid"])
    raise RuntimeError(f"no running replica of {deployment}")


def _controller_pid(stack) -> int:
    ray = next(r for r in stack.records() if r.name == "ray")
    for p in psutil.Process(ray.pid).children(recursive=True):
        try:
            if p.cmdline() and p.cmdline()[0].startswith("ray::ServeController"):
                return p.pid
        except psutil.Error:
            continue
    raise RuntimeError("the Serve controller's process was not found")


def inject(stack, f: Fault) -> str:
    """Perform one fault now; a line saying what was done."""
    if f.kind in _LLM_MODES:
        httpx.post(f"{stack.llm_url}/admin/fault", json=_llm_body(f), timeout=10).raise_for_status()
        return f"LLM emulator: {_llm_body(f)}"
    if f.kind == "kill-replica":
        what, pid = _replica_pid(stack, str(f.options["deployment"]))
        os.kill(pid, signal.SIGKILL)
        return f"killed {what} (pid {pid})"
    if f.kind == "kill-controller":
        pid = _controller_pid(stack)
        os.kill(pid, signal.SIGKILL)
        return f"killed the Serve controller (pid {pid})"
    stack.restart_prometheus(down_s=f.duration_s or 0.0)
    return "Prometheus restarted" + (f" after {f.duration_s:g} s down" if f.duration_s else "")


def epoch_in(folder: Path) -> float | None:
    """The load window's start as the generator published it in its run folder (loadgen's
    `epoch` file), once it has."""
    for path in sorted(folder.glob("*/epoch")):
        try:
            return float(path.read_text())
        except ValueError:
            return None
    return None


class Injector:
    """Injects `faults` through the system under test (`SystemUnderTest.inject`) at their start
    times in the load window, whose start `epoch()` gives once the generator has chosen it;
    `events` records each one, with its real time or error."""

    def __init__(self, system, faults: list[Fault], epoch: Callable[[], float | None]):
        self.system, self.faults, self.epoch = system, sorted(faults, key=lambda f: f.start_s), epoch
        self.events: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)

    def __enter__(self) -> "Injector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        t0 = None
        while self.faults and t0 is None and not self._stop.wait(0.05):
            t0 = self.epoch()
        for f in self.faults:
            if t0 is None or self._stop.wait(max(0.0, t0 + f.start_s - time.time())):
                self.events.append({"spec": f.spec, "injected_at": None, "error": "the load ended first"})
                continue
            at = time.time()
            try:
                self.events.append({"spec": f.spec, "injected_at": at, "done": self.system.inject(f)})
            except Exception as e:  # noqa: BLE001 - a fault that could not be injected is recorded, not fatal
                self.events.append({"spec": f.spec, "injected_at": at, "error": f"{type(e).__name__}: {e}"})
