//! Unit tests of the whole parser: shapes, namespace styles, selection,
//! errors and hostile input.

use super::*;

const DECLS: &str = concat!(
    r#"xmlns="urn:ietf:params:xml:ns:pidf" "#,
    r#"xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" "#,
    r#"xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" "#,
    r#"xmlns:gml="http://www.opengis.net/gml" "#,
    r#"xmlns:gs="http://www.opengis.net/pidflo/1.0" "#,
    r#"xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr""#,
);

/// A presence document with one device whose location-info holds `li`.
fn device_doc(li: &str) -> String {
    format!(
        r#"<presence {DECLS} entity="pres:x@example.com"><dm:device id="d1"><gp:geopriv><gp:location-info>{li}</gp:location-info><gp:method>GPS</gp:method></gp:geopriv></dm:device></presence>"#
    )
}

fn geo_of(li: &str) -> Geo {
    let pidf = parse(device_doc(li).as_bytes()).unwrap_or_else(|e| panic!("{e}: {li}"));
    pidf.selected().geo.clone().expect("a shape")
}

fn err_of(xml: &str) -> PidfError {
    parse(xml.as_bytes()).expect_err("an error")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn point_2d_and_3d() {
    let g = geo_of(
        r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-34.407 150.883</gml:pos></gml:Point>"#,
    );
    assert_eq!(
        (g.lat, g.lon, g.alt, g.radius_m),
        (-34.407, 150.883, None, None)
    );
    assert_eq!(g.shape.kind(), "point");
    let g = geo_of(
        r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::4979"><gml:pos>-34.407 150.883 24.8</gml:pos></gml:Point>"#,
    );
    assert_eq!(g.alt, Some(24.8));
}

#[test]
fn legacy_coordinates_inside_gml_location() {
    let g = geo_of(concat!(
        r#"<gml:location><gml:Point srsName="epsg:4326">"#,
        r#"<gml:coordinates>37:46:30N 122:25:10W</gml:coordinates></gml:Point></gml:location>"#
    ));
    assert!(close(g.lat, 37.775, 1e-9) && close(g.lon, -122.419444, 1e-6));
}

#[test]
fn circle_and_sphere() {
    let g = geo_of(concat!(
        r#"<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>42.5463 -73.2512</gml:pos>"#,
        r#"<gs:radius uom="urn:ogc:def:uom:EPSG::9001"> 850.24 </gs:radius></gs:Circle>"#
    ));
    assert_eq!(
        g.shape,
        Shape::Circle {
            center: Position {
                lat: 42.5463,
                lon: -73.2512,
                alt: None
            },
            radius_m: 850.24
        }
    );
    assert_eq!(g.radius_m, Some(850.24));
    let g = geo_of(concat!(
        r#"<gs:Sphere srsName="urn:ogc:def:crs:EPSG::4979"><gml:pos>42.5463 -73.2512 26.3</gml:pos>"#,
        r#"<gs:radius uom="urn:ogc:def:uom:EPSG::9001">850.24</gs:radius></gs:Sphere>"#
    ));
    assert_eq!(
        (g.alt, g.radius_m, g.shape.kind()),
        (Some(26.3), Some(850.24), "sphere")
    );
}

#[test]
fn ellipse_and_ellipsoid_use_the_semi_major_axis() {
    let g = geo_of(concat!(
        r#"<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>42.5463 -73.2512</gml:pos>"#,
        r#"<gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">1275</gs:semiMajorAxis>"#,
        r#"<gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">670</gs:semiMinorAxis>"#,
        r#"<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">43.2</gs:orientation></gs:Ellipse>"#
    ));
    assert_eq!(g.radius_m, Some(1275.0));
    let Shape::Ellipse {
        semi_minor_m,
        orientation_deg,
        ..
    } = g.shape
    else {
        panic!("{:?}", g.shape)
    };
    assert_eq!((semi_minor_m, orientation_deg), (670.0, 43.2));
    let g = geo_of(concat!(
        r#"<gs:Ellipsoid srsName="urn:ogc:def:crs:EPSG::4979"><gml:pos>42.5463 -73.2512 26.3</gml:pos>"#,
        r#"<gs:semiMajorAxis>7.7156</gs:semiMajorAxis><gs:semiMinorAxis>3.31</gs:semiMinorAxis>"#,
        r#"<gs:verticalAxis>28.7</gs:verticalAxis><gs:orientation>90</gs:orientation></gs:Ellipsoid>"#
    ));
    assert_eq!((g.radius_m, g.alt), (Some(7.7156), Some(26.3)));
    assert!(matches!(g.shape, Shape::Ellipsoid { vertical_m, .. } if vertical_m == 28.7));
}

#[test]
fn arc_band_reduces_to_band_middle() {
    let g = geo_of(concat!(
        r#"<gs:ArcBand srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-43.5723 153.21760</gml:pos>"#,
        r#"<gs:innerRadius>3594</gs:innerRadius><gs:outerRadius>4148</gs:outerRadius>"#,
        r#"<gs:startAngle>20</gs:startAngle><gs:openingAngle>20</gs:openingAngle></gs:ArcBand>"#
    ));
    let Shape::ArcBand { center, .. } = g.shape else {
        panic!()
    };
    let here = Position {
        lat: g.lat,
        lon: g.lon,
        alt: None,
    };
    assert!(close(geo::distance_m(center, here), 3871.0, 0.5));
    // North-east of the centre (bearing 30 degrees).
    assert!(g.lat > center.lat && g.lon > center.lon);
    let r = g.radius_m.unwrap();
    assert!(r > 554.0 / 2.0 && r < 4148.0, "{r}");
}

#[test]
fn polygon_from_pos_and_pos_list_agree() {
    let pos = geo_of(concat!(
        r#"<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing>"#,
        r#"<gml:pos>0 0</gml:pos><gml:pos>0 2</gml:pos><gml:pos>2 2</gml:pos><gml:pos>2 0</gml:pos>"#,
        r#"<gml:pos>0 0</gml:pos></gml:LinearRing></gml:exterior></gml:Polygon>"#
    ));
    let list = geo_of(concat!(
        r#"<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing>"#,
        r#"<gml:posList> 0 0 0 2 2 2 2 0 0 0 </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#
    ));
    assert_eq!(pos, list);
    let Shape::Polygon { exterior } = &pos.shape else {
        panic!()
    };
    assert_eq!(exterior.len(), 5);
    assert!(close(pos.lat, 1.0, 1e-3) && close(pos.lon, 1.0, 1e-3));
    let corner = Position {
        lat: 0.0,
        lon: 0.0,
        alt: None,
    };
    let expect = geo::distance_m(
        Position {
            lat: pos.lat,
            lon: pos.lon,
            alt: None,
        },
        corner,
    );
    assert!(close(pos.radius_m.unwrap(), expect, 1.0));
}

#[test]
fn prism_uses_base_centroid_and_middle_height() {
    let g = geo_of(concat!(
        r#"<gs:Prism srsName="urn:ogc:def:crs:EPSG::4979"><gs:base><gml:Polygon><gml:exterior><gml:LinearRing>"#,
        r#"<gml:posList>10 10 30 10 11 30 11 11 30 11 10 30 10 10 30</gml:posList>"#,
        r#"</gml:LinearRing></gml:exterior></gml:Polygon></gs:base>"#,
        r#"<gs:height uom="urn:ogc:def:uom:EPSG::9001">4</gs:height></gs:Prism>"#
    ));
    let Shape::Prism { base, height_m } = &g.shape else {
        panic!()
    };
    assert_eq!((base.len(), *height_m), (5, 4.0));
    assert_eq!(base[0].alt, Some(30.0));
    assert!(close(g.lat, 10.5, 1e-3) && close(g.lon, 10.5, 1e-3));
    assert_eq!(g.alt, Some(32.0));
}

#[test]
fn shapes_in_default_namespaces() {
    // Default namespaces instead of prefixes, redeclared on each element.
    let g = geo_of(concat!(
        r#"<Circle xmlns="http://www.opengis.net/pidflo/1.0" srsName="urn:ogc:def:crs:EPSG::4326">"#,
        r#"<pos xmlns="http://www.opengis.net/gml">30.2672 -97.7431</pos><radius>35</radius></Circle>"#
    ));
    assert_eq!((g.lat, g.lon, g.radius_m), (30.2672, -97.7431, Some(35.0)));
    let g = geo_of(r#"<Point xmlns="http://www.opengis.net/gml"><pos>1 2</pos></Point>"#);
    assert_eq!((g.lat, g.lon), (1.0, 2.0));
}

#[test]
fn unusual_prefixes_and_mixed_styles_resolve_by_uri() {
    let xml = concat!(
        r#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:ietf:params:xml:ns:pidf:data-model">"#,
        r#"<x:device id="z"><geopriv xmlns="urn:ietf:params:xml:ns:pidf:geopriv10"><location-info>"#,
        r#"<a:civicAddress xmlns:a="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">"#,
        r#"<a:country>US</a:country><A1 xmlns="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">TX</A1>"#,
        r#"</a:civicAddress><g:Point xmlns:g="http://www.opengis.net/gml"><g:pos>1 2</g:pos></g:Point>"#,
        r#"</location-info><method>GPS</method></geopriv><x:timestamp>2025-01-01T00:00:00Z</x:timestamp>"#,
        r#"</x:device></p:presence>"#
    );
    let pidf = parse(xml.as_bytes()).unwrap();
    let loc = pidf.selected();
    assert_eq!(loc.source, Element::Device);
    assert_eq!(loc.id.as_deref(), Some("z"));
    let civic = loc.civic.as_ref().unwrap();
    assert_eq!(
        (civic.get("country"), civic.get("A1")),
        (Some("US"), Some("TX"))
    );
    assert_eq!(loc.geo.as_ref().map(|g| g.lat), Some(1.0));
    assert_eq!(loc.method.as_deref(), Some("GPS"));
    assert_eq!(loc.timestamp.as_deref(), Some("2025-01-01T00:00:00Z"));
}

#[test]
fn method_only_in_the_geopriv_namespace() {
    let xml = device_doc("<gml:Point><gml:pos>1 2</gml:pos></gml:Point>");
    let wrong = xml.replace("<gp:method>GPS</gp:method>", "<method>GPS</method>");
    assert_eq!(
        parse(xml.as_bytes()).unwrap().selected().method.as_deref(),
        Some("GPS")
    );
    assert_eq!(parse(wrong.as_bytes()).unwrap().selected().method, None);
}

#[test]
fn familiar_prefix_bound_to_another_namespace_is_not_matched() {
    // `gml:` here is not GML: the element is foreign, not a point.
    let xml = device_doc(
        r#"<gml:Point xmlns:gml="http://example.com/not-gml"><gml:pos>1 2</gml:pos></gml:Point>"#,
    );
    let e = err_of(&xml);
    assert_eq!(
        e,
        PidfError::UnknownShape("{http://example.com/not-gml}Point".into())
    );
    // A geopriv prefix bound elsewhere hides the whole location.
    let xml = device_doc("").replace(
        "xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\"",
        "xmlns:gp=\"urn:example:gp\"",
    );
    assert_eq!(err_of(&xml), PidfError::NoLocation);
}

#[test]
fn civic_values_are_trimmed_and_extensions_keyed() {
    let li = concat!(
        r#"<ca:civicAddress xml:lang="en-US" xmlns:cae="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr:ext" xmlns:ap="http://example.com/airport/5.0">"#,
        "<ca:country>US</ca:country><ca:A3>\n   Wollongong\n  </ca:A3><ca:A4></ca:A4>",
        "<cae:MP>248</cae:MP><ap:gate>36B</ap:gate><ap:area><ap:zone> G </ap:zone><ap:n>2</ap:n></ap:area>",
        "</ca:civicAddress>"
    );
    let pidf = parse(device_doc(li).as_bytes()).unwrap();
    let civic = pidf.selected().civic.clone().unwrap();
    let got: Vec<(&str, &str)> = civic.iter().collect();
    assert_eq!(
        got,
        [
            ("country", "US"),
            ("A3", "Wollongong"),
            ("cae:MP", "248"),
            ("{http://example.com/airport/5.0}gate", "36B"),
            ("{http://example.com/airport/5.0}area", "G 2"),
        ]
    );
    assert_eq!(civic.lang(), Some("en-US"));
}

/// The RFC 4119 civic namespace is read like RFC 5139's, even when written
/// with surrounding whitespace as in the RFC's own example.
#[test]
fn rfc4119_civic_loc_namespace_is_accepted() {
    for uri in [
        "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc",
        " urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc",
    ] {
        let xml = format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:cl="{uri}"><tuple id="t"><status><gp:geopriv><gp:location-info><cl:civicAddress><cl:country>US</cl:country><cl:A6>Broadway</cl:A6></cl:civicAddress></gp:location-info></gp:geopriv></status></tuple></presence>"#
        );
        let pidf = parse(xml.as_bytes()).unwrap();
        let civic = pidf.selected().civic.as_ref().unwrap();
        assert_eq!(civic.get("A6"), Some("Broadway"), "{uri:?}");
    }
    // A look-alike namespace is still foreign.
    let xml = device_doc(
        r#"<cl:civicAddress xmlns:cl="urn:ietf:params:xml:ns:pidf:geopriv10:civicLocX"><cl:country>US</cl:country></cl:civicAddress>"#,
    );
    assert_eq!(err_of(&xml).kind(), "unknown-shape");
}

#[test]
fn bare_civic_address_document() {
    let xml = "\u{FEFF}<civicAddress xmlns=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\"><country>AU</country></civicAddress>";
    let pidf = parse(xml.as_bytes()).unwrap();
    assert_eq!(pidf.selected().source, Element::Bare);
    assert_eq!(pidf.entity(), None);
    assert_eq!(
        pidf.selected().civic.as_ref().unwrap().get("country"),
        Some("AU")
    );
}

const HOLDERS: &str = concat!(
    r#"<dm:person id="p"><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>P</ca:country></ca:civicAddress></gp:location-info></gp:geopriv></dm:person>"#,
    r#"<tuple id="t"><status><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>T</ca:country></ca:civicAddress></gp:location-info></gp:geopriv></status></tuple>"#,
    r#"<dm:device id="d0"><dm:deviceID>mac:1</dm:deviceID></dm:device>"#,
    r#"<dm:device id="d"><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>D</ca:country></ca:civicAddress></gp:location-info></gp:geopriv></dm:device>"#,
);

fn selected_country(body: &str) -> String {
    let xml = format!("<presence {DECLS}>{body}</presence>");
    let pidf = parse(xml.as_bytes()).unwrap();
    pidf.selected()
        .civic
        .as_ref()
        .and_then(|c| c.get("country"))
        .unwrap()
        .to_owned()
}

#[test]
fn selection_prefers_device_then_tuple_then_person() {
    assert_eq!(selected_country(HOLDERS), "D");
    let no_device = HOLDERS.split("<dm:device").next().unwrap();
    assert_eq!(selected_country(no_device), "T");
    let person_only = no_device.split("<tuple").next().unwrap();
    assert_eq!(selected_country(person_only), "P");
    let xml = format!("<presence {DECLS}>{HOLDERS}</presence>");
    let pidf = parse(xml.as_bytes()).unwrap();
    // The device without geopriv contributes nothing.
    let kinds: Vec<Element> = pidf.locations().iter().map(|l| l.source).collect();
    assert_eq!(kinds, [Element::Person, Element::Tuple, Element::Device]);
    assert_eq!(pidf.selected_index(), 2);
}

#[test]
fn an_unusable_location_is_rejected_and_the_next_one_used() {
    let body = concat!(
        r#"<dm:device id="bad"><gp:geopriv><gp:location-info><gs:Banana/></gp:location-info></gp:geopriv></dm:device>"#,
        r#"<dm:person id="ok"><gp:geopriv><gp:location-info><gml:Point><gml:pos>1 2</gml:pos></gml:Point></gp:location-info></gp:geopriv></dm:person>"#,
    );
    let xml = format!("<presence {DECLS}>{body}</presence>");
    let pidf = parse(xml.as_bytes()).unwrap();
    assert_eq!(pidf.selected().id.as_deref(), Some("ok"));
    let rej = &pidf.rejected()[0];
    assert_eq!(
        (rej.source, rej.id.as_deref()),
        (Element::Device, Some("bad"))
    );
    assert_eq!(rej.error.kind(), "unknown-shape");
    // With nothing usable left, the first rejection is the error.
    let only_bad = body.split("<dm:person").next().unwrap();
    let e = err_of(&format!("<presence {DECLS}>{only_bad}</presence>"));
    assert_eq!(
        e,
        PidfError::UnknownShape("{http://www.opengis.net/pidflo/1.0}Banana".into())
    );
}

#[test]
fn errors_are_values_with_kinds() {
    let cases: &[(&str, &str)] = &[
        (
            r#"<gml:Point><gml:pos>91 0</gml:pos></gml:Point>"#,
            "out-of-range",
        ),
        (
            r#"<gml:Point><gml:pos>0 180.5</gml:pos></gml:Point>"#,
            "out-of-range",
        ),
        (
            r#"<gml:Point><gml:pos>0</gml:pos></gml:Point>"#,
            "invalid-shape",
        ),
        (
            r#"<gml:Point><gml:pos>x y</gml:pos></gml:Point>"#,
            "invalid-shape",
        ),
        (r#"<gml:Point/>"#, "invalid-shape"),
        (r#"<gml:LineString/>"#, "unknown-shape"),
        (
            r#"<ca:civicAddress> <ca:A1>  </ca:A1> </ca:civicAddress>"#,
            "empty-civic",
        ),
        (
            r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>1 2</gml:pos></gml:Point>"#,
            "unsupported-crs",
        ),
        (
            r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9036">3</gs:radius></gs:Circle>"#,
            "unsupported-uom",
        ),
        (
            r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius>-3</gs:radius></gs:Circle>"#,
            "invalid-shape",
        ),
        (
            r#"<gs:Circle><gml:pos>1 2</gml:pos></gs:Circle>"#,
            "invalid-shape",
        ),
        (
            r#"<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>0 0 1 1 0 0</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#,
            "invalid-shape",
        ),
        (
            r#"<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>0 0 1 1 2</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#,
            "invalid-shape",
        ),
        ("", "no-location"),
    ];
    for (li, kind) in cases {
        let e = err_of(&device_doc(li));
        assert_eq!(e.kind(), *kind, "{li}: {e}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(err_of("<html/>").kind(), "not-pidf");
    assert_eq!(
        err_of("<presence xmlns='urn:ietf:params:xml:ns:pidf'/>").kind(),
        "no-location"
    );
    assert_eq!(err_of("<presence").kind(), "not-well-formed");
    assert_eq!(err_of("\u{FEFF}").kind(), "not-well-formed");
    let bad_utf8 = b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>\xff</presence>";
    assert_eq!(parse(bad_utf8).unwrap_err().kind(), "not-well-formed");
}

#[test]
fn usage_rules_confidence_and_dynamic_are_kept() {
    let xml = format!(
        r#"<presence {DECLS} xmlns:gbp="urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy" xmlns:con="urn:ietf:params:xml:ns:geopriv:conf" xmlns:dyn="urn:ietf:params:xml:ns:pidf:geopriv10:dynamic"><tuple id="t"><status><gp:geopriv><gp:location-info><gml:Point><gml:pos>1 2</gml:pos></gml:Point><con:confidence pdf="normal">95</con:confidence><dyn:Dynamic><dyn:speed>12</dyn:speed><dyn:heading>270</dyn:heading></dyn:Dynamic></gp:location-info><gp:usage-rules><gbp:retransmission-allowed> false </gbp:retransmission-allowed><gp:retention-expiry>2003-06-23T04:57:29Z</gp:retention-expiry></gp:usage-rules></gp:geopriv></status></tuple></presence>"#
    );
    let pidf = parse(xml.as_bytes()).unwrap();
    let loc = pidf.selected();
    assert_eq!(loc.confidence, Some(95.0));
    assert_eq!(
        loc.dynamic,
        Some(Dynamic {
            speed_mps: Some(12.0),
            heading_deg: Some(270.0)
        })
    );
    let rules = loc.usage_rules.as_ref().unwrap();
    assert_eq!(rules.retransmission_allowed, Some(false));
    assert_eq!(
        rules.retention_expiry.as_deref(),
        Some("2003-06-23T04:57:29Z")
    );
}

#[test]
fn serialises_to_json() {
    let pidf = parse(
        device_doc(r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius>3</gs:radius></gs:Circle>"#)
            .as_bytes(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::to_value(&pidf).unwrap();
    assert_eq!(v["selected"], 0);
    assert_eq!(v["entity"], "pres:x@example.com");
    let loc = &v["locations"][0];
    assert_eq!(loc["source"], "device");
    assert_eq!(loc["geo"]["shape"]["type"], "circle");
    assert_eq!(loc["geo"]["shape"]["center"]["lat"], 1.0);
    assert_eq!(loc["geo"]["radius_m"], 3.0);
    let e = serde_json::to_value(PidfError::NoLocation).unwrap();
    assert_eq!(e["kind"], "no-location");
    assert_eq!(e["message"], "no location in the document");
}

// Hostile input.

#[test]
fn deep_nesting_stops_at_the_depth_limit() {
    let n = 100_000;
    let xml = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    assert_eq!(err_of(&xml), PidfError::TooDeep { limit: 64 });
    // Just inside the limit it is read (and is simply not PIDF).
    let ok = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
    assert_eq!(err_of(&ok).kind(), "not-pidf");
}

#[test]
fn a_flood_of_elements_stops_at_the_element_limit() {
    let xml = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf'>{}</presence>",
        "<x/>".repeat(200_000)
    );
    assert_eq!(err_of(&xml), PidfError::TooManyElements { limit: 10_000 });
    let huge = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        parse(&huge).unwrap_err(),
        PidfError::TooLarge { limit: 1 << 20 }
    );
}

#[test]
fn entity_expansion_is_never_performed() {
    // "Billion laughs": each level would multiply the text by ten.
    let mut dtd = String::from("<!DOCTYPE presence [<!ENTITY l0 \"lol\">");
    for i in 1..10 {
        let refs = format!("&l{};", i - 1).repeat(10);
        dtd.push_str(&format!("<!ENTITY l{i} \"{refs}\">"));
    }
    dtd.push_str("]>");
    let bomb = format!(
        "{dtd}{}",
        device_doc("<ca:civicAddress><ca:A1>&l9;</ca:A1></ca:civicAddress>")
    );
    let e = err_of(&bomb);
    assert_eq!(e.kind(), "not-well-formed");
    assert!(e.to_string().contains("&l9;"), "{e}");
    // An external entity is not fetched either.
    let xxe = format!(
        "<!DOCTYPE p [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        device_doc("<ca:civicAddress><ca:A1>&x;</ca:A1></ca:civicAddress>")
    );
    assert_eq!(err_of(&xxe).kind(), "not-well-formed");
    // The declarations alone are harmless: the document parses, unexpanded.
    let unused = format!(
        "{dtd}{}",
        device_doc("<ca:civicAddress><ca:A1>NSW</ca:A1></ca:civicAddress>")
    );
    let pidf = parse(unused.as_bytes()).unwrap();
    assert_eq!(
        pidf.selected().civic.as_ref().unwrap().get("A1"),
        Some("NSW")
    );
}

/// A device document whose `id`, `A1` and `RD` are the given bytes, as they
/// arrive in a SIP body (not necessarily UTF-8).
fn civic_bytes(id: &[u8], a1: &[u8], rd: &[u8]) -> Vec<u8> {
    let mut xml = format!(r#"<presence {DECLS}><dm:device id=""#).into_bytes();
    xml.extend_from_slice(id);
    xml.extend_from_slice(
        br#""><gp:geopriv><gp:location-info><ca:civicAddress xml:lang="en-US"><ca:country>US</ca:country><ca:A1>"#,
    );
    xml.extend_from_slice(a1);
    xml.extend_from_slice(b"</ca:A1><ca:RD>");
    xml.extend_from_slice(rd);
    xml.extend_from_slice(
        b"</ca:RD></ca:civicAddress></gp:location-info></gp:geopriv></dm:device></presence>",
    );
    xml
}

/// XML 1.0 allows only tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and
/// U+10000 up (production [2] `Char`), written directly or as a character
/// reference; a document with anything else is not well-formed, so it gives
/// no location. Everything XML allows still reads.
#[test]
fn characters_xml_forbids_make_the_document_not_well_formed() {
    // (what, id, A1, RD, the A1 and RD read, or None for not well-formed)
    type Case = (
        &'static str,
        &'static [u8],
        &'static [u8],
        &'static [u8],
        Option<(&'static str, &'static str)>,
    );
    let cases: &[Case] = &[
        ("NUL in a civic element", b"d", b"NY\0", b"Main", None),
        ("NUL in an attribute", b"d\0", b"NY", b"Main", None),
        ("U+0001 in a civic element", b"d", b"NY", b"Ma\x01in", None),
        ("U+000B in a civic element", b"d", b"NY", b"Ma\x0bin", None),
        ("U+001F in a civic element", b"d", b"NY", b"Main\x1f", None),
        ("U+0001 in an attribute", b"\x01", b"NY", b"Main", None),
        ("U+FFFE", b"d", b"NY", "Main\u{FFFE}".as_bytes(), None),
        ("U+FFFF", b"d", "N\u{FFFF}Y".as_bytes(), b"Main", None),
        (
            "U+FFFE in an attribute",
            "d\u{FFFE}".as_bytes(),
            b"NY",
            b"Main",
            None,
        ),
        ("invalid UTF-8", b"d", b"NY", b"Ma\xffin", None),
        ("truncated UTF-8", b"d", b"NY", b"Main\xc3", None),
        (
            "invalid UTF-8 in an attribute",
            b"d\xfe",
            b"NY",
            b"Main",
            None,
        ),
        (
            "an encoded surrogate",
            b"d",
            b"NY",
            b"Main\xed\xa0\x80",
            None,
        ),
        ("reference to U+0000", b"d", b"NY&#0;", b"Main", None),
        ("reference to U+0001", b"d", b"NY", b"Main&#1;", None),
        ("reference to U+001B", b"d", b"NY", b"Main&#x1b;", None),
        ("reference to U+FFFE", b"d", b"NY", b"Main&#xFFFE;", None),
        ("reference to U+FFFF", b"d", b"NY", b"Main&#65535;", None),
        (
            "reference to a lone surrogate",
            b"d",
            b"NY",
            b"Main&#xD800;",
            None,
        ),
        (
            "reference to U+0001 in an attribute",
            b"d&#x1;",
            b"NY",
            b"Main",
            None,
        ),
        // Allowed.
        ("plain", b"d", b"NY", b"Main", Some(("NY", "Main"))),
        (
            "tab, CR and LF inside",
            b"d\t1",
            b"N\tY",
            b"Main\r\nStreet\rEast",
            Some(("N\tY", "Main\nStreet\nEast")),
        ),
        (
            "non-ASCII letters",
            b"d",
            "Île-de-France".as_bytes(),
            "Münchner Straße 東京 Ωμέγα \u{10348}".as_bytes(),
            Some(("Île-de-France", "Münchner Straße 東京 Ωμέγα \u{10348}")),
        ),
        (
            "the edges of the allowed ranges",
            b"d",
            "\u{20}\u{7f}\u{85}\u{D7FF}".as_bytes(),
            "\u{E000}\u{FFFD}\u{10000}\u{10FFFF}".as_bytes(),
            Some((
                "\u{7f}\u{85}\u{D7FF}",
                "\u{E000}\u{FFFD}\u{10000}\u{10FFFF}",
            )),
        ),
        (
            "allowed references",
            b"d&#9;",
            b"N&#x9;Y",
            b"M&#xE9;&#10;&#x10FFFF;",
            Some(("N\tY", "M\u{e9}\n\u{10FFFF}")),
        ),
    ];
    for (what, id, a1, rd, want) in cases {
        let got = parse(&civic_bytes(id, a1, rd));
        match (want, got) {
            (Some((a1, rd)), Ok(pidf)) => {
                let civic = pidf.selected().civic.as_ref().unwrap();
                assert_eq!(
                    (civic.get("A1"), civic.get("RD")),
                    (Some(*a1), Some(*rd)),
                    "{what}"
                );
            }
            (None, Err(e)) => {
                assert_eq!(e.kind(), "not-well-formed", "{what}: {e}");
            }
            (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
        }
    }
}

/// Forbidden characters are refused wherever they are: in names, in
/// attributes that are never read, in comments and outside the root.
#[test]
fn characters_xml_forbids_are_refused_anywhere_in_the_document() {
    let good = civic_bytes(b"d", b"NY", b"Main");
    assert!(parse(&good).is_ok());
    let text = String::from_utf8(good).unwrap();
    for (what, from, to) in [
        ("in an element name", "<ca:RD>", "<ca:R\u{1}D>"),
        ("in an attribute name", " id=", " i\u{0}d="),
        ("in an unread attribute", " id=", " x=\"\u{1}\" id="),
        (
            "referenced in an unread attribute",
            " id=",
            " x=\"&#1;\" id=",
        ),
        ("in a comment", "<ca:A1>", "<!-- \u{0} --><ca:A1>"),
        ("in CDATA", "<ca:A1>NY", "<ca:A1><![CDATA[N\u{1}]]>NY"),
        ("after the root", "</presence>", "</presence>\u{FFFF}"),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text, "{what}");
        let e = parse(bad.as_bytes()).expect_err(what);
        assert_eq!(e.kind(), "not-well-formed", "{what}: {e}");
    }
    // The message says what and where.
    let e = parse(&civic_bytes(b"d", b"NY\0", b"Main")).unwrap_err();
    assert!(e.to_string().contains("U+0000"), "{e}");
}
