//! `status`: what each node says about one lock, and what that says about the lock.
//!
//! [`Inspect`] reads, on every node at once, the lock key (`GET`: the holder's token), its
//! time to live (`PTTL`), the fencing counter (`GET`) and, under the tagged layout, how many
//! waiters queue on the name ([`Reading::queued`]), one command at a time, and ends with
//! an [`Inspection`]: per node a [`Reading`] or the [`NodeError`] that kept it from being read.
//! [`Inspection::verdict`] turns readings into held / shared / free / unknown.
//!
//! **Waiters.** Each kind keeps its waiters in a sorted set of its own ([`crate::keys`]): a
//! fair mutex's `:queue`, a fair semaphore's `:permit-queue`, a read-write lock's waiting
//! writers `:writers`. `status` counts (`ZCARD`, O(1)) the set of the kind the name holds;
//! for a name nobody holds, all three, since waiters outlive holds (a writer waits on after
//! the last read hold is gone). Waiters that keep nothing on the server — a plain mutex's or
//! plain semaphore's, blocked on a wake-up list, and a read-write lock's readers — are not
//! counted: nothing says they wait.
//!
//! A name whose key is a semaphore's holders' set ([`Lock::semaphore`]; `GET` answers
//! `WRONGTYPE`) is read as one: `ZSCAN` for the holders and their limit, then
//! `PTTL` of each holder's permit key (at most [`crate::MAX_PERMITS`] of them), so the
//! reading lists the live permits ([`Permits`]); its `holder` is `None`.
//!
//! A name whose key is a read-write lock's marker ([`Lock::rw`]; `GET` and `ZSCAN` answer
//! `WRONGTYPE`, `HGET name rw` answers `1`) is read as one: `GET` and `PTTL` of its writer
//! key, `ZSCAN` of its readers and `PTTL` of each reader's key ([`RwHolds`]).
//!
//! Invariants:
//! - **Read only.** It sends `GET`, `PTTL`, `ZCARD`, `ZSCAN` and `HGET`, nothing that
//!   writes. A waiters' set that is no sorted set is someone else's key under our name: the
//!   node is unread ([`NodeError::NotALock`]), as for a lock key holding no token.
//! - **Unknown is never free.** A node that could not be read — unreachable, silent past the
//!   request timeout, not RESP, a refusal (`NOPERM`, `WRONGTYPE`), a lock key holding no token,
//!   a fence that is no number — is an `Err`, and [`verdict`] says free only when no token can
//!   reach a majority even if every such node held it.
//! - **Held means a majority.** [`Verdict::Held`] only for a token on [`quorum`] nodes.
//! - **Bounded.** Each node's requests (at most three `ZCARD`s among them) together end
//!   within the lock's request timeout.

use alloc::vec::Vec;

use crate::dialogue::{Dialogues, NodeError, Step, Task, Value, command, driven_by_dialogues};
use crate::error::{ConfigError, ProtocolError, ServerError};
use crate::keys::{KeyRole, Token};
use crate::lock::{Lock, MAX_NODES, quorum};
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// What one node says about the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The token in the lock key, if any.
    pub holder: Option<Token>,
    /// How long the lock key lives (`None`: no key, or no expiry).
    pub ttl: Option<Duration>,
    /// The fencing counter: the last fence handed out.
    pub fence: Option<u64>,
    /// The waiters queued on the name (see the module doc): a fair mutex's queue, a fair
    /// semaphore's waiters or a read-write lock's waiting writers, whichever kind holds the
    /// name; for a name nobody holds, all three together (0 without any). `None` under a
    /// layout that has no waiters' sets. Plain waiters (blocked on a wake-up list) and
    /// waiting readers are not counted. It may still count a waiter that died less than a
    /// request timeout ago (a writer: less than its liveness): the next release or take drops
    /// it.
    pub queued: Option<u64>,
    /// The name is a semaphore ([`Lock::semaphore`]): its live permits and their limit
    /// (`holder` is then `None`). `None` for a lock.
    pub permits: Option<Permits>,
    /// The name is a read-write lock ([`Lock::rw`]): its live holds (`holder` is then
    /// `None`). `None` otherwise.
    pub rw: Option<RwHolds>,
}

/// A read-write lock's live holds on one node, as `status` reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RwHolds {
    /// The write hold's token and how long its key lives (`None`: no expiry), if any.
    pub writer: Option<(Token, Option<Duration>)>,
    /// Each live read hold's token and how long its key lives, in token order. Readers
    /// whose key is gone (dead, not yet pruned) are not listed.
    pub readers: Vec<(Token, Option<Duration>)>,
}

/// A semaphore's live permits on one node, as `status` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permits {
    /// The limit the permits were taken under.
    pub limit: u32,
    /// Each live permit's token and how long its key lives (`None`: no expiry), in token
    /// order. Holders whose permit key is gone (dead, not yet pruned by an
    /// acquire) are not listed.
    pub holders: Vec<(Token, Option<Duration>)>,
}

/// What every node says, in node order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Each node's reading, or why it could not be read.
    pub nodes: Vec<Result<Reading, NodeError>>,
}

impl Inspection {
    /// The verdict over every node: the one every driver reports (the host's `Status`, its
    /// CLI text and JSON, the engine's `status`). [`Verdict::Shared`] when a majority holds a
    /// semaphore's live permits or a read-write lock's live holds ([`Inspection::shared_holds`]);
    /// else [`verdict`], where such a node counts as unread: a held semaphore or read-write
    /// lock on a minority must never let the name read as free when the unread nodes could
    /// make it a majority (read [`Reading::permits`] or [`Reading::rw`] for who holds it).
    #[must_use]
    pub fn verdict(&self) -> Verdict<&Token> {
        if self.shared_holds() {
            return Verdict::Shared;
        }
        verdict(self.nodes.iter().map(|n| match n {
            Ok(Reading {
                holder: Some(token),
                ..
            }) => Seen::Holder(token),
            Ok(Reading {
                permits: Some(permits),
                ..
            }) if !permits.holders.is_empty() => Seen::Unread,
            Ok(Reading {
                rw: Some(holds), ..
            }) if holds.writer.is_some() || !holds.readers.is_empty() => Seen::Unread,
            Ok(_) => Seen::Free,
            Err(_) => Seen::Unread,
        }))
    }
}

impl Inspection {
    /// Whether a majority of the nodes ([`quorum`]) read the name as a semaphore with live
    /// permits or a read-write lock with live holds: the name is held, by the holders those
    /// readings list ([`Reading::permits`], [`Reading::rw`]), perhaps several at once — what
    /// [`Inspection::verdict`] has no word for (it says unknown, never free). A node that
    /// could not be read never counts.
    #[must_use]
    pub fn shared_holds(&self) -> bool {
        let held = self
            .nodes
            .iter()
            .filter(|n| match n {
                Ok(Reading {
                    permits: Some(permits),
                    ..
                }) => !permits.holders.is_empty(),
                Ok(Reading {
                    rw: Some(holds), ..
                }) => holds.writer.is_some() || !holds.readers.is_empty(),
                _ => false,
            })
            .count();
        held >= quorum(self.nodes.len())
    }
}

/// One node's answer, as [`verdict`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen<T> {
    /// The node has this token in the lock key.
    Holder(T),
    /// The node has no lock key.
    Free,
    /// The node could not be read: it may hold anything.
    Unread,
}

/// What the nodes say about the lock as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict<T> {
    /// A majority of nodes has this token in the lock key.
    Held(T),
    /// No token can be on a majority, even counting every node that could not be read.
    Free,
    /// The nodes that answered cannot decide: too many could not be read.
    Unknown,
    /// A majority of nodes hold a semaphore's live permits or a read-write lock's live
    /// holds: the name is held, perhaps by several at once ([`Reading::permits`],
    /// [`Reading::rw`] list them). Only [`Inspection::verdict`] says it; [`verdict`], over
    /// single tokens, never does.
    Shared,
}

/// The verdict of the nodes' answers: held by a token on a majority ([`quorum`]), free when
/// no token can have a majority even if every unread node had it, unknown otherwise.
pub fn verdict<T: Copy + PartialEq>(seen: impl IntoIterator<Item = Seen<T>>) -> Verdict<T> {
    let seen: Vec<Seen<T>> = seen.into_iter().collect();
    let needed = quorum(seen.len());
    let unread = seen.iter().filter(|s| matches!(s, Seen::Unread)).count();
    let mut most = 0;
    for s in &seen {
        let Seen::Holder(token) = s else { continue };
        let count = seen
            .iter()
            .filter(|o| matches!(o, Seen::Holder(t) if t == token))
            .count();
        if count >= needed {
            return Verdict::Held(*token);
        }
        most = most.max(count);
    }
    if most.saturating_add(unread) < needed {
        Verdict::Free
    } else {
        Verdict::Unknown
    }
}

/// Whether `count` of `nodes` nodes are a majority ([`quorum`]): when that many could not be
/// read (or reset), an operator command says so with its exit status.
#[must_use]
pub const fn is_majority(count: usize, nodes: usize) -> bool {
    count >= quorum(nodes)
}

/// The `status` machine over every node (see the module doc); drive it as a
/// [`crate::Driven`].
pub struct Inspect {
    dialogues: Dialogues<ReadLock>,
}

impl core::fmt::Debug for Inspect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Inspect")
    }
}

impl Inspect {
    /// Reads `lock` on each of `servers` (1 to [`MAX_NODES`]), each node within the lock's
    /// request timeout.
    pub fn new(lock: &Lock, servers: &[ServerInfo], now: Instant) -> Result<Self, ConfigError> {
        check_nodes(servers.len())?;
        let keys = lock.keys();
        let lock_key = keys.lock().concat();
        let fence_key = keys.fence().concat();
        let waiter_keys = keys.has_queue().then(|| WaiterKeys {
            queue: keys.queue().concat(),
            permit_queue: keys.permit_queue().concat(),
            writers: keys.writers().concat(),
        });
        let permit_prefix = keys.has_queue().then(|| keys.permit_prefix().concat());
        let rw_keys = keys.has_queue().then(|| RwKeys {
            writer: keys.writer().concat(),
            readers: keys.readers().concat(),
            reader_prefix: keys.reader_prefix().concat(),
        });
        let tasks = servers
            .iter()
            .map(|_| ReadLock {
                lock_key: lock_key.clone(),
                fence_key: fence_key.clone(),
                waiter_keys: waiter_keys.clone(),
                permit_prefix: permit_prefix.clone(),
                rw_keys: rw_keys.clone(),
                stage: Stage::Holder,
            })
            .collect();
        let timeout = lock.options().request_timeout;
        Ok(Inspect {
            dialogues: Dialogues::new(tasks, servers, timeout, timeout, now),
        })
    }

    fn outcome(nodes: Vec<Result<Reading, NodeError>>) -> Inspection {
        Inspection { nodes }
    }
}

driven_by_dialogues!(Inspect, Inspection);

/// Between 1 and [`MAX_NODES`] nodes, as for every machine.
pub(crate) fn check_nodes(nodes: usize) -> Result<(), ConfigError> {
    if (1..=MAX_NODES).contains(&nodes) {
        Ok(())
    } else {
        Err(ConfigError::BadNodeCount {
            nodes,
            capacity: MAX_NODES,
        })
    }
}

/// A server's error reply, or a reply the command never gives: the node fails with it.
pub(crate) fn failure(reply: Value) -> NodeError {
    match reply {
        Value::Error(e) => NodeError::Server(ServerError::from_message(&e)),
        _ => NodeError::Protocol(ProtocolError::UnexpectedReply),
    }
}

enum Stage {
    Holder,
    Ttl {
        holder: Option<Token>,
    },
    Fence {
        holder: Option<Token>,
        ttl: Option<Duration>,
    },
    /// `ZCARD` of the last of `pending`, a waiters' set; `reading` so far counts the others.
    Waiters {
        reading: Reading,
        pending: Vec<Vec<u8>>,
    },
    /// `ZSCAN` pages of a semaphore's holders, sent after `GET` said `WRONGTYPE` (that
    /// refusal is the node's failure should the key be no sorted set either).
    Holders {
        refusal: Vec<u8>,
        seen: Vec<(Token, u32)>,
    },
    /// `PTTL` of `pending[0]`'s permit key.
    PermitTtl {
        permits: Permits,
        pending: Vec<Token>,
    },
    /// `GET` fence of a semaphore.
    SemaphoreFence {
        permits: Permits,
    },
    /// `HGET name rw`, sent after `ZSCAN` said `WRONGTYPE` too: is it a read-write lock's
    /// marker? (If not, the `GET`'s refusal is the node's failure.)
    RwMarker {
        refusal: Vec<u8>,
    },
    /// `GET` of a read-write lock's writer key.
    RwWriter,
    /// `PTTL` of its writer key, which held this token.
    RwWriterTtl {
        token: Token,
    },
    /// `ZSCAN` pages of its readers.
    RwReaders {
        holds: RwHolds,
        seen: Vec<Token>,
    },
    /// `PTTL` of the last of `pending`'s reader key.
    RwReaderTtl {
        holds: RwHolds,
        pending: Vec<Token>,
    },
    /// `GET` fence of a read-write lock.
    RwFence {
        holds: RwHolds,
    },
}

/// Each kind's waiters' set (the tagged layout only).
#[derive(Clone)]
struct WaiterKeys {
    /// A fair mutex's queue.
    queue: Vec<u8>,
    /// A fair semaphore's waiters.
    permit_queue: Vec<u8>,
    /// A read-write lock's waiting writers.
    writers: Vec<u8>,
}

/// Which waiters' sets a reading counts.
#[derive(Clone, Copy)]
enum WaitersOf {
    /// A fair mutex's (the name holds a mutex's token).
    Mutex,
    /// A fair semaphore's (the name holds live permits).
    Semaphore,
    /// A read-write lock's writers (the name holds live read or write holds).
    Rw,
    /// Every kind's: nobody holds the name.
    Free,
}

/// A read-write lock's keys (the tagged layout only).
#[derive(Clone)]
struct RwKeys {
    writer: Vec<u8>,
    readers: Vec<u8>,
    reader_prefix: Vec<u8>,
}

/// A `ZSCAN` page of a semaphore's holders: the next cursor and each (token, limit).
type ScanPage = (Vec<u8>, Vec<(Token, u32)>);

/// One node's reading: `GET` lock, `PTTL` lock, `GET` fence; or, for a semaphore, `ZSCAN`
/// holders, `PTTL` of each permit, `GET` fence; or a read-write lock's steps; then, where the
/// layout has waiters' sets, `ZCARD` of those the reading counts.
struct ReadLock {
    lock_key: Vec<u8>,
    fence_key: Vec<u8>,
    /// Each kind's waiters' set (the tagged layout only).
    waiter_keys: Option<WaiterKeys>,
    /// Where a semaphore's permit keys start (the tagged layout only).
    permit_prefix: Option<Vec<u8>>,
    /// A read-write lock's keys (the tagged layout only).
    rw_keys: Option<RwKeys>,
    stage: Stage,
}

impl ReadLock {
    /// The reading read but for its waiters: `ZCARD` of each set `of` names, or done under
    /// a layout without them.
    fn count_waiters(&mut self, reading: Reading, of: WaitersOf) -> Step<Reading> {
        let Some(keys) = &self.waiter_keys else {
            return Step::Done(reading);
        };
        // In reverse: the next is last.
        let pending = match of {
            WaitersOf::Mutex => alloc::vec![keys.queue.clone()],
            WaitersOf::Semaphore => alloc::vec![keys.permit_queue.clone()],
            WaitersOf::Rw => alloc::vec![keys.writers.clone()],
            WaitersOf::Free => alloc::vec![
                keys.writers.clone(),
                keys.permit_queue.clone(),
                keys.queue.clone(),
            ],
        };
        let reading = Reading {
            queued: Some(0),
            ..reading
        };
        self.next_waiters(reading, pending)
    }

    /// `ZCARD` of the next waiters' set, or the reading.
    fn next_waiters(&mut self, reading: Reading, pending: Vec<Vec<u8>>) -> Step<Reading> {
        let Some(next) = pending.last() else {
            return Step::Done(reading);
        };
        let step = Step::Send(command(&[b"ZCARD", next]));
        self.stage = Stage::Waiters { reading, pending };
        step
    }

    /// A `ZCARD` of the last of `pending`: counted, or why the node fails.
    fn on_waiters(
        &mut self,
        mut reading: Reading,
        mut pending: Vec<Vec<u8>>,
        reply: Value,
    ) -> Step<Reading> {
        let count = match reply {
            Value::Int(count) => u64::try_from(count).unwrap_or(0),
            // A set of another type is someone else's key under our name: unknown, as a
            // lock key holding no token is.
            Value::Error(e) if e.starts_with(b"WRONGTYPE") => {
                return Step::Fail(NodeError::NotALock {
                    key: pending.pop().unwrap_or_default(),
                    why: "a waiters' set is not a sorted set",
                });
            }
            other => return Step::Fail(failure(other)),
        };
        reading.queued = Some(reading.queued.unwrap_or(0).saturating_add(count));
        pending.pop();
        self.next_waiters(reading, pending)
    }

    /// The read-write lock's steps after its writer: a `ZSCAN` page of its readers.
    fn scan_readers(&mut self, holds: RwHolds, seen: Vec<Token>, cursor: &[u8]) -> Step<Reading> {
        let Some(keys) = &self.rw_keys else {
            return Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply));
        };
        let step = Step::Send(command(&[
            b"ZSCAN",
            &keys.readers,
            cursor,
            b"COUNT",
            b"2048",
        ]));
        self.stage = Stage::RwReaders { holds, seen };
        step
    }

    /// The readers read (`pending` in reverse: the next is last): the next reader's `PTTL`,
    /// or the fence.
    fn next_reader(&mut self, holds: RwHolds, pending: Vec<Token>) -> Step<Reading> {
        let (Some(keys), Some(next)) = (&self.rw_keys, pending.last()) else {
            self.stage = Stage::RwFence { holds };
            return Step::Send(command(&[b"GET", &self.fence_key]));
        };
        let key = [keys.reader_prefix.as_slice(), next.as_bytes()].concat();
        let step = Step::Send(command(&[b"PTTL", &key]));
        self.stage = Stage::RwReaderTtl { holds, pending };
        step
    }

    /// A `GET` of the fence: the counter, or why the node fails.
    fn fence_of(&self, reply: Value) -> Result<Option<u64>, NodeError> {
        match reply {
            Value::Nil => Ok(None),
            Value::Text(t) => parse_u64(&t).map(Some).ok_or_else(|| NodeError::NotALock {
                key: self.fence_key.clone(),
                why: "the fencing counter is not a number",
            }),
            other => Err(failure(other)),
        }
    }

    /// A read-write lock's steps, after `ZSCAN` of the name said `WRONGTYPE`.
    fn on_rw_reply(&mut self, stage: Stage, reply: Value) -> Step<Reading> {
        let ttl_of = |ms: i64| u64::try_from(ms).ok().map(Duration::from_millis);
        match (stage, reply) {
            (Stage::RwMarker { .. }, Value::Text(t)) if t == b"1" => {
                let Some(keys) = &self.rw_keys else {
                    return Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply));
                };
                let step = Step::Send(command(&[b"GET", &keys.writer]));
                self.stage = Stage::RwWriter;
                step
            }
            // Not a read-write lock's marker either: the `GET`'s refusal stands.
            (Stage::RwMarker { refusal }, _) => Step::Fail(failure(Value::Error(refusal))),
            (Stage::RwWriter, Value::Nil) => {
                self.scan_readers(RwHolds::default(), Vec::new(), b"0")
            }
            (Stage::RwWriter, Value::Text(t)) => match Token::new(&t) {
                Ok(token) => {
                    let Some(keys) = &self.rw_keys else {
                        return Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply));
                    };
                    let step = Step::Send(command(&[b"PTTL", &keys.writer]));
                    self.stage = Stage::RwWriterTtl { token };
                    step
                }
                Err(_) => Step::Fail(NodeError::NotALock {
                    key: self
                        .rw_keys
                        .as_ref()
                        .map(|k| k.writer.clone())
                        .unwrap_or_default(),
                    why: "it holds a string that is not a lock token",
                }),
            },
            (Stage::RwWriterTtl { token }, Value::Int(ms)) => {
                // Gone since the `GET`: no writer.
                let writer = (ms != -2).then(|| (token, ttl_of(ms)));
                self.scan_readers(
                    RwHolds {
                        writer,
                        readers: Vec::new(),
                    },
                    Vec::new(),
                    b"0",
                )
            }
            (Stage::RwReaders { holds, mut seen }, reply) => match Self::page(reply) {
                // A scan that keeps going past this is no read-write lock's set we can list.
                Some(_) if seen.len() > 4 * crate::limits::MAX_PERMITS as usize => {
                    Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply))
                }
                Some((cursor, page)) => {
                    seen.extend(page.into_iter().map(|(t, _)| t));
                    if cursor != b"0" {
                        return self.scan_readers(holds, seen, &cursor);
                    }
                    // A scan may return a member twice.
                    seen.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                    seen.dedup();
                    seen.reverse();
                    self.next_reader(holds, seen)
                }
                None => Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply)),
            },
            (
                Stage::RwReaderTtl {
                    mut holds,
                    mut pending,
                },
                Value::Int(ms),
            ) => {
                let Some(token) = pending.pop() else {
                    return Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply));
                };
                // Gone: a dead reader not pruned yet, not a hold.
                if ms != -2 {
                    holds.readers.push((token, ttl_of(ms)));
                }
                self.next_reader(holds, pending)
            }
            (Stage::RwFence { holds }, reply) => match self.fence_of(reply) {
                Ok(fence) => {
                    let of = if holds.writer.is_some() || !holds.readers.is_empty() {
                        WaitersOf::Rw
                    } else {
                        WaitersOf::Free
                    };
                    let reading = Reading {
                        holder: None,
                        ttl: None,
                        fence,
                        queued: None,
                        permits: None,
                        rw: Some(holds),
                    };
                    self.count_waiters(reading, of)
                }
                Err(e) => Step::Fail(e),
            },
            (_, other) => Step::Fail(failure(other)),
        }
    }

    /// The holders' set read (`pending` in reverse: the next is last): the next live-permit
    /// check, or the fence.
    fn next_permit(&mut self, permits: Permits, pending: Vec<Token>) -> Step<Reading> {
        let (Some(prefix), Some(next)) = (&self.permit_prefix, pending.last()) else {
            self.stage = Stage::SemaphoreFence { permits };
            return Step::Send(command(&[b"GET", &self.fence_key]));
        };
        let key = [prefix.as_slice(), next.as_bytes()].concat();
        let step = Step::Send(command(&[b"PTTL", &key]));
        self.stage = Stage::PermitTtl { permits, pending };
        step
    }

    /// `ZSCAN key cursor COUNT n`: a page of the holders' set. Not `ZRANGE … WITHSCORES`:
    /// under RESP3 its scores are doubles, which the decoder does not keep; `ZSCAN` sends
    /// them as strings under both protocols.
    fn scan(&self, cursor: &[u8]) -> Step<Reading> {
        Step::Send(command(&[
            b"ZSCAN",
            &self.lock_key,
            cursor,
            b"COUNT",
            b"2048",
        ]))
    }

    /// A `ZSCAN` reply: the next cursor and the page's (token, limit) pairs; `None` when it
    /// is anything else.
    fn page(reply: Value) -> Option<ScanPage> {
        let Value::List(outer) = reply else {
            return None;
        };
        let [Value::Text(cursor), Value::List(items)] = outer.as_slice() else {
            return None;
        };
        let mut page = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let [Value::Text(member), Value::Text(score)] = pair else {
                return None;
            };
            let score = u32::try_from(parse_u64(score)?).ok()?;
            page.push((Token::new(member).ok()?, score));
        }
        Some((cursor.clone(), page))
    }
}

impl Task for ReadLock {
    type Done = Reading;

    fn start(&mut self, _now: Instant) -> Step<Reading> {
        Step::Send(command(&[b"GET", &self.lock_key]))
    }

    fn on_reply(&mut self, reply: Value, _now: Instant) -> Step<Reading> {
        match core::mem::replace(&mut self.stage, Stage::Holder) {
            Stage::Holder => {
                let holder = match reply {
                    Value::Nil => None,
                    Value::Text(t) if KeyRole::Lock.fits(&t) => Token::new(&t).ok(),
                    Value::Text(_) => {
                        return Step::Fail(NodeError::NotALock {
                            key: self.lock_key.clone(),
                            why: "it holds a string that is not a lock token",
                        });
                    }
                    Value::Error(e)
                        if e.starts_with(b"WRONGTYPE") && self.permit_prefix.is_some() =>
                    {
                        self.stage = Stage::Holders {
                            refusal: e,
                            seen: Vec::new(),
                        };
                        return self.scan(b"0");
                    }
                    other => return Step::Fail(failure(other)),
                };
                self.stage = Stage::Ttl { holder };
                Step::Send(command(&[b"PTTL", &self.lock_key]))
            }
            Stage::Ttl { holder } => {
                let ttl = match reply {
                    Value::Int(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
                    other => return Step::Fail(failure(other)),
                };
                self.stage = Stage::Fence { holder, ttl };
                Step::Send(command(&[b"GET", &self.fence_key]))
            }
            Stage::Fence { holder, ttl } => {
                let fence = match reply {
                    Value::Nil => None,
                    Value::Text(t) => match parse_u64(&t) {
                        Some(fence) => Some(fence),
                        None => {
                            return Step::Fail(NodeError::NotALock {
                                key: self.fence_key.clone(),
                                why: "the fencing counter is not a number",
                            });
                        }
                    },
                    other => return Step::Fail(failure(other)),
                };
                let of = if holder.is_some() {
                    WaitersOf::Mutex
                } else {
                    WaitersOf::Free
                };
                let reading = Reading {
                    holder,
                    ttl,
                    fence,
                    queued: None,
                    permits: None,
                    rw: None,
                };
                self.count_waiters(reading, of)
            }
            Stage::Waiters { reading, pending } => self.on_waiters(reading, pending, reply),
            Stage::Holders { refusal, .. }
                if matches!(&reply, Value::Error(e) if e.starts_with(b"WRONGTYPE"))
                    && self.rw_keys.is_some() =>
            {
                let step = Step::Send(command(&[b"HGET", &self.lock_key, b"rw"]));
                self.stage = Stage::RwMarker { refusal };
                step
            }
            Stage::Holders { refusal, mut seen } => match Self::page(reply) {
                // The set holds at most `MAX_PERMITS` tokens after any acquire; a scan that
                // keeps going past several times that is no semaphore's.
                Some(_) if seen.len() > 4 * crate::limits::MAX_PERMITS as usize => {
                    Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply))
                }
                Some((cursor, page)) => {
                    seen.extend(page);
                    if cursor != b"0" {
                        let step = self.scan(&cursor);
                        self.stage = Stage::Holders { refusal, seen };
                        return step;
                    }
                    // Holders of other limits cannot be live together (the acquire refuses
                    // them): the first is the semaphore's.
                    let limit = seen.first().map_or(0, |(_, limit)| *limit);
                    let mut pending: Vec<Token> = seen.into_iter().map(|(t, _)| t).collect();
                    // A scan may return a member twice.
                    pending.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                    pending.dedup();
                    pending.reverse();
                    let permits = Permits {
                        limit,
                        holders: Vec::with_capacity(pending.len()),
                    };
                    self.next_permit(permits, pending)
                }
                // Not a semaphore's set either: the `GET`'s refusal stands.
                None => Step::Fail(failure(Value::Error(refusal))),
            },
            Stage::PermitTtl {
                mut permits,
                mut pending,
            } => {
                let Some(token) = pending.pop() else {
                    return Step::Fail(NodeError::Protocol(ProtocolError::UnexpectedReply));
                };
                match reply {
                    // Gone: a dead holder an acquire has not pruned yet, not a permit.
                    Value::Int(-2) => {}
                    Value::Int(ms) => permits
                        .holders
                        .push((token, u64::try_from(ms).ok().map(Duration::from_millis))),
                    other => return Step::Fail(failure(other)),
                }
                self.next_permit(permits, pending)
            }
            Stage::SemaphoreFence { permits } => {
                let fence = match reply {
                    Value::Nil => None,
                    Value::Text(t) => match parse_u64(&t) {
                        Some(fence) => Some(fence),
                        None => {
                            return Step::Fail(NodeError::NotALock {
                                key: self.fence_key.clone(),
                                why: "the fencing counter is not a number",
                            });
                        }
                    },
                    other => return Step::Fail(failure(other)),
                };
                let of = if permits.holders.is_empty() {
                    WaitersOf::Free
                } else {
                    WaitersOf::Semaphore
                };
                let reading = Reading {
                    holder: None,
                    ttl: None,
                    fence,
                    queued: None,
                    permits: Some(permits),
                    rw: None,
                };
                self.count_waiters(reading, of)
            }
            stage @ (Stage::RwMarker { .. }
            | Stage::RwWriter
            | Stage::RwWriterTtl { .. }
            | Stage::RwReaders { .. }
            | Stage::RwReaderTtl { .. }
            | Stage::RwFence { .. }) => self.on_rw_reply(stage, reply),
        }
    }
}

/// A decimal `u64` (what `INCR` leaves), nothing else.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::Driven;
    use crate::error::ServerErrorKind;
    use crate::keys::KeyLayout;
    use crate::lock::LockOptions;
    use crate::resp::{self, Protocol, Reply};

    const TOKEN: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn servers(n: usize) -> Vec<ServerInfo> {
        vec![ServerInfo::default(); n]
    }

    fn lock() -> Lock {
        Lock::new(KeyLayout::default(), b"job", LockOptions::default()).unwrap()
    }

    /// Every command the machine wants sent now, as `(node, args)`.
    fn sent(machine: &mut impl Driven, now: Instant) -> Vec<(usize, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(tx) = machine.poll_transmit(now, &mut buf).unwrap() {
            let Reply::Array(args) = resp::decode(&buf[..tx.len], Protocol::Resp2).unwrap() else {
                panic!("not a command");
            };
            let args = args
                .iter()
                .map(|a| match a {
                    Reply::Bulk(b) => b.to_vec(),
                    _ => panic!("not a bulk"),
                })
                .collect();
            out.push((tx.node, args));
        }
        out
    }

    fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn a_semaphores_name_is_read_as_its_live_permits() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        let _ = sent(&mut inspect, t0);
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        inspect.handle_input(0, wrong, t0);
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(
                0,
                args(&[b"ZSCAN", b"distlock:{job}", b"0", b"COUNT", b"2048"])
            )]
        );
        let a = b"token-a-0000000001";
        let b = b"token-b-0000000001";
        inspect.handle_input(
            0,
            b"*2\r\n$1\r\n7\r\n*2\r\n$18\r\ntoken-b-0000000001\r\n$1\r\n3\r\n",
            t0,
        );
        // A page, then the last one (cursor 0).
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(
                0,
                args(&[b"ZSCAN", b"distlock:{job}", b"7", b"COUNT", b"2048"])
            )]
        );
        inspect.handle_input(
            0,
            b"*2\r\n$1\r\n0\r\n*2\r\n$18\r\ntoken-a-0000000001\r\n$1\r\n3\r\n",
            t0,
        );
        for (key, reply) in [(&a[..], &b":500\r\n"[..]), (&b[..], b":-2\r\n")] {
            let permit = [&b"distlock:{job}:permit:"[..], key].concat();
            assert_eq!(
                sent(&mut inspect, t0),
                vec![(0, vec![b"PTTL".to_vec(), permit])]
            );
            inspect.handle_input(0, reply, t0);
        }
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"GET", b"distlock:{job}:fence"]))]
        );
        inspect.handle_input(0, b"$1\r\n4\r\n", t0);
        // Held by permits: the fair semaphore's waiters are counted, no other kind's.
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"ZCARD", b"distlock:{job}:permit-queue"]))]
        );
        inspect.handle_input(0, b":1\r\n", t0);
        let outcome = inspect.poll_outcome().unwrap();
        assert_eq!(
            outcome.verdict(),
            Verdict::Shared,
            "held by several: never free"
        );
        assert_eq!(
            outcome.nodes,
            vec![Ok(Reading {
                holder: None,
                ttl: None,
                fence: Some(4),
                queued: Some(1),
                permits: Some(Permits {
                    limit: 3,
                    holders: vec![(Token::new(a).unwrap(), Some(Duration::from_millis(500)))],
                }),
                rw: None,
            })],
            "b's permit key is gone: a dead holder, not a permit"
        );

        // A key that is no sorted set either (a user's list), nor a read-write lock's marker
        // (`HGET` refused too): the `GET`'s refusal stands.
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        let _ = sent(&mut inspect, t0);
        inspect.handle_input(0, wrong, t0);
        let _ = sent(&mut inspect, t0);
        inspect.handle_input(0, wrong, t0);
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"HGET", b"distlock:{job}", b"rw"]))]
        );
        inspect.handle_input(0, wrong, t0);
        match &inspect.poll_outcome().unwrap().nodes[..] {
            [Err(NodeError::Server(e))] => assert_eq!(e.kind, ServerErrorKind::WrongType),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rw_locks_name_is_read_as_its_live_holds() {
        let t0 = Instant::from_millis(0);
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        let step = |inspect: &mut Inspect, expect: &[&[u8]], reply: &[u8]| {
            assert_eq!(sent(inspect, t0), vec![(0, args(expect))]);
            inspect.handle_input(0, reply, t0);
        };
        let a = b"token-a-0000000001";
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        step(&mut inspect, &[b"GET", b"distlock:{job}"], wrong);
        step(
            &mut inspect,
            &[b"ZSCAN", b"distlock:{job}", b"0", b"COUNT", b"2048"],
            wrong,
        );
        step(
            &mut inspect,
            &[b"HGET", b"distlock:{job}", b"rw"],
            b"$1\r\n1\r\n",
        );
        step(
            &mut inspect,
            &[b"GET", b"distlock:{job}:writer"],
            b"$-1\r\n",
        );
        step(
            &mut inspect,
            &[b"ZSCAN", b"distlock:{job}:readers", b"0", b"COUNT", b"2048"],
            b"*2\r\n$1\r\n0\r\n*4\r\n$18\r\ntoken-b-0000000001\r\n$1\r\n0\r\n$18\r\ntoken-a-0000000001\r\n$1\r\n0\r\n",
        );
        step(
            &mut inspect,
            &[b"PTTL", b"distlock:{job}:reader:token-a-0000000001"],
            b":700\r\n",
        );
        step(
            &mut inspect,
            &[b"PTTL", b"distlock:{job}:reader:token-b-0000000001"],
            b":-2\r\n",
        );
        step(
            &mut inspect,
            &[b"GET", b"distlock:{job}:fence"],
            b"$1\r\n9\r\n",
        );
        // Held by a reader: its waiting writers are counted, no other kind's.
        step(
            &mut inspect,
            &[b"ZCARD", b"distlock:{job}:writers"],
            b":1\r\n",
        );
        assert_eq!(
            inspect.poll_outcome().unwrap().nodes,
            vec![Ok(Reading {
                holder: None,
                ttl: None,
                fence: Some(9),
                queued: Some(1),
                permits: None,
                rw: Some(RwHolds {
                    writer: None,
                    readers: vec![(Token::new(a).unwrap(), Some(Duration::from_millis(700)))],
                }),
            })],
            "b's key is gone: a dead reader, not a hold"
        );

        // A writer holding it.
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        step(&mut inspect, &[b"GET", b"distlock:{job}"], wrong);
        step(
            &mut inspect,
            &[b"ZSCAN", b"distlock:{job}", b"0", b"COUNT", b"2048"],
            wrong,
        );
        step(
            &mut inspect,
            &[b"HGET", b"distlock:{job}", b"rw"],
            b"$1\r\n1\r\n",
        );
        step(
            &mut inspect,
            &[b"GET", b"distlock:{job}:writer"],
            b"$18\r\ntoken-a-0000000001\r\n",
        );
        step(
            &mut inspect,
            &[b"PTTL", b"distlock:{job}:writer"],
            b":300\r\n",
        );
        step(
            &mut inspect,
            &[b"ZSCAN", b"distlock:{job}:readers", b"0", b"COUNT", b"2048"],
            b"*2\r\n$1\r\n0\r\n*0\r\n",
        );
        step(&mut inspect, &[b"GET", b"distlock:{job}:fence"], b"$-1\r\n");
        step(
            &mut inspect,
            &[b"ZCARD", b"distlock:{job}:writers"],
            b":0\r\n",
        );
        let nodes = inspect.poll_outcome().unwrap().nodes;
        let Ok(Reading {
            rw: Some(holds), ..
        }) = &nodes[0]
        else {
            panic!("{nodes:?}")
        };
        assert_eq!(
            holds.writer,
            Some((Token::new(a).unwrap(), Some(Duration::from_millis(300))))
        );
        assert!(holds.readers.is_empty());
        let inspection = Inspection { nodes };
        assert_eq!(inspection.verdict(), Verdict::Shared, "held, never free");
        let free = Inspection {
            nodes: vec![Ok(Reading {
                holder: None,
                ttl: None,
                fence: None,
                queued: None,
                permits: None,
                rw: Some(RwHolds::default()),
            })],
        };
        assert_eq!(free.verdict(), Verdict::Free, "no live hold");
    }

    #[test]
    fn reads_holder_ttl_and_fence_one_command_at_a_time() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"GET", b"distlock:{job}"]))]
        );
        assert_eq!(inspect.poll_timeout(), Some(Instant::from_millis(1000)));
        // Split anyhow: a reply in pieces is normal.
        let reply = b"$32\r\n0123456789abcdef0123456789abcdef\r\n";
        for chunk in reply.chunks(3) {
            inspect.handle_input(0, chunk, t0);
        }
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"PTTL", b"distlock:{job}"]))]
        );
        inspect.handle_input(0, b":1500\r\n", t0);
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"GET", b"distlock:{job}:fence"]))]
        );
        assert!(inspect.poll_outcome().is_none());
        inspect.handle_input(0, b"$1\r\n7\r\n", t0);
        assert_eq!(
            sent(&mut inspect, t0),
            vec![(0, args(&[b"ZCARD", b"distlock:{job}:queue"]))]
        );
        assert!(inspect.poll_outcome().is_none());
        inspect.handle_input(0, b":2\r\n", t0);
        let outcome = inspect.poll_outcome().unwrap();
        assert_eq!(
            outcome.nodes,
            vec![Ok(Reading {
                holder: Some(Token::new(TOKEN).unwrap()),
                ttl: Some(Duration::from_millis(1500)),
                fence: Some(7),
                queued: Some(2),
                permits: None,
                rw: None,
            })]
        );
        assert_eq!(
            outcome.verdict(),
            Verdict::Held(&Token::new(TOKEN).unwrap())
        );
        assert_eq!(inspect.owed_replies(0), Some(0), "the connection is clean");
        assert!(inspect.poll_outcome().is_none(), "the outcome comes once");
    }

    #[test]
    fn a_free_name_counts_every_kinds_waiters() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        for (expect, reply) in [
            (&[&b"GET"[..], b"distlock:{job}"][..], &b"$-1\r\n"[..]),
            (&[b"PTTL", b"distlock:{job}"], b":-2\r\n"),
            (&[b"GET", b"distlock:{job}:fence"], b"$1\r\n3\r\n"),
            (&[b"ZCARD", b"distlock:{job}:queue"], b":1\r\n"),
            (&[b"ZCARD", b"distlock:{job}:permit-queue"], b":0\r\n"),
            (&[b"ZCARD", b"distlock:{job}:writers"], b":2\r\n"),
        ] {
            assert!(inspect.poll_outcome().is_none());
            assert_eq!(sent(&mut inspect, t0), vec![(0, args(expect))]);
            inspect.handle_input(0, reply, t0);
        }
        let outcome = inspect.poll_outcome().unwrap();
        assert_eq!(
            outcome.nodes,
            vec![Ok(Reading {
                holder: None,
                ttl: None,
                fence: Some(3),
                queued: Some(3),
                permits: None,
                rw: None,
            })],
            "waiters outlive holds: a free name's are every kind's"
        );
        assert_eq!(outcome.verdict(), Verdict::Free, "waiters hold nothing");
        assert_eq!(inspect.owed_replies(0), Some(0));

        // A semaphore whose permits are all gone is free too: every kind's waiters.
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        for reply in [
            &wrong[..],
            b"*2\r\n$1\r\n0\r\n*2\r\n$18\r\ntoken-a-0000000001\r\n$1\r\n2\r\n",
            b":-2\r\n",
            b"$-1\r\n",
        ] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        for (key, reply) in [
            (&b"distlock:{job}:queue"[..], &b":0\r\n"[..]),
            (b"distlock:{job}:permit-queue", b":4\r\n"),
            (b"distlock:{job}:writers", b":0\r\n"),
        ] {
            assert_eq!(sent(&mut inspect, t0), vec![(0, args(&[b"ZCARD", key]))]);
            inspect.handle_input(0, reply, t0);
        }
        let node = inspect.poll_outcome().unwrap().nodes.remove(0).unwrap();
        assert_eq!(node.queued, Some(4));
        assert_eq!(node.permits.map(|p| p.holders.len()), Some(0));
    }

    #[test]
    fn a_waiters_set_of_another_type_is_not_a_lock_whichever_kind() {
        let t0 = Instant::from_millis(0);
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        // A free name: the third set (the writers') is a user's list.
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        for reply in [
            &b"$-1\r\n"[..],
            b":-2\r\n",
            b"$-1\r\n",
            b":0\r\n",
            b":0\r\n",
            wrong,
        ] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        let node = inspect.poll_outcome().unwrap().nodes.remove(0);
        assert!(
            matches!(&node, Err(NodeError::NotALock { key, .. }) if key == b"distlock:{job}:writers"),
            "{node:?}"
        );
        // A count that is no integer: the node fails, never reads as nobody waiting.
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        for reply in [
            &b"$-1\r\n"[..],
            b":-2\r\n",
            b"$-1\r\n",
            b":0\r\n",
            b"$1\r\n1\r\n",
        ] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        assert!(matches!(
            inspect.poll_outcome().unwrap().nodes[0],
            Err(NodeError::Protocol(ProtocolError::UnexpectedReply))
        ));
    }

    #[test]
    fn every_failure_is_unread_never_free() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(5), t0).unwrap();
        assert_eq!(sent(&mut inspect, t0).len(), 5);
        inspect.handle_input(0, b"-NOPERM this user has no permissions\r\n", t0);
        inspect.handle_input(1, b"$5\r\nalice\r\n", t0);
        inspect.handle_input(2, b"garbage\r\n", t0);
        inspect.handle_disconnect(3, t0);
        // Node 4 stays silent: the request timeout ends it.
        assert!(inspect.poll_outcome().is_none());
        let deadline = inspect.poll_timeout().unwrap();
        assert_eq!(deadline, Instant::from_millis(1000));
        inspect.handle_timeout(deadline);
        let outcome = inspect.poll_outcome().unwrap();
        let errors: Vec<NodeError> = outcome
            .nodes
            .iter()
            .cloned()
            .map(Result::unwrap_err)
            .collect();
        assert!(matches!(&errors[0], NodeError::Server(e) if e.kind == ServerErrorKind::NoPerm));
        assert!(matches!(&errors[1], NodeError::NotALock { .. }));
        assert!(matches!(
            errors[2],
            NodeError::Protocol(ProtocolError::Malformed)
        ));
        assert_eq!(errors[3], NodeError::Disconnected);
        assert_eq!(
            errors[4],
            NodeError::Timeout {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(outcome.verdict(), Verdict::Unknown);
        assert_eq!(inspect.owed_replies(2), None, "garbage: reconnect");
        assert_eq!(inspect.owed_replies(4), None, "a reply is still owed");
    }

    #[test]
    fn the_node_budget_bounds_all_three_requests() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        let _ = sent(&mut inspect, t0);
        inspect.handle_input(0, b"$-1\r\n", Instant::from_millis(600));
        let _ = sent(&mut inspect, Instant::from_millis(600));
        // The second request would have until 1600; the node's budget ends at 1000.
        assert_eq!(inspect.poll_timeout(), Some(Instant::from_millis(1000)));
        inspect.handle_timeout(Instant::from_millis(1000));
        assert!(matches!(
            inspect.poll_outcome().unwrap().nodes[0],
            Err(NodeError::Timeout { .. })
        ));
    }

    #[test]
    fn a_fence_that_is_no_number_is_not_a_lock() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        let _ = sent(&mut inspect, t0);
        inspect.handle_input(0, b"$-1\r\n:-2\r\n", t0);
        let _ = sent(&mut inspect, t0);
        // The PTTL reply came with the GET's: unsolicited, so the node fails.
        assert!(matches!(
            inspect.poll_outcome().unwrap().nodes[0],
            Err(NodeError::Protocol(ProtocolError::Unsolicited))
        ));

        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        for reply in [&b"$-1\r\n"[..], b":-2\r\n", b"+x1\r\n"] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        let node = inspect.poll_outcome().unwrap().nodes.remove(0);
        assert!(
            matches!(&node, Err(NodeError::NotALock { key, .. }) if key == b"distlock:{job}:fence"),
            "{node:?}"
        );
    }

    #[test]
    fn a_queue_of_another_type_is_not_a_lock() {
        let t0 = Instant::from_millis(0);
        let mut inspect = Inspect::new(&lock(), &servers(1), t0).unwrap();
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for reply in [&b"$-1\r\n"[..], b":-2\r\n", b"$-1\r\n", wrong] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        let node = inspect.poll_outcome().unwrap().nodes.remove(0);
        assert!(
            matches!(&node, Err(NodeError::NotALock { key, .. }) if key == b"distlock:{job}:queue"),
            "{node:?}"
        );
    }

    #[test]
    fn a_layout_without_a_queue_is_read_in_three_commands() {
        let t0 = Instant::from_millis(0);
        let lock = Lock::new(KeyLayout::redis_py(), b"job", LockOptions::default()).unwrap();
        let mut inspect = Inspect::new(&lock, &servers(1), t0).unwrap();
        for reply in [&b"$-1\r\n"[..], b":-2\r\n", b"$-1\r\n"] {
            let _ = sent(&mut inspect, t0);
            inspect.handle_input(0, reply, t0);
        }
        assert_eq!(
            inspect.poll_outcome().unwrap().nodes,
            vec![Ok(Reading {
                holder: None,
                ttl: None,
                fence: None,
                queued: None,
                permits: None,
                rw: None,
            })]
        );
    }

    #[test]
    fn shared_holds_need_live_holds_on_a_majority() {
        let token = || Token::new(TOKEN).unwrap();
        let idle = Reading {
            holder: None,
            ttl: None,
            fence: None,
            queued: None,
            permits: None,
            rw: None,
        };
        let permits = |holders: usize| Reading {
            permits: Some(Permits {
                limit: 2,
                holders: (0..holders).map(|_| (token(), None)).collect(),
            }),
            ..idle.clone()
        };
        let reader = Reading {
            rw: Some(RwHolds {
                writer: None,
                readers: vec![(token(), None)],
            }),
            ..idle.clone()
        };
        let writer = Reading {
            rw: Some(RwHolds {
                writer: Some((token(), None)),
                readers: Vec::new(),
            }),
            ..idle.clone()
        };
        let unread = || {
            Err(NodeError::Timeout {
                after: Duration::from_millis(1),
            })
        };
        let of = |nodes: Vec<Result<Reading, NodeError>>| Inspection { nodes };
        assert!(of(vec![Ok(permits(1))]).shared_holds());
        assert!(of(vec![Ok(reader.clone())]).shared_holds());
        assert!(of(vec![Ok(writer)]).shared_holds());
        assert!(!of(vec![Ok(permits(0))]).shared_holds(), "no live permit");
        assert!(!of(vec![Ok(idle.clone())]).shared_holds());
        assert!(!of(vec![unread()]).shared_holds(), "unread is not held");
        assert!(!of(vec![Ok(reader.clone()), unread(), Ok(idle.clone())]).shared_holds());
        assert!(of(vec![Ok(reader.clone()), unread(), Ok(reader.clone())]).shared_holds());
        // Shared holds on a majority are the verdict; on a minority they are never free
        // while unread nodes could make them a majority.
        assert_eq!(of(vec![Ok(permits(1))]).verdict(), Verdict::Shared);
        assert_eq!(
            of(vec![Ok(reader.clone()), unread(), Ok(idle.clone())]).verdict(),
            Verdict::Unknown
        );
        assert_eq!(
            of(vec![Ok(permits(1)), Ok(idle.clone()), Ok(idle.clone())]).verdict(),
            Verdict::Free,
            "one node of three: no majority can hold it"
        );
    }

    #[test]
    fn verdicts() {
        use Seen::{Free as F, Holder as H, Unread as U};
        assert_eq!(verdict([H("a"), H("a"), F]), Verdict::Held("a"));
        assert_eq!(
            verdict([H("a"), H("b"), U]),
            Verdict::Unknown,
            "U may hold a"
        );
        assert_eq!(verdict([U]), Verdict::<&str>::Unknown);
        assert_eq!(verdict([F]), Verdict::<&str>::Free);
        assert_eq!(
            verdict([F, F, U]),
            Verdict::<&str>::Free,
            "no token can reach 2"
        );
        assert_eq!(verdict([H("a"), F, U]), Verdict::Unknown);
        assert_eq!(verdict([F, U, U]), Verdict::<&str>::Unknown);
        assert!(is_majority(1, 1) && is_majority(2, 3) && !is_majority(1, 3));
    }

    fn seen() -> impl Strategy<Value = Seen<u8>> {
        prop_oneof![
            (0u8..3).prop_map(Seen::Holder),
            Just(Seen::Free),
            Just(Seen::Unread)
        ]
    }

    proptest! {
        /// Free only when no token could reach a majority even counting every unread node;
        /// held only by a token on a majority.
        #[test]
        fn the_verdict_never_calls_a_possible_majority_free(
            nodes in proptest::collection::vec(seen(), 1..8)
        ) {
            let needed = quorum(nodes.len());
            let unread = nodes.iter().filter(|s| matches!(s, Seen::Unread)).count();
            let count = |t: u8| nodes.iter().filter(|s| **s == Seen::Holder(t)).count();
            match verdict(nodes.iter().copied()) {
                Verdict::Held(t) => prop_assert!(count(t) >= needed),
                Verdict::Free => {
                    for t in 0..3 {
                        prop_assert!(count(t) + unread < needed);
                    }
                }
                Verdict::Unknown => {
                    prop_assert!((0..3).all(|t| count(t) < needed));
                    prop_assert!((0..3).any(|t| count(t) + unread >= needed));
                }
                Verdict::Shared => prop_assert!(false, "no shared holds among single tokens"),
            }
        }

        /// Any bytes from any node, cut anyhow: no panic, an outcome by the deadline, and
        /// "held" only for a token a majority of nodes really sent as the lock key's value.
        #[test]
        fn arbitrary_replies_never_panic_nor_fake_a_holder(
            inputs in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just(b"$32\r\n0123456789abcdef0123456789abcdef\r\n".to_vec()),
                        Just(b":100\r\n".to_vec()),
                        Just(b"$1\r\n3\r\n".to_vec()),
                        Just(b"$-1\r\n".to_vec()),
                        proptest::collection::vec(any::<u8>(), 0..12),
                    ],
                    0..6,
                ),
                1..6,
            ),
            chunk in 1usize..9,
            resp3 in any::<bool>(),
        ) {
            let protocol = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
            let servers: Vec<ServerInfo> = inputs
                .iter()
                .map(|_| ServerInfo { protocol, ..ServerInfo::default() })
                .collect();
            let t0 = Instant::from_millis(0);
            let mut inspect = Inspect::new(&lock(), &servers, t0).unwrap();
            let mut buf = [0u8; 256];
            for (node, replies) in inputs.iter().enumerate() {
                for reply in replies {
                    while inspect.poll_transmit(t0, &mut buf).unwrap().is_some() {}
                    for piece in reply.chunks(chunk) {
                        inspect.handle_input(node, piece, t0);
                    }
                }
            }
            while inspect.poll_transmit(t0, &mut buf).unwrap().is_some() {}
            let deadline = inspect.poll_timeout();
            prop_assert!(deadline.is_none_or(|d| d <= Instant::from_millis(1000)));
            inspect.handle_timeout(Instant::from_millis(1000));
            let outcome = inspect.poll_outcome();
            prop_assert!(outcome.is_some(), "every node ends by its deadline");
            let outcome = outcome.unwrap();
            if let Verdict::Held(token) = outcome.verdict() {
                prop_assert_eq!(token.as_bytes(), TOKEN);
                // A node said the token when its stream, read as one run of bytes, opens
                // with the token's reply: pieces may be empty or split a reply anywhere.
                let said = inputs
                    .iter()
                    .filter(|replies| replies.concat().starts_with(
                        b"$32\r\n0123456789abcdef0123456789abcdef\r\n"))
                    .count();
                prop_assert!(said >= quorum(inputs.len()));
            }
        }
    }
}
