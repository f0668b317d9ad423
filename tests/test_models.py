"""The locally built models are real and load through the real loading code."""

import torch

from target_app import corpus
from target_app.lora import _generate
from target_app.models.build import NUM_ADAPTERS, adapter_id
from target_app.rerank import load_cross_encoder
from target_app.router import load_classifier


def test_cross_encoder_ranks_the_right_passage_first(built_models):
    ce = load_cross_encoder(str(built_models["cross_encoder"]), 256)
    docs = corpus.passages()
    hits = 0
    for q in corpus.questions(docs, 20, seed=99):
        candidates = [docs[q.passage_id], *(docs[(q.passage_id + k * 997) % len(docs)] for k in range(1, 10))]
        scores = ce.predict([(q.text, p.text) for p in candidates])
        hits += int(scores.argmax() == 0)
    assert hits >= 16


def test_classifiers_label_keyword_texts(built_models):
    model, labels = load_classifier(str(built_models["classifier_medical"]))
    from target_app.models.classifier import encode_batch

    with torch.no_grad():
        pred = model(*encode_batch(["insulin and glucose levels", "persistent cough and wheezing"])).argmax(-1)
    assert [labels[i] for i in pred] == ["endocrinology", "respiratory"]


def test_lora_adapters_load_and_differ(built_models):
    import copy

    from peft import PeftModel
    from transformers import AutoTokenizer, GPT2LMHeadModel

    adapters = built_models["adapters"]
    ids = sorted(p.name for p in adapters.iterdir() if (p / "adapter_config.json").exists())
    assert ids == [adapter_id(i) for i in range(NUM_ADAPTERS)] and len(ids) >= 32
    base = GPT2LMHeadModel.from_pretrained(str(built_models["lora_base"])).eval()
    tok = AutoTokenizer.from_pretrained(str(built_models["lora_base"]))
    enc = tok("the quarterly policy review", return_tensors="pt")
    logits = []
    for aid in ids[:2]:
        m = PeftModel.from_pretrained(copy.deepcopy(base), str(adapters / aid)).eval()
        with torch.no_grad():
            logits.append(m(**enc).logits)
        text, n = _generate(m, tok, "the quarterly policy review", 5)
        assert n == 5 and isinstance(text, str)
    with torch.no_grad():
        base_logits = base(**enc).logits
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(logits[0], base_logits)


def test_passage_embeddings_report_their_progress_and_are_cached(built_models, tmp_path, monkeypatch):
    import numpy as np

    from target_app import vector_store

    monkeypatch.setenv("TARGET_APP_DATA", str(tmp_path))
    monkeypatch.setattr(vector_store, "PROGRESS_CHUNK", 64)
    docs = corpus.passages(150, 5)
    seen = []
    first = vector_store.passage_embeddings(docs, lambda done, total: seen.append((done, total)))
    assert seen == [(64, 150), (128, 150), (150, 150)]
    assert first.shape == (150, vector_store.DIM) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    again = vector_store.passage_embeddings(docs, lambda *_: seen.append("again"))
    assert np.array_equal(first, again) and seen[-1] == (150, 150)  # from the cache, no work to report
