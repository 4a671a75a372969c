//! `distlock compute`: the dogpile helper for shell users — print the value cached under a
//! name, or compute it once by running a command, while every other caller waits for that
//! value instead of running the command too.
//!
//! The core decides who computes and what the others wait for (`GetOrLock`,
//! `FinishCompute`, through [`Client::begin_compute`]); this module runs the command as
//! `exec` runs a job ([`Job`]: its own process group, stopped before the lock's validity
//! ends, signals passed on) with its stdout captured, and stores that output as the value.
//!
//! Invariants:
//! - A value is stored only when the command exited 0 by itself, its whole output was read
//!   (end of file, at most [`Job::CAPTURE_LIMIT`] bytes) and the lock was still this
//!   caller's ([`distlock_host::Computation::store`] checks that on the server).
//! - The computation always ends: stored, or given up (the lock released and one waiter
//!   woken, which computes next) before `compute` exits.
//! - What is printed on success is exactly the stored value, byte for byte.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use distlock_host::{Begun, Client, ComputeError, ComputeOptions, Error};

use crate::exec::{Captured, Ended, Job, Signals, code_of_status, signalled, stopping_signal};
use crate::output::tell;
use crate::{OnLost, exit, warn_if_embedded};

/// What `compute` was asked for.
pub(crate) struct ComputeArgs<'a> {
    pub(crate) name: &'a str,
    /// How long the stored value lives.
    pub(crate) value_ttl: Duration,
    /// The computation lock's TTL.
    pub(crate) ttl: Duration,
    /// How long to wait for another caller's computation.
    pub(crate) wait: Duration,
    pub(crate) on_lost: OnLost,
    pub(crate) kill_grace: Duration,
    pub(crate) command: &'a [String],
}

pub(crate) async fn compute(client: &Client, args: &ComputeArgs<'_>) -> Result<ExitCode, Error> {
    warn_if_embedded(client, "compute");
    let Some(program) = args.command.first() else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tell!("distlock: cannot handle signals: {e}");
            return Ok(ExitCode::from(exit::UNAVAILABLE));
        }
    };
    let options = ComputeOptions::default().wait(args.wait).lock_ttl(args.ttl);
    let mut stopped_by = None;
    let begun = client
        .begin_compute_until(args.name, options, async {
            stopped_by = Some(stopping_signal(&mut signals).await);
        })
        .await;
    let computation = match (begun, stopped_by) {
        (Ok(Begun::Value(value)), _) => return Ok(printed(&value)),
        (Ok(Begun::Compute(computation)), _) => computation,
        (Ok(_), _) => return Ok(ExitCode::from(exit::UNAVAILABLE)),
        (Err(ComputeError::Client(e)), Some(signal))
            if matches!(e.lock_error(), Some(distlock_core::Error::Cancelled)) =>
        {
            tell!(
                "distlock: {signal} while waiting for the value of '{}': not computed",
                args.name
            );
            return Ok(ExitCode::from(signalled(signal as i32)));
        }
        (Err(ComputeError::NotAcquired { .. }), _) => {
            tell!(
                "distlock: the value of '{}' was not computed within --wait (another caller is computing it)",
                args.name
            );
            return Ok(ExitCode::from(exit::NOT_ACQUIRED));
        }
        (Err(ComputeError::Client(e)), _) => return Err(e),
        (Err(e), _) => {
            tell!("distlock: {e}");
            return Ok(ExitCode::from(exit::UNAVAILABLE));
        }
    };
    let job = Job {
        command: args.command,
        label: args.name,
        on_lost: args.on_lost,
        ttl: args.ttl,
        kill_grace: args.kill_grace,
        capture: true,
    };
    let ended = match job.run(computation.guard(), &mut signals).await {
        Ok(ended) => ended,
        Err(code) => {
            computation.abandon().await;
            return Ok(ExitCode::from(code));
        }
    };
    let succeeded = ended.succeeded();
    let Ended {
        status,
        why,
        output,
    } = ended;
    let output = match (succeeded, output) {
        (true, Captured::Whole(output)) => output,
        (true, Captured::TooLong(_)) => {
            computation.abandon().await;
            tell!(
                "distlock: {program} wrote more than {} bytes: too long for a value, nothing stored",
                Job::CAPTURE_LIMIT
            );
            return Ok(ExitCode::from(exit::USAGE));
        }
        (_, Captured::Unread(why)) => {
            computation.abandon().await;
            tell!("distlock: {why}: nothing stored");
            return Ok(ExitCode::from(exit::IO_ERROR));
        }
        (false, Captured::Whole(output) | Captured::TooLong(output)) => {
            // Not a value: given up (one waiter computes next), and what the command wrote
            // is passed on as it would have been without distlock.
            computation.abandon().await;
            let _ = write_all(&output);
            return Ok(ExitCode::from(code_of_status(status, why, program)));
        }
        (_, Captured::Inherited) => {
            // Not reached: the job's stdout is captured.
            computation.abandon().await;
            return Ok(ExitCode::from(exit::UNAVAILABLE));
        }
    };
    match computation.store(&output, args.value_ttl).await {
        Ok(()) => Ok(printed(&output)),
        Err(ComputeError::LockLost) => {
            tell!(
                "distlock: the lock of '{}' was lost while {program} ran: its output was not stored",
                args.name
            );
            Ok(ExitCode::from(exit::NOT_ACQUIRED))
        }
        Err(ComputeError::Client(e)) => Err(e),
        Err(e) => {
            tell!("distlock: {e}");
            Ok(ExitCode::from(exit::UNAVAILABLE))
        }
    }
}

/// Writes the value to stdout as it is: exit 0, or 74 when stdout is closed.
fn printed(value: &[u8]) -> ExitCode {
    match write_all(value) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tell!("distlock: cannot write the value: {e}");
            ExitCode::from(exit::IO_ERROR)
        }
    }
}

fn write_all(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}
