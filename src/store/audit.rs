//! Audit entries that are not inventory changes: configuration reloads,
//! call record exports and the requests the admin API refused. They go
//! into the same `audit_log` table as the inventory changes (written with
//! those changes, in [`super::numbers`]) and are read back the same way
//! (`GET /v1/audit`).
//!
//! Two kinds of entry are completed after they are first written: an
//! export's, with the number of records sent once the export has ended,
//! and the count of one minute's refused requests from one source.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{now_ms, Actor, Store, StoreError};

/// An entry to write now.
#[derive(Debug, Clone)]
pub struct Note {
    pub actor: Actor,
    /// The tenant concerned, or `*`.
    pub tenant: String,
    pub subject: String,
    /// `configuration`, `records`, `request`.
    pub field: &'static str,
    /// `reload`, `export`, `refused`.
    pub action: &'static str,
    pub new: Value,
}

/// The answer to a reload: applied, or refused with the reason.
pub type ReloadResult = Result<(), String>;

impl Store {
    /// Writes one entry; its id, to complete it later.
    pub async fn audit_note(&self, n: &Note) -> Result<String, StoreError> {
        let at = now_ms();
        let id = format!("{at:013x}-{:08x}-{:06x}", rand::random::<u32>(), 0);
        let _g = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, role, tenant, subject, field, action, old_value, new_value) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)",
        )
        .bind(id.clone())
        .bind(at)
        .bind(n.actor.name.clone())
        .bind(n.actor.role)
        .bind(n.tenant.clone())
        .bind(n.subject.clone())
        .bind(n.field)
        .bind(n.action)
        .bind(n.new.to_string())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Replaces the `new` value of the entry `id` (completes it).
    pub async fn audit_complete(&self, id: &str, new: &Value) -> Result<(), StoreError> {
        let _g = self.write_lock.lock().await;
        sqlx::query("UPDATE audit_log SET new_value = $1 WHERE id = $2")
            .bind(new.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes a configuration reload (`via`: `api`, `SIGHUP`) and what
    /// came of it. A failure is logged: the reload happened either way.
    pub async fn audit_reload(&self, actor: Actor, via: &str, result: &ReloadResult) {
        let new = match result {
            Ok(()) => json!({"via": via, "applied": true}),
            Err(e) => json!({"via": via, "applied": false, "error": e}),
        };
        let note = Note {
            actor,
            tenant: "*".into(),
            subject: "configuration".into(),
            field: "configuration",
            action: "reload",
            new,
        };
        if let Err(e) = self.audit_note(&note).await {
            tracing::error!(error = %e, "a configuration reload could not be written to the audit log");
        }
    }

    /// The reply channel for a reload asked outside the API (SIGHUP): its
    /// answer is written to the audit log by a task of its own, so the
    /// one who asks never waits on the database.
    pub fn audited_reload(
        self: &Arc<Self>,
        actor: Actor,
        via: &'static str,
    ) -> tokio::sync::oneshot::Sender<ReloadResult> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.clone();
        tokio::spawn(async move {
            if let Ok(result) = rx.await {
                store.audit_reload(actor, via, &result).await;
            }
        });
        tx
    }
}
