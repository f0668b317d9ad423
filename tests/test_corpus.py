from target_app import corpus


def test_corpus_is_deterministic_and_large_enough():
    a, b = corpus.passages(), corpus.passages()
    assert len(a) >= 10_000
    assert a == b
    assert corpus.fingerprint(a) == corpus.fingerprint(b)
    assert [p.id for p in a] == list(range(len(a)))
    assert len({p.entity for p in a}) == len(a)


def test_a_different_seed_gives_another_corpus():
    assert corpus.fingerprint(corpus.passages(100, seed=1)) != corpus.fingerprint(corpus.passages(100, seed=2))


def test_questions_name_their_passage_entity():
    docs = corpus.passages()
    qs = corpus.questions(docs, 200, seed=3)
    assert qs == corpus.questions(docs, 200, seed=3)
    for q in qs:
        p = docs[q.passage_id]
        assert p.entity in q.text and q.domain == p.domain
