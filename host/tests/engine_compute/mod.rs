//! The conformance cases of get-or-compute through the engine (`get-or-lock`,
//! `finish-compute`, `abandon-compute`), each against a real `redis-server`: concurrent
//! callers of a missing key run the computation once and all get its value (the waiters wait
//! for the value, not for the lock), a present value is read without writing a key, a failed
//! computation lets exactly one waiter compute, and the refusals are the typed errors the
//! core gives, with nothing written.
//!
//! No sleep orders the callers: a computation returns only once the server counts the others
//! as registered waiters (`<lock key>:value:waiters`), so they surely waited for its value.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::engine_host::{ComputeFailure, Host, api, options};
use crate::support::{RedisServer, command_calls, lock_key, require_redis, unique_name, wait_for};
use crate::{host, invalid_kind, key_value};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);
/// The callers' wait for another's value, in ms: longer than any of these tests.
const WAIT_MS: u32 = 30_000;
/// How long stored values live, in ms.
const VALUE_TTL_MS: u32 = 60_000;

fn value_key(name: &str) -> String {
    format!("{}:value", lock_key(name))
}

/// Waits until the server counts at least `n` registered waiters of `name`'s value.
fn until_waiting(server: &RedisServer, name: &str, n: i64) {
    let waiters = format!("{}:value:waiters", lock_key(name));
    wait_for(&format!("{n} waiters"), LIMIT, || {
        let count = server.raw().ok(&["GET", &waiters]).text();
        (count.and_then(|c| c.parse::<i64>().ok()) >= Some(n)).then_some(())
    });
}

/// `SET` calls the server counted (those inside scripts too).
fn set_calls(server: &RedisServer) -> u64 {
    let stats = server.raw().ok(&["INFO", "commandstats"]).text();
    command_calls(&stats.unwrap_or_default(), "set")
}

/// `callers` clients of `name` on their own threads, each running `get_or_compute` with a
/// computation that counts itself in `computed` and is `compute(i)`. Half of them drive the
/// flat calls, the path the Node and Python hosts take.
fn callers(
    server: &RedisServer,
    name: &str,
    range: std::ops::Range<usize>,
    computed: &Arc<AtomicUsize>,
    compute: impl Fn(usize) -> Result<Vec<u8>, String> + Send + Sync + 'static,
) -> Vec<thread::JoinHandle<Result<Vec<u8>, ComputeFailure>>> {
    let compute = Arc::new(compute);
    range
        .map(|i| {
            let (url, name) = (server.url(), name.to_owned());
            let (computed, compute) = (Arc::clone(computed), Arc::clone(&compute));
            thread::spawn(move || {
                let host = Host::connect(options(&[url])).expect("connect");
                let mut host = if i % 2 == 1 { host.flat() } else { host };
                host.get_or_compute(&name, WAIT_MS, VALUE_TTL_MS, || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    compute(i)
                })
            })
        })
        .collect()
}

fn values(callers: Vec<thread::JoinHandle<Result<Vec<u8>, ComputeFailure>>>) -> Vec<Vec<u8>> {
    callers
        .into_iter()
        .map(|caller| {
            caller
                .join()
                .expect("the caller thread")
                .expect("every caller gets the value")
        })
        .collect()
}

#[test]
fn get_or_compute() {
    require_redis!();
    let server = Arc::new(RedisServer::start());
    let name = unique_name("engine-compute");
    let computed = Arc::new(AtomicUsize::new(0));
    let srv = Arc::clone(&server);
    let key = name.clone();
    let five = callers(&server, &name, 0..5, &computed, move |i| {
        // The four others are registered waiters before the value exists.
        until_waiting(&srv, &key, 4);
        Ok(format!("computed by {i}").into_bytes())
    });
    let got = values(five);
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "the computation ran once"
    );
    assert!(got.iter().all(|v| v == &got[0]), "{got:?}");
    assert!(got[0].starts_with(b"computed by "), "{got:?}");
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        None,
        "the store freed the lock"
    );
    assert_eq!(
        key_value(&server, &value_key(&name)).map(String::into_bytes),
        Some(got[0].clone())
    );

    // A present value: read, no key written, the lock untouched.
    let sets = set_calls(&server);
    let mut reader = host(&server);
    let read = reader
        .get_or_compute(&name, 0, VALUE_TTL_MS, || panic!("recomputed"))
        .expect("the stored value");
    assert_eq!(read, got[0]);
    assert_eq!(set_calls(&server), sets, "a present value writes nothing");
    assert_eq!(key_value(&server, &lock_key(&name)), None);

    // A computation that fails gives its lock up: exactly one waiter computes next.
    let name = unique_name("engine-compute-flaky");
    let mut failing = host(&server);
    let lease = match failing.get_or_lock(&name, WAIT_MS).expect("get-or-lock") {
        api::Fetched::Computing(lease) => lease,
        other => panic!("a missing value is this caller's to compute: {other:?}"),
    };
    assert_eq!(
        key_value(&server, &lock_key(&name)),
        Some(lease.token.clone()),
        "the computation's lock is the name's plain lock"
    );
    let retried = Arc::new(AtomicUsize::new(0));
    let three = callers(&server, &name, 0..3, &retried, |i| {
        Ok(format!("retried by {i}").into_bytes())
    });
    until_waiting(&server, &name, 3);
    assert_eq!(
        failing.abandon_compute(&name, &lease.token),
        Ok(1),
        "giving up wakes one waiter"
    );
    let got = values(three);
    assert_eq!(
        retried.load(Ordering::SeqCst),
        1,
        "exactly one waiter computed"
    );
    assert!(got.iter().all(|v| v == &got[0]), "{got:?}");
    assert!(got[0].starts_with(b"retried by "), "{got:?}");
    // The failed computer's token holds nothing any more.
    assert_eq!(
        failing.abandon_compute(&name, &lease.token),
        Err(api::Error::NotHeld)
    );
}

#[test]
fn get_or_compute_bad_input() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let name = unique_name("engine-compute-bad");
    let refused = |opts: api::Options, what: &str| {
        let mut host = Host::connect(opts).expect("connect");
        let error = host.get_or_lock(&name, 0).expect_err(what);
        assert_eq!(
            invalid_kind(&error),
            api::ConfigErrorKind::ComputeUnsupported,
            "{what}"
        );
    };
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    refused(options(&urls), "a value on a majority is not a value");
    let one = &servers[0];
    refused(
        api::Options {
            fenced: true,
            ..options(&[one.url()])
        },
        "a fenced session",
    );
    refused(
        api::Options {
            layout: Some(api::KeyLayout::RedisPy),
            ..options(&[one.url()])
        },
        "another library's key layout",
    );
    for server in &servers {
        assert_eq!(key_value(server, &lock_key(&name)), None, "nothing written");
    }

    let mut computer = host(one);
    let lease = match computer.get_or_lock(&name, 0).expect("get-or-lock") {
        api::Fetched::Computing(lease) => lease,
        other => panic!("a missing value is this caller's to compute: {other:?}"),
    };
    // While it computes, a caller that will not wait is told so: the value is not there yet.
    match host(one).get_or_lock(&name, 0) {
        Err(api::Error::NotAcquired(not)) => assert!(not.holder_ttl_ms.is_some_and(|ttl| ttl > 0)),
        other => panic!("expected not-acquired while another computes, got {other:?}"),
    }
    let too_long = vec![b'x'; 1_000_001];
    let error = computer
        .finish_compute(&name, &lease.token, &too_long, VALUE_TTL_MS)
        .expect_err("a value over the bound");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::ValueTooLong);
    let error = computer
        .finish_compute(&name, &lease.token, b"v", 0)
        .expect_err("a zero value TTL");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::BadTtl);
    assert_eq!(
        key_value(one, &lock_key(&name)),
        Some(lease.token.clone()),
        "the refusals left the computer's lock alone"
    );
    assert_eq!(
        key_value(one, &value_key(&name)),
        None,
        "and stored nothing"
    );

    // An operator resets the lock while the computation runs: its store is refused.
    one.raw().ok(&["DEL", &lock_key(&name)]);
    assert_eq!(
        computer.finish_compute(&name, &lease.token, b"v", VALUE_TTL_MS),
        Err(api::Error::NotHeld),
        "a computation whose lock was lost stores nothing"
    );
    assert_eq!(key_value(one, &value_key(&name)), None);
    let lease = match computer.get_or_lock(&name, 0).expect("get-or-lock") {
        api::Fetched::Computing(lease) => lease,
        other => panic!("the value is still missing: {other:?}"),
    };
    assert_eq!(
        computer.finish_compute(&name, &lease.token, b"v", VALUE_TTL_MS),
        Ok(1),
        "the store wakes the one caller that registered as a waiter"
    );
    assert_eq!(key_value(one, &value_key(&name)), Some("v".to_owned()));
}
