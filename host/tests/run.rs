//! `distlock run`, as a user runs it: real `distlock` processes running the built-in example
//! guest (`run --example -- count NAME FILE N HOLD_MS`) against real `redis-server`s, on both
//! ways of serving the guest (linked to the lock component, and `--native`).
//!
//! - A signal (TERM, INT) stops the guest wherever it is, the host releases what it held, and
//!   the command exits 128 + the signal's number.
//! - `--time-limit` stops a guest that waits for a lock or sleeps while it holds one (not
//!   only one that computes), and the output says one true thing.
//! - A frozen node costs the lock component's operations their vote, not a connect timeout.
//! - On a Redis Cluster and through a Sentinel group (URLs the lock component cannot route:
//!   the guest is served natively, said once) each lock lands on the primary that owns it,
//!   and a guest waiting for a lock across a forced failover takes it on the promoted primary.
//!   Routed URLs that cannot be used are refused before the guest starts (exit 64).

mod support;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::sentinel::{SERVICE, SentinelGroup};
use support::{
    KillOnDrop, RedisServer, distlock, lock_key, require_redis, run_bounded, send_signal, show,
    stderr, stdout, unique_name, wait_for,
};

/// Each way of serving the guest's `distlock` import: (label, extra `run` flags).
const SERVES: [(&str, &[&str]); 2] = [("linked", &[]), ("native", &["--native"])];

/// What `run` says (once) when it serves a guest natively because a URL needs routing.
const SERVED_NATIVELY: &str = "serving the guest natively";

/// The `run` arguments for the example guest counting `iterations` times on `name`, holding
/// the lock `hold_ms` each time, with its counter file in `dir`.
fn count_args<'a>(
    serve: &'a [&'a str],
    extra: &'a [&'a str],
    dir_arg: &'a str,
    name: &'a str,
    iterations: &'a str,
    hold_ms: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["run", "--example", "--dir", dir_arg];
    args.extend_from_slice(serve);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "count", name, "/data/counter", iterations, hold_ms]);
    args
}

/// `HOST::/data` for `--dir`.
fn dir_arg(dir: &Path) -> String {
    format!("{}::/data", dir.display())
}

/// Spawns `command` with its output piped (read after it exits).
fn spawn(mut command: Command) -> KillOnDrop {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    KillOnDrop(command.spawn().expect("spawn distlock run"))
}

/// Waits (at most `limit`) for `child` to exit; its status and output.
fn wait_exit(child: &mut KillOnDrop, limit: Duration) -> (ExitStatus, Output) {
    let status = wait_for("distlock run to exit", limit, || {
        child.0.try_wait().expect("try_wait")
    });
    let child: &mut Child = &mut child.0;
    let mut out = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read as _;
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut out.stdout);
    }
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut out.stderr);
    }
    (status, out)
}

fn exists(server: &RedisServer, name: &str) -> bool {
    server.raw().ok(&["EXISTS", &lock_key(name)]).int() == Some(1)
}

/// The counter file's count, once the guest wrote it.
fn counted(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("counter"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// How often `out`'s stderr says the guest is served natively.
fn native_notes(out: &Output) -> usize {
    stderr(out).matches(SERVED_NATIVELY).count()
}

/// A signal to `distlock run` while its guest holds a lease (sleeping through a long hold):
/// the guest is stopped, the lease released before distlock exits (not at its TTL), and the
/// exit code is 128 + the signal.
#[test]
fn a_signal_stops_the_guest_and_releases_its_lease() {
    require_redis!();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    for (label, serve) in SERVES {
        for (signal, code) in [("TERM", 143), ("INT", 130)] {
            let name = unique_name("run-signal");
            // One iteration holding the lock for a minute: far past the test's bounds.
            let args = count_args(serve, &[], &dir_arg, &name, "1", "60000");
            let mut child = spawn(distlock(&server.url(), &args));
            wait_for(
                &format!("{label}: the guest to hold {name}"),
                Duration::from_secs(20),
                || exists(&server, &name).then_some(()),
            );
            let signalled = Instant::now();
            send_signal(child.0.id(), signal);
            let (status, out) = wait_exit(&mut child, Duration::from_secs(10));
            assert!(
                !exists(&server, &name),
                "{label}/{signal}: the lock is still held after distlock exited\n{}",
                show(&out)
            );
            assert_eq!(
                status.code(),
                Some(code),
                "{label}/{signal}: after {:?}\n{}",
                signalled.elapsed(),
                show(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains("released 1 lease") && err.contains("stopped by signal"),
                "{label}/{signal}: {err}"
            );
            assert!(!err.contains("not released"), "{label}/{signal}: {err}");
        }
    }
}

/// SIGTERM while the guest waits for a lock another owner holds: it stops waiting at once,
/// exits 143, and the other owner's lock is untouched.
#[test]
fn a_signal_stops_a_guest_waiting_for_a_lock() {
    require_redis!();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    for (label, serve) in SERVES {
        let name = unique_name("run-signal-wait");
        server
            .raw()
            .ok(&["SET", &lock_key(&name), "someone-else", "PX", "60000"]);
        let args = count_args(serve, &[], &dir_arg, &name, "1", "1");
        let mut child = spawn(distlock(&server.url(), &args));
        // The example waits up to 30 s, blocked on the lock's wake-up list.
        wait_for(
            &format!("{label}: the guest to wait for {name}"),
            Duration::from_secs(20),
            || (server.blocked_clients() >= 1).then_some(()),
        );
        send_signal(child.0.id(), "TERM");
        let (status, out) = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(143), "{label}\n{}", show(&out));
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &lock_key(&name)])
                .text()
                .as_deref(),
            Some("someone-else"),
            "{label}: the other owner's lock was touched"
        );
    }
}

/// `--time-limit 1s` on a guest blocked waiting for a held lock (it would wait 30 s) and on
/// one sleeping while it holds (a 60 s hold): each ends within a few seconds with exit 70,
/// says it ran past its time limit, its own lease is released, and no message contradicts
/// another.
#[test]
fn the_time_limit_holds_while_the_guest_waits_or_sleeps() {
    require_redis!();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    let limit = ["--time-limit", "1s"];
    for (label, serve) in SERVES {
        // Waiting for a lock someone else holds.
        let name = unique_name("run-limit-wait");
        server
            .raw()
            .ok(&["SET", &lock_key(&name), "someone-else", "PX", "60000"]);
        let args = count_args(serve, &limit, &dir_arg, &name, "1", "1");
        let started = Instant::now();
        let out = run_bounded(distlock(&server.url(), &args), Duration::from_secs(30))
            .expect("run distlock");
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(70), "{label}: {}", show(&out));
        assert!(
            took < Duration::from_secs(10),
            "{label}: a waiting guest ran {took:?} under a 1 s limit"
        );
        let err = stderr(&out);
        assert!(err.contains("time limit of 1s"), "{label}: {err}");
        assert!(
            !err.contains("released") && !err.contains("not released"),
            "{label}: the guest held nothing, yet: {err}"
        );
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &lock_key(&name)])
                .text()
                .as_deref(),
            Some("someone-else"),
            "{label}: the other owner's lock was touched"
        );

        // Sleeping while it holds.
        let name = unique_name("run-limit-hold");
        let args = count_args(serve, &limit, &dir_arg, &name, "1", "60000");
        let started = Instant::now();
        let out = run_bounded(distlock(&server.url(), &args), Duration::from_secs(30))
            .expect("run distlock");
        let took = started.elapsed();
        assert!(
            !exists(&server, &name),
            "{label}: the lease outlived distlock\n{}",
            show(&out)
        );
        assert_eq!(out.status.code(), Some(70), "{label}: {}", show(&out));
        assert!(
            took < Duration::from_secs(10),
            "{label}: a sleeping guest ran {took:?} under a 1 s limit"
        );
        let err = stderr(&out);
        assert!(
            err.contains("time limit of 1s") && err.contains("released 1 lease"),
            "{label}: {err}"
        );
        assert!(
            !err.contains("not released") && !err.contains("fail"),
            "{label}: {err}"
        );
    }
}

/// Redlock over three nodes with one frozen (SIGSTOP) from the start: the lock component
/// counts to N with each operation (an acquire, a release) costing at most about a request
/// timeout (1 s), not the 5 s connect timeout it paid for reconnecting the frozen node before
/// each one. The bound is 2 operations × N × the request timeout, plus start-up.
#[test]
fn a_frozen_node_costs_the_lock_component_a_vote_not_a_connect_timeout() {
    require_redis!();
    const ITERATIONS: u32 = 6;
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    servers[2].pause();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    let name = unique_name("run-frozen");
    let iterations = ITERATIONS.to_string();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let mut full = vec!["--redis", urls[1].as_str(), "--redis", urls[2].as_str()];
    full.extend(count_args(&[], &[], &dir_arg, &name, &iterations, "1"));
    let bound = REQUEST_TIMEOUT * 2 * ITERATIONS + Duration::from_secs(8);
    let started = Instant::now();
    let out =
        run_bounded(distlock(&urls[0], &full), Duration::from_secs(120)).expect("run distlock");
    let took = started.elapsed();
    servers[2].resume();
    eprintln!("{ITERATIONS} iterations over 3 nodes, one frozen: {took:?} (bound {bound:?})");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("counter"))
            .expect("the counter file")
            .trim(),
        iterations,
        "every iteration counted"
    );
    assert!(
        took < bound,
        "{ITERATIONS} iterations with a frozen node took {took:?}: more than {bound:?}, so \
         operations waited on connects\n{}",
        show(&out)
    );
}

/// The same with the node frozen mid-run, its connection open: the first operation after the
/// freeze waits out the request timeout for it, then the silent connection is dropped and the
/// node reconnected in the background, so the later operations do not wait for it again.
/// (Keeping the connection cost every remaining operation a request timeout.) The bound is a
/// few request timeouts plus the holds and start-up, far below one per remaining operation.
#[test]
fn a_node_frozen_mid_run_costs_the_lock_component_one_request_timeout() {
    require_redis!();
    const ITERATIONS: u32 = 14;
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    let name = unique_name("run-frozen-mid");
    let iterations = ITERATIONS.to_string();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let mut args = vec!["--redis", urls[1].as_str(), "--redis", urls[2].as_str()];
    args.extend(count_args(&[], &[], &dir_arg, &name, &iterations, "50"));
    let mut child = spawn(distlock(&urls[0], &args));
    let counter = dir.path().join("counter");
    let count = || {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
    };
    // Every node has answered an operation by now: the frozen one's connection is open.
    wait_for("two iterations", Duration::from_secs(20), || {
        count().filter(|&n| n >= 2)
    });
    servers[2].pause();
    let frozen = Instant::now();
    let (status, out) = wait_exit(&mut child, Duration::from_secs(60));
    let took = frozen.elapsed();
    servers[2].resume();
    eprintln!("the rest of {ITERATIONS} iterations after a node froze: {took:?}");
    assert!(status.success(), "{}", show(&out));
    assert_eq!(count(), Some(ITERATIONS), "every iteration counted");
    let bound =
        REQUEST_TIMEOUT * 4 + Duration::from_millis(50) * ITERATIONS + Duration::from_secs(3);
    assert!(
        took < bound,
        "after the freeze the run took {took:?}, more than {bound:?}: operations kept waiting \
         for the frozen node\n{}",
        show(&out)
    );
}

/// `run` on a Redis Cluster given only a seed that does not own the lock's slot, both ways:
/// without `--native` the guest is served natively all the same (the lock component talks
/// to fixed nodes) and stderr says so once. Every lock lands on the primary that owns the
/// slot of its key (`CLUSTER KEYSLOT`, `GET` on that primary while the guest holds it), the
/// guest counts to the end, and nothing is left on the owner.
#[test]
fn a_guest_locks_on_a_cluster_through_a_seed_that_does_not_own_its_slot() {
    require_redis!();
    let cluster = Cluster::start(3);
    let url = cluster.url(&[0]);
    for (label, serve) in SERVES {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir_arg = dir_arg(dir.path());
        let name = cluster.name_on(2, "run-cluster");
        let key = lock_key(&name);
        let owner = cluster.owner(cluster.slot(&key), 0);
        assert_eq!(owner, 2, "{label}: the key's hash tag is the name");
        // Two iterations holding a second each: time to look at the key while it is held.
        let args = count_args(serve, &[], &dir_arg, &name, "2", "1000");
        let mut child = spawn(distlock(&url, &args));
        let token = wait_for(
            &format!("{label}: the guest's lock on the slot's owner"),
            Duration::from_secs(20),
            || cluster.nodes[owner].raw().ok(&["GET", &key]).text(),
        );
        let (status, out) = wait_exit(&mut child, Duration::from_secs(30));
        assert!(status.success(), "{label}: {}", show(&out));
        assert!(!token.is_empty(), "{label}: an empty token");
        assert_eq!(
            counted(dir.path()),
            Some(2),
            "{label}: every iteration counted"
        );
        assert_eq!(
            cluster.nodes[owner].raw().ok(&["EXISTS", &key]).int(),
            Some(0),
            "{label}: the lock was left on the owner\n{}",
            show(&out)
        );
        let want_notes = usize::from(serve.is_empty());
        assert_eq!(
            native_notes(&out),
            want_notes,
            "{label}: said {want_notes} time(s) that the guest is served natively?\n{}",
            show(&out)
        );
    }
}

/// `run` through a Sentinel group (a primary, a replica, three sentinels): the guest's lock
/// lands on the primary the sentinels name. Then a guest waits for a lock another owner
/// holds while the group fails over (`SENTINEL FAILOVER`): it keeps waiting, follows the
/// promoted primary, takes the lock there once the other owner's key is gone, and counts.
#[test]
fn a_guest_locks_through_a_sentinel_group_and_across_a_failover() {
    require_redis!();
    // Steady: the only failover is the one this test forces.
    let group = SentinelGroup::start_steady();
    let url = group.url(SERVICE);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    let name = unique_name("run-sentinel");
    let key = lock_key(&name);
    let args = count_args(&[], &[], &dir_arg, &name, "1", "1000");

    let mut child = spawn(distlock(&url, &args));
    wait_for(
        "the guest's lock on the first primary",
        Duration::from_secs(20),
        || group.servers[0].raw().ok(&["GET", &key]).text(),
    );
    let (status, out) = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{}", show(&out));
    assert_eq!(native_notes(&out), 1, "{}", show(&out));
    assert!(!exists(&group.servers[0], &name), "left on the primary");

    // Held by another owner, replicated, so it outlives the failover.
    group.servers[0]
        .raw()
        .ok(&["SET", &key, "someone-else", "PX", "60000"]);
    wait_for(
        "the replica to hold the other owner's lock",
        Duration::from_secs(20),
        || {
            let held = group.servers[1].raw().ok(&["GET", &key]).text();
            (held.as_deref() == Some("someone-else")).then_some(())
        },
    );
    let mut child = spawn(distlock(&url, &args));
    wait_for(
        "the guest to wait for the lock",
        Duration::from_secs(20),
        || (group.servers[0].blocked_clients() >= 1).then_some(()),
    );
    group.force_failover();
    group.until_primary(1);
    group.servers[1].raw().ok(&["DEL", &key]);
    let token = wait_for(
        "the waiting guest's lock on the promoted primary",
        Duration::from_secs(30),
        || {
            let held = group.servers[1].raw().ok(&["GET", &key]).text();
            held.filter(|token| token != "someone-else")
        },
    );
    let (status, out) = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{}", show(&out));
    assert!(!token.is_empty(), "an empty token");
    assert_eq!(counted(dir.path()), Some(2), "both guests counted");
    assert!(
        !exists(&group.servers[1], &name),
        "left on the promoted primary"
    );
}

/// Routed URLs `run` cannot use are refused before the guest is compiled or a server is
/// reached, with exit 64 and what is wrong (as every command refuses them): a cluster with
/// no seed or a database, a sentinel URL without a service; and `--durable`, which a guest's
/// lock does not do (plain leases taken silently would pass for durable ones). No server is
/// needed: nothing is reached.
#[test]
fn unusable_cluster_and_sentinel_urls_are_refused_before_the_guest_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir_arg(dir.path());
    let name = unique_name("run-bad-url");
    let args = count_args(&[], &[], &dir_arg, &name, "1", "1");
    for (url, says) in [
        ("redis+cluster://", "seed"),
        ("redis+cluster://127.0.0.1:7000/2", "database"),
        ("redis+sentinel://127.0.0.1:26379", "service"),
    ] {
        let out = run_bounded(distlock(url, &args), Duration::from_secs(30)).expect("run distlock");
        assert_eq!(out.status.code(), Some(64), "{url}: {}", show(&out));
        let err = stderr(&out);
        assert!(
            err.contains(says),
            "{url}: says nothing of the {says}: {err}"
        );
        assert_eq!(native_notes(&out), 0, "{url}: {err}");
        assert!(counted(dir.path()).is_none(), "{url}: the guest ran");
    }
    let mut durable = vec!["--durable", "1"];
    durable.extend_from_slice(&args);
    let out = run_bounded(
        distlock("redis+sentinel://127.0.0.1:26379/mymaster", &durable),
        Duration::from_secs(30),
    )
    .expect("run distlock");
    assert_eq!(out.status.code(), Some(64), "--durable: {}", show(&out));
    assert!(stderr(&out).contains("--durable"), "{}", show(&out));
    assert!(counted(dir.path()).is_none(), "--durable: the guest ran");
}

/// How many keys on `server` contain `name` (unique per test): what a guest wrote for it.
fn keys_naming(server: &RedisServer, name: &str) -> usize {
    match server.raw().ok(&["KEYS", &format!("*{name}*")]) {
        support::Reply::Array(Some(keys)) => keys.len(),
        other => panic!("KEYS: {other:?}"),
    }
}

/// The server-side sockets of connections the kernel completed to `port` (state
/// ESTABLISHED in `/proc/net/tcp`): they show a client connecting to a frozen server.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// The key a lock of a name lives in, under the options of a case.
type KeyOf = fn(&str) -> String;

/// `--prefix` and `--layout` reach the guest's locks: each lock lands under the key the
/// options name (seen while the guest holds it), not under the default one, on both serves;
/// a Python library's layout, which the lock component cannot keep, is honoured natively and
/// refused (64) linked, before the guest runs or anything reaches the server.
#[test]
fn prefix_and_layout_reach_the_guests_locks_or_are_refused() {
    require_redis!();
    let server = RedisServer::start();
    let cases: [(&[&str], KeyOf); 3] = [
        (&["--prefix", "team-a:"], |name| {
            format!("team-a:{{{name}}}")
        }),
        (&["--layout", "python-redis-lock"], |name| {
            format!("lock:{name}")
        }),
        (&["--layout", "redis-py"], |name| name.to_owned()),
    ];
    for (options, key_of) in cases {
        for (label, serve) in SERVES {
            let label = format!("{options:?} {label}");
            let dir = tempfile::tempdir().expect("tempdir");
            let dir_arg = dir_arg(dir.path());
            let name = unique_name("run-layout");
            let key = key_of(&name);
            let mut args = options.to_vec();
            // One iteration holding the lock for a second: time to see its key.
            args.extend(count_args(serve, &[], &dir_arg, &name, "1", "1000"));
            let refused = options[0] == "--layout" && serve.is_empty();
            if refused {
                let out = run_bounded(distlock(&server.url(), &args), Duration::from_secs(30))
                    .expect("run distlock");
                assert_eq!(out.status.code(), Some(64), "{label}: {}", show(&out));
                assert!(
                    stderr(&out).contains("--layout") && stderr(&out).contains("--native"),
                    "{label}: {}",
                    show(&out)
                );
                assert!(counted(dir.path()).is_none(), "{label}: the guest ran");
                assert_eq!(
                    keys_naming(&server, &name),
                    0,
                    "{label}: something was written"
                );
                continue;
            }
            let mut child = spawn(distlock(&server.url(), &args));
            let token = wait_for(
                &format!("{label}: the guest's lock under {key}"),
                Duration::from_secs(20),
                || server.raw().ok(&["GET", &key]).text(),
            );
            assert!(!token.is_empty(), "{label}: an empty token");
            assert!(
                !exists(&server, &name),
                "{label}: a lock under the default key too"
            );
            let (status, out) = wait_exit(&mut child, Duration::from_secs(30));
            assert!(status.success(), "{label}: {}", show(&out));
            assert_eq!(counted(dir.path()), Some(1), "{label}: {}", show(&out));
            assert_eq!(
                server.raw().ok(&["EXISTS", &key]).int(),
                Some(0),
                "{label}: the lock was left behind"
            );
        }
    }
}

/// `--no-scripts` reaches the guest's locks on both serves: on a server without the native
/// commands it needs (this redis-server) the guest's lock is refused (the guest fails,
/// saying so) where without it the guest counts; and a guest asking for fair mode, which
/// needs scripts, is refused too.
#[test]
fn no_scripts_reaches_the_guests_locks() {
    require_redis!();
    let server = RedisServer::start();
    for (label, serve) in SERVES {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir_arg = dir_arg(dir.path());
        let name = unique_name("run-no-scripts");
        let scripted = count_args(serve, &[], &dir_arg, &name, "1", "1");
        let out = run_bounded(distlock(&server.url(), &scripted), Duration::from_secs(60))
            .expect("run distlock");
        assert!(out.status.success(), "{label}: {}", show(&out));
        assert_eq!(counted(dir.path()), Some(1), "{label}");

        let mut args = vec!["--no-scripts"];
        args.extend(count_args(serve, &[], &dir_arg, &name, "1", "1"));
        let out = run_bounded(distlock(&server.url(), &args), Duration::from_secs(60))
            .expect("run distlock");
        assert_eq!(out.status.code(), Some(1), "{label}: {}", show(&out));
        let err = stderr(&out).to_ascii_lowercase();
        assert!(
            err.contains("distlock-counter:") && err.contains("scripts are set to never"),
            "{label}: {}",
            show(&out)
        );
        assert_eq!(
            counted(dir.path()),
            Some(1),
            "{label}: counted without a lock"
        );

        let mut fair = vec!["--no-scripts", "run", "--example"];
        fair.extend_from_slice(serve);
        fair.extend_from_slice(&["--", "trap-fair", &name, "/nonexistent"]);
        let out =
            run_bounded(distlock(&server.url(), &fair), Duration::from_secs(60)).expect("run");
        assert_eq!(out.status.code(), Some(1), "{label}: {}", show(&out));
        assert!(!stdout(&out).contains("holding"), "{label}: {}", show(&out));
        assert!(!exists(&server, &name), "{label}: a fair lock was taken");
    }
}

/// `--connect-timeout` is honoured natively: with the only node frozen, a guest run with a
/// long one keeps waiting to connect while a guest run without it (the default, a second)
/// gives up, and it counts once the node answers again. Linked, where the lock component
/// waits for a connect as long as the guest's request timeout, it is refused (64) before the
/// guest runs.
#[test]
fn connect_timeout_is_honoured_natively_and_refused_linked() {
    require_redis!();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let patient_dir = dir_arg(dir.path());
    let name = unique_name("run-connect-timeout");

    let mut linked = vec!["--connect-timeout", "10m"];
    linked.extend(count_args(&[], &[], &patient_dir, &name, "1", "1"));
    let out = run_bounded(distlock(&server.url(), &linked), Duration::from_secs(30))
        .expect("run distlock");
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(stderr(&out).contains("--connect-timeout"), "{}", show(&out));
    assert!(counted(dir.path()).is_none(), "the linked guest ran");

    server.pause();
    let before = established_to(server.port());
    let mut patient_args = vec!["--connect-timeout", "10m"];
    patient_args.extend(count_args(
        &["--native"],
        &[],
        &patient_dir,
        &name,
        "1",
        "1",
    ));
    let mut patient = spawn(distlock(&server.url(), &patient_args));
    wait_for(
        "the patient guest to connect to the frozen node",
        Duration::from_secs(30),
        || (established_to(server.port()) > before).then_some(()),
    );
    // Started after the patient guest was already connecting: its default wait ends first.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_arg = dir_arg(other_dir.path());
    let hasty = count_args(&["--native"], &[], &other_arg, &name, "1", "1");
    let out = run_bounded(distlock(&server.url(), &hasty), Duration::from_secs(60))
        .expect("run distlock");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        counted(other_dir.path()).is_none(),
        "counted without a lock"
    );
    assert!(
        patient.0.try_wait().expect("try_wait").is_none(),
        "the guest with --connect-timeout 10m gave up with the default's"
    );
    server.resume();
    let (status, out) = wait_exit(&mut patient, Duration::from_secs(60));
    assert!(status.success(), "{}", show(&out));
    assert_eq!(counted(dir.path()), Some(1), "{}", show(&out));
}
