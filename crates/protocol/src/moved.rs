//! The notice a steward's new home signs when the identity moves (federation-protocol.md §8.5):
//! the old home takes it as its fence and hands it to every peer that calls afterwards, in its
//! `410 INSTANCE_MOVED`, so that peers follow the DID to its new URL without trusting the old
//! home's word for it.

use serde_json::{json, Map, Value};

use crate::keys::Keypair;
use crate::signed::{sign_object, verify_object};
use crate::timestamp::{rfc3339_from_unix, unix_from_rfc3339};

pub const MOVED_OBJECT: &str = "instance_moved";

/// A notice whose signature holds; whether `signer` is a key of `did` is the caller's check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedNotice {
    pub did: String,
    pub moved_to: String,
    /// Unix seconds when it was signed.
    pub at: i64,
    /// The did:key that signed it.
    pub signer: String,
}

/// `{"object":"instance_moved","did","moved_to","at","sig"}`, signed with `key`.
pub fn sign_moved(did: &str, moved_to: &str, at: i64, key: &Keypair) -> Value {
    let mut object = Map::new();
    object.insert("object".into(), json!(MOVED_OBJECT));
    object.insert("did".into(), json!(did));
    object.insert("moved_to".into(), json!(moved_to.trim_end_matches('/')));
    object.insert("at".into(), json!(rfc3339_from_unix(at)));
    sign_object(&mut object, key);
    Value::Object(object)
}

/// Checks a notice's shape and signature; the error says what is wrong with it.
pub fn check_moved(notice: &Value) -> Result<MovedNotice, String> {
    let object = notice
        .as_object()
        .ok_or("the notice is not a JSON object")?;
    if object.get("object").and_then(Value::as_str) != Some(MOVED_OBJECT) {
        return Err(format!("the notice's `object` is not \"{MOVED_OBJECT}\""));
    }
    let text = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the notice has no `{field}`"))
    };
    let did = text("did")?.to_string();
    let moved_to = text("moved_to")?.to_string();
    let at = unix_from_rfc3339(text("at")?).ok_or("the notice's `at` is not RFC 3339")?;
    let url = url_ok(&moved_to);
    if !url {
        return Err("`moved_to` is not an http(s) URL".into());
    }
    let signer = verify_object(object).map_err(|e| format!("the notice's signature: {e}"))?;
    Ok(MovedNotice {
        did,
        moved_to,
        at,
        signer,
    })
}

fn url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty() && rest.len() < 2048 && !rest.chars().any(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_notice_checks_and_an_edited_one_does_not() {
        let key = Keypair::generate();
        let did = key.did_key();
        let notice = sign_moved(&did, "https://new.example/", 1_700_000_000, &key);
        let checked = check_moved(&notice).unwrap();
        assert_eq!(checked.did, did);
        assert_eq!(checked.moved_to, "https://new.example");
        assert_eq!(checked.at, 1_700_000_000);
        assert_eq!(checked.signer, did);

        let mut edited = notice.clone();
        edited["moved_to"] = json!("https://elsewhere.example");
        assert!(check_moved(&edited).unwrap_err().contains("signature"));
        let mut unsigned = notice;
        unsigned.as_object_mut().unwrap().remove("sig");
        assert!(check_moved(&unsigned).is_err());
        let bad = sign_moved(&did, "ftp://x", 1, &key);
        assert!(check_moved(&bad).unwrap_err().contains("http"));
    }
}
