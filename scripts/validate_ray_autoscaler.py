"""Validate the simulator's Ray autoscaler against the real one (Ray's fake multi-node provider).

A real Ray head with the real autoscaler v2 (as KubeRay runs it: `RAY_enable_autoscaler_v2`,
`upscaling_speed` 1000 for upscalingMode Default) and declared worker types, whose "pods" are
extra raylets on this machine. A driver creates N actors of {"CPU": c} at t=0 (a burst of Serve
replicas that fits on no node), keeps them `--hold-s` seconds, then kills them; the number of
alive worker nodes (`ray.nodes()`) is polled every 0.5 s. The same demand then drives the
project's model (`tuner.sim.cluster.Cluster` + `RayAutoscalerLoop`), with the two timings the
model cannot know calibrated from the real run: `loop_s` (AUTOSCALER_UPDATE_INTERVAL_S, which
this script sets for the real autoscaler, 5 s being Ray's default) and `pod_start_s` (measured:
the autoscaler's "Adding N node(s)" log line to the node being alive in the GCS).

The head is started here (not with `AutoscalingCluster.start()`, which runs `ray stop --force`
and so would kill any other Ray on the machine, and whose config template is not in the wheel)
on free ports, with its own --temp-dir; it is stopped in a `finally` by killing the processes
this script started, by pid: the `ray start --block` process, its descendants, and anything
whose command line names the private temp dir.

    python scripts/validate_ray_autoscaler.py [--actors 6] [--hold-s 30] [--idle-timeout-s 15]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tuner.policies.ray_autoscaler import RayAutoscalerConfig, WorkerGroup  # noqa: E402
from tuner.sim.cluster import Cluster, ClusterSpec, RayAutoscalerLoop  # noqa: E402
from tuner.sim.engine import Engine  # noqa: E402

FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # Ray's fake provider
NODE_TYPE = "cpu_node"
FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
GRID_S = 0.5
OBJECT_STORE_BYTES = 100 * 1024**2  # per node; Ray's minimum is 75 MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the real cluster ------------------------------------------------------------------------

class FakeAutoscalingCluster:
    """A Ray head with the real autoscaler v2 over the fake multi-node provider.

    Like `ray.cluster_utils.AutoscalingCluster(..., autoscaler_v2=True)`, but on free ports and a
    private temp dir, and stopped by pid rather than `ray stop --force`."""

    def __init__(self, worker_resources: dict, max_workers: int, idle_timeout_s: float, loop_s: int,
                 upscaling_speed: float = 1000.0, min_workers: int = 0):
        self.worker_resources = dict(worker_resources)
        self.max_workers, self.min_workers = max_workers, min_workers
        self.idle_timeout_s, self.loop_s, self.upscaling_speed = idle_timeout_s, loop_s, upscaling_speed
        self.proc: subprocess.Popen | None = None
        self.temp_dir: str | None = None
        self.gcs_address: str | None = None
        self._seen: dict[int, psutil.Process] = {}

    def config(self, gcs_address: str) -> dict:
        return {
            "cluster_name": "validate_ray_autoscaler",
            "max_workers": self.max_workers,
            # Ray's FakeMultiNodeProvider as an "external" provider: type fake_multinode needs
            # fake_multi_node/example.yaml for its defaults, which the wheel does not ship.
            "provider": {"type": "external", "module": FAKE_PROVIDER, "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "launch_multiple": True,
                         "head_node_id": FAKE_HEAD_NODE_ID, "gcs_address": gcs_address},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                NODE_TYPE: {"resources": {**self.worker_resources, "object_store_memory": OBJECT_STORE_BYTES},
                            "node_config": {}, "min_workers": self.min_workers, "max_workers": self.max_workers},
            },
            "head_node_type": "ray.head.default",
            "auth": {}, "docker": {},
            "upscaling_speed": self.upscaling_speed,
            "idle_timeout_minutes": self.idle_timeout_s / 60.0,
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [],
        }

    def start(self, timeout_s: float = 90.0) -> None:
        import ray

        self.temp_dir = tempfile.mkdtemp(prefix="rvas-", dir="/tmp")  # short: unix socket paths
        ip = ray._private.services.get_node_ip_address()
        port = free_port()
        self.gcs_address = f"{ip}:{port}"
        cfg_path = Path(self.temp_dir) / "autoscaling.json"
        cfg_path.write_text(json.dumps(self.config(self.gcs_address)))
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update({
            "RAY_FAKE_CLUSTER": "1",
            "RAY_enable_autoscaler_v2": "1",
            "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
            "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
            "AUTOSCALER_UPDATE_INTERVAL_S": str(int(self.loop_s)),
            "AUTOSCALER_METRIC_PORT": str(free_port()),
            "RAY_USAGE_STATS_ENABLED": "0",
            **self.auth_env(),
        })
        ray_cli = str(Path(sys.executable).with_name("ray"))
        cmd = [ray_cli, "start", "--head", "--block", f"--autoscaling-config={cfg_path}",
               f"--node-ip-address={ip}", f"--port={port}", "--num-cpus=0",
               f"--object-store-memory={OBJECT_STORE_BYTES}", "--include-dashboard=false",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               "--min-worker-port=0", "--max-worker-port=0", f"--temp-dir={self.temp_dir}",
               "--disable-usage-stats"]
        self.log_path = Path(self.temp_dir) / "ray-start.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self._remember()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            monitor = self.monitor_log()
            if monitor and "Using Autoscaling Config" in monitor.read_text(errors="replace"):
                break
            self._remember()
            time.sleep(0.5)
        else:
            raise TimeoutError(f"the autoscaler did not start in {timeout_s:.0f} s; see {self.log_path}")
        self._remember()

    def auth_env(self) -> dict[str, str]:
        """Token auth with a token of our own (Ray 2.60 turns token auth on by itself when
        ~/.ray/auth_token exists; this cluster neither reads nor writes that file)."""
        token = Path(self.temp_dir) / "auth_token"
        if not token.exists():
            token.touch(mode=0o600)
            token.write_text(secrets.token_hex(32))
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}

    def connect(self) -> None:
        """Connect this process's driver (a fresh process: Ray caches the auth mode and token)."""
        import ray

        os.environ.pop("RAY_ADDRESS", None)
        os.environ.update(self.auth_env())
        ray._raylet.Config.initialize("")  # as ray's own _enable_token_auth does after setting the env
        ray.init(address=self.gcs_address, logging_level="WARNING", log_to_driver=False,
                 configure_logging=False)

    def session_logs(self) -> Path | None:
        if not self.temp_dir:
            return None
        p = Path(self.temp_dir) / "session_latest" / "logs"
        return p if p.exists() else None

    def monitor_log(self) -> Path | None:
        logs = self.session_logs()
        p = logs / "monitor.log" if logs else None
        return p if p and p.exists() else None

    def _ours(self) -> list[psutil.Process]:
        """The processes this cluster consists of: `ray start`'s descendants, and any process whose
        command line names the private temp dir (a raylet orphaned by a dead monitor), with theirs."""
        roots: dict[int, psutil.Process] = {}
        if self.proc is not None:
            try:
                roots[self.proc.pid] = psutil.Process(self.proc.pid)
            except psutil.NoSuchProcess:
                pass
        if self.temp_dir:
            for p in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if p.info["pid"] != os.getpid() and self.temp_dir in " ".join(p.info["cmdline"] or []):
                        roots[p.pid] = p
                except psutil.Error:
                    pass
        out = dict(roots)
        for p in list(roots.values()):
            try:
                for c in p.children(recursive=True):
                    out[c.pid] = c
            except psutil.Error:
                pass
        out.pop(os.getpid(), None)
        return list(out.values())

    def _remember(self) -> None:
        """Note our processes while the tree is intact (a Process object also guards against pid reuse)."""
        for p in self._ours():
            self._seen.setdefault(p.pid, p)

    def stop(self) -> None:
        """Kill every process of this cluster by pid: SIGTERM, then SIGKILL after 10 s."""
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except Exception:
            pass
        for _ in range(3):
            procs = {p.pid: p for p in self._ours()}
            for pid, p in self._seen.items():
                if pid not in procs and pid != os.getpid():
                    procs[pid] = p
            alive = []
            for p in procs.values():
                try:
                    if p.is_running():
                        p.terminate()
                        alive.append(p)
                except psutil.Error:
                    pass
            if not alive:
                break
            _, left = psutil.wait_procs(alive, timeout=10)
            for p in left:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(left, timeout=5)
            self._seen.clear()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def leftover(self) -> list[str]:
        """Processes of this cluster still alive (should be none after stop)."""
        out = []
        for p in self._ours():
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{p.pid}: {' '.join(p.cmdline())[:100]}")
            except psutil.Error:
                pass
        return out

    def remove_temp_dir(self) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\s+\w+\s+\S+ -- (.*)$")
_GCS_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w .*?\] \(gcs_server\) (\S+): (.*)$")


def _stamp(text: str, t0: float) -> float:
    return round(datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp() - t0, 3)


def autoscaler_events(monitor_log: Path | None, t0: float) -> list[dict]:
    """From monitor.log, in seconds from t0: the autoscaler's launch and idle-termination decisions,
    the provider's launches, the drains, and each iteration's start (best effort: every iteration
    re-reads the config, and for an "external" provider it warns about the empty legacy field
    head_node that Ray's own default adds)."""
    if monitor_log is None or not monitor_log.exists():
        return []
    out = []
    for line in monitor_log.read_text(errors="replace").splitlines():
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


def gcs_node_events(gcs_log: Path | None, t0: float) -> dict[str, dict[str, float]]:
    """Exact times (from t0) the GCS registered each node and marked it dead, from gcs_server.out."""
    out: dict[str, dict[str, float]] = {"registered": {}, "dead": {}}
    if gcs_log is None or not gcs_log.exists():
        return out
    for line in gcs_log.read_text(errors="replace").splitlines():
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


def real_run(cluster: FakeAutoscalingCluster, n_actors: int, actor_cpus: float, hold_s: float,
             max_wait_after_release_s: float, infeasible: int = 0, pre_s: float = 2.0, log=print) -> dict:
    """The burst on the real cluster; the alive-worker-node timeline polled every 0.5 s.
    `infeasible` more actors, each asking for more CPU than a node has, wait from t=0 to the end."""
    import ray

    cluster.connect()

    @ray.remote
    class Replica:
        def ping(self) -> int:
            return os.getpid()

    def poll() -> tuple[int, dict]:
        alive = {}
        for n in ray.nodes():
            if n.get("Alive") and "node:__internal_head__" not in n.get("Resources", {}):
                alive[n["NodeID"]] = n
        return len(alive), alive

    samples: list[list[float]] = []
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
        for nid in alive:
            joined.setdefault(nid, round(t, 3))
        for nid in list(joined):
            if nid not in alive and nid not in left:
                left[nid] = round(t, 3)
        if refs:
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
    gcs = gcs_node_events(logs / "gcs_server.out" if logs else None, t0)
    return {"t0_unix": t0, "samples": samples, "released_at": released_at, "joined": joined, "left": left,
            "actor_ready": ready, "events": events, "gcs": gcs}


# -- the model ---------------------------------------------------------------------------------

class ProbedEngine(Engine):
    """The project's Engine, calling `probe()` after every event (exact step timelines)."""

    def __init__(self, start: float, probe):
        super().__init__(start)
        self.probe = probe

    def run(self, until: float = math.inf) -> int:
        heap, pop, n = self._heap, heapq.heappop, 0
        while heap and heap[0][0] <= until:
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(arg)
            self.probe()
            n += 1
        self.events += n
        return n


class FakeReplica:
    __slots__ = ("node", "placed_at")

    def __init__(self):
        self.node = None
        self.placed_at = None


def simulate(cfg: RayAutoscalerConfig, n_actors: int, actor_cpus: float, release_at: float, until: float,
             first_tick_at: float | None = None) -> dict:
    """The same burst on the model. Ticks at first_tick_at + k*loop_s (default: loop_s after t=0,
    as `RayAutoscalerLoop` starts); returns running (joined) and all (incl. pending) worker nodes."""
    start = 0.0  # RayAutoscalerLoop ticks loop_s after the engine's start
    if first_tick_at is not None:
        phase = first_tick_at % cfg.loop_s or cfg.loop_s  # the first tick in (0, loop_s]
        start = phase - cfg.loop_s
    running: list[list[float]] = []
    pods: list[list[float]] = []

    def probe():
        n_run = sum(1 for nd in cluster.nodes.values() if nd.group is not None and nd.status == "running")
        n_all = sum(1 for nd in cluster.nodes.values() if nd.group is not None)
        t = round(engine.now, 3)
        for series, n in ((running, n_run), (pods, n_all)):
            if series and series[-1][0] == t:
                series[-1][1] = n
                if len(series) > 1 and series[-2][1] == n:
                    series.pop()
            elif not series or series[-1][1] != n:
                series.append([t, n])

    engine = ProbedEngine(start, probe)
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=cfg)
    cluster = Cluster(engine, spec, demand_of=lambda r: {"CPU": actor_cpus})
    RayAutoscalerLoop(engine, cluster, cfg, until)
    replicas = [FakeReplica() for _ in range(n_actors)]
    probe()

    def placed(r):
        r.placed_at = engine.now

    def burst(_):
        for r in replicas:
            cluster.request(r, placed)

    def release(_):
        for r in replicas:
            cluster.release(r)

    engine.at(0.0, burst)
    engine.at(release_at, release)
    engine.run(until)
    ticks = [round(start + k * cfg.loop_s, 3) for k in range(1, int((until - start) / cfg.loop_s) + 1)]
    return {"running": running, "pods": pods, "ticks": ticks,
            "replica_placed": [None if r.placed_at is None else round(r.placed_at, 3) for r in replicas]}


# -- comparison --------------------------------------------------------------------------------

def step_value(series: list[list[float]], t: float) -> int:
    """The value of a step timeline [[t, n], ...] at t (the last point at or before t)."""
    i = bisect.bisect_right([p[0] for p in series], t + 1e-9) - 1
    return int(series[max(i, 0)][1]) if series else 0


def figures(series: list[list[float]], release_at: float) -> dict:
    """Peak count, time it is first reached, and the scale-down after release."""
    after0 = [p for p in series if p[0] >= 0]
    peak = max((p[1] for p in after0), default=0)
    t_peak = next((p[0] for p in after0 if p[1] == peak), None)
    t_first_up = next((p[0] for p in after0 if p[1] > 0), None)
    after = [p for p in series if p[0] >= release_at]
    before_release = step_value(series, release_at - 1e-6)
    t_first_down = next((p[0] for p in after if p[1] < before_release), None)
    t_zero = next((p[0] for p in after if p[1] == 0), None)
    return {"peak": peak, "time_to_first_node_s": t_first_up, "time_to_peak_s": t_peak,
            "first_scale_down_after_release_s": None if t_first_down is None else round(t_first_down - release_at, 3),
            "scale_down_to_zero_after_release_s": None if t_zero is None else round(t_zero - release_at, 3),
            "count_before_pre_burst": step_value(series, -1e-6)}


def mae(real: list[list[float]], sim: list[list[float]], t_end: float) -> tuple[float, list[list[float]]]:
    grid = [round(k * GRID_S, 3) for k in range(int(t_end / GRID_S) + 1)]
    rows = [[t, step_value(real, t), step_value(sim, t)] for t in grid]
    return sum(abs(r - s) for _, r, s in rows) / len(rows), rows


def measured_pod_start(real: dict) -> dict:
    """Each worker node's delay from the autoscaler's 'Adding' decision that launched it to its first
    poll alive, matching nodes to launch decisions in join order."""
    adds = [e for e in real["events"] if e["kind"] == "add"]
    slots = [e["t"] for e in adds for _ in range(e["count"])]
    joins = sorted(real["joined"].values())
    delays = [round(j - a, 3) for a, j in zip(slots, joins)]
    return {"launch_times": slots, "join_times": joins, "delays": delays,
            "mean": round(sum(delays) / len(delays), 3) if delays else None,
            "min": min(delays, default=None), "max": max(delays, default=None),
            "poll_resolution_s": GRID_S}


def validate(n_actors: int = 6, actor_cpus: float = 1.0, node_cpus: float = 2.0, max_workers: int = 4,
             hold_s: float = 30.0, idle_timeout_s: float = 15.0, loop_s: int = 5, pod_start_s: float | None = None,
             log=print) -> dict:
    """Run the burst on the real autoscaler, then on the model, and compare."""
    cluster = FakeAutoscalingCluster({"CPU": node_cpus}, max_workers=max_workers, idle_timeout_s=idle_timeout_s,
                                     loop_s=loop_s)
    wall = time.monotonic()
    monitor_text = ""
    try:
        log("starting a Ray head with the autoscaler v2 (fake provider)")
        cluster.start()
        log(f"  gcs {cluster.gcs_address}, temp dir {cluster.temp_dir} ({time.monotonic() - wall:.1f} s)")
        real = real_run(cluster, n_actors, actor_cpus, hold_s,
                        max_wait_after_release_s=idle_timeout_s + 6 * loop_s + 30, log=log)
        mlog = cluster.monitor_log()
        monitor_text = mlog.read_text(errors="replace") if mlog else ""
    finally:
        cluster.stop()
        leftover = cluster.leftover()
        cluster.remove_temp_dir()
    real_wall_s = time.monotonic() - wall

    pods = measured_pod_start(real)
    if pod_start_s is None:
        pod_start_s = pods["mean"] if pods["mean"] is not None else 0.0
    cfg = RayAutoscalerConfig(groups=(WorkerGroup(name=NODE_TYPE, resources={"CPU": node_cpus},
                                                  max_workers=max_workers),),
                              upscaling_mode="Default", idle_timeout_s=idle_timeout_s, loop_s=loop_s,
                              pod_start_s=pod_start_s)
    t_end = real["samples"][-1][0]
    first_add = next((e["t"] for e in real["events"] if e["kind"] == "add"), None)
    sim_default = simulate(cfg, n_actors, actor_cpus, real["released_at"], t_end)
    sim_aligned = simulate(cfg, n_actors, actor_cpus, real["released_at"], t_end, first_tick_at=first_add)
    real_series = real["samples"]
    out = {
        "params": {"n_actors": n_actors, "actor_cpus": actor_cpus, "node_cpus": node_cpus,
                   "max_workers": max_workers, "hold_s": hold_s, "idle_timeout_s": idle_timeout_s,
                   "loop_s": loop_s, "pod_start_s": pod_start_s, "upscaling_speed": 1000.0,
                   "ray_version": _ray_version()},
        "calibration": {"loop_s": {"value": loop_s, "source": "AUTOSCALER_UPDATE_INTERVAL_S (ray/autoscaler/_private/"
                                   "constants.py, default 5; set for the real autoscaler's process)"},
                        "pod_start_s": {"value": pod_start_s, **pods},
                        "first_launch_s": first_add},
        "real": {"samples": real_series, "released_at": real["released_at"], "joined": real["joined"],
                 "left": real["left"], "actor_ready": real["actor_ready"], "events": real["events"],
                 "figures": figures(real_series, real["released_at"]), "wall_s": round(real_wall_s, 1),
                 "leftover_processes": leftover},
        "sim": {}, "monitor_log_tail": monitor_text[-20000:],
    }
    for name, sim in (("aligned", sim_aligned), ("default_phase", sim_default)):
        err, rows = mae(real_series, sim["running"], t_end)
        out["sim"][name] = {"running": sim["running"], "pods_incl_pending": sim["pods"], "ticks": sim["ticks"],
                            "replica_placed": sim["replica_placed"],
                            "figures": figures(sim["running"], real["released_at"]),
                            "mae_nodes": round(err, 4), "grid": rows}
    return out


def _ray_version() -> str:
    import ray

    return ray.__version__


def table(res: dict) -> str:
    r = res["real"]["figures"]
    a, d = res["sim"]["aligned"]["figures"], res["sim"]["default_phase"]["figures"]
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = [("peak worker nodes", "peak"), ("time to first node (s)", "time_to_first_node_s"),
            ("time to peak (s)", "time_to_peak_s"),
            ("first scale-down after release (s)", "first_scale_down_after_release_s"),
            ("scale-down to 0 after release (s)", "scale_down_to_zero_after_release_s")]
    lines = [f"{'':38}{'real':>10}{'sim':>10}{'sim(t=loop)':>13}"]
    for label, key in rows:
        lines.append(f"{label:38}{fmt(r[key]):>10}{fmt(a[key]):>10}{fmt(d[key]):>13}")
    lines.append(f"{'node-count MAE (0.5 s grid)':38}{'':>10}{res['sim']['aligned']['mae_nodes']:>10.3f}"
                 f"{res['sim']['default_phase']['mae_nodes']:>13.3f}")
    return "\n".join(lines)


def side_by_side(res: dict) -> str:
    rows = res["sim"]["aligned"]["grid"]
    d = {t: s for t, _, s in res["sim"]["default_phase"]["grid"]}
    lines = [f"{'t (s)':>7} {'real':>5} {'sim':>5} {'sim(t=loop)':>12}"]
    prev = None
    for t, real, sim in rows:
        key = (real, sim, d[t])
        if key != prev:
            lines.append(f"{t:7.1f} {real:5d} {sim:5d} {d[t]:12d}")
            prev = key
    return "\n".join(lines)


def plot(res: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    def xy(series, t_end):
        xs, ys = [], []
        for t, n in series:
            xs.append(t)
            ys.append(n)
        xs.append(t_end)
        ys.append(ys[-1] if ys else 0)
        return xs, ys

    t_end = res["real"]["samples"][-1][0]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.step(*xy(res["real"]["samples"], t_end), where="post", label="real (ray.nodes() alive, 0.5 s poll)", lw=2)
    ax.step(*xy(res["sim"]["aligned"]["running"], t_end), where="post", label="sim (phase-aligned)", lw=1.5, ls="--")
    ax.step(*xy(res["sim"]["default_phase"]["running"], t_end), where="post", label="sim (first tick at loop_s)",
            lw=1, ls=":")
    ax.axvline(0, color="grey", lw=0.8)
    ax.axvline(res["real"]["released_at"], color="grey", lw=0.8)
    for e in res["real"]["events"]:
        if e["kind"] in ("add", "remove"):
            ax.axvline(e["t"], color="green" if e["kind"] == "add" else "red", lw=0.6, alpha=0.5)
    p = res["params"]
    ax.set_title(f"{p['n_actors']} actors x {p['actor_cpus']:g} CPU on {p['node_cpus']:g}-CPU nodes; "
                 f"idle {p['idle_timeout_s']:g} s, loop {p['loop_s']} s, pod start {p['pod_start_s']:.2f} s")
    ax.set_xlabel("seconds from the burst (release at grey line)")
    ax.set_ylabel("alive worker nodes")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=6)
    ap.add_argument("--actor-cpus", type=float, default=1.0)
    ap.add_argument("--node-cpus", type=float, default=2.0)
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--hold-s", type=float, default=30.0)
    ap.add_argument("--idle-timeout-s", type=float, default=15.0)
    ap.add_argument("--loop-s", type=int, default=5, help="AUTOSCALER_UPDATE_INTERVAL_S for the real autoscaler")
    ap.add_argument("--pod-start-s", type=float, default=None, help="default: measured in the real run")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "validate-ray-autoscaler.json")
    args = ap.parse_args(argv)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    res = validate(n_actors=args.actors, actor_cpus=args.actor_cpus, node_cpus=args.node_cpus,
                   max_workers=args.max_workers, hold_s=args.hold_s, idle_timeout_s=args.idle_timeout_s,
                   loop_s=args.loop_s, pod_start_s=args.pod_start_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = plot(res, args.out.with_suffix(".png"))
    res["plot"] = png
    args.out.write_text(json.dumps(res, indent=1))
    cal = res["calibration"]
    print()
    print(f"calibrated: loop_s={cal['loop_s']['value']} (AUTOSCALER_UPDATE_INTERVAL_S), "
          f"pod_start_s={cal['pod_start_s']['value']:.2f} (per node: {cal['pod_start_s']['delays']}), "
          f"first launch at t={cal['first_launch_s']}")
    print("autoscaler decisions:", ", ".join(f"{e['kind']} {e.get('count', '')}@{e['t']:.1f}"
                                             for e in res["real"]["events"] if e["kind"] in ("add", "remove")))
    print()
    print(side_by_side(res))
    print()
    print(table(res))
    print()
    print(f"wrote {args.out}" + (f" and {png}" if png else " (matplotlib missing: no plot)"))
    if res["real"]["leftover_processes"]:
        print("WARNING: processes left:", res["real"]["leftover_processes"])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
