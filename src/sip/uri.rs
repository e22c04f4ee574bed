//! URIs: sip, sips, tel (RFC 3966), urn (RFC 5031 service URNs) and any other
//! scheme kept as text. Parsing borrows from the input; unescaping allocates
//! only when the text holds an escape.

use std::borrow::Cow;

use super::span::{opt_within, Span};
use super::text::{self, find_param};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Urn,
    Other,
}

/// A parsed URI. `params` and `headers` are the raw text after the host
/// part (starting at `;` and after `?`), walked on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub raw: &'a [u8],
    pub scheme: Scheme,
    /// The scheme as written (`sip`, `SIP`, `soap.beep`, ...).
    pub scheme_text: &'a [u8],
    /// sip/sips: user part; tel: the number; urn: the NID (`service`).
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// sip/sips: host (IPv6 references keep their brackets); urn: the NSS
    /// (`sos.fire`); tel and other schemes: empty.
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: &'a [u8],
    pub headers: Option<&'a [u8]>,
}

/// A [`Uri`] as spans into the message buffer (see `message::Parsed`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UriAt {
    raw: Span,
    scheme: Scheme,
    scheme_text: Span,
    user: Option<Span>,
    password: Option<Span>,
    host: Span,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
}

impl UriAt {
    pub(crate) fn of(base: &[u8], u: &Uri<'_>) -> Option<UriAt> {
        Some(UriAt {
            raw: Span::within(base, u.raw)?,
            scheme: u.scheme,
            scheme_text: Span::within(base, u.scheme_text)?,
            user: opt_within(base, u.user)?,
            password: opt_within(base, u.password)?,
            host: Span::within(base, u.host)?,
            port: u.port,
            params: Span::within(base, u.params)?,
            headers: opt_within(base, u.headers)?,
        })
    }

    pub(crate) fn at(self, buf: &[u8]) -> Uri<'_> {
        let s = |x: Span| &buf[x.range()];
        Uri {
            raw: s(self.raw),
            scheme: self.scheme,
            scheme_text: s(self.scheme_text),
            user: self.user.map(s),
            password: self.password.map(s),
            host: s(self.host),
            port: self.port,
            params: s(self.params),
            headers: self.headers.map(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    NoScheme,
    BadHost,
    BadPort,
    BadParams,
    Whitespace,
    Empty,
}

impl UriError {
    pub fn as_str(self) -> &'static str {
        match self {
            UriError::NoScheme => "no scheme",
            UriError::BadHost => "bad host",
            UriError::BadPort => "bad port",
            UriError::BadParams => "bad parameters",
            UriError::Whitespace => "whitespace",
            UriError::Empty => "empty",
        }
    }
}

/// Whether `s` is `lower`, a word of lower-case letters, in any case:
/// setting the 0x20 bit maps a byte onto a lower-case letter only from that
/// letter or its capital.
#[inline(always)]
fn letters_are(s: &[u8], lower: &[u8]) -> bool {
    s.len() == lower.len() && s.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
}

impl<'a> Uri<'a> {
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        if text::has_ws(s) {
            return Err(UriError::Whitespace);
        }
        let colon = text::find::<b':'>(s, 0).ok_or(UriError::NoScheme)?;
        let scheme_text = &s[..colon];
        if scheme_text.is_empty()
            || !scheme_text[0].is_ascii_alphabetic()
            || !scheme_text.iter().all(|&b| text::is_scheme_char(b))
        {
            return Err(UriError::NoScheme);
        }
        let rest = &s[colon + 1..];
        let scheme = if letters_are(scheme_text, b"sip") {
            Scheme::Sip
        } else if letters_are(scheme_text, b"sips") {
            Scheme::Sips
        } else if letters_are(scheme_text, b"tel") {
            Scheme::Tel
        } else if letters_are(scheme_text, b"urn") {
            Scheme::Urn
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw: s,
            scheme,
            scheme_text,
            user: None,
            password: None,
            host: b"",
            port: None,
            params: b"",
            headers: None,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => {
                let end = text::find::<b';'>(rest, 0).unwrap_or(rest.len());
                if end == 0 {
                    return Err(UriError::Empty);
                }
                uri.user = Some(&rest[..end]);
                uri.params = &rest[end..];
                if !text::params_ok(uri.params) {
                    return Err(UriError::BadParams);
                }
            }
            Scheme::Urn => {
                let c = text::find::<b':'>(rest, 0).ok_or(UriError::Empty)?;
                uri.user = Some(&rest[..c]);
                uri.host = &rest[c + 1..];
                if uri.host.is_empty() || rest[..c].is_empty() {
                    return Err(UriError::Empty);
                }
            }
            Scheme::Other => {
                if rest.is_empty() {
                    return Err(UriError::Empty);
                }
            }
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a [u8]) -> Result<(), UriError> {
        // The user part may hold ';', '?', '/' and ':' (RFC 4475 3.1.1.2 and
        // 3.1.1.9) but never an unescaped '@', so the first '@' ends it; a
        // ':' before that '@' ends the user and starts the password.
        let hostpart = match text::find2::<b'@', b':'>(rest, 0) {
            Some(at) if rest[at] == b'@' => {
                self.user = Some(&rest[..at]);
                &rest[at + 1..]
            }
            Some(c) => match text::find::<b'@'>(rest, c + 1) {
                Some(at) => {
                    self.user = Some(&rest[..c]);
                    self.password = Some(&rest[c + 1..at]);
                    &rest[at + 1..]
                }
                None => rest,
            },
            None => rest,
        };
        let (host, after) = if hostpart.first() == Some(&b'[') {
            let close = text::find::<b']'>(hostpart, 0).ok_or(UriError::BadHost)?;
            let inner = &hostpart[1..close];
            if inner.is_empty()
                || !inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(UriError::BadHost);
            }
            (&hostpart[..=close], &hostpart[close + 1..])
        } else {
            hostpart.split_at(text::host_end(hostpart))
        };
        if host.is_empty() {
            return Err(UriError::BadHost);
        }
        self.host = host;
        let mut after = after;
        if let Some(p) = after.strip_prefix(b":") {
            let (end, port) = text::leading_port(p);
            self.port = Some(port.ok_or(UriError::BadPort)?);
            after = &p[end..];
        }
        let (params, headers) = match text::find::<b'?'>(after, 0) {
            Some(q) => (&after[..q], Some(&after[q + 1..])),
            None => (after, None),
        };
        if !params.is_empty() && params[0] != b';' {
            return Err(UriError::BadHost);
        }
        if !text::params_ok(params) {
            return Err(UriError::BadParams);
        }
        self.params = params;
        self.headers = headers;
        Ok(())
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// A URI parameter's value (`Some(None)` for a flag such as `lr`).
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name.as_bytes())
    }

    /// The user part with `%HH` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }

    /// For `urn:service:...`: the service, lower-cased comparison is up to
    /// the caller (`sos`, `sos.fire`, `test.sos`...).
    pub fn service_urn(&self) -> Option<&'a [u8]> {
        (self.scheme == Scheme::Urn && self.user?.eq_ignore_ascii_case(b"service"))
            .then_some(self.host)
    }

    /// The dialed digits of a telephone number in this URI: the tel number,
    /// or a sip user part that is a phone number (with or without
    /// `user=phone`). Visual separators `-.()` and spaces-as-escapes are
    /// dropped; a leading `+` is kept. `None` when the user part is not a
    /// number.
    pub fn phone_digits(&self) -> Option<Digits> {
        let user = match self.scheme {
            Scheme::Tel => self.user?,
            Scheme::Sip | Scheme::Sips => {
                let u = self.user?;
                // A user part may carry tel parameters (`911;phone-context=+1`).
                &u[..text::find::<b';'>(u, 0).unwrap_or(u.len())]
            }
            _ => return None,
        };
        Digits::from_dial_string(user)
    }

    /// `phone-context` from a tel URI, or from the user part of a sip URI.
    pub fn phone_context(&self) -> Option<&'a [u8]> {
        let params = match self.scheme {
            Scheme::Tel => self.params,
            Scheme::Sip | Scheme::Sips => {
                let u = self.user?;
                &u[text::find::<b';'>(u, 0)?..]
            }
            _ => return None,
        };
        find_param(params, b"phone-context").flatten()
    }
}

/// Up to 32 dialed digits (and a leading `+`) held inline, no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    buf: [u8; 32],
    len: u8,
}

impl Digits {
    pub fn from_dial_string(s: &[u8]) -> Option<Digits> {
        let mut d = Digits {
            buf: [0; 32],
            len: 0,
        };
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            let b = if b == b'%' && i + 2 < s.len() {
                match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        i += 2;
                        h * 16 + l
                    }
                    _ => return None,
                }
            } else {
                b
            };
            i += 1;
            match b {
                b'0'..=b'9' | b'*' | b'#' => {}
                b'+' if d.len == 0 => {}
                b'-' | b'.' | b'(' | b')' | b' ' => continue,
                _ => return None,
            }
            if usize::from(d.len) == d.buf.len() {
                return None;
            }
            d.buf[usize::from(d.len)] = b;
            d.len += 1;
        }
        (d.len > 0 && d.as_str() != "+").then_some(d)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, '*', '#' and '+' are ever stored.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digits({})", self.as_str())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes. A `%` not followed by two hex digits stays as
/// written (RFC 4475 3.1.1.5). Borrows when there is nothing to decode.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if text::find::<b'%'>(s, 0).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn sip_uri_parts() {
        let u = p("sip:alice:secret@example.com:5070;transport=tcp;lr?subject=x");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, b"example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers, Some(&b"subject=x"[..]));
    }

    #[test]
    fn ipv6_references() {
        let u = p("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, b"[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        let u = p("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        assert!(Uri::parse(b"sip:user@2001:db8::10").is_err());
        assert!(p("sip:[2001:db8:::192.0.2.1]").host.len() > 2);
    }

    #[test]
    fn user_parts_with_odd_characters() {
        let u = p("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        let u = p("sip:%75se%72@example.com");
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"user");
        assert_eq!(unescape(b"RE%47IST%45R").as_ref(), b"REGISTER");
        assert_eq!(unescape(b"100%").as_ref(), b"100%");
        assert_eq!(unescape(b"a%00b").as_ref(), b"a\0b");
    }

    #[test]
    fn tel_and_urn() {
        let u = p("tel:911;phone-context=+1");
        assert_eq!(u.phone_digits().unwrap().as_str(), "911");
        assert_eq!(u.phone_context(), Some(&b"+1"[..]));
        let u = p("tel:+1-212-555-0142");
        assert_eq!(u.phone_digits().unwrap().as_str(), "+12125550142");
        let u = p("sip:911@gw.example.net;user=phone");
        assert_eq!(u.phone_digits().unwrap().as_str(), "911");
        let u = p("sip:+1(212)555.0142;phone-context=x@h");
        assert_eq!(u.phone_digits().unwrap().as_str(), "+12125550142");
        assert!(p("sip:alice@h").phone_digits().is_none());
        let u = p("urn:service:sos.fire");
        assert_eq!(u.service_urn(), Some(&b"sos.fire"[..]));
        assert_eq!(p("URN:Service:SOS").service_urn(), Some(&b"SOS"[..]));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "<sip:a@b>",
            "sip:a@b c",
            "sip:",
            "sip:a@b:99999",
            "sip:a@b;;x",
            "1sip:x",
            "urn:service",
        ] {
            assert!(Uri::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(p("soap.beep://192.0.2.103:3002").scheme, Scheme::Other);
    }
}
