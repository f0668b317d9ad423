"""Validate the simulator's Ray autoscaler against the real one (Ray's fake multi-node provider).

Real side: a Ray head with the real autoscaler v2 (as KubeRay runs it: `RAY_enable_autoscaler_v2`,
`upscaling_speed` 1000 = upscalingMode Default) and one declared worker type, whose "pods" are extra
raylets the fake provider starts on this machine. A driver creates N actors of {"CPU": c} at t=0
(a burst of Serve replicas that fits on no node: the head offers 0 CPU), keeps them `--hold-s`
seconds, then kills them; alive worker nodes (`ray.nodes()`) are polled every 0.5 s, with the
pending demand the GCS holds for the autoscaler. The autoscaler's decisions and iteration times
come from its monitor.log, exact node join/death times from gcs_server.out.

Model side: the same demand on `tuner.sim.cluster.Cluster` + `RayAutoscalerLoop` on the project's
Engine, with the two timings the model cannot know calibrated from the real run: `loop_s`
(AUTOSCALER_UPDATE_INTERVAL_S in ray/autoscaler/_private/constants.py, default 5; this script sets
it for the real autoscaler) and `pod_start_s` (measured: from the autoscaler's "Adding N node(s)"
decision to the node's registration in the GCS; median over the nodes). Three variants:
  sim              the loop's ticks phase-aligned to the real iteration that first launched;
  sim:real ticks   the loop's iteration run at the real iterations' times (isolates the policy);
  sim:tick@loop_s  the loop as it starts by itself (first tick loop_s after t=0).
Reported: the timelines side by side, peak, time to peak, scale-down after release, node-count
MAE on a 0.5 s grid, and an error budget (see `error_budget`); JSON to --out, a PNG next to it,
the Ray logs in <out>-logs/. `--from-json` redoes the model side from an earlier output.

The head is started here (not with `AutoscalingCluster.start()`, which runs `ray stop --force`
and so would kill any other Ray on the machine, and whose fake_multinode config template is not
in the wheel) on free ports, with its own --temp-dir and auth token; it is stopped in a `finally`
(also on Ctrl-C or SIGTERM) by killing, by pid, the processes this script started: the
`ray start --block` process, its descendants, and anything whose command line names the temp dir.

    python scripts/validate_ray_autoscaler.py [--actors 6] [--hold-s 30] [--idle-timeout-s 15]
"""

from __future__ import annotations

import argparse
import bisect
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
                 upscaling_speed: float = 1000.0, min_workers: int = 0, temp_dir: str | None = None):
        self.worker_resources = dict(worker_resources)
        self.max_workers, self.min_workers = max_workers, min_workers
        self.idle_timeout_s, self.loop_s, self.upscaling_speed = idle_timeout_s, loop_s, upscaling_speed
        self.proc: subprocess.Popen | None = None
        self.temp_dir: str | None = temp_dir
        self.gcs_address: str | None = None
        self._seen: dict[int, psutil.Process] = {}

    def config(self, gcs_address: str) -> dict:
        return {
            "cluster_name": "validate_ray_autoscaler",
            "max_workers": self.max_workers,
            # Ray's FakeMultiNodeProvider as an "external" provider: type fake_multinode needs
            # fake_multi_node/example.yaml for its defaults, which the wheel does not ship.
            "provider": {"type": "external", "module": FAKE_PROVIDER, "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True, "launch_multiple": True,
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

        if self.temp_dir is None:
            self.temp_dir = tempfile.mkdtemp(prefix="rvas-", dir="/tmp")  # short: unix socket paths
        else:
            os.makedirs(self.temp_dir, exist_ok=True)
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
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=self.gcs_address, logging_level="WARNING", log_to_driver=False,
                 configure_logging=False)
        # The core worker installs its own failure handler for SIGTERM (it prints a stack and
        # aborts, skipping our `finally`): put Python's handlers back.
        for sig, handler in handlers.items():
            if callable(handler):
                signal.signal(sig, handler)

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
                    if self.temp_dir in " ".join(p.info["cmdline"] or []):
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
        me = psutil.Process()
        for pid in [me.pid, *(a.pid for a in me.parents())]:  # e.g. `timeout ... --temp-dir X`
            out.pop(pid, None)
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
                procs.setdefault(pid, p)
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
            cluster._remember()
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


# -- the model ---------------------------------------------------------------------------------

class FakeReplica:
    """A replica as the simulated Cluster sees it: its demand, and the node it is on."""

    __slots__ = ("node", "placed_at", "demand")

    def __init__(self, demand: dict):
        self.node = None
        self.placed_at = None
        self.demand = demand


def simulate(cfg: RayAutoscalerConfig, n_actors: int, actor_cpus: float, release_at: float, until: float,
             first_tick_at: float | None = None, tick_times: list[float] | None = None, infeasible: int = 0) -> dict:
    """The same burst on the model: `Cluster` + `RayAutoscalerLoop` on the project's Engine.

    Ticks every loop_s from first_tick_at (its phase), or, by default, loop_s after t=0 as
    `RayAutoscalerLoop` starts; or, with `tick_times`, exactly then (the real autoscaler's
    iterations replayed: the loop's own schedule is spent on one empty tick before the burst).
    Returns the running (joined) worker nodes and all of them (pending included) as exact step
    timelines."""
    start = 0.0  # RayAutoscalerLoop ticks loop_s after the engine's start
    loop_until = until
    if tick_times is not None:
        start, loop_until = -cfg.loop_s - 0.5, -0.5  # one tick at -0.5 s, nothing to do yet
    elif first_tick_at is not None:
        phase = first_tick_at % cfg.loop_s or cfg.loop_s  # the first tick in (0, loop_s]
        start = phase - cfg.loop_s
    engine = Engine(start)
    spec = ClusterSpec(layer="ray-autoscaler", head={"CPU": 0}, ray_autoscaler=cfg)
    cluster = Cluster(engine, spec, demand_of=lambda r: r.demand)
    loop = RayAutoscalerLoop(engine, cluster, cfg, loop_until)
    for t in tick_times or ():
        engine.at(t, loop._tick)  # the loop's own iteration, at the real autoscaler's times
    replicas = [FakeReplica({"CPU": actor_cpus}) for _ in range(n_actors)]
    node_cpus = cfg.groups[0].resources["CPU"]
    stuck = [FakeReplica({"CPU": node_cpus + 1}) for _ in range(infeasible)]

    def placed(r):
        r.placed_at = engine.now

    def burst(_):
        for r in replicas + stuck:
            cluster.request(r, placed)

    def release(_):
        for r in replicas:
            cluster.release(r)

    engine.at(0.0, burst)
    engine.at(release_at, release)
    engine.run(until)
    if tick_times is not None:
        ticks = [t for t in tick_times if t <= until]
    else:
        ticks = [round(start + k * cfg.loop_s, 3) for k in range(1, int((until - start) / cfg.loop_s) + 1)]
    group = cfg.groups[0].name
    return {"running": _steps(cluster.joined[group]), "pods": _steps(cluster.timeline[group]), "ticks": ticks,
            "replica_placed": [None if r.placed_at is None else round(r.placed_at, 3) for r in replicas]}


def _steps(timeline) -> list[list[float]]:
    """A cluster timeline as [[t, n], ...], times to the ms, one point per instant (its last value)."""
    out: list[list[float]] = []
    for t, n in timeline:
        t = round(t, 3)
        if out and out[-1][0] == t:
            out[-1][1] = n
            if len(out) > 1 and out[-2][1] == n:
                out.pop()
        elif not out or out[-1][1] != n:
            out.append([t, n])
    return out


# -- comparison --------------------------------------------------------------------------------

def step_value(series: list[list[float]], t: float) -> int:
    """The value of a step timeline [[t, n], ...] at t (the last point at or before t)."""
    i = bisect.bisect_right([p[0] for p in series], t + 1e-9) - 1
    return int(series[max(i, 0)][1]) if series else 0


def figures(series: list[list[float]], release_at: float) -> dict:
    """Peak count, when it is first reached, and the scale-down after release."""
    after0 = [p for p in series if p[0] >= 0]
    peak = max((p[1] for p in after0), default=0)
    t_peak = next((p[0] for p in after0 if p[1] == peak), None)
    t_first_up = next((p[0] for p in after0 if p[1] > 0), None)
    after = [p for p in series if p[0] >= release_at]
    before_release = step_value(series, release_at - 1e-6)
    t_first_down = next((p[0] for p in after if p[1] < before_release), None)
    t_zero = next((p[0] for p in after if p[1] == 0), None)
    up = [p for p in series if 0 <= p[0] < release_at]
    return {"peak": peak, "time_to_first_node_s": t_first_up, "time_to_peak_s": t_peak,
            "first_scale_down_after_release_s": None if t_first_down is None else round(t_first_down - release_at, 3),
            "scale_down_to_zero_after_release_s": None if t_zero is None else round(t_zero - release_at, 3),
            "count_before_burst": step_value(series, -1e-6),
            "monotone_up_before_release": all(b[1] >= a[1] for a, b in zip(up, up[1:])),
            "final": series[-1][1] if series else 0}


def mae(real: list[list[float]], sim: list[list[float]], t_end: float) -> tuple[float, list[list[float]]]:
    """Mean |real - sim| node count over t = 0, 0.5, ..., t_end (both step timelines sampled)."""
    grid = [round(k * GRID_S, 3) for k in range(int(t_end / GRID_S + 1e-9) + 1)]
    rows = [[t, step_value(real, t), step_value(sim, t)] for t in grid]
    return sum(abs(r - s) for _, r, s in rows) / len(rows), rows


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


def gcs_series(real: dict) -> list[list[float]]:
    """The real worker-node count from the GCS's own registration and death times (exact, where the
    poll is 0.5 s coarse); head excluded."""
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


def decision_times(events: list[dict]) -> list[float]:
    """When each real iteration decided: its start, or, where it logged a launch or removal, that
    moment (an iteration can block for seconds on the fake provider's lock before it decides)."""
    its = _iteration_starts(events)
    acts = [e["t"] for e in events if e["kind"] in ("add", "remove")]
    out = []
    for i, t in enumerate(its):
        nxt = its[i + 1] if i + 1 < len(its) else math.inf
        out.append(min((a for a in acts if t <= a < nxt), default=t))
    return out


def _iteration_starts(events: list[dict]) -> list[float]:
    """Iteration starts; the monitor reads the config twice as it starts, so of marks under 1 s
    apart the later one counts."""
    its = [e["t"] for e in events if e["kind"] == "iteration"]
    return [t for i, t in enumerate(its) if i + 1 == len(its) or its[i + 1] - t >= 1.0]


def iteration_periods(events: list[dict]) -> dict:
    its = _iteration_starts(events)
    gaps = [round(b - a, 3) for a, b in zip(its, its[1:])]
    return {"starts": its, "periods": gaps,
            "mean_period_s": round(sum(gaps) / len(gaps), 3) if gaps else None,
            "max_period_s": max(gaps, default=None)}


def error_budget(res: dict) -> dict:
    """An upper bound on the node-count MAE between the real and a simulated timeline from the error
    sources that the comparison cannot remove, in node-seconds over the compared duration:
    (1) ramp: the fake provider starts a launch's nodes one after another under a lock, the model
    all of them pod_start_s after launch: sum_k |d_k - pod_start_s|;
    (2) poll: each real transition is seen up to one poll late, on the way up and down:
    2 x peak x poll_s;
    (3) first launch: the model sees a demand at once, the real autoscaler once the raylet has
    reported it to the GCS (about a second later, `demand_first_seen_in_gcs_s`), so an iteration
    in between launches in the model and not in reality; and with the fixed-period loop the phase
    itself is only aligned to the real iteration that launched: up to one iteration, peak x loop_s;
    (4) scale-down phase (fixed-period loop only): the real period is AUTOSCALER_UPDATE_INTERVAL_S
    plus the iteration's own duration (seconds while the fake provider creates nodes: it holds the
    lock the iteration's node listing needs), so by the scale-down the real ticks can be up to one
    period off the model's: peak x loop_s. Replaying the real iteration times removes (4)."""
    p, cal = res["params"], res["calibration"]["pod_start_s"]
    peak = res["real"]["figures"]["peak"]
    terms = {"ramp_node_s": round(sum(abs(d - p["pod_start_s"]) for d in cal["delays"]), 3),
             "poll_node_s": 2 * peak * p["poll_s"], "first_launch_node_s": peak * p["loop_s"],
             "scale_down_phase_node_s": peak * p["loop_s"]}
    out = dict(terms)
    for name in ("aligned", "replayed", "default_phase"):
        sim = res["sim"][name]
        dur = len(sim["grid"]) * p["poll_s"]
        budget = sum(terms.values()) - (terms["scale_down_phase_node_s"] if name == "replayed" else 0.0)
        out[name] = {"bound": round(budget / dur, 4), "mae": sim["mae_nodes"], "duration_s": dur,
                     "within": sim["mae_nodes"] <= budget / dur}
    return out


def validate(n_actors: int = 6, actor_cpus: float = 1.0, node_cpus: float = 2.0, max_workers: int = 4,
             hold_s: float = 30.0, idle_timeout_s: float = 15.0, loop_s: int = 5, pod_start_s: float | None = None,
             infeasible: int = 0, keep_logs: Path | None = None, temp_dir: str | None = None, log=print) -> dict:
    """Run the burst on the real autoscaler, then on the model, and compare. The real cluster is
    stopped (its processes killed by pid) before this returns or raises."""
    cluster = FakeAutoscalingCluster({"CPU": node_cpus}, max_workers=max_workers, idle_timeout_s=idle_timeout_s,
                                     loop_s=loop_s, temp_dir=temp_dir)
    wall = time.monotonic()
    try:
        log("starting a Ray head with the autoscaler v2 (fake multi-node provider)")
        cluster.start()
        log(f"  gcs {cluster.gcs_address}, temp dir {cluster.temp_dir} ({time.monotonic() - wall:.1f} s)")
        real = real_run(cluster, n_actors, actor_cpus, hold_s, infeasible=infeasible,
                        max_wait_after_release_s=idle_timeout_s + 6 * loop_s + 30, log=log)
    finally:
        cluster.stop()
        leftover = cluster.leftover()
        logs = cluster.session_logs()
        if keep_logs is not None and logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for name in ("monitor.log", "monitor.out", "gcs_server.out"):
                if (logs / name).exists():
                    shutil.copy(logs / name, keep_logs / name)
        cluster.remove_temp_dir()
    real["wall_s"] = round(time.monotonic() - wall, 1)
    real["leftover_processes"] = leftover
    params = {"n_actors": n_actors, "actor_cpus": actor_cpus, "node_cpus": node_cpus, "infeasible_actors": infeasible,
              "max_workers": max_workers, "hold_s": hold_s, "idle_timeout_s": idle_timeout_s, "loop_s": loop_s,
              "pod_start_s": pod_start_s}
    return compare(real, params)


def compare(real: dict, params: dict) -> dict:
    """The model on the real run's demand, calibrated from it, and the comparison. `real` is what
    `real_run` returned (kept in the output as `real_raw`, so this can be redone offline)."""
    n_actors, actor_cpus, node_cpus = params["n_actors"], params["actor_cpus"], params["node_cpus"]
    max_workers, idle_timeout_s, loop_s = params["max_workers"], params["idle_timeout_s"], params["loop_s"]
    infeasible, pod_start_s = params.get("infeasible_actors", 0), params.get("pod_start_s")
    pods = measured_pod_start(real)
    if pod_start_s is None:
        pod_start_s = pods["median"] if pods["median"] is not None else 0.0
    cfg = RayAutoscalerConfig(groups=(WorkerGroup(name=NODE_TYPE, resources={"CPU": node_cpus},
                                                  max_workers=max_workers),),
                              upscaling_mode="Default", idle_timeout_s=idle_timeout_s, loop_s=loop_s,
                              pod_start_s=pod_start_s)
    t_end = real["samples"][-1][0]
    first_add = next((e["t"] for e in real["events"] if e["kind"] == "add"), None)
    real_series = real["samples"]
    out = {
        "params": {**params, "infeasible_actors": infeasible, "pod_start_s": pod_start_s, "upscaling_speed": 1000.0,
                   "ray_version": _ray_version(), "poll_s": GRID_S},
        "calibration": {"loop_s": {"value": loop_s, "source": "AUTOSCALER_UPDATE_INTERVAL_S (ray/autoscaler/_private/"
                                   "constants.py, default 5), set for the real autoscaler's process"},
                        "pod_start_s": {"value": pod_start_s, **pods},
                        "first_launch_s": first_add,
                        "demand_first_seen_in_gcs_s": next(
                            (t for t, c in real.get("pending_demand", []) if t >= 0 and c > 0), None),
                        "real_iterations": iteration_periods(real["events"])},
        "real": {"samples": real_series, "released_at": real["released_at"], "joined": real["joined"],
                 "left": real["left"], "gcs": real["gcs"], "actor_ready": real["actor_ready"],
                 "events": [e for e in real["events"] if e["kind"] != "iteration"],
                 "figures": figures(real_series, real["released_at"]),
                 "gcs_series": gcs_series(real), "gcs_figures": figures(gcs_series(real), real["released_at"]),
                 "wall_s": real.get("wall_s"),
                 "leftover_processes": real.get("leftover_processes", [])},
        "sim": {},
        "real_raw": real,
    }
    # The sim runs past the real end so that its scale-down shows (or its missing one counts); the
    # real count is held at its last value (the run stops once it has settled) when they are compared.
    until = max(t_end, real["released_at"] + idle_timeout_s + 2 * loop_s + pod_start_s) + 1.0
    ticks = [t for t in decision_times(real["events"]) if t >= 0]
    variants = {"aligned": {"first_tick_at": first_add}, "replayed": {"tick_times": ticks},
                "default_phase": {}}
    if first_add is None:
        variants.pop("aligned")
    if not ticks:
        variants.pop("replayed")
    for name, kw in variants.items():
        sim = simulate(cfg, n_actors, actor_cpus, real["released_at"], until, infeasible=infeasible, **kw)
        horizon = until
        err, rows = mae(real_series, sim["running"], horizon)
        out["sim"][name] = {"first_tick_s": next((t for t in sim["ticks"] if t >= 0), None),
                            "running": sim["running"], "pods_incl_pending": sim["pods"], "ticks": sim["ticks"],
                            "replica_placed": sim["replica_placed"],
                            "figures": figures(sim["running"], real["released_at"]),
                            "mae_nodes": round(err, 4), "mae_horizon_s": horizon, "grid": rows}
    for name in ("aligned", "replayed"):
        out["sim"].setdefault(name, out["sim"]["default_phase"])
    out["error_budget"] = error_budget(out)
    return out


def _ray_version() -> str:
    import ray

    return ray.__version__


VARIANTS = (("aligned", "sim"), ("replayed", "sim:real ticks"), ("default_phase", "sim:tick@loop_s"))


def table(res: dict) -> str:
    r = res["real"]["figures"]
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = [("peak worker nodes", "peak"), ("time to first node (s)", "time_to_first_node_s"),
            ("time to peak (s)", "time_to_peak_s"),
            ("first scale-down after release (s)", "first_scale_down_after_release_s"),
            ("scale-down to 0 after release (s)", "scale_down_to_zero_after_release_s"),
            ("nodes at the end", "final")]
    lines = [f"{'':36}{'real':>8}" + "".join(f"{label:>17}" for _, label in VARIANTS)]
    for label, key in rows:
        lines.append(f"{label:36}{fmt(r[key]):>8}" + "".join(f"{fmt(res['sim'][v]['figures'][key]):>17}"
                                                            for v, _ in VARIANTS))
    lines.append(f"{'node-count MAE (0.5 s grid)':36}{'':>8}" + "".join(f"{res['sim'][v]['mae_nodes']:>17.3f}"
                                                                       for v, _ in VARIANTS))
    eb = res["error_budget"]
    lines.append(f"{'MAE bound (see error_budget)':36}{'':>8}" + "".join(f"{eb[v]['bound']:>17.3f}"
                                                                        for v, _ in VARIANTS))
    return "\n".join(lines)


def side_by_side(res: dict) -> str:
    """The timelines on the 0.5 s grid, one line per change."""
    grids = {v: {t: s for t, _, s in res["sim"][v]["grid"]} for v, _ in VARIANTS}
    longest = max((res["sim"][v]["grid"] for v, _ in VARIANTS), key=len)
    lines = [f"{'t (s)':>7} {'real':>5}" + "".join(f"{label:>17}" for _, label in VARIANTS)]
    prev = None
    for t, real, _ in longest:
        vals = tuple(grids[v].get(t, grids[v][max(grids[v])]) for v, _ in VARIANTS)
        if (real, *vals) != prev:
            lines.append(f"{t:7.1f} {real:5d}" + "".join(f"{x:17d}" for x in vals))
            prev = (real, *vals)
    return "\n".join(lines)


def plot(res: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    t_end = max(res["sim"][v]["mae_horizon_s"] for v, _ in VARIANTS)

    def xy(series):
        xs, ys = [p[0] for p in series], [p[1] for p in series]
        return xs + [t_end], ys + [ys[-1] if ys else 0]

    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.step(*xy(res["real"]["samples"]), where="post", label="real: ray.nodes() alive (0.5 s poll)", lw=2.5)
    ax.step(*xy(res["real"]["gcs_series"]), where="post", label="real: GCS register/death log times", lw=1,
            color="black", alpha=0.6)
    ax.step(*xy(res["sim"]["aligned"]["running"]), where="post", lw=1.5, ls="--",
            label="sim, ticks aligned to the real first launch")
    ax.step(*xy(res["sim"]["replayed"]["running"]), where="post", lw=1, ls="-.",
            label="sim, ticks at the real autoscaler's iterations")
    ax.step(*xy(res["sim"]["default_phase"]["running"]), where="post", lw=1, ls=":",
            label="sim, first tick loop_s after the burst")
    ax.axvline(0, color="grey", lw=0.8)
    ax.axvline(res["real"]["released_at"], color="grey", lw=0.8)
    for e in res["real"]["events"]:
        if e["kind"] in ("add", "remove"):
            ax.axvline(e["t"], color="green" if e["kind"] == "add" else "red", lw=0.6, alpha=0.6)
    p = res["params"]
    extra = f" + {p['infeasible_actors']} infeasible" if p["infeasible_actors"] else ""
    ax.set_title(f"{p['n_actors']} actors x {p['actor_cpus']:g} CPU{extra} on {p['node_cpus']:g}-CPU nodes; "
                 f"idle {p['idle_timeout_s']:g} s, loop {p['loop_s']} s, pod start {p['pod_start_s']:.2f} s",
                 fontsize=9)
    ax.set_xlabel("seconds from the burst (grey: burst, release; green/red: real autoscaler add/remove)")
    ax.set_ylabel("alive worker nodes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(-0.15, res["real"]["figures"]["peak"] + 0.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def report(res: dict) -> str:
    cal = res["calibration"]
    ps, its, g = cal["pod_start_s"], cal["real_iterations"], res["real"]["gcs_figures"]
    lines = [
        f"calibrated: loop_s={cal['loop_s']['value']} (AUTOSCALER_UPDATE_INTERVAL_S); "
        f"pod_start_s={ps['value']:.2f} (median of per-node launch->join delays {ps['delays']}, "
        f"from {ps['source']})",
        f"real autoscaler: demand first seen in the GCS's resource state at t={cal['demand_first_seen_in_gcs_s']} "
        f"(0.5 s polls); first launch at t={cal['first_launch_s']}; iteration period mean "
        f"{its['mean_period_s']} s, max {its['max_period_s']} s",
        "real decisions: " + ", ".join(f"{e['kind']} {e.get('count', '')} @ {e['t']:.2f}s"
                                        for e in res["real"]["events"] if e["kind"] in ("add", "remove")),
        f"released at t={res['real']['released_at']}; from the GCS log (exact): first node "
        f"{g['time_to_first_node_s']}, peak {g['peak']} at {g['time_to_peak_s']}, all gone "
        f"{g['scale_down_to_zero_after_release_s']} s after release",
        "",
        side_by_side(res),
        "",
        table(res),
    ]
    return "\n".join(lines)


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

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logs_dir = args.out.with_name(args.out.stem + "-logs")
    if args.from_json:
        old = json.loads(args.from_json.read_text())
        params = {k: old["params"][k] for k in ("n_actors", "actor_cpus", "node_cpus", "infeasible_actors",
                                                 "max_workers", "hold_s", "idle_timeout_s", "loop_s")}
        params["pod_start_s"] = args.pod_start_s
        res = compare(old["real_raw"], params)
        logs_dir = Path(old.get("logs", logs_dir))
    else:
        res = validate(n_actors=args.actors, actor_cpus=args.actor_cpus, node_cpus=args.node_cpus,
                       max_workers=args.max_workers, hold_s=args.hold_s, idle_timeout_s=args.idle_timeout_s,
                       loop_s=args.loop_s, pod_start_s=args.pod_start_s, infeasible=args.infeasible_actors,
                       keep_logs=logs_dir, temp_dir=args.temp_dir)
    png = plot(res, args.out.with_suffix(".png"))
    res["plot"] = png
    res["logs"] = str(logs_dir)
    args.out.write_text(json.dumps(res, indent=1))
    print()
    print(report(res))
    print()
    print(f"wrote {args.out}" + (f" and {png}" if png else " (matplotlib missing: no plot)") + f"; logs in {logs_dir}")
    if res["real"]["leftover_processes"]:
        print("WARNING: processes left:", res["real"]["leftover_processes"])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
