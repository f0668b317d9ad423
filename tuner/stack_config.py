"""Typed settings of the local stack: ports, folders, sizes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuner.paths import SERVE_CONFIG

_PORT = dict(ge=1024, le=65535)


class StackPorts(BaseModel):
    """Loopback ports of the stack's services (the Serve HTTP port comes from the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    ray_gcs: int = Field(6390, **_PORT)
    ray_dashboard: int = Field(8265, **_PORT)
    ray_metrics: int = Field(8090, **_PORT, description="Ray's metrics export port (Serve's ray_serve_* metrics)")
    llm: int = Field(8100, **_PORT)
    milvus: int = Field(19530, **_PORT)
    prometheus: int = Field(9090, **_PORT)

    @model_validator(mode="after")
    def _distinct(self) -> "StackPorts":
        used: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if port in used:
                raise ValueError(f"ports.{name} and ports.{used[port]} are both {port}")
            used[port] = name
        return self


class StackConfig(BaseModel):
    """Everything `tuner stack up` needs."""

    model_config = ConfigDict(extra="forbid")

    ports: StackPorts = StackPorts()
    state_dir: Path = Path(".tuner/stack")
    serve_config: Path = SERVE_CONFIG
    ray_num_cpus: int = Field(16, ge=1, le=1024, description="logical CPUs the Ray head offers to replicas")
    ray_metrics_report_ms: int = Field(
        5000, ge=100, le=60_000, description="how often Ray workers export metrics (Ray's default is 10000)"
    )
    serve_metrics_export_ms: int = Field(
        1000, ge=0, le=60_000, description="how often Serve's replicas and routers hand their cached metrics to "
                                           "Ray's metric API (Serve's default is 100; 0 disables the cache)")
    # Ray's metrics agent renders every series at each scrape: a 1 s scrape cost this 2-core
    # host 0.2 of a core while idle (BENCHMARKS.md, "Ceiling"). Serve's autoscaler does not read
    # Prometheus, so only the trial's record gets coarser.
    scrape_interval_s: float = Field(5.0, ge=0.5, le=60)
    llm_profile: str = "h100-llama3-8b"
    deploy_app: bool = True
    deploy_timeout_s: float = Field(600, gt=0, le=3600)
    start_timeout_s: float = Field(120, gt=0, le=3600)
