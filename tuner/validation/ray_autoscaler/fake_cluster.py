"""A Ray head with the real autoscaler v2 over Ray's fake multi-node provider: started, connected
to, stopped.

The head is started here, not with `AutoscalingCluster.start()` (ray-project/ray@ray-2.60.0
python/ray/cluster_utils.py), which runs `ray stop --force` and so would kill any other Ray on
the machine, and whose fake_multinode config template
(python/ray/autoscaler/_private/fake_multi_node/example.yaml) is not in the wheel. It runs on
free ports, with its own --temp-dir and auth token, and is stopped by killing, by PID and
through `tuner.processes.terminate`, the processes it consists of: the `ray start --block`
process, its descendants, and anything whose command line names the temp dir.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tuner import processes
from tuner.ports import free_port
from tuner.processes import ProcessRecord

# The head node id of Ray's fake provider (FAKE_HEAD_NODE_ID in ray-project/ray@ray-2.60.0
# python/ray/autoscaler/_private/fake_multi_node/node_provider.py).
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
NODE_TYPE = "cpu_node"
FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
OBJECT_STORE_BYTES = 100 * 1024**2  # per node; Ray's minimum is 75 MiB
LOOPBACK = "127.0.0.1"


class FakeAutoscalingCluster:
    """A Ray head with the real autoscaler v2 over the fake multi-node provider.

    Like `ray.cluster_utils.AutoscalingCluster(..., autoscaler_v2=True)`, but on free ports and a
    private temp dir, and stopped by PID rather than `ray stop --force`."""

    def __init__(self, worker_resources: dict, max_workers: int, idle_timeout_s: float, loop_s: int,
                 upscaling_speed: float = 1000.0, min_workers: int = 0, temp_dir: str | None = None):
        self.worker_resources = dict(worker_resources)
        self.max_workers, self.min_workers = max_workers, min_workers
        self.idle_timeout_s, self.loop_s, self.upscaling_speed = idle_timeout_s, loop_s, upscaling_speed
        self.proc: subprocess.Popen | None = None
        self.record: ProcessRecord | None = None  # `ray start`, with its start time: never a reused PID
        self.temp_dir: str | None = temp_dir
        self.gcs_address: str | None = None
        self._seen: dict[tuple[int, float], ProcessRecord] = {}

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
        if self.temp_dir is None:
            self.temp_dir = tempfile.mkdtemp(prefix="rvas-", dir="/tmp")  # short: unix socket paths
        else:
            os.makedirs(self.temp_dir, exist_ok=True)
        # Every "node" is a raylet on this machine, started by the head's autoscaler in its own
        # process (not `ray start --address`, which the variable below would refuse): all of them,
        # and their agents, stay on loopback as the stack does.
        ip = LOOPBACK
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
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the node address Ray picks: loopback, not the outward one
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
        try:  # before any poll() can reap it, so its PID is still its own
            self.record = ProcessRecord.of(psutil.Process(self.proc.pid), "ray start", str(self.log_path))
        except psutil.Error:
            pass
        self.remember()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            monitor = self.monitor_log()
            if monitor and "Using Autoscaling Config" in monitor.read_text(errors="replace"):
                break
            self.remember()
            time.sleep(0.5)
        else:
            raise TimeoutError(f"the autoscaler did not start in {timeout_s:.0f} s; see {self.log_path}")
        self.remember()

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
        # The driver's node on loopback too (the variable the head got is read when Ray is
        # imported, which may have happened already in this process).
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=self.gcs_address, logging_level="WARNING", log_to_driver=False,
                 configure_logging=False, _node_ip_address=LOOPBACK)
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

    def our_processes(self) -> list[ProcessRecord]:
        """The processes this cluster consists of: `ray start` and its descendants, and any process
        whose command line names the private temp dir (a raylet orphaned by a dead monitor), with
        theirs; never this process or its parents (e.g. `timeout ... --temp-dir X`)."""
        out: dict[int, ProcessRecord] = {}
        if self.record is not None and self.record.alive():
            out[self.record.pid] = self.record
            for r in processes.descendants([self.record]):
                out.setdefault(r.pid, r)
        for r in processes.naming(self.temp_dir, "ray cluster") if self.temp_dir else []:
            out.setdefault(r.pid, r)
        me = psutil.Process()
        for pid in [me.pid, *(a.pid for a in me.parents())]:
            out.pop(pid, None)
        return list(out.values())

    def remember(self) -> None:
        """Note our processes while the tree is intact (a record, with its start time, also guards
        against PID reuse)."""
        for r in self.our_processes():
            self._seen.setdefault((r.pid, r.started_after_boot_s), r)

    def stop(self) -> None:
        """Kill every process of this cluster by PID (`tuner.processes.terminate`): SIGTERM, then
        SIGKILL after 10 s; up to three rounds, for processes started while the first went."""
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except Exception:
            pass
        for _ in range(3):
            targets = [*self.our_processes(), *self._seen.values()]
            if not processes.terminate(targets, timeout_s=10):
                break
            self._seen.clear()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def leftover(self) -> list[str]:
        """Processes of this cluster still alive (should be none after stop)."""
        return [f"{r.pid}: {' '.join(r.argv)[:100]}" for r in self.our_processes() if r.alive()]

    def remove_temp_dir(self) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
