"""Request mixes: what each arrival sends to the system under test (pure, seeded).

- `rag`: POST /rag with a question from the question set matched to the app's shipped
  document set (every question has one right passage), streamed so TTFT and ITL are measured;
- `predict`: POST /predict across the three domains, with texts from those domains;
- `lora`: POST /v1/completions with an adapter drawn from a Zipf distribution over the app's
  adapters, whose popular set can shift over time (`shift_s`);
- trace replay: POST /rag with the trace's prompt size (as earlier conversation) and output
  length (as `max_tokens`).

The request for arrival `i` depends only on the seed and `i`, so every generator process
builds the same request for the same arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadgen.shapes import ShapeError, _one_line
from target_app.corpus import passages, questions

ROUTES = ("rag", "predict", "lora")
PREDICT_DOMAINS = ("legal", "medical", "finance")  # target_app.router.DOMAINS; the corpus also has "technology"
NUM_ADAPTERS = 32  # the shipped app's adapter count; a running app's /v1/models overrides it
_QUESTION_POOL = 4096


@dataclass(frozen=True)
class Request:
    """One HTTP request to send, and what the records note about it."""

    route: str
    path: str
    body: dict
    stream: bool = False
    adapter: str | None = None
    prompt_tokens: int | None = None
    max_tokens: int | None = None


def parse_weights(text: str) -> dict[str, float]:
    """`rag=1,predict=2,lora=1` -> weights; unknown routes or bad numbers raise ValueError."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in ROUTES:
            raise ValueError(f"mix: {part!r} is not ROUTE=WEIGHT with ROUTE one of {', '.join(ROUTES)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"mix: weight of {name} must be a number, got {value!r}") from None
        if not 0 <= out[name] <= 1e6:
            raise ValueError(f"mix: weight of {name} must be in [0, 1e6], got {value}")
    if not out or sum(out.values()) <= 0:
        raise ValueError("mix: at least one route needs a weight > 0")
    return out


class MixSettings(BaseModel):
    """The request mix of a scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, Annotated[float, Field(ge=0)]] = {"rag": 1.0, "predict": 1.0, "lora": 1.0}
    rag_stream: bool = True
    adapters: Annotated[int, Field(ge=1, le=100_000)] = NUM_ADAPTERS
    zipf_exponent: Annotated[float, Field(ge=0, le=10)] = 1.0
    shift_s: Annotated[float, Field(gt=0)] | None = None
    lora_max_tokens: Annotated[int, Field(ge=1, le=256)] = 16
    max_prompt_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 6000

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ShapeError(_one_line(e, "MixSettings")) from None


def zipf_adapters(times: np.ndarray, n_adapters: int, exponent: float, shift_s: float | None,
                  rng: np.random.Generator) -> np.ndarray:
    """Adapter index per arrival: Zipf(`exponent`) popularity over ranks; every `shift_s` seconds
    the ranks move a quarter of the way round a seeded permutation, so the hot set changes."""
    ranks = np.arange(1, n_adapters + 1, dtype=float)
    p = ranks ** -exponent
    drawn = rng.choice(n_adapters, size=times.size, p=p / p.sum())
    perm = rng.permutation(n_adapters)
    if shift_s is None:
        return perm[drawn]
    epoch = (times // shift_s).astype(np.int64)
    return perm[(drawn + epoch * max(1, n_adapters // 4)) % n_adapters]


class RequestMix:
    """Requests for a run's arrivals; `request(i)` is arrival `i`'s request."""

    def __init__(self, settings: MixSettings, times: np.ndarray, seed: int,
                 prompt_tokens: np.ndarray | None = None, output_tokens: np.ndarray | None = None):
        self.settings = settings
        rng = np.random.default_rng([seed, 0x6D6978])
        n = times.size
        names = [r for r in ROUTES if settings.weights.get(r, 0) > 0]
        w = np.array([settings.weights[r] for r in names])
        self._routes = np.array(names)[rng.choice(len(names), size=n, p=w / w.sum())] if n else np.array([], str)
        self._pick = rng.integers(0, _QUESTION_POOL, size=n)
        self._adapter = zipf_adapters(times, settings.adapters, settings.zipf_exponent, settings.shift_s, rng)
        self._prompt, self._output = prompt_tokens, output_tokens
        self._seed = seed

    @cached_property
    def _questions(self):
        return questions(passages(), _QUESTION_POOL, seed=self._seed)

    @cached_property
    def _predict_questions(self):
        return [q for q in self._questions if q.domain in PREDICT_DOMAINS]

    @cached_property
    def _filler(self) -> list[str]:
        return " ".join(p.text for p in passages()[:2000]).split()

    def _history(self, words: int, offset: int) -> str:
        filler = self._filler
        start = offset % max(1, len(filler) - words)
        out = filler[start:start + words]
        while len(out) < words:
            out += filler[: words - len(out)]
        return " ".join(out)

    def request(self, i: int, row: int | None = None) -> Request:
        """The request of arrival `i`; `row` is its trace row when a trace is replayed."""
        s = self.settings
        q = self._questions[int(self._pick[i])]
        if self._prompt is not None and row is not None:
            words = int(min(self._prompt[row], s.max_prompt_tokens))
            out = int(max(1, self._output[row])) if self._output is not None else None
            body = {"query": q.text, "stream": True, "history": self._history(words, i * 7919)}
            if out:
                body["max_tokens"] = out
            return Request("rag", "/rag", body, True, None, words, out)
        route = str(self._routes[i])
        if route == "rag":
            return Request("rag", "/rag", {"query": q.text, "stream": s.rag_stream}, s.rag_stream)
        if route == "predict":
            q = self._predict_questions[int(self._pick[i]) % len(self._predict_questions)]
            return Request("predict", "/predict", {"domain": q.domain, "text": q.text})
        adapter = f"lora-{int(self._adapter[i]):02d}"
        return Request("lora", "/v1/completions",
                       {"model": adapter, "prompt": q.text, "max_tokens": s.lora_max_tokens},
                       adapter=adapter, max_tokens=s.lora_max_tokens)
