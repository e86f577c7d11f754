use serde_json::json;

use super::*;
use crate::keys::{verify_signature, Keypair};
use crate::pair::{
    activate_fields, genesis_body, init_body, revoke_body, token_renewed_fields, update_body,
    GenesisParams, InitParams, IssuedToken, RevokeNotify, TokenDirection, PAIRS_THREAD,
};
use crate::record::Envelope;

const ALICE_URL: &str = "https://alice.example";
const BOB_URL: &str = "https://bob.example.com";
/// 2026-05-01T12:00:00Z
const T0: i64 = 1_777_636_800;

/// Alice initiates, Bob responds; each record is stored as a steward stores it.
struct Pair {
    alice: Keypair,
    bob: Keypair,
    id: String,
}

impl Pair {
    fn new() -> Pair {
        let alice = Keypair::from_seed(&[0xa1; 32]);
        let bob = Keypair::from_seed(&[0xb0; 32]);
        let id = pair_id(&alice.did_key(), &bob.did_key());
        Pair { alice, bob, id }
    }

    fn token(id: &str, sa: &str, bound: &Keypair) -> IssuedToken {
        IssuedToken {
            token_id: id.to_owned(),
            sa_id: sa.to_owned(),
            bound_did: bound.did_key(),
            expires_at: T0 + 7_776_000,
        }
    }

    fn init(&self, generation: u64) -> Map<String, Value> {
        init_body(&InitParams {
            pair_id: &self.id,
            generation,
            peer_did: &self.bob.did_key(),
            peer_url: BOB_URL,
            nonce_sha256: "n1",
            peer_manifest_sha256: "m_init",
            maps: &[NamespaceMap {
                local: "research".into(),
                peer: "my-team".into(),
            }],
            mode: "continuous",
            created_at: T0,
        })
    }

    fn genesis(&self, generation: u64) -> Map<String, Value> {
        genesis_body(&GenesisParams {
            pair_id: &self.id,
            generation,
            initiator_did: &self.alice.did_key(),
            initiator_url: ALICE_URL,
            responder_did: &self.bob.did_key(),
            responder_url: BOB_URL,
            nonce_sha256: &format!("nonce-{generation}"),
            approved_by: "policy:allow",
            scopes: &["federation:sync_pull".to_owned()],
            namespaces: &["default".to_owned()],
            maps: &[GenesisMap {
                initiator: "research".into(),
                responder: "my-team".into(),
            }],
            mode: "polling",
            poll_interval_secs: 5,
            responder_issued: &Pair::token("tok_b_for_a", "sa_bob_for_alice", &self.alice),
            token_ttl_secs: 7_776_000,
            renew_after_secs: 7_171_200,
            responder_manifest_sha256: "m_genesis",
            created_at: T0 + 60,
        })
    }

    fn activate(&self, generation: u64) -> Map<String, Value> {
        let token = Pair::token("tok_a_for_b", "sa_alice_for_bob", &self.bob);
        self.update(generation, UpdateOp::Activate, activate_fields(&token))
    }

    fn update(
        &self,
        generation: u64,
        op: UpdateOp,
        fields: Map<String, Value>,
    ) -> Map<String, Value> {
        update_body(&self.id, generation, op, None, fields, T0 + 120)
    }

    fn op(&self, op: UpdateOp) -> Map<String, Value> {
        self.update(1, op, Map::new())
    }

    fn revoke(&self, generation: u64) -> Map<String, Value> {
        let notify = RevokeNotify {
            attempted: false,
            ok: false,
        };
        revoke_body(&self.id, generation, "operator", &[], notify, T0 + 180)
    }
}

/// A LEARN on the pairs thread as the store returns it, signed by `actor`.
fn stored(actor: &Keypair, clock: i64, parents: &[&Value], body: Map<String, Value>) -> Value {
    let parents: Vec<&str> = parents.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let envelope = Envelope::from_value(json!({
        "act": "LEARN", "actor": actor.did_key(), "body": body, "clock": clock,
        "parents": parents, "thread": PAIRS_THREAD,
    }))
    .unwrap();
    let sig = actor.sign_hex(envelope.canonical_json().as_bytes());
    json!({
        "id": envelope.id(), "act": "LEARN", "actor": actor.did_key(), "body": envelope.body,
        "clock": clock, "data_type": "SCALAR", "parents": envelope.parents,
        "thread": PAIRS_THREAD, "judged_by": null, "sig": sig, "signer": actor.did_key(),
    })
}

/// What the steward passes: the genesis must be signed by its responder.
fn signed_by_responder(record: &Value) -> bool {
    let Ok(envelope) = Envelope::from_value(record.clone()) else {
        return false;
    };
    let signer = record["signer"].as_str().unwrap_or_default();
    envelope.id() == record["id"]
        && record["body"]["responder_did"] == signer
        && verify_signature(
            signer,
            envelope.canonical_json().as_bytes(),
            record["sig"].as_str().unwrap_or_default(),
        )
        .is_ok()
}

fn fold(records: &[Value], me: &Keypair) -> BTreeMap<String, PairView> {
    fold_pairs(records, &me.did_key(), signed_by_responder)
}

fn view(records: &[Value], me: &Keypair) -> PairView {
    let views = fold(records, me);
    assert_eq!(views.len(), 1, "{views:?}");
    views.into_values().next().unwrap()
}

fn id(record: &Value) -> String {
    record["id"].as_str().unwrap().to_owned()
}

#[test]
fn responder_walks_establishing_active_paused_active_revoked() {
    let p = Pair::new();
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.bob, 2, &[&genesis], p.activate(1));
    let pause = stored(&p.bob, 3, &[&activate], p.op(UpdateOp::Pause));
    let resume = stored(&p.bob, 4, &[&pause], p.op(UpdateOp::Resume));
    let revoke = stored(&p.bob, 5, &[&resume], p.revoke(1));

    let v = view(std::slice::from_ref(&genesis), &p.bob);
    assert_eq!(v.pair_id, p.id);
    assert_eq!(v.role, PairRole::Responder);
    assert_eq!(v.state, PairState::Establishing);
    assert_eq!(v.phase, Some(PairPhase::AwaitingConfirm));
    assert_eq!(v.peer_did, p.alice.did_key());
    assert_eq!(v.peer_url.as_deref(), Some(ALICE_URL));
    assert_eq!(
        v.maps,
        [NamespaceMap {
            local: "my-team".into(),
            peer: "research".into()
        }]
    );
    assert_eq!(
        v.tokens.inbound,
        Some(InboundToken {
            token_id: "tok_b_for_a".into(),
            sa_id: "sa_bob_for_alice".into(),
            expires_at: "2026-07-30T12:00:00Z".into(),
        })
    );
    assert_eq!(v.tokens.outbound, None);
    assert_eq!(v.genesis_id, Some(id(&genesis)));
    assert_eq!(v.created_at.as_deref(), Some("2026-05-01T12:01:00Z"));
    assert_eq!(v.poll_interval_secs, 5);
    assert_eq!(v.next_parents, [id(&genesis)]);

    let mut records = vec![genesis, activate];
    let v = view(&records, &p.bob);
    assert_eq!((v.state, v.phase), (PairState::Active, None));
    let outbound = v.tokens.outbound.unwrap();
    assert_eq!(outbound.token_id, "tok_a_for_b");
    assert_eq!(
        outbound.secret_handle,
        format!("secret://federation/{}/outbound", p.id)
    );

    for (record, state) in [
        (pause, PairState::Paused),
        (resume, PairState::Active),
        (revoke.clone(), PairState::Revoked),
    ] {
        records.push(record);
        assert_eq!(view(&records, &p.bob).state, state);
    }
    assert_eq!(view(&records, &p.bob).next_parents, [id(&revoke)]);
}

#[test]
fn initiator_holds_the_tokens_the_other_way_round() {
    let p = Pair::new();
    let init = stored(&p.alice, 1, &[], p.init(1));
    // The responder's genesis, copied verbatim: same id on both sides.
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.alice, 2, &[&init, &genesis], p.activate(1));

    let v = view(std::slice::from_ref(&init), &p.alice);
    assert_eq!(v.role, PairRole::Initiator);
    assert_eq!(v.state, PairState::Establishing);
    assert_eq!(v.phase, Some(PairPhase::AwaitingApproval));
    assert_eq!(v.peer_did, p.bob.did_key());
    assert_eq!(v.mode, "continuous");
    assert_eq!(v.peer_manifest_sha256.as_deref(), Some("m_init"));
    assert_eq!(v.tokens, PairTokens::default());

    let v = view(&[init.clone(), genesis.clone()], &p.alice);
    assert_eq!(v.state, PairState::Establishing);
    assert_eq!(v.phase, Some(PairPhase::AwaitingConfirm));
    // Genesis states the agreed terms; init's proposal gives way.
    assert_eq!(v.mode, "polling");
    assert_eq!(v.peer_manifest_sha256.as_deref(), Some("m_genesis"));
    assert_eq!(v.peer_url.as_deref(), Some(BOB_URL));
    assert_eq!(v.tokens.outbound.as_ref().unwrap().token_id, "tok_b_for_a");
    assert_eq!(v.tokens.inbound, None);
    assert_eq!(
        v.maps,
        [NamespaceMap {
            local: "research".into(),
            peer: "my-team".into()
        }]
    );
    assert_eq!(v.created_at.as_deref(), Some("2026-05-01T12:00:00Z"));
    let mut heads = vec![id(&init), id(&genesis)];
    heads.sort();
    assert_eq!(
        v.next_parents, heads,
        "activate lists both init and genesis"
    );

    let v = view(&[init, genesis, activate.clone()], &p.alice);
    assert_eq!(v.state, PairState::Active);
    let inbound = v.tokens.inbound.unwrap();
    assert_eq!(
        (inbound.token_id.as_str(), inbound.sa_id.as_str()),
        ("tok_a_for_b", "sa_alice_for_bob")
    );
    assert_eq!(v.tokens.outbound.unwrap().token_id, "tok_b_for_a");
    assert_eq!(v.next_parents, [id(&activate)]);
}

#[test]
fn a_new_generation_starts_after_revoke() {
    let p = Pair::new();
    let g1 = stored(&p.bob, 1, &[], p.genesis(1));
    let a1 = stored(&p.bob, 2, &[&g1], p.activate(1));
    let checkpoint = stored(
        &p.bob,
        3,
        &[&a1],
        p.update(
            1,
            UpdateOp::CursorCheckpoint,
            object(json!({"thread": "th_a", "cursor": "c1"})),
        ),
    );
    let r1 = stored(&p.bob, 4, &[&checkpoint], p.revoke(1));
    let g2 = stored(&p.bob, 5, &[], p.genesis(2));
    let records = [g1.clone(), a1, checkpoint, r1.clone(), g2.clone()];

    let old = view(&records[..4], &p.bob);
    assert_eq!((old.generation, old.state), (1, PairState::Revoked));
    assert_eq!(old.cursors["th_a"].cursor, "c1");

    let v = view(&records, &p.bob);
    assert_eq!(v.generation, 2);
    assert_eq!(v.state, PairState::Establishing);
    assert_eq!(v.genesis_id, Some(id(&g2)));
    assert!(v.cursors.is_empty(), "older generations are history");
    assert_eq!(v.tokens.outbound, None);
    assert_eq!(v.next_parents, [id(&g2)]);

    // A late record of generation 1 changes nothing.
    let late = stored(&p.bob, 6, &[&r1], p.op(UpdateOp::Resume));
    let mut with_late = records.to_vec();
    with_late.push(late);
    assert_eq!(view(&with_late, &p.bob), v);
    // Updates alone never begin a pair.
    let orphan = stored(&p.bob, 7, &[&g1], p.op(UpdateOp::Pause));
    assert!(fold(&[orphan], &p.bob).is_empty());
}

#[test]
fn transitions_outside_the_table_are_ignored() {
    let p = Pair::new();
    let degrade = |cause: &str| p.update(1, UpdateOp::Degrade, object(json!({"cause": cause})));
    let url = |to: &str| {
        p.update(
            1,
            UpdateOp::UrlRefreshed,
            object(json!({"peer_url": to, "via": "operator"})),
        )
    };
    let mut chain: Vec<Value> = vec![stored(&p.bob, 1, &[], p.genesis(1))];
    let mut push = |body: Map<String, Value>| {
        let clock = chain.len() as i64 + 1;
        let record = stored(&p.bob, clock, &[chain.last().unwrap()], body);
        chain.push(record);
        view(&chain, &p.bob)
    };
    assert_eq!(push(p.op(UpdateOp::Resume)).state, PairState::Establishing);
    assert_eq!(push(p.op(UpdateOp::Pause)).state, PairState::Establishing);
    assert_eq!(push(p.activate(1)).state, PairState::Active);
    assert_eq!(push(p.op(UpdateOp::Recover)).state, PairState::Active);
    let v = push(degrade("auth_401"));
    assert_eq!(
        (v.state, v.degraded_cause.as_deref()),
        (PairState::Degraded, Some("auth_401"))
    );
    let v = push(p.op(UpdateOp::Pause));
    assert_eq!((v.state, v.degraded_cause), (PairState::Paused, None));
    // Automatic transitions never leave paused: the cause is not taken either.
    let v = push(degrade("token_expired"));
    assert_eq!((v.state, v.degraded_cause), (PairState::Paused, None));
    assert_eq!(push(p.op(UpdateOp::Resume)).state, PairState::Active);
    assert_eq!(push(p.revoke(1)).state, PairState::Revoked);
    assert_eq!(push(p.op(UpdateOp::Resume)).state, PairState::Revoked);
    let v = push(url("https://elsewhere.example"));
    assert_eq!(
        v.peer_url.as_deref(),
        Some(ALICE_URL),
        "nothing counts after revoke"
    );
}

#[test]
fn concurrent_writers_fold_revoke_first_then_clock_then_id() {
    let p = Pair::new();
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.bob, 2, &[&genesis], p.activate(1));
    let pause = stored(&p.bob, 3, &[&activate], p.op(UpdateOp::Pause));
    let base = [genesis, activate, pause.clone()];
    let with = |extra: &[Value]| {
        let mut records = base.to_vec();
        records.extend_from_slice(extra);
        view(&records, &p.bob)
    };

    // Revoke applies before a sibling with a higher clock, so nothing on
    // the sibling's branch counts.
    let resume = stored(&p.bob, 9, &[&pause], p.op(UpdateOp::Resume));
    let moved = object(json!({"peer_url": "https://alice.moved", "via": "moved_to"}));
    let url = stored(
        &p.bob,
        10,
        &[&resume],
        p.update(1, UpdateOp::UrlRefreshed, moved),
    );
    let revoke = stored(&p.bob, 4, &[&pause], p.revoke(1));
    let v = with(&[resume, url.clone(), revoke.clone()]);
    assert_eq!(v.state, PairState::Revoked);
    assert_eq!(v.peer_url.as_deref(), Some(ALICE_URL));
    let mut heads = vec![id(&url), id(&revoke)];
    heads.sort();
    assert_eq!(
        v.next_parents, heads,
        "both heads are listed by the next record"
    );

    // From paused, resume-then-degrade ends degraded; degrade-then-resume ends active.
    let degrade = |clock| {
        stored(
            &p.bob,
            clock,
            &[&pause],
            p.update(1, UpdateOp::Degrade, object(json!({"cause": "auth_401"}))),
        )
    };
    let resume_at = |clock| stored(&p.bob, clock, &[&pause], p.op(UpdateOp::Resume));
    assert_eq!(with(&[resume_at(8), degrade(7)]).state, PairState::Degraded);
    assert_eq!(with(&[resume_at(7), degrade(8)]).state, PairState::Active);
    // Equal clocks: the larger id applies first.
    let (r, d) = (resume_at(7), degrade(7));
    let expected = if id(&r) > id(&d) {
        PairState::Degraded
    } else {
        PairState::Active
    };
    assert_eq!(with(&[r.clone(), d.clone()]).state, expected);
    assert_eq!(with(&[d, r]).state, expected);
}

#[test]
fn rebuilding_from_the_same_records_in_any_order_gives_the_same_views() {
    let p = Pair::new();
    let init = stored(&p.alice, 1, &[], p.init(1));
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.alice, 2, &[&init, &genesis], p.activate(1));
    let config = stored(
        &p.alice,
        3,
        &[&activate],
        p.update(
            1,
            UpdateOp::Config,
            object(json!({"thread_allow_add": ["th_b", "th_a"], "mode": "on-demand"})),
        ),
    );
    let pause = stored(&p.alice, 4, &[&config], p.op(UpdateOp::Pause));
    let degrade = stored(
        &p.alice,
        4,
        &[&config],
        p.update(1, UpdateOp::Degrade, object(json!({"cause": "x"}))),
    );
    let records = vec![init, genesis, activate, config, pause, degrade];

    let reference = fold(&records, &p.alice);
    let text = serde_json::to_string(&reference).unwrap();
    let mut shuffled = records.clone();
    for step in 0..records.len() * 3 {
        shuffled.rotate_left(1);
        shuffled.swap(0, step % records.len());
        let again = fold(&shuffled, &p.alice);
        assert_eq!(again, reference);
        assert_eq!(serde_json::to_string(&again).unwrap(), text);
    }
    // Duplicates (a record ingested twice) change nothing either.
    let mut doubled = records.clone();
    doubled.extend(records.iter().cloned());
    assert_eq!(fold(&doubled, &p.alice), reference);
    assert_eq!(reference[&p.id].state, PairState::Paused);
    assert_eq!(reference[&p.id].mode, "on-demand");
}

#[test]
fn genesis_must_verify_and_belong_to_us() {
    let p = Pair::new();
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    assert_eq!(fold(std::slice::from_ref(&genesis), &p.alice).len(), 1);

    // Body changed after signing: the signature no longer covers it.
    let mut forged = genesis.clone();
    forged["body"]["responder_issued"]["token_id"] = json!("mallory");
    assert!(fold(&[forged], &p.alice).is_empty());
    // Signed, but by someone other than the responder.
    let by_alice = stored(&p.alice, 1, &[], p.genesis(1));
    assert!(fold(&[by_alice], &p.bob).is_empty());

    // Without signature members the closure is not consulted.
    let mut unsigned = genesis.clone();
    let record = unsigned.as_object_mut().unwrap();
    record.remove("sig");
    record.remove("signer");
    let views = fold_pairs(&[unsigned], &p.bob.did_key(), |_| panic!("not asked"));
    assert_eq!(views[&p.id].state, PairState::Establishing);

    // A genesis or init of a pair that is not ours (or whose DIDs do not
    // hash to its pair id) is ignored.
    let carol = Keypair::from_seed(&[0xc0; 32]);
    assert!(fold(std::slice::from_ref(&genesis), &carol).is_empty());
    let mut wrong_id = p.genesis(1);
    wrong_id["pair_id"] = json!(pair_id(&p.alice.did_key(), &carol.did_key()));
    assert!(fold(&[stored(&p.bob, 1, &[], wrong_id)], &p.bob).is_empty());
    assert!(fold(&[stored(&p.alice, 1, &[], p.init(1))], &carol).is_empty());
}

#[test]
fn upstream_short_kinds_are_accepted() {
    let p = Pair::new();
    let mut genesis = p.genesis(1);
    genesis["kind"] = json!("pair.genesis.v1");
    let genesis = stored(&p.bob, 1, &[], genesis);
    let mut active = p.activate(1);
    active["kind"] = json!("syncropel.federation.pair_active.v1");
    active.remove("op");
    let active = stored(&p.bob, 2, &[&genesis], active);
    let mut config = p.update(
        1,
        UpdateOp::Pause,
        object(json!({"poll_interval_secs": 60})),
    );
    config["kind"] = json!("syncropel.federation.pair_config.v1");
    let config = stored(&p.bob, 3, &[&active], config);
    let v = view(&[genesis.clone(), active.clone(), config.clone()], &p.bob);
    assert_eq!((v.state, v.poll_interval_secs), (PairState::Active, 60));
    assert_eq!(v.tokens.outbound.unwrap().token_id, "tok_a_for_b");

    let mut revoke = p.revoke(1);
    revoke["kind"] = json!("pair.revoke.v1");
    let revoke = stored(&p.bob, 4, &[&config], revoke);
    assert_eq!(
        view(&[genesis, active, config, revoke], &p.bob).state,
        PairState::Revoked
    );
}

#[test]
fn data_updates_reach_the_view() {
    let p = Pair::new();
    let fields = |v: Value| object(v);
    let mut chain = vec![stored(&p.bob, 1, &[], p.genesis(1))];
    for (op, f) in [
        (
            UpdateOp::Activate,
            activate_fields(&Pair::token("tok_a_for_b", "sa_ab", &p.bob)),
        ),
        (
            UpdateOp::Config,
            fields(json!({"thread_allow_add": "th_x", "thread_rule": "true"})),
        ),
        (
            UpdateOp::Config,
            fields(json!({"thread_allow_add": ["th_y", "th_z"], "thread_allow_remove": "th_x"})),
        ),
        (
            UpdateOp::CursorCheckpoint,
            fields(json!({"thread": "th_y", "cursor": "c1"})),
        ),
        (
            UpdateOp::CursorCheckpoint,
            fields(json!({"thread": "th_y", "cursor": "c2"})),
        ),
        (
            UpdateOp::UrlRefreshed,
            fields(json!({"peer_url": "https://alice.moved", "via": "moved_to"})),
        ),
        (
            UpdateOp::ManifestChanged,
            fields(json!({"peer_manifest_sha256": "m2"})),
        ),
        (
            UpdateOp::TokenRenewed,
            token_renewed_fields(TokenDirection::Inbound, "tok_b_for_a_2", T0 + 9_000_000),
        ),
        (
            UpdateOp::TokenRenewed,
            token_renewed_fields(TokenDirection::Outbound, "tok_a_for_b_2", T0),
        ),
        (
            UpdateOp::RenewalFailed,
            fields(json!({"attempts": 3, "expires_at": "x"})),
        ),
    ] {
        let clock = chain.len() as i64 + 1;
        let record = stored(&p.bob, clock, &[chain.last().unwrap()], p.update(1, op, f));
        chain.push(record);
    }
    let v = view(&chain, &p.bob);
    assert_eq!(v.state, PairState::Active);
    assert_eq!(v.thread_allow.iter().collect::<Vec<_>>(), ["th_y", "th_z"]);
    assert_eq!(v.thread_rule.as_deref(), Some("true"));
    assert_eq!(v.cursors.len(), 1);
    assert_eq!(v.cursors["th_y"].cursor, "c2");
    assert_eq!(v.peer_url.as_deref(), Some("https://alice.moved"));
    assert_eq!(v.peer_manifest_sha256.as_deref(), Some("m2"));
    let inbound = v.tokens.inbound.clone().unwrap();
    assert_eq!(
        (
            inbound.token_id.as_str(),
            inbound.sa_id.as_str(),
            inbound.expires_at.as_str()
        ),
        ("tok_b_for_a_2", "sa_bob_for_alice", "2026-08-13T16:00:00Z")
    );
    let outbound = v.tokens.outbound.clone().unwrap();
    assert_eq!(
        (outbound.token_id.as_str(), outbound.expires_at.as_str()),
        ("tok_a_for_b_2", "2026-05-01T12:00:00Z")
    );

    let shown = serde_json::to_value(&v).unwrap();
    assert_eq!(shown["role"], "responder");
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["phase"], Value::Null);
    assert_eq!(shown["cursors"], json!({"th_y": {"cursor": "c2"}}));
    assert_eq!(shown["thread_allow"], json!(["th_y", "th_z"]));
    assert_eq!(shown["tokens"]["inbound"]["sa_id"], "sa_bob_for_alice");
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn updates_and_revokes_by_anyone_else_change_nothing() {
    let p = Pair::new();
    let mallory = Keypair::from_seed(&[0x66; 32]);
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.bob, 2, &[&genesis], p.activate(1));
    let moved = object(json!({"peer_url": "http://attacker.example:8000"}));
    let forged_url = stored(
        &mallory,
        3,
        &[&activate],
        p.update(1, UpdateOp::UrlRefreshed, moved),
    );
    let forged_revoke = stored(&mallory, 4, &[&activate], p.revoke(1));
    let v = view(&[genesis, activate, forged_url, forged_revoke], &p.bob);
    assert_eq!(v.state, PairState::Active);
    assert_eq!(v.peer_url.as_deref(), Some(ALICE_URL));
}

#[test]
fn a_config_update_names_the_peers_relays_in_order() {
    let p = Pair::new();
    let init = stored(&p.alice, 1, &[], p.init(1));
    let genesis = stored(&p.bob, 1, &[], p.genesis(1));
    let activate = stored(&p.alice, 2, &[&init, &genesis], p.activate(1));
    let relays =
        json!({"relays": ["https://r2.example", "ftp://no.example", "https://r1.example"]});
    let config = stored(
        &p.alice,
        3,
        &[&activate],
        p.update(1, UpdateOp::Config, object(relays)),
    );
    let records = vec![init, genesis, activate, config.clone()];
    let v = view(&records, &p.alice);
    assert_eq!(v.relays, ["https://r2.example", "https://r1.example"]);
    // A later config without `relays` keeps them; `relays: []` names none.
    let mode = stored(
        &p.alice,
        4,
        &[&config],
        p.update(1, UpdateOp::Config, object(json!({"mode": "on-demand"}))),
    );
    let kept = [records.clone(), vec![mode.clone()]].concat();
    assert_eq!(view(&kept, &p.alice).relays.len(), 2);
    let none = stored(
        &p.alice,
        5,
        &[&mode],
        p.update(1, UpdateOp::Config, object(json!({"relays": []}))),
    );
    let cleared = [kept, vec![none]].concat();
    assert!(view(&cleared, &p.alice).relays.is_empty());
}
