//! The operator commands `status` and `reset` against real `redis-server` processes and
//! hostile fakes: a reset deletes only keys that are provably lock keys (every other key,
//! whatever its type, is byte for byte unchanged), fences survive, an empty prefix is refused;
//! `status` says "unknown" and exits 69 when a majority of nodes cannot be read, names what
//! failed on each node, ends within its deadline against servers that misbehave, and says
//! the core's one verdict in its text and its JSON.

mod support;

use std::time::{Duration, Instant};

use support::fake::{FakeServer, Step};
use support::{
    RedisServer, distlock, require_redis, run_bounded, show, stderr, stdout, unique_name,
};

/// Every CLI run in these tests finishes within this, or the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A deadline for commands against misbehaving servers: well under the 5–10 s they took
/// when a hard-coded timeout bounded them, well over the 1 s request timeout.
const BOUNDED: Duration = Duration::from_secs(3);

fn run(url: &str, args: &[&str]) -> std::process::Output {
    run_bounded(distlock(url, args), RUN_TIMEOUT).expect("run distlock")
}

/// A token as distlock writes it.
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Keys of every type that are not locks, in and around the default prefix and outside any
/// prefix, each as the commands that make it.
fn unrelated_keys(tag: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let k = |s: &str| s.replace("TAG", tag);
    let cmd = |parts: &[&str]| parts.iter().map(|p| k(p)).collect::<Vec<String>>();
    vec![
        (k("user:1-TAG"), vec![cmd(&["SET", "user:1-TAG", "alice"])]),
        (
            k("session:abc-TAG"),
            vec![cmd(&["HSET", "session:abc-TAG", "user", "1"])],
        ),
        (k("queue-TAG"), vec![cmd(&["RPUSH", "queue-TAG", "a", "b"])]),
        (
            k("distlock:config-TAG"),
            vec![cmd(&["SET", "distlock:config-TAG", TOKEN])],
        ),
        (
            k("distlock:{TAG-x}:other"),
            vec![cmd(&["SET", "distlock:{TAG-x}:other", TOKEN])],
        ),
        // Shaped like lock keys, but not holding what the protocol writes there.
        (
            k("distlock:{TAG-word}"),
            vec![cmd(&["SET", "distlock:{TAG-word}", "alice"])],
        ),
        (
            k("distlock:{TAG-hash}"),
            vec![cmd(&["HSET", "distlock:{TAG-hash}", "f", "v"])],
        ),
        (
            k("distlock:{TAG-list}"),
            vec![cmd(&["RPUSH", "distlock:{TAG-list}", TOKEN])],
        ),
        (
            k("distlock:{TAG-set}"),
            vec![cmd(&["SADD", "distlock:{TAG-set}", TOKEN])],
        ),
        (
            k("distlock:{TAG-zset}"),
            vec![cmd(&["ZADD", "distlock:{TAG-zset}", "1", TOKEN])],
        ),
        (
            k("distlock:{TAG-stream}"),
            vec![cmd(&["XADD", "distlock:{TAG-stream}", "*", "f", TOKEN])],
        ),
        (
            k("distlock:{TAG-word}:holds"),
            vec![cmd(&["SET", "distlock:{TAG-word}:holds", "many"])],
        ),
        (
            k("distlock:{TAG-hash}:signal"),
            vec![cmd(&["HSET", "distlock:{TAG-hash}:signal", "f", "v"])],
        ),
        // Shaped like fair mode's queue, but no sorted set.
        (
            k("distlock:{TAG-word}:queue"),
            vec![cmd(&["SET", "distlock:{TAG-word}:queue", TOKEN])],
        ),
        // Shaped like a fair semaphore's queue, but no sorted set.
        (
            k("distlock:{TAG-word}:permit-queue"),
            vec![cmd(&["RPUSH", "distlock:{TAG-word}:permit-queue", TOKEN])],
        ),
        // Shaped like a read-write lock's waiting writers, but no sorted set.
        (
            k("distlock:{TAG-word}:writers"),
            vec![cmd(&["HSET", "distlock:{TAG-word}:writers", "f", TOKEN])],
        ),
        // A lock of another prefix.
        (
            k("other:{TAG-lock}"),
            vec![cmd(&["SET", "other:{TAG-lock}", TOKEN, "PX", "60000"])],
        ),
    ]
}

fn seed(server: &RedisServer, keys: &[(String, Vec<Vec<String>>)]) {
    let mut raw = server.raw();
    for (_, commands) in keys {
        for command in commands {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            raw.ok(&args);
        }
    }
}

/// `DUMP` of each key: the serialized value, equal only when the value is unchanged.
fn dumps(server: &RedisServer, keys: &[(String, Vec<Vec<String>>)]) -> Vec<(String, String)> {
    let mut raw = server.raw();
    keys.iter()
        .map(|(key, _)| {
            let dump = raw.ok(&["DUMP", key]);
            assert_ne!(dump, support::Reply::Bulk(None), "{key} is missing");
            (key.clone(), format!("{dump:?}"))
        })
        .collect()
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.raw().ok(&["EXISTS", key]).int() == Some(1)
}

/// `reset --all`: `--dry-run` lists exactly the lock keys and deletes nothing; `--yes`
/// deletes exactly them. Fences, and every unrelated key of every type in and around the
/// prefix, stay byte for byte as they were.
#[test]
fn reset_all_deletes_only_lock_keys() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let tag = unique_name("ra");
    let unrelated = unrelated_keys(&tag);
    seed(&server, &unrelated);
    let names = [format!("{tag}-a"), format!("{tag}-b")];
    for name in &names {
        let out = run(
            &url,
            &["acquire", "--name", name, "--ttl", "60s", "--fenced"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    // A re-entry count beside the first lock, as a reentrant holder leaves it.
    let holds = format!("{}:holds", support::lock_key(&names[0]));
    server.raw().ok(&["SET", &holds, "2", "PX", "60000"]);
    let before = dumps(&server, &unrelated);

    let dry = run(&url, &["reset", "--all", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    let mut expected = vec![
        support::lock_key(&names[0]),
        holds.clone(),
        support::lock_key(&names[1]),
    ];
    expected.sort();
    let listed_text = stdout(&dry);
    let listed: Vec<&str> = listed_text.lines().collect();
    assert_eq!(listed, expected, "{}", show(&dry));
    for key in &expected {
        assert!(exists(&server, key), "the dry run deleted {key}");
    }
    assert!(
        stderr(&dry).contains(&format!("left distlock:{{{tag}-word}} alone")),
        "{}",
        show(&dry)
    );

    let done = run(&url, &["reset", "--all", "--yes"]);
    assert_eq!(done.status.code(), Some(0), "{}", show(&done));
    assert!(stdout(&done).contains("deleted 3 keys"), "{}", show(&done));
    for key in &expected {
        assert!(!exists(&server, key), "{key} not reset: {}", show(&done));
    }
    for name in &names {
        let fence = format!("{}:fence", support::lock_key(name));
        assert_eq!(
            server.raw().ok(&["GET", &fence]).text().as_deref(),
            Some("1"),
            "fences survive a reset"
        );
    }
    assert_eq!(dumps(&server, &unrelated), before, "{}", show(&done));
    // The hash at a lock key's name is reported, not deleted.
    assert!(
        stdout(&done).contains(&format!("left distlock:{{{tag}-hash}} alone: it is a hash")),
        "{}",
        show(&done)
    );
}

/// Fair mode's queue: `status` counts the queued waiters; `reset --name` deletes the lock key
/// and the queue (never the fence), and a waiter still live queues again and takes the freed
/// lock.
#[test]
fn status_counts_fair_waiters_and_reset_deletes_the_queue() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("fairq");
    let queue = format!("{}:queue", support::lock_key(&name));
    let held = run(
        &url,
        &["acquire", "--name", &name, "--ttl", "60s", "--fair"],
    );
    assert_eq!(held.status.code(), Some(0), "{}", show(&held));
    let waiter = {
        let (url, name) = (url.clone(), name.clone());
        std::thread::spawn(move || {
            run(
                &url,
                &[
                    "acquire", "--name", &name, "--ttl", "60s", "--wait", "30s", "--fair",
                ],
            )
        })
    };
    support::wait_for("the waiter to queue", Duration::from_secs(10), || {
        (server.raw().ok(&["ZCARD", &queue]).int() == Some(1)).then_some(())
    });

    let status = run(&url, &["status", "--name", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status JSON");
    assert_eq!(json["nodes"][0]["queued"], 1, "{}", show(&status));
    let text = run(&url, &["status", "--name", &name]);
    assert!(stdout(&text).contains("queued 1"), "{}", show(&text));

    let dry = run(&url, &["reset", "--name", &name, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    assert!(stdout(&dry).contains(&queue), "{}", show(&dry));
    assert!(exists(&server, &queue), "the dry run deleted the queue");

    let reset = run(&url, &["reset", "--name", &name]);
    assert_eq!(reset.status.code(), Some(0), "{}", show(&reset));
    assert!(
        stdout(&reset).contains("deleted 2 keys"),
        "{}",
        show(&reset)
    );
    // The waiter is still live: its next cycle finds the lock free and takes it.
    let out = waiter.join().expect("the waiter thread");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        server
            .raw()
            .ok(&["GET", &support::lock_key(&name)])
            .text()
            .as_deref(),
        Some(stdout(&out).trim()),
        "{}",
        show(&out)
    );
}

/// An empty prefix would make the walk the whole database: refused (64) before anything is
/// sent, with or without `--yes` or `--dry-run`; every key stays.
#[test]
fn reset_all_with_an_empty_prefix_is_refused() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let tag = unique_name("rempty");
    let mut unrelated = unrelated_keys(&tag);
    unrelated.push((
        format!("{{{tag}-lock}}"),
        vec![vec![
            "SET".into(),
            format!("{{{tag}-lock}}"),
            TOKEN.into(),
            "PX".into(),
            "60000".into(),
        ]],
    ));
    seed(&server, &unrelated);
    let before = dumps(&server, &unrelated);
    for extra in ["--yes", "--dry-run"] {
        let out = run(&url, &["--prefix", "", "reset", "--all", extra]);
        assert_eq!(out.status.code(), Some(64), "{}", show(&out));
        assert!(
            stderr(&out).contains("non-empty --prefix"),
            "{}",
            show(&out)
        );
    }
    assert_eq!(dumps(&server, &unrelated), before);
}

/// `reset --name` under the redis-py layout, whose lock key is the user's own name: a hash
/// or a plain string there is left alone and reported; a real lock there is reset.
#[test]
fn reset_by_name_leaves_a_users_key_alone() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let tag = unique_name("rname");
    let (hash, word, lock) = (
        format!("user:1-{tag}"),
        format!("name-{tag}"),
        format!("job-{tag}"),
    );
    let mut raw = server.raw();
    raw.ok(&["HSET", &hash, "name", "alice"]);
    raw.ok(&["SET", &word, "alice"]);
    raw.ok(&["SET", &lock, TOKEN, "PX", "60000"]);
    let keep = [(hash.clone(), vec![]), (word.clone(), vec![])];
    let before = dumps(&server, &keep);

    let out = run(&url, &["--layout", "redis-py", "reset", "--name", &hash]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("left {hash} alone: it is a hash")),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).contains("deleted 0 keys"), "{}", show(&out));
    let out = run(&url, &["--layout", "redis-py", "reset", "--name", &word]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains("its value is not a lock token"),
        "{}",
        show(&out)
    );
    assert_eq!(dumps(&server, &keep), before);

    let out = run(&url, &["--layout", "redis-py", "reset", "--name", &lock]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("deleted 1 keys"), "{}", show(&out));
    assert!(!exists(&server, &lock));
}

/// An ACL user that may not read the lock's keys: `status` cannot know, so it says unknown,
/// names the refusal, and exits 69 (text and JSON).
#[test]
fn status_without_key_permission_is_unknown() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("noperm");
    let out = run(&server.url(), &["acquire", "--name", &name, "--ttl", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    server
        .raw()
        .ok(&["ACL", "SETUSER", "op", "on", ">pw", "~other:*", "+@all"]);
    let url = format!("redis://op:pw@127.0.0.1:{}", server.port());

    let out = run(&url, &["status", "--name", &name]);
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    assert!(stdout(&out).starts_with("unknown"), "{}", show(&out));
    assert!(stdout(&out).contains("NOPERM"), "{}", show(&out));
    assert!(!stdout(&out).contains("free"), "{}", show(&out));

    let out = run(&url, &["status", "--name", &name, "--json"]);
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["state"], "unknown", "{json}");
    assert!(
        json["nodes"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("NOPERM")),
        "{json}"
    );
}

/// A lock key that is a list cannot say who holds the lock: a per-node `WRONGTYPE` error,
/// unknown, 69. Over three nodes one such node leaves the verdict to the other two.
#[test]
fn status_of_a_lock_key_of_another_type() {
    require_redis!();
    let server = RedisServer::start();
    let name = unique_name("listkey");
    server
        .raw()
        .ok(&["RPUSH", &support::lock_key(&name), TOKEN]);
    let out = run(&server.url(), &["status", "--name", &name]);
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    assert!(stdout(&out).starts_with("unknown"), "{}", show(&out));
    assert!(stdout(&out).contains("WRONGTYPE"), "{}", show(&out));

    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let urls = servers
        .iter()
        .map(RedisServer::url)
        .collect::<Vec<_>>()
        .join(",");
    // The lock held on every node (an acquire through the command returns at a quorum and may
    // leave the third node without it, which is not what this test is about).
    let token = TOKEN.to_owned();
    for server in &servers {
        server
            .raw()
            .ok(&["SET", &support::lock_key(&name), &token, "PX", "60000"]);
    }
    let to_list = |server: &RedisServer| {
        let mut raw = server.raw();
        raw.ok(&["DEL", &support::lock_key(&name)]);
        raw.ok(&["RPUSH", &support::lock_key(&name), &token]);
    };
    to_list(&servers[0]);
    let out = run(&urls, &["status", "--name", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).starts_with(&format!("held by {token}")),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).contains("WRONGTYPE"), "{}", show(&out));
    to_list(&servers[1]);
    let out = run(&urls, &["status", "--name", &name]);
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    assert!(stdout(&out).starts_with("unknown"), "{}", show(&out));
}

/// `status` over a Redlock of three reports the core's one verdict in its text, its JSON and
/// its exit status, also where the host used to decide again: a semaphore's permits or a
/// read-write lock's holds on one node of three are no majority, so the name is not held
/// ("not held", `free`), the node's own line still showing them; on a single node the same
/// holds are the name's (`held`).
#[test]
fn status_text_and_json_read_the_cores_verdict_over_three_nodes() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let first = servers[0].url();
    let all = servers
        .iter()
        .map(RedisServer::url)
        .collect::<Vec<_>>()
        .join(",");
    let sem = unique_name("minority-sem");
    let rw = unique_name("minority-rw");
    for args in [
        &["acquire", "--name", &sem, "--limit", "2", "--ttl", "60s"][..],
        &["acquire", "--name", &rw, "--read", "--ttl", "60s"],
    ] {
        let out = run(&first, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
    }
    for (name, holds) in [
        (&sem, "semaphore: 1 of 2 permits held"),
        (&rw, "read-write lock: 1 readers"),
    ] {
        let out = run(&all, &["status", "--name", name]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let text = stdout(&out);
        assert!(text.starts_with("not held"), "{}", show(&out));
        let node_0 = text
            .lines()
            .find(|l| l.starts_with("node 0 ("))
            .unwrap_or_default();
        assert!(node_0.ends_with(holds), "{text}");
        let out = run(&all, &["status", "--name", name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["state"], "free", "{json}");
        assert!(json["holder"].is_null(), "{json}");
        // The first node alone: the holds are the name's.
        let out = run(&first, &["status", "--name", name, "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["state"], "held", "{json}");
    }
}

/// Servers that handshake and then misbehave — garbage, a closed connection, silence, a
/// reply dripping byte by byte: `status` and `reset` say what failed, exit 69, and end
/// within their deadline.
#[test]
fn operator_commands_against_hostile_servers_are_unknown_and_bounded() {
    let mut drip = format!("${}\r\n", 6000).into_bytes();
    drip.extend(std::iter::repeat_n(b'a', 6000));
    drip.extend_from_slice(b"\r\n");
    let cases: [(&str, Vec<Step>); 4] = [
        ("garbage", vec![Step::always(b"garbage\r\n")]),
        (
            "close",
            vec![Step::Repeat(Box::new(Step::SendAndClose(Vec::new())))],
        ),
        ("silent", vec![]),
        ("drip", vec![Step::Repeat(Box::new(Step::Trickle(drip, 1)))]),
    ];
    for (what, script) in cases {
        for args in [
            &["status", "--name", "hostile"][..],
            &["reset", "--name", "hostile"],
        ] {
            let fake = FakeServer::start(script.clone());
            let started = Instant::now();
            let out = run(&fake.url(), args);
            let took = started.elapsed();
            assert_eq!(
                out.status.code(),
                Some(69),
                "{what} {args:?}: {}",
                show(&out)
            );
            assert!(
                took < BOUNDED,
                "{what} {args:?} took {took:?}: {}",
                show(&out)
            );
            if args[0] == "status" {
                assert!(
                    stdout(&out).starts_with("unknown"),
                    "{what}: {}",
                    show(&out)
                );
                assert!(
                    stdout(&out).contains("could not be read"),
                    "{what}: {}",
                    show(&out)
                );
            } else {
                assert!(stdout(&out).contains("failed"), "{what}: {}", show(&out));
            }
        }
    }
}
