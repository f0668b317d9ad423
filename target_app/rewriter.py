"""QueryRewriter: normalises a query and embeds it with all-MiniLM-L6-v2, batched."""

from __future__ import annotations

import re

from ray import serve

from target_app.batching import (
    BatchSettings,
    apply_batch_settings,
    live_batch_settings,
    off_loop,
    set_torch_threads,
)
from target_app.emulated import EmulatedDevice, EntityVectors
from target_app.user_config import RewriterConfig, compute_tables

_SPACES = re.compile(r"\s+")


def normalise(query: str) -> str:
    """Collapse whitespace and trim a trailing question mark run: the rewrite step."""
    return _SPACES.sub(" ", query).strip().rstrip("?!. ") + "?"


def load_embedder(path: str | None):
    """A SentenceTransformer from a local folder (offline), on CPU."""
    from sentence_transformers import SentenceTransformer

    from target_app.models.build import embedder_path

    return SentenceTransformer(path or str(embedder_path()), device="cpu", local_files_only=True)


@serve.deployment(name="QueryRewriter", max_ongoing_requests=32)
class QueryRewriter:
    def __init__(self):
        self._model = None
        self._model_key: object = object()
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config` in place (Serve calls this on update, without restart)."""
        cfg = RewriterConfig.model_validate(user_config or {})
        if cfg.compute.mode == "local":  # an emulated replica never imports torch
            set_torch_threads(cfg.torch_threads)
        if cfg.compute.mode == "local" and self._model_key != cfg.model_path:
            self._model = load_embedder(cfg.model_path)
            self._model_key = cfg.model_path
        self._table = compute_tables(cfg.compute).get("")
        if self._table is not None:
            self._device = EmulatedDevice(cfg.compute.cards)
            self._vectors = EntityVectors.of_corpus()
        apply_batch_settings(self.embed, cfg.batch)
        self.config = cfg

    async def __call__(self, query: str) -> dict:
        """Rewrite and embed one query: {'query': rewritten text, 'vector': 384 floats}."""
        text = normalise(query)
        return {"query": text, "vector": await self.embed(text), "compute": self.config.compute.label}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._table is not None:
            await self._device.run(self._table.milliseconds(len(texts)))
            return [self._vectors.vector(t) for t in texts]
        vectors = await off_loop(self._model.encode, texts, normalize_embeddings=True)
        return [v.tolist() for v in vectors]

    def batch_settings(self) -> dict:
        """The batch settings live in Serve's batch queue (to check that an update arrived)."""
        return live_batch_settings(self.embed)

