//! Lexical helpers shared by the header grammars: tokens, whitespace, quoted
//! strings, comma lists and parameters. Everything borrows from its input.

const fn token_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

const fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

const fn scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

const TOKEN_BIT: u8 = 1;
const HOST_BIT: u8 = 2;
const SCHEME_BIT: u8 = 4;

/// Byte classes as a table: one load per byte in the scanning loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if token_byte(b) {
            t[i] |= TOKEN_BIT;
        }
        if host_byte(b) {
            t[i] |= HOST_BIT;
        }
        if scheme_byte(b) {
            t[i] |= SCHEME_BIT;
        }
        i += 1;
    }
    t
};

/// RFC 3261 `token` characters.
#[inline]
pub fn is_token(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN_BIT != 0
}

/// The characters of a URI scheme after its first letter (RFC 3986).
#[inline]
pub fn is_scheme_char(b: u8) -> bool {
    CLASS[usize::from(b)] & SCHEME_BIT != 0
}

/// Where the run of host characters (see [`is_host_char`]) that starts at
/// `s[0]` ends.
#[inline(always)]
pub fn host_end(s: &[u8]) -> usize {
    s.iter().position(|&b| !is_host_char(b)).unwrap_or(s.len())
}

/// A port number at the start of `s`: where its digits end, and the number
/// when there is one (at most 20 digits, leading zeros allowed, up to
/// 65535), read in the same walk (`parse_u64` of the digits, in one pass).
#[inline(always)]
pub fn leading_port(s: &[u8]) -> (usize, Option<u16>) {
    let mut end = 0;
    // Saturates above 65535, so that a long run cannot overflow.
    let mut v: u32 = 0;
    while let Some(&b) = s.get(end) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = (v * 10 + u32::from(d)).min(1 << 20);
        end += 1;
    }
    let port = (end > 0 && end <= 20 && v <= 65535).then_some(v as u16);
    (end, port)
}

/// The characters of a host name or IPv4 address (letters, digits, `-`,
/// `.`, and `_` seen in the wild).
#[inline]
pub fn is_host_char(b: u8) -> bool {
    CLASS[usize::from(b)] & HOST_BIT != 0
}

// The byte searches below are memchr's. On x86_64 they use its SSE2
// searchers by name rather than `memchr::memchr` and its kin: those pick
// AVX2 or SSE2 at run time and reach the search through a function
// pointer, a call that costs more than the search itself on the short
// values of a SIP message (a header name, a URI, a parameter), about a
// fifth of the whole receive path (docs/performance.md). SSE2 is part of
// every x86_64 processor, so the searcher is chosen when compiling
// (`new` always answers `Some` there) and inlined.
#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::sse2::memchr::{One, Three, Two};

/// Where the first of the bytes `A` or `B` at or after `from` is (`None`
/// also when `from` is past the end).
#[inline]
pub fn find2<const A: u8, const B: u8>(b: &[u8], from: usize) -> Option<usize> {
    let s = b.get(from..)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = Two::new(A, B) {
        return searcher.find(s).map(|k| from + k);
    }
    memchr::memchr2(A, B, s).map(|k| from + k)
}

/// Where the first of the bytes `A`, `B` or `C` at or after `from` is (see
/// [`find2`]).
#[inline]
pub fn find3<const A: u8, const B: u8, const C: u8>(b: &[u8], from: usize) -> Option<usize> {
    let s = b.get(from..)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = Three::new(A, B, C) {
        return searcher.find(s).map(|k| from + k);
    }
    memchr::memchr3(A, B, C, s).map(|k| from + k)
}

/// Where the first byte `A` at or after `from` is (see [`find2`]).
#[inline]
pub fn find<const A: u8>(b: &[u8], from: usize) -> Option<usize> {
    let s = b.get(from..)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = One::new(A) {
        return searcher.find(s).map(|k| from + k);
    }
    memchr::memchr(A, s).map(|k| from + k)
}

/// Whether `s` holds a space, tab, CR or LF.
#[inline]
pub fn has_ws(s: &[u8]) -> bool {
    find3::<b' ', b'\t', b'\r'>(s, 0).is_some() || find::<b'\n'>(s, 0).is_some()
}

/// Where the first `\n` at or after `from` is (see [`find2`]).
#[inline]
pub fn find_newline(b: &[u8], from: usize) -> Option<usize> {
    find::<b'\n'>(b, from)
}

pub const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Strips leading and trailing whitespace.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Where a quoted string that starts at `s[0] == b'"'` ends (the index after
/// its closing quote), or `None` when it is not terminated.
pub fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        let j = find2::<b'\\', b'"'>(s, i)?;
        if s[j] == b'"' {
            return Some(j + 1);
        }
        // An escape: the next byte, whatever it is, belongs to the string.
        i = j + 2;
    }
}

/// Splits a header value at top-level commas: commas inside quoted strings
/// and angle brackets do not count. Yields each element trimmed. An
/// unterminated quote or bracket yields the rest as one element, which the
/// element's own grammar then rejects.
pub fn split_commas(s: &[u8]) -> CommaSplit<'_> {
    CommaSplit { rest: Some(s) }
}

pub struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    /// The text after the elements yielded so far and their comma: `None`
    /// once the last element was yielded.
    pub fn rest(&self) -> Option<&'a [u8]> {
        self.rest
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        // Outside brackets only a comma, a quote or a `<` matters; inside,
        // only the `>` that closes them.
        let mut i = 0;
        while let Some(j) = find3::<b',', b'"', b'<'>(s, i) {
            match s[j] {
                b',' => {
                    self.rest = Some(&s[j + 1..]);
                    return Some(trim(&s[..j]));
                }
                b'"' => match quoted_end(&s[j..]) {
                    Some(n) => i = j + n,
                    None => break,
                },
                _ => match find::<b'>'>(s, j + 1) {
                    Some(gt) => i = gt + 1,
                    None => break,
                },
            }
        }
        self.rest = None;
        Some(trim(s))
    }
}

/// Iterates `;name=value` parameters. `s` starts at (or before) the first
/// `;`. Values may be quoted strings (kept with their quotes) or bracketed
/// IPv6 references. Yields `Err(())` once for a parameter with an empty name.
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

/// Where the first byte at or after `i` that is not whitespace is.
#[inline(always)]
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        if !is_ws(b) {
            break;
        }
        i += 1;
    }
    i
}

/// One parameter of a `;`-list: `Ok(None)` at the end of the list, else its
/// name, its value and the rest of the list; `Err(())` when it is malformed.
type Param<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

#[inline(always)]
fn next_param(s: &[u8]) -> Result<Option<Param<'_>>, ()> {
    let mut i = skip_ws(s, 0);
    match s.get(i) {
        None => return Ok(None),
        Some(b';') => {}
        Some(_) => return Err(()),
    }
    i = skip_ws(s, i + 1);
    let name_start = i;
    while let Some(&b) = s.get(i) {
        if !is_token(b) {
            break;
        }
        i += 1;
    }
    let name = &s[name_start..i];
    i = skip_ws(s, i);
    let mut value = None;
    match s.get(i) {
        Some(b'=') => {
            let start = skip_ws(s, i + 1);
            // The value runs to the next ';' outside a quoted string.
            i = start;
            loop {
                match find2::<b';', b'"'>(s, i) {
                    None => {
                        i = s.len();
                        break;
                    }
                    Some(j) if s[j] == b';' => {
                        i = j;
                        break;
                    }
                    Some(j) => i = j + quoted_end(&s[j..]).ok_or(())?,
                }
            }
            let mut v = &s[start..i];
            while let [rest @ .., last] = v {
                if !is_ws(*last) {
                    break;
                }
                v = rest;
            }
            value = Some(v);
        }
        None | Some(b';') => {}
        Some(_) => return Err(()),
    }
    if name.is_empty() || value.is_some_and(|v| v.is_empty()) {
        return Err(());
    }
    Ok(Some((name, value, &s[i..])))
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a [u8], Option<&'a [u8]>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match next_param(self.rest) {
            Ok(Some((name, value, rest))) => {
                self.rest = rest;
                Some(Ok((name, value)))
            }
            Ok(None) => None,
            Err(()) => {
                self.failed = true;
                Some(Err(()))
            }
        }
    }
}

/// Whether two names are the same but for ASCII case. The exact comparison
/// comes first: a name is nearly always written as the grammar spells it.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a == b || a.eq_ignore_ascii_case(b))
}

/// Finds a parameter by name (case-insensitive) in a `;`-list.
pub fn find_param<'a>(s: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    params(s)
        .filter_map(Result::ok)
        .find(|(n, _)| same_name(n, name))
        .map(|(_, v)| v)
}

/// Checks a `;`-list of parameters (empty, or starting at its `;`) and
/// finds the first value of `name` on the way: `None` when the list is
/// malformed, `Some(None)` when `name` is absent or has no value.
#[inline(always)]
pub fn checked_param<'a>(s: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    let mut found: Option<Option<&[u8]>> = None;
    match s.first() {
        None => return Some(None),
        Some(b';') => {}
        Some(_) => return None,
    }
    let mut rest = s;
    while let Some((n, value, r)) = next_param(rest).ok()? {
        if found.is_none() && same_name(n, name) {
            found = Some(value);
        }
        rest = r;
    }
    Some(found.flatten())
}

/// Checks that a `;`-list of parameters is well-formed.
pub fn params_ok(mut s: &[u8]) -> bool {
    loop {
        match next_param(s) {
            Ok(Some((_, _, rest))) => s = rest,
            Ok(None) => return true,
            Err(()) => return false,
        }
    }
}

/// Removes surrounding double quotes, if any (escapes stay as written).
pub fn unquote(s: &[u8]) -> &[u8] {
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// `n` in decimal, written at the end of `buf`, with no allocation.
pub fn write_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Parses an unsigned decimal integer with at most `max`; leading zeros are
/// allowed (RFC 4475 3.1.1.1), anything else fails.
pub fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s.len() < 20 {
        // Nineteen digits cannot overflow.
        let mut v: u64 = 0;
        for &b in s {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return (v <= max).then_some(v);
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

/// Lossy text for logs and JSON.
pub fn lossy(s: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(s)
}

/// Bytes from the network as they may go into a log line or a record:
/// printable text as it is, anything else (control characters such as ESC,
/// NUL or backspace, DEL, bytes that are not UTF-8) as `\xNN`, and a
/// backslash as `\\`, so that nobody can write terminal escapes or forge
/// log lines through a Call-ID or a header value.
#[derive(Clone, Copy)]
pub struct Printable<'a>(pub &'a [u8]);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let text = chunk.valid();
            let mut from = 0;
            for (i, c) in text.char_indices() {
                if c == '\\' || c.is_control() {
                    f.write_str(&text[from..i])?;
                    if c == '\\' {
                        f.write_str("\\\\")?;
                    } else {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            write!(f, "\\x{b:02x}")?;
                        }
                    }
                    from = i + c.len_utf8();
                }
            }
            f.write_str(&text[from..])?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod printable_tests {
    use super::Printable;

    #[test]
    fn what_came_off_the_wire_is_printed_harmless() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"a84b4c76e66710@pc33.atlanta.com",
                "a84b4c76e66710@pc33.atlanta.com",
            ),
            (b"id\x1b[31mred\x1b[0m", "id\\x1b[31mred\\x1b[0m"),
            (b"nul\x00bs\x08del\x7f", "nul\\x00bs\\x08del\\x7f"),
            (b"line\r\nforged INFO", "line\\x0d\\x0aforged INFO"),
            (b"tab\there", "tab\\x09here"),
            (b"back\\slash", "back\\\\slash"),
            ("Zo\u{eb} \u{2603}".as_bytes(), "Zo\u{eb} \u{2603}"),
            (b"bad\xffutf8\xc3", "bad\\xffutf8\\xc3"),
            ("c1\u{85}".as_bytes(), "c1\\xc2\\x85"),
        ];
        for (raw, shown) in cases {
            assert_eq!(Printable(raw).to_string(), *shown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_respect_quotes_and_brackets() {
        let v: Vec<&[u8]> =
            split_commas(b"\"a, b\" <sip:x@y;p=1,2>, <sip:z@w> , sip:q@r").collect();
        assert_eq!(
            v,
            vec![&b"\"a, b\" <sip:x@y;p=1,2>"[..], b"<sip:z@w>", b"sip:q@r"]
        );
        let v: Vec<&[u8]> = split_commas(b"a,,b").collect();
        assert_eq!(v, vec![&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn a_value_without_commas_is_one_trimmed_element() {
        let v: Vec<&[u8]> = split_commas(b"  Alice <sip:a@b;x=y>;tag=1 \t").collect();
        assert_eq!(v, vec![&b"Alice <sip:a@b;x=y>;tag=1"[..]]);
        let v: Vec<&[u8]> = split_commas(b"").collect();
        assert_eq!(v, vec![&b""[..]]);
    }

    #[test]
    fn params_with_spaces_quotes_and_ipv6() {
        let p: Vec<_> =
            params(b" ;   tag    = 1918181833n ; x=\"a;b\";received=[2001:db8::9:255];lr")
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(p[0], (&b"tag"[..], Some(&b"1918181833n"[..])));
        assert_eq!(p[1], (&b"x"[..], Some(&b"\"a;b\""[..])));
        assert_eq!(p[2].1, Some(&b"[2001:db8::9:255]"[..]));
        assert_eq!(p[3], (&b"lr"[..], None));
    }

    #[test]
    fn empty_params_are_errors() {
        assert!(!params_ok(b";;a=1"));
        assert!(!params_ok(b";a="));
        assert!(params_ok(b""));
        assert!(params_ok(b";a"));
    }

    #[test]
    fn newlines_are_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![b'x'; len];
                if at < len {
                    b[at] = b'\n';
                }
                // A second newline later must not be the answer.
                b.extend_from_slice(b"yy\nzz");
                for from in 0..=at.min(len) {
                    let want = b[from..].iter().position(|&c| c == b'\n').map(|n| from + n);
                    assert_eq!(
                        find_newline(&b, from),
                        want,
                        "len {len} at {at} from {from}"
                    );
                }
            }
        }
        assert_eq!(find_newline(b"", 0), None);
        assert_eq!(find_newline(b"abc", 3), None);
        assert_eq!(find_newline(b"\x8a\x0b\x09\n", 0), Some(3));
        // Two bytes at once: whichever comes first.
        for text in [
            &b"Via: x\r\n"[..],
            b"no colon here at all\n: late",
            b"::",
            b"\n:",
        ] {
            let want = text.iter().position(|&c| c == b':' || c == b'\n');
            assert_eq!(find2::<b':', b'\n'>(text, 0), want);
        }
        assert_eq!(find::<b'@'>(b"sip:alice@example.com", 0), Some(9));
        for (text, ws) in [
            (&b"sip:alice@example.com;transport=tcp"[..], false),
            (b"sip:alice@example.com;transport=tcp ", true),
            (b"sip:al\tice@example.com", true),
            (b"sip:alice@exam\rple.com\x01\x1f\x80\xa0", true),
            (b"sip:alice@example.com\x01\x1f\x80\xa0\xff", false),
            (b"\n", true),
            (b"", false),
        ] {
            assert_eq!(has_ws(text), ws, "{text:?}");
        }
        assert_eq!(find::<b'@'>(b"sip:alice.example.com", 0), None);
    }

    #[test]
    fn searches_agree_with_a_byte_walk_at_every_offset_and_length() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..48 {
            for _ in 0..20 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Whitespace rarely, so that long runs without it occur.
                        *b"ab;\",<>\x80\xff\x01 \t\r\n"
                            .get((x % 40) as usize)
                            .unwrap_or(&b'z')
                    })
                    .collect();
                for from in 0..=len + 1 {
                    let walk = |set: &[u8]| {
                        b.get(from..)
                            .and_then(|r| r.iter().position(|c| set.contains(c)))
                            .map(|k| from + k)
                    };
                    assert_eq!(find2::<b';', b'"'>(&b, from), walk(b";\""), "{b:?} {from}");
                    assert_eq!(
                        find3::<b',', b'"', b'<'>(&b, from),
                        walk(b",\"<"),
                        "{b:?} {from}"
                    );
                    assert_eq!(find::<b'>'>(&b, from), walk(b">"), "{b:?} {from}");
                }
                assert_eq!(has_ws(&b), b.iter().any(|&c| is_ws(c)), "{b:?}");
            }
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0068", 255), Some(68));
        assert_eq!(parse_u64(b"300", 255), None);
        assert_eq!(parse_u64(b"-1", 255), None);
        assert_eq!(parse_u64(b"", 255), None);
        assert_eq!(parse_u64(b"99999999999999999999999", u64::MAX), None);
    }
}
