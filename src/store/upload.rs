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

use crate::inventory::row::{self, column, Cells, Column, Table, POINT_WITHOUT_CIVIC};
use crate::inventory::Address;

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

/// One row of a bulk upload, checked on its own: whose it is, and the
/// location and number it defines.
#[derive(Debug)]
pub struct Row {
    pub tenant: String,
    pub at: RowRef,
    pub location: Option<LocationDef>,
    pub number: Option<NumberPatch>,
}

/// Who the rows of a bulk upload belong to.
#[derive(Debug, Clone)]
pub enum Tenants {
    /// One tenant (a row's `tenant` cell, when it has one, must name it).
    One(String),
    /// Each row names its tenant.
    PerRow,
}

/// A tenant name: 1 to 64 letters, digits and `.`, `_`, `-`.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The rows of the upload in the file at `path`, one at a time: CSV and
/// TSV are read as a stream (any size in bounded memory), JSON whole.
/// Each row is checked on its own (see [`parse`] for what is checked
/// across rows); an `Err` before any row means the file cannot be read
/// as an upload at all.
pub fn rows_of_file(
    path: &std::path::Path,
    format: Format,
    tenants: &Tenants,
) -> Result<Box<dyn Iterator<Item = Result<Row, RowError>> + Send>, String> {
    let tenant = match tenants {
        Tenants::One(t) => Some(t.clone()),
        Tenants::PerRow => None,
    };
    let raw: Box<dyn Iterator<Item = Result<RawRow, RowError>> + Send> = match format {
        Format::Json => {
            let body = std::fs::read(path).map_err(|e| format!("reading the upload: {e}"))?;
            Box::new(
                json_rows(&body)
                    .map_err(malformed_text)?
                    .into_iter()
                    .map(Ok),
            )
        }
        Format::Csv | Format::Tsv => {
            let f = std::fs::File::open(path).map_err(|e| format!("reading the upload: {e}"))?;
            let f = std::io::BufReader::with_capacity(1 << 20, f);
            let table = Table::from_reader(f, text_format(format))
                .map_err(|e| format!("line {}: {}", e.line.unwrap_or(0), e.message))?;
            check_columns(&table.columns).map_err(malformed_text)?;
            let columns = table.columns.clone();
            Box::new(table.rows().map(move |record| match record {
                Ok((line, record)) => Ok(RawRow::of_record(line, &columns, &record)),
                Err(e) => Err(RowError {
                    at: RowRef {
                        line: e.line,
                        index: None,
                    },
                    number: None,
                    errors: vec![e.message],
                }),
            }))
        }
    };
    Ok(Box::new(raw.map(move |raw| {
        let raw = raw?;
        let owner = match &tenant {
            Some(t) => t.clone(),
            None => match raw.get(Column::Tenant) {
                Some(t) if valid_tenant(t) => t.to_string(),
                Some(t) if !t.is_empty() => {
                    return Err(raw.error(format!(
                        "tenant {t:?}: 1 to 64 letters, digits, '.', '_' or '-'"
                    )))
                }
                _ => {
                    return Err(
                        raw.error("no tenant: the upload names none, so each row does".into())
                    )
                }
            },
        };
        let mut errors = raw.errors.clone();
        match read_row(&raw, &owner) {
            Ok((location, number)) if errors.is_empty() => Ok(Row {
                tenant: owner,
                at: raw.at,
                location,
                number,
            }),
            Ok(_) => Err(raw.error_list(errors)),
            Err(mut e) => {
                errors.append(&mut e);
                Err(raw.error_list(errors))
            }
        }
    })))
}

fn malformed_text(e: UploadError) -> String {
    match e {
        UploadError::Malformed(m) => m,
        UploadError::Rows(r) => format!("{} rows cannot be read", r.len()),
    }
}

fn text_format(format: Format) -> row::Format {
    match format {
        Format::Tsv => row::Format::Tsv,
        Format::Csv | Format::Json => row::Format::Csv,
    }
}

fn check_columns(columns: &[Column]) -> Result<(), UploadError> {
    if !columns.contains(&Column::Number) && !columns.contains(&Column::LocationId) {
        return Err(UploadError::Malformed(
            "line 1: no \"number\" column (nor \"location_id\")".into(),
        ));
    }
    Ok(())
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

    /// A CSV/TSV record at `line`, its cells under `columns`.
    fn of_record(line: u64, columns: &[Column], record: &csv::StringRecord) -> RawRow {
        RawRow {
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
        }
    }

    fn error(&self, message: String) -> RowError {
        self.error_list(vec![message])
    }

    fn error_list(&self, errors: Vec<String>) -> RowError {
        RowError {
            at: self.at,
            number: self.number_text(),
            errors,
        }
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
    let format = text_format(format);
    let malformed = |e: row::TableError| {
        UploadError::Malformed(format!("line {}: {}", e.line.unwrap_or(0), e.message))
    };
    let table = Table::new(text, format).map_err(malformed)?;
    check_columns(&table.columns)?;
    let columns = table.columns.clone();
    let mut rows = Vec::new();
    for record in table.rows() {
        let (line, record) = record.map_err(malformed)?;
        rows.push(RawRow::of_record(line, &columns, &record));
    }
    Ok(rows)
}

type ReadRow = (Option<LocationDef>, Option<NumberPatch>);

/// A row of an upload: its cells, with the upload's own rules for the
/// tenant and the location id, and every problem reported.
fn read_row(raw: &RawRow, tenant: &str) -> Result<ReadRow, Vec<String>> {
    let cells = raw.cells.iter().map(|(c, v)| (*c, v.as_str()));
    let (cells, mut errors) = Cells::read(cells, |c, v| match c {
        Column::Tenant if !v.is_empty() && v != tenant => Some(format!(
            "tenant {v:?} differs from the tenant of the request, {tenant:?}"
        )),
        Column::LocationId if !v.is_empty() && !valid_id(v) => Some(format!(
            "location_id {v:?}: 1 to 64 letters, digits, '.', '_', '-' or ':'"
        )),
        _ => None,
    });
    errors.extend(cells.size_errors());
    let partial = if cells.fields.is_empty() {
        if cells.point.is_some() {
            errors.push(POINT_WITHOUT_CIVIC.into());
        }
        None
    } else {
        Some(PartialAddress {
            fields: cells.fields,
            lang: cells.lang,
            point: cells.point,
        })
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let location_id = match cells.location_id {
        None => Change::Keep,
        Some(id) => Change::Set((!id.is_empty()).then_some(id)),
    };
    let (number, country, edit) = (cells.number, cells.country, cells.may_edit);
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
    } else if cells.has_address_column {
        Change::Set(partial)
    } else {
        Change::Keep
    };
    let patch = NumberPatch {
        number,
        at,
        country,
        common_area_phone: cells.common_area_phone.map_or(Change::Keep, Change::Set),
        may_set: edit_all(cells.may_set),
        may_change: edit_all(cells.may_change),
        may_delete: edit_all(cells.may_delete),
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
            +19995550101,acme,US,no,Denver\n\
            +12125550102,other,USA,maybe,Denver\n\
            +12125550100,acme,US,no,Denver\n";
        let e = rows(parse(text.as_bytes(), Format::Csv, "acme").unwrap_err());
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].at.line, Some(3));
        assert!(e[0].errors[0].contains("+19995550101"), "{:?}", e[0]);
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

    /// The inventory file and an upload read cells with the same reader:
    /// the same bad cell gives the same (first) message on both.
    #[test]
    fn the_file_and_the_upload_refuse_a_cell_alike() {
        use crate::inventory::{load, Inventory};
        for (text, want) in [
            (
                "number,country\n+1303555,US\n",
                "number \"+1303555\": too short for US: 6 digits after +1, where US numbers have 10",
            ),
            (
                "number,country\n+12125550142,USA\n",
                "country \"USA\" is not an ISO 3166-1 alpha-2 code",
            ),
            (
                "number,country,tenant_may_set_address\n+12125550142,US,maybe\n",
                "tenant_may_set_address: \"maybe\" is not yes or no",
            ),
            (
                "number,country,reg_A3,reg_lat,reg_lon\n+12125550142,US,Denver,91,0\n",
                "reg_lat 91 is out of range",
            ),
            (
                "number,country,reg_A3,reg_lat,reg_lon\n+12125550142,US,Denver,0,x\n",
                "\"x\" is not a number of degrees",
            ),
            (
                "number,country,reg_A3,reg_lat\n+12125550142,US,Denver,9\n",
                "reg_lat and reg_lon go together",
            ),
            (
                "number,country,reg_lat,reg_lon\n+12125550142,US,9,9\n",
                POINT_WITHOUT_CIVIC,
            ),
        ] {
            let file = Inventory::parse(text, load::Format::Csv).unwrap_err();
            assert_eq!(file.message, want);
            let e = rows(parse(text.as_bytes(), Format::Csv, "acme").unwrap_err());
            assert_eq!(e[0].errors[0], want);
        }
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
