//! The stream parser: the same bytes whole, and split at a point the fuzzer
//! chooses, must give the same messages; a strict prefix of a complete
//! message is never complete and never an error.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sosrouter::sip::{self, Limits, Status};

/// Where the empty line after the headers ends, in the bytes as received.
fn end_of_headers(data: &[u8]) -> Option<usize> {
    let mut pos = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let mut first = true;
    while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
        let line = &data[pos..pos + nl];
        pos += nl + 1;
        if !first && (line.is_empty() || line == b"\r") {
            return Some(pos);
        }
        first = false;
    }
    None
}

/// Takes whole messages off the front of `buf`; the first error ends it.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>, limits: &Limits) -> Result<(), ()> {
    loop {
        match sip::parse_stream(&Bytes::copy_from_slice(buf), limits) {
            Ok(Status::Complete(m, n)) => {
                assert!(n > 0 && n <= buf.len());
                out.push(m.as_bytes().to_vec());
                buf.drain(..n);
            }
            Ok(Status::Partial) => return Ok(()),
            Err(_) => return Err(()),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let limits = Limits {
        max_message: 4096,
        max_headers: 64,
        max_line: 1024,
    };
    let split = usize::from(u16::from_le_bytes([input[0], input[1]]));
    let data = &input[2..];
    let split = split % (data.len() + 1);

    // The first message: every prefix agrees with the whole.
    let whole = sip::parse_stream(&Bytes::copy_from_slice(data), &limits);
    let framed = sip::frame_stream(data, &limits);
    if let Ok(Status::Complete(m, n)) = &whole {
        assert!(matches!(framed, Ok(Status::Complete((), f)) if f == *n));
        // What was consumed is exactly the headers and the message's body:
        // framing and parsing agree on the length.
        let headers = end_of_headers(data).expect("complete message has an end of headers");
        assert_eq!(*n, headers + m.body().len(), "consumed vs headers + body");
        assert_eq!(m.content_length().unwrap_or(0), m.body().len());
        let prefix = sip::parse_stream(&Bytes::copy_from_slice(&data[..split]), &limits);
        if split < *n {
            assert!(
                matches!(prefix, Ok(Status::Partial)),
                "prefix {split} of {n}"
            );
        } else {
            assert!(matches!(prefix, Ok(Status::Complete(_, p)) if p == *n));
        }
    }
    if let Ok(Status::Partial) = &whole {
        assert!(matches!(framed, Ok(Status::Partial)));
    }

    // All messages: in one piece, and in two pieces cut at `split`.
    let mut one = Vec::new();
    let mut buf = data.to_vec();
    let r1 = drain(&mut buf, &mut one, &limits);
    let mut two = Vec::new();
    let mut buf2 = data[..split].to_vec();
    let mut r2 = drain(&mut buf2, &mut two, &limits);
    if r2.is_ok() {
        buf2.extend_from_slice(&data[split..]);
        r2 = drain(&mut buf2, &mut two, &limits);
    }
    assert_eq!(one, two);
    assert_eq!(r1, r2);
    if r1.is_ok() {
        assert_eq!(buf, buf2);
    }
});
