//! `reset`: force-unlock after a crash — one lock by name, or every lock under the layout's
//! prefix by a bounded `SCAN` walk.
//!
//! [`Reset`] runs on every node at once, one command at a time per node. For each candidate
//! key it reads the value (`GET`), checks it, and deletes it with the release script
//! ([`script::RELEASE`]) given the value just read; a lock key's delete also pushes the
//! wake-up signal, as a release does. A fair mutex's queue, a fair semaphore's and a
//! read-write lock's waiting writers (tagged layout, `:queue`, `:permit-queue` and
//! `:writers`: each kind's waiters have keys of their own) are no strings: each is deleted by a script that deletes it only while it is a sorted
//! set ([`DELETE_QUEUE`]); a dry run asks its `TYPE`. Their waiters' own keys are left to
//! expire (within a request timeout, or a writer's liveness), and a waiter still live queues
//! again on its next cycle. A lock key that is no string
//! (`GET` says `WRONGTYPE`) may be a semaphore's holders or a read-write lock's marker
//! (tagged layout): one script ([`RESET_SEMAPHORE_OR_RW`]) clears every key of that name but
//! its fencing counter — permits, holders, writer, readers, waiting writers' intent, waiters'
//! wake-up lists, each kind's own — and pushes the wake-up signals, or says the key's type and leaves it alone. It ends with a [`ResetOutcome`]: per node the keys
//! deleted (a dry run: that would be), those left alone and why, how far an unfinished walk
//! got, or the [`NodeError`] that stopped the node.
//!
//! Invariants:
//! - **Only lock keys are deleted.** A key is a candidate only when the layout built it
//!   ([`KeyLayout::recognise`]) for a role a reset deletes ([`KeyRole::is_reset`]: never the
//!   fencing counter, so fences stay monotonic), and it is deleted only when it holds what the
//!   protocol writes there ([`KeyRole::fits`]; for a waiters' set: a sorted set; for a semaphore or
//!   a read-write lock: its holders' set or its `rw` marker, read in the same script that
//!   deletes). The delete compares with the value just read,
//!   so a key rewritten between the check and the delete is left alone. A dry run sends no
//!   write at all.
//! - **Bounded.** Every request ends within the lock's request timeout. A node's reset by name
//!   ends within one request timeout; a walk starts no `SCAN` after [`RESET_WALK_LIMIT`] and
//!   reports how far it got ([`Unfinished`]), its node's whole part ending within that limit
//!   plus one request timeout. Each `SCAN` asks for [`RESET_SCAN_COUNT`] keys (never `KEYS`,
//!   which blocks the server).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::dialogue::{Dialogues, NodeError, Step, Task, Value, command, driven_by_dialogues};
use crate::error::ConfigError;
use crate::inspect::{check_nodes, failure};
use crate::keys::{KeyLayout, KeyRole, Keys, LockName, RESET_SCAN_COUNT, RESET_WALK_LIMIT};
use crate::lock::{Lock, LockOptions};
use crate::resp::encode::decimal;
use crate::script;
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// Why a key shaped like a lock key was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftAlone {
    /// It is no string (a hash, a list…): not a lock key. `kind` is what `TYPE` said.
    NotAString {
        /// The key's type, when the server said.
        kind: Option<String>,
    },
    /// A lock key whose value is no token.
    NotAToken,
    /// A re-entry count whose value is no count.
    NotACount,
    /// A waiting mark whose value is not the `1` waiters write.
    NotAMark,
    /// Its value changed between the check and the delete.
    Changed,
    /// Its type changed between the check and the delete.
    ChangedType,
    /// A waiters' set (fair mode's queues, a read-write lock's waiting writers) holds no sorted
    /// set. `kind` is what `TYPE` said.
    NotAQueue {
        /// The key's type, when the server said.
        kind: Option<String>,
    },
}

impl fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftAlone::NotAString { kind: Some(kind) } => {
                write!(f, "it is a {kind}, not a string: not a lock key")
            }
            LeftAlone::NotAString { kind: None } => {
                f.write_str("it is not a string: not a lock key")
            }
            LeftAlone::NotAToken => f.write_str("its value is not a lock token"),
            LeftAlone::NotACount => f.write_str("its value is not a count"),
            LeftAlone::NotAMark => f.write_str("its value is not a waiting mark"),
            LeftAlone::Changed => f.write_str("it changed after it was checked"),
            LeftAlone::ChangedType => f.write_str("it changed type after it was checked"),
            LeftAlone::NotAQueue { kind: Some(kind) } => {
                write!(f, "it is a {kind}, not a sorted set: not a waiters' queue")
            }
            LeftAlone::NotAQueue { kind: None } => {
                f.write_str("it is not a sorted set: not a waiters' queue")
            }
        }
    }
}

/// How far a walk got when it stopped at [`RESET_WALK_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// `SCAN` calls made.
    pub scans: u64,
    /// The cursor the next call would have used.
    pub cursor: Vec<u8>,
    /// The limit it stopped at.
    pub limit: Duration,
}

impl fmt::Display for Unfinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the walk stopped at its {} s limit after {} SCAN calls (cursor {}); run it again",
            self.limit.as_millis() / 1000,
            self.scans,
            String::from_utf8_lossy(&self.cursor)
        )
    }
}

/// What a reset did (a dry run: would do) on one node that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReset {
    /// The keys deleted (a dry run: that would be).
    pub deleted: Vec<Vec<u8>>,
    /// Keys shaped like lock keys that were left alone, and why.
    pub left_alone: Vec<(Vec<u8>, LeftAlone)>,
    /// Set when a walk stopped at its limit before the end.
    pub unfinished: Option<Unfinished>,
}

/// What a reset did on every node, in node order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// Each node's part, or why it failed.
    pub nodes: Vec<Result<NodeReset, NodeError>>,
}

/// Why `reset --all` will not walk (nothing is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalkRefused {
    /// The layout's lock keys are another library's names, with no private prefix
    /// ([`KeyLayout::prefix`] is `None`): a walk could reach keys that are not locks.
    NoPrefix {
        /// The layout's name.
        layout: &'static str,
    },
    /// An empty prefix: the walk would be the whole database.
    EmptyPrefix,
    /// The node count is not usable.
    Config(ConfigError),
}

/// The `reset` machine over every node (see the module doc); drive it as a
/// [`crate::Driven`].
pub struct Reset {
    dialogues: Dialogues<ResetNode>,
}

impl fmt::Debug for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reset")
    }
}

impl Reset {
    /// Resets `lock` on each of `servers` (1 to [`crate::MAX_NODES`]): its lock key, its
    /// re-entry count and (tagged layout) fair mode's queues (a fair mutex's, a fair
    /// semaphore's) and a read-write lock's waiting writers, each node within the lock's request timeout. `dry_run`: reads only.
    pub fn by_name(
        lock: &Lock,
        servers: &[ServerInfo],
        dry_run: bool,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        check_nodes(servers.len())?;
        let keys = lock.keys();
        let name = keys.name();
        let waiters = keys.has_queue().then(|| {
            [
                (KeyRole::Queue, keys.queue().concat()),
                (KeyRole::PermitQueue, keys.permit_queue().concat()),
                (KeyRole::Writers, keys.writers().concat()),
            ]
        });
        let waiting = keys.waiting().map(|key| (KeyRole::Waiting, key.concat()));
        let pending: VecDeque<Candidate> = [
            (KeyRole::Lock, keys.lock().concat()),
            (KeyRole::Holds, keys.holds().concat()),
        ]
        .into_iter()
        .chain(waiting)
        .chain(waiters.into_iter().flatten())
        .map(|(role, key)| Candidate {
            name: name.clone(),
            role,
            key,
        })
        .collect();
        let options = lock.options();
        let tasks = servers
            .iter()
            .map(|_| ResetNode::new(keys.layout(), options, dry_run, pending.clone(), None))
            .collect();
        let timeout = options.request_timeout;
        Ok(Reset {
            dialogues: Dialogues::new(tasks, servers, timeout, timeout, now),
        })
    }

    /// Resets every lock under `layout`'s prefix on each of `servers`: walks it with `SCAN`
    /// and resets every candidate key found (see the module doc). Refused before anything is
    /// sent for a layout without a private prefix or with an empty one.
    pub fn all(
        layout: &KeyLayout,
        options: &LockOptions,
        servers: &[ServerInfo],
        dry_run: bool,
        now: Instant,
    ) -> Result<Self, WalkRefused> {
        let pattern = walk_pattern(layout)?;
        check_nodes(servers.len()).map_err(WalkRefused::Config)?;
        let walk = Walk {
            pattern,
            cursor: b"0".to_vec(),
            scans: 0,
            done: false,
            stop_at: now.saturating_add(RESET_WALK_LIMIT),
        };
        let tasks = servers
            .iter()
            .map(|_| {
                ResetNode::new(
                    layout,
                    options,
                    dry_run,
                    VecDeque::new(),
                    Some(walk.clone()),
                )
            })
            .collect();
        let timeout = options.request_timeout;
        let budget = RESET_WALK_LIMIT.saturating_add(timeout);
        Ok(Reset {
            dialogues: Dialogues::new(tasks, servers, timeout, budget, now),
        })
    }

    fn outcome(nodes: Vec<Result<NodeReset, NodeError>>) -> ResetOutcome {
        ResetOutcome { nodes }
    }
}

driven_by_dialogues!(Reset, ResetOutcome);

/// The `SCAN MATCH` pattern of a walk under `layout`: `prefix{*`, the prefix's glob
/// characters escaped — every key that can be a tagged lock key under the prefix.
pub fn walk_pattern(layout: &KeyLayout) -> Result<Vec<u8>, WalkRefused> {
    let Some(prefix) = layout.prefix() else {
        return Err(WalkRefused::NoPrefix {
            layout: layout.name(),
        });
    };
    if prefix.is_empty() {
        return Err(WalkRefused::EmptyPrefix);
    }
    let mut out = Vec::with_capacity(prefix.len().saturating_add(8));
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.extend_from_slice(b"{*");
    Ok(out)
}

pub(crate) use crate::script::{DELETE_QUEUE, RESET_SEMAPHORE_OR_RW};

/// A key to reset, with the lock and role the layout proved it belongs to.
#[derive(Debug, Clone)]
struct Candidate {
    name: LockName,
    role: KeyRole,
    key: Vec<u8>,
}

/// A walk's progress on one node.
#[derive(Debug, Clone)]
struct Walk {
    pattern: Vec<u8>,
    cursor: Vec<u8>,
    scans: u64,
    /// The last page was read (the server gave cursor 0).
    done: bool,
    /// No `SCAN` starts at or after this.
    stop_at: Instant,
}

/// What the last command sent was.
enum Asked {
    Nothing,
    Scan,
    Value(Candidate),
    Type(Candidate),
    Delete(Candidate),
    /// A waiters' set (fair mode's queues, a read-write lock's waiting writers): its `TYPE`
    /// (dry run) or [`DELETE_QUEUE`].
    Queue(Candidate),
    /// A lock key of another type: [`RESET_SEMAPHORE_OR_RW`].
    SemaphoreOrRw(Candidate),
}

/// One node's reset: candidates by name, or found by a walk.
struct ResetNode {
    layout: KeyLayout,
    dry_run: bool,
    /// The wake-up signal's TTL in ms, for the release script (`0`: none).
    signal_ms: Vec<u8>,
    pending: VecDeque<Candidate>,
    walk: Option<Walk>,
    asked: Asked,
    report: NodeReset,
}

impl ResetNode {
    fn new(
        layout: &KeyLayout,
        options: &LockOptions,
        dry_run: bool,
        pending: VecDeque<Candidate>,
        walk: Option<Walk>,
    ) -> Self {
        let mut digits = [0u8; 20];
        let signal_ms = decimal(
            options.wake_signal.map_or(0, Duration::as_millis),
            &mut digits,
        );
        ResetNode {
            layout: layout.clone(),
            dry_run,
            signal_ms: signal_ms.to_vec(),
            pending,
            walk,
            asked: Asked::Nothing,
            report: NodeReset::default(),
        }
    }

    /// The next command: the next candidate's value, else the next page, else done.
    fn next(&mut self, now: Instant) -> Step<NodeReset> {
        if let Some(candidate) = self.pending.pop_front() {
            if candidate.role.is_waiters() {
                let ask = if self.dry_run {
                    command(&[b"TYPE", &candidate.key])
                } else {
                    command(&[b"EVAL", DELETE_QUEUE.as_bytes(), b"1", &candidate.key])
                };
                self.asked = Asked::Queue(candidate);
                return Step::Send(ask);
            }
            let get = command(&[b"GET", &candidate.key]);
            self.asked = Asked::Value(candidate);
            return Step::Send(get);
        }
        if let Some(walk) = &self.walk
            && !walk.done
        {
            if now >= walk.stop_at {
                self.report.unfinished = Some(Unfinished {
                    scans: walk.scans,
                    cursor: walk.cursor.clone(),
                    limit: RESET_WALK_LIMIT,
                });
            } else {
                let mut digits = [0u8; 20];
                let count = decimal(u64::from(RESET_SCAN_COUNT), &mut digits);
                self.asked = Asked::Scan;
                return Step::Send(command(&[
                    b"SCAN",
                    &walk.cursor,
                    b"MATCH",
                    &walk.pattern,
                    b"COUNT",
                    count,
                ]));
            }
        }
        self.asked = Asked::Nothing;
        Step::Done(core::mem::take(&mut self.report))
    }

    fn left_alone(&mut self, candidate: Candidate, why: LeftAlone) {
        self.report.left_alone.push((candidate.key, why));
    }

    /// A page of keys: the candidates among them, and where the walk goes on.
    fn on_page(&mut self, reply: Value) -> Result<(), NodeError> {
        let Value::List(parts) = reply else {
            return Err(failure(reply));
        };
        let [Value::Text(cursor), Value::List(keys)] = parts.as_slice() else {
            return Err(failure(Value::Other));
        };
        for found in keys {
            let Value::Text(found) = found else { continue };
            let Some((name, role)) = self.layout.recognise(found) else {
                continue;
            };
            if role.is_reset() {
                self.pending.push_back(Candidate {
                    name,
                    role,
                    key: found.clone(),
                });
            }
        }
        if let Some(walk) = &mut self.walk {
            walk.scans = walk.scans.saturating_add(1);
            walk.done = cursor.as_slice() == b"0";
            walk.cursor.clone_from(cursor);
        }
        Ok(())
    }

    /// The candidate's value: delete it when it fits its role.
    fn on_value(&mut self, candidate: Candidate, reply: Value) -> Option<Step<NodeReset>> {
        let value = match reply {
            Value::Nil => return None,
            Value::Text(value) => value,
            Value::Error(e) if e.starts_with(b"WRONGTYPE") => {
                if candidate.role == KeyRole::Lock && self.layout.prefix().is_some() {
                    let ask = self.reset_semaphore_or_rw(&candidate);
                    self.asked = Asked::SemaphoreOrRw(candidate);
                    return Some(Step::Send(ask));
                }
                let ask = command(&[b"TYPE", &candidate.key]);
                self.asked = Asked::Type(candidate);
                return Some(Step::Send(ask));
            }
            other => return Some(Step::Fail(failure(other))),
        };
        if !candidate.role.fits(&value) {
            let why = match candidate.role {
                KeyRole::Lock => LeftAlone::NotAToken,
                KeyRole::Waiting => LeftAlone::NotAMark,
                _ => LeftAlone::NotACount,
            };
            self.left_alone(candidate, why);
            return None;
        }
        if self.dry_run {
            self.report.deleted.push(candidate.key);
            return None;
        }
        let delete = self.delete(&candidate, &value);
        self.asked = Asked::Delete(candidate);
        Some(Step::Send(delete))
    }

    /// [`RESET_SEMAPHORE_OR_RW`] for the name whose lock key `candidate` is.
    fn reset_semaphore_or_rw(&self, candidate: &Candidate) -> Vec<u8> {
        let keys = Keys::new(self.layout.clone(), candidate.name.clone());
        // The fair semaphore's own waiter keys: a fair mutex's queue of the same name is no
        // semaphore's, and is reset as a candidate of its own.
        let named = [
            keys.permit_queue().concat(),
            keys.permit_wake_prefix().concat(),
            keys.permit_alive_prefix().concat(),
            keys.permit_prefix().concat(),
            keys.writer().concat(),
            keys.readers().concat(),
            keys.reader_prefix().concat(),
            keys.permit_signal().concat(),
            keys.read_signal().concat(),
            keys.writers().concat(),
            keys.writer_alive_prefix().concat(),
            keys.writer_signal().concat(),
        ];
        let dry: &[u8] = if self.dry_run { b"1" } else { b"0" };
        let mut args: Vec<&[u8]> = Vec::with_capacity(19);
        args.extend([&b"EVAL"[..], RESET_SEMAPHORE_OR_RW.as_bytes(), b"13"]);
        args.push(&candidate.key);
        args.extend(named.iter().map(Vec::as_slice));
        args.extend([dry, &self.signal_ms]);
        command(&args)
    }

    /// The release script, as the holder of `value` would run it: compare-and-delete.
    fn delete(&self, candidate: &Candidate, value: &[u8]) -> Vec<u8> {
        let keys = Keys::new(self.layout.clone(), candidate.name.clone());
        let (holds, signal) = (keys.holds().concat(), keys.signal().concat());
        let key = candidate.key.as_slice();
        // The release script's KEYS are lock, holds, signal, waiting mark; for the re-entry
        // count and the waiting mark themselves the same key stands in for all four (it is
        // deleted, never decremented: not reentrant), and no signal is pushed. A lock key's
        // delete pushes whether or not a waiter marked: a waiter of an older distlock, or of
        // python-redis-lock, never marks.
        let (keys, signal_ms): ([&[u8]; 4], &[u8]) = match candidate.role {
            KeyRole::Lock => ([key, &holds, &signal, &signal], &self.signal_ms),
            _ => ([key, key, key, key], b"0"),
        };
        command(&[
            b"EVAL",
            script::RELEASE.source.as_bytes(),
            b"4",
            keys[0],
            keys[1],
            keys[2],
            keys[3],
            value,
            b"0",
            signal_ms,
            b"1",
        ])
    }
}

impl Task for ResetNode {
    type Done = NodeReset;

    fn start(&mut self, now: Instant) -> Step<NodeReset> {
        self.next(now)
    }

    fn on_reply(&mut self, reply: Value, now: Instant) -> Step<NodeReset> {
        match core::mem::replace(&mut self.asked, Asked::Nothing) {
            Asked::Nothing => return Step::Fail(failure(Value::Other)),
            Asked::Scan => {
                if let Err(e) = self.on_page(reply) {
                    return Step::Fail(e);
                }
            }
            Asked::Value(candidate) => {
                if let Some(step) = self.on_value(candidate, reply) {
                    return step;
                }
            }
            Asked::Type(candidate) => {
                let kind = match reply {
                    Value::Text(kind) => Some(String::from_utf8_lossy(&kind).into_owned()),
                    _ => None,
                };
                self.left_alone(candidate, LeftAlone::NotAString { kind });
            }
            Asked::SemaphoreOrRw(candidate) => match reply {
                Value::List(keys) => {
                    for key in keys {
                        let Value::Text(key) = key else {
                            return Step::Fail(failure(Value::Other));
                        };
                        self.report.deleted.push(key);
                    }
                }
                // Gone between the `GET` and the script: nothing left to reset.
                Value::Text(kind) if kind.as_slice() == b"none" => {}
                Value::Text(kind) => {
                    let kind = Some(String::from_utf8_lossy(&kind).into_owned());
                    self.left_alone(candidate, LeftAlone::NotAString { kind });
                }
                other => return Step::Fail(failure(other)),
            },
            Asked::Queue(candidate) => match reply {
                Value::Int(1) => self.report.deleted.push(candidate.key),
                Value::Int(0) => {}
                Value::Text(kind) if kind.as_slice() == b"zset" => {
                    self.report.deleted.push(candidate.key);
                }
                Value::Text(kind) if kind.as_slice() == b"none" => {}
                Value::Text(kind) => {
                    let kind = Some(String::from_utf8_lossy(&kind).into_owned());
                    self.left_alone(candidate, LeftAlone::NotAQueue { kind });
                }
                other => return Step::Fail(failure(other)),
            },
            Asked::Delete(candidate) => match reply {
                Value::Int(0) => self.report.deleted.push(candidate.key),
                Value::Int(_) => self.left_alone(candidate, LeftAlone::Changed),
                Value::Error(e) if e.starts_with(b"WRONGTYPE") => {
                    self.left_alone(candidate, LeftAlone::ChangedType);
                }
                other => return Step::Fail(failure(other)),
            },
        }
        self.next(now)
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::Driven;
    use crate::resp::{self, Protocol, Reply};

    const TOKEN: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn servers(n: usize) -> Vec<ServerInfo> {
        vec![ServerInfo::default(); n]
    }

    fn lock(layout: KeyLayout) -> Lock {
        Lock::new(layout, b"job", LockOptions::default()).unwrap()
    }

    /// The one command the machine wants sent to node 0 now.
    fn next(machine: &mut impl Driven, now: Instant) -> Option<Vec<Vec<u8>>> {
        let mut buf = vec![0u8; 8192];
        let tx = machine.poll_transmit(now, &mut buf).unwrap()?;
        assert_eq!(tx.node, 0);
        let Reply::Array(args) = resp::decode(&buf[..tx.len], Protocol::Resp2).unwrap() else {
            panic!("not a command");
        };
        let args: Vec<Vec<u8>> = args
            .iter()
            .map(|a| match a {
                Reply::Bulk(b) => b.to_vec(),
                _ => panic!("not a bulk"),
            })
            .collect();
        assert!(
            machine.poll_transmit(now, &mut buf).unwrap().is_none(),
            "one at a time"
        );
        Some(args)
    }

    fn bulk(value: &[u8]) -> Vec<u8> {
        let mut out = alloc::format!("${}\r\n", value.len()).into_bytes();
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn walk_patterns_escape_globs_and_need_a_private_prefix() {
        let pattern = |p: &[u8]| walk_pattern(&KeyLayout::tagged(p).unwrap());
        assert_eq!(pattern(b"distlock:").unwrap(), b"distlock:{*");
        assert_eq!(pattern(b"a*b?[c]\\").unwrap(), b"a\\*b\\?\\[c\\]\\\\{*");
        assert_eq!(pattern(b""), Err(WalkRefused::EmptyPrefix));
        for layout in [KeyLayout::redis_py(), KeyLayout::python_redis_lock()] {
            let refused = Reset::all(
                &layout,
                &LockOptions::default(),
                &servers(1),
                false,
                Instant::from_millis(0),
            );
            assert!(matches!(refused, Err(WalkRefused::NoPrefix { .. })));
        }
    }

    #[test]
    fn a_reset_by_name_deletes_with_the_value_just_read_and_signals() {
        let t0 = Instant::from_millis(0);
        let mut reset =
            Reset::by_name(&lock(KeyLayout::default()), &servers(1), false, t0).unwrap();
        assert_eq!(
            next(&mut reset, t0).unwrap()[..2],
            [b"GET".to_vec(), b"distlock:{job}".to_vec()]
        );
        reset.handle_input(0, &bulk(TOKEN), t0);
        let eval = next(&mut reset, t0).unwrap();
        assert_eq!(eval[0], b"EVAL");
        assert_eq!(eval[1], script::RELEASE.source.as_bytes());
        let rest: Vec<&[u8]> = eval[2..].iter().map(Vec::as_slice).collect();
        assert_eq!(
            rest,
            [
                &b"4"[..],
                b"distlock:{job}",
                b"distlock:{job}:holds",
                b"distlock:{job}:signal",
                b"distlock:{job}:signal",
                TOKEN,
                b"0",
                b"1000",
                // Pushes whether or not a waiter marked (an older one never does).
                b"1"
            ]
        );
        reset.handle_input(0, b":0\r\n", t0);
        assert_eq!(next(&mut reset, t0).unwrap()[1], b"distlock:{job}:holds");
        reset.handle_input(0, b"$-1\r\n", t0);
        // The waiting mark: deleted with the value just read, pushing nothing.
        assert_eq!(next(&mut reset, t0).unwrap()[1], b"distlock:{job}:waiting");
        reset.handle_input(0, b"$1\r\n1\r\n", t0);
        let mark = next(&mut reset, t0).unwrap();
        let mark: Vec<&[u8]> = mark[2..].iter().map(Vec::as_slice).collect();
        assert_eq!(
            mark,
            [
                &b"4"[..],
                b"distlock:{job}:waiting",
                b"distlock:{job}:waiting",
                b"distlock:{job}:waiting",
                b"distlock:{job}:waiting",
                b"1",
                b"0",
                b"0",
                b"1"
            ]
        );
        reset.handle_input(0, b":0\r\n", t0);
        // A fair mutex's queue: deleted by one script, only while it is a sorted set.
        let queue = next(&mut reset, t0).unwrap();
        let queue: Vec<&[u8]> = queue.iter().map(Vec::as_slice).collect();
        assert_eq!(
            queue,
            [
                &b"EVAL"[..],
                DELETE_QUEUE.as_bytes(),
                b"1",
                b"distlock:{job}:queue"
            ]
        );
        reset.handle_input(0, b":1\r\n", t0);
        // A fair semaphore's queue: its own set, deleted the same way.
        let permit_queue = next(&mut reset, t0).unwrap();
        let permit_queue: Vec<&[u8]> = permit_queue.iter().map(Vec::as_slice).collect();
        assert_eq!(
            permit_queue,
            [
                &b"EVAL"[..],
                DELETE_QUEUE.as_bytes(),
                b"1",
                b"distlock:{job}:permit-queue"
            ]
        );
        reset.handle_input(0, b":1\r\n", t0);
        // A read-write lock's waiting writers: their own set, deleted the same way.
        let writers = next(&mut reset, t0).unwrap();
        let writers: Vec<&[u8]> = writers.iter().map(Vec::as_slice).collect();
        assert_eq!(
            writers,
            [
                &b"EVAL"[..],
                DELETE_QUEUE.as_bytes(),
                b"1",
                b"distlock:{job}:writers"
            ]
        );
        reset.handle_input(0, b":1\r\n", t0);
        assert!(next(&mut reset, t0).is_none());
        let outcome = reset.poll_outcome().unwrap();
        assert_eq!(
            outcome.nodes,
            vec![Ok(NodeReset {
                deleted: vec![
                    b"distlock:{job}".to_vec(),
                    b"distlock:{job}:waiting".to_vec(),
                    b"distlock:{job}:queue".to_vec(),
                    b"distlock:{job}:permit-queue".to_vec(),
                    b"distlock:{job}:writers".to_vec()
                ],
                ..NodeReset::default()
            })]
        );
    }

    #[test]
    fn a_queue_of_another_type_is_left_alone_and_a_dry_run_only_asks_its_type() {
        let t0 = Instant::from_millis(0);
        for (dry_run, reply, left_alone) in [
            (false, &b"$6\r\nstring\r\n"[..], true),
            (true, b"+list\r\n", true),
            (true, b"+zset\r\n", false),
        ] {
            let mut reset =
                Reset::by_name(&lock(KeyLayout::default()), &servers(1), dry_run, t0).unwrap();
            // The lock key, the re-entry count and the waiting mark: none exists.
            for _ in 0..3 {
                let _ = next(&mut reset, t0);
                reset.handle_input(0, b"$-1\r\n", t0);
            }
            let ask = next(&mut reset, t0).unwrap();
            assert_eq!(ask[0], if dry_run { &b"TYPE"[..] } else { b"EVAL" });
            reset.handle_input(0, reply, t0);
            // The fair semaphore's queue and the waiting writers' set: gone.
            for _ in 0..2 {
                let _ = next(&mut reset, t0).unwrap();
                reset.handle_input(0, if dry_run { b"+none\r\n" } else { b":0\r\n" }, t0);
            }
            assert!(next(&mut reset, t0).is_none());
            let node = reset.poll_outcome().unwrap().nodes.remove(0).unwrap();
            assert_eq!(node.left_alone.len(), usize::from(left_alone), "{reply:?}");
            assert_eq!(node.deleted.len(), usize::from(!left_alone), "{reply:?}");
        }
        let shown = LeftAlone::NotAQueue {
            kind: Some("list".into()),
        };
        assert_eq!(
            shown.to_string(),
            "it is a list, not a sorted set: not a waiters' queue"
        );
    }

    #[test]
    fn a_semaphores_or_read_write_locks_name_is_cleared_by_one_script() {
        let t0 = Instant::from_millis(0);
        let wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for (dry_run, reply, deleted, left_alone) in [
            (
                false,
                &b"*2\r\n$25\r\ndistlock:{job}:permit:abc\r\n$14\r\ndistlock:{job}\r\n"[..],
                2,
                0,
            ),
            (true, b"*1\r\n$14\r\ndistlock:{job}\r\n", 1, 0),
            (false, b"$4\r\nhash\r\n", 0, 1),
            (false, b"$4\r\nnone\r\n", 0, 0),
        ] {
            let mut reset =
                Reset::by_name(&lock(KeyLayout::default()), &servers(1), dry_run, t0).unwrap();
            assert_eq!(next(&mut reset, t0).unwrap()[0], b"GET");
            reset.handle_input(0, wrong, t0);
            let eval = next(&mut reset, t0).unwrap();
            let eval: Vec<&[u8]> = eval.iter().map(Vec::as_slice).collect();
            assert_eq!(
                eval,
                [
                    &b"EVAL"[..],
                    RESET_SEMAPHORE_OR_RW.as_bytes(),
                    b"13",
                    b"distlock:{job}",
                    b"distlock:{job}:permit-queue",
                    b"distlock:{job}:permit-wake:",
                    b"distlock:{job}:permit-alive:",
                    b"distlock:{job}:permit:",
                    b"distlock:{job}:writer",
                    b"distlock:{job}:readers",
                    b"distlock:{job}:reader:",
                    b"distlock:{job}:permit-signal",
                    b"distlock:{job}:read-signal",
                    b"distlock:{job}:writers",
                    b"distlock:{job}:writer-alive:",
                    b"distlock:{job}:writer-signal",
                    if dry_run { b"1" } else { b"0" },
                    b"1000",
                ]
            );
            reset.handle_input(0, reply, t0);
            // The re-entry count, the waiting mark and the waiters' sets follow, as for a
            // mutex: none exists.
            for _ in 0..2 {
                assert_eq!(next(&mut reset, t0).unwrap()[0], b"GET");
                reset.handle_input(0, b"$-1\r\n", t0);
            }
            for _ in 0..3 {
                assert!(next(&mut reset, t0).is_some());
                reset.handle_input(0, if dry_run { b"+none\r\n" } else { b":0\r\n" }, t0);
            }
            assert!(next(&mut reset, t0).is_none());
            let node = reset.poll_outcome().unwrap().nodes.remove(0).unwrap();
            assert_eq!(node.deleted.len(), deleted, "{reply:?}");
            assert_eq!(node.left_alone.len(), left_alone, "{reply:?}");
        }
    }

    #[test]
    fn a_users_key_or_a_changed_one_is_left_alone() {
        let t0 = Instant::from_millis(0);
        let mut reset =
            Reset::by_name(&lock(KeyLayout::redis_py()), &servers(1), false, t0).unwrap();
        assert_eq!(next(&mut reset, t0).unwrap()[1], b"job");
        reset.handle_input(
            0,
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            t0,
        );
        assert_eq!(
            next(&mut reset, t0).unwrap(),
            [b"TYPE".to_vec(), b"job".to_vec()]
        );
        reset.handle_input(0, b"+hash\r\n", t0);
        // The re-entry count: a count, but rewritten before the delete.
        assert_eq!(next(&mut reset, t0).unwrap()[0], b"GET");
        reset.handle_input(0, b"$1\r\n2\r\n", t0);
        assert_eq!(next(&mut reset, t0).unwrap()[0], b"EVAL");
        reset.handle_input(0, b":-1\r\n", t0);
        // The waiting mark holds something no waiter writes.
        assert_eq!(
            next(&mut reset, t0).unwrap(),
            [b"GET".to_vec(), b"distlock-redis-py:{job}:waiting".to_vec()]
        );
        reset.handle_input(0, b"$1\r\n2\r\n", t0);
        assert!(next(&mut reset, t0).is_none());
        let node = reset.poll_outcome().unwrap().nodes.remove(0).unwrap();
        assert!(node.deleted.is_empty());
        assert_eq!(
            node.left_alone,
            vec![
                (
                    b"job".to_vec(),
                    LeftAlone::NotAString {
                        kind: Some("hash".into())
                    }
                ),
                (
                    b"distlock-redis-py:{job}:holds".to_vec(),
                    LeftAlone::Changed
                ),
                (
                    b"distlock-redis-py:{job}:waiting".to_vec(),
                    LeftAlone::NotAMark
                ),
            ]
        );
        assert_eq!(
            node.left_alone[0].1.to_string(),
            "it is a hash, not a string: not a lock key"
        );
    }

    #[test]
    fn a_walk_stops_at_its_limit_and_says_how_far_it_got() {
        let t0 = Instant::from_millis(0);
        let layout = KeyLayout::default();
        let mut reset =
            Reset::all(&layout, &LockOptions::default(), &servers(1), true, t0).unwrap();
        let scan = next(&mut reset, t0).unwrap();
        let scan: Vec<&[u8]> = scan.iter().map(Vec::as_slice).collect();
        assert_eq!(
            scan,
            [
                &b"SCAN"[..],
                b"0",
                b"MATCH",
                b"distlock:{*",
                b"COUNT",
                b"500"
            ]
        );
        let page = b"*2\r\n$2\r\n17\r\n*2\r\n$12\r\ndistlock:{a}\r\n$18\r\ndistlock:{a}:fence\r\n";
        reset.handle_input(0, page, Instant::from_millis(10));
        assert_eq!(
            next(&mut reset, t0).unwrap()[1],
            b"distlock:{a}",
            "never the fence"
        );
        let late = t0.saturating_add(RESET_WALK_LIMIT);
        reset.handle_input(0, &bulk(TOKEN), late);
        assert!(
            next(&mut reset, late).is_none(),
            "no SCAN after the limit; dry: no EVAL"
        );
        let node = reset.poll_outcome().unwrap().nodes.remove(0).unwrap();
        assert_eq!(node.deleted, vec![b"distlock:{a}".to_vec()]);
        let unfinished = node.unfinished.unwrap();
        assert_eq!(
            (unfinished.scans, unfinished.cursor.as_slice()),
            (1, &b"17"[..])
        );
        assert_eq!(
            unfinished.to_string(),
            "the walk stopped at its 30 s limit after 1 SCAN calls (cursor 17); run it again"
        );
    }

    #[test]
    fn a_walk_is_bounded_by_its_limit_plus_one_request() {
        let t0 = Instant::from_millis(0);
        let mut reset = Reset::all(
            &KeyLayout::default(),
            &LockOptions::default(),
            &servers(1),
            false,
            t0,
        )
        .unwrap();
        let _ = next(&mut reset, t0);
        assert_eq!(reset.poll_timeout(), Some(Instant::from_millis(1000)));
        reset.handle_timeout(Instant::from_millis(1000));
        assert_eq!(
            reset.poll_outcome().unwrap().nodes[0],
            Err(NodeError::Timeout {
                after: Duration::from_secs(1)
            })
        );
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"distlock:{a}".to_vec()),
            Just(b"distlock:{a}:holds".to_vec()),
            Just(b"distlock:{a}:fence".to_vec()),
            Just(b"distlock:{a}:signal".to_vec()),
            Just(b"distlock:{a}:queue".to_vec()),
            Just(b"distlock:{a}:writers".to_vec()),
            Just(b"distlock:{a}:permit-queue".to_vec()),
            Just(b"distlock:{a}:permit-alive:x".to_vec()),
            Just(b"distlock:{a}:writer-alive:x".to_vec()),
            Just(b"distlock:{a}:other".to_vec()),
            Just(b"distlock:config".to_vec()),
            Just(b"distlock:{}x".to_vec()),
            Just(b"other:{a}".to_vec()),
            "[a-z{}:]{1,12}".prop_map(|s| alloc::format!("distlock:{s}").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..16),
        ]
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"$-1\r\n".to_vec()),
            Just(bulk(TOKEN)),
            Just(bulk(b"2")),
            Just(bulk(b"alice")),
            Just(b"-WRONGTYPE Operation against a key\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..20).prop_map(|v| bulk(&v)),
        ]
    }

    fn page(cursor: &[u8], keys: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"*2\r\n".to_vec();
        out.extend(bulk(cursor));
        out.extend(alloc::format!("*{}\r\n", keys.len()).into_bytes());
        for key in keys {
            out.extend(bulk(key));
        }
        out
    }

    proptest! {
        /// Fed arbitrary SCAN pages and values, a walk deletes only keys the layout
        /// recognises for a role a reset deletes, each with the value just read, which fits
        /// its role; a dry run writes nothing; only reads and that delete are ever sent.
        #[test]
        fn a_walk_deletes_only_lock_keys_holding_what_the_protocol_writes(
            pages in proptest::collection::vec(proptest::collection::vec(key(), 0..6), 1..4),
            values in proptest::collection::vec(value(), 1..8),
            dry_run in any::<bool>(),
        ) {
            let layout = KeyLayout::default();
            let t0 = Instant::from_millis(0);
            let mut reset = Reset::all(&layout, &LockOptions::default(), &servers(1), dry_run, t0)
                .unwrap();
            let mut served: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let (mut pages_served, mut reads) = (0usize, 0usize);
            let mut deleted = 0usize;
            while let Some(command) = next(&mut reset, t0) {
                let reply = match command[0].as_slice() {
                    b"SCAN" => {
                        pages_served += 1;
                        let last = pages_served == pages.len();
                        let cursor = if last { &b"0"[..] } else { b"9" };
                        page(cursor, &pages[pages_served - 1])
                    }
                    b"GET" => {
                        let key = &command[1];
                        let (_, role) = layout.recognise(key).expect("GET of a key not recognised");
                        prop_assert!(role.is_reset());
                        reads += 1;
                        let reply = values[reads % values.len()].clone();
                        served.insert(key.clone(), reply.clone());
                        reply
                    }
                    b"TYPE" => b"+hash\r\n".to_vec(),
                    b"EVAL" if command[1] == RESET_SEMAPHORE_OR_RW.as_bytes() => {
                        // Only for a lock key that said it is no string; a dry run's script
                        // is told so (it then writes nothing).
                        let key = &command[3];
                        prop_assert_eq!(layout.recognise(key).map(|(_, role)| role), Some(KeyRole::Lock));
                        prop_assert!(served.get(key).is_some_and(|v| v.starts_with(b"-WRONGTYPE")));
                        prop_assert_eq!(command[16].as_slice(), if dry_run { b"1" } else { b"0" });
                        deleted += 1;
                        let mut reply = b"*1\r\n".to_vec();
                        reply.extend(bulk(key));
                        reply
                    }
                    b"EVAL" if command[1] == DELETE_QUEUE.as_bytes() => {
                        prop_assert!(!dry_run, "a dry run sent a delete");
                        let (_, role) = layout.recognise(&command[3]).expect("delete of a key not recognised");
                        prop_assert!(role.is_waiters());
                        deleted += 1;
                        b":1\r\n".to_vec()
                    }
                    b"EVAL" => {
                        prop_assert!(!dry_run, "a dry run sent a delete");
                        let key = &command[3];
                        let (_, role) = layout.recognise(key).expect("delete of a key not recognised");
                        prop_assert!(role.is_reset());
                        let value = &command[7];
                        prop_assert!(role.fits(value));
                        prop_assert_eq!(served.get(key), Some(&bulk(value)), "not the value read");
                        deleted += 1;
                        b":0\r\n".to_vec()
                    }
                    other => {
                        prop_assert!(false, "unexpected command {:?}", other);
                        unreachable!()
                    }
                };
                reset.handle_input(0, &reply, t0);
            }
            let node = reset.poll_outcome().unwrap().nodes.remove(0);
            prop_assert!(node.is_ok(), "{:?}", node);
            let node = node.unwrap();
            if !dry_run {
                prop_assert_eq!(node.deleted.len(), deleted);
            }
            for key in &node.deleted {
                let (_, role) = layout.recognise(key).unwrap();
                prop_assert!(role.is_reset());
            }
        }

        /// Whatever bytes a node sends during a walk: no panic, and an outcome by the
        /// node's deadline.
        #[test]
        fn arbitrary_bytes_during_a_walk_never_panic(
            replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        ) {
            let t0 = Instant::from_millis(0);
            let mut reset =
                Reset::all(&KeyLayout::default(), &LockOptions::default(), &servers(1), false, t0)
                    .unwrap();
            let mut buf = vec![0u8; 8192];
            for reply in &replies {
                while reset.poll_transmit(t0, &mut buf).unwrap().is_some() {}
                reset.handle_input(0, reply, t0);
            }
            while reset.poll_transmit(t0, &mut buf).unwrap().is_some() {}
            reset.handle_timeout(t0.saturating_add(RESET_WALK_LIMIT).saturating_add(Duration::from_secs(1)));
            prop_assert!(reset.poll_outcome().is_some());
        }
    }
}
