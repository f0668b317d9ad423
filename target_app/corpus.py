"""The shipped document set, generated deterministically, and questions matched to it.

Each passage describes one named entity (an organisation, statute, drug, fund, ...) with a
few facts. A question names its entity and asks for one of the facts, so retrieval has one
right passage per question; the ids are stable for a given seed and size.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

DEFAULT_SIZE = 10_000
DEFAULT_SEED = 20_231_116

_SYLLABLES = (
    "al bar cor dan el fen gal hor ist jun kel lum mar nor os pel quin ros sal tor ul ven wes "
    "yar zan bri cal dor eth fal gor hal ith kor lin mol nev orn pra rhe sol tan vor wyn"
).split()

_DOMAINS = {
    "legal": (
        ["statute", "court ruling", "regulation", "treaty", "contract clause"],
        ["data retention", "tenant rights", "patent licensing", "liability limits", "cross-border arbitration",
         "employment termination", "consumer refunds", "environmental permits"],
    ),
    "medical": (
        ["drug", "clinical trial", "diagnostic test", "treatment protocol", "vaccine"],
        ["hypertension", "type 2 diabetes", "migraine", "asthma", "sepsis", "chronic kidney disease",
         "influenza", "atrial fibrillation"],
    ),
    "finance": (
        ["bond fund", "trading desk", "payment network", "credit facility", "pension scheme"],
        ["inflation hedging", "foreign exchange", "small-business lending", "municipal bonds",
         "liquidity management", "mortgage refinancing", "dividend growth", "risk parity"],
    ),
    "technology": (
        ["database engine", "network protocol", "compiler", "storage service", "scheduler"],
        ["vector search", "stream processing", "edge caching", "consensus", "GPU scheduling",
         "log compaction", "service discovery", "rate limiting"],
    ),
}

_CITIES = ("Oslo Lisbon Denver Nairobi Osaka Lyon Porto Quito Tallinn Perth Dakar Ghent Bergen Cusco "
           "Tampere Leeds Hanoi Rabat Graz Malmo").split()


@dataclass(frozen=True)
class Passage:
    """One document of the corpus."""

    id: int
    domain: str
    entity: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question whose answer is in passage `passage_id`."""

    text: str
    passage_id: int
    domain: str


def _unique_names(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        parts = rng.randint(2, 3)
        name = "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _facts(rng: random.Random) -> dict:
    return {
        "year": rng.randint(1950, 2024),
        "city": rng.choice(_CITIES),
        "figure": rng.randint(3, 97),
        "reviewers": rng.randint(2, 40),
    }


def passages(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> list[Passage]:
    """The corpus: `size` passages, identical for the same (size, seed)."""
    rng = random.Random(seed)
    names = _unique_names(rng, size)
    domains = sorted(_DOMAINS)
    out = []
    for i, name in enumerate(names):
        domain = domains[i % len(domains)]
        kinds, topics = _DOMAINS[domain]
        kind, topic, other = rng.choice(kinds), rng.choice(topics), rng.choice(topics)
        f = _facts(rng)
        text = (
            f"{name} is a {kind} in {domain} concerned with {topic}. It was introduced in {f['year']} "
            f"in {f['city']}. Its main figure is {f['figure']} percent, reviewed by {f['reviewers']} "
            f"independent experts, and it is often compared with work on {other}."
        )
        out.append(Passage(id=i, domain=domain, entity=name, text=text))
    return out


_QUESTION_FORMS = (
    "When was {entity} introduced and where?",
    "What is {entity} concerned with?",
    "What is the main figure of {entity}?",
    "How many experts reviewed {entity}?",
    "What kind of {domain} item is {entity}?",
)


def questions(corpus: list[Passage], n: int, seed: int = 0) -> list[Question]:
    """`n` questions over random passages of `corpus`, reproducible for a seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = rng.choice(corpus)
        form = rng.choice(_QUESTION_FORMS)
        out.append(Question(text=form.format(entity=p.entity, domain=p.domain), passage_id=p.id, domain=p.domain))
    return out


def fingerprint(corpus: list[Passage]) -> str:
    """A short hash of the corpus, used to key cached embeddings and collections."""
    h = hashlib.sha256()
    for p in corpus:
        h.update(f"{p.id}\x00{p.text}\x01".encode())
    return h.hexdigest()[:16]
