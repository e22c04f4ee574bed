//! Registered addresses checked by an ECRF through the real binary: a
//! router whose `[emergency.lost]` names a second router serving LoST asks
//! it (`validateLocation`) about each address that comes in over the
//! admin API, refuses or keeps what it finds invalid as the country's
//! policy says, asks once per distinct address of an upload, and lets the
//! gazetteer decide when the ECRF cannot answer.

mod adminhttp;
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use serde_json::{json, Value};

use adminhttp::{emergency_config, tokens, Api, Db, Tokens};
use common::{http_port, lab_config, ClosedPort, Router, Trunks};

/// A router serving LoST on its admin listener: the ECRF.
fn ecrf() -> (Router, u16) {
    ecrf_with("")
}

/// The ECRF, with `extra` in its `[emergency]`.
fn ecrf_with(extra: &str) -> (Router, u16) {
    let closed = ClosedPort::new();
    let text = lab_config(
        closed.port,
        closed.port,
        closed.port,
        closed.port,
        &format!(
            "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[emergency]\n{extra}\n\
             [emergency.lost]\nserve = true\nsource = \"ecrf.example\"\n"
        ),
    );
    let router = Router::start(&text, &[]);
    let port = http_port(&router, "admin");
    (router, port)
}

/// A relay to the ECRF that counts the LoST requests passing through it.
struct Counting {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl Counting {
    fn to(target: u16) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let counted = counted.clone();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let seen = buf[..n].windows(11).filter(|w| w == b"POST /lost ").count();
                        counted.fetch_add(seen, Ordering::SeqCst);
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        Counting { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Lab {
    api: Api,
    t: Tokens,
    router: Router,
    _trunks: Trunks,
    _db: Db,
}

/// The router whose addresses the ECRF at `ecrf_port` checks, with
/// `policy` for US addresses.
fn router(ecrf_port: u16, policy: &str) -> Lab {
    router_with(ecrf_port, policy, 500, None, false)
}

/// As [`router`], with the ECRF's `timeout_ms` and an inventory file to
/// import at start; the router is taken once its inventory is loaded, or
/// at once (`loading`).
fn router_with(
    ecrf_port: u16,
    policy: &str,
    timeout_ms: u64,
    inventory: Option<&std::path::Path>,
    loading: bool,
) -> Lab {
    let t = tokens();
    let trunks = Trunks::new();
    let db = Db::sqlite();
    let inventory = inventory
        .map(|p| format!("inventory = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    let config = emergency_config(&trunks, &db, &t)
        + &format!(
            "\n[admin.address_validation]\ndefault = \"warn\"\ncountries = {{ US = \"{policy}\" }}\n\n\
             [emergency]\nlocation_servers = [\"127.0.0.1\"]\n{inventory}\n\
             [emergency.lost]\necrf = \"http://127.0.0.1:{ecrf_port}/lost\"\ntimeout_ms = {timeout_ms}\n"
        );
    let router = if loading {
        Router::start_loading(&config)
    } else {
        Router::start(&config, &[])
    };
    let api = Api::of(&router);
    Lab {
        api,
        t,
        router,
        _trunks: trunks,
        _db: db,
    }
}

const N: &str = "+13035550117";

/// A number without an address, then `address` set on it.
fn put_address(lab: &Lab, address: Value) -> adminhttp::Resp {
    let r = lab.api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &lab.t.operator,
        &json!([{"number": N, "country": "US", "tenant_may_set_address": "yes"}]),
    );
    assert_eq!(r.status, 200, "{r}");
    lab.api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{N}/address"),
        &lab.t.operator,
        &address,
    )
}

fn check_of(lab: &Lab, n: &str) -> Value {
    let r = lab
        .api
        .get(&format!("/v1/tenants/acme/numbers/{n}"), &lab.t.operator);
    assert_eq!(r.status, 200, "{r}");
    r.json()["address_check"].clone()
}

/// Denver, with the state and ZIP of California and New York.
fn wrong() -> Value {
    json!({"A1": "CA", "A3": "Denver", "RD": "E Colfax", "STS": "Ave", "HNO": "200", "PC": "80203"})
}

fn denver() -> Value {
    json!({"A1": "CO", "A3": "Denver", "RD": "E Colfax", "STS": "Ave", "HNO": "200", "PC": "80203"})
}

#[test]
fn the_ecrf_refuses_an_invalid_address_where_the_country_refuses() {
    let (_ecrf, ecrf_port) = ecrf();
    let relay = Counting::to(ecrf_port);
    let lab = router(relay.port, "refuse");

    let r = put_address(&lab, wrong());
    assert_eq!(r.status, 422, "{r}");
    let v = r.json();
    assert_eq!(v["elements"], json!(["A3", "PC", "A1"]), "{r}");
    let message = v["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("ECRF ecrf.example"), "{message}");
    assert_eq!(relay.requests(), 1);
    assert_eq!(check_of(&lab, N), Value::Null, "nothing stored");

    // A tenant location too.
    let r = lab.api.send_json(
        "POST",
        "/v1/tenants/acme/locations",
        &lab.t.operator,
        &json!({"id": "hq", "address": {"country": "US", "A1": "CA", "A3": "Denver",
                "RD": "E Colfax", "HNO": "200", "PC": "80203"}}),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.json()["elements"], json!(["A3", "PC", "A1"]), "{r}");
    assert_eq!(relay.requests(), 2);

    let r = put_address(&lab, denver());
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        check_of(&lab, N),
        json!({"state": "valid", "source": "ecrf"})
    );
    assert_eq!(relay.requests(), 3);
}

#[test]
fn the_ecrf_marks_an_invalid_address_where_the_country_warns() {
    let (_ecrf, ecrf_port) = ecrf();
    let relay = Counting::to(ecrf_port);
    let lab = router(relay.port, "warn");

    let r = put_address(&lab, wrong());
    assert_eq!(r.status, 200, "{r}");
    let c = check_of(&lab, N);
    assert_eq!(c["state"], "invalid", "{c}");
    assert_eq!(c["elements"], json!(["A3", "PC", "A1"]), "{c}");
    assert_eq!(c["source"], "ecrf", "{c}");

    // An upload of many rows with two distinct addresses (one of them in
    // two spellings) asks the ECRF twice.
    let before = relay.requests();
    let mut rows = Vec::new();
    for k in 0..40 {
        let (a1, a3) = match k % 3 {
            0 => ("CO", "Denver"),
            1 => ("co", " DENVER "),
            _ => ("CA", "Denver"),
        };
        rows.push(
            json!({"number": format!("+1303555{:04}", 1000 + k), "country": "US",
            "reg_A1": a1, "reg_A3": a3, "reg_RD": "E Colfax", "reg_HNO": "200", "reg_PC": "80203"}),
        );
    }
    let r = lab.api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &lab.t.operator,
        &Value::Array(rows),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], 40, "{r}");
    assert_eq!(relay.requests() - before, 2);
    assert_eq!(
        check_of(&lab, "+13035551000"),
        json!({"state": "valid", "source": "ecrf"})
    );
    assert_eq!(
        check_of(&lab, "+13035551001"),
        json!({"state": "valid", "source": "ecrf"})
    );
    let c = check_of(&lab, "+13035551002");
    assert_eq!(
        (&c["state"], &c["source"]),
        (&json!("invalid"), &json!("ecrf")),
        "{c}"
    );
}

#[test]
fn the_gazetteer_decides_when_the_ecrf_cannot_answer() {
    // The ECRF is down: the gazetteer decides, and says so.
    let closed = ClosedPort::new();
    let lab = router(closed.port, "refuse");
    let r = put_address(&lab, wrong());
    assert_eq!(r.status, 422, "{r}");
    let message = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(!message.contains("ECRF"), "{message}");
    let r = put_address(&lab, denver());
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        check_of(&lab, N),
        json!({"state": "valid", "source": "gazetteer"})
    );
    lab.router.wait_log(
        "checked by the gazetteer, not the ECRF",
        2,
        std::time::Duration::from_secs(10),
    );

    // The ECRF takes the connection and never answers: past the deadline
    // (4 × timeout_ms), the gazetteer decides.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let lab = router(silent.local_addr().unwrap().port(), "warn");
    let r = put_address(&lab, wrong());
    assert_eq!(r.status, 200, "{r}");
    let c = check_of(&lab, N);
    assert_eq!(
        (&c["state"], &c["source"]),
        (&json!("invalid"), &json!("gazetteer")),
        "{c}"
    );
    lab.router.wait_log(
        "no answer within 2000 ms",
        1,
        std::time::Duration::from_secs(10),
    );
    drop(silent);

    // A German address: the ECRF, which serves Germany, finds nothing at
    // fault (it checks the country code only); with Germany's service
    // area gone from its data it answers with a LoST error (notFound),
    // and the gazetteer, which has no address data for Germany, decides.
    let munich = json!([{"number": "+498912345678", "country": "DE",
        "reg_A3": "München", "reg_RD": "Marienplatz", "reg_HNO": "1", "reg_PC": "80331"}]);
    let dir = common::tempdir::Dir::new("address-ecrf");
    let psaps = std::fs::read_to_string(common::root().join("data/psaps.json")).unwrap();
    let mut data: Value = serde_json::from_str(&psaps).unwrap();
    let all = data["psaps"].as_array_mut().unwrap();
    let before = all.len();
    all.retain(|p| p["area"] != "DE");
    assert!(all.len() < before);
    std::fs::write(dir.path().join("psaps.json"), data.to_string()).unwrap();
    let without_de = format!("service_areas = {:?}\n", dir.path().display().to_string());
    for (extra, want) in [
        ("", json!({"state": "valid", "source": "ecrf"})),
        (
            without_de.as_str(),
            json!({"state": "unchecked", "reason": "no address data for DE"}),
        ),
    ] {
        let (_ecrf, ecrf_port) = ecrf_with(extra);
        let lab = router(ecrf_port, "warn");
        let r = lab
            .api
            .send_json("POST", "/v1/tenants/acme/numbers", &lab.t.operator, &munich);
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(check_of(&lab, "+498912345678"), want, "{extra}");
        if !extra.is_empty() {
            lab.router.wait_log(
                "notFound from ecrf.example",
                1,
                std::time::Duration::from_secs(10),
            );
        }
    }
}

#[test]
fn a_bulk_upload_asks_once_per_distinct_address() {
    let (_ecrf, ecrf_port) = ecrf();
    let relay = Counting::to(ecrf_port);
    let lab = router(relay.port, "warn");
    // 3,000 rows, three addresses (one of them wrong), spelled with
    // varying case and spaces.
    let mut csv = String::from("number,country,reg_A1,reg_A3,reg_RD,reg_HNO,reg_PC\n");
    for i in 0..3_000u32 {
        let (a1, a3, pc) = match i % 3 {
            0 => ("CO", "Denver", "80203"),
            1 => ("ny", "new  york", "10001"),
            _ => ("CA", "Denver", "80203"),
        };
        csv.push_str(&format!("+1720555{i:04},US,{a1},{a3},E Colfax,200,{pc}\n"));
    }
    let r = lab.api.call(
        "POST",
        "/v1/uploads?tenant=acme&wait=true",
        Some(&lab.t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    let s = r.json();
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(s["summary"]["created"], 3_000, "{s}");
    assert_eq!(relay.requests(), 3);
    assert_eq!(
        check_of(&lab, "+17205552998"),
        json!({"state": "valid", "source": "ecrf"})
    );
    assert_eq!(
        check_of(&lab, "+17205552997"),
        json!({"state": "valid", "source": "ecrf"})
    );
    let c = check_of(&lab, "+17205552999");
    assert_eq!(
        (&c["state"], &c["source"], &c["elements"]),
        (
            &json!("invalid"),
            &json!("ecrf"),
            &json!(["A3", "PC", "A1"])
        ),
        "{c}"
    );
}

/// An inventory file of 30 numbers at three addresses, one of them spelt
/// two ways and one wrong (Denver in California).
fn inventory_file(dir: &common::tempdir::Dir) -> std::path::PathBuf {
    let mut csv = String::from("number,tenant,country,reg_A1,reg_A3,reg_RD,reg_HNO,reg_PC\n");
    for i in 0..30u32 {
        let (a1, a3, pc) = match i % 4 {
            0 => ("CO", "Denver", "80203"),
            1 => ("co", "DENVER", "80203"),
            2 => ("NY", "New York", "10001"),
            _ => ("CA", "Denver", "80203"),
        };
        csv.push_str(&format!(
            "+1720555{i:04},acme,US,{a1},{a3},E Colfax,200,{pc}\n"
        ));
    }
    let path = dir.path().join("inventory.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// The state of the number's address check, and who decided it.
fn state_source(lab: &Lab, n: &str) -> (String, String) {
    let c = check_of(lab, n);
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (text("state"), text("source"))
}

/// The checks of the file's numbers 0 (Denver), 2 (New York) and 3 (the
/// wrong one).
fn file_checks(lab: &Lab) -> [(String, String); 3] {
    ["+17205550000", "+17205550002", "+17205550003"].map(|n| state_source(lab, n))
}

/// What [`file_checks`] gives when `source` checked the file.
fn checked_by(source: &str) -> [(String, String); 3] {
    ["valid", "valid", "invalid"].map(|s| (s.to_string(), source.to_string()))
}

/// [`put_address`], which must be kept, then its check.
fn kept(lab: &Lab, address: Value) -> (String, String) {
    let r = put_address(lab, address);
    assert_eq!(r.status, 200, "{r}");
    state_source(lab, N)
}

fn pair(state: &str, source: &str) -> (String, String) {
    (state.into(), source.into())
}

#[test]
fn the_inventory_file_at_start_is_checked_by_the_ecrf() {
    let (_ecrf, ecrf_port) = ecrf();
    let relay = Counting::to(ecrf_port);
    let dir = common::tempdir::Dir::new("inventory-ecrf");
    let file = inventory_file(&dir);
    let lab = router_with(relay.port, "warn", 500, Some(&file), false);
    lab.router
        .wait_log("inventory ready", 1, std::time::Duration::from_secs(20));
    // Three distinct addresses, each asked once.
    assert_eq!(relay.requests(), 3);
    assert_eq!(file_checks(&lab), checked_by("ecrf"));
    let c = check_of(&lab, "+17205550003");
    assert_eq!(c["elements"], json!(["A3", "PC", "A1"]), "{c}");
    assert!(
        lab.router
            .log()
            .contains("3 address(es) checked by the ECRF"),
        "{}",
        lab.router.log()
    );

    // Where the US refuses invalid addresses, the ECRF's answer refuses
    // the file: the router stays on the country defaults and says why.
    let (_ecrf, ecrf_port) = ecrf();
    let lab = router_with(ecrf_port, "refuse", 500, Some(&file), false);
    lab.router.wait_log(
        "the inventory file was not imported",
        1,
        std::time::Duration::from_secs(20),
    );
    let log = lab.router.log();
    assert!(
        log.contains("the ECRF ecrf.example finds A3, PC, A1 invalid"),
        "{log}"
    );
}

#[test]
fn a_router_starts_on_the_gazetteer_when_the_ecrf_is_down_or_silent() {
    let dir = common::tempdir::Dir::new("inventory-ecrf-down");
    let file = inventory_file(&dir);
    // Down: the connection is refused, the gazetteer decides at once.
    let closed = ClosedPort::new();
    let lab = router_with(closed.port, "warn", 500, Some(&file), false);
    assert_eq!(file_checks(&lab), checked_by("gazetteer"));
    lab.router.wait_log(
        "checked by the gazetteer, not the ECRF",
        1,
        std::time::Duration::from_secs(10),
    );

    // Silent: SIP listens and /readyz answers at once, the inventory
    // loading; it loads when the ECRF's deadline (4 × 2000 ms) is out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let lab = router_with(
        silent.local_addr().unwrap().port(),
        "warn",
        2000,
        Some(&file),
        true,
    );
    let (_, body) = common::get(lab.api.port, "/readyz");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["inventory"]["state"], "loading", "{body}");
    assert!(!lab.router.log().contains("inventory ready"));
    lab.router
        .wait_log("inventory ready", 1, std::time::Duration::from_secs(40));
    assert!(started.elapsed() >= std::time::Duration::from_secs(8));
    lab.router.wait_log(
        "no answer within 8000 ms",
        1,
        std::time::Duration::from_secs(1),
    );
    assert_eq!(file_checks(&lab), checked_by("gazetteer"));
    drop(silent);
}

/// `sosrouter inventory import`, with the configuration of `lab`.
fn import(lab: &Lab, file: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(common::BIN)
        .args(["inventory", "import", file.to_str().unwrap(), "--config"])
        .arg(lab.router.config_path())
        .env_remove("SOSROUTER_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_inventory_command_asks_the_ecrf() {
    let (_ecrf, ecrf_port) = ecrf();
    let relay = Counting::to(ecrf_port);
    let dir = common::tempdir::Dir::new("inventory-ecrf-cli");
    let file = inventory_file(&dir);

    // Where the US refuses: the ECRF's answer refuses the file, row named.
    let lab = router(relay.port, "refuse");
    let (code, err) = import(&lab, &file);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        err.contains("the ECRF ecrf.example finds A3, PC, A1 invalid"),
        "{err}"
    );
    assert_eq!(relay.requests(), 3);

    let lab = router(relay.port, "warn");
    let (code, err) = import(&lab, &file);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("3 address(es) checked by the ECRF"), "{err}");
    assert!(err.contains("30 created"), "{err}");
    assert_eq!(relay.requests(), 6);
    // The running router follows the import.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lab
        .api
        .get("/v1/tenants/acme/numbers/+17205550003", &lab.t.operator)
        .status
        != 200
    {
        assert!(std::time::Instant::now() < end, "the import never showed");
        thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(file_checks(&lab), checked_by("ecrf"));

    // The ECRF down: the gazetteer decides, and the command says so.
    let closed = ClosedPort::new();
    let lab = router(closed.port, "warn");
    let (code, err) = import(&lab, &file);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("0 address(es) checked by the ECRF, 3 by the gazetteer (request failed"),
        "{err}"
    );
}

#[test]
fn a_reload_changes_the_ecrf_of_the_next_upload() {
    let (_ecrf, ecrf_port) = ecrf();
    let (first, second) = (Counting::to(ecrf_port), Counting::to(ecrf_port));
    let lab = router(first.port, "warn");
    assert_eq!(kept(&lab, denver()), pair("valid", "ecrf"));
    assert_eq!((first.requests(), second.requests()), (1, 0));

    let reload = |from: &str, to: &str| {
        let text = std::fs::read_to_string(lab.router.config_path()).unwrap();
        assert!(text.contains(from), "{text}");
        std::fs::write(lab.router.config_path(), text.replace(from, to)).unwrap();
        let r = lab
            .api
            .send_json("POST", "/v1/reload", &lab.t.operator, &json!({}));
        assert_eq!(r.status, 200, "{r}");
    };
    let first_url = format!("ecrf = \"http://127.0.0.1:{}/lost\"", first.port);
    let second_url = format!("ecrf = \"http://127.0.0.1:{}/lost\"", second.port);
    reload(&first_url, &second_url);
    assert_eq!(kept(&lab, wrong()), pair("invalid", "ecrf"));
    assert_eq!((first.requests(), second.requests()), (1, 1));

    // A silent ECRF and a shorter timeout: the next address waits
    // 4 × 100 ms, then the gazetteer decides.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "ecrf = \"http://127.0.0.1:{}/lost\"\ntimeout_ms = 100",
        silent.local_addr().unwrap().port()
    );
    reload(&format!("{second_url}\ntimeout_ms = 500"), &silent_url);
    assert_eq!(kept(&lab, denver()), pair("valid", "gazetteer"));
    lab.router.wait_log(
        "no answer within 400 ms",
        1,
        std::time::Duration::from_secs(10),
    );

    // No ECRF any more: the gazetteer checks, and none is asked.
    reload(&silent_url, "timeout_ms = 100");
    assert_eq!(kept(&lab, wrong()), pair("invalid", "gazetteer"));
    assert_eq!((first.requests(), second.requests()), (1, 1));
    assert_eq!(
        lab.router.log().matches("no answer within").count(),
        1,
        "the silent ECRF is asked no more"
    );
    drop(silent);
}
