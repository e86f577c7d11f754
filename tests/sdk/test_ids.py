"""Record-id edge cases (§5, §6) through the SDK, and every published vector."""

from __future__ import annotations

import json

import pytest
from syncropel.canonical import canonical_json
from syncropel.hashing import record_id

from harness import (
    SEVEN,
    Capture,
    arun,
    assert_error,
    assert_record,
    load_vectors,
    new_actor,
    new_thread,
    rid6,
    rid7,
    steward_class,
)

VECTORS, RAW_INPUTS = load_vectors()
VECTOR_NAMES = [v["name"] for v in VECTORS["records"]]
BY_NAME = {v["name"]: v for v in VECTORS["records"]}
# nfc_composed_e and nfd_decomposed_e share (thread, actor, clock): on one
# server the second is a DuplicateClock, so the NFD one gets its own server.
SECOND_SERVER = {"nfd_decomposed_e"}


@pytest.fixture(scope="module")
def steward_b():
    s = steward_class().start()
    try:
        yield s
    finally:
        s.stop()


def emit_bodies(steward, bodies, *, kind="test.ids.edge", actor=None):
    """Emit each body via Client.emit on a fresh thread; return (cap, thread, results)."""
    thread = new_thread()

    async def go():
        async with steward.sdk(actor or new_actor("ids")) as c:
            cap = Capture().attach(c)
            out = []
            for i, b in enumerate(bodies):
                out.append(await c.emit(act="PUT", kind=kind, body=b, thread=thread, clock=i + 1))
            return cap, out

    cap, results = arun(go())
    return cap, thread, results


def check_all(steward, cap, results):
    envs = cap.envelopes
    assert len(envs) == len(results)
    recs = []
    for env, res in zip(envs, results):
        assert res.success, res.error
        assert res.record_id == rid7(env)
        rec = steward.get_record(res.record_id)
        assert_record(rec, sent=env)
        assert canonical_json({k: rec[k] for k in SEVEN}) == canonical_json(env)
        recs.append(rec)
    return recs


def test_nfc_and_nfd_hash_differently(steward):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    cap, thread, results = emit_bodies(steward, [{"name": nfc}, {"name": nfd}])
    recs = check_all(steward, cap, results)
    assert results[0].record_id != results[1].record_id
    assert recs[0]["body"]["name"] == nfc, "server must not normalize"
    assert recs[1]["body"]["name"] == nfd, "server must not normalize"


def test_emoji_and_cjk_keys_sort_by_code_point(steward):
    body = {"😀": "grin", "\ufb01": "ligature", "中文": "値", "é": 1, "z": 2, "10": 3, "9": 4,
            "A": {"😀": [1, {"ß": None}], "a": True}}
    cap, thread, results = emit_bodies(steward, [body])
    (rec,) = check_all(steward, cap, results)
    assert rec["body"]["😀"] == "grin"
    keys = list(json.loads(canonical_json(rec["body"])).keys())
    assert keys.index("\ufb01") < keys.index("😀"), "code-point order, not UTF-16"
    assert keys.index("10") < keys.index("9")


def test_integral_float_hashes_as_integer(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("floats")) as c:
            cap = Capture().attach(c)
            a = await c.emit(act="PUT", kind="test.ids.float", body={"x": 1.0, "z": -0.0, "big": 1e16},
                             thread=thread, clock=5)
            b = await c.emit(act="PUT", kind="test.ids.float", body={"x": 1, "z": 0, "big": 10**16},
                             thread=thread, clock=5)
            return cap, a, b

    cap, a, b = arun(go())
    assert b"1.0" in cap.requests[0][2], "the SDK really sent a float token"
    assert a.success and b.success, (a.error, b.error)
    assert a.record_id == rid7(cap.envelopes[0])
    assert b.record_id == a.record_id, "1.0 and 1 must give the same id (an idempotent replay)"
    assert cap.emit_statuses == [201, 200]
    rec = steward.get_record(a.record_id)
    assert_record(rec)
    assert rec["body"]["x"] == 1 and rec["body"]["z"] == 0 and rec["body"]["big"] == 10**16
    assert len(steward.thread_records(thread)) == 1


def test_non_integral_floats_use_python_repr(steward):
    body = {"small": 1e-05, "tiny": 1.5e-07, "tenth": 0.1, "edge": 0.0001, "half": 0.5,
            "neg": -123.456, "pi": 3.141592653589793, "big_frac": 1234567890123456.8,
            "denormal": 5e-324, "third": 1 / 3}
    cap, thread, results = emit_bodies(steward, [body])
    (rec,) = check_all(steward, cap, results)
    for k, v in body.items():
        assert rec["body"][k] == v and isinstance(rec["body"][k], float), (k, rec["body"][k])
    assert '"small":1e-05' in canonical_json(rec["body"])


def test_integers_beyond_64_bits_are_exact(steward):
    body = {"u64_over": 2**64 + 1, "neg_big": -(2**70), "i64_max": 2**63 - 1, "huge": 10**40 + 7,
            "from_float": 1e300, "list": [2**100, -(2**65)]}
    cap, thread, results = emit_bodies(steward, [body])
    (rec,) = check_all(steward, cap, results)
    assert rec["body"]["u64_over"] == 18446744073709551617
    assert rec["body"]["neg_big"] == -1180591620717411303424
    assert rec["body"]["huge"] == 10**40 + 7
    assert rec["body"]["from_float"] == int(1e300)
    assert rec["body"]["list"] == [2**100, -(2**65)]


def test_nested_objects_and_arrays(steward):
    body = {"z": {"y": {"x": {"w": [3, 2, 1, {"b": 1, "a": [{"d": 4, "c": 3}]}]}}},
            "a": [[], {}, [[]], ""], "m": {"": "empty key", " ": "space"}, "t": [True, False, None]}
    cap, thread, results = emit_bodies(steward, [body])
    (rec,) = check_all(steward, cap, results)
    assert rec["body"]["z"]["y"]["x"]["w"] == [3, 2, 1, {"b": 1, "a": [{"d": 4, "c": 3}]}]
    assert rec["body"]["m"][""] == "empty key"


def test_string_escapes_round_trip(steward):
    s = 'quote" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f nul\x00 us\x1f del\x7f ls\u2028 ps\u2029'
    cap, thread, results = emit_bodies(steward, [{"s": s, "k\n\"": "key escapes"}])
    (rec,) = check_all(steward, cap, results)
    assert rec["body"]["s"] == s
    assert rec["body"]["k\n\""] == "key escapes"


def test_sdk_sorts_unsorted_parents(steward):
    parents = ["e" * 64, "1" * 64, "b" * 64]
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("parents")) as c:
            cap = Capture().attach(c)
            return cap, await c.emit(act="DO", kind="test.ids.parents", body={}, thread=thread,
                                     parents=parents, clock=1)

    cap, res = arun(go())
    assert res.success, res.error
    env = cap.last_envelope()
    assert res.record_id == rid7(env)
    rec = steward.get_record(res.record_id)
    assert rec["parents"] == sorted(parents)
    assert_record(rec, sent=env)


# ---------------------------------------------------------------------------
# the published vectors, POSTed byte-exact
# ---------------------------------------------------------------------------


def test_vector_file_sanity():
    assert len(VECTOR_NAMES) == 15
    for name, raw in RAW_INPUTS.items():
        v = BY_NAME[name]
        # Our literal-preserving re-serialisation parses to the vector's input.
        wire = json.loads(raw)
        assert wire == v["input"], name
        assert record_id({**{k: wire[k] for k in SEVEN}, "parents": sorted(wire["parents"])},
                         fields=7) == v["record_id_7"], name
        assert rid7(dict(v["input"], parents=sorted(v["input"]["parents"]))) == v["record_id_7"], name
    assert "1.0" in RAW_INPUTS["integer_valued_floats"]
    assert "1e+300" in RAW_INPUTS["large_integers"]


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_record_id(name, steward, steward_b):
    v = BY_NAME[name]
    server = steward_b if name in SECOND_SERVER else steward
    raw = RAW_INPUTS[name]
    r = server.post_record(raw)
    assert r.status_code == 201, f"{name}: {r.status_code} {r.text[:300]}"
    rec = r.json()
    assert rec["id"] == v["record_id_7"], f"{name}: got {rec['id']}"
    assert rec["id"] != v["record_id_6_legacy"]
    assert_record(rec)
    assert canonical_json({k: rec[k] for k in SEVEN}) == v["canonical_json_7"], name
    fetched = server.get_record(rec["id"])
    assert fetched == rec
    # Identical replay of the exact bytes: 200, same id, same sequence.
    r2 = server.post_record(raw)
    assert r2.status_code == 200, f"{name} replay: {r2.status_code} {r2.text[:300]}"
    assert r2.json()["id"] == rec["id"]
    assert r2.json()["sequence"] == rec["sequence"]


def test_ascii_basic_checklist_id(steward):
    r = steward.post_record(RAW_INPUTS["ascii_basic"])
    assert r.status_code in (200, 201), r.text
    assert r.json()["id"] == "c99048ccb726d7ff07cd26930f7039c3a58c91f44be7e9af685895f4abefd5ff"


def test_nfd_after_nfc_is_duplicate_clock_not_a_replay(steward):
    """Same (thread, actor, clock) as the NFC vector: a server that normalized
    would see an identical record and answer 200; it must answer DuplicateClock."""
    assert steward.post_record(RAW_INPUTS["nfc_composed_e"]).status_code in (200, 201)
    r = steward.post_record(RAW_INPUTS["nfd_decomposed_e"])
    body = assert_error(r, 400, "INGEST_FAILED")
    assert body["message"].startswith("DuplicateClock:"), body
    nfd = BY_NAME["nfd_decomposed_e"]
    with steward.http() as h:
        g = h.get(f"/v1/records/{nfd['record_id_7']}")
    assert_error(g, 404, "NOT_FOUND")


def test_vector_parents_come_back_sorted(steward):
    v = BY_NAME["parents_multiple_unsorted"]
    assert v["input"]["parents"] != sorted(v["input"]["parents"])
    r = steward.post_record(RAW_INPUTS["parents_multiple_unsorted"])
    assert r.status_code in (200, 201), r.text
    assert r.json()["parents"] == sorted(v["input"]["parents"])


def test_vector_1e300_stored_as_exact_integer(steward):
    r = steward.post_record(RAW_INPUTS["large_integers"])
    assert r.status_code in (200, 201), r.text
    body = r.json()["body"]
    assert body["float_1e300"] == int(1e300)
    assert body["u64_over"] == 18446744073709551617
    # Verify on the wire, not only after Python parsing.
    assert "18446744073709551617" in r.text
    assert str(int(1e300)) in r.text
    assert rid6(r.json()) == BY_NAME["large_integers"]["record_id_6_legacy"]
