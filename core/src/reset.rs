//! `reset`: force-unlock after a crash — one lock by name, or every lock under the layout's
//! prefix by a bounded `SCAN` walk.
//!
//! [`Reset`] runs on every node at once, one command at a time per node. For each candidate
//! key it reads the value (`GET`), checks it, and deletes it with the release script
//! ([`script::RELEASE`]) given the value just read; a lock key's delete also pushes the
//! wake-up signal, as a release does. It ends with a [`ResetOutcome`]: per node the keys
//! deleted (a dry run: that would be), those left alone and why, how far an unfinished walk
//! got, or the [`NodeError`] that stopped the node.
//!
//! Invariants:
//! - **Only lock keys are deleted.** A key is a candidate only when the layout built it
//!   ([`KeyLayout::recognise`]) for a role a reset deletes ([`KeyRole::is_reset`]: never the
//!   fencing counter, so fences stay monotonic), and it is deleted only when it holds what the
//!   protocol writes there ([`KeyRole::fits`]). The delete compares with the value just read,
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
    /// Its value changed between the check and the delete.
    Changed,
    /// Its type changed between the check and the delete.
    ChangedType,
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
            LeftAlone::Changed => f.write_str("it changed after it was checked"),
            LeftAlone::ChangedType => f.write_str("it changed type after it was checked"),
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
    /// Resets `lock` on each of `servers` (1 to [`crate::MAX_NODES`]): its lock key and its
    /// re-entry count, each node within the lock's request timeout. `dry_run`: reads only.
    pub fn by_name(
        lock: &Lock,
        servers: &[ServerInfo],
        dry_run: bool,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        check_nodes(servers.len())?;
        let keys = lock.keys();
        let name = keys.name();
        let pending: VecDeque<Candidate> = [
            (KeyRole::Lock, keys.lock().concat()),
            (KeyRole::Holds, keys.holds().concat()),
        ]
        .into_iter()
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
                let ask = command(&[b"TYPE", &candidate.key]);
                self.asked = Asked::Type(candidate);
                return Some(Step::Send(ask));
            }
            other => return Some(Step::Fail(failure(other))),
        };
        if !candidate.role.fits(&value) {
            let why = match candidate.role {
                KeyRole::Lock => LeftAlone::NotAToken,
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

    /// The release script, as the holder of `value` would run it: compare-and-delete.
    fn delete(&self, candidate: &Candidate, value: &[u8]) -> Vec<u8> {
        let keys = Keys::new(self.layout.clone(), candidate.name.clone());
        let (holds, signal) = (keys.holds().concat(), keys.signal().concat());
        let key = candidate.key.as_slice();
        // The release script's KEYS are lock, holds, signal; for the re-entry count itself the
        // same key stands in for all three (it is deleted, never decremented: not reentrant),
        // and no signal is pushed.
        let (keys, signal_ms): ([&[u8]; 3], &[u8]) = match candidate.role {
            KeyRole::Lock => ([key, &holds, &signal], &self.signal_ms),
            _ => ([key, key, key], b"0"),
        };
        command(&[
            b"EVAL",
            script::RELEASE.source.as_bytes(),
            b"3",
            keys[0],
            keys[1],
            keys[2],
            value,
            b"0",
            signal_ms,
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
