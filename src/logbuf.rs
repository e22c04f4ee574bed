//! Log output to stderr, gathered while the driver runs.
//!
//! Every log line used to be its own `write` on stderr: at the info level a
//! call logs about three lines, each a system call (and on a pipe, a wake-up
//! of the reader). While the driver holds the buffer, info and debug lines
//! collect in memory and leave together: the driver writes them out once
//! they have waited the driver's timer step (10 ms), or at once when
//! they pass [`FLUSH_AT`] bytes. Warnings and errors are written at once,
//! after what was gathered before them, so the order of lines is kept. Lines
//! are written through unheld when no driver runs (start, stop, the other
//! commands).
//!
//! What is lost on a crash is at most the last step's lines: a panic
//! writes the buffer out first (see [`install_panic_flush`]), and the driver
//! writes it out when it stops.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Tells the first of a run of like events, then at most one per period
/// with the count since the last told, so that a flood of refusals does
/// not become a flood of log lines.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Counts an event at `now`; when it is to be told, how many were
    /// counted since the last told, this one included.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// A [`Throttle`] shared between tasks, on the wall clock, at
/// [`TELL_EVERY`].
#[derive(Debug)]
pub struct SharedThrottle(Mutex<Throttle>);

impl Default for SharedThrottle {
    fn default() -> Self {
        SharedThrottle(Mutex::new(Throttle::new(TELL_EVERY)))
    }
}

impl SharedThrottle {
    /// [`Throttle::hit`] now; a poisoned lock tells every event.
    pub fn hit(&self) -> Option<u64> {
        self.0.lock().map_or(Some(1), |mut t| t.hit(Instant::now()))
    }
}

/// At most one line per this long about each kind of refusal or drop.
pub const TELL_EVERY: Duration = Duration::from_secs(10);

/// Bytes gathered before they are written out without waiting for the
/// driver.
pub const FLUSH_AT: usize = 64 * 1024;

struct State {
    buf: Vec<u8>,
    /// Held by a running driver: lines below warning are gathered.
    held: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    buf: Vec::new(),
    held: false,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    // A panic while holding the lock leaves plain bytes behind: still
    // usable.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

/// The writer for the log formatter: stderr, through the buffer.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

/// One formatted line (the formatter writes each event in one piece).
pub struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut s = state();
        if s.held && !self.urgent {
            s.buf.extend_from_slice(bytes);
            if s.buf.len() >= FLUSH_AT {
                write_out(&mut s.buf);
            }
        } else {
            // After what was gathered before it; written under the lock so
            // no other line comes between.
            write_out(&mut s.buf);
            std::io::stderr().lock().write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// The driver holds the buffer while it runs (`true`) and lets go when it
/// stops (`false`, which writes out what is gathered).
pub fn hold(held: bool) {
    let mut s = state();
    s.held = held;
    if !held {
        write_out(&mut s.buf);
    }
}

/// Whether lines wait to be written.
pub fn pending() -> bool {
    !state().buf.is_empty()
}

/// Writes out the gathered lines.
pub fn flush() {
    write_out(&mut state().buf);
}

/// Makes a panic write out the gathered lines before its own message.
pub fn install_panic_flush() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_tells_the_first_then_one_per_period_with_the_count() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        // (ms, told with this count)
        let steps = [
            (0, Some(1)),
            (1, None),
            (5_000, None),
            (9_999, None),
            (10_000, Some(4)),
            (10_001, None),
            (60_000, Some(2)),
            (60_000, None),
        ];
        for (ms, want) in steps {
            assert_eq!(t.hit(t0 + Duration::from_millis(ms)), want, "at {ms} ms");
        }
        // A clock that goes back does not stop it telling.
        assert_eq!(t.hit(t0), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(80)), Some(3));
    }

    // One test: the state is process-wide. The lines reach the test's
    // stderr.
    #[test]
    fn held_lines_wait_urgent_ones_go_after_them() {
        let mut info = LineWriter { urgent: false };
        let mut warn = LineWriter { urgent: true };
        hold(true);
        info.write_all(b"logbuf test: gathered\n").unwrap();
        assert!(pending());
        assert_eq!(state().buf, b"logbuf test: gathered\n");
        // A warning writes the gathered line out first, then itself.
        warn.write_all(b"logbuf test: urgent\n").unwrap();
        assert!(!pending());
        info.write_all(b"logbuf test: flushed\n").unwrap();
        flush();
        assert!(!pending());
        info.write_all(b"logbuf test: released\n").unwrap();
        hold(false);
        assert!(!pending());
        // Unheld, nothing is gathered.
        info.write_all(b"logbuf test: through\n").unwrap();
        assert!(!pending());
    }
}
