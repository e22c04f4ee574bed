//! Helpers for the admin API tests: a plain HTTP/1.1 client (chunked
//! bodies decoded), the database each test runs on (a SQLite file, or a
//! fresh PostgreSQL database under SOSROUTER_TEST_PG_URL), tokens, and a
//! raw SIP caller and trunk on UDP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, Router, Trunks};

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
            panic!("truncated chunked body");
        };
        let size_text = std::str::from_utf8(&b[..end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        b = &b[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn parse_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(buf)));
    let headers = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let raw = &buf[split + 4..];
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Resp {
        status,
        headers,
        body,
    }
}

/// The admin API of one running router.
#[derive(Clone, Copy)]
pub struct Api {
    pub port: u16,
}

impl Api {
    pub fn of(router: &Router) -> Api {
        router.wait_log(
            "listening admin http 127.0.0.1:",
            1,
            Duration::from_secs(10),
        );
        let port = router
            .log()
            .lines()
            .find_map(|l| l.split("listening admin http 127.0.0.1:").nth(1))
            .and_then(|p| p.trim().parse().ok())
            .unwrap();
        Api { port }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(c) = content_type {
            head.push_str(&format!("Content-Type: {c}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        parse_response(&buf)
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None, b"")
    }

    pub fn delete(&self, path: &str, token: &str) -> Resp {
        self.call("DELETE", path, Some(token), None, b"")
    }

    pub fn send_json(&self, method: &str, path: &str, token: &str, v: &Value) -> Resp {
        self.call(
            method,
            path,
            Some(token),
            Some("application/json"),
            v.to_string().as_bytes(),
        )
    }

    /// Sends only the head of a request declaring a body of `len` bytes,
    /// and reads the answer before sending any of it.
    pub fn declared_only(&self, path: &str, token: &str, len: usize) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: text/csv\r\nContent-Length: {len}\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        parse_response(&buf)
    }

    /// Sends a chunked body of `len` bytes (no declared length) in full,
    /// then reads the answer.
    pub fn chunked(&self, path: &str, token: &str, len: usize) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        let mut body = b"number,country\n".to_vec();
        while body.len() < len {
            body.extend_from_slice(b"+12125550100,US\n");
        }
        let reader = s.try_clone().unwrap();
        let read = std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = Vec::new();
            let _ = reader.read_to_end(&mut buf);
            buf
        });
        for chunk in body.chunks(64 * 1024) {
            if write!(s, "{:x}\r\n", chunk.len()).is_err()
                || s.write_all(chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        parse_response(&read.join().unwrap())
    }
}

/// A token and its `[[admin.token]]` table.
pub fn token_table(name: &str, role: &str, tenant: Option<&str>) -> (String, String) {
    let token = format!("test-{name}-token");
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let mut t = format!("[[admin.token]]\nname = \"{name}\"\nrole = \"{role}\"\n");
    if let Some(tenant) = tenant {
        t.push_str(&format!("tenant = \"{tenant}\"\n"));
    }
    t.push_str(&format!("sha256 = \"{digest}\"\n"));
    (token, t)
}

/// The tokens every test has: an operator, and the admins of `acme` and
/// `globex`.
pub struct Tokens {
    pub operator: String,
    pub acme: String,
    pub globex: String,
    pub config: String,
}

pub fn tokens() -> Tokens {
    let (operator, a) = token_table("ops", "operator", None);
    let (acme, b) = token_table("acme-admin", "tenant-admin", Some("acme"));
    let (globex, c) = token_table("globex-admin", "tenant-admin", Some("globex"));
    Tokens {
        operator,
        acme,
        globex,
        config: format!("{a}{b}{c}"),
    }
}

/// Where a test's data lives.
pub enum Db {
    Sqlite(common::tempdir::Dir),
    /// The database, and the router's data directory (its inventory
    /// checkpoint).
    Postgres {
        admin_url: String,
        name: String,
        dir: common::tempdir::Dir,
    },
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(common::tempdir::Dir::new("db"))
    }

    /// A fresh database on the test cluster, or `None` (with a note) when
    /// SOSROUTER_TEST_PG_URL is not set outside CI. Under CI=true a
    /// missing URL fails the test.
    pub fn postgres(test: &str) -> Option<Db> {
        let Ok(url) = std::env::var("SOSROUTER_TEST_PG_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("SOSROUTER_TEST_PG_URL is not set: .ci/run starts PostgreSQL and sets it");
            }
            eprintln!(
                "{test}: skipped: SOSROUTER_TEST_PG_URL is not set (.ci/postgres starts a cluster)"
            );
            return None;
        };
        let name = format!("sosrouter_{}_{}", std::process::id(), rand::random::<u32>());
        pg_exec(&url, &format!("CREATE DATABASE {name}"));
        Some(Db::Postgres {
            admin_url: url,
            name,
            dir: common::tempdir::Dir::new("data"),
        })
    }

    /// The `[database]` section for the router.
    pub fn section(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!(
                "[database]\ndata_dir = \"{}\"\npoll_interval_ms = 200\n",
                dir.path().display()
            ),
            Db::Postgres { dir, .. } => format!(
                "[database]\nurl = \"{}\"\ndata_dir = \"{}\"\npoll_interval_ms = 200\n",
                self.url(),
                dir.path().display()
            ),
        }
    }

    /// The router's data directory (its inventory checkpoint).
    pub fn data_dir(&self) -> std::path::PathBuf {
        match self {
            Db::Sqlite(dir) => dir.path().to_path_buf(),
            Db::Postgres { dir, .. } => dir.path().to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}/sosrouter.db", dir.path().display()),
            Db::Postgres {
                admin_url, name, ..
            } => {
                let base = admin_url.rsplit_once('/').unwrap().0;
                format!("{base}/{name}")
            }
        }
    }
}

impl Db {
    /// Every call record as stored: (outcome column, the record), read
    /// straight from the database (the router may be dead).
    pub fn stored_records(&self) -> Vec<(String, Value)> {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let url = self.url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = sqlx::AnyConnection::connect(&url)
                .await
                .expect("connect to the test database");
            let rows =
                sqlx::query("SELECT outcome, record FROM call_records ORDER BY invite_ms, id")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            let _ = c.close().await;
            rows.iter()
                .map(|r| {
                    let outcome: String = r.get(0);
                    let text: String = r.get(1);
                    (outcome, serde_json::from_str(&text).unwrap())
                })
                .collect()
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres {
            admin_url, name, ..
        } = self
        {
            pg_exec(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// A lock on the `numbers` table, held by another session until dropped:
/// a router reading the inventory waits for it.
pub struct NumbersLocked {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NumbersLocked {
    pub fn hold(url: &str) -> NumbersLocked {
        use sqlx::{Connection, Executor};
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let url = url.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
                c.execute("BEGIN").await.unwrap();
                c.execute("LOCK TABLE numbers IN ACCESS EXCLUSIVE MODE")
                    .await
                    .unwrap();
                locked_tx.send(()).unwrap();
                let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                c.execute("COMMIT").await.unwrap();
                let _ = c.close().await;
            });
        });
        locked_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the numbers table locked");
        NumbersLocked {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for NumbersLocked {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pg_exec(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::postgres::PgConnection::connect(url)
            .await
            .expect("connect to SOSROUTER_TEST_PG_URL");
        c.execute(sql).await.expect(sql);
        let _ = c.close().await;
    });
}

/// The lab configuration in emergency mode on `trunks`, with the admin API,
/// the tokens and the database.
pub fn emergency_config(trunks: &Trunks, db: &Db, tokens: &Tokens) -> String {
    let extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n{}\n{}\n",
        tokens.config,
        db.section()
    );
    // The registered address added as a body part makes INVITEs too big
    // for UDP by default; the SIPp and raw trunks here listen on UDP only.
    trunks
        .lab_config(&extra)
        .replace("mode = \"static\"", "mode = \"emergency\"")
        .replace("[sip]\n", "[sip]\nudp_max_request = 65000\n")
}

/// A raw SIP caller on UDP.
pub struct Caller {
    sock: UdpSocket,
}

impl Caller {
    pub fn new() -> Caller {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Caller { sock }
    }

    /// Sends an INVITE to 911 from `caller`.
    pub fn invite(&self, router_port: u16, caller: &str, call_id: &str) {
        self.invite_with(router_port, "911", caller, call_id, "", "");
    }

    /// Sends an INVITE to `dialed` from `caller`, the From with a display
    /// name (`""` for none) and `extra` header lines (each ending in CRLF).
    pub fn invite_with(
        &self,
        router_port: u16,
        dialed: &str,
        caller: &str,
        call_id: &str,
        display: &str,
        extra: &str,
    ) {
        let me = self.sock.local_addr().unwrap();
        let msg = format!(
            "INVITE sip:{dialed}@127.0.0.1:{router_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\n\
             Max-Forwards: 70\r\n\
             To: <sip:{dialed}@127.0.0.1>\r\n\
             From: {display}<sip:{caller}@127.0.0.1>;tag=t{call_id}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{caller}@{me}>\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        self.sock
            .send_to(msg.as_bytes(), ("127.0.0.1", router_port))
            .unwrap();
    }
}

/// A raw SIP trunk on UDP that only listens.
pub struct Trunk {
    pub sock: UdpSocket,
    pub port: u16,
}

impl Trunk {
    pub fn new() -> Trunk {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        Trunk { sock, port }
    }

    /// Waits for the INVITE of `call_id`; its text. `router` is the one
    /// whose log tells why, when it never comes.
    pub fn invite(&self, call_id: &str, within: Duration, router: &Router) -> String {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("INVITE ") && text.contains(&format!("Call-ID: {call_id}\r\n"))
                {
                    return text;
                }
            }
        }
        panic!(
            "no INVITE for {call_id} within {within:?}; router log:\n{}",
            router.log()
        );
    }
}

/// The value of a header line in a SIP message.
pub fn sip_header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
