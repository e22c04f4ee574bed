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

/// A multipart/mixed body whose epilogue holds a second closing delimiter
/// (found by the multipart fuzz target): the added part must go before the
/// first one, where the body ends, or nobody downstream sees it.
#[test]
fn added_part_goes_before_the_first_closing_delimiter() {
    let body = "--c07-boundar\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\
--c07-boundar--\r\nepilogue\r\n--c07-boundar--";
    let msg = format!(
        "MESSAGE sip:a@example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.net>\r\nFrom: <sip:b@example.net>;tag=1\r\nCall-ID: m\r\n\
CSeq: 1 MESSAGE\r\nContent-Type: multipart/mixed;boundary=\"c07-boundar\"\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let m = sip::parse_datagram(Bytes::from(msg), &Limits::default()).unwrap();
    assert_eq!(m.body_parts().unwrap().len(), 1);
    let mut e = sosrouter::sip::edit::Editor::new(&m);
    e.add_body_part(&[("Content-Type", "text/plain")], b"added");
    let out = sip::parse_datagram(e.build(), &Limits::default()).unwrap();
    let parts = out.body_parts().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(out.bytes_of(parts[0].body), b"v=0");
    assert_eq!(out.bytes_of(parts[1].body), b"added");
    assert!(out
        .body()
        .ends_with(b"--c07-boundar--\r\nepilogue\r\n--c07-boundar--"));
}

/// The fuzzer's minimized input: a body that is nothing but two closing
/// delimiters.
#[test]
fn body_of_two_closing_delimiters() {
    let body = "--c07-boundar--\n--c07-boundar--";
    let msg = format!(
        "MESSAGE sip:a@example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.net>\r\nFrom: <sip:b@example.net>;tag=1\r\nCall-ID: m\r\n\
CSeq: 1 MESSAGE\r\nContent-Type: multipart/mixed;boundary=\"c07-boundar\"\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let m = sip::parse_datagram(Bytes::from(msg), &Limits::default()).unwrap();
    assert!(m.body_parts().unwrap().is_empty());
    let mut e = sosrouter::sip::edit::Editor::new(&m);
    e.add_body_part(&[("Content-Type", "text/plain")], b"added");
    let out = sip::parse_datagram(e.build(), &Limits::default()).unwrap();
    let parts = out.body_parts().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(out.bytes_of(parts[0].body), b"added");
}

/// A part whose first line looks like a header but whose next line is not
/// one has no header block (found by the multipart fuzz target): its
/// Content-Type must not come from what is then body text.
#[test]
fn part_without_header_block_has_no_content_type() {
    use sosrouter::sip::{body, Span};
    let content = b"--c07-boundar\nC:\n-\n--c07-boundar--";
    let mut parts = body::Parts::new();
    body::split(
        content,
        Span::new(0, content.len()),
        b"c07-boundar",
        &mut parts,
    )
    .unwrap();
    assert_eq!(parts.len(), 1);
    let p = parts[0];
    assert!(p.headers.is_empty());
    assert_eq!(p.content_type, None);
    assert_eq!(&content[p.body.range()], b"C:\n-");

    let body = "--b\r\nContent-Type: application/pidf+xml\r\n<presence/>\r\n--b--\r\n";
    let msg = format!(
        "MESSAGE sip:a@example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.net>\r\nFrom: <sip:b@example.net>;tag=1\r\nCall-ID: m\r\n\
CSeq: 1 MESSAGE\r\nContent-Type: multipart/mixed;boundary=b\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let m = sip::parse_datagram(Bytes::from(msg), &Limits::default()).unwrap();
    let parts = m.body_parts().unwrap();
    assert_eq!(parts.len(), 1);
    assert!(!body::is_pidf(&m, &parts[0]));
    assert!(m
        .bytes_of(parts[0].body)
        .starts_with(b"Content-Type: application/pidf+xml\r\n<presence/>"));
}

/// A part header value of only a form feed, at the very end of the part
/// (found by the multipart fuzz target): the value's span must start where
/// the trimmed value starts and stay inside the part's headers.
#[test]
fn part_header_value_span_stays_in_the_headers() {
    use sosrouter::sip::{body, Span};
    for content in [
        &b"--b\r\nContent-Type:\x0c\r\n--b--"[..],
        b"--b\r\nContent-Type:\x0c text/plain\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-ID: \x0c<a@b>\r\n\r\nx\r\n--b--",
    ] {
        let mut parts = body::Parts::new();
        body::split(content, Span::new(0, content.len()), b"b", &mut parts).unwrap();
        let p = parts[0];
        for s in [p.content_type, p.content_id].into_iter().flatten() {
            assert!(
                s.start >= p.headers.start && s.end <= p.headers.end,
                "{p:?}"
            );
            let v = &content[s.range()];
            assert!(!v.ends_with(b"\r") && !v.ends_with(b"\n"), "{v:?}");
        }
    }
}

const INVITE_WITH_BAD_DATE: &[u8] = b"INVITE urn:service:sos SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKdate1\r\n\
To: <urn:service:sos>\r\n\
From: <sip:+12125550142@example.com>;tag=1\r\n\
Call-ID: bad-date\r\n\
CSeq: 1 INVITE\r\n\
Date: Sat, 13 Nov 2010 23:29:00 PST\r\n\
Content-Length: 0\r\n\
\r\n";

/// The proxy's receive path: a fault only in a header the proxy passes on
/// is recorded on an INVITE (which may be an emergency call) and refused
/// for any other request; a fault in a header that names the transaction
/// is refused for every request. The full check still refuses all three.
#[test]
fn receive_records_a_passed_on_fault_on_an_invite_only() {
    let limits = Limits::default();
    let got = sip::receive(Bytes::from_static(INVITE_WITH_BAD_DATE), false, &limits).unwrap();
    assert_eq!(got.fault(), Some(&ParseError::BadHeader("Date")));
    assert_eq!(got.call_id(), Some(&b"bad-date"[..]));
    assert_eq!(
        sip::parse_datagram(Bytes::from_static(INVITE_WITH_BAD_DATE), &limits).unwrap_err(),
        ParseError::BadHeader("Date")
    );

    let options = String::from_utf8_lossy(INVITE_WITH_BAD_DATE)
        .replace("INVITE urn", "OPTIONS urn")
        .replace("1 INVITE", "1 OPTIONS");
    assert_eq!(
        sip::receive(Bytes::from(options), false, &limits).unwrap_err(),
        ParseError::BadHeader("Date")
    );

    let bad_from = String::from_utf8_lossy(INVITE_WITH_BAD_DATE).replace(";tag=1", ";;tag=1");
    assert_eq!(
        sip::receive(Bytes::from(bad_from), false, &limits).unwrap_err(),
        ParseError::BadHeader("From")
    );

    let clean = String::from_utf8_lossy(INVITE_WITH_BAD_DATE).replace(" PST", " GMT");
    let got = sip::receive(Bytes::from(clean), true, &limits).unwrap();
    assert_eq!(got.fault(), None);
}

/// An unquoted display name with a comma (`Smith, John <sip:...>`, which
/// RFC 3261 wants quoted and some equipment sends anyway): the URI and tag
/// are still read, so an INVITE is kept with the fault recorded (the proxy
/// routes it if it is an emergency call); any other request is refused.
#[test]
fn an_unquoted_display_name_with_a_comma_is_a_passed_on_fault() {
    let limits = Limits::default();
    let invite = String::from_utf8_lossy(INVITE_WITH_BAD_DATE)
        .replace(" PST", " GMT")
        .replace("From: <sip:", "From: Smith, John <sip:");
    let got = sip::receive(Bytes::from(invite.clone()), false, &limits).unwrap();
    assert_eq!(got.fault(), Some(&ParseError::BadHeader("From")));
    let from = got.from().unwrap();
    assert_eq!(from.display, Some(&b"Smith, John"[..]));
    assert_eq!(from.tag(), Some(&b"1"[..]));
    assert_eq!(from.uri().and_then(|u| u.user), Some(&b"+12125550142"[..]));
    assert_eq!(
        sip::parse_datagram(Bytes::from(invite.clone()), &limits).unwrap_err(),
        ParseError::BadHeader("From")
    );
    // The same in To.
    let to = String::from_utf8_lossy(INVITE_WITH_BAD_DATE)
        .replace(" PST", " GMT")
        .replace("To: <urn:", "To: Emergency, Services <urn:");
    let got = sip::receive(Bytes::from(to), false, &limits).unwrap();
    assert_eq!(got.fault(), Some(&ParseError::BadHeader("To")));
    // Not an INVITE: refused.
    let options = invite
        .replace("INVITE urn", "OPTIONS urn")
        .replace("1 INVITE", "1 OPTIONS");
    assert_eq!(
        sip::receive(Bytes::from(options), false, &limits).unwrap_err(),
        ParseError::BadHeader("From")
    );
    // A quote that never ends, or a stray one, still leaves the bracketed
    // URI and the tag readable: kept the same way, refused by the full check.
    for display in ["\"Smith", "\"John \"Jack\" Smith\""] {
        let odd = invite.replace("From: Smith, John <sip:", &format!("From: {display} <sip:"));
        let got = sip::receive(Bytes::from(odd.clone()), false, &limits).unwrap();
        assert_eq!(
            got.fault(),
            Some(&ParseError::BadHeader("From")),
            "{display}"
        );
        let from = got.from().unwrap();
        assert_eq!(from.display, Some(display.as_bytes()));
        assert_eq!(from.tag(), Some(&b"1"[..]));
        assert_eq!(from.uri().and_then(|u| u.user), Some(&b"+12125550142"[..]));
        assert_eq!(
            sip::parse_datagram(Bytes::from(odd), &limits).unwrap_err(),
            ParseError::BadHeader("From")
        );
    }
    // No URI to read at all: refused at receipt.
    let no_uri = invite.replace("From: Smith, John <sip:", "From: \"Smith sip:");
    assert_eq!(
        sip::receive(Bytes::from(no_uri), false, &limits).unwrap_err(),
        ParseError::BadHeader("From")
    );
}
