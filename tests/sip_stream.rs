//! Stream framing: every valid corpus message, and every emergency INVITE,
//! fed as TCP stream bytes.

use std::path::PathBuf;

use bytes::Bytes;
use sosrouter::sip::{self, Limits, Message, ParseError, Status};

fn corpus(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(sub)
}

/// The valid and valid-but-odd torture messages (from the manifest) and the
/// emergency INVITEs, with their bytes.
fn messages() -> Vec<(String, Vec<u8>)> {
    let dir = corpus("torture");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut out = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() > 2 && cols[2] != "invalid" {
            out.push((
                cols[0].to_string(),
                std::fs::read(dir.join(cols[0])).unwrap(),
            ));
        }
    }
    assert_eq!(out.len(), 38, "valid torture messages");
    let dir = corpus("emergency-invites");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 14, "emergency INVITEs");
    for n in names {
        let data = std::fs::read(dir.join(&n)).unwrap();
        out.push((n, data));
    }
    out
}

/// What a parsed message's bytes are: the received bytes, or for folded
/// headers the unfolded text the full path indexes.
fn as_parsed(m: &Message, received: &[u8]) -> Vec<u8> {
    match m.parse_path() {
        sip::ParsePath::Fast => received.to_vec(),
        sip::ParsePath::Full => sip::full::unfold(received).to_vec(),
    }
}

#[track_caller]
fn same_bytes(what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{what}: got {:?}\nwant {:?}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

fn header_end(data: &[u8]) -> usize {
    data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
}

/// How many bytes the message takes on a stream. Each file holds exactly
/// one message but for two: dblreq has an INVITE-looking tail after its
/// zero-length body, and inv2543 has no Content-Length, which on a stream
/// means no body (RFC 3261 section 18.3 makes it mandatory there).
fn stream_len(name: &str, data: &[u8]) -> usize {
    match name {
        "dblreq.sip" | "inv2543.sip" => header_end(data),
        _ => data.len(),
    }
}

fn limits() -> Limits {
    Limits::default()
}

fn stream(buf: &[u8]) -> Result<Status<Message>, ParseError> {
    sip::parse_stream(&Bytes::copy_from_slice(buf), &limits())
}

#[test]
fn the_special_lengths_are_what_the_files_say() {
    let msgs = messages();
    let get = |n: &str| msgs.iter().find(|m| m.0 == n).unwrap().1.clone();
    let dbl = get("dblreq.sip");
    assert_eq!(stream_len("dblreq.sip", &dbl), 300);
    assert!(dbl[300..].starts_with(b"\r\nINVITE "));
    let inv = get("inv2543.sip");
    assert!(!String::from_utf8_lossy(&inv).contains("Content-Length"));
}

#[test]
fn every_strict_prefix_is_partial_and_the_whole_is_complete() {
    for (name, data) in messages() {
        let len = stream_len(&name, &data);
        let msg = &data[..len];
        for cut in 0..len {
            match stream(&msg[..cut]) {
                Ok(Status::Partial) => {}
                Ok(Status::Complete(_, n)) => {
                    panic!("{name}: prefix of {cut} bytes complete ({n} consumed)")
                }
                Err(e) => panic!("{name}: prefix of {cut} bytes: {e}"),
            }
        }
        match stream(msg) {
            Ok(Status::Complete(m, n)) => {
                assert_eq!(n, len, "{name}: consumed");
                same_bytes(&name, m.as_bytes(), &as_parsed(&m, msg));
            }
            other => panic!("{name}: whole message: {other:?}"),
        }
        // Whatever follows does not change the first message.
        let mut more = data.clone();
        more.extend_from_slice(b"OPTIONS sip:x@y SIP/2.0\r\n");
        match stream(&more) {
            Ok(Status::Complete(_, n)) => assert_eq!(n, len, "{name}: with a tail"),
            other => panic!("{name}: with a tail: {other:?}"),
        }
    }
}

/// Framing alone agrees with the parser on every prefix.
#[test]
fn frame_stream_agrees_with_parse_stream() {
    for (name, data) in messages() {
        let len = stream_len(&name, &data);
        for cut in [0, 1, len / 3, len / 2, len - 1, len] {
            let framed = sip::frame_stream(&data[..cut], &limits()).unwrap();
            let parsed = stream(&data[..cut]).unwrap();
            match (framed, parsed) {
                (Status::Partial, Status::Partial) => {}
                (Status::Complete((), a), Status::Complete(_, b)) => assert_eq!(a, b),
                (f, p) => panic!("{name} at {cut}: frame {f:?} parse {p:?}"),
            }
        }
    }
}

/// A reader loop: bytes arrive in chunks, whole messages are taken off the
/// front of the buffer as they complete.
fn read_all(input: &[u8], chunk: usize) -> (Vec<Message>, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match stream(&buf) {
                Ok(Status::Complete(m, n)) => {
                    out.push(m);
                    buf.drain(..n);
                }
                Ok(Status::Partial) => break,
                Err(e) => panic!("stream error: {e}"),
            }
        }
    }
    (out, buf)
}

#[test]
fn messages_back_to_back_with_keepalives_come_out_in_order() {
    let msgs = messages();
    // Every message followed by the next one, CRLF keep-alives around them.
    let mut input = b"\r\n\r\n".to_vec();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, (name, data)) in msgs.iter().enumerate() {
        let msg = &data[..stream_len(name, data)];
        input.extend_from_slice(msg);
        input.extend_from_slice(&b"\r\n\r\n\r\n"[..2 * (i % 3)]);
        let m = sip::parse_datagram(Bytes::copy_from_slice(msg), &limits()).unwrap();
        want.push((m.call_id().unwrap().to_vec(), as_parsed(&m, msg)));
    }
    input.extend_from_slice(b"\r\n");
    for chunk in [1, 2, 7, 64, 536, 1500, input.len()] {
        let (got, rest) = read_all(&input, chunk);
        assert_eq!(got.len(), want.len(), "chunk {chunk}");
        for (m, (call_id, bytes)) in got.iter().zip(&want) {
            assert_eq!(m.call_id().unwrap(), &call_id[..], "chunk {chunk}");
            same_bytes(&format!("chunk {chunk}"), m.as_bytes(), bytes);
        }
        // Only keep-alive bytes are left over.
        assert!(
            rest.iter().all(|&b| b == b'\r' || b == b'\n'),
            "chunk {chunk}"
        );
    }
}

#[test]
fn keepalives_alone_are_partial() {
    for ka in [&b""[..], b"\r\n", b"\r\n\r\n", b"\n", b"\r\n\r\n\r\n\r\n"] {
        assert!(matches!(stream(ka), Ok(Status::Partial)), "{ka:?}");
    }
}

/// A request with a body of `n` bytes and `extra` bytes of padding in a
/// header, for size tests.
fn sized(n: usize, pad: usize) -> Vec<u8> {
    let mut m = format!(
        "MESSAGE sip:psap@example.net SIP/2.0\r\n\
         Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKsize\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:psap@example.net>\r\n\
         From: <sip:+12125550142@example.com>;tag=s1\r\n\
         Call-ID: size-{n}@192.0.2.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         X-Pad: {}\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {n}\r\n\r\n",
        "p".repeat(pad)
    )
    .into_bytes();
    m.extend((0..n).map(|i| b'a' + (i % 26) as u8));
    m
}

/// A message of exactly `total` bytes with a body of about `body` bytes.
fn exactly(total: usize, body: usize) -> Vec<u8> {
    let base = sized(body, 0).len();
    assert!(base <= total);
    let m = sized(body, total - base);
    assert_eq!(m.len(), total);
    m
}

#[test]
fn content_length_beyond_the_limit_is_rejected_at_once() {
    let max = limits().max_message;
    assert_eq!(max, 64 * 1024);
    for cl in [max, max + 1, 70_000, 1 << 20, u32::MAX as usize] {
        let mut m = sized(0, 0);
        let text = String::from_utf8(m.clone()).unwrap();
        m = text
            .replace("Content-Length: 0", &format!("Content-Length: {cl}"))
            .into_bytes();
        // Only the headers and a few body bytes have arrived.
        m.extend_from_slice(b"hello");
        let e = match stream(&m) {
            Err(e) => e,
            Ok(s) => panic!("Content-Length {cl}: {s:?}"),
        };
        assert_eq!(e, ParseError::MessageTooLarge, "Content-Length {cl}");
        assert_eq!(e.status(), 513);
        assert_eq!(
            sip::frame_stream(&m, &limits()).unwrap_err(),
            ParseError::MessageTooLarge
        );
    }
    // Past u32: not a length at all.
    let text = String::from_utf8(sized(0, 0)).unwrap();
    let m = text.replace("Content-Length: 0", "Content-Length: 4294967296");
    assert_eq!(
        stream(m.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
}

#[test]
fn a_message_of_exactly_the_limit_is_accepted() {
    let max = limits().max_message;
    let m = exactly(max, 60_000);
    let hdr = header_end(&m);
    // Partial until the last byte, then complete.
    for cut in [hdr, max / 2, max - 1] {
        assert!(matches!(stream(&m[..cut]), Ok(Status::Partial)), "{cut}");
    }
    match stream(&m) {
        Ok(Status::Complete(msg, n)) => {
            assert_eq!(n, max);
            assert_eq!(msg.body().len(), m.len() - hdr);
            assert_eq!(msg.content_length(), Some(m.len() - hdr));
        }
        other => panic!("{other:?}"),
    }
    // Keep-alives before it do not count against the limit.
    let mut with_ka = b"\r\n\r\n".to_vec();
    with_ka.extend_from_slice(&m);
    assert!(matches!(stream(&with_ka), Ok(Status::Complete(_, n)) if n == max + 4));
    // One byte more is too large, on a stream and as a datagram.
    let over = exactly(max + 1, 60_000);
    assert_eq!(stream(&over).unwrap_err(), ParseError::MessageTooLarge);
    let d = sip::parse_datagram(Bytes::from(over), &limits());
    assert_eq!(d.unwrap_err(), ParseError::MessageTooLarge);
    let d = sip::parse_datagram(Bytes::from(m), &limits()).unwrap();
    assert_eq!(d.as_bytes().len(), max);
}

#[test]
fn a_60_kb_body_is_accepted() {
    let m = sized(60_000, 0);
    let hdr = header_end(&m);
    assert!(matches!(stream(&m[..hdr + 59_999]), Ok(Status::Partial)));
    match stream(&m) {
        Ok(Status::Complete(msg, n)) => {
            assert_eq!(n, m.len());
            assert_eq!(msg.body().len(), 60_000);
            assert_eq!(&msg.body()[..3], b"abc");
            assert_eq!(msg.call_id(), Some(&b"size-60000@192.0.2.1"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn endless_headers_are_rejected_once_past_the_limit() {
    let mut m = b"OPTIONS sip:x@example.net SIP/2.0\r\n".to_vec();
    while m.len() <= limits().max_message {
        m.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    assert_eq!(stream(&m).unwrap_err(), ParseError::MessageTooLarge);
    // One line with no end in sight.
    let line = vec![b'a'; limits().max_message + 10];
    assert!(stream(&line).is_err());
}

#[test]
fn a_bad_message_on_a_stream_is_an_error_not_a_wait() {
    // Conflicting Content-Length values are a framing error.
    let text = String::from_utf8(sized(5, 0)).unwrap();
    let two = text.replace("Content-Length: 5\r\n", "Content-Length: 5\r\nl: 7\r\n");
    assert_eq!(
        stream(two.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
    let neg = text.replace("Content-Length: 5", "Content-Length: -5");
    assert_eq!(
        stream(neg.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
}
