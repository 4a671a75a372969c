//! The conformance cases of multi-name locks through the engine (`acquire-many` and its
//! siblings), each against a real `redis-server`: a set is taken all or nothing (a held name
//! takes nothing), overlapping sets and plain locks of a set's names exclude each other, the
//! set is extended and renewed together, one fence is above every name's, and a bad set is
//! the typed error the core gives, with nothing written.

use std::thread;

use crate::engine_host::{Host, api, options};
use crate::support::{RedisServer, SOON, lock_key, require_redis, unique_name, wait_for};
use crate::{RENEWAL_TTL_MS, host, invalid_kind, key_value, short_ttl_host, three_ttls_after};

/// How long `key` lives, in ms (-2: no such key).
fn pttl(server: &RedisServer, key: &str) -> i64 {
    server
        .raw()
        .ok(&["PTTL", key])
        .int()
        .expect("PTTL answers a number")
}

fn assert_not_acquired(result: Result<api::Lease, api::Error>, what: &str) {
    match result {
        Err(api::Error::NotAcquired(not)) => assert_eq!(not.attempts, 1, "{what}"),
        other => panic!("{what}: expected not-acquired, got {other:?}"),
    }
}

/// Three fresh names, in byte order.
fn three_names(what: &str) -> [String; 3] {
    let base = unique_name(what);
    [
        format!("{base}-a"),
        format!("{base}-b"),
        format!("{base}-c"),
    ]
}

#[test]
fn multi_all_or_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let [a, b, _] = three_names("engine-multi-all");
    let plain = client.acquire(&b, 0).expect("a plain lock of b");
    assert_not_acquired(client.acquire_many(&[&a, &b], 0), "b is held");
    assert_eq!(
        key_value(&server, &lock_key(&a)),
        None,
        "a held name takes nothing"
    );
    assert_eq!(key_value(&server, &lock_key(&b)), Some(plain.token.clone()));
    client.release(&b, &plain.token).expect("release b");

    // Given out of order: the core sorts, the set is the same.
    let set = client
        .acquire_many(&[&b, &a], 0)
        .expect("the set, now free");
    for name in [&a, &b] {
        assert_eq!(key_value(&server, &lock_key(name)), Some(set.token.clone()));
    }
    assert_eq!(client.release_many(&[&a, &b], &set.token), Ok(0));
    for name in [&a, &b] {
        assert_eq!(
            key_value(&server, &lock_key(name)),
            None,
            "released together"
        );
    }
    assert_eq!(
        client.release_many(&[&a, &b], &set.token),
        Err(api::Error::NotHeld)
    );
}

#[test]
fn multi_overlap_excludes() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let [a, b, c] = three_names("engine-multi-overlap");
    let first = client.acquire_many(&[&a, &b], 0).expect("a and b");
    assert_not_acquired(client.acquire_many(&[&b, &c], 0), "b is in the held set");
    assert_eq!(key_value(&server, &lock_key(&c)), None);
    assert_not_acquired(client.try_acquire(&a), "a plain lock of a held set's name");

    let url = server.url();
    let (b_name, c_name) = (b.clone(), c.clone());
    let waiter = thread::spawn(move || {
        let mut other = Host::connect(options(&[url])).expect("connect");
        other.acquire_many(&[&b_name, &c_name], 10_000)
    });
    wait_for("the overlapping set to wait", SOON, || {
        (server.blocked_clients() > 0).then_some(())
    });
    assert_eq!(client.release_many(&[&a, &b], &first.token), Ok(0));
    let second = waiter
        .join()
        .expect("the waiter thread")
        .expect("the released set admits the waiter");
    for name in [&b, &c] {
        assert_eq!(
            key_value(&server, &lock_key(name)),
            Some(second.token.clone())
        );
    }
    assert_eq!(key_value(&server, &lock_key(&a)), None);
}

#[test]
fn multi_extend_renewal() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = short_ttl_host(&server, RENEWAL_TTL_MS);
    let [a, b, _] = three_names("engine-multi-extend");
    let set = client.acquire_many(&[&a, &b], 0).expect("the set");
    client
        .extend_many(&[&a, &b], &set.token, 60_000)
        .expect("extend the set");
    for name in [&a, &b] {
        assert!(pttl(&server, &lock_key(name)) > 30_000, "{name} extended");
    }
    assert_eq!(
        client
            .extend_many(&[&a, &b], "not-the-token-0123456789", 60_000)
            .map(|_| ()),
        Err(api::Error::NotHeld)
    );
    client.release_many(&[&a, &b], &set.token).expect("release");

    let renewed = client.acquire_many(&[&a, &b], 0).expect("the set");
    let renewal = client.renewal_many(&[&a, &b], &renewed).expect("a renewal");
    let until = three_ttls_after(renewed.started);
    let lost = client.renew_until(renewal, |host, valid_until| {
        host.now() > until && valid_until > until
    });
    assert_eq!(lost, None, "the set was lost while the server ran");
    for name in [&a, &b] {
        assert_eq!(
            key_value(&server, &lock_key(name)),
            Some(renewed.token.clone())
        );
    }
}

#[test]
fn multi_bad_sets() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let [a, b, _] = three_names("engine-multi-bad");
    let error = client.acquire_many(&[], 0).expect_err("no name");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::NoNames);
    let many: Vec<String> = (0..=distlock_core::MAX_MULTI_NAMES)
        .map(|i| format!("{a}-{i:02}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let error = client
        .acquire_many(&many, 0)
        .expect_err("one name too many");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::TooManyNames);
    let error = client
        .acquire_many(&[&a, &b, &a], 0)
        .expect_err("a name twice");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::DuplicateName);
    let error = client
        .acquire_many(&[&a, ""], 0)
        .expect_err("an empty name");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::EmptyName);

    let mut fair_options = options(&[server.url()]);
    fair_options.fair = Some(true);
    let mut fair = Host::connect(fair_options).expect("connect");
    let error = fair.acquire_many(&[&a, &b], 0).expect_err("no fair set");
    assert_eq!(invalid_kind(&error), api::ConfigErrorKind::MultiUnsupported);
    for name in [&a, &b] {
        assert_eq!(key_value(&server, &lock_key(name)), None, "nothing written");
    }
}

/// Fenced, the set's one fence is above every name's earlier fences, and every name's
/// counter is raised to it (a resource guarded by any one of the names sees it grow).
#[test]
fn a_sets_fence_is_above_every_names() {
    require_redis!();
    let server = RedisServer::start();
    let mut opts = options(&[server.url()]);
    opts.fenced = true;
    let mut client = Host::connect(opts).expect("connect");
    let [a, b, _] = three_names("engine-multi-fence");
    let mut last = 0;
    for _ in 0..3 {
        let lease = client.acquire(&b, 0).expect("a plain lock of b");
        last = lease.fence.expect("fenced");
        client.release(&b, &lease.token).expect("release b");
    }
    let set = client.acquire_many(&[&a, &b], 0).expect("the set");
    let fence = set.fence.expect("fenced");
    assert!(fence > last, "{fence} above b's {last}");
    for name in [&a, &b] {
        let counter = server
            .raw()
            .ok(&["GET", &format!("{}:fence", lock_key(name))])
            .text();
        assert_eq!(counter, Some(fence.to_string()), "{name}'s counter");
    }
}
