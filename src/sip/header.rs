//! Header names: the ones the router reads, with every compact form, matched
//! case-insensitively without allocating.

/// Declares [`HeaderName`] with the canonical text of each known name, and
/// [`ALL_KNOWN`] in the same order, from one list.
macro_rules! header_names {
    ($($name:ident => $text:literal,)*) => {
        /// A header name the router knows, or `Other` for the rest (its text
        /// stays in the message buffer).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum HeaderName {
            $($name,)*
            Other,
        }

        /// Every known name, in declaration order (`ALL_KNOWN[h as usize] == h`).
        const ALL_KNOWN: [HeaderName; HeaderName::Other as usize] = [$(HeaderName::$name,)*];

        impl HeaderName {
            /// The canonical long form, as the router writes it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$name => $text,)*
                    HeaderName::Other => "",
                }
            }
        }
    };
}

header_names! {
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
        match candidate(name.len(), name[0], name.get(1).copied().unwrap_or(0)) {
            Some(h) if same_name(name, h.as_str().as_bytes()) => h,
            _ => Other,
        }
    }

    /// [`HeaderName::from_bytes`] for the name that takes the first `len`
    /// bytes of `s`, where `s` goes on past the name (a header line and what
    /// follows it): when 24 bytes are there, the name is compared a whole
    /// word at a time with no copy.
    #[inline]
    pub fn from_prefix(s: &[u8], len: usize) -> HeaderName {
        if len < 2 || s.len() < 24 || len > 24 {
            return HeaderName::from_bytes(&s[..len.min(s.len())]);
        }
        let Some(h) = candidate(len, s[0], s[1]) else {
            return HeaderName::Other;
        };
        let words = &NAME_WORDS[h as usize];
        let mut k = 0;
        while k * 8 < len {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[k * 8..k * 8 + 8]);
            let left = len - k * 8;
            let mask = if left >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * left)) - 1
            };
            let x = u64::from_le_bytes(w) & mask;
            let y = words[k];
            // Letters have bit 0x40 set, a hyphen does not: 0x20 where the
            // known name holds a letter, so either case matches there.
            let fold = (y & 0x4040_4040_4040_4040) >> 1;
            if x | fold != y | fold {
                return HeaderName::Other;
            }
            k += 1;
        }
        h
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

/// The one known name a header name can be, by its length and first letter
/// (second letter where two share both).
#[inline]
fn candidate(len: usize, first: u8, second: u8) -> Option<HeaderName> {
    use HeaderName::*;
    Some(match (len, first | 0x20) {
        (2, b't') => To,
        (3, b'v') => Via,
        (4, b'f') => From,
        (4, b'c') => CSeq,
        (4, b'd') => Date,
        (5, b'r') => Route,
        (5, b'a') => Allow,
        (5, b'e') => Event,
        (6, b'a') => Accept,
        (7, b'c') if second | 0x20 == b'a' => CallId,
        (7, b'c') => Contact,
        (7, b'r') => Require,
        (7, b'e') => Expires,
        (7, b's') => Subject,
        (8, b'p') => Priority,
        (8, b'r') => ReferTo,
        (8, b'i') => Identity,
        (9, b'c') => CallInfo,
        (9, b's') => Supported,
        (10, b'c') => ContentId,
        (10, b'u') => UserAgent,
        (11, b'g') => Geolocation,
        (11, b'r') => ReferredBy,
        (11, b'u') => Unsupported,
        (12, b'm') => MaxForwards,
        (12, b'c') => ContentType,
        (12, b'r') => RecordRoute,
        (12, b'a') => AllowEvents,
        (13, b'p') => ProxyRequire,
        (14, b'c') => ContentLength,
        (14, b'a') => AcceptContact,
        (14, b'r') => RejectContact,
        (15, b's') => SessionExpires,
        (16, b'c') => ContentEncoding,
        (17, b'r') => ResourcePriority,
        (17, b'g') => GeolocationError,
        (19, b'p') => PAssertedIdentity,
        (19, b'g') => GeolocationRouting,
        (19, b'r') => RequestDisposition,
        (19, b'c') => ContentDisposition,
        (20, b'p') => PPreferredIdentity,
        _ => return None,
    })
}

/// Each known name's canonical text as three little-endian words,
/// zero-padded, for [`HeaderName::from_prefix`].
static NAME_WORDS: [[u64; 3]; HeaderName::Other as usize] = {
    let mut out = [[0u64; 3]; HeaderName::Other as usize];
    let mut i = 0;
    while i < ALL_KNOWN.len() {
        let text = ALL_KNOWN[i].as_str().as_bytes();
        let mut j = 0;
        while j < text.len() {
            out[i][j / 8] |= (text[j] as u64) << (8 * (j % 8));
            j += 1;
        }
        i += 1;
    }
    out
};

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
    use super::ALL_KNOWN;

    #[test]
    fn the_known_names_table_is_in_declaration_order_and_every_name_reads_back() {
        for (i, h) in ALL_KNOWN.iter().enumerate() {
            assert_eq!(*h as usize, i);
            let name = h.as_str();
            // Exact, lower, upper case; with a line after it (word loads)
            // and alone (byte compare).
            for text in [name.to_string(), name.to_lowercase(), name.to_uppercase()] {
                assert_eq!(HeaderName::from_bytes(text.as_bytes()), *h, "{text}");
                let line = format!("{text}: value that runs on for a while\r\n");
                assert_eq!(
                    HeaderName::from_prefix(line.as_bytes(), text.len()),
                    *h,
                    "{text}"
                );
                // One byte changed is another name.
                let mut bad = line.clone().into_bytes();
                bad[text.len() - 1] ^= 0x01;
                assert_ne!(HeaderName::from_prefix(&bad, text.len()), *h, "{text}");
                let mut dash = line.clone().into_bytes();
                dash[text.len() / 2] = b'_';
                assert_ne!(HeaderName::from_prefix(&dash, text.len()), *h, "{text}");
            }
        }
    }

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
