"""OpenAI API wire format: request models, and builders for responses, stream
chunks and errors.

Request models hold only the fields the emulator acts on; other fields are
accepted and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


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


@dataclass(frozen=True)
class ApiFlavor:
    """What differs between the chat and the legacy completions responses."""

    chat: bool
    id_prefix: str
    object: str
    chunk_object: str

    def choice(self, text: str) -> dict[str, Any]:
        """The single choice of a non-streaming response."""
        # Ignore-EOS generation always stops on the token limit.
        body: dict[str, Any] = (
            {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
        )
        return {"index": 0, **body, "logprobs": None, "finish_reason": "length"}

    def chunk_choice(self, piece: str, first: bool, last: bool) -> dict[str, Any]:
        """The single choice of a stream chunk carrying one output token."""
        body: dict[str, Any]
        if self.chat:
            # Like vLLM, the role rides on the first content chunk rather than an
            # empty chunk ahead of it, so "first chunk" timing equals TTFT.
            delta = {"role": "assistant", "content": piece} if first else {"content": piece}
            body = {"delta": delta}
        else:
            body = {"text": piece}
        return {"index": 0, **body, "logprobs": None, "finish_reason": "length" if last else None}


CHAT = ApiFlavor(True, "chatcmpl-", "chat.completion", "chat.completion.chunk")
COMPLETION = ApiFlavor(False, "cmpl-", "text_completion", "text_completion")


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` object of a response."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def openai_error(status_code: int, message: str, err_type: str,
                 param: str | None = None) -> JSONResponse:
    """An error response in OpenAI's shape, which the openai client parses into
    its exceptions."""
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": err_type, "param": param,
                           "code": status_code}},
    )


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event; ``payload`` is JSON-encoded unless already a string."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"
