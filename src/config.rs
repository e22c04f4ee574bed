//! The router's configuration: one TOML file, unknown keys rejected with the
//! key's name. `docs/configuration.md` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The lab configuration shipped with the project; the router runs on it
/// when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/loopback.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<StaticRoute>,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub metrics: Option<ListenConfig>,
    /// The database: number inventory, call records, audit log. Without
    /// this section (and without `SOSROUTER_DATABASE_URL` in the
    /// environment) the router keeps no records and reads its inventory
    /// from `emergency.inventory`.
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub health: HealthSection,
    #[serde(default)]
    pub emergency: EmergencyConfig,
}

/// The emergency router: country rules, number inventory, service areas and
/// the trunks that lead to PSAPs. Relative paths are taken from the working
/// directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencyConfig {
    /// Country rules file (TOML); default: the shipped `config/countries.toml`,
    /// compiled in.
    pub countries: Option<PathBuf>,
    /// Number inventory (TSV or CSV with a header row); default: empty.
    pub inventory: Option<PathBuf>,
    /// A directory with replacement service-area files (`psaps.json`, ...);
    /// default: the data compiled in.
    pub service_areas: Option<PathBuf>,
    /// PSAP id pattern (an exact id, a prefix ending in `*`, or `*`) → trunk.
    /// Default: every PSAP to the first trunk of kind `psap`.
    pub psap_trunks: BTreeMap<String, String>,
    /// Domain written into emergency call and incident identifiers and the
    /// Content-IDs of added body parts; default: the advertised host.
    pub domain: Option<String>,
    /// Security desk webhooks by tenant: on each emergency call of the
    /// tenant's users an HTTP POST goes to the URL (off the call's path,
    /// with retries and a deadline).
    pub security_desk: BTreeMap<String, String>,
    /// How long a call may wait for its location to be fetched by
    /// reference (RFC 6753) before it is routed without it; 0 turns
    /// dereferencing off. Default 1000.
    pub dereference_timeout_ms: Option<u64>,
    /// The location servers a reference may name: host names, IP
    /// addresses, or `.domain` for every host below it. Absent: any.
    pub location_servers: Option<Vec<String>>,
    /// Fetches from one location server at once; a call whose server has
    /// as many under way is routed at once without its location. Default
    /// 4 when any server may be named (no `location_servers`), else only
    /// the overall cap of 256.
    pub location_fetches_per_server: Option<usize>,
    /// Present the router's certificate (`[sip.tls]`) to location servers
    /// that ask for a client certificate.
    pub location_client_certificate: bool,
    /// A CA bundle (PEM) location servers' certificates may chain to,
    /// besides the public web PKI roots.
    pub location_ca: Option<PathBuf>,
    /// Present the router's certificate (`[sip.tls]`) to security desk
    /// webhooks that ask for a client certificate.
    pub webhook_client_certificate: bool,
    /// A CA bundle (PEM) webhook servers' certificates may chain to,
    /// besides the public web PKI roots.
    pub webhook_ca: Option<PathBuf>,
    /// Security desk webhooks set through the admin API may go only to
    /// outside addresses; these destinations (IP addresses, networks, host
    /// names, `.domain`) are allowed besides. Default: none.
    pub webhook_destinations: Vec<crate::outbound::Destination>,
    /// LoST (RFC 5222): the router's own LoST server on the admin
    /// listener.
    pub lost: LostConfig,
}

/// `[emergency.lost]`: LoST (RFC 5222).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LostConfig {
    /// Answer `findService` and `listServicesByLocation` at `POST /lost` on
    /// the admin listener, from the service-area data. Default false.
    pub serve: bool,
    /// The server's name in `source`, `sourceId` and `path` (a dotted host
    /// name, RFC 5222 `appUniqueString`). Default `emergency.domain`, else
    /// `lost.invalid`.
    pub source: Option<String>,
    /// How far ahead the mappings it gives expire, in seconds. Default
    /// 86400 (a day).
    pub expires_s: u64,
    /// The ECRF (LoST server URL, `http://` or `https://`) asked where a
    /// call with a location goes; default none: no LoST query.
    pub ecrf: Option<String>,
    /// An ECRF per country (ISO 3166-1 alpha-2 → URL), before `ecrf`.
    pub countries: BTreeMap<String, String>,
    /// How long a call waits for the ECRF's answer before it is routed on
    /// a cached mapping or the embedded data. Default 300.
    pub timeout_ms: u64,
    /// Mappings kept. Default 4096.
    pub cache_size: usize,
}

impl Default for LostConfig {
    fn default() -> Self {
        LostConfig {
            serve: false,
            source: None,
            expires_s: 86_400,
            ecrf: None,
            countries: BTreeMap::new(),
            timeout_ms: 300,
            cache_size: 4096,
        }
    }
}

impl LostConfig {
    /// The server's `source` name.
    pub fn source_name(&self, emergency: &EmergencyConfig) -> String {
        self.source
            .clone()
            .or_else(|| emergency.domain.clone().filter(|d| app_unique(d)))
            .unwrap_or_else(|| "lost.invalid".to_owned())
    }
}

/// RFC 5222 `appUniqueString`: `([a-zA-Z0-9\-]+\.)+[a-zA-Z0-9]+`.
pub fn app_unique(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Trunk health probes (SIP OPTIONS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Seconds between probes of one trunk; 0 turns probing off.
    pub interval_s: u64,
    /// How long a probe waits for its answer.
    pub timeout_ms: u64,
    /// Failed probes in a row that mark a trunk down.
    pub down_after: u32,
    /// Answered probes in a row that mark it up again.
    pub up_after: u32,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            interval_s: 10,
            timeout_ms: 2000,
            down_after: 3,
            up_after: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Listeners as `udp:ADDR:PORT` / `tcp:ADDR:PORT` / `tls:ADDR:PORT`
    /// (`[v6]:port` for IPv6).
    pub listen: Vec<String>,
    /// `host:port` written into Via and Record-Route; default: the first
    /// listener's address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Other names of the router itself (the FQDNs carriers' health checks
    /// and Route headers use): a URI with one of them as host, with any
    /// user part and with no port or one of the router's ports, names the
    /// router.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Source networks allowed to send requests, besides the trunks'
    /// own addresses.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    #[serde(default)]
    pub timers: TimersConfig,
    #[serde(default)]
    pub tcp: TcpConfig,
    /// Certificates for SIP over TLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub overload: OverloadConfig,
    /// Requests larger than this leave over TCP instead of UDP where the
    /// target allows it (RFC 3261 section 18.1.1).
    #[serde(default = "default_udp_mtu")]
    pub udp_max_request: usize,
    /// Socket receive and send buffer sizes in bytes.
    #[serde(default = "default_socket_buffer")]
    pub socket_buffer: usize,
    /// On SIGTERM: how long calls in progress may take to finish.
    #[serde(default = "default_drain")]
    pub drain_timeout_s: u64,
    /// A next hop given by host name: how long its address is used before
    /// it is looked up again (the old one stays in use meanwhile, and when
    /// the lookup fails).
    #[serde(default = "default_name_refresh")]
    pub name_refresh_s: u64,
    /// How long a host-name lookup may take before it counts as failed.
    #[serde(default = "default_name_timeout")]
    pub name_timeout_ms: u64,
    /// DNS servers for next hops given by name (`ADDR:PORT`); empty: the
    /// system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Most answers per second to requests from sources not allowed (their
    /// 403, or 400 when they do not parse); past it they go unanswered.
    /// `0`: a stranger is never answered.
    #[serde(default = "default_stranger_replies")]
    pub stranger_replies_per_s: u32,
    /// Most answers a second to one allowed source for requests the router
    /// routes nowhere (refusals, its own 200 to OPTIONS), sent without a
    /// transaction; past it such requests are dropped unanswered.
    #[serde(default = "default_answers_per_source")]
    pub answers_per_source_per_s: u32,
}

impl SipConfig {
    pub fn name_settings(&self) -> NameSettings {
        NameSettings {
            refresh: std::time::Duration::from_secs(self.name_refresh_s),
            timeout: std::time::Duration::from_millis(self.name_timeout_ms.max(1)),
        }
    }

    /// The DNS setup for next hops: the servers of `nameservers`, or the
    /// system's.
    pub fn dns_settings(&self) -> DnsSettings {
        DnsSettings {
            nameservers: self.nameservers.clone(),
            timeout: std::time::Duration::from_millis(self.name_timeout_ms.max(1)),
        }
    }
}

/// How next hops given by host name are looked up (`sip.name_refresh_s`,
/// `sip.name_timeout_ms`), as the name cache in `transport::names` takes
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameSettings {
    /// How long an address is used before it is looked up again.
    pub refresh: Duration,
    /// How long a lookup may take before it counts as failed.
    pub timeout: Duration,
}

/// Where next hops' names are looked up (`sip.nameservers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Empty: the system's servers.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
}

impl Default for NameSettings {
    fn default() -> Self {
        NameSettings {
            refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }
    }
}

fn default_name_refresh() -> u64 {
    60
}

fn default_name_timeout() -> u64 {
    2000
}

fn default_drain() -> u64 {
    30
}

fn default_stranger_replies() -> u32 {
    50
}
fn default_answers_per_source() -> u32 {
    1000
}
fn default_udp_mtu() -> usize {
    1300
}
fn default_socket_buffer() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// How long a target may stay without any provisional response before
    /// the next target is tried.
    pub no_answer_ms: u64,
    /// How long a target may ring (provisional responses, no final one)
    /// before it is cancelled and the next target tried; 0: no limit.
    pub ring_timeout_ms: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            no_answer_ms: 3000,
            ring_timeout_ms: 30000,
        }
    }
}

impl TimersConfig {
    pub fn no_answer(&self) -> Duration {
        Duration::from_millis(self.no_answer_ms)
    }
}

/// How much state the router may hold before it refuses new calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Open SIP transactions at which new emergency calls are refused with
    /// 503 (`0`: no limit).
    pub max_transactions: usize,
    /// The share of `max_transactions`, in percent, kept for emergency
    /// calls: test calls and other new requests are refused from
    /// `100 - emergency_reserve_percent` percent on.
    pub emergency_reserve_percent: u8,
    /// Seconds put in the `Retry-After` of the 503 (`0`: none).
    pub retry_after_s: u32,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_transactions: 400_000,
            emergency_reserve_percent: 20,
            retry_after_s: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_s: u64,
    /// How long an outbound connect may take.
    pub connect_timeout_ms: u64,
    /// Most simultaneous connections accepted.
    pub max_connections: usize,
    /// Most simultaneous connections accepted from one IP address (0: no
    /// limit but `max_connections`).
    pub max_connections_per_peer: usize,
    /// How long a message may take to arrive whole, from its first byte;
    /// past it the connection is closed (`0`: no limit).
    pub message_timeout_ms: u64,
    /// How long an accepted connection may stay open without a complete
    /// message (keep-alives do not count) before it is closed (`0`: no
    /// limit). Connections the router opened are never closed for this.
    pub first_message_timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            idle_timeout_s: 300,
            connect_timeout_ms: 2000,
            max_connections: 4096,
            max_connections_per_peer: 512,
            message_timeout_ms: 5000,
            first_message_timeout_ms: 10_000,
        }
    }
}

/// `[sip.tls]`: the router's certificate and the authorities it trusts,
/// for `tls:` listeners and `transport = "tls"` trunks. Files are read at
/// start and again on every reload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The router's certificate chain (PEM, leaf first): served to peers
    /// that connect, and presented to peers that ask for a client
    /// certificate.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The private key of `certificate` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The CA bundle (PEM) that peers' certificates must chain to, unless
    /// a trunk names its own; none: the public web PKI roots for servers
    /// the router connects to, and no client certificate accepted.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Whether a peer connecting over TLS must present a certificate;
    /// otherwise only the trunks with `tls_names` need one.
    #[serde(default)]
    pub require_client_certificate: bool,
    /// How long a TLS handshake may take, inbound or outbound (after the
    /// TCP connect); past it the connection is closed, and an outbound one
    /// counts as the target failing.
    #[serde(default = "default_tls_handshake")]
    pub handshake_timeout_ms: u64,
}

fn default_tls_handshake() -> u64 {
    3000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// `emergency` (the country rules, the default) or `static` (the
    /// `[[route]]` table alone, for labs and proxy tests).
    pub mode: RoutingMode,
    /// Final responses that make the router try the next target (besides
    /// a transport failure and the no-answer timer).
    pub failover_codes: Vec<u16>,
    /// The answer to a call that is not an emergency call.
    pub non_emergency_status: u16,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let mut codes = vec![408, 480];
        codes.extend(500..=599);
        RoutingConfig {
            mode: RoutingMode::Emergency,
            failover_codes: codes,
            non_emergency_status: 403,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    #[default]
    Emergency,
    Static,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkKind {
    /// A carrier sending calls in.
    Inbound,
    Psap,
    Screening,
    Test,
    LastResort,
    /// Any other outbound destination (a static route's target).
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    #[default]
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    pub kind: TrunkKind,
    /// Where requests to this trunk go (outbound kinds).
    #[serde(default)]
    pub uri: Option<String>,
    /// `udp`, `tcp` or `tls`. None (and no `sips:` or `;transport=` in
    /// `uri`): UDP, unless `uri` names a host without a port, whose NAPTR
    /// records then choose (RFC 3263).
    #[serde(default)]
    pub transport: Option<TransportName>,
    /// Whether a large request may switch from UDP to TCP for this trunk.
    #[serde(default = "yes")]
    pub tcp_fallback: bool,
    /// Inbound trunks: the source networks it sends from.
    #[serde(default)]
    pub sources: Vec<IpNet>,
    /// Inbound trunks: the names (DNS subjectAltName, or the subject's
    /// common name) of which the client certificate of a TLS peer must
    /// carry one; such a peer is this trunk wherever it connects from
    /// (within `sources` when both are given).
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Outbound trunks over TLS: the name the server's certificate must
    /// carry; default: the host of `uri`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// A CA bundle (PEM) for this trunk's certificates instead of
    /// `sip.tls.ca`.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Inbound trunks: the country of its callers (ISO 3166 alpha-2).
    #[serde(default)]
    pub country: Option<String>,
    /// Inbound trunks: dial prefixes stripped before number matching.
    #[serde(default)]
    pub strip_prefixes: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A static routing rule: calls to these dial strings go to these trunks,
/// in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// Dialed numbers (digits as dialed, `*` for any).
    pub numbers: Vec<String>,
    pub targets: Vec<String>,
    /// Whether calls on this route are emergency calls (the default): an
    /// emergency call fails over on every final non-2xx answer and gets a
    /// call record; any other call fails over on `routing.failover_codes`.
    #[serde(default = "yes")]
    pub emergency: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen: SocketAddr,
    /// Most connections open at once; past it the least recently used one
    /// with no request in progress is closed, or the new one.
    #[serde(default = "default_metrics_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one IP address (`0`: no limit
    /// but `max_connections`).
    #[serde(default = "default_http_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// How long a request's header block may take to arrive, from its first
    /// byte (on a new connection, from the accept).
    #[serde(default = "default_http_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress and nothing received for
    /// this long is closed.
    #[serde(default = "default_http_idle_timeout")]
    pub idle_timeout_s: u64,
    /// Serve HTTPS with the router's certificate and key (`[sip.tls]`),
    /// re-read with them on reload.
    #[serde(default)]
    pub tls: bool,
}

fn default_metrics_connections() -> usize {
    64
}

fn default_admin_connections() -> usize {
    256
}

fn default_http_connections_per_peer() -> usize {
    32
}

fn default_http_header_read_timeout() -> u64 {
    5000
}

fn default_http_idle_timeout() -> u64 {
    30
}

/// The admin listener: health endpoints, and the operators' API when a
/// database is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer tokens of the API, as `[[admin.token]]` tables.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Registered-address elements (RFC 5139 names) an upload or address
    /// change must give, per country (ISO 3166-1 alpha-2, or `"*"` for every
    /// other country). Replaces the built-in table for the countries named.
    #[serde(default)]
    pub required_address: BTreeMap<String, Vec<String>>,
    /// What becomes of a registered address the address checker finds
    /// invalid, per country (`[admin.address_validation]`).
    #[serde(default)]
    pub address_validation: AddressValidationConfig,
    /// Most connections open at once; past it the least recently used one
    /// with no request in progress is closed, or the new one.
    #[serde(default = "default_admin_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one IP address (`0`: no limit
    /// but `max_connections`).
    #[serde(default = "default_http_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// How long a request's header block may take to arrive, from its first
    /// byte (on a new connection, from the accept).
    #[serde(default = "default_http_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress and nothing received for
    /// this long is closed.
    #[serde(default = "default_http_idle_timeout")]
    pub idle_timeout_s: u64,
    /// Serve HTTPS with the router's certificate and key (`[sip.tls]`),
    /// re-read with them on reload.
    #[serde(default)]
    pub tls: bool,
}

/// What becomes of an address found invalid: kept with a warning (its
/// state says `invalid`) or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressPolicy {
    #[default]
    Warn,
    Refuse,
}

/// `[admin.address_validation]`: the policy for invalid addresses, by
/// default and per country (ISO 3166-1 alpha-2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressValidationConfig {
    pub default: AddressPolicy,
    pub countries: BTreeMap<String, AddressPolicy>,
}

impl AddressValidationConfig {
    /// The policy for addresses in `country`.
    pub fn policy(&self, country: &str) -> AddressPolicy {
        self.countries
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(country))
            .map_or(self.default, |(_, p)| *p)
    }
}

fn default_max_body() -> usize {
    8 * 1024 * 1024
}

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The carrier's staff: every tenant, uploads, exports, the audit log.
    Operator,
    /// A customer's administrator: its own tenant only.
    TenantAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
        }
    }
}

/// One API token: its name (written into the audit log), role, tenant and
/// the SHA-256 of the token (hex). The token itself is never stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub tenant: Option<String>,
    pub sha256: String,
}

/// The environment variable whose PostgreSQL (or SQLite) URL replaces
/// `database.url`, and turns the database on without a `[database]` section.
pub const DATABASE_URL_ENV: &str = "SOSROUTER_DATABASE_URL";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Default:
    /// SQLite in `data_dir`. `SOSROUTER_DATABASE_URL` overrides it.
    pub url: Option<String>,
    /// Where the default SQLite file (`sosrouter.db`) lives, and this
    /// instance's inventory checkpoint (`inventory.checkpoint`).
    pub data_dir: PathBuf,
    /// Keep a copy of the inventory snapshot in `data_dir`
    /// (`inventory.checkpoint`), so that a restart reads it and the changes
    /// made since, in seconds, instead of the whole inventory from the
    /// database.
    pub inventory_checkpoint: bool,
    /// Call records older than this many days are deleted (at start and
    /// daily).
    pub retention_days: u32,
    /// Most connections to the database.
    pub max_connections: u32,
    /// How often other instances' inventory changes are looked for, in ms.
    pub poll_interval_ms: u64,
    /// Inventory change log rows older than this many days are deleted
    /// (hourly); an instance that had not applied them reloads the whole
    /// inventory.
    pub change_log_days: u32,
    /// Call records waiting to be written at most; more are dropped and
    /// counted.
    pub record_queue: usize,
    /// Records written per database transaction at most.
    pub record_batch: usize,
    /// An answered call with no BYE after this many seconds is written as it
    /// is (outcome `answered`, no end time).
    pub open_call_max_s: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            data_dir: PathBuf::from("./sosrouter-data"),
            inventory_checkpoint: true,
            retention_days: 365,
            max_connections: 8,
            poll_interval_ms: 500,
            change_log_days: 7,
            record_queue: 10_000,
            record_batch: 200,
            open_call_max_s: 4 * 3600,
        }
    }
}

impl DatabaseConfig {
    /// The database in use: `[database]` with `SOSROUTER_DATABASE_URL`
    /// over its URL; `None` when neither is there.
    pub fn effective(config: &Config) -> Option<DatabaseConfig> {
        let env = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        match (config.database.clone(), env) {
            (None, None) => None,
            (db, env) => {
                let mut db = db.unwrap_or_default();
                if let Some(url) = env {
                    db.url = Some(url.trim().to_string());
                }
                Some(db)
            }
        }
    }

    /// The URL to connect to (the default SQLite file when none is given).
    pub fn url(&self) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("sosrouter.db").display()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            json: false,
        }
    }
}

/// A listener address with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: TransportName,
    pub addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text)
    }

    pub fn embedded() -> Config {
        Config::from_toml(EMBEDDED_DEFAULT).expect("the shipped configuration is valid")
    }

    /// Cross-checks what serde cannot: listeners parse, names are unique,
    /// every route target is a trunk, outbound trunks have a URI.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.sip.listen.is_empty() {
            return bad("sip.listen: at least one listener is needed".into());
        }
        self.listeners()?;
        if self.sip.overload.emergency_reserve_percent > 100 {
            return bad(format!(
                "sip.overload.emergency_reserve_percent: {} is more than 100",
                self.sip.overload.emergency_reserve_percent
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.trunks {
            if !names.insert(t.name.as_str()) {
                return bad(format!("trunk {:?} is defined twice", t.name));
            }
            match (t.kind, &t.uri) {
                (TrunkKind::Inbound, _) => {
                    if t.sources.is_empty() && t.tls_names.is_empty() {
                        return bad(format!(
                            "trunk {:?}: an inbound trunk needs sources or tls_names",
                            t.name
                        ));
                    }
                }
                (_, None) => {
                    return bad(format!("trunk {:?}: an outbound trunk needs a uri", t.name))
                }
                (_, Some(u)) => {
                    let uri = crate::sip::Uri::parse(u.as_bytes()).map_err(|e| {
                        ConfigError::Invalid(format!(
                            "trunk {:?}: uri {u:?}: {}",
                            t.name,
                            e.as_str()
                        ))
                    })?;
                    if !uri.is_sip() {
                        return bad(format!("trunk {:?}: uri {u:?} is not a sip: URI", t.name));
                    }
                }
            }
        }
        self.check_tls()?;
        for r in &self.routes {
            for target in &r.targets {
                if !names.contains(target.as_str()) {
                    return bad(format!(
                        "route for {:?}: target {target:?} is not a trunk",
                        r.numbers
                    ));
                }
            }
        }
        for (pattern, trunk) in &self.emergency.psap_trunks {
            match self.trunk(trunk) {
                None => {
                    return bad(format!(
                        "emergency.psap_trunks {pattern:?}: {trunk:?} is not a trunk"
                    ))
                }
                Some(t) if t.kind == TrunkKind::Inbound => {
                    return bad(format!(
                        "emergency.psap_trunks {pattern:?}: {trunk:?} is an inbound trunk"
                    ))
                }
                Some(_) => {}
            }
            let star = pattern.find('*');
            if pattern.is_empty() || star.is_some_and(|i| i + 1 != pattern.len()) {
                return bad(format!(
                    "emergency.psap_trunks {pattern:?}: a pattern is an id, a prefix ending in *, or *"
                ));
            }
        }
        if let Some(source) = &self.emergency.lost.source {
            if !app_unique(source) {
                return bad(format!(
                    "emergency.lost.source {source:?}: a dotted host name (letters, digits, hyphens)"
                ));
            }
        }
        for (country, url) in self.emergency.lost.ecrf.iter().map(|u| ("", u)).chain(
            self.emergency
                .lost
                .countries
                .iter()
                .map(|(c, u)| (c.as_str(), u)),
        ) {
            let ok = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return bad(format!(
                    "emergency.lost {}: {url:?} is not an http or https URL",
                    if country.is_empty() {
                        "ecrf".to_owned()
                    } else {
                        format!("countries {country:?}")
                    }
                ));
            }
        }
        if self.emergency.lost.timeout_ms == 0 {
            return bad("emergency.lost.timeout_ms: must be more than 0".into());
        }
        if self.emergency.lost.serve && self.admin.is_none() {
            return bad("emergency.lost.serve: needs the [admin] listener".into());
        }
        if self.sip.timers.t1_ms == 0 || self.sip.timers.no_answer_ms == 0 {
            return bad("sip.timers: t1_ms and no_answer_ms must be above 0".into());
        }
        if let Some(a) = &self.admin {
            check_tokens(&a.tokens)?;
            for (country, fields) in &a.required_address {
                for f in fields {
                    if !crate::pidf::RFC5139_ELEMENTS.contains(&f.as_str()) {
                        return bad(format!(
                            "admin.required_address {country:?}: {f:?} is not an RFC 5139 element"
                        ));
                    }
                }
            }
            for country in a.address_validation.countries.keys() {
                if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return bad(format!(
                        "admin.address_validation.countries {country:?}: not an ISO 3166-1 alpha-2 code"
                    ));
                }
            }
        }
        let http = [
            self.admin.as_ref().map(|a| {
                (
                    "admin",
                    a.max_connections,
                    a.header_read_timeout_ms,
                    a.idle_timeout_s,
                )
            }),
            self.metrics.as_ref().map(|m| {
                (
                    "metrics",
                    m.max_connections,
                    m.header_read_timeout_ms,
                    m.idle_timeout_s,
                )
            }),
        ];
        for (table, max, header, idle) in http.into_iter().flatten() {
            if max == 0 || header == 0 || idle == 0 {
                return bad(format!(
                    "{table}: max_connections, header_read_timeout_ms and idle_timeout_s must be above 0"
                ));
            }
        }
        if let Some(d) = &self.database {
            if d.retention_days == 0 {
                return bad("database.retention_days must be at least 1".into());
            }
            if d.change_log_days == 0 {
                return bad("database.change_log_days must be at least 1".into());
            }
            if d.max_connections == 0 || d.poll_interval_ms == 0 || d.record_batch == 0 {
                return bad(
                    "database: max_connections, poll_interval_ms and record_batch must be above 0"
                        .into(),
                );
            }
            if let Some(u) = &d.url {
                check_database_url(u)?;
            }
        }
        Ok(())
    }

    /// What TLS needs that serde cannot see: a `tls:` listener needs the
    /// router's certificate and key, the one needs the other, and a trunk
    /// identified by certificate needs a CA to check it against. The files
    /// themselves are read by [`crate::transport::tls::TlsSetup::load`].
    fn check_tls(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let tls = self.sip.tls.as_ref();
        let has_listener = self
            .listeners()?
            .iter()
            .any(|l| l.transport == TransportName::Tls);
        if let Some(t) = tls {
            match (&t.certificate, &t.key) {
                (Some(_), None) => return bad("sip.tls: certificate given without key".into()),
                (None, Some(_)) => return bad("sip.tls: key given without certificate".into()),
                _ => {}
            }
            if t.handshake_timeout_ms == 0 {
                return bad("sip.tls.handshake_timeout_ms: must be more than 0".into());
            }
        }
        for (what, wanted) in [
            (
                "emergency.location_client_certificate",
                self.emergency.location_client_certificate,
            ),
            (
                "emergency.webhook_client_certificate",
                self.emergency.webhook_client_certificate,
            ),
        ] {
            if wanted && tls.and_then(|t| t.certificate.as_ref()).is_none() {
                return bad(format!("{what}: needs sip.tls.certificate and sip.tls.key"));
            }
        }
        if has_listener && tls.and_then(|t| t.certificate.as_ref()).is_none() {
            return bad(
                "sip.listen: a tls: listener needs sip.tls.certificate and sip.tls.key".into(),
            );
        }
        for t in &self.trunks {
            if t.tls_names.is_empty() {
                continue;
            }
            if t.kind != TrunkKind::Inbound {
                return bad(format!(
                    "trunk {:?}: tls_names identify inbound trunks; an outbound trunk's server name is tls_server_name",
                    t.name
                ));
            }
            if !has_listener {
                return bad(format!(
                    "trunk {:?}: tls_names needs a tls: listener in sip.listen",
                    t.name
                ));
            }
            if t.tls_ca.is_none() && tls.and_then(|t| t.ca.as_ref()).is_none() {
                return bad(format!(
                    "trunk {:?}: tls_names needs a CA to check client certificates against (tls_ca, or sip.tls.ca)",
                    t.name
                ));
            }
        }
        Ok(())
    }

    pub fn listeners(&self) -> Result<Vec<Listen>, ConfigError> {
        self.sip.listen.iter().map(|l| parse_listen(l)).collect()
    }

    pub fn trunk(&self, name: &str) -> Option<&TrunkConfig> {
        self.trunks.iter().find(|t| t.name == name)
    }
}

/// A database URL names a backend the router speaks.
pub fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let ok = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| url.starts_with(p));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(
            "database url: expected sqlite://PATH or postgres://...".into(),
        ))
    }
}

fn check_tokens(tokens: &[TokenConfig]) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(m));
    let mut names = std::collections::HashSet::new();
    let mut digests = std::collections::HashSet::new();
    for t in tokens {
        if t.name.trim().is_empty() {
            return bad("admin.token: a token needs a name".into());
        }
        if !names.insert(t.name.as_str()) {
            return bad(format!("admin.token {:?} is defined twice", t.name));
        }
        let hex_ok = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            return bad(format!(
                "admin.token {:?}: sha256 must be 64 hex digits",
                t.name
            ));
        }
        if !digests.insert(t.sha256.to_ascii_lowercase()) {
            return bad(format!(
                "admin.token {:?}: the same token digest appears twice",
                t.name
            ));
        }
        match (t.role, &t.tenant) {
            (Role::TenantAdmin, None) => {
                return bad(format!(
                    "admin.token {:?}: a tenant-admin token needs a tenant",
                    t.name
                ))
            }
            (Role::Operator, Some(_)) => {
                return bad(format!(
                    "admin.token {:?}: an operator token has no tenant",
                    t.name
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_listen(s: &str) -> Result<Listen, ConfigError> {
    let (t, addr) = s.split_once(':').ok_or_else(|| {
        ConfigError::Invalid(format!(
            "sip.listen {s:?}: expected udp:ADDR:PORT, tcp:ADDR:PORT or tls:ADDR:PORT"
        ))
    })?;
    let transport = match t {
        "udp" => TransportName::Udp,
        "tcp" => TransportName::Tcp,
        "tls" => TransportName::Tls,
        _ => {
            return Err(ConfigError::Invalid(format!(
                "sip.listen {s:?}: transport must be udp, tcp or tls"
            )))
        }
    };
    let addr = addr
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("sip.listen {s:?}: {e}")))?;
    Ok(Listen { transport, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_loads() {
        let c = Config::embedded();
        assert!(c.trunk("psap").is_some());
        assert!(c.trunk("last-resort").is_some());
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = EMBEDDED_DEFAULT.replace("[sip]", "[sip]\nlisten_typo = 1");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("listen_typo"), "{err}");
    }

    #[test]
    fn overload_section() {
        let c = Config::embedded();
        assert_eq!(c.sip.overload.max_transactions, 400_000);
        let text = format!(
            "{EMBEDDED_DEFAULT}\n[sip.overload]\nmax_transactions = 1000\nemergency_reserve_percent = 30\nretry_after_s = 0\n"
        );
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.sip.overload.max_transactions, 1000);
        assert_eq!(c.sip.overload.emergency_reserve_percent, 30);
        assert_eq!(c.sip.overload.retry_after_s, 0);
        let text = format!("{EMBEDDED_DEFAULT}\n[sip.overload]\nemergency_reserve_percent = 101\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("emergency_reserve_percent"), "{err}");
    }

    #[test]
    fn emergency_section() {
        let c = Config::embedded();
        assert_eq!(
            c.emergency.psap_trunks.get("*").map(String::as_str),
            Some("psap")
        );
        let text = format!("{EMBEDDED_DEFAULT}\n")
            .replace("[emergency]", "[emergency]\ninventori = \"x.tsv\"");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("inventori"), "{err}");
        for (pattern, trunk, want) in [
            ("*", "nowhere", "not a trunk"),
            ("*", "carrier", "inbound"),
            ("SYN-*-1", "psap", "prefix"),
        ] {
            let text = EMBEDDED_DEFAULT
                .replace("\"*\" = \"psap\"", &format!("\"{pattern}\" = \"{trunk}\""));
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{pattern} {trunk}: {err}");
        }
    }

    #[test]
    fn lost_section() {
        let c = Config::embedded();
        assert!(!c.emergency.lost.serve);
        assert_eq!(c.emergency.lost.expires_s, 86_400);
        assert_eq!(
            c.emergency.lost.source_name(&c.emergency),
            c.emergency.domain.clone().unwrap_or("lost.invalid".into())
        );
        let with = |extra: &str| Config::from_toml(&format!("{EMBEDDED_DEFAULT}\n{extra}"));
        let c =
            with("[emergency.lost]\nserve = true\nsource = \"ecrf.example.net\"\nexpires_s = 60")
                .unwrap();
        assert_eq!(
            c.emergency.lost.source_name(&c.emergency),
            "ecrf.example.net"
        );
        for bad in ["ecrf", "ecrf.", "a b.example", "ecrf.exa_mple", ".example"] {
            let err = with(&format!("[emergency.lost]\nsource = {bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("emergency.lost.source"), "{bad}: {err}");
        }
        let mut c = Config::embedded();
        c.emergency.lost.serve = true;
        assert!(c.check().is_ok());
        c.admin = None;
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("needs the [admin] listener"), "{err}");
    }

    #[test]
    fn admin_tokens_and_database() {
        let c = Config::embedded();
        let db = c.database.as_ref().unwrap();
        assert_eq!(db.retention_days, 365);
        assert!(
            db.url().ends_with("sosrouter-data/sosrouter.db"),
            "{}",
            db.url()
        );
        assert!(c.admin.as_ref().unwrap().tokens.is_empty());
        let digest = "0f".repeat(32);
        let with = |table: &str| {
            Config::from_toml(&format!("{EMBEDDED_DEFAULT}\n{table}"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let ok = format!(
            "[[admin.token]]\nname = \"a\"\nrole = \"tenant-admin\"\ntenant = \"acme\"\nsha256 = \"{digest}\"\n"
        );
        // The embedded file has [database] after [admin]: tokens go under it
        // as [[admin.token]] wherever they appear.
        with(&ok).unwrap();
        for (table, want) in [
            (ok.replace("tenant = \"acme\"\n", ""), "needs a tenant"),
            (ok.replace("tenant-admin", "operator"), "has no tenant"),
            (ok.replace(&digest, "abc"), "64 hex"),
            (ok.replace("tenant-admin", "root"), "role"),
            (format!("{ok}{ok}"), "twice"),
        ] {
            let e = with(&table).unwrap_err();
            assert!(e.contains(want), "{table}: {e}");
        }
        let e = Config::from_toml(&EMBEDDED_DEFAULT.replace(
            "retention_days = 365",
            "retention_days = 365\nurl = \"mysql://x\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sqlite://"), "{e}");
    }

    #[test]
    fn route_targets_must_exist() {
        let text =
            format!("{EMBEDDED_DEFAULT}\n[[route]]\nnumbers = [\"1\"]\ntargets = [\"nowhere\"]\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");
    }
}
