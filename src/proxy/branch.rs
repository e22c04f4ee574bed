//! The identifiers the router writes on the wire: the branches of its own
//! Vias, the To tags of its answers, and the loop-detection hash both
//! start with.
//!
//! They are derived with FNV-1a, whose output is fixed by its definition:
//! a retransmission must get the same branch or tag as the request it
//! repeats, and tests pin the bytes. The hashers of the core's tables
//! (foldhash) make no such promise from one version to the next.

use smallvec::SmallVec;

use super::Core;
use crate::sip::{HeaderName, Message};

/// A branch the router writes: `z9hG4bKsos`, the loop hash and a counter.
pub(super) type Branch = SmallVec<[u8; 64]>;

impl Core {
    /// A branch unique to this client transaction, starting with the
    /// request's loop-detection prefix.
    pub(super) fn new_branch(&self, loop_hash: u64) -> Branch {
        let n = self.branch_counter.get().wrapping_add(1);
        self.branch_counter.set(n);
        let mut b = Branch::from_slice(&branch_prefix(loop_hash));
        b.push(b'.');
        push_hex(&mut b, self.cfg.seed & 0xffff_ffff, 1);
        push_hex(&mut b, n, 1);
        b
    }

    /// The To tag of a response sent without a transaction: the same for a
    /// request, its retransmissions and the ACK of its answer.
    pub(super) fn stateless_tag(&self, msg: &Message) -> Branch {
        let mut h = Fnv::new();
        h.write(msg.call_id().unwrap_or_default());
        h.write(msg.from().and_then(|f| f.tag()).unwrap_or_default());
        h.write(&msg.cseq().map_or(0, |c| c.seq).to_le_bytes());
        h.write(&self.cfg.seed.to_le_bytes());
        let mut tag = Branch::from_slice(STATELESS_TAG);
        push_hex(&mut tag, h.finish(), 16);
        tag
    }
}

pub(super) fn branch_prefix(loop_hash: u64) -> Branch {
    let mut b = Branch::from_slice(b"z9hG4bKsos");
    push_hex(&mut b, loop_hash, 16);
    b
}

/// The same branch for every retransmission of a request forwarded without
/// a transaction (the ACK for a 2xx).
pub(super) fn stateless_branch(msg: &Message, loop_hash: u64) -> Branch {
    let mut h = Fnv::new();
    h.write(msg.list(HeaderName::Via).next().unwrap_or_default());
    h.write(msg.call_id().unwrap_or_default());
    h.write(&msg.cseq().map_or(0, |c| c.seq).to_le_bytes());
    let mut b = branch_prefix(loop_hash);
    b.extend_from_slice(b".a");
    push_hex(&mut b, h.finish(), 16);
    b
}

/// How the To tag of a response sent without a transaction begins.
pub(super) const STATELESS_TAG: &[u8] = b"sosol";

/// A hash of what identifies a request for loop detection (RFC 3261 section
/// 16.3 item 4): Request-URI, tags, Call-ID and CSeq. A request that comes
/// back with these unchanged and one of our Via values carrying the same
/// hash has looped; a spiral changes the Request-URI and passes.
pub(super) fn loop_hash(msg: &Message) -> u64 {
    let mut h = Fnv::new();
    h.write(msg.request_uri_bytes());
    h.write(msg.from().and_then(|f| f.tag()).unwrap_or_default());
    h.write(msg.to().and_then(|t| t.tag()).unwrap_or_default());
    h.write(msg.call_id().unwrap_or_default());
    h.write(&msg.cseq().map_or(0, |c| c.seq).to_le_bytes());
    h.finish()
}

/// `v` in lower-case hex, at least `width` digits.
pub(super) fn push_hex(out: &mut Branch, v: u64, width: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros() as usize).div_ceil(4);
    for i in (0..digits.max(width).clamp(1, 16)).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    fn write(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
        // A separator, so that ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x100000001b3);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
