//! DNS discovery: `_syncropel.<domain>` TXT records (PROPOSED format).
//!
//! `"v=spl1; did=did:web:alice.dev; url=https://spl.alice.dev; m=/.well-known/syncropel"`
//!
//! A TXT record only says where to look: the result is a [`DnsCandidate`], and the DID is
//! believed only once the signed manifest at `manifest_url` verifies and names the same DID.

use std::net::SocketAddr;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::Serialize;

use crate::mdns::parse_endpoint;
use crate::DiscoveryError;

/// Where the manifest lives when the record has no `m`.
pub const DEFAULT_MANIFEST_PATH: &str = "/.well-known/syncropel";
/// The only record version understood.
pub const TXT_VERSION: &str = "spl1";

/// A steward a TXT record points at; unverified until its manifest is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsCandidate {
    /// The DID the record claims.
    pub did: String,
    /// The steward's base URL.
    pub url: String,
    /// Where its signed manifest is fetched from (`url` joined with `m`).
    pub manifest_url: String,
}

fn invalid(message: impl Into<String>) -> DiscoveryError {
    DiscoveryError::InvalidTxt(message.into())
}

/// Parses one TXT record's text.
///
/// Rules: `;`-separated `key=value` parts (whitespace around parts and values ignored, empty
/// parts skipped); the first part is `v=spl1`; `did` (a DID) and `url` (http(s) with a host, no
/// query or fragment) are required; `m` is an absolute path, default
/// [`DEFAULT_MANIFEST_PATH`]; a known key may not repeat; values may not be empty; unknown keys
/// are ignored.
pub fn parse_txt_record(text: &str) -> Result<DnsCandidate, DiscoveryError> {
    let mut parts = text.split(';').map(str::trim).filter(|p| !p.is_empty());
    let mut pair = |part: &str| -> Result<(String, String), DiscoveryError> {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("`{part}` is not key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(invalid(format!("`{part}` has an empty key or value")));
        }
        Ok((key.to_string(), value.to_string()))
    };

    match parts.next().map(&mut pair).transpose()? {
        Some((k, v)) if k == "v" && v == TXT_VERSION => {}
        Some((k, v)) if k == "v" => return Err(invalid(format!("unsupported version `{v}`"))),
        _ => return Err(invalid("the record must start with v=spl1")),
    }

    let (mut did, mut url, mut m) = (None, None, None);
    for part in parts {
        let (key, value) = pair(part)?;
        let slot = match key.as_str() {
            "did" => &mut did,
            "url" => &mut url,
            "m" => &mut m,
            "v" => return Err(invalid("`v` may appear only once")),
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(invalid(format!("`{key}` appears more than once")));
        }
    }

    let did = did.ok_or_else(|| invalid("no `did`"))?;
    if !crate::mdns::is_did(&did) {
        return Err(invalid(format!("`{did}` is not a DID")));
    }
    let url = url.ok_or_else(|| invalid("no `url`"))?;
    let base = parse_endpoint(&url)?;
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid(format!("`{url}` has a query or fragment")));
    }
    let path = m.unwrap_or_else(|| DEFAULT_MANIFEST_PATH.to_string());
    // `//host/...` would be resolved as another host: the manifest must come from `url`'s origin.
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(invalid(format!("`m={path}` is not an absolute path")));
    }
    let manifest_url = base
        .join(&path)
        .map_err(|e| invalid(format!("`m={path}`: {e}")))?;
    Ok(DnsCandidate {
        did,
        url,
        manifest_url: manifest_url.to_string(),
    })
}

/// Whether `a` and `b` are URLs of the same origin (scheme, host and port, default ports
/// filled in). A candidate's signed manifest vouches only for the origin its endpoints name, so
/// a copy served from elsewhere must not pass for it.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        // Opaque origins (non-http schemes) never compare equal, which is what refusing needs.
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The record name for `domain`, fully qualified so no search domain is appended.
pub fn txt_name(domain: &str) -> String {
    format!(
        "_syncropel.{}.",
        domain.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// NXDOMAIN, or a name without TXT records; a SERVFAIL or REFUSED is a failure, not absence.
fn is_absent(e: &ResolveError) -> bool {
    e.proto().is_some_and(|p| {
        matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    })
}

/// Looks up `_syncropel` TXT records.
pub struct TxtResolver {
    resolver: TokioResolver,
}

impl TxtResolver {
    /// Uses the system's resolver configuration (`/etc/resolv.conf` and the like).
    pub fn system() -> Result<Self, DiscoveryError> {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| DiscoveryError::Dns {
                name: "system configuration".into(),
                message: e.to_string(),
            })?
            .build();
        Ok(Self { resolver })
    }

    /// Asks only the nameserver at `addr` (UDP, TCP on truncation).
    pub fn with_nameserver(addr: SocketAddr) -> Self {
        let config = ResolverConfig::from_parts(
            None,
            vec![],
            NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
        );
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build();
        Self { resolver }
    }

    /// Every well-formed record at `_syncropel.<domain>`; malformed ones are logged and skipped,
    /// no record at all is an empty list.
    pub async fn lookup(&self, domain: &str) -> Result<Vec<DnsCandidate>, DiscoveryError> {
        let name = txt_name(domain);
        let answer = match self.resolver.txt_lookup(name.as_str()).await {
            Ok(answer) => answer,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(DiscoveryError::Dns {
                    name,
                    message: e.to_string(),
                })
            }
        };
        let mut candidates = Vec::new();
        for txt in answer.iter() {
            // A record longer than 255 bytes arrives as several strings meant to be joined.
            let bytes: Vec<u8> = txt
                .txt_data()
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let parsed = String::from_utf8(bytes)
                .map_err(|_| invalid("not UTF-8"))
                .and_then(|text| parse_txt_record(&text));
            match parsed {
                Ok(candidate) if !candidates.contains(&candidate) => candidates.push(candidate),
                Ok(_) => {}
                Err(e) => tracing::warn!(%name, error = %e, "dns discovery: skipping TXT record"),
            }
        }
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_txt_record(text).unwrap_err().to_string()
    }

    #[test]
    fn full_record() {
        let c = parse_txt_record(
            "v=spl1; did=did:web:alice.dev; url=https://spl.alice.dev; m=/.well-known/syncropel",
        )
        .unwrap();
        assert_eq!(c.did, "did:web:alice.dev");
        assert_eq!(c.url, "https://spl.alice.dev");
        assert_eq!(
            c.manifest_url,
            "https://spl.alice.dev/.well-known/syncropel"
        );
    }

    #[test]
    fn m_defaults_and_can_be_overridden() {
        let c = parse_txt_record("v=spl1;did=did:web:a.dev;url=https://a.dev:8443").unwrap();
        assert_eq!(c.manifest_url, "https://a.dev:8443/.well-known/syncropel");
        let c = parse_txt_record("v=spl1; did=did:web:a.dev; url=https://a.dev; m=/spl/manifest")
            .unwrap();
        assert_eq!(c.manifest_url, "https://a.dev/spl/manifest");
    }

    #[test]
    fn unknown_keys_and_empty_parts_are_ignored() {
        let c =
            parse_txt_record("v=spl1; did=did:web:a.dev; x-future=1; url=https://a.dev;").unwrap();
        assert_eq!(c.did, "did:web:a.dev");
    }

    #[test]
    fn v_is_required_first_and_must_be_spl1() {
        assert!(err("did=did:web:a.dev; url=https://a.dev").contains("start with v=spl1"));
        assert!(err("did=did:web:a.dev; v=spl1; url=https://a.dev").contains("start with v=spl1"));
        assert!(err("v=spl2; did=did:web:a.dev; url=https://a.dev").contains("unsupported"));
        assert!(err("v=spl1; v=spl1; did=did:web:a.dev; url=https://a.dev").contains("only once"));
        assert!(err("").contains("start with v=spl1"));
        assert!(err("v=spf1 include:_spf.example.com ~all").contains("unsupported"));
    }

    #[test]
    fn did_is_required_and_must_be_a_did() {
        assert!(err("v=spl1; url=https://a.dev").contains("no `did`"));
        assert!(err("v=spl1; did=alice; url=https://a.dev").contains("not a DID"));
        assert!(err("v=spl1; did=did:web:; url=https://a.dev").contains("not a DID"));
    }

    #[test]
    fn url_is_required_and_must_be_http_with_a_host() {
        assert!(err("v=spl1; did=did:web:a.dev").contains("no `url`"));
        assert!(err("v=spl1; did=did:web:a.dev; url=spl.alice.dev").contains("not a URL"));
        assert!(err("v=spl1; did=did:web:a.dev; url=ftp://a.dev").contains("http(s)"));
        assert!(err("v=spl1; did=did:web:a.dev; url=https://a.dev/?x=1").contains("query"));
    }

    #[test]
    fn m_must_be_an_absolute_path_on_the_same_origin() {
        assert!(
            err("v=spl1; did=did:web:a.dev; url=https://a.dev; m=manifest").contains("absolute")
        );
        assert!(
            err("v=spl1; did=did:web:a.dev; url=https://a.dev; m=//evil.dev/x")
                .contains("absolute")
        );
        assert!(
            err("v=spl1; did=did:web:a.dev; url=https://a.dev; m=https://evil.dev/")
                .contains("absolute")
        );
    }

    #[test]
    fn malformed_parts_are_rejected() {
        assert!(err("v=spl1; did; url=https://a.dev").contains("key=value"));
        assert!(err("v=spl1; did=; url=https://a.dev").contains("empty"));
        assert!(err("v=spl1; =x; did=did:web:a.dev; url=https://a.dev").contains("empty"));
        assert!(
            err("v=spl1; did=did:web:a.dev; did=did:web:b.dev; url=https://a.dev")
                .contains("more than once")
        );
    }

    #[test]
    fn name_is_fully_qualified() {
        assert_eq!(txt_name("Alice.dev."), "_syncropel.alice.dev.");
        assert_eq!(txt_name("alice.dev"), "_syncropel.alice.dev.");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(
            "https://a.dev/v1/sync/changes",
            "https://A.dev:443/spl"
        ));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/x"
        ));
        assert!(!same_origin("https://a.dev", "http://a.dev"));
        assert!(!same_origin("https://a.dev", "https://evil.dev"));
        assert!(!same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(!same_origin("https://a.dev", "not a url"));
        assert!(!same_origin("data:text/plain,x", "data:text/plain,x"));
    }
}
