//! Multipart bodies (RFC 2046 section 5.1): parts located by spans into the
//! message buffer, nested multiparts flattened in document order.

use smallvec::SmallVec;

use super::message::{Message, Span};
use super::text::trim;
use super::values::MediaType;

/// One part of a multipart body. Spans index the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPart {
    /// The part's header lines (may be empty).
    pub headers: Span,
    /// The part's content.
    pub body: Span,
    pub content_type: Option<Span>,
    pub content_id: Option<Span>,
    /// 0 for a part of the message body, 1 for a part of a nested multipart.
    pub depth: u8,
    /// Whether the part is itself a multipart (its parts follow it).
    pub is_multipart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    NoBoundary,
    NoDelimiter,
    Unterminated,
    TooDeep,
    TooManyParts,
}

impl BodyError {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyError::NoBoundary => "multipart body without a boundary",
            BodyError::NoDelimiter => "boundary not found in the body",
            BodyError::Unterminated => "multipart body without its closing delimiter",
            BodyError::TooDeep => "multipart nested too deeply",
            BodyError::TooManyParts => "too many body parts",
        }
    }
}

pub type Parts = SmallVec<[BodyPart; 4]>;

const MAX_DEPTH: u8 = 4;
const MAX_PARTS: usize = 64;

/// Splits a multipart body. `body` indexes `buf`.
pub fn split(buf: &[u8], body: Span, boundary: &[u8], out: &mut Parts) -> Result<(), BodyError> {
    split_at_depth(buf, body, boundary, 0, out)
}

fn split_at_depth(
    buf: &[u8],
    body: Span,
    boundary: &[u8],
    depth: u8,
    out: &mut Parts,
) -> Result<(), BodyError> {
    if depth >= MAX_DEPTH {
        return Err(BodyError::TooDeep);
    }
    if boundary.is_empty() {
        return Err(BodyError::NoBoundary);
    }
    let base = body.start as usize;
    let b = &buf[body.range()];
    // The first delimiter may open the body; later ones follow a line end.
    let mut pos = find_delimiter(b, boundary, 0, true).ok_or(BodyError::NoDelimiter)?;
    loop {
        // pos is at "--boundary".
        let after = pos + 2 + boundary.len();
        if b[after..].starts_with(b"--") {
            return Ok(());
        }
        // The rest of the delimiter line (transport padding) is ignored.
        let line_end = match memchr::memchr(b'\n', &b[after..]) {
            Some(n) => after + n + 1,
            None => return Err(BodyError::Unterminated),
        };
        let next = find_delimiter(b, boundary, line_end, false).ok_or(BodyError::Unterminated)?;
        // The line end before the next delimiter belongs to the delimiter.
        let mut part_end = next;
        if part_end > line_end && b[part_end - 1] == b'\n' {
            part_end -= 1;
            if part_end > line_end && b[part_end - 1] == b'\r' {
                part_end -= 1;
            }
        }
        let part = parse_part(b, line_end, part_end, base, depth);
        if out.len() == MAX_PARTS {
            return Err(BodyError::TooManyParts);
        }
        out.push(part);
        if part.is_multipart {
            let inner_boundary = part
                .content_type
                .and_then(|ct| MediaType::parse(&buf[ct.range()]))
                .and_then(|m| m.boundary());
            match inner_boundary {
                Some(ib) => split_at_depth(buf, part.body, ib, depth + 1, out)?,
                None => return Err(BodyError::NoBoundary),
            }
        }
        pos = next;
    }
}

/// Finds `--boundary` at the start of a line at or after `from`.
fn find_delimiter(b: &[u8], boundary: &[u8], from: usize, at_start_ok: bool) -> Option<usize> {
    let mut i = from;
    while i + 2 + boundary.len() <= b.len() {
        let hit = memchr::memmem::find(&b[i..], b"--")? + i;
        let line_start = (hit == 0 && at_start_ok) || (hit > 0 && b[hit - 1] == b'\n');
        if line_start && b[hit + 2..].starts_with(boundary) {
            return Some(hit);
        }
        i = hit + 1;
    }
    None
}

fn parse_part(b: &[u8], start: usize, end: usize, base: usize, depth: u8) -> BodyPart {
    let mut pos = start;
    let mut content_type = None;
    let mut content_id = None;
    // Part headers run to the first empty line; a part with none starts
    // with its empty line.
    let mut body_start = start;
    let mut headers_end = start;
    while pos < end {
        let nl = memchr::memchr(b'\n', &b[pos..end]).map_or(end, |n| pos + n);
        let line = &b[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let next = (nl + 1).min(end);
        if line.is_empty() {
            headers_end = pos;
            body_start = next;
            break;
        }
        if let Some(c) = memchr::memchr(b':', line) {
            let name = trim(&line[..c]);
            let value = trim(&line[c + 1..]);
            // Where the trimmed value starts (the same trim as the value's).
            let vs = pos + (value.as_ptr() as usize - line.as_ptr() as usize);
            let span = Span::new(base + vs, base + vs + value.len());
            if name.eq_ignore_ascii_case(b"Content-Type") || name.eq_ignore_ascii_case(b"c") {
                content_type = Some(span);
            } else if name.eq_ignore_ascii_case(b"Content-ID") {
                content_id = Some(span);
            }
        } else {
            // Not a header: the part has no header block, so nothing read
            // from its first lines is a part header either.
            headers_end = start;
            body_start = start;
            content_type = None;
            content_id = None;
            break;
        }
        pos = next;
        headers_end = pos;
        body_start = pos;
    }
    let is_multipart = content_type
        .and_then(|ct| MediaType::parse(&b[ct.start as usize - base..ct.end as usize - base]))
        .is_some_and(|m| m.is_multipart());
    BodyPart {
        headers: Span::new(base + start, base + headers_end),
        body: Span::new(base + body_start.min(end), base + end),
        content_type,
        content_id,
        depth,
        is_multipart,
    }
}

impl Message {
    /// The parts of a multipart body; an empty list for any other body.
    pub fn body_parts(&self) -> Result<Parts, BodyError> {
        let mut out = Parts::new();
        if let Some(ct) = self.content_type() {
            if ct.is_multipart() {
                let boundary = ct.boundary().ok_or(BodyError::NoBoundary)?;
                split(self.buf(), self.body_span(), boundary, &mut out)?;
            }
        }
        Ok(out)
    }

    /// A body part by its Content-ID (angle brackets optional on both
    /// sides; `cid:` URLs are %-decoded before the comparison).
    pub fn part_by_content_id(&self, parts: &[BodyPart], cid: &[u8]) -> Option<BodyPart> {
        let want = super::uri::unescape(strip_angles(cid));
        parts.iter().copied().find(|p| {
            p.content_id
                .is_some_and(|s| strip_angles(self.bytes_of(s)) == want.as_ref())
        })
    }
}

fn strip_angles(s: &[u8]) -> &[u8] {
    let s = trim(s);
    s.strip_prefix(b"<")
        .and_then(|s| s.strip_suffix(b">"))
        .unwrap_or(s)
}

/// Lowercase-insensitive media type of a part.
pub fn part_media_type<'a>(msg: &'a Message, part: &BodyPart) -> Option<MediaType<'a>> {
    part.content_type
        .and_then(|s| MediaType::parse(msg.bytes_of(s)))
}

/// Whether a part is a PIDF-LO document.
pub fn is_pidf(msg: &Message, part: &BodyPart) -> bool {
    part_media_type(msg, part).is_some_and(|m| m.is("application", "pidf+xml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &str, ct: &str) -> Message {
        let s = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        crate::sip::parse_datagram(Bytes::from(s), &Default::default()).unwrap()
    }

    #[test]
    fn two_parts_with_preamble_and_epilogue() {
        let body = "preamble\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@h>\r\n\r\n<presence/>\r\n--b1--\r\nepilogue";
        let m = msg(body, "multipart/mixed; boundary=b1");
        let parts = m.body_parts().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(m.bytes_of(parts[0].body), b"v=0\r\n");
        assert_eq!(m.bytes_of(parts[1].body), b"<presence/>");
        assert!(is_pidf(&m, &parts[1]));
        let p = m
            .part_by_content_id(&parts, b"cid:loc@h".strip_prefix(b"cid:").unwrap())
            .unwrap();
        assert_eq!(p, parts[1]);
    }

    #[test]
    fn nested_multipart_is_flattened() {
        let body = "--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nA\r\n--inner\r\nContent-Type: application/pidf+xml\r\nContent-ID: <x@y>\r\n\r\nB\r\n--inner--\r\n\r\n--outer\r\nContent-Type: application/sdp\r\n\r\nC\r\n--outer--\r\n";
        let m = msg(body, "multipart/mixed;boundary=\"outer\"");
        let parts = m.body_parts().unwrap();
        assert_eq!(parts.len(), 4);
        assert!(parts[0].is_multipart);
        assert_eq!((parts[1].depth, m.bytes_of(parts[1].body)), (1, &b"A"[..]));
        assert_eq!(m.bytes_of(parts[2].body), b"B");
        assert_eq!(m.bytes_of(parts[3].body), b"C");
        assert_eq!(m.part_by_content_id(&parts, b"<x@y>").unwrap(), parts[2]);
    }

    #[test]
    fn broken_multiparts_are_errors_not_panics() {
        for (body, err) in [
            ("no delimiter here", BodyError::NoDelimiter),
            (
                "--b1\r\nContent-Type: text/plain\r\n\r\nA",
                BodyError::Unterminated,
            ),
            ("--b1", BodyError::Unterminated),
        ] {
            let m = msg(body, "multipart/mixed; boundary=b1");
            assert_eq!(m.body_parts().unwrap_err(), err, "{body}");
        }
        let m = msg("x", "multipart/mixed");
        assert_eq!(m.body_parts().unwrap_err(), BodyError::NoBoundary);
        let m = msg("x", "application/sdp");
        assert!(m.body_parts().unwrap().is_empty());
    }

    #[test]
    fn boundary_text_inside_a_line_is_not_a_delimiter() {
        let body = "--b1\r\n\r\nsee --b1 here\r\n--b1--";
        let m = msg(body, "multipart/mixed; boundary=b1");
        let parts = m.body_parts().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(m.bytes_of(parts[0].body), b"see --b1 here");
    }
}
