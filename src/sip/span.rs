//! Byte ranges in a message buffer: what the parsed message, its URIs and
//! its header values index the received bytes with. Below all three, so
//! that each of them can name a span without the others.

/// A byte range in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    /// Whether `other` lies inside this span.
    pub fn contains(self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    pub fn is_empty(self) -> bool {
        self.end == self.start
    }

    /// Where `part` lies in `base`; an empty `part` gives an empty span.
    /// `None` when `part` is not inside `base`.
    pub(crate) fn within(base: &[u8], part: &[u8]) -> Option<Span> {
        if part.is_empty() {
            return Some(Span::default());
        }
        let b = base.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        (p >= b && p + part.len() <= b + base.len()).then(|| Span::new(p - b, p - b + part.len()))
    }
}

/// An optional slice as an optional span (see [`Span::within`]).
pub(crate) fn opt_within(base: &[u8], part: Option<&[u8]>) -> Option<Option<Span>> {
    match part {
        None => Some(None),
        Some(p) => Span::within(base, p).map(Some),
    }
}
