//! Inventory changes: numbers, their registered addresses, tenant
//! locations and security desk webhooks, each written with its audit
//! entries in one transaction, then published (see [`super::Store`]).

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::{Any, Row, Transaction};

use crate::inventory::address_check::AddressCheck;
use crate::inventory::{Address, Capabilities};

use super::address::AddressRules;
use super::bulk::{effective, Apply};
use super::rows::{
    self, addr_json, audit, joined_location, joined_location_check, joined_select,
    location_address_in, put_location_row, put_number_rows, AuditEntry, Changed, LocationRow,
    NumberRow, UploadSummary, NUMBER_COLUMNS,
};
use super::upload::Upload;
use super::{bump_version, capabilities_json, now_ms, Actor, Store, StoreError};

/// The address of the location a number is linked to, with its check.
pub type LocatedAt = Option<(Address, Option<AddressCheck>)>;

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
    /// with its location's address and that address's check.
    pub async fn number(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<(NumberRow, LocatedAt)>, StoreError> {
        let row = sqlx::query(&format!(
            "{} WHERE n.number = $1 AND n.tenant = $2",
            joined_select()
        ))
        .bind(number.to_string())
        .bind(tenant.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let n = NumberRow::from_row(&r)?;
        let loc =
            joined_location(&r)?.map(|a| Ok::<_, StoreError>((a, joined_location_check(&r)?)));
        Ok(Some((n, loc.transpose()?)))
    }

    /// A page of a tenant's numbers after `after`, in number order, as API
    /// JSON; with `state`, only those whose registered address (their own
    /// or their location's) has that check state (`valid`, `invalid`,
    /// `unchecked`; an address stored before addresses were checked counts
    /// as `unchecked`).
    pub async fn numbers_page(
        &self,
        tenant: &str,
        after: &str,
        limit: i64,
        state: Option<&str>,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let filter = if state.is_some() {
            " AND (CASE WHEN n.address_civic IS NOT NULL THEN COALESCE(n.address_state, 'unchecked') \
             WHEN l.address_civic IS NOT NULL THEN COALESCE(l.address_state, 'unchecked') END) = $4"
        } else {
            ""
        };
        let sql = format!(
            "{} WHERE n.tenant = $1 AND n.number > $2{filter} ORDER BY n.number LIMIT $3",
            joined_select()
        );
        let mut q = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.to_string())
            .bind(limit);
        if let Some(s) = state {
            q = q.bind(s.to_string());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let n = NumberRow::from_row(&r)?;
            let loc = joined_location(&r)?;
            let check = joined_location_check(&r)?;
            let json = n.to_json(loc.as_ref().map(|a| (a, check.as_ref())));
            out.push((n.number.clone(), json));
        }
        Ok(out)
    }

    /// Applies an upload to `tenant`, all or nothing.
    pub async fn apply_upload(
        &self,
        tenant: &str,
        up: &Upload,
        actor: &Actor,
        rules: &AddressRules,
    ) -> Result<UploadSummary, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let mut apply = Apply::new(actor, rules, self.backend);
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
        rows::append(&mut tx, self.backend, &[Changed::Number(tenant, number)]).await?;
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

    /// Sets (`Some`, with its check) or deletes (`None`) a number's
    /// registered address. With
    /// `check_capabilities` (a tenant admin), the number's capabilities must
    /// allow it. The number's location link goes: the address is its own
    /// from now on, or it has none.
    pub async fn set_address(
        &self,
        tenant: &str,
        number: &str,
        new: Option<(Address, AddressCheck)>,
        actor: &Actor,
        check_capabilities: bool,
    ) -> Result<Value, StoreError> {
        let (new, address_check) = match new {
            Some((a, c)) => (Some(a), Some(c)),
            None => (None, None),
        };
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
            address_check,
            location_id: None,
            ..old.clone()
        };
        put_number_rows(&mut tx, std::slice::from_ref(&row), now_ms()).await?;
        rows::append(&mut tx, self.backend, &[Changed::Number(tenant, number)]).await?;
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

    /// A tenant's locations, in id order, with their checks.
    pub async fn locations(&self, tenant: &str) -> Result<Vec<LocationRow>, StoreError> {
        self.location_rows(tenant, None).await
    }

    /// One location of a tenant.
    pub async fn location(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<LocationRow>, StoreError> {
        Ok(self.location_rows(tenant, Some(id)).await?.pop())
    }

    async fn location_rows(
        &self,
        tenant: &str,
        id: Option<&str>,
    ) -> Result<Vec<LocationRow>, StoreError> {
        let one = if id.is_some() { " AND id = $2" } else { "" };
        let sql = format!(
            "SELECT id, address_civic, address_lat, address_lon, address_check FROM locations \
             WHERE tenant = $1{one} ORDER BY id"
        );
        let mut q = sqlx::query(&sql).bind(tenant.to_string());
        if let Some(id) = id {
            q = q.bind(id.to_string());
        }
        let mut out = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            out.push(LocationRow {
                id: r.try_get(0)?,
                address: super::address::from_db(
                    &r.try_get::<String, _>(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                )?,
                address_check: r
                    .try_get::<Option<String>, _>(4)?
                    .as_deref()
                    .and_then(AddressCheck::from_json),
            });
        }
        Ok(out)
    }

    /// Creates or replaces a location; true when it is new. Numbers that
    /// take their address from it follow.
    pub async fn put_location(
        &self,
        tenant: &str,
        id: &str,
        a: &Address,
        check: &AddressCheck,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let old = self.location_address(&mut tx, tenant, id).await?;
        put_location_row(&mut tx, tenant, id, a, Some(check), now_ms()).await?;
        if old.as_ref() != Some(a) {
            rows::append(&mut tx, self.backend, &[Changed::Location(tenant, id)]).await?;
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
        rows::append(&mut tx, self.backend, &[Changed::Location(tenant, id)]).await?;
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
        rows::append(&mut tx, self.backend, &[Changed::Desk(tenant)]).await?;
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
