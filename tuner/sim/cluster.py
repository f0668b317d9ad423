"""The cluster under the app in the simulator: Ray nodes, where replicas are placed, and the
layer that sizes the node pool (none, the Ray autoscaler, or an HPA on the worker pods).

A replica reserves its logical resources (`ray_actor_options`) on the first node with room,
head first, as Ray's scheduler places an actor without a strategy; one that fits nowhere waits
as pending demand. The Ray autoscaler (`tuner.policies.ray_autoscaler.decide`, every `loop_s`)
launches worker pods for that demand, which join `pod_start_s` later, and removes pods idle past
their timeout. An HPA (`tuner.policies.hpa.reconcile`, every sync period) sets the worker
group's pod count from the pods' CPU utilisation, as the seed deploys it: KubeRay then adds or
deletes pods, and replicas on a deleted pod die and are replaced by Serve.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from tuner.policies import Frozen
from tuner.policies.hpa import HPASpec, HPAState, Observed, PodSample, reconcile
from tuner.policies.ray_autoscaler import Node, RayAutoscalerConfig, Resources, WorkerGroup, decide, fits, give, take
from tuner.sim.engine import Engine

HEAD = "head"


class HPAOnWorkers(Frozen):
    """An HPA on one worker group's pods (RayCluster scale subresource)."""

    group: str
    spec: HPASpec
    sync_period_s: PositiveFloat = 15.0
    metrics_window_s: PositiveFloat = Field(30.0, description="metrics-server's CPU sample window")
    pod_start_s: NonNegativeFloat = 30.0


class ClusterSpec(Frozen):
    """The Ray cluster: the head's resources, the worker groups, and what sizes them."""

    layer: Literal["fixed", "ray-autoscaler", "hpa"] = "fixed"
    head: Resources = Field(default_factory=lambda: {"CPU": 16.0}, description="what the head offers replicas")
    groups: tuple[WorkerGroup, ...] = ()
    workers: dict[str, int] = Field(default_factory=dict, description="fixed layer: pods per group")
    ray_autoscaler: RayAutoscalerConfig | None = None
    hpa: HPAOnWorkers | None = None

    @model_validator(mode="after")
    def _layer_settings(self) -> "ClusterSpec":
        names = {g.name for g in self.groups}
        if self.layer == "ray-autoscaler" and self.ray_autoscaler is None:
            raise ValueError("layer ray-autoscaler needs ray_autoscaler settings")
        if self.layer == "hpa":
            if self.hpa is None:
                raise ValueError("layer hpa needs hpa settings")
            if self.hpa.group not in names:
                raise ValueError(f"hpa.group {self.hpa.group!r} is not one of the groups ({', '.join(sorted(names))})")
        unknown = set(self.workers) - names
        if unknown:
            raise ValueError(f"workers names unknown groups: {', '.join(sorted(unknown))}")
        return self

    def all_groups(self) -> tuple[WorkerGroup, ...]:
        """The worker groups, with the Ray autoscaler's bounds when it runs them."""
        return self.ray_autoscaler.groups if self.layer == "ray-autoscaler" and self.ray_autoscaler else self.groups


class SimNode:
    __slots__ = ("id", "group", "total", "available", "status", "replicas", "idle_since", "started")

    def __init__(self, nid: str, group: str | None, total: Resources, status: str, now: float):
        self.id, self.group, self.total, self.status = nid, group, dict(total), status
        self.available = dict(total)
        self.replicas: set = set()
        self.idle_since: float | None = now
        self.started = now

    def fits(self, demand: Resources) -> bool:
        return fits(self.available, demand)


class Cluster:
    """Nodes, placement and pending demand; node counts per group over time."""

    def __init__(self, engine: Engine, spec: ClusterSpec, demand_of: Callable[[object], Resources],
                 on_lost: Callable[[object], None] = lambda r: None):
        self.engine, self.spec, self.demand_of, self.on_lost = engine, spec, demand_of, on_lost
        self.nodes: dict[str, SimNode] = {}
        self.pending: deque = deque()  # (replica, callback, since) waiting for room
        self.timeline: dict[str, list[tuple[float, int]]] = {}  # pods per group, pending ones included
        self.joined: dict[str, list[tuple[float, int]]] = {}    # pods whose Ray node has joined
        self._ids = 0
        self._add_node(HEAD, None, spec.head, "running")
        groups = {g.name: g for g in spec.all_groups()}
        start = dict(spec.workers)
        for g in groups.values():
            start[g.name] = max(start.get(g.name, 0), g.min_workers)
        if spec.layer == "hpa":
            start[spec.hpa.group] = max(start.get(spec.hpa.group, 0), spec.hpa.spec.min_replicas)
        for name, count in start.items():
            for _ in range(count):
                self._add_node(None, name, groups[name].resources, "running")
        self._record()

    # -- placement ---------------------------------------------------------------------
    def request(self, replica, placed: Callable[[object], None]) -> None:
        """Place `replica` now if a node has room, else when one has; then call `placed`."""
        if not self._try_place(replica, placed):
            self.pending.append((replica, placed, self.engine.now))

    def _try_place(self, replica, placed) -> bool:
        demand = self.demand_of(replica)
        for node in self._running_nodes():
            if node.fits(demand):
                take(node.available, demand)
                node.replicas.add(replica)
                node.idle_since = None
                replica.node = node
                placed(replica)
                return True
        return False

    def release(self, replica) -> None:
        """A replica is gone (stopped, or cancelled before it was placed)."""
        node = replica.node
        if node is None:
            self.pending = deque(p for p in self.pending if p[0] is not replica)
            return
        replica.node = None
        if replica in node.replicas:
            node.replicas.discard(replica)
            give(node.available, self.demand_of(replica))
            if not node.replicas:
                node.idle_since = self.engine.now
        self._drain_pending()

    def settle(self) -> None:
        """Start from a settled cluster, as a trial does after deploying: worker pods (running,
        within each group's max) for the starting replicas that found no room."""
        groups = {g.name: g for g in self.spec.all_groups()}
        count = self.counts()
        while self.pending:
            demand = self.demand_of(self.pending[0][0])
            fit = next((g for g in groups.values() if count[g.name] < g.max_workers
                        and fits(g.resources, demand)), None)
            if fit is None:
                return
            self._add_node(None, fit.name, fit.resources, "running")
            count[fit.name] += 1
            self._drain_pending()
        self._record()

    def _drain_pending(self) -> None:
        still = deque()
        while self.pending:
            replica, cb, since = self.pending.popleft()
            if not self._try_place(replica, cb):
                still.append((replica, cb, since))
        self.pending = still

    def _running_nodes(self):
        return [n for n in self.nodes.values() if n.status == "running"]

    # -- nodes ---------------------------------------------------------------------------
    def _add_node(self, nid: str | None, group: str | None, total: Resources, status: str) -> SimNode:
        if nid is None:
            self._ids += 1
            nid = f"{group}-{self._ids}"
        node = self.nodes[nid] = SimNode(nid, group, total, status, self.engine.now)
        return node

    def launch(self, group: str, pod_start_s: float) -> None:
        """A worker pod is created; its Ray node joins `pod_start_s` later."""
        g = next(g for g in self.spec.all_groups() if g.name == group)
        node = self._add_node(None, group, g.resources, "pending")
        self._record()
        self.engine.after(pod_start_s, self._joined, node)

    def _joined(self, node: SimNode) -> None:
        if node.id in self.nodes and node.status == "pending":
            node.status = "running"
            node.idle_since = self.engine.now
            self._record()
            self._drain_pending()

    def remove(self, nid: str) -> None:
        """A worker pod is deleted; replicas on it die (Serve replaces them)."""
        node = self.nodes.pop(nid, None)
        if node is None:
            return
        for replica in list(node.replicas):
            replica.node = None
            self.on_lost(replica)
        self._record()

    def counts(self) -> dict[str, int]:
        """Worker pods per group (pending included: they are paid from creation)."""
        out = {g.name: 0 for g in self.spec.all_groups()}
        for n in self.nodes.values():
            if n.group is not None:
                out[n.group] = out.get(n.group, 0) + 1
        return out

    def _record(self) -> None:
        now = self.engine.now
        joined = {g.name: 0 for g in self.spec.all_groups()}
        for n in self.nodes.values():
            if n.group is not None and n.status == "running":
                joined[n.group] = joined.get(n.group, 0) + 1
        for timelines, counts in ((self.timeline, {HEAD: 1, **self.counts()}), (self.joined, joined)):
            for group, n in counts.items():
                tl = timelines.setdefault(group, [(now, n)])
                if tl[-1][1] != n:
                    tl.append((now, n))

    def policy_nodes(self) -> list[Node]:
        """The nodes as the Ray autoscaler sees them."""
        return [Node(id=n.id, group=n.group, status=n.status, total=n.total, available=n.available,
                     idle_since=n.idle_since) for n in self.nodes.values()]


class RayAutoscalerLoop:
    """The Ray autoscaler's iterations over a Cluster."""

    def __init__(self, engine: Engine, cluster: Cluster, cfg: RayAutoscalerConfig, until: float):
        self.engine, self.cluster, self.cfg, self.until = engine, cluster, cfg, until
        engine.after(cfg.loop_s, self._tick)

    def _tick(self, _=None) -> None:
        c = self.cluster
        # The GCS pulls pending demand from the raylets every second: the autoscaler sees a
        # replica's demand only once it has waited that long (measured against the real one).
        seen = self.engine.now - self.cfg.demand_lag_s
        demands = [c.demand_of(r) for r, _, since in c.pending if since <= seen]
        d = decide(self.cfg, c.policy_nodes(), demands, self.engine.now)
        for nid in d.terminate:
            c.remove(nid)
        for group, n in d.launch.items():
            for _ in range(n):
                c.launch(group, self.cfg.pod_start_s)
        if self.engine.now + self.cfg.loop_s <= self.until:
            self.engine.after(self.cfg.loop_s, self._tick)


class HPAWorkersLoop:
    """An HPA on a worker group's pods, syncing every period on their CPU utilisation: what
    the replicas on a pod kept busy over the metrics window, per CPU the pod requests."""

    def __init__(self, engine: Engine, cluster: Cluster, cfg: HPAOnWorkers, busy_s: Callable[[object], float],
                 until: float):
        self.engine, self.cluster, self.cfg, self.busy_s, self.until = engine, cluster, cfg, busy_s, until
        self.state = HPAState()
        self.samples: dict[str, deque] = {}
        self.decisions: list[tuple[float, int]] = []
        self._sample_every = min(5.0, cfg.sync_period_s)
        engine.after(self._sample_every, self._sample)
        engine.after(cfg.sync_period_s, self._sync)

    def _cpu_used_s(self, node: SimNode) -> float:
        return sum(self.busy_s(r) * self.cluster.demand_of(r).get("CPU", 0.0) for r in node.replicas)

    def _sample(self, _=None) -> None:
        now = self.engine.now
        for node in self.cluster.nodes.values():
            if node.group == self.cfg.group and node.status == "running":
                q = self.samples.setdefault(node.id, deque())
                q.append((now, self._cpu_used_s(node)))
                while q and q[0][0] < now - self.cfg.metrics_window_s:
                    q.popleft()
        if now + self._sample_every <= self.until:
            self.engine.after(self._sample_every, self._sample)

    def _pods(self) -> tuple[PodSample, ...]:
        now, out = self.engine.now, []
        for node in self.cluster.nodes.values():
            if node.group != self.cfg.group:
                continue
            cpus = node.total.get("CPU", 1.0)
            q = self.samples.get(node.id)
            metrics = {}
            if node.status == "running" and q and len(q) >= 2 and q[-1][0] > q[0][0]:
                used = (q[-1][1] - q[0][1]) / (q[-1][0] - q[0][0])  # cores, averaged over the window
                metrics["cpu"] = int(round(used * 1000))
            out.append(PodSample(phase="Running" if node.status == "running" else "Pending",
                                 ready=node.status == "running", ready_changed_s=node.started,
                                 start_s=node.started, requests={"cpu": int(cpus * 1000)}, metrics=metrics,
                                 sample_s=now, sample_window_s=self.cfg.metrics_window_s))
        return tuple(out)

    def _sync(self, _=None) -> None:
        c, now = self.cluster, self.engine.now
        current = c.counts()[self.cfg.group]
        d = reconcile(self.cfg.spec, Observed(current_replicas=current, pods=self._pods()), self.state, now)
        self.state = d.state
        if d.desired_replicas > current:
            for _ in range(d.desired_replicas - current):
                c.launch(self.cfg.group, self.cfg.pod_start_s)
        elif d.desired_replicas < current:
            members = [n for n in c.nodes.values() if n.group == self.cfg.group]
            # KubeRay deletes the pods it is told to; with no list, those with the least on them.
            for node in sorted(members, key=lambda n: (n.status == "running", len(n.replicas)))[:current - d.desired_replicas]:
                c.remove(node.id)
        self.decisions.append((now, d.desired_replicas))
        if now + self.cfg.sync_period_s <= self.until:
            self.engine.after(self.cfg.sync_period_s, self._sync)
