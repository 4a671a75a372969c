//! The `distlock` command's exit codes and messages against real `redis-server` processes:
//! each documented code for the failure it names (`exit.rs` in the binary holds the table),
//! output that cannot be written (a closed pipe, a full disk) handled instead of panicking,
//! and messages that name what went wrong without the server's script internals or colour
//! codes meant for a terminal.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{
    KillOnDrop, RedisServer, distlock, require_redis, run_bounded, show, stderr, unique_name,
};

/// Every run in these tests ends within this, or the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn run(command: Command) -> Output {
    run_bounded(command, RUN_TIMEOUT).expect("run distlock")
}

/// Runs `command` with stdout connected to `stdout` (stdin empty, stderr captured), bounded.
fn run_with_stdout(mut command: Command, stdout: Stdio) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn distlock");
    let mut child = KillOnDrop(child);
    let status = support::wait_for("distlock to exit", RUN_TIMEOUT, || {
        child.0.try_wait().expect("status")
    });
    let err = support::take_stderr(&mut child.0).into_bytes();
    Output {
        status,
        stdout: Vec::new(),
        stderr: err,
    }
}

/// A pipe whose reading end is already closed: every write to it fails with `EPIPE`.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

/// An acquire whose token cannot be printed (a closed pipe, or a full disk) would leave a
/// lock nobody can release until its TTL: it releases it and exits 74, and never panics.
#[test]
fn an_acquire_whose_token_cannot_be_written_releases_the_lock_and_exits_74() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let mut raw = server.raw();
    for (what, stdout) in [
        ("a closed pipe", closed_pipe()),
        (
            "a full disk",
            Stdio::from(std::fs::File::create("/dev/full").expect("open /dev/full")),
        ),
    ] {
        let name = unique_name("unwritable");
        let out = run_with_stdout(
            distlock(&url, &["acquire", "--name", &name, "--ttl", "60s"]),
            stdout,
        );
        assert_eq!(out.status.code(), Some(74), "{what}: {}", show(&out));
        assert!(
            stderr(&out).contains("releasing the lock"),
            "{what}: {}",
            show(&out)
        );
        assert_eq!(
            raw.ok(&["EXISTS", &support::lock_key(&name)]).int(),
            Some(0),
            "{what}: the lock whose token nobody saw must be released"
        );
    }
}

/// Other commands whose result cannot be written say so and exit 74; a closed stderr is no
/// reason to panic either.
#[test]
fn results_that_cannot_be_written_exit_74_and_a_closed_stderr_changes_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("status-pipe");
    let out = run_with_stdout(distlock(&url, &["status", "--name", &name]), closed_pipe());
    assert_eq!(out.status.code(), Some(74), "{}", show(&out));

    // A held lock, asked for with stderr closed: the answer is still 75, not a panic's 101.
    let held = run(distlock(
        &url,
        &["acquire", "--name", &name, "--ttl", "60s"],
    ));
    assert_eq!(held.status.code(), Some(0), "{}", show(&held));
    let mut second = distlock(&url, &["acquire", "--name", &name, "--no-wait"]);
    second
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(closed_pipe());
    let status = second.status().expect("run distlock");
    assert_eq!(status.code(), Some(75));
}

/// Found against real servers: a waiter whose majority of nodes died while it waited exited
/// 75 ("held by another owner") at its deadline. No quorum is left to hold anything: 69.
#[test]
fn a_waiter_whose_majority_dies_mid_wait_exits_69() {
    require_redis!();
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let name = unique_name("majority-dies");
    let with_nodes = |args: &[&str]| {
        let mut command = distlock(&urls[0], &[]);
        for url in &urls[1..] {
            command.arg("--redis").arg(url);
        }
        command.args(args);
        command
    };
    let held = run(with_nodes(&["acquire", "--name", &name, "--ttl", "60s"]));
    assert_eq!(held.status.code(), Some(0), "{}", show(&held));

    let mut waiter = with_nodes(&["acquire", "--name", &name, "--wait", "4s"]);
    waiter
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut waiter = KillOnDrop(waiter.spawn().expect("spawn the waiter"));
    // It waits on one node's wake-up list; two others die meanwhile.
    let blocked = support::wait_for("the waiter to block", Duration::from_secs(10), || {
        servers.iter().position(|s| s.blocked_clients() > 0)
    });
    let mut killed = 0;
    for (i, server) in servers.iter_mut().enumerate() {
        if i != blocked && killed < 2 {
            server.stop();
            killed += 1;
        }
    }
    let status = support::wait_for("the waiter to give up", RUN_TIMEOUT, || {
        waiter.0.try_wait().expect("status")
    });
    let err = support::take_stderr(&mut waiter.0);
    assert_eq!(
        status.code(),
        Some(69),
        "two of three nodes died mid-wait: {err}"
    );
}

/// Refusals by the server have their own codes: 76 for a command refused (a key of the
/// wrong type), 77 for rights the ACL user lacks. The message names which of the lock's keys
/// is wrong, and carries none of the server's script internals.
#[test]
fn server_refusals_exit_76_or_77_and_name_the_key() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let mut raw = server.raw();

    let name = unique_name("fence-hash");
    raw.ok(&[
        "HSET",
        &format!("{}:fence", support::lock_key(&name)),
        "f",
        "v",
    ]);
    let out = run(distlock(&url, &["acquire", "--name", &name, "--fenced"]));
    assert_eq!(out.status.code(), Some(76), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("fence key"), "{err}");
    assert!(
        !err.contains("lock key"),
        "the fence key is wrong, not the lock key: {err}"
    );
    assert!(
        !err.contains("@user_script"),
        "script internals leak: {err}"
    );
    assert_eq!(
        raw.ok(&["EXISTS", &support::lock_key(&name)]).int(),
        Some(0),
        "a refused acquire takes nothing"
    );

    let name = unique_name("lock-list");
    raw.ok(&["LPUSH", &support::lock_key(&name), "x"]);
    let out = run(distlock(&url, &["acquire", "--name", &name, "--fenced"]));
    assert_eq!(out.status.code(), Some(76), "{}", show(&out));
    assert!(stderr(&out).contains("lock key"), "{}", show(&out));

    raw.ok(&["ACL", "SETUSER", "nokeys", "on", ">secret", "+@all"]);
    let port = server.port();
    let name = unique_name("noperm");
    let out = run(distlock(
        &format!("redis://nokeys:secret@127.0.0.1:{port}"),
        &["acquire", "--name", &name],
    ));
    assert_eq!(out.status.code(), Some(77), "{}", show(&out));
    assert!(stderr(&out).contains("NOPERM"), "{}", show(&out));

    let out = run(distlock(
        &format!("redis://nobody:wrong@127.0.0.1:{port}"),
        &["acquire", "--name", &name],
    ));
    assert_eq!(out.status.code(), Some(77), "{}", show(&out));
}

/// A TTL the lock cannot use is refused up front, with the real minimum, before anything is
/// sent.
#[test]
fn a_ttl_below_the_real_minimum_is_refused_up_front() {
    require_redis!();
    let server = RedisServer::start();
    let before = server.info_number("stats", "total_commands_processed");
    for ttl in ["1ms", "3ms"] {
        let out = run(distlock(
            &server.url(),
            &["acquire", "--name", "short", "--ttl", ttl],
        ));
        assert_eq!(out.status.code(), Some(64), "{ttl}: {}", show(&out));
        assert!(stderr(&out).contains("4 ms"), "{ttl}: {}", show(&out));
    }
    // The INFO command itself is the only one counted in between.
    let after = server.info_number("stats", "total_commands_processed");
    assert_eq!(after, before + 1, "nothing may be sent for a refused TTL");
    // 4 ms is taken and sent. Its validity is 1 ms, so on a loaded machine the acquire may
    // honestly report that it ran out before it could answer (75): either way, not a usage
    // error, and the server saw the attempt.
    let out = run(distlock(
        &server.url(),
        &["acquire", "--name", "short", "--ttl", "4ms"],
    ));
    assert!(matches!(out.status.code(), Some(0 | 75)), "{}", show(&out));
    assert!(
        server.info_number("stats", "total_commands_processed") > after + 1,
        "a 4 ms TTL is sent to the server"
    );
}

/// Colour codes are for terminals: written to a pipe or a file they are noise.
#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    require_redis!();
    let server = RedisServer::start();
    let mut command = distlock(
        &server.url(),
        &["acquire", "--name", &unique_name("colour")],
    );
    command.env("RUST_LOG", "trace");
    let out = run(command);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = stderr(&out);
    assert!(!err.is_empty(), "trace logging should say something");
    assert!(!err.contains('\u{1b}'), "escape codes on a pipe: {err:?}");
}
