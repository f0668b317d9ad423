"""VectorSearch: nearest passages in the Milvus collection `docs`."""

from __future__ import annotations

from ray import serve

from target_app.batching import off_loop
from target_app.user_config import SearchConfig
from target_app.vector_store import client_uri, ensure_collection


@serve.deployment(name="VectorSearch", max_ongoing_requests=16)
class VectorSearch:
    def __init__(self):
        self._client = None
        self._uri: str | None = None
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config`; reconnects only when the URI changed."""
        from pymilvus import MilvusClient

        cfg = SearchConfig.model_validate(user_config or {})
        if cfg.milvus_uri != self._uri:
            if self._client is not None:
                self._client.close()
            self._client = MilvusClient(client_uri(cfg.milvus_uri), timeout=cfg.timeout_s)
            self._uri = cfg.milvus_uri
        if cfg.build_if_missing:
            ensure_collection(self._client, cfg.collection)
        else:
            self._client.load_collection(cfg.collection)
        self.config = cfg

    async def __call__(self, vector: list[float], top_k: int = 20) -> list[dict]:
        """The `top_k` nearest passages: [{'id', 'text', 'score'}], best first."""
        hits = await off_loop(self._search, vector, top_k)
        return [{"id": int(h["id"]), "text": h["entity"]["text"], "score": float(h["distance"])} for h in hits]

    def _search(self, vector: list[float], top_k: int) -> list[dict]:
        res = self._client.search(
            self.config.collection, data=[vector], limit=top_k, output_fields=["text"], timeout=self.config.timeout_s
        )
        return list(res[0])
