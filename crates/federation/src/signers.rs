//! Which keys may sign for a DID (federation-protocol.md §1.1, §1.5): a did:key signs for itself; a did:web or
//! directory did:sync through the keys its document names, resolved through the guarded client
//! and cached by the resolver. Everything that checks a peer's signature asks here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use syncropel_protocol::sync::{
    has_document, verify_items, DocumentKeys, PeerItem, Rejection, ResolvedKeys,
};
use syncropel_protocol::ErrorCode;
use syncropel_protocol::Refusal;

use crate::peer::{PeerError, Reach};
use crate::resolve::{DidResolver, ResolvedDid};
use crate::Federation;

/// Most actors with documents resolved for one page: a page naming more (a peer making us
/// fetch from many hosts) leaves the rest `SIGNER_UNRESOLVED` until a later pull.
const DOCUMENT_ACTORS_PER_PAGE: usize = 16;
/// How long one page's resolutions may take together.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);

impl Federation {
    /// The did:keys that may sign for `did`: itself for a did:key, the keys of its document for
    /// a did:web or directory did:sync (`503 DID_UNRESOLVED` while it cannot be resolved).
    pub async fn keys_of(&self, did: &str) -> Result<Vec<String>, Refusal> {
        self.keys_reaching(Reach::Peers, did).await
    }

    /// [`Federation::keys_of`], fetching within `reach`.
    pub(crate) async fn keys_reaching(
        &self,
        reach: Reach,
        did: &str,
    ) -> Result<Vec<String>, Refusal> {
        if !has_document(did) {
            return Ok(vec![did.to_string()]);
        }
        let (_, resolver) = self.reaching(reach);
        let resolved = resolver.resolve(did).await.map_err(unresolved)?;
        Ok(resolved.keys.clone())
    }

    /// Whether the did:key `signer` may sign for `did`. A signer the cached document does not
    /// name makes one fresh fetch (the key may have just been rotated in).
    pub async fn signs_for(&self, did: &str, signer: &str) -> bool {
        self.signs_for_reaching(Reach::Peers, did, signer).await
    }

    /// [`Federation::signs_for`], fetching within `reach`.
    pub(crate) async fn signs_for_reaching(&self, reach: Reach, did: &str, signer: &str) -> bool {
        self.signs_for_refetching(reach, did, signer, &mut true)
            .await
    }

    /// [`Federation::signs_for_reaching`], making the fresh fetch only while `may_refetch`
    /// holds, and clearing it when it does.
    async fn signs_for_refetching(
        &self,
        reach: Reach,
        did: &str,
        signer: &str,
        may_refetch: &mut bool,
    ) -> bool {
        if did == signer {
            return true;
        }
        if !has_document(did) {
            return false;
        }
        let signers = BTreeSet::from([Some(signer)]);
        self.document_keys(self.reaching(reach).1, did, &signers, may_refetch)
            .await
            .is_some_and(|document| document.keys.iter().any(|k| k == signer))
    }

    /// Whether `item` is a record whose actor is `did`, signed by a key of `did`.
    pub async fn signed_by(&self, item: &PeerItem, did: &str) -> bool {
        self.signed_by_refetching(item, did, &mut true).await
    }

    /// [`Federation::signed_by`], with a fresh fetch of `did`'s document only while
    /// `may_refetch` holds (cleared when one is made): for checks a caller may repeat many times
    /// in one request.
    pub(crate) async fn signed_by_refetching(
        &self,
        item: &PeerItem,
        did: &str,
        may_refetch: &mut bool,
    ) -> bool {
        let signer = item.signer().unwrap_or(&item.envelope.actor);
        item.envelope.actor == did
            && self
                .signs_for_refetching(Reach::Peers, did, signer, may_refetch)
                .await
            && signature_holds(item, signer)
    }

    /// Resolves the actors of `items` that have DID documents, for [`verify_items`]: at most
    /// [`DOCUMENT_ACTORS_PER_PAGE`] of them, concurrently, within [`RESOLVE_DEADLINE`]. An actor
    /// that cannot be resolved is left out (its records wait as `SIGNER_UNRESOLVED`).
    pub async fn resolve_actors(&self, items: &[PeerItem]) -> ResolvedKeys {
        let mut signers: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
        for item in items {
            if let Some(actor) = item.actor_with_document() {
                signers.entry(actor).or_default().insert(item.signer());
            }
        }
        let lookups =
            signers
                .iter()
                .take(DOCUMENT_ACTORS_PER_PAGE)
                .map(|(actor, signers)| async move {
                    (
                        actor.to_string(),
                        self.document_keys(self.resolver(), actor, signers, &mut true)
                            .await,
                    )
                });
        let Ok(found) =
            tokio::time::timeout(RESOLVE_DEADLINE, futures_util::future::join_all(lookups)).await
        else {
            tracing::debug!("resolving a page's actors took too long");
            return ResolvedKeys::new();
        };
        found
            .into_iter()
            .filter_map(|(actor, document)| Some((actor, document?)))
            .collect()
    }

    /// The keys of `did`'s document, covering `signers` if it can: a cached document that lacks
    /// one is fetched again, while `may_refetch` holds (cleared when it is). Whether the answer
    /// is fresh decides what a still-missing signer means (see [`DocumentKeys::fresh`]).
    async fn document_keys(
        &self,
        resolver: &DidResolver,
        did: &str,
        signers: &BTreeSet<Option<&str>>,
        may_refetch: &mut bool,
    ) -> Option<DocumentKeys> {
        let covers = |doc: &ResolvedDid| signers.iter().flatten().all(|s| doc.accepts(s));
        let cached = match resolver.resolve(did).await {
            Ok(doc) => doc,
            Err(e) => {
                tracing::debug!(did, error = %e, "could not resolve a record's actor");
                return None;
            }
        };
        if covers(&cached) {
            return Some(keys(&cached, true));
        }
        if !std::mem::take(may_refetch) {
            return Some(keys(&cached, false));
        }
        match resolver.refresh(did).await {
            // The resolver limits forced fetches: the same answer back is not a fresh one.
            Ok(again) => {
                let fresh = !Arc::ptr_eq(&cached, &again);
                Some(keys(&again, fresh))
            }
            Err(_) => Some(keys(&cached, false)),
        }
    }
}

fn keys(document: &ResolvedDid, fresh: bool) -> DocumentKeys {
    DocumentKeys {
        keys: document.keys.clone(),
        current: document.current.clone(),
        fresh,
    }
}

fn unresolved(e: PeerError) -> Refusal {
    Refusal::new(ErrorCode::DidUnresolved, e.to_string())
}

/// Settles the verdicts a page got without documents: records of document-bearing actors that
/// came out `SIGNER_UNRESOLVED` are checked again against their actors' resolved keys.
pub async fn verify_with_documents(
    federation: &Federation,
    items: &[PeerItem],
    verdicts: &mut [Result<(), Rejection>],
) {
    let waiting: Vec<usize> = (0..items.len())
        .filter(|&i| {
            verdicts[i] == Err(Rejection::SignerUnresolved)
                && items[i].actor_with_document().is_some()
        })
        .collect();
    if waiting.is_empty() {
        return;
    }
    let subset: Vec<PeerItem> = waiting.iter().map(|&i| items[i].clone()).collect();
    let resolved = federation.resolve_actors(&subset).await;
    for (verdict, &i) in verify_items(&subset, &resolved).into_iter().zip(&waiting) {
        verdicts[i] = verdict;
    }
}

/// Whether `item`'s signature verifies under `signer`, taken as a key of its actor.
pub fn signature_holds(item: &PeerItem, signer: &str) -> bool {
    let keys = ResolvedKeys::from([(item.envelope.actor.clone(), DocumentKeys::only(signer))]);
    verify_items(std::slice::from_ref(item), &keys)[0].is_ok()
}
