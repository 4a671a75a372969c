//! `distlock demo`: workers contend on one lock and prove, by counting, that it excludes.
//!
//! Each worker loops: acquire (waiting), enter the critical section, do a deliberately
//! racy read-sleep-write on a shared counter, leave, release. Two holders at once would show
//! twice: the "inside" flag is found set (an overlap), and the counter loses an update. The
//! hand-off gap is the time from one release to the next acquisition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::LockOptions;
use distlock_host::Client;
use distlock_host::Error;

/// How a demo runs.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    /// Workers contending.
    pub(crate) workers: usize,
    /// How long to run.
    pub(crate) duration: Duration,
    /// How long each holder stays in the critical section.
    pub(crate) hold: Duration,
    /// The lock's name.
    pub(crate) name: String,
    /// Print a progress line each second (to stderr).
    pub(crate) progress: bool,
    /// How every worker's lock behaves (TTL, wake-up signal, retry).
    pub(crate) lock: LockOptions,
}

/// The demo's lock: a 10 s TTL (no holder gets near it), every other option the default.
pub(crate) fn demo_lock_options() -> LockOptions {
    LockOptions {
        ttl: distlock_core::Duration::from_secs(10),
        ..LockOptions::default()
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            workers: 4,
            duration: Duration::from_secs(5),
            hold: Duration::from_millis(1),
            name: "distlock-demo".into(),
            progress: true,
            lock: demo_lock_options(),
        }
    }
}

/// What a demo measured.
#[derive(Debug, Clone)]
pub(crate) struct DemoReport {
    /// Acquisitions per worker.
    pub(crate) per_worker: Vec<u64>,
    /// Times a worker entered the critical section while another was inside.
    pub(crate) overlaps: u64,
    /// The shared counter at the end (equals the acquisitions when nothing overlapped).
    pub(crate) counter: u64,
    /// The holders' time in the critical section, summed, and how many holders left it.
    pub(crate) held: (Duration, u64),
    /// Each holder's time in the critical section, sorted (a loaded machine shows in the
    /// tail: the median says how precise the hold itself is).
    pub(crate) holds: Vec<Duration>,
    /// Hand-off gaps (release → next acquisition), sorted.
    pub(crate) handoffs: Vec<Duration>,
    /// How long each successful acquire took, from its call to its return, sorted.
    pub(crate) waits: Vec<Duration>,
    /// Errors other than "not acquired" (a wait running out is counted, not an error).
    pub(crate) errors: u64,
    /// Acquires that ran out of wait.
    pub(crate) timeouts: u64,
    /// Wall time.
    pub(crate) elapsed: Duration,
    /// Where it ran.
    pub(crate) backend: String,
}

impl DemoReport {
    /// All acquisitions.
    #[must_use]
    pub(crate) fn acquisitions(&self) -> u64 {
        self.per_worker.iter().sum()
    }

    /// The holders' mean time in the critical section: the hold they really had.
    #[must_use]
    pub(crate) fn mean_hold(&self) -> Option<Duration> {
        mean_hold(self.held)
    }

    /// The `q`-quantile (0..=1) of the hand-off gaps.
    #[must_use]
    pub(crate) fn handoff_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.handoffs, q)
    }

    /// The summary table.
    #[must_use]
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let total = self.acquisitions();
        out.push_str(&format!(
            "distlock demo on {} — {:.1} s\n\n",
            self.backend,
            self.elapsed.as_secs_f64()
        ));
        out.push_str("worker  acquisitions\n");
        for (i, n) in self.per_worker.iter().enumerate() {
            out.push_str(&format!("{i:>6}  {n:>12}\n"));
        }
        out.push_str(&format!("{:>6}  {total:>12}\n\n", "total"));
        let fmt = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| {
                format!("{:.2} ms", d.as_secs_f64() * 1e3)
            })
        };
        out.push_str(&format!(
            "acquisitions/s      {:.0}\n",
            total as f64 / self.elapsed.as_secs_f64().max(1e-9)
        ));
        out.push_str(&format!("mean hold           {}\n", fmt(self.mean_hold())));
        out.push_str(&format!(
            "hold p50            {}\n",
            fmt(quantile(&self.holds, 0.50))
        ));
        out.push_str(&format!(
            "hand-off p50        {}\n",
            fmt(self.handoff_quantile(0.50))
        ));
        out.push_str(&format!(
            "hand-off p99        {}\n",
            fmt(self.handoff_quantile(0.99))
        ));
        out.push_str(&format!(
            "acquire wait p99    {}\n",
            fmt(quantile(&self.waits, 0.99))
        ));
        out.push_str(&format!("overlaps detected   {}\n", self.overlaps));
        out.push_str(&format!(
            "shared counter      {} ({})\n",
            self.counter,
            if self.counter == total {
                "exact"
            } else {
                "LOST UPDATES"
            }
        ));
        out.push_str(&format!("waits timed out     {}\n", self.timeouts));
        out.push_str(&format!("errors              {}\n", self.errors));
        out
    }
}

/// A mean hold from the holds' summed time and their number (`None` for none).
pub(crate) fn mean_hold((held, holds): (Duration, u64)) -> Option<Duration> {
    // In whole nanoseconds: a mean of holds that each lasted their 1 ms is never read as less.
    (holds > 0).then(|| {
        Duration::from_nanos(u64::try_from(held.as_nanos() / u128::from(holds)).unwrap_or(u64::MAX))
    })
}

/// The `q`-quantile (0..=1) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * q).round() as usize).copied()
}

/// The critical section the demo's (and the bench's) workers share: catches overlaps and
/// lost updates, and times hand-offs.
pub(crate) struct Section {
    inside: AtomicBool,
    overlaps: AtomicU64,
    counter: AtomicU64,
    /// When the last holder left, in µs since `origin`; 0: nobody yet.
    released_at: AtomicU64,
    /// Every holder's time inside, from entering to leaving, µs, and how many holders.
    held_us: AtomicU64,
    holds: AtomicU64,
    origin: Instant,
}

/// What a holder saw on entering a [`Section`].
pub(crate) struct Entry {
    /// Time since the previous holder left (`None` for the first holder).
    pub(crate) handoff: Option<Duration>,
    seen: u64,
    entered_us: u64,
}

impl Section {
    pub(crate) fn new() -> Section {
        Section {
            inside: AtomicBool::new(false),
            overlaps: AtomicU64::new(0),
            counter: AtomicU64::new(0),
            released_at: AtomicU64::new(0),
            held_us: AtomicU64::new(0),
            holds: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// Enters (the lock is held): counts an overlap if another holder is inside, and reads
    /// the shared counter.
    pub(crate) fn enter(&self) -> Entry {
        let now_us = self.origin.elapsed().as_micros() as u64;
        let released = self.released_at.load(Ordering::Acquire);
        let handoff =
            (released != 0 && now_us >= released).then(|| Duration::from_micros(now_us - released));
        if self.inside.swap(true, Ordering::AcqRel) {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        Entry {
            handoff,
            seen: self.counter.load(Ordering::Acquire),
            entered_us: now_us,
        }
    }

    /// Leaves (just before releasing): writes back the counter read on entry plus one —
    /// racy on purpose, so two holders at once lose an update — and stamps the time. Returns
    /// how long this holder was inside.
    pub(crate) fn leave(&self, entry: Entry) -> Duration {
        self.counter.store(entry.seen + 1, Ordering::Release);
        self.inside.store(false, Ordering::Release);
        let now_us = self.origin.elapsed().as_micros().max(1) as u64;
        self.released_at.store(now_us, Ordering::Release);
        let held_us = now_us.saturating_sub(entry.entered_us);
        self.held_us.fetch_add(held_us, Ordering::Relaxed);
        self.holds.fetch_add(1, Ordering::Relaxed);
        Duration::from_micros(held_us)
    }

    /// The holders' time inside, summed, and how many holders left: what the hold really was.
    pub(crate) fn held(&self) -> (Duration, u64) {
        (
            Duration::from_micros(self.held_us.load(Ordering::Relaxed)),
            self.holds.load(Ordering::Relaxed),
        )
    }

    /// Times a holder found another inside.
    pub(crate) fn overlaps(&self) -> u64 {
        self.overlaps.load(Ordering::Relaxed)
    }

    /// The shared counter (the number of holders, unless updates were lost).
    pub(crate) fn counter(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

struct Shared {
    section: Section,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

/// Runs the demo on `client`.
pub(crate) async fn run(client: &Client, options: &DemoOptions) -> Result<DemoReport, Error> {
    let shared = Arc::new(Shared {
        section: Section::new(),
        errors: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
    });
    let started = Instant::now();
    let stop_at = started + options.duration;
    let counts: Vec<Arc<AtomicU64>> = (0..options.workers)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut tasks = Vec::new();
    for count in &counts {
        let (client, shared, count, options) = (
            client.clone(),
            Arc::clone(&shared),
            Arc::clone(count),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            worker(client, shared, count, options, stop_at).await
        }));
    }
    let progress = options.progress.then(|| {
        let counts = counts.clone();
        let shared = Arc::clone(&shared);
        let backend = describe(client);
        tokio::spawn(async move {
            while Instant::now() < stop_at {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                crate::output::tell_inline!(
                    "\r{backend}: {total} acquisitions, {} overlaps, {:.0} s left   ",
                    shared.section.overlaps(),
                    stop_at
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64()
                );
            }
        })
    });
    let mut handoffs = Vec::new();
    let mut waits = Vec::new();
    let mut holds = Vec::new();
    for task in tasks {
        if let Ok(mut times) = task.await {
            holds.append(&mut times.holds);
            handoffs.append(&mut times.handoffs);
            waits.append(&mut times.waits);
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        crate::output::tell!("");
    }
    handoffs.sort();
    waits.sort();
    holds.sort();
    Ok(DemoReport {
        per_worker: counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        overlaps: shared.section.overlaps(),
        counter: shared.section.counter(),
        held: shared.section.held(),
        holds,
        handoffs,
        waits,
        errors: shared.errors.load(Ordering::Relaxed),
        timeouts: shared.timeouts.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        backend: describe(client),
    })
}

fn describe(client: &Client) -> String {
    match (client.is_embedded(), client.nodes()) {
        (true, _) => "the embedded in-process store".to_owned(),
        (false, 1) => "1 Redis node".to_owned(),
        (false, n) => format!("{n} Redis nodes (Redlock)"),
    }
}

/// What one worker timed.
#[derive(Default)]
struct Times {
    holds: Vec<Duration>,
    handoffs: Vec<Duration>,
    waits: Vec<Duration>,
}

async fn worker(
    client: Client,
    shared: Arc<Shared>,
    count: Arc<AtomicU64>,
    options: DemoOptions,
    stop_at: Instant,
) -> Times {
    let mut times = Times::default();
    while Instant::now() < stop_at {
        let asked = Instant::now();
        let attempt = client
            .lock(&options.name)
            .options(options.lock)
            .wait(
                stop_at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
            .acquire()
            .await;
        let guard = match attempt {
            Ok(guard) => guard,
            Err(e) if e.is_not_acquired() => {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        times.waits.push(asked.elapsed());
        let entry = shared.section.enter();
        if let Some(gap) = entry.handoff {
            times.handoffs.push(gap);
        }
        crate::hold::until(Instant::now() + options.hold).await;
        count.fetch_add(1, Ordering::Relaxed);
        times.holds.push(shared.section.leave(entry));
        if guard.release().await.is_err() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    times
}
