//! Frozen servers: Redlock over five `redis-server`s while one, two and then three of them are
//! stopped with SIGSTOP (the process is there, its connections open, nothing answers).
//!
//! It shows that a frozen node costs an attempt its vote and at most a request timeout:
//! with a majority running, locks are had, never overlap, and a try that loses loses to
//! contention; without one, tries fail with a lost quorum in bounded time. On every lease,
//! the guard never claims longer than the keys on a quorum of the running servers live,
//! less the drift allowance.
//!
//! Each test starts its own servers on free ports; without `redis-server` they fail
//! (`DISTLOCK_SKIP_REDIS=1` skips them).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlock_host::{Client, Guard, LockOptions};
use support::faults::{MARGIN, drift, is_quorum_lost, load_scripts};
use support::holders::Section;
use support::{RedisServer, blocking, bounded, require_redis, unique_name};

/// What the Redlock workers saw in one phase.
#[derive(Default)]
struct PhaseStats {
    acquired: AtomicU64,
    busy: AtomicU64,
    quorum_lost: AtomicU64,
    slowest_ms: AtomicU64,
    slowest_release_ms: AtomicU64,
}

/// Redlock over five servers; four clients loop try-acquire/release on one lock while the
/// test freezes (SIGSTOP) one server, then two, then three. With up to two frozen, locks are
/// still had, never overlap, and a try that loses loses to contention (`NotAcquired`), not
/// to a lost quorum; with three frozen none is had and tries fail with a lost quorum, each
/// within `2 × request timeout` (250 ms here). Every guard's validity is at most `ttl − drift − (time since
/// the acquire started)`, and on a quorum of the running servers the key outlives the
/// guard's claim by the drift at least.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_five_nodes_lose_one_two_three() {
    require_redis!();
    const WORKERS: usize = 4;
    let ttl = Duration::from_secs(3);
    // An attempt that needs a frozen server's vote holds what it won until that server's
    // request times out, and contending workers lose to each other meanwhile: a short
    // request timeout keeps those spells short next to the phases.
    let rt = Duration::from_millis(250);
    let options = LockOptions {
        ttl: distlock_core::Duration::from_millis(ttl.as_millis() as u64),
        request_timeout: distlock_core::Duration::from_millis(rt.as_millis() as u64),
        ..LockOptions::default()
    };
    let limit = 2 * rt + MARGIN;
    let servers: Arc<Vec<RedisServer>> =
        Arc::new(blocking(|| (0..5).map(|_| RedisServer::start()).collect()));
    blocking(|| servers.iter().for_each(load_scripts));
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let name = unique_name("redlock5");
    let section = Arc::new(Section::default());
    let stats: Arc<[PhaseStats; 4]> = Arc::new(Default::default());
    let phase = Arc::new(AtomicUsize::new(0));
    let paused = Arc::new(Mutex::new(Vec::<usize>::new()));
    // Odd while a server is being frozen: the running set is unsettled.
    let epoch = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = Client::connect(&urls).await.expect("connect to 5 nodes");
        let (name, section, stats, phase, paused, epoch, stop, servers) = (
            name.clone(),
            Arc::clone(&section),
            Arc::clone(&stats),
            Arc::clone(&phase),
            Arc::clone(&paused),
            Arc::clone(&epoch),
            Arc::clone(&stop),
            Arc::clone(&servers),
        );
        workers.push(tokio::spawn(async move {
            let mut raws: Vec<Option<support::Raw>> = (0..5).map(|_| None).collect();
            // Retries 1–32 ms apart, at random: workers in lock-step split the votes (each
            // wins some nodes) and all lose, round after round.
            let mut x = u64::from(std::process::id()) ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut jitter = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Duration::from_millis(1 + x % 32)
            };
            while !stop.load(Ordering::SeqCst) {
                let at = phase.load(Ordering::SeqCst);
                let stats = &stats[at];
                let settled = epoch.load(Ordering::SeqCst);
                let started = Instant::now();
                let (result, took) = bounded(
                    "a Redlock try-acquire",
                    limit,
                    client.lock(&name).options(options).try_acquire(),
                )
                .await;
                stats
                    .slowest_ms
                    .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
                let guard = match result {
                    Ok(guard) => guard,
                    Err(e) if e.is_not_acquired() => {
                        stats.busy.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(jitter()).await;
                        continue;
                    }
                    Err(e) => {
                        assert!(
                            is_quorum_lost(&e, None),
                            "phase {at}: unexpected error {e:?} ({e})"
                        );
                        // With at most two of five frozen throughout, a quorum was there:
                        // losing is contention (`NotAcquired`), never a lost quorum.
                        let frozen_throughout =
                            settled % 2 == 0 && epoch.load(Ordering::SeqCst) == settled;
                        assert!(
                            at == 3 || !frozen_throughout,
                            "phase {at}: a lost quorum with {at} of 5 servers frozen: {e}"
                        );
                        stats.quorum_lost.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(jitter()).await;
                        continue;
                    }
                };
                section.enter();
                stats.acquired.fetch_add(1, Ordering::SeqCst);
                // The instant first: a pause between the two reads then only makes the checks
                // below more lenient, never fail.
                let claimed_at = Instant::now();
                let validity = guard.validity();
                // One attempt (a try): it started when the call did. 20 ms for the millisecond
                // clock's rounding and the call's own work (or a preemption) before its first
                // request; a connection that held the attempt up would be 250 ms at least.
                let elapsed = claimed_at - started;
                assert!(
                    validity + elapsed <= ttl - drift(ttl) + Duration::from_millis(20),
                    "phase {at}: validity {validity:?} {elapsed:?} after the acquire started: more than the TTL less the elapsed time and the drift"
                );
                // Only while the running servers stayed the same throughout.
                if settled % 2 == 0 {
                    let down = paused.lock().unwrap().clone();
                    let outliving =
                        keys_outliving(&servers, &mut raws, &down, &guard, validity, claimed_at, ttl);
                    if epoch.load(Ordering::SeqCst) == settled {
                        let outliving = outliving.expect("the running servers answer");
                        assert!(
                            outliving >= 3,
                            "phase {at}: the guard claims {validity:?}, but only {outliving} running servers hold the key that long plus the drift"
                        );
                    }
                }
                // Stay inside a little (work, not a wait): a second holder would overlap.
                tokio::time::sleep(Duration::from_millis(2)).await;
                section.leave();
                let (released, release_took) =
                    bounded("a Redlock release", limit, guard.release()).await;
                stats
                    .slowest_release_ms
                    .fetch_max(release_took.as_millis() as u64, Ordering::SeqCst);
                if let Err(e) = released {
                    // The servers froze between acquire and release: typed, and the lock
                    // frees at its TTL.
                    assert!(is_quorum_lost(&e, None), "release: {e:?} ({e})");
                }
            }
        }));
    }

    // Each phase runs for `run_for` under its fault (by design), and on — for at most 10 s
    // more — until its workers have had a lock (with three frozen: lost the quorum), so that
    // a loaded machine cannot leave a phase's counts empty by luck. The assertions after the
    // run judge what the phases saw.
    let run_for = Duration::from_millis(1500);
    let run_phase = |at: usize| {
        let stats = Arc::clone(&stats);
        async move {
            tokio::time::sleep(run_for).await;
            let seen = || {
                let s = &stats[at];
                if at == 3 {
                    s.quorum_lost.load(Ordering::SeqCst) > 0
                } else {
                    s.acquired.load(Ordering::SeqCst) > 0
                }
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !seen() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    for (next, server) in [(1, 0usize), (2, 1), (3, 2)] {
        run_phase(next - 1).await;
        epoch.fetch_add(1, Ordering::SeqCst);
        paused.lock().unwrap().push(server);
        blocking(|| servers[server].pause());
        epoch.fetch_add(1, Ordering::SeqCst);
        phase.store(next, Ordering::SeqCst);
    }
    run_phase(3).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        bounded("a worker to stop", 2 * limit, worker)
            .await
            .0
            .expect("worker");
    }
    for server in servers.iter() {
        server.resume();
    }
    for (at, s) in stats.iter().enumerate() {
        eprintln!(
            "{at} frozen: {} acquired, {} busy, {} quorum lost; slowest try {} ms, slowest release {} ms",
            s.acquired.load(Ordering::SeqCst),
            s.busy.load(Ordering::SeqCst),
            s.quorum_lost.load(Ordering::SeqCst),
            s.slowest_ms.load(Ordering::SeqCst),
            s.slowest_release_ms.load(Ordering::SeqCst)
        );
    }
    assert_eq!(section.overlaps(), 0, "two holders at once");
    for at in 0..3 {
        assert!(
            stats[at].acquired.load(Ordering::SeqCst) > 0,
            "no lock was had with {at} servers frozen"
        );
    }
    assert_eq!(
        stats[3].acquired.load(Ordering::SeqCst),
        0,
        "a lock was had with 3 of 5 servers frozen"
    );
    assert!(
        stats[3].quorum_lost.load(Ordering::SeqCst) > 0,
        "no acquire was tried with 3 frozen"
    );
}

/// How many running servers hold the guard's key for at least `validity + drift` beyond the
/// moment the validity was read (`None`: a server did not answer). A quorum of them must:
/// the guard never claims longer than the keys on a majority live, less the drift allowance.
fn keys_outliving(
    servers: &[RedisServer],
    raws: &mut [Option<support::Raw>],
    paused: &[usize],
    guard: &Guard,
    validity: Duration,
    claimed_at: Instant,
    ttl: Duration,
) -> Option<usize> {
    let key = support::lock_key(std::str::from_utf8(guard.name()).expect("UTF-8 name"));
    let mut outliving = 0;
    blocking(|| {
        for (node, server) in servers.iter().enumerate() {
            if paused.contains(&node) {
                continue;
            }
            let raw = raws[node].get_or_insert_with(|| {
                let mut raw = server.raw();
                raw.set_timeout(Duration::from_millis(500))
                    .expect("timeout");
                raw
            });
            let pttl = match raw.command(&["PTTL", &key]) {
                Ok(reply) => reply.int(),
                Err(_) => {
                    raws[node] = None;
                    return None;
                }
            };
            let Some(pttl) = pttl.and_then(|p| u64::try_from(p).ok()) else {
                continue;
            };
            // The key's life left when the validity was read; +2 ms for the rounding down
            // of both clocks.
            let left = Duration::from_millis(pttl + 2) + claimed_at.elapsed();
            if left >= validity + drift(ttl) {
                outliving += 1;
            }
        }
        Some(outliving)
    })
}
