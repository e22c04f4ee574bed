//! The router's database over TLS: a PostgreSQL cluster started by the
//! test on loopback, taking connections over TLS only (`hostssl` in its
//! pg_hba.conf), with a server certificate made here (rcgen). The router
//! connects with `sslmode=verify-full` and the test's CA, and refuses a
//! server its CA did not sign.
//!
//! Needs PostgreSQL's server programs (Debian package postgresql; `bash
//! .ci/run` installs them); run as root, the cluster runs as the
//! `postgres` user, as .ci/postgres does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::pki::Ca;
use common::tempdir::Dir;
use common::{on_a_chosen_port, Router, Trunks, CHOSEN_PORTS};

/// PostgreSQL's programs: the newest Debian cluster's, else on PATH.
fn pg_bin(program: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs.extend(["/usr/local/bin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is needed (Debian package postgresql); `bash .ci/run` installs it")
        })
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command as the cluster's owner: `postgres` when the test runs as
/// root (PostgreSQL refuses to run as root).
fn as_owner(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A cluster over TLS only, stopped (by its pg_ctl) when dropped.
struct Cluster {
    port: u16,
    dir: Dir,
}

impl Cluster {
    fn start(cert_pem: &str, key_pem: &str) -> Cluster {
        let dir = Dir::new("pg-tls");
        let data = dir.path().join("data");
        if root() {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let out = as_owner(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        // TLS connections only, over TCP; the socket directory for pg_ctl.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let cert = data.join("server.pem");
        let key = data.join("server.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if root() {
            for f in [&cert, &key, &data.join("pg_hba.conf")] {
                Command::new("chown")
                    .arg("postgres")
                    .arg(f)
                    .status()
                    .unwrap();
            }
        }
        let port = on_a_chosen_port("postgres", CHOSEN_PORTS, |port| {
            let out = as_owner(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
                    dir.path().display(),
                    cert.display(),
                    key.display()
                ))
                .arg("start")
                .output()
                .unwrap();
            if out.status.success() {
                return Ok(port);
            }
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            if log.contains("in use") {
                return Err(log);
            }
            panic!("postgres did not start: {out:?}\n{log}");
        });
        let out = as_owner(&pg_bin("createdb"))
            .args(["-h"])
            .arg(dir.path())
            .args(["-p", &port.to_string(), "-U", "postgres", "sosrouter"])
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb: {out:?}");
        Cluster { port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_owner(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn config(trunks: &Trunks, url: &str) -> String {
    trunks.lab_config(&format!("\n[database]\nurl = \"{url}\"\n"))
}

/// `sslmode=verify-full` with the CA that signed the server: the router
/// starts on the database (its migrations ran over TLS); with another CA,
/// it does not start, and says why.
#[test]
fn the_database_over_tls_is_verified_against_the_configured_ca() {
    let ca = Ca::new("Database CA");
    let other = Ca::new("Other CA");
    let server = ca.valid(&["127.0.0.1", "localhost"]);
    let cluster = Cluster::start(&server.cert_pem, &server.key_pem);
    let certs = Dir::new("pg-tls-client");
    let ca_path = certs.path().join("ca.pem");
    let other_path = certs.path().join("other.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&other_path, other.pem()).unwrap();
    let url = |root: &Path| {
        format!(
            "postgres://postgres@127.0.0.1:{}/sosrouter?sslmode=verify-full&sslrootcert={}",
            cluster.port,
            root.display()
        )
    };
    let trunks = Trunks::new();
    let router = Router::try_start(&config(&trunks, &url(&ca_path)), &[]).unwrap_or_else(|log| {
        panic!(
            "the router did not start on the database over TLS:\n{log}\npostgres:\n{}",
            cluster.log()
        )
    });
    drop(router);
    // The cluster takes nothing but TLS: without it, the router is refused.
    let plain = format!(
        "postgres://postgres@127.0.0.1:{}/sosrouter?sslmode=disable",
        cluster.port
    );
    let refused = Router::try_start(&config(&trunks, &plain), &[]);
    assert!(refused.is_err(), "a connection without TLS was taken");
    match Router::try_start(&config(&trunks, &url(&other_path)), &[]) {
        Ok(_) => panic!("a server certificate from another CA was taken"),
        Err(log) => assert!(
            log.to_ascii_lowercase().contains("certificate"),
            "the refusal names the certificate:\n{log}"
        ),
    }
}
