//! SIP over TLS: what the TCP pool needs to run a connection over TLS
//! (the framing, limits and writer stay those of [`super::tcp`]). A
//! [`TlsSetup`] is built from `[sip.tls]` and the trunks' TLS keys, every
//! file read and checked, and swapped whole on reload: handshakes from then
//! on use the new certificates, connections already open keep theirs.
//!
//! Only TLS 1.2 and 1.3 are spoken. Peers' certificates chain to
//! `sip.tls.ca` (or a trunk's `tls_ca`); the router presents its own
//! certificate to peers that connect and to servers that ask for a client
//! certificate. An inbound trunk with `tls_names` is identified by the
//! names its client certificate carries, wherever it connects from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::{Config, TrunkKind};
use crate::metrics as m;
use crate::proxy::allow::AllowList;

/// The protocol versions spoken: TLS 1.3 and 1.2, nothing older.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An inbound trunk identified by its client certificate.
struct Identity {
    trunk: Arc<str>,
    /// Lower case.
    names: Vec<String>,
    /// Where it may connect from (empty: anywhere).
    sources: Vec<IpNet>,
    /// Its own CA (`tls_ca`), checked besides the listener's.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// A certificate file the router uses, with its expiry, for the gauge.
#[derive(Debug, Clone)]
pub struct CertExpiry {
    /// What it is: `sip.tls.certificate`, `sip.tls.ca`, `trunk NAME tls_ca`.
    pub role: String,
    pub path: PathBuf,
    /// The earliest `notAfter` of the certificates in the file, Unix
    /// seconds.
    pub not_after: i64,
}

/// Everything TLS needs, built from one configuration.
pub struct TlsSetup {
    /// For `tls:` listeners; `None` without a router certificate.
    server: Option<Arc<ServerConfig>>,
    /// For the admin and metrics listeners with `tls = true`: the same
    /// certificate, HTTP/1.1, no client certificate asked (the API's
    /// tokens say who calls).
    http_server: Option<Arc<ServerConfig>>,
    default_client: Arc<ClientConfig>,
    /// Per server name (lower case), for trunks with a CA of their own.
    clients: HashMap<String, Arc<ClientConfig>>,
    /// The name a server's certificate must carry, per host as the trunk's
    /// URI writes it (lower case), where `tls_server_name` says so.
    server_names: HashMap<String, String>,
    identities: Vec<Identity>,
    pub handshake_timeout: Duration,
    pub expiries: Vec<CertExpiry>,
}

/// What an accepted TLS connection is, once its handshake is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its certificate names this inbound trunk.
    Trunk(Arc<str>),
    /// Taken by its address, as over TCP (`sip.allow`, a trunk's sources).
    ByAddress,
    /// Closed: the reason, for the log and the metric.
    Refused(&'static str),
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path, what)? {
        roots
            .add(c)
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The earliest `notAfter` of `certs`, Unix seconds.
fn not_after(certs: &[CertificateDer<'_>], path: &Path, what: &str) -> Result<i64, String> {
    let mut earliest = i64::MAX;
    for c in certs {
        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| format!("{what} {}: not an X.509 certificate: {e}", path.display()))?;
        earliest = earliest.min(x.validity().not_after.timestamp());
    }
    Ok(earliest)
}

/// The names a certificate carries: its DNS and IP subjectAltNames and its
/// subject's common names, lower case.
pub fn cert_names(der: &[u8]) -> Option<Vec<String>> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    for cn in x.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            names.push(s.to_ascii_lowercase());
        }
    }
    Some(names)
}

/// Whether a name of a certificate (`*.example.net` covers one label)
/// is `wanted` (lower case).
fn name_matches(cert_name: &str, wanted: &str) -> bool {
    let cert_name = cert_name.trim_end_matches('.');
    let wanted = wanted.trim_end_matches('.');
    if cert_name == wanted {
        return true;
    }
    match (cert_name.strip_prefix("*."), wanted.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
        _ => false,
    }
}

impl TlsSetup {
    /// Reads and checks every file the configuration names for TLS: the
    /// router's certificate and key (the key must match the certificate),
    /// the CA bundles. `Ok(None)` when nothing uses TLS.
    pub fn load(cfg: &Config) -> Result<Option<TlsSetup>, String> {
        // The CAs of location servers: read here too, so that a bad file
        // stops a start or a reload with its reason.
        if let Some(p) = &cfg.emergency.location_ca {
            read_certs(p, "emergency.location_ca")?;
        }
        if let Some(p) = &cfg.emergency.webhook_ca {
            read_certs(p, "emergency.webhook_ca")?;
        }
        let listens = cfg
            .listeners()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|l| l.transport == crate::config::TransportName::Tls);
        let trunks_tls = cfg.trunks.iter().any(|t| {
            t.transport == crate::config::TransportName::Tls
                || t.uri.as_deref().is_some_and(|u| {
                    let u = u.to_ascii_lowercase();
                    u.starts_with("sips:") || u.contains(";transport=tls")
                })
        });
        let https = [
            ("admin.tls", cfg.admin.as_ref().is_some_and(|a| a.tls)),
            ("metrics.tls", cfg.metrics.as_ref().is_some_and(|m| m.tls)),
        ];
        if !listens && !trunks_tls && cfg.sip.tls.is_none() && !https.iter().any(|h| h.1) {
            return Ok(None);
        }
        let provider = provider();
        let tls = cfg.sip.tls.clone().unwrap_or(crate::config::TlsConfig {
            certificate: None,
            key: None,
            ca: None,
            require_client_certificate: false,
            handshake_timeout_ms: 3000,
        });
        let mut expiries = Vec::new();
        // The router's own certificate and key.
        let own = match (&tls.certificate, &tls.key) {
            (Some(cp), Some(kp)) => {
                let chain = read_certs(cp, "sip.tls.certificate")?;
                expiries.push(CertExpiry {
                    role: "sip.tls.certificate".into(),
                    path: cp.clone(),
                    not_after: not_after(&chain[..1], cp, "sip.tls.certificate")?,
                });
                let key = PrivateKeyDer::from_pem_file(kp)
                    .map_err(|e| format!("sip.tls.key {}: {e}", kp.display()))?;
                CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
                    format!(
                        "sip.tls.key {}: does not fit sip.tls.certificate {}: {e}",
                        kp.display(),
                        cp.display()
                    )
                })?;
                Some((chain, key))
            }
            _ => None,
        };
        let global_roots = match &tls.ca {
            Some(p) => {
                let certs = read_certs(p, "sip.tls.ca")?;
                expiries.push(CertExpiry {
                    role: "sip.tls.ca".into(),
                    path: p.clone(),
                    not_after: not_after(&certs, p, "sip.tls.ca")?,
                });
                Some(Arc::new(read_roots(p, "sip.tls.ca")?))
            }
            None => None,
        };
        let mut trunk_roots: HashMap<&str, Arc<RootCertStore>> = HashMap::new();
        for t in &cfg.trunks {
            if let Some(p) = &t.tls_ca {
                let what = format!("trunk {:?} tls_ca", t.name);
                let certs = read_certs(p, &what)?;
                expiries.push(CertExpiry {
                    role: format!("trunk {} tls_ca", t.name),
                    path: p.clone(),
                    not_after: not_after(&certs, p, &what)?,
                });
                trunk_roots.insert(&t.name, Arc::new(read_roots(p, &what)?));
            }
        }
        // Inbound: the client certificates accepted chain to the global CA
        // or to any inbound trunk's own.
        let mut client_roots = RootCertStore::empty();
        if let Some(r) = &global_roots {
            client_roots.roots.extend(r.roots.iter().cloned());
        }
        let mut identities = Vec::new();
        for t in cfg.trunks.iter().filter(|t| t.kind == TrunkKind::Inbound) {
            let own_roots = trunk_roots.get(t.name.as_str());
            if let Some(r) = own_roots {
                client_roots.roots.extend(r.roots.iter().cloned());
            }
            if t.tls_names.is_empty() {
                continue;
            }
            let verifier = match own_roots {
                Some(r) => Some(
                    WebPkiClientVerifier::builder_with_provider(r.clone(), provider.clone())
                        .build()
                        .map_err(|e| format!("trunk {:?} tls_ca: {e}", t.name))?,
                ),
                None => None,
            };
            identities.push(Identity {
                trunk: t.name.as_str().into(),
                names: t.tls_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                sources: t.sources.clone(),
                verifier,
            });
        }
        let server = match &own {
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(VERSIONS)
                    .map_err(|e| format!("sip.tls: {e}"))?;
                let builder = if client_roots.is_empty() {
                    if tls.require_client_certificate {
                        return Err(
                            "sip.tls.require_client_certificate: needs sip.tls.ca to check them against"
                                .into(),
                        );
                    }
                    builder.with_no_client_auth()
                } else {
                    let v = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(client_roots),
                        provider.clone(),
                    );
                    let v = if tls.require_client_certificate {
                        v
                    } else {
                        v.allow_unauthenticated()
                    };
                    builder.with_client_cert_verifier(
                        v.build().map_err(|e| format!("sip.tls.ca: {e}"))?,
                    )
                };
                let config = builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("sip.tls.certificate: {e}"))?;
                Some(Arc::new(config))
            }
            None => None,
        };
        let http_server = match &own {
            Some((chain, key)) => {
                let mut config = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(VERSIONS)
                    .map_err(|e| format!("sip.tls: {e}"))?
                    .with_no_client_auth()
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("sip.tls.certificate: {e}"))?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(Arc::new(config))
            }
            None => {
                if let Some((what, _)) = https.iter().find(|h| h.1) {
                    return Err(format!(
                        "{what}: needs sip.tls.certificate and sip.tls.key, the certificate it serves"
                    ));
                }
                None
            }
        };
        let client_config = |roots: Arc<RootCertStore>| -> Result<Arc<ClientConfig>, String> {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(VERSIONS)
                .map_err(|e| format!("sip.tls: {e}"))?
                .with_root_certificates(roots);
            let config = match &own {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("sip.tls.certificate: {e}"))?,
                None => builder.with_no_client_auth(),
            };
            Ok(Arc::new(config))
        };
        let default_roots = global_roots.clone().unwrap_or_else(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        });
        let default_client = client_config(default_roots)?;
        let mut clients = HashMap::new();
        let mut server_names = HashMap::new();
        for t in cfg.trunks.iter().filter(|t| t.kind != TrunkKind::Inbound) {
            let Some(host) = t.uri.as_deref().and_then(uri_host) else {
                continue;
            };
            let name = t
                .tls_server_name
                .clone()
                .unwrap_or_else(|| host.clone())
                .to_ascii_lowercase();
            if ServerName::try_from(name.clone()).is_err() {
                return Err(format!(
                    "trunk {:?}: {name:?} is not a name or address a server certificate can carry",
                    t.name
                ));
            }
            if name != host {
                server_names.insert(host, name.clone());
            }
            if let Some(r) = trunk_roots.get(t.name.as_str()) {
                clients.insert(name, client_config(r.clone())?);
            }
        }
        let now = UnixTime::now().as_secs() as i64;
        for e in expiries.iter().filter(|e| e.not_after <= now) {
            // Loaded all the same: UDP and TCP go on, and the alert on the
            // gauge says it before this line does.
            tracing::warn!(role = %e.role, path = %e.path.display(), "tls: certificate file expired: peers will refuse handshakes that rely on it");
        }
        Ok(Some(TlsSetup {
            server,
            http_server,
            default_client,
            clients,
            server_names,
            identities,
            handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms.max(1)),
            expiries,
        }))
    }

    /// The server side, for `tls:` listeners.
    pub fn server(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// The server side of the HTTPS listeners (admin, metrics).
    pub fn http_server(&self) -> Option<Arc<ServerConfig>> {
        self.http_server.clone()
    }

    /// The name a server reached as `host` (a URI's host, an address) must
    /// carry in its certificate, and the client configuration to check it
    /// with.
    pub fn client_for(&self, host: &str) -> (String, Arc<ClientConfig>) {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let name = self.server_names.get(&host).cloned().unwrap_or(host);
        let config = self
            .clients
            .get(&name)
            .cloned()
            .unwrap_or_else(|| self.default_client.clone());
        (name, config)
    }

    /// Whether a connection from `ip` may go on to its handshake though its
    /// address is not allowed: some trunk identified by certificate may
    /// connect from there.
    pub fn may_connect(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.identities
            .iter()
            .any(|i| i.sources.is_empty() || i.sources.iter().any(|n| n.contains(&ip)))
    }

    /// What an accepted connection from `ip` is, by the certificate chain
    /// it presented (already checked against the CAs by the handshake) and
    /// its address.
    pub fn identify(
        &self,
        ip: IpAddr,
        chain: Option<&[CertificateDer<'static>]>,
        allowed: &AllowList,
    ) -> Verdict {
        let ip = ip.to_canonical();
        if let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) {
            let Some(names) = cert_names(leaf.as_ref()) else {
                return Verdict::Refused("bad_certificate");
            };
            let mut wrong_ca = false;
            for id in &self.identities {
                if !(id.sources.is_empty() || id.sources.iter().any(|n| n.contains(&ip))) {
                    continue;
                }
                if !names
                    .iter()
                    .any(|n| id.names.iter().any(|w| name_matches(n, w)))
                {
                    continue;
                }
                if let Some(v) = &id.verifier {
                    if v.verify_client_cert(leaf, rest, UnixTime::now()).is_err() {
                        wrong_ca = true;
                        continue;
                    }
                }
                return Verdict::Trunk(id.trunk.clone());
            }
            if allowed.contains(ip) {
                return Verdict::ByAddress;
            }
            return Verdict::Refused(if wrong_ca {
                "unknown_ca"
            } else {
                "name_not_allowed"
            });
        }
        if allowed.contains(ip) {
            Verdict::ByAddress
        } else {
            Verdict::Refused("no_certificate")
        }
    }

    /// Sets the expiry gauge: seconds left for each certificate file
    /// (negative once expired), as of now.
    pub fn publish_expiry_now(&self) {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.publish_expiry(unix);
    }

    /// Sets the expiry gauge: seconds left for each certificate file
    /// (negative once expired).
    pub fn publish_expiry(&self, now_unix: i64) {
        for e in &self.expiries {
            metrics::gauge!(m::TLS_CERT_EXPIRY, "role" => e.role.clone(), "path" => e.path.display().to_string())
                .set((e.not_after - now_unix) as f64);
        }
    }
}

/// The host of a `sip:`/`sips:` URI, lower case, without brackets.
fn uri_host(uri: &str) -> Option<String> {
    let u = crate::sip::Uri::parse(uri.as_bytes()).ok()?;
    let host = String::from_utf8_lossy(u.host);
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

/// The TLS setup in use, swapped whole on reload.
pub struct TlsContext {
    current: ArcSwap<TlsSetup>,
}

impl TlsContext {
    pub fn new(setup: TlsSetup) -> Arc<TlsContext> {
        Arc::new(TlsContext {
            current: ArcSwap::from_pointee(setup),
        })
    }

    pub fn current(&self) -> Arc<TlsSetup> {
        self.current.load_full()
    }

    /// New certificates for the handshakes from now on.
    pub fn replace(&self, setup: TlsSetup) {
        self.current.store(Arc::new(setup));
    }
}

/// Why a handshake failed, as the metric's `result` label: the fault in
/// the peer's certificate when the router refused it, the peer's alert
/// when the peer refused the router's.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "closed";
    }
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return "io";
    };
    match err {
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "not_yet_valid",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_ca",
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "name_mismatch"
        }
        E::InvalidCertificate(_) => "bad_certificate",
        E::NoCertificatesPresented => "no_certificate",
        E::AlertReceived(A::CertificateExpired) => "peer_refused_expired",
        E::AlertReceived(A::UnknownCA) => "peer_refused_unknown_ca",
        E::AlertReceived(
            A::BadCertificate | A::CertificateUnknown | A::CertificateRequired | A::AccessDenied,
        ) => "peer_refused_certificate",
        E::AlertReceived(A::ProtocolVersion) | E::PeerIncompatible(_) => "protocol_version",
        _ => "other",
    }
}

/// The reasons a handshake fails that get log lines of their own: each is
/// throttled apart, so that a flood of one does not hide another.
const REASONS: [&str; 8] = [
    "unknown_ca",
    "expired",
    "name_mismatch",
    "name_not_allowed",
    "no_certificate",
    "timeout",
    "peer_refused_certificate",
    "",
];

/// Counts and logs a handshake that failed; `direction` is `inbound` or
/// `outbound`. At most one line per reason and direction every
/// [`crate::logbuf::TELL_EVERY`], the others at debug.
pub fn handshake_failed(
    direction: &'static str,
    peer: std::net::SocketAddr,
    reason: &'static str,
    detail: &str,
) {
    metrics::counter!(m::TLS_HANDSHAKES, "direction" => direction, "result" => reason).increment(1);
    static TELL: std::sync::LazyLock<[crate::logbuf::SharedThrottle; 2 * REASONS.len()]> =
        std::sync::LazyLock::new(Default::default);
    let kind = REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REASONS.len() - 1);
    let slot = kind + usize::from(direction == "outbound") * REASONS.len();
    if let Some(failed) = TELL[slot].hit() {
        tracing::warn!(failed, direction, %peer, reason, error = detail, "tls handshake failed: connection closed (count since the last such line; the latest named)");
    } else {
        tracing::debug!(direction, %peer, reason, error = detail, "tls handshake failed");
    }
}

/// Counts a handshake that succeeded.
pub fn handshake_ok(direction: &'static str) {
    metrics::counter!(m::TLS_HANDSHAKES, "direction" => direction, "result" => "ok").increment(1);
}

/// What `check-config` says of TLS: every file read and checked as at a
/// start, plus what only warns at a start: the router's certificate must
/// chain to `sip.tls.ca` (when given) and none may have expired.
pub fn check(cfg: &Config, now_unix: i64) -> Result<Vec<String>, String> {
    let Some(setup) = TlsSetup::load(cfg)? else {
        return Ok(vec!["tls: not used".into()]);
    };
    let mut out = Vec::new();
    for e in &setup.expiries {
        let left = e.not_after - now_unix;
        if left <= 0 {
            return Err(format!("{} {}: expired", e.role, e.path.display()));
        }
        out.push(format!(
            "tls: {} {} expires in {} days",
            e.role,
            e.path.display(),
            left / 86_400
        ));
    }
    if let Some(tls) = &cfg.sip.tls {
        if let (Some(cp), Some(ca)) = (&tls.certificate, &tls.ca) {
            let chain = read_certs(cp, "sip.tls.certificate")?;
            let roots = Arc::new(read_roots(ca, "sip.tls.ca")?);
            let names = cert_names(chain[0].as_ref()).unwrap_or_default();
            let name = names
                .iter()
                .find_map(|n| ServerName::try_from(n.clone()).ok())
                .ok_or_else(|| {
                    format!(
                        "sip.tls.certificate {}: carries no name (subjectAltName)",
                        cp.display()
                    )
                })?;
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| format!("sip.tls.ca: {e}"))?;
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
                .map_err(|e| {
                    format!(
                        "sip.tls.certificate {}: does not chain to sip.tls.ca {}: {e}",
                        cp.display(),
                        ca.display()
                    )
                })?;
        }
    }
    out.push(format!(
        "tls: {} inbound trunk(s) identified by certificate",
        setup.identities.len()
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_match_exactly_or_by_one_wildcard_label() {
        // (name in the certificate, name wanted, match)
        let cases = [
            ("edge.carrier.example", "edge.carrier.example", true),
            ("edge.carrier.example.", "edge.carrier.example", true),
            ("*.carrier.example", "edge.carrier.example", true),
            ("*.carrier.example", "a.edge.carrier.example", false),
            ("*.carrier.example", "carrier.example", false),
            ("edge.carrier.example", "other.carrier.example", false),
            ("carrier.example", "evilcarrier.example", false),
        ];
        for (cert, wanted, want) in cases {
            assert_eq!(name_matches(cert, wanted), want, "{cert} {wanted}");
        }
    }

    #[test]
    fn handshake_failures_are_named() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        use rustls::CertificateError as C;
        assert_eq!(
            failure_reason(&io(rustls::Error::InvalidCertificate(C::UnknownIssuer))),
            "unknown_ca"
        );
        assert_eq!(
            failure_reason(&io(rustls::Error::InvalidCertificate(C::Expired))),
            "expired"
        );
        assert_eq!(
            failure_reason(&io(rustls::Error::InvalidCertificate(C::NotValidForName))),
            "name_mismatch"
        );
        assert_eq!(
            failure_reason(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            "closed"
        );
    }
}
