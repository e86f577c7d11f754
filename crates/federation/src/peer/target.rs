//! The `allow_private` policy: which peer addresses a hosted steward may not reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// A target refused by the `allow_private = false` policy (travels through reqwest's error chain).
#[derive(Debug)]
pub(crate) struct ForbiddenTarget(pub(crate) String);

impl std::fmt::Display for ForbiddenTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ForbiddenTarget {}

/// True for addresses a hosted steward must not contact: loopback, private, link-local,
/// unspecified, broadcast, shared (100.64/10), "this network" (0/8), IETF protocol assignments
/// (192.0.0/24), benchmarking (198.18/15), reserved (240/4), unique-local IPv6, and the
/// IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96, reached through a translator) IPv6 forms
/// of those.
pub(crate) fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a, b, c) == (192, 0, 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_forbidden_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
}

/// Refuses URLs whose host is `localhost` (or `*.localhost`) or a forbidden literal IP.
pub(crate) fn check_url(url: &Url) -> Result<(), ForbiddenTarget> {
    match url.host() {
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(ForbiddenTarget(format!("host '{name}' is local")));
            }
            Ok(())
        }
        Some(Host::Ipv4(ip)) if is_forbidden_v4(ip) => {
            Err(ForbiddenTarget(format!("address {ip} is not public")))
        }
        Some(Host::Ipv6(ip)) if is_forbidden_v6(ip) => {
            Err(ForbiddenTarget(format!("address {ip} is not public")))
        }
        Some(_) => Ok(()),
        None => Err(ForbiddenTarget("URL has no host".into())),
    }
}

/// A resolver for `allow_private = false` that drops forbidden addresses from DNS answers, so
/// a public name pointing at a private address is refused too.
pub(crate) struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public = public_only(&host, found)?;
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The public addresses of a DNS answer; an empty answer or one with only forbidden addresses
/// is an error ([`ForbiddenTarget`] for the latter).
fn public_only(
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    if found.is_empty() {
        return Err(format!("no addresses for '{host}'").into());
    }
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| !is_forbidden_ip(addr.ip()))
        .collect();
    if public.is_empty() {
        return Err(Box::new(ForbiddenTarget(format!(
            "host '{host}' resolves only to non-public addresses"
        ))));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.100.100.200",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.254",
            "240.0.0.1",
            "255.255.255.254",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "192.0.2.1",
            "198.20.0.1",
        ] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn forbidden_urls() {
        for u in [
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://a.localhost/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://2130706433/",
        ] {
            assert!(check_url(&Url::parse(u).unwrap()).is_err(), "{u}");
        }
        assert!(check_url(&Url::parse("https://alice.dev/t/x").unwrap()).is_ok());
    }

    #[test]
    fn resolver_answers_are_filtered() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let kept = public_only("h", vec![addr("10.0.0.1:0"), addr("1.1.1.1:0")]).unwrap();
        assert_eq!(kept, vec![addr("1.1.1.1:0")]);
        let err = public_only("h", vec![addr("127.0.0.1:0"), addr("[::1]:0")]).unwrap_err();
        assert!(err.downcast_ref::<ForbiddenTarget>().is_some(), "{err}");
        let err = public_only("h", vec![]).unwrap_err();
        assert!(err.downcast_ref::<ForbiddenTarget>().is_none(), "{err}");
    }

    /// A name that resolves to loopback (bypassing the literal check) is refused by the
    /// resolver and classified TARGET_FORBIDDEN through reqwest's error chain.
    #[tokio::test]
    async fn resolved_private_address_is_forbidden() {
        let http = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(PublicOnlyResolver))
            .build()
            .unwrap();
        let err = http.get("http://localhost:1/").send().await.unwrap_err();
        assert_eq!(
            crate::peer::error::classify(&err).code(),
            "TARGET_FORBIDDEN",
            "{err:?}"
        );
    }
}
