//! A parsed SIP message: the received bytes plus an index of spans into them.
//! Typed values are parsed from the spans when asked for.

use bytes::Bytes;
use smallvec::SmallVec;

use super::header::HeaderName;
use super::text;
use super::uri::Uri;
use super::uri::UriAt;
use super::values::{CSeq, MediaType, NameAddr, NameAddrAt, Via, ViaAt};

pub use super::span::Span;

/// One header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    /// The name as written.
    pub name_span: Span,
    /// The value, trimmed.
    pub value: Span,
    /// The whole line including its line ending.
    pub line: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 3261 section 7.1).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// Which parser produced the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsePath {
    /// The zero-copy parser, on the bytes as received.
    Fast,
    /// The fast path declined (folded header lines); the message was
    /// normalized by the full parser and indexed from that text.
    Full,
}

impl ParsePath {
    pub fn as_str(self) -> &'static str {
        match self {
            ParsePath::Fast => "fast",
            ParsePath::Full => "full",
        }
    }
}

pub type Headers = SmallVec<[Header; 24]>;

/// How many known header names there are (every [`HeaderName`] but `Other`).
pub(crate) const KNOWN_NAMES: usize = HeaderName::Other as usize;

/// No header of that name: a slot of [`Message::first`].
pub(crate) const ABSENT: u16 = u16::MAX;

/// The values validation parsed, kept as spans so that reading them again
/// costs no second parse. Empty for a message that was not validated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Parsed {
    pub top_via: Option<ViaAt>,
    /// What follows the top Via value in its header line, when validation
    /// read it: `Some(None)` when the line holds that value alone.
    pub via_rest: Option<Option<Span>>,
    pub cseq: Option<(u32, Span)>,
    pub from: Option<NameAddrAt>,
    pub to: Option<NameAddrAt>,
    pub request_uri: Option<UriAt>,
    /// From or To parsed only with a loose display name (see
    /// `NameAddr::parse_loose`): a fault `check_strict` reports.
    pub loose_from: bool,
    pub loose_to: bool,
}

/// A parsed message. Cloning is cheap (the buffer is reference-counted).
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) buf: Bytes,
    pub(crate) start: StartLine,
    /// The start line including its line ending.
    pub(crate) start_line: Span,
    pub(crate) headers: Headers,
    /// Where the empty line ending the headers begins.
    pub(crate) headers_end: u32,
    pub(crate) body: Span,
    pub(crate) path: ParsePath,
    /// The index of the first header of each known name, or [`ABSENT`].
    pub(crate) first: [u16; KNOWN_NAMES],
    pub(crate) parsed: Parsed,
    /// What [`super::check_strict`] found wrong, for a request the proxy
    /// still looks at (see [`Message::fault`]).
    pub(crate) fault: Option<super::ParseError>,
}

impl Message {
    /// The buffer this message indexes (for full-path messages, the
    /// normalized text).
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// The message's bytes, from the start line to the end of the body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start_line.start as usize..self.body.end as usize]
    }

    pub fn bytes_of(&self, span: Span) -> &[u8] {
        &self.buf[span.range()]
    }

    pub fn slice(&self, span: Span) -> Bytes {
        self.buf.slice(span.range())
    }

    pub fn start(&self) -> StartLine {
        self.start
    }

    pub fn start_line(&self) -> Span {
        self.start_line
    }

    pub fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    pub fn parse_path(&self) -> ParsePath {
        self.path
    }

    /// A fault in a header the proxy passes on without acting on it (see
    /// [`super::check_strict`]), recorded so that the proxy can still route
    /// an emergency call and refuse anything else.
    pub fn fault(&self) -> Option<&super::ParseError> {
        self.fault.as_ref()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request; for a response, `Other`.
    pub fn method(&self) -> Method {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => Method::Other,
        }
    }

    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => self.bytes_of(method_span),
            StartLine::Response { .. } => b"",
        }
    }

    pub fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri_bytes(&self) -> &[u8] {
        self.request_uri_span().map_or(b"", |s| self.bytes_of(s))
    }

    pub fn request_uri(&self) -> Option<Uri<'_>> {
        if let Some(u) = self.parsed.request_uri {
            return Some(u.at(&self.buf));
        }
        Uri::parse(self.request_uri_bytes()).ok()
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> &[u8] {
        match self.start {
            StartLine::Response { reason, .. } => self.bytes_of(reason),
            StartLine::Request { .. } => b"",
        }
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    pub fn value(&self, h: &Header) -> &[u8] {
        self.bytes_of(h.value)
    }

    pub fn name(&self, h: &Header) -> &[u8] {
        self.bytes_of(h.name_span)
    }

    /// The first header of that name.
    pub fn header(&self, name: HeaderName) -> Option<&Header> {
        match self.first.get(name as usize) {
            Some(&ABSENT) => None,
            Some(&i) => self.headers.get(usize::from(i)),
            None => self.headers.iter().find(|h| h.name == name),
        }
    }

    /// The value of the first header of that name.
    pub fn get(&self, name: HeaderName) -> Option<&[u8]> {
        self.header(name).map(|h| self.value(h))
    }

    /// The value of the first header with this name, known or not
    /// (case-insensitive).
    pub fn get_by_name(&self, name: &str) -> Option<&[u8]> {
        let known = HeaderName::from_bytes(name.as_bytes());
        if known != HeaderName::Other {
            return self.get(known);
        }
        self.headers
            .iter()
            .find(|h| {
                h.name == HeaderName::Other && self.name(h).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|h| self.value(h))
    }

    /// Every header line of that name, in order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// Every comma-separated element of every header of that name, in order.
    pub fn list(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.all(name)
            .flat_map(move |h| text::split_commas(self.value(h)))
    }

    pub fn vias(&self) -> impl Iterator<Item = Option<Via<'_>>> + '_ {
        self.list(HeaderName::Via).map(Via::parse)
    }

    pub fn top_via(&self) -> Option<Via<'_>> {
        if let Some(v) = self.parsed.top_via {
            return Some(v.at(&self.buf));
        }
        self.list(HeaderName::Via).next().and_then(Via::parse)
    }

    pub fn call_id(&self) -> Option<&[u8]> {
        self.get(HeaderName::CallId)
    }

    pub fn cseq(&self) -> Option<CSeq<'_>> {
        if let Some((seq, method)) = self.parsed.cseq {
            return Some(CSeq {
                seq,
                method: self.bytes_of(method),
            });
        }
        self.get(HeaderName::CSeq).and_then(CSeq::parse)
    }

    pub fn from(&self) -> Option<NameAddr<'_>> {
        if let Some(n) = self.parsed.from {
            return Some(n.at(&self.buf));
        }
        self.get(HeaderName::From).and_then(NameAddr::parse)
    }

    pub fn to(&self) -> Option<NameAddr<'_>> {
        if let Some(n) = self.parsed.to {
            return Some(n.at(&self.buf));
        }
        self.get(HeaderName::To).and_then(NameAddr::parse)
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.get(HeaderName::MaxForwards)
            .and_then(|v| text::parse_u64(v, 255))
            .map(|v| v as u32)
    }

    pub fn content_type(&self) -> Option<MediaType<'_>> {
        self.get(HeaderName::ContentType).and_then(MediaType::parse)
    }

    pub fn content_length(&self) -> Option<usize> {
        self.get(HeaderName::ContentLength)
            .and_then(|v| text::parse_u64(v, u32::MAX as u64))
            .map(|v| v as usize)
    }

    /// The caller's identity: the first P-Asserted-Identity, else From.
    pub fn caller(&self) -> Option<NameAddr<'_>> {
        self.list(HeaderName::PAssertedIdentity)
            .find_map(NameAddr::parse)
            .or_else(|| self.from())
    }

    /// Name-addr values of a list header (Contact, Route, Record-Route,
    /// P-Asserted-Identity, Geolocation, Call-Info).
    pub fn name_addrs(&self, name: HeaderName) -> impl Iterator<Item = Option<NameAddr<'_>>> + '_ {
        self.list(name).map(NameAddr::parse)
    }

    pub fn body_span(&self) -> Span {
        self.body
    }

    pub fn body(&self) -> &[u8] {
        self.bytes_of(self.body)
    }

    pub fn body_bytes(&self) -> Bytes {
        self.slice(self.body)
    }
}
