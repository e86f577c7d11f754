"""Health and discovery (§11.9)."""

from __future__ import annotations

import httpx
import pytest

from harness import arun, assert_error, hosted_target

# `spl serve`'s home (steward.json) has no hosted counterpart.
local_only = pytest.mark.skipif(hosted_target(), reason="describes spl serve's home")


def test_sdk_health(steward):
    async def go():
        async with steward.sdk() as c:
            return await c.health()

    h = arun(go())
    assert h.get("status") == "ok", h
    assert isinstance(h.get("version"), str) and h["version"]
    assert isinstance(h.get("proof_kinds_accepted"), list)
    assert "authorization" not in h, "open /health must not reveal authorization posture"


def test_sdk_health_without_token(steward):
    async def go():
        async with steward.sdk(token=None) as c:
            return await c.health()

    assert arun(go()).get("status") == "ok"


def test_open_health_needs_no_credential(steward):
    r = httpx.get(steward.url + "/health", timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert "authorization" not in r.json()


def test_v1_health_needs_a_token(steward):
    r = httpx.get(steward.url + "/v1/health", timeout=10)
    assert_error(r, 401, "AUTH_REQUIRED")


def test_v1_health_reports_deciders(steward, reader_token):
    for tok, bearer in ((steward.token, True), (reader_token, False)):
        with steward.http(tok, bearer=bearer) as h:
            r = h.get("/v1/health")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("status") == "ok", body
        auth = body.get("authorization")
        assert isinstance(auth, dict), body
        assert auth["of"] == 6
        assert isinstance(auth["live"], int) and 0 <= auth["live"] <= 6
        deciders = {d["decider"]: d for d in auth["deciders"]}
        assert set(deciders) == {"scope", "actor_claim", "capability_grant", "permission_rules",
                                 "impersonation", "principal_proof"}, deciders
        assert sum(1 for d in auth["deciders"] if d["state"] == "live") == auth["live"]


@local_only
def test_steward_json_describes_the_running_server(steward):
    sj = steward.steward_json
    assert sj["url"].rstrip("/") == steward.url
    assert sj["pid"] == steward.proc.pid
    assert isinstance(sj["started_at"], (int, str)) and sj["started_at"]


def test_capabilities_carry_the_manifest_version_the_sdk_pins(steward):
    from syncropel import MANIFEST_VERSION

    with steward.http(None) as h:
        caps = h.get("/v1/capabilities")
        well_known = h.get("/.well-known/syncropel")
    assert caps.status_code == 200, caps.text
    body = caps.json()
    assert body["object"] == "capabilities_manifest"
    assert body["manifest_version"] == MANIFEST_VERSION
    assert body["tier"] in ("local", "hosted")
    assert all(isinstance(v, (bool, list)) for v in body["capabilities"].values()), body
    assert well_known.json()["capabilities_manifest"] == body
