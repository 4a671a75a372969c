//! The simulated world: clocks, network, model nodes and clients, driven by one event queue
//! in true time (microseconds). One seeded generator decides everything, in event order, so a
//! run replays exactly.
//!
//! Each client is a driver of the real core machines, as the host would be: one connection
//! per node with a [`Handshake`], machines built from what the handshake learned, every
//! transmit written to its node's connection, `handle_input`/`handle_timeout`/
//! `handle_disconnect` fed as events arrive, and before a connection is reused the replies
//! still owed to earlier machines ([`Machine::owed_replies`]) are framed and discarded.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use distlock_core::HandshakeOptions;
use distlock_core::SplitMix64;
use distlock_core::resp::frame_len;
use distlock_core::{
    Acquire, Drift, Duration, Error, Extend, ExtendOutcome, Handshake, Instant, Jitter, KeyLayout,
    Lock, LockOptions, LostReason, NodeState, OwedRelease, PipelinedRelease, RECONNECT, Release,
    ReleaseCheck, Renewal, RenewalEvent, RetryPolicy, Scripts, ServerInfo, Session, SessionOptions,
    Token, quorum,
};
use distlock_model::{ModelConfig, ModelConnection, ModelFaults, ModelNode, Scripting, Stage};

use super::check::{Checker, Property, Stats, Violation, us};
use super::params::{Faults, Params, Variant};

/// Machine capacity: up to 5 nodes.
const CAP: usize = 5;
/// The one lock every client contends for.
const LOCK_NAME: &[u8] = b"sim";
const LOCK_KEY: &[u8] = b"distlock:{sim}";
/// Fair mode's queue of the lock, and the prefix of its waiters' liveness keys.
const QUEUE_KEY: &[u8] = b"distlock:{sim}:queue";
const ALIVE_PREFIX: &[u8] = b"distlock:{sim}:alive:";
/// How many trace lines a failure report shows.
pub const TRACE_TAIL: usize = 120;

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub params: Params,
    /// Lock operations run to their outcome.
    pub ops: u64,
    /// True time simulated, µs.
    pub sim_us: u64,
    /// From the faults' end (the drain) until every client's final acquire and release were
    /// done, µs.
    pub heal_us: Option<u64>,
    pub violation: Option<Violation>,
    pub stats: Stats,
    /// The trace (only when asked for).
    pub trace: Vec<String>,
}

impl Report {
    /// A failure report: what broke, the params, the replay command and the trace's tail.
    pub fn describe(&self, trace_tail: usize) -> String {
        let mut s = String::new();
        if let Some(v) = &self.violation {
            let _ = writeln!(
                s,
                "SIMULATION VIOLATION: {} at t={}\n  {}",
                v.property.name(),
                us(v.at),
                v.detail
            );
        }
        let _ = writeln!(s, "  params: {}", self.params);
        let _ = writeln!(s, "  replay: {}", self.params.replay_command());
        let _ = writeln!(
            s,
            "  after {} ops, {} simulated; {:?}",
            self.ops,
            us(self.sim_us),
            self.stats
        );
        if let Some(heal) = self.heal_us {
            let _ = writeln!(
                s,
                "  after the faults stopped, every client acquired and released within {}",
                us(heal)
            );
        }
        if !self.trace.is_empty() {
            let skip = self.trace.len().saturating_sub(trace_tail);
            let _ = writeln!(
                s,
                "  trace (last {} of {} events; true time, then the actor's own clock):",
                self.trace.len() - skip,
                self.trace.len()
            );
            for line in &self.trace[skip..] {
                let _ = writeln!(s, "    {line}");
            }
        }
        s
    }
}

/// Runs one simulation. With `tracing`, every event is recorded in the report's trace.
pub fn run(params: &Params, tracing: bool) -> Report {
    let trace = Rc::new(RefCell::new(Vec::new()));
    let sink = tracing.then(|| Rc::clone(&trace));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new(*params, sink);
        world.run();
        let heal = world
            .drain
            .as_ref()
            .filter(|_| world.clients.iter().all(|c| c.phase == Phase::Done))
            .map(|d| world.now - d.start);
        (
            world.ops,
            world.now,
            heal,
            world.check.violation.take(),
            world.check.stats,
        )
    }));
    let trace = trace.take();
    match result {
        Ok((ops, now, heal_us, violation, stats)) => Report {
            params: *params,
            ops,
            sim_us: now,
            heal_us,
            violation,
            stats,
            trace,
        },
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Report {
                params: *params,
                ops: 0,
                sim_us: 0,
                heal_us: None,
                violation: Some(Violation {
                    property: Property::NoStuckMachines,
                    at: 0,
                    detail: format!("panic: {message}"),
                }),
                stats: Stats::default(),
                trace,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------------------

/// A monotonic clock: `offset + t * (1 + ppm / 10^6)` microseconds at true time `t`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    offset: u64,
    ppm: i64,
}

impl Clock {
    fn local_us(&self, t: u64) -> u64 {
        let t = i128::from(t);
        (i128::from(self.offset) + t + t * i128::from(self.ppm) / 1_000_000) as u64
    }

    fn ms(&self, t: u64) -> u64 {
        self.local_us(t) / 1000
    }

    /// The earliest true time at which this clock reads `local_ms` or later.
    fn true_at(&self, local_ms: u64) -> u64 {
        let target = u64::try_from(u128::from(local_ms) * 1000).unwrap_or(u64::MAX / 2);
        if self.local_us(0) >= target {
            return 0;
        }
        let base = i128::from(target) - i128::from(self.offset);
        let mut t = (base * 1_000_000 / (1_000_000 + i128::from(self.ppm))).max(0) as u64;
        while self.local_us(t) < target {
            t += 1;
        }
        while t > 0 && self.local_us(t - 1) >= target {
            t -= 1;
        }
        t
    }
}

// ---------------------------------------------------------------------------------------
// The world's parts
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Ev {
    ToNode {
        conn: u64,
        bytes: Vec<u8>,
    },
    ToClient {
        conn: u64,
        bytes: Vec<u8>,
    },
    /// The client learns its connection is gone.
    Lost {
        client: usize,
        node: usize,
        conn: u64,
    },
    ClientTick {
        client: usize,
        generation: u64,
    },
    /// A blocked pop's timeout on the node.
    NodeTick {
        node: usize,
        conn: u64,
    },
    NodeUp {
        node: usize,
        epoch: u64,
    },
    LoadingOff {
        node: usize,
        epoch: u64,
    },
    ReadonlyOff {
        node: usize,
    },
    Crash,
    Partition,
    Flush,
    Readonly,
    Pause,
    /// Fair runs: a waiting client stops (a crash, as far as the queue can tell) for a while.
    WaiterCrash,
    /// A client's write reaches the protected resource.
    Write {
        client: usize,
        lease: usize,
        fence: Option<u64>,
    },
}

/// One TCP connection (or a stray one replaying a request, `client: None`).
#[derive(Debug)]
struct Conn {
    client: Option<usize>,
    node: usize,
    /// The client's side: it writes and reads.
    alive: bool,
    /// The node's side still reads requests already on their way (a half-open connection
    /// the client gave up on).
    node_reads: bool,
    /// FIFO per direction: the latest delivery time scheduled, to node and to client.
    ready: [u64; 2],
    /// What a partition does to it: (partition id, dies).
    fate: Option<(u64, bool)>,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Node(usize),
    Client(usize),
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    id: u64,
    target: Target,
    start: u64,
    end: u64,
}

struct NodeConn {
    mc: ModelConnection,
    client: Option<usize>,
    blocked_since: u64,
}

struct Node {
    model: ModelNode,
    clock: Clock,
    up: bool,
    /// Bumped at each crash: stale `NodeUp`/`LoadingOff` events are ignored.
    epoch: u64,
    conns: BTreeMap<u64, NodeConn>,
    next_block: u64,
    /// True time the node is back (and done loading), for the drain's bound.
    busy_until: u64,
    /// While the node is down: the lock key it held when it crashed (value, true µs its
    /// expiry passes). Nobody can take the lock on a node that is down, and a delayed
    /// restart brings it back only after that key would have expired, so for property 6 the
    /// node goes on holding it until then.
    shadow: Option<(Vec<u8>, u64)>,
}

struct Link {
    conn: Option<u64>,
    hs: Option<Handshake>,
    ready: bool,
    /// What the last handshake learned; `known` once one completed.
    info: ServerInfo,
    known: bool,
    /// Bytes of a machine written while the handshake runs.
    pending: Vec<Vec<u8>>,
    /// Replies owed to machines that have ended, to discard.
    skip: u32,
    /// Handover mode (even-numbered clients): replies owed to the ended machine, for the next
    /// machine to discard itself (`Machine::discard_replies`), and the bytes that arrived
    /// between the two machines, for the next one to read.
    carry: u32,
    held: Vec<u8>,
    inbuf: Vec<u8>,
    /// A pipelined release written on the connection, for the next machine to read first
    /// (`Machine::owe_release`); the bytes that arrive before that machine wait in `held`.
    owed_release: Option<OwedRelease>,
    /// Connects reported to the session as started and not yet as ended: the handshake
    /// under way, if any, is the only one (checked after every step).
    reported: u32,
}

enum Op {
    Acquire(Box<Acquire<CAP>>),
    Release(Box<Release<CAP>>),
    Extend(Box<Extend<CAP>>),
}

/// Runs `$body` with `$m` bound to the machine, whatever its operation.
macro_rules! with_op {
    ($op:expr, $m:ident => $body:expr) => {
        match $op {
            Op::Acquire($m) => $body,
            Op::Release($m) => $body,
            Op::Extend($m) => $body,
        }
    };
}

struct Running {
    op: Op,
    started: u64,
    /// Client ms by which the machine must have its outcome.
    bound: u64,
}

struct Held {
    lease: usize,
    token: Token,
    fence: Option<u64>,
    valid_until: u64,
    cs_end: u64,
    /// Client ms of writes still to do, latest first.
    writes: Vec<u64>,
    extend_at: Option<u64>,
    extends_left: u32,
    /// The renewal schedule of a lease held longer than its TTL; `None` for holders that
    /// extend by hand (or not at all), and once the release started.
    renewal: Option<Renewal>,
    /// The schedule reported `Lost`: the client no longer acts as the holder.
    lost: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Idle { until: u64 },
    Acquiring,
    Holding,
    Extending,
    Releasing,
    Done,
}

struct Client {
    clock: Clock,
    lock: Lock,
    wait: Duration,
    think_max: u64,
    links: Vec<Link>,
    /// Which nodes to (re)connect and when: the core's policy, driven as the drivers do.
    session: Session<CAP>,
    phase: Phase,
    run: Option<Running>,
    held: Option<Held>,
    /// The final acquire (after the faults healed) is running or done.
    final_round: bool,
    paused_until: u64,
    tick_gen: u64,
    tick_at: u64,
}

struct Drain {
    start: u64,
    /// The final acquires' wait, ms.
    wait_ms: u64,
}

struct World {
    p: Params,
    rng: SplitMix64,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    partitions: Vec<Partition>,
    check: Checker,
    ops: u64,
    tokens: u64,
    /// Tokens whose release returned confirmed (property 10).
    released: std::collections::HashSet<Vec<u8>>,
    drain: Option<Drain>,
    max_ttl: u64,
    max_rt: u64,
    max_cap: u64,
    rho: u32,
    /// [`healthy`]: property 4's renewal clause (a renewing holder keeps its lease) applies.
    healthy: bool,
    keep_fence: bool,
    delayed_restart: bool,
    /// Fair runs: the queue's state as the checks of property 9 follow it.
    fair: FairWatch,
    buf: Vec<u8>,
    trace: Option<Rc<RefCell<Vec<String>>>>,
}

impl World {
    fn new(p: Params, trace: Option<Rc<RefCell<Vec<String>>>>) -> Self {
        let mut rng = SplitMix64::new(p.seed ^ 0x5157_4c4f_434b_0001);
        let rho = match p.variant {
            Variant::WideClocksDefaultDrift => 10_000,
            Variant::ZeroDrift => p.faults.drift_ppm.max(2_000),
            _ => p.faults.drift_ppm.min(10_000),
        };
        let rho_i = i64::from(rho);
        let clock = |rng: &mut SplitMix64| Clock {
            offset: rng.between(0, 1_000_000_000),
            ppm: rng.between(0, 2 * rho_i as u64) as i64 - rho_i,
        };
        let server_configs: &[ModelConfig] = if p.scriptless {
            // The servers a scriptless lock runs on, with scripting gone or forbidden.
            &[
                ModelConfig::redis(8, 4, 0).with_scripting(Scripting::Absent),
                ModelConfig::redis(8, 4, 0).with_scripting(Scripting::Forbidden),
                ModelConfig::valkey(9, 0, 0).with_scripting(Scripting::Absent),
                ModelConfig::valkey(9, 0, 0).with_scripting(Scripting::Forbidden),
            ]
        } else {
            &[
                ModelConfig::redis(5, 0, 14),
                ModelConfig::redis(6, 2, 14),
                ModelConfig::redis(7, 2, 4),
                ModelConfig::redis(8, 4, 0),
                ModelConfig::valkey(8, 1, 1),
                ModelConfig::valkey(9, 0, 0),
            ]
        };
        let faults = ModelFaults {
            release_ignores_token: p.variant == Variant::BrokenRelease,
            extend_ignores_token: p.variant == Variant::BrokenExtend,
            handoff_ignores_liveness: p.variant == Variant::HandoffWithoutLiveness,
            wake_before_handoff: p.variant == Variant::WakeBeforeHandoff,
            ..ModelFaults::default()
        };
        let nodes: Vec<Node> = (0..p.nodes)
            .map(|_| {
                let config =
                    server_configs[rng.between(0, server_configs.len() as u64 - 1) as usize];
                let mut model = ModelNode::with_config(config);
                model.set_faults(faults);
                Node {
                    model,
                    clock: clock(&mut rng),
                    up: true,
                    epoch: 0,
                    conns: BTreeMap::new(),
                    next_block: 0,
                    busy_until: 0,
                    shadow: None,
                }
            })
            .collect();
        let fenced = p.fenced && p.variant != Variant::UnfencedPauses && !p.scriptless;
        let drift = match p.variant {
            Variant::ZeroDrift => Drift {
                per_million: 0,
                fixed: Duration::ZERO,
            },
            Variant::WideClocksDefaultDrift => Drift::default(),
            // Each clock within ±ρ: the relative drift of two clocks is up to 2ρ.
            _ => Drift {
                per_million: (2 * rho).max(10_000),
                fixed: Duration::from_millis(2),
            },
        };
        let (mut max_ttl, mut max_rt, mut max_cap) = (0, 0, 0);
        let clients: Vec<Client> = (0..p.clients)
            .map(|_| {
                let ttl = match rng.between(0, 9) {
                    0..=2 => rng.between(20, 200),
                    3..=6 => rng.between(200, 1000),
                    _ => rng.between(1000, 5000),
                };
                let request_timeout = rng.between(20, 300);
                let base = rng.between(1, 20);
                let cap = rng.between((2 * base).max(20), 500);
                let jitter = match rng.between(0, 9) {
                    0 => Jitter::None,
                    1..=3 => Jitter::Decorrelated,
                    _ => Jitter::Full,
                };
                let options = LockOptions {
                    ttl: Duration::from_millis(ttl),
                    fenced,
                    // Drawn in every run, so the other draws stay as they were.
                    reentrant: rng.between(0, 3) == 0 && !p.scriptless,
                    wake_signal: (rng.between(0, 9) < 7)
                        .then(|| Duration::from_millis(rng.between(100, 2000))),
                    retry: RetryPolicy {
                        base: Duration::from_millis(base),
                        cap: Duration::from_millis(cap),
                        jitter,
                        max_attempts: None,
                    },
                    request_timeout: Duration::from_millis(request_timeout),
                    drift,
                    fair: p.fair,
                    scripts: if p.scriptless {
                        Scripts::Never
                    } else {
                        Scripts::Auto
                    },
                };
                max_ttl = max_ttl.max(ttl);
                max_rt = max_rt.max(request_timeout);
                max_cap = max_cap.max(cap);
                let wait = if rng.between(0, 4) == 0 {
                    0
                } else {
                    rng.between(0, 4 * ttl)
                };
                Client {
                    clock: clock(&mut rng),
                    lock: Lock::new(KeyLayout::default(), LOCK_NAME, options)
                        .expect("valid options"),
                    wait: Duration::from_millis(wait),
                    think_max: rng.between(0, ttl),
                    links: (0..p.nodes)
                        .map(|_| Link {
                            conn: None,
                            hs: None,
                            ready: false,
                            info: ServerInfo::default(),
                            known: false,
                            pending: Vec::new(),
                            skip: 0,
                            carry: 0,
                            held: Vec::new(),
                            inbuf: Vec::new(),
                            owed_release: None,
                            reported: 0,
                        })
                        .collect(),
                    session: Session::new(
                        p.nodes,
                        SessionOptions::new(Duration::from_millis(request_timeout)),
                        rng.next_u64(),
                    )
                    .expect("a session over the run's nodes"),
                    phase: Phase::Connecting,
                    run: None,
                    held: None,
                    final_round: false,
                    paused_until: 0,
                    tick_gen: 0,
                    tick_at: u64::MAX,
                }
            })
            .collect();
        World {
            p,
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            clients,
            conns: BTreeMap::new(),
            next_conn: 0,
            partitions: Vec::new(),
            check: Checker::new(p.clients),
            ops: 0,
            tokens: 0,
            released: std::collections::HashSet::new(),
            drain: None,
            max_ttl,
            max_rt,
            max_cap,
            rho,
            healthy: healthy(&p.faults),
            keep_fence: p.variant != Variant::LostFenceCounter,
            delayed_restart: p.variant != Variant::ImmediateRestart,
            fair: FairWatch::default(),
            buf: vec![0; 4096],
            trace,
        }
    }

    // ---- plumbing ----

    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn rand(&mut self, low: u64, high: u64) -> u64 {
        self.rng.between(low, high)
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.between(0, 999) < u64::from(per_mille)
    }

    /// One-way latency, µs.
    fn latency(&mut self) -> u64 {
        let ordinary = self.rand(20, u64::from(self.p.faults.latency_us.max(20)));
        // Spikes are a fault: they stop with the others at the drain.
        if self.drain.is_none() && self.chance(self.p.faults.spikes) {
            ordinary + self.rand(0, 3 * self.max_rt * 1000)
        } else {
            ordinary
        }
    }

    fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    fn log(&self, who: &str, clock_ms: Option<u64>, text: impl FnOnce() -> String) {
        if let Some(trace) = &self.trace {
            let clock = clock_ms.map(|c| format!(" @{c}ms")).unwrap_or_default();
            trace
                .borrow_mut()
                .push(format!("[{:>14}] {who}{clock}: {}", us(self.now), text()));
        }
    }

    fn client_ms(&self, c: usize) -> u64 {
        self.clients[c].clock.ms(self.now)
    }

    fn node_now(&self, node: usize) -> Instant {
        Instant::from_millis(self.nodes[node].clock.ms(self.now))
    }

    // ---- the run ----

    fn run(&mut self) {
        for c in 0..self.clients.len() {
            self.tend(c);
            self.schedule_tick(c);
        }
        let f = self.p.faults;
        for (rate, ev) in [
            (f.crashes, Ev::Crash),
            (f.partitions, Ev::Partition),
            (f.flushes, Ev::Flush),
            (f.readonly, Ev::Readonly),
            (f.pauses, Ev::Pause),
        ] {
            if rate > 0 {
                let at = self.rand(1, 2 * u64::from(rate)) * 1000;
                self.at(at, ev);
            }
        }
        if self.p.fair {
            let at = self.rand(100, 1_000) * 1000;
            self.at(at, Ev::WaiterCrash);
        }
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            self.now = at;
            self.handle(ev);
            if self.check.violation.is_some() {
                return;
            }
            if self.drain.is_none() && (self.ops >= self.p.ops || self.now > 3_600_000_000) {
                self.start_drain();
            }
            if let Some(drain) = &self.drain {
                if self.clients.iter().all(|c| c.phase == Phase::Done) {
                    return;
                }
                let limit = drain.start + 2 * drain.wait_ms * 1000 + 60_000_000;
                if self.now > limit {
                    let stuck: Vec<String> = self
                        .clients
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.phase != Phase::Done)
                        .map(|(i, c)| format!("client {i} in {:?}", c.phase))
                        .collect();
                    self.check.fail(
                        Property::Liveness,
                        self.now,
                        format!(
                            "the run did not finish after the faults healed: {}",
                            stuck.join(", ")
                        ),
                    );
                    return;
                }
            }
        }
        if self.clients.iter().any(|c| c.phase != Phase::Done) {
            self.check.fail(
                Property::NoStuckMachines,
                self.now,
                "nothing left to happen, yet some client has not finished".into(),
            );
        }
    }

    /// Stops injecting faults; every client then takes the lock once more, with a wait long
    /// enough for the faults still in progress to end and for every other client's turn.
    fn start_drain(&mut self) {
        let mut heal = self.now;
        for p in &self.partitions {
            heal = heal.max(p.end);
        }
        for n in &self.nodes {
            heal = heal.max(n.busy_until);
        }
        for c in &self.clients {
            heal = heal.max(c.paused_until);
        }
        // Readonly spells last at most 500 ms.
        heal += 500_000;
        let per_client = 2 * self.max_rt + self.max_cap + 100;
        // A renewing holder keeps the lock for the rest of its critical section (up to three
        // TTLs) before anyone's turn comes.
        let renewing_ms = (0..self.clients.len())
            .filter_map(|c| {
                let held = self.clients[c].held.as_ref()?;
                held.renewal.as_ref()?;
                Some(held.cs_end.saturating_sub(self.client_ms(c)))
            })
            .max()
            .unwrap_or(0);
        let wait_ms = (heal - self.now) / 1000
            + renewing_ms
            + 3 * self.max_ttl
            + self.clients.len() as u64 * per_client
            // A node that failed just before may be in its session's reconnect pause.
            + RECONNECT.cap.as_millis()
            + 2_000;
        // Slow clocks count fewer ms: pad by the drift.
        let wait_ms = wait_ms + wait_ms * u64::from(self.rho) / 500_000;
        self.log("world", None, || {
            format!("drain: faults stop; final acquires wait up to {wait_ms} ms")
        });
        self.drain = Some(Drain {
            start: self.now,
            wait_ms,
        });
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ToNode { conn, bytes } => self.deliver_to_node(conn, bytes),
            Ev::ToClient { conn, bytes } => self.deliver_to_client(conn, bytes),
            Ev::Lost { client, node, conn } => {
                if self.defer_if_paused(client, Ev::Lost { client, node, conn }) {
                    return;
                }
                if self.clients[client].links[node].conn == Some(conn) {
                    self.log(&format!("c{client}"), Some(self.client_ms(client)), || {
                        format!("connection to n{node} lost")
                    });
                    self.drop_link(client, node);
                }
                self.step(client);
            }
            Ev::ClientTick { client, generation } => {
                if self.defer_if_paused(client, Ev::ClientTick { client, generation }) {
                    return;
                }
                if self.clients[client].tick_gen == generation {
                    self.clients[client].tick_at = u64::MAX;
                    self.step(client);
                }
            }
            Ev::NodeTick { node, conn } => {
                if self.nodes[node].up {
                    self.serve(node, conn);
                }
            }
            Ev::NodeUp { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    self.nodes[node].up = true;
                    self.nodes[node].shadow = None;
                    let loading = self.chance(500);
                    let now = self.now;
                    self.log(&format!("n{node}"), None, || {
                        format!("back up{}", if loading { ", LOADING" } else { "" })
                    });
                    if loading {
                        self.nodes[node].model.set_loading(true);
                        let until = now + self.rand(1_000, 500_000);
                        self.nodes[node].busy_until = until;
                        self.at(until, Ev::LoadingOff { node, epoch });
                    }
                }
            }
            Ev::LoadingOff { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    self.nodes[node].model.set_loading(false);
                    self.log(&format!("n{node}"), None, || "done loading".into());
                }
            }
            Ev::ReadonlyOff { node } => {
                self.nodes[node].model.set_readonly(false);
                self.log(&format!("n{node}"), None, || "writable again".into());
            }
            Ev::Crash => self.fault_crash(),
            Ev::Partition => self.fault_partition(),
            Ev::Flush => {
                if self.drain.is_none() {
                    let node = self.rand(0, self.nodes.len() as u64 - 1) as usize;
                    self.nodes[node].model.flush_scripts();
                    self.log(&format!("n{node}"), None, || "SCRIPT FLUSH".into());
                    self.reschedule(self.p.faults.flushes, Ev::Flush);
                }
            }
            Ev::Readonly => {
                if self.drain.is_none() {
                    let node = self.rand(0, self.nodes.len() as u64 - 1) as usize;
                    self.nodes[node].model.set_readonly(true);
                    let until = self.now + self.rand(10_000, 500_000);
                    self.log(&format!("n{node}"), None, || {
                        format!("READONLY until t={}", us(until))
                    });
                    self.at(until, Ev::ReadonlyOff { node });
                    self.reschedule(self.p.faults.readonly, Ev::Readonly);
                }
            }
            Ev::Pause => {
                if self.drain.is_none() {
                    let c = self.rand(0, self.clients.len() as u64 - 1) as usize;
                    self.pause(c);
                    let mean = u64::from(self.p.faults.pauses) / self.clients.len() as u64;
                    self.reschedule(mean.max(1) as u32, Ev::Pause);
                }
            }
            Ev::WaiterCrash => self.waiter_crash(),
            Ev::Write {
                client,
                lease,
                fence,
            } => {
                self.log("resource", None, || {
                    format!("write of lease #{lease} (fence {fence:?}) from c{client}")
                });
                let now = self.now;
                self.check.write(client, lease, fence, now);
            }
        }
    }

    /// Fair runs: one waiting client at a time stops for two to four request timeouts (or
    /// a second more), as a crashed waiter does for the queue: it refreshes nothing and
    /// confirms no hand-off. Its liveness key runs out; property 10 bounds the stall.
    fn waiter_crash(&mut self) {
        if self.drain.is_some() {
            return;
        }
        let now = self.now;
        let none_paused = self.clients.iter().all(|c| c.paused_until <= now);
        let waiting: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].phase == Phase::Acquiring)
            .collect();
        if none_paused && !waiting.is_empty() {
            let c = waiting[self.rand(0, waiting.len() as u64 - 1) as usize];
            let until = now + self.rand(2 * self.max_rt, 4 * self.max_rt + 1_000) * 1000;
            self.clients[c].paused_until = until;
            // Until its stale cycle is settled (rolled back, or confirmed late), the crashed
            // waiter may still stand in the queue.
            self.fair.crash_effect_until = until + 2 * self.max_rt * 1000;
            self.check.stats.waiter_crashes += 1;
            self.log(&format!("c{c}"), Some(self.client_ms(c)), || {
                format!("waiter crashes until t={}", us(until))
            });
        }
        let next = now + self.rand(200, 2_000) * 1000;
        self.at(next, Ev::WaiterCrash);
    }

    /// Property 10's bound on stalls, after each command on the node of a fair run: while a
    /// live waiter queues and no confirmed holder has the lock (it is free, or handed to a
    /// waiter that has not confirmed), the gap must close within one cycle (`R / 2`) — no
    /// lost wake-up — or, while a waiter has crashed, within `2 R`. Checked on healthy
    /// networks, where the network cannot stretch a cycle.
    fn watch_fair_gap(&mut self, state: FairState) {
        if state.handed {
            self.check.stats.handoffs += 1;
        }
        let w = &mut self.fair;
        match &state.holder {
            None => w.unconfirmed = None,
            Some(h) if state.handed => w.unconfirmed = Some(h.clone()),
            Some(h)
                if w.unconfirmed
                    .as_ref()
                    .is_some_and(|u| u != h || state.confirmed) =>
            {
                w.unconfirmed = None;
            }
            Some(_) => {}
        }
        let held = state.holder.is_some() && w.unconfirmed.is_none();
        if !self.healthy || held || !state.waiting {
            w.gap_since = None;
            return;
        }
        let since = *w.gap_since.get_or_insert(self.now);
        let crashed = self.now < w.crash_effect_until;
        let bound_ms = if crashed {
            2 * self.max_rt
        } else {
            self.max_rt.div_ceil(2)
        };
        // Clocks within 1%, round trips of a few ms.
        let bound = bound_ms * 1000 * 102 / 100 + 10_000;
        let gap = self.now - since;
        let stats = &mut self.check.stats;
        if crashed {
            stats.longest_gap_after_crash_us = stats.longest_gap_after_crash_us.max(gap);
        } else {
            stats.longest_gap_us = stats.longest_gap_us.max(gap);
        }
        if gap > bound {
            let detail = format!(
                "the lock has had no confirmed holder since t={} while a live waiter queued: {} µs, above the {} bound ({} ms)",
                us(since),
                gap,
                if crashed { "2 R" } else { "one-cycle" },
                bound_ms
            );
            let at = self.now;
            self.check.fail(Property::FairWakeUp, at, detail);
        }
    }

    fn reschedule(&mut self, mean_ms: u32, ev: Ev) {
        let at = self.now + self.rand(1, 2 * u64::from(mean_ms)) * 1000;
        self.at(at, ev);
    }

    fn defer_if_paused(&mut self, client: usize, ev: Ev) -> bool {
        let until = self.clients[client].paused_until;
        if until > self.now {
            self.at(until, ev);
            return true;
        }
        false
    }

    fn pause(&mut self, c: usize) {
        let max = u64::from(self.p.faults.pause_max.max(1)) * 1000;
        let until = self.now + self.rand(1_000, max);
        let client = &mut self.clients[c];
        client.paused_until = client.paused_until.max(until);
        self.check.stats.pauses += 1;
        self.log(&format!("c{c}"), Some(self.client_ms(c)), || {
            format!("paused until t={}", us(until))
        });
    }

    // ---- property 6: what the servers hold ----

    /// The lock key on a node that is up: its value and the true µs its expiry passes
    /// (`u64::MAX` without one). The model keeps a key alive while the node's clock reads at
    /// most its expiry.
    fn lock_key_on(&self, node: usize) -> Option<(Vec<u8>, u64)> {
        let n = &self.nodes[node];
        let now = self.node_now(node);
        let value = n.model.value(LOCK_KEY, now)?.to_vec();
        let end = match n.model.expiry(LOCK_KEY, now).flatten() {
            Some(at) => n.clock.true_at(at.as_millis() + 1),
            None => u64::MAX,
        };
        Some((value, end))
    }

    /// Until when (true µs) a majority of nodes hold the lock for `token`, as things stand:
    /// the quorum-th latest end among the nodes holding it (a node that is down counts with
    /// the key it had). At or before `now` when they no longer do.
    fn servers_end(&self, token: &Token) -> u64 {
        let mut ends: Vec<u64> = (0..self.nodes.len())
            .filter_map(|node| {
                let key = if self.nodes[node].up {
                    self.lock_key_on(node)
                } else {
                    self.nodes[node].shadow.clone()
                };
                key.filter(|(value, _)| value.as_slice() == token.as_bytes())
                    .map(|(_, end)| end)
            })
            .collect();
        let q = quorum(self.nodes.len());
        if ends.len() < q {
            return 0;
        }
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends[q - 1]
    }

    /// Property 6 for every renewing holder that still acts: checked whenever a node ran a
    /// command (the only way the servers' state changes, besides keys expiring, which
    /// `servers_end` already accounts for) and whenever a holder's belief changes.
    fn audit_renewing(&mut self) {
        for c in 0..self.clients.len() {
            self.audit_client(c);
        }
    }

    fn audit_client(&mut self, c: usize) {
        let Some(held) = &self.clients[c].held else {
            return;
        };
        if held.renewal.is_none() {
            return;
        }
        let end = self.servers_end(&held.token);
        let now = self.now;
        self.check.servers_hold(c, now, end);
    }

    // ---- faults ----

    fn fault_crash(&mut self) {
        if self.drain.is_some() {
            return;
        }
        self.reschedule(self.p.faults.crashes, Ev::Crash);
        let node = self.rand(0, self.nodes.len() as u64 - 1) as usize;
        if !self.nodes[node].up {
            return;
        }
        self.check.stats.crashes += 1;
        let keep = self.keep_fence;
        let shadow = self.lock_key_on(node);
        let n = &mut self.nodes[node];
        n.shadow = shadow;
        n.up = false;
        n.epoch += 1;
        n.model.restart(keep);
        let conns: Vec<u64> = n.conns.keys().copied().collect();
        let epoch = n.epoch;
        // Delayed restart: stay down until every key the node held would have expired on
        // its own clock (the longest TTL, plus the clock's drift and a margin).
        let down = if self.delayed_restart {
            let ttl_us = self.max_ttl * 1000;
            ttl_us + ttl_us * u64::from(self.rho) / 500_000 + 20_000 + self.rand(0, 1_000_000)
        } else {
            self.rand(1_000, 100_000)
        };
        let up = self.now + down;
        self.nodes[node].busy_until = up + 500_000;
        self.log(&format!("n{node}"), None, || {
            format!(
                "CRASH: volatile keys lost, fence counters {}; down until t={}",
                if keep { "kept" } else { "lost" },
                us(up)
            )
        });
        for conn in conns {
            let learn = self.now + self.latency() + self.rand(0, 50_000);
            self.kill_conn(conn, Some(learn));
        }
        // Connections the node never saw a byte of die too, half-open ones included.
        let unseen: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| (c.alive || c.node_reads) && c.node == node)
            .map(|(id, _)| *id)
            .collect();
        for conn in unseen {
            let learn = self.now + self.latency() + self.rand(0, 50_000);
            self.kill_conn(conn, Some(learn));
        }
        self.at(up, Ev::NodeUp { node, epoch });
    }

    fn fault_partition(&mut self) {
        if self.drain.is_some() {
            return;
        }
        self.reschedule(self.p.faults.partitions, Ev::Partition);
        let target = if self.chance(500) {
            Target::Node(self.rand(0, self.nodes.len() as u64 - 1) as usize)
        } else {
            Target::Client(self.rand(0, self.clients.len() as u64 - 1) as usize)
        };
        let end = self.now + self.rand(10_000, 3_000_000);
        self.check.stats.partitions += 1;
        self.log("network", None, || {
            format!("PARTITION: {target:?} cut off until t={}", us(end))
        });
        let now = self.now;
        self.partitions.retain(|p| p.end > now);
        self.seq += 1;
        self.partitions.push(Partition {
            id: self.seq,
            target,
            start: self.now,
            end,
        });
    }

    /// The partition cutting `conn` off now, if any: its id and end.
    fn cut(&self, conn: &Conn) -> Option<(u64, u64)> {
        self.partitions
            .iter()
            .rev()
            .find(|p| {
                p.start <= self.now
                    && self.now < p.end
                    && match p.target {
                        Target::Node(n) => n == conn.node,
                        Target::Client(c) => Some(c) == conn.client,
                    }
            })
            .map(|p| (p.id, p.end))
    }

    // ---- network ----

    /// Sends bytes on a connection; `to_node` picks the direction.
    fn send(&mut self, conn_id: u64, to_node: bool, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if !conn.alive {
            return;
        }
        let (client, node) = (conn.client, conn.node);
        // Loss and duplication are faults: they stop at the drain (the module doc's "the
        // faults stop"), so the final acquires are not split by losses nobody heals.
        let faulty = self.drain.is_none();
        if faulty && client.is_some() && self.chance(self.p.faults.loss) {
            self.check.stats.lost_messages += 1;
            let learn = self.now + self.latency() + self.rand(0, 2 * self.max_rt * 1000);
            self.log("network", None, || {
                format!("message on connection {conn_id} lost: the connection breaks")
            });
            let half_open = self.chance(self.p.faults.late);
            self.break_conn(conn_id, Some(learn), half_open);
            return;
        }
        let at = self.now + self.latency();
        if faulty && to_node && client.is_some() && self.chance(self.p.faults.dup) {
            self.check.stats.duplicated_requests += 1;
            let ghost = self.next_conn;
            self.next_conn += 1;
            self.conns.insert(
                ghost,
                Conn {
                    client: None,
                    node,
                    alive: true,
                    node_reads: true,
                    ready: [0, 0],
                    fate: None,
                },
            );
            let later = at + self.rand(0, 3 * self.max_rt * 1000);
            self.at(
                later,
                Ev::ToNode {
                    conn: ghost,
                    bytes: bytes.clone(),
                },
            );
        }
        self.schedule_delivery(conn_id, to_node, at, bytes);
    }

    /// Delivers in FIFO order per direction, holding messages a partition cuts off until it
    /// heals (TCP retransmits) or breaking the connection (keepalive gives up).
    fn schedule_delivery(&mut self, conn_id: u64, to_node: bool, at: u64, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let mut at = at;
        let (fate, has_client, cut) = (conn.fate, conn.client.is_some(), self.cut(conn));
        if let Some((partition, end)) = cut {
            let dies = match fate {
                Some((p, dies)) if p == partition => dies,
                _ => {
                    let dies = has_client && self.chance(300);
                    if let Some(c) = self.conns.get_mut(&conn_id) {
                        c.fate = Some((partition, dies));
                    }
                    dies
                }
            };
            if dies {
                let learn = self.rand(self.now, end + 1_000);
                let half_open = self.chance(self.p.faults.late);
                self.break_conn(conn_id, Some(learn), half_open);
                if !half_open || !to_node {
                    return;
                }
            }
            at = at.max(end + self.latency());
        }
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !(conn.alive || to_node && conn.node_reads) {
            return;
        }
        let dir = usize::from(!to_node);
        at = at.max(conn.ready[dir]);
        conn.ready[dir] = at;
        let ev = if to_node {
            Ev::ToNode {
                conn: conn_id,
                bytes,
            }
        } else {
            Ev::ToClient {
                conn: conn_id,
                bytes,
            }
        };
        self.at(at, ev);
    }

    /// Breaks a connection: the node forgets it at once; the client learns at `learn`.
    fn kill_conn(&mut self, conn_id: u64, learn: Option<u64>) {
        self.break_conn(conn_id, learn, false);
    }

    /// Breaks a connection; `half_open`: requests already on their way still reach the node
    /// and run (their replies are lost), as when the client gives up on a connection the
    /// server still has.
    fn break_conn(&mut self, conn_id: u64, learn: Option<u64>, half_open: bool) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !conn.alive {
            if !half_open {
                conn.node_reads = false;
            }
            return;
        }
        conn.alive = false;
        conn.node_reads = half_open;
        let (client, node) = (conn.client, conn.node);
        if half_open {
            self.log("network", None, || {
                format!("connection {conn_id} half-open: requests in flight still reach n{node}")
            });
        } else {
            self.nodes[node].conns.remove(&conn_id);
        }
        if let (Some(client), Some(learn)) = (client, learn) {
            self.at(
                learn,
                Ev::Lost {
                    client,
                    node,
                    conn: conn_id,
                },
            );
        }
    }

    /// A message arrived in flight: was it cut off by a partition that started meanwhile?
    fn held_by_partition(&mut self, conn_id: u64, to_node: bool, bytes: &mut Vec<u8>) -> bool {
        let Some(conn) = self.conns.get(&conn_id) else {
            return true;
        };
        if !(conn.alive || to_node && conn.node_reads) {
            return true;
        }
        if self.cut(conn).is_some() {
            let bytes = std::mem::take(bytes);
            self.schedule_delivery(conn_id, to_node, self.now, bytes);
            return true;
        }
        false
    }

    /// Whether a request carrying `token` is still on its way to the node over `conn_id`:
    /// it runs after what the node just ran there (one connection's requests stay in order).
    fn request_follows(&self, conn_id: u64, token: &[u8]) -> bool {
        self.queue.values().any(|ev| match ev {
            Ev::ToNode { conn, bytes } => {
                *conn == conn_id && bytes.windows(token.len()).any(|w| w == token)
            }
            _ => false,
        })
    }

    // ---- nodes ----

    fn deliver_to_node(&mut self, conn_id: u64, mut bytes: Vec<u8>) {
        if self.held_by_partition(conn_id, true, &mut bytes) {
            return;
        }
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let (node, client) = (conn.node, conn.client);
        if !self.nodes[node].up {
            // Refused: the process is down, the OS answers with a reset.
            let learn = self.now + self.latency();
            self.kill_conn(conn_id, Some(learn));
            return;
        }
        self.nodes[node]
            .conns
            .entry(conn_id)
            .or_insert_with(|| NodeConn {
                mc: ModelConnection::new(),
                client,
                blocked_since: 0,
            })
            .mc
            .receive(&bytes);
        self.serve(node, conn_id);
        self.serve_blocked(node);
    }

    /// Runs what a node connection has buffered, checks owner-only on every command, sends
    /// the replies.
    fn serve(&mut self, node: usize, conn_id: u64) {
        let now = self.node_now(node);
        let tracing = self.tracing();
        let Node {
            model,
            conns,
            next_block,
            clock,
            ..
        } = &mut self.nodes[node];
        let Some(nc) = conns.get_mut(&conn_id) else {
            return;
        };
        let was_blocked = nc.mc.is_blocked();
        let client = nc.client;
        let mut out = Vec::new();
        let mut before: Option<(Vec<u8>, Option<Instant>)> = None;
        let mut bad: Option<String> = None;
        let fair = self.p.fair;
        let mut queue_before: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut fair_bad: Option<String> = None;
        let mut fair_after: Option<FairState> = None;
        let mut lines: Vec<String> = Vec::new();
        // Property 10 holds only where no request is replayed late.
        let released =
            (self.p.faults.late == 0 && self.p.faults.dup == 0).then_some(&self.released);
        let mut regained: Option<(String, Vec<u8>)> = None;
        model.serve_observed(&mut nc.mc, now, &mut out, |stage, m, args| match stage {
            Stage::Before => {
                before = m
                    .value(LOCK_KEY, now)
                    .map(|v| (v.to_vec(), m.expiry(LOCK_KEY, now).flatten()));
                if fair {
                    queue_before = queued(m, now);
                }
                if tracing {
                    lines.push(render_command(args));
                }
            }
            Stage::After => {
                let holder_after = m.value(LOCK_KEY, now);
                if let (Some(released), Some(token)) = (released, holder_after)
                    && before.as_ref().is_none_or(|(h, _)| h.as_slice() != token)
                    && released.contains(token)
                    && regained.is_none()
                {
                    regained = Some((
                        format!(
                            "`{}` set the lock to token {}, whose release had returned confirmed, \
                             and no delete of that token follows on the connection",
                            render_command(args),
                            short(token)
                        ),
                        token.to_vec(),
                    ));
                }
                if let Some((holder, expiry)) = &before {
                    let unchanged = m.value(LOCK_KEY, now) == Some(holder.as_slice())
                        && m.expiry(LOCK_KEY, now).flatten() == *expiry;
                    if !unchanged
                        && !args.iter().any(|a| a == holder)
                        && bad.is_none()
                    {
                        let after = m
                            .value(LOCK_KEY, now)
                            .map(|v| (short(v), m.expiry(LOCK_KEY, now).flatten().map(Instant::as_millis)));
                        bad = Some(format!(
                            "`{}` changed the lock held by token {} (expiring at node ms {:?}) to {:?} without that token",
                            render_command(args),
                            short(holder),
                            expiry.map(Instant::as_millis),
                            after
                        ));
                    }
                }
                if fair {
                    let holder_before = before.as_ref().map(|(h, _)| h.as_slice());
                    let holder = m.value(LOCK_KEY, now).map(<[u8]>::to_vec);
                    let in_args = holder.as_ref().is_some_and(|h| args.iter().any(|a| a == h));
                    let state = FairState {
                        handed: holder.is_some() && !in_args && holder.as_deref() != holder_before,
                        confirmed: in_args,
                        holder,
                        waiting: queued(m, now).iter().any(|(_, live)| *live),
                    };
                    if fair_bad.is_none() {
                        fair_bad = fair_violation(&queue_before, holder_before, &state, m, now, args);
                    }
                    fair_after = Some(state);
                }
            }
            _ => {}
        });
        // A gain the delete behind it on the same connection already undid is in order.
        let regained = regained.filter(|(_, token)| model.value(LOCK_KEY, now) == Some(token));
        let blocked = nc.mc.is_blocked();
        if blocked && !was_blocked {
            *next_block += 1;
            nc.blocked_since = *next_block;
        }
        let block_until = nc.mc.blocked_until().flatten();
        let closed = nc.mc.is_closed();
        let ghost_done = client.is_none() && !blocked;
        let wake = block_until.map(|u| clock.true_at(u.as_millis()));
        if tracing {
            let who = match client {
                Some(c) => format!("n{node}<c{c}#{conn_id}"),
                None => format!("n{node}<stray#{conn_id}"),
            };
            let reply = render_reply(&out);
            let at = Some(now.as_millis());
            for line in lines {
                self.log(&who, at, || line);
            }
            if !out.is_empty() {
                self.log(&who, at, || format!("replies {reply}"));
            } else if blocked && !was_blocked {
                self.log(&who, at, || "blocks".into());
            }
        }
        if let Some(detail) = bad {
            let at = self.now;
            self.check
                .fail(Property::OwnerOnly, at, format!("on node {node}: {detail}"));
        }
        if let Some(detail) = fair_bad {
            let at = self.now;
            self.check.fail(Property::FairQueue, at, detail);
        }
        if let Some((detail, token)) = regained
            && !self.request_follows(conn_id, &token)
        {
            let at = self.now;
            self.check.fail(
                Property::ReleasedStaysReleased,
                at,
                format!("on node {node}: {detail}"),
            );
        }
        if let Some(state) = fair_after {
            self.watch_fair_gap(state);
        }
        self.audit_renewing();
        if let Some(wake) = wake
            && blocked
            && !was_blocked
        {
            self.at(
                wake,
                Ev::NodeTick {
                    node,
                    conn: conn_id,
                },
            );
        }
        if !out.is_empty() && client.is_some() {
            self.send(conn_id, false, out);
        }
        if closed || ghost_done {
            let learn = client.map(|_| self.now + self.latency());
            if closed {
                self.kill_conn(conn_id, learn);
            } else {
                self.nodes[node].conns.remove(&conn_id);
                if let Some(c) = self.conns.get_mut(&conn_id) {
                    c.alive = false;
                }
            }
        }
    }

    /// After a command ran, retries blocked pops, oldest first (as Redis serves them).
    fn serve_blocked(&mut self, node: usize) {
        let mut blocked: Vec<(u64, u64)> = self.nodes[node]
            .conns
            .iter()
            .filter(|(_, nc)| nc.mc.is_blocked())
            .map(|(id, nc)| (nc.blocked_since, *id))
            .collect();
        if blocked.is_empty() {
            return;
        }
        blocked.sort_unstable();
        for (_, id) in blocked {
            self.serve(node, id);
        }
    }

    // ---- clients: connections ----

    /// Opens a connection to `node` and starts its handshake: only when the session named
    /// the node ([`Session::poll_connect`], see [`World::tend`]), and reported to it as a
    /// connect started.
    fn connect(&mut self, c: usize, node: usize) {
        let now = Instant::from_millis(self.client_ms(c));
        let client = &self.clients[c];
        let state = client.session.state(node);
        if !client.session.may_connect(node, now) || client.links[node].conn.is_some() {
            let at = self.now;
            let open = client.links[node].conn.is_some();
            self.check.fail(
                Property::Session,
                at,
                format!(
                    "client {c} connects to node {node} while the session does not allow it: {state:?}{}",
                    if open { ", beside an open connection" } else { "" }
                ),
            );
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                client: Some(c),
                node,
                alive: true,
                node_reads: true,
                ready: [0, 0],
                fate: None,
            },
        );
        let client = &mut self.clients[c];
        client.session.connect_started(node, now);
        let link = &mut client.links[node];
        link.reported += 1;
        link.conn = Some(id);
        link.ready = false;
        link.pending.clear();
        link.skip = 0;
        link.carry = 0;
        link.held.clear();
        link.inbuf.clear();
        if link.owed_release.take().is_some() {
            // Its reply is never read: unconfirmed (the key goes at its TTL at the latest).
            self.check.stats.pipelined_unconfirmed += 1;
        }
        // The simulator's runs (and the seeds its tests pin) date from handshakes that loaded
        // the scripts; it keeps doing so, as a driver may (`load_scripts`). The path without
        // (`NOSCRIPT`, then `EVAL`) runs whenever a node restarts or flushes its scripts.
        // Scriptless runs load none: their servers have no scripting.
        let options = HandshakeOptions {
            load_scripts: !self.p.scriptless,
            ..HandshakeOptions::default()
        };
        let mut hs = Handshake::new(options, now);
        let mut bytes = Vec::new();
        while let Ok(Some(len)) = hs.poll_transmit(&mut self.buf) {
            bytes.extend_from_slice(&self.buf[..len]);
        }
        link.hs = Some(hs);
        self.log(&format!("c{c}"), Some(now.as_millis()), || {
            format!("connects to n{node} (#{id})")
        });
        self.send(id, true, bytes);
    }

    /// Handover mode: the new machine discards what its connections still owe the previous
    /// one, then reads what arrived between the two.
    fn carry_into_run(&mut self, c: usize) {
        let now = Instant::from_millis(self.client_ms(c));
        let client = &mut self.clients[c];
        let Some(run) = &mut client.run else {
            return;
        };
        for (node, link) in client.links.iter_mut().enumerate() {
            let carry = std::mem::take(&mut link.carry);
            if carry > 0 {
                let known = with_op!(&mut run.op, m => m.discard_replies(node, carry));
                assert!(known, "node {node} is one of the machine's");
            }
            // Written after what `carry` discards, before anything of this machine's.
            if let Some(owed) = link.owed_release.take() {
                let known = with_op!(&mut run.op, m => m.owe_release(node, owed));
                assert!(known, "node {node} owes no other pipelined release");
            }
            let held = std::mem::take(&mut link.held);
            if !held.is_empty() {
                with_op!(&mut run.op, m => m.handle_input(node, &held, now));
            }
        }
    }

    /// Forgets the link's connection: a running machine loses what was in flight on it. The
    /// session learns how the connection ended, once: a handshake under way is a connect
    /// that failed, a ready connection one that was lost; a link already closed reports
    /// nothing. It says when to reconnect.
    fn drop_link(&mut self, c: usize, node: usize) {
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        let client = &mut self.clients[c];
        let link = &mut client.links[node];
        if link.conn.is_some() && link.hs.is_some() {
            client.session.connect_failed(node, now);
            if link.reported == 0 {
                let at = self.now;
                self.check.fail(
                    Property::Session,
                    at,
                    format!("client {c} reports a connect to node {node} ended that it never reported started (or already ended)"),
                );
                return;
            }
            link.reported -= 1;
        } else if link.conn.is_some() && link.ready {
            client.session.disconnected(node, now);
        }
        let link = &mut client.links[node];
        link.conn = None;
        link.hs = None;
        link.ready = false;
        link.pending.clear();
        link.skip = 0;
        link.carry = 0;
        link.held.clear();
        link.inbuf.clear();
        if link.owed_release.take().is_some() {
            // Its reply is never read: unconfirmed (the key goes at its TTL at the latest).
            self.check.stats.pipelined_unconfirmed += 1;
        }
        if let Some(run) = &mut client.run {
            with_op!(&mut run.op, m => m.handle_disconnect(node, Instant::from_millis(now_ms)));
        }
    }

    /// The client closes the link (out of step, its handshake failed, or the session gave up
    /// on it); the session says when to reconnect.
    fn close_link(&mut self, c: usize, node: usize) {
        if let Some(conn) = self.clients[c].links[node].conn {
            self.kill_conn(conn, None);
        }
        self.drop_link(c, node);
    }

    /// Writes a machine's bytes for `node`; false when there is no connection to write to.
    fn client_write(&mut self, c: usize, node: usize, bytes: Vec<u8>) -> bool {
        let link = &mut self.clients[c].links[node];
        match link.conn {
            Some(conn) if link.ready => {
                self.send(conn, true, bytes);
                true
            }
            // Only when the link's server is known: a machine built for another protocol
            // would misread the replies.
            Some(_) if link.hs.is_some() && link.known => {
                link.pending.push(bytes);
                true
            }
            _ => false,
        }
    }

    fn deliver_to_client(&mut self, conn_id: u64, mut bytes: Vec<u8>) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let (Some(c), node) = (conn.client, conn.node) else {
            return;
        };
        let paused_until = self.clients[c].paused_until;
        if paused_until > self.now {
            self.at(
                paused_until,
                Ev::ToClient {
                    conn: conn_id,
                    bytes,
                },
            );
            return;
        }
        if self.held_by_partition(conn_id, false, &mut bytes) {
            return;
        }
        if self.clients[c].links[node].conn != Some(conn_id) {
            return;
        }
        self.catch_up(c);
        if self.clients[c].links[node].conn != Some(conn_id) {
            self.step(c);
            return;
        }
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        if self.tracing() {
            let text = render_reply(&bytes);
            self.log(&format!("c{c}<n{node}#{conn_id}"), Some(now_ms), || {
                format!("reads {text}")
            });
        }
        let mut again = Vec::new();
        let handshake = match &mut self.clients[c].links[node].hs {
            Some(hs) => {
                hs.handle_input(&bytes, now);
                // A refused `HELLO` is followed by the RESP2 pipeline.
                while let Ok(Some(len)) = hs.poll_transmit(&mut self.buf) {
                    again.extend_from_slice(&self.buf[..len]);
                }
                Some(hs.poll_outcome())
            }
            None => None,
        };
        if !again.is_empty() {
            self.send(conn_id, true, again);
        }
        if let Some(outcome) = handshake {
            match outcome {
                Some(Ok(info)) => {
                    let client = &mut self.clients[c];
                    client.session.connected(node, now);
                    let link = &mut client.links[node];
                    link.reported = link.reported.saturating_sub(1);
                    link.hs = None;
                    link.ready = true;
                    link.info = info;
                    link.known = true;
                    let pending = std::mem::take(&mut link.pending);
                    for bytes in pending {
                        self.send(conn_id, true, bytes);
                    }
                }
                Some(Err(e)) => {
                    self.log(&format!("c{c}"), Some(now_ms), || {
                        format!("handshake with n{node} failed: {e}")
                    });
                    self.close_link(c, node);
                }
                None => {}
            }
            self.step(c);
            return;
        }
        if !self.clients[c].links[node].ready {
            return;
        }
        let data = match skip_owed(&mut self.clients[c].links[node], bytes) {
            Ok(data) => data,
            Err(e) => {
                let at = self.now;
                self.check.fail(
                    Property::NoStuckMachines,
                    at,
                    format!("client {c}: garbled reply stream from node {node}: {e:?}"),
                );
                return;
            }
        };
        if data.is_empty() {
            return;
        }
        let client = &mut self.clients[c];
        match &mut client.run {
            Some(run) => with_op!(&mut run.op, m => m.handle_input(node, &data, now)),
            None if client.links[node].carry > 0 || client.links[node].owed_release.is_some() => {
                client.links[node].held.extend_from_slice(&data);
                return;
            }
            None => {
                let at = self.now;
                self.check.fail(
                    Property::NoStuckMachines,
                    at,
                    format!(
                        "client {c}: node {node} sent {} that no machine owes (the owed-replies count was short)",
                        render_reply(&data)
                    ),
                );
                return;
            }
        }
        self.step(c);
    }

    // ---- clients: the driver loop ----

    /// Handles what is due on the client's clock: handshake deadlines, reconnects, the
    /// machine's timeout (a paused client catches up on these before anything else).
    fn catch_up(&mut self, c: usize) {
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        for node in 0..self.nodes.len() {
            let failed = match &mut self.clients[c].links[node].hs {
                Some(hs) if hs.poll_timeout().is_some_and(|t| t <= now) => {
                    hs.handle_timeout(now);
                    match hs.poll_outcome() {
                        Some(Err(e)) => Some(e.to_string()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(e) = failed {
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!("handshake with n{node} failed: {e}")
                });
                self.close_link(c, node);
            }
        }
        self.tend(c);
        if let Some(run) = &mut self.clients[c].run {
            with_op!(&mut run.op, m => {
                if m.poll_timeout().is_some_and(|t| t <= now) {
                    m.handle_timeout(now);
                }
            });
        }
    }

    /// Brings the client's session up to now, as the lock component's driver does: its
    /// connect deadlines first (a handshake the session gave up on is closed, and reported
    /// ended once), then every node it names is opened. True when it opened one.
    fn tend(&mut self, c: usize) -> bool {
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        self.clients[c].session.handle_timeout(now);
        for node in 0..self.nodes.len() {
            let link = &self.clients[c].links[node];
            if link.conn.is_some()
                && link.hs.is_some()
                && !matches!(
                    self.clients[c].session.state(node),
                    Some(NodeState::Connecting { .. })
                )
            {
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!("gives up on n{node}: no answer within the request timeout")
                });
                self.close_link(c, node);
            }
        }
        let mut opened = false;
        if self.p.variant == Variant::ReconnectIgnoresSession {
            // The broken driver: a node that failed is reconnected without asking.
            for node in 0..self.nodes.len() {
                let pausing = matches!(
                    self.clients[c].session.state(node),
                    Some(NodeState::BackingOff { until }) if until > now
                );
                if pausing && self.clients[c].links[node].conn.is_none() {
                    self.connect(c, node);
                    return true;
                }
            }
        }
        while let Some(node) = self.clients[c].session.poll_connect(now) {
            if self.check.violation.is_some() {
                break;
            }
            self.connect(c, node);
            opened = true;
        }
        opened
    }

    /// The session property: the session's count of connects outstanding is the handshake
    /// the client has under way (one or none): every connect reported started is answered
    /// by exactly one end, and none is left unreported.
    fn check_session(&mut self, c: usize) {
        for node in 0..self.nodes.len() {
            let link = &self.clients[c].links[node];
            let under_way = u32::from(link.conn.is_some() && link.hs.is_some());
            let outstanding = self.clients[c].session.outstanding(node);
            if link.reported != under_way || outstanding != under_way {
                let (reported, at) = (link.reported, self.now);
                self.check.fail(
                    Property::Session,
                    at,
                    format!(
                        "client {c}, node {node}: {under_way} handshake(s) under way, {reported} connect(s) reported started and not ended, the session counts {outstanding} outstanding"
                    ),
                );
                return;
            }
        }
    }

    /// Runs the client until nothing more happens at this instant, then sets its next tick.
    fn step(&mut self, c: usize) {
        self.catch_up(c);
        for _ in 0..1000 {
            if self.check.violation.is_some() {
                return;
            }
            if !self.pump(c) && !self.renew(c) && !self.program(c) && !self.tend(c) {
                break;
            }
        }
        self.check_session(c);
        self.check_bound(c);
        self.schedule_tick(c);
    }

    /// Drains the machine's transmits and takes its outcome; true when something happened.
    fn pump(&mut self, c: usize) -> bool {
        let now = Instant::from_millis(self.client_ms(c));
        let mut sends = Vec::new();
        {
            let Some(run) = &mut self.clients[c].run else {
                return false;
            };
            let buf = &mut self.buf;
            with_op!(&mut run.op, m => loop {
                match m.poll_transmit(now, buf) {
                    Ok(Some(tx)) => sends.push((tx.node, buf[..tx.len].to_vec())),
                    Ok(None) => break,
                    Err(short) => buf.resize(short.required, 0),
                }
            });
        }
        let mut unreachable = Vec::new();
        let moved = !sends.is_empty();
        for (node, bytes) in sends {
            if self.tracing() {
                let text = render_request(&bytes);
                self.log(&format!("c{c}>n{node}"), Some(now.as_millis()), || text);
            }
            if !self.client_write(c, node, bytes) {
                unreachable.push(node);
            }
        }
        if !unreachable.is_empty() {
            if let Some(run) = &mut self.clients[c].run {
                for node in unreachable {
                    with_op!(&mut run.op, m => m.handle_disconnect(node, now));
                }
            }
            return true;
        }
        self.take_outcome(c) || moved
    }

    fn take_outcome(&mut self, c: usize) -> bool {
        let now_ms = self.client_ms(c);
        let Some(run) = &mut self.clients[c].run else {
            return false;
        };
        enum Out {
            Acquired(Result<distlock_core::Lease, Error>),
            Released(bool),
            Extended(Result<distlock_core::Extended, Error>),
        }
        let out = match &mut run.op {
            Op::Acquire(m) => m.poll_outcome().map(Out::Acquired),
            Op::Release(m) => m.poll_outcome().map(|r| Out::Released(r.is_ok())),
            Op::Extend(m) => m.poll_outcome().map(Out::Extended),
        };
        let Some(out) = out else {
            return false;
        };
        let mut run = self.clients[c].run.take().expect("running");
        self.ops += 1;
        if matches!(out, Out::Released(true)) {
            let token = with_op!(&run.op, m => m.token().as_str().as_bytes().to_vec());
            self.released.insert(token);
        }
        for node in 0..self.nodes.len() {
            match with_op!(&mut run.op, m => m.take_release_check(node)) {
                Some(ReleaseCheck::Released(_)) => self.check.stats.pipelined_released += 1,
                Some(ReleaseCheck::NotHeld) => self.check.stats.pipelined_not_held += 1,
                Some(_) => self.check.stats.pipelined_unconfirmed += 1,
                None => {}
            }
        }
        // Replies still owed: odd-numbered clients discard them in the connection reader;
        // even-numbered ones hand the connection to the next machine, which discards them
        // itself (`handover` / `discard_replies`), so both ways stay checked.
        let handover = c.is_multiple_of(2);
        let leave_stragglers = self.p.variant == Variant::ReleaseBesideStragglers
            && matches!(out, Out::Acquired(Ok(_)));
        for node in 0..self.nodes.len() {
            if leave_stragglers && with_op!(&run.op, m => m.owed_replies(node)) != Some(0) {
                // The broken driver: the old connection still delivers what is on its way.
                if let Some(conn) = self.clients[c].links[node].conn {
                    self.break_conn(conn, None, true);
                }
                self.drop_link(c, node);
                continue;
            }
            let owed = if handover {
                with_op!(&run.op, m => m.handover(node))
            } else {
                with_op!(&run.op, m => m.owed_replies(node))
            };
            match owed {
                Some(n) if handover => self.clients[c].links[node].carry += n,
                Some(n) => self.clients[c].links[node].skip += n,
                None => self.close_link(c, node),
            }
        }
        let now = self.now;
        match out {
            Out::Acquired(result) => {
                self.check.stats.acquires += 1;
                if result.is_ok() && self.clients[c].final_round {
                    self.check.stats.final_acquires += 1;
                }
                self.on_acquired(c, result, now_ms, now);
            }
            Out::Released(ok) => {
                self.check.stats.releases += 1;
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!("release ends: {}", if ok { "ok" } else { "failed" })
                });
                self.clients[c].held = None;
                self.clients[c].phase = if self.clients[c].final_round {
                    Phase::Done
                } else {
                    let think = self.rand(1, self.clients[c].think_max.max(1));
                    Phase::Idle {
                        until: now_ms + think,
                    }
                };
            }
            Out::Extended(result) => self.on_extended(c, result, now_ms, now),
        }
        true
    }

    fn on_acquired(
        &mut self,
        c: usize,
        result: Result<distlock_core::Lease, Error>,
        now_ms: u64,
        now: u64,
    ) {
        let lease = match result {
            Ok(lease) => lease,
            Err(e) => {
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!("acquire fails: {e:?}")
                });
                if self.clients[c].final_round {
                    self.check.fail(
                        Property::Liveness,
                        now,
                        format!(
                            "client {c} did not acquire within {} ms of its final attempt, after the faults healed: {e:?}",
                            self.drain.as_ref().map_or(0, |d| d.wait_ms)
                        ),
                    );
                    return;
                }
                let think = self.rand(1, self.clients[c].think_max.max(1));
                self.clients[c].phase = Phase::Idle {
                    until: now_ms + think,
                };
                return;
            }
        };
        let clock = self.clients[c].clock;
        let valid_until = lease.valid_until().as_millis();
        let end = clock.true_at(valid_until);
        let attempt_start = clock.true_at(lease.started().as_millis());
        let index = self
            .check
            .acquired(c, lease.fence(), attempt_start, now, end);
        self.log(&format!("c{c}"), Some(now_ms), || {
            format!(
                "ACQUIRED lease #{index} fence {:?}, attempt started @{}ms, valid until @{valid_until}ms (t={})",
                lease.fence(),
                lease.started().as_millis(),
                us(end)
            )
        });
        // The critical section: mostly well inside the validity, sometimes near its end,
        // sometimes beyond it (extending, or overrunning without).
        let left = valid_until.saturating_sub(now_ms);
        let final_round = self.clients[c].final_round;
        let worst_case_clocks = matches!(
            self.p.variant,
            Variant::ZeroDrift | Variant::WideClocksDefaultDrift
        );
        let cs = if final_round {
            self.rand(0, 5)
        } else if worst_case_clocks {
            // Work to the end of the validity: the case the drift allowance is for.
            self.rand(left, 2 * left.max(1))
        } else {
            match self.rand(0, 9) {
                0..=5 => self.rand(0, left / 2),
                6..=7 => self.rand(left / 2, left),
                _ => self.rand(left, 3 * left.max(1)),
            }
        };
        let cs_end = now_ms + cs;
        let mut writes: Vec<u64> = (0..self.rand(if final_round { 1 } else { 0 }, 3))
            .map(|_| now_ms + self.rand(0, cs))
            .collect();
        writes.sort_unstable_by(|a, b| b.cmp(a));
        let extends_left = if final_round || worst_case_clocks || self.rand(0, 9) < 3 {
            0
        } else {
            4
        };
        let mut held = Held {
            lease: index,
            token: lease.token().clone(),
            fence: lease.fence(),
            valid_until,
            cs_end,
            writes,
            extend_at: None,
            extends_left,
            renewal: None,
            lost: false,
        };
        // A third of the holders (where the variant renews) hold one to three TTLs under a
        // renewal schedule instead, driven as the host's watchdog drives it.
        let renews = !final_round
            && match self.p.variant {
                Variant::Correct => self.rand(0, 2) == 0,
                v => v.renews(),
            };
        if renews {
            self.start_renewal(c, &mut held, &lease, now_ms);
        } else {
            self.plan_extend(c, &mut held, now_ms);
        }
        self.clients[c].held = Some(held);
        self.clients[c].phase = Phase::Holding;
        if renews {
            // The belief just recorded must not outlast the servers' keys (property 6).
            self.audit_client(c);
        }
    }

    /// Turns a fresh hold into a renewing one: a [`Renewal`] from the lease, a critical
    /// section of one to three TTLs with writes spread over it, no extends by hand.
    fn start_renewal(
        &mut self,
        c: usize,
        held: &mut Held,
        lease: &distlock_core::Lease,
        now_ms: u64,
    ) {
        let ttl = self.clients[c].lock.options().ttl;
        let valid_until = match self.p.variant {
            // Broken: the validity the schedule runs on is not moved back by the drift term.
            Variant::RenewalWithoutDrift => lease.started().saturating_add(ttl),
            _ => lease.valid_until(),
        };
        let seed = self.rng.next_u64();
        let renewal = Renewal::new(ttl, lease.started(), valid_until, seed);
        let cs = self.rand(ttl.as_millis(), 3 * ttl.as_millis());
        held.cs_end = now_ms + cs;
        let mut writes: Vec<u64> = (0..self.rand(1, 4))
            .map(|_| now_ms + self.rand(0, cs))
            .collect();
        writes.sort_unstable_by(|a, b| b.cmp(a));
        held.writes = writes;
        held.extends_left = 0;
        held.extend_at = None;
        held.renewal = Some(renewal);
        self.check.stats.renewing_holds += 1;
        self.believe_renewing(c, held);
        let lease_no = held.lease;
        self.log(&format!("c{c}"), Some(now_ms), || {
            format!(
                "holds lease #{lease_no} for {cs}ms with renewal, valid until @{}ms",
                valid_until.as_millis()
            )
        });
    }

    /// Sets what a renewing holder acts on — until the schedule's validity (plus, in the
    /// broken `RenewalIgnoresLost`, a renewal period of slack) — and tells the checker, which
    /// makes sure nobody else believes past now (property 1).
    fn believe_renewing(&mut self, c: usize, held: &mut Held) {
        let Some(renewal) = &held.renewal else {
            return;
        };
        let ttl = self.clients[c].lock.options().ttl;
        let mut until = renewal.valid_until().as_millis();
        if self.p.variant == Variant::RenewalIgnoresLost {
            until += Renewal::period_of(ttl).as_millis();
        }
        held.valid_until = until;
        let end = self.clients[c].clock.true_at(until);
        let now = self.now;
        self.check.believes(c, held.lease, now, end);
    }

    /// Extends before the validity runs out when the critical section needs longer.
    fn plan_extend(&mut self, c: usize, held: &mut Held, now_ms: u64) {
        held.extend_at = None;
        if held.extends_left == 0 || held.cs_end <= held.valid_until {
            return;
        }
        let rt = self.clients[c].lock.options().request_timeout.as_millis();
        let left = held.valid_until.saturating_sub(now_ms);
        let margin = self.rand(0, (2 * rt).min(left / 2));
        held.extend_at = Some(held.valid_until.saturating_sub(margin).max(now_ms));
    }

    fn on_extended(
        &mut self,
        c: usize,
        result: Result<distlock_core::Extended, Error>,
        now_ms: u64,
        now: u64,
    ) {
        let Some(mut held) = self.clients[c].held.take() else {
            return;
        };
        if let Some(renewal) = &mut held.renewal {
            // A renewal's extend: its outcome goes to the schedule, which decides what is
            // next (the next extend, a retry, or `Lost`).
            let outcome = match &result {
                Ok(e) if self.p.variant == Variant::RenewalWithoutDrift => {
                    let ttl = self.clients[c].lock.options().ttl;
                    ExtendOutcome::Extended {
                        started: e.started,
                        valid_until: e.started.saturating_add(ttl),
                    }
                }
                Ok(e) => ExtendOutcome::Extended {
                    started: e.started,
                    valid_until: e.valid_until,
                },
                Err(Error::NotHeld) => ExtendOutcome::NotHeld,
                Err(_) => ExtendOutcome::Failed,
            };
            renewal.handle_extend_outcome(outcome, Instant::from_millis(now_ms));
            let lease = held.lease;
            match &result {
                Ok(_) if !held.lost => {
                    self.check.stats.extends += 1;
                    self.check.stats.renewals += 1;
                    self.believe_renewing(c, &mut held);
                    let until = held.valid_until;
                    self.log(&format!("c{c}"), Some(now_ms), || {
                        format!("renewal: EXTENDED lease #{lease}, acts until @{until}ms")
                    });
                }
                other => {
                    let what = match other {
                        Ok(_) => "extended, but the lease was already lost".to_string(),
                        Err(e) => format!("{e:?}"),
                    };
                    self.log(&format!("c{c}"), Some(now_ms), || {
                        format!("renewal: extend of lease #{lease}: {what}")
                    });
                }
            }
            self.clients[c].held = Some(held);
            self.clients[c].phase = Phase::Holding;
            self.audit_client(c);
            return;
        }
        match result {
            Ok(extended) => {
                let valid_until = extended.valid_until.as_millis();
                let end = self.clients[c].clock.true_at(valid_until);
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!(
                        "EXTENDED lease #{} until @{valid_until}ms (t={})",
                        held.lease,
                        us(end)
                    )
                });
                self.check.extended(c, held.lease, now, end);
                held.valid_until = held.valid_until.max(valid_until);
                held.extends_left -= 1;
                self.plan_extend(c, &mut held, now_ms);
            }
            Err(e) => {
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!(
                        "extend of lease #{} fails: {e:?}; stops and releases",
                        held.lease
                    )
                });
                self.check.stop(c, now);
                held.cs_end = now_ms;
                held.extend_at = None;
            }
        }
        self.clients[c].held = Some(held);
        self.clients[c].phase = Phase::Holding;
    }

    /// Runs a renewing holder's schedule the way the host's watchdog does (`renew` in
    /// `host/src/client.rs`): its timeout on the client's clock, even while an extend is out
    /// (the host races the extend against the validity's end); `Extend` starts an extend
    /// machine; `Lost` stops the client acting as the holder, gives up the extend it awaited,
    /// and releases. True when something happened.
    fn renew(&mut self, c: usize) -> bool {
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        let client = &mut self.clients[c];
        let phase = client.phase;
        let Some(held) = &mut client.held else {
            return false;
        };
        let ending = phase == Phase::Holding && held.cs_end <= now_ms;
        let Some(renewal) = &mut held.renewal else {
            return false;
        };
        if ending || !matches!(phase, Phase::Holding | Phase::Extending) {
            // The critical section is over: the release comes next, and ends the schedule.
            return false;
        }
        if renewal.poll_timeout().is_some_and(|t| t <= now) {
            renewal.handle_timeout(now);
        }
        match renewal.poll_event() {
            Some(RenewalEvent::Extend) => self.renewal_extend(c, now_ms),
            Some(RenewalEvent::Lost(reason)) => self.renewal_lost(c, reason, now_ms),
            Some(other) => unreachable!("a renewal event the simulator does not know: {other:?}"),
            None => return false,
        }
        true
    }

    fn renewal_extend(&mut self, c: usize, now_ms: u64) {
        let now = Instant::from_millis(now_ms);
        let seed = self.rng.next_u64();
        let client = &mut self.clients[c];
        let servers: Vec<ServerInfo> = client.links.iter().map(|l| l.info).collect();
        let rt = client.lock.options().request_timeout.as_millis();
        let Some(held) = &client.held else {
            return;
        };
        let machine = Extend::new(&client.lock, held.token.clone(), &servers, now, seed)
            .expect("extend config");
        let lease = held.lease;
        client.run = Some(Running {
            op: Op::Extend(Box::new(machine)),
            started: now_ms,
            bound: now_ms + 2 * rt,
        });
        client.phase = Phase::Extending;
        self.log(&format!("c{c}"), Some(now_ms), || {
            format!("renewal: extends lease #{lease}")
        });
        self.carry_into_run(c);
    }

    fn renewal_lost(&mut self, c: usize, reason: LostReason, now_ms: u64) {
        let now = self.now;
        self.check.stats.renewals_lost += 1;
        let lease = self.clients[c].held.as_ref().map_or(0, |h| h.lease);
        self.log(&format!("c{c}"), Some(now_ms), || {
            format!("renewal: lease #{lease} LOST ({reason:?})")
        });
        if self.healthy {
            self.check.fail(
                Property::Liveness,
                now,
                format!(
                    "on a healthy network, the renewal schedule lost client {c}'s lease #{lease} ({reason:?})"
                ),
            );
        }
        if self.p.variant == Variant::RenewalIgnoresLost {
            // Broken: acts on until its own deadline.
            return;
        }
        self.check.stop(c, now);
        let client = &mut self.clients[c];
        if let Some(held) = &mut client.held {
            held.lost = true;
            held.cs_end = held.cs_end.min(now_ms);
        }
        // The host stops awaiting an extend still out; its replies are discarded as owed.
        if let Some(Running {
            op: Op::Extend(m), ..
        }) = &mut client.run
        {
            m.cancel(Instant::from_millis(now_ms));
        }
    }

    /// The client's program between machines; true when it started something.
    fn program(&mut self, c: usize) -> bool {
        if self.clients[c].run.is_some() {
            return false;
        }
        let now_ms = self.client_ms(c);
        let now = Instant::from_millis(now_ms);
        match self.clients[c].phase {
            Phase::Connecting => {
                // As the lock component: every first connect answered, failed or given up
                // on (the session's outcome is then known).
                if !self.clients[c].session.any_connecting() {
                    self.clients[c].phase = Phase::Idle { until: now_ms };
                    return true;
                }
                false
            }
            Phase::Idle { until } if until <= now_ms => {
                let (wait, final_round) = match &self.drain {
                    Some(drain) => (Duration::from_millis(drain.wait_ms), true),
                    None => (self.clients[c].wait, false),
                };
                self.tokens += 1;
                // Random, and unique by construction.
                let mut entropy = [0u8; 16];
                entropy[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                entropy[8..].copy_from_slice(&self.tokens.to_be_bytes());
                let token = Token::from_entropy(entropy);
                let seed = self.rng.next_u64();
                let client = &mut self.clients[c];
                client.final_round = final_round;
                let servers: Vec<ServerInfo> = client.links.iter().map(|l| l.info).collect();
                let machine = Acquire::new(&client.lock, token.clone(), &servers, wait, now, seed)
                    .expect("acquire config");
                let rt = client.lock.options().request_timeout.as_millis();
                client.run = Some(Running {
                    op: Op::Acquire(Box::new(machine)),
                    started: now_ms,
                    bound: now_ms + wait.as_millis() + 2 * rt,
                });
                client.phase = Phase::Acquiring;
                self.log(&format!("c{c}"), Some(now_ms), || {
                    format!(
                        "acquire{} with token {}, wait {}ms",
                        if final_round { " (final)" } else { "" },
                        &token.as_str()[..8],
                        wait.as_millis()
                    )
                });
                self.carry_into_run(c);
                true
            }
            Phase::Holding => self.holding(c, now_ms),
            _ => false,
        }
    }

    fn holding(&mut self, c: usize, now_ms: u64) -> bool {
        let now = Instant::from_millis(now_ms);
        let Some(mut held) = self.clients[c].held.take() else {
            return false;
        };
        // Writes to the protected resource: check validity, then write. A pause may fall
        // in between (that is what fencing is for).
        while held.writes.last().is_some_and(|&t| t <= now_ms) {
            held.writes.pop();
            if now_ms >= held.valid_until || held.lost {
                continue;
            }
            let mut depart = self.now;
            if self.p.faults.pauses > 0 && self.drain.is_none() && self.chance(100) {
                self.pause(c);
                depart = self.clients[c].paused_until;
            }
            let at = depart + self.latency();
            let (lease, fence) = (held.lease, held.fence);
            self.log(&format!("c{c}"), Some(now_ms), || {
                format!("lease #{lease} still valid: writes (fence {fence:?})")
            });
            self.at(
                at,
                Ev::Write {
                    client: c,
                    lease,
                    fence,
                },
            );
        }
        let client = &self.clients[c];
        let servers: Vec<ServerInfo> = client.links.iter().map(|l| l.info).collect();
        let rt = client.lock.options().request_timeout.as_millis();
        if held.extend_at.is_some_and(|t| t <= now_ms) && now_ms < held.cs_end {
            held.extend_at = None;
            let seed = self.rng.next_u64();
            let client = &mut self.clients[c];
            let machine = Extend::new(&client.lock, held.token.clone(), &servers, now, seed)
                .expect("extend config");
            client.run = Some(Running {
                op: Op::Extend(Box::new(machine)),
                started: now_ms,
                bound: now_ms + 2 * rt,
            });
            client.phase = Phase::Extending;
            let lease = held.lease;
            client.held = Some(held);
            self.log(&format!("c{c}"), Some(now_ms), || {
                format!("extends lease #{lease}")
            });
            self.carry_into_run(c);
            return true;
        }
        if held.cs_end <= now_ms {
            let now_true = self.now;
            self.check.stop(c, now_true);
            // Releasing ends the renewal schedule, as dropping the host's guard does.
            held.renewal = None;
            if self.release_pipelined(c, &held, &servers, now, now_ms) {
                return true;
            }
            let seed = self.rng.next_u64();
            let client = &mut self.clients[c];
            let machine = Release::new(&client.lock, held.token.clone(), &servers, now, seed)
                .expect("release config");
            client.run = Some(Running {
                op: Op::Release(Box::new(machine)),
                started: now_ms,
                bound: now_ms + 2 * rt,
            });
            client.phase = Phase::Releasing;
            let lease = held.lease;
            client.held = Some(held);
            self.log(&format!("c{c}"), Some(now_ms), || {
                format!("releases lease #{lease}")
            });
            self.carry_into_run(c);
            return true;
        }
        self.clients[c].held = Some(held);
        false
    }

    /// A pipelining client (see `Params::pipelined`) writes its release without waiting for
    /// the reply, when its one connection is ready and owes nothing; the release is then over
    /// for the client (the name is freed when the node runs the delete), and the next
    /// machine on the connection reads the reply first. False: release the normal way.
    fn release_pipelined(
        &mut self,
        c: usize,
        held: &Held,
        servers: &[ServerInfo],
        now: Instant,
        now_ms: u64,
    ) -> bool {
        if !self.p.pipelined || (c / 2).is_multiple_of(2) {
            return false;
        }
        let client = &self.clients[c];
        let [link] = client.links.as_slice() else {
            return false;
        };
        let idle = link.ready
            && link.conn.is_some()
            && link.skip == 0
            && link.carry == 0
            && link.held.is_empty()
            && link.inbuf.is_empty()
            && link.owed_release.is_none();
        if !idle {
            return false;
        }
        let release = PipelinedRelease::new(&client.lock, &held.token, servers)
            .expect("a single-node lock of one name");
        let (len, owed) = release
            .encode(now, &mut self.buf)
            .expect("the buffer fits a release");
        let bytes = self.buf[..len].to_vec();
        if !self.client_write(c, 0, bytes) {
            return false;
        }
        self.clients[c].links[0].owed_release = Some(owed);
        self.ops += 1;
        self.check.stats.releases += 1;
        self.check.stats.pipelined_releases += 1;
        let lease = held.lease;
        self.log(&format!("c{c}"), Some(now_ms), || {
            format!("releases lease #{lease}, pipelined")
        });
        self.clients[c].held = None;
        self.clients[c].phase = if self.clients[c].final_round {
            Phase::Done
        } else {
            let think = self.rand(1, self.clients[c].think_max.max(1));
            Phase::Idle {
                until: now_ms + think,
            }
        };
        true
    }

    /// Property 5: a machine ends by its deadline, and a machine without an outcome always
    /// has a timeout to wait for.
    fn check_bound(&mut self, c: usize) {
        let now_ms = self.client_ms(c);
        let Some(run) = &self.clients[c].run else {
            return;
        };
        let (kind, timeout) = match &run.op {
            Op::Acquire(m) => ("acquire", m.poll_timeout()),
            Op::Release(m) => ("release", m.poll_timeout()),
            Op::Extend(m) => ("extend", m.poll_timeout()),
        };
        let (started, bound) = (run.started, run.bound);
        let at = self.now;
        if now_ms > bound {
            self.check.fail(
                Property::NoStuckMachines,
                at,
                format!(
                    "client {c}'s {kind} started @{started}ms has no outcome @{now_ms}ms, past its deadline @{bound}ms"
                ),
            );
        } else if timeout.is_none() {
            self.check.fail(
                Property::NoStuckMachines,
                at,
                format!("client {c}'s {kind} has no outcome and no timeout: stuck"),
            );
        }
    }

    /// Sets the client's next tick: the earliest of what its machine, links and program wait
    /// for, on its clock.
    fn schedule_tick(&mut self, c: usize) {
        let client = &self.clients[c];
        let mut next: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(run) = &client.run {
            consider(with_op!(&run.op, m => m.poll_timeout()).map(Instant::as_millis));
        }
        for link in &client.links {
            consider(
                link.hs
                    .as_ref()
                    .and_then(|h| h.poll_timeout())
                    .map(Instant::as_millis),
            );
        }
        // The session's next connect deadline, or the end of a node's pause.
        consider(client.session.poll_timeout().map(Instant::as_millis));
        if let Some(renewal) = client.held.as_ref().and_then(|h| h.renewal.as_ref())
            && matches!(client.phase, Phase::Holding | Phase::Extending)
        {
            consider(renewal.poll_timeout().map(Instant::as_millis));
        }
        if client.run.is_none() {
            match client.phase {
                Phase::Idle { until } => consider(Some(until)),
                Phase::Holding => {
                    if let Some(h) = &client.held {
                        consider(h.writes.last().copied());
                        consider(h.extend_at);
                        consider(Some(h.cs_end));
                    }
                }
                _ => {}
            }
        }
        let Some(next_ms) = next else {
            return;
        };
        let at = client
            .clock
            .true_at(next_ms)
            .max(self.now)
            .max(client.paused_until);
        if at == client.tick_at {
            return;
        }
        let client = &mut self.clients[c];
        client.tick_gen += 1;
        client.tick_at = at;
        let generation = client.tick_gen;
        self.at(
            at,
            Ev::ClientTick {
                client: c,
                generation,
            },
        );
    }
}

/// What property 9 follows of a fair run's queue between commands.
#[derive(Debug, Default)]
struct FairWatch {
    /// The token a release handed the lock to, until it confirms (or the lease ends).
    unconfirmed: Option<Vec<u8>>,
    /// Since when (true µs) a live waiter has queued with no confirmed holder.
    gap_since: Option<u64>,
    /// Until when (true µs) a crashed waiter may still stand in the queue.
    crash_effect_until: u64,
}

/// The lock and queue after one command on the node of a fair run.
struct FairState {
    holder: Option<Vec<u8>>,
    /// A live waiter queues.
    waiting: bool,
    /// The command gave the lock to a token not among its arguments: a hand-off.
    handed: bool,
    /// The holder's token is among the command's arguments (its take, confirm or re-entry).
    confirmed: bool,
}

/// Fair mode's queue at `now`, first come first: each waiter's token, and whether it is
/// live (its liveness key has time left, so a hand-off can give it some).
fn queued(m: &ModelNode, now: Instant) -> Vec<(Vec<u8>, bool)> {
    m.sorted_set(QUEUE_KEY, now)
        .into_iter()
        .map(|token| {
            let key = [ALIVE_PREFIX, &token].concat();
            let live = matches!(m.expiry(&key, now), Some(Some(end)) if end > now);
            (token, live)
        })
        .collect()
}

/// Property 9, first in first out among live waiters, around one command: a live waiter
/// leaves the queue only with the lock or by its own command; a hand-off goes only to a live
/// waiter; and the lock, when it changes hands, goes to the first live waiter (counting the
/// command's own token as live: a waiter's cycle).
fn fair_violation(
    before: &[(Vec<u8>, bool)],
    holder_before: Option<&[u8]>,
    after: &FairState,
    m: &ModelNode,
    now: Instant,
    args: &[Vec<u8>],
) -> Option<String> {
    let in_args = |t: &[u8]| args.iter().any(|a| a.as_slice() == t);
    let queue_after = m.sorted_set(QUEUE_KEY, now);
    for (waiter, live) in before {
        if *live
            && !queue_after.contains(waiter)
            && after.holder.as_ref() != Some(waiter)
            && !in_args(waiter)
        {
            return Some(format!(
                "`{}` took live waiter {} out of the queue without giving it the lock",
                render_command(args),
                short(waiter)
            ));
        }
    }
    let new = after
        .holder
        .as_ref()
        .filter(|t| holder_before != Some(t.as_slice()))?;
    let own = in_args(new);
    if !own && !before.iter().any(|(w, live)| w == new && *live) {
        return Some(format!(
            "`{}` handed the lock to {}, which is no live waiter",
            render_command(args),
            short(new)
        ));
    }
    let first = before.iter().find(|(w, live)| {
        if own {
            *live || w == new
        } else {
            *live && !in_args(w)
        }
    });
    match first {
        Some((w, _)) if w != new => Some(format!(
            "`{}` gave the lock to {} while live waiter {} was ahead of it",
            render_command(args),
            short(new),
            short(w)
        )),
        _ => None,
    }
}

/// No fault at all (clocks may drift: the allowance covers them) and round trips of at most
/// 2 ms, far inside the shortest TTL's renewal margin (an extend due at a third of a 20 ms
/// TTL has about 10 ms left of the validity): where a renewing holder must keep its lease.
fn healthy(f: &Faults) -> bool {
    let rates = [
        f.spikes,
        f.loss,
        f.dup,
        f.late,
        f.partitions,
        f.crashes,
        f.flushes,
        f.readonly,
        f.pauses,
    ];
    rates.iter().all(|&rate| rate == 0) && f.latency_us <= 1_000
}

/// Discards the replies a link still owes to machines that ended; what is left is for the
/// running machine.
fn skip_owed(link: &mut Link, bytes: Vec<u8>) -> Result<Vec<u8>, distlock_core::ProtocolError> {
    if link.skip == 0 && link.inbuf.is_empty() {
        return Ok(bytes);
    }
    link.inbuf.extend_from_slice(&bytes);
    while link.skip > 0 {
        match frame_len(&link.inbuf)? {
            Some(len) => {
                link.inbuf.drain(..len);
                link.skip -= 1;
            }
            None => return Ok(Vec::new()),
        }
    }
    Ok(std::mem::take(&mut link.inbuf))
}

// ---------------------------------------------------------------------------------------
// Rendering for the trace
// ---------------------------------------------------------------------------------------

fn short(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"distlock:").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 12 {
        format!("{}…", &text[..8])
    } else {
        text.into_owned()
    }
}

fn render_command(args: &[Vec<u8>]) -> String {
    let mut parts = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i == 1 && args[0].eq_ignore_ascii_case(b"EVAL") {
            let name = distlock_core::SCRIPTS
                .iter()
                .position(|s| s.source.as_bytes() == a.as_slice())
                .map_or("<script>".to_string(), |i| {
                    format!("<{}>", distlock_core::SCRIPTS[i].name.to_uppercase())
                });
            parts.push(name);
        } else if i == 1 && args[0].eq_ignore_ascii_case(b"EVALSHA") {
            let name = distlock_core::SCRIPTS
                .iter()
                .position(|s| s.sha.as_slice() == a.as_slice())
                .map_or("<sha>".to_string(), |i| {
                    format!("<{}>", distlock_core::SCRIPTS[i].name)
                });
            parts.push(name);
        } else {
            parts.push(short(a));
        }
    }
    parts.join(" ")
}

fn render_request(bytes: &[u8]) -> String {
    let mut conn = ModelConnection::new();
    conn.receive(bytes);
    let mut commands = Vec::new();
    while let Some(Ok(args)) = conn.next_command() {
        commands.push(render_command(&args));
    }
    commands.join(" | ")
}

fn render_reply(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .replace("\r\n", " ")
        .chars()
        .take(120)
        .collect();
    text.trim_end().to_string()
}
