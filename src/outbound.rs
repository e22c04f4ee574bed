//! Where the router may send requests whose destination someone else
//! chooses: the location server a caller names in its Geolocation header
//! ([`crate::held`]) and the security desk webhook a tenant admin sets
//! ([`crate::notify`]). Both are refused the router's own host (loopback,
//! unspecified, any address of its own interfaces), link-local addresses
//! (where cloud metadata services answer, 169.254.169.254), multicast,
//! broadcast and reserved addresses, however the address is spelled, unless
//! the operator allows the destination in the configuration. Private
//! networks are not refused: carriers' location servers and tenants' desks
//! often live there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Why `ip` is not a destination the router sends to on someone else's
/// word, or `None` when it is one. Every spelling of an address counts as
/// the address: an IPv4 address written as IPv6 (`::ffff:127.0.0.1`,
/// `::127.0.0.1`, `::ffff:0:127.0.0.1`, NAT64 `64:ff9b::127.0.0.1`, 6to4
/// `2002:7f00:1::`) is judged as the IPv4 address it carries. Pure: see
/// [`own_address`] for the router's own interfaces.
pub fn reserved(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => reserved_v4(a),
        IpAddr::V6(a) => reserved_v6(a),
    }
}

fn reserved_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [first, ..] = a.octets();
    if a.is_loopback() {
        Some("a loopback address (the router's own host)")
    } else if first == 0 {
        // 0.0.0.0/8, "this network": 0.0.0.0 reaches the router's own host.
        Some("an unspecified address (the router's own host)")
    } else if a.is_link_local() {
        Some("a link-local address (where cloud metadata services answer)")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if first >= 240 {
        Some("a reserved address (240.0.0.0/4)")
    } else {
        None
    }
}

fn reserved_v6(a: Ipv6Addr) -> Option<&'static str> {
    if a.is_loopback() {
        return Some("a loopback address (the router's own host)");
    }
    if a.is_unspecified() {
        return Some("an unspecified address (the router's own host)");
    }
    if a.is_multicast() {
        return Some("a multicast address");
    }
    if a.is_unicast_link_local() {
        return Some("a link-local address (where cloud metadata services answer)");
    }
    if (a.segments()[0] & 0xffc0) == 0xfec0 {
        // Deprecated site-local (RFC 3879): scoped like link-local.
        return Some("a site-local address (deprecated, scoped)");
    }
    let s = a.segments();
    let o = a.octets();
    let v4 = |i: usize| Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]);
    if s[..5] == [0; 5] && s[5] == 0xffff {
        // IPv4-mapped, ::ffff:a.b.c.d: the IPv4 address itself.
        return reserved_v4(v4(12));
    }
    if s[..6] == [0; 6] {
        // IPv4-compatible, ::a.b.c.d (deprecated, RFC 4291 2.5.5.1): never
        // a real destination, and stacks that still take it reach the IPv4
        // address.
        return reserved_v4(v4(12)).or(Some("an IPv4-compatible IPv6 address (deprecated)"));
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        // IPv4-translated, ::ffff:0:a.b.c.d (RFC 2765).
        return reserved_v4(v4(12));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix (RFC 6052): a translator reaches a.b.c.d.
        return reserved_v4(v4(12));
    }
    if s[0] == 0x2002 {
        // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 leads to a.b.c.d.
        return reserved_v4(v4(2));
    }
    None
}

/// Whether `ip` is an address of one of the router's own interfaces, so
/// that a request to it reaches the router's host (its admin API, its
/// metrics, anything else listening there). Asked of the kernel: a route to
/// one of the host's own addresses leaves from that very address. Works
/// whatever addresses the router listens on, wildcards included, and
/// follows addresses added after start.
pub fn own_address(ip: IpAddr) -> bool {
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(sock) = std::net::UdpSocket::bind(any) else {
        return false;
    };
    // Connecting a UDP socket sends nothing: it only picks the route and
    // the source address.
    sock.connect((ip, 9)).is_ok() && sock.local_addr().is_ok_and(|l| l.ip() == ip)
}

/// Why the router may not send to `ip` unless the operator allows it:
/// [`reserved`], or one of the router's own addresses ([`own_address`]).
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    reserved(ip).or_else(|| {
        let ip = ip.to_canonical();
        own_address(ip).then_some("one of the router's own addresses")
    })
}

/// `localhost` and the names below it, which name the router's own host
/// whatever a resolver makes of them (RFC 6761 section 6.3), a trailing
/// dot or not.
fn loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// One entry of an operator's list of allowed destinations: an IP address
/// or network (`"10.0.0.0/8"`, `"192.0.2.7"`, `"[2001:db8::7]"`), a host
/// name, or `.domain` for every host below it. Names are compared as
/// written in the URL (case and a trailing dot aside), and a listed name
/// is sent to whatever it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Net(IpNet),
    Host(String),
    Below(String),
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        let t = s.trim();
        let bare = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(net) = bare.parse::<IpNet>() {
            return Ok(Destination::Net(net.trunc()));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Destination::Net(IpNet::from(ip)));
        }
        let name = t.trim_end_matches('.').to_ascii_lowercase();
        let (below, labels) = match name.strip_prefix('.') {
            Some(d) => (true, d),
            None => (false, name.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if labels.is_empty() || labels.len() > 253 || !labels.split('.').all(label_ok) {
            return Err(format!(
                "{s:?} is not an IP address, a network (10.0.0.0/8), a host name or a .domain"
            ));
        }
        Ok(if below {
            Destination::Below(labels.to_string())
        } else {
            Destination::Host(labels.to_string())
        })
    }
}

impl<'de> serde::Deserialize<'de> for Destination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Destination, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the operator allows besides the policy: the destinations of
/// `emergency.webhook_destinations`.
#[derive(Debug, Clone, Default)]
pub struct Allowed(Arc<[Destination]>);

impl Allowed {
    pub fn new(list: &[Destination]) -> Allowed {
        Allowed(list.into())
    }

    /// Whether the host name (as in the URL) is listed by name.
    pub fn host_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|d| match d {
            Destination::Host(h) => host == *h,
            Destination::Below(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.ends_with('.')),
            Destination::Net(_) => false,
        })
    }

    /// Whether `ip`, in any of its spellings, is in a listed network.
    pub fn address_listed(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.0.iter().any(|d| match d {
            Destination::Net(n) => n.contains(&ip) || n.contains(&canonical),
            _ => false,
        })
    }

    /// Whether `host` is `localhost` or below it, and the operator allows
    /// neither the name nor a loopback address.
    fn loopback_name_refused(&self, host: &str) -> bool {
        loopback_name(host)
            && !self.host_listed(host)
            && !self.address_listed(Ipv4Addr::LOCALHOST.into())
            && !self.address_listed(Ipv6Addr::LOCALHOST.into())
    }

    /// Why the router may not send to `ip`, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.address_listed(ip) {
            None
        } else {
            refused(ip)
        }
    }

    /// Checks what can be checked of `url` without resolving names: an
    /// http or https URL with a host; an IP address host the policy
    /// allows. Gives the host name to resolve, or `None` when nothing is
    /// left to check (an IP address, or a listed name).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<Option<String>, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err("an http:// or https:// URL is needed".into());
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err("the URL has no host".into());
        };
        // The URL parser writes an IP address in its plain form however it
        // was spelled (decimal, hex, octal, short IPv4 forms; IPv6 in
        // brackets), so this sees the address the request would go to.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return match self.refusal(ip) {
                Some(why) => Err(format!("{host} is {why}")),
                None => Ok(None),
            };
        }
        if self.host_listed(host) {
            return Ok(None);
        }
        if self.loopback_name_refused(host) {
            return Err(format!("{host} is a loopback name (the router's own host)"));
        }
        Ok(Some(host.to_string()))
    }

    /// [`Allowed::check_url`], and a host name resolved (within `timeout`)
    /// with every address it resolves to checked. A name that does not
    /// resolve now passes: each request resolves it again and goes only
    /// to addresses the policy allows.
    pub async fn check_url_resolved(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
    ) -> Result<(), String> {
        let Some(host) = self.check_url(url)? else {
            return Ok(());
        };
        let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)));
        let Ok(Ok(addrs)) = lookup.await else {
            return Ok(());
        };
        for a in addrs {
            if let Some(why) = self.refusal(a.ip()) {
                return Err(format!("{host} resolves to {}, {why}", a.ip()));
            }
        }
        Ok(())
    }

    /// The addresses `name` resolves to that the policy allows (all of
    /// them for a listed name); an error when none is left.
    pub async fn resolve(&self, name: &str) -> std::io::Result<Vec<SocketAddr>> {
        if self.loopback_name_refused(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{name} is a loopback name (the router's own host)"),
            ));
        }
        let all = tokio::net::lookup_host((name, 0)).await?;
        if self.host_listed(name) {
            return Ok(all.collect());
        }
        let kept: Vec<SocketAddr> = all.filter(|a| self.refusal(a.ip()).is_none()).collect();
        if kept.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{name} resolves to no address the router may send to (the router's own host, link-local and the like need the operator's allowance)"),
            ));
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    /// Every spelling of a refused address is refused; ordinary and
    /// private addresses are not.
    #[test]
    fn every_spelling_of_a_refused_address_is_refused() {
        let none = Allowed::default();
        // (URL, refused)
        let cases = [
            ("http://127.0.0.1:8080/v1/reload", true),
            ("http://127.9.9.9/", true),
            ("http://localhost./x", true), // RFC 6761: the host itself
            ("http://LocalHost/x", true),
            ("http://admin.localhost/x", true),
            ("http://localhost.example/x", false), // a name: checked when resolved
            ("http://2130706433/", true),          // decimal
            ("http://0x7f000001/", true),          // hex
            ("http://0x7f.0.0.1/", true),
            ("http://0177.0.0.1/", true), // octal
            ("http://017700000001/", true),
            ("http://127.1/", true),
            ("http://127.0.0.1./", true),   // trailing dot
            ("http://127.0.0.1%2e/", true), // percent-encoded dot
            ("http://%31%32%37.0.0.1/", true),
            ("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", true), // full-width digits
            ("http://user:pw@127.0.0.1/", true),
            ("http://0.0.0.0/", true),
            ("http://0/", true),
            ("http://0.1.2.3/", true),
            ("http://[::]/", true),
            ("http://[::1]:9090/metrics", true),
            ("http://[0:0:0:0:0:0:0:1]/", true),
            ("http://[::ffff:127.0.0.1]/", true), // IPv4-mapped
            ("http://[::ffff:7f00:1]/", true),
            ("http://[::127.0.0.1]/", true), // IPv4-compatible
            ("http://[::7f00:1]/", true),
            ("http://[::8.8.8.8]/", true), // IPv4-compatible: deprecated
            ("http://[::ffff:0:127.0.0.1]/", true),
            ("http://[64:ff9b::127.0.0.1]/", true), // NAT64
            ("http://[64:ff9b::169.254.169.254]/", true),
            ("http://[2002:7f00:1::]/", true), // 6to4
            ("http://[2002:a9fe:a9fe::1]/", true),
            ("http://169.254.169.254/latest/meta-data", true),
            ("http://[::ffff:169.254.169.254]/", true),
            ("http://[fe80::1]/", true),
            ("http://[fec0::1]/", true),
            ("http://224.0.0.1/", true),
            ("http://[ff02::1]/", true),
            ("http://255.255.255.255/", true),
            ("http://240.0.0.1/", true),
            ("http://8.8.8.8/", false),
            ("http://10.1.2.3:8080/held", false),
            ("http://192.168.1.10/", false),
            ("http://100.64.0.1/", false),
            ("http://[2001:db8::7]/held", false),
            ("http://[fd00::1]/", false),
            ("http://[::ffff:8.8.8.8]/", false),
            ("http://[64:ff9b::808:808]/", false),
            ("https://desk.example.net/hook", false),
        ];
        for (u, want) in cases {
            let got = none.check_url(&url(u));
            assert_eq!(got.is_err(), want, "{u}: {got:?}");
        }
        // Not URLs the router sends to.
        for u in [
            "ftp://192.0.2.1/",
            "file:///etc/passwd",
            "data:text/plain,x",
        ] {
            assert!(none.check_url(&url(u)).is_err(), "{u}");
        }
        // Said why.
        let e = none.check_url(&url("http://[::127.0.0.1]/")).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let e = none.check_url(&url("http://169.254.169.254/")).unwrap_err();
        assert!(e.contains("link-local"), "{e}");
    }

    #[test]
    fn the_operator_allows_networks_and_names() {
        let list: Vec<Destination> = [
            "127.0.0.1",
            "10.0.0.0/8",
            "[fd00::/8]",
            "desk.example.net",
            ".desks.example",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let allowed = Allowed::new(&list);
        let cases = [
            ("http://127.0.0.1:9000/hook", true),
            ("http://[::ffff:127.0.0.1]:9000/hook", true),
            ("http://127.0.0.2/", false),
            ("http://[::1]/", false),
            ("http://169.254.169.254/", false),
            ("http://10.9.9.9/", true),
            ("http://[fd00::1]/", true),
            ("http://DESK.example.net./hook", true),
            ("http://a.desks.example/hook", true),
            ("http://desks.example/hook", true), // a name, checked when resolved
        ];
        for (u, want) in cases {
            assert_eq!(allowed.check_url(&url(u)).is_ok(), want, "{u}");
        }
        assert!(allowed.host_listed("a.desks.example"));
        assert!(!allowed.host_listed("desks.example"));
        assert!(!allowed.host_listed("evil-desk.example.net"));
        assert!("not a name!".parse::<Destination>().is_err());
        assert!("".parse::<Destination>().is_err());
        assert!("10.0.0.0/33".parse::<Destination>().is_err());
    }

    #[test]
    fn the_routers_own_addresses_are_its_own() {
        assert!(own_address("127.0.0.1".parse().unwrap()));
        assert!(!own_address("192.0.2.1".parse().unwrap()));
        // Any address of an interface of this host, found as the source of
        // a route outwards.
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        if sock.connect("192.0.2.1:9").is_ok() {
            let ip = sock.local_addr().unwrap().ip();
            assert!(own_address(ip), "{ip}");
            assert!(refused(ip).is_some(), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_is_checked_by_what_it_resolves_to() {
        let none = Allowed::default();
        let e = none
            .check_url_resolved(
                &url("http://localhost:8080/v1/reload"),
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(e.contains("loopback name"), "{e}");
        assert!(none.resolve("localhost").await.is_err());
        let listed = Allowed::new(&["localhost".parse().unwrap()]);
        assert!(listed
            .check_url_resolved(&url("http://localhost:8080/hook"), Duration::from_secs(2))
            .await
            .is_ok());
        assert!(!listed.resolve("localhost").await.unwrap().is_empty());
        let net = Allowed::new(&["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(!net.resolve("localhost").await.unwrap().is_empty());
    }
}
