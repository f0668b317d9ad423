"""Starting and stopping the processes the harness owns, by recorded PID.

A record keeps each PID with its start time, so a PID reused by an unrelated process
is never signalled. The start time is counted from boot, not read off the wall clock:
psutil's `create_time()` adds /proc/stat's `btime`, which the kernel derives from the
wall clock and which steps by a whole second whenever NTP slews it across a boundary
(measured here: 5.5 ms a second). Against wall time, every process of a stack that had
run a few minutes looked dead and the stack "stopped". Stopping takes the recorded
process and its descendants, and nothing else.

`terminate` is the one place that signals processes to stop them (SIGTERM, then SIGKILL):
the stack (`stop`) and the Ray autoscaler validation's fake cluster
(`tuner.validation.ray_autoscaler.fake_cluster`) both end their processes through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    """One process we started: enough to find it again and to be sure it is ours."""

    name: str
    pid: int
    started_after_boot_s: float
    argv: list[str]
    log: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProcessRecord":
        d = dict(d)
        if "create_time" in d:  # a stack started by an earlier version: its wall-clock start, now
            d["started_after_boot_s"] = d.pop("create_time") - psutil.boot_time()
        return cls(**d)

    @classmethod
    def of(cls, p: psutil.Process, name: str, log: str = "") -> "ProcessRecord":
        """The record of a running process found rather than spawned (e.g. a child of one we
        spawned); raises psutil.Error if it is gone."""
        return cls(name, p.pid, started_after_boot_s(p), p.cmdline(), log)

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or its PID now belongs to another process."""
        try:
            p = psutil.Process(self.pid)
            if abs(started_after_boot_s(p) - self.started_after_boot_s) > 0.01 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def started_after_boot_s(p: psutil.Process) -> float:
    """When `p` started, in seconds after boot: immune to wall-clock steps.

    The two reads share one `btime` unless it stepped between them, which shows as a
    whole-second jump; the second try then reads a settled value."""
    for _ in range(2):
        first = psutil.boot_time()
        t = psutil.Process(p.pid).create_time() - psutil.boot_time()
        if psutil.boot_time() == first:
            return t
    return t


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> ProcessRecord:
    """Start `argv` in its own session with output to `log`; returns its record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    return ProcessRecord(name, proc.pid, started_after_boot_s(psutil.Process(proc.pid)), list(argv), str(log))


def descendants(records: list[ProcessRecord]) -> list[ProcessRecord]:
    """Records of the live descendants of `records` (e.g. Ray's raylet and workers)."""
    out = []
    for rec in records:
        p = rec.process()
        if p is None:
            continue
        try:
            children = p.children(recursive=True)
        except psutil.Error:
            continue
        for child in children:
            try:
                out.append(ProcessRecord.of(child, f"{rec.name}/child", rec.log))
            except psutil.Error:
                pass
    return out


def naming(text: str, name: str = "found") -> list[ProcessRecord]:
    """Records of the live processes whose command line contains `text` (e.g. a private temp
    dir only our processes are given), and of their descendants; never this process or its
    parents (e.g. `timeout ... --temp-dir X` around us), never a zombie."""
    me = psutil.Process()
    mine = {me.pid, *(a.pid for a in me.parents())}
    found: dict[int, ProcessRecord] = {}
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["pid"] in mine or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if text in " ".join(p.info["cmdline"] or []):
                found.setdefault(p.pid, ProcessRecord.of(p, name))
                for c in p.children(recursive=True):
                    try:
                        if c.pid not in mine and c.status() != psutil.STATUS_ZOMBIE:
                            found.setdefault(c.pid, ProcessRecord.of(c, f"{name}/child"))
                    except psutil.Error:
                        pass
        except psutil.Error:
            pass
    return list(found.values())


def stop(records: list[ProcessRecord], timeout_s: float = 10.0) -> list[ProcessRecord]:
    """SIGTERM each recorded process and its descendants, SIGKILL what outlives `timeout_s`.

    Returns the records that were still alive and got signalled.
    """
    return terminate([*records, *descendants(records)], timeout_s)


def terminate(records: list[ProcessRecord], timeout_s: float = 10.0, kill_wait_s: float = 5.0) -> list[ProcessRecord]:
    """SIGTERM each recorded process that is still the one recorded (same PID, same start
    after boot; a record whose PID now belongs to another process is skipped), SIGKILL those
    alive after `timeout_s`, then wait up to `kill_wait_s` for them to go. Only the recorded
    processes are signalled, not their children.

    Returns the records that were still alive and got signalled.
    """
    live: dict[int, tuple[ProcessRecord, psutil.Process]] = {}
    for r in records:
        p = r.process()
        if p is not None:
            live.setdefault(p.pid, (r, p))
    for _, p in live.values():
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    procs = [p for _, p in live.values()]
    _, still = psutil.wait_procs(procs, timeout=max(0.0, deadline - time.monotonic()))
    for p in still:
        _signal(p, signal.SIGKILL)
    psutil.wait_procs(still, timeout=kill_wait_s)
    return [r for r, _ in live.values()]


def _signal(p: psutil.Process, sig: int) -> None:
    try:
        p.send_signal(sig)
    except psutil.Error:
        pass


def group_of(p: psutil.Process) -> str:
    """A process's group: Ray's actors by their title, the stack's services by their program."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "gone"
    head = cmd[0] if cmd else p.name()
    if head.startswith("ray::ServeReplica:"):
        return head.removeprefix("ray::ServeReplica:").split(":")[-1]
    if head.startswith("ray::"):  # an actor's title carries the method it runs: one group per actor
        return head.split()[0].split(".")[0]
    joined = " ".join(cmd)
    for key, name in (("milvus_lite", "Milvus Lite"), ("llm_server", "LLM emulator"), ("prometheus", "Prometheus"),
                      ("gcs_server", "Ray GCS"), ("raylet", "raylet"), ("dashboard", "Ray dashboard"),
                      ("locust", "load generator"), ("log_monitor", "Ray log monitor"),
                      ("runtime_env", "Ray runtime env agent")):
        if key in joined:
            return name
    return Path(head).name
