//! Finding a next hop given by name (RFC 3263), off the core's task.
//!
//! A name with no port: its NAPTR records for the message's transport
//! (`SIP+D2U` for UDP, `SIP+D2T` for TCP, `SIPS+D2T` for TLS) name SRV
//! records, in order and preference; without them, the SRV records at
//! `_sip._udp`, `_sip._tcp` or `_sips._tcp` under the name. The SRV
//! targets are ordered by priority, and by weight at random within one
//! priority (RFC 2782); each target's addresses (A, AAAA) follow, in that
//! order, so that a proxy failing over walks them one by one. With no SRV
//! record, the name's own addresses on the transport's default port.
//!
//! A name with a port: its addresses on that port.
//!
//! DNS goes to `sip.nameservers` through hickory-resolver, or to the
//! system's servers; with no servers configured, a name with a port is
//! looked up as before SRV existed here, by the system resolver (which
//! reads `/etc/hosts` and whatever the host's name service says).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::config::DnsSettings;
use crate::wire::Proto;

/// The most targets kept for one name: each is a failover step of every
/// call to it, so a name that lists more (or an answer built to) must not
/// hold a call for ever before the next trunk.
pub const MAX_TARGETS: usize = 16;

/// The targets of a name, in the order to try them, and how long the
/// answer holds (the shortest TTL of the records it came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub addrs: Vec<SocketAddr>,
    pub ttl: Option<Duration>,
}

/// A DNS resolver for next hops.
#[derive(Clone)]
pub struct Dns {
    resolver: Option<Arc<TokioResolver>>,
    /// `sip.nameservers` was given: every name goes to them.
    configured: bool,
    timeout: Duration,
}

impl Dns {
    /// A resolver on `settings`; when the system's DNS configuration cannot
    /// be read, names with a port still resolve through the system
    /// resolver, and names without one on the default port.
    pub fn new(settings: &DnsSettings) -> Dns {
        let built = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| e.to_string())
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|ns| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = ns.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = ns.port();
                    NameServerConfig::new(ns.ip(), true, vec![udp, tcp])
                })
                .collect();
            Ok(Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioRuntimeProvider::default(),
            ))
        };
        let resolver = built.and_then(|mut b| {
            b.options_mut().timeout = settings.timeout;
            b.options_mut().attempts = 1;
            b.build().map_err(|e| e.to_string())
        });
        let resolver = match resolver {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "DNS: the system's configuration could not be read; SRV and NAPTR records are not looked up");
                None
            }
        };
        Dns {
            resolver,
            configured: !settings.nameservers.is_empty(),
            timeout: settings.timeout,
        }
    }

    /// The targets of `host` for a message over `proto`; `port` 0 when the
    /// URI gave none. `None` when nothing was found or the lookups failed.
    /// Addresses of the family the router can send from come first
    /// (`v4`, `v6`: it has sockets of that family).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        proto: Proto,
        v4: bool,
        v6: bool,
    ) -> Option<Found> {
        let found = match (&self.resolver, port) {
            (Some(r), 0) => self.by_srv(r, host, proto).await,
            (Some(r), port) if self.configured => addresses(r, host, port).await,
            (_, port) => {
                let port = if port == 0 { default_port(proto) } else { port };
                system(host, port, self.timeout).await
            }
        };
        found.map(|mut f| {
            // A stable sort: the SRV order stays within each family.
            f.addrs
                .sort_by_key(|a| !(if a.is_ipv4() { v4 } else { v6 }));
            f.addrs.truncate(MAX_TARGETS);
            f
        })
    }

    /// RFC 3263 section 4.1, for a host whose URI gives no transport: the
    /// transport its NAPTR records prefer among those the router speaks
    /// (TLS only when `tls`); without such records, the first of UDP, TCP
    /// and TLS that has SRV records. `None` when neither says (the caller
    /// keeps UDP) or the lookups failed.
    pub async fn transport_of(&self, host: &str, tls: bool) -> Option<Proto> {
        let r = self.resolver.as_ref()?;
        if let Ok(l) = r.lookup(host, RecordType::NAPTR).await {
            let records: Vec<(u16, u16, &[u8], &[u8])> = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::NAPTR(n) => Some((n.order, n.preference, &*n.services, &*n.flags)),
                    _ => None,
                })
                .collect();
            if let Some(p) = naptr_transport(&records, tls) {
                return Some(p);
            }
        }
        for (proto, prefix) in [
            (Proto::Udp, "_sip._udp"),
            (Proto::Tcp, "_sip._tcp"),
            (Proto::Tls, "_sips._tcp"),
        ] {
            if proto == Proto::Tls && !tls {
                continue;
            }
            let Ok(l) = r.lookup(format!("{prefix}.{host}"), RecordType::SRV).await else {
                continue;
            };
            let any = l
                .answers()
                .iter()
                .any(|rec| matches!(&rec.data, RData::SRV(s) if s.target.to_ascii() != "."));
            if any {
                return Some(proto);
            }
        }
        None
    }

    /// RFC 3263 sections 4.1 and 4.2: NAPTR, SRV, then the name itself.
    async fn by_srv(&self, r: &TokioResolver, host: &str, proto: Proto) -> Option<Found> {
        let mut ttl: Option<Duration> = None;
        let mut note = |until: Instant| {
            let left = until.saturating_duration_since(Instant::now());
            ttl = Some(ttl.map_or(left, |t| t.min(left)));
        };
        let (service, prefix) = match proto {
            Proto::Udp => (&b"SIP+D2U"[..], "_sip._udp"),
            Proto::Tcp => (&b"SIP+D2T"[..], "_sip._tcp"),
            Proto::Tls => (&b"SIPS+D2T"[..], "_sips._tcp"),
        };
        let mut srv_names: Vec<(u16, u16, String)> = Vec::new();
        if let Ok(l) = r.lookup(host, RecordType::NAPTR).await {
            note(l.valid_until());
            for rec in l.answers() {
                if let RData::NAPTR(n) = &rec.data {
                    if n.services.eq_ignore_ascii_case(service)
                        && n.flags.eq_ignore_ascii_case(b"s")
                    {
                        srv_names.push((n.order, n.preference, n.replacement.to_ascii()));
                    }
                }
            }
        }
        srv_names.sort();
        if srv_names.is_empty() {
            srv_names.push((0, 0, format!("{prefix}.{host}")));
        }
        let mut targets: Vec<(String, u16)> = Vec::new();
        for (_, _, name) in &srv_names {
            let Ok(l) = r.lookup(name.as_str(), RecordType::SRV).await else {
                continue;
            };
            note(l.valid_until());
            let records: Vec<(u16, u16, u16, String)> = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
                    _ => None,
                })
                // "." as the target: no such service there.
                .filter(|(_, _, _, t)| t != ".")
                .collect();
            targets = srv_order(records, rand::random);
            if !targets.is_empty() {
                break;
            }
        }
        if targets.is_empty() {
            let mut f = addresses(r, host, default_port(proto)).await?;
            if let Some(t) = ttl {
                f.ttl = Some(f.ttl.map_or(t, |x| x.min(t)));
            }
            return Some(f);
        }
        let mut addrs = Vec::new();
        for (target, port) in targets {
            if let Some(f) = addresses(r, &target, port).await {
                addrs.extend(f.addrs);
                if let Some(t) = f.ttl {
                    note(Instant::now() + t);
                }
            }
        }
        (!addrs.is_empty()).then_some(Found { addrs, ttl })
    }
}

/// The transport of the most preferred NAPTR record (lowest order, then
/// preference) that leads to SRV records (flag `S`) for a transport the
/// router speaks: `SIP+D2U`, `SIP+D2T`, and `SIPS+D2T` when `tls`.
/// Records for anything else (`SIP+D2S`, `SIPS+D2U`, other services) are
/// passed over.
pub fn naptr_transport(records: &[(u16, u16, &[u8], &[u8])], tls: bool) -> Option<Proto> {
    records
        .iter()
        .filter(|(_, _, _, flags)| flags.eq_ignore_ascii_case(b"s"))
        .filter_map(|&(order, pref, service, _)| {
            let proto = if service.eq_ignore_ascii_case(b"SIP+D2U") {
                Proto::Udp
            } else if service.eq_ignore_ascii_case(b"SIP+D2T") {
                Proto::Tcp
            } else if tls && service.eq_ignore_ascii_case(b"SIPS+D2T") {
                Proto::Tls
            } else {
                return None;
            };
            Some(((order, pref), proto))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, proto)| proto)
}

fn default_port(proto: Proto) -> u16 {
    if proto == Proto::Tls {
        5061
    } else {
        5060
    }
}

/// A name's addresses (A and AAAA) on `port`.
async fn addresses(r: &TokioResolver, host: &str, port: u16) -> Option<Found> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some(Found {
            addrs: vec![SocketAddr::new(ip, port)],
            ttl: None,
        });
    }
    let l = r.lookup_ip(host).await.ok()?;
    let addrs: Vec<SocketAddr> = l.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    let ttl = l.valid_until().saturating_duration_since(Instant::now());
    (!addrs.is_empty()).then_some(Found {
        addrs,
        ttl: Some(ttl),
    })
}

/// The system resolver's addresses for `host:port`.
async fn system(host: &str, port: u16, timeout: Duration) -> Option<Found> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .ok()?
        .ok()?;
    let addrs: Vec<SocketAddr> = found.collect();
    (!addrs.is_empty()).then_some(Found { addrs, ttl: None })
}

/// SRV records `(priority, weight, port, target)` in the order to try
/// them (RFC 2782): by priority, and within one priority by a weighted
/// draw, a record of weight 0 having a small chance of its own. `draw`
/// gives a random u32.
pub fn srv_order(
    mut records: Vec<(u16, u16, u16, String)>,
    mut draw: impl FnMut() -> u32,
) -> Vec<(String, u16)> {
    records.sort_by_key(|r| (r.0, r.1));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].0;
        let end = records.iter().take_while(|r| r.0 == priority).count();
        let mut group: Vec<_> = records.drain(..end).collect();
        while !group.is_empty() {
            // Weights + 1, so that weight 0 can still be drawn (rarely).
            let total: u64 = group.iter().map(|r| u64::from(r.1) + 1).sum();
            let mut pick = u64::from(draw()) % total;
            let mut i = 0;
            while i < group.len() - 1 {
                let w = u64::from(group[i].1) + 1;
                if pick < w {
                    break;
                }
                pick -= w;
                i += 1;
            }
            let (_, _, port, target) = group.remove(i);
            out.push((target.trim_end_matches('.').to_string(), port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: u16, w: u16, port: u16, t: &str) -> (u16, u16, u16, String) {
        (p, w, port, t.to_string())
    }

    #[test]
    fn naptr_records_choose_the_transport_by_order_then_preference() {
        type Record = (u16, u16, &'static [u8], &'static [u8]);
        let r = |o: u16, p: u16, s: &'static str| -> Record { (o, p, s.as_bytes(), &b"S"[..]) };
        let cases: &[(&[Record], bool, Option<Proto>)] = &[
            (
                &[r(10, 10, "SIP+D2T"), r(20, 10, "SIP+D2U")],
                true,
                Some(Proto::Tcp),
            ),
            (
                &[r(20, 10, "SIP+D2T"), r(10, 10, "SIP+D2U")],
                true,
                Some(Proto::Udp),
            ),
            (
                &[r(10, 20, "SIP+D2T"), r(10, 10, "SIP+D2U")],
                true,
                Some(Proto::Udp),
            ),
            (
                &[r(10, 10, "SIPS+D2T"), r(20, 10, "SIP+D2U")],
                true,
                Some(Proto::Tls),
            ),
            // No TLS configured: the next transport the server offers.
            (
                &[r(10, 10, "SIPS+D2T"), r(20, 10, "SIP+D2U")],
                false,
                Some(Proto::Udp),
            ),
            // SCTP and unknown services are passed over; case does not matter.
            (
                &[r(5, 10, "SIP+D2S"), r(9, 1, "x-foo"), r(10, 10, "sip+d2t")],
                true,
                Some(Proto::Tcp),
            ),
            (&[r(5, 10, "SIP+D2S")], true, None),
            (&[], true, None),
        ];
        for (records, tls, want) in cases {
            assert_eq!(
                naptr_transport(records, *tls),
                *want,
                "{records:?} tls={tls}"
            );
        }
        // A record that does not lead to SRV records (flag "A", or none)
        // is passed over too.
        let a = [
            (1, 1, &b"SIP+D2T"[..], &b"A"[..]),
            (2, 1, &b"SIP+D2U"[..], &b"s"[..]),
        ];
        assert_eq!(naptr_transport(&a, true), Some(Proto::Udp));
    }

    #[test]
    fn srv_targets_go_by_priority_then_by_weight() {
        let records = vec![
            rec(20, 0, 5060, "backup.example."),
            rec(10, 60, 5060, "a.example."),
            rec(10, 40, 5062, "b.example."),
        ];
        // Priority first, whatever the draw.
        for seed in 0..50u32 {
            let mut n = seed;
            let order = srv_order(records.clone(), || {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
                n
            });
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], ("backup.example".to_string(), 5060));
        }
        // Weight: a draw under a's share picks a first, above it b.
        let first = |d: u32| srv_order(records.clone(), || d)[0].0.clone();
        assert_eq!(
            first(0),
            "b.example",
            "lower weight sorts first, draw 0 lands on it"
        );
        assert_eq!(first(41), "a.example");
        // Over many draws, a (60) comes first about 60% of the time.
        let mut n = 7u32;
        let a_first = (0..10_000)
            .filter(|_| {
                srv_order(records.clone(), || {
                    n = n.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    n >> 8
                })[0]
                    .0
                    == "a.example"
            })
            .count();
        assert!((5_600..6_400).contains(&a_first), "{a_first}");
    }
}
