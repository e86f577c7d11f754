//! The identity a tenant signs with: its key, the DID it is known by, and the clock of the records
//! the steward writes on its account.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use syncropel_protocol::Keypair;

/// The identity a steward signs with, and the clock of the records it writes itself.
#[derive(Clone)]
pub struct Identity {
    pub key: Arc<Keypair>,
    /// The DID this steward (or hosted tenant) is known by: the key's did:key, or a did:sync or
    /// did:web whose document names the key.
    pub did: Arc<str>,
    /// The did:key of `key`: the `signer` of every record it seals and the key id of every
    /// object it signs, which peers check against `did`'s document (federation-protocol.md §1.1).
    pub signer: Arc<str>,
    /// The did:key of every key that has signed for `did` and was not withdrawn, current first.
    pub keys: Arc<[String]>,
    /// The did:web document this identity answers for, if any (federation-protocol.md §1.3).
    pub did_web: Option<Arc<DidWeb>>,
    pub clock: Arc<ServerClock>,
    /// The signing keys this identity had before rotations (a local home keeps them): what was
    /// sealed or derived under one of them still opens with it.
    pub retired_keys: Arc<[Keypair]>,
}

/// What a steward serves at `/.well-known/did.json` (or the path form) for a did:web it holds:
/// its own identity, or a hosted tenant's secondary did:web.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DidWeb {
    pub did: String,
    /// `(fragment, multibase)` of every key that ever signed for the DID and was not withdrawn,
    /// current first: old records keep verifying after a rotation.
    pub keys: Vec<(String, String)>,
    /// Fragments of the keys in force.
    pub current: Vec<String>,
    pub also_known_as: Vec<String>,
    /// The published `syncropel` service; the steward's own URL when unset.
    pub endpoint: Option<String>,
}

impl Identity {
    /// An identity known by its key's did:key.
    pub fn new(key: Keypair) -> Identity {
        let did = key.did_key();
        Identity::published(key, did, Vec::new(), None)
    }

    /// An identity known by `did`, a DID whose document names `key` and, from before rotations,
    /// the `retired` keys (did:keys).
    pub fn published(
        key: Keypair,
        did: String,
        retired: Vec<String>,
        did_web: Option<DidWeb>,
    ) -> Identity {
        let signer = key.did_key();
        let mut keys = vec![signer.clone()];
        keys.extend(retired.into_iter().filter(|k| *k != signer));
        Identity {
            key: Arc::new(key),
            did: did.into(),
            signer: signer.into(),
            keys: keys.into(),
            did_web: did_web.map(Arc::new),
            clock: Arc::new(ServerClock::default()),
            retired_keys: Arc::new([]),
        }
    }

    pub fn with_retired_keys(mut self, retired: Vec<Keypair>) -> Identity {
        self.retired_keys = retired.into();
        self
    }

    /// The private key of `did_key`, if it is this identity's current or a retired one.
    pub fn key_for(&self, did_key: &str) -> Option<&Keypair> {
        if *self.signer == *did_key {
            return Some(&self.key);
        }
        self.retired_keys.iter().find(|k| k.did_key() == did_key)
    }
}

/// Clocks for records the steward writes itself (audit trails): wall-clock milliseconds, bumped so
/// that two records in the same millisecond never collide on `(thread, actor, clock)`.
#[derive(Default)]
pub struct ServerClock(AtomicI64);

impl ServerClock {
    pub fn next(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut last = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .0
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}
