"""Idempotent replay and DuplicateClock (§9)."""

from __future__ import annotations

from harness import Capture, arun, assert_error, assert_record, new_actor, new_thread, rid7


def envelope(thread, actor="did:sync:user:alice", clock=1, **body):
    return {"act": "PUT", "actor": actor, "body": body or {"v": 1}, "clock": clock,
            "data_type": "SCALAR", "parents": [], "thread": thread}


def test_identical_repost_is_200_same_record(steward):
    thread = new_thread()
    env = envelope(thread, v="once")
    before = steward.count_all()
    r1 = steward.post_record(env)
    assert r1.status_code == 201, r1.text
    r2 = steward.post_record(env)
    assert r2.status_code == 200, r2.text
    a, b = r1.json(), r2.json()
    assert a["id"] == b["id"] == rid7(env)
    assert a["sequence"] == b["sequence"]
    assert a["created_at"] == b["created_at"]
    assert_record(b, sent=env)
    assert len(steward.thread_records(thread)) == 1
    assert steward.count_all() == before + 1
    # The next new record still gets the next sequence (no sequence burnt by a replay
    # is required, but it must stay strictly increasing).
    r3 = steward.post_record(envelope(thread, clock=2, v="next"))
    assert r3.status_code == 201
    assert r3.json()["sequence"] > a["sequence"]


def test_identical_emit_through_sdk_is_success_with_same_id(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("idem")) as c:
            cap = Capture().attach(c)
            a = await c.emit(act="PUT", kind="test.idem.item", body={"x": 1}, thread=thread, clock=42)
            b = await c.emit(act="PUT", kind="test.idem.item", body={"x": 1}, thread=thread, clock=42)
            return cap, a, b

    cap, a, b = arun(go())
    assert a.success and b.success, (a.error, b.error)
    assert a.record_id == b.record_id == rid7(cap.envelopes[0])
    assert cap.emit_statuses == [201, 200]
    assert len(steward.thread_records(thread)) == 1


def test_duplicate_clock_raw(steward):
    thread = new_thread()
    actor = "did:sync:user:dup"
    first = envelope(thread, actor=actor, clock=7, v="first")
    r1 = steward.post_record(first)
    assert r1.status_code == 201, r1.text
    before = steward.count_all()
    r2 = steward.post_record(envelope(thread, actor=actor, clock=7, v="second"))
    body = assert_error(r2, 400, "INGEST_FAILED")
    assert body["message"].startswith("DuplicateClock:"), body["message"]
    assert body["message"].startswith(f"DuplicateClock: thread={thread} actor={actor} clock=7"), body["message"]
    recs = steward.thread_records(thread)
    assert [r["id"] for r in recs] == [rid7(first)]
    assert steward.count_all() == before


def test_duplicate_clock_through_sdk_reports_failure(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("dupsdk")) as c:
            cap = Capture().attach(c)
            a = await c.emit(act="PUT", kind="test.idem.item", body={"x": 1}, thread=thread, clock=9)
            b = await c.emit(act="PUT", kind="test.idem.item", body={"x": 2}, thread=thread, clock=9)
            return cap, a, b

    cap, a, b = arun(go())
    assert a.success, a.error
    assert b.success is False
    assert b.record_id is None
    assert b.error.startswith("HTTP 400: "), b.error
    assert "INGEST_FAILED" in b.error and "DuplicateClock:" in b.error, b.error
    assert b.retried == 0, "4xx must not be retried"
    assert cap.emit_statuses == [201, 400]
    assert [r["id"] for r in steward.thread_records(thread)] == [a.record_id]


def test_same_clock_other_actor_or_thread_is_fine(steward):
    thread = new_thread()
    r1 = steward.post_record(envelope(thread, actor="did:sync:user:one", clock=3))
    r2 = steward.post_record(envelope(thread, actor="did:sync:user:two", clock=3))
    r3 = steward.post_record(envelope(new_thread(), actor="did:sync:user:one", clock=3))
    assert [r.status_code for r in (r1, r2, r3)] == [201, 201, 201], [r.text for r in (r1, r2, r3)]
    assert len({r.json()["id"] for r in (r1, r2, r3)}) == 3


def test_gaps_and_backdated_clocks_accepted(steward):
    """Only uniqueness is enforced by default (no-backdating switch is off)."""
    thread = new_thread()
    codes = [steward.post_record(envelope(thread, clock=c, v=c)).status_code for c in (100, 5, 2**63 - 1, 0)]
    assert codes == [201, 201, 201, 201]
    assert sorted(r["clock"] for r in steward.thread_records(thread)) == [0, 5, 100, 2**63 - 1]


def test_auto_clocks_never_collide(steward):
    thread = new_thread()

    async def go():
        async with steward.sdk(new_actor("burst")) as c:
            return [await c.emit(act="DO", kind="test.idem.burst", body={"i": i}, thread=thread)
                    for i in range(25)]

    results = arun(go())
    assert all(r.success for r in results), [r.error for r in results if not r.success]
    assert len({r.record_id for r in results}) == 25
    stored = steward.thread_records(thread)
    assert [r["id"] for r in stored] == [r.record_id for r in results]
    clocks = [r["clock"] for r in stored]
    assert clocks == sorted(clocks) and len(set(clocks)) == 25
