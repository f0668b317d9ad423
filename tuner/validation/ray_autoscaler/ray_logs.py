"""What the real cluster's own logs say, as events in seconds from the burst: the autoscaler's
decisions and iterations (monitor.log), the GCS's node registrations and deaths
(gcs_server.out), and the worker-node count those give. The parsers take the log's text (pure);
the `*_log` wrappers read the file.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from tuner.validation.ray_autoscaler.fake_cluster import FAKE_HEAD_NODE_ID

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\s+\w+\s+\S+ -- (.*)$")
_GCS_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w .*?\] \(gcs_server\) (\S+): (.*)$")


def _stamp(text: str, t0: float) -> float:
    return round(datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp() - t0, 3)


def monitor_events(text: str, t0: float) -> list[dict]:
    """From monitor.log's text, in seconds from t0 (unix time): the autoscaler's launch and
    idle-termination decisions, the provider's launches, the drains, and each iteration's start
    (best effort: every iteration re-reads the config, and for an "external" provider it warns
    about the empty legacy field head_node that Ray's own default adds)."""
    out = []
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        msg, t = m.group(2), _stamp(m.group(1), t0)
        if a := re.match(r"Adding (\d+) node\(s\) of type (\S+)\.", msg):
            out.append({"t": t, "kind": "add", "count": int(a.group(1)), "type": a.group(2)})
        elif r := re.match(r"Removing (\d+) nodes of type (\S+) \((\w+)\)\.", msg):
            out.append({"t": t, "kind": "remove", "count": int(r.group(1)), "type": r.group(2), "cause": r.group(3)})
        elif d := re.match(r"Drained ray on (\w+)\(success=(\w+)", msg):
            out.append({"t": t, "kind": "drained", "node": d.group(1), "accepted": d.group(2) == "True"})
        elif lz := re.match(r"Launched (\d+) nodes of type (\S+)\.", msg):
            out.append({"t": t, "kind": "launched", "count": int(lz.group(1)), "type": lz.group(2)})
        elif msg.startswith("Dropping the empty legacy field head_node"):
            out.append({"t": t, "kind": "iteration"})
    return out


def gcs_events(text: str, t0: float) -> dict[str, dict[str, float]]:
    """From gcs_server.out's text: the exact times (from t0) the GCS registered each node and
    marked it dead."""
    out: dict[str, dict[str, float]] = {"registered": {}, "dead": {}}
    for line in text.splitlines():
        m = _GCS_LINE.match(line)
        if not m or "gcs_node_manager" not in m.group(2):
            continue
        msg = m.group(3)
        nid = re.search(r"node_id=(\w+)", msg)
        if not nid:
            continue
        if msg.startswith("Registering new node"):
            out["registered"].setdefault(nid.group(1), _stamp(m.group(1), t0))
        elif re.search(r"dead|Removing node|unregister", msg, re.I):
            out["dead"].setdefault(nid.group(1), _stamp(m.group(1), t0))
    return out


def autoscaler_events(monitor_log: Path | None, t0: float) -> list[dict]:
    """`monitor_events` of the file (none if it is missing)."""
    if monitor_log is None or not monitor_log.exists():
        return []
    return monitor_events(monitor_log.read_text(errors="replace"), t0)


def gcs_node_events(gcs_log: Path | None, t0: float) -> dict[str, dict[str, float]]:
    """`gcs_events` of the file (none if it is missing)."""
    if gcs_log is None or not gcs_log.exists():
        return {"registered": {}, "dead": {}}
    return gcs_events(gcs_log.read_text(errors="replace"), t0)


def gcs_series(real: dict) -> list[list[float]]:
    """The real worker-node count from the GCS's own registration and death times (exact, where the
    poll is 0.5 s coarse); head excluded. `real` is what `real_burst.run_burst` returned."""
    steps = [(t, +1) for nid, t in real["gcs"]["registered"].items() if nid != FAKE_HEAD_NODE_ID]
    steps += [(t, -1) for nid, t in real["gcs"]["dead"].items() if nid != FAKE_HEAD_NODE_ID]
    series, n = [[real["samples"][0][0], 0]], 0
    for t, d in sorted(steps):
        n += d
        if series[-1][0] == t:
            series[-1][1] = n
        else:
            series.append([t, n])
    return series
