//! One row of the inventory format, as both the inventory file
//! ([`super::load`]) and the API's bulk upload (`store::upload`) read it:
//! the column names, the CSV/TSV table, and the cells of a row checked
//! one by one. What a row then means differs between the two (a file
//! replaces everything, an upload changes what it names), so each path
//! builds its own row from the [`Cells`] read here.

use crate::pidf::RFC5139_ELEMENTS;

use super::limits::check_address_size;
use super::number::check_number;

/// The separator between fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tsv,
    Csv,
}

impl Format {
    /// TSV when the first line holds a tab, else CSV.
    pub fn sniff(text: &str) -> Format {
        let first = text.lines().next().unwrap_or("");
        if first.contains('\t') {
            Format::Tsv
        } else {
            Format::Csv
        }
    }
}

/// A column of the inventory format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Column {
    Number,
    Tenant,
    Country,
    CommonAreaPhone,
    MayEdit,
    MaySet,
    MayChange,
    MayDelete,
    LocationId,
    Lat,
    Lon,
    Lang,
    /// A civic element, by its index in RFC5139_ELEMENTS.
    Civic(usize),
}

/// The column a header (or JSON key) names.
pub(crate) fn column(name: &str) -> Option<Column> {
    Some(match name {
        "number" => Column::Number,
        "tenant" => Column::Tenant,
        "country" => Column::Country,
        "common_area_phone" => Column::CommonAreaPhone,
        "tenant_may_edit_address" => Column::MayEdit,
        "tenant_may_set_address" => Column::MaySet,
        "tenant_may_change_address" => Column::MayChange,
        "tenant_may_delete_address" => Column::MayDelete,
        "location_id" => Column::LocationId,
        "reg_lat" => Column::Lat,
        "reg_lon" => Column::Lon,
        "reg_lang" => Column::Lang,
        other => {
            let element = other.strip_prefix("reg_")?;
            Column::Civic(RFC5139_ELEMENTS.iter().position(|e| *e == element)?)
        }
    })
}

/// A yes/no cell: empty means no.
pub(crate) fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "no" | "n" | "false" | "0" => Some(false),
        "yes" | "y" | "true" | "1" => Some(true),
        _ => None,
    }
}

/// A problem with the table itself, at a line (1 is the header line).
#[derive(Debug)]
pub(crate) struct TableError {
    pub line: Option<u64>,
    pub message: String,
}

/// CSV or TSV text with a header line naming inventory columns, in any
/// order; unknown and repeated names are refused. Values are trimmed.
pub(crate) struct Table<R> {
    pub columns: Vec<Column>,
    reader: csv::Reader<R>,
}

impl<'a> Table<&'a [u8]> {
    /// Reads the header line of `text`.
    pub fn new(text: &'a str, format: Format) -> Result<Table<&'a [u8]>, TableError> {
        Table::from_reader(text.as_bytes(), format)
    }
}

impl<R: std::io::Read> Table<R> {
    /// Reads the header line from `input`; the rows are read as they are
    /// asked for, so a table of any size is read in bounded memory.
    pub fn from_reader(input: R, format: Format) -> Result<Table<R>, TableError> {
        let at_header = |message: String| TableError {
            line: Some(1),
            message,
        };
        let mut builder = csv::ReaderBuilder::new();
        builder
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .comment(None);
        if format == Format::Tsv {
            builder.delimiter(b'\t').quoting(false);
        }
        let mut reader = builder.from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| at_header(e.to_string()))?
            .clone();
        let mut columns = Vec::with_capacity(headers.len());
        for name in headers.iter() {
            let c = column(name).ok_or_else(|| at_header(format!("unknown column {name:?}")))?;
            if columns.contains(&c) {
                return Err(at_header(format!("column {name:?} appears twice")));
            }
            columns.push(c);
        }
        Ok(Table { columns, reader })
    }

    /// The rows that are not all empty, with their line, in order; an
    /// error for a row that cannot be read (too few or many fields).
    pub fn rows(self) -> impl Iterator<Item = Result<(u64, csv::StringRecord), TableError>> {
        self.reader.into_records().filter_map(|record| {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line());
                    let message = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("{len} fields where the header has {expected_len}"),
                        _ => e.to_string(),
                    };
                    return Some(Err(TableError { line, message }));
                }
            };
            if record.iter().all(str::is_empty) {
                return None;
            }
            let line = record.position().map_or(0, |p| p.line());
            Some(Ok((line, record)))
        })
    }
}

/// The cells of one row, each read on its own: what the row holds, with
/// `None` for a column the row does not have (or leaves empty, for the
/// values that cannot be empty).
#[derive(Debug, Default)]
pub(crate) struct Cells {
    /// In E.164 form, checked for the row's country
    /// ([`super::number::check_number`]).
    pub number: Option<String>,
    /// As written, when the row has the column.
    pub tenant: Option<String>,
    /// Upper case.
    pub country: Option<String>,
    pub common_area_phone: Option<bool>,
    pub may_edit: Option<bool>,
    pub may_set: Option<bool>,
    pub may_change: Option<bool>,
    pub may_delete: Option<bool>,
    /// As written (empty when the cell is), when the row has the column.
    pub location_id: Option<String>,
    /// Non-empty civic elements, by index in RFC5139_ELEMENTS, in the
    /// row's order.
    pub fields: Vec<(usize, String)>,
    pub lang: Option<String>,
    pub point: Option<(f64, f64)>,
    /// Whether the row has any `reg_*` column, empty or not.
    pub has_address_column: bool,
}

/// Why a point alone is no address.
pub(crate) const POINT_WITHOUT_CIVIC: &str =
    "a point without a civic address (reg_country and the rest)";

impl Cells {
    /// Reads `cells`, reporting every bad cell in the row's order.
    /// `check` adds what a path requires of a cell beyond its format (the
    /// upload's tenant and location id rules).
    pub fn read<'v>(
        cells: impl IntoIterator<Item = (Column, &'v str)>,
        mut check: impl FnMut(Column, &str) -> Option<String>,
    ) -> (Cells, Vec<String>) {
        let mut row = Cells::default();
        let mut errors = Vec::new();
        let (mut lat, mut lon) = (None, None);
        let mut number = None;
        for (c, value) in cells {
            if let Some(e) = check(c, value) {
                errors.push(e);
            }
            let mut flag = |name: &str, slot: &mut Option<bool>| match boolean(value) {
                Some(b) => *slot = Some(b),
                None => errors.push(format!("{name}: {value:?} is not yes or no")),
            };
            match c {
                Column::Number => number = (!value.is_empty()).then_some(value),
                Column::Tenant => row.tenant = Some(value.to_string()),
                Column::Country => {
                    if !value.is_empty() {
                        if value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()) {
                            row.country = Some(value.to_ascii_uppercase());
                        } else {
                            errors.push(format!(
                                "country {value:?} is not an ISO 3166-1 alpha-2 code"
                            ));
                        }
                    }
                }
                Column::CommonAreaPhone => flag("common_area_phone", &mut row.common_area_phone),
                Column::MayEdit => flag("tenant_may_edit_address", &mut row.may_edit),
                Column::MaySet => flag("tenant_may_set_address", &mut row.may_set),
                Column::MayChange => flag("tenant_may_change_address", &mut row.may_change),
                Column::MayDelete => flag("tenant_may_delete_address", &mut row.may_delete),
                Column::LocationId => row.location_id = Some(value.to_string()),
                Column::Lat | Column::Lon => {
                    row.has_address_column = true;
                    if !value.is_empty() {
                        let (name, range, slot) = if c == Column::Lat {
                            ("reg_lat", 90.0, &mut lat)
                        } else {
                            ("reg_lon", 180.0, &mut lon)
                        };
                        match value.parse::<f64>().ok().filter(|v| v.is_finite()) {
                            Some(v) => {
                                if !(-range..=range).contains(&v) {
                                    errors.push(format!("{name} {v} is out of range"));
                                }
                                *slot = Some(v);
                            }
                            None => errors.push(format!("{value:?} is not a number of degrees")),
                        }
                    }
                }
                Column::Lang => {
                    row.has_address_column = true;
                    row.lang = (!value.is_empty()).then(|| value.to_string());
                }
                Column::Civic(i) => {
                    row.has_address_column = true;
                    if !value.is_empty() {
                        row.fields.push((i, value.to_string()));
                    }
                }
            }
        }
        // Checked once the row's country is known, whatever the order of
        // the columns.
        if let Some(value) = number {
            match check_number(value, row.country.as_deref()) {
                Ok(n) => row.number = Some(n),
                Err(e) => errors.push(e.to_string()),
            }
        }
        match (lat, lon) {
            (Some(a), Some(b)) => row.point = Some((a, b)),
            (None, None) => {}
            _ => errors.push("reg_lat and reg_lon go together".into()),
        }
        (row, errors)
    }

    /// The civic elements and language tag against the size limits of
    /// [`super::limits`], each problem naming its `reg_` column.
    pub fn size_errors(&self) -> Vec<String> {
        let elements = self
            .fields
            .iter()
            .map(|(i, v)| (RFC5139_ELEMENTS[*i], v.as_str()));
        match check_address_size(elements, self.lang.as_deref()) {
            Ok(()) => Vec::new(),
            Err(e) => e.iter().map(|e| e.describe("reg_")).collect(),
        }
    }
}
