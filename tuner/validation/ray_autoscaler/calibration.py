"""What the model is calibrated with, read off a real run (`real_burst.run_burst`'s dict): each
node's launch-to-join delay (pod start), and the real autoscaler's iteration and decision
times. Pure."""

from __future__ import annotations

import math

from tuner.validation.ray_autoscaler.timelines import GRID_S


def measured_pod_start(real: dict) -> dict:
    """Each worker node's delay from the autoscaler's 'Adding N node(s)' decision that launched it to
    its joining the cluster (the GCS's registration time; the first poll seeing it alive if the GCS
    log has no line), matching nodes to launch decisions in join order. The calibrated value is the
    median: the single shared delay with the least integrated |node-count error| over the ramp."""
    adds = [e for e in real["events"] if e["kind"] == "add"]
    slots = [e["t"] for e in adds for _ in range(e["count"])]
    reg = real["gcs"]["registered"]
    joins = sorted(reg.get(nid, t) for nid, t in real["joined"].items())
    delays = [round(j - a, 3) for a, j in zip(slots, joins)]
    srt = sorted(delays)
    median = None
    if srt:
        mid = len(srt) // 2
        median = srt[mid] if len(srt) % 2 else round((srt[mid - 1] + srt[mid]) / 2, 3)
    return {"launch_times": slots, "join_times": joins, "delays": delays, "median": median,
            "mean": round(sum(delays) / len(delays), 3) if delays else None,
            "min": min(delays, default=None), "max": max(delays, default=None),
            "source": "gcs_server.out registration" if reg else f"first poll alive ({GRID_S} s resolution)"}


def decision_times(events: list[dict]) -> list[float]:
    """When each real iteration decided: its start, or, where it logged a launch or removal, that
    moment (an iteration can block for seconds on the fake provider's lock before it decides)."""
    its = iteration_starts(events)
    acts = [e["t"] for e in events if e["kind"] in ("add", "remove")]
    out = []
    for i, t in enumerate(its):
        nxt = its[i + 1] if i + 1 < len(its) else math.inf
        out.append(min((a for a in acts if t <= a < nxt), default=t))
    return out


def iteration_starts(events: list[dict]) -> list[float]:
    """Iteration starts; the monitor reads the config twice as it starts, so of marks under 1 s
    apart the later one counts."""
    its = [e["t"] for e in events if e["kind"] == "iteration"]
    return [t for i, t in enumerate(its) if i + 1 == len(its) or its[i + 1] - t >= 1.0]


def iteration_periods(events: list[dict]) -> dict:
    its = iteration_starts(events)
    gaps = [round(b - a, 3) for a, b in zip(its, its[1:])]
    return {"starts": its, "periods": gaps,
            "mean_period_s": round(sum(gaps) / len(gaps), 3) if gaps else None,
            "max_period_s": max(gaps, default=None)}
