//! `distlock bench`'s read-write rows (scenario R): clients over one read-write lock name,
//! each acquiring a read or (one in `write_every`) a write hold with a wait and releasing it
//! at once; a row is acquire + release pairs per second and their latency, set against the
//! floor interleaved with it, as every other scenario.
//!
//! Each holder checks the section itself: a writer counts itself in and must find no reader
//! and no other writer, a reader must find no writer (shared counters of this process, read
//! inside the section after a yield, so another task can run in between); a mismatch is an
//! overlap, reported in the row (must be 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::LockOptions;
use distlock_host::Client;

use super::{Error, Sample};

/// How long a bench acquire waits for its turn before the run fails.
const WAIT: Duration = Duration::from_secs(10);

/// A read-write workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RwLoad {
    /// Concurrent clients (tasks on one connection pool).
    pub(crate) clients: usize,
    /// One write in this many acquires per client; 0: reads only.
    pub(crate) write_every: u64,
    /// The lock name.
    pub(crate) tag: &'static str,
    /// How both sides behave.
    pub(crate) lock: LockOptions,
}

/// Who is in the section, as the holders themselves count.
#[derive(Default)]
struct Inside {
    readers: AtomicI64,
    writers: AtomicI64,
    overlaps: AtomicU64,
}

/// Runs `load` for `duration`.
pub(crate) async fn run(
    client: &Client,
    load: RwLoad,
    duration: Duration,
) -> Result<Sample, Error> {
    let inside = Arc::new(Inside::default());
    let mut tasks = Vec::new();
    for worker in 0..load.clients as u64 {
        let client = client.clone();
        let inside = Arc::clone(&inside);
        tasks.push(tokio::spawn(async move {
            one_client(&client, load, worker, duration, &inside).await
        }));
    }
    let mut total = super::gather(tasks).await?;
    total.overlaps = inside.overlaps.load(Ordering::SeqCst);
    Ok(total)
}

async fn one_client(
    client: &Client,
    load: RwLoad,
    worker: u64,
    duration: Duration,
    inside: &Inside,
) -> Result<Sample, Error> {
    let mut sample = Sample::new();
    let started = Instant::now();
    let mut i = worker;
    while started.elapsed() < duration {
        i += 1;
        let write = load.write_every > 0 && i.is_multiple_of(load.write_every);
        let builder = if write {
            client.write_lock(load.tag)
        } else {
            client.read_lock(load.tag)
        };
        let t = Instant::now();
        let guard = builder.options(load.lock).wait(WAIT).acquire().await?;
        let (mine, other) = if write {
            (&inside.writers, &inside.readers)
        } else {
            (&inside.readers, &inside.writers)
        };
        let count = mine.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        if other.load(Ordering::SeqCst) != 0 || (write && count != 1) {
            inside.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        mine.fetch_sub(1, Ordering::SeqCst);
        guard.release().await?;
        sample.record(t.elapsed());
        sample.ops += 1;
    }
    sample.elapsed = started.elapsed();
    Ok(sample)
}
