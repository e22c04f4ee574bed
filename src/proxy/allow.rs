//! Which addresses the router takes requests from: `sip.allow`, every
//! trunk's `sources`, and every trunk whose URI is an IP address. The core
//! asks it for each new request and the TCP acceptor for each connection,
//! so that a stranger gets a 403 without state and cannot hold a TCP slot.
//! A stranger's answers come out of a budget per second: over UDP its
//! source address may be forged, and the router must not become a
//! reflector for a flood aimed at someone else.

use core::net::IpAddr;
use std::time::{Duration, Instant};

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
            // A trunk identified by certificate is let in by its
            // certificate, not by its address.
            if !t.by_certificate {
                nets.extend_from_slice(&t.sources);
            }
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

/// A token bucket for answers to strangers: `per_second` answers a second,
/// and as many in a burst.
#[derive(Debug, Clone)]
pub struct ReplyBudget {
    per_second: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl ReplyBudget {
    pub fn new(per_second: u32) -> ReplyBudget {
        ReplyBudget {
            per_second,
            tokens: f64::from(per_second),
            last: None,
        }
    }

    /// A new rate (a reload); what is left of the burst stays within it.
    pub fn set_rate(&mut self, per_second: u32) {
        self.per_second = per_second;
        self.tokens = self.tokens.min(f64::from(per_second));
    }

    /// Whether one more answer may go at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.per_second);
        if let Some(last) = self.last {
            let since = now
                .saturating_duration_since(last)
                .min(Duration::from_secs(60));
            self.tokens = (self.tokens + since.as_secs_f64() * rate).min(rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A [`ReplyBudget`] per source address, for answers to sources that are
/// allowed: a fixed table of buckets picked by a hash of the address, so
/// that memory stays the same however many addresses send (two that share
/// a bucket share its budget).
#[derive(Debug, Clone)]
pub struct SourceBudgets {
    buckets: Vec<ReplyBudget>,
    seed: u64,
}

/// Buckets in a [`SourceBudgets`] table.
const SOURCE_BUCKETS: usize = 4096;

impl SourceBudgets {
    pub fn new(per_second: u32, seed: u64) -> SourceBudgets {
        SourceBudgets {
            buckets: vec![ReplyBudget::new(per_second); SOURCE_BUCKETS],
            seed,
        }
    }

    pub fn set_rate(&mut self, per_second: u32) {
        for b in &mut self.buckets {
            b.set_rate(per_second);
        }
    }

    /// Whether one more answer may go to `ip` at `now`.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        use std::hash::BuildHasher;
        let h = foldhash::fast::FixedState::with_seed(self.seed).hash_one(ip);
        let i = (h as usize) % self.buckets.len();
        self.buckets[i].take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkKind;
    use crate::proxy::Proto;

    #[test]
    fn strangers_are_answered_within_the_budget() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = ReplyBudget::new(10);
        // A burst of 10, then nothing until time refills it.
        let burst = (0..25).filter(|_| b.take(t0)).count();
        assert_eq!(burst, 10);
        assert!(!b.take(ms(50)), "half a token is not an answer");
        assert!(b.take(ms(100)));
        assert!(!b.take(ms(100)));
        // A steady 100 a second for 10 s gets 10 a second through.
        let steady = (1..=1000).filter(|i| b.take(ms(100 + 10 * i))).count();
        assert!((99..=101).contains(&steady), "{steady}");
        // A long silence refills to the burst and no further.
        let later = ms(3_600_000);
        assert_eq!((0..25).filter(|_| b.take(later)).count(), 10);
        // Zero: never.
        let mut never = ReplyBudget::new(0);
        assert!(!never.take(t0) && !never.take(ms(10_000)));
        // A reload to a lower rate cuts what is left of the burst.
        let mut cut = ReplyBudget::new(100);
        cut.set_rate(2);
        assert_eq!((0..10).filter(|_| cut.take(t0)).count(), 2);
    }

    /// One source's flood spends its own budget, not another's.
    #[test]
    fn each_source_has_its_own_budget() {
        let t0 = Instant::now();
        let mut b = SourceBudgets::new(100, 7);
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..1000).filter(|_| b.take(flood, t0)).count(), 100);
        assert_eq!((0..50).filter(|_| b.take(other, t0)).count(), 50);
        assert!(b.take(flood, t0 + Duration::from_millis(20)));
    }

    fn trunk(target: Option<Target>, sources: &[&str]) -> Trunk {
        Trunk {
            name: "t".into(),
            kind: TrunkKind::Psap,
            target,
            proto: Proto::Udp,
            naptr_host: None,
            tcp_fallback: false,
            sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
            by_certificate: false,
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
