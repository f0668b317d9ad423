"""RAGService: the FastAPI ingress of the RAG chain, mounted at route_prefix /rag.

POST /rag {"query", "top_k"?, "stream"?} runs rewrite -> search (top_k, default 20) ->
rerank (top 5) -> generate over deployment handles, and answers {"answer", "sources", ...}.

When the LLM backend fails, its circuit breaker is open, or generation runs past
`generate_budget_s`, the answer is the retrieved sources with `"degraded": true` and the reason
(the seed's checklist: degrade instead of hanging); a stream then ends with a `degraded` event.
"""


import asyncio
import json
import time

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from target_app.http import ingress_api
from target_app.user_config import RAGConfig

api = ingress_api("RAG service")


class RAGRequest(BaseModel):
    """Body of POST /rag."""

    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(None, ge=1, le=100, description="passages retrieved before reranking")
    stream: bool = False
    history: str | None = Field(None, max_length=200_000, description="earlier conversation, sent to the LLM only")
    max_tokens: int | None = Field(None, ge=1, le=8192, description="answer length; default from LLMGenerator's config")


async def _next(stream) -> tuple[bool, object]:
    """The stream's next item as (True, item), or (False, None) at its end (a task cannot
    raise StopAsyncIteration through asyncio.wait_for)."""
    try:
        return True, await stream.__anext__()
    except StopAsyncIteration:
        return False, None


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

    async def _retrieve(self, req: RAGRequest) -> tuple[str, list[dict], dict, dict]:
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
        # Which compute mode answered: the model stages say it (local, or emulated:<accelerator>).
        compute = {"rewrite": rewritten["compute"], "rerank": top[0]["compute"] if top else None}
        return rewritten["query"], top, stages, compute

    @api.post("/")
    async def rag(self, req: RAGRequest):
        """Answer a question from the document set, citing the passages used."""
        query, top, stages, compute = await self._retrieve(req)
        sources = [p["id"] for p in top]
        if req.stream:
            return StreamingResponse(self._stream(query, top, sources, compute, req), media_type="text/event-stream")
        t = time.perf_counter()
        response = self.generator.remote(query, top, req.history, req.max_tokens)
        try:
            answer = await asyncio.wait_for(response, self.config.generate_budget_s)
        except asyncio.TimeoutError:
            response.cancel()
            answer = {"text": None, "prompt_tokens": None, "completion_tokens": None,
                      "degraded": f"generation over its {self.config.generate_budget_s:g} s budget"}
        stages["generate"] = _ms(t)
        return {
            "answer": answer["text"],
            "sources": sources,
            "scores": [p["rerank_score"] for p in top],
            "usage": {"prompt_tokens": answer["prompt_tokens"], "completion_tokens": answer["completion_tokens"]},
            "degraded": answer.get("degraded") is not None,
            "degraded_reason": answer.get("degraded"),
            "stages_ms": stages,
            "compute": compute,
        }

    async def _stream(self, query: str, top: list[dict], sources: list[int], compute: dict, req: RAGRequest):
        yield f"data: {json.dumps({'sources': sources, 'compute': compute})}\n\n"
        deltas = self.generator.options(stream=True).stream.remote(query, top, req.history, req.max_tokens)
        deadline = time.monotonic() + self.config.generate_budget_s
        try:
            while True:
                more, delta = await asyncio.wait_for(_next(deltas), max(0.0, deadline - time.monotonic()))
                if not more:
                    break
                yield f"data: {json.dumps({'delta': delta['text'], 'tokens': delta['tokens']})}\n\n"
        except Exception as e:  # noqa: BLE001 - any failure of the generation degrades the answer
            deltas.cancel()
            reason = "circuit open" if "circuit open" in str(e) else f"generation failed: {type(e).__name__}"
            yield f"data: {json.dumps({'degraded': True, 'degraded_reason': reason})}\n\n"
        yield "data: [DONE]\n\n"
