//! Typed actors (federation-protocol.md §1.4): an actor with neither a key of its own (did:key)
//! nor a document (did:web, directory did:sync), such as `did:sync:user:alice` or
//! `did:example:my-app`, is signed for by the steward that hosts it. Which keys those are, only
//! the peer that served the record can say: `GET /v1/federation/actor-keys?did=` answers a list
//! signed by that peer, and a record of a typed actor is admitted only when its `signer` is on
//! its serving peer's list. Answers are cached per (peer, actor): two stewards may both host a
//! `did:sync:user:alice`, and each speaks only for its own.
//!
//! A steward lists its own keys, and the keys its peers vouched for records it admitted: so a
//! record relayed through a hub is vouched for by the hub, which learned it from the record's
//! home.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use syncropel_protocol::signed::{sign_object, verify_object};
use syncropel_protocol::sync::{has_document, PeerItem};
use syncropel_protocol::{rfc3339_from_unix, unix_from_rfc3339, unix_now, Refusal};
use syncropel_store::StateChange;
use syncropel_tenant::Tenant;

use crate::error::Result;
use crate::puller::Source;
use crate::{pairs, Federation};

/// How long an answer holds: its `expires_at`, and how long a puller keeps it.
const ANSWER_TTL: Duration = Duration::from_secs(600);
/// A signer missing from a cached answer asks the peer again at most this often.
const MISS_REFETCH: Duration = Duration::from_secs(30);
/// Most (peer, actor) answers cached by one process.
const CACHE_CAP: usize = 10_000;
/// Most keys peers may vouch for one actor here (a peer minting keys cannot grow the list).
const MAX_VOUCHED_PER_ACTOR: u64 = 16;
/// Most distinct typed actors of one page asked about; the rest wait as `SIGNER_UNRESOLVED`.
const ACTORS_PER_PAGE: usize = 16;
/// How long one page's questions may take together.
const ASK_DEADLINE: Duration = Duration::from_secs(10);
/// Longest actor DID asked about.
const MAX_DID_LEN: usize = 512;

/// An actor whose signing keys only its hosting steward can name.
pub fn is_typed(actor: &str) -> bool {
    !actor.starts_with("did:key:") && !has_document(actor)
}

/// The state rows naming the keys peers vouched for `actor` here (key: the did:key).
fn vouched_kind(actor: &str) -> String {
    format!("vouched_signer {actor}")
}

/// `GET /v1/federation/actor-keys?did=`: the keys that sign for the typed actor `did` here,
/// signed by this steward's identity key.
pub async fn answer(fed: &Federation, tenant: &Tenant, did: &str) -> Result<Value> {
    if did.is_empty() || did.len() > MAX_DID_LEN || !is_typed(did) {
        return Err(Refusal::validation(
            "`did` must be a typed actor DID (did:key, did:web and directory did:sync are resolved by their own method)",
        )
        .into());
    }
    let identity = &tenant.identity;
    let (keys, vouched) = keys_here(fed, tenant, did).await?;
    let now = unix_now();
    let mut answer = Map::new();
    answer.insert("object".into(), json!("actor_keys"));
    answer.insert("did".into(), json!(did));
    answer.insert("steward".into(), json!(&*identity.did));
    answer.insert("keys".into(), json!(keys));
    answer.insert("vouched".into(), Value::Array(vouched));
    answer.insert("signed_at".into(), json!(rfc3339_from_unix(now)));
    answer.insert(
        "expires_at".into(),
        json!(rfc3339_from_unix(now + ANSWER_TTL.as_secs() as i64)),
    );
    sign_object(&mut answer, &identity.key);
    Ok(Value::Object(answer))
}

/// The keys that sign for the typed actor `did` here: ours, then those peers vouched for (with
/// whom, as `{key, by}`).
async fn keys_here(
    fed: &Federation,
    tenant: &Tenant,
    did: &str,
) -> Result<(Vec<String>, Vec<Value>)> {
    let mut keys: Vec<String> = tenant.identity.keys.to_vec();
    let mut vouched = Vec::new();
    for (key, entry) in fed.store.state_list(&tenant.id, &vouched_kind(did)).await? {
        if keys.contains(&key) {
            continue;
        }
        let by = serde_json::from_str::<Value>(&entry).unwrap_or_default()["by"].clone();
        vouched.push(json!({"key": key, "by": by}));
        keys.push(key);
    }
    Ok((keys, vouched))
}

/// What a relay envelope of `items` (as served) vouches for: the keys of each typed actor of its
/// signed records, as [`answer`] would list them.
pub(crate) async fn envelope_vouches(
    fed: &Federation,
    tenant: &Tenant,
    items: &[Value],
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut vouches = BTreeMap::new();
    for item in items {
        let Some(actor) = item["record"]["actor"].as_str() else {
            continue;
        };
        if is_typed(actor) && item["redacted"] != json!(true) && !vouches.contains_key(actor) {
            let (keys, _) = keys_here(fed, tenant, actor).await?;
            vouches.insert(actor.to_string(), keys);
        }
    }
    Ok(vouches)
}

/// What this process learned of peers' typed actors.
#[derive(Default)]
pub struct VouchCache {
    answers: Mutex<HashMap<(String, String), Vouch>>,
    /// (tenant, actor, signer) already written as vouched here.
    recorded: Mutex<HashSet<Marker>>,
}

struct Vouch {
    /// `None`: the peer did not answer usably; asked again after [`MISS_REFETCH`].
    keys: Option<Vec<String>>,
    asked_at: Instant,
}

/// (tenant, actor, signer): a vouch this steward holds.
pub(crate) type Marker = (String, String, String);

impl VouchCache {
    /// Notes vouches now stored (see [`Vouched::records`]).
    pub(crate) fn remember(&self, markers: Vec<Marker>) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.len() + markers.len() > CACHE_CAP {
            recorded.clear();
        }
        recorded.extend(markers);
    }

    fn get(&self, key: &(String, String)) -> Option<(Option<Vec<String>>, Instant)> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.get(key).map(|v| (v.keys.clone(), v.asked_at))
    }

    fn put(&self, key: (String, String), keys: Option<Vec<String>>) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= CACHE_CAP && !answers.contains_key(&key) {
            answers.retain(|_, v| v.asked_at.elapsed() < ANSWER_TTL);
            if answers.len() >= CACHE_CAP {
                answers.clear();
            }
        }
        answers.insert(
            key,
            Vouch {
                keys,
                asked_at: Instant::now(),
            },
        );
    }
}

/// The verdict on the typed-actor records of a page: the keys `source` vouches for each actor
/// (an actor missing could not be asked, or was past [`ACTORS_PER_PAGE`]).
pub(crate) struct Vouched {
    keys: HashMap<String, Vec<String>>,
    voucher: String,
}

impl Vouched {
    /// Whether `item`, a typed actor's record, is signed by a key its serving peer vouches for.
    pub(crate) fn admits(&self, item: &PeerItem) -> bool {
        let Some(signer) = item.signer() else {
            return false;
        };
        self.keys
            .get(&item.envelope.actor)
            .is_some_and(|keys| keys.iter().any(|k| k == signer))
    }

    /// The state rows that remember, for the records admitted, which peer vouched for their
    /// signer, so that this steward can vouch in turn; our own keys need none. Once they are
    /// stored, [`VouchCache::remember`] the markers so later pages skip the lookups.
    pub(crate) async fn records(
        &self,
        fed: &Federation,
        tenant: &Tenant,
        admitted: &[&PeerItem],
    ) -> Result<(Vec<StateChange>, Vec<Marker>)> {
        let mut changes = Vec::new();
        let mut markers = Vec::new();
        let mut seen = BTreeSet::new();
        for item in admitted {
            let (actor, Some(signer)) = (&item.envelope.actor, item.signer()) else {
                continue;
            };
            if !is_typed(actor)
                || item.redaction.is_some()
                || tenant.identity.keys.iter().any(|k| k == signer)
                || !seen.insert((actor.as_str(), signer))
            {
                continue;
            }
            let marker = (tenant.id.clone(), actor.clone(), signer.to_string());
            if fed
                .vouches
                .recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&marker)
            {
                continue;
            }
            let kind = vouched_kind(actor);
            if fed
                .store
                .state_get(&tenant.id, &kind, signer)
                .await?
                .is_none()
                && fed.store.state_count(&tenant.id, &kind).await? < MAX_VOUCHED_PER_ACTOR
            {
                let entry = json!({"by": self.voucher, "at": unix_now()});
                changes.push(StateChange::put_if_absent(&kind, signer, entry.to_string()));
            }
            markers.push(marker);
        }
        Ok((changes, markers))
    }
}

/// Asks `source` (through the cache) which keys sign for the typed actors of `items` whose
/// records passed the signature check, but for those `carried` already answers (the vouches of
/// a relay envelope the source signed).
pub(crate) async fn vouched(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    items: &[&PeerItem],
    carried: &BTreeMap<String, Vec<String>>,
) -> Vouched {
    let mut wanted: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for item in items {
        let actor = item.envelope.actor.as_str();
        if is_typed(actor) && item.redaction.is_none() && !carried.contains_key(actor) {
            if let Some(signer) = item.signer() {
                wanted.entry(actor).or_default().insert(signer);
            }
        }
    }
    let asks = wanted
        .into_iter()
        .take(ACTORS_PER_PAGE)
        .map(|(actor, signers)| async move {
            (
                actor.to_string(),
                keys_for(fed, tenant, source, actor, &signers).await,
            )
        });
    let mut keys: HashMap<String, Vec<String>> =
        match tokio::time::timeout(ASK_DEADLINE, futures_util::future::join_all(asks)).await {
            Ok(found) => found
                .into_iter()
                .filter_map(|(actor, keys)| Some((actor, keys?)))
                .collect(),
            Err(_) => {
                tracing::debug!(source = %source.id, "asking a peer for actor keys took too long");
                HashMap::new()
            }
        };
    keys.extend(carried.iter().map(|(a, k)| (a.clone(), k.clone())));
    Vouched {
        keys,
        voucher: voucher_key(source),
    }
}

/// The keys `source`'s peer vouches for `actor`, from the cache while it holds and names every
/// signer in `signers`; else asked again (a miss at most every [`MISS_REFETCH`]).
async fn keys_for(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    actor: &str,
    signers: &BTreeSet<&str>,
) -> Option<Vec<String>> {
    let key = (voucher_key(source), actor.to_string());
    if let Some((keys, asked_at)) = fed.vouches.get(&key) {
        let age = asked_at.elapsed();
        let covers = keys
            .as_ref()
            .is_some_and(|keys| signers.iter().all(|s| keys.iter().any(|k| k == s)));
        if age < ANSWER_TTL && (covers || age < MISS_REFETCH) {
            return keys;
        }
    }
    let keys = match ask(fed, tenant, source, actor).await {
        Ok(keys) => Some(keys),
        Err(why) => {
            tracing::debug!(source = %source.id, actor, why, "no usable actor keys answer");
            None
        }
    };
    fed.vouches.put(key, keys.clone());
    keys
}

/// Whom a source's answers are cached under: its peer's DID, or its URL for a one-shot pull
/// from a steward known by no DID.
fn voucher_key(source: &Source) -> String {
    if source.peer_did.is_empty() {
        source.base_url.clone()
    } else {
        source.peer_did.clone()
    }
}

/// One `GET /v1/federation/actor-keys` to `source`, checked: about `actor`, unexpired, signed by
/// a key of the peer's DID (of the `steward` it names, for a source known by no DID).
async fn ask(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    actor: &str,
) -> std::result::Result<Vec<String>, String> {
    let mut url = url::Url::parse(&format!(
        "{}/v1/federation/actor-keys",
        source.base_url.trim_end_matches('/')
    ))
    .map_err(|e| e.to_string())?;
    url.query_pairs_mut().append_pair("did", actor);
    let url = url.as_str();
    let get = |token: String| async move {
        fed.client()
            .get_json(url, Some(&token), Some(&source.actor))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut status, mut answer) = get(source.token.clone()).await?;
    if status == 401 {
        // A page can outlive its bearer (a longpoll answered just after a renewal): ask again
        // with the pair's bearer as it is now.
        if let Ok(Some(token)) = pairs::outbound_token(fed, tenant, &source.id).await {
            if token != source.token {
                (status, answer) = get(token).await?;
            }
        }
    }
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    let Value::Object(answer) = answer else {
        return Err("the answer is not an object".into());
    };
    if answer.get("did").and_then(Value::as_str) != Some(actor) {
        return Err("the answer is about another actor".into());
    }
    let expires = answer
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(unix_from_rfc3339);
    if expires.is_none_or(|at| at < unix_now()) {
        return Err("the answer has expired".into());
    }
    let voucher = match source.peer_did.as_str() {
        "" => answer.get("steward").and_then(Value::as_str).unwrap_or(""),
        did => did,
    };
    let signer = verify_object(&answer).map_err(|e| e.to_string())?;
    let voucher_keys = fed.keys_of(voucher).await.map_err(|e| e.to_string())?;
    if !voucher_keys.contains(&signer) {
        return Err(format!("the answer is not signed by a key of {voucher}"));
    }
    let keys = answer
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the answer has no keys")?;
    Ok(keys
        .iter()
        .filter_map(Value::as_str)
        .filter(|k| k.starts_with("did:key:"))
        .take(MAX_VOUCHED_PER_ACTOR as usize + 8)
        .map(str::to_string)
        .collect())
}
