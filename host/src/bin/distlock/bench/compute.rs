//! `distlock bench`'s get-or-compute rows (scenario G): clients asking one key for its value
//! with [`Client::get_or_compute_with`]; the value lives `value_ttl`, so it is computed again
//! after each expiry, by one caller, while the others wait for that value. A row is calls per
//! second and their latency against the floor interleaved with it, as every other scenario,
//! with the computations counted apart.
//!
//! Each computation checks itself: it counts itself in, yields for its `compute_time`, and
//! must find no other computation of this process inside; a mismatch is an overlap, reported
//! in the row (must be 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_host::{Client, ComputeError, ComputeOptions};

use super::{Error, Sample};

/// How long a call waits for another caller's value before the run fails.
const WAIT: Duration = Duration::from_secs(10);

/// A get-or-compute workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ComputeLoad {
    /// Concurrent clients (tasks on one connection pool).
    pub(crate) clients: usize,
    /// How long a stored value lives.
    pub(crate) value_ttl: Duration,
    /// How long a computation takes.
    pub(crate) compute_time: Duration,
    /// The key.
    pub(crate) tag: &'static str,
}

/// Computations under way in this process, as they count themselves.
#[derive(Default)]
struct Computing {
    now: AtomicI64,
    done: AtomicU64,
    overlaps: AtomicU64,
}

/// Runs `load` for `duration`.
pub(crate) async fn run(
    client: &Client,
    load: ComputeLoad,
    duration: Duration,
) -> Result<Sample, Error> {
    let computing = Arc::new(Computing::default());
    let mut tasks = Vec::new();
    for _ in 0..load.clients {
        let client = client.clone();
        let computing = Arc::clone(&computing);
        tasks.push(tokio::spawn(async move {
            one_client(&client, load, duration, &computing).await
        }));
    }
    let mut total = super::gather(tasks).await?;
    total.overlaps = computing.overlaps.load(Ordering::SeqCst);
    total.computed = computing.done.load(Ordering::SeqCst);
    Ok(total)
}

async fn one_client(
    client: &Client,
    load: ComputeLoad,
    duration: Duration,
    computing: &Computing,
) -> Result<Sample, Error> {
    let mut sample = Sample::new();
    let options = ComputeOptions::default().wait(WAIT);
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        let got = client
            .get_or_compute_with(load.tag, load.value_ttl, options, || async {
                let inside = computing.now.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(load.compute_time).await;
                if inside != 1 || computing.now.load(Ordering::SeqCst) != 1 {
                    computing.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                computing.now.fetch_sub(1, Ordering::SeqCst);
                computing.done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(b"computed".to_vec())
            })
            .await;
        match got {
            Ok(_) => {}
            // The lock ran out while computing (a stalled machine): nothing stored, the call
            // counts, as it returned.
            Err(ComputeError::LockLost) => {}
            Err(ComputeError::Client(e)) => return Err(e.into()),
            Err(e) => return Err(Error::Worker(e.to_string())),
        }
        sample.record(t.elapsed());
        sample.ops += 1;
    }
    sample.elapsed = started.elapsed();
    Ok(sample)
}
