"""Reading records: lists, SDK query helpers, rich query (§11.3–11.6).

A small fixed data set is emitted once per module through the SDK; every
filter is checked against the exact set of record names it must return.
This module's server must hold fewer than 100 records in total, because
`Client.query(kind=…)` pages nothing and filters the first 100 client-side.
"""

from __future__ import annotations

import concurrent.futures
import secrets

import pytest

from harness import Capture, arun, assert_error, assert_record, new_thread, steward_class

A1 = "did:sync:user:qa-" + secrets.token_hex(3)
A2 = "did:sync:user:qb-" + secrets.token_hex(3)
KIND = "test.query.item"
OTHER_KIND = "test.query.other"

# name, act, actor, clock, extra body
SEED = [
    ("alpha", "INTEND", A1, 10, {"priority": 1, "tags": ["x"], "title": "Alpha Centauri",
                                 "meta": {"owner": "alice", "level": {"n": 1}}}),
    ("bravo", "PUT", A1, 20, {"priority": 2, "title": "bravo team", "meta": {"owner": "bob"}}),
    ("charlie", "PUT", A1, 30, {"priority": 3, "title": "Charlie", "awaits": "alpha"}),
    ("delta", "PUT", A1, 40, {"priority": 2.5, "title": "DELTA force"}),
    ("echo", "PUT", A2, 50, {"title": "echo chamber", "meta": {"owner": "alice"}}),
    ("foxtrot", "PUT", A2, 60, {"priority": "3", "title": "fox_trot"}),
    ("golf", "KNOW", A2, 70, {"priority": None, "title": "Golf%Club"}),
]
ALL = [s[0] for s in SEED]


@pytest.fixture(scope="module")
def seeded(steward):
    thread = new_thread()

    async def go():
        clients = {A1: steward.sdk(A1), A2: steward.sdk(A2)}
        ids = {}
        try:
            for name, act, actor, clock, extra in SEED:
                kind = OTHER_KIND if name == "golf" else KIND
                res = await clients[actor].emit(act=act, kind=kind, body={"name": name, **extra},
                                                thread=thread, clock=clock)
                assert res.success, (name, res.error)
                ids[name] = res.record_id
        finally:
            for c in clients.values():
                await c.aclose()
        return ids

    ids = arun(go())
    return {"thread": thread, "ids": ids, "names": {v: k for k, v in ids.items()}}


def names(seeded, records):
    return [seeded["names"].get(r["id"], "?" + r["id"][:8]) for r in records]


def rich(steward, seeded, flt, *, thread=True, **kw):
    async def go():
        async with steward.sdk() as c:
            return await c.rich_query(filter=flt, thread=seeded["thread"] if thread else None, **kw)

    return arun(go())


def rich_names(steward, seeded, flt, **kw):
    out = rich(steward, seeded, flt, **kw)
    assert "records" in out
    for r in out["records"]:
        assert_record(r)
    return names(seeded, out["records"])


# ---------------------------------------------------------------------------
# GET lists through the SDK
# ---------------------------------------------------------------------------


def test_query_thread_returns_records_in_sequence_order(steward, seeded):
    async def go():
        async with steward.sdk() as c:
            return (await c.query_thread(seeded["thread"]),
                    await c.query_thread(seeded["thread"], since=50),
                    await c.query_thread(seeded["thread"], limit=3))

    full, since, limited = arun(go())
    assert names(seeded, full) == ALL
    seqs = [r["sequence"] for r in full]
    assert seqs == sorted(seqs)
    for r in full:
        assert_record(r)
    assert names(seeded, since) == ["echo", "foxtrot", "golf"], "since is an inclusive clock bound"
    assert names(seeded, limited) == ["alpha", "bravo", "charlie"]


def test_query_thread_unknown_is_empty(steward):
    async def go():
        async with steward.sdk() as c:
            return await c.query_thread(new_thread())

    assert arun(go()) == []
    with steward.http() as h:
        r = h.get(f"/v1/threads/{new_thread()}/records", params={"limit": 100})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []
    assert r.json()["object"] == "list"


def test_sdk_query_by_thread_actor_since_where(steward, seeded):
    async def go():
        async with steward.sdk() as c:
            return {
                "thread": await c.query(thread=seeded["thread"]),
                "actor": await c.query(actor=A2),
                "thread_since": await c.query(thread=seeded["thread"], since=40),
                "actor_thread": await c.query(actor=A1, thread=seeded["thread"], limit=2),
                "where": await c.query(thread=seeded["thread"], where={"body.meta.owner": "alice"}),
            }

    out = arun(go())
    assert names(seeded, out["thread"]) == ALL
    assert names(seeded, out["actor"]) == ["echo", "foxtrot", "golf"]
    assert names(seeded, out["thread_since"]) == ["delta", "echo", "foxtrot", "golf"]
    assert names(seeded, out["actor_thread"]) == ["alpha", "bravo"]
    assert names(seeded, out["where"]) == ["alpha", "echo"]


def test_sdk_query_kind_only_needs_unfiltered_list(steward, seeded):
    """`query(kind=…)` sends GET /v1/records?limit=100 with no filter (§11.3)."""

    async def go():
        async with steward.sdk() as c:
            cap = Capture().attach(c)
            return cap, await c.query(kind=OTHER_KIND)

    cap, out = arun(go())
    assert names(seeded, out) == ["golf"]
    assert cap.statuses[-1][2] == 200


def test_unfiltered_list_shape_and_cursor_paging(steward, seeded):
    with steward.http() as h:
        r = h.get("/v1/records", params={"limit": 100})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list"
        assert isinstance(body["data"], list) and len(body["data"]) >= len(ALL)
        assert "next_cursor" in body and isinstance(body["has_more"], bool)
        seqs = [x["sequence"] for x in body["data"]]
        assert seqs == sorted(seqs)

        got, cursor, pages = [], None, 0
        while True:
            params = {"thread": seeded["thread"], "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = h.get("/v1/records", params=params)
            assert page.status_code == 200, page.text
            pb = page.json()
            assert len(pb["data"]) <= 2
            got.extend(pb["data"])
            pages += 1
            if not pb["has_more"]:
                assert pb["next_cursor"] is None
                break
            assert isinstance(pb["next_cursor"], str) and pb["next_cursor"]
            cursor = pb["next_cursor"]
            assert pages < 10
    assert names(seeded, got) == ALL
    assert pages == 4


def test_thread_records_cursor_paging(steward, seeded):
    got, cursor = [], None
    with steward.http() as h:
        for _ in range(10):
            params = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            pb = h.get(f"/v1/threads/{seeded['thread']}/records", params=params).json()
            got.extend(pb["data"])
            if not pb.get("has_more"):
                break
            cursor = pb["next_cursor"]
    assert names(seeded, got) == ALL


def test_list_threads_summary(steward, seeded):
    with steward.http() as h:
        r = h.get("/v1/threads", params={"limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    mine = [t for t in body["data"] if t["id"] == seeded["thread"]]
    assert len(mine) == 1, body
    assert mine[0]["record_count"] == len(ALL)
    assert mine[0]["last_clock"] == 70
    assert mine[0]["namespace"] == "default"


# ---------------------------------------------------------------------------
# rich query: every operator
# ---------------------------------------------------------------------------

OPERATOR_CASES = [
    ("implicit $eq", {"body.name": "alpha"}, ["alpha"]),
    ("$eq", {"body.priority": {"$eq": 2}}, ["bravo"]),
    ("$ne skips absent", {"body.meta.owner": {"$ne": "alice"}}, ["bravo"]),
    ("$gt", {"body.priority": {"$gt": 2}}, ["charlie", "delta"]),
    ("$gte", {"body.priority": {"$gte": 2}}, ["bravo", "charlie", "delta"]),
    ("$lt", {"body.priority": {"$lt": 2}}, ["alpha"]),
    ("$lte", {"body.priority": {"$lte": 2}}, ["alpha", "bravo"]),
    ("range AND in one doc", {"body.priority": {"$gt": 1, "$lt": 3}}, ["bravo", "delta"]),
    ("$in numbers (string '3' is another type)", {"body.priority": {"$in": [1, 3]}}, ["alpha", "charlie"]),
    ("$in strings", {"body.priority": {"$in": ["3"]}}, ["foxtrot"]),
    ("$nin skips absent", {"body.meta.owner": {"$nin": ["alice"]}}, ["bravo"]),
    ("$like prefix", {"body.title": {"$like": "D%"}}, ["delta"]),
    ("$like is case-sensitive", {"body.title": {"$like": "c%"}}, []),
    ("$like underscore", {"body.title": {"$like": "bravo_team"}}, ["bravo"]),
    ("$like suffix", {"body.title": {"$like": "%Centauri"}}, ["alpha"]),
    ("$ilike", {"body.title": {"$ilike": "c%"}}, ["charlie"]),
    ("$ilike upper pattern", {"body.title": {"$ilike": "%CHAMBER"}}, ["echo"]),
    ("$exists true", {"body.awaits": {"$exists": True}}, ["charlie"]),
    ("$exists false", {"body.meta": {"$exists": False}}, ["charlie", "delta", "foxtrot", "golf"]),
    ("$and", {"$and": [{"body.priority": {"$gte": 2}}, {"actor": A1}]}, ["bravo", "charlie", "delta"]),
    ("$or", {"$or": [{"body.name": "alpha"}, {"body.meta.owner": "bob"}]}, ["alpha", "bravo"]),
    ("$not on a column", {"$not": {"act": "PUT"}}, ["alpha", "golf"]),
    ("nested logic", {"$or": [{"$and": [{"actor": A2}, {"body.title": {"$like": "%t%"}}]},
                             {"body.name": {"$in": ["alpha"]}}]}, ["alpha", "foxtrot"]),
    ("deep dot path", {"body.meta.level.n": 1}, ["alpha"]),
    ("object deep equality", {"body.meta": {"owner": "bob"}}, ["bravo"]),
    ("array equality", {"body.tags": ["x"]}, ["alpha"]),
    ("column act", {"act": "INTEND"}, ["alpha"]),
    ("column actor", {"actor": A2}, ["echo", "foxtrot", "golf"]),
    ("column clock", {"clock": {"$gte": 60}}, ["foxtrot", "golf"]),
    ("column data_type", {"data_type": "SCALAR"}, ALL),
    ("column namespace", {"namespace": "default"}, ALL),
    ("column created_at", {"created_at": {"$gt": 0}}, ALL),
    ("body.kind", {"body.kind": {"$in": [OTHER_KIND]}}, ["golf"]),
    ("implicit AND of members", {"actor": A1, "body.priority": {"$lt": 3}}, ["alpha", "bravo", "delta"]),
    ("empty filter", {}, ALL),
]


@pytest.mark.parametrize("label,flt,expected", OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_rich_query_operator(steward, seeded, label, flt, expected):
    assert rich_names(steward, seeded, flt) == expected


def test_rich_query_by_id_column(steward, seeded):
    rid = seeded["ids"]["charlie"]
    assert rich_names(steward, seeded, {"id": rid}) == ["charlie"]
    assert rich_names(steward, seeded, {"thread": seeded["thread"], "id": {"$in": [rid]}}, thread=False) == ["charlie"]


def test_rich_query_type_mismatch_never_matches(steward, seeded):
    assert rich_names(steward, seeded, {"body.priority": "2"}) == []
    assert rich_names(steward, seeded, {"body.priority": {"$gt": "1"}}) == ["foxtrot"]


def test_rich_query_null_is_present(steward, seeded):
    assert rich_names(steward, seeded, {"body.priority": {"$exists": False}}) == ["echo"]
    assert rich_names(steward, seeded, {"body.priority": None}) == ["golf"]


def test_rich_query_not_negates_an_absent_match(steward, seeded):
    assert rich_names(steward, seeded, {"$not": {"body.meta.owner": "alice"}}) == [
        "bravo", "charlie", "delta", "foxtrot", "golf"]


def test_rich_query_sort_limit_offset(steward, seeded):
    assert rich_names(steward, seeded, {}, sort={"clock": -1}) == list(reversed(ALL))
    assert rich_names(steward, seeded, {}, sort={"clock": 1}) == ALL
    assert rich_names(steward, seeded, {}, sort={"clock": 1}, limit=2, offset=1) == ["bravo", "charlie"]
    assert rich_names(steward, seeded, {}, sort={"clock": -1}, limit=3) == ["golf", "foxtrot", "echo"]
    assert rich_names(steward, seeded, {}, sort={"clock": -1}, offset=5) == ["bravo", "alpha"]
    assert rich_names(steward, seeded, {"actor": A1}, limit=2) == ["alpha", "bravo"]


def test_rich_query_sort_by_body_path(steward, seeded):
    assert rich_names(steward, seeded, {}, sort={"body.name": -1}) == list(reversed(ALL))


def test_rich_query_thread_shorthand_equals_filter(steward, seeded):
    a = rich_names(steward, seeded, {"actor": A2})
    b = rich_names(steward, seeded, {"actor": A2, "thread": seeded["thread"]}, thread=False)
    assert a == b == ["echo", "foxtrot", "golf"]
    assert rich_names(steward, seeded, {"thread": new_thread()}, thread=False) == []


def test_rich_query_explain_plan(steward, seeded):
    flt = {"actor": A1, "act": "PUT", "body.kind": KIND,
           "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": True}}]}
    out = rich(steward, seeded, flt, explain=True)
    assert names(seeded, out["records"]) == ["bravo", "charlie", "delta"]
    plan = out.get("plan")
    assert isinstance(plan, dict), out
    assert isinstance(plan["indexed_fields"], list) and isinstance(plan["unindexed_fields"], list)
    assert "actor" in plan["indexed_fields"]
    for p in ("body.kind", "body.priority", "body.awaits"):
        assert p in plan["unindexed_fields"], plan
        assert p not in plan["indexed_fields"], plan
    no_plan = rich(steward, seeded, flt)
    assert "plan" not in no_plan


def test_rich_query_raw_response_shape(steward, seeded):
    with steward.http() as h:
        r = h.post("/v1/records/query", json={"filter": {"actor": A1}, "thread": seeded["thread"],
                                              "limit": 2, "sort": {"clock": 1}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert names(seeded, body["data"]) == ["alpha", "bravo"]
    assert body["capped"] is False
    assert body["matched_total"] == 4
    assert "plan" not in body


@pytest.mark.parametrize("path", ["body", "kind", "sig", "canonical_json", "body.a b", "body..x", "bodyx.y"])
def test_rich_query_invalid_path_names_it(steward, path):
    with steward.http() as h:
        r = h.post("/v1/records/query", json={"filter": {path: 1}})
    body = assert_error(r, 400, "INVALID_FILTER")
    assert path in body["message"], body


@pytest.mark.parametrize("flt", [
    {"body.x": {"$regex": "a"}},
    {"body.x": {"$in": "notalist"}},
    {"$or": {"body.x": 1}},
    {"$and": "x"},
    {"body.x": {"$exists": "yes"}},
    {"$bogus": []},
])
def test_rich_query_invalid_operator(steward, flt):
    with steward.http() as h:
        r = h.post("/v1/records/query", json={"filter": flt})
    assert_error(r, 400, "INVALID_FILTER")


@pytest.mark.timeout(240)
def test_rich_query_limit_is_capped_at_1000():
    """Dedicated server: 1005 records on one thread, then limit 5000."""
    s = steward_class().start()
    try:
        thread = new_thread()

        def post_range(rng):
            with s.http() as h:
                for i in rng:
                    env = {"act": "DO", "actor": "did:sync:user:bulk", "body": {"i": i}, "clock": i,
                           "data_type": "SCALAR", "parents": [], "thread": thread}
                    r = h.post("/v1/records", json=env)
                    assert r.status_code == 201, r.text

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(post_range, [range(k, 1005, 4) for k in range(4)]))

        with s.http() as h:
            r = h.post("/v1/records/query", json={"filter": {"thread": thread}, "limit": 5000})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["capped"] is True
            assert len(body["data"]) == 1000
            r2 = h.post("/v1/records/query", json={"filter": {"thread": thread}, "limit": 1000})
            assert r2.json()["capped"] is False
            assert len(r2.json()["data"]) == 1000
            r3 = h.get("/v1/records", params={"thread": thread, "limit": 5000})
            assert r3.status_code == 200
            assert len(r3.json()["data"]) == 1000
            assert r3.json()["has_more"] is True
    finally:
        s.stop()
