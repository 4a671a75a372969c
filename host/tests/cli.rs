//! The `distlock` command against real `redis-server` processes: mutual exclusion between OS
//! processes, a SIGKILLed holder's lock expiring at its TTL, and the exit codes and messages
//! of `acquire`, `release`, `exec`, `reset` and `demo`; `--fair` queueing and hand-off.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::holders::ExecHolder;
use support::{
    KillOnDrop, RedisServer, distlock, require_redis, run_bounded, show, stderr, stdout,
    unique_name, wait_for,
};

/// Every CLI run in these tests finishes within this, or the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

fn run(url: &str, args: &[&str]) -> std::process::Output {
    run_bounded(distlock(url, args), RUN_TIMEOUT).expect("run distlock")
}

/// 8 processes × 5 runs of `distlock exec` each do a racy read-sleep-write increment of a
/// counter file; with the lock, no update is lost and no two critical sections overlap.
#[test]
fn exec_excludes_across_processes() {
    require_redis!();
    const PROCS: usize = 8;
    const ITERATIONS: usize = 5;
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("mutex");
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = dir.path().join("counter");
    let log = dir.path().join("log");
    std::fs::write(&counter, "0\n").expect("write counter");
    // Racy on purpose: two holders at once would both read n and both write n+1. The log
    // records entries and exits, which must strictly alternate.
    let script = r#"echo "enter $$" >> "$2"; n=$(cat "$1"); sleep 0.05; echo $((n + 1)) > "$1"; echo "leave $$" >> "$2""#;
    let barrier = Arc::new(Barrier::new(PROCS));
    let started = Instant::now();
    let workers: Vec<_> = (0..PROCS)
        .map(|_| {
            let (url, name, barrier) = (url.clone(), name.clone(), Arc::clone(&barrier));
            let (counter, log) = (counter.display().to_string(), log.display().to_string());
            thread::spawn(move || {
                barrier.wait();
                let mut codes = Vec::new();
                for _ in 0..ITERATIONS {
                    let out = run(
                        &url,
                        &[
                            "exec", "--name", &name, "--ttl", "10s", "--wait", "60s", "--", "sh",
                            "-c", script, "sh", &counter, &log,
                        ],
                    );
                    codes.push((out.status.code(), show(&out)));
                }
                codes
            })
        })
        .collect();
    for worker in workers {
        for (code, shown) in worker.join().expect("worker thread") {
            assert_eq!(code, Some(0), "distlock exec failed:\n{shown}");
        }
    }
    let count: u64 = std::fs::read_to_string(&counter)
        .expect("read counter")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(
        count,
        (PROCS * ITERATIONS) as u64,
        "updates were lost: the lock did not exclude"
    );
    let log = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2 * PROCS * ITERATIONS, "log:\n{log}");
    for pair in lines.chunks(2) {
        let (enter, leave) = (pair[0], pair[1]);
        assert!(
            enter.starts_with("enter ") && leave.starts_with("leave ") && enter[6..] == leave[6..],
            "critical sections overlapped ({enter:?} then {leave:?}); log:\n{log}"
        );
    }
    eprintln!(
        "{} exclusive critical sections in {:?}",
        PROCS * ITERATIONS,
        started.elapsed()
    );
}

/// A holder killed with SIGKILL neither releases nor renews: the next acquirer gets the lock
/// when the key expires, not before, and not much after.
#[test]
fn sigkilled_holder_lock_frees_at_ttl() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("killed");
    // The lock's command is killed at the end however the test goes (it is not distlock's
    // child any more once distlock is dead).
    let mut holder = ExecHolder::spawn(&url, &name, &["--ttl", "2s"], "exec sleep 60");

    // Held once `status` names a holder.
    let token = wait_for(
        "distlock status to show a holder",
        Duration::from_secs(10),
        || {
            let out = run(&url, &["status", "--name", &name, "--json"]);
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            status["holder"].as_str().map(str::to_owned)
        },
    );
    holder.command_pid();
    assert!(!token.is_empty());

    // Kill just after a renewal (the key's TTL back near 2 s), so the wait is long enough to
    // tell "at the TTL" from "at once".
    let mut raw = server.raw();
    let key = support::lock_key(&name);
    wait_for(
        "a fresh renewal (PTTL > 1800 ms)",
        Duration::from_secs(10),
        || (raw.ok(&["PTTL", &key]).int()? > 1800).then_some(()),
    );
    holder.distlock.0.kill().expect("SIGKILL distlock");
    let killed = Instant::now();
    let _ = holder.distlock.0.wait();
    let pttl_after_kill = raw.ok(&["PTTL", &key]).int().expect("PTTL");
    assert!(
        pttl_after_kill > 1000,
        "the key should outlive its killed holder for a while: PTTL {pttl_after_kill}"
    );

    let out = run(
        &url,
        &["acquire", "--name", &name, "--ttl", "10s", "--wait", "10s"],
    );
    let elapsed = killed.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "acquire after the holder died:\n{}",
        show(&out)
    );
    let new_token = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert_ne!(new_token, token, "a new token holds it");
    assert!(
        elapsed >= Duration::from_millis(1500),
        "acquired {elapsed:?} after the kill: before the killed holder's key (PTTL {pttl_after_kill} ms) expired"
    );
    assert!(
        elapsed
            >= Duration::from_millis(
                u64::try_from(pttl_after_kill)
                    .unwrap_or(0)
                    .saturating_sub(100)
            ),
        "acquired {elapsed:?} after the kill, but the key had {pttl_after_kill} ms left"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "acquired only {elapsed:?} after the kill; the TTL was 2 s"
    );
    eprintln!("acquired {elapsed:?} after the kill; the key had {pttl_after_kill} ms left");
}

/// `exec` renews the lock while the command runs; when the lock is lost (an operator reset
/// it), the command is killed and `exec` exits 75.
#[test]
fn exec_kills_the_command_when_the_lock_is_lost() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("lost");
    let holder = distlock(
        &url,
        &["exec", "--name", &name, "--ttl", "3s", "--", "sleep", "60"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn distlock exec");
    let mut holder = KillOnDrop(holder);
    let mut raw = server.raw();
    let key = support::lock_key(&name);
    wait_for("exec to hold the lock", Duration::from_secs(10), || {
        raw.ok(&["GET", &key]).text()
    });
    // Renewed past its TTL: still held after 4 s.
    thread::sleep(Duration::from_secs(4));
    assert!(
        holder.0.try_wait().expect("status").is_none(),
        "exec ended while holding a renewed lock"
    );
    assert!(
        raw.ok(&["GET", &key]).text().is_some(),
        "the lock was not renewed"
    );

    let reset = run(&url, &["reset", "--name", &name]);
    assert_eq!(reset.status.code(), Some(0), "{}", show(&reset));
    let reset_at = Instant::now();
    let status = wait_for("exec to notice the loss", Duration::from_secs(10), || {
        holder.0.try_wait().expect("status")
    });
    assert_eq!(
        status.code(),
        Some(75),
        "exec should exit 75 when the lock is lost"
    );
    assert!(
        reset_at.elapsed() < Duration::from_secs(3),
        "noticed the loss only after {:?}",
        reset_at.elapsed()
    );
    let err = support::take_stderr(&mut holder.0);
    assert!(err.contains("lost"), "stderr: {err}");
}

#[test]
fn acquire_no_wait_on_a_held_lock_exits_75() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("busy");
    let first = run(&url, &["acquire", "--name", &name, "--ttl", "30s"]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let token = stdout(&first).trim().to_owned();
    assert!((16..=64).contains(&token.len()), "token {token:?}");

    let started = Instant::now();
    let second = run(
        &url,
        &["acquire", "--name", &name, "--ttl", "30s", "--no-wait"],
    );
    assert_eq!(second.status.code(), Some(75), "{}", show(&second));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--no-wait waited {:?}",
        started.elapsed()
    );
    let err = stderr(&second);
    assert!(
        err.contains("lock is held by another owner"),
        "stderr: {err}"
    );
    assert!(
        stdout(&second).trim().is_empty(),
        "no token printed: {}",
        stdout(&second)
    );

    // JSON output of a successful acquire, for scripts.
    let other = unique_name("json");
    let json = run(
        &url,
        &[
            "acquire", "--name", &other, "--ttl", "30s", "--fenced", "--json",
        ],
    );
    assert_eq!(json.status.code(), Some(0), "{}", show(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["name"], other.as_str());
    assert!(
        value["token"].as_str().is_some_and(|t| t.len() >= 16),
        "{value}"
    );
    assert_eq!(value["fence"], 1, "{value}");
}

#[test]
fn release_with_a_wrong_token_is_refused() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("release");
    let acquired = run(&url, &["acquire", "--name", &name, "--ttl", "30s"]);
    assert_eq!(acquired.status.code(), Some(0), "{}", show(&acquired));
    let token = stdout(&acquired).trim().to_owned();

    let wrong = run(
        &url,
        &[
            "release",
            "--name",
            &name,
            "--token",
            "not-the-holders-token",
        ],
    );
    assert_ne!(wrong.status.code(), Some(0), "{}", show(&wrong));
    assert!(
        stderr(&wrong).contains("does not hold the lock"),
        "{}",
        show(&wrong)
    );
    // Still held by the real token.
    let held = server.raw().ok(&["GET", &support::lock_key(&name)]).text();
    assert_eq!(held.as_deref(), Some(token.as_str()));

    let right = run(&url, &["release", "--name", &name, "--token", &token]);
    assert_eq!(right.status.code(), Some(0), "{}", show(&right));
    assert_eq!(stdout(&right).trim(), "released");
    assert_eq!(
        server
            .raw()
            .ok(&["EXISTS", &support::lock_key(&name)])
            .int(),
        Some(0)
    );
    // Releasing twice: the token no longer holds it.
    let again = run(&url, &["release", "--name", &name, "--token", &token]);
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));
    assert!(
        stderr(&again).contains("does not hold the lock"),
        "{}",
        show(&again)
    );
}

/// `--fair`: a second `acquire` queues; `release --fair` hands the lock straight to it (its
/// token is what the key holds when it returns). Fair mode where it cannot work is refused.
#[test]
fn fair_acquire_queues_and_release_hands_over() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("fair");
    let first = run(
        &url,
        &["acquire", "--name", &name, "--ttl", "30s", "--fair"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let token = stdout(&first).trim().to_owned();

    let waiter = {
        let (url, name) = (url.clone(), name.clone());
        thread::spawn(move || {
            run(
                &url,
                &[
                    "acquire", "--name", &name, "--ttl", "30s", "--wait", "20s", "--fair",
                ],
            )
        })
    };
    let queue = format!("{}:queue", support::lock_key(&name));
    wait_for(
        "the second acquire to queue",
        Duration::from_secs(10),
        || (server.raw().ok(&["ZCARD", &queue]).int() == Some(1)).then_some(()),
    );
    let released = run(
        &url,
        &["release", "--name", &name, "--token", &token, "--fair"],
    );
    assert_eq!(released.status.code(), Some(0), "{}", show(&released));
    let second = waiter.join().expect("waiter");
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    let second_token = stdout(&second).trim().to_owned();
    assert_ne!(second_token, token);
    let held = server.raw().ok(&["GET", &support::lock_key(&name)]).text();
    assert_eq!(held.as_deref(), Some(second_token.as_str()));

    let refused = run(
        &url,
        &[
            "--layout", "redis-py", "acquire", "--name", &name, "--ttl", "30s", "--fair",
        ],
    );
    assert_ne!(refused.status.code(), Some(0), "{}", show(&refused));
    assert!(
        stderr(&refused).contains("fair mode is single-node only"),
        "{}",
        show(&refused)
    );
}

#[test]
fn exec_exits_with_the_commands_code() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("exec");
    let out = run(
        &url,
        &[
            "exec", "--name", &name, "--ttl", "5s", "--", "sh", "-c", "exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let out = run(
        &url,
        &["exec", "--name", &name, "--ttl", "5s", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Killed by a signal: 128 + the signal, as shells report it.
    let out = run(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--ttl",
            "5s",
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", show(&out));
    // The command sees the token, and the lock is free again afterwards.
    let out = run(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--ttl",
            "5s",
            "--",
            "sh",
            "-c",
            r#"printf %s "$DISTLOCK_TOKEN""#,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).len() >= 16,
        "DISTLOCK_TOKEN {:?}",
        stdout(&out)
    );
    assert_eq!(
        server
            .raw()
            .ok(&["EXISTS", &support::lock_key(&name)])
            .int(),
        Some(0),
        "released after exec"
    );
    // A command that cannot be run: 127, and the lock is released.
    let out = run(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--ttl",
            "5s",
            "--",
            "/nonexistent/command",
        ],
    );
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert_eq!(
        server
            .raw()
            .ok(&["EXISTS", &support::lock_key(&name)])
            .int(),
        Some(0),
        "released after exec"
    );
    // Held elsewhere and no wait: 75, and the command does not run.
    let held = run(&url, &["acquire", "--name", &name, "--ttl", "30s"]);
    assert_eq!(held.status.code(), Some(0), "{}", show(&held));
    let out = run(
        &url,
        &["exec", "--name", &name, "--ttl", "5s", "--", "echo", "ran"],
    );
    assert_eq!(out.status.code(), Some(75), "{}", show(&out));
    assert!(!stdout(&out).contains("ran"), "{}", show(&out));
}

#[test]
fn reset_all_needs_yes() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let names = [unique_name("reset-a"), unique_name("reset-b")];
    for name in &names {
        let out = run(
            &url,
            &["acquire", "--name", name, "--ttl", "60s", "--fenced"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    let refused = run(&url, &["reset", "--all"]);
    assert_eq!(refused.status.code(), Some(64), "{}", show(&refused));
    assert!(stderr(&refused).contains("--yes"), "{}", show(&refused));
    let mut raw = server.raw();
    for name in &names {
        assert_eq!(
            raw.ok(&["EXISTS", &support::lock_key(name)]).int(),
            Some(1),
            "reset without --yes deleted {name}"
        );
    }

    let done = run(&url, &["reset", "--all", "--yes"]);
    assert_eq!(done.status.code(), Some(0), "{}", show(&done));
    assert!(stdout(&done).contains("deleted 2 keys"), "{}", show(&done));
    for name in &names {
        assert_eq!(
            raw.ok(&["EXISTS", &support::lock_key(name)]).int(),
            Some(0),
            "{name} not reset"
        );
        // Fencing counters survive a reset.
        let fence = format!("{}:fence", support::lock_key(name));
        assert_eq!(raw.ok(&["GET", &fence]).text().as_deref(), Some("1"));
        let status = run(&url, &["status", "--name", name]);
        assert!(stdout(&status).starts_with("not held"), "{}", show(&status));
    }
    // The locks can be had again.
    let again = run(
        &url,
        &["acquire", "--name", &names[0], "--no-wait", "--fenced"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(stdout(&again).contains("fence 2"), "{}", show(&again));
}

#[test]
fn demo_reports_no_overlaps_and_an_exact_counter() {
    require_redis!();
    let server = RedisServer::start();
    let started = Instant::now();
    let out = run(&server.url(), &["demo", "--duration", "2s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let table = stdout(&out);
    assert!(table.contains("overlaps detected   0"), "{table}");
    assert!(table.contains("(exact)"), "{table}");
    assert!(table.contains("1 Redis node"), "{table}");
    let total: u64 = table
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("total")?.trim().parse().ok())
        .expect("a total line");
    assert!(total > 0, "{table}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the 2 s demo took {:?}",
        started.elapsed()
    );
}

/// `distlock bench` against a given server: every row comes with the floor measured in the
/// slices interleaved with it, A's ratio to that floor, B's overlap count (zero), exact
/// counter, mean hold (never under the 1 ms it says) and issue #14's wait bound, R's and G's
/// overlap counts (zero: no writer beside anyone, no two computations at once, as the holders
/// saw it), the client's CPU per operation, and,
/// with the component feature, the guest path beside the native one; with `--fair`, A and B
/// also in fair mode, in the same slices; S's permits never more than its limit at once.
#[test]
fn bench_reports_each_scenario_against_its_floor() {
    require_redis!();
    let server = RedisServer::start();
    let out = run(
        &server.url(),
        &[
            "bench",
            "--scenario",
            "all",
            "--duration",
            "600ms",
            "--workers",
            "3",
            "--fair",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let paths: &[&str] = if cfg!(feature = "component") {
        &["native", "guest"]
    } else {
        &["native"]
    };
    let fair_paths: &[&str] = if cfg!(feature = "component") {
        &["fair", "guest-fair"]
    } else {
        &["fair"]
    };
    // A, B, C at 1/4/16 clients; D is skipped with one --redis URL. B also has its polling
    // baseline (wake-up signals off), C its raw clients at each count; A and B have their fair
    // rows, and A its pipelined release (native only). S (a semaphore of 4, at 4 and 16
    // clients, non-fair and fair), R's two rows (reads only, a mix with writes), M's two (4
    // names per lock, 1 and 4 clients, each with its raw clients running the same scripts)
    // and G's two (a cached value; a value computed again after each expiry) have the native
    // path only: the component has none of them yet.
    assert_eq!(
        rows.len(),
        5 * paths.len() + 2 * fair_paths.len() + 1 + 1 + 3 + 2 * 2 + 2 + 2 * 2 + 2,
        "{}",
        show(&out)
    );
    for row in &rows {
        let scenario = row["scenario"].as_str().expect("scenario");
        let path = row["path"].as_str().expect("path");
        let a_or_b = scenario.starts_with("A:") || scenario.starts_with("B:");
        if scenario.starts_with("S:") {
            assert!(path == "native" || path == "fair", "{row}");
            assert_eq!(
                row["overlaps"].as_u64(),
                Some(0),
                "never more than 4: {row}"
            );
        } else {
            assert!(
                paths.contains(&path)
                    || (path == "polling" && scenario.starts_with("B:"))
                    || (path == "raw"
                        && (scenario.starts_with("C:") || scenario.starts_with("M:")))
                    || (path == "pipelined" && scenario.starts_with("A:"))
                    || (fair_paths.contains(&path) && a_or_b),
                "{row}"
            );
        }
        assert!(
            row["floor_ops_per_sec"].as_f64().expect("floor") > 0.0,
            "{row}"
        );
        assert!(
            row["floor_p50_us"].as_u64().expect("floor p50") > 0,
            "{row}"
        );
        assert!(row["ops_per_sec"].as_f64().expect("ops") > 0.0, "{row}");
        assert!(row["p50_us"].as_u64().expect("p50") <= row["p999_us"].as_u64().expect("p999"));
        if cfg!(unix) {
            // Operations were done, so the client spent CPU on them.
            assert!(
                row["client_cpu_us_per_op"].as_f64().expect("client CPU") > 0.0,
                "{row}"
            );
        }
        if scenario.starts_with("B:") {
            assert_eq!(row["overlaps"].as_u64(), Some(0), "{row}");
            assert_eq!(row["counter_exact"].as_bool(), Some(true), "{row}");
            assert!(row["ratio_to_floor"].is_null(), "{row}");
            let fairness = row["fairness_min_over_max"].as_f64().expect("fairness");
            assert!((0.0..=1.0).contains(&fairness), "{row}");
            assert!(
                row["handoff_round_trips"].as_f64().expect("round trips") > 0.0,
                "{row}"
            );
            assert!(
                row["acquire_wait_p99_us"].as_u64().expect("wait p99") > 0,
                "{row}"
            );
            // The hold runs to its deadline: never shorter than the 1 ms it says.
            let hold = row["mean_hold_us"].as_u64().expect("mean hold");
            assert!(hold >= 1_000, "{row}");
            assert!(
                row["hold_p50_us"].as_u64().expect("hold p50") >= 1_000,
                "{row}"
            );
            // Issue #14's bound, 1.5 × workers (3) × (hold + half the floor's pair).
            let floor_p50 = row["floor_p50_us"].as_u64().expect("floor p50") as f64;
            let bound = 1.5 * 3.0 * (hold as f64 + floor_p50 / 2.0);
            let reported = row["acquire_wait_bound_us"].as_u64().expect("bound") as f64;
            assert!((reported - bound).abs() <= 10.0, "{row}");
        } else {
            if scenario.starts_with("R:") || scenario.starts_with("G:") {
                assert_eq!(row["overlaps"].as_u64(), Some(0), "{row}");
            }
            let ratio = row["ratio_to_floor"].as_f64().expect("ratio");
            let expected = row["ops_per_sec"].as_f64().unwrap_or(0.0)
                / row["floor_ops_per_sec"].as_f64().unwrap_or(1.0);
            assert!((ratio - expected).abs() < 1e-6 * expected.max(1.0), "{row}");
        }
    }
    assert!(stdout(&out).contains("÷floor"), "the table: {}", show(&out));
}

/// `distlock bench --cluster`: A and C also run through a Redis Cluster of three primaries
/// the bench starts itself, one `cluster` row beside each single-node row set, in the same
/// slices (the same floor), each set against the single-node native row.
#[test]
fn bench_runs_a_and_c_through_a_cluster_it_starts() {
    require_redis!();
    if support::redis_cli_binary().is_none() {
        support::skip_or_fail("redis-cli is needed to form the bench's cluster");
        return;
    }
    let server = RedisServer::start();
    for (scenario, sets) in [("a", 1), ("c", 3)] {
        let out = run(
            &server.url(),
            &[
                "bench",
                "--scenario",
                scenario,
                "--duration",
                "300ms",
                "--native-only",
                "--cluster",
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let rows: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect();
        let cluster: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["path"] == "cluster").collect();
        assert_eq!(cluster.len(), sets, "{}", show(&out));
        // A: native, pipelined (on the single node: a cluster refuses it) and cluster; C:
        // native, raw and cluster, at 1, 4 and 16 clients.
        let per_set = 3;
        assert_eq!(rows.len(), per_set * sets, "{}", show(&out));
        for row in cluster {
            assert!(row["ops_per_sec"].as_f64().expect("ops") > 0.0, "{row}");
            assert!(
                row["floor_ops_per_sec"].as_f64().expect("floor") > 0.0,
                "{row}"
            );
            let note = row["note"].as_str().expect("note");
            assert!(note.contains("the single-node native row's ops/s"), "{row}");
        }
    }
}
