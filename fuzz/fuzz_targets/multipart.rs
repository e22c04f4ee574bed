//! The multipart splitter: parts lie inside the body, in order; adding a
//! part to a multipart/mixed body keeps every part that was there.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sosrouter::sip::{self, body, edit::Editor, Limits, Span};

fuzz_target!(|input: &[u8]| {
    if input.is_empty() {
        return;
    }
    // The first byte picks the boundary: a prefix of a fixed alphabet, or
    // (when odd) bytes from the input itself.
    let n = usize::from(input[0] >> 1) % 24 + 1;
    let rest = &input[1..];
    let (boundary, content): (Vec<u8>, &[u8]) = if input[0] & 1 == 1 && rest.len() > n {
        (rest[..n].to_vec(), &rest[n..])
    } else {
        (b"b1-xyzAB0".iter().copied().cycle().take(n).collect(), rest)
    };

    let mut parts = body::Parts::new();
    let span = Span::new(0, content.len());
    if body::split(content, span, &boundary, &mut parts).is_ok() {
        let mut last_end = 0;
        for p in &parts {
            assert!(p.headers.start <= p.headers.end && p.headers.end <= p.body.start);
            assert!(p.body.start <= p.body.end && p.body.end as usize <= content.len());
            if let Some(ct) = p.content_type {
                assert!(ct.start >= p.headers.start && ct.end <= p.headers.end);
            }
            if p.depth == 0 {
                assert!(p.headers.start >= last_end);
                last_end = p.body.end;
            }
        }
    }

    // The same body in a MESSAGE: parts, then a part added.
    let Ok(bstr) = std::str::from_utf8(&boundary) else {
        return;
    };
    if bstr
        .bytes()
        .any(|b| !b.is_ascii_alphanumeric() && b != b'-')
    {
        return;
    }
    let mut msg = format!(
        "MESSAGE sip:a@example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         To: <sip:a@example.net>\r\nFrom: <sip:b@example.net>;tag=1\r\nCall-ID: m\r\n\
         CSeq: 1 MESSAGE\r\nContent-Type: multipart/mixed;boundary=\"{bstr}\"\r\n\
         Content-Length: {}\r\n\r\n",
        content.len()
    )
    .into_bytes();
    msg.extend_from_slice(content);
    let Ok(m) = sip::parse_datagram(Bytes::from(msg), &Limits::default()) else {
        return;
    };
    let Ok(before) = m.body_parts() else {
        return;
    };
    let mut e = Editor::new(&m);
    e.add_body_part(&[("Content-Type", "text/plain")], b"added");
    let out = e.build();
    let big = Limits {
        max_message: 1 << 20,
        ..Limits::default()
    };
    let again = sip::parse_datagram(out, &big).expect("edited message parses");
    assert_eq!(again.content_length(), Some(again.body().len()));
    let after = match again.body_parts() {
        Ok(a) => a,
        // The splitter stops at 64 parts: a body already at the limit
        // cannot take one more.
        Err(body::BodyError::TooManyParts) if before.len() >= 64 => return,
        Err(e) => panic!("edited body does not split: {}", e.as_str()),
    };
    assert!(after.len() > before.len());
    for (i, p) in before.iter().enumerate() {
        assert_eq!(
            again.bytes_of(after[i].body),
            m.bytes_of(p.body),
            "part {i}"
        );
    }
});
