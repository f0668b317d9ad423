"""Reranker: a sentence-transformers CrossEncoder scoring (query, passage) pairs, batched."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from target_app.batching import (
    BatchSettings,
    apply_batch_settings,
    live_batch_settings,
    off_loop,
    set_torch_threads,
)
from target_app.compute import ComputeConfig, ServiceTimeProfile, hold_for


class RerankConfig(BaseModel):
    """`user_config` of Reranker."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = Field(None, description="CrossEncoder folder or name; default: the locally built MiniLM cross-encoder")
    top_n: int = Field(5, ge=1, le=100)
    batch: BatchSettings = BatchSettings(max_batch_size=4, batch_wait_timeout_s=0.005)
    compute: ComputeConfig = ComputeConfig()
    torch_threads: int = Field(1, ge=1, le=64)
    max_length: int = Field(256, ge=16, le=512)


def load_cross_encoder(path: str | None, max_length: int):
    """The real `CrossEncoder(path)` load, offline, on CPU."""
    from sentence_transformers import CrossEncoder

    from target_app.models.build import cross_encoder_path

    return CrossEncoder(path or str(cross_encoder_path()), device="cpu", max_length=max_length, local_files_only=True)


@serve.deployment(name="Reranker", max_ongoing_requests=16)
class Reranker:
    def __init__(self):
        self._model = None
        self._model_key: object = object()
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config` in place; reloads the model only if its path changed."""
        cfg = RerankConfig.model_validate(user_config or {})
        set_torch_threads(cfg.torch_threads)
        key = (cfg.model_path, cfg.max_length)
        if cfg.compute.mode == "local" and self._model_key != key:
            self._model = load_cross_encoder(cfg.model_path, cfg.max_length)
            self._model_key = key
        self._profile = ServiceTimeProfile.from_config(cfg.compute) if cfg.compute.mode == "profile" else None
        apply_batch_settings(self.score, cfg.batch)
        self.config = cfg

    async def __call__(self, query: str, passages: list[dict]) -> list[dict]:
        """The `top_n` passages by cross-encoder score, each with 'rerank_score' added."""
        scores = await self.score((query, [p["text"] for p in passages]))
        ranked = sorted(zip(scores, passages), key=lambda sp: sp[0], reverse=True)
        return [{**p, "rerank_score": float(s)} for s, p in ranked[: self.config.top_n]]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def score(self, requests: list[tuple[str, list[str]]]) -> list[list[float]]:
        pairs = [(q, text) for q, texts in requests for text in texts]
        if self._profile is not None:
            await hold_for(self._profile, len(pairs))
            # Stand-in scores keep the retrieval order: first candidate scores highest.
            return [[-float(i) for i in range(len(texts))] for _, texts in requests]
        flat = await off_loop(self._model.predict, pairs) if pairs else []
        out, i = [], 0
        for _, texts in requests:
            out.append([float(s) for s in flat[i : i + len(texts)]])
            i += len(texts)
        return out

    def batch_settings(self) -> dict:
        """The batch settings live in Serve's batch queue."""
        return live_batch_settings(self.score)
