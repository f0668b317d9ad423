"""The target app as the simulator runs it: the three Serve applications of target_app, built
from a Serve config and a calibration, on a cluster, with Serve's autoscaler on every
autoscaled deployment.

The graph is target_app/topology.py's (the tuner reaches the app only through its config, so
the call structure is read from there): /rag enters RAGService, which calls QueryRewriter,
VectorSearch, Reranker and LLMGenerator in turn (LLMGenerator calls the LLM endpoint);
/predict enters DomainRouter, which calls the classifier of the request's domain;
/v1/completions enters LoRACompletions, which calls MultiLoRAModel with the adapter as its
multiplexed model id. A caller holds its replica slot while it waits for the deployments it
calls. Batched deployments (@serve.batch in the code) take their batch settings from
`user_config.batch`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from target_app.topology import (
    BATCHED,
    BY_DOMAIN,
    CHAIN,
    DEPLOYMENTS,
    ITEMS_PER_REQUEST,
    LLM_CALLER,
    MULTIPLEXED,
    ROUTES,
)
from target_app.user_config import USER_CONFIGS
from tuner import serve_defaults
from tuner.errors import first_problem
from tuner.names import app_name, deployment_key
from tuner.policies.ray_autoscaler import per_node_limit
from tuner.policies.serve import ServeAutoscaling, initial_target
from tuner.sim.calibration import Calibration, StageTiming
from tuner.sim.cluster import Cluster, ClusterSpec, HPAWorkersLoop, RayAutoscalerLoop
from tuner.sim.deployment import DeploymentSpec, Replica, Request, SimDeployment
from tuner.sim.emulated import EmulatedLoRA, EmulatedTables, SimCard, emulated_stage
from tuner.sim.engine import Engine
from tuner.sim.host import Host
from tuner.sim.llm import HPALLMLoop, HPAOnLLM, SimLLM
from tuner.sim.serve_autoscaler import ServeAutoscaler

DEFAULT_MODELS_PER_REPLICA = 4  # the code's default max_models_per_replica
DEFAULT_BATCH = (8, 0.01)  # target_app.batching.BatchConfig's defaults
DEFAULT_LLM_MAX_TOKENS = 32


PROXY = "proxy"  # the Serve proxy: one process every HTTP request passes through


@dataclass
class Deployed:
    """One deployment's settings as the simulator uses them."""

    key: str
    name: str
    spec: DeploymentSpec
    replicas: int
    autoscaling: ServeAutoscaling | None
    demand: dict[str, float]
    user_config: dict = field(default_factory=dict)


def deployments_from_config(serve_config: dict) -> dict[str, Deployed]:
    """Every deployment of the config, by name (ValueError naming a deployment the graph lacks,
    or a deployment and the setting of it that the simulator cannot take)."""
    out = {}
    for app in serve_config.get("applications") or []:
        for d in app.get("deployments") or []:
            key = deployment_key(app_name(app), d["name"])
            try:
                out[d["name"]] = _deployed(app_name(app), key, d)
            except ValidationError as e:
                raise ValueError(f"{key}: {first_problem(e)}") from None
            except (TypeError, ValueError) as e:  # user_config is Serve's free-form dict
                raise ValueError(f"{key}: user_config: {e}") from None
    missing = sorted(set(DEPLOYMENTS) - set(out))
    if missing:
        raise ValueError(f"the Serve config lacks deployments the app's graph calls: {', '.join(missing)}")
    return out


def _deployed(app: str, key: str, d: dict) -> Deployed:
    name = d["name"]
    uc = d.get("user_config") or {}
    batch = uc.get("batch") or {}
    if not isinstance(batch, dict):
        raise ValueError(f"batch must be a mapping (got {type(batch).__name__})")
    batched = name in BATCHED
    size = int(batch.get("max_batch_size", DEFAULT_BATCH[0])) if batched else 1
    wait = float(batch.get("batch_wait_timeout_s", DEFAULT_BATCH[1])) if batched else 0.0
    ongoing = int(d.get("max_ongoing_requests") or serve_defaults.MAX_ONGOING_REQUESTS)
    mux = int(uc.get("max_models_per_replica", DEFAULT_MODELS_PER_REPLICA)) if name in MULTIPLEXED else 0
    spec = DeploymentSpec(name=name, max_ongoing_requests=ongoing,
                          max_queued_requests=int(d.get("max_queued_requests", serve_defaults.MAX_QUEUED_REQUESTS)),
                          max_batch_size=size, batch_wait_timeout_s=wait,
                          max_concurrent_batches=1 if batched else ongoing, max_models_per_replica=mux)
    auto = d.get("autoscaling_config")
    if d.get("num_replicas") == "auto":
        auto = {**serve_defaults.AUTO_AUTOSCALING, **(auto or {})}
    cfg = ServeAutoscaling.model_validate(auto) if auto else None
    replicas = initial_target(cfg) if cfg else int(d.get("num_replicas", serve_defaults.NUM_REPLICAS))
    opts = d.get("ray_actor_options") or {}
    cpus = opts.get("num_cpus")
    demand = {"CPU": serve_defaults.NUM_CPUS if cpus is None else float(cpus)}
    if opts.get("num_gpus"):
        demand["GPU"] = float(opts["num_gpus"])
    if d.get("max_replicas_per_node"):
        demand |= per_node_limit(app, name, d["max_replicas_per_node"])
    return Deployed(key, name, spec, replicas, cfg, demand, uc)


@dataclass
class ClientRequest:
    """One arrival and what the client sees of it."""

    i: int
    t: float
    path: str
    stream: bool
    adapter: str | None
    domain: str | None
    prompt_tokens: int | None
    max_tokens: int | None
    end: float = math.nan
    status: int = 0
    first_token: float = math.nan
    itl: list | None = None
    output_tokens: int | None = None
    dropped: bool = False


class SimApp:
    """The app on its cluster; `send` one ClientRequest, `run` to the end."""

    def __init__(self, serve_config: dict, cal: Calibration, cluster: ClusterSpec, *, seed: int, start: float,
                 until: float, tables: EmulatedTables, llm_hpa: HPAOnLLM | None = None, max_in_flight: int = 0):
        self.engine = Engine(start)
        self.max_in_flight, self.in_flight = max_in_flight, 0
        self.cal = cal
        self.deployed = deployments_from_config(serve_config)
        self.http_timeout_s = float((serve_config.get("http_options") or {}).get("request_timeout_s") or math.inf)
        rng = np.random.default_rng(seed)
        self._rng = random.Random(int(rng.integers(2**63)))
        self.cluster = Cluster(self.engine, cluster, lambda r: r.dep.demand, self._lost)
        self.deps: dict[str, SimDeployment] = {}
        self.tables = tables
        self.lora = EmulatedLoRA.from_tables(tables.get("MultiLoRAModel"))
        self._cards: dict[Replica, SimCard] = {}  # the emulated LoRA model's card of each replica
        self._timings: dict[str, StageTiming] = {}
        for name, d in self.deployed.items():
            timing = self._timings[name] = self._timing(name, d)
            spec = d.spec
            if timing.concurrency and name not in BATCHED:  # how much of Serve's limit its code runs at once
                spec = spec.model_copy(update={"max_concurrent_batches": min(timing.concurrency, spec.max_ongoing_requests)})
            dep = SimDeployment(self.engine, spec, d.replicas, timing.sampler(self._rng), rng, start_s=timing.start_s,
                                work=self._work_for(name), backoff=True, placer=self.cluster, demand=d.demand)
            self.deps[name] = dep
            if d.autoscaling:
                ServeAutoscaler(self.engine, dep, d.autoscaling, until)
        self.cluster.settle()
        # Replicas oversubscribe the host's cores only where Ray offers more CPUs than it has.
        self.host = Host(self.engine, cal.host_cpus) if cal.host_cpus and cluster.layer == "fixed" else None
        self._on_host = {n for n in self.deployed if self._timings[n].cpu_bound}
        self._request_cpu = {r: ms / 1000 for r, ms in cal.request_cpu_ms.items()} if self.host else {}
        if cluster.layer == "ray-autoscaler":
            RayAutoscalerLoop(self.engine, self.cluster, cluster.ray_autoscaler, until)
        elif cluster.layer == "hpa":
            HPAWorkersLoop(self.engine, self.cluster, cluster.hpa, Replica.busy_until_now, until)
        llm = cal.llm
        self.llm = SimLLM(self.engine, llm.profile, llm.engines, int(rng.integers(2**31)), llm.start_s)
        self.llm_hpa = HPALLMLoop(self.engine, self.llm, llm_hpa, until) if llm_hpa else None
        gen = self.deployed[LLM_CALLER].user_config
        self.llm_max_tokens = int(gen.get("max_tokens", DEFAULT_LLM_MAX_TOKENS))
        lora = self.deployed["MultiLoRAModel"].user_config
        self.lora_token_cap = int(lora.get("max_new_tokens", 64))
        self._half_proxy = cal.proxy_ms / 2000
        self._half_hop = cal.hop_ms / 2000

    def _timing(self, name: str, d: Deployed) -> StageTiming:
        """The calibration's timing of a deployment, or its accelerator table's when emulated."""
        cal = self.cal.stage(name)
        if name in BATCHED:
            return emulated_stage(self.tables.get(name), cal, d.spec.max_batch_size, self._items(name)) or cal
        if name in MULTIPLEXED and self.lora is not None:
            return cal.model_copy(update={"cpu_bound": False, "concurrency": None})
        return cal

    def _items(self, name: str) -> int:
        """The items one request brings to `name`'s model (ITEMS_PER_REQUEST; one otherwise), read
        from the deployment that sets them, through the app's own user_config model (its default
        where the config leaves the field out)."""
        if name not in ITEMS_PER_REQUEST:
            return 1
        owner, field = ITEMS_PER_REQUEST[name]
        return int(getattr(USER_CONFIGS[owner].model_validate(self.deployed[owner].user_config), field))

    def _lost(self, replica: Replica) -> None:
        replica.dep.lost(replica)

    # -- the client side -----------------------------------------------------------------
    def send(self, cr: ClientRequest) -> None:
        """The client sends `cr` at its time, unless its in-flight cap is reached (dropped)."""
        self.engine.at(cr.t, self._arrive, cr)

    def _arrive(self, cr: ClientRequest) -> None:
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            cr.dropped = True
            return
        self.in_flight += 1
        cpu = self._request_cpu.get(cr.path)
        if cpu:  # the stack's own CPU for this request, on its way in through the one proxy process
            self.host.run(cpu, self._enter, cr, PROXY)
        else:
            self.engine.after(self._half_proxy, self._enter, cr)

    def _enter(self, cr: ClientRequest) -> None:
        ingress = self.deps[ROUTES[cr.path]]
        ingress.submit(Request(cr.i, self.engine.now, self._answered, None, cr))

    def _answered(self, req: Request) -> None:
        cr = req.data
        cr.status = req.status if req.status in (200, 503) else 500
        cr.end = self.engine.now + self._half_proxy
        self.in_flight -= 1

    # -- the deployments' work -------------------------------------------------------------
    def _work_for(self, name: str):
        if name in CHAIN or name in BY_DOMAIN:
            return self._composite
        if name == LLM_CALLER:
            return self._generate
        if name in MULTIPLEXED:
            return self._multiplexed
        return self._leaf

    def _spend(self, replica: Replica, seconds: float, fn, arg) -> None:
        """`seconds` of a replica's own work: on the host's shared cores (the replica is one
        process) if its deployment is CPU-bound, else simply time."""
        if self.host is not None and replica.dep.spec.name in self._on_host:
            self.host.run(seconds, fn, arg, replica)
        else:
            self.engine.after(seconds, fn, arg)

    def _leaf(self, replica: Replica, batch: list[Request]) -> None:
        self._spend(replica, replica.dep.service(len(batch)), replica.finish, batch)

    def _composite(self, replica: Replica, batch: list[Request]) -> None:
        req = batch[0]
        cr: ClientRequest = req.data
        name = replica.dep.spec.name
        calls = CHAIN.get(name) or (BY_DOMAIN[name].get(cr.domain or ""),)
        if calls[0] is None:  # unknown domain: the router answers 400 without a call
            self._spend(replica, replica.dep.service(1), replica.finish, batch)
            return
        self._spend(replica, replica.dep.service(1), self._hop, (replica, batch, calls, 0))

    def _hop(self, state) -> None:
        self.engine.after(self._half_hop, self._call, state)

    def _call(self, state) -> None:
        replica, batch, calls, i = state
        cr = batch[0].data
        child = self.deps[calls[i]]
        model = cr.adapter if child.spec.max_models_per_replica else None

        def back(sub: Request) -> None:
            self.engine.after(self._half_hop, self._returned, (replica, batch, calls, i, sub.status))

        child.submit(Request(cr.i, self.engine.now, back, model, cr))

    def _returned(self, state) -> None:
        replica, batch, calls, i, status = state
        if status != 200:
            replica.finish(batch, 500)
        elif i + 1 == len(calls):
            replica.finish(batch)
        else:
            self.engine.after(self._half_hop, self._call, (replica, batch, calls, i + 1))

    def _generate(self, replica: Replica, batch: list[Request]) -> None:
        req = batch[0]
        cr: ClientRequest = req.data
        http = self.cal.llm.http_ms / 2000
        back = http + 2 * self._half_hop + self._half_proxy  # a token's way from the engine to the client
        prompt = cr.prompt_tokens or self.cal.llm.prompt_tokens
        out = cr.max_tokens or self.llm_max_tokens

        def first(t: float) -> None:
            if cr.stream:
                cr.first_token = t + back

        def done(itl) -> None:
            if itl is None:
                self.engine.after(http, replica.finish, batch)
                req.status = 500
                return
            cr.output_tokens = out
            if cr.stream:
                cr.itl = itl
            self.engine.after(http, replica.finish, batch)

        def send(_) -> None:
            self.engine.after(http, lambda _: self.llm.submit(prompt, out, first, done))

        self._spend(replica, replica.dep.service(1), send, None)

    def _multiplexed(self, replica: Replica, batch: list[Request]) -> None:
        req = batch[0]
        dep = replica.dep
        if self.lora is not None:
            cr: ClientRequest = req.data
            card = self._cards.get(replica)
            if card is None:
                card = self._cards[replica] = SimCard(self.engine, self.lora)
            tokens = min(cr.max_tokens or self.lora_token_cap, self.lora_token_cap)

            def generate() -> None:
                card.generate(cr.prompt_tokens or 1, tokens, lambda: replica.finish(batch))

            if req.miss:
                card.load(generate)
            else:
                generate()
            return
        t = dep.service(1)
        if req.miss:
            t += self.cal.stage(dep.spec.name).load_ms / 1000
        self._spend(replica, t, replica.finish, batch)

    # -- running -----------------------------------------------------------------------
    def run(self, until: float = math.inf) -> None:
        """Process events up to `until` (a request no replica ever takes retries for ever)."""
        self.engine.run(until)

    def timelines(self) -> dict[str, list[tuple[float, int]]]:
        """Running replicas per deployment key."""
        return {self.deployed[n].key: list(d.timeline) for n, d in self.deps.items()}

    def replica_starts(self, since: float) -> dict[str, int]:
        """Replicas that began running at or after `since`, per deployment key."""
        out = {}
        for n, d in self.deps.items():
            tl = d.timeline
            out[self.deployed[n].key] = sum(max(0, b[1] - a[1]) for a, b in zip(tl, tl[1:]) if b[0] >= since)
        return out
