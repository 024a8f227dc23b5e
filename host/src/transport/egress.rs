//! Where a guest's requests may connect: the guard under `signed-http`'s allowlist.
//!
//! The allowlist in `runtime/caps/http.rs` matches the URL's origin as written. That is not enough for a
//! host *name*: `allowed.example.com` may resolve to 127.0.0.1, to an address on the private
//! network, or to the cloud metadata service, now or after a DNS change (rebinding). So every
//! name is resolved here, by the HTTP client's resolver, on every new connection, and a name whose
//! answers include such an address is refused before any byte is sent. The refusal reaches the
//! guest as `http-error::denied`.
//!
//! IP literals never pass through a resolver. An operator who lists `http://127.0.0.1:8080` in
//! `allowed_hosts` has named that address on purpose (tests and the demo reach the simulator so),
//! and the allowlist has already matched it exactly.
//!
//! A plugin with `allow_private_addresses = true` may reach names that resolve to loopback and
//! private addresses (an internal gateway); the metadata services and the unspecified address stay
//! refused even then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Error, Result};

/// The two HTTP clients plugins share: one refuses private addresses, one allows them.
#[derive(Clone)]
pub(crate) struct Clients {
    guarded: reqwest::Client,
    private_allowed: reqwest::Client,
}

impl Clients {
    /// Builds both clients: no redirects followed, no proxy from the environment (a proxy would
    /// resolve the name itself, out of the guard's sight).
    pub(crate) fn new() -> Result<Clients> {
        let build = |policy: Policy| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { policy }))
                .connect_timeout(std::time::Duration::from_secs(5))
                .user_agent(concat!("coupon-host/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::runtime_from("cannot build the HTTP client", e))
        };
        Ok(Clients {
            guarded: build(Policy::PublicOnly)?,
            private_allowed: build(Policy::PrivateAllowed)?,
        })
    }

    /// The client for a plugin, by its `allow_private_addresses`.
    pub(crate) fn for_plugin(&self, allow_private_addresses: bool) -> reqwest::Client {
        if allow_private_addresses {
            self.private_allowed.clone()
        } else {
            self.guarded.clone()
        }
    }
}

/// Which resolved addresses a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Only globally routable addresses.
    PublicOnly,
    /// Loopback and private networks too, but never a metadata service or the unspecified address.
    PrivateAllowed,
}

/// Why an address is refused, or `None` when `policy` allows it.
pub(crate) fn refusal(ip: IpAddr, policy: Policy) -> Option<&'static str> {
    let ip = match ip {
        // An IPv4 address written as IPv6 (::ffff:a.b.c.d, or NAT64 64:ff9b::a.b.c.d) reaches the
        // IPv4 host: judge that one.
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    if is_metadata(ip) {
        return Some("a cloud metadata address");
    }
    if ip.is_unspecified() || matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 0) {
        return Some("an unspecified address");
    }
    if policy == Policy::PrivateAllowed {
        return None;
    }
    let private = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                // Shared address space (carrier-grade NAT), which cloud providers use inside.
                || (a == 100 && (64..128).contains(&b))
                // Benchmarking networks.
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, deprecated site-local fec0::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
        }
    };
    private.then_some("a loopback, private or link-local address")
}

/// The cloud instance-metadata services: AWS, GCP, Azure, Alibaba Cloud, and AWS's IPv6 one.
fn is_metadata(ip: IpAddr) -> bool {
    const V4: [Ipv4Addr; 2] = [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(100, 100, 100, 200),
    ];
    const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => V4.contains(&v4),
        IpAddr::V6(v6) => v6 == V6,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = v6.octets();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// The refusal a resolver hands to the HTTP client; `caps/http.rs` finds it in the error's
/// source chain and answers the guest `denied`.
#[derive(Debug)]
pub(crate) struct EgressRefused {
    pub(crate) name: String,
    pub(crate) why: &'static str,
}

impl std::fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves to {}, which plugins may not reach (allow_private_addresses)",
            self.name, self.why
        )
    }
}

impl std::error::Error for EgressRefused {}

/// Resolves with the system resolver, then refuses the whole name if any answer is refused: a
/// name that mixes public and private answers is the shape of a rebinding attack.
struct GuardedResolver {
    policy: Policy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            check(&name, &addrs, policy)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn check(name: &str, addrs: &[SocketAddr], policy: Policy) -> Result<(), EgressRefused> {
    for addr in addrs {
        if let Some(why) = refusal(addr.ip(), policy) {
            return Err(EgressRefused {
                name: name.to_owned(),
                why,
            });
        }
    }
    Ok(())
}

/// The refusal inside a transport error, if the guard caused it.
pub(crate) fn refused_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a EgressRefused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<EgressRefused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_loopback_private_link_local_and_metadata_addresses() {
        for text in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(
                refusal(ip(text), Policy::PublicOnly).is_some(),
                "{text} must be refused"
            );
        }
    }

    #[test]
    fn allows_public_addresses() {
        for text in [
            "1.1.1.1",
            "140.205.94.189",
            "172.32.0.1",
            "100.128.0.1",
            "2400:3200::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refusal(ip(text), Policy::PublicOnly), None, "{text}");
        }
    }

    #[test]
    fn the_opt_in_allows_private_networks_but_never_metadata() {
        for text in ["127.0.0.1", "10.0.0.1", "192.168.0.1", "fd12::1", "::1"] {
            assert_eq!(refusal(ip(text), Policy::PrivateAllowed), None, "{text}");
        }
        for text in [
            "169.254.169.254",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "::",
        ] {
            assert!(
                refusal(ip(text), Policy::PrivateAllowed).is_some(),
                "{text} must stay refused"
            );
        }
    }

    #[test]
    fn one_refused_answer_refuses_the_name() {
        let addrs: Vec<SocketAddr> = ["93.184.216.34:443", "127.0.0.1:443"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let refused = check("rebind.example", &addrs, Policy::PublicOnly).unwrap_err();
        assert!(refused.to_string().contains("rebind.example"), "{refused}");
        assert!(check("ok.example", &addrs[..1], Policy::PublicOnly).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_for_loopback() {
        let resolver = GuardedResolver {
            policy: Policy::PublicOnly,
        };
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error,
        };
        assert!(refused_in(error.as_ref()).is_some(), "{error}");
        let open = GuardedResolver {
            policy: Policy::PrivateAllowed,
        };
        let addrs: Vec<_> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(error) => panic!("the opt-in resolves localhost: {error}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
