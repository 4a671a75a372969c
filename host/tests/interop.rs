//! distlock next to the Python lock libraries it offers key layouts for, on a real
//! `redis-server`, with real Python processes (`support::python`): redis-py's `Lock`
//! ([`KeyLayout::redis_py`]) and python-redis-lock ([`KeyLayout::python_redis_lock`]).
//!
//! Each library and distlock exclude each other on the same name, either side gets the lock
//! after the other releases it, a python-redis-lock release wakes a blocked distlock waiter
//! (and the other way round) at once rather than at a retry or TTL, tokens hand over across
//! libraries, and the `distlock` command works with `--layout`.

mod support;

use std::time::{Duration, Instant};

use distlock_host::{Client, ConnectOptions, Error, KeyLayout, RetryPolicy};
use support::python::{Library, PyLock, Python, require_python};
use support::{
    RedisServer, blocking, distlock, require_redis, run_bounded, show, unique_name, until,
    until_blocked,
};

/// How long the Python side's keys live: far longer than any test, so nothing expires.
const PY_TTL_SECS: u64 = 60;
/// A wake-up counts as prompt below this (the retry cap and the TTL are far above it).
const PROMPT: Duration = Duration::from_millis(500);

fn layout_of(library: Library) -> KeyLayout {
    match library {
        Library::RedisPy => KeyLayout::redis_py(),
        Library::PythonRedisLock => KeyLayout::python_redis_lock(),
    }
}

/// The key the Python library keeps the lock in.
fn lock_key(library: Library, name: &str) -> String {
    match library {
        Library::RedisPy => name.to_owned(),
        Library::PythonRedisLock => format!("lock:{name}"),
    }
}

async fn client(url: &str, library: Library) -> Client {
    Client::connect_with([url], ConnectOptions::default(), layout_of(library))
        .await
        .expect("connect")
}

fn start_python(python: &Python, library: Library, url: &str, name: &str) -> PyLock {
    blocking(|| PyLock::start(python, library, url, name, PY_TTL_SECS))
}

fn ask(py: &mut PyLock, command: &str) -> String {
    blocking(|| py.ask(command))
}

/// What the server holds at `key` (`None`: no such key).
fn get(server: &RedisServer, key: &str) -> Option<String> {
    blocking(|| server.raw().ok(&["GET", key]).text())
}

/// A Python holder excludes distlock and the other way round; after either releases, the
/// other gets the lock; a distlock waiter gets it after the Python release.
async fn exclusion_both_ways(library: Library) {
    let python = require_python!();
    eprintln!("python: {}", python.versions);
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("exclusion");
    let key = lock_key(library, &name);
    let client = client(&url, library).await;
    let mut py = start_python(python, library, &url, &name);

    // Python holds: the library's own key holds its token; distlock sees it and is refused.
    assert_eq!(ask(&mut py, "try"), "acquired");
    let py_token = blocking(|| py.token());
    assert_eq!(get(&server, &key).as_deref(), Some(py_token.as_str()));
    let err = client
        .lock(&name)
        .try_acquire()
        .await
        .expect_err("a Python holder excludes distlock");
    assert!(err.is_not_acquired(), "{err:?}");
    let status = client.status(&name).await.expect("status");
    assert_eq!(status.holder(), Some(py_token.as_str()));

    // Python releases: distlock gets it, in the same key.
    assert_eq!(ask(&mut py, "release"), "released");
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(PY_TTL_SECS))
        .try_acquire()
        .await
        .expect("distlock acquires after the Python release");
    assert_eq!(get(&server, &key).as_deref(), Some(guard.token()));

    // distlock holds: Python is refused; after distlock releases, Python gets it.
    assert_eq!(ask(&mut py, "try"), "busy");
    guard.release().await.expect("release");
    assert_eq!(ask(&mut py, "try"), "acquired");

    // A distlock waiter gets the lock once Python lets go.
    let waiter = {
        let client = client.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let guard = client
                .lock(&name)
                .ttl(Duration::from_secs(PY_TTL_SECS))
                .wait(Duration::from_secs(10))
                .acquire()
                .await;
            (guard, Instant::now())
        })
    };
    // It tried, found the lock held and blocked on a wake-up list (or, wrongly, got in).
    until(
        "the distlock waiter to block on a wake-up list",
        Duration::from_secs(5),
        || waiter.is_finished() || blocking(|| server.blocked_clients()) == 1,
    )
    .await;
    assert!(!waiter.is_finished(), "the waiter got a held lock");
    let released = Instant::now();
    assert_eq!(ask(&mut py, "release"), "released");
    let (guard, got) = waiter.await.expect("waiter task");
    let guard = guard.expect("the waiter acquires after the Python release");
    eprintln!(
        "{library:?}: distlock waiter acquired {:?} after the Python release",
        got - released
    );
    // redis-py pushes no wake-up: the waiter notices within its retry cap (500 ms).
    assert!(
        got - released < Duration::from_secs(2),
        "{:?}",
        got - released
    );
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_and_distlock_exclude_each_other() {
    require_redis!();
    exclusion_both_ways(Library::RedisPy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redis_lock_and_distlock_exclude_each_other() {
    require_redis!();
    exclusion_both_ways(Library::PythonRedisLock).await;
}

/// A distlock waiter blocked on `lock-signal:NAME` (wait 10 s, TTL 60 s, retry cap 5 s) is
/// woken by python-redis-lock's release within a round trip, not at its next retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redis_lock_release_wakes_a_distlock_waiter() {
    require_redis!();
    let python = require_python!();
    let library = Library::PythonRedisLock;
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("wake-distlock");
    let client = client(&url, library).await;
    let mut py = start_python(python, library, &url, &name);
    assert_eq!(ask(&mut py, "try"), "acquired");

    let retry = RetryPolicy {
        cap: distlock_core::Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let waiter = {
        let client = client.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let guard = client
                .lock(&name)
                .ttl(Duration::from_secs(PY_TTL_SECS))
                .wait(Duration::from_secs(10))
                .retry(retry)
                .acquire()
                .await;
            (guard, Instant::now())
        })
    };
    // Blocked in BLPOP on python-redis-lock's own list, for up to the 5 s cap.
    until_blocked(&server, 1).await;
    let released = Instant::now();
    assert_eq!(ask(&mut py, "release"), "released");
    let (guard, got) = waiter.await.expect("waiter task");
    let guard = guard.expect("the waiter acquires");
    let woke = got - released;
    eprintln!("distlock waiter woken {woke:?} after python-redis-lock's release");
    assert!(
        woke < PROMPT,
        "woken {woke:?} after the release: not by the signal"
    );
    assert_eq!(
        get(&server, &format!("lock:{name}")).as_deref(),
        Some(guard.token())
    );
    guard.release().await.expect("release");
}

/// A python-redis-lock waiter (`acquire(blocking=True, timeout=10)`, blocked in `BLPOP`) is
/// woken by distlock's release at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distlock_release_wakes_a_python_redis_lock_waiter() {
    require_redis!();
    let python = require_python!();
    let library = Library::PythonRedisLock;
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("wake-python");
    let client = client(&url, library).await;
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(PY_TTL_SECS))
        .try_acquire()
        .await
        .expect("acquire");
    let mut py = start_python(python, library, &url, &name);
    blocking(|| py.send("wait 10"));
    until_blocked(&server, 1).await;

    let released = Instant::now();
    guard.release().await.expect("release");
    let answer = blocking(|| py.expect(Duration::from_secs(15)));
    let woke = released.elapsed();
    assert_eq!(answer, "acquired");
    eprintln!("python-redis-lock waiter acquired {woke:?} after distlock's release");
    assert!(
        woke < PROMPT,
        "woken {woke:?} after the release: not by the signal"
    );
    let py_token = blocking(|| py.token());
    assert_eq!(
        get(&server, &format!("lock:{name}")).as_deref(),
        Some(py_token.as_str())
    );
}

/// A token hands over across libraries: `Client::release` with the Python lock's token frees
/// it, and Python releases a distlock lock with distlock's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_hand_over_across_libraries() {
    require_redis!();
    let python = require_python!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    for library in [Library::RedisPy, Library::PythonRedisLock] {
        let name = unique_name("hand-over");
        let client = client(&url, library).await;
        let mut py = start_python(python, library, &url, &name);

        assert_eq!(ask(&mut py, "try"), "acquired");
        let py_token = blocking(|| py.token());
        client
            .release(&name, &py_token, false)
            .await
            .unwrap_or_else(|e| panic!("{library:?}: release with the Python token: {e}"));
        assert_eq!(get(&server, &lock_key(library, &name)), None);
        // The Python lock object no longer holds it.
        assert!(
            ask(&mut py, "release").starts_with("error "),
            "{library:?}: Python released a lock it no longer held"
        );

        let guard = client
            .lock(&name)
            .ttl(Duration::from_secs(PY_TTL_SECS))
            .try_acquire()
            .await
            .expect("acquire");
        assert_eq!(
            ask(&mut py, &format!("release-as {}", guard.token())),
            "released"
        );
        assert_eq!(get(&server, &lock_key(library, &name)), None);
        let err = guard
            .release()
            .await
            .expect_err("the guard no longer holds it");
        assert!(
            matches!(err, Error::Lock(distlock_core::Error::NotHeld)),
            "{err:?}"
        );
        assert_eq!(ask(&mut py, "try"), "acquired", "{library:?}");
    }
}

/// `distlock --layout python-redis-lock exec` runs the command while the lock is free and
/// exits 75 while a Python process holds it (also with `DISTLOCK_LAYOUT`).
#[test]
fn cli_exec_shares_the_lock_with_python_redis_lock() {
    require_redis!();
    let python = require_python!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("cli-exec");
    let exec = |layout_by_env: bool| {
        let mut command = distlock(&url, &[]);
        if layout_by_env {
            command.env("DISTLOCK_LAYOUT", "python-redis-lock");
        } else {
            command.args(["--layout", "python-redis-lock"]);
        }
        command.args(["exec", "--name", &name, "--", "true"]);
        run_bounded(command, Duration::from_secs(20)).expect("run distlock")
    };
    let out = exec(false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let mut py = PyLock::start(python, Library::PythonRedisLock, &url, &name, PY_TTL_SECS);
    assert_eq!(py.ask("try"), "acquired");
    for by_env in [false, true] {
        let out = exec(by_env);
        assert_eq!(out.status.code(), Some(75), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("held by another owner"),
            "{}",
            show(&out)
        );
    }
    assert_eq!(py.ask("release"), "released");
    let out = exec(true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// Under the Python layouts `status` shows the Python holder, `reset --name` frees it and
/// wakes a python-redis-lock waiter, `reset --all` is refused without touching a key, and
/// `--prefix` is a usage error.
#[test]
fn cli_status_and_reset_under_the_python_layouts() {
    require_redis!();
    let python = require_python!();
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str]| {
        run_bounded(distlock(&url, args), Duration::from_secs(20)).expect("run distlock")
    };
    server.raw().ok(&["SET", "unrelated", "user data"]);
    for (library, layout) in [
        (Library::RedisPy, "redis-py"),
        (Library::PythonRedisLock, "python-redis-lock"),
    ] {
        let name = unique_name("cli-admin");
        let key = lock_key(library, &name);
        let mut holder = PyLock::start(python, library, &url, &name, PY_TTL_SECS);
        assert_eq!(holder.ask("try"), "acquired");
        let token = holder.token();

        let out = run(&["--layout", layout, "status", "--name", &name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
        assert_eq!(status["holder"], token.as_str(), "{}", show(&out));

        let out = run(&["--layout", layout, "reset", "--all", "--yes"]);
        assert_eq!(out.status.code(), Some(64), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("private prefix"),
            "{}",
            show(&out)
        );
        assert_eq!(
            server.raw().ok(&["GET", &key]).text().as_deref(),
            Some(token.as_str())
        );
        assert_eq!(
            server.raw().ok(&["GET", "unrelated"]).text().as_deref(),
            Some("user data")
        );

        let out = run(&[
            "--layout", layout, "--prefix", "x:", "status", "--name", &name,
        ]);
        assert_eq!(out.status.code(), Some(64), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("--prefix applies to the tagged layout only"),
            "{}",
            show(&out)
        );

        // A waiter blocked with python-redis-lock gets the lock as soon as it is reset.
        let mut waiter = (library == Library::PythonRedisLock).then(|| {
            let mut waiter = PyLock::start(python, library, &url, &name, PY_TTL_SECS);
            waiter.send("wait 10");
            support::wait_for("the Python waiter to block", Duration::from_secs(5), || {
                (server.blocked_clients() == 1).then_some(())
            });
            waiter
        });
        let reset_at = Instant::now();
        let out = run(&["--layout", layout, "reset", "--name", &name]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        if let Some(waiter) = &mut waiter {
            assert_eq!(waiter.expect(Duration::from_secs(15)), "acquired");
            let woke = reset_at.elapsed();
            eprintln!("python-redis-lock waiter acquired {woke:?} after the reset started");
            assert!(woke < Duration::from_secs(2), "{woke:?}");
            assert_eq!(server.raw().ok(&["GET", &key]).text(), Some(waiter.token()));
        } else {
            assert_eq!(server.raw().ok(&["GET", &key]).text(), None);
        }
    }
    assert_eq!(
        server.raw().ok(&["GET", "unrelated"]).text().as_deref(),
        Some("user data")
    );
}
