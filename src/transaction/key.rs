//! Transaction matching keys (RFC 3261 17.1.3 and 17.2.3) and branch
//! generation.
//!
//! A [`TransactionKey`] is built from byte slices the caller has already
//! parsed out of a message and owns a compact encoding of them, so it can
//! index a hash map of live transactions:
//!
//! - a client key ([`TransactionKey::client`]) matches a response to the
//!   client transaction that sent the request: top Via branch plus CSeq
//!   method;
//! - a server key ([`TransactionKey::server`]) matches a request to a
//!   server transaction: branch, top Via sent-by and method when the branch
//!   starts with the magic cookie, or the RFC 2543 fallback fields
//!   otherwise. An ACK maps to the key of its INVITE; a CANCEL keeps its
//!   own method, so its key differs from the INVITE it cancels.
//!
//! Comparison rules: the branch, method, Call-ID, tags and Request-URI are
//! compared byte for byte (case-sensitive); the sent-by and the RFC 2543
//! top Via are compared without regard to ASCII case.

use std::fmt;

use smallvec::SmallVec;

/// The prefix of an RFC 3261 branch parameter.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// The parsed parts of a request that identify its server transaction.
///
/// With a cookie branch only `method`, `branch` and `sent_by` are used;
/// the other fields feed the RFC 2543 fallback and may be left empty when
/// the branch has the cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKeyParts<'a> {
    /// The request method, e.g. `b"INVITE"`.
    pub method: &'a [u8],
    /// The `branch` parameter of the top Via, if any.
    pub branch: Option<&'a [u8]>,
    /// The sent-by (`host[:port]`) of the top Via.
    pub sent_by: &'a [u8],
    /// The Request-URI as received.
    pub request_uri: &'a [u8],
    /// The `tag` parameter of To, if any.
    pub to_tag: Option<&'a [u8]>,
    /// The `tag` parameter of From, if any.
    pub from_tag: Option<&'a [u8]>,
    /// The Call-ID value.
    pub call_id: &'a [u8],
    /// The CSeq sequence number.
    pub cseq: u32,
    /// The whole value of the top Via header field.
    pub top_via: &'a [u8],
}

/// Which matching rules a key follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A client transaction key: branch and CSeq method (17.1.3).
    Client,
    /// A server transaction key under RFC 3261: branch, sent-by and method
    /// (17.2.3).
    Server,
    /// A server transaction key under the RFC 2543 fallback: Request-URI,
    /// To tag, From tag, Call-ID, CSeq number and method, top Via.
    Rfc2543,
}

impl KeyKind {
    fn tag(self) -> u8 {
        match self {
            KeyKind::Client => 0,
            KeyKind::Server => 1,
            KeyKind::Rfc2543 => 2,
        }
    }

    fn from_tag(tag: u8) -> Self {
        match tag {
            0 => KeyKind::Client,
            1 => KeyKind::Server,
            _ => KeyKind::Rfc2543,
        }
    }
}

/// An owned transaction key, hashable and compared by value.
///
/// The key is one byte string: a kind byte, then each field as a LEB128
/// length and its bytes (the method always first). Keys of up to
/// [`INLINE`] bytes, which covers the RFC 3261 keys of ordinary branches,
/// live inside the value: building one to look a message up allocates
/// nothing. Fields compared
/// case-insensitively are stored lowercased, so equality and hashing of the
/// encoding follow the matching rules. An absent optional field has its
/// own marker and never equals an empty one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    repr: SmallVec<[u8; INLINE]>,
}

/// The longest encoding kept inline.
pub const INLINE: usize = 72;

impl TransactionKey {
    /// The key matching responses to a client transaction: the branch of
    /// the top Via (the one the transaction put there) and the CSeq method.
    /// Build it from the request when sending, and from each response when
    /// it arrives.
    pub fn client(branch: &[u8], method: &[u8]) -> Self {
        let mut enc = Encoder::new(KeyKind::Client);
        enc.field(method);
        enc.field(branch);
        enc.finish()
    }

    /// The key matching a request to a server transaction.
    ///
    /// With a branch starting with [`MAGIC_COOKIE`]: branch, sent-by and
    /// method, ACK standing for INVITE. Otherwise the RFC 2543 fallback:
    /// Request-URI, To tag, From tag, Call-ID, CSeq number, method (ACK
    /// standing for INVITE) and top Via.
    ///
    /// Under the fallback an ACK for a non-2xx carries the To tag of the
    /// response, which an initial INVITE lacked; when this key finds
    /// nothing, look up [`TransactionKey::server_ack_untagged`] and check
    /// that the ACK's To tag is the one the transaction's response carried.
    pub fn server(parts: &RequestKeyParts<'_>) -> Self {
        match parts.branch {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => {
                let mut enc = Encoder::new(KeyKind::Server);
                enc.field(server_method(parts.method));
                enc.field(branch);
                enc.folded(parts.sent_by);
                enc.finish()
            }
            _ => rfc2543(parts, parts.to_tag),
        }
    }

    /// For an ACK that falls back to RFC 2543 matching: the key of an
    /// INVITE that had no To tag, i.e. [`TransactionKey::server`] with the
    /// To tag left out. `None` for other methods and for cookie branches,
    /// whose keys never depend on the To tag.
    pub fn server_ack_untagged(parts: &RequestKeyParts<'_>) -> Option<Self> {
        let cookie = parts
            .branch
            .is_some_and(|branch| branch.starts_with(MAGIC_COOKIE));
        (parts.method == b"ACK" && !cookie).then(|| rfc2543(parts, None))
    }

    /// The rules this key follows.
    pub fn kind(&self) -> KeyKind {
        KeyKind::from_tag(self.repr[0])
    }

    /// The method in the key (INVITE for a server key built from an ACK).
    pub fn method(&self) -> &[u8] {
        self.fields().next().unwrap_or_default()
    }

    /// The branch, for client and RFC 3261 server keys.
    pub fn branch(&self) -> Option<&[u8]> {
        match self.kind() {
            KeyKind::Client | KeyKind::Server => self.fields().nth(1),
            KeyKind::Rfc2543 => None,
        }
    }

    /// Whether the encoding lives inside the value (no allocation).
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        !self.repr.spilled()
    }

    /// The length of the encoding, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.repr.len()
    }

    /// The fields after the kind byte; absent fields yield an empty slice.
    fn fields(&self) -> Fields<'_> {
        Fields {
            rest: &self.repr[1..],
        }
    }
}

impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_tuple("TransactionKey");
        list.field(&self.kind());
        for field in self.fields() {
            list.field(&String::from_utf8_lossy(field));
        }
        list.finish()
    }
}

/// ACK matches the server transaction of its INVITE; every other method,
/// CANCEL included, keys its own transaction.
fn server_method(method: &[u8]) -> &[u8] {
    if method == b"ACK" {
        b"INVITE"
    } else {
        method
    }
}

fn rfc2543(parts: &RequestKeyParts<'_>, to_tag: Option<&[u8]>) -> TransactionKey {
    let mut enc = Encoder::new(KeyKind::Rfc2543);
    enc.field(server_method(parts.method));
    enc.field(parts.request_uri);
    enc.optional(to_tag);
    enc.optional(parts.from_tag);
    enc.field(parts.call_id);
    enc.field(&parts.cseq.to_be_bytes());
    enc.folded(parts.top_via);
    enc.finish()
}

/// Marker of an absent optional field, written where a length would be.
/// Lengths are written as `len + 1`, so no length collides with it.
const ABSENT: u8 = 0;

struct Encoder {
    buf: SmallVec<[u8; INLINE]>,
}

impl Encoder {
    fn new(kind: KeyKind) -> Self {
        let mut buf = SmallVec::new();
        buf.push(kind.tag());
        Self { buf }
    }

    fn length(&mut self, len: usize) {
        let mut value = len as u64 + 1;
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.buf.push(low);
                return;
            }
            self.buf.push(low | 0x80);
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    fn folded(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.buf.extend(bytes.iter().map(u8::to_ascii_lowercase));
    }

    fn optional(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.field(bytes),
            None => self.buf.push(ABSENT),
        }
    }

    fn finish(self) -> TransactionKey {
        TransactionKey { repr: self.buf }
    }
}

/// Walks the fields of an encoding written by [`Encoder`].
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let mut value: u64 = 0;
        let mut shift = 0;
        let mut used = 0;
        for &byte in self.rest {
            used += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let start = used;
        if value == u64::from(ABSENT) {
            self.rest = &self.rest[start..];
            return Some(&[]);
        }
        let end = start + (value - 1) as usize;
        let field = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(field)
    }
}

/// A branch parameter for a new client transaction: the magic cookie
/// followed by 32 hex digits.
///
/// The first 16 digits depend on `seed` only (one random value per proxy
/// instance, chosen by the caller); the last 16 are a bijection of
/// `counter` for a given seed, so distinct counters under the same seed
/// never give the same branch. The function is pure: the same inputs give
/// the same branch.
pub fn new_branch(seed: u64, counter: u64) -> String {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let instance = finalize(seed ^ 0x6a09_e667_f3bc_c908);
    let unique = finalize(seed.wrapping_add(counter.wrapping_mul(GOLDEN_GAMMA)));
    format!("z9hG4bK{instance:016x}{unique:016x}")
}

/// A 64-bit mixing function made of invertible steps (xor-shifts and
/// multiplications by odd constants), hence a bijection.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const BRANCH: &[u8] = b"z9hG4bK74bf9a";

    fn cookie(method: &'static [u8]) -> RequestKeyParts<'static> {
        RequestKeyParts {
            method,
            branch: Some(BRANCH),
            sent_by: b"pc33.atlanta.example.com:5060",
            ..RequestKeyParts::default()
        }
    }

    fn legacy(method: &'static [u8]) -> RequestKeyParts<'static> {
        RequestKeyParts {
            method,
            branch: None,
            sent_by: b"client.example.org",
            request_uri: b"sip:112@psap.example.net",
            to_tag: None,
            from_tag: Some(b"9fxced76sl"),
            call_id: b"3848276298220188511@client.example.org",
            cseq: 1,
            top_via: b"SIP/2.0/UDP client.example.org:5060",
        }
    }

    #[test]
    fn ack_matches_the_invite_server_key() {
        let invite = TransactionKey::server(&cookie(b"INVITE"));
        let ack = TransactionKey::server(&cookie(b"ACK"));
        assert_eq!(invite, ack);
        assert_eq!(ack.kind(), KeyKind::Server);
        assert_eq!(ack.method(), b"INVITE");
        assert_eq!(ack.branch(), Some(BRANCH));

        let mut live = HashMap::new();
        live.insert(invite, "invite transaction");
        assert_eq!(live.get(&ack), Some(&"invite transaction"));
    }

    #[test]
    fn cancel_has_its_own_key() {
        let invite = TransactionKey::server(&cookie(b"INVITE"));
        let cancel = TransactionKey::server(&cookie(b"CANCEL"));
        assert_ne!(invite, cancel);
        assert_eq!(cancel.method(), b"CANCEL");
        assert_eq!(cancel.branch(), invite.branch());
        // Under the fallback too: same CSeq number, different method.
        assert_ne!(
            TransactionKey::server(&legacy(b"INVITE")),
            TransactionKey::server(&legacy(b"CANCEL"))
        );
        // And on the client side, where a response's CSeq method decides.
        assert_ne!(
            TransactionKey::client(BRANCH, b"INVITE"),
            TransactionKey::client(BRANCH, b"CANCEL")
        );
    }

    #[test]
    fn branch_is_case_sensitive_and_host_is_not() {
        let base = TransactionKey::server(&cookie(b"INVITE"));
        let upper_host = TransactionKey::server(&RequestKeyParts {
            sent_by: b"PC33.Atlanta.EXAMPLE.com:5060",
            ..cookie(b"INVITE")
        });
        assert_eq!(base, upper_host);
        let upper_branch = TransactionKey::server(&RequestKeyParts {
            branch: Some(b"z9hG4bK74BF9A"),
            ..cookie(b"INVITE")
        });
        assert_ne!(base, upper_branch);
        let other_sender = TransactionKey::server(&RequestKeyParts {
            sent_by: b"pc33.atlanta.example.com:5070",
            ..cookie(b"INVITE")
        });
        assert_ne!(base, other_sender);
    }

    #[test]
    fn method_is_case_sensitive() {
        assert_ne!(
            TransactionKey::server(&cookie(b"INVITE")),
            TransactionKey::server(&cookie(b"invite"))
        );
        // Only the exact method ACK stands for INVITE.
        assert_ne!(
            TransactionKey::server(&cookie(b"INVITE")),
            TransactionKey::server(&cookie(b"ack"))
        );
    }

    #[test]
    fn cookie_keys_ignore_the_fallback_fields() {
        let a = TransactionKey::server(&cookie(b"INVITE"));
        let b = TransactionKey::server(&RequestKeyParts {
            call_id: b"other",
            cseq: 99,
            request_uri: b"sip:other@example.com",
            ..cookie(b"INVITE")
        });
        assert_eq!(a, b);
    }

    #[test]
    fn rfc2543_fallback_equality() {
        let original = TransactionKey::server(&legacy(b"INVITE"));
        assert_eq!(original.kind(), KeyKind::Rfc2543);
        assert_eq!(original.branch(), None);
        assert_eq!(original.method(), b"INVITE");
        // A retransmission builds the same key; the top Via compares
        // without regard to case.
        let retransmission = TransactionKey::server(&RequestKeyParts {
            top_via: b"SIP/2.0/UDP Client.Example.ORG:5060",
            ..legacy(b"INVITE")
        });
        assert_eq!(original, retransmission);
        // A branch without the cookie falls back as well.
        let old_branch = RequestKeyParts {
            branch: Some(b"74bf9a"),
            ..legacy(b"INVITE")
        };
        assert_eq!(TransactionKey::server(&old_branch).kind(), KeyKind::Rfc2543);
        // A re-INVITE's ACK carries the same To tag and matches directly.
        let tagged = RequestKeyParts {
            to_tag: Some(b"314159"),
            ..legacy(b"INVITE")
        };
        let tagged_ack = RequestKeyParts {
            to_tag: Some(b"314159"),
            ..legacy(b"ACK")
        };
        assert_eq!(
            TransactionKey::server(&tagged),
            TransactionKey::server(&tagged_ack)
        );
    }

    #[test]
    fn rfc2543_fallback_inequality() {
        let original = TransactionKey::server(&legacy(b"INVITE"));
        let variants = [
            RequestKeyParts {
                request_uri: b"sip:113@psap.example.net",
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                to_tag: Some(b"a"),
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                to_tag: Some(b""),
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                from_tag: Some(b"9FXCED76SL"),
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                from_tag: None,
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                call_id: b"3848276298220188511@CLIENT.example.org",
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                cseq: 2,
                ..legacy(b"INVITE")
            },
            RequestKeyParts {
                top_via: b"SIP/2.0/UDP client.example.org:5062",
                ..legacy(b"INVITE")
            },
        ];
        let mut seen = HashSet::new();
        seen.insert(original.clone());
        for parts in &variants {
            let key = TransactionKey::server(parts);
            assert_ne!(key, original, "{parts:?}");
            assert!(seen.insert(key), "{parts:?} collides with another variant");
        }
    }

    #[test]
    fn rfc2543_ack_of_an_untagged_invite_matches_via_the_untagged_key() {
        let invite = TransactionKey::server(&legacy(b"INVITE"));
        let ack = RequestKeyParts {
            to_tag: Some(b"server-tag"),
            ..legacy(b"ACK")
        };
        assert_ne!(TransactionKey::server(&ack), invite);
        assert_eq!(TransactionKey::server_ack_untagged(&ack), Some(invite));
        assert_eq!(TransactionKey::server_ack_untagged(&legacy(b"BYE")), None);
        assert_eq!(TransactionKey::server_ack_untagged(&cookie(b"ACK")), None);
    }

    #[test]
    fn client_and_server_keys_never_mix() {
        let client = TransactionKey::client(BRANCH, b"INVITE");
        assert_eq!(client.kind(), KeyKind::Client);
        assert_eq!(client.branch(), Some(BRANCH));
        assert_eq!(client.method(), b"INVITE");
        assert_eq!(client, TransactionKey::client(BRANCH, b"INVITE"));
        assert_ne!(client, TransactionKey::server(&cookie(b"INVITE")));
        assert_ne!(client, TransactionKey::client(b"z9hG4bK74bf9b", b"INVITE"));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Shifting bytes from one field to the next changes the key.
        let a = TransactionKey::client(b"z9hG4bKab", b"INVITE");
        let b = TransactionKey::client(b"bz9hG4bKa", b"INVITE");
        assert_ne!(a, b);
        let long = vec![b'x'; 300];
        let key = TransactionKey::client(&long, b"OPTIONS");
        assert_eq!(key.branch(), Some(&long[..]));
        assert_eq!(key.method(), b"OPTIONS");
        assert_eq!(key.encoded_len(), 1 + 1 + 7 + 2 + 300);
    }

    #[test]
    fn keys_are_compact() {
        let key = TransactionKey::server(&cookie(b"INVITE"));
        assert_eq!(
            key.encoded_len(),
            1 + (1 + 6) + (1 + BRANCH.len()) + (1 + b"pc33.atlanta.example.com:5060".len())
        );
        assert!(key.is_inline());
        assert!(std::mem::size_of::<TransactionKey>() <= INLINE + 16);
        // A longer key moves to the heap and keeps working.
        let branch = [b"z9hG4bK".as_slice(), &[b'7'; 80]].concat();
        let key = TransactionKey::client(&branch, b"INVITE");
        assert!(!key.is_inline());
        assert_eq!(key.branch(), Some(&branch[..]));
        assert_eq!(key, TransactionKey::client(&branch, b"INVITE"));
    }

    #[test]
    fn debug_shows_the_fields() {
        let key = TransactionKey::server(&cookie(b"ACK"));
        let text = format!("{key:?}");
        assert!(text.contains("Server"), "{text}");
        assert!(text.contains("INVITE"), "{text}");
        assert!(text.contains("z9hG4bK74bf9a"), "{text}");
    }

    #[test]
    fn new_branch_has_the_cookie_and_is_a_token() {
        let branch = new_branch(42, 0);
        assert!(branch.starts_with("z9hG4bK"));
        assert_eq!(branch.len(), 7 + 32);
        assert!(branch[7..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(branch, new_branch(42, 0));
        let key = TransactionKey::server(&RequestKeyParts {
            method: b"INVITE",
            branch: Some(branch.as_bytes()),
            ..RequestKeyParts::default()
        });
        assert_eq!(key.kind(), KeyKind::Server);
    }

    #[test]
    fn new_branch_is_unique_per_counter_and_seed() {
        let mut seen = HashSet::new();
        for counter in 0..20_000 {
            assert!(seen.insert(new_branch(7, counter)));
        }
        for seed in 0..1_000 {
            assert!(seen.insert(new_branch(seed + 8, 0)));
        }
        assert_ne!(new_branch(1, 5)[7..23], new_branch(2, 5)[7..23]);
    }
}
