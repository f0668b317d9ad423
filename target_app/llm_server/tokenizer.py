"""Emulated tokenizer: words stand in for tokens, in prompts and in generated text."""

from __future__ import annotations

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
