"""Emitting through every SDK emit path (§4.3, §6, §11.1).

For each call the envelope the SDK really sent is captured off the wire; the
returned id must equal the SDK's own 7-field `record_id` of that envelope, and
the record fetched back must re-derive the same id from its own fields.
"""

from __future__ import annotations

import secrets
import time

from syncropel import Ref

from harness import (
    SEVEN,
    Capture,
    arun,
    assert_record,
    did_key_public,
    ed25519_verify,
    load_vectors,
    new_actor,
    new_thread,
    rid6,
    rid7,
    verify_record_signature,
)


def check_emit(steward, cap: Capture, result, *, status: int = 201) -> tuple[dict, dict]:
    assert result.success, f"emit failed: {result.error}"
    env = cap.last_envelope()
    assert set(env) == set(SEVEN), env
    assert result.record_id == rid7(env), "server id differs from the SDK's 7-field record_id"
    assert result.record_id != rid6(env), "server assigned the legacy 6-field id"
    assert result.clock == env["clock"]
    assert result.thread == env["thread"]
    assert cap.emit_statuses[-1] == status, cap.emit_statuses
    rec = steward.get_record(result.record_id)
    assert rec["id"] == result.record_id
    assert_record(rec, sent=env)
    return env, rec


def test_emit_async_readme_shape(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk("did:example:my-app") as c:
            cap = Capture().attach(c)
            res = await c.emit(
                act="PUT",
                kind="music.catalog.track",
                body={"title": "Glow", "artists": ["Zonke"]},
                thread=thread,
                refs=[Ref.music_track(isrc="USJI19810404")],
            )
            return cap, res

    cap, res = arun(go())
    env, rec = check_emit(steward, cap, res)
    assert res.kind == "music.catalog.track" and res.act == "PUT"
    assert rec["body"] == {
        "title": "Glow",
        "artists": ["Zonke"],
        "kind": "music.catalog.track",
        "_v": 1,
        "_refs": [{"kind": "@music.track", "id": "isrc:USJI19810404"}],
    }
    assert rec["namespace"] == "default"
    assert rec["judged_by"] is None
    assert rec["data_type"] == "SCALAR"
    # Auto-filled clock: wall-clock milliseconds (§9).
    assert abs(env["clock"] - time.time() * 1000) < 600_000


def test_emit_sync(steward):
    thread = new_thread()
    c = steward.sdk("did:sync:user:sync-emitter")
    try:
        cap = Capture().attach(c)
        res1 = c.emit_sync(act="LEARN", kind="test.sync.note", body={"n": 1}, thread=thread)
        env1, rec1 = check_emit(steward, cap, res1)
        res2 = c.emit_sync(act="LEARN", kind="test.sync.note", body={"n": 2}, thread=thread)
        env2, rec2 = check_emit(steward, cap, res2)
    finally:
        arun(c.aclose())
    assert env2["clock"] > env1["clock"]
    assert rec2["sequence"] > rec1["sequence"]
    assert [r["id"] for r in steward.thread_records(thread)] == [res1.record_id, res2.record_id]


def test_sdk_emit_crosscheck_vector(steward):
    """The vectors' `sdk_emit_crosscheck`: Client.emit_sync of the README record."""
    vectors, _ = load_vectors()
    cross = vectors["sdk_emit_crosscheck"]
    sent = cross["envelope_sent"]
    c = steward.sdk(sent["actor"])
    try:
        cap = Capture().attach(c)
        res = c.emit_sync(
            act="PUT",
            kind="music.catalog.track",
            body={"title": "Glow", "artists": ["Zonke"]},
            thread=sent["thread"],
            refs=[Ref.music_track(isrc="USJI19810404")],
            clock=sent["clock"],
        )
    finally:
        arun(c.aclose())
    assert cap.last_envelope() == sent
    assert res.success, res.error
    assert res.record_id == cross["record_id_returned_by_Client_emit_sync_against_MockKernel"]
    assert res.record_id == "2151ea6f48af2230685d2f09cafcea85bc3f69988bafeb49edd6e6ae98514d04"
    assert_record(steward.get_record(res.record_id), sent=sent)


def test_emit_explicit_clock_and_every_data_type(steward):
    thread = new_thread()
    ids = set()

    async def go():
        async with steward.sdk(new_actor("dt")) as c:
            cap = Capture().attach(c)
            out = []
            for i, dt in enumerate(["SCALAR", "FORMULA", "DISTRIBUTION", "REFERENCE", "MORPHISM", "VOID"]):
                res = await c.emit(act="MAP", kind="test.emit.datatype", body={"same": True},
                                   thread=thread, data_type=dt, clock=1000 + i)
                out.append((dt, cap.last_envelope(), res, cap.emit_statuses[-1]))
            return out

    for dt, env, res, status in arun(go()):
        assert res.success, (dt, res.error)
        assert status == 201
        assert env["clock"] == res.clock
        assert res.record_id == rid7(env)
        assert res.record_id != rid6(env), "data_type must be part of the id"
        rec = steward.get_record(res.record_id)
        assert rec["data_type"] == dt
        assert_record(rec, sent=env)
        ids.add(res.record_id)
    assert len(ids) == 6


def test_intend_opens_a_thread(steward):
    async def go():
        async with steward.sdk("did:sync:user:alice") as c:
            cap = Capture().attach(c)
            return cap, await c.intend("Deploy the service")

    cap, res = arun(go())
    env, rec = check_emit(steward, cap, res)
    assert res.thread.startswith("th_") and len(res.thread) == 67
    assert rec["act"] == "INTEND"
    assert rec["body"] == {"goal": "Deploy the service", "kind": "core.intent", "_v": 1}
    assert rec["parents"] == []


def test_fulfill_closes_with_parents(steward):
    async def go():
        async with steward.sdk("did:sync:user:alice") as c:
            cap = Capture().attach(c)
            opened = await c.intend("Ship v2")
            assert opened.success, opened.error
            other = await c.emit(act="DO", kind="test.emit.step", body={"step": 1}, thread=opened.thread)
            assert other.success, other.error
            done = await c.fulfill(
                opened.thread, "Shipped", fulfills=opened.record_id,
                parents=[other.record_id, opened.record_id],
            )
            return cap, opened, other, done

    cap, opened, other, done = arun(go())
    env, rec = check_emit(steward, cap, done)
    assert rec["act"] == "KNOW"
    assert rec["body"]["kind"] == "core.outcome"
    assert rec["body"]["summary"] == "Shipped"
    assert rec["body"]["fulfills"] == opened.record_id
    assert rec["parents"] == sorted([other.record_id, opened.record_id])
    assert [r["id"] for r in steward.thread_records(opened.thread)] == [
        opened.record_id, other.record_id, done.record_id,
    ]


def test_fulfill_with_list_of_intents(steward):
    async def go():
        async with steward.sdk(new_actor("multi")) as c:
            cap = Capture().attach(c)
            a = await c.intend("a")
            b = await c.intend("b", thread=a.thread)
            done = await c.fulfill(a.thread, "both", fulfills=[a.record_id, b.record_id])
            return cap, a, b, done

    cap, a, b, done = arun(go())
    env, rec = check_emit(steward, cap, done)
    assert rec["body"]["fulfills"] == [a.record_id, b.record_id]


def test_reserved_kind_helpers(steward):
    thread = new_thread()
    target = "ab" * 32

    async def go():
        async with steward.sdk("did:sync:user:governor") as c:
            cap = Capture().attach(c)
            out = []
            r = await c.emit_correction(corrects=[target], revised_fields={"title": "Glow (Remastered)"},
                                        reason="typo", thread=thread)
            out.append(("core.correction", cap.last_envelope(), r))
            r = await c.emit_erasure(erases=[target], reason="GDPR request", thread=thread)
            out.append(("core.erasure", cap.last_envelope(), r))
            r = await c.emit_alias(old_kind="music.catalog.track", new_kind="music.catalog.track.v2",
                                   reason="schema bump", thread=thread)
            out.append(("core.alias", cap.last_envelope(), r))
            r = await c.emit_scope_transfer(scope="music", from_publisher="did:sync:user:a",
                                            to_publisher="did:sync:user:b", reason="handover", thread=thread)
            out.append(("core.scope_transfer", cap.last_envelope(), r))
            r = await c.emit_scope_claim(scope="music", governance_policy={"type": "maintainer_approval",
                                                                            "maintainers": ["did:sync:user:a"]},
                                         thread=thread)
            out.append(("core.scope_claim", cap.last_envelope(), r))
            return cap, out

    cap, out = arun(go())
    assert cap.emit_statuses == [201] * 5
    expected_members = {
        "core.correction": {"corrects", "revised_fields", "reason", "correcting_actor"},
        "core.erasure": {"erases", "reason", "authorized_by", "effective_at"},
        "core.alias": {"old_kind", "new_kind", "reason", "since", "publisher_did"},
        "core.scope_transfer": {"scope", "from_publisher", "to_publisher", "reason", "effective_at"},
        "core.scope_claim": {"scope", "claimant", "governance_policy", "effective_at"},
    }
    ids = []
    for kind, env, res in out:
        assert res.success, (kind, res.error)
        assert res.record_id == rid7(env), kind
        rec = steward.get_record(res.record_id)
        assert_record(rec, sent=env)
        assert rec["act"] == "PUT"
        assert rec["body"]["kind"] == kind
        assert set(rec["body"]) == expected_members[kind] | {"kind", "_v"}, rec["body"]
        ids.append(res.record_id)
    assert [r["id"] for r in steward.thread_records(thread)] == ids


def test_sequences_strictly_increase(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("seq")) as c:
            return [await c.emit(act="DO", kind="test.emit.seq", body={"i": i}, thread=thread) for i in range(5)]

    results = arun(go())
    assert all(r.success for r in results), [r.error for r in results]
    seqs = [steward.get_record(r.record_id)["sequence"] for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs


def test_records_are_signed_ed25519(steward):
    # First prove the verifier against the spec's worked example (§8.3).
    vectors, _ = load_vectors()
    sv = vectors["signing"]
    pub = did_key_public(sv["did_key"])
    assert pub.hex() == sv["public_key_hex"]
    msg = sv["message_utf8"].encode()
    assert ed25519_verify(pub, msg, bytes.fromhex(sv["signature_hex"]))
    assert not ed25519_verify(pub, msg + b" ", bytes.fromhex(sv["signature_hex"]))

    async def go():
        async with steward.sdk("did:sync:user:alice") as c:
            return await c.emit(act="KNOW", kind="test.emit.signed", body={"ok": "ünïcødé ✓"},
                                thread=new_thread())

    res = arun(go())
    assert res.success, res.error
    rec = steward.get_record(res.record_id)
    assert_record(rec)
    assert verify_record_signature(rec), f"sig does not verify under {rec['signer']}"
    forged = dict(rec, body={"ok": "tampered"})
    assert not verify_record_signature(forged)


def test_bearer_and_x_api_key_both_authenticate(steward):
    thread = new_thread()
    env = {"act": "PUT", "actor": "did:sync:user:alice", "body": {"via": "bearer"}, "clock": 1,
           "data_type": "SCALAR", "parents": [], "thread": thread}
    with steward.http(bearer=True) as h:
        r = h.post("/v1/records", json=env)
        assert r.status_code == 201, r.text
        assert r.json()["id"] == rid7(env)
        g = h.get(f"/v1/records/{rid7(env)}")
        assert g.status_code == 200, g.text
    with steward.http() as h:
        env2 = dict(env, body={"via": "x-api-key"}, clock=2)
        r = h.post("/v1/records", json=env2)
        assert r.status_code == 201, r.text
        assert r.json()["id"] == rid7(env2)


def test_missing_data_type_defaults_to_scalar(steward):
    thread = new_thread()
    env = {"act": "LEARN", "actor": "did:sync:user:curl", "body": {"topic": "x"}, "clock": 7,
           "parents": [], "thread": thread}
    r = steward.post_record(env)
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["data_type"] == "SCALAR"
    assert rec["id"] == rid7(dict(env, data_type="SCALAR"))
    assert_record(rec)


def test_unsorted_parents_are_sorted_before_hashing(steward):
    thread = new_thread()
    parents = ["f" * 64, "0" * 64, "a" * 64, "0" * 64]
    env = {"act": "DO", "actor": "did:sync:user:alice", "body": {"p": 1}, "clock": 3,
           "data_type": "SCALAR", "parents": parents, "thread": thread}
    r = steward.post_record(env)
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["parents"] == sorted(parents), "parents come back sorted, duplicates kept"
    assert rec["id"] == rid7(dict(env, parents=sorted(parents)))
    unsorted_wrong = rid7(env)
    assert rec["id"] != unsorted_wrong
    assert_record(steward.get_record(rec["id"]))


def test_non_th_thread_names_accepted(steward):
    thread = f"music.library.{secrets.token_hex(4)}"

    async def go():
        async with steward.sdk("did:example:my-app") as c:
            cap = Capture().attach(c)
            res = await c.emit(act="PUT", kind="music.catalog.track", body={"title": "x"}, thread=thread)
            listed = await c.query_thread(thread)
            return cap, res, listed

    cap, res, listed = arun(go())
    check_emit(steward, cap, res)
    assert [r["id"] for r in listed] == [res.record_id]


def test_judged_by_is_stored_not_hashed(steward):
    thread = new_thread()
    judgment = "cd" * 32
    env = {"act": "KNOW", "actor": "did:sync:user:judge", "body": {"verdict": "ok"}, "clock": 1,
           "data_type": "SCALAR", "parents": [], "thread": thread}
    r = steward.post_record(dict(env, judged_by=judgment))
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["id"] == rid7(env), "judged_by must be excluded from the id"
    assert rec["judged_by"] == judgment
    # A re-POST differing only in judged_by returns the stored record unchanged.
    r2 = steward.post_record(env)
    assert r2.status_code == 200, r2.text
    assert r2.json()["judged_by"] == judgment
    assert r2.json()["sequence"] == rec["sequence"]
    assert len(steward.thread_records(thread)) == 1


def test_response_is_the_full_record(steward):
    thread = new_thread()
    env = {"act": "INTEND", "actor": "did:sync:user:alice", "body": {"goal": "shape"}, "clock": 0,
           "data_type": "SCALAR", "parents": [], "thread": thread}
    r = steward.post_record(env)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    posted = r.json()
    assert_record(posted, sent=env)
    fetched = steward.get_record(posted["id"])
    assert fetched == posted


def test_infer_without_waiting_posts_its_own_envelope(steward):
    from syncropel import InferOptions

    async def go():
        async with steward.sdk("did:sync:user:asker") as c:
            cap = Capture().attach(c)
            pending = await c.infer(
                {"input": {"goal": "summarize the abstract"},
                 "responders": [{"kind": "llm", "model": "sonnet"}],
                 "fold": {"function": "consensus"}},
                InferOptions(wait=False),
            )
            return cap, pending

    cap, pending = arun(go())
    env = cap.last_envelope()
    assert cap.emit_statuses == [201]
    assert pending.correlation_id == rid7(env)
    assert pending.thread_id == env["thread"]
    rec = steward.get_record(pending.correlation_id)
    assert_record(rec, sent=env)
    assert rec["act"] == "INTEND" and rec["body"]["kind"] == "infer.query.v1"
    assert "_v" not in rec["body"], "the server never injects _v"
