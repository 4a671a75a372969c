//! The Rust API against real `redis-server` processes: a server restart while a lock is held
//! and waited for, pooled connections that died with a restart, Redlock over three servers
//! losing one and then two, releases reaching a stalled node, and waiters woken by the
//! release signal rather than by polling.

mod support;

use std::time::{Duration, Instant};

use distlock_host::{Client, Error};
use support::faults::{is_not_held, is_outage, load_scripts};
use support::{
    RedisServer, blocking, command_calls, require_redis, unique_name, until, until_blocked,
};
use tokio::time::timeout;

/// A typed error a client may see while its server is down, and nothing else.
fn assert_outage_error(e: &Error, what: &str) {
    assert!(is_outage(e), "{what}: unexpected error {e:?} ({e})");
}

/// The server restarts (empty) while A holds the lock with auto-renewal and B waits for it:
/// nothing panics, errors are typed, B gets the lock after the restart, and A's guard
/// reports the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restart_while_held_and_waited() {
    require_redis!();
    let mut server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("restart");
    let a = Client::connect([&url]).await.expect("connect A");
    let b = Client::connect([&url]).await.expect("connect B");
    let guard = a
        .lock(&name)
        .ttl(Duration::from_secs(3))
        .auto_renew(true)
        .acquire()
        .await
        .expect("A acquires");
    assert!(guard.is_held());

    let waiter = {
        let name = name.clone();
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(Duration::from_secs(10))
                .acquire()
                .await;
            (result, Instant::now())
        })
    };
    until_blocked(&server, 1).await;

    blocking(|| server.stop());
    let stopped = Instant::now();
    // While the server is down: renewing by hand fails with a typed error.
    let during = timeout(Duration::from_secs(5), guard.extend(Duration::from_secs(3)))
        .await
        .expect("bounded extend");
    let e = during.expect_err("extend while the server is down");
    assert_outage_error(&e, "extend during the outage");
    // Not a wait for anything: the outage lasts a second by design, so that A's renewal and
    // B's wait meet a server that is gone, not a blip.
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(stopped.elapsed())).await;
    blocking(|| server.restart());
    let restarted = Instant::now();
    // No persistence: the restarted server has forgotten A's lock. B may already have taken
    // the name by the time this looks (it retries as soon as the server answers).
    let a_token = guard.token().to_owned();
    let after_restart = blocking(|| server.raw().ok(&["GET", &support::lock_key(&name)]).text());
    assert_ne!(
        after_restart.as_deref(),
        Some(a_token.as_str()),
        "the restarted server still has A's lock"
    );

    let (result, done) = timeout(Duration::from_secs(20), waiter)
        .await
        .expect("B's acquire returns within its wait")
        .expect("B's task did not panic");
    let b_guard = match result {
        Ok(g) => g,
        Err(e) => {
            assert_outage_error(&e, "B's acquire");
            panic!(
                "B did not acquire after the restart ({:?} later): {e}",
                done.saturating_duration_since(restarted)
            );
        }
    };
    assert!(done >= restarted, "B acquired before the server came back");
    assert!(b_guard.is_held());
    let holder = blocking(|| server.raw().ok(&["GET", &support::lock_key(&name)]).text());
    assert_eq!(holder.as_deref(), Some(b_guard.token()));

    // A's renewal finds the lock gone (or held by B): its guard reports the loss.
    timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("A's guard reports the loss within 10 s");
    assert!(!guard.is_held());
    assert_eq!(guard.validity(), Duration::ZERO);
    // A's release is refused, typed, and leaves B's lock alone.
    let released = guard.release().await;
    assert!(is_not_held(&released), "{released:?}");
    assert!(b_guard.is_held());
    b_guard.release().await.expect("B releases");
}

/// What [`server_restart_while_held_and_waited`] can rely on today: the outage ends each
/// caller's operation with a typed error, the holder's guard reports the loss, and the next
/// acquire after the restart succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restart_errors_are_typed_and_clients_recover() {
    require_redis!();
    let mut server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("restart-recover");
    let a = Client::connect([&url]).await.expect("connect A");
    let b = Client::connect([&url]).await.expect("connect B");
    let guard = a
        .lock(&name)
        .ttl(Duration::from_secs(3))
        .auto_renew(true)
        .acquire()
        .await
        .expect("A acquires");

    let waiter = {
        let name = name.clone();
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(Duration::from_secs(3))
                .acquire()
                .await;
            (b, result)
        })
    };
    until_blocked(&server, 1).await;
    blocking(|| server.stop());
    // Not a wait for anything: the outage lasts a second by design (a server that is gone,
    // not a blip).
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(|| server.restart());
    let restarted = Instant::now();

    let (b, first) = timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B's acquire returns within its wait")
        .expect("B's task did not panic");
    if let Err(e) = &first {
        assert_outage_error(e, "B's acquire across the restart");
    }
    // Whatever the first attempt did, B gets the lock after the restart (retrying at most a
    // few times, each bounded by its wait).
    let b_guard = match first {
        Ok(g) => g,
        Err(_) => {
            let mut last = None;
            let mut got = None;
            for _ in 0..5 {
                match b
                    .lock(&name)
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(5))
                    .acquire()
                    .await
                {
                    Ok(g) => {
                        got = Some(g);
                        break;
                    }
                    Err(e) => {
                        assert_outage_error(&e, "B's acquire after the restart");
                        last = Some(e);
                    }
                }
            }
            got.unwrap_or_else(|| {
                panic!("B never acquired after the restart; last error: {last:?}")
            })
        }
    };
    assert!(b_guard.is_held());
    timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("A's guard reports the loss within 10 s");
    assert!(!guard.is_held());
    eprintln!(
        "B acquired and A saw the loss {:?} after the restart",
        restarted.elapsed()
    );
    let released = guard.release().await;
    assert!(released.is_err(), "A no longer holds it: {released:?}");
    b_guard.release().await.expect("B releases");
}

/// Redlock over three servers: one down, the lock is still had (on the other two); two
/// down, acquiring fails fast with a lost quorum, and connecting fails with too few nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_survives_one_lost_node_not_two() {
    require_redis!();
    let mut servers: Vec<RedisServer> = blocking(|| (0..3).map(|_| RedisServer::start()).collect());
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls).await.expect("connect to 3 nodes");
    assert_eq!(client.nodes(), 3);
    // With the scripts cached, every release reaches every live node; without, the slowest
    // node may keep a released lock (see `release_reaches_a_slow_node_without_the_script`),
    // which would make this test about that bug instead of about quorums.
    blocking(|| servers.iter().for_each(load_scripts));

    let name = unique_name("redlock");
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .fenced(true)
        .acquire()
        .await
        .expect("all up");
    assert_eq!(guard.fence(), Some(1));
    guard.release().await.expect("release with all up");

    // One node down: 2 of 3 is a quorum.
    blocking(|| servers[0].stop());
    let started = Instant::now();
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .fenced(true)
        .acquire()
        .await
        .expect("2 of 3 nodes are a quorum");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(guard.is_held());
    assert_eq!(guard.fence(), Some(2), "fences keep increasing");
    for server in &servers[1..] {
        let holder = blocking(|| server.raw().ok(&["GET", &support::lock_key(&name)]).text());
        assert_eq!(
            holder.as_deref(),
            Some(guard.token()),
            "the lock key is on every live node"
        );
    }
    let status = client.status(&name).await.expect("status");
    assert_eq!(status.holder(), Some(guard.token()));
    assert!(
        matches!(status.nodes[0], distlock_host::NodeStatus::Unreachable(_)),
        "{status:?}"
    );
    guard.release().await.expect("release with 2 of 3 up");

    // Two nodes down: no quorum. The acquire path (connected while all were up).
    blocking(|| servers[1].stop());
    for wait in [Duration::ZERO, Duration::from_secs(2)] {
        let started = Instant::now();
        let result = client
            .lock(&name)
            .ttl(Duration::from_secs(10))
            .wait(wait)
            .acquire()
            .await;
        let elapsed = started.elapsed();
        let err = result.expect_err("1 of 3 nodes is no quorum");
        assert!(
            matches!(
                err.lock_error(),
                Some(distlock_core::Error::QuorumLost {
                    needed: 2,
                    nodes: 3,
                    ..
                })
            ),
            "wait {wait:?}: expected QuorumLost, got {err:?} ({err})"
        );
        assert!(!err.is_not_acquired(), "a lost quorum is not contention");
        assert!(
            elapsed < Duration::from_secs(5),
            "wait {wait:?}: failing took {elapsed:?}"
        );
    }
    // The surviving node holds nothing: the failed attempts were rolled back.
    let left = blocking(|| {
        servers[2]
            .raw()
            .ok(&["EXISTS", &support::lock_key(&name)])
            .int()
    });
    assert_eq!(
        left,
        Some(0),
        "a failed attempt left its key on the surviving node"
    );

    // The connect path.
    let started = Instant::now();
    let err = Client::connect(&urls).await.expect_err("1 of 3 reachable");
    assert!(
        matches!(
            err,
            Error::TooFewNodes {
                reachable: 1,
                nodes: 3,
                needed: 2,
                ..
            }
        ),
        "expected TooFewNodes, got {err:?} ({err})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connect failed after {:?}",
        started.elapsed()
    );

    // Back to two: the lock works again once the node's reconnect pause is over.
    blocking(|| servers[1].restart());
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .expect("2 of 3 again");
    guard.release().await.expect("release");
}

/// A waiter blocks on the wake-up signal and the release wakes it: the server saw a `BLPOP`
/// and only the `SET`s of the two acquisitions and the one failed attempt, no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_signal_wakes_the_waiter() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("wake");
    let a = Client::connect([&url]).await.expect("connect A");
    let b = Client::connect([&url]).await.expect("connect B");
    blocking(|| server.raw().ok(&["CONFIG", "RESETSTAT"]));

    let guard = a
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("A acquires");
    let waiter = {
        let name = name.clone();
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(10))
                .acquire()
                .await;
            (result, Instant::now())
        })
    };
    let started = Instant::now();
    until_blocked(&server, 1).await;
    // B is blocked; an observation window (not a wait): it must still be waiting 300 ms
    // after it started, while A holds the lock.
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(started.elapsed())).await;
    assert!(
        !waiter.is_finished(),
        "B must still be waiting while A holds the lock"
    );
    let releasing = Instant::now();
    guard.release().await.expect("A releases");

    let (result, acquired_at) = timeout(Duration::from_secs(15), waiter)
        .await
        .expect("bounded")
        .expect("no panic");
    let b_guard = result.expect("B acquires once A released");
    assert!(acquired_at >= releasing, "B acquired before A released");
    let handoff = acquired_at - releasing;

    let stats = blocking(|| {
        server
            .raw()
            .ok(&["INFO", "commandstats"])
            .text()
            .unwrap_or_default()
    });
    let (blpop, set) = (command_calls(&stats, "blpop"), command_calls(&stats, "set"));
    assert!(
        blpop >= 1,
        "B never blocked on the signal (BLPOP calls {blpop}):\n{stats}"
    );
    // A's, B's first attempt, its retry and its attempt after the wake; the two after a
    // refusal each carry the waiting mark (a SET too).
    assert!(
        set <= 6,
        "B polled: {set} SET calls (A's, B's busy attempt, its marked retry and its marked \
         attempt after the wake expected):\n{stats}"
    );
    assert!(set >= 2, "the acquisitions are SETs:\n{stats}");
    eprintln!("hand-off {handoff:?}; BLPOP calls {blpop}, SET calls {set}");
    b_guard.release().await.expect("B releases");
}

/// A client whose pooled connection died with a server restart still acquires with a wait:
/// the lock is free on the restarted server and the wait is long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_dead_after_restart_is_replaced() {
    require_redis!();
    let mut server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("pool");
    let client = Client::connect([&url]).await.expect("connect");
    // One acquire and release leave one idle connection in the pool.
    let guard = client.lock(&name).acquire().await.expect("acquire");
    guard.release().await.expect("release");
    blocking(|| server.restart());

    let started = Instant::now();
    let result = client
        .lock(&name)
        .wait(Duration::from_secs(3))
        .acquire()
        .await;
    let elapsed = started.elapsed();
    let guard = result.unwrap_or_else(|e| {
        panic!("acquire after the restart failed after {elapsed:?}: {e:?} ({e})")
    });
    assert!(
        elapsed < Duration::from_secs(1),
        "the free lock took {elapsed:?}"
    );
    guard.release().await.expect("release");
}

/// Redlock over three nodes; node 2 stalls for 500 ms (`DEBUG SLEEP`, under the 1 s request
/// timeout) while the lock is released. Returns the lock key's PTTL on each node afterwards
/// (-2: gone).
async fn release_with_a_slow_node(scripts_on_slow_node: bool) -> Vec<Option<i64>> {
    let servers: Vec<RedisServer> = blocking(|| {
        (0..3)
            .map(|_| RedisServer::start_with(&["--enable-debug-command", "local"]))
            .collect()
    });
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls).await.expect("connect to 3 nodes");
    blocking(|| {
        load_scripts(&servers[0]);
        load_scripts(&servers[1]);
        if scripts_on_slow_node {
            load_scripts(&servers[2]);
        }
    });
    let name = unique_name("slow-release");
    let key = support::lock_key(&name);
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("acquire");
    // The acquire returns at a quorum; the third node's grant may still be on its way.
    for server in &servers {
        until("the grant on every node", Duration::from_secs(5), || {
            let holder = blocking(|| server.raw().ok(&["GET", &key]).text());
            holder.as_deref() == Some(guard.token())
        })
        .await;
    }
    // A status call leaves an idle connection to every node in the pool, so the release
    // below does not wait for a new connection's handshake with the stalled node.
    let status = client.status(&name).await.expect("status");
    assert_eq!(status.holder(), Some(guard.token()), "{status:?}");
    let port = servers[2].port();
    let sleeper = std::thread::spawn(move || {
        support::Raw::connect(port)
            .expect("raw")
            .ok(&["DEBUG", "SLEEP", "0.5"]);
    });
    // The release must leave while node 2 is stalled: wait until its main thread sleeps.
    until(
        "node 2 to stall in DEBUG SLEEP",
        Duration::from_secs(5),
        || {
            assert!(
                !sleeper.is_finished(),
                "node 2's 0.5 s stall ended before the test saw it began: nothing to release into"
            );
            blocking(|| servers[2].is_in_debug_sleep())
        },
    )
    .await;
    let released = timeout(Duration::from_secs(5), guard.release())
        .await
        .expect("bounded release");
    assert!(released.is_ok(), "a quorum released: {released:?}");
    blocking(|| sleeper.join().expect("sleeper"));
    // Node 2 runs the release once it wakes (without its scripts, the `EVALSHA` answers
    // `NOSCRIPT` and the release goes again as `EVAL`): wait for the key to leave every node,
    // for at most 5 s (the TTL is 30 s, so expiry cannot stand in for it), and return what
    // is left then, for the callers to assert on.
    let left = || -> Vec<Option<i64>> {
        blocking(|| {
            servers
                .iter()
                .map(|s| s.raw().ok(&["PTTL", &key]).int())
                .collect()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pttls = left();
        if pttls.iter().all(|pttl| *pttl == Some(-2)) || Instant::now() >= deadline {
            return pttls;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A slow node still runs the release sent to it (the ballot stops waiting for its reply
/// once a quorum said yes, but the command is on its way).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_reaches_a_slow_node() {
    require_redis!();
    let left = release_with_a_slow_node(true).await;
    assert!(
        left.iter().all(|pttl| *pttl == Some(-2)),
        "the released lock is still on a node: PTTL per node {left:?}"
    );
}

/// The same when the slow node's script cache is empty (it restarted, failed over, or saw
/// `SCRIPT FLUSH`): its `EVALSHA` answers `NOSCRIPT`, and the release must go again as `EVAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_reaches_a_slow_node_without_the_script() {
    require_redis!();
    let left = release_with_a_slow_node(false).await;
    assert!(
        left.iter().all(|pttl| *pttl == Some(-2)),
        "the released lock is still on a node: PTTL per node {left:?}"
    );
}

/// Redlock answers at a quorum, so the slowest node's reply is often still in flight when an
/// acquire returns. Those connections are read to the end in the background and pooled again,
/// not closed: a hundred rounds over three servers open a handful of connections, not one
/// per round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_rounds_reuse_their_connections() {
    require_redis!();
    let servers: Vec<RedisServer> = blocking(|| (0..3).map(|_| RedisServer::start()).collect());
    blocking(|| servers.iter().for_each(load_scripts));
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls).await.expect("connect to 3 nodes");
    let name = unique_name("reuse");
    let connections = |servers: &[RedisServer]| -> u64 {
        servers.iter().map(RedisServer::connections_received).sum()
    };
    // Opened before counting starts, so that watching the servers below opens nothing.
    let mut watchers: Vec<support::Raw> =
        blocking(|| servers.iter().map(RedisServer::raw).collect());
    let before = blocking(|| connections(&servers));
    const ROUNDS: u64 = 100;
    for _ in 0..ROUNDS {
        let guard = client
            .lock(&name)
            .ttl(Duration::from_secs(10))
            .try_acquire()
            .await
            .expect("free lock");
        guard.release().await.expect("release");
    }
    // A round returns at a quorum, with the slowest node's request possibly still on its way
    // (over a connection perhaps still opening): count once every server has run every
    // round's acquire (`SET`) and release (a script, or `DELIFEQ`/`DELEX` where the server
    // has them), so every connection the rounds opened has been accepted.
    until(
        "every server to run every round's acquire and release",
        Duration::from_secs(10),
        || {
            blocking(|| {
                watchers.iter_mut().all(|raw| {
                    let stats = raw.ok(&["INFO", "commandstats"]).text().unwrap_or_default();
                    let releases: u64 = ["evalsha", "eval", "delifeq", "delex"]
                        .iter()
                        .map(|command| command_calls(&stats, command))
                        .sum();
                    command_calls(&stats, "set") >= ROUNDS && releases >= ROUNDS
                })
            })
        },
    )
    .await;
    // Each `raw()` above and below is one connection per server, counted too.
    let opened = blocking(|| connections(&servers)) - before;
    assert!(
        opened <= 3 * 4,
        "{ROUNDS} Redlock rounds opened {opened} connections over 3 servers"
    );
}

/// An extend to a shorter TTL moves the key's expiry earlier: the guard must say so, with or
/// without its background renewal running beside it, and never keep the longer validity it
/// had (that would be a holder believing in a lease the server no longer keeps).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extend_to_a_shorter_ttl_shortens_the_validity() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    for auto_renew in [false, true] {
        let name = unique_name("shorter");
        let guard = client
            .lock(&name)
            .ttl(Duration::from_secs(20))
            .auto_renew(auto_renew)
            .acquire()
            .await
            .expect("acquire");
        assert!(guard.validity() > Duration::from_secs(15));
        let validity = guard.extend(Duration::from_secs(2)).await.expect("extend");
        assert!(
            validity <= Duration::from_secs(2) && guard.validity() <= Duration::from_secs(2),
            "auto_renew {auto_renew}: the guard claims {:?} after an extend to 2 s",
            guard.validity()
        );
        let key = format!("distlock:{{{name}}}");
        let pttl = blocking(|| server.raw().ok(&["PTTL", &key]))
            .int()
            .expect("PTTL is an integer");
        assert!(
            (0..=2_000).contains(&pttl),
            "auto_renew {auto_renew}: the key lives {pttl} ms"
        );
        guard.release().await.expect("release");
    }
}

/// Fair mode through the Rust API: tasks that queue one after another get the lock in that
/// order, each handed it by the previous holder's release, with growing fences.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_waiters_are_handed_the_lock_in_arrival_order() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let url = server.url();
    let name = unique_name("fair");
    let queue = format!("{}:queue", support::lock_key(&name));
    let first = Client::connect([&url]).await.expect("connect");
    let guard = first
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .fenced(true)
        .fair(true)
        .acquire()
        .await
        .expect("the first holder");
    let first_fence = guard.fence().expect("fenced");
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 1..=4i64 {
        let client = Client::connect([&url]).await.expect("connect");
        let (name, order) = (name.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let guard = client
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(Duration::from_secs(10))
                .fenced(true)
                .fair(true)
                .acquire()
                .await
                .expect("every waiter gets its turn");
            order.lock().expect("order").push((n, guard.fence()));
            guard.release().await.expect("release");
        }));
        // The next task starts only once this one is queued: the arrival order is known.
        let queue = queue.clone();
        until("the waiter to queue", Duration::from_secs(5), || {
            blocking(|| server.raw().ok(&["ZCARD", &queue]).int()) == Some(n)
        })
        .await;
    }
    guard.release().await.expect("release");
    for task in tasks {
        timeout(Duration::from_secs(20), task)
            .await
            .expect("the waiters finish")
            .expect("waiter task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "first come, first served"
    );
    let mut last = first_fence;
    for (n, fence) in order {
        let fence = fence.expect("fenced");
        assert!(fence > last, "waiter {n}: fence {fence} after {last}");
        last = fence;
    }
}
