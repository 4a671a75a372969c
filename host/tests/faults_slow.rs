//! A slow link between client and server, through the fault proxy: 25 ms of latency each way,
//! and both directions dripping a few bytes at a time (every reply and request arriving in
//! many pieces). It shows that a slow network makes the lock slower, never wrong: no two
//! holders at once, fences rising by one per acquisition, extends still working, and a
//! guard's validity that already lacks the round trip and the drift.
//!
//! Each test starts its own `redis-server` on a free port and checks the deadlines and error
//! types of [`support::faults`]; without `redis-server` they fail (`DISTLOCK_SKIP_REDIS=1`
//! skips them).

mod support;

use std::sync::Arc;
use std::time::Duration;

use distlock_host::{Client, ConnectOptions, KeyLayout, LockOptions, Released};
use support::faults::{deadline, drift};
use support::holders::Section;
use support::proxy::{Dir, Proxy};
use support::{
    RedisServer, blocking, bounded, command_calls, lock_key, require_redis, unique_name,
};

/// 25 ms each way (a 50 ms round trip): the lock works, only slower. Three workers take it
/// four times each without overlapping, fences rise by one per acquisition, every acquire
/// takes at least a round trip, and the validity a guard reports already lacks that round
/// trip and the drift: the clock starts before the request leaves, not when the reply lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_slows_but_keeps_exclusion() {
    require_redis!();
    const WORKERS: usize = 3;
    const ROUNDS: usize = 4;
    let rtt = Duration::from_millis(50);
    let ttl = Duration::from_secs(5);
    let wait = Duration::from_secs(10);
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    proxy.latency(Dir::Up, rtt / 2);
    proxy.latency(Dir::Down, rtt / 2);
    let name = unique_name("latency");
    let section = Arc::new(Section::default());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let client = Client::connect([proxy.url()]).await.expect("connect");
        let (name, section) = (name.clone(), Arc::clone(&section));
        workers.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let acquire = client.lock(&name).ttl(ttl).wait(wait).fenced(true);
                let (guard, took) = bounded("acquire", deadline(wait), acquire.acquire()).await;
                let guard = guard.unwrap_or_else(|e| panic!("acquire under latency: {e:?}"));
                let validity = guard.validity();
                section.enter_fenced(guard.fence().expect("fenced"));
                assert!(took >= rtt, "an acquire took {took:?}, under a round trip");
                assert!(
                    validity <= ttl - drift(ttl) - rtt,
                    "validity {validity:?} does not lack the round trip and the drift"
                );
                // Stay inside a little (work, not a wait): a second holder would overlap.
                tokio::time::sleep(Duration::from_millis(5)).await;
                section.leave();
                let (released, _) =
                    bounded("release", deadline(Duration::ZERO), guard.release()).await;
                assert_eq!(released.expect("release under latency"), Released::Free);
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    section.assert_one_at_a_time_fenced((WORKERS * ROUNDS) as u64);
}

/// Both directions trickle (replies a byte every 2 ms, requests 8 bytes a millisecond), so
/// every reply and request arrives in many pieces: the lock is still exclusive, fences still
/// rise by one, extends still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_drip_still_correct() {
    require_redis!();
    const WORKERS: usize = 3;
    const ROUNDS: usize = 3;
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    proxy.drip(Dir::Down, Some((1, Duration::from_millis(2))));
    proxy.drip(Dir::Up, Some((8, Duration::from_millis(1))));
    let name = unique_name("drip");
    let section = Arc::new(Section::default());
    let wait = Duration::from_secs(15);
    let mut workers = Vec::new();
    // The handshake's replies (HELLO's map, the script digests) take seconds at a byte every
    // 2 ms: longer than the default 1 s a command waits for a connect, so this client allows
    // for it.
    let options = ConnectOptions {
        ready_timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    for _ in 0..WORKERS {
        let client = Client::connect_with([proxy.url()], options.clone(), KeyLayout::default())
            .await
            .expect("connect");
        let (name, section) = (name.clone(), Arc::clone(&section));
        workers.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let acquire = client.lock(&name).ttl(Duration::from_secs(10)).wait(wait);
                let (guard, _) =
                    bounded("acquire", deadline(wait), acquire.fenced(true).acquire()).await;
                let guard = guard.unwrap_or_else(|e| panic!("acquire under a drip: {e:?}"));
                section.enter_fenced(guard.fence().expect("fenced"));
                let (extended, _) = bounded(
                    "extend",
                    deadline(Duration::ZERO),
                    guard.extend(Duration::from_secs(10)),
                )
                .await;
                let validity = extended.expect("extend under a drip");
                assert!(validity > Duration::from_secs(8), "{validity:?}");
                section.leave();
                let (released, _) =
                    bounded("release", deadline(Duration::ZERO), guard.release()).await;
                assert_eq!(released.expect("release under a drip"), Released::Free);
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    section.assert_one_at_a_time_fenced((WORKERS * ROUNDS) as u64);
}

/// How many times `server` has run each of `commands` so far.
fn calls(server: &RedisServer, commands: &[&str]) -> u64 {
    let stats = server
        .raw()
        .ok(&["INFO", "commandstats"])
        .text()
        .expect("INFO commandstats");
    commands.iter().map(|c| command_calls(&stats, c)).sum()
}

/// Redlock over three nodes, the third slow to take the acquire's `SET`: its proxy delays
/// the requests it reads while the acquire is out by a second, then lets later ones through at
/// once. The acquire returns at the quorum of the other two with the slow node's `SET` still
/// on its way, and the guard is released (then, in a second round, dropped) right away. The
/// release must reach the slow node after its `SET`, not before (the `SET` landing after the
/// delete would keep the name held until its TTL): once that node has run the `SET` and a
/// release, no node holds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_right_after_a_quorum_acquire_is_ordered_after_the_slow_nodes_set() {
    require_redis!();
    let servers: Vec<RedisServer> = (0..3).map(|_| blocking(RedisServer::start)).collect();
    let proxy = Proxy::start(servers[2].port());
    let urls = [servers[0].url(), servers[1].url(), proxy.url()];
    let client = Client::connect(urls).await.expect("connect");
    let options = LockOptions {
        // Far beyond the slow node's delay: its reply is late, never given up.
        request_timeout: distlock_core::Duration::from_secs(5),
        ..LockOptions::default()
    };
    let slow = &servers[2];
    for (round, drop_it) in [(0, false), (1, true)] {
        let name = unique_name("straggler");
        let key = lock_key(&name);
        let sets_before = blocking(|| calls(slow, &["set"]));
        let releases_before = blocking(|| calls(slow, &["eval", "evalsha"]));
        let read_before = proxy.read(Dir::Up);
        proxy.latency(Dir::Up, Duration::from_secs(1));
        let guard = client
            .lock(&name)
            .options(options)
            .ttl(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("round {round}: acquire at the quorum of two: {e:?}"));
        // The `SET` to the slow node is in the proxy, due in a second; what comes next is not
        // delayed.
        support::until(
            "the slow node's SET in the proxy",
            Duration::from_secs(5),
            || proxy.read(Dir::Up) > read_before,
        )
        .await;
        proxy.latency(Dir::Up, Duration::ZERO);
        assert_eq!(
            blocking(|| calls(slow, &["set"])),
            sets_before,
            "round {round}: the slow node ran the SET before the release was sent"
        );
        if drop_it {
            drop(guard);
        } else {
            let (released, _) = bounded("release", deadline(Duration::ZERO), guard.release()).await;
            assert_eq!(released.expect("release"), Released::Free, "round {round}");
        }
        support::until(
            "the slow node to run the SET and a release",
            Duration::from_secs(10),
            || {
                blocking(|| calls(slow, &["set"])) > sets_before
                    && blocking(|| calls(slow, &["eval", "evalsha"])) > releases_before
            },
        )
        .await;
        for (node, server) in servers.iter().enumerate() {
            assert_eq!(
                blocking(|| server.raw().ok(&["EXISTS", &key]).int()),
                Some(0),
                "round {round}: node {node} still holds the released lock's key"
            );
        }
    }
}
