//! Forwarding edits on corpus messages, compared with golden outputs in
//! `tests/golden/`, then re-parsed: Content-Length right, every header the
//! edits did not touch still there byte for byte and in order, body parts
//! intact.
//!
//! `SIP_GOLDEN_UPDATE=1 cargo test --test sip_edit` rewrites the golden
//! files; review their diff before committing them.

use std::path::PathBuf;

use bytes::Bytes;
use sosrouter::sip::{
    self, body, edit::Editor, full, HeaderName, Limits, Message, Method, ParsePath,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn parse(data: &[u8]) -> Message {
    sip::parse_datagram(Bytes::copy_from_slice(data), &Limits::default())
        .unwrap_or_else(|e| panic!("does not parse: {e}"))
}

const OUR_VIA: &[u8] = b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKsos-e1";
const OUR_RR: &[u8] = b"<sip:198.51.100.7:5060;lr>";
const PSAP_URI: &str = "sip:sos@psap1.example.gov";
const CALL_INFO: &[u8] =
    b"<urn:emergency:uid:callid:e1:sosrouter.example.net>;purpose=emergency-CallId";
const RES_PRIO: &[u8] = b"esnet.1";
const REG_CID: &str = "reg-loc@sosrouter.example.net";

/// A registered-address PIDF-LO, as the router adds it.
const PIDF: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
    xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\"\r\n\
    xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\"\r\n\
    entity=\"pres:+16175550123@example.com\">\r\n\
  <tuple id=\"reg\">\r\n\
    <status><gp:geopriv><gp:location-info>\r\n\
      <ca:civicAddress><ca:country>US</ca:country><ca:A1>MA</ca:A1>\r\n\
        <ca:A3>Boston</ca:A3><ca:RD>Boylston</ca:RD><ca:STS>St</ca:STS>\r\n\
        <ca:HNO>700</ca:HNO><ca:PC>02116</ca:PC></ca:civicAddress>\r\n\
    </gp:location-info><gp:method>Registered</gp:method></gp:geopriv></status>\r\n\
  </tuple>\r\n\
</presence>\r\n";

/// What an edit does, so the checks know what to expect.
#[derive(Default)]
struct Does {
    via: bool,
    ruri: bool,
    max_forwards: Option<u32>,
    drop_route: bool,
    record_route: bool,
    headers: bool,
    pidf: bool,
    drop_via: bool,
}

struct Case {
    golden: &'static str,
    source: &'static str,
    does: Does,
}

fn cases() -> Vec<Case> {
    let forward = |mf| Does {
        via: true,
        max_forwards: Some(mf),
        ..Default::default()
    };
    vec![
        Case {
            golden: "c01-forward-pidf.sip",
            source: "emergency-invites/c01-us-civic-cid.sip",
            does: Does {
                via: true,
                ruri: true,
                max_forwards: Some(69),
                record_route: true,
                headers: true,
                pidf: true,
                ..Default::default()
            },
        },
        Case {
            golden: "c04-forward-pidf.sip",
            source: "emergency-invites/c04-us-no-location.sip",
            does: Does {
                via: true,
                ruri: true,
                max_forwards: Some(69),
                record_route: true,
                headers: true,
                pidf: true,
                ..Default::default()
            },
        },
        Case {
            golden: "mpart01-forward.sip",
            source: "torture/mpart01.sip",
            does: Does {
                drop_route: true,
                record_route: true,
                ..forward(69)
            },
        },
        Case {
            golden: "wsinv-forward.sip",
            source: "torture/wsinv.sip",
            does: Does {
                ruri: true,
                drop_route: true,
                ..forward(67)
            },
        },
        Case {
            golden: "longreq-forward.sip",
            source: "torture/longreq.sip",
            does: forward(69),
        },
        Case {
            golden: "inv2543-forward.sip",
            source: "torture/inv2543.sip",
            does: Does {
                record_route: true,
                ..forward(70)
            },
        },
        Case {
            golden: "dblreq-forward.sip",
            source: "torture/dblreq.sip",
            does: forward(7),
        },
        Case {
            golden: "esc02-forward.sip",
            source: "torture/esc02.sip",
            does: Does {
                headers: true,
                ..forward(69)
            },
        },
        Case {
            golden: "bcast-upstream.sip",
            source: "torture/bcast.sip",
            does: Does {
                drop_via: true,
                ..Default::default()
            },
        },
    ]
}

fn apply(m: &Message, d: &Does) -> Bytes {
    let mut e = Editor::new(m);
    if d.via {
        e.prepend_via(OUR_VIA);
    }
    if d.ruri {
        e.set_request_uri(PSAP_URI);
    }
    if let Some(mf) = d.max_forwards {
        e.set_max_forwards(mf);
    }
    if d.drop_route {
        e.remove_top_route();
    }
    if d.record_route {
        e.add_record_route(OUR_RR);
    }
    if d.headers {
        e.add_header("Resource-Priority", RES_PRIO);
        e.add_header("Call-Info", CALL_INFO);
    }
    if d.pidf {
        e.add_header_first(
            HeaderName::Geolocation,
            format!("<cid:{REG_CID}>").as_bytes(),
        );
        e.add_body_part(
            &[
                ("Content-Type", "application/pidf+xml"),
                ("Content-ID", &format!("<{REG_CID}>")),
            ],
            PIDF,
        );
    }
    if d.drop_via {
        e.remove_top_via();
    }
    e.build()
}

fn golden(name: &str, out: &[u8]) {
    let path = root().join("golden").join(name);
    if std::env::var_os("SIP_GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, out).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out == &want[..],
        "{name}: differs from the golden file\n--- got\n{}\n--- golden\n{}",
        String::from_utf8_lossy(out),
        String::from_utf8_lossy(&want)
    );
}

/// Header lines that an edit may change or remove.
fn touched(d: &Does) -> Vec<HeaderName> {
    let mut v = vec![HeaderName::ContentLength];
    if d.max_forwards.is_some() {
        v.push(HeaderName::MaxForwards);
    }
    if d.drop_route {
        v.push(HeaderName::Route);
    }
    if d.drop_via {
        v.push(HeaderName::Via);
    }
    if d.pidf {
        v.push(HeaderName::ContentType);
    }
    v
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn check(case: &Case, orig: &Message, out: &[u8]) {
    let name = case.golden;
    let d = &case.does;
    let m = parse(out);
    assert_eq!(
        m.parse_path(),
        ParsePath::Fast,
        "{name}: output has no folds"
    );
    assert_eq!(m.as_bytes(), out, "{name}: nothing after the body");
    assert_eq!(
        m.content_length(),
        Some(m.body().len()),
        "{name}: Content-Length"
    );
    // Header lines nobody asked to change: same bytes, same order.
    let skip = touched(d);
    let mut cursor = m.start_line().end as usize;
    for h in orig.headers() {
        if skip.contains(&h.name) {
            continue;
        }
        let line = orig.bytes_of(h.line);
        match find(out, line, cursor) {
            Some(at) if at < m.headers_end() => cursor = at + line.len(),
            _ => panic!(
                "{name}: header line {:?} missing or out of order",
                String::from_utf8_lossy(line)
            ),
        }
    }
    // Start line.
    if m.is_request() {
        assert_eq!(m.method_bytes(), orig.method_bytes());
        let want_uri = if d.ruri {
            PSAP_URI.as_bytes()
        } else {
            orig.request_uri_bytes()
        };
        assert_eq!(m.request_uri_bytes(), want_uri, "{name}: R-URI");
    } else {
        assert_eq!(m.bytes_of(m.start_line()), orig.bytes_of(orig.start_line()));
    }
    // Via.
    let n_orig = orig.vias().count();
    let n = m.vias().count();
    assert!(m.vias().all(|v| v.is_some()), "{name}: Via parses");
    if d.via {
        assert_eq!(n, n_orig + 1, "{name}: Via count");
        assert_eq!(m.list(HeaderName::Via).next(), Some(OUR_VIA));
        assert_eq!(
            m.list(HeaderName::Via).skip(1).collect::<Vec<_>>(),
            orig.list(HeaderName::Via).collect::<Vec<_>>()
        );
    } else if d.drop_via {
        assert_eq!(n, n_orig - 1, "{name}: Via count");
        assert_eq!(
            m.list(HeaderName::Via).collect::<Vec<_>>(),
            orig.list(HeaderName::Via).skip(1).collect::<Vec<_>>()
        );
    } else {
        assert_eq!(n, n_orig);
    }
    if let Some(mf) = d.max_forwards {
        assert_eq!(m.max_forwards(), Some(mf), "{name}: Max-Forwards");
        assert_eq!(m.all(HeaderName::MaxForwards).count(), 1);
    }
    let routes = |x: &Message| {
        x.list(HeaderName::Route)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    if d.drop_route {
        assert_eq!(routes(&m), routes(orig)[1..].to_vec(), "{name}: Route");
    } else {
        assert_eq!(routes(&m), routes(orig), "{name}: Route");
    }
    if d.record_route {
        assert_eq!(m.list(HeaderName::RecordRoute).next(), Some(OUR_RR));
        assert_eq!(
            m.list(HeaderName::RecordRoute).count(),
            orig.list(HeaderName::RecordRoute).count() + 1
        );
    }
    if d.headers {
        assert_eq!(m.get(HeaderName::ResourcePriority), Some(RES_PRIO));
        assert_eq!(m.list(HeaderName::CallInfo).last(), Some(CALL_INFO));
    }
    // The dialog and transaction identifiers are untouched.
    assert_eq!(m.call_id(), orig.call_id());
    assert_eq!(m.cseq(), orig.cseq());
    assert_eq!(m.get(HeaderName::From), orig.get(HeaderName::From));
    assert_eq!(m.get(HeaderName::To), orig.get(HeaderName::To));
    check_body(case, orig, &m);
}

fn check_body(case: &Case, orig: &Message, m: &Message) {
    let name = case.golden;
    let before = orig.body_parts().unwrap();
    let after = m.body_parts().unwrap();
    if !case.does.pidf {
        assert_eq!(m.body(), orig.body(), "{name}: body");
        assert_eq!(
            m.get(HeaderName::ContentType),
            orig.get(HeaderName::ContentType)
        );
        assert_eq!(after.len(), before.len());
    }
    // Every original part, headers and content, byte for byte and in order.
    for (i, p) in before.iter().enumerate() {
        let q = after[i];
        assert_eq!(
            m.bytes_of(q.headers),
            orig.bytes_of(p.headers),
            "{name}: part {i}"
        );
        assert_eq!(
            m.bytes_of(q.body),
            orig.bytes_of(p.body),
            "{name}: part {i}"
        );
    }
    if !case.does.pidf {
        return;
    }
    assert!(m.content_type().unwrap().is("multipart", "mixed"));
    let geo: Vec<&[u8]> = m.list(HeaderName::Geolocation).collect();
    let ours = format!("<cid:{REG_CID}>");
    assert_eq!(geo[0], ours.as_bytes(), "{name}: our Geolocation first");
    assert_eq!(
        geo[1..].to_vec(),
        orig.list(HeaderName::Geolocation).collect::<Vec<_>>()
    );
    let added = *after.last().unwrap();
    assert!(body::is_pidf(m, &added), "{name}: new part is PIDF");
    assert_eq!(m.bytes_of(added.body), PIDF, "{name}: PIDF bytes");
    let cid = ours.trim_start_matches("<cid:").trim_end_matches('>');
    assert_eq!(m.part_by_content_id(&after, cid.as_bytes()), Some(added));
    if before.is_empty() {
        // A single body becomes the first part, with its Content-Type.
        assert_eq!(after.len(), 2, "{name}");
        assert_eq!(
            m.bytes_of(after[0].body),
            orig.body(),
            "{name}: wrapped body"
        );
        assert_eq!(
            m.bytes_of(after[0].content_type.unwrap()),
            orig.get(HeaderName::ContentType).unwrap()
        );
    } else {
        assert_eq!(after.len(), before.len() + 1, "{name}");
        // The message's Content-Type, boundary included, is kept.
        assert_eq!(
            m.get(HeaderName::ContentType),
            orig.get(HeaderName::ContentType)
        );
    }
}

#[test]
fn forwarding_edits_match_golden_outputs_and_reparse() {
    for case in cases() {
        let data = std::fs::read(root().join("corpus").join(case.source)).unwrap();
        let orig = parse(&data);
        let out = apply(&orig, &case.does);
        golden(case.golden, &out);
        check(&case, &orig, &out);
    }
}

/// Every golden file has a case (no stale outputs are kept).
#[test]
fn no_stale_golden_files() {
    let names: Vec<String> = cases().iter().map(|c| c.golden.to_string()).collect();
    for e in std::fs::read_dir(root().join("golden")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if !n.ends_with(".sip") {
            continue;
        }
        assert!(names.contains(&n), "golden/{n} has no case");
    }
}

/// An editor with no edits gives the message back as received (for a
/// fast-path message that has a Content-Length).
#[test]
fn no_edits_is_the_identity() {
    for src in [
        "emergency-invites/c01-us-civic-cid.sip",
        "emergency-invites/c10-eu-112-de.sip",
        "torture/mpart01.sip",
        "torture/intmeth.sip",
        "torture/unreason.sip",
    ] {
        let data = std::fs::read(root().join("corpus").join(src)).unwrap();
        let m = parse(&data);
        assert_eq!(&Editor::new(&m).build()[..], &data[..], "{src}");
    }
    // A folded message comes back unfolded.
    let data = std::fs::read(root().join("corpus/torture/esc01.sip")).unwrap();
    let m = parse(&data);
    assert_eq!(Editor::new(&m).build(), full::unfold(&data));
}

/// Responses and ACK/CANCEL built from edited requests still carry the
/// request's identifiers.
#[test]
fn built_messages_from_a_forwarded_request() {
    let data = std::fs::read(root().join("corpus/emergency-invites/c01-us-civic-cid.sip")).unwrap();
    let orig = parse(&data);
    let fwd = parse(&apply(
        &orig,
        &Does {
            via: true,
            ruri: true,
            max_forwards: Some(69),
            ..Default::default()
        },
    ));
    let resp = parse(&sip::build::response(
        &fwd,
        None,
        486,
        "Busy Here",
        Some("psap-1"),
        &[],
        None,
    ));
    assert_eq!(resp.status(), Some(486));
    assert_eq!(resp.vias().count(), 2);
    assert_eq!(
        resp.top_via().unwrap().branch(),
        Some(&b"z9hG4bKsos-e1"[..])
    );
    assert_eq!(resp.call_id(), orig.call_id());
    assert_eq!(resp.to().unwrap().tag(), Some(&b"psap-1"[..]));
    // Upstream, the router drops its own Via.
    let mut e = Editor::new(&resp);
    e.remove_top_via();
    let up = parse(&e.build());
    assert_eq!(
        up.list(HeaderName::Via).collect::<Vec<_>>(),
        orig.list(HeaderName::Via).collect::<Vec<_>>()
    );
    let ack = parse(&sip::build::ack_for(&fwd, &resp));
    assert_eq!(ack.method(), Method::Ack);
    assert_eq!(ack.request_uri_bytes(), PSAP_URI.as_bytes());
    assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bKsos-e1"[..]));
    assert_eq!(ack.cseq().unwrap().seq, 1);
    let cancel = parse(&sip::build::cancel_for(&fwd));
    assert_eq!(cancel.method(), Method::Cancel);
    assert_eq!(cancel.cseq().unwrap().method, b"CANCEL");
}
