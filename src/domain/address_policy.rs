//! Which addresses the gateway may connect to (the SSRF guard). A destination URL is chosen by
//! a tenant, so without this a tenant could make the gateway call the cloud metadata service
//! or an internal admin port and read the answer back from the attempt. Pure: the delivery
//! client asks it for every address a name resolves to, and for IP literals before connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the operator allows (`delivery.block_private_networks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// Also refuse loopback, RFC 1918, CGNAT and unique-local addresses.
    pub block_private_networks: bool,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 169.254/16 and fe80::/10: cloud metadata services live here. Always refused.
    LinkLocal,
    /// 0.0.0.0/8 and `::`: "this host" on most stacks. Always refused.
    Unspecified,
    /// Multicast and broadcast. Always refused.
    Multicast,
    /// Loopback, RFC 1918, CGNAT (100.64/10) or ULA (fc00::/7), with `block_private_networks`.
    Private,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::LinkLocal => "a link-local address (cloud metadata)",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Multicast => "a multicast or broadcast address",
            Refusal::Private => "a private network address (delivery.block_private_networks)",
        }
    }
}

impl AddressPolicy {
    /// `None` when the gateway may connect to `ip`.
    pub fn refusal(self, ip: IpAddr) -> Option<Refusal> {
        match ip {
            IpAddr::V4(v4) => self.refusal_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                // `::ffff:169.254.169.254` reaches the IPv4 address: judge that one.
                Some(v4) => self.refusal_v4(v4),
                None => self.refusal_v6(v6),
            },
        }
    }

    fn refusal_v4(self, ip: Ipv4Addr) -> Option<Refusal> {
        let [a, b, ..] = ip.octets();
        if ip.is_link_local() {
            Some(Refusal::LinkLocal)
        } else if a == 0 {
            Some(Refusal::Unspecified)
        } else if ip.is_multicast() || ip.is_broadcast() {
            Some(Refusal::Multicast)
        } else if self.block_private_networks
            && (ip.is_loopback() || ip.is_private() || (a == 100 && (64..128).contains(&b)))
        {
            Some(Refusal::Private)
        } else {
            None
        }
    }

    fn refusal_v6(self, ip: Ipv6Addr) -> Option<Refusal> {
        let first = ip.segments()[0];
        if first & 0xffc0 == 0xfe80 {
            Some(Refusal::LinkLocal)
        } else if ip.is_unspecified() {
            Some(Refusal::Unspecified)
        } else if ip.is_multicast() {
            Some(Refusal::Multicast)
        } else if self.block_private_networks && (ip.is_loopback() || first & 0xfe00 == 0xfc00) {
            Some(Refusal::Private)
        } else {
            None
        }
    }
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks) or NAT64 (`64:ff9b::a.b.c.d`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    // `::` and `::1` are IPv6's own unspecified and loopback, not IPv4-compatible forms.
    let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || compatible || nat64).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: AddressPolicy = AddressPolicy {
        block_private_networks: false,
    };
    const STRICT: AddressPolicy = AddressPolicy {
        block_private_networks: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_unspecified_and_multicast_are_always_refused() {
        for (addr, why) in [
            ("169.254.169.254", Refusal::LinkLocal),
            ("169.254.0.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("::169.254.169.254", Refusal::LinkLocal),
            ("64:ff9b::a9fe:a9fe", Refusal::LinkLocal),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("::ffff:0.0.0.0", Refusal::Unspecified),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("255.255.255.255", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
        ] {
            assert_eq!(OPEN.refusal(ip(addr)), Some(why), "{addr}");
            assert_eq!(STRICT.refusal(ip(addr)), Some(why), "{addr}");
        }
    }

    #[test]
    fn private_networks_are_refused_only_when_asked() {
        for addr in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a01:203",
        ] {
            assert_eq!(OPEN.refusal(ip(addr)), None, "{addr}");
            assert_eq!(STRICT.refusal(ip(addr)), Some(Refusal::Private), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass_either_way() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "fec0::1",
        ] {
            assert_eq!(OPEN.refusal(ip(addr)), None, "{addr}");
            assert_eq!(STRICT.refusal(ip(addr)), None, "{addr}");
        }
    }
}
