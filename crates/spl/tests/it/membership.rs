//! `spl invite …` and `spl member …` against `spl serve` (protocol.md §11.11): an admin invites,
//! another home redeems and acts as the member, the member delegates to an agent, the admin
//! revokes the member and every bearer below it stops working.

use crate::common::{bootstrap_admin, failed, json, ok, run, spl, Steward};

#[test]
fn an_admin_invites_a_member_who_delegates_and_is_revoked() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let admin = bootstrap_admin(home.path());
    let mut steward = Steward::start(home.path(), &[]);
    let with = |token: &str, args: &[&str]| {
        spl(home.path())
            .args(["--endpoint", &steward.url, "--token", token])
            .args(args)
            .output()
            .unwrap()
    };

    let invite = ok(with(
        &admin,
        &[
            "invite",
            "issue",
            "--preset",
            "contributor",
            "--max-fanout",
            "1",
        ],
    ));
    assert!(invite.starts_with("inv_"), "{invite}");
    let shown = json(with("", &["--json", "invite", "show", &invite]));
    assert_eq!(shown["status"], "open", "{shown}");

    // The invitee's own home redeems it: its key is the holder's.
    let guest = tempfile::tempdir().unwrap();
    ok(run(guest.path(), &["init"]));
    let redeemed = spl(guest.path())
        .args([
            "--endpoint",
            &steward.url,
            "--json",
            "invite",
            "redeem",
            &invite,
        ])
        .args(["--label", "mora"])
        .output()
        .unwrap();
    let redeemed = json(redeemed);
    let bearer = redeemed["bearer"].as_str().unwrap().to_string();
    assert_eq!(redeemed["membership"]["member_did"], "did:sync:user:mora");
    let again = spl(guest.path())
        .args([
            "--endpoint",
            &steward.url,
            "invite",
            "redeem",
            &invite,
            "--label",
            "kai",
        ])
        .output()
        .unwrap();
    assert!(failed(again).contains("INVITE_EXHAUSTED"));

    let roster = ok(with(&admin, &["member", "list"]));
    assert!(
        roster.contains("mora  did:sync:user:mora  active"),
        "{roster}"
    );
    let own = json(with(&bearer, &["--json", "member", "list"]));
    assert_eq!(own["data"].as_array().unwrap().len(), 1, "{own}");

    let agent = ok(with(
        &bearer,
        &[
            "member",
            "grant",
            "mora",
            "--aud",
            "did:sync:agent:helper",
            "--scopes",
            "records:read",
        ],
    ));
    assert!(agent.starts_with("spl_"), "{agent}");
    let second = with(
        &bearer,
        &["member", "grant", "mora", "--aud", "did:sync:agent:other"],
    );
    assert!(failed(second).contains("PERMISSION_DENIED"), "max_fanout 1");
    ok(with(&agent, &["--json", "member", "list"]));

    let revoked = json(with(
        &admin,
        &["--json", "member", "revoke", "mora", "--note", "left"],
    ));
    assert_eq!(revoked["scope"], "local", "{revoked}");
    for token in [&bearer, &agent] {
        let refused = with(token, &["member", "list"]);
        assert!(failed(refused).contains("GRANT_REVOKED"));
    }
    let adopted = json(with(&admin, &["--json", "member", "adopt", "owner"]));
    assert_eq!(adopted["scopes"], serde_json::json!(["admin"]));
    let plain = ok(with(
        &admin,
        &["invite", "issue", "--scopes", "records:read"],
    ));
    let revoked = json(with(&admin, &["--json", "invite", "revoke", &plain]));
    assert_eq!(revoked["revoked"], true);
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();
}
