//! Which addresses the router takes requests from: `sip.allow`, every
//! trunk's `sources`, and every trunk whose URI is an IP address. The core
//! asks it for each new request and the TCP acceptor for each connection,
//! so that a stranger gets a 403 without state and cannot hold a TCP slot.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Target, Trunk};

#[derive(Debug, Clone, Default)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    pub fn new(allow: &[IpNet], trunks: &[Trunk]) -> AllowList {
        let mut nets = allow.to_vec();
        for t in trunks {
            nets.extend_from_slice(&t.sources);
            if let Some(Target::Addr(a)) = &t.target {
                nets.push(IpNet::from(a.ip()));
            }
        }
        AllowList { nets }
    }

    /// Whether `ip` may send; an IPv4-mapped IPv6 address is taken as its
    /// IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkKind;
    use crate::proxy::Proto;

    fn trunk(target: Option<Target>, sources: &[&str]) -> Trunk {
        Trunk {
            name: "t".into(),
            kind: TrunkKind::Psap,
            target,
            proto: Proto::Udp,
            tcp_fallback: false,
            sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn allowed_are_the_allow_list_the_trunk_sources_and_the_trunk_addresses() {
        let list = AllowList::new(
            &["10.0.0.0/8".parse().unwrap()],
            &[
                trunk(Some(Target::Addr("192.0.2.7:5060".parse().unwrap())), &[]),
                trunk(None, &["198.51.100.0/24", "2001:db8::/32"]),
            ],
        );
        // (address, allowed)
        let cases = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("198.51.100.200", true),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("::ffff:10.9.9.9", true),
            ("::ffff:11.9.9.9", false),
            ("127.0.0.1", false),
        ];
        for (ip, want) in cases {
            assert_eq!(list.contains(ip.parse().unwrap()), want, "{ip}");
        }
        assert!(!AllowList::default().contains("127.0.0.1".parse().unwrap()));
    }
}
