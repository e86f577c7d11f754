//! Who calls (federation-protocol.md §7.3): every call carries an `Authorization: DIDSig` header
//! signed with the caller's steward identity key; the relay keeps no accounts or tokens. A call is
//! accepted when it is fresh (its time within a minute of ours), signed by one of the DID's
//! current keys (a did:key is its own; did:web and did:sync through the resolver), its nonce is
//! new for that DID on every replica, and the DID is allowed here.

use std::collections::BTreeSet;

use syncropel_federation::DidResolver;
use syncropel_protocol::didsig::{DidSig, Signed};

use crate::store::RelayStore;
use crate::RelayError;

/// How far a call's time may be from ours.
const FRESHNESS_MS: i64 = 60_000;
/// How long a nonce is kept: longer than a call stays fresh.
const NONCE_SECS: i64 = 120;

pub struct Authenticator {
    resolver: DidResolver,
    /// DIDs this relay serves; empty: anyone (an open relay).
    allow: BTreeSet<String>,
}

impl Authenticator {
    pub fn new(resolver: DidResolver, allow: BTreeSet<String>) -> Authenticator {
        Authenticator { resolver, allow }
    }

    /// Who signed `request` with `header` (the `Authorization` value), at `now_ms`.
    pub async fn caller(
        &self,
        store: &RelayStore,
        header: Option<&str>,
        request: Signed<'_>,
        now_ms: i64,
    ) -> Result<Caller, RelayError> {
        let header = header.ok_or(RelayError::AuthRequired)?;
        let call = DidSig::parse(header).map_err(|e| RelayError::AuthInvalid(e.to_string()))?;
        if (call.ts_ms - now_ms).abs() > FRESHNESS_MS {
            return Err(RelayError::Freshness);
        }
        if !self.allow.is_empty() && !self.allow.contains(&call.did) {
            return Err(RelayError::Forbidden(format!(
                "{} is not served by this relay",
                call.did
            )));
        }
        let keys = if call.did.starts_with("did:key:") {
            vec![call.did.clone()]
        } else {
            let resolved = self
                .resolver
                .resolve(&call.did)
                .await
                .map_err(|e| RelayError::DidUnresolved(e.to_string()))?;
            resolved.current.clone()
        };
        let Some(key) = keys
            .into_iter()
            .find(|key| call.verify(key, request).is_ok())
        else {
            return Err(RelayError::AuthInvalid(format!(
                "the call is not signed by a current key of {}",
                call.did
            )));
        };
        let now = now_ms / 1000;
        if !store
            .first_use(&call.did, &call.nonce, now + NONCE_SECS, now)
            .await?
        {
            return Err(RelayError::AuthInvalid(
                "this nonce was used already".into(),
            ));
        }
        Ok(Caller { did: call.did, key })
    }
}

/// An authenticated caller: its DID and the did:key that signed the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub did: String,
    pub key: String,
}
