"""OpenAI-compatible HTTP front end of the emulated vLLM server, and its command line.

Run with ``llm-emulator`` or ``python -m target_app.llm_server.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing, suppress
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from target_app.llm_server.engine import Engine
from target_app.llm_server.faults import FaultInjector, FaultSpec
from target_app.llm_server.listener import ApiListener
from target_app.llm_server.metrics import CONTENT_TYPE, EngineMetrics
from target_app.llm_server.openai_schema import (
    CHAT,
    COMPLETION,
    ApiFlavor,
    ChatCompletionRequest,
    CompletionRequest,
    StreamOptions,
    openai_error,
    sse,
    usage,
)
from target_app.llm_server.profile import DEFAULT_PROFILE, LatencyProfile, load_profile
from target_app.llm_server.tokenizer import count_tokens, output_piece

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
            return openai_error(400, str(exc.errors()), "BadRequestError")
        return await request_validation_exception_handler(request, exc)

    async def generate(request: Request, flavor: ApiFlavor, model: str, prompt_tokens: int,
                       max_tokens: int | None, stream: bool,
                       stream_options: StreamOptions | None) -> Response:
        if faults.should_fail():
            return openai_error(faults.spec.status_code, "injected fault (mode=error)",
                                "InjectedFault")
        if max_tokens is None:
            max_tokens = max(1, min(profile.default_max_tokens,
                                    profile.max_model_len - prompt_tokens))
        if prompt_tokens + max_tokens > profile.max_model_len:
            return openai_error(
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
            "choices": [flavor.choice(text)], "usage": usage(prompt_tokens, max_tokens),
        })

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """OpenAI chat completions (streaming and non-streaming)."""
        prompt = " ".join(message.text() for message in body.messages)
        return await generate(request, CHAT, body.model, count_tokens(prompt),
                              body.max_completion_tokens or body.max_tokens, body.stream,
                              body.stream_options)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """OpenAI legacy completions (streaming and non-streaming)."""
        prompt_tokens = (count_tokens(body.prompt) if isinstance(body.prompt, str)
                         else max(1, len(body.prompt)))
        return await generate(request, COMPLETION, body.model, prompt_tokens, body.max_tokens,
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


async def _stream(engine: Engine, flavor: ApiFlavor, chunk: dict[str, Any],
                  prompt_tokens: int, max_tokens: int, include_usage: bool) -> AsyncIterator[str]:
    """SSE body of a streaming response; ``chunk`` holds the fields every chunk
    repeats. Closing the iterator (client disconnect) cancels the sequence."""
    # OpenAI: with include_usage every chunk carries "usage", null except the last.
    if include_usage:
        chunk = {**chunk, "usage": None}
    async with aclosing(engine.generate(prompt_tokens, max_tokens)) as tokens:
        async for index in tokens:
            choice = flavor.chunk_choice(output_piece(index), index == 0, index == max_tokens - 1)
            yield sse({**chunk, "choices": [choice]})
    if include_usage:
        yield sse({**chunk, "choices": [], "usage": usage(prompt_tokens, max_tokens)})
    yield sse("[DONE]")


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
