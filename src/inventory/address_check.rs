//! Whether a registered address names a place that exists, checked when it
//! comes in (uploads, address changes, tenant locations) so that an
//! operator learns of a wrong address before an emergency call depends on
//! it.
//!
//! An [`AddressChecker`] gives each address an [`AddressCheck`]: `valid`,
//! `invalid` with the elements at fault and why, or `unchecked` when the
//! checker has no data for the country. The checker in use is the
//! gazetteer of the service-area data (`store::gazetteer`); an ECRF's
//! `validateLocation` (LoST, RFC 5222) is the other kind of checker this
//! seam is for: it would answer for the countries it serves and leave the
//! others to the gazetteer.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::Address;

/// The outcome of checking one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressCheck {
    Valid,
    /// The elements at fault (RFC 5139 names, as the API writes them:
    /// `country`, `A1`, `A2`, `A3`, `PC`) and why.
    Invalid {
        elements: Vec<String>,
        reason: String,
    },
    /// Nothing to check it against.
    Unchecked {
        reason: String,
    },
}

impl AddressCheck {
    /// `valid`, `invalid` or `unchecked`.
    pub fn state(&self) -> &'static str {
        match self {
            AddressCheck::Valid => "valid",
            AddressCheck::Invalid { .. } => "invalid",
            AddressCheck::Unchecked { .. } => "unchecked",
        }
    }

    pub fn is_invalid(&self) -> bool {
        matches!(self, AddressCheck::Invalid { .. })
    }

    /// `{"state": "invalid", "elements": ["PC", "A1"], "reason": "..."}`:
    /// the API's form, and the stored one.
    pub fn to_json(&self) -> Value {
        match self {
            AddressCheck::Valid => json!({"state": "valid"}),
            AddressCheck::Invalid { elements, reason } => {
                json!({"state": "invalid", "elements": elements, "reason": reason})
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
        Some(match v.get("state")?.as_str()? {
            "valid" => AddressCheck::Valid,
            "invalid" => AddressCheck::Invalid {
                elements: v
                    .get("elements")?
                    .as_array()?
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect(),
                reason: reason(),
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

/// Checks addresses. Called on every address an upload carries, so it must
/// answer quickly and without I/O; a checker that asks a remote service
/// answers from what it already knows (or `unchecked`) and refines the
/// stored state later.
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
const VALID_TEXT: &str = r#"{"state":"valid"}"#;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let cases = [
            AddressCheck::Valid,
            AddressCheck::Invalid {
                elements: vec!["PC".into(), "A1".into()],
                reason: "80203 is in CO, not in NY".into(),
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
        ] {
            assert_eq!(AddressCheck::from_json(bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_text_is_the_json_written_out() {
        for c in [
            AddressCheck::Valid,
            AddressCheck::Invalid {
                elements: vec!["PC".into()],
                reason: "no".into(),
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
