//! The datagram parser: parse, read every field the router reads, split the
//! body, then forward the message through an Editor and parse the result.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sosrouter::sip::{
    self, body, edit::Editor, HeaderName, Limits, Message, NameAddr, ParsePath, Uri,
};

fn touch_uri(u: &Uri<'_>) {
    let _ = u.user_unescaped();
    let _ = u.phone_digits().map(|d| d.as_str().len());
    let _ = u.phone_context();
    let _ = u.service_urn();
    let _ = u.param("transport");
    let _ = u.is_sip();
}

fn touch_name_addr(n: &NameAddr<'_>) {
    let _ = n.tag();
    let _ = n.param("purpose");
    if let Some(u) = n.uri() {
        touch_uri(&u);
    }
}

fn touch(m: &Message) {
    let _ = (m.method(), m.method_bytes(), m.status(), m.reason());
    if let Some(u) = m.request_uri() {
        touch_uri(&u);
    }
    for h in m.headers() {
        let _ = (m.name(h), m.value(h));
        assert!(h.value.start >= h.name_span.end && h.line.end as usize <= m.headers_end() + 2);
    }
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.sent_by());
        let _ = v.has_rfc3261_branch();
    }
    let _ = m.top_via();
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.content_length());
    for n in [m.from(), m.to(), m.caller()].into_iter().flatten() {
        touch_name_addr(&n);
    }
    for name in [
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::PAssertedIdentity,
        HeaderName::Geolocation,
        HeaderName::CallInfo,
    ] {
        for n in m.name_addrs(name).flatten() {
            touch_name_addr(&n);
        }
    }
    let _ = m.get_by_name("Geolocation-Routing");
    let _ = m.get_by_name("X-Unknown");
    if let Some(ct) = m.content_type() {
        let _ = (
            ct.boundary(),
            ct.is_multipart(),
            ct.is("application", "sdp"),
        );
    }
    // The body lies inside the buffer, after the headers.
    assert!(m.body_span().start as usize >= m.headers_end());
    assert!(m.body_span().end as usize <= m.buf().len());
    if let Ok(parts) = m.body_parts() {
        for p in &parts {
            assert!(p.body.start >= m.body_span().start && p.body.end <= m.body_span().end);
            assert!(p.headers.end <= p.body.start);
            let _ = body::part_media_type(m, p);
            let _ = body::is_pidf(m, p);
        }
        for g in m.name_addrs(HeaderName::Geolocation).flatten() {
            if let Some(cid) = g.uri_text.strip_prefix(b"cid:") {
                let _ = m.part_by_content_id(&parts, cid);
            }
        }
    }
}

fn forward(m: &Message, limits: &Limits) {
    let mut e = Editor::new(m);
    e.prepend_via(b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKfuzz");
    if m.is_request() {
        e.set_request_uri(&b"sip:sos@psap.example.gov"[..]);
        e.set_max_forwards(m.max_forwards().unwrap_or(70).saturating_sub(1));
        // One of ours, or the pair of a dialog across transports.
        if m.as_bytes().len() % 2 == 0 {
            e.remove_top_route();
            e.add_record_route(b"<sip:198.51.100.7;lr>");
        } else {
            e.remove_top_routes(2);
            e.add_record_route(b"<sip:198.51.100.7;transport=tcp;lr>");
            e.add_record_route(b"<sip:198.51.100.7;lr>");
        }
    }
    e.add_header("Resource-Priority", b"esnet.1");
    e.add_header_first(HeaderName::Geolocation, b"<cid:reg@sos.example>");
    e.add_body_part(
        &[
            ("Content-Type", "application/pidf+xml"),
            ("Content-ID", "<reg@sos.example>"),
        ],
        b"<presence/>",
    );
    let out = e.build();
    // The edits themselves are well-formed; what the router forwards stays
    // parseable and framed.
    let big = Limits {
        max_message: limits.max_message * 2,
        ..*limits
    };
    // An INVITE the router received with a fault in a header it passes on
    // goes out with that header as received: it must be received again the
    // same way (the edits may have removed the fault, never added one).
    let reparsed = if m.fault().is_some() {
        sip::receive(out.clone(), false, &big)
    } else {
        sip::parse_datagram(out.clone(), &big)
    };
    let again = match reparsed {
        Ok(a) => a,
        Err(err) => panic!(
            "edited message does not parse: {err}\n{:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(again.content_length(), Some(again.body().len()));
    assert_eq!(again.as_bytes().len(), out.len());
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.parse_path(), ParsePath::Fast);
    let _ = sip::build::response(m, None, 503, "Service Unavailable", Some("t"), &[], None);
    if m.is_request() {
        let _ = sip::build::cancel_for(m);
        let _ = sip::build::ack_for(m, &again);
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let bytes = Bytes::copy_from_slice(data);
    // Accessors on a message whose values were never checked.
    if let Ok(m) = sip::index_datagram(bytes.clone(), &limits) {
        touch(&m);
    }
    let received = sip::receive(bytes.clone(), false, &limits);
    let full = sip::parse_datagram(bytes, &limits);
    // The full check accepts exactly what the receive path accepts with no
    // fault, and refuses with the fault the receive path recorded.
    match (&received, &full) {
        (Ok(r), Ok(_)) => assert!(r.fault().is_none()),
        (Ok(r), Err(e)) => assert_eq!(r.fault(), Some(e)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("receive refused what the full check accepts: {e}"),
    }
    match received {
        Ok(m) => {
            touch(&m);
            forward(&m, &limits);
        }
        Err(e) => {
            let _ = (e.status(), e.kind(), e.reason());
        }
    }
});
