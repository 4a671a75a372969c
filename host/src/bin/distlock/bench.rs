//! `distlock bench`: lock latency and throughput against a real `redis-server`, each
//! scenario next to the round-trip floor measured in the same run.
//!
//! **The floor** is what the same round trips cost without the lock library: `SET key token
//! NX PX ttl` followed by the release script by `EVALSHA`, written straight to one socket per
//! node of the scenario (all nodes at once for Redlock) and read back, one pair at a time.
//!
//! **Method.** A scenario never runs on its own: its time is cut into slices (half a second
//! by default) and its slices alternate with slices of the floor (and, where both paths are
//! measured, with the other path's slices): floor, native, guest, floor, native, guest, …
//! Noise from the rest of the machine then lands on all of them alike, and the ratio of a
//! scenario to the floor interleaved with it is the result to read; the raw numbers move
//! with the machine. Latency is recorded per operation in an HDR histogram (µs, 3
//! significant figures).
//!
//! Paths: *native* is the Rust driver ([`Client`]); *guest* is a WebAssembly guest app
//! linked to the lock component, so each call crosses guest → host → lock component, and
//! the component's sockets are the host's `transport` (needs the `component` feature).
//! With `--fair`, A and B also run each path with fair mode on (`fair`, `guest-fair`) in the
//! same interleaved slices, so fair and non-fair rows share one floor. C also runs a `raw` row:
//! as many raw connections as clients doing the floor's pair at once (a raw async client with
//! no lock library), to set C's native row against the same work done without one. M's `raw`
//! row runs the multi-name scripts themselves over raw connections: M's floor is the one-name
//! pair, and a 4-name pair costs the server several times its work, so only the raw row tells
//! what the library adds.
//! With `--cluster`, A and C also run a `cluster` row: the same load through a Redis Cluster
//! of three primaries the bench starts itself (`bench/cluster.rs`), in the same interleaved
//! slices as the single-node rows, so its cost reads against the single-node `native` row of
//! the same slices (A: per operation; C: does the load spread over the primaries?). The
//! floor stays the single node's pair.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) mod cluster;
mod compute;
mod cpu;
mod rw;

use cpu::ProcessCpu;

use crate::demo::{self, DemoOptions};
use distlock_core::LockOptions;
use distlock_host::Client;
use distlock_host::Error as LockError;

/// Why a bench could not run to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A lock operation or connection failed (a lock that is busy is not a failure).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The guest path could not be set up, or a guest call failed.
    #[cfg(feature = "component")]
    #[error("guest path: {0}")]
    Guest(String),
    /// A worker task ended abnormally.
    #[error("bench worker: {0}")]
    Worker(String),
}

/// One row of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BenchResult {
    /// Scenario id and description.
    pub(crate) scenario: String,
    /// `floor`, `native`, `fair`, `polling`, `raw`, `cluster`, `guest` or `guest-fair`.
    pub(crate) path: String,
    /// Lock operations per second: acquire + release pairs, or acquisitions (B).
    pub(crate) ops_per_sec: f64,
    /// Latency quantiles in µs: of one acquire + release, or of the hand-off gap (B).
    pub(crate) p50_us: u64,
    /// 99th percentile, µs.
    pub(crate) p99_us: u64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: u64,
    /// The floor's pairs per second in the slices interleaved with this scenario.
    pub(crate) floor_ops_per_sec: f64,
    /// The floor's p50 (one SET + EVALSHA pair) in those slices, µs.
    pub(crate) floor_p50_us: u64,
    /// `ops_per_sec / floor_ops_per_sec`, for the scenarios whose operation is the floor's
    /// pair (A, C, D, and S's acquire + release of a permit).
    pub(crate) ratio_to_floor: Option<f64>,
    /// B: times a worker found another inside the critical section; S: times a client found
    /// the limit's worth of holders inside already (must be 0).
    pub(crate) overlaps: Option<u64>,
    /// B: whether the racy shared counter equals the acquisitions (it cannot with overlaps).
    pub(crate) counter_exact: Option<bool>,
    /// B: the fewest acquisitions of one worker over the most (1: perfectly even).
    pub(crate) fairness_min_over_max: Option<f64>,
    /// B: the hand-off gap's p50 in round trips (half the floor's SET + EVALSHA pair p50).
    pub(crate) handoff_round_trips: Option<f64>,
    /// B: 99th percentile of one acquire's time, from its call to its return, µs.
    pub(crate) acquire_wait_p99_us: Option<u64>,
    /// B: the holders' mean time in the critical section (the hold they really had), µs.
    pub(crate) mean_hold_us: Option<u64>,
    /// B: the median holder's time in the critical section, µs (how precise the hold is; the
    /// mean also carries the holds a loaded machine stretched).
    pub(crate) hold_p50_us: Option<u64>,
    /// B: issue #14's bound on the acquire-wait p99, 1.5 × workers × (hold + 1 round trip),
    /// with the mean hold measured and half the floor pair's p50 as the round trip, µs.
    pub(crate) acquire_wait_bound_us: Option<u64>,
    /// The bench process's CPU time per operation, µs: what the row's client spends (the
    /// servers not counted).
    pub(crate) client_cpu_us_per_op: Option<f64>,
    /// Fairness, comparisons with the other path.
    pub(crate) note: String,
}

/// What `distlock bench` runs.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// a, b, c, d, s, r, m or all.
    pub(crate) scenario: String,
    /// How long each scenario's measured slices add up to (per path).
    pub(crate) duration: Duration,
    /// Worker counts B runs with, one row set each.
    pub(crate) workers: Vec<usize>,
    /// How every lock of the bench behaves: the one place its options are chosen.
    pub(crate) lock: LockOptions,
    /// Redis URLs: the first for A–C, the first 3 and 5 for D.
    pub(crate) urls: Vec<String>,
    /// Also measure the guest path (when built with the `component` feature).
    pub(crate) guest: bool,
    /// Also measure A and B with fair mode on, beside the non-fair rows.
    pub(crate) fair: bool,
    /// Length of one slice.
    pub(crate) slice: Duration,
    /// A Redis Cluster's URL: A and C also run their load through it (the `cluster` row).
    pub(crate) cluster: Option<String>,
}

/// The lock every scenario takes: a 30 s TTL (no holder gets near it), every other option
/// the default. The one place the bench chooses lock options: a mode switch is one line here.
pub(crate) fn lock_options() -> LockOptions {
    LockOptions {
        ttl: distlock_core::Duration::from_secs(30),
        ..LockOptions::default()
    }
}

/// Scenario M's names per lock.
const MULTI_NAMES: usize = 4;

/// Scenario S's semaphore size.
const SEMAPHORE_PERMITS: u32 = 4;

/// How long a scenario S client waits for a permit: far beyond any hand-off, so a bench
/// that fails to get one is a stuck semaphore, reported as an error.
const SEMAPHORE_WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` the bench started on a free loopback port; stopped on drop.
pub(crate) struct LocalRedis {
    child: Child,
    /// Its URL.
    pub(crate) url: String,
}

impl LocalRedis {
    /// Starts one, or says why it could not.
    pub(crate) fn start() -> std::io::Result<LocalRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server ({e}); install it or pass --redis"),
                )
            })?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(std::io::Error::other(
                    "redis-server did not start within 5 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LocalRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one or more slices of a workload measured.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Operations completed.
    pub(crate) ops: u64,
    /// Time spent measuring.
    pub(crate) elapsed: Duration,
    /// Per-operation latency (or hand-off gap), µs.
    pub(crate) latency: Histogram<u64>,
    /// B: each acquire's time from call to return, µs.
    pub(crate) waits: Histogram<u64>,
    /// Operations per worker (B's fairness).
    pub(crate) per_worker: Vec<u64>,
    /// Times a worker entered the critical section while another was inside (B).
    pub(crate) overlaps: u64,
    /// B's racy shared counter lost an update (only possible with two holders at once).
    pub(crate) lost_updates: bool,
    /// G: values computed (the other calls got a stored value).
    pub(crate) computed: u64,
    /// B: the holders' time in the critical section, summed, and how many holders.
    pub(crate) held: (Duration, u64),
    /// B: each holder's time in the critical section, µs.
    pub(crate) holds: Histogram<u64>,
    /// The bench process's CPU time over the measured slices (`None`: not measured).
    pub(crate) cpu: Option<Duration>,
}

impl Sample {
    fn new() -> Sample {
        Sample {
            ops: 0,
            elapsed: Duration::ZERO,
            // 1 µs to 60 s at 3 significant figures; constant bounds, so this cannot fail.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            waits: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            per_worker: Vec::new(),
            overlaps: 0,
            lost_updates: false,
            computed: 0,
            held: (Duration::ZERO, 0),
            holds: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            cpu: None,
        }
    }

    fn record(&mut self, latency: Duration) {
        let _ = self.latency.record(micros(latency));
    }

    fn record_wait(&mut self, wait: Duration) {
        let _ = self.waits.record(micros(wait));
    }

    fn absorb(&mut self, other: Sample) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        let _ = self.latency.add(other.latency);
        let _ = self.waits.add(other.waits);
        if self.per_worker.len() < other.per_worker.len() {
            self.per_worker.resize(other.per_worker.len(), 0);
        }
        for (mine, theirs) in self.per_worker.iter_mut().zip(other.per_worker) {
            *mine += theirs;
        }
        self.overlaps += other.overlaps;
        self.lost_updates |= other.lost_updates;
        self.computed += other.computed;
        self.held.0 += other.held.0;
        self.held.1 += other.held.1;
        let _ = self.holds.add(other.holds);
        self.cpu = match (self.cpu, other.cpu) {
            (Some(mine), Some(theirs)) => Some(mine + theirs),
            (mine, theirs) => mine.or(theirs),
        };
    }

    /// The client's CPU time per operation, µs (`None`: not measured, or no operation).
    #[must_use]
    pub(crate) fn cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// Operations per second of measuring time.
    #[must_use]
    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }
}

/// A duration as the histograms' µs, within their bounds.
fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 60_000_000)
}

/// The floor: `SET NX PX` + release `EVALSHA` pairs over one raw connection per node. With
/// several nodes each command goes to all of them at once and the pair waits for every reply
/// (what a Redlock round costs without the lock library).
pub(crate) struct Floor {
    nodes: Vec<(TcpStream, String)>,
    set: Vec<u8>,
    release: Vec<u8>,
}

impl Floor {
    /// Connects to each node and loads the release script, as any client would.
    pub(crate) async fn connect(urls: &[String]) -> Result<Floor, Error> {
        let token = b"floor-token-0123456789abcdef";
        let release_script = release_script();
        let set = command(&[b"SET", b"distlock:{floor}", token, b"NX", b"PX", b"30000"]);
        // As the core sends it: nobody waits on the floor's name, so no mark, no push.
        let release = command(&[
            b"EVALSHA",
            &release_script.sha,
            b"4",
            b"distlock:{floor}",
            b"distlock:{floor}:holds",
            b"distlock:{floor}:signal",
            b"distlock:{floor}:waiting",
            token,
            b"0",
            b"1000",
            b"0",
        ]);
        let mut nodes = Vec::new();
        for url in urls {
            nodes.push(raw_connection(url).await?);
        }
        Ok(Floor {
            nodes,
            set,
            release,
        })
    }

    /// Pairs for `duration`, one at a time.
    pub(crate) async fn run(&mut self, duration: Duration) -> Result<Sample, Error> {
        let mut sample = Sample::new();
        let started = Instant::now();
        while started.elapsed() < duration {
            let t = Instant::now();
            for command in [&self.set, &self.release] {
                for (socket, name) in &mut self.nodes {
                    socket
                        .write_all(command)
                        .await
                        .map_err(|e| connect_error(name, e))?;
                }
                for (socket, name) in &mut self.nodes {
                    read_reply(socket)
                        .await
                        .map_err(|e| connect_error(name, e))?;
                }
            }
            sample.record(t.elapsed());
            sample.ops += 1;
        }
        sample.elapsed = started.elapsed();
        Ok(sample)
    }
}

/// A connection to `url` without the lock library, as the floor and the raw clients use:
/// no delay, the release script loaded (as any client would before `EVALSHA`). Also its name.
async fn raw_connection(url: &str) -> Result<(TcpStream, String), Error> {
    let endpoint: distlock_host::Endpoint = url.parse()?;
    let name = endpoint.to_string();
    let load = command(&[b"SCRIPT", b"LOAD", release_script().source.as_bytes()]);
    let mut socket = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| connect_error(&name, e))?;
    socket
        .set_nodelay(true)
        .map_err(|e| connect_error(&name, e))?;
    round_trip(&mut socket, &load)
        .await
        .map_err(|e| connect_error(&name, e))?;
    Ok((socket, name))
}

fn connect_error(endpoint: &str, source: std::io::Error) -> Error {
    Error::Lock(LockError::Connect {
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// One command as RESP: an array of bulk strings, as every client writes it.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes one command and reads exactly one reply.
async fn round_trip(socket: &mut TcpStream, command: &[u8]) -> std::io::Result<()> {
    socket.write_all(command).await?;
    read_reply(socket).await
}

/// Reads exactly one reply (the bench's replies are small, and nothing else is in flight),
/// framed by `redis-protocol` as an independent client would.
async fn read_reply(socket: &mut TcpStream) -> std::io::Result<()> {
    // On the stack, as the lock's own reads are: the floor pays no allocation either.
    let mut pending = [0u8; 1024];
    let mut len = 0;
    loop {
        match redis_protocol::resp2::decode::decode_range(&pending[..len]) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let Some(room) = pending.get_mut(len..).filter(|r| !r.is_empty()) else {
            return Err(std::io::Error::other("reply longer than the bench expects"));
        };
        let n = socket.read(room).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        len += n;
    }
}

/// What the clients of a workload do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Concurrent clients (tasks, or guest threads).
    pub(crate) clients: usize,
    /// Names they spread over (uniformly at random).
    pub(crate) names: u64,
    /// `None`: try-acquire + release at once, latency = the pair. `Some(hold)`: acquire
    /// with a wait, hold for `hold`, release; latency = the hand-off gap (release → next
    /// acquisition, by anyone), with overlaps counted.
    pub(crate) hold: Option<Duration>,
    /// Prefix of the lock names.
    pub(crate) tag: &'static str,
    /// How the lock behaves.
    pub(crate) lock: LockOptions,
    /// `Some(n)`: each name is a semaphore of `n` permits; every client acquires one
    /// (waiting for it), releases it at once, and counts the holders inside: more than `n`
    /// at once is an overlap (must be 0). The guest path has no semaphores yet.
    pub(crate) limit: Option<u32>,
    /// Names each lock takes at once ([`Client::lock_many`]): 1 is a plain lock; more, the
    /// drawn name's `:0`, `:1`, … taken all or nothing. The guest path has no multi-name
    /// locks yet.
    pub(crate) names_per_lock: usize,
    /// Release with [`distlock_host::Guard::release_pipelined`] instead of waiting for the
    /// release's reply (A's `pipelined` row): the reply is read by the next acquire.
    pub(crate) pipelined: bool,
}

/// The name the `i`-th draw of worker `worker` locks.
fn pick(worker: u64, i: &mut u64, names: u64) -> u64 {
    *i = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407 ^ worker);
    (*i >> 33) % names.max(1)
}

/// A workload measured in slices.
pub(crate) enum Workload {
    /// The Rust driver.
    Native {
        /// The row's path: `native`, or `polling` for the baseline without wake-up signals.
        path: &'static str,
        /// Its client (one node, or Redlock).
        client: Client,
        /// What it does.
        load: Load,
    },
    /// Raw clients without the lock library, one connection each: C's `raw` row.
    Raw(RawLoad),
    /// Guest apps linked to the lock component, one instance per client thread.
    #[cfg(feature = "component")]
    Guest(guest::GuestLoad),
    /// The Rust driver's readers and writers of one read-write lock (scenario R).
    ReadWrite {
        /// Its client (one node).
        client: Client,
        /// What it does.
        load: rw::RwLoad,
    },
    /// The Rust driver's get-or-compute callers of one key (scenario G).
    Compute {
        /// Its client (one node).
        client: Client,
        /// What it does.
        load: compute::ComputeLoad,
    },
}

/// What C's (or M's) load costs clients that need no lock library: as many raw connections
/// as the load has clients, each doing the floor's pair (`SET NX PX`, then the release script
/// by `EVALSHA`) on the load's names at once, pipelining nothing; for a multi-name load, the
/// multi-name acquire and release scripts by `EVALSHA` on the same names the native row
/// takes. Every pair is counted, also the few whose acquire found a name taken (two clients
/// drew it at once): its release then answers "not held", the same two round trips.
pub(crate) struct RawLoad {
    clients: Option<Vec<RawClient>>,
    load: Load,
}

struct RawClient {
    socket: TcpStream,
    endpoint: String,
}

impl RawLoad {
    /// One connection per client of `load`, to `url` (the scripts it runs loaded on it).
    pub(crate) async fn connect(url: &str, load: Load) -> Result<RawLoad, Error> {
        let mut clients = Vec::new();
        for _ in 0..load.clients {
            let (mut socket, endpoint) = raw_connection(url).await?;
            if load.names_per_lock > 1 {
                for script in [core_script("multi-acquire"), core_script("multi-release")] {
                    let load = command(&[b"SCRIPT", b"LOAD", script.source.as_bytes()]);
                    round_trip(&mut socket, &load)
                        .await
                        .map_err(|e| connect_error(&endpoint, e))?;
                }
            }
            clients.push(RawClient { socket, endpoint });
        }
        Ok(RawLoad {
            clients: Some(clients),
            load,
        })
    }

    async fn run(&mut self, duration: Duration) -> Result<Sample, Error> {
        let clients = self
            .clients
            .take()
            .ok_or_else(|| Error::Worker("a previous raw slice failed".into()))?;
        let load = self.load;
        if let [_] = clients.as_slice() {
            // Inline, as the floor and the native row of one client run: a spawned task would
            // skip the wake-ups between threads those pay, and win by that alone.
            let client = clients.into_iter().next().expect("one client");
            let (client, sample) = client.slice(load, 0, duration).await;
            self.clients = Some(vec![client]);
            return sample;
        }
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(worker, client)| tokio::spawn(client.slice(load, worker as u64, duration)))
            .collect();
        let mut total = Sample::new();
        let mut elapsed = Duration::ZERO;
        let mut clients = Vec::new();
        for task in tasks {
            let (client, part) = task.await.map_err(|e| Error::Worker(e.to_string()))?;
            let part = part?;
            clients.push(client);
            elapsed = elapsed.max(part.elapsed);
            total.absorb(part);
        }
        total.elapsed = elapsed;
        self.clients = Some(clients);
        Ok(total)
    }
}

impl RawClient {
    async fn slice(
        mut self,
        load: Load,
        worker: u64,
        duration: Duration,
    ) -> (RawClient, Result<Sample, Error>) {
        let result = self.pairs(load, worker, duration).await;
        (self, result)
    }

    async fn pairs(
        &mut self,
        load: Load,
        worker: u64,
        duration: Duration,
    ) -> Result<Sample, Error> {
        let token = format!("raw-token-{worker:016x}");
        let mut sample = Sample::new();
        let mut draw = worker;
        let started = Instant::now();
        while started.elapsed() < duration {
            let name = format!("{}:{}", load.tag, pick(worker, &mut draw, load.names));
            let t = Instant::now();
            let (acquire, release) = if load.names_per_lock > 1 {
                multi_pair(&name, load.names_per_lock, &token)
            } else {
                single_pair(&name, &token)
            };
            for request in [&acquire, &release] {
                round_trip(&mut self.socket, request)
                    .await
                    .map_err(|e| connect_error(&self.endpoint, e))?;
            }
            sample.record(t.elapsed());
            sample.ops += 1;
        }
        sample.elapsed = started.elapsed();
        Ok(sample)
    }
}

/// The floor's pair on `name`: `SET NX PX`, then the release script. Built per pair, as a
/// client builds its commands from the name it is given.
fn single_pair(name: &str, token: &str) -> (Vec<u8>, Vec<u8>) {
    let sha = &release_script().sha;
    let key = format!("distlock:{{{name}}}");
    let set = command(&[
        b"SET",
        key.as_bytes(),
        token.as_bytes(),
        b"NX",
        b"PX",
        b"30000",
    ]);
    let release = command(&[
        b"EVALSHA",
        sha,
        b"4",
        key.as_bytes(),
        format!("{key}:holds").as_bytes(),
        format!("{key}:signal").as_bytes(),
        format!("{key}:waiting").as_bytes(),
        token.as_bytes(),
        b"0",
        b"1000",
        b"0",
    ]);
    (set, release)
}

/// The multi-name scripts' pair on the names the native row takes for `name` (`name:0`, …,
/// already in byte order below 10 names): acquire with the bench's TTL, release with the
/// default wake-up signal, as [`distlock_core::Lock::multi`] encodes them.
fn multi_pair(name: &str, names_per_lock: usize, token: &str) -> (Vec<u8>, Vec<u8>) {
    let keys: Vec<String> = (0..names_per_lock)
        .map(|j| format!("distlock:{{{name}:{j}}}"))
        .collect();
    let count = (2 * names_per_lock).to_string();
    let script = |name: &str, sibling: &str, args: &[&[u8]]| {
        let keys: Vec<String> = keys
            .iter()
            .flat_map(|key| [key.clone(), format!("{key}:{sibling}")])
            .collect();
        let sha = &core_script(name).sha;
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha, count.as_bytes()];
        parts.extend(keys.iter().map(String::as_bytes));
        parts.extend_from_slice(args);
        command(&parts)
    };
    let acquire = script(
        "multi-acquire",
        "fence",
        &[token.as_bytes(), b"30000", b"0"],
    );
    let release = script("multi-release", "signal", &[token.as_bytes(), b"1000"]);
    (acquire, release)
}

/// The core's release script, which the floor and the raw clients run.
fn release_script() -> &'static distlock_core::Script {
    core_script("release")
}

/// The core's script called `name`, which the floor and the raw clients run.
fn core_script(name: &str) -> &'static distlock_core::Script {
    distlock_core::SCRIPTS
        .iter()
        .find(|s| s.name == name)
        .expect("the core has the scripts the bench names")
}

impl Workload {
    /// The row's path: `native`, `fair`, `polling`, `raw`, `guest` or `guest-fair`.
    #[must_use]
    pub(crate) fn path(&self) -> &'static str {
        match self {
            Workload::Native { path, .. } => path,
            Workload::Raw(_) => "raw",
            Workload::ReadWrite { .. } | Workload::Compute { .. } => "native",
            #[cfg(feature = "component")]
            Workload::Guest(guest) if guest.fair() => "guest-fair",
            #[cfg(feature = "component")]
            Workload::Guest(_) => "guest",
        }
    }

    /// Whether its locks are in fair mode.
    fn fair(&self) -> bool {
        match self {
            Workload::Native { load, .. } => load.lock.fair,
            Workload::Raw(_) => false,
            Workload::ReadWrite { .. } | Workload::Compute { .. } => false,
            #[cfg(feature = "component")]
            Workload::Guest(guest) => guest.fair(),
        }
    }

    async fn run(&mut self, duration: Duration) -> Result<Sample, Error> {
        match self {
            Workload::Native { client, load, .. } => native(client, *load, duration).await,
            Workload::Raw(raw) => raw.run(duration).await,
            Workload::ReadWrite { client, load } => rw::run(client, *load, duration).await,
            Workload::Compute { client, load } => compute::run(client, *load, duration).await,
            #[cfg(feature = "component")]
            Workload::Guest(guest) => guest.run(duration).await,
        }
    }
}

async fn native(client: &Client, load: Load, duration: Duration) -> Result<Sample, Error> {
    if let Some(hold) = load.hold {
        let report = demo::run(
            client,
            &DemoOptions {
                workers: load.clients,
                duration,
                hold,
                name: format!("{}:0", load.tag),
                progress: false,
                lock: load.lock,
            },
        )
        .await?;
        let mut sample = Sample::new();
        for gap in &report.handoffs {
            sample.record(*gap);
        }
        for wait in &report.waits {
            sample.record_wait(*wait);
        }
        sample.ops = report.acquisitions();
        sample.elapsed = report.elapsed;
        sample.lost_updates = report.counter != report.acquisitions();
        sample.per_worker = report.per_worker;
        sample.overlaps = report.overlaps;
        sample.held = report.held;
        for hold in &report.holds {
            let _ = sample.holds.record(micros(*hold));
        }
        return Ok(sample);
    }
    let inside = Arc::new(AtomicU32::new(0));
    if load.clients == 1 {
        // Inline, as the floor runs: no task hop to compare against it.
        return native_client(client, load, 0, duration, &inside).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..load.clients as u64 {
        let client = client.clone();
        let inside = Arc::clone(&inside);
        tasks.push(tokio::spawn(async move {
            native_client(&client, load, worker, duration, &inside).await
        }));
    }
    let mut total = Sample::new();
    let mut elapsed = Duration::ZERO;
    for task in tasks {
        let part = task.await.map_err(|e| Error::Worker(e.to_string()))??;
        elapsed = elapsed.max(part.elapsed);
        total.absorb(part);
    }
    total.elapsed = elapsed;
    Ok(total)
}

/// One client's acquire + release pairs; `inside` counts a semaphore's holders in this
/// process (see [`Load::limit`]).
async fn native_client(
    client: &Client,
    load: Load,
    worker: u64,
    duration: Duration,
    inside: &AtomicU32,
) -> Result<Sample, Error> {
    let mut sample = Sample::new();
    let mut draw = worker;
    let confirmed_before = client.pipelined_releases().released;
    let started = Instant::now();
    while started.elapsed() < duration {
        let name = format!("{}:{}", load.tag, pick(worker, &mut draw, load.names));
        let t = Instant::now();
        if let Some(limit) = load.limit {
            let permit = client
                .semaphore(&name, limit)
                .options(load.lock)
                .wait(SEMAPHORE_WAIT)
                .acquire()
                .await?;
            if inside.fetch_add(1, Ordering::SeqCst) >= limit {
                sample.overlaps += 1;
            }
            // Out before the release: the next holder can only come in after it.
            inside.fetch_sub(1, Ordering::SeqCst);
            permit.release().await?;
            sample.record(t.elapsed());
            sample.ops += 1;
            continue;
        }
        let builder = if load.names_per_lock > 1 {
            let names: Vec<String> = (0..load.names_per_lock)
                .map(|j| format!("{name}:{j}"))
                .collect();
            client.lock_many(&names)
        } else {
            client.lock(&name)
        };
        match builder.options(load.lock).try_acquire().await {
            Ok(guard) => {
                if load.pipelined {
                    guard.release_pipelined().await?;
                } else {
                    guard.release().await?;
                }
                sample.record(t.elapsed());
                sample.ops += 1;
            }
            Err(e) if e.is_not_acquired() => {}
            Err(e) => return Err(e.into()),
        }
    }
    sample.elapsed = started.elapsed();
    if load.pipelined {
        // Outside the slice's time: the last release's reply, then every pair's release must
        // have been confirmed — a row of releases that did not run would measure nothing.
        client.settle_releases().await;
        let confirmed = client.pipelined_releases().released - confirmed_before;
        if confirmed != sample.ops {
            return Err(Error::Worker(format!(
                "{confirmed} of {} pipelined releases confirmed: {:?}",
                sample.ops,
                client.pipelined_releases()
            )));
        }
    }
    Ok(sample)
}

/// Runs `floor` and each workload in alternating slices until each has had `total`; returns
/// the floor's sample and each workload's.
pub(crate) async fn interleave(
    label: &str,
    floor: &mut Floor,
    workloads: &mut [Workload],
    total: Duration,
    slice: Duration,
) -> Result<(Sample, Vec<Sample>), Error> {
    let slices = (total.as_secs_f64() / slice.as_secs_f64().max(1e-3))
        .ceil()
        .max(1.0) as u32;
    let slice = total / slices;
    let mut floor_sample = Sample::new();
    let mut samples: Vec<Sample> = workloads.iter().map(|_| Sample::new()).collect();
    for i in 0..slices {
        crate::output::tell_inline!("\r{label}: slice {}/{slices}   ", i + 1);
        floor_sample.absorb(measured(floor.run(slice)).await?);
        for (workload, sample) in workloads.iter_mut().zip(samples.iter_mut()) {
            sample.absorb(measured(workload.run(slice)).await?);
        }
    }
    crate::output::tell_inline!("\r{label}: done{:20}\r", "");
    Ok((floor_sample, samples))
}

/// A slice's sample with the process CPU time it took (only one slice runs at a time).
async fn measured(
    slice: impl std::future::Future<Output = Result<Sample, Error>>,
) -> Result<Sample, Error> {
    let before = ProcessCpu::now();
    let mut sample = slice.await?;
    sample.cpu = ProcessCpu::now()
        .zip(before)
        .map(|(after, before)| after.since(before));
    Ok(sample)
}

/// The rows a scenario runs beside its native row, in the same interleaved slices.
#[derive(Debug, Clone, Copy)]
struct Extra {
    /// `polling`: B's baseline, the same workers with no wake-up signal (retry backoff only).
    polling: bool,
    /// `fair` (and `guest-fair`): the same load with fair mode on.
    fair: bool,
    /// `raw`: C's baseline, as many raw connections as clients doing the floor's pair.
    raw: bool,
    /// `cluster`: the same load through the Redis Cluster, when the bench has one.
    cluster: bool,
    /// `pipelined`: the same load releasing pipelined (the reply read by the next acquire),
    /// reported apart from the native row.
    pipelined: bool,
}

impl Extra {
    const NONE: Extra = Extra {
        polling: false,
        fair: false,
        raw: false,
        cluster: false,
        pipelined: false,
    };
}

/// Runs the scenarios `options` asks for and returns the rows of the table.
pub(crate) async fn run(options: &BenchOptions) -> Result<Vec<BenchResult>, Error> {
    let want = |id: &str| options.scenario == "all" || options.scenario.eq_ignore_ascii_case(id);
    let single = Client::connect([&options.urls[0]]).await?;
    let cluster = match &options.cluster {
        Some(url) => Some(Client::connect([url]).await?),
        None => None,
    };
    #[cfg(feature = "component")]
    let guests = if options.guest {
        Some(guest::Guests::new(&options.urls)?)
    } else {
        None
    };
    #[cfg(not(feature = "component"))]
    if options.guest {
        crate::output::tell!("distlock: built without the component feature: guest rows skipped");
    }

    let mut rows = Vec::new();
    let scenario = async |id: &str,
                          label: String,
                          client: &Client,
                          load: Load,
                          urls: &[String],
                          Extra {
                              polling,
                              fair,
                              raw,
                              cluster: through_cluster,
                              pipelined,
                          }: Extra,
                          rows: &mut Vec<BenchResult>|
           -> Result<(), Error> {
        let fair_load = Load {
            lock: LockOptions {
                fair: true,
                ..load.lock
            },
            ..load
        };
        let mut workloads = vec![Workload::Native {
            path: "native",
            client: client.clone(),
            load,
        }];
        if fair {
            workloads.push(Workload::Native {
                path: "fair",
                client: client.clone(),
                load: fair_load,
            });
        }
        if polling {
            workloads.push(Workload::Native {
                path: "polling",
                client: client.clone(),
                load: Load {
                    lock: LockOptions {
                        wake_signal: None,
                        ..load.lock
                    },
                    ..load
                },
            });
        }
        if raw {
            workloads.push(Workload::Raw(RawLoad::connect(&urls[0], load).await?));
        }
        if pipelined {
            // A client of its own: its connection owes a release between slices, which
            // the other rows' client must not find in its pool.
            let own = Client::connect(urls).await?;
            workloads.push(Workload::Native {
                path: "pipelined",
                client: own,
                load: Load {
                    pipelined: true,
                    ..load
                },
            });
        }
        if let Some(cluster) = cluster.as_ref().filter(|_| through_cluster) {
            workloads.push(Workload::Native {
                path: "cluster",
                client: cluster.clone(),
                load,
            });
        }
        #[cfg(feature = "component")]
        if let Some(guests) = guests
            .as_ref()
            .filter(|_| load.limit.is_none() && load.names_per_lock == 1)
        {
            workloads.push(Workload::Guest(guests.load(urls, load).await?));
            if fair {
                workloads.push(Workload::Guest(guests.load(urls, fair_load).await?));
            }
        }
        let mut floor = Floor::connect(urls).await?;
        let (floor_sample, samples) = interleave(
            id,
            &mut floor,
            &mut workloads,
            options.duration,
            options.slice,
        )
        .await?;
        // A guest row is set against the native row of the same mode.
        let native_of = |fair: bool| {
            workloads
                .iter()
                .zip(&samples)
                .find(|(w, _)| matches!(w.path(), "native" | "fair") && w.fair() == fair)
                .map(|(_, s)| s)
        };
        let rate_of = |path: &str| {
            workloads
                .iter()
                .zip(&samples)
                .find(|(w, _)| w.path() == path)
                .map(|(_, s)| s.ops_per_sec())
        };
        let baselines = Baselines {
            polling: rate_of("polling"),
            raw: rate_of("raw"),
        };
        for (workload, sample) in workloads.iter().zip(&samples) {
            rows.push(row(
                &label,
                workload.path(),
                sample,
                &floor_sample,
                load,
                native_of(workload.fair()),
                baselines,
            ));
        }
        Ok(())
    };

    let one = std::slice::from_ref(&options.urls[0]);
    if want("a") {
        let load = Load {
            clients: 1,
            names: 1,
            hold: None,
            tag: "bench:a",
            lock: options.lock,
            limit: None,
            names_per_lock: 1,
            pipelined: false,
        };
        let label = "A: uncontended acquire + release, 1 node".to_owned();
        let extra = Extra {
            fair: options.fair,
            cluster: true,
            pipelined: true,
            ..Extra::NONE
        };
        scenario("A", label, &single, load, one, extra, &mut rows).await?;
    }
    if want("b") {
        for &workers in &options.workers {
            let load = Load {
                clients: workers,
                names: 1,
                hold: Some(Duration::from_millis(1)),
                tag: "bench:b",
                lock: options.lock,
                limit: None,
                names_per_lock: 1,
                pipelined: false,
            };
            let label = format!("B: {workers} workers, one name, 1 ms hold (hand-off gap)");
            let extra = Extra {
                polling: true,
                fair: options.fair,
                ..Extra::NONE
            };
            scenario("B", label, &single, load, one, extra, &mut rows).await?;
        }
    }
    if want("c") {
        for clients in [1usize, 4, 16] {
            let load = Load {
                clients,
                names: 1024,
                hold: None,
                tag: "bench:c",
                lock: options.lock,
                limit: None,
                names_per_lock: 1,
                pipelined: false,
            };
            let label = format!("C: {clients} clients over 1024 names");
            let extra = Extra {
                raw: true,
                cluster: true,
                ..Extra::NONE
            };
            scenario("C", label, &single, load, one, extra, &mut rows).await?;
        }
    }
    if want("d") {
        for n in [3usize, 5] {
            if options.urls.len() < n {
                crate::output::tell!(
                    "distlock: scenario D over {n} nodes needs {n} --redis URLs; skipped"
                );
                continue;
            }
            let client = Client::connect(&options.urls[..n]).await?;
            let load = Load {
                clients: 1,
                names: 1,
                hold: None,
                tag: "bench:d",
                lock: options.lock,
                limit: None,
                names_per_lock: 1,
                pipelined: false,
            };
            let label = format!("D: uncontended acquire + release, Redlock over {n} nodes");
            let urls = &options.urls[..n];
            // Fair mode is single-node only.
            scenario("D", label, &client, load, urls, Extra::NONE, &mut rows).await?;
        }
    }
    if want("s") {
        // Permits cycled through one semaphore of 4: as many clients as permits (each
        // always finds one free: the script's cost against the floor), then 4× as many
        // (waiting, each release waking one waiter).
        for clients in [4usize, 16] {
            let load = Load {
                clients,
                names: 1,
                hold: None,
                tag: "bench:s",
                lock: options.lock,
                limit: Some(SEMAPHORE_PERMITS),
                names_per_lock: 1,
                pipelined: false,
            };
            let label =
                format!("S: {clients} clients, one semaphore of {SEMAPHORE_PERMITS} permits");
            // The fair semaphore's rows (queued waiters, hand-off on the server) beside the
            // non-fair ones, in the same slices.
            let extra = Extra {
                fair: true,
                ..Extra::NONE
            };
            scenario("S", label, &single, load, one, extra, &mut rows).await?;
        }
    }
    if want("m") {
        // Multi-name locks: MULTI_NAMES names taken and released at once, one script each
        // way, as the floor's pair is two round trips: the ratio reads what the extra names
        // cost. One client (uncontended), then 4 over 1024 draws (rarely contended).
        for clients in [1usize, 4] {
            let load = Load {
                clients,
                names: 1024,
                hold: None,
                tag: "bench:m",
                lock: options.lock,
                limit: None,
                names_per_lock: MULTI_NAMES,
                pipelined: false,
            };
            let label = format!("M: {clients} clients, {MULTI_NAMES} names per lock, 1 node");
            // `raw`: the same scripts without the library. M's floor is the one-name pair;
            // the raw row tells the library's cost apart from the server's 4-name work.
            let extra = Extra {
                raw: true,
                ..Extra::NONE
            };
            scenario("M", label, &single, load, one, extra, &mut rows).await?;
        }
    }
    if want("r") {
        // Scenario R: readers and writers of one name, each acquire with a wait and released
        // at once; reads only first, so the mix's cost reads against it and the floor.
        for (write_every, what) in [(0, "reads only"), (5, "1 write in 5")] {
            let clients = 8;
            let load = rw::RwLoad {
                clients,
                write_every,
                tag: "bench:r",
                lock: options.lock,
            };
            let label = format!("R: {clients} clients, one read-write lock, {what}");
            let workload = Workload::ReadWrite {
                client: single.clone(),
                load,
            };
            let shape = OneName {
                id: "R",
                label: &label,
                clients,
                tag: load.tag,
                lock: load.lock,
            };
            one_name_rows(shape, workload, one, options, &mut rows, |sample| {
                format!(
                    "overlaps {} (a writer beside anyone, or a reader beside a writer)",
                    sample.overlaps
                )
            })
            .await?;
        }
    }
    if want("g") {
        // Scenario G: get-or-compute callers of one key. One client with a value that
        // outlives the run: every call is the cached path (one script, one round trip,
        // against the floor's two). Then 8 clients with a value that lives 10 ms and takes
        // 1 ms to compute: one caller computes after each expiry while the others wait for
        // its value.
        let loads = [
            (1usize, options.duration * 4, "cached value"),
            (
                8,
                Duration::from_millis(10),
                "value lives 10 ms, computed in 1 ms",
            ),
        ];
        for (clients, value_ttl, what) in loads {
            let load = compute::ComputeLoad {
                clients,
                value_ttl,
                compute_time: Duration::from_millis(1),
                tag: if clients == 1 { "bench:g1" } else { "bench:g" },
            };
            let label = format!("G: {clients} clients, get-or-compute of one key, {what}");
            let workload = Workload::Compute {
                client: single.clone(),
                load,
            };
            let shape = OneName {
                id: "G",
                label: &label,
                clients,
                tag: load.tag,
                lock: options.lock,
            };
            one_name_rows(shape, workload, one, options, &mut rows, |sample| {
                format!(
                    "computed {} of {} calls; overlaps {} (two computations at once)",
                    sample.computed, sample.ops, sample.overlaps
                )
            })
            .await?;
        }
    }
    crate::output::tell!("");
    Ok(rows)
}

/// The clients' samples summed into one: per-client counts kept apart (the spread), the
/// measuring time the longest client's (they ran at once).
pub(crate) async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Result<Sample, Error>>>,
) -> Result<Sample, Error> {
    let mut total = Sample::new();
    let mut elapsed = Duration::ZERO;
    for task in tasks {
        let part = task.await.map_err(|e| Error::Worker(e.to_string()))??;
        elapsed = elapsed.max(part.elapsed);
        total.per_worker.push(part.ops);
        total.absorb(part);
    }
    total.elapsed = elapsed;
    Ok(total)
}

/// A one-name scenario whose workload checks its own section (R, G).
struct OneName<'a> {
    id: &'static str,
    label: &'a str,
    clients: usize,
    tag: &'static str,
    lock: LockOptions,
}

/// Runs `workload` interleaved with the floor on `one` and adds its rows: each with the
/// overlaps the holders counted and `note` (what the row counted), then the per-client
/// spread.
async fn one_name_rows(
    shape: OneName<'_>,
    workload: Workload,
    one: &[String],
    options: &BenchOptions,
    rows: &mut Vec<BenchResult>,
    note: impl Fn(&Sample) -> String,
) -> Result<(), Error> {
    let mut workloads = vec![workload];
    let mut floor = Floor::connect(one).await?;
    let (floor_sample, samples) = interleave(
        shape.id,
        &mut floor,
        &mut workloads,
        options.duration,
        options.slice,
    )
    .await?;
    for sample in &samples {
        let as_load = Load {
            clients: shape.clients,
            names: 1,
            hold: None,
            tag: shape.tag,
            lock: shape.lock,
            limit: None,
            names_per_lock: 1,
            pipelined: false,
        };
        let no_baselines = Baselines {
            polling: None,
            raw: None,
        };
        let mut r = row(
            shape.label,
            "native",
            sample,
            &floor_sample,
            as_load,
            None,
            no_baselines,
        );
        let min = sample.per_worker.iter().min().copied().unwrap_or(0);
        let max = sample.per_worker.iter().max().copied().unwrap_or(0);
        r.overlaps = Some(sample.overlaps);
        r.note = format!("{}; per client min {min} / max {max}", note(sample));
        rows.push(r);
    }
    Ok(())
}

/// The baselines a scenario ran beside its rows, in the same slices: operations per second.
#[derive(Debug, Clone, Copy)]
struct Baselines {
    /// B's polling workers.
    polling: Option<f64>,
    /// C's raw clients.
    raw: Option<f64>,
}

/// One row: `native` is the native path's sample of the same scenario.
fn row(
    label: &str,
    path: &str,
    sample: &Sample,
    floor: &Sample,
    load: Load,
    native: Option<&Sample>,
    baselines: Baselines,
) -> BenchResult {
    let floor_p50 = floor.quantile(0.5);
    let native_p50 = native.map_or(0, |s| s.quantile(0.5));
    let mut notes = Vec::new();
    let contended = load.hold.is_some();
    // The floor's pair is two round trips.
    let round_trips = 2.0 * sample.quantile(0.5) as f64 / floor_p50.max(1) as f64;
    let min = sample.per_worker.iter().min().copied().unwrap_or(0);
    let max = sample.per_worker.iter().max().copied().unwrap_or(0);
    let fairness = min as f64 / max.max(1) as f64;
    let wait_p99 = (!sample.waits.is_empty()).then(|| sample.waits.value_at_quantile(0.99));
    let mean_hold = crate::demo::mean_hold(sample.held).map(micros);
    let hold_p50 = (!sample.holds.is_empty()).then(|| sample.holds.value_at_quantile(0.5));
    let wait_bound = mean_hold
        .map(|hold| (1.5 * load.clients as f64 * (hold as f64 + floor_p50 as f64 / 2.0)) as u64);
    let ratio_to_floor = if contended {
        notes.push(format!(
            "hand-off p50 {round_trips:.1} round trips; per worker min {min} / max {max} = {fairness:.2}; hold p50 {} µs, mean {} µs; acquire wait p99 {} µs (bound {} µs); overlaps {}; counter {}",
            hold_p50.map_or("-".to_owned(), |h| h.to_string()),
            mean_hold.map_or("-".to_owned(), |h| h.to_string()),
            wait_p99.map_or("-".to_owned(), |w| w.to_string()),
            wait_bound.map_or("-".to_owned(), |b| b.to_string()),
            sample.overlaps,
            if sample.lost_updates { "LOST UPDATES" } else { "exact" },
        ));
        if let Some(polling) = baselines.polling.filter(|_| path != "polling") {
            notes.push(format!(
                "{:.0} acquisitions/s against {polling:.0} polling ({:.2}×)",
                sample.ops_per_sec(),
                sample.ops_per_sec() / polling.max(1e-9)
            ));
        }
        None
    } else {
        Some(sample.ops_per_sec() / floor.ops_per_sec().max(1e-9))
    };
    if let Some(raw) = baselines.raw.filter(|_| path != "raw") {
        notes.push(format!(
            "{:.2}× the raw clients' pairs/s ({} connections)",
            sample.ops_per_sec() / raw.max(1e-9),
            load.clients
        ));
    }
    if load.names_per_lock > 1 {
        notes.push(format!(
            "{} names taken and released at once per operation (one script each way)",
            load.names_per_lock
        ));
    }
    if let Some(limit) = load.limit {
        notes.push(format!(
            "permits cycled through a semaphore of {limit}; more than {limit} holders at once: {} times",
            sample.overlaps
        ));
    }
    if let Some(native) = native.filter(|_| path == "cluster") {
        notes.push(format!(
            "{:.2}× the single-node native row's ops/s, p50 {:.2}× its p50, in the same slices ({} primaries)",
            sample.ops_per_sec() / native.ops_per_sec().max(1e-9),
            sample.quantile(0.5) as f64 / native_p50.max(1) as f64,
            cluster::PRIMARIES
        ));
    }
    if let Some(native) = native.filter(|_| path == "pipelined") {
        notes.push(format!(
            "release pipelined (its reply read by the next acquire; every release confirmed): {:.2}× the native row's pairs/s, p50 {:.2}× its p50, in the same slices",
            sample.ops_per_sec() / native.ops_per_sec().max(1e-9),
            sample.quantile(0.5) as f64 / native_p50.max(1) as f64,
        ));
    }
    if path.starts_with("guest") && native_p50 > 0 {
        notes.push(format!(
            "p50 = {:.2}× the native path's p50 in the same slices",
            sample.quantile(0.5) as f64 / native_p50 as f64
        ));
    }
    if let Some(cpu) = sample.cpu_us_per_op() {
        let against_native = native
            .filter(|_| path != "native")
            .and_then(Sample::cpu_us_per_op)
            .map_or(String::new(), |native| {
                format!(" ({:.2}× the native path's)", cpu / native.max(1e-9))
            });
        notes.push(format!("client CPU {cpu:.1} µs per op{against_native}"));
    }
    BenchResult {
        scenario: label.to_owned(),
        path: path.to_owned(),
        ops_per_sec: sample.ops_per_sec(),
        p50_us: sample.quantile(0.5),
        p99_us: sample.quantile(0.99),
        p999_us: sample.quantile(0.999),
        floor_ops_per_sec: floor.ops_per_sec(),
        floor_p50_us: floor_p50,
        ratio_to_floor,
        overlaps: (load.hold.is_some() || load.limit.is_some()).then_some(sample.overlaps),
        counter_exact: load.hold.map(|_| !sample.lost_updates),
        fairness_min_over_max: contended.then_some(fairness),
        handoff_round_trips: contended.then_some(round_trips),
        acquire_wait_p99_us: wait_p99.filter(|_| contended),
        mean_hold_us: mean_hold.filter(|_| contended),
        hold_p50_us: hold_p50.filter(|_| contended),
        acquire_wait_bound_us: wait_bound.filter(|_| contended),
        client_cpu_us_per_op: sample.cpu_us_per_op(),
        note: notes.join("; "),
    }
}

/// The results as a table.
#[must_use]
pub(crate) fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<58} {:<10} {:>9} {:>7} {:>7} {:>8} {:>9} {:>7} {:>6}\n",
        "scenario", "path", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "floor/s", "flr p50", "÷floor"
    );
    for r in results {
        out.push_str(&format!(
            "{:<58} {:<10} {:>9.0} {:>7} {:>7} {:>8} {:>9.0} {:>7} {:>6}\n",
            r.scenario,
            r.path,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.floor_ops_per_sec,
            r.floor_p50_us,
            r.ratio_to_floor.map_or("-".into(), |x| format!("{x:.2}")),
        ));
        if !r.note.is_empty() {
            out.push_str(&format!("    {}\n", r.note));
        }
    }
    out
}

/// The guest path: guest apps linked to the lock component, on their own threads.
#[cfg(feature = "component")]
pub(crate) mod guest {
    use super::{Error, Load, Sample, micros, pick};
    use crate::demo::Section;
    use distlock_host::component::{
        Adapter, AdapterOptions, ClientHandle, Guest, Limits, LockInstance, PASSTHROUGH_WASM,
        Serve, wit,
    };
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The compiled components, shared by every guest workload of a run.
    pub(crate) struct Guests {
        adapter: Adapter,
        guest: Guest,
    }

    fn adapter_error(e: impl std::fmt::Display) -> Error {
        Error::Guest(e.to_string())
    }

    impl Guests {
        /// Compiles the lock component and the guest app, for `urls`.
        pub(crate) fn new(urls: &[String]) -> Result<Guests, Error> {
            let adapter = Adapter::new(
                AdapterOptions {
                    nodes: urls.to_vec(),
                    ..AdapterOptions::default()
                },
                tokio::runtime::Handle::current(),
            )
            .map_err(adapter_error)?;
            let guest = adapter.load(PASSTHROUGH_WASM).map_err(adapter_error)?;
            Ok(Guests { adapter, guest })
        }

        /// One guest instance per client of `load`, each with a client open on `urls`.
        pub(crate) async fn load(&self, urls: &[String], load: Load) -> Result<GuestLoad, Error> {
            let (adapter, guest, urls) = (self.adapter.clone(), self.guest.clone(), urls.to_vec());
            let workers = tokio::task::spawn_blocking(move || {
                (0..load.clients)
                    .map(|_| {
                        let mut instance = adapter
                            .guest_exports(&guest, Serve::Linked, Limits::default())
                            .map_err(adapter_error)?;
                        let client = instance
                            .open(&wit::Config {
                                nodes: urls.clone(),
                                key_prefix: None,
                                ttl_ms: Some(load.lock.ttl.as_millis()),
                                fenced: load.lock.fenced,
                                request_timeout_ms: Some(load.lock.request_timeout.as_millis()),
                                fair: Some(load.lock.fair),
                                no_scripts: None,
                            })
                            .map_err(adapter_error)?;
                        Ok(Worker { instance, client })
                    })
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await
            .map_err(adapter_error)??;
            Ok(GuestLoad {
                workers: Some(workers),
                load,
            })
        }
    }

    struct Worker {
        instance: LockInstance,
        client: ClientHandle,
    }

    /// Guest instances doing a [`Load`].
    pub(crate) struct GuestLoad {
        workers: Option<Vec<Worker>>,
        load: Load,
    }

    impl GuestLoad {
        /// Whether its locks are in fair mode.
        pub(super) fn fair(&self) -> bool {
            self.load.lock.fair
        }

        /// One slice: every guest on its own thread for `duration`.
        pub(super) async fn run(&mut self, duration: Duration) -> Result<Sample, Error> {
            let mut workers = self
                .workers
                .take()
                .ok_or_else(|| adapter_error("a previous slice failed"))?;
            let load = self.load;
            let (workers, result) = tokio::task::spawn_blocking(move || {
                let section = Arc::new(Section::new());
                let parts: Vec<Result<Sample, Error>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = workers
                        .iter_mut()
                        .enumerate()
                        .map(|(index, worker)| {
                            let section = Arc::clone(&section);
                            // Named, so a profile tells the guests' threads from the runtime's.
                            std::thread::Builder::new()
                                .name(format!("guest-{index}"))
                                .spawn_scoped(scope, move || {
                                    worker.slice(load, index as u64, duration, &section)
                                })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| match h {
                            Ok(h) => h
                                .join()
                                .unwrap_or_else(|_| Err(adapter_error("a guest thread panicked"))),
                            Err(e) => Err(adapter_error(format!("starting a guest thread: {e}"))),
                        })
                        .collect()
                });
                let mut total = Sample::new();
                let mut elapsed = Duration::ZERO;
                let mut per_worker = Vec::new();
                for part in parts {
                    match part {
                        Ok(part) => {
                            elapsed = elapsed.max(part.elapsed);
                            per_worker.push(part.ops);
                            total.absorb(Sample {
                                per_worker: Vec::new(),
                                ..part
                            });
                        }
                        Err(e) => return (workers, Err(e)),
                    }
                }
                total.elapsed = elapsed;
                total.per_worker = per_worker;
                total.overlaps = section.overlaps();
                total.lost_updates = load.hold.is_some() && section.counter() != total.ops;
                total.held = section.held();
                (workers, Ok(total))
            })
            .await
            .map_err(adapter_error)?;
            self.workers = Some(workers);
            result
        }
    }

    impl Worker {
        fn slice(
            &mut self,
            load: Load,
            index: u64,
            duration: Duration,
            section: &Section,
        ) -> Result<Sample, Error> {
            let mut sample = Sample::new();
            let mut draw = index;
            let started = Instant::now();
            let stop_at = started + duration;
            while Instant::now() < stop_at {
                let name = format!("{}:{}", load.tag, pick(index, &mut draw, load.names));
                let t = Instant::now();
                let acquired = match load.hold {
                    None => self.instance.try_acquire(&self.client, &name),
                    Some(_) => self.instance.acquire(
                        &self.client,
                        &name,
                        stop_at
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(1)),
                    ),
                };
                let lease = match acquired {
                    Ok(lease) => lease,
                    Err(e) if matches!(e.lock_error(), Some(wit::Error::NotAcquired(_))) => {
                        continue;
                    }
                    Err(e) => return Err(adapter_error(e)),
                };
                if let Some(hold) = load.hold {
                    sample.record_wait(t.elapsed());
                    let entry = section.enter();
                    if let Some(gap) = entry.handoff {
                        sample.record(gap);
                    }
                    crate::hold::until_blocking(Instant::now() + hold);
                    let _ = sample.holds.record(micros(section.leave(entry)));
                }
                let released = self.instance.release(&lease);
                self.instance.drop_lease(lease).map_err(adapter_error)?;
                released.map_err(adapter_error)?;
                if load.hold.is_none() {
                    sample.record(t.elapsed());
                }
                sample.ops += 1;
            }
            sample.elapsed = started.elapsed();
            Ok(sample)
        }
    }
}
