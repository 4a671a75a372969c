//! How long a demo or bench holder stays in its critical section: until a deadline, as
//! precisely as the machine allows, the same way on every path (native, fair, polling, guest).
//!
//! Neither a plain timer sleep is precise enough for a hold of about a millisecond: tokio's
//! timer has millisecond granularity and rounds up (a 1 ms `tokio::time::sleep` lasts 1–2 ms,
//! plus the driver's wake-up), and a thread's `sleep` overshoots by the kernel's timer slack
//! (~50 µs). A hold that lasts twice what it says inflates every wait measured behind it.
//! So a hold sleeps on an OS thread to [`SPIN_MARGIN`] before its deadline and spins for the
//! last stretch. The async form first lets tokio's timer cover what its granularity can, then
//! does the same in place (`block_in_place`: the runtime hands this worker's other tasks to
//! another thread meanwhile), so the holder goes on to its release the moment the deadline
//! passes, with no hop between threads; on a current-thread runtime, where that is not
//! allowed, on a blocking-pool thread instead (one hop back). On a loaded machine a wake-up
//! still waits for a core: the callers measure the hold they really got
//! ([`crate::demo::Section`]).

use std::time::{Duration, Instant};

/// How long before the deadline a hold stops sleeping and starts spinning: more than a
/// thread sleep's usual overshoot, so the deadline is met by the spin, not by a late wake-up.
const SPIN_MARGIN: Duration = Duration::from_micros(150);

/// How much of a hold tokio's timer may cover: all but this much before the deadline (its
/// granularity is 1 ms and it rounds up, so it must stop more than 1 ms early).
const TIMER_MARGIN: Duration = Duration::from_millis(3);

/// Holds the calling thread until `deadline`.
pub(crate) fn until_blocking(deadline: Instant) {
    let now = Instant::now();
    if let Some(sleep) = deadline
        .checked_duration_since(now)
        .and_then(|left| left.checked_sub(SPIN_MARGIN))
    {
        std::thread::sleep(sleep);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Holds the calling task until `deadline` (or just after: the hop back to the runtime).
pub(crate) async fn until(deadline: Instant) {
    if let Some(coarse_end) = deadline.checked_sub(TIMER_MARGIN)
        && coarse_end > Instant::now()
    {
        tokio::time::sleep_until(coarse_end.into()).await;
    }
    if deadline <= Instant::now() {
        return;
    }
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| until_blocking(deadline));
    } else {
        // Fails only when the runtime shuts down, and then nobody is left to measure.
        let _ = tokio::task::spawn_blocking(move || until_blocking(deadline)).await;
    }
}
