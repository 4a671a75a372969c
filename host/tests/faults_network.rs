//! A broken network between client and server, through the fault proxy: connections cut
//! while a client waits for a lock or holds one, new connections refused, and black holes
//! (one direction swallowed while the connection stays open) during an acquire, while
//! connecting, and under a held lock with auto-renewal.
//!
//! It shows that an outage ends every call by its deadline (`wait + 2 × request timeout`)
//! with a typed error (a lost quorum naming the node's failure), that a client recovers once
//! the network does, and that a holder cut off from its server reports the loss by the end
//! of its validity — before anyone else can take the lock, and with its own later calls
//! refused without touching the next holder's lock.
//!
//! Each test starts its own `redis-server` on a free port; without it they fail
//! (`DISTLOCK_SKIP_REDIS=1` skips them).

mod support;

use std::time::{Duration, Instant};

use distlock_core::NodeFailure;
use distlock_host::{Client, Error};
use support::faults::{
    RT, claim_and_key, deadline, holder_token, is_not_held, is_outage, is_quorum_lost,
};
use support::proxy::{Dir, Proxy};
use support::{RedisServer, blocking, bounded, require_redis, unique_name, until};

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
        blocking(|| holder_token(&server, &name)).as_deref(),
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
        blocking(|| holder_token(&server, &name)).as_deref(),
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
        is_not_held(&released),
        "A's release after the loss: {released:?}"
    );
    assert_eq!(
        blocking(|| holder_token(&server, &name)).as_deref(),
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
        blocking(|| holder_token(&server, &held)).as_deref(),
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
            blocking(|| holder_token(&server, &free)).is_none()
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
