//! File descriptors: the process's limit raised to the most it may have,
//! and the connection caps sized so that the HTTP listeners can never take
//! the descriptors SIP needs.

/// Descriptors kept for everything but connections the caps count: the
/// listening and UDP sockets, the database, log files, location fetches
/// (up to 256 at once), webhooks and the connections the router opens to
/// trunks and callers.
pub const RESERVE: u64 = 512;

/// The soft and hard `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// The current limit, if the system says.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn limit() -> Option<NoFile> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            return Some(NoFile {
                soft: r.rlim_cur as u64,
                hard: r.rlim_max as u64,
            });
        }
        None
    }
    #[cfg(not(unix))]
    None
}

/// Raises the soft limit on open descriptors to the hard limit, and says
/// in the log what it is.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise() -> Option<NoFile> {
    let before = limit()?;
    #[cfg(unix)]
    if before.soft < before.hard {
        let r = libc::rlimit {
            rlim_cur: before.hard as libc::rlim_t,
            rlim_max: before.hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(soft = before.soft, hard = before.hard, error = %e, "could not raise the limit on open files");
        }
    }
    let now = limit()?;
    tracing::info!(
        soft = now.soft,
        hard = now.hard,
        was = before.soft,
        "open file limit"
    );
    Some(now)
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub sip_tcp: usize,
    pub admin: Option<usize>,
    pub metrics: Option<usize>,
}

/// Fits the configured caps into `soft` descriptors less [`RESERVE`]. When
/// they fit, they are kept; otherwise the HTTP listeners get at most an
/// eighth (admin) and a sixteenth (metrics) of what is left, and SIP over
/// TCP the rest, with a few each whatever happens. The second value says
/// what was cut, for the log.
pub fn fit(soft: Option<u64>, want: Caps) -> (Caps, Option<String>) {
    let Some(soft) = soft else {
        return (want, None);
    };
    let avail = soft.saturating_sub(RESERVE) as usize;
    let need = want.sip_tcp + want.admin.unwrap_or(0) + want.metrics.unwrap_or(0);
    if need <= avail {
        return (want, None);
    }
    let admin = want.admin.map(|a| a.min((avail / 8).max(8)));
    let metrics = want.metrics.map(|m| m.min((avail / 16).max(4)));
    let http = admin.unwrap_or(0) + metrics.unwrap_or(0);
    let sip_tcp = want.sip_tcp.min(avail.saturating_sub(http).max(16));
    let got = Caps {
        sip_tcp,
        admin,
        metrics,
    };
    let why = format!(
        "the open file limit ({soft}) is too low for the connections configured: \
         sip.tcp.max_connections {} + admin {} + metrics {} + {RESERVE} kept for the rest; \
         using {} + {} + {} (raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn, to at least {})",
        want.sip_tcp,
        want.admin.unwrap_or(0),
        want.metrics.unwrap_or(0),
        got.sip_tcp,
        got.admin.unwrap_or(0),
        got.metrics.unwrap_or(0),
        need as u64 + RESERVE,
    );
    (got, Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Caps = Caps {
        sip_tcp: 4096,
        admin: Some(256),
        metrics: Some(64),
    };

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(fit(Some(1 << 20), WANT), (WANT, None));
        assert_eq!(fit(Some(4096 + 256 + 64 + RESERVE), WANT), (WANT, None));
        assert_eq!(fit(None, WANT), (WANT, None));
    }

    /// Under a limit of 4,096 the HTTP listeners get a small share and
    /// SIP the rest: together they stay within the limit less the reserve.
    #[test]
    fn caps_that_do_not_fit_leave_sip_the_most() {
        let (got, why) = fit(Some(4096), WANT);
        assert!(why.unwrap().contains("4096"));
        let total = got.sip_tcp + got.admin.unwrap() + got.metrics.unwrap();
        assert!(total as u64 <= 4096 - RESERVE, "{got:?}");
        // Their configured caps are within an eighth and a sixteenth of
        // the 3,584 left.
        assert_eq!(got.admin, Some(256));
        assert_eq!(got.metrics, Some(64));
        assert_eq!(got.sip_tcp, 4096 - 512 - 256 - 64);
        // Without the listeners configured, SIP gets their share.
        let (alone, _) = fit(
            Some(4096),
            Caps {
                admin: None,
                metrics: None,
                ..WANT
            },
        );
        assert_eq!(alone.sip_tcp, 4096 - 512);
        // A tiny limit still leaves each a few.
        let (tiny, _) = fit(Some(256), WANT);
        assert_eq!(
            tiny,
            Caps {
                sip_tcp: 16,
                admin: Some(8),
                metrics: Some(4)
            }
        );
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let before = limit().expect("a limit on unix");
        let now = raise().expect("a limit on unix");
        assert!(now.soft >= before.soft);
        if cfg!(target_os = "linux") {
            assert_eq!(now.soft, now.hard);
        }
    }
}
