//! `sosrouter inventory import` and `sosrouter inventory export`: the
//! inventory file against the database, for operators who keep their
//! inventory elsewhere. An import is a bulk upload ([`super::bulk`]) made
//! straight to the database: all or nothing, audited as the command's
//! user, and every running router follows it through the change log. An
//! export writes the inventory in the columns an import reads, tenant
//! locations first, so that exporting and importing gives the same
//! inventory.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;

use super::address::AddressRules;
use super::bulk::{Progress, Refused, Tenants};
use super::rows::{NumberRow, UploadSummary, NUMBER_COLUMNS};
use super::upload::Format;
use super::{Actor, Hub, Store, StoreError};
use crate::config::{Config, DatabaseConfig};
use crate::inventory::Address;
use crate::pidf::RFC5139_ELEMENTS;

/// Opens the configuration's database (or `SOSROUTER_DATABASE_URL`'s).
async fn open(config: &Config) -> Result<Arc<Store>, String> {
    let db = DatabaseConfig::effective(config).ok_or(
        "the configuration has no [database] section and SOSROUTER_DATABASE_URL is not set",
    )?;
    Store::open(&db, Hub::new())
        .await
        .map_err(|e| format!("{e:#}"))
}

/// The format of an inventory file: by its extension, else TSV when its
/// first line holds a tab.
pub fn file_format(path: &Path) -> Result<Format, String> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("tsv") | Some("tab") => Ok(Format::Tsv),
        _ => {
            let mut first = [0u8; 4096];
            let n = std::io::Read::read(
                &mut std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
                &mut first,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            let line = first[..n].split(|b| *b == b'\n').next().unwrap_or_default();
            Ok(if line.contains(&b'\t') {
                Format::Tsv
            } else {
                Format::Csv
            })
        }
    }
}

/// Imports `path` into the database: every row (of `tenant`, or of the
/// tenant each row names). Progress goes to standard error.
pub async fn import(
    config: &Config,
    path: &Path,
    tenant: Option<String>,
) -> Result<UploadSummary, String> {
    let format = file_format(path)?;
    let store = open(config).await?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let actor = Actor {
        name: format!("cli:{user}:{}", path.display()),
        role: "operator",
    };
    let tenants = match tenant {
        Some(t) => Tenants::One(t),
        None => Tenants::PerRow,
    };
    // The ECRF is asked first, as for an upload over the API: a file the
    // ECRF finds wrong is refused or kept as the country's policy says.
    let (rules, asked) = crate::admin::ecrf_check::rules_for_file(
        crate::admin::ecrf_check::EcrfAddresses::from_config(config),
        Arc::new(AddressRules::of_admin(config.admin.as_ref())),
        path,
        format,
        &tenants,
    )
    .await;
    if let Some(asked) = asked {
        eprintln!("sosrouter: {}: {asked}", path.display());
    }
    let progress = Arc::new(Progress::default());
    let watch = progress.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!(
                "sosrouter: {}: {} rows checked, {} applied",
                watch.stage().as_str(),
                watch.checked.load(Ordering::Relaxed),
                watch.applied.load(Ordering::Relaxed)
            );
        }
    });
    let r = store
        .bulk_upload(path, format, tenants, &actor, &rules, progress)
        .await;
    ticker.abort();
    store.pool().close().await;
    r.map_err(|e| match e {
        Refused::Malformed(m) => format!("{}: {m}; nothing was changed", path.display()),
        Refused::Rows { listed, count } => {
            let mut s = format!(
                "{}: {count} row(s) cannot be applied; nothing was changed",
                path.display()
            );
            for r in listed.iter().take(50) {
                s.push_str(&format!("\n  {}: {}", r.at, r.errors.join("; ")));
            }
            if count > 50 {
                s.push_str(&format!("\n  ... and {} more", count - 50));
            }
            s
        }
        Refused::Store(e) => format!("database: {e}; nothing was changed"),
    })
}

/// What an export wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Exported {
    pub numbers: u64,
    pub locations: u64,
    /// Address elements left out: not RFC 5139 elements, which the file's
    /// columns cannot hold.
    pub dropped_elements: u64,
    /// Numbers with an address of their own that were also linked to a
    /// tenant location: written with their address and without the link
    /// (a row with both defines the location).
    pub dropped_links: u64,
}

/// Writes the database's inventory to `out` as TSV (or CSV).
pub async fn export(config: &Config, out: impl Write, csv: bool) -> Result<Exported, String> {
    let store = open(config).await?;
    let r = export_from(&store, out, csv)
        .await
        .map_err(|e| e.to_string());
    store.pool().close().await;
    r
}

/// The columns of an export.
fn header() -> Vec<String> {
    let mut h: Vec<String> = [
        "number",
        "tenant",
        "country",
        "common_area_phone",
        "tenant_may_set_address",
        "tenant_may_change_address",
        "tenant_may_delete_address",
        "location_id",
        "reg_lat",
        "reg_lon",
        "reg_lang",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    h.extend(RFC5139_ELEMENTS.iter().map(|e| format!("reg_{e}")));
    h
}

pub(super) async fn export_from(
    store: &Store,
    out: impl Write,
    csv: bool,
) -> Result<Exported, StoreError> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(if csv { b',' } else { b'\t' })
        .quote_style(if csv {
            csv::QuoteStyle::Necessary
        } else {
            csv::QuoteStyle::Never
        })
        .from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
    let io = |e: csv::Error| StoreError::Other(anyhow::anyhow!("writing the export: {e}"));
    w.write_record(header()).map_err(io)?;
    let mut done = Exported::default();
    let mut conn = store.pool().acquire().await?;
    for (tenant, l) in super::all_locations(&mut conn).await? {
        let (id, a) = (l.id, l.address);
        let mut rec = vec![
            String::new(),
            tenant,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            id,
        ];
        done.dropped_elements += push_address(&mut rec, Some(&a), !csv);
        w.write_record(&rec).map_err(io)?;
        done.locations += 1;
    }
    let sql = format!("SELECT {NUMBER_COLUMNS} FROM numbers ORDER BY number");
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    while let Some(r) = rows.try_next().await? {
        let n = NumberRow::from_row(&r)?;
        let mut rec = vec![
            n.number,
            n.tenant,
            n.country,
            yes(n.common_area_phone),
            yes(n.capabilities.set_address),
            yes(n.capabilities.change_address),
            yes(n.capabilities.delete_address),
            match (&n.location_id, &n.address) {
                (Some(_), Some(_)) => {
                    done.dropped_links += 1;
                    String::new()
                }
                (id, _) => id.clone().unwrap_or_default(),
            },
        ];
        done.dropped_elements += push_address(&mut rec, n.address.as_ref(), !csv);
        w.write_record(&rec).map_err(io)?;
        done.numbers += 1;
    }
    w.flush()
        .map_err(|e| StoreError::Other(anyhow::anyhow!("writing the export: {e}")))?;
    Ok(done)
}

/// Appends the address columns (empty for none); returns the elements
/// that have no column. In TSV a tab or line break in a value becomes a
/// space.
fn push_address(rec: &mut Vec<String>, a: Option<&Address>, tsv: bool) -> u64 {
    let clean = |v: &str| {
        if tsv {
            v.replace(['\t', '\n', '\r'], " ")
        } else {
            v.to_string()
        }
    };
    let point = a.and_then(|a| a.point);
    rec.push(point.map(|p| p.0.to_string()).unwrap_or_default());
    rec.push(point.map(|p| p.1.to_string()).unwrap_or_default());
    rec.push(
        a.and_then(|a| a.civic.lang())
            .map(clean)
            .unwrap_or_default(),
    );
    let mut cells = vec![String::new(); RFC5139_ELEMENTS.len()];
    let mut dropped = 0;
    if let Some(a) = a {
        for (k, v) in a.civic.iter() {
            match RFC5139_ELEMENTS.iter().position(|e| *e == k) {
                Some(i) => cells[i] = clean(v),
                None => dropped += 1,
            }
        }
    }
    rec.extend(cells);
    dropped
}
