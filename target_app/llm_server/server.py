"""OpenAI-compatible HTTP front end of the emulated vLLM server, with fault injection.

Run with ``llm-emulator`` or ``python -m target_app.llm_server.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from target_app.llm_server.engine import Engine
from target_app.llm_server.metrics import CONTENT_TYPE, EngineMetrics
from target_app.llm_server.profile import DEFAULT_PROFILE, LatencyProfile, load_profile

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Output "tokens" are words from this fixed cycle so responses are reproducible.
_VOCABULARY = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
    "emulated", "tokens", "stream", "from", "an", "imaginary", "gpu", "every", "step", "and",
)


def count_tokens(text: str) -> int:
    """Emulated tokenizer: one token per whitespace-separated word, and at least
    one (a real prompt always carries a BOS token)."""
    return max(1, len(text.split()))


def output_piece(index: int) -> str:
    """Text of output token ``index``; joining pieces 0..n-1 gives ``n`` words."""
    word = _VOCABULARY[index % len(_VOCABULARY)]
    return word if index == 0 else " " + word


# --------------------------------------------------------------------------- #
# OpenAI request schemas (only the fields the emulator acts on; others ignored)


class StreamOptions(BaseModel):
    include_usage: bool = False


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[_ContentPart] | None = None

    def text(self) -> str:
        """The message's text; non-text parts (images, ...) count as no tokens."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return " ".join(part.text or "" for part in self.content)


class _GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_GenerationRequest):
    prompt: str | list[int]
    """Text, or pre-tokenized ids (counted as one token each)."""


# --------------------------------------------------------------------------- #
# Fault injection


FaultMode = Literal["none", "error", "hang", "refuse", "slow"]


class FaultSpec(BaseModel):
    """Body of ``POST /admin/fault``."""

    model_config = ConfigDict(extra="forbid")
    mode: FaultMode
    duration_s: float | None = Field(None, gt=0, le=86_400)
    status_code: int = Field(500, ge=400, le=599)
    error_rate: float = Field(1.0, ge=0, le=1)
    slow_factor: float = Field(2.0, ge=1, le=1_000)

    @model_validator(mode="after")
    def _refuse_needs_duration(self) -> FaultSpec:
        # Nothing can reach the admin API while the port is closed, so the port
        # must reopen by itself.
        if self.mode == "refuse" and self.duration_s is None:
            raise ValueError("duration_s is required for mode 'refuse'")
        return self


class FaultInjector:
    """Holds the active fault and applies it to the engine and the listener.

    ``error`` fails a deterministic ``error_rate`` fraction of requests (every
    1/error_rate-th one, so runs are reproducible); ``hang`` pauses the engine so
    accepted requests get no tokens; ``slow`` stretches engine steps;
    ``refuse`` closes the listening port via the ``refuse`` callback.
    """

    def __init__(self, engine: Engine, refuse: Callable[[float], None] | None) -> None:
        self._engine = engine
        self._refuse = refuse
        self.spec = FaultSpec(mode="none")
        self._expiry: asyncio.TimerHandle | None = None
        self._error_credit = 0.0

    @property
    def can_refuse(self) -> bool:
        """Whether this app runs under a listener that can close its port."""
        return self._refuse is not None

    def apply(self, spec: FaultSpec) -> None:
        """Replace the current fault with ``spec`` (``mode="none"`` clears it)."""
        if spec.mode == "refuse" and self._refuse is None:
            raise RuntimeError("refuse needs the emulator's own listener (ApiListener)")
        self._reset()
        self.spec = spec
        if spec.mode == "hang":
            self._engine.pause()
        elif spec.mode == "slow":
            self._engine.slow_factor = spec.slow_factor
        elif spec.mode == "refuse":
            assert self._refuse is not None and spec.duration_s is not None
            self._refuse(spec.duration_s)
        if spec.duration_s is not None and spec.mode != "none":
            self._expiry = asyncio.get_running_loop().call_later(spec.duration_s, self.clear)

    def clear(self) -> None:
        """Remove any fault."""
        self.apply(FaultSpec(mode="none"))

    def should_fail(self) -> bool:
        """Decide whether the next request gets the injected error."""
        if self.spec.mode != "error":
            return False
        self._error_credit += self.spec.error_rate
        # The epsilon keeps float sums such as 10 * 0.1 from missing a failure.
        if self._error_credit >= 1 - 1e-9:
            self._error_credit -= 1
            return True
        return False

    def describe(self) -> dict[str, Any]:
        """The active fault plus seconds until it clears itself (``None``: never)."""
        remaining = None
        if self._expiry is not None:
            remaining = max(0.0, self._expiry.when() - asyncio.get_running_loop().time())
        return {**self.spec.model_dump(), "expires_in_s": remaining}

    def _reset(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._engine.resume()
        self._engine.slow_factor = 1.0
        self._error_credit = 0.0


# --------------------------------------------------------------------------- #
# OpenAI response formatting


@dataclass(frozen=True)
class _ApiFlavor:
    chat: bool
    id_prefix: str
    object: str
    chunk_object: str

    def choice(self, text: str) -> dict[str, Any]:
        # Ignore-EOS generation always stops on the token limit.
        body: dict[str, Any] = (
            {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
        )
        return {"index": 0, **body, "logprobs": None, "finish_reason": "length"}

    def chunk_choice(self, piece: str, first: bool, last: bool) -> dict[str, Any]:
        body: dict[str, Any]
        if self.chat:
            # Like vLLM, the role rides on the first content chunk rather than an
            # empty chunk ahead of it, so "first chunk" timing equals TTFT.
            delta = {"role": "assistant", "content": piece} if first else {"content": piece}
            body = {"delta": delta}
        else:
            body = {"text": piece}
        return {"index": 0, **body, "logprobs": None, "finish_reason": "length" if last else None}


_CHAT = _ApiFlavor(True, "chatcmpl-", "chat.completion", "chat.completion.chunk")
_COMPLETION = _ApiFlavor(False, "cmpl-", "text_completion", "text_completion")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _openai_error(status_code: int, message: str, err_type: str,
                  param: str | None = None) -> JSONResponse:
    # OpenAI's error shape, which the openai client parses into its exceptions.
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": err_type, "param": param,
                           "code": status_code}},
    )


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


# --------------------------------------------------------------------------- #
# Application


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work`` but cancel it if the client disconnects first (returns None).

    Starlette only notices disconnects for streaming responses; without this a
    timed-out non-streaming client would keep its sequence in the batch.
    """
    work_task = asyncio.create_task(work)
    disconnect_task = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work_task, disconnect_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        work_task.cancel()
        disconnect_task.cancel()
    if work_task.done() and not work_task.cancelled():
        return work_task.result()
    return None


def create_app(profile: LatencyProfile | None = None, *,
               refuse: Callable[[float], None] | None = None) -> FastAPI:
    """Build the emulator app: engine, metrics and fault state live in the app.

    ``profile`` defaults to the bundled ``h100-llama3-8b``. ``refuse`` is called
    with a duration to close the listening port (see ``ApiListener``); without
    it the ``refuse`` fault answers 501. Also usable as
    ``uvicorn --factory target_app.llm_server.server:create_app``.
    """
    profile = profile if profile is not None else load_profile(DEFAULT_PROFILE)
    engine = Engine(profile, EngineMetrics(profile.model_name))
    faults = FaultInjector(engine, refuse)
    app = FastAPI(title="vLLM emulator", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI clients expect 400 with an {"error": ...} body, like vLLM sends.
        if request.url.path.startswith("/v1/"):
            return _openai_error(400, str(exc.errors()), "BadRequestError")
        return await request_validation_exception_handler(request, exc)

    async def generate(request: Request, flavor: _ApiFlavor, model: str, prompt_tokens: int,
                       max_tokens: int | None, stream: bool,
                       stream_options: StreamOptions | None) -> Response:
        if faults.should_fail():
            return _openai_error(faults.spec.status_code, "injected fault (mode=error)",
                                "InjectedFault")
        if max_tokens is None:
            max_tokens = max(1, min(profile.default_max_tokens,
                                    profile.max_model_len - prompt_tokens))
        if prompt_tokens + max_tokens > profile.max_model_len:
            return _openai_error(
                400,
                f"This model's maximum context length is {profile.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                "BadRequestError", "max_tokens",
            )
        request_id = flavor.id_prefix + uuid.uuid4().hex
        created = int(time.time())
        if stream:
            include_usage = stream_options is not None and stream_options.include_usage
            chunk = {"id": request_id, "object": flavor.chunk_object, "created": created,
                     "model": model}
            events = _stream(engine, flavor, chunk, prompt_tokens, max_tokens, include_usage)
            return StreamingResponse(events, media_type="text/event-stream")

        async def collect() -> str:
            async with aclosing(engine.generate(prompt_tokens, max_tokens)) as tokens:
                return "".join([output_piece(i) async for i in tokens])

        text = await _unless_disconnected(request, collect())
        if text is None:
            return Response(status_code=499)  # client closed request (nginx convention)
        return JSONResponse({
            "id": request_id, "object": flavor.object, "created": created, "model": model,
            "choices": [flavor.choice(text)], "usage": _usage(prompt_tokens, max_tokens),
        })

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """OpenAI chat completions (streaming and non-streaming)."""
        prompt = " ".join(message.text() for message in body.messages)
        return await generate(request, _CHAT, body.model, count_tokens(prompt),
                              body.max_completion_tokens or body.max_tokens, body.stream,
                              body.stream_options)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """OpenAI legacy completions (streaming and non-streaming)."""
        prompt_tokens = (count_tokens(body.prompt) if isinstance(body.prompt, str)
                         else max(1, len(body.prompt)))
        return await generate(request, _COMPLETION, body.model, prompt_tokens, body.max_tokens,
                              body.stream, body.stream_options)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The single emulated model."""
        return {"object": "list", "data": [{
            "id": profile.model_name, "object": "model", "created": int(time.time()),
            "owned_by": "vllm", "root": profile.model_name, "parent": None,
            "max_model_len": profile.max_model_len,
        }]}

    @app.get("/health")
    async def health() -> Response:
        """Liveness, like vLLM's: 200 with an empty body (also during faults)."""
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics with vLLM's names."""
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/admin/fault")
    async def get_fault() -> dict[str, Any]:
        """The active fault."""
        return faults.describe()

    @app.post("/admin/fault")
    async def set_fault(spec: FaultSpec) -> Response:
        """Inject (or with ``mode="none"`` clear) a fault."""
        if spec.mode == "refuse" and not faults.can_refuse:
            return JSONResponse(status_code=501, content={
                "detail": "refuse needs the emulator's own listener; start it with llm-emulator"})
        faults.apply(spec)
        logger.warning("fault set: %s", spec.model_dump())
        return JSONResponse(faults.describe())

    return app


async def _stream(engine: Engine, flavor: _ApiFlavor, chunk: dict[str, Any],
                  prompt_tokens: int, max_tokens: int, include_usage: bool) -> AsyncIterator[str]:
    """SSE body of a streaming response; ``chunk`` holds the fields every chunk
    repeats. Closing the iterator (client disconnect) cancels the sequence."""
    # OpenAI: with include_usage every chunk carries "usage", null except the last.
    if include_usage:
        chunk = {**chunk, "usage": None}
    async with aclosing(engine.generate(prompt_tokens, max_tokens)) as tokens:
        async for index in tokens:
            choice = flavor.chunk_choice(output_piece(index), index == 0, index == max_tokens - 1)
            yield _sse({**chunk, "choices": [choice]})
    if include_usage:
        yield _sse({**chunk, "choices": [], "usage": _usage(prompt_tokens, max_tokens)})
    yield _sse("[DONE]")


# --------------------------------------------------------------------------- #
# Listener with a port that can be closed ("refuse" fault)


class ApiListener:
    """Serves an ASGI app on ``host:port`` and can close the port for a while.

    ``refuse_for`` stops the uvicorn server, which closes the listening socket
    (new connections get ECONNREFUSED) and lets in-flight requests finish for
    at most the refusal time; then a new uvicorn server is started on a fresh
    socket on the same port with the same app object, so engine, metrics and
    fault state survive.
    """

    def __init__(self, host: str, port: int, log_level: str = "info") -> None:
        self.host = host
        self.port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._reopen_at: float | None = None

    def refuse_for(self, duration_s: float) -> None:
        """Close the port now and reopen it ``duration_s`` seconds later."""
        if self._server is None:
            raise RuntimeError("listener is not serving")
        self._reopen_at = asyncio.get_running_loop().time() + duration_s
        self._server.config.timeout_graceful_shutdown = duration_s  # type: ignore[assignment]
        self._server.should_exit = True

    async def serve(self, app: FastAPI) -> None:
        """Serve until the process is signalled, reopening after each refusal."""
        loop = asyncio.get_running_loop()
        while True:
            sock = self._bind()
            config = uvicorn.Config(app, log_level=self._log_level,
                                    # App state must outlive each server.
                                    lifespan="off")
            self._server = uvicorn.Server(config)
            logger.info("LLM emulator listening on http://%s:%d", self.host, self.port)
            await self._server.serve(sockets=[sock])
            # SIGINT/SIGTERM re-raise out of serve(); getting here means refuse_for().
            if self._reopen_at is None:
                return
            await asyncio.sleep(self._reopen_at - loop.time())
            self._reopen_at = None

    def _bind(self) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        # proto must be IPPROTO_TCP (not 0) or asyncio skips TCP_NODELAY on accepted
        # connections, and Nagle + delayed ACK then hold the first SSE chunk ~40 ms.
        sock = socket.socket(family, kind, proto)
        # Lets the port rebind right away although closed connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        self.port = sock.getsockname()[1]  # resolve port 0 once, keep it on reopen
        return sock


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llm-emulator",
        description="OpenAI-compatible server emulating vLLM continuous batching.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="port (default 8100; 0 = any)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"latency profile name or YAML path (default {DEFAULT_PROFILE})")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``llm-emulator``)."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profile = load_profile(args.profile)
    listener = ApiListener(args.host, args.port, args.log_level)
    app = create_app(profile, refuse=listener.refuse_for)
    with suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        asyncio.run(listener.serve(app))


if __name__ == "__main__":
    main()
