//! The emergency INVITE corpus: every MANIFEST row gives its caller country,
//! kind, location source, route, reason and PSAP area, through the library
//! and through `sosrouter inspect`; then the INVITEs the proxy forwards are
//! checked on their bytes (headers kept, Call-Info added, the registered
//! address as a PIDF-LO part with its Geolocation value first, the PSAP in a
//! Route header, failover to the next target).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use sosrouter::config::Config;
use sosrouter::emergency::detect::Countries;
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::EmergencyRouter;
use sosrouter::inventory::Inventory;
use sosrouter::pidf;
use sosrouter::proxy::{Core, CoreConfig, Decision, Proto, Source, Target, Transmit};
use sosrouter::sip::{self, HeaderName, Message, NameAddr};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/emergency-invites")
}

fn areas() -> Arc<ServiceAreas> {
    static DATA: OnceLock<Arc<ServiceAreas>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(ServiceAreas::embedded().expect("the shipped data loads")))
        .clone()
}

fn inventory() -> Inventory {
    Inventory::load(&corpus().join("inventory.tsv")).expect("the corpus inventory loads")
}

fn router() -> EmergencyRouter {
    EmergencyRouter::new(
        &Config::embedded(),
        Countries::shipped(),
        Arc::new(inventory()),
        areas(),
    )
    .expect("the router builds on the lab configuration")
}

struct Row {
    file: String,
    country: String,
    emergency: String,
    location_source: String,
    route: String,
    reason: String,
    area: String,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus().join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (f, c, e, l, r, why, a) = (
        col("file"),
        col("caller_country"),
        col("expected_emergency"),
        col("location_source"),
        col("expected_route"),
        col("expected_reason"),
        col("expected_psap_area"),
    );
    let rows: Vec<Row> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| v.get(i).copied().unwrap_or("").to_string();
            Row {
                file: get(f),
                country: get(c),
                emergency: get(e),
                location_source: get(l),
                route: get(r),
                reason: get(why),
                area: get(a),
            }
        })
        .collect();
    assert_eq!(rows.len(), 14);
    rows
}

fn load(file: &str) -> Message {
    let data = std::fs::read(corpus().join(file)).unwrap();
    sip::parse_datagram(Bytes::from(data), &Default::default())
        .unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

/// The fields of the inspect object the manifest speaks about.
fn summary(v: &Value) -> [String; 7] {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let kind = match v["emergency"]["kind"].as_str() {
        Some("emergency") => "yes",
        Some("test") => "test",
        _ => "no",
    };
    [
        s(&v["emergency"]["country"]),
        kind.to_string(),
        s(&v["location"]["source"]),
        s(&v["decision"]["route"]),
        s(&v["decision"]["reason"]),
        s(&v["decision"]["area"]),
        s(&v["decision"]["psap_id"]),
    ]
}

fn expected(row: &Row) -> [String; 7] {
    let psap_id = if row.area.is_empty() {
        String::new()
    } else {
        format!("SYN-{}", row.area)
    };
    [
        row.country.clone(),
        row.emergency.clone(),
        row.location_source.clone(),
        row.route.clone(),
        row.reason.clone(),
        row.area.clone(),
        psap_id,
    ]
}

#[test]
fn manifest_through_the_library() {
    let mut router = router();
    let inv = router.inventory();
    for row in manifest() {
        let msg = load(&row.file);
        let ev = router.evaluate(&inv, &msg, Some("carrier"), false);
        let v = serde_json::json!({
            "emergency": ev.emergency_json(),
            "location": ev.location_json(),
            "decision": ev.decision_json(),
        });
        assert_eq!(summary(&v), expected(&row), "{}: {v:#}", row.file);
        // The proxy's answer agrees.
        let ctx_source = source();
        let ctx = sosrouter::proxy::RouteContext {
            source: &ctx_source,
            inbound_trunk: Some("carrier"),
            dereferenced: None,
            lost: None,
            wall: None,
            unique: 1,
        };
        match sosrouter::proxy::Router::route(&mut router, &msg, &ctx) {
            Decision::Route {
                targets,
                emergency,
                route,
                reason,
                details,
                ..
            } => {
                assert!(emergency, "{}", row.file);
                assert_eq!((route, reason), (row.route.as_str(), row.reason.as_str()));
                let first = &targets[0];
                let trunk = match row.route.as_str() {
                    "psap" => "psap",
                    "screening" => "screening",
                    "test" => "test",
                    other => panic!("{other}"),
                };
                assert_eq!(first.trunk, trunk, "{}", row.file);
                let details = details.expect("details");
                assert_eq!(
                    details.area.as_deref().unwrap_or(""),
                    row.area,
                    "{}",
                    row.file
                );
                assert_eq!(details.location_source, row.location_source, "{}", row.file);
                let recorded = details.location.as_ref().expect("location").to_json();
                assert_eq!(recorded, ev.location_json(), "{}", row.file);
                assert_eq!(details.country.as_deref(), Some(row.country.as_str()));
            }
            Decision::Reject { status, .. } => panic!("{}: rejected with {status}", row.file),
        }
    }
}

/// Runs `sosrouter inspect` with these arguments; it must succeed. One
/// JSON object per file.
fn inspect<I, S>(args: I) -> Vec<Value>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sosrouter"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("sosrouter runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn manifest_through_the_binary() {
    let rows = manifest();
    let mut args = vec![std::ffi::OsString::from("--inventory")];
    args.push(corpus().join("inventory.tsv").into());
    args.extend(rows.iter().map(|row| corpus().join(&row.file).into()));
    let lines = inspect(args);
    assert_eq!(lines.len(), rows.len());
    for (row, v) in rows.iter().zip(&lines) {
        assert!(v["file"].as_str().unwrap().ends_with(&row.file));
        assert_eq!(summary(v), expected(row), "{}: {v:#}", row.file);
        // The fallbacks are objects after the first target, never repeating it.
        let fallbacks = v["decision"]["fallbacks"].as_array().unwrap();
        for f in fallbacks {
            assert_ne!(f["label"], v["decision"]["psap_id"], "{}", row.file);
        }
    }
    // Spot checks of the object's other fields.
    let by_file = |name: &str| {
        rows.iter()
            .zip(&lines)
            .find(|(r, _)| r.file.starts_with(name))
            .map(|(_, v)| v)
            .unwrap()
    };
    let c02 = by_file("c02");
    assert_eq!(c02["location"]["method"], "GPS");
    assert_eq!(c02["location"]["geo"]["lat"], 39.7392);
    assert_eq!(c02["location"]["geo"]["lon"], -104.9903);
    assert_eq!(c02["decision"]["routed_by"], "dynamic");
    assert_eq!(c02["decision"]["trunk"], "psap");
    let labels: Vec<&str> = c02["decision"]["fallbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["screening", "last-resort"]);
    let c05 = by_file("c05");
    assert_eq!(c05["location"]["geo"]["radius_m"], 35.0);
    let c01 = by_file("c01");
    assert_eq!(c01["emergency"]["number"], "911");
    assert_eq!(c01["location"]["civic"]["A3"], "New York");
    assert_eq!(c01["location"]["civic"]["FLR"], "34");
    assert_eq!(c01["decision"]["routed_by"], "registered");
    assert_eq!(c01["decision"]["trunk"], "screening");
    assert_eq!(
        c01["decision"]["fallbacks"][0]["route"],
        "sip:sos@us-36061.psap.example"
    );
    let c07 = by_file("c07");
    assert_eq!(c07["emergency"]["number"], "urn:service:sos");
    let c10 = by_file("c10");
    assert_eq!(c10["location"]["civic"]["A3"], "München");
    let c11 = by_file("c11");
    assert_eq!(
        c11["location"]["reference"],
        "https://lis.example.com:8443/loc/7f3a9c21e4"
    );
    assert_eq!(c11["location"]["civic"]["A3"], "San Francisco");
    let c12 = by_file("c12");
    let errors = c12["location"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].as_str().unwrap().contains("not-well-formed"));
    assert_eq!(c12["location"]["civic"]["A3"], "Phoenix");
}

#[test]
fn inspect_shows_the_service_of_the_call_and_of_its_psap() {
    let dir = std::env::temp_dir().join(format!("sosrouter-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // c10's caller, registered in München, dialing 110, 112, and the fire
    // service by its URN (Germany has no fire PSAP of its own).
    let c10 = std::fs::read_to_string(corpus().join("c10-eu-112-de.sip")).unwrap();
    let mut files = Vec::new();
    for (name, ruri) in [
        ("de-110.sip", "sip:110@ims.example.de;user=phone"),
        ("de-112.sip", "sip:112@ims.example.de;user=phone"),
        ("de-fire.sip", "urn:service:sos.fire"),
    ] {
        let path = dir.join(name);
        std::fs::write(
            &path,
            c10.replacen(
                "INVITE sip:112@ims.example.de;user=phone ",
                &format!("INVITE {ruri} "),
                1,
            ),
        )
        .unwrap();
        files.push(path);
    }
    let mut args = vec![std::ffi::OsString::from("--inventory")];
    args.push(corpus().join("inventory.tsv").into());
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    let lines = inspect(args);
    std::fs::remove_dir_all(&dir).unwrap();
    let got: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .map(|v| {
            (
                v["emergency"]["number"].as_str().unwrap(),
                v["emergency"]["service"].as_str().unwrap(),
                v["decision"]["psap_id"].as_str().unwrap(),
                v["decision"]["psap_service"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "110",
                "urn:service:sos.police",
                "SYN-DE-POLICE",
                "urn:service:sos.police"
            ),
            ("112", "urn:service:sos", "SYN-DE", "urn:service:sos"),
            (
                "urn:service:sos.fire",
                "urn:service:sos.fire",
                "SYN-DE",
                "urn:service:sos"
            ),
        ]
    );
    // A call without a PSAP has no PSAP service.
    let lines = inspect([
        std::ffi::OsString::from("--inventory"),
        corpus().join("inventory.tsv").into(),
        corpus().join("c01-us-civic-cid.sip").into(),
    ]);
    assert_eq!(lines[0]["emergency"]["service"], "urn:service:sos");
    assert_eq!(lines[0]["decision"]["psap_service"], Value::Null);
}

/// Inspect says where the PSAP would come from with LoST, asking nothing:
/// the ECRF of the caller's country and the request it would get (the
/// GPS fix as a shape, a registered address as a civic one), the key its
/// answer would be cached under, and what the embedded data gives; or why
/// no ECRF is asked. And the registered address as the inventory's
/// address check sees it.
#[test]
fn inspect_shows_what_lost_would_ask_and_the_registered_address_check() {
    let dir = std::env::temp_dir().join(format!("sosrouter-inspect-lost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let us = "https://ecrf.us.example/lost";
    let other = "https://ecrf.example.net/lost";
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/loopback.toml"))
            .unwrap()
            + &format!(
                "\n[emergency.lost]\necrf = {other:?}\ntimeout_ms = 500\n\n\
                 [emergency.lost.countries]\nUS = {us:?}\n"
            ),
    )
    .unwrap();
    // The corpus inventory, and a Boston number whose ZIP is Denver's.
    let inventory = dir.join("inventory.tsv");
    std::fs::write(
        &inventory,
        std::fs::read_to_string(corpus().join("inventory.tsv")).unwrap()
            + "+16175550124\tacme\tUS\tno\tno\tUS\tMA\tBoston\tBoylston\tSt\t700\t80203\n",
    )
    .unwrap();
    let wrong_zip = dir.join("wrong-zip.sip");
    std::fs::write(
        &wrong_zip,
        std::fs::read_to_string(corpus().join("c04-us-no-location.sip"))
            .unwrap()
            .replace("+16175550123", "+16175550124"),
    )
    .unwrap();
    let files = [
        corpus().join("c02-us-geo-point.sip"),
        corpus().join("c11-geoloc-by-reference.sip"),
        corpus().join("c10-eu-112-de.sip"),
        corpus().join("c01-us-civic-cid.sip"),
        wrong_zip,
    ];
    let mut args = vec![
        std::ffi::OsString::from("--config"),
        config.clone().into(),
        "--inventory".into(),
        inventory.clone().into(),
    ];
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    let lines = inspect(args);
    let lost: Vec<&Value> = lines.iter().map(|v| &v["decision"]["lost"]).collect();

    // c02, a trusted GPS fix in Denver: the US ECRF, asked with the point.
    assert_eq!(lost[0]["ecrf"], us);
    assert_eq!(lost[0]["asked"], true);
    assert_eq!(lost[0]["location_from"], "dynamic");
    assert_eq!(lost[0]["profile"], "geodetic-2d");
    assert_eq!(lost[0]["service"], "urn:service:sos");
    assert_eq!(lost[0]["cache_key"]["lat"], 39.7392);
    assert_eq!(lost[0]["cache_key"]["lon"], -104.9903);
    assert_eq!(lost[0]["timeout_ms"], 500);
    let request = lost[0]["request"].as_str().unwrap();
    assert!(
        request.contains("findService") && request.contains("geodetic-2d"),
        "{request}"
    );
    assert_eq!(lost[0]["embedded"]["psap_id"], "SYN-US-08031");
    assert_eq!(lost[0]["embedded"]["uri"], "sip:sos@us-08031.psap.example");

    // c11, a Common Area Phone routed by its registered address in San
    // Francisco: asked by the civic profile, cached under the address.
    assert_eq!(lost[1]["ecrf"], us);
    assert_eq!(lost[1]["asked"], true);
    assert_eq!(lost[1]["location_from"], "registered");
    assert_eq!(lost[1]["profile"], "civic");
    let key = lost[1]["cache_key"].as_str().unwrap();
    assert!(key.contains("A1=CA|A3=SAN FRANCISCO"), "{key}");
    let request = lost[1]["request"].as_str().unwrap();
    assert!(request.contains("profile=\"civic\"") && request.contains("San Francisco"));
    assert_eq!(lost[1]["embedded"]["area"], "US-06075");
    assert_eq!(lines[1]["registered_address_check"]["state"], "valid");
    assert_eq!(lines[1]["registered_address_check"]["refused"], false);

    // c10, Germany, routed by the registered address: the ECRF for every
    // other country; the gazetteer has no German addresses.
    assert_eq!(lost[2]["ecrf"], other);
    assert_eq!(lost[2]["asked"], true);
    assert_eq!(lost[2]["profile"], "civic");
    assert_eq!(lost[2]["embedded"]["psap_id"], "SYN-DE");
    assert_eq!(lines[2]["registered_address_check"]["state"], "unchecked");

    // c01 goes to the screening center: no ECRF is asked.
    assert_eq!(lost[3]["asked"], false);
    assert_eq!(lost[3]["ecrf"], us);
    let why = lost[3]["why"].as_str().unwrap();
    assert!(why.contains("screening"), "{why}");
    assert_eq!(lost[3]["embedded"], Value::Null);
    assert_eq!(lost[3].get("request"), None);

    // A registered ZIP code of another state: invalid, kept (the default
    // policy warns).
    let check = &lines[4]["registered_address_check"];
    assert_eq!(check["state"], "invalid", "{check}");
    assert!(
        check["elements"]
            .as_array()
            .unwrap()
            .contains(&Value::from("PC")),
        "{check}"
    );
    assert_eq!(check["refused"], false);

    // The lab configuration has no ECRF: nothing is asked, the embedded
    // data decides; a call with no registered address shows none.
    let lines = inspect([corpus().join("c02-us-geo-point.sip")]);
    let lost = &lines[0]["decision"]["lost"];
    assert_eq!(
        (&lost["asked"], &lost["ecrf"]),
        (&Value::Bool(false), &Value::Null)
    );
    assert!(lost["why"].as_str().unwrap().contains("no ECRF"));
    assert_eq!(lost["embedded"]["psap_id"], "SYN-US-08031");
    assert_eq!(lines[0]["registered_address_check"], Value::Null);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_without_inventory_and_on_other_messages() {
    let dir = std::env::temp_dir().join(format!("sosrouter-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain.sip");
    std::fs::write(
        &plain,
        "INVITE sip:+12125550100@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKp1\r\nMax-Forwards: 70\r\nTo: <sip:+12125550100@example.net>\r\nFrom: <sip:+13035550117@example.com>;tag=1\r\nCall-ID: p1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let response = dir.join("resp.sip");
    std::fs::write(
        &response,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKp1\r\nTo: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: p1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let lines = inspect([
        plain.clone(),
        response,
        corpus().join("c02-us-geo-point.sip"),
    ]);
    assert_eq!(lines[0]["emergency"], Value::Null);
    assert_eq!(lines[0]["decision"]["route"], "not-emergency");
    assert_eq!(lines[0]["location"]["source"], "none");
    assert_eq!(lines[1]["decision"], Value::Null);
    // Without an inventory the c02 caller is unknown: the country comes
    // from its number, and the trusted GPS fix still routes directly.
    assert_eq!(lines[2]["emergency"]["country"], "US");
    assert_eq!(lines[2]["decision"]["route"], "psap");
    assert_eq!(lines[2]["decision"]["area"], "US-08031");
    // An emergency INVITE with a Date not in GMT: invalid, yet kept at
    // receipt and routed, which inspect says.
    let bad_date = dir.join("bad-date.sip");
    std::fs::write(
        &bad_date,
        std::fs::read_to_string(corpus().join("c02-us-geo-point.sip"))
            .unwrap()
            .replacen(
                "\r\nCall-ID:",
                "\r\nDate: Sat, 13 Nov 2010 23:29:00 PST\r\nCall-ID:",
                1,
            ),
    )
    .unwrap();
    let lines = inspect([&bad_date, &plain]);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["faults"][0]["reason"], "Bad Date Header");
    assert_eq!(lines[0]["kept_at_receipt"], true);
    assert_eq!(lines[0]["decision"]["route"], "psap");
    // The verdict is the router's own: the same receive path and core.
    assert_eq!(lines[0]["verdict"]["action"], "forwarded");
    assert_eq!(lines[0]["verdict"]["trunk"], "psap");
    assert_eq!(lines[1]["ok"], true);
    assert_eq!(lines[1].get("kept_at_receipt"), None);
    assert_eq!(lines[1]["verdict"]["action"], "answered");
    assert_eq!(lines[1]["verdict"]["status"], 403);
    // A bad inventory row stops inspect with the line number.
    let bad = dir.join("bad.tsv");
    std::fs::write(&bad, "number\tcountry\n+12125550142\tUS\nnope\tUS\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sosrouter"))
        .arg("inspect")
        .arg("--inventory")
        .arg(&bad)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- forwarded INVITEs, through the proxy core -----

const ROUTER: &str = "127.0.0.1:5060";
const CARRIER: &str = "127.0.0.1:40000";
const PSAP: &str = "127.0.0.1:5070";
const SCREENING: &str = "127.0.0.1:5080";
const TEST: &str = "127.0.0.1:5090";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn source() -> Source {
    Source {
        proto: Proto::Udp,
        peer: addr(CARRIER),
        local: addr(ROUTER),
        conn: None,
    }
}

fn core() -> Core {
    let config = Config::embedded();
    let cfg = CoreConfig::from_config(&config, vec![addr(ROUTER)], 7);
    Core::new(cfg, Box::new(router()))
}

fn drain(core: &mut Core) -> Vec<Transmit> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn sent_to(out: &[Transmit], to: &str) -> Vec<Message> {
    out.iter()
        .filter(|t| t.dest.target == Target::Addr(addr(to)))
        .map(|t| {
            sip::parse_datagram(
                t.bytes.clone(),
                &sip::Limits {
                    max_message: usize::MAX,
                    ..Default::default()
                },
            )
            .expect("the forwarded message parses")
        })
        .collect()
}

/// Sends `file` into a proxy core and returns it and the one INVITE it
/// forwards to `to`.
fn forward(file: &str, to: &str) -> (Message, Message, Core) {
    let original = load(file);
    let mut core = core();
    let now = Instant::now();
    core.handle_message(now, original.clone(), source());
    // A location given by reference waits for its fetch: here, as when the
    // location server cannot be reached, none comes back.
    while let Some(fetch) = core.poll_fetch() {
        core.handle_fetched(now, fetch.id, None);
    }
    let out = drain(&mut core);
    let mut fwd = sent_to(&out, to);
    assert_eq!(
        fwd.len(),
        1,
        "{file}: {:?}",
        out.iter().map(|t| &t.dest).collect::<Vec<_>>()
    );
    (original, fwd.remove(0), core)
}

fn values(m: &Message, name: HeaderName) -> Vec<String> {
    m.list(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Every header line of the original is in the forwarded request, in the
/// same order, except Max-Forwards and Content-Length, which change, and
/// the Via the proxy notes the source address in (`received`, RFC 3261
/// section 18.2.1), which only gains parameters.
fn assert_headers_kept(original: &Message, fwd: &Message, file: &str) {
    let fwd_lines: Vec<&[u8]> = fwd.headers().iter().map(|h| fwd.bytes_of(h.line)).collect();
    let mut at = 0;
    for h in original.headers() {
        if matches!(h.name, HeaderName::MaxForwards | HeaderName::ContentLength) {
            continue;
        }
        // A single body that became a part of a multipart body takes its
        // Content-Type into the part (checked by assert_parts_kept).
        let wrapped = !original.content_type().is_some_and(|c| c.is_multipart())
            && fwd.content_type().is_some_and(|c| c.is_multipart());
        if h.name == HeaderName::ContentType && wrapped {
            continue;
        }
        let line = original.bytes_of(h.line);
        let found = if h.name == HeaderName::Via {
            let value = line.trim_ascii_end();
            fwd_lines[at..]
                .iter()
                .position(|l| l.starts_with(value) && l[value.len()..].starts_with(b";"))
        } else {
            fwd_lines[at..].iter().position(|l| *l == line)
        };
        let Some(n) = found else {
            panic!(
                "{file}: header line {:?} missing or out of order",
                String::from_utf8_lossy(line)
            );
        };
        at += n + 1;
    }
    assert_eq!(fwd.max_forwards(), Some(69), "{file}");
}

/// Every body part of the original is in the forwarded body, byte for byte.
fn assert_parts_kept(original: &Message, fwd: &Message, file: &str) {
    let fwd_parts = fwd.body_parts().unwrap();
    let orig_parts = original.body_parts().unwrap();
    if orig_parts.is_empty() {
        if !original.body().is_empty() && fwd.body() != original.body() {
            let part = fwd_parts
                .iter()
                .find(|p| fwd.bytes_of(p.body) == original.body())
                .unwrap_or_else(|| panic!("{file}: body lost"));
            assert_eq!(
                part.content_type.map(|c| fwd.bytes_of(c)),
                original.get(HeaderName::ContentType),
                "{file}: the wrapped body keeps its Content-Type"
            );
        }
        return;
    }
    for p in &orig_parts {
        let bytes = original.bytes_of(p.body);
        assert!(
            fwd_parts.iter().any(|q| fwd.bytes_of(q.body) == bytes),
            "{file}: a body part was changed or dropped"
        );
    }
}

fn call_info(fwd: &Message) -> Vec<(String, String)> {
    fwd.list(HeaderName::CallInfo)
        .filter_map(NameAddr::parse)
        .map(|n| {
            (
                String::from_utf8_lossy(n.uri_text).into_owned(),
                String::from_utf8_lossy(n.param("purpose").flatten().unwrap_or_default())
                    .into_owned(),
            )
        })
        .collect()
}

fn assert_identifiers(fwd: &Message, file: &str) {
    let ci = call_info(fwd);
    for (kind, purpose) in [
        ("callid", "emergency-CallId"),
        ("incidentid", "emergency-IncidentId"),
    ] {
        let found: Vec<&(String, String)> = ci.iter().filter(|(_, p)| p == purpose).collect();
        assert_eq!(found.len(), 1, "{file}: {ci:?}");
        let uri = &found[0].0;
        let rest = uri
            .strip_prefix(&format!("urn:emergency:uid:{kind}:"))
            .unwrap_or_else(|| panic!("{file}: {uri}"));
        let (hex, domain) = rest.split_once(':').unwrap();
        assert_eq!(hex.len(), 32, "{uri}");
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{uri}");
        assert_eq!(domain, "sosrouter.lab.example");
    }
}

/// The registered address part: the first Geolocation value names it, the
/// part is a PIDF-LO with the inventory's address, and the caller's own
/// Geolocation values follow.
fn assert_registered_part(original: &Message, fwd: &Message, file: &str, a3: &str) {
    let geo = values(fwd, HeaderName::Geolocation);
    let own = values(original, HeaderName::Geolocation);
    assert_eq!(geo.len(), own.len() + 1, "{file}: {geo:?}");
    assert_eq!(&geo[1..], &own[..], "{file}");
    let cid = geo[0]
        .strip_prefix("<cid:")
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{file}: {}", geo[0]));
    assert!(cid.ends_with("@sosrouter.lab.example"), "{cid}");
    let parts = fwd.body_parts().unwrap();
    let part = fwd
        .part_by_content_id(&parts, cid.as_bytes())
        .unwrap_or_else(|| panic!("{file}: no part {cid}"));
    assert!(sip::body::is_pidf(fwd, &part));
    let doc = pidf::parse(fwd.bytes_of(part.body)).unwrap();
    let civic = doc.selected().civic.clone().unwrap();
    assert_eq!(civic.get("A3"), Some(a3), "{file}");
    assert_eq!(doc.selected().method.as_deref(), Some("Registered"));
    assert_eq!(
        fwd.content_type().map(|c| c.is_multipart()),
        Some(true),
        "{file}"
    );
}

#[test]
fn screened_call_carries_the_registered_address_first() {
    let (original, fwd, _) = forward("c01-us-civic-cid.sip", SCREENING);
    assert_eq!(fwd.request_uri_bytes(), original.request_uri_bytes());
    assert_headers_kept(&original, &fwd, "c01");
    assert_parts_kept(&original, &fwd, "c01");
    assert_identifiers(&fwd, "c01");
    assert_registered_part(&original, &fwd, "c01", "New York");
    // The caller's own location part is still the one its value names.
    let parts = fwd.body_parts().unwrap();
    let own = fwd
        .part_by_content_id(&parts, b"loc-c01@ua1.example.com")
        .unwrap();
    let doc = pidf::parse(fwd.bytes_of(own.body)).unwrap();
    assert_eq!(doc.selected().method.as_deref(), Some("Manual"));
    assert_eq!(
        fwd.get(HeaderName::Route),
        None,
        "no PSAP named for screening"
    );
    assert_eq!(parts.len(), 3);
}

#[test]
fn dynamic_call_names_its_psap_and_adds_no_address() {
    let (original, fwd, _) = forward("c02-us-geo-point.sip", PSAP);
    assert_headers_kept(&original, &fwd, "c02");
    assert_parts_kept(&original, &fwd, "c02");
    assert_identifiers(&fwd, "c02");
    assert_eq!(
        fwd.get(HeaderName::Route),
        Some(&b"<sip:sos@us-08031.psap.example;lr>"[..])
    );
    assert_eq!(
        values(&fwd, HeaderName::Geolocation),
        values(&original, HeaderName::Geolocation)
    );
    assert_eq!(fwd.body_parts().unwrap().len(), 2);
}

#[test]
fn service_urn_request_uri_is_kept() {
    let (original, fwd, _) = forward("c07-urn-service-sos.sip", SCREENING);
    assert_eq!(fwd.request_uri_bytes(), b"urn:service:sos");
    assert_eq!(fwd.get(HeaderName::To), original.get(HeaderName::To));
    assert_headers_kept(&original, &fwd, "c07");
    assert_registered_part(&original, &fwd, "c07", "Seattle");
}

#[test]
fn reference_kept_and_common_area_phone_sent_to_its_psap() {
    let (original, fwd, _) = forward("c11-geoloc-by-reference.sip", PSAP);
    assert_headers_kept(&original, &fwd, "c11");
    assert_parts_kept(&original, &fwd, "c11");
    assert_registered_part(&original, &fwd, "c11", "San Francisco");
    assert_eq!(
        values(&fwd, HeaderName::Geolocation)[1],
        "<https://lis.example.com:8443/loc/7f3a9c21e4>"
    );
    assert_eq!(
        fwd.get(HeaderName::Route),
        Some(&b"<sip:sos@us-06075.psap.example;lr>"[..])
    );
    // The SDP body became the first part of a multipart body.
    let parts = fwd.body_parts().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(fwd.bytes_of(parts[0].body), original.body());
}

#[test]
fn geolocation_routing_no_is_forwarded_unchanged() {
    let (original, fwd, _) = forward("c14-geolocation-routing-no.sip", SCREENING);
    assert_headers_kept(&original, &fwd, "c14");
    assert_eq!(fwd.get(HeaderName::GeolocationRouting), Some(&b"no"[..]));
}

#[test]
fn malformed_pidf_is_forwarded_as_received() {
    let (original, fwd, _) = forward("c12-malformed-pidf.sip", SCREENING);
    assert_headers_kept(&original, &fwd, "c12");
    assert_parts_kept(&original, &fwd, "c12");
    assert_registered_part(&original, &fwd, "c12", "Phoenix");
}

#[test]
fn test_call_goes_to_the_test_trunk_only() {
    let (original, fwd, mut core) = forward("c08-us-933-test.sip", TEST);
    assert_headers_kept(&original, &fwd, "c08");
    assert_eq!(fwd.get(HeaderName::Route), None);
    // With a dynamic location the test call rests on it: no address added.
    assert_eq!(fwd.body_parts().unwrap().len(), 2);
    // The test trunk failing ends the call: it never reaches a PSAP.
    let resp = sip::parse_datagram(
        sip::build::response(&fwd, None, 503, "Unavailable", Some("t1"), &[], None),
        &Default::default(),
    )
    .unwrap();
    core.handle_message(Instant::now(), resp, test_source(TEST));
    let out = drain(&mut core);
    assert!(sent_to(&out, PSAP).is_empty());
    assert!(sent_to(&out, SCREENING).is_empty());
}

fn test_source(from: &str) -> Source {
    Source {
        proto: Proto::Udp,
        peer: addr(from),
        local: addr(ROUTER),
        conn: None,
    }
}

#[test]
fn psap_failure_fails_over_to_the_screening_center() {
    let (_, fwd, mut core) = forward("c02-us-geo-point.sip", PSAP);
    let resp = sip::parse_datagram(
        sip::build::response(
            &fwd,
            None,
            503,
            "Service Unavailable",
            Some("p1"),
            &[],
            None,
        ),
        &Default::default(),
    )
    .unwrap();
    core.handle_message(Instant::now(), resp, test_source(PSAP));
    let out = drain(&mut core);
    let next = sent_to(&out, SCREENING);
    let invites: Vec<&Message> = next
        .iter()
        .filter(|m| m.method() == sip::Method::Invite)
        .collect();
    assert_eq!(invites.len(), 1);
    let again = invites[0];
    assert_eq!(again.get(HeaderName::Route), None);
    // The identifiers are the same on every target.
    assert_eq!(call_info(again), call_info(&fwd));
}

#[test]
fn existing_identifiers_are_not_added_again() {
    let text = std::fs::read_to_string(corpus().join("c02-us-geo-point.sip")).unwrap();
    let text = text.replacen(
        "Geolocation-Routing: yes\r\n",
        "Geolocation-Routing: yes\r\nCall-Info: <urn:emergency:uid:callid:00112233445566778899aabbccddeeff:osp.example>;purpose=emergency-CallId\r\n",
        1,
    );
    let msg = sip::parse_datagram(Bytes::from(text), &Default::default()).unwrap();
    let router = router();
    let inv = router.inventory();
    let ev = router.evaluate(&inv, &msg, None, false);
    let a = router.augment(&msg, &ev, 1);
    assert_eq!(a.headers.len(), 1);
    assert!(a.headers[0]
        .1
        .starts_with(b"<urn:emergency:uid:incidentid:"));
    assert!(a.body_part.is_none());
    assert!(a.headers_first.is_empty());
}

#[test]
fn calls_that_are_not_emergencies_are_refused() {
    let text = std::fs::read_to_string(corpus().join("c01-us-civic-cid.sip")).unwrap();
    let text = text.replacen("INVITE sip:911@", "INVITE sip:+12125550100@", 1);
    let msg = sip::parse_datagram(Bytes::from(text), &Default::default()).unwrap();
    let mut core = core();
    core.handle_message(Instant::now(), msg, source());
    let out = drain(&mut core);
    let answers = sent_to(&out, CARRIER);
    let finals: Vec<u16> = answers
        .iter()
        .filter_map(|m| m.status())
        .filter(|s| *s >= 200)
        .collect();
    assert_eq!(finals, [403]);
    assert!(sent_to(&out, PSAP).is_empty() && sent_to(&out, SCREENING).is_empty());
    // A UK caller dialling 999 is an emergency; a US caller is not.
    let router = router();
    let inv = router.inventory();
    let c09 = load("c09-uk-999.sip");
    assert!(router.evaluate(&inv, &c09, None, false).detected.is_some());
    let text = std::fs::read_to_string(corpus().join("c01-us-civic-cid.sip"))
        .unwrap()
        .replacen("INVITE sip:911@", "INVITE sip:999@", 1);
    let us999 = sip::parse_datagram(Bytes::from(text), &Default::default()).unwrap();
    assert!(router
        .evaluate(&inv, &us999, None, false)
        .detected
        .is_none());
}

/// Replaces the body of a corpus message and fixes its Content-Length.
fn with_body(file: &str, body: &[u8], extra_header: &str) -> Option<Message> {
    let data = std::fs::read(corpus().join(file)).unwrap();
    let split = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&data[..split]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.starts_with("Content-Length:") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(extra_header);
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    sip::parse_datagram(Bytes::from(bytes), &Default::default()).ok()
}

#[test]
fn hostile_bodies_and_headers_never_refuse_an_emergency() {
    let mut router = router();
    let inv = router.inventory();
    let source = source();
    let ctx = sosrouter::proxy::RouteContext {
        source: &source,
        inbound_trunk: Some("carrier"),
        dereferenced: None,
        lost: None,
        wall: None,
        unique: 1,
    };
    let mut check = |msg: &Message, what: &str| {
        let ev = router.evaluate(&inv, msg, Some("carrier"), false);
        let d = ev
            .decision
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no decision"));
        assert!(!d.targets.is_empty(), "{what}");
        match sosrouter::proxy::Router::route(&mut router, msg, &ctx) {
            Decision::Route { emergency, .. } => assert!(emergency, "{what}"),
            Decision::Reject { status, .. } => panic!("{what}: refused with {status}"),
        }
    };
    let data = std::fs::read(corpus().join("c01-us-civic-cid.sip")).unwrap();
    let split = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = &data[split + 4..];
    let mut tried = 0;
    // Truncated anywhere, and single bytes replaced by markup.
    for at in (0..body.len()).step_by(23) {
        if let Some(m) = with_body("c01-us-civic-cid.sip", &body[..at], "") {
            check(&m, &format!("truncated at {at}"));
            tried += 1;
        }
        for b in [b'<', b'&', b'"', 0xff] {
            let mut mutated = body.to_vec();
            mutated[at] = b;
            if let Some(m) = with_body("c01-us-civic-cid.sip", &mutated, "") {
                check(&m, &format!("byte {at} set to {b:#x}"));
                tried += 1;
            }
        }
    }
    assert!(tried > 200, "{tried}");
    // Odd Geolocation values next to the good one.
    for value in [
        "<cid:>",
        "garbage",
        "<cid:%ZZ>",
        "<ftp://example.com/loc>",
        "<cid:loc-c01@ua1.example.com>, <cid:loc-c01@ua1.example.com>",
        "<https://lis.example.com/a>;inserted-by=x",
    ] {
        let m = with_body(
            "c01-us-civic-cid.sip",
            body,
            &format!("Geolocation: {value}\r\n"),
        )
        .unwrap();
        check(&m, value);
    }
    // A caller nobody knows, with no usable identity.
    let text = String::from_utf8_lossy(&data).replacen(
        "From: <sip:+12125550142@example.com>",
        "From: <sip:anonymous@anonymous.invalid>",
        1,
    );
    let m = sip::parse_datagram(Bytes::from(text), &Default::default()).unwrap();
    check(&m, "anonymous caller");
    let ev = router.evaluate(&inv, &m, Some("carrier"), false);
    assert_eq!(ev.country.as_deref(), Some("US"), "the trunk's country");
    assert_eq!(ev.caller, None);
}

#[test]
fn torture_corpus_requests_never_panic() {
    let router = router();
    let inv = router.inventory();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/torture");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sip") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Some(m) = sip::parse_lenient(Bytes::from(data)) {
            let ev = router.evaluate(&inv, &m, Some("carrier"), true);
            let _ = router.decision(&m, ev, 1);
            seen += 1;
        }
    }
    assert!(seen > 20, "{seen}");
}

#[test]
fn a_new_inventory_snapshot_takes_effect_at_once() {
    let mut router = router();
    let msg = load("c04-us-no-location.sip");
    let source = source();
    let ctx = sosrouter::proxy::RouteContext {
        source: &source,
        inbound_trunk: Some("carrier"),
        dereferenced: None,
        lost: None,
        wall: None,
        unique: 1,
    };
    let city = |d: Decision| match d {
        Decision::Route { augment, .. } => {
            let (_, doc) = augment.body_part.expect("registered address part");
            let civic = pidf::parse(&doc).unwrap().selected().civic.clone().unwrap();
            civic.get("A3").map(str::to_string)
        }
        Decision::Reject { .. } => None,
    };
    for _ in 0..2 {
        let d = sosrouter::proxy::Router::route(&mut router, &msg, &ctx);
        assert_eq!(city(d).as_deref(), Some("Boston"));
    }
    let text = std::fs::read_to_string(corpus().join("inventory.tsv"))
        .unwrap()
        .replace("MA\tBoston\tBoylston", "MA\tCambridge\tMassachusetts");
    let updated = Inventory::parse(&text, sosrouter::inventory::load::Format::Tsv).unwrap();
    sosrouter::proxy::Router::set_inventory(&mut router, Arc::new(updated));
    let d = sosrouter::proxy::Router::route(&mut router, &msg, &ctx);
    assert_eq!(city(d).as_deref(), Some("Cambridge"));
}

/// A PIDF-LO holding a character XML forbids is not well-formed, so it is
/// no location: the call is routed as if it carried none (here on the
/// caller's registered address, to screening), and the location kept with
/// the call, which the call record is written from, says why.
#[test]
fn a_pidf_with_a_character_xml_forbids_is_not_a_location() {
    let mut router = router();
    let inv = router.inventory();
    let source = source();
    let ctx = sosrouter::proxy::RouteContext {
        source: &source,
        inbound_trunk: Some("carrier"),
        dereferenced: None,
        lost: None,
        wall: None,
        unique: 1,
    };
    let data = std::fs::read(corpus().join("c06-sip-user-phone.sip")).unwrap();
    let split = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = &data[split + 4..];
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let at = body
            .windows(from.len())
            .position(|w| w == from)
            .expect("in the body");
        [&body[..at], to, &body[at + from.len()..]].concat()
    };
    let mut route = |body: &[u8]| {
        let msg = with_body("c06-sip-user-phone.sip", body, "").expect("the INVITE parses");
        match sosrouter::proxy::Router::route(&mut router, &msg, &ctx) {
            Decision::Route {
                targets,
                route,
                reason,
                details,
                ..
            } => {
                let details = details.expect("details");
                let location = details.location.as_ref().expect("location").to_json();
                let ev = router.evaluate(&inv, &msg, Some("carrier"), false);
                (
                    targets[0].trunk.clone(),
                    route,
                    reason,
                    details.routed_by,
                    details.location_source,
                    location,
                    ev.decision_json(),
                )
            }
            Decision::Reject { status, .. } => panic!("refused with {status}"),
        }
    };
    // As received, the location is trusted and routes to its PSAP.
    let (trunk, route_name, reason, routed_by, source_name, location, _) = route(body);
    assert_eq!(
        (trunk.as_str(), route_name, reason, routed_by, source_name),
        ("psap", "psap", "dynamic-location", "dynamic", "pidf-civic")
    );
    assert_eq!(location["civic"]["A1"], "IL");
    for (what, from, to, shown) in [
        (
            "NUL in a civic element",
            &b"<ca:A1>IL</ca:A1>"[..],
            &b"<ca:A1>IL\0</ca:A1>"[..],
            "U+0000",
        ),
        (
            "U+0001 in an attribute",
            b"<dm:device id=\"d1\">",
            b"<dm:device id=\"d\x011\">",
            "U+0001",
        ),
        (
            "U+000B in a civic element",
            b"<ca:RD>Wacker</ca:RD>",
            b"<ca:RD>Wa\x0bcker</ca:RD>",
            "U+000B",
        ),
        (
            "U+FFFE in a civic element",
            b"<ca:A3>Chicago</ca:A3>",
            "<ca:A3>Chicago\u{FFFE}</ca:A3>".as_bytes(),
            "U+FFFE",
        ),
        (
            "invalid UTF-8 in a civic element",
            b"<ca:A3>Chicago</ca:A3>",
            b"<ca:A3>Chic\xe1go</ca:A3>",
            "UTF-8",
        ),
    ] {
        let (trunk, route_name, reason, routed_by, source_name, location, decision) =
            route(&replace(from, to));
        assert_eq!(
            (trunk.as_str(), route_name, reason, routed_by, source_name),
            (
                "screening",
                "screening",
                "screening-no-location",
                "registered",
                "registered"
            ),
            "{what}: {location:#}"
        );
        assert_eq!(decision["reason"], "screening-no-location", "{what}");
        // The registered address is the location shown and recorded ...
        assert_eq!(location["source"], "registered", "{what}");
        assert_eq!(location["civic"]["A3"], "Chicago", "{what}");
        assert_eq!(location["method"], Value::Null, "{what}");
        // ... and the document's fault is kept with it.
        let errors: Vec<&str> = location["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            errors.iter().any(
                |e| e.starts_with("cid:loc-c06@ua6.example.com: not-well-formed")
                    && e.contains(shown)
            ),
            "{what}: {errors:?}"
        );
    }
}

/// The location each corpus INVITE leaves in its call record, compared
/// with `tests/golden/emergency-locations.json`, so that a change in how
/// the PIDF-LO is read cannot change what is recorded.
/// `SIP_GOLDEN_UPDATE=1 cargo test --test emergency_corpus` rewrites the
/// file; review its diff before committing it.
#[test]
fn recorded_locations_match_the_golden_file() {
    let router = router();
    let inv = router.inventory();
    let mut all = serde_json::Map::new();
    for row in manifest() {
        let msg = load(&row.file);
        let ev = router.evaluate(&inv, &msg, Some("carrier"), false);
        all.insert(row.file.clone(), ev.location_json());
    }
    let mut out = serde_json::to_string_pretty(&Value::Object(all)).unwrap();
    out.push('\n');
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/emergency-locations.json");
    if std::env::var_os("SIP_GOLDEN_UPDATE").is_some() {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).expect("the golden file");
    assert!(
        out == want,
        "the recorded locations differ from the golden file\n--- got\n{out}\n--- golden\n{want}"
    );
}
