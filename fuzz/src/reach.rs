//! Counters of what inputs reach (an outcome kind, a refusal, a command), off unless
//! enabled: `examples/reach.rs` runs a corpus with them on, to show that the seeds and the
//! grown corpus get where they should (leases, raises, BLPOP wake-ups, refusals, …).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static COUNTS: RefCell<BTreeMap<String, usize>> = const { RefCell::new(BTreeMap::new()) };
}

/// Starts counting.
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Counts one occurrence of `what` (when enabled).
pub fn hit(what: impl FnOnce() -> String) {
    if ENABLED.load(Relaxed) {
        COUNTS.with(|c| *c.borrow_mut().entry(what()).or_default() += 1);
    }
}

/// The counts so far.
pub fn counts() -> BTreeMap<String, usize> {
    COUNTS.with(|c| c.borrow().clone())
}
