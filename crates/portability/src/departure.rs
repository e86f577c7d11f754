//! A tenant's place in a move (federation-protocol.md §8.5), kept as a state document of its
//! store so that every replica, and a restarted steward, answers the same: `leaving` once it
//! was exported to move, `moved` once its new home fenced it.

use serde_json::{json, Value};
use syncropel_protocol::moved::{check_moved, MovedNotice};
use syncropel_store::{RecordStore, StateChange};
use syncropel_tenant::{Departure, Identity};

use crate::{PortabilityError, Result};

/// The state document (kind, key) a departure is kept in.
pub const KIND: &str = "portability";
pub const KEY: &str = "departure";

/// How far a fence notice's time may be from ours: a notice is signed just before it is sent.
pub const FENCE_SKEW_SECS: i64 = 600;

/// The departure stored for `tenant` (staying when none is).
pub async fn load(store: &dyn RecordStore, tenant: &str) -> Result<Departure> {
    match store.state_get(tenant, KIND, KEY).await? {
        Some(text) => parse(&text),
        None => Ok(Departure::Staying),
    }
}

/// A stored departure document.
pub fn parse(text: &str) -> Result<Departure> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        PortabilityError::Store(syncropel_store::StoreError::Corrupt(format!(
            "the departure document: {e}"
        )))
    })?;
    Ok(match value["state"].as_str() {
        Some("leaving") => Departure::Leaving,
        Some("moved") => Departure::Moved {
            moved_to: value["moved_to"].as_str().unwrap_or_default().to_string(),
            notice: value["notice"].clone(),
        },
        _ => Departure::Staying,
    })
}

/// The state change that stores `departure`.
pub fn save(departure: &Departure) -> StateChange {
    let value = match departure {
        Departure::Staying => return StateChange::delete(KIND, KEY),
        Departure::Leaving => json!({"state": "leaving"}),
        Departure::Moved { moved_to, notice } => {
            json!({"state": "moved", "moved_to": moved_to, "notice": notice})
        }
    };
    StateChange::put(KIND, KEY, value.to_string())
}

/// Checks a fence: a notice for this tenant's DID, signed by one of its keys, signed within
/// [`FENCE_SKEW_SECS`] of `now`.
pub fn check_fence(
    identity: &Identity,
    notice: &Value,
    now: i64,
) -> std::result::Result<MovedNotice, String> {
    let checked = check_moved(notice)?;
    if checked.did != *identity.did {
        return Err(format!(
            "the notice is for {}, this steward is {}",
            checked.did, identity.did
        ));
    }
    if !identity.keys.contains(&checked.signer) {
        return Err(format!(
            "{} is not a key of {}",
            checked.signer, identity.did
        ));
    }
    if (checked.at - now).abs() > FENCE_SKEW_SECS {
        return Err(format!(
            "the notice was signed {}s from now; at most {FENCE_SKEW_SECS}s is accepted \
             (check the clocks)",
            checked.at - now
        ));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncropel_protocol::moved::sign_moved;
    use syncropel_protocol::Keypair;

    #[test]
    fn a_fence_holds_only_for_this_did_its_keys_and_now() {
        let key = Keypair::generate();
        let identity = Identity::new(key.clone());
        let now = 1_800_000_000;
        let notice = sign_moved(&identity.did, "https://new.example", now, &key);
        assert_eq!(
            check_fence(&identity, &notice, now + 5).unwrap().moved_to,
            "https://new.example"
        );

        let other = Keypair::generate();
        let foreign = sign_moved(&other.did_key(), "https://new.example", now, &other);
        assert!(check_fence(&identity, &foreign, now)
            .unwrap_err()
            .contains("is for"));
        let by_other = sign_moved(&identity.did, "https://new.example", now, &other);
        assert!(check_fence(&identity, &by_other, now)
            .unwrap_err()
            .contains("not a key"));
        let stale = check_fence(&identity, &notice, now + FENCE_SKEW_SECS + 1).unwrap_err();
        assert!(stale.contains("clocks"), "{stale}");
    }

    #[test]
    fn departures_are_stored_as_they_are_read() {
        let moved = Departure::Moved {
            moved_to: "https://new.example".into(),
            notice: json!({"object": "instance_moved"}),
        };
        let StateChange::Put { value, .. } = save(&moved) else {
            panic!("a move is stored");
        };
        let parsed: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(parsed["state"], "moved");
        assert_eq!(parsed["moved_to"], "https://new.example");
        assert!(matches!(
            save(&Departure::Staying),
            StateChange::Delete { .. }
        ));
    }
}
