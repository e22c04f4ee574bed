//! The HTTP side of location by reference: the core decides which INVITE
//! waits for a fetch and for how long (`proxy/location.rs`); this performs
//! the fetches it asks for.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics as m;
use crate::proxy::{Core, LocationFetch, LostFailure};
use crate::transport::Inbound;

/// Performs the location fetches the core asks for ([`Core::poll_fetch`]):
/// checks where each may go (`emergency.location_servers`, or no address of
/// the router's own host, link-local or reserved), sends the HELD request
/// off the driver's task, and hands the result back as
/// [`Inbound::Fetched`].
pub(super) struct Fetcher {
    client: Option<reqwest::Client>,
    /// `emergency.location_servers`.
    servers: Option<Arc<[String]>>,
    /// The router's LoST name (`emergency.lost.source`): the source of the
    /// error that stands for a redirect not followed.
    lost_source: Arc<str>,
    refused: crate::logbuf::Throttle,
    tx: mpsc::Sender<Inbound>,
}

impl Fetcher {
    pub(super) fn new(config: &Config, tx: mpsc::Sender<Inbound>) -> Fetcher {
        let (servers, client) = crate::held::policy_client(config, "location fetches");
        let client = match client {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for location fetches: calls are routed without locations given by reference");
                None
            }
        };
        Fetcher {
            client,
            servers,
            lost_source: config.emergency.lost.source_name(&config.emergency).into(),
            refused: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            tx,
        }
    }

    /// Starts `fetch`, or reports at once that there is no document when
    /// its server may not be asked.
    pub(super) fn start(&mut self, fetch: LocationFetch, core: &mut Core, now: Instant) {
        let Some(client) = &self.client else {
            if fetch.lost.is_some() {
                return core.handle_lost_failed(now, fetch.id, LostFailure::Unreachable);
            }
            return core.handle_fetched(now, fetch.id, None);
        };
        if let Some(body) = fetch.lost.clone() {
            return self.start_lost(client.clone(), fetch, body, core, now);
        }
        if !crate::held::host_allowed(&fetch.uri, self.servers.as_deref()) {
            let (reason, why) = if self.servers.is_some() {
                ("not_listed", "not one of emergency.location_servers")
            } else {
                ("reserved", "the router's own host, link-local or multicast, which only emergency.location_servers can allow")
            };
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => reason).increment(1);
            if let Some(calls) = self.refused.hit(now) {
                tracing::warn!(calls, host = %crate::held::host_of(&fetch.uri), why, call_id = %fetch.call_id, "location by reference not fetched; routing without it (count since the last such line)");
            }
            return core.handle_fetched(now, fetch.id, None);
        }
        let (client, tx) = (client.clone(), self.tx.clone());
        tokio::spawn(async move {
            let fetched = crate::held::dereference(&client, &fetch.uri, fetch.timeout).await;
            let document = counted(
                fetched,
                m::DEREFERENCES,
                &fetch.call_id,
                "location by reference not fetched; routing without it",
            );
            let _ = tx
                .send(Inbound::Fetched {
                    id: fetch.id,
                    document,
                })
                .await;
        });
    }

    /// A LoST query (RFC 5222) to an ECRF, under the same destination
    /// policy as location fetches; the answer goes back as
    /// [`Inbound::Fetched`], or why none came as [`Inbound::LostFailed`]. A `<redirect>`
    /// is followed here, within the same deadline
    /// ([`crate::held::lost_query_following`]), so the core sees one
    /// answer: the last server's, or a LoST error from the router itself
    /// when a redirect is not followed.
    fn start_lost(
        &mut self,
        client: reqwest::Client,
        fetch: LocationFetch,
        body: String,
        core: &mut Core,
        now: Instant,
    ) {
        if !crate::held::host_allowed(&fetch.uri, self.servers.as_deref()) {
            metrics::counter!(m::LOST_QUERIES, "outcome" => "refused").increment(1);
            if let Some(calls) = self.refused.hit(now) {
                tracing::warn!(calls, host = %crate::held::host_of(&fetch.uri), call_id = %fetch.call_id, "ECRF not asked: its host is not one emergency.location_servers allows; routing without LoST (count since the last such line)");
            }
            return core.handle_lost_failed(now, fetch.id, LostFailure::NotAllowed);
        }
        let tx = self.tx.clone();
        let (servers, source) = (self.servers.clone(), self.lost_source.clone());
        tokio::spawn(async move {
            let answer = crate::held::lost_query_following(
                &client,
                &fetch.uri,
                body,
                fetch.timeout,
                servers.as_deref(),
                &source,
                |r| {
                    metrics::counter!(m::LOST_QUERIES, "outcome" => "redirect").increment(1);
                    tracing::debug!(call_id = %fetch.call_id, target = %crate::sip::text::Printable(r.target.as_bytes()), from = %crate::sip::text::Printable(r.source.as_bytes()), "LoST redirect");
                },
            )
            .await;
            let answer = match answer {
                Ok(crate::held::LostReply::Answer(b)) => Ok(b),
                Ok(crate::held::LostReply::Stopped(stop, errors)) => {
                    metrics::counter!(m::LOST_QUERIES, "outcome" => stop.outcome()).increment(1);
                    if fetch.refresh {
                        tracing::warn!(
                            why = stop.outcome(),
                            "LoST redirect not followed in the refresh of a cached mapping"
                        );
                    } else {
                        tracing::warn!(call_id = %fetch.call_id, why = stop.outcome(), "LoST redirect not followed; routing on a cached mapping or the embedded data");
                    }
                    let _ = tx
                        .send(Inbound::Fetched {
                            id: fetch.id,
                            document: Some(errors),
                        })
                        .await;
                    return;
                }
                Err(e) => Err(e),
            };
            let outcome = answer.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
            metrics::counter!(m::LOST_QUERIES, "outcome" => outcome).increment(1);
            let inbound = match answer {
                Ok(document) => Inbound::Fetched {
                    id: fetch.id,
                    document: Some(document),
                },
                Err(e) => {
                    // A refresh's failure is told once, by the router that
                    // keeps the mapping.
                    if !fetch.refresh {
                        tracing::warn!(call_id = %fetch.call_id, error = %e, "ECRF gave no answer; routing on a cached mapping or the embedded data");
                    }
                    Inbound::LostFailed {
                        id: fetch.id,
                        why: e.lost_failure(),
                    }
                }
            };
            let _ = tx.send(inbound).await;
        });
    }
}

/// The document of a location fetch or LoST query, counted in `metric` by
/// outcome; a failure is logged with `what` and gives none.
fn counted(
    result: Result<bytes::Bytes, crate::held::FetchError>,
    metric: &'static str,
    call_id: &str,
    what: &'static str,
) -> Option<bytes::Bytes> {
    let outcome = result.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
    metrics::counter!(metric, "outcome" => outcome).increment(1);
    result
        .map_err(|e| tracing::warn!(call_id = %call_id, error = %e, "{what}"))
        .ok()
}
