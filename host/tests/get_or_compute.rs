//! Get-or-compute ([`Client::get_or_compute`]) against a real `redis-server`: eight callers
//! of one missing key run the closure once and all get its value (the computer waits until
//! the server counts the seven others as waiters, so they surely waited for it); a closure
//! that fails lets exactly one waiter compute next, and every waiter gets that value; a
//! present value is returned without the lock being touched; a Redlock client is refused;
//! and on the embedded in-process store, a caller that finds the lock held gets the
//! computer's value (or, with no wait, `NotAcquired`), never running its own closure.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distlock_core::ConfigError;
use distlock_host::{Begun, Client, ComputeError, ComputeOptions, Error};
use support::{
    RedisServer, blocking, command_calls, lock_key, require_redis, unique_name, wait_for,
};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);

fn waiters_key(name: &str) -> String {
    format!("distlock:{{{name}}}:value:waiters")
}

/// Blocks (off the runtime's thread) until the server counts `n` registered waiters.
fn until_waiting(server: &RedisServer, name: &str, n: i64) {
    blocking(|| {
        wait_for(&format!("{n} waiters"), LIMIT, || {
            let count = server.raw().ok(&["GET", &waiters_key(name)]).text();
            (count.and_then(|c| c.parse::<i64>().ok()) >= Some(n)).then_some(())
        })
    });
}

/// `SET` calls the server counted (those inside scripts too).
fn set_calls(server: &RedisServer) -> u64 {
    let stats = blocking(|| server.raw().ok(&["INFO", "commandstats"]).text());
    command_calls(&stats.unwrap_or_default(), "set")
}

fn options() -> ComputeOptions {
    ComputeOptions::default().wait(LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_callers_compute_once_and_all_get_the_value() {
    require_redis!();
    let server = Arc::new(blocking(RedisServer::start));
    let name = unique_name("report");
    let computed = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for i in 0..8 {
        let client = Client::connect([server.url()]).await.unwrap();
        let (server, name, computed) = (Arc::clone(&server), name.clone(), Arc::clone(&computed));
        callers.push(tokio::spawn(async move {
            client
                .get_or_compute_with(&name, LIMIT, options(), || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    // The seven others are registered waiters before the value exists.
                    until_waiting(&server, &name, 7);
                    Ok::<_, std::io::Error>(format!("computed by {i}").into_bytes())
                })
                .await
        }));
    }
    let mut values = Vec::new();
    for caller in callers {
        values.push(caller.await.unwrap().expect("every caller gets the value"));
    }
    assert_eq!(computed.load(Ordering::SeqCst), 1, "the closure ran once");
    assert!(values.iter().all(|v| v == &values[0]), "{values:?}");
    assert!(values[0].starts_with(b"computed by "));
    let lock = blocking(|| server.raw().ok(&["EXISTS", &lock_key(&name)]).int());
    assert_eq!(lock, Some(0), "the lock was released with the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_closure_lets_exactly_one_waiter_compute() {
    require_redis!();
    let server = Arc::new(blocking(RedisServer::start));
    let name = unique_name("flaky");
    let first = Client::connect([server.url()]).await.unwrap();
    let (srv, key) = (Arc::clone(&server), name.clone());
    let failing = tokio::spawn(async move {
        first
            .get_or_compute_with(&key, LIMIT, options(), || async {
                until_waiting(&srv, &key, 3);
                Err::<Vec<u8>, _>("the backend is down")
            })
            .await
    });
    // Registered only once the failing computer holds the lock, so none of them computes
    // first by arriving early.
    blocking(|| {
        wait_for("the first computer's lock", LIMIT, || {
            let held = server.raw().ok(&["EXISTS", &lock_key(&name)]).int();
            (held == Some(1)).then_some(())
        })
    });
    let computed = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for i in 0..3 {
        let client = Client::connect([server.url()]).await.unwrap();
        let (name, computed) = (name.clone(), Arc::clone(&computed));
        waiters.push(tokio::spawn(async move {
            client
                .get_or_compute_with(&name, LIMIT, options(), || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(format!("retried by {i}").into_bytes())
                })
                .await
        }));
    }
    match failing.await.unwrap() {
        Err(ComputeError::Compute(why)) => assert_eq!(why, "the backend is down"),
        other => panic!("the closure's error is passed through: {other:?}"),
    }
    let mut values = Vec::new();
    for waiter in waiters {
        values.push(
            waiter
                .await
                .unwrap()
                .expect("a waiter computes, the others wait"),
        );
    }
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "exactly one waiter computed"
    );
    assert!(values.iter().all(|v| v == &values[0]), "{values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_present_value_is_returned_without_touching_the_lock() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let name = unique_name("cached");
    let value_key = format!("distlock:{{{name}}}:value");
    blocking(|| {
        server
            .raw()
            .ok(&["SET", &value_key, "cached bytes", "PX", "60000"])
    });
    let sets_before = set_calls(&server);
    let client = Client::connect([server.url()]).await.unwrap();
    let value = client
        .get_or_compute(&name, LIMIT, || async {
            Err::<Vec<u8>, _>("never called: the value is there")
        })
        .await
        .expect("the cached value");
    assert_eq!(value, b"cached bytes");
    let sets_after = set_calls(&server);
    assert_eq!(sets_after, sets_before, "no SET: the lock was not taken");
    let lock = blocking(|| server.raw().ok(&["EXISTS", &lock_key(&name)]).int());
    assert_eq!(lock, Some(0));
    let waiters = blocking(|| server.raw().ok(&["EXISTS", &waiters_key(&name)]).int());
    assert_eq!(waiters, Some(0), "nobody registered as a waiter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redlock_client_is_refused_before_anything_is_sent() {
    require_redis!();
    let (a, b) = (blocking(RedisServer::start), blocking(RedisServer::start));
    let client = Client::connect([a.url(), b.url()]).await.unwrap();
    let refused = client
        .get_or_compute(unique_name("spread"), LIMIT, || async {
            Ok::<_, std::io::Error>(b"never".to_vec())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ComputeError::Client(Error::Config(ConfigError::ComputeUnsupported))
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_computes_once_for_concurrent_callers() {
    let client = Client::embedded();
    let computed = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let first = {
        let (client, computed, started, finish) = (
            client.clone(),
            Arc::clone(&computed),
            Arc::clone(&started),
            Arc::clone(&finish),
        );
        tokio::spawn(async move {
            client
                .get_or_compute_with("embedded", LIMIT, options(), || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    finish.notified().await;
                    Ok::<_, std::io::Error>(b"from the first".to_vec())
                })
                .await
        })
    };
    started.notified().await;
    // The lock is held: this caller waits for the value, its closure never runs.
    let second = {
        let (client, computed) = (client.clone(), Arc::clone(&computed));
        tokio::spawn(async move {
            client
                .get_or_compute_with("embedded", LIMIT, options(), || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(b"from the second".to_vec())
                })
                .await
        })
    };
    let refused = client
        .get_or_compute_with(
            "embedded",
            LIMIT,
            ComputeOptions::default().wait(Duration::ZERO),
            || async { Ok::<_, std::io::Error>(b"never".to_vec()) },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ComputeError::NotAcquired {
                attempts: 1..,
                holder_ttl: Some(_)
            }
        ),
        "{refused:?}"
    );
    finish.notify_one();
    assert_eq!(first.await.unwrap().unwrap(), b"from the first");
    assert_eq!(second.await.unwrap().unwrap(), b"from the first");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
}

#[test]
fn the_blocking_client_computes_then_returns_the_cached_value() {
    require_redis!();
    let server = RedisServer::start();
    let client = distlock_host::blocking::Client::connect([server.url()]).unwrap();
    let name = unique_name("blocking");
    let computed = AtomicUsize::new(0);
    let compute = || {
        computed.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(b"computed once".to_vec())
    };
    let first = client.get_or_compute(&name, LIMIT, options(), compute);
    let again = client.get_or_compute(&name, LIMIT, options(), compute);
    assert_eq!(first.unwrap(), b"computed once");
    assert_eq!(again.unwrap(), b"computed once");
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "the second call read the value"
    );
    let failed = client
        .get_or_compute(unique_name("failing"), LIMIT, options(), || {
            Err::<Vec<u8>, _>("no backend")
        })
        .unwrap_err();
    assert!(
        matches!(failed, ComputeError::Compute("no backend")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_computation_hands_the_turn_to_a_waiter_at_once() {
    require_redis!();
    let server = Arc::new(blocking(RedisServer::start));
    let name = unique_name("dropped");
    // The lock and the waiter's wait are far longer than the test may take: only a wake-up
    // can let the waiter in before LIMIT.
    let long = ComputeOptions::default()
        .wait(LIMIT * 4)
        .lock_ttl(LIMIT * 4);
    let first = Client::connect([server.url()]).await.unwrap();
    let Ok(Begun::Compute(computation)) = first.begin_compute(&name, long).await else {
        panic!("the first caller computes");
    };
    let waiter = {
        let (client, name) = (Client::connect([server.url()]).await.unwrap(), name.clone());
        tokio::spawn(async move { client.begin_compute(&name, long).await })
    };
    until_waiting(&server, &name, 1);
    drop(computation);
    let taken = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("the waiter was not woken when the computation was dropped")
        .expect("the waiter's task");
    let Ok(Begun::Compute(next)) = taken else {
        panic!("the waiter computes next: {taken:?}");
    };
    let holder = blocking(|| server.raw().ok(&["GET", &lock_key(&name)]).text());
    assert_eq!(holder.as_deref(), Some(next.guard().token()));
    next.store(b"computed by the waiter", LIMIT)
        .await
        .expect("stored");
    let value = first
        .get_or_compute(&name, LIMIT, || async { Err::<Vec<u8>, ()>(()) })
        .await
        .expect("the stored value");
    assert_eq!(value, b"computed by the waiter");
}

#[test]
fn the_blocking_two_step_form_stores_and_a_dropped_computation_is_given_up() {
    require_redis!();
    let server = RedisServer::start();
    let client = distlock_host::blocking::Client::connect([server.url()]).unwrap();
    let name = unique_name("blocking-steps");
    let Ok(distlock_host::blocking::Begun::Compute(computation)) =
        client.begin_compute(&name, options())
    else {
        panic!("a missing value is this caller's to compute");
    };
    assert!(computation.is_held());
    let holder = server.raw().ok(&["GET", &lock_key(&name)]).text();
    assert_eq!(holder.as_deref(), Some(computation.token()));
    // Dropped unfinished: given up before `drop` returns (the lock key is gone at once).
    drop(computation);
    assert_eq!(
        server.raw().ok(&["EXISTS", &lock_key(&name)]).int(),
        Some(0)
    );

    let Ok(distlock_host::blocking::Begun::Compute(computation)) =
        client.begin_compute(&name, options())
    else {
        panic!("given up: the next caller computes");
    };
    computation.store(b"two steps", LIMIT).expect("stored");
    let Ok(distlock_host::blocking::Begun::Value(value)) = client.begin_compute(&name, options())
    else {
        panic!("the stored value");
    };
    assert_eq!(value, b"two steps");
}
