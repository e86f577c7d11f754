use super::*;
use crate::keys::Keypair;
use serde_json::json;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const EPOCH: &str = "00112233aabbccdd";

#[test]
fn cursors_round_trip_and_refuse_forgeries() {
    let cursor = SyncCursor {
        epoch: EPOCH.into(),
        seq: 42,
    };
    let text = cursor.encode(KEY);
    assert_eq!(SyncCursor::decode(&text, KEY, EPOCH), Ok(cursor.clone()));
    assert_eq!(SyncCursor::peek(&text), Some(cursor));
    assert_eq!(SyncCursor::decode("", KEY, EPOCH).unwrap().seq, 0);
    // Another key, a tampered payload, a truncated mac, garbage.
    assert_eq!(
        SyncCursor::decode(&text, b"another key", EPOCH),
        Err(CursorError::Invalid)
    );
    let (_, mac) = text.split_once('.').unwrap();
    let forged = format!(
        "{}.{mac}",
        URL_SAFE_NO_PAD.encode(r#"{"v":1,"e":"00112233aabbccdd","s":43}"#)
    );
    assert_eq!(
        SyncCursor::decode(&forged, KEY, EPOCH),
        Err(CursorError::Invalid)
    );
    assert_eq!(
        SyncCursor::decode(&text[..text.len() - 2], KEY, EPOCH),
        Err(CursorError::Invalid)
    );
    for bad in ["x", ".", "abc.def", "%%%.%%%"] {
        assert_eq!(
            SyncCursor::decode(bad, KEY, EPOCH),
            Err(CursorError::Invalid)
        );
    }
    // A genuine cursor of another life of the store.
    let old = SyncCursor {
        epoch: "ffffffffffffffff".into(),
        seq: 1,
    }
    .encode(KEY);
    assert_eq!(
        SyncCursor::decode(&old, KEY, EPOCH),
        Err(CursorError::EpochMismatch)
    );
    // An edited epoch with the mac of the genuine cursor is tampering, not another life.
    let edited = format!(
        "{}.{mac}",
        URL_SAFE_NO_PAD.encode(r#"{"v":1,"e":"ffffffffffffffff","s":42}"#)
    );
    assert_eq!(
        SyncCursor::decode(&edited, KEY, EPOCH),
        Err(CursorError::Invalid)
    );
    // Another tenant's (or another store's) cursor, whatever its epoch, is not ours.
    let elsewhere = SyncCursor {
        epoch: "ffffffffffffffff".into(),
        seq: 9,
    }
    .encode(b"the key of another tenant's store");
    assert_eq!(
        SyncCursor::decode(&elsewhere, KEY, EPOCH),
        Err(CursorError::Invalid)
    );
}

fn signed_item(key: &Keypair, actor: &str, clock: i64) -> Value {
    let envelope = Envelope::from_value(json!({
        "act": "KNOW", "actor": actor, "body": {"n": clock}, "clock": clock,
        "thread": "th_sync_test", "parents": [], "data_type": "SCALAR"
    }))
    .unwrap();
    let canonical = envelope.canonical_json();
    let mut record = serde_json::from_str::<Value>(&canonical).unwrap();
    record["sig"] = json!(key.sign_hex(canonical.as_bytes()));
    if actor != key.did_key() {
        record["signer"] = json!(key.did_key());
    }
    json!({"id": record_id(&canonical), "record": record})
}

fn check(items: Vec<Value>) -> Vec<Result<(), Rejection>> {
    let parsed: Vec<PeerItem> = items
        .into_iter()
        .map(|v| PeerItem::from_value(v).unwrap())
        .collect();
    verify_items(&parsed, &ResolvedKeys::new())
}

#[test]
fn good_items_verify_in_one_batch_and_bad_ones_are_singled_out() {
    let key = Keypair::from_seed(&[1; 32]);
    let other = Keypair::from_seed(&[2; 32]);
    let good = signed_item(&key, &key.did_key(), 1);
    let typed = signed_item(&key, "did:sync:user:alice", 2);
    let mut tampered = signed_item(&key, &key.did_key(), 3);
    tampered["record"]["body"] = json!({"n": 99});
    let mut unsigned = signed_item(&key, &key.did_key(), 4);
    unsigned["record"].as_object_mut().unwrap().remove("sig");
    let mut forged = signed_item(&key, &key.did_key(), 5);
    forged["record"]["sig"] = json!(other.sign_hex(b"something else"));
    let mut impostor = signed_item(&other, "did:sync:user:alice", 6);
    impostor["record"]["signer"] = json!("did:web:example.com");
    let mut wrong_signer = signed_item(&key, &key.did_key(), 7);
    wrong_signer["record"]["signer"] = json!(other.did_key());

    assert_eq!(
        check(vec![good.clone(), typed.clone()]),
        vec![Ok(()), Ok(())]
    );
    assert_eq!(
        check(vec![
            good,
            tampered,
            unsigned,
            forged,
            impostor,
            wrong_signer,
            typed
        ]),
        vec![
            Ok(()),
            Err(Rejection::IdMismatch),
            Err(Rejection::SignatureRequired),
            Err(Rejection::SignatureInvalid),
            Err(Rejection::SignerUnresolved),
            Err(Rejection::SignatureInvalid),
            Ok(()),
        ]
    );
}

#[test]
fn actors_with_documents_verify_against_any_resolved_key() {
    let (old, new, stranger) = (
        Keypair::from_seed(&[4; 32]),
        Keypair::from_seed(&[5; 32]),
        Keypair::from_seed(&[6; 32]),
    );
    let did = "did:sync:abcdefghijklmnopqrstuvwx";
    let signed_by = |key: &Keypair, clock| {
        let mut item = signed_item(key, did, clock);
        item["record"]["signer"] = json!(key.did_key());
        item
    };
    let items: Vec<PeerItem> = [
        signed_by(&old, 1),
        signed_by(&new, 2),
        signed_by(&stranger, 3),
    ]
    .into_iter()
    .map(|v| PeerItem::from_value(v).unwrap())
    .collect();
    assert_eq!(items[0].actor_with_document(), Some(did));
    let document = |keys: Vec<String>, fresh| DocumentKeys {
        current: keys[..1].to_vec(),
        keys,
        fresh,
    };
    let resolved = ResolvedKeys::from([(
        did.to_string(),
        document(vec![new.did_key(), old.did_key()], true),
    )]);
    assert_eq!(
        verify_items(&items, &resolved),
        vec![Ok(()), Ok(()), Err(Rejection::SignatureInvalid)]
    );
    // A key withdrawn as compromised is simply no longer in the resolved set.
    let withdrawn = ResolvedKeys::from([(did.to_string(), document(vec![new.did_key()], true))]);
    assert_eq!(
        verify_items(&items[..1], &withdrawn),
        vec![Err(Rejection::SignatureInvalid)]
    );
    // An older copy of the document lacking the signer proves nothing yet.
    let stale = ResolvedKeys::from([(did.to_string(), document(vec![old.did_key()], false))]);
    assert_eq!(
        verify_items(&items[1..2], &stale),
        vec![Err(Rejection::SignerUnresolved)]
    );
}

#[test]
fn actors_with_their_own_documents_wait_for_a_resolver() {
    let key = Keypair::from_seed(&[4; 32]);
    let items = vec![
        signed_item(&key, "did:web:alice.dev", 1),
        signed_item(&key, "did:sync:abcdefghijklmnopqrstuvwx", 2),
        signed_item(&key, "did:sync:user:alice", 3),
        signed_item(&key, "did:example:app", 4),
    ];
    assert_eq!(
        check(items),
        vec![
            Err(Rejection::SignerUnresolved),
            Err(Rejection::SignerUnresolved),
            Ok(()),
            Ok(()),
        ]
    );
}

#[test]
fn items_of_the_wrong_shape_are_refused_and_stubs_pass_unsigned() {
    for bad in [
        json!([]),
        json!({"id": "abc", "record": {}}),
        json!({"id": "a".repeat(64)}),
        json!({"id": "a".repeat(64), "record": {"act": "KNOW"}}),
        json!({"id": "a".repeat(64), "redacted": true,
               "record": {"act": "KNOW", "actor": "a", "clock": 1, "thread": "th_x", "body": {"secret": 1}}}),
    ] {
        assert!(PeerItem::from_value(bad.clone()).is_err(), "{bad}");
    }
    let stub = json!({"id": "a".repeat(64), "redacted": true, "consent_grant": "cg_1",
        "hash_levels": {"l2": "b".repeat(64)},
        "record": {"act": "KNOW", "actor": "a", "clock": 1, "thread": "th_x", "body": {"redacted": true}}});
    let item = PeerItem::from_value(stub).unwrap();
    assert_eq!(
        item.redaction.as_ref().unwrap().consent_grant.as_deref(),
        Some("cg_1")
    );
    assert_eq!(verify_items(&[item], &ResolvedKeys::new()), vec![Ok(())]);
}

#[test]
fn stored_records_render_as_items_that_verify() {
    let key = Keypair::from_seed(&[3; 32]);
    let item = signed_item(&key, "did:sync:user:bob", 9);
    let mut stored = item["record"].clone();
    stored["object"] = json!("record");
    stored["id"] = item["id"].clone();
    stored["namespace"] = json!("default");
    stored["sequence"] = json!(12);
    let rendered = sync_item(&stored).unwrap();
    assert_eq!(rendered["record"].get("sequence"), None);
    assert_eq!(rendered["record"].get("namespace"), None);
    assert_eq!(check(vec![rendered.clone()]), vec![Ok(())]);

    // The text path renders the same item, value for value.
    let text = sync_item_text(&stored.to_string()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text.text).unwrap(), rendered);
    assert_eq!(
        (text.namespace.as_str(), text.thread.as_str()),
        ("default", "th_sync_test")
    );
    let mut stub = stored.clone();
    stub["redacted"] = json!(true);
    assert_eq!(sync_item_text(&stub.to_string()), None);
    assert_eq!(sync_item_text("[]"), None);
}

#[test]
fn a_traceparent_rides_with_an_item_and_a_malformed_one_is_dropped() {
    let key = Keypair::from_seed(&[1; 32]);
    let item = signed_item(&key, &key.did_key(), 1);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let text = item_with_traceparent(&item.to_string(), traceparent);
    let carried = PeerItem::from_value(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(carried.traceparent.as_deref(), Some(traceparent));
    // The record and its verdict are untouched by it.
    assert_eq!(carried.id, item["id"]);
    assert_eq!(
        check(vec![serde_json::from_str(&text).unwrap()]),
        vec![Ok(())]
    );
    for bad in [
        json!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        json!("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        json!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx"),
        json!(42),
    ] {
        let mut hostile = item.clone();
        hostile["traceparent"] = bad.clone();
        let parsed = PeerItem::from_value(hostile).expect("the record itself is fine");
        assert_eq!(parsed.traceparent, None, "{bad}");
    }
}
