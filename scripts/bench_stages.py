"""Service time of each model stage on this machine at batch 1 and 8, as the deployments
run them (same loaders, one torch thread each). Prints a Markdown table.

    .venv/bin/python scripts/bench_stages.py [--reps 20]
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch

from target_app import corpus, vector_store
from target_app.lora import _generate
from target_app.models.build import adapters_path, build_all, lora_base_path
from target_app.models.classifier import encode_batch
from target_app.rerank import load_cross_encoder
from target_app.rewriter import load_embedder
from target_app.router import load_classifier
from timing import timed


def ms(x: float) -> str:
    """Milliseconds with one decimal, or three for sub-millisecond stages."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = build_all()
    docs = corpus.passages()
    qs = [q.text for q in corpus.questions(docs, 8, seed=1)]
    rows = []

    emb = load_embedder(None)
    for b in (1, 8):
        rows.append(("QueryRewriter: embed (MiniLM-L6)", f"{b} queries", *timed(lambda _: emb.encode(qs[:b], normalize_embeddings=True), args.reps, 2)))

    with tempfile.TemporaryDirectory() as tmp:
        from pymilvus import MilvusClient

        client = MilvusClient(f"{tmp}/bench.db")
        vector_store.ensure_collection(client, "docs")
        vecs = emb.encode(qs, normalize_embeddings=True).tolist()
        for b in (1, 8):
            rows.append(("VectorSearch: top 20 of 10,000 (Milvus Lite, FLAT)", f"{b} queries",
                         *timed(lambda _: client.search("docs", data=vecs[:b], limit=20, output_fields=["text"]), args.reps, 2)))
        client.close()

    ce = load_cross_encoder(str(paths["cross_encoder"]), 256)
    pairs = [(q, d.text) for q in qs for d in docs[:20]]
    for b in (1, 8):
        rows.append(("Reranker: cross-encoder, 20 pairs a request", f"{b} requests ({20 * b} pairs)",
                     *timed(lambda _: ce.predict(pairs[: 20 * b]), args.reps, 2)))

    clf, _ = load_classifier(str(paths["classifier_legal"]))
    texts = ["the supplier breached the signed lease agreement"] * 8
    with torch.no_grad():
        for b in (1, 8):
            rows.append(("Legal/Medical/FinanceClassifier", f"{b} texts", *timed(lambda _: clf(*encode_batch(texts[:b])), args.reps, 2)))

    from peft import PeftModel
    from transformers import AutoTokenizer, GPT2LMHeadModel

    base = GPT2LMHeadModel.from_pretrained(str(lora_base_path())).eval()
    tok = AutoTokenizer.from_pretrained(str(lora_base_path()))
    rows.append(("MultiLoRAModel: adapter load (cache miss)", "1 adapter", *timed(
        lambda _: PeftModel.from_pretrained(copy.deepcopy(base), str(adapters_path() / "lora-01")), args.reps, 2)))
    model = PeftModel.from_pretrained(copy.deepcopy(base), str(adapters_path() / "lora-01")).eval()
    for n in (1, 8):
        rows.append(("MultiLoRAModel: generate 16 tokens (unbatched)", f"{n} request(s) in a row",
                     *timed(lambda _: [_generate(model, tok, "Summarise the policy", 16) for _ in range(n)], args.reps, 2)))

    print("| stage | batch | median ms | p90 ms |\n|---|---|---|---|")
    for stage, batch, med, p90 in rows:
        print(f"| {stage} | {batch} | {ms(med)} | {ms(p90)} |")


if __name__ == "__main__":
    main()
