//! One input's bug costs that input only: the core runs each message (and
//! each fetched location) under a panic guard, and the request that met
//! the bug is answered `500`.

use std::time::Instant;

use crate::metrics as m;
use crate::proxy::{Core, Source};
use crate::sip::Limits;

pub(super) fn handle_message(
    core: &mut Core,
    now: Instant,
    msg: crate::sip::Message,
    source: Source,
) {
    let buf = msg.buf().clone();
    guarded(
        core,
        |core| core.handle_message(now, msg, source),
        |core| answer_internal_error(core, now, &buf, source),
    );
}

/// Runs the core on one input. A panic there is a bug, never an expected
/// outcome, but one message must not stop every call the router carries:
/// the panic is logged (its text just before, by the panic hook) and
/// counted in `sosrouter_internal_errors_total`, which pages, `recover`
/// answers the request that met it, and the router goes on. Timers are
/// not guarded: a timer that panicked would panic again at once.
pub(super) fn guarded(core: &mut Core, f: impl FnOnce(&mut Core), recover: impl FnOnce(&mut Core)) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(core))).is_ok() {
        return;
    }
    metrics::counter!(m::INTERNAL_ERRORS).increment(1);
    recover(core);
    crate::logbuf::flush();
}

/// After a bug met by the request in `buf`: logs it with its Call-ID and
/// answers it `500` (a request other than ACK), so that the carrier fails
/// the call over to its other router at once instead of waiting on one
/// that sent `100 Trying`.
fn answer_internal_error(core: &mut Core, now: Instant, buf: &bytes::Bytes, source: Source) {
    let msg = crate::sip::parse_lenient(buf.clone());
    let call_id = msg
        .as_ref()
        .and_then(|m| m.call_id())
        .map(|c| crate::sip::text::Printable(c).to_string())
        .unwrap_or_default();
    tracing::error!(
        %call_id,
        "internal error while handling a message: message dropped, the router goes on"
    );
    // The 500 goes out from a server transaction, so that a retransmission
    // of the request gets it again if the first is lost. Should that panic
    // too, it is sent once, outside any transaction.
    let stream = source.proto.is_reliable();
    if let Ok(req) = crate::sip::receive(buf.clone(), stream, &Limits::default()) {
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            core.answer_internal_error(now, &req, source)
        }));
        if answered.is_ok() {
            return;
        }
    }
    if let Some(req) = msg.filter(|m| m.is_request() && m.method() != crate::sip::Method::Ack) {
        let answer = crate::sip::build::response(
            &req,
            Some(source.peer),
            500,
            "Server Internal Error",
            Some("sos-err"),
            &[],
            None,
        );
        core.answer_unparsed(now, answer, &source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    use crate::config::Config;
    use crate::proxy::Proto;
    use crate::proxy::{
        CoreConfig, Decision, RouteContext, Router, StaticRouter, Target, Transmit,
    };

    /// The table router, except that a call to 666 hits a bug.
    struct Buggy(StaticRouter);

    impl Router for Buggy {
        fn route(&mut self, req: &crate::sip::Message, ctx: &RouteContext<'_>) -> Decision {
            if req.request_uri_bytes().starts_with(b"sip:666@") {
                panic!("a bug in the routing phase");
            }
            self.0.route(req, ctx)
        }
    }

    fn invite(number: &str, call_id: &str) -> crate::sip::Message {
        let text = format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{number}@127.0.0.1>\r\nFrom: <sip:+13035550117@127.0.0.1>;tag=1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+13035550117@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n"
        );
        crate::sip::receive(bytes::Bytes::from(text), false, &Limits::default()).unwrap()
    }

    #[test]
    fn a_bug_met_by_one_message_costs_that_message_only() {
        let c = Config::from_toml(
            r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
allow = ["127.0.0.1/32"]
[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:5070"
[[route]]
numbers = ["911", "666"]
targets = ["psap"]
"#,
        )
        .unwrap();
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let cfg = CoreConfig::from_config(&c, vec![local], 7);
        let mut core = Core::new(cfg, Box::new(Buggy(StaticRouter::new(&c))));
        let source = Source {
            proto: Proto::Udp,
            peer: "127.0.0.1:5061".parse().unwrap(),
            local,
            conn: None,
        };
        let now = Instant::now();
        let psap = Target::Addr("127.0.0.1:5070".parse().unwrap());
        let forwarded = |core: &mut Core| {
            std::iter::from_fn(|| core.poll_transmit())
                .filter(|t| t.dest.target == psap && t.bytes.starts_with(b"INVITE "))
                .count()
        };

        handle_message(&mut core, now, invite("666", "bug-1"), source);
        let sent: Vec<Transmit> = std::iter::from_fn(|| core.poll_transmit()).collect();
        assert!(
            sent.iter().all(|t| t.dest.target != psap),
            "nothing reaches the PSAP"
        );
        let answers: Vec<String> = sent
            .iter()
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect();
        assert!(
            answers
                .iter()
                .any(|a| a.starts_with("SIP/2.0 500 Server Internal Error\r\n")
                    && a.contains("Call-ID: bug-1\r\n")),
            "the caller is told at once, so its carrier fails over: {answers:?}"
        );
        // The 500 came from a server transaction: when its datagram is lost,
        // the INVITE's retransmission gets it again (and does not meet the
        // bug again), and Timer G repeats it until the ACK.
        handle_message(&mut core, now, invite("666", "bug-1"), source);
        let repeated: Vec<String> = std::iter::from_fn(|| core.poll_transmit())
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect();
        assert_eq!(
            repeated
                .iter()
                .filter(|a| a.starts_with("SIP/2.0 500 Server Internal Error\r\n"))
                .count(),
            1,
            "{repeated:?}"
        );
        let later = now + std::time::Duration::from_millis(600);
        core.handle_timeout(later);
        assert!(
            std::iter::from_fn(|| core.poll_transmit())
                .any(|t| t.bytes.starts_with(b"SIP/2.0 500 ")),
            "Timer G retransmits the 500"
        );

        handle_message(&mut core, now, invite("911", "call-2"), source);
        assert_eq!(forwarded(&mut core), 1, "the next call is routed as ever");
    }
}
