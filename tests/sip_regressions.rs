//! Inputs that once broke the SIP layer, each with the behaviour it must
//! have now.

use bytes::Bytes;
use sosrouter::sip::{self, Limits, ParseError, Status};

fn stream(data: &[u8]) -> Result<Status<sip::Message>, ParseError> {
    sip::parse_stream(&Bytes::copy_from_slice(data), &Limits::default())
}

/// A folded continuation line that looks like `l: 5` is part of the header
/// above it, not a Content-Length: stream framing must not count it, or it
/// swallows bytes the parsed message does not account for.
#[test]
fn folded_line_that_looks_like_content_length_does_not_frame() {
    let msg = b"OPTIONS sip:a@example.net SIP/2.0\r\n\
Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.net>\r\n\
From: <sip:b@example.net>;tag=1\r\n\
Call-ID: fold-cl\r\n\
CSeq: 1 OPTIONS\r\n\
Subject: hello\r\n l: 5\r\n\
\r\n";
    let mut data = msg.to_vec();
    data.extend_from_slice(b"OPTIONS sip:a@example.net SIP/2.0\r\n");
    match stream(&data) {
        Ok(Status::Complete(m, n)) => {
            assert_eq!(m.get(sip::HeaderName::Subject), Some(&b"hello l: 5"[..]));
            assert_eq!(m.body(), b"");
            assert_eq!(n, msg.len(), "consumed only the message");
        }
        other => panic!("{other:?}"),
    }
}

/// A Content-Length whose value is folded onto the next line: a datagram
/// unfolds it; stream framing reads lines one by one and refuses it rather
/// than guess the length.
#[test]
fn folded_content_length_value() {
    let msg = b"OPTIONS sip:a@example.net SIP/2.0\r\n\
Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.net>\r\n\
From: <sip:b@example.net>;tag=1\r\n\
Call-ID: fold-cl2\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length:\r\n 2\r\n\
\r\nhi";
    let d = sip::parse_datagram(Bytes::from_static(msg), &Limits::default()).unwrap();
    assert_eq!(d.content_length(), Some(2));
    assert_eq!(d.body(), b"hi");
    assert_eq!(stream(msg).unwrap_err(), ParseError::BadContentLength);
}
