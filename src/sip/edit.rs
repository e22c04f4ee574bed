//! Outgoing messages as the received bytes plus a list of edits. Headers the
//! router does not touch are copied as they came, never re-serialized.

use core::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::header::HeaderName;
use super::message::{Message, Span};
use super::text;

#[derive(Debug, Clone)]
enum Edit {
    /// Replace `span` (possibly empty: an insertion) with `text`.
    Replace { span: Span, text: Bytes },
}

impl Edit {
    fn span(&self) -> Span {
        match self {
            Edit::Replace { span, .. } => *span,
        }
    }
}

/// The top Via of `req` as the router must see it once the request came
/// from `peer` (RFC 3261 section 18.2.1, RFC 3581): `received` when the
/// sent-by host is not the peer's address, and `received` and a filled-in
/// `rport` when the Via asks for it. `None`: the Via stays as it is. The
/// span is the top Via value's, the bytes its new text; relayed requests
/// and every response the router writes use it.
pub fn received_via(req: &Message, peer: SocketAddr) -> Option<(Span, Vec<u8>)> {
    let via = req.top_via()?;
    let peer_ip = peer.ip();
    let host = String::from_utf8_lossy(via.host);
    let same_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        == Some(peer_ip);
    let wants_rport = matches!(via.rport(), Some(None));
    if same_host && !wants_rport {
        return None;
    }
    let span = first_value_span(req, HeaderName::Via)?;
    let value = req.bytes_of(span);
    // Where the parameters start in this value. A Via without any (RFC
    // 2543) has them empty, and an empty slice may point anywhere: the
    // value's end is where they would go. A value the parsed Via does not
    // lie in (a list that starts with an empty element) is left as it is.
    Span::within(value, via.host)?;
    let params_at = match via.params {
        [] => value.len(),
        params => Span::within(value, params)?.range().start,
    };
    let mut new = Vec::with_capacity(value.len() + 48);
    // Drop an empty rport (it is filled in) and any received (it is
    // written again), and keep every other parameter.
    new.extend_from_slice(&value[..params_at]);
    for p in text::params(via.params).flatten() {
        if wants_rport && p.0.eq_ignore_ascii_case(b"rport") {
            continue;
        }
        if p.0.eq_ignore_ascii_case(b"received") {
            continue;
        }
        new.push(b';');
        new.extend_from_slice(p.0);
        if let Some(v) = p.1 {
            new.push(b'=');
            new.extend_from_slice(v);
        }
    }
    new.extend_from_slice(b";received=");
    new.extend_from_slice(peer_ip.to_string().as_bytes());
    if wants_rport {
        new.extend_from_slice(b";rport=");
        new.extend_from_slice(peer.port().to_string().as_bytes());
    }
    Some((span, new))
}

/// The Via values of `req`, received from `peer`, as one header value
/// (`a, b, c`), the top one with `received` and `rport` filled in: what a
/// response to it carries upstream. For a response that came back from the
/// next hop without them.
pub fn upstream_vias(req: &Message, peer: SocketAddr) -> Vec<u8> {
    let stamped = received_via(req, peer);
    let mut out = Vec::with_capacity(128);
    for h in req.all(HeaderName::Via) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        put_via_value(&mut out, req, h, stamped.as_ref());
    }
    out
}

/// One Via header's value, with the stamped top value in place when it
/// lies in this header.
pub(super) fn put_via_value(
    out: &mut impl BufMut,
    req: &Message,
    h: &super::message::Header,
    stamped: Option<&(Span, Vec<u8>)>,
) {
    let value = req.value(h);
    match stamped {
        Some((span, new)) if h.value.contains(*span) => {
            out.put_slice(&value[..(span.start - h.value.start) as usize]);
            out.put_slice(new);
            out.put_slice(&value[(span.end - h.value.start) as usize..]);
        }
        _ => out.put_slice(value),
    }
}

/// The span of the first value of a list header.
fn first_value_span(msg: &Message, name: HeaderName) -> Option<Span> {
    let h = msg.header(name)?;
    let value = msg.value(h);
    let first = text::split_commas(value).next()?;
    let off = first.as_ptr() as usize - value.as_ptr() as usize;
    let start = h.value.start as usize + off;
    Some(Span::new(start, start + first.len()))
}

/// Collects edits against one message, then builds the outgoing bytes in a
/// single allocation. Content-Length is kept right whatever the edits do.
pub struct Editor<'m> {
    msg: &'m Message,
    edits: SmallVec<[Edit; 8]>,
}

impl<'m> Editor<'m> {
    pub fn new(msg: &'m Message) -> Self {
        Editor {
            msg,
            edits: SmallVec::new(),
        }
    }

    pub fn message(&self) -> &'m Message {
        self.msg
    }

    fn replace(&mut self, span: Span, text: impl Into<Bytes>) {
        self.edits.push(Edit::Replace {
            span,
            text: text.into(),
        });
    }

    fn insert(&mut self, at: u32, text: impl Into<Bytes>) {
        self.replace(Span { start: at, end: at }, text);
    }

    /// Where new header lines go when nothing says otherwise: after the
    /// last header.
    fn end_of_headers(&self) -> u32 {
        self.msg.headers_end
    }

    fn first_line_of(&self, name: HeaderName) -> Option<u32> {
        self.msg.header(name).map(|h| h.line.start)
    }

    /// Inserts a new top Via (before every existing one).
    pub fn prepend_via(&mut self, value: &[u8]) {
        let at = self
            .first_line_of(HeaderName::Via)
            .unwrap_or(self.msg.start_line.end);
        self.insert(at, header_line("Via", value));
    }

    /// Removes the top Via value (responses going upstream).
    pub fn remove_top_via(&mut self) {
        self.remove_first_value(HeaderName::Via);
    }

    /// Removes the top Route value.
    pub fn remove_top_route(&mut self) {
        self.remove_first_values(HeaderName::Route, 1);
    }

    /// Removes the top `n` Route values, across header lines (the router's
    /// own pair of Record-Route values comes back as two Route values).
    pub fn remove_top_routes(&mut self, n: usize) {
        self.remove_first_values(HeaderName::Route, n);
    }

    fn remove_first_value(&mut self, name: HeaderName) {
        self.remove_first_values(name, 1);
    }

    /// Removes the first `n` elements of a list header, in order across its
    /// lines: a line whose every element goes is removed whole, else its
    /// first elements and the comma after each.
    fn remove_first_values(&mut self, name: HeaderName, mut n: usize) {
        let msg = self.msg;
        for h in msg.all(name) {
            if n == 0 {
                return;
            }
            let (line, value_span, value) = (h.line, h.value, msg.value(h));
            // One walk over the first n elements: `end` ends up just past
            // the comma after the last one taken, or past the end of the
            // value when no comma follows it.
            let mut split = text::split_commas(value);
            let (mut taken, mut end) = (0, 0);
            while taken < n {
                let Some(e) = split.next() else { break };
                taken += 1;
                let e_end = e.as_ptr() as usize - value.as_ptr() as usize + e.len();
                end = text::find::<b','>(value, e_end).unwrap_or(value.len()) + 1;
            }
            if taken < n || end > value.len() {
                // Every element of the line goes.
                self.replace(line, Bytes::new());
                n -= taken;
                continue;
            }
            // Delete from the value start through the n-th top-level comma
            // and the whitespace after it.
            while end < value.len() && text::is_ws(value[end]) {
                end += 1;
            }
            let start = value_span.start;
            self.replace(
                Span {
                    start,
                    end: start + end as u32,
                },
                Bytes::new(),
            );
            return;
        }
    }

    pub fn set_request_uri(&mut self, uri: impl Into<Bytes>) {
        if let Some(span) = self.msg.request_uri_span() {
            self.replace(span, uri);
        }
    }

    /// Sets Max-Forwards, adding the header when it is missing.
    pub fn set_max_forwards(&mut self, n: u32) {
        let text = decimal(n);
        match self.msg.header(HeaderName::MaxForwards) {
            Some(h) => self.replace(h.value, text),
            None => {
                let at = self.end_of_headers();
                self.insert(at, header_line("Max-Forwards", &text));
            }
        }
    }

    /// Inserts a Record-Route value above the existing ones.
    pub fn add_record_route(&mut self, value: &[u8]) {
        let at = self
            .first_line_of(HeaderName::RecordRoute)
            .unwrap_or_else(|| self.end_of_headers());
        self.insert(at, header_line("Record-Route", value));
    }

    /// Appends a header after the last one.
    pub fn add_header(&mut self, name: &str, value: &[u8]) {
        let at = self.end_of_headers();
        self.insert(at, header_line(name, value));
    }

    /// Inserts a header line above the first header of the same name (so it
    /// is the first value), or after the last header when there is none.
    pub fn add_header_first(&mut self, name: HeaderName, value: &[u8]) {
        let at = self
            .first_line_of(name)
            .unwrap_or_else(|| self.end_of_headers());
        self.insert(at, header_line(name.as_str(), value));
    }

    /// Replaces one header's value.
    pub fn set_header_value(&mut self, h: &super::message::Header, value: impl Into<Bytes>) {
        self.replace(h.value, value);
    }

    /// Removes every line of a header.
    pub fn remove_header(&mut self, name: HeaderName) {
        let lines: SmallVec<[Span; 4]> = self.msg.all(name).map(|h| h.line).collect();
        for l in lines {
            self.replace(l, Bytes::new());
        }
    }

    /// Replaces the content of one span of the body (a part's body, say).
    pub fn replace_span(&mut self, span: Span, text: impl Into<Bytes>) {
        self.replace(span, text);
    }

    /// Replaces the whole body and its Content-Type.
    pub fn set_body(&mut self, content_type: &[u8], body: impl Into<Bytes>) {
        match self.msg.header(HeaderName::ContentType) {
            Some(h) => self.replace(h.value, Bytes::copy_from_slice(content_type)),
            None => {
                let at = self.end_of_headers();
                self.insert(at, header_line("Content-Type", content_type));
            }
        }
        self.replace(self.msg.body, body);
    }

    /// Adds a body part. A multipart/mixed body gets the part before its
    /// closing delimiter; any other body becomes the first part of a new
    /// multipart/mixed body, so nothing the sender put in is lost.
    pub fn add_body_part(&mut self, headers: &[(&str, &str)], content: &[u8]) {
        let ct = self.msg.content_type();
        let mixed_boundary = ct
            .filter(|c| c.is("multipart", "mixed"))
            .and_then(|c| c.boundary())
            .map(Bytes::copy_from_slice);
        let mut part = BytesMut::with_capacity(content.len() + 128);
        for (n, v) in headers {
            put_line(&mut part, n.as_bytes(), v.as_bytes());
        }
        part.put_slice(b"\r\n");
        part.put_slice(content);
        if let Some(boundary) = mixed_boundary {
            if let Some(close) = closing_delimiter(self.msg.body(), &boundary) {
                let at = self.msg.body.start + close as u32;
                let mut text = BytesMut::with_capacity(part.len() + boundary.len() + 8);
                text.put_slice(b"--");
                text.put_slice(&boundary);
                text.put_slice(b"\r\n");
                text.put_slice(&part);
                text.put_slice(b"\r\n");
                self.insert(at, text.freeze());
                return;
            }
        }
        // Wrap whatever body there is into a new multipart/mixed body.
        let boundary = format!("sos-{:016x}", fxhash(self.msg.as_bytes()));
        let mut body = BytesMut::with_capacity(self.msg.body.len() + part.len() + 128);
        if !self.msg.body.is_empty() {
            body.put_slice(b"--");
            body.put_slice(boundary.as_bytes());
            body.put_slice(b"\r\n");
            if let Some(ct) = self.msg.get(HeaderName::ContentType) {
                put_line(&mut body, b"Content-Type", ct);
            }
            body.put_slice(b"\r\n");
            body.put_slice(self.msg.body());
            body.put_slice(b"\r\n");
        }
        body.put_slice(b"--");
        body.put_slice(boundary.as_bytes());
        body.put_slice(b"\r\n");
        body.put_slice(&part);
        body.put_slice(b"\r\n--");
        body.put_slice(boundary.as_bytes());
        body.put_slice(b"--\r\n");
        let ct = format!("multipart/mixed;boundary={boundary}");
        self.set_body(ct.as_bytes(), body.freeze());
    }

    /// Builds the outgoing message.
    pub fn build(mut self) -> Bytes {
        self.edits.sort_by_key(|e| (e.span().start, e.span().end));
        let msg = self.msg;
        let body = msg.body;
        // Body length after the edits inside it (a whole-body replacement
        // is one of them).
        let mut body_len = body.len() as i64;
        for e in &self.edits {
            let Edit::Replace { span, text } = e;
            if span.start >= body.start && span.end <= body.end {
                body_len += text.len() as i64 - span.len() as i64;
            }
        }
        let body_len = body_len.max(0) as usize;
        let mut digits = [0; 20];
        let cl_text = text::write_decimal(body_len as u64, &mut digits);
        match msg.header(HeaderName::ContentLength) {
            Some(h) if msg.bytes_of(h.value) != cl_text => {
                self.edits.push(Edit::Replace {
                    span: h.value,
                    text: Bytes::copy_from_slice(cl_text),
                });
            }
            Some(_) => {}
            None => {
                let at = msg.headers_end;
                self.edits.push(Edit::Replace {
                    span: Span { start: at, end: at },
                    text: header_line("Content-Length", cl_text),
                });
            }
        }
        self.edits.sort_by_key(|e| (e.span().start, e.span().end));

        let src = msg.buf();
        let start = msg.start_line.start as usize;
        let extra: usize = self
            .edits
            .iter()
            .map(|e| {
                let Edit::Replace { text, .. } = e;
                text.len()
            })
            .sum();
        let mut out = BytesMut::with_capacity(body.end as usize - start + extra);
        let mut pos = start;
        for e in &self.edits {
            let Edit::Replace { span, text } = e;
            let (s, en) = (span.start as usize, span.end as usize);
            if s < pos {
                // Overlapping edits: the earlier one wins.
                continue;
            }
            out.put_slice(&src[pos..s]);
            out.put_slice(text);
            pos = en;
        }
        out.put_slice(&src[pos..body.end as usize]);
        out.freeze()
    }
}

fn put_line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn header_line(name: &str, value: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(name.len() + value.len() + 4);
    put_line(&mut b, name.as_bytes(), value);
    b.freeze()
}

/// Offset of the closing delimiter `--boundary--`, where a new part goes.
fn closing_delimiter(body: &[u8], boundary: &[u8]) -> Option<usize> {
    let mut close = Vec::with_capacity(boundary.len() + 4);
    close.extend_from_slice(b"--");
    close.extend_from_slice(boundary);
    close.extend_from_slice(b"--");
    // The first one at the start of a line ends the body, as the splitter
    // reads it; any later one is epilogue text.
    memchr::memmem::find_iter(body, &close).find(|&at| at == 0 || body[at - 1] == b'\n')
}

/// A small non-cryptographic hash for boundaries unlikely to occur in a body.
fn fxhash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `n` in decimal; below 100 a view of a static table, not an allocation
/// (Max-Forwards is rewritten on every forwarded request).
fn decimal(n: u32) -> Bytes {
    static PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    match n {
        0..=9 => Bytes::from_static(&PAIRS[2 * n as usize + 1..2 * n as usize + 2]),
        10..=99 => Bytes::from_static(&PAIRS[2 * n as usize..2 * n as usize + 2]),
        _ => Bytes::copy_from_slice(text::write_decimal(n.into(), &mut [0; 20])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse_datagram, HeaderName};

    const INVITE: &str = "INVITE sip:911@proxy.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\nRoute: <sip:proxy.example.net;lr>, <sip:next.example.net;lr>\r\nMax-Forwards: 70\r\nTo: <sip:911@proxy.example.net>\r\nFrom: <sip:+12125550142@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

    fn parse(s: &[u8]) -> Message {
        parse_datagram(Bytes::copy_from_slice(s), &Default::default()).unwrap()
    }

    /// The router's pair of Route values, however the sender laid them out
    /// over lines, goes; what follows stays as it was. Two Record-Route
    /// values added in turn keep that order above the existing ones.
    #[test]
    fn the_top_two_route_values_go_across_lines() {
        let head =
            "BYE sip:psap@192.0.2.5 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKa\r\n";
        let tail = "Max-Forwards: 70\r\nTo: <sip:911@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c2\r\nCSeq: 2 BYE\r\nRecord-Route: <sip:old.example.net;lr>\r\nContent-Length: 0\r\n\r\n";
        let a = "<sip:127.0.0.1:5060;transport=tcp;lr>";
        let b = "<sip:127.0.0.1:5060;lr>";
        let c = "<sip:next.example.net;lr>";
        for (routes, left) in [
            (
                format!("Route: {a}, {b}, {c}\r\n"),
                format!("Route: {c}\r\n"),
            ),
            (
                format!("Route: {a},{b}\r\nRoute: {c}\r\n"),
                format!("Route: {c}\r\n"),
            ),
            (
                format!("Route: {a}\r\nRoute: {b}, {c}\r\n"),
                format!("Route: {c}\r\n"),
            ),
            (format!("Route: {a}\r\nRoute: {b}\r\n"), String::new()),
            (format!("Route: {a}\r\n"), String::new()),
            // Commas inside quotes or angle brackets separate nothing.
            (
                format!("Route: \"p, q\" {a},  \"r,\" <sip:s;x=1,2;lr>,{c}\r\n"),
                format!("Route: {c}\r\n"),
            ),
            (
                format!("Route: {a}\r\nRoute: {b},{c} ,{a}\r\n"),
                format!("Route: {c} ,{a}\r\n"),
            ),
        ] {
            let m = parse(format!("{head}{routes}{tail}").as_bytes());
            let mut e = Editor::new(&m);
            e.remove_top_routes(2);
            e.add_record_route(b"<sip:first;lr>");
            e.add_record_route(b"<sip:second;lr>");
            let out = e.build();
            let want = format!("{head}{left}{tail}").replace(
                "Record-Route: <sip:old",
                "Record-Route: <sip:first;lr>\r\nRecord-Route: <sip:second;lr>\r\nRecord-Route: <sip:old",
            );
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{routes}");
            parse(&out);
        }
    }

    #[test]
    fn forwarding_edits_leave_the_rest_untouched() {
        let m = parse(INVITE.as_bytes());
        let mut e = Editor::new(&m);
        e.prepend_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnew");
        e.set_request_uri(&b"sip:sos@psap.example"[..]);
        e.set_max_forwards(69);
        e.remove_top_route();
        e.add_record_route(b"<sip:127.0.0.1:5060;lr>");
        e.add_header(
            "Call-Info",
            b"<urn:emergency:uid:callid:1:h>;purpose=emergency-CallId",
        );
        let out = e.build();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "INVITE sip:sos@psap.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\nRoute: <sip:next.example.net;lr>\r\nMax-Forwards: 69\r\nTo: <sip:911@proxy.example.net>\r\nFrom: <sip:+12125550142@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\nCall-Info: <urn:emergency:uid:callid:1:h>;purpose=emergency-CallId\r\n\r\nv=0\n"
        );
        let again = parse(&out);
        assert_eq!(again.top_via().unwrap().branch(), Some(&b"z9hG4bKnew"[..]));
        assert_eq!(again.vias().count(), 3);
        assert_eq!(again.max_forwards(), Some(69));
        assert_eq!(again.list(HeaderName::Route).count(), 1);
    }

    #[test]
    fn decimals_from_the_table_and_beyond_it() {
        for n in [0, 1, 9, 10, 42, 69, 70, 99, 100, 255, u32::MAX] {
            assert_eq!(decimal(n), n.to_string().as_bytes(), "{n}");
        }
        for n in [0, 7, 10, 1234, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                text::write_decimal(n, &mut [0; 20]),
                n.to_string().as_bytes()
            );
        }
    }

    #[test]
    fn removing_a_single_value_removes_the_line() {
        let m = parse(INVITE.as_bytes());
        let mut e = Editor::new(&m);
        e.remove_top_via();
        e.remove_top_via();
        let out = parse(&e.build());
        assert_eq!(out.vias().count(), 1);
        assert_eq!(out.top_via().unwrap().branch(), Some(&b"z9hG4bKb"[..]));
    }

    #[test]
    fn adding_a_body_part_wraps_a_single_body_and_fixes_length() {
        let m = parse(INVITE.as_bytes());
        let mut e = Editor::new(&m);
        e.add_header_first(HeaderName::Geolocation, b"<cid:reg@sos>");
        e.add_body_part(
            &[
                ("Content-Type", "application/pidf+xml"),
                ("Content-ID", "<reg@sos>"),
            ],
            b"<presence/>",
        );
        let out = parse(&e.build());
        assert!(out.content_type().unwrap().is("multipart", "mixed"));
        let parts = out.body_parts().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(out.bytes_of(parts[0].body), b"v=0\n");
        assert_eq!(out.bytes_of(parts[1].body), b"<presence/>");
        assert_eq!(out.part_by_content_id(&parts, b"reg@sos"), Some(parts[1]));
        assert_eq!(out.content_length(), Some(out.body().len()));
        assert_eq!(
            out.get(HeaderName::Geolocation),
            Some(&b"<cid:reg@sos>"[..])
        );
    }

    #[test]
    fn adding_a_part_to_multipart_mixed_keeps_every_part() {
        let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b\r\nContent-Type: application/pidf+xml\r\nContent-ID: <dev@ua>\r\n\r\n<presence/>\r\n--b--\r\n";
        let s = INVITE
            .replace(
                "Content-Type: application/sdp",
                "Content-Type: multipart/mixed;boundary=b",
            )
            .replace(
                "Content-Length: 4\r\n\r\nv=0\n",
                &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
            );
        let m = parse(s.as_bytes());
        let mut e = Editor::new(&m);
        e.add_body_part(
            &[
                ("Content-Type", "application/pidf+xml"),
                ("Content-ID", "<reg@sos>"),
            ],
            b"<presence>r</presence>",
        );
        let out = parse(&e.build());
        let parts = out.body_parts().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(out.bytes_of(parts[2].body), b"<presence>r</presence>");
        assert!(out.part_by_content_id(&parts, b"dev@ua").is_some());
    }

    #[test]
    fn missing_content_length_is_added() {
        let s = INVITE.replace("Content-Length: 4\r\n", "");
        let m = parse(s.as_bytes());
        let out = parse(&Editor::new(&m).build());
        assert_eq!(out.content_length(), Some(4));
    }

    #[test]
    fn built_responses_and_acks_parse() {
        let m = parse(INVITE.as_bytes());
        let r = parse(&crate::sip::build::response(
            &m,
            None,
            503,
            "Service Unavailable",
            Some("rt1"),
            &[("Retry-After", b"5")],
            None,
        ));
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.to().unwrap().tag(), Some(&b"rt1"[..]));
        assert_eq!(r.get_by_name("retry-after"), Some(&b"5"[..]));
        let t = parse(&crate::sip::build::response(
            &m,
            None,
            100,
            "Trying",
            Some("rt1"),
            &[],
            None,
        ));
        assert_eq!(t.to().unwrap().tag(), None);
        let ack = parse(&crate::sip::build::ack_for(&m, &r));
        assert_eq!(ack.method(), crate::sip::Method::Ack);
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.to().unwrap().tag(), Some(&b"rt1"[..]));
        assert_eq!(ack.cseq().unwrap().method, b"ACK");
        let cancel = parse(&crate::sip::build::cancel_for(&m));
        assert_eq!(cancel.cseq().unwrap().method, b"CANCEL");
        assert_eq!(cancel.list(HeaderName::Route).count(), 2);
    }
}
