"""Membership end to end through the unchanged SDK (§11.11): issue an invite, redeem it into a
member, read the roster, mint and revoke an agent sub-grant, adopt, revoke the member.

In syncropel 0.7.0 `Client.membership` raises NameError (`ClientMembership` is not imported in
client.py), so, like SDK users, these tests build `syncropel.membership.ClientMembership` on the
client's own transport.
"""

from __future__ import annotations

import secrets

import pytest
from syncropel.membership import ClientMembership, SyncropelMembershipError

from harness import arun, new_thread


def membership(client) -> ClientMembership:
    return ClientMembership(client._http)


def holder_pubkey() -> str:
    return secrets.token_hex(32)


def test_the_sdk_drives_membership_end_to_end(steward):
    label = "m" + secrets.token_hex(4)

    async def run():
        admin = steward.sdk()
        try:
            ops = membership(admin)
            invite = await ops.issue_invite(membership={"preset": "contributor", "caveats": {"max_fanout": 3}})
            assert invite["invite_id"].startswith("inv_"), invite
            anonymous = steward.sdk(token=None)
            try:
                joined = await membership(anonymous).redeem_invite(
                    invite["invite_id"], holder_pubkey=holder_pubkey(), member_label=label)
                with pytest.raises(SyncropelMembershipError) as exhausted:
                    await membership(anonymous).redeem_invite(
                        invite["invite_id"], holder_pubkey=holder_pubkey(), member_label=label + "x")
            finally:
                await anonymous.aclose()
            assert exhausted.value.status == 410 and exhausted.value.code == "INVITE_EXHAUSTED"
            member_did = joined["membership"]["member_did"]
            assert member_did == f"did:sync:user:{label}", joined
            assert joined["membership"]["master_did"].startswith("did:key:"), joined

            # The member writes as itself through the SDK with its bearer.
            member = steward.sdk(actor=member_did, token=joined["bearer"])
            try:
                thread = new_thread()
                emitted = await member.emit(act="KNOW", kind="demo.note.v1", thread=thread, body={"text": "hi"})
                assert emitted.success, emitted
                own = await membership(member).list_members()
                assert [row["label"] for row in own] == [label], own

                agent = await membership(member).mint_agent_grant(
                    label, aud="did:sync:agent:helper", scopes=["records:read"])
                assert agent["parent_grant_id"] == joined["membership"]["grant_id"], agent
                with pytest.raises(SyncropelMembershipError) as wider:
                    await membership(member).mint_agent_grant(
                        label, aud="did:sync:agent:helper", scopes=["admin"])
                assert wider.value.status == 403, wider.value
                revoked = await membership(member).revoke_agent_grant(label, agent["grant_id"])
                assert revoked["scope"] == "local" and revoked["revoked"] is True, revoked
            finally:
                await member.aclose()

            roster = await ops.list_members()
            assert label in [row["label"] for row in roster], roster
            adopted = await ops.adopt(label + "-op")
            again = await ops.adopt(label + "-op")
            assert adopted["grant_id"] == again["grant_id"], (adopted, again)

            gone = await ops.revoke_member(label, note="rotation")
            assert gone["scope"] == "local", gone
        finally:
            await admin.aclose()
        return joined

    joined = arun(run())
    with steward.http(joined["bearer"]) as h:
        r = h.get("/v1/records", params={"limit": 1})
    assert r.status_code == 401 and r.json()["code"] == "GRANT_REVOKED", r.text
    kinds = [r["body"]["kind"] for r in steward.thread_records(f"th_identity_{label}")]
    assert kinds[:3] == ["core.identity.grant.v1", "core.identity.binding.v1", "core.identity.acceptance.v1"], kinds
    assert kinds[-1] == "core.identity.revoke.v1", kinds


def test_membership_refusals_raise_with_the_servers_code(steward, reader_token):
    async def run():
        reader = steward.sdk(token=reader_token)
        try:
            with pytest.raises(SyncropelMembershipError) as refused:
                await membership(reader).issue_invite(scopes=["records:read"])
            assert (refused.value.status, refused.value.code) == (403, "SCOPE_FORBIDDEN")
            with pytest.raises(SyncropelMembershipError) as unknown:
                await membership(reader).redeem_invite("inv_unknown", holder_pubkey=holder_pubkey())
            assert (unknown.value.status, unknown.value.code) == (404, "INVITE_NOT_FOUND")
            assert await membership(reader).list_members() == []
        finally:
            await reader.aclose()

    arun(run())
