//! Header names: the ones the router reads, with every compact form, matched
//! case-insensitively without allocating.

/// A header name the router knows, or `Other` for the rest (its text stays in
/// the message buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Accept,
    AcceptContact,
    Allow,
    AllowEvents,
    CallId,
    CallInfo,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentId,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    Event,
    Expires,
    From,
    Geolocation,
    GeolocationError,
    GeolocationRouting,
    Identity,
    MaxForwards,
    PAssertedIdentity,
    PPreferredIdentity,
    Priority,
    ProxyRequire,
    RecordRoute,
    ReferTo,
    ReferredBy,
    RejectContact,
    RequestDisposition,
    Require,
    ResourcePriority,
    Route,
    SessionExpires,
    Subject,
    Supported,
    To,
    Unsupported,
    UserAgent,
    Via,
    Other,
}

impl HeaderName {
    /// Looks a name up, long or compact form, ignoring ASCII case.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'i' => CallId,
                b'm' => Contact,
                b'e' => ContentEncoding,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'f' => From,
                b's' => Subject,
                b'k' => Supported,
                b't' => To,
                b'v' => Via,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                b'y' => Identity,
                b'a' => AcceptContact,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                _ => Other,
            };
        }
        if name.is_empty() {
            return Other;
        }
        // One candidate by length and first letter (second letter where two
        // share both), then a case-insensitive compare.
        let (text, h): (&[u8], HeaderName) = match (name.len(), name[0] | 0x20) {
            (2, b't') => (b"To", To),
            (3, b'v') => (b"Via", Via),
            (4, b'f') => (b"From", From),
            (4, b'c') => (b"CSeq", CSeq),
            (4, b'd') => (b"Date", Date),
            (5, b'r') => (b"Route", Route),
            (5, b'a') => (b"Allow", Allow),
            (5, b'e') => (b"Event", Event),
            (6, b'a') => (b"Accept", Accept),
            (7, b'c') if name[1] | 0x20 == b'a' => (b"Call-ID", CallId),
            (7, b'c') => (b"Contact", Contact),
            (7, b'r') => (b"Require", Require),
            (7, b'e') => (b"Expires", Expires),
            (7, b's') => (b"Subject", Subject),
            (8, b'p') => (b"Priority", Priority),
            (8, b'r') => (b"Refer-To", ReferTo),
            (8, b'i') => (b"Identity", Identity),
            (9, b'c') => (b"Call-Info", CallInfo),
            (9, b's') => (b"Supported", Supported),
            (10, b'c') => (b"Content-ID", ContentId),
            (10, b'u') => (b"User-Agent", UserAgent),
            (11, b'g') => (b"Geolocation", Geolocation),
            (11, b'r') => (b"Referred-By", ReferredBy),
            (11, b'u') => (b"Unsupported", Unsupported),
            (12, b'm') => (b"Max-Forwards", MaxForwards),
            (12, b'c') => (b"Content-Type", ContentType),
            (12, b'r') => (b"Record-Route", RecordRoute),
            (12, b'a') => (b"Allow-Events", AllowEvents),
            (13, b'p') => (b"Proxy-Require", ProxyRequire),
            (14, b'c') => (b"Content-Length", ContentLength),
            (14, b'a') => (b"Accept-Contact", AcceptContact),
            (14, b'r') => (b"Reject-Contact", RejectContact),
            (15, b's') => (b"Session-Expires", SessionExpires),
            (16, b'c') => (b"Content-Encoding", ContentEncoding),
            (17, b'r') => (b"Resource-Priority", ResourcePriority),
            (17, b'g') => (b"Geolocation-Error", GeolocationError),
            (19, b'p') => (b"P-Asserted-Identity", PAssertedIdentity),
            (19, b'g') => (b"Geolocation-Routing", GeolocationRouting),
            (19, b'r') => (b"Request-Disposition", RequestDisposition),
            (19, b'c') => (b"Content-Disposition", ContentDisposition),
            (20, b'p') => (b"P-Preferred-Identity", PPreferredIdentity),
            _ => return Other,
        };
        if same_name(name, text) {
            h
        } else {
            Other
        }
    }

    /// The canonical long form, as the router writes it.
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Accept => "Accept",
            AcceptContact => "Accept-Contact",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            CallId => "Call-ID",
            CallInfo => "Call-Info",
            Contact => "Contact",
            ContentDisposition => "Content-Disposition",
            ContentEncoding => "Content-Encoding",
            ContentId => "Content-ID",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Date => "Date",
            Event => "Event",
            Expires => "Expires",
            From => "From",
            Geolocation => "Geolocation",
            GeolocationError => "Geolocation-Error",
            GeolocationRouting => "Geolocation-Routing",
            Identity => "Identity",
            MaxForwards => "Max-Forwards",
            PAssertedIdentity => "P-Asserted-Identity",
            PPreferredIdentity => "P-Preferred-Identity",
            Priority => "Priority",
            ProxyRequire => "Proxy-Require",
            RecordRoute => "Record-Route",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
            Require => "Require",
            ResourcePriority => "Resource-Priority",
            Route => "Route",
            SessionExpires => "Session-Expires",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Unsupported => "Unsupported",
            UserAgent => "User-Agent",
            Via => "Via",
            Other => "",
        }
    }

    /// Headers that may appear only once in a message (RFC 3261 section 7.3.1
    /// allows repetition only for comma-separated list headers).
    pub fn is_single(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            CallId | CSeq | From | To | MaxForwards | ContentLength | ContentType
        )
    }
}

/// Case-insensitive comparison with a known name made of ASCII letters and
/// hyphens, eight bytes at a time: a letter of the known name matches either
/// case (`| 0x20` folds only `A-Z` onto `a-z`), a hyphen must match as is.
fn same_name(name: &[u8], known: &[u8]) -> bool {
    if name.len() != known.len() {
        return false;
    }
    let (mut a, mut k) = (name, known);
    while !k.is_empty() {
        let n = k.len().min(8);
        let (x, y) = (word(&a[..n]), word(&k[..n]));
        // Letters have bit 0x40 set, a hyphen does not: 0x20 where `known`
        // holds a letter.
        let fold = (y & 0x4040_4040_4040_4040) >> 1;
        if x | fold != y | fold {
            return false;
        }
        a = &a[n..];
        k = &k[n..];
    }
    true
}

/// Up to eight bytes as a little-endian word, zero-padded.
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::HeaderName::{self, *};

    #[test]
    fn near_misses_are_other_names() {
        for near in [
            &b"Content\rLength"[..],
            b"Content_Length",
            b"Content-Lengtx",
            b"Max-Forward5",
            b"P-Asserted-Identit\x19",
            b"Via\x00",
            b"",
            b"-",
        ] {
            assert_eq!(HeaderName::from_bytes(near), Other, "{near:?}");
        }
        assert_eq!(HeaderName::from_bytes(b"cOnTeNt-LeNgTh"), ContentLength);
        assert_eq!(HeaderName::from_bytes(b"V"), Via);
    }

    #[test]
    fn every_name_round_trips_through_its_canonical_form() {
        let all = [
            Accept,
            AcceptContact,
            Allow,
            AllowEvents,
            CallId,
            CallInfo,
            Contact,
            ContentDisposition,
            ContentEncoding,
            ContentId,
            ContentLength,
            ContentType,
            CSeq,
            Date,
            Event,
            Expires,
            From,
            Geolocation,
            GeolocationError,
            GeolocationRouting,
            Identity,
            MaxForwards,
            PAssertedIdentity,
            PPreferredIdentity,
            Priority,
            ProxyRequire,
            RecordRoute,
            ReferTo,
            ReferredBy,
            RejectContact,
            RequestDisposition,
            Require,
            ResourcePriority,
            Route,
            SessionExpires,
            Subject,
            Supported,
            To,
            Unsupported,
            UserAgent,
            Via,
        ];
        for h in all {
            assert_eq!(
                HeaderName::from_bytes(h.as_str().as_bytes()),
                h,
                "{}",
                h.as_str()
            );
            let upper = h.as_str().to_ascii_uppercase();
            assert_eq!(HeaderName::from_bytes(upper.as_bytes()), h);
        }
    }

    #[test]
    fn compact_forms() {
        let table: &[(&str, HeaderName)] = &[
            ("i", CallId),
            ("m", Contact),
            ("e", ContentEncoding),
            ("l", ContentLength),
            ("c", ContentType),
            ("f", From),
            ("s", Subject),
            ("k", Supported),
            ("t", To),
            ("v", Via),
            ("o", Event),
            ("u", AllowEvents),
            ("r", ReferTo),
            ("b", ReferredBy),
            ("x", SessionExpires),
            ("y", Identity),
            ("a", AcceptContact),
            ("j", RejectContact),
            ("d", RequestDisposition),
            ("V", Via),
            ("I", CallId),
            ("z", Other),
        ];
        for (name, h) in table {
            assert_eq!(HeaderName::from_bytes(name.as_bytes()), *h, "{name}");
        }
    }

    #[test]
    fn unknown_names_are_other() {
        assert_eq!(HeaderName::from_bytes(b"X-Custom"), Other);
        assert_eq!(HeaderName::from_bytes(b"Vias"), Other);
        assert_eq!(HeaderName::from_bytes(b""), Other);
    }
}
