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

/// Most redirections followed in one fetch.
const MAX_REDIRECTS: usize = 3;

/// The HTTP client for fetches. A redirection is followed only to a server
/// that `servers` (`emergency.location_servers`) allows: without that
/// check, a listed server (or whoever answers in its name) could point the
/// router at any address it can reach. With no list, names are resolved
/// to outside addresses only ([`address_reserved`]).
pub fn client(servers: Option<std::sync::Arc<[String]>>) -> reqwest::Result<reqwest::Client> {
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
    let builder = reqwest::Client::builder().redirect(policy);
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
    /// The server could not be reached or asked, or answered with an error.
    Failed(String),
}

impl FetchError {
    /// The `outcome` label of `sosrouter_location_fetches_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            FetchError::Failed(why) => f.write_str(why),
        }
    }
}

/// Fetches the location document behind `uri` within `deadline`.
pub async fn dereference(
    client: &reqwest::Client,
    uri: &str,
    deadline: Duration,
) -> Result<Bytes, FetchError> {
    let fetch = async {
        let resp = client
            .post(uri)
            .header("Content-Type", "application/held+xml;charset=utf-8")
            .header("Accept", "application/held+xml, application/pidf+xml")
            .body(REQUEST)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", chain(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(format!(
                "location server answered {}",
                resp.status().as_u16()
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {}", chain(&e.without_url())))?;
        if body.len() > MAX_DOCUMENT {
            return Err("location document too large".into());
        }
        Ok(body)
    };
    match tokio::time::timeout(deadline, fetch).await {
        Ok(r) => r.map_err(FetchError::Failed),
        Err(_) => Err(FetchError::Timeout(deadline)),
    }
}

/// An error and its causes, which say what actually went wrong (reqwest's
/// own text names only the step).
fn chain(e: &dyn std::error::Error) -> String {
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
        let e = dereference(&client(None).unwrap(), &uri, deadline)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no address the router fetches from"), "{e}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        let listed: Option<std::sync::Arc<[String]>> = Some(vec!["localhost".to_string()].into());
        let doc = dereference(&client(listed).unwrap(), &uri, deadline)
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
        let e = dereference(&client(listed).unwrap(), &uri, deadline)
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
        let doc = dereference(&client(both).unwrap(), &uri, deadline)
            .await
            .unwrap();
        assert_eq!(&doc[..], pidf.as_bytes());
        assert_eq!(target_asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
