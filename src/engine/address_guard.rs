//! The SSRF guard at connect time: the delivery client resolves names through
//! `GuardedResolver`, which drops every address `AddressPolicy` refuses, so a name that
//! resolves (or is re-pointed, DNS rebinding) to a refused address cannot be reached; a URL
//! that names an IP literally is judged before any connection is made. Redirects are never
//! followed (the client's policy), so a receiver cannot bounce an attempt elsewhere.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address_policy::{AddressPolicy, Refusal};

/// An attempt refused by the guard; the delivery client maps it to `BLOCKED_ADDRESS`.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to {why} ({ip}); the gateway does not connect there")]
pub struct BlockedAddress {
    pub host: String,
    pub ip: IpAddr,
    pub why: &'static str,
}

/// The IP address a URL names literally (`http://10.0.0.1/`, `http://[::1]/`, and the
/// decimal, octal and hex spellings the URL parser reads as addresses).
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(a) => Some(a.into()),
        url::Host::Ipv6(a) => Some(a.into()),
        url::Host::Domain(_) => None,
    }
}

/// Why `url` is refused before resolving anything, when it names a refused IP.
pub fn literal_refusal(url: &reqwest::Url, policy: AddressPolicy) -> Option<Refusal> {
    literal_ip(url).and_then(|ip| policy.refusal(ip))
}

/// The addresses of `host` the policy allows; an error naming the first refused one when it
/// allows none.
pub fn allowed_addrs(
    host: &str,
    resolved: impl IntoIterator<Item = SocketAddr>,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, BlockedAddress> {
    let mut allowed = Vec::new();
    let mut first_refused = None;
    for addr in resolved {
        match policy.refusal(addr.ip()) {
            None => allowed.push(addr),
            Some(why) => {
                first_refused.get_or_insert((addr.ip(), why));
            }
        }
    }
    match (allowed.is_empty(), first_refused) {
        (true, Some((ip, why))) => Err(BlockedAddress {
            host: host.to_owned(),
            ip,
            why: why.as_str(),
        }),
        _ => Ok(allowed),
    }
}

/// The system resolver (getaddrinfo on tokio's blocking pool, as reqwest's own), filtered.
pub struct GuardedResolver {
    pub policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = allowed_addrs(&host, resolved, policy)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        block_private_networks: true,
    };
    const OPEN: AddressPolicy = AddressPolicy {
        block_private_networks: false,
    };

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 443))
            .collect()
    }

    /// The URL parser turns decimal, octal and hex spellings into the address they name, so
    /// the guard judges what a connection would reach.
    #[test]
    fn every_spelling_of_an_address_is_judged_as_that_address() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]:8080/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert_eq!(
                literal_refusal(&parsed, STRICT),
                Some(Refusal::Private),
                "{url}"
            );
            assert_eq!(literal_refusal(&parsed, OPEN), None, "{url}");
        }
        for url in [
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert_eq!(
                literal_refusal(&parsed, OPEN),
                Some(Refusal::LinkLocal),
                "{url}"
            );
        }
        let named = reqwest::Url::parse("http://receiver.example/").unwrap();
        assert_eq!(literal_ip(&named), None);
    }

    /// A stub resolution: what a name resolves to decides, address by address.
    #[test]
    fn resolved_addresses_are_filtered_and_a_name_with_none_left_is_refused() {
        let metadata =
            allowed_addrs("metadata.internal", addrs(&["169.254.169.254"]), OPEN).unwrap_err();
        assert_eq!(metadata.ip, "169.254.169.254".parse::<IpAddr>().unwrap());
        assert!(metadata.to_string().contains("metadata.internal"));
        for private in [
            "10.0.0.5",
            "192.168.0.10",
            "100.100.1.1",
            "fd00::5",
            "127.0.0.1",
        ] {
            assert!(
                allowed_addrs("internal", addrs(&[private]), STRICT).is_err(),
                "{private}"
            );
            assert_eq!(
                allowed_addrs("internal", addrs(&[private]), OPEN).unwrap(),
                addrs(&[private])
            );
        }
        assert!(allowed_addrs("zero", addrs(&["0.0.0.0"]), OPEN).is_err());
        assert!(allowed_addrs("group", addrs(&["239.1.1.1"]), OPEN).is_err());
        // Mixed answers keep only what may be reached (a rebinding name cannot pick).
        assert_eq!(
            allowed_addrs(
                "mixed",
                addrs(&["169.254.169.254", "93.184.216.34", "10.1.1.1"]),
                STRICT
            )
            .unwrap(),
            addrs(&["93.184.216.34"])
        );
        // Nothing resolved is the resolver's own error, not a refusal.
        assert_eq!(allowed_addrs("none", addrs(&[]), STRICT).unwrap(), vec![]);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback_when_private_is_blocked() {
        let strict = GuardedResolver { policy: STRICT };
        let err = match strict.resolve("localhost".parse().unwrap()).await {
            Err(e) => e,
            Ok(_) => panic!("localhost resolved through a strict guard"),
        };
        assert!(err.downcast_ref::<BlockedAddress>().is_some(), "{err}");
        let open = GuardedResolver { policy: OPEN };
        let found: Vec<SocketAddr> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
