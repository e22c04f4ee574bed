//! `sosrouter check-config`: everything a start would load, loaded and
//! cross-checked without binding a socket.

use crate::config::{Config, RoutingMode};

/// Loads the configuration and what it points to (country rules,
/// inventory, service areas); building the emergency router checks that
/// every trunk a country rule or a PSAP mapping names exists. Returns a one-line summary per item checked.
pub fn check(config: &Config, inventory: Option<&std::path::Path>) -> Result<Vec<String>, String> {
    let mut out = vec![format!(
        "configuration: {} listener(s), {} trunk(s), routing mode {:?}",
        config.sip.listen.len(),
        config.trunks.len(),
        config.routing.mode
    )];
    let o = &config.sip.overload;
    out.push(if o.max_transactions == 0 {
        "overload: no limit on open transactions".to_string()
    } else {
        let l = crate::proxy::OverloadLimits::new(o);
        format!(
            "overload: new calls refused with 503 from {} open transactions, all but emergency calls from {}, requests within calls from {}",
            l.refuse_at, l.shed_at, l.ceiling
        )
    });
    out.push(match config.sip.stranger_replies_per_s {
        0 => "sources outside sip.allow and the trunks: refused, never answered".to_string(),
        n => format!(
            "sources outside sip.allow and the trunks: refused, answered at most {n} times a second in all"
        ),
    });
    let e = &config.emergency;
    out.push(match (e.dereference_timeout_ms.unwrap_or(1000), &e.location_servers) {
        (0, _) => "location by reference: not fetched (dereference_timeout_ms = 0)".to_string(),
        (ms, None) => format!(
            "location by reference: fetched within {ms} ms from any host a caller names but the router's own and link-local addresses (set emergency.location_servers to limit it)"
        ),
        (ms, Some(list)) => format!(
            "location by reference: fetched within {ms} ms from {} listed location server(s) only",
            list.len()
        ),
    });
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    out.extend(crate::transport::tls::check(config, unix)?);
    if config.routing.mode == RoutingMode::Static {
        out.push(format!("static routes: {}", config.routes.len()));
        return Ok(out);
    }
    let router = crate::emergency::EmergencyRouter::from_config(config, inventory)
        .map_err(|e| e.to_string())?;
    out.push(format!(
        "country rules: {} countries",
        router.countries().all().count()
    ));
    out.push(format!("inventory: {} numbers", router.inventory().len()));
    out.push("service areas and PSAP records: loaded".to_string());
    Ok(out)
}
