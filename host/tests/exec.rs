//! `distlock exec` against real `redis-server`s and real process trees: no part of the job
//! outlives the lock (the whole process group is stopped, before the lease's validity ends),
//! signals to `distlock` reach the job and release the lock at once, and a command that
//! cannot run exits 126 or 127 with the lock released.
//!
//! Jobs are small `sh` trees whose innermost process (a grandchild of `distlock`) writes its
//! pid to a file and a heartbeat (a wall-clock timestamp in ns) every 50 ms; "gone" means no
//! such process, or a zombie (it runs nothing).

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::holders::{gone, kill_if_running, read_number};
use support::proxy::{Dir, Proxy};
use support::{
    KillOnDrop, RedisServer, distlock, lock_key, process_state, require_redis, run_bounded,
    send_signal, show, unique_name, wait_for,
};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// The innermost job: traps the stopping signals (writes which one to `got`, then exits) —
/// or ignores the one named in `$IGNORE` — and writes its pid and a heartbeat every 50 ms.
const BEATING: &str = r#"
for s in TERM INT HUP QUIT USR1; do trap "echo $s >> \"$GOT\"; exit 0" $s; done
[ -z "$IGNORE" ] || trap '' $IGNORE
echo $$ > "$PIDF"
while :; do date +%s%N >> "$BEAT"; sleep 0.05; done
"#;

/// A job's files: where its innermost process writes its pid, its heartbeat and the
/// signals it got. Kills that process on drop whatever happened (it may have outlived
/// `distlock` when a test fails).
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        Job {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `distlock exec … -- sh -c '<outer>'` where `outer` runs [`BEATING`] as `$INNER`.
    fn exec(&self, url: &str, args: &[&str], outer: &str) -> KillOnDrop {
        self.exec_ignoring(url, args, outer, "")
    }

    /// [`Job::exec`] with the innermost process ignoring `ignore` (a signal name).
    fn exec_ignoring(&self, url: &str, args: &[&str], outer: &str, ignore: &str) -> KillOnDrop {
        let child = self
            .command(url, args, outer, ignore)
            .spawn()
            .expect("spawn distlock exec");
        KillOnDrop(child)
    }

    /// [`Job::exec`] with `distlock` in a process group of its own, as a shell starts a job
    /// (so a test can signal that whole group, as `kill -9 %1` does).
    fn exec_as_shell_job(&self, url: &str, args: &[&str], outer: &str) -> KillOnDrop {
        let child = self
            .command(url, args, outer, "")
            .process_group(0)
            .spawn()
            .expect("spawn distlock exec");
        KillOnDrop(child)
    }

    fn command(&self, url: &str, args: &[&str], outer: &str, ignore: &str) -> Command {
        let mut all: Vec<&str> = vec!["exec"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "sh", "-c", outer]);
        let mut command = distlock(url, &all);
        command
            .env("PIDF", self.path("pid"))
            .env("BEAT", self.path("beat"))
            .env("GOT", self.path("got"))
            .env("INNER", BEATING)
            .env("IGNORE", ignore)
            // A shell that dies of SIGQUIT may dump core: into the job's directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr_file());
        command
    }

    /// distlock's stderr goes to a file, not a pipe: a job that outlives distlock would hold
    /// a pipe open, and reading it would never end.
    fn stderr_file(&self) -> std::fs::File {
        std::fs::File::create(self.path("stderr")).expect("create the stderr file")
    }

    /// What distlock wrote to stderr.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// The innermost process's pid, once it runs.
    fn pid(&self) -> u32 {
        wait_for("the job's pid file", LIMIT, || {
            read_number(&self.path("pid")).and_then(|p| u32::try_from(p).ok())
        })
    }

    /// Waits for the first heartbeat: the innermost process runs.
    fn wait_beating(&self) {
        wait_for("a heartbeat", LIMIT, || {
            (!self.beats().is_empty()).then_some(())
        });
    }

    /// The heartbeats so far (ns since the epoch).
    fn beats(&self) -> Vec<u128> {
        std::fs::read_to_string(self.path("beat"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn got(&self) -> String {
        std::fs::read_to_string(self.path("got")).unwrap_or_default()
    }

    /// Checks that the heartbeat does not move for 500 ms.
    fn assert_still(&self) {
        let before = self.beats().len();
        let window = Instant::now() + Duration::from_millis(500);
        while Instant::now() < window {
            assert_eq!(self.beats().len(), before, "the job's heartbeat moved on");
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(pid) = read_number(&self.path("pid")).and_then(|p| u32::try_from(p).ok()) {
            kill_if_running(pid);
        }
    }
}

/// Now on the wall clock, in ns since the epoch (the heartbeat's clock).
fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn exists(server: &RedisServer, name: &str) -> bool {
    server.raw().ok(&["EXISTS", &lock_key(name)]).int() == Some(1)
}

/// When the held lock's `key` expires if nothing extends it (ns since the epoch, from its
/// PTTL now).
fn expiry(raw: &mut support::Raw, key: &str) -> u128 {
    let pttl = raw.ok(&["PTTL", key]).int().expect("PTTL of the held lock");
    assert!(pttl > 0, "the lock should be held: PTTL {pttl}");
    wall_ns() + u128::try_from(pttl).unwrap_or(0) * 1_000_000
}

/// Sends `signal` to the process group `pgid` (a process that leads its own group).
fn send_signal_to_group(pgid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} -- -{pgid}");
}

/// Waits for `child` to end (within [`LIMIT`]).
fn ended(child: &mut Child) -> ExitStatus {
    wait_for("distlock exec to end", LIMIT, || {
        child.try_wait().expect("exit status")
    })
}

/// An operator resets the lock and a newcomer takes it: `exec` exits 75 and the whole job —
/// down to the grandchild `sh -c` started — is gone, its heartbeat still. Before, only the
/// direct child was killed and the grandchild ran on beside the newcomer.
#[test]
fn a_reset_lock_stops_the_whole_process_group() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("group");
    let job = Job::new();
    // The grandchild in the background, its parent waiting: the shape that escaped before.
    let mut holder = job.exec(
        &url,
        &["--name", &name, "--ttl", "3s"],
        r#"sh -c "$INNER" & wait"#,
    );
    let pid = job.pid();
    job.wait_beating();

    let reset = run_bounded(distlock(&url, &["reset", "--name", &name]), LIMIT).expect("reset");
    assert_eq!(reset.status.code(), Some(0), "{}", show(&reset));
    let newcomer = run_bounded(
        distlock(
            &url,
            &["acquire", "--name", &name, "--ttl", "30s", "--wait", "10s"],
        ),
        LIMIT,
    )
    .expect("acquire");
    assert_eq!(newcomer.status.code(), Some(0), "{}", show(&newcomer));

    let status = ended(&mut holder.0);
    let err = job.stderr();
    assert_eq!(status.code(), Some(75), "exec's exit; stderr: {err}");
    assert!(
        gone(pid),
        "the grandchild {pid} runs on beside the newcomer (state {:?}); stderr: {err}",
        process_state(pid)
    );
    job.assert_still();
    assert!(exists(&server, &name), "the newcomer's lock was left alone");
}

/// Renewal cannot reach the server (a partition): the whole group is stopped before the
/// lease's validity ends. Every heartbeat is older than the moment the key expires on the
/// server, so no newcomer can ever run beside the job.
#[test]
fn failing_renewal_stops_the_group_before_the_validity_ends() {
    require_redis!();
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let name = unique_name("partition");
    let job = Job::new();
    // A job that ignores SIGTERM: only the kill, before the validity ends, stops it.
    let mut holder = job.exec_ignoring(
        &proxy.url(),
        &["--name", &name, "--ttl", "3s", "--kill-grace", "10s"],
        r#"sh -c "$INNER"; true"#,
        "TERM",
    );
    let pid = job.pid();
    job.wait_beating();
    let mut raw = server.raw();
    let key = lock_key(&name);

    proxy.black_hole(Dir::Up, true);
    proxy.black_hole(Dir::Down, true);
    // Nothing reaches the server from now on: the key expires at this PTTL at the latest.
    let expires_at = expiry(&mut raw, &key);

    let status = ended(&mut holder.0);
    let err = job.stderr();
    assert_eq!(status.code(), Some(75), "exec's exit; stderr: {err}");
    assert!(gone(pid), "the job {pid} outlived the lease; stderr: {err}");
    let last = job.beats().last().copied().expect("heartbeats");
    assert!(
        last < expires_at,
        "the job beat {} ms after the lease's key expired; stderr: {err}",
        (last - expires_at) / 1_000_000
    );
    job.assert_still();
    wait_for("the key to expire", LIMIT, || {
        (raw.ok(&["EXISTS", &key]).int() == Some(0)).then_some(())
    });
}

/// `distlock` killed with SIGKILL — here its whole process group, as `kill -9 %1` or the OOM
/// killer's group kill does — cannot stop its job itself: its watchdog, in a group of its own,
/// sees the pipe from it close and kills the job's whole group at once, down to the
/// grandchild, while the lock still has most of its 30 s TTL. Before, the job ran on
/// unprotected past the TTL.
#[test]
fn a_sigkilled_exec_leaves_no_job_running() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("sigkilled");
    let job = Job::new();
    let mut holder = job.exec_as_shell_job(
        &server.url(),
        &["--name", &name, "--ttl", "30s"],
        r#"sh -c "$INNER"; true"#,
    );
    let pid = job.pid();
    job.wait_beating();
    send_signal_to_group(holder.0.id(), "KILL");
    ended(&mut holder.0);
    wait_for("the watchdog to kill the job", LIMIT, || {
        gone(pid).then_some(())
    });
    job.assert_still();
    assert!(
        exists(&server, &name),
        "nobody released the lock: it frees at its TTL, after the job is gone"
    );
    let err = job.stderr();
    assert!(
        err.contains("distlock watchdog: distlock ended while the job ran"),
        "stderr: {err}"
    );
}

/// A healthy job that runs for several TTLs is renewed and never touched: each renewal moves
/// the watchdog's kill deadline before the old one comes, so the watchdog stays quiet and the
/// job's own exit code comes back.
#[test]
fn a_renewed_job_outlives_many_ttls_with_its_watchdog_quiet() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("renewed");
    let job = Job::new();
    let mut holder = job.exec(
        &server.url(),
        &["--name", &name, "--ttl", "2s"],
        "sleep 7; exit 3",
    );
    let status = ended(&mut holder.0);
    let err = job.stderr();
    assert_eq!(status.code(), Some(3), "the job's own exit; stderr: {err}");
    assert!(!err.contains("watchdog"), "stderr: {err}");
    assert!(!exists(&server, &name), "released when the job ended");
}

/// `distlock` frozen (SIGSTOP) cannot renew nor stop its job: its watchdog kills the job's
/// group at the lease's kill deadline, which `distlock` told it, so the job's last heartbeat
/// comes before the lock's key expires. The job ignores SIGTERM, so only a kill stops it.
#[test]
fn a_frozen_exec_has_its_job_killed_before_the_lease_ends() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("frozen");
    let job = Job::new();
    let mut holder = job.exec_ignoring(
        &server.url(),
        &["--name", &name, "--ttl", "3s", "--kill-grace", "10s"],
        r#"sh -c "$INNER"; true"#,
        "TERM",
    );
    let pid = job.pid();
    job.wait_beating();
    let distlock_pid = holder.0.id();
    send_signal(distlock_pid, "STOP");
    wait_for("distlock to stop", LIMIT, || {
        (process_state(distlock_pid) == Some('T')).then_some(())
    });
    let mut raw = server.raw();
    let key = lock_key(&name);
    // Nothing renews the lock from now on: the key expires at this PTTL.
    let expires_at = expiry(&mut raw, &key);
    wait_for("the watchdog to kill the job", LIMIT, || {
        gone(pid).then_some(())
    });
    let last = job.beats().last().copied().expect("heartbeats");
    let err = job.stderr();
    assert!(
        last < expires_at,
        "the job beat {} ms after the lease's key expired; stderr: {err}",
        (last - expires_at) / 1_000_000
    );
    job.assert_still();
    send_signal(distlock_pid, "CONT");
    ended(&mut holder.0);
    let err = job.stderr();
    assert!(
        err.contains("distlock watchdog: the lease's kill deadline passed"),
        "stderr: {err}"
    );
}

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT to distlock's pid reach the job's whole group (the
/// grandchild writes which one it got), the lock is released as distlock exits (no wait for
/// the TTL) and the exit code is 128 + the signal. Before, distlock died of the signal and
/// the job ran on, unrenewed.
#[test]
fn stopping_signals_reach_the_group_and_release_the_lock() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    for (signal, number) in [("TERM", 15), ("INT", 2), ("HUP", 1), ("QUIT", 3)] {
        let name = unique_name(signal);
        let job = Job::new();
        // The inner shell in the foreground (`; true` keeps the outer one from exec'ing it):
        // background jobs of a non-interactive shell ignore SIGINT and SIGQUIT.
        let mut holder = job.exec(
            &url,
            &["--name", &name, "--ttl", "30s", "--kill-grace", "10s"],
            r#"sh -c "$INNER"; true"#,
        );
        let pid = job.pid();
        assert!(exists(&server, &name), "held while the job runs");
        send_signal(holder.0.id(), signal);
        let status = ended(&mut holder.0);
        let err = job.stderr();
        assert!(
            !exists(&server, &name),
            "SIG{signal}: the lock should be released when distlock exits"
        );
        assert_eq!(
            status.code(),
            Some(128 + number),
            "SIG{signal}: exit code; stderr: {err}"
        );
        assert_eq!(job.got().trim(), signal, "SIG{signal}: what the job got");
        assert!(gone(pid), "SIG{signal}: the job {pid} runs on");
    }
}

/// A job that ignores SIGTERM is killed once the grace is over; the lock is then released
/// and distlock exits 143.
#[test]
fn a_job_ignoring_sigterm_is_killed_after_the_grace() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("stubborn");
    let job = Job::new();
    let mut holder = job.exec_ignoring(
        &url,
        &["--name", &name, "--ttl", "30s", "--kill-grace", "1s"],
        r#"sh -c "$INNER"; true"#,
        "TERM",
    );
    let pid = job.pid();
    send_signal(holder.0.id(), "TERM");
    let sent = Instant::now();
    let status = ended(&mut holder.0);
    let err = job.stderr();
    assert_eq!(status.code(), Some(143), "stderr: {err}");
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "killed after {:?}: before its 1 s grace",
        sent.elapsed()
    );
    assert!(gone(pid), "the job {pid} survived");
    assert!(!exists(&server, &name), "the lock should be released");
    assert!(err.contains("grace"), "stderr: {err}");
}

/// SIGUSR1 reaches the job (it writes a file) and the job goes on, the lock held; when the
/// job then ends by itself, exec exits with its code and releases the lock.
#[test]
fn sigusr1_reaches_the_job_and_it_goes_on() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("usr1");
    let job = Job::new();
    let stop = job.path("stop");
    // One shell, so that every long-lived process of the group handles SIGUSR1 (its default
    // action ends a process); its short-lived `sleep`s may die of it.
    let script = r#"
trap "echo USR1 >> \"$GOT\"" USR1
echo $$ > "$PIDF"
while [ ! -e "$STOPF" ]; do date +%s%N >> "$BEAT"; sleep 0.05; done
exit 3"#;
    let mut all = vec!["exec", "--name", &name, "--ttl", "30s", "--", "sh", "-c"];
    all.push(script);
    let holder = distlock(&url, &all)
        .env("PIDF", job.path("pid"))
        .env("BEAT", job.path("beat"))
        .env("GOT", job.path("got"))
        .env("STOPF", &stop)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(job.stderr_file())
        .spawn()
        .expect("spawn distlock exec");
    let mut holder = KillOnDrop(holder);
    let pid = job.pid();
    send_signal(holder.0.id(), "USR1");
    wait_for("the job to get SIGUSR1", LIMIT, || {
        job.got().contains("USR1").then_some(())
    });
    // It goes on: a new heartbeat after the signal, distlock still there, the lock held.
    let seen = job.beats().len();
    wait_for("a heartbeat after SIGUSR1", LIMIT, || {
        (job.beats().len() > seen + 1).then_some(())
    });
    assert!(!gone(pid), "the job stopped on SIGUSR1");
    assert!(
        holder.0.try_wait().expect("status").is_none(),
        "distlock ended on SIGUSR1"
    );
    assert!(exists(&server, &name), "the lock should still be held");

    std::fs::write(&stop, b"").expect("write the stop file");
    let status = ended(&mut holder.0);
    let err = job.stderr();
    assert_eq!(status.code(), Some(3), "the job's own code; stderr: {err}");
    assert!(!exists(&server, &name), "released after the job ended");
}

/// The signal sent to distlock's whole process group, as `timeout(1)` does (and a terminal's
/// Ctrl-C): the job stops, the lock is released at once and a waiter gets it right away, not
/// after the 30 s TTL.
#[test]
fn a_signal_to_the_whole_group_releases_the_lock_at_once() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("timeout");
    let job = Job::new();
    let mut command = Command::new("timeout");
    command
        .args(["-s", "TERM", "2"])
        .arg(support::distlock_binary())
        .args(["--redis", &url, "exec", "--name", &name, "--ttl", "30s"])
        .args(["--", "sh", "-c", r#"sh -c "$INNER"; true"#])
        .env("PIDF", job.path("pid"))
        .env("BEAT", job.path("beat"))
        .env("GOT", job.path("got"))
        .env("INNER", BEATING)
        .env_remove("DISTLOCK_REDIS");
    let out = run_bounded(command, LIMIT).expect("run timeout distlock exec");
    // timeout(1) exits 124 when it had to send the signal.
    assert_eq!(out.status.code(), Some(124), "{}", show(&out));
    let pid = job.pid();
    assert!(gone(pid), "the job {pid} runs on; {}", show(&out));
    // timeout(1) signals distlock, then its own group (distlock again): passed on twice.
    assert!(
        job.got().lines().all(|l| l == "TERM") && !job.got().is_empty(),
        "what the job got: {:?}",
        job.got()
    );

    let started = Instant::now();
    let waiter = run_bounded(
        distlock(
            &url,
            &["acquire", "--name", &name, "--ttl", "5s", "--wait", "25s"],
        ),
        Duration::from_secs(40),
    )
    .expect("acquire");
    assert_eq!(waiter.status.code(), Some(0), "{}", show(&waiter));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the waiter got the lock only after {:?}: it was not released",
        started.elapsed()
    );
}

/// A command that does not exist exits 127; one that exists but cannot be executed (no
/// execute permission, a directory, not an executable format, a missing interpreter) 126.
/// The lock is released in every case (no wait for its 30 s TTL).
#[test]
fn commands_that_cannot_run_exit_126_or_127_and_release_the_lock() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &[u8], executable: bool| -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    };
    let cases: Vec<(String, i32)> = vec![
        ("/nonexistent/command".into(), 127),
        ("distlock-no-such-command-on-path".into(), 127),
        (write("not-executable.sh", b"echo ran\n", false), 126),
        (dir.path().display().to_string(), 126),
        (write("garbage", b"\x7fELF garbage", true), 126),
        (
            write("bad-interpreter", b"#!/nonexistent/sh\necho ran\n", true),
            126,
        ),
    ];
    for (command, code) in cases {
        let name = unique_name("cannot-run");
        let out = run_bounded(
            distlock(
                &url,
                &["exec", "--name", &name, "--ttl", "30s", "--", &command],
            ),
            LIMIT,
        )
        .expect("run distlock exec");
        assert_eq!(out.status.code(), Some(code), "{command}: {}", show(&out));
        assert!(
            !exists(&server, &name),
            "{command}: the lock was not released"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ran"),
            "{command} ran"
        );
    }
}

/// A job that reads the terminal: distlock hands the terminal's foreground to the job's
/// group, so the read gets the line instead of the job being stopped by SIGTTIN (it runs in
/// a process group of its own). `script(1)` provides the terminal.
#[test]
fn a_job_reads_the_terminal() {
    require_redis!();
    let Some(script) = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        eprintln!("skipping: no script(1) to provide a terminal");
        return;
    };
    let server = RedisServer::start();
    let name = unique_name("tty");
    let inner = format!(
        "{} --redis {} exec --name {name} --ttl 30s -- sh -c 'read line; echo \"got:$line\"'",
        support::distlock_binary().display(),
        server.url()
    );
    let mut command = Command::new(script);
    command
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("DISTLOCK_REDIS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().expect("spawn script"));
    // Typed once the job waits for it; a line typed early is kept by the terminal anyway.
    {
        use std::io::Write;
        let mut stdin = child.0.stdin.take().expect("stdin");
        stdin.write_all(b"hello\n").expect("type a line");
        stdin.flush().expect("flush");
        // script(1) ends the session when its input ends: keep it open until the job ran.
        let status = wait_for("the job to read the line and end", LIMIT, || {
            child.0.try_wait().expect("status")
        });
        drop(stdin);
        let mut out = String::new();
        if let Some(mut pipe) = child.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
        }
        assert!(status.success(), "{status}: {out}");
        assert!(out.contains("got:hello"), "output: {out}");
    }
    assert!(!exists(&server, &name), "released after the job ended");
}

/// A signal while `exec` still waits for the lock gives the acquire up (its wake-up wait is
/// cancelled and whatever it may have taken rolled back) and exits 128 + N at once, instead
/// of dying by the signal's default action; the holder's lock is untouched and no job runs.
#[test]
fn a_signal_while_waiting_for_the_lock_gives_up_cleanly() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("waiting");
    let held = run_bounded(
        distlock(&url, &["acquire", "--name", &name, "--ttl", "60s"]),
        LIMIT,
    )
    .expect("run distlock");
    assert_eq!(held.status.code(), Some(0), "{}", show(&held));
    let holder = String::from_utf8_lossy(&held.stdout).trim().to_owned();
    let job = Job::new();
    let ran = job.path("ran");
    let mut waiter = distlock(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--wait",
            "60s",
            "--",
            "sh",
            "-c",
            r#"touch "$0""#,
            ran.to_str().expect("utf-8 path"),
        ],
    );
    waiter
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut waiter = KillOnDrop(waiter.spawn().expect("spawn the waiter"));
    wait_for("the waiter to block on the wake-up list", LIMIT, || {
        (server.blocked_clients() > 0).then_some(())
    });
    let signalled_at = Instant::now();
    send_signal(waiter.0.id(), "TERM");
    let status = ended(&mut waiter.0);
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        signalled_at.elapsed() < Duration::from_secs(5),
        "gave up only after {:?}",
        signalled_at.elapsed()
    );
    let err = support::take_stderr(&mut waiter.0);
    assert!(err.contains("not acquired"), "stderr: {err}");
    assert!(!ran.exists(), "no job may run without the lock");
    assert_eq!(
        server
            .raw()
            .ok(&["GET", &lock_key(&name)])
            .text()
            .as_deref(),
        Some(holder.as_str()),
        "the holder's lock is untouched"
    );
}
