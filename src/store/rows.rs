//! The rows of the inventory tables as the store reads and writes them:
//! numbers, tenant locations, audit entries and change log rows, many per
//! statement. Every write path (single changes, uploads of any size, the
//! first import) and every reader (the follower, the export) goes through
//! these, inside the transactions their callers hold.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::inventory::address_check::AddressCheck;
use crate::inventory::{Address, Capabilities, NumberEntry};

use super::address;
use super::{capabilities_json, now_ms, Actor, Backend, StoreError};

/// The PostgreSQL notification channel of inventory changes.
pub const CHANNEL: &str = "sosrouter_inventory";

/// The columns [`NumberRow::from_row`] reads, in its order.
pub const NUMBER_COLUMNS: &str = "number, tenant, country, common_area_phone, may_set_address, \
     may_change_address, may_delete_address, location_id, address_civic, address_lat, address_lon, \
     address_check";

/// How many columns [`joined_columns`] selects: the column after them is
/// the first a caller adds.
pub const JOINED_LEN: usize = 16;

/// `SELECT` of [`NUMBER_COLUMNS`] from `numbers n`, then the address
/// columns of the location it is linked to (`l`, when it exists), as
/// [`joined_location`] reads them.
pub fn joined_select() -> String {
    format!(
        "{} FROM numbers n \
         LEFT JOIN locations l ON l.tenant = n.tenant AND l.id = n.location_id",
        joined_columns()
    )
}

/// `SELECT` and the columns of [`joined_select`], without its tables.
pub fn joined_columns() -> String {
    let cols = NUMBER_COLUMNS
        .split(", ")
        .map(|c| format!("n.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {cols}, l.address_civic, l.address_lat, l.address_lon, l.address_check")
}

/// The address of the number's location in a row of [`joined_select`].
pub fn joined_location(r: &AnyRow) -> Result<Option<Address>, StoreError> {
    let civic: Option<String> = r.try_get(12)?;
    Ok(match civic {
        Some(c) => Some(address::from_db(&c, r.try_get(13)?, r.try_get(14)?)?),
        None => None,
    })
}

/// The check of the number's location's address in a row of
/// [`joined_select`].
pub fn joined_location_check(r: &AnyRow) -> Result<Option<AddressCheck>, StoreError> {
    let text: Option<String> = r.try_get(15)?;
    Ok(text.as_deref().and_then(AddressCheck::from_json))
}

/// A number as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberRow {
    pub number: String,
    pub tenant: String,
    pub country: String,
    pub common_area_phone: bool,
    pub capabilities: Capabilities,
    pub location_id: Option<String>,
    /// Its own address (not its location's).
    pub address: Option<Address>,
    /// What the address checker said of `address` when it was stored
    /// (`None` before addresses were checked, or without an address).
    pub address_check: Option<AddressCheck>,
}

impl NumberRow {
    pub fn from_row(r: &AnyRow) -> Result<NumberRow, StoreError> {
        let flag = |i: usize| -> Result<bool, sqlx::Error> { Ok(r.try_get::<i64, _>(i)? != 0) };
        let civic: Option<String> = r.try_get(8)?;
        Ok(NumberRow {
            number: r.try_get(0)?,
            tenant: r.try_get(1)?,
            country: r.try_get(2)?,
            common_area_phone: flag(3)?,
            capabilities: Capabilities {
                set_address: flag(4)?,
                change_address: flag(5)?,
                delete_address: flag(6)?,
            },
            location_id: r.try_get(7)?,
            address: match civic {
                Some(c) => Some(address::from_db(&c, r.try_get(9)?, r.try_get(10)?)?),
                None => None,
            },
            address_check: r
                .try_get::<Option<String>, _>(11)?
                .as_deref()
                .and_then(AddressCheck::from_json),
        })
    }

    /// The snapshot's entry: the registered address is the number's own,
    /// else its location's (`location`, the address of the location it is
    /// linked to, if that exists), else none.
    pub fn entry(self, location: Option<&Address>) -> NumberEntry {
        let registered = match (self.address, &self.location_id) {
            (Some(a), _) => Some(a),
            (None, Some(_)) => location.cloned(),
            (None, None) => None,
        };
        NumberEntry {
            number: self.number,
            tenant: self.tenant,
            country: self.country,
            common_area_phone: self.common_area_phone,
            capabilities: self.capabilities,
            location_id: self.location_id,
            registered,
        }
    }

    /// The API form; `location` is the address of its location and that
    /// address's check, if any.
    pub fn to_json(&self, location: Option<(&Address, Option<&AddressCheck>)>) -> Value {
        let not_yet = AddressCheck::not_yet();
        let (addr, source, check) = match (&self.address, location) {
            (Some(a), _) => (
                Some(a),
                Some("number"),
                Some(self.address_check.as_ref().unwrap_or(&not_yet)),
            ),
            (None, Some((l, c))) if self.location_id.is_some() => {
                (Some(l), Some("location"), Some(c.unwrap_or(&not_yet)))
            }
            _ => (None, None, None),
        };
        json!({
            "number": self.number,
            "tenant": self.tenant,
            "country": self.country,
            "common_area_phone": self.common_area_phone,
            "capabilities": capabilities_json(&self.capabilities),
            "location_id": self.location_id,
            "address": addr.map(address::to_json),
            "address_source": source,
            "address_check": check.map(AddressCheck::to_json),
        })
    }
}

/// A tenant location as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationRow {
    pub id: String,
    pub address: Address,
    pub address_check: Option<AddressCheck>,
}

impl LocationRow {
    pub fn to_json(&self, tenant: &str) -> Value {
        let check = self
            .address_check
            .clone()
            .unwrap_or_else(AddressCheck::not_yet);
        json!({"tenant": tenant, "id": self.id, "address": address::to_json(&self.address),
               "address_check": check.to_json()})
    }
}

/// One audit log entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub tenant: String,
    /// The number, location id, or `security-desk`.
    pub subject: String,
    /// `address`, `capabilities`, `common_area_phone`, `location`,
    /// `security_desk`, `import`.
    pub field: &'static str,
    /// `create`, `change` or `delete`.
    pub action: &'static str,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

fn action(old: &Option<Value>, new: &Option<Value>) -> &'static str {
    match (old, new) {
        (None, _) => "create",
        (Some(_), None) => "delete",
        _ => "change",
    }
}

impl AuditEntry {
    pub(super) fn of(
        actor: &Actor,
        tenant: &str,
        subject: &str,
        field: &'static str,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Option<AuditEntry> {
        (old != new).then(|| AuditEntry {
            actor: actor.clone(),
            tenant: tenant.to_string(),
            subject: subject.to_string(),
            field,
            action: action(&old, &new),
            old,
            new,
        })
    }
}

/// Writes audit entries (ids sort by time, then by order of writing), many
/// rows per statement.
pub async fn audit(
    tx: &mut Transaction<'_, Any>,
    entries: &[AuditEntry],
) -> Result<(), sqlx::Error> {
    const COLS: usize = 10;
    let at = now_ms();
    let salt: u32 = rand::random();
    for (c, chunk) in entries.chunks(500).enumerate() {
        let mut sql = String::from(
            "INSERT INTO audit_log (id, at_ms, actor, role, tenant, subject, field, action, old_value, new_value) VALUES ",
        );
        push_marks(&mut sql, chunk.len(), COLS, tx);
        let mut q = sqlx::query(&sql);
        for (i, e) in chunk.iter().enumerate() {
            let i = c * 500 + i;
            q = q
                .bind(format!("{at:013x}-{salt:08x}-{i:08x}"))
                .bind(at)
                .bind(e.actor.name.clone())
                .bind(e.actor.role)
                .bind(e.tenant.clone())
                .bind(e.subject.clone())
                .bind(e.field)
                .bind(e.action)
                .bind(e.old.as_ref().map(Value::to_string))
                .bind(e.new.as_ref().map(Value::to_string));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends `rows` groups of `cols` placeholders: `($1,$2),($3,$4)` for
/// PostgreSQL, `(?,?),(?,?)` for SQLite, where a numbered parameter costs
/// a walk through every name of the statement to bind (a statement of
/// thousands of them took minutes).
pub(super) fn push_marks(sql: &mut String, rows: usize, cols: usize, conn: &sqlx::AnyConnection) {
    use std::fmt::Write;
    let numbered = conn.backend_name() != "SQLite";
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ",(" });
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            if numbered {
                let _ = write!(sql, "${}", i * cols + c + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
}

/// Inserts or replaces numbers, many rows per statement.
pub async fn put_number_rows(
    tx: &mut Transaction<'_, Any>,
    rows: &[NumberRow],
    now: i64,
) -> Result<(), sqlx::Error> {
    const COLS: usize = 14;
    for chunk in rows.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO numbers (number, tenant, country, common_area_phone, may_set_address, \
             may_change_address, may_delete_address, location_id, address_civic, address_lat, \
             address_lon, address_state, address_check, updated_ms) VALUES ",
        );
        push_marks(&mut sql, chunk.len(), COLS, tx);
        sql.push_str(
            " ON CONFLICT (number) DO UPDATE SET tenant = excluded.tenant, country = excluded.country, \
             common_area_phone = excluded.common_area_phone, may_set_address = excluded.may_set_address, \
             may_change_address = excluded.may_change_address, may_delete_address = excluded.may_delete_address, \
             location_id = excluded.location_id, address_civic = excluded.address_civic, \
             address_lat = excluded.address_lat, address_lon = excluded.address_lon, \
             address_state = excluded.address_state, address_check = excluded.address_check, \
             updated_ms = excluded.updated_ms",
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            let b = |v: bool| i64::from(v);
            q = q
                .bind(r.number.clone())
                .bind(r.tenant.clone())
                .bind(r.country.clone())
                .bind(b(r.common_area_phone))
                .bind(b(r.capabilities.set_address))
                .bind(b(r.capabilities.change_address))
                .bind(b(r.capabilities.delete_address))
                .bind(r.location_id.clone())
                .bind(r.address.as_ref().map(address::civic_text))
                .bind(r.address.as_ref().and_then(|a| a.point).map(|p| p.0))
                .bind(r.address.as_ref().and_then(|a| a.point).map(|p| p.1))
                .bind(r.address_check.as_ref().map(AddressCheck::state))
                .bind(r.address_check.as_ref().map(AddressCheck::stored_text))
                .bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts or replaces one tenant location.
pub async fn put_location_row(
    tx: &mut Transaction<'_, Any>,
    tenant: &str,
    id: &str,
    a: &Address,
    check: Option<&AddressCheck>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO locations (tenant, id, address_civic, address_lat, address_lon, \
         address_state, address_check, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, id) DO UPDATE SET \
         address_civic = excluded.address_civic, address_lat = excluded.address_lat, \
         address_lon = excluded.address_lon, address_state = excluded.address_state, \
         address_check = excluded.address_check, updated_ms = excluded.updated_ms",
    )
    .bind(tenant.to_string())
    .bind(id.to_string())
    .bind(address::civic_text(a))
    .bind(a.point.map(|p| p.0))
    .bind(a.point.map(|p| p.1))
    .bind(check.map(AddressCheck::state))
    .bind(check.map(AddressCheck::stored_text))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The address of a tenant location, if it exists.
pub(super) async fn location_address_in(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<Address>, StoreError> {
    let row = sqlx::query(
            "SELECT address_civic, address_lat, address_lon FROM locations WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(address::from_db(
            &r.try_get::<String, _>(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
        )?)),
        None => Ok(None),
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UploadSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub locations: usize,
}

pub(super) fn addr_json(a: Option<&Address>) -> Option<Value> {
    a.map(address::to_json)
}

/// A tenant's locations, in id order, through `exec` (the pool, or a
/// connection the caller holds).
pub(super) async fn read_locations<'c, E>(
    exec: E,
    tenant: &str,
) -> Result<Vec<crate::inventory::TenantLocation>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT id, address_civic, address_lat, address_lon FROM locations WHERE tenant = $1 ORDER BY id",
    )
    .bind(tenant.to_string())
    .fetch_all(exec)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(crate::inventory::TenantLocation {
            id: r.try_get(0)?,
            address: address::from_db(&r.try_get::<String, _>(1)?, r.try_get(2)?, r.try_get(3)?)?,
        });
    }
    Ok(out)
}

/// One thing an inventory write changed, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed<'a> {
    /// A number (tenant, number): created, changed or deleted.
    Number(&'a str, &'a str),
    /// A tenant location (tenant, id): created, changed or deleted; the
    /// numbers that take their address from it follow.
    Location(&'a str, &'a str),
    /// A tenant's security desk webhook.
    Desk(&'a str),
}

impl Changed<'_> {
    fn columns(&self) -> (&'static str, &str, &str) {
        match *self {
            Changed::Number(t, n) => ("number", t, n),
            Changed::Location(t, id) => ("location", t, id),
            Changed::Desk(t) => ("desk", t, ""),
        }
    }
}

/// Appends `changed` to the log in the writer's transaction (which has
/// bumped the version row first). On PostgreSQL the instances listening
/// are notified when the transaction commits.
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    changed: &[Changed<'_>],
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let at = now_ms();
    for chunk in changed.chunks(2000) {
        let mut sql =
            String::from("INSERT INTO inventory_changes (kind, tenant, subject, at_ms) VALUES ");
        push_marks(&mut sql, chunk.len(), 4, tx);
        let mut q = sqlx::query(&sql);
        for c in chunk {
            let (kind, tenant, subject) = c.columns();
            q = q
                .bind(kind)
                .bind(tenant.to_string())
                .bind(subject.to_string())
                .bind(at);
        }
        q.execute(&mut **tx).await?;
    }
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {CHANNEL}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
