//! A lock run across a failover, shared by the sentinel and cluster tests: four workers
//! contend on one lock, each in a critical section that catches overlaps, while the test
//! fails the lock's primary over; what the run saw comes back as a [`Run`].
//!
//! A lease counts as **lost** when its release finds the lock no longer held (the promoted
//! replica never had it); an operation that failed with a typed error while the primary
//! changed is counted apart and tried again. The run ends once every worker had
//! [`AFTER`] leases after the failover: the clients followed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use distlock_host::{Client, Durability};

use super::holders::Section;
use super::{bounded, until};

/// Workers contending on the lock.
pub(crate) const WORKERS: usize = 4;
/// Leases each worker takes after the failover.
pub(crate) const AFTER: u64 = 5;
/// Leases taken before the failover starts.
pub(crate) const BEFORE: u64 = 10;

/// What a lock run across a failover saw.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// Leases the library reported.
    pub(crate) leases: u64,
    /// Two reported holders inside at once.
    pub(crate) overlaps: u64,
    /// Releases that found the lock no longer held (lost across the failover).
    pub(crate) lost: u64,
    /// Operations that failed with a typed error while the primary changed.
    pub(crate) failed: u64,
}

/// Runs [`WORKERS`] clients of `url` on the lock `name` (durable leases when `durability`
/// is given) until each has had [`AFTER`] leases once `fail_over` returned; calls
/// `fail_over` once [`BEFORE`] leases are in.
pub(crate) async fn lock_run(
    url: String,
    name: String,
    durability: Option<Durability>,
    fail_over: impl FnOnce() + Send + 'static,
) -> Run {
    let section = Arc::new(Section::default());
    let failed_over = Arc::new(AtomicBool::new(false));
    let (lost, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (url, name, section) = (url.clone(), name.clone(), Arc::clone(&section));
        let (failed_over, lost, failed) = (
            Arc::clone(&failed_over),
            Arc::clone(&lost),
            Arc::clone(&failed),
        );
        workers.push(tokio::spawn(async move {
            // A patient connect: the run is about the failover, and on a loaded machine a
            // sentinel group's first answers can take longer than the default 1 s.
            let patient = distlock_host::ConnectOptions {
                ready_timeout: Duration::from_secs(5),
                ..distlock_host::ConnectOptions::default()
            };
            let mut client =
                Client::connect_with([url], patient, distlock_host::KeyLayout::default())
                    .await
                    .expect("connect");
            if let Some(durability) = durability {
                client = client.durable(durability).expect("one node");
            }
            let mut after = 0;
            while after < AFTER {
                let since = failed_over.load(Ordering::SeqCst);
                let acquired = client
                    .lock(&name)
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .await;
                let guard = match acquired {
                    Ok(guard) => guard,
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        eprintln!("failover run: acquire failed: {e}");
                        continue;
                    }
                };
                section.enter();
                tokio::task::yield_now().await;
                section.leave();
                match guard.release().await {
                    Ok(_) => {}
                    Err(e) if matches!(e.lock_error(), Some(distlock_core::Error::NotHeld)) => {
                        lost.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if since {
                    after += 1;
                }
            }
        }));
    }
    until(
        "some leases before the failover",
        Duration::from_secs(20),
        || section.entries() >= BEFORE,
    )
    .await;
    tokio::task::spawn_blocking(fail_over)
        .await
        .expect("failover");
    failed_over.store(true, Ordering::SeqCst);
    for worker in workers {
        bounded("a worker's rounds", Duration::from_secs(90), worker)
            .await
            .0
            .expect("worker");
    }
    Run {
        leases: section.entries(),
        overlaps: section.overlaps(),
        lost: lost.load(Ordering::SeqCst),
        failed: failed.load(Ordering::SeqCst),
    }
}
