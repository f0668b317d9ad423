"""Reading a streamed answer's events (pure): the tokens each carries and the inter-token latencies."""

from __future__ import annotations

import re

_TOKENS = re.compile(rb'"tokens":\s*(\d+)')


def tokens_in(event: bytes) -> int:
    """Tokens an SSE event carries: its `tokens` field where the server batches them (the app's
    stream interval), else one (one token an event, as vLLM streams by default)."""
    m = _TOKENS.search(event)
    return max(1, int(m.group(1))) if m else 1


def itl_ms(events: list[tuple[float, int]]) -> list[float]:
    """Inter-token latencies from (arrival time, tokens) events: an event of k tokens after a gap
    of g counts k gaps of g / k (the tokens of the first event have none to measure)."""
    out: list[float] = []
    for (t0, _), (t1, k) in zip(events, events[1:]):
        out += [(t1 - t0) * 1000 / k] * k
    return out
