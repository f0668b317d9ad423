"""Faults a trial injects into the system under test (`tuner run --fault SPEC`), and what each
did to the requests (pure: the grammar and the effect; tuner/inject.py performs them).

    KIND@START[+DURATION][:key=value,...]      e.g. llm-outage@30s+20s, kill-replica@20s:deployment=Reranker

START and DURATION are seconds into the load window (`30s`, `1.5m`). Kinds:

- `llm-outage`: the LLM backend refuses connections (its port closes) for DURATION;
- `llm-errors`: it answers with errors (`status=500`, `rate=1.0`) for DURATION;
- `llm-hang`: it accepts requests but produces no tokens for DURATION;
- `llm-slow`: every step takes `factor=3` times longer for DURATION;
- `kill-replica`: one replica of `deployment=NAME` dies (its process is killed, as Ray loses
  a replica when its worker crashes); Serve replaces it;
- `kill-controller`: the Serve controller's process dies; Ray restarts it;
- `prometheus-restart`: the stack's Prometheus is stopped and started again, after staying
  down for DURATION if one is given (a crash-looping or rescheduled Prometheus).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tuner.errors import UsageError

Kind = Literal["llm-outage", "llm-errors", "llm-hang", "llm-slow", "kill-replica", "kill-controller", "prometheus-restart"]
Duration = Literal["required", "optional", "none"]
# kind -> (its duration, allowed options with their defaults)
KINDS: dict[str, tuple[Duration, dict[str, str | float | None]]] = {
    "llm-outage": ("required", {}),
    "llm-errors": ("required", {"status": 500.0, "rate": 1.0}),
    "llm-hang": ("required", {}),
    "llm-slow": ("required", {"factor": 3.0}),
    "kill-replica": ("none", {"deployment": None}),
    "kill-controller": ("none", {}),
    "prometheus-restart": ("optional", {}),
}
_SPEC = re.compile(r"^(?P<kind>[a-z-]+)@(?P<start>[0-9.]+[sm]?)(?:\+(?P<dur>[0-9.]+[sm]?))?(?::(?P<opts>.+))?$")
_UNITS = {"s": 1.0, "m": 60.0, "": 1.0}


class Fault(BaseModel):
    """One fault: when it starts and how long it lasts, in seconds of the load window."""

    model_config = ConfigDict(frozen=True)

    spec: str
    kind: Kind
    start_s: float = Field(ge=0)
    duration_s: float | None = Field(None, gt=0)
    options: dict[str, str | float] = Field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.start_s + (self.duration_s or 0.0)


def _seconds(text: str, spec: str, what: str) -> float:
    unit = text[-1] if text[-1] in "sm" else ""
    try:
        return float(text[: len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise UsageError(f"--fault {spec!r}: {what} {text!r} is not a time like 30s or 1.5m") from None


def parse_fault(spec: str, duration_s: float) -> Fault:
    """A --fault SPEC, checked against the trial's load window of `duration_s` seconds."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise UsageError(f"--fault {spec!r}: expected KIND@START[+DURATION][:key=value,...], e.g. llm-outage@30s+20s")
    kind = m["kind"]
    if kind not in KINDS:
        raise UsageError(f"--fault {spec!r}: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    duration, allowed = KINDS[kind]
    start = _seconds(m["start"], spec, "start")
    dur = _seconds(m["dur"], spec, "duration") if m["dur"] else None
    if duration == "required" and not dur:
        raise UsageError(f"--fault {spec!r}: {kind} needs a duration, e.g. {kind}@{m['start']}+20s")
    if duration == "none" and dur:
        raise UsageError(f"--fault {spec!r}: {kind} is instantaneous; drop +{m['dur']}")
    if start >= duration_s:
        raise UsageError(f"--fault {spec!r}: starts at {start:g} s, after the {duration_s:g} s load window")
    options: dict[str, str | float] = {}
    for item in filter(None, (m["opts"] or "").split(",")):
        key, sep, value = item.partition("=")
        if sep and key in allowed and not value:
            raise UsageError(f"--fault {spec!r}: option {key}= has no value")
        if not sep or key not in allowed:
            raise UsageError(f"--fault {spec!r}: option {item!r} is not one of "
                             f"{', '.join(f'{k}=' for k in allowed) or 'none (this kind takes no options)'}")
        options[key] = value if allowed[key] is None or isinstance(allowed[key], str) else _number(value, spec, key)
    for key, default in allowed.items():
        if key not in options:
            if default is None:
                raise UsageError(f"--fault {spec!r}: {kind} needs {key}=...")
            options[key] = default
    if kind == "llm-errors" and not (400 <= options["status"] <= 599 and 0 < options["rate"] <= 1):
        raise UsageError(f"--fault {spec!r}: status must be 400-599 and rate in (0, 1]")
    if kind == "llm-slow" and options["factor"] < 1:
        raise UsageError(f"--fault {spec!r}: factor must be >= 1")
    return Fault(spec=spec, kind=kind, start_s=start, duration_s=dur, options=options)


def _number(value: str, spec: str, key: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"--fault {spec!r}: {key}={value!r} is not a number") from None


def effect(t: np.ndarray, t_end: np.ndarray, failed: np.ndarray, degraded: np.ndarray, latency_ms: np.ndarray,
           fault_start: float, fault_end: float, window_end: float, bin_s: float = 5.0) -> dict:
    """What a fault did to the requests around it (`t` sent, `t_end` answered: seconds of the
    load window): failures, degraded answers and p99 of those answered before it began, those in
    flight or sent while it lasted, and those sent after it; and the recovery time: from the
    fault's end until the first `bin_s` bin of sends from which no bin has a failure or a
    degraded answer again (None if that never came within the window), and the latency
    recovery time: likewise until no bin's p90 latency exceeds twice the p99 of before (a killed
    replica often fails nothing, but its route's requests wait for the replacement; a p90
    sees one route of three slowed, where a single slow request would not count; twice, because
    a p99 of the few requests before a fault is itself noisy)."""
    def part(mask):
        n = int(mask.sum())
        lat = latency_ms[mask & ~failed]
        return {"requests": n, "failed": int((failed & mask).sum()), "degraded": int((degraded & mask).sum()),
                "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}

    end = np.where(np.isfinite(t_end), t_end, t)
    before = end < fault_start
    after = t >= max(fault_end, fault_start + bin_s)
    during = ~before & ~after
    hurt = failed | degraded
    later = t >= fault_end
    keys = np.floor((t[later] - fault_end) / bin_s)
    recovery = _recovery(pd.Series(hurt[later], index=keys).groupby(level=0).sum() > 0, fault_end, window_end, bin_s)
    ok_before = latency_ms[before & ~failed]
    slow = None
    if len(ok_before) >= 5:
        p90 = pd.Series(np.where(failed[later], np.nan, latency_ms[later]), index=keys).groupby(level=0).quantile(0.9)
        slow = _recovery(p90 > 2 * np.percentile(ok_before, 99), fault_end, window_end, bin_s)
    return {"before": part(before), "during": part(during), "after": part(after), "recovery_s": recovery,
            "latency_recovery_s": slow}


def _recovery(bad: pd.Series, fault_end: float, window_end: float, bin_s: float) -> float | None:
    """Seconds from the fault's end to the start of the first bin after the last bad one (None
    when no bin came after the fault, or the bad bins lasted to the window's end)."""
    if not len(bad):
        return None
    last_bad = bad.index[bad.to_numpy(dtype=bool)].max() if bad.any() else -1
    recovered_at = fault_end + (last_bad + 1) * bin_s
    return recovered_at - fault_end if recovered_at < window_end else None
