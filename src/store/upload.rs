//! Reading a bulk number upload: a JSON array of objects, or CSV/TSV text,
//! with the columns of the inventory file (see [`crate::inventory::load`]).
//!
//! Unlike a file, an upload changes numbers that may exist already: a
//! column the upload does not have (a CSV header without it, a JSON object
//! without the key) leaves the stored value as it is. The registered
//! address counts as one column: any `reg_*` column present replaces the
//! whole address (empty cells remove it).
//!
//! Every row is checked and every problem reported with its row, before
//! anything is written.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::emergency::pidf::RFC5139_ELEMENTS;
use crate::inventory::limits::check_address_size;
use crate::inventory::load::{boolean, column, Column};
use crate::inventory::{normalize_e164, Address};

use super::address;

/// The body's format, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Tsv,
}

/// A location a row defines.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationDef {
    pub id: String,
    pub address: Address,
    pub at: RowRef,
}

/// A tri-state: the upload leaves the value (`Keep`) or sets it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
}

impl<T> Change<T> {
    pub fn or_keep(self, current: T) -> T {
        match self {
            Change::Keep => current,
            Change::Set(v) => v,
        }
    }
}

/// What a row says about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberPatch {
    pub number: String,
    pub at: RowRef,
    pub country: Option<String>,
    pub common_area_phone: Change<bool>,
    pub may_set: Change<bool>,
    pub may_change: Change<bool>,
    pub may_delete: Change<bool>,
    pub location_id: Change<Option<String>>,
    /// The number's own address. The country may be missing when the row
    /// has none: it comes from the number's country when applied.
    pub address: Change<Option<PartialAddress>>,
}

/// An address whose country may still be unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialAddress {
    pub fields: Vec<(usize, String)>,
    pub lang: Option<String>,
    pub point: Option<(f64, f64)>,
}

impl PartialAddress {
    pub fn complete(&self, country: Option<&str>) -> Result<Address, String> {
        address::build(self.fields.clone(), self.lang.clone(), self.point, country)
    }
}

/// Where a row is: its line (CSV/TSV, the header is line 1) or its index
/// in the JSON array (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RowRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.index) {
            (Some(l), _) => write!(f, "line {l}"),
            (None, Some(i)) => write!(f, "index {i}"),
            _ => write!(f, "?"),
        }
    }
}

/// The problems of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    #[serde(flatten)]
    pub at: RowRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub errors: Vec<String>,
}

/// A parsed upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upload {
    pub locations: Vec<LocationDef>,
    pub numbers: Vec<NumberPatch>,
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadError {
    /// Not readable at all (bad JSON, bad CSV structure, unknown column).
    Malformed(String),
    /// Readable, but rows are wrong.
    Rows(Vec<RowError>),
}

/// A location id: 1 to 64 letters, digits and `.`, `_`, `-`, `:`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Reads an upload for `tenant`.
pub fn parse(body: &[u8], format: Format, tenant: &str) -> Result<Upload, UploadError> {
    let rows = match format {
        Format::Json => json_rows(body)?,
        Format::Csv | Format::Tsv => text_rows(body, format)?,
    };
    if rows.is_empty() {
        return Err(UploadError::Malformed("the upload has no rows".into()));
    }
    let mut upload = Upload::default();
    let mut errors = Vec::new();
    let mut numbers_seen: HashMap<String, RowRef> = HashMap::new();
    let mut locations_seen: HashMap<String, RowRef> = HashMap::new();
    for raw in rows {
        let mut row_errors = raw.errors.clone();
        match read_row(&raw, tenant) {
            Ok((location, number)) => {
                if let Some(l) = &location {
                    if let Some(first) = locations_seen.get(&l.id) {
                        row_errors
                            .push(format!("location {:?} is already defined at {first}", l.id));
                    }
                }
                if let Some(n) = &number {
                    if let Some(first) = numbers_seen.get(&n.number) {
                        row_errors
                            .push(format!("number {} is already listed at {first}", n.number));
                    }
                }
                if row_errors.is_empty() {
                    if let Some(l) = location {
                        locations_seen.insert(l.id.clone(), l.at);
                        upload.locations.push(l);
                    }
                    if let Some(n) = number {
                        numbers_seen.insert(n.number.clone(), n.at);
                        upload.numbers.push(n);
                    }
                }
            }
            Err(mut e) => row_errors.append(&mut e),
        }
        if !row_errors.is_empty() {
            errors.push(RowError {
                at: raw.at,
                number: raw.number_text(),
                errors: row_errors,
            });
        }
    }
    if errors.is_empty() {
        Ok(upload)
    } else {
        Err(UploadError::Rows(errors))
    }
}

/// One row as cells, before checking.
struct RawRow {
    at: RowRef,
    cells: Vec<(Column, String)>,
    /// Problems found while reading the cells (JSON).
    errors: Vec<String>,
}

impl RawRow {
    fn get(&self, c: Column) -> Option<&str> {
        self.cells
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }

    fn number_text(&self) -> Option<String> {
        self.get(Column::Number)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
}

fn json_rows(body: &[u8]) -> Result<Vec<RawRow>, UploadError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| UploadError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(UploadError::Malformed(
            "a JSON upload is an array of objects, one per number or location".into(),
        ));
    };
    let mut rows = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let at = RowRef {
            line: None,
            index: Some(index),
        };
        let Value::Object(o) = item else {
            rows.push(RawRow {
                at,
                cells: Vec::new(),
                errors: vec!["the row is not a JSON object".into()],
            });
            continue;
        };
        let mut cells = Vec::with_capacity(o.len());
        let mut errors = Vec::new();
        for (k, v) in o {
            let Some(c) = column(&k) else {
                errors.push(format!("unknown field {k:?}"));
                continue;
            };
            let text = match v {
                Value::String(s) => s.trim().to_string(),
                Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                _ => {
                    errors.push(format!("{k}: expected a string, number or boolean"));
                    continue;
                }
            };
            cells.push((c, text));
        }
        rows.push(RawRow { at, cells, errors });
    }
    Ok(rows)
}

fn text_rows(body: &[u8], format: Format) -> Result<Vec<RawRow>, UploadError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| UploadError::Malformed(format!("the body is not UTF-8: {e}")))?;
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .comment(None);
    if format == Format::Tsv {
        b.delimiter(b'\t').quoting(false);
    }
    let mut reader = b.from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| UploadError::Malformed(format!("line 1: {e}")))?
        .clone();
    let mut columns = Vec::with_capacity(headers.len());
    for name in headers.iter() {
        let c = column(name)
            .ok_or_else(|| UploadError::Malformed(format!("line 1: unknown column {name:?}")))?;
        if columns.contains(&c) {
            return Err(UploadError::Malformed(format!(
                "line 1: column {name:?} appears twice"
            )));
        }
        columns.push(c);
    }
    if !columns.contains(&Column::Number) && !columns.contains(&Column::LocationId) {
        return Err(UploadError::Malformed(
            "line 1: no \"number\" column (nor \"location_id\")".into(),
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            let what = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("{len} fields where the header has {expected_len}"),
                _ => e.to_string(),
            };
            UploadError::Malformed(format!("line {line}: {what}"))
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        rows.push(RawRow {
            at: RowRef {
                line: Some(line),
                index: None,
            },
            cells: columns
                .iter()
                .copied()
                .zip(record.iter().map(str::to_string))
                .collect(),
            errors: Vec::new(),
        });
    }
    Ok(rows)
}

type ReadRow = (Option<LocationDef>, Option<NumberPatch>);

fn read_row(raw: &RawRow, tenant: &str) -> Result<ReadRow, Vec<String>> {
    let mut errors = Vec::new();
    let mut number = None;
    let mut country = None;
    let (mut cap, mut edit, mut set, mut change, mut delete) = (None, None, None, None, None);
    let mut location_id: Change<Option<String>> = Change::Keep;
    let (mut lat, mut lon, mut lang) = (None, None, None);
    let mut fields: Vec<(usize, String)> = Vec::new();
    let mut has_address_column = false;
    for (c, v) in &raw.cells {
        let v = v.as_str();
        let mut flag = |name: &str, slot: &mut Option<bool>| match boolean(v) {
            Some(b) => *slot = Some(b),
            None => errors.push(format!("{name}: {v:?} is not yes or no")),
        };
        match c {
            Column::Number => {
                if !v.is_empty() {
                    match normalize_e164(v, None, None).filter(|_| v.starts_with('+')) {
                        Some(n) => number = Some(n),
                        None => errors.push(format!(
                            "number {v:?} is not an E.164 number (+ and 7 to 15 digits)"
                        )),
                    }
                }
            }
            Column::Tenant => {
                if !v.is_empty() && v != tenant {
                    errors.push(format!(
                        "tenant {v:?} differs from the tenant of the request, {tenant:?}"
                    ));
                }
            }
            Column::Country => {
                if !v.is_empty() {
                    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic()) {
                        country = Some(v.to_ascii_uppercase());
                    } else {
                        errors.push(format!("country {v:?} is not an ISO 3166-1 alpha-2 code"));
                    }
                }
            }
            Column::CommonAreaPhone => flag("common_area_phone", &mut cap),
            Column::MayEdit => flag("tenant_may_edit_address", &mut edit),
            Column::MaySet => flag("tenant_may_set_address", &mut set),
            Column::MayChange => flag("tenant_may_change_address", &mut change),
            Column::MayDelete => flag("tenant_may_delete_address", &mut delete),
            Column::LocationId => {
                if v.is_empty() {
                    location_id = Change::Set(None);
                } else if valid_id(v) {
                    location_id = Change::Set(Some(v.to_string()));
                } else {
                    errors.push(format!(
                        "location_id {v:?}: 1 to 64 letters, digits, '.', '_', '-' or ':'"
                    ));
                }
            }
            Column::Lat | Column::Lon => {
                has_address_column = true;
                if !v.is_empty() {
                    match v.parse::<f64>().ok().filter(|x| x.is_finite()) {
                        Some(x) if *c == Column::Lat => lat = Some(x),
                        Some(x) => lon = Some(x),
                        None => errors.push(format!("{v:?} is not a number of degrees")),
                    }
                }
            }
            Column::Lang => {
                has_address_column = true;
                lang = (!v.is_empty()).then(|| v.to_string());
            }
            Column::Civic(i) => {
                has_address_column = true;
                if !v.is_empty() {
                    fields.push((*i, v.to_string()));
                }
            }
        }
    }
    let point = match (lat, lon) {
        (Some(a), Some(b)) => match address::check_point(a, b) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        (None, None) => None,
        _ => {
            errors.push("reg_lat and reg_lon go together".into());
            None
        }
    };
    let elements = fields
        .iter()
        .map(|(i, v)| (RFC5139_ELEMENTS[*i], v.as_str()));
    if let Err(e) = check_address_size(elements, lang.as_deref()) {
        errors.extend(e.iter().map(|e| e.describe("reg_")));
    }
    let partial = if fields.is_empty() {
        if point.is_some() {
            errors.push("a point without a civic address (reg_country and the rest)".into());
        }
        None
    } else {
        Some(PartialAddress {
            fields,
            lang,
            point,
        })
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let at = raw.at;
    let location_named = match &location_id {
        Change::Set(Some(id)) => Some(id.clone()),
        _ => None,
    };
    // A row with a location id and an address defines the location.
    let location = match (&location_named, &partial) {
        (Some(id), Some(p)) => {
            let a = p
                .complete(country.as_deref())
                .map_err(|e| vec![format!("location {id:?}: {e}")])?;
            Some(LocationDef {
                id: id.clone(),
                address: a,
                at,
            })
        }
        _ => None,
    };
    let Some(number) = number else {
        return match (&location_named, &location) {
            (None, _) => Err(vec!["no number and no location_id".into()]),
            (Some(_), None) => Err(vec!["a location row without an address".into()]),
            (Some(_), Some(_)) => Ok((location, None)),
        };
    };
    let edit_all = |one: Option<bool>| match (one, edit) {
        (Some(b), _) | (None, Some(b)) => Change::Set(b),
        (None, None) => Change::Keep,
    };
    let address = if location.is_some() {
        // The number takes the location's address.
        Change::Set(None)
    } else if location_named.is_some() && partial.is_none() {
        Change::Set(None)
    } else if has_address_column {
        Change::Set(partial)
    } else {
        Change::Keep
    };
    let patch = NumberPatch {
        number,
        at,
        country,
        common_area_phone: cap.map_or(Change::Keep, Change::Set),
        may_set: edit_all(set),
        may_change: edit_all(change),
        may_delete: edit_all(delete),
        location_id,
        address,
    };
    Ok((location, Some(patch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(e: UploadError) -> Vec<RowError> {
        match e {
            UploadError::Rows(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn csv_rows_with_locations_and_partial_columns() {
        let text = "number,country,common_area_phone,tenant_may_edit_address,tenant_may_delete_address,location_id,reg_A1,reg_A3,reg_RD,reg_HNO,reg_lat,reg_lon\n\
            ,US,,,,hq,NY,New York,34th,20,40.7484,-73.9857\n\
            +1 212 555 0100,US,yes,yes,no,hq,,,,,,\n\
            +12125550101,,,,,,NY,New York,Broadway,1,,\n";
        let u = parse(text.as_bytes(), Format::Csv, "acme").unwrap();
        assert_eq!(u.locations.len(), 1);
        assert_eq!(u.locations[0].address.civic.get("country"), Some("US"));
        assert_eq!(u.locations[0].at.line, Some(2));
        let n = &u.numbers[0];
        assert_eq!(n.number, "+12125550100");
        assert_eq!(n.common_area_phone, Change::Set(true));
        assert_eq!(
            (&n.may_set, &n.may_change, &n.may_delete),
            (&Change::Set(true), &Change::Set(true), &Change::Set(false))
        );
        assert_eq!(n.location_id, Change::Set(Some("hq".into())));
        assert_eq!(n.address, Change::Set(None));
        let n = &u.numbers[1];
        assert_eq!(n.country, None);
        assert_eq!(n.location_id, Change::Set(None));
        let Change::Set(Some(p)) = &n.address else {
            panic!("{:?}", n.address)
        };
        assert!(p.complete(None).is_err());
        assert_eq!(
            p.complete(Some("US")).unwrap().civic.get("RD"),
            Some("Broadway")
        );

        // Without address columns the stored address stays.
        let u = parse(
            b"number\ttenant_may_edit_address\n+12125550100\tno\n",
            Format::Tsv,
            "acme",
        )
        .unwrap();
        assert_eq!(u.numbers[0].address, Change::Keep);
        assert_eq!(u.numbers[0].common_area_phone, Change::Keep);
        assert_eq!(u.numbers[0].may_delete, Change::Set(false));
    }

    #[test]
    fn every_bad_row_is_reported() {
        let text = "number,tenant,country,common_area_phone,reg_A3\n\
            +12125550100,acme,US,no,Denver\n\
            12125550101,acme,US,no,Denver\n\
            +12125550102,other,USA,maybe,Denver\n\
            +12125550100,acme,US,no,Denver\n";
        let e = rows(parse(text.as_bytes(), Format::Csv, "acme").unwrap_err());
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].at.line, Some(3));
        assert!(e[0].errors[0].contains("E.164"));
        assert_eq!(e[1].at.line, Some(4));
        assert_eq!(e[1].errors.len(), 3, "{:?}", e[1].errors);
        assert!(e[2].errors[0].contains("already listed at line 2"));
    }

    /// Addresses over the size limits are row errors naming the column and
    /// the limit, in CSV and JSON, for numbers and locations alike.
    #[test]
    fn oversized_addresses_are_row_errors() {
        use crate::inventory::{MAX_ADDRESS_BYTES, MAX_ADDRESS_ELEMENT_BYTES};
        let at = "x".repeat(MAX_ADDRESS_ELEMENT_BYTES);
        let over = "x".repeat(MAX_ADDRESS_ELEMENT_BYTES + 1);
        let big = "x".repeat(200 * 1024);
        let rest = "x".repeat(MAX_ADDRESS_BYTES - 3 * MAX_ADDRESS_ELEMENT_BYTES - 2);
        let text = format!(
            "number,country,location_id,reg_A1,reg_A3,reg_RD,reg_NAM\n\
             +12125550100,US,,NY,New York,{big},\n\
             +12125550101,US,,NY,New York,W 34th,\n\
             ,US,hq,NY,{over},W 34th,\n\
             +12125550102,US,,{rest}y,{at},{at},{at}\n\
             +12125550103,US,,{rest},{at},{at},{at}\n"
        );
        let e = rows(parse(text.as_bytes(), Format::Csv, "acme").unwrap_err());
        let joined: Vec<(Option<u64>, String)> =
            e.iter().map(|r| (r.at.line, r.errors.join("; "))).collect();
        let got: Vec<(Option<u64>, &str)> = joined.iter().map(|(l, m)| (*l, m.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    Some(2),
                    "reg_RD is 204800 bytes, over the limit of 256 bytes for one address element"
                ),
                (
                    Some(4),
                    "reg_A3 is 257 bytes, over the limit of 256 bytes for one address element"
                ),
                (
                    Some(5),
                    "the address is 1025 bytes in all, over the limit of 1024 bytes for a whole address"
                ),
            ]
        );
        // At the limits, the rows are taken.
        let text = format!(
            "number,country,reg_A1,reg_A3,reg_RD,reg_NAM\n+12125550103,US,{rest},{at},{at},{at}\n"
        );
        assert_eq!(
            parse(text.as_bytes(), Format::Csv, "acme")
                .unwrap()
                .numbers
                .len(),
            1
        );
        let body = serde_json::json!([
            {"number": "+12125550104", "country": "US", "reg_A3": "Denver", "reg_lang": over},
        ]);
        let e = rows(parse(body.to_string().as_bytes(), Format::Json, "acme").unwrap_err());
        assert_eq!(e[0].at.index, Some(0));
        assert_eq!(
            e[0].errors,
            ["reg_lang is 257 bytes, over the limit of 256 bytes for one address element"]
        );
    }

    #[test]
    fn malformed_bodies() {
        let m = |b: &str, f| match parse(b.as_bytes(), f, "acme").unwrap_err() {
            UploadError::Malformed(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(m("[{", Format::Json).contains("not valid JSON"));
        assert!(m("{}", Format::Json).contains("array"));
        assert!(m("number,reg_HN0\n+12125550100,1\n", Format::Csv).contains("reg_HN0"));
        assert!(m("number,country\n+12125550100,US,extra\n", Format::Csv).contains("line 2"));
        assert!(m("number,country\n", Format::Csv).contains("no rows"));
    }

    #[test]
    fn json_rows_use_the_column_names() {
        let body = serde_json::json!([
            {"number": "+13035550117", "country": "US", "common_area_phone": true,
             "tenant_may_edit_address": false, "reg_A1": "CO", "reg_A3": "Denver",
             "reg_RD": "E Colfax", "reg_HNO": 200, "reg_lat": 39.74, "reg_lon": -104.98},
            {"number": "+13035550118", "colour": "red", "reg_A3": {"x": 1}},
            "nope"
        ]);
        let e = rows(parse(body.to_string().as_bytes(), Format::Json, "acme").unwrap_err());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].at.index, Some(1));
        assert_eq!(e[0].number.as_deref(), Some("+13035550118"));
        assert_eq!(e[0].errors.len(), 2, "{:?}", e[0].errors);
        assert_eq!(e[1].at.index, Some(2));
        let ok = serde_json::json!([body[0].clone()]);
        let u = parse(ok.to_string().as_bytes(), Format::Json, "acme").unwrap();
        let n = &u.numbers[0];
        assert_eq!(n.common_area_phone, Change::Set(true));
        let Change::Set(Some(p)) = &n.address else {
            panic!()
        };
        let a = p.complete(n.country.as_deref()).unwrap();
        assert_eq!(a.civic.get("HNO"), Some("200"));
        assert_eq!(a.point, Some((39.74, -104.98)));
    }
}
