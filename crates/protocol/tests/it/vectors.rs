//! Every vector in `tests/vectors/records.json` (generated with the Python
//! SDK 0.7.0) must pass.

use syncropel_protocol::{
    canonical_string, did_key_from_public, hash_level_preimages, parse_json,
    public_key_from_did_key, record_id, sha256_hex, validate_kind, verify_signature, Envelope,
    Keypair, DEFAULT_MAX_DEPTH,
};

use crate::common::{self, input_bytes, parse_input, record, records, str_of, vectors};

#[test]
fn input_bytes_are_non_canonical() {
    // Guards the harness itself: the float vectors must reach the parser
    // with their original spelling, or the number rules go untested.
    let raw = String::from_utf8(input_bytes(&record("integer_valued_floats"))).unwrap();
    assert!(raw.contains("1.0") && raw.contains("-0.0"), "{raw}");
}

#[test]
fn canonical_json_7_and_record_id_7() {
    let all = records();
    assert_eq!(all.len(), 15);
    for r in &all {
        let name = str_of(r, "name");
        let env = parse_input(r);
        let canonical = env.canonical_json();
        assert_eq!(canonical, str_of(r, "canonical_json_7"), "{name}");
        assert_eq!(
            canonical.len() as u64,
            r["canonical_json_7_utf8_bytes"].as_u64().unwrap(),
            "{name}"
        );
        let id = record_id(&canonical);
        assert_eq!(id, str_of(r, "record_id_7"), "{name}");
        assert_eq!(id, env.id(), "{name}");
        assert_eq!(id, str_of(r, "mock_kernel_id"), "{name}");
        assert_ne!(id, str_of(r, "record_id_6_legacy"), "{name}");
        assert_eq!(
            record_id(str_of(r, "canonical_json_6")),
            str_of(r, "record_id_6_legacy"),
            "{name}"
        );
    }
}

#[test]
fn whole_file_parses_strictly_and_agrees() {
    // The strict parser accepts the vector file and the canonical input it
    // yields gives the same envelope as the raw wire bytes.
    let strict = parse_json(common::VECTORS.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
    for (r, raw) in strict["records"].as_array().unwrap().iter().zip(records()) {
        let from_value = Envelope::from_value(r["input"].clone()).unwrap();
        assert_eq!(from_value, parse_input(&raw), "{}", r["name"]);
        let again = canonical_string(&r["input"]);
        assert_eq!(
            Envelope::parse(again.as_bytes(), DEFAULT_MAX_DEPTH).unwrap(),
            from_value
        );
    }
}

#[test]
fn hash_levels_and_preimages() {
    for r in records() {
        let name = str_of(&r, "name");
        let env = parse_input(&r);
        let levels = env.hash_levels();
        let pre = hash_level_preimages(env.act.as_str(), &env.body);
        for (key, got) in [
            ("hash_levels", [levels.l0, levels.l1, levels.l2, levels.l3]),
            ("hash_level_preimages", [pre.l0, pre.l1, pre.l2, pre.l3]),
        ] {
            for (level, got) in ["l0", "l1", "l2", "l3"].into_iter().zip(got) {
                assert_eq!(got, str_of(&r[key], level), "{name} {key}.{level}");
            }
        }
    }
}

#[test]
fn docs_variant_agrees_on_l2_l3_only() {
    let v = vectors();
    let docs = &v["hash_levels_docs_variant"];
    for level in ["l0", "l1", "l2", "l3"] {
        assert_eq!(
            sha256_hex(str_of(&docs["preimages"], level).as_bytes()),
            str_of(&docs["hashes"], level)
        );
    }
    // The same effect as a record body (as in `effect_hash_levels`): the SDK
    // formula puts `domain` into L1 and into L0's params.
    let body = serde_json::json!({"operation":"db.query","input_shape":"ONE",
        "output_shape":"MANY","domain":"data","table":"users","limit":100});
    let sdk = syncropel_protocol::hash_levels("GET", body.as_object().unwrap());
    assert_eq!(sdk.l2, str_of(&docs["hashes"], "l2"));
    assert_eq!(sdk.l3, str_of(&docs["hashes"], "l3"));
    assert_ne!(sdk.l1, str_of(&docs["hashes"], "l1"));
    assert_ne!(sdk.l0, str_of(&docs["hashes"], "l0"));
}

#[test]
fn sorted_parents_vector() {
    let r = record("parents_multiple_unsorted");
    let env = parse_input(&r);
    let sorted: Vec<String> = serde_json::from_value(r["sorted_parents"].clone()).unwrap();
    assert_eq!(env.parents, sorted);
    assert_ne!(
        env.id(),
        str_of(&r, "WRONG_record_id_7_if_parents_left_unsorted")
    );
}

#[test]
fn sdk_emit_crosscheck() {
    let v = vectors();
    let cross = &v["sdk_emit_crosscheck"];
    let bytes = serde_json::to_vec(&cross["envelope_sent"]).unwrap();
    let env = Envelope::parse(&bytes, DEFAULT_MAX_DEPTH).unwrap();
    assert_eq!(
        env.id(),
        str_of(
            cross,
            "record_id_returned_by_Client_emit_sync_against_MockKernel"
        )
    );
    assert_eq!(env.kind(), Some("music.catalog.track"));
}

#[test]
fn kind_grammar() {
    let v = vectors();
    let cases = v["kind_grammar"].as_array().unwrap();
    assert!(cases.len() >= 18);
    for case in cases {
        let kind = str_of(case, "kind");
        let valid = case["valid"].as_bool().unwrap();
        assert_eq!(validate_kind(kind).is_ok(), valid, "{kind:?}");
    }
}

#[test]
fn signing_vector() {
    let v = vectors();
    let s = &v["signing"];
    let seed: [u8; 32] = hex::decode(str_of(s, "seed_hex"))
        .unwrap()
        .try_into()
        .unwrap();
    let key = Keypair::from_seed(&seed);
    assert_eq!(key.seed(), seed);
    assert_eq!(hex::encode(key.public_key()), str_of(s, "public_key_hex"));
    assert_eq!(key.did_key(), str_of(s, "did_key"));

    let env = parse_input(&record(str_of(s, "signed_record")));
    let message = env.canonical_json();
    assert_eq!(message, str_of(s, "message_utf8"));
    assert_eq!(hex::encode(message.as_bytes()), str_of(s, "message_hex"));
    assert_eq!(env.id(), str_of(s, "signed_record_id_7"));

    let sig = key.sign_hex(message.as_bytes());
    assert_eq!(sig, str_of(s, "signature_hex"));
    let did = str_of(s, "did_key");
    verify_signature(did, message.as_bytes(), &sig).unwrap();
    verify_signature(did, message.as_bytes(), str_of(s, "signature_base64")).unwrap();
    verify_signature(did, message.as_bytes(), &sig.to_uppercase()).unwrap();
    assert!(verify_signature(did, b"other", &sig).is_err());

    let prefixed = hex::decode(str_of(s, "multicodec_prefixed_public_key_hex")).unwrap();
    assert_eq!(&prefixed[..2], &[0xed, 0x01]);
    assert_eq!(&prefixed[2..], &key.public_key());
}

#[test]
fn w3c_did_key_example() {
    let v = vectors();
    let ex = &v["signing"]["did_key_spec_example"];
    let pk: [u8; 32] = bs58::decode(str_of(ex, "public_key_base58btc"))
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(hex::encode(pk), str_of(ex, "public_key_hex"));
    assert_eq!(did_key_from_public(&pk), str_of(ex, "did_key"));
    assert_eq!(
        did_key_from_public(&pk),
        "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"
    );
    assert_eq!(public_key_from_did_key(str_of(ex, "did_key")).unwrap(), pk);
}
