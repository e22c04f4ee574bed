//! Location by reference (RFC 6753): the router asks the location server
//! named in the Geolocation header for the caller's location with a HELD
//! locationRequest (RFC 5985), under a short deadline. The call never waits
//! past it: whatever comes back, or nothing, the call is routed.

use std::time::Duration;

use bytes::Bytes;

const REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<locationRequest xmlns="urn:ietf:params:xml:ns:geopriv:held" responseTime="emergencyRouting">
  <locationType exact="false">any</locationType>
</locationRequest>
"#;

/// Largest document accepted from a location server.
const MAX_DOCUMENT: usize = 1 << 20;

/// Fetches the location document behind `uri` within `deadline`.
pub async fn dereference(
    client: &reqwest::Client,
    uri: &str,
    deadline: Duration,
) -> Result<Bytes, String> {
    let fetch = async {
        let resp = client
            .post(uri)
            .header("Content-Type", "application/held+xml;charset=utf-8")
            .header("Accept", "application/held+xml, application/pidf+xml")
            .body(REQUEST)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "location server answered {}",
                resp.status().as_u16()
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if body.len() > MAX_DOCUMENT {
            return Err("location document too large".into());
        }
        Ok(body)
    };
    match tokio::time::timeout(deadline, fetch).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
    }
}
