//! A structured sequence of events — replies, raw bytes, timeouts, forward time jumps,
//! cancellation, server errors (NOSCRIPT, READONLY, LOADING, MOVED, …), connection resets —
//! applied to one machine, which must then reach its outcome by its deadline. Invariants:
//! `distlock_fuzz::driver`.
#![no_main]

use distlock_fuzz::events::{EventInput, run};

libfuzzer_sys::fuzz_target!(|input: EventInput| run(&input));
