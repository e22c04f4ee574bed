//! Every configuration file the project ships loads, and `check-config`
//! catches a rule that names a trunk the configuration lacks.

mod common;

use std::process::Command;

use common::{root, BIN};

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_shipped_router_config_passes_check_config() {
    let mut seen = 0;
    for dir in ["config", "deploy"] {
        for entry in walk(&root().join(dir)) {
            let name = entry.to_string_lossy().into_owned();
            if !name.ends_with(".toml") || name.ends_with("countries.toml") {
                continue;
            }
            let (ok, out) = check(&entry);
            assert!(ok, "{name}: {out}");
            assert!(out.contains("ok: country rules"), "{name}: {out}");
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected config/loopback.toml and the deployment example"
    );
}

#[test]
fn the_shipped_country_rules_load() {
    let text = std::fs::read_to_string(root().join("config/countries.toml")).unwrap();
    let c = sosrouter::emergency::detect::Countries::from_toml(&text).unwrap();
    for code in ["US", "CA", "GB", "IE", "FR", "DE", "ES", "NL", "AU", "NZ"] {
        assert!(c.get(code).is_some(), "{code} missing");
    }
}

#[test]
fn check_config_names_a_missing_trunk() {
    let dir = common::tempdir::Dir::new("check");
    let text = std::fs::read_to_string(root().join("config/loopback.toml"))
        .unwrap()
        .replace("name = \"screening\"", "name = \"screening-east\"")
        .replace(
            r#""psap", "screening", "last-resort""#,
            r#""psap", "screening-east", "last-resort""#,
        );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, out) = check(&path);
    assert!(!ok);
    assert!(
        out.contains("trunk \"screening\" is not an outbound trunk of the configuration"),
        "{out}"
    );
}

#[test]
fn check_config_states_the_overload_limits() {
    let dir = common::tempdir::Dir::new("check-overload");
    let base = std::fs::read_to_string(root().join("config/loopback.toml")).unwrap();
    // check-config's report on `text`, which must pass.
    let passes = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, out) = check(&path);
        assert!(ok, "{name}: {out}");
        out
    };
    let out = passes(
        "capped.toml",
        format!(
            "{base}\n[sip.overload]\nmax_transactions = 1000\nemergency_reserve_percent = 25\n"
        ),
    );
    assert!(
        out.contains("new calls refused with 503 from 1000 open transactions, all but emergency calls from 750, requests within calls from 1100"),
        "{out}"
    );
    let out = passes(
        "open.toml",
        format!("{base}\n[sip.overload]\nmax_transactions = 0\n"),
    );
    assert!(
        out.contains("overload: no limit on open transactions"),
        "{out}"
    );
    // The lab configuration names no location servers: check-config says so.
    assert!(out.contains("from any host a caller names"), "{out}");
    assert!(out.contains("answered at most 50 times a second"), "{out}");
    let out = passes(
        "silent.toml",
        base.replacen("[sip]\n", "[sip]\nstranger_replies_per_s = 0\n", 1),
    );
    assert!(out.contains("refused, never answered"), "{out}");
    let out = passes(
        "listed.toml",
        base.replacen(
            "[emergency]\n",
            "[emergency]\nlocation_servers = [\"lis.carrier.example\"]\n",
            1,
        ),
    );
    assert!(
        out.contains("from 1 listed location server(s) only"),
        "{out}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
