//! PSAP lookup on the shipped data: the places the test corpus routes to,
//! the county/city name pairs, borders, coasts and open sea.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sosrouter::emergency::psap::{CivicAddress, DataError, MatchKind, ServiceAreas, PSAPS_FILE};

fn shipped() -> &'static ServiceAreas {
    static DATA: OnceLock<ServiceAreas> = OnceLock::new();
    DATA.get_or_init(|| ServiceAreas::embedded().expect("the shipped data loads"))
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
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

fn point_area(lat: f64, lon: f64) -> Option<(MatchKind, String)> {
    shipped()
        .lookup_point(lat, lon)
        .map(|m| (m.how, m.area.to_string()))
}

fn civic_area(c: CivicAddress<'_>) -> Option<(MatchKind, String)> {
    shipped()
        .lookup_civic(&c)
        .map(|m| (m.how, m.area.to_string()))
}

/// Splits a TSV file of the corpus into rows of named columns.
fn tsv(name: &str) -> Vec<std::collections::HashMap<String, String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/emergency-invites")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t').chain(std::iter::repeat("")))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn corpus_points() {
    // c02: Denver; c05: the centre of the Austin circle
    assert_eq!(
        point_area(39.7392, -104.9903),
        Some((MatchKind::Contains, "US-08031".into()))
    );
    assert_eq!(
        point_area(30.2672, -97.7431),
        Some((MatchKind::Contains, "US-48453".into()))
    );
}

#[test]
fn corpus_civic_addresses() {
    // c06: Chicago, by ZIP (no county in the PIDF)
    assert_eq!(
        civic_area(civic("US", "IL", "", "Chicago", "60606")),
        Some((MatchKind::Zip, "US-17031".into()))
    );
    // the same with no ZIP goes by city
    assert_eq!(
        civic_area(civic("US", "IL", "", "Chicago", "")),
        Some((MatchKind::City, "US-17031".into()))
    );
    // c11: San Francisco registered address
    assert_eq!(
        civic_area(civic("US", "CA", "", "San Francisco", "94102")),
        Some((MatchKind::Zip, "US-06075".into()))
    );
    // c10: Munich, no German areas: the country default
    let m = shipped()
        .lookup_civic(&civic("DE", "BY", "", "München", "80331"))
        .unwrap();
    assert_eq!(
        (m.how, m.area, m.psap.id.as_str()),
        (MatchKind::CountryDefault, "DE", "SYN-DE")
    );
}

/// Every registered address of the corpus inventory finds a PSAP in its own
/// country (and US ones in their own state), and the rows the manifest
/// routes to a PSAP find the area it expects.
#[test]
fn corpus_inventory_addresses() {
    let expected = [
        ("+13035550117", "US-08031"),
        ("+15125550188", "US-48453"),
        ("+13125550161", "US-17031"),
        ("+14155550177", "US-06075"),
        ("+4989555010", "DE"),
        ("+14165550199", "CA-ON"),
        ("+12125550142", "US-36061"),
        ("+16175550123", "US-25025"),
        ("+19155550142", "US-48141"),
        ("+17135550150", "US-48201"),
        ("+12065550133", "US-53033"),
        ("+16025550109", "US-04013"),
        ("+13055550166", "US-12086"),
        ("+442079460018", "GB"),
    ];
    let rows = tsv("inventory.tsv");
    assert_eq!(rows.len(), expected.len());
    for row in &rows {
        let c = civic(
            &row["reg_country"],
            &row["reg_A1"],
            "",
            &row["reg_A3"],
            &row["reg_PC"],
        );
        let m = shipped()
            .lookup_civic(&c)
            .unwrap_or_else(|| panic!("no PSAP for {row:?}"));
        let want = expected
            .iter()
            .find(|(n, _)| *n == row["number"])
            .map(|(_, a)| *a)
            .unwrap();
        assert_eq!(m.area, want, "{row:?}");
        assert!(m.psap.synthetic);
        if row["reg_country"] == "US" {
            let area = shipped().area(m.area).unwrap();
            assert_eq!(area.a1.as_deref(), Some(row["reg_A1"].as_str()));
            assert_eq!(m.how, MatchKind::Zip, "{row:?}");
        }
    }
    // the manifest's expected areas all exist
    for row in tsv("MANIFEST.tsv") {
        let area = &row["expected_psap_area"];
        if !area.is_empty() {
            assert!(shipped().psap_for_area(area).is_some(), "{area}");
        }
    }
}

#[test]
fn county_and_independent_city_pairs() {
    // (state, bare name, county FIPS, independent city FIPS)
    let pairs = [
        ("MD", "Baltimore", "24005", "24510"),
        ("MO", "St. Louis", "29189", "29510"),
        ("VA", "Fairfax", "51059", "51600"),
        ("VA", "Richmond", "51159", "51760"),
        ("VA", "Franklin", "51067", "51620"),
        ("VA", "Roanoke", "51161", "51770"),
    ];
    for (state, name, county, city) in pairs {
        let look = |a2: &str| {
            let (how, area) = civic_area(civic("US", state, a2, "", "")).unwrap();
            assert_eq!(how, MatchKind::County, "{a2}");
            area
        };
        let county = format!("US-{county}");
        let city = format!("US-{city}");
        assert_eq!(look(name), county, "{name}");
        assert_eq!(look(&format!("{name} County")), county, "{name} County");
        assert_eq!(look(&format!("{} county", name.to_uppercase())), county);
        assert_eq!(look(&format!("{name} city")), city, "{name} city");
        assert_eq!(look(&format!("{name} City")), city, "{name} City");
        assert_eq!(look(&format!("City of {name}")), city, "City of {name}");
        // and the two are told apart by point too
        assert_ne!(county, city);
    }
    // spellings of Saint
    assert_eq!(
        civic_area(civic("US", "Missouri", "Saint Louis County", "", "")),
        Some((MatchKind::County, "US-29189".into()))
    );
    assert_eq!(
        civic_area(civic("US", "MO", "St Louis city", "", "")),
        Some((MatchKind::County, "US-29510".into()))
    );
}

#[test]
fn falls_church_has_no_polygon_but_is_found_by_civic() {
    let area = shipped().area("US-51610").unwrap();
    assert!(!area.has_geometry);
    assert_eq!(area.a2.as_deref(), Some("Falls Church city"));
    for a2 in ["Falls Church city", "Falls Church", "City of Falls Church"] {
        assert_eq!(
            civic_area(civic("US", "VA", a2, "", "")),
            Some((MatchKind::County, "US-51610".into())),
            "{a2}"
        );
    }
    assert_eq!(
        civic_area(civic("US", "VA", "", "Falls Church", "22046")),
        Some((MatchKind::Zip, "US-51610".into()))
    );
    assert_eq!(
        shipped()
            .lookup_civic(&civic("US", "VA", "Falls Church city", "", ""))
            .unwrap()
            .psap
            .id,
        "SYN-US-51610"
    );
}

#[test]
fn pacific_point_off_san_francisco_takes_the_nearest_county() {
    // about 2.5 km west of Ocean Beach
    let (how, area) = point_area(37.76, -122.54).unwrap();
    assert_eq!(area, "US-06075");
    match how {
        MatchKind::Nearest { km } => assert!(km > 0.5 && km < 5.0, "{km}"),
        other => panic!("expected Nearest, got {other:?}"),
    }
    // 20 km out is beyond the default distance, and in no country
    assert_eq!(point_area(37.76, -122.75), None);
    assert_eq!(shipped().country_of_point(37.76, -122.75), None);
    // a wider distance reaches it only if configured
    let wide = ServiceAreas::embedded().unwrap().with_nearest_km(25.0);
    assert!(matches!(
        wide.lookup_point(37.76, -122.75).map(|m| m.how),
        Some(MatchKind::Nearest { .. })
    ));
}

#[test]
fn open_south_atlantic_is_in_no_country() {
    assert_eq!(shipped().country_of_point(-46.8123, 16.12), None);
    assert_eq!(point_area(-46.8123, 16.12), None);
}

#[test]
fn ciudad_juarez_is_mexico_and_el_paso_is_texas() {
    assert_eq!(shipped().country_of_point(31.69, -106.42), Some("MX"));
    assert_eq!(
        point_area(31.69, -106.42),
        Some((MatchKind::CountryDefault, "MX".into()))
    );
    // Juárez a kilometre or two from the Rio Grande: within the nearest
    // distance of El Paso County, but in Mexico, so not routed to it
    assert_eq!(
        point_area(31.735, -106.45),
        Some((MatchKind::CountryDefault, "MX".into()))
    );
    assert_eq!(shipped().country_of_point(31.76, -106.49), Some("US"));
    assert_eq!(
        point_area(31.76, -106.49),
        Some((MatchKind::Contains, "US-48141".into()))
    );
}

#[test]
fn toronto_and_germany() {
    let (_, area) = point_area(43.6532, -79.3832).unwrap();
    assert_eq!(area, "CA-ON");
    assert_eq!(shipped().country_of_point(43.6532, -79.3832), Some("CA"));
    assert_eq!(
        civic_area(civic("CA", "Ontario", "", "Toronto", "M5V 3L9")),
        Some((MatchKind::Province, "CA-ON".into()))
    );
    assert_eq!(
        civic_area(civic("CA", "", "", "Montréal", "H2X 1Y4")),
        Some((MatchKind::Zip, "CA-QC".into()))
    );
    // Munich
    assert_eq!(shipped().country_of_point(48.137, 11.575), Some("DE"));
    assert_eq!(
        point_area(48.137, 11.575),
        Some((MatchKind::CountryDefault, "DE".into()))
    );
}

#[test]
fn us_territories_by_their_own_country_code_or_as_a_state() {
    assert_eq!(
        civic_area(civic("PR", "", "Mayaguez", "", "")),
        Some((MatchKind::County, "US-72097".into()))
    );
    assert_eq!(
        civic_area(civic("US", "PR", "Mayagüez Municipio", "", "")),
        Some((MatchKind::County, "US-72097".into()))
    );
    assert_eq!(
        civic_area(civic("GU", "", "", "", "")),
        Some((MatchKind::StateDefault, "US-GU".into()))
    );
    // San Juan
    assert_eq!(shipped().country_of_point(18.4655, -66.1057), Some("PR"));
    assert_eq!(
        point_area(18.4655, -66.1057).unwrap().0,
        MatchKind::Contains
    );
}

#[test]
fn state_and_country_defaults() {
    assert_eq!(
        civic_area(civic("US", "California", "", "Nowhere Special", "")),
        Some((MatchKind::StateDefault, "US-CA".into()))
    );
    assert_eq!(
        civic_area(civic("US", "", "", "", "")),
        Some((MatchKind::CountryDefault, "US".into()))
    );
    assert_eq!(
        civic_area(civic("us", "ZZ", "Cook", "Chicago", "")),
        Some((MatchKind::CountryDefault, "US".into()))
    );
    assert_eq!(civic_area(civic("QQ", "", "", "", "")), None);
    // a ZIP from another state is ignored in favour of the state's city
    assert_eq!(
        civic_area(civic("US", "TX", "", "Austin", "94102")),
        Some((MatchKind::City, "US-48453".into()))
    );
}

#[test]
fn every_shipped_psap_is_synthetic_and_never_resolves() {
    let s = shipped();
    assert!(s.psaps().len() > 3500, "{}", s.psaps().len());
    for p in s.psaps() {
        assert!(p.synthetic, "{}", p.id);
        assert!(p.id.starts_with("SYN-"), "{}", p.id);
        // The general record of an area is named after it; one for a
        // single service adds the service's name.
        match p.service().strip_prefix("urn:service:sos") {
            Some("") => assert_eq!(p.id, format!("SYN-{}", p.area)),
            Some(sub) => assert_eq!(
                p.id,
                format!(
                    "SYN-{}-{}",
                    p.area,
                    sub.trim_start_matches('.').to_uppercase()
                )
            ),
            None => panic!("{}: {}", p.id, p.service()),
        }
        assert!(p.name.contains("(synthetic PSAP)"), "{}", p.name);
        let host = p.uri.strip_prefix("sip:sos@").unwrap_or("");
        assert!(host.ends_with(".example"), "{}", p.uri);
        assert!(p.agency_id.ends_with(".example"), "{}", p.agency_id);
        assert_eq!(s.psap(&p.id), Some(p));
    }
    // every area has a record of its own
    for a in s.areas() {
        assert_eq!(s.psap_for_area(&a.id).unwrap().area, a.id);
    }
    assert_eq!(s.areas().len(), 3231 + 13);
}

#[test]
fn odd_input_never_panics() {
    let s = shipped();
    let coords = [
        f64::NAN,
        f64::INFINITY,
        -f64::INFINITY,
        -1e308,
        1e308,
        -180.0,
        180.0,
        -90.0,
        90.0,
        0.0,
        -0.0,
    ];
    for &lat in &coords {
        for &lon in &coords {
            let _ = s.lookup_point(lat, lon);
            let _ = s.country_of_point(lat, lon);
        }
    }
    assert!(s.lookup_point(f64::NAN, -104.99).is_none());
    assert!(s.lookup_point(39.74, 200.0).is_none());
    let strings = [
        "", " ", "\u{0}", "US-", "-", "ñ", "城市", "City of", "county", "99999-", "é1234",
    ];
    for a in strings {
        for b in strings {
            let _ = s.lookup_civic(&civic(a, b, a, b, a));
            let _ = s.lookup_civic(&civic("US", a, b, a, b));
            let _ = s.lookup_civic(&civic("CA", a, b, a, b));
        }
        let _ = s.psap(a);
        let _ = s.area(a);
        let _ = s.psap_for_area(a);
    }
}

#[test]
fn load_from_the_data_directory_matches_embedded() {
    let loaded = ServiceAreas::load(&data_dir()).unwrap();
    assert_eq!(loaded.areas().len(), shipped().areas().len());
    assert_eq!(loaded.psaps().len(), shipped().psaps().len());
    assert_eq!(
        loaded.lookup_point(39.7392, -104.9903).map(|m| m.area),
        Some("US-08031")
    );
}

#[test]
fn an_operator_psap_file_replaces_the_synthetic_one() {
    let dir = std::env::temp_dir().join(format!("sosrouter-psap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let own = r#"{"psaps":[
        {"id":"SF-ECD","name":"San Francisco Emergency Communications","uri":"sip:911@sf.psap.test","agency_id":"sf.psap.test","area":"US-06075"},
        {"id":"CA-STATE","name":"California fallback","uri":"sip:911@ca.psap.test","area":"US-CA"},
        {"id":"US-NATIONAL","name":"National fallback","uri":"sip:911@us.psap.test","area":"US"}
    ]}"#;
    std::fs::write(dir.join(PSAPS_FILE), own).unwrap();
    let s = ServiceAreas::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let sf = s
        .lookup_civic(&civic("US", "CA", "", "San Francisco", "94102"))
        .unwrap();
    assert_eq!(
        (sf.area, sf.psap.id.as_str(), sf.psap.synthetic),
        ("US-06075", "SF-ECD", false)
    );
    // another California county: the state's record
    let la = s.lookup_point(34.05, -118.25).unwrap();
    assert_eq!(
        (la.how, la.area, la.psap.id.as_str()),
        (MatchKind::Contains, "US-06037", "CA-STATE")
    );
    // Denver: the national record
    assert_eq!(
        s.lookup_point(39.7392, -104.9903).unwrap().psap.id,
        "US-NATIONAL"
    );
    // Germany: no record at all now
    assert!(s.lookup_point(48.137, 11.575).is_none());
    assert!(s.psap("SYN-US-06075").is_none());
}

#[test]
fn load_errors_name_the_problem() {
    let missing = data_dir().join("no-such-directory");
    assert!(matches!(
        ServiceAreas::load(&missing),
        Err(DataError::Io { .. })
    ));

    let empty = std::env::temp_dir().join(format!("sosrouter-psap-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let err = ServiceAreas::load(&empty).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err}");

    std::fs::write(
        empty.join(PSAPS_FILE),
        r#"{"psaps":[{"id":"X","name":"x","uri":"sip:x@x.example","area":"US-6075"}]}"#,
    )
    .unwrap();
    let err = ServiceAreas::load(&empty).unwrap_err();
    std::fs::remove_dir_all(&empty).unwrap();
    assert!(err.to_string().contains("US-6075"), "{err}");
}

/// The shipped data per service: where a service has a PSAP of its own it
/// takes it, at whatever level; elsewhere the general PSAP of the place.
#[test]
fn shipped_psaps_per_service() {
    let s = shipped();
    const MUNICH: (f64, f64) = (48.137, 11.575);
    const VIENNA: (f64, f64) = (48.2082, 16.3738);
    const ROME: (f64, f64) = (41.9028, 12.4964);
    const PARIS: (f64, f64) = (48.8566, 2.3522);
    const MADRID: (f64, f64) = (40.4168, -3.7038);
    const SAN_FRANCISCO: (f64, f64) = (37.7749, -122.4194);
    const LOS_ANGELES: (f64, f64) = (34.05, -118.25);
    let rows: &[((f64, f64), &str, &str)] = &[
        (MUNICH, "urn:service:sos", "SYN-DE"),
        (MUNICH, "urn:service:sos.police", "SYN-DE-POLICE"),
        (MUNICH, "urn:service:sos.fire", "SYN-DE"),
        (VIENNA, "urn:service:sos", "SYN-AT"),
        (VIENNA, "urn:service:sos.fire", "SYN-AT-FIRE"),
        (VIENNA, "urn:service:sos.police", "SYN-AT-POLICE"),
        (VIENNA, "urn:service:sos.ambulance", "SYN-AT-AMBULANCE"),
        (VIENNA, "urn:service:sos.mountain", "SYN-AT-MOUNTAIN"),
        (VIENNA, "urn:service:sos.gas", "SYN-AT"),
        (ROME, "urn:service:sos.police", "SYN-IT-POLICE"),
        (ROME, "urn:service:sos.fire", "SYN-IT-FIRE"),
        (ROME, "urn:service:sos.ambulance", "SYN-IT-AMBULANCE"),
        (ROME, "urn:service:sos.marine", "SYN-IT-MARINE"),
        (PARIS, "urn:service:sos.ambulance", "SYN-FR-AMBULANCE"),
        (PARIS, "urn:service:sos.police", "SYN-FR-POLICE"),
        (PARIS, "urn:service:sos.fire", "SYN-FR-FIRE"),
        (PARIS, "urn:service:sos.marine", "SYN-FR-MARINE"),
        (PARIS, "urn:service:sos.poison", "SYN-FR"),
        (MADRID, "urn:service:sos.police", "SYN-ES-POLICE"),
        (MADRID, "urn:service:sos.fire", "SYN-ES-FIRE"),
        (MADRID, "urn:service:sos.ambulance", "SYN-ES-AMBULANCE"),
        (MADRID, "urn:service:sos", "SYN-ES"),
        // A US county with a police PSAP of its own, and one without.
        (
            SAN_FRANCISCO,
            "urn:service:sos.police",
            "SYN-US-06075-POLICE",
        ),
        (SAN_FRANCISCO, "urn:service:sos", "SYN-US-06075"),
        (SAN_FRANCISCO, "urn:service:sos.fire", "SYN-US-06075"),
        (LOS_ANGELES, "urn:service:sos.police", "SYN-US-06037"),
    ];
    for &((lat, lon), service, want) in rows {
        let m = s.lookup_point_for(lat, lon, service);
        assert_eq!(
            m.map(|m| m.psap.id.as_str()),
            Some(want),
            "{lat} {lon} {service}"
        );
        // The same by civic address at country level (the areas of these
        // countries are the countries themselves), and by area key.
        if let Some(country) = want.strip_prefix("SYN-").map(|r| &r[..2]) {
            if country != "US" {
                let c = s.lookup_civic_for(&civic(country, "", "", "", ""), service);
                assert_eq!(
                    c.map(|m| m.psap.id.as_str()),
                    Some(want),
                    "{country} {service}"
                );
                assert_eq!(
                    s.psap_for_area_for(country, service).map(|p| p.id.as_str()),
                    Some(want)
                );
            }
        }
    }
    // Without a service, the general records as before.
    assert_eq!(
        s.lookup_point(MUNICH.0, MUNICH.1)
            .map(|m| m.psap.id.as_str()),
        Some("SYN-DE")
    );
    assert_eq!(
        s.psap("SYN-DE-POLICE").unwrap().service(),
        "urn:service:sos.police"
    );
    assert_eq!(s.psap("SYN-DE").unwrap().service(), "urn:service:sos");
    // San Francisco by civic address and by area key.
    let sf = s
        .lookup_civic_for(
            &civic("US", "CA", "", "San Francisco", "94102"),
            "urn:service:sos.police",
        )
        .unwrap();
    assert_eq!(
        (sf.how, sf.area, sf.psap.id.as_str()),
        (MatchKind::Zip, "US-06075", "SYN-US-06075-POLICE")
    );
    assert_eq!(
        s.psap_for_area_for("US-06075", "urn:service:sos.police")
            .map(|p| p.id.as_str()),
        Some("SYN-US-06075-POLICE")
    );
}

#[test]
fn an_operator_file_with_a_police_psap_per_state_and_a_general_one_per_county() {
    let mut s = ServiceAreas::embedded().unwrap();
    let own = r#"{"psaps":[
        {"id":"SF","name":"San Francisco","uri":"sip:911@sf.psap.test","area":"US-06075"},
        {"id":"LA","name":"Los Angeles","uri":"sip:911@la.psap.test","area":"US-06037"},
        {"id":"CA-POLICE","name":"California police","uri":"sip:police@ca.psap.test","area":"US-CA","service_urn":"urn:service:sos.police"},
        {"id":"US-POISON","name":"Poison control","uri":"sip:poison@us.psap.test","area":"US","service_urn":"urn:service:sos.poison"}
    ]}"#;
    s.replace_psaps(own.as_bytes()).unwrap();
    let at = |lat, lon, service| {
        s.lookup_point_for(lat, lon, service)
            .map(|m| (m.area.to_string(), m.psap.id.clone()))
    };
    // Police: the state's police PSAP, from either county.
    assert_eq!(
        at(37.7749, -122.4194, "urn:service:sos.police"),
        Some(("US-06075".into(), "CA-POLICE".into()))
    );
    assert_eq!(
        at(34.05, -118.25, "urn:service:sos.police"),
        Some(("US-06037".into(), "CA-POLICE".into()))
    );
    // Any other call: the county's PSAP.
    assert_eq!(
        at(34.05, -118.25, "urn:service:sos"),
        Some(("US-06037".into(), "LA".into()))
    );
    assert_eq!(
        at(34.05, -118.25, "urn:service:sos.fire"),
        Some(("US-06037".into(), "LA".into()))
    );
    // Poison: the national record, everywhere in the US.
    assert_eq!(
        at(34.05, -118.25, "urn:service:sos.poison"),
        Some(("US-06037".into(), "US-POISON".into()))
    );
    // Denver: no general record covers it; police and poison calls find
    // the national poison record only for poison.
    assert_eq!(at(39.7392, -104.9903, "urn:service:sos"), None);
    assert_eq!(at(39.7392, -104.9903, "urn:service:sos.police"), None);
    assert_eq!(
        at(39.7392, -104.9903, "urn:service:sos.poison").map(|m| m.1),
        Some("US-POISON".into())
    );
}
