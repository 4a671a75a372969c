//! Fault injection against real `redis-server` processes on loopback: a fault proxy between
//! client and server (latency, cut connections, a black-holed direction, a slow drip), paused
//! and killed holder processes, servers killed and restarted with and without an append-only
//! file, Redlock over five servers losing one, two and three of them, `SCRIPT FLUSH` under
//! held locks, and a load run.
//!
//! Every test checks the same three things, whatever the fault: no two holders at once (a
//! critical-section flag the holders set and clear, or a second acquire that must fail), only
//! typed errors (matched on [`distlock_host::Error`]), and no call running past its deadline
//! (`wait + 2 × request timeout`, plus a margin for a loaded CI machine).
//!
//! Each test starts its own servers on free ports; without `redis-server` they fail
//! (`DISTLOCK_SKIP_REDIS=1` skips them). `DISTLOCK_LOAD_OPS=10000` raises the
//! load run from its CI size to a long run.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlock_core::{Drift, NodeFailure};
use distlock_host::{Client, ConnectOptions, Error, Guard, KeyLayout, LockOptions, Released};
use support::proxy::{Dir, Proxy};
use support::{
    KillOnDrop, RedisServer, blocking, bounded, command_calls, distlock, info_field, require_redis,
    run_bounded, send_signal, show, unique_name, until, wait_for,
};

/// The default request timeout: a silent node counts as failed after this.
const RT: Duration = Duration::from_secs(1);
/// Slack on every deadline for a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// The longest an operation with this wait may take: `wait + 2 × request timeout`, plus the
/// margin.
fn deadline(wait: Duration) -> Duration {
    wait + 2 * RT + MARGIN
}

/// Validity Redlock subtracts for clock drift at `ttl` (the default: 1% + 2 ms).
fn drift(ttl: Duration) -> Duration {
    let ms = Drift::default()
        .allowance(distlock_core::Duration::from_millis(ttl.as_millis() as u64))
        .as_millis();
    Duration::from_millis(ms)
}

/// A critical section that counts entries and catches overlaps.
#[derive(Default)]
struct Section {
    inside: AtomicBool,
    entries: AtomicU64,
    overlaps: AtomicU64,
}

impl Section {
    /// Enters; records an overlap when another holder is inside.
    fn enter(&self) {
        self.entries.fetch_add(1, Ordering::SeqCst);
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn leave(&self) {
        self.inside.store(false, Ordering::SeqCst);
    }

    fn entries(&self) -> u64 {
        self.entries.load(Ordering::SeqCst)
    }

    fn overlaps(&self) -> u64 {
        self.overlaps.load(Ordering::SeqCst)
    }
}

/// A resource that remembers the largest fence it has seen and refuses writes with a smaller
/// one: what a fenced lock protects.
#[derive(Debug, Default)]
struct FencedStore {
    highest: u64,
    writes: Vec<(u64, String)>,
}

impl FencedStore {
    fn write(&mut self, fence: u64, what: &str) -> Result<(), String> {
        if fence < self.highest {
            return Err(format!(
                "stale fence {fence}: {} was seen already",
                self.highest
            ));
        }
        self.highest = fence;
        self.writes.push((fence, what.to_owned()));
        Ok(())
    }
}

/// Whether `e` is a lost quorum whose last node failure is `failure` (any, when `None`).
fn is_quorum_lost(e: &Error, failure: Option<&NodeFailure>) -> bool {
    match e.lock_error() {
        Some(distlock_core::Error::QuorumLost { last_failure, .. }) => {
            failure.is_none_or(|f| last_failure.as_ref() == Some(f))
        }
        _ => false,
    }
}

/// Whether `e` is one of the errors a client may see while its server is unreachable or
/// silent: a lost quorum, contention, a lost lease, or a failed connect.
fn is_outage(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Lock(
                distlock_core::Error::QuorumLost { .. }
                    | distlock_core::Error::NotAcquired { .. }
                    | distlock_core::Error::NotHeld
                    | distlock_core::Error::Expired
            )
    )
}

/// The lock key's holder on `server` (its token), if any.
fn holder(server: &RedisServer, name: &str) -> Option<String> {
    server.raw().ok(&["GET", &support::lock_key(name)]).text()
}

/// The guard's validity now and the instant it ends, after checking that the lock key on
/// `server` outlives it by the drift allowance at least (so no one else can take the lock
/// while the guard claims it) and that it is within the TTL.
fn claim_and_key(
    server: &RedisServer,
    name: &str,
    guard: &Guard,
    ttl: Duration,
) -> (Duration, Instant) {
    // The instant first: a pause between the two reads then only makes the check lenient.
    let read_at = Instant::now();
    let validity = guard.validity();
    assert!(
        !validity.is_zero() && validity <= ttl - drift(ttl),
        "validity {validity:?} with a TTL of {ttl:?}"
    );
    let pttl = blocking(|| server.raw().ok(&["PTTL", &support::lock_key(name)]).int());
    let pttl = pttl
        .and_then(|p| u64::try_from(p).ok())
        .expect("the key lives");
    // The key's life left at `read_at` (+1 ms for PTTL's rounding down).
    let left = Duration::from_millis(pttl + 1) + read_at.elapsed();
    assert!(
        left >= validity + drift(ttl),
        "the guard claims {validity:?} but its key lives only {left:?}"
    );
    (validity, read_at + validity)
}

// ---------------------------------------------------------------------------------------
// Through the fault proxy
// ---------------------------------------------------------------------------------------

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
    let fences = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let client = Client::connect([proxy.url()]).await.expect("connect");
        let (name, section, fences) = (name.clone(), Arc::clone(&section), Arc::clone(&fences));
        workers.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let acquire = client.lock(&name).ttl(ttl).wait(wait).fenced(true);
                let (guard, took) = bounded("acquire", deadline(wait), acquire.acquire()).await;
                let guard = guard.unwrap_or_else(|e| panic!("acquire under latency: {e:?}"));
                let validity = guard.validity();
                section.enter();
                fences.lock().unwrap().push(guard.fence().expect("fenced"));
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
    assert_eq!(section.overlaps(), 0, "two holders at once");
    assert_eq!(section.entries(), (WORKERS * ROUNDS) as u64);
    let fences = fences.lock().unwrap().clone();
    let expected: Vec<u64> = (1..=(WORKERS * ROUNDS) as u64).collect();
    assert_eq!(fences, expected, "fences in the order the lock was held");
}

/// The proxy cuts every connection while B waits for A's lock, blocked on the wake-up
/// signal: B carries on over a new connection (or ends with a typed error by its deadline)
/// and never gets the lock while A holds it. Then the proxy also refuses new connections:
/// an acquire ends by its deadline with a lost quorum (node disconnected), and once the
/// proxy accepts again the same client recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connections_mid_acquire() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let name = unique_name("cut-acquire");
    let a = Client::connect([server.url()]).await.expect("connect A");
    let b = Client::connect([proxy.url()]).await.expect("connect B");
    let guard = a
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .expect("A acquires");

    let wait = Duration::from_secs(4);
    let waiter = {
        let (b, name) = (b.clone(), name.clone());
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(wait)
                .acquire()
                .await;
            (result, Instant::now())
        })
    };
    until(
        "B to block on the wake-up signal",
        Duration::from_secs(5),
        || blocking(|| server.blocked_clients()) == 1,
    )
    .await;
    let blocked_before = blocking(|| server.blocked_client_ids());
    let accepted = proxy.accepted();
    proxy.drop_all();
    // B reconnects and blocks again (or gives up): A holds the lock throughout.
    until("B to reconnect", Duration::from_secs(5), || {
        proxy.accepted() > accepted || waiter.is_finished()
    })
    .await;
    until(
        "B to block again on a new connection (or give up)",
        deadline(wait),
        || {
            waiter.is_finished()
                || blocking(|| server.blocked_client_ids())
                    .iter()
                    .any(|id| !blocked_before.contains(id))
        },
    )
    .await;
    assert_eq!(
        blocking(|| holder(&server, &name)).as_deref(),
        Some(guard.token())
    );
    let released_at = Instant::now();
    guard.release().await.expect("A releases");
    let ((result, at), _) = bounded("B's acquire", deadline(wait), async {
        waiter.await.expect("B's task")
    })
    .await;
    let b_guard = match result {
        Ok(g) => {
            assert!(at >= released_at, "B acquired while A held the lock");
            g
        }
        Err(e) => {
            assert!(is_outage(&e), "B's acquire across the cut: {e:?}");
            b.lock(&name)
                .wait(Duration::from_secs(2))
                .acquire()
                .await
                .expect("B acquires on a new connection")
        }
    };
    assert_eq!(
        blocking(|| holder(&server, &name)).as_deref(),
        Some(b_guard.token())
    );
    b_guard.release().await.expect("B releases");

    // Cut and refused: nothing gets through, and the acquire says so by its deadline.
    proxy.refuse(true);
    proxy.drop_all();
    let other = unique_name("cut-refused");
    let wait = Duration::from_secs(1);
    let (result, took) = bounded(
        "acquire while refused",
        deadline(wait),
        b.lock(&other).wait(wait).acquire(),
    )
    .await;
    let e = result.expect_err("no connection, no lock");
    assert!(
        is_quorum_lost(&e, Some(&NodeFailure::Disconnected)),
        "expected a lost quorum (disconnected), got {e:?} ({e})"
    );
    assert!(!e.is_not_acquired(), "an outage is not contention");
    eprintln!("refused: failed after {took:?}: {e}");
    proxy.refuse(false);
    let (result, took) = bounded(
        "acquire after the proxy accepts again",
        deadline(Duration::from_secs(3)),
        b.lock(&other).wait(Duration::from_secs(3)).acquire(),
    )
    .await;
    let guard = result.expect("the client recovers once connections are accepted");
    eprintln!("recovered after {took:?}");
    guard.release().await.expect("release");
}

/// The server is down when an acquire with a wait starts; it comes back and another client
/// takes the lock first. The waiter's new connection is read right (the lock is busy: a
/// RESP3 null), it waits, and it gets the lock once the other releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_down_at_acquire_start_then_back_and_busy() {
    require_redis!();
    let mut server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let name = unique_name("down-at-start");
    let a = Client::connect([server.url()]).await.expect("connect A");
    let b = Client::connect([proxy.url()]).await.expect("connect B");
    blocking(|| server.stop());
    proxy.drop_all();
    let accepted = proxy.accepted();
    let wait = Duration::from_secs(6);
    let b_started = Instant::now();
    let waiter = {
        let (b, name) = (b.clone(), name.clone());
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(wait)
                .acquire()
                .await;
            (result, Instant::now())
        })
    };
    until(
        "B to try the server while it is down",
        Duration::from_secs(5),
        || proxy.accepted() > accepted,
    )
    .await;
    blocking(|| server.restart());
    let guard = a
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .expect("A acquires on the restarted server");
    until("B to wait on the held lock", deadline(wait), || {
        waiter.is_finished() || blocking(|| server.blocked_clients()) == 1
    })
    .await;
    assert!(
        !waiter.is_finished(),
        "B gave up {:?} after it started while A held the lock: {:?}",
        b_started.elapsed(),
        waiter.await
    );
    let released_at = Instant::now();
    guard.release().await.expect("A releases");
    let ((result, at), _) = bounded("B's acquire", deadline(wait), async {
        waiter.await.expect("B's task")
    })
    .await;
    let b_guard = result.unwrap_or_else(|e| panic!("B's acquire: {e:?} ({e})"));
    assert!(at >= released_at, "B acquired while A held the lock");
    b_guard.release().await.expect("B releases");
}

/// Cut while held with auto-renewal. While the proxy accepts new connections, renewal just
/// reconnects: the guard stays held across several TTLs of repeated cuts. Once it refuses
/// them too, renewal fails and the guard reports the loss by the end of its validity — no
/// later than a TTL after its last renewal — and before B (straight to the server) gets the
/// lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connections_mid_hold() {
    require_redis!();
    let ttl = Duration::from_millis(1500);
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let name = unique_name("cut-hold");
    let a = Client::connect([proxy.url()]).await.expect("connect A");
    let b = Client::connect([server.url()]).await.expect("connect B");
    let guard = a
        .lock(&name)
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .expect("A acquires");

    // Cut every 300 ms for 2.4 s (1.6 TTLs): renewal reconnects each time.
    let mut cuts = 0;
    let started = Instant::now();
    while started.elapsed() < ttl * 8 / 5 {
        // The fault's schedule (by design, not a wait): a cut every 300 ms.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.drop_all();
        cuts += 1;
        assert!(guard.is_held(), "lost after {cuts} cuts");
    }
    assert!(
        tokio::time::timeout(Duration::ZERO, guard.lost())
            .await
            .is_err(),
        "lost() resolved while renewal kept up"
    );
    let try_b = b.lock(&name).try_acquire().await;
    assert!(
        try_b.as_ref().is_err_and(Error::is_not_acquired),
        "B got in while A renewed: {try_b:?}"
    );
    assert!(
        proxy.accepted() > 2,
        "renewal never had to reconnect ({} connections)",
        proxy.accepted()
    );

    // Now cut and refused: renewal cannot get through.
    proxy.refuse(true);
    proxy.drop_all();
    let (validity, a_until) = claim_and_key(&server, &name, &guard, ttl);
    let cut_at = Instant::now();
    let waiter = {
        let (b, name) = (b.clone(), name.clone());
        tokio::spawn(async move {
            let result = b
                .lock(&name)
                .ttl(Duration::from_secs(10))
                .wait(Duration::from_secs(5))
                .acquire()
                .await;
            (result, Instant::now())
        })
    };
    bounded(
        "A's lost()",
        validity + Duration::from_millis(100),
        guard.lost(),
    )
    .await;
    let lost_at = Instant::now();
    assert!(!guard.is_held());
    assert_eq!(guard.validity(), Duration::ZERO);
    let ((result, b_at), _) = bounded("B's acquire", deadline(Duration::from_secs(5)), async {
        waiter.await.expect("B's task")
    })
    .await;
    let b_guard = result.expect("B acquires once A's key expired");
    assert!(
        b_at >= a_until,
        "B acquired {:?} before A's validity ended",
        a_until - b_at
    );
    eprintln!(
        "A lost {:?} after the cut (validity was {validity:?}); B acquired {:?} after A's validity ended",
        lost_at - cut_at,
        b_at - a_until
    );
    // A's own calls fail, typed, and do not touch B's lock.
    let (extended, _) = bounded("A's extend", deadline(Duration::ZERO), guard.extend(ttl)).await;
    let e = extended.expect_err("A cannot extend");
    assert!(is_outage(&e), "{e:?}");
    proxy.refuse(false);
    // Once connections are accepted again (after the client's reconnect pause), A's extend
    // reaches the server and is refused there: B holds the lock.
    let started = Instant::now();
    let refused = loop {
        let (extended, _) =
            bounded("A's extend", deadline(Duration::ZERO), guard.extend(ttl)).await;
        match extended {
            Err(e) if e.lock_error() == Some(&distlock_core::Error::NotHeld) => break e,
            Err(e) if is_outage(&e) && started.elapsed() < Duration::from_secs(5) => {
                // Polling the outcome (bounded above): try again a little later.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("A's extend after the loss: {other:?}"),
        }
    };
    eprintln!("A's extend once reconnected: {refused}");
    let (released, _) = bounded("A's release", deadline(Duration::ZERO), guard.release()).await;
    assert!(
        matches!(
            released.as_ref().map_err(Error::lock_error),
            Err(Some(distlock_core::Error::NotHeld))
        ),
        "A's release after the loss: {released:?}"
    );
    assert_eq!(
        blocking(|| holder(&server, &name)).as_deref(),
        Some(b_guard.token())
    );
    b_guard.release().await.expect("B releases");
}

/// A black-holed direction during acquire over an open connection (it stays open, nothing
/// comes back): each acquire ends by `wait + 2 × request timeout` with a lost quorum whose
/// node timed out. With replies swallowed, the `SET` did run, so the attempt's rollback
/// (which does get through) leaves no key behind; with requests swallowed nothing reached
/// the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn black_hole_during_acquire() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let a = Client::connect([server.url()]).await.expect("connect A");
    let b = Client::connect([proxy.url()]).await.expect("connect B");

    // Held by A; B waits behind a hole that swallows the replies.
    let held = unique_name("hole-held");
    let guard = a.lock(&held).acquire().await.expect("A acquires");
    proxy.black_hole(Dir::Down, true);
    let wait = Duration::from_millis(1500);
    let (result, took) = bounded(
        "acquire behind a black hole",
        deadline(wait),
        b.lock(&held).wait(wait).acquire(),
    )
    .await;
    let e = result.expect_err("no replies, no lock");
    assert!(
        is_quorum_lost(&e, Some(&NodeFailure::Timeout)),
        "expected a lost quorum (timeout), got {e:?} ({e})"
    );
    assert!(took >= wait, "gave up after {took:?}, before its wait");
    assert_eq!(
        blocking(|| holder(&server, &held)).as_deref(),
        Some(guard.token()),
        "A still holds"
    );
    guard.release().await.expect("A releases");

    // Free, replies swallowed: the SET takes the key, the rollback frees it again. A new
    // client each time, whose pooled connection opened before the hole did.
    for (dir, what) in [(Dir::Down, "replies"), (Dir::Up, "requests")] {
        proxy.heal();
        let b = Client::connect([proxy.url()]).await.expect("connect B");
        proxy.black_hole(dir, true);
        let free = unique_name("hole-free");
        let (result, took) = bounded(
            "try-acquire behind a black hole",
            deadline(Duration::ZERO),
            b.lock(&free).ttl(Duration::from_secs(30)).try_acquire(),
        )
        .await;
        let e = result.expect_err("no replies, no lock");
        assert!(
            is_quorum_lost(&e, Some(&NodeFailure::Timeout)),
            "{what} swallowed: expected a lost quorum (timeout), got {e:?} ({e})"
        );
        // 2 ms: the millisecond clock's rounding.
        assert!(
            took + Duration::from_millis(2) >= RT,
            "{what} swallowed: gave up after {took:?}"
        );
        proxy.heal();
        until("no key left behind", Duration::from_secs(3), || {
            blocking(|| holder(&server, &free)).is_none()
        })
        .await;
        eprintln!("{what} swallowed: failed after {took:?}");
    }
}

/// The same with no pooled connection to fall back on: the proxy cut the client's idle
/// connection, and the new one's handshake disappears into the hole. Opening a connection is
/// part of the request's time, so the acquire still ends by `2 × request timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn black_hole_while_connecting() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let client = Client::connect([proxy.url()]).await.expect("connect");
    let name = unique_name("hole-connect");
    proxy.drop_all();
    until(
        "the idle connection to close",
        Duration::from_secs(3),
        || proxy.open() == 0,
    )
    .await;
    proxy.black_hole(Dir::Down, true);
    for wait in [Duration::ZERO, Duration::from_millis(1500)] {
        let (result, took) = bounded(
            "acquire over a connection that never opens",
            deadline(wait),
            client.lock(&name).wait(wait).acquire(),
        )
        .await;
        let e = result.expect_err("no connection, no lock");
        assert!(is_outage(&e), "wait {wait:?}: {e:?} ({e})");
        assert!(!e.is_not_acquired(), "an outage is not contention");
        eprintln!("wait {wait:?}: failed after {took:?}: {e}");
    }
    proxy.heal();
    let (result, _) = bounded(
        "acquire once healed",
        deadline(Duration::from_secs(3)),
        client.lock(&name).wait(Duration::from_secs(3)).acquire(),
    )
    .await;
    result
        .expect("acquires once the hole closed")
        .release()
        .await
        .expect("release");
}

/// A held lock with auto-renewal behind a black hole, each direction in turn. Requests
/// swallowed: the renewals never arrive and the key expires a TTL after the last one. Replies
/// swallowed: the renewals do arrive (the key lives on) but A never hears of them. Either way
/// A's guard reports the loss by the end of its validity — no later than a TTL — and B,
/// waiting straight on the server, gets the lock only after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn black_hole_while_held_with_auto_renew() {
    require_redis!();
    let ttl = Duration::from_millis(1500);
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let a = Client::connect([proxy.url()]).await.expect("connect A");
    let b = Client::connect([server.url()]).await.expect("connect B");
    for dir in [Dir::Up, Dir::Down] {
        proxy.heal();
        let name = unique_name("hole-hold");
        // After the first round the client reconnects (its connects into the hole were never
        // answered, so it probes once a second): bounded by the wait.
        let wait = Duration::from_secs(3);
        let (guard, _) = bounded(
            "A's acquire",
            deadline(wait),
            a.lock(&name)
                .ttl(ttl)
                .fenced(true)
                .auto_renew(true)
                .wait(wait)
                .acquire(),
        )
        .await;
        let guard = guard.expect("A acquires");
        // One renewal gets through first: the end of the guard's validity moves on (by about
        // a third of the TTL; only a renewal can move it).
        let first_end = Instant::now() + guard.validity();
        until("one renewal to get through", 2 * ttl, || {
            Instant::now() + guard.validity() > first_end + ttl / 10
        })
        .await;
        assert!(guard.is_held());
        proxy.black_hole(dir, true);
        let holed_at = Instant::now();
        let (validity, a_until) = claim_and_key(&server, &name, &guard, ttl);
        let waiter = {
            let (b, name) = (b.clone(), name.clone());
            tokio::spawn(async move {
                let result = b
                    .lock(&name)
                    .ttl(Duration::from_secs(10))
                    .fenced(true)
                    .wait(Duration::from_secs(5))
                    .acquire()
                    .await;
                (result, Instant::now())
            })
        };
        // By the end of the validity it had when the hole opened (nothing renews it after).
        bounded(
            "A's lost()",
            validity + Duration::from_millis(100),
            guard.lost(),
        )
        .await;
        let lost_at = Instant::now();
        assert!(!guard.is_held(), "{dir:?}");
        assert!(
            lost_at - holed_at <= ttl,
            "{dir:?}: lost {:?} after the hole opened; the TTL is {ttl:?}",
            lost_at - holed_at
        );
        let ((result, b_at), _) = bounded("B's acquire", deadline(Duration::from_secs(5)), async {
            waiter.await.expect("B's task")
        })
        .await;
        let b_guard = result.unwrap_or_else(|e| panic!("{dir:?}: B's acquire: {e:?}"));
        assert!(
            b_at >= a_until,
            "{dir:?}: B acquired {:?} before A's validity ended",
            a_until - b_at
        );
        assert!(
            b_guard.fence() > guard.fence(),
            "{dir:?}: fences {:?} then {:?}",
            guard.fence(),
            b_guard.fence()
        );
        eprintln!(
            "{dir:?} swallowed: A lost {:?} after the hole opened (validity {validity:?}); B in {:?} after A's validity ended",
            lost_at - holed_at,
            b_at - a_until
        );
        let (extended, _) =
            bounded("A's extend", deadline(Duration::ZERO), guard.extend(ttl)).await;
        assert!(
            extended.as_ref().is_err_and(is_outage),
            "{dir:?}: A's extend behind the hole: {extended:?}"
        );
        proxy.heal();
        drop(guard);
        b_guard.release().await.expect("B releases");
    }
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
    let fences = Arc::new(Mutex::new(Vec::new()));
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
        let (name, section, fences) = (name.clone(), Arc::clone(&section), Arc::clone(&fences));
        workers.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let acquire = client.lock(&name).ttl(Duration::from_secs(10)).wait(wait);
                let (guard, _) =
                    bounded("acquire", deadline(wait), acquire.fenced(true).acquire()).await;
                let guard = guard.unwrap_or_else(|e| panic!("acquire under a drip: {e:?}"));
                section.enter();
                fences.lock().unwrap().push(guard.fence().expect("fenced"));
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
    assert_eq!(section.overlaps(), 0, "two holders at once");
    assert_eq!(section.entries(), (WORKERS * ROUNDS) as u64);
    let fences = fences.lock().unwrap().clone();
    let expected: Vec<u64> = (1..=(WORKERS * ROUNDS) as u64).collect();
    assert_eq!(fences, expected, "fences in the order the lock was held");
}

// ---------------------------------------------------------------------------------------
// Holder processes
// ---------------------------------------------------------------------------------------

/// Sends SIGKILL to a pid on drop (a command that outlived its `distlock`).
struct KillPid(Option<u32>);

impl Drop for KillPid {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A paused holder: `distlock exec --fenced` and its command are frozen (SIGSTOP) past the
/// TTL; B takes the lock with a larger fence and writes; then the holder is thawed
/// (SIGCONT) and its command writes with the fence it was given (`DISTLOCK_FENCE`). The lock
/// cannot stop that write — a paused process learns of the loss only after it acted (`exec`
/// runs with `--on-lost warn` here to make the point) — but the fenced resource refuses it.
#[test]
fn paused_holder_is_fenced_off() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("paused");
    let dir = tempfile::tempdir().expect("temp dir");
    let (fence_file, pid_file, go, request) = (
        dir.path().join("fence"),
        dir.path().join("pid"),
        dir.path().join("go"),
        dir.path().join("request"),
    );
    // The command: say its fence, wait for the go, then ask the resource for a write.
    let script = r#"echo $$ > "$2"; echo "$DISTLOCK_FENCE" > "$1.tmp"; mv "$1.tmp" "$1"
while [ ! -e "$3" ]; do sleep 0.01; done
echo "$DISTLOCK_FENCE first holder" > "$4.tmp"; mv "$4.tmp" "$4""#;
    let path = |p: &Path| p.display().to_string();
    let holder = distlock(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--ttl",
            "1s",
            "--fenced",
            "--on-lost",
            "warn",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            &path(&fence_file),
            &path(&pid_file),
            &path(&go),
            &path(&request),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn distlock exec");
    let mut holder = KillOnDrop(holder);
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (stderr, mut pipe) = (Arc::clone(&stderr), holder.0.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut buf) {
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut command = KillPid(None);
    let first = wait_for("the holder's fence", Duration::from_secs(10), || {
        read_number(&fence_file)
    });
    command.0 = Some(wait_for(
        "the command's pid",
        Duration::from_secs(10),
        || read_number(&pid_file).and_then(|p| u32::try_from(p).ok()),
    ));
    let mut store = FencedStore::default();
    store
        .write(first, "first holder, before the pause")
        .expect("first write");

    // Freeze the whole holder: distlock (so it cannot renew) and its command.
    send_signal(holder.0.id(), "STOP");
    send_signal(command.0.expect("pid"), "STOP");
    let paused_at = Instant::now();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let b = runtime.block_on(async {
        let client = Client::connect([&url]).await.expect("connect B");
        let (guard, _) = bounded(
            "B's acquire",
            deadline(Duration::from_secs(5)),
            client
                .lock(&name)
                .ttl(Duration::from_secs(30))
                .fenced(true)
                .wait(Duration::from_secs(5))
                .acquire(),
        )
        .await;
        guard.expect("B acquires once the paused holder's key expired")
    });
    let second = b.fence().expect("fenced");
    assert!(
        paused_at.elapsed() >= Duration::from_millis(500),
        "B got in {:?} after the pause, before the holder's TTL could run out",
        paused_at.elapsed()
    );
    assert!(second > first, "fences {first} then {second}");
    store.write(second, "B").expect("B's write");

    // Thaw. distlock finds the lock gone and (with --on-lost warn) says so and lets the
    // command run on; the command then writes with its old fence.
    send_signal(command.0.expect("pid"), "CONT");
    send_signal(holder.0.id(), "CONT");
    wait_for("exec to report the loss", Duration::from_secs(10), || {
        stderr.lock().unwrap().contains("lost").then_some(())
    });
    std::fs::write(&go, "").expect("go");
    let line = wait_for("the stale write", Duration::from_secs(10), || {
        std::fs::read_to_string(&request).ok()
    });
    let (fence, what) = line.trim().split_once(' ').expect("fence and text");
    let fence: u64 = fence.parse().expect("a fence");
    assert_eq!(fence, first, "the command kept its own fence");
    let refused = store.write(fence, what);
    assert!(
        refused.is_err(),
        "the resource took a stale write: {store:?}"
    );
    assert_eq!(store.writes.last().map(|w| w.0), Some(second));

    // distlock noticed the loss once it ran again, and exits with its command.
    let status = wait_for("the holder to exit", Duration::from_secs(10), || {
        holder.0.try_wait().expect("status")
    });
    reader.join().expect("stderr reader");
    let err = stderr.lock().unwrap().clone();
    assert_eq!(
        status.code(),
        Some(0),
        "exec exits with its command's code: {err}"
    );
    runtime.block_on(async {
        assert_eq!(b.release().await.expect("B releases"), Released::Free);
    });
    eprintln!("fences {first} (paused, refused) then {second}; {refused:?}");
}

/// A holder killed with SIGKILL renews nothing and releases nothing; the next holder, after
/// the TTL, gets a larger fence.
#[test]
fn sigkilled_holder_next_fence_is_larger() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("killed-fence");
    let dir = tempfile::tempdir().expect("temp dir");
    let (fence_file, pid_file) = (dir.path().join("fence"), dir.path().join("pid"));
    let script =
        r#"echo $$ > "$2"; echo "$DISTLOCK_FENCE" > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 60"#;
    let holder = distlock(
        &url,
        &[
            "exec",
            "--name",
            &name,
            "--ttl",
            "1s",
            "--fenced",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            &fence_file.display().to_string(),
            &pid_file.display().to_string(),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn distlock exec");
    let mut holder = KillOnDrop(holder);
    let mut command = KillPid(None);
    let first = wait_for("the holder's fence", Duration::from_secs(10), || {
        read_number(&fence_file)
    });
    command.0 = Some(wait_for(
        "the command's pid",
        Duration::from_secs(10),
        || read_number(&pid_file).and_then(|p| u32::try_from(p).ok()),
    ));
    holder.0.kill().expect("SIGKILL distlock");
    let _ = holder.0.wait();
    drop(command);

    let out = run_bounded(
        distlock(
            &url,
            &[
                "acquire", "--name", &name, "--ttl", "10s", "--wait", "5s", "--fenced", "--json",
            ],
        ),
        Duration::from_secs(30),
    )
    .expect("run distlock acquire");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let second = value["fence"].as_u64().expect("a fence");
    assert!(second > first, "fences {first} then {second}");
}

// ---------------------------------------------------------------------------------------
// Server restarts
// ---------------------------------------------------------------------------------------

/// A server in `dir`, with or without an append-only file synced on every write.
fn server_in(dir: &Path, aof: bool) -> RedisServer {
    let dir = dir.display().to_string();
    let appendonly = if aof { "yes" } else { "no" };
    RedisServer::start_with(&[
        "--dir",
        &dir,
        "--appendonly",
        appendonly,
        "--appendfsync",
        "always",
    ])
}

/// The server is killed (SIGKILL) and restarted on the same port and directory with
/// `appendonly yes` and `appendfsync always`: the held lock and the fence counter survive,
/// the lock still excludes, its holder extends and releases it over new connections, and
/// the fences stay strictly increasing across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restart_with_aof_keeps_lock_and_fences() {
    require_redis!();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = blocking(|| server_in(dir.path(), true));
    let url = server.url();
    let name = unique_name("aof");
    let a = Client::connect([&url]).await.expect("connect A");
    let b = Client::connect([&url]).await.expect("connect B");
    let lock = |c: &Client| c.lock(&name).ttl(Duration::from_secs(30)).fenced(true);
    let mut fences = Vec::new();
    for _ in 0..2 {
        let g = lock(&a).acquire().await.expect("acquire");
        fences.push(g.fence().expect("fenced"));
        g.release().await.expect("release");
    }
    let held = lock(&a).acquire().await.expect("acquire");
    fences.push(held.fence().expect("fenced"));

    blocking(|| server.restart());
    assert_eq!(
        blocking(|| holder(&server, &name)).as_deref(),
        Some(held.token()),
        "the lock key survived the restart"
    );
    let counter = blocking(|| {
        server
            .raw()
            .ok(&["GET", &format!("{}:fence", support::lock_key(&name))])
            .text()
    });
    assert_eq!(
        counter,
        Some(fences[2].to_string()),
        "the fence counter survived"
    );
    let (busy, _) = bounded("B's try", deadline(Duration::ZERO), lock(&b).try_acquire()).await;
    assert!(
        busy.as_ref().is_err_and(Error::is_not_acquired),
        "the restarted server let B in: {busy:?}"
    );
    let (extended, _) = bounded(
        "extend after the restart",
        deadline(Duration::ZERO),
        held.extend(Duration::from_secs(30)),
    )
    .await;
    extended.expect("the holder extends after the restart");
    held.release()
        .await
        .expect("the holder releases after the restart");
    for _ in 0..2 {
        let g = lock(&b).acquire().await.expect("acquire after the restart");
        fences.push(g.fence().expect("fenced"));
        g.release().await.expect("release");
    }
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not strictly increasing across the restart: {fences:?}"
    );
    assert_eq!(fences, vec![1, 2, 3, 4, 5]);
}

/// The documented limit: without persistence (no append-only file, no RDB snapshot) a server
/// killed and restarted has forgotten everything — the lock key and the fence counter. A
/// guard taken before the restart still believes it holds (nothing told it otherwise), B
/// acquires at once, and B's fence starts over at 1, below A's: two holders at once, and
/// fencing cannot tell them apart. Redlock's guarantees assume nodes that keep their data
/// (`core/src/acquire.rs`); run Redis with `appendonly yes` (previous test) or keep a
/// restarted node out for a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restart_without_persistence_forgets_lock_and_fences() {
    require_redis!();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = blocking(|| server_in(dir.path(), false));
    let url = server.url();
    let name = unique_name("no-aof");
    let a = Client::connect([&url]).await.expect("connect A");
    let b = Client::connect([&url]).await.expect("connect B");
    let lock = |c: &Client| c.lock(&name).ttl(Duration::from_secs(30)).fenced(true);
    let g = lock(&a).acquire().await.expect("acquire");
    g.release().await.expect("release");
    let held = lock(&a).acquire().await.expect("acquire");
    assert_eq!(held.fence(), Some(2));

    blocking(|| server.restart());
    let left = blocking(|| {
        let key = support::lock_key(&name);
        server
            .raw()
            .ok(&["EXISTS", &key, &format!("{key}:fence")])
            .int()
    });
    assert_eq!(left, Some(0), "the restarted server kept something");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(files.is_empty(), "persisted files: {files:?}");

    let b_guard = lock(&b)
        .try_acquire()
        .await
        .expect("B gets the forgotten lock at once");
    assert!(
        held.is_held(),
        "A's guard cannot know: it still reports the lock"
    );
    assert_eq!(b_guard.fence(), Some(1), "the fence counter started over");
    assert!(b_guard.fence() < held.fence());
    let released = held.release().await;
    assert!(
        matches!(
            released.as_ref().map_err(Error::lock_error),
            Err(Some(distlock_core::Error::NotHeld))
        ),
        "A's release must not free B's lock: {released:?}"
    );
    assert_eq!(
        blocking(|| holder(&server, &name)).as_deref(),
        Some(b_guard.token())
    );
    b_guard.release().await.expect("B releases");
}

// ---------------------------------------------------------------------------------------
// Redlock
// ---------------------------------------------------------------------------------------

/// Loads the lock scripts into `server`'s cache (so no release needs a `NOSCRIPT` round).
fn load_scripts(server: &RedisServer) {
    let mut raw = server.raw();
    for script in distlock_core::SCRIPTS {
        raw.ok(&["SCRIPT", "LOAD", script.source]);
    }
}

/// What the Redlock workers saw in one phase.
#[derive(Default)]
struct PhaseStats {
    acquired: AtomicU64,
    busy: AtomicU64,
    quorum_lost: AtomicU64,
    slowest_ms: AtomicU64,
    slowest_release_ms: AtomicU64,
}

/// Redlock over five servers; four clients loop try-acquire/release on one lock while the
/// test freezes (SIGSTOP) one server, then two, then three. With up to two frozen, locks are
/// still had, never overlap, and a try that loses loses to contention (`NotAcquired`), not
/// to a lost quorum; with three frozen none is had and tries fail with a lost quorum, each
/// within `2 × request timeout` (250 ms here). Every guard's validity is at most `ttl − drift − (time since
/// the acquire started)`, and on a quorum of the running servers the key outlives the
/// guard's claim by the drift at least.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_five_nodes_lose_one_two_three() {
    require_redis!();
    const WORKERS: usize = 4;
    let ttl = Duration::from_secs(3);
    // An attempt that needs a frozen server's vote holds what it won until that server's
    // request times out, and contending workers lose to each other meanwhile: a short
    // request timeout keeps those spells short next to the phases.
    let rt = Duration::from_millis(250);
    let options = LockOptions {
        ttl: distlock_core::Duration::from_millis(ttl.as_millis() as u64),
        request_timeout: distlock_core::Duration::from_millis(rt.as_millis() as u64),
        ..LockOptions::default()
    };
    let limit = 2 * rt + MARGIN;
    let servers: Arc<Vec<RedisServer>> =
        Arc::new(blocking(|| (0..5).map(|_| RedisServer::start()).collect()));
    blocking(|| servers.iter().for_each(load_scripts));
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let name = unique_name("redlock5");
    let section = Arc::new(Section::default());
    let stats: Arc<[PhaseStats; 4]> = Arc::new(Default::default());
    let phase = Arc::new(AtomicUsize::new(0));
    let paused = Arc::new(Mutex::new(Vec::<usize>::new()));
    // Odd while a server is being frozen: the running set is unsettled.
    let epoch = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = Client::connect(&urls).await.expect("connect to 5 nodes");
        let (name, section, stats, phase, paused, epoch, stop, servers) = (
            name.clone(),
            Arc::clone(&section),
            Arc::clone(&stats),
            Arc::clone(&phase),
            Arc::clone(&paused),
            Arc::clone(&epoch),
            Arc::clone(&stop),
            Arc::clone(&servers),
        );
        workers.push(tokio::spawn(async move {
            let mut raws: Vec<Option<support::Raw>> = (0..5).map(|_| None).collect();
            // Retries 1–32 ms apart, at random: workers in lock-step split the votes (each
            // wins some nodes) and all lose, round after round.
            let mut x = u64::from(std::process::id()) ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut jitter = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Duration::from_millis(1 + x % 32)
            };
            while !stop.load(Ordering::SeqCst) {
                let at = phase.load(Ordering::SeqCst);
                let stats = &stats[at];
                let settled = epoch.load(Ordering::SeqCst);
                let started = Instant::now();
                let (result, took) = bounded(
                    "a Redlock try-acquire",
                    limit,
                    client.lock(&name).options(options).try_acquire(),
                )
                .await;
                stats
                    .slowest_ms
                    .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
                let guard = match result {
                    Ok(guard) => guard,
                    Err(e) if e.is_not_acquired() => {
                        stats.busy.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(jitter()).await;
                        continue;
                    }
                    Err(e) => {
                        assert!(
                            is_quorum_lost(&e, None),
                            "phase {at}: unexpected error {e:?} ({e})"
                        );
                        // With at most two of five frozen throughout, a quorum was there:
                        // losing is contention (`NotAcquired`), never a lost quorum.
                        let frozen_throughout =
                            settled % 2 == 0 && epoch.load(Ordering::SeqCst) == settled;
                        assert!(
                            at == 3 || !frozen_throughout,
                            "phase {at}: a lost quorum with {at} of 5 servers frozen: {e}"
                        );
                        stats.quorum_lost.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(jitter()).await;
                        continue;
                    }
                };
                section.enter();
                stats.acquired.fetch_add(1, Ordering::SeqCst);
                // The instant first: a pause between the two reads then only makes the checks
                // below more lenient, never fail.
                let claimed_at = Instant::now();
                let validity = guard.validity();
                // One attempt (a try): it started when the call did. 20 ms for the millisecond
                // clock's rounding and the call's own work (or a preemption) before its first
                // request; a connection that held the attempt up would be 250 ms at least.
                let elapsed = claimed_at - started;
                assert!(
                    validity + elapsed <= ttl - drift(ttl) + Duration::from_millis(20),
                    "phase {at}: validity {validity:?} {elapsed:?} after the acquire started: more than the TTL less the elapsed time and the drift"
                );
                // Only while the running servers stayed the same throughout.
                if settled % 2 == 0 {
                    let down = paused.lock().unwrap().clone();
                    let outliving =
                        keys_outliving(&servers, &mut raws, &down, &guard, validity, claimed_at, ttl);
                    if epoch.load(Ordering::SeqCst) == settled {
                        let outliving = outliving.expect("the running servers answer");
                        assert!(
                            outliving >= 3,
                            "phase {at}: the guard claims {validity:?}, but only {outliving} running servers hold the key that long plus the drift"
                        );
                    }
                }
                // Stay inside a little (work, not a wait): a second holder would overlap.
                tokio::time::sleep(Duration::from_millis(2)).await;
                section.leave();
                let (released, release_took) =
                    bounded("a Redlock release", limit, guard.release()).await;
                stats
                    .slowest_release_ms
                    .fetch_max(release_took.as_millis() as u64, Ordering::SeqCst);
                if let Err(e) = released {
                    // The servers froze between acquire and release: typed, and the lock
                    // frees at its TTL.
                    assert!(is_quorum_lost(&e, None), "release: {e:?} ({e})");
                }
            }
        }));
    }

    // Each phase runs for `run_for` under its fault (by design), and on — for at most 10 s
    // more — until its workers have had a lock (with three frozen: lost the quorum), so that
    // a loaded machine cannot leave a phase's counts empty by luck. The assertions after the
    // run judge what the phases saw.
    let run_for = Duration::from_millis(1500);
    let run_phase = |at: usize| {
        let stats = Arc::clone(&stats);
        async move {
            tokio::time::sleep(run_for).await;
            let seen = || {
                let s = &stats[at];
                if at == 3 {
                    s.quorum_lost.load(Ordering::SeqCst) > 0
                } else {
                    s.acquired.load(Ordering::SeqCst) > 0
                }
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !seen() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    for (next, server) in [(1, 0usize), (2, 1), (3, 2)] {
        run_phase(next - 1).await;
        epoch.fetch_add(1, Ordering::SeqCst);
        paused.lock().unwrap().push(server);
        blocking(|| servers[server].pause());
        epoch.fetch_add(1, Ordering::SeqCst);
        phase.store(next, Ordering::SeqCst);
    }
    run_phase(3).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        bounded("a worker to stop", 2 * limit, worker)
            .await
            .0
            .expect("worker");
    }
    for server in servers.iter() {
        server.resume();
    }
    for (at, s) in stats.iter().enumerate() {
        eprintln!(
            "{at} frozen: {} acquired, {} busy, {} quorum lost; slowest try {} ms, slowest release {} ms",
            s.acquired.load(Ordering::SeqCst),
            s.busy.load(Ordering::SeqCst),
            s.quorum_lost.load(Ordering::SeqCst),
            s.slowest_ms.load(Ordering::SeqCst),
            s.slowest_release_ms.load(Ordering::SeqCst)
        );
    }
    assert_eq!(section.overlaps(), 0, "two holders at once");
    for at in 0..3 {
        assert!(
            stats[at].acquired.load(Ordering::SeqCst) > 0,
            "no lock was had with {at} servers frozen"
        );
    }
    assert_eq!(
        stats[3].acquired.load(Ordering::SeqCst),
        0,
        "a lock was had with 3 of 5 servers frozen"
    );
    assert!(
        stats[3].quorum_lost.load(Ordering::SeqCst) > 0,
        "no acquire was tried with 3 frozen"
    );
}

/// How many running servers hold the guard's key for at least `validity + drift` beyond the
/// moment the validity was read (`None`: a server did not answer). A quorum of them must:
/// the guard never claims longer than the keys on a majority live, less the drift allowance.
fn keys_outliving(
    servers: &[RedisServer],
    raws: &mut [Option<support::Raw>],
    paused: &[usize],
    guard: &Guard,
    validity: Duration,
    claimed_at: Instant,
    ttl: Duration,
) -> Option<usize> {
    let key = support::lock_key(std::str::from_utf8(guard.name()).expect("UTF-8 name"));
    let mut outliving = 0;
    blocking(|| {
        for (node, server) in servers.iter().enumerate() {
            if paused.contains(&node) {
                continue;
            }
            let raw = raws[node].get_or_insert_with(|| {
                let mut raw = server.raw();
                raw.set_timeout(Duration::from_millis(500))
                    .expect("timeout");
                raw
            });
            let pttl = match raw.command(&["PTTL", &key]) {
                Ok(reply) => reply.int(),
                Err(_) => {
                    raws[node] = None;
                    return None;
                }
            };
            let Some(pttl) = pttl.and_then(|p| u64::try_from(p).ok()) else {
                continue;
            };
            // The key's life left when the validity was read; +2 ms for the rounding down
            // of both clocks.
            let left = Duration::from_millis(pttl + 2) + claimed_at.elapsed();
            if left >= validity + drift(ttl) {
                outliving += 1;
            }
        }
        Some(outliving)
    })
}

// ---------------------------------------------------------------------------------------
// Script cache
// ---------------------------------------------------------------------------------------

/// `SCRIPT FLUSH` while locks are held (plain, fenced, reentrant twice): every extend and
/// release afterwards still works — its `EVALSHA` gets `NOSCRIPT` and goes again as `EVAL`
/// — and no lock is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_flush_while_held() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    let ttl = Duration::from_secs(30);
    let (plain, fenced, reentrant) = (
        unique_name("flush-plain"),
        unique_name("flush-fenced"),
        unique_name("flush-reentrant"),
    );
    let g_plain = client.lock(&plain).ttl(ttl).acquire().await.expect("plain");
    let g_fenced = client
        .lock(&fenced)
        .ttl(ttl)
        .fenced(true)
        .acquire()
        .await
        .expect("fenced");
    let g_outer = client
        .lock(&reentrant)
        .ttl(ttl)
        .reentrant(true)
        .acquire()
        .await
        .expect("reentrant");
    let g_inner = client
        .lock(&reentrant)
        .ttl(ttl)
        .reentrant(true)
        .token(g_outer.token())
        .acquire()
        .await
        .expect("re-entry");
    assert_eq!(g_inner.holds(), 2);

    let evals_before = blocking(|| {
        let mut raw = server.raw();
        assert_eq!(raw.ok(&["SCRIPT", "FLUSH"]).text().as_deref(), Some("OK"));
        let stats = raw.ok(&["INFO", "commandstats"]).text().unwrap_or_default();
        command_calls(&stats, "eval")
    });

    for guard in [&g_plain, &g_fenced, &g_outer] {
        let (extended, _) = bounded("extend", deadline(Duration::ZERO), guard.extend(ttl)).await;
        let validity = extended.unwrap_or_else(|e| panic!("extend after SCRIPT FLUSH: {e:?}"));
        assert!(validity > ttl - Duration::from_secs(1), "{validity:?}");
    }
    let (released, _) = bounded("release", deadline(Duration::ZERO), g_inner.release()).await;
    assert_eq!(
        released.expect("release one hold"),
        Released::StillHeld { holds: 1 }
    );
    for guard in [g_plain, g_fenced, g_outer] {
        let (released, _) = bounded("release", deadline(Duration::ZERO), guard.release()).await;
        assert_eq!(
            released.expect("release after SCRIPT FLUSH"),
            Released::Free
        );
    }
    let (evals, left) = blocking(|| {
        let mut raw = server.raw();
        let stats = raw.ok(&["INFO", "commandstats"]).text().unwrap_or_default();
        let left =
            [&plain, &fenced, &reentrant].map(|n| raw.ok(&["EXISTS", &support::lock_key(n)]).int());
        (command_calls(&stats, "eval"), left)
    });
    assert_eq!(left, [Some(0); 3], "a lock was left behind");
    assert!(
        evals > evals_before,
        "no EVAL after SCRIPT FLUSH ({evals_before} then {evals}): how did the scripts run?"
    );
}

// ---------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------

/// Peak resident set of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    info_field(&status, "VmHWM")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 64 tasks over four clients, each doing N acquire/release operations on 256 names (a
/// per-name critical-section flag each): no overlap, every operation ends and is counted
/// (acquired, or busy with a typed error), the run ends in bounded time, and peak memory
/// stays bounded. N is `DISTLOCK_LOAD_OPS` (default: a CI-sized 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_many_clients_many_names() {
    require_redis!();
    const TASKS: usize = 64;
    const NAMES: usize = 256;
    const CLIENTS: usize = 4;
    let ops: usize = std::env::var("DISTLOCK_LOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let server = blocking(RedisServer::start);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect([server.url()]).await.expect("connect"));
    }
    let prefix = unique_name("load");
    let names: Arc<Vec<String>> = Arc::new((0..NAMES).map(|i| format!("{prefix}-{i}")).collect());
    let sections: Arc<Vec<Section>> = Arc::new((0..NAMES).map(|_| Section::default()).collect());
    let acquired = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let rss_before = peak_rss_kib();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = clients[task % CLIENTS].clone();
        let (names, sections, acquired, busy) = (
            Arc::clone(&names),
            Arc::clone(&sections),
            Arc::clone(&acquired),
            Arc::clone(&busy),
        );
        tasks.push(tokio::spawn(async move {
            // A cheap per-task sequence over the names, different for every task.
            let mut x = (task as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for _ in 0..ops {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % NAMES as u64) as usize;
                let wait = Duration::from_millis(200);
                let (result, _) = bounded(
                    "a load acquire",
                    deadline(wait),
                    client
                        .lock(&names[i])
                        .ttl(Duration::from_secs(10))
                        .wait(wait)
                        .acquire(),
                )
                .await;
                match result {
                    Ok(guard) => {
                        sections[i].enter();
                        tokio::task::yield_now().await;
                        sections[i].leave();
                        let (released, _) =
                            bounded("a load release", deadline(Duration::ZERO), guard.release())
                                .await;
                        assert_eq!(released.expect("release"), Released::Free);
                        acquired.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_not_acquired() => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("load acquire: {e:?} ({e})"),
                }
            }
        }));
    }
    let limit = Duration::from_secs(if ops > 100 { 600 } else { 45 });
    let (results, elapsed) = bounded("the load run", limit, async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    })
    .await;
    for result in results {
        result.expect("load task");
    }
    let rss_after = peak_rss_kib();
    let (acquired, busy) = (
        acquired.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    let total = (TASKS * ops) as u64;
    let overlaps: u64 = sections.iter().map(Section::overlaps).sum();
    eprintln!(
        "load: {TASKS} tasks x {ops} ops on {NAMES} names = {total} ops ({acquired} acquired, {busy} busy) in {elapsed:.2?}: {:.0} ops/s; peak RSS {} -> {} MiB",
        total as f64 / elapsed.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );
    assert_eq!(overlaps, 0, "two holders of one name at once");
    assert_eq!(acquired + busy, total, "an operation was not counted");
    assert_eq!(sections.iter().map(Section::entries).sum::<u64>(), acquired);
    assert!(
        acquired > total / 2,
        "most operations should get their lock"
    );
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 256,
        "peak RSS grew by {growth_mib} MiB over the load run"
    );
}
