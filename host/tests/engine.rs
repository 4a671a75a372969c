//! Conformance of the engine component (`wit/engine.wit`, `wasm/engine/`): the cases of
//! `bindings/conformance.json`, each driven by a reference host ([`engine_host`]: wasmtime,
//! TCP sockets, one event loop) against real `redis-server` processes on free loopback ports.
//!
//! The case list is written once, in that file, for every host of the engine (this one, the
//! Node.js binding's tests); `every_case_has_a_test` fails when a case has no test here or a
//! test names no case. The semaphore and read-write lock cases are in [`engine_shapes`], the
//! multi-name lock cases in [`engine_multi`].

mod engine_compute;
mod engine_host;
mod engine_multi;
mod engine_shapes;
mod support;

use std::thread;
use std::time::{Duration, Instant};

use engine_host::{Host, api, entropy, instantiate, options};
use support::{RedisServer, SOON, lock_key, require_redis, unique_name, wait_for};

/// The case ids this file implements, in the order of `bindings/conformance.json`.
const IMPLEMENTED: &[&str] = &[
    "acquire-release",
    "try-acquire-held",
    "wait-for-release",
    "release-by-token",
    "extend",
    "fencing-order",
    "redlock-frozen-node",
    "redlock-majority-down",
    "renewal-keeps-lease",
    "lease-lost",
    "dropped-lease-expires",
    "status",
    "fair-arrival-order",
    "bad-names",
    "bad-ttls",
    "bad-input",
    "not-tried-yet",
    "operation-before-handshake",
    "frozen-node-skipped",
    "semaphore-limit",
    "rw-readers-share",
    "shaped-extend-renewal",
    "shaped-bad-input",
    "multi-all-or-nothing",
    "multi-overlap-excludes",
    "multi-extend-renewal",
    "multi-bad-sets",
    "get-or-compute",
    "get-or-compute-bad-input",
];

#[test]
fn every_case_has_a_test() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bindings/conformance.json"
    ))
    .expect("read bindings/conformance.json");
    let cases: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let ids: Vec<&str> = cases["cases"]
        .as_array()
        .expect("a case list")
        .iter()
        .map(|case| case["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(
        ids, IMPLEMENTED,
        "bindings/conformance.json and this file differ"
    );
}

fn host(server: &RedisServer) -> Host {
    Host::connect(options(&[server.url()])).expect("connect")
}

fn key_value(server: &RedisServer, key: &str) -> Option<String> {
    server.raw().ok(&["GET", key]).text()
}

/// The error's config kind, for an `invalid` error.
fn invalid_kind(error: &api::Error) -> api::ConfigErrorKind {
    match error {
        api::Error::Invalid(config) => config.kind,
        other => panic!("expected an invalid error, got {other:?}"),
    }
}

#[test]
fn acquire_release() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let name = unique_name("engine-acquire");
    let lease = host.acquire(&name, 0).expect("acquire a free lock");
    assert_eq!(lease.token.len(), 32, "a fresh token: {}", lease.token);
    assert!(lease.valid_until > lease.started);
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone())
    );
    assert_eq!(host.release(&name, &lease.token), Ok(0));
    assert_eq!(key_value(&server, &lock_key(&name)), None);
}

#[test]
fn try_acquire_held() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = host(&server);
    let mut other = host(&server);
    let name = unique_name("engine-try");
    let lease = holder.acquire(&name, 0).expect("acquire");
    match other.try_acquire(&name) {
        Err(api::Error::NotAcquired(not)) => {
            assert_eq!(not.attempts, 1);
            // A plain `SET NX` refusal carries no TTL; a script's does.
            if let Some(ttl) = not.holder_ttl_ms {
                assert!(ttl <= 30_000, "holder TTL {ttl}");
            }
        }
        other => panic!("expected not-acquired, got {other:?}"),
    }
    assert_eq!(key_value(&server, &lock_key(&name)), Some(lease.token));
}

#[test]
fn wait_for_release() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let mut holder = host(&server);
    let name = unique_name("engine-wait");
    let lease = holder.acquire(&name, 0).expect("acquire");
    let waiter = {
        let name = name.clone();
        thread::spawn(move || {
            let mut host = Host::connect(options(&[url])).expect("connect");
            host.acquire(&name, 10_000)
        })
    };
    // The waiter blocks on the lock's wake-up list: release once it does.
    wait_for("the waiter to block", SOON, || {
        (server.blocked_clients() > 0).then_some(())
    });
    holder.release(&name, &lease.token).expect("release");
    let taken = waiter
        .join()
        .expect("the waiter thread")
        .expect("the waiter gets the lock");
    assert_ne!(taken.token, lease.token);
    assert_eq!(key_value(&server, &lock_key(&name)), Some(taken.token));
}

#[test]
fn release_by_token() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = host(&server);
    let mut other = host(&server);
    let name = unique_name("engine-token");
    let lease = holder.acquire(&name, 0).expect("acquire");
    let wrong = "0123456789abcdef0123456789abcdef";
    assert_eq!(other.release(&name, wrong), Err(api::Error::NotHeld));
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone())
    );
    assert_eq!(other.release(&name, &lease.token), Ok(0));
    assert_eq!(key_value(&server, &lock_key(&name)), None);
}

#[test]
fn extend() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let name = unique_name("engine-extend");
    let lease = host.acquire(&name, 0).expect("acquire");
    let extended = host.extend(&name, &lease.token, 120_000).expect("extend");
    assert!(extended.valid_until > lease.valid_until + 60_000.0);
    let pttl = server
        .raw()
        .ok(&["PTTL", &lock_key(&name)])
        .int()
        .expect("PTTL");
    assert!(
        pttl > 60_000,
        "the key lives {pttl} ms after a 120 s extend"
    );
    let wrong = "0123456789abcdef0123456789abcdef";
    assert_eq!(host.extend(&name, wrong, 120_000), Err(api::Error::NotHeld));
}

/// Three fenced acquire/release rounds on `urls`: the fences, in order.
fn fences(urls: &[String]) -> Vec<u64> {
    let mut opts = options(urls);
    opts.fenced = true;
    let mut host = Host::connect(opts).expect("connect");
    let name = unique_name("engine-fence");
    (0..3)
        .map(|_| {
            let lease = host.acquire(&name, 0).expect("acquire");
            host.release(&name, &lease.token).expect("release");
            lease.fence.expect("a fenced session hands out fences")
        })
        .collect()
}

#[test]
fn fencing_order() {
    require_redis!();
    let one = RedisServer::start();
    let single = fences(&[one.url()]);
    assert!(single.windows(2).all(|w| w[0] < w[1]), "{single:?}");
    let three: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = three.iter().map(RedisServer::url).collect();
    let redlock = fences(&urls);
    assert!(redlock.windows(2).all(|w| w[0] < w[1]), "{redlock:?}");
}

/// The request timeout of the cases with a frozen or stopped node: it also bounds the
/// handshakes, which a loaded machine missed at 300 ms; a frozen node costs a try this much
/// once, and a skipped one must cost less.
const FROZEN_REQUEST_TIMEOUT_MS: u32 = 1_000;

#[test]
fn redlock_frozen_node() {
    require_redis!();
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let mut opts = options(&urls);
    opts.request_timeout_ms = Some(FROZEN_REQUEST_TIMEOUT_MS);
    let mut host = Host::connect(opts).expect("connect");
    servers[2].pause();
    let name = unique_name("engine-frozen");
    let lease = host.acquire(&name, 0);
    let released = match &lease {
        Ok(lease) => Some(host.release(&name, &lease.token)),
        Err(_) => None,
    };
    servers[2].resume();
    let lease = lease.expect("a majority grants the lock");
    for server in &servers[..2] {
        // Released by majority: the running nodes no longer hold it.
        assert_eq!(key_value(server, &lock_key(&name)), None);
    }
    assert_eq!(released.expect("acquired"), Ok(0));
    assert_eq!(lease.token.len(), 32);
}

#[test]
fn redlock_majority_down() {
    require_redis!();
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    servers[1].stop();
    servers[2].stop();
    let mut opts = options(&urls);
    opts.request_timeout_ms = Some(FROZEN_REQUEST_TIMEOUT_MS);
    match Host::connect(opts) {
        Err(api::Error::Unavailable(why)) => assert!(why.contains("1 of 3"), "{why}"),
        Err(other) => panic!("expected unavailable, got {other:?}"),
        Ok(mut host) => panic!(
            "connected without a majority; acquire says {:?}",
            host.acquire("x", 0)
        ),
    }
}

/// The TTL of the renewal tests: short, so renewal happens within the test, yet long enough
/// that a loaded machine stalling the test's thread for a few hundred ms does not lose the
/// lease (a 600 ms TTL did, at load ~6).
const RENEWAL_TTL_MS: u32 = 1_500;

/// Past three renewal TTLs after `started`: only extends can hold a lease that long.
fn three_ttls_after(started: f64) -> f64 {
    started + 3.0 * f64::from(RENEWAL_TTL_MS)
}

/// A session with a short TTL, so renewal happens within the test. The request timeout stays
/// the default: a renewal's extend has its own cut to the validity left, and a 200 ms one
/// bounded the handshake, which a loaded machine misses ("0 of 1 nodes reachable").
fn short_ttl_host(server: &RedisServer, ttl_ms: u32) -> Host {
    let mut opts = options(&[server.url()]);
    opts.ttl_ms = Some(ttl_ms);
    Host::connect(opts).expect("connect")
}

#[test]
fn renewal_keeps_lease() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = short_ttl_host(&server, RENEWAL_TTL_MS);
    let name = unique_name("engine-renew");
    let lease = host.acquire(&name, 0).expect("acquire");
    let renewal = host.renewal(&name, &lease).expect("a renewal");
    let until = three_ttls_after(lease.started);
    let lost = host.renew_until(renewal, |host, valid_until| {
        host.now() > until && valid_until > until
    });
    assert_eq!(lost, None, "the lease was lost while the server ran");
    assert_eq!(key_value(&server, &lock_key(&name)), Some(lease.token));
}

#[test]
fn lease_lost() {
    require_redis!();
    let server = RedisServer::start();
    // The renewal TTL: its first extend (a third of it in) must find the key gone before the
    // validity runs out on a loaded machine, or the loss reads as an expiry.
    let mut host = short_ttl_host(&server, RENEWAL_TTL_MS);
    let name = unique_name("engine-lost");
    let lease = host.acquire(&name, 0).expect("acquire");
    let renewal = host.renewal(&name, &lease).expect("a renewal");
    let mut reset = false;
    let lost = host.renew_until(renewal, |host, _| {
        if !reset {
            // An operator resets the lock under the holder.
            server.raw().ok(&["DEL", &lock_key(&name)]);
            reset = true;
        }
        assert!(
            host.now() < lease.started + 5_000.0,
            "the loss was not reported"
        );
        false
    });
    assert_eq!(lost, Some(api::LostReason::NotHeld));
}

#[test]
fn dropped_lease_expires() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = short_ttl_host(&server, 400);
    let mut waiter = host(&server);
    let name = unique_name("engine-dropped");
    let lease = holder.acquire(&name, 0).expect("acquire");
    drop(holder); // Never released: the key expires at its TTL.
    let taken = waiter
        .acquire(&name, 5_000)
        .expect("acquired after the TTL");
    assert_ne!(taken.token, lease.token);
}

#[test]
fn status() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let name = unique_name("engine-status");
    let lease = host.acquire(&name, 0).expect("acquire");
    let held = host.status(&name).expect("status");
    assert_eq!(held.verdict, api::Verdict::Held(lease.token.clone()));
    match held.nodes.as_slice() {
        [Ok(reading)] => {
            assert_eq!(reading.holder.as_deref(), Some(lease.token.as_str()));
            assert!(reading.ttl_ms.is_some_and(|t| t > 0));
            assert_eq!(reading.queued, Some(0), "nobody waits");
        }
        other => panic!("one reading expected: {other:?}"),
    }
    host.release(&name, &lease.token).expect("release");
    assert_eq!(
        host.status(&name).expect("status").verdict,
        api::Verdict::Free
    );
}

#[test]
fn fair_arrival_order() {
    require_redis!();
    let server = RedisServer::start();
    let fair = api::Options {
        fair: Some(true),
        ..options(&[server.url()])
    };
    let mut holder = Host::connect(fair.clone()).expect("connect");
    let name = unique_name("engine-fair");
    let queue = format!("{}:queue", lock_key(&name));
    let first = holder.acquire(&name, 0).expect("acquire");
    let (granted, grants) = std::sync::mpsc::channel();
    let mut waiters = Vec::new();
    for arrival in 0..3i64 {
        let (name, fair, granted) = (name.clone(), fair.clone(), granted.clone());
        waiters.push(thread::spawn(move || {
            let mut host = Host::connect(fair).expect("connect");
            let taken = host.acquire(&name, 20_000);
            granted.send((arrival, taken)).expect("the test listens");
        }));
        // The next waiter starts only once this one is in the queue: arrival order is known.
        wait_for("the waiter to queue", SOON, || {
            (server.raw().ok(&["ZCARD", &queue]).int() == Some(arrival + 1)).then_some(())
        });
    }
    let status = holder.status(&name).expect("status");
    assert!(
        matches!(status.nodes.as_slice(), [Ok(reading)] if reading.queued == Some(3)),
        "status counts the three queued waiters: {status:?}"
    );
    let mut token = first.token;
    for arrival in 0..3i64 {
        holder.release(&name, &token).expect("release by token");
        let (served, taken) = grants
            .recv_timeout(Duration::from_secs(10))
            .expect("a waiter is handed the lock");
        let taken = taken.expect("the waiter gets the lock");
        assert_eq!(served, arrival, "served out of arrival order");
        assert_eq!(
            key_value(&server, &lock_key(&name)),
            Some(taken.token.clone())
        );
        token = taken.token;
    }
    holder.release(&name, &token).expect("release by token");
    for waiter in waiters {
        waiter.join().expect("the waiter thread");
    }
    assert_eq!(key_value(&server, &lock_key(&name)), None);
    // One queue lives on one node: a fair Redlock is refused before anything is opened.
    let nodes = vec!["redis://127.0.0.1:1".to_owned(); 3];
    let redlock = Host::connect(api::Options {
        fair: Some(true),
        ..options(&nodes)
    })
    .err()
    .expect("fair mode over three nodes is refused");
    assert_eq!(
        invalid_kind(&redlock),
        api::ConfigErrorKind::FairUnsupported
    );
}

#[test]
fn bad_names() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let long = "n".repeat(300);
    for (name, kind) in [
        ("", api::ConfigErrorKind::EmptyName),
        (long.as_str(), api::ConfigErrorKind::NameTooLong),
        ("a\r\nb", api::ConfigErrorKind::NameControlByte),
        ("}x", api::ConfigErrorKind::NameStartsWithBrace),
    ] {
        let error = host.acquire(name, 0).expect_err("a bad name");
        assert_eq!(invalid_kind(&error), kind, "{name:?}");
        let error = host.status(name).expect_err("a bad name");
        assert_eq!(invalid_kind(&error), kind, "{name:?}");
    }
    let keys = server.raw().ok(&["DBSIZE"]).int();
    assert_eq!(keys, Some(0), "a refused name wrote nothing");
}

#[test]
fn bad_ttls() {
    require_redis!();
    let server = RedisServer::start();
    for (ttl, kind) in [
        (0, api::ConfigErrorKind::BadTtl),
        (3, api::ConfigErrorKind::DriftExceedsTtl),
    ] {
        let mut opts = options(&[server.url()]);
        opts.ttl_ms = Some(ttl);
        let error = Host::connect(opts).err().expect("a bad TTL");
        assert_eq!(invalid_kind(&error), kind, "ttl {ttl}");
    }
    let mut host = host(&server);
    let name = unique_name("engine-ttl");
    let lease = host.acquire(&name, 0).expect("acquire");
    let error = host.extend(&name, &lease.token, 0).expect_err("a zero TTL");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::BadTtl);
    assert_eq!(key_value(&server, &lock_key(&name)), Some(lease.token));
}

#[test]
fn the_engine_imports_nothing() {
    // The runtime passes time and entropy in: no WASI, no callbacks into the host.
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::new(&engine, distlock_host::component::ENGINE_WASM)
            .expect("compile");
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(imports, Vec::<String>::new());
}

#[test]
fn bad_input() {
    // No server needed: nothing is built, so nothing is sent.
    let (mut store, machines) = instantiate();
    let guest = machines.distlock_lock_machines();
    let bad_url = guest
        .call_open(&mut store, &options(&["http://x".to_string()]), &entropy())
        .expect("no trap")
        .expect_err("a bad URL");
    assert_eq!(invalid_kind(&bad_url), api::ConfigErrorKind::BadUrl);
    let short = guest
        .call_open(
            &mut store,
            &options(&["redis://127.0.0.1:1".to_string()]),
            &vec![1, 2],
        )
        .expect("no trap")
        .expect_err("short entropy");
    assert_eq!(invalid_kind(&short), api::ConfigErrorKind::Other);
    let none = guest
        .call_open(&mut store, &options(&[]), &entropy())
        .expect("no trap")
        .expect_err("no nodes");
    assert_eq!(invalid_kind(&none), api::ConfigErrorKind::BadNodeCount);
    let session = guest
        .call_open(
            &mut store,
            &options(&["redis://127.0.0.1:1".to_string()]),
            &entropy(),
        )
        .expect("no trap")
        .expect("a session (nothing is opened yet)");
    let sessions = guest.session();
    let token = sessions
        .call_release(&mut store, session, "x", "short", 0.0, &entropy())
        .expect("no trap")
        .expect_err("a malformed token");
    assert_eq!(invalid_kind(&token), api::ConfigErrorKind::BadToken);
    let entropy_short = sessions
        .call_acquire(&mut store, session, "x", 0, 0.0, &vec![0; 12])
        .expect("no trap")
        .expect_err("short entropy");
    assert_eq!(invalid_kind(&entropy_short), api::ConfigErrorKind::Other);
    // Instants a JavaScript host might pass by mistake are clamped, not trapped on.
    assert_eq!(
        sessions
            .call_poll_connect(&mut store, session, f64::NAN)
            .expect("no trap"),
        Some(0)
    );
}

#[test]
fn not_tried_yet() {
    require_redis!();
    let server = RedisServer::start();
    let (mut store, machines) = instantiate();
    let guest = machines.distlock_lock_machines();
    let session = guest
        .call_open(&mut store, &options(&[server.url()]), &entropy())
        .expect("no trap")
        .expect("a session");
    let outcome = guest
        .session()
        .call_connect_outcome(&mut store, session)
        .expect("no trap");
    assert_eq!(outcome, None, "nothing tried yet is not unavailable");
    // After a connect, a majority ready: ok.
    let host = host(&server);
    assert_eq!(host.connect_outcome(), Some(Ok(())));
}

#[test]
fn operation_before_handshake() {
    require_redis!();
    let server = RedisServer::start();
    let (mut store, machines) = instantiate();
    let guest = machines.distlock_lock_machines();
    let session = guest
        .call_open(&mut store, &options(&[server.url()]), &entropy())
        .expect("no trap")
        .expect("a session");
    let sessions = guest.session();
    // A connect under way whose handshake has not completed (its socket is never opened).
    let handshake = sessions
        .call_connect(&mut store, session, 0, 0.0)
        .expect("no trap")
        .expect("the first connect to a node");
    let refused = sessions
        .call_status(&mut store, session, "x", 0.0)
        .expect("no trap")
        .expect_err("no node has completed a handshake");
    assert!(
        matches!(&refused, api::Error::Unavailable(why) if why.contains("handshake")),
        "{refused:?}"
    );
    let acquire = sessions
        .call_acquire(&mut store, session, "x", 0, 0.0, &entropy())
        .expect("no trap")
        .expect_err("no node has completed a handshake");
    assert!(matches!(acquire, api::Error::Unavailable(_)), "{acquire:?}");
    handshake.resource_drop(&mut store).expect("no trap");
    // A client connects first, so its first operation on a fresh session reads right.
    let mut host = host(&server);
    let name = unique_name("engine-fresh");
    assert_eq!(
        host.status(&name).expect("status").verdict,
        api::Verdict::Free
    );
}

#[test]
fn frozen_node_skipped() {
    require_redis!();
    let server = RedisServer::start();
    let mut opts = options(&[server.url()]);
    opts.request_timeout_ms = Some(FROZEN_REQUEST_TIMEOUT_MS);
    let mut host = Host::connect(opts).expect("connect");
    let name = unique_name("engine-frozen-one");
    server.pause();
    let first = host.try_acquire(&name);
    let started = Instant::now();
    let second = host.try_acquire(&name);
    let second_took = started.elapsed();
    server.resume();
    let last_failure = |result: &Result<api::Lease, api::Error>| match result {
        Err(api::Error::QuorumLost(lost)) => lost.last_failure.clone(),
        other => panic!("expected quorum-lost, got {other:?}"),
    };
    assert_eq!(
        last_failure(&first),
        Some(api::NodeFailure::Timeout),
        "the frozen node costs the first try its request timeout"
    );
    assert_eq!(
        last_failure(&second),
        Some(api::NodeFailure::Disconnected),
        "the silent node is skipped, not waited for again"
    );
    assert!(
        second_took < Duration::from_millis(FROZEN_REQUEST_TIMEOUT_MS.into()),
        "the second try waited {second_took:?}: the silent node again"
    );
    // Once it answers again (after its backoff pause), the lock is had.
    let lease = wait_for(
        "the node to be taken back once it answers",
        Duration::from_secs(10),
        || host.try_acquire(&name).ok(),
    );
    host.release(&name, &lease.token).expect("release");
}

/// The flat calls (`acquire-started`, `release-started`, `start`, `feed`, `lose`, `tick`, the
/// path of the Node and Python hosts) drive the same machines as `step`: a lock taken, held
/// against another flat client, extended, read, and released, with the server's key agreeing
/// at each point.
#[test]
fn flat_calls_drive_the_same_machines() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = host(&server).flat();
    let mut other = host(&server).flat();
    let name = unique_name("engine-flat");
    let lease = holder.acquire(&name, 0).expect("acquire a free lock");
    assert_eq!(lease.token.len(), 32, "a fresh token: {}", lease.token);
    assert!(lease.valid_until > lease.started);
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone())
    );
    // An error travels outside the flat layout, through `poll-outcome`.
    match other.try_acquire(&name) {
        Err(api::Error::NotAcquired(not)) => assert_eq!(not.attempts, 1),
        refused => panic!("expected not-acquired, got {refused:?}"),
    }
    let extended = holder.extend(&name, &lease.token, 60_000).expect("extend");
    assert!(extended.valid_until > lease.valid_until);
    // So does a status.
    let status = other.status(&name).expect("status");
    assert_eq!(status.verdict, api::Verdict::Held(lease.token.clone()));
    assert_eq!(
        other.release(&name, &lease.token),
        Ok(0),
        "any holder of the token releases"
    );
    assert_eq!(key_value(&server, &lock_key(&name)), None);
    assert_eq!(
        holder.release(&name, &lease.token),
        Err(api::Error::NotHeld)
    );
    let again = holder.acquire(&name, 0).expect("free again");
    assert_ne!(again.token, lease.token);
}

/// The session-level flat calls (`register`, `acquire-flat`, `release-flat`,
/// `extend-flat`, `feed-flat`, `outcome-flat`: the uncontended path of the Node and Python
/// hosts) drive the same machines: a lock taken, refused to another client (the error
/// through `outcome-flat`), extended, read and released, with the server's key agreeing; the
/// host checks at every outcome that the engine freed the slot.
#[test]
fn slotted_calls_drive_the_same_machines() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = host(&server);
    let mut other = host(&server);
    let name = unique_name("engine-slotted");
    let lease = holder
        .acquire_slotted(&name, 0)
        .expect("acquire a free lock");
    assert_eq!(lease.token.len(), 32, "a fresh token: {}", lease.token);
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone())
    );
    match other.acquire_slotted(&name, 0) {
        Err(api::Error::NotAcquired(not)) => assert_eq!(not.attempts, 1),
        refused => panic!("expected not-acquired, got {refused:?}"),
    }
    let extended = holder
        .extend_slotted(&name, &lease.token, 60_000)
        .expect("extend");
    assert!(extended.valid_until > lease.valid_until);
    let status = other.status(&name).expect("status after slotted calls");
    assert_eq!(status.verdict, api::Verdict::Held(lease.token.clone()));
    assert_eq!(other.release_slotted(&name, &lease.token), Ok(0));
    assert_eq!(key_value(&server, &lock_key(&name)), None);
    assert_eq!(
        holder.release_slotted(&name, &lease.token),
        Err(api::Error::NotHeld)
    );
    // A pair after many: the connections stayed in step through every slotted operation.
    for _ in 0..50 {
        let lease = holder.acquire_slotted(&name, 0).expect("acquire again");
        assert_eq!(holder.release_slotted(&name, &lease.token), Ok(0));
    }
}

/// The packed session-level flat calls (`acquire-flat-packed`, `release-flat-packed`,
/// `extend-flat-packed`, `feed-flat-packed`: the Python host's path) drive the same machines
/// as the unpacked ones, every answer the slotted layout packed (checked by the host): a lock
/// taken, refused to another client, extended, read and released, with the server's key
/// agreeing, and a packed client and an unpacked one excluding each other.
#[test]
fn packed_calls_drive_the_same_machines() {
    require_redis!();
    let server = RedisServer::start();
    let mut holder = host(&server);
    let mut other = host(&server);
    let name = unique_name("engine-packed");
    let lease = holder
        .acquire_packed(&name, 0)
        .expect("acquire a free lock");
    assert_eq!(lease.token.len(), 32, "a fresh token: {}", lease.token);
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone())
    );
    match other.acquire_packed(&name, 0) {
        Err(api::Error::NotAcquired(not)) => assert_eq!(not.attempts, 1),
        refused => panic!("expected not-acquired, got {refused:?}"),
    }
    match other.acquire_slotted(&name, 0) {
        Err(api::Error::NotAcquired(_)) => {}
        refused => panic!("an unpacked client is refused too, got {refused:?}"),
    }
    let extended = holder
        .extend_packed(&name, &lease.token, 60_000)
        .expect("extend");
    assert!(extended.valid_until > lease.valid_until);
    let status = other.status(&name).expect("status after packed calls");
    assert_eq!(status.verdict, api::Verdict::Held(lease.token.clone()));
    assert_eq!(other.release_packed(&name, &lease.token), Ok(0));
    assert_eq!(key_value(&server, &lock_key(&name)), None);
    assert_eq!(
        holder.release_packed(&name, &lease.token),
        Err(api::Error::NotHeld)
    );
    // Tokens and replies of every length modulo 8 cross: many pairs, both forms in turn.
    for round in 0..40 {
        let lease = if round % 2 == 0 {
            holder.acquire_packed(&name, 0)
        } else {
            holder.acquire_slotted(&name, 0)
        }
        .expect("acquire again");
        assert_eq!(holder.release_packed(&name, &lease.token), Ok(0));
    }
}

/// A packed call whose claimed length is past its words is refused and changes nothing: a
/// constructor answers `invalid` (kind `other`) and the lock stays as it was; `feed-flat-packed`
/// answers nothing and the operation still waits for its reply.
#[test]
fn packed_lengths_past_their_words_change_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let name = unique_name("engine-packed-bad");
    let lease = host.acquire_packed(&name, 0).expect("acquire");
    let token = lease.token.as_bytes();
    let past = u32::try_from(token.len().div_ceil(8) * 8 + 1).unwrap();
    let refused = host
        .release_packed_claiming(&name, token, past)
        .expect_err("a token length past its words");
    assert_eq!(invalid_kind(&refused), api::ConfigErrorKind::Other);
    let refused = host
        .extend_packed_claiming(&name, token, past, 60_000)
        .expect_err("a token length past its words");
    assert_eq!(invalid_kind(&refused), api::ConfigErrorKind::Other);
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone()),
        "still held"
    );
    // A shorter claim is the token's prefix: a token this lock does not know.
    let short = u32::try_from(token.len() - 1).unwrap();
    assert_eq!(
        host.release_packed_claiming(&name, token, short),
        Err(api::Error::NotHeld)
    );

    let id = host.register(&name).expect("register");
    let slot = host.acquire_parked(id).expect("a parked acquire");
    assert!(
        host.feed_packed_claiming(slot, b"+OK\r\n", 9).is_empty(),
        "a reply length past its words answers nothing"
    );
    assert!(
        !host.tick_slot(slot).is_empty(),
        "the operation was not fed and still waits"
    );
    host.abandon(slot);
    assert_eq!(host.release_packed(&name, &lease.token), Ok(0));
}

/// The slotted calls' bounds and ids: a name registered twice has one id; a bad name is
/// refused as `acquire` refuses it; past 4096 names or 4096 operations in flight a call is
/// refused (`invalid`, kind `other`) and changes nothing; a forgotten name's id and an
/// abandoned slot are unknown from then on, never another's.
#[test]
fn slotted_bounds_and_stale_ids() {
    require_redis!();
    let server = RedisServer::start();
    let mut host = host(&server);
    let first = host.register("bounds-0").expect("register");
    assert_eq!(host.register("bounds-0"), Ok(first), "one id per name");
    assert_eq!(
        host.register("").map_err(|e| invalid_kind(&e)),
        Err(api::ConfigErrorKind::EmptyName)
    );
    for n in 1..4096 {
        host.register(&format!("bounds-{n}"))
            .expect("within the bound");
    }
    let past = host.register("bounds-4096").expect_err("past the bound");
    assert_eq!(invalid_kind(&past), api::ConfigErrorKind::Other);
    host.forget_names();
    let stale = host.acquire_parked(first).expect_err("a forgotten id");
    assert_eq!(invalid_kind(&stale), api::ConfigErrorKind::Other);
    let id = host
        .register("bounds-again")
        .expect("room again after forget-names");

    let slots: Vec<u32> = (0..4096)
        .map(|_| host.acquire_parked(id).expect("a slot within the bound"))
        .collect();
    let full = host.acquire_parked(id).expect_err("past the slot bound");
    assert_eq!(invalid_kind(&full), api::ConfigErrorKind::Other);
    host.abandon(slots[7]);
    assert!(
        host.tick_slot(slots[7]).is_empty(),
        "an abandoned slot answers nothing"
    );
    let reused = host.acquire_parked(id).expect("the abandoned slot's room");
    assert_ne!(reused, slots[7], "a reused slot has a new number");
    assert!(
        host.tick_slot(slots[7]).is_empty(),
        "the old number stays unknown"
    );
    assert!(!host.tick_slot(reused).is_empty(), "the new one answers");
    for slot in slots.into_iter().chain([reused]) {
        host.abandon(slot);
    }
}

/// `options.no-scripts` reaches the engine's core: with fencing it is refused
/// (`needs-scripts`); on Valkey 9.1, as a user whose ACL forbids every script, a lock is
/// taken, refused to another and released with no script.
#[test]
fn no_scripts_from_the_options() {
    require_redis!();
    support::require_valkey!();
    let valkey = RedisServer::start_valkey_with(&[]);
    valkey.raw().ok(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-@scripting",
    ]);
    let url = format!("redis://app:pw@127.0.0.1:{}", valkey.port());
    let scriptless = api::Options {
        no_scripts: Some(true),
        ..options(&[url])
    };
    let fenced = Host::connect(api::Options {
        fenced: true,
        ..scriptless.clone()
    })
    .err()
    .expect("fencing needs a script");
    assert_eq!(invalid_kind(&fenced), api::ConfigErrorKind::NeedsScripts);

    let name = unique_name("engine-no-scripts");
    let mut holder = Host::connect(scriptless.clone()).expect("connect");
    let mut other = Host::connect(scriptless).expect("connect");
    let lease = holder.acquire(&name, 0).expect("SET NX PX");
    assert!(matches!(
        other.acquire(&name, 0),
        Err(api::Error::NotAcquired(_))
    ));
    holder.release(&name, &lease.token).expect("DELIFEQ");
    assert_eq!(key_value(&valkey, &lock_key(&name)), None);
    let stats = valkey.raw().ok(&["INFO", "commandstats"]).text().unwrap();
    assert_eq!(support::command_calls(&stats, "delifeq"), 1, "{stats}");
    assert_eq!(
        support::command_calls(&stats, "eval") + support::command_calls(&stats, "evalsha"),
        0,
        "{stats}"
    );
}

/// How a waiter's host drives its acquire, for [`a_waiter_the_server_cut_off`].
#[derive(Clone, Copy, Debug)]
enum Path {
    Step,
    Flat,
    Slotted,
    Packed,
}

/// What a waiter's host does about a node it lost while an operation runs.
#[derive(Clone, Copy, Debug)]
enum Waiter {
    /// Opens a new connection when the session allows and lends it (`connected`).
    Reconnecting,
    /// Nothing: the node stays out of the operation.
    NeverLending,
    /// Sends `connected` at once, with no new connection (the engine must ignore it).
    LendingTooEarly,
}

/// A waiter blocked on the lock's wake-up list has its connection closed by the server
/// (`CLIENT KILL`); once it waits again on a new connection (a reconnecting waiter), or the
/// server has dropped it (any other), the holder releases. Answers the waiter's result and
/// how long its acquire took; a waiter that got the lock holds its key.
fn a_waiter_the_server_cut_off(
    path: Path,
    waiter: Waiter,
    wait_ms: u32,
) -> (Result<api::Lease, api::Error>, Duration) {
    let server = RedisServer::start();
    let url = server.url();
    let mut holder = host(&server);
    let name = unique_name("engine-cut-off");
    let lease = holder.acquire(&name, 0).expect("acquire");
    let waiting = {
        let name = name.clone();
        thread::spawn(move || {
            let host = Host::connect(options(&[url])).expect("connect");
            let mut host = match waiter {
                Waiter::Reconnecting => host.reconnecting(),
                Waiter::NeverLending => host,
                Waiter::LendingTooEarly => host.lending_too_early(),
            };
            let started = Instant::now();
            let result = match path {
                Path::Step => host.acquire(&name, wait_ms),
                Path::Flat => {
                    let mut host = host.flat();
                    host.acquire(&name, wait_ms)
                }
                Path::Slotted => host.acquire_slotted(&name, wait_ms),
                Path::Packed => host.acquire_packed(&name, wait_ms),
            };
            (result, started.elapsed())
        })
    };
    let [killed] = wait_for("the waiter to block", SOON, || {
        <[u64; 1]>::try_from(server.blocked_client_ids()).ok()
    });
    server
        .raw()
        .ok(&["CLIENT", "KILL", "ID", &killed.to_string()]);
    if matches!(waiter, Waiter::Reconnecting) {
        wait_for(
            "the waiter to block again on a new connection",
            SOON,
            || {
                let ids = server.blocked_client_ids();
                (!ids.is_empty() && !ids.contains(&killed)).then_some(())
            },
        );
    } else {
        wait_for("the server to drop the waiter's connection", SOON, || {
            (server.blocked_clients() == 0).then_some(())
        });
    }
    holder.release(&name, &lease.token).expect("release");
    let (result, took) = waiting.join().expect("the waiter thread");
    if let Ok(taken) = &result {
        assert_eq!(
            key_value(&server, &lock_key(&name)),
            Some(taken.token.clone())
        );
    }
    (result, took)
}

/// `node-event.connected`: a waiter whose connection the server closed is lent a new one
/// (opened when the session allows, lent once its handshake ends) and gets the lock once it
/// is free, long before its wait runs out — whichever way the operation is driven.
#[test]
fn a_lost_node_is_lent_a_new_connection_and_the_wait_goes_on() {
    require_redis!();
    for path in [Path::Step, Path::Flat, Path::Slotted, Path::Packed] {
        // Without the new connection the acquire would fail once its 30 s wait ran out.
        let (result, took) = a_waiter_the_server_cut_off(path, Waiter::Reconnecting, 30_000);
        // (The lock key holding the waiter's token is checked by the helper.)
        if let Err(error) = result {
            panic!("{path:?}: the waiter gets the lock, not {error:?} after {took:?}");
        }
    }
}

/// A runtime that never sends `connected` keeps the old behaviour: the lost node stays out
/// of the operation, and the wait runs out though the lock came free. So does one that
/// sends it with no handshake of the node completed since the loss: the engine ignores it.
#[test]
fn without_a_new_handshake_a_lost_node_stays_out_of_the_operation() {
    require_redis!();
    for waiter in [Waiter::NeverLending, Waiter::LendingTooEarly] {
        let (result, took) = a_waiter_the_server_cut_off(Path::Flat, waiter, 1_500);
        let kept_out = matches!(
            result,
            Err(api::Error::QuorumLost(_) | api::Error::Unavailable(_))
        );
        assert!(
            kept_out,
            "{waiter:?}: the lost node is never written to again: {result:?} after {took:?}"
        );
    }
}
