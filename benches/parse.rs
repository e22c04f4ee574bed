//! The same message bytes through three parsers:
//!
//! - `fast`: `sip::index_datagram` (framing, start line, header index) plus
//!   reading the fields the router routes on, each parsed when read (top
//!   Via branch, Call-ID, CSeq, caller number from P-Asserted-Identity or
//!   From, request-URI user, Content-Type boundary, Geolocation values);
//! - `fast-index`: `sip::index_datagram` alone: framing, start line and
//!   header index, the step that compares with httparse's tokenizing;
//! - `fast-checked`: `sip::parse_datagram`, which also runs every check the
//!   proxy runs on receipt (`check_transaction` and `check_strict`), plus
//!   the same fields;
//! - `receive`: `sip::receive`, the router's own receive path for a
//!   datagram (index, both tiers of checks, an INVITE kept with its fault),
//!   plus the same fields: what the router runs per message it receives;
//! - `rsip`: `rsip::SipMessage::try_from`, rsip's parse into owned header
//!   text;
//! - `rsip-fields`: the same, plus the same fields through rsip's typed
//!   headers (what the router would do with rsip as its parser);
//! - `httparse`: the header block with its start line replaced by
//!   `GET / HTTP/1.1`, as the floor for tokenizing header lines.
//!
//! `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`
//!
//! With `PARSE_COUNT=n` set, the binary runs no benchmark: it runs the
//! `receive` row `n` times on each message (or on the one named by
//! `PARSE_MESSAGE`) inside `receive_loop`, for an instruction count that
//! does not depend on the machine's load:
//!
//! ```text
//! bin=$(cargo bench --bench parse --no-run 2>&1 | grep -o '/[^ )]*/deps/parse-[0-9a-f]*')
//! PARSE_COUNT=10000 PARSE_MESSAGE=emergency-c01 valgrind --tool=callgrind \
//!     --toggle-collect='*receive_loop*' --callgrind-out-file=/dev/null "$bin"
//! ```
//!
//! callgrind's `Collected` figure divided by `n` is the instructions per
//! message.
//!
//! With `PARSE_CLOCK=cpu` set, criterion times the thread's CPU time instead
//! of the wall clock: on a machine shared with other work the time spent
//! waiting for a core is then left out, and runs of two builds can be
//! compared while the machine is busy.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use sosrouter::sip::{self, HeaderName, Limits, Message};

const PLAIN_INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePhone/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 149\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 138\r\n\
\r\n\
v=0\r\n\
o=bob 2808844564 2808844564 IN IP4 biloxi.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const ACK: &[u8] = b"ACK sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds9\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\
\r\n";

const EMERGENCY: &[u8] = include_bytes!("../tests/corpus/emergency-invites/c01-us-civic-cid.sip");

/// The fields the router routes on, folded into a number so none of the
/// work can be dropped.
fn routing_fields(m: &Message) -> usize {
    let mut acc = 0;
    if let Some(b) = m.top_via().and_then(|v| v.branch()) {
        acc += b.len();
    }
    acc += m.call_id().map_or(0, <[u8]>::len);
    if let Some(c) = m.cseq() {
        acc += c.seq as usize + c.method.len();
    }
    if let Some(d) = m
        .caller()
        .and_then(|c| c.uri())
        .and_then(|u| u.phone_digits())
    {
        acc += d.as_str().len();
    }
    if let Some(u) = m.request_uri().and_then(|u| u.user) {
        acc += u.len();
    }
    if let Some(b) = m.content_type().and_then(|c| c.boundary()) {
        acc += b.len();
    }
    for g in m.name_addrs(HeaderName::Geolocation).flatten() {
        acc += g.uri_text.len();
    }
    acc
}

fn fast(data: &'static [u8], limits: &Limits) -> usize {
    let m = sip::index_datagram(Bytes::from_static(data), limits).expect("parses");
    routing_fields(&m)
}

fn fast_index(data: &'static [u8], limits: &Limits) -> usize {
    let m = sip::index_datagram(Bytes::from_static(data), limits).expect("parses");
    m.headers().len()
}

fn fast_checked(data: &'static [u8], limits: &Limits) -> usize {
    let m = sip::parse_datagram(Bytes::from_static(data), limits).expect("parses");
    routing_fields(&m)
}

/// What the router runs on a datagram it receives (`transport::
/// parse_received` calls `sip::receive`), then the fields it routes on.
fn receive(data: &'static [u8], limits: &Limits) -> usize {
    let m = sip::receive(Bytes::from_static(data), false, limits).expect("parses");
    routing_fields(&m)
}

/// The `receive` row `n` times, as one function callgrind can count alone.
#[inline(never)]
fn receive_loop(data: &'static [u8], n: u64, limits: &Limits) -> usize {
    let mut acc = 0;
    for _ in 0..n {
        acc += receive(black_box(data), limits);
    }
    acc
}

/// rsip's parse plus the same fields through its typed headers. rsip has
/// no P-Asserted-Identity or Geolocation type: those are read as text from
/// its untyped headers and the caller's URI is then parsed by rsip.
fn rsip_fields(data: &[u8]) -> usize {
    use rsip::headers::ToTypedHeader;
    use rsip::headers::UntypedHeader;
    use rsip::message::{HasHeaders, HeadersExt};
    let msg = rsip::SipMessage::try_from(data).expect("rsip parses");
    let mut acc = 0;
    if let Some(b) = msg
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string()))
    {
        acc += b.len();
    }
    acc += msg.call_id_header().map_or(0, |c| c.to_string().len());
    if let Some(c) = msg.cseq_header().ok().and_then(|c| c.typed().ok()) {
        acc += c.seq as usize + c.method.to_string().len();
    }
    let mut pai = None;
    let mut geo = 0;
    for h in msg.headers().iter() {
        if let rsip::Header::Other(name, value) = h {
            if name.eq_ignore_ascii_case("P-Asserted-Identity") && pai.is_none() {
                pai = Some(value.clone());
            } else if name.eq_ignore_ascii_case("Geolocation") {
                geo += value.len();
            }
        }
    }
    let caller = match pai {
        Some(p) => rsip::headers::From::new(p).typed().ok().map(|f| f.uri),
        None => msg
            .from_header()
            .ok()
            .and_then(|f| f.typed().ok())
            .map(|f| f.uri),
    };
    if let Some(user) = caller.as_ref().and_then(|u| u.user()) {
        acc += user.len();
    }
    if let rsip::SipMessage::Request(r) = &msg {
        acc += r.uri.user().map_or(0, str::len);
    }
    if let Some(ct) = msg.headers().iter().find_map(|h| match h {
        rsip::Header::ContentType(c) => c.typed().ok(),
        _ => None,
    }) {
        let rsip::headers::typed::ContentType(media) = ct;
        if let rsip::headers::typed::MediaType::Other(_, params) = media {
            acc += params
                .iter()
                .find(|p| p.0.eq_ignore_ascii_case("boundary"))
                .map_or(0, |p| p.1.len());
        }
    }
    acc + geo
}

/// The header block as an HTTP/1.1 request: same header lines, start line
/// replaced.
fn as_http(data: &[u8]) -> Vec<u8> {
    let first = data.windows(2).position(|w| w == b"\r\n").unwrap();
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut out = b"GET / HTTP/1.1".to_vec();
    out.extend_from_slice(&data[first..end]);
    out
}

fn httparse_headers(data: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n + req.headers.len(),
        other => panic!("httparse: {other:?}"),
    }
}

/// The messages of every group: a plain INVITE, the emergency INVITE c01
/// (SDP and a PIDF-LO in a multipart body, 2 KB), a response, and a small
/// in-dialog request.
const MESSAGES: [(&str, &[u8]); 4] = [
    ("invite-sdp", PLAIN_INVITE),
    ("emergency-c01", EMERGENCY),
    ("200-ok-sdp", OK_200),
    ("ack", ACK),
];

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let limits = Limits::default();
    for (name, data) in MESSAGES {
        // Every parser must accept the message before it is timed.
        assert!(fast(data, &limits) > 0);
        assert_eq!(fast(data, &limits), fast_checked(data, &limits));
        assert_eq!(fast(data, &limits), receive(data, &limits));
        assert!(rsip_fields(data) > 0);
        rsip::SipMessage::try_from(data).expect("rsip parses");
        let http = as_http(data);
        httparse_headers(&http);

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("fast", |b| b.iter(|| fast(black_box(data), &limits)));
        g.bench_function("fast-index", |b| {
            b.iter(|| fast_index(black_box(data), &limits))
        });
        g.bench_function("fast-checked", |b| {
            b.iter(|| fast_checked(black_box(data), &limits))
        });
        g.bench_function("receive", |b| b.iter(|| receive(black_box(data), &limits)));
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(data)).is_ok())
        });
        g.bench_function("rsip-fields", |b| b.iter(|| rsip_fields(black_box(data))));
        g.bench_function("httparse", |b| {
            b.iter(|| httparse_headers(black_box(&http)))
        });
        g.finish();
    }
}

/// `PARSE_COUNT=n` (see the top of this file): the `receive` row `n` times
/// per message, no timing.
fn count(n: &str) {
    let n: u64 = n.parse().expect("PARSE_COUNT is a number");
    let only = std::env::var("PARSE_MESSAGE").ok();
    let limits = Limits::default();
    for (name, data) in MESSAGES {
        if only.as_deref().is_none_or(|o| o == name) {
            println!("{name}: {}", receive_loop(data, n, &limits));
        }
    }
}

/// The CPU time of the calling thread (`PARSE_CLOCK=cpu`).
struct CpuTime;

fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration,
    // and the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way: the wall clock's units and throughputs.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn run<M: Measurement>(c: Criterion<M>) {
    let mut c = c.configure_from_args();
    bench(&mut c);
    c.final_summary();
}

fn main() {
    if let Ok(n) = std::env::var("PARSE_COUNT") {
        return count(&n);
    }
    if std::env::var("PARSE_CLOCK").is_ok_and(|c| c == "cpu") {
        run(Criterion::default().with_measurement(CpuTime));
    } else {
        run(Criterion::default());
    }
}
