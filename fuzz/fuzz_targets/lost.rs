//! LoST documents: any bytes read as an ECRF's answer or a client's
//! request give a value or a typed error, never a panic; a mapping the
//! reader accepts has a SIP URI with nothing in it that could end a header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sosrouter::lost::{read_request, read_response, Limits, Response};

fuzz_target!(|input: &[u8]| {
    if let Ok(Response::Found(r)) = read_response(input) {
        let m = r.routable().expect("a response read has a routable mapping");
        for u in &m.uris {
            assert!(!u.bytes().any(|b| b < 0x21 || matches!(b, b'<' | b'>' | b'"')));
        }
    }
    let _ = read_request(input, &Limits::default());
});
