"""RAGService: the FastAPI ingress of the RAG chain, mounted at route_prefix /rag.

POST /rag {"query", "top_k"?, "stream"?} runs rewrite -> search (top_k, default 20) ->
rerank (top 5) -> generate over deployment handles, and answers {"answer", "sources", ...}.
"""


import json
import time

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from target_app.http import ingress_api

api = ingress_api("RAG service")


class RAGRequest(BaseModel):
    """Body of POST /rag."""

    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(None, ge=1, le=100, description="passages retrieved before reranking")
    stream: bool = False
    history: str | None = Field(None, max_length=200_000, description="earlier conversation, sent to the LLM only")
    max_tokens: int | None = Field(None, ge=1, le=8192, description="answer length; default from LLMGenerator's config")


class RAGConfig(BaseModel):
    """`user_config` of RAGService."""

    model_config = ConfigDict(extra="forbid")

    search_top_k: int = Field(20, ge=1, le=100)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


@serve.deployment(name="RAGService", max_ongoing_requests=64)
@serve.ingress(api)
class RAGService:
    def __init__(self, rewriter: DeploymentHandle, search: DeploymentHandle, reranker: DeploymentHandle,
                 generator: DeploymentHandle):
        self.rewriter, self.search, self.reranker, self.generator = rewriter, search, reranker, generator
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config` in place."""
        self.config = RAGConfig.model_validate(user_config or {})

    async def _retrieve(self, req: RAGRequest) -> tuple[str, list[dict], dict]:
        stages = {}
        t = time.perf_counter()
        rewritten = await self.rewriter.remote(req.query)
        stages["rewrite"] = _ms(t)
        t = time.perf_counter()
        candidates = await self.search.remote(rewritten["vector"], req.top_k or self.config.search_top_k)
        stages["search"] = _ms(t)
        t = time.perf_counter()
        top = await self.reranker.remote(rewritten["query"], candidates)
        stages["rerank"] = _ms(t)
        return rewritten["query"], top, stages

    @api.post("/")
    async def rag(self, req: RAGRequest):
        """Answer a question from the document set, citing the passages used."""
        query, top, stages = await self._retrieve(req)
        sources = [p["id"] for p in top]
        if req.stream:
            return StreamingResponse(self._stream(query, top, sources, req), media_type="text/event-stream")
        t = time.perf_counter()
        answer = await self.generator.remote(query, top, req.history, req.max_tokens)
        stages["generate"] = _ms(t)
        return {
            "answer": answer["text"],
            "sources": sources,
            "scores": [p["rerank_score"] for p in top],
            "usage": {"prompt_tokens": answer["prompt_tokens"], "completion_tokens": answer["completion_tokens"]},
            "stages_ms": stages,
        }

    async def _stream(self, query: str, top: list[dict], sources: list[int], req: RAGRequest):
        yield f"data: {json.dumps({'sources': sources})}\n\n"
        async for delta in self.generator.options(stream=True).stream.remote(query, top, req.history, req.max_tokens):
            yield f"data: {json.dumps({'delta': delta})}\n\n"
        yield "data: [DONE]\n\n"
