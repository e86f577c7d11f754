"""Refusals (§10): auth, scopes, bad input, size limit, bootstrap.

Every refusal must use the ApiError envelope and must leave the store
unchanged: each test counts all records before and after.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from harness import arun, assert_error, new_thread, rid7


def env(thread, clock=1, **over):
    e = {"act": "PUT", "actor": "did:sync:user:alice", "body": {"x": 1}, "clock": clock,
         "data_type": "SCALAR", "parents": [], "thread": thread}
    e.update(over)
    return e


class Unchanged:
    """Context manager: the store holds exactly as many records afterwards."""

    def __init__(self, steward, thread=None):
        self.steward, self.thread = steward, thread

    def __enter__(self):
        self.before = self.steward.count_all()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert self.steward.count_all() == self.before, "a refused request wrote a record"
            if self.thread:
                assert self.steward.thread_records(self.thread) == []


# ---------------------------------------------------------------------------
# authentication and scopes
# ---------------------------------------------------------------------------


def test_no_token_is_401_auth_required(steward):
    t = new_thread()
    with Unchanged(steward, t), steward.http(None) as h:
        assert_error(h.post("/v1/records", json=env(t)), 401, "AUTH_REQUIRED")
        assert_error(h.get("/v1/records"), 401, "AUTH_REQUIRED")
        assert_error(h.get(f"/v1/threads/{t}/records"), 401, "AUTH_REQUIRED")
        assert_error(h.post("/v1/records/query", json={"filter": {}}), 401, "AUTH_REQUIRED")
        assert_error(h.post("/v1/records/search", json={"query": "x"}), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize("token", [
    "spl_test_sa_doesnotexist0000_" + "A" * 32,
    "garbage",
    "spl_",
])
def test_bad_token_is_401_auth_invalid(steward, token):
    t = new_thread()
    with Unchanged(steward, t):
        for bearer in (False, True):
            with steward.http(token, bearer=bearer) as h:
                assert_error(h.post("/v1/records", json=env(t)), 401, "AUTH_INVALID")
                assert_error(h.get("/v1/records"), 401, "AUTH_INVALID")


def test_bearer_wins_over_x_api_key(steward):
    t = new_thread()
    with Unchanged(steward, t), steward.http(steward.token) as h:
        r = h.post("/v1/records", json=env(t), headers={"authorization": "Bearer garbage-token"})
        assert_error(r, 401, "AUTH_INVALID")


def test_sdk_emit_without_token_reports_401(steward):
    t = new_thread()

    async def go():
        async with steward.sdk(token=None) as c:
            return await c.emit(act="PUT", kind="test.err.item", body={}, thread=t)

    with Unchanged(steward, t):
        res = arun(go())
    assert res.success is False
    assert res.error.startswith("HTTP 401: ") and "AUTH_REQUIRED" in res.error, res.error


def test_reader_cannot_write(steward, reader_token):
    t = new_thread()
    with Unchanged(steward, t), steward.http(reader_token) as h:
        body = assert_error(h.post("/v1/records", json=env(t)), 403, "SCOPE_FORBIDDEN")
        assert body.get("required_scope", "records:write") == "records:write"
        # ...but may read.
        assert h.get("/v1/records", params={"limit": 1}).status_code == 200
        assert h.get(f"/v1/threads/{t}/records").status_code == 200

    async def go():
        async with steward.sdk(token=reader_token) as c:
            return await c.emit(act="PUT", kind="test.err.item", body={}, thread=t)

    with Unchanged(steward, t):
        res = arun(go())
    assert res.success is False and res.error.startswith("HTTP 403: "), res.error
    assert "SCOPE_FORBIDDEN" in res.error


def test_writer_cannot_read(steward, writer_token):
    t = new_thread()
    with steward.http(writer_token) as h:
        r = h.post("/v1/records", json=env(t))
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert_error(h.get("/v1/records"), 403, "SCOPE_FORBIDDEN")
        assert_error(h.get(f"/v1/records/{rid}"), 403, "SCOPE_FORBIDDEN")
        assert_error(h.get(f"/v1/threads/{t}/records"), 403, "SCOPE_FORBIDDEN")
        assert_error(h.post("/v1/records/query", json={"filter": {}}), 403, "SCOPE_FORBIDDEN")
        assert_error(h.post("/v1/records/search", json={"query": "x"}), 403, "SCOPE_FORBIDDEN")

    async def go():
        async with steward.sdk(token=writer_token) as c:
            ok = await c.emit(act="PUT", kind="test.err.item", body={"y": 2}, thread=t)
            return ok, await c.query_thread(t)

    ok, listed = arun(go())
    assert ok.success, ok.error
    assert listed == [], "the SDK read fails open to [] on 403"
    assert len(steward.thread_records(t)) == 2


def test_token_format(steward, reader_token):
    # §10.1: spl_<env>_<sa_id>_<secret>, secret = 32 chars of [A-Za-z0-9].
    for tok in (steward.token, reader_token):
        assert re.fullmatch(r"spl_[a-z0-9]+_sa[_-][A-Za-z0-9_-]+_[A-Za-z0-9]{32}", tok), tok
    assert steward.token != reader_token


def test_actor_claim_is_enforced(steward):
    tok = steward.mint("bound-writer", "records:read,records:write", actors="did:sync:user:bound")
    t = new_thread()
    with steward.http(tok) as h:
        ok = h.post("/v1/records", json=env(t, actor="did:sync:user:bound"))
        assert ok.status_code == 201, ok.text
        with Unchanged(steward):
            denied = h.post("/v1/records", json=env(t, actor="did:sync:user:someone-else", clock=2))
            assert_error(denied, 403, "DID_CLAIM_DENIED")
            hdr = h.post("/v1/records", json=env(t, actor="did:sync:user:bound", clock=3),
                         headers={"x-syncropel-actor": "did:sync:user:someone-else"})
            assert hdr.status_code in (400, 403), hdr.text
    assert len(steward.thread_records(t)) == 1


def test_revoked_token_is_401_auth_invalid(steward):
    tok = steward.mint("short-lived", "records:read,records:write")
    t = new_thread()
    with steward.http(tok) as h:
        assert h.post("/v1/records", json=env(t)).status_code == 201
    token_id = hashlib.sha256(tok.encode()).hexdigest()
    steward.revoke(token_id)
    with Unchanged(steward), steward.http(tok) as h:
        assert_error(h.post("/v1/records", json=env(t, clock=2)), 401, "AUTH_INVALID")
        assert_error(h.get("/v1/records"), 401, "AUTH_INVALID")
    with steward.http(tok, bearer=True) as h:
        assert_error(h.get(f"/v1/threads/{t}/records"), 401, "AUTH_INVALID")


# ---------------------------------------------------------------------------
# malformed input
# ---------------------------------------------------------------------------


def raw_env_text(thread, body_text='{"x":1}', clock_text="1"):
    return ('{"act":"PUT","actor":"did:sync:user:alice","body":' + body_text + ',"clock":' + clock_text
            + ',"data_type":"SCALAR","parents":[],"thread":"' + thread + '"}')


@pytest.mark.parametrize("label,make", [
    ("truncated", lambda t: raw_env_text(t)[:-5]),
    ("not json", lambda t: "act=PUT&thread=" + t),
    ("empty", lambda t: ""),
    ("trailing garbage", lambda t: raw_env_text(t) + "}"),
    ("NaN", lambda t: raw_env_text(t, '{"x":NaN}')),
    ("Infinity", lambda t: raw_env_text(t, '{"x":Infinity}')),
    ("-Infinity", lambda t: raw_env_text(t, '{"x":-Infinity}')),
    ("overflow 1e400", lambda t: raw_env_text(t, '{"x":1e400}')),
    ("duplicate top-level key", lambda t: raw_env_text(t).replace('"act":"PUT"', '"act":"PUT","act":"DO"')),
    ("duplicate body key", lambda t: raw_env_text(t, '{"x":1,"x":2}')),
    ("duplicate nested key", lambda t: raw_env_text(t, '{"a":{"k":1,"k":1}}')),
    ("lone surrogate", lambda t: raw_env_text(t, '{"x":"\\ud800"}')),
    ("invalid utf-8", lambda t: raw_env_text(t, '{"x":"\xff"}').encode("latin-1")),
    ("too deep", lambda t: raw_env_text(t, '{"a":' * 200 + "1" + "}" * 200)),
])
def test_malformed_json_is_400_invalid_json(steward, label, make):
    t = new_thread()
    payload = make(t)
    with Unchanged(steward, t):
        r = steward.post_record(payload)
        assert_error(r, 400, "INVALID_JSON")


@pytest.mark.parametrize("label,over", [
    ("unknown act", {"act": "FOO"}),
    ("lowercase act", {"act": "put"}),
    ("act not a string", {"act": 1}),
    ("missing act", {"act": None}),
    ("unknown data_type", {"data_type": "BLOB"}),
    ("negative clock", {"clock": -1}),
    ("float clock", {"clock": 1.5}),
    ("integral float clock", {"clock": 1.0}),
    ("clock beyond i64", {"clock": 2**63}),
    ("string clock", {"clock": "1"}),
    ("body is a list", {"body": [1, 2]}),
    ("body is a string", {"body": "x"}),
    ("empty actor", {"actor": ""}),
    ("parents not a list", {"parents": "abc"}),
    ("parent not a string", {"parents": [1]}),
    ("empty thread", {"thread": ""}),
    ("thread with slash", {"thread": "a/b"}),
    ("thread with space", {"thread": "a b"}),
    ("thread with newline", {"thread": "a\nb"}),
    ("thread too long", {"thread": "t" * 257}),
])
def test_invalid_envelope_is_400_validation_error(steward, label, over):
    t = new_thread()
    e = env(t)
    e.update(over)
    if over.get("act", "") is None:
        del e["act"]
    with Unchanged(steward, t):
        text = json.dumps(e)
        if label == "integral float clock":
            text = text.replace('"clock": 1,', '"clock": 1.0,')
            assert '"clock": 1.0' in text
        r = steward.post_record(text)
        assert_error(r, 400, "VALIDATION_ERROR")


def test_sdk_reports_validation_error(steward):
    t = new_thread()

    async def go():
        async with steward.sdk() as c:
            return await c.emit(act="EXPLODE", kind="test.err.item", body={}, thread=t)

    with Unchanged(steward, t):
        res = arun(go())
    assert res.success is False
    assert res.error.startswith("HTTP 400: ") and "VALIDATION_ERROR" in res.error, res.error


def test_body_over_1_mib_is_413(steward):
    t = new_thread()
    big = env(t, body={"blob": "x" * (1024 * 1024 + 10)})
    with Unchanged(steward, t):
        r = steward.post_record(big)
        assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        # Also when the body is not even JSON: the limit is checked before parsing.
        r2 = steward.post_record(b"{" * (2 * 1024 * 1024))
        assert_error(r2, 413, "PAYLOAD_TOO_LARGE")


def test_body_under_1_mib_is_accepted(steward):
    t = new_thread()
    ok = env(t, body={"blob": "y" * (900 * 1024)})
    r = steward.post_record(ok)
    assert r.status_code == 201, r.text[:300]
    assert r.json()["id"] == rid7(ok)


def test_namespace_without_registry_entry_is_rejected(steward):
    t = new_thread()
    with Unchanged(steward, t):
        r = steward.post_record(env(t, body={"namespace": "acme/payments", "x": 1}))
        body = assert_error(r, 403, "NAMESPACE_REJECTED")
        assert "acme" in body["message"]


def test_sensitive_credential_field_is_refused(steward):
    t = new_thread()
    with Unchanged(steward, t):
        r = steward.post_record(env(t, body={"kind": "core.credential.v1", "_v": 1, "handle": "anthropic-prod",
                                             "backend_ref": "env://ANTHROPIC_KEY", "value": "sk-ant-xyz"}))
        assert_error(r, 400, "F16_VIOLATION_SENSITIVE_FIELD")


def test_server_written_threads_are_reserved(steward):
    with Unchanged(steward):
        r = steward.post_record(env("th_audit_security", body={"forged": True}))
        assert_error(r, 403, "RESERVED_THREAD")


# ---------------------------------------------------------------------------
# not found
# ---------------------------------------------------------------------------


def test_unknown_record_is_404(steward):
    with steward.http() as h:
        assert_error(h.get("/v1/records/" + "0" * 64), 404, "NOT_FOUND")
        assert_error(h.get("/v1/no-such-route"), 404, "NOT_FOUND")


# ---------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------


def test_no_service_account_is_503_bootstrap_required(fresh_steward):
    s = fresh_steward(bootstrap=False)
    t = new_thread()
    with s.http(None) as h:
        assert h.get("/health").status_code == 200
        for r in (h.post("/v1/records", json=env(t)), h.get("/v1/records"),
                  h.get(f"/v1/threads/{t}/records"),
                  h.post("/v1/records/query", json={"filter": {}})):
            body = assert_error(r, 503, "BOOTSTRAP_REQUIRED")
            # §10.1 / §10.4: "the message names the command that creates one".
            assert "spl service-account create" in body["message"], body
