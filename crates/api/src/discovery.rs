//! Discovery on a local steward: the mDNS roster and transitive introductions. Discovery only
//! lists candidates; it never pairs.

use serde::{Deserialize, Serialize};

/// `GET /v1/discovery/mdns`: the stewards heard on the LAN, unverified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "mdns_roster", default)]
pub struct MdnsRoster {
    pub peers: Vec<MdnsPeer>,
}

/// One steward seen on the LAN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MdnsPeer {
    /// The DID it announced.
    pub did: String,
    pub endpoint: String,
    pub namespace: Option<String>,
    pub handle: Option<String>,
    pub capabilities: Vec<String>,
    /// RFC 3339.
    pub last_seen: String,
    /// Always false: an announcement is no proof of the DID.
    pub manifest_verified: bool,
    /// The manifest fingerprint it announced, to compare once the manifest is fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_fingerprint: Option<String>,
}

/// `GET /v1/federation/peers` (asked by a paired peer with its pair token) and
/// `GET /v1/federation/introductions?via=<did>` (the operator asks a paired peer through us).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "introductions", default)]
pub struct Introductions {
    /// The DID of the steward making the introductions.
    pub introduced_by: String,
    pub peers: Vec<IntroducedPeer>,
}

/// A peer the introducer's operator agreed to introduce.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntroducedPeer {
    pub did: String,
    pub url: Option<String>,
    pub handles: Vec<String>,
    pub manifest_sha256: Option<String>,
    /// RFC 3339: the last successful pull from it.
    pub last_contact_at: Option<String>,
}

/// `POST /v1/federation/pairs/{id}/introducible`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetIntroducible {
    pub introducible: bool,
}

/// Whether a pair's peer may be introduced to our other peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_introducible", default)]
pub struct PairIntroducible {
    pub pair_id: String,
    pub peer_did: String,
    pub introducible: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rosters_and_introductions_write_what_the_steward_sends() {
        let roster = MdnsRoster {
            peers: vec![MdnsPeer {
                did: "did:key:z6Mk1".into(),
                endpoint: "http://10.0.0.2:9100".into(),
                capabilities: vec!["sync".into()],
                last_seen: "2026-12-01T00:00:00Z".into(),
                ..MdnsPeer::default()
            }],
        };
        assert_eq!(
            serde_json::to_value(&roster).unwrap(),
            json!({"object": "mdns_roster", "peers": [{"did": "did:key:z6Mk1",
                   "endpoint": "http://10.0.0.2:9100", "namespace": null, "handle": null,
                   "capabilities": ["sync"], "last_seen": "2026-12-01T00:00:00Z",
                   "manifest_verified": false}]})
        );
        let introductions = Introductions {
            introduced_by: "did:key:z6MkA".into(),
            peers: vec![IntroducedPeer {
                did: "did:key:z6MkB".into(),
                url: Some("https://b.example".into()),
                ..IntroducedPeer::default()
            }],
        };
        assert_eq!(
            serde_json::to_value(&introductions).unwrap(),
            json!({"object": "introductions", "introduced_by": "did:key:z6MkA",
                   "peers": [{"did": "did:key:z6MkB", "url": "https://b.example", "handles": [],
                              "manifest_sha256": null, "last_contact_at": null}]})
        );
    }
}
