//! Writing a PIDF-LO document that carries a civic address.

use std::fmt::Write as _;

use quick_xml::escape::escape;

use super::civic::{CivicAddress, EXTENSION_NS, EXTENSION_PREFIX};
use super::dom::{is_xml_char as xml_char, NS_CIVIC, NS_GEOPRIV, NS_PIDF};

/// Escapes `s` for text or a quoted attribute, dropping characters XML 1.0
/// cannot represent.
fn esc(s: &str) -> String {
    if s.chars().all(xml_char) {
        escape(s).into_owned()
    } else {
        escape(s.chars().filter(|&c| xml_char(c)).collect::<String>()).into_owned()
    }
}

/// Whether `s` can be used as an element's local name (an XML NCName,
/// limited to ASCII: every civic element name is).
fn ncname(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Builds a PIDF-LO document (RFC 4119 `presence` with one `tuple`) that
/// carries `civic` with `method`, for the router to add a caller's registered
/// address to a forwarded call.
///
/// Field keys follow [`CivicAddress`]'s rules: plain names become elements of
/// the RFC 5139 namespace, `cae:NAME` elements of the RFC 6848 extension
/// namespace, `{uri}NAME` an element of namespace `uri`. A field whose key
/// cannot be written as an element name is left out, as are characters XML
/// cannot carry. `usage-rules` is empty, which means RFC 4119's defaults
/// (retransmission not allowed, retention of 24 hours).
pub fn civic_document(entity: &str, tuple_id: &str, civic: &CivicAddress, method: &str) -> String {
    let mut out = String::with_capacity(512 + 48 * civic.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<presence xmlns=\"{NS_PIDF}\" xmlns:gp=\"{NS_GEOPRIV}\" xmlns:ca=\"{NS_CIVIC}\" \
         xmlns:{EXTENSION_PREFIX}=\"{EXTENSION_NS}\" entity=\"{}\">",
        esc(entity)
    );
    let _ = writeln!(out, "  <tuple id=\"{}\">", esc(tuple_id));
    out.push_str("    <status>\n      <gp:geopriv>\n        <gp:location-info>\n");
    match civic.lang() {
        Some(lang) => {
            let _ = writeln!(
                out,
                "          <ca:civicAddress xml:lang=\"{}\">",
                esc(lang)
            );
        }
        None => out.push_str("          <ca:civicAddress>\n"),
    }
    for (key, value) in civic.iter() {
        let value = esc(value);
        if let Some(name) = key.strip_prefix("cae:") {
            if ncname(name) {
                let _ = writeln!(out, "            <cae:{name}>{value}</cae:{name}>");
            }
        } else if let Some((uri, name)) = key.strip_prefix('{').and_then(|k| k.split_once('}')) {
            if ncname(name) && !uri.is_empty() {
                let _ = writeln!(
                    out,
                    "            <x:{name} xmlns:x=\"{}\">{value}</x:{name}>",
                    esc(uri)
                );
            }
        } else if ncname(key) {
            let _ = writeln!(out, "            <ca:{key}>{value}</ca:{key}>");
        }
    }
    out.push_str("          </ca:civicAddress>\n        </gp:location-info>\n");
    out.push_str("        <gp:usage-rules/>\n");
    let _ = writeln!(out, "        <gp:method>{}</gp:method>", esc(method));
    out.push_str("      </gp:geopriv>\n    </status>\n  </tuple>\n</presence>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Element};
    use super::*;
    use crate::pidf::civic::RFC5139_ELEMENTS;

    #[test]
    fn every_rfc5139_element_round_trips() {
        let civic: CivicAddress = RFC5139_ELEMENTS
            .iter()
            .enumerate()
            .map(|(n, k)| (*k, format!("value {n}")))
            .collect();
        let xml = civic_document("pres:a@example.com", "t1", &civic, "Registered");
        let pidf = parse(xml.as_bytes()).unwrap();
        let loc = pidf.selected();
        assert_eq!(loc.source, Element::Tuple);
        assert_eq!(loc.id.as_deref(), Some("t1"));
        assert_eq!(loc.method.as_deref(), Some("Registered"));
        assert_eq!(loc.civic.as_ref(), Some(&civic));
        assert_eq!(pidf.entity(), Some("pres:a@example.com"));
    }

    #[test]
    fn values_are_escaped_and_extensions_keep_their_keys() {
        let mut civic: CivicAddress = [
            ("country", "US"),
            ("NAM", "Haley's <Place> & \"Bar\""),
            ("A3", "München"),
            ("cae:MP", "248"),
            ("{http://example.com/airport/5.0}gate", "36B"),
        ]
        .into_iter()
        .collect();
        civic.set_lang(Some("en-US".into()));
        let xml = civic_document("sip:+1555<x>@example.com", "a\"b", &civic, "LIS & more");
        assert!(xml.contains("&lt;Place&gt; &amp; &quot;Bar&quot;"), "{xml}");
        let pidf = parse(xml.as_bytes()).unwrap();
        let loc = pidf.selected();
        assert_eq!(loc.civic.as_ref(), Some(&civic));
        assert_eq!(loc.id.as_deref(), Some("a\"b"));
        assert_eq!(loc.method.as_deref(), Some("LIS & more"));
        assert_eq!(pidf.entity(), Some("sip:+1555<x>@example.com"));
    }

    #[test]
    fn unwritable_keys_and_characters_are_left_out() {
        let civic: CivicAddress = [
            ("country", "US"),
            ("bad key", "x"),
            ("cae:", "y"),
            ("A1", "C\u{1}A"),
        ]
        .into_iter()
        .collect();
        let xml = civic_document("e", "t", &civic, "Manual");
        let loc = parse(xml.as_bytes()).unwrap().selected().clone();
        let got: Vec<(&str, &str)> = loc.civic.as_ref().unwrap().iter().collect();
        assert_eq!(got, [("country", "US"), ("A1", "CA")]);
    }
}
