//! Get-or-compute for guest apps (`client.get-or-lock` and `computation` in
//! `wit/distlock.wit`), against real `redis-server` processes:
//!
//! - Guest apps (the counter example's `compute` mode), linked to the lock component or
//!   served natively: three guests of one missing key run the computation once and all get
//!   its value; a guest of a cached value computes nothing; a computation that is abandoned,
//!   dropped unfinished by a guest that ends, or held by a guest that traps hands the turn to
//!   a waiter at once (the waiter's wait is shorter than the lock's TTL, so expiry cannot be
//!   what let it in).
//! - The calls on the three component paths (the lock component itself, a guest linked to
//!   it, a guest served natively): the refusals are typed errors that write nothing, a store
//!   of a lost lock is `not-held` and stores nothing, and a computation dropped unfinished is
//!   given up without I/O in the destructor — by the lock component at its client's next call.
//!
//! No sleep orders the guests: the computer waits for a file the test creates only once the
//! server counts the others as registered waiters (`<lock key>:value:waiters`).

use std::path::Path;
use std::thread;
use std::time::Duration;

use distlock_host::component::{
    Adapter, CallError, Ended, Fetched, RunOptions, RunReport, Serve, wit,
};

use crate::support::{RedisServer, lock_key, require_redis, unique_name, wait_for};
use crate::{Via, adapter_for, adapter_over, shared};

/// Every wait in these tests ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(30);
/// A waiter's wait that must end with the value: longer than any of these tests.
const LONG_WAIT_MS: u64 = 30_000;
/// A waiter's wait shorter than the counter guest's lock TTL (10 s): a waiter that gets the
/// turn within it got it from a give-up, not from the lock's expiry.
const SHORT_WAIT_MS: u64 = 5_000;

fn value_key(name: &str) -> String {
    format!("{}:value", lock_key(name))
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.raw().ok(&["EXISTS", key]).int() == Some(1)
}

/// Waits until the server counts at least `n` registered waiters of `name`'s value.
fn until_waiting(server: &RedisServer, name: &str, n: i64) {
    let waiters = format!("{}:value:waiters", lock_key(name));
    wait_for(&format!("{n} waiters"), LIMIT, || {
        let count = server.raw().ok(&["GET", &waiters]).text();
        (count.and_then(|c| c.parse::<i64>().ok()) >= Some(n)).then_some(())
    });
}

/// Starts the counter guest's `compute` mode on its own thread: guest `id` asks for `name`'s
/// value, waiting up to `wait_ms`, and ends a computation of its own as `then` says.
fn start_guest(
    adapter: &Adapter,
    serve: Serve,
    dir: &Path,
    name: &str,
    id: &str,
    wait_ms: u64,
    then: &str,
) -> thread::JoinHandle<RunReport> {
    let mut options = RunOptions::args([
        "distlock-counter",
        "compute",
        name,
        "/data",
        id,
        &wait_ms.to_string(),
        then,
    ]);
    options.dirs.push((dir.to_path_buf(), "/data".into()));
    options.serve = serve;
    // A trapping guest's panic message is expected; keep it out of the test output.
    options.inherit_stdio = false;
    let adapter = adapter.clone();
    thread::spawn(move || {
        adapter
            .run(&shared().counter, &options)
            .expect("run the guest")
    })
}

/// What guest `id` wrote to its `.out` file.
fn got(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{id}.out")))
        .unwrap_or_else(|e| panic!("guest {id} wrote no result: {e}"))
}

/// How many computations the guests ran (their racy count under the computation's lock).
fn computations(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("computations")).unwrap_or_else(|_| "0".into())
}

fn exited(report: &RunReport, who: &str) {
    assert_eq!(report.ended, Ended::Exited(0), "{who}: {report:?}");
}

#[test]
fn three_guests_compute_once_and_share_the_value_and_a_cached_value_computes_nothing() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("guest-compute");
        let dir = tempfile::tempdir().expect("temp dir");
        let a = start_guest(
            &adapter,
            serve,
            dir.path(),
            &name,
            "a",
            LONG_WAIT_MS,
            "store",
        );
        // `a` computes: its lock is on the server before the others ask.
        wait_for("a computing", LIMIT, || {
            exists(&server, &lock_key(&name)).then_some(())
        });
        let others: Vec<_> = ["b", "c"]
            .iter()
            .map(|id| {
                start_guest(
                    &adapter,
                    serve,
                    dir.path(),
                    &name,
                    id,
                    LONG_WAIT_MS,
                    "store",
                )
            })
            .collect();
        until_waiting(&server, &name, 2);
        std::fs::write(dir.path().join("go"), "").expect("go");
        exited(&a.join().expect("guest a"), "a");
        for (guest, id) in others.into_iter().zip(["b", "c"]) {
            exited(&guest.join().expect("guest"), id);
        }
        for id in ["a", "b", "c"] {
            assert_eq!(
                got(dir.path(), id),
                "value computed by a",
                "{serve:?}: {id}"
            );
        }
        assert_eq!(
            computations(dir.path()),
            "1",
            "{serve:?}: computed more than once"
        );
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &value_key(&name)])
                .text()
                .as_deref(),
            Some("computed by a"),
            "{serve:?}"
        );
        assert!(!exists(&server, &lock_key(&name)), "{serve:?}: lock kept");

        // The value is cached: a fourth guest reads it and computes nothing.
        let d = start_guest(&adapter, serve, dir.path(), &name, "d", 0, "store");
        exited(&d.join().expect("guest d"), "d");
        assert_eq!(got(dir.path(), "d"), "value computed by a", "{serve:?}");
        assert_eq!(
            computations(dir.path()),
            "1",
            "{serve:?}: a cached value was computed"
        );
    }
}

/// A computer that ends its computation by `then` without storing hands the turn to the
/// waiter at once, on both ways a guest is served.
fn hands_the_turn_on(then: &str) {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name(&format!("guest-{then}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let a = start_guest(&adapter, serve, dir.path(), &name, "a", LONG_WAIT_MS, then);
        wait_for("a computing", LIMIT, || {
            exists(&server, &lock_key(&name)).then_some(())
        });
        let b = start_guest(
            &adapter,
            serve,
            dir.path(),
            &name,
            "b",
            SHORT_WAIT_MS,
            "store",
        );
        until_waiting(&server, &name, 1);
        std::fs::write(dir.path().join("go"), "").expect("go");
        let report = a.join().expect("guest a");
        if then == "trap" {
            assert!(
                matches!(report.ended, Ended::Trapped(_)),
                "{serve:?}: {report:?}"
            );
            // The host gave the computation up as it releases a lease left behind.
            assert_eq!(report.leases_released, 1, "{serve:?}: {report:?}");
        } else {
            exited(&report, "a");
            let said = if then == "drop" {
                "dropped"
            } else {
                "abandoned"
            };
            assert_eq!(got(dir.path(), "a"), said, "{serve:?}");
        }
        // `b` got the turn within a wait shorter than the lock's TTL, and computed.
        exited(&b.join().expect("guest b"), "b");
        assert_eq!(got(dir.path(), "b"), "value computed by b", "{serve:?}");
        assert_eq!(computations(dir.path()), "2", "{serve:?}");
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &value_key(&name)])
                .text()
                .as_deref(),
            Some("computed by b"),
            "{serve:?}"
        );
    }
}

#[test]
fn an_abandoned_computation_hands_the_turn_to_a_waiter_at_once() {
    hands_the_turn_on("abandon");
}

#[test]
fn a_computation_dropped_by_a_guest_that_ends_hands_the_turn_to_a_waiter_at_once() {
    hands_the_turn_on("drop");
}

#[test]
fn a_computation_held_by_a_guest_that_traps_hands_the_turn_to_a_waiter_at_once() {
    hands_the_turn_on("trap");
}

fn config(nodes: Vec<String>) -> wit::Config {
    wit::Config {
        nodes,
        key_prefix: None,
        ttl_ms: Some(10_000),
        fenced: false,
        request_timeout_ms: None,
        fair: None,
        no_scripts: None,
    }
}

fn invalid_kind<T: std::fmt::Debug>(result: Result<T, CallError>) -> wit::ConfigErrorKind {
    match result {
        Err(CallError::Lock(wit::Error::Invalid(e))) => e.kind,
        other => panic!("expected an invalid error, got {other:?}"),
    }
}

/// The refusals, a lost lock's store and a dropped computation, on the three paths a guest's
/// calls take (the lock component itself, a guest linked to it, a guest served natively).
#[test]
fn get_or_lock_refuses_typed_and_writes_nothing_on_every_path() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let server = &servers[0];
    let adapter = adapter_over(&servers);
    let one = || config(vec![server.url()]);
    for via in crate::VIAS {
        let mut instance = via.instance(&adapter);
        let name = unique_name("component-compute");
        let untouched = |what: &str| {
            for key in [lock_key(&name), value_key(&name)] {
                assert!(!exists(server, &key), "{via:?}: {what} wrote {key}");
            }
        };

        // Settings get-or-compute cannot work with: refused before anything is sent.
        let redlock = instance
            .open(&config(Vec::new()))
            .expect("open three nodes");
        let fenced = instance
            .open(&wit::Config {
                fenced: true,
                ..one()
            })
            .expect("open fenced");
        let fair = instance
            .open(&wit::Config {
                fair: Some(true),
                ..one()
            })
            .expect("open fair");
        let scriptless = instance
            .open(&wit::Config {
                no_scripts: Some(true),
                ..one()
            })
            .expect("open without scripts");
        for (client, what) in [
            (&redlock, "Redlock"),
            (&fenced, "fenced"),
            (&fair, "fair"),
            (&scriptless, "no-scripts"),
        ] {
            assert_eq!(
                invalid_kind(instance.get_or_lock(client, &name, Duration::ZERO)),
                wit::ConfigErrorKind::ComputeUnsupported,
                "{via:?}: {what}"
            );
            untouched(what);
        }
        let client = instance.open(&one()).expect("open");
        assert_eq!(
            invalid_kind(instance.get_or_lock(&client, "", Duration::ZERO)),
            wit::ConfigErrorKind::EmptyName,
            "{via:?}"
        );

        // A value the core does not store, and a bad value TTL: refused, nothing changed
        // (the computation still holds its lock and goes on).
        let Fetched::Computing(computation) = instance
            .get_or_lock(&client, &name, Duration::ZERO)
            .expect("get-or-lock")
        else {
            panic!("{via:?}: a missing value is this caller's to compute");
        };
        let token = instance.computation_token(&computation).expect("token");
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &lock_key(&name)])
                .text()
                .as_deref(),
            Some(token.as_str()),
            "{via:?}: the computation's lock is the name's plain lock"
        );
        assert_eq!(
            instance.computation_name(&computation).expect("name"),
            name,
            "{via:?}"
        );
        let too_long = vec![b'x'; distlock_core::MAX_VALUE_LEN + 1];
        assert_eq!(
            invalid_kind(instance.store(&computation, &too_long, Duration::from_secs(60))),
            wit::ConfigErrorKind::ValueTooLong,
            "{via:?}"
        );
        assert_eq!(
            invalid_kind(instance.store(&computation, b"v", Duration::ZERO)),
            wit::ConfigErrorKind::BadTtl,
            "{via:?}"
        );
        assert!(!exists(server, &value_key(&name)), "{via:?}: stored");
        assert!(
            instance
                .computation_validity(&computation)
                .expect("validity")
                > Duration::ZERO,
            "{via:?}: a refused store ended the computation"
        );
        // The computation's lock is kept alive like a lease's.
        let validity = instance
            .computation_extend(&computation, Duration::from_secs(20))
            .expect("extend");
        assert!(validity > Duration::from_secs(10), "{via:?}: {validity:?}");
        instance.computation_renew(&computation).expect("renew");

        // The lock is lost before the store (an operator reset it): nothing is stored.
        server.raw().ok(&["DEL", &lock_key(&name)]);
        match instance.store(&computation, b"late", Duration::from_secs(60)) {
            Err(CallError::Lock(wit::Error::NotHeld)) => {}
            other => panic!("{via:?}: expected not-held, got {other:?}"),
        }
        assert!(
            !exists(server, &value_key(&name)),
            "{via:?}: a lost lock stored"
        );
        assert_eq!(
            instance
                .computation_validity(&computation)
                .expect("validity"),
            Duration::ZERO,
            "{via:?}: an ended computation still claims validity"
        );
        match instance.abandon(&computation) {
            Err(CallError::Lock(wit::Error::NotHeld)) => {}
            other => panic!("{via:?}: an ended computation gave up again: {other:?}"),
        }
        instance.drop_computation(computation).expect("drop");

        // Stored: the value is read back, and nobody computes.
        let Fetched::Computing(computation) = instance
            .get_or_lock(&client, &name, Duration::ZERO)
            .expect("get-or-lock")
        else {
            panic!("{via:?}: still missing");
        };
        instance
            .store(&computation, b"the value", Duration::from_secs(60))
            .expect("store");
        instance.drop_computation(computation).expect("drop");
        assert!(
            !exists(server, &lock_key(&name)),
            "{via:?}: the store kept the lock"
        );
        match instance.get_or_lock(&client, &name, Duration::ZERO) {
            Ok(Fetched::Value(value)) => assert_eq!(value, b"the value", "{via:?}"),
            other => panic!("{via:?}: expected the value, got {other:?}"),
        }

        // Dropped unfinished: no I/O in the destructor; given up at the client's next call
        // (the lock component's own queue), or in the background (served natively). The
        // lock's TTL outlasts every wait here, so only a give-up frees it.
        let long_lived = instance
            .open(&wit::Config {
                ttl_ms: Some(2 * LIMIT.as_millis() as u64),
                ..one()
            })
            .expect("open");
        let dropped = unique_name("component-compute-drop");
        let Fetched::Computing(computation) = instance
            .get_or_lock(&long_lived, &dropped, Duration::ZERO)
            .expect("get-or-lock")
        else {
            panic!("{via:?}: missing");
        };
        instance.drop_computation(computation).expect("drop");
        if !matches!(via, Via::Native) {
            assert!(
                exists(server, &lock_key(&dropped)),
                "{via:?}: the destructor sent the give-up itself"
            );
            let other = unique_name("component-compute-next");
            let lease = instance
                .try_acquire(&long_lived, &other)
                .expect("next call");
            assert!(
                !exists(server, &lock_key(&dropped)),
                "{via:?}: the client's next call did not give the dropped computation up"
            );
            instance.drop_lease(lease).expect("drop");
        }
        wait_for("the dropped computation given up", LIMIT, || {
            (!exists(server, &lock_key(&dropped))).then_some(())
        });
        assert!(!exists(server, &value_key(&dropped)), "{via:?}: stored");
        for client in [client, long_lived, redlock, fenced, fair, scriptless] {
            instance.drop_client(client).expect("drop client");
        }
    }
}

/// Conversations and lock machines share a client's connections: a get-or-lock right after
/// an acquire whose wait ran out (ending in a `BLPOP` on the holder's wake-up list) computes,
/// round after round, and never reads the acquire's replies as its own. Whether the acquire
/// left a reply owed (then the lock component reopens the connection first) depends on when
/// that reply lands; the connections opened are printed, not asserted.
#[test]
fn get_or_lock_after_an_acquire_that_gave_up_reads_only_its_own_replies() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let held = unique_name("compute-after-acquire-held");
    server.raw().ok(&[
        "SET",
        &lock_key(&held),
        "someone-elses-token",
        "PX",
        "600000",
    ]);
    let connections = || {
        let stats = server
            .raw()
            .ok(&["INFO", "stats"])
            .text()
            .unwrap_or_default();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    for via in crate::VIAS {
        let mut instance = via.instance(&adapter);
        let client = instance.open(&config(vec![server.url()])).expect("open");
        let before = connections();
        for round in 0..8 {
            match instance.acquire(&client, &held, Duration::from_millis(50)) {
                Err(CallError::Lock(wit::Error::NotAcquired(_))) => {}
                other => panic!("{via:?} round {round}: expected not-acquired, got {other:?}"),
            }
            let name = unique_name("compute-after-acquire");
            match instance.get_or_lock(&client, &name, Duration::ZERO) {
                Ok(Fetched::Computing(computation)) => {
                    instance.abandon(&computation).expect("abandon");
                    instance.drop_computation(computation).expect("drop");
                }
                other => panic!("{via:?} round {round}: expected to compute, got {other:?}"),
            }
        }
        // Not asserted (it depends on timing): how often a connection had to be reopened.
        eprintln!(
            "{via:?}: {} connections opened over 8 rounds",
            connections().saturating_sub(before)
        );
        instance.drop_client(client).expect("drop client");
    }
}
