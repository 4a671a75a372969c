//! Read-write locks against a real `redis-server`: `distlock exec --read` jobs share the lock
//! and `exec --write` jobs exclude everyone (each job records, inside its section, how many
//! readers and writers it saw in Redis counters, and those records are checked), a waiting
//! writer turns new readers away and gets in when the readers leave, a reader killed with
//! SIGKILL loses its hold within its own TTL while another reader's renewal carries only that
//! reader's, a lost write hold stops its job, and bad input is a typed error with its exit
//! code (a name that is a mutex or a semaphore, several nodes, fair or reentrant); `status`
//! counts a writer waiting behind a reader until it is served.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use distlock_core::{ConfigError, ServerErrorKind};
use distlock_host::{Client, Error, LockOptions};
use support::holders::{ExecHolder, gone, kill_if_running};
use support::{
    KillOnDrop, RedisServer, distlock, lock_key, redis_cli_binary, require_redis, run_bounded,
    show, unique_name, wait_for,
};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);

fn redis_cli() -> PathBuf {
    redis_cli_binary().expect("redis-cli next to redis-server")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A reader's section: counts itself in, records `r <readers> <writers>` as it saw them,
/// stays until `$N` readers have been in (or 10 s passed, so that readers that can share
/// surely overlap), and counts itself out.
const READER_JOB: &str = r#"
cli() { "$CLI" -p "$PORT" "$@"; }
r=$(cli INCR "$READERS"); w=$(cli GET "$WRITERS")
echo "r $r ${w:-0}" >> "$SEEN"
cli INCR "$ENTERED" > /dev/null
i=0
while [ "$(cli GET "$ENTERED")" -lt "$N" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
cli DECR "$READERS" > /dev/null
"#;

/// A writer's section: counts itself in, records `w <writers> <readers>`, does a little
/// work (a few round trips to Redis in which an intruder would show), and counts itself out.
const WRITER_JOB: &str = r#"
cli() { "$CLI" -p "$PORT" "$@"; }
w=$(cli INCR "$WRITERS"); r=$(cli GET "$READERS")
for i in 1 2 3 4 5; do r2=$(cli GET "$READERS"); r=$((${r:-0} + ${r2:-0})); done
echo "w $w $r" >> "$SEEN"
cli DECR "$WRITERS" > /dev/null
"#;

fn spawn_job(
    server: &RedisServer,
    name: &str,
    side: &str,
    job: &str,
    readers: u32,
    seen: &Path,
) -> KillOnDrop {
    let child = distlock(
        &server.url(),
        &[
            "exec", "--name", name, side, "--wait", "25s", "--ttl", "5s", "--", "sh", "-c", job,
        ],
    )
    .env("CLI", redis_cli())
    .env("PORT", server.port().to_string())
    .env("READERS", format!("{name}:readers-in"))
    .env("WRITERS", format!("{name}:writers-in"))
    .env("ENTERED", format!("{name}:entered"))
    .env("N", readers.to_string())
    .env("SEEN", seen)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn distlock exec");
    KillOnDrop(child)
}

fn finish(jobs: Vec<KillOnDrop>) {
    for mut job in jobs {
        let status = wait_for("an exec to finish", LIMIT, || {
            job.0.try_wait().ok().flatten()
        });
        assert!(status.success(), "{status:?}");
    }
}

/// The `(side, count, other)` records the jobs wrote.
fn records(seen: &Path) -> Vec<(String, u32, u32)> {
    std::fs::read_to_string(seen)
        .expect("the jobs ran")
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (
                parts[0].to_owned(),
                parts[1].parse().expect("a count"),
                parts[2].parse().expect("a count"),
            )
        })
        .collect()
}

#[test]
fn exec_readers_share_and_writers_exclude_everyone() {
    require_redis!();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");

    // Readers alone: all three are in at once.
    let name = unique_name("share");
    let seen = dir.path().join("share");
    let jobs = (0..3)
        .map(|_| spawn_job(&server, &name, "--read", READER_JOB, 3, &seen))
        .collect();
    finish(jobs);
    let seen = records(&seen);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen.iter().map(|r| r.1).max(),
        Some(3),
        "three readers shared: {seen:?}"
    );

    // Readers and writers mixed: no writer ever saw another writer or a reader, and no
    // reader ever saw a writer.
    let name = unique_name("mixed");
    let seen = dir.path().join("mixed");
    let mut jobs = Vec::new();
    for i in 0..9 {
        jobs.push(if i % 3 == 0 {
            spawn_job(&server, &name, "--write", WRITER_JOB, 2, &seen)
        } else {
            spawn_job(&server, &name, "--read", READER_JOB, 2, &seen)
        });
    }
    finish(jobs);
    let seen = records(&seen);
    assert_eq!(seen.len(), 9, "every job ran: {seen:?}");
    for (side, count, other) in &seen {
        match side.as_str() {
            "w" => assert_eq!((*count, *other), (1, 0), "a writer not alone: {seen:?}"),
            _ => assert_eq!(*other, 0, "a reader beside a writer: {seen:?}"),
        }
    }
}

#[test]
fn a_waiting_writer_turns_new_readers_away_and_gets_in_when_they_leave() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect([url.as_str()]).await.expect("connect");
        let name = unique_name("prefer");
        let a = client
            .read_lock(&name)
            .fenced(true)
            .try_acquire()
            .await
            .expect("a");
        let b = client.read_lock(&name).try_acquire().await.expect("b");
        assert_eq!(a.fence(), Some(0), "no write yet");
        let writer = {
            let client = client.clone();
            let name = name.clone();
            tokio::spawn(async move {
                client
                    .write_lock(&name)
                    .fenced(true)
                    .wait(Duration::from_secs(20))
                    .acquire()
                    .await
            })
        };
        let mut raw = server.raw();
        let queue = format!("{}:writers", lock_key(&name));
        wait_for("the writer to register", LIMIT, || {
            (raw.ok(&["ZCARD", &queue]).int() == Some(1)).then_some(())
        });
        let refused = client.read_lock(&name).try_acquire().await;
        assert!(
            matches!(
                refused,
                Err(Error::Lock(distlock_core::Error::NotAcquired { .. }))
            ),
            "a new reader must wait behind the writer: {refused:?}"
        );
        a.release().await.expect("release a");
        assert!(!writer.is_finished(), "no writer while b still reads");
        b.release().await.expect("release b");
        let w = writer
            .await
            .expect("writer task")
            .expect("the writer gets in");
        assert_eq!(w.fence(), Some(1));
        assert!(client.read_lock(&name).try_acquire().await.is_err());
        assert!(client.write_lock(&name).try_acquire().await.is_err());
        w.release().await.expect("release w");
        let after = client
            .read_lock(&name)
            .fenced(true)
            .try_acquire()
            .await
            .expect("a reader after the write");
        assert_eq!(after.fence(), Some(1), "the last write's fence");
        after.release().await.expect("release");
    });
}

#[test]
fn a_killed_readers_hold_ends_within_its_own_ttl_while_a_renewing_reader_stays() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("killed");
    let ttl = Duration::from_secs(2);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(Client::connect([url.as_str()]))
        .expect("connect");
    let renewing = runtime
        .block_on(
            client
                .read_lock(&name)
                .ttl(Duration::from_millis(600))
                .auto_renew(true)
                .try_acquire(),
        )
        .expect("a renewing reader");
    let mut holder = ExecHolder::spawn(&url, &name, &["--read", "--ttl", "2s"], "exec sleep 60");
    let job = holder.command_pid();
    let mut raw = server.raw();
    let readers = format!("{}:readers", lock_key(&name));
    assert_eq!(raw.ok(&["ZCARD", &readers]).int(), Some(2));
    holder.distlock.0.kill().expect("SIGKILL distlock");
    let _ = holder.distlock.0.wait();
    kill_if_running(job);
    let killed = Instant::now();
    let killed_key = |raw: &mut support::Raw| {
        let members = raw.ok(&["ZRANGE", &readers, "0", "-1"]);
        let support::Reply::Array(Some(items)) = members else {
            panic!("{members:?}")
        };
        items
            .iter()
            .filter_map(|m| m.text())
            .find(|t| t != renewing.token())
            .map(|t| format!("{}:reader:{t}", lock_key(&name)))
    };
    let key = killed_key(&mut raw).expect("the killed reader is listed");
    wait_for("the killed reader's hold to end", LIMIT, || {
        (raw.ok(&["EXISTS", &key]).int() == Some(0)).then_some(())
    });
    let ended = killed.elapsed();
    assert!(
        ended < ttl + Duration::from_secs(1),
        "ended at its own TTL: {ended:?}"
    );
    // The other reader renewed all along, and its hold is still there (its own key only).
    let own = format!("{}:reader:{}", lock_key(&name), renewing.token());
    assert_eq!(raw.ok(&["EXISTS", &own]).int(), Some(1));
    // A writer gets in as soon as the living reader leaves.
    runtime
        .block_on(renewing.release())
        .expect("release the renewing reader");
    let out = run_bounded(
        distlock(&url, &["exec", "--name", &name, "--write", "--", "true"]),
        LIMIT,
    )
    .expect("run the writer");
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_lost_write_hold_stops_its_job() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("lost");
    let mut holder = ExecHolder::spawn(&url, &name, &["--write", "--ttl", "3s"], "exec sleep 60");
    let job = holder.command_pid();
    // Someone deletes the write hold: the renewal's extend finds nothing, the job must stop
    // before the hold's validity would have ended.
    let mut raw = server.raw();
    let writer = format!("{}:writer", lock_key(&name));
    assert_eq!(raw.ok(&["DEL", &writer]).int(), Some(1));
    let status = wait_for("exec to stop its job", LIMIT, || {
        holder.distlock.0.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(75), "lost: exit 75");
    wait_for("the job to be gone", LIMIT, || gone(job).then_some(()));
}

#[test]
fn colliding_names_and_unsupported_setups_are_typed_with_their_exit_codes() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let wrongtype = |out: &Output| {
        assert_eq!(code(out), Some(76), "{}", show(out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("WRONGTYPE"),
            "{}",
            show(out)
        );
    };
    // A mutex's name and a semaphore's name are refused to either side.
    let mutex = unique_name("mutex");
    assert_eq!(
        code(&run(&["acquire", "--name", &mutex, "--ttl", "20s"])),
        Some(0)
    );
    let semaphore = unique_name("semaphore");
    let out = run(&[
        "acquire", "--name", &semaphore, "--limit", "2", "--ttl", "20s",
    ]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    for name in [&mutex, &semaphore] {
        for side in ["--read", "--write"] {
            wrongtype(&run(&["exec", "--name", name, side, "--", "true"]));
        }
    }
    // A read-write lock's name is refused to a semaphore and to a fenced mutex.
    let rw = unique_name("rw");
    let out = run(&["acquire", "--name", &rw, "--read", "--ttl", "20s", "--json"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    wrongtype(&run(&["exec", "--name", &rw, "--limit", "2", "--", "true"]));
    wrongtype(&run(&["exec", "--name", &rw, "--fenced", "--", "true"]));
    // The reader releases by its token; a second release finds nothing (exit 1).
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let token = json["token"].as_str().expect("token").to_owned();
    let extend = run(&[
        "extend", "--name", &rw, "--token", &token, "--read", "--ttl", "30s",
    ]);
    assert_eq!(code(&extend), Some(0), "{}", show(&extend));
    let wrong_side = run(&[
        "extend", "--name", &rw, "--token", &token, "--write", "--ttl", "30s",
    ]);
    assert_eq!(code(&wrong_side), Some(1), "{}", show(&wrong_side));
    for expected in [0, 1] {
        let out = run(&["release", "--name", &rw, "--token", &token, "--read"]);
        assert_eq!(code(&out), Some(expected), "{}", show(&out));
    }
    // Both sides at once, or a side with --fair or --limit: bad arguments.
    for args in [
        &["exec", "--name", &rw, "--read", "--write", "--", "true"][..],
        &["exec", "--name", &rw, "--read", "--fair", "--", "true"],
        &[
            "exec", "--name", &rw, "--write", "--limit", "2", "--", "true",
        ],
    ] {
        let out = run(args);
        assert_eq!(code(&out), Some(64), "{}", show(&out));
    }
    // Over several nodes a read-write lock is refused before anything is sent.
    let other = RedisServer::start();
    let third = RedisServer::start();
    let urls = format!("{url},{},{}", other.url(), third.url());
    for side in ["--read", "--write"] {
        let out = run_bounded(
            distlock(&urls, &["exec", "--name", &rw, side, "--", "true"]),
            LIMIT,
        )
        .expect("run distlock");
        assert_eq!(code(&out), Some(64), "{}", show(&out));
    }
    // The API's typed errors: fair or reentrant sides are refused before anything is sent,
    // a mutex's name with WRONGTYPE.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect([url.as_str()]).await.expect("connect");
        for refused in [
            client.read_lock(&rw).fair(true).try_acquire().await,
            client.write_lock(&rw).reentrant(true).try_acquire().await,
            client
                .write_lock(&rw)
                .options(LockOptions {
                    scripts: distlock_host::Scripts::Never,
                    ..LockOptions::default()
                })
                .try_acquire()
                .await,
        ] {
            assert!(
                matches!(
                    &refused,
                    Err(Error::Config(
                        ConfigError::RwLockUnsupported | ConfigError::NeedsScripts(_)
                    ))
                ),
                "{refused:?}"
            );
        }
        let refused = client.write_lock(&mutex).try_acquire().await;
        assert!(
            matches!(&refused, Err(Error::Lock(distlock_core::Error::Server { error, .. })) if error.kind == ServerErrorKind::WrongType),
            "{refused:?}"
        );
    });
}

#[test]
fn status_shows_a_rw_locks_readers_and_writer() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("status");
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let take = |side: &str| {
        let out = run(&["acquire", "--name", &name, side, "--ttl", "20s", "--json"]);
        assert_eq!(code(&out), Some(0), "{}", show(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["token"].as_str().expect("token").to_owned()
    };
    let readers = [take("--read"), take("--read")];
    let out = run(&["status", "--name", &name]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("read-write lock: 2 readers"), "{text}");
    for token in &readers {
        assert!(text.contains(token.as_str()), "{text}");
    }
    let out = run(&["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "held", "{json}");
    let rw = &json["nodes"][0]["rw"];
    assert_eq!(rw["readers"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(rw["writer"].is_null(), "{json}");
    for token in &readers {
        let out = run(&["release", "--name", &name, "--token", token, "--read"]);
        assert_eq!(code(&out), Some(0), "{}", show(&out));
    }
    let writer = take("--write");
    let out = run(&["status", "--name", &name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("read-write lock: written by {writer}")),
        "{text}"
    );
    let out = run(&["release", "--name", &name, "--token", &writer, "--write"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = run(&["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "free", "{json}");
}

/// `status` counts a writer waiting behind a reader (its entry in `:writers`), in the CLI's
/// text and JSON, and no longer once the writer was served.
#[test]
fn status_counts_a_writer_waiting_behind_a_reader_until_it_is_served() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("writerwait");
    let writers = format!("{}:writers", lock_key(&name));
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let status = |run: &dyn Fn(&[&str]) -> Output| {
        let text = run(&["status", "--name", &name]);
        assert_eq!(code(&text), Some(0), "{}", show(&text));
        let json = run(&["status", "--name", &name, "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        (String::from_utf8_lossy(&text.stdout).into_owned(), json)
    };
    let out = run(&[
        "acquire", "--name", &name, "--read", "--ttl", "20s", "--json",
    ]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let reader = json["token"].as_str().expect("token").to_owned();
    let (text, json) = status(&run);
    assert!(text.starts_with("read-write lock: 1 readers\n"), "{text}");
    assert_eq!(json["nodes"][0]["queued"], 0, "{json}");

    let writer = {
        let (url, name) = (url.clone(), name.clone());
        std::thread::spawn(move || {
            let args = [
                "acquire", "--name", &name, "--write", "--ttl", "20s", "--wait", "25s",
            ];
            run_bounded(distlock(&url, &args), LIMIT).expect("run distlock")
        })
    };
    wait_for("the writer to wait", LIMIT, || {
        (server.raw().ok(&["ZCARD", &writers]).int() == Some(1)).then_some(())
    });
    let (text, json) = status(&run);
    assert!(
        text.starts_with("read-write lock: 1 readers queued 1\n"),
        "{text}"
    );
    assert_eq!(json["nodes"][0]["queued"], 1, "{json}");

    let out = run(&["release", "--name", &name, "--token", &reader, "--read"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = writer.join().expect("the writer thread");
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (text, json) = status(&run);
    assert!(
        text.starts_with(&format!("read-write lock: written by {token} ttl ")),
        "{text}"
    );
    assert!(!text.contains("queued"), "{text}");
    assert_eq!(json["nodes"][0]["queued"], 0, "{json}");
}

#[test]
fn the_embedded_store_runs_rw_locks_and_their_status() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::embedded();
        let a = client.read_lock("e").try_acquire().await.expect("a");
        let b = client.read_lock("e").try_acquire().await.expect("b");
        assert!(client.write_lock("e").try_acquire().await.is_err());
        let status = client.status("e").await.expect("status");
        let holds = status.rw().expect("a read-write lock");
        assert_eq!(holds.readers.len(), 2);
        assert!(holds.writer.is_none());
        a.release().await.expect("release a");
        b.release().await.expect("release b");
        let w = client.write_lock("e").try_acquire().await.expect("w");
        assert!(client.read_lock("e").try_acquire().await.is_err());
        let status = client.status("e").await.expect("status");
        let writer = status
            .rw()
            .and_then(|h| h.writer.clone())
            .expect("a writer");
        assert_eq!(writer.0, w.token());
        w.release().await.expect("release w");
    });
}

/// `reset` of a read-write lock's name (by name, and by `--all`) clears its readers, its
/// writer and a waiting writer's intent but keeps the fencing counter: a fresh writer gets in at once, a former reader's
/// release and extend report the hold lost (exit 1), and a writer waiting behind the reset
/// readers gets in.
#[test]
fn reset_clears_a_read_write_locks_holds_and_intent_but_keeps_its_fence() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let mut raw = server.raw();
    let name = unique_name("rw-reset");
    let key = |suffix: &str| format!("{}{suffix}", lock_key(&name));
    let token_of = |out: &Output| {
        assert_eq!(code(out), Some(0), "{}", show(out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("a token")
            .to_owned()
    };
    let write = token_of(&run(&["acquire", "--name", &name, "--write", "--fenced"]));
    let out = run(&["release", "--name", &name, "--write", "--token", &write]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert_eq!(
        raw.ok(&["GET", &key(":fence")]).text().as_deref(),
        Some("1")
    );
    let readers = [
        token_of(&run(&[
            "acquire", "--name", &name, "--read", "--ttl", "60s",
        ])),
        token_of(&run(&[
            "acquire", "--name", &name, "--read", "--ttl", "60s",
        ])),
    ];
    // A writer that queued its intent and died: its intent would turn readers away.
    let mut dead_writer = KillOnDrop(
        distlock(
            &url,
            &["acquire", "--name", &name, "--write", "--wait", "25s"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a writer"),
    );
    wait_for("the writer to queue", LIMIT, || {
        (server.raw().ok(&["ZCARD", &key(":writers")]).int() == Some(1)).then_some(())
    });
    dead_writer.0.kill().expect("SIGKILL the writer");
    let _ = dead_writer.0.wait();

    let out = run(&["reset", "--name", &name]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let pattern = format!("{}*", key("").replace('{', "\\{").replace('}', "\\}"));
    let support::Reply::Array(Some(left)) = raw.ok(&["KEYS", &pattern]) else {
        panic!("KEYS gave no array");
    };
    let mut left: Vec<String> = left.iter().filter_map(support::Reply::text).collect();
    left.sort();
    // The fencing counter and the two wake-up lists the reset pushed, nothing else.
    assert_eq!(
        left,
        [key(":fence"), key(":read-signal"), key(":writer-signal")],
        "{}",
        show(&out)
    );
    assert_eq!(
        raw.ok(&["GET", &key(":fence")]).text().as_deref(),
        Some("1")
    );
    for token in &readers {
        let out = run(&["release", "--name", &name, "--read", "--token", token]);
        assert_eq!(code(&out), Some(1), "{}", show(&out));
        let out = run(&[
            "extend", "--name", &name, "--read", "--token", token, "--ttl", "60s",
        ]);
        assert_eq!(code(&out), Some(1), "{}", show(&out));
    }
    // No reader left to refuse a writer, no intent left to refuse a reader.
    let write = token_of(&run(&["acquire", "--name", &name, "--write", "--fenced"]));
    let out = run(&["release", "--name", &name, "--write", "--token", &write]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let reader = token_of(&run(&[
        "acquire", "--name", &name, "--read", "--ttl", "60s",
    ]));

    // A writer waiting live behind a reader gets in once the reset clears the reader.
    let waiter = {
        let (url, name) = (url.clone(), name.clone());
        std::thread::spawn(move || {
            run_bounded(
                distlock(
                    &url,
                    &["acquire", "--name", &name, "--write", "--wait", "25s"],
                ),
                LIMIT,
            )
            .expect("run distlock")
        })
    };
    wait_for("the writer to queue", LIMIT, || {
        (server.raw().ok(&["ZCARD", &key(":writers")]).int() == Some(1)).then_some(())
    });
    // This time by the walk of every lock under the prefix.
    let out = run(&["reset", "--all", "--yes"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let writer = token_of(&waiter.join().expect("waiter"));
    assert_eq!(raw.ok(&["GET", &key(":writer")]).text(), Some(writer));
    let out = run(&["release", "--name", &name, "--read", "--token", &reader]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
}
