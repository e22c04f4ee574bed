//! Security desk notification: on each emergency call, an HTTP POST to the
//! caller's tenant's webhook with who called, when, from where and where
//! the call went. Sent off the call's path, with retries and a deadline; a
//! notification never delays a call. Counted and logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::proxy::CallEvent;

/// Webhook URLs by tenant; swapped whole when the configuration or the
/// database changes.
pub type Webhooks = Arc<ArcSwap<HashMap<String, String>>>;

/// What is posted.
#[derive(Debug, Clone)]
struct Notice {
    url: String,
    body: serde_json::Value,
}

/// The sending side. Never blocks: a full queue drops the notice and counts
/// it as failed.
#[derive(Clone)]
pub struct SecurityDesk {
    webhooks: Webhooks,
    /// Webhooks tenant admins set through the admin API (the database);
    /// they win over the configuration's.
    hub: Option<Arc<crate::store::Hub>>,
    tx: mpsc::Sender<Notice>,
}

/// Retry schedule and deadline of one notice.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub attempts: u32,
    pub timeout: Duration,
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(500),
        }
    }
}

impl SecurityDesk {
    /// Starts the sender task.
    pub fn start(
        webhooks: Webhooks,
        policy: Policy,
        hub: Option<Arc<crate::store::Hub>>,
    ) -> SecurityDesk {
        let (tx, mut rx) = mpsc::channel::<Notice>(1024);
        tokio::spawn(async move {
            let client = match reqwest::Client::builder().timeout(policy.timeout).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "security desk notifications disabled: no HTTP client");
                    return;
                }
            };
            while let Some(n) = rx.recv().await {
                let client = client.clone();
                // Each notice on its own task, so one slow desk does not
                // hold up the others.
                tokio::spawn(send(client, n, policy));
            }
        });
        SecurityDesk { webhooks, hub, tx }
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Looks at a call event; a call's start notifies its tenant's desk.
    pub fn on_event(&self, ev: &CallEvent) {
        let CallEvent::Started {
            call_id,
            route,
            reason,
            details: Some(d),
            ..
        } = ev
        else {
            return;
        };
        let Some(tenant) = d.tenant.as_deref() else {
            return;
        };
        let url = self
            .hub
            .as_ref()
            .and_then(|h| h.security_desk(tenant))
            .or_else(|| self.webhooks.load().get(tenant).cloned());
        let Some(url) = url else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let body = json!({
            "event": "emergency-call",
            "tenant": tenant,
            "time": crate::cdr::rfc3339(now_ms),
            "call_id": call_id,
            "caller": d.caller,
            "dialed": d.dialed,
            "kind": d.kind,
            "route": route,
            "reason": reason,
            "psap_id": d.psap_id,
            "location_source": d.location_source,
            "location": d.location.as_ref().map(|l| l.to_json()),
            "registered_address": d.registered_address.as_ref().map(|l| l.to_json()),
        });
        if self.tx.try_send(Notice { url, body }).is_err() {
            metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
            tracing::warn!(%tenant, %call_id, "security desk queue full: notification dropped");
        }
    }
}

async fn send(client: reqwest::Client, n: Notice, policy: Policy) {
    let mut delay = policy.backoff;
    for attempt in 1..=policy.attempts.max(1) {
        match client.post(&n.url).json(&n.body).send().await {
            Ok(r) if r.status().is_success() => {
                metrics::counter!(m::SECURITY_DESK, "outcome" => "sent").increment(1);
                tracing::info!(tenant = %n.body["tenant"], call_id = %n.body["call_id"], attempt, "security desk notified");
                return;
            }
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                attempt,
                "security desk webhook refused the notification"
            ),
            Err(e) => tracing::warn!(error = %e, attempt, "security desk webhook unreachable"),
        }
        if attempt < policy.attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
    tracing::error!(tenant = %n.body["tenant"], call_id = %n.body["call_id"], "security desk notification failed after every attempt");
}

/// Webhooks from the configuration.
pub fn from_config(c: &crate::config::Config) -> HashMap<String, String> {
    c.emergency
        .security_desk
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
