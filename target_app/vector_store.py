"""The Milvus collection of the document set: build once, then search.

Works with a Milvus Lite folder (`MilvusClient(path)`), the stack's Milvus Lite server, or
any real Milvus by URI. Passage embeddings are cached on disk, keyed by the corpus
fingerprint, so rebuilding a deleted collection does not re-embed 10,000 passages.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from filelock import FileLock

from target_app import corpus
from target_app.paths import data_dir, resolve

DIM = 384


def client_uri(uri: str) -> str:
    """A MilvusClient URI: network URIs as given, local Milvus Lite paths under the data dir."""
    return uri if "://" in uri else str(resolve(uri))


# Passages embedded per step of the first build's progress (a multiple of the batch size).
PROGRESS_CHUNK = 1024


def passage_embeddings(docs: list[corpus.Passage], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Unit-norm MiniLM embeddings of the passages, cached by corpus fingerprint; `progress`
    hears (done, total) as they are computed (minutes on a small CPU, the first time only)."""
    from target_app.rewriter import load_embedder

    cache = data_dir() / "embeddings" / f"minilm-{corpus.fingerprint(docs)}.npy"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        if cache.exists():
            return np.load(cache)
        model = load_embedder(None)
        texts, parts = [d.text for d in docs], []
        for start in range(0, len(texts), PROGRESS_CHUNK):
            parts.append(model.encode(texts[start:start + PROGRESS_CHUNK], batch_size=64, normalize_embeddings=True))
            if progress is not None:
                progress(min(start + PROGRESS_CHUNK, len(texts)), len(texts))
        vectors = np.concatenate(parts).astype("float32") if parts else np.zeros((0, DIM), dtype="float32")
        np.save(cache.with_suffix(".tmp.npy"), vectors)
        cache.with_suffix(".tmp.npy").rename(cache)
        return vectors


def ensure_collection(client, name: str, size: int = corpus.DEFAULT_SIZE, seed: int = corpus.DEFAULT_SEED,
                      progress: Callable[[int, int], None] | None = None) -> int:
    """Create and fill collection `name` unless it already holds the corpus; returns its row count."""
    if client.has_collection(name):
        count = int(client.get_collection_stats(name).get("row_count", 0))
        if count == size:
            client.load_collection(name)
            return count
        client.drop_collection(name)
    from pymilvus import DataType, MilvusClient

    docs = corpus.passages(size, seed)
    vectors = passage_embeddings(docs, progress)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("domain", DataType.VARCHAR, max_length=32)
    schema.add_field("text", DataType.VARCHAR, max_length=2048)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    for start in range(0, len(docs), 1000):
        chunk = docs[start : start + 1000]
        client.insert(name, [
            {"id": d.id, "domain": d.domain, "text": d.text, "vector": vectors[d.id].tolist()} for d in chunk
        ])
    client.flush(name)
    client.load_collection(name)
    return len(docs)


def build(uri: str, name: str = "docs", progress: Callable[[int, int], None] | None = None) -> int:
    """Connect to `uri` and make sure collection `name` holds the corpus."""
    from pymilvus import MilvusClient

    client = MilvusClient(client_uri(uri))
    try:
        return ensure_collection(client, name, progress=progress)
    finally:
        client.close()
