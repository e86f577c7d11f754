//! Stable error codes (protocol.md §10.4 plus the FEDERATION tables) and the
//! crate's single error type.
//!
//! The codes are part of the wire contract: clients branch on `code`, so the
//! strings and statuses here must never change once shipped. Everything that
//! answers HTTP builds its error envelope from [`ErrorCode`].

/// Declares [`ErrorCode`] from one table so that variant, wire string and
/// status can never drift apart.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($text:literal, $status:literal), )+) => {
        /// A stable, client-visible error code with its HTTP status.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in table order (handy for exhaustive tests and docs).
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$variant, )+];

            /// The wire string placed in the envelope's `code` member.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $text, )+ }
            }

            /// The HTTP status this code is always answered with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )+ }
            }
        }
    };
}

error_codes! {
    /// Not JSON, duplicate keys, lone surrogate, NaN/Infinity, too deep.
    InvalidJson => ("INVALID_JSON", 400),
    /// Bad act, data_type, clock, thread, parents or body.
    ValidationError => ("VALIDATION_ERROR", 400),
    /// A present but malformed `body.kind`.
    InvalidKind => ("INVALID_KIND", 400),
    /// Query path or operator error.
    InvalidFilter => ("INVALID_FILTER", 400),
    /// Ingest refused, e.g. `DuplicateClock: …`.
    IngestFailed => ("INGEST_FAILED", 400),
    NamespaceIdInvalid => ("NAMESPACE_ID_INVALID", 400),
    NamespaceIdTooLong => ("NAMESPACE_ID_TOO_LONG", 400),
    NamespaceIdTooDeep => ("NAMESPACE_ID_TOO_DEEP", 400),
    NamespaceSegmentTooLong => ("NAMESPACE_SEGMENT_TOO_LONG", 400),
    /// A plaintext secret in a record body (protocol.md §14).
    F16ViolationSensitiveField => ("F16_VIOLATION_SENSITIVE_FIELD", 400),
    InvalidCursor => ("INVALID_CURSOR", 400),
    FutureCursor => ("FUTURE_CURSOR", 400),
    LabelInvalid => ("LABEL_INVALID", 400),
    LabelReserved => ("LABEL_RESERVED", 400),
    AuthRequired => ("AUTH_REQUIRED", 401),
    AuthInvalid => ("AUTH_INVALID", 401),
    GrantRevoked => ("GRANT_REVOKED", 401),
    GrantExpired => ("GRANT_EXPIRED", 401),
    /// The pair's token has expired; the pair must renew it (upstream spelling).
    TokenExpiredRenewPair => ("token_expired_renew_pair", 401),
    RecredentialRefused => ("RECREDENTIAL_REFUSED", 401),
    ScopeForbidden => ("SCOPE_FORBIDDEN", 403),
    DidClaimDenied => ("DID_CLAIM_DENIED", 403),
    NamespaceRejected => ("NAMESPACE_REJECTED", 403),
    ReservedThread => ("RESERVED_THREAD", 403),
    PermissionDenied => ("PERMISSION_DENIED", 403),
    FreshnessViolation => ("FRESHNESS_VIOLATION", 403),
    KeyNotAuthorized => ("KEY_NOT_AUTHORIZED", 403),
    PairRejected => ("PAIR_REJECTED", 403),
    RelayForbidden => ("RELAY_FORBIDDEN", 403),
    ThreadNotAllowed => ("THREAD_NOT_ALLOWED", 403),
    ConsentDenied => ("CONSENT_DENIED", 403),
    UnauthenticatedInitiator => ("UNAUTHENTICATED_INITIATOR", 403),
    TenantLimitReached => ("TENANT_LIMIT_REACHED", 403),
    /// A suspended tenant is read-only until the platform resumes it.
    TenantSuspended => ("TENANT_SUSPENDED", 403),
    /// A deleted tenant is read-only (export still works) until its grace period ends.
    TenantDeleted => ("TENANT_DELETED", 403),
    /// Sync through a pair the operator paused (upstream spells it in lower case).
    PairPaused => ("pair_paused", 403),
    NotFound => ("NOT_FOUND", 404),
    InviteNotFound => ("INVITE_NOT_FOUND", 404),
    /// `spl sync` named a peer with no pair (upstream spelling).
    UnpairedPeer => ("unpaired_peer", 404),
    MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405),
    BootstrapClosed => ("BOOTSTRAP_CLOSED", 409),
    MemberLabelTaken => ("MEMBER_LABEL_TAKEN", 409),
    /// Data-plane CAS conflict; lower case on purpose (the SDK matches it).
    PreconditionFailed => ("precondition_failed", 409),
    CursorEpochMismatch => ("CURSOR_EPOCH_MISMATCH", 409),
    IdempotencyConflict => ("IDEMPOTENCY_CONFLICT", 409),
    InstanceLeaving => ("INSTANCE_LEAVING", 409),
    LabelTaken => ("LABEL_TAKEN", 409),
    MlsEpochConflict => ("MLS_EPOCH_CONFLICT", 409),
    NonceConflict => ("NONCE_CONFLICT", 409),
    PrevMismatch => ("PREV_MISMATCH", 409),
    /// A directory handle already names another DID.
    HandleTaken => ("HANDLE_TAKEN", 409),
    /// The identity cannot change while pairs made with it stand.
    PairsExist => ("PAIRS_EXIST", 409),
    NonceReused => ("NONCE_REUSED", 410),
    InviteExpired => ("INVITE_EXPIRED", 410),
    InviteRevoked => ("INVITE_REVOKED", 410),
    InviteExhausted => ("INVITE_EXHAUSTED", 410),
    NonceExpired => ("NONCE_EXPIRED", 410),
    InstanceMoved => ("INSTANCE_MOVED", 410),
    QueueClosed => ("QUEUE_CLOSED", 410),
    /// A did:sync whose log ends in a tombstone.
    DidDeactivated => ("DID_DEACTIVATED", 410),
    PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413),
    OpTooLarge => ("OP_TOO_LARGE", 413),
    SignatureRequired => ("SIGNATURE_REQUIRED", 422),
    SignatureInvalid => ("SIGNATURE_INVALID", 422),
    IdMismatch => ("ID_MISMATCH", 422),
    AggregationCapExceeded => ("AGGREGATION_CAP_EXCEEDED", 422),
    /// A rich query would scan more rows, take longer or reach further into a sorted order
    /// than the steward allows one query.
    QueryBudgetExceeded => ("QUERY_BUDGET_EXCEEDED", 422),
    RateLimited => ("RATE_LIMITED", 429),
    PairRateLimited => ("PAIR_RATE_LIMITED", 429),
    Internal => ("INTERNAL_ERROR", 500),
    NotImplemented => ("NOT_IMPLEMENTED", 501),
    /// A peer this steward called failed or broke the protocol (the message says how).
    PeerUnreachable => ("PEER_UNREACHABLE", 502),
    BootstrapRequired => ("BOOTSTRAP_REQUIRED", 503),
    SearchDisabled => ("SEARCH_DISABLED", 503),
    PairingDisabled => ("PAIRING_DISABLED", 503),
    DidUnresolved => ("DID_UNRESOLVED", 503),
    /// Readiness: the database does not answer or its migrations are behind this build.
    NotReady => ("NOT_READY", 503),
    /// Readiness while the server drains after SIGTERM.
    ShuttingDown => ("SHUTTING_DOWN", 503),
    StoreCeilingReached => ("STORE_CEILING_REACHED", 507),
    QueueFull => ("QUEUE_FULL", 507),
}

impl ErrorCode {
    /// The envelope's `type` member, derived from the status (protocol.md §10.4).
    pub fn error_type(self) -> &'static str {
        match self.http_status() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The error envelope every service answers with:
    /// `{"object":"error","type","code","message","hint"?}`.
    pub fn envelope(self, message: &str, hint: Option<&str>) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("object".into(), "error".into());
        body.insert("type".into(), self.error_type().into());
        body.insert("code".into(), self.as_str().into());
        body.insert("message".into(), message.into());
        if let Some(hint) = hint {
            body.insert("hint".into(), hint.into());
        }
        serde_json::Value::Object(body)
    }

    /// Looks a code up by its wire string (e.g. when relaying a peer's error).
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused for a reason its caller can act on: a stable code, what went wrong and,
/// where it helps, what to do. The crates below the HTTP layer return it inside their own error
/// enums; the steward renders it in the error envelope unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Refusal {
        self.hint = Some(hint.into());
        self
    }

    /// `400 VALIDATION_ERROR`.
    pub fn validation(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::ValidationError, message)
    }

    /// `404 NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::NotFound, message)
    }
}

impl From<ProtocolError> for Refusal {
    fn from(e: ProtocolError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
    }
}

/// Every failure this crate reports. Each variant maps to exactly one
/// [`ErrorCode`] via [`ProtocolError::code`]; `Display` is the human message
/// that goes into the envelope's `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are not acceptable JSON (protocol.md §5 rules 8–10, §10.4).
    #[error("invalid JSON at byte {offset}: {reason}")]
    InvalidJson { offset: usize, reason: &'static str },
    /// A number in a Rust-built value cannot be put into canonical form.
    #[error("invalid number {token:?}: {reason}")]
    InvalidNumber { token: String, reason: &'static str },
    /// An envelope member is missing or malformed.
    #[error("invalid `{field}`: {reason}")]
    Validation { field: &'static str, reason: String },
    /// `body.kind` is present but not a valid kind (protocol.md §4.1).
    #[error("invalid `body.kind` {kind}: {reason}")]
    InvalidKind { kind: String, reason: String },
    /// Namespace id does not match the protocol.md §12.1 grammar.
    #[error("invalid namespace id {namespace:?}: {reason}")]
    NamespaceIdInvalid { namespace: String, reason: String },
    /// Namespace id longer than 256 characters.
    #[error("namespace id is {len} characters long; the limit is {max}")]
    NamespaceIdTooLong { len: usize, max: usize },
    /// Namespace id with more than four segments.
    #[error("namespace id {namespace:?} has {depth} segments; the limit is {max}")]
    NamespaceIdTooDeep {
        namespace: String,
        depth: usize,
        max: usize,
    },
    /// One namespace segment longer than 63 characters.
    #[error("namespace segment {segment:?} is {len} characters long; the limit is {max}")]
    NamespaceSegmentTooLong {
        segment: String,
        len: usize,
        max: usize,
    },
    /// A credential body carries a member that may hold a secret (protocol.md §14).
    #[error("F16: `{kind}` bodies hold handles, not values; member `{field}` is not allowed")]
    SensitiveField { kind: String, field: String },
    /// A `did:key` string that does not encode an Ed25519 public key.
    #[error("invalid did:key {did:?}: {reason}")]
    InvalidDidKey { did: String, reason: &'static str },
    /// A signature that is neither 64 bytes of hex nor of standard base64.
    #[error("malformed signature: {reason}")]
    MalformedSignature { reason: &'static str },
    /// An `Authorization: DIDSig` header that cannot be read (see [`crate::didsig`]).
    #[error("malformed DIDSig authorization: {reason}")]
    MalformedAuthorization { reason: &'static str },
    /// A well-formed signature that does not verify for the key and message.
    #[error("signature does not verify for {did}")]
    SignatureMismatch { did: String },
    /// A signed object (federation-protocol.md §1.1) that carries no `sig`.
    #[error("`sig` is required")]
    SignatureRequired,
    /// 413 `OP_TOO_LARGE`: a did:sync operation over the size limit.
    #[error("operation is {size} bytes; the limit is {max}")]
    OpTooLarge { size: usize, max: usize },
    /// 409 `PREV_MISMATCH`: unknown/nullified/tombstoned `prev`, a replay, a
    /// second genesis, or a fork the recovery rules refuse.
    #[error("prev mismatch: {reason}")]
    PrevMismatch { reason: String },
    /// 403 `KEY_NOT_AUTHORIZED`: the signer is not a rotation key in force.
    #[error("{signer} is not a rotation key in force at prev")]
    KeyNotAuthorized { signer: String },
}

impl ProtocolError {
    /// The stable code for the error envelope.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::InvalidJson { .. } | ProtocolError::InvalidNumber { .. } => {
                ErrorCode::InvalidJson
            }
            ProtocolError::Validation { .. } | ProtocolError::InvalidDidKey { .. } => {
                ErrorCode::ValidationError
            }
            ProtocolError::InvalidKind { .. } => ErrorCode::InvalidKind,
            ProtocolError::NamespaceIdInvalid { .. } => ErrorCode::NamespaceIdInvalid,
            ProtocolError::NamespaceIdTooLong { .. } => ErrorCode::NamespaceIdTooLong,
            ProtocolError::NamespaceIdTooDeep { .. } => ErrorCode::NamespaceIdTooDeep,
            ProtocolError::NamespaceSegmentTooLong { .. } => ErrorCode::NamespaceSegmentTooLong,
            ProtocolError::SensitiveField { .. } => ErrorCode::F16ViolationSensitiveField,
            ProtocolError::MalformedSignature { .. } | ProtocolError::SignatureMismatch { .. } => {
                ErrorCode::SignatureInvalid
            }
            ProtocolError::SignatureRequired => ErrorCode::SignatureRequired,
            ProtocolError::MalformedAuthorization { .. } => ErrorCode::AuthInvalid,
            ProtocolError::OpTooLarge { .. } => ErrorCode::OpTooLarge,
            ProtocolError::PrevMismatch { .. } => ErrorCode::PrevMismatch,
            ProtocolError::KeyNotAuthorized { .. } => ErrorCode::KeyNotAuthorized,
        }
    }

    /// Shorthand for the common envelope-validation failure.
    pub(crate) fn validation(field: &'static str, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::Validation {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn wire_strings_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
    }

    #[test]
    fn types_follow_status() {
        assert_eq!(ErrorCode::InvalidJson.error_type(), "invalid_request_error");
        assert_eq!(ErrorCode::AuthInvalid.error_type(), "authentication_error");
        assert_eq!(ErrorCode::ScopeForbidden.error_type(), "permission_error");
        assert_eq!(ErrorCode::RateLimited.error_type(), "rate_limit_error");
        assert_eq!(ErrorCode::StoreCeilingReached.error_type(), "api_error");
        assert_eq!(ErrorCode::Internal.as_str(), "INTERNAL_ERROR");
        assert_eq!(ErrorCode::Internal.http_status(), 500);
        assert_eq!(ErrorCode::MethodNotAllowed.as_str(), "METHOD_NOT_ALLOWED");
        assert_eq!(ErrorCode::MethodNotAllowed.http_status(), 405);
        assert_eq!(ErrorCode::NotFound.error_type(), "invalid_request_error");
    }

    #[test]
    fn envelope_shape() {
        let body = ErrorCode::HandleTaken.envelope("taken", Some("pick another"));
        assert_eq!(
            body.to_string(),
            r#"{"code":"HANDLE_TAKEN","hint":"pick another","message":"taken","object":"error","type":"invalid_request_error"}"#
        );
        let body = ErrorCode::NotFound.envelope("no", None);
        assert!(body.get("hint").is_none());
    }
}
