//! Locks on a real Redis Cluster (three primaries from `redis-server`, joined by
//! `redis-cli --cluster create`): operations routed through a seed that does not own the
//! lock's slot, locks spread over every primary, a slot migrated while workers contend, a
//! primary killed, and the `distlock` command with a `redis+cluster://` URL (`distlock run`
//! on a cluster is in `tests/run.rs`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use distlock_host::{Client, ConnectOptions, Durability, Error, KeyLayout};
use support::cluster::Cluster;
use support::failover::{AFTER, BEFORE, WORKERS, lock_run};
use support::holders::Section;
use support::{blocking, bounded, distlock, require_redis, run_bounded, unique_name};

/// The request timeout the tests run with (the default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The lock key of `name` under the default layout.
fn lock_key(name: &str) -> String {
    format!("distlock:{{{name}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acquire_extend_release_through_a_seed_that_does_not_own_the_slot() {
    require_redis!();
    let cluster = blocking(|| Cluster::start(3));
    let name = cluster.name_on(2, "routed");
    // The only seed given owns nothing of this lock.
    let client = Client::connect([cluster.url(&[0])]).await.expect("connect");
    assert_eq!(client.nodes(), 1, "a cluster is one node of the lock");
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .fenced(true)
        .acquire()
        .await
        .expect("acquire");
    assert_eq!(guard.fence(), Some(1));
    let on_owner = |key: &str| cluster.nodes[2].raw().ok(&["GET", key]).text();
    assert_eq!(
        on_owner(&lock_key(&name)).as_deref(),
        Some(guard.token()),
        "the lock key lives on the slot's owner"
    );
    guard.extend(Duration::from_secs(60)).await.expect("extend");
    let ttl = cluster.nodes[2]
        .raw()
        .ok(&["PTTL", &lock_key(&name)])
        .int()
        .expect("PTTL");
    assert!(ttl > 30_000, "the extend reached the owner: PTTL {ttl}");
    guard.release().await.expect("release");
    assert_eq!(on_owner(&lock_key(&name)), None, "released on the owner");
    // Another client now gets it, with the next fence.
    let again = client
        .lock(&name)
        .fenced(true)
        .acquire()
        .await
        .expect("acquire again");
    assert_eq!(again.fence(), Some(2));
    again.release().await.expect("release again");
}

/// The client's connections to a cluster node (named `distlock` by the handshake).
fn client_connections(cluster: &Cluster, node: usize) -> usize {
    let list = cluster.nodes[node]
        .raw()
        .ok(&["CLIENT", "LIST", "TYPE", "normal"])
        .text()
        .unwrap_or_default();
    list.lines()
        .filter(|l| l.contains(" name=distlock "))
        .count()
}

/// A pooled cluster connection whose primaries' connections the servers closed while it sat
/// idle (`CLIENT KILL`, as a server's idle `timeout` or a restart would) is noticed when it
/// is taken from the pool, before a command is written on it: a try-acquire, which has no
/// second attempt, succeeds at once every time — with the owner's connection closed, the
/// seed's (which does not own the slot), and both.
///
/// What the probe can know is what the client's runtime has seen: the kernel queues the
/// close on the client's socket before `CLIENT KILL` answers, and the runtime records it
/// when its reactor next runs. So the test runs the client on a current-thread runtime and
/// kills from a blocking task it awaits: the runtime waits in its reactor meanwhile and reads
/// the close before the task's completion wakes the test (on a multi-threaded runtime the
/// test went on while the reactor's thread had not run yet, and a loaded CI saw a closed
/// connection taken as live).
#[tokio::test(flavor = "current_thread")]
async fn connections_the_servers_closed_while_pooled_are_noticed_before_a_command_is_written() {
    require_redis!();
    let cluster = std::sync::Arc::new(Cluster::start(3));
    let name = cluster.name_on(2, "closed-idle");
    let client = Client::connect([cluster.url(&[0])]).await.expect("connect");
    let take = async || {
        let guard = client.lock(&name).try_acquire().await;
        let guard = guard.unwrap_or_else(|e| panic!("try-acquire failed: {e:?} ({e})"));
        guard.release().await.expect("release");
    };
    for killed in [&[2][..], &[0], &[0, 2], &[2], &[0]] {
        take().await;
        // Pooled: one stream holding the seed's connection and the owner's.
        let servers = std::sync::Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            for node in [0, 2] {
                assert_eq!(client_connections(&servers, node), 1, "node {node}");
            }
            for &node in killed {
                servers.nodes[node]
                    .raw()
                    .ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
                assert_eq!(client_connections(&servers, node), 0, "node {node} killed");
            }
        })
        .await
        .expect("the kill");
        let (_, took) = bounded(
            "a try-acquire after the servers closed pooled connections",
            REQUEST_TIMEOUT * 3,
            take(),
        )
        .await;
        eprintln!(
            "nodes {killed:?} closed the pooled connections: try-acquire and release {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_over_many_names_land_on_every_primary() {
    require_redis!();
    let cluster = blocking(|| Cluster::start(3));
    let client = Client::connect([cluster.url(&[1, 0])])
        .await
        .expect("connect");
    let names: Vec<String> = (0..48).map(|_| unique_name("spread")).collect();
    let mut guards = Vec::new();
    for name in &names {
        guards.push(
            client
                .lock(name)
                .ttl(Duration::from_secs(30))
                .acquire()
                .await
                .expect("acquire"),
        );
    }
    let per_node: Vec<i64> = (0..3)
        .map(|i| {
            cluster.nodes[i]
                .raw()
                .ok(&["DBSIZE"])
                .int()
                .expect("DBSIZE")
        })
        .collect();
    assert!(
        per_node.iter().all(|&keys| keys > 0),
        "every primary holds locks: {per_node:?}"
    );
    for (name, guard) in names.iter().zip(&guards) {
        let owner = cluster.owner(cluster.slot(name), 0);
        let held = cluster.nodes[owner]
            .raw()
            .ok(&["GET", &lock_key(name)])
            .text();
        assert_eq!(held.as_deref(), Some(guard.token()), "{name} on its owner");
    }
    for guard in guards {
        guard.release().await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_during_a_lock_run_lets_no_two_holders_in() {
    require_redis!();
    let cluster = Arc::new(blocking(|| Cluster::start(3)));
    let name = cluster.name_on(0, "migrate");
    let slot = cluster.slot(&name);
    let section = Arc::new(Section::default());
    let moved = Arc::new(AtomicBool::new(false));
    const WORKERS: usize = 4;
    // Rounds each worker runs after the slot moved: every client follows the move.
    const AFTER: u64 = 10;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (url, name, section) = (cluster.url(&[1]), name.clone(), Arc::clone(&section));
        let moved = Arc::clone(&moved);
        workers.push(tokio::spawn(async move {
            let client = Client::connect([url]).await.expect("connect");
            let mut after = 0;
            while after < AFTER {
                let since_moved = moved.load(Ordering::SeqCst);
                let acquired = client
                    .lock(&name)
                    .ttl(Duration::from_secs(10))
                    .fenced(true)
                    .wait(Duration::from_secs(20))
                    .acquire()
                    .await;
                // A round may fail while the slot moves (a typed error); it is tried again.
                let Ok(guard) = acquired else { continue };
                section.enter();
                tokio::task::yield_now().await;
                section.leave();
                guard.release().await.expect("release");
                if since_moved {
                    after += 1;
                }
            }
        }));
    }
    // Move the slot while they run: once some rounds are in.
    support::until(
        "some rounds before the migration",
        Duration::from_secs(20),
        || section.entries() >= 10,
    )
    .await;
    blocking(|| {
        cluster.begin_migration(slot, 0, 2);
        while cluster.migrate_keys(slot, 0, 2) > 0 {}
        cluster.end_migration(slot, 2);
    });
    let before = section.entries();
    moved.store(true, Ordering::SeqCst);
    for worker in workers {
        bounded("a worker's rounds", Duration::from_secs(60), worker)
            .await
            .0
            .expect("worker");
    }
    assert_eq!(section.overlaps(), 0, "two holders at once");
    assert!(section.entries() >= before + WORKERS as u64 * AFTER);
    // The clients were sent on by the old owner, and followed.
    let errors = cluster.nodes[0].raw().ok(&["INFO", "errorstats"]).text();
    let moved_replies = support::info_field(&errors.unwrap_or_default(), "errorstat_MOVED");
    assert!(moved_replies.is_some(), "the old owner answered MOVED");
    assert_eq!(cluster.owner(slot, 1), 2, "the slot moved");
    // The new owner holds what the lock left (its fence), the old one nothing of it.
    let fence = format!("{}:fence", lock_key(&name));
    assert_eq!(
        cluster.nodes[2].raw().ok(&["EXISTS", &fence]).int(),
        Some(1)
    );
    assert_eq!(
        cluster.nodes[0]
            .raw()
            .command(&["EXISTS", &fence])
            .ok()
            .and_then(|r| r.int()),
        None,
        "the old owner redirects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_fails_its_slots_within_the_request_timeout_and_others_keep_working() {
    require_redis!();
    let mut cluster = blocking(|| Cluster::start(3));
    let dead = cluster.name_on(2, "dead");
    let alive = cluster.name_on(1, "alive");
    let options = ConnectOptions {
        ready_timeout: REQUEST_TIMEOUT,
        ..ConnectOptions::default()
    };
    let client = Client::connect_with([cluster.url(&[0, 1])], options, KeyLayout::default())
        .await
        .expect("connect");
    blocking(|| cluster.nodes[2].stop());
    let (result, took) = bounded(
        "an acquire on the killed primary's slot",
        Duration::from_secs(5),
        client.lock(&dead).acquire(),
    )
    .await;
    let err = result.expect_err("the killed primary's slot cannot be locked");
    assert!(
        matches!(err, Error::Lock(_) | Error::Connect { .. }),
        "a typed error: {err:?}"
    );
    assert!(
        took <= REQUEST_TIMEOUT * 2,
        "failed within the request timeout's bound: {took:?}"
    );
    // Slots of the primaries still running keep working.
    let guard = bounded(
        "an acquire on a live primary's slot",
        Duration::from_secs(5),
        client.lock(&alive).acquire(),
    )
    .await
    .0
    .expect("a live slot is still served");
    guard.release().await.expect("release");
}

/// One replica, waited for at most a second.
fn one_replica() -> Durability {
    Durability::new(1, distlock_core::Duration::from_millis(1_000)).expect("durability")
}

/// Issue #15's failover run on a cluster with a replica per primary: four workers contend on
/// a lock whose slot one primary owns; that primary is SIGKILLed, the cluster promotes its
/// replica, and the run goes on through the new primary (the clients read the map again
/// through the seeds still answering). With durable leases, every reported lease was on the
/// replica before it was reported: no overlap, none lost. Without, the losses are counted
/// and printed (asynchronous replication: a loss is possible, not certain).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_fails_over_to_its_replica_during_a_lock_run() {
    require_redis!();
    let cluster = Arc::new(std::sync::Mutex::new(blocking(|| {
        Cluster::start_with_replicas(3)
    })));
    let (url, durable_name, plain_name) = {
        let cluster = cluster.lock().expect("cluster");
        // The primaries as seeds, the one killed first among them: connecting skips it.
        (
            cluster.url(&[0, 1, 2]),
            cluster.name_on(0, "failover-durable"),
            cluster.name_on(0, "failover-plain"),
        )
    };
    let slot = blocking(|| cluster.lock().expect("cluster").slot(&durable_name));

    // A durable lease waits on the replica of the primary that holds it: with that replica
    // frozen it is not confirmed, whatever the other primaries' replicas do.
    let client = Client::connect([url.clone()])
        .await
        .expect("connect")
        .durable(one_replica())
        .expect("a cluster is one node");
    let confirmed = client.lock(&durable_name).acquire().await.expect("durable");
    let replica = blocking(|| cluster.lock().expect("cluster").replica_of(0));
    let on_replica = blocking(|| {
        let cluster = cluster.lock().expect("cluster");
        let mut raw = cluster.nodes[replica].raw();
        raw.ok(&["READONLY"]);
        raw.ok(&["GET", &lock_key(&durable_name)]).text()
    });
    assert_eq!(
        on_replica.as_deref(),
        Some(confirmed.token()),
        "reported only once the replica held it"
    );
    confirmed.release().await.expect("release");
    blocking(|| cluster.lock().expect("cluster").nodes[replica].pause());
    let refused = client.lock(&durable_name).acquire().await;
    blocking(|| {
        let cluster = cluster.lock().expect("cluster");
        cluster.nodes[replica].resume();
        cluster.until_replicated();
    });
    assert!(
        matches!(refused, Err(Error::NotDurable { .. })),
        "{refused:?}"
    );

    let killing = Arc::clone(&cluster);
    let durable = lock_run(url.clone(), durable_name, Some(one_replica()), move || {
        let mut cluster = killing.lock().expect("cluster");
        let owner = cluster.owner(slot, 1);
        let promoted = cluster.kill_and_replace(owner);
        assert_eq!(
            cluster.owner(slot, promoted),
            promoted,
            "the replica took over"
        );
    })
    .await;
    println!("cluster failover, durable leases: {durable:?}");
    assert_eq!(durable.overlaps, 0, "two holders at once: {durable:?}");
    assert_eq!(durable.lost, 0, "a durable lease lost: {durable:?}");

    // The same again without durability, killing the primary that now owns the slot.
    let killing = Arc::clone(&cluster);
    let slot = blocking(|| cluster.lock().expect("cluster").slot(&plain_name));
    let plain = lock_run(url, plain_name, None, move || {
        let mut cluster = killing.lock().expect("cluster");
        let owner = cluster.owner(slot, 1);
        cluster.kill_and_replace(owner);
    })
    .await;
    println!(
        "cluster failover, plain leases: {} leases, {} lost across the failover, {} operations failed (typed) while the primary changed",
        plain.leases,
        plain.lost + plain.overlaps,
        plain.failed
    );
    assert!(plain.leases >= BEFORE + WORKERS as u64 * AFTER, "{plain:?}");
}

#[test]
fn python_redis_lock_names_without_a_tag_are_refused_on_a_cluster() {
    require_redis!();
    let cluster = Cluster::start(3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = Client::connect_with(
            [cluster.url(&[0])],
            ConnectOptions::default(),
            KeyLayout::python_redis_lock(),
        )
        .await
        .expect("connect");
        let err = client.lock("jobs").acquire().await.expect_err("refused");
        assert!(matches!(err, Error::SpansSlots(_)), "{err:?}");
        // Its own hash tag keeps every key in one slot.
        let guard = client.lock("{jobs}").acquire().await.expect("tagged name");
        guard.release().await.expect("release");
    });
}

#[test]
fn the_command_acquires_reports_and_releases_on_a_cluster() {
    require_redis!();
    let cluster = Cluster::start(3);
    let url = cluster.url(&[0, 1, 2]);
    let name = unique_name("cli");
    let run = |args: &[&str]| {
        run_bounded(distlock(&url, args), Duration::from_secs(20)).expect("run distlock")
    };
    let acquired = run(&["acquire", "--name", &name, "--ttl", "30s", "--json"]);
    assert_eq!(
        acquired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&acquired.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&acquired.stdout).expect("JSON");
    let token = value["token"].as_str().expect("token").to_owned();
    let status = run(&["status", "--name", &name]);
    assert_eq!(status.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&token),
        "status names the holder: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    let released = run(&["release", "--name", &name, "--token", &token]);
    assert_eq!(
        released.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&released.stderr)
    );
    let owner = cluster.owner(cluster.slot(&name), 0);
    assert_eq!(
        cluster.nodes[owner]
            .raw()
            .ok(&["EXISTS", &lock_key(&name)])
            .int(),
        Some(0)
    );
    // A database other than 0 is a usage error before anything is sent.
    let bad = run_bounded(
        distlock(&format!("{url}/2"), &["status", "--name", &name]),
        Duration::from_secs(20),
    )
    .expect("run distlock");
    assert_eq!(bad.status.code(), Some(64));
}

/// `reset --all` walks every primary of the map: a dry run lists the locks on all of them,
/// the reset removes them all (fencing counters stay), and a primary that cannot be walked
/// fails the whole reset, typed (exit 69), with nothing deleted anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_all_walks_every_primary_and_a_dead_one_fails_it_whole() {
    require_redis!();
    let mut cluster = blocking(|| Cluster::start(3));
    let url = cluster.url(&[0, 1]);
    let client = Client::connect([url.clone()]).await.expect("connect");
    let mut names: Vec<String> = (0..3)
        .flat_map(|node| [cluster.name_on(node, "walk"), cluster.name_on(node, "walk")])
        .collect();
    names.sort();
    for name in &names {
        let guard = client
            .lock(name)
            .ttl(Duration::from_secs(60))
            .fenced(true)
            .acquire()
            .await
            .expect("acquire");
        std::mem::forget(guard);
    }
    let mut keys: Vec<String> = names.iter().map(|n| lock_key(n)).collect();
    keys.sort();
    let run = |args: &[&str]| {
        run_bounded(distlock(&url, args), Duration::from_secs(30)).expect("run distlock")
    };

    // The API's dry run and the command's list every lock, on every primary.
    let report = client.reset_all_report(true).await.expect("dry run");
    assert_eq!(report.keys(), keys, "{}", report.describe());
    let listed = run(&["reset", "--all", "--dry-run"]);
    assert_eq!(listed.status.code(), Some(0), "{}", support::show(&listed));
    assert_eq!(support::stdout(&listed), format!("{}\n", keys.join("\n")));
    let held = |cluster: &Cluster, name: &str| {
        let owner = cluster.owner(cluster.slot(name), 0);
        cluster.nodes[owner]
            .raw()
            .ok(&["EXISTS", &lock_key(name)])
            .int()
    };
    assert!(
        names.iter().all(|n| held(&cluster, n) == Some(1)),
        "a dry run deletes nothing"
    );

    let reset = run(&["reset", "--all", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", support::show(&reset));
    for name in &names {
        assert_eq!(held(&cluster, name), Some(0), "{name} reset");
        let owner = cluster.owner(cluster.slot(name), 0);
        let fence = format!("{}:fence", lock_key(name));
        assert_eq!(
            cluster.nodes[owner].raw().ok(&["EXISTS", &fence]).int(),
            Some(1),
            "{name}'s fencing counter stays"
        );
    }
    assert_eq!(client.reset_all().await.expect("nothing left"), 0);

    // A primary that cannot be walked: typed, and the locks the others hold stay.
    let kept = cluster.name_on(0, "kept");
    std::mem::forget(
        client
            .lock(&kept)
            .ttl(Duration::from_secs(60))
            .acquire()
            .await
            .expect("acquire"),
    );
    blocking(|| cluster.nodes[2].stop());
    let err = client
        .reset_all()
        .await
        .expect_err("a primary was not read");
    assert!(
        matches!(
            &err,
            Error::ClusterWalk {
                why: distlock_core::ClusterWalkError::Unread { primary, .. },
                ..
            } if primary.port() == cluster.nodes[2].port()
        ),
        "the dead primary named: {err:?}"
    );
    let failed = run(&["reset", "--all", "--yes"]);
    assert_eq!(failed.status.code(), Some(69), "{}", support::show(&failed));
    assert!(
        support::stderr(&failed).contains("cannot walk the cluster"),
        "{}",
        support::show(&failed)
    );
    assert_eq!(held(&cluster, &kept), Some(1), "nothing deleted");
}

/// `reset --all` over a Redlock of a cluster and a plain server: the cluster's primaries are
/// all walked and the plain node too, so a dry run lists every lock on each node (those of
/// the Redlock, one only on the cluster, one only on the plain node) and deletes nothing; the
/// reset removes them all on both nodes (fencing counters stay); and a primary that cannot
/// be walked fails the whole reset, typed (exit 69), with nothing deleted on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_all_over_a_redlock_walks_the_cluster_and_the_plain_node() {
    require_redis!();
    let mut cluster = blocking(|| Cluster::start(3));
    let plain = blocking(support::RedisServer::start);
    let cluster_url = cluster.url(&[0, 1]);
    let both = Client::connect([cluster_url.clone(), plain.url()])
        .await
        .expect("connect");
    let hold = async |client: &Client, name: &str| {
        let guard = client
            .lock(name)
            .ttl(Duration::from_secs(60))
            .fenced(true)
            .acquire()
            .await
            .expect("acquire");
        std::mem::forget(guard);
    };
    // A Redlock lock on each primary's slots, and one lock on each node alone.
    let redlock: Vec<String> = (0..3).map(|node| cluster.name_on(node, "rl")).collect();
    for name in &redlock {
        hold(&both, name).await;
    }
    let cluster_only = cluster.name_on(1, "cl");
    let plain_only = unique_name("pl");
    let on_cluster = Client::connect([cluster_url.clone()])
        .await
        .expect("connect");
    hold(&on_cluster, &cluster_only).await;
    let on_plain = Client::connect([plain.url()]).await.expect("connect");
    hold(&on_plain, &plain_only).await;
    let sorted = |names: Vec<&String>| {
        let mut keys: Vec<String> = names.into_iter().map(|n| lock_key(n)).collect();
        keys.sort();
        keys
    };
    let cluster_keys = sorted(redlock.iter().chain([&cluster_only]).collect());
    let plain_keys = sorted(redlock.iter().chain([&plain_only]).collect());
    let all_keys = sorted(redlock.iter().chain([&cluster_only, &plain_only]).collect());
    let on_owner = |cluster: &Cluster, key: &str| {
        let owner = cluster.owner(cluster.slot(key), 0);
        cluster.nodes[owner].raw().ok(&["EXISTS", key]).int()
    };
    let on_plain_node = |key: &str| plain.raw().ok(&["EXISTS", key]).int();
    let urls = format!("{cluster_url},{}", plain.url());
    let run = |args: &[&str]| {
        run_bounded(distlock(&urls, args), Duration::from_secs(30)).expect("run distlock")
    };

    // The dry run: each node's own locks, in node order; nothing deleted.
    let report = both.reset_all_report(true).await.expect("dry run");
    assert_eq!(report.nodes.len(), 2, "{}", report.describe());
    let listed = |node: usize| {
        let mut keys = report.nodes[node]
            .outcome
            .as_ref()
            .expect("walked")
            .deleted
            .clone();
        keys.sort();
        keys
    };
    assert_eq!(listed(0), cluster_keys, "{}", report.describe());
    assert_eq!(listed(1), plain_keys, "{}", report.describe());
    assert_eq!(report.keys(), all_keys);
    let dry = run(&["reset", "--all", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", support::show(&dry));
    assert_eq!(support::stdout(&dry), format!("{}\n", all_keys.join("\n")));
    for key in &cluster_keys {
        assert_eq!(
            on_owner(&cluster, key),
            Some(1),
            "{key}: a dry run deletes nothing"
        );
    }
    for key in &plain_keys {
        assert_eq!(
            on_plain_node(key),
            Some(1),
            "{key}: a dry run deletes nothing"
        );
    }

    // The reset: every lock gone on both nodes, the fencing counters kept.
    let reset = run(&["reset", "--all", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", support::show(&reset));
    for key in &cluster_keys {
        assert_eq!(
            on_owner(&cluster, key),
            Some(0),
            "{key} reset on the cluster"
        );
        let fence = format!("{key}:fence");
        assert_eq!(on_owner(&cluster, &fence), Some(1), "{fence} stays");
    }
    for key in &plain_keys {
        assert_eq!(on_plain_node(key), Some(0), "{key} reset on the plain node");
        let fence = format!("{key}:fence");
        assert_eq!(on_plain_node(&fence), Some(1), "{fence} stays");
    }
    assert_eq!(both.reset_all().await.expect("nothing left"), 0);

    // A primary that cannot be walked: typed, and nothing deleted on either node.
    let kept = cluster.name_on(0, "kept");
    hold(&both, &kept).await;
    let dead = cluster.nodes[2].port();
    blocking(|| cluster.nodes[2].stop());
    let err = both.reset_all().await.expect_err("a primary was not read");
    assert!(
        matches!(
            &err,
            Error::ClusterWalk {
                why: distlock_core::ClusterWalkError::Unread { primary, .. },
                ..
            } if primary.port() == dead
        ),
        "the dead primary named: {err:?}"
    );
    let failed = run(&["reset", "--all", "--yes"]);
    assert_eq!(failed.status.code(), Some(69), "{}", support::show(&failed));
    assert!(
        support::stderr(&failed).contains("cannot walk the cluster"),
        "{}",
        support::show(&failed)
    );
    assert_eq!(
        on_owner(&cluster, &lock_key(&kept)),
        Some(1),
        "kept on the cluster"
    );
    assert_eq!(
        on_plain_node(&lock_key(&kept)),
        Some(1),
        "kept on the plain node"
    );
}

/// Bad cluster URLs are usage errors (64) that name what is wrong, and nothing is sent: the
/// seed given (a real server) sees no connection.
#[test]
fn bad_cluster_urls_are_usage_errors_before_anything_is_sent() {
    require_redis!();
    let server = support::RedisServer::start();
    let port = server.port();
    let before = server.connections_received();
    for (url, says) in [
        ("redis+cluster://".to_owned(), "no seed nodes"),
        (
            format!("redis+cluster://127.0.0.1:{port},,b:1"),
            "empty host",
        ),
        (
            format!("redis+cluster://127.0.0.1:{port},b:99999"),
            "not a port",
        ),
        (
            format!("redis+cluster://127.0.0.1:{port}/3"),
            "only database 0",
        ),
        (
            format!("redis+cluster://127.0.0.1:{port}?addr=b:1"),
            "unknown query parameter 'addr'",
        ),
        (
            format!("redis+cluster://u:hunter2@127.0.0.1:{port}/db"),
            "not a database number",
        ),
    ] {
        let out = run_bounded(
            distlock(&url, &["status", "--name", "x"]),
            Duration::from_secs(20),
        )
        .expect("run distlock");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
    // One cluster (or one of its nodes) given twice would vote twice.
    for urls in [
        vec![
            format!("redis+cluster://a:1,127.0.0.1:{port}"),
            format!("redis+cluster://127.0.0.1:{port}"),
        ],
        vec![
            format!("redis+cluster://a:1,127.0.0.1:{port}"),
            format!("redis://127.0.0.1:{port}"),
        ],
    ] {
        let out = run_bounded(
            distlock(&urls.join(","), &["status", "--name", "x"]),
            Duration::from_secs(20),
        )
        .expect("run distlock");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{urls:?}: {stderr}");
        assert!(stderr.contains("same server"), "{urls:?}: {stderr}");
    }
    assert_eq!(
        server.connections_received(),
        before + 1,
        "only this check's own connection reached the server"
    );
}

/// Redlock over a cluster and two plain servers: three votes, the cluster's cast by the
/// primary that owns the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_is_one_vote_of_a_redlock() {
    require_redis!();
    let cluster = blocking(|| Cluster::start(3));
    let plain: Vec<support::RedisServer> =
        blocking(|| (0..2).map(|_| support::RedisServer::start()).collect());
    let client = Client::connect([cluster.url(&[0]), plain[0].url(), plain[1].url()])
        .await
        .expect("connect");
    assert_eq!(client.nodes(), 3);
    let name = unique_name("redlock");
    let guard = client.lock(&name).acquire().await.expect("acquire");
    let owner = cluster.owner(cluster.slot(&name), 0);
    // An acquire returns at a quorum: the cluster's vote (its connect is the slowest: it
    // reads the slot map first) may land just after.
    let on_cluster = || {
        cluster.nodes[owner]
            .raw()
            .ok(&["GET", &lock_key(&name)])
            .text()
    };
    support::until("the cluster's vote", Duration::from_secs(5), || {
        on_cluster().as_deref() == Some(guard.token())
    })
    .await;
    for (what, holder) in [
        (
            "plain node 0",
            plain[0].raw().ok(&["GET", &lock_key(&name)]),
        ),
        (
            "plain node 1",
            plain[1].raw().ok(&["GET", &lock_key(&name)]),
        ),
    ] {
        assert_eq!(holder.text().as_deref(), Some(guard.token()), "{what}");
    }
    guard.release().await.expect("release");
}
