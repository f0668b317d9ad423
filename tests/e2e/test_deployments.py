"""Each deployment alone, through a real `serve.run` on a local Ray."""

import time

import numpy as np
import pytest
import ray
from ray import serve

from target_app import corpus
from target_app.generate import LLMGenerator
from target_app.lora import MultiLoRAModel
from target_app.rerank import Reranker
from target_app.rewriter import QueryRewriter
from target_app.router import DomainClassifier
from target_app.search import VectorSearch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_serve(built_models):
    # The stack's loopback settings (tuner/stack.py): without them this Ray's agents listen on
    # the machine's outward address. Ray read the variable when it was imported: its constant too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": 0})
            yield
        finally:
            serve.shutdown()
            ray.shutdown()


def test_the_tests_own_ray_listens_on_loopback_only(local_serve):
    import os

    import psutil

    from tests.conftest import beyond_loopback, listening

    run(QueryRewriter.bind(), "listen")  # a replica and the proxy up
    sockets = listening(psutil.Process(os.getpid()).children(recursive=True))
    assert sockets and not beyond_loopback(sockets), sockets


def run(app, name):
    return serve.run(app, name=name, route_prefix=None)


def test_query_rewriter_embeds_and_batches(local_serve):
    h = run(QueryRewriter.options(user_config={"batch": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}}).bind(), "rw")
    out = h.remote("  When was   Vorhalzan introduced ??").result()
    assert out["query"] == "When was Vorhalzan introduced?"
    v = np.array(out["vector"])
    assert v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-4
    assert h.batch_settings.remote().result() == {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}
    # Eight concurrent calls within the 50 ms wait form one batch: far faster than 8 waits.
    t0 = time.perf_counter()
    outs = [r.result() for r in [h.remote(f"question {i}") for i in range(8)]]
    assert len({tuple(o["vector"][:4]) for o in outs}) == 8
    assert time.perf_counter() - t0 < 8 * 0.05
    serve.delete("rw")


def test_emulated_mode_holds_the_table_time(local_serve):
    cfg = {"compute": {"mode": "emulated", "table": [[1, 200.0], [8, 400.0]]}}
    h = run(QueryRewriter.options(user_config=cfg).bind(), "rwp")
    h.remote("warm up").result()
    t0 = time.perf_counter()
    out = h.remote("a query").result()
    assert time.perf_counter() - t0 >= 0.2
    assert len(out["vector"]) == 384 and out["compute"] == "emulated:table"
    serve.delete("rwp")


def test_vector_search_finds_the_passage(local_serve, tmp_path):
    from target_app.rewriter import load_embedder

    h = run(VectorSearch.options(user_config={"milvus_uri": str(tmp_path / "m.db")}).bind(), "vs")
    model = load_embedder(None)
    docs = corpus.passages()
    for q in corpus.questions(docs, 5, seed=11):
        hits = h.remote(model.encode(q.text, normalize_embeddings=True).tolist(), 20).result()
        assert len(hits) == 20 and {"id", "text", "score"} <= set(hits[0])
        assert q.passage_id in [x["id"] for x in hits]
        assert hits[[x["id"] for x in hits].index(q.passage_id)]["text"] == docs[q.passage_id].text
    serve.delete("vs")


def test_reranker_local_puts_the_answer_first(local_serve):
    h = run(Reranker.options(user_config={"compute": {"mode": "local"}}).bind(), "rr")
    docs = corpus.passages()
    q = corpus.questions(docs, 1, seed=5)[0]
    cands = [{"id": d.id, "text": d.text, "score": 0.0} for d in docs[:19]] + [
        {"id": q.passage_id, "text": docs[q.passage_id].text, "score": 0.0}]
    top = h.remote(q.text, cands).result()
    assert len(top) == 5 and top[0]["id"] == q.passage_id
    assert top == sorted(top, key=lambda p: p["rerank_score"], reverse=True)
    serve.delete("rr")


def test_reranker_emulated_keeps_retrieval_order(local_serve):
    cfg = {"compute": {"mode": "emulated", "accelerator": "h100", "stage": "bge-reranker-large-seq256"}}
    h = run(Reranker.options(user_config=cfg).bind(), "rrp")
    cands = [{"id": i, "text": f"passage {i}", "score": 1 - i / 20} for i in range(20)]
    assert [p["id"] for p in h.remote("q", cands).result()] == [0, 1, 2, 3, 4]
    serve.delete("rrp")


def test_llm_generator_answers_and_streams(local_serve, llm_emulator):
    h = run(LLMGenerator.options(user_config={"base_url": llm_emulator, "max_tokens": 12}).bind(), "gen")
    passages = [{"id": 1, "text": "Vorhalzan is a trading desk."}]
    out = h.remote("What is Vorhalzan?", passages).result()
    assert out["completion_tokens"] == 12 and out["text"]
    deltas = list(h.options(stream=True).stream.remote("What is Vorhalzan?", passages))
    assert len(deltas) == 12 and all(d["tokens"] == 1 for d in deltas)  # no stream interval: a token each
    h = run(LLMGenerator.options(user_config={"base_url": llm_emulator, "max_tokens": 12,
                                              "stream_interval_ms": 30}).bind(), "gen")
    batched = list(h.options(stream=True).stream.remote("What is Vorhalzan?", passages))
    assert batched[0]["tokens"] == 1 and sum(d["tokens"] for d in batched) == 12 and len(batched) < 12
    assert "".join(d["text"] for d in batched) == "".join(d["text"] for d in deltas)
    serve.delete("gen")


def test_llm_generator_degrades_quickly_on_a_dead_endpoint(local_serve):
    from tuner.ports import free_port

    cfg = {"base_url": f"http://127.0.0.1:{free_port()}/v1", "timeout_s": 2,
           "breaker": {"failures": 2, "cool_down_s": 60}}
    h = run(LLMGenerator.options(user_config=cfg).bind(), "gen_dead")
    t0 = time.perf_counter()
    out = [h.remote("q", []).result() for _ in range(3)]
    assert time.perf_counter() - t0 < 10
    assert [o["text"] for o in out] == [None] * 3
    assert "Connection" in out[0]["degraded"] and out[2]["degraded"] == "circuit open"
    serve.delete("gen_dead")


def test_domain_classifier(local_serve):
    h = run(DomainClassifier.options(name="LegalClassifier").bind("legal"), "clf")
    out = h.remote("the defendant faces a fraud charge after the arrest").result()
    assert out["label"] == "criminal" and 0 < out["score"] <= 1
    serve.delete("clf")


def test_emulated_stages_answer_as_local_ones_do(local_serve):
    """The emulated embedder retrieves the question's passage vector, the classifier its keyword
    label, the LoRA model holds its card for the adapter load on a miss and for its tokens."""
    from target_app.vector_store import passage_embeddings

    l4 = {"mode": "emulated", "accelerator": "l4"}
    docs = corpus.passages()
    q = corpus.questions(docs, 1, seed=9)[0]
    rw = run(QueryRewriter.options(user_config={"compute": {**l4, "stage": "minilm-l6-embed-seq64",
                                                             "dtype": "float16"}}).bind(), "rwe")
    out = rw.remote(q.text).result()
    assert out["compute"] == "emulated:l4"
    assert np.allclose(out["vector"], passage_embeddings(docs)[q.passage_id], atol=1e-6)
    serve.delete("rwe")
    clf = run(DomainClassifier.options(name="FinanceClassifier", user_config={
        "compute": {**l4, "stage": "bert-base-cls-seq128"}}).bind("finance"), "clfe")
    assert clf.remote("merchant refund on a card payment").result() == {"label": "payments", "score": None,
                                                                        "compute": "emulated:l4"}
    serve.delete("clfe")
    lora = run(MultiLoRAModel.options(user_config={"max_models_per_replica": 2, "max_new_tokens": 8,
                                                   "compute": {**l4, "stage": "llama-3.2-1b-lora"}}).bind(), "lorae")
    timed = []
    for _ in range(2):
        t0 = time.perf_counter()
        timed.append((lora.options(multiplexed_model_id="lora-05").remote("Summarise the report", 8).result(),
                      time.perf_counter() - t0))
    (cold, cold_s), (warm, warm_s) = timed
    assert (cold["adapter_cache"], warm["adapter_cache"], cold["compute"]) == ("miss", "hit", "emulated:l4")
    assert cold["text"] == warm["text"] and len(warm["text"].split()) == warm["completion_tokens"] == 8
    assert cold["adapter_load_ms"] >= 160 > warm["adapter_load_ms"]  # the L4 table's 1B adapter load
    assert warm_s >= (30 + 7 * 28) / 1000  # prefill and 7 decode steps on the L4 table
    serve.delete("lorae")


def test_multi_lora_cold_then_warm_and_lru(local_serve):
    h = run(MultiLoRAModel.options(user_config={"max_models_per_replica": 2}).bind(), "lora")
    cold = h.options(multiplexed_model_id="lora-03").remote("hello there", 4).result()
    warm = h.options(multiplexed_model_id="lora-03").remote("hello there", 4).result()
    assert (cold["adapter_cache"], warm["adapter_cache"]) == ("miss", "hit")
    assert cold["adapter_load_ms"] > 10 * warm["adapter_load_ms"]
    assert cold["text"] == warm["text"] and warm["completion_tokens"] == 4
    for aid in ("lora-04", "lora-05"):
        h.options(multiplexed_model_id=aid).remote("hi", 1).result()
    assert h.loaded_adapters.remote().result() == ["lora-04", "lora-05"]
    assert "error" in h.options(multiplexed_model_id="nope").remote("hi", 1).result()
    serve.delete("lora")
