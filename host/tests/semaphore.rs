//! Semaphores against a real `redis-server`: `distlock exec --limit N` runs at most N jobs at
//! once (each job counts itself in and out of a Redis counter, and the most it ever saw is
//! asserted), a holder killed with SIGKILL frees its permit within its TTL, a lost permit
//! stops its job as a lost lock does, the Rust API's permits are guards like leases, bad
//! input is a typed error with its exit code (N = 0, N too large, a name that is a mutex,
//! another N), and a fair semaphore (API and `--limit N --fair`) hands freed permits to its
//! queued waiters in arrival order, never letting more than N in; `status` counts a fair
//! waiter until it gives up or is served, and a plain semaphore's release wakes its own
//! waiter, never a mutex waiter of the same name.

mod support;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use distlock_core::{ConfigError, LockOptions, MAX_PERMITS, ServerErrorKind};
use distlock_host::{Client, Error};
use support::holders::{ExecHolder, gone, kill_if_running};
use support::{
    KillOnDrop, RedisServer, blocking, distlock, lock_key, redis_cli_binary, require_redis,
    run_bounded, show, stdout, unique_name, until, until_blocked, wait_for,
};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);

fn redis_cli() -> PathBuf {
    redis_cli_binary().expect("redis-cli next to redis-server")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A job that counts itself in (`INCR running`, the value it saw appended to `$SEEN`), waits
/// until `$N` jobs have started or 10 s passed (so the first N surely overlap), and counts
/// itself out. A semaphore that let more than N in shows a value above N in `$SEEN`.
const COUNTING_JOB: &str = r#"
cli() { "$CLI" -p "$PORT" "$@"; }
cli INCR "$RUNNING" >> "$SEEN"
cli INCR "$STARTED" > /dev/null
i=0
while [ "$(cli GET "$STARTED")" -lt "$N" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
cli DECR "$RUNNING" > /dev/null
"#;

#[test]
fn exec_limit_runs_at_most_n_jobs_at_once() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("pool");
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("seen");
    let limit = 2;
    let jobs: Vec<KillOnDrop> = (0..limit + 2)
        .map(|_| {
            let child = distlock(
                &url,
                &[
                    "exec",
                    "--name",
                    &name,
                    "--limit",
                    &limit.to_string(),
                    "--wait",
                    "25s",
                    "--ttl",
                    "5s",
                    "--",
                    "sh",
                    "-c",
                    COUNTING_JOB,
                ],
            )
            .env("CLI", redis_cli())
            .env("PORT", server.port().to_string())
            .env("RUNNING", format!("{name}:running"))
            .env("STARTED", format!("{name}:started"))
            .env("N", limit.to_string())
            .env("SEEN", &seen)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn distlock exec");
            KillOnDrop(child)
        })
        .collect();
    for mut job in jobs {
        let status = wait_for("an exec to finish", LIMIT, || {
            job.0.try_wait().ok().flatten()
        });
        assert!(status.success(), "{status:?}");
    }
    let seen: Vec<u32> = std::fs::read_to_string(&seen)
        .expect("the jobs ran")
        .lines()
        .map(|l| l.trim().parse().expect("a count"))
        .collect();
    assert_eq!(seen.len(), limit as usize + 2, "every job ran: {seen:?}");
    assert_eq!(
        seen.iter().max(),
        Some(&limit),
        "never more than {limit} at once, and {limit} did overlap: {seen:?}"
    );
}

#[test]
fn a_killed_holders_permit_is_reclaimed_within_its_ttl() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("killed");
    let ttl = Duration::from_secs(2);
    let mut holder = ExecHolder::spawn(
        &url,
        &name,
        &["--limit", "1", "--ttl", "2s"],
        "exec sleep 60",
    );
    let job = holder.command_pid();
    let mut raw = server.raw();
    // The holder dies without a word: no release, no renewal from now on.
    holder.distlock.0.kill().expect("SIGKILL distlock");
    let _ = holder.distlock.0.wait();
    kill_if_running(job);
    let killed = Instant::now();
    let holders = raw.ok(&["ZCARD", &lock_key(&name)]).int().expect("ZCARD");
    assert_eq!(holders, 1, "the dead holder's permit is still counted");
    let out = run_bounded(
        distlock(
            &url,
            &[
                "exec", "--name", &name, "--limit", "1", "--wait", "20s", "--", "true",
            ],
        ),
        LIMIT,
    )
    .expect("run the waiter");
    let waited = killed.elapsed();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        waited < ttl + Duration::from_secs(2),
        "reclaimed at the permit's expiry, not at the wait's end: {waited:?}"
    );
}

#[test]
fn a_lost_permit_stops_its_job() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("lost");
    let mut holder = ExecHolder::spawn(
        &url,
        &name,
        &["--limit", "2", "--ttl", "3s"],
        "exec sleep 60",
    );
    let job = holder.command_pid();
    // Someone deletes the holders' set: the renewal's extend finds no permit, the job must
    // stop before the permit's validity would have ended.
    let mut raw = server.raw();
    assert_eq!(raw.ok(&["DEL", &lock_key(&name)]).int(), Some(1));
    let status = wait_for("exec to stop its job", LIMIT, || {
        holder.distlock.0.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(75), "lost: exit 75");
    wait_for("the job to be gone", LIMIT, || gone(job).then_some(()));
}

#[test]
fn bad_limits_and_colliding_names_are_typed_with_their_exit_codes() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let name = unique_name("bad");
    for limit in ["0", &(MAX_PERMITS + 1).to_string()] {
        let out = run(&["exec", "--name", &name, "--limit", limit, "--", "true"]);
        assert_eq!(code(&out), Some(64), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("limit"),
            "{}",
            show(&out)
        );
    }
    // A semaphore of 2 holds a permit; another N is refused (76), as is a fenced mutex.
    let out = run(&["acquire", "--name", &name, "--limit", "2", "--ttl", "20s"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = run(&["exec", "--name", &name, "--limit", "3", "--", "true"]);
    assert_eq!(code(&out), Some(76), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WRONGLIMIT"),
        "{}",
        show(&out)
    );
    let out = run(&["exec", "--name", &name, "--fenced", "--", "true"]);
    assert_eq!(code(&out), Some(76), "{}", show(&out));
    // A mutex's name is refused to a semaphore.
    let mutex = unique_name("mutex");
    let out = run(&["acquire", "--name", &mutex, "--ttl", "20s"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = run(&["exec", "--name", &mutex, "--limit", "2", "--", "true"]);
    assert_eq!(code(&out), Some(76), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WRONGTYPE"),
        "{}",
        show(&out)
    );
    // Over several nodes a semaphore is refused before anything is sent.
    let other = RedisServer::start();
    let third = RedisServer::start();
    let urls = format!("{url},{},{}", other.url(), third.url());
    let out = run_bounded(
        distlock(
            &urls,
            &["exec", "--name", &name, "--limit", "2", "--", "true"],
        ),
        LIMIT,
    )
    .expect("run distlock");
    assert_eq!(code(&out), Some(64), "{}", show(&out));
}

#[test]
fn status_shows_a_semaphores_holders_and_limit() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("status");
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let out = run(&[
            "acquire", "--name", &name, "--limit", "3", "--ttl", "20s", "--json",
        ]);
        assert_eq!(code(&out), Some(0), "{}", show(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        tokens.push(json["token"].as_str().expect("token").to_owned());
    }
    let out = run(&["status", "--name", &name]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("semaphore: 2 of 3 permits held"), "{text}");
    for token in &tokens {
        assert!(text.contains(token.as_str()), "{text}");
    }
    let out = run(&["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "held");
    let permits = &json["nodes"][0]["permits"];
    assert_eq!(permits["limit"], 3);
    assert_eq!(permits["holders"].as_array().map(Vec::len), Some(2));
    // Released permits leave it; the last one gone, the name is free.
    for token in &tokens {
        let out = run(&["release", "--name", &name, "--token", token, "--limit", "3"]);
        assert_eq!(code(&out), Some(0), "{}", show(&out));
    }
    let out = run(&["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "free", "{json}");
}

#[test]
fn the_embedded_store_runs_semaphores_and_their_status() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::embedded();
        let a = client.semaphore("e", 1).try_acquire().await.expect("a");
        assert!(client.semaphore("e", 1).try_acquire().await.is_err());
        let status = client.status("e").await.expect("status");
        assert_eq!(
            status.verdict,
            distlock_host::Verdict::Shared,
            "a held semaphore is held, by its permits' holders"
        );
        let permits = status.permits().expect("a semaphore");
        assert_eq!(permits.limit, 1);
        assert_eq!(permits.holders.len(), 1);
        assert_eq!(permits.holders[0].0, a.token());
        a.release().await.expect("release");
        assert!(client.semaphore("e", 1).try_acquire().await.is_ok());
    });
}

#[test]
fn permits_are_guards_that_release_and_renew() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect([url.as_str()]).await.expect("connect");
        let name = unique_name("api");
        let ttl = Duration::from_millis(600);
        let a = client
            .semaphore(&name, 2)
            .ttl(ttl)
            .auto_renew(true)
            .try_acquire()
            .await
            .expect("a");
        let b = client
            .semaphore(&name, 2)
            .ttl(ttl)
            .auto_renew(true)
            .try_acquire()
            .await
            .expect("b");
        assert_ne!(a.token(), b.token());
        let full = client.semaphore(&name, 2).try_acquire().await;
        assert!(
            matches!(full, Err(Error::Lock(distlock_core::Error::NotAcquired { .. }))),
            "{full:?}"
        );
        // Renewed past several TTLs: the permits stay held.
        let renewed_past = Instant::now() + 3 * ttl;
        let mut raw = server.raw();
        wait_for("three TTLs to pass while renewing", LIMIT, || {
            (Instant::now() >= renewed_past).then_some(())
        });
        assert_eq!(raw.ok(&["ZCARD", &lock_key(&name)]).int(), Some(2));
        assert!(client.semaphore(&name, 2).try_acquire().await.is_err());
        a.release().await.expect("release a");
        let c = client
            .semaphore(&name, 2)
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .expect("c takes a's permit");
        c.release().await.expect("release c");
        b.release().await.expect("release b");

        for (limit, expected) in [
            (0, ConfigError::BadLimit { limit: 0 }),
            (
                MAX_PERMITS + 1,
                ConfigError::BadLimit {
                    limit: MAX_PERMITS + 1,
                },
            ),
        ] {
            let refused = client.semaphore(&name, limit).try_acquire().await;
            assert!(
                matches!(&refused, Err(Error::Config(e)) if *e == expected),
                "{refused:?}"
            );
        }
        let mutex = client.lock(&name).try_acquire().await.expect("mutex");
        let refused = client.semaphore(&name, 2).try_acquire().await;
        assert!(
            matches!(&refused, Err(Error::Lock(distlock_core::Error::Server { error, .. })) if error.kind == ServerErrorKind::WrongType),
            "{refused:?}"
        );
        mutex.release().await.expect("release mutex");
    });
}

/// Holders counted in and out around every permit this test takes: how many are inside,
/// and how many times an entry found more than the limit inside.
struct Inside {
    now: AtomicUsize,
    over_limit: AtomicUsize,
    limit: usize,
}

impl Inside {
    fn enter(&self) {
        if self.now.fetch_add(1, Ordering::SeqCst) + 1 > self.limit {
            self.over_limit.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Called before the release, so a permit handed on is never counted twice.
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_permits_go_to_queued_waiters_in_arrival_order_never_past_the_limit() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("fairpool");
    let queue = format!("{}:permit-queue", lock_key(&name));
    let limit = 2;
    let options = LockOptions {
        ttl: distlock_core::Duration::from_secs(10),
        // A long request timeout makes each waiter's liveness (R) outlast a loaded
        // machine's pauses, so no live waiter is taken for dead.
        request_timeout: distlock_core::Duration::from_secs(4),
        fenced: true,
        fair: true,
        ..LockOptions::default()
    };
    let inside = Arc::new(Inside {
        now: AtomicUsize::new(0),
        over_limit: AtomicUsize::new(0),
        limit: limit as usize,
    });
    let client = Client::connect([&url]).await.expect("connect");
    let mut held = Vec::new();
    for _ in 0..limit {
        let permit = client
            .semaphore(&name, limit)
            .options(options)
            .try_acquire()
            .await
            .expect("a free permit");
        inside.enter();
        held.push(permit);
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for n in 1..=3i64 {
        let client = Client::connect([&url]).await.expect("connect");
        let (name, order, inside) = (name.clone(), order.clone(), inside.clone());
        waiters.push(tokio::spawn(async move {
            let permit = client
                .semaphore(&name, limit)
                .options(options)
                .wait(Duration::from_secs(25))
                .acquire()
                .await
                .expect("every waiter gets a permit");
            inside.enter();
            order.lock().expect("order").push((n, permit.fence()));
            inside.leave();
            permit.release().await.expect("release");
        }));
        // The next waiter starts only once this one is queued: the arrival order is known.
        let queue = queue.clone();
        until("the waiter to queue", LIMIT, || {
            blocking(|| server.raw().ok(&["ZCARD", &queue]).int()) == Some(n)
        })
        .await;
    }
    // One permit freed: the three waiters pass through it one after the other while the
    // other permit stays held.
    let first = held.remove(0);
    inside.leave();
    first.release().await.expect("release the first permit");
    for waiter in waiters {
        tokio::time::timeout(LIMIT, waiter)
            .await
            .expect("the waiters finish")
            .expect("waiter task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3],
        "freed permits go to the waiters in arrival order"
    );
    let fences: Vec<u64> = order.iter().map(|(_, f)| f.expect("fenced")).collect();
    assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
    assert_eq!(
        inside.over_limit.load(Ordering::SeqCst),
        0,
        "never more than {limit}"
    );
    let mut raw = server.raw();
    assert_eq!(raw.ok(&["ZCARD", &queue]).int(), Some(0));
    assert_eq!(raw.ok(&["ZCARD", &lock_key(&name)]).int(), Some(1));
    held.remove(0)
        .release()
        .await
        .expect("release the second permit");
    assert_eq!(raw.ok(&["EXISTS", &lock_key(&name)]).int(), Some(0));
}

#[test]
fn cli_fair_limit_queues_a_waiter_and_release_hands_it_the_permit() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("fairc");
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let first = run(&[
        "acquire", "--name", &name, "--limit", "1", "--fair", "--ttl", "30s",
    ]);
    assert_eq!(code(&first), Some(0), "{}", show(&first));
    let token = stdout(&first).trim().to_owned();
    let waiter = {
        let (url, name) = (url.clone(), name.clone());
        std::thread::spawn(move || {
            run_bounded(
                distlock(
                    &url,
                    &[
                        "acquire", "--name", &name, "--limit", "1", "--fair", "--ttl", "30s",
                        "--wait", "20s",
                    ],
                ),
                LIMIT,
            )
            .expect("run distlock")
        })
    };
    let queue = format!("{}:permit-queue", lock_key(&name));
    wait_for("the second acquire to queue", LIMIT, || {
        (server.raw().ok(&["ZCARD", &queue]).int() == Some(1)).then_some(())
    });
    let released = run(&[
        "release", "--name", &name, "--limit", "1", "--fair", "--token", &token,
    ]);
    assert_eq!(code(&released), Some(0), "{}", show(&released));
    let second = waiter.join().expect("waiter");
    assert_eq!(code(&second), Some(0), "{}", show(&second));
    let second_token = stdout(&second).trim().to_owned();
    assert_ne!(second_token, token);
    let mut raw = server.raw();
    assert!(
        raw.ok(&["ZSCORE", &lock_key(&name), &second_token])
            .text()
            .is_some(),
        "the waiter holds the permit"
    );
    assert_eq!(raw.ok(&["ZCARD", &lock_key(&name)]).int(), Some(1));
}

/// A plain mutex meeting a semaphore's or a read-write lock's name fails with `WRONGTYPE`
/// (exit 76) instead of waiting: its wait here (an hour) is far past the bound the test
/// allows, so a mutex that waited fails the test. A try-lock (`--wait 0s`, the CLI's default)
/// says the same, not "held" (75): the server here (Redis ≥ 7.0) answers the acquire's
/// `SET NX PX GET` with `WRONGTYPE` in its one round trip.
#[test]
fn a_mutex_on_a_semaphores_or_read_write_locks_name_fails_with_wrongtype() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let semaphore = unique_name("sem-kind");
    let rw = unique_name("rw-kind");
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let out = run(&[
        "acquire", "--name", &semaphore, "--limit", "2", "--ttl", "60s",
    ]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = run(&["acquire", "--name", &rw, "--read", "--ttl", "60s"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    for name in [&semaphore, &rw] {
        for args in [
            &["exec", "--name", name, "--wait", "1h", "--", "true"][..],
            &["acquire", "--name", name, "--wait", "0s"],
            &["acquire", "--name", name],
        ] {
            let out = run(args);
            assert_eq!(code(&out), Some(76), "{args:?}: {}", show(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("WRONGTYPE"),
                "{args:?}: {}",
                show(&out)
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect([url.as_str()]).await.expect("connect");
        for name in [&semaphore, &rw] {
            let refused = tokio::time::timeout(
                LIMIT,
                client.lock(name).wait(Duration::from_secs(3600)).acquire(),
            )
            .await
            .expect("the mutex fails instead of waiting");
            assert!(
                matches!(&refused, Err(Error::Lock(distlock_core::Error::Server { error, .. })) if error.kind == ServerErrorKind::WrongType),
                "{name}: {refused:?}"
            );
            let refused = client.lock(name).try_acquire().await;
            assert!(
                matches!(&refused, Err(Error::Lock(distlock_core::Error::Server { error, .. })) if error.kind == ServerErrorKind::WrongType),
                "{name} try-lock: {refused:?}"
            );
        }
        // The holders were left alone: the semaphore still has its permit, the reader its hold.
        let mut raw = server.raw();
        assert_eq!(raw.ok(&["ZCARD", &lock_key(&semaphore)]).int(), Some(1));
        assert_eq!(
            raw.ok(&["ZCARD", &format!("{}:readers", lock_key(&rw))]).int(),
            Some(1)
        );
    });
}

/// Every key of a name on the server (each test has its own server, so `KEYS` is small).
fn keys_of(raw: &mut support::Raw, name: &str) -> Vec<String> {
    let pattern = format!(
        "{}*",
        lock_key(name).replace('{', "\\{").replace('}', "\\}")
    );
    let support::Reply::Array(Some(keys)) = raw.ok(&["KEYS", &pattern]) else {
        panic!("KEYS gave no array");
    };
    let mut keys: Vec<String> = keys.iter().filter_map(support::Reply::text).collect();
    keys.sort();
    keys
}

/// `reset` of a semaphore's name clears its holders and permits (by name, and by `--all`)
/// but keeps its fencing counter: a fresh acquire gets in at once, a former holder's release
/// and extend report the permit lost (exit 1), and a fair waiter queued behind the reset
/// holder gets in.
#[test]
fn reset_clears_a_semaphores_permits_and_queue_but_keeps_its_fence() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let mut raw = server.raw();
    for how in [&["--all", "--yes"][..], &["--name"][..]] {
        let name = unique_name("sem-reset");
        let acquire = || {
            let out = run(&[
                "acquire", "--name", &name, "--limit", "2", "--fenced", "--ttl", "60s",
            ]);
            assert_eq!(code(&out), Some(0), "{}", show(&out));
            stdout(&out).lines().next().expect("a token").to_owned()
        };
        let held = [acquire(), acquire()];
        let fence = format!("{}:fence", lock_key(&name));
        assert_eq!(raw.ok(&["GET", &fence]).text().as_deref(), Some("2"));
        let mut args = vec!["reset"];
        args.extend_from_slice(how);
        if how == ["--name"] {
            args.push(&name);
        }
        let out = run(&args);
        assert_eq!(code(&out), Some(0), "{}", show(&out));
        // Only the fencing counter is left (and the semaphore's wake-up list the reset pushed).
        let signal = format!("{}:permit-signal", lock_key(&name));
        assert_eq!(keys_of(&mut raw, &name), {
            let mut kept = vec![fence.clone(), signal];
            kept.sort();
            kept
        });
        assert_eq!(raw.ok(&["GET", &fence]).text().as_deref(), Some("2"));
        for token in &held {
            let out = run(&["release", "--name", &name, "--limit", "2", "--token", token]);
            assert_eq!(code(&out), Some(1), "{}", show(&out));
            let out = run(&[
                "extend", "--name", &name, "--limit", "2", "--token", token, "--ttl", "60s",
            ]);
            assert_eq!(code(&out), Some(1), "{}", show(&out));
        }
        // Both permits are free again, and the fence goes on from where it was.
        let fresh = run(&[
            "acquire", "--name", &name, "--limit", "2", "--fenced", "--ttl", "60s",
        ]);
        assert_eq!(code(&fresh), Some(0), "{}", show(&fresh));
        assert!(stdout(&fresh).contains("fence 3"), "{}", show(&fresh));
        let _ = acquire();
    }

    // A fair semaphore: the holder is reset while a waiter queues behind it.
    let name = unique_name("sem-reset-fair");
    let fair = |extra: &[&str]| {
        let mut args = vec![
            "acquire", "--name", &name, "--limit", "1", "--fair", "--ttl", "60s",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let first = run(&fair(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&first), Some(0), "{}", show(&first));
    let token = stdout(&first).trim().to_owned();
    let waiter = {
        let (url, args) = (url.clone(), fair(&["--wait", "25s"]));
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_bounded(distlock(&url, &args), LIMIT).expect("run distlock")
        })
    };
    let queue = format!("{}:permit-queue", lock_key(&name));
    wait_for("the waiter to queue", LIMIT, || {
        (server.raw().ok(&["ZCARD", &queue]).int() == Some(1)).then_some(())
    });
    let out = run(&["reset", "--name", &name]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let second = waiter.join().expect("waiter");
    assert_eq!(code(&second), Some(0), "{}", show(&second));
    let second_token = stdout(&second).trim().to_owned();
    assert_eq!(
        raw.ok(&["ZRANGE", &lock_key(&name), "0", "-1"]),
        support::Reply::Array(Some(vec![support::Reply::Bulk(Some(
            second_token.into_bytes()
        ))])),
        "the waiter holds the only permit"
    );
    let out = run(&[
        "release", "--name", &name, "--limit", "1", "--fair", "--token", &token,
    ]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
}

/// The waiters the first node counts (`Status::nodes[0]`'s `queued`).
fn queued(status: &distlock_host::Status) -> Option<u64> {
    match status.nodes.first() {
        Some(distlock_host::NodeStatus::Answered { queued, .. }) => *queued,
        other => panic!("{other:?}"),
    }
}

/// `status` counts a fair semaphore's waiter behind full permits — in the native API's
/// reading and in the CLI's text and JSON — and no longer once it gave up (it leaves the
/// queue) or was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_a_fair_semaphores_waiter_until_it_gives_up_or_is_served() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("fairwait");
    let queue = format!("{}:permit-queue", lock_key(&name));
    let options = LockOptions {
        ttl: distlock_core::Duration::from_secs(20),
        // A long liveness (R): a loaded machine's pause never makes the waiter look dead.
        request_timeout: distlock_core::Duration::from_secs(4),
        fair: true,
        ..LockOptions::default()
    };
    let client = Client::connect([&url]).await.expect("connect");
    let holder = client
        .semaphore(&name, 1)
        .options(options)
        .try_acquire()
        .await
        .expect("the free permit");
    assert_eq!(
        queued(&client.status(&name).await.expect("status")),
        Some(0)
    );
    let wait_behind = |wait: Duration| {
        let (url, name) = (url.clone(), name.clone());
        tokio::spawn(async move {
            let client = Client::connect([&url]).await.expect("connect");
            client
                .semaphore(&name, 1)
                .options(options)
                .wait(wait)
                .acquire()
                .await
        })
    };
    let queued_in_redis =
        |n: i64| blocking(|| server.raw().ok(&["ZCARD", &queue]).int()) == Some(n);

    // A waiter that gives up.
    let gives_up = wait_behind(Duration::from_secs(8));
    until("the waiter to queue", LIMIT, || queued_in_redis(1)).await;
    assert_eq!(
        queued(&client.status(&name).await.expect("status")),
        Some(1)
    );
    let gave_up = tokio::time::timeout(LIMIT, gives_up)
        .await
        .expect("the waiter gives up within its wait")
        .expect("waiter task");
    assert!(
        gave_up.is_err(),
        "no permit was free: {:?}",
        gave_up.map(|p| p.token().to_owned())
    );
    assert_eq!(
        queued(&client.status(&name).await.expect("status")),
        Some(0),
        "a waiter that gave up left the queue"
    );

    // A waiter that is served; the CLI shows it while it waits.
    let served = wait_behind(LIMIT);
    until("the waiter to queue", LIMIT, || queued_in_redis(1)).await;
    let run = |args: &[&str]| {
        blocking(|| run_bounded(distlock(&url, args), LIMIT).expect("run distlock"))
    };
    let text = run(&["status", "--name", &name]);
    assert_eq!(code(&text), Some(0), "{}", show(&text));
    assert!(
        stdout(&text).starts_with("semaphore: 1 of 1 permits held queued 1\n"),
        "{}",
        show(&text)
    );
    let json = run(&["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    assert_eq!(json["nodes"][0]["queued"], 1, "{json}");
    holder.release().await.expect("release");
    let permit = tokio::time::timeout(LIMIT, served)
        .await
        .expect("the waiter is served")
        .expect("waiter task")
        .expect("the freed permit");
    let status = client.status(&name).await.expect("status");
    assert_eq!(queued(&status), Some(0), "a served waiter left the queue");
    let text = run(&["status", "--name", &name]);
    assert!(
        stdout(&text).starts_with("semaphore: 1 of 1 permits held\n"),
        "{}",
        show(&text)
    );
    permit.release().await.expect("release");
}

/// A plain semaphore's release wakes the semaphore's waiter, not a mutex waiter of the same
/// name: a `BLPOP` on the mutex's wake-up list (`:signal`, as a mutex waiter that waited since
/// before the name passed to permits blocks on), planted first in line, stays blocked; the
/// semaphore waiter takes the one wake-up from the semaphore's own list (`:permit-signal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_release_wakes_the_semaphores_waiter_not_a_mutex_waiter() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("semwake");
    let signal = format!("{}:signal", lock_key(&name));
    let permit_signal = format!("{}:permit-signal", lock_key(&name));
    let options = LockOptions {
        ttl: distlock_core::Duration::from_secs(20),
        // The wake-up outlives the test unless popped, and the waiter blocks until woken
        // (no retry cap, no permit expiry within the test): only a wake-up can let it in
        // before the planted pop is checked.
        wake_signal: Some(distlock_core::Duration::from_secs(60)),
        retry: distlock_core::RetryPolicy {
            cap: distlock_core::Duration::from_secs(60),
            ..distlock_core::RetryPolicy::default()
        },
        ..LockOptions::default()
    };
    let client = Client::connect([&url]).await.expect("connect");
    let holder = client
        .semaphore(&name, 1)
        .options(options)
        .try_acquire()
        .await
        .expect("the free permit");
    // The mutex waiter, first in line.
    let planted = {
        let (port, signal) = (server.port(), signal.clone());
        std::thread::spawn(move || {
            let mut raw = support::Raw::connect(port).expect("connect");
            raw.set_timeout(LIMIT).expect("timeout");
            raw.ok(&["BLPOP", &signal, "25"])
        })
    };
    until_blocked(&server, 1).await;
    let waiter = {
        let (url, name) = (url.clone(), name.clone());
        tokio::spawn(async move {
            let client = Client::connect([&url]).await.expect("connect");
            client
                .semaphore(&name, 1)
                .options(options)
                .wait(Duration::from_secs(25))
                .acquire()
                .await
        })
    };
    until_blocked(&server, 2).await;
    holder.release().await.expect("release");
    let permit = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("the semaphore waiter is woken")
        .expect("waiter task")
        .expect("the freed permit");
    let mut raw = server.raw();
    assert_eq!(
        raw.ok(&["LLEN", &permit_signal]).int(),
        Some(0),
        "the semaphore waiter took the release's wake-up"
    );
    assert!(!planted.is_finished(), "the mutex waiter took no wake-up");
    assert_eq!(
        blocking(|| server.blocked_clients()),
        1,
        "the mutex waiter still waits"
    );
    // It was still waiting on its own list: a push there reaches it.
    raw.ok(&["LPUSH", &signal, "mine"]);
    let popped = planted.join().expect("planted pop");
    assert_eq!(
        popped,
        support::Reply::Array(Some(vec![
            support::Reply::Bulk(Some(signal.into_bytes())),
            support::Reply::Bulk(Some(b"mine".to_vec())),
        ]))
    );
    permit.release().await.expect("release");
}
