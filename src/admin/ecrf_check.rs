//! Registered addresses checked by the ECRF (`validateLocation`, RFC 5222
//! s8.4.2) before the API stores them: the admin handlers ask here, then
//! check the addresses through [`AddressRules::with_answers`], so that an
//! address the ECRF answered for gets its answer and every other one the
//! gazetteer's.
//!
//! Each distinct address (by [`civic_key`]) is asked once per upload, a
//! few at once, each within [`EcrfAddresses::deadline`], all within
//! [`BUDGET`] deadlines, and at most [`MAX_QUERIES`] of them: past that,
//! or when the ECRF does not answer, answers with `<errors>` or without
//! `<locationValidation>`, the gazetteer decides and the check says so
//! (`source: gazetteer`).
//!
//! An inventory file (a bulk upload's body, the file imported into an
//! empty database at start, `sosrouter inventory import`) is read once
//! ahead for its distinct addresses by [`rules_for_file`], so that every
//! way a file comes in asks the ECRF alike.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::config::Config;
use crate::inventory::address_check::{civic_key, AddressCheck};
use crate::inventory::Address;
use crate::lost::write::{find_service, FindService};
use crate::lost::{Location, DEFAULT_SERVICE};
use crate::store::address::AddressRules;
use crate::store::bulk::Tenants;
use crate::store::upload::{Change, Format};

/// Distinct addresses one upload asks the ECRF about, at most.
pub const MAX_QUERIES: usize = 1000;
/// Queries in flight at once for one upload.
pub const CONCURRENCY: usize = 8;
/// The ECRF's deadline for one address: this many times
/// `emergency.lost.timeout_ms` (a call waits for less; an upload can
/// wait a little longer).
pub const DEADLINE_FACTOR: u32 = 4;
/// All of an upload's queries end within this many deadlines.
pub const BUDGET: u32 = 20;

/// The ECRFs of `[emergency.lost]`, as the address check asks them.
pub struct EcrfAddresses {
    client: reqwest::Client,
    default: Option<String>,
    countries: BTreeMap<String, String>,
    servers: Option<Arc<[String]>>,
    source: String,
    pub deadline: Duration,
}

/// What asking gave: the answers by address key, and the counts.
#[derive(Debug, Default)]
pub struct Answers {
    pub answers: HashMap<String, AddressCheck>,
    /// Distinct addresses asked about.
    pub asked: usize,
    /// Addresses left to the gazetteer because the upload had more than
    /// [`MAX_QUERIES`] distinct ones or the budget ran out.
    pub not_asked: usize,
    /// The first reason an asked address got no answer, and how many.
    pub failed: usize,
    pub first_failure: Option<String>,
}

impl EcrfAddresses {
    /// None when `[emergency.lost]` names no ECRF (or no HTTP client can
    /// be built: then the gazetteer checks everything, and that is said).
    pub fn from_config(config: &Config) -> Option<Arc<EcrfAddresses>> {
        let l = &config.emergency.lost;
        if l.ecrf.is_none() && l.countries.is_empty() {
            return None;
        }
        let (servers, client) = crate::held::policy_client(config, "address checks");
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "address checks: no HTTP client; addresses are checked by the gazetteer only");
                return None;
            }
        };
        Some(Arc::new(EcrfAddresses {
            client,
            default: l.ecrf.clone(),
            countries: l
                .countries
                .iter()
                .map(|(c, u)| (c.trim().to_ascii_uppercase(), u.clone()))
                .collect(),
            servers,
            source: l.source_name(&config.emergency),
            deadline: Duration::from_millis(l.timeout_ms.max(1)) * DEADLINE_FACTOR,
        }))
    }

    /// The ECRF for the address's country, if any.
    fn url_for(&self, a: &Address) -> Option<&str> {
        a.country()
            .and_then(|c| self.countries.get(&c.to_ascii_uppercase()))
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// Asks the ECRF of the address's country about it; `Err` says why
    /// there is no answer to go by.
    pub async fn ask(&self, a: &Address) -> Result<AddressCheck, String> {
        let Some(url) = self.url_for(a) else {
            return Err("no ECRF for the country".into());
        };
        if !crate::held::host_allowed(url, self.servers.as_deref()) {
            return Err("the ECRF's host is not one emergency.location_servers allows".into());
        }
        let location = Location::Civic(a.civic.clone());
        let body = find_service(&FindService {
            location: &location,
            location_id: "registered",
            service: DEFAULT_SERVICE,
            boundary_by_value: false,
            recursive: true,
            validate_location: true,
        });
        let reply = crate::held::lost_query_following(
            &self.client,
            url,
            body,
            self.deadline,
            self.servers.as_deref(),
            &self.source,
            |_| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        let document = match reply {
            crate::held::LostReply::Answer(b) => b,
            crate::held::LostReply::Stopped(stop, _) => {
                return Err(format!("redirect not followed ({})", stop.outcome()))
            }
        };
        let r = crate::lost::read_response(&document).map_err(|e| e.to_string())?;
        AddressCheck::of_lost(&r)
    }

    /// The distinct complete addresses with an ECRF for their country,
    /// the first [`MAX_QUERIES`] of them, to [`ask_all`](Self::ask_all).
    pub fn plan<'a>(
        &self,
        rules: &AddressRules,
        addresses: impl IntoIterator<Item = &'a Address>,
    ) -> Plan {
        let mut plan = Plan::default();
        for a in addresses {
            self.plan_one(&mut plan, rules, a);
        }
        plan
    }

    /// Adds `a` to `plan` when it is to be asked about.
    pub fn plan_one(&self, plan: &mut Plan, rules: &AddressRules, a: &Address) {
        if !rules.complete(a) || self.url_for(a).is_none() {
            return;
        }
        let key = civic_key(a);
        if plan.seen.contains(&key) {
            return;
        }
        if plan.seen.len() >= MAX_QUERIES {
            plan.not_asked += 1;
            return;
        }
        plan.seen.insert(key.clone());
        plan.distinct.push((key, a.clone()));
    }

    /// Asks about the planned addresses, [`CONCURRENCY`] at once, all
    /// within [`BUDGET`] deadlines.
    pub async fn ask_all(self: Arc<Self>, plan: Plan) -> Answers {
        let mut out = Answers {
            asked: plan.distinct.len(),
            not_asked: plan.not_asked,
            ..Answers::default()
        };
        let end = tokio::time::Instant::now() + self.deadline * BUDGET;
        let mut answers = stream::iter(plan.distinct)
            .map(|(key, a)| {
                let e = self.clone();
                async move {
                    let r = e.ask(&a).await;
                    (key, r)
                }
            })
            .buffer_unordered(CONCURRENCY);
        let mut done = 0;
        loop {
            match tokio::time::timeout_at(end, answers.next()).await {
                Ok(Some((key, Ok(check)))) => {
                    out.answers.insert(key, check);
                }
                Ok(Some((_, Err(why)))) => {
                    out.failed += 1;
                    out.first_failure.get_or_insert(why);
                }
                Ok(None) => break,
                Err(_) => {
                    let left = out.asked - done;
                    out.not_asked += left;
                    out.asked -= left;
                    break;
                }
            }
            done += 1;
        }
        if out.failed > 0 || out.not_asked > 0 {
            tracing::warn!(
                asked = out.asked,
                answered = out.answers.len(),
                failed = out.failed,
                not_asked = out.not_asked,
                why = out.first_failure.as_deref().unwrap_or("too many addresses"),
                "address check: some addresses were checked by the gazetteer, not the ECRF"
            );
        }
        out
    }
}

/// The address rules for the rows of an inventory file, with the ECRF's
/// answers when `ecrf` is given, and a line saying how many addresses the
/// ECRF was asked about (None when it was asked about none). The file is
/// read once ahead for its distinct addresses (a row without a country of
/// its own takes its number's when applied: the gazetteer checks those),
/// which are asked about as for any upload, so this ends within
/// [`BUDGET`] deadlines. A file that cannot be read here is refused by
/// the upload itself.
pub async fn rules_for_file(
    ecrf: Option<Arc<EcrfAddresses>>,
    rules: Arc<AddressRules>,
    path: &Path,
    format: Format,
    tenants: &Tenants,
) -> (Arc<AddressRules>, Option<String>) {
    let Some(ecrf) = ecrf else {
        return (rules, None);
    };
    let (e, r, path, tenants) = (
        ecrf.clone(),
        rules.clone(),
        path.to_path_buf(),
        tenants.clone(),
    );
    let plan = tokio::task::spawn_blocking(move || {
        let mut plan = Plan::default();
        let Ok(rows) = crate::store::upload::rows_of_file(&path, format, &tenants) else {
            return plan;
        };
        for row in rows.flatten() {
            if let Some(l) = &row.location {
                e.plan_one(&mut plan, &r, &l.address);
            }
            if let Some(n) = &row.number {
                if let Change::Set(Some(a)) = &n.address {
                    if let Some(a) = n.country.as_deref().and_then(|c| a.complete(Some(c)).ok()) {
                        e.plan_one(&mut plan, &r, &a);
                    }
                }
            }
        }
        plan
    })
    .await;
    match plan {
        Ok(plan) if !plan.distinct.is_empty() || plan.not_asked > 0 => {
            let a = ecrf.ask_all(plan).await;
            let said = a.to_string();
            (Arc::new(rules.with_answers(a.answers)), Some(said))
        }
        _ => (rules, None),
    }
}

impl std::fmt::Display for Answers {
    /// One line for a log or a terminal: how many addresses the ECRF
    /// decided, and how many the gazetteer did, and why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} address(es) checked by the ECRF", self.answers.len())?;
        let left = self.failed + self.not_asked;
        if left > 0 {
            write!(
                f,
                ", {left} by the gazetteer ({})",
                self.first_failure
                    .as_deref()
                    .unwrap_or("too many addresses")
            )?;
        }
        Ok(())
    }
}

/// The addresses an upload asks the ECRF about.
#[derive(Debug, Default)]
pub struct Plan {
    pub distinct: Vec<(String, Address)>,
    seen: std::collections::HashSet<String>,
    /// Addresses past [`MAX_QUERIES`] (each time one comes).
    pub not_asked: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pidf::CivicAddress;

    fn ecrf() -> Arc<EcrfAddresses> {
        let c = Config::from_toml(
            r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
allow = ["127.0.0.1/32"]
[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:5070"
[[route]]
numbers = ["911"]
targets = ["psap"]
[emergency.lost]
timeout_ms = 250
[emergency.lost.countries]
us = "http://ecrf.example.net/lost"
ca = "http://ecrf.example.ca/lost"
"#,
        )
        .unwrap();
        EcrfAddresses::from_config(&c).expect("an ECRF is configured")
    }

    fn addr(fields: &[(&str, &str)]) -> Address {
        let mut c = CivicAddress::new();
        for (k, v) in fields {
            c.push(k, v);
        }
        Address {
            civic: c,
            point: None,
        }
    }

    #[test]
    fn each_country_has_its_ecrf_and_none_without() {
        let e = ecrf();
        assert_eq!(
            e.deadline,
            Duration::from_millis(250 * DEADLINE_FACTOR as u64)
        );
        let cases = [
            ("US", Some("http://ecrf.example.net/lost")),
            ("us", Some("http://ecrf.example.net/lost")),
            ("CA", Some("http://ecrf.example.ca/lost")),
            ("DE", None),
        ];
        for (country, want) in cases {
            assert_eq!(e.url_for(&addr(&[("country", country)])), want, "{country}");
        }
    }

    #[test]
    fn an_upload_asks_once_per_distinct_address_up_to_the_cap() {
        let e = ecrf();
        let rules = AddressRules::of_admin(None);
        let street = [("RD", "Main"), ("HNO", "1")];
        let with = |f: &[(&'static str, &'static str)]| {
            addr(&f.iter().chain(&street).copied().collect::<Vec<_>>())
        };
        let denver = with(&[("country", "US"), ("A1", "CO"), ("A3", "Denver")]);
        let denver_again = with(&[("country", "US"), ("A1", "co"), ("A3", " denver")]);
        let toronto = with(&[("country", "CA"), ("A1", "ON"), ("A3", "Toronto")]);
        let munich = with(&[("country", "DE"), ("A3", "München")]);
        // The US requires A1 by default: refused before any checker.
        let no_state = with(&[("country", "US"), ("A3", "Denver")]);
        let plan = e.plan(
            &rules,
            [
                &denver,
                &denver_again,
                &toronto,
                &munich,
                &no_state,
                &denver,
            ],
        );
        let asked: Vec<&str> = plan
            .distinct
            .iter()
            .map(|(_, a)| a.civic.get("A3").unwrap())
            .collect();
        assert_eq!(asked, ["Denver", "Toronto"]);
        assert_eq!(plan.not_asked, 0);

        let many: Vec<Address> = (0..MAX_QUERIES + 5)
            .map(|i| {
                let rd = format!("Street {i}");
                addr(&[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Denver"),
                    ("RD", &rd),
                    ("HNO", "1"),
                ])
            })
            .collect();
        let plan = e.plan(&rules, many.iter().chain(&many[..3]).chain([&denver]));
        assert_eq!(plan.distinct.len(), MAX_QUERIES);
        // Past the cap: the 5 left over, and Denver; those asked already
        // are not counted again.
        assert_eq!(plan.not_asked, 6);
    }

    #[test]
    fn the_tally_says_who_decided_and_why() {
        let mut a = Answers {
            asked: 3,
            ..Answers::default()
        };
        for (i, c) in ["a", "b"].into_iter().enumerate() {
            a.answers.insert(c.into(), AddressCheck::EcrfValid);
            assert_eq!(
                a.to_string(),
                format!("{} address(es) checked by the ECRF", i + 1)
            );
        }
        a.failed = 1;
        a.first_failure = Some("no answer within 1200 ms".into());
        assert_eq!(
            a.to_string(),
            "2 address(es) checked by the ECRF, 1 by the gazetteer (no answer within 1200 ms)"
        );
        a.first_failure = None;
        a.not_asked = 4;
        assert_eq!(
            a.to_string(),
            "2 address(es) checked by the ECRF, 5 by the gazetteer (too many addresses)"
        );
    }
}
