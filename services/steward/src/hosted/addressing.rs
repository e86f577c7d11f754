//! Which tenant a hosted request names: the Host header (`<label>.<base-domain>`) or a path
//! prefix (`/<prefix>/<label>/…`), decided by [`Addressing`] before routing. Never from the body,
//! a DID claim or the token: a token is looked up within the tenant the address names, so a
//! token of another tenant is simply unknown.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// Where a hosted request was addressed; put into the request's extensions by [`address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addressed {
    Tenant(String),
    /// The platform host itself: provisioning lives here.
    Platform,
    /// A host that is neither: only the open health routes answer.
    Elsewhere,
}

/// How hosted requests name their tenant.
#[derive(Clone, Debug)]
pub struct Addressing {
    /// Lower-case, without a port: tenants are `<label>.<base_domain>`, the platform is the base
    /// domain itself.
    pub base_domain: String,
    /// With a prefix (`/t`), tenants are addressed as `/t/<label>/v1/…` on any host instead.
    pub path_prefix: Option<String>,
}

impl Addressing {
    /// Classifies a request; in path mode also strips `/<prefix>/<label>` from its URI.
    pub fn resolve(&self, request: &mut Request) -> Addressed {
        match &self.path_prefix {
            Some(prefix) => self.by_path(prefix, request),
            None => self.by_host(request),
        }
    }

    fn by_host(&self, request: &Request) -> Addressed {
        // An absolute request target (or HTTP/2 `:authority`) names the host over any Host header
        // (RFC 9112 §3.2.2), as the ingress in front routes by it.
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        let host = strip_port(host).to_ascii_lowercase();
        if host == self.base_domain {
            return Addressed::Platform;
        }
        match host
            .strip_suffix(self.base_domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
        {
            Some(label) if !label.is_empty() && !label.contains('.') => {
                Addressed::Tenant(label.to_string())
            }
            _ => Addressed::Elsewhere,
        }
    }

    fn by_path(&self, prefix: &str, request: &mut Request) -> Addressed {
        let path = request.uri().path();
        let Some(rest) = path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Addressed::Platform;
        };
        let (label, remainder) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if label.is_empty() {
            return Addressed::Platform;
        }
        let label = label.to_ascii_lowercase();
        let rewritten = match request.uri().query() {
            Some(q) => format!("{remainder}?{q}"),
            None => remainder.to_string(),
        };
        match rewritten.parse::<Uri>() {
            Ok(uri) => {
                *request.uri_mut() = uri;
                Addressed::Tenant(label)
            }
            Err(_) => Addressed::Elsewhere,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host; // an IPv6 literal never names a tenant
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Middleware wrapped around the whole router (it may rewrite the URI, so it must run before
/// routing): records where the request was addressed.
pub async fn address(
    State(addressing): State<Arc<Addressing>>,
    mut request: Request,
    next: Next,
) -> Response {
    let addressed = addressing.resolve(&mut request);
    request.extensions_mut().insert(addressed);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, path: &str) -> Request {
        Request::builder()
            .uri(path)
            .header(header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn hosts_name_tenants_under_the_base_domain_only() {
        let by_host = Addressing {
            base_domain: "steward.example".into(),
            path_prefix: None,
        };
        let cases = [
            ("acme.steward.example", Addressed::Tenant("acme".into())),
            (
                "ACME.Steward.Example:8443",
                Addressed::Tenant("acme".into()),
            ),
            ("steward.example", Addressed::Platform),
            ("steward.example:8080", Addressed::Platform),
            ("a.b.steward.example", Addressed::Elsewhere),
            ("evilsteward.example", Addressed::Elsewhere),
            (".steward.example", Addressed::Elsewhere),
            ("10.0.0.7:8080", Addressed::Elsewhere),
            ("[::1]:8080", Addressed::Elsewhere),
        ];
        let mut absolute = request(
            "acme.steward.example",
            "http://other.steward.example/v1/records",
        );
        assert_eq!(
            by_host.resolve(&mut absolute),
            Addressed::Tenant("other".into()),
            "the request target's authority wins over Host"
        );
        for (host, expected) in cases {
            assert_eq!(
                by_host.resolve(&mut request(host, "/v1/records")),
                expected,
                "{host}"
            );
        }
    }

    #[test]
    fn a_path_prefix_names_the_tenant_and_is_stripped() {
        let by_path = Addressing {
            base_domain: "steward.example".into(),
            path_prefix: Some("/t".into()),
        };
        let mut req = request("anything", "/t/acme/v1/records?thread=th_a&limit=2");
        assert_eq!(by_path.resolve(&mut req), Addressed::Tenant("acme".into()));
        assert_eq!(req.uri(), "/v1/records?thread=th_a&limit=2");
        let mut bare = request("anything", "/t/acme");
        assert_eq!(by_path.resolve(&mut bare), Addressed::Tenant("acme".into()));
        assert_eq!(bare.uri(), "/");
        for path in ["/provision", "/t/", "/tx/acme/v1/records", "/health"] {
            let mut req = request("anything", path);
            assert_eq!(by_path.resolve(&mut req), Addressed::Platform, "{path}");
            assert_eq!(req.uri(), path);
        }
    }
}
