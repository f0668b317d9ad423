"""Request mixes: route weights, reproducible requests with valid bodies for every route,
Zipf-skewed adapter popularity whose hot adapter moves every `shift_s`, trace replay bodies."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from loadgen.mix import MixSettings, RequestMix, parse_weights, zipf_adapters
from loadgen.shapes import ShapeError
from target_app.corpus import passages

ROUTER_DOMAINS = {"legal", "medical", "finance"}  # target_app.router.DOMAINS (not imported: it pulls in Ray)
DOMAIN_OF = {p.entity: p.domain for p in passages()}


def requests(n=600, seed=4, **settings) -> list:
    mix = RequestMix(MixSettings(**settings), np.linspace(0, 60, n), seed=seed)
    return [mix.request(i) for i in range(n)]


def entities_in(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z]+", text) if w in DOMAIN_OF]


@pytest.mark.parametrize("text,weights", [
    ("rag=1,predict=2,lora=0.5", {"rag": 1, "predict": 2, "lora": 0.5}),
    (" lora=3 , ,rag=0,", {"lora": 3, "rag": 0}),
])
def test_parse_weights(text, weights):
    assert parse_weights(text) == weights


@pytest.mark.parametrize("text,fragment", [
    ("chat=1", "ROUTE=WEIGHT with ROUTE one of rag, predict, lora"),
    ("rag", "ROUTE=WEIGHT"),
    ("rag=lots", "weight of rag must be a number"),
    ("rag=-1", "must be in [0, 1e6]"),
    ("rag=0,lora=0", "at least one route needs a weight > 0"),
    ("", "at least one route"),
])
def test_parse_weights_rejects(text, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_weights(text)


@pytest.mark.parametrize("settings,fragment", [
    ({"adapters": 0}, "MixSettings.adapters"),
    ({"zipf_exponent": 11}, "zipf_exponent"),
    ({"shift_s": 0}, "shift_s"),
    ({"lora_max_tokens": 1000}, "lora_max_tokens"),
    ({"weigths": {"rag": 1}}, "weigths"),
])
def test_mix_settings_reject_out_of_range(settings, fragment):
    with pytest.raises(ShapeError, match=fragment):
        MixSettings(**settings)


def test_requests_reproducible_per_seed():
    assert requests(seed=4) == requests(seed=4)
    assert requests(seed=4) != requests(seed=5)


def test_every_route_with_a_valid_body():
    reqs = requests(n=900)
    assert {r.route for r in reqs} == {"rag", "predict", "lora"}
    for r in reqs:
        if r.route == "rag":
            assert (r.path, r.stream, r.body["stream"]) == ("/rag", True, True)
            assert entities_in(r.body["query"]), r.body  # names an entity of the shipped documents
        elif r.route == "predict":
            assert r.path == "/predict" and r.body["domain"] in ROUTER_DOMAINS
            assert {DOMAIN_OF[e] for e in entities_in(r.body["text"])} == {r.body["domain"]}
        else:
            assert r.path == "/v1/completions" and r.adapter == r.body["model"]
            assert re.fullmatch(r"lora-\d\d", r.adapter) and int(r.adapter[5:]) < 32
            assert r.body["max_tokens"] == r.max_tokens == 16 and r.body["prompt"]


def test_weights_and_options_are_followed():
    reqs = requests(n=2000, weights={"rag": 3, "lora": 1}, rag_stream=False, adapters=5, lora_max_tokens=7)
    counts = Counter(r.route for r in reqs)
    assert "predict" not in counts
    assert abs(counts["rag"] - 1500) <= 4 * math.sqrt(2000 * 0.75 * 0.25)
    assert all(not r.stream and r.body["stream"] is False for r in reqs if r.route == "rag")
    lora = [r for r in reqs if r.route == "lora"]
    assert {r.adapter for r in lora} <= {f"lora-0{i}" for i in range(5)}
    assert {r.body["max_tokens"] for r in lora} == {7}


def adapter_counts(times, n_adapters=32, exponent=1.0, shift_s=None, seed=1) -> np.ndarray:
    drawn = zipf_adapters(times, n_adapters, exponent, shift_s, np.random.default_rng(seed))
    return np.bincount(drawn, minlength=n_adapters)


def test_adapter_popularity_is_skewed():
    counts = adapter_counts(np.zeros(20_000))
    harmonic = sum(1 / k for k in range(1, 33))
    assert counts.max() == pytest.approx(20_000 / harmonic, rel=0.05)  # the top rank's Zipf(1) share
    assert counts.max() > 10 * counts.min()
    flat = adapter_counts(np.zeros(20_000), exponent=0)
    assert flat.max() < 1.5 * flat.min()


def test_shift_moves_the_popular_adapter_between_epochs():
    times = np.linspace(0, 200, 20_000, endpoint=False)
    drawn = zipf_adapters(times, 32, 1.0, 100.0, np.random.default_rng(1))
    first, second = (np.bincount(drawn[times // 100 == e], minlength=32) for e in (0, 1))
    assert first.argmax() != second.argmax()
    assert first.max() > 10 * first.min() and second.max() > 10 * second.min()
    still = zipf_adapters(times, 32, 1.0, None, np.random.default_rng(1))
    assert np.bincount(still[times < 100]).argmax() == np.bincount(still[times >= 100]).argmax()


def test_request_mix_lora_adapters_follow_the_shift():
    reqs = requests(n=6000, weights={"lora": 1}, shift_s=30)
    first = Counter(r.adapter for r in reqs[:3000]).most_common(1)[0][0]
    second = Counter(r.adapter for r in reqs[3000:]).most_common(1)[0][0]
    assert first != second


def test_trace_replay_requests_take_the_trace_tokens():
    prompt, output = np.array([3, 50, 9000]), np.array([5, 0, 12])
    mix = RequestMix(MixSettings(max_prompt_tokens=100), np.zeros(3), seed=0,
                     prompt_tokens=prompt, output_tokens=output)
    for i, (words, max_tokens) in enumerate([(3, 5), (50, 1), (100, 12)]):
        r = mix.request(i, row=i)
        assert (r.route, r.path, r.stream, r.body["stream"]) == ("rag", "/rag", True, True)
        assert len(r.body["history"].split()) == r.prompt_tokens == words
        assert r.body["max_tokens"] == r.max_tokens == max_tokens
