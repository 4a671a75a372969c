//! Connecting, against real `redis-server` processes and the `distlock` binary: a frozen or
//! silent node costs a command at most the request timeout (the connect wait), never the
//! 5 s connect timeout; the same server given twice is refused before anything is sent;
//! endpoints print as URLs a user can paste (IPv6 in brackets); URL parts distlock does not
//! read are refused rather than ignored.
//!
//! Deadlines are generous (`LIMIT`): they say "ended well before the connect timeout", not
//! how fast anything is.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use distlock_host::{Client, ConnectOptions, Error, KeyLayout, LockOptions};
use support::{
    RedisServer, blocking, bounded, distlock, lock_key, require_redis, run_bounded, show, stderr,
    unique_name,
};

/// A command against a frozen or silent node must end by this: the request timeout (1 s)
/// plus a margin for a loaded machine, and well under the 5 s connect timeout.
const LIMIT: Duration = Duration::from_secs(3);
/// What `run_bounded` allows before it kills a command that hangs.
const HANG: Duration = Duration::from_secs(20);
/// The ready timeout of the client with a silent node: long enough for the two live nodes
/// to answer a loaded machine's connect, short enough that a run sees several of them.
const SILENT_READY_TIMEOUT: Duration = Duration::from_secs(1);
/// The request timeout of that client's operations: what an operation that waited for the
/// silent node would take, far above what one that skips it takes on a loaded machine.
const SILENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// `distlock` with `--redis` once per URL, and none of the variables it reads.
fn distlock_nodes(urls: &[&str], args: &[&str]) -> Command {
    let (first, rest) = urls.split_first().expect("a URL");
    let mut command = distlock(first, &[]);
    command.env_remove("DISTLOCK_CONNECT_TIMEOUT");
    for url in rest {
        command.arg("--redis").arg(url);
    }
    command.args(args);
    command
}

/// Runs `command`, returning its output and how long it took.
fn timed(command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let out = run_bounded(command, HANG).expect("run distlock");
    (out, started.elapsed())
}

/// A listening socket nobody accepts from: the kernel completes connects, nothing ever
/// answers (a hung server, as far as a client can tell).
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let port = listener.local_addr().expect("its address").port();
    (listener, format!("redis://127.0.0.1:{port}"))
}

/// Whether this machine has an IPv6 loopback.
fn has_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// One of three nodes frozen (SIGSTOP): `acquire` and `release` through the command each end
/// within the request timeout plus a margin — not the 5 s connect timeout — and succeed on
/// the two that answer.
#[test]
fn one_frozen_node_of_three_costs_a_command_no_connect_timeout() {
    require_redis!();
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    servers[2].pause();
    let name = unique_name("frozen-one");

    let (out, took) = timed(distlock_nodes(
        &urls,
        &["acquire", "--name", &name, "--ttl", "30s"],
    ));
    assert!(out.status.success(), "acquire: {}", show(&out));
    assert!(took < LIMIT, "acquire took {took:?}: {}", show(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for server in &servers[..2] {
        let held = server.raw().ok(&["GET", &lock_key(&name)]).text();
        assert!(held.is_some(), "the live nodes hold the lock");
    }

    let (out, took) = timed(distlock_nodes(
        &urls,
        &["release", "--name", &name, "--token", &token],
    ));
    assert!(out.status.success(), "release: {}", show(&out));
    assert!(took < LIMIT, "release took {took:?}: {}", show(&out));
    for server in &servers[..2] {
        let held = server.raw().ok(&["EXISTS", &lock_key(&name)]).int();
        assert_eq!(held, Some(0), "released on the live nodes");
    }
    servers[2].resume();
}

/// A single server that accepts and never answers: every command fails with 69 (too few
/// servers answered) within the request timeout plus a margin, and says which node.
#[test]
fn a_silent_server_fails_each_command_within_the_request_timeout() {
    let (_listener, url) = silent_server();
    let token = "0123456789abcdef0123456789abcdef";
    for args in [
        &["acquire", "--name", "silent"][..],
        &["release", "--name", "silent", "--token", token],
        &[
            "extend", "--name", "silent", "--token", token, "--ttl", "10s",
        ],
    ] {
        let (out, took) = timed(distlock_nodes(&[&url], args));
        assert_eq!(out.status.code(), Some(69), "{args:?}: {}", show(&out));
        assert!(took < LIMIT, "{args:?} took {took:?}: {}", show(&out));
        let said = stderr(&out);
        assert!(said.contains(&url), "{args:?} names the node: {said}");
    }
    // The wait is the user's to choose.
    let mut command = distlock_nodes(&[&url], &["acquire", "--name", "silent"]);
    command.env("DISTLOCK_CONNECT_TIMEOUT", "200ms");
    let (out, took) = timed(command);
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    assert!(stderr(&out).contains("200ms"), "{}", show(&out));
    assert!(took < LIMIT, "took {took:?}");
}

/// The Rust API: `ready_timeout` bounds `connect_with` against a silent node; with a quorum
/// answering the client is ready at once, and a frozen node whose connect was still under
/// way takes part again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_joins_once_it_answers() {
    require_redis!();
    let (_listener, silent) = silent_server();
    let options = ConnectOptions {
        ready_timeout: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
    let (result, _) = bounded(
        "connect to a silent node",
        LIMIT,
        Client::connect_with([&silent], options, KeyLayout::default()),
    )
    .await;
    match result {
        Err(Error::Connect { endpoint, source }) => {
            assert_eq!(endpoint, silent);
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}");
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }

    let servers: Vec<RedisServer> = blocking(|| (0..3).map(|_| RedisServer::start()).collect());
    blocking(|| servers[2].pause());
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let (client, _) = bounded(
        "connect with one node frozen",
        LIMIT,
        Client::connect(&urls),
    )
    .await;
    let client = client.expect("a quorum answers");
    blocking(|| servers[2].resume());
    let name = unique_name("late-node");
    let key = lock_key(&name);
    // Each acquire goes to every node; the resumed one holds the key once its connection
    // (the one connect_with left in the background, or a probe) is in the pool.
    let joined = async {
        loop {
            let guard = client
                .lock(&name)
                .ttl(Duration::from_secs(30))
                .try_acquire()
                .await
                .expect("acquire on the live nodes");
            let on_third = blocking(|| servers[2].raw().ok(&["EXISTS", &key]).int()) == Some(1);
            guard.release().await.expect("release");
            if on_third {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded(
        "the resumed node to take part",
        Duration::from_secs(10),
        joined,
    )
    .await;
}

/// A silent node is not waited for, nor flooded with connects, while operations go on
/// without it: until it answers, the core's session lets one connect at a time find out
/// whether it will, and after each ready timeout without an answer backs the node off by a
/// jittered pause that grows (100 ms, up to 2 s). Operations run until the silent node has
/// seen three connects (two of them opened by operations), however long a loaded machine
/// takes; nothing is counted within a window of time.
///
/// - Not waited for: every acquire succeeds on the two live nodes and returns well before
///   one request timeout (`SILENT_REQUEST_TIMEOUT`) — waiting for the silent node would cost
///   it the whole of one. Only an operation that carries a connect waits for it (a release,
///   which hears from every node it sent to): at most one operation per connect is slow.
/// - One connect at a time: each connect is left unanswered a whole ready timeout before
///   the next may start, so no two arrive at the silent node closer together than that
///   (less a margin). Before, every operation opened a connect of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_gets_one_connect_at_a_time_not_one_per_operation() {
    require_redis!();
    let (listener, silent) = silent_server();
    // Accepts and keeps every connection, and never answers: counts the connects and notes
    // when each came (a thread of its own that does nothing else, so it notes them at once).
    let accepted = Arc::new(AtomicUsize::new(0));
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, noted) = (Arc::clone(&accepted), Arc::clone(&arrivals));
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().flatten() {
            noted.lock().expect("arrivals").push(Instant::now());
            counter.fetch_add(1, Ordering::SeqCst);
            kept.push(stream);
        }
    });
    let servers: Vec<RedisServer> = blocking(|| (0..2).map(|_| RedisServer::start()).collect());
    let mut urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    urls.push(silent.clone());
    let options = ConnectOptions {
        ready_timeout: SILENT_READY_TIMEOUT,
        ..ConnectOptions::default()
    };
    let (client, _) = bounded(
        "connect with one node silent",
        HANG,
        Client::connect_with(&urls, options, KeyLayout::default()),
    )
    .await;
    let client = client.expect("a quorum answers");
    let lock_options = LockOptions {
        request_timeout: distlock_core::Duration::from_millis(
            SILENT_REQUEST_TIMEOUT.as_millis() as u64
        ),
        ttl: distlock_core::Duration::from_secs(30),
        ..LockOptions::default()
    };
    // Well under what waiting for the silent node costs, far over a round trip to a live
    // node on a loaded machine.
    let waited = SILENT_REQUEST_TIMEOUT / 2;
    let name = unique_name("silent-flood");
    let mut operations = 0_usize;
    let mut slow_acquires = Vec::new();
    let mut slow_operations = 0_usize;
    let ran = async {
        while accepted.load(Ordering::SeqCst) < 3 {
            let started = Instant::now();
            let guard = client
                .lock(&name)
                .options(lock_options)
                .try_acquire()
                .await
                .expect("acquire on the two live nodes");
            let acquiring = started.elapsed();
            guard
                .release()
                .await
                .expect("release on the two live nodes");
            if acquiring >= waited {
                slow_acquires.push(acquiring);
            }
            // The first may join the client's own connect, up to the rest of its ready timeout.
            if operations > 0 && started.elapsed() >= waited {
                slow_operations += 1;
            }
            operations += 1;
        }
    };
    bounded("three connects to the silent node", HANG * 3, ran).await;
    let connects = accepted.load(Ordering::SeqCst);
    assert!(
        slow_acquires.is_empty(),
        "acquires waited for the silent node: {slow_acquires:?}"
    );
    assert!(
        slow_operations < connects,
        "{slow_operations} of {operations} operations after the first took {waited:?} or more, \
         with {connects} connects (the first the client's): only one carrying a connect may \
         wait for it"
    );
    // Half a ready timeout: a connect may start only once the one before it went unanswered
    // a whole one; half leaves room for the noting thread to be late on a loaded machine.
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= SILENT_READY_TIMEOUT / 2),
        "{operations} operations opened connects to the silent node this far apart: {gaps:?}; \
         the next may start only once one went unanswered for the ready timeout \
         ({SILENT_READY_TIMEOUT:?})"
    );
}

/// The same server twice — the same URL, or `localhost` and `127.0.0.1` on one port — is a
/// usage error (64) naming both, and nothing reaches the server: not even a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_server_twice_is_refused_before_anything_is_sent() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let port = server.port();
    let by_ip = format!("redis://127.0.0.1:{port}");
    let by_name = format!("redis://localhost:{port}");
    let other = blocking(RedisServer::start);
    let before = blocking(|| server.connections_received());
    for urls in [
        [by_ip.as_str(), by_ip.as_str()],
        [by_ip.as_str(), by_name.as_str()],
    ] {
        let with_a_third = [urls[0], urls[1], &other.url()].map(str::to_owned);
        let with_a_third: Vec<&str> = with_a_third.iter().map(String::as_str).collect();
        for urls in [&urls[..], &with_a_third[..]] {
            let out = blocking(|| {
                run_bounded(distlock_nodes(urls, &["acquire", "--name", "twice"]), HANG)
            })
            .expect("run distlock");
            assert_eq!(out.status.code(), Some(64), "{urls:?}: {}", show(&out));
            let said = stderr(&out);
            assert!(
                said.contains(urls[0]) && said.contains(urls[1]) && said.contains("same server"),
                "{urls:?}: {said}"
            );
        }
        match Client::connect(urls).await {
            Err(Error::DuplicateNode { first, second, .. }) => {
                assert_eq!([first.as_str(), second.as_str()], urls);
            }
            other => panic!("{urls:?}: expected DuplicateNode, got {other:?}"),
        }
    }
    // `connections_received` opens one connection itself: that one, and no other.
    let after = blocking(|| server.connections_received());
    assert_eq!(after, before + 1, "nothing connected to the server");
}

/// An IPv6 endpoint prints as `redis://[::1]:PORT` — in the duplicate and connect errors, and
/// it works against a server bound to `::1`.
#[test]
fn ipv6_endpoints_print_in_brackets() {
    require_redis!();
    if !has_ipv6_loopback() {
        // `endpoint.rs`'s unit tests cover printing and parsing without a socket.
        eprintln!("skipping: no IPv6 loopback on this machine");
        return;
    }
    let server = RedisServer::start_with(&["--bind", "127.0.0.1", "::1"]);
    let url = format!("redis://[::1]:{}", server.port());
    let name = unique_name("ipv6");
    let out = run_bounded(distlock_nodes(&[&url], &["acquire", "--name", &name]), HANG)
        .expect("run distlock");
    assert!(out.status.success(), "acquire over IPv6: {}", show(&out));
    assert!(server.raw().ok(&["GET", &lock_key(&name)]).text().is_some());

    let out = run_bounded(
        distlock_nodes(&[&url, &url], &["acquire", "--name", &name]),
        HANG,
    )
    .expect("run distlock");
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("{url} and {url} are the same server")),
        "{}",
        show(&out)
    );

    // Nothing listens on this port: the connect error names the node as a URL.
    let free = TcpListener::bind("[::1]:0").expect("bind [::1]:0");
    let nobody = format!(
        "redis://[::1]:{}",
        free.local_addr().expect("address").port()
    );
    drop(free);
    let out = run_bounded(
        distlock_nodes(&[&nobody], &["acquire", "--name", &name]),
        HANG,
    )
    .expect("run distlock");
    assert_eq!(out.status.code(), Some(69), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("cannot connect to {nobody}:")),
        "{}",
        show(&out)
    );
}

/// URL parts distlock does not read are usage errors (64) saying which, before any connect:
/// `?timeout=1` would otherwise be silently ignored, and `/db0` is no database number.
#[test]
fn unknown_url_parameters_and_paths_are_usage_errors() {
    require_redis!();
    let server = RedisServer::start();
    let before = server.connections_received();
    let url = server.url();
    for (bad, says) in [
        (
            format!("{url}/0?timeout=1"),
            "unknown query parameter 'timeout'",
        ),
        (format!("{url}/db0"), "'/db0' is not a database number"),
    ] {
        let out = run_bounded(distlock_nodes(&[&bad], &["acquire", "--name", "q"]), HANG)
            .expect("run distlock");
        assert_eq!(out.status.code(), Some(64), "{bad}: {}", show(&out));
        assert!(stderr(&out).contains(says), "{bad}: {}", show(&out));
    }
    assert_eq!(
        server.connections_received(),
        before + 1,
        "nothing connected to the server"
    );
}

/// A client returns from connecting at a quorum while a slower node's connect is still under
/// way; the session then lets no second connect start to that node until the first answers.
/// An operation right after must wait for that connect (within its deadline), not count an
/// answering node as unreachable: `status` reads all three nodes.
#[test]
fn an_operation_right_after_connecting_waits_for_the_slower_nodes_connect() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let proxy = support::proxy::Proxy::start(servers[2].port());
    // Round trips of ~100 ms: the handshake's and status's own few fit the 1 s request
    // timeout, and the two direct nodes answer long before.
    proxy.latency(support::proxy::Dir::Up, Duration::from_millis(50));
    proxy.latency(support::proxy::Dir::Down, Duration::from_millis(50));
    let urls = [servers[0].url(), servers[1].url(), proxy.url()];
    let name = support::unique_name("slower");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let status = runtime.block_on(async {
        let client = Client::connect(urls.iter()).await.expect("connect");
        client.status(&name).await.expect("status")
    });
    for (node, seen) in status.nodes.iter().enumerate() {
        assert!(
            matches!(seen, distlock_host::NodeStatus::Answered { .. }),
            "node {node} was not read: {seen:?}\n{}",
            status.describe()
        );
    }
}
