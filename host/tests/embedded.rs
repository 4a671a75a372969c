//! The Rust API on the embedded in-process store: the same semantics as on Redis, no server.

use std::time::{Duration, Instant};

use distlock_core::Error as LockError;
use distlock_host::{Client, Released};

#[tokio::test]
async fn a_held_lock_refuses_a_second_holder_until_released() {
    let client = Client::embedded();
    let first = client
        .lock("e1")
        .ttl(Duration::from_secs(10))
        .try_acquire()
        .await
        .unwrap();
    assert!(first.is_held());
    assert!(first.validity() > Duration::from_secs(9));
    let second = client.lock("e1").try_acquire().await.unwrap_err();
    assert!(second.is_not_acquired(), "{second}");
    assert_eq!(first.release().await.unwrap(), Released::Free);
    client
        .lock("e1")
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// Waits (at most 5 s) until the runtime's only worker has parked, after at least
/// `at_least` parks and unparks, and stays parked for 20 ms; returns that count
/// (`worker_park_unpark_count`, odd while parked). A worker parked like that has nothing left
/// to run and no timer about to fire: every task on it — a waiter, the store's connections —
/// waits for input or a wake-up signal. (It also parks for a moment when only a timer is
/// due, e.g. a zero-length one on the way to a `BLPOP`; the 20 ms rule that out.) The
/// embedded store has no `INFO` to ask whether a waiter is blocked; an idle runtime is what
/// can be observed.
///
/// For a test body on a multi-threaded runtime with one worker: the body runs beside the
/// worker, not on it, and polls with a thread sleep, so its polling never wakes the worker.
fn until_the_worker_parks(at_least: u64) -> u64 {
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_workers(), 1, "one worker to watch");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut parked_since: Option<(u64, Instant)> = None;
    loop {
        let count = metrics.worker_park_unpark_count(0);
        if count % 2 == 1 && count >= at_least {
            match parked_since {
                Some((was, since)) if was == count => {
                    if since.elapsed() >= Duration::from_millis(20) {
                        return count;
                    }
                }
                _ => parked_since = Some((count, Instant::now())),
            }
        } else {
            parked_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "the runtime's worker did not settle within 5 s (park/unpark count {count})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_waiter_gets_the_lock_when_it_is_released() {
    let client = Client::embedded();
    let holder = client
        .lock("e2")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap();
    // Settled: the holder's connection has nothing left to do.
    let settled = until_the_worker_parks(0);
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let guard = client
                .lock("e2")
                .wait(Duration::from_secs(10))
                .acquire()
                .await
                .unwrap();
            (started.elapsed(), guard.release().await.unwrap())
        })
    };
    // The waiter tried, found the lock held and blocked on the wake-up signal.
    // The worker woke for it (one unpark) and parked again (one park) once nothing was left
    // to run.
    until_the_worker_parks(settled + 2);
    assert!(!waiter.is_finished(), "the waiter got a held lock");
    holder.release().await.unwrap();
    let (waited, released) = waiter.await.unwrap();
    assert_eq!(released, Released::Free);
    // Woken by the release, not by the holder's 30 s TTL.
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
}

#[tokio::test]
async fn fences_increase_across_holders() {
    let client = Client::embedded();
    let mut last = 0;
    for _ in 0..5 {
        let guard = client.lock("e3").fenced(true).try_acquire().await.unwrap();
        let fence = guard.fence().unwrap();
        assert!(fence > last, "{fence} after {last}");
        last = fence;
        guard.release().await.unwrap();
    }
}

#[tokio::test]
async fn auto_renewal_keeps_a_lease_past_its_ttl() {
    let client = Client::embedded();
    let guard = client
        .lock("e4")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .try_acquire()
        .await
        .unwrap();
    // Time that must pass (not a wait for anything): the lease outlives its TTL three times.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(guard.is_held(), "renewed three times over");
    assert!(
        client
            .lock("e4")
            .try_acquire()
            .await
            .unwrap_err()
            .is_not_acquired()
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn without_renewal_the_lease_runs_out_and_says_so() {
    let client = Client::embedded();
    let guard = client
        .lock("e5")
        .ttl(Duration::from_millis(200))
        .try_acquire()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("lost() resolves at expiry");
    assert!(!guard.is_held());
    // Validity ends a drift allowance before the key does; then someone else may take it,
    // and our release says we no longer hold it.
    let other = client
        .lock("e5")
        .wait(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap();
    let err = guard.release().await.unwrap_err();
    assert!(
        matches!(err.lock_error(), Some(LockError::NotHeld)),
        "{err}"
    );
    other.release().await.unwrap();
}

#[tokio::test]
async fn a_reset_lock_is_reported_lost_by_the_watchdog() {
    let client = Client::embedded();
    let guard = client
        .lock("e6")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(client.reset("e6").await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the renewal finds the lock gone");
    assert!(!guard.is_held());
}

#[tokio::test]
async fn dropping_a_guard_releases_it() {
    let client = Client::embedded();
    drop(
        client
            .lock("e7")
            .ttl(Duration::from_secs(30))
            .try_acquire()
            .await
            .unwrap(),
    );
    // The release runs in the background; the waiter is woken by it.
    let guard = client
        .lock("e7")
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_token_hands_the_lock_to_another_owner() {
    let client = Client::embedded();
    let guard = client
        .lock("e8")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap();
    let token = guard.token().to_owned();
    std::mem::forget(guard);
    let status = client.status("e8").await.unwrap();
    assert_eq!(status.holder(), Some(token.as_str()));
    client
        .extend("e8", &token, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        client.release("e8", &token, false).await.unwrap(),
        Released::Free
    );
    assert_eq!(client.status("e8").await.unwrap().holder(), None);
}

#[tokio::test]
async fn reentrant_locks_count_holds() {
    let client = Client::embedded();
    let first = client
        .lock("e9")
        .reentrant(true)
        .try_acquire()
        .await
        .unwrap();
    let again = client
        .lock("e9")
        .reentrant(true)
        .token(first.token())
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(again.holds(), 2);
    assert_eq!(
        again.release().await.unwrap(),
        Released::StillHeld { holds: 1 }
    );
    assert!(
        client
            .lock("e9")
            .try_acquire()
            .await
            .unwrap_err()
            .is_not_acquired()
    );
    assert_eq!(first.release().await.unwrap(), Released::Free);
}

#[tokio::test]
async fn bad_names_are_typed_errors_that_send_nothing() {
    let client = Client::embedded();
    for name in [&b""[..], b"a\r\nb", b"\0", &[b'x'; 300]] {
        let err = client.lock(name).try_acquire().await.unwrap_err();
        assert!(matches!(err, distlock_host::Error::Config(_)), "{err}");
    }
}

#[test]
fn the_blocking_api_works_without_a_runtime() {
    let client = distlock_host::blocking::Client::embedded().unwrap();
    let guard = client.lock("e10").try_acquire().unwrap();
    assert!(
        client
            .lock("e10")
            .try_acquire()
            .unwrap_err()
            .is_not_acquired()
    );
    assert_eq!(guard.release().unwrap(), Released::Free);
    let guard = client.lock("e10").fenced(true).try_acquire().unwrap();
    assert!(guard.fence().is_some());
}
