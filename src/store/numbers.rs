//! Inventory changes: numbers, their registered addresses, tenant
//! locations and security desk webhooks, each written with its audit
//! entries in one transaction, then published (see [`super::Store`]).

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::inventory::{Address, Capabilities, NumberEntry};

use super::address::{self, RequiredFields};
use super::bulk::{effective, Apply};
use super::changelog::{self, Changed};
use super::upload::Upload;
use super::{bump_version, capabilities_json, now_ms, Actor, Store, StoreError};

/// The columns [`NumberRow::from_row`] reads, in its order.
pub const NUMBER_COLUMNS: &str = "number, tenant, country, common_area_phone, may_set_address, \
     may_change_address, may_delete_address, location_id, address_civic, address_lat, address_lon";

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
    format!("SELECT {cols}, l.address_civic, l.address_lat, l.address_lon")
}

/// The address of the number's location in a row of [`joined_select`].
pub fn joined_location(r: &AnyRow) -> Result<Option<Address>, StoreError> {
    let civic: Option<String> = r.try_get(11)?;
    Ok(match civic {
        Some(c) => Some(address::from_db(&c, r.try_get(12)?, r.try_get(13)?)?),
        None => None,
    })
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

    /// The API form; `location` is the address of its location, if any.
    pub fn to_json(&self, location: Option<&Address>) -> Value {
        let (addr, source) = match (&self.address, location) {
            (Some(a), _) => (Some(a), Some("number")),
            (None, Some(l)) if self.location_id.is_some() => (Some(l), Some("location")),
            _ => (None, None),
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
        })
    }
}

/// A tenant location as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationRow {
    pub id: String,
    pub address: Address,
}

impl LocationRow {
    pub fn to_json(&self, tenant: &str) -> Value {
        json!({"tenant": tenant, "id": self.id, "address": address::to_json(&self.address)})
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
    const COLS: usize = 12;
    for chunk in rows.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO numbers (number, tenant, country, common_area_phone, may_set_address, \
             may_change_address, may_delete_address, location_id, address_civic, address_lat, \
             address_lon, updated_ms) VALUES ",
        );
        push_marks(&mut sql, chunk.len(), COLS, tx);
        sql.push_str(
            " ON CONFLICT (number) DO UPDATE SET tenant = excluded.tenant, country = excluded.country, \
             common_area_phone = excluded.common_area_phone, may_set_address = excluded.may_set_address, \
             may_change_address = excluded.may_change_address, may_delete_address = excluded.may_delete_address, \
             location_id = excluded.location_id, address_civic = excluded.address_civic, \
             address_lat = excluded.address_lat, address_lon = excluded.address_lon, updated_ms = excluded.updated_ms",
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
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO locations (tenant, id, address_civic, address_lat, address_lon, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, id) DO UPDATE SET \
         address_civic = excluded.address_civic, address_lat = excluded.address_lat, \
         address_lon = excluded.address_lon, updated_ms = excluded.updated_ms",
    )
    .bind(tenant.to_string())
    .bind(id.to_string())
    .bind(address::civic_text(a))
    .bind(a.point.map(|p| p.0))
    .bind(a.point.map(|p| p.1))
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

/// What a tenant admin wants to do to an address, and the capability it
/// needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressChange {
    Set,
    Change,
    Delete,
}

impl AddressChange {
    pub fn capability(self) -> &'static str {
        match self {
            AddressChange::Set => "set_address",
            AddressChange::Change => "change_address",
            AddressChange::Delete => "delete_address",
        }
    }

    fn allowed(self, c: &Capabilities) -> bool {
        match self {
            AddressChange::Set => c.set_address,
            AddressChange::Change => c.change_address,
            AddressChange::Delete => c.delete_address,
        }
    }
}

impl Store {
    async fn location_address(
        &self,
        conn: &mut sqlx::AnyConnection,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Address>, StoreError> {
        location_address_in(conn, tenant, id).await
    }

    /// One number of a tenant (a number of another tenant is not found),
    /// with its location's address.
    pub async fn number(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<(NumberRow, Option<Address>)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!(
            "SELECT {NUMBER_COLUMNS} FROM numbers WHERE number = $1 AND tenant = $2"
        ))
        .bind(number.to_string())
        .bind(tenant.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let n = NumberRow::from_row(&r)?;
        let loc = match &n.location_id {
            Some(id) => self.location_address(&mut conn, tenant, id).await?,
            None => None,
        };
        Ok(Some((n, loc)))
    }

    /// A page of a tenant's numbers after `after`, in number order, as API
    /// JSON.
    pub async fn numbers_page(
        &self,
        tenant: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let rows = sqlx::query(&format!(
            "{} WHERE n.tenant = $1 AND n.number > $2 ORDER BY n.number LIMIT $3",
            joined_select()
        ))
        .bind(tenant.to_string())
        .bind(after.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let n = NumberRow::from_row(&r)?;
            let loc = joined_location(&r)?;
            out.push((n.number.clone(), n.to_json(loc.as_ref())));
        }
        Ok(out)
    }

    /// Applies an upload to `tenant`, all or nothing.
    pub async fn apply_upload(
        &self,
        tenant: &str,
        up: &Upload,
        actor: &Actor,
        required: &RequiredFields,
    ) -> Result<UploadSummary, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let mut apply = Apply::new(actor, required, self.backend);
        apply.locations(&mut tx, tenant, &up.locations).await?;
        apply.numbers(&mut tx, tenant, &up.numbers).await?;
        if !apply.errors.listed.is_empty() {
            tx.rollback().await?;
            return Err(StoreError::Rows(apply.errors.listed));
        }
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(apply.summary)
    }

    /// After a commit: publish the new snapshot. A failure here leaves the
    /// change committed; the follower loads it on its next poll.
    pub async fn refresh_after_write(&self) {
        if let Err(e) = self.refresh().await {
            tracing::error!(error = %e, "a change was committed but the snapshot could not be rebuilt yet");
        }
    }

    /// Deletes a number of a tenant.
    pub async fn delete_number(
        &self,
        tenant: &str,
        number: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let old = self.locked_number(&mut tx, tenant, number).await?;
        let mut cache = HashMap::new();
        let old_addr = effective(&mut tx, &mut cache, &old).await?;
        sqlx::query("DELETE FROM numbers WHERE number = $1 AND tenant = $2")
            .bind(number.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        changelog::append(&mut tx, self.backend, &[Changed::Number(tenant, number)]).await?;
        let entries: Vec<AuditEntry> = [
            AuditEntry::of(
                actor,
                tenant,
                number,
                "address",
                addr_json(old_addr.as_ref()),
                None,
            ),
            AuditEntry::of(
                actor,
                tenant,
                number,
                "capabilities",
                Some(capabilities_json(&old.capabilities)),
                None,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        audit(&mut tx, &entries).await?;
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(())
    }

    async fn locked_number(
        &self,
        tx: &mut Transaction<'_, Any>,
        tenant: &str,
        number: &str,
    ) -> Result<NumberRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {NUMBER_COLUMNS} FROM numbers WHERE number = $1 AND tenant = $2{}",
            self.for_update()
        ))
        .bind(number.to_string())
        .bind(tenant.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            Some(r) => NumberRow::from_row(&r),
            None => Err(not_found(tenant, number)),
        }
    }

    /// Sets (`Some`) or deletes (`None`) a number's registered address. With
    /// `check_capabilities` (a tenant admin), the number's capabilities must
    /// allow it. The number's location link goes: the address is its own
    /// from now on, or it has none.
    pub async fn set_address(
        &self,
        tenant: &str,
        number: &str,
        new: Option<Address>,
        actor: &Actor,
        check_capabilities: bool,
    ) -> Result<Value, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let old = self.locked_number(&mut tx, tenant, number).await?;
        let mut cache = HashMap::new();
        let old_addr = effective(&mut tx, &mut cache, &old).await?;
        let change = match (&old_addr, &new) {
            (None, Some(_)) => AddressChange::Set,
            (Some(_), Some(_)) => AddressChange::Change,
            (Some(_), None) => AddressChange::Delete,
            (None, None) => {
                return Err(StoreError::NotFound(format!(
                    "number {number} has no registered address"
                )))
            }
        };
        if check_capabilities && !change.allowed(&old.capabilities) {
            let cap = change.capability();
            return Err(StoreError::Forbidden {
                message: format!(
                    "the number's capabilities do not let a tenant admin {} its registered address",
                    cap.trim_end_matches("_address")
                ),
                capability: cap,
            });
        }
        let row = NumberRow {
            address: new.clone(),
            location_id: None,
            ..old.clone()
        };
        put_number_rows(&mut tx, std::slice::from_ref(&row), now_ms()).await?;
        changelog::append(&mut tx, self.backend, &[Changed::Number(tenant, number)]).await?;
        let entries: Vec<AuditEntry> = AuditEntry::of(
            actor,
            tenant,
            number,
            "address",
            addr_json(old_addr.as_ref()),
            addr_json(new.as_ref()),
        )
        .into_iter()
        .collect();
        audit(&mut tx, &entries).await?;
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(row.to_json(None))
    }

    /// A tenant's locations.
    pub async fn locations(&self, tenant: &str) -> Result<Vec<LocationRow>, StoreError> {
        Ok(read_locations(&self.pool, tenant)
            .await?
            .into_iter()
            .map(|l| LocationRow {
                id: l.id,
                address: l.address,
            })
            .collect())
    }

    /// One location of a tenant.
    pub async fn location(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<LocationRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(self
            .location_address(&mut conn, tenant, id)
            .await?
            .map(|address| LocationRow {
                id: id.to_string(),
                address,
            }))
    }

    /// Creates or replaces a location; true when it is new. Numbers that
    /// take their address from it follow.
    pub async fn put_location(
        &self,
        tenant: &str,
        id: &str,
        a: &Address,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let old = self.location_address(&mut tx, tenant, id).await?;
        put_location_row(&mut tx, tenant, id, a, now_ms()).await?;
        if old.as_ref() != Some(a) {
            changelog::append(&mut tx, self.backend, &[Changed::Location(tenant, id)]).await?;
        }
        let entries: Vec<AuditEntry> = AuditEntry::of(
            actor,
            tenant,
            id,
            "location",
            addr_json(old.as_ref()),
            addr_json(Some(a)),
        )
        .into_iter()
        .collect();
        audit(&mut tx, &entries).await?;
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(old.is_none())
    }

    /// Deletes a location no number takes its address from.
    pub async fn delete_location(
        &self,
        tenant: &str,
        id: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let Some(old) = self.location_address(&mut tx, tenant, id).await? else {
            return Err(StoreError::NotFound(format!(
                "no location {id:?} in tenant {tenant:?}"
            )));
        };
        let users: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM numbers WHERE tenant = $1 AND location_id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if users > 0 {
            return Err(StoreError::Conflict(format!(
                "location {id:?} is assigned to {users} number(s); give them another address first"
            )));
        }
        sqlx::query("DELETE FROM locations WHERE tenant = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        changelog::append(&mut tx, self.backend, &[Changed::Location(tenant, id)]).await?;
        let entries: Vec<AuditEntry> =
            AuditEntry::of(actor, tenant, id, "location", addr_json(Some(&old)), None)
                .into_iter()
                .collect();
        audit(&mut tx, &entries).await?;
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(())
    }

    /// A tenant's security desk webhook URL.
    pub async fn security_desk(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT webhook_url FROM security_desks WHERE tenant = $1")
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets (`Some`) or removes (`None`) a tenant's security desk webhook.
    pub async fn set_security_desk(
        &self,
        tenant: &str,
        url: Option<&str>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT webhook_url FROM security_desks WHERE tenant = $1")
                .bind(tenant.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if url.is_none() && old.is_none() {
            return Err(StoreError::NotFound(format!(
                "tenant {tenant:?} has no security desk webhook"
            )));
        }
        match url {
            Some(u) => {
                sqlx::query(
                    "INSERT INTO security_desks (tenant, webhook_url, updated_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant) DO UPDATE SET webhook_url = excluded.webhook_url, updated_ms = excluded.updated_ms",
                )
                .bind(tenant.to_string())
                .bind(u.to_string())
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM security_desks WHERE tenant = $1")
                    .bind(tenant.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        changelog::append(&mut tx, self.backend, &[Changed::Desk(tenant)]).await?;
        let entries: Vec<AuditEntry> = AuditEntry::of(
            actor,
            tenant,
            "security-desk",
            "security_desk",
            old.map(Value::String),
            url.map(|u| Value::String(u.to_string())),
        )
        .into_iter()
        .collect();
        audit(&mut tx, &entries).await?;
        tx.commit().await?;
        drop(g);
        self.refresh_after_write().await;
        Ok(())
    }

    /// A page of the audit log after the cursor `(at_ms, id)`, oldest first.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: (i64, String),
        limit: i64,
    ) -> Result<Vec<((i64, String), Value)>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at_ms, actor, role, tenant, subject, field, action, old_value, new_value \
             FROM audit_log WHERE at_ms >= $1 AND at_ms < $2 AND (at_ms > $3 OR (at_ms = $3 AND id > $4))",
        );
        if filter.tenant.is_some() {
            sql.push_str(" AND tenant = $6");
        }
        sql.push_str(" ORDER BY at_ms, id LIMIT $5");
        let mut q = sqlx::query(&sql)
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(after.0)
            .bind(after.1)
            .bind(limit);
        if let Some(t) = &filter.tenant {
            q = q.bind(t.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0)?;
            let at: i64 = r.try_get(1)?;
            let parse = |v: Option<String>| -> Value {
                v.and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null)
            };
            let v = json!({
                "id": id,
                "at": crate::cdr::rfc3339(at),
                "at_ms": at,
                "actor": r.try_get::<String, _>(2)?,
                "role": r.try_get::<String, _>(3)?,
                "tenant": r.try_get::<String, _>(4)?,
                "subject": r.try_get::<String, _>(5)?,
                "field": r.try_get::<String, _>(6)?,
                "action": r.try_get::<String, _>(7)?,
                "old": parse(r.try_get(8)?),
                "new": parse(r.try_get(9)?),
            });
            out.push(((at, id), v));
        }
        Ok(out)
    }
}

/// Which audit entries to list.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The one answer for a number that is not in a tenant, whether it exists
/// elsewhere or nowhere.
pub fn not_found(tenant: &str, number: &str) -> StoreError {
    StoreError::NotFound(format!("no number {number} in tenant {tenant:?}"))
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
