//! Every metric the router exports: names, label sets and help texts in one
//! place. Dashboards and alert rules in `deploy/` use these names.

use metrics::Counter;

use crate::sip::{Message, Method};
use crate::wire::Proto;

/// (name, help) pairs, described to the exporter at start.
pub const ALL: &[(&str, &str)] = &[
    (BUILD_INFO, "Always 1; labels: version"),
    (
        SIP_RECEIVED,
        "SIP messages received; labels: transport, kind (method or status class)",
    ),
    (SIP_SENT, "SIP messages sent; labels: transport"),
    (
        PARSE_ERRORS,
        "Messages that failed to parse; labels: transport, kind (error kind)",
    ),
    (PARSE_PATH, "Messages parsed; labels: path (fast or full)"),
    (
        REQUESTS_REJECTED,
        "Requests the router answered itself with an error; labels: status",
    ),
    (
        EMERGENCY_CALLS,
        "Emergency and test calls routed; labels: country, route, reason, location_source",
    ),
    (
        EMERGENCY_FAULTS_FORGIVEN,
        "Emergency INVITEs routed although a header the router only passes on is malformed; labels: kind (error kind)",
    ),
    (
        EMERGENCY_ROUTES_REMOVED,
        "Initial emergency requests that came with a preloaded Route set, removed so that the emergency decision alone picks the next hop",
    ),
    (
        ADDITIONS_SKIPPED,
        "Emergency requests too large for the router to add the registered address to (forwarded without it, which the call record says)",
    ),
    (
        FAILOVERS,
        "Failovers from one target to the next; labels: trunk (the one that failed), cause",
    ),
    (
        CALLS,
        "Calls ended; labels: outcome (answered, failed, cancelled)",
    ),
    (HOPS, "INVITEs forwarded to a trunk; labels: trunk"),
    (
        CALL_SETUP,
        "Seconds from INVITE to the final response sent upstream",
    ),
    (
        ROUTING_DECISION,
        "Seconds the routing phase took for one call",
    ),
    (
        NAME_LOOKUPS,
        "Lookups of next hops given by host name; labels: result (ok, failed)",
    ),
    (
        SEND_FAILURES,
        "Messages that could not be sent; labels: transport",
    ),
    (
        INTERNAL_ERRORS,
        "Messages dropped because handling them hit a bug (a panic caught in the core); any is a page",
    ),
    (TRANSACTIONS, "Transactions open"),
    (
        OVERLOAD,
        "Admission state by open transactions: 0 normal, 1 shedding (only emergency calls admitted), 2 full (no new call admitted)",
    ),
    (
        OVERLOAD_REFUSED,
        "New requests refused with 503 for overload; labels: class (emergency, test, other), reason (full, reserved, over_share)",
    ),
    (TCP_CONNECTIONS, "TCP connections open"),
    (TLS_CONNECTIONS, "TLS connections open (handshake done)"),
    (
        TLS_HANDSHAKES,
        "TLS handshakes; labels: direction (inbound, outbound: SIP; https: the admin and metrics listeners), result (ok; the router refused the peer's certificate: unknown_ca, expired, not_yet_valid, name_mismatch, bad_certificate, no_certificate, name_not_allowed (no inbound trunk's tls_names); the peer refused the router's: peer_refused_unknown_ca, peer_refused_expired, peer_refused_certificate; protocol_version, timeout, closed, io, other)",
    ),
    (
        TLS_CERT_EXPIRY,
        "Seconds until a certificate file the router uses for TLS expires (the earliest certificate in the file; negative once expired); labels: role (sip.tls.certificate, sip.tls.ca, trunk NAME tls_ca), path",
    ),
    (
        TRUNK_UP,
        "1 when the trunk is up, 0 otherwise; labels: trunk, kind",
    ),
    (
        TRUNK_STATE,
        "1 for the trunk's current probe state; labels: trunk, kind, state (up, down, probing)",
    ),
    (
        TRUNK_PROBE_LATENCY,
        "Round trip of the last answered OPTIONS probe, seconds; labels: trunk",
    ),
    (TRUNK_TRANSITIONS, "Trunk state changes; labels: trunk, to"),
    (
        TRUNK_UDP_FALLBACKS,
        "Requests sent to a trunk over UDP after it refused the TCP connection they were switched to for their size (RFC 3261 section 18.1.1); labels: trunk",
    ),
    (
        TRUNK_TCP_REFUSED,
        "1 while the trunk is remembered to refuse TCP (its requests go over UDP whatever their size); labels: trunk",
    ),
    (INVENTORY_NUMBERS, "Numbers in the inventory snapshot"),
    (CDR_QUEUE, "Call records waiting to be written"),
    (
        CDR_WRITTEN,
        "Call record writes (a record is written when its call is routed and again as it changes)",
    ),
    (
        CDR_DROPPED,
        "Call records dropped because the queue was full",
    ),
    (
        SECURITY_DESK,
        "Security desk notifications; labels: outcome (sent, failed)",
    ),
    (
        CONFIG_RELOADS,
        "Configuration reloads; labels: outcome (applied, refused)",
    ),
    (
        TCP_REFUSED,
        "TCP and TLS connections closed as soon as accepted; labels: reason (not_allowed, peer_limit), transport (tcp, tls)",
    ),
    (
        TCP_CLOSED,
        "TCP and TLS connections the router closed; labels: transport (tcp, tls), reason (idle, message_timeout: a message not whole within sip.tcp.message_timeout_ms of its first byte, first_message_timeout: no message within sip.tcp.first_message_timeout_ms of the accept, evicted: the least recently used idle one, closed for a new connection when every slot was taken)",
    ),
    (
        HTTP_CONNECTIONS,
        "Connections open on an HTTP listener; labels: listener (admin, metrics)",
    ),
    (
        HTTP_REFUSED,
        "HTTP connections closed as soon as accepted; labels: listener, reason (full: every slot held by a request in progress, peer_limit)",
    ),
    (
        HTTP_CLOSED,
        "HTTP connections the router closed; labels: listener, reason (header_timeout, idle, evicted: the least recently used with no request in progress, closed for a new connection when every slot was taken)",
    ),
    (
        DEREFERENCE_SKIPPED,
        "Calls whose only location was a reference, routed without fetching it; labels: reason (busy, server_busy, not_listed, reserved)",
    ),
    (
        DEREFERENCES,
        "Locations fetched by reference (RFC 6753) before routing; labels: outcome (ok, failed, timeout, too_large)",
    ),
    (
        LOST_QUERIES,
        "LoST (RFC 5222) queries to an ECRF before routing; labels: outcome (ok, failed, timeout, too_large, refused: a server the destination policy does not allow; busy, server_busy, not_url: not sent)",
    ),
    (
        LOST_REFRESHES,
        "Background refreshes of cached LoST mappings near their expiry, sent while calls route on them; labels: outcome (ok: the answer replaced the mapping, failed: no usable answer, the mapping serves until it expires; queue_full, busy, server_busy, not_url: not sent; dropped: the ECRF is no longer configured)",
    ),
    (
        LOST_ROUTES,
        "Emergency calls whose PSAP LoST was asked about, by what chose it; labels: by (lost: the ECRF's answer, lost-cache: a cached mapping, lost-stale: an expired mapping because the ECRF gave nothing usable, embedded: the router's own service-area data)",
    ),
    (
        ANSWERS_WITHHELD,
        "Requests from allowed sources that the router routes nowhere (refused, or OPTIONS to it) and left unanswered, past sip.answers_per_source_per_s",
    ),
    (
        STRANGERS_UNANSWERED,
        "Requests from sources not allowed that got no answer, past sip.stranger_replies_per_s",
    ),
];

pub const BUILD_INFO: &str = "sosrouter_build_info";
pub const SIP_RECEIVED: &str = "sosrouter_sip_messages_received_total";
pub const SIP_SENT: &str = "sosrouter_sip_messages_sent_total";
pub const PARSE_ERRORS: &str = "sosrouter_sip_parse_errors_total";
pub const PARSE_PATH: &str = "sosrouter_sip_parsed_total";
pub const REQUESTS_REJECTED: &str = "sosrouter_requests_rejected_total";
pub const EMERGENCY_CALLS: &str = "sosrouter_emergency_calls_total";
pub const EMERGENCY_FAULTS_FORGIVEN: &str = "sosrouter_emergency_malformed_routed_total";
pub const EMERGENCY_ROUTES_REMOVED: &str = "sosrouter_emergency_preloaded_routes_removed_total";
pub const ADDITIONS_SKIPPED: &str = "sosrouter_emergency_additions_skipped_total";
pub const ANSWERS_WITHHELD: &str = "sosrouter_answers_withheld_total";
pub const FAILOVERS: &str = "sosrouter_failovers_total";
pub const CALLS: &str = "sosrouter_calls_total";
pub const HOPS: &str = "sosrouter_hops_total";
pub const CALL_SETUP: &str = "sosrouter_call_setup_seconds";
pub const ROUTING_DECISION: &str = "sosrouter_routing_decision_seconds";
pub const NAME_LOOKUPS: &str = "sosrouter_name_lookups_total";
pub const SEND_FAILURES: &str = "sosrouter_send_failures_total";
pub const INTERNAL_ERRORS: &str = "sosrouter_internal_errors_total";
pub const TRANSACTIONS: &str = "sosrouter_transactions_open";
pub const OVERLOAD: &str = "sosrouter_overload_state";
pub const OVERLOAD_REFUSED: &str = "sosrouter_overload_refused_total";
pub const TCP_CONNECTIONS: &str = "sosrouter_tcp_connections_open";
pub const TLS_CONNECTIONS: &str = "sosrouter_tls_connections_open";
pub const TLS_HANDSHAKES: &str = "sosrouter_tls_handshakes_total";
pub const TLS_CERT_EXPIRY: &str = "sosrouter_tls_certificate_expiry_seconds";
pub const TRUNK_UP: &str = "sosrouter_trunk_up";
pub const TRUNK_STATE: &str = "sosrouter_trunk_state";
pub const TRUNK_PROBE_LATENCY: &str = "sosrouter_trunk_probe_latency_seconds";
pub const TRUNK_TRANSITIONS: &str = "sosrouter_trunk_state_changes_total";
pub const TRUNK_UDP_FALLBACKS: &str = "sosrouter_trunk_udp_fallbacks_total";
pub const TRUNK_TCP_REFUSED: &str = "sosrouter_trunk_tcp_refused";
pub const INVENTORY_NUMBERS: &str = "sosrouter_inventory_numbers";
pub const CDR_QUEUE: &str = "sosrouter_cdr_queue_depth";
pub const CDR_WRITTEN: &str = "sosrouter_cdr_written_total";
pub const CDR_DROPPED: &str = "sosrouter_cdr_dropped_total";
pub const SECURITY_DESK: &str = "sosrouter_security_desk_notifications_total";
pub const CONFIG_RELOADS: &str = "sosrouter_config_reloads_total";
pub const TCP_REFUSED: &str = "sosrouter_tcp_connections_refused_total";
pub const TCP_CLOSED: &str = "sosrouter_tcp_connections_closed_total";
pub const HTTP_CONNECTIONS: &str = "sosrouter_http_connections_open";
pub const HTTP_REFUSED: &str = "sosrouter_http_connections_refused_total";
pub const HTTP_CLOSED: &str = "sosrouter_http_connections_closed_total";
pub const STRANGERS_UNANSWERED: &str = "sosrouter_stranger_requests_unanswered_total";
pub const DEREFERENCES: &str = "sosrouter_location_fetches_total";
pub const DEREFERENCE_SKIPPED: &str = "sosrouter_location_fetches_skipped_total";
pub const LOST_QUERIES: &str = "sosrouter_lost_queries_total";
pub const LOST_REFRESHES: &str = "sosrouter_lost_refreshes_total";
pub const LOST_ROUTES: &str = "sosrouter_lost_routes_total";

/// Histogram buckets (seconds) for call setup and routing time.
pub const CALL_SETUP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0,
];
pub const ROUTING_BUCKETS: &[f64] = &[
    0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01,
];

/// Request kinds counted apart: every [`Method`] (`Other` is "other"),
/// then the six response classes.
const KINDS: usize = Method::Other as usize + 1 + 6;

fn transport_index(p: Proto) -> usize {
    match p {
        Proto::Udp => 0,
        Proto::Tcp => 1,
        Proto::Tls => 2,
    }
}

/// The `kind` label of a received message: its method, or its status class.
fn kind_of(msg: &Message) -> (usize, &'static str) {
    if msg.is_request() {
        let method = msg.method();
        let label = match method.as_str() {
            "" => "other",
            s => s,
        };
        return (method as usize, label);
    }
    let (i, label) = match msg.status().unwrap_or(0) / 100 {
        1 => (0, "1xx"),
        2 => (1, "2xx"),
        3 => (2, "3xx"),
        4 => (3, "4xx"),
        5 => (4, "5xx"),
        _ => (5, "6xx"),
    };
    (Method::Other as usize + 1 + i, label)
}

/// Handles of the per-message counters, each registered on first use: one
/// registry lookup per label set, not one per message. Build it after the
/// recorder is installed (a handle taken before stays a no-op).
#[derive(Default)]
pub struct MessageCounters {
    received: [[Option<Counter>; KINDS]; 3],
    parsed: [Option<Counter>; 2],
    sent: [Option<Counter>; 3],
}

impl MessageCounters {
    /// A message received and parsed: `SIP_RECEIVED` and `PARSE_PATH`.
    pub fn received(&mut self, proto: Proto, msg: &Message) {
        let (kind, label) = kind_of(msg);
        self.received[transport_index(proto)][kind]
            .get_or_insert_with(
                || metrics::counter!(SIP_RECEIVED, "transport" => proto.lower(), "kind" => label),
            )
            .increment(1);
        let path = msg.parse_path();
        let i = match path {
            crate::sip::ParsePath::Fast => 0,
            crate::sip::ParsePath::Full => 1,
        };
        self.parsed[i]
            .get_or_insert_with(|| metrics::counter!(PARSE_PATH, "path" => path.as_str()))
            .increment(1);
    }

    /// A message handed to a socket: `SIP_SENT`.
    pub fn sent(&mut self, proto: Proto) {
        self.sent[transport_index(proto)]
            .get_or_insert_with(|| metrics::counter!(SIP_SENT, "transport" => proto.lower()))
            .increment(1);
    }
}
