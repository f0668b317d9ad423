"""Reranker: a sentence-transformers CrossEncoder scoring (query, passage) pairs, batched."""

from __future__ import annotations

from ray import serve

from target_app.batching import (
    BatchSettings,
    apply_batch_settings,
    live_batch_settings,
    off_loop,
    set_torch_threads,
)
from target_app.emulated import EmulatedDevice
from target_app.user_config import RerankConfig, compute_tables


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
        if cfg.compute.mode == "local":  # an emulated replica never imports torch
            set_torch_threads(cfg.torch_threads)
        key = (cfg.model_path, cfg.max_length)
        if cfg.compute.mode == "local" and self._model_key != key:
            self._model = load_cross_encoder(cfg.model_path, cfg.max_length)
            self._model_key = key
        self._table = compute_tables(cfg.compute).get("")
        if self._table is not None:
            self._device = EmulatedDevice(cfg.compute.cards)
        apply_batch_settings(self.score, cfg.batch)
        self.config = cfg

    async def __call__(self, query: str, passages: list[dict]) -> list[dict]:
        """The `top_n` passages by cross-encoder score, each with 'rerank_score' added."""
        scores = await self.score((query, [p["text"] for p in passages]))
        ranked = sorted(zip(scores, passages), key=lambda sp: sp[0], reverse=True)
        return [{**p, "rerank_score": float(s), "compute": self.config.compute.label}
                for s, p in ranked[: self.config.top_n]]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def score(self, requests: list[tuple[str, list[str]]]) -> list[list[float]]:
        pairs = [(q, text) for q, texts in requests for text in texts]
        if self._table is not None:
            await self._device.run(self._table.milliseconds(len(pairs)))
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
