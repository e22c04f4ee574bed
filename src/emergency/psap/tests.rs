//! Lookup rules on a small made-up data set: squares of one degree near
//! (0, 0), so every expected answer can be worked out by hand.

use super::*;

fn square(x0: f64, y0: f64) -> String {
    format!(
        r#"{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}"#,
        x1 = x0 + 1.0,
        y1 = y0 + 1.0
    )
}

fn areas() -> String {
    let feature = |props: &str, geometry: &str| {
        format!(r#"{{"type":"Feature","properties":{props},"geometry":{geometry}}}"#)
    };
    let features = [
        feature(
            r#"{"id":"CA-ON","country":"CA","a1":"ON","a1_name":"Ontario"}"#,
            &square(10.0, 10.0),
        ),
        feature(
            r#"{"id":"US-01001","country":"US","a1":"AL","a1_name":"Alabama","a2":"Alpha County","a2_short":"Alpha","lsad":"06","fips":"01001","psap_id":"SYN-US-01001"}"#,
            &square(0.0, 0.0),
        ),
        feature(
            r#"{"id":"US-01003","country":"US","a1":"AL","a1_name":"Alabama","a2":"Beta Parish","a2_short":"Beta","lsad":"15","fips":"01003"}"#,
            "null",
        ),
        feature(
            r#"{"id":"US-01510","country":"US","a1":"AL","a1_name":"Alabama","a2":"Alpha city","a2_short":"Alpha","lsad":"25","fips":"01510"}"#,
            &square(1.0, 0.0),
        ),
        feature(
            r#"{"id":"US-02001","country":"US","a1":"AK","a1_name":"Alaska","a2":"Gamma Borough","a2_short":"Gamma","lsad":"04","fips":"02001"}"#,
            &square(0.0, 5.0),
        ),
    ];
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        features.join(",")
    )
}

fn countries() -> String {
    let feature = |id: &str, geometry: &str| {
        format!(
            r#"{{"type":"Feature","properties":{{"id":"{id}","name":"{id} land"}},"geometry":{geometry}}}"#
        )
    };
    // The US outline covers the three US squares exactly; Mexico lies east.
    let us = r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[2,0],[2,1],[0,1],[0,0]]],[[[0,5],[1,5],[1,6],[0,6],[0,5]]]]}"#;
    let features = [
        feature("CA", &square(10.0, 10.0)),
        feature("DE", &square(20.0, 20.0)),
        feature(
            "MX",
            r#"{"type":"Polygon","coordinates":[[[2,0],[4,0],[4,1],[2,1],[2,0]]]}"#,
        ),
        feature("US", us),
    ];
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        features.join(",")
    )
}

const GAZETTEER: &str = r#"{"zips":{"01001":["35004","35005"],"01003":["35007"],"01510":["35006"]},
"cities":{"AL":{"Alphaville":["01510","01001"],"Saint Beta":["01003"]}}}"#;

fn psap(id: &str, area: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"{id} (synthetic PSAP)","uri":"sip:sos@{lower}.psap.example","agency_id":"{lower}.psap.example","area":"{area}","synthetic":true}}"#,
        lower = id.to_lowercase()
    )
}

fn psaps(records: &[(&str, &str)]) -> String {
    let list: Vec<String> = records.iter().map(|(id, area)| psap(id, area)).collect();
    format!(r#"{{"synthetic":true,"psaps":[{}]}}"#, list.join(","))
}

fn synthetic() -> String {
    psaps(&[
        ("SYN-CA", "CA"),
        ("SYN-CA-ON", "CA-ON"),
        ("SYN-DE", "DE"),
        ("SYN-MX", "MX"),
        ("SYN-US", "US"),
        ("SYN-US-01001", "US-01001"),
        ("SYN-US-01003", "US-01003"),
        ("SYN-US-01510", "US-01510"),
        ("SYN-US-02001", "US-02001"),
        ("SYN-US-AL", "US-AL"),
    ])
}

fn fixture() -> ServiceAreas {
    ServiceAreas::from_bytes(
        areas().as_bytes(),
        countries().as_bytes(),
        GAZETTEER.as_bytes(),
        synthetic().as_bytes(),
    )
    .expect("fixture loads")
}

fn civic<'a>(
    country: &'a str,
    a1: &'a str,
    a2: &'a str,
    a3: &'a str,
    pc: &'a str,
) -> CivicAddress<'a> {
    CivicAddress {
        country,
        a1,
        a2,
        a3,
        pc,
    }
}

fn found(m: Option<Match<'_>>) -> (MatchKind, String) {
    let m = m.expect("a match");
    (m.how, m.area.to_string())
}

#[test]
fn point_inside_an_area() {
    let s = fixture();
    let m = s.lookup_point(0.5, 0.5).unwrap();
    assert_eq!(
        (m.how, m.area, m.psap.id.as_str()),
        (MatchKind::Contains, "US-01001", "SYN-US-01001")
    );
    assert_eq!(
        found(s.lookup_point(0.5, 1.5)),
        (MatchKind::Contains, "US-01510".into())
    );
    // on the shared edge: the first area by id
    assert_eq!(
        found(s.lookup_point(0.5, 1.0)),
        (MatchKind::Contains, "US-01001".into())
    );
}

#[test]
fn point_near_an_area_takes_the_nearest_within_the_distance() {
    let s = fixture();
    let (how, area) = found(s.lookup_point(-0.02, 0.5));
    assert_eq!(area, "US-01001");
    match how {
        MatchKind::Nearest { km } => assert!((km - 2.22).abs() < 0.02, "{km}"),
        other => panic!("{other:?}"),
    }
    // 0.1° (11 km) off is too far, and outside every outline
    assert!(s.lookup_point(-0.1, 0.5).is_none());
    // a shorter distance turns the same point away
    let s = s.with_nearest_km(1.0);
    assert!(s.lookup_point(-0.02, 0.5).is_none());
    let s = s.with_nearest_km(f64::NAN);
    assert_eq!(s.nearest_km(), 0.0);
    assert!(s.lookup_point(-0.001, 0.5).is_none());
}

#[test]
fn point_across_a_border_is_not_pulled_into_the_neighbour() {
    let s = fixture();
    // 0.02° east of US-01510, inside Mexico's outline
    assert_eq!(
        found(s.lookup_point(0.5, 2.02)),
        (MatchKind::CountryDefault, "MX".into())
    );
    assert_eq!(s.country_of_point(0.5, 2.02), Some("MX"));
}

#[test]
fn country_of_point_prefers_areas_then_outlines_then_nearest() {
    let s = fixture();
    assert_eq!(s.country_of_point(0.5, 0.5), Some("US"));
    assert_eq!(s.country_of_point(20.5, 20.5), Some("DE"));
    assert_eq!(s.country_of_point(20.5, 19.99), Some("DE"));
    assert_eq!(s.country_of_point(20.5, 19.0), None);
    assert_eq!(
        found(s.lookup_point(20.5, 20.5)),
        (MatchKind::CountryDefault, "DE".into())
    );
}

#[test]
fn bad_coordinates_find_nothing() {
    let s = fixture();
    for (lat, lon) in [
        (f64::NAN, 0.5),
        (0.5, f64::NAN),
        (f64::INFINITY, 0.5),
        (0.5, f64::NEG_INFINITY),
        (90.5, 0.5),
        (-91.0, 0.5),
        (0.5, 180.1),
        (0.5, -540.0),
    ] {
        assert!(s.lookup_point(lat, lon).is_none(), "{lat} {lon}");
        assert!(s.country_of_point(lat, lon).is_none(), "{lat} {lon}");
    }
    // the extremes themselves are valid and simply find nothing here
    assert!(s.lookup_point(90.0, 180.0).is_none());
    assert!(s.lookup_point(-90.0, -180.0).is_none());
}

#[test]
fn civic_county_with_and_without_its_type() {
    let s = fixture();
    let county = |a1, a2| found(s.lookup_civic(&civic("US", a1, a2, "", "")));
    assert_eq!(
        county("AL", "Alpha"),
        (MatchKind::County, "US-01001".into())
    );
    assert_eq!(
        county("al", "ALPHA COUNTY"),
        (MatchKind::County, "US-01001".into())
    );
    assert_eq!(
        county("Alabama", "Alpha city"),
        (MatchKind::County, "US-01510".into())
    );
    assert_eq!(
        county("AL", "City of Alpha"),
        (MatchKind::County, "US-01510".into())
    );
    // an area with no geometry is still found by name; a wrong type is forgiven
    assert_eq!(county("AL", "Beta"), (MatchKind::County, "US-01003".into()));
    assert_eq!(
        county("AL", "Beta County"),
        (MatchKind::County, "US-01003".into())
    );
    // the county must be in the state given; Alaska has no default PSAP in
    // the fixture, so the country's answers
    assert_eq!(
        county("AK", "Alpha"),
        (MatchKind::CountryDefault, "US".into())
    );
}

#[test]
fn civic_zip_then_city_then_state_then_country() {
    let s = fixture();
    let look = |a1, a3, pc| found(s.lookup_civic(&civic("US", a1, "", a3, pc)));
    assert_eq!(
        look("AL", "", "35006-1234"),
        (MatchKind::Zip, "US-01510".into())
    );
    assert_eq!(look("", "", " 35007 "), (MatchKind::Zip, "US-01003".into()));
    // a ZIP that contradicts the state is not used
    assert_eq!(
        look("AK", "", "35006"),
        (MatchKind::CountryDefault, "US".into())
    );
    // unknown ZIP: the city decides; an ambiguous city takes its first county
    assert_eq!(
        look("AL", "Alphaville", "99999"),
        (MatchKind::City, "US-01510".into())
    );
    assert_eq!(
        look("AL", "st. beta", ""),
        (MatchKind::City, "US-01003".into())
    );
    assert_eq!(
        look("AL", "Nowhere", ""),
        (MatchKind::StateDefault, "US-AL".into())
    );
    assert_eq!(
        look("ZZ", "Alphaville", ""),
        (MatchKind::CountryDefault, "US".into())
    );
    assert_eq!(
        look("", "", "3500"),
        (MatchKind::CountryDefault, "US".into())
    );
    assert_eq!(
        look("", "", "350061"),
        (MatchKind::CountryDefault, "US".into())
    );
}

#[test]
fn civic_canada_by_province_or_postal_code() {
    let s = fixture();
    let look = |a1, pc| found(s.lookup_civic(&civic("CA", a1, "", "Toronto", pc)));
    assert_eq!(look("ON", ""), (MatchKind::Province, "CA-ON".into()));
    assert_eq!(look("ontario", ""), (MatchKind::Province, "CA-ON".into()));
    assert_eq!(look("", "m5v 3l9"), (MatchKind::Zip, "CA-ON".into()));
    // no Quebec area in the fixture, and H is Quebec, not Ontario
    assert_eq!(
        look("", "H2X 1Y4"),
        (MatchKind::CountryDefault, "CA".into())
    );
    assert_eq!(look("", ""), (MatchKind::CountryDefault, "CA".into()));
}

#[test]
fn civic_other_countries_and_empty_input() {
    let s = fixture();
    assert_eq!(
        found(s.lookup_civic(&civic("de", "BY", "", "München", "80331"))),
        (MatchKind::CountryDefault, "DE".into())
    );
    assert!(s.lookup_civic(&civic("FR", "", "", "Paris", "")).is_none());
    assert!(s.lookup_civic(&CivicAddress::default()).is_none());
    assert!(s.lookup_civic(&civic(" ", " ", " ", " ", " ")).is_none());
    assert!(s
        .lookup_civic(&civic("US\u{0}", "ÅÅ", "\u{301}", "-", "٣٥٠٠٦"))
        .is_none());
}

#[test]
fn psaps_follow_area_then_state_then_country() {
    let mut s = fixture();
    s.replace_psaps(psaps(&[("OP-AL", "US-AL"), ("OP-US", "US"), ("OP-1", "US-01510")]).as_bytes())
        .unwrap();
    let id = |lat, lon| {
        s.lookup_point(lat, lon)
            .map(|m| (m.area.to_string(), m.psap.id.clone()))
    };
    assert_eq!(id(0.5, 1.5), Some(("US-01510".into(), "OP-1".into())));
    assert_eq!(id(0.5, 0.5), Some(("US-01001".into(), "OP-AL".into())));
    assert_eq!(id(5.5, 0.5), Some(("US-02001".into(), "OP-US".into())));
    // the synthetic records are gone
    assert!(s.psap("SYN-US-01001").is_none());
    assert_eq!(s.psaps().len(), 3);
    assert!(!s.psap("OP-1").unwrap().uri.is_empty());
}

#[test]
fn a_psap_may_serve_several_areas() {
    let mut s = fixture();
    let json = r#"{"psaps":[{"id":"P","name":"Two counties","uri":"sip:p@p.example","area":"US-01001","also_serves":["US-01510"]}]}"#;
    s.replace_psaps(json.as_bytes()).unwrap();
    assert_eq!(s.lookup_point(0.5, 1.5).unwrap().psap.id, "P");
    assert_eq!(s.lookup_point(0.5, 0.5).unwrap().psap.id, "P");
    assert!(!s.psap("P").unwrap().synthetic);
    // nothing serves Alaska or the US at large now
    assert!(s.lookup_point(5.5, 0.5).is_none());
}

#[test]
fn a_psap_is_found_by_its_uri_in_any_case_and_the_index_follows_a_replacement() {
    let mut s = fixture();
    let json = r#"{"psaps":[{"id":"P","name":"n","uri":"sip:P@P.example","area":"US-01001"},{"id":"Q","name":"n","uri":"sip:q@q.example","area":"US-01510"}]}"#;
    s.replace_psaps(json.as_bytes()).unwrap();
    assert_eq!(s.psap_by_uri("sip:p@p.example").unwrap().id, "P");
    assert_eq!(s.psap_by_uri("SIP:Q@Q.EXAMPLE").unwrap().id, "Q");
    assert!(s.psap_by_uri("sip:p@p.example;lr").is_none());
    // The records of before are not found any more.
    assert!(s.psap_by_uri("sip:sos@us-01001.psap.example").is_none());
}

#[test]
fn bad_psap_files_are_refused_and_the_old_records_kept() {
    let mut s = fixture();
    let bad = [
        psaps(&[("A", "US-99999")]),
        psaps(&[("A", "US-ZZ")]),
        psaps(&[("A", "US-01001"), ("B", "US-01001")]),
        psaps(&[("A", "US-01001"), ("A", "US-01510")]),
        psaps(&[("", "US-01001")]),
        r#"{"psaps":[{"id":"A","name":"n","uri":"","area":"US"}]}"#.to_string(),
        r#"{"psaps":[{"id":"A","name":"n","uri":"sip:a@a.example","area":""}]}"#.to_string(),
        r#"{"psaps":"#.to_string(),
        "[]".to_string(),
    ];
    for json in &bad {
        assert!(s.replace_psaps(json.as_bytes()).is_err(), "{json}");
    }
    assert_eq!(s.psaps().len(), 10);
    assert_eq!(s.lookup_point(0.5, 0.5).unwrap().psap.id, "SYN-US-01001");
}

#[test]
fn bad_data_files_are_refused() {
    let ok_areas = areas();
    let ok_countries = countries();
    let ok_psaps = synthetic();
    let load = |a: &str, c: &str, g: &str| {
        ServiceAreas::from_bytes(
            a.as_bytes(),
            c.as_bytes(),
            g.as_bytes(),
            ok_psaps.as_bytes(),
        )
    };
    assert!(load(&ok_areas, &ok_countries, GAZETTEER).is_ok());
    // a point where a polygon should be
    let point = ok_areas.replacen(
        &square(0.0, 5.0),
        r#"{"type":"Point","coordinates":[0,5]}"#,
        1,
    );
    assert!(matches!(
        load(&point, &ok_countries, GAZETTEER),
        Err(DataError::Json { .. })
    ));
    // a duplicate area id
    let dup = ok_areas.replace("US-02001", "US-01001");
    assert!(matches!(
        load(&dup, &ok_countries, GAZETTEER),
        Err(DataError::Invalid { .. })
    ));
    // a gazetteer naming a county that does not exist
    let gaz = GAZETTEER.replace("01003", "01999");
    assert!(matches!(
        load(&ok_areas, &ok_countries, &gaz),
        Err(DataError::Invalid { .. })
    ));
    let gaz = GAZETTEER.replace("35007", "3500x");
    assert!(matches!(
        load(&ok_areas, &ok_countries, &gaz),
        Err(DataError::Invalid { .. })
    ));
    assert!(load("", &ok_countries, GAZETTEER).is_err());
    assert!(load(&ok_areas, "{}", GAZETTEER).is_err());
}

#[test]
fn geometry_reads_in_any_key_order_and_ignores_altitude() {
    let reordered = areas().replace(
        &square(0.0, 5.0),
        r#"{"coordinates":[[[0,5,10],[1,5,10],[1,6,10],[0,6,10],[0,5,10]]],"bbox":[0,5,1,6],"type":"Polygon"}"#,
    );
    let s = ServiceAreas::from_bytes(
        reordered.as_bytes(),
        countries().as_bytes(),
        GAZETTEER.as_bytes(),
        synthetic().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        found(s.lookup_point(5.5, 0.5)),
        (MatchKind::Contains, "US-02001".into())
    );
}

#[test]
fn zip5_takes_five_digits_only() {
    assert_eq!(zip5("94102"), Some(94102));
    assert_eq!(zip5("02116-1234"), Some(2116));
    assert_eq!(zip5("02116 1234"), Some(2116));
    assert_eq!(zip5("021161234"), None);
    assert_eq!(zip5("0211"), None);
    assert_eq!(zip5("ab123"), None);
    assert_eq!(zip5("9410é"), None);
    assert_eq!(zip5(""), None);
}

#[test]
fn canadian_postal_codes_name_their_province() {
    assert_eq!(canadian_province("M5V 3L9"), Some("ON"));
    assert_eq!(canadian_province("h2x1y4"), Some("QC"));
    assert_eq!(canadian_province("X0A 0H0"), Some("NU"));
    assert_eq!(canadian_province("X1A 2L9"), Some("NT"));
    assert_eq!(canadian_province("V6B"), Some("BC"));
    assert_eq!(canadian_province("D1A 1A1"), None);
    assert_eq!(canadian_province("M5"), None);
    assert_eq!(canadian_province("MM5"), None);
    assert_eq!(canadian_province(""), None);
}

/// A record answering one service.
fn service_psap(id: &str, area: &str, service: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"{id}","uri":"sip:{id}@p.example","area":"{area}","service_urn":"{service}"}}"#
    )
}

/// Alabama: a general PSAP per county; police for the whole state, and
/// fire for Alpha County alone; the US has a general PSAP and a marine one.
fn with_services() -> ServiceAreas {
    let mut s = fixture();
    let records = [
        service_psap("AL-1001", "US-01001", "urn:service:sos"),
        service_psap("AL-1510", "US-01510", "urn:service:sos"),
        service_psap("AL-POLICE", "US-AL", "urn:service:sos.police"),
        service_psap("AL-1001-FIRE", "US-01001", "URN:Service:SOS.Fire"),
        service_psap("US", "US", "urn:service:sos"),
        service_psap("US-MARINE", "US", "urn:service:sos.marine"),
        // No service_urn: urn:service:sos.
        r#"{"id":"DE","name":"DE","uri":"sip:de@p.example","area":"DE"}"#.to_string(),
    ];
    s.replace_psaps(format!(r#"{{"psaps":[{}]}}"#, records.join(",")).as_bytes())
        .unwrap();
    s
}

#[test]
fn a_service_takes_its_own_psap_at_any_level_before_its_parent() {
    let s = with_services();
    let id = |m: Option<Match<'_>>| m.map(|m| (m.how, m.area.to_string(), m.psap.id.clone()));
    let point = |service| id(s.lookup_point_for(0.5, 0.5, service));
    // The general service: the county's PSAP.
    assert_eq!(
        point("urn:service:sos"),
        Some((MatchKind::Contains, "US-01001".into(), "AL-1001".into()))
    );
    assert_eq!(point("urn:service:sos"), id(s.lookup_point(0.5, 0.5)));
    // Police: the state's police PSAP wins over the county's general one;
    // the area found stays the county.
    assert_eq!(
        point("urn:service:sos.police"),
        Some((MatchKind::Contains, "US-01001".into(), "AL-POLICE".into()))
    );
    // A finer police service falls back to police, not to the county.
    assert_eq!(
        point("urn:service:sos.police.highway").map(|m| m.2),
        Some("AL-POLICE".into())
    );
    // Fire: the county's own (its service read in any case).
    assert_eq!(
        point("urn:service:sos.fire").map(|m| m.2),
        Some("AL-1001-FIRE".into())
    );
    // Marine: only the country has one.
    assert_eq!(
        point("urn:service:sos.marine").map(|m| m.2),
        Some("US-MARINE".into())
    );
    // No PSAP of the service anywhere above the area: the general one.
    assert_eq!(
        point("urn:service:sos.poison").map(|m| m.2),
        Some("AL-1001".into())
    );
    // A URN outside urn:service:sos is looked up as urn:service:sos.
    assert_eq!(
        point("urn:service:counseling").map(|m| m.2),
        Some("AL-1001".into())
    );
    // The neighbouring county has no fire PSAP: its general one.
    assert_eq!(
        id(s.lookup_point_for(0.5, 1.5, "urn:service:sos.fire")).map(|m| m.2),
        Some("AL-1510".into())
    );
    // Alaska: no record of its own; police is Alabama's alone, so the US.
    assert_eq!(
        id(s.lookup_point_for(5.5, 0.5, "urn:service:sos.police")),
        Some((MatchKind::Contains, "US-02001".into(), "US".into()))
    );
}

#[test]
fn civic_and_area_lookups_by_service() {
    let s = with_services();
    let civic_for = |c: CivicAddress<'_>, service| {
        s.lookup_civic_for(&c, service)
            .map(|m| (m.how, m.area.to_string(), m.psap.id.clone()))
    };
    assert_eq!(
        civic_for(civic("US", "AL", "Alpha", "", ""), "urn:service:sos.police"),
        Some((MatchKind::County, "US-01001".into(), "AL-POLICE".into()))
    );
    // Only the state known: the state's police PSAP.
    assert_eq!(
        civic_for(civic("US", "AL", "", "", ""), "urn:service:sos.police"),
        Some((MatchKind::StateDefault, "US-AL".into(), "AL-POLICE".into()))
    );
    // Only the state known, a service the state has no PSAP for: the
    // country's PSAP of that service before any general one.
    assert_eq!(
        civic_for(civic("US", "AL", "", "", ""), "urn:service:sos.marine"),
        Some((MatchKind::CountryDefault, "US".into(), "US-MARINE".into()))
    );
    assert_eq!(
        civic_for(civic("US", "AL", "", "", ""), "urn:service:sos.fire"),
        Some((MatchKind::CountryDefault, "US".into(), "US".into()))
    );
    assert_eq!(
        civic_for(civic("DE", "", "", "Berlin", ""), "urn:service:sos.police"),
        Some((MatchKind::CountryDefault, "DE".into(), "DE".into()))
    );
    let area = |key, service| s.psap_for_area_for(key, service).map(|p| p.id.as_str());
    assert_eq!(
        area("US-01001", "urn:service:sos.police"),
        Some("AL-POLICE")
    );
    assert_eq!(
        area("US-01001", "urn:service:sos.fire"),
        Some("AL-1001-FIRE")
    );
    assert_eq!(area("US-AL", "urn:service:sos.fire"), None);
    assert_eq!(area("US-AL", "urn:service:sos.police"), Some("AL-POLICE"));
    assert_eq!(area("US", "urn:service:sos.fire"), Some("US"));
    assert_eq!(
        s.psap_for_area("US-01001").map(|p| p.id.as_str()),
        Some("AL-1001")
    );
    assert_eq!(
        s.psap("AL-1001-FIRE").unwrap().service(),
        "urn:service:sos.fire"
    );
    assert_eq!(s.psap("DE").unwrap().service(), "urn:service:sos");
}

#[test]
fn one_psap_per_area_and_service() {
    let mut s = fixture();
    let two = |a: &str, b: &str| {
        format!(
            r#"{{"psaps":[{},{}]}}"#,
            service_psap("A", "US-01001", a),
            service_psap("B", "US-01001", b)
        )
    };
    // Two services for one area are fine; two records of one service not,
    // whatever the case of the URN or whether it is written at all.
    assert!(s
        .replace_psaps(two("urn:service:sos", "urn:service:sos.police").as_bytes())
        .is_ok());
    let err = s
        .replace_psaps(two("urn:service:sos.police", "urn:service:SOS.POLICE").as_bytes())
        .unwrap_err();
    assert!(err.to_string().contains("urn:service:sos.police"), "{err}");
    let unwritten = format!(
        r#"{{"psaps":[{},{}]}}"#,
        service_psap("A", "US-01001", "urn:service:sos"),
        psap("B", "US-01001")
    );
    assert!(s.replace_psaps(unwritten.as_bytes()).is_err());
    // A service URN must be urn:service:sos or below it.
    for bad in [
        "urn:service:counseling",
        "urn:service:sosx",
        "urn:service:sos.",
        "urn:service:sos..police",
        "urn:service:sos.po lice",
        "sos.police",
        "",
    ] {
        let json = format!(r#"{{"psaps":[{}]}}"#, service_psap("A", "US-01001", bad));
        assert!(s.replace_psaps(json.as_bytes()).is_err(), "{bad:?}");
    }
}
