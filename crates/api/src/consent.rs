//! Consent between namespaces (federation-protocol.md §6): `POST|GET /v1/consent/grants` (grants,
//! public grants and L0 acceptances), `DELETE /v1/consent/grants/{id}?reason=`, and a pair's:
//! `POST /v1/federation/pairs/{id}/grants`, `DELETE /v1/federation/pairs/{id}/grants/{grant_id}`.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use syncropel_protocol::consent::{Acceptance, Grant, HashLevel, CONSENT_KIND};

/// `POST /v1/consent/grants`: let records of `source_namespace` (default `default`) reach a peer's
/// `target_namespace`, at `hash_levels` (default all; without `L0` only redacted stubs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    pub target_namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_levels: Option<Vec<HashLevel>>,
    /// Only this peer; absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_did: Option<String>,
    /// Absent: every thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<GrantThreads>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /v1/consent/grants {"public": true, …}`: share one thread with anyone who pulls it, into
/// any namespace, at `granted_level` (`L0` full records, `L2` stubs), for at most 7 days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicGrant {
    /// Always `true`.
    pub public: bool,
    pub thread: String,
    pub granted_level: HashLevel,
    /// RFC 3339, within 7 days; absent: 7 days from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// `POST /v1/consent/grants {"op": "accept", …}`: this steward, as a puller, accepts full (L0)
/// records of `source_namespace` at the steward `peer_did` into its `target_namespace`
/// (federation-protocol.md §6.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptL0 {
    /// Always `accept`.
    pub op: String,
    pub peer_did: String,
    pub source_namespace: String,
    pub target_namespace: String,
    /// RFC 3339; absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /v1/federation/pairs/{id}/grants`: let records of `namespace` reach each of `maps` at
/// the pair's peer (default: the same name), at `hash_levels` (default `L1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairGrant {
    pub namespace: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_levels: Option<Vec<HashLevel>>,
}

/// A grant in force (its record's body) and whether it is still active (not expired).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "consent_grant", default)]
pub struct ConsentGrant {
    /// `core.consent.v1`.
    pub kind: String,
    /// `grant`.
    pub op: String,
    pub grant_id: String,
    pub source_namespace: String,
    pub target_namespace: String,
    pub hash_levels: Vec<HashLevel>,
    pub peer_did: Option<String>,
    pub threads: GrantThreads,
    pub purpose: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub granted_by: Option<String>,
    /// A public grant (its namespaces are `*`), with the `thread` and `granted_level` asked for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_level: Option<HashLevel>,
    /// Who recorded an acceptance (`op: "accept"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    pub active: bool,
}

impl ConsentGrant {
    /// `grant` as its record states it, with whether it is active now.
    pub fn new(grant: &Grant, active: bool) -> ConsentGrant {
        ConsentGrant {
            kind: CONSENT_KIND.to_owned(),
            op: "grant".to_owned(),
            grant_id: grant.grant_id.clone(),
            source_namespace: grant.source_namespace.clone(),
            target_namespace: grant.target_namespace.clone(),
            hash_levels: grant.hash_levels.clone(),
            peer_did: grant.peer_did.clone(),
            threads: match &grant.threads {
                Some(threads) => GrantThreads::Only(threads.clone()),
                None => GrantThreads::All,
            },
            purpose: grant.purpose.clone(),
            expires_at: grant.expires_at.map(syncropel_protocol::rfc3339_from_unix),
            granted_by: grant.granted_by.clone(),
            public: grant.public,
            thread: grant
                .threads
                .as_ref()
                .and_then(|t| t.first().cloned())
                .filter(|_| grant.public),
            granted_level: grant.hash_levels.first().copied().filter(|_| grant.public),
            accepted_by: None,
            active,
        }
    }

    /// An L0 acceptance as its record states it (every thread), with whether it is in force now.
    pub fn accepted(acceptance: &Acceptance, active: bool) -> ConsentGrant {
        ConsentGrant {
            kind: CONSENT_KIND.to_owned(),
            op: "accept".to_owned(),
            grant_id: acceptance.grant_id.clone(),
            source_namespace: acceptance.source_namespace.clone(),
            target_namespace: acceptance.target_namespace.clone(),
            hash_levels: vec![HashLevel::L0],
            peer_did: Some(acceptance.peer_did.clone()),
            threads: GrantThreads::All,
            purpose: None,
            expires_at: acceptance
                .expires_at
                .map(syncropel_protocol::rfc3339_from_unix),
            granted_by: None,
            public: false,
            thread: None,
            granted_level: None,
            accepted_by: acceptance.accepted_by.clone(),
            active,
        }
    }
}

/// The threads a grant opens: every one (`"*"`) or the ones listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GrantThreads {
    #[default]
    All,
    Only(Vec<String>),
}

impl Serialize for GrantThreads {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GrantThreads::All => serializer.serialize_str("*"),
            GrantThreads::Only(threads) => threads.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GrantThreads {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GrantThreads, D::Error> {
        struct ThreadsVisitor;

        impl<'de> Visitor<'de> for ThreadsVisitor {
            type Value = GrantThreads;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" or a list of thread ids")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<GrantThreads, E> {
                match text {
                    "*" => Ok(GrantThreads::All),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_unit<E: de::Error>(self) -> Result<GrantThreads, E> {
                Ok(GrantThreads::All)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GrantThreads, A::Error> {
                let mut threads = Vec::new();
                while let Some(thread) = seq.next_element()? {
                    threads.push(thread);
                }
                Ok(GrantThreads::Only(threads))
            }
        }

        deserializer.deserialize_any(ThreadsVisitor)
    }
}

/// The answer to `DELETE /v1/consent/grants/{id}`: revoked from the next pull on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "consent_grant", default)]
pub struct GrantRevoked {
    pub grant_id: String,
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use syncropel_protocol::consent::grant_body;

    fn grant(threads: Option<Vec<String>>) -> Grant {
        Grant {
            grant_id: "cg_1".into(),
            source_namespace: "research".into(),
            target_namespace: "my-team".into(),
            hash_levels: vec![HashLevel::L1, HashLevel::L2],
            peer_did: None,
            threads,
            purpose: Some("weekly".into()),
            expires_at: Some(1_800_000_000),
            granted_by: Some("sa_1".into()),
            public: false,
        }
    }

    #[test]
    fn a_grant_writes_its_record_body_the_tag_and_whether_it_is_active() {
        for threads in [None, Some(vec!["th_a".to_owned()])] {
            let grant = grant(threads);
            let mut expected = Value::Object(grant_body(&grant));
            expected["object"] = json!("consent_grant");
            expected["active"] = json!(true);
            let typed = ConsentGrant::new(&grant, true);
            assert_eq!(serde_json::to_value(&typed).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<ConsentGrant>(expected).unwrap(),
                typed
            );
        }
    }

    #[test]
    fn a_public_grant_reads_as_its_record_body_too() {
        let mut grant = grant(Some(vec!["th_a".to_owned()]));
        grant.public = true;
        grant.source_namespace = "*".into();
        grant.target_namespace = "*".into();
        grant.hash_levels = vec![HashLevel::L2];
        let mut expected = Value::Object(grant_body(&grant));
        expected["object"] = json!("consent_grant");
        expected["active"] = json!(false);
        assert_eq!(
            serde_json::to_value(ConsentGrant::new(&grant, false)).unwrap(),
            expected
        );
        let request = PublicGrant {
            public: true,
            thread: "th_a".into(),
            granted_level: HashLevel::L2,
            expires_at: None,
            purpose: None,
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"public": true, "thread": "th_a", "granted_level": "L2"})
        );
    }

    #[test]
    fn requests_leave_out_what_is_not_given() {
        let request = CreateGrant {
            source_namespace: Some("default".into()),
            target_namespace: "my-team".into(),
            hash_levels: Some(HashLevel::ALL.to_vec()),
            ..CreateGrant::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"source_namespace": "default", "target_namespace": "my-team",
                   "hash_levels": ["L0", "L1", "L2", "L3"]})
        );
        let threads: GrantThreads = serde_json::from_value(json!(null)).unwrap();
        assert_eq!(threads, GrantThreads::All);
        assert!(serde_json::from_value::<GrantThreads>(json!("some")).is_err());
    }
}
