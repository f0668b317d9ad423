"""The emulated accelerator a replica owns, and the stand-in outputs of emulated stages.

An `EmulatedDevice` is held, not computed on: a batch occupies one of the replica's devices
for its table time (an asyncio sleep, so the CPU stays free), and batches that find every
device busy wait in arrival order, as kernels queue on one GPU. The generative LoRA model runs
a `DecodeEngine` on its device: prefill, then one decode step per token for every sequence in
the running batch at once, each step as long as the table gives for the batch's size (vLLM-style
continuous batching); an adapter load on a cache miss holds the same device.

Outputs stay well-formed and deterministic: the embedder returns the vector the real MiniLM gave
the passage of the entity a question names (so retrieval finds the question's passage, as with
the real model), a classifier answers the label whose training keywords the text names most,
and completions are derived from a hash of their input.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import zlib
from functools import lru_cache

import numpy as np

from target_app.compute import ServiceTimeTable


class EmulatedDevice:
    """`count` accelerators of one replica; `run(ms)` holds one of them for `ms`."""

    def __init__(self, count: int = 1):
        self._slots = asyncio.Semaphore(count)
        self.count = count
        self.busy_s = 0.0  # summed device time, for utilisation

    async def run(self, ms: float) -> None:
        """Occupy a device for `ms` milliseconds, waiting first while all are busy."""
        async with self._slots:
            self.busy_s += ms / 1000.0
            await asyncio.sleep(ms / 1000.0)


class DecodeEngine:
    """Continuous batching of token generation on one `EmulatedDevice`.

    A request's prefill holds the device once (its first token comes out of it); its further
    tokens come one per decode step, and a step serves every running sequence at once for
    `decode.milliseconds(running)`. Prefills and adapter loads queue for the device between
    steps, as vLLM schedules them between decode iterations.
    """

    def __init__(self, device: EmulatedDevice, prefill: ServiceTimeTable, decode: ServiceTimeTable):
        self.device, self.prefill, self.decode = device, prefill, decode
        self._running: dict[int, list] = {}  # id -> [tokens left, future]
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def num_running(self) -> int:
        """Sequences in the decode batch."""
        return len(self._running)

    async def generate(self, prompt_tokens: int, max_tokens: int) -> None:
        """Return when a request of `prompt_tokens` has produced `max_tokens` tokens."""
        await self.device.run(self.prefill.milliseconds(prompt_tokens))
        if max_tokens <= 1:
            return
        key, done = next(self._ids), asyncio.get_running_loop().create_future()
        self._running[key] = [max_tokens - 1, done]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._steps(), name="decode-engine")
        self._wake.set()
        try:
            await done
        finally:
            self._running.pop(key, None)  # a cancelled caller leaves the batch

    async def _steps(self) -> None:
        while True:
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._running.items())
            await self.device.run(self.decode.milliseconds(len(batch)))
            for key, entry in batch:
                entry[0] -= 1
                if entry[0] <= 0 and self._running.pop(key, None) is not None and not entry[1].done():
                    entry[1].set_result(None)


def standin_vector(text: str, dim: int = 384) -> list[float]:
    """A deterministic unit vector for `text` (a query that names no corpus entity)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype("float32").tolist()


def standin_index(text: str, n: int) -> int:
    """A deterministic choice in range(n) for `text`."""
    return zlib.crc32(text.encode()) % n


def standin_label(text: str, keywords: dict[str, str]) -> str:
    """A classifier's label without its model: the label whose keywords (the words the real
    classifier was trained on) the text names most; a text that names none gets a
    deterministic one."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    labels = sorted(keywords)
    hits = [len(words & set(keywords[label].split())) for label in labels]
    best = max(hits)
    return labels[hits.index(best)] if best else labels[standin_index(text, len(labels))]


def standin_completion(prompt: str, adapter: str, n: int) -> str:
    """`n` deterministic words for a prompt and adapter: an emulated completion."""
    words = re.findall(r"\w+", prompt) or ["token"]
    h = zlib.crc32(f"{adapter}\x00{prompt}".encode())
    return " ".join(words[(h + 7 * i) % len(words)] for i in range(n))


class EntityVectors:
    """The real MiniLM vector of the passage whose entity a text names.

    Every question of the corpus names its passage's entity, so returning that passage's
    embedding (computed once with the real model and cached, target_app.vector_store) makes
    retrieval behave as with the real embedder at no CPU cost per query.
    """

    _WORD = re.compile(r"[A-Za-z]+")

    def __init__(self, entities: dict[str, int], vectors: np.ndarray):
        self._entities, self._vectors = entities, vectors

    @classmethod
    @lru_cache(maxsize=1)
    def of_corpus(cls) -> "EntityVectors":
        """For the shipped document set (reads or builds the cached passage embeddings)."""
        from target_app import corpus
        from target_app.vector_store import passage_embeddings

        docs = corpus.passages()
        return cls({d.entity: d.id for d in docs}, passage_embeddings(docs))

    def vector(self, text: str) -> list[float]:
        """The named entity's passage vector, or a deterministic stand-in for any other text."""
        for word in self._WORD.findall(text):
            i = self._entities.get(word)
            if i is not None:
                return self._vectors[i].tolist()
        return standin_vector(text)
