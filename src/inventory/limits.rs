//! How large a registered address or tenant location may be.
//!
//! The router writes a number's registered address into every emergency
//! call from it, as a PIDF-LO body part (see
//! [`crate::pidf::civic_document`]), so the address's size is
//! added to each of those INVITEs. The limits are far above any real civic
//! address and keep that part under 4 KiB. The admin API, uploads and the
//! inventory file all check them here.
//!
//! Sizes are bytes of UTF-8 as written into the PIDF-LO: a value with
//! `&`, `<`, `>`, `"` or `'` counts each as the XML escape it becomes
//! (`&amp;` is five bytes).

use std::borrow::Cow;

use quick_xml::escape::escape;

use super::Address;

/// The most one civic element (`RD`, `A3`, ...) or the language tag may
/// hold, in bytes.
pub const MAX_ADDRESS_ELEMENT_BYTES: usize = 256;

/// The most a whole address may hold, in bytes: its elements and language
/// tag together. A missing `country`, which the number's country fills in,
/// counts as its two letters.
pub const MAX_ADDRESS_BYTES: usize = 1024;

/// An address over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressTooLarge {
    /// One element (or `lang`) is over [`MAX_ADDRESS_ELEMENT_BYTES`].
    Element {
        key: String,
        bytes: usize,
        escaped: bool,
    },
    /// The elements together are over [`MAX_ADDRESS_BYTES`].
    Whole { bytes: usize },
}

impl AddressTooLarge {
    /// What is wrong, naming an element as its key after `prefix` (the API
    /// says `RD`, an inventory file or upload `reg_RD`).
    pub fn describe(&self, prefix: &str) -> String {
        match self {
            AddressTooLarge::Element {
                key,
                bytes,
                escaped,
            } => format!(
                "{prefix}{key} is {bytes} bytes{}, over the limit of \
                 {MAX_ADDRESS_ELEMENT_BYTES} bytes for one address element",
                if *escaped { " once XML-escaped" } else { "" }
            ),
            AddressTooLarge::Whole { bytes } => format!(
                "the address is {bytes} bytes in all, over the limit of \
                 {MAX_ADDRESS_BYTES} bytes for a whole address"
            ),
        }
    }
}

/// The size of `value` in a PIDF-LO, and whether escaping changed it.
fn written_len(value: &str) -> (usize, bool) {
    match escape(value) {
        Cow::Borrowed(s) => (s.len(), false),
        Cow::Owned(s) => (s.len(), true),
    }
}

/// Checks civic elements (`(key, value)`) and a language tag against the
/// limits; every element over its limit is reported, and the whole address
/// only when each element is within its own.
pub fn check_address_size<'a>(
    elements: impl IntoIterator<Item = (&'a str, &'a str)>,
    lang: Option<&'a str>,
) -> Result<(), Vec<AddressTooLarge>> {
    let mut errors = Vec::new();
    let mut total = 0;
    let mut has_country = false;
    let lang = lang.map(|l| ("lang", l));
    for (key, value) in elements.into_iter().chain(lang) {
        has_country |= key == "country";
        let (bytes, escaped) = written_len(value);
        total += bytes;
        if bytes > MAX_ADDRESS_ELEMENT_BYTES {
            errors.push(AddressTooLarge::Element {
                key: key.to_string(),
                bytes,
                escaped,
            });
        }
    }
    if !has_country {
        total += 2;
    }
    if errors.is_empty() && total > MAX_ADDRESS_BYTES {
        errors.push(AddressTooLarge::Whole { bytes: total });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Address {
    /// Checks the address against the limits (see [`check_address_size`]).
    pub fn check_size(&self) -> Result<(), Vec<AddressTooLarge>> {
        check_address_size(self.civic.iter(), self.civic.lang())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pidf::{civic_document, CivicAddress, RFC5139_ELEMENTS};

    fn address(fields: &[(&str, String)], lang: Option<&str>) -> Address {
        let mut civic: CivicAddress = fields.iter().map(|(k, v)| (*k, v.clone())).collect();
        civic.set_lang(lang.map(str::to_string));
        Address { civic, point: None }
    }

    #[test]
    fn elements_and_the_whole_address_are_bounded() {
        let at = "x".repeat(MAX_ADDRESS_ELEMENT_BYTES);
        let a = address(&[("country", "US".into()), ("RD", at.clone())], Some("en"));
        assert_eq!(a.check_size(), Ok(()));
        let a = address(&[("country", "US".into()), ("RD", format!("{at}y"))], None);
        let e = a.check_size().unwrap_err();
        assert_eq!(
            e,
            [AddressTooLarge::Element {
                key: "RD".into(),
                bytes: 257,
                escaped: false
            }]
        );
        assert_eq!(
            e[0].describe("reg_"),
            "reg_RD is 257 bytes, over the limit of 256 bytes for one address element"
        );
        // Escapes count: 255 letters and one `&` are 260 bytes written.
        let amp = format!("{}&", "x".repeat(MAX_ADDRESS_ELEMENT_BYTES - 1));
        let e = address(&[("NAM", amp)], None).check_size().unwrap_err();
        assert!(
            e[0].describe("")
                .starts_with("NAM is 260 bytes once XML-escaped"),
            "{e:?}"
        );
        // The language tag is bounded too.
        let e = address(&[("country", "US".into())], Some(&"l".repeat(300)))
            .check_size()
            .unwrap_err();
        assert!(e[0].describe("reg_").starts_with("reg_lang is 300 bytes"));
        // Each element within its limit, the whole over its own; a missing
        // country counts its two letters.
        let quarter = "y".repeat(MAX_ADDRESS_BYTES / 4);
        let fields: Vec<(&str, String)> = ["A1", "A3", "RD", "NAM"]
            .into_iter()
            .map(|k| (k, quarter.clone()))
            .collect();
        assert_eq!(
            address(&fields, None).check_size(),
            Err(vec![AddressTooLarge::Whole {
                bytes: MAX_ADDRESS_BYTES + 2
            }])
        );
        let mut fields = fields;
        fields[0].1.truncate(MAX_ADDRESS_BYTES / 4 - 2);
        assert_eq!(address(&fields, None).check_size(), Ok(()));
        assert!(AddressTooLarge::Whole { bytes: 1030 }
            .describe("")
            .contains("limit of 1024 bytes"));
    }

    /// The largest address the limits let through, with every element
    /// present, still makes a PIDF-LO part under 4 KiB for a caller in a
    /// long domain: values count as written, so escapes cannot grow it.
    #[test]
    fn the_largest_address_keeps_the_pidf_part_small() {
        let lang = "en-US";
        let others = RFC5139_ELEMENTS.len() - 1;
        let each = (MAX_ADDRESS_BYTES - 2 - lang.len()) / others;
        let mut fields: Vec<(&str, String)> = vec![("country", "US".into())];
        for key in RFC5139_ELEMENTS.iter().skip(1) {
            // Quotes and ampersands: as much escaping as the limit allows.
            let mut v = String::new();
            for c in "&\"x".chars().cycle() {
                v.push(c);
                if escape(&v).len() > each {
                    v.pop();
                    break;
                }
            }
            while escape(&v).len() < each {
                v.push('x');
            }
            fields.push((key, v));
        }
        let a = address(&fields, Some(lang));
        assert_eq!(a.check_size(), Ok(()));
        let written: usize = a.civic.iter().map(|(_, v)| escape(v).len()).sum();
        assert!(
            written + lang.len() > MAX_ADDRESS_BYTES - others,
            "{written}"
        );
        let domain = "e".repeat(63) + ".example.com";
        let doc = civic_document(
            &format!("pres:+123456789012345@{domain}"),
            "registered",
            &a.civic,
            "Registered",
        );
        assert!(doc.len() < 4096, "{} bytes:\n{doc}", doc.len());
    }
}
