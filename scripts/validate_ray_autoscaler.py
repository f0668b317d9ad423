"""Validate the simulator's Ray autoscaler against the real one (Ray's fake multi-node provider).

The command line of `tuner.validation.ray_autoscaler` (see its docstring for the method): a
burst of actors on a real Ray head with the autoscaler v2 over the fake multi-node provider,
the same burst on the simulator calibrated from it, and the comparison. JSON to --out, a PNG
next to it, the Ray logs in <out>-logs/. `--from-json` redoes the model side from an earlier
output. The cluster is stopped in a `finally` (also on Ctrl-C or SIGTERM) by killing, by PID,
the processes it started.

    python scripts/validate_ray_autoscaler.py [--actors 6] [--hold-s 30] [--idle-timeout-s 15]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

# Run as `python scripts/validate_ray_autoscaler.py`: the repository is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.paths import REPO  # noqa: E402
from tuner.validation.ray_autoscaler.run import run_command  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=6, help="actors in the burst")
    ap.add_argument("--actor-cpus", type=float, default=1.0)
    ap.add_argument("--node-cpus", type=float, default=2.0, help="CPUs of one worker node (logical)")
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--hold-s", type=float, default=30.0, help="the burst's actors are killed at this time")
    ap.add_argument("--idle-timeout-s", type=float, default=15.0)
    ap.add_argument("--loop-s", type=int, default=5, help="AUTOSCALER_UPDATE_INTERVAL_S for the real autoscaler")
    ap.add_argument("--pod-start-s", type=float, default=None, help="default: measured in the real run")
    ap.add_argument("--infeasible-actors", type=int, default=0,
                    help="also this many actors no node type fits, pending from t=0 to the end")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "validate-ray-autoscaler.json")
    ap.add_argument("--temp-dir", default=None,
                    help="Ray's temp dir for the cluster (keep it short: unix socket paths); "
                         "default a new /tmp/rvas-*; removed at the end")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="redo the model side and the comparison from an earlier output's real run (no Ray)")
    args = ap.parse_args(argv)

    def on_term(signum, frame):  # SystemExit unwinds through the cluster's `finally`
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    return run_command(args.out, from_json=args.from_json, pod_start_s=args.pod_start_s, temp_dir=args.temp_dir,
                       n_actors=args.actors, actor_cpus=args.actor_cpus, node_cpus=args.node_cpus,
                       max_workers=args.max_workers, hold_s=args.hold_s, idle_timeout_s=args.idle_timeout_s,
                       loop_s=args.loop_s, infeasible=args.infeasible_actors)


if __name__ == "__main__":
    raise SystemExit(main())
