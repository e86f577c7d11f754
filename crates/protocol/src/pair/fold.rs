//! The pair fold (federation-protocol.md §3.3): the derived view of every pair from the
//! records on `th_federation_pairs`. Nothing here is stored as truth; a
//! rebuild over the same records always yields the same views.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{pair_id, GenesisMap, NamespaceMap, PairEvent, PairState, UpdateOp};

/// Mode when no record names one (federation-protocol.md §5.4 defaults).
const DEFAULT_MODE: &str = "polling";
/// A pair's `poll_interval_secs` until its operator sets another (federation-protocol.md §5.4).
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 2;

/// Which side of the handshake this steward was, per generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairRole {
    Initiator,
    Responder,
}

impl PairRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PairRole::Initiator => "initiator",
            PairRole::Responder => "responder",
        }
    }
}

/// Where an `establishing` handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairPhase {
    /// Init sent; the responder's operator (or policy) has not approved yet.
    AwaitingApproval,
    /// Genesis exists; the confirm round trip has not completed.
    AwaitingConfirm,
}

/// The bearer the peer minted for us; its value lives in the secret backend
/// under `secret_handle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundToken {
    pub token_id: String,
    /// RFC 3339, as the record states it.
    pub expires_at: String,
    pub secret_handle: String,
}

/// The bearer we minted for the peer (its service account and hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundToken {
    pub token_id: String,
    pub sa_id: String,
    /// RFC 3339, as the record states it.
    pub expires_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTokens {
    pub outbound: Option<OutboundToken>,
    pub inbound: Option<InboundToken>,
}

/// The last `cursor_checkpoint` of one thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorCheckpoint {
    pub cursor: String,
}

/// One pair as its records describe it (federation-protocol.md §3.1). Sync health, lag and last
/// contact are not in records; the steward adds them from its caches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairView {
    pub pair_id: String,
    /// The highest generation that has an init or a genesis.
    pub generation: u64,
    pub peer_did: String,
    pub peer_url: Option<String>,
    pub role: PairRole,
    pub state: PairState,
    /// Set only while `establishing`.
    pub phase: Option<PairPhase>,
    pub mode: String,
    pub poll_interval_secs: u64,
    pub scopes: Vec<String>,
    pub tokens: PairTokens,
    pub namespaces: Vec<String>,
    pub maps: Vec<NamespaceMap>,
    pub thread_allow: BTreeSet<String>,
    pub thread_rule: Option<String>,
    /// Relays the operator named for this pair's peer (a `config` update's `relays`): asked
    /// first while the peer is unreachable (federation-protocol.md §7.2).
    pub relays: Vec<String>,
    pub cursors: BTreeMap<String, CursorCheckpoint>,
    pub peer_manifest_sha256: Option<String>,
    /// `fields.cause` of the `degrade` that holds; only while `degraded`.
    pub degraded_cause: Option<String>,
    pub genesis_id: Option<String>,
    /// RFC 3339: init's for the initiator, genesis's for the responder.
    pub created_at: Option<String>,
    /// The ids the next record of this pair lists as `parents`: the records
    /// of this generation that nothing lists yet (so the initiator's
    /// `activate` names both init and genesis), sorted.
    pub next_parents: Vec<String>,
}

/// Where the steward keeps the outbound bearer of a pair (federation-protocol.md §3.1).
pub fn outbound_secret_handle(pair_id: &str) -> String {
    format!("secret://federation/{pair_id}/outbound")
}

/// Folds the stored records of `th_federation_pairs` (objects with `id`,
/// `clock`, `parents`, `body`, …, in any order) into one view per pair id, as
/// seen by the steward whose instance DID is `self_did`.
///
/// `verify_genesis` is asked about every genesis that carries `sig` or
/// `signer`; it must check the record's signature against the body's
/// `responder_did` (key resolution is I/O, so it stays with the caller). A
/// genesis it refuses, or whose DIDs do not hash to its `pair_id` or do not
/// include `self_did`, is ignored, as is an init whose `peer_did` does not and
/// an update or revoke whose actor is not `self_did`.
pub fn fold_pairs(
    records: &[Value],
    self_did: &str,
    verify_genesis: impl Fn(&Value) -> bool,
) -> BTreeMap<String, PairView> {
    // Content-addressed ids make de-duplication by id safe.
    let mut by_pair: BTreeMap<&str, BTreeMap<&str, PairRecord<'_>>> = BTreeMap::new();
    for value in records {
        let Some(record) = PairRecord::parse(value) else {
            continue;
        };
        let admissible = match record.kind {
            RecordKind::Init => init_matches(&record, self_did),
            RecordKind::Genesis => {
                genesis_matches(&record, self_did)
                    && (!carries_signature(value) || verify_genesis(value))
            }
            // Only this steward moves its pairs: an update or revoke by anyone else (a record
            // that reached the thread some other way) changes nothing.
            RecordKind::Update(_) | RecordKind::Revoke => authored_by(value, self_did),
        };
        if admissible {
            by_pair
                .entry(record.pair_id)
                .or_default()
                .insert(record.id, record);
        }
    }
    by_pair
        .into_iter()
        .filter_map(|(id, records)| Some((id.to_owned(), fold_pair(id, &records, self_did)?)))
        .collect()
}

/// What a pair record is, after mapping upstream's short kind names (federation-protocol.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordKind {
    Init,
    Genesis,
    Update(UpdateOp),
    Revoke,
}

impl RecordKind {
    fn of(kind: &str, body: &Map<String, Value>) -> Option<RecordKind> {
        let short = kind.strip_prefix("syncropel.federation.").unwrap_or(kind);
        Some(match short {
            "pair_init.v1" => RecordKind::Init,
            "pair_genesis.v1" | "pair.genesis.v1" | "pair.handshake.v1" => RecordKind::Genesis,
            "pair_update.v1" => RecordKind::Update(UpdateOp::parse(str_at(body, "op")?)?),
            "pair_active.v1" => RecordKind::Update(UpdateOp::Activate),
            "pair_config.v1" => RecordKind::Update(UpdateOp::Config),
            "pair_revoke.v1" | "pair.revoke.v1" => RecordKind::Revoke,
            _ => return None,
        })
    }
}

/// The parts of a stored record the fold uses.
#[derive(Debug)]
struct PairRecord<'a> {
    id: &'a str,
    clock: i64,
    parents: BTreeSet<&'a str>,
    body: &'a Map<String, Value>,
    pair_id: &'a str,
    generation: u64,
    kind: RecordKind,
}

impl<'a> PairRecord<'a> {
    /// `None` for anything that is not a well-formed pair record.
    fn parse(value: &'a Value) -> Option<PairRecord<'a>> {
        let body = value.get("body")?.as_object()?;
        let parents = match value.get("parents") {
            None => BTreeSet::new(),
            Some(parents) => parents
                .as_array()?
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()?,
        };
        Some(PairRecord {
            id: value.get("id")?.as_str()?,
            clock: value.get("clock")?.as_i64()?,
            parents,
            body,
            pair_id: str_at(body, "pair_id")?,
            generation: body.get("generation")?.as_u64()?,
            kind: RecordKind::of(str_at(body, "kind")?, body)?,
        })
    }

    /// Application order among records that are ready at the same time:
    /// init before genesis before the rest, then (federation-protocol.md §3.3 step 2, concurrent
    /// writers) revoke first, higher clock first, larger id first.
    fn apply_key(&self) -> (u8, bool, Reverse<i64>, Reverse<&'a str>) {
        let rank = match self.kind {
            RecordKind::Init => 0,
            RecordKind::Genesis => 1,
            RecordKind::Update(_) | RecordKind::Revoke => 2,
        };
        let not_revoke = self.kind != RecordKind::Revoke;
        (rank, not_revoke, Reverse(self.clock), Reverse(self.id))
    }
}

fn init_matches(record: &PairRecord<'_>, self_did: &str) -> bool {
    str_at(record.body, "peer_did").is_some_and(|peer| pair_id(self_did, peer) == record.pair_id)
}

fn genesis_matches(record: &PairRecord<'_>, self_did: &str) -> bool {
    let (Some(initiator), Some(responder)) = (
        str_at(record.body, "initiator_did"),
        str_at(record.body, "responder_did"),
    ) else {
        return false;
    };
    let me = self_did.to_lowercase();
    pair_id(initiator, responder) == record.pair_id
        && (initiator.to_lowercase() == me || responder.to_lowercase() == me)
}

fn authored_by(value: &Value, did: &str) -> bool {
    value
        .get("actor")
        .and_then(Value::as_str)
        .is_some_and(|actor| actor.eq_ignore_ascii_case(did))
}

fn carries_signature(value: &Value) -> bool {
    ["sig", "signer"]
        .iter()
        .any(|member| value.get(member).is_some_and(|v| !v.is_null()))
}

/// One pair's view, from the records of its current generation.
fn fold_pair(
    pair_id: &str,
    records: &BTreeMap<&str, PairRecord<'_>>,
    self_did: &str,
) -> Option<PairView> {
    let begins = |r: &&PairRecord<'_>| matches!(r.kind, RecordKind::Init | RecordKind::Genesis);
    let generation = records
        .values()
        .filter(begins)
        .map(|r| r.generation)
        .max()?;
    let current: BTreeMap<&str, &PairRecord<'_>> = records
        .iter()
        .filter(|(_, r)| r.generation == generation)
        .map(|(id, r)| (*id, r))
        .collect();
    // Init is initiator-local; without one, genesis says which side we are.
    let me = self_did.to_lowercase();
    let initiator = current.values().any(|r| {
        r.kind == RecordKind::Init
            || (r.kind == RecordKind::Genesis
                && str_at(r.body, "initiator_did").is_some_and(|did| did.to_lowercase() == me))
    });
    let role = if initiator {
        PairRole::Initiator
    } else {
        PairRole::Responder
    };

    let mut walk = Walk::new(pair_id, generation, role);
    for record in chain_order(&current) {
        walk.apply(record);
    }
    let mut view = walk.finish()?;
    let listed: BTreeSet<&str> = current
        .values()
        .flat_map(|r| r.parents.iter().copied())
        .collect();
    view.next_parents = current
        .keys()
        .filter(|id| !listed.contains(*id))
        .map(|id| (*id).to_owned())
        .collect();
    Some(view)
}

/// The records in parent-chain order (a record after every parent of it in
/// this generation; parents outside it are history), ready records taken by
/// [`PairRecord::apply_key`]. Independent of the input order.
fn chain_order<'r, 'a>(records: &BTreeMap<&'a str, &'r PairRecord<'a>>) -> Vec<&'r PairRecord<'a>> {
    let mut pending: HashMap<&str, usize> = HashMap::new();
    let mut children: HashMap<&str, Vec<&'r PairRecord<'a>>> = HashMap::new();
    let mut ready = BTreeMap::new();
    for record in records.values() {
        let known: Vec<&str> = record
            .parents
            .iter()
            .copied()
            .filter(|p| records.contains_key(p))
            .collect();
        if known.is_empty() {
            ready.insert(record.apply_key(), *record);
        }
        pending.insert(record.id, known.len());
        for parent in known {
            children.entry(parent).or_default().push(record);
        }
    }
    let mut order = Vec::with_capacity(records.len());
    while let Some((_, record)) = ready.pop_first() {
        order.push(record);
        for child in children.get(record.id).into_iter().flatten() {
            // Every record has a count: it was entered in `pending` above.
            let Some(left) = pending.get_mut(child.id) else {
                continue;
            };
            *left -= 1;
            if *left == 0 {
                ready.insert(child.apply_key(), *child);
            }
        }
    }
    order
}

/// The view being built while records are applied in chain order.
struct Walk {
    view: PairView,
    state: Option<PairState>,
}

impl Walk {
    fn new(pair_id: &str, generation: u64, role: PairRole) -> Walk {
        Walk {
            view: PairView {
                pair_id: pair_id.to_owned(),
                generation,
                peer_did: String::new(),
                peer_url: None,
                role,
                state: PairState::Establishing,
                phase: None,
                mode: DEFAULT_MODE.to_owned(),
                poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
                scopes: Vec::new(),
                tokens: PairTokens::default(),
                namespaces: Vec::new(),
                maps: Vec::new(),
                thread_allow: BTreeSet::new(),
                thread_rule: None,
                relays: Vec::new(),
                cursors: BTreeMap::new(),
                peer_manifest_sha256: None,
                degraded_cause: None,
                genesis_id: None,
                created_at: None,
                next_parents: Vec::new(),
            },
            state: None,
        }
    }

    /// Applies one record: its transition (federation-protocol.md §3.4) if it has one, then its
    /// data. A record whose transition the table lacks is ignored entirely, as is
    /// every record after revoke and every update before the pair began.
    fn apply(&mut self, record: &PairRecord<'_>) {
        if self.state == Some(PairState::Revoked) {
            return;
        }
        let event = match record.kind {
            // Genesis begins the responder's generation; the initiator began
            // with init, and then genesis only adds data.
            RecordKind::Init | RecordKind::Genesis => {
                self.state.is_none().then_some(PairEvent::Begin)
            }
            RecordKind::Update(op) => op.event(),
            RecordKind::Revoke => Some(PairEvent::Revoke),
        };
        match event {
            Some(event) => match PairState::after(self.state, event) {
                Some(next) => self.state = Some(next),
                None => return,
            },
            None if self.state.is_none() => return,
            None => {}
        }
        match record.kind {
            RecordKind::Init => self.apply_init(record.body),
            RecordKind::Genesis => self.apply_genesis(record.id, record.body),
            RecordKind::Update(op) => self.apply_update(op, record.body),
            RecordKind::Revoke => {}
        }
        if self.state != Some(PairState::Degraded) {
            self.view.degraded_cause = None;
        }
    }

    fn apply_init(&mut self, body: &Map<String, Value>) {
        let view = &mut self.view;
        set_string(&mut view.peer_did, body, "peer_did");
        set_opt(&mut view.peer_url, body, "peer_url");
        set_opt(&mut view.peer_manifest_sha256, body, "peer_manifest_sha256");
        set_string(&mut view.mode, body, "mode");
        if let Some(maps) = parse_list::<NamespaceMap>(body.get("maps")) {
            view.maps = maps;
        }
        if view.created_at.is_none() {
            set_opt(&mut view.created_at, body, "created_at");
        }
    }

    /// Genesis states the agreed terms, so it overrides what init proposed.
    fn apply_genesis(&mut self, id: &str, body: &Map<String, Value>) {
        let view = &mut self.view;
        view.genesis_id = Some(id.to_owned());
        let issued = body.get("responder_issued");
        match view.role {
            PairRole::Initiator => {
                set_string(&mut view.peer_did, body, "responder_did");
                set_opt(&mut view.peer_url, body, "responder_url");
                set_opt(
                    &mut view.peer_manifest_sha256,
                    body,
                    "responder_manifest_sha256",
                );
                view.tokens.outbound = issued.and_then(|t| outbound(&view.pair_id, t));
            }
            PairRole::Responder => {
                set_string(&mut view.peer_did, body, "initiator_did");
                set_opt(&mut view.peer_url, body, "initiator_url");
                view.tokens.inbound = issued.and_then(inbound);
            }
        }
        if let Some(scopes) = parse_list(body.get("scopes")) {
            view.scopes = scopes;
        }
        if let Some(namespaces) = parse_list(body.get("namespaces")) {
            view.namespaces = namespaces;
        }
        if let Some(maps) = parse_list::<GenesisMap>(body.get("maps")) {
            view.maps = maps
                .into_iter()
                .map(|m| match view.role {
                    PairRole::Initiator => NamespaceMap {
                        local: m.initiator,
                        peer: m.responder,
                    },
                    PairRole::Responder => NamespaceMap {
                        local: m.responder,
                        peer: m.initiator,
                    },
                })
                .collect();
        }
        set_string(&mut view.mode, body, "mode");
        set_u64(&mut view.poll_interval_secs, body, "poll_interval_secs");
        if view.created_at.is_none() {
            set_opt(&mut view.created_at, body, "created_at");
        }
    }

    fn apply_update(&mut self, op: UpdateOp, body: &Map<String, Value>) {
        let empty = Map::new();
        let fields = body
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let view = &mut self.view;
        match op {
            // The initiator minted this token for the responder.
            UpdateOp::Activate => {
                let issued = fields.get("initiator_issued");
                match view.role {
                    PairRole::Initiator => view.tokens.inbound = issued.and_then(inbound),
                    PairRole::Responder => {
                        view.tokens.outbound = issued.and_then(|t| outbound(&view.pair_id, t));
                    }
                }
            }
            UpdateOp::Degrade => view.degraded_cause = str_at(fields, "cause").map(str::to_owned),
            UpdateOp::UrlRefreshed => set_opt(&mut view.peer_url, fields, "peer_url"),
            UpdateOp::ManifestChanged => {
                set_opt(
                    &mut view.peer_manifest_sha256,
                    fields,
                    "peer_manifest_sha256",
                );
            }
            UpdateOp::TokenRenewed => renew(&mut view.tokens, fields),
            UpdateOp::Config => {
                set_string(&mut view.mode, fields, "mode");
                set_u64(&mut view.poll_interval_secs, fields, "poll_interval_secs");
                view.thread_allow
                    .extend(threads(fields.get("thread_allow_add")));
                for thread in threads(fields.get("thread_allow_remove")) {
                    view.thread_allow.remove(&thread);
                }
                match fields.get("thread_rule") {
                    Some(Value::String(rule)) => view.thread_rule = Some(rule.clone()),
                    Some(Value::Null) => view.thread_rule = None,
                    _ => {}
                }
                if let Some(relays) = fields.get("relays") {
                    // At most three http(s) URLs, in order; anything else names none.
                    view.relays = parse_list(Some(relays))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|url: &String| {
                            url.starts_with("https://") || url.starts_with("http://")
                        })
                        .take(3)
                        .collect();
                }
            }
            UpdateOp::CursorCheckpoint => {
                if let (Some(thread), Some(cursor)) =
                    (str_at(fields, "thread"), str_at(fields, "cursor"))
                {
                    let cursor = CursorCheckpoint {
                        cursor: cursor.to_owned(),
                    };
                    view.cursors.insert(thread.to_owned(), cursor);
                }
            }
            // State only (handled by the caller), or audit-only.
            UpdateOp::Pause | UpdateOp::Resume | UpdateOp::Recover | UpdateOp::RenewalFailed => {}
        }
    }

    /// The view, once a record has begun the generation.
    fn finish(mut self) -> Option<PairView> {
        let state = self.state?;
        self.view.state = state;
        self.view.phase =
            (state == PairState::Establishing).then_some(if self.view.genesis_id.is_some() {
                PairPhase::AwaitingConfirm
            } else {
                PairPhase::AwaitingApproval
            });
        Some(self.view)
    }
}

fn outbound(pair_id: &str, issued: &Value) -> Option<OutboundToken> {
    Some(OutboundToken {
        token_id: issued.get("token_id")?.as_str()?.to_owned(),
        expires_at: issued.get("expires_at")?.as_str()?.to_owned(),
        secret_handle: outbound_secret_handle(pair_id),
    })
}

fn inbound(issued: &Value) -> Option<InboundToken> {
    Some(InboundToken {
        token_id: issued.get("token_id")?.as_str()?.to_owned(),
        sa_id: issued.get("sa_id")?.as_str()?.to_owned(),
        expires_at: issued.get("expires_at")?.as_str()?.to_owned(),
    })
}

/// `token_renewed`: a new token id and expiry for an existing bearer.
fn renew(tokens: &mut PairTokens, fields: &Map<String, Value>) {
    let (Some(token_id), Some(expires_at)) =
        (str_at(fields, "token_id"), str_at(fields, "expires_at"))
    else {
        return;
    };
    let (id_slot, expiry_slot) = match str_at(fields, "direction") {
        Some("inbound") => match tokens.inbound.as_mut() {
            Some(t) => (&mut t.token_id, &mut t.expires_at),
            None => return,
        },
        Some("outbound") => match tokens.outbound.as_mut() {
            Some(t) => (&mut t.token_id, &mut t.expires_at),
            None => return,
        },
        _ => return,
    };
    *id_slot = token_id.to_owned();
    *expiry_slot = expires_at.to_owned();
}

/// A thread id or a list of them (`thread_allow_add` takes either).
fn threads(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(thread)) => vec![thread.clone()],
        Some(Value::Array(_)) => parse_list(value).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn str_at<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn set_string(slot: &mut String, map: &Map<String, Value>, key: &str) {
    if let Some(value) = str_at(map, key) {
        value.clone_into(slot);
    }
}

fn set_opt(slot: &mut Option<String>, map: &Map<String, Value>, key: &str) {
    if let Some(value) = str_at(map, key) {
        *slot = Some(value.to_owned());
    }
}

fn set_u64(slot: &mut u64, map: &Map<String, Value>, key: &str) {
    if let Some(value) = map.get(key).and_then(Value::as_u64) {
        *slot = value;
    }
}

/// An array member as a list of `T`; `None` when absent or of another shape.
fn parse_list<T: serde::de::DeserializeOwned>(value: Option<&Value>) -> Option<Vec<T>> {
    serde_json::from_value(value?.clone()).ok()
}

#[cfg(test)]
mod tests;
