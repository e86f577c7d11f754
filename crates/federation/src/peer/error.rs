//! The one error type of the crate and the classification of transport failures
//! (federation-protocol.md §5.5).

use std::error::Error as StdError;
use std::io;

use super::target::ForbiddenTarget;

/// A failed call to a peer, classified as in federation-protocol.md §5.5, or a DID that could not
/// be resolved (federation-protocol.md §1.3–1.5; the `Did*` variants, plus the transport classes of
/// the failed fetch).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// The peer is not listening, the connection failed, or the TLS handshake failed (message says
    /// `tls`).
    #[error("connect refused: {0}")]
    ConnectRefused(String),
    /// Connect (5 s), request (30 s) or longpoll (40 s) deadline passed, including a body still
    /// streaming.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The host name does not resolve (no such host / no addresses).
    #[error("dns failure: {0}")]
    DnsFailure(String),
    /// The peer answered 4xx; `code`/`message` come from its ApiError body when it sent one.
    #[error("http {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http4xx {
        /// HTTP status (400..=499).
        status: u16,
        /// The ApiError `code`, when the body was `{"object":"error","code",…}`.
        code: Option<String>,
        /// The ApiError `message`, else a snippet of the body or the status reason.
        message: String,
    },
    /// The peer answered `410 INSTANCE_MOVED` with its new home's signed notice
    /// (federation-protocol.md §8.5), not yet checked.
    #[error("http 410 INSTANCE_MOVED: the peer moved to {moved_to}")]
    Moved {
        moved_to: String,
        notice: Box<serde_json::Value>,
    },
    /// The peer answered 5xx.
    #[error("http {status}: {message}")]
    Http5xx {
        /// HTTP status (500..=599).
        status: u16,
        /// The ApiError `message`, else a snippet of the body or the status reason.
        message: String,
    },
    /// Malformed JSON, wrong response shape, oversize body, or another protocol violation (with
    /// detail).
    #[error("parse error: {0}")]
    Parse(String),
    /// The target was refused by the `allow_private` policy (loopback/private/link-local/… or
    /// `localhost`).
    #[error("target forbidden: {0}")]
    Forbidden(String),
    /// A DID method or form the resolver cannot resolve (e.g. a typed `did:sync:user:alice`).
    #[error("unsupported DID: {0}")]
    DidUnsupported(String),
    /// The DID host or every configured directory answered 404.
    #[error("DID not found: {0}")]
    DidNotFound(String),
    /// A DID document or operation log that is malformed, is for another DID, or does not verify.
    #[error("invalid DID document: {0}")]
    DidInvalid(String),
}

impl PeerError {
    /// The federation-protocol.md §5.5 error-class code: `CONNECT_REFUSED`, `TIMEOUT`,
    /// `DNS_FAILURE`, `HTTP_4XX`,
    /// `HTTP_5XX`, `PARSE_ERROR` or `TARGET_FORBIDDEN`; for resolution failures
    /// `DID_UNSUPPORTED`, `DID_NOT_FOUND` or `DID_INVALID`.
    pub fn code(&self) -> &'static str {
        match self {
            PeerError::ConnectRefused(_) => "CONNECT_REFUSED",
            PeerError::Timeout(_) => "TIMEOUT",
            PeerError::DnsFailure(_) => "DNS_FAILURE",
            PeerError::Http4xx { .. } | PeerError::Moved { .. } => "HTTP_4XX",
            PeerError::Http5xx { .. } => "HTTP_5XX",
            PeerError::Parse(_) => "PARSE_ERROR",
            PeerError::Forbidden(_) => "TARGET_FORBIDDEN",
            PeerError::DidUnsupported(_) => "DID_UNSUPPORTED",
            PeerError::DidNotFound(_) => "DID_NOT_FOUND",
            PeerError::DidInvalid(_) => "DID_INVALID",
        }
    }

    /// The HTTP status for `HTTP_4XX` / `HTTP_5XX`, else `None`.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            PeerError::Http4xx { status, .. } | PeerError::Http5xx { status, .. } => Some(*status),
            PeerError::Moved { .. } => Some(410),
            _ => None,
        }
    }
}

/// The error and all its sources, joined with `": "`.
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Every error in the source chain, starting with `err` itself.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// Classifies a reqwest failure into the federation-protocol.md §5.5 classes.
pub(crate) fn classify(err: &reqwest::Error) -> PeerError {
    let text = chain_text(err);
    if let Some(forbidden) = chain(err).find_map(|e| e.downcast_ref::<ForbiddenTarget>()) {
        return PeerError::Forbidden(forbidden.to_string());
    }
    if err.is_timeout() {
        return PeerError::Timeout(text);
    }
    let io_kind = |kind: io::ErrorKind| {
        chain(err).any(|e| {
            e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == kind)
        })
    };
    if io_kind(io::ErrorKind::ConnectionRefused) {
        return PeerError::ConnectRefused(text);
    }
    // hyper-util wraps resolver failures in a ConnectError whose Display is exactly "dns error";
    // getaddrinfo failures surface as "failed to lookup address information".
    if chain(err).any(|e| {
        let t = e.to_string();
        t == "dns error" || t.contains("failed to lookup address")
    }) {
        return PeerError::DnsFailure(text);
    }
    let lower = text.to_ascii_lowercase();
    if err.is_connect() {
        if ["tls", "certificate", "handshake", "rustls"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return PeerError::ConnectRefused(format!("tls: {text}"));
        }
        return PeerError::ConnectRefused(text);
    }
    if err.is_redirect() {
        return PeerError::Parse(format!("redirect: {text}"));
    }
    if err.is_body() || err.is_decode() {
        return PeerError::Parse(format!("response body: {text}"));
    }
    if err.is_builder() {
        return PeerError::Parse(format!("request: {text}"));
    }
    PeerError::ConnectRefused(text)
}
