//! Every metric the router exports: names and help texts in one place.

/// (name, help) pairs, described to the exporter at start.
pub const ALL: &[(&str, &str)] = &[
    (
        SIP_RECEIVED,
        "SIP messages received, by transport and kind (method or status class)",
    ),
    (SIP_SENT, "SIP messages sent, by transport"),
    (
        PARSE_ERRORS,
        "Messages that failed to parse, by transport and error kind",
    ),
    (PARSE_PATH, "Messages parsed, by parser path (fast or full)"),
    (
        REQUESTS_REJECTED,
        "Requests answered by the router itself with an error, by status",
    ),
    (
        FAILOVERS,
        "Failovers from one target to the next, by trunk and cause",
    ),
    (
        CALLS,
        "Calls routed, by outcome (answered, failed, cancelled)",
    ),
    (HOPS, "Requests forwarded to a trunk, by trunk"),
    (
        SEND_FAILURES,
        "Messages that could not be sent, by transport",
    ),
    (TRANSACTIONS, "Transactions open"),
    (TCP_CONNECTIONS, "TCP connections open"),
];

pub const SIP_RECEIVED: &str = "sosrouter_sip_messages_received_total";
pub const SIP_SENT: &str = "sosrouter_sip_messages_sent_total";
pub const PARSE_ERRORS: &str = "sosrouter_sip_parse_errors_total";
pub const PARSE_PATH: &str = "sosrouter_sip_parsed_total";
pub const REQUESTS_REJECTED: &str = "sosrouter_requests_rejected_total";
pub const FAILOVERS: &str = "sosrouter_failovers_total";
pub const CALLS: &str = "sosrouter_calls_total";
pub const HOPS: &str = "sosrouter_hops_total";
pub const SEND_FAILURES: &str = "sosrouter_send_failures_total";
pub const TRANSACTIONS: &str = "sosrouter_transactions_open";
pub const TCP_CONNECTIONS: &str = "sosrouter_tcp_connections_open";
