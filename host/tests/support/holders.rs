//! Lock holders for the tests: a critical section that catches two holders at once
//! ([`Section`]), a resource that refuses writes with a stale fence ([`FencedStore`]), and
//! `distlock exec` holder processes whose command reports its pid and fence through files
//! ([`ExecHolder`]).
//!
//! Invariant: nothing a holder starts outlives the test. The `distlock` process is killed on
//! drop, and so is its command once its pid is known — a command is no child of ours, and
//! once `distlock` is dead (SIGKILLed by a test, or a failure) nothing else stops it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{KillOnDrop, distlock, process_state, wait_for};

/// A critical section that counts entries and catches overlaps, and remembers the fences
/// its holders entered with.
#[derive(Default)]
pub(crate) struct Section {
    inside: AtomicBool,
    entries: AtomicU64,
    overlaps: AtomicU64,
    fences: Mutex<Vec<u64>>,
}

impl Section {
    /// Enters; records an overlap when another holder is inside.
    pub(crate) fn enter(&self) {
        self.entries.fetch_add(1, Ordering::SeqCst);
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Enters holding `fence`; the fences are kept in the order the section was entered.
    pub(crate) fn enter_fenced(&self, fence: u64) {
        self.enter();
        self.fences.lock().expect("fences").push(fence);
    }

    pub(crate) fn leave(&self) {
        self.inside.store(false, Ordering::SeqCst);
    }

    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Ordering::SeqCst)
    }

    pub(crate) fn overlaps(&self) -> u64 {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// Checks that `entries` holders entered, one at a time, with fences 1, 2, … in the
    /// order they entered: what one lock taken `entries` times must give.
    pub(crate) fn assert_one_at_a_time_fenced(&self, entries: u64) {
        assert_eq!(self.overlaps(), 0, "two holders at once");
        assert_eq!(self.entries(), entries);
        let fences = self.fences.lock().expect("fences").clone();
        let expected: Vec<u64> = (1..=entries).collect();
        assert_eq!(fences, expected, "fences in the order the lock was held");
    }
}

/// A resource that remembers the largest fence it has seen and refuses writes with a smaller
/// one: what a fenced lock protects.
#[derive(Debug, Default)]
pub(crate) struct FencedStore {
    highest: u64,
    writes: Vec<(u64, String)>,
}

impl FencedStore {
    /// Takes the write when `fence` is at least the largest seen so far.
    pub(crate) fn write(&mut self, fence: u64, what: &str) -> Result<(), String> {
        if fence < self.highest {
            return Err(format!(
                "stale fence {fence}: {} was seen already",
                self.highest
            ));
        }
        self.highest = fence;
        self.writes.push((fence, what.to_owned()));
        Ok(())
    }

    /// The fence of the last write taken.
    pub(crate) fn last_fence(&self) -> Option<u64> {
        self.writes.last().map(|w| w.0)
    }
}

/// The number in the file at `path`, once it is there in full.
pub(crate) fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` no longer runs (absent, or a zombie).
pub(crate) fn gone(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z' | 'X'))
}

/// Sends SIGKILL to `pid` unless it is gone already (cleanup: the outcome is not checked).
pub(crate) fn kill_if_running(pid: u32) {
    if !gone(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// What every holder's command runs first: its pid, then `$DISTLOCK_FENCE`, each written
/// whole (through a rename) to a file in `$HOLDER_DIR`.
const REPORT: &str = r#"echo $$ > "$HOLDER_DIR/pid.tmp"; mv "$HOLDER_DIR/pid.tmp" "$HOLDER_DIR/pid"
echo "$DISTLOCK_FENCE" > "$HOLDER_DIR/fence.tmp"; mv "$HOLDER_DIR/fence.tmp" "$HOLDER_DIR/fence"
"#;

/// How long a holder gets to start its command.
const START: Duration = Duration::from_secs(10);

/// A `distlock exec` process holding a lock for a `sh -c` command that writes its pid and
/// fence to files in the holder's own directory (`$HOLDER_DIR`), then runs on as told.
pub(crate) struct ExecHolder {
    dir: tempfile::TempDir,
    /// `distlock exec` itself.
    pub(crate) distlock: KillOnDrop,
    /// The command's pid, once [`ExecHolder::command_pid`] has read it.
    command: Option<u32>,
}

impl ExecHolder {
    /// Starts `distlock exec --name <name> <flags> -- sh -c '<report>; <then>'`. `distlock`'s
    /// stderr goes to a file, not a pipe: a command that outlives `distlock` would hold a
    /// pipe open, and reading it would never end.
    pub(crate) fn spawn(url: &str, name: &str, flags: &[&str], then: &str) -> ExecHolder {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = format!("{REPORT}{then}");
        let mut args = vec!["exec", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = distlock(url, &args)
            .env("HOLDER_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn distlock exec");
        ExecHolder {
            dir,
            distlock: KillOnDrop(child),
            command: None,
        }
    }

    /// A file in the holder's directory (`$HOLDER_DIR/<file>` to the command).
    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The fence the command was given, once it has written it.
    pub(crate) fn fence(&self) -> u64 {
        wait_for("the holder's fence", START, || {
            read_number(&self.path("fence"))
        })
    }

    /// The command's pid, once it runs; from then on the command is killed on drop.
    pub(crate) fn command_pid(&mut self) -> u32 {
        let pid = wait_for("the command's pid", START, || {
            read_number(&self.path("pid")).and_then(|p| u32::try_from(p).ok())
        });
        self.command = Some(pid);
        pid
    }

    /// What `distlock` has written to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }
}

impl Drop for ExecHolder {
    fn drop(&mut self) {
        // The command first: `distlock` (killed next, as a field) no longer can once dead.
        if let Some(pid) = self.command {
            kill_if_running(pid);
        }
    }
}
