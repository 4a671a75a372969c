//! # Deterministic simulation of every kind of lock on one name: never two kinds holding it,
//! and a name of another kind refused with a typed error, in bounded time
//!
//! The real machines ([`distlock_core::Acquire`], `Release`) of a plain mutex (try-lock and
//! waiting), a fair mutex, a counting semaphore of `N` permits, a fair one of the same `N`
//! and one of the same name under `N + 1` (which must meet `WRONGLIMIT`), both sides of a read-write
//! lock and a multi-name lock over this name and another ([`distlock_core::Lock::multi`]),
//! every one of them on the name `sim`, against one model node ([`distlock_model`]) that
//! claims to be Redis ≥ 7.0 or Valkey (so a mutex's attempt is `SET NX PX GET`; on older
//! servers a plain `SET NX` reads another kind's key as held until the `TYPE` probe of its
//! next attempt, and a try-lock makes no such attempt: the documented limit that K2 below
//! would flag, so this world does not claim such a server). The network
//! is the primitives' simulators' (`core/tests/wires`): delays up to past the request
//! timeout, lost messages that break the connection (requests on it may still run late).
//! Each client has one kind; it takes its lock (try or wait), holds it up to 1.3 × its
//! validity, releases it, or crashes holding it (its keys then live out their TTL). Fencing
//! is on or off per run (a fenced mutex acquires by script, an unfenced one by `SET NX PX
//! GET`). One seed decides everything, so a failure replays with `DISTLOCK_MIX_SEED=<seed>`,
//! and every failure message names its seed.
//!
//! ## Properties (checked as the run goes, against true time)
//! - **K1, no two kinds hold the name**: at no instant do two clients believe (a grant,
//!   before its `valid_until`) they hold `sim` in conflicting ways: a mutex, fair-mutex,
//!   writer or multi-name holder beside anyone; readers only beside readers; semaphore
//!   permits only beside permits of the same limit, at most that limit.
//! - **K2, another kind is refused with a typed error, in bounded time**: every acquire
//!   command of one kind (`SET … NX`, or an acquire script) that runs on the node while the
//!   name's key lives as another kind's (a string for the mutexes and the multi-name lock, a
//!   sorted set for the semaphore, a hash marker for the read-write lock) answers `WRONGTYPE`
//!   or `WRONGLIMIT`: never a grant, never "held by another" (a reply that would make a
//!   client wait on a lock it can never take). And every acquire ends by its wait plus three
//!   request timeouts, a release by three request timeouts.
//! - **K3, every hand-off goes to a waiter of the handing kind**: whenever a fair mutex's
//!   release ([`distlock_core::script::FAIR_RELEASE`]) leaves a new token in `sim`'s key,
//!   that token is a fair mutex client's; whenever a fair semaphore's release
//!   ([`distlock_core::script::SEMAPHORE_FAIR_RELEASE`]) adds a token to `sim`'s holders, that
//!   token is a fair semaphore client's. Never a waiting writer's, nor the other fair kind's
//!   (or any other kind's): such a token would hold the name or a permit nobody confirms until
//!   the hand-off cap while the real fair waiters stall. Each kind's waiters have keys of
//!   their own ([`distlock_core::Keys`]), so no kind's waiter is ever in another kind's
//!   queue.
//!
//! - **K4, no wake-up of one kind is taken by another**: every element a release (or a
//!   rollback, or a reader passing the wake-up on) pushes to one of `sim`'s non-fair wake-up
//!   lists is popped, if at all, by a waiter of the pushing kind's family: a mutex's (plain,
//!   fair or multi-name) by a mutex or multi-name waiter, a semaphore's by a semaphore waiter,
//!   a read-write lock's by a reader or writer. A wake-up hands nothing over, but it is
//!   consumed: taken by another kind's waiter (which finds the name still not its kind's and
//!   waits again), it is lost for the waiter it was pushed for, which sleeps out its block
//!   span. Judged on the node, whatever keys the commands name: the lists' lengths and
//!   expiries before and after each command say which list a command pushed to, and a
//!   `BLPOP`'s reply which list it popped.
//!
//! The correct runs also count the typed refusals the machines reported (their
//! [`distlock_core::ServerErrorKind`]) and the fair hand-offs K3 judged, so a campaign in
//! which kinds never met, or no fair release of either kind ever handed on, fails.
//!
//! ## Broken variants (each must be caught)
//! - `SetNxGetIgnoresType`: `SET … NX … GET` answers nil on another kind's key, as for a free
//!   key (`ModelFaults::set_nx_get_ignores_type`): a mutex believes it holds beside a
//!   semaphore's permits or a read-write hold: K1.
//! - `MultiChecksExists`: the multi-name acquire asks `EXISTS` instead of `TYPE`
//!   (`ModelFaults::multi_checks_exists_not_type`): another kind's name is reported held, not
//!   refused: K2.
//! - `WritersShareFairQueue`: the read-write scripts keep their waiting writers in fair
//!   mode's queue and liveness keys, as distlock did before each kind had its own
//!   (`ModelFaults::rw_writers_share_fair_queue`): a fair release hands the name to a
//!   writer's token: K3.
//! - `SemaphoreSharesFairQueue`: the fair semaphore scripts keep their waiters in a fair
//!   mutex's queue, liveness keys and wake-up lists, as distlock did before each kind had its
//!   own (`ModelFaults::semaphore_waiters_share_fair_queue`): a fair mutex's release hands
//!   the name to a semaphore waiter's token, or a fair semaphore's release a permit to a
//!   fair mutex waiter's: K3.
//! - `SemaphoreSharesSignal`: a plain semaphore's releases push to, and its waiters block on,
//!   the mutex's wake-up list `:signal`, as distlock did before the semaphore had
//!   `:permit-signal` (`ModelFaults::semaphore_signal_shared_with_mutex`): a mutex waiter takes
//!   a permit's wake-up, or a semaphore waiter a mutex's: K4.
//!
//! CI runs `MIX_RUNS` seeds of the correct protocol (`DISTLOCK_MIX_RUNS` for more) and shows
//! each broken variant caught within `BROKEN_RUNS` seeds.

mod wires;

use std::collections::BTreeMap;

use distlock_core::resp::{self, Reply};
use distlock_core::{
    Acquire, Duration, Error, Flavor, Instant, KeyLayout, Lock, LockOptions, Machine, Operation,
    Protocol, Release, RwMode, Script, ServerErrorKind, ServerInfo, SplitMix64, Token, Version,
    script,
};
use distlock_model::{ModelConfig, ModelFaults, ModelNode, Stage};
use wires::{Network, Serves};

const MIX_RUNS: u64 = 40;
const BROKEN_RUNS: u64 = 40;
/// Simulated time per run, ms.
const RUN_MS: u64 = 12_000;
/// The name every client locks, and its key (the mutex's string, the semaphore's set, the
/// read-write lock's marker).
const NAME: &[u8] = b"sim";
const NAME_KEY: &[u8] = b"distlock:{sim}";
/// The multi-name lock's second name.
const OTHER: &[u8] = b"other";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    SetNxGetIgnoresType,
    MultiChecksExists,
    WritersShareFairQueue,
    SemaphoreSharesFairQueue,
    SemaphoreSharesSignal,
}

/// What kind of lock a client takes on `sim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain mutex that tries once.
    MutexTry,
    /// A plain mutex that waits.
    MutexWait,
    /// A fair mutex (waits in the queue).
    FairMutex,
    /// One permit of the semaphore of `limit`.
    Permit,
    /// One permit of the same semaphore, in fair mode (waits in the semaphore's queue).
    FairPermit,
    /// One permit of the same name under `limit + 1`: refused with `WRONGLIMIT` while a
    /// permit of the other limit lives.
    PermitOtherLimit,
    Reader,
    Writer,
    /// A multi-name lock over `sim` and `other`.
    Multi,
}

const KINDS: [Kind; 9] = [
    Kind::MutexTry,
    Kind::MutexWait,
    Kind::FairMutex,
    Kind::Permit,
    Kind::FairPermit,
    Kind::PermitOtherLimit,
    Kind::Reader,
    Kind::Writer,
    Kind::Multi,
];

enum Phase {
    Idle {
        until: u64,
    },
    Acquiring {
        m: Box<Acquire<1>>,
        deadline: u64,
    },
    Holding {
        token: Token,
        valid_until: u64,
        release_at: u64,
    },
    Releasing {
        m: Box<Release<1>>,
        deadline: u64,
    },
    Crashed,
}

struct Client {
    kind: Kind,
    lock: Lock,
    phase: Phase,
    wire: usize,
}

/// The acquire scripts that take `sim`, with the type of key each leaves there.
const ACQUIRE_SCRIPTS: [(Script, &str); 6] = [
    (script::ACQUIRE, "string"),
    (script::FAIR_ACQUIRE, "string"),
    (script::MULTI_ACQUIRE, "string"),
    (script::SEMAPHORE_ACQUIRE, "zset"),
    (script::SEMAPHORE_FAIR_ACQUIRE, "zset"),
    (script::RW_ACQUIRE, "hash"),
];

/// An acquire command that takes `sim`: what it is (`SET NX` or the script's name) and the
/// type of key it leaves there; `None` for any other command.
fn acquire_kind(args: &[Vec<u8>]) -> Option<(&'static str, &'static str)> {
    let name = args.first()?;
    if name.eq_ignore_ascii_case(b"SET") {
        let nx = args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"NX"));
        return (nx && args.get(1).is_some_and(|k| k == NAME_KEY)).then_some(("SET NX", "string"));
    }
    let eval = name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL");
    let body = args.get(1)?;
    let (script, kind) = ACQUIRE_SCRIPTS
        .iter()
        .find(|(s, _)| eval && (*body == s.sha || *body == s.source.as_bytes()))?;
    args.iter()
        .skip(3)
        .any(|a| a == NAME_KEY)
        .then_some((script.name, *kind))
}

/// The non-fair wake-up lists K4 watches: a mutex's (`sim`'s and the multi-name lock's
/// other name's), a plain semaphore's, a read-write lock's readers' and writers'.
const WAKE_LISTS: [&[u8]; 5] = [
    b"distlock:{sim}:signal",
    b"distlock:{other}:signal",
    b"distlock:{sim}:permit-signal",
    b"distlock:{sim}:read-signal",
    b"distlock:{sim}:writer-signal",
];

/// Whose wake-ups a kind's releases push and its waiters take (K4): one kind of lock, its
/// variants together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    /// A plain, fair or multi-name mutex.
    Mutex,
    /// A semaphore, fair or not, of any limit.
    Semaphore,
    /// A read-write lock's readers and writers.
    Rw,
}

impl Kind {
    fn family(self) -> Family {
        match self {
            Kind::MutexTry | Kind::MutexWait | Kind::FairMutex | Kind::Multi => Family::Mutex,
            Kind::Permit | Kind::FairPermit | Kind::PermitOtherLimit => Family::Semaphore,
            Kind::Reader | Kind::Writer => Family::Rw,
        }
    }
}

/// What a command did to a wake-up list, as K4 reads it off the node.
enum WakeEvent {
    /// Pushed one element (the list is then `len` long).
    Push { list: usize, len: usize },
    /// Trimmed or deleted, pushing nothing (the list is then `len` long).
    Trim { list: usize, len: usize },
    /// Popped its head.
    Pop { list: usize },
}

/// How many acquires of each command met a key of each other type.
type Meetings = BTreeMap<(&'static str, &'static str), u64>;

struct World {
    rng: SplitMix64,
    now: u64,
    node: ModelNode,
    server: ServerInfo,
    wires: Network,
    clients: Vec<Client>,
    limit: u32,
    /// Whether K2 judges the node's replies (off: the broken variant shows K1 alone, the
    /// clients' beliefs, catches what it does).
    judge_replies: bool,
    violations: Vec<String>,
    grants: u64,
    /// Acquires the machines ended with `WRONGTYPE` or `WRONGLIMIT`.
    typed_refusals: u64,
    /// Of those, the `WRONGLIMIT` ones.
    wrong_limits: u64,
    /// The acquire commands K2 judged.
    meetings: Meetings,
    /// The kind of lock each acquire's token was made for (its owner token's bytes: what a
    /// waiter queues under and a hand-off writes, up to an attempt suffix `.n`).
    owners: BTreeMap<Vec<u8>, Kind>,
    /// Fair mutex hand-offs K3 judged (to a fair mutex waiter: all of them, on the correct
    /// scripts).
    handoffs: u64,
    /// Fair semaphore hand-offs K3 judged (to a fair semaphore waiter: all of them, likewise).
    permit_handoffs: u64,
    /// The kind of lock whose machine sent on each wire (a wire may run requests after its
    /// client moved on to a fresh one).
    wire_kinds: BTreeMap<usize, Kind>,
    /// Per wake-up list (`WAKE_LISTS`' order), the family that pushed each element still in
    /// it, head last.
    wake_pushers: [Vec<Family>; WAKE_LISTS.len()],
    /// The wake-ups K4 judged, by the family that took them.
    wakeups: BTreeMap<Family, u64>,
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl World {
    fn new(seed: u64, variant: Variant, judge_replies: bool) -> World {
        let mut rng = SplitMix64::new(seed);
        let (config, flavor, version) = if rng.between(0, 1) == 0 {
            (ModelConfig::redis(7, 2, 4), Flavor::Redis, (7, 2, 4))
        } else {
            (ModelConfig::valkey(8, 0, 1), Flavor::Valkey, (8, 0, 1))
        };
        let server = ServerInfo {
            protocol: Protocol::Resp2,
            flavor,
            version: Version::new(version.0, version.1, version.2),
        };
        let mut node = ModelNode::with_config(config);
        node.set_faults(ModelFaults {
            set_nx_get_ignores_type: variant == Variant::SetNxGetIgnoresType,
            multi_checks_exists_not_type: variant == Variant::MultiChecksExists,
            rw_writers_share_fair_queue: variant == Variant::WritersShareFairQueue,
            semaphore_waiters_share_fair_queue: variant == Variant::SemaphoreSharesFairQueue,
            semaphore_signal_shared_with_mutex: variant == Variant::SemaphoreSharesSignal,
            ..ModelFaults::default()
        });
        // Scripts cached from the start (this world has no `SCRIPT FLUSH`): K2 judges the
        // acquire that runs, not a `NOSCRIPT` before it.
        for known in distlock_core::SCRIPTS {
            let load: [&[u8]; 3] = [b"SCRIPT", b"LOAD", known.source.as_bytes()];
            let _ = node.execute(&load, at(0), Protocol::Resp2);
        }
        let options = LockOptions {
            ttl: Duration::from_millis(rng.between(200, 1200)),
            fenced: rng.between(0, 1) == 0,
            ..LockOptions::default()
        };
        let limit = rng.between(1, 3) as u32;
        let mut world = World {
            rng,
            now: 0,
            node,
            server,
            wires: Network::new(),
            clients: Vec::new(),
            limit,
            judge_replies,
            violations: Vec::new(),
            grants: 0,
            typed_refusals: 0,
            wrong_limits: 0,
            meetings: Meetings::new(),
            owners: BTreeMap::new(),
            handoffs: 0,
            permit_handoffs: 0,
            wire_kinds: BTreeMap::new(),
            wake_pushers: Default::default(),
            wakeups: BTreeMap::new(),
        };
        let count = world.rng.between(8, 10) as usize;
        // Kinds in a shuffled order, at least four of them different; then a fair mutex, a
        // writer and a fair semaphore (so that fair waiters of both kinds queue behind fair
        // holders, next to waiting writers: what K3 judges), a plain semaphore (whose waiters
        // block on its wake-up list next to the mutexes': what K4 judges), then any.
        let first = world.rng.between(0, KINDS.len() as u64 - 1) as usize;
        for c in 0..count {
            let kind = match c {
                0..4 => KINDS[(first + c * 2) % KINDS.len()],
                4 => Kind::FairMutex,
                5 => Kind::Writer,
                6 => Kind::FairPermit,
                7 => Kind::Permit,
                _ => KINDS[world.rng.between(0, KINDS.len() as u64 - 1) as usize],
            };
            let layout = KeyLayout::default();
            let lock = match kind {
                Kind::MutexTry | Kind::MutexWait => Lock::new(layout, NAME, options),
                Kind::FairMutex => Lock::new(
                    layout,
                    NAME,
                    LockOptions {
                        fair: true,
                        ..options
                    },
                ),
                Kind::Permit => Lock::semaphore(layout, NAME, limit, options),
                Kind::FairPermit => Lock::semaphore(
                    layout,
                    NAME,
                    limit,
                    LockOptions {
                        fair: true,
                        ..options
                    },
                ),
                Kind::PermitOtherLimit => Lock::semaphore(layout, NAME, limit + 1, options),
                Kind::Reader => Lock::rw(layout, NAME, RwMode::Read, options),
                Kind::Writer => Lock::rw(layout, NAME, RwMode::Write, options),
                Kind::Multi => Lock::multi(layout, &[NAME, OTHER], options),
            }
            .expect("a lock of this kind");
            let wire = world.wires.open();
            let until = world.rng.between(0, 200);
            world.clients.push(Client {
                kind,
                lock,
                phase: Phase::Idle { until },
                wire,
            });
        }
        world
    }

    fn token(&mut self) -> Token {
        let mut entropy = [0u8; 16];
        entropy[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        entropy[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        Token::from_entropy(entropy)
    }

    /// Writes everything a machine has to send on the client's current wire.
    fn pump<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 1>) {
        self.wires
            .pump(self.clients[c].wire, m, &mut self.rng, self.now);
    }

    /// Delivers replies and break notices to client `c`'s machine, then writes what it has
    /// to send.
    fn feed<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 1>) {
        self.wires.feed(&mut self.clients[c].wire, m, self.now);
        self.pump(c, m);
    }

    /// A machine done: a fresh connection for the next one (what it still owes is dropped).
    fn retire_wire(&mut self, c: usize) {
        self.wires.retire(&mut self.clients[c].wire);
    }

    fn step_client(&mut self, c: usize) {
        let now = self.now;
        let request = self.clients[c].lock.options().request_timeout.as_millis();
        let phase = std::mem::replace(&mut self.clients[c].phase, Phase::Crashed);
        let next = match phase {
            Phase::Idle { until } if until <= now => {
                let wait = match self.clients[c].kind {
                    Kind::MutexTry => Duration::ZERO,
                    Kind::MutexWait | Kind::FairMutex | Kind::FairPermit => {
                        Duration::from_millis(self.rng.between(100, 3000))
                    }
                    _ if self.rng.between(0, 3) == 0 => Duration::ZERO,
                    _ => Duration::from_millis(self.rng.between(100, 3000)),
                };
                let token = self.token();
                self.owners
                    .insert(token.as_bytes().to_vec(), self.clients[c].kind);
                let seed = self.rng.next_u64();
                let mut m = Box::new(
                    Acquire::new(
                        &self.clients[c].lock,
                        token,
                        &[self.server],
                        wait,
                        at(now),
                        seed,
                    )
                    .expect("acquire"),
                );
                self.pump(c, &mut *m);
                Phase::Acquiring {
                    m,
                    deadline: now + wait.as_millis() + 3 * request,
                }
            }
            Phase::Acquiring { mut m, deadline } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    None if now > deadline => {
                        self.violations.push(format!(
                            "K2: acquire of client {c} ({:?}) still running at {now} ms",
                            self.clients[c].kind
                        ));
                        Phase::Crashed
                    }
                    None => Phase::Acquiring { m, deadline },
                    Some(outcome) => {
                        self.retire_wire(c);
                        match outcome {
                            Ok(lease) => {
                                self.grants += 1;
                                let valid_until = lease.valid_until().as_millis();
                                let span = valid_until.saturating_sub(now);
                                if self.rng.between(0, 9) == 0 {
                                    // Dies holding it: its keys live out their TTL.
                                    Phase::Crashed
                                } else {
                                    Phase::Holding {
                                        token: lease.token().clone(),
                                        valid_until,
                                        release_at: now + self.rng.between(0, span * 13 / 10),
                                    }
                                }
                            }
                            Err(error) => {
                                if let Error::Server { error, .. } = error
                                    && matches!(
                                        error.kind,
                                        ServerErrorKind::WrongType | ServerErrorKind::WrongLimit
                                    )
                                {
                                    self.typed_refusals += 1;
                                    if error.kind == ServerErrorKind::WrongLimit {
                                        self.wrong_limits += 1;
                                    }
                                }
                                Phase::Idle {
                                    until: now + self.rng.between(0, 300),
                                }
                            }
                        }
                    }
                }
            }
            Phase::Holding {
                token, release_at, ..
            } if release_at <= now => {
                let seed = self.rng.next_u64();
                let mut m = Box::new(
                    Release::new(&self.clients[c].lock, token, &[self.server], at(now), seed)
                        .expect("release"),
                );
                self.pump(c, &mut *m);
                Phase::Releasing {
                    m,
                    deadline: now + 3 * request,
                }
            }
            Phase::Releasing { mut m, deadline } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    Some(_) => {
                        self.retire_wire(c);
                        Phase::Idle {
                            until: now + self.rng.between(0, 300),
                        }
                    }
                    None if now > deadline => {
                        self.violations.push(format!(
                            "K2: release of client {c} ({:?}) still running at {now} ms",
                            self.clients[c].kind
                        ));
                        Phase::Crashed
                    }
                    None => Phase::Releasing { m, deadline },
                }
            }
            other => other,
        };
        self.clients[c].phase = next;
        // The wire it may have sent on (fresh after a retire or a break).
        self.wire_kinds
            .insert(self.clients[c].wire, self.clients[c].kind);
    }

    /// K1: the clients that believe they hold `sim` now hold it in compatible ways.
    fn check_exclusion(&mut self) {
        let now = self.now;
        let holders: Vec<Kind> = self
            .clients
            .iter()
            .filter(|c| matches!(c.phase, Phase::Holding { valid_until, .. } if now < valid_until))
            .map(|c| c.kind)
            .collect();
        let readers = holders.iter().filter(|k| **k == Kind::Reader).count();
        let permits = holders
            .iter()
            .filter(|k| matches!(k, Kind::Permit | Kind::FairPermit))
            .count();
        let other_permits = holders
            .iter()
            .filter(|k| **k == Kind::PermitOtherLimit)
            .count();
        let exclusive = holders.len() - readers - permits - other_permits;
        let conflict = (exclusive > 0 && holders.len() > 1)
            || (readers > 0 && permits + other_permits > 0)
            || (permits > 0 && other_permits > 0)
            || permits > self.limit as usize
            || other_permits > self.limit as usize + 1;
        if conflict {
            self.violations.push(format!(
                "K1: {holders:?} all believe they hold the name at {now} ms (limit {})",
                self.limit
            ));
        }
    }

    fn run(mut self) -> Outcome {
        // 1 ms steps: every timer in this world is in whole milliseconds.
        while self.now < RUN_MS && self.violations.is_empty() {
            self.serve_node(self.now);
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
            self.check_exclusion();
            self.now += 1;
        }
        Outcome {
            violations: self.violations,
            grants: self.grants,
            typed_refusals: self.typed_refusals,
            wrong_limits: self.wrong_limits,
            meetings: self.meetings,
            handoffs: self.handoffs,
            permit_handoffs: self.permit_handoffs,
            wakeups: self.wakeups,
        }
    }

    /// K4: what the commands a client of `kind` ran did to the wake-up lists, in order.
    fn check_wakeups(&mut self, kind: Option<Kind>, events: Vec<WakeEvent>) {
        for event in events {
            match event {
                WakeEvent::Push { list, len } => {
                    let pushers = &mut self.wake_pushers[list];
                    // Unknown sender: an element nobody can be judged against.
                    let Some(kind) = kind else {
                        pushers.clear();
                        continue;
                    };
                    pushers.push(kind.family());
                    let drop = pushers.len().saturating_sub(len);
                    pushers.drain(..drop);
                }
                WakeEvent::Trim { list, len } => {
                    let pushers = &mut self.wake_pushers[list];
                    let drop = pushers.len().saturating_sub(len);
                    pushers.drain(..drop);
                }
                WakeEvent::Pop { list } => {
                    let (Some(pusher), Some(kind)) = (self.wake_pushers[list].pop(), kind) else {
                        continue;
                    };
                    *self.wakeups.entry(kind.family()).or_default() += 1;
                    if pusher != kind.family() {
                        self.violations.push(format!(
                            "K4: a {pusher:?} release's wake-up on {} was taken by a {kind:?} waiter at {} ms",
                            String::from_utf8_lossy(WAKE_LISTS[list]),
                            self.now
                        ));
                    }
                }
            }
        }
    }

    /// K3: a fair release of `kind` (a fair mutex's or a fair semaphore's) that left `handed`
    /// in `sim`'s key (the mutex's token, or a new member of the semaphore's holders) handed
    /// it to a waiter of that kind.
    fn check_handoff(&mut self, handing: Kind, handed: &[u8]) {
        // A queued token is an attempt's: the owner's, or the owner's with `.n`.
        let owner = handed
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(handed, |dot| &handed[..dot]);
        let kind = self
            .owners
            .get(handed)
            .or_else(|| self.owners.get(owner))
            .copied();
        match kind {
            Some(kind) if kind == handing && handing == Kind::FairMutex => self.handoffs += 1,
            Some(kind) if kind == handing => self.permit_handoffs += 1,
            _ => self.violations.push(format!(
                "K3: a {handing:?} release handed {} to {} ({kind:?}), not its own kind's waiter, at {} ms",
                if handing == Kind::FairMutex { "the name" } else { "a permit" },
                String::from_utf8_lossy(handed),
                self.now
            )),
        }
    }
}

/// The fair release `args` run on `sim`, named by the kind whose release it is: a fair
/// mutex's ([`script::FAIR_RELEASE`]) or a fair semaphore's
/// ([`script::SEMAPHORE_FAIR_RELEASE`]); `None` for any other command.
fn fair_release(args: &[Vec<u8>]) -> Option<Kind> {
    let eval = args
        .first()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"EVALSHA") || a.eq_ignore_ascii_case(b"EVAL"));
    let body = args.get(1)?;
    let runs = |s: &Script| *body == s.sha || *body == s.source.as_bytes();
    if !eval || args.get(3).is_none_or(|k| k != NAME_KEY) {
        return None;
    }
    if runs(&script::FAIR_RELEASE) {
        Some(Kind::FairMutex)
    } else if runs(&script::SEMAPHORE_FAIR_RELEASE) {
        Some(Kind::FairPermit)
    } else {
        None
    }
}

/// Each wake-up list's length and expiry on the node now.
fn wake_lists(node: &ModelNode, now: u64) -> [(usize, Option<Option<Instant>>); WAKE_LISTS.len()] {
    WAKE_LISTS.map(|key| (node.list_len(key, at(now)), node.expiry(key, at(now))))
}

/// What the command `args` did to each wake-up list, from the lists before and after it.
fn wake_events(
    args: &[Vec<u8>],
    before: &[(usize, Option<Option<Instant>>)],
    after: &[(usize, Option<Option<Instant>>)],
    events: &mut Vec<WakeEvent>,
) {
    let name = args.first().map(Vec::as_slice).unwrap_or_default();
    let pop = name.eq_ignore_ascii_case(b"BLPOP");
    // Only a script or an `LPUSH` pushes; a release's `LTRIM` or `PEXPIRE` in a pipeline
    // (none on these servers) would only trim.
    let pushes = ["EVAL", "EVALSHA", "LPUSH"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
    for (list, (was, is)) in before.iter().zip(after).enumerate() {
        if was == is {
            continue;
        }
        events.push(if pop && is.0 + 1 == was.0 {
            WakeEvent::Pop { list }
        } else if pushes && is.0 > 0 {
            WakeEvent::Push { list, len: is.0 }
        } else {
            WakeEvent::Trim { list, len: is.0 }
        });
    }
}

/// The list a `BLPOP` reply `frame` popped, when it is a wake-up list.
fn popped_list(frame: &[u8]) -> Option<usize> {
    let Ok(Reply::Array(items)) = resp::decode(frame, Protocol::Resp2) else {
        return None;
    };
    let [Reply::Bulk(key), Reply::Bulk(_)] = items.as_slice() else {
        return None;
    };
    WAKE_LISTS.iter().position(|l| l == key)
}

/// What `sim`'s key holds, as K3 compares it around a fair release: the mutex's token, or the
/// semaphore's holders.
fn holders_of(node: &ModelNode, now: u64) -> Vec<Vec<u8>> {
    match node.type_of(NAME_KEY, at(now)) {
        Some("zset") => node.sorted_set(NAME_KEY, at(now)),
        _ => node
            .value(NAME_KEY, at(now))
            .map(<[u8]>::to_vec)
            .into_iter()
            .collect(),
    }
}

impl Serves for World {
    fn network(&mut self) -> &mut Network {
        &mut self.wires
    }

    /// Runs one connection's commands, checking K2 on every acquire that meets another
    /// kind's key.
    fn serve_wire(&mut self, wire: usize) {
        let now = self.now;
        let mut out = Vec::new();
        // Per command run: the kind it would take and the type `sim` had, when they differ.
        let mut commands: Vec<Option<(&'static str, &'static str, &'static str)>> = Vec::new();
        let mut server = std::mem::take(&mut self.wires[wire].server);
        let pop_pending = server.is_blocked();
        // The name's holders before a fair release, and each new holder one left there (with
        // the kind whose release it was).
        let (mut before_release, mut handed) = (None::<Vec<Vec<u8>>>, Vec::new());
        // K4: the wake-up lists before each command, and what each command did to them.
        let (mut lists_before, mut wake) = (None, Vec::new());
        self.node
            .serve_observed(&mut server, at(now), &mut out, |stage, node, args| {
                if stage == Stage::Before {
                    lists_before = Some(wake_lists(node, now));
                } else if let Some(before) = lists_before.take() {
                    wake_events(args, &before, &wake_lists(node, now), &mut wake);
                }
                if let Some(handing) = fair_release(args) {
                    let holders = holders_of(node, now);
                    if stage == Stage::Before {
                        before_release = Some(holders);
                    } else if let Some(before) = before_release.take() {
                        handed.extend(
                            holders
                                .into_iter()
                                .filter(|h| !before.contains(h))
                                .map(|h| (handing, h)),
                        );
                    }
                }
                if stage != Stage::Before {
                    return;
                }
                let found = node.type_of(NAME_KEY, at(now));
                commands.push(match (acquire_kind(args), found) {
                    (Some((what, wants)), Some(found)) if wants != found => {
                        Some((what, wants, found))
                    }
                    _ => None,
                });
            });
        self.wires[wire].server = server;
        for (handing, token) in handed {
            self.check_handoff(handing, &token);
        }
        // A blocked pop that finished answers first; the observer saw no command for it.
        let skip = usize::from(pop_pending && !commands.is_empty());
        let mut replies = Vec::new();
        let mut rest = &out[..];
        while let Ok(Some(len)) = resp::frame_len(rest) {
            replies.push(&rest[..len]);
            rest = &rest[len..];
        }
        // That pop came before every command the observer saw.
        let resumed = pop_pending
            .then(|| replies.first().and_then(|frame| popped_list(frame)))
            .flatten();
        if let Some(list) = resumed {
            wake.insert(0, WakeEvent::Pop { list });
        }
        let kind = self.wire_kinds.get(&wire).copied();
        self.check_wakeups(kind, wake);
        for (i, cross) in commands.iter().enumerate() {
            let (Some((what, wants, found)), Some(frame)) = (cross, replies.get(i + skip)) else {
                continue;
            };
            *self.meetings.entry((what, found)).or_default() += 1;
            let typed = matches!(
                resp::decode(frame, Protocol::Resp2),
                Ok(Reply::Error(e)) if e.starts_with(b"WRONGTYPE") || e.starts_with(b"WRONGLIMIT")
            );
            if !typed && self.judge_replies {
                self.violations.push(format!(
                    "K2: {what} (taking a {wants}) ran on a {found} at {now} ms and answered {:?}",
                    String::from_utf8_lossy(frame)
                ));
            }
        }
        self.wires[wire].reply(out, &mut self.rng, now);
    }
}

struct Outcome {
    wakeups: BTreeMap<Family, u64>,
    violations: Vec<String>,
    grants: u64,
    typed_refusals: u64,
    wrong_limits: u64,
    meetings: Meetings,
    handoffs: u64,
    permit_handoffs: u64,
}

/// Runs `runs` seeds from `DISTLOCK_MIX_SEED` (or a fixed base): the first violation of each
/// failing seed, and the totals of the runs.
fn campaign(variant: Variant, judge_replies: bool, runs: u64) -> (Vec<(u64, String)>, Totals) {
    let base: u64 = std::env::var("DISTLOCK_MIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x313c);
    let (mut found, mut totals) = (Vec::new(), Totals::default());
    for seed in base..base + runs {
        let outcome = World::new(seed, variant, judge_replies).run();
        totals.grants += outcome.grants;
        totals.typed_refusals += outcome.typed_refusals;
        totals.wrong_limits += outcome.wrong_limits;
        totals.handoffs += outcome.handoffs;
        totals.permit_handoffs += outcome.permit_handoffs;
        for (family, n) in outcome.wakeups {
            *totals.wakeups.entry(family).or_default() += n;
        }
        for (meeting, n) in outcome.meetings {
            *totals.meetings.entry(meeting).or_default() += n;
        }
        if let Some(v) = outcome.violations.into_iter().next() {
            found.push((seed, v));
        }
    }
    (found, totals)
}

#[derive(Default)]
struct Totals {
    grants: u64,
    typed_refusals: u64,
    wrong_limits: u64,
    meetings: Meetings,
    handoffs: u64,
    permit_handoffs: u64,
    /// The wake-ups K4 judged, by the family that took them.
    wakeups: BTreeMap<Family, u64>,
}

/// Every acquire command of the mix, and the other kinds' key types it must be seen meeting.
const MUST_MEET: [(&str, [&str; 2]); 7] = [
    ("SET NX", ["zset", "hash"]),
    ("acquire", ["zset", "hash"]),
    ("fair-acquire", ["zset", "hash"]),
    ("multi-acquire", ["zset", "hash"]),
    ("semaphore-acquire", ["string", "hash"]),
    ("semaphore-fair-acquire", ["string", "hash"]),
    ("rw-acquire", ["string", "zset"]),
];

#[test]
fn mixed_kinds_never_hold_one_name_together_and_refuse_each_other_typed() {
    let runs = std::env::var("DISTLOCK_MIX_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(MIX_RUNS);
    let (found, totals) = campaign(Variant::Correct, true, runs);
    let (grants, refusals, wrong_limits) =
        (totals.grants, totals.typed_refusals, totals.wrong_limits);
    println!(
        "mixed-kinds simulation: {runs} runs, {grants} holds granted, {refusals} typed refusals ({wrong_limits} WRONGLIMIT), {} fair mutex and {} fair semaphore hand-offs, wake-ups taken {:?}, {} violations; K2 judged {:?}",
        totals.handoffs,
        totals.permit_handoffs,
        totals.wakeups,
        found.len(),
        totals.meetings
    );
    assert!(found.is_empty(), "(seed, violation): {found:?}");
    // The kinds met: holds were taken, other kinds were refused, and every acquire command
    // was judged on every other kind's key (with at least 10 runs).
    assert!(grants > runs * 10, "only {grants} grants in {runs} runs");
    assert!(
        refusals > runs * 5,
        "only {refusals} typed refusals in {runs} runs"
    );
    if runs >= 10 {
        assert!(wrong_limits > 0, "no semaphore met another limit");
        assert!(
            totals.handoffs > 0,
            "K3 never judged a fair mutex's hand-off"
        );
        assert!(
            totals.permit_handoffs > 0,
            "K3 never judged a fair semaphore's hand-off"
        );
        for family in [Family::Mutex, Family::Semaphore, Family::Rw] {
            assert!(
                totals.wakeups.contains_key(&family),
                "K4 never judged a wake-up a {family:?} waiter took: {:?}",
                totals.wakeups
            );
        }
        for (what, types) in MUST_MEET {
            for found in types {
                assert!(
                    totals.meetings.contains_key(&(what, found)),
                    "K2 never judged {what} on a {found}: {:?}",
                    totals.meetings
                );
            }
        }
    }
}

#[test]
fn mixed_kinds_a_set_nx_get_that_ignores_the_type_is_caught_by_k2_and_by_k1_alone() {
    let (found, _) = campaign(Variant::SetNxGetIgnoresType, true, BROKEN_RUNS);
    let (beliefs, _) = campaign(Variant::SetNxGetIgnoresType, false, BROKEN_RUNS);
    println!(
        "set-nx-get-ignores-type: caught in {} of {BROKEN_RUNS} runs, {} by K2; with K2's reply check off, {} by K1",
        found.len(),
        found.iter().filter(|(_, v)| v.starts_with("K2")).count(),
        beliefs.iter().filter(|(_, v)| v.starts_with("K1")).count()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("K2")), "{found:?}");
    // The nil answer is a real double hold, not only a wrong reply: two kinds believe.
    assert!(
        beliefs.iter().any(|(_, v)| v.starts_with("K1")),
        "{beliefs:?}"
    );
}

/// Runs the broken `variant` with K2's reply check on and asserts that `property` (`"K2"`,
/// `"K3"`) caught it in at least one run, printing how often.
fn assert_caught_by(variant: Variant, label: &str, property: &str) {
    let (found, _) = campaign(variant, true, BROKEN_RUNS);
    println!(
        "{label}: caught in {} of {BROKEN_RUNS} runs, {} by {property}; first: {:?}",
        found.len(),
        found
            .iter()
            .filter(|(_, v)| v.starts_with(property))
            .count(),
        found.first()
    );
    assert!(
        found.iter().any(|(_, v)| v.starts_with(property)),
        "{found:?}"
    );
}

#[test]
fn mixed_kinds_a_multi_acquire_that_checks_exists_is_caught_by_k2() {
    assert_caught_by(Variant::MultiChecksExists, "multi-checks-exists", "K2");
}

#[test]
fn mixed_kinds_writers_in_the_fair_queue_are_caught_by_k3() {
    assert_caught_by(
        Variant::WritersShareFairQueue,
        "writers-share-fair-queue",
        "K3",
    );
}

#[test]
fn mixed_kinds_fair_semaphore_waiters_in_the_fair_mutex_queue_are_caught_by_k3() {
    assert_caught_by(
        Variant::SemaphoreSharesFairQueue,
        "semaphore-shares-fair-queue",
        "K3",
    );
}

#[test]
fn mixed_kinds_a_semaphore_on_the_mutexs_wake_up_list_is_caught_by_k4() {
    assert_caught_by(
        Variant::SemaphoreSharesSignal,
        "semaphore-shares-signal",
        "K4",
    );
}
