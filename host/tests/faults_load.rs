//! Load as the fault: 64 tasks over four clients on 256 names, each doing N acquire/release
//! operations against one `redis-server`. It shows that under contention every operation
//! ends, in bounded time, with a lock or a typed "not acquired", that no name ever has two
//! holders, and that peak memory stays bounded.
//!
//! N is `DISTLOCK_LOAD_OPS` (default: a CI-sized 30; `DISTLOCK_LOAD_OPS=10000` is the long
//! run). Without `redis-server` it fails (`DISTLOCK_SKIP_REDIS=1` skips it).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use distlock_host::{Client, Released};
use support::faults::deadline;
use support::holders::Section;
use support::{RedisServer, blocking, bounded, info_field, require_redis, unique_name};

/// Peak resident set of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    info_field(&status, "VmHWM")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 64 tasks over four clients, each doing N acquire/release operations on 256 names (a
/// per-name critical-section flag each): no overlap, every operation ends and is counted
/// (acquired, or busy with a typed error), the run ends in bounded time, and peak memory
/// stays bounded. N is `DISTLOCK_LOAD_OPS` (default: a CI-sized 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_many_clients_many_names() {
    require_redis!();
    const TASKS: usize = 64;
    const NAMES: usize = 256;
    const CLIENTS: usize = 4;
    let ops: usize = std::env::var("DISTLOCK_LOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let server = blocking(RedisServer::start);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect([server.url()]).await.expect("connect"));
    }
    let prefix = unique_name("load");
    let names: Arc<Vec<String>> = Arc::new((0..NAMES).map(|i| format!("{prefix}-{i}")).collect());
    let sections: Arc<Vec<Section>> = Arc::new((0..NAMES).map(|_| Section::default()).collect());
    let acquired = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let rss_before = peak_rss_kib();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = clients[task % CLIENTS].clone();
        let (names, sections, acquired, busy) = (
            Arc::clone(&names),
            Arc::clone(&sections),
            Arc::clone(&acquired),
            Arc::clone(&busy),
        );
        tasks.push(tokio::spawn(async move {
            // A cheap per-task sequence over the names, different for every task.
            let mut x = (task as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for _ in 0..ops {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % NAMES as u64) as usize;
                let wait = Duration::from_millis(200);
                let (result, _) = bounded(
                    "a load acquire",
                    deadline(wait),
                    client
                        .lock(&names[i])
                        .ttl(Duration::from_secs(10))
                        .wait(wait)
                        .acquire(),
                )
                .await;
                match result {
                    Ok(guard) => {
                        sections[i].enter();
                        tokio::task::yield_now().await;
                        sections[i].leave();
                        let (released, _) =
                            bounded("a load release", deadline(Duration::ZERO), guard.release())
                                .await;
                        assert_eq!(released.expect("release"), Released::Free);
                        acquired.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_not_acquired() => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("load acquire: {e:?} ({e})"),
                }
            }
        }));
    }
    let limit = Duration::from_secs(if ops > 100 { 600 } else { 45 });
    let (results, elapsed) = bounded("the load run", limit, async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    })
    .await;
    for result in results {
        result.expect("load task");
    }
    let rss_after = peak_rss_kib();
    let (acquired, busy) = (
        acquired.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    let total = (TASKS * ops) as u64;
    let overlaps: u64 = sections.iter().map(Section::overlaps).sum();
    eprintln!(
        "load: {TASKS} tasks x {ops} ops on {NAMES} names = {total} ops ({acquired} acquired, {busy} busy) in {elapsed:.2?}: {:.0} ops/s; peak RSS {} -> {} MiB",
        total as f64 / elapsed.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );
    assert_eq!(overlaps, 0, "two holders of one name at once");
    assert_eq!(acquired + busy, total, "an operation was not counted");
    assert_eq!(sections.iter().map(Section::entries).sum::<u64>(), acquired);
    assert!(
        acquired > total / 2,
        "most operations should get their lock"
    );
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 256,
        "peak RSS grew by {growth_mib} MiB over the load run"
    );
}
