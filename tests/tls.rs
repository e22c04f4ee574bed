//! SIP over TLS on loopback, with certificates made here (rcgen): a CA,
//! the router, a carrier edge and PSAPs; a second CA nobody trusts, an
//! expired certificate and a certificate for the wrong name. The real
//! router binary is started on each configuration; the carrier and the
//! PSAPs are TLS endpoints of the test (tokio-rustls).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Ca, Leaf};
use common::{get, http_port, metric, tempdir, Router};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

// ----- certificates -----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[&Ca]) -> Arc<rustls::RootCertStore> {
    let mut r = rustls::RootCertStore::empty();
    for ca in cas {
        r.add(ca.der()).unwrap();
    }
    Arc::new(r)
}

/// A TLS client config that trusts `ca` and presents `leaf`, if any.
fn client_config(ca: &Ca, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&[ca]));
    Arc::new(match leaf {
        Some(l) => b
            .with_client_auth_cert(vec![l.der.clone()], l.key())
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

// ----- SIP over a stream -----

/// The length of the first whole SIP message in `b`.
fn framed_len(b: &[u8]) -> Option<usize> {
    let head_end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&b[..head_end]);
    let cl = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (b.len() >= head_end + cl).then_some(head_end + cl)
}

/// Reads SIP messages from a stream into a channel until it closes.
fn reader<R: AsyncRead + Unpin + Send + 'static>(mut rd: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut acc = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => acc.extend_from_slice(&buf[..n]),
            }
            while let Some(len) = framed_len(&acc) {
                let msg = String::from_utf8_lossy(&acc[..len]).into_owned();
                acc.drain(..len);
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next message starting with `start` within 5 s (others skipped).
async fn next(rx: &mut mpsc::Receiver<String>, start: &str) -> Option<String> {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(m)) if m.starts_with(start) => return Some(m),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// The response to `req` with `code`; a `200` to an INVITE gets a To tag,
/// a Contact at `contact` and the Record-Route of the request.
fn response(req: &str, code: u16, contact: &str) -> String {
    let mut out = format!(
        "SIP/2.0 {code} {}\r\n",
        if code == 200 { "OK" } else { "X" }
    );
    for l in req.split("\r\n").skip(1) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" | "record-route" => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            "to" => {
                out.push_str(l);
                if code == 200 && !l.contains("tag=") {
                    out.push_str(";tag=psap1");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    if req.starts_with("INVITE ") && code == 200 {
        out.push_str(&format!("Contact: <{contact}>\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A carrier edge: a TLS connection to the router from 127.0.0.2, as a
/// stranger's address (only its certificate lets it in).
struct Carrier {
    wr: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    rx: mpsc::Receiver<String>,
    local: SocketAddr,
    /// The certificate the router served.
    served: CertificateDer<'static>,
    /// `TLS`, or `TCP` for a plain connection.
    proto: &'static str,
}

impl Carrier {
    async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<Carrier> {
        let sock = TcpSocket::new_v4()?;
        sock.bind("127.0.0.2:0".parse().unwrap())?;
        let tcp = sock
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let name = ServerName::try_from("router.test").unwrap();
        let tls = timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
        let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (rd, wr) = tokio::io::split(tls);
        Ok(Carrier {
            wr: Box::new(wr),
            rx: reader(rd),
            local,
            served,
            proto: "TLS",
        })
    }

    /// A plain TCP connection from 127.0.0.1 (allowed by address).
    async fn connect_tcp(port: u16) -> std::io::Result<Carrier> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let (rd, wr) = tcp.into_split();
        Ok(Carrier {
            wr: Box::new(wr),
            rx: reader(rd),
            local,
            served: CertificateDer::from(Vec::new()),
            proto: "TCP",
        })
    }

    async fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.wr.write_all(msg.as_bytes()).await?;
        self.wr.flush().await
    }

    fn invite(&self, call_id: &str, router_tls: u16) -> String {
        self.invite_to("911", call_id, router_tls)
    }

    fn invite_to(&self, number: &str, call_id: &str, router_port: u16) -> String {
        let (l, p) = (self.local, self.proto);
        let t = p.to_ascii_lowercase();
        format!(
            "INVITE sip:{number}@127.0.0.1:{router_port} SIP/2.0\r\nVia: SIP/2.0/{p} {l};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:+12025550142@carrier.test>;tag=c1\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12025550142@{l};transport={t}>\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// An in-dialog request after the 200 `ok`, routed by its
    /// Record-Route.
    fn in_dialog(&self, method: &str, cseq: u32, ok: &str) -> String {
        let l = self.local;
        let to = header(ok, "to")[0];
        let call_id = header(ok, "call-id")[0];
        let contact = header(ok, "contact")[0];
        let target = contact.trim_start_matches('<').trim_end_matches('>');
        let routes: String = header(ok, "record-route")
            .iter()
            .flat_map(|v| v.split(','))
            .rev()
            .map(|r| format!("Route: {}\r\n", r.trim()))
            .collect();
        let p = self.proto;
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{p} {l};branch=z9hG4bK-{method}{cseq}-{call_id}\r\nMax-Forwards: 70\r\n{routes}From: <sip:+12025550142@carrier.test>;tag=c1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }
}

/// A PSAP over TLS: its certificate, and the client certificate it
/// requires of the router (from `ca`). Answers INVITE, BYE and OPTIONS
/// with 200;
/// every request reaches the test.
struct TlsPsap {
    port: u16,
    rx: mpsc::Receiver<String>,
}

impl TlsPsap {
    async fn start(leaf: &Leaf, ca: &Ca) -> TlsPsap {
        TlsPsap::start_on(Some((leaf, ca)), true).await
    }

    /// Over TLS with `tls`, else over plain TCP; the requests reach the
    /// test only when `report`.
    async fn start_on(tls: Option<(&Leaf, &Ca)>, report: bool) -> TlsPsap {
        let acceptor = tls.map(|(leaf, ca)| {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(&[ca]),
                provider(),
            )
            .build()
            .unwrap();
            let config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![leaf.der.clone()], leaf.key())
                .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    type Half = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
                    let (rd, mut wr, t): (mpsc::Receiver<String>, Half, &str) = match acceptor {
                        Some(a) => {
                            let Ok(Ok(tls)) = timeout(Duration::from_secs(5), a.accept(tcp)).await
                            else {
                                return;
                            };
                            let (rd, wr) = tokio::io::split(tls);
                            (reader(rd), Box::new(wr), "tls")
                        }
                        None => {
                            let (rd, wr) = tcp.into_split();
                            (reader(rd), Box::new(wr), "tcp")
                        }
                    };
                    let mut msgs = rd;
                    let contact = format!("sip:psap@127.0.0.1:{port};transport={t}");
                    while let Some(m) = msgs.recv().await {
                        if ["INVITE ", "BYE ", "OPTIONS "]
                            .iter()
                            .any(|s| m.starts_with(s))
                        {
                            let _ = wr.write_all(response(&m, 200, &contact).as_bytes()).await;
                        }
                        if report && tx.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TlsPsap { port, rx }
    }
}

// ----- the router -----

/// The files of a router's TLS setup, in a directory of the test.
struct Files {
    dir: tempdir::Dir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn files(ca: &Ca, router: &Leaf) -> Files {
    let dir = tempdir::Dir::new("tls");
    let (cert, key) = router.write(dir.path(), "router");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Files {
        dir,
        cert,
        key,
        ca: ca_path,
    }
}

/// A configuration: UDP and TLS listeners, the carrier identified by
/// `edge.carrier.test` in its certificate, and `trunks` (`[[trunk]]`
/// tables) as the targets of 911, in order.
fn config(f: &Files, trunks: &[(&str, String)]) -> String {
    let mut text = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tls:127.0.0.1:0"]

[sip.tls]
certificate = "{}"
key = "{}"
ca = "{}"
handshake_timeout_ms = 2000

[sip.timers]
t1_ms = 500
no_answer_ms = 3000

[routing]
mode = "static"

[health]
{health}

[metrics]
listen = "127.0.0.1:0"

[[trunk]]
name = "carrier"
kind = "inbound"
tls_names = ["edge.carrier.test"]
country = "US"
"#,
        f.cert.display(),
        f.key.display(),
        f.ca.display(),
        health = "interval_s = 0"
    );
    for (name, body) in trunks {
        text.push_str(&format!(
            "\n[[trunk]]\nname = \"{name}\"\nkind = \"psap\"\n{body}\n"
        ));
    }
    let targets: Vec<String> = trunks.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    text.push_str(&format!(
        "\n[[route]]\nnumbers = [\"911\"]\ntargets = [{}]\n",
        targets.join(", ")
    ));
    text
}

/// Starts the router off the runtime's threads; its TLS port.
async fn start(cfg: String) -> (Router, u16) {
    tokio::task::spawn_blocking(move || {
        let router = Router::start(&cfg, &[]);
        let needle = "listening sip tls 127.0.0.1:";
        router.wait_log(needle, 1, Duration::from_secs(10));
        let port = router
            .log()
            .lines()
            .find_map(|l| l.split(needle).nth(1))
            .and_then(|p| p.trim().parse().ok())
            .unwrap();
        (router, port)
    })
    .await
    .unwrap()
}

fn metrics(router: &Router) -> String {
    get(http_port(router, "metrics"), "/metrics").1
}

fn handshakes(router: &Router, direction: &str, result: &str) -> f64 {
    metric(
        &metrics(router),
        "sosrouter_tls_handshakes_total",
        &[("direction", direction), ("result", result)],
    )
}

/// Waits (bounded) until the router's log holds `needle`.
async fn log_shows(router: &Router, needle: &str) -> bool {
    for _ in 0..100 {
        if router.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ----- the tests -----

/// A carrier edge identified by its client certificate calls 911 over
/// TLS; the router relays it over TLS to the PSAP, presenting its own
/// certificate, with Via `SIP/2.0/TLS` and one Record-Route naming TLS;
/// the 200, the ACK and the BYE follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_mutual_tls_on_both_legs() {
    let ca = Ca::new("Interconnect CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let mut psap = TlsPsap::start(&ca.valid(&["psap.test"]), &ca).await;
    let psap_trunk = format!(
        "uri = \"sips:127.0.0.1:{}\"\ntls_server_name = \"psap.test\"",
        psap.port
    );
    let (router, tls_port) = start(config(&f, &[("psap", psap_trunk)])).await;
    let edge = ca.valid(&["edge.carrier.test"]);
    let mut carrier = Carrier::connect(tls_port, client_config(&ca, Some(&edge)))
        .await
        .unwrap();
    carrier
        .send(&carrier.invite("tls-call-1", tls_port))
        .await
        .unwrap();
    let invite = next(&mut psap.rx, "INVITE ")
        .await
        .expect("INVITE at the PSAP");
    let via = header(&invite, "via")[0];
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{tls_port};")),
        "{invite}"
    );
    let rr = header(&invite, "record-route");
    assert_eq!(
        rr,
        [format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>").as_str()],
        "{invite}"
    );
    let ok = next(&mut carrier.rx, "SIP/2.0 200")
        .await
        .expect("200 at the carrier");
    carrier
        .send(&carrier.in_dialog("ACK", 1, &ok))
        .await
        .unwrap();
    assert!(
        next(&mut psap.rx, "ACK ").await.is_some(),
        "ACK at the PSAP"
    );
    carrier
        .send(&carrier.in_dialog("BYE", 2, &ok))
        .await
        .unwrap();
    assert!(
        next(&mut psap.rx, "BYE ").await.is_some(),
        "BYE at the PSAP"
    );
    let bye_ok = next(&mut carrier.rx, "SIP/2.0 200")
        .await
        .expect("200 to BYE");
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
    assert!(handshakes(&router, "inbound", "ok") >= 1.0);
    assert!(handshakes(&router, "outbound", "ok") >= 1.0);
    let expiry = metric(
        &metrics(&router),
        "sosrouter_tls_certificate_expiry_seconds",
        &[("role", "sip.tls.certificate")],
    );
    assert!(
        (29.0 * 86400.0..=30.0 * 86400.0).contains(&expiry),
        "{expiry}"
    );
}

/// The carrier over TLS, the PSAP over UDP: the router adds two
/// Record-Route entries (RFC 5658), and a BYE from the PSAP over UDP
/// reaches the carrier on its TLS connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_on_different_transports_get_two_record_routes() {
    let ca = Ca::new("Interconnect CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let psap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let psap_port = psap.local_addr().unwrap().port();
    let (router, tls_port) = start(config(
        &f,
        &[("psap", format!("uri = \"sip:127.0.0.1:{psap_port}\""))],
    ))
    .await;
    let udp_port = router.port;
    let edge = ca.valid(&["edge.carrier.test"]);
    let mut carrier = Carrier::connect(tls_port, client_config(&ca, Some(&edge)))
        .await
        .unwrap();
    carrier
        .send(&carrier.invite("tls-call-2", tls_port))
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(Duration::from_secs(5), psap.recv_from(&mut buf))
        .await
        .expect("INVITE at the PSAP")
        .unwrap();
    let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(invite.starts_with("INVITE "), "{invite}");
    assert!(
        header(&invite, "via")[0].starts_with("SIP/2.0/UDP "),
        "{invite}"
    );
    let rr = header(&invite, "record-route");
    assert_eq!(
        rr,
        [
            format!("<sip:127.0.0.1:{udp_port};lr>"),
            format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>")
        ],
        "{invite}"
    );
    let contact = format!("sip:psap@127.0.0.1:{psap_port}");
    psap.send_to(response(&invite, 200, &contact).as_bytes(), from)
        .await
        .unwrap();
    let ok = next(&mut carrier.rx, "SIP/2.0 200")
        .await
        .expect("200 at the carrier");
    carrier
        .send(&carrier.in_dialog("ACK", 1, &ok))
        .await
        .unwrap();
    // The PSAP hangs up: its route set is the Record-Route as received.
    let caller_contact = header(&invite, "contact")[0]
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    let routes: String = rr.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let to = header(&invite, "from")[0];
    let bye = format!(
        "BYE {caller_contact} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{psap_port};branch=z9hG4bK-psapbye\r\nMax-Forwards: 70\r\n{routes}From: <sip:911@127.0.0.1>;tag=psap1\r\nTo: {to}\r\nCall-ID: tls-call-2\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    psap.send_to(bye.as_bytes(), from).await.unwrap();
    let got = next(&mut carrier.rx, "BYE ")
        .await
        .expect("BYE at the carrier over TLS");
    assert!(header(&got, "via")[0].starts_with("SIP/2.0/TLS "), "{got}");
    drop(router);
}

/// Client certificates the router refuses: one from a CA it does not
/// trust, an expired one, one for a name no trunk allows, and none at
/// all. Each connection is closed with no answer, counted by reason and
/// named in a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_it_must_not_take_are_refused() {
    let ca = Ca::new("Interconnect CA");
    let rogue = Ca::new("Rogue CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let (router, tls_port) = start(config(
        &f,
        &[("psap", "uri = \"sip:127.0.0.1:9\"".to_string())],
    ))
    .await;
    let cases = [
        ("unknown_ca", Some(rogue.valid(&["edge.carrier.test"]))),
        ("expired", Some(ca.issue(&["edge.carrier.test"], -30, -1))),
        ("name_not_allowed", Some(ca.valid(&["intruder.test"]))),
        ("no_certificate", None),
    ];
    for (reason, leaf) in &cases {
        // The router is trusted by the client; the client is not by the
        // router: the handshake may look done from here (TLS 1.3), but the
        // INVITE gets no answer and the connection closes.
        let answered = match Carrier::connect(tls_port, client_config(&ca, leaf.as_ref())).await {
            Err(_) => false,
            Ok(mut c) => {
                let _ = c
                    .send(&c.invite(&format!("refused-{reason}"), tls_port))
                    .await;
                next(&mut c.rx, "SIP/2.0").await.is_some()
            }
        };
        assert!(!answered, "{reason}: answered");
        assert!(
            log_shows(&router, &format!("reason=\"{reason}\"")).await
                || log_shows(&router, &format!("reason={reason}")).await,
            "{reason}: no log line:\n{}",
            router.log()
        );
        assert_eq!(handshakes(&router, "inbound", reason), 1.0, "{reason}");
    }
    assert!(router.log().contains("tls handshake failed"));
    assert_eq!(handshakes(&router, "inbound", "ok"), 0.0);
}

/// PSAPs whose certificates the router must refuse: the wrong name, a CA
/// it does not trust, expired. Each is a failed target: the call moves on
/// at once and is answered by the last, good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psap_certificate_refused_moves_the_call_on() {
    let ca = Ca::new("Interconnect CA");
    let rogue = Ca::new("Rogue CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let wrong_name = TlsPsap::start(&ca.valid(&["elsewhere.test"]), &ca).await;
    let wrong_ca = TlsPsap::start(&rogue.valid(&["psap.test"]), &ca).await;
    let expired = TlsPsap::start(&ca.issue(&["psap.test"], -30, -1), &ca).await;
    let mut good = TlsPsap::start(&ca.valid(&["psap.test"]), &ca).await;
    let trunk = |p: u16| {
        format!("uri = \"sip:127.0.0.1:{p}\"\ntransport = \"tls\"\ntls_server_name = \"psap.test\"")
    };
    let (router, tls_port) = start(config(
        &f,
        &[
            ("wrong-name", trunk(wrong_name.port)),
            ("wrong-ca", trunk(wrong_ca.port)),
            ("expired", trunk(expired.port)),
            ("good", trunk(good.port)),
        ],
    ))
    .await;
    let edge = ca.valid(&["edge.carrier.test"]);
    let mut carrier = Carrier::connect(tls_port, client_config(&ca, Some(&edge)))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    carrier
        .send(&carrier.invite("tls-failover", tls_port))
        .await
        .unwrap();
    assert!(
        next(&mut good.rx, "INVITE ").await.is_some(),
        "{}",
        router.log()
    );
    assert!(next(&mut carrier.rx, "SIP/2.0 200").await.is_some());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    for reason in ["name_mismatch", "unknown_ca", "expired"] {
        assert_eq!(handshakes(&router, "outbound", reason), 1.0, "{reason}");
    }
    assert!(
        router.log().contains("direction=\"outbound\"")
            || router.log().contains("direction=outbound")
    );
}

/// New certificate files and a SIGHUP: connections already open stay and
/// keep working; new ones get the new certificate; the expiry gauge
/// follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_without_dropping_connections() {
    let ca = Ca::new("Interconnect CA");
    let first = ca.valid(&["router.test", "127.0.0.1"]);
    let f = files(&ca, &first);
    let (router, tls_port) = start(config(
        &f,
        &[("psap", "uri = \"sip:127.0.0.1:9\"".to_string())],
    ))
    .await;
    let edge = ca.valid(&["edge.carrier.test"]);
    let config = client_config(&ca, Some(&edge));
    let mut open = Carrier::connect(tls_port, config.clone()).await.unwrap();
    assert_eq!(open.served, first.der);
    let options = |c: &Carrier, n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1:{tls_port} SIP/2.0\r\nVia: SIP/2.0/TLS {};branch=z9hG4bK-opt{n}\r\nMax-Forwards: 70\r\nFrom: <sip:edge@carrier.test>;tag=o{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            c.local
        )
    };
    open.send(&options(&open, 1)).await.unwrap();
    assert!(
        next(&mut open.rx, "SIP/2.0 200").await.is_some(),
        "{}",
        router.log()
    );

    let second = ca.issue(&["router.test", "127.0.0.1"], -1, 90);
    second.write(f.dir.path(), "router");
    let pid = router.pid() as libc::pid_t;
    // SAFETY: a signal to the router this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        log_shows(&router, "tls certificates reloaded").await,
        "{}",
        router.log()
    );
    open.send(&options(&open, 2)).await.unwrap();
    assert!(
        next(&mut open.rx, "SIP/2.0 200").await.is_some(),
        "the connection open before the reload still works"
    );
    let fresh = Carrier::connect(tls_port, config).await.unwrap();
    assert_eq!(
        fresh.served, second.der,
        "a new connection gets the new certificate"
    );
    let mut expiry = 0.0;
    for _ in 0..40 {
        expiry = metric(
            &metrics(&router),
            "sosrouter_tls_certificate_expiry_seconds",
            &[("role", "sip.tls.certificate")],
        );
        if expiry > 89.0 * 86400.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (89.0 * 86400.0..=90.0 * 86400.0).contains(&expiry),
        "{expiry}"
    );
}

/// An HTTPS GET over a fresh connection: the certificate served and the
/// whole answer.
async fn https_get(
    port: u16,
    path: &str,
    ca: &Ca,
) -> std::io::Result<(CertificateDer<'static>, String)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("router.test").unwrap();
    let mut tls = timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(client_config(ca, None)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: router.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    Ok((served, String::from_utf8_lossy(&answer).into_owned()))
}

/// The admin and metrics listeners with `tls = true` serve HTTPS with the
/// router's certificate, and nothing in plain text; a reload brings the
/// new certificate to new connections, as for SIP; a client that opens a
/// connection and never says hello is closed after the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_metrics_serve_https_with_the_router_certificate() {
    let ca = Ca::new("Interconnect CA");
    let first = ca.valid(&["router.test", "127.0.0.1"]);
    let f = files(&ca, &first);
    let cfg = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]

[sip.tls]
certificate = "{}"
key = "{}"
ca = "{}"

[routing]
mode = "static"

[health]
interval_s = 0

[metrics]
listen = "127.0.0.1:0"
tls = true

[admin]
listen = "127.0.0.1:0"
tls = true
header_read_timeout_ms = 1000
"#,
        f.cert.display(),
        f.key.display(),
        f.ca.display(),
    );
    let router = tokio::task::spawn_blocking(move || Router::start(&cfg, &[]))
        .await
        .unwrap();
    let port = |what: &str| {
        let needle = format!("listening {what} https 127.0.0.1:");
        router.wait_log(&needle, 1, Duration::from_secs(5));
        router
            .log()
            .lines()
            .find_map(|l| l.split(needle.as_str()).nth(1))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{what} not on https: {}", router.log()))
    };
    let (admin, metrics_port) = (port("admin"), port("metrics"));

    let (served, answer) = https_get(admin, "/healthz", &ca).await.unwrap();
    assert_eq!(served, first.der);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, answer) = https_get(metrics_port, "/metrics", &ca).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        metric(
            &answer,
            "sosrouter_tls_handshakes_total",
            &[("direction", "https"), ("result", "ok")]
        ) >= 2.0,
        "{answer}"
    );

    // Plain HTTP on the HTTPS port gets no answer in plain text.
    let plain = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert!(!plain.contains("HTTP/1.1"), "{plain}");

    // A client that does not trust the router's CA refuses it.
    let stranger = Ca::new("Some other CA");
    assert!(https_get(admin, "/healthz", &stranger).await.is_err());

    // One that connects and says nothing is closed after the header
    // deadline (1 s), not held.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let closed = timeout(Duration::from_secs(5), idle.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent client still held after 5 s: {closed:?}"
    );

    // The certificate is re-read on reload, for new connections.
    let second = ca.issue(&["router.test", "127.0.0.1"], -1, 90);
    second.write(f.dir.path(), "router");
    let pid = router.pid() as libc::pid_t;
    // SAFETY: a signal to the router this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        log_shows(&router, "tls certificates reloaded").await,
        "{}",
        router.log()
    );
    let (served, answer) = https_get(admin, "/healthz", &ca).await.unwrap();
    assert_eq!(
        served, second.der,
        "a new connection gets the new certificate"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `check-config` reads and checks the files: a key that is not the
/// certificate's, a certificate that does not chain to the CA, an expired
/// one, a missing file; each named in the error.
#[test]
fn check_config_checks_the_certificates() {
    let ca = Ca::new("Interconnect CA");
    let other = Ca::new("Other CA");
    let good = ca.valid(&["router.test"]);
    let f = files(&ca, &good);
    let run = |cfg: &str| {
        let path = f.dir.path().join("check.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(common::BIN)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let psap = [("psap", "uri = \"sip:127.0.0.1:9\"".to_string())];
    let (ok, out) = run(&config(&f, &psap));
    assert!(ok, "{out}");
    assert!(out.contains("sip.tls.certificate"), "{out}");

    type Spoil<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "a key of another certificate",
            Box::new(|d: &Path| {
                std::fs::write(d.join("router.key"), ca.valid(&["x.test"]).key_pem).unwrap()
            }),
            "does not fit",
        ),
        (
            "another CA's certificate",
            Box::new(|d: &Path| {
                other.valid(&["router.test"]).write(d, "router");
            }),
            "does not chain",
        ),
        (
            "an expired certificate",
            Box::new(|d: &Path| {
                ca.issue(&["router.test"], -30, -1).write(d, "router");
            }),
            "expired",
        ),
        (
            "a missing file",
            Box::new(|d: &Path| std::fs::remove_file(d.join("router.pem")).unwrap()),
            "router.pem",
        ),
    ];
    for (what, spoil, says) in cases {
        good.write(f.dir.path(), "router");
        spoil(f.dir.path());
        let (ok, out) = run(&config(&f, &psap));
        assert!(!ok, "{what}: passed:\n{out}");
        assert!(out.contains(says), "{what}: {out}");
    }
}

/// OPTIONS probes go over the trunk's own transport: a TLS PSAP gets them
/// over TLS and is up; one whose certificate the router refuses is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_go_over_tls_and_a_refused_certificate_takes_the_trunk_down() {
    let ca = Ca::new("Interconnect CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let mut good = TlsPsap::start(&ca.valid(&["psap.test"]), &ca).await;
    let bad = TlsPsap::start(&ca.valid(&["elsewhere.test"]), &ca).await;
    let trunk = |p: u16| format!("uri = \"sips:127.0.0.1:{p}\"\ntls_server_name = \"psap.test\"");
    let cfg = config(&f, &[("good", trunk(good.port)), ("bad", trunk(bad.port))]).replace(
        "[health]\ninterval_s = 0",
        "[health]\ninterval_s = 1\ntimeout_ms = 1000\ndown_after = 2\nup_after = 1",
    );
    let (router, _) = start(cfg).await;
    let probe = next(&mut good.rx, "OPTIONS ")
        .await
        .expect("a probe over TLS");
    assert!(
        header(&probe, "via")[0].starts_with("SIP/2.0/TLS "),
        "{probe}"
    );
    let up = |trunk: &str| metric(&metrics(&router), "sosrouter_trunk_up", &[("trunk", trunk)]);
    let mut seen = (0.0, 1.0, 0.0);
    for _ in 0..100 {
        let refused = handshakes(&router, "outbound", "name_mismatch");
        seen = (up("good"), up("bad"), refused);
        if seen.0 == 1.0 && seen.1 == 0.0 && refused >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.0 == 1.0 && seen.1 == 0.0 && seen.2 >= 2.0,
        "(good up, bad up, handshakes refused) {seen:?}\n{}",
        router.log()
    );
}

/// TLS and TCP share the connection slots: with every slot held by idle
/// TCP connections, a carrier connecting over TLS still gets in, and the
/// least recently used TCP connection makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_gets_a_slot_held_by_idle_tcp() {
    let ca = Ca::new("Interconnect CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let cfg = config(&f, &[("psap", "uri = \"sip:127.0.0.1:9\"".to_string())])
        .replace(
            "listen = [\"udp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]",
            "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\n[sip.tcp]\nmax_connections = 2",
        );
    let (router, tls_port) = start(cfg).await;
    let options = |c: &Carrier, n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK-slot{n}\r\nMax-Forwards: 70\r\nFrom: <sip:edge@carrier.test>;tag=s{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: slot-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            c.proto, c.local
        )
    };
    let mut tcp = Vec::new();
    for n in 0..2 {
        let mut c = Carrier::connect_tcp(router.port).await.unwrap();
        c.send(&options(&c, n)).await.unwrap();
        assert!(
            next(&mut c.rx, "SIP/2.0 200").await.is_some(),
            "{}",
            router.log()
        );
        tcp.push(c);
    }
    let edge = ca.valid(&["edge.carrier.test"]);
    let mut tls = Carrier::connect(tls_port, client_config(&ca, Some(&edge)))
        .await
        .unwrap();
    tls.send(&options(&tls, 9)).await.unwrap();
    assert!(
        next(&mut tls.rx, "SIP/2.0 200").await.is_some(),
        "the TLS connection got no slot:\n{}",
        router.log()
    );
    // The older TCP connection was closed for it: its reader ends.
    let closed = timeout(Duration::from_secs(3), async {
        while tcp[0].rx.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the least recently used TCP connection stays open"
    );
}

// ----- figures for docs/performance.md -----

/// The CPU time a process has used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // Fields after the command: state is the 3rd of the line, utime the
    // 14th, stime the 15th.
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum()
}

/// Calls of `number` at about `rate` a second for `seconds`, over `conns`
/// connections made by `connect`, each call INVITE, 200, ACK, BYE, 200;
/// (calls completed, calls failed).
async fn calls_at<F, Fut>(
    connect: F,
    conns: u32,
    number: &'static str,
    port: u16,
    rate: u32,
    seconds: u64,
) -> (u64, u64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Carrier>>,
{
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut carrier = connect().await.unwrap();
        let gap = Duration::from_micros(1_000_000 * u64::from(conns) / u64::from(rate));
        tasks.push(tokio::spawn(async move {
            let (mut done, mut failed) = (0u64, 0u64);
            let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
            let mut tick = tokio::time::interval(gap);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                n += 1;
                let id = format!("load-{number}-{c}-{n}");
                let ok = async {
                    carrier
                        .send(&carrier.invite_to(number, &id, port))
                        .await
                        .ok()?;
                    let ok = next(&mut carrier.rx, "SIP/2.0 200").await?;
                    carrier.send(&carrier.in_dialog("ACK", 1, &ok)).await.ok()?;
                    carrier.send(&carrier.in_dialog("BYE", 2, &ok)).await.ok()?;
                    next(&mut carrier.rx, "SIP/2.0 200").await
                }
                .await;
                if ok.is_some() {
                    done += 1;
                } else {
                    failed += 1;
                }
            }
            (done, failed)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (d, f) = t.await.unwrap();
        total = (total.0 + d, total.1 + f);
    }
    total
}

/// Handshakes per second with mutual TLS, and the router's CPU per call
/// at 500 calls/s over TLS against TCP. A measurement, run by hand:
/// `cargo test --release --test tls figures -- --ignored --nocapture`
/// (the release router binary then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for docs/performance.md, run by hand"]
async fn figures_tls_against_tcp() {
    let ca = Ca::new("Interconnect CA");
    let f = files(&ca, &ca.valid(&["router.test", "127.0.0.1"]));
    let psap_tcp = TlsPsap::start_on(None, false).await;
    let psap_leaf = ca.valid(&["psap.test"]);
    let psap_tls = TlsPsap::start_on(Some((&psap_leaf, &ca)), false).await;
    let cfg = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"]
allow = ["127.0.0.1/32"]

[sip.tls]
certificate = "{}"
key = "{}"
ca = "{}"

[routing]
mode = "static"

[health]
interval_s = 0

[log]
level = "warn,sosrouter::driver::process=info"

[[trunk]]
name = "carrier"
kind = "inbound"
tls_names = ["edge.carrier.test"]
country = "US"

[[trunk]]
name = "psap-tcp"
kind = "psap"
uri = "sip:127.0.0.1:{}"
transport = "tcp"

[[trunk]]
name = "psap-tls"
kind = "psap"
uri = "sips:127.0.0.1:{}"
tls_server_name = "psap.test"

[[route]]
numbers = ["911"]
targets = ["psap-tcp"]

[[route]]
numbers = ["912"]
targets = ["psap-tls"]
"#,
        f.cert.display(),
        f.key.display(),
        f.ca.display(),
        psap_tcp.port,
        psap_tls.port
    );
    let (router, tls_port) = start(cfg).await;
    let tcp_port = router.port;
    let pid = router.pid();
    let edge = ca.valid(&["edge.carrier.test"]);
    let client = client_config(&ca, Some(&edge));

    // Handshakes: two clients one after another for 5 s.
    let before = cpu_ticks(pid);
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(5) {
                // Connect, finish the handshake, close.
                let done = async {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await?;
                    let name = ServerName::try_from("router.test").unwrap();
                    let mut tls = tokio_rustls::TlsConnector::from(client.clone())
                        .connect(name, tcp)
                        .await?;
                    tls.shutdown().await
                };
                if let Err(e) = done.await {
                    return Err(format!("after {n} handshakes: {e}"));
                }
                n += 1;
            }
            Ok(n)
        }));
    }
    let mut handshakes = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => handshakes += n,
            Err(e) => panic!("{e}\n{}", router.log()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - before;
    println!(
        "handshakes: {handshakes} in {secs:.1} s = {:.0}/s; router CPU {:.0} µs per handshake",
        handshakes as f64 / secs,
        ticks as f64 * 10_000.0 / handshakes as f64
    );
    assert!(handshakes > 0);

    // Calls at 500/s, 10 s each way, on 10 connections.
    for (name, number) in [("tcp", "911"), ("tls", "912")] {
        let before = cpu_ticks(pid);
        let start = std::time::Instant::now();
        let (done, failed) = if name == "tls" {
            let client = client.clone();
            calls_at(
                || Carrier::connect(tls_port, client.clone()),
                10,
                number,
                tls_port,
                500,
                10,
            )
            .await
        } else {
            calls_at(
                || Carrier::connect_tcp(tcp_port),
                10,
                number,
                tcp_port,
                500,
                10,
            )
            .await
        };
        let secs = start.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid) - before;
        println!(
            "{name}: {done} calls in {secs:.1} s = {:.0}/s, {failed} failed; router CPU {:.0} µs per call",
            done as f64 / secs,
            ticks as f64 * 10_000.0 / done.max(1) as f64
        );
        assert_eq!(failed, 0, "{name}");
    }
}
