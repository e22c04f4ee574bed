//! Reading an inventory snapshot from a TSV or CSV file.
//!
//! The first line names the columns, in any order; unknown column names are
//! refused (a misspelt address column must not drop addresses silently).
//! Columns:
//!
//! | column | meaning |
//! | --- | --- |
//! | `number` | the number, E.164 (`+12125550142`) or national in the row's country (`(212) 555-0142`); separators allowed; valid by libphonenumber's metadata for the country ([`super::number`]). Stored in E.164. Empty on a row that only defines a tenant location. |
//! | `tenant` | the customer the number belongs to |
//! | `country` | ISO 3166-1 alpha-2 of the number's service (required on number rows) |
//! | `common_area_phone` | yes/no |
//! | `tenant_may_edit_address` | yes/no: the tenant admin may set, change and delete the address |
//! | `tenant_may_set_address`, `tenant_may_change_address`, `tenant_may_delete_address` | each capability on its own (overrides the column above) |
//! | `location_id` | a tenant-defined location: on a row with an address, the row defines it (and, with a number, assigns the number to it); on a number row without an address, the number takes that location's address |
//! | `reg_<element>` | the registered address, one RFC 5139 element per column (`reg_country`, `reg_A1`, `reg_A3`, `reg_RD`, `reg_STS`, `reg_HNO`, `reg_PC`, ...); `reg_country` defaults to the row's country |
//! | `reg_lang` | the address's language tag |
//! | `reg_lat`, `reg_lon` | the address's point in degrees, both or neither |
//!
//! Booleans are `yes`/`no`, `true`/`false`, `y`/`n`, `1`/`0`; empty is no.
//! Values are trimmed. An address is bounded as [`super::limits`] says (256
//! bytes per element, 1024 for the whole address). The whole file is
//! refused at the first bad row, with the row's line number.

use std::collections::HashMap;
use std::path::Path;

use crate::pidf::{CivicAddress, RFC5139_ELEMENTS};

pub use super::row::Format;
use super::row::{Cells, Column, Table, POINT_WITHOUT_CIVIC};
use super::{Address, Capabilities, Inventory, NumberEntry, TenantLocation};

/// Why an inventory file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(": line {l}")).unwrap_or_default())]
pub struct InventoryError {
    /// The file (or `inventory` for text given directly).
    pub origin: String,
    /// The line of the offending row (1 is the header line).
    pub line: Option<u64>,
    pub message: String,
}

/// One row as read, before cross-row checks.
struct Row {
    line: u64,
    number: Option<String>,
    tenant: String,
    country: Option<String>,
    common_area_phone: bool,
    capabilities: Capabilities,
    location_id: Option<String>,
    address: Option<Address>,
}

impl Inventory {
    /// Reads a TSV or CSV file (by its extension, else by its first line).
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| InventoryError {
            origin: origin.clone(),
            line: None,
            message: e.to_string(),
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("tsv") | Some("tab") => Format::Tsv,
            Some("csv") => Format::Csv,
            _ => Format::sniff(&text),
        };
        Inventory::parse_named(&text, format, &origin)
    }

    /// Reads inventory text.
    pub fn parse(text: &str, format: Format) -> Result<Inventory, InventoryError> {
        Inventory::parse_named(text, format, "inventory")
    }

    fn parse_named(text: &str, format: Format, origin: &str) -> Result<Inventory, InventoryError> {
        let err = |line: Option<u64>, message: String| InventoryError {
            origin: origin.to_string(),
            line,
            message,
        };
        let table = Table::new(text, format).map_err(|e| err(e.line, e.message))?;
        if !table.columns.contains(&Column::Number) {
            return Err(err(Some(1), "no \"number\" column".into()));
        }
        let columns = table.columns.clone();
        let mut rows = Vec::new();
        for record in table.rows() {
            let (line, record) = record.map_err(|e| err(e.line, e.message))?;
            let row = read_row(&columns, &record, line).map_err(|m| err(Some(line), m))?;
            rows.push(row);
        }
        assemble(rows).map_err(|(line, m)| err(Some(line), m))
    }
}

/// A row of the file: its cells, then what a file requires of a row (the
/// first problem refuses the file).
fn read_row(columns: &[Column], record: &csv::StringRecord, line: u64) -> Result<Row, String> {
    let (cells, errors) = Cells::read(columns.iter().copied().zip(record.iter()), |_, _| None);
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    if !cells.fields.is_empty() {
        let too_large = cells.size_errors();
        if !too_large.is_empty() {
            return Err(too_large.join("; "));
        }
    }
    let edit = cells.may_edit.unwrap_or(false);
    let mut row = Row {
        line,
        number: cells.number,
        tenant: cells.tenant.unwrap_or_default(),
        country: cells.country,
        common_area_phone: cells.common_area_phone.unwrap_or(false),
        capabilities: Capabilities {
            set_address: cells.may_set.unwrap_or(edit),
            change_address: cells.may_change.unwrap_or(edit),
            delete_address: cells.may_delete.unwrap_or(edit),
        },
        location_id: cells.location_id.filter(|id| !id.is_empty()),
        address: None,
    };
    if !cells.fields.is_empty() {
        let mut civic = cells.fields;
        // RFC 5139 order; the country first, from the row when not given.
        civic.sort_by_key(|(i, _)| *i);
        let mut address = CivicAddress::new();
        address.set_lang(cells.lang);
        let country_key = RFC5139_ELEMENTS.iter().position(|e| *e == "country");
        if !civic.iter().any(|(i, _)| Some(*i) == country_key) {
            let country = row
                .country
                .clone()
                .ok_or("the address has no reg_country and the row no country")?;
            address.push("country", country);
        }
        for (i, v) in civic {
            let v = if RFC5139_ELEMENTS[i] == "country" {
                v.to_ascii_uppercase()
            } else {
                v
            };
            address.push(RFC5139_ELEMENTS[i], v);
        }
        row.address = Some(Address {
            civic: address,
            point: cells.point,
        });
    } else if cells.point.is_some() {
        return Err(POINT_WITHOUT_CIVIC.into());
    }
    match (&row.number, &row.location_id, &row.address) {
        (None, None, _) => return Err("no number and no location_id".into()),
        (None, Some(_), None) => return Err("a location row without an address".into()),
        (None, Some(_), Some(_)) if row.tenant.is_empty() => {
            return Err("a location row without a tenant".into())
        }
        (Some(_), _, _) if row.country.is_none() => return Err("no country".into()),
        _ => {}
    }
    Ok(row)
}

/// Cross-row checks: numbers unique, locations unique per tenant, a number
/// assigned to a location that exists.
fn assemble(rows: Vec<Row>) -> Result<Inventory, (u64, String)> {
    let mut inv = Inventory::empty();
    let mut defined: HashMap<(String, String), (u64, Address)> = HashMap::new();
    for row in &rows {
        if let (Some(id), Some(address)) = (&row.location_id, &row.address) {
            let key = (row.tenant.clone(), id.clone());
            if let Some((first, _)) = defined.get(&key) {
                return Err((
                    row.line,
                    format!(
                        "location {id:?} of tenant {:?} is already defined on line {first}",
                        row.tenant
                    ),
                ));
            }
            defined.insert(key, (row.line, address.clone()));
            inv.add_location(
                &row.tenant,
                TenantLocation {
                    id: id.clone(),
                    address: address.clone(),
                },
            );
        }
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    for row in rows {
        let Some(number) = row.number else {
            continue;
        };
        if let Some(first) = seen.get(&number) {
            return Err((
                row.line,
                format!("number {number} is already listed on line {first}"),
            ));
        }
        seen.insert(number.clone(), row.line);
        let registered = match (&row.address, &row.location_id) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(id)) => {
                let key = (row.tenant.clone(), id.clone());
                let (_, a) = defined.get(&key).ok_or_else(|| {
                    (
                        row.line,
                        format!("location {id:?} of tenant {:?} is not defined", row.tenant),
                    )
                })?;
                Some(a.clone())
            }
            (None, None) => None,
        };
        inv.insert(NumberEntry {
            number,
            tenant: row.tenant,
            country: row.country.unwrap_or_default(),
            common_area_phone: row.common_area_phone,
            capabilities: row.capabilities,
            location_id: row.location_id,
            registered,
        });
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = include_str!("../../tests/corpus/emergency-invites/inventory.tsv");

    #[test]
    fn corpus_inventory_loads() {
        let inv = Inventory::parse(CORPUS, Format::sniff(CORPUS)).unwrap();
        assert_eq!(inv.len(), 14);
        let e = inv.get("+14155550177").unwrap();
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.country, "US");
        assert!(e.common_area_phone);
        assert_eq!(e.capabilities, Capabilities::default());
        let reg = e.registered.as_ref().unwrap();
        let fields: Vec<(&str, &str)> = reg.civic.iter().collect();
        assert_eq!(
            fields,
            [
                ("country", "US"),
                ("A1", "CA"),
                ("A3", "San Francisco"),
                ("PC", "94102"),
                ("RD", "Dr Carlton B Goodlett"),
                ("STS", "Pl"),
                ("HNO", "1"),
            ]
        );
        let de = inv.get("+4989555010").unwrap();
        assert_eq!(
            de.registered.as_ref().unwrap().civic.get("A3"),
            Some("München")
        );
        assert!(de.capabilities.set_address && de.capabilities.delete_address);
        let gb = inv.get("+442079460018").unwrap();
        assert_eq!(gb.registered.as_ref().unwrap().civic.get("A1"), None);
        assert!(inv.get("+19999999999").is_none());
    }

    #[test]
    fn csv_with_locations_and_capabilities() {
        let text = "number,tenant,country,common_area_phone,tenant_may_edit_address,tenant_may_delete_address,location_id,reg_country,reg_A1,reg_A3,reg_RD,reg_HNO,reg_lat,reg_lon\n\
            ,acme,,,,,hq,US,NY,New York,34th,20,40.7484,-73.9857\n\
            +1 212 555 0100,acme,us,yes,yes,no,hq,,,,,,,\n\
            +12125550101,acme,US,no,no,,,\"US\",NY,\"New York, NY\",Broadway,1,,\n";
        let inv = Inventory::parse(text, Format::Csv).unwrap();
        assert_eq!(inv.len(), 2);
        let e = inv.get("+12125550100").unwrap();
        assert_eq!(e.country, "US");
        assert!(e.common_area_phone);
        assert_eq!(
            e.capabilities,
            Capabilities {
                set_address: true,
                change_address: true,
                delete_address: false
            }
        );
        assert_eq!(e.location_id.as_deref(), Some("hq"));
        let reg = e.registered.as_ref().unwrap();
        assert_eq!(reg.point, Some((40.7484, -73.9857)));
        assert_eq!(reg.civic.get("RD"), Some("34th"));
        assert_eq!(inv.tenant_locations("acme").len(), 1);
        assert!(inv.tenant_locations("other").is_empty());
        let f = inv.get("+12125550101").unwrap();
        assert_eq!(
            f.registered.as_ref().unwrap().civic.get("A3"),
            Some("New York, NY")
        );
    }

    fn error(text: &str) -> InventoryError {
        Inventory::parse(text, Format::sniff(text)).unwrap_err()
    }

    #[test]
    fn bad_rows_give_their_line_and_refuse_the_file() {
        let head = "number\ttenant\tcountry\tcommon_area_phone\treg_A3\n";
        let good = "+12125550142\tacme\tUS\tno\tNew York\n";
        for (bad, want) in [
            (
                "+19995550142\tacme\tUS\tno\tX\n",
                "not in a number range that US uses",
            ),
            ("+1303555\tacme\tUS\tno\tX\n", "too short for US"),
            // A national number is the row's country's: the same number.
            (
                "(212) 555-0142\tacme\tUS\tno\tX\n",
                "already listed on line 2",
            ),
            ("+12125550142\tacme\tUSA\tno\tX\n", "alpha-2"),
            ("+12125550143\tacme\tUS\tmaybe\tX\n", "yes or no"),
            ("+12125550144\tacme\tUS\tno\n", "fields"),
            (
                "+12125550142\tacme\tUS\tno\tX\n",
                "already listed on line 2",
            ),
            ("\tacme\tUS\tno\tX\n", "no number and no location_id"),
            ("+12125550145\tacme\t\tno\tX\n", "no"),
        ] {
            let text = format!(
                "{head}{good}{good_2}{bad}",
                good_2 = "+12125550150\tacme\tUS\tno\t\n"
            );
            let e = error(&text);
            assert_eq!(e.line, Some(4), "{bad:?}: {e}");
            assert!(e.message.contains(want), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("inventory: line 4: "), "{e}");
        }
    }

    #[test]
    fn header_errors() {
        let e = error("number\ttenant\treg_HN0\n+12125550142\tacme\t1\n");
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("reg_HN0"), "{e}");
        let e = error("tenant,country\nacme,US\n");
        assert!(e.message.contains("number"), "{e}");
        let e = error("number,number\n+12125550142,+12125550142\n");
        assert!(e.message.contains("twice"), "{e}");
        let e = error("number,country,location_id\n+12125550142,US,nowhere\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("not defined"), "{e}");
        let e = error("number,country,reg_A3,reg_lat\n+12125550142,US,Denver,39.7\n");
        assert!(e.message.contains("together"), "{e}");
    }

    /// An address over the size limits refuses the file, naming the line,
    /// the column and the limit; one at the limits loads.
    #[test]
    fn oversized_addresses_refuse_the_file() {
        use crate::inventory::{MAX_ADDRESS_BYTES, MAX_ADDRESS_ELEMENT_BYTES};
        let head = "number\ttenant\tcountry\treg_A1\treg_A3\treg_RD\treg_NAM\treg_lang\n";
        let at = "x".repeat(MAX_ADDRESS_ELEMENT_BYTES);
        let over = "x".repeat(MAX_ADDRESS_ELEMENT_BYTES + 1);
        let big = "x".repeat(200 * 1024);
        // Three full elements, the country from the row (two letters) and
        // an A1 that fills the rest make an address at the whole limit.
        let rest = MAX_ADDRESS_BYTES - 3 * MAX_ADDRESS_ELEMENT_BYTES - 2;
        let a1 = "x".repeat(rest);
        let a1_over = "x".repeat(rest + 1);
        let fine = "+12125550100\tacme\tUS\tNY\tNew York\tW 34th\t\ten\n";
        for (bad, want) in [
            (
                format!("+12125550142\tacme\tUS\tNY\tNew York\t{big}\t\t\n"),
                "reg_RD is 204800 bytes, over the limit of 256 bytes for one address element"
                    .to_string(),
            ),
            (
                format!("+12125550142\tacme\tUS\tNY\tNew York\tW 34th\t{over}\t\n"),
                "reg_NAM is 257 bytes, over the limit of 256 bytes".into(),
            ),
            (
                format!("+12125550142\tacme\tUS\tNY\tNew York\tW 34th\t\t{over}\n"),
                "reg_lang is 257 bytes".into(),
            ),
            (
                format!("+12125550142\tacme\tUS\t{a1_over}\t{at}\t{at}\t{at}\t\n"),
                format!(
                    "the address is {} bytes in all, over the limit of 1024 bytes",
                    MAX_ADDRESS_BYTES + 1
                ),
            ),
        ] {
            let text = format!("{head}{fine}{bad}");
            let e = error(&text);
            assert_eq!(e.line, Some(3), "{want}: {e}");
            assert!(e.message.contains(&want), "{want}: {e}");
        }
        let text = format!("{head}{fine}+12125550142\tacme\tUS\t{a1}\t{at}\t{at}\t{at}\t\n");
        let inv = Inventory::parse(&text, Format::Tsv).unwrap();
        let a = inv.get("+12125550142").unwrap().registered.unwrap();
        assert_eq!(a.civic.get("RD"), Some(at.as_str()));
        // CSV the same.
        let csv = format!("number,country,reg_A3,reg_RD\n+12125550142,US,Denver,{over}\n");
        let e = Inventory::parse(&csv, Format::Csv).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("reg_RD is 257 bytes"), "{e}");
    }

    #[test]
    fn load_from_a_file_by_extension() {
        let dir = std::env::temp_dir().join(format!("sosrouter-inv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("numbers.csv");
        std::fs::write(&path, "number,country\n+12125550142,US\n+1212,US\n").unwrap();
        let e = Inventory::load(&path).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        std::fs::write(&path, "number,country\n+12125550142,US\n").unwrap();
        assert_eq!(Inventory::load(&path).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
        let e = Inventory::load(Path::new("/nonexistent/inventory.tsv")).unwrap_err();
        assert_eq!(e.line, None);
    }
}
