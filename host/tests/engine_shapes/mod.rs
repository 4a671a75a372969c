//! The conformance cases of semaphores and read-write locks through the engine
//! (`acquire-shaped` and its siblings, `status`'s `permits`/`rw` and `shared` verdict), each
//! against a real `redis-server`: the limit is never exceeded, a released permit admits a
//! waiter, readers share, a writer excludes readers and writers, and bad input is the typed
//! error the core gives, with nothing written.

use std::thread;

use crate::engine_host::{Host, api, options, semaphore};
use crate::support::{RedisServer, SOON, lock_key, require_redis, unique_name, wait_for};
use crate::{RENEWAL_TTL_MS, host, invalid_kind, key_value, short_ttl_host, three_ttls_after};

/// The key of the permit `token` holds of semaphore `name`.
fn permit_key(name: &str, token: &str) -> String {
    format!("{}:permit:{token}", lock_key(name))
}

/// How long `key` lives, in ms (-2: no such key).
fn pttl(server: &RedisServer, key: &str) -> i64 {
    server
        .raw()
        .ok(&["PTTL", key])
        .int()
        .expect("PTTL answers a number")
}

/// Whether `key` exists.
fn exists(server: &RedisServer, key: &str) -> bool {
    pttl(server, key) != -2
}

/// Node 0's reading of `status`.
fn reading(status: &api::Status) -> &api::Reading {
    match &status.nodes[0] {
        Ok(reading) => reading,
        Err(failure) => panic!("node 0 could not be read: {failure:?}"),
    }
}

fn sorted(tokens: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut tokens: Vec<String> = tokens.into_iter().collect();
    tokens.sort();
    tokens
}

fn assert_not_acquired(result: Result<api::Lease, api::Error>, what: &str) {
    match result {
        Err(api::Error::NotAcquired(not)) => assert_eq!(not.attempts, 1, "{what}"),
        other => panic!("{what}: expected not-acquired, got {other:?}"),
    }
}

fn assert_server_error(result: Result<api::Lease, api::Error>, kind: api::ServerErrorKind) {
    match result {
        Err(api::Error::Server(refused)) => assert_eq!(refused.error.kind, kind, "{refused:?}"),
        other => panic!("expected a server error of kind {kind:?}, got {other:?}"),
    }
}

/// Acquires `shape` on `name` with a wait, from a client of its own on `url`, in a thread.
fn waiter(
    url: String,
    name: &str,
    shape: api::Shape,
) -> thread::JoinHandle<Result<api::Lease, api::Error>> {
    let name = name.to_owned();
    thread::spawn(move || {
        let mut host = Host::connect(options(&[url])).expect("connect");
        host.acquire_shaped(&name, &shape, 10_000)
    })
}

/// Waits until a client blocks on a wake-up list (a waiter waits there, observed).
fn wait_until_blocked(server: &RedisServer, what: &str) {
    wait_for(what, SOON, || (server.blocked_clients() > 0).then_some(()));
}

#[test]
fn semaphore_limit() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let name = unique_name("engine-semaphore");
    let two = semaphore(2, None);
    let first = client
        .acquire_shaped(&name, &two, 0)
        .expect("a first permit");
    let second = client
        .acquire_shaped(&name, &two, 0)
        .expect("a second permit");
    assert_ne!(first.token, second.token);
    for lease in [&first, &second] {
        assert!(pttl(&server, &permit_key(&name, &lease.token)) > 0);
    }
    assert_not_acquired(client.acquire_shaped(&name, &two, 0), "a third permit");

    let status = client.status(&name).expect("status");
    assert_eq!(status.verdict, api::Verdict::Shared);
    let node = reading(&status);
    assert_eq!(node.holder, None);
    let permits = node.permits.as_ref().expect("read as a semaphore");
    assert_eq!(permits.limit, 2);
    assert_eq!(
        sorted(permits.holders.iter().map(|h| h.token.clone())),
        sorted([first.token.clone(), second.token.clone()])
    );
    assert!(permits.holders.iter().all(|h| h.ttl_ms.is_some()));

    let third = waiter(server.url(), &name, two);
    wait_until_blocked(&server, "the third acquire to wait");
    assert_eq!(client.release_shaped(&name, &two, &first.token), Ok(0));
    let third = third
        .join()
        .expect("the waiter thread")
        .expect("the freed permit admits the waiter");
    assert!(!exists(&server, &permit_key(&name, &first.token)));
    assert!(exists(&server, &permit_key(&name, &third.token)));
    assert_eq!(
        client.release_shaped(&name, &two, &first.token),
        Err(api::Error::NotHeld)
    );
    assert_not_acquired(client.acquire_shaped(&name, &two, 0), "still two holders");
    for token in [&second.token, &third.token] {
        assert_eq!(client.release_shaped(&name, &two, token), Ok(0));
    }
    assert_eq!(
        client.status(&name).expect("status").verdict,
        api::Verdict::Free
    );
}

#[test]
fn rw_readers_share() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let name = unique_name("engine-rw");
    let (read, write) = (api::Shape::Read, api::Shape::Write);
    let r1 = client.acquire_shaped(&name, &read, 0).expect("a read hold");
    let r2 = client
        .acquire_shaped(&name, &read, 0)
        .expect("a second read hold beside it");
    assert_ne!(r1.token, r2.token);
    assert_not_acquired(
        client.acquire_shaped(&name, &write, 0),
        "a write beside readers",
    );

    let status = client.status(&name).expect("status");
    assert_eq!(status.verdict, api::Verdict::Shared);
    let holds = reading(&status)
        .rw
        .as_ref()
        .expect("read as a read-write lock");
    assert_eq!(holds.writer, None);
    assert_eq!(
        sorted(holds.readers.iter().map(|h| h.token.clone())),
        sorted([r1.token.clone(), r2.token.clone()])
    );

    let writer = waiter(server.url(), &name, write);
    wait_until_blocked(&server, "the writer to wait");
    for reader in [&r1, &r2] {
        assert_eq!(client.release_shaped(&name, &read, &reader.token), Ok(0));
    }
    let writer = writer
        .join()
        .expect("the writer thread")
        .expect("the writer gets in once the readers left");
    assert_eq!(
        key_value(&server, &format!("{}:writer", lock_key(&name))),
        Some(writer.token.clone())
    );
    assert_not_acquired(
        client.acquire_shaped(&name, &read, 0),
        "a read beside a writer",
    );
    assert_not_acquired(client.acquire_shaped(&name, &write, 0), "a second writer");
    let status = client.status(&name).expect("status");
    assert_eq!(status.verdict, api::Verdict::Shared);
    let holds = reading(&status)
        .rw
        .as_ref()
        .expect("read as a read-write lock");
    assert_eq!(holds.writer.as_ref().map(|h| &h.token), Some(&writer.token));
    assert!(holds.readers.is_empty());
    assert_eq!(client.release_shaped(&name, &write, &writer.token), Ok(0));
    assert_eq!(
        client.status(&name).expect("status").verdict,
        api::Verdict::Free
    );
}

#[test]
fn shaped_extend_renewal() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = short_ttl_host(&server, RENEWAL_TTL_MS);
    let name = unique_name("engine-shaped-extend");
    let three = semaphore(3, None);
    let permit = client.acquire_shaped(&name, &three, 0).expect("a permit");
    client
        .extend_shaped(&name, &three, &permit.token, 60_000)
        .expect("extend the permit");
    assert!(pttl(&server, &permit_key(&name, &permit.token)) > 30_000);
    client
        .release_shaped(&name, &three, &permit.token)
        .expect("release");

    let rw_name = unique_name("engine-shaped-extend-rw");
    let write = api::Shape::Write;
    let hold = client
        .acquire_shaped(&rw_name, &write, 0)
        .expect("a write hold");
    client
        .extend_shaped(&rw_name, &write, &hold.token, 60_000)
        .expect("extend the write hold");
    assert!(pttl(&server, &format!("{}:writer", lock_key(&rw_name))) > 30_000);
    assert_eq!(
        client.extend_shaped(&rw_name, &api::Shape::Read, &hold.token, 60_000),
        Err(api::Error::NotHeld),
        "a write hold is no read hold"
    );
    client
        .release_shaped(&rw_name, &write, &hold.token)
        .expect("release");

    let renewed = client.acquire_shaped(&name, &three, 0).expect("a permit");
    let renewal = client
        .renewal_shaped(&name, &three, &renewed)
        .expect("a renewal");
    let until = three_ttls_after(renewed.started);
    let lost = client.renew_until(renewal, |host, valid_until| {
        host.now() > until && valid_until > until
    });
    assert_eq!(lost, None, "the permit was lost while the server ran");
    assert!(exists(&server, &permit_key(&name, &renewed.token)));
}

#[test]
fn shaped_bad_input() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let name = unique_name("engine-shaped-bad");
    for limit in [0, distlock_core::MAX_PERMITS + 1] {
        let error = client
            .acquire_shaped(&name, &semaphore(limit, None), 0)
            .expect_err("a bad limit");
        assert_eq!(
            invalid_kind(&error),
            api::ConfigErrorKind::BadLimit,
            "{limit}"
        );
    }
    assert!(!exists(&server, &lock_key(&name)), "nothing written");

    let mut fair_options = options(&[server.url()]);
    fair_options.fair = Some(true);
    let mut fair = Host::connect(fair_options).expect("connect");
    for shape in [api::Shape::Read, api::Shape::Write] {
        let error = fair
            .acquire_shaped(&name, &shape, 0)
            .expect_err("no fair rw lock");
        assert_eq!(
            invalid_kind(&error),
            api::ConfigErrorKind::RwLockUnsupported
        );
    }

    let others = [RedisServer::start(), RedisServer::start()];
    let urls = [server.url(), others[0].url(), others[1].url()];
    let mut redlock = Host::connect(options(&urls)).expect("connect");
    let error = redlock
        .acquire_shaped(&name, &semaphore(2, None), 0)
        .expect_err("no semaphore over three nodes");
    assert_eq!(
        invalid_kind(&error),
        api::ConfigErrorKind::SemaphoreUnsupported
    );
    assert!(!exists(&server, &lock_key(&name)), "nothing written");

    let mutex = client.acquire(&name, 0).expect("a lock");
    assert_server_error(
        client.acquire_shaped(&name, &semaphore(2, None), 0),
        api::ServerErrorKind::WrongType,
    );
    assert_eq!(key_value(&server, &lock_key(&name)), Some(mutex.token));

    let jobs = unique_name("engine-shaped-bad-jobs");
    let permit = client
        .acquire_shaped(&jobs, &semaphore(2, None), 0)
        .expect("a permit");
    assert_server_error(
        client.acquire_shaped(&jobs, &api::Shape::Write, 0),
        api::ServerErrorKind::WrongType,
    );
    assert_server_error(
        client.acquire_shaped(&jobs, &semaphore(3, None), 0),
        api::ServerErrorKind::WrongLimit,
    );
    let status = client.status(&jobs).expect("status");
    let permits = reading(&status)
        .permits
        .as_ref()
        .expect("still a semaphore");
    assert_eq!(permits.limit, 2);
    assert_eq!(
        permits.holders.iter().map(|h| &h.token).collect::<Vec<_>>(),
        [&permit.token]
    );
}

/// A semaphore's own fair mode (`fair: some(true)` in a session that is not fair): a released
/// permit is handed to the waiter, which holds it when its acquire returns; the release's
/// fair script is the one `release-shaped` with the same shape sends.
#[test]
fn a_fair_semaphore_hands_a_released_permit_to_its_waiter() {
    require_redis!();
    let server = RedisServer::start();
    let mut client = host(&server);
    let name = unique_name("engine-fair-semaphore");
    let fair_one = semaphore(1, Some(true));
    let held = client
        .acquire_shaped(&name, &fair_one, 0)
        .expect("the permit");
    let waiting = waiter(server.url(), &name, fair_one);
    wait_for("the fair waiter to queue", SOON, || {
        let queued = server
            .raw()
            .ok(&["ZCARD", &format!("{}:permit-queue", lock_key(&name))])
            .int();
        (queued == Some(1)).then_some(())
    });
    // The engine's status counts the waiter behind the full permits.
    let status = client.status(&name).expect("status");
    assert_eq!(reading(&status).queued, Some(1));
    assert_eq!(client.release_shaped(&name, &fair_one, &held.token), Ok(0));
    let handed = waiting
        .join()
        .expect("the waiter thread")
        .expect("the waiter gets the released permit");
    assert!(exists(&server, &permit_key(&name, &handed.token)));
    assert_not_acquired(
        client.acquire_shaped(&name, &fair_one, 0),
        "one permit, handed on",
    );
}
