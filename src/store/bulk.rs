//! Number uploads of any size: the rows are checked and applied in batches
//! inside one transaction, so an upload is applied whole or not at all
//! while memory stays bounded by a batch.
//!
//! [`Apply`] is the one place where upload rows become stored numbers (the
//! API's small uploads use it too): it reads the current rows of a batch,
//! merges each row into its number (a column the upload lacks keeps the
//! stored value), checks it, and writes the numbers, their audit entries
//! and their change log rows. [`Store::bulk_upload`] feeds it from a file
//! (the body an operator streamed to `data_dir/uploads`) in two passes: the
//! first checks every row and collects the tenant locations the file
//! defines, the second applies them, then the numbers. Its audit entries
//! are one for the upload (who, when, how many created, changed,
//! unchanged) and, for each number it changed, one per field changed: the
//! numbers it created are in the upload's entry, not one by one. It runs on a thread
//! and a connection of its own ([`super::worker`]); [`Progress`] says how
//! far it is.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde_json::json;
use sqlx::{Any, Row, Transaction};

use crate::inventory::Address;

use super::address::AddressRules;
use super::rows::{
    self, addr_json, audit, location_address_in, put_location_row, put_number_rows, AuditEntry,
    Changed, NumberRow, UploadSummary, NUMBER_COLUMNS,
};
pub use super::upload::Tenants;
use super::upload::{self, Change, Format, LocationDef, NumberPatch, RowError, RowRef};
use super::{bump_version, capabilities_json, now_ms, Actor, Backend, Store, StoreError};
use crate::inventory::Capabilities;

/// Rows read, checked and written together.
const BATCH: usize = 5000;
/// Row errors an upload reports in full; the rest are counted.
pub const MAX_ERRORS: usize = 1000;

/// How far a bulk upload is, shared with whoever asks.
#[derive(Debug, Default)]
pub struct Progress {
    state: AtomicU8,
    /// Bytes of the body received.
    pub bytes: AtomicU64,
    /// Rows checked (first pass).
    pub checked: AtomicU64,
    /// Rows applied to the transaction (second pass).
    pub applied: AtomicU64,
}

/// The steps of a bulk upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Receiving,
    Checking,
    Applying,
    Done,
    Failed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Receiving => "receiving",
            Stage::Checking => "checking",
            Stage::Applying => "applying",
            Stage::Done => "done",
            Stage::Failed => "failed",
        }
    }
}

impl Progress {
    pub fn stage(&self) -> Stage {
        match self.state.load(Ordering::Acquire) {
            0 => Stage::Receiving,
            1 => Stage::Checking,
            2 => Stage::Applying,
            3 => Stage::Done,
            _ => Stage::Failed,
        }
    }

    pub fn set(&self, s: Stage) {
        let v = match s {
            Stage::Receiving => 0,
            Stage::Checking => 1,
            Stage::Applying => 2,
            Stage::Done => 3,
            Stage::Failed => 4,
        };
        self.state.store(v, Ordering::Release);
    }
}

/// Why a bulk upload was not applied: the rows at fault (the first
/// [`MAX_ERRORS`]) and how many there were in all, or the reason when the
/// body itself cannot be read.
#[derive(Debug)]
pub enum Refused {
    Malformed(String),
    Rows { listed: Vec<RowError>, count: u64 },
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        Refused::Store(e)
    }
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Refused {
        Refused::Store(e.into())
    }
}

/// Collects row errors: the first [`MAX_ERRORS`] in full, the rest counted.
#[derive(Debug, Default)]
pub(super) struct Errors {
    pub(super) listed: Vec<RowError>,
    pub(super) count: u64,
}

impl Errors {
    fn push(&mut self, e: RowError) {
        self.count += 1;
        if self.listed.len() < MAX_ERRORS {
            self.listed.push(e);
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Applies upload rows inside one transaction (see the module
/// documentation).
pub(super) struct Apply<'a> {
    actor: &'a Actor,
    rules: &'a AddressRules,
    backend: Backend,
    now: i64,
    pub(super) summary: UploadSummary,
    pub(super) errors: Errors,
    /// Each tenant's location ids: stored, or defined by this upload.
    known: HashMap<String, HashSet<String>>,
    /// Audit entries for the numbers created too (not in bulk: there the
    /// upload's own entry stands for them).
    audit_created: bool,
}

impl<'a> Apply<'a> {
    pub(super) fn new(actor: &'a Actor, rules: &'a AddressRules, backend: Backend) -> Self {
        Apply {
            actor,
            rules,
            backend,
            now: now_ms(),
            summary: UploadSummary::default(),
            errors: Errors::default(),
            known: HashMap::new(),
            audit_created: true,
        }
    }

    /// Defines (or redefines) tenant locations.
    pub(super) async fn locations(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        tenant: &str,
        defs: &[LocationDef],
    ) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let mut changed: Vec<&str> = Vec::new();
        for l in defs {
            let check = match self.rules.check(&l.address) {
                Ok(c) => c,
                Err(e) => {
                    self.errors.push(RowError {
                        at: l.at,
                        number: None,
                        errors: vec![format!("location {:?}: {}", l.id, e.describe("reg_"))],
                    });
                    continue;
                }
            };
            let old = location_address_in(tx, tenant, &l.id).await?;
            if old.as_ref() != Some(&l.address) {
                put_location_row(tx, tenant, &l.id, &l.address, Some(&check), self.now).await?;
                changed.push(l.id.as_str());
                entries.extend(AuditEntry::of(
                    self.actor,
                    tenant,
                    &l.id,
                    "location",
                    addr_json(old.as_ref()),
                    addr_json(Some(&l.address)),
                ));
            }
            self.summary.locations += 1;
        }
        self.known_locations(tx, tenant).await?;
        if let Some(k) = self.known.get_mut(tenant) {
            k.extend(defs.iter().map(|l| l.id.clone()));
        }
        let changed: Vec<Changed> = changed
            .iter()
            .map(|id| Changed::Location(tenant, id))
            .collect();
        rows::append(tx, self.backend, &changed).await?;
        audit(tx, &entries).await?;
        Ok(())
    }

    async fn known_locations(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        tenant: &str,
    ) -> Result<(), StoreError> {
        if self.known.contains_key(tenant) {
            return Ok(());
        }
        let mut ids = HashSet::new();
        let rows = sqlx::query("SELECT id FROM locations WHERE tenant = $1")
            .bind(tenant.to_string())
            .fetch_all(&mut **tx)
            .await?;
        for r in rows {
            ids.insert(r.try_get(0)?);
        }
        self.known.insert(tenant.to_string(), ids);
        Ok(())
    }

    /// Merges a batch of rows of one tenant into their numbers and, while
    /// no row of the upload was refused, writes them.
    pub(super) async fn numbers(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        tenant: &str,
        patches: &[NumberPatch],
    ) -> Result<(), StoreError> {
        self.known_locations(tx, tenant).await?;
        let for_update = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let mut existing: HashMap<String, NumberRow> = HashMap::with_capacity(patches.len());
        for chunk in patches.chunks(1000) {
            let mut sql = format!("SELECT {NUMBER_COLUMNS} FROM numbers WHERE number IN ");
            rows::push_marks(&mut sql, 1, chunk.len(), tx);
            sql.push_str(for_update);
            let mut q = sqlx::query(&sql);
            for p in chunk {
                q = q.bind(p.number.clone());
            }
            for r in q.fetch_all(&mut **tx).await? {
                let n = NumberRow::from_row(&r)?;
                existing.insert(n.number.clone(), n);
            }
        }
        let mut writes = Vec::new();
        for p in patches {
            let old = existing.get(&p.number);
            match merge(p, old, tenant, &self.known[tenant], self.rules) {
                Err(errors) => self.errors.push(RowError {
                    at: p.at,
                    number: Some(p.number.clone()),
                    errors,
                }),
                Ok(new) if old == Some(&new) => self.summary.unchanged += 1,
                Ok(new) => {
                    if old.is_some() {
                        self.summary.updated += 1;
                    } else {
                        self.summary.created += 1;
                    }
                    writes.push((old, new));
                }
            }
        }
        if !self.errors.is_empty() {
            // Nothing will be committed: checking the rest is all that
            // is left to do.
            return Ok(());
        }
        let mut entries = Vec::with_capacity(writes.len() * 3);
        let mut loc_cache: HashMap<String, Option<Address>> = HashMap::new();
        for (old, new) in &writes {
            if old.is_none() && !self.audit_created {
                continue;
            }
            let old_addr = match old {
                Some(o) => effective(tx, &mut loc_cache, o).await?,
                None => None,
            };
            let new_addr = effective(tx, &mut loc_cache, new).await?;
            let subject = &new.number;
            entries.extend(AuditEntry::of(
                self.actor,
                tenant,
                subject,
                "address",
                addr_json(old_addr.as_ref()),
                addr_json(new_addr.as_ref()),
            ));
            entries.extend(AuditEntry::of(
                self.actor,
                tenant,
                subject,
                "capabilities",
                old.map(|o| capabilities_json(&o.capabilities)),
                Some(capabilities_json(&new.capabilities)),
            ));
            entries.extend(AuditEntry::of(
                self.actor,
                tenant,
                subject,
                "common_area_phone",
                old.map(|o| json!(o.common_area_phone)),
                Some(json!(new.common_area_phone)),
            ));
        }
        let rows: Vec<NumberRow> = writes.into_iter().map(|(_, n)| n).collect();
        put_number_rows(tx, &rows, self.now).await?;
        let changed: Vec<Changed> = rows
            .iter()
            .map(|r| Changed::Number(tenant, &r.number))
            .collect();
        rows::append(tx, self.backend, &changed).await?;
        audit(tx, &entries).await?;
        Ok(())
    }
}

/// A row merged into the number it names (`old`, when stored): the new
/// stored row, or what is wrong with it.
fn merge(
    p: &NumberPatch,
    old: Option<&NumberRow>,
    tenant: &str,
    known_locations: &HashSet<String>,
    rules: &AddressRules,
) -> Result<NumberRow, Vec<String>> {
    let mut errors = Vec::new();
    if let Some(o) = old {
        if o.tenant != tenant {
            errors.push(format!(
                "number {} belongs to another tenant; delete it there first",
                p.number
            ));
        }
    }
    let country = p.country.clone().or_else(|| old.map(|o| o.country.clone()));
    if country.is_none() {
        errors.push("no country for a new number".into());
    }
    let location_id = p
        .location_id
        .clone()
        .or_keep(old.and_then(|o| o.location_id.clone()));
    if let Change::Set(Some(id)) = &p.location_id {
        if !known_locations.contains(id) {
            errors.push(format!("location {id:?} is not defined for this tenant"));
        }
    }
    let (own, address_check) = match &p.address {
        Change::Keep => (
            old.and_then(|o| o.address.clone()),
            old.and_then(|o| o.address_check.clone()),
        ),
        Change::Set(None) => (None, None),
        Change::Set(Some(partial)) => match partial.complete(country.as_deref()) {
            Err(e) => {
                errors.push(e);
                (None, None)
            }
            Ok(a) => match rules.check(&a) {
                Ok(check) => (Some(a), Some(check)),
                Err(e) => {
                    errors.push(e.describe("reg_"));
                    (None, None)
                }
            },
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let base = old.map(|o| o.capabilities).unwrap_or_default();
    Ok(NumberRow {
        number: p.number.clone(),
        tenant: tenant.to_string(),
        country: country.unwrap_or_default(),
        common_area_phone: p
            .common_area_phone
            .clone()
            .or_keep(old.is_some_and(|o| o.common_area_phone)),
        capabilities: Capabilities {
            set_address: p.may_set.clone().or_keep(base.set_address),
            change_address: p.may_change.clone().or_keep(base.change_address),
            delete_address: p.may_delete.clone().or_keep(base.delete_address),
        },
        location_id,
        address: own,
        address_check,
    })
}

/// A number's effective address: its own, else its location's.
pub(super) async fn effective(
    tx: &mut Transaction<'_, Any>,
    cache: &mut HashMap<String, Option<Address>>,
    n: &NumberRow,
) -> Result<Option<Address>, StoreError> {
    if let Some(a) = &n.address {
        return Ok(Some(a.clone()));
    }
    let Some(id) = &n.location_id else {
        return Ok(None);
    };
    if let Some(a) = cache.get(id) {
        return Ok(a.clone());
    }
    let a = location_address_in(tx, &n.tenant, id).await?;
    cache.insert(id.clone(), a.clone());
    Ok(a)
}

impl Store {
    /// Applies the upload in `path` (see the module documentation): all of
    /// it, or nothing and the rows at fault. Holds this process's writer
    /// lock throughout. The snapshot is not brought up to date here: the
    /// caller does (or leaves it to the follower).
    pub async fn bulk_upload(
        &self,
        path: &Path,
        format: Format,
        tenants: Tenants,
        actor: &Actor,
        rules: &AddressRules,
        progress: Arc<Progress>,
    ) -> Result<UploadSummary, Refused> {
        let g = self.write_lock.lock().await;
        let (path, actor, rules, backend) = (
            path.to_path_buf(),
            actor.clone(),
            rules.clone(),
            self.backend,
        );
        let result =
            super::worker::run(&self.url, "inventory-upload", move |mut conn| async move {
                Ok(apply_file(
                    &mut conn, &path, format, &tenants, &actor, &rules, backend, &progress,
                )
                .await)
            })
            .await;
        drop(g);
        result.map_err(Refused::Store).and_then(|r| r)
    }
}

/// The two passes of a bulk upload, on the worker's connection.
#[allow(clippy::too_many_arguments)]
async fn apply_file(
    conn: &mut sqlx::AnyConnection,
    path: &Path,
    format: Format,
    tenants: &Tenants,
    actor: &Actor,
    rules: &AddressRules,
    backend: Backend,
    progress: &Progress,
) -> Result<UploadSummary, Refused> {
    use sqlx::Connection;
    // First pass: every row checked on its own, numbers listed once, and
    // the locations the file defines.
    progress.set(Stage::Checking);
    let mut errors = Errors::default();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut seen_odd: HashMap<String, RowRef> = HashMap::new();
    let mut first_at: HashMap<u64, RowRef> = HashMap::new();
    let mut locations: Vec<(String, LocationDef)> = Vec::new();
    let mut location_ids: HashMap<(String, String), RowRef> = HashMap::new();
    let mut rows = 0u64;
    for row in upload::rows_of_file(path, format, tenants).map_err(Refused::Malformed)? {
        rows += 1;
        if rows.is_multiple_of(BATCH as u64) {
            progress.checked.store(rows, Ordering::Relaxed);
        }
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut row_errors = Vec::new();
        if let Some(l) = &row.location {
            let key = (row.tenant.clone(), l.id.clone());
            match location_ids.get(&key) {
                Some(first) => {
                    row_errors.push(format!("location {:?} is already defined at {first}", l.id))
                }
                None => {
                    location_ids.insert(key, l.at);
                }
            }
        }
        if let Some(n) = &row.number {
            let dup = match number_key(&n.number) {
                Some(k) => {
                    if seen.insert(k) {
                        first_at.insert(k, n.at);
                        None
                    } else {
                        first_at.get(&k).copied()
                    }
                }
                None => match seen_odd.get(&n.number) {
                    Some(first) => Some(*first),
                    None => {
                        seen_odd.insert(n.number.clone(), n.at);
                        None
                    }
                },
            };
            if let Some(first) = dup {
                row_errors.push(format!("number {} is already listed at {first}", n.number));
            }
        }
        if !row_errors.is_empty() {
            errors.push(RowError {
                at: row.at,
                number: row.number.as_ref().map(|n| n.number.clone()),
                errors: row_errors,
            });
            continue;
        }
        if let Some(l) = row.location {
            locations.push((row.tenant, l));
        }
    }
    progress.checked.store(rows, Ordering::Relaxed);
    drop((seen, seen_odd, first_at, location_ids));
    if rows == 0 {
        return Err(Refused::Malformed("the upload has no rows".into()));
    }
    if !errors.is_empty() {
        return Err(Refused::Rows {
            listed: errors.listed,
            count: errors.count,
        });
    }

    // Second pass: the locations, then the numbers batch by batch, in one
    // transaction.
    progress.set(Stage::Applying);
    let mut tx = conn.begin().await?;
    bump_version(&mut tx).await?;
    let mut apply = Apply::new(actor, rules, backend);
    apply.audit_created = false;
    let mut by_tenant: HashMap<String, Vec<LocationDef>> = HashMap::new();
    for (t, l) in locations {
        by_tenant.entry(t).or_default().push(l);
    }
    for (t, defs) in &by_tenant {
        apply.locations(&mut tx, t, defs).await?;
    }
    let mut batch: HashMap<String, Vec<NumberPatch>> = HashMap::new();
    let mut in_batch = 0usize;
    let mut applied = 0u64;
    for row in upload::rows_of_file(path, format, tenants).map_err(Refused::Malformed)? {
        let Ok(row) = row else { continue };
        let Some(n) = row.number else { continue };
        batch.entry(row.tenant).or_default().push(n);
        in_batch += 1;
        if in_batch >= BATCH {
            for (t, ns) in batch.drain() {
                apply.numbers(&mut tx, &t, &ns).await?;
            }
            applied += in_batch as u64;
            in_batch = 0;
            progress.applied.store(applied, Ordering::Relaxed);
        }
    }
    for (t, ns) in batch.drain() {
        apply.numbers(&mut tx, &t, &ns).await?;
    }
    progress
        .applied
        .store(applied + in_batch as u64, Ordering::Relaxed);
    if !apply.errors.is_empty() {
        tx.rollback().await?;
        return Err(Refused::Rows {
            listed: apply.errors.listed,
            count: apply.errors.count,
        });
    }
    audit(
        &mut tx,
        &[AuditEntry {
            actor: actor.clone(),
            tenant: match tenants {
                Tenants::One(t) => t.clone(),
                Tenants::PerRow => "*".into(),
            },
            subject: "numbers".into(),
            field: "upload",
            action: "change",
            old: None,
            new: Some(json!({
                "rows": rows,
                "created": apply.summary.created,
                "updated": apply.summary.updated,
                "unchanged": apply.summary.unchanged,
                "locations": apply.summary.locations,
            })),
        }],
    )
    .await?;
    tx.commit().await?;
    Ok(apply.summary)
}

/// The integer of an E.164 number, for remembering millions of them.
fn number_key(n: &str) -> Option<u64> {
    let d = n.strip_prefix('+')?;
    (!d.is_empty() && !d.starts_with('0') && d.len() <= 19 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}
