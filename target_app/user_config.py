"""Every deployment's `user_config` model, by deployment name, without Ray.

The deployments validate their own `user_config` in `reconfigure`; the tuner checks a whole Serve
config with the same models (`check_deployment`) before anything deploys, so that a typo or a
compute setting no accelerator table can serve is refused with the field named, not found by a
replica failing to start.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

from target_app.batching import BatchSettings
from target_app.breaker import BreakerConfig
from target_app.compute import ComputeConfig, ServiceTimeTable
from target_app.topology import CLASSIFIERS

# The emulated LoRA model's tables: `<stage>-prefill` (by prompt tokens), `-decode` (one step,
# by running sequences) and `-load` (one adapter brought onto the device).
LORA_TABLES = ("-prefill", "-decode", "-load")


class ModelStageConfig(BaseModel):
    """What every batched model stage takes: its model, batch settings and compute mode."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = Field(None, description="the model's folder; default: the locally built or packaged one")
    batch: BatchSettings = BatchSettings(max_batch_size=16, batch_wait_timeout_s=0.005)
    compute: ComputeConfig = ComputeConfig()
    torch_threads: int = Field(1, ge=1, le=64)


class RewriterConfig(ModelStageConfig):
    """`user_config` of QueryRewriter (model_path: a sentence-transformers folder; default: the
    packaged MiniLM)."""


class SearchConfig(BaseModel):
    """`user_config` of VectorSearch."""

    model_config = ConfigDict(extra="forbid")

    milvus_uri: str = Field(
        default_factory=lambda: os.environ.get("TARGET_APP_MILVUS_URI", "milvus.db"),
        description="Milvus URI (http://host:port) or a Milvus Lite file ending in .db (relative to the data dir); "
        "default: $TARGET_APP_MILVUS_URI, which the stack sets to its Milvus Lite server",
    )
    collection: str = "docs"
    build_if_missing: bool = Field(True, description="build the collection from the shipped corpus when absent")
    timeout_s: float = Field(10.0, gt=0, le=300)


class RerankConfig(ModelStageConfig):
    """`user_config` of Reranker (model_path: a CrossEncoder folder; default: the locally built
    MiniLM cross-encoder)."""

    top_n: int = Field(5, ge=1, le=100)
    batch: BatchSettings = BatchSettings(max_batch_size=4, batch_wait_timeout_s=0.005)
    max_length: int = Field(256, ge=16, le=512)


class GeneratorConfig(BaseModel):
    """`user_config` of LLMGenerator."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default_factory=lambda: os.environ.get("TARGET_APP_LLM_URL", "http://127.0.0.1:8100/v1"),
        description="OpenAI-compatible base URL (the emulator, or a real vLLM); default: $TARGET_APP_LLM_URL",
    )
    model: str = "emulated-llama-3.1-8b"
    api_key: str = "EMPTY"
    max_tokens: int = Field(32, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(30.0, gt=0, le=600)
    stream_interval_ms: float = Field(
        0.0, ge=0, le=10_000,
        description="gather streamed tokens for this long before passing them on (the first at once); "
                    "0 passes each token: every hop through Serve costs CPU per message")
    breaker: BreakerConfig = BreakerConfig()


class RAGConfig(BaseModel):
    """`user_config` of RAGService."""

    model_config = ConfigDict(extra="forbid")

    search_top_k: int = Field(20, ge=1, le=100)
    generate_budget_s: float = Field(15.0, gt=0, le=600, description="answer without the LLM after this long")


class ClassifierConfig(ModelStageConfig):
    """`user_config` of a domain classifier (model_path: the classifier's folder; default: the
    locally trained one)."""


class LoRAConfig(BaseModel):
    """`user_config` of MultiLoRAModel."""

    model_config = ConfigDict(extra="forbid")

    base_path: str | None = Field(None, description="base model folder; default: the locally built one")
    adapters_path: str | None = Field(None, description="folder of adapter folders; default: the locally built ones")
    max_models_per_replica: int = Field(4, ge=1, le=1024, description="adapters cached per replica (LRU)")
    max_new_tokens: int = Field(64, ge=1, le=256, description="cap on max_tokens")
    compute: ComputeConfig = ComputeConfig()
    torch_threads: int = Field(1, ge=1, le=64)

    @model_validator(mode="after")
    def _generative_tables(self) -> "LoRAConfig":
        if self.compute.mode == "emulated" and self.compute.table is not None:
            raise ValueError("compute.table: the emulated LoRA model replays an accelerator's -prefill, -decode and "
                             "-load tables: set compute.accelerator and compute.stage instead")
        if self.compute.devices < 1:
            raise ValueError(f"compute.devices {self.compute.devices:g}: the LoRA model needs whole cards; its decode "
                             "steps are bound by memory bandwidth, which a partition of the card's SMs does not divide")
        return self


USER_CONFIGS: dict[str, type[BaseModel]] = {
    "QueryRewriter": RewriterConfig, "VectorSearch": SearchConfig, "Reranker": RerankConfig,
    "LLMGenerator": GeneratorConfig, "RAGService": RAGConfig, "MultiLoRAModel": LoRAConfig,
    **dict.fromkeys(CLASSIFIERS.values(), ClassifierConfig),
}


def compute_tables(compute: ComputeConfig, suffixes: tuple[str, ...] = ("",)) -> dict[str, ServiceTimeTable]:
    """The accelerator tables an emulated deployment replays, by table suffix ('' for a batched
    stage's one table, LORA_TABLES for the LoRA model's); ValueError naming the missing
    accelerator, stage or dtype. Empty in `local` mode."""
    if compute.mode != "emulated":
        return {}
    return {s: ServiceTimeTable.from_config(compute, s) for s in suffixes}


def check_deployment(name: str, deployment: dict) -> BaseModel | None:
    """A deployment's `user_config` validated with its model, and its compute tables resolved
    against the batch sizes it can form (pydantic's ValidationError, or ValueError with the
    field's path). None for a deployment without a model."""
    model = USER_CONFIGS.get(name)
    if model is None:
        return None
    cfg = model.model_validate(deployment.get("user_config") or {})
    compute = getattr(cfg, "compute", None)
    if compute is None:
        return cfg
    try:
        tables = compute_tables(compute, LORA_TABLES if name == "MultiLoRAModel" else ("",))
    except ValueError as e:
        raise ValueError(f"user_config.{e}") from None
    largest = {"": cfg.batch.max_batch_size} if hasattr(cfg, "batch") else {
        "-decode": int(deployment.get("max_ongoing_requests") or 5)}
    for suffix, size in largest.items():
        if suffix in tables:
            try:
                tables[suffix].check_batch(size)
            except ValueError as e:
                field = "batch.max_batch_size" if suffix == "" else "max_ongoing_requests (decode batch)"
                raise ValueError(f"user_config.compute: {field}: {e}") from None
    return cfg
