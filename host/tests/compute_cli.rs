//! `distlock compute` (the dogpile helper on the command line) against a real `redis-server`:
//! one command runs while every other caller waits for its value and prints it; a cached
//! value is printed without running the command; a failing command stores nothing, passes
//! its output and code on, and lets the next caller compute; output over the value limit, a
//! lost lock and a wait that runs out store nothing; a lock compute cannot use is refused.
//!
//! The commands synchronise on files the test creates (a computation that waits for `GO`),
//! and the test waits on what the server shows (the lock key, the waiters' count).

mod support;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use support::{RedisServer, distlock, lock_key, require_redis, unique_name, wait_for};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// `distlock compute --name NAME --value-ttl 1m …extra -- sh -c SCRIPT`, started.
fn start(server: &RedisServer, name: &str, extra: &[&str], script: &str) -> Child {
    let mut args = vec!["compute", "--name", name, "--value-ttl", "1m"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    distlock(&server.url(), &args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start distlock compute")
}

/// Waits (bounded) for `child` to end and returns what it wrote.
fn finish(child: Child) -> Output {
    let id = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waited.recv_timeout(LIMIT) {
        Ok(output) => output.expect("wait for distlock compute"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("distlock compute did not finish within {LIMIT:?}");
        }
    }
}

/// A computation that notes its run in `runs`, waits for `go` to exist, then prints `value`.
fn waiting_computation(runs: &Path, go: &Path, value: &str) -> String {
    format!(
        "echo run >> '{}'; while [ ! -e '{}' ]; do sleep 0.01; done; printf '{value}'",
        runs.display(),
        go.display()
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn value_key(name: &str) -> String {
    format!("{}:value", lock_key(name))
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.raw().ok(&["EXISTS", key]).int() == Some(1)
}

#[test]
fn one_command_runs_and_every_caller_prints_its_value() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("compute");
    let dir = tempfile::tempdir().expect("temp dir");
    let (runs, go) = (dir.path().join("runs"), dir.path().join("go"));
    let script = waiting_computation(&runs, &go, "value-1");

    let computer = start(&server, &name, &["--wait", "30s"], &script);
    wait_for("the first caller to take the lock", LIMIT, || {
        exists(&server, &lock_key(&name)).then_some(())
    });
    let waiters: Vec<Child> = (0..2)
        .map(|_| start(&server, &name, &["--wait", "30s"], &script))
        .collect();
    let waiters_key = format!("{}:waiters", value_key(&name));
    wait_for("both later callers to wait for the value", LIMIT, || {
        (server.raw().ok(&["GET", &waiters_key]).text().as_deref() == Some("2")).then_some(())
    });
    std::fs::write(&go, "").expect("let the computation end");

    for child in std::iter::once(computer).chain(waiters) {
        let out = finish(child);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), "value-1", "{out:?}");
    }
    let ran = std::fs::read_to_string(&runs).expect("runs");
    assert_eq!(ran.lines().count(), 1, "the command ran more than once");
    assert!(!exists(&server, &lock_key(&name)), "the lock was left");

    // Cached: printed as stored, the command does not run.
    let out = finish(start(&server, &name, &[], &script));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "value-1");
    let ran = std::fs::read_to_string(&runs).expect("runs");
    assert_eq!(ran.lines().count(), 1, "a cached value ran the command");
}

#[test]
fn a_failing_command_stores_nothing_and_passes_its_output_and_code_on() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("compute-fail");

    let out = finish(start(&server, &name, &[], "printf partial; exit 3"));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(text(&out.stdout), "partial");
    assert!(!exists(&server, &value_key(&name)), "a failure was stored");
    assert!(
        !exists(&server, &lock_key(&name)),
        "the lock was not given up"
    );

    let out = finish(start(&server, &name, &[], "printf fine"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "fine");
    assert!(exists(&server, &value_key(&name)));
}

#[test]
fn output_over_the_value_limit_is_refused_and_stores_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("compute-long");
    let out = finish(start(&server, &name, &[], "head -c 1000001 /dev/zero"));
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(out.stdout.is_empty(), "printed {} bytes", out.stdout.len());
    assert!(text(&out.stderr).contains("too long"), "{out:?}");
    assert!(!exists(&server, &value_key(&name)));
    assert!(!exists(&server, &lock_key(&name)));

    // At the limit it is a value.
    let out = finish(start(&server, &name, &[], "head -c 1000000 /dev/zero"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.len(), 1_000_000);
}

#[test]
fn a_lock_lost_while_computing_stores_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("compute-lost");
    let dir = tempfile::tempdir().expect("temp dir");
    let (runs, go) = (dir.path().join("runs"), dir.path().join("go"));
    let computer = start(
        &server,
        &name,
        &[],
        &waiting_computation(&runs, &go, "late"),
    );
    wait_for("the caller to take the lock", LIMIT, || {
        exists(&server, &lock_key(&name)).then_some(())
    });
    // An operator resets the lock while the command runs.
    server.raw().ok(&["DEL", &lock_key(&name)]);
    std::fs::write(&go, "").expect("let the computation end");
    let out = finish(computer);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        !exists(&server, &value_key(&name)),
        "a computation whose lock was lost stored its value"
    );
}

#[test]
fn a_wait_that_runs_out_prints_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("compute-wait");
    let dir = tempfile::tempdir().expect("temp dir");
    let (runs, go) = (dir.path().join("runs"), dir.path().join("go"));
    let script = waiting_computation(&runs, &go, "slow");
    let computer = start(&server, &name, &[], &script);
    wait_for("the first caller to take the lock", LIMIT, || {
        exists(&server, &lock_key(&name)).then_some(())
    });
    let out = finish(start(&server, &name, &["--wait", "200ms"], &script));
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    std::fs::write(&go, "").expect("let the computation end");
    let out = finish(computer);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "slow");
    let ran = std::fs::read_to_string(&runs).expect("runs");
    assert_eq!(ran.lines().count(), 1, "the waiter ran the command");
}

#[test]
fn a_lock_compute_cannot_use_is_refused_before_anything_runs() {
    require_redis!();
    let servers = [RedisServer::start(), RedisServer::start()];
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    let script = format!("touch '{}'", ran.display());
    let second = servers[1].url();
    for args in [
        vec!["--redis", second.as_str()],
        vec!["--layout", "redis-py"],
        vec!["--no-scripts"],
    ] {
        let mut all = args.clone();
        all.extend_from_slice(&[
            "compute",
            "--name",
            "refused",
            "--value-ttl",
            "1m",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let out =
            support::run_bounded(distlock(&servers[0].url(), &all), LIMIT).expect("run distlock");
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).contains("get-or-compute runs on one node"),
            "{args:?}: {out:?}"
        );
        assert!(!ran.exists(), "{args:?}: the command ran");
    }
}
