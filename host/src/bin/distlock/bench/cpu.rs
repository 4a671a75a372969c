//! The bench process's own CPU time, read around each slice: what a row's operations cost the
//! client (the servers are other processes and are not counted).
//!
//! Why: on a machine whose cores the servers and the clients share, a path that burns more
//! CPU per operation loses throughput as soon as the cores are busy, whatever its latency on
//! an idle machine; CPU per operation is the cost that does not move with the machine's load
//! the way ops/s does.
//!
//! Invariant: [`ProcessCpu::now`] is `None` where the system offers no per-process CPU clock;
//! a row then reports no CPU figure rather than a guess.

use std::time::Duration;

/// A reading of the process's CPU clock (user + system time of all its threads).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessCpu(Duration);

impl ProcessCpu {
    /// The CPU time this process has used so far.
    #[cfg(unix)]
    pub(crate) fn now() -> Option<ProcessCpu> {
        use nix::time::{ClockId, clock_gettime};
        let t = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
        let secs = u64::try_from(t.tv_sec()).ok()?;
        let nanos = u32::try_from(t.tv_nsec()).ok()?;
        Some(ProcessCpu(Duration::new(secs, nanos)))
    }

    /// No per-process CPU clock here.
    #[cfg(not(unix))]
    pub(crate) fn now() -> Option<ProcessCpu> {
        None
    }

    /// The CPU time used since `earlier`.
    pub(crate) fn since(self, earlier: ProcessCpu) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}
