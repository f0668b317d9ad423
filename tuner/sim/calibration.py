"""What the simulator knows about the hardware: each deployment's service time against batch
size and its spread, replica start time, adapter load time, the per-hop and proxy overheads,
and the LLM backend's continuous-batching latency profile (a YAML file; `tuner profile` writes
one from the real stack, tuner/calibration_file.py reads and writes them).

Shipped: `local` (measured on this project's 2-core machine with `tuner profile`) and `gpu-h100`
(the same, with the embedding and rerank stages taken from the H100 measurements in
target_app/accelerators/h100.json: "what would this do on H100s"). A Serve config whose stages are
emulated needs neither: the simulator reads their tables (tuner/sim/emulated.py).
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

from target_app.llm_server.profile import LatencyProfile
from tuner.policies import Frozen

# Deployments whose model has H100 rows, and the row used for each (float16, as served).
GPU_STAGES = {"QueryRewriter": "minilm-l6-embed-seq64", "Reranker": "bge-reranker-large-seq256"}


class StageTiming(Frozen):
    """One deployment's own time: the mean ms of a batch by its size (linear between points,
    the last slope beyond), lognormally spread with coefficient of variation `cv`."""

    service_ms: tuple[tuple[PositiveInt, NonNegativeFloat], ...] = ((1, 1.0),)
    cv: NonNegativeFloat = Field(0.25, le=10)
    concurrency: PositiveInt | None = Field(None, description="requests its code serves at once; None: Serve's limit")
    start_s: NonNegativeFloat = Field(5.0, description="replica placed -> taking requests")
    load_ms: NonNegativeFloat = Field(0.0, description="multiplexed model load on a cache miss")
    cpu_bound: bool = Field(True, description="its time is host CPU work (shares the host's cores)")

    @field_validator("service_ms")
    @classmethod
    def _sorted(cls, v):
        if not v:
            raise ValueError("service_ms needs at least one [batch_size, ms] point")
        return tuple(sorted(dict(v).items()))

    def mean_ms(self, size: int) -> float:
        """Mean time of one batch of `size`."""
        pts = self.service_ms
        if len(pts) == 1 or size <= pts[0][0]:
            return pts[0][1]
        for (b0, m0), (b1, m1) in zip(pts, pts[1:]):
            if size <= b1:
                return m0 + (m1 - m0) * (size - b0) / (b1 - b0)
        (b0, m0), (b1, m1) = pts[-2], pts[-1]
        return max(0.0, m1 + (m1 - m0) * (size - b1) / (b1 - b0))

    def sampler(self, rng: random.Random):
        """A function size -> seconds drawing lognormal times with this mean and cv."""
        sigma2 = math.log1p(self.cv ** 2)
        sigma, shift = math.sqrt(sigma2), sigma2 / 2
        cache: dict[int, float] = {}
        draw = rng.lognormvariate

        def seconds(size: int, _rng=None) -> float:
            m = cache.get(size)
            if m is None:
                m = cache[size] = self.mean_ms(size) / 1000
            if m <= 0:
                return 0.0
            return m * draw(-shift, sigma) if sigma else m

        return seconds


class LLMCalibration(Frozen):
    """The LLM backend: the emulator's (or a vLLM's) latency profile and what the RAG chain sends."""

    profile: LatencyProfile = LatencyProfile()
    prompt_tokens: PositiveInt = Field(400, description="mean prompt of a RAG request (question + passages)")
    http_ms: NonNegativeFloat = Field(2.0, description="LLMGenerator <-> server overhead per request")
    engines: PositiveInt = Field(1, description="engine replicas behind the endpoint")
    start_s: NonNegativeFloat = Field(60.0, description="a new engine pod until it serves (model load)")


class Calibration(Frozen):
    name: str
    source: str = ""
    proxy_ms: NonNegativeFloat = Field(2.0, description="HTTP proxy overhead per request")
    host_cpus: PositiveFloat | None = Field(
        None, description="cores the measured host leaves to the app when idle (the local stack); None: no sharing")
    request_cpu_ms: dict[str, NonNegativeFloat] = Field(
        default_factory=dict, description="by route: host CPU a request costs outside the deployments' own work "
                                          "(proxy, Ray's routers and metrics, Milvus, the LLM server)")
    hop_ms: NonNegativeFloat = Field(1.0, description="one DeploymentHandle call, there and back")
    stages: dict[str, StageTiming] = Field(default_factory=dict, description="by deployment name")
    default_stage: StageTiming = StageTiming()
    llm: LLMCalibration = LLMCalibration()

    def stage(self, deployment: str) -> StageTiming:
        return self.stages.get(deployment, self.default_stage)


def with_gpu_stages(base: Calibration, rows: Sequence[Mapping], table: str, dtype: str = "float16") -> Calibration:
    """`base` with the stages that have H100 rows timed from them (their median per batch size):
    `rows` are the accelerator table `table`'s rows, each a mapping of its columns."""
    stages = dict(base.stages)
    for dep, model in GPU_STAGES.items():
        pts = tuple((int(r["batch"]), float(r["median_ms"])) for r in rows if r["model"] == model and r["dtype"] == dtype)
        if pts:
            p90 = [float(r["p90_ms"]) / float(r["median_ms"]) for r in rows if r["model"] == model and r["dtype"] == dtype]
            cv = max(0.02, math.log(sum(p90) / len(p90)) / 1.2816)  # lognormal sigma from p90/median
            stages[dep] = base.stage(dep).model_copy(update={"service_ms": pts, "cv": cv, "cpu_bound": False})
    return base.model_copy(update={"name": f"{base.name}+gpu-h100", "stages": stages,
                                   "source": f"{base.source}; {', '.join(GPU_STAGES)} from {table}"})
