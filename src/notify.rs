//! Security desk notification: on each emergency call, an HTTP POST to the
//! caller's tenant's webhook with who called, when, from where and where
//! the call went. Sent off the call's path, with retries and a deadline; a
//! notification never delays a call. Counted and logged.
//!
//! A webhook a tenant admin sets through the API goes only where the
//! outbound policy allows ([`crate::outbound`]: not the router's own host,
//! link-local, multicast... unless `emergency.webhook_destinations` allows
//! it), checked when set and again on each send, names as they resolve
//! then. No webhook request follows a redirection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics as m;
use crate::proxy::CallEvent;

/// What the configuration says of security desks; swapped whole when it
/// is reloaded.
#[derive(Debug, Clone, Default)]
pub struct Desks {
    /// Webhook URLs by tenant (`emergency.security_desk`): the operator's
    /// own, sent to as written.
    pub urls: HashMap<String, String>,
    /// Where webhooks set through the API may go besides outside addresses
    /// (`emergency.webhook_destinations`).
    pub allowed: crate::outbound::Allowed,
    /// The client certificate shown to desks that ask, and the CAs their
    /// certificates may chain to (`emergency.webhook_client_certificate`,
    /// `emergency.webhook_ca`).
    pub tls: crate::held::ClientTls,
}

pub type Webhooks = Arc<ArcSwap<Desks>>;

/// What is posted.
#[derive(Debug, Clone)]
struct Notice {
    url: String,
    body: serde_json::Value,
    /// Set through the API: sent only where the outbound policy allows.
    checked: bool,
}

/// Notices waiting for a sender.
const QUEUE: usize = 1024;
/// Notices being sent at once. A flood of emergency calls (a storm, an
/// attack) must not become a flood of connections: each notice in flight
/// holds a socket for up to its attempts' timeouts, and the router's own
/// listeners need file descriptors too. Past this, notices wait in the
/// queue; past the queue, they are dropped and counted as failed.
const IN_FLIGHT: usize = 64;

/// The sending side. Never blocks: a full queue drops the notice and counts
/// it as failed.
#[derive(Clone)]
pub struct SecurityDesk {
    webhooks: Webhooks,
    /// Webhooks tenant admins set through the admin API (the database);
    /// they win over the configuration's.
    hub: Option<Arc<crate::store::Hub>>,
    tx: mpsc::Sender<Notice>,
    /// When to warn about notices dropped.
    dropped: Arc<crate::logbuf::SharedThrottle>,
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
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let desks = webhooks.clone();
        tokio::spawn(async move {
            let mut clients: Option<Clients> = None;
            while let Some(n) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                // Built again when a reload brought other certificates.
                let tls = desks.load().tls.clone();
                if clients.as_ref().is_none_or(|c| c.tls != tls) {
                    clients = match Clients::new(&desks, tls, policy) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
                            tracing::error!(error = %e, "security desk notification not sent: no HTTP client");
                            None
                        }
                    };
                }
                let Some(clients) = &clients else {
                    continue;
                };
                let client = if n.checked {
                    clients.checked.clone()
                } else {
                    clients.trusted.clone()
                };
                let desks = desks.clone();
                // Each notice on its own task, so one slow desk does not
                // hold up the others.
                tokio::spawn(async move {
                    send(client, &desks, n, policy).await;
                    drop(permit);
                });
            }
        });
        SecurityDesk {
            webhooks,
            hub,
            tx,
            dropped: Arc::default(),
        }
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Looks at a call event; a call's start notifies its tenant's desk.
    pub fn on_event(&self, ev: &CallEvent) {
        // The desk is looked up first: the notice is built only for a tenant
        // that has one.
        let tenant = match ev {
            CallEvent::Started {
                details: Some(d), ..
            } => d.tenant.as_deref(),
            _ => None,
        };
        let Some(tenant) = tenant else {
            return;
        };
        let set = self.hub.as_ref().and_then(|h| h.security_desk(tenant));
        let checked = set.is_some();
        let Some(url) = set.or_else(|| self.webhooks.load().urls.get(tenant).cloned()) else {
            return;
        };
        let Some(body) = notice(ev) else {
            return;
        };
        self.queue(Notice { url, body, checked });
    }

    /// Queues a notice; false when the queue is full and it is dropped.
    fn queue(&self, n: Notice) -> bool {
        let Err(e) = self.tx.try_send(n) else {
            return true;
        };
        metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
        let n = e.into_inner();
        if let Some(dropped) = self.dropped.hit() {
            tracing::warn!(dropped, tenant = %n.body["tenant"], call_id = %n.body["call_id"], "security desk queue full: notifications dropped (count since the last such line; the latest named)");
        }
        false
    }
}

/// The HTTP clients of notices: for the operator's webhooks, and for the
/// tenants' ones, whose names resolve only to addresses the policy allows.
struct Clients {
    trusted: reqwest::Client,
    checked: reqwest::Client,
    /// What they were built with.
    tls: crate::held::ClientTls,
}

impl Clients {
    fn new(
        desks: &Webhooks,
        tls: crate::held::ClientTls,
        policy: Policy,
    ) -> reqwest::Result<Clients> {
        // A redirection is an answer like any other: the desk is the URL
        // set, and a redirection could lead anywhere.
        let builder = || -> reqwest::Result<reqwest::ClientBuilder> {
            let mut b = reqwest::Client::builder()
                .timeout(policy.timeout)
                .redirect(reqwest::redirect::Policy::none());
            if let Some(pem) = &tls.identity {
                b = b.identity(reqwest::Identity::from_pem(pem)?);
            }
            if let Some(pem) = &tls.roots {
                for c in reqwest::Certificate::from_pem_bundle(pem)? {
                    b = b.add_root_certificate(c);
                }
            }
            Ok(b)
        };
        Ok(Clients {
            trusted: builder()?.build()?,
            checked: builder()?
                .dns_resolver(Arc::new(AllowedOnly(desks.clone())))
                .build()?,
            tls,
        })
    }
}

/// Name resolution for webhooks set through the API: only addresses the
/// outbound policy allows, as configured now.
struct AllowedOnly(Webhooks);

impl reqwest::dns::Resolve for AllowedOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.0.load().allowed.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(allowed.resolve(&host).await?.into_iter());
            Ok(addrs)
        })
    }
}

async fn send(client: reqwest::Client, desks: &Webhooks, n: Notice, policy: Policy) {
    let mut delay = policy.backoff;
    for attempt in 1..=policy.attempts.max(1) {
        if n.checked {
            // Again at each attempt: the configuration may have changed.
            // An IP address is checked here; a name, as it resolves.
            let allowed = desks.load().allowed.clone();
            let verdict = reqwest::Url::parse(&n.url)
                .map_err(|e| e.to_string())
                .and_then(|u| allowed.check_url(&u));
            if let Err(why) = verdict {
                metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
                tracing::error!(tenant = %n.body["tenant"], call_id = %n.body["call_id"], why, "security desk notification not sent: the webhook's destination is refused (emergency.webhook_destinations can allow it)");
                return;
            }
        }
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
            Err(e) => {
                tracing::warn!(error = %crate::held::chain(&e.without_url()), attempt, "security desk webhook unreachable")
            }
        }
        if attempt < policy.attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    metrics::counter!(m::SECURITY_DESK, "outcome" => "failed").increment(1);
    tracing::error!(tenant = %n.body["tenant"], call_id = %n.body["call_id"], "security desk notification failed after every attempt");
}

/// Webhooks and their allowed destinations from the configuration.
pub fn from_config(c: &crate::config::Config) -> Desks {
    Desks {
        urls: c
            .emergency
            .security_desk
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allowed: crate::outbound::Allowed::new(&c.emergency.webhook_destinations),
        tls: crate::held::ClientTls::for_webhooks(c).unwrap_or_else(|e| {
            tracing::error!(error = %e, "security desk webhooks: the TLS files could not be read; notices go without them");
            crate::held::ClientTls::default()
        }),
    }
}

/// What to tell the desk of the tenant of an emergency call.
fn notice(ev: &CallEvent) -> Option<serde_json::Value> {
    let CallEvent::Started {
        call_id,
        route,
        reason,
        details: Some(d),
        refused,
        ..
    } = ev
    else {
        return None;
    };
    let tenant = d.tenant.as_deref()?;
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
        "service": d.service.as_deref(),
        "kind": d.kind,
        "route": route,
        "reason": reason,
        "refused": refused,
        "psap_id": d.psap_id,
        "location_source": d.location_source,
        "location": d.location.as_ref().map(|l| l.to_json()),
        "registered_address": d.registered_address.as_ref().map(|l| l.to_json()),
    });
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn started(tenant: Option<&str>, refused: bool) -> CallEvent {
        let mut ev = crate::proxy::events::example_started(1, Instant::now());
        if let CallEvent::Started {
            details: Some(d),
            refused: r,
            ..
        } = &mut ev
        {
            d.tenant = tenant.map(Into::into);
            *r = refused;
        }
        ev
    }

    #[test]
    fn the_desk_hears_of_every_call_of_its_tenant_refused_ones_marked() {
        let ev = started(Some("acme"), false);
        let body = notice(&ev).unwrap();
        assert_eq!(body["tenant"], "acme");
        assert_eq!(body["caller"], "+12125550142");
        assert_eq!(body["route"], "psap");
        assert_eq!(body["refused"], false);
        // The service the call was routed for, beside what was dialed
        // (none known here).
        assert_eq!(body["dialed"], "911");
        assert_eq!(body["service"], serde_json::Value::Null);
        // Refused for overload: the caller did dial, and the call was not
        // sent on from here.
        let body = notice(&started(Some("acme"), true)).unwrap();
        assert_eq!(body["refused"], true);
        // A police call names its service.
        let mut ev = started(Some("acme"), false);
        if let CallEvent::Started {
            details: Some(d), ..
        } = &mut ev
        {
            d.dialed = "110".into();
            d.service = Some("urn:service:sos.police".into());
        }
        let body = notice(&ev).unwrap();
        assert_eq!(
            (&body["dialed"], &body["service"]),
            (&json!("110"), &json!("urn:service:sos.police"))
        );
        assert!(
            notice(&started(None, false)).is_none(),
            "no tenant, no desk"
        );
    }

    /// A desk that accepts connections and never answers: the notices in
    /// flight stop at the limit, the rest wait in the queue, and what does
    /// not fit is dropped, not spawned.
    #[tokio::test]
    async fn a_silent_desk_holds_no_more_than_the_limit_of_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sos", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open.push(sock);
            }
        });
        let policy = Policy {
            attempts: 1,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(1),
        };
        let desk = SecurityDesk::start(Webhooks::default(), policy, None);
        let total = IN_FLIGHT + QUEUE + 200;
        let mut queued = 0;
        for i in 0..total {
            let body = json!({"tenant": "acme", "call_id": format!("c{i}")});
            if desk.queue(Notice {
                url: url.clone(),
                body,
                checked: false,
            }) {
                queued += 1;
            }
            // Let the sender take some while the queue fills.
            if i % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.load(std::sync::atomic::Ordering::SeqCst) < IN_FLIGHT
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give any notice beyond the limit the time to show up, were it sent.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            IN_FLIGHT
        );
        // At most the queue and what the sender took out of it were kept.
        assert!(
            queued <= QUEUE + IN_FLIGHT + 1,
            "{queued} of {total} queued"
        );
        assert!(queued >= QUEUE, "{queued} of {total} queued");
        held.abort();
    }

    /// A web server that counts requests and answers each with `answer`.
    fn http_server(answer: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            while let Ok((mut s, _)) = l.accept() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = s.read(&mut [0u8; 8192]);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (port, asked)
    }

    fn desks(allowed: &[&str]) -> Webhooks {
        let list: Vec<crate::outbound::Destination> =
            allowed.iter().map(|d| d.parse().unwrap()).collect();
        Arc::new(ArcSwap::from_pointee(Desks {
            urls: HashMap::new(),
            allowed: crate::outbound::Allowed::new(&list),
            tls: Default::default(),
        }))
    }

    fn quick() -> Policy {
        Policy {
            attempts: 2,
            timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(10),
        }
    }

    async fn wait_for(n: &std::sync::atomic::AtomicUsize, want: usize) {
        let end = Instant::now() + Duration::from_secs(5);
        while n.load(std::sync::atomic::Ordering::SeqCst) < want && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A desk the policy allows answers 307 to another port of the
    /// router's own host: the redirection is not followed.
    #[tokio::test]
    async fn a_redirection_from_a_desk_is_not_followed() {
        let (target, target_asked) =
            http_server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into());
        let (hook, hook_asked) = http_server(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target}/v1/reload\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let desk = SecurityDesk::start(desks(&["127.0.0.1"]), quick(), None);
        for checked in [true, false] {
            assert!(desk.queue(Notice {
                url: format!("http://127.0.0.1:{hook}/sos"),
                body: json!({"tenant": "acme", "call_id": "c1"}),
                checked,
            }));
        }
        wait_for(&hook_asked, 4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(hook_asked.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(target_asked.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// A webhook set through the API is checked again when sent: to the
    /// router's own host, by address or by name, nothing is sent unless
    /// the operator allows it; the operator's own webhooks go as written.
    #[tokio::test]
    async fn a_tenants_webhook_to_the_routers_own_host_is_not_sent_to() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (port, asked) = http_server(ok.into());
        let desk = SecurityDesk::start(desks(&[]), quick(), None);
        for url in [
            format!("http://127.0.0.1:{port}/v1/reload"),
            format!("http://[::ffff:127.0.0.1]:{port}/v1/reload"),
            format!("http://2130706433:{port}/v1/reload"),
            format!("http://localhost:{port}/v1/reload"),
            format!("http://localhost.:{port}/v1/reload"),
        ] {
            assert!(desk.queue(Notice {
                url,
                body: json!({"tenant": "acme", "call_id": "c1"}),
                checked: true,
            }));
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The operator's webhook in the configuration goes as written.
        assert!(desk.queue(Notice {
            url: format!("http://127.0.0.1:{port}/sos"),
            body: json!({"tenant": "acme", "call_id": "c2"}),
            checked: false,
        }));
        wait_for(&asked, 1).await;
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Allowed by the operator, by network or by name.
        for (allowed, url) in [
            ("127.0.0.0/8", format!("http://localhost:{port}/sos")),
            ("localhost", format!("http://localhost:{port}/sos")),
        ] {
            let before = asked.load(std::sync::atomic::Ordering::SeqCst);
            let desk = SecurityDesk::start(desks(&[allowed]), quick(), None);
            assert!(desk.queue(Notice {
                url,
                body: json!({"tenant": "acme", "call_id": "c3"}),
                checked: true,
            }));
            wait_for(&asked, before + 1).await;
            assert_eq!(
                asked.load(std::sync::atomic::Ordering::SeqCst),
                before + 1,
                "{allowed}"
            );
        }
    }
}
