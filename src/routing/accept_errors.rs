//! Rate limit of a route's accept() failure lines. Under descriptor exhaustion
//! (`EMFILE`) every queued client makes accept() fail; one ERROR line per failure would
//! flood the log (and the disk) exactly when the router is in trouble. The first failure
//! is logged at once; later ones within the interval are counted and reported in the
//! next line, at most one per interval. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// How often a route may log accept() failures.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What to log for a failure: how many failures the line stands for (this one and the
/// ones counted since the last line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub failures: u64,
    /// Clients refused with an error frame (descriptor shedding) among them.
    pub refused: u64,
    /// The latest failure's error text.
    pub error: String,
}

#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_line: Option<Instant>,
    pending_failures: u64,
    pending_refused: u64,
    last_error: String,
}

impl AcceptErrors {
    /// One accept() failure at `now`; `refused` when the client was nevertheless taken
    /// off the queue and sent an error. `Some` when a line is due.
    pub fn failed(&mut self, now: Instant, refused: bool, error: &str) -> Option<Report> {
        self.pending_failures += 1;
        if self.last_error != error {
            self.last_error = error.to_string();
        }
        self.pending_refused += u64::from(refused);
        let due = self
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= INTERVAL);
        due.then(|| self.take(now))
    }

    /// A later look at the book (an accept() that worked, or a timer): the failures
    /// still unreported once the interval has passed, so the last burst is not lost.
    pub fn flush(&mut self, now: Instant) -> Option<Report> {
        let due = self
            .last_line
            .is_some_and(|t| now.saturating_duration_since(t) >= INTERVAL);
        (due && self.pending_failures > 0).then(|| self.take(now))
    }

    /// Whether failures are waiting to be reported.
    pub fn pending(&self) -> bool {
        self.pending_failures > 0
    }

    fn take(&mut self, now: Instant) -> Report {
        self.last_line = Some(now);
        let r = Report {
            failures: self.pending_failures,
            refused: self.pending_refused,
            error: self.last_error.clone(),
        };
        self.pending_failures = 0;
        self.pending_refused = 0;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_is_reported_at_once_then_one_line_per_interval() {
        let t0 = Instant::now();
        let mut b = AcceptErrors::default();
        assert_eq!(
            b.failed(t0, false, "Too many open files"),
            Some(Report {
                failures: 1,
                refused: 0,
                error: "Too many open files".into()
            })
        );
        // 999 more within the interval: no line.
        for i in 1..1000u64 {
            let t = t0 + Duration::from_micros(i * 900);
            assert_eq!(
                b.failed(t, i % 2 == 0, "Too many open files"),
                None,
                "failure {i}"
            );
        }
        assert!(b.pending());
        // The next failure after the interval reports them all.
        let r = b
            .failed(t0 + INTERVAL, true, "Too many open files")
            .expect("a line after the interval"); // ok: test code
        assert_eq!(r.failures, 1000);
        assert_eq!(r.refused, 500);
        assert!(!b.pending());
    }

    #[test]
    fn a_trailing_burst_is_reported_by_flush_once_the_interval_passed() {
        let t0 = Instant::now();
        let mut b = AcceptErrors::default();
        assert!(b.failed(t0, false, "e1").is_some());
        assert!(b
            .failed(t0 + Duration::from_millis(10), true, "e2")
            .is_none());
        assert!(b
            .failed(t0 + Duration::from_millis(20), true, "e3")
            .is_none());
        assert_eq!(b.flush(t0 + Duration::from_millis(500)), None);
        assert_eq!(
            b.flush(t0 + Duration::from_millis(1000)),
            Some(Report {
                failures: 2,
                refused: 2,
                error: "e3".into()
            })
        );
        assert_eq!(b.flush(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn nothing_pending_nothing_reported() {
        let mut b = AcceptErrors::default();
        assert_eq!(b.flush(Instant::now()), None);
        assert!(!b.pending());
    }
}
