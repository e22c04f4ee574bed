//! Reading the four data files: service areas and country outlines
//! (GeoJSON), the gazetteer and the PSAP records (JSON). Formats are
//! described in `data/README.md`.

use std::borrow::Cow;

use std::fmt;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{Area, DataError, Psap};

/// A feature's properties and its geometry, if it has one.
pub(crate) type Feature<P> = (P, Option<MultiPolygon<f64>>);

/// A country outline: ISO 3166-1 alpha-2 code, name, geometry.
pub(crate) struct Country {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) geometry: MultiPolygon<f64>,
}

/// `gazetteer.json`: `zips` maps a county FIPS code to its ZIP codes;
/// `cities` maps a state code to city names, each with the FIPS codes of its
/// counties, the first being the one to use.
/// Strings borrow from the file's bytes where they hold no escapes.
#[derive(Deserialize)]
pub(crate) struct Gazetteer<'a> {
    #[serde(borrow)]
    pub(crate) zips: Pairs<Str<'a>, Vec<Str<'a>>>,
    #[serde(borrow)]
    pub(crate) cities: Pairs<Str<'a>, Pairs<Str<'a>, Vec<Str<'a>>>>,
}

/// A string borrowed from the input when it can be, owned when it holds
/// escapes.
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The entries of a JSON object, in file order.
pub(crate) struct Pairs<K, V>(pub(crate) Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Vis<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<K, V>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct PsapFile {
    psaps: Vec<Psap>,
}

#[derive(Deserialize)]
struct CountryProps {
    id: String,
    #[serde(default)]
    name: String,
}

fn json_error(file: &str, source: serde_json::Error) -> DataError {
    DataError::Json {
        file: file.to_string(),
        source,
    }
}

fn invalid(file: &str, reason: impl Into<String>) -> DataError {
    DataError::Invalid {
        file: file.to_string(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
struct RawCollection<P> {
    features: Vec<RawFeature<P>>,
}

#[derive(Deserialize)]
struct RawFeature<P> {
    properties: P,
    #[serde(default)]
    geometry: Option<RawGeometry>,
}

/// A GeoJSON position: longitude, latitude, and any further values
/// (altitude) ignored.
struct Position(f64, f64);

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Position;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a position [longitude, latitude]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Position, A::Error> {
                let x = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let y = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Position(x, y))
            }
        }
        d.deserialize_seq(V)
    }
}

type Rings = Vec<Vec<Position>>;

/// A Polygon or MultiPolygon geometry object. The coordinates are read
/// straight into vectors when `type` comes before `coordinates` (as in the
/// shipped files), and through a JSON value otherwise.
struct RawGeometry(MultiPolygon<f64>);

impl<'de> Deserialize<'de> for RawGeometry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawGeometry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a GeoJSON Polygon or MultiPolygon")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawGeometry, A::Error> {
                let mut kind: Option<String> = None;
                let mut polygons: Option<Vec<Rings>> = None;
                let mut deferred: Option<serde_json::Value> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" => kind = Some(map.next_value()?),
                        "coordinates" => match kind.as_deref() {
                            Some("Polygon") => polygons = Some(vec![map.next_value::<Rings>()?]),
                            Some("MultiPolygon") => polygons = Some(map.next_value()?),
                            _ => deferred = Some(map.next_value()?),
                        },
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
                if let Some(value) = deferred {
                    polygons = Some(match kind.as_str() {
                        "Polygon" => vec![Rings::deserialize(value).map_err(de::Error::custom)?],
                        "MultiPolygon" => {
                            Vec::<Rings>::deserialize(value).map_err(de::Error::custom)?
                        }
                        _ => Vec::new(),
                    });
                }
                if kind != "Polygon" && kind != "MultiPolygon" {
                    return Err(de::Error::custom(format!(
                        "geometry type {kind} is not Polygon or MultiPolygon"
                    )));
                }
                let polygons = polygons.ok_or_else(|| de::Error::missing_field("coordinates"))?;
                Ok(RawGeometry(MultiPolygon(
                    polygons.into_iter().filter_map(to_polygon).collect(),
                )))
            }
        }
        d.deserialize_map(V)
    }
}

fn to_ring(ring: Vec<Position>) -> LineString<f64> {
    LineString(
        ring.into_iter()
            .map(|Position(x, y)| Coord { x, y })
            .collect(),
    )
}

/// A polygon from its rings, exterior first; none if it has no exterior.
fn to_polygon(rings: Rings) -> Option<Polygon<f64>> {
    let mut rings = rings.into_iter();
    let exterior = to_ring(rings.next()?);
    Some(Polygon::new(exterior, rings.map(to_ring).collect()))
}

/// Reads a FeatureCollection whose features carry polygonal geometry (or
/// none) and properties of type `P`.
fn read_features<P: for<'de> Deserialize<'de>>(
    file: &str,
    bytes: &[u8],
) -> Result<Vec<Feature<P>>, DataError> {
    let collection: RawCollection<P> =
        serde_json::from_slice(bytes).map_err(|e| json_error(file, e))?;
    Ok(collection
        .features
        .into_iter()
        .map(|f| (f.properties, f.geometry.map(|g| g.0)))
        .collect())
}

pub(crate) fn read_areas(file: &str, bytes: &[u8]) -> Result<Vec<Feature<Area>>, DataError> {
    let areas: Vec<(Area, _)> = read_features(file, bytes)?;
    for (n, (area, _)) in areas.iter().enumerate() {
        if area.id.trim().is_empty() || area.country.trim().is_empty() {
            return Err(invalid(file, format!("feature {n}: empty id or country")));
        }
    }
    Ok(areas)
}

pub(crate) fn read_countries(file: &str, bytes: &[u8]) -> Result<Vec<Country>, DataError> {
    let features: Vec<(CountryProps, _)> = read_features(file, bytes)?;
    Ok(features
        .into_iter()
        .map(|(props, geometry)| Country {
            id: props.id,
            name: props.name,
            geometry: geometry.unwrap_or_else(|| MultiPolygon(Vec::new())),
        })
        .collect())
}

pub(crate) fn read_gazetteer<'a>(file: &str, bytes: &'a [u8]) -> Result<Gazetteer<'a>, DataError> {
    serde_json::from_slice(bytes).map_err(|e| json_error(file, e))
}

/// Reads PSAP records and checks them: ids unique and non-empty, a URI and
/// an area on every record, a service URN (when given) that is
/// `urn:service:sos` or one of its sub-services, stored in lower case.
pub(crate) fn read_psaps(file: &str, bytes: &[u8]) -> Result<Vec<Psap>, DataError> {
    let mut parsed: PsapFile = serde_json::from_slice(bytes).map_err(|e| json_error(file, e))?;
    for psap in &mut parsed.psaps {
        if let Some(urn) = &mut psap.service_urn {
            *urn = urn.trim().to_ascii_lowercase();
            if !crate::emergency::detect::is_sos_service(urn) {
                return Err(invalid(
                    file,
                    format!(
                        "PSAP {}: service_urn {urn:?} is not urn:service:sos or one of its sub-services",
                        psap.id
                    ),
                ));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for psap in &parsed.psaps {
        if psap.id.trim().is_empty() {
            return Err(invalid(file, "a PSAP record has an empty id"));
        }
        if !seen.insert(psap.id.as_str()) {
            return Err(invalid(file, format!("PSAP id {} appears twice", psap.id)));
        }
        if psap.uri.trim().is_empty() {
            return Err(invalid(file, format!("PSAP {} has no uri", psap.id)));
        }
        if psap.area.trim().is_empty() {
            return Err(invalid(file, format!("PSAP {} has no area", psap.id)));
        }
    }
    Ok(parsed.psaps)
}
