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
}
