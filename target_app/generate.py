"""LLMGenerator: answers from the reranked passages through an OpenAI-compatible endpoint.

Uses the async OpenAI client, so a slow LLM never blocks the replica's event loop (the
blocking client inside an async method is the seed article's pitfall). A circuit breaker
(target_app/breaker.py, settings in `user_config.breaker`) stops calling a backend that keeps
failing: the answer then comes back at once marked `degraded`, and the caller answers
without it.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from ray import serve

from target_app.breaker import BreakerOpen, CircuitBreaker
from target_app.user_config import GeneratorConfig


def build_prompt(query: str, passages: list[dict], history: str | None = None) -> list[dict]:
    """Chat messages that ground the answer in the numbered passages, after any earlier conversation."""
    context = "\n".join(f"[{p['id']}] {p['text']}" for p in passages)
    earlier = [{"role": "user", "content": history}] if history else []
    return [
        {"role": "system", "content": "Answer using only the sources. Cite source ids in brackets."},
        *earlier,
        {"role": "user", "content": f"Sources:\n{context}\n\nQuestion: {query}"},
    ]


@serve.deployment(name="LLMGenerator", max_ongoing_requests=64)
class LLMGenerator:
    def __init__(self):
        self._client = None
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config`; the client is rebuilt for the new endpoint and timeout."""
        from openai import AsyncOpenAI

        cfg = GeneratorConfig.model_validate(user_config or {})
        self._client = AsyncOpenAI(base_url=cfg.base_url, api_key=cfg.api_key, timeout=cfg.timeout_s, max_retries=0)
        self.breaker = CircuitBreaker(cfg.breaker, time.monotonic)
        self.config = cfg

    def _request(self, query: str, passages: list[dict], history: str | None, max_tokens: int | None, **extra):
        return self._client.chat.completions.create(
            model=self.config.model, messages=build_prompt(query, passages, history),
            max_tokens=max_tokens or self.config.max_tokens, temperature=self.config.temperature, **extra)

    async def __call__(self, query: str, passages: list[dict], history: str | None = None,
                       max_tokens: int | None = None) -> dict:
        """The whole answer: {'text', 'prompt_tokens', 'completion_tokens', 'degraded'}; with the
        backend failing or the breaker open, `text` is None and `degraded` says why."""
        from openai import APIError

        if not self.breaker.allow():
            return {"text": None, "prompt_tokens": None, "completion_tokens": None, "degraded": "circuit open"}
        try:
            resp = await self._request(query, passages, history, max_tokens)
        except APIError as e:
            self.breaker.record(False)
            return {"text": None, "prompt_tokens": None, "completion_tokens": None,
                    "degraded": f"LLM backend: {type(e).__name__}"}
        except asyncio.CancelledError:  # the caller's budget ran out: the backend was too slow
            self.breaker.record(False)
            raise
        self.breaker.record(True)
        usage = resp.usage
        return {
            "text": resp.choices[0].message.content or "",
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "degraded": None,
        }

    async def stream(self, query: str, passages: list[dict], history: str | None = None,
                     max_tokens: int | None = None) -> AsyncIterator[dict]:
        """The answer as deltas, {'text', 'tokens'}, as the endpoint streams them (BreakerOpen when
        open); with `stream_interval_ms`, a delta gathers the tokens of that interval."""
        from openai import APIError

        if not self.breaker.allow():
            raise BreakerOpen("circuit open")
        healthy = True  # a client that goes away mid-stream says nothing of the backend
        try:
            stream = await self._request(query, passages, history, max_tokens, stream=True)
            interval, pending, tokens, sent_at = self.config.stream_interval_ms / 1000, "", 0, None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pending, tokens = pending + chunk.choices[0].delta.content, tokens + 1
                    # The first token goes at once (TTFT); later ones in batches of `interval`,
                    # as vLLM's stream interval does: each message costs CPU at every hop.
                    if sent_at is None or time.monotonic() - sent_at >= interval:
                        yield {"text": pending, "tokens": tokens}
                        pending, tokens, sent_at = "", 0, time.monotonic()
            if pending:
                yield {"text": pending, "tokens": tokens}
        except (APIError, asyncio.CancelledError):
            healthy = False
            raise
        finally:
            self.breaker.record(healthy)
