//! Pipelined release against real `redis-server` processes: the release is written and the
//! call returns; the reply is read and checked by the client's next operation on that
//! connection, or by `settle_releases`, and reported — released, not ours any more, or
//! unconfirmed — never hidden and never turned into "released".

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use distlock_host::{
    Client, ConfigError, Error, Guard, LockOptions, PipelinedReleases, ReleaseCheck, Released,
};
use support::proxy::{Dir, Proxy};
use support::{RedisServer, blocking, command_calls, lock_key, require_redis, unique_name, until};
use tokio::time::timeout;

/// How long settling may go on before the test calls it hung: far past the one reply
/// deadline (2 s) it waits out, so it says "it ended", not how fast.
const SETTLING_HANG: Duration = Duration::from_secs(30);

/// The ids of the server's connections from the library (named `distlock`); a connection
/// reopened shows up under a new id.
fn library_connections(server: &RedisServer) -> Vec<u64> {
    let list = server
        .raw()
        .ok(&["CLIENT", "LIST"])
        .text()
        .unwrap_or_default();
    list.lines()
        .filter(|line| line.split(' ').any(|kv| kv == "name=distlock"))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix("id="))?
                .parse()
                .ok()
        })
        .collect()
}

fn counts(released: u64, not_held: u64, unconfirmed: u64) -> PipelinedReleases {
    pending(0, released, not_held, unconfirmed)
}

fn pending(pending: u64, released: u64, not_held: u64, unconfirmed: u64) -> PipelinedReleases {
    let mut expected = PipelinedReleases::default();
    expected.pending = pending;
    expected.released = released;
    expected.not_held = not_held;
    expected.unconfirmed = unconfirmed;
    expected
}

/// A loop of try-acquire and pipelined release on one name, one client: every acquire gets
/// the lock at its first `SET NX` — so each release ran before the next acquire's `SET`, on
/// the same connection, which the acquire claims from the background reader — and every
/// release is confirmed, by the reader or by the operation after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_release_then_an_acquire_on_the_same_client_gets_the_lock() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("pipelined-loop");
    let connections_before = blocking(|| library_connections(&server));
    assert_eq!(connections_before.len(), 1, "{connections_before:?}");
    let stats_before = blocking(|| server.raw().ok(&["INFO", "commandstats"]).text().unwrap());
    const PAIRS: u64 = 50;
    for pair in 0..PAIRS {
        let guard = client
            .lock(&name)
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("acquire {pair}: the last release had not run: {e}"));
        guard.release_pipelined().await.expect("release sent");
        // Every earlier release confirmed; this one read in the background, or still owed.
        let so_far = client.pipelined_releases();
        assert_eq!(
            so_far,
            pending(so_far.pending, pair + 1 - so_far.pending, 0, 0),
            "pair {pair}"
        );
        assert!(so_far.pending <= 1, "pair {pair}: {so_far:?}");
    }
    client.settle_releases().await;
    assert_eq!(client.pipelined_releases(), counts(PAIRS, 0, 0));
    let key = lock_key(&name);
    assert_eq!(
        blocking(|| server.raw().ok(&["EXISTS", &key]).int()),
        Some(0),
        "the last release ran"
    );
    let stats = blocking(|| server.raw().ok(&["INFO", "commandstats"]).text().unwrap());
    let delta =
        |command: &str| command_calls(&stats, command) - command_calls(&stats_before, command);
    // One SET per acquire (none refused, none retried) and one release each, by source.
    assert_eq!(delta("set"), PAIRS);
    assert_eq!(delta("eval"), PAIRS);
    assert_eq!(delta("evalsha"), 0);
    // All of it over the one pooled connection: nothing was reopened.
    assert_eq!(
        blocking(|| library_connections(&server)),
        connections_before
    );
}

/// The next acquire does not wait for the owed release's reply: with the replies held back
/// in a proxy, its `SET` reaches the server — on the same connection, behind the release —
/// while the client has still not read the release's reply (one round trip per pair, not
/// two). That reply is then read by the acquire and reported: released; and in a second
/// round, where the key was taken by another token before the release ran, not ours — never
/// turned into "released".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_acquire_is_written_before_the_owed_reply_arrives() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let proxy = Proxy::start(server.port());
    let client = Client::connect([proxy.url()]).await.expect("connect");
    // Far beyond the replies' hold-up below: nothing here may time out.
    let options = LockOptions {
        request_timeout: distlock_core::Duration::from_secs(30),
        ..LockOptions::default()
    };
    let name = unique_name("pipelined-ahead");
    let key = lock_key(&name);
    let connections = blocking(|| library_connections(&server));
    assert_eq!(connections.len(), 1, "{connections:?}");
    let set_calls = || {
        let stats = server.raw().ok(&["INFO", "commandstats"]).text().unwrap();
        command_calls(&stats, "set")
    };

    // Releases `guard` pipelined, starts the next try-acquire of the name and returns it once
    // the server has counted its `SET` (the client may not have read the release's reply).
    #[allow(
        clippy::async_yields_async,
        reason = "the test checks the client's counts before it awaits the acquire"
    )]
    let release_then_next = |guard: Guard| {
        let lock = client.lock(&name).options(options);
        async move {
            let sets_before = blocking(set_calls);
            guard.release_pipelined().await.expect("release sent");
            let next = tokio::spawn(async move { lock.try_acquire().await });
            until(
                "the next acquire's SET on the server",
                Duration::from_secs(2),
                || blocking(set_calls) > sets_before,
            )
            .await;
            next
        }
    };

    let first = client
        .lock(&name)
        .options(options)
        .try_acquire()
        .await
        .expect("acquire");
    // From here every reply reaches the client late; requests go through at once.
    proxy.latency(Dir::Down, Duration::from_secs(3));
    let next = release_then_next(first).await;
    assert_eq!(
        client.pipelined_releases(),
        pending(1, 0, 0, 0),
        "the SET went out before the release's reply was read"
    );
    let second = next
        .await
        .expect("task")
        .expect("the name was free: the release ran first");
    assert_eq!(client.pipelined_releases(), counts(1, 0, 0));
    assert_eq!(
        blocking(|| server.raw().ok(&["GET", &key]).text()),
        Some(second.token().to_owned())
    );

    // The lease is lost before the release runs: the key now another token's.
    blocking(|| {
        let mut raw = server.raw();
        raw.ok(&["DEL", &key]);
        raw.ok(&["SET", &key, "another-owner-token-0123456789"]);
    });
    let next = release_then_next(second).await;
    assert_eq!(client.pipelined_releases(), pending(1, 1, 0, 0));
    let refused = next
        .await
        .expect("task")
        .expect_err("the other token holds the name");
    assert!(refused.is_not_acquired(), "{refused}");
    assert_eq!(client.pipelined_releases(), counts(1, 1, 0));
    assert_eq!(
        blocking(|| server.raw().ok(&["GET", &key]).text()),
        Some("another-owner-token-0123456789".into()),
        "the other token's key stands"
    );
    assert_eq!(
        blocking(|| library_connections(&server)),
        connections,
        "all of it on the one connection"
    );
}

/// A second client waiting on the name is woken by the pipelined release's signal (well
/// before the TTL could free the name) and gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_waiting_on_the_name_is_woken() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let holder = Client::connect([server.url()])
        .await
        .expect("connect holder");
    let waiter = Client::connect([server.url()])
        .await
        .expect("connect waiter");
    let name = unique_name("pipelined-wake");
    let guard = holder
        .lock(&name)
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .expect("holder acquires");
    let waiting = {
        let name = name.clone();
        tokio::spawn(async move {
            waiter
                .lock(&name)
                .wait(Duration::from_secs(30))
                .acquire()
                .await
        })
    };
    support::until_blocked(&server, 1).await;
    guard.release_pipelined().await.expect("release sent");
    let woken = timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter is woken long before the 60 s TTL")
        .expect("task");
    let second = woken.expect("the waiter gets the lock");
    assert!(second.is_held());
    holder.settle_releases().await;
    assert_eq!(holder.pipelined_releases(), counts(1, 0, 0));
    assert!(matches!(second.release().await, Ok(Released::Free)));
}

/// The lease is lost meanwhile — its key reset by another client, then the name taken by
/// another token — and the pipelined release is reported as not ours: by the time the
/// client's next acquire returns (its machine reads the reply first, unless the background
/// reader already had), to the callback and in the counts. The other token's key is left
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_of_a_lease_lost_meanwhile_is_reported() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = Arc::clone(&seen);
        client.on_release_check(move |check| seen.lock().unwrap().push(check.clone()));
    }
    let name = unique_name("pipelined-lost");
    let key = lock_key(&name);
    let guard = client.lock(&name).acquire().await.expect("acquire");
    blocking(|| {
        let mut raw = server.raw();
        raw.ok(&["DEL", &key]);
        raw.ok(&["SET", &key, "another-owner-token-0123456789"]);
    });
    guard.release_pipelined().await.expect("release sent");
    // The next operation on the client (another name) reads the owed reply first.
    let other = client
        .lock(unique_name("pipelined-other"))
        .try_acquire()
        .await
        .expect("the other name is free");
    assert_eq!(client.pipelined_releases(), counts(0, 1, 0));
    assert_eq!(*seen.lock().unwrap(), vec![ReleaseCheck::NotHeld]);
    assert_eq!(
        blocking(|| server.raw().ok(&["GET", &key]).text()),
        Some("another-owner-token-0123456789".into()),
        "the other token's key stands"
    );
    other.release().await.expect("release");
}

/// Every release check the client reports, in order, as they come.
fn release_checks(client: &Client) -> tokio::sync::mpsc::UnboundedReceiver<ReleaseCheck> {
    let (seen, checks) = tokio::sync::mpsc::unbounded_channel();
    client.on_release_check(move |check| {
        let _ = seen.send(check.clone());
    });
    checks
}

/// A caller pipelines a release and then does nothing: the reply is read in the background
/// all the same and reported to the callback — released, and in a second round, after the
/// key was reset and taken by another token, not ours. The connection then serves the next
/// acquire: nothing is reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connections_owed_reply_is_read_on_its_own() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    let mut checks = release_checks(&client);
    let connections_before = blocking(|| library_connections(&server));
    let name = unique_name("pipelined-idle");
    let key = lock_key(&name);
    let guard = client.lock(&name).acquire().await.expect("acquire");
    guard.release_pipelined().await.expect("release sent");
    let check = timeout(Duration::from_secs(10), checks.recv())
        .await
        .expect("reported with no other operation on the client")
        .expect("the callback is kept");
    assert_eq!(check, ReleaseCheck::Released(Released::Free));
    assert_eq!(client.pipelined_releases(), counts(1, 0, 0));
    assert_eq!(
        blocking(|| server.raw().ok(&["EXISTS", &key]).int()),
        Some(0)
    );

    let guard = client.lock(&name).acquire().await.expect("acquire again");
    blocking(|| {
        let mut raw = server.raw();
        raw.ok(&["DEL", &key]);
        raw.ok(&["SET", &key, "another-owner-token-0123456789"]);
    });
    guard.release_pipelined().await.expect("release sent");
    let check = timeout(Duration::from_secs(10), checks.recv())
        .await
        .expect("reported with no other operation on the client")
        .expect("the callback is kept");
    assert_eq!(check, ReleaseCheck::NotHeld);
    assert_eq!(client.pipelined_releases(), counts(1, 1, 0));
    assert_eq!(
        blocking(|| server.raw().ok(&["GET", &key]).text()),
        Some("another-owner-token-0123456789".into()),
        "the other token's key stands"
    );
    let other = client
        .lock(unique_name("pipelined-idle-next"))
        .try_acquire()
        .await
        .expect("the next acquire");
    other.release().await.expect("release");
    assert_eq!(
        blocking(|| library_connections(&server)),
        connections_before,
        "the read connection went back to the pool"
    );
}

/// In a loop of acquire and pipelined release, the client's background reader is not woken
/// per release: the release registers it on the connection instead. When the loop stops, the
/// last reply is still read as soon as it arrives — long before its deadline (30 s here),
/// when the reader's timer would run it — and reported with no other operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_reply_of_a_loop_is_read_as_it_arrives() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    let mut checks = release_checks(&client);
    let options = LockOptions {
        request_timeout: distlock_core::Duration::from_secs(30),
        ..LockOptions::default()
    };
    let name = unique_name("pipelined-last");
    const PAIRS: u64 = 20;
    for pair in 0..PAIRS {
        let guard = client
            .lock(&name)
            .options(options)
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("acquire {pair}: {e}"));
        guard.release_pipelined().await.expect("release sent");
    }
    for pair in 0..PAIRS {
        let check = timeout(Duration::from_secs(10), checks.recv())
            .await
            .unwrap_or_else(|_| panic!("release {pair} not reported within 10 s"))
            .expect("the callback is kept");
        assert_eq!(
            check,
            ReleaseCheck::Released(Released::Free),
            "release {pair}"
        );
    }
    assert_eq!(client.pipelined_releases(), counts(PAIRS, 0, 0));
    assert_eq!(
        blocking(|| server.raw().ok(&["EXISTS", &lock_key(&name)]).int()),
        Some(0),
        "the last release ran"
    );
}

/// The server stops answering with the reply owed: the release is reported unconfirmed once
/// its reply deadline passes, not released; and a connection that dies with the reply owed
/// is reported unconfirmed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_reply_is_unconfirmed_not_released() {
    require_redis!();
    let mut server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.expect("connect");
    // Long enough for the acquire on a loaded machine: the release's reply deadline is this
    // too, so settling waits it out once (a bound below, not a measure).
    let options = LockOptions {
        request_timeout: distlock_core::Duration::from_secs(2),
        ..LockOptions::default()
    };
    let name = unique_name("pipelined-frozen");
    let guard = client
        .lock(&name)
        .options(options)
        .acquire()
        .await
        .expect("acquire");
    blocking(|| server.pause());
    guard
        .release_pipelined()
        .await
        .expect("written to the socket");
    assert_eq!(client.pipelined_releases().pending, 1);
    // Past the 2 s reply deadline: unconfirmed, and the connection is not reused.
    timeout(SETTLING_HANG, client.settle_releases())
        .await
        .expect("settling ends at the reply's deadline");
    assert_eq!(client.pipelined_releases(), counts(0, 0, 1));
    blocking(|| server.resume());

    // Again, and the server dies before answering: the connection's end with the reply
    // owed is reported unconfirmed.
    let guard = client
        .lock(unique_name("pipelined-dies"))
        .options(options)
        .acquire()
        .await
        .expect("acquire");
    blocking(|| server.pause());
    guard
        .release_pipelined()
        .await
        .expect("written to the socket");
    blocking(|| server.stop());
    timeout(SETTLING_HANG, client.settle_releases())
        .await
        .expect("settling ends with the connection");
    assert_eq!(client.pipelined_releases(), counts(0, 0, 2));
}

/// Redlock is refused with a typed error before anything is sent; the guard, dropped, is
/// released in the background as any dropped guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_is_refused_and_the_guard_released_on_drop() {
    require_redis!();
    let servers: Vec<RedisServer> = (0..3).map(|_| blocking(RedisServer::start)).collect();
    let client = Client::connect(servers.iter().map(RedisServer::url))
        .await
        .expect("connect");
    let name = unique_name("pipelined-redlock");
    let guard = client.lock(&name).acquire().await.expect("acquire");
    let key = lock_key(&name);
    // The acquire returns at a quorum; a slower node's `SET` still on its way could run after
    // a release sent on another connection and leave the key to its TTL.
    until("every node holds the key", Duration::from_secs(5), || {
        servers
            .iter()
            .all(|s| blocking(|| s.raw().ok(&["EXISTS", &key]).int()) == Some(1))
    })
    .await;
    let refused = guard.release_pipelined().await;
    assert!(
        matches!(
            refused,
            Err(Error::Config(ConfigError::PipelinedUnsupported))
        ),
        "{refused:?}"
    );
    until("every node's key released", Duration::from_secs(5), || {
        servers
            .iter()
            .all(|s| blocking(|| s.raw().ok(&["EXISTS", &key]).int()) == Some(0))
    })
    .await;
    assert_eq!(client.pipelined_releases(), PipelinedReleases::default());
}

/// The blocking API releases pipelined the same way.
#[test]
fn the_blocking_api_releases_pipelined_too() {
    require_redis!();
    let server = RedisServer::start();
    let client = distlock_host::blocking::Client::connect([server.url()]).expect("connect");
    let name = unique_name("pipelined-blocking");
    for pair in 0..3 {
        let guard = client
            .lock(&name)
            .try_acquire()
            .unwrap_or_else(|e| panic!("acquire {pair}: the last release had not run: {e}"));
        guard.release_pipelined().expect("release sent");
    }
    client.settle_releases();
    assert_eq!(client.pipelined_releases(), counts(3, 0, 0));
}

/// The embedded in-process store takes pipelined releases like a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_takes_pipelined_releases() {
    let client = Client::embedded();
    let name = unique_name("pipelined-embedded");
    for pair in 0..3 {
        let guard = client
            .lock(&name)
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("acquire {pair}: the last release had not run: {e}"));
        guard.release_pipelined().await.expect("release sent");
    }
    client.settle_releases().await;
    assert_eq!(client.pipelined_releases(), counts(3, 0, 0));
}
