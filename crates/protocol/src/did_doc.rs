//! DID documents (federation-protocol.md §1.3–1.5): building the document a steward serves for its
//! did:web, strictly parsing a fetched one, and mapping a did:web to its HTTPS URL.
//!
//! Pure data. A did:sync directory serves documents of the same shape, but resolvers replay
//! the did:sync operation log instead of trusting them (see [`crate::did_sync`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use crate::error::ProtocolError;
use crate::keys::public_key_from_did_key;

/// The only verification-method type whose keys are collected.
pub const ED25519_2020: &str = "Ed25519VerificationKey2020";
/// The `service` type naming a steward endpoint.
pub const SYNCROPEL_SERVICE: &str = "syncropel";

const DID_WEB_PREFIX: &str = "did:web:";
const CONTEXTS: [&str; 2] = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2020/v1",
];

/// One Ed25519 key found in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocKey {
    /// Fragment of the method id, without `#` (`key-2`).
    pub fragment: String,
    /// The key as `did:key:z6Mk…`, the form signatures are checked with.
    pub did_key: String,
    /// Named by `assertionMethod`, i.e. in force for new records.
    pub current: bool,
}

/// What a resolver needs from a DID document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedDocument {
    pub did: String,
    /// Every usable Ed25519 key, in document order (current and retired).
    pub keys: Vec<DocKey>,
    /// `serviceEndpoint` of the `syncropel` service.
    pub endpoint: Option<String>,
    pub also_known_as: Vec<String>,
    /// `serviceEndpoint`s of the `syncropel-relay` services, in document order: where the
    /// steward deposits for peers that cannot reach it (federation-protocol.md §7.2).
    pub relays: Vec<String>,
}

/// The `service` type naming one of a steward's relays.
pub const RELAY_SERVICE: &str = "syncropel-relay";

/// Adds a `syncropel-relay` service per relay, in order (`<did>#relay-1`, …), to a document
/// built by [`did_web_document`].
pub fn add_relay_services(doc: &mut Value, did: &str, relays: &[String]) {
    if relays.is_empty() {
        return;
    }
    let Some(doc) = doc.as_object_mut() else {
        return;
    };
    let services = doc
        .entry("service")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(services) = services {
        for (n, relay) in relays.iter().enumerate() {
            services.push(json!({
                "id": format!("{did}#relay-{}", n + 1),
                "type": RELAY_SERVICE,
                "serviceEndpoint": relay,
            }));
        }
    }
}

/// The document a steward serves for `did` (its did:web, or a hosted tenant's secondary
/// did:web). `keys` are `(fragment, multibase)` pairs, current first, retired after, so
/// old records keep verifying; `current` names the fragments in force.
pub fn did_web_document(
    did: &str,
    keys: &[(String, String)],
    current: &[String],
    endpoint: Option<&str>,
    also_known_as: &[String],
) -> Value {
    let method_id = |fragment: &str| format!("{did}#{fragment}");
    let methods: Vec<Value> = keys
        .iter()
        .map(|(fragment, multibase)| {
            json!({
                "id": method_id(fragment),
                "type": ED25519_2020,
                "controller": did,
                "publicKeyMultibase": multibase,
            })
        })
        .collect();
    let in_force: Vec<String> = current.iter().map(|f| method_id(f)).collect();
    let mut doc = Map::new();
    doc.insert("@context".into(), json!(CONTEXTS));
    doc.insert("id".into(), json!(did));
    if !also_known_as.is_empty() {
        doc.insert("alsoKnownAs".into(), json!(also_known_as));
    }
    doc.insert("verificationMethod".into(), Value::Array(methods));
    doc.insert("authentication".into(), json!(in_force));
    doc.insert("assertionMethod".into(), json!(in_force));
    if let Some(endpoint) = endpoint {
        doc.insert(
            "service".into(),
            json!([{
                "id": method_id(SYNCROPEL_SERVICE),
                "type": SYNCROPEL_SERVICE,
                "serviceEndpoint": endpoint,
            }]),
        );
    }
    Value::Object(doc)
}

/// Parses a fetched document for `expected_did`. Refuses a document for another DID, a
/// malformed member, an Ed25519 method that is not a valid key or is controlled by someone
/// else, duplicate key fragments, an `assertionMethod` naming no method of the document,
/// and two `syncropel` services. Methods of other types are ignored.
pub fn parse_document(expected_did: &str, doc: &Value) -> Result<ParsedDocument, ProtocolError> {
    let bad = |field, reason: String| Err(ProtocolError::validation(field, reason));
    let Some(doc) = doc.as_object() else {
        return bad("document", "must be a JSON object".into());
    };
    match doc.get("id").and_then(Value::as_str) {
        Some(id) if id == expected_did => {}
        Some(id) => return bad("id", format!("document is for {id}, not {expected_did}")),
        None => return bad("id", "must be a string".into()),
    }

    let mut keys: Vec<DocKey> = Vec::new();
    let mut method_fragments = Vec::new();
    for method in array(doc, "verificationMethod")? {
        let Some(method) = method.as_object() else {
            return bad("verificationMethod", "entries must be objects".into());
        };
        let field = |name: &str| method.get(name).and_then(Value::as_str);
        let fragment = field("id")
            .and_then(|id| own_fragment(expected_did, id))
            .ok_or_else(|| {
                ProtocolError::validation("verificationMethod", "id must be <did>#<fragment>")
            })?;
        if method_fragments.contains(&fragment) {
            return bad("verificationMethod", format!("#{fragment} appears twice"));
        }
        method_fragments.push(fragment);
        if field("type") != Some(ED25519_2020) {
            continue;
        }
        if field("controller") != Some(expected_did) {
            return bad(
                "verificationMethod",
                format!("#{fragment} is not controlled by {expected_did}"),
            );
        }
        let multibase = field("publicKeyMultibase").ok_or_else(|| {
            ProtocolError::validation("verificationMethod", "publicKeyMultibase is required")
        })?;
        let did_key = format!("did:key:{multibase}");
        public_key_from_did_key(&did_key).map_err(|e| {
            ProtocolError::validation("verificationMethod", format!("#{fragment}: {e}"))
        })?;
        keys.push(DocKey {
            fragment: fragment.to_owned(),
            did_key,
            current: false,
        });
    }

    for reference in array(doc, "assertionMethod")? {
        let fragment = reference
            .as_str()
            .and_then(|r| own_fragment(expected_did, r))
            .ok_or_else(|| {
                ProtocolError::validation(
                    "assertionMethod",
                    "entries must be #<fragment> or <did>#<fragment>",
                )
            })?;
        if !method_fragments.contains(&fragment) {
            return bad("assertionMethod", format!("#{fragment} is not a method"));
        }
        // A reference to a method of another type names no key we can use.
        if let Some(key) = keys.iter_mut().find(|k| k.fragment == fragment) {
            key.current = true;
        }
    }

    let mut endpoint = None;
    let mut relays = Vec::new();
    for service in array(doc, "service")? {
        let Some(service) = service.as_object() else {
            return bad("service", "entries must be objects".into());
        };
        if service.get("type").and_then(Value::as_str) == Some(RELAY_SERVICE) {
            // A relay is only ever asked for what a source signed: a strange entry is skipped.
            if let Some(url) = service.get("serviceEndpoint").and_then(Value::as_str) {
                relays.push(url.to_owned());
            }
            continue;
        }
        if service.get("type").and_then(Value::as_str) != Some(SYNCROPEL_SERVICE) {
            continue;
        }
        let Some(url) = service.get("serviceEndpoint").and_then(Value::as_str) else {
            return bad(
                "service",
                "syncropel serviceEndpoint must be a string".into(),
            );
        };
        if endpoint.replace(url.to_owned()).is_some() {
            return bad("service", "more than one syncropel service".into());
        }
    }

    let also_known_as = array(doc, "alsoKnownAs")?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ProtocolError::validation("alsoKnownAs", "entries must be strings"))?;

    Ok(ParsedDocument {
        did: expected_did.to_owned(),
        keys,
        endpoint,
        also_known_as,
        relays,
    })
}

/// The array member `name` (absent = empty).
fn array<'a>(
    doc: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a [Value], ProtocolError> {
    match doc.get(name) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ProtocolError::validation(name, "must be an array")),
    }
}

/// The fragment of `#frag` or `<did>#frag`; `None` for another DID or an empty fragment.
fn own_fragment<'a>(did: &str, reference: &'a str) -> Option<&'a str> {
    let (base, fragment) = reference.split_once('#')?;
    (!fragment.is_empty() && (base.is_empty() || base == did)).then_some(fragment)
}

/// The URL a did:web document is fetched from: `did:web:alice.dev` →
/// `https://alice.dev/.well-known/did.json`, `did:web:example.com:teams:alice` →
/// `https://example.com/teams/alice/did.json`. A port is written `%3A`. Loopback hosts use
/// `http://` (dev peers only). The host is lowercased; empty segments, `.`/`..`, and
/// segments with characters outside `A-Z a-z 0-9 - . _ ~` after decoding are refused.
pub fn did_web_url(did: &str) -> Result<String, ProtocolError> {
    let bad = |reason: &str| ProtocolError::validation("did", format!("{did:?}: {reason}"));
    let rest = did
        .strip_prefix(DID_WEB_PREFIX)
        .ok_or_else(|| bad("not a did:web"))?;
    let mut segments = rest.split(':');
    let host_segment = segments.next().unwrap_or_default();
    let authority = percent_decode(host_segment)
        .ok_or_else(|| bad("bad percent-encoding in the host"))?
        .to_ascii_lowercase();
    let loopback = parse_authority(&authority).ok_or_else(|| bad("not a host[:port]"))?;

    let mut path = String::new();
    for segment in segments {
        let decoded = percent_decode(segment).ok_or_else(|| bad("bad percent-encoding"))?;
        if decoded.is_empty() || decoded == "." || decoded == ".." {
            return Err(bad("empty, . or .. path segment"));
        }
        if !decoded.bytes().all(is_unreserved) {
            return Err(bad("path segments are A-Z a-z 0-9 - . _ ~"));
        }
        path.push('/');
        path.push_str(&decoded);
    }
    let scheme = if loopback { "http" } else { "https" };
    let file = if path.is_empty() {
        "/.well-known/did.json"
    } else {
        "/did.json"
    };
    Ok(format!("{scheme}://{authority}{path}{file}"))
}

/// The did:web of a host (`alice.dev`, `127.0.0.1:9100`, `[::1]:9100`) and optional path
/// (`teams/alice`): the inverse of [`did_web_url`], percent-encoding the port colon.
pub fn did_web_for(host_with_port: &str, path: Option<&str>) -> String {
    let mut did = String::from(DID_WEB_PREFIX);
    percent_encode_into(&mut did, &host_with_port.to_ascii_lowercase());
    for segment in path
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
    {
        did.push(':');
        percent_encode_into(&mut did, segment);
    }
    did
}

/// Checks `host[:port]` (a DNS name, IPv4 or bracketed IPv6) and says whether it is loopback.
fn parse_authority(authority: &str) -> Option<bool> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (ip, after) = inner.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        return valid_port(port).then_some(ip.is_loopback());
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) || !valid_port(port) {
        return None;
    }
    let loopback = host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    Some(loopback)
}

fn valid_port(port: Option<&str>) -> bool {
    // `parse` alone would accept a leading `+`.
    port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    })
}

/// RFC 3986 unreserved characters: the only ones a path segment may decode to.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` escapes; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Appends `text`, percent-encoding everything but the DID `idchar`s (`A-Z a-z 0-9 . - _`).
fn percent_encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::keys::Keypair;

    const DID: &str = "did:web:alice.dev";

    fn multibase(seed: u8) -> String {
        let did = Keypair::from_seed(&[seed; 32]).did_key();
        did.strip_prefix("did:key:").unwrap().to_owned()
    }

    fn two_key_document() -> Value {
        did_web_document(
            DID,
            &[
                ("key-2".into(), multibase(2)),
                ("key-1".into(), multibase(1)),
            ],
            &["key-2".into()],
            Some("https://spl.alice.dev"),
            &["did:sync:abcdefghijklmnopqrstuvwx".into()],
        )
    }

    fn refused(doc: &Value) -> String {
        let err = parse_document(DID, doc).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
        err.to_string()
    }

    #[test]
    fn document_has_the_spec_shape() {
        let doc = two_key_document();
        assert_eq!(
            doc,
            json!({
                "@context": CONTEXTS,
                "id": DID,
                "alsoKnownAs": ["did:sync:abcdefghijklmnopqrstuvwx"],
                "verificationMethod": [
                    {"id": "did:web:alice.dev#key-2", "type": ED25519_2020,
                     "controller": DID, "publicKeyMultibase": multibase(2)},
                    {"id": "did:web:alice.dev#key-1", "type": ED25519_2020,
                     "controller": DID, "publicKeyMultibase": multibase(1)},
                ],
                "authentication": ["did:web:alice.dev#key-2"],
                "assertionMethod": ["did:web:alice.dev#key-2"],
                "service": [{"id": "did:web:alice.dev#syncropel", "type": "syncropel",
                             "serviceEndpoint": "https://spl.alice.dev"}],
            })
        );
        // Optional members are left out rather than written empty.
        let bare = did_web_document(DID, &[("key-1".into(), multibase(1))], &[], None, &[]);
        assert!(bare.get("alsoKnownAs").is_none() && bare.get("service").is_none());
    }

    #[test]
    fn build_then_parse_round_trips() {
        let parsed = parse_document(DID, &two_key_document()).unwrap();
        assert_eq!(
            parsed,
            ParsedDocument {
                did: DID.into(),
                keys: vec![
                    DocKey {
                        fragment: "key-2".into(),
                        did_key: Keypair::from_seed(&[2; 32]).did_key(),
                        current: true,
                    },
                    DocKey {
                        fragment: "key-1".into(),
                        did_key: Keypair::from_seed(&[1; 32]).did_key(),
                        current: false,
                    },
                ],
                endpoint: Some("https://spl.alice.dev".into()),
                also_known_as: vec!["did:sync:abcdefghijklmnopqrstuvwx".into()],
                relays: Vec::new(),
            }
        );
    }

    #[test]
    fn relays_are_services_of_their_own_read_back_in_order() {
        let mut doc = two_key_document();
        let relays = vec![
            "https://r1.example".to_string(),
            "https://r2.example".into(),
        ];
        add_relay_services(&mut doc, DID, &relays);
        assert_eq!(doc["service"][1]["id"], "did:web:alice.dev#relay-1");
        assert_eq!(doc["service"][2]["type"], RELAY_SERVICE);
        let parsed = parse_document(DID, &doc).unwrap();
        assert_eq!(parsed.relays, relays);
        // The steward's own endpoint is still the one `syncropel` service.
        assert_eq!(parsed.endpoint.as_deref(), Some("https://spl.alice.dev"));
        let mut bare = did_web_document(DID, &[("key-1".into(), multibase(1))], &[], None, &[]);
        add_relay_services(&mut bare, DID, &[]);
        assert!(bare.get("service").is_none());
    }

    #[test]
    fn relative_and_absolute_references_both_name_keys() {
        let mut doc = two_key_document();
        doc["assertionMethod"] = json!(["#key-1", "did:web:alice.dev#key-2"]);
        let parsed = parse_document(DID, &doc).unwrap();
        assert!(parsed.keys.iter().all(|k| k.current));
        // A relative method id is accepted too.
        doc["verificationMethod"][1]["id"] = json!("#key-1");
        assert_eq!(parse_document(DID, &doc).unwrap().keys.len(), 2);
    }

    #[test]
    fn foreign_document_is_refused() {
        let reason = refused(
            &two_key_document()
                .to_string()
                .replace("alice.dev", "mallory.dev")
                .parse()
                .unwrap(),
        );
        assert!(reason.contains("not did:web:alice.dev"), "{reason}");
        // A key of another DID inside our document is refused as well.
        let mut doc = two_key_document();
        doc["verificationMethod"][0]["id"] = json!("did:web:mallory.dev#key-2");
        refused(&doc);
        let mut doc = two_key_document();
        doc["verificationMethod"][0]["controller"] = json!("did:web:mallory.dev");
        refused(&doc);
        let mut doc = two_key_document();
        doc["assertionMethod"] = json!(["did:web:mallory.dev#key-2"]);
        refused(&doc);
    }

    #[test]
    fn bad_keys_and_members_are_refused() {
        let mut cases = Vec::new();
        for bad_key in [
            "z6MkNotAKey",
            "",
            "zzzz",
            "f00",
            &format!("{}1", multibase(1)),
        ] {
            let mut doc = two_key_document();
            doc["verificationMethod"][0]["publicKeyMultibase"] = json!(bad_key);
            cases.push(doc);
        }
        let mut doc = two_key_document();
        doc["verificationMethod"][0]
            .as_object_mut()
            .unwrap()
            .remove("publicKeyMultibase");
        cases.push(doc);
        let mut doc = two_key_document();
        doc["verificationMethod"][1]["id"] = json!("did:web:alice.dev#key-2");
        cases.push(doc);
        let mut doc = two_key_document();
        doc["assertionMethod"] = json!(["#key-9"]);
        cases.push(doc);
        let mut doc = two_key_document();
        doc["assertionMethod"] = json!([{"id": "#key-1"}]);
        cases.push(doc);
        let mut doc = two_key_document();
        doc["verificationMethod"] = json!({});
        cases.push(doc);
        let mut doc = two_key_document();
        doc["alsoKnownAs"] = json!([1]);
        cases.push(doc);
        let mut doc = two_key_document();
        doc["service"][0]["serviceEndpoint"] = json!({"uri": "x"});
        cases.push(doc);
        let mut doc = two_key_document();
        let service = doc["service"][0].clone();
        doc["service"].as_array_mut().unwrap().push(service);
        cases.push(doc);
        cases.push(json!([DID]));
        cases.push(json!({"id": 5}));
        for doc in &cases {
            refused(doc);
        }
    }

    #[test]
    fn other_method_types_are_ignored() {
        let mut doc = two_key_document();
        doc["verificationMethod"].as_array_mut().unwrap().push(
            json!({"id": "#jwk", "type": "JsonWebKey2020", "controller": DID,
                         "publicKeyJwk": {"kty": "OKP"}}),
        );
        doc["assertionMethod"] = json!(["#key-2", "#jwk"]);
        doc["service"].as_array_mut().unwrap().insert(
            0,
            json!({"id": "#hub", "type": "hub", "serviceEndpoint": "x"}),
        );
        let parsed = parse_document(DID, &doc).unwrap();
        assert_eq!(parsed.keys.len(), 2);
        assert_eq!(parsed.endpoint.as_deref(), Some("https://spl.alice.dev"));
        // Only members are required that are read: a minimal document parses.
        let minimal = parse_document(DID, &json!({"id": DID})).unwrap();
        assert!(minimal.keys.is_empty() && minimal.endpoint.is_none());
    }

    #[test]
    fn did_web_urls() {
        for (did, url) in [
            (
                "did:web:alice.dev",
                "https://alice.dev/.well-known/did.json",
            ),
            (
                "did:web:Alice.DEV",
                "https://alice.dev/.well-known/did.json",
            ),
            (
                "did:web:example.com:teams:alice",
                "https://example.com/teams/alice/did.json",
            ),
            (
                "did:web:host.example%3A8443",
                "https://host.example:8443/.well-known/did.json",
            ),
            (
                "did:web:127.0.0.1%3a9100:t:bob",
                "http://127.0.0.1:9100/t/bob/did.json",
            ),
            (
                "did:web:localhost%3A80",
                "http://localhost:80/.well-known/did.json",
            ),
            (
                "did:web:%5B%3A%3A1%5D%3A9100",
                "http://[::1]:9100/.well-known/did.json",
            ),
            (
                "did:web:%5B2001%3Adb8%3A%3A1%5D",
                "https://[2001:db8::1]/.well-known/did.json",
            ),
        ] {
            assert_eq!(did_web_url(did).unwrap(), url, "{did}");
        }
        for did in [
            "did:web:",
            "did:key:z6Mk",
            "did:web:alice.dev:",
            "did:web:alice.dev::x",
            "did:web::x",
            "did:web:alice.dev:..",
            "did:web:alice.dev:a%2Fb",
            "did:web:alice.dev:a%3Fb",
            "did:web:alice.dev:a%23b",
            "did:web:alice.dev:a@b",
            "did:web:user%40alice.dev",
            "did:web:alice.dev%2Fx",
            "did:web:alice.dev%3A",
            "did:web:alice.dev%3A99999",
            "did:web:alice.dev%3Ax",
            "did:web:alice.dev%3A1%3A2",
            "did:web:alice..dev",
            "did:web:alice.dev%zz",
            "did:web:alice.dev%2",
            "did:web:%5B%3A%3A1",
        ] {
            let err = did_web_url(did).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ValidationError, "{did}");
        }
    }

    #[test]
    fn did_web_for_is_the_inverse() {
        assert_eq!(did_web_for("alice.dev", None), "did:web:alice.dev");
        assert_eq!(
            did_web_for("127.0.0.1:9100", None),
            "did:web:127.0.0.1%3A9100"
        );
        assert_eq!(
            did_web_for("Example.com", Some("/teams/alice/")),
            "did:web:example.com:teams:alice"
        );
        for (host, path, url) in [
            (
                "127.0.0.1:9100",
                None,
                "http://127.0.0.1:9100/.well-known/did.json",
            ),
            ("[::1]:9100", Some("t/a"), "http://[::1]:9100/t/a/did.json"),
            (
                "spl.alice.dev",
                Some("t/alice"),
                "https://spl.alice.dev/t/alice/did.json",
            ),
        ] {
            assert_eq!(did_web_url(&did_web_for(host, path)).unwrap(), url);
        }
    }
}
