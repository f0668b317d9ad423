"""The local stack: Prometheus, Milvus Lite, the LLM emulator, a Ray head and the Serve app,
all on 127.0.0.1. `up` records every PID it starts in the state folder; `down` stops exactly
those (and their descendants); `status` probes each part.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tuner import deploy, ports
from tuner.atomic import write_text
from tuner.errors import StackError
from tuner.processes import ProcessRecord, spawn, stop
from tuner.prometheus_config import render as render_prometheus_config
from tuner.stack_config import StackConfig
from tuner.system import MetricsPipeline

# glibc settings for Milvus Lite's server: keep freed memory in the process. Its brute-force
# search allocates and frees about 15 MB of temporaries a query (the norms of all 10,000
# vectors); glibc hands blocks that large straight back to the kernel, and on a virtual
# machine that returns freed pages to its host (this one does) the next query faults them back
# in from the host: about 1 search in 30 took 100-490 ms instead of 30 (BENCHMARKS.md, "Outcome").
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}
# One search thread: Milvus Lite's parallel brute-force search spent three times the CPU of a
# single thread per search on this 2-core host (BENCHMARKS.md, "Ceiling").
MILVUS_ENV = {"OMP_NUM_THREADS": "1", **KEEP_FREED_MEMORY}


def milvus_argv(data_dir: Path, port: int) -> list[str]:
    """The command of the stack's Milvus Lite server (run it with MILVUS_ENV)."""
    return [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--port", str(port)]


PROMETHEUS_BIN = "/usr/bin/prometheus"
STATE_FILE = "state.json"
RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")


@dataclass
class Part:
    """One part of the stack as `status` reports it."""

    name: str
    healthy: bool
    url: str
    pid: int | None
    detail: str = ""


class Stack:
    """The stack described by a StackConfig, with its state folder."""

    @classmethod
    def recorded(cls, state_dir: Path) -> "Stack":
        """The stack recorded in `state_dir`, with the config it was started with (defaults if none)."""
        try:
            return cls(StackConfig.model_validate(json.loads((state_dir / STATE_FILE).read_text())["config"]))
        except (FileNotFoundError, KeyError, ValueError):
            return cls(StackConfig(state_dir=state_dir))

    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        self.state_dir = cfg.state_dir.resolve()
        self.logs = self.state_dir / "logs"

    # ---- URLs: one place for each
    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.ray_dashboard}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.prometheus}"

    @property
    def llm_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.llm}"

    @property
    def milvus_uri(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.milvus}"

    @property
    def token_path(self) -> Path:
        return self.state_dir / "ray-auth-token"

    def dashboard_headers(self) -> dict[str, str]:
        """Ray's token authentication stays on; the stack's own token opens its dashboard."""
        try:
            return {"Authorization": "Bearer " + self.token_path.read_text().strip()}
        except FileNotFoundError:
            return {}

    def serve_url(self, serve_config: dict | None = None) -> str:
        host, port = deploy.http_endpoint(serve_config or self._state_serve_config())
        return f"http://{host}:{port}"

    # ---- state
    def _state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def read_state(self) -> dict | None:
        """The recorded state of a stack started from this folder, if any."""
        try:
            return json.loads(self._state_path().read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_state(self, state: dict) -> None:
        write_text(self._state_path(), json.dumps(state, indent=1))

    def records(self) -> list[ProcessRecord]:
        state = self.read_state() or {}
        return [ProcessRecord.from_dict(d) for d in state.get("processes", [])]

    def _state_serve_config(self) -> dict:
        return (self.read_state() or {}).get("serve_config") or {}

    def running(self) -> bool:
        """True when any process this folder recorded is still alive."""
        return any(r.alive() for r in self.records())

    def dead(self) -> list[ProcessRecord]:
        """The recorded processes that are no longer running (a stack that died)."""
        return [r for r in self.records() if not r.alive()]

    # ---- what a trial needs of it (tuner.system.SystemUnderTest)
    @property
    def metrics(self) -> MetricsPipeline:
        return MetricsPipeline(scrape_interval_s=self.cfg.scrape_interval_s,
                               serve_export_ms=self.cfg.serve_metrics_export_ms,
                               ray_report_ms=self.cfg.ray_metrics_report_ms)

    def deployed_config(self) -> dict:
        return self._state_serve_config()

    def unavailable(self) -> str | None:
        if self.running():
            return None
        return f"no stack is running from {self.state_dir}: run `tuner stack up` or pass --stack-up"

    def died(self) -> str | None:
        dead = self.dead()
        if not dead:
            return None
        return ", ".join(f"{r.name} (pid {r.pid})" for r in dead) + f" exited; see {self.logs}"

    def inject(self, fault) -> str:
        from tuner.inject import inject

        return inject(self, fault)

    # ---- up
    def up(self, log=print) -> dict:
        """Start every part, deploy the app, and return the timings; rolls back on failure."""
        if self.running():
            raise StackError(f"a stack from {self.state_dir} is already running; `tuner stack status` shows it")
        serve_config = deploy.load_serve_config(self.cfg.serve_config) if self.cfg.deploy_app else {}
        wanted = {f"{k}": v for k, v in self.cfg.ports.model_dump().items()}
        if serve_config:
            wanted["serve_http"] = deploy.http_endpoint(serve_config)[1]
        ports.require_free(wanted)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"config": self.cfg.model_dump(mode="json"), "serve_config": serve_config, "processes": [],
                 "started_at": time.time(), "timings_s": {}}
        self._write_state(state)
        t0 = time.perf_counter()
        try:
            self._start_all(state, serve_config, log)
        except BaseException:
            log("start failed; stopping what was started")
            self.down(log=lambda *_: None)
            raise
        state["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
        self._write_state(state)
        return state["timings_s"]

    def _add(self, state: dict, rec: ProcessRecord) -> None:
        state["processes"].append(rec.to_dict())
        self._write_state(state)

    def _start_all(self, state: dict, serve_config: dict, log) -> None:
        p, py = self.cfg.ports, sys.executable
        t0 = time.perf_counter()
        timings = state["timings_s"]

        prom_dir = self.state_dir / "prometheus"
        # A fresh TSDB per stack: series of an earlier Ray session would otherwise stay
        # visible for Prometheus' 5-minute lookback and be counted twice.
        shutil.rmtree(prom_dir / "data", ignore_errors=True)
        prom_dir.mkdir(exist_ok=True)
        (prom_dir / "prometheus.yml").write_text(render_prometheus_config(self.cfg))
        self._add(state, spawn("prometheus", self._prometheus_argv(), self.logs / "prometheus.log"))
        self._add(state, spawn("milvus", milvus_argv(self.state_dir / "milvus", p.milvus), self.logs / "milvus.log",
                               env=MILVUS_ENV))
        self._add(state, spawn("llm", [
            py, "-m", "target_app.llm_server.server", "--host", "127.0.0.1", "--port", str(p.llm),
            "--profile", self.cfg.llm_profile,
        ], self.logs / "llm.log"))
        if not self.token_path.exists():
            self.token_path.touch(mode=0o600)
            self.token_path.write_text(secrets.token_hex(32))
        # `ray start` turns --node-ip-address=127.0.0.1 into the machine's outward address, and
        # its agents and client server then listen there; with multi-node clusters switched off
        # the node stays on loopback. Ray's core gRPC servers listen on every interface in this
        # Ray version whatever is set: token authentication makes them refuse strangers.
        app_env = {"TARGET_APP_LLM_URL": f"{self.llm_url}/v1", "TARGET_APP_MILVUS_URI": self.milvus_uri,
                   "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                   "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                   "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": str(self.cfg.serve_metrics_export_ms)}
        ray_bin = str(Path(py).parent / "ray")
        self._add(state, spawn("ray", [
            ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={p.ray_gcs}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={p.ray_dashboard}",
            f"--metrics-export-port={p.ray_metrics}", f"--num-cpus={self.cfg.ray_num_cpus}", "--disable-usage-stats",
            "--system-config", json.dumps({"metrics_report_interval_ms": self.cfg.ray_metrics_report_ms}),
        ], self.logs / "ray.log", env=app_env))

        if not ports.wait_listening(p.milvus, self.cfg.start_timeout_s):
            raise StackError(f"Milvus Lite did not listen on port {p.milvus}; see {self.logs / 'milvus.log'}")
        # Models and the collection are built while Ray starts: both take tens of seconds.
        prepare = subprocess.Popen([py, "-m", "target_app.prepare", "--milvus-uri", self.milvus_uri],
                                   stdout=open(self.logs / "prepare.log", "ab"), stderr=subprocess.STDOUT)
        self._wait_http(f"{self.prometheus_url}/-/ready", "prometheus")
        self._wait_http(f"{self.llm_url}/health", "llm")
        self._wait_http(f"{self.dashboard_url}/api/version", "ray", self.dashboard_headers())
        state["ray_current_cluster"] = _read(RAY_CURRENT_CLUSTER)
        self._write_state(state)
        timings["services"] = round(time.perf_counter() - t0, 2)
        log(f"services up in {timings['services']:.1f}s (Prometheus, Milvus Lite, LLM emulator, Ray head)")
        if self._wait_prepare(prepare, t0, log) != 0:
            raise StackError(f"building models or the collection failed; see {self.logs / 'prepare.log'}")
        timings["prepare"] = round(time.perf_counter() - t0, 2)
        if serve_config:
            log("deploying the Serve app")
            deploy.deploy(self.dashboard_url, serve_config, self.dashboard_headers())
            deploy.wait_running(self.dashboard_url, [a["name"] for a in serve_config["applications"]],
                                self.cfg.deploy_timeout_s, self.dashboard_headers())
            self._wait_http(f"{self.serve_url(serve_config)}/-/healthz", "serve")
            timings["app"] = round(time.perf_counter() - t0, 2)

    def _wait_prepare(self, prepare: subprocess.Popen, t0: float, log, every_s: float = 15.0) -> int:
        """Wait for the models and the collection, saying where they are every `every_s`: the
        first start builds the models and embeds the corpus, minutes on a small CPU."""
        said = None
        while True:
            try:
                return prepare.wait(timeout=every_s)
            except subprocess.TimeoutExpired:
                now = last_line(self.logs / "prepare.log")
                if now and now != said:
                    log(f"preparing ({time.perf_counter() - t0:.0f}s): {now}")
                    said = now

    def _prometheus_argv(self) -> list[str]:
        prom_dir = self.state_dir / "prometheus"
        return [PROMETHEUS_BIN, f"--config.file={prom_dir / 'prometheus.yml'}", f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.cfg.ports.prometheus}", "--storage.tsdb.retention.time=7d",
                "--log.level=warn"]

    def restart_prometheus(self, down_s: float = 0.0) -> None:
        """Stop Prometheus and start it again on the same data after `down_s` (a fault a trial injects)."""
        state = self.read_state()
        stop([r for r in self.records() if r.name == "prometheus"])
        time.sleep(down_s)
        rec = spawn("prometheus", self._prometheus_argv(), self.logs / "prometheus.log")
        state["processes"] = [d for d in state["processes"] if d["name"] != "prometheus"] + [rec.to_dict()]
        self._write_state(state)
        self._wait_http(f"{self.prometheus_url}/-/ready", "prometheus")

    def _wait_http(self, url: str, name: str, headers: dict | None = None) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            if _http_ok(url, headers):
                return
            dead = [r for r in self.records() if r.name == name and not r.alive()]
            if dead:
                raise StackError(f"{name} exited during start; see {dead[0].log}")
            time.sleep(0.3)
        raise StackError(f"{name} not ready at {url} after {self.cfg.start_timeout_s:.0f}s; see {self.logs}")

    # ---- down
    def down(self, log=print) -> list[ProcessRecord]:
        """Stop every recorded process and its descendants; forget the state."""
        state = self.read_state() or {}
        stopped = stop(self.records())
        # `ray start` points later `ray.init()` calls at this cluster; once it is gone that
        # pointer would send them to a dead address. Remove it only if it is still ours.
        if state.get("ray_current_cluster") and _read(RAY_CURRENT_CLUSTER) == state["ray_current_cluster"]:
            RAY_CURRENT_CLUSTER.unlink(missing_ok=True)
        for rec in stopped:
            if "/" not in rec.name:
                log(f"stopped {rec.name} (pid {rec.pid})")
        if self._state_path().exists():
            self._state_path().unlink()
        return stopped

    # ---- status
    def status(self) -> list[Part]:
        """Health and URL of each part, from its process record and a probe."""
        recs = {r.name: r for r in self.records()}
        serve_config = self._state_serve_config()

        def proc_part(name: str, url: str, probe: str, headers: dict | None = None) -> Part:
            rec = recs.get(name)
            alive = rec is not None and rec.alive()
            ok = alive and _http_ok(probe, headers)
            return Part(name, ok, url, rec.pid if rec else None,
                        "" if ok else ("not running" if not alive else f"no answer at {probe}"))

        milvus = recs.get("milvus")
        m_ok = milvus is not None and milvus.alive() and ports.port_in_use(self.cfg.ports.milvus)
        ray = proc_part("ray", self.dashboard_url, f"{self.dashboard_url}/api/version", self.dashboard_headers())
        metrics_url = f"http://127.0.0.1:{self.cfg.ports.ray_metrics}/metrics"
        parts = [
            proc_part("prometheus", self.prometheus_url, f"{self.prometheus_url}/-/ready"),
            Part("milvus", m_ok, self.milvus_uri, milvus.pid if milvus else None, "" if m_ok else "not running"),
            proc_part("llm", f"{self.llm_url}/v1", f"{self.llm_url}/health"),
            ray,
            Part("ray metrics", ray.healthy and _http_ok(metrics_url), metrics_url, None),
        ]
        if serve_config:
            parts.append(self._serve_part(serve_config))
        return parts

    def _serve_part(self, serve_config: dict) -> Part:
        url = self.serve_url(serve_config)
        try:
            apps = deploy.app_statuses(deploy.serve_details(self.dashboard_url, self.dashboard_headers()))
        except httpx.HTTPError:
            return Part("serve", False, url, None, "Ray dashboard unreachable")
        wanted = [a["name"] for a in serve_config["applications"]]
        ok = all(apps.get(n) == "RUNNING" for n in wanted) and _http_ok(f"{url}/-/healthz")
        return Part("serve", ok, url, None, ", ".join(f"{n}={apps.get(n, 'MISSING')}" for n in wanted))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def last_line(path: Path, tail_bytes: int = 4096) -> str | None:
    """The last non-empty line of a log (its end only: logs grow), or None."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail_bytes))
            lines = [x.strip() for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _http_ok(url: str, headers: dict | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def running_stack(state_dir: Path, needed_by: str, *, start: bool = False, serve_config: Path | None = None,
                  can_start: bool = True, log=print) -> Stack:
    """The stack running from `state_dir`. None running: with `start`, one is started (on
    `serve_config`, else the shipped config); without, a StackError says what `needed_by`
    lacks and how to get it (`can_start`: the command offers --stack-up)."""
    stack = Stack.recorded(state_dir)
    if stack.running():
        return stack
    if not start:
        how = "run `tuner stack up` or pass --stack-up" if can_start else "run `tuner stack up` first"
        raise StackError(f"{needed_by} needs the stack: no stack is running from {state_dir}; {how}")
    settings = {"serve_config": serve_config} if serve_config else {}
    stack = Stack(StackConfig(state_dir=state_dir, **settings))
    stack.up(log=log)
    return stack
