//! # Deterministic simulation of multi-name locks: no partial hold, and exclusion against
//! plain locks of the same names
//!
//! The real machines ([`distlock_core::Acquire`], `Release`) of multi-name locks
//! ([`distlock_core::Lock::multi`]) and plain locks of single names, against one model node or
//! a Redlock of three ([`distlock_model`]), through a network that delays each message by a
//! few ms and at times past the request timeout (so requests time out, run late, and are
//! rolled back). Clients take their lock (try or wait), hold it up to 1.3 × its validity,
//! release it, or crash holding it. One seed decides everything, so a failure replays with
//! `DISTLOCK_MULTI_SEED=<seed>`.
//!
//! ## Properties
//! - **M1, no partial hold**: after every command any node runs, for every multi-name
//!   client, a value of its own token (any attempt's) on one of its names is on all of them.
//! - **M2, exclusion**: at no instant (true time) do two clients whose names overlap both
//!   believe a lease valid — multi against multi, and multi against a plain lock.
//!
//! ## Broken variant (must be caught)
//! - `OneByOne`: the node takes the names one by one and stops at the first held one,
//!   keeping the others (`ModelFaults::multi_takes_names_one_by_one`): M1.
//!
//! CI runs `MULTI_RUNS` seeds of the correct protocol (`DISTLOCK_MULTI_RUNS` for more) and
//! shows the broken variant caught within `BROKEN_RUNS` seeds.

use std::collections::VecDeque;

use distlock_core::{
    Acquire, Duration, Instant, KeyLayout, Lock, LockOptions, Machine, Operation, Release,
    ServerInfo, SplitMix64, Token,
};
use distlock_model::{ModelConnection, ModelFaults, ModelNode, Stage};

const MULTI_RUNS: u64 = 40;
const BROKEN_RUNS: u64 = 30;
/// Simulated time per run, ms.
const RUN_MS: u64 = 15_000;
const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    OneByOne,
}

/// One client–node connection: bytes on their way each way, with delivery times.
struct Wire {
    server: ModelConnection,
    to_node: VecDeque<(u64, Vec<u8>)>,
    to_client: VecDeque<(u64, Vec<u8>)>,
    /// Retired: replies are dropped; requests already on their way still run (late).
    retired: bool,
}

enum Phase {
    Idle {
        until: u64,
    },
    Acquiring {
        m: Box<Acquire<3>>,
    },
    Holding {
        token: Token,
        valid_until: u64,
        release_at: u64,
    },
    Releasing {
        m: Box<Release<3>>,
    },
    Crashed,
}

struct Client {
    lock: Lock,
    /// Indexes into `NAMES`.
    names: Vec<usize>,
    /// Every token it acquired with (a fresh one per acquire).
    tokens: std::collections::HashSet<String>,
    phase: Phase,
    /// One wire per node.
    wires: Vec<usize>,
}

struct World {
    rng: SplitMix64,
    now: u64,
    nodes: Vec<ModelNode>,
    /// Which node each wire goes to, and the wire.
    wires: Vec<(usize, Wire)>,
    clients: Vec<Client>,
    violations: Vec<String>,
    grants: u64,
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn key(name: &[u8]) -> Vec<u8> {
    [&b"distlock:{"[..], name, b"}"].concat()
}

impl World {
    fn new(seed: u64, variant: Variant) -> World {
        let mut rng = SplitMix64::new(seed);
        let node_count = if rng.between(0, 1) == 0 { 1 } else { 3 };
        let ttl = rng.between(200, 1200);
        let options = LockOptions {
            ttl: Duration::from_millis(ttl),
            fenced: rng.between(0, 1) == 0,
            ..LockOptions::default()
        };
        let mut nodes = Vec::new();
        for _ in 0..node_count {
            let mut node = ModelNode::new();
            node.set_faults(ModelFaults {
                multi_takes_names_one_by_one: variant == Variant::OneByOne,
                ..ModelFaults::default()
            });
            nodes.push(node);
        }
        let mut world = World {
            rng,
            now: 0,
            nodes,
            wires: Vec::new(),
            clients: Vec::new(),
            violations: Vec::new(),
            grants: 0,
        };
        let clients = world.rng.between(3, 6);
        for c in 0..clients {
            // At least two multi-name clients; the rest take one name or several.
            let mut names: Vec<usize> = if c < 2 || world.rng.between(0, 1) == 0 {
                (0..NAMES.len())
                    .filter(|_| world.rng.between(0, 1) == 0)
                    .collect()
            } else {
                Vec::new()
            };
            if names.len() < 2 && c < 2 {
                names = vec![0, 1 + world.rng.between(0, 2) as usize];
            }
            let lock = if names.len() >= 2 {
                let picked: Vec<&[u8]> = names.iter().map(|&i| NAMES[i]).collect();
                Lock::multi(KeyLayout::default(), &picked, options).expect("multi")
            } else {
                let one = world.rng.between(0, 3) as usize;
                names = vec![one];
                Lock::new(KeyLayout::default(), NAMES[one], options).expect("lock")
            };
            let wires = (0..node_count).map(|n| world.open_wire(n)).collect();
            let until = world.rng.between(0, 200);
            world.clients.push(Client {
                lock,
                names,
                tokens: std::collections::HashSet::new(),
                phase: Phase::Idle { until },
                wires,
            });
        }
        world
    }

    fn open_wire(&mut self, node: usize) -> usize {
        self.wires.push((
            node,
            Wire {
                server: ModelConnection::new(),
                to_node: VecDeque::new(),
                to_client: VecDeque::new(),
                retired: false,
            },
        ));
        self.wires.len() - 1
    }

    fn token(&mut self) -> Token {
        let mut entropy = [0u8; 16];
        entropy[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        entropy[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        Token::from_entropy(entropy)
    }

    /// A one-way delay: usually a few ms, at times past the request timeout.
    fn latency(&mut self) -> u64 {
        if self.rng.between(0, 149) == 0 {
            self.rng.between(800, 2500)
        } else {
            self.rng.between(0, 4)
        }
    }

    fn pump<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 3>) {
        let mut buf = vec![0u8; 8192];
        while let Some(tx) = m.poll_transmit(at(self.now), &mut buf).expect("buffer") {
            let wire = self.clients[c].wires[tx.node];
            let delay = self.latency();
            let w = &mut self.wires[wire].1;
            let when = w
                .to_node
                .back()
                .map_or(0, |(t, _)| *t)
                .max(self.now + delay);
            w.to_node.push_back((when, buf[..tx.len].to_vec()));
        }
    }

    fn feed<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 3>) {
        let now = self.now;
        for node in 0..self.clients[c].wires.len() {
            let wire = self.clients[c].wires[node];
            while let Some((t, _)) = self.wires[wire].1.to_client.front()
                && *t <= now
            {
                let bytes = self.wires[wire].1.to_client.pop_front().expect("front").1;
                m.handle_input(node, &bytes, at(now));
            }
        }
        m.handle_timeout(at(now));
        self.pump(c, m);
    }

    /// A machine done: fresh connections for the next one (what the old ones owe is dropped).
    fn retire_wires(&mut self, c: usize) {
        for node in 0..self.clients[c].wires.len() {
            let old = self.clients[c].wires[node];
            self.wires[old].1.retired = true;
            self.wires[old].1.to_client.clear();
            self.clients[c].wires[node] = self.open_wire(node);
        }
    }

    fn serve(&mut self) {
        let now = self.now;
        for wire in 0..self.wires.len() {
            while self.wires[wire]
                .1
                .to_node
                .front()
                .is_some_and(|(t, _)| *t <= now)
            {
                let bytes = self.wires[wire].1.to_node.pop_front().expect("front").1;
                self.wires[wire].1.server.receive(&bytes);
            }
            self.serve_wire(wire);
        }
        // A push may unblock a pop on any connection.
        for wire in 0..self.wires.len() {
            if self.wires[wire].1.server.is_blocked() {
                self.serve_wire(wire);
            }
        }
    }

    /// Runs what reached the node, checking M1 after every command.
    fn serve_wire(&mut self, wire: usize) {
        let now = self.now;
        let node = self.wires[wire].0;
        let multis: Vec<(&std::collections::HashSet<String>, &Vec<usize>)> = self
            .clients
            .iter()
            .filter(|c| c.names.len() > 1)
            .map(|c| (&c.tokens, &c.names))
            .collect();
        let mut out = Vec::new();
        let mut violation = None;
        let mut server = std::mem::take(&mut self.wires[wire].1.server);
        let nodes = &mut self.nodes;
        nodes[node].serve_observed(&mut server, at(now), &mut out, |stage, model, _| {
            if stage != Stage::After || violation.is_some() {
                return;
            }
            for (tokens, names) in &multis {
                let values: Vec<Option<&[u8]>> = names
                    .iter()
                    .map(|&i| model.value(&key(NAMES[i]), at(now)))
                    .collect();
                // An attempt's token is the acquire's, or it with `.<attempt>`.
                let own = |v: &[u8]| {
                    let base = v.split(|&b| b == b'.').next().unwrap_or_default();
                    std::str::from_utf8(base).is_ok_and(|base| tokens.contains(base))
                };
                if let Some(mine) = values.iter().flatten().find(|v| own(v))
                    && values.iter().any(|v| *v != Some(*mine))
                {
                    violation = Some(format!(
                        "M1: node {node} at {now} ms holds {} on some of names {names:?} only",
                        String::from_utf8_lossy(mine)
                    ));
                }
            }
        });
        self.wires[wire].1.server = server;
        if let Some(v) = violation {
            self.violations.push(v);
        }
        if out.is_empty() || self.wires[wire].1.retired {
            return;
        }
        let delay = self.latency();
        let w = &mut self.wires[wire].1;
        let when = w.to_client.back().map_or(0, |(t, _)| *t).max(now + delay);
        w.to_client.push_back((when, out));
    }

    fn step_client(&mut self, c: usize) {
        let now = self.now;
        let servers = vec![ServerInfo::default(); self.nodes.len()];
        let phase = std::mem::replace(&mut self.clients[c].phase, Phase::Crashed);
        let next = match phase {
            Phase::Idle { until } if until <= now => {
                let wait = if self.rng.between(0, 3) == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.rng.between(100, 3000))
                };
                let token = self.token();
                self.clients[c].tokens.insert(token.as_str().to_owned());
                let seed = self.rng.next_u64();
                let lock = self.clients[c].lock.clone();
                let mut m = Box::new(
                    Acquire::new(&lock, token, &servers, wait, at(now), seed).expect("acquire"),
                );
                self.pump(c, &mut *m);
                Phase::Acquiring { m }
            }
            Phase::Acquiring { mut m } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    None => Phase::Acquiring { m },
                    Some(outcome) => {
                        self.retire_wires(c);
                        match outcome {
                            Ok(lease) => {
                                self.grants += 1;
                                let valid_until = lease.valid_until().as_millis();
                                let span = valid_until.saturating_sub(now);
                                if self.rng.between(0, 9) == 0 {
                                    Phase::Crashed
                                } else {
                                    Phase::Holding {
                                        token: lease.token().clone(),
                                        valid_until,
                                        release_at: now + self.rng.between(0, span * 13 / 10),
                                    }
                                }
                            }
                            Err(_) => Phase::Idle {
                                until: now + self.rng.between(0, 300),
                            },
                        }
                    }
                }
            }
            Phase::Holding {
                token,
                valid_until,
                release_at,
            } if release_at <= now => {
                let _ = valid_until;
                let seed = self.rng.next_u64();
                let lock = self.clients[c].lock.clone();
                let mut m =
                    Box::new(Release::new(&lock, token, &servers, at(now), seed).expect("release"));
                self.pump(c, &mut *m);
                Phase::Releasing { m }
            }
            Phase::Releasing { mut m } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    None => Phase::Releasing { m },
                    Some(_) => {
                        self.retire_wires(c);
                        Phase::Idle {
                            until: now + self.rng.between(0, 300),
                        }
                    }
                }
            }
            other => other,
        };
        self.clients[c].phase = next;
    }

    /// M2: no two clients with a name in common both believe a lease valid.
    fn check_exclusion(&mut self) {
        let now = self.now;
        let valid: Vec<usize> = (0..self.clients.len())
            .filter(|&c| {
                matches!(self.clients[c].phase, Phase::Holding { valid_until, .. } if now < valid_until)
            })
            .collect();
        for (i, &a) in valid.iter().enumerate() {
            for &b in &valid[i + 1..] {
                let shared = self.clients[a]
                    .names
                    .iter()
                    .any(|n| self.clients[b].names.contains(n));
                if shared {
                    self.violations.push(format!(
                        "M2: clients {a} {:?} and {b} {:?} both hold at {now} ms",
                        self.clients[a].names, self.clients[b].names
                    ));
                }
            }
        }
    }

    fn run(&mut self) {
        while self.now < RUN_MS && self.violations.is_empty() {
            self.serve();
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
            self.check_exclusion();
            self.now += 1;
        }
    }
}

fn run(seed: u64, variant: Variant) -> (Vec<String>, u64) {
    let mut world = World::new(seed, variant);
    world.run();
    (world.violations, world.grants)
}

#[test]
fn multi_name_locks_never_hold_part_of_their_names_and_exclude_plain_locks() {
    if let Ok(seed) = std::env::var("DISTLOCK_MULTI_SEED") {
        let seed = seed.parse().expect("a seed");
        let (violations, _) = run(seed, Variant::Correct);
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
        return;
    }
    let runs = std::env::var("DISTLOCK_MULTI_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(MULTI_RUNS);
    let mut grants = 0;
    for seed in 0..runs {
        let (violations, granted) = run(seed, Variant::Correct);
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
        grants += granted;
    }
    // The runs exercised the locks: many grants, not a world where nothing happens.
    assert!(grants > runs * 10, "only {grants} grants in {runs} runs");
}

#[test]
fn taking_names_one_by_one_is_caught() {
    let caught = (0..BROKEN_RUNS)
        .map(|seed| run(seed, Variant::OneByOne).0)
        .find(|violations| violations.iter().any(|v| v.starts_with("M1")));
    assert!(
        caught.is_some(),
        "no seed of {BROKEN_RUNS} caught a partial hold"
    );
}
