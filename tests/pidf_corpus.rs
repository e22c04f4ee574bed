//! The PIDF-LO parser against the shared corpora.
//!
//! `tests/corpus/pidf/MANIFEST.tsv` gives, per file, the expected shape kinds
//! and fields in a small free-text notation; [`Expectation::read`] turns each
//! row into checks, and any key it does not know fails the test, so no row is
//! skipped silently. `tests/corpus/emergency-invites/` holds whole INVITEs;
//! their PIDF part is cut out and checked against the values that the
//! manifest notes name.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sosrouter::pidf::{parse, Element, LocationInfo, Pidf, Shape, RFC5139_ELEMENTS};

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir)
}

/// The manifest's rows as column-name/value maps.
fn manifest(dir: &str) -> Vec<Vec<(String, String)>> {
    let text = fs::read_to_string(corpus(dir).join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), header.len(), "manifest row: {l}");
            header
                .iter()
                .cloned()
                .zip(cols.into_iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn col<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    &row.iter().find(|(k, _)| k == name).unwrap().1
}

/// The PIDF document inside a SIP message or a printed one: from `<?xml` (or
/// `<presence` when there is no declaration) to the end of `</presence>`, or
/// to the end of the text when the closing tag is missing.
fn pidf_part(msg: &str) -> Option<&str> {
    let start = msg.find("<?xml").or_else(|| msg.find("<presence"))?;
    let rest = &msg[start..];
    let end = rest
        .find("</presence>")
        .map_or(rest.len(), |e| e + "</presence>".len());
    Some(&rest[..end])
}

/// Whether `got` equals `printed` to the precision it is printed with.
fn matches_printed(got: f64, printed: &str) -> bool {
    let decimals = printed.split_once('.').map_or(0, |(_, d)| d.len());
    let want: f64 = printed
        .parse()
        .unwrap_or_else(|_| panic!("number {printed}"));
    (got - want).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Primary,
    Kind(Element),
}

fn kind_word(s: &str) -> Option<Element> {
    s.split(|c: char| !c.is_ascii_alphabetic())
        .find_map(|w| match w {
            "device" => Some(Element::Device),
            "person" => Some(Element::Person),
            "tuple" => Some(Element::Tuple),
            _ => None,
        })
}

/// One check from a manifest row.
#[derive(Debug)]
enum Check {
    Field(Target, String, String),
    /// The first polygon vertex: lat, lon.
    First(Target, String, String),
    VertexCount(Target, usize),
    ClosedRing(Target),
    BaseAlt(Target, String),
    PrimaryIs(Element),
    HasCivic(Element),
    NoField(Target, String),
    NoUsageRules,
    NoEntity,
    Bare,
    Compound,
    TupleId(String),
    BomInFile,
    EntityContains(String),
    ForeignKeys(Vec<String>),
    SameVerticesAsPrevious,
}

struct Expectation {
    malformed: bool,
    checks: Vec<Check>,
}

const NUMERIC: &[&str] = &[
    "lat",
    "lon",
    "alt",
    "radius",
    "semiMajor",
    "semiMinor",
    "orientation",
    "vertical",
    "innerRadius",
    "outerRadius",
    "startAngle",
    "openingAngle",
    "height",
    "confidence",
    "speed",
];

impl Expectation {
    /// Reads the `expected_fields` notation: `key=value` pairs separated by
    /// `;`, groups labelled `label: ...` (`person:` switches to the person's
    /// location), parenthesised notes, and a few phrases (`N gml:pos
    /// vertices`, `first=lat X lon Y`, `no PC`, `tuple id 0`, ...).
    fn read(text: &str) -> Expectation {
        let mut notes = Vec::new();
        let mut main = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    if depth == 1 {
                        notes.push(String::new());
                    }
                }
                ')' => depth -= 1,
                _ if depth > 0 => notes.last_mut().unwrap().push(c),
                _ => main.push(c),
            }
        }
        let mut checks = Vec::new();
        if main.trim_start().starts_with("none") {
            return Expectation {
                malformed: true,
                checks,
            };
        }
        if main.trim_start().starts_with("primary") {
            let kind = kind_word(&notes[0]).expect("primary (kind)");
            checks.push(Check::PrimaryIs(kind));
        }
        let mut target = Target::Primary;
        for seg in main.split(';') {
            let mut seg = seg.trim();
            if let Some((label, rest)) = seg.split_once(": ") {
                if !label.contains('=') {
                    for phrase in label.split(',') {
                        read_note(phrase.trim(), &mut checks);
                    }
                    target = match kind_word(label) {
                        Some(k) if !label.contains("primary") => Target::Kind(k),
                        _ => Target::Primary,
                    };
                    seg = rest.trim();
                }
            }
            if seg.contains("foreign-namespace elements") {
                let list = notes
                    .iter()
                    .find(|n| n.contains(','))
                    .expect("list of foreign elements");
                let names = list.split(',').map(|s| s.trim().to_owned()).collect();
                checks.push(Check::ForeignKeys(names));
            }
            let Some((before, value)) = seg.split_once('=') else {
                continue;
            };
            let mut words: Vec<&str> = before.split_whitespace().collect();
            let key = words.pop().expect("key").to_owned();
            let prefix = words.join(" ");
            if let Some(k) = kind_word(&prefix) {
                target = Target::Kind(k);
            }
            read_prefix(&prefix, target, &mut checks);
            let value = value.trim();
            if key == "first" {
                let w: Vec<&str> = value.split_whitespace().collect();
                assert_eq!((w[0], w[2]), ("lat", "lon"), "first=: {value}");
                checks.push(Check::First(target, w[1].into(), w[3].into()));
            } else if NUMERIC.contains(&key.as_str()) {
                let mut w = value.split_whitespace();
                checks.push(Check::Field(target, key, w.next().unwrap().into()));
                let trailing: Vec<&str> = w.collect();
                if let ["plus", kind, "civic"] = trailing[..] {
                    checks.push(Check::HasCivic(kind_word(kind).expect("kind")));
                } else {
                    assert!(trailing.is_empty(), "unread words {trailing:?}");
                }
            } else {
                checks.push(Check::Field(target, key, value.into()));
            }
        }
        for note in &notes {
            for phrase in note.split([',', ';', ':']).map(str::trim) {
                read_note(phrase, &mut checks);
            }
        }
        Expectation {
            malformed: false,
            checks,
        }
    }
}

/// Phrases before a key: `7 gml:pos vertices, closed ring,`, `same 7
/// vertices as gml:posList,`, `base 5 posList points at alt 36.6,`.
fn read_prefix(prefix: &str, target: Target, checks: &mut Vec<Check>) {
    let words: Vec<&str> = prefix
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    for (n, w) in words.iter().enumerate() {
        let next = words.get(n + 1).copied().unwrap_or("");
        if let Ok(count) = w.parse::<usize>() {
            if ["gml:pos", "posList", "vertices"].contains(&next) {
                checks.push(Check::VertexCount(target, count));
            }
        }
        if *w == "alt" && words.get(n.wrapping_sub(1)) == Some(&"at") {
            checks.push(Check::BaseAlt(target, next.to_owned()));
        }
        if *w == "closed" && next == "ring" {
            checks.push(Check::ClosedRing(target));
        }
        if *w == "same" && prefix.contains("vertices as") {
            checks.push(Check::SameVerticesAsPrevious);
        }
    }
}

fn read_note(phrase: &str, checks: &mut Vec<Check>) {
    if let Some(what) = phrase.strip_prefix("no ") {
        let word = what.split_whitespace().next().unwrap_or("");
        checks.push(match word {
            "usage-rules" => Check::NoUsageRules,
            "entity" => Check::NoEntity,
            "presence" => Check::Bare,
            k if k == "country" || RFC5139_ELEMENTS.contains(&k) => {
                Check::NoField(Target::Primary, k.to_owned())
            }
            other => panic!("manifest note 'no {other}' is not understood"),
        });
    } else if phrase.starts_with("bare civicAddress") {
        checks.push(Check::Bare);
    } else if let Some(id) = phrase.strip_prefix("tuple id ") {
        checks.push(Check::TupleId(id.trim().to_owned()));
    } else if phrase.contains("starts with a UTF-8 BOM") {
        checks.push(Check::BomInFile);
    } else if phrase.starts_with("compound location") {
        checks.push(Check::Compound);
    } else if let Some(rest) = phrase.strip_prefix("entity keeps the ") {
        let text = rest.split_whitespace().next().unwrap();
        checks.push(Check::EntityContains(text.to_owned()));
    }
}

fn location(pidf: &Pidf, target: Target) -> &LocationInfo {
    match target {
        Target::Primary => pidf.selected(),
        Target::Kind(k) => pidf
            .locations()
            .iter()
            .find(|l| l.source == k)
            .unwrap_or_else(|| panic!("no {k:?} location")),
    }
}

fn ring(loc: &LocationInfo) -> Vec<(f64, f64, Option<f64>)> {
    match &loc.geo.as_ref().expect("a shape").shape {
        Shape::Polygon { exterior: v } | Shape::Prism { base: v, .. } => {
            v.iter().map(|p| (p.lat, p.lon, p.alt)).collect()
        }
        other => panic!("not a polygon: {other:?}"),
    }
}

fn numeric_field(loc: &LocationInfo, key: &str) -> Option<f64> {
    let geo = loc.geo.as_ref();
    let shape = geo.map(|g| &g.shape);
    // lat/lon/alt in the manifest are the shape's own position (`gml:pos`):
    // for an arc band that is its centre, not the routing point.
    let pos = shape.and_then(|s| match s {
        Shape::Point { pos } => Some(*pos),
        Shape::Circle { center, .. }
        | Shape::Ellipse { center, .. }
        | Shape::ArcBand { center, .. }
        | Shape::Sphere { center, .. }
        | Shape::Ellipsoid { center, .. } => Some(*center),
        Shape::Polygon { .. } | Shape::Prism { .. } => None,
    });
    match key {
        "lat" => pos.map(|p| p.lat),
        "lon" => pos.map(|p| p.lon),
        "alt" => pos.and_then(|p| p.alt),
        "radius" => geo.and_then(|g| g.radius_m),
        "confidence" => loc.confidence,
        "speed" => loc.dynamic.as_ref().and_then(|d| d.speed_mps),
        _ => match (shape?, key) {
            (Shape::Ellipse { semi_major_m, .. }, "semiMajor")
            | (Shape::Ellipsoid { semi_major_m, .. }, "semiMajor") => Some(*semi_major_m),
            (Shape::Ellipse { semi_minor_m, .. }, "semiMinor")
            | (Shape::Ellipsoid { semi_minor_m, .. }, "semiMinor") => Some(*semi_minor_m),
            (
                Shape::Ellipse {
                    orientation_deg, ..
                },
                "orientation",
            )
            | (
                Shape::Ellipsoid {
                    orientation_deg, ..
                },
                "orientation",
            ) => Some(*orientation_deg),
            (Shape::Ellipsoid { vertical_m, .. }, "vertical") => Some(*vertical_m),
            (Shape::ArcBand { inner_radius_m, .. }, "innerRadius") => Some(*inner_radius_m),
            (Shape::ArcBand { outer_radius_m, .. }, "outerRadius") => Some(*outer_radius_m),
            (
                Shape::ArcBand {
                    start_angle_deg, ..
                },
                "startAngle",
            ) => Some(*start_angle_deg),
            (
                Shape::ArcBand {
                    opening_angle_deg, ..
                },
                "openingAngle",
            ) => Some(*opening_angle_deg),
            (Shape::Prism { height_m, .. }, "height") => Some(*height_m),
            _ => None,
        },
    }
}

/// The shape kinds a document holds, with `civic` for civic addresses.
fn kinds(pidf: &Pidf) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in pidf.locations() {
        if let Some(g) = &l.geo {
            out.insert(g.shape.kind().to_owned());
        }
        if l.civic.is_some() {
            out.insert("civic".to_owned());
        }
    }
    out
}

fn check(file: &str, raw: &str, pidf: &Pidf, checks: &[Check], previous: Option<&Pidf>) -> usize {
    for c in checks {
        let ctx = format!("{file}: {c:?}");
        match c {
            Check::Field(_, key, value) if key.starts_with("Geolocation") => {
                // SIP headers of a printed INVITE, not PIDF fields.
                let line = format!("{key}: {value}");
                assert!(raw.lines().any(|l| l.trim_end() == line), "{ctx}");
            }
            Check::Field(t, key, value) if NUMERIC.contains(&key.as_str()) => {
                let got = numeric_field(location(pidf, *t), key);
                assert!(
                    got.is_some_and(|g| matches_printed(g, value)),
                    "{ctx}: got {got:?}"
                );
            }
            Check::Field(t, key, value) => {
                let civic = location(pidf, *t).civic.as_ref();
                assert_eq!(
                    civic.and_then(|c| c.get(key)),
                    Some(value.as_str()),
                    "{ctx}"
                );
            }
            Check::First(t, lat, lon) => {
                let first = ring(location(pidf, *t))[0];
                assert!(
                    matches_printed(first.0, lat) && matches_printed(first.1, lon),
                    "{ctx}: {first:?}"
                );
            }
            Check::VertexCount(t, n) => {
                assert_eq!(ring(location(pidf, *t)).len(), *n, "{ctx}")
            }
            Check::ClosedRing(t) => {
                let r = ring(location(pidf, *t));
                assert!(r.len() > 3 && r.first() == r.last(), "{ctx}");
            }
            Check::BaseAlt(t, alt) => {
                for v in ring(location(pidf, *t)) {
                    assert!(v.2.is_some_and(|a| matches_printed(a, alt)), "{ctx}: {v:?}");
                }
            }
            Check::PrimaryIs(k) => assert_eq!(pidf.selected().source, *k, "{ctx}"),
            Check::HasCivic(k) => assert!(
                pidf.locations()
                    .iter()
                    .any(|l| l.source == *k && l.civic.is_some()),
                "{ctx}"
            ),
            Check::NoField(t, key) => {
                let civic = location(pidf, *t).civic.as_ref().expect("civic");
                assert_eq!(civic.get(key), None, "{ctx}");
            }
            Check::NoUsageRules => assert_eq!(pidf.selected().usage_rules, None, "{ctx}"),
            Check::NoEntity => assert_eq!(pidf.entity(), None, "{ctx}"),
            Check::Bare => assert_eq!(pidf.selected().source, Element::Bare, "{ctx}"),
            Check::Compound => {
                let l = pidf.selected();
                assert!(l.civic.is_some() && l.geo.is_some(), "{ctx}");
            }
            Check::TupleId(id) => {
                let l = pidf.selected();
                assert_eq!(
                    (l.source, l.id.as_deref()),
                    (Element::Tuple, Some(id.as_str())),
                    "{ctx}"
                );
            }
            Check::BomInFile => assert!(raw.starts_with('\u{FEFF}'), "{ctx}"),
            Check::EntityContains(s) => {
                assert!(
                    pidf.entity().is_some_and(|e| e.contains(s.as_str())),
                    "{ctx}"
                )
            }
            Check::ForeignKeys(names) => {
                let civic = pidf.selected().civic.as_ref().expect("civic");
                for n in names {
                    let suffix = format!("}}{n}");
                    assert!(
                        civic.iter().any(|(k, _)| k.ends_with(&suffix)),
                        "{ctx}: {n}"
                    );
                }
            }
            Check::SameVerticesAsPrevious => {
                let prev = previous.expect("a previous row");
                assert_eq!(ring(prev.selected()), ring(pidf.selected()), "{ctx}");
            }
        }
    }
    checks.len()
}

#[test]
fn every_pidf_manifest_row_matches_its_file() {
    let rows = manifest("pidf");
    assert!(rows.len() >= 30, "manifest has {} rows", rows.len());
    let mut previous: Option<Pidf> = None;
    let mut total_checks = 0;
    for row in &rows {
        let file = col(row, "file");
        let raw =
            fs::read_to_string(corpus("pidf").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let xml = if file.ends_with(".txt") {
            pidf_part(&raw).unwrap_or_else(|| panic!("{file}: no PIDF part"))
        } else {
            raw.as_str()
        };
        let exp = Expectation::read(col(row, "expected_fields"));
        let shape = col(row, "shape");
        let result = parse(xml.as_bytes());
        if exp.malformed || shape == "malformed" {
            assert!(exp.malformed && shape == "malformed", "{file}");
            let err = result.expect_err(file);
            assert_eq!(err.kind(), "not-well-formed", "{file}: {err}");
            previous = None;
            continue;
        }
        let pidf = result.unwrap_or_else(|e| panic!("{file}: {e}"));
        let want: BTreeSet<String> = shape.split('+').map(str::to_owned).collect();
        assert_eq!(kinds(&pidf), want, "{file}: shape kinds");
        assert!(!exp.checks.is_empty(), "{file}: no checks read");
        total_checks += check(file, &raw, &pidf, &exp.checks, previous.as_ref());
        previous = Some(pidf);
    }
    assert!(total_checks > 150, "only {total_checks} checks");
}

/// The RFC 4119 example declares its civic namespace with a leading space.
/// The parser trims namespace URIs and accepts the old civicLoc namespace
/// (see the module documentation), so the address is read.
#[test]
fn rfc4119_civic_example_really_has_the_spaced_namespace() {
    let raw = fs::read_to_string(corpus("pidf").join("rfc4119-2.3-civic.xml")).unwrap();
    assert!(raw.contains(r#"xmlns:cl=" urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc""#));
    let pidf = parse(raw.as_bytes()).unwrap();
    let loc = pidf.selected();
    assert_eq!(
        (loc.source, loc.id.as_deref()),
        (Element::Tuple, Some("sg89ae"))
    );
    assert_eq!(loc.timestamp.as_deref(), Some("2003-06-22T20:57:29Z"));
    let rules = loc.usage_rules.as_ref().unwrap();
    assert_eq!(rules.retransmission_allowed, Some(true));
}

#[test]
fn printed_invites_give_the_same_document_as_the_cut_pidf_files() {
    for (printed, cut) in [
        ("rfc6442-5.1-invite-as-printed.txt", "rfc6442-5.1-pidf.xml"),
        ("rfc6442-5.2-invite-as-printed.txt", "rfc6442-5.2-pidf.xml"),
    ] {
        let raw = fs::read_to_string(corpus("pidf").join(printed)).unwrap();
        let a = parse(pidf_part(&raw).unwrap().as_bytes()).unwrap();
        let b = parse(&fs::read(corpus("pidf").join(cut)).unwrap()).unwrap();
        assert_eq!(a, b, "{printed}");
    }
}

/// Values from the emergency-invites manifest notes, per file.
fn invite_expectations(file: &str) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match file {
        "c01-us-civic-cid.sip" => &[
            ("A1", "NY"),
            ("A3", "New York"),
            ("HNO", "20"),
            ("PRD", "W"),
            ("RD", "34th"),
            ("STS", "St"),
            ("PC", "10001"),
            ("method", "Manual"),
        ],
        "c02-us-geo-point.sip" => &[("lat", "39.7392"), ("lon", "-104.9903"), ("shape", "point")],
        "c03-ca-civic.sip" => &[
            ("country", "CA"),
            ("A1", "ON"),
            ("A3", "Toronto"),
            ("HNO", "290"),
            ("RD", "Front"),
            ("STS", "St"),
            ("POD", "W"),
            ("PC", "M5V 3L9"),
        ],
        "c05-tel-911.sip" => &[
            ("lat", "30.2672"),
            ("lon", "-97.7431"),
            ("radius", "35"),
            ("shape", "circle"),
        ],
        "c06-sip-user-phone.sip" => &[
            ("A1", "IL"),
            ("A3", "Chicago"),
            ("HNO", "233"),
            ("PRD", "S"),
            ("RD", "Wacker"),
            ("STS", "Dr"),
            ("FLR", "12"),
        ],
        "c07-urn-service-sos.sip" => &[("A1", "WA"), ("A3", "Seattle")],
        "c08-us-933-test.sip" => &[("A1", "TX"), ("A3", "Houston")],
        "c09-uk-999.sip" => &[
            ("country", "GB"),
            ("A3", "London"),
            ("HNO", "70"),
            ("RD", "Whitehall"),
            ("PC", "SW1A 2AS"),
        ],
        "c10-eu-112-de.sip" => &[("country", "DE"), ("A3", "München")],
        "c13-location-outside-country.sip" => &[
            ("country", "MX"),
            ("A3", "Ciudad Juárez"),
            ("method", "GPS"),
        ],
        "c14-geolocation-routing-no.sip" => &[("A1", "FL"), ("A3", "Miami")],
        _ => return None,
    })
}

#[test]
fn emergency_invites_pidf_parts() {
    let rows = manifest("emergency-invites");
    let mut checked = 0;
    for row in &rows {
        let file = col(row, "file");
        let msg = fs::read_to_string(corpus("emergency-invites").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let part = pidf_part(&msg);
        match col(row, "location_source") {
            "registered" => {
                assert!(invite_expectations(file).is_none(), "{file}");
                if col(row, "note").contains("not well-formed") {
                    let err = parse(part.expect("a PIDF part").as_bytes()).unwrap_err();
                    assert_eq!(err.kind(), "not-well-formed", "{file}: {err}");
                    checked += 1;
                } else {
                    assert!(part.is_none(), "{file}: unexpected PIDF part");
                }
            }
            source @ ("pidf-civic" | "pidf-geo") => {
                let pidf = parse(part.expect("a PIDF part").as_bytes())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                let loc = pidf.selected();
                assert_eq!(loc.source, Element::Device, "{file}");
                assert_eq!(
                    (loc.civic.is_some(), loc.geo.is_some()),
                    (source == "pidf-civic", source == "pidf-geo"),
                    "{file}"
                );
                let want = invite_expectations(file)
                    .unwrap_or_else(|| panic!("{file}: no expectations written"));
                for (key, value) in want {
                    let ctx = format!("{file}: {key}={value}");
                    match *key {
                        "method" => assert_eq!(loc.method.as_deref(), Some(*value), "{ctx}"),
                        "shape" => assert_eq!(
                            loc.geo.as_ref().map(|g| g.shape.kind()),
                            Some(*value),
                            "{ctx}"
                        ),
                        k if NUMERIC.contains(&k) => {
                            let got = numeric_field(loc, k);
                            assert!(got.is_some_and(|g| matches_printed(g, value)), "{ctx}");
                        }
                        k => assert_eq!(
                            loc.civic.as_ref().and_then(|c| c.get(k)),
                            Some(*value),
                            "{ctx}"
                        ),
                    }
                }
                checked += 1;
            }
            other => panic!("{file}: location_source {other}"),
        }
    }
    // Every file but the two without a PIDF part (c04, c11).
    assert_eq!(checked, rows.len() - 2);
    // The corpus directory holds no INVITE the manifest leaves out.
    let files = fs::read_dir(corpus("emergency-invites"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('c') && n.ends_with(".sip"))
        .count();
    assert_eq!(files, rows.len());
}

/// Everything the parser reads from each corpus document (every location,
/// the rejected ones, the error of a document that gives none), as JSON,
/// compared with `tests/golden/pidf-corpus.json`: a change in how the
/// document is read cannot change what it yields unnoticed.
/// `SIP_GOLDEN_UPDATE=1 cargo test --test pidf_corpus` rewrites the file;
/// review its diff before committing it.
#[test]
fn everything_read_matches_the_golden_file() {
    let mut all = serde_json::Map::new();
    for dir in ["pidf", "emergency-invites"] {
        let mut files: Vec<String> = manifest(dir)
            .iter()
            .map(|row| col(row, "file").to_owned())
            .collect();
        files.sort();
        for file in files {
            let raw = fs::read_to_string(corpus(dir).join(&file)).unwrap();
            let xml = if file.ends_with(".xml") {
                Some(raw.as_str())
            } else {
                pidf_part(&raw)
            };
            let Some(xml) = xml else { continue };
            let got = match parse(xml.as_bytes()) {
                Ok(pidf) => serde_json::json!({ "ok": pidf }),
                Err(e) => serde_json::json!({ "error": e }),
            };
            all.insert(format!("{dir}/{file}"), got);
        }
    }
    let mut out = serde_json::to_string_pretty(&serde_json::Value::Object(all)).unwrap();
    out.push('\n');
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pidf-corpus.json");
    if std::env::var_os("SIP_GOLDEN_UPDATE").is_some() {
        fs::write(&path, &out).unwrap();
        return;
    }
    let want = fs::read_to_string(&path).expect("the golden file");
    assert!(
        out == want,
        "what the corpus reads differs from the golden file\n--- got\n{out}\n--- golden\n{want}"
    );
}

/// A forbidden character is found wherever it stands in a corpus document
/// (the check looks at blocks of bytes first), and its byte offset is
/// the one named; a document with none is read as before.
#[test]
fn a_control_character_anywhere_in_a_corpus_document_is_refused_at_its_offset() {
    let xml = fs::read(corpus("pidf").join("rfc5491-5.2.3-fig9-circle.xml")).unwrap();
    assert!(parse(&xml).is_ok());
    let mut checked = 0;
    for at in 0..xml.len() {
        // Replacing one byte of a multi-byte character would break UTF-8
        // instead; the corpus document is ASCII.
        assert!(xml[at].is_ascii());
        for bad in [&[0x01_u8][..], &[0x1F], &[0xEF, 0xBF, 0xBF]] {
            let mut doc = xml.clone();
            doc.splice(at..at + 1, bad.iter().copied());
            let err = parse(&doc).unwrap_err();
            assert_eq!(err.kind(), "not-well-formed", "at {at}: {err}");
            assert!(
                err.to_string().contains(&format!("(byte {at})")),
                "at {at}: {err}"
            );
            checked += 1;
        }
    }
    assert!(checked > 3 * 64);
}
