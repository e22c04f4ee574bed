//! The full path's text, for messages the fast path declines (folded
//! header lines).
//!
//! The message is normalized as RFC 3261 section 7.3.1 allows (each fold,
//! a line end followed by whitespace, becomes one space; the body is kept
//! byte for byte); `parse.rs` then runs the fast indexer over that text.
//! (rsip, once the parser of this path, is now only the oracle the torture
//! tests compare verdicts with.)

use bytes::{Bytes, BytesMut};

/// Joins folded header lines: every line end followed by a space or tab
/// inside the header section becomes a single space.
pub fn unfold(buf: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(buf.len());
    let mut i = 0;
    // Skip the start line's leading CRLFs exactly as the indexer does.
    while i < buf.len() && (buf[i] == b'\r' || buf[i] == b'\n') {
        i += 1;
    }
    let mut line_start = true;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\r' || b == b'\n' {
            let eol = if b == b'\r' && buf.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let next = buf.get(i + eol).copied();
            if !line_start && matches!(next, Some(b' ') | Some(b'\t')) {
                out.extend_from_slice(b" ");
                i += eol;
                while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
                    i += 1;
                }
                continue;
            }
            out.extend_from_slice(&buf[i..i + eol]);
            i += eol;
            if line_start {
                // An empty line: the headers end here; the body is copied as is.
                out.extend_from_slice(&buf[i..]);
                return out.freeze();
            }
            line_start = true;
            continue;
        }
        line_start = false;
        out.extend_from_slice(&buf[i..i + 1]);
        i += 1;
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_joins_continuations_and_keeps_the_body() {
        let m =
            b"INVITE sip:a@b SIP/2.0\r\nTo:\r\n sip:x@y\r\nSubject: a\r\n\tb\r\n\r\nbody\r\n more";
        let u = unfold(m);
        assert_eq!(
            &u[..],
            &b"INVITE sip:a@b SIP/2.0\r\nTo: sip:x@y\r\nSubject: a b\r\n\r\nbody\r\n more"[..]
        );
    }
}
