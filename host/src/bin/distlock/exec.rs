//! `distlock exec`: runs a command while holding the lock, and never lets it outlive the lock.
//!
//! This module owns the job's process group, the signals sent to `distlock` while the job
//! runs, and the terminal's foreground while the job has it. Its invariants:
//!
//! - The command runs in a process group of its own (its leader's pid), so everything it
//!   starts — pipelines, `sh -c` grandchildren, background jobs — is stopped together: every
//!   signal `exec` sends goes to the whole group, never to the leader alone.
//! - With `--on-lost kill`, the group is sent SIGTERM and then SIGKILL at the deadlines the
//!   core's [`stop_deadlines`] sets from the lease's validity, the TTL and `--kill-grace`: the
//!   kill always lands before the validity ends. The deadlines are read again from the guard
//!   whenever one comes due (a renewal only moves them later), so a healthy job is never
//!   signalled. When the lock turns out to be someone else's, TERM and KILL go at once.
//! - SIGTERM, SIGINT, SIGHUP and SIGQUIT to `distlock` are passed on to the group; the job
//!   gets `--kill-grace` to end (the lease is renewed meanwhile), then the group is killed,
//!   the lock released, and `exec` exits 128 + the signal (or the job's own exit code if it
//!   exited by itself). SIGUSR1 and SIGUSR2 are passed on and the job goes on.
//! - The lock is released only once no process of the group is left running (what the
//!   command leaves behind when it ends is stopped the same way first): releasing earlier
//!   would let a newcomer run beside the rest of the job.
//! - When `distlock` has the terminal's foreground, the job's group gets it while it runs
//!   (as a shell does for a job), so the job can read the terminal and Ctrl-C reaches it.
//!
//! - With `--on-lost kill`, a watchdog process ([`crate::watchdog`]) stands beside the job,
//!   told each kill deadline as the lease moves: when `distlock` is killed with SIGKILL or
//!   frozen, it kills the group at once or at that deadline, so the job still ends before the
//!   lease's validity does.
//!
//! Not covered: what leaves the job's process group (a new session, `setsid`), and a
//! SIGKILL to the watchdog itself while `distlock` is frozen or killed too.

use std::io::IsTerminal;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use distlock_core::{Instant as CoreInstant, stop_deadlines};
use distlock_host::{Client, Error, Guard};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::exit;
use crate::output::tell;
use crate::watchdog::Watchdog;
use crate::{LockArgs, OnLost, builder, warn_if_embedded};

/// How often the job's process group is looked at once its leader has ended (the others are
/// not our children: nothing tells us when they end).
const GROUP_POLL: Duration = Duration::from_millis(20);

pub(crate) async fn exec(
    client: &Client,
    lock: &LockArgs,
    on_lost: OnLost,
    kill_grace: Duration,
    command: &[String],
) -> Result<ExitCode, Error> {
    warn_if_embedded(client, "exec");
    let Some(program) = command.first() else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    // From here on a signal to distlock never takes its default action: while waiting for
    // the lock it gives the acquire up (rolling back what it may have taken, so nothing is
    // left held to its TTL); once the job runs it is passed on to the job, which would
    // otherwise run on with nobody renewing or releasing the lock.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tell!("distlock: cannot handle signals: {e}");
            return Ok(ExitCode::from(exit::UNAVAILABLE));
        }
    };
    let mut stopped_by = None;
    let acquired = builder(client, lock)
        .auto_renew(true)
        .acquire_until(async { stopped_by = Some(stopping_signal(&mut signals).await) })
        .await;
    let guard = match (acquired, stopped_by) {
        (Ok(guard), _) => guard,
        (Err(e), Some(signal))
            if matches!(e.lock_error(), Some(distlock_core::Error::Cancelled)) =>
        {
            tell!(
                "distlock: {signal} while waiting for lock '{}': not acquired",
                lock.label()
            );
            return Ok(ExitCode::from(signalled(signal as i32)));
        }
        (Err(e), _) => return Err(e),
    };
    let job = Job {
        command,
        label: &lock.label(),
        on_lost,
        ttl: lock.ttl,
        kill_grace,
        capture: false,
    };
    let ended = match job.run(&guard, &mut signals).await {
        Ok(ended) => ended,
        Err(code) => {
            release(guard, &lock.label()).await;
            return Ok(ExitCode::from(code));
        }
    };
    match ended.why {
        // Most likely someone else's lock now: releasing is only in case it is not (the
        // validity ran out with the key still ours), so its refusal is no news.
        Some(Why::Lost) => drop(guard.release().await),
        _ => release(guard, &lock.label()).await,
    }
    Ok(ExitCode::from(ended.code(program)))
}

/// A command to run under a held lock, as `exec` and `compute` run it.
pub(crate) struct Job<'a> {
    /// The program and its arguments.
    pub(crate) command: &'a [String],
    /// The lock's name(s), for messages.
    pub(crate) label: &'a str,
    pub(crate) on_lost: OnLost,
    /// The lock's TTL, for the stop deadlines.
    pub(crate) ttl: Duration,
    pub(crate) kill_grace: Duration,
    /// Read the command's stdout (up to [`Job::CAPTURE_LIMIT`] bytes) instead of leaving it
    /// on distlock's.
    pub(crate) capture: bool,
}

/// How a job ended.
pub(crate) struct Ended {
    pub(crate) status: std::io::Result<ExitStatus>,
    /// Why distlock stopped it, if it did.
    pub(crate) why: Option<Why>,
    /// What it wrote to stdout, when captured.
    pub(crate) output: Captured,
}

/// A job's captured stdout.
pub(crate) enum Captured {
    /// Not captured (the job wrote to distlock's stdout).
    Inherited,
    /// All of it, up to end of file.
    Whole(Vec<u8>),
    /// More than the limit: the first bytes, the rest read and dropped.
    TooLong(Vec<u8>),
    /// Reading it failed, or something outside the job's group still held it open once the
    /// group was gone.
    Unread(String),
}

impl Ended {
    /// distlock's exit code for this job (see [`code_of_status`]).
    pub(crate) fn code(self, program: &str) -> u8 {
        code_of_status(self.status, self.why, program)
    }

    /// The job exited with 0 by itself.
    pub(crate) fn succeeded(&self) -> bool {
        self.why.is_none() && self.status.as_ref().is_ok_and(ExitStatus::success)
    }
}

impl Job<'_> {
    /// The most stdout a captured job may write: a stored value's limit.
    pub(crate) const CAPTURE_LIMIT: usize = distlock_core::MAX_VALUE_LEN;

    /// Runs the command under `guard` in a process group of its own, watches it (the lease,
    /// the signals), and returns once no process of its group is left; `Err(code)` when it
    /// could not be started (nothing of it runs).
    pub(crate) async fn run(&self, guard: &Guard, signals: &mut Signals) -> Result<Ended, u8> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(exit::USAGE);
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("DISTLOCK_TOKEN", guard.token())
            .env(
                "DISTLOCK_FENCE",
                guard.fence().map(|f| f.to_string()).unwrap_or_default(),
            )
            .process_group(0);
        if self.capture {
            command.stdout(std::process::Stdio::piped());
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                tell!("distlock: cannot run {program}: {e}");
                return Err(code_of_spawn_error(program, &e));
            }
        };
        let reader = child
            .stdout
            .take()
            .map(|stdout| tokio::spawn(read_capped(stdout, Self::CAPTURE_LIMIT)));
        let Some(group) = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(|id| Group(Pid::from_raw(id)))
        else {
            // Only a child already reaped has no id: nothing of it runs any more.
            let status = child.wait().await;
            let output = self.collect(reader).await;
            return Ok(Ended {
                status,
                why: None,
                output,
            });
        };
        let terminal = Terminal::hand_to(group);
        let watchdog = matches!(self.on_lost, OnLost::Kill)
            .then(|| Watchdog::start(group.0.as_raw(), program))
            .flatten();
        let mut watch = Watch {
            guard,
            name: self.label,
            program,
            group,
            on_lost: self.on_lost,
            ttl: self.ttl,
            grace: self.kill_grace,
            origin: Instant::now(),
            why: None,
            term_sent: false,
            kill_sent: false,
            signal_kill_at: None,
            watchdog,
        };
        let status = watch.run(&mut child, signals).await;
        watch.stop_leftovers().await;
        if let Some(watchdog) = watch.watchdog.take() {
            watchdog.stand_down().await;
        }
        if let Some(terminal) = terminal {
            terminal.take_back();
        }
        let output = self.collect(reader).await;
        Ok(Ended {
            status,
            why: watch.why,
            output,
        })
    }

    /// The captured output, once the group is gone: its end of file comes at once then,
    /// unless a process that left the group still holds the pipe — waited for up to the kill
    /// grace, then the output counts as unread (never as whole).
    async fn collect(&self, reader: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
        let Some(reader) = reader else {
            return Captured::Inherited;
        };
        let reading = reader.abort_handle();
        match tokio::time::timeout(self.kill_grace, reader).await {
            Ok(Ok(captured)) => captured,
            Ok(Err(e)) => Captured::Unread(format!("reading the output failed: {e}")),
            Err(_) => {
                reading.abort();
                Captured::Unread(
                    "a process outside the command's group still holds its stdout open".into(),
                )
            }
        }
    }
}

/// Reads `stdout` to its end, keeping at most `limit` bytes (the rest is read and dropped,
/// so the writer never blocks on a full pipe).
async fn read_capped(mut stdout: tokio::process::ChildStdout, limit: usize) -> Captured {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let mut over = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                over |= n > room;
            }
            Err(e) => return Captured::Unread(format!("reading the output failed: {e}")),
        }
    }
    if over {
        Captured::TooLong(kept)
    } else {
        Captured::Whole(kept)
    }
}

/// Why `exec` stopped the job.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Why {
    /// The lock turned out to be someone else's (or its validity ran out).
    Lost,
    /// Renewal kept failing and the validity was about to run out.
    Lease,
    /// `distlock` got this signal.
    Signal(Signal),
}

/// The job's process group.
#[derive(Debug, Clone, Copy)]
struct Group(Pid);

impl Group {
    /// Sends `signal` to every process of the group. A group already gone is not an error.
    fn signal(self, signal: Signal) {
        if let Err(e) = killpg(self.0, signal)
            && e != nix::errno::Errno::ESRCH
        {
            tell!(
                "distlock: cannot send {signal} to process group {}: {e}",
                self.0
            );
        }
    }

    /// Whether a process of the group is still running (zombies, which run nothing, do not
    /// count).
    fn alive(self) -> bool {
        match members_running(self.0) {
            Some(alive) => alive,
            // No /proc: whether the group still has a process at all.
            None => killpg(self.0, None).is_ok(),
        }
    }
}

/// Whether a process of group `pgid` is running, from `/proc`; `None` without `/proc`.
fn members_running(pgid: Pid) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let wanted = pgid.as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`: the command may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(wanted) && !matches!(state, Some("Z" | "X")) {
            return Some(true);
        }
    }
    Some(false)
}

/// The job under watch: what has been sent to it and why.
struct Watch<'a> {
    guard: &'a Guard,
    name: &'a str,
    program: &'a str,
    group: Group,
    on_lost: OnLost,
    ttl: Duration,
    grace: Duration,
    /// The origin of the core's clock for [`stop_deadlines`].
    origin: Instant,
    why: Option<Why>,
    term_sent: bool,
    kill_sent: bool,
    /// After a stopping signal: when the grace it gave the job ends.
    signal_kill_at: Option<Instant>,
    /// Told every kill deadline of the lease, in case `distlock` cannot act on it.
    watchdog: Option<Watchdog>,
}

/// The lease's stop deadlines on tokio's clock.
struct LeaseDeadlines {
    term: Instant,
    kill: Instant,
}

impl Watch<'_> {
    /// Watches the job until its leader ends, stopping it when the lease or a signal says so.
    async fn run(
        &mut self,
        child: &mut tokio::process::Child,
        signals: &mut Signals,
    ) -> std::io::Result<ExitStatus> {
        let mut lost_seen = false;
        loop {
            // Made before the validity is read, so no renewal slips between the two.
            let moved = self.guard.validity_moved();
            let lease = self.lease_deadlines();
            if let (Some(watchdog), Some(lease)) = (self.watchdog.as_mut(), lease.as_ref()) {
                watchdog.arm(lease.kill).await;
            }
            let next = [
                lease.as_ref().map(|l| l.term).filter(|_| !self.term_sent),
                lease.as_ref().map(|l| l.kill).filter(|_| !self.kill_sent),
                self.signal_kill_at.filter(|_| !self.kill_sent),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                status = child.wait() => return status,
                signal = signals.recv() => self.on_signal(signal),
                () = self.guard.lost(), if !lost_seen => {
                    lost_seen = true;
                    self.on_lost();
                }
                () = sleep_until(next) => self.on_deadline(),
                // The watchdog learns the new deadline on the next turn.
                () = moved, if self.watchdog.is_some() => {}
            }
        }
    }

    /// The lease's deadlines now (`None` when the lease does not stop the job).
    fn lease_deadlines(&self) -> Option<LeaseDeadlines> {
        if !matches!(self.on_lost, OnLost::Kill) {
            return None;
        }
        let now = Instant::now();
        let now_ms = millis(now.duration_since(self.origin));
        let valid_until = now_ms.saturating_add(millis(self.guard.validity()));
        let d = stop_deadlines(
            CoreInstant::from_millis(valid_until),
            core_duration(self.ttl),
            core_duration(self.grace),
            CoreInstant::from_millis(now_ms),
        );
        let at = |i: CoreInstant| self.origin + Duration::from_millis(i.as_millis());
        Some(LeaseDeadlines {
            term: at(d.term),
            kill: at(d.kill),
        })
    }

    fn on_signal(&mut self, signal: Signal) {
        self.group.signal(signal);
        if !stops(signal) || self.signal_kill_at.is_some() {
            return;
        }
        self.why.get_or_insert(Why::Signal(signal));
        self.signal_kill_at = Some(Instant::now() + self.grace);
        tell!(
            "distlock: {signal} passed on to {}'s process group; killing it in {} unless it ends, then releasing '{}'",
            self.program,
            humantime::format_duration(self.grace),
            self.name
        );
    }

    fn on_lost(&mut self) {
        match self.on_lost {
            OnLost::Kill => {
                tell!(
                    "distlock: lock '{}' lost; killing {}'s process group",
                    self.name,
                    self.program
                );
                self.why = Some(Why::Lost);
                self.group.signal(Signal::SIGTERM);
                self.group.signal(Signal::SIGKILL);
                self.term_sent = true;
                self.kill_sent = true;
            }
            OnLost::Warn => tell!(
                "distlock: warning: lock '{}' lost; {} runs on unprotected",
                self.name,
                self.program
            ),
        }
    }

    /// A deadline came: act on what is due after reading the lease's deadlines again.
    fn on_deadline(&mut self) {
        let now = Instant::now();
        if let Some(lease) = self.lease_deadlines() {
            if !self.term_sent && now >= lease.term {
                tell!(
                    "distlock: renewing lock '{}' keeps failing and its validity ends in {} ms: stopping {}'s process group (SIGTERM now, SIGKILL in {} ms)",
                    self.name,
                    self.guard.validity().as_millis(),
                    self.program,
                    lease.kill.saturating_duration_since(now).as_millis()
                );
                self.why = Some(Why::Lease);
                self.term_sent = true;
                self.group.signal(Signal::SIGTERM);
            }
            if !self.kill_sent && now >= lease.kill {
                tell!(
                    "distlock: lock '{}' is about to expire: killing {}'s process group",
                    self.name,
                    self.program
                );
                self.why = Some(Why::Lease);
                self.kill_sent = true;
                self.group.signal(Signal::SIGKILL);
            }
        }
        if !self.kill_sent && self.signal_kill_at.is_some_and(|at| now >= at) {
            tell!(
                "distlock: {} did not end within the grace: killing its process group",
                self.program
            );
            self.kill_sent = true;
            self.group.signal(Signal::SIGKILL);
        }
    }

    /// The leader ended: whatever it left running in its group is stopped the same way
    /// (TERM, the grace, KILL), and waited for, before the lock may be released.
    async fn stop_leftovers(&mut self) {
        if !self.group.alive() {
            return;
        }
        if !self.kill_sent {
            // Not yet asked to end (neither the lease nor a signal did): ask now.
            if !self.term_sent && self.signal_kill_at.is_none() {
                tell!(
                    "distlock: {} ended but left processes running in its group: stopping them",
                    self.program
                );
                self.group.signal(Signal::SIGTERM);
                self.term_sent = true;
            }
            let mut kill_at = Instant::now() + self.grace;
            if let Some(lease) = self.lease_deadlines() {
                kill_at = kill_at.min(lease.kill);
            }
            if let Some(at) = self.signal_kill_at {
                kill_at = kill_at.min(at);
            }
            while self.group.alive() && Instant::now() < kill_at {
                tokio::time::sleep(GROUP_POLL).await;
            }
            if !self.group.alive() {
                return;
            }
            tell!(
                "distlock: what {} left in its process group did not end within the grace: killing it",
                self.program
            );
            self.group.signal(Signal::SIGKILL);
            self.kill_sent = true;
        }
        // Killed: gone as soon as the kernel has torn the processes down. Bounded all the
        // same (a process in uninterruptible sleep ends only when its I/O does).
        let limit = Instant::now() + self.grace.max(Duration::from_secs(1));
        while self.group.alive() && Instant::now() < limit {
            tokio::time::sleep(GROUP_POLL).await;
        }
        if self.group.alive() {
            tell!(
                "distlock: processes of {}'s group {} survive SIGKILL",
                self.program,
                self.group.0
            );
        }
    }
}

/// Sleeps until `at`, or forever without a deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn core_duration(d: Duration) -> distlock_core::Duration {
    distlock_core::Duration::from_millis(millis(d))
}

/// Whether a signal to `distlock` ends the job (after its grace) rather than only reaching it.
fn stops(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
    )
}

/// The next signal that ends a wait for the lock: with no job yet, USR1 and USR2 have no one
/// to reach, and end nothing.
pub(crate) async fn stopping_signal(signals: &mut Signals) -> Signal {
    loop {
        let signal = signals.recv().await;
        if !matches!(signal, Signal::SIGUSR1 | Signal::SIGUSR2) {
            return signal;
        }
    }
}

/// The signals `exec` passes on to the job.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal received.
    pub(crate) async fn recv(&mut self) -> Signal {
        tokio::select! {
            Some(()) = self.term.recv() => Signal::SIGTERM,
            Some(()) = self.int.recv() => Signal::SIGINT,
            Some(()) = self.hup.recv() => Signal::SIGHUP,
            Some(()) = self.quit.recv() => Signal::SIGQUIT,
            Some(()) = self.usr1.recv() => Signal::SIGUSR1,
            Some(()) = self.usr2.recv() => Signal::SIGUSR2,
            else => std::future::pending().await,
        }
    }
}

/// The terminal on stdin, while its foreground is the job's.
struct Terminal {
    /// distlock's own process group, to give the foreground back to.
    ours: Pid,
}

impl Terminal {
    /// Gives the terminal's foreground to the job's group when distlock has it (as a shell
    /// does for a job: otherwise a job reading the terminal is stopped by SIGTTIN). `None`
    /// when stdin is not a terminal or distlock runs in the background.
    fn hand_to(group: Group) -> Option<Terminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let ours = getpgrp();
        if tcgetpgrp(&stdin).ok()? != ours {
            return None;
        }
        without_sigttou(|| tcsetpgrp(&stdin, group.0)).ok()?;
        // The job may have read the terminal before it had it, and been stopped for that.
        group.signal(Signal::SIGCONT);
        Some(Terminal { ours })
    }

    /// Takes the foreground back for distlock's group.
    fn take_back(self) {
        let stdin = std::io::stdin();
        if let Err(e) = without_sigttou(|| tcsetpgrp(&stdin, self.ours)) {
            tell!("distlock: cannot take the terminal back: {e}");
        }
    }
}

/// Runs `f` with SIGTTOU blocked on this thread: a process outside the terminal's
/// foreground that changes the foreground is otherwise stopped by SIGTTOU.
fn without_sigttou<T>(f: impl FnOnce() -> nix::Result<T>) -> nix::Result<T> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut before = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut before))?;
    let result = f();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None)?;
    result
}

/// Releases the lock, saying so when that fails (it then expires at its TTL).
pub(crate) async fn release(guard: Guard, name: &str) {
    if let Err(e) = guard.release().await {
        tell!("distlock: releasing '{name}' failed: {e}; it expires at its TTL");
    }
}

/// The shell's codes for a command that cannot run: 127 when it does not exist, 126 when it
/// exists but cannot be executed (permissions, not an executable, a missing interpreter).
fn code_of_spawn_error(program: &str, e: &std::io::Error) -> u8 {
    if e.kind() == std::io::ErrorKind::NotFound && !exists(program) {
        exit::NOT_FOUND
    } else {
        exit::CANNOT_EXECUTE
    }
}

/// Whether `program` names a file: as a path when it has a slash, else on `PATH`.
fn exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `exec`'s exit code: 75 when the lock was lost or about to be; 128 + N after signal N to
/// distlock (unless the job exited by itself); else the job's code (128 + N if it was killed
/// by signal N).
pub(crate) fn code_of_status(
    status: std::io::Result<ExitStatus>,
    why: Option<Why>,
    program: &str,
) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (why, status) {
        (Some(Why::Lost | Why::Lease), _) => exit::NOT_ACQUIRED,
        (_, Ok(status)) if status.code().is_some() => {
            status.code().map_or(exit::UNAVAILABLE, |c| c as u8)
        }
        (Some(Why::Signal(signal)), _) => signalled(signal as i32),
        (None, Ok(status)) => signalled(status.signal().unwrap_or(0)),
        (None, Err(e)) => {
            tell!("distlock: waiting for {program} failed: {e}");
            exit::UNAVAILABLE
        }
    }
}

pub(crate) fn signalled(signal: i32) -> u8 {
    exit::SIGNALLED.saturating_add(u8::try_from(signal).unwrap_or(0))
}
