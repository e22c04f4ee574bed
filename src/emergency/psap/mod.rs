//! PSAP service areas and lookup: which Public Safety Answering Point serves
//! a caller's location, given as a point (latitude, longitude) or as a civic
//! address (country, state, county, city, postal code).
//!
//! The data lives in `data/` and is compiled into the binary
//! ([`ServiceAreas::embedded`]), so the router runs with no files; an
//! operator can point [`ServiceAreas::load`] at a directory holding its own
//! `psaps.json` (and, if it likes, its own copies of the other files).
//!
//! - **Service areas**: the 3,231 US counties and county equivalents (Census
//!   2017) and the 13 Canadian provinces and territories, each a polygon with
//!   an id (`US-06075`, `CA-ON`).
//! - **Country outlines**: every country, keyed by ISO 3166-1 alpha-2.
//! - **Gazetteer**: US ZIP code → county, and (state, city) → county.
//! - **PSAP records**: one per area, US state (`US-CA`) and country (`DE`).
//!   The shipped records are synthetic placeholders (`.example` URIs).
//!
//! Every lookup returns a [`Match`] that says how the location was found
//! ([`MatchKind`]), which area it found, and the PSAP that serves that area.
//! An area without a PSAP record of its own is served by its state default,
//! else by its country default. No input makes a lookup panic: coordinates
//! that are not finite or out of range, and empty strings, find nothing.
//!
//! Each PSAP record serves one emergency service (`service_urn`, by default
//! `urn:service:sos`). A lookup for a service (the `_for` forms) takes the
//! PSAP of that service for the location at any level (area, state,
//! country) before it falls back to the parent service
//! (`urn:service:sos.police`, then `urn:service:sos`), and so on: a police
//! call goes to the police PSAP of the country rather than to the general
//! PSAP of the county, and to the county's general PSAP only where no
//! police PSAP covers the place at all.

mod data;
mod index;
mod names;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use index::PolygonIndex;
use names::{fold, fold_into, strip_county_suffix};

use super::detect::{service_chain, SOS};

/// How far from every area a point may lie and still be given the nearest
/// one, in km: enough for a caller on a beach, a pier, or a boat near the
/// shore, where simplified outlines leave gaps.
pub const DEFAULT_NEAREST_KM: f64 = 5.0;

/// The file names [`ServiceAreas::load`] looks for.
pub const AREAS_FILE: &str = "service-areas.geojson";
/// Country outlines file name.
pub const COUNTRIES_FILE: &str = "countries.geojson";
/// Gazetteer file name.
pub const GAZETTEER_FILE: &str = "gazetteer.json";
/// PSAP records file name.
pub const PSAPS_FILE: &str = "psaps.json";

const EMBEDDED_AREAS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/service-areas.geojson"
));
const EMBEDDED_COUNTRIES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/countries.geojson"
));
const EMBEDDED_GAZETTEER: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/gazetteer.json"));
const EMBEDDED_PSAPS: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/psaps.json"));

/// US territories that have their own ISO country code but are US states in
/// the service areas (country `US`, A1 `PR`).
const US_TERRITORIES: [&str; 5] = ["PR", "VI", "GU", "AS", "MP"];

/// Why the data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not the JSON it should be.
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// A file parsed but its content is inconsistent.
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

/// A service area: a polygon a PSAP serves, with its civic names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Area {
    /// `US-06075` (country and county FIPS) or `CA-ON` (country and province).
    pub id: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// State or province code (`CA`, `ON`).
    #[serde(default)]
    pub a1: Option<String>,
    /// State or province name (`California`).
    #[serde(default)]
    pub a1_name: Option<String>,
    /// Full county name with its type (`St. Louis city`, `Orleans Parish`).
    #[serde(default)]
    pub a2: Option<String>,
    /// Bare county name (`St. Louis`).
    #[serde(default)]
    pub a2_short: Option<String>,
    /// Census LSAD code of the county type (`06` county, `25` city, ...).
    #[serde(default)]
    pub lsad: Option<String>,
    /// 5-digit county FIPS code.
    #[serde(default)]
    pub fips: Option<String>,
    /// The PSAP the area names as its own, used when no record lists the
    /// area.
    #[serde(default)]
    pub psap_id: Option<String>,
    /// False for an area kept for civic lookups only (Falls Church city, VA,
    /// vanishes when the outlines are simplified).
    #[serde(skip)]
    pub has_geometry: bool,
    /// `US-CA`: the key of the area's state default, when it has a state.
    #[serde(skip)]
    state_key: Option<String>,
}

/// A PSAP record, as in `psaps.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Psap {
    /// Unique id (`SYN-US-06075` for the synthetic records).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where calls go (`sip:sos@us-06075.psap.example`).
    pub uri: String,
    /// Agency identifier, a domain name (NENA `Agency_ID`).
    #[serde(default)]
    pub agency_id: String,
    /// The area it serves: an area id (`US-06075`), a state default
    /// (`US-CA`) or a country default (`DE`).
    pub area: String,
    /// Further areas the PSAP serves (a PSAP for several counties).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_serves: Vec<String>,
    /// Service URN (`urn:service:sos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_urn: Option<String>,
    /// Emergency number (`911`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_num: Option<String>,
    /// True for a placeholder record that must not take live calls.
    #[serde(default)]
    pub synthetic: bool,
}

impl Psap {
    /// The service it answers: its `service_urn` (in lower case once
    /// loaded), else `urn:service:sos`.
    pub fn service(&self) -> &str {
        self.service_urn.as_deref().unwrap_or(SOS)
    }
}

/// How a location was matched to an area.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatchKind {
    /// The point lies inside the area (or on its boundary).
    Contains,
    /// The point lies in no area; this one is the nearest, `km` away.
    Nearest { km: f64 },
    /// Civic: state and county name (A1, A2).
    County,
    /// Civic: a province or territory (A1) that is an area of its own.
    Province,
    /// Civic: the postal code (US ZIP, or the first letter of a Canadian
    /// postal code).
    Zip,
    /// Civic: state and city (A1, A3) through the gazetteer.
    City,
    /// Civic: the state is known but nothing finer; its default PSAP.
    StateDefault,
    /// Only the country is known; its default PSAP.
    CountryDefault,
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchKind::Contains => f.write_str("contains"),
            MatchKind::Nearest { km } => write!(f, "nearest ({km:.1} km)"),
            MatchKind::County => f.write_str("county"),
            MatchKind::Province => f.write_str("province"),
            MatchKind::Zip => f.write_str("zip"),
            MatchKind::City => f.write_str("city"),
            MatchKind::StateDefault => f.write_str("state default"),
            MatchKind::CountryDefault => f.write_str("country default"),
        }
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match<'a> {
    /// How the area was found.
    pub how: MatchKind,
    /// The area found: an area id, a state (`US-CA`) or a country (`DE`).
    pub area: &'a str,
    /// The PSAP that serves it.
    pub psap: &'a Psap,
}

/// One polygon of an area's outline ([`ServiceAreas::area_outline`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlinePart<'a> {
    /// x longitude, y latitude, in degrees.
    pub polygon: &'a geo::Polygon<f64>,
    /// Whether every point inside the polygon's exterior ring is matched
    /// to this area by [`ServiceAreas::lookup_point`]: the polygon has no
    /// holes, and no area that lookups prefer (a lower one in the data)
    /// overlaps it. Points on a shared border may still go to the
    /// neighbour.
    pub exclusive: bool,
}

/// A civic address, as PIDF-LO (RFC 5139) carries it. Empty fields are
/// unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CivicAddress<'a> {
    /// ISO 3166-1 alpha-2 country code.
    pub country: &'a str,
    /// State or province: code (`CA`, `ON`) or name (`California`).
    pub a1: &'a str,
    /// County, with or without its type (`St. Louis`, `St. Louis County`).
    pub a2: &'a str,
    /// City.
    pub a3: &'a str,
    /// Postal code.
    pub pc: &'a str,
}

/// The loaded data and its indexes. Immutable once built; share it behind an
/// `Arc` and swap it whole to reload.
pub struct ServiceAreas {
    areas: Vec<Area>,
    area_ids: HashMap<String, u32>,
    area_index: PolygonIndex,
    country_ids: Vec<String>,
    country_names: HashMap<String, String>,
    country_index: PolygonIndex,
    /// (country, folded A1 code or name) → A1 code.
    states: HashMap<(String, String), String>,
    /// (country, A1 code, folded county name) → area.
    counties: HashMap<(String, String, String), u32>,
    /// (country, A1 code) → an area that is the whole province.
    provinces: HashMap<(String, String), u32>,
    zips: HashMap<u32, u32>,
    /// `city_key(A1, city)` → the US area most of the city's ZIPs lie in.
    cities: HashMap<String, u32>,
    psaps: Vec<Psap>,
    psap_ids: HashMap<String, u32>,
    /// PSAP URI, ASCII lower case → the first record with it.
    psap_uris: HashMap<String, u32>,
    /// Area key (area id, `US-CA`, or `DE`) → the PSAPs serving it, one
    /// per service.
    psap_by_area: HashMap<String, Vec<u32>>,
    nearest_km: f64,
}

impl fmt::Debug for ServiceAreas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAreas")
            .field("areas", &self.areas.len())
            .field("countries", &self.country_ids.len())
            .field("zips", &self.zips.len())
            .field("psaps", &self.psaps.len())
            .field("nearest_km", &self.nearest_km)
            .finish()
    }
}

impl ServiceAreas {
    /// The data shipped in `data/`, compiled into the binary.
    pub fn embedded() -> Result<Self, DataError> {
        Self::build(
            (&format!("{AREAS_FILE} (embedded)"), EMBEDDED_AREAS),
            (&format!("{COUNTRIES_FILE} (embedded)"), EMBEDDED_COUNTRIES),
            (&format!("{GAZETTEER_FILE} (embedded)"), EMBEDDED_GAZETTEER),
            (&format!("{PSAPS_FILE} (embedded)"), EMBEDDED_PSAPS),
        )
    }

    /// Loads the data from `dir`. Each of [`AREAS_FILE`], [`COUNTRIES_FILE`],
    /// [`GAZETTEER_FILE`] and [`PSAPS_FILE`] found in `dir` replaces the
    /// embedded copy; so a directory holding only an operator's own
    /// `psaps.json` gives the shipped areas served by the operator's PSAPs.
    /// A directory holding none of the four is an error.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let io = |path: &Path, source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        let mut found = 0;
        let mut read = |name: &str, embedded: &'static [u8]| {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    found += 1;
                    Ok((path.display().to_string(), std::borrow::Cow::Owned(bytes)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
                    format!("{name} (embedded)"),
                    std::borrow::Cow::Borrowed(embedded),
                )),
                Err(e) => Err(io(&path, e)),
            }
        };
        let areas = read(AREAS_FILE, EMBEDDED_AREAS)?;
        let countries = read(COUNTRIES_FILE, EMBEDDED_COUNTRIES)?;
        let gazetteer = read(GAZETTEER_FILE, EMBEDDED_GAZETTEER)?;
        let psaps = read(PSAPS_FILE, EMBEDDED_PSAPS)?;
        if found == 0 {
            return Err(DataError::Invalid {
                file: dir.display().to_string(),
                reason: format!(
                    "holds none of {AREAS_FILE}, {COUNTRIES_FILE}, {GAZETTEER_FILE}, {PSAPS_FILE}"
                ),
            });
        }
        Self::build(
            (&areas.0, &areas.1),
            (&countries.0, &countries.1),
            (&gazetteer.0, &gazetteer.1),
            (&psaps.0, &psaps.1),
        )
    }

    /// Builds from the contents of the four files.
    pub fn from_bytes(
        areas: &[u8],
        countries: &[u8],
        gazetteer: &[u8],
        psaps: &[u8],
    ) -> Result<Self, DataError> {
        Self::build(
            (AREAS_FILE, areas),
            (COUNTRIES_FILE, countries),
            (GAZETTEER_FILE, gazetteer),
            (PSAPS_FILE, psaps),
        )
    }

    fn build(
        (areas_name, areas_bytes): (&str, &[u8]),
        (countries_name, countries_bytes): (&str, &[u8]),
        (gazetteer_name, gazetteer_bytes): (&str, &[u8]),
        (psaps_name, psaps_bytes): (&str, &[u8]),
    ) -> Result<Self, DataError> {
        let invalid = |file: &str, reason: String| DataError::Invalid {
            file: file.to_string(),
            reason,
        };

        // Service areas.
        let features = data::read_areas(areas_name, areas_bytes)?;
        let mut areas = Vec::with_capacity(features.len());
        let mut area_ids = HashMap::with_capacity(features.len());
        let mut shapes = Vec::with_capacity(features.len());
        for (n, (mut area, geometry)) in features.into_iter().enumerate() {
            let n = u32::try_from(n).map_err(|_| invalid(areas_name, "too many areas".into()))?;
            if area_ids.insert(area.id.clone(), n).is_some() {
                return Err(invalid(
                    areas_name,
                    format!("area id {} appears twice", area.id),
                ));
            }
            area.has_geometry = geometry.as_ref().is_some_and(|g| !g.0.is_empty());
            area.state_key = area
                .a1
                .as_deref()
                .map(|a1| format!("{}-{a1}", area.country));
            if let Some(g) = geometry {
                shapes.push((n, g));
            }
            areas.push(area);
        }
        let area_index = PolygonIndex::new(shapes);

        // Civic indexes.
        let mut states = HashMap::new();
        let mut counties = HashMap::new();
        let mut provinces = HashMap::new();
        let mut bare: HashMap<(String, String, String), Vec<u32>> = HashMap::new();
        for (n, area) in (0u32..).zip(&areas) {
            let Some(a1) = area.a1.as_deref() else {
                continue;
            };
            for name in std::iter::once(a1).chain(area.a1_name.as_deref()) {
                states
                    .entry((area.country.clone(), fold(name)))
                    .or_insert_with(|| a1.to_string());
            }
            match &area.a2 {
                Some(a2) => {
                    let key = (area.country.clone(), a1.to_string(), fold(a2));
                    counties.entry(key).or_insert(n);
                    if let Some(short) = &area.a2_short {
                        let key = (area.country.clone(), a1.to_string(), fold(short));
                        bare.entry(key).or_default().push(n);
                    }
                }
                None => {
                    provinces
                        .entry((area.country.clone(), a1.to_string()))
                        .or_insert(n);
                }
            }
        }
        // A bare name shared by a county and an independent city (Baltimore,
        // St. Louis, Fairfax, Richmond, Franklin, Roanoke) means the county.
        for (key, candidates) in bare {
            let pick = candidates
                .iter()
                .copied()
                .find(|&n| areas[n as usize].lsad.as_deref() == Some("06"))
                .or_else(|| candidates.iter().copied().min());
            if let Some(n) = pick {
                counties.entry(key).or_insert(n);
            }
        }

        // Country outlines.
        let outlines = data::read_countries(countries_name, countries_bytes)?;
        let mut country_ids = Vec::with_capacity(outlines.len());
        let mut country_names = HashMap::new();
        let mut country_shapes = Vec::with_capacity(outlines.len());
        for (n, country) in (0u32..).zip(outlines) {
            country_ids.push(country.id.clone());
            country_names.insert(country.id, country.name);
            country_shapes.push((n, country.geometry));
        }
        let country_index = PolygonIndex::new(country_shapes);

        // Gazetteer.
        let gazetteer = data::read_gazetteer(gazetteer_name, gazetteer_bytes)?;
        let by_fips: HashMap<&str, u32> = (0u32..)
            .zip(&areas)
            .filter(|(_, a)| a.country == "US")
            .filter_map(|(n, a)| Some((a.fips.as_deref()?, n)))
            .collect();
        let us_area = |fips: &str| -> Result<u32, DataError> {
            by_fips
                .get(fips)
                .copied()
                .ok_or_else(|| invalid(gazetteer_name, format!("unknown county FIPS {fips}")))
        };
        let mut zips = HashMap::new();
        for (fips, list) in &gazetteer.zips.0 {
            let n = us_area(&fips.0)?;
            for zip in list {
                let code = zip5(&zip.0)
                    .ok_or_else(|| invalid(gazetteer_name, format!("bad ZIP code {:?}", zip.0)))?;
                zips.entry(code).or_insert(n);
            }
        }
        // A city's first county is the one to use; the others are checked
        // but only documented. Two spellings that fold alike keep the first.
        let mut cities: HashMap<String, u32> = HashMap::new();
        for (state, list) in &gazetteer.cities.0 {
            for (city, fips_list) in &list.0 {
                let mut first = None;
                for fips in fips_list {
                    let n = us_area(&fips.0)?;
                    first.get_or_insert(n);
                }
                if let Some(n) = first {
                    cities.entry(city_key(&state.0, &city.0)).or_insert(n);
                }
            }
        }

        let mut built = ServiceAreas {
            areas,
            area_ids,
            area_index,
            country_ids,
            country_names,
            country_index,
            states,
            counties,
            provinces,
            zips,
            cities,
            psaps: Vec::new(),
            psap_ids: HashMap::new(),
            psap_uris: HashMap::new(),
            psap_by_area: HashMap::new(),
            nearest_km: DEFAULT_NEAREST_KM,
        };
        built.set_psaps(psaps_name, psaps_bytes)?;
        Ok(built)
    }

    /// Replaces the PSAP records with those of a `psaps.json` document. On
    /// error the records in use are kept.
    pub fn replace_psaps(&mut self, psaps_json: &[u8]) -> Result<(), DataError> {
        self.set_psaps(PSAPS_FILE, psaps_json)
    }

    fn set_psaps(&mut self, file: &str, bytes: &[u8]) -> Result<(), DataError> {
        let psaps = data::read_psaps(file, bytes)?;
        let mut psap_ids = HashMap::with_capacity(psaps.len());
        let mut psap_uris = HashMap::with_capacity(psaps.len());
        let mut psap_by_area: HashMap<String, Vec<u32>> = HashMap::with_capacity(psaps.len());
        for (n, psap) in (0u32..).zip(&psaps) {
            psap_ids.insert(psap.id.clone(), n);
            psap_uris.entry(psap.uri.to_ascii_lowercase()).or_insert(n);
            for area in std::iter::once(&psap.area).chain(&psap.also_serves) {
                if !self.is_area_key(area) {
                    return Err(DataError::Invalid {
                        file: file.to_string(),
                        reason: format!(
                            "PSAP {} serves {area}, which is no area, state (US-CA) or country",
                            psap.id
                        ),
                    });
                }
                let serving = psap_by_area.entry(area.clone()).or_default();
                if let Some(&other) = serving
                    .iter()
                    .find(|&&o| psaps[o as usize].service() == psap.service())
                {
                    return Err(DataError::Invalid {
                        file: file.to_string(),
                        reason: format!(
                            "area {area} is served for {} by both {} and {}",
                            psap.service(),
                            psaps[other as usize].id,
                            psap.id
                        ),
                    });
                }
                serving.push(n);
            }
        }
        self.psaps = psaps;
        self.psap_ids = psap_ids;
        self.psap_uris = psap_uris;
        self.psap_by_area = psap_by_area;
        Ok(())
    }

    /// Whether `key` names an area, a state (`US-CA`) or a country (`DE`).
    fn is_area_key(&self, key: &str) -> bool {
        if self.area_ids.contains_key(key) || self.country_names.contains_key(key) {
            return true;
        }
        if self.areas.iter().any(|a| a.country == key) {
            return true;
        }
        match key.split_once('-') {
            Some((country, a1)) => self
                .states
                .get(&(country.to_string(), fold(a1)))
                .is_some_and(|code| code == a1),
            None => false,
        }
    }

    /// Sets the distance within which a point outside every area or country
    /// outline is given the nearest one. Negative or non-finite values
    /// turn that off.
    pub fn with_nearest_km(mut self, km: f64) -> Self {
        self.nearest_km = if km.is_finite() && km > 0.0 { km } else { 0.0 };
        self
    }

    /// The distance set by [`with_nearest_km`](Self::with_nearest_km).
    pub fn nearest_km(&self) -> f64 {
        self.nearest_km
    }

    /// The PSAP record with this id.
    pub fn psap(&self, id: &str) -> Option<&Psap> {
        self.psap_ids.get(id).map(|&n| &self.psaps[n as usize])
    }

    /// All PSAP records, sorted as in their file.
    pub fn psaps(&self) -> &[Psap] {
        &self.psaps
    }

    /// The first PSAP record whose URI is `uri`, compared without regard
    /// to ASCII case: a hash lookup, asked for each call a LoST mapping
    /// routes.
    pub fn psap_by_uri(&self, uri: &str) -> Option<&Psap> {
        let n = if uri.bytes().any(|b| b.is_ascii_uppercase()) {
            self.psap_uris.get(&uri.to_ascii_lowercase())
        } else {
            self.psap_uris.get(uri)
        }?;
        self.psaps.get(*n as usize)
    }

    /// The PSAP serving an area key (area id, `US-CA`, `DE`), following the
    /// area's own `psap_id`, then its state's and its country's defaults.
    pub fn psap_for_area(&self, key: &str) -> Option<&Psap> {
        self.psap_for_area_for(key, SOS)
    }

    /// [`psap_for_area`](Self::psap_for_area) for a service: the PSAP of the
    /// service at any of those levels, else of its parent service, and so
    /// on down to `urn:service:sos`.
    pub fn psap_for_area_for(&self, key: &str, service: &str) -> Option<&Psap> {
        match self.area_ids.get(key) {
            Some(&n) => self.area_psap(n, service),
            None => service_chain(service).find_map(|s| self.serving(key, s).map(|(_, p)| p)),
        }
    }

    /// The service area with this id.
    pub fn area(&self, id: &str) -> Option<&Area> {
        self.area_ids.get(id).map(|&n| &self.areas[n as usize])
    }

    /// All service areas, sorted by id.
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// The outline of the area with this id, one part per polygon (none
    /// for an area kept for civic lookups only). Read-only: the polygons
    /// the point lookups use.
    pub fn area_outline(&self, id: &str) -> Option<Vec<OutlinePart<'_>>> {
        let &n = self.area_ids.get(id)?;
        Some(
            self.area_index
                .polygons_of(n)
                .map(|polygon| OutlinePart {
                    polygon,
                    exclusive: polygon.interiors().is_empty()
                        && !self.area_index.overlaps_lower(polygon, n),
                })
                .collect(),
        )
    }

    /// The English name of a country code in the outlines.
    pub fn country_name(&self, code: &str) -> Option<&str> {
        self.country_names.get(code).map(String::as_str)
    }

    /// The country (ISO 3166-1 alpha-2) of a point: that of the service area
    /// holding it (the areas are drawn at a finer scale than the outlines,
    /// which put downtown El Paso in Mexico), else that of the country
    /// outline holding it, else that of the nearest outline within the
    /// nearest distance. A point in a US territory gives the territory's
    /// code (`PR`).
    pub fn country_of_point(&self, lat: f64, lon: f64) -> Option<&str> {
        if !valid_point(lat, lon) {
            return None;
        }
        if let Some(area) = self
            .area_index
            .containing(lon, lat)
            .and_then(|n| self.areas.get(n as usize))
        {
            return Some(match area.a1.as_deref() {
                Some(a1) if area.country == "US" && US_TERRITORIES.contains(&a1) => a1,
                _ => &area.country,
            });
        }
        let n = self.country_index.containing(lon, lat).or_else(|| {
            self.country_index
                .nearest(lon, lat, self.nearest_km, |_| true)
                .map(|(n, _)| n)
        })?;
        self.country_ids.get(n as usize).map(String::as_str)
    }

    /// The PSAP for a point: the area that holds it ([`MatchKind::Contains`]);
    /// else the nearest area within the nearest distance
    /// ([`MatchKind::Nearest`]), counting only areas of the country whose
    /// outline holds the point, so a point across a border river is not
    /// pulled into the neighbour; else the default of the country around the
    /// point ([`MatchKind::CountryDefault`]); else nothing.
    pub fn lookup_point(&self, lat: f64, lon: f64) -> Option<Match<'_>> {
        self.lookup_point_for(lat, lon, SOS)
    }

    /// [`lookup_point`](Self::lookup_point) for a service: the area is found
    /// as there, and served by the PSAP of `service` (see the module
    /// documentation for the fallback to parent services).
    pub fn lookup_point_for(&self, lat: f64, lon: f64, service: &str) -> Option<Match<'_>> {
        if !valid_point(lat, lon) {
            return None;
        }
        if let Some(n) = self.area_index.containing(lon, lat) {
            if let Some(m) = self.area_match(n, MatchKind::Contains, service) {
                return Some(m);
            }
        }
        let outline = self
            .country_index
            .containing(lon, lat)
            .and_then(|n| self.country_ids.get(n as usize))
            .map(String::as_str);
        let nearest = self.area_index.nearest(lon, lat, self.nearest_km, |n| {
            outline.is_none_or(|c| same_country(&self.areas[n as usize].country, c))
        });
        if let Some((n, km)) = nearest {
            if let Some(m) = self.area_match(n, MatchKind::Nearest { km }, service) {
                return Some(m);
            }
        }
        let country = outline.or_else(|| self.country_of_point(lat, lon))?;
        self.default_match(country, None, service)
    }

    /// The PSAP for a civic address, trying in turn:
    /// 1. state (A1, code or name) and county (A2, with or without its type;
    ///    a bare name shared by a county and a city means the county)
    ///    → [`MatchKind::County`]; for Canada the province → [`MatchKind::Province`];
    /// 2. the postal code: a US ZIP (first 5 digits) through the gazetteer,
    ///    or the first letter of a Canadian postal code → [`MatchKind::Zip`];
    ///    skipped when it contradicts a known state;
    /// 3. state and city (A3) through the gazetteer; a city in several
    ///    counties means the one with the most ZIP codes → [`MatchKind::City`];
    /// 4. the state's default PSAP → [`MatchKind::StateDefault`];
    /// 5. the country's default PSAP → [`MatchKind::CountryDefault`].
    ///
    /// The US territories may come as country `PR` (`VI`, `GU`, `AS`, `MP`)
    /// or as country `US` with that A1.
    pub fn lookup_civic(&self, civic: &CivicAddress<'_>) -> Option<Match<'_>> {
        self.lookup_civic_for(civic, SOS)
    }

    /// [`lookup_civic`](Self::lookup_civic) for a service: the area is found
    /// as there, and served by the PSAP of `service` (see the module
    /// documentation for the fallback to parent services).
    pub fn lookup_civic_for(&self, civic: &CivicAddress<'_>, service: &str) -> Option<Match<'_>> {
        let mut country = civic.country.trim().to_ascii_uppercase();
        let mut a1 = civic.a1.trim().to_string();
        if US_TERRITORIES.contains(&country.as_str()) {
            a1 = std::mem::replace(&mut country, "US".to_string());
        }
        if country.is_empty() {
            return None;
        }
        let state = if a1.is_empty() {
            None
        } else {
            self.states.get(&(country.clone(), fold(&a1))).cloned()
        };

        if let Some(state) = &state {
            if !civic.a2.trim().is_empty() {
                if let Some(n) = self.county(&country, state, civic.a2) {
                    if let Some(m) = self.area_match(n, MatchKind::County, service) {
                        return Some(m);
                    }
                }
            }
            if let Some(&n) = self.provinces.get(&(country.clone(), state.clone())) {
                if let Some(m) = self.area_match(n, MatchKind::Province, service) {
                    return Some(m);
                }
            }
        }

        if let Some(n) = self.postal_area(&country, state.as_deref(), civic.pc) {
            if let Some(m) = self.area_match(n, MatchKind::Zip, service) {
                return Some(m);
            }
        }

        if let Some(state) = &state {
            if country == "US" && !civic.a3.trim().is_empty() {
                if let Some(&n) = self.cities.get(&city_key(state, civic.a3)) {
                    if let Some(m) = self.area_match(n, MatchKind::City, service) {
                        return Some(m);
                    }
                }
            }
            return self.default_match(&country, Some(&format!("{country}-{state}")), service);
        }

        self.default_match(&country, None, service)
    }

    /// The default PSAP of a state (`US-TX`) or else of its country, for
    /// the service first and then for each parent service.
    fn default_match(
        &self,
        country: &str,
        state: Option<&str>,
        service: &str,
    ) -> Option<Match<'_>> {
        service_chain(service).find_map(|s| {
            let state = state
                .and_then(|k| self.serving(k, s))
                .map(|(area, psap)| Match {
                    how: MatchKind::StateDefault,
                    area,
                    psap,
                });
            state.or_else(|| {
                self.serving(country, s).map(|(area, psap)| Match {
                    how: MatchKind::CountryDefault,
                    area,
                    psap,
                })
            })
        })
    }

    fn county(&self, country: &str, state: &str, a2: &str) -> Option<u32> {
        let key = fold(a2);
        let get = |name: &str| {
            self.counties
                .get(&(country.to_string(), state.to_string(), name.to_string()))
                .copied()
        };
        get(&key).or_else(|| strip_county_suffix(&key).and_then(get))
    }

    fn postal_area(&self, country: &str, state: Option<&str>, pc: &str) -> Option<u32> {
        let pc = pc.trim();
        let n = match country {
            "US" => *self.zips.get(&zip5(pc)?)?,
            "CA" => {
                let province = canadian_province(pc)?;
                *self
                    .provinces
                    .get(&(country.to_string(), province.to_string()))?
            }
            _ => return None,
        };
        let area = &self.areas[n as usize];
        match state {
            Some(s) if area.a1.as_deref() != Some(s) => None,
            _ => Some(n),
        }
    }

    fn area_match(&self, n: u32, how: MatchKind, service: &str) -> Option<Match<'_>> {
        let area = self.areas.get(n as usize)?;
        Some(Match {
            how,
            area: &area.id,
            psap: self.area_psap(n, service)?,
        })
    }

    /// The PSAP serving area `n` for `service`: for the service, then for
    /// each parent service, the area's own record, the record its `psap_id`
    /// names (when it answers that service), its state's, its country's.
    fn area_psap(&self, n: u32, service: &str) -> Option<&Psap> {
        let area = self.areas.get(n as usize)?;
        service_chain(service).find_map(|s| {
            self.serving(&area.id, s)
                .map(|(_, p)| p)
                .or_else(|| {
                    area.psap_id
                        .as_deref()
                        .and_then(|id| self.psap(id))
                        .filter(|p| p.service() == s)
                })
                .or_else(|| {
                    let key = area.state_key.as_deref()?;
                    self.serving(key, s).map(|(_, p)| p)
                })
                .or_else(|| self.serving(&area.country, s).map(|(_, p)| p))
        })
    }

    /// The PSAP of `service` (exactly) that lists `key` as its area, with
    /// the key as stored.
    fn serving(&self, key: &str, service: &str) -> Option<(&str, &Psap)> {
        let (k, list) = self.psap_by_area.get_key_value(key)?;
        list.iter()
            .map(|&n| &self.psaps[n as usize])
            .find(|p| p.service() == service)
            .map(|p| (k.as_str(), p))
    }
}

/// The key of a city in a state: the state code, a space, the folded name.
fn city_key(state: &str, city: &str) -> String {
    let mut key = String::with_capacity(state.len() + city.len() + 1);
    key.push_str(state);
    key.push(' ');
    fold_into(city, &mut key);
    key
}

fn valid_point(lat: f64, lon: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// Whether an area of `area_country` may serve a point in the outline of
/// `outline`: the same code, or a US territory for a US area.
fn same_country(area_country: &str, outline: &str) -> bool {
    area_country == outline || (area_country == "US" && US_TERRITORIES.contains(&outline))
}

/// The 5-digit ZIP at the start of a US postal code (`94102-1234`).
fn zip5(pc: &str) -> Option<u32> {
    let head = pc.get(..5)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if pc.len() > 5 && pc.as_bytes()[5].is_ascii_digit() {
        return None;
    }
    head.parse().ok()
}

/// The province of a Canadian postal code, from its first letter (Canada
/// Post's forward sortation areas); `X0A`–`X0C` are Nunavut, other `X`
/// codes the Northwest Territories.
fn canadian_province(pc: &str) -> Option<&'static str> {
    let mut chars = pc.chars().filter(|c| !c.is_whitespace());
    let first = chars.next()?.to_ascii_uppercase();
    let second = chars.next()?;
    let third = chars.next()?.to_ascii_uppercase();
    if !second.is_ascii_digit() || !third.is_ascii_alphabetic() {
        return None;
    }
    Some(match first {
        'A' => "NL",
        'B' => "NS",
        'C' => "PE",
        'E' => "NB",
        'G' | 'H' | 'J' => "QC",
        'K' | 'L' | 'M' | 'N' | 'P' => "ON",
        'R' => "MB",
        'S' => "SK",
        'T' => "AB",
        'V' => "BC",
        'X' if second == '0' && matches!(third, 'A' | 'B' | 'C') => "NU",
        'X' => "NT",
        'Y' => "YT",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;

/// What the civic data knows of an address's elements one by one: for
/// checking an address as it is entered, where [`ServiceAreas::lookup_civic`]
/// finds the one PSAP to route by. Each field is found on its own, so that
/// a checker can tell which element disagrees with which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CivicFacts<'a> {
    /// The state or province code A1 names (code or name), in the country.
    pub state: Option<&'a str>,
    /// The county A2 names in that state.
    pub county: Option<&'a Area>,
    /// The county the gazetteer puts the city A3 in, in that state (US; the
    /// county with most of its ZIP codes).
    pub city: Option<&'a Area>,
    /// The area the postal code lies in, whatever the state: a US ZIP's
    /// county, a Canadian postal code's province.
    pub postal: Option<&'a Area>,
}

impl ServiceAreas {
    /// The facts of a civic address (see [`CivicFacts`]). A US territory may
    /// come as its own country (`PR`) or as `US` with that A1.
    pub fn civic_facts(&self, civic: &CivicAddress<'_>) -> CivicFacts<'_> {
        let mut country = civic.country.trim().to_ascii_uppercase();
        let mut a1 = civic.a1.trim();
        if US_TERRITORIES.contains(&country.as_str()) {
            a1 = civic.country.trim();
            country = "US".to_string();
        }
        let state = (!a1.is_empty())
            .then(|| self.states.get(&(country.clone(), fold(a1))))
            .flatten()
            .map(String::as_str);
        let area = |n: u32| self.areas.get(n as usize);
        let county = state
            .filter(|_| !civic.a2.trim().is_empty())
            .and_then(|s| self.county(&country, s, civic.a2))
            .and_then(area);
        let city = state
            .filter(|_| country == "US" && !civic.a3.trim().is_empty())
            .and_then(|s| self.cities.get(&city_key(s, civic.a3)).copied())
            .and_then(area);
        let pc = civic.pc.trim();
        let postal = match country.as_str() {
            "US" => zip5(pc).and_then(|z| self.zips.get(&z).copied()),
            "CA" => canadian_province(pc).and_then(|p| {
                self.provinces
                    .get(&(country.clone(), p.to_string()))
                    .copied()
            }),
            _ => None,
        }
        .and_then(area);
        CivicFacts {
            state,
            county,
            city,
            postal,
        }
    }
}
