//! # Deterministic simulation of get-or-compute: one computation at a time, and every value
//! returned is one a computer stored
//!
//! The real machines ([`distlock_core::GetOrLock`], [`distlock_core::FinishCompute`])
//! against one model node ([`distlock_model`]) through the primitives' simulated network
//! (`wires`: delays up to past the request timeout, losses that break a connection, late
//! requests). Clients ask for one key's value, which expires (so the value is computed again
//! and again in a run); a client that gets the lock computes for up to 1.3 × its validity,
//! then stores a value of its own, or its computation fails (it gives the lock up), or it
//! crashes (its lock expires at its TTL; the client comes back as a new process). One seed
//! decides everything, so a failure replays with `DISTLOCK_GOC_SEED=<seed>`.
//!
//! ## Properties (checked as the run goes, against true time)
//! - **G1, one computation at a time while its lock is valid**: at no instant do two clients
//!   compute believing their lock valid (a grant, before its `valid_until`).
//! - **G2, only stored values are returned**: every value a fetch returns is one a computer
//!   sent to be stored (each computer's value is unique), never anything else.
//! - **G3, bounded**: a fetch ends by its wait plus three request timeouts, a store or a
//!   give-up by two.
//!
//! The runs must also show the point of the helper: fetches that waited for a computer and
//! returned its value without taking the lock.
//!
//! ## Broken variants (each must be caught)
//! - `LockIgnoresHolder`: the node's get-or-lock takes the lock whatever holds it
//!   (`ModelFaults::compute_lock_ignores_holder`): G1.
//! - `WaiterSkipsRecheck`: a waiter takes its wake-up (or the end of its block) as its turn
//!   and computes without asking the node again: G1.
//! - `ValueFromLockKey`: the node's get-or-lock reads the value from the lock key, so a
//!   caller is handed the computer's token as the value
//!   (`ModelFaults::compute_value_from_lock_key`): G2.

mod wires;

use distlock_core::{
    Driven, Duration, Fetched, FinishCompute, GetOrLock, Instant, KeyLayout, Lock, LockOptions,
    ServerInfo, SplitMix64, Token,
};
use distlock_model::{ModelFaults, ModelNode};
use wires::{Network, Serves};

const RUNS: u64 = 60;
const BROKEN_RUNS: u64 = 40;
/// Simulated time per run, ms.
const RUN_MS: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    LockIgnoresHolder,
    WaiterSkipsRecheck,
    ValueFromLockKey,
}

/// What a client is doing.
enum Phase {
    Idle {
        until: u64,
    },
    Fetching {
        m: Box<GetOrLock>,
        deadline: u64,
        /// Its last request was a `BLPOP`: it is waiting for a computer.
        blocked: bool,
        /// It blocked at least once.
        waited: bool,
    },
    Computing {
        token: Option<Token>,
        valid_until: u64,
        done_at: u64,
    },
    Finishing {
        m: Box<FinishCompute>,
        deadline: u64,
    },
}

struct Client {
    phase: Phase,
    wire: usize,
}

#[derive(Default, Debug)]
struct Counts {
    computations: u64,
    values: u64,
    values_after_waiting: u64,
    failures: u64,
    crashes: u64,
}

struct World {
    variant: Variant,
    rng: SplitMix64,
    now: u64,
    node: ModelNode,
    wires: Network,
    clients: Vec<Client>,
    lock: Lock,
    value_ttl: Duration,
    server: ServerInfo,
    /// Every value a computer sent to be stored.
    stored: Vec<Vec<u8>>,
    violations: Vec<String>,
    counts: Counts,
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl World {
    fn new(seed: u64, variant: Variant) -> World {
        let mut rng = SplitMix64::new(seed);
        let clients = rng.between(3, 8) as usize;
        let ttl = rng.between(200, 1500);
        let value_ttl = Duration::from_millis(rng.between(50, 1500));
        let lock = Lock::new(
            KeyLayout::default(),
            b"sim",
            LockOptions {
                ttl: Duration::from_millis(ttl),
                ..LockOptions::default()
            },
        )
        .expect("lock");
        let mut node = ModelNode::new();
        node.set_faults(ModelFaults {
            compute_lock_ignores_holder: variant == Variant::LockIgnoresHolder,
            compute_value_from_lock_key: variant == Variant::ValueFromLockKey,
            ..ModelFaults::default()
        });
        for known in distlock_core::SCRIPTS {
            let load: [&[u8]; 3] = [b"SCRIPT", b"LOAD", known.source.as_bytes()];
            let _ = node.execute(&load, at(0), distlock_core::Protocol::Resp2);
        }
        let server = ServerInfo {
            protocol: distlock_core::Protocol::Resp2,
            flavor: distlock_core::Flavor::Redis,
            version: distlock_core::Version::new(7, 2, 4),
        };
        let mut world = World {
            variant,
            rng,
            now: 0,
            node,
            wires: Network::new(),
            clients: Vec::new(),
            lock,
            value_ttl,
            server,
            stored: Vec::new(),
            violations: Vec::new(),
            counts: Counts::default(),
        };
        for _ in 0..clients {
            let wire = world.wires.open();
            let until = world.rng.between(0, 200);
            world.clients.push(Client {
                phase: Phase::Idle { until },
                wire,
            });
        }
        world
    }

    /// Writes everything a machine has to send on the client's wire; whether the last write
    /// blocks (a `BLPOP`).
    fn pump(&mut self, c: usize, m: &mut impl Driven) -> Option<bool> {
        self.wires
            .pump(self.clients[c].wire, m, &mut self.rng, self.now)
    }

    fn token(&mut self) -> Token {
        let mut entropy = [0u8; 16];
        entropy[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        entropy[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        Token::from_entropy(entropy)
    }

    /// Delivers replies and break notices to client `c`'s machine; whether any reply came.
    fn feed(&mut self, c: usize, m: &mut impl Driven) -> bool {
        self.wires.feed(&mut self.clients[c].wire, m, self.now)
    }

    /// A machine done: a fresh connection for the next one (what it still owes is dropped).
    fn retire_wire(&mut self, c: usize) {
        self.wires.retire(&mut self.clients[c].wire);
    }

    fn idle(&mut self) -> Phase {
        Phase::Idle {
            until: self.now + self.rng.between(0, 300),
        }
    }

    fn start_computing(&mut self, token: Option<Token>, valid_until: u64) -> Phase {
        self.counts.computations += 1;
        let span = valid_until.saturating_sub(self.now);
        Phase::Computing {
            token,
            valid_until,
            done_at: self.now + self.rng.between(0, span * 13 / 10),
        }
    }

    fn step_client(&mut self, c: usize) {
        let now = self.now;
        let request = self.lock.options().request_timeout.as_millis();
        let phase = std::mem::replace(&mut self.clients[c].phase, Phase::Idle { until: 0 });
        let next = match phase {
            Phase::Idle { until } if until <= now => {
                let wait = if self.rng.between(0, 4) == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.rng.between(100, 3000))
                };
                let token = self.token();
                let mut m = Box::new(
                    GetOrLock::new(&self.lock, token, &[self.server], wait, at(now))
                        .expect("fetch"),
                );
                let blocked = self.pump(c, &mut *m).unwrap_or(false);
                Phase::Fetching {
                    m,
                    deadline: now + wait.as_millis() + 3 * request,
                    blocked,
                    waited: false,
                }
            }
            Phase::Fetching {
                mut m,
                deadline,
                blocked,
                waited,
            } => {
                let replied = self.feed(c, &mut *m);
                if blocked && replied && self.variant == Variant::WaiterSkipsRecheck {
                    // Broken: the end of the block is taken as this waiter's turn.
                    self.retire_wire(c);
                    let valid_until = self.lock.valid_until(at(now)).as_millis();
                    self.start_computing(None, valid_until)
                } else {
                    let sent = self.pump(c, &mut *m);
                    let blocked = sent.unwrap_or(blocked && !replied);
                    let waited = waited || blocked;
                    match m.poll_outcome() {
                        None if now > deadline => {
                            self.violations
                                .push(format!("G3: fetch of client {c} still running at {now} ms"));
                            self.idle()
                        }
                        None => Phase::Fetching {
                            m,
                            deadline,
                            blocked,
                            waited,
                        },
                        Some(outcome) => {
                            self.retire_wire(c);
                            match outcome {
                                Ok(Fetched::Value(value)) => {
                                    self.counts.values += 1;
                                    if waited {
                                        self.counts.values_after_waiting += 1;
                                    }
                                    if !self.stored.contains(&value) {
                                        self.violations.push(format!(
                                            "G2: client {c} got {:?} at {now} ms, which nobody stored",
                                            String::from_utf8_lossy(&value)
                                        ));
                                    }
                                    self.idle()
                                }
                                Ok(Fetched::Computing(lease)) => {
                                    let valid_until = lease.valid_until().as_millis();
                                    self.start_computing(Some(lease.token().clone()), valid_until)
                                }
                                Ok(other) => panic!("unknown outcome {other:?}"),
                                Err(_) => self.idle(),
                            }
                        }
                    }
                }
            }
            Phase::Computing { token, done_at, .. } if done_at <= now => {
                let roll = self.rng.between(0, 9);
                if roll == 0 {
                    // Dies computing: its lock expires at its TTL.
                    self.counts.crashes += 1;
                    self.retire_wire(c);
                    self.idle()
                } else {
                    let token = token.unwrap_or_else(|| self.token());
                    let m = if roll <= 2 {
                        self.counts.failures += 1;
                        FinishCompute::abandon(&self.lock, &token, &[self.server], at(now))
                    } else {
                        let value = format!("value of {} at {now}", token.as_str()).into_bytes();
                        self.stored.push(value.clone());
                        FinishCompute::store(
                            &self.lock,
                            &token,
                            &[self.server],
                            &value,
                            self.value_ttl,
                            at(now),
                        )
                    };
                    let mut m = Box::new(m.expect("finish"));
                    self.pump(c, &mut *m);
                    Phase::Finishing {
                        m,
                        deadline: now + 2 * request,
                    }
                }
            }
            Phase::Finishing { mut m, deadline } => {
                self.feed(c, &mut *m);
                self.pump(c, &mut *m);
                match m.poll_outcome() {
                    Some(_) => {
                        self.retire_wire(c);
                        self.idle()
                    }
                    None if now > deadline => {
                        self.violations
                            .push(format!("G3: finish of client {c} still running at {now}"));
                        self.idle()
                    }
                    None => Phase::Finishing { m, deadline },
                }
            }
            other => other,
        };
        self.clients[c].phase = next;
    }

    /// G1: clients that compute believing their lock valid now.
    fn check_one_computation(&mut self) {
        let now = self.now;
        let computing: Vec<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.phase, Phase::Computing { valid_until, .. } if now < valid_until))
            .map(|(i, _)| i)
            .collect();
        if computing.len() > 1 {
            self.violations.push(format!(
                "G1: clients {computing:?} compute at {now} ms, each believing its lock valid"
            ));
        }
    }

    fn run(mut self) -> (Vec<String>, Counts) {
        while self.now < RUN_MS && self.violations.is_empty() {
            self.serve_node(self.now);
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
            self.check_one_computation();
            self.now += 1;
        }
        (self.violations, self.counts)
    }
}

impl Serves for World {
    fn network(&mut self) -> &mut Network {
        &mut self.wires
    }

    fn serve_wire(&mut self, wire: usize) {
        let mut out = Vec::new();
        let mut server = std::mem::take(&mut self.wires[wire].server);
        self.node.serve(&mut server, at(self.now), &mut out);
        self.wires[wire].server = server;
        self.wires[wire].reply(out, &mut self.rng, self.now);
    }
}

fn campaign(variant: Variant, runs: u64) -> (Vec<(u64, String)>, Counts) {
    let base: u64 = std::env::var("DISTLOCK_GOC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x90c);
    let mut found = Vec::new();
    let mut total = Counts::default();
    for seed in base..base + runs {
        let (violations, counts) = World::new(seed, variant).run();
        total.computations += counts.computations;
        total.values += counts.values;
        total.values_after_waiting += counts.values_after_waiting;
        total.failures += counts.failures;
        total.crashes += counts.crashes;
        if let Some(v) = violations.into_iter().next() {
            found.push((seed, v));
        }
    }
    (found, total)
}

#[test]
fn goc_one_computation_at_a_time_and_only_stored_values_returned() {
    let runs = std::env::var("DISTLOCK_GOC_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RUNS);
    let (found, counts) = campaign(Variant::Correct, runs);
    println!(
        "get-or-compute simulation: {runs} runs, {counts:?}, {} violations",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
    assert!(counts.computations > runs * 5, "{counts:?}");
    assert!(
        counts.values_after_waiting > runs * 5,
        "waiters got the value without the lock: {counts:?}"
    );
    assert!(counts.failures > 0 && counts.crashes > 0, "{counts:?}");
}

#[test]
fn goc_a_node_that_ignores_the_holder_is_caught_by_g1() {
    let (found, _) = campaign(Variant::LockIgnoresHolder, BROKEN_RUNS);
    println!(
        "lock-ignores-holder: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("G1")), "{found:?}");
}

#[test]
fn goc_waiters_that_do_not_ask_again_are_caught_by_g1() {
    let (found, _) = campaign(Variant::WaiterSkipsRecheck, BROKEN_RUNS);
    println!(
        "waiter-skips-recheck: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("G1")), "{found:?}");
}

#[test]
fn goc_a_node_that_reads_the_value_from_the_lock_key_is_caught_by_g2() {
    let (found, _) = campaign(Variant::ValueFromLockKey, BROKEN_RUNS);
    println!(
        "value-from-lock-key: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("G2")), "{found:?}");
}
