//! Messages the router writes itself, built from a received request:
//! responses (100, 400, 403, 408, 483, 500, 503 ...), the ACK for a non-2xx
//! final response, and CANCEL.

use core::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use super::edit::{put_via_value, received_via};
use super::header::HeaderName;
use super::message::Message;

fn put_line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// A response to `req`, received from `peer`. Via, From, Call-ID and CSeq
/// are copied, the top Via with `received` and `rport` filled in as RFC
/// 3581 asks (see [`received_via`]); To gets `to_tag` when it has no tag
/// and the response is not 100. `extra` headers follow; the body, if any,
/// gets its Content-Type.
pub fn response(
    req: &Message,
    peer: Option<SocketAddr>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &[u8])],
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(512 + body.map_or(0, |b| b.1.len()));
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(code.to_string().as_bytes());
    out.put_slice(b" ");
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    let stamped = peer.and_then(|p| received_via(req, p));
    for h in req.headers() {
        match h.name {
            HeaderName::Via => {
                out.put_slice(b"Via: ");
                put_via_value(&mut out, req, h, stamped.as_ref());
                out.put_slice(b"\r\n");
            }
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                put_line(&mut out, h.name.as_str().as_bytes(), req.value(h));
            }
            HeaderName::To => {
                out.put_slice(b"To: ");
                out.put_slice(req.value(h));
                let has_tag = req.to().is_some_and(|t| t.tag().is_some());
                if let (false, Some(tag), true) = (has_tag, to_tag, code > 100) {
                    out.put_slice(b";tag=");
                    out.put_slice(tag.as_bytes());
                }
                out.put_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for (n, v) in extra {
        put_line(&mut out, n.as_bytes(), v);
    }
    match body {
        Some((ct, b)) => {
            put_line(&mut out, b"Content-Type", ct.as_bytes());
            put_line(&mut out, b"Content-Length", b.len().to_string().as_bytes());
            out.put_slice(b"\r\n");
            out.put_slice(b);
        }
        None => out.put_slice(b"Content-Length: 0\r\n\r\n"),
    }
    out.freeze()
}

/// The ACK a client transaction sends for a non-2xx final response (RFC 3261
/// section 17.1.1.3): the request's URI, top Via, From, Call-ID and Route;
/// To from the response; CSeq method ACK.
pub fn ack_for(req: &Message, resp: &Message) -> Bytes {
    hop_request(req, b"ACK", resp.get(HeaderName::To))
}

/// A CANCEL for a request this router sent (RFC 3261 section 9.1).
pub fn cancel_for(req: &Message) -> Bytes {
    hop_request(req, b"CANCEL", None)
}

fn hop_request(req: &Message, method: &[u8], to: Option<&[u8]>) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(method);
    out.put_slice(b" ");
    out.put_slice(req.request_uri_bytes());
    out.put_slice(b" SIP/2.0\r\n");
    if let Some(v) = req.list(HeaderName::Via).next() {
        put_line(&mut out, b"Via", v);
    }
    for h in req.headers() {
        match h.name {
            HeaderName::Route | HeaderName::From | HeaderName::CallId => {
                put_line(&mut out, h.name.as_str().as_bytes(), req.value(h));
            }
            HeaderName::To => put_line(&mut out, b"To", to.unwrap_or(req.value(h))),
            HeaderName::CSeq => {
                let seq = req.cseq().map_or(0, |c| c.seq);
                out.put_slice(b"CSeq: ");
                out.put_slice(seq.to_string().as_bytes());
                out.put_slice(b" ");
                out.put_slice(method);
                out.put_slice(b"\r\n");
            }
            _ => {}
        }
    }
    out.put_slice(b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    out.freeze()
}
