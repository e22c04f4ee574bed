//! Typed views of header values: Via, name-addr (From, To, Contact, Route,
//! P-Asserted-Identity, Geolocation, Call-Info), CSeq and media types. Each
//! is parsed on demand from the borrowed value text.

use super::span::{opt_within, Span};
use super::text::{self, find_param, is_token, trim, unquote};
use super::uri::Uri;

/// The straightforward parsers the fast ones are checked against.
#[cfg(test)]
mod reference_oracle;

/// One Via value (RFC 3261 section 20.42), with RFC 3581 `rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    pub protocol: &'a [u8],
    pub version: &'a [u8],
    pub transport: &'a [u8],
    /// Host as written; IPv6 references keep their brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The raw `;`-parameter list.
    pub params: &'a [u8],
    /// The `branch` value, found while the parameters were checked.
    branch: Option<&'a [u8]>,
}

impl<'a> Via<'a> {
    pub fn parse(s: &'a [u8]) -> Option<Via<'a>> {
        let s = trim(s);
        // Nearly every Via starts so; what the token walks would find.
        let (protocol, version, s) = match s {
            [b'S', b'I', b'P', b'/', b'2', b'.', b'0', b'/', rest @ ..] => {
                (&s[..3], &s[4..7], rest)
            }
            _ => {
                let (protocol, s) = token(s)?;
                let s = expect(s, b'/')?;
                let (version, s) = token(s)?;
                let s = expect(s, b'/')?;
                (protocol, version, s)
            }
        };
        let (transport, rest) = token(s)?;
        // At least one whitespace separates the transport from sent-by.
        if rest.first().is_none_or(|b| !text::is_ws(*b)) {
            return None;
        }
        let s = trim_start(rest);
        let (host, after) = if s.first() == Some(&b'[') {
            let close = text::find::<b']'>(s, 0)?;
            (&s[..=close], &s[close + 1..])
        } else {
            s.split_at(text::host_end(s))
        };
        if host.is_empty() {
            return None;
        }
        let mut after = trim_start(after);
        let mut port = None;
        if let Some(p) = after.strip_prefix(b":") {
            let p = trim_start(p);
            let (end, p_port) = text::leading_port(p);
            port = Some(p_port?);
            after = &p[end..];
        }
        let params = trim(after);
        let branch = text::checked_param(params, b"branch")?;
        Some(Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
            branch,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name.as_bytes())
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.param("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: rport asked for; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(|p| text::parse_u64(p, 65535)).map(|p| p as u16))
    }

    /// The branch begins with RFC 3261's magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() >= 7 && b[..7] == *b"z9hG4bK")
    }

    /// The sent-by text (`host[:port]`) for transaction matching.
    pub fn sent_by(&self) -> (&'a [u8], Option<u16>) {
        (self.host, self.port)
    }
}

/// A [`Via`] as spans into the message buffer (see `message::Parsed`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaAt {
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    port: Option<u16>,
    params: Span,
    branch: Option<Span>,
}

impl ViaAt {
    pub(crate) fn of(base: &[u8], v: &Via<'_>) -> Option<ViaAt> {
        Some(ViaAt {
            protocol: Span::within(base, v.protocol)?,
            version: Span::within(base, v.version)?,
            transport: Span::within(base, v.transport)?,
            host: Span::within(base, v.host)?,
            port: v.port,
            params: Span::within(base, v.params)?,
            branch: opt_within(base, v.branch)?,
        })
    }

    pub(crate) fn at(self, buf: &[u8]) -> Via<'_> {
        Via {
            protocol: &buf[self.protocol.range()],
            version: &buf[self.version.range()],
            transport: &buf[self.transport.range()],
            host: &buf[self.host.range()],
            port: self.port,
            params: &buf[self.params.range()],
            branch: self.branch.map(|b| &buf[b.range()]),
        }
    }
}

/// A [`NameAddr`] as spans into the message buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameAddrAt {
    display: Option<Span>,
    uri_text: Span,
    bracketed: bool,
    params: Span,
    tag: Option<Span>,
}

impl NameAddrAt {
    pub(crate) fn of(base: &[u8], n: &NameAddr<'_>) -> Option<NameAddrAt> {
        Some(NameAddrAt {
            display: opt_within(base, n.display)?,
            uri_text: Span::within(base, n.uri_text)?,
            bracketed: n.bracketed,
            params: Span::within(base, n.params)?,
            tag: opt_within(base, n.tag)?,
        })
    }

    pub(crate) fn at(self, buf: &[u8]) -> NameAddr<'_> {
        NameAddr {
            display: self.display.map(|d| &buf[d.range()]),
            uri_text: &buf[self.uri_text.range()],
            bracketed: self.bracketed,
            params: &buf[self.params.range()],
            uri: None,
            tag: self.tag.map(|t| &buf[t.range()]),
        }
    }
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if text::is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim_start(s);
    let end = s.iter().position(|&b| !is_token(b)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

fn expect(s: &[u8], c: u8) -> Option<&[u8]> {
    let s = trim_start(s);
    (s.first() == Some(&c)).then(|| &s[1..])
}

/// A name-addr or addr-spec with header parameters: From, To, Contact,
/// Route, Record-Route, P-Asserted-Identity, Geolocation, Call-Info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quotes removed, escapes kept).
    pub display: Option<&'a [u8]>,
    /// The URI text (without the angle brackets).
    pub uri_text: &'a [u8],
    /// Whether the URI was inside `<>`.
    pub bracketed: bool,
    /// The raw `;`-parameter list after the URI.
    pub params: &'a [u8],
    /// The URI, when the value was parsed here; a value read back from the
    /// spans a check kept parses its URI when asked.
    uri: Option<Uri<'a>>,
    /// The `tag` parameter, found while the parameters were checked.
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value. `Contact: *` gives a `uri_text` of `*`.
    pub fn parse(s: &'a [u8]) -> Option<NameAddr<'a>> {
        Self::parse_with(s, false)
    }

    /// [`NameAddr::parse`], but the display name may be any text before the
    /// `<`: unquoted with a comma (`Smith, John <sip:...>`, which RFC 3261
    /// wants quoted), with a stray quote (`"John "Jack" Smith" <sip:...>`),
    /// or a quote that never ends (`"Smith <sip:...>`); spaces inside the
    /// brackets are ignored. What equipment in the field sends, read for a
    /// call the router still routes: the header itself is passed on as
    /// received.
    pub fn parse_loose(s: &'a [u8]) -> Option<NameAddr<'a>> {
        Self::parse_with(s, true).or_else(|| Self::salvage(trim(s)))
    }

    /// The last resort of [`NameAddr::parse_loose`]: the URI is what stands
    /// between the last `>` and the `<` before it, the parameters follow,
    /// and whatever comes first is the display name, quotes and all.
    fn salvage(s: &'a [u8]) -> Option<NameAddr<'a>> {
        let gt = s.iter().rposition(|&b| b == b'>')?;
        let lt = s[..gt].iter().rposition(|&b| b == b'<')?;
        let uri_text = trim(&s[lt + 1..gt]);
        let uri = Uri::parse(uri_text).ok()?;
        let params = trim(&s[gt + 1..]);
        let display = trim(&s[..lt]);
        Some(NameAddr {
            display: if display.is_empty() {
                None
            } else {
                Some(display)
            },
            uri_text,
            bracketed: true,
            params,
            uri: Some(uri),
            tag: text::checked_param(params, b"tag")?,
        })
    }

    fn parse_with(s: &'a [u8], loose: bool) -> Option<NameAddr<'a>> {
        let s = trim(s);
        if s.is_empty() {
            return None;
        }
        if s == b"*" {
            return Some(NameAddr {
                display: None,
                uri_text: s,
                bracketed: false,
                params: b"",
                uri: None,
                tag: None,
            });
        }
        let (display, rest) = if s[0] == b'"' {
            let end = text::quoted_end(s)?;
            (Some(unquote(&s[..end])), trim_start(&s[end..]))
        } else if let Some(lt) = text::find::<b'<'>(s, 0) {
            let d = trim(&s[..lt]);
            // An unquoted display name is tokens separated by whitespace.
            if !loose && !d.iter().all(|&b| is_token(b) || text::is_ws(b)) {
                return None;
            }
            (if d.is_empty() { None } else { Some(d) }, &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix(b"<") {
            let gt = text::find::<b'>'>(inner, 0)?;
            let uri_text = &inner[..gt];
            let uri = Uri::parse(uri_text).ok()?;
            let params = trim(&inner[gt + 1..]);
            Some(NameAddr {
                display,
                uri_text,
                bracketed: true,
                params,
                uri: Some(uri),
                tag: text::checked_param(params, b"tag")?,
            })
        } else {
            if display.is_some() {
                return None;
            }
            // addr-spec: the URI ends at the first ';' or whitespace; a URI
            // with '?' or ',' must be bracketed (RFC 3261 section 20).
            let end = rest
                .iter()
                .position(|&b| b == b';' || text::is_ws(b))
                .unwrap_or(rest.len());
            let uri_text = &rest[..end];
            if uri_text.contains(&b'?') || uri_text.contains(&b',') {
                return None;
            }
            let uri = Uri::parse(uri_text).ok()?;
            let params = trim(&rest[end..]);
            Some(NameAddr {
                display,
                uri_text,
                bracketed: false,
                params,
                uri: Some(uri),
                tag: text::checked_param(params, b"tag")?,
            })
        }
    }

    pub fn uri(&self) -> Option<Uri<'a>> {
        self.uri.or_else(|| Uri::parse(self.uri_text).ok())
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name.as_bytes())
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    pub fn parse(s: &'a [u8]) -> Option<CSeq<'a>> {
        let s = trim(s);
        let end = s.iter().position(|b| !b.is_ascii_digit())?;
        let seq = text::parse_u64(&s[..end], u64::from(u32::MAX))? as u32;
        if !text::is_ws(s[end]) {
            return None;
        }
        let method = trim(&s[end..]);
        text::is_token_str(method).then_some(CSeq { seq, method })
    }
}

/// A media type with parameters (`multipart/mixed; boundary=x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub mtype: &'a [u8],
    pub subtype: &'a [u8],
    pub params: &'a [u8],
    /// The `boundary` value (quotes removed), found while the parameters
    /// were checked.
    boundary: Option<&'a [u8]>,
}

impl<'a> MediaType<'a> {
    pub fn parse(s: &'a [u8]) -> Option<MediaType<'a>> {
        let (mtype, s) = token(s)?;
        let s = expect(s, b'/')?;
        let (subtype, s) = token(s)?;
        let params = trim(s);
        let boundary = text::checked_param(params, b"boundary")?.map(unquote);
        Some(MediaType {
            mtype,
            subtype,
            params,
            boundary,
        })
    }

    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    pub fn is_multipart(&self) -> bool {
        self.mtype.eq_ignore_ascii_case(b"multipart")
    }

    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        find_param(self.params, name.as_bytes())
            .flatten()
            .map(unquote)
    }

    pub fn boundary(&self) -> Option<&'a [u8]> {
        self.boundary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_everywhere() {
        let v = Via::parse(b"SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        let v =
            Via::parse(b"SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host, b"spindle.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn via_ipv6_port_received_rport() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];rport;branch=z9hG4bKas3",
        )
        .unwrap();
        assert_eq!(v.host, b"[2001:db8::9:1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some(&b"[2001:db8::9:255]"[..]));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(b"SIP/2.0/UDP h;rport=5061").unwrap();
        assert_eq!(v.rport(), Some(Some(5061)));
    }

    #[test]
    fn via_rejects() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDP host;;branch=x",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:99999",
        ] {
            assert!(Via::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display, Some(&br#"J Rosenberg \\\""#[..]));
        assert_eq!(n.uri_text, b"sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        let n =
            NameAddr::parse(b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.tag(), Some(&b"1918181833n"[..]));
        let n = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some(&b"caller"[..]));
        let n = NameAddr::parse(b"<tel:+12125550142>").unwrap();
        assert_eq!(
            n.uri().unwrap().phone_digits().unwrap().as_str(),
            "+12125550142"
        );
    }

    #[test]
    fn name_addr_rejects() {
        for bad in [
            "\"unterminated <sip:a@b>",
            "< sip:a@b >",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;tag=1",
            "",
        ] {
            assert!(NameAddr::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn loose_name_addr_reads_uri_and_tag_behind_any_display_name() {
        // (value, display, URI, tag)
        let cases: [(&str, Option<&str>, &str, Option<&str>); 6] = [
            (
                "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
                Some("Bell, Alexander"),
                "sip:a.g.bell@example.com",
                Some("43"),
            ),
            (
                "\"unterminated <sip:a@b>",
                Some("\"unterminated"),
                "sip:a@b",
                None,
            ),
            (
                "\"John \"Jack\" Smith\" <tel:+12125550142>;tag=9",
                Some("\"John \"Jack\" Smith\""),
                "tel:+12125550142",
                Some("9"),
            ),
            ("< sip:a@b >", None, "sip:a@b", None),
            (
                "\"a <b\" \"c <sip:x@y>;tag=t",
                Some("\"a <b\" \"c"),
                "sip:x@y",
                Some("t"),
            ),
            // Strictly well-formed values read the same either way.
            (
                "\"J R\" <sip:j@example.com>;tag=1",
                Some("J R"),
                "sip:j@example.com",
                Some("1"),
            ),
        ];
        for (value, display, uri, tag) in cases {
            let n = NameAddr::parse_loose(value.as_bytes()).expect(value);
            assert_eq!(n.display, display.map(str::as_bytes), "{value}");
            assert_eq!(n.uri_text, uri.as_bytes(), "{value}");
            assert_eq!(n.tag(), tag.map(str::as_bytes), "{value}");
        }
        // Still nothing to read: no URI, a broken URI, broken parameters.
        for bad in [
            "\"unterminated",
            "\"x\" <sip:>",
            "\"x <sip:a@b>;;tag=1",
            "\"x <sip:a@b",
            "",
        ] {
            assert!(NameAddr::parse_loose(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn cseq_and_media_type() {
        assert_eq!(
            CSeq::parse(b"0009\r\n  INVITE"),
            Some(CSeq {
                seq: 9,
                method: b"INVITE"
            })
        );
        assert!(CSeq::parse(b"36893488147419103232 INVITE").is_none());
        assert!(CSeq::parse(b"1INVITE").is_none());
        let m = MediaType::parse(b"multipart/mixed; boundary=\"unique-boundary-1\"").unwrap();
        assert!(m.is_multipart());
        assert_eq!(m.boundary(), Some(&b"unique-boundary-1"[..]));
        assert!(MediaType::parse(b"application").is_none());
    }
}
