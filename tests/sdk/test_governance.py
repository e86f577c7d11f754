"""Governance visible over HTTP (§10.3, §13, §14): token mints are records,
tokens never appear in them, refusals name the record that logs them, CORS allows the
configured origin only."""

from __future__ import annotations

import hashlib

from harness import CORS_ORIGIN, assert_record


def test_token_mint_leaves_an_audit_record_without_the_token(steward):
    before = {r["id"] for r in steward.thread_records("th_audit_tokens")}
    tok = steward.mint("audited", "records:read")
    token_id = hashlib.sha256(tok.encode()).hexdigest()
    after = steward.thread_records("th_audit_tokens")
    new = [r for r in after if r["id"] not in before]
    assert new, "minting a token must write a record on th_audit_tokens before answering"
    for r in new:
        assert_record(r)
        assert r["body"].get("kind") == "core.token_lifecycle_event.v1", r["body"]
    blob = repr([r["body"] for r in new])
    assert token_id in blob, "the audit record names the token by its id (sha256 of the token)"
    secret = tok.rsplit("_", 1)[-1]
    assert tok not in blob and secret not in blob, "plaintext tokens never appear in records"


def test_a_refusal_names_the_record_that_logs_it(steward, reader_token):
    from dataclasses import fields

    from syncropel.types_generated import ApiError

    with steward.http(reader_token) as h:
        r = h.post("/v1/service-accounts", json={"name": "escalate", "scopes": ["admin"]})
    assert r.status_code == 403, r.text
    envelope = r.json()
    error = ApiError(**{f.name: envelope.get(f.name) for f in fields(ApiError) if f.name in envelope})
    assert error.audit_record, envelope
    logged = steward.get_record(error.audit_record)
    assert logged["thread"] == "th_audit_security", logged
    assert logged["body"]["status"] == 403 and logged["body"]["code"] == error.code, logged
    token_id = hashlib.sha256(reader_token.encode()).hexdigest()
    assert logged["body"]["token_id"] == token_id
    assert reader_token not in repr(logged)


def test_no_record_anywhere_holds_a_plaintext_token(steward, reader_token, writer_token):
    with steward.http() as h:
        r = h.get("/v1/records", params={"limit": 1000})
    assert r.status_code == 200
    text = r.text
    for tok in (steward.token, reader_token, writer_token):
        assert tok not in text and tok.rsplit("_", 1)[-1] not in text


def test_cors_allows_the_configured_origin_only(steward):
    def preflight(h, origin):
        return h.request("OPTIONS", "/v1/records", headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-api-key,content-type",
        })

    with steward.http(None) as h:
        pre = preflight(h, CORS_ORIGIN)
        assert pre.status_code in (200, 204), pre.text
        assert pre.headers.get("access-control-allow-origin") == CORS_ORIGIN, dict(pre.headers)
        other = preflight(h, "https://elsewhere.example")
        assert other.headers.get("access-control-allow-origin") is None, dict(other.headers)
    with steward.http() as h:
        r = h.get("/v1/records", params={"limit": 1}, headers={"origin": CORS_ORIGIN})
        assert r.status_code == 200
        assert r.headers.get("access-control-allow-origin") == CORS_ORIGIN
