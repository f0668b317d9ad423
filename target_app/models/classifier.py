"""The domain classifiers: a hashed bag-of-words model in plain torch.

Small enough to train in seconds on this machine, yet a real torch module that is saved,
loaded and run batched like any other.
"""

from __future__ import annotations

import re
import zlib

import torch
from torch import nn

NUM_BUCKETS = 1 << 14
_TOKEN = re.compile(r"[a-z0-9]+")


def token_ids(text: str) -> list[int]:
    """Stable hashed ids of the lower-cased word tokens of `text` (at least one id)."""
    ids = [zlib.crc32(t.encode()) % NUM_BUCKETS for t in _TOKEN.findall(text.lower())]
    return ids or [0]


class HashedBagClassifier(nn.Module):
    """Mean of hashed word embeddings, then a linear layer over the labels."""

    def __init__(self, num_labels: int, dim: int = 64):
        super().__init__()
        self.embed = nn.EmbeddingBag(NUM_BUCKETS, dim, mode="mean")
        self.head = nn.Linear(dim, num_labels)

    def forward(self, flat_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(flat_ids, offsets)))


def encode_batch(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """EmbeddingBag inputs (flat ids, offsets) for a batch of texts."""
    ids = [token_ids(t) for t in texts]
    offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
    return torch.tensor([i for x in ids for i in x]), offsets
