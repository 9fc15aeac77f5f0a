//! The assimilation order: a project's canonical results in the order the
//! validator chose them (BOINC's assimilator hands them to the science in
//! that order), as `StreamCanonicalResults` sends them.
//!
//! The store numbers each canonical result when it commits it; a [`Cursor`]
//! is that number, so a client that lost its stream resumes after the last
//! one it received and gets every canonical result exactly once.
//! [`after_page`] decides what a stream does once it has sent a page.

/// A place in a project's assimilation order: the canonical results after
/// it have not been sent yet. [`Cursor::START`] is before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(u64);

impl Cursor {
    /// Before the first canonical result.
    pub const START: Cursor = Cursor(0);

    /// The cursor a client sent back, or one the store numbered. Any value
    /// is a valid place: one beyond the last canonical result only means
    /// that the stream waits for later ones.
    pub fn new(value: u64) -> Cursor {
        Cursor(value)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The value as SQLite's integers hold it (values beyond them come
    /// after every canonical result).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

/// What a stream does after sending a page of canonical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The page was full: there may be more right now.
    ReadAgain,
    /// Everything chosen so far was sent and work units are still open: wait
    /// until something changes.
    WaitForChange,
    /// Every work unit has ended and every canonical result was sent.
    End,
}

/// The step after a page of `n_sent` results (asked for at most `limit`),
/// read in the same transaction as `any_open`, whether the project had open
/// work units then. A project with none open has all its canonical results
/// in the order already, so a page that is not full was its last.
pub fn after_page(n_sent: usize, limit: u32, any_open: bool) -> Step {
    if n_sent >= limit as usize {
        Step::ReadAgain
    } else if any_open {
        Step::WaitForChange
    } else {
        Step::End
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n_sent: usize, limit: u32, any_open: bool, expected: Step) {
        assert_eq!(after_page(n_sent, limit, any_open), expected, "{n_sent} of {limit}, open: {any_open}");
    }

    #[test]
    fn steps() {
        check(100, 100, true, Step::ReadAgain);
        check(100, 100, false, Step::ReadAgain);
        check(99, 100, true, Step::WaitForChange);
        check(0, 100, true, Step::WaitForChange);
        check(99, 100, false, Step::End);
        check(0, 100, false, Step::End);
    }

    #[test]
    fn cursors() {
        assert_eq!(Cursor::START.get(), 0);
        assert!(Cursor::new(1) > Cursor::START);
        assert_eq!(Cursor::new(u64::MAX).as_i64(), i64::MAX);
        assert_eq!(Cursor::new(7).as_i64(), 7);
    }
}
