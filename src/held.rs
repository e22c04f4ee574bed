//! Location by reference (RFC 6753): the router asks the location server
//! named in the Geolocation header for the caller's location with a HELD
//! locationRequest (RFC 5985), under a short deadline. The call never waits
//! past it: whatever comes back, or nothing, the call is routed.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;

const REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<locationRequest xmlns="urn:ietf:params:xml:ns:geopriv:held" responseTime="emergencyRouting">
  <locationType exact="false">any</locationType>
</locationRequest>
"#;

/// Largest document accepted from a location server.
const MAX_DOCUMENT: usize = 1 << 20;

/// Fetches from one location server at once, by default
/// (`emergency.location_fetches_per_server`).
pub const PER_SERVER: usize = 4;

/// Most redirections followed in one fetch.
const MAX_REDIRECTS: usize = 3;

/// The servers `emergency.location_servers` allows, and the HTTP client
/// of the requests that policy governs (location fetches, LoST queries,
/// address checks by the ECRF), with the router's client certificate
/// when one is configured. `what` names those requests in the log line
/// when the TLS files cannot be read (they then go without them).
pub fn policy_client(
    config: &crate::config::Config,
    what: &str,
) -> (
    Option<std::sync::Arc<[String]>>,
    reqwest::Result<reqwest::Client>,
) {
    let servers: Option<std::sync::Arc<[String]>> = config
        .emergency
        .location_servers
        .as_ref()
        .map(|v| v.clone().into());
    let tls = ClientTls::from_config(config).unwrap_or_else(|e| {
        tracing::error!(error = %e, "{what}: the TLS files could not be read; the requests go without them");
        ClientTls::default()
    });
    let client = client(servers.clone(), &tls);
    (servers, client)
}

/// The HTTP client for fetches. A redirection is followed only to a server
/// that `servers` (`emergency.location_servers`) allows: without that
/// check, a listed server (or whoever answers in its name) could point the
/// router at any address it can reach. With no list, names are resolved
/// to outside addresses only ([`address_reserved`]).
pub fn client(
    servers: Option<std::sync::Arc<[String]>>,
    tls: &ClientTls,
) -> reqwest::Result<reqwest::Client> {
    let listed = servers.is_some();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirections")
        } else if host_allowed(attempt.url().as_str(), servers.as_deref()) {
            attempt.follow()
        } else {
            attempt.error("redirected to a server not in emergency.location_servers")
        }
    });
    let mut builder = reqwest::Client::builder().redirect(policy);
    if let Some(pem) = &tls.identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem)?);
    }
    if let Some(pem) = &tls.roots {
        for c in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(c);
        }
    }
    if listed {
        // The operator named the servers, and the addresses they resolve
        // to are theirs to choose.
        builder.build()
    } else {
        builder
            .dns_resolver(std::sync::Arc::new(OutsideOnly))
            .build()
    }
}

/// What the fetches' TLS adds to the public web PKI: the router's client
/// certificate and key (PEM, chain then key), and more CAs (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub identity: Option<Vec<u8>>,
    pub roots: Option<Vec<u8>>,
}

impl ClientTls {
    /// From `emergency.location_client_certificate` (the files of
    /// `[sip.tls]`) and `emergency.location_ca`.
    pub fn from_config(c: &crate::config::Config) -> Result<ClientTls, String> {
        ClientTls::read(
            c,
            c.emergency.location_client_certificate,
            c.emergency.location_ca.as_deref(),
            "emergency.location_ca",
        )
    }

    /// For security desk webhooks: `emergency.webhook_client_certificate`
    /// and `emergency.webhook_ca`.
    pub fn for_webhooks(c: &crate::config::Config) -> Result<ClientTls, String> {
        ClientTls::read(
            c,
            c.emergency.webhook_client_certificate,
            c.emergency.webhook_ca.as_deref(),
            "emergency.webhook_ca",
        )
    }

    fn read(
        c: &crate::config::Config,
        present: bool,
        ca: Option<&std::path::Path>,
        ca_key: &str,
    ) -> Result<ClientTls, String> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let identity = match (&present, &c.sip.tls) {
            (true, Some(t)) => match (&t.certificate, &t.key) {
                (Some(cp), Some(kp)) => {
                    let mut pem = read(cp, "sip.tls.certificate")?;
                    pem.push(b'\n');
                    pem.extend(read(kp, "sip.tls.key")?);
                    Some(pem)
                }
                _ => None,
            },
            _ => None,
        };
        let roots = match ca {
            Some(p) => Some(read(p, ca_key)?),
            None => None,
        };
        Ok(ClientTls { identity, roots })
    }
}

/// Whether `ip` is one the router asks only when `emergency.location_servers`
/// names it: its own host (loopback, unspecified, the addresses of its own
/// interfaces), link-local addresses (where cloud metadata services answer,
/// 169.254.169.254), multicast, broadcast and reserved addresses, in every
/// spelling (`::ffff:127.0.0.1`, `::127.0.0.1` and the like): see
/// [`crate::outbound::refused`], the policy webhooks follow too. Private
/// networks are not among them: carriers' location servers often live
/// there.
pub fn address_reserved(ip: IpAddr) -> bool {
    crate::outbound::refused(ip).is_some()
}

/// Name resolution that leaves out [`address_reserved`] addresses, so that
/// a name a caller picks cannot lead the fetch to them either.
struct OutsideOnly;

impl reqwest::dns::Resolve for OutsideOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !address_reserved(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves to no address the router fetches from (loopback, link-local and the like need emergency.location_servers)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The host a reference names, for the log: the whole URI is itself a key
/// to the caller's location (whoever holds it may fetch it, RFC 6753), so
/// it stays out of logs below debug, as the location does.
pub fn host_of(uri: &str) -> String {
    reqwest::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "(not a URL)".into())
}

/// Why a fetch brought no document. The text names what failed, never the
/// URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing came back within the deadline.
    Timeout(Duration),
    /// The answer was larger than [`MAX_DOCUMENT`]: announced so, or
    /// past it while read (the rest is not read).
    TooLarge,
    /// The server's host refused the connection.
    Refused(String),
    /// The server answered with an HTTP error status: which server, and
    /// the status.
    Status(&'static str, u16),
    /// The answer's body broke off while read.
    Unreadable(String),
    /// The server could not be reached or asked otherwise (name, TLS,
    /// reset connection).
    Failed(String),
}

impl FetchError {
    /// The `outcome` label of `sosrouter_location_fetches_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::TooLarge => "too_large",
            FetchError::Refused(_)
            | FetchError::Status(..)
            | FetchError::Unreadable(_)
            | FetchError::Failed(_) => "failed",
        }
    }

    /// What went wrong, as the LoST answer that stands for the query.
    pub fn lost_failure(&self) -> crate::proxy::LostFailure {
        use crate::proxy::LostFailure;
        match self {
            FetchError::Timeout(_) => LostFailure::Timeout,
            FetchError::TooLarge => LostFailure::TooLarge,
            FetchError::Refused(_) => LostFailure::Refused,
            FetchError::Status(_, code) => LostFailure::Status(*code),
            FetchError::Unreadable(_) => LostFailure::Unreadable,
            FetchError::Failed(_) => LostFailure::Unreachable,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            FetchError::TooLarge => write!(
                f,
                "location document larger than {MAX_DOCUMENT} bytes; the rest was not read"
            ),
            FetchError::Refused(why) | FetchError::Failed(why) => {
                write!(f, "request failed: {why}")
            }
            FetchError::Status(server, code) => write!(f, "{server} answered {code}"),
            FetchError::Unreadable(why) => write!(f, "reading the answer: {why}"),
        }
    }
}

/// Fetches the location document behind `uri` within `deadline`. The
/// answer is read as it arrives and the fetch ends as soon as it passes
/// [`MAX_DOCUMENT`] (at once when its Content-Length says it will): a
/// server the caller names decides what it sends, and the router holds no
/// more than the limit of it.
pub async fn dereference(
    client: &reqwest::Client,
    uri: &str,
    deadline: Duration,
) -> Result<Bytes, FetchError> {
    post_bounded(
        client,
        uri,
        "application/held+xml;charset=utf-8",
        "application/held+xml, application/pidf+xml",
        REQUEST.to_owned(),
        deadline,
        "location server",
    )
    .await
}

/// Sends a LoST request (RFC 5222, `application/lost+xml`) to an ECRF at
/// `url` and reads its answer within `deadline`, with the same client,
/// destination policy and size limit as [`dereference`].
pub async fn lost_query(
    client: &reqwest::Client,
    url: &str,
    body: String,
    deadline: Duration,
) -> Result<Bytes, FetchError> {
    post_bounded(
        client,
        url,
        crate::lost::CONTENT_TYPE,
        crate::lost::CONTENT_TYPE,
        body,
        deadline,
        "LoST server",
    )
    .await
}

/// Redirects (RFC 5222 s13.3) followed for one LoST query, at most.
pub const MAX_LOST_REDIRECTS: usize = 3;

/// Why a LoST `<redirect>` was not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectStop {
    /// The target is not an `http` or `https` URL (RFC 5222 names a
    /// server, to be resolved by U-NAPTR, which the router does not do).
    NotUrl,
    /// The target was asked already in this query.
    Loop,
    /// [`MAX_LOST_REDIRECTS`] were followed already.
    TooMany,
    /// The destination policy refuses the target's host.
    Refused,
}

impl RedirectStop {
    /// The `outcome` label of `sosrouter_lost_queries_total`.
    pub fn outcome(self) -> &'static str {
        match self {
            RedirectStop::NotUrl => "redirect_not_url",
            RedirectStop::Loop => "redirect_loop",
            RedirectStop::TooMany => "redirect_hops",
            RedirectStop::Refused => "redirect_refused",
        }
    }

    /// The LoST `<errors>` that stands for the query when the redirect is
    /// not followed, as a recursive server would answer: from `source`
    /// (the router's own LoST name), `loop` for a loop or too many
    /// redirects, `forbidden` for a refused target, `serverError` for a
    /// target that is not a URL.
    pub fn answer(self, source: &str, target: &str) -> String {
        use crate::lost::ErrorKind;
        let target = crate::lost::one_line(target, 80);
        let (kind, message) = match self {
            RedirectStop::NotUrl => (
                ErrorKind::ServerError,
                format!("redirect target not an http(s) URL: {target}"),
            ),
            RedirectStop::Loop => (
                ErrorKind::Loop,
                format!("redirect loop: {target} asked already"),
            ),
            RedirectStop::TooMany => (
                ErrorKind::Loop,
                format!("more than {MAX_LOST_REDIRECTS} redirects: {target}"),
            ),
            RedirectStop::Refused => (
                ErrorKind::Forbidden,
                format!("redirect refused by the destination policy: {target}"),
            ),
        };
        crate::lost::write::errors(source, kind, &message)
    }
}

/// Where a LoST redirect to `target` leads, given the URLs `asked` so far
/// in this query (the ECRF first): the URL to ask next, or why not.
pub fn lost_redirect(
    target: &str,
    asked: &[String],
    hosts: Option<&[String]>,
) -> Result<String, RedirectStop> {
    let Ok(url) = reqwest::Url::parse(target.trim()) else {
        return Err(RedirectStop::NotUrl);
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(RedirectStop::NotUrl);
    }
    let next = url.as_str().to_owned();
    let seen = |a: &String| reqwest::Url::parse(a).is_ok_and(|u| u.as_str() == next);
    if asked.iter().any(seen) {
        return Err(RedirectStop::Loop);
    }
    if asked.len() > MAX_LOST_REDIRECTS {
        return Err(RedirectStop::TooMany);
    }
    if !host_allowed(&next, hosts) {
        return Err(RedirectStop::Refused);
    }
    Ok(next)
}

/// How a LoST query that may be redirected ended.
#[derive(Debug)]
pub enum LostReply {
    /// The last server's answer (anything but a redirect).
    Answer(Bytes),
    /// A redirect that was not followed, and the `<errors>` document that
    /// stands for it ([`RedirectStop::answer`]).
    Stopped(RedirectStop, Bytes),
}

/// [`lost_query`], following `<redirect>` answers (at most
/// [`MAX_LOST_REDIRECTS`], never to a URL asked already, only to hosts
/// `hosts` allows, as for the ECRF itself), all within `deadline` from
/// the start. `redirected` is told of each redirect answer.
pub async fn lost_query_following(
    client: &reqwest::Client,
    url: &str,
    body: String,
    deadline: Duration,
    hosts: Option<&[String]>,
    source: &str,
    mut redirected: impl FnMut(&crate::lost::Redirect),
) -> Result<LostReply, FetchError> {
    let end = tokio::time::Instant::now() + deadline;
    let mut asked = vec![url.to_owned()];
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(FetchError::Timeout(deadline));
        }
        let here = asked.last().cloned().unwrap_or_default();
        let answer = match lost_query(client, &here, body.clone(), left).await {
            Err(FetchError::Timeout(_)) => return Err(FetchError::Timeout(deadline)),
            other => other?,
        };
        // A cheap look first: only a document naming `redirect` is read.
        if memchr::memmem::find(&answer, b"redirect").is_none() {
            return Ok(LostReply::Answer(answer));
        }
        let Ok(crate::lost::Response::Redirect(r)) = crate::lost::read_response(&answer) else {
            return Ok(LostReply::Answer(answer));
        };
        redirected(&r);
        match lost_redirect(&r.target, &asked, hosts) {
            Ok(next) => asked.push(next),
            Err(stop) => {
                return Ok(LostReply::Stopped(
                    stop,
                    Bytes::from(stop.answer(source, &r.target)),
                ))
            }
        }
    }
}

async fn post_bounded(
    client: &reqwest::Client,
    uri: &str,
    content_type: &str,
    accept: &str,
    body: String,
    deadline: Duration,
    server: &'static str,
) -> Result<Bytes, FetchError> {
    let fetch = async {
        let mut resp = client
            .post(uri)
            .header("Content-Type", content_type)
            .header("Accept", accept)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let refused = connection_refused(&e);
                let why = chain(&e.without_url());
                if refused {
                    FetchError::Refused(why)
                } else {
                    FetchError::Failed(why)
                }
            })?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(server, resp.status().as_u16()));
        }
        let announced = resp.content_length();
        if announced.is_some_and(|n| n > MAX_DOCUMENT as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = bytes::BytesMut::with_capacity(announced.map_or(16 * 1024, |n| n as usize));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Unreadable(chain(&e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(deadline, fetch).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(deadline)),
    }
}

/// Fetches under way by location server (the host of the reference), at
/// most `per_server` at once for any one of them, so that servers a caller
/// names cannot take every fetch (and the memory of their answers) from
/// the others. Taken with [`ServerSlots::try_take`]; a call that finds its
/// server's slots all taken is routed at once without the fetch.
pub struct ServerSlots {
    per_server: usize,
    taken: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// A fetch's place among its server's; given back when dropped.
pub struct ServerSlot {
    host: String,
    taken: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl ServerSlots {
    /// At most `per_server` fetches at once from one server (1 at least).
    pub fn new(per_server: usize) -> ServerSlots {
        ServerSlots {
            per_server: per_server.max(1),
            taken: Default::default(),
        }
    }

    /// A slot for a fetch of `uri`, or `None` when its server already has
    /// every slot. Hosts are compared as the URL parser writes them (an IP
    /// address in its plain form), case and a trailing dot aside; the port
    /// does not make another server.
    pub fn try_take(&self, uri: &str) -> Option<ServerSlot> {
        let url = reqwest::Url::parse(uri).ok()?;
        let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        let mut taken = self.taken.lock().ok()?;
        let n = taken.entry(host.clone()).or_insert(0);
        if *n >= self.per_server {
            return None;
        }
        *n += 1;
        Some(ServerSlot {
            host,
            taken: self.taken.clone(),
        })
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        if let Ok(mut taken) = self.taken.lock() {
            if let Some(n) = taken.get_mut(&self.host) {
                *n -= 1;
                if *n == 0 {
                    taken.remove(&self.host);
                }
            }
        }
    }
}

/// An error and its causes, which say what actually went wrong (reqwest's
/// own text names only the step).
/// Whether a request failed because the server's host refused the
/// connection (nothing listens on its port).
fn connection_refused(e: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whether the location server named by `uri` may be asked. With `hosts`
/// `None`, any host but an [`address_reserved`] address (names are checked
/// when resolved, see [`client`]). Else only a host in the list or, for an
/// entry that starts with a dot, any host below that domain. The URI comes
/// from the caller's INVITE, so an operator who knows its carriers'
/// location servers names them, and the router then sends nothing to hosts
/// the caller picks.
pub fn host_allowed(uri: &str, hosts: Option<&[String]>) -> bool {
    let Ok(url) = reqwest::Url::parse(uri) else {
        return false;
    };
    let Some(hosts) = hosts else {
        // The URL parser writes an IP address in its plain form (an IPv6
        // one in brackets), however the caller spelled it.
        return url.host_str().is_some_and(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_or(true, |ip| !address_reserved(ip))
        });
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    hosts.iter().any(|h| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        match h.strip_prefix('.') {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.')),
            None => host == h,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_lost_redirect_may_lead() {
        let listed = ["127.0.0.1".to_string(), "ecrf.example".to_string()];
        let ecrf = "http://127.0.0.1:8080/lost".to_string();
        let two = vec![ecrf.clone(), "https://ecrf.example/a".to_string()];
        let four = vec![
            ecrf.clone(),
            "https://ecrf.example/a".to_string(),
            "https://ecrf.example/b".to_string(),
            "https://ecrf.example/c".to_string(),
        ];
        // (target, asked so far, listed hosts, where it leads)
        type Case<'a> = (
            &'a str,
            &'a [String],
            Option<&'a [String]>,
            Result<&'a str, RedirectStop>,
        );
        let cases: [Case<'_>; 11] = [
            (
                "https://ecrf.example/b",
                &two,
                Some(&listed),
                Ok("https://ecrf.example/b"),
            ),
            (
                "HTTPS://ECRF.example:443/b",
                &two,
                Some(&listed),
                Ok("https://ecrf.example/b"),
            ),
            (
                "https://ecrf.example/a",
                &two,
                Some(&listed),
                Err(RedirectStop::Loop),
            ),
            (
                "http://127.0.0.1:8080/lost",
                &two,
                Some(&listed),
                Err(RedirectStop::Loop),
            ),
            (
                "https://ecrf.example/d",
                &four,
                Some(&listed),
                Err(RedirectStop::TooMany),
            ),
            (
                "https://ecrf.example/c",
                &four,
                Some(&listed),
                Err(RedirectStop::Loop),
            ),
            (
                "https://other.example/lost",
                &two,
                Some(&listed),
                Err(RedirectStop::Refused),
            ),
            (
                "http://127.0.0.1:9/lost",
                &two,
                None,
                Err(RedirectStop::Refused),
            ),
            (
                "eastpsap.example",
                &two,
                Some(&listed),
                Err(RedirectStop::NotUrl),
            ),
            (
                "sip:ecrf.example",
                &two,
                Some(&listed),
                Err(RedirectStop::NotUrl),
            ),
            ("", &two, Some(&listed), Err(RedirectStop::NotUrl)),
        ];
        for (target, asked, hosts, want) in cases {
            let got = lost_redirect(target, asked, hosts);
            assert_eq!(got, want.map(str::to_owned), "{target}");
        }
        // Each stop reads back as a LoST error from the router.
        for stop in [
            RedirectStop::NotUrl,
            RedirectStop::Loop,
            RedirectStop::TooMany,
            RedirectStop::Refused,
        ] {
            let doc = stop.answer("router.example", "https://x.example/\u{0}lost");
            let Ok(crate::lost::Response::Errors(e)) = crate::lost::read_response(doc.as_bytes())
            else {
                panic!("{doc}")
            };
            assert_eq!(e.source, "router.example");
            assert!(
                e.reason().contains(" https://x.example/ lost"),
                "{}",
                e.reason()
            );
            assert!(stop.outcome().starts_with("redirect_"));
        }
    }

    #[test]
    fn only_the_named_location_servers_are_asked() {
        let list = [
            "lis.carrier.example".to_string(),
            ".lis.example.net".to_string(),
            "192.0.2.7".to_string(),
            "[2001:db8::7]".to_string(),
        ];
        // (uri, allowed by the list)
        let cases = [
            ("https://lis.carrier.example/loc/1", true),
            ("https://LIS.Carrier.Example./loc/1", true),
            ("http://lis.carrier.example:8080/x", true),
            ("https://a.lis.example.net/x", true),
            ("https://a.b.lis.example.net/x", true),
            ("https://lis.example.net/x", false),
            ("https://evil-lis.example.net/x", false),
            ("https://xlis.carrier.example/x", false),
            ("https://lis.carrier.example.evil.test/x", false),
            ("http://192.0.2.7/held", true),
            ("http://[2001:db8::7]:8080/held", true),
            ("http://127.0.0.1:8080/v1/reload", false),
            ("http://169.254.169.254/latest", false),
            ("https://user@lis.carrier.example@evil.test/x", false),
            ("not a uri", false),
        ];
        for (uri, want) in cases {
            assert_eq!(host_allowed(uri, Some(&list)), want, "{uri}");
        }
        assert!(!host_allowed("http://lis.carrier.example/", Some(&[])));
        // With no list: anything but the router's own host, link-local
        // (metadata services), multicast and broadcast, unless listed.
        let open = [
            ("https://lis.carrier.example/loc/1", true),
            ("http://10.1.2.3:8080/held", true),
            ("http://192.0.2.7/held", true),
            ("http://[2001:db8::7]/held", true),
            ("http://127.0.0.1:8080/v1/reload", false),
            ("http://127.9.9.9/", false),
            ("http://0.0.0.0/", false),
            ("http://169.254.169.254/latest/meta-data", false),
            ("http://[::1]:9090/metrics", false),
            ("http://[::ffff:127.0.0.1]/", false),
            ("http://[::127.0.0.1]/", false),
            ("http://[::169.254.169.254]/", false),
            ("http://[64:ff9b::7f00:1]/", false),
            ("http://2130706433/", false),
            ("http://0x7f.1/", false),
            ("http://0177.0.0.1/", false),
            ("http://127.0.0.1./", false),
            ("http://0.1.2.3/", false),
            ("http://[fe80::1]/", false),
            ("http://224.0.0.1/", false),
            ("http://255.255.255.255/", false),
            ("not a uri", false),
        ];
        for (uri, want) in open {
            assert_eq!(host_allowed(uri, None), want, "{uri}");
        }
        assert!(host_allowed(
            "http://127.0.0.1:8080/held",
            Some(&["127.0.0.1".to_string()])
        ));
    }

    /// A server that answers every request with `answer` and counts them.
    fn server(ip: &str, answer: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            while let Ok((mut s, _)) = l.accept() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = s.read(&mut [0u8; 4096]);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (port, asked)
    }

    /// With no list, a name that resolves only to the router's own host is
    /// not fetched from; listed, it is.
    #[tokio::test]
    async fn a_name_for_the_routers_own_host_is_fetched_from_only_when_listed() {
        let (port, asked) = server(
            "127.0.0.1",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into(),
        );
        let uri = format!("http://localhost:{port}/loc");
        let deadline = Duration::from_secs(5);
        let e = dereference(
            &client(None, &ClientTls::default()).unwrap(),
            &uri,
            deadline,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("no address the router fetches from"), "{e}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        let listed: Option<std::sync::Arc<[String]>> = Some(vec!["localhost".to_string()].into());
        let doc = dereference(
            &client(listed, &ClientTls::default()).unwrap(),
            &uri,
            deadline,
        )
        .await
        .unwrap();
        assert_eq!(&doc[..], b"ok");
    }

    #[tokio::test]
    async fn a_redirection_is_followed_only_to_a_named_server() {
        let pidf = "<presence/>";
        let (target, target_asked) = server(
            "127.0.0.2",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{pidf}",
                pidf.len()
            ),
        );
        let (lis, _) = server("127.0.0.1", format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{target}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let uri = format!("http://127.0.0.1:{lis}/loc");
        let deadline = Duration::from_secs(5);
        let listed: Option<std::sync::Arc<[String]>> = Some(vec!["127.0.0.1".to_string()].into());
        let e = dereference(
            &client(listed, &ClientTls::default()).unwrap(),
            &uri,
            deadline,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("location_servers"), "{e}");
        assert!(
            !e.contains("/loc"),
            "the reference stays out of the error: {e}"
        );
        assert_eq!(target_asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The same redirection to a listed server is followed.
        let both: Option<std::sync::Arc<[String]>> =
            Some(vec!["127.0.0.1".to_string(), "127.0.0.2".to_string()].into());
        let doc = dereference(
            &client(both, &ClientTls::default()).unwrap(),
            &uri,
            deadline,
        )
        .await
        .unwrap();
        assert_eq!(&doc[..], pidf.as_bytes());
        assert_eq!(target_asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A location server that answers 200 with `head` (status line and
    /// headers, blank line included), then writes `body` bytes of filler in
    /// 64 KiB chunks, a little apart, until done or the connection is gone.
    /// Counts what it managed to write.
    fn streaming_server(
        head: &'static str,
        body: usize,
        chunked: bool,
    ) -> (
        u16,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        std::thread::JoinHandle<()>,
    ) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = written.clone();
        let done = std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            // Never stuck, whatever the client does.
            let _ = s.set_write_timeout(Some(Duration::from_secs(20)));
            let _ = s.read(&mut [0u8; 4096]);
            if s.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            let mut sent = 0;
            while sent < body {
                let w = if chunked {
                    s.write_all(&framed)
                } else {
                    s.write_all(&framed[6..6 + 64 * 1024])
                };
                if w.is_err() {
                    return;
                }
                sent += 64 * 1024;
                count.store(sent, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n");
            }
            // Held open until the client is done with it.
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = s.read(&mut [0u8; 1]);
        });
        (port, written, done)
    }

    /// A 100 MB answer is read up to the limit and no further: the fetch
    /// ends with `TooLarge` long before the server is done, and the router
    /// held at most the limit of it.
    #[tokio::test]
    async fn a_huge_answer_is_read_no_further_than_the_limit() {
        const HUNDRED_MB: usize = 100 << 20;
        for chunked in [true, false] {
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                // No length: the body runs until the server closes.
                "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nConnection: close\r\n\r\n"
            };
            let (port, written, done) = streaming_server(head, HUNDRED_MB, chunked);
            let uri = format!("http://127.0.0.1:{port}/loc");
            let listed: Option<std::sync::Arc<[String]>> =
                Some(vec!["127.0.0.1".to_string()].into());
            let e = dereference(
                &client(listed, &ClientTls::default()).unwrap(),
                &uri,
                Duration::from_secs(30),
            )
            .await
            .unwrap_err();
            assert_eq!(e, FetchError::TooLarge, "chunked {chunked}");
            assert_eq!(e.outcome(), "too_large");
            tokio::task::spawn_blocking(move || done.join().unwrap())
                .await
                .unwrap();
            let sent = written.load(std::sync::atomic::Ordering::SeqCst);
            // The limit, and what the sockets' buffers took meanwhile.
            assert!(
                sent < 16 << 20,
                "chunked {chunked}: the server wrote {sent} bytes before the router hung up"
            );
        }
    }

    /// An answer that announces more than the limit is refused before any
    /// of it is read.
    #[tokio::test]
    async fn an_answer_announced_too_large_is_refused_unread() {
        let (port, written, done) = streaming_server(
            "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nContent-Length: 104857600\r\n\r\n",
            0,
            false,
        );
        let uri = format!("http://127.0.0.1:{port}/loc");
        let listed: Option<std::sync::Arc<[String]>> = Some(vec!["127.0.0.1".to_string()].into());
        let started = std::time::Instant::now();
        let e = dereference(
            &client(listed, &ClientTls::default()).unwrap(),
            &uri,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e, FetchError::TooLarge);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        tokio::task::spawn_blocking(move || done.join().unwrap())
            .await
            .unwrap();
        assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn one_server_gets_no_more_than_its_share_of_fetches() {
        let slots = ServerSlots::new(2);
        let a1 = slots.try_take("http://lis.example/a").unwrap();
        let _a2 = slots.try_take("https://LIS.example.:8443/b").unwrap();
        // The same server by another spelling of its name, or another port.
        assert!(slots.try_take("http://lis.example:8080/c").is_none());
        assert!(slots.try_take("http://lis.EXAMPLE./c").is_none());
        // Other servers are not held up.
        let _b = slots.try_take("http://192.0.2.7/held").unwrap();
        assert!(
            slots.try_take("http://3221225991/held").is_some(),
            "192.0.2.7 again, one slot left"
        );
        drop(a1);
        assert!(slots.try_take("http://lis.example/d").is_some());
        assert!(slots.try_take("not a uri").is_none());
        assert_eq!(ServerSlots::new(0).per_server, 1);
        // Every slot given back leaves nothing behind.
        drop(_a2);
        drop(_b);
        assert!(slots.taken.lock().unwrap().is_empty());
    }
}
