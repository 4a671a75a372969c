//! The wake-up world: property 8, "no lost wake-up", on a healthy network.
//!
//! Clients contend on one lock over 1 to 5 model nodes ([`distlock_model`]) driving the real
//! `Acquire` and `Release` machines, with waits long enough never to run out. The network is
//! healthy on purpose — no loss, no partitions, no clock drift, one-way latency between
//! [`MIN_LATENCY_MS`] and [`MAX_LATENCY_MS`] with FIFO connections — because the property
//! is about timing: under faults a waiter is legitimately late (its wake-up may sit in a
//! partition). Some holders abandon their lease (a crashed client: the key expires on its
//! own, nobody pushes a signal), so the expiry path is exercised next to releases and
//! Redlock rollbacks.
//!
//! **Property.** While the lock is free — a quorum of nodes has no lock key — and some
//! connection is blocked on a node's wake-up list (`BLPOP`), something must happen within
//! one round trip ([`bound_ms`]): an acquire arrives at a node, or a blocked waiter is woken
//! (a signal, or its timeout — its next attempt goes at once). The interval is measured from
//! the later of the moment the lock became free (the quorum-th key went: a command deleted
//! it, or its expiry passed) and the last such event. Waiters left blocked on a free lock
//! for longer is a lost wake-up: they sleep while the lock could be theirs.
//!
//! Nodes serve blocked pops oldest first after every command, as Redis does, so a release's
//! signal goes to the waiter that has waited longest on that node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use distlock_core::{
    Acquire, Duration, Flavor, Instant, KeyLayout, Lease, Lock, LockOptions, Protocol, Release,
    ServerInfo, SplitMix64, Token, Version,
};
use distlock_model::{ModelConnection, ModelFaults, ModelNode};

/// The fastest one-way trip, ms.
pub const MIN_LATENCY_MS: u64 = 1;
/// The slowest one-way trip, ms.
pub const MAX_LATENCY_MS: u64 = 3;
/// The lock key and its wake-up list, as the default key layout names them for `wake`.
const LOCK_KEY: &[u8] = b"distlock:{wake}";
const SIGNAL_KEY: &[u8] = b"distlock:{wake}:signal";
/// The waiting mark: while it exists a release pushes the wake-up.
const WAITING_KEY: &[u8] = b"distlock:{wake}:waiting";

/// The longest the waiters of a free lock may go unattended.
///
/// One node: one round trip at the slowest, plus the millisecond a timeout is rounded to.
///
/// Several nodes: a waiter blocks on one node's list (the busy node whose key lives longest,
/// see `core/src/acquire.rs`), and a release or rollback on the others does not reach it; a
/// lock freed there is noticed when the wait span ends — the quorum's expiry, never past the
/// retry cap. So the bound is the cap (the default policy's 500 ms) plus a round trip.
#[must_use]
pub fn bound_ms(nodes: usize) -> u64 {
    let round_trip = 2 * MAX_LATENCY_MS + 1;
    if nodes == 1 {
        round_trip
    } else {
        distlock_core::RetryPolicy::default().cap.as_millis() + round_trip
    }
}

/// What a wake-up run looks like.
#[derive(Debug, Clone, Copy)]
pub struct WakeParams {
    /// Replays the run.
    pub seed: u64,
    /// Nodes (1: a single node; 3 or 5: Redlock).
    pub nodes: usize,
    /// Contending clients.
    pub clients: usize,
    /// Acquisitions the run starts, over all clients.
    pub acquisitions: u64,
    /// Each client draws its own TTL (60–400 ms) instead of one for the run. The limit: a
    /// waiter's span is timed by the holder that refused it, and a later holder with a
    /// shorter TTL that crashes leaves its key to expire before that span ends, unsignalled.
    pub mixed_ttls: bool,
    /// The broken variant: this many clients release with wake-up signals off (their
    /// releases push none; their own acquires poll), as another library or a client
    /// configured without signals would.
    pub silent_releasers: usize,
    /// Broken servers for the checker to catch: the waiting mark dropped (the waiter's
    /// attempt runs unmarked), or a release that never looks at the mark.
    pub faults: ModelFaults,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct WakeReport {
    /// The first lost wake-up, described.
    pub violation: Option<String>,
    /// Leases taken.
    pub leases: u64,
    /// Leases abandoned (left to expire).
    pub abandoned: u64,
    /// Times a node's key went while a waiter was blocked there: each one an instant the
    /// property was checked from.
    pub freed_with_waiters: u64,
    /// Blocked waiters woken by a signal.
    pub woken_by_signal: u64,
    /// The longest a free node's waiters went unattended, ms.
    pub longest_unattended_ms: u64,
    /// Releases and rollbacks that reached a node with no waiting mark there: each one a
    /// release that pushed no wake-up.
    pub releases_unmarked: u64,
    /// Releases and rollbacks that reached a node while a waiter's mark was there.
    pub releases_marked: u64,
}

enum Op {
    Acquire(Box<Acquire<5>>),
    Release(Box<Release<5>>),
}

enum Phase {
    Idle,
    Busy(Op),
    Holding { until: u64, lease: Lease },
}

struct Client {
    lock: Lock,
    phase: Phase,
    /// Ignore timer events of an older generation.
    timer_gen: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    ToNode {
        node: usize,
        client: usize,
        bytes: Vec<u8>,
    },
    ToClient {
        node: usize,
        client: usize,
        bytes: Vec<u8>,
    },
    ClientTimer {
        client: usize,
        generation: u64,
    },
    PopTimeout {
        node: usize,
        client: usize,
    },
}

struct Node {
    model: ModelNode,
    conns: Vec<ModelConnection>,
    /// Blocked connections, oldest first, with when each blocked.
    blocked: VecDeque<usize>,
    /// When the key last went (true time, ms), if it is absent (0: never there).
    free_since: Option<u64>,
    /// The key's last instant alive, when present with a TTL.
    expires: Option<u64>,
}

struct World {
    p: WakeParams,
    rng: SplitMix64,
    now: u64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    /// Per (client, node, direction): the latest delivery scheduled (FIFO connections).
    last_delivery: Vec<u64>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    servers: Vec<ServerInfo>,
    started: u64,
    /// The last time an acquire reached a node or a waiter was woken.
    last_attended: u64,
    report: WakeReport,
    /// The last commands the nodes ran, for a failure's message.
    trace: VecDeque<String>,
}

/// Runs one wake-up world to its end (every acquisition started and settled).
#[must_use]
pub fn run(p: &WakeParams) -> WakeReport {
    let mut world = World::new(*p);
    world.go();
    world.report
}

impl World {
    fn new(p: WakeParams) -> World {
        let mut rng = SplitMix64::new(p.seed ^ 0x7761_6b65_7570_0001);
        let server = ServerInfo {
            protocol: Protocol::Resp2,
            flavor: Flavor::Redis,
            version: Version::new(7, 2, 4),
        };
        let nodes = (0..p.nodes)
            .map(|_| Node {
                model: {
                    let mut model = ModelNode::new();
                    model.set_faults(p.faults);
                    model
                },
                conns: (0..p.clients).map(|_| ModelConnection::new()).collect(),
                blocked: VecDeque::new(),
                free_since: Some(0),
                expires: None,
            })
            .collect();
        // Short enough that abandoned leases expire within the run.
        let run_ttl = rng.between(60, 400);
        let clients = (0..p.clients)
            .map(|c| {
                let ttl = if p.mixed_ttls {
                    rng.between(60, 400)
                } else {
                    run_ttl
                };
                let options = LockOptions {
                    ttl: Duration::from_millis(ttl),
                    wake_signal: (c >= p.silent_releasers).then(|| Duration::from_secs(1)),
                    ..LockOptions::default()
                };
                Client {
                    lock: Lock::new(KeyLayout::default(), b"wake", options).expect("valid options"),
                    phase: Phase::Idle,
                    timer_gen: 0,
                }
            })
            .collect();
        World {
            p,
            rng,
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            last_delivery: vec![0; p.clients * p.nodes * 2],
            nodes,
            clients,
            servers: vec![server; p.nodes],
            started: 0,
            last_attended: 0,
            report: WakeReport::default(),
            trace: VecDeque::new(),
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    /// Schedules bytes over a FIFO connection with a random latency.
    fn send(&mut self, client: usize, node: usize, to_node: bool, bytes: Vec<u8>) {
        let lane = (client * self.p.nodes + node) * 2 + usize::from(to_node);
        let latency = self.rng.between(MIN_LATENCY_MS, MAX_LATENCY_MS);
        let at = (self.now + latency).max(self.last_delivery[lane]);
        self.last_delivery[lane] = at;
        let ev = if to_node {
            Ev::ToNode {
                node,
                client,
                bytes,
            }
        } else {
            Ev::ToClient {
                node,
                client,
                bytes,
            }
        };
        self.push(at, ev);
    }

    fn go(&mut self) {
        for c in 0..self.p.clients {
            self.step(c);
        }
        // Every client acts until the acquisitions are used up and everyone is idle; a
        // healthy world with waits longer than the run always gets there.
        let mut events = 0u64;
        while let Some(Reverse((at, _, ev))) = self.events.pop() {
            self.now = at;
            events += 1;
            if events > 200 * self.p.acquisitions + 100_000 {
                self.report.violation = Some(format!("the run does not end: {:?}", self.p));
                return;
            }
            self.check_expiries();
            if self.report.violation.is_some() {
                return;
            }
            match ev {
                Ev::ToNode {
                    node,
                    client,
                    bytes,
                } => self.at_node(node, client, &bytes),
                Ev::ToClient {
                    node,
                    client,
                    bytes,
                } => {
                    if let Phase::Busy(op) = &mut self.clients[client].phase {
                        let now = Instant::from_millis(self.now);
                        match op {
                            Op::Acquire(m) => m.handle_input(node, &bytes, now),
                            Op::Release(m) => m.handle_input(node, &bytes, now),
                        }
                    }
                    self.step(client);
                }
                Ev::ClientTimer { client, generation } => {
                    if self.clients[client].timer_gen == generation {
                        self.step(client);
                    }
                }
                Ev::PopTimeout { node, .. } => self.serve_blocked(node),
            }
            if self.report.violation.is_some() {
                return;
            }
        }
    }

    /// A client acts at `now`: feeds timers, sends what its machine asks, moves on when an
    /// outcome is out, and arms its next timer.
    fn step(&mut self, c: usize) {
        loop {
            let phase = std::mem::replace(&mut self.clients[c].phase, Phase::Idle);
            let (phase, moved) = self.advance(c, phase);
            self.clients[c].phase = phase;
            if !moved {
                break;
            }
        }
        // The next moment this client must act by itself.
        let client = &mut self.clients[c];
        let at = match &client.phase {
            Phase::Busy(Op::Acquire(m)) => m.poll_timeout().map(Instant::as_millis),
            Phase::Busy(Op::Release(m)) => m.poll_timeout().map(Instant::as_millis),
            Phase::Holding { until, .. } => Some(*until),
            Phase::Idle => None,
        };
        if let Some(at) = at {
            client.timer_gen += 1;
            let generation = client.timer_gen;
            self.push(
                at.max(self.now),
                Ev::ClientTimer {
                    client: c,
                    generation,
                },
            );
        }
    }

    /// One move of client `c` from `phase`: the phase after it, and whether it moved on.
    fn advance(&mut self, c: usize, phase: Phase) -> (Phase, bool) {
        let now = Instant::from_millis(self.now);
        match phase {
            Phase::Idle if self.started < self.p.acquisitions => {
                self.started += 1;
                let mut entropy = [0u8; 16];
                entropy[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                entropy[8..].copy_from_slice(&(c as u64).to_le_bytes());
                let seed = self.rng.next_u64();
                let machine = Acquire::new(
                    &self.clients[c].lock,
                    Token::from_entropy(entropy),
                    &self.servers,
                    Duration::from_secs(600),
                    now,
                    seed,
                )
                .expect("valid machine");
                (Phase::Busy(Op::Acquire(Box::new(machine))), true)
            }
            Phase::Holding { until, lease } if until <= self.now => {
                // One holder in eight crashes: its key expires with nobody's signal.
                if self.rng.between(0, 7) == 0 {
                    self.report.abandoned += 1;
                    return (Phase::Idle, true);
                }
                let seed = self.rng.next_u64();
                let machine = Release::new(
                    &self.clients[c].lock,
                    lease.token().clone(),
                    &self.servers,
                    now,
                    seed,
                )
                .expect("valid machine");
                (Phase::Busy(Op::Release(Box::new(machine))), true)
            }
            Phase::Busy(mut op) => {
                let mut buf = vec![0u8; 4096];
                let mut out = Vec::new();
                let next = match &mut op {
                    Op::Acquire(m) => {
                        if m.poll_timeout().is_some_and(|t| t <= now) {
                            m.handle_timeout(now);
                        }
                        while let Some(tx) = m.poll_transmit(now, &mut buf).expect("4 KiB") {
                            out.push((tx.node, buf[..tx.len].to_vec()));
                        }
                        m.poll_outcome().map(|outcome| match outcome {
                            Ok(lease) => {
                                self.report.leases += 1;
                                Phase::Holding {
                                    until: self.now + self.rng.between(1, 4),
                                    lease,
                                }
                            }
                            Err(_) => Phase::Idle,
                        })
                    }
                    Op::Release(m) => {
                        if m.poll_timeout().is_some_and(|t| t <= now) {
                            m.handle_timeout(now);
                        }
                        while let Some(tx) = m.poll_transmit(now, &mut buf).expect("4 KiB") {
                            out.push((tx.node, buf[..tx.len].to_vec()));
                        }
                        m.poll_outcome().map(|_| Phase::Idle)
                    }
                };
                for (node, bytes) in out {
                    self.send(c, node, true, bytes);
                }
                match next {
                    Some(phase) => (phase, true),
                    None => (Phase::Busy(op), false),
                }
            }
            other => (other, false),
        }
    }

    /// Bytes from `client` reach `node`: run them, then let the node's blocked pops try
    /// again, oldest first.
    fn at_node(&mut self, n: usize, client: usize, bytes: &[u8]) {
        let now = Instant::from_millis(self.now);
        let before = self.key_present(n);
        let acquire_arrived = bytes.windows(3).any(|w| w == b"SET");
        let release = &distlock_core::script::RELEASE;
        if bytes.windows(40).any(|w| w == release.sha)
            || bytes
                .windows(release.source.len())
                .any(|w| w == release.source.as_bytes())
        {
            if self.nodes[n].model.type_of(WAITING_KEY, now).is_some() {
                self.report.releases_marked += 1;
            } else {
                self.report.releases_unmarked += 1;
            }
        }
        if self.trace.len() == 40 {
            self.trace.pop_front();
        }
        let shown: String = String::from_utf8_lossy(bytes)
            .split("\r\n")
            .filter(|part| !part.starts_with(['*', '$']))
            .map(|part| part.get(..12).unwrap_or(part))
            .collect::<Vec<_>>()
            .join(" ");
        self.trace
            .push_back(format!("t={} c{client}>n{n}: {shown}", self.now));
        let node = &mut self.nodes[n];
        node.conns[client].receive(bytes);
        let was_blocked = node.conns[client].is_blocked();
        let mut out = Vec::new();
        node.model.serve(&mut node.conns[client], now, &mut out);
        if !was_blocked && node.conns[client].is_blocked() {
            node.blocked.push_back(client);
            if let Some(Some(until)) = node.conns[client].blocked_until() {
                let until = until.as_millis();
                self.push(until, Ev::PopTimeout { node: n, client });
            }
        }
        if !out.is_empty() {
            self.send(client, n, false, out);
        }
        if acquire_arrived {
            self.attended();
        }
        let had_waiters = !self.nodes[n].blocked.is_empty();
        self.serve_blocked(n);
        self.key_changed(n, before, had_waiters);
    }

    /// Blocked pops on `n` try again, oldest first (after a command, or one's timeout).
    fn serve_blocked(&mut self, n: usize) {
        let now = Instant::from_millis(self.now);
        let mut still = VecDeque::new();
        let mut woken = false;
        while let Some(client) = self.nodes[n].blocked.pop_front() {
            let node = &mut self.nodes[n];
            let mut out = Vec::new();
            node.model.serve(&mut node.conns[client], now, &mut out);
            if node.conns[client].is_blocked() {
                still.push_back(client);
                continue;
            }
            woken = true;
            self.report.woken_by_signal += u64::from(!out.starts_with(b"*-1"));
            self.send(client, n, false, out);
        }
        self.nodes[n].blocked = still;
        if woken {
            self.attended();
        }
    }

    fn key_present(&self, n: usize) -> bool {
        let now = Instant::from_millis(self.now);
        self.nodes[n].model.value(LOCK_KEY, now).is_some()
    }

    /// Something happened for the waiters: the unattended interval starts again.
    fn attended(&mut self) {
        self.check();
        self.last_attended = self.now;
    }

    /// After a command on `n`: the key may have gone, or come back.
    fn key_changed(&mut self, n: usize, before: bool, had_waiters: bool) {
        let now = Instant::from_millis(self.now);
        let present = self.key_present(n);
        let node = &mut self.nodes[n];
        node.expires = node
            .model
            .expiry(LOCK_KEY, now)
            .flatten()
            .map(Instant::as_millis);
        if present {
            node.free_since = None;
        } else if before {
            node.free_since = Some(self.now);
            self.report.freed_with_waiters += u64::from(had_waiters);
        }
        // A pushed signal is served at once: no waiter stays blocked beside one.
        assert!(node.blocked.is_empty() || node.model.list_len(SIGNAL_KEY, now) == 0);
        self.check();
    }

    /// Keys that expired since the last event went at their expiry, not now.
    fn check_expiries(&mut self) {
        for n in 0..self.nodes.len() {
            let node = &mut self.nodes[n];
            if let Some(last_alive) = node.expires
                && last_alive < self.now
            {
                node.expires = None;
                node.free_since = Some(last_alive + 1);
                if !node.blocked.is_empty() {
                    self.report.freed_with_waiters += 1;
                }
            }
        }
        self.check();
    }

    /// The property at `now`.
    fn check(&mut self) {
        let quorum = self.p.nodes / 2 + 1;
        let mut freed: Vec<u64> = self.nodes.iter().filter_map(|n| n.free_since).collect();
        if freed.len() < quorum {
            return;
        }
        freed.sort_unstable();
        let lock_free_since = freed[quorum - 1];
        let waiters: usize = self.nodes.iter().map(|n| n.blocked.len()).sum();
        if waiters == 0 {
            return;
        }
        let since = lock_free_since.max(self.last_attended);
        let unattended = self.now.saturating_sub(since);
        self.report.longest_unattended_ms = self.report.longest_unattended_ms.max(unattended);
        let bound = bound_ms(self.p.nodes);
        if unattended > bound && self.report.violation.is_none() {
            self.report.violation = Some(format!(
                "lost wake-up: the lock is free since t={lock_free_since} ms, and {waiters} \
                 waiter(s) went unattended for {unattended} ms (bound {bound} ms) at t={} ms; \
                 {:?}\nlast commands:\n{}",
                self.now,
                self.p,
                self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
            ));
        }
    }
}
