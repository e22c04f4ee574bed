//! The routing rules as a table: each row names the rule it checks, the
//! caller (country, inventory entry, Common Area Phone), the location sent
//! with the call and any change to the shipped country rules, and the
//! decision expected (route, reason, what it rests on, PSAP area, and every
//! target in order). The rules are a pure function; the service areas are
//! the shipped ones.

use std::sync::OnceLock;

use sosrouter::emergency::detect::{CallKind, Countries, CountryRules};
use sosrouter::emergency::location::{Location, LocationSource};
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::rules::{
    decide, CallFacts, PsapTrunks, Reason, RouteKind, RoutedBy, RulesContext,
};
use sosrouter::inventory::{Address, Capabilities, NumberEntry, TenantLocation};
use sosrouter::pidf::{CivicAddress, Geo, Position, Shape};

fn areas() -> &'static ServiceAreas {
    static DATA: OnceLock<ServiceAreas> = OnceLock::new();
    DATA.get_or_init(|| ServiceAreas::embedded().expect("the shipped data loads"))
}

fn countries() -> &'static Countries {
    static C: OnceLock<Countries> = OnceLock::new();
    C.get_or_init(Countries::shipped)
}

type Fields = &'static [(&'static str, &'static str)];

const NY: Fields = &[
    ("country", "US"),
    ("A1", "NY"),
    ("A3", "New York"),
    ("RD", "34th"),
    ("HNO", "20"),
    ("PC", "10001"),
];
const SF: Fields = &[
    ("country", "US"),
    ("A1", "CA"),
    ("A3", "San Francisco"),
    ("PC", "94102"),
];
const CHICAGO: Fields = &[
    ("country", "US"),
    ("A1", "IL"),
    ("A2", "Cook"),
    ("A3", "Chicago"),
    ("RD", "Wacker"),
    ("HNO", "233"),
];
const US_ONLY: Fields = &[("country", "US"), ("RD", "Main"), ("HNO", "1")];
const NO_COUNTRY: Fields = &[
    ("A1", "IL"),
    ("A3", "Chicago"),
    ("RD", "Wacker"),
    ("HNO", "233"),
];
const TORONTO: Fields = &[
    ("country", "CA"),
    ("A1", "ON"),
    ("A3", "Toronto"),
    ("PC", "M5V 3L9"),
];
const LONDON: Fields = &[("country", "GB"), ("A3", "London"), ("PC", "SW1A 2AS")];
const DUBLIN: Fields = &[("country", "IE"), ("A3", "Dublin")];
const PARIS: Fields = &[("country", "FR"), ("A3", "Paris"), ("PC", "75001")];
const MUNICH: Fields = &[("country", "DE"), ("A1", "BY"), ("A3", "München")];
const MADRID: Fields = &[("country", "ES"), ("A3", "Madrid")];
const AMSTERDAM: Fields = &[("country", "NL"), ("A3", "Amsterdam")];
const SYDNEY: Fields = &[("country", "AU"), ("A1", "NSW"), ("A3", "Sydney")];
const WELLINGTON: Fields = &[("country", "NZ"), ("A3", "Wellington")];
const ROME: Fields = &[("country", "IT"), ("A3", "Roma")];
const VIENNA: Fields = &[("country", "AT"), ("A3", "Wien")];
const JUAREZ: Fields = &[("country", "MX"), ("A1", "CHIH"), ("A3", "Ciudad Juárez")];

const DENVER: (f64, f64) = (39.7392, -104.9903);
const AUSTIN: (f64, f64) = (30.2672, -97.7431);
const SAN_JUAN: (f64, f64) = (18.4655, -66.1057);
const MEXICO_CITY: (f64, f64) = (19.4326, -99.1332);
const VANCOUVER: (f64, f64) = (49.2827, -123.1207);
const BERLIN: (f64, f64) = (52.52, 13.405);
const SAN_FRANCISCO: (f64, f64) = (37.7749, -122.4194);
/// A tenant's site in Manhattan, and a point 20 m from it.
const SITE: (f64, f64) = (40.7484, -73.9857);
const NEAR_SITE: (f64, f64) = (40.7485, -73.9859);

fn civic(fields: Fields) -> CivicAddress {
    fields.iter().copied().collect()
}

#[derive(Clone, Copy)]
enum Loc {
    None,
    /// A reference only: nothing usable.
    Reference,
    Civic(Fields, Option<&'static str>),
    Point((f64, f64), Option<&'static str>),
    Circle((f64, f64), f64, Option<&'static str>),
}

impl Loc {
    fn build(self) -> Location {
        let mut l = Location::none();
        let geo = |(lat, lon): (f64, f64), shape: Shape| Geo {
            shape,
            lat,
            lon,
            alt: None,
            radius_m: None,
        };
        match self {
            Loc::None => {}
            Loc::Reference => {
                l.source = LocationSource::Reference;
                l.reference = Some("https://lis.example.com/l/1".into());
            }
            Loc::Civic(fields, method) => {
                l.source = LocationSource::PidfCivic;
                l.civic = Some(civic(fields));
                l.method = method.map(str::to_string);
            }
            Loc::Point(p, method) => {
                l.source = LocationSource::PidfGeo;
                let pos = Position {
                    lat: p.0,
                    lon: p.1,
                    alt: None,
                };
                l.geo = Some(geo(p, Shape::Point { pos }));
                l.method = method.map(str::to_string);
            }
            Loc::Circle(p, r, method) => {
                l.source = LocationSource::PidfGeo;
                let center = Position {
                    lat: p.0,
                    lon: p.1,
                    alt: None,
                };
                let mut g = geo(
                    p,
                    Shape::Circle {
                        center,
                        radius_m: r,
                    },
                );
                g.radius_m = Some(r);
                l.geo = Some(g);
                l.method = method.map(str::to_string);
            }
        }
        l
    }
}

#[derive(Clone, Copy)]
enum Tweak {
    None,
    NoScreening,
    NoScreeningNoLastResort,
    NoTestTrunk,
    /// Only these PSAP ids have a trunk.
    PsapTrunks(&'static [(&'static str, &'static str)]),
}

struct Case {
    rule: &'static str,
    country: &'static str,
    kind: CallKind,
    /// The service the call asks for.
    service: &'static str,
    /// The number is in the inventory.
    known: bool,
    cap: bool,
    registered: Option<Fields>,
    /// The tenant defined a location with this address and point.
    tenant_site: Option<(Fields, (f64, f64))>,
    location: Loc,
    tweak: Tweak,
    route: RouteKind,
    reason: Reason,
    routed_by: RoutedBy,
    area: Option<&'static str>,
    targets: &'static [&'static str],
}

/// A known US caller registered in New York, calling 911 without location.
fn us(rule: &'static str) -> Case {
    Case {
        rule,
        country: "US",
        kind: CallKind::Emergency,
        service: "urn:service:sos",
        known: true,
        cap: false,
        registered: Some(NY),
        tenant_site: None,
        location: Loc::None,
        tweak: Tweak::None,
        route: RouteKind::Screening,
        reason: Reason::ScreeningNoLocation,
        routed_by: RoutedBy::Registered,
        area: None,
        targets: &[],
    }
}

fn caller(rule: &'static str, country: &'static str, registered: Fields) -> Case {
    Case {
        country,
        registered: Some(registered),
        ..us(rule)
    }
}

impl Case {
    fn loc(mut self, l: Loc) -> Self {
        self.location = l;
        self
    }
    fn cap(mut self) -> Self {
        self.cap = true;
        self
    }
    fn test(mut self) -> Self {
        self.kind = CallKind::Test;
        self
    }
    fn service(mut self, s: &'static str) -> Self {
        self.service = s;
        self
    }
    fn unregistered(mut self) -> Self {
        self.registered = None;
        self
    }
    fn unknown(mut self) -> Self {
        self.known = false;
        self
    }
    fn site(mut self, fields: Fields, point: (f64, f64)) -> Self {
        self.tenant_site = Some((fields, point));
        self
    }
    fn tweak(mut self, t: Tweak) -> Self {
        self.tweak = t;
        self
    }
    fn expect(
        mut self,
        route: RouteKind,
        reason: Reason,
        routed_by: RoutedBy,
        area: Option<&'static str>,
        targets: &'static [&'static str],
    ) -> Self {
        (
            self.route,
            self.reason,
            self.routed_by,
            self.area,
            self.targets,
        ) = (route, reason, routed_by, area, targets);
        self
    }
}

use Reason as R;
use RouteKind as K;
use RoutedBy as B;

const TRUSTED_US: [&str; 10] = [
    "LIS",
    "ASSIST",
    "GPS",
    "A-GPS",
    "Cell",
    "DHCP",
    "LLDP-MED",
    "Wiremap",
    "802.11",
    "Triangulation",
];

fn table() -> Vec<Case> {
    let dyn_denver: &'static [&'static str] =
        &["SYN-US-08031", "screening", "SYN-US-36061", "last-resort"];
    let screened: &'static [&'static str] = &["screening", "SYN-US-36061", "last-resort"];
    let mut cases = vec![
        // Test calls.
        us("test number: to the test trunk, never a PSAP")
            .test()
            .loc(Loc::Civic(CHICAGO, Some("Manual")))
            .expect(K::Test, R::TestCall, B::Dynamic, None, &["test"]),
        us("test call without location rests on the registered address")
            .test()
            .expect(K::Test, R::TestCall, B::Registered, None, &["test"]),
        us("test call with a trusted location still goes to the test trunk")
            .test()
            .loc(Loc::Point(DENVER, Some("GPS")))
            .expect(K::Test, R::TestCall, B::Dynamic, None, &["test"]),
        us("test call without a test trunk has no target at all")
            .test()
            .tweak(Tweak::NoTestTrunk)
            .expect(K::Test, R::TestCall, B::Registered, None, &[]),
        caller("test call from a caller of unknown country", "", ROME)
            .unknown()
            .unregistered()
            .test()
            .expect(K::Test, R::TestCall, B::None, None, &["test"]),
        // US: trusted dynamic location inside the country.
        us("trusted GPS point routes to the PSAP serving it")
            .loc(Loc::Point(DENVER, Some("GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-08031"),
                dyn_denver,
            ),
        us("trusted Cell circle routes by its centre")
            .loc(Loc::Circle(AUSTIN, 35.0, Some("Cell")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-48453"),
                &["SYN-US-48453", "screening", "SYN-US-36061", "last-resort"],
            ),
        us("trusted DHCP civic address routes by county")
            .loc(Loc::Civic(CHICAGO, Some("DHCP")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-17031"),
                &["SYN-US-17031", "screening", "SYN-US-36061", "last-resort"],
            ),
        us("trusted method compared without regard to case")
            .loc(Loc::Point(DENVER, Some("  gps ")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-08031"),
                dyn_denver,
            ),
        us("trusted location in the registered county: the PSAP appears once")
            .loc(Loc::Civic(NY, Some("LIS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-36061"),
                &["SYN-US-36061", "screening", "last-resort"],
            ),
        us("trusted location in a US territory is inside the US")
            .loc(Loc::Point(SAN_JUAN, Some("A-GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-72127"),
                &["SYN-US-72127", "screening", "SYN-US-36061", "last-resort"],
            ),
        // US: untrusted, outside, or no location.
        us("Manual method is screened with the registered address")
            .loc(Loc::Civic(CHICAGO, Some("Manual")))
            .expect(
                K::Screening,
                R::ScreeningUntrustedLocation,
                B::Registered,
                None,
                screened,
            ),
        us("CLS (found by the device, not confirmed) is screened")
            .loc(Loc::Point(DENVER, Some("CLS")))
            .expect(
                K::Screening,
                R::ScreeningUntrustedLocation,
                B::Registered,
                None,
                screened,
            ),
        us("Registered method is screened")
            .loc(Loc::Civic(CHICAGO, Some("Registered")))
            .expect(
                K::Screening,
                R::ScreeningUntrustedLocation,
                B::Registered,
                None,
                screened,
            ),
        us("no method is screened")
            .loc(Loc::Point(DENVER, None))
            .expect(
                K::Screening,
                R::ScreeningUntrustedLocation,
                B::Registered,
                None,
                screened,
            ),
        us("location outside the country is screened, even from GPS")
            .loc(Loc::Point(MEXICO_CITY, Some("GPS")))
            .expect(
                K::Screening,
                R::ScreeningLocationOutsideCountry,
                B::Registered,
                None,
                screened,
            ),
        us("civic location in another country is screened")
            .loc(Loc::Civic(JUAREZ, Some("GPS")))
            .expect(
                K::Screening,
                R::ScreeningLocationOutsideCountry,
                B::Registered,
                None,
                screened,
            ),
        us("a civic location without a country is not known to be inside")
            .loc(Loc::Civic(NO_COUNTRY, Some("DHCP")))
            .expect(
                K::Screening,
                R::ScreeningLocationOutsideCountry,
                B::Registered,
                None,
                screened,
            ),
        us("no location: screened with the registered address").expect(
            K::Screening,
            R::ScreeningNoLocation,
            B::Registered,
            None,
            screened,
        ),
        us("a location by reference only counts as no location")
            .loc(Loc::Reference)
            .expect(
                K::Screening,
                R::ScreeningNoLocation,
                B::Registered,
                None,
                screened,
            ),
        us("unknown caller without location: screening, then last resort")
            .unknown()
            .unregistered()
            .expect(
                K::Screening,
                R::ScreeningNoLocation,
                B::None,
                None,
                &["screening", "last-resort"],
            ),
        us("unknown caller with a trusted location routes directly")
            .unknown()
            .unregistered()
            .loc(Loc::Point(DENVER, Some("GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-08031"),
                &["SYN-US-08031", "screening", "last-resort"],
            ),
        // US: tenant-defined locations.
        us("a Manual civic location matching a tenant location is trusted")
            .site(NY, SITE)
            .loc(Loc::Civic(NY, Some("Manual")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-36061"),
                &["SYN-US-36061", "screening", "last-resort"],
            ),
        us("a point within the tenant site's radius is trusted")
            .site(NY, SITE)
            .loc(Loc::Point(NEAR_SITE, None))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-36061"),
                &["SYN-US-36061", "screening", "last-resort"],
            ),
        us("a location elsewhere than the tenant's sites stays untrusted")
            .site(NY, SITE)
            .loc(Loc::Civic(CHICAGO, Some("Manual")))
            .expect(
                K::Screening,
                R::ScreeningUntrustedLocation,
                B::Registered,
                None,
                screened,
            ),
        // US: Common Area Phones.
        us("Common Area Phone without location: PSAP of its registered address")
            .cap()
            .expect(
                K::Psap,
                R::CommonAreaPhone,
                B::Registered,
                Some("US-36061"),
                &["SYN-US-36061", "screening", "last-resort"],
            ),
        caller(
            "Common Area Phone with an untrusted location: registered address",
            "US",
            SF,
        )
        .cap()
        .loc(Loc::Civic(CHICAGO, Some("Manual")))
        .expect(
            K::Psap,
            R::CommonAreaPhone,
            B::Registered,
            Some("US-06075"),
            &["SYN-US-06075", "screening", "last-resort"],
        ),
        caller(
            "Common Area Phone with a location abroad: registered address",
            "US",
            SF,
        )
        .cap()
        .loc(Loc::Point(MEXICO_CITY, Some("GPS")))
        .expect(
            K::Psap,
            R::CommonAreaPhone,
            B::Registered,
            Some("US-06075"),
            &["SYN-US-06075", "screening", "last-resort"],
        ),
        caller(
            "Common Area Phone with a trusted location: the location first",
            "US",
            SF,
        )
        .cap()
        .loc(Loc::Point(DENVER, Some("GPS")))
        .expect(
            K::Psap,
            R::DynamicLocation,
            B::Dynamic,
            Some("US-08031"),
            &["SYN-US-08031", "screening", "SYN-US-06075", "last-resort"],
        ),
        us("Common Area Phone without a registered address is screened")
            .cap()
            .unregistered()
            .expect(
                K::Screening,
                R::ScreeningNoLocation,
                B::None,
                None,
                &["screening", "last-resort"],
            ),
        // US: missing PSAPs and trunks fall through.
        us("trusted location whose PSAP has no trunk: screened")
            .loc(Loc::Point(DENVER, Some("GPS")))
            .tweak(Tweak::PsapTrunks(&[("SYN-US-36*", "psap")]))
            .expect(
                K::Screening,
                R::ScreeningNoPsap,
                B::Registered,
                None,
                screened,
            ),
        us("trusted location known only to the country: no US country default")
            .loc(Loc::Civic(US_ONLY, Some("LIS")))
            .expect(
                K::Screening,
                R::ScreeningNoPsap,
                B::Registered,
                None,
                screened,
            ),
        us("no screening center: the registered address's PSAP comes first")
            .loc(Loc::Civic(CHICAGO, Some("Manual")))
            .tweak(Tweak::NoScreening)
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("US-36061"),
                &["SYN-US-36061", "last-resort"],
            ),
        us("no screening center and nothing known: last resort")
            .unknown()
            .unregistered()
            .tweak(Tweak::NoScreening)
            .expect(
                K::LastResort,
                R::LastResort,
                B::None,
                None,
                &["last-resort"],
            ),
        us("no trunk at all: last resort without a target")
            .unknown()
            .unregistered()
            .tweak(Tweak::NoScreeningNoLastResort)
            .expect(K::LastResort, R::LastResort, B::None, None, &[]),
        // Canada: every call screened; a trusted location's PSAP is a fallback.
        caller("Canada screens an untrusted location", "CA", TORONTO)
            .loc(Loc::Civic(TORONTO, Some("Manual")))
            .expect(
                K::Screening,
                R::ScreeningCountryPolicy,
                B::Registered,
                None,
                &["screening", "SYN-CA-ON", "last-resort"],
            ),
        caller(
            "Canada screens a trusted location too, then its PSAP",
            "CA",
            TORONTO,
        )
        .loc(Loc::Point(VANCOUVER, Some("GPS")))
        .expect(
            K::Screening,
            R::ScreeningCountryPolicy,
            B::Registered,
            None,
            &["screening", "SYN-CA-BC", "SYN-CA-ON", "last-resort"],
        ),
        caller("Canada screens Common Area Phones", "CA", TORONTO)
            .cap()
            .expect(
                K::Screening,
                R::ScreeningCountryPolicy,
                B::Registered,
                None,
                &["screening", "SYN-CA-ON", "last-resort"],
            ),
        // United Kingdom and Ireland: screened.
        caller("UK screens every call", "GB", LONDON)
            .loc(Loc::Civic(LONDON, Some("Manual")))
            .expect(
                K::Screening,
                R::ScreeningCountryPolicy,
                B::Registered,
                None,
                &["screening", "SYN-GB", "last-resort"],
            ),
        caller("Ireland screens every call", "IE", DUBLIN).expect(
            K::Screening,
            R::ScreeningCountryPolicy,
            B::Registered,
            None,
            &["screening", "SYN-IE", "last-resort"],
        ),
        caller(
            "UK without a registered address: screened, then last resort",
            "GB",
            LONDON,
        )
        .unregistered()
        .expect(
            K::Screening,
            R::ScreeningCountryPolicy,
            B::None,
            None,
            &["screening", "last-resort"],
        ),
        // Elsewhere: the registered address.
        caller("Germany routes by the registered address", "DE", MUNICH)
            .loc(Loc::Civic(MUNICH, Some("Manual")))
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("DE"),
                &["SYN-DE", "screening", "last-resort"],
            ),
        caller("Germany ignores a trusted dynamic location", "DE", MUNICH)
            .loc(Loc::Point(BERLIN, Some("GPS")))
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("DE"),
                &["SYN-DE", "screening", "last-resort"],
            ),
        caller("France routes by the registered address", "FR", PARIS).expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("FR"),
            &["SYN-FR", "screening", "last-resort"],
        ),
        caller("Spain routes by the registered address", "ES", MADRID).expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("ES"),
            &["SYN-ES", "screening", "last-resort"],
        ),
        caller(
            "Netherlands routes by the registered address",
            "NL",
            AMSTERDAM,
        )
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("NL"),
            &["SYN-NL", "screening", "last-resort"],
        ),
        caller("Australia routes by the registered address", "AU", SYDNEY).expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("AU"),
            &["SYN-AU", "screening", "last-resort"],
        ),
        caller(
            "New Zealand routes by the registered address",
            "NZ",
            WELLINGTON,
        )
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("NZ"),
            &["SYN-NZ", "screening", "last-resort"],
        ),
        caller(
            "a Common Area Phone elsewhere: the registered address",
            "FR",
            PARIS,
        )
        .cap()
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("FR"),
            &["SYN-FR", "screening", "last-resort"],
        ),
        caller(
            "elsewhere without a registered address: the screening center",
            "DE",
            MUNICH,
        )
        .unregistered()
        .loc(Loc::Point(BERLIN, Some("GPS")))
        .expect(
            K::Screening,
            R::ScreeningNoLocation,
            B::None,
            None,
            &["screening", "last-resort"],
        ),
        caller(
            "elsewhere, no address and no screening: the country default",
            "DE",
            MUNICH,
        )
        .unregistered()
        .tweak(Tweak::NoScreening)
        .expect(
            K::Psap,
            R::CountryDefault,
            B::None,
            Some("DE"),
            &["SYN-DE", "last-resort"],
        ),
        caller(
            "elsewhere, an address whose PSAP has no trunk: screened",
            "DE",
            MUNICH,
        )
        .tweak(Tweak::PsapTrunks(&[("SYN-US-*", "psap")]))
        .expect(
            K::Screening,
            R::ScreeningNoPsap,
            B::Registered,
            None,
            &["screening", "last-resort"],
        ),
        // The default rules: a country not listed, or no country at all.
        caller(
            "an unlisted country routes by the registered address",
            "",
            ROME,
        )
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("IT"),
            &["SYN-IT", "screening", "last-resort"],
        ),
        caller(
            "no country, no address: the default screening route",
            "",
            ROME,
        )
        .unknown()
        .unregistered()
        .loc(Loc::Point(DENVER, Some("GPS")))
        .expect(
            K::Screening,
            R::ScreeningNoLocation,
            B::None,
            None,
            &["screening", "last-resort"],
        ),
        // The service the call asks for picks among the PSAPs of the place.
        caller(
            "a police call reaches the police PSAP of the place",
            "DE",
            MUNICH,
        )
        .service("urn:service:sos.police")
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("DE"),
            &["SYN-DE-POLICE", "SYN-DE", "screening", "last-resort"],
        ),
        caller(
            "a service without a PSAP of its own reaches the general PSAP",
            "DE",
            MUNICH,
        )
        .service("urn:service:sos.fire")
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("DE"),
            &["SYN-DE", "screening", "last-resort"],
        ),
        caller(
            "a sub-service below one with a PSAP reaches that PSAP",
            "DE",
            MUNICH,
        )
        .service("urn:service:sos.police.highway")
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("DE"),
            &["SYN-DE-POLICE", "SYN-DE", "screening", "last-resort"],
        ),
        caller("Austria: fire", "AT", VIENNA)
            .service("urn:service:sos.fire")
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("AT"),
                &["SYN-AT-FIRE", "SYN-AT", "screening", "last-resort"],
            ),
        caller("Austria: gas has no PSAP of its own", "AT", VIENNA)
            .service("urn:service:sos.gas")
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("AT"),
                &["SYN-AT", "screening", "last-resort"],
            ),
        caller("Italy: police", "IT", ROME)
            .service("urn:service:sos.police")
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("IT"),
                &["SYN-IT-POLICE", "SYN-IT", "screening", "last-resort"],
            ),
        caller("France: SAMU", "FR", PARIS)
            .service("urn:service:sos.ambulance")
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("FR"),
                &["SYN-FR-AMBULANCE", "SYN-FR", "screening", "last-resort"],
            ),
        caller("Spain: police", "ES", MADRID)
            .service("urn:service:sos.police")
            .expect(
                K::Psap,
                R::RegisteredAddress,
                B::Registered,
                Some("ES"),
                &["SYN-ES-POLICE", "SYN-ES", "screening", "last-resort"],
            ),
        caller(
            "a police call in a country without a police PSAP",
            "NL",
            AMSTERDAM,
        )
        .service("urn:service:sos.police")
        .expect(
            K::Psap,
            R::RegisteredAddress,
            B::Registered,
            Some("NL"),
            &["SYN-NL", "screening", "last-resort"],
        ),
        caller(
            "no screening trunk: the country's default PSAP of the service",
            "FR",
            PARIS,
        )
        .unregistered()
        .service("urn:service:sos.fire")
        .tweak(Tweak::NoScreening)
        .expect(
            K::Psap,
            R::CountryDefault,
            B::None,
            Some("FR"),
            &["SYN-FR-FIRE", "SYN-FR", "last-resort"],
        ),
        us("US: a trusted location in a county with a police PSAP")
            .service("urn:service:sos.police")
            .loc(Loc::Point(SAN_FRANCISCO, Some("GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-06075"),
                &[
                    "SYN-US-06075-POLICE",
                    "SYN-US-06075",
                    "screening",
                    "SYN-US-36061",
                    "last-resort",
                ],
            ),
        caller(
            "US: a screened police call, then the police PSAP of the address, then the county's",
            "US",
            SF,
        )
        .service("urn:service:sos.police")
        .expect(
            K::Screening,
            R::ScreeningNoLocation,
            B::Registered,
            None,
            &[
                "screening",
                "SYN-US-06075-POLICE",
                "SYN-US-06075",
                "last-resort",
            ],
        ),
        caller("US: a Common Area Phone's police call", "US", SF)
            .cap()
            .service("urn:service:sos.police")
            .expect(
                K::Psap,
                R::CommonAreaPhone,
                B::Registered,
                Some("US-06075"),
                &[
                    "SYN-US-06075-POLICE",
                    "SYN-US-06075",
                    "screening",
                    "last-resort",
                ],
            ),
        us("US: a police call where the county has only its general PSAP")
            .service("urn:service:sos.police")
            .loc(Loc::Point(DENVER, Some("GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-08031"),
                dyn_denver,
            ),
        us("US: a 911 call in a county with a police PSAP")
            .loc(Loc::Point(SAN_FRANCISCO, Some("GPS")))
            .expect(
                K::Psap,
                R::DynamicLocation,
                B::Dynamic,
                Some("US-06075"),
                &["SYN-US-06075", "screening", "SYN-US-36061", "last-resort"],
            ),
        us("US: a test call for a service never reaches a PSAP")
            .test()
            .service("urn:service:test.sos.police")
            .loc(Loc::Point(SAN_FRANCISCO, Some("GPS")))
            .expect(K::Test, R::TestCall, B::Dynamic, None, &["test"]),
    ];
    // Every US-trusted method routes directly.
    for m in TRUSTED_US {
        cases.push(
            us("each US-trusted method routes directly")
                .loc(Loc::Point(DENVER, Some(m)))
                .expect(
                    K::Psap,
                    R::DynamicLocation,
                    B::Dynamic,
                    Some("US-08031"),
                    dyn_denver,
                ),
        );
    }
    cases
}

fn rules_for(case: &Case) -> CountryRules {
    let mut rules = if case.country.is_empty() {
        countries().default_rules().clone()
    } else {
        countries()
            .get(case.country)
            .unwrap_or_else(|| panic!("{}: no rules for {}", case.rule, case.country))
            .clone()
    };
    match case.tweak {
        Tweak::NoScreening => rules.screening_trunk = None,
        Tweak::NoScreeningNoLastResort => {
            rules.screening_trunk = None;
            rules.last_resort_trunk = None;
        }
        Tweak::NoTestTrunk => rules.test_trunk = None,
        Tweak::None | Tweak::PsapTrunks(_) => {}
    }
    rules
}

#[test]
fn rules_table() {
    let cases = table();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let rules = rules_for(case);
        let trunks = match case.tweak {
            Tweak::PsapTrunks(p) => PsapTrunks::new(p.iter().copied()).unwrap(),
            _ => PsapTrunks::new([("*", "psap")]).unwrap(),
        };
        let entry = NumberEntry {
            number: "+12125550142".into(),
            tenant: "acme".into(),
            country: case.country.into(),
            common_area_phone: case.cap,
            capabilities: Capabilities::default(),
            location_id: None,
            registered: case.registered.map(|f| Address {
                civic: civic(f),
                point: None,
            }),
        };
        let sites: Vec<TenantLocation> = case
            .tenant_site
            .iter()
            .map(|(f, p)| TenantLocation {
                id: "site-1".into(),
                address: Address {
                    civic: civic(f),
                    point: Some(*p),
                },
            })
            .collect();
        let location = case.location.build();
        let facts = CallFacts {
            kind: case.kind,
            service: case.service,
            entry: case.known.then_some(&entry),
            tenant_locations: &sites,
            location: &location,
        };
        let ctx = RulesContext {
            rules: &rules,
            areas: areas(),
            psap_trunks: &trunks,
        };
        let d = decide(&facts, &ctx);
        let got = (
            d.route,
            d.reason,
            d.routed_by,
            d.psap.as_ref().map(|p| p.area.as_str()),
            d.targets
                .iter()
                .map(|t| t.label.as_str())
                .collect::<Vec<_>>(),
        );
        let want = (
            case.route,
            case.reason,
            case.routed_by,
            case.area,
            case.targets.to_vec(),
        );
        if got != want {
            failures.push(format!(
                "{} [{} {:?}]\n   got {got:?}\n  want {want:?}",
                case.rule,
                case.country,
                case.location.describe()
            ));
            continue;
        }
        // Every PSAP target names its PSAP's URI for the Route header; the
        // others name none.
        for t in &d.targets {
            let is_psap = t.label.starts_with("SYN-");
            assert_eq!(t.route.is_some(), is_psap, "{}: {t:?}", case.rule);
            if let Some(uri) = &t.route {
                assert_eq!(t.trunk, "psap", "{}", case.rule);
                assert!(uri.starts_with("sip:"), "{}: {uri}", case.rule);
            }
        }
        if let Some(p) = &d.psap {
            assert_eq!(d.targets[0].label, p.id, "{}", case.rule);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

impl Loc {
    fn describe(self) -> String {
        match self {
            Loc::None => "no location".into(),
            Loc::Reference => "reference".into(),
            Loc::Civic(f, m) => format!("civic {:?} {m:?}", f.first()),
            Loc::Point(p, m) => format!("point {p:?} {m:?}"),
            Loc::Circle(p, r, m) => format!("circle {p:?} {r} {m:?}"),
        }
    }
}

#[test]
fn tenant_location_trust_is_reported() {
    let rules = countries().get("US").unwrap().clone();
    let trunks = PsapTrunks::new([("*", "psap")]).unwrap();
    let sites = vec![TenantLocation {
        id: "hq-34".into(),
        address: Address {
            civic: civic(NY),
            point: Some(SITE),
        },
    }];
    let location = Loc::Civic(NY, Some("Manual")).build();
    let facts = CallFacts {
        kind: CallKind::Emergency,
        service: "urn:service:sos",
        entry: None,
        tenant_locations: &sites,
        location: &location,
    };
    let ctx = RulesContext {
        rules: &rules,
        areas: areas(),
        psap_trunks: &trunks,
    };
    match decide(&facts, &ctx).dynamic {
        sosrouter::emergency::rules::DynamicUse::Trusted { basis, psap } => {
            assert_eq!(basis, "tenant-location:hq-34");
            assert_eq!(psap.map(|p| p.area).as_deref(), Some("US-36061"));
        }
        other => panic!("{other:?}"),
    }
}

/// Each country's numbers, through detection (the Request-URI, the
/// caller's country) to the service URN, and through the rules to the PSAP
/// that a caller registered in that country reaches first.
#[test]
fn numbers_to_services_to_psaps() {
    const SOS: &str = "urn:service:sos";
    const POLICE: &str = "urn:service:sos.police";
    const FIRE: &str = "urn:service:sos.fire";
    const AMBULANCE: &str = "urn:service:sos.ambulance";
    const MARINE: &str = "urn:service:sos.marine";
    const OSLO: Fields = &[("country", "NO"), ("A3", "Oslo")];
    const BRASILIA: Fields = &[("country", "BR"), ("A3", "Brasília")];
    // Country of the caller ("" for unknown), Request-URI, the service
    // expected, the registered address, the first PSAP.
    let rows: &[(&str, &str, &str, Fields, &str)] = &[
        // Germany: 110 police, 112 fire and ambulance, from the same place.
        (
            "DE",
            "sip:110@h;user=phone",
            POLICE,
            MUNICH,
            "SYN-DE-POLICE",
        ),
        ("DE", "sip:112@h;user=phone", SOS, MUNICH, "SYN-DE"),
        ("DE", "tel:+49110", POLICE, MUNICH, "SYN-DE-POLICE"),
        (
            "DE",
            "sip:49110@h;user=phone",
            POLICE,
            MUNICH,
            "SYN-DE-POLICE",
        ),
        ("DE", "tel:911", SOS, MUNICH, "SYN-DE"),
        // Austria.
        ("AT", "tel:112", SOS, VIENNA, "SYN-AT"),
        ("AT", "tel:122", FIRE, VIENNA, "SYN-AT-FIRE"),
        ("AT", "tel:128", "urn:service:sos.gas", VIENNA, "SYN-AT"),
        ("AT", "tel:133", POLICE, VIENNA, "SYN-AT-POLICE"),
        (
            "AT",
            "tel:140",
            "urn:service:sos.mountain",
            VIENNA,
            "SYN-AT-MOUNTAIN",
        ),
        ("AT", "tel:144", AMBULANCE, VIENNA, "SYN-AT-AMBULANCE"),
        // Italy.
        ("IT", "tel:112", SOS, ROME, "SYN-IT"),
        ("IT", "tel:113", POLICE, ROME, "SYN-IT-POLICE"),
        ("IT", "tel:115", FIRE, ROME, "SYN-IT-FIRE"),
        ("IT", "tel:118", AMBULANCE, ROME, "SYN-IT-AMBULANCE"),
        ("IT", "tel:1530", MARINE, ROME, "SYN-IT-MARINE"),
        // Spain: three police numbers, two fire numbers.
        ("ES", "tel:112", SOS, MADRID, "SYN-ES"),
        ("ES", "tel:091", POLICE, MADRID, "SYN-ES-POLICE"),
        ("ES", "tel:092", POLICE, MADRID, "SYN-ES-POLICE"),
        ("ES", "tel:062", POLICE, MADRID, "SYN-ES-POLICE"),
        ("ES", "tel:080", FIRE, MADRID, "SYN-ES-FIRE"),
        ("ES", "tel:085", FIRE, MADRID, "SYN-ES-FIRE"),
        ("ES", "tel:061", AMBULANCE, MADRID, "SYN-ES-AMBULANCE"),
        // France: 114 (text relay) dispatches to all services.
        ("FR", "tel:112", SOS, PARIS, "SYN-FR"),
        ("FR", "tel:15", AMBULANCE, PARIS, "SYN-FR-AMBULANCE"),
        ("FR", "tel:17", POLICE, PARIS, "SYN-FR-POLICE"),
        ("FR", "tel:18", FIRE, PARIS, "SYN-FR-FIRE"),
        ("FR", "tel:114", SOS, PARIS, "SYN-FR"),
        ("FR", "tel:196", MARINE, PARIS, "SYN-FR-MARINE"),
        // A dialed service URN keeps its URN.
        (
            "DE",
            "urn:service:sos.police",
            POLICE,
            MUNICH,
            "SYN-DE-POLICE",
        ),
        ("DE", "URN:Service:SOS.Fire", FIRE, MUNICH, "SYN-DE"),
        (
            "FR",
            "urn:service:sos.marine",
            MARINE,
            PARIS,
            "SYN-FR-MARINE",
        ),
        (
            "AT",
            "urn:service:sos.animal-control",
            "urn:service:sos.animal-control",
            VIENNA,
            "SYN-AT",
        ),
        ("US", "urn:service:sos.police", POLICE, NY, "screening"),
        // Numbers whose service has no PSAP of its own in the data.
        ("NO", "tel:112", SOS, OSLO, "SYN-NO"),
        ("NO", "tel:110", FIRE, OSLO, "SYN-NO"),
        ("BR", "tel:190", POLICE, BRASILIA, "SYN-BR"),
        // 112 and 911 are the service as a whole for everyone (a US caller
        // without a location is screened first).
        ("US", "tel:911", SOS, NY, "screening"),
        ("US", "tel:112", SOS, NY, "screening"),
        // A caller of unknown country: a number every country listing it
        // gives one service keeps it; otherwise urn:service:sos (110 is
        // police in Germany and Japan, fire in Norway).
        ("", "tel:1530", MARINE, ROME, "SYN-IT-MARINE"),
        ("", "tel:110", SOS, MUNICH, "SYN-DE"),
        ("", "tel:133", POLICE, VIENNA, "SYN-AT-POLICE"),
    ];
    let trunks = PsapTrunks::new([("*", "psap")]).unwrap();
    let limits = sosrouter::sip::Limits::default();
    let mut failures = Vec::new();
    for &(country, ruri, service, registered, psap) in rows {
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:x@example.net>\r\nFrom: <sip:caller@example.com>;tag=1\r\nCall-ID: s1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = sosrouter::sip::parse_datagram(bytes::Bytes::from(text), &limits).unwrap();
        let caller_country = (!country.is_empty()).then_some(country);
        let detected = countries()
            .dialed(&msg, &[])
            .and_then(|d| countries().classify(&d, caller_country));
        let Some(detected) = detected else {
            failures.push(format!("{country} {ruri}: not an emergency call"));
            continue;
        };
        let rules = countries().rules_for(caller_country);
        let entry = NumberEntry {
            number: "+4989555010".into(),
            tenant: "acme".into(),
            country: country.into(),
            common_area_phone: false,
            capabilities: Capabilities::default(),
            location_id: None,
            registered: Some(Address {
                civic: civic(registered),
                point: None,
            }),
        };
        let location = Location::none();
        let facts = CallFacts {
            kind: detected.kind,
            service: &detected.service,
            entry: Some(&entry),
            tenant_locations: &[],
            location: &location,
        };
        let ctx = RulesContext {
            rules,
            areas: areas(),
            psap_trunks: &trunks,
        };
        let d = decide(&facts, &ctx);
        let got = (
            detected.kind,
            &*detected.service,
            d.targets.first().map(|t| t.label.as_str()),
        );
        let want = (CallKind::Emergency, service, Some(psap));
        if got != want {
            failures.push(format!("{country} {ruri}\n   got {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
