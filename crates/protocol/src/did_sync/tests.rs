use super::*;
use crate::error::ErrorCode;
use serde_json::json;

const T0: i64 = 1_777_636_800;
const HOUR: i64 = 3600;

struct Keys {
    user: Keypair,
    host: Keypair,
    record1: Keypair,
    record2: Keypair,
}

fn keys() -> Keys {
    Keys {
        user: Keypair::from_seed(&[1; 32]),
        host: Keypair::from_seed(&[2; 32]),
        record1: Keypair::from_seed(&[3; 32]),
        record2: Keypair::from_seed(&[4; 32]),
    }
}

fn multibase(key: &Keypair) -> String {
    key.did_key().strip_prefix("did:key:").unwrap().to_owned()
}

fn state_op(k: &Keys, kind: OpType, prev: Option<&str>, record: &[&Keypair]) -> Operation {
    Operation {
        kind,
        prev: prev.map(str::to_owned),
        signing_keys: record
            .iter()
            .enumerate()
            .map(|(i, key)| (format!("key-{}", i + 1), multibase(key)))
            .collect(),
        rotation_keys: vec![k.user.did_key(), k.host.did_key()],
        handles: vec!["alice".into()],
        namespaces: vec!["alice".into()],
        services: BTreeMap::from([(
            "syncropel".into(),
            Service {
                kind: "syncropel".into(),
                endpoint: "https://alice.syncropel.app".into(),
            },
        )]),
        compromised: Vec::new(),
        created_at: "2026-05-01T12:00:00Z".into(),
        sig: None,
    }
}

fn tombstone(prev: &str) -> Operation {
    Operation {
        kind: OpType::Tombstone,
        prev: Some(prev.to_owned()),
        signing_keys: BTreeMap::new(),
        rotation_keys: Vec::new(),
        handles: Vec::new(),
        namespaces: Vec::new(),
        services: BTreeMap::new(),
        compromised: Vec::new(),
        created_at: "2026-05-02T12:00:00Z".into(),
        sig: None,
    }
}

/// A log holding a genesis signed by the host key; returns its cid.
fn genesis_log(k: &Keys) -> (OpLog, String) {
    let mut log = OpLog::new();
    let g = sign_operation(&state_op(k, OpType::Genesis, None, &[&k.record1]), &k.host);
    let applied = log.apply(&g, T0).unwrap();
    (log, applied.entry.cid)
}

fn update(k: &Keys, prev: &str, record: &[&Keypair], signer: &Keypair) -> Value {
    sign_operation(&state_op(k, OpType::Update, Some(prev), record), signer)
}

#[test]
fn base32_matches_rfc4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ] {
        assert_eq!(base32_lower(input.as_bytes()), expected, "{input:?}");
    }
    assert_eq!(base32_lower(&[0xFF; 5]), "77777777");
}

#[test]
fn did_derivation_is_deterministic_and_hashes_the_signed_genesis() {
    let k = keys();
    let op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
    let a = sign_operation(&op, &k.host);
    let b = sign_operation(&op, &k.host);
    assert_eq!(a, b);
    let did = did_from_genesis(&a);
    assert_eq!(did, did_from_genesis(&b));
    let hash = did.strip_prefix("did:sync:").unwrap();
    assert_eq!(hash.len(), DID_HASH_CHARS);
    assert!(hash.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')));
    let digest = Sha256::digest(canonical_string(&a).as_bytes());
    assert_eq!(hash, &base32_lower(&digest)[..24]);
    // Signed by another key, the same content is another DID.
    assert_ne!(did, did_from_genesis(&sign_operation(&op, &k.user)));
    assert_eq!(cid(&a), sha256_hex(canonical_string(&a).as_bytes()));

    let (log, head) = genesis_log(&k);
    assert_eq!(log.did().unwrap(), did);
    let state = log.current().unwrap();
    assert_eq!(state.did, did);
    assert_eq!(state.head, head);
    assert_eq!(state.handles, ["alice"]);
    assert!(!state.deactivated);
}

#[test]
fn genesis_must_be_first_and_self_signed() {
    let k = keys();
    let op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
    let by_outsider = sign_operation(&op, &k.record2);
    let err = apply(&[], &by_outsider, T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyNotAuthorized, "{err}");

    let (log, _) = genesis_log(&k);
    let second = sign_operation(&op, &k.user);
    let err = apply(&log.entries, &second, T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
}

#[test]
fn update_by_a_rotation_key_is_accepted() {
    let k = keys();
    let (mut log, g) = genesis_log(&k);
    let applied = log
        .apply(&update(&k, &g, &[&k.record2], &k.host), T0 + 10)
        .unwrap();
    assert!(applied.nullified.is_empty());
    let state = log.current().unwrap();
    assert_eq!(state.head, applied.entry.cid);
    assert_eq!(
        state.signing_keys,
        BTreeMap::from([("key-1".to_owned(), multibase(&k.record2))])
    );
}

#[test]
fn update_signed_by_a_signing_key_is_refused() {
    let k = keys();
    let (log, g) = genesis_log(&k);
    let op = update(&k, &g, &[&k.record2], &k.record1);
    let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyNotAuthorized, "{err}");
    assert_eq!(err.code().http_status(), 403);
}

#[test]
fn a_tampered_op_fails_its_signature() {
    let k = keys();
    let (log, g) = genesis_log(&k);
    let mut op = update(&k, &g, &[&k.record2], &k.host);
    op["handles"] = json!(["mallory"]);
    let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SignatureInvalid, "{err}");
}

#[test]
fn wrong_prev_is_refused() {
    let k = keys();
    let (log, _) = genesis_log(&k);
    let op = update(&k, &"0".repeat(64), &[&k.record2], &k.host);
    let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    assert_eq!(err.code().http_status(), 409);
    // An update without prev is malformed, not a genesis.
    let mut op = state_op(&k, OpType::Update, None, &[&k.record2]);
    op.prev = None;
    let err = apply(&log.entries, &sign_operation(&op, &k.host), T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
}

#[test]
fn replay_is_refused_with_prev_mismatch() {
    let k = keys();
    let (mut log, g) = genesis_log(&k);
    let genesis = log.entries[0].op.clone();
    let err = apply(&log.entries, &genesis, T0 + 1).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    let op = update(&k, &g, &[&k.record2], &k.user);
    log.apply(&op, T0 + 10).unwrap();
    let err = log.apply(&op, T0 + 20).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    assert!(err.to_string().contains("already in the log"), "{err}");
    assert_eq!(log.entries.len(), 2);
}

/// Genesis, then op B by the host key (index 1) one hour later.
fn with_host_update(k: &Keys) -> (OpLog, String, String) {
    let (mut log, g) = genesis_log(k);
    let b = log
        .apply(&update(k, &g, &[&k.record2], &k.host), T0 + HOUR)
        .unwrap()
        .entry
        .cid;
    (log, g, b)
}

#[test]
fn recovery_within_72h_displaces_a_lower_priority_op() {
    let k = keys();
    let (mut log, g, b) = with_host_update(&k);
    let mut fork = state_op(&k, OpType::Update, Some(&g), &[&k.record1]);
    fork.rotation_keys = vec![k.user.did_key()]; // drop the host key
    let fork = sign_operation(&fork, &k.user);
    let applied = log.apply(&fork, T0 + HOUR + 72 * HOUR).unwrap();
    assert_eq!(applied.nullified, vec![b.clone()]);
    let displaced = log.entries.iter().find(|e| e.cid == b).unwrap();
    assert!(displaced.nullified, "B stays in the log, nullified");
    assert_eq!(log.entries.len(), 3);
    let state = log.current().unwrap();
    assert_eq!(state.head, applied.entry.cid);
    assert_eq!(state.rotation_keys, [k.user.did_key()]);
    // B's key is not historical: B was undone.
    assert_eq!(
        state.historical_signing_keys,
        [("key-1".to_owned(), multibase(&k.record1))]
    );
    // A nullified op cannot be built upon.
    let err = apply(
        &log.entries,
        &update(&k, &b, &[&k.record2], &k.user),
        T0 + 80 * HOUR,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
}

#[test]
fn recovery_after_72h_is_refused() {
    let k = keys();
    let (log, g, _) = with_host_update(&k);
    let fork = update(&k, &g, &[&k.record1], &k.user);
    let err = apply(&log.entries, &fork, T0 + HOUR + 72 * HOUR + 1).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    assert!(err.to_string().contains("final"), "{err}");
}

#[test]
fn fork_by_equal_or_lower_priority_key_is_refused() {
    let k = keys();
    // Host (index 1) cannot displace the host's own op B.
    let (log, g, _) = with_host_update(&k);
    let fork = update(&k, &g, &[&k.record1], &k.host);
    let err = apply(&log.entries, &fork, T0 + 2 * HOUR).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");

    // Host cannot displace the user's (index 0) op, nor can the user.
    let (mut log, g) = genesis_log(&k);
    log.apply(&update(&k, &g, &[&k.record2], &k.user), T0 + HOUR)
        .unwrap();
    for signer in [&k.host, &k.user] {
        let mut op = state_op(&k, OpType::Update, Some(&g), &[&k.record1]);
        op.handles = vec!["alice-2".into()];
        let err = apply(&log.entries, &sign_operation(&op, signer), T0 + 2 * HOUR).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{signer:?}: {err}");
    }
}

#[test]
fn tombstone_ends_the_log() {
    let k = keys();
    let (mut log, g) = genesis_log(&k);
    let t = log
        .apply(&sign_operation(&tombstone(&g), &k.host), T0 + HOUR)
        .unwrap()
        .entry
        .cid;
    let state = log.current().unwrap();
    assert!(state.deactivated);
    assert!(state.signing_keys.is_empty() && state.rotation_keys.is_empty());
    assert_eq!(state.historical_signing_keys.len(), 1);
    for signer in [&k.user, &k.host] {
        let err = apply(
            &log.entries,
            &update(&k, &t, &[&k.record2], signer),
            T0 + 2 * HOUR,
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    }
    // A tombstone carrying state is malformed.
    let mut bad = tombstone(&g);
    bad.handles = vec!["alice".into()];
    let err = apply(&log.entries, &sign_operation(&bad, &k.user), T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
    // Within 72 h the user key can still undo a tombstone by the host.
    let applied = log
        .apply(&update(&k, &g, &[&k.record1], &k.user), T0 + 2 * HOUR)
        .unwrap();
    assert_eq!(applied.nullified, [t]);
    assert!(!log.current().unwrap().deactivated);
}

#[test]
fn recovery_window_is_configurable() {
    let k = keys();
    let (log, g, _) = with_host_update(&k);
    let fork = update(&k, &g, &[&k.record1], &k.user);
    let err = apply_with_window(&log.entries, &fork, T0 + 2 * HOUR, HOUR / 2).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    apply_with_window(&log.entries, &fork, T0 + 100 * HOUR, 200 * HOUR).unwrap();
}

#[test]
fn document_lists_current_then_historical_keys() {
    let k = keys();
    let (mut log, g) = genesis_log(&k);
    // key-1 is rotated to another key under the same name.
    log.apply(&update(&k, &g, &[&k.record2], &k.user), T0 + HOUR)
        .unwrap();
    let state = log.current().unwrap();
    let doc = document(&state);
    let did = &state.did;
    assert_eq!(doc["id"], json!(did));
    assert_eq!(doc["alsoKnownAs"], json!(["syncropel:handle:alice"]));
    let current = format!("{did}#key-1");
    assert_eq!(doc["assertionMethod"], json!([current]));
    assert_eq!(doc["authentication"], json!([current]));
    let methods = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[0]["id"], json!(current));
    assert_eq!(
        methods[0]["publicKeyMultibase"],
        json!(multibase(&k.record2))
    );
    let old = multibase(&k.record1);
    assert_eq!(methods[1]["id"], json!(format!("{did}#{old}")));
    assert_eq!(methods[1]["publicKeyMultibase"], json!(old));
    assert_eq!(
        doc["service"],
        json!([{
            "id": format!("{did}#syncropel"),
            "type": "syncropel",
            "serviceEndpoint": "https://alice.syncropel.app",
        }])
    );
}

#[test]
fn oversize_op_is_refused() {
    let k = keys();
    let mut op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
    op.services.get_mut("syncropel").unwrap().endpoint =
        format!("https://{}.example", "a".repeat(MAX_OP_BYTES));
    let err = apply(&[], &sign_operation(&op, &k.host), T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::OpTooLarge, "{err}");
    assert_eq!(err.code().http_status(), 413);
    // Just under the limit passes.
    let signed = sign_operation(&state_op(&k, OpType::Genesis, None, &[]), &k.host);
    let room = MAX_OP_BYTES - canonical_string(&signed).len();
    let mut op = state_op(&k, OpType::Genesis, None, &[]);
    let endpoint = &mut op.services.get_mut("syncropel").unwrap().endpoint;
    endpoint.push_str(&"a".repeat(room));
    let signed = sign_operation(&op, &k.host);
    assert_eq!(canonical_string(&signed).len(), MAX_OP_BYTES);
    apply(&[], &signed, T0).unwrap();
}

#[test]
fn historical_keys_survive_rotation_unless_compromised() {
    let k = keys();
    let (mut log, g) = genesis_log(&k);
    let mut rotate = state_op(&k, OpType::Update, Some(&g), &[]);
    rotate.signing_keys = BTreeMap::from([("key-2".into(), multibase(&k.record2))]);
    let u1 = log
        .apply(&sign_operation(&rotate, &k.user), T0 + HOUR)
        .unwrap()
        .entry
        .cid;
    let state = log.current().unwrap();
    assert_eq!(state.signing_keys.len(), 1);
    assert_eq!(
        state.historical_signing_keys,
        [
            ("key-1".to_owned(), multibase(&k.record1)),
            ("key-2".to_owned(), multibase(&k.record2)),
        ]
    );
    let mut withdraw = rotate.clone();
    withdraw.prev = Some(u1);
    withdraw.compromised = vec!["key-1".into()];
    log.apply(&sign_operation(&withdraw, &k.user), T0 + 2 * HOUR)
        .unwrap();
    assert_eq!(
        log.current().unwrap().historical_signing_keys,
        [("key-2".to_owned(), multibase(&k.record2))]
    );
}

#[test]
fn malformed_members_are_refused() {
    let k = keys();
    let base = state_op(&k, OpType::Genesis, None, &[&k.record1]);
    let mut cases: Vec<(&str, Operation)> = Vec::new();
    let mut op = base.clone();
    op.rotation_keys.clear();
    cases.push(("no rotation keys", op));
    let mut op = base.clone();
    op.rotation_keys = (10..16)
        .map(|i| Keypair::from_seed(&[i; 32]).did_key())
        .collect();
    cases.push(("six rotation keys", op));
    let mut op = base.clone();
    op.handles = vec!["al".into()];
    cases.push(("short handle", op));
    let mut op = base.clone();
    op.handles = vec!["Alice".into()];
    cases.push(("upper-case handle", op));
    let mut op = base.clone();
    op.handles = vec!["aaa".into(), "bbb".into(), "ccc".into(), "ddd".into()];
    cases.push(("four handles", op));
    let mut op = base.clone();
    op.signing_keys.insert("key-2".into(), multibase(&k.host));
    cases.push(("rotation key as signing key", op));
    let mut op = base.clone();
    op.created_at = "yesterday".into();
    cases.push(("bad created_at", op));
    for (what, op) in cases {
        let err = apply(&[], &sign_operation(&op, &k.user), T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError, "{what}: {err}");
    }
    let mut unknown = sign_operation(&base, &k.user);
    unknown["extra"] = json!(1);
    let err = apply(&[], &unknown, T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
    // The valid base passes, so each case fails for its own reason.
    apply(&[], &sign_operation(&base, &k.user), T0).unwrap();
}
