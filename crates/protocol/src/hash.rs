//! Record ids (protocol.md §6) and the SDK's hash levels L0–L3 (§7).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{write_object, write_str, write_value};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Record id: SHA-256 of the UTF-8 of the 7-field canonical JSON
/// (see [`crate::Envelope::canonical_json`]).
pub fn record_id(canonical_json: &str) -> String {
    sha256_hex(canonical_json.as_bytes())
}

/// The four hash-level digests of a record (hex SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashLevels {
    pub l0: String,
    pub l1: String,
    pub l2: String,
    pub l3: String,
}

/// The canonical JSON each hash level digests, exposed for diagnostics and
/// for checking against the vectors' `hash_level_preimages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashLevelPreimages {
    pub l0: String,
    pub l1: String,
    pub l2: String,
    pub l3: String,
}

impl HashLevelPreimages {
    /// Hashes each preimage.
    pub fn digest(&self) -> HashLevels {
        HashLevels {
            l0: sha256_hex(self.l0.as_bytes()),
            l1: sha256_hex(self.l1.as_bytes()),
            l2: sha256_hex(self.l2.as_bytes()),
            l3: sha256_hex(self.l3.as_bytes()),
        }
    }
}

/// Hash levels by the SDK's record formula (protocol.md §7), which this server follows
/// over the docs' effect variant (protocol.md §15 #9). `body` must be canonical.
pub fn hash_levels(act: &str, body: &Map<String, Value>) -> HashLevels {
    hash_level_preimages(act, body).digest()
}

/// Members that describe the effect's shape rather than its parameters.
const SHAPE_KEYS: &[&str] = &["operation", "input_shape", "output_shape"];

/// Builds the four preimages of protocol.md §7. Member values are used verbatim (the SDK
/// does `body.get(...)`), so a non-string `domain` hashes as that JSON value.
pub fn hash_level_preimages(act: &str, body: &Map<String, Value>) -> HashLevelPreimages {
    let void = Value::String("VOID".to_owned());
    let domain = body
        .get("domain")
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    let op = body
        .get("operation")
        .cloned()
        .unwrap_or_else(|| Value::String(act.to_lowercase()));
    let input = body.get("input_shape").unwrap_or(&void);
    let output = body.get("output_shape").unwrap_or(&void);

    // Keys in code-point order: d < in < op < out < p < params.
    let field = |out: &mut String, key: &str, value: &Value| {
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    };
    let act_value = Value::String(act.to_owned());

    let mut l3 = String::from("{");
    field(&mut l3, "in", input);
    l3.push(',');
    field(&mut l3, "out", output);

    let mut l2 = l3.clone();
    l2.push(',');
    field(&mut l2, "p", &act_value);

    let mut l1 = String::from("{");
    field(&mut l1, "d", &domain);
    l1.push(',');
    field(&mut l1, "in", input);
    l1.push(',');
    field(&mut l1, "op", &op);
    l1.push(',');
    field(&mut l1, "out", output);
    l1.push(',');
    field(&mut l1, "p", &act_value);

    let mut l0 = String::from("{");
    field(&mut l0, "in", input);
    l0.push(',');
    field(&mut l0, "op", &op);
    l0.push(',');
    field(&mut l0, "out", output);
    l0.push(',');
    field(&mut l0, "p", &act_value);
    l0.push_str(",\"params\":");
    write_object(&mut l0, body, SHAPE_KEYS);

    for s in [&mut l0, &mut l1, &mut l2, &mut l3] {
        s.push('}');
    }
    HashLevelPreimages { l0, l1, l2, l3 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_defaults() {
        let p = hash_level_preimages("INTEND", &Map::new());
        assert_eq!(p.l3, r#"{"in":"VOID","out":"VOID"}"#);
        assert_eq!(p.l2, r#"{"in":"VOID","out":"VOID","p":"INTEND"}"#);
        assert_eq!(
            p.l1,
            r#"{"d":"","in":"VOID","op":"intend","out":"VOID","p":"INTEND"}"#
        );
        assert_eq!(
            p.l0,
            r#"{"in":"VOID","op":"intend","out":"VOID","p":"INTEND","params":{}}"#
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
