//! Whether a registered address names a place that exists, checked when it
//! comes in (uploads, address changes, tenant locations) so that an
//! operator learns of a wrong address before an emergency call depends on
//! it.
//!
//! An [`AddressChecker`] gives each address an [`AddressCheck`]: `valid`,
//! `invalid` with the elements at fault and why, or `unchecked` when the
//! checker has no data for the country. Two checkers decide: the ECRF of
//! the address's country, asked with `validateLocation` (LoST, RFC 5222
//! s8.4.2) where `[emergency.lost]` names one ([`AddressCheck::of_lost`]),
//! and the gazetteer of the service-area data (`store::gazetteer`) for
//! every address the ECRF did not answer for. Each valid or invalid check
//! says which of them decided ([`Source`]).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::Address;
use crate::lost::{Response, Validation};

/// Which checker decided a `valid` or `invalid` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The gazetteer compiled in (also every check stored before checks
    /// said where they came from).
    Gazetteer,
    /// The ECRF's `<locationValidation>`.
    Ecrf,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Gazetteer => "gazetteer",
            Source::Ecrf => "ecrf",
        }
    }
}

/// The outcome of checking one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressCheck {
    /// Valid, as the gazetteer finds it.
    Valid,
    /// Valid, as the ECRF finds it: its `<locationValidation>` lists no
    /// element as invalid.
    EcrfValid,
    /// The elements at fault (RFC 5139 names, as the API writes them:
    /// `country`, `A1`, `A2`, `A3`, `PC`) and why.
    Invalid {
        elements: Vec<String>,
        reason: String,
        source: Source,
    },
    /// Nothing to check it against.
    Unchecked { reason: String },
}

impl AddressCheck {
    /// `valid`, `invalid` or `unchecked`.
    pub fn state(&self) -> &'static str {
        match self {
            AddressCheck::Valid | AddressCheck::EcrfValid => "valid",
            AddressCheck::Invalid { .. } => "invalid",
            AddressCheck::Unchecked { .. } => "unchecked",
        }
    }

    pub fn is_invalid(&self) -> bool {
        matches!(self, AddressCheck::Invalid { .. })
    }

    /// Which checker decided; none for `unchecked`.
    pub fn source(&self) -> Option<Source> {
        match self {
            AddressCheck::Valid => Some(Source::Gazetteer),
            AddressCheck::EcrfValid => Some(Source::Ecrf),
            AddressCheck::Invalid { source, .. } => Some(*source),
            AddressCheck::Unchecked { .. } => None,
        }
    }

    /// `{"state": "invalid", "elements": ["PC", "A1"], "reason": "...",
    /// "source": "ecrf"}`: the API's form, and the stored one.
    pub fn to_json(&self) -> Value {
        match self {
            AddressCheck::Valid => json!({"state": "valid", "source": "gazetteer"}),
            AddressCheck::EcrfValid => json!({"state": "valid", "source": "ecrf"}),
            AddressCheck::Invalid {
                elements,
                reason,
                source,
            } => {
                json!({"state": "invalid", "elements": elements, "reason": reason, "source": source.as_str()})
            }
            AddressCheck::Unchecked { reason } => json!({"state": "unchecked", "reason": reason}),
        }
    }

    /// Reads the stored form back; `None` for text that is not one.
    pub fn from_json(text: &str) -> Option<AddressCheck> {
        let v: Value = serde_json::from_str(text).ok()?;
        let reason = || {
            v.get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        // Checks stored before they named their source were the
        // gazetteer's.
        let source = match v.get("source").and_then(Value::as_str) {
            None | Some("gazetteer") => Source::Gazetteer,
            Some("ecrf") => Source::Ecrf,
            Some(_) => return None,
        };
        Some(match v.get("state")?.as_str()? {
            "valid" => match source {
                Source::Gazetteer => AddressCheck::Valid,
                Source::Ecrf => AddressCheck::EcrfValid,
            },
            "invalid" => AddressCheck::Invalid {
                elements: v
                    .get("elements")?
                    .as_array()?
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect(),
                reason: reason(),
                source,
            },
            "unchecked" => AddressCheck::Unchecked { reason: reason() },
            _ => return None,
        })
    }

    /// The stored form as text: [`AddressCheck::to_json`] written out, without
    /// building the JSON value for the common `valid`.
    pub fn stored_text(&self) -> String {
        match self {
            AddressCheck::Valid => VALID_TEXT.to_string(),
            other => other.to_json().to_string(),
        }
    }

    /// What an address stored before addresses were checked shows.
    pub fn not_yet() -> AddressCheck {
        AddressCheck::Unchecked {
            reason: "stored before addresses were checked; upload or change it to check it".into(),
        }
    }
}

impl AddressCheck {
    /// The check an ECRF's `<locationValidation>` gives: `invalid` naming
    /// the elements it lists as invalid when there are any (each once, in
    /// its order), else `valid`. `server` names the ECRF in the reason.
    pub fn of_validation(v: &Validation, server: &str) -> AddressCheck {
        let mut elements: Vec<String> = Vec::new();
        for e in &v.invalid {
            if !e.is_empty() && !elements.contains(e) {
                elements.push(e.clone());
            }
        }
        if elements.is_empty() {
            return AddressCheck::EcrfValid;
        }
        let reason = format!(
            "the ECRF{} finds {} invalid",
            if server.is_empty() {
                String::new()
            } else {
                format!(" {server}")
            },
            elements.join(", ")
        );
        AddressCheck::Invalid {
            elements,
            reason: crate::lost::one_line(&reason, 200),
            source: Source::Ecrf,
        }
    }

    /// The check an ECRF's answer to a `findService` with
    /// `validateLocation` gives, or why it gives none (then the gazetteer
    /// decides): an `<errors>` answer, a redirect not followed, or an
    /// answer without `<locationValidation>`. The server named is the
    /// first of the answer's `<path>`.
    pub fn of_lost(r: &Response) -> Result<AddressCheck, String> {
        match r {
            Response::Found(f) => match &f.validation {
                Some(v) => Ok(AddressCheck::of_validation(
                    v,
                    f.path.first().map(String::as_str).unwrap_or_default(),
                )),
                None => Err("the ECRF answered without locationValidation".into()),
            },
            Response::Errors(e) => Err(format!("the ECRF answered {}", e.reason())),
            Response::Redirect(_) => Err("the ECRF redirected the query".into()),
            Response::Listed(_) => Err("the ECRF answered another query".into()),
        }
    }
}

/// Checks addresses. Called on every address an upload carries, inside
/// the store's transaction, so it must answer quickly and without I/O: a
/// remote service (the ECRF) is asked before, and its answers come in
/// through [`Prefetched`].
pub trait AddressChecker: Send + Sync {
    fn check(&self, a: &Address) -> AddressCheck;

    /// The elements whose values (trimmed) alone decide the answer, when
    /// the checker reads no others: addresses that agree on them get the
    /// same answer, which [`Remembered`] then keeps. `None`: the answer
    /// may depend on anything.
    fn decided_by(&self) -> Option<&'static [&'static str]> {
        None
    }
}

/// The stored text of [`AddressCheck::Valid`].
const VALID_TEXT: &str = r#"{"state":"valid","source":"gazetteer"}"#;

/// How many answers [`Remembered`] keeps before it starts again.
pub const REMEMBERED: usize = 4096;

/// A checker's answers kept by the values of the elements that decide them
/// ([`AddressChecker::decided_by`]): an upload's rows share few places
/// (a million numbers in a few thousand city, county and postal code
/// combinations), so most rows are answered by one lookup, with no
/// allocation when the answer is `valid`. At most [`REMEMBERED`] answers;
/// when full, it starts again.
pub struct Remembered {
    inner: Arc<dyn AddressChecker>,
    elements: &'static [&'static str],
    memo: Mutex<Memo>,
}

#[derive(Default)]
struct Memo {
    /// The key of the address being checked, reused from one to the next.
    key: String,
    answers: HashMap<Box<str>, AddressCheck>,
}

impl Remembered {
    /// `None` when `inner` does not say which elements decide its answers.
    pub fn new(inner: Arc<dyn AddressChecker>) -> Option<Remembered> {
        let elements = inner.decided_by()?;
        Some(Remembered {
            inner,
            elements,
            memo: Mutex::default(),
        })
    }
}

impl AddressChecker for Remembered {
    fn check(&self, a: &Address) -> AddressCheck {
        let Ok(mut memo) = self.memo.lock() else {
            return self.inner.check(a);
        };
        let memo = &mut *memo;
        // Each value trimmed, after its length: no two addresses that
        // differ in these elements share a key.
        memo.key.clear();
        for e in self.elements {
            let v = a.civic.get(e).map(str::trim).unwrap_or_default();
            let _ = write!(memo.key, "{}:", v.len());
            memo.key.push_str(v);
        }
        if let Some(c) = memo.answers.get(memo.key.as_str()) {
            return c.clone();
        }
        let c = self.inner.check(a);
        if memo.answers.len() >= REMEMBERED {
            memo.answers.clear();
        }
        memo.answers.insert(memo.key.as_str().into(), c.clone());
        c
    }

    fn decided_by(&self) -> Option<&'static [&'static str]> {
        Some(self.elements)
    }
}

/// An address as the ECRF is asked about it: its civic elements in order,
/// each value trimmed, its spaces collapsed and in lower case, so that
/// rows spelling one address alike share one question.
pub fn civic_key(a: &Address) -> String {
    let mut out = String::with_capacity(128);
    for (k, v) in a.civic.iter() {
        out.push_str(k);
        out.push('=');
        for (i, w) in v.split_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.extend(w.chars().flat_map(char::to_lowercase));
        }
        out.push('\u{1f}');
    }
    out
}

/// The ECRF's answers, gathered before the addresses are checked (the
/// check itself does no I/O): an address it answered for gets that
/// answer, any other the fallback's (the gazetteer's).
pub struct Prefetched {
    pub answers: std::collections::HashMap<String, AddressCheck>,
    pub fallback: std::sync::Arc<dyn AddressChecker>,
}

impl AddressChecker for Prefetched {
    fn check(&self, a: &Address) -> AddressCheck {
        match self.answers.get(&civic_key(a)) {
            Some(c) => c.clone(),
            None => self.fallback.check(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let cases = [
            AddressCheck::Valid,
            AddressCheck::EcrfValid,
            AddressCheck::Invalid {
                elements: vec!["PC".into(), "A1".into()],
                reason: "80203 is in CO, not in NY".into(),
                source: Source::Gazetteer,
            },
            AddressCheck::Invalid {
                elements: vec!["A3".into()],
                reason: "the ECRF finds A3 invalid".into(),
                source: Source::Ecrf,
            },
            AddressCheck::Unchecked {
                reason: "no address data for DE".into(),
            },
        ];
        for c in cases {
            assert_eq!(AddressCheck::from_json(&c.to_json().to_string()), Some(c));
        }
        for bad in [
            "",
            "{}",
            "{\"state\": \"maybe\"}",
            "{\"state\": \"invalid\"}",
            "{\"state\": \"valid\", \"source\": \"oracle\"}",
        ] {
            assert_eq!(AddressCheck::from_json(bad), None, "{bad}");
        }
        // Stored before checks named their source: the gazetteer's.
        assert_eq!(
            AddressCheck::from_json("{\"state\": \"valid\"}"),
            Some(AddressCheck::Valid)
        );
    }

    fn v(valid: &[&str], invalid: &[&str], unchecked: &[&str]) -> Validation {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Validation {
            valid: own(valid),
            invalid: own(invalid),
            unchecked: own(unchecked),
        }
    }

    #[test]
    fn alike_spellings_share_a_key_and_the_answer() {
        use crate::pidf::CivicAddress;
        let addr = |fields: &[(&str, &str)]| {
            let mut c = CivicAddress::new();
            for (k, v) in fields {
                c.push(k, v);
            }
            Address {
                civic: c,
                point: None,
            }
        };
        let a = addr(&[("country", "US"), ("A1", "CO"), ("A3", "Denver")]);
        let same = addr(&[("country", "US"), ("A1", "co"), ("A3", "  DENVER ")]);
        let other = addr(&[("country", "US"), ("A1", "CO"), ("A3", "Aurora")]);
        let moved = addr(&[("country", "US"), ("A1", "CO"), ("A2", "Denver")]);
        assert_eq!(civic_key(&a), civic_key(&same));
        assert_ne!(civic_key(&a), civic_key(&other));
        assert_ne!(civic_key(&a), civic_key(&moved));

        struct Never;
        impl AddressChecker for Never {
            fn check(&self, _: &Address) -> AddressCheck {
                AddressCheck::Unchecked {
                    reason: "fallback".into(),
                }
            }
        }
        let ecrf = AddressCheck::EcrfValid;
        let p = Prefetched {
            answers: [(civic_key(&a), ecrf.clone())].into_iter().collect(),
            fallback: std::sync::Arc::new(Never),
        };
        assert_eq!(p.check(&same), ecrf);
        assert_eq!(p.check(&other).state(), "unchecked");
    }

    #[test]
    fn location_validation_gives_the_check() {
        let ecrf_valid = AddressCheck::EcrfValid;
        let invalid = |e: &[&str], reason: &str| AddressCheck::Invalid {
            elements: e.iter().map(|s| s.to_string()).collect(),
            reason: reason.into(),
            source: Source::Ecrf,
        };
        let cases: [(Validation, &str, AddressCheck); 7] = [
            (
                v(&["country", "A1", "A3"], &[], &["RD", "HNO"]),
                "ecrf.example",
                ecrf_valid.clone(),
            ),
            // Nothing checked, nothing invalid: valid (the ECRF found
            // nothing at fault).
            (
                v(&[], &[], &["country", "A1"]),
                "ecrf.example",
                ecrf_valid.clone(),
            ),
            (v(&[], &[], &[]), "", ecrf_valid.clone()),
            (
                v(&["country"], &["A3"], &["RD"]),
                "ecrf.example",
                invalid(&["A3"], "the ECRF ecrf.example finds A3 invalid"),
            ),
            // Its order kept, each element once.
            (
                v(&["country"], &["A3", "PC", "A1", "PC"], &[]),
                "ecrf.example",
                invalid(
                    &["A3", "PC", "A1"],
                    "the ECRF ecrf.example finds A3, PC, A1 invalid",
                ),
            ),
            (
                v(&[], &["country"], &[]),
                "",
                invalid(&["country"], "the ECRF finds country invalid"),
            ),
            // An empty name is no element.
            (v(&["A1"], &[""], &[]), "e.example", ecrf_valid.clone()),
        ];
        for (validation, server, want) in cases {
            assert_eq!(
                AddressCheck::of_validation(&validation, server),
                want,
                "{validation:?}"
            );
        }
    }

    #[test]
    fn a_lost_answer_gives_a_check_or_why_not() {
        use crate::lost::read_response;
        const NS: &str = "urn:ietf:params:xml:ns:lost1";
        let found = |validation: &str| {
            format!(
                "<findServiceResponse xmlns='{NS}'><mapping expires='NO-CACHE' \
                 lastUpdated='2026-01-01T00:00:00Z' source='ecrf.example' sourceId='x'>\
                 <service>urn:service:sos</service><uri>sip:sos@psap.example</uri></mapping>\
                 <path><via source='ecrf.example'/></path>{validation}</findServiceResponse>"
            )
        };
        let cases: [(String, Result<&str, &str>); 5] = [
            (
                found("<locationValidation><valid>country A1</valid><invalid>A3 PC</invalid><unchecked>RD</unchecked></locationValidation>"),
                Ok("invalid A3,PC"),
            ),
            (
                found("<locationValidation><valid>country A1 A3</valid><unchecked>RD HNO</unchecked></locationValidation>"),
                Ok("valid"),
            ),
            (found(""), Err("without locationValidation")),
            (
                format!("<errors xmlns='{NS}' source='ecrf.example'><serverTimeout message='busy'/></errors>"),
                Err("serverTimeout from ecrf.example: busy"),
            ),
            (
                format!("<redirect xmlns='{NS}' target='http://other.example/lost' source='ecrf.example'/>"),
                Err("redirected"),
            ),
        ];
        for (xml, want) in cases {
            let r = read_response(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
            let got = AddressCheck::of_lost(&r);
            match (&got, want) {
                (Ok(c), Ok(w)) => {
                    let shown = match c {
                        AddressCheck::Invalid { elements, .. } => {
                            format!("invalid {}", elements.join(","))
                        }
                        other => other.state().to_string(),
                    };
                    assert_eq!(shown, w, "{xml}");
                    assert_eq!(c.source(), Some(Source::Ecrf));
                }
                (Err(why), Err(w)) => assert!(why.contains(w), "{why} / {w}"),
                _ => panic!("{xml}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn stored_text_is_the_json_written_out() {
        for c in [
            AddressCheck::Valid,
            AddressCheck::EcrfValid,
            AddressCheck::Invalid {
                elements: vec!["PC".into()],
                reason: "no".into(),
                source: Source::Gazetteer,
            },
            AddressCheck::Unchecked { reason: "x".into() },
        ] {
            assert_eq!(c.stored_text(), c.to_json().to_string());
        }
    }

    /// A checker that answers by the first letter of A1 and counts calls.
    struct ByA1(std::sync::atomic::AtomicUsize);

    impl AddressChecker for ByA1 {
        fn check(&self, a: &Address) -> AddressCheck {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match a.civic.get("A1").map(str::trim) {
                Some(v) if v.starts_with('N') => AddressCheck::Valid,
                v => AddressCheck::Invalid {
                    elements: vec!["A1".into()],
                    reason: format!("{v:?}"),
                    source: Source::Gazetteer,
                },
            }
        }

        fn decided_by(&self) -> Option<&'static [&'static str]> {
            Some(&["A1", "A3"])
        }
    }

    fn address(fields: &[(&str, &str)]) -> Address {
        let mut civic = crate::pidf::CivicAddress::new();
        for (k, v) in fields {
            civic.push(k, v);
        }
        Address { civic, point: None }
    }

    #[test]
    fn remembered_answers_are_the_checkers_and_asked_once_per_key() {
        let inner = Arc::new(ByA1(Default::default()));
        let r = Remembered::new(inner.clone()).unwrap();
        let asked = || inner.0.load(std::sync::atomic::Ordering::Relaxed);
        let cases: [(&[(&str, &str)], usize); 7] = [
            (&[("A1", "NY"), ("A3", "New York"), ("HNO", "1")], 1),
            // Other elements, or spaces around: the same key.
            (&[("A1", "NY"), ("A3", "New York"), ("HNO", "2")], 1),
            (&[("A1", " NY "), ("A3", "New York")], 1),
            // Another value of a deciding element: asked.
            (&[("A1", "NY"), ("A3", "Albany")], 2),
            (&[("A1", "CO"), ("A3", "Denver")], 3),
            // Values that would run together if joined: not the same key.
            (&[("A1", "CO:"), ("A3", "Denver")], 4),
            (&[("A1", "CO"), ("A3", ":Denver")], 5),
        ];
        let plain = ByA1(Default::default());
        for (fields, calls) in cases {
            let a = address(fields);
            assert_eq!(r.check(&a), plain.check(&a), "{fields:?}");
            assert_eq!(asked(), calls, "{fields:?}");
        }
        // A checker that does not say what decides is not remembered.
        struct Any;
        impl AddressChecker for Any {
            fn check(&self, _: &Address) -> AddressCheck {
                AddressCheck::Valid
            }
        }
        assert!(Remembered::new(Arc::new(Any)).is_none());
    }

    #[test]
    fn remembered_starts_again_when_full() {
        let inner = Arc::new(ByA1(Default::default()));
        let r = Remembered::new(inner.clone()).unwrap();
        for i in 0..REMEMBERED + 10 {
            let a = address(&[("A1", "NY"), ("A3", &i.to_string())]);
            assert_eq!(r.check(&a), AddressCheck::Valid);
        }
        assert!(r.memo.lock().unwrap().answers.len() <= REMEMBERED);
    }
}
