//! Multi-name locks ([`Client::lock_many`]) against a real `redis-server`: every name or
//! none (a set with one name held takes nothing, not even its free names), one token and one
//! expiry for all, exclusion against plain locks of the same names and between overlapping
//! sets (observed by the holders themselves), a crashed holder's names all free at its TTL,
//! one fence above every earlier holder's of each name, a set meeting a semaphore's or a
//! read-write lock's name refused with `WRONGTYPE` (76) instead of waiting, and bad input
//! refused before anything is sent.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::{ConfigError, MAX_MULTI_NAMES, ServerErrorKind};
use distlock_host::{Client, Error};
use support::{
    RedisServer, blocking, command_calls, lock_key, require_redis, unique_name, wait_for,
};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);

fn get(server: &RedisServer, name: &str) -> Option<String> {
    blocking(|| server.raw().ok(&["GET", &lock_key(name)]).text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_or_none() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let (a, b) = (
        Client::connect([server.url()]).await.unwrap(),
        Client::connect([server.url()]).await.unwrap(),
    );
    let [x, y, z] = ["x", "y", "z"].map(|n| unique_name(&format!("multi-{n}")));

    let both = a.lock_many([&y, &x]).acquire().await.expect("both free");
    assert_eq!(get(&server, &x).as_deref(), Some(both.token()));
    assert_eq!(get(&server, &y).as_deref(), Some(both.token()));
    let mut names: Vec<&[u8]> = both.names().collect();
    names.sort();
    assert_eq!(names, [x.as_bytes(), y.as_bytes()], "sorted, every name");

    // A plain lock of one of the names, and a set that overlaps, are refused; the overlapping
    // set takes nothing, not even its free name.
    let plain = b.lock(&y).try_acquire().await.unwrap_err();
    assert!(plain.is_not_acquired(), "{plain:?}");
    let overlapping = b.lock_many([&y, &z]).try_acquire().await.unwrap_err();
    assert!(overlapping.is_not_acquired(), "{overlapping:?}");
    assert_eq!(
        get(&server, &z),
        None,
        "all or nothing: the free name was not taken"
    );

    both.release().await.expect("released together");
    assert_eq!((get(&server, &x), get(&server, &y)), (None, None));
    let taken = b.lock_many([&y, &z]).try_acquire().await.expect("free now");
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_sets_never_hold_a_name_together() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let names: Vec<String> = (0..3).map(|i| unique_name(&format!("ring-{i}"))).collect();
    // Each worker takes two neighbours of a ring of three names (every pair overlaps
    // another), a fourth takes one name alone, as a plain lock; inside, each marks its names
    // busy and counts it an overlap when one already was.
    let sets: Vec<Vec<String>> = vec![
        vec![names[0].clone(), names[1].clone()],
        vec![names[1].clone(), names[2].clone()],
        vec![names[2].clone(), names[0].clone()],
        vec![names[1].clone()],
    ];
    let busy: Arc<Vec<AtomicBool>> = Arc::new((0..3).map(|_| AtomicBool::new(false)).collect());
    let overlaps = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for set in sets {
        let client = Client::connect([server.url()]).await.unwrap();
        let (busy, overlaps, names) = (Arc::clone(&busy), Arc::clone(&overlaps), names.clone());
        workers.push(tokio::spawn(async move {
            let slots: Vec<usize> = set
                .iter()
                .map(|n| names.iter().position(|m| m == n).unwrap())
                .collect();
            let mut held = 0u32;
            for _ in 0..25 {
                let builder = if set.len() == 1 {
                    client.lock(&set[0])
                } else {
                    client.lock_many(&set)
                };
                let guard = builder
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .await
                    .expect("every worker gets its turn");
                for &i in &slots {
                    if busy[i].swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // Hold ~1 ms (the hold, not a synchronisation): the others' attempts land
                // while this one is inside.
                tokio::time::sleep(Duration::from_millis(1)).await;
                for &i in &slots {
                    busy[i].store(false, Ordering::SeqCst);
                }
                guard.release().await.expect("release");
                held += 1;
            }
            held
        }));
    }
    for worker in workers {
        let held = tokio::time::timeout(LIMIT, worker)
            .await
            .expect("the workers finish")
            .expect("a worker");
        assert_eq!(held, 25);
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "a name was held twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_names_all_free_at_its_ttl() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let [x, y] = ["x", "y"].map(|n| unique_name(&format!("crash-{n}")));
    let ttl = Duration::from_millis(1500);
    let guard = client.lock_many([&x, &y]).ttl(ttl).acquire().await.unwrap();
    let taken = Instant::now();
    // One expiry for all: the keys' remaining lives differ by no more than the time between
    // the two reads.
    let pttl = |name: &str| blocking(|| server.raw().ok(&["PTTL", &lock_key(name)]).int().unwrap());
    let (px, py) = (pttl(&x), pttl(&y));
    assert!((px - py).abs() <= 50, "one expiry: {px} ms and {py} ms");
    // The holder dies: nothing releases or renews.
    std::mem::forget(guard);
    blocking(|| {
        wait_for("both names to expire", LIMIT, || {
            (get(&server, &x).is_none() && get(&server, &y).is_none()).then_some(())
        })
    });
    assert!(
        taken.elapsed() >= ttl - Duration::from_millis(100),
        "not before the TTL"
    );
    let again = client
        .lock_many([&x, &y])
        .try_acquire()
        .await
        .expect("free");
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fence_above_every_earlier_holders_of_each_name() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let [x, y] = ["x", "y"].map(|n| unique_name(&format!("fence-{n}")));
    let fence_of = |builder: distlock_host::LockBuilder| async move {
        let guard = builder.fenced(true).acquire().await.unwrap();
        let fence = guard.fence().expect("fenced");
        guard.release().await.unwrap();
        fence
    };
    let first_x = fence_of(client.lock(&x)).await;
    let second_x = fence_of(client.lock(&x)).await;
    let first_y = fence_of(client.lock(&y)).await;
    let both = fence_of(client.lock_many([&x, &y])).await;
    assert!(
        both > second_x.max(first_x) && both > first_y,
        "{both} after {second_x}, {first_y}"
    );
    let next_y = fence_of(client.lock(&y)).await;
    assert!(next_y > both, "counters only grow: {next_y} after {both}");
}

/// The scripts batch their reads and deletes: a free set of 4 names costs one `EXISTS` (no
/// per-name `TYPE`) to take and one `MGET` and one `DEL` to release, and still pushes every
/// released name's wake-up signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_set_is_taken_and_released_with_batched_reads() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let names = ["a", "b", "c", "d"].map(|n| unique_name(&format!("batched-{n}")));
    let before = blocking(|| stats(&server));
    let set = client.lock_many(&names).try_acquire().await.expect("free");
    set.release().await.expect("released");
    let after = blocking(|| stats(&server));
    let calls = |command: &str| command_calls(&after, command) - command_calls(&before, command);
    let counted = ["type", "get", "exists", "mget", "del", "lpush", "pexpire"].map(calls);
    assert_eq!(counted, [0, 0, 1, 1, 1, 4, 4], "{after}");
    let mut raw = server.raw();
    for name in &names {
        let signal = format!("{}:signal", lock_key(name));
        assert_eq!(raw.ok(&["LLEN", &signal]).int(), Some(1), "{name}");
        assert_eq!(
            raw.ok(&["EXISTS", &lock_key(name)]).int(),
            Some(0),
            "{name}"
        );
    }
}

/// A release by token frees only the names the token holds: a name taken over by another
/// holder keeps it, a semaphore's name among them is read as not the token's (no
/// `WRONGTYPE`, nothing half-done), only the freed name gets a wake-up signal, and the
/// guard's own release then finds nothing to free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_frees_only_the_names_its_token_holds() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let [mine, taken, sem] = ["mine", "taken", "sem"].map(|n| unique_name(&format!("part-{n}")));
    let set = client
        .lock_many([&mine, &taken])
        .try_acquire()
        .await
        .expect("free");
    let token = set.token().to_owned();
    let permit = client.semaphore(&sem, 2).try_acquire().await.expect("free");
    let mut raw = server.raw();
    // As if `taken`'s key had expired and another holder had taken it.
    raw.ok(&["SET", &lock_key(&taken), "another-holder"]);

    client
        .release_many(&[&mine, &taken, &sem], &token)
        .await
        .expect("the token held one of them");
    assert_eq!(get(&server, &mine), None);
    assert_eq!(get(&server, &taken).as_deref(), Some("another-holder"));
    assert_eq!(raw.ok(&["ZCARD", &lock_key(&sem)]).int(), Some(1));
    let signal = |name: &str| format!("{}:signal", lock_key(name));
    assert_eq!(raw.ok(&["LLEN", &signal(&mine)]).int(), Some(1));
    assert_eq!(raw.ok(&["EXISTS", &signal(&taken)]).int(), Some(0));
    assert_eq!(raw.ok(&["EXISTS", &signal(&sem)]).int(), Some(0));

    let again = set.release().await;
    assert!(
        matches!(&again, Err(Error::Lock(distlock_core::Error::NotHeld))),
        "{again:?}"
    );
    permit.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sets_are_refused_before_anything_is_sent() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let stats = || blocking(|| server.raw().ok(&["INFO", "commandstats"]).text().unwrap());
    let before = stats();
    let name = unique_name("bad");
    let config = |result: Result<distlock_host::Guard, Error>| match result {
        Err(Error::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        config(client.lock_many(Vec::<String>::new()).try_acquire().await),
        ConfigError::NoNames
    );
    let many: Vec<String> = (0..=MAX_MULTI_NAMES)
        .map(|i| format!("{name}-{i}"))
        .collect();
    assert!(matches!(
        config(client.lock_many(&many).try_acquire().await),
        ConfigError::TooManyNames { .. }
    ));
    assert!(matches!(
        config(client.lock_many([&name, &name]).try_acquire().await),
        ConfigError::DuplicateName { .. }
    ));
    assert_eq!(
        config(client.lock_many([&name]).fair(true).try_acquire().await),
        ConfigError::MultiUnsupported
    );
    let after = stats();
    for command in ["set", "eval", "evalsha"] {
        assert_eq!(
            command_calls(&after, command),
            command_calls(&before, command),
            "{command} was sent: {after}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// On the command line: `--name` repeated.
// ---------------------------------------------------------------------------------------

fn cli(url: &str, args: &[&str]) -> std::process::Output {
    support::run_bounded(support::distlock(url, args), LIMIT).expect("run distlock")
}

fn stats(server: &RedisServer) -> String {
    server
        .raw()
        .ok(&["INFO", "commandstats"])
        .text()
        .unwrap_or_default()
}

/// A job holding the names `$NAMES`: counts itself into each name's Redis counter (the value
/// it saw appended to `$SEEN`: above 1, two holders of a name at once), says it started,
/// stays until the test creates `$DIR/go`, and counts itself out.
const NAMES_JOB: &str = r#"
cli() { "$CLI" -p "$PORT" "$@"; }
for n in $NAMES; do cli INCR "in:$n" >> "$SEEN"; done
touch "$DIR/started-$ID"
i=0
while [ ! -e "$DIR/go" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
for n in $NAMES; do cli DECR "in:$n" > /dev/null; done
"#;

/// Two `exec` with overlapping name sets never run together: the second waits (seen
/// blocking on a wake-up list) while the first holds, and a set disjoint from the first runs
/// beside it; every name's counter never saw two holders.
#[test]
fn cli_execs_with_overlapping_names_never_run_together() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("seen");
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| unique_name(&format!("cli-{n}")));
    let spawn = |id: &str, names: &[&String]| {
        let mut args = vec!["exec"];
        for name in names {
            args.extend(["--name", name.as_str()]);
        }
        args.extend(["--wait", "25s", "--", "sh", "-c", NAMES_JOB]);
        let joined: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        support::KillOnDrop(
            support::distlock(&url, &args)
                .env("CLI", support::redis_cli_binary().expect("redis-cli"))
                .env("PORT", server.port().to_string())
                .env("SEEN", &seen)
                .env("DIR", dir.path())
                .env("ID", id)
                .env("NAMES", joined.join(" "))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn distlock exec"),
        )
    };
    let started = |id: &str| dir.path().join(format!("started-{id}")).exists();
    let mut first = spawn("ab", &[&b, &a]);
    wait_for("{a, b} to start", LIMIT, || started("ab").then_some(()));
    let blpops = command_calls(&stats(&server), "blpop");
    let mut second = spawn("bc", &[&b, &c]);
    wait_for("{b, c} to wait on a wake-up list", LIMIT, || {
        (command_calls(&stats(&server), "blpop") > blpops).then_some(())
    });
    let mut disjoint = spawn("cd", &[&d, &c]);
    wait_for("{c, d} to start beside {a, b}", LIMIT, || {
        started("cd").then_some(())
    });
    assert!(!started("bc"), "{{b, c}} ran beside {{a, b}} or {{c, d}}");
    std::fs::write(dir.path().join("go"), "").expect("go");
    for (what, child) in [
        ("{a, b}", &mut first),
        ("{b, c}", &mut second),
        ("{c, d}", &mut disjoint),
    ] {
        let status = wait_for(what, LIMIT, || child.0.try_wait().expect("wait"));
        assert!(status.success(), "{what}: {status}");
    }
    assert!(started("bc"));
    let seen = std::fs::read_to_string(&seen).expect("seen");
    let counts: Vec<&str> = seen.lines().collect();
    assert_eq!(counts.len(), 6, "every job counted itself into its names");
    assert!(
        counts.iter().all(|c| *c == "1"),
        "two holders of one name at once: {counts:?}"
    );
}

/// `acquire` with several names prints one token; `extend` and `release` take the same names
/// (in any order) with it. A killed `exec`'s names expire together: never one without the
/// other.
#[test]
fn cli_acquire_extend_release_and_a_killed_holders_names_expire_together() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let [x, y] = ["x", "y"].map(|n| unique_name(&format!("cli-{n}")));
    let out = cli(
        &url,
        &["acquire", "--name", &x, "--name", &y, "--ttl", "60s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    let token = support::stdout(&out).trim().to_owned();
    assert_eq!(get(&server, &x).as_deref(), Some(token.as_str()));
    assert_eq!(get(&server, &y).as_deref(), Some(token.as_str()));
    // Held: a plain lock of one of the names is refused (75).
    let out = cli(&url, &["acquire", "--name", &y]);
    assert_eq!(out.status.code(), Some(75), "{}", support::show(&out));
    let out = cli(
        &url,
        &[
            "extend", "--name", &y, "--name", &x, "--token", &token, "--ttl", "90s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    for name in [&x, &y] {
        let ttl = server
            .raw()
            .ok(&["PTTL", &lock_key(name)])
            .int()
            .expect("PTTL");
        assert!(ttl > 60_000, "{name} not extended: {ttl}");
    }
    let out = cli(
        &url,
        &["release", "--name", &y, "--name", &x, "--token", &token],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    assert_eq!((get(&server, &x), get(&server, &y)), (None, None));
    let out = cli(
        &url,
        &["release", "--name", &x, "--name", &y, "--token", &token],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "not held any more: {}",
        support::show(&out)
    );

    // A holder killed with SIGKILL: nobody renews or releases; both names go at once.
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("job.pid");
    let mut holder = support::KillOnDrop(
        support::distlock(
            &url,
            &[
                "exec",
                "--name",
                &x,
                "--name",
                &y,
                "--ttl",
                "2s",
                "--",
                "sh",
                "-c",
                "echo $$ > \"$PIDFILE\"; exec sleep 60",
            ],
        )
        .env("PIDFILE", &pidfile)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn exec"),
    );
    let pid: u32 = wait_for("the job to start", LIMIT, || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    });
    holder.0.kill().expect("SIGKILL distlock");
    let _ = holder.0.wait();
    support::holders::kill_if_running(pid);
    let (kx, ky) = (lock_key(&x), lock_key(&y));
    let mut observed = Vec::new();
    wait_for("both names to expire", LIMIT, || {
        let live = server
            .raw()
            .ok(&["EXISTS", &kx, &ky])
            .int()
            .expect("EXISTS");
        observed.push(live);
        (live == 0).then_some(())
    });
    assert!(
        observed.iter().all(|&live| live == 2 || live == 0),
        "one name outlived the other: {observed:?}"
    );
    assert_eq!(
        observed.first(),
        Some(&2),
        "the names were still held after the kill"
    );
}

/// Flags about one name make no sense with several: a usage error (64), as are a name given
/// twice and more names than the core takes; nothing is sent.
#[test]
fn cli_refuses_one_name_flags_with_several_names() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let token = "0123456789abcdef0123456789abcdef";
    let many: Vec<String> = (0..=MAX_MULTI_NAMES).map(|i| format!("n{i}")).collect();
    let mut too_many = vec!["exec"];
    for name in &many {
        too_many.extend(["--name", name.as_str()]);
    }
    too_many.extend(["--", "true"]);
    for args in [
        &[
            "exec", "--name", "a", "--name", "b", "--limit", "2", "--", "true",
        ][..],
        &["exec", "--name", "a", "--name", "b", "--read", "--", "true"],
        &["acquire", "--name", "a", "--name", "b", "--write"],
        &["exec", "--name", "a", "--name", "b", "--fair", "--", "true"],
        &["exec", "--name", "a", "--name", "a", "--", "true"],
        &too_many,
        &[
            "release",
            "--name",
            "a",
            "--name",
            "b",
            "--token",
            token,
            "--reentrant",
        ],
        &[
            "release", "--name", "a", "--name", "b", "--token", token, "--limit", "2",
        ],
        &[
            "extend", "--name", "a", "--name", "b", "--token", token, "--ttl", "5s", "--read",
        ],
    ] {
        let out = cli(&url, args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            support::show(&out)
        );
    }
    let keys = server.raw().ok(&["DBSIZE"]).int();
    assert_eq!(keys, Some(0), "a refused command wrote something");
}

/// `exec` with several names renews them together past several TTLs (both keys keep the
/// job's token) and releases them together when the job ends.
#[test]
fn cli_exec_renews_and_releases_its_names_together() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let [x, y] = ["x", "y"].map(|n| unique_name(&format!("renew-{n}")));
    let ttl = Duration::from_millis(600);
    let mut exec = support::KillOnDrop(
        support::distlock(
            &url,
            &[
                "exec", "--name", &x, "--name", &y, "--ttl", "600ms", "--", "sh", "-c",
                "echo \"$DISTLOCK_TOKEN\" > \"$DIR/token\"; i=0; while [ ! -e \"$DIR/go\" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done",
            ],
        )
        .env("DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn exec"),
    );
    let token = wait_for("the job's token", LIMIT, || {
        std::fs::read_to_string(dir.path().join("token"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    let renewed_past = Instant::now() + 3 * ttl;
    wait_for("three TTLs to pass while the job runs", LIMIT, || {
        (Instant::now() >= renewed_past).then_some(())
    });
    assert_eq!(
        get(&server, &x).as_deref(),
        Some(token.as_str()),
        "{x} renewed"
    );
    assert_eq!(
        get(&server, &y).as_deref(),
        Some(token.as_str()),
        "{y} renewed"
    );
    std::fs::write(dir.path().join("go"), "").expect("go");
    let status = wait_for("exec to end", LIMIT, || exec.0.try_wait().expect("wait"));
    assert!(status.success(), "{status}");
    assert_eq!(
        (get(&server, &x), get(&server, &y)),
        (None, None),
        "released together"
    );
}

/// A set one of whose names is a semaphore's or a read-write lock's: the acquire script reads
/// each name's `TYPE`, and another kind is `WRONGTYPE` (exit 76) at once, even when another
/// name of the set is held, instead of a wait until the deadline (an hour here, far past what
/// the test allows). The set's free names stay free, the other holders keep their holds.
#[test]
fn a_set_meeting_another_kind_of_locks_name_fails_with_wrongtype() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let [free, held, sem, rw] =
        ["free", "held", "sem", "rw"].map(|n| unique_name(&format!("kind-{n}")));
    for args in [
        &["acquire", "--name", &sem, "--limit", "2", "--ttl", "60s"][..],
        &["acquire", "--name", &rw, "--read", "--ttl", "60s"],
        &["acquire", "--name", &held, "--ttl", "60s"],
    ] {
        let out = cli(&url, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            support::show(&out)
        );
    }
    let held_by = get(&server, &held);
    for other in [&sem, &rw] {
        for wait in ["0s", "1h"] {
            for with in [&free, &held] {
                let out = cli(
                    &url,
                    &["acquire", "--name", with, "--name", other, "--wait", wait],
                );
                assert_eq!(out.status.code(), Some(76), "{}", support::show(&out));
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("WRONGTYPE"),
                    "{}",
                    support::show(&out)
                );
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect([url.as_str()]).await.expect("connect");
        for other in [&sem, &rw] {
            let refused = tokio::time::timeout(
                LIMIT,
                client
                    .lock_many([&free, other])
                    .wait(Duration::from_secs(3600))
                    .acquire(),
            )
            .await
            .expect("the set fails instead of waiting");
            assert!(
                matches!(&refused, Err(Error::Lock(distlock_core::Error::Server { error, .. })) if error.kind == ServerErrorKind::WrongType),
                "{other}: {refused:?}"
            );
        }
    });
    assert_eq!(get(&server, &free), None, "the free name was not taken");
    assert_eq!(
        get(&server, &held),
        held_by,
        "the held name kept its holder"
    );
    let mut raw = server.raw();
    assert_eq!(raw.ok(&["ZCARD", &lock_key(&sem)]).int(), Some(1));
    assert_eq!(
        raw.ok(&["ZCARD", &format!("{}:readers", lock_key(&rw))])
            .int(),
        Some(1)
    );
}
