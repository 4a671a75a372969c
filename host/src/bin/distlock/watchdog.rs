//! The job's dead man's switch: a small process beside every `exec` (and `compute`) job that
//! stops the job when `exec` no longer can.
//!
//! `exec` stops its job's process group before the lease's validity ends — as long as `exec`
//! runs. Killed with SIGKILL (by hand, the OOM killer, `kill -9 %1` from the shell) or frozen
//! (SIGSTOP, a debugger), it cannot: the job would run on past the lease, beside the next
//! holder. So once the job's group exists, `exec` starts this watchdog (`distlock watchdog
//! --group PGID`, a hidden subcommand of the same binary) and keeps a pipe to its stdin, on
//! which it writes lines:
//!
//! - `kill-at MS`: the instant, in milliseconds of `CLOCK_MONOTONIC` (one clock for both
//!   processes), at which `exec` itself kills the group — the `kill` of the core's
//!   [`distlock_core::stop_deadlines`], no rule of the watchdog's own. `exec` sends it again
//!   as soon as the lease's validity moves (a renewal), so while `exec` runs, the watchdog's
//!   deadline is never earlier than `exec`'s own.
//! - `done`: the group is gone; exit without a signal.
//!
//! Invariants:
//! - The watchdog kills the group (SIGKILL) when its stdin reaches end of file before `done`
//!   (`exec` died: the kernel closed its end of the pipe) — at once — or when the last
//!   `kill-at` passes (`exec` is frozen, or was never able to move it). Either way the job
//!   ends no later than `exec` would have ended it.
//! - It never signals after `done`, and signals nothing but the group it was given. That id
//!   cannot name another group while any process of the job lives: the kernel does not hand
//!   out an id that a process group still holds.
//! - It runs in a process group of its own and blocks the stopping and job-control signals,
//!   so a signal to `exec`'s group or from the terminal leaves it in place to do its job.
//!   Only a SIGKILL to the watchdog itself stops it, which leaves `exec`'s own protection as
//!   it was without one.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::output::tell;

/// Now on `CLOCK_MONOTONIC`, in milliseconds: the clock both ends of the pipe read.
fn monotonic_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let millis = u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000;
        secs.saturating_mul(1000).saturating_add(millis)
    })
}

/// `exec`'s end: the watchdog process and the pipe to it.
pub(crate) struct Watchdog {
    process: tokio::process::Child,
    orders: tokio::process::ChildStdin,
    /// The last `kill-at` sent.
    armed: Option<u64>,
}

impl Watchdog {
    /// Starts the watchdog of the process group `group`, or says why it could not (the job
    /// then has `exec`'s own protection only).
    pub(crate) fn start(group: i32, program: &str) -> Option<Watchdog> {
        // The running binary itself, even if its file was replaced since it started.
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("distlock"))
        };
        let spawned = tokio::process::Command::new(exe)
            .args(["watchdog", "--group", &group.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn();
        let mut process = match spawned {
            Ok(process) => process,
            Err(e) => {
                tell!(
                    "distlock: warning: cannot start the watchdog of {program}'s process group ({e}): if distlock is killed with SIGKILL or frozen, {program} runs on past the lease"
                );
                return None;
            }
        };
        let orders = process.stdin.take()?;
        Some(Watchdog {
            process,
            orders,
            armed: None,
        })
    }

    /// Tells the watchdog to kill the group at `kill_at` unless told later again: the kill
    /// deadline of the lease as it stands now.
    pub(crate) async fn arm(&mut self, kill_at: Instant) {
        let left = kill_at.saturating_duration_since(Instant::now());
        let at = monotonic_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
        if self.armed == Some(at) {
            return;
        }
        self.armed = Some(at);
        // A watchdog that is gone cannot be told; `exec` goes on protecting the job itself.
        let _ = self
            .orders
            .write_all(format!("kill-at {at}\n").as_bytes())
            .await;
    }

    /// The group is gone: the watchdog exits without a signal.
    pub(crate) async fn stand_down(mut self) {
        let _ = self.orders.write_all(b"done\n").await;
        drop(self.orders);
        let _ = self.process.wait().await;
    }
}

/// What the watchdog was told last.
#[derive(Debug, PartialEq, Eq)]
enum Order {
    KillAt(u64),
    Done,
}

fn parse(line: &[u8]) -> Option<Order> {
    let line = std::str::from_utf8(line).ok()?.trim();
    if line == "done" {
        return Some(Order::Done);
    }
    line.strip_prefix("kill-at ")?
        .parse()
        .ok()
        .map(Order::KillAt)
}

/// `distlock watchdog --group PGID`: waits on stdin for its orders; kills the group when they
/// stop coming (end of file before `done`) or the last deadline passes.
pub(crate) fn watch(group: i32) -> ExitCode {
    let mut blocked = SigSet::empty();
    for signal in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGPIPE,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        blocked.add(signal);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None);
    let mut stdin = std::io::stdin().lock();
    let mut pending = Vec::new();
    let mut kill_at: Option<u64> = None;
    let mut chunk = [0u8; 256];
    loop {
        let wait = match kill_at {
            Some(at) => {
                let now = monotonic_ms();
                if now >= at {
                    kill(
                        group,
                        "the lease's kill deadline passed and distlock did not move it",
                    );
                    return ExitCode::SUCCESS;
                }
                PollTimeout::try_from(Duration::from_millis(at - now)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut ready = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut ready, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                kill(group, "its pipe from distlock failed");
                return ExitCode::SUCCESS;
            }
        }
        let read = match stdin.read(&mut chunk) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if read == 0 {
            kill(group, "distlock ended while the job ran");
            return ExitCode::SUCCESS;
        }
        pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match parse(&line) {
                Some(Order::Done) => return ExitCode::SUCCESS,
                Some(Order::KillAt(at)) => kill_at = Some(at),
                None => {}
            }
        }
    }
}

fn kill(group: i32, why: &str) {
    if killpg(Pid::from_raw(group), Signal::SIGKILL).is_ok() {
        // Best effort: stderr may be gone with distlock's terminal.
        let _ = writeln!(
            std::io::stderr(),
            "distlock watchdog: {why}: killed the job's process group {group}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse_and_anything_else_is_ignored() {
        assert_eq!(parse(b"kill-at 1234\n"), Some(Order::KillAt(1234)));
        assert_eq!(parse(b"done\n"), Some(Order::Done));
        assert_eq!(parse(b"kill-at\n"), None);
        assert_eq!(parse(b"kill-at -5\n"), None);
        assert_eq!(parse(b"stop\n"), None);
        assert_eq!(parse(&[0xff, b'\n']), None);
    }
}
