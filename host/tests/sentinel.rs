//! Locks on a real Redis Sentinel group (a primary, a replica and three sentinels, started
//! here on loopback): the primary found through the sentinels, bad forms as typed errors,
//! replica-durable leases (`WAIT`), and failovers — forced (`SENTINEL FAILOVER`) and a
//! SIGKILLed primary — during lock runs with several workers. With durable leases no two
//! holders the library reported overlap; without, the locks lost across the failover are
//! counted and printed (Redis replicates asynchronously: losing one is possible, not
//! certain).

mod support;

use std::sync::Arc;
use std::time::Duration;

use distlock_host::{Client, ConnectOptions, Durability, DurableError, Error, KeyLayout};
use support::failover::{AFTER, BEFORE, WORKERS, lock_run};
use support::fake::{FakeServer, Step};
use support::sentinel::{CLIENT_RENAMED, GHOST, PasswordSentinel, SERVICE, SentinelGroup};
use support::{
    RedisServer, blocking, bounded, command_calls, distlock, free_port, lock_key, require_redis,
    run_bounded, unique_name,
};

/// One replica, waited for at most a second.
fn one_replica() -> Durability {
    Durability::new(1, distlock_core_duration(1_000)).expect("durability")
}

fn distlock_core_duration(ms: u64) -> distlock_core::Duration {
    distlock_core::Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_is_found_through_the_sentinels_and_checked() {
    require_redis!();
    let group = blocking(SentinelGroup::start_steady);
    let client = Client::connect([group.url(SERVICE)])
        .await
        .expect("connect");
    assert_eq!(
        client.nodes(),
        1,
        "a sentinel group is one node of the lock"
    );
    let name = unique_name("sentinel");
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("acquire");
    let on = |i: usize| group.servers[i].raw().ok(&["GET", &lock_key(&name)]).text();
    assert_eq!(
        on(0).as_deref(),
        Some(guard.token()),
        "written to the primary"
    );
    guard.release().await.expect("release");
    assert_eq!(on(0), None);

    // One vote of a Redlock beside a plain server and a dead one: the lock is had only
    // with the sentinel group's vote.
    let a = blocking(RedisServer::start);
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let redlock = Client::connect([group.url(SERVICE), a.url(), dead])
        .await
        .expect("connect");
    assert_eq!(redlock.nodes(), 3);
    let guard = redlock
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("acquire");
    for server in [&group.servers[0], &a] {
        let held = server.raw().ok(&["GET", &lock_key(&name)]).text();
        assert_eq!(
            held.as_deref(),
            Some(guard.token()),
            "both live nodes voted"
        );
    }
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_sentinel_forms_are_typed_errors() {
    require_redis!();
    let group = blocking(SentinelGroup::start_steady);
    // Discovery must end (typed) before connecting stops waiting, even on a loaded machine.
    let patient = ConnectOptions {
        ready_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let connect = |url: String| Client::connect_with([url], patient.clone(), KeyLayout::default());
    let sentinel_error = |result: Result<Client, Error>| match result {
        Err(Error::Sentinel { why, .. }) => why,
        other => panic!("expected a sentinel error, got {other:?}"),
    };
    // A service the sentinels do not know.
    let (result, took) = bounded(
        "connecting to an unknown service",
        Duration::from_secs(10),
        connect(group.url("nosuch")),
    )
    .await;
    assert_eq!(
        sentinel_error(result),
        distlock_core::DiscoveryError::UnknownService,
        "after {took:?}"
    );
    // Sentinels that name a primary nobody answers on.
    let (result, _) = bounded(
        "connecting to a service whose primary is down",
        Duration::from_secs(10),
        connect(group.url(GHOST)),
    )
    .await;
    assert_eq!(
        sentinel_error(result),
        distlock_core::DiscoveryError::NoPrimary
    );
    // No sentinel listening, and a server that is not a sentinel.
    let plain = blocking(RedisServer::start);
    for url in [
        format!("redis+sentinel://127.0.0.1:{}/{SERVICE}", free_port()),
        format!("redis+sentinel://127.0.0.1:{}/{SERVICE}", plain.port()),
    ] {
        let (result, _) =
            bounded("connecting", Duration::from_secs(10), connect(url.clone())).await;
        assert_eq!(
            sentinel_error(result),
            distlock_core::DiscoveryError::NoSentinel,
            "{url}"
        );
    }
    // One service given twice (its sentinels in another order) is one primary: refused
    // before anything is sent. Two services of one sentinel group are two nodes.
    let (s0, s1) = (group.sentinels[0].port, group.sentinels[1].port);
    let twice = Client::connect([
        format!("redis+sentinel://127.0.0.1:{s0},127.0.0.1:{s1}/{SERVICE}"),
        format!("redis+sentinel://127.0.0.1:{s1},127.0.0.1:{s0}/{SERVICE}"),
    ])
    .await;
    assert!(
        matches!(twice, Err(Error::DuplicateNode { .. })),
        "{twice:?}"
    );
    let two_services = Client::connect([group.url(SERVICE), group.url(GHOST)]).await;
    assert!(
        matches!(
            two_services,
            Err(Error::TooFewNodes {
                reachable: 1,
                nodes: 2,
                ..
            })
        ),
        "two nodes, the ghost's down: {two_services:?}"
    );

    // The command: 69 when no sentinel names a primary; 64 for a bad URL, before anything
    // reaches a sentinel.
    let connections = || {
        let info = support::Raw::connect(group.sentinels[0].port)
            .expect("sentinel")
            .ok(&["INFO", "stats"])
            .text()
            .unwrap_or_default();
        support::info_field(&info, "total_connections_received")
            .and_then(|n| n.parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let ghost = blocking(|| {
        run_bounded(
            distlock(
                &group.url(GHOST),
                &["acquire", "--name", "x", "--ttl", "10s"],
            ),
            Duration::from_secs(20),
        )
    })
    .expect("run distlock");
    assert_eq!(ghost.status.code(), Some(69), "{}", support::show(&ghost));
    for bad in [
        format!("redis+sentinel://127.0.0.1:{}", group.sentinels[0].port),
        format!("redis+sentinel://127.0.0.1:{}/", group.sentinels[0].port),
        format!("redis+sentinel:///{SERVICE}"),
        format!(
            "redis+sentinel://127.0.0.1:{}/my%20master",
            group.sentinels[0].port
        ),
    ] {
        let before = blocking(connections);
        let out = blocking(|| {
            run_bounded(
                distlock(&bad, &["acquire", "--name", "x", "--ttl", "10s"]),
                Duration::from_secs(20),
            )
        })
        .expect("run distlock");
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad}: {}",
            support::show(&out)
        );
        // The probe itself is the one new connection.
        assert_eq!(blocking(connections), before + 1, "{bad}: nothing was sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_leases_wait_for_their_replicas_or_are_released() {
    require_redis!();
    let group = blocking(SentinelGroup::start_steady);
    let url = group.url(SERVICE);
    let durable = Client::connect([&url])
        .await
        .expect("connect")
        .durable(one_replica())
        .expect("one node");
    let name = unique_name("durable");
    let guard = durable
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("a replica acknowledges");
    // Reported only after the replica acknowledged: it holds the lease now.
    let on_replica = group.servers[1].raw().ok(&["GET", &lock_key(&name)]).text();
    assert_eq!(on_replica.as_deref(), Some(guard.token()));
    guard.extend(Duration::from_secs(60)).await.expect("extend");
    guard.release().await.expect("release");

    // Two replicas asked of a primary that has one: not confirmed, released, typed.
    let two = Client::connect([&url])
        .await
        .expect("connect")
        .durable(Durability::new(2, distlock_core_duration(200)).expect("durability"))
        .expect("one node");
    let name = unique_name("unreplicated");
    match two.lock(&name).ttl(Duration::from_secs(30)).acquire().await {
        Err(Error::NotDurable {
            why:
                DurableError::NotReplicated {
                    acknowledged: 1,
                    needed: 2,
                },
            ..
        }) => {}
        other => panic!("expected NotReplicated 1 of 2, got {other:?}"),
    }
    let left = group.servers[0]
        .raw()
        .ok(&["EXISTS", &lock_key(&name)])
        .int();
    assert_eq!(left, Some(0), "an unconfirmed lease is released");

    // A server without WAITAOF (before 7.2) refuses it: a typed refusal, never a downgrade.
    let aof = Client::connect([&url])
        .await
        .expect("connect")
        .durable(one_replica().with_aof())
        .expect("one node");
    let version = group.servers[0]
        .raw()
        .ok(&["INFO", "server"])
        .text()
        .unwrap_or_default();
    let has_waitaof = support::info_field(&version, "redis_version")
        .and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next()?))
        })
        .is_some_and(|v| v >= (7, 2));
    let name = unique_name("waitaof");
    let result = aof.lock(&name).ttl(Duration::from_secs(30)).acquire().await;
    if has_waitaof {
        // No appendonly on the test servers: the primary cannot fsync it.
        assert!(
            matches!(
                &result,
                Err(Error::NotDurable {
                    why: DurableError::NotFsynced,
                    ..
                })
            ),
            "{result:?}"
        );
    } else {
        assert!(
            matches!(
                &result,
                Err(Error::NotDurable {
                    why: DurableError::Refused(_),
                    ..
                })
            ),
            "{result:?}"
        );
    }
    let left = group.servers[0]
        .raw()
        .ok(&["EXISTS", &lock_key(&name)])
        .int();
    assert_eq!(left, Some(0), "a refused lease is released");

    // The command: `--durable 1` reports the lease, `--durable 2` cannot (69, released).
    for (durable, code) in [("1", 0), ("2,200ms", 69)] {
        let name = unique_name("cli-durable");
        let out = blocking(|| {
            run_bounded(
                distlock(
                    &url,
                    &[
                        "--durable",
                        durable,
                        "acquire",
                        "--name",
                        &name,
                        "--ttl",
                        "10s",
                    ],
                ),
                Duration::from_secs(20),
            )
        })
        .expect("run distlock");
        assert_eq!(
            out.status.code(),
            Some(code),
            "--durable {durable}: {}",
            support::show(&out)
        );
        let held = group.servers[0]
            .raw()
            .ok(&["EXISTS", &lock_key(&name)])
            .int();
        assert_eq!(held, Some(i64::from(code == 0)), "--durable {durable}");
    }

    // Over several nodes, durability is refused up front.
    let plain = blocking(RedisServer::start);
    let two_nodes = Client::connect([url.clone(), plain.url()]).await;
    let two_nodes = two_nodes.expect("a sentinel group and a server are two nodes");
    assert!(matches!(
        two_nodes.durable(one_replica()),
        Err(Error::Config(_))
    ));
}

/// `SENTINEL FAILOVER`, then waits until the sentinels name the other server, which says
/// `ROLE master`, and the old primary replicates it.
fn fail_over(group: &SentinelGroup) {
    let before = group.until_settled();
    group.force_failover();
    group.until_primary(1 - before);
    group.until_settled();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_failover_during_a_lock_run() {
    require_redis!();
    let group = Arc::new(blocking(SentinelGroup::start));
    let url = group.url(SERVICE);

    // Durable leases: no two reported holders, whatever the failover does.
    let moving = Arc::clone(&group);
    let durable = lock_run(
        url.clone(),
        unique_name("failover"),
        Some(one_replica()),
        move || fail_over(&moving),
    )
    .await;
    println!("forced failover, durable leases: {durable:?}");
    assert_eq!(durable.overlaps, 0, "two holders at once: {durable:?}");
    assert_eq!(durable.lost, 0, "a durable lease lost: {durable:?}");

    // Without: the run goes on through the new primary; losses are counted, not ruled out.
    let moving = Arc::clone(&group);
    let plain = lock_run(url, unique_name("failover"), None, move || {
        fail_over(&moving)
    })
    .await;
    println!(
        "forced failover, plain leases: {} leases, {} lost across the failover, {} operations failed (typed) while the primary changed",
        plain.leases,
        plain.lost + plain.overlaps,
        plain.failed
    );
    assert!(plain.leases >= BEFORE + WORKERS as u64 * AFTER, "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_is_replaced_and_durable_leases_stay_exclusive() {
    require_redis!();
    let group = Arc::new(std::sync::Mutex::new(blocking(SentinelGroup::start)));
    let url = group.lock().expect("group").url(SERVICE);
    let killing = Arc::clone(&group);
    let run = lock_run(
        url,
        unique_name("failover"),
        Some(one_replica()),
        move || {
            let mut group = killing.lock().expect("group");
            group.servers[0].stop();
            group.until_primary(1);
            // Until a replica is back, no lease can be confirmed durable (the workers' acquires
            // fail, typed): the old primary returns empty and is made a replica of the new one,
            // as an operator does (the sentinels would too, on their own schedule).
            group.servers[0].restart();
            let new_primary = group.servers[1].port().to_string();
            group.servers[0]
                .raw()
                .ok(&["REPLICAOF", "127.0.0.1", &new_primary]);
            // Under load the sentinels may fail over again (a busy primary looks down for
            // 500 ms): any primary with an in-sync replica will do.
            group.until_settled();
        },
    )
    .await;
    println!("SIGKILLed primary, durable leases: {run:?}");
    assert_eq!(run.overlaps, 0, "two holders at once: {run:?}");
    assert_eq!(run.lost, 0, "a durable lease lost: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demoted_primary_is_left_and_never_written_as_a_replica() {
    require_redis!();
    // Its full sync writes an RDB file: into a directory of the test's own.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.path().to_str().expect("UTF-8").to_owned();
    let (primary, other) = blocking(|| {
        (
            RedisServer::start_with(&["--dir", &dir]),
            RedisServer::start_with(&["--dir", &dir]),
        )
    });
    // A sentinel that goes on naming `primary`, whatever it has become.
    let named = format!(
        "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{}\r\n",
        primary.port().to_string().len(),
        primary.port()
    );
    let sentinel = blocking(|| FakeServer::start(vec![Step::always(named.as_bytes())]));
    let port = sentinel.url().rsplit(':').next().expect("port").to_owned();
    let url = format!("redis+sentinel://127.0.0.1:{port}/{SERVICE}");
    let client = Client::connect([&url]).await.expect("connect");
    let name = unique_name("demoted");
    let lock = || client.lock(&name).ttl(Duration::from_secs(10));
    lock()
        .acquire()
        .await
        .expect("acquire")
        .release()
        .await
        .expect("release");
    // Only the questions count: the client's `+switch-master` subscription talks to the
    // (fake) sentinel too.
    let questions = || {
        sentinel
            .commands()
            .iter()
            .filter(|c| {
                c.first()
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"SENTINEL"))
            })
            .count()
    };
    let asked = questions();

    // Demoted under the client's pooled connection.
    blocking(|| {
        primary
            .raw()
            .ok(&["REPLICAOF", "127.0.0.1", &other.port().to_string()]);
        support::wait_for("the primary to replicate", Duration::from_secs(10), || {
            let info = primary.raw().ok(&["INFO", "replication"]).text()?;
            info.contains("master_link_status:up").then_some(())
        });
    });
    // The pooled connection answers READONLY and is left; the sentinel is asked again and
    // the server it names says it is a replica: no lease, a typed error, nothing written.
    for _ in 0..2 {
        let result = lock().acquire().await;
        assert!(result.is_err(), "a lease on a replica: {result:?}");
    }
    assert!(
        questions() > asked,
        "the sentinel was asked again after READONLY"
    );
    let written = primary.raw().ok(&["EXISTS", &lock_key(&name)]).int();
    assert_eq!(written, Some(0));

    // Promoted again: the client follows.
    blocking(|| primary.raw().ok(&["REPLICAOF", "NO", "ONE"]));
    let guard = lock()
        .wait(Duration::from_secs(10))
        .acquire()
        .await
        .expect("acquire on the primary again");
    let held = primary.raw().ok(&["GET", &lock_key(&name)]).text();
    assert_eq!(held.as_deref(), Some(guard.token()));
    guard.release().await.expect("release");
}

/// Sentinels started with `requirepass`: the URL's `?sentinel_password=` logs in (`AUTH`
/// before the question) and the primary is found; no password, or a wrong one, is a typed
/// refusal (exit 77) and nothing reaches the primary; bad forms are usage errors (64).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinels_with_a_password_are_logged_in_to() {
    require_redis!();
    const PASSWORD: &str = "s3nt+nel@pw";
    let group = blocking(|| PasswordSentinel::start(PASSWORD));
    let with_password = group.url("?sentinel_password=s3nt%2Bnel%40pw");
    let client = Client::connect([&with_password]).await.expect("logged in");
    let name = unique_name("sentinel-login");
    let guard = client.lock(&name).acquire().await.expect("acquire");
    assert_eq!(
        group
            .primary
            .raw()
            .ok(&["GET", &lock_key(&name)])
            .text()
            .as_deref(),
        Some(guard.token()),
        "the lock is on the primary the sentinel named"
    );
    guard.release().await.expect("release");

    let before = group.primary.connections_received();
    for (url, says) in [
        (group.url(""), "NOAUTH"),
        (group.url("?sentinel_password=wrong"), "WRONGPASS"),
    ] {
        let err = Client::connect([&url]).await.expect_err("refused");
        assert!(
            matches!(
                &err,
                Error::Sentinel {
                    why: distlock_core::DiscoveryError::SentinelAuthRefused,
                    last,
                    ..
                } if last.contains(says)
            ),
            "{url}: {err:?}"
        );
        let out = run_bounded(
            distlock(&url, &["status", "--name", "x"]),
            Duration::from_secs(20),
        )
        .expect("run distlock");
        assert_eq!(
            out.status.code(),
            Some(77),
            "{url}: {}",
            support::show(&out)
        );
        assert!(
            !support::stderr(&out).contains("wrong"),
            "the password is hidden"
        );
    }
    assert_eq!(
        group.primary.connections_received(),
        before + 1,
        "only this check's own connection reached the primary: nothing without the sentinel's word"
    );
    for query in [
        "?sentinel_password=",
        "?sentinel_username=watcher",
        "?sentinel_password=a&sentinel_password=b",
        "?sentinel_pasword=typo",
    ] {
        let out = run_bounded(
            distlock(&group.url(query), &["status", "--name", "x"]),
            Duration::from_secs(20),
        )
        .expect("run distlock");
        assert_eq!(
            out.status.code(),
            Some(64),
            "{query}: {}",
            support::show(&out)
        );
        assert!(
            !support::stderr(&out).contains("typo"),
            "{query}: a password-like value is hidden"
        );
    }
}

/// The connections named `distlock` (the client's) that `server` lists; `CLIENT` is renamed
/// on the stubborn primary.
fn client_connections(server: &RedisServer, client_command: &str) -> usize {
    server
        .raw()
        .command(&[client_command, "LIST"])
        .ok()
        .and_then(|reply| reply.text())
        .map_or(0, |list| {
            list.lines()
                .filter(|l| l.contains(" name=distlock "))
                .count()
        })
}

/// The lock commands (`EVALSHA`, `EVAL`, `FCALL`) `server` has run.
fn lock_commands(server: &RedisServer) -> u64 {
    let stats = server
        .raw()
        .ok(&["INFO", "commandstats"])
        .text()
        .unwrap_or_default();
    ["evalsha", "eval", "fcall"]
        .iter()
        .map(|c| command_calls(&stats, c))
        .sum()
}

/// `+switch-master`: a client keeps one subscription on the sentinels and, when one announces
/// that the service failed over, closes its pooled connections to the old primary at once, so
/// its next acquire — one attempt, no wait — goes to the new primary after its `ROLE` check.
/// The old primary here stays a primary nobody names (the sentinels cannot reconfigure it),
/// so a client that kept its pooled connection would write the lock there: nothing reaches
/// it. Dropping the client ends the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_master_announcement_is_followed_at_once() {
    require_redis!();
    let group = blocking(SentinelGroup::start_with_a_stubborn_primary);
    let client = Client::connect([group.url(SERVICE)])
        .await
        .expect("connect");
    let name = unique_name("switch-master");
    client
        .lock(&name)
        .acquire()
        .await
        .expect("acquire on the first primary")
        .release()
        .await
        .expect("release");
    let old = &group.servers[0];
    let new = &group.servers[1];
    support::until(
        "one subscriber on the sentinels",
        Duration::from_secs(20),
        || blocking(|| group.subscribers()) == 1,
    )
    .await;
    assert!(
        blocking(|| client_connections(old, CLIENT_RENAMED)) >= 1,
        "a pooled connection to the first primary"
    );
    let commands_before = blocking(|| lock_commands(old));

    blocking(|| {
        group.force_failover();
        group.until_primary(1);
    });
    // Announced and followed: the client's connections to the old primary are gone, while
    // the old primary still says it is one.
    support::until(
        "the pooled connections to the old primary to close",
        Duration::from_secs(20),
        || blocking(|| client_connections(old, CLIENT_RENAMED)) == 0,
    )
    .await;
    assert_eq!(
        blocking(|| group.role(0)).as_deref(),
        Some("master"),
        "the old primary was not reconfigured: a stale connection would still be written"
    );

    // One attempt (no wait): it must reach the new primary first time.
    let guard = client
        .lock(&name)
        .acquire()
        .await
        .expect("the first attempt after the switch reaches the new primary");
    let held = blocking(|| new.raw().ok(&["GET", &lock_key(&name)]).text());
    assert_eq!(held.as_deref(), Some(guard.token()));
    assert_eq!(
        blocking(|| lock_commands(old)),
        commands_before,
        "no lock command reached the old primary after the switch"
    );
    let written = blocking(|| old.raw().ok(&["EXISTS", &lock_key(&name)]).int());
    assert_eq!(written, Some(0));
    guard.release().await.expect("release");

    // No subscription outlives its client.
    drop(client);
    support::until("the subscription to end", Duration::from_secs(20), || {
        blocking(|| group.subscribers()) == 0
    })
    .await;
}
