"""Request mixes: what the load sends to each route of the system under test.

RAG questions come from the question set matched to the app's shipped document set, so
every question has one right passage; classifier texts cover the three domains; LoRA
completions pick adapters with Zipf(1) popularity.
"""

from __future__ import annotations

import random

from target_app.corpus import passages, questions

PREDICT_TEXTS = {
    "legal": ["the supplier breached the signed lease agreement", "fraud charge and arrest of the defendant"],
    "medical": ["chest pain and palpitations at night", "wheezing cough and shortness of breath"],
    "finance": ["portfolio allocation between stock and bond funds", "merchant refund on a card payment"],
}
NUM_ADAPTERS = 32


def mixed_requests(n: int, seed: int) -> list[tuple[str, dict]]:
    """`n` (path, JSON body) pairs in turn over /rag, /predict and /v1/completions; reproducible for a seed."""
    rng = random.Random(seed)
    qs = questions(passages(), n, seed=seed)
    weights = [1 / (i + 1) for i in range(NUM_ADAPTERS)]
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(("/rag", {"query": qs[i].text}))
        elif kind == 1:
            domain = rng.choice(sorted(PREDICT_TEXTS))
            out.append(("/predict", {"domain": domain, "text": rng.choice(PREDICT_TEXTS[domain])}))
        else:
            adapter = rng.choices(range(NUM_ADAPTERS), weights)[0]
            out.append(("/v1/completions", {"model": f"lora-{adapter:02d}", "prompt": "Summarise the policy", "max_tokens": 16}))
    return out
