"""Builds everything the app loads before it is deployed: the local models and the
Milvus collection. `python -m target_app.prepare --milvus-uri URI` (idempotent)."""

from __future__ import annotations

import argparse
import time

from target_app import vector_store
from target_app.models.build import build_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--milvus-uri", default="milvus.db", help="Milvus URI or Milvus Lite .db path")
    parser.add_argument("--collection", default="docs")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    print("building the local models (the first time only)", flush=True)
    build_all()
    t1 = time.perf_counter()
    print(f"models ready in {t1 - t0:.1f}s; filling collection {args.collection!r}", flush=True)
    rows = vector_store.build(args.milvus_uri, args.collection, progress=_embedded)
    t2 = time.perf_counter()
    print(f"collection {args.collection!r} holds {rows} passages ({t2 - t1:.1f}s)", flush=True)


def _embedded(done: int, total: int) -> None:
    print(f"embedded {done:,} of {total:,} passages (cached afterwards)", flush=True)


if __name__ == "__main__":
    main()
