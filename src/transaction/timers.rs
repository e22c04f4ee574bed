//! A small table of armed timers, one slot per timer name.
//!
//! Each state machine names its timers with its own enum (for example
//! [`ClientInviteTimer`](super::ClientInviteTimer)) and keeps a
//! `Timers<Name, N>` with one deadline slot per name. The machine's
//! `next_deadline()` is the earliest armed slot, and `handle_timeout(now)`
//! pops expired slots in deadline order.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// A timer name usable as an index into [`Timers`].
pub trait TimerName: Copy + Eq + fmt::Debug + 'static {
    /// Every name, in index order: `ALL[name.index()] == name`.
    const ALL: &'static [Self];

    /// The slot of this name in the table.
    fn index(self) -> usize;
}

/// Defines a timer-name enum and its [`TimerName`] implementation. The
/// declaration order is the index order, which also breaks ties between
/// timers due at the same instant: the first declared fires first.
macro_rules! timer_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::transaction::timers::TimerName for $name {
            const ALL: &'static [Self] = &[$( $name::$variant ),+];

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use timer_names;

/// Deadlines of up to `N` named timers; `None` means disarmed.
#[derive(Clone, PartialEq, Eq)]
pub struct Timers<T: TimerName, const N: usize> {
    deadlines: [Option<Instant>; N],
    names: PhantomData<T>,
}

impl<T: TimerName, const N: usize> Default for Timers<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: TimerName, const N: usize> fmt::Debug for Timers<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, deadline) in T::ALL.iter().zip(self.deadlines.iter()) {
            if let Some(deadline) = deadline {
                map.entry(name, deadline);
            }
        }
        map.finish()
    }
}

impl<T: TimerName, const N: usize> Timers<T, N> {
    /// A table with every timer disarmed.
    ///
    /// # Panics
    /// If `N` differs from the number of names of `T`.
    pub fn new() -> Self {
        assert_eq!(N, T::ALL.len(), "timer table size must match its names");
        Self {
            deadlines: [None; N],
            names: PhantomData,
        }
    }

    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn arm_at(&mut self, timer: T, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Arms `timer` to fire `after` past `from`. A deadline beyond what
    /// [`Instant`] can represent leaves the timer disarmed.
    pub fn arm(&mut self, timer: T, from: Instant, after: Duration) {
        self.deadlines[timer.index()] = from.checked_add(after);
    }

    /// Disarms `timer`.
    pub fn cancel(&mut self, timer: T) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn clear(&mut self) {
        self.deadlines = [None; N];
    }

    /// When `timer` fires, if armed.
    pub fn deadline(&self, timer: T) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now` (deadline not
    /// after `now`) with its deadline; on equal deadlines the lowest index
    /// wins. `None` when nothing is due.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(T, Instant)> {
        let mut due: Option<(usize, Instant)> = None;
        for (index, deadline) in self.deadlines.iter().enumerate() {
            if let Some(deadline) = *deadline {
                if deadline <= now && due.is_none_or(|(_, best)| deadline < best) {
                    due = Some((index, deadline));
                }
            }
        }
        let (index, deadline) = due?;
        self.deadlines[index] = None;
        Some((T::ALL[index], deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{ms, origin};

    timer_names! {
        /// Names for the table tests.
        pub enum Name { First, Second, Third }
    }

    #[test]
    fn next_deadline_is_the_minimum_of_armed_timers() {
        let t0 = origin();
        let mut timers: Timers<Name, 3> = Timers::new();
        assert_eq!(timers.next_deadline(), None);
        timers.arm(Name::First, t0, ms(300));
        timers.arm(Name::Third, t0, ms(100));
        assert_eq!(timers.next_deadline(), Some(t0 + ms(100)));
        timers.cancel(Name::Third);
        assert_eq!(timers.next_deadline(), Some(t0 + ms(300)));
        timers.clear();
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn pop_expired_goes_in_deadline_order_then_index_order() {
        let t0 = origin();
        let mut timers: Timers<Name, 3> = Timers::new();
        timers.arm(Name::Third, t0, ms(10));
        timers.arm(Name::Second, t0, ms(20));
        timers.arm(Name::First, t0, ms(20));
        assert_eq!(timers.pop_expired(t0 + ms(9)), None);
        let now = t0 + ms(50);
        assert_eq!(timers.pop_expired(now), Some((Name::Third, t0 + ms(10))));
        assert_eq!(timers.pop_expired(now), Some((Name::First, t0 + ms(20))));
        assert_eq!(timers.pop_expired(now), Some((Name::Second, t0 + ms(20))));
        assert_eq!(timers.pop_expired(now), None);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn rearming_replaces_the_deadline() {
        let t0 = origin();
        let mut timers: Timers<Name, 3> = Timers::new();
        timers.arm(Name::Second, t0, ms(10));
        timers.arm_at(Name::Second, t0 + ms(40));
        assert_eq!(timers.deadline(Name::Second), Some(t0 + ms(40)));
        assert_eq!(timers.pop_expired(t0 + ms(39)), None);
    }

    #[test]
    fn unrepresentable_deadline_stays_disarmed() {
        let t0 = origin();
        let mut timers: Timers<Name, 3> = Timers::new();
        timers.arm(Name::First, t0, Duration::MAX);
        assert_eq!(timers.deadline(Name::First), None);
    }
}
