//! Runs the real router binary and SIPp on loopback for the integration
//! tests. Every process started here is ended by its PID when its handle
//! drops; every SIPp run is bounded in calls and time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod pki;

pub const BIN: &str = env!("CARGO_BIN_EXE_sosrouter");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A UDP socket on 127.0.0.1:`port` (0: any) that takes nothing: it is
/// connected to itself, so a datagram from anyone else finds no socket and
/// is refused (ICMP port unreachable) as at a closed port, while no other
/// socket can bind the port.
pub fn closed_udp(port: u16) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(("127.0.0.1", port))?;
    sock.connect(sock.local_addr()?)?;
    Ok(sock)
}

/// A TCP socket bound to 127.0.0.1 that does not listen: a connection to
/// it is refused (RST) as at a closed port. It has no SO_REUSEADDR, so no
/// other socket can bind the port while it lives.
pub struct ClosedTcp {
    pub port: u16,
    _sock: socket2::Socket,
}

impl ClosedTcp {
    pub fn bind(port: u16) -> std::io::Result<ClosedTcp> {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        Ok(ClosedTcp { port, _sock: sock })
    }

    /// A chosen port (see `CHOSEN_PORTS`) kept for the test, TCP held
    /// closed there, for the programs it starts there over UDP.
    pub fn reserve() -> ClosedTcp {
        on_a_chosen_port("a port for the test", CHOSEN_PORTS, |port| {
            ClosedTcp::bind(port).map_err(|e| e.to_string())
        })
    }
}

/// A port on 127.0.0.1 where nothing answers, held by the test: UDP and
/// TCP to it are refused as at a closed port (a trunk that is down), and
/// no other socket, of this test or another, can take it while this lives.
pub struct ClosedPort {
    pub port: u16,
    _udp: UdpSocket,
    _tcp: ClosedTcp,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        loop {
            let udp = closed_udp(0).expect("bind udp");
            let port = udp.local_addr().unwrap().port();
            // Should something hold the port over TCP (an outgoing
            // connection may), another.
            if let Ok(tcp) = ClosedTcp::bind(port) {
                return ClosedPort {
                    port,
                    _udp: udp,
                    _tcp: tcp,
                };
            }
        }
    }
}

/// The ports of the lab's four outbound trunks. Each starts as a closed
/// port held while this lives (a trunk that is down: a call or a probe
/// sent there is refused), until the test puts a trunk of its own there.
pub struct Trunks {
    pub psap: u16,
    pub screening: u16,
    pub test: u16,
    pub last_resort: u16,
    _closed: [ClosedPort; 4],
}

impl Trunks {
    pub fn new() -> Trunks {
        let closed = [(); 4].map(|_| ClosedPort::new());
        Trunks {
            psap: closed[0].port,
            screening: closed[1].port,
            test: closed[2].port,
            last_resort: closed[3].port,
            _closed: closed,
        }
    }

    pub fn with_psap(self, port: u16) -> Trunks {
        Trunks { psap: port, ..self }
    }

    pub fn with_screening(self, port: u16) -> Trunks {
        Trunks {
            screening: port,
            ..self
        }
    }

    pub fn with_test(self, port: u16) -> Trunks {
        Trunks { test: port, ..self }
    }

    pub fn with_last_resort(self, port: u16) -> Trunks {
        Trunks {
            last_resort: port,
            ..self
        }
    }

    /// `lab_config` on these trunks.
    pub fn lab_config(&self, extra: &str) -> String {
        lab_config(
            self.psap,
            self.screening,
            self.test,
            self.last_resort,
            extra,
        )
    }
}

/// Ports for the programs that cannot bind port 0 and say which port they
/// got (SIPp, Kamailio, baresip): below the range the kernel hands out for
/// port 0 (32768-60999 by default), so that no socket bound to port 0 ever
/// takes one, and above the RTP ports baresip is given (10000-29999). No
/// port is tried by binding and closing it first: the program is started
/// on it, and when the program finds it taken, another is picked
/// (`on_a_chosen_port`).
///
/// Among the tests, the TCP side of a chosen port is its reservation: a
/// program started on one binds TCP there itself, or the test holds TCP
/// there closed (`ClosedTcp`) as long as the program runs, so that two
/// tests never share a chosen port even when one uses UDP only.
pub const CHOSEN_PORTS: std::ops::Range<u16> = 30000..32768;

/// Calls `start` with ports picked at random in `range` until one is not
/// taken: `start` returns Err, saying why, when the port was taken, and
/// panics on any other failure. `what` names the program for the message
/// when every try fails.
pub fn on_a_chosen_port<T>(
    what: &str,
    range: std::ops::Range<u16>,
    mut start: impl FnMut(u16) -> Result<T, String>,
) -> T {
    const TRIES: usize = 20;
    let mut why = String::new();
    for _ in 0..TRIES {
        let port = rand::random_range(range.clone());
        match start(port) {
            Ok(t) => return t,
            Err(e) => why = format!("port {port}: {e}"),
        }
    }
    panic!("{what}: {TRIES} ports in {range:?} were taken; the last: {why}");
}

/// Whether process `pid`, or a process of the group it leads, has port
/// `port` bound on 127.0.0.1 over `proto` ("u" for UDP, "t" for TCP, where
/// it must listen), as `ss` shows.
pub fn held_by(proto: &str, port: u16, pid: u32) -> bool {
    let out = Command::new("ss")
        .args([&format!("-Hln{proto}p"), &format!("sport = :{port}")])
        .output()
        .expect("run ss (Debian package iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains(&format!("127.0.0.1:{port} ")))
        .flat_map(|l| l.split("pid=").skip(1))
        .filter_map(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .any(|p: u32| p == pid || process_group(p) == Some(pid))
}

/// The process group of `pid`, from /proc.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...; comm may hold spaces.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// SIPp's exit code when it could not bind a socket (-2).
pub const SIPP_BIND_FAILED: i32 = 254;

/// The lab configuration with the router on port 0 and the trunks on the
/// given ports. `extra` is appended (routes, sections).
pub fn lab_config(psap: u16, screening: u16, test: u16, last_resort: u16, extra: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
allow = ["127.0.0.1/32"]

[sip.timers]
t1_ms = 500
no_answer_ms = 1500

[routing]
# The proxy tests use the static table; the emergency tests set their own.
mode = "static"
failover_codes = [408, 480, 500, 502, 503, 504]

# SIPp trunks count every message they answer as a call: no OPTIONS
# probes here (tests/health.rs covers them with its own trunks).
[health]
interval_s = 0

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.1/32"]
country = "US"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:{psap}"

[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:{screening}"

[[trunk]]
name = "test"
kind = "test"
uri = "sip:127.0.0.1:{test}"

[[trunk]]
name = "last-resort"
kind = "last-resort"
uri = "sip:127.0.0.1:{last_resort}"

[[route]]
numbers = ["911", "112", "urn:service:sos"]
targets = ["psap", "screening", "last-resort"]

[[route]]
numbers = ["933"]
targets = ["test", "last-resort"]
{extra}
"#
    )
}

/// A running router.
pub struct Router {
    child: Child,
    /// Its SIP port on 127.0.0.1: over UDP, and over TCP when it listens
    /// on TCP there.
    pub port: u16,
    pub log: Arc<Mutex<String>>,
    _dir: tempdir::Dir,
}

/// The lines the router logs for its SIP listeners on 127.0.0.1.
const LISTENING_UDP: &str = "listening sip udp 127.0.0.1:";
const LISTENING_TCP: &str = "listening sip tcp 127.0.0.1:";
/// What a router with a database logs once its inventory is loaded, or
/// once it knows it cannot be.
const INVENTORY_SETTLED: [&str; 2] = ["inventory ready", "the inventory file was not imported"];

/// The port a `listening ...` log line names after `prefix`.
fn listening_port(line: &str, prefix: &str) -> Option<u16> {
    line.split(prefix).nth(1)?.trim().parse().ok()
}

impl Router {
    /// Starts `sosrouter run` on a config text; waits until it listens.
    pub fn start(config: &str, args: &[&str]) -> Router {
        Router::try_start(config, args).unwrap_or_else(|log| panic!("router did not start: {log}"))
    }

    /// As `start`, but gives back the router's log when it did not start
    /// (it stopped, as on a port of the configuration that was taken, or
    /// it did not listen within 60 s).
    ///
    /// The tests configure port 0 and read the ports the router got from
    /// its log. Its TCP listener on port 0 takes the port of its UDP twin,
    /// unless something holds that port over TCP (an outgoing connection
    /// may): then it takes another. The tests speak to one port over both,
    /// so such a router is stopped and started again, on new ports.
    pub fn try_start(config: &str, args: &[&str]) -> Result<Router, String> {
        Router::start_with(config, args, true)
    }

    /// Starts the router without waiting for its inventory to load (with
    /// a database, it takes calls meanwhile).
    pub fn start_loading(config: &str) -> Router {
        Router::start_with(config, &[], false)
            .unwrap_or_else(|log| panic!("router did not start: {log}"))
    }

    fn start_with(config: &str, args: &[&str], wait_inventory: bool) -> Result<Router, String> {
        let text = match args.iter().position(|a| *a == "--config") {
            Some(i) => std::fs::read_to_string(args[i + 1]).unwrap_or_default(),
            None => config.to_string(),
        };
        let tcp = text.contains("\"tcp:127.0.0.1:");
        let mut log = String::new();
        for _ in 0..5 {
            let (router, tcp_port) = Router::spawn(config, args, tcp, &text, wait_inventory)?;
            if tcp_port.is_none_or(|p| p == router.port) {
                return Ok(router);
            }
            log = router.log();
        }
        Err(format!(
            "its TCP listener never got the port of its UDP one:\n{log}"
        ))
    }

    /// Starts the router and waits for its UDP port on 127.0.0.1 and, when
    /// `tcp`, its TCP port there.
    fn spawn(
        config: &str,
        args: &[&str],
        tcp: bool,
        text: &str,
        wait_inventory: bool,
    ) -> Result<(Router, Option<u16>), String> {
        let dir = tempdir::Dir::new("router");
        let path = dir.path().join("sosrouter.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("run");
        if !args.contains(&"--config") {
            cmd.arg("--config").arg(&path);
        }
        cmd.args(args);
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start sosrouter");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line, LISTENING_UDP) {
                    let _ = tx.send((false, port));
                }
                if let Some(port) = listening_port(&line, LISTENING_TCP) {
                    let _ = tx.send((true, port));
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        // Generous: with every test binary running in parallel on two
        // cores, a start-up once took longer than 20 s.
        let end = Instant::now() + Duration::from_secs(60);
        let (mut udp_port, mut tcp_port) = (None, None);
        while udp_port.is_none() || (tcp && tcp_port.is_none()) {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((false, port)) => {
                    udp_port.get_or_insert(port);
                }
                Ok((true, port)) => {
                    tcp_port.get_or_insert(port);
                }
                // It stopped (the reader saw the end of its output), or
                // the time is up.
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = log.lock().unwrap().clone();
                    return Err(log);
                }
            }
        }
        let router = Router {
            child,
            port: udp_port.unwrap(),
            log,
            _dir: dir,
        };
        // With a database the router takes calls at once and loads its
        // inventory beside them: the tests start calling once it is loaded
        // (or has said why not).
        let database =
            text.contains("[database]") || std::env::var_os("SOSROUTER_DATABASE_URL").is_some();
        if database && wait_inventory {
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let l = router.log();
                if INVENTORY_SETTLED.iter().any(|m| l.contains(m)) {
                    break;
                }
                if Instant::now() > end {
                    return Err(format!("the inventory never loaded:\n{l}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok((router, tcp_port))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle` `count` times, or panics.
    pub fn wait_log(&self, needle: &str, count: usize, within: Duration) {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never showed {needle:?} x{count}:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file it was started with (a reload reads it).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("sosrouter.toml")
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test with a clear message when SIPp is not installed.
pub fn require_sipp() {
    let ok = Command::new("sipp").arg("-v").output().is_ok();
    assert!(
        ok,
        "SIPp is needed (Debian package sip-tester); the README's test command installs it"
    );
}

/// A scenario file from tests/sipp with `@KEY@` placeholders replaced,
/// written to a temporary directory.
pub fn scenario(name: &str, replace: &[(&str, &str)], dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("tests/sipp").join(name)).unwrap();
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    text = text.replace("@CHECK@", "");
    let out = dir.join(name);
    std::fs::write(&out, text).unwrap();
    out
}

/// A SIPp trunk (UAS) in the background.
pub struct Uas {
    child: Child,
    pub port: u16,
    /// The other transport of its port, held closed: a request sent there
    /// is refused, and no other test takes the port.
    _closed: Option<Closed>,
    _dir: tempdir::Dir,
}

/// One transport of a port, held closed.
enum Closed {
    Udp(UdpSocket),
    Tcp(ClosedTcp),
}

impl Uas {
    /// A trunk on a chosen port of its own, over UDP or TCP (`tcp`), the
    /// other transport held closed there; for up to `calls` calls and 60 s.
    pub fn start(file: &str, replace: &[(&str, &str)], tcp: bool, calls: u32) -> Uas {
        on_a_chosen_port("SIPp trunk", CHOSEN_PORTS, |port| {
            let closed = if tcp {
                closed_udp(port).map(Closed::Udp)
            } else {
                ClosedTcp::bind(port).map(Closed::Tcp)
            };
            let closed = closed.map_err(|e| e.to_string())?;
            let mut uas = Uas::spawn(file, replace, port, tcp, calls)?;
            uas._closed = Some(closed);
            Ok(uas)
        })
    }

    /// A trunk over UDP on the port `held` keeps closed over TCP, for a
    /// test that puts one trunk after another where the router's
    /// configuration says. Between them the port stays the test's among
    /// the tests (see `CHOSEN_PORTS`); should another program hold it for
    /// a moment, the start is tried again for up to 5 s.
    pub fn start_on(held: &ClosedTcp, file: &str, replace: &[(&str, &str)], calls: u32) -> Uas {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match Uas::spawn(file, replace, held.port, false, calls) {
                Ok(uas) => return uas,
                Err(e) if Instant::now() > end => panic!("SIPp trunk on port {}: {e}", held.port),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Starts SIPp on `port` and waits until it holds it; Err when the port
    /// was taken.
    fn spawn(
        file: &str,
        replace: &[(&str, &str)],
        port: u16,
        tcp: bool,
        calls: u32,
    ) -> Result<Uas, String> {
        require_sipp();
        let dir = tempdir::Dir::new("uas");
        let sf = scenario(file, replace, dir.path());
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(&sf)
            .args(["-i", "127.0.0.1", "-p"])
            .arg(port.to_string());
        cmd.args([
            "-m",
            &calls.to_string(),
            "-timeout",
            "60s",
            "-nostdin",
            "-trace_err",
        ]);
        cmd.args(["-t", if tcp { "t1" } else { "u1" }]);
        cmd.current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start sipp uas");
        let mut uas = Uas {
            child,
            port,
            _closed: None,
            _dir: dir,
        };
        let proto = if tcp { "t" } else { "u" };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = uas.child.try_wait() {
                if status.code() == Some(SIPP_BIND_FAILED) {
                    return Err(format!("SIPp could not bind port {port}"));
                }
                panic!("the SIPp trunk {file} on port {port} ended at once: {status}");
            }
            if held_by(proto, port, uas.child.id()) {
                return Ok(uas);
            }
            assert!(
                Instant::now() < end,
                "the SIPp trunk {file} did not bind port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the UAS to finish its calls; returns its exit code.
    pub fn wait(mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of a SIPp caller run.
#[derive(Debug)]
pub struct UacResult {
    pub code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub errors: String,
    pub elapsed: Duration,
}

/// A SIPp caller of scenario `file` to the router, `calls` at `rate` a
/// second, from local port `port`, run in `dir`; the caller adds timeout,
/// transport and output.
#[allow(clippy::too_many_arguments)]
fn uac_command(
    file: &str,
    replace: &[(&str, &str)],
    router_port: u16,
    service: &str,
    caller: &str,
    (calls, rate): (u32, u32),
    port: u16,
    dir: &tempdir::Dir,
) -> Command {
    require_sipp();
    let sf = scenario(file, replace, dir.path());
    let mut cmd = Command::new("sipp");
    cmd.arg(format!("127.0.0.1:{router_port}"))
        .arg("-sf")
        .arg(&sf)
        .args([
            "-s",
            service,
            "-key",
            "caller",
            caller,
            "-i",
            "127.0.0.1",
            "-p",
        ])
        .arg(port.to_string())
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-nostdin",
        ])
        .current_dir(dir.path());
    cmd
}

/// The reservation of a SIPp caller's chosen port (see `CHOSEN_PORTS`):
/// over TCP, SIPp listens there itself; over UDP, the test holds TCP there
/// closed.
fn reserve_caller_port(port: u16, tcp: bool) -> Result<Option<ClosedTcp>, String> {
    if tcp {
        return Ok(None);
    }
    ClosedTcp::bind(port).map(Some).map_err(|e| e.to_string())
}

/// Runs a SIPp caller against the router to completion (bounded by
/// `calls` and a timeout).
#[allow(clippy::too_many_arguments)]
pub fn uac(
    file: &str,
    replace: &[(&str, &str)],
    router_port: u16,
    service: &str,
    caller: &str,
    calls: u32,
    rate: u32,
    tcp: bool,
) -> UacResult {
    let (out, dir, elapsed) = on_a_chosen_port("SIPp caller", CHOSEN_PORTS, |port| {
        let _reserved = reserve_caller_port(port, tcp)?;
        let dir = tempdir::Dir::new("uac");
        let start = Instant::now();
        let out = uac_command(
            file,
            replace,
            router_port,
            service,
            caller,
            (calls, rate),
            port,
            &dir,
        )
        .args(["-timeout", "60s", "-trace_err", "-trace_stat", "-fd", "1"])
        .args(["-t", if tcp { "t1" } else { "u1" }])
        .output()
        .expect("run sipp uac");
        if out.status.code() == Some(SIPP_BIND_FAILED) {
            return Err("SIPp could not bind it".to_string());
        }
        Ok((out, dir, start.elapsed()))
    });
    let mut errors = String::new();
    let mut successful = 0;
    let mut failed = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_errors.log") {
            errors.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        if name.ends_with(".csv") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
            if let Some(last) = lines.last() {
                let vals: Vec<&str> = last.split(';').collect();
                let get = |k: &str| {
                    header
                        .iter()
                        .position(|h| *h == k)
                        .and_then(|i| vals.get(i))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                successful = get("SuccessfulCall(C)");
                failed = get("FailedCall(C)");
            }
        }
    }
    UacResult {
        code: out.status.code(),
        successful,
        failed,
        errors,
        elapsed,
    }
}

/// A SIPp caller running in the background (ended by its PID on drop),
/// for calls that must still be up when the test acts.
pub struct UacBackground {
    child: Child,
    _reserved: Option<ClosedTcp>,
    _dir: tempdir::Dir,
}

impl UacBackground {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        file: &str,
        replace: &[(&str, &str)],
        router_port: u16,
        service: &str,
        caller: &str,
        calls: u32,
        rate: u32,
    ) -> UacBackground {
        on_a_chosen_port("SIPp caller", CHOSEN_PORTS, |port| {
            let reserved = reserve_caller_port(port, false)?;
            let dir = tempdir::Dir::new("uac-bg");
            let child = uac_command(
                file,
                replace,
                router_port,
                service,
                caller,
                (calls, rate),
                port,
                &dir,
            )
            .args(["-timeout", "120s", "-t", "u1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp uac");
            let mut uac = UacBackground {
                child,
                _reserved: reserved,
                _dir: dir,
            };
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = uac.child.try_wait() {
                    if status.code() == Some(SIPP_BIND_FAILED) {
                        return Err("SIPp could not bind it".to_string());
                    }
                    panic!("the SIPp caller {file} ended at once: {status}");
                }
                if held_by("u", port, uac.child.id()) {
                    return Ok(uac);
                }
                assert!(
                    Instant::now() < end,
                    "the SIPp caller {file} did not bind port {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }
}

impl Drop for UacBackground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port the router's `what` (admin or metrics) HTTP listener took.
pub fn http_port(router: &Router, what: &str) -> u16 {
    router.wait_log(
        &format!("listening {what} http 127.0.0.1:"),
        1,
        Duration::from_secs(5),
    );
    router
        .log()
        .lines()
        .find_map(|l| l.split(&format!("listening {what} http 127.0.0.1:")).nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap()
}

/// A plain HTTP GET: (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series in Prometheus text (0 when absent).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[name.len()..];
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A throwaway directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p = std::env::temp_dir()
                .join(format!("sosrouter-test-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How a raw trunk answers INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 180 then 200.
    Ok,
    /// This final response.
    Code(u16),
    /// Nothing at all.
    Silent,
}

/// A trunk on one port over UDP and TCP, answering as told, handing every
/// request it receives to the test.
pub struct RawTrunk {
    pub port: u16,
    rx: std::sync::mpsc::Receiver<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RawTrunk {
    pub fn start(answer: Answer) -> RawTrunk {
        use std::sync::atomic::{AtomicBool, Ordering};
        // Port 0 over UDP, then the same port over TCP; should something
        // hold that one over TCP (an outgoing connection may), another.
        let (port, udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (port, udp, tcp);
            }
        };
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s1, tx1) = (stop.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s1.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    for r in replies(&msg, answer, port) {
                        let _ = udp.send_to(r.as_bytes(), from);
                    }
                    let _ = tx1.send(msg);
                }
            }
        });
        let s2 = stop.clone();
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        let (s3, tx3) = (s2.clone(), tx.clone());
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_millis(100)))
                                .unwrap();
                            let mut acc: Vec<u8> = Vec::new();
                            let mut buf = vec![0u8; 65536];
                            while !s3.load(Ordering::Relaxed) {
                                match conn.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => acc.extend_from_slice(&buf[..n]),
                                    Err(_) => {}
                                }
                                while let Some(len) = framed_len(&acc) {
                                    let msg = String::from_utf8_lossy(&acc[..len]).into_owned();
                                    acc.drain(..len);
                                    for r in replies(&msg, answer, port) {
                                        let _ = conn.write_all(r.as_bytes());
                                    }
                                    let _ = tx3.send(msg);
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        RawTrunk { port, rx, stop }
    }

    /// The next request of this method received within `within`.
    pub fn next(&self, method: &str, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(m) if m.starts_with(&format!("{method} ")) => return Some(m),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for RawTrunk {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Length of the first whole message in stream bytes.
fn framed_len(b: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(b);
    let head_end = text.find("\r\n\r\n")? + 4;
    let cl = text[..head_end]
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim().eq_ignore_ascii_case("content-length") || n.trim() == "l")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (b.len() >= head_end + cl).then_some(head_end + cl)
}

/// What a raw trunk sends back for a request.
fn replies(req: &str, answer: Answer, port: u16) -> Vec<String> {
    let method = req.split(' ').next().unwrap_or("");
    if method == "ACK" || method.starts_with("SIP/") {
        return Vec::new();
    }
    let mut head = String::new();
    for l in req.split("\r\n") {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if [
            "via",
            "v",
            "from",
            "f",
            "call-id",
            "i",
            "cseq",
            "record-route",
        ]
        .contains(&name.as_str())
        {
            head.push_str(l);
            head.push_str("\r\n");
        }
        if name == "to" || name == "t" {
            head.push_str(l);
            if !l.contains("tag=") {
                head.push_str(";tag=trunk1");
            }
            head.push_str("\r\n");
        }
    }
    let resp = |code: u16, reason: &str| {
        format!("SIP/2.0 {code} {reason}\r\n{head}Contact: <sip:trunk@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n")
    };
    match (method, answer) {
        ("INVITE", Answer::Ok) => vec![resp(180, "Ringing"), resp(200, "OK")],
        ("INVITE", Answer::Code(c)) => vec![resp(c, "Refused")],
        ("INVITE", Answer::Silent) => Vec::new(),
        _ => vec![resp(200, "OK")],
    }
}
