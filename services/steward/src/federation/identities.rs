//! Which keys may sign for a DID (FEDERATION §1.1, §1.5): a did:key signs for itself; a did:web or
//! directory did:sync through the keys its document names, resolved through the guarded client
//! and cached by the resolver. Everything that checks a peer's signature asks here.

use syncropel_federation::{DidResolver, PeerError};
use syncropel_protocol::sync::{has_document, verify_items, PeerItem, Rejection, ResolvedKeys};
use syncropel_protocol::ErrorCode;

use super::Federation;
use crate::error::ApiError;

impl Federation {
    pub fn resolver(&self) -> &DidResolver {
        &self.resolver
    }

    /// The did:keys that may sign for `did`: itself for a did:key, the keys of its document for
    /// a did:web or directory did:sync (`503 DID_UNRESOLVED` while it cannot be resolved).
    pub async fn keys_of(&self, did: &str) -> Result<Vec<String>, ApiError> {
        if !has_document(did) {
            return Ok(vec![did.to_string()]);
        }
        let resolved = self.resolver.resolve(did).await.map_err(unresolved)?;
        Ok(resolved.keys.clone())
    }

    /// Whether the did:key `signer` may sign for `did`. A signer the cached document does not
    /// name makes one fresh fetch (the key may have just been rotated in).
    pub async fn signs_for(&self, did: &str, signer: &str) -> bool {
        if did == signer {
            return true;
        }
        if !has_document(did) {
            return false;
        }
        match self.resolver.resolve(did).await {
            Ok(resolved) if resolved.accepts(signer) => true,
            _ => self
                .resolver
                .refresh(did)
                .await
                .is_ok_and(|resolved| resolved.accepts(signer)),
        }
    }

    /// Whether `item` is a record whose actor is `did`, signed by a key of `did`.
    pub async fn signed_by(&self, item: &PeerItem, did: &str) -> bool {
        let signer = item.signer().unwrap_or(&item.envelope.actor);
        item.envelope.actor == did
            && self.signs_for(did, signer).await
            && signature_holds(item, signer)
    }

    /// Resolves the actors of `items` that have DID documents, for [`verify_items`]. An actor
    /// whose cached document does not name a signer of the page is fetched again once; an actor
    /// that cannot be resolved is left out (its records wait as `SIGNER_UNRESOLVED`).
    ///
    /// [`verify_items`]: syncropel_protocol::sync::verify_items
    pub async fn resolve_actors(&self, items: &[PeerItem]) -> ResolvedKeys {
        let mut resolved = ResolvedKeys::new();
        for item in items {
            let Some(actor) = item.actor_with_document() else {
                continue;
            };
            let known = resolved.get(actor);
            let signer_known = match (known, item.signer()) {
                (Some(keys), Some(signer)) => keys.iter().any(|k| k == signer),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if signer_known {
                continue;
            }
            let fetched = match known {
                // Already resolved on this page and still missing the signer: fetch afresh.
                Some(_) => self.resolver.refresh(actor).await,
                None => match self.resolver.resolve(actor).await {
                    Ok(doc) if item.signer().is_none_or(|s| doc.accepts(s)) => Ok(doc),
                    Ok(_) => self.resolver.refresh(actor).await,
                    Err(e) => Err(e),
                },
            };
            match fetched {
                Ok(doc) => {
                    resolved.insert(actor.to_string(), doc.keys.clone());
                }
                Err(e) => tracing::debug!(actor, error = %e, "could not resolve a record's actor"),
            }
        }
        resolved
    }
}

fn unresolved(e: PeerError) -> ApiError {
    ApiError::new(ErrorCode::DidUnresolved, e.to_string())
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
    let keys = ResolvedKeys::from([(item.envelope.actor.clone(), vec![signer.to_string()])]);
    verify_items(std::slice::from_ref(item), &keys)[0].is_ok()
}
