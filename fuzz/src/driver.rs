//! Drives one lock machine the way every driver must (`core/src/machine.rs`), keeps an
//! independent account of what went over each node's connection, and checks the
//! invariants after every call:
//!
//! - **no panic, no runaway call**: each call's extra heap is at most [`CALL_PEAK_BOUND`]
//!   and a machine holds at most [`HELD_BOUND`] bytes of heap ("memory stays within the
//!   fixed capacities");
//! - **every command is exactly what the protocol sends** ([`crate::wire`]);
//! - **no lease it does not have**: `Acquired` only when, for the attempt the lease reports,
//!   a quorum of nodes answered that attempt's acquire with a well-formed grant and holds
//!   the lease's token (the attempt's when taken fresh, the owner's when re-entered), its
//!   validity is `started + ttl - drift` and not over, no rollback deleted with its token,
//!   and, for fenced Redlock, a quorum raised the counter to its fence; a release or extend
//!   succeeds only on a quorum of yes replies to its own requests, and says "not held" only
//!   when too many nodes said so;
//! - **the outcome comes once, and cancel gives `Cancelled`**;
//! - **`owed_replies` is right**: when the machine says a connection owes `k` replies, it
//!   owes exactly `k` by this account (a driver discards that many before reusing it);
//! - **liveness**: while there is no outcome there is a deadline, and once the nodes fall
//!   silent the outcome comes by the machine's deadline ([`Harness::finish`]).
//!
//! The account of the connection ("which frame answers which command") is kept here: each
//! node's delivered bytes are cut into frames and the k-th reply since the connection was
//! (re)opened answers the k-th command sent on it. Frames are cut and decoded with the
//! core's public `resp::frame_len` and `resp::decode` (property-tested against
//! `redis-protocol` in the core), so what is checked is the matching, the quorum
//! arithmetic and the outcome, which are the machine's own decisions.

use std::collections::VecDeque;

use distlock_core::{
    Acquire, Duration, Error, Extend, Extended, Instant, Lease, Protocol, Release, Released,
    ServerErrorKind, quorum,
    resp::{Reply, decode, frame_len},
};

use crate::meter;
use crate::replies::{self, ReplyKind, ServerState};
use crate::setup::{Kind, Setup};
use crate::wire::{self, Cmd};

/// Finding 2 (`core/tests/fuzz_regressions.rs`, the `…_stall…`/`…_block…` tests): when a
/// batch's first reply was `NOSCRIPT` (or, for a native command, `ERR unknown command`) and
/// the read that completed the batch held more bytes, the link desynchronised after
/// queueing the resend, dropped it, and the operation waited forever (no outcome, no
/// deadline; a reconnect did not help). Fixed in the core: not tolerated any more. With
/// `true` the harness recognises exactly that case and cancels, as a caller giving up would.
pub const TOLERATE_STALL_AFTER_RESEND: bool = false;

/// Finding 3 (`a_saturated_hold_count_is_a_re_entry_not_a_fresh_acquisition`): a re-entry
/// reply with 2^32 - 1 holds or more hit the core's "no grant yet" sentinel and the lease
/// was reported as a fresh acquisition, with the attempt's token rather than the owner's the
/// node holds. Fixed in the core: not tolerated any more (with `true`, a node that reported
/// such a count counts as holding the lease's token).
pub const TOLERATE_SATURATED_HOLDS: bool = false;

/// Finding 4 (`a_reentrant_redlock_lease_reports_a_token_its_quorum_holds`): on a reentrant
/// Redlock, fresh grants (the attempt's token) and re-entries (the owner's token) in one
/// attempt gave a lease with the token the smallest hold count said, which a quorum need
/// not hold. Fixed in the core (the lease is the token a quorum holds; a split wins
/// nothing): not tolerated any more (with `true`, such an attempt's grants count whichever
/// token they hold).
pub const TOLERATE_MIXED_REENTRY: bool = false;

/// The node capacity of the machines under test.
pub const CAP: usize = 5;
/// When every machine starts.
pub const START: Instant = Instant::from_millis(1_000);
/// The most heap one call may have live at once beyond what was live before it: decoding
/// one reply of at most `REPLY_CAP` (512) bytes.
pub const CALL_PEAK_BOUND: usize = 64 * 1024;
/// The most heap a machine may hold: a few server error messages of at most
/// `SERVER_MESSAGE_CAP` (120) bytes each.
pub const HELD_BOUND: usize = 1024;
/// Transmit buffer size (an `EVAL` with the script source and a 256-byte name fits).
const BUF: usize = 16 * 1024;

/// The machine under test.
#[derive(Debug, Clone)]
pub enum Machine {
    /// An acquire.
    Acquire(Acquire<CAP>),
    /// A release.
    Release(Release<CAP>),
    /// An extend.
    Extend(Extend<CAP>),
}

/// Its outcome.
#[derive(Debug)]
pub enum Outcome {
    /// An acquire's.
    Acquire(Result<Lease, Error>),
    /// A release's.
    Release(Result<Released, Error>),
    /// An extend's.
    Extend(Result<Extended, Error>),
}

macro_rules! on_machine {
    ($m:expr, $x:ident => $body:expr) => {
        match $m {
            Machine::Acquire($x) => $body,
            Machine::Release($x) => $body,
            Machine::Extend($x) => $body,
        }
    };
}

impl Machine {
    fn poll_outcome(&mut self) -> Option<Outcome> {
        match self {
            Machine::Acquire(m) => m.poll_outcome().map(Outcome::Acquire),
            Machine::Release(m) => m.poll_outcome().map(Outcome::Release),
            Machine::Extend(m) => m.poll_outcome().map(Outcome::Extend),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        on_machine!(self, m => m.poll_timeout())
    }

    fn owed_replies(&self, node: usize) -> Option<u32> {
        on_machine!(self, m => m.owed_replies(node))
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<distlock_core::Transmit>, distlock_core::BufferTooSmall> {
        on_machine!(self, m => m.poll_transmit(now, buf))
    }
}

/// What a reply means for the command it answers, judged from the protocol's definition
/// (`core/src/script.rs`), not from the core's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Grant { holds: i64, fence: u64 },
    Raised(i64),
    Yes,
    NotHeld,
    Other,
}

fn judge(cmd: Cmd, reply: &Reply<'_>, fenced: bool) -> Judged {
    match (cmd, reply) {
        (Cmd::AcquireSet, Reply::Simple(b"OK")) => Judged::Grant { holds: 1, fence: 0 },
        // No old value: `NX` set the key.
        (Cmd::AcquireSetGet, Reply::Nil) => Judged::Grant { holds: 1, fence: 0 },
        (Cmd::AcquireScript | Cmd::FairAcquireScript { .. }, Reply::Array(items)) => {
            match items.as_slice() {
                [Reply::Integer(holds @ 1..), Reply::Integer(fence @ 0..)]
                    if *holds >= 1 && (*fence >= 1 || !fenced) =>
                {
                    Judged::Grant {
                        holds: *holds,
                        fence: fence.unsigned_abs(),
                    }
                }
                _ => Judged::Other,
            }
        }
        (Cmd::RaiseFence(_), Reply::Integer(n @ 0..)) => Judged::Raised(*n),
        (Cmd::ReleaseScript | Cmd::FairReleaseScript, Reply::Integer(0..)) => Judged::Yes,
        (Cmd::ReleaseScript | Cmd::FairReleaseScript, Reply::Integer(-1)) => Judged::NotHeld,
        (Cmd::ReleaseNative | Cmd::ExtendScript, Reply::Integer(1)) => Judged::Yes,
        (Cmd::ReleaseNative | Cmd::ExtendScript, Reply::Integer(0)) => Judged::NotHeld,
        (Cmd::ExtendNative, Reply::Simple(b"OK")) => Judged::Yes,
        (Cmd::ExtendNative, Reply::Nil) => Judged::NotHeld,
        _ => Judged::Other,
    }
}

/// An acquire command sent, and what its reply was.
#[derive(Debug, Clone)]
struct AcquireRec {
    sent_at: Instant,
    /// A fair cycle's block span: its key lives this much longer than the ttl, and its
    /// lease may count from up to this much after `sent_at` (`core/src/fair.rs`).
    extra: Duration,
    /// The token it writes when the lock is free (its attempt's).
    token: Vec<u8>,
    /// `None`: unanswered; `Some(None)`: answered, not a grant; `Some(Some(g))`: granted.
    grant: Option<Option<Grant>>,
}

/// A grant: the node's hold count and fencing counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grant {
    holds: i64,
    fence: u64,
}

/// A raise-fence command sent, and the counter its reply reported.
#[derive(Debug, Clone)]
struct RaiseRec {
    sent_at: Instant,
    asked: u64,
    raised: Option<i64>,
}

/// One node: the account of its connection, the bytes not yet delivered, and what its
/// replies said.
#[derive(Debug, Default)]
struct Node {
    protocol: Protocol,
    /// Commands sent on the current connection and not answered yet, in order, with the
    /// index of their record (acquires and raises).
    unanswered: VecDeque<(Cmd, usize)>,
    /// Delivered bytes not yet a whole frame.
    stream: Vec<u8>,
    /// Bytes the core must refuse arrived (until the connection is replaced).
    broken: bool,
    /// A reply asked for a resend (`NOSCRIPT`, `unknown command`) and nothing was sent to
    /// the node since.
    resend_armed: bool,
    /// Bytes broke the connection while a resend was armed (finding 2): the operation's
    /// vote for this node hangs until the machine sends to the node again. A reconnect does
    /// not clear it (nothing is in flight to fail).
    resend_dropped: bool,
    /// Every command sent on the current connection (to aim structured replies).
    log: Vec<Cmd>,
    /// Bytes chosen by the fuzzer and not delivered yet.
    pending: Vec<u8>,
    server: ServerState,
    acquires: Vec<AcquireRec>,
    raises: Vec<RaiseRec>,
    /// The tokens rollbacks sent to this node deleted with.
    rollbacks: Vec<Vec<u8>>,
    yes: bool,
    not_held: bool,
}

impl Node {
    fn reset(&mut self) {
        self.unanswered.clear();
        self.stream.clear();
        self.broken = false;
        self.resend_armed = false;
        self.log.clear();
        self.pending.clear();
    }

    fn set_broken(&mut self) {
        self.broken = true;
        self.stream.clear();
    }
}

/// One machine under test, with its nodes, its clock and its account.
pub struct Harness {
    /// What it runs.
    pub setup: Setup,
    machine: Machine,
    /// The virtual clock.
    pub now: Instant,
    nodes: Vec<Node>,
    outcome: Option<Instant>,
    /// The token of the lease the acquire reported.
    lease_token: Option<Vec<u8>>,
    cancelled: bool,
    buf: Vec<u8>,
    /// When set (`command_encoding`), every transmit is first asked for with a buffer this
    /// much too short (modulo its size), which must be refused untouched with the exact size
    /// needed, and is also decoded with `redis-protocol`, which must read the same commands.
    pub short_buffer: Option<usize>,
}

impl Harness {
    /// Builds the machine at [`START`] and sends its first requests.
    pub fn new(setup: Setup) -> Self {
        Self::with_short_buffer(setup, None)
    }

    /// As [`Harness::new`], checking short buffers (see [`Harness::short_buffer`]).
    pub fn with_short_buffer(setup: Setup, short_buffer: Option<usize>) -> Self {
        let now = START;
        let servers = setup.servers.clone();
        let (machine, peak) = meter::peak_of(|| match setup.kind {
            Kind::Acquire => Machine::Acquire(
                Acquire::new(
                    &setup.lock,
                    setup.token.clone(),
                    &servers,
                    setup.wait,
                    now,
                    setup.seed,
                )
                .expect("a valid setup"),
            ),
            Kind::Release => Machine::Release(
                Release::new(&setup.lock, setup.token.clone(), &servers, now, setup.seed)
                    .expect("a valid setup"),
            ),
            Kind::Extend => Machine::Extend(
                Extend::new(&setup.lock, setup.token.clone(), &servers, now, setup.seed)
                    .expect("a valid setup"),
            ),
        });
        assert!(
            peak <= CALL_PEAK_BOUND,
            "building a machine took {peak} bytes"
        );
        let nodes = servers
            .iter()
            .map(|s| Node {
                protocol: s.protocol,
                ..Node::default()
            })
            .collect();
        let mut harness = Harness {
            setup,
            machine,
            now,
            nodes,
            outcome: None,
            lease_token: None,
            cancelled: false,
            buf: vec![0; BUF],
            short_buffer,
        };
        harness.after_call();
        harness
    }

    /// How many nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the outcome is out.
    pub fn ended(&self) -> bool {
        self.outcome.is_some()
    }

    fn call(&mut self, f: impl FnOnce(&mut Machine, Instant)) {
        let now = self.now;
        let machine = &mut self.machine;
        let ((), peak) = meter::peak_of(|| f(machine, now));
        assert!(
            peak <= CALL_PEAK_BOUND,
            "one call had {peak} bytes of heap live"
        );
        self.after_call();
    }

    /// Finding 2's state: no outcome, no deadline, and a node whose resend was dropped.
    fn stalled_by_finding_2(&self) -> bool {
        !self.ended()
            && self.machine.poll_timeout().is_none()
            && self.nodes.iter().any(|n| n.resend_dropped)
    }

    /// Queues a structured reply for `node`, aimed at the next command its connection
    /// will answer.
    pub fn push_reply(&mut self, node: usize, kind: ReplyKind) {
        let node = node % self.nodes.len();
        let target = self.next_target(node);
        let fenced = self.setup.lock.options().fenced;
        let signal = [&self.setup.prefix[..], b"{", &self.setup.name, b"}:signal"].concat();
        let n = &mut self.nodes[node];
        let bytes = replies::encode(kind, target, n.protocol, fenced, &signal, &mut n.server);
        n.pending.extend_from_slice(&bytes);
    }

    /// Queues raw bytes for `node`.
    pub fn push_raw(&mut self, node: usize, bytes: &[u8]) {
        let node = node % self.nodes.len();
        self.nodes[node].pending.extend_from_slice(bytes);
    }

    /// The command the next whole frame queued for `node` will answer.
    fn next_target(&self, node: usize) -> Option<Cmd> {
        let n = &self.nodes[node];
        let mut bytes = [&n.stream[..], &n.pending[..]].concat();
        let mut frames = 0usize;
        while let Ok(Some(len)) = frame_len(&bytes) {
            if !matches!(decode(&bytes[..len], n.protocol), Ok(Reply::Push(_))) {
                frames += 1;
            }
            bytes.drain(..len);
        }
        let answered = n.log.len() - n.unanswered.len();
        n.log.get(answered + frames).copied()
    }

    /// Bytes queued for `node` and not delivered.
    pub fn pending(&self, node: usize) -> usize {
        self.nodes[node % self.nodes.len()].pending.len()
    }

    /// Delivers up to `max` queued bytes to `node` in one read.
    pub fn deliver(&mut self, node: usize, max: usize) {
        let node = node % self.nodes.len();
        let n = &mut self.nodes[node];
        let take = max.min(n.pending.len());
        if take == 0 {
            return;
        }
        let bytes: Vec<u8> = n.pending.drain(..take).collect();
        self.account(node, &bytes);
        self.call(|m, now| on_machine!(m, x => x.handle_input(node, &bytes, now)));
    }

    /// Delivers everything queued for `node`, `piece` bytes per read.
    pub fn deliver_in_pieces(&mut self, node: usize, piece: usize) {
        let piece = piece.max(1);
        while self.pending(node) > 0 {
            self.deliver(node, piece);
        }
    }

    /// The connection to `node` was lost and replaced: what was queued is gone.
    pub fn reset(&mut self, node: usize) {
        let node = node % self.nodes.len();
        self.nodes[node].reset();
        self.call(|m, now| on_machine!(m, x => x.handle_disconnect(node, now)));
    }

    /// The caller gives up.
    pub fn cancel(&mut self) {
        let ended = self.ended();
        self.cancelled = true;
        self.call(|m, now| on_machine!(m, x => x.cancel(now)));
        if !ended {
            assert!(self.ended(), "cancel did not end the machine");
        }
    }

    /// Time passes by `by` (forward only); the timeout is handled when due.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        if self.machine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.call(|m, now| on_machine!(m, x => x.handle_timeout(now)));
        }
    }

    /// Time runs to the machine's deadline, which is then handled.
    pub fn run_to_timeout(&mut self) {
        if let Some(t) = self.machine.poll_timeout() {
            self.now = self.now.max(t);
            self.call(|m, now| on_machine!(m, x => x.handle_timeout(now)));
        }
    }

    /// `handle_timeout` now, due or not (early calls are harmless).
    pub fn early_timeout(&mut self) {
        self.call(|m, now| on_machine!(m, x => x.handle_timeout(now)));
    }

    /// The nodes fall silent (what is queued is never delivered): the outcome must come,
    /// by the machine's deadline.
    ///
    /// Deadlines: an acquire starts its last attempt before its wait ends (or, after a time
    /// jump, when it notices), and an attempt takes at most two rounds (acquire, raise) of
    /// one request timeout each after a `BLPOP` of at most another: so `max(start + wait,
    /// now) + 3 × timeout`. A release or extend asks again only before `start + timeout`,
    /// so it ends by `max(start + 2 × timeout, now)`.
    pub fn finish(&mut self) {
        let timeout = self.setup.lock.options().request_timeout;
        let bound = match self.setup.kind {
            Kind::Acquire => START
                .saturating_add(self.setup.wait)
                .max(self.now)
                .saturating_add(timeout.saturating_mul(3)),
            _ => START
                .saturating_add(timeout.saturating_mul(2))
                .max(self.now),
        };
        let mut spins = 0;
        while !self.ended() {
            let next = self
                .machine
                .poll_timeout()
                .expect("no outcome and no deadline (checked after every call)");
            // A deadline that is not in the future right after one was handled would make a
            // driver spin; one repeat is tolerated (a timer and a reply deadline at once).
            spins = if next <= self.now { spins + 1 } else { 0 };
            assert!(
                spins <= 2,
                "handle_timeout leaves the deadline at {next:?}: a driver spins"
            );
            self.now = self.now.max(next);
            assert!(
                self.now <= bound,
                "no outcome by the deadline {bound:?}: next timeout {next:?}"
            );
            self.call(|m, now| on_machine!(m, x => x.handle_timeout(now)));
        }
    }

    /// Cuts `node`'s delivered bytes into frames and matches them to its commands.
    fn account(&mut self, node: usize, bytes: &[u8]) {
        let fenced = self.setup.lock.options().fenced;
        let kind = self.setup.kind;
        let n = &mut self.nodes[node];
        if n.broken {
            return;
        }
        n.stream.extend_from_slice(bytes);
        loop {
            if n.broken {
                n.resend_dropped |= n.resend_armed;
                break;
            }
            let len = match frame_len(&n.stream) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(_) => {
                    n.set_broken();
                    continue;
                }
            };
            let frame: Vec<u8> = n.stream.drain(..len).collect();
            let judged = match decode(&frame, n.protocol) {
                Ok(Reply::Push(_)) => continue,
                Ok(reply) => n.unanswered.pop_front().map(|(cmd, rec)| {
                    if let Reply::Error(message) = &reply {
                        let kind = ServerErrorKind::classify(message);
                        n.resend_armed |= kind == ServerErrorKind::NoScript
                            || kind == ServerErrorKind::UnknownCommand;
                    }
                    (cmd, rec, judge(cmd, &reply, fenced))
                }),
                Err(_) => {
                    n.set_broken();
                    continue;
                }
            };
            let Some((cmd, rec, judged)) = judged else {
                // A reply to nothing: the core must refuse the connection from here on.
                n.set_broken();
                continue;
            };
            match cmd {
                Cmd::AcquireSet
                | Cmd::AcquireSetGet
                | Cmd::AcquireScript
                | Cmd::FairAcquireScript { .. } => {
                    n.acquires[rec].grant = Some(match judged {
                        Judged::Grant { holds, fence } => Some(Grant { holds, fence }),
                        _ => None,
                    });
                }
                Cmd::RaiseFence(_) => {
                    if let Judged::Raised(v) = judged {
                        n.raises[rec].raised = Some(v);
                    }
                }
                _ if kind != Kind::Acquire => match judged {
                    Judged::Yes => n.yes = true,
                    Judged::NotHeld => n.not_held = true,
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn after_call(&mut self) {
        self.drain();
        if let Some(outcome) = self.machine.poll_outcome() {
            assert!(self.outcome.is_none(), "a second outcome: {outcome:?}");
            crate::reach::hit(|| {
                let text = format!("{outcome:?}");
                let cut = text.find([' ', '{']).map_or(text.len(), |i| i);
                format!(
                    "outcome {:?}x{}{} {}",
                    self.setup.kind,
                    self.nodes.len(),
                    match (
                        self.setup.lock.options().fair,
                        self.setup.lock.options().scripts,
                    ) {
                        (true, _) => " fair",
                        (_, distlock_core::Scripts::Never) => " no-scripts",
                        _ => "",
                    },
                    &text[..cut.min(40)]
                )
            });
            self.check_outcome(&outcome);
            if let Outcome::Acquire(Ok(lease)) = &outcome {
                self.lease_token = Some(lease.token().as_bytes().to_vec());
            }
            self.outcome = Some(self.now);
        }
        if !self.ended() && self.machine.poll_timeout().is_none() {
            assert!(
                TOLERATE_STALL_AFTER_RESEND && self.stalled_by_finding_2(),
                "no outcome and no deadline: the machine waits for input nothing owes it"
            );
            crate::reach::hit(|| "finding 2 tolerated (cancelled)".into());
            self.cancel();
            return;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(owed) = self.machine.owed_replies(i) {
                assert!(
                    !n.broken,
                    "node {i}: the connection got bytes that answer nothing or are not RESP, \
                     yet the machine says it owes {owed} replies instead of asking for a reconnect"
                );
                assert_eq!(
                    owed as usize,
                    n.unanswered.len(),
                    "node {i}: the machine says {owed} replies are owed, the connection owes {}",
                    n.unanswered.len()
                );
            }
        }
        let held = meter::heap_of(&self.machine);
        assert!(held <= HELD_BOUND, "the machine holds {held} bytes of heap");
    }

    fn drain(&mut self) {
        loop {
            if let Some(short) = self.short_buffer {
                self.check_short_buffer(short);
            }
            let tx = match self.machine.poll_transmit(self.now, &mut self.buf) {
                Ok(Some(tx)) => tx,
                Ok(None) => break,
                Err(e) => panic!("{e} (a {BUF}-byte buffer holds any lock command)"),
            };
            let bytes = &self.buf[..tx.len];
            crate::reach::hit(|| {
                let cmds = wire::decode_commands(bytes);
                format!("sent {}", String::from_utf8_lossy(&cmds[0][0]))
            });
            let checked = wire::check_transmit(&self.setup, &tx, bytes);
            if self.short_buffer.is_some() {
                // command_encoding: `redis-protocol` reads the same commands.
                assert_eq!(wire::decode_commands(bytes), wire::split_commands(bytes));
            }
            let now = self.now;
            let n = &mut self.nodes[tx.node];
            n.resend_armed = false;
            n.resend_dropped = false;
            let token = checked.token.clone().unwrap_or_default();
            if matches!(
                checked.cmds[0],
                Cmd::ReleaseScript | Cmd::ReleaseNative | Cmd::FairReleaseScript
            ) && self.setup.kind == Kind::Acquire
            {
                // A rollback never deletes what the reported lease holds.
                assert!(
                    self.lease_token.as_deref() != Some(&token[..]),
                    "node {}: a rollback with the lease's token, after the lease",
                    tx.node
                );
                n.rollbacks.push(token.clone());
            }
            for cmd in checked.cmds {
                let rec = match cmd {
                    Cmd::AcquireSet
                    | Cmd::AcquireSetGet
                    | Cmd::AcquireScript
                    | Cmd::FairAcquireScript { .. } => {
                        let extra = match cmd {
                            Cmd::FairAcquireScript { extra } => Duration::from_millis(extra),
                            _ => Duration::ZERO,
                        };
                        n.acquires.push(AcquireRec {
                            sent_at: now,
                            extra,
                            token: token.clone(),
                            grant: None,
                        });
                        n.acquires.len() - 1
                    }
                    Cmd::RaiseFence(asked) => {
                        n.raises.push(RaiseRec {
                            sent_at: now,
                            asked,
                            raised: None,
                        });
                        n.raises.len() - 1
                    }
                    _ => 0,
                };
                if cmd == Cmd::Blpop {
                    // A wait follows a marked attempt on the node it waits on, or a release
                    // that saw no mark could leave it asleep (`core/src/acquire.rs`).
                    let last_acquire = n.log.iter().rposition(|c| c.is_acquire());
                    assert!(
                        last_acquire.is_some_and(|i| i > 0 && n.log[i - 1] == Cmd::WaitingMark),
                        "node {}: a BLPOP after an unmarked attempt: {:?}",
                        tx.node,
                        n.log
                    );
                }
                n.log.push(cmd);
                if !n.broken {
                    n.unanswered.push_back((cmd, rec));
                }
            }
        }
    }

    /// A buffer too short by any amount is refused with the exact size needed and left
    /// untouched, and the machine then sends the same bytes into a buffer of that size.
    fn check_short_buffer(&mut self, short: usize) {
        let mut big = self.machine.clone();
        let Ok(Some(tx)) = big.poll_transmit(self.now, &mut self.buf) else {
            return;
        };
        let size = short % tx.len;
        let mut probe = self.machine.clone();
        let mut small = vec![0xa5; size];
        match probe.poll_transmit(self.now, &mut small) {
            Err(e) => assert_eq!(e.required, tx.len, "wrong size asked for"),
            Ok(sent) => panic!("{size} bytes took a {}-byte transmit: {sent:?}", tx.len),
        }
        assert!(
            small.iter().all(|&b| b == 0xa5),
            "a refused buffer was written to"
        );
        let mut exact = vec![0; tx.len];
        let again = probe
            .poll_transmit(self.now, &mut exact)
            .expect("the size asked for is enough")
            .expect("the same transmit");
        assert_eq!(again, tx);
        assert_eq!(
            exact,
            self.buf[..tx.len],
            "other bytes after a short buffer"
        );
    }

    /// The fair cycle whose grant a fair lease reports: the last one granted (after it the
    /// outcome is out, so no later cycle is sent).
    fn granting_cycle(&self) -> Option<&AcquireRec> {
        self.nodes[0]
            .acquires
            .iter()
            .rev()
            .find(|a| a.grant.flatten().is_some())
    }

    /// A fair lease counts from `t0 = min(reply, sent + extra)` of the cycle that granted it
    /// and is valid until `t0 + ttl - drift(ttl + extra)`, since the script set the key for
    /// `ttl + extra` (`core/src/fair.rs`, "Validity of a cycle's grant"). The script ran after
    /// the command was last sent (the cycle's batch, or the resend of its script after
    /// `NOSCRIPT`, which keeps the cycle's first send as `sent`), so the key lives at least
    /// until `sent_at + extra + ttl` of the record that granted: `t0` may not be later.
    fn check_fair_validity(&self, lease: &Lease) {
        let options = self.setup.lock.options();
        let started = lease.started();
        let cycle = self
            .granting_cycle()
            .unwrap_or_else(|| panic!("a fair lease with no granted cycle: {lease:?}"));
        assert!(
            started <= cycle.sent_at.saturating_add(cycle.extra),
            "a fair lease counts from {started:?}, past its cycle's send {:?} + extra {:?}",
            cycle.sent_at,
            cycle.extra
        );
        let drift = options
            .drift
            .allowance(options.ttl.saturating_add(cycle.extra));
        assert_eq!(
            lease.valid_until(),
            started.saturating_add(options.ttl.saturating_sub(drift)),
            "a fair lease's validity, its cycle's extra {:?}",
            cycle.extra
        );
    }

    fn check_outcome(&self, outcome: &Outcome) {
        let nodes = self.nodes.len();
        let needed = quorum(nodes);
        let options = self.setup.lock.options();
        match outcome {
            Outcome::Acquire(Ok(lease)) => {
                let started = lease.started();
                assert!(
                    started >= START && started <= self.now,
                    "{lease:?} at {:?}",
                    self.now
                );
                if !options.fair {
                    assert_eq!(lease.valid_until(), self.setup.lock.valid_until(started));
                }
                assert!(
                    self.now < lease.valid_until(),
                    "a lease already expired: {lease:?}"
                );
                assert!(lease.holds() >= 1);
                // The lease's token: one of ours, never one a rollback deleted with, and
                // the value each node counted for it holds (what a release compares with).
                let token = lease.token().as_bytes();
                let owner = self.setup.token.as_bytes();
                assert!(
                    wire::is_attempt_token(&self.setup.token, token),
                    "the lease's token {} is not ours",
                    lease.token()
                );
                for (i, n) in self.nodes.iter().enumerate() {
                    assert!(
                        !n.rollbacks.iter().any(|t| t == token),
                        "node {i}: a rollback deleted with the lease's token {}",
                        lease.token()
                    );
                }
                if options.fair {
                    self.check_fair_validity(lease);
                } else {
                    assert!(
                        self.nodes
                            .iter()
                            .any(|n| n.acquires.iter().any(|a| a.sent_at == started)),
                        "no acquire was sent when the lease says its attempt started ({started:?})"
                    );
                }
                // Each node's latest acquire since the attempt started (the attempt's, or a
                // resend of it; for a fair cycle, the one in flight when its lease began):
                // granted, and holding the lease's token — the attempt's when taken fresh or
                // handed over, the owner's when re-entered.
                let latest: Vec<Option<(&AcquireRec, Grant)>> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        let a = if options.fair {
                            self.granting_cycle()?
                        } else {
                            n.acquires.iter().rev().find(|a| a.sent_at >= started)?
                        };
                        Some((a, a.grant.flatten()?))
                    })
                    .collect();
                let mixed = options.reentrant
                    && latest.iter().flatten().any(|(_, g)| g.holds == 1)
                    && latest.iter().flatten().any(|(_, g)| g.holds > 1);
                let grants: Vec<Option<u64>> = latest
                    .iter()
                    .map(|entry| {
                        let (a, grant) = (*entry)?;
                        let held = if grant.holds > 1 { owner } else { &a.token[..] };
                        let holds_it = held == token
                            || (TOLERATE_SATURATED_HOLDS && grant.holds >= i64::from(u32::MAX))
                            || (TOLERATE_MIXED_REENTRY && mixed);
                        holds_it.then_some(grant.fence)
                    })
                    .collect();
                let granted = grants.iter().flatten().count();
                assert!(
                    granted >= needed,
                    "a lease with {granted} of {nodes} nodes granting its attempt and holding its \
                     token: {lease:?} {:#?}",
                    self.nodes.iter().map(|n| &n.acquires).collect::<Vec<_>>()
                );
                if options.fenced {
                    let fence = lease.fence().expect("a fenced lease has a fence");
                    assert!(fence >= 1, "fence 0");
                    assert!(
                        grants.contains(&Some(fence)),
                        "fence {fence} is no granting node's counter: {grants:?}"
                    );
                    if nodes > 1 {
                        let raised = self
                            .nodes
                            .iter()
                            .filter(|n| {
                                n.raises.iter().any(|r| {
                                    r.sent_at >= started
                                        && r.asked == fence
                                        && r.raised
                                            .is_some_and(|v| v >= 0 && v.unsigned_abs() >= fence)
                                })
                            })
                            .count();
                        assert!(
                            raised >= needed,
                            "fence {fence} reported with {raised} of {nodes} nodes raised"
                        );
                        crate::reach::hit(|| "lease of fenced Redlock, fence raised".into());
                    }
                } else {
                    assert_eq!(lease.fence(), None);
                }
            }
            Outcome::Release(Ok(_)) | Outcome::Extend(Ok(_)) => {
                let yes = self.nodes.iter().filter(|n| n.yes).count();
                assert!(
                    yes >= needed,
                    "{outcome:?} with {yes} of {nodes} nodes saying yes"
                );
                if let Outcome::Extend(Ok(extended)) = outcome {
                    assert_eq!(extended.started, START);
                    assert_eq!(extended.valid_until, self.setup.lock.valid_until(START));
                }
            }
            Outcome::Release(Err(Error::NotHeld)) | Outcome::Extend(Err(Error::NotHeld)) => {
                let not_held = self.nodes.iter().filter(|n| n.not_held).count();
                assert!(
                    not_held > nodes - needed,
                    "not held, with {not_held} of {nodes} nodes saying so"
                );
            }
            Outcome::Acquire(Err(Error::Cancelled))
            | Outcome::Release(Err(Error::Cancelled))
            | Outcome::Extend(Err(Error::Cancelled)) => {
                assert!(self.cancelled, "Cancelled without a cancel");
            }
            _ => {}
        }
        if self.cancelled
            && !matches!(
                outcome,
                Outcome::Acquire(Err(Error::Cancelled))
                    | Outcome::Release(Err(Error::Cancelled))
                    | Outcome::Extend(Err(Error::Cancelled))
            )
        {
            panic!("cancelled, yet the outcome is {outcome:?}");
        }
    }
}
