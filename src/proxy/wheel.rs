//! The core's timers: a hashed timing wheel.
//!
//! A call leaves timers behind for 32 seconds (RFC 3261 Timers J, L and M
//! at 64*T1), so at a few hundred calls a second the core holds tens of
//! thousands of them. In a binary heap each insertion and each expiry walks
//! the height of the heap across memory that has long left the cache; here
//! an insertion is a push onto the vector of its slot, and an expiry takes
//! from the one slot under the cursor.
//!
//! The wheel gives the same order as a min-heap of `(deadline, value)`:
//! every entry of a slot is earlier than every entry of a later slot, and
//! within a slot the smallest pair is taken first. Entries further out than
//! the wheel's span wait in a small heap and move onto the wheel as the
//! cursor comes within reach of them.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Width of one slot.
const SLOT: Duration = Duration::from_millis(8);
/// Slots on the wheel (a power of two): 65.5 s at 8 ms each, beyond the
/// 32 s of 64*T1 at the default T1.
const SLOTS: usize = 8192;
const MASK: u64 = SLOTS as u64 - 1;
const WORDS: usize = SLOTS / 64;
/// The capacity an emptied slot keeps. A slot that held more gives its
/// vector back: otherwise every slot would keep the largest burst it ever
/// saw, and the wheel's memory would creep up as bursts hit new slots.
const KEEP: usize = 16;

pub struct Wheel<T> {
    /// The instant tick 0 starts at: given, or the first deadline pushed
    /// (so that the wheel never needs to read the clock).
    origin: Option<Instant>,
    /// The tick of the slot under the cursor: every entry on the wheel has
    /// a tick in `cursor .. cursor + SLOTS`, entries already due at
    /// insertion included (they go under the cursor).
    cursor: u64,
    slots: Box<[Vec<(Instant, T)>]>,
    /// One bit per slot holding entries.
    occupied: Box<[u64; WORDS]>,
    /// Entries at or beyond `cursor + SLOTS`.
    far: BinaryHeap<Reverse<(Instant, T)>>,
    len: usize,
    /// The earliest deadline, when known.
    earliest: Cell<Option<Option<Instant>>>,
}

impl<T: Ord + Copy> Wheel<T> {
    #[cfg(test)]
    pub fn new(origin: Instant) -> Wheel<T> {
        Wheel {
            origin: Some(origin),
            ..Wheel::unanchored()
        }
    }

    /// Sets where tick 0 is, once: the core calls it with the `now` of
    /// every input, so the first one anchors the wheel at the time it was
    /// given, never later than a deadline pushed after it. (Anchored later,
    /// at a far deadline, every nearer entry would pile into one slot.)
    pub fn anchor(&mut self, now: Instant) {
        self.origin.get_or_insert(now);
    }

    /// A wheel whose ticks start at the `now` of [`Wheel::anchor`], else at
    /// the first deadline pushed.
    pub fn unanchored() -> Wheel<T> {
        Wheel {
            origin: None,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: Box::new([0; WORDS]),
            far: BinaryHeap::new(),
            len: 0,
            earliest: Cell::new(Some(None)),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tick(&self, at: Instant) -> u64 {
        let Some(origin) = self.origin else { return 0 };
        let nanos = at.saturating_duration_since(origin).as_nanos();
        u64::try_from(nanos / SLOT.as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn push(&mut self, at: Instant, value: T) {
        if let Some(known) = self.earliest.get() {
            self.earliest
                .set(Some(Some(known.map_or(at, |e| e.min(at)))));
        }
        self.len += 1;
        self.origin.get_or_insert(at);
        let tick = self.tick(at).max(self.cursor);
        if tick - self.cursor >= SLOTS as u64 {
            self.far.push(Reverse((at, value)));
        } else {
            self.place(tick, at, value);
        }
    }

    fn place(&mut self, tick: u64, at: Instant, value: T) {
        let i = (tick & MASK) as usize;
        self.slots[i].push((at, value));
        self.occupied[i / 64] |= 1 << (i % 64);
    }

    /// The earliest deadline of all entries.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(known) = self.earliest.get() {
            return known;
        }
        let on_wheel = self
            .first_occupied(self.cursor, self.cursor + SLOTS as u64)
            .and_then(|t| self.slots[(t & MASK) as usize].iter().map(|e| e.0).min());
        let far = self.far.peek().map(|Reverse((at, _))| *at);
        let earliest = match (on_wheel, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.earliest.set(Some(earliest));
        earliest
    }

    /// The earliest entry due at `now` (deadline at or before it), taken
    /// off the wheel.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.len == 0 {
            return None;
        }
        let now_tick = self.tick(now);
        loop {
            self.bring_near();
            let i = (self.cursor & MASK) as usize;
            let slot = &mut self.slots[i];
            if let Some((k, &(at, _))) = slot.iter().enumerate().min_by(|a, b| a.1.cmp(b.1)) {
                if at > now {
                    return None;
                }
                let entry = slot.swap_remove(k);
                if slot.is_empty() {
                    self.occupied[i / 64] &= !(1 << (i % 64));
                    if slot.capacity() > KEEP {
                        *slot = Vec::new();
                    }
                }
                self.len -= 1;
                self.earliest.set(None);
                return Some(entry);
            }
            if self.cursor >= now_tick {
                return None;
            }
            // Move to the next slot with entries, no further than `now`,
            // nor past a far entry that must come onto the wheel first.
            let mut next = self
                .first_occupied(self.cursor + 1, now_tick + 1)
                .unwrap_or(now_tick);
            if let Some(Reverse((at, _))) = self.far.peek() {
                next = next.min(self.tick(*at).max(self.cursor + 1));
            }
            self.cursor = next;
        }
    }

    /// Moves onto the wheel the far entries it now reaches.
    fn bring_near(&mut self) {
        while let Some(&Reverse((at, value))) = self.far.peek() {
            let tick = self.tick(at).max(self.cursor);
            if tick - self.cursor >= SLOTS as u64 {
                break;
            }
            self.far.pop();
            self.place(tick, at, value);
        }
    }

    /// The first tick in `from .. to` (a range within the wheel's span from
    /// the cursor) whose slot holds entries.
    fn first_occupied(&self, from: u64, to: u64) -> Option<u64> {
        let to = to.min(self.cursor + SLOTS as u64);
        let mut t = from;
        while t < to {
            let i = (t & MASK) as usize;
            let word = self.occupied[i / 64] >> (i % 64);
            if word != 0 {
                let found = t + u64::from(word.trailing_zeros());
                return (found < to).then_some(found);
            }
            t += 64 - (i % 64) as u64;
        }
        None
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_empty() {
                continue;
            }
            slot.retain(|(_, v)| keep(v));
            if slot.is_empty() {
                self.occupied[i / 64] &= !(1 << (i % 64));
            }
        }
        self.far.retain(|Reverse((_, v))| keep(v));
        self.len = self.slots.iter().map(Vec::len).sum::<usize>() + self.far.len();
        self.earliest.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    type Due = Vec<(Instant, u32)>;

    /// Pops everything due at `now` from both the wheel and a heap.
    fn drain_both(
        w: &mut Wheel<u32>,
        h: &mut BinaryHeap<Reverse<(Instant, u32)>>,
        now: Instant,
    ) -> (Due, Due) {
        let mut a = Vec::new();
        while let Some(e) = w.pop_due(now) {
            a.push(e);
        }
        let mut b = Vec::new();
        while h.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            b.push(h.pop().unwrap().0);
        }
        (a, b)
    }

    #[test]
    fn entries_come_out_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.push(t0 + ms(500), 2);
        w.push(t0 + ms(20), 1);
        w.push(t0 + ms(500), 1);
        w.push(t0 + ms(32_000), 3);
        assert_eq!(w.next_deadline(), Some(t0 + ms(20)));
        assert_eq!(w.pop_due(t0 + ms(19)), None);
        assert_eq!(w.pop_due(t0 + ms(20)), Some((t0 + ms(20), 1)));
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        // Same deadline: the smaller value first, as a heap of pairs does.
        assert_eq!(w.pop_due(t0 + ms(600)), Some((t0 + ms(500), 1)));
        assert_eq!(w.pop_due(t0 + ms(600)), Some((t0 + ms(500), 2)));
        assert_eq!(w.pop_due(t0 + ms(600)), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_deadline(), Some(t0 + ms(32_000)));
        assert_eq!(w.pop_due(t0 + ms(40_000)), Some((t0 + ms(32_000), 3)));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn within_one_slot_an_entry_not_yet_due_waits() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.push(t0 + ms(1), 1);
        w.push(t0 + ms(5), 2);
        assert_eq!(w.pop_due(t0 + ms(3)), Some((t0 + ms(1), 1)));
        assert_eq!(w.pop_due(t0 + ms(3)), None);
        assert_eq!(w.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(w.pop_due(t0 + ms(5)), Some((t0 + ms(5), 2)));
    }

    /// Anchored at the time of the first input, a wheel whose first entry
    /// is far off still spreads the nearer ones over their own slots (one
    /// slot holding them all would make every pop a scan of all).
    #[test]
    fn an_anchored_wheel_spreads_entries_pushed_after_a_far_one() {
        let t0 = Instant::now();
        let mut w = Wheel::unanchored();
        w.anchor(t0);
        w.push(t0 + ms(60_000), 1);
        for i in 1..=5u64 {
            w.push(t0 + ms(10 * i), i as u32 + 1);
        }
        let slots: u32 = w.occupied.iter().map(|b| b.count_ones()).sum();
        assert_eq!(slots, 6);
        assert_eq!(w.pop_due(t0 + ms(10)), Some((t0 + ms(10), 2)));
    }

    #[test]
    fn an_entry_pushed_in_the_past_is_due_at_once_and_first() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0 + ms(100));
        w.push(t0 + ms(300), 5);
        assert_eq!(w.pop_due(t0 + ms(200)), None);
        // Before the origin and behind the cursor.
        w.push(t0, 9);
        assert_eq!(w.next_deadline(), Some(t0));
        assert_eq!(w.pop_due(t0 + ms(200)), Some((t0, 9)));
        assert_eq!(w.pop_due(t0 + ms(300)), Some((t0 + ms(300), 5)));
    }

    #[test]
    fn entries_beyond_the_span_wait_and_keep_their_order() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        // Beyond 65.5 s: kept aside, then ordered with later pushes that
        // land on the wheel after the cursor has moved.
        w.push(t0 + ms(100_000), 1);
        w.push(t0 + ms(200_000), 2);
        assert_eq!(w.pop_due(t0 + ms(50_000)), None);
        w.push(t0 + ms(99_000), 3);
        w.push(t0 + ms(101_000), 4);
        assert_eq!(w.next_deadline(), Some(t0 + ms(99_000)));
        let mut out = Vec::new();
        while let Some((_, v)) = w.pop_due(t0 + ms(300_000)) {
            out.push(v);
        }
        assert_eq!(out, [3, 1, 4, 2]);
    }

    #[test]
    fn retain_drops_entries_wherever_they_wait() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for (i, at) in [10u64, 20, 30, 90_000].into_iter().enumerate() {
            w.push(t0 + ms(at), i as u32);
        }
        w.retain(|v| v % 2 == 1);
        assert_eq!(w.len(), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(20)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), Some((t0 + ms(20), 1)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), Some((t0 + ms(90_000), 3)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), None);
    }

    #[test]
    fn an_emptied_slot_gives_back_a_burst_but_keeps_a_small_vector() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for v in 0..100 {
            w.push(t0 + ms(10), v);
        }
        for v in 0..3 {
            w.push(t0 + ms(50), v);
        }
        let (burst, small) = (1, 6);
        assert!(w.slots[burst].capacity() >= 100);
        while w.pop_due(t0 + ms(100)).is_some() {}
        assert!(w.is_empty());
        assert_eq!(w.slots[burst].capacity(), 0);
        assert!(w.slots[small].capacity() >= 3);
        // The slot takes entries again as before.
        w.push(t0 + ms(65_546), 7);
        assert_eq!(w.pop_due(t0 + ms(70_000)), Some((t0 + ms(65_546), 7)));
    }

    /// The wheel against a binary heap over a long pseudo-random run:
    /// pushes near and far, in the past, on slot edges; time moving in
    /// small steps and large jumps. Both must give the same entries in the
    /// same order at every step, and the same next deadline.
    #[test]
    fn the_wheel_and_a_heap_agree_on_a_long_random_run() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let mut h = BinaryHeap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = t0;
        let mut popped = 0;
        for step in 0..20_000u32 {
            for _ in 0..rnd(4) {
                let at = match rnd(6) {
                    0 => now.checked_sub(ms(rnd(50))).unwrap_or(now),
                    1 => now + ms(rnd(200_000)),
                    2 => now + SLOT * (rnd(20) as u32),
                    _ => now + ms(rnd(33_000)),
                };
                let v = rnd(1000) as u32;
                w.push(at, v);
                h.push(Reverse((at, v)));
            }
            assert_eq!(
                w.next_deadline(),
                h.peek().map(|Reverse((at, _))| *at),
                "step {step}"
            );
            now += match rnd(50) {
                0 => ms(rnd(120_000)),
                _ => Duration::from_micros(rnd(20_000)),
            };
            let (a, b) = drain_both(&mut w, &mut h, now);
            assert_eq!(a, b, "step {step}");
            popped += a.len();
            assert_eq!(w.len(), h.len());
        }
        assert!(popped > 10_000, "{popped}");
    }
}
