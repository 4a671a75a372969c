//! A server that goes away or forgets: down when an acquire starts and back with the lock
//! busy, killed (SIGKILL) and restarted with and without an append-only file, and its script
//! cache flushed (`SCRIPT FLUSH`) under held locks.
//!
//! It shows what survives: with `appendonly yes` and `appendfsync always` the lock and the
//! fence counter do, and fences stay strictly increasing; without persistence nothing does —
//! the documented limit, shown as it is (two holders at once, fences starting over); a
//! flushed script cache costs one `EVAL` and nothing else.
//!
//! Each test starts its own `redis-server` on a free port; without it they fail
//! (`DISTLOCK_SKIP_REDIS=1` skips them).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use distlock_host::{Client, Error, Released};
use support::faults::{deadline, holder_token, is_not_held};
use support::proxy::Proxy;
use support::{RedisServer, blocking, bounded, command_calls, require_redis, unique_name, until};

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
        blocking(|| holder_token(&server, &name)).as_deref(),
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
        is_not_held(&released),
        "A's release must not free B's lock: {released:?}"
    );
    assert_eq!(
        blocking(|| holder_token(&server, &name)).as_deref(),
        Some(b_guard.token())
    );
    b_guard.release().await.expect("B releases");
}

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
