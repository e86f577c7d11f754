"""Watch SSE (§11.8): SDK `subscribe`, raw frames, resume, heartbeats, shutdown.

The module's server runs with `--heartbeat-secs 2`.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from harness import (
    SseStream,
    arun,
    assert_record,
    is_record_frame,
    new_actor,
    new_thread,
    steward_class,
    wait_until,
    watch_url,
)


def env(thread, clock, actor="did:sync:user:watcher", **body):
    return {"act": "DO", "actor": actor, "body": body or {"c": clock}, "clock": clock,
            "data_type": "SCALAR", "parents": [], "thread": thread}


async def apost(steward, envelope, token="admin"):
    return await asyncio.to_thread(steward.post_record, envelope, token)


def check_record_frame(fr, expected_id=None):
    assert fr.event == "record.created", fr
    assert fr.id is not None and fr.id.isdigit(), f"id: must be the decimal sequence: {fr}"
    data = fr.json
    assert isinstance(data, dict) and set(data) >= {"id", "record"}, data
    rec = data["record"]
    assert data["id"] == rec["id"]
    assert rec["sequence"] == int(fr.id)
    assert_record(rec)
    if expected_id is not None:
        assert rec["id"] == expected_id
    return rec


# ---------------------------------------------------------------------------
# through the SDK
# ---------------------------------------------------------------------------


def test_sdk_subscribe_delivers_new_records_within_a_second(steward):
    thread = new_thread()

    async def go():
        got: list[tuple[float, dict]] = []
        opened = asyncio.Event()
        errors = []
        async with steward.sdk(new_actor("sub")) as c:
            sub = c.subscribe(thread, lambda r: got.append((time.monotonic(), r)),
                              on_open=opened.set, on_error=errors.append)
            await asyncio.wait_for(opened.wait(), 10)
            emitted = []
            for i in range(3):
                res = await c.emit(act="DO", kind="test.sub.live", body={"i": i}, thread=thread)
                assert res.success, res.error
                emitted.append((time.monotonic(), res.record_id))
                assert await wait_until(lambda: len(got) > i, 5), f"record {i} never arrived; errors={errors}"
            other = await c.emit(act="DO", kind="test.sub.live", body={"elsewhere": 1}, thread=new_thread())
            assert other.success
            await asyncio.sleep(0.5)
            sub.close()
            await sub.wait_closed(5)
            return emitted, got, errors

    emitted, got, errors = arun(go())
    assert [r["id"] for _, r in got] == [rid for _, rid in emitted], "no other thread's records, no duplicates"
    for (t_emit, _), (t_got, rec) in zip(emitted, got):
        assert t_got - t_emit <= 1.0, f"delivered {t_got - t_emit:.3f}s after ingest"
        assert_record(rec)
        assert rec["thread"] == thread
    assert not errors, errors


def test_sdk_subscribe_since_clock_replays_then_goes_live(steward):
    thread = new_thread()
    actor = new_actor("since")
    ids = {}
    for clock in (10, 20, 30):
        r = steward.post_record(env(thread, clock, actor=actor))
        assert r.status_code == 201, r.text
        ids[clock] = r.json()["id"]

    async def go():
        got = []
        async with steward.sdk(actor) as c:
            sub = c.subscribe(thread, got.append, since_clock=20)
            assert await wait_until(lambda: len(got) >= 2, 5), got
            r = await apost(steward, env(thread, 40, actor=actor))
            assert r.status_code == 201
            ids[40] = r.json()["id"]
            assert await wait_until(lambda: len(got) >= 3, 5), got
            await asyncio.sleep(0.3)
            sub.close()
            await sub.wait_closed(5)
            return got, sub.cursor

    got, cursor = arun(go())
    assert [r["id"] for r in got] == [ids[20], ids[30], ids[40]], "clock >= since_clock, then live"
    assert cursor == str(got[-1]["sequence"])


def test_sdk_on_heartbeat_fires(steward):
    thread = new_thread()

    async def go():
        beats = []
        async with steward.sdk() as c:
            sub = c.subscribe(thread, lambda r: None, on_heartbeat=lambda: beats.append(time.monotonic()))
            ok = await wait_until(lambda: len(beats) >= 2, 7)
            sub.close()
            await sub.wait_closed(5)
            return ok, beats

    ok, beats = arun(go())
    assert ok, f"expected 2 heartbeats within 7 s at --heartbeat-secs 2, got {len(beats)}"


def test_sdk_subscribe_with_bearer_only(steward):
    thread = new_thread()

    async def go():
        got = []
        async with steward.sdk(token=None) as c:
            sub = c.subscribe(thread, got.append, bearer=steward.token, since_clock=0)
            r = await apost(steward, env(thread, 1))
            assert r.status_code == 201
            ok = await wait_until(lambda: len(got) == 1, 5)
            sub.close()
            await sub.wait_closed(5)
            return ok, got, r.json()["id"]

    ok, got, rid = arun(go())
    assert ok and got[0]["id"] == rid


# ---------------------------------------------------------------------------
# raw frames
# ---------------------------------------------------------------------------


def test_raw_stream_headers_and_record_frames(steward):
    thread = new_thread()

    async def go():
        async with SseStream(watch_url(steward, thread), {"x-api-key": steward.token}) as s:
            assert s.status == 200
            ct = s.response_headers.get("content-type", "")
            assert ct.startswith("text/event-stream"), ct
            assert "no-cache" in s.response_headers.get("cache-control", "")
            assert s.response_headers.get("x-accel-buffering") == "no"
            sent = []
            for i in range(3):
                r = await apost(steward, env(thread, i))
                assert r.status_code == 201
                sent.append(r.json())
            frames = await s.records(3, 5)
            return sent, frames

    sent, frames = arun(go())
    for rec, fr in zip(sent, frames):
        got = check_record_frame(fr, rec["id"])
        assert got == rec
    seqs = [int(f.id) for f in frames]
    assert seqs == sorted(seqs)


def test_unknown_thread_watch_is_200_and_waits(steward):
    async def go():
        async with SseStream(watch_url(steward, new_thread()), {"x-api-key": steward.token}) as s:
            assert s.status == 200
            return await s.quiet_for(1.0), s.eof

    records, eof = arun(go())
    assert records == [] and not eof


def test_last_event_id_resume_no_gap_no_duplicate(steward):
    thread = new_thread()
    first = []
    for clock in range(5):
        r = steward.post_record(env(thread, clock))
        assert r.status_code == 201
        first.append(r.json())
    # Interleave records on other threads so sequences are not contiguous.
    steward.post_record(env(new_thread(), 1))
    cursor = first[1]["sequence"]

    async def go():
        live_sent = []

        async def writer():
            for clock in range(5, 10):
                r = await apost(steward, env(thread, clock))
                assert r.status_code == 201
                live_sent.append(r.json())
                await apost(steward, env(new_thread(), clock))

        headers = {"x-api-key": steward.token, "last-event-id": str(cursor)}
        w = asyncio.create_task(writer())   # races the replay/live hand-over on purpose
        async with SseStream(watch_url(steward, thread), headers) as s:
            frames = await s.records(8, 10)
            await w
            extra = await s.quiet_for(1.0)
        return live_sent, frames, extra

    live_sent, frames, extra = arun(go())
    expected = [r["id"] for r in first[2:]] + [r["id"] for r in live_sent]
    got = [check_record_frame(f)["id"] for f in frames]
    assert got == expected, "exactly the records with sequence > Last-Event-ID, then live, in order"
    assert all(int(f.id) > cursor for f in frames)
    assert extra == [], [f.id for f in extra]


def test_last_event_id_wins_over_since_clock(steward):
    thread = new_thread()
    recs = [steward.post_record(env(thread, c)).json() for c in range(3)]

    async def go():
        headers = {"x-api-key": steward.token, "last-event-id": str(recs[1]["sequence"])}
        async with SseStream(watch_url(steward, thread, since_clock=0), headers) as s:
            frames = await s.records(1, 5)
            extra = await s.quiet_for(0.7)
        return frames, extra

    frames, extra = arun(go())
    assert [check_record_frame(f)["id"] for f in frames] == [recs[2]["id"]]
    assert extra == []


def test_since_clock_raw_inclusive(steward):
    thread = new_thread()
    recs = {c: steward.post_record(env(thread, c)).json() for c in (5, 15, 25)}

    async def go():
        async with SseStream(watch_url(steward, thread, since_clock=15), {"x-api-key": steward.token}) as s:
            frames = await s.records(2, 5)
            extra = await s.quiet_for(0.7)
        return frames, extra

    frames, extra = arun(go())
    assert [check_record_frame(f)["id"] for f in frames] == [recs[15]["id"], recs[25]["id"]]
    assert extra == []


def test_no_cursor_no_since_is_live_only(steward):
    thread = new_thread()
    steward.post_record(env(thread, 1))

    async def go():
        async with SseStream(watch_url(steward, thread), {"x-api-key": steward.token}) as s:
            before = await s.quiet_for(0.7)
            r = await apost(steward, env(thread, 2))
            frames = await s.records(1, 5)
        return before, frames, r.json()

    before, frames, rec = arun(go())
    assert before == []
    assert check_record_frame(frames[0])["id"] == rec["id"]


def test_heartbeat_frames(steward):
    async def go():
        async with SseStream(watch_url(steward, new_thread()), {"x-api-key": steward.token}) as s:
            hb1 = await s.wait_for(lambda f: f.event == "heartbeat", 5)
            hb2 = await s.wait_for(lambda f: f.event == "heartbeat", 5)
        return hb1, hb2

    hb1, hb2 = arun(go())
    for hb in (hb1, hb2):
        assert hb.id is None, "heartbeats must not carry an id (it would move the SDK cursor)"
        assert isinstance(hb.json, dict), f"heartbeat data must be a JSON object: {hb.data!r}"
    assert hb2.at - hb1.at < 4.5


def test_identical_replay_emits_no_event(steward):
    thread = new_thread()
    e1 = env(thread, 1)

    async def go():
        async with SseStream(watch_url(steward, thread), {"x-api-key": steward.token}) as s:
            r1 = await apost(steward, e1)
            assert r1.status_code == 201
            first = await s.records(1, 5)
            r2 = await apost(steward, e1)
            assert r2.status_code == 200
            dup = await s.quiet_for(1.5)
            r3 = await apost(steward, env(thread, 2))
            third = await s.records(1, 5)
        return first, dup, third, r1.json(), r3.json()

    first, dup, third, a, c = arun(go())
    assert check_record_frame(first[0])["id"] == a["id"]
    assert dup == [], "a replay stores nothing and notifies nobody"
    assert check_record_frame(third[0])["id"] == c["id"]


def test_rejected_write_emits_no_event(steward):
    thread = new_thread()

    async def go():
        async with SseStream(watch_url(steward, thread), {"x-api-key": steward.token}) as s:
            assert (await apost(steward, env(thread, 1, v="a"))).status_code == 201
            await s.records(1, 5)
            bad = await apost(steward, env(thread, 1, v="b"))
            assert bad.status_code == 400
            return await s.quiet_for(1.0)

    assert arun(go()) == []


def test_watch_requires_auth(steward, reader_token, writer_token):
    thread = new_thread()

    async def go():
        async with SseStream(watch_url(steward, thread)) as s:
            anon = s.status
        async with SseStream(watch_url(steward, thread), {"x-api-key": "spl_test_sa_nope_" + "x" * 32}) as s:
            bad = s.status
        async with SseStream(watch_url(steward, thread), {"x-api-key": reader_token}) as s:
            ok = s.status
        async with SseStream(watch_url(steward, thread), {"x-api-key": writer_token}) as s:
            denied = s.status
        return anon, bad, ok, denied

    anon, bad, ok, denied = arun(go())
    assert anon == 401, "no credential"
    assert bad == 401, "unknown token"
    assert ok == 200, "records:read may watch"
    assert denied == 403, "records:write alone may not read"


@pytest.mark.timeout(90)
def test_server_shutdown_event_on_sigterm():
    s = steward_class().start()
    try:
        thread = new_thread()

        async def go():
            sdk_errors = []
            async with s.sdk() as c:
                opened = asyncio.Event()
                sub = c.subscribe(thread, lambda r: None, on_error=sdk_errors.append,
                                  on_open=opened.set, reconnect_max_s=30.0)
                await asyncio.wait_for(opened.wait(), 10)
                async with SseStream(watch_url(s, thread), {"x-api-key": s.token}) as raw, \
                        SseStream(watch_url(s, new_thread()), {"authorization": f"Bearer {s.token}"}) as raw2:
                    assert raw.status == 200 and raw2.status == 200
                    await asyncio.sleep(0.3)
                    t0 = time.monotonic()
                    s.proc.send_signal(signal.SIGTERM)
                    fr = await raw.wait_for(lambda f: f.event == "server_shutdown", 10)
                    fr2 = await raw2.wait_for(lambda f: f.event == "server_shutdown", 10)
                    after = []
                    try:
                        while (nxt := await raw.next(10)) is not None:
                            after.append(nxt)
                        got_eof = True
                    except (TimeoutError, asyncio.TimeoutError):
                        got_eof = False
                    assert not [f for f in after if is_record_frame(f)]
                    await wait_until(lambda: any(e.reason == "server_shutdown" for e in sdk_errors), 5)
                sub.close()
                await sub.wait_closed(5)
            return fr, fr2, got_eof, sdk_errors, time.monotonic() - t0

        fr, fr2, got_eof, sdk_errors, elapsed = arun(go())
        for f in (fr, fr2):
            assert f.id is None
            data = f.json
            assert isinstance(data, dict)
            assert isinstance(data.get("retry_after_ms"), int) and data["retry_after_ms"] >= 0, data
        assert got_eof, "the stream must close after server_shutdown"
        assert [e.reason for e in sdk_errors][:1] == ["server_shutdown"], sdk_errors
        code = s.proc.wait(timeout=20)
        assert code == 0, f"graceful shutdown should exit 0, got {code}"
    finally:
        s.stop()
