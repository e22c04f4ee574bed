//! The header-value parsers as they were before their rewrite for speed,
//! kept to check the current ones against: the differential tests below
//! feed both the same generated inputs and want the same answers.

use super::super::text::{self, is_token, trim, unquote};
use super::super::uri::{Scheme, Uri, UriError};
// Helpers the rewrite left as they were are shared, not copied.
use super::{expect, token, trim_start, MediaType, NameAddr, Via};

pub fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

pub fn split_commas(s: &[u8]) -> CommaSplit<'_> {
    CommaSplit { rest: Some(s) }
}

pub struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        if text::find2::<b',', b'"'>(s, 0).is_none() {
            self.rest = None;
            return Some(trim(s));
        }
        let mut i = 0;
        let mut angle = false;
        while i < s.len() {
            match s[i] {
                b'"' if !angle => match quoted_end(&s[i..]) {
                    Some(n) => i += n,
                    None => break,
                },
                b'<' => {
                    angle = true;
                    i += 1;
                }
                b'>' => {
                    angle = false;
                    i += 1;
                }
                b',' if !angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim(&s[..i]));
                }
                _ => i += 1,
            }
        }
        self.rest = None;
        Some(trim(s))
    }
}

pub fn params(s: &[u8]) -> Params<'_> {
    Params {
        rest: s,
        failed: false,
    }
}

#[derive(Clone)]
pub struct Params<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a [u8], Option<&'a [u8]>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let s = self.rest;
        let skip_ws = |mut i: usize| {
            while i < s.len() && text::is_ws(s[i]) {
                i += 1;
            }
            i
        };
        let mut i = skip_ws(0);
        if i == s.len() {
            return None;
        }
        if s[i] != b';' {
            self.failed = true;
            return Some(Err(()));
        }
        i = skip_ws(i + 1);
        let name_start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        let name = &s[name_start..i];
        i = skip_ws(i);
        let mut value = None;
        match s.get(i) {
            Some(b'=') => {
                let start = skip_ws(i + 1);
                i = start;
                while i < s.len() {
                    match s[i] {
                        b'"' => match quoted_end(&s[i..]) {
                            Some(n) => i += n,
                            None => {
                                self.failed = true;
                                return Some(Err(()));
                            }
                        },
                        b';' => break,
                        _ => i += 1,
                    }
                }
                let mut end = i;
                while end > start && text::is_ws(s[end - 1]) {
                    end -= 1;
                }
                value = Some(&s[start..end]);
            }
            None | Some(b';') => {}
            Some(_) => {
                self.failed = true;
                return Some(Err(()));
            }
        }
        self.rest = &s[i..];
        if name.is_empty() || value.is_some_and(|v| v.is_empty()) {
            self.failed = true;
            return Some(Err(()));
        }
        Some(Ok((name, value)))
    }
}

pub fn find_param<'a>(s: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    params(s)
        .filter_map(Result::ok)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

pub fn checked_param<'a>(s: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    let mut found: Option<Option<&[u8]>> = None;
    if s.is_empty() {
        return Some(None);
    }
    if s[0] != b';' {
        return None;
    }
    for p in params(s) {
        let (n, value) = p.ok()?;
        if found.is_none() && n.eq_ignore_ascii_case(name) {
            found = Some(value);
        }
    }
    Some(found.flatten())
}

pub fn params_ok(s: &[u8]) -> bool {
    params(s).all(|p| p.is_ok())
}

pub fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (v <= max).then_some(v)
}

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

pub fn uri(s: &[u8]) -> Result<Uri<'_>, UriError> {
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
        || !scheme_text.iter().all(|&b| is_scheme_char(b))
    {
        return Err(UriError::NoScheme);
    }
    let rest = &s[colon + 1..];
    let scheme = if scheme_text.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme_text.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if scheme_text.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else if scheme_text.eq_ignore_ascii_case(b"urn") {
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
        Scheme::Sip | Scheme::Sips => uri_sip(&mut uri, rest)?,
        Scheme::Tel => {
            let end = text::find::<b';'>(rest, 0).unwrap_or(rest.len());
            if end == 0 {
                return Err(UriError::Empty);
            }
            uri.user = Some(&rest[..end]);
            uri.params = &rest[end..];
            if !params_ok(uri.params) {
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

fn uri_sip<'a>(u: &mut Uri<'a>, rest: &'a [u8]) -> Result<(), UriError> {
    let hostpart = match text::find::<b'@'>(rest, 0) {
        Some(at) => {
            let userinfo = &rest[..at];
            match text::find::<b':'>(userinfo, 0) {
                Some(c) => {
                    u.user = Some(&userinfo[..c]);
                    u.password = Some(&userinfo[c + 1..]);
                }
                None => u.user = Some(userinfo),
            }
            &rest[at + 1..]
        }
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
        let end = hostpart
            .iter()
            .position(|&b| !text::is_host_char(b))
            .unwrap_or(hostpart.len());
        (&hostpart[..end], &hostpart[end..])
    };
    if host.is_empty() {
        return Err(UriError::BadHost);
    }
    u.host = host;
    let mut after = after;
    if let Some(p) = after.strip_prefix(b":") {
        let end = p
            .iter()
            .position(|&b| !b.is_ascii_digit())
            .unwrap_or(p.len());
        let port = text::parse_u64(&p[..end], 65535).ok_or(UriError::BadPort)?;
        u.port = Some(port as u16);
        after = &p[end..];
    }
    let (params, headers) = match text::find::<b'?'>(after, 0) {
        Some(q) => (&after[..q], Some(&after[q + 1..])),
        None => (after, None),
    };
    if !params.is_empty() && params[0] != b';' {
        return Err(UriError::BadHost);
    }
    if !params_ok(params) {
        return Err(UriError::BadParams);
    }
    u.params = params;
    u.headers = headers;
    Ok(())
}

pub fn via(s: &[u8]) -> Option<Via<'_>> {
    let s = trim(s);
    let (protocol, s) = token(s)?;
    let s = expect(s, b'/')?;
    let (version, s) = token(s)?;
    let s = expect(s, b'/')?;
    let (transport, rest) = token(s)?;
    if rest.first().is_none_or(|b| !text::is_ws(*b)) {
        return None;
    }
    let s = trim_start(rest);
    let (host, after) = if s.first() == Some(&b'[') {
        let close = text::find::<b']'>(s, 0)?;
        (&s[..=close], &s[close + 1..])
    } else {
        let end = s
            .iter()
            .position(|&b| !text::is_host_char(b))
            .unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if host.is_empty() {
        return None;
    }
    let mut after = trim_start(after);
    let mut port = None;
    if let Some(p) = after.strip_prefix(b":") {
        let p = trim_start(p);
        let end = p
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(p.len());
        port = Some(text::parse_u64(&p[..end], 65535)? as u16);
        after = &p[end..];
    }
    let params = trim(after);
    let branch = checked_param(params, b"branch")?;
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

pub fn name_addr(s: &[u8]) -> Option<NameAddr<'_>> {
    name_addr_with(s, false)
}

pub fn name_addr_loose(s: &[u8]) -> Option<NameAddr<'_>> {
    name_addr_with(s, true).or_else(|| salvage(trim(s)))
}

fn salvage(s: &[u8]) -> Option<NameAddr<'_>> {
    let gt = s.iter().rposition(|&b| b == b'>')?;
    let lt = s[..gt].iter().rposition(|&b| b == b'<')?;
    let uri_text = trim(&s[lt + 1..gt]);
    let u = uri(uri_text).ok()?;
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
        uri: Some(u),
        tag: checked_param(params, b"tag")?,
    })
}

fn name_addr_with(s: &[u8], loose: bool) -> Option<NameAddr<'_>> {
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
        let end = quoted_end(s)?;
        (Some(unquote(&s[..end])), trim_start(&s[end..]))
    } else if let Some(lt) = text::find::<b'<'>(s, 0) {
        let d = trim(&s[..lt]);
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
        let u = uri(uri_text).ok()?;
        let params = trim(&inner[gt + 1..]);
        Some(NameAddr {
            display,
            uri_text,
            bracketed: true,
            params,
            uri: Some(u),
            tag: checked_param(params, b"tag")?,
        })
    } else {
        if display.is_some() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b';' || text::is_ws(b))
            .unwrap_or(rest.len());
        let uri_text = &rest[..end];
        if uri_text.contains(&b'?') || uri_text.contains(&b',') {
            return None;
        }
        let u = uri(uri_text).ok()?;
        let params = trim(&rest[end..]);
        Some(NameAddr {
            display,
            uri_text,
            bracketed: false,
            params,
            uri: Some(u),
            tag: checked_param(params, b"tag")?,
        })
    }
}

pub fn media_type(s: &[u8]) -> Option<MediaType<'_>> {
    let (mtype, s) = token(s)?;
    let s = expect(s, b'/')?;
    let (subtype, s) = token(s)?;
    let params = trim(s);
    let boundary = checked_param(params, b"boundary")?.map(unquote);
    Some(MediaType {
        mtype,
        subtype,
        params,
        boundary,
    })
}

mod tests {
    use super::super::super::text;
    use super::super::{MediaType, NameAddr, Via};
    use super::Uri;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
    }

    const PIECES: &[&str] = &[
        "sip",
        "sips",
        "SIP",
        "tel",
        "urn",
        "service",
        "sos",
        "sos.fire",
        "mailto",
        "cid",
        "alice",
        "bob",
        "+12125550142",
        "911",
        "example.com",
        "192.0.2.10",
        "a-b_c.d",
        "2.0",
        "UDP",
        "TCP",
        "TLS",
        "branch",
        "z9hG4bK776asd",
        "tag",
        "transport",
        "lr",
        "rport",
        "received",
        "maddr",
        "user",
        "phone",
        "phone-context",
        "boundary",
        "5060",
        "65535",
        "65536",
        "99999",
        "0",
        "[2001:db8::1]",
        "[::1]",
        "[",
        "]",
        "%41",
        "%",
        "%zz",
        "\\\"",
        "\\",
        "\"",
        "<",
        ">",
        ";",
        "=",
        ",",
        ":",
        "@",
        "?",
        "/",
        "*",
        ".",
        "-",
        "!",
        "~",
        "'",
        " ",
        "  ",
        "\t",
        "\r\n",
        "\n",
        "\r",
        "x",
        "Z",
        "1",
        "\u{e9}",
        "\x00",
        "\x7f",
        "&",
        "(",
        ")",
        "{",
        "#",
        "$",
        "^",
        "|",
        "+",
    ];

    const SEEDS: &[&str] = &[
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc01a",
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101",
        "SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8",
        "SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];rport;branch=z9hG4bKas3",
        "SIP/2.0/UDP h;rport=5061",
        "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-1-0, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx",
        "<sip:911@proxy.example.net>",
        "<sip:+12125550142@example.com>;tag=7a1fc01-",
        "<sip:+12125550142@192.0.2.10:5060;transport=udp>",
        "<cid:loc-c01@ua1.example.com>",
        "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8",
        "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        "caller<sip:caller@example.com>;tag=323",
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "\"John \"Jack\" Smith\" <tel:+12125550142>;tag=9",
        "<sip:127.0.0.1:5060;lr;r2=on>, <sip:10.0.0.1;transport=tcp;lr>",
        "Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "*",
        "< sip:a@b >",
        "sip:alice:secret@example.com:5070;transport=tcp;lr?subject=x",
        "sip:user;par=u%40example.net@example.com",
        "sip:[2001:db8::10]:5070",
        "tel:+1-212-555-0142;phone-context=+1",
        "urn:service:sos.fire",
        "soap.beep://192.0.2.103:3002",
        "multipart/mixed; boundary=\"unique-boundary-1\"",
        "application/sdp",
        " ;   tag    = 1918181833n ; x=\"a;b\";received=[2001:db8::9:255];lr",
        ";a=\"q\\\"x\";b",
        "\"a, b\" <sip:x@y;p=1,2>, <sip:z@w> , sip:q@r",
    ];

    fn random_value(r: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        let mode = r.below(4);
        if mode == 0 {
            // A parameter list, maybe with a URI before it.
            if r.below(2) == 0 {
                v.extend_from_slice(b"<sip:a@b.example");
                if r.below(2) == 0 {
                    v.extend_from_slice(b";lr");
                }
                v.push(b'>');
            }
            for _ in 0..r.below(5) {
                v.extend_from_slice(r.pick(&["", " ", "\t", "  "]).as_bytes());
                v.push(b';');
                v.extend_from_slice(r.pick(&["", " ", "\t"]).as_bytes());
                v.extend_from_slice(r.pick(PIECES[..40].as_ref()).as_bytes());
                if r.below(3) != 0 {
                    v.extend_from_slice(r.pick(&["=", " = ", "=\t", " ="]).as_bytes());
                    v.extend_from_slice(
                        r.pick(&[
                            "1",
                            "z9hG4bK77",
                            "\"a;b\"",
                            "\"\\\"\"",
                            "[2001:db8::1]",
                            "x y",
                            "tcp",
                            "",
                        ])
                        .as_bytes(),
                    );
                }
            }
            if r.below(4) == 0 {
                mutate(r, &mut v);
            }
        } else if mode == 1 {
            v.extend_from_slice(r.pick(SEEDS).as_bytes());
            for _ in 0..1 + r.below(3) {
                mutate(r, &mut v);
            }
        } else {
            for _ in 0..r.below(24) {
                if r.below(8) == 0 {
                    v.push(r.next() as u8);
                } else {
                    v.extend_from_slice(r.pick(PIECES).as_bytes());
                }
            }
        }
        v
    }

    fn mutate(r: &mut Rng, v: &mut Vec<u8>) {
        let at = r.below(v.len() + 1);
        match r.below(6) {
            0 => {
                let p = r.pick(PIECES).as_bytes();
                v.splice(at..at, p.iter().copied());
            }
            1 if at < v.len() => {
                let end = (at + 1 + r.below(4)).min(v.len());
                v.drain(at..end);
            }
            2 if at < v.len() => v[at] = *r.pick(b" \t;=,:@<>\"\\%[]?/"),
            3 => v.truncate(at),
            4 if at < v.len() => {
                let end = (at + 1 + r.below(12)).min(v.len());
                let dup = v[at..end].to_vec();
                v.splice(end..end, dup);
            }
            _ => v.insert(at, r.next() as u8),
        }
    }

    /// A slice as where it lies in `base`, so that answers compare by
    /// position as well as by content.
    fn at(base: &[u8], s: &[u8]) -> (usize, usize) {
        if s.is_empty() {
            return (0, 0);
        }
        (s.as_ptr() as usize - base.as_ptr() as usize, s.len())
    }

    fn opt(base: &[u8], s: Option<&[u8]>) -> Option<(usize, usize)> {
        s.map(|s| at(base, s))
    }

    type UriPos = (super::Scheme, Vec<Option<(usize, usize)>>, Option<u16>);

    fn uri_pos(base: &[u8], u: &Uri<'_>) -> UriPos {
        (
            u.scheme,
            vec![
                Some(at(base, u.raw)),
                Some(at(base, u.scheme_text)),
                opt(base, u.user),
                opt(base, u.password),
                Some(at(base, u.host)),
                Some(at(base, u.params)),
                opt(base, u.headers),
            ],
            u.port,
        )
    }

    fn via_pos(base: &[u8], v: &Via<'_>) -> (Vec<Option<(usize, usize)>>, Option<u16>) {
        (
            vec![
                Some(at(base, v.protocol)),
                Some(at(base, v.version)),
                Some(at(base, v.transport)),
                Some(at(base, v.host)),
                Some(at(base, v.params)),
                opt(base, v.branch),
            ],
            v.port,
        )
    }

    type NameAddrPos = (Vec<Option<(usize, usize)>>, bool, Option<UriPos>);

    fn name_addr_pos(base: &[u8], n: &NameAddr<'_>) -> NameAddrPos {
        (
            vec![
                opt(base, n.display),
                Some(at(base, n.uri_text)),
                Some(at(base, n.params)),
                opt(base, n.tag),
            ],
            n.bracketed,
            n.uri.as_ref().map(|u| uri_pos(base, u)),
        )
    }

    fn media_pos(base: &[u8], m: &MediaType<'_>) -> Vec<Option<(usize, usize)>> {
        vec![
            Some(at(base, m.mtype)),
            Some(at(base, m.subtype)),
            Some(at(base, m.params)),
            opt(base, m.boundary),
        ]
    }

    type ParamPos = Result<((usize, usize), Option<(usize, usize)>), ()>;

    fn params_pos(
        base: &[u8],
        it: impl Iterator<Item = Result<(&'static [u8], Option<&'static [u8]>), ()>>,
    ) -> Vec<ParamPos> {
        it.map(|p| p.map(|(n, v)| (at(base, n), opt(base, v))))
            .collect()
    }

    /// Every input the differential tests feed both versions.
    fn inputs(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut r = Rng(seed);
        let mut out: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
        out.extend((0..n).map(|_| random_value(&mut r)));
        out
    }

    fn leak(v: Vec<u8>) -> &'static [u8] {
        Box::leak(v.into_boxed_slice())
    }

    #[test]
    fn lexical_helpers_answer_as_before() {
        for v in inputs(0x9e37_79b9_7f4a_7c15, 60_000) {
            let s = leak(v);
            let new: Vec<_> = text::split_commas(s).map(|e| at(s, e)).collect();
            let old: Vec<_> = super::split_commas(s).map(|e| at(s, e)).collect();
            assert_eq!(new, old, "split_commas {:?}", text::lossy(s));
            assert_eq!(
                text::quoted_end(s),
                super::quoted_end(s),
                "quoted_end {:?}",
                text::lossy(s)
            );
            assert_eq!(
                params_pos(s, text::params(s)),
                params_pos(s, super::params(s)),
                "params {:?}",
                text::lossy(s)
            );
            assert_eq!(
                text::params_ok(s),
                super::params_ok(s),
                "params_ok {:?}",
                text::lossy(s)
            );
            for name in [&b"tag"[..], b"branch", b"lr", b"x", b"TRANSPORT"] {
                assert_eq!(
                    text::checked_param(s, name).map(|v| opt(s, v)),
                    super::checked_param(s, name).map(|v| opt(s, v)),
                    "checked_param {:?}",
                    text::lossy(s)
                );
                assert_eq!(
                    text::find_param(s, name).map(|v| opt(s, v)),
                    super::find_param(s, name).map(|v| opt(s, v)),
                    "find_param {:?}",
                    text::lossy(s)
                );
            }
        }
    }

    #[test]
    fn integers_read_as_before() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for _ in 0..50_000 {
            let len = r.below(23);
            let s: Vec<u8> = (0..len)
                .map(|_| match r.below(12) {
                    0 => *r.pick(b"x /:+-\x00\xff9"),
                    _ => b'0' + r.below(10) as u8,
                })
                .collect();
            let end = s
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(s.len());
            let want = super::parse_u64(&s[..end], 65535).map(|p| p as u16);
            assert_eq!(text::leading_port(&s), (end, want), "{:?}", text::lossy(&s));
            for max in [255, 65535, u64::from(u32::MAX), u64::MAX] {
                assert_eq!(
                    text::parse_u64(&s, max),
                    super::parse_u64(&s, max),
                    "{:?} {max}",
                    text::lossy(&s)
                );
            }
        }
        for s in [
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "09999999999999999999",
            "0000000000000000000065535",
            "00000000000000065535",
            "000000000000000065535",
            "00000000000000065536x",
            "4294967296999",
        ] {
            let b = s.trim_end_matches('x').as_bytes();
            let want = super::parse_u64(b, 65535).map(|p| p as u16);
            assert_eq!(text::leading_port(s.as_bytes()), (b.len(), want), "{s}");
            for max in [65535, u64::MAX] {
                assert_eq!(
                    text::parse_u64(s.as_bytes(), max),
                    super::parse_u64(s.as_bytes(), max),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn value_parsers_answer_as_before() {
        // How many inputs each parser accepted: enough for the comparison
        // to mean something.
        let mut accepted = [0usize; 4];
        let all = inputs(0x243f_6a88_85a3_08d3, 60_000);
        let total = all.len();
        for v in all {
            let s = leak(v);
            let show = text::lossy(s);
            accepted[0] += usize::from(Uri::parse(s).is_ok());
            accepted[1] += usize::from(Via::parse(s).is_some());
            accepted[2] += usize::from(NameAddr::parse(s).is_some());
            accepted[3] += usize::from(text::params_ok(s) && !s.is_empty());
            assert_eq!(
                Uri::parse(s).map(|u| uri_pos(s, &u)),
                super::uri(s).map(|u| uri_pos(s, &u)),
                "uri {show:?}"
            );
            assert_eq!(
                Via::parse(s).map(|v| via_pos(s, &v)),
                super::via(s).map(|v| via_pos(s, &v)),
                "via {show:?}"
            );
            assert_eq!(
                NameAddr::parse(s).map(|n| name_addr_pos(s, &n)),
                super::name_addr(s).map(|n| name_addr_pos(s, &n)),
                "name_addr {show:?}"
            );
            assert_eq!(
                NameAddr::parse_loose(s).map(|n| name_addr_pos(s, &n)),
                super::name_addr_loose(s).map(|n| name_addr_pos(s, &n)),
                "name_addr_loose {show:?}"
            );
            assert_eq!(
                MediaType::parse(s).map(|m| media_pos(s, &m)),
                super::media_type(s).map(|m| media_pos(s, &m)),
                "media_type {show:?}"
            );
            // The same values as the elements of a list header.
            for e in text::split_commas(s) {
                assert_eq!(
                    NameAddr::parse(e).map(|n| name_addr_pos(s, &n)),
                    super::name_addr(e).map(|n| name_addr_pos(s, &n)),
                    "name_addr element {show:?}"
                );
                assert_eq!(
                    Via::parse(e).map(|v| via_pos(s, &v)),
                    super::via(e).map(|v| via_pos(s, &v)),
                    "via element {show:?}"
                );
            }
        }
        eprintln!("accepted of {total}: uri, via, name-addr, params {accepted:?}");
        assert!(accepted.iter().all(|&n| n > total / 50), "{accepted:?}");
    }
}
