from loadgen.mix import NUM_ADAPTERS, PREDICT_TEXTS, mixed_requests
from target_app import corpus


def test_mix_is_reproducible_and_covers_every_route():
    reqs = mixed_requests(300, seed=4)
    assert reqs == mixed_requests(300, seed=4) and reqs != mixed_requests(300, seed=5)
    assert {path for path, _ in reqs} == {"/rag", "/predict", "/v1/completions"}
    entities = {p.entity for p in corpus.passages()}
    for path, body in reqs:
        if path == "/rag":
            assert any(word.strip("?") in entities for word in body["query"].split())
        elif path == "/predict":
            assert body["domain"] in PREDICT_TEXTS
        else:
            assert 0 <= int(body["model"].split("-")[1]) < NUM_ADAPTERS


def test_adapter_popularity_is_skewed():
    models = [b["model"] for p, b in mixed_requests(3000, seed=1) if p == "/v1/completions"]
    assert models.count("lora-00") > 5 * models.count("lora-31")
