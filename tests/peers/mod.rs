//! Real SIP software around the real router binary, on loopback, for
//! tests/real_peers.rs: Kamailio as a carrier's edge proxy, baresip as a
//! caller and as a PSAP, SIPp trunks that listen on UDP only, sipsak, and
//! raw UDP for what no tool sends.
//!
//! Every peer is started by the test on 127.0.0.1 on a chosen port (see
//! `common::CHOSEN_PORTS`; another is tried when the peer finds it taken),
//! in its own process group, with its output in a file the test reads; it is ended
//! by that process group's id (its own PID) when its handle drops, and each
//! has a time bound of its own as well.

#![allow(dead_code)]

use std::fs::File;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    held_by, on_a_chosen_port, root, tempdir::Dir, ClosedTcp, Router, Trunks, CHOSEN_PORTS,
    SIPP_BIND_FAILED,
};

/// Where `program` is installed: on PATH, or in an sbin directory
/// (Kamailio's is not on a user's PATH on Debian).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The path of `program`; fails the test with a clear message when it is
/// not installed.
pub fn require(program: &str, package: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!("{program} is needed (Debian package {package}); `bash .ci/run` installs it")
    })
}

/// A file under tests/peers.
pub fn peer_file(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}

/// A file of tests/peers with `@KEY@` placeholders replaced.
pub fn template(name: &str, replace: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(peer_file(name)).unwrap();
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    text
}

/// Polls `check` every 20 ms until it holds or `within` has passed.
pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A peer process in its own process group, its stdout and stderr in a
/// file. Dropping it sends SIGTERM to the group (whose id is the child's
/// PID), then SIGKILL if it has not exited within two seconds.
pub struct Proc {
    child: Child,
    pub name: String,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Whether the output shows `needle` within `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(needle))
    }

    /// Whether the process has ended; its exit code then (None when ended
    /// by a signal).
    pub fn ended(&mut self) -> Option<Option<i32>> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Waits for the process to exit by itself; its exit code (None when
    /// it is still running, or ended by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            // Its children (Kamailio's workers) may still run.
            self.signal_group("-KILL");
            return;
        }
        self.signal_group("-TERM");
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `ss` says listens on `port` over `proto` ("t" or "u").
pub fn listeners(proto: &str, port: u16) -> String {
    let out = Command::new(require("ss", "iproute2"))
        .args([&format!("-Hln{proto}"), &format!("sport = :{port}")])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that something listens on UDP `port` and nothing on TCP.
pub fn assert_udp_only(port: u16) {
    let tcp = listeners("t", port);
    assert!(
        tcp.trim().is_empty(),
        "port {port} should take no TCP, but: {tcp}"
    );
    assert!(
        !listeners("u", port).trim().is_empty(),
        "nothing listens on UDP port {port}"
    );
}

// ---------------------------------------------------------------------
// The router

/// How a test's router differs from the lab defaults.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup<'a> {
    /// The router's SIP port (UDP and TCP); 0: the one the system gives.
    pub sip_port: u16,
    /// `tcp_fallback` of every outbound trunk; None leaves the key out (on
    /// by default). Tests about something other than item 1 turn it off,
    /// so that their INVITEs reach the UDP-only trunks over UDP today.
    pub tcp_fallback: Option<bool>,
    /// More lines for the `[sip]` section.
    pub sip: &'a str,
    /// The `[health]` section's lines; probes are off when empty.
    pub health: &'a str,
    /// A directory for the `[database]` (SQLite); none when None.
    pub database: Option<&'a Path>,
    /// Appended to the configuration.
    pub extra: &'a str,
}

/// The emergency router's configuration (mode `emergency`, the shipped
/// country rules and service areas) with every trunk on loopback, as in
/// config/loopback.toml.
pub fn emergency_config(t: &Trunks, s: &Setup) -> String {
    let fallback = match s.tcp_fallback {
        Some(v) => format!("tcp_fallback = {v}\n"),
        None => String::new(),
    };
    let health = if s.health.is_empty() {
        "interval_s = 0"
    } else {
        s.health
    };
    let database = match s.database {
        Some(dir) => format!("[database]\ndata_dir = \"{}\"\n", dir.display()),
        None => String::new(),
    };
    let port = s.sip_port;
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
allow = ["127.0.0.0/8"]
{sip}

[sip.timers]
t1_ms = 500
no_answer_ms = 1500

[routing]
mode = "emergency"
failover_codes = [408, 480, 500, 502, 503, 504, 580]
non_emergency_status = 403

[health]
{health}

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.0/8"]
country = "US"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:{psap}"
{fallback}
[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:{screening}"
{fallback}
[[trunk]]
name = "test"
kind = "test"
uri = "sip:127.0.0.1:{test}"
{fallback}
[[trunk]]
name = "last-resort"
kind = "last-resort"
uri = "sip:127.0.0.1:{last}"
{fallback}
[emergency]
domain = "sosrouter.lab.example"

[emergency.psap_trunks]
"*" = "psap"

[admin]
listen = "127.0.0.1:0"

[metrics]
listen = "127.0.0.1:0"

{database}
{extra}
"#,
        sip = s.sip,
        psap = t.psap,
        screening = t.screening,
        test = t.test,
        last = t.last_resort,
        extra = s.extra,
    )
}

/// The number inventory of the emergency corpus.
pub fn inventory() -> PathBuf {
    root().join("tests/corpus/emergency-invites/inventory.tsv")
}

/// The router in emergency mode on the test's trunks, with the corpus
/// inventory.
pub fn emergency_router(t: &Trunks, s: &Setup) -> Router {
    try_emergency_router(t, s).unwrap_or_else(|log| panic!("router did not start: {log}"))
}

/// As `emergency_router`; the router's log when it did not start.
fn try_emergency_router(t: &Trunks, s: &Setup) -> Result<Router, String> {
    let inventory = inventory();
    Router::try_start(
        &emergency_config(t, s),
        &["--inventory", inventory.to_str().unwrap()],
    )
}

/// `emergency_router` on a SIP port below 10000, which port 0 cannot ask
/// for (sipsak 0.9.8.1 cuts the last digit off a five-digit port in the
/// URIs it writes): a port of 2000-9999 picked at random, another when the
/// router finds it taken. `s.sip_port` is not read; `Router::port` is the
/// port.
pub fn emergency_router_below_10000(t: &Trunks, s: &Setup) -> Router {
    on_a_chosen_port("the router", 2000..10000, |port| {
        let s = Setup {
            sip_port: port,
            ..*s
        };
        try_emergency_router(t, &s).map_err(|log| {
            assert!(
                log.contains("Address already in use"),
                "router did not start: {log}"
            );
            log
        })
    })
}

// ---------------------------------------------------------------------
// Kamailio

/// The transport of a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Where Kamailio's modules are installed.
fn kamailio_modules() -> PathBuf {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/kamailio/modules"),
        PathBuf::from("/usr/local/lib/kamailio/modules"),
        PathBuf::from("/usr/local/lib64/kamailio/modules"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            dirs.push(e.path().join("kamailio/modules"));
        }
    }
    dirs.into_iter()
        .find(|d| d.join("tm.so").is_file())
        .expect("Kamailio's modules (tm.so) not found; `bash .ci/run` installs kamailio")
}

/// Kamailio as the carrier's edge proxy: it listens on UDP and TCP on
/// `port`, record-routes, and relays every request statefully to the
/// router over `to_router` (tests/peers/kamailio.cfg).
pub struct Kamailio {
    pub port: u16,
    proc: Proc,
    _dir: Dir,
}

impl Kamailio {
    pub fn start(router_port: u16, to_router: Transport) -> Kamailio {
        let kamailio = require("kamailio", "kamailio");
        let modules = kamailio_modules();
        on_a_chosen_port("kamailio", CHOSEN_PORTS, |port| {
            let dir = Dir::new("kamailio");
            let cfg = template(
                "kamailio.cfg",
                &[
                    ("@PORT@", &port.to_string()),
                    ("@ROUTER@", &format!("127.0.0.1:{router_port}")),
                    ("@TRANSPORT@", to_router.name()),
                    ("@MODULES@", &format!("{}/", modules.display())),
                ],
            );
            let path = dir.path().join("kamailio.cfg");
            std::fs::write(&path, cfg).unwrap();
            let proc = spawn_kamailio(&kamailio, &path, &dir, ("32", "4"), port)?;
            Ok(Kamailio {
                port,
                proc,
                _dir: dir,
            })
        })
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Lines of its request log (`edge: METHOD URI from ...`) for `method`.
    pub fn relayed(&self, method: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(&format!("edge: {method} ")))
            .count()
    }
}

/// Starts Kamailio on the configuration at `cfg` in `dir`, with `mem`
/// (shared, private) megabytes, and waits until its processes hold `port`
/// over UDP and TCP; `Err` with its log when the port was taken (it stops
/// at once when it cannot bind either), so that another is chosen.
fn spawn_kamailio(
    kamailio: &Path,
    cfg: &Path,
    dir: &Dir,
    mem: (&str, &str),
    port: u16,
) -> Result<Proc, String> {
    let mut cmd = Command::new(kamailio);
    cmd.arg("-f")
        .arg(cfg)
        .args(["-DD", "-E", "-m", mem.0, "-M", mem.1])
        .arg("-P")
        .arg(dir.path().join("kamailio.pid"))
        .arg("-w")
        .arg(dir.path())
        .current_dir(dir.path());
    let mut proc = Proc::spawn("kamailio", &mut cmd, dir.path().join("kamailio.log"));
    let pid = proc.pid();
    let up = wait_until(Duration::from_secs(10), || {
        proc.ended().is_some() || (held_by("u", port, pid) && held_by("t", port, pid))
    });
    if proc.ended().is_some() {
        let log = proc.log();
        if log.contains("Address already in use") {
            return Err(log);
        }
        panic!("kamailio stopped:\n{log}");
    }
    assert!(up, "kamailio did not start:\n{}", proc.log());
    Ok(proc)
}

/// Kamailio with its TLS module (tests/peers/kamailio_tls.cfg): it
/// listens on UDP and TLS on one port, with `cert`/`key` as its
/// certificate both ways and the peer's certificate required and checked
/// against `ca`; it relays every initial request to `next` over `out`
/// (`"udp"` or `"tls"`). `role` prefixes its request log lines.
pub struct KamailioTls {
    pub port: u16,
    role: String,
    proc: Proc,
    _dir: Dir,
}

impl KamailioTls {
    pub fn start(
        role: &str,
        cert: &Path,
        key: &Path,
        ca: &Path,
        next: &str,
        out: &str,
    ) -> KamailioTls {
        let kamailio = require("kamailio", "kamailio");
        let modules = kamailio_modules();
        assert!(
            modules.join("tls.so").is_file(),
            "Kamailio's TLS module (tls.so) is needed (Debian package kamailio-tls-modules); `bash .ci/run` installs it"
        );
        on_a_chosen_port("kamailio", CHOSEN_PORTS, |port| {
            let dir = Dir::new("kamailio-tls");
            let profiles = dir.path().join("tls.cfg");
            let text = template(
                "kamailio_tls_profiles.cfg",
                &[
                    ("@CERT@", &cert.display().to_string()),
                    ("@KEY@", &key.display().to_string()),
                    ("@CA@", &ca.display().to_string()),
                ],
            );
            std::fs::write(&profiles, text).unwrap();
            let cfg = template(
                "kamailio_tls.cfg",
                &[
                    ("@PORT@", &port.to_string()),
                    ("@NEXT@", next),
                    ("@OUT@", out),
                    ("@ROLE@", role),
                    ("@TLSCFG@", &profiles.display().to_string()),
                    ("@MODULES@", &format!("{}/", modules.display())),
                ],
            );
            let path = dir.path().join("kamailio.cfg");
            std::fs::write(&path, cfg).unwrap();
            let proc = spawn_kamailio(&kamailio, &path, &dir, ("64", "8"), port)?;
            Ok(KamailioTls {
                port,
                role: role.to_string(),
                proc,
                _dir: dir,
            })
        })
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Lines of its request log for `method`.
    pub fn relayed(&self, method: &str) -> usize {
        let needle = format!("{}: {method} ", self.role);
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }
}

// ---------------------------------------------------------------------
// baresip

/// Where baresip's modules are installed.
fn baresip_modules() -> PathBuf {
    ["/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules"]
        .map(PathBuf::from)
        .into_iter()
        .find(|d| d.join("ausine.so").is_file())
        .expect("baresip's modules (ausine.so) not found; `bash .ci/run` installs baresip-core")
}

/// baresip 1.0 with a config directory of its own (tests/peers/baresip.*).
pub struct Baresip {
    pub port: u16,
    proc: Proc,
    _dir: Dir,
}

impl Baresip {
    fn start(tag: &str, user: &str, params: &str, args: &[&str]) -> Baresip {
        let baresip = require("baresip", "baresip-core");
        // It takes the port after its SIP port too.
        let ports = CHOSEN_PORTS.start..CHOSEN_PORTS.end - 1;
        on_a_chosen_port("baresip", ports, |port| {
            let dir = Dir::new(tag);
            // RTP on a range of its own, away from the ephemeral ports.
            let rtp = 10000 + (port % 400) * 50;
            let replace = [
                ("@SIP_PORT@", port.to_string()),
                ("@RTP_PORTS@", format!("{rtp}-{}", rtp + 49)),
                ("@MODULES@", baresip_modules().display().to_string()),
                ("@USER@", user.to_string()),
                ("@PARAMS@", params.to_string()),
            ];
            let replace: Vec<(&str, &str)> =
                replace.iter().map(|(k, v)| (*k, v.as_str())).collect();
            std::fs::write(
                dir.path().join("config"),
                template("baresip.config", &replace),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("accounts"),
                template("baresip.accounts", &replace),
            )
            .unwrap();
            let mut cmd = Command::new(&baresip);
            cmd.arg("-f").arg(dir.path()).args(args);
            cmd.current_dir(dir.path());
            let mut proc = Proc::spawn(tag, &mut cmd, dir.path().join("baresip.log"));
            // It binds its ports before it is ready, and stops at once
            // when it cannot.
            let ready = wait_until(Duration::from_secs(10), || {
                proc.ended().is_some() || proc.log().contains("baresip is ready.")
            });
            let log = proc.log();
            if proc.ended().is_some() && !log.contains("baresip is ready.") {
                if log.contains("Address already in use") {
                    return Err(log);
                }
                panic!("baresip stopped:\n{log}");
            }
            assert!(ready, "baresip did not start:\n{log}");
            Ok(Baresip {
                port,
                proc,
                _dir: dir,
            })
        })
    }

    /// A PSAP answering every call to `user` at once (answermode=auto);
    /// a call to another user gets baresip's `404 Not Found`. It quits
    /// after `seconds`.
    pub fn psap(user: &str, seconds: u32) -> Baresip {
        Baresip::start(
            "baresip-psap",
            user,
            ";answermode=auto",
            &["-t", &seconds.to_string()],
        )
    }

    /// A phone of `number` calling `uri` at once; it hangs up (BYE) and
    /// quits after `seconds`.
    pub fn call(number: &str, uri: &str, seconds: u32) -> Baresip {
        Baresip::start(
            "baresip-caller",
            number,
            "",
            &["-t", &seconds.to_string(), "-e", &format!("/dial {uri}")],
        )
    }

    pub fn log(&self) -> String {
        // The menu's call status line is redrawn many times a second.
        self.proc
            .log()
            .split(['\n', '\r'])
            .filter(|l| !l.contains(" audio=") && !l.starts_with('/') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        self.proc.wait_log(needle, within)
    }

    /// Whether the call was answered ("Call established") within `within`.
    pub fn established(&self, within: Duration) -> bool {
        self.wait_log("Call established", within)
    }

    /// Whether the call ended (BYE sent or received, or a final failure).
    pub fn closed(&self, within: Duration) -> bool {
        wait_until(within, || {
            let log = self.proc.log();
            log.contains("session closed") || log.contains("terminated (duration")
        })
    }

    /// Waits for baresip to quit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        self.proc.wait_exit(within)
    }
}

/// A trunk address that takes UDP only, in front of a peer that also
/// listens on TCP (baresip 1.0 cannot be told not to): each datagram sent
/// to `port` is passed on to the peer unchanged; the peer answers the
/// router directly (responses go by Via, in-dialog requests to its
/// Contact). Nothing listens on TCP at `port`.
pub struct UdpOnlyFront {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// TCP at `port`, held closed.
    _tcp: ClosedTcp,
}

impl UdpOnlyFront {
    pub fn start(to: u16) -> UdpOnlyFront {
        // Port 0 over UDP; the same port held closed over TCP (should
        // something hold that one over TCP, another).
        let (port, sock, tcp) = loop {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = sock.local_addr().unwrap().port();
            if let Ok(tcp) = ClosedTcp::bind(port) {
                break (port, sock, tcp);
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], ("127.0.0.1", to));
                }
            }
        });
        UdpOnlyFront {
            port,
            stop,
            _tcp: tcp,
        }
    }
}

impl Drop for UdpOnlyFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------
// SIPp trunks on UDP only

/// A SIPp trunk (UAS) listening on UDP only (`-t u1`), with every message
/// it sends and receives traced to a file the test reads. TCP at its port
/// is held closed.
pub struct SippUas {
    pub port: u16,
    proc: Proc,
    trace: PathBuf,
    _tcp: ClosedTcp,
    _dir: Dir,
}

impl SippUas {
    /// Runs `scenario` (a path) with `@KEY@` placeholders replaced, for up
    /// to `calls` calls and 50 s, on a chosen port; `extra` are more SIPp
    /// arguments.
    pub fn start(scenario: &Path, replace: &[(&str, &str)], calls: u32, extra: &[&str]) -> SippUas {
        require("sipp", "sip-tester");
        let mut text = std::fs::read_to_string(scenario).unwrap();
        for (k, v) in replace {
            text = text.replace(k, v);
        }
        let text = text.replace("@CHECK@", "");
        on_a_chosen_port("SIPp trunk", CHOSEN_PORTS, |port| {
            let tcp = ClosedTcp::bind(port).map_err(|e| e.to_string())?;
            let dir = Dir::new("sipp-uas");
            let sf = dir.path().join("scenario.xml");
            std::fs::write(&sf, &text).unwrap();
            let trace = dir.path().join("messages.log");
            let mut cmd = Command::new("sipp");
            cmd.arg("-sf")
                .arg(&sf)
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
                .args(["-m", &calls.to_string(), "-timeout", "50s", "-nostdin"])
                .args(["-trace_msg", "-message_file"])
                .arg(&trace)
                .args(extra)
                .current_dir(dir.path());
            let mut proc = Proc::spawn("sipp", &mut cmd, dir.path().join("sipp.out"));
            let pid = proc.pid();
            let bound = wait_until(Duration::from_secs(5), || {
                proc.ended().is_some() || held_by("u", port, pid)
            });
            match proc.ended() {
                Some(Some(SIPP_BIND_FAILED)) => return Err(proc.log()),
                Some(code) => panic!("SIPp stopped ({code:?}):\n{}", proc.log()),
                None => {}
            }
            assert!(bound, "SIPp did not bind UDP {port}:\n{}", proc.log());
            assert_udp_only(port);
            Ok(SippUas {
                port,
                proc,
                trace,
                _tcp: tcp,
                _dir: dir,
            })
        })
    }

    /// A trunk answering each INVITE 180, 200, then taking ACK and BYE
    /// (tests/sipp/uas.xml).
    pub fn answering(calls: u32) -> SippUas {
        SippUas::start(&root().join("tests/sipp/uas.xml"), &[], calls, &[])
    }

    /// A trunk refusing each INVITE with `code` (tests/sipp/uas_fail.xml).
    pub fn refusing(code: u16) -> SippUas {
        SippUas::start(
            &root().join("tests/sipp/uas_fail.xml"),
            &[("@CODE@", &code.to_string())],
            1,
            &[],
        )
    }

    /// A trunk that takes an INVITE and never answers.
    pub fn silent() -> SippUas {
        SippUas::start(&peer_file("uas_silent.xml"), &[], 1, &[])
    }

    /// A trunk answering calls as `answering` does, and OPTIONS, INFO,
    /// NOTIFY and UPDATE with 200 (`-aa`). SIPp counts each as a call.
    pub fn answering_probes() -> SippUas {
        SippUas::start(&root().join("tests/sipp/uas.xml"), &[], 10000, &["-aa"])
    }

    /// Everything traced so far.
    pub fn messages(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.trace).unwrap_or_default()).into_owned()
    }

    /// The messages it received, each as text.
    pub fn received(&self) -> Vec<String> {
        traced_received(&self.messages())
    }

    /// The requests of `method` it received.
    pub fn requests(&self, method: &str) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|m| m.starts_with(&format!("{method} ")))
            .collect()
    }

    /// Waits until it has received `n` requests of `method`.
    pub fn wait_requests(&self, method: &str, n: usize, within: Duration) -> bool {
        wait_until(within, || self.requests(method).len() >= n)
    }

    /// The first line of every message it received, for failure messages.
    pub fn summary(&self) -> String {
        let lines: Vec<String> = self
            .received()
            .iter()
            .map(|m| m.lines().next().unwrap_or("").to_string())
            .collect();
        format!("port {} received {lines:?}", self.port)
    }

    /// Waits for SIPp to finish its calls; its exit code (0: every call
    /// went as the scenario says).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        self.proc.wait_exit(within)
    }
}

/// The messages a SIPp `-trace_msg` file shows as received.
fn traced_received(trace: &str) -> Vec<String> {
    trace
        .split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .filter_map(|block| {
            let start = block.find(":\n")? + 2;
            Some(block[start..].trim_start().to_string())
        })
        .collect()
}

/// What a SIPp caller saw.
#[derive(Debug)]
pub struct SippCall {
    /// SIPp's exit code: 0 when the call went as the scenario says.
    pub exit: Option<i32>,
    /// Every message it received.
    pub received: Vec<String>,
    /// SIPp's error log (unexpected messages and why).
    pub errors: String,
}

impl SippCall {
    /// The status codes of the final responses it received.
    pub fn finals(&self) -> Vec<u16> {
        self.received
            .iter()
            .filter_map(|m| status(m))
            .filter(|s| *s >= 200)
            .collect()
    }

    /// Whether the call went as its scenario says.
    pub fn ok(&self) -> bool {
        self.exit == Some(0)
    }

    /// For failure messages.
    pub fn summary(&self) -> String {
        let lines: Vec<&str> = self
            .received
            .iter()
            .map(|m| m.lines().next().unwrap_or(""))
            .collect();
        format!(
            "exit {:?}, received {lines:?}, errors: {}",
            self.exit,
            self.errors.trim()
        )
    }
}

/// Runs one SIPp call of `scenario` (a path; `@KEY@` placeholders
/// replaced) to `to_port` on 127.0.0.1, as `caller` dialing `service`,
/// bounded to 40 s.
pub fn sipp_call(
    scenario: &Path,
    replace: &[(&str, &str)],
    to_port: u16,
    service: &str,
    caller: &str,
    transport: Transport,
) -> SippCall {
    require("sipp", "sip-tester");
    let mut text = std::fs::read_to_string(scenario).unwrap();
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    on_a_chosen_port("SIPp caller", CHOSEN_PORTS, |port| {
        // Over TCP SIPp listens at its port; over UDP, TCP there is held
        // closed (see `common::CHOSEN_PORTS`).
        let _reserved = match transport {
            Transport::Tcp => None,
            Transport::Udp => Some(ClosedTcp::bind(port).map_err(|e| e.to_string())?),
        };
        let dir = Dir::new("sipp-uac");
        let sf = dir.path().join("scenario.xml");
        std::fs::write(&sf, &text).unwrap();
        let trace = dir.path().join("messages.log");
        let err = dir.path().join("errors.log");
        let mut cmd = Command::new("sipp");
        cmd.arg(format!("127.0.0.1:{to_port}"))
            .arg("-sf")
            .arg(&sf)
            .args(["-s", service, "-key", "caller", caller])
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-t",
                if transport == Transport::Tcp {
                    "t1"
                } else {
                    "u1"
                },
            ])
            .args(["-m", "1", "-timeout", "30s", "-nostdin"])
            // As a phone does, a stray response (a 180 an edge proxy's
            // workers passed on behind its 200) is dropped, not a reason to
            // abort the call.
            .args(["-default_behaviors", "all,-abortunexp"])
            .args(["-trace_msg", "-message_file"])
            .arg(&trace)
            .args(["-trace_err", "-error_file"])
            .arg(&err)
            .current_dir(dir.path());
        let mut proc = Proc::spawn("sipp-uac", &mut cmd, dir.path().join("sipp.out"));
        let exit = proc.wait_exit(Duration::from_secs(40));
        if exit == Some(SIPP_BIND_FAILED) {
            return Err(proc.log());
        }
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        Ok(SippCall {
            exit,
            received: traced_received(&read(&trace)),
            errors: read(&err),
        })
    })
}

// ---------------------------------------------------------------------
// sipsak

/// What sipsak got back.
#[derive(Debug)]
pub struct SipsakRun {
    pub exit: Option<i32>,
    /// The final status code of the last response received, if any.
    pub status: Option<u16>,
    pub output: String,
}

/// Runs sipsak with `args` (bounded to 20 s) and reads its final answer.
/// `-vv` makes it print every response it receives.
pub fn sipsak(args: &[&str]) -> SipsakRun {
    let program = require("sipsak", "sipsak");
    let dir = Dir::new("sipsak");
    let mut cmd = Command::new(program);
    cmd.args(["-vv", "-H", "127.0.0.1"]).args(args);
    let mut proc = Proc::spawn("sipsak", &mut cmd, dir.path().join("sipsak.out"));
    let exit = proc.wait_exit(Duration::from_secs(20));
    let output = proc.log();
    let status = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SIP/2.0 "))
        .filter_map(|l| l.split(' ').next()?.parse::<u16>().ok())
        .rfind(|c| *c >= 200);
    SipsakRun {
        exit,
        status,
        output,
    }
}

// ---------------------------------------------------------------------
// Raw SIP over UDP

/// A UDP socket on 127.0.0.1 that sends what the test writes and hands
/// back what comes in.
pub struct RawUdp {
    sock: UdpSocket,
    pub port: u16,
}

impl RawUdp {
    pub fn new() -> RawUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        RawUdp { sock, port }
    }

    pub fn send(&self, to: u16, msg: &[u8]) {
        self.sock.send_to(msg, ("127.0.0.1", to)).unwrap();
    }

    /// The next datagram within `within`.
    pub fn recv(&self, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(_) => continue,
            }
        }
    }

    /// The next response with a status of at least `min` within `within`
    /// (requests and lower statuses are skipped).
    pub fn response(&self, min: u16, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let m = self.recv(left)?;
            if status(&m).is_some_and(|s| s >= min) {
                return Some(m);
            }
        }
    }
}

/// The status code of a response.
pub fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The values of header `name` (or its compact form `short`), in order.
pub fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A request written line by line (joined with CRLF, ending with an empty
/// line; Content-Length 0 is the caller's to add).
pub fn request(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s
}
