//! Requests the API refused (401, 403) in the audit log, without letting a
//! flood of them fill it. Per minute, at most [`PER_SOURCE`] refusals per
//! source and [`OVERALL`] in all are written one by one; the others are
//! counted, in one entry per source and minute that is written a few
//! seconds after the first of them and kept up to date until the minute is
//! over. At most [`SOURCES`] sources are told apart per minute; refusals
//! from the others are counted together, as source `other`. A minute of
//! flood thus writes at most `OVERALL + SOURCES + 1` entries.

use std::collections::HashMap;

/// The span the limits apply to.
pub const WINDOW_MS: i64 = 60_000;
/// Refusals written one by one, per source and minute.
pub const PER_SOURCE: u32 = 5;
/// Refusals written one by one, per minute.
pub const OVERALL: u32 = 30;
/// Sources told apart per minute.
pub const SOURCES: usize = 32;
/// The source that stands for the sources past [`SOURCES`].
pub const OTHER: &str = "other";

/// What to do with one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, one entry.
    Write,
    /// Count it in the entry of `source` for the minute starting at
    /// `window` (ms); `first` when it is the first counted there, so
    /// whoever writes that entry is to be started.
    Count {
        window: i64,
        source: String,
        first: bool,
    },
}

/// The counts (see the module documentation). Pure: times are given.
#[derive(Debug, Default)]
pub struct Limiter {
    window: i64,
    written: u32,
    /// Refusals written one by one this minute, by source.
    sources: HashMap<String, u32>,
    /// Refusals counted, by minute and source, until their entry is final.
    counted: HashMap<(i64, String), u64>,
}

impl Limiter {
    pub fn refused(&mut self, source: &str, now_ms: i64) -> Verdict {
        let window = now_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
        if window != self.window {
            self.window = window;
            self.written = 0;
            self.sources.clear();
        }
        let source = if self.sources.contains_key(source) || self.sources.len() < SOURCES {
            source
        } else {
            OTHER
        };
        let n = self.sources.entry(source.to_string()).or_default();
        if *n < PER_SOURCE && self.written < OVERALL {
            *n += 1;
            self.written += 1;
            return Verdict::Write;
        }
        let c = self
            .counted
            .entry((window, source.to_string()))
            .or_default();
        *c += 1;
        Verdict::Count {
            window,
            source: source.to_string(),
            first: *c == 1,
        }
    }

    /// The count of `source` for the minute at `window`, and whether that
    /// minute is over (then the count is final and forgotten here).
    pub fn count(&mut self, window: i64, source: &str, now_ms: i64) -> (u64, bool) {
        let key = (window, source.to_string());
        let n = self.counted.get(&key).copied().unwrap_or(0);
        let over = now_ms >= window + WINDOW_MS;
        if over {
            self.counted.remove(&key);
        }
        (n, over)
    }

    /// Counts kept, for the tests.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.counted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_few_entries_and_counts_the_rest() {
        let mut l = Limiter::default();
        let t: i64 = 1_700_000_040_000; // a minute starts
        let w = t.div_euclid(WINDOW_MS) * WINDOW_MS;
        // One source: PER_SOURCE written, then counted.
        for _ in 0..PER_SOURCE {
            assert_eq!(l.refused("192.0.2.1", t), Verdict::Write);
        }
        let v: Vec<Verdict> = (0..3).map(|_| l.refused("192.0.2.1", t)).collect();
        assert_eq!(
            v[0],
            Verdict::Count {
                window: w,
                source: "192.0.2.1".into(),
                first: true
            }
        );
        assert!(matches!(v[2], Verdict::Count { first: false, .. }));
        assert_eq!(l.count(w, "192.0.2.1", t), (3, false));
        // Many sources: OVERALL written in all, the rest counted; past
        // SOURCES sources, under `other`.
        let mut written = PER_SOURCE;
        let mut others = 0;
        for i in 0..200 {
            match l.refused(&format!("198.51.100.{i}"), t + 1) {
                Verdict::Write => written += 1,
                Verdict::Count { source, .. } if source == OTHER => others += 1,
                Verdict::Count { .. } => {}
            }
        }
        assert_eq!(written, OVERALL);
        assert_eq!(others, 200 - (SOURCES - 1));
        // Counts kept: the first source, the sources past the overall
        // limit that still have a name, `other`.
        assert_eq!(
            l.kept(),
            1 + (SOURCES - 1 - (OVERALL - PER_SOURCE) as usize) + 1
        );
        // The minute ends: the counts are final, then forgotten.
        assert_eq!(l.count(w, OTHER, w + WINDOW_MS), (others as u64, true));
        assert_eq!(l.count(w, OTHER, w + WINDOW_MS), (0, true));
        // A new minute starts afresh.
        assert_eq!(l.refused("192.0.2.1", w + WINDOW_MS), Verdict::Write);
    }
}
