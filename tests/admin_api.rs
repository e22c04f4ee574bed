//! The admin API against the real binary over HTTP, on SQLite (a temporary
//! file) and on PostgreSQL (a fresh database under SOSROUTER_TEST_PG_URL):
//! every endpoint and role, the cross-tenant cases, capability refusals,
//! all-or-nothing uploads, malformed and oversized bodies, the audit log,
//! and a change through the API routing the very next call.

mod adminhttp;
mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use adminhttp::{emergency_config, sip_header, tokens, Api, Caller, Db, Tokens, Trunk};
use common::{Router, Trunks};

struct Lab {
    router: Router,
    api: Api,
    t: Tokens,
    /// Down; dropped after the router.
    _trunks: Trunks,
}

fn start(db: &Db) -> Lab {
    let t = tokens();
    let trunks = Trunks::new();
    let router = Router::start(&emergency_config(&trunks, db, &t), &[]);
    let api = Api::of(&router);
    Lab {
        router,
        api,
        t,
        _trunks: trunks,
    }
}

fn ny() -> Value {
    json!({"country": "US", "A1": "NY", "A3": "New York", "RD": "W 34th", "STS": "St", "HNO": "20", "PC": "10001"})
}

fn sf() -> Value {
    json!({"A1": "CA", "A3": "San Francisco", "RD": "Dr Carlton B Goodlett", "STS": "Pl", "HNO": "1", "PC": "94102"})
}

/// acme: A may edit its address, B may not, C may only set one (it has
/// none). globex (uploaded as CSV): G.
const A: &str = "+12125550142";
const B: &str = "+13035550117";
const C: &str = "+16175550123";
const G: &str = "+13125550100";

fn seed(lab: &Lab) {
    let acme = json!([
        {"number": A, "country": "US", "tenant_may_edit_address": true,
         "reg_A1": "NY", "reg_A3": "New York", "reg_RD": "W 34th", "reg_STS": "St", "reg_HNO": "20", "reg_PC": "10001"},
        {"number": B, "country": "US", "tenant_may_edit_address": "no", "common_area_phone": "yes",
         "reg_A1": "CO", "reg_A3": "Denver", "reg_RD": "E Colfax", "reg_STS": "Ave", "reg_HNO": "200"},
        {"number": C, "country": "US", "tenant_may_set_address": "yes"},
    ]);
    let r = lab
        .api
        .send_json("POST", "/v1/tenants/acme/numbers", &lab.t.operator, &acme);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], 3);
    let csv = format!(
        "number,tenant,country,tenant_may_edit_address,reg_A1,reg_A3,reg_RD,reg_HNO\r\n{G},globex,US,yes,IL,Chicago,\"Michigan Ave, N\",100\r\n"
    );
    let r = lab.api.call(
        "POST",
        "/v1/tenants/globex/numbers",
        Some(&lab.t.operator),
        Some("text/csv; charset=utf-8"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], 1);
}

fn numbers(lab: &Lab, tenant: &str, token: &str) -> Vec<Value> {
    let r = lab.api.get(&format!("/v1/tenants/{tenant}/numbers"), token);
    assert_eq!(r.status, 200, "{r}");
    r.json().as_array().unwrap().clone()
}

fn number(lab: &Lab, tenant: &str, n: &str) -> Value {
    let r = lab.api.get(
        &format!("/v1/tenants/{tenant}/numbers/{n}"),
        &lab.t.operator,
    );
    assert_eq!(r.status, 200, "{r}");
    r.json()
}

fn roles_and_tenants(db: Db) {
    let lab = start(&db);
    let api = lab.api;
    let t = &lab.t;

    // No token, a wrong token: 401, and the health endpoints need none.
    let r = api.call("GET", "/v1/tenants/acme/numbers", None, None, b"");
    assert_eq!(r.status, 401, "{r}");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert!(r.json()["error"].as_str().unwrap().contains("bearer token"));
    assert_eq!(api.get("/v1/tenants/acme/numbers", "nope").status, 401);
    assert_eq!(api.call("GET", "/healthz", None, None, b"").status, 200);

    seed(&lab);
    let listed = numbers(&lab, "acme", &t.operator);
    let ids: Vec<&str> = listed
        .iter()
        .map(|n| n["number"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [A, B, C]);
    assert_eq!(listed[1]["common_area_phone"], true);
    assert_eq!(listed[1]["capabilities"]["change_address"], false);
    assert_eq!(listed[0]["address"]["A3"], "New York");
    assert_eq!(listed[0]["address_source"], "number");
    assert_eq!(listed[2]["address"], Value::Null);
    assert_eq!(numbers(&lab, "acme", &t.acme), listed);
    let g = number(&lab, "globex", G);
    assert_eq!(g["address"]["RD"], "Michigan Ave, N");
    assert_eq!(g["address"]["country"], "US");

    // The + percent-encoded, or left out.
    let enc = api.get("/v1/tenants/acme/numbers/%2B12125550142", &t.acme);
    assert_eq!(enc.status, 200, "{enc}");
    assert_eq!(enc.json()["number"], A);
    assert_eq!(
        api.get("/v1/tenants/acme/numbers/12125550142", &t.acme)
            .json()["number"],
        A
    );
    assert_eq!(api.get("/v1/tenants/acme/numbers/12", &t.acme).status, 400);

    // Cross-tenant: another tenant's paths are 403; another tenant's number
    // under one's own tenant is as absent as a number nobody has.
    let r = api.get("/v1/tenants/globex/numbers", &t.acme);
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(
        api.get(&format!("/v1/tenants/globex/numbers/{G}"), &t.acme)
            .status,
        403
    );
    let theirs = api.get(&format!("/v1/tenants/acme/numbers/{G}"), &t.acme);
    let nobody = api.get("/v1/tenants/acme/numbers/+13125550199", &t.acme);
    assert_eq!((theirs.status, nobody.status), (404, 404));
    assert_eq!(
        theirs.text().replace(G, "N"),
        nobody.text().replace("+13125550199", "N")
    );
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/globex/numbers/{G}/address"),
        &t.acme,
        &ny(),
    );
    assert_eq!(r.status, 403, "{r}");
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{G}/address"),
        &t.acme,
        &ny(),
    );
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(
        api.delete(&format!("/v1/tenants/acme/numbers/{G}/address"), &t.acme)
            .status,
        404
    );
    assert_eq!(number(&lab, "globex", G), g, "globex's number is unchanged");
    let r = api.get("/v1/records?tenant=globex", &t.acme);
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(api.get("/v1/tenants/globex/locations", &t.acme).status, 403);
    assert_eq!(
        api.get("/v1/tenants/globex/security-desk", &t.acme).status,
        403
    );

    // Operators only: uploads, deletes, the audit log, the status.
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.acme,
        &json!([{"number": "+12125550199", "country": "US"}]),
    );
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(
        api.delete(&format!("/v1/tenants/acme/numbers/{A}"), &t.acme)
            .status,
        403
    );
    assert_eq!(api.get("/v1/audit", &t.acme).status, 403);
    assert_eq!(api.get("/v1/inventory", &t.acme).status, 403);
    assert_eq!(numbers(&lab, "acme", &t.operator), listed);

    // Capabilities: A may be changed by its tenant admin.
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{A}/address"),
        &t.acme,
        &sf(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["address"]["A3"], "San Francisco");
    assert_eq!(
        r.json()["address"]["country"],
        "US",
        "the number's country fills in"
    );
    // B may not: 403 naming the capability, and nothing changes.
    let before_b = number(&lab, "acme", B);
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{B}/address"),
        &t.acme,
        &sf(),
    );
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(r.json()["capability"], "change_address");
    let r = api.delete(&format!("/v1/tenants/acme/numbers/{B}/address"), &t.acme);
    assert_eq!(
        (r.status, r.json()["capability"].clone()),
        (403, json!("delete_address"))
    );
    assert_eq!(number(&lab, "acme", B), before_b);
    // C may set an address, but not change or delete it afterwards.
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{C}/address"),
        &t.acme,
        &ny(),
    );
    assert_eq!(r.status, 200, "{r}");
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{C}/address"),
        &t.acme,
        &sf(),
    );
    assert_eq!(
        (r.status, r.json()["capability"].clone()),
        (403, json!("change_address"))
    );
    let r = api.delete(&format!("/v1/tenants/acme/numbers/{C}/address"), &t.acme);
    assert_eq!(
        (r.status, r.json()["capability"].clone()),
        (403, json!("delete_address"))
    );
    assert_eq!(number(&lab, "acme", C)["address"]["A3"], "New York");
    // Operators may always; a deleted address is gone.
    let r = api.delete(
        &format!("/v1/tenants/acme/numbers/{C}/address"),
        &t.operator,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(number(&lab, "acme", C)["address"], Value::Null);
    assert_eq!(
        api.delete(
            &format!("/v1/tenants/acme/numbers/{C}/address"),
            &t.operator
        )
        .status,
        404
    );
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{B}/address"),
        &t.operator,
        &sf(),
    );
    assert_eq!(r.status, 200, "{r}");

    // Bad addresses: unknown elements, missing required ones, bad JSON.
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{A}/address"),
        &t.acme,
        &json!({"A3": "Denver", "RD": "Colfax", "HN0": "1"}),
    );
    assert_eq!(r.status, 422, "{r}");
    assert!(r.json()["error"].as_str().unwrap().contains("HN0"));
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{A}/address"),
        &t.acme,
        &json!({"A3": "Denver", "RD": "Colfax"}),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.json()["missing"], json!(["A1", "HNO"]));
    let r = api.call(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{A}/address"),
        Some(&t.acme),
        Some("application/json"),
        b"{\"A3\": ",
    );
    assert_eq!(r.status, 400, "{r}");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(number(&lab, "acme", A)["address"]["A3"], "San Francisco");

    // Locations: the tenant admin defines its own.
    let hq = json!({"id": "hq", "address": ny()});
    let r = api.send_json("POST", "/v1/tenants/acme/locations", &t.acme, &hq);
    assert_eq!(r.status, 201, "{r}");
    let r = api.send_json("POST", "/v1/tenants/acme/locations", &t.acme, &hq);
    assert_eq!(r.status, 200, "{r}");
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/locations",
        &t.acme,
        &json!({"id": "bad id", "address": ny()}),
    );
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(
        api.send_json("POST", "/v1/tenants/globex/locations", &t.acme, &hq)
            .status,
        403
    );
    let r = api.get("/v1/tenants/acme/locations", &t.acme);
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{r}");
    let r = api.get("/v1/tenants/acme/locations/hq", &t.acme);
    assert_eq!(r.json()["address"]["A3"], "New York", "{r}");
    assert_eq!(
        api.get("/v1/tenants/globex/locations", &t.globex).json(),
        json!([])
    );
    // A number assigned to it takes its address; the location cannot go
    // while a number uses it.
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": C, "location_id": "hq"}]),
    );
    assert_eq!(r.status, 200, "{r}");
    let c = number(&lab, "acme", C);
    assert_eq!(
        (c["address"]["A3"].clone(), c["address_source"].clone()),
        (json!("New York"), json!("location"))
    );
    let r = api.delete("/v1/tenants/acme/locations/hq", &t.acme);
    assert_eq!(r.status, 409, "{r}");
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": C, "location_id": ""}]),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        api.delete("/v1/tenants/acme/locations/hq", &t.acme).status,
        204
    );
    assert_eq!(
        api.get("/v1/tenants/acme/locations/hq", &t.acme).status,
        404
    );

    // Security desk webhook.
    assert_eq!(
        api.get("/v1/tenants/acme/security-desk", &t.acme).status,
        404
    );
    let hook = json!({"url": "https://desk.acme.example/hooks/911"});
    let r = api.send_json("PUT", "/v1/tenants/acme/security-desk", &t.acme, &hook);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        api.get("/v1/tenants/acme/security-desk", &t.operator)
            .json()["url"],
        hook["url"]
    );
    let r = api.send_json(
        "PUT",
        "/v1/tenants/acme/security-desk",
        &t.acme,
        &json!({"url": "ftp://x"}),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(
        api.delete("/v1/tenants/acme/security-desk", &t.acme).status,
        204
    );
    assert_eq!(
        api.get("/v1/tenants/acme/security-desk", &t.acme).status,
        404
    );

    // Deleting a number (operators).
    assert_eq!(
        api.delete(&format!("/v1/tenants/globex/numbers/{G}"), &t.operator)
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/v1/tenants/globex/numbers/{G}"), &t.globex)
            .status,
        404
    );
    assert_eq!(
        api.delete(&format!("/v1/tenants/globex/numbers/{G}"), &t.operator)
            .status,
        404
    );

    // The audit log: who changed which address or capability, old and new.
    let audit = api.get("/v1/audit", &t.operator);
    assert_eq!(audit.status, 200, "{audit}");
    let entries = audit.json().as_array().unwrap().clone();
    let find = |actor: &str, subject: &str, field: &str, action: &str| {
        entries
            .iter()
            .filter(|e| {
                e["actor"] == actor
                    && e["subject"] == subject
                    && e["field"] == field
                    && e["action"] == action
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let a_change = find("acme-admin", A, "address", "change");
    assert_eq!(a_change.len(), 1, "{entries:#?}");
    assert_eq!(a_change[0]["old"]["A3"], "New York");
    assert_eq!(a_change[0]["new"]["A3"], "San Francisco");
    assert_eq!(a_change[0]["role"], "tenant-admin");
    assert_eq!(a_change[0]["tenant"], "acme");
    assert!(a_change[0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(find("acme-admin", C, "address", "create").len(), 1);
    // Deleted by the operator, then given and taken again with location hq.
    assert_eq!(find("ops", C, "address", "delete").len(), 2);
    assert_eq!(find("ops", C, "address", "create").len(), 1);
    let caps = find("ops", B, "capabilities", "create");
    assert_eq!(caps.len(), 1);
    assert_eq!(caps[0]["new"]["change_address"], false);
    assert_eq!(find("ops", G, "capabilities", "delete").len(), 1);
    assert_eq!(find("acme-admin", "hq", "location", "create").len(), 1);
    assert_eq!(
        find("acme-admin", "security-desk", "security_desk", "create").len(),
        1
    );
    // Refused changes left no entry.
    assert!(find("acme-admin", B, "address", "change").is_empty());
    // Times are ordered; the filter by tenant works.
    let times: Vec<i64> = entries
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let globex = api.get("/v1/audit?tenant=globex", &t.operator).json();
    assert!(globex
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "globex"));
    assert!(!globex.as_array().unwrap().is_empty());
    assert_eq!(api.get("/v1/audit?from=yesterday", &t.operator).status, 400);
    assert_eq!(api.get("/v1/audit?tenat=acme", &t.operator).status, 400);

    let status = api.get("/v1/inventory", &t.operator).json();
    assert_eq!(status["numbers"], 3, "{status}");
    assert_eq!(status["snapshot_version"], status["database_version"]);
    // Location stays out of the log at info level.
    assert!(!lab.router.log().contains("Goodlett"));
}

fn upload_all_or_nothing(db: Db) {
    let lab = start(&db);
    let (api, t) = (lab.api, &lab.t);
    seed(&lab);
    let before = numbers(&lab, "acme", &t.operator);

    // One bad row refuses the whole upload, and every bad row is named.
    let csv = "number,country,common_area_phone,reg_A1,reg_A3,reg_RD,reg_HNO\n\
        +12125550150,US,no,NY,New York,Broadway,1\n\
        +12125550151,US,maybe,NY,New York,Broadway,2\n\
        +12125550142,US,yes,NY,New York,Broadway,3\n\
        +12125550152,US,no,NY,New York,Broadway,\n\
        +19995550153,US,no,NY,New York,Broadway,5\n";
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 422, "{r}");
    let rows = r.json()["rows"].as_array().unwrap().clone();
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 6], "{rows:#?}");
    assert!(rows[0]["errors"][0].as_str().unwrap().contains("yes or no"));
    // No US area code 999: the number is named with the reason.
    assert_eq!(
        rows[1]["errors"][0],
        "number \"+19995550153\": 9995550153 is not in a number range that US uses (libphonenumber's metadata)"
    );
    assert_eq!(numbers(&lab, "acme", &t.operator), before);

    // Rows that read well but cannot apply: a missing required element,
    // another tenant's number, a new number without a country, an unknown
    // location. Nothing of the good rows is applied either.
    let tsv = format!(
        "number\tcountry\tlocation_id\treg_A1\treg_A3\treg_RD\treg_HNO\n\
        +12125550150\tUS\t\tNY\tNew York\tBroadway\t1\n\
        +12125550152\tUS\t\tNY\tNew York\tBroadway\t\n\
        {G}\tUS\t\tIL\tChicago\tState\t1\n\
        +12125550154\t\t\tNY\tNew York\tBroadway\t4\n\
        +12125550155\tUS\tnowhere\t\t\t\t\n\
        {A}\tUS\t\tNY\tNew York\tBroadway\t9\n"
    );
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/tab-separated-values"),
        tsv.as_bytes(),
    );
    assert_eq!(r.status, 422, "{r}");
    let rows = r.json()["rows"].as_array().unwrap().clone();
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5, 6], "{rows:#?}");
    assert!(rows[0]["errors"][0].as_str().unwrap().contains("HNO"));
    assert!(rows[1]["errors"][0]
        .as_str()
        .unwrap()
        .contains("another tenant"));
    assert!(rows[2]["errors"][0].as_str().unwrap().contains("country"));
    assert!(rows[3]["errors"][0].as_str().unwrap().contains("nowhere"));
    assert_eq!(numbers(&lab, "acme", &t.operator), before);
    assert_eq!(number(&lab, "globex", G)["address"]["A3"], "Chicago");

    // JSON rows report their index.
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": "+12125550160", "country": "US"}, {"number": "+12125550161", "colour": "red"}]),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.json()["rows"][0]["index"], 1);
    assert!(r.json()["rows"][0]["errors"][0]
        .as_str()
        .unwrap()
        .contains("colour"));

    // Malformed bodies: 400 saying what is wrong.
    for (ctype, body, want) in [
        ("application/json", "[{\"number\": ", "not valid JSON"),
        (
            "application/json",
            "{\"number\": \"+12125550160\"}",
            "array",
        ),
        (
            "text/csv",
            "number,country\n+12125550160,US,extra\n",
            "line 2",
        ),
        ("text/csv", "number,reg_HN0\n+12125550160,1\n", "reg_HN0"),
        ("text/csv", "number,country\n\"+12125550160,US\n", "line"),
    ] {
        let r = api.call(
            "POST",
            "/v1/tenants/acme/numbers",
            Some(&t.operator),
            Some(ctype),
            body.as_bytes(),
        );
        assert_eq!(r.status, 400, "{body}: {r}");
        assert!(
            r.json()["error"].as_str().unwrap().contains(want),
            "{body}: {r}"
        );
    }
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("application/xml"),
        b"<x/>",
    );
    assert_eq!(r.status, 415, "{r}");

    // Bodies over the limit (64 KiB here): 413, declared or not.
    let r = api.declared_only("/v1/tenants/acme/numbers", &t.operator, 10 * 1024 * 1024);
    assert_eq!(r.status, 413, "{r}");
    assert!(r.json()["error"].as_str().unwrap().contains("65536"));
    let r = api.chunked("/v1/tenants/acme/numbers", &t.operator, 70 * 1024);
    assert_eq!(r.status, 413, "{r}");
    assert_eq!(numbers(&lab, "acme", &t.operator), before);

    // A good upload applies every row at once; the unchanged row counts as
    // such, and absent columns keep their values.
    let csv = format!("number,country,tenant_may_delete_address\n+12125550150,US,yes\n{A},US,no\n");
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.json(),
        json!({"created": 1, "updated": 1, "unchanged": 0, "locations": 0})
    );
    let a = number(&lab, "acme", A);
    assert_eq!(a["address"]["A3"], "New York");
    assert_eq!(
        a["capabilities"],
        json!({"set_address": true, "change_address": true, "delete_address": false})
    );
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.json()["unchanged"], 2, "{r}");
}

/// Waits until the router routes on the database's latest inventory.
fn wait_snapshot(api: Api, token: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = api.get("/v1/inventory", token).json();
        if s["snapshot_version"] == s["database_version"] {
            return;
        }
        assert!(Instant::now() < end, "the snapshot never caught up: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn next_call_follows_the_api(db: Db, second_instance: bool) {
    let t = tokens();
    let psap = Trunk::new();
    let scr = Trunk::new();
    let trunks = Trunks::new().with_psap(psap.port).with_screening(scr.port);
    let router = Router::start(&emergency_config(&trunks, &db, &t), &[]);
    let api = Api::of(&router);
    let cap = "+14155550177";
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": cap, "country": "US", "common_area_phone": true, "tenant_may_edit_address": true,
                 "reg_A1": "NY", "reg_A3": "New York", "reg_RD": "W 34th", "reg_STS": "St", "reg_HNO": "20"}]),
    );
    assert_eq!(r.status, 200, "{r}");
    // A second router on the same database routes the calls here, when asked.
    let other = second_instance.then(|| Router::start(&emergency_config(&trunks, &db, &t), &[]));
    let (calls_to, other_api) = match &other {
        Some(o) => (o.port, Some(Api::of(o))),
        None => (router.port, None),
    };
    let caller = Caller::new();
    caller.invite(calls_to, cap, "before-change");
    let via = other.as_ref().unwrap_or(&router);
    let fwd = psap.invite("before-change", Duration::from_secs(10), via);
    assert_eq!(
        sip_header(&fwd, "Route").as_deref(),
        Some("<sip:sos@us-36061.psap.example;lr>")
    );
    // The tenant admin moves the phone to San Francisco.
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{cap}/address"),
        &t.acme,
        &sf(),
    );
    assert_eq!(r.status, 200, "{r}");
    if let Some(o) = &other_api {
        // PostgreSQL tells the other instance at once; it polls too.
        let t0 = Instant::now();
        wait_snapshot(Api { port: o.port }, &t.operator);
        let took = t0.elapsed();
        eprintln!("the other instance had the change after {took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    caller.invite(calls_to, cap, "after-change");
    let fwd = psap.invite("after-change", Duration::from_secs(10), via);
    assert_eq!(
        sip_header(&fwd, "Route").as_deref(),
        Some("<sip:sos@us-06075.psap.example;lr>")
    );
    assert!(
        fwd.contains("San Francisco"),
        "the registered address travels: {fwd}"
    );
    let Some(other) = other else { return };
    // The other instance stops; the phone moves back to New York while it
    // is down; started again, it reads its checkpoint, applies the change
    // it missed from the log, and routes by it.
    drop(other);
    let r = api.send_json(
        "PUT",
        &format!("/v1/tenants/acme/numbers/{cap}/address"),
        &t.acme,
        &ny(),
    );
    assert_eq!(r.status, 200, "{r}");
    let other = Router::start(&emergency_config(&trunks, &db, &t), &[]);
    assert!(
        other
            .log()
            .contains("inventory snapshot read from its checkpoint"),
        "{}",
        other.log()
    );
    wait_snapshot(Api::of(&other), &t.operator);
    caller.invite(other.port, cap, "after-restart");
    let fwd = psap.invite("after-restart", Duration::from_secs(10), &other);
    assert_eq!(
        sip_header(&fwd, "Route").as_deref(),
        Some("<sip:sos@us-36061.psap.example;lr>")
    );
}

#[test]
fn sqlite_roles_and_tenants() {
    roles_and_tenants(Db::sqlite());
}

#[test]
fn postgres_roles_and_tenants() {
    if let Some(db) = Db::postgres("postgres_roles_and_tenants") {
        roles_and_tenants(db);
    }
}

/// Addresses are bounded (256 bytes per element, 1024 for the whole): the
/// API refuses a larger one with a 422 naming the field and the limit, in
/// a single PUT, a location and an upload (all or nothing); one exactly at
/// the limits is taken.
fn oversized_addresses_are_refused(db: Db) {
    let lab = start(&db);
    let (api, t) = (lab.api, &lab.t);
    seed(&lab);
    let put = |v: &Value| {
        api.send_json(
            "PUT",
            &format!("/v1/tenants/acme/numbers/{A}/address"),
            &t.acme,
            v,
        )
    };
    let at = "x".repeat(256);
    let over = "x".repeat(257);
    let mut too_long = ny();
    too_long["RD"] = json!(over);
    let r = put(&too_long);
    assert_eq!(r.status, 422, "{r}");
    let want = "RD is 257 bytes, over the limit of 256 bytes for one address element";
    assert_eq!(r.json()["error"], want, "{r}");
    assert_eq!(r.json()["errors"], json!([want]), "{r}");
    // A huge one (the body limit here is 64 KiB), and the language tag.
    let mut huge = ny();
    huge["RD"] = json!("x".repeat(60_000));
    huge["lang"] = json!(over);
    let r = put(&huge);
    assert_eq!(r.status, 422, "{r}");
    let errors = r.json()["errors"].clone();
    assert_eq!(errors.as_array().unwrap().len(), 2, "{r}");
    assert!(
        errors[0].as_str().unwrap().starts_with("RD is 60000 bytes"),
        "{r}"
    );
    assert!(
        errors[1].as_str().unwrap().starts_with("lang is 257 bytes"),
        "{r}"
    );
    // Every element within its limit, the whole over 1024 bytes.
    let mut whole = ny();
    for k in ["A3", "RD", "NAM"] {
        whole[k] = json!(at);
    }
    // country 2, A1 2, STS 2, HNO 2, PC 5, three elements 768: 781 so far.
    whole["LOC"] = json!("x".repeat(1024 - 781 + 1));
    let r = put(&whole);
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(
        r.json()["error"],
        "the address is 1025 bytes in all, over the limit of 1024 bytes for a whole address"
    );
    assert_eq!(number(&lab, "acme", A)["address"]["A3"], "New York");
    // At both limits.
    whole["LOC"] = json!("x".repeat(1024 - 781));
    let r = put(&whole);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(number(&lab, "acme", A)["address"]["RD"], json!(at));

    // A tenant location.
    let loc = json!({"id": "tower", "address": too_long});
    let r = api.send_json("POST", "/v1/tenants/acme/locations", &t.acme, &loc);
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.json()["error"], want, "{r}");

    // An upload: the bad row is named, the good one not applied.
    let before = numbers(&lab, "acme", &t.operator);
    let up = json!([
        {"number": "+12125550160", "country": "US", "reg_A1": "NY", "reg_A3": "New York",
         "reg_RD": "Broadway", "reg_HNO": "1"},
        {"number": "+12125550161", "country": "US", "reg_A1": "NY", "reg_A3": "New York",
         "reg_RD": over, "reg_HNO": "2"},
    ]);
    let r = api.send_json("POST", "/v1/tenants/acme/numbers", &t.operator, &up);
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(
        r.json()["rows"],
        json!([{"index": 1, "number": "+12125550161", "errors": [
            "reg_RD is 257 bytes, over the limit of 256 bytes for one address element"
        ]}])
    );
    assert_eq!(numbers(&lab, "acme", &t.operator), before);
}

#[test]
fn sqlite_oversized_addresses_are_refused() {
    oversized_addresses_are_refused(Db::sqlite());
}

#[test]
fn postgres_oversized_addresses_are_refused() {
    if let Some(db) = Db::postgres("postgres_oversized_addresses_are_refused") {
        oversized_addresses_are_refused(db);
    }
}

#[test]
fn sqlite_upload_all_or_nothing() {
    upload_all_or_nothing(Db::sqlite());
}

#[test]
fn postgres_upload_all_or_nothing() {
    if let Some(db) = Db::postgres("postgres_upload_all_or_nothing") {
        upload_all_or_nothing(db);
    }
}

#[test]
fn sqlite_address_change_routes_the_next_call() {
    next_call_follows_the_api(Db::sqlite(), false);
}

#[test]
fn postgres_address_change_routes_the_next_call() {
    if let Some(db) = Db::postgres("postgres_address_change_routes_the_next_call") {
        next_call_follows_the_api(db, false);
    }
}

#[test]
fn postgres_other_instance_follows_the_change() {
    if let Some(db) = Db::postgres("postgres_other_instance_follows_the_change") {
        next_call_follows_the_api(db, true);
    }
}

#[test]
fn inventory_file_is_imported_once() {
    let db = Db::sqlite();
    let t = tokens();
    let trunks = Trunks::new();
    let cfg = emergency_config(&trunks, &db, &t);
    let corpus = common::root().join("tests/corpus/emergency-invites/inventory.tsv");
    let router = Router::start(&cfg, &["--inventory", corpus.to_str().unwrap()]);
    let api = Api::of(&router);
    let acme = numbers_of(api, &t.operator, "acme");
    assert!(acme.len() > 5, "{acme:?}");
    let r = api.delete("/v1/tenants/acme/numbers/+12125550142", &t.operator);
    assert_eq!(r.status, 204, "{r}");
    drop(router);
    // Started again with the same file: the database is the inventory now.
    let router = Router::start(&cfg, &["--inventory", corpus.to_str().unwrap()]);
    router.wait_log("the file is not imported", 1, Duration::from_secs(10));
    let api = Api::of(&router);
    assert_eq!(numbers_of(api, &t.operator, "acme").len(), acme.len() - 1);
}

/// `sosrouter_inventory_numbers` from the metrics listener, waiting up to
/// five seconds for it to read `want`.
fn inventory_gauge(port: u16, want: f64) -> f64 {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, text) = common::get(port, "/metrics");
        assert_eq!(code, 200, "{text}");
        let got = common::metric(&text, "sosrouter_inventory_numbers", &[]);
        if got == want || Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With a database, the inventory gauge is exported from the start (the
/// snapshot is loaded before the metrics recorder exists) and follows
/// every change.
#[test]
fn inventory_gauge_is_exported_with_a_database() {
    let db = Db::sqlite();
    let t = tokens();
    let trunks = Trunks::new();
    let cfg = emergency_config(&trunks, &db, &t) + "\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let corpus = common::root().join("tests/corpus/emergency-invites/inventory.tsv");
    let loaded = sosrouter::inventory::Inventory::load(&corpus)
        .unwrap()
        .len() as f64;
    assert!(loaded > 5.0);
    let router = Router::start(&cfg, &["--inventory", corpus.to_str().unwrap()]);
    let port = common::http_port(&router, "metrics");
    assert_eq!(inventory_gauge(port, loaded), loaded);
    let api = Api::of(&router);
    let r = api.delete("/v1/tenants/acme/numbers/+12125550142", &t.operator);
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(inventory_gauge(port, loaded - 1.0), loaded - 1.0);
    drop(router);
    // Started again on the same database, without the file.
    let router = Router::start(&cfg, &[]);
    let port = common::http_port(&router, "metrics");
    assert_eq!(inventory_gauge(port, loaded - 1.0), loaded - 1.0);
}

fn numbers_of(api: Api, token: &str, tenant: &str) -> Vec<Value> {
    api.get(&format!("/v1/tenants/{tenant}/numbers"), token)
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn token_new_prints_a_token_and_its_table() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "token",
            "new",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap();
    assert!(token.starts_with("sos_") && token.len() == 68, "{text}");
    let table = text.split_once("\n\n").unwrap().1;
    let v: toml::Value = toml::from_str(table).unwrap();
    let entry = &v["admin"]["token"][0];
    assert_eq!(entry["tenant"].as_str(), Some("acme"));
    assert_eq!(entry["role"].as_str(), Some("tenant-admin"));
    let digest = entry["sha256"].as_str().unwrap();
    use sha2::Digest;
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(token.as_bytes())));
    // The printed table works as configured.
    let db = Db::sqlite();
    let mut t = tokens();
    t.config.push_str(table);
    let trunks = Trunks::new();
    let router = Router::start(&emergency_config(&trunks, &db, &t), &[]);
    let api = Api::of(&router);
    assert_eq!(api.get("/v1/tenants/acme/numbers", token).status, 200);
    assert_eq!(api.get("/v1/tenants/globex/numbers", token).status, 403);
    let bad = std::process::Command::new(common::BIN)
        .args(["token", "new", "--role", "tenant-admin", "--name", "bob"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn operators_reload_the_configuration_over_the_api() {
    let db = Db::sqlite();
    let lab = start(&db);
    // Tenant admins may not; operators may.
    let r = lab
        .api
        .send_json("POST", "/v1/reload", &lab.t.acme, &json!({}));
    assert_eq!(r.status, 403, "{r}");
    let r = lab
        .api
        .send_json("POST", "/v1/reload", &lab.t.operator, &json!({}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["reloaded"], true);
    lab.router
        .wait_log("configuration reloaded", 1, Duration::from_secs(5));
}

/// The audit log, polled until `done` holds for its entries.
fn audit_until(api: Api, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.get("/v1/audit", token);
        assert_eq!(r.status, 200, "{r}");
        let entries = r.json().as_array().unwrap().clone();
        if done(&entries) || Instant::now() > end {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn entries_of<'a>(entries: &'a [Value], field: &str, action: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["field"] == field && e["action"] == action)
        .collect()
}

#[test]
fn reloads_and_exports_are_audited() {
    let db = Db::sqlite();
    let lab = start(&db);
    let (api, t) = (lab.api, &lab.t);
    // A reload over the API, one by SIGHUP, and one refused.
    let r = api.send_json("POST", "/v1/reload", &t.operator, &json!({}));
    assert_eq!(r.status, 200, "{r}");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &lab.router.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    lab.router
        .wait_log("configuration reloaded", 2, Duration::from_secs(10));
    let good = std::fs::read_to_string(lab.router.config_path()).unwrap();
    std::fs::write(lab.router.config_path(), "[sip\n").unwrap();
    let r = api.send_json("POST", "/v1/reload", &t.operator, &json!({}));
    assert_eq!(r.status, 422, "{r}");
    std::fs::write(lab.router.config_path(), good).unwrap();
    // Exports: who, which filter, how many records.
    let r = api.get(
        "/v1/records?format=csv&tenant=acme&from=2024-01-01T00:00:00Z",
        &t.operator,
    );
    assert_eq!(r.status, 200, "{r}");
    let r = api.get("/v1/records", &t.acme);
    assert_eq!(r.status, 200, "{r}");

    let entries = audit_until(api, &t.operator, |e| {
        entries_of(e, "configuration", "reload").len() == 3
            && entries_of(e, "records", "export")
                .iter()
                .all(|x| x["new"]["rows"].is_number())
            && entries_of(e, "records", "export").len() == 2
    });
    let reloads = entries_of(&entries, "configuration", "reload");
    assert_eq!(reloads.len(), 3, "{entries:#?}");
    assert_eq!(
        (reloads[0]["actor"].clone(), reloads[0]["role"].clone()),
        (json!("ops"), json!("operator"))
    );
    assert_eq!(reloads[0]["new"]["applied"], true);
    assert_eq!(reloads[0]["new"]["via"], "api");
    let by_signal = reloads
        .iter()
        .find(|e| e["new"]["via"] == "SIGHUP")
        .unwrap();
    assert_eq!(by_signal["role"], "system");
    assert_eq!(by_signal["new"]["applied"], true);
    let refused = reloads
        .iter()
        .find(|e| e["new"]["applied"] == false)
        .unwrap();
    assert_eq!(refused["actor"], "ops");
    assert!(refused["new"]["error"].as_str().is_some(), "{refused:#}");
    assert!(reloads.iter().all(|e| e["tenant"] == "*"));

    let exports = entries_of(&entries, "records", "export");
    assert_eq!(exports.len(), 2, "{entries:#?}");
    assert_eq!(exports[0]["actor"], "ops");
    assert_eq!(exports[0]["tenant"], "acme");
    assert_eq!(exports[0]["new"]["format"], "csv");
    assert_eq!(exports[0]["new"]["from"], "2024-01-01T00:00:00Z");
    assert_eq!(exports[0]["new"]["to"], Value::Null);
    assert_eq!(exports[0]["new"]["rows"], 0);
    assert_eq!(exports[0]["new"]["complete"], true);
    assert_eq!(exports[1]["actor"], "acme-admin");
    assert_eq!(exports[1]["role"], "tenant-admin");
    assert_eq!(exports[1]["tenant"], "acme");
    assert_eq!(exports[1]["new"]["format"], "json");
    // A tenant's view of the log shows who exported its records.
    let acme = api.get("/v1/audit?tenant=acme", &t.operator).json();
    assert_eq!(
        entries_of(acme.as_array().unwrap(), "records", "export").len(),
        2
    );
}

#[test]
fn refused_requests_are_audited_without_flooding_the_log() {
    let db = Db::sqlite();
    let lab = start(&db);
    let (api, t) = (lab.api, &lab.t);
    // Another tenant's numbers, the audit log, no token, a wrong token.
    assert_eq!(api.get("/v1/tenants/globex/numbers", &t.acme).status, 403);
    assert_eq!(api.get("/v1/audit", &t.acme).status, 403);
    assert_eq!(api.call("GET", "/v1/records", None, None, b"").status, 401);
    assert_eq!(api.get("/v1/records", "not-a-token").status, 401);
    // A flood of wrong tokens.
    const FLOOD: usize = 200;
    for i in 0..FLOOD {
        let r = api.get(&format!("/v1/tenants/acme/numbers?n={i}"), "guess");
        assert_eq!(r.status, 401);
    }
    let total = FLOOD + 4;
    let counted = |e: &[Value]| -> u64 {
        entries_of(e, "request", "refused")
            .iter()
            .map(|x| x["new"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let entries = audit_until(api, &t.operator, |e| counted(e) == total as u64);
    let refusals = entries_of(&entries, "request", "refused");
    assert_eq!(counted(&entries), total as u64, "{refusals:#?}");
    // A few one by one, the rest counted in one entry.
    let single: Vec<&&Value> = refusals
        .iter()
        .filter(|e| e["new"]["count"].is_null())
        .collect();
    assert!(single.len() <= 10, "{} entries one by one", single.len());
    assert!(refusals.len() <= single.len() + 2, "{refusals:#?}");
    let other = single
        .iter()
        .find(|e| e["subject"] == "GET /v1/tenants/globex/numbers")
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(other["actor"], "acme-admin");
    assert_eq!(other["role"], "tenant-admin");
    assert_eq!(other["tenant"], "globex");
    assert_eq!(other["new"]["status"], 403);
    assert!(other["new"]["error"]
        .as_str()
        .unwrap()
        .contains("own tenant"));
    let audit = single
        .iter()
        .find(|e| e["subject"] == "GET /v1/audit")
        .unwrap();
    assert_eq!(audit["new"]["status"], 403);
    let anonymous = single
        .iter()
        .find(|e| e["subject"] == "GET /v1/records" && e["actor"] == "(no token)")
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(anonymous["new"]["status"], 401);
    // Each names where it came from, so a flood is bounded per source.
    assert_eq!(anonymous["new"]["source"], "127.0.0.1", "{anonymous}");
    assert!(single
        .iter()
        .any(|e| e["actor"] == "(unknown token)" && e["subject"] == "GET /v1/records"));
    // globex's view shows the attempt on its numbers.
    let globex = api.get("/v1/audit?tenant=globex", &t.operator).json();
    assert_eq!(
        entries_of(globex.as_array().unwrap(), "request", "refused").len(),
        1
    );
    // Nothing secret is kept: the token tried is never written.
    let text = api.get("/v1/audit", &t.operator).text();
    assert!(!text.contains("guess") && !text.contains("not-a-token"));
}

/// An address of this host other than loopback, if it has one: the source
/// of its route outwards.
fn own_outside_address() -> Option<std::net::IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A tenant admin cannot point the security desk webhook at the router's
/// own host, link-local (metadata) or multicast addresses, however the
/// address is spelled: 422 naming why, and the webhook stays as it was.
/// The operator can allow destinations in the configuration.
#[test]
fn a_webhook_to_the_routers_own_host_is_refused_in_every_spelling() {
    let db = Db::sqlite();
    let lab = start(&db);
    let (api, t) = (&lab.api, &lab.t);
    let desk = "/v1/tenants/acme/security-desk";
    // (URL, a word of the reason)
    let mut refused: Vec<(String, &str)> = [
        ("http://127.0.0.1:8080/v1/reload", "loopback"),
        ("http://127.9.9.9/", "loopback"),
        ("http://localhost:8080/v1/reload", "loopback"),
        ("http://LocalHost.:8080/v1/reload", "loopback"),
        ("http://user:pw@127.0.0.1:8080/", "loopback"),
        ("http://2130706433:8080/v1/reload", "loopback"),
        ("http://0x7f000001:8080/", "loopback"),
        ("http://0x7f.0.0.1/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://[::1]:9090/metrics", "loopback"),
        ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]:8080/", "loopback"),
        ("http://[::127.0.0.1]:8080/", "loopback"),
        ("http://[64:ff9b::127.0.0.1]/", "loopback"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]:8080/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
    ]
    .into_iter()
    .map(|(u, w)| (u.to_string(), w))
    .collect();
    if let Some(ip) = own_outside_address() {
        let host = match ip {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        refused.push((format!("http://{host}:8080/v1/reload"), "own addresses"));
    }
    for (url, why) in &refused {
        for token in [&t.acme, &t.operator] {
            let r = api.send_json("PUT", desk, token, &json!({ "url": url }));
            assert_eq!(r.status, 422, "{url}: {r}");
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                e.starts_with("url: refused: ") && e.contains(why),
                "{url}: {e}"
            );
            assert!(e.contains("emergency.webhook_destinations"), "{e}");
        }
    }
    assert_eq!(api.get(desk, &t.acme).status, 404, "nothing was stored");
    // Outside addresses, private networks and names that do not resolve
    // (yet) are taken; each send checks again.
    for url in [
        "https://desk.acme.example/hooks/911",
        "http://10.1.2.3:8080/hook",
        "http://192.0.2.10/hook",
        "http://[2001:db8::10]/hook",
    ] {
        let r = api.send_json("PUT", desk, &t.acme, &json!({ "url": url }));
        assert_eq!(r.status, 200, "{url}: {r}");
    }
    drop(lab);

    // The operator allows a loopback address and a name.
    let db = Db::sqlite();
    let t = tokens();
    let trunks = Trunks::new();
    let config = emergency_config(&trunks, &db, &t)
        + "\n[emergency]\nwebhook_destinations = [\"127.0.0.1\", \"localhost\"]\n";
    let router = Router::start(&config, &[]);
    let api = Api::of(&router);
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://[::ffff:127.0.0.1]:9000/hook",
        "http://localhost:9000/hook",
    ] {
        let r = api.send_json("PUT", desk, &t.acme, &json!({ "url": url }));
        assert_eq!(r.status, 200, "{url}: {r}");
    }
    for url in [
        "http://127.0.0.2/",
        "http://[::1]/",
        "http://169.254.169.254/",
    ] {
        let r = api.send_json("PUT", desk, &t.acme, &json!({ "url": url }));
        assert_eq!(r.status, 422, "{url}: {r}");
    }
}

/// A bulk upload bigger than the API's body limit, streamed, applied whole;
/// one with bad rows applied not at all; progress and outcome at
/// `/v1/uploads/{id}`; operators only.
fn bulk_uploads(db: Db) {
    let lab = start(&db);
    let (api, t) = (&lab.api, &lab.t);
    // 6,000 rows of two tenants (each row names its own), over the
    // 64 KiB body limit of the tests' configuration.
    let mut tsv = String::from(
        "number\ttenant\tcountry\ttenant_may_edit_address\treg_A1\treg_A3\treg_RD\treg_HNO\n",
    );
    for i in 0..6_000u32 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        tsv.push_str(&format!(
            "+12122{i:06}\t{tenant}\tUS\tyes\tNY\tNew York\tBroadway\t{}\n",
            i % 900 + 1
        ));
    }
    assert!(tsv.len() > 4 << 16, "{} bytes", tsv.len());
    let r = api.call(
        "POST",
        "/v1/uploads?wait=true",
        Some(&t.operator),
        Some("text/tab-separated-values"),
        tsv.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    let s = r.json();
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(s["summary"]["created"], 6_000, "{s}");
    assert_eq!(s["rows_checked"], 6_000);
    assert_eq!(s["bytes"], tsv.len());
    assert_eq!(number(&lab, "globex", "+12122000001")["tenant"], "globex");
    let n = number(&lab, "acme", "+12122005998");
    assert_eq!(n["address"]["RD"], "Broadway", "{n}");

    // Two rows for acme, the second a number of globex: refused when
    // applied, and the first is not applied either.
    let mut one = String::from("number\tcountry\treg_A1\treg_A3\treg_RD\treg_HNO\n");
    one.push_str("+12122000000\tUS\tNY\tNew York\tFifth Ave\t1\n");
    one.push_str("+12122000001\tUS\tNY\tNew York\tFifth Ave\t2\n");

    let r = api.call(
        "POST",
        "/v1/uploads?tenant=acme",
        Some(&t.operator),
        Some("text/tab-separated-values"),
        one.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("Location").as_deref(),
        Some(format!("/v1/uploads/{id}").as_str())
    );
    let end = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = api.get(&format!("/v1/uploads/{id}"), &t.operator).json();
        if s["state"] == "done" || s["state"] == "failed" {
            break s;
        }
        assert!(Instant::now() < end, "never finished: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["row_errors"], 1, "{s}");
    let lines: Vec<u64> = s["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3], "{s}");
    assert!(
        s["rows"][0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("another tenant"),
        "{s}"
    );
    assert_eq!(
        number(&lab, "acme", "+12122000000")["address"]["RD"],
        "Broadway"
    );

    // Tenant admins cannot; unknown uploads are 404; a body that is no
    // upload says why.
    let r = api.call(
        "POST",
        "/v1/uploads?tenant=acme",
        Some(&t.acme),
        Some("text/csv"),
        b"number,country\n+12125550100,US\n",
    );
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(
        api.get("/v1/uploads/0123456789abcdef", &t.operator).status,
        404
    );
    let r = api.call(
        "POST",
        "/v1/uploads?wait=true",
        Some(&t.operator),
        Some("text/csv"),
        b"colour\nred\n",
    );
    assert_eq!(r.status, 400, "{r}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown column"),
        "{r}"
    );
    // The audit log names the upload.
    let audit = api.get("/v1/audit?tenant=*", &t.operator);
    assert_eq!(audit.status, 200, "{audit}");
    assert!(audit.text().contains("\"created\":6000"), "{audit}");
}

#[test]
fn sqlite_bulk_uploads() {
    bulk_uploads(Db::sqlite());
}

#[test]
fn postgres_bulk_uploads() {
    if let Some(db) = Db::postgres("postgres_bulk_uploads") {
        bulk_uploads(db);
    }
}

/// `sosrouter inventory import` and `export` against the database of a
/// running router: the router follows the import; an export imported into
/// another database exports the same; a file with a bad row changes
/// nothing and says which row.
fn inventory_command(db: Db) {
    let lab = start(&db);
    let dir = common::tempdir::Dir::new("files");
    let file = dir.path().join("inventory.tsv");
    std::fs::write(
        &file,
        "number\ttenant\tcountry\ttenant_may_edit_address\tlocation_id\treg_country\treg_A1\treg_A3\treg_RD\treg_HNO\n\
         \tacme\t\t\thq\tUS\tNY\tNew York\tW 34th\t20\n\
         +12125550101\tacme\tUS\tyes\thq\t\t\t\t\t\n\
         +12125550102\tacme\tUS\tno\t\tUS\tNY\tNew York\tBroadway\t1\n\
         +13125550103\tglobex\tUS\tyes\t\tUS\tIL\tChicago\tState St\t2\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .env_remove("SOSROUTER_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.stdout,
        )
    };
    let config = lab.router.config_path();
    let config = config.to_str().unwrap();
    let (code, err, _) = run(&[
        "inventory",
        "import",
        file.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("3 created, 0 updated, 0 unchanged, 1 locations"),
        "{err}"
    );
    // The running router follows.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let r = lab
            .api
            .get("/v1/tenants/acme/numbers/+12125550101", &lab.t.operator);
        if r.status == 200 {
            assert_eq!(r.json()["address"]["RD"], "W 34th", "{r}");
            break;
        }
        assert!(Instant::now() < end, "the router never saw the import: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, err, first) = run(&["inventory", "export", "--config", config]);
    assert_eq!(code, Some(0), "{err}");
    let first = String::from_utf8(first).unwrap();
    assert_eq!(first.lines().count(), 5, "{first}");
    assert!(
        first.lines().nth(1).unwrap().starts_with("\tacme\t"),
        "locations first: {first}"
    );
    // Into another database and out again: the same file.
    let other = Db::sqlite();
    let other_config = dir.path().join("other.toml");
    std::fs::write(
        &other_config,
        emergency_config(&Trunks::new(), &other, &lab.t),
    )
    .unwrap();
    let exported = dir.path().join("exported.tsv");
    std::fs::write(&exported, &first).unwrap();
    let other_config = other_config.to_str().unwrap();
    let (code, err, _) = run(&[
        "inventory",
        "import",
        exported.to_str().unwrap(),
        "--config",
        other_config,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err, again) = run(&["inventory", "export", "--config", other_config]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8(again).unwrap(), first);

    // A bad row: nothing changes, and the row is named.
    std::fs::write(
        &file,
        "number\ttenant\tcountry\treg_A1\treg_A3\treg_RD\treg_HNO\n\
         +12125550101\tacme\tUS\tNY\tNew York\tElm St\t5\n\
         +12125550199\tacme\tUSA\tNY\tNew York\tElm St\t6\n",
    )
    .unwrap();
    let (code, err, _) = run(&[
        "inventory",
        "import",
        file.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 3"), "{err}");
    let (_, _, after) = run(&["inventory", "export", "--config", config]);
    assert_eq!(String::from_utf8(after).unwrap(), first);
}

#[test]
fn sqlite_inventory_command() {
    inventory_command(Db::sqlite());
}

#[test]
fn postgres_inventory_command() {
    if let Some(db) = Db::postgres("postgres_inventory_command") {
        inventory_command(db);
    }
}

/// While the inventory loads (here held up by a lock on the numbers
/// table), calls are routed: one without a location by the country
/// defaults, and `/readyz` says so; once it is loaded, by the caller's
/// registered address.
#[test]
fn postgres_calls_are_routed_while_the_inventory_loads() {
    let Some(db) = Db::postgres("postgres_calls_are_routed_while_the_inventory_loads") else {
        return;
    };
    let t = tokens();
    let psap = Trunk::new();
    let scr = Trunk::new();
    let trunks = Trunks::new().with_psap(psap.port).with_screening(scr.port);
    let cfg = emergency_config(&trunks, &db, &t);
    let cap = "+14155550177";
    {
        let router = Router::start(&cfg, &[]);
        let r = Api::of(&router).send_json(
            "POST",
            "/v1/tenants/acme/numbers",
            &t.operator,
            &json!([{"number": cap, "country": "US", "common_area_phone": true,
                     "reg_A1": "NY", "reg_A3": "New York", "reg_RD": "W 34th", "reg_STS": "St", "reg_HNO": "20"}]),
        );
        assert_eq!(r.status, 200, "{r}");
    }
    // No checkpoint: the restart reads the database, and waits for the lock.
    let _ = std::fs::remove_file(db.data_dir().join("inventory.checkpoint"));
    let lock = adminhttp::NumbersLocked::hold(&db.url());
    let router = Router::start_loading(&cfg);
    let api = Api::of(&router);
    let caller = Caller::new();
    caller.invite(router.port, cap, "while-loading");
    let fwd = scr.invite("while-loading", Duration::from_secs(10), &router);
    assert!(fwd.starts_with("INVITE "), "{fwd}");
    let (code, body) = common::get(api.port, "/readyz");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["inventory"]["state"], "loading", "{code} {body}");
    if code == 200 {
        assert!(
            v["reason"].as_str().unwrap().contains("country defaults"),
            "{body}"
        );
    }
    assert_eq!(common::get(api.port, "/readyz?inventory=loaded").0, 503);
    assert!(!router.log().contains("inventory ready"));

    drop(lock);
    router.wait_log("inventory ready", 1, Duration::from_secs(20));
    let (_, body) = common::get(api.port, "/readyz");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["inventory"]["state"], "loaded", "{body}");
    assert_eq!(v["inventory"]["numbers"], 1, "{body}");
    caller.invite(router.port, cap, "loaded");
    let fwd = psap.invite("loaded", Duration::from_secs(10), &router);
    assert_eq!(
        sip_header(&fwd, "Route").as_deref(),
        Some("<sip:sos@us-36061.psap.example;lr>")
    );
}

/// Registered addresses checked against the gazetteer through the API: a
/// warn country keeps an invalid address and shows why, a refuse country
/// refuses it (422 naming the elements, an upload row naming the columns)
/// and changes nothing; tenants see the state and list the invalid ones.
fn address_checks(db: Db) {
    let t = tokens();
    let trunks = Trunks::new();
    let config = emergency_config(&trunks, &db, &t)
        + "\n[admin.address_validation]\ndefault = \"warn\"\ncountries = { CA = \"refuse\" }\n";
    let router = Router::start(&config, &[]);
    let lab = Lab {
        api: Api::of(&router),
        router,
        t,
        _trunks: trunks,
    };
    let (api, t) = (&lab.api, &lab.t);
    seed(&lab);
    assert_eq!(
        number(&lab, "acme", A)["address_check"],
        json!({"state": "valid", "source": "gazetteer"})
    );
    assert_eq!(number(&lab, "acme", C)["address_check"], Value::Null);

    // US warns: a ZIP of New York on a Denver address is kept, marked.
    let csv = "number,country,reg_A1,reg_A3,reg_RD,reg_HNO,reg_PC\n\
        (303) 555-0199,US,CO,Denver,E Colfax,1,10001\n\
        +498912345678,DE,,München,Marienplatz,1,80331\n";
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], 2);
    // Stored in E.164, the national form read with the row's country.
    let n = number(&lab, "acme", "+13035550199");
    assert_eq!(
        n["address_check"],
        json!({"state": "invalid", "elements": ["PC", "A1"], "reason": "10001 is in NY, not in CO", "source": "gazetteer"})
    );
    assert_eq!(n["address"]["PC"], "10001", "kept as given");
    assert_eq!(
        number(&lab, "acme", "+498912345678")["address_check"],
        json!({"state": "unchecked", "reason": "no address data for DE"})
    );

    // The tenant admin sees the states and lists the invalid ones.
    let listed = |filter: &str, token: &str| -> Vec<String> {
        let r = api.get(&format!("/v1/tenants/acme/numbers?address={filter}"), token);
        assert_eq!(r.status, 200, "{r}");
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["number"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("invalid", &t.acme), ["+13035550199"]);
    assert_eq!(listed("unchecked", &t.acme), ["+498912345678"]);
    assert_eq!(listed("valid", &t.acme), [A, B]);
    let r = api.get("/v1/tenants/acme/numbers?address=bad", &t.acme);
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(listed("invalid", &t.operator), listed("invalid", &t.acme));

    // Fixing the address clears the state.
    let fixed = json!({"A1": "CO", "A3": "Denver", "RD": "E Colfax", "HNO": "1", "PC": "80203"});
    let r = api.send_json(
        "PUT",
        "/v1/tenants/acme/numbers/%2B13035550199/address",
        &t.operator,
        &fixed,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["address_check"]["state"], "valid");
    assert!(listed("invalid", &t.acme).is_empty());

    // CA refuses: the upload names the row and the columns, and nothing
    // of it is applied.
    let before = numbers(&lab, "acme", &t.operator);
    let csv = "number,country,reg_A1,reg_A3,reg_RD,reg_HNO,reg_PC\n\
        +14165550199,CA,ON,Toronto,King St W,1,M5V 3L9\n\
        +16045550199,CA,BC,Vancouver,Granville St,1,M5V 3L9\n";
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 422, "{r}");
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["line"], 3);
    assert_eq!(
        rows[0]["errors"][0],
        "invalid address (reg_PC, reg_A1): M5V 3L9 is in ON, not in BC; addresses in CA are refused when invalid"
    );
    assert_eq!(numbers(&lab, "acme", &t.operator), before);

    // The valid row alone goes in; an address change to an invalid one is
    // refused with 422 naming the elements, and the address stays.
    let r = api.call(
        "POST",
        "/v1/tenants/acme/numbers",
        Some(&t.operator),
        Some("text/csv"),
        csv.lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    let r = api.send_json(
        "PUT",
        "/v1/tenants/acme/numbers/%2B14165550199/address",
        &t.operator,
        &json!({"A1": "QC", "A3": "Toronto", "RD": "King St W", "HNO": "1", "PC": "M5V 3L9"}),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.json()["elements"], json!(["PC", "A1"]));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("M5V 3L9 is in ON, not in QC"));
    let n = number(&lab, "acme", "+14165550199");
    assert_eq!(n["address"]["A1"], "ON");
    assert_eq!(n["address_check"]["state"], "valid");

    // A location: its check is shown with it, and with the numbers that
    // take its address.
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/locations",
        &t.acme,
        &json!({"id": "annex", "address": {"country": "US", "A1": "NY", "A3": "Gotham", "RD": "Main", "HNO": "1"}}),
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.json()["address_check"]["elements"], json!(["A3"]));
    let r = api.get("/v1/tenants/acme/locations/annex", &t.acme);
    assert_eq!(r.json()["address_check"]["state"], "invalid", "{r}");
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([{"number": "+12125550177", "country": "US", "location_id": "annex"}]),
    );
    assert_eq!(r.status, 200, "{r}");
    let n = number(&lab, "acme", "+12125550177");
    assert_eq!(n["address_source"], "location");
    assert_eq!(n["address_check"]["state"], "invalid");
    assert_eq!(listed("invalid", &t.acme), ["+12125550177"]);

    // A bulk upload: the same row errors. Rows are read and checked one by
    // one first (the number), then merged into the stored numbers (the
    // address, with the number's country), so a file with both kinds of
    // fault names the first kind.
    let bulk = |tsv: &str| {
        let r = api.call(
            "POST",
            "/v1/uploads?tenant=acme&wait=true",
            Some(&t.operator),
            Some("text/tab-separated-values"),
            tsv.as_bytes(),
        );
        let s = r.json();
        assert_eq!(s["state"], "failed", "{r}");
        assert_eq!(s["row_errors"], 1, "{s}");
        let row = s["rows"][0].clone();
        (
            row["line"].as_u64().unwrap(),
            row["errors"][0].as_str().unwrap().to_string(),
        )
    };
    let head = "number\tcountry\treg_A1\treg_A3\treg_RD\treg_HNO\treg_PC\n\
        +16045550100\tCA\tBC\tVancouver\tGranville St\t1\tV6B 1A1\n";
    let (line, e) = bulk(&format!(
        "{head}+1303555\tUS\tCO\tDenver\tE Colfax\t1\t80203\n"
    ));
    assert_eq!(line, 3);
    assert!(
        e.starts_with("number \"+1303555\": too short for US"),
        "{e}"
    );
    let (line, e) = bulk(&format!(
        "{head}+16045550101\tCA\tBC\tVancouver\tGranville St\t1\tM5V 3L9\n"
    ));
    assert_eq!(line, 3);
    assert!(e.contains("(reg_PC, reg_A1)"), "{e}");
    let r = api.get("/v1/tenants/acme/numbers/%2B16045550100", &t.operator);
    assert_eq!(r.status, 404, "{r}");
}

#[test]
fn sqlite_address_checks() {
    address_checks(Db::sqlite());
}

#[test]
fn postgres_address_checks() {
    if let Some(db) = Db::postgres("postgres_address_checks") {
        address_checks(db);
    }
}
