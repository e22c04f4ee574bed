//! The parser: framing, start line and header index over the received
//! bytes, then the checks a proxy needs before it may act on a message.
//!
//! Nothing is copied on the fast path: the message keeps the `Bytes` it was
//! given and records spans into it. Folded header lines make the fast path
//! decline; those messages go to [`super::full`].

use bytes::Bytes;
use memchr::memchr;

use super::error::ParseError;
use super::full::unfold;
use super::header::HeaderName;
use super::message::{
    Header, Headers, Message, Method, ParsePath, Parsed, Span, StartLine, ABSENT, KNOWN_NAMES,
};
use super::text::{self, is_token};
use super::uri::Uri;
use super::uri::UriAt;
use super::values::{CSeq, NameAddr, NameAddrAt, Via, ViaAt};

/// Size limits. Each overrun has its own error.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, headers and body (larger: 513).
    pub max_message: usize,
    /// Most header lines in one message.
    pub max_headers: usize,
    /// Longest single line.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 65536,
            max_headers: 256,
            max_line: 16384,
        }
    }
}

/// The outcome of looking at stream bytes.
#[derive(Debug)]
pub enum Status<T> {
    /// A whole message, and how many bytes it took.
    Complete(T, usize),
    /// Not enough bytes yet.
    Partial,
}

/// Parses one datagram. Bytes after the body are ignored; a body shorter than
/// Content-Length is an error.
pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    if buf.len() > limits.max_message {
        return Err(ParseError::MessageTooLarge);
    }
    parse_framed(buf, false, limits)
}

/// Looks for one whole message at the start of stream bytes. Leading CRLFs
/// (keep-alives) are part of what it consumes.
pub fn parse_stream(buf: &Bytes, limits: &Limits) -> Result<Status<Message>, ParseError> {
    match frame_stream(buf, limits)? {
        Status::Partial => Ok(Status::Partial),
        Status::Complete((), n) => Ok(Status::Complete(
            parse_framed(buf.slice(..n), true, limits)?,
            n,
        )),
    }
}

/// Framing alone: how long the first message in stream bytes is, from the
/// end of its headers and its Content-Length (absent means 0).
pub fn frame_stream(buf: &[u8], limits: &Limits) -> Result<Status<()>, ParseError> {
    let mut pos = skip_crlf(buf);
    let mut content_length: Option<usize> = None;
    let mut first = true;
    loop {
        let Some(nl) = memchr(b'\n', &buf[pos..]) else {
            if buf.len() - pos > limits.max_message {
                return Err(ParseError::MessageTooLarge);
            }
            return Ok(Status::Partial);
        };
        let line = strip_cr(&buf[pos..pos + nl]);
        if line.len() > limits.max_line {
            return Err(ParseError::LineTooLong);
        }
        pos += nl + 1;
        if line.is_empty() && !first {
            break;
        }
        first = false;
        // A continuation line (folding) belongs to the header above it, so
        // its text is never a Content-Length of its own.
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if let Some(colon) = memchr(b':', line).filter(|_| !folded) {
            let name = text::trim(&line[..colon]);
            if HeaderName::from_bytes(name) == HeaderName::ContentLength {
                let v = text::parse_u64(text::trim(&line[colon + 1..]), u32::MAX as u64)
                    .ok_or(ParseError::BadContentLength)? as usize;
                if content_length.is_some_and(|c| c != v) {
                    return Err(ParseError::BadContentLength);
                }
                content_length = Some(v);
            }
        }
        if pos > limits.max_message {
            return Err(ParseError::MessageTooLarge);
        }
    }
    let total = pos + content_length.unwrap_or(0);
    if total > limits.max_message + skip_crlf(buf) {
        return Err(ParseError::MessageTooLarge);
    }
    if buf.len() < total {
        return Ok(Status::Partial);
    }
    Ok(Status::Complete((), total))
}

fn skip_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the fast path declined: returned by [`index`] for folded lines.
#[allow(clippy::large_enum_variant)] // moved once, never stored
pub(crate) enum Indexed {
    Done(Message),
    Folded,
}

fn parse_framed(buf: Bytes, stream: bool, limits: &Limits) -> Result<Message, ParseError> {
    let mut msg = index_framed(buf, stream, limits)?;
    if let Some(e) = msg.fault.take() {
        return Err(e);
    }
    validate(&mut msg)?;
    Ok(msg)
}

/// Framing, start line and header index, with no check of header values:
/// the router's receive path, which then runs [`check_transaction`] and
/// [`check_strict`] itself. Folded messages take the full path.
#[inline]
fn index_framed(buf: Bytes, stream: bool, limits: &Limits) -> Result<Message, ParseError> {
    match index(buf.clone(), stream, limits, ParsePath::Fast) {
        Ok(Indexed::Done(m)) => Ok(m),
        Ok(Indexed::Folded) => parse_full(&buf, stream, limits),
        Err(e) => Err(e),
    }
}

/// The full path: the message unfolded ([`unfold`]), then indexed again.
fn parse_full(buf: &Bytes, stream: bool, limits: &Limits) -> Result<Message, ParseError> {
    let normalized = unfold(buf);
    match index(normalized, stream, limits, ParsePath::Full)? {
        Indexed::Done(m) => Ok(m),
        // Unfolding leaves no line starting with whitespace in the headers.
        Indexed::Folded => Err(ParseError::BadHeaderLine),
    }
}

/// One datagram indexed, its header values not yet checked (see
/// [`index_framed`]); typed values are parsed when read.
#[inline]
pub fn index_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    if buf.len() > limits.max_message {
        return Err(ParseError::MessageTooLarge);
    }
    index_framed(buf, false, limits)
}

/// What the proxy does with the bytes of one datagram (`stream`: one
/// message framed from a stream): index, [`check_transaction`], then
/// [`check_strict`]. An INVITE that fails only the strict checks is
/// returned with the fault recorded ([`Message::fault`]), so that an
/// emergency call among them can still be routed; every other failure is
/// an error.
pub fn receive(buf: Bytes, stream: bool, limits: &Limits) -> Result<Message, ParseError> {
    // The message stays where indexing put it, in the result returned:
    // moving it out and back in would copy its whole index twice.
    let mut received = if stream {
        index_framed(buf, true, limits)
    } else {
        index_datagram(buf, limits)
    };
    if let Ok(msg) = &mut received {
        check_transaction(msg)?;
        let strict = check_strict(msg);
        match (msg.fault.take(), strict) {
            (None, Ok(())) => {}
            // The first fault is the one reported.
            (Some(e), _) | (None, Err(e)) if msg.method() == Method::Invite => msg.fault = Some(e),
            (Some(e), _) | (None, Err(e)) => return Err(e),
        }
    }
    received
}

/// Builds the index: start line, headers, body. Declines on folding.
#[inline]
pub(crate) fn index(
    buf: Bytes,
    stream: bool,
    limits: &Limits,
    path: ParsePath,
) -> Result<Indexed, ParseError> {
    index_with(buf, stream, limits, path, false)
}

/// `lenient`: Content-Length problems do not stop the indexing (the body
/// runs to the end of the buffer), so an error response can still be built.
pub(crate) fn index_with(
    buf: Bytes,
    stream: bool,
    limits: &Limits,
    path: ParsePath,
    lenient: bool,
) -> Result<Indexed, ParseError> {
    let b: &[u8] = &buf;
    let start_at = skip_crlf(b);
    let mut pos = start_at;
    let Some(nl) = memchr(b'\n', &b[pos..]) else {
        return Err(ParseError::NoEndOfHeaders);
    };
    let line_end = pos + nl + 1;
    let sl = strip_cr(&b[pos..pos + nl]);
    if sl.len() > limits.max_line {
        return Err(ParseError::LineTooLong);
    }
    let start = parse_start_line(sl, pos, lenient)?;
    let start_line = Span::new(pos, line_end);
    pos = line_end;

    let mut headers = Headers::new();
    let mut first = [ABSENT; KNOWN_NAMES];
    let mut content_length: Option<usize> = None;
    // The first line that is no header (no colon, or a name that is not a
    // token): left out of the index, and reported as the message's fault.
    // It stays in the bytes, so a message forwarded despite it carries it
    // on untouched.
    let mut bad_line = None;
    let headers_end;
    loop {
        let rest = &b[pos..];
        // The empty line ends the headers.
        match rest {
            [b'\r', b'\n', ..] | [b'\n', ..] => {
                headers_end = pos;
                pos += if rest[0] == b'\r' { 2 } else { 1 };
                break;
            }
            [b' ' | b'\t', ..] => return Ok(Indexed::Folded),
            [] => return Err(ParseError::NoEndOfHeaders),
            _ => {}
        }
        // The name, optional spaces or tabs, then the colon. A known name
        // is made of token characters by construction; any other name is
        // checked byte by byte.
        let colon = match text::find2::<b':', b'\n'>(rest, 0) {
            Some(c) if rest[c] == b':' => c,
            Some(nl) if nl > limits.max_line => return Err(ParseError::LineTooLong),
            Some(nl) => {
                bad_line.get_or_insert(ParseError::BadHeaderLine);
                pos += nl + 1;
                continue;
            }
            None if rest.len() > limits.max_line => return Err(ParseError::LineTooLong),
            None => return Err(ParseError::NoEndOfHeaders),
        };
        let mut name_len = colon;
        while name_len > 0 && matches!(rest[name_len - 1], b' ' | b'\t') {
            name_len -= 1;
        }
        let name = HeaderName::from_prefix(rest, name_len);
        if name_len == 0
            || (name == HeaderName::Other && !rest[..name_len].iter().all(|&c| is_token(c)))
        {
            let Some(nl) = text::find_newline(rest, colon + 1) else {
                return Err(if rest.len() > limits.max_line {
                    ParseError::LineTooLong
                } else {
                    ParseError::NoEndOfHeaders
                });
            };
            bad_line.get_or_insert(ParseError::BadHeaderLine);
            pos += nl + 1;
            continue;
        }
        let Some(nl) = text::find_newline(rest, colon + 1) else {
            return Err(if rest.len() > limits.max_line {
                ParseError::LineTooLong
            } else {
                ParseError::NoEndOfHeaders
            });
        };
        let line_len = if nl > 0 && rest[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if line_len > limits.max_line {
            return Err(ParseError::LineTooLong);
        }
        let mut vs = colon + 1;
        let mut ve = line_len;
        while vs < ve && (rest[vs] == b' ' || rest[vs] == b'\t') {
            vs += 1;
        }
        while ve > vs && (rest[ve - 1] == b' ' || rest[ve - 1] == b'\t') {
            ve -= 1;
        }
        if name == HeaderName::ContentLength {
            // A value continued on a folded line is read after unfolding.
            if matches!(rest.get(nl + 1), Some(b' ' | b'\t')) {
                return Ok(Indexed::Folded);
            }
            match text::parse_u64(&rest[vs..ve], u32::MAX as u64) {
                Some(v) if content_length.is_none_or(|c| c as u64 == v) => {
                    content_length = Some(v as usize)
                }
                _ if lenient => content_length = None,
                _ => return Err(ParseError::BadContentLength),
            }
        }
        if headers.len() == limits.max_headers || headers.len() == usize::from(ABSENT) {
            return Err(ParseError::TooManyHeaders);
        }
        if let Some(slot) = first.get_mut(name as usize) {
            if *slot == ABSENT {
                // Fits: header count is checked against u16 above.
                *slot = headers.len() as u16;
            }
        }
        headers.push(Header {
            name,
            name_span: Span::new(pos, pos + name_len),
            value: Span::new(pos + vs, pos + ve),
            line: Span::new(pos, pos + nl + 1),
        });
        pos += nl + 1;
    }

    let rest = b.len() - pos;
    let body_len = match content_length {
        Some(cl) if cl > rest && lenient => rest,
        Some(cl) if cl > rest => return Err(ParseError::BodyTruncated),
        Some(cl) => cl,
        // A datagram without Content-Length: the body runs to its end. On a
        // stream, framing already treated it as empty.
        None if stream => 0,
        None => rest,
    };
    if pos + body_len - start_at > limits.max_message {
        return Err(ParseError::MessageTooLarge);
    }
    Ok(Indexed::Done(Message {
        buf,
        start,
        start_line,
        headers,
        headers_end: headers_end as u32,
        body: Span::new(pos, pos + body_len),
        path,
        first,
        parsed: Parsed::default(),
        fault: bad_line,
    }))
}

/// `lenient`: a request line with another SIP version still parses (to
/// answer it with 505).
fn parse_start_line(line: &[u8], at: usize, lenient: bool) -> Result<StartLine, ParseError> {
    if line.starts_with(b"SIP/") || line.starts_with(b"sip/") {
        // SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr(b' ', line).ok_or(ParseError::BadStartLine("no status code"))?;
        if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::BadVersion);
        }
        let rest = &line[sp + 1..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStartLine("bad status code"));
        }
        if rest.len() > 3 && rest[3] != b' ' {
            return Err(ParseError::BadStatusCode);
        }
        let code = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        let reason_start = at + sp + 1 + rest.len().min(4);
        return Ok(StartLine::Response {
            code,
            reason: Span::new(reason_start, at + line.len()),
        });
    }
    // Method SP Request-URI SP SIP-Version, single spaces only.
    let sp1 = memchr(b' ', line).ok_or(ParseError::BadStartLine("no request URI"))?;
    let method = &line[..sp1];
    if !text::is_token_str(method) {
        return Err(ParseError::BadStartLine("bad method"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr(b' ', rest).ok_or(ParseError::BadStartLine("no SIP version"))?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty() {
        return Err(ParseError::BadStartLine("extra spaces"));
    }
    if version.contains(&b' ') || version.contains(&b'\t') {
        return Err(ParseError::BadStartLine("extra spaces"));
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        let sip_version = version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/");
        if sip_version && !lenient {
            return Err(ParseError::BadVersion);
        }
        if !sip_version {
            return Err(ParseError::BadStartLine("no SIP version"));
        }
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(at, at + sp1),
        uri: Span::new(at + sp1 + 1, at + sp1 + 1 + sp2),
    })
}

/// Every check: [`check_transaction`], then [`check_strict`].
pub fn validate(msg: &mut Message) -> Result<(), ParseError> {
    check_transaction(msg)?;
    check_strict(msg)
}

/// What a proxy needs before it may act on a message: the headers that
/// name a transaction and a dialog present, single and well-formed (Call-ID,
/// CSeq, top Via, From and To but for their display names), and a request's
/// URI and CSeq method. The
/// values parsed on the way are kept in the message, so reading them again
/// costs nothing.
pub fn check_transaction(msg: &mut Message) -> Result<(), ParseError> {
    msg.parsed = Parsed::default();
    // Single-instance headers.
    let mut seen = [false; HeaderName::Other as usize + 1];
    for h in msg.headers() {
        if h.name.is_single() {
            let slot = &mut seen[h.name as usize];
            if *slot {
                return Err(ParseError::DuplicateHeader(h.name.as_str()));
            }
            *slot = true;
        }
    }
    for name in [
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
        HeaderName::Via,
    ] {
        if msg.header(name).is_none() {
            return Err(ParseError::MissingHeader(name.as_str()));
        }
    }
    let mut parsed = Parsed::default();
    let buf: &[u8] = &msg.buf;
    let cseq = msg
        .get(HeaderName::CSeq)
        .and_then(CSeq::parse)
        .ok_or(ParseError::BadHeader("CSeq"))?;
    parsed.cseq = Span::within(buf, cseq.method).map(|m| (cseq.seq, m));
    if msg
        .call_id()
        .is_none_or(|c| c.is_empty() || text::has_ws(c))
    {
        return Err(ParseError::BadHeader("Call-ID"));
    }
    // The first element of the first Via line (the line is there: checked
    // above); where the others begin is kept for `check_strict`.
    let mut vias = text::split_commas(msg.get(HeaderName::Via).unwrap_or_default());
    let via = vias
        .next()
        .and_then(Via::parse)
        .ok_or(ParseError::BadHeader("Via"))?;
    parsed.top_via = ViaAt::of(buf, &via);
    parsed.via_rest = Some(
        vias.rest()
            .map(|r| Span::within(buf, r).unwrap_or_default()),
    );
    // A display name outside the grammar leaves the URI and tag readable:
    // reported by the strict checks, so an emergency call still goes on.
    let (from, loose) =
        name_addr(buf, msg.get(HeaderName::From)).ok_or(ParseError::BadHeader("From"))?;
    parsed.from = from;
    parsed.loose_from = loose;
    let (to, loose) = name_addr(buf, msg.get(HeaderName::To)).ok_or(ParseError::BadHeader("To"))?;
    parsed.to = to;
    parsed.loose_to = loose;
    if msg.is_request() {
        let uri = Uri::parse(msg.request_uri_bytes())
            .map_err(|e| ParseError::BadRequestUri(e.as_str()))?;
        if uri.is_sip() && uri.headers.is_some() {
            return Err(ParseError::BadRequestUri("headers not allowed"));
        }
        if cseq.method != msg.method_bytes() {
            return Err(ParseError::CSeqMismatch);
        }
        parsed.request_uri = UriAt::of(buf, &uri);
    }
    msg.parsed = parsed;
    Ok(())
}

/// A From or To value, strictly, else with a loose display name (`true`),
/// as spans into `buf` (kept as they come: the parsed value is not moved).
fn name_addr(buf: &[u8], value: Option<&[u8]>) -> Option<(Option<NameAddrAt>, bool)> {
    let value = value?;
    match NameAddr::parse(value) {
        Some(n) => Some((NameAddrAt::of(buf, &n), false)),
        None => NameAddr::parse_loose(value).map(|n| (NameAddrAt::of(buf, &n), true)),
    }
}

/// The rest of the grammar a well-formed message follows, for what a proxy
/// passes on without acting on it: From and To display names, every Via
/// below the top one, Max-Forwards, Content-Type, Contact, Route,
/// Record-Route and Date. A request failing only these can still be routed,
/// which the proxy does for emergency calls. Runs after
/// [`check_transaction`], whose findings on From and To it reports.
pub fn check_strict(msg: &Message) -> Result<(), ParseError> {
    if msg.parsed.loose_from {
        return Err(ParseError::BadHeader("From"));
    }
    if msg.parsed.loose_to {
        return Err(ParseError::BadHeader("To"));
    }
    match msg.parsed.via_rest {
        // Validation read the top Via: the rest of its line and the lines
        // after it are left.
        Some(rest) => {
            let rest = rest.map(|r| msg.bytes_of(r));
            let lines = msg.all(HeaderName::Via).skip(1).map(|h| msg.value(h));
            for via in rest.into_iter().chain(lines).flat_map(text::split_commas) {
                Via::parse(via).ok_or(ParseError::BadHeader("Via"))?;
            }
        }
        None => {
            for via in msg.list(HeaderName::Via).skip(1) {
                Via::parse(via).ok_or(ParseError::BadHeader("Via"))?;
            }
        }
    }
    if let Some(v) = msg.get(HeaderName::MaxForwards) {
        text::parse_u64(v, 255).ok_or(ParseError::BadHeader("Max-Forwards"))?;
    }
    if let Some(v) = msg.get(HeaderName::ContentType) {
        super::values::MediaType::parse(v).ok_or(ParseError::BadHeader("Content-Type"))?;
    }
    for name in [
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
    ] {
        if msg.header(name).is_none() {
            continue;
        }
        for na in msg.name_addrs(name) {
            na.ok_or(ParseError::BadHeader(name.as_str()))?;
        }
    }
    if let Some(d) = msg.get(HeaderName::Date) {
        // RFC 3261 section 20.17: always GMT.
        if !d.ends_with(b"GMT") {
            return Err(ParseError::BadHeader("Date"));
        }
    }
    Ok(())
}

/// Indexes a message without validating it, to answer a request that failed
/// validation with a response carrying its Via, From, To, Call-ID and CSeq.
pub fn parse_lenient(buf: Bytes) -> Option<Message> {
    // Past the limits too: a request refused for its size or its number of
    // header lines is still answered (513, 400), not dropped unanswered.
    let lim = Limits {
        max_message: usize::MAX,
        max_headers: usize::from(ABSENT) - 1,
        max_line: usize::MAX,
    };
    match index_with(buf.clone(), false, &lim, ParsePath::Fast, true).ok()? {
        Indexed::Done(m) => Some(m),
        Indexed::Folded => {
            let unfolded = unfold(&buf);
            match index_with(unfolded, false, &lim, ParsePath::Full, true).ok()? {
                Indexed::Done(m) => Some(m),
                Indexed::Folded => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that is no header (no colon, or a name with a space) is left
    /// out of the index and reported: strict parsing refuses the message,
    /// the receive path keeps an INVITE with the fault (it may be an
    /// emergency call) and refuses anything else, and the lenient parse
    /// still finds what an answer needs.
    #[test]
    fn a_line_that_is_no_header_is_a_fault_not_the_end() {
        for line in ["X-Carrier-Debug", "Bad Name: x", ": no name"] {
            for method in ["INVITE", "OPTIONS"] {
                let text = format!(
                    "{method} sip:911@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n{line}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:911@b>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
                );
                let buf = Bytes::from(text);
                assert_eq!(
                    parse_datagram(buf.clone(), &Limits::default()).err(),
                    Some(ParseError::BadHeaderLine),
                    "{line}"
                );
                let received = receive(buf.clone(), false, &Limits::default());
                if method == "INVITE" {
                    let m = received.unwrap();
                    assert_eq!(m.fault(), Some(&ParseError::BadHeaderLine));
                    assert_eq!(m.call_id(), Some(&b"c"[..]));
                    assert_eq!(m.headers().len(), 6, "{line}");
                } else {
                    assert_eq!(received.err(), Some(ParseError::BadHeaderLine));
                }
                let lenient = parse_lenient(buf).unwrap();
                assert!(lenient.top_via().is_some());
            }
        }
    }

    /// `check_strict` reads the Vias after the top one from where
    /// `check_transaction` stopped; the same answers as reading them all.
    #[test]
    fn lower_vias_read_from_where_the_top_one_ended() {
        let values = [
            "SIP/2.0/UDP a.example;branch=z9hG4bK1",
            "SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b:5060;rport",
            "SIP/2.0/UDP a.example;branch=z9hG4bK1,",
            "SIP/2.0/UDP a.example;branch=z9hG4bK1 ,  ,SIP/2.0/UDP c",
            "SIP/2.0/UDP a;x=\"q, r\", SIP/2.0/UDP d",
            "SIP/2.0/UDP a;x=<q, r>, bad",
            "SIP/2.0/UDP e, SIP/2.0/UDP f, SIP/2.0/UDP g;branch=z9hG4bK2",
            "bad",
            ",",
        ];
        let mut checked = 0;
        for first in values {
            for second in values.iter().map(Some).chain([None]) {
                let mut text = format!(
                    "OPTIONS sip:a@b SIP/2.0\r\nVia: {first}\r\n{}From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n",
                    second.map_or(String::new(), |v| format!("Via: {v}\r\n"))
                );
                text.push_str("Content-Length: 0\r\n\r\n");
                let mut msg = index_datagram(Bytes::from(text), &Limits::default()).unwrap();
                if check_transaction(&mut msg).is_err() {
                    continue;
                }
                assert!(msg.parsed.via_rest.is_some());
                let fast = check_strict(&msg);
                msg.parsed.via_rest = None;
                assert_eq!(fast, check_strict(&msg), "{first:?} then {second:?}");
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
    }
}
