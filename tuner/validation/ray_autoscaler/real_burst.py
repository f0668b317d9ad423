"""The burst on the real cluster, recorded: N actors created at t=0 and killed at `hold_s`, the
alive worker nodes (`ray.nodes()`) and the GCS's pending demand polled every 0.5 s until the
nodes are gone, then the autoscaler's and the GCS's log events."""

from __future__ import annotations

import os
import time

from tuner.validation.ray_autoscaler.fake_cluster import FakeAutoscalingCluster
from tuner.validation.ray_autoscaler.ray_logs import autoscaler_events, gcs_node_events
from tuner.validation.ray_autoscaler.timelines import GRID_S


def run_burst(cluster: FakeAutoscalingCluster, n_actors: int, actor_cpus: float, hold_s: float,
              max_wait_after_release_s: float, infeasible: int = 0, pre_s: float = 2.0, log=print) -> dict:
    """The burst on the real cluster; the alive-worker-node timeline polled every 0.5 s.
    `infeasible` more actors, each asking for more CPU than a node has, wait from t=0 to the end."""
    import ray

    cluster.connect()

    @ray.remote
    class Replica:
        def ping(self) -> int:
            return os.getpid()

    from ray._raylet import GcsClient
    from ray.autoscaler.v2.sdk import get_cluster_resource_state

    gcs = GcsClient(address=cluster.gcs_address)

    def pending_demand() -> int:
        """Bundles waiting for room, as the autoscaler reads them from the GCS."""
        try:
            state = get_cluster_resource_state(gcs)
            return int(sum(r.count for r in state.pending_resource_requests))
        except Exception:
            return -1

    def poll() -> tuple[int, dict]:
        alive = {}
        for n in ray.nodes():
            if n.get("Alive") and "node:__internal_head__" not in n.get("Resources", {}):
                alive[n["NodeID"]] = n
        return len(alive), alive

    samples: list[list[float]] = []
    demand: list[list[float]] = []
    joined: dict[str, float] = {}
    left: dict[str, float] = {}
    ready: list[float | None] = [None] * n_actors
    t_wall0 = time.time() + pre_s
    t0 = t_wall0
    actors, refs, stuck, released_at = [], [], [], None
    k = -int(round(pre_s / GRID_S))
    while True:
        target = t_wall0 + k * GRID_S
        delay = target - time.time()
        if delay > 0:
            time.sleep(delay)
        if k == 0:  # the burst
            t0 = time.time()
            actors = [Replica.options(num_cpus=actor_cpus).remote() for _ in range(n_actors)]
            refs = [a.ping.remote() for a in actors]
            stuck = [Replica.options(num_cpus=cluster.worker_resources["CPU"] + 1).remote() for _ in range(infeasible)]
        t = time.time() - t0
        n, alive = poll()
        samples.append([round(t, 3), n])
        demand.append([round(t, 3), pending_demand()])
        for nid in alive:
            joined.setdefault(nid, round(t, 3))
        for nid in list(joined):
            if nid not in alive and nid not in left:
                left[nid] = round(t, 3)
        if refs and released_at is None:  # killed actors' refs resolve too (with errors)
            pending = [i for i, r in enumerate(ready) if r is None]
            if pending:
                done, _ = ray.wait([refs[i] for i in pending], num_returns=len(pending), timeout=0)
                done = set(done)
                for i in pending:
                    if refs[i] in done:
                        ready[i] = round(t, 3)
        if released_at is None and t >= hold_s - GRID_S / 2:
            for a in actors:
                ray.kill(a)
            released_at = round(time.time() - t0, 3)
            log(f"  t={released_at:6.1f}s released {n_actors} actors")
        if k % 10 == 0:
            cluster.remember()
            log(f"  t={t:6.1f}s alive worker nodes={n} ready actors={sum(r is not None for r in ready)}")
        if released_at is not None and (
                (n == 0 and t >= released_at + cluster.idle_timeout_s and len(left) >= len(joined) and
                 t >= max(left.values(), default=0) + 2.0)
                or t >= released_at + max_wait_after_release_s):
            break
        k += 1
    for a in stuck:
        ray.kill(a)
    ray.shutdown()
    logs = cluster.session_logs()
    events = autoscaler_events(logs / "monitor.log" if logs else None, t0)
    return {"t0_unix": t0, "samples": samples, "pending_demand": demand, "released_at": released_at,
            "joined": joined, "left": left, "actor_ready": ready, "events": events,
            "gcs": gcs_node_events(logs / "gcs_server.out" if logs else None, t0)}
