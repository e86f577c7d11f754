"""Lexical search (§11.7) through `Client.search`, plus hostile query text."""

from __future__ import annotations

import pytest

from harness import arun, assert_record, new_actor, new_thread, word

W = word("zq")   # the word under test, unique to this run
W_NESTED = word("nq")
A1 = new_actor("sa")
A2 = new_actor("sb")


@pytest.fixture(scope="module")
def corpus(steward):
    t1, t2 = new_thread(), new_thread()
    # name, thread, actor, clock, kind, body
    docs = [
        ("dense", t1, A1, 100, "test.search.note", {"title": f"{W} {W} {W}"}),
        ("sparse", t1, A2, 200, "test.search.doc",
         {"title": f"one {W} inside a much longer sentence about harbours, weather, tariffs, "
                   f"orchards, railways, lighthouses, ferries and other unrelated topics"}),
        ("none", t1, A1, 300, "test.search.note", {"title": "nothing relevant here at all"}),
        ("other_thread", t2, A1, 400, "test.search.note", {"title": f"{W} elsewhere", "n": 1}),
        ("nested", t2, A2, 500, "test.search.doc", {"meta": {"deep": [{"note": f"hidden {W_NESTED}"}]}}),
    ]

    async def go():
        ids = {}
        clients = {A1: steward.sdk(A1), A2: steward.sdk(A2)}
        try:
            for name, thread, actor, clock, kind, body in docs:
                res = await clients[actor].emit(act="KNOW", kind=kind, body=body, thread=thread, clock=clock)
                assert res.success, (name, res.error)
                ids[name] = res.record_id
        finally:
            for c in clients.values():
                await c.aclose()
        return ids

    ids = arun(go())
    return {"t1": t1, "t2": t2, "ids": ids, "names": {v: k for k, v in ids.items()}}


def search(steward, query, token="admin", **kw):
    async def go():
        async with steward.sdk(token=token) as c:
            return await c.search(query, **kw)

    return arun(go())


def hit_names(corpus, out):
    return [corpus["names"].get(h["record"]["id"], "?") for h in out["hits"]]


def test_search_ranks_by_relevance(steward, corpus):
    out = search(steward, W)
    assert out["embedder"] == "lexical"
    assert out["k"] == 10
    assert "disabled" not in out
    got = hit_names(corpus, out)
    assert sorted(got) == ["dense", "other_thread", "sparse"], got
    assert got[0] == "dense", f"three occurrences in a short text must rank first: {got}"
    scores = [h["score"] for h in out["hits"]]
    assert all(isinstance(s, (int, float)) and s >= 0 for s in scores), scores
    assert scores == sorted(scores, reverse=True), scores
    assert scores[0] > scores[-1]
    for h in out["hits"]:
        assert_record(h["record"])


def test_search_finds_nested_string_values(steward, corpus):
    assert hit_names(corpus, search(steward, W_NESTED)) == ["nested"]


def test_search_filters(steward, corpus):
    assert sorted(hit_names(corpus, search(steward, W, thread=corpus["t1"]))) == ["dense", "sparse"]
    assert hit_names(corpus, search(steward, W, actor=A2)) == ["sparse"]
    assert hit_names(corpus, search(steward, W, kind="test.search.doc")) == ["sparse"]
    assert sorted(hit_names(corpus, search(steward, W, after_clock=200))) == ["other_thread", "sparse"]
    assert hit_names(corpus, search(steward, W, thread=corpus["t1"], after_clock=101)) == ["sparse"]
    assert hit_names(corpus, search(steward, W, thread=new_thread())) == []


def test_search_k(steward, corpus):
    one = search(steward, W, k=1)
    assert hit_names(corpus, one) == ["dense"]
    assert one["k"] == 1


def test_search_raw_response_has_data_and_hits(steward, corpus):
    with steward.http() as h:
        r = h.post("/v1/records/search", json={"query": W, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["embedder"] == "lexical"
    assert body["k"] == 5
    assert body["data"] == body["hits"]
    assert len(body["data"]) == 3
    for item in body["data"]:
        assert set(item) >= {"score", "record"}


@pytest.mark.parametrize("k,expected_max", [(0, 1), (-5, 1), (1000, 100)])
def test_search_k_is_clamped(steward, corpus, k, expected_max):
    with steward.http() as h:
        r = h.post("/v1/records/search", json={"query": W, "k": k})
    assert r.status_code == 200, r.text
    assert 1 <= r.json()["k"] <= expected_max
    assert len(r.json()["data"]) <= expected_max


def test_search_with_reader_token(steward, corpus, reader_token):
    assert sorted(hit_names(corpus, search(steward, W, token=reader_token))) == ["dense", "other_thread", "sparse"]


def test_search_empty_query_is_400(steward):
    with steward.http() as h:
        r = h.post("/v1/records/search", json={"query": "", "k": 5})
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["object"] == "error"
        r2 = h.post("/v1/records/search", json={"k": 5})
        assert 400 <= r2.status_code < 500, r2.text


HOSTILE = [
    '"', '""', '"unbalanced', "'", "a'b", "AND", "OR", "NOT", "AND OR NOT", "x AND", "NOT x",
    "*", "**", "a*", "*a", "NEAR(", "NEAR(a b)", "NEAR/3", "(", ")", "())(", "a:b", "col:*",
    "^", "-", "-x", "+", "{", "}", "[", "]", "\\", "\\\"", "%", "_", ";", "--", "/*", "*/",
    "'; DROP TABLE records; --", "\" OR 1=1 --", "body:secret", "records MATCH x",
    "ünïcødé", "日本語の検索", "🙂🙃", "\u200b", "\u0000", "a\u0000b", "\ud7ff", "e\u0301",
    "x" * 5000, " ".join(["AND"] * 300), "(" * 200, "\"" * 301, W + " " * 100 + W,
    f'"{W}', f"{W}*", f"{W} AND", f"NEAR({W}", f"{W} OR \"",
]


def test_hostile_queries_never_5xx(steward, corpus):
    failures = []
    with steward.http() as h:
        for q in HOSTILE:
            r = h.post("/v1/records/search", json={"query": q, "k": 10})
            if r.status_code >= 500:
                failures.append((q[:40], r.status_code, r.text[:200]))
                continue
            if r.status_code == 200:
                if not isinstance(r.json().get("data"), list):
                    failures.append((q[:40], 200, "no data list"))
            elif r.json().get("object") != "error":
                failures.append((q[:40], r.status_code, "non-envelope error"))
    assert not failures, failures
    # The server is still healthy afterwards and still finds the word.
    assert sorted(hit_names(corpus, search(steward, W))) == ["dense", "other_thread", "sparse"]


def test_hostile_queries_through_sdk(steward, corpus):
    async def go():
        async with steward.sdk() as c:
            return [await c.search(q) for q in ['"unbalanced', "AND OR NOT", "*", "NEAR(", "日本語"]]

    for out in arun(go()):
        assert isinstance(out["hits"], list)
        assert "disabled" not in out
