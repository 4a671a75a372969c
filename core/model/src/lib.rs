//! # distlock-model
//!
//! A model Redis node: an in-memory, single-threaded server with the semantics the lock
//! protocol relies on, for tests, the deterministic simulator and single-process users (the
//! host's embedded in-process store). It is a server, not protocol, so it lives beside the
//! protocol crate (`distlock-core`) rather than in it: the core ships without it.
//!
//! Like the core it does no I/O and reads no clock: every call takes `now`, the
//! node's own clock in milliseconds, and keys expire against it. The same inputs give the same
//! outputs, byte for byte.
//!
//! ## What it models
//! - Strings, lists and sorted sets (integer scores; fair mode's queue) in one keyspace (a server configured with `databases 1`: `SELECT 0`
//!   works, any other index is out of range), with millisecond TTLs checked lazily as Redis
//!   does (a key with expiry `e` is alive while `now <= e`).
//! - The commands the core sends: `SET` (`NX`, `XX`, `IFEQ`, `GET`, `PX`, `EX`, `KEEPTTL`),
//!   `GET`, `PTTL`, `DEL`, `DELIFEQ`, `DELEX … IFEQ|IFNE`, `INCR`, `DECR`, `LPUSH`, `LTRIM`,
//!   `PEXPIRE` (`NX`, `XX`, `GT`, `LT`), `BLPOP`, `EVAL`, `EVALSHA`, `SCRIPT FLUSH|LOAD|EXISTS`,
//!   `HELLO`, `AUTH`, `CLIENT SETNAME`, `INFO`, `SELECT`, `PING`, `QUIT`, and for `status`
//!   `ZCARD`, `TYPE`, `ZSCAN` (the whole set in one page) and `HGET`. Anything else is
//!   `-ERR unknown command`.
//! - Scripts: the model has no Lua. It recognises the core's scripts
//!   ([`distlock_core::SCRIPTS`]) by SHA-1 (`EVALSHA`, case-insensitive) or by their exact source
//!   (`EVAL`, which also caches the script as Redis does) and runs a faithful Rust
//!   re-implementation of each, atomically. Like Redis, a script that fails half-way keeps the
//!   writes it made before the failing call (there is no rollback). An unknown SHA is
//!   `NOSCRIPT`; an unknown source is `-ERR unknown command`.
//! - The server's flavour and version ([`ModelConfig`]), reported by `HELLO` and `INFO` and
//!   deciding which commands exist: `HELLO` (Redis ≥ 6, Valkey), `SET … IFEQ` (Valkey ≥ 8.1,
//!   Redis ≥ 8.4), `SET … GET` (Redis ≥ 6.2, Valkey; beside `NX` Redis ≥ 7.0: 6.2 answers
//!   `ERR syntax error`), `DELIFEQ` (Valkey ≥ 9.0), `DELEX` (Redis ≥ 8.4), fractional `BLPOP`
//!   timeouts (Redis ≥ 6, Valkey). So both the script paths and the native paths of the core
//!   can be exercised.
//! - Scripting ([`ModelConfig::scripting`]): allowed, absent (`EVAL`, `EVALSHA`, `SCRIPT`
//!   answer `-ERR unknown command`) or forbidden by an ACL (`-NOPERM`), for the core's
//!   scriptless mode and its errors where scripts are refused.
//! - Faults a test can switch on: [`ModelNode::flush_scripts`] (`NOSCRIPT` afterwards),
//!   [`ModelNode::restart`] (volatile keys lost; keys without a TTL — the fencing counters —
//!   kept or lost, as with and without AOF), [`ModelNode::set_loading`] (`-LOADING` for
//!   everything but the connection commands), [`ModelNode::set_readonly`] (`-READONLY` for
//!   writes, also inside scripts, as on a replica), and [`ModelFaults`], a deliberately broken
//!   server for showing that a checker notices.
//!
//! ## Shape
//! - [`ModelNode::execute`] runs one command (its arguments) and gives back the RESP reply,
//!   or [`Exec::Block`] when a `BLPOP` has to wait; [`ModelNode::retry_pop`] tries that pop
//!   again later (after another command pushed, or at its timeout).
//! - [`ModelConnection`] is one client connection: it reassembles requests from arbitrary
//!   read boundaries (RESP arrays of bulk strings, pipelined, or inline commands), remembers
//!   the protocol `HELLO` chose and a blocked `BLPOP`. [`ModelNode::serve`] runs everything a
//!   connection has buffered and appends the replies, stopping at a blocked pop as Redis
//!   does.
//!
//! ```
//! use distlock_model::{ModelConnection, ModelNode};
//! use distlock_core::Instant;
//!
//! let mut node = ModelNode::new();
//! let mut conn = ModelConnection::new();
//! let mut replies = Vec::new();
//! // `SET k v NX PX 100`, then a second `SET NX` and a `GET`, pipelined and split anywhere.
//! conn.receive(b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nPX\r\n$3\r\n10");
//! node.serve(&mut conn, Instant::from_millis(0), &mut replies);
//! assert!(replies.is_empty(), "nothing complete yet");
//! conn.receive(b"0\r\n*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n$2\r\nNX\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
//! node.serve(&mut conn, Instant::from_millis(5), &mut replies);
//! assert_eq!(replies, b"+OK\r\n$-1\r\n$1\r\nv\r\n");
//! // The SET ran when it was complete, at 5 ms: the key lives until 105 ms on the node's
//! // clock (the time handed in), inclusive.
//! assert_eq!(node.value(b"k", Instant::from_millis(105)), Some(&b"v"[..]));
//! assert_eq!(node.value(b"k", Instant::from_millis(106)), None);
//! ```
//!
//! Invariants: no input panics the model (requests are parsed by a bounded scanner, every
//! argument is checked); every command either replies exactly once or blocks (a blocked pop
//! replies exactly once later); a key is never visible after its expiry.
//!
//! Not modelled: other data types, replication, eviction, `MULTI`, ACL users (the only user is
//! `default`, with no password), keyspace notifications, and Lua beyond the lock scripts. Sorted
//! sets are reached only through the fair scripts (no `Z*` command of their own).

#![no_std]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::ToString;
use alloc::vec::Vec;

use distlock_core::{Duration, Instant};
use distlock_core::{Flavor, Version};
use distlock_core::{Protocol, SCRIPTS, Script};

mod compute;
mod multi;
mod reset;
mod rwlock;
mod semaphore;

/// Which server the model claims to be; decides the commands it has (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    /// Redis, Valkey, or another Redis-protocol server ([`Flavor::Unknown`], which reports
    /// itself as `distlock-model` and has the commands of a Redis of the same version).
    pub flavor: Flavor,
    /// The version reported.
    pub version: Version,
    /// Whether `EVAL`, `EVALSHA` and `SCRIPT` run (a managed service may forbid them).
    pub scripting: Scripting,
}

/// Whether the model runs scripts, and how it refuses them when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scripting {
    /// `EVAL`, `EVALSHA` and `SCRIPT` work.
    #[default]
    Allowed,
    /// They are not there: `-ERR unknown command` (a service that renamed them away).
    Absent,
    /// An ACL forbids them: `-NOPERM`, as Redis answers a user without `+@scripting`.
    Forbidden,
}

impl Default for ModelConfig {
    /// Redis 7.2.4: `HELLO` and RESP3, no native compare commands.
    fn default() -> Self {
        ModelConfig::redis(7, 2, 4)
    }
}

impl ModelConfig {
    /// A Redis of this version.
    #[must_use]
    pub const fn redis(major: u16, minor: u16, patch: u16) -> Self {
        ModelConfig {
            flavor: Flavor::Redis,
            version: Version::new(major, minor, patch),
            scripting: Scripting::Allowed,
        }
    }

    /// A Valkey of this version.
    #[must_use]
    pub const fn valkey(major: u16, minor: u16, patch: u16) -> Self {
        ModelConfig {
            flavor: Flavor::Valkey,
            version: Version::new(major, minor, patch),
            scripting: Scripting::Allowed,
        }
    }

    /// The same server, with scripting as given.
    #[must_use]
    pub const fn with_scripting(self, scripting: Scripting) -> Self {
        ModelConfig { scripting, ..self }
    }

    fn at_least(&self, major: u16, minor: u16) -> bool {
        self.version >= Version::new(major, minor, 0)
    }

    fn has_hello(&self) -> bool {
        self.flavor == Flavor::Valkey || self.at_least(6, 0)
    }

    fn has_set_get(&self) -> bool {
        self.flavor == Flavor::Valkey || self.at_least(6, 2)
    }

    fn has_set_nx_get(&self) -> bool {
        self.flavor == Flavor::Valkey || self.at_least(7, 0)
    }

    fn has_set_ifeq(&self) -> bool {
        match self.flavor {
            Flavor::Valkey => self.at_least(8, 1),
            Flavor::Redis => self.at_least(8, 4),
            _ => false,
        }
    }

    fn has_delifeq(&self) -> bool {
        self.flavor == Flavor::Valkey && self.at_least(9, 0)
    }

    fn has_delex(&self) -> bool {
        self.flavor == Flavor::Redis && self.at_least(8, 4)
    }

    fn has_fractional_timeouts(&self) -> bool {
        self.flavor == Flavor::Valkey || self.at_least(6, 0)
    }
}

/// A deliberately broken server, for showing that a checker notices. All off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ModelFaults {
    /// The release script, `DELIFEQ` and `DELEX … IFEQ` delete the lock whatever token holds
    /// it: a server whose compare-and-delete lost its compare.
    pub release_ignores_token: bool,
    /// The extend script and `SET … IFEQ` prolong the lock whatever token holds it.
    pub extend_ignores_token: bool,
    /// The fair release hands the lock to the queue's head whether or not it is live, and
    /// for good (no expiry): a hand-off without liveness.
    pub handoff_ignores_liveness: bool,
    /// The fair release wakes the queue's head without setting the lock to its token: a
    /// wake-up before the hand-off.
    pub wake_before_handoff: bool,
    /// The semaphore acquire counts every holder in its set, dead ones too (no pruning): a
    /// crashed holder's permit is never reclaimed.
    pub semaphore_counts_dead_holders: bool,
    /// The semaphore acquire takes a permit whatever the count: no limit at all.
    pub semaphore_ignores_limit: bool,
    /// The fair semaphore acquire takes a free permit whatever the queue holds: a newcomer
    /// barges past live waiters.
    pub semaphore_fair_ignores_queue: bool,
    /// The fair semaphore release hands a permit to the queue's head whether or not it is
    /// live, and for good (no expiry): a hand-off without liveness.
    pub semaphore_handoff_ignores_liveness: bool,
    /// Get-or-compute's get-or-lock takes the computation's lock whatever holds it: no
    /// exclusion between computers.
    pub compute_lock_ignores_holder: bool,
    /// Get-or-compute's get-or-lock reads the value from the lock key (the keys mixed up):
    /// a waiter is handed the computer's token as if it were the value.
    pub compute_value_from_lock_key: bool,
    /// The read-write write acquire takes the lock while readers hold it: no exclusion.
    pub rw_write_ignores_readers: bool,
    /// The read-write read acquire ignores waiting writers: no writer preference.
    pub rw_read_ignores_waiting_writers: bool,
    /// The read-write write acquire counts every reader in the set, dead ones too (no
    /// pruning): a crashed reader's hold never ends.
    pub rw_write_counts_dead_readers: bool,
    /// The multi-name acquire takes the names one by one and stops at the first held one,
    /// keeping those it took: partial holds.
    pub multi_takes_names_one_by_one: bool,
    /// `SET … NX … GET` on a key of another type (a semaphore's set, a read-write lock's
    /// marker) answers nil, as if the key were free, instead of `WRONGTYPE`: a mutex told it
    /// holds a name another kind of lock holds.
    pub set_nx_get_ignores_type: bool,
    /// The multi-name acquire asks whether each name `EXISTS` instead of its `TYPE`: a name of
    /// another kind of lock is reported held (waited on) instead of refused with `WRONGTYPE`.
    pub multi_checks_exists_not_type: bool,
    /// The read-write scripts keep their waiting writers in fair mode's queue and liveness
    /// keys (`:queue`, `:alive:`) and wake them on the mutex's wake-up list (`:signal`), as
    /// distlock did before each kind had waiter keys of its own: a writer's intent sorts
    /// ahead of a fair mutex's waiters, and a fair release can hand the name to a writer.
    pub rw_writers_share_fair_queue: bool,
    /// The fair semaphore scripts keep their waiters in a fair mutex's queue, liveness keys
    /// and wake-up lists (`:queue`, `:alive:`, `:wake:`), as distlock did before each kind had
    /// waiter keys of its own: a fair semaphore's release can hand a permit to a fair mutex's
    /// waiter, and a fair mutex's release the name to a semaphore's waiter.
    pub semaphore_waiters_share_fair_queue: bool,
    /// A plain semaphore's release pushes, and its waiters' `BLPOP` blocks on, the mutex's
    /// wake-up list (`:signal`) instead of the semaphore's own (`:permit-signal`), as distlock
    /// did before: a mutex waiter of the name can take the wake-up a permit's release meant
    /// for a semaphore waiter, and a semaphore waiter a mutex release's.
    pub semaphore_signal_shared_with_mutex: bool,
    /// The release script pushes the wake-up only when told to push always, never looking at
    /// the waiting mark: a release that skips the push a marked waiter needs.
    pub release_ignores_waiting_mark: bool,
    /// A plain mutex waiter's mark (`SET <prefix>{N}:waiting 1 PX …`) is answered `OK` and
    /// not stored, as if the waiter had not marked before its attempt: its first wait (and
    /// every later one) is unmarked, so a release in it pushes nothing.
    pub waiting_mark_lost: bool,
}

/// What [`ModelNode::execute`] did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exec {
    /// The command ran; its reply, RESP-encoded in the caller's protocol.
    Reply(Vec<u8>),
    /// A `BLPOP` found every list empty and must wait: call [`ModelNode::retry_pop`] with
    /// these keys after something was pushed, and at `until` (`None`: no timeout), until it
    /// gives a reply.
    Block {
        /// The lists it waits on, in the order given.
        keys: Vec<Vec<u8>>,
        /// When it times out, on the node's clock.
        until: Option<Instant>,
    },
}

/// When an observer of [`ModelNode::serve_observed`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Just before a command runs.
    Before,
    /// Just after it ran (or blocked).
    After,
}

/// A value in the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    /// Members by ascending (score, member), as Redis orders a sorted set.
    ZSet(Members),
    /// Fields and values, as `HSET` sets them: a read-write lock's marker.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Value,
    /// The last instant the key is alive at (Redis: expired when `now > expires_at`).
    expires_at: Option<Instant>,
}

impl Entry {
    fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| now <= e)
    }
}

/// One of the core's scripts, as the model recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Acquire,
    Release,
    Extend,
    RaiseFence,
    FairAcquire,
    FairRelease,
    SemaphoreAcquire,
    SemaphoreRelease,
    SemaphoreExtend,
    RwAcquire,
    RwRelease,
    RwExtend,
    MultiAcquire,
    MultiRelease,
    MultiExtend,
    MultiRaiseFence,
    SemaphoreFairAcquire,
    SemaphoreFairRelease,
    GetOrLock,
    FinishCompute,
}

/// The core's scripts in its order (`every_known_script_is_the_core_script_of_its_name`
/// checks the names line up).
static KNOWN: [(Known, Script); 20] = [
    (Known::Acquire, SCRIPTS[0]),
    (Known::Release, SCRIPTS[1]),
    (Known::Extend, SCRIPTS[2]),
    (Known::RaiseFence, SCRIPTS[3]),
    (Known::FairAcquire, SCRIPTS[4]),
    (Known::FairRelease, SCRIPTS[5]),
    (Known::SemaphoreAcquire, SCRIPTS[6]),
    (Known::SemaphoreRelease, SCRIPTS[7]),
    (Known::SemaphoreExtend, SCRIPTS[8]),
    (Known::RwAcquire, SCRIPTS[9]),
    (Known::RwRelease, SCRIPTS[10]),
    (Known::RwExtend, SCRIPTS[11]),
    (Known::MultiAcquire, SCRIPTS[12]),
    (Known::MultiRelease, SCRIPTS[13]),
    (Known::MultiExtend, SCRIPTS[14]),
    (Known::MultiRaiseFence, SCRIPTS[15]),
    (Known::SemaphoreFairAcquire, SCRIPTS[16]),
    (Known::SemaphoreFairRelease, SCRIPTS[17]),
    (Known::GetOrLock, SCRIPTS[18]),
    (Known::FinishCompute, SCRIPTS[19]),
];

/// `n` in decimal, written to the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

impl Known {
    fn index(self) -> usize {
        match self {
            Known::Acquire => 0,
            Known::Release => 1,
            Known::Extend => 2,
            Known::RaiseFence => 3,
            Known::FairAcquire => 4,
            Known::FairRelease => 5,
            Known::SemaphoreAcquire => 6,
            Known::SemaphoreRelease => 7,
            Known::SemaphoreExtend => 8,
            Known::RwAcquire => 9,
            Known::RwRelease => 10,
            Known::RwExtend => 11,
            Known::MultiAcquire => 12,
            Known::MultiRelease => 13,
            Known::MultiExtend => 14,
            Known::MultiRaiseFence => 15,
            Known::SemaphoreFairAcquire => 16,
            Known::SemaphoreFairRelease => 17,
            Known::GetOrLock => 18,
            Known::FinishCompute => 19,
        }
    }

    fn sha(self) -> &'static [u8; 40] {
        match KNOWN.get(self.index()) {
            Some((_, s)) => &s.sha,
            None => &KNOWN[0].1.sha,
        }
    }

    fn by_sha(sha: &[u8]) -> Option<Known> {
        KNOWN
            .iter()
            .find(|(_, s)| s.sha.eq_ignore_ascii_case(sha))
            .map(|(k, _)| *k)
    }

    fn by_source(source: &[u8]) -> Option<Known> {
        KNOWN
            .iter()
            .find(|(_, s)| s.source.as_bytes() == source)
            .map(|(k, _)| *k)
    }
}

/// An error reply: the message without the leading `-` (its first word is the error code).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fail(Vec<u8>);

/// In place of a script line: the error is one the script returned with
/// `redis.error_reply`, which the server passes on without a location.
const SCRIPT_REPLY: u64 = 0;

impl Fail {
    fn new(message: &[u8]) -> Self {
        Fail(message.to_vec())
    }

    /// The error as `ACQUIRE` returns it through `redis.pcall` and `redis.error_reply`: the
    /// role of the key after the first word (`WRONGTYPE fence key: Operation …`).
    fn about(self, role: &str) -> Self {
        let Fail(message) = self;
        let Some(space) = message.iter().position(|&b| b == b' ') else {
            return Fail(message);
        };
        let (word, rest) = message.split_at(space);
        let mut out = word.to_vec();
        out.push(b' ');
        out.extend_from_slice(role.as_bytes());
        out.extend_from_slice(b" key:");
        out.extend_from_slice(rest);
        Fail(out)
    }

    fn wrong_type() -> Self {
        Fail::new(b"WRONGTYPE Operation against a key holding the wrong kind of value")
    }

    fn not_integer() -> Self {
        Fail::new(b"ERR value is not an integer or out of range")
    }

    fn syntax() -> Self {
        Fail::new(b"ERR syntax error")
    }

    fn readonly() -> Self {
        Fail::new(b"READONLY You can't write against a read only replica.")
    }

    fn arity(name: &[u8]) -> Self {
        let mut m = b"ERR wrong number of arguments for '".to_vec();
        push_sanitised(&mut m, &name.to_ascii_lowercase());
        m.extend_from_slice(b"' command");
        Fail(m)
    }
}

type Res<T> = Result<T, Fail>;

/// The model server: a keyspace, a script cache, the reported server, and fault switches.
#[derive(Debug, Clone, Default)]
pub struct ModelNode {
    config: ModelConfig,
    faults: ModelFaults,
    keys: BTreeMap<Vec<u8>, Entry>,
    // One flag per script of `SCRIPTS`, by `Known::index` (sized from it so a new script is
    // never left out of the cache).
    scripts: [bool; SCRIPTS.len()],
    loading: bool,
    readonly: bool,
    next_id: u64,
}

impl ModelNode {
    /// An empty Redis 7.2.4 ([`ModelConfig::default`]).
    #[must_use]
    pub fn new() -> Self {
        ModelNode::default()
    }

    /// An empty node that reports itself as `config`.
    #[must_use]
    pub fn with_config(config: ModelConfig) -> Self {
        ModelNode {
            config,
            ..ModelNode::default()
        }
    }

    /// What the node reports itself as.
    #[must_use]
    pub fn config(&self) -> ModelConfig {
        self.config
    }

    /// Breaks the node on purpose (see [`ModelFaults`]).
    pub fn set_faults(&mut self, faults: ModelFaults) {
        self.faults = faults;
    }

    /// The faults switched on.
    #[must_use]
    pub fn faults(&self) -> ModelFaults {
        self.faults
    }

    /// `SCRIPT FLUSH`: every script must be sent by `EVAL` (or loaded) again.
    pub fn flush_scripts(&mut self) {
        self.scripts = [false; SCRIPTS.len()];
    }

    /// A crash and restart. Keys with a TTL are lost (what Redlock assumes of a restart);
    /// keys without one — the fencing counters — are kept when `keep_fence_counters` (a
    /// server whose persistence, AOF say, saved them) and lost otherwise. The script cache is
    /// empty afterwards and `LOADING`/`READONLY` are off. Connections do not survive a
    /// restart: the caller drops every [`ModelConnection`] of this node.
    pub fn restart(&mut self, keep_fence_counters: bool) {
        self.keys
            .retain(|_, e| keep_fence_counters && e.expires_at.is_none());
        self.flush_scripts();
        self.loading = false;
        self.readonly = false;
    }

    /// While on, every command except `HELLO`, `AUTH`, `INFO`, `SELECT`, `CLIENT` and `QUIT`
    /// replies `-LOADING` (a server loading its dataset after a restart).
    pub fn set_loading(&mut self, loading: bool) {
        self.loading = loading;
    }

    /// While on, writes reply `-READONLY`, including writes made inside a script (a replica,
    /// or a primary demoted mid-failover). `HELLO` then reports the role `replica`.
    pub fn set_readonly(&mut self, readonly: bool) {
        self.readonly = readonly;
    }

    /// The string value of `key` at `now` (`None` when absent, expired or a list).
    #[must_use]
    pub fn value(&self, key: &[u8], now: Instant) -> Option<&[u8]> {
        match self.keys.get(key) {
            Some(Entry {
                value: Value::Str(v),
                expires_at,
            }) if expires_at.is_none_or(|e| now <= e) => Some(v),
            _ => None,
        }
    }

    /// The type of `key` at `now`, as `TYPE` names it (`None` when absent or expired): which
    /// kind of lock holds a name, for checkers.
    #[must_use]
    pub fn type_of(&self, key: &[u8], now: Instant) -> Option<&'static str> {
        let entry = self.keys.get(key).filter(|e| e.alive(now))?;
        Some(match entry.value {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::ZSet(_) => "zset",
            Value::Hash(_) => "hash",
        })
    }

    /// The expiry of `key` at `now`: `None` when the key is absent or expired, `Some(None)`
    /// when it has no TTL, `Some(Some(t))` when it is alive up to and including `t`.
    #[must_use]
    pub fn expiry(&self, key: &[u8], now: Instant) -> Option<Option<Instant>> {
        self.keys
            .get(key)
            .filter(|e| e.alive(now))
            .map(|e| e.expires_at)
    }

    /// The length of the list at `key` at `now` (0 when absent, expired or not a list).
    #[must_use]
    pub fn list_len(&self, key: &[u8], now: Instant) -> usize {
        match self.keys.get(key) {
            Some(
                e @ Entry {
                    value: Value::List(l),
                    ..
                },
            ) if e.alive(now) => l.len(),
            _ => 0,
        }
    }

    /// The members of the sorted set at `key` at `now`, lowest score first (empty when
    /// absent, expired or not a sorted set): fair mode's queue, for checkers.
    #[must_use]
    pub fn sorted_set(&self, key: &[u8], now: Instant) -> Vec<Vec<u8>> {
        match self.keys.get(key) {
            Some(
                e @ Entry {
                    value: Value::ZSet(z),
                    ..
                },
            ) if e.alive(now) => z.iter().map(|(_, m)| m.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Keys alive at `now`.
    #[must_use]
    pub fn key_count(&self, now: Instant) -> usize {
        self.keys.values().filter(|e| e.alive(now)).count()
    }

    /// Drops every key expired at `now` (Redis's active expiry; the model otherwise expires
    /// lazily, so a long-running embedded store calls this now and then to bound memory).
    pub fn expire_keys(&mut self, now: Instant) {
        self.keys.retain(|_, e| e.alive(now));
    }

    /// Runs one command, given as its arguments (name first), at `now` on the node's clock,
    /// with the reply encoded for `protocol`. `HELLO` replies in the protocol it asks for; a
    /// caller that keeps the connection's protocol itself switches to it when the reply is not
    /// an error ([`ModelConnection`] does). `QUIT` replies `+OK`; closing is the caller's part.
    pub fn execute(&mut self, args: &[&[u8]], now: Instant, protocol: Protocol) -> Exec {
        let mut out = Vec::new();
        match self.execute_into(args, now, protocol, &mut out) {
            Some((keys, until)) => Exec::Block { keys, until },
            None => Exec::Reply(out),
        }
    }

    /// Tries a blocked `BLPOP` again at `now`: the reply once an element could be popped or
    /// the timeout passed (a null array), `None` while it must go on waiting. Callers with
    /// several pops blocked on one key retry them oldest first, as Redis serves them.
    pub fn retry_pop(
        &mut self,
        keys: &[Vec<u8>],
        until: Option<Instant>,
        now: Instant,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for key in keys {
            if let Some(element) = self.pop_front(key, now) {
                let mut w = Writer::new(&mut out, protocol);
                w.array(2);
                w.bulk(key);
                w.bulk(&element);
                return Some(out);
            }
        }
        if until.is_some_and(|u| now >= u) {
            Writer::new(&mut out, protocol).null_array();
            return Some(out);
        }
        None
    }

    /// Runs every complete command `conn` has buffered, appending the replies to `out`:
    /// first a blocked pop (if it can finish now), then the rest in order, stopping at the
    /// next pop that blocks. Call it when bytes arrived, after any other connection ran a
    /// command (a push may unblock this one; oldest blocked connection first), and at
    /// [`ModelConnection::blocked_until`].
    pub fn serve(&mut self, conn: &mut ModelConnection, now: Instant, out: &mut Vec<u8>) {
        self.serve_observed(conn, now, out, |_, _, _| {});
    }

    /// [`ModelNode::serve`], calling `observe` with the node's state just before and just
    /// after each command (for checkers: who changed which key).
    pub fn serve_observed(
        &mut self,
        conn: &mut ModelConnection,
        now: Instant,
        out: &mut Vec<u8>,
        mut observe: impl FnMut(Stage, &ModelNode, &[Vec<u8>]),
    ) {
        if conn.closed {
            return;
        }
        if let Some((keys, until)) = &conn.blocked {
            match self.retry_pop(keys, *until, now, conn.protocol) {
                Some(reply) => {
                    out.extend_from_slice(&reply);
                    conn.blocked = None;
                }
                None => return,
            }
        }
        while let Some(next) = conn.next_command() {
            let args = match next {
                Ok(args) => args,
                Err(error) => {
                    out.extend_from_slice(b"-ERR Protocol error: ");
                    out.extend_from_slice(error.message().as_bytes());
                    out.extend_from_slice(b"\r\n");
                    conn.close();
                    return;
                }
            };
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            observe(Stage::Before, self, &args);
            let start = out.len();
            let blocked = self.execute_into(&refs, now, conn.protocol, out);
            observe(Stage::After, self, &args);
            if let Some(blocked) = blocked {
                conn.blocked = Some(blocked);
                return;
            }
            let ok = out.get(start) != Some(&b'-');
            let name = refs.first().copied().unwrap_or_default();
            if ok && name.eq_ignore_ascii_case(b"HELLO") {
                if let Some(protocol) = hello_protocol(&refs) {
                    conn.protocol = protocol;
                }
            } else if name.eq_ignore_ascii_case(b"QUIT") {
                conn.close();
                return;
            }
        }
    }

    // ---- dispatch ----

    /// Runs one command, writing its reply to `out`; `Some` when it blocks.
    fn execute_into(
        &mut self,
        args: &[&[u8]],
        now: Instant,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) -> Option<(Vec<Vec<u8>>, Option<Instant>)> {
        let (&name, rest) = args.split_first()?;
        let result = self.dispatch(name, rest, now, protocol, out);
        match result {
            Ok(Done::Written) => None,
            Ok(Done::Block(keys, until)) => Some((keys, until)),
            Err(Fail(message)) => {
                out.push(b'-');
                push_sanitised(out, &message);
                out.extend_from_slice(b"\r\n");
                None
            }
        }
    }

    fn dispatch(
        &mut self,
        name: &[u8],
        args: &[&[u8]],
        now: Instant,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) -> Res<Done> {
        let command = Command::parse(name, &self.config).ok_or_else(|| unknown(name, args))?;
        if matches!(command, Command::Eval | Command::EvalSha | Command::Script) {
            match self.config.scripting {
                Scripting::Allowed => {}
                Scripting::Absent => return Err(unknown(name, args)),
                Scripting::Forbidden => return Err(no_permission(name)),
            }
        }
        if !command.arity_ok(args.len()) {
            return Err(Fail::arity(name));
        }
        if self.readonly && command.writes() {
            return Err(Fail::readonly());
        }
        if self.loading && !command.allowed_while_loading() {
            return Err(Fail::new(b"LOADING Redis is loading the dataset in memory"));
        }
        let mut w = Writer::new(out, protocol);
        match command {
            Command::Get => match self.get_str(arg(args, 0), now)? {
                Some(v) => w.bulk(&v),
                None => w.null_bulk(),
            },
            Command::Set => return self.cmd_set(args, now, w),
            Command::Pttl => {
                let ttl = self.pttl(arg(args, 0), now);
                w.int(ttl);
            }
            Command::Hget => match self.live(arg(args, 0), now).map(|e| &e.value) {
                // `HGET key field`, what `status` confirms a read-write lock's marker with.
                None => w.null_bulk(),
                Some(Value::Hash(fields)) => {
                    match fields.iter().find(|(f, _)| f.as_slice() == arg(args, 1)) {
                        Some((_, value)) => w.bulk(value),
                        None => w.null_bulk(),
                    }
                }
                Some(_) => return Err(Fail::wrong_type()),
            },
            Command::Zcard => match self.live(arg(args, 0), now).map(|e| &e.value) {
                None => w.int(0),
                Some(Value::ZSet(members)) => w.int(as_i64(members.len())),
                Some(_) => return Err(Fail::wrong_type()),
            },
            Command::Zscan => {
                // `ZSCAN key cursor [COUNT n]`, what `status` reads a semaphore's holders
                // with: the whole set in one page (cursor 0 then), scores as strings.
                if parse_i64(arg(args, 1)).is_none() {
                    return Err(Fail::new(b"ERR invalid cursor"));
                }
                match args.get(2..) {
                    Some([]) | None => {}
                    Some([word, n]) if word.eq_ignore_ascii_case(b"COUNT") => {
                        if parse_i64(n).is_none_or(|n| n < 1) {
                            return Err(Fail::syntax());
                        }
                    }
                    Some(_) => return Err(Fail::syntax()),
                }
                let members: Vec<(i64, Vec<u8>)> =
                    match self.live(arg(args, 0), now).map(|e| &e.value) {
                        None => Vec::new(),
                        Some(Value::ZSet(members)) => members.clone(),
                        Some(_) => return Err(Fail::wrong_type()),
                    };
                w.array(2);
                w.bulk(b"0");
                w.array(members.len() * 2);
                for (score, member) in members {
                    w.bulk(&member);
                    w.bulk(score.to_string().as_bytes());
                }
            }
            Command::Type => {
                let kind: &[u8] = match self.live(arg(args, 0), now).map(|e| &e.value) {
                    None => b"none",
                    Some(Value::Str(_)) => b"string",
                    Some(Value::List(_)) => b"list",
                    Some(Value::ZSet(_)) => b"zset",
                    Some(Value::Hash(_)) => b"hash",
                };
                w.simple(kind);
            }
            Command::Del => {
                let n = args.iter().filter(|k| self.del(k, now)).count();
                w.int(as_i64(n));
            }
            Command::DelIfEq => {
                let deleted = self.del_if(arg(args, 0), arg(args, 1), true, now)?;
                w.int(i64::from(deleted));
            }
            Command::DelEx => return self.cmd_delex(args, now, w),
            Command::Incr | Command::Decr => {
                let delta = if command == Command::Incr { 1 } else { -1 };
                let n = self.incr_by(arg(args, 0), delta, now)?;
                w.int(n);
            }
            Command::Lpush => {
                let (key, values) = args.split_first().ok_or_else(|| Fail::arity(name))?;
                let mut len = 0;
                for v in values {
                    len = self.lpush(key, v, now)?;
                }
                w.int(as_i64(len));
            }
            Command::Ltrim => {
                let start = parse_i64(arg(args, 1)).ok_or_else(Fail::not_integer)?;
                let stop = parse_i64(arg(args, 2)).ok_or_else(Fail::not_integer)?;
                self.ltrim(arg(args, 0), start, stop, now)?;
                w.ok();
            }
            Command::Pexpire => return self.cmd_pexpire(args, now, w),
            Command::Blpop => return self.cmd_blpop(args, now, w),
            Command::Eval | Command::EvalSha => {
                return self.cmd_eval(command == Command::EvalSha, args, now, w);
            }
            Command::Script => return self.cmd_script(args, w),
            Command::Hello => return self.cmd_hello(args, w),
            Command::Auth => match args {
                [user, _] if user.eq_ignore_ascii_case(b"default") => w.ok(),
                [_, _] => {
                    return Err(Fail::new(
                        b"WRONGPASS invalid username-password pair or user is disabled.",
                    ));
                }
                _ => {
                    return Err(Fail::new(
                        b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                    ));
                }
            },
            Command::Client => match args {
                [sub, name] if sub.eq_ignore_ascii_case(b"SETNAME") => {
                    if name.iter().any(|&b| b <= b' ' || b >= 0x7f) {
                        return Err(Fail::new(
                            b"ERR Client names cannot contain spaces, newlines or special characters.",
                        ));
                    }
                    w.ok();
                }
                [sub, ..] => return Err(unknown_subcommand(sub, b"CLIENT")),
                [] => return Err(Fail::arity(name)),
            },
            Command::Info => {
                let text = self.info_text();
                w.verbatim(&text);
            }
            Command::Select => match parse_i64(arg(args, 0)) {
                Some(0) => w.ok(),
                Some(_) => return Err(Fail::new(b"ERR DB index is out of range")),
                None => return Err(Fail::not_integer()),
            },
            Command::Ping => match args {
                [] => w.simple(b"PONG"),
                [message] => w.bulk(message),
                _ => return Err(Fail::arity(name)),
            },
            Command::Quit => w.ok(),
        }
        Ok(Done::Written)
    }

    // ---- commands with options ----

    fn cmd_set(&mut self, args: &[&[u8]], now: Instant, mut w: Writer<'_>) -> Res<Done> {
        let (key, value) = (arg(args, 0), arg(args, 1));
        if self.faults.waiting_mark_lost && key.ends_with(b":waiting") {
            // Broken on purpose: the waiter's mark is acknowledged and dropped.
            w.ok();
            return Ok(Done::Written);
        }
        let mut condition = SetCondition::Always;
        let mut expiry = SetExpiry::Clear;
        let mut get = false;
        let mut i = 2;
        while let Some(option) = args.get(i) {
            let next = args.get(i + 1);
            let option = option.to_ascii_uppercase();
            match option.as_slice() {
                b"NX" | b"XX" if condition == SetCondition::Always => {
                    condition = if option == b"NX" {
                        SetCondition::Nx
                    } else {
                        SetCondition::Xx
                    };
                }
                b"IFEQ" if condition == SetCondition::Always && self.config.has_set_ifeq() => {
                    let expected = next.ok_or_else(Fail::syntax)?;
                    condition = SetCondition::IfEq(expected);
                    i += 1;
                }
                // `GET` came with Redis 6.2, and beside `NX` with 7.0 (6.2 refuses the pair).
                b"GET" if self.config.has_set_get() => get = true,
                b"KEEPTTL" if expiry == SetExpiry::Clear => expiry = SetExpiry::Keep,
                b"PX" | b"EX" if expiry == SetExpiry::Clear => {
                    let amount = next.ok_or_else(Fail::syntax)?;
                    let amount = parse_i64(amount).ok_or_else(Fail::not_integer)?;
                    let ms = if option == b"EX" {
                        amount.checked_mul(1000)
                    } else {
                        Some(amount)
                    };
                    let at = ms
                        .filter(|&ms| ms > 0)
                        .and_then(|ms| u64::try_from(ms).ok())
                        .and_then(|ms| now.as_millis().checked_add(ms))
                        .ok_or_else(|| Fail::new(b"ERR invalid expire time in 'set' command"))?;
                    expiry = SetExpiry::At(Instant::from_millis(at));
                    i += 1;
                }
                _ => return Err(Fail::syntax()),
            }
            i += 1;
        }
        if get && condition == SetCondition::Nx && !self.config.has_set_nx_get() {
            return Err(Fail::syntax());
        }
        let type_ignored =
            self.faults.set_nx_get_ignores_type && get && condition == SetCondition::Nx;
        let (exists, old, old_expiry) = match self.live(key, now) {
            None => (false, None, None),
            Some(Entry {
                value: Value::Str(v),
                expires_at,
            }) => (true, Some(v.clone()), *expires_at),
            Some(Entry { expires_at, .. }) => {
                if type_ignored {
                    // Broken on purpose: nil, as for a free key, and nothing set.
                    w.null_bulk();
                    return Ok(Done::Written);
                }
                if get || matches!(condition, SetCondition::IfEq(_)) {
                    return Err(Fail::wrong_type());
                }
                (true, None, *expires_at)
            }
        };
        let proceed = match condition {
            SetCondition::Always => true,
            SetCondition::Nx => !exists,
            SetCondition::Xx => exists,
            SetCondition::IfEq(expected) => {
                old.as_deref() == Some(expected) || (exists && self.faults.extend_ignores_token)
            }
        };
        if proceed {
            let expires_at = match expiry {
                SetExpiry::Clear => None,
                SetExpiry::Keep => old_expiry,
                SetExpiry::At(at) => Some(at),
            };
            self.keys.insert(
                key.to_vec(),
                Entry {
                    value: Value::Str(value.to_vec()),
                    expires_at,
                },
            );
        }
        match (get, proceed) {
            (true, _) => match old {
                Some(v) => w.bulk(&v),
                None => w.null_bulk(),
            },
            (false, true) => w.ok(),
            (false, false) => w.null_bulk(),
        }
        Ok(Done::Written)
    }

    fn cmd_delex(&mut self, args: &[&[u8]], now: Instant, mut w: Writer<'_>) -> Res<Done> {
        let key = arg(args, 0);
        let deleted = match args.get(1..) {
            Some([]) | None => self.del(key, now),
            Some([condition, value]) if condition.eq_ignore_ascii_case(b"IFEQ") => {
                self.del_if(key, value, true, now)?
            }
            Some([condition, value]) if condition.eq_ignore_ascii_case(b"IFNE") => {
                self.del_if(key, value, false, now)?
            }
            Some(_) => return Err(Fail::syntax()),
        };
        w.int(i64::from(deleted));
        Ok(Done::Written)
    }

    fn cmd_pexpire(&mut self, args: &[&[u8]], now: Instant, mut w: Writer<'_>) -> Res<Done> {
        let ms = parse_i64(arg(args, 1)).ok_or_else(Fail::not_integer)?;
        let mode = match args.get(2) {
            None => ExpireMode::Always,
            Some(m) if m.eq_ignore_ascii_case(b"NX") => ExpireMode::Nx,
            Some(m) if m.eq_ignore_ascii_case(b"XX") => ExpireMode::Xx,
            Some(m) if m.eq_ignore_ascii_case(b"GT") => ExpireMode::Gt,
            Some(m) if m.eq_ignore_ascii_case(b"LT") => ExpireMode::Lt,
            Some(_) => {
                return Err(Fail::new(b"ERR Unsupported option"));
            }
        };
        if args.len() > 3 {
            return Err(Fail::new(b"ERR Unsupported option"));
        }
        let set = self.pexpire(arg(args, 0), ms, mode, now)?;
        w.int(i64::from(set));
        Ok(Done::Written)
    }

    fn cmd_blpop(&mut self, args: &[&[u8]], now: Instant, mut w: Writer<'_>) -> Res<Done> {
        let Some((timeout, keys)) = args.split_last() else {
            return Err(Fail::arity(b"blpop"));
        };
        let ms = parse_timeout(timeout, self.config.has_fractional_timeouts())?;
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| self.wake_list(k)).collect();
        for key in &keys {
            match self.live(key, now).map(|e| &e.value) {
                Some(Value::List(_)) => {
                    if let Some(element) = self.pop_front(key, now) {
                        w.array(2);
                        w.bulk(key);
                        w.bulk(&element);
                        return Ok(Done::Written);
                    }
                }
                Some(_) => return Err(Fail::wrong_type()),
                None => {}
            }
        }
        let until = if ms == 0 {
            None
        } else {
            Some(now.saturating_add(Duration::from_millis(ms)))
        };
        Ok(Done::Block(keys, until))
    }

    /// The wake-up list a `BLPOP` or a semaphore release acts on: `key` itself, or the mutex's
    /// `:signal` for a semaphore's `:permit-signal` on a node whose semaphores share it
    /// ([`ModelFaults::semaphore_signal_shared_with_mutex`]).
    pub(crate) fn wake_list(&self, key: &[u8]) -> Vec<u8> {
        if self.faults.semaphore_signal_shared_with_mutex {
            fair_twin(key, b":permit-signal", b":signal")
        } else {
            key.to_vec()
        }
    }

    fn cmd_eval(
        &mut self,
        by_sha: bool,
        args: &[&[u8]],
        now: Instant,
        mut w: Writer<'_>,
    ) -> Res<Done> {
        let body = arg(args, 0);
        let known = if by_sha {
            match Known::by_sha(body) {
                Some(k) if self.scripts.get(k.index()) == Some(&true) => k,
                _ => return Err(Fail::new(b"NOSCRIPT No matching script. Please use EVAL.")),
            }
        } else if body == distlock_core::DELETE_QUEUE.as_bytes() {
            // `reset`'s queue delete, sent by source: delete only a sorted set.
            let key = arg(args, 2);
            match self.live(key, now).map(|e| &e.value) {
                None => w.int(0),
                Some(Value::ZSet(_)) => w.int(i64::from(self.del(key, now))),
                Some(Value::Str(_)) => w.bulk(b"string"),
                Some(Value::List(_)) => w.bulk(b"list"),
                Some(Value::Hash(_)) => w.bulk(b"hash"),
            }
            return Ok(Done::Written);
        } else if body == distlock_core::RESET_SEMAPHORE_OR_RW.as_bytes() {
            // `reset` of a semaphore's or read-write lock's name, sent by source.
            let keys = args.get(2..15).unwrap_or_default();
            let argv = args.get(15..).unwrap_or_default();
            self.reset_semaphore_or_rw(keys, argv, now, w)?;
            return Ok(Done::Written);
        } else {
            let known = Known::by_source(body).ok_or_else(unknown_script)?;
            if let Some(loaded) = self.scripts.get_mut(known.index()) {
                *loaded = true;
            }
            known
        };
        let numkeys = parse_i64(arg(args, 1)).ok_or_else(Fail::not_integer)?;
        let rest = args.get(2..).unwrap_or_default();
        let numkeys = usize::try_from(numkeys)
            .map_err(|_| Fail::new(b"ERR Number of keys can't be negative"))?;
        if numkeys > rest.len() {
            return Err(Fail::new(
                b"ERR Number of keys can't be greater than number of args",
            ));
        }
        let (keys, argv) = rest.split_at(numkeys);
        match self.run_script(known, keys, argv, now) {
            Ok(ScriptValue::Int(n)) => w.int(n),
            Ok(ScriptValue::Pair(a, b)) => {
                w.array(2);
                w.int(a);
                w.int(b);
            }
            Ok(ScriptValue::Tagged(a, bytes)) => {
                w.array(2);
                w.int(a);
                w.bulk(&bytes);
            }
            // An error the script returned itself (`redis.error_reply`): as it is.
            Err((fail, SCRIPT_REPLY)) => return Err(fail),
            Err((Fail(mut message), line)) => {
                message.extend_from_slice(b" script: ");
                message.extend_from_slice(known.sha());
                message.extend_from_slice(b", on @user_script:");
                message.extend_from_slice(decimal(line, &mut [0; 20]));
                message.push(b'.');
                return Err(Fail(message));
            }
        }
        Ok(Done::Written)
    }

    fn cmd_script(&mut self, args: &[&[u8]], mut w: Writer<'_>) -> Res<Done> {
        let sub = arg(args, 0);
        let rest = args.get(1..).unwrap_or_default();
        if sub.eq_ignore_ascii_case(b"FLUSH") {
            match rest {
                [] => {}
                [mode]
                    if mode.eq_ignore_ascii_case(b"ASYNC")
                        || mode.eq_ignore_ascii_case(b"SYNC") => {}
                _ => {
                    return Err(Fail::new(
                        b"ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                    ));
                }
            }
            self.flush_scripts();
            w.ok();
        } else if sub.eq_ignore_ascii_case(b"LOAD") {
            let [source] = rest else {
                return Err(Fail::arity(b"script|load"));
            };
            let known = Known::by_source(source).ok_or_else(unknown_script)?;
            if let Some(loaded) = self.scripts.get_mut(known.index()) {
                *loaded = true;
            }
            w.bulk(known.sha());
        } else if sub.eq_ignore_ascii_case(b"EXISTS") {
            if rest.is_empty() {
                return Err(Fail::arity(b"script|exists"));
            }
            w.array(rest.len());
            for sha in rest {
                let loaded =
                    Known::by_sha(sha).is_some_and(|k| self.scripts.get(k.index()) == Some(&true));
                w.int(i64::from(loaded));
            }
        } else {
            return Err(unknown_subcommand(sub, b"SCRIPT"));
        }
        Ok(Done::Written)
    }

    fn cmd_hello(&mut self, args: &[&[u8]], w: Writer<'_>) -> Res<Done> {
        let protocol = match args.first() {
            None => w.protocol,
            Some(v) => match parse_i64(v) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Err(Fail::new(b"NOPROTO unsupported protocol version")),
                None => {
                    return Err(Fail::new(
                        b"ERR Protocol version is not an integer or out of range",
                    ));
                }
            },
        };
        let mut i = 1;
        while let Some(option) = args.get(i) {
            if option.eq_ignore_ascii_case(b"AUTH") && args.len() > i + 2 {
                if !arg(args, i + 1).eq_ignore_ascii_case(b"default") {
                    return Err(Fail::new(
                        b"WRONGPASS invalid username-password pair or user is disabled.",
                    ));
                }
                i += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && args.len() > i + 1 {
                i += 2;
            } else {
                let mut m = b"ERR Syntax error in HELLO option '".to_vec();
                m.extend_from_slice(option);
                m.push(b'\'');
                return Err(Fail(m));
            }
        }
        self.next_id = self.next_id.saturating_add(1);
        let mut w = Writer {
            out: w.out,
            protocol,
        };
        let mut version = Vec::new();
        push_version(&mut version, self.config.version);
        w.map(7);
        w.bulk(b"server");
        w.bulk(match self.config.flavor {
            Flavor::Redis => b"redis",
            Flavor::Valkey => b"valkey",
            _ => b"distlock-model",
        });
        w.bulk(b"version");
        w.bulk(&version);
        w.bulk(b"proto");
        w.int(if protocol == Protocol::Resp3 { 3 } else { 2 });
        w.bulk(b"id");
        w.int(i64::try_from(self.next_id).unwrap_or(i64::MAX));
        w.bulk(b"mode");
        w.bulk(b"standalone");
        w.bulk(b"role");
        w.bulk(if self.readonly { b"replica" } else { b"master" });
        w.bulk(b"modules");
        w.array(0);
        Ok(Done::Written)
    }

    fn info_text(&self) -> Vec<u8> {
        let mut text = b"# Server\r\n".to_vec();
        let mut version = Vec::new();
        push_version(&mut version, self.config.version);
        match self.config.flavor {
            Flavor::Valkey => {
                // Valkey reports the Redis version it is compatible with, and its own.
                text.extend_from_slice(
                    b"redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:",
                );
                text.extend_from_slice(&version);
            }
            Flavor::Redis => {
                text.extend_from_slice(b"redis_version:");
                text.extend_from_slice(&version);
            }
            _ => {
                text.extend_from_slice(b"server_name:distlock-model\r\nredis_version:");
                text.extend_from_slice(&version);
            }
        }
        text.extend_from_slice(b"\r\nredis_mode:standalone\r\nos:distlock-model\r\n");
        text.extend_from_slice(if self.loading {
            b"loading:1\r\n"
        } else {
            b"loading:0\r\n"
        });
        text
    }

    // ---- scripts ----

    /// Runs a recognised script. Errors carry the script line of the failing call, or
    /// [`SCRIPT_REPLY`] for an error the script returns itself.
    fn run_script(
        &mut self,
        known: Known,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> Result<ScriptValue, (Fail, u64)> {
        let key = |i: usize| keys.get(i).copied();
        let argument = |i: usize| argv.get(i).copied();
        // A missing KEYS[i]/ARGV[i] is nil in Lua; passing nil to redis.call is an error.
        let nil = |line| {
            (
                Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
                line,
            )
        };
        match known {
            Known::Acquire => {
                let lock = key(0).ok_or_else(|| nil(1))?;
                let token = argument(0).ok_or_else(|| nil(1))?;
                let holder = self
                    .get_str(lock, now)
                    .map_err(|e| (e.about("lock"), SCRIPT_REPLY))?;
                let ttl = argument(1);
                let fenced = argument(2) == Some(b"1");
                let reentrant = argument(3) == Some(b"1");
                // Re-entry is by the owner's token (ARGV[5]); a fresh hold takes the attempt's.
                let owner = argument(4).unwrap_or(token);
                match holder {
                    None => {
                        let mut fence = 0;
                        if fenced {
                            let fence_key = key(1).ok_or_else(|| nil(4))?;
                            fence = self
                                .incr_by(fence_key, 1, now)
                                .map_err(|e| (e.about("fence"), SCRIPT_REPLY))?;
                        }
                        if reentrant {
                            let holds = key(2).ok_or_else(|| nil(5))?;
                            let ttl = ttl.ok_or_else(|| nil(5))?;
                            self.script_set_px(holds, b"1", ttl, now)
                                .map_err(|e| (e, 5))?;
                        }
                        let ttl = ttl.ok_or_else(|| nil(6))?;
                        self.script_set_px(lock, token, ttl, now)
                            .map_err(|e| (e, 6))?;
                        Ok(ScriptValue::Pair(1, fence))
                    }
                    Some(holder) if holder == owner && reentrant => {
                        let mut fence = 0;
                        if fenced {
                            let fence_key = key(1).ok_or_else(|| nil(11))?;
                            fence = match self
                                .get_str(fence_key, now)
                                .map_err(|e| (e.about("fence"), SCRIPT_REPLY))?
                            {
                                None => 0,
                                Some(v) => lua_tonumber(&v).unwrap_or(0),
                            };
                        }
                        let holds_key = key(2).ok_or_else(|| nil(12))?;
                        let holds = self
                            .incr_by(holds_key, 1, now)
                            .map_err(|e| (e.about("holds"), SCRIPT_REPLY))?;
                        let ttl = ttl.ok_or_else(|| nil(13))?;
                        let ms = parse_i64(ttl).ok_or_else(|| (Fail::not_integer(), 13))?;
                        self.pexpire(lock, ms, ExpireMode::Always, now)
                            .map_err(|e| (e, 13))?;
                        self.pexpire(holds_key, ms, ExpireMode::Always, now)
                            .map_err(|e| (e, 14))?;
                        Ok(ScriptValue::Pair(holds, fence))
                    }
                    Some(_) => Ok(ScriptValue::Pair(0, self.pttl(lock, now))),
                }
            }
            Known::Release => {
                let lock = key(0).ok_or_else(|| nil(1))?;
                let holder = self.get_str(lock, now).map_err(|e| (e, 1))?;
                let holds_token = holder.is_some() && holder.as_deref() == argument(0);
                let broken = self.faults.release_ignores_token && holder.is_some();
                if !holds_token && !broken {
                    return Ok(ScriptValue::Int(-1));
                }
                if argument(1) == Some(b"1") {
                    let holds = key(1).ok_or_else(|| nil(3))?;
                    let left = self.incr_by(holds, -1, now).map_err(|e| (e, 3))?;
                    if left > 0 {
                        return Ok(ScriptValue::Int(left));
                    }
                    self.write_check().map_err(|e| (e, 5))?;
                    self.del(holds, now);
                }
                self.write_check().map_err(|e| (e, 7))?;
                self.del(lock, now);
                let signal_ttl = argument(2).ok_or_else(|| nil(8))?;
                // `ARGV[4] == '1' or EXISTS KEYS[4]`, read only when the signal is on.
                let push = signal_ttl != b"0"
                    && (argument(3) == Some(b"1")
                        || (!self.faults.release_ignores_waiting_mark
                            && self.type_of(key(3).ok_or_else(|| nil(8))?, now).is_some()));
                if push {
                    let signal = key(2).ok_or_else(|| nil(9))?;
                    self.write_check().map_err(|e| (e, 9))?;
                    self.del(signal, now);
                    self.lpush(signal, b"1", now).map_err(|e| (e, 10))?;
                    let ms = parse_i64(signal_ttl).ok_or_else(|| (Fail::not_integer(), 11))?;
                    self.pexpire(signal, ms, ExpireMode::Always, now)
                        .map_err(|e| (e, 11))?;
                }
                Ok(ScriptValue::Int(0))
            }
            Known::Extend => {
                let lock = key(0).ok_or_else(|| nil(1))?;
                let holder = self.get_str(lock, now).map_err(|e| (e, 1))?;
                let holds_token = holder.is_some() && holder.as_deref() == argument(0);
                let broken = self.faults.extend_ignores_token && holder.is_some();
                if !holds_token && !broken {
                    return Ok(ScriptValue::Int(0));
                }
                let ttl = argument(1).ok_or_else(|| nil(2))?;
                let ms = parse_i64(ttl).ok_or_else(|| (Fail::not_integer(), 2))?;
                self.pexpire(lock, ms, ExpireMode::Always, now)
                    .map_err(|e| (e, 2))?;
                let holds = key(1).ok_or_else(|| nil(3))?;
                self.pexpire(holds, ms, ExpireMode::Always, now)
                    .map_err(|e| (e, 3))?;
                Ok(ScriptValue::Int(1))
            }
            Known::FairAcquire => self.fair_acquire(keys, argv, now),
            Known::FairRelease => self.fair_release(keys, argv, now),
            Known::SemaphoreAcquire => self.semaphore_acquire(keys, argv, now),
            Known::SemaphoreRelease => self.semaphore_release(keys, argv, now),
            Known::SemaphoreExtend => self.semaphore_extend(keys, argv, now),
            Known::RwAcquire => self.rw_acquire(keys, argv, now),
            Known::RwRelease => self.rw_release(keys, argv, now),
            Known::RwExtend => self.rw_extend(keys, argv, now),
            Known::MultiAcquire => self.multi_acquire(keys, argv, now),
            Known::MultiRelease => self.multi_release(keys, argv, now),
            Known::MultiExtend => self.multi_extend(keys, argv, now),
            Known::MultiRaiseFence => self.multi_raise_fence(keys, argv, now),
            Known::SemaphoreFairAcquire => self.semaphore_fair_acquire(keys, argv, now),
            Known::SemaphoreFairRelease => self.semaphore_fair_release(keys, argv, now),
            Known::GetOrLock => self.get_or_lock(keys, argv, now),
            Known::FinishCompute => self.finish_compute(keys, argv, now),
            Known::RaiseFence => {
                let fence = key(0).ok_or_else(|| nil(1))?;
                let current = match self.get_str(fence, now).map_err(|e| (e, 1))? {
                    None => Some(0),
                    Some(v) => lua_tonumber(&v),
                };
                let wanted_text = argument(0);
                let wanted = wanted_text.and_then(lua_tonumber);
                let (Some(current), Some(wanted), Some(text)) = (current, wanted, wanted_text)
                else {
                    return Err((
                        Fail::new(b"ERR user_script:3: attempt to compare nil with number"),
                        3,
                    ));
                };
                if current < wanted {
                    self.write_check().map_err(|e| (e, 4))?;
                    self.keys.insert(
                        fence.to_vec(),
                        Entry {
                            value: Value::Str(text.to_vec()),
                            expires_at: None,
                        },
                    );
                    Ok(ScriptValue::Int(wanted))
                } else {
                    Ok(ScriptValue::Int(current))
                }
            }
        }
    }

    /// [`distlock_core::script::FAIR_ACQUIRE`], call for call as its Lua does it.
    fn fair_acquire(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> Result<ScriptValue, (Fail, u64)> {
        let nil = || {
            (
                Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
                1,
            )
        };
        let [lock, fence, holds, queue, wake, alive, ..] = *keys else {
            return Err(nil());
        };
        let [me, ttl, extra, fenced, reentrant, owner, live, enqueue, ..] = *argv else {
            return Err(nil());
        };
        let keys = FairKeys {
            lock,
            fence,
            holds,
            queue,
            wake,
            alive,
        };
        let arithmetic = || {
            (
                Fail::new(b"ERR user_script:1: attempt to perform arithmetic on a nil value"),
                1,
            )
        };
        let px = lua_tonumber(ttl)
            .zip(lua_tonumber(extra))
            .map(|(t, e)| t.saturating_add(e))
            .ok_or_else(arithmetic)?;
        let (fenced, reentrant) = (fenced == b"1", reentrant == b"1");
        let holder = self.get_str(lock, now).map_err(|e| (e, 3))?;
        if reentrant && holder.as_deref() == Some(owner) {
            let fence = if fenced {
                match self.get_str(fence, now).map_err(|e| (e, 6))? {
                    None => 0,
                    Some(v) => lua_tonumber(&v).unwrap_or(0),
                }
            } else {
                0
            };
            let held = self.incr_by(holds, 1, now).map_err(|e| (e, 7))?;
            self.pexpire(lock, px, ExpireMode::Always, now)
                .map_err(|e| (e, 8))?;
            self.pexpire(holds, px, ExpireMode::Always, now)
                .map_err(|e| (e, 9))?;
            return Ok(ScriptValue::Pair(held, fence));
        }
        if holder.as_deref() == Some(me) {
            return self.fair_take(&keys, me, px, (fenced, reentrant), now);
        }
        if holder.is_none() {
            loop {
                match self.zset_first(queue, now).map_err(|e| (e, 24))? {
                    None => return self.fair_take(&keys, me, px, (fenced, reentrant), now),
                    Some(head) if head == me => {
                        return self.fair_take(&keys, me, px, (fenced, reentrant), now);
                    }
                    Some(head) => {
                        if self.live(&cat(alive, &head), now).is_some() {
                            break;
                        }
                        self.zset_rem(queue, &head, now).map_err(|e| (e, 27))?;
                    }
                }
            }
        }
        if enqueue == b"1" {
            if self
                .zset_score(queue, me, now)
                .map_err(|e| (e, 31))?
                .is_none()
            {
                let last = self.zset_last_score(queue, now).map_err(|e| (e, 32))?;
                self.zset_add(queue, last.unwrap_or(0).saturating_add(1), me, now)
                    .map_err(|e| (e, 33))?;
            }
            self.script_set_px(&cat(alive, me), b"1", live, now)
                .map_err(|e| (e, 35))?;
            let live_ms = lua_tonumber(live).ok_or_else(arithmetic)?;
            if self.pttl(queue, now) < live_ms {
                self.pexpire(queue, live_ms, ExpireMode::Always, now)
                    .map_err(|e| (e, 37))?;
            }
        }
        Ok(ScriptValue::Pair(
            0,
            if holder.is_some() {
                self.pttl(lock, now)
            } else {
                0
            },
        ))
    }

    /// The `take()` of the fair acquire script: leave the queue, fence, hold, set the lock.
    fn fair_take(
        &mut self,
        keys: &FairKeys<'_>,
        me: &[u8],
        px: i64,
        (fenced, reentrant): (bool, bool),
        now: Instant,
    ) -> Result<ScriptValue, (Fail, u64)> {
        self.zset_rem(keys.queue, me, now).map_err(|e| (e, 13))?;
        let fence = if fenced {
            self.incr_by(keys.fence, 1, now).map_err(|e| (e, 15))?
        } else {
            0
        };
        let mut digits = [0u8; 20];
        let px_text = decimal(px.unsigned_abs(), &mut digits);
        if reentrant {
            self.script_set_px(keys.holds, b"1", px_text, now)
                .map_err(|e| (e, 16))?;
        }
        self.script_set_px(keys.lock, me, px_text, now)
            .map_err(|e| (e, 17))?;
        self.del(&cat(keys.wake, me), now);
        self.del(&cat(keys.alive, me), now);
        Ok(ScriptValue::Pair(1, fence))
    }

    /// [`distlock_core::script::FAIR_RELEASE`], call for call as its Lua does it (and broken
    /// as [`ModelFaults`] asks).
    fn fair_release(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> Result<ScriptValue, (Fail, u64)> {
        let nil = || {
            (
                Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
                1,
            )
        };
        let [lock, holds, queue, wake, alive, ..] = *keys else {
            return Err(nil());
        };
        let [me, reentrant, cap, ..] = *argv else {
            return Err(nil());
        };
        self.zset_rem(queue, me, now).map_err(|e| (e, 2))?;
        self.write_check().map_err(|e| (e, 3))?;
        self.del(&cat(wake, me), now);
        self.del(&cat(alive, me), now);
        let holder = self.get_str(lock, now).map_err(|e| (e, 4))?;
        let broken = self.faults.release_ignores_token && holder.is_some();
        let mut free = holder.is_none();
        let mut result = -1;
        if holder.as_deref() == Some(me) || broken {
            if reentrant == b"1" {
                let left = self.incr_by(holds, -1, now).map_err(|e| (e, 8))?;
                if left > 0 {
                    return Ok(ScriptValue::Int(left));
                }
                self.del(holds, now);
            }
            self.del(lock, now);
            free = true;
            result = 0;
        }
        if free {
            let cap = lua_tonumber(cap).ok_or_else(|| {
                (
                    Fail::new(b"ERR user_script:22: bad argument #2 to 'min'"),
                    22,
                )
            })?;
            while let Some(head) = self.zset_first(queue, now).map_err(|e| (e, 18))? {
                self.zset_rem(queue, &head, now).map_err(|e| (e, 20))?;
                let liveness = self.pttl(&cat(alive, &head), now);
                let ignore_liveness = self.faults.handoff_ignores_liveness;
                if liveness <= 0 && !ignore_liveness {
                    continue;
                }
                let lease = if liveness > 0 { liveness.min(cap) } else { cap };
                if !self.faults.wake_before_handoff {
                    if ignore_liveness {
                        // Broken on purpose: the hand-off never expires.
                        self.keys.insert(
                            lock.to_vec(),
                            Entry {
                                value: Value::Str(head.clone()),
                                expires_at: None,
                            },
                        );
                    } else {
                        let mut digits = [0u8; 20];
                        let text = decimal(lease.unsigned_abs(), &mut digits);
                        self.script_set_px(lock, &head, text, now)
                            .map_err(|e| (e, 24))?;
                    }
                }
                let wake_key = cat(wake, &head);
                self.del(&cat(alive, &head), now);
                self.del(&wake_key, now);
                self.lpush(&wake_key, b"1", now).map_err(|e| (e, 26))?;
                self.pexpire(&wake_key, lease, ExpireMode::Always, now)
                    .map_err(|e| (e, 27))?;
                break;
            }
        }
        Ok(ScriptValue::Int(result))
    }

    // ---- sorted sets (fair mode's queue), reached only from the fair scripts ----

    fn zset(&mut self, key: &[u8], now: Instant) -> Res<Option<&mut Members>> {
        match self.live(key, now).map(|e| &mut e.value) {
            None => Ok(None),
            Some(Value::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(Fail::wrong_type()),
        }
    }

    /// `ZRANGE key 0 0`.
    fn zset_first(&mut self, key: &[u8], now: Instant) -> Res<Option<Vec<u8>>> {
        Ok(self
            .zset(key, now)?
            .and_then(|z| z.first().map(|(_, m)| m.clone())))
    }

    /// The score of `ZRANGE key -1 -1 WITHSCORES`.
    fn zset_last_score(&mut self, key: &[u8], now: Instant) -> Res<Option<i64>> {
        Ok(self.zset(key, now)?.and_then(|z| z.last().map(|(s, _)| *s)))
    }

    /// `ZSCORE key member`.
    fn zset_score(&mut self, key: &[u8], member: &[u8], now: Instant) -> Res<Option<i64>> {
        Ok(self.zset(key, now)?.and_then(|z| {
            z.iter()
                .find(|(_, m)| m.as_slice() == member)
                .map(|(s, _)| *s)
        }))
    }

    /// `ZADD key score member` (a new set has no expiry).
    fn zset_add(&mut self, key: &[u8], score: i64, member: &[u8], now: Instant) -> Res<()> {
        self.write_check()?;
        let entry = (score, member.to_vec());
        match self.zset(key, now)? {
            Some(z) => {
                z.retain(|(_, m)| m.as_slice() != member);
                let at = z.partition_point(|e| *e < entry);
                z.insert(at, entry);
            }
            None => {
                self.keys.insert(
                    key.to_vec(),
                    Entry {
                        value: Value::ZSet(alloc::vec![entry]),
                        expires_at: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// `ZREM key member` (an emptied set is deleted, as Redis does).
    fn zset_rem(&mut self, key: &[u8], member: &[u8], now: Instant) -> Res<()> {
        self.write_check()?;
        let Some(z) = self.zset(key, now)? else {
            return Ok(());
        };
        z.retain(|(_, m)| m.as_slice() != member);
        if z.is_empty() {
            self.keys.remove(key);
        }
        Ok(())
    }

    /// `redis.call('SET', key, value, 'PX', ttl)` inside a script.
    fn script_set_px(&mut self, key: &[u8], value: &[u8], ttl: &[u8], now: Instant) -> Res<()> {
        self.write_check()?;
        let ms = parse_i64(ttl).ok_or_else(Fail::not_integer)?;
        let at = u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .and_then(|ms| now.as_millis().checked_add(ms))
            .ok_or_else(|| Fail::new(b"ERR invalid expire time in 'set' command"))?;
        self.keys.insert(
            key.to_vec(),
            Entry {
                value: Value::Str(value.to_vec()),
                expires_at: Some(Instant::from_millis(at)),
            },
        );
        Ok(())
    }

    /// `redis.call('SET', key, value)` inside a script, after its `write_check`: a string
    /// without expiry (a fencing counter).
    fn set_forever(&mut self, key: &[u8], value: &[u8]) {
        self.keys.insert(
            key.to_vec(),
            Entry {
                value: Value::Str(value.to_vec()),
                expires_at: None,
            },
        );
    }

    // ---- keyspace primitives (each checks types; writes check READONLY) ----

    fn write_check(&self) -> Res<()> {
        if self.readonly {
            Err(Fail::readonly())
        } else {
            Ok(())
        }
    }

    /// The live entry at `key`, dropping it first when it expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        if self.keys.get(key).is_some_and(|e| !e.alive(now)) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn get_str(&mut self, key: &[u8], now: Instant) -> Res<Option<Vec<u8>>> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(v)) => Ok(Some(v.clone())),
            Some(_) => Err(Fail::wrong_type()),
        }
    }

    fn pttl(&mut self, key: &[u8], now: Instant) -> i64 {
        match self.live(key, now) {
            None => -2,
            Some(Entry {
                expires_at: None, ..
            }) => -1,
            Some(Entry {
                expires_at: Some(e),
                ..
            }) => i64::try_from(e.saturating_since(now).as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn del(&mut self, key: &[u8], now: Instant) -> bool {
        self.live(key, now).is_some() && self.keys.remove(key).is_some()
    }

    /// Deletes `key` when its string value is (`equal`) or is not (`!equal`) `value`.
    fn del_if(&mut self, key: &[u8], value: &[u8], equal: bool, now: Instant) -> Res<bool> {
        let broken = self.faults.release_ignores_token && equal;
        let matches = match self.live(key, now).map(|e| &e.value) {
            None => return Ok(false),
            Some(Value::Str(v)) => (v.as_slice() == value) == equal || broken,
            Some(_) => return Err(Fail::wrong_type()),
        };
        if matches {
            self.keys.remove(key);
        }
        Ok(matches)
    }

    fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant) -> Res<i64> {
        self.write_check()?;
        let entry = self.live(key, now);
        let (current, expires_at) = match entry {
            None => (0, None),
            Some(Entry {
                value: Value::Str(v),
                expires_at,
            }) => (parse_i64(v).ok_or_else(Fail::not_integer)?, *expires_at),
            Some(_) => return Err(Fail::wrong_type()),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| Fail::new(b"ERR increment or decrement would overflow"))?;
        let mut digits = [0u8; 20];
        let mut text = Vec::with_capacity(21);
        if next < 0 {
            text.push(b'-');
        }
        text.extend_from_slice(decimal(next.unsigned_abs(), &mut digits));
        self.keys.insert(
            key.to_vec(),
            Entry {
                value: Value::Str(text),
                expires_at,
            },
        );
        Ok(next)
    }

    fn lpush(&mut self, key: &[u8], value: &[u8], now: Instant) -> Res<usize> {
        self.write_check()?;
        match self.live(key, now) {
            Some(Entry {
                value: Value::List(list),
                ..
            }) => {
                list.push_front(value.to_vec());
                Ok(list.len())
            }
            Some(_) => Err(Fail::wrong_type()),
            None => {
                let mut list = VecDeque::new();
                list.push_front(value.to_vec());
                self.keys.insert(
                    key.to_vec(),
                    Entry {
                        value: Value::List(list),
                        expires_at: None,
                    },
                );
                Ok(1)
            }
        }
    }

    fn ltrim(&mut self, key: &[u8], start: i64, stop: i64, now: Instant) -> Res<()> {
        let Some(entry) = self.live(key, now) else {
            return Ok(());
        };
        let Value::List(list) = &mut entry.value else {
            return Err(Fail::wrong_type());
        };
        let len = as_i64(list.len());
        let start = if start < 0 { start + len } else { start }.max(0);
        let stop = if stop < 0 { stop + len } else { stop };
        if start > stop || start >= len {
            self.keys.remove(key);
            return Ok(());
        }
        let stop = stop.min(len - 1);
        let (start, stop) = (
            usize::try_from(start).unwrap_or(0),
            usize::try_from(stop).unwrap_or(0),
        );
        list.truncate(stop + 1);
        list.drain(..start);
        Ok(())
    }

    fn pexpire(&mut self, key: &[u8], ms: i64, mode: ExpireMode, now: Instant) -> Res<bool> {
        self.write_check()?;
        let Some(entry) = self.live(key, now) else {
            return Ok(false);
        };
        // A deadline at or before now deletes the key (Redis's checkAlreadyExpired).
        let at = i128::from(now.as_millis()) + i128::from(ms);
        let current = entry.expires_at.map(|e| i128::from(e.as_millis()));
        let set = match mode {
            ExpireMode::Always => true,
            ExpireMode::Nx => current.is_none(),
            ExpireMode::Xx => current.is_some(),
            // No TTL counts as an infinite one.
            ExpireMode::Gt => current.is_some_and(|c| at > c),
            ExpireMode::Lt => current.is_none_or(|c| at < c),
        };
        if !set {
            return Ok(false);
        }
        if at <= i128::from(now.as_millis()) {
            self.keys.remove(key);
            return Ok(true);
        }
        let at = u64::try_from(at)
            .map_err(|_| Fail::new(b"ERR invalid expire time in 'pexpire' command"))?;
        entry.expires_at = Some(Instant::from_millis(at));
        Ok(true)
    }

    fn pop_front(&mut self, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        let entry = self.live(key, now)?;
        let Value::List(list) = &mut entry.value else {
            return None;
        };
        let element = list.pop_front()?;
        if list.is_empty() {
            self.keys.remove(key);
        }
        Some(element)
    }
}

/// A sorted set's (score, member) pairs, ascending.
type Members = Vec<(i64, Vec<u8>)>;

/// The keys of the fair scripts (the wake-up and liveness entries are prefixes).
struct FairKeys<'a> {
    lock: &'a [u8],
    fence: &'a [u8],
    holds: &'a [u8],
    queue: &'a [u8],
    wake: &'a [u8],
    alive: &'a [u8],
}

/// `key` with its suffix `own` (one kind's waiter key) turned into `fair` (a fair mutex's):
/// where the faults that share fair mode's queue ([`ModelFaults::rw_writers_share_fair_queue`],
/// [`ModelFaults::semaphore_waiters_share_fair_queue`]) keep another kind's waiters.
fn fair_twin(key: &[u8], own: &[u8], fair: &[u8]) -> Vec<u8> {
    key.strip_suffix(own)
        .map_or_else(|| key.to_vec(), |stem| cat(stem, fair))
}

/// `a .. b`, as the fair scripts build a waiter's key from a prefix and its token.
fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len());
    key.extend_from_slice(a);
    key.extend_from_slice(b);
    key
}

/// A script's return value.
enum ScriptValue {
    Int(i64),
    Pair(i64, i64),
    /// `{n, bytes}` (get-or-lock's value).
    Tagged(i64, Vec<u8>),
}

/// What a command did when it did not fail.
enum Done {
    Written,
    Block(Vec<Vec<u8>>, Option<Instant>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetCondition<'a> {
    Always,
    Nx,
    Xx,
    IfEq(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetExpiry {
    Clear,
    Keep,
    At(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpireMode {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// The commands the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Get,
    Set,
    Pttl,
    Del,
    DelIfEq,
    DelEx,
    Incr,
    Decr,
    Lpush,
    Ltrim,
    Pexpire,
    Blpop,
    Eval,
    EvalSha,
    Script,
    Hello,
    Auth,
    Client,
    Info,
    Select,
    Ping,
    Quit,
    Zcard,
    Zscan,
    Type,
    Hget,
}

impl Command {
    fn parse(name: &[u8], config: &ModelConfig) -> Option<Command> {
        const TABLE: [(&[u8], Command); 26] = [
            (b"GET", Command::Get),
            (b"SET", Command::Set),
            (b"PTTL", Command::Pttl),
            (b"DEL", Command::Del),
            (b"DELIFEQ", Command::DelIfEq),
            (b"DELEX", Command::DelEx),
            (b"INCR", Command::Incr),
            (b"DECR", Command::Decr),
            (b"LPUSH", Command::Lpush),
            (b"LTRIM", Command::Ltrim),
            (b"PEXPIRE", Command::Pexpire),
            (b"BLPOP", Command::Blpop),
            (b"EVAL", Command::Eval),
            (b"EVALSHA", Command::EvalSha),
            (b"SCRIPT", Command::Script),
            (b"HELLO", Command::Hello),
            (b"AUTH", Command::Auth),
            (b"CLIENT", Command::Client),
            (b"INFO", Command::Info),
            (b"SELECT", Command::Select),
            (b"PING", Command::Ping),
            (b"QUIT", Command::Quit),
            (b"ZCARD", Command::Zcard),
            (b"ZSCAN", Command::Zscan),
            (b"TYPE", Command::Type),
            (b"HGET", Command::Hget),
        ];
        let command = TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| *c)?;
        let exists = match command {
            Command::DelIfEq => config.has_delifeq(),
            Command::DelEx => config.has_delex(),
            Command::Hello => config.has_hello(),
            _ => true,
        };
        exists.then_some(command)
    }

    /// Whether `n` arguments (after the name) fit the command.
    fn arity_ok(self, n: usize) -> bool {
        match self {
            Command::Get
            | Command::Pttl
            | Command::Incr
            | Command::Decr
            | Command::Select
            | Command::Zcard
            | Command::Type => n == 1,
            Command::Hget => n == 2,
            Command::Set => n >= 2,
            Command::Del | Command::Script | Command::Client | Command::Auth => n >= 1,
            Command::DelIfEq => n == 2,
            Command::DelEx => n >= 1,
            Command::Lpush | Command::Pexpire | Command::Blpop | Command::Eval => n >= 2,
            Command::EvalSha => n >= 2,
            Command::Ltrim => n == 3,
            Command::Zscan => n == 2 || n == 4,
            Command::Hello | Command::Info | Command::Ping | Command::Quit => true,
        }
    }

    /// Refused with `READONLY` on a replica before running (scripts check each write).
    fn writes(self) -> bool {
        matches!(
            self,
            Command::Set
                | Command::Del
                | Command::DelIfEq
                | Command::DelEx
                | Command::Incr
                | Command::Decr
                | Command::Lpush
                | Command::Ltrim
                | Command::Pexpire
                | Command::Blpop
        )
    }

    fn allowed_while_loading(self) -> bool {
        matches!(
            self,
            Command::Hello
                | Command::Auth
                | Command::Client
                | Command::Info
                | Command::Select
                | Command::Quit
        )
    }
}

fn unknown(name: &[u8], args: &[&[u8]]) -> Fail {
    let mut m = b"ERR unknown command '".to_vec();
    push_sanitised(&mut m, name.get(..128).unwrap_or(name));
    m.extend_from_slice(b"', with args beginning with: ");
    for a in args.iter().take(4) {
        m.push(b'\'');
        push_sanitised(&mut m, a.get(..64).unwrap_or(a));
        m.extend_from_slice(b"' ");
    }
    Fail(m)
}

/// Redis 7's answer to a user whose ACL lacks the command.
fn no_permission(name: &[u8]) -> Fail {
    let mut m = b"NOPERM User default has no permissions to run the '".to_vec();
    let mut lower = name.get(..128).unwrap_or(name).to_vec();
    lower.make_ascii_lowercase();
    push_sanitised(&mut m, &lower);
    m.extend_from_slice(b"' command");
    Fail(m)
}

fn unknown_subcommand(sub: &[u8], command: &[u8]) -> Fail {
    let mut m = b"ERR unknown subcommand '".to_vec();
    push_sanitised(&mut m, sub.get(..128).unwrap_or(sub));
    m.extend_from_slice(b"'. Try ");
    m.extend_from_slice(command);
    m.extend_from_slice(b" HELP.");
    Fail(m)
}

fn unknown_script() -> Fail {
    Fail::new(b"ERR unknown command: the model node runs only distlock's own scripts")
}

/// Appends `bytes` with CR and LF made spaces, so an error reply stays one line.
fn push_sanitised(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(
        bytes
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn push_version(out: &mut Vec<u8>, v: Version) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(u64::from(v.major), &mut digits));
    out.push(b'.');
    out.extend_from_slice(decimal(u64::from(v.minor), &mut digits));
    out.push(b'.');
    out.extend_from_slice(decimal(u64::from(v.patch), &mut digits));
}

fn arg<'a>(args: &[&'a [u8]], i: usize) -> &'a [u8] {
    args.get(i).copied().unwrap_or_default()
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A Redis integer: optional `-`, decimal digits, no spaces, no `+`, fits `i64`.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Like Redis's string2ll: no leading zeros, and no "-0".
    if digits.first() == Some(&b'0') && (digits.len() > 1 || negative) {
        return None;
    }
    let mut n: i128 = 0;
    for &d in digits {
        n = n * 10 + i128::from(d - b'0');
    }
    if negative {
        n = -n;
    }
    i64::try_from(n).ok()
}

/// Lua's `tonumber` on what the core stores: a decimal integer (surrounding spaces allowed).
/// Values beyond 2^53 lose precision in real Lua; the model keeps them exact.
fn lua_tonumber(text: &[u8]) -> Option<i64> {
    let trimmed = text.trim_ascii();
    parse_i64(trimmed).or_else(|| {
        // Lua accepts leading zeros and a `+`; Redis's integer parser does not.
        let digits = trimmed.strip_prefix(b"+").unwrap_or(trimmed);
        let digits = match digits.iter().position(|&b| b != b'0') {
            Some(p) => digits.get(p..)?,
            None if !digits.is_empty() => b"0",
            None => return None,
        };
        parse_i64(digits)
    })
}

/// A blocking timeout in seconds (`1`, `0.25`) to milliseconds, truncating as Redis does.
fn parse_timeout(text: &[u8], fractional: bool) -> Res<u64> {
    let not_float = || {
        if fractional {
            Fail::new(b"ERR timeout is not a float or out of range")
        } else {
            Fail::new(b"ERR timeout is not an integer or out of range")
        }
    };
    if text.first() == Some(&b'-') {
        return match parse_timeout(text.get(1..).unwrap_or_default(), fractional) {
            Ok(0) => Ok(0),
            Ok(_) => Err(Fail::new(b"ERR timeout is negative")),
            Err(e) => Err(e),
        };
    }
    let (whole, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) if fractional => (
            text.get(..dot).unwrap_or_default(),
            text.get(dot + 1..).unwrap_or_default(),
        ),
        Some(_) => return Err(not_float()),
        None => (text, &b""[..]),
    };
    if (whole.is_empty() && frac.is_empty())
        || !whole.iter().chain(frac).all(u8::is_ascii_digit)
        || whole.len() > 12
    {
        return Err(not_float());
    }
    let mut ms: u64 = 0;
    for &d in whole {
        ms = ms * 10 + u64::from(d - b'0');
    }
    ms = ms.saturating_mul(1000);
    let mut scale = 100;
    for &d in frac.iter().take(3) {
        ms += u64::from(d - b'0') * scale;
        scale /= 10;
    }
    Ok(ms)
}

/// The protocol a `HELLO` asks for (`None`: it names none, the connection's stays).
fn hello_protocol(args: &[&[u8]]) -> Option<Protocol> {
    match parse_i64(args.get(1)?)? {
        2 => Some(Protocol::Resp2),
        3 => Some(Protocol::Resp3),
        _ => None,
    }
}

/// Writes RESP replies in one protocol.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    protocol: Protocol,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>, protocol: Protocol) -> Self {
        Writer { out, protocol }
    }

    fn header(&mut self, kind: u8, n: u64) {
        self.out.push(kind);
        self.out.extend_from_slice(decimal(n, &mut [0; 20]));
        self.out.extend_from_slice(b"\r\n");
    }

    fn simple(&mut self, text: &[u8]) {
        self.out.push(b'+');
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self) {
        self.simple(b"OK");
    }

    fn int(&mut self, n: i64) {
        self.out.push(b':');
        if n < 0 {
            self.out.push(b'-');
        }
        self.out
            .extend_from_slice(decimal(n.unsigned_abs(), &mut [0; 20]));
        self.out.extend_from_slice(b"\r\n");
    }

    fn bulk(&mut self, bytes: &[u8]) {
        self.header(b'$', bytes.len() as u64);
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A text reply: a bulk string in RESP2, a verbatim string in RESP3 (as `INFO` is).
    fn verbatim(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp3 => {
                self.header(b'=', text.len() as u64 + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
            _ => self.bulk(text),
        }
    }

    fn null_bulk(&mut self) {
        match self.protocol {
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
            _ => self.out.extend_from_slice(b"$-1\r\n"),
        }
    }

    fn null_array(&mut self) {
        match self.protocol {
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
            _ => self.out.extend_from_slice(b"*-1\r\n"),
        }
    }

    fn array(&mut self, n: usize) {
        self.header(b'*', n as u64);
    }

    /// A map of `n` pairs: `%n` in RESP3, a flat array of `2n` in RESP2.
    fn map(&mut self, n: usize) {
        match self.protocol {
            Protocol::Resp3 => self.header(b'%', n as u64),
            _ => self.header(b'*', 2 * n as u64),
        }
    }
}

// ---- connections ----

/// The longest inline request or multibulk header line, as in Redis.
const MAX_INLINE: usize = 64 * 1024;
/// The most arguments one request may have.
const MAX_ARGS: i64 = 1024 * 1024;
/// The longest argument.
const MAX_BULK: i64 = 512 * 1024 * 1024;

/// A request that is not RESP: the connection is closed after replying with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestError(&'static str);

impl RequestError {
    /// What was wrong, as Redis words it after `-ERR Protocol error: `.
    #[must_use]
    pub fn message(&self) -> &'static str {
        self.0
    }
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl core::error::Error for RequestError {}

/// One client connection to a [`ModelNode`]: reassembles requests from any read boundaries,
/// and keeps the protocol `HELLO` chose and a blocked `BLPOP`.
#[derive(Debug, Clone, Default)]
pub struct ModelConnection {
    input: Vec<u8>,
    protocol: Protocol,
    blocked: Option<(Vec<Vec<u8>>, Option<Instant>)>,
    closed: bool,
}

impl ModelConnection {
    /// A new connection, speaking RESP2 until a `HELLO 3`.
    #[must_use]
    pub fn new() -> Self {
        ModelConnection::default()
    }

    /// The protocol replies are encoded in.
    #[must_use]
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Bytes the client wrote; run them with [`ModelNode::serve`].
    pub fn receive(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Whether a `BLPOP` is waiting (nothing after it runs until it replies).
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// When the blocked `BLPOP` times out on the node's clock: `Some(None)` when it waits
    /// forever, `None` when nothing is blocked.
    #[must_use]
    pub fn blocked_until(&self) -> Option<Option<Instant>> {
        self.blocked.as_ref().map(|(_, until)| *until)
    }

    /// The keys the blocked `BLPOP` waits on (empty when nothing is blocked).
    #[must_use]
    pub fn blocked_keys(&self) -> &[Vec<u8>] {
        self.blocked.as_ref().map_or(&[], |(keys, _)| keys)
    }

    /// Whether the server closed the connection (a protocol error, or `QUIT`): nothing more
    /// is read from it; the client must reconnect.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes received and not yet run.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    fn close(&mut self) {
        self.closed = true;
        self.input.clear();
        self.blocked = None;
    }

    /// Takes the next complete command off the input: its arguments, name first; `None`
    /// until one is complete. Empty requests (`*0`, blank inline lines) are skipped. After an
    /// error the stream cannot be trusted: reply with it and close the connection.
    pub fn next_command(&mut self) -> Option<Result<Vec<Vec<u8>>, RequestError>> {
        if self.closed {
            return None;
        }
        loop {
            match parse_request(&self.input) {
                Ok(Some((args, used))) => {
                    self.input.drain(..used.min(self.input.len()));
                    if args.is_empty() {
                        continue;
                    }
                    return Some(Ok(args));
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The position just past the CRLF (or LF) ending the line at `from`, and the line's end.
fn line_at(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let end = from + lf;
    let line_end = if lf > 0 && rest.get(lf - 1) == Some(&b'\r') {
        end - 1
    } else {
        end
    };
    Some((line_end, end + 1))
}

/// A request's arguments and the bytes it took; `None` while incomplete.
type Parsed = Option<(Vec<Vec<u8>>, usize)>;

/// One request from the front of `buf`: `Ok(None)` while incomplete.
fn parse_request(buf: &[u8]) -> Result<Parsed, RequestError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return parse_inline(buf);
    }
    let Some((line_end, mut pos)) = line_at(buf, 1) else {
        return if buf.len() > MAX_INLINE {
            Err(RequestError("too big mbulk count string"))
        } else {
            Ok(None)
        };
    };
    let count = parse_i64(buf.get(1..line_end).unwrap_or_default())
        .filter(|&n| n <= MAX_ARGS)
        .ok_or(RequestError("invalid multibulk length"))?;
    let mut args = Vec::new();
    for _ in 0..count.max(0) {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(_) => return Err(RequestError("expected '$'")),
        }
        let Some((line_end, payload)) = line_at(buf, pos + 1) else {
            return if buf.len() - pos > MAX_INLINE {
                Err(RequestError("too big bulk count string"))
            } else {
                Ok(None)
            };
        };
        let len = parse_i64(buf.get(pos + 1..line_end).unwrap_or_default())
            .filter(|&n| (0..=MAX_BULK).contains(&n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(RequestError("invalid bulk length"))?;
        let end = payload.saturating_add(len);
        let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
            return Ok(None);
        };
        if crlf.len() < 2 {
            return Ok(None);
        }
        if crlf != b"\r\n" {
            return Err(RequestError("expected CRLF after bulk"));
        }
        args.push(buf.get(payload..end).unwrap_or_default().to_vec());
        pos = end + 2;
    }
    Ok(Some((args, pos)))
}

/// An inline command: one line, arguments split on whitespace (no quoting).
fn parse_inline(buf: &[u8]) -> Result<Parsed, RequestError> {
    let Some((line_end, next)) = line_at(buf, 0) else {
        return if buf.len() > MAX_INLINE {
            Err(RequestError("too big inline request"))
        } else {
            Ok(None)
        };
    };
    let args = buf
        .get(..line_end)
        .unwrap_or_default()
        .split(u8::is_ascii_whitespace)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Some((args, next)))
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec;

    use super::*;
    use distlock_core::{
        Acquire, Extend, KeyLayout, Lock, LockOptions, Release, Released, ServerInfo, Token,
    };
    use distlock_core::{Handshake, HandshakeOptions};
    use distlock_core::{Machine, Operation};

    /// The core's scripts by name, as the tests below use them.
    mod script {
        use super::KNOWN;
        use distlock_core::Script;
        pub(super) const ACQUIRE: Script = KNOWN[0].1;
        pub(super) const RELEASE: Script = KNOWN[1].1;
        pub(super) const EXTEND: Script = KNOWN[2].1;
        pub(super) const RAISE_FENCE: Script = KNOWN[3].1;
        pub(super) const MULTI_ACQUIRE: Script = KNOWN[12].1;
    }

    #[test]
    fn every_known_script_is_the_core_script_of_its_name() {
        let names = KNOWN.map(|(known, script)| (known, script.name));
        assert_eq!(
            names,
            [
                (Known::Acquire, "acquire"),
                (Known::Release, "release"),
                (Known::Extend, "extend"),
                (Known::RaiseFence, "raise-fence"),
                (Known::FairAcquire, "fair-acquire"),
                (Known::FairRelease, "fair-release"),
                (Known::SemaphoreAcquire, "semaphore-acquire"),
                (Known::SemaphoreRelease, "semaphore-release"),
                (Known::SemaphoreExtend, "semaphore-extend"),
                (Known::RwAcquire, "rw-acquire"),
                (Known::RwRelease, "rw-release"),
                (Known::RwExtend, "rw-extend"),
                (Known::MultiAcquire, "multi-acquire"),
                (Known::MultiRelease, "multi-release"),
                (Known::MultiExtend, "multi-extend"),
                (Known::MultiRaiseFence, "multi-raise-fence"),
                (Known::SemaphoreFairAcquire, "semaphore-fair-acquire"),
                (Known::SemaphoreFairRelease, "semaphore-fair-release"),
                (Known::GetOrLock, "get-or-lock"),
                (Known::FinishCompute, "finish-compute"),
            ]
        );
    }

    #[test]
    fn decimals_are_written_as_redis_writes_them() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1_234_567, &mut buf), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Runs one command given as words and returns the reply as text.
    fn run(node: &mut ModelNode, words: &[&str], now: u64) -> String {
        run_in(node, words, now, Protocol::Resp2)
    }

    fn run_in(node: &mut ModelNode, words: &[&str], now: u64, protocol: Protocol) -> String {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        match node.execute(&args, ms(now), protocol) {
            Exec::Reply(r) => String::from_utf8(r).unwrap(),
            Exec::Block { .. } => String::from("<blocked>"),
        }
    }

    fn sha(s: &Script) -> &str {
        core::str::from_utf8(&s.sha).unwrap()
    }

    /// What `status` and `reset` send about fair mode's queue: `ZCARD`, `TYPE`, and the
    /// queue delete, which deletes a sorted set and leaves any other type alone.
    #[test]
    fn the_queue_commands_of_status_and_reset() {
        let mut n = ModelNode::new();
        let delete = |n: &mut ModelNode, key: &str| {
            run(n, &["EVAL", distlock_core::DELETE_QUEUE, "1", key], 0)
        };
        assert_eq!(run(&mut n, &["ZCARD", "q"], 0), ":0\r\n");
        assert_eq!(run(&mut n, &["TYPE", "q"], 0), "+none\r\n");
        assert_eq!(delete(&mut n, "q"), ":0\r\n");
        n.zset_add(b"q", 1, b"w1", ms(0)).unwrap();
        n.zset_add(b"q", 2, b"w2", ms(0)).unwrap();
        assert_eq!(run(&mut n, &["ZCARD", "q"], 0), ":2\r\n");
        assert_eq!(run(&mut n, &["TYPE", "q"], 0), "+zset\r\n");
        assert_eq!(delete(&mut n, "q"), ":1\r\n");
        assert_eq!(run(&mut n, &["TYPE", "q"], 0), "+none\r\n");
        run(&mut n, &["SET", "s", "v"], 0);
        assert_eq!(run(&mut n, &["TYPE", "s"], 0), "+string\r\n");
        assert!(run(&mut n, &["ZCARD", "s"], 0).starts_with("-WRONGTYPE"));
        assert_eq!(delete(&mut n, "s"), "$6\r\nstring\r\n");
        assert_eq!(run(&mut n, &["GET", "s"], 0), "$1\r\nv\r\n", "left alone");
    }

    #[test]
    fn set_nx_px_lives_up_to_and_including_its_expiry() {
        let mut n = ModelNode::new();
        assert_eq!(
            run(&mut n, &["SET", "k", "a", "NX", "PX", "100"], 0),
            "+OK\r\n"
        );
        assert_eq!(
            run(&mut n, &["set", "k", "b", "nx", "px", "100"], 50),
            "$-1\r\n"
        );
        assert_eq!(run(&mut n, &["PTTL", "k"], 40), ":60\r\n");
        assert_eq!(run(&mut n, &["GET", "k"], 100), "$1\r\na\r\n");
        assert_eq!(run(&mut n, &["GET", "k"], 101), "$-1\r\n");
        assert_eq!(run(&mut n, &["PTTL", "k"], 101), ":-2\r\n");
        assert_eq!(
            run(&mut n, &["SET", "k", "b", "NX", "PX", "100"], 101),
            "+OK\r\n"
        );
        assert_eq!(run(&mut n, &["SET", "p", "x"], 0), "+OK\r\n");
        assert_eq!(run(&mut n, &["PTTL", "p"], 0), ":-1\r\n");
        assert_eq!(
            run_in(&mut n, &["GET", "nope"], 0, Protocol::Resp3),
            "_\r\n"
        );
        assert_eq!(
            run(&mut n, &["SET", "k", "b", "PX", "0"], 0),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(
            run(&mut n, &["SET", "k", "b", "PX", "x"], 0),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&mut n, &["SET", "k", "b", "NX", "XX"], 0),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run(&mut n, &["SET", "k"], 0),
            "-ERR wrong number of arguments for 'set' command\r\n"
        );
        // KEEPTTL and GET.
        assert_eq!(run(&mut n, &["SET", "t", "1", "PX", "500"], 0), "+OK\r\n");
        assert_eq!(
            run(&mut n, &["SET", "t", "2", "KEEPTTL", "GET"], 100),
            "$1\r\n1\r\n"
        );
        assert_eq!(run(&mut n, &["PTTL", "t"], 100), ":400\r\n");
    }

    #[test]
    fn multi_acquire_refuses_another_kind_unless_broken_to_check_exists() {
        let acquire = |n: &mut ModelNode| {
            let words = [
                "EVAL",
                script::MULTI_ACQUIRE.source,
                "4",
                "a",
                "fa",
                "b",
                "fb",
            ];
            run(n, &[&words[..], &["me", "100", "0"]].concat(), 0)
        };
        let mut correct = ModelNode::new();
        run(&mut correct, &["LPUSH", "b", "x"], 0);
        assert!(acquire(&mut correct).starts_with("-WRONGTYPE"));
        let mut broken = ModelNode::new();
        broken.set_faults(ModelFaults {
            multi_checks_exists_not_type: true,
            ..ModelFaults::default()
        });
        run(&mut broken, &["LPUSH", "b", "x"], 0);
        assert_eq!(
            acquire(&mut broken),
            "*2\r\n:0\r\n:-1\r\n",
            "the broken node reports the name held (a list without a TTL)"
        );
        assert_eq!(broken.type_of(b"a", ms(0)), None, "and takes nothing");
    }

    #[test]
    fn set_nx_get_takes_a_free_key_names_a_holder_and_refuses_another_type() {
        let mut n = ModelNode::new();
        let take =
            |n: &mut ModelNode, who: &str| run(n, &["SET", "L", who, "NX", "PX", "100", "GET"], 0);
        assert_eq!(take(&mut n, "a"), "$-1\r\n", "a free key is taken: nil");
        assert_eq!(take(&mut n, "b"), "$1\r\na\r\n", "a held key: its holder");
        assert_eq!(run(&mut n, &["GET", "L"], 0), "$1\r\na\r\n", "NX kept it");
        run(&mut n, &["LPUSH", "list", "1"], 0);
        assert!(
            run(&mut n, &["SET", "list", "t", "NX", "PX", "100", "GET"], 0)
                .starts_with("-WRONGTYPE")
        );
        assert_eq!(
            run(&mut n, &["SET", "list", "t", "NX", "PX", "100"], 0),
            "$-1\r\n",
            "a plain SET NX reads another type as held"
        );
        let mut broken = ModelNode::new();
        broken.set_faults(ModelFaults {
            set_nx_get_ignores_type: true,
            ..ModelFaults::default()
        });
        run(&mut broken, &["LPUSH", "list", "x"], 0);
        assert_eq!(
            run(
                &mut broken,
                &["SET", "list", "t", "NX", "PX", "100", "GET"],
                0
            ),
            "$-1\r\n",
            "the broken node answers nil, as for a free key"
        );
        assert_eq!(
            broken.type_of(b"list", ms(0)),
            Some("list"),
            "and sets nothing"
        );
        // `GET` came with Redis 6.2, and beside `NX` with 7.0.
        let mut redis62 = ModelNode::with_config(ModelConfig::redis(6, 2, 14));
        assert_eq!(
            run(
                &mut redis62,
                &["SET", "L", "a", "NX", "PX", "100", "GET"],
                0
            ),
            "-ERR syntax error\r\n"
        );
        assert_eq!(redis62.key_count(ms(0)), 0, "a refused SET sets nothing");
        assert_eq!(run(&mut redis62, &["SET", "L", "a", "GET"], 0), "$-1\r\n");
        let mut redis60 = ModelNode::with_config(ModelConfig::redis(6, 0, 20));
        assert_eq!(
            run(&mut redis60, &["SET", "L", "a", "GET"], 0),
            "-ERR syntax error\r\n"
        );
        let mut valkey = ModelNode::with_config(ModelConfig::valkey(7, 2, 4));
        assert_eq!(
            run(&mut valkey, &["SET", "L", "a", "NX", "PX", "100", "GET"], 0),
            "$-1\r\n"
        );
    }

    #[test]
    fn scripting_can_be_absent_or_forbidden_while_the_native_commands_stay() {
        let source = script::RELEASE.source;
        for (scripting, refusal) in [
            (Scripting::Absent, "-ERR unknown command 'EVAL'"),
            (
                Scripting::Forbidden,
                "-NOPERM User default has no permissions to run the 'eval' command",
            ),
        ] {
            let mut n =
                ModelNode::with_config(ModelConfig::valkey(9, 0, 0).with_scripting(scripting));
            let eval = run(
                &mut n,
                &["EVAL", source, "3", "L", "H", "S", "t", "0", "0"],
                0,
            );
            assert!(eval.starts_with(refusal), "{eval}");
            assert!(
                run(&mut n, &["EVALSHA", sha(&script::RELEASE), "0"], 0).starts_with(&refusal[..4])
            );
            assert!(run(&mut n, &["SCRIPT", "LOAD", source], 0).starts_with(&refusal[..4]));
            assert_eq!(n.key_count(ms(0)), 0, "a refused script changes nothing");
            assert_eq!(
                run(&mut n, &["SET", "L", "t", "NX", "PX", "100"], 0),
                "+OK\r\n"
            );
            assert_eq!(
                run(&mut n, &["SET", "L", "t", "IFEQ", "t", "PX", "100"], 0),
                "+OK\r\n"
            );
            assert_eq!(run(&mut n, &["DELIFEQ", "L", "t"], 0), ":1\r\n");
        }
    }

    #[test]
    fn native_compare_commands_follow_the_configured_server() {
        let mut redis7 = ModelNode::new();
        assert_eq!(
            run(&mut redis7, &["SET", "k", "t", "IFEQ", "t", "PX", "10"], 0),
            "-ERR syntax error\r\n"
        );
        assert!(
            run(&mut redis7, &["DELIFEQ", "k", "t"], 0)
                .starts_with("-ERR unknown command 'DELIFEQ'")
        );
        assert!(
            run(&mut redis7, &["DELEX", "k", "IFEQ", "t"], 0).starts_with("-ERR unknown command")
        );

        let mut valkey = ModelNode::with_config(ModelConfig::valkey(9, 0, 0));
        run(&mut valkey, &["SET", "k", "t", "PX", "100"], 0);
        assert_eq!(
            run(&mut valkey, &["SET", "k", "u", "IFEQ", "x", "PX", "500"], 1),
            "$-1\r\n"
        );
        assert_eq!(
            run(&mut valkey, &["SET", "k", "t", "IFEQ", "t", "PX", "500"], 1),
            "+OK\r\n"
        );
        assert_eq!(run(&mut valkey, &["PTTL", "k"], 1), ":500\r\n");
        assert_eq!(
            run(&mut valkey, &["SET", "m", "t", "IFEQ", "t"], 1),
            "$-1\r\n",
            "IFEQ never creates"
        );
        assert_eq!(run(&mut valkey, &["DELIFEQ", "k", "x"], 2), ":0\r\n");
        assert_eq!(run(&mut valkey, &["DELIFEQ", "k", "t"], 2), ":1\r\n");
        assert_eq!(run(&mut valkey, &["GET", "k"], 2), "$-1\r\n");
        assert!(run(&mut valkey, &["DELEX", "k"], 2).starts_with("-ERR unknown command"));

        let mut redis84 = ModelNode::with_config(ModelConfig::redis(8, 4, 0));
        run(&mut redis84, &["SET", "k", "t"], 0);
        assert_eq!(run(&mut redis84, &["DELEX", "k", "IFEQ", "x"], 0), ":0\r\n");
        assert_eq!(run(&mut redis84, &["DELEX", "k", "IFNE", "x"], 0), ":1\r\n");
        run(&mut redis84, &["LPUSH", "l", "1"], 0);
        assert!(run(&mut redis84, &["DELEX", "l", "IFEQ", "x"], 0).starts_with("-WRONGTYPE"));
        assert_eq!(run(&mut redis84, &["DELEX", "l"], 0), ":1\r\n");
    }

    #[test]
    fn counters_lists_and_types() {
        let mut n = ModelNode::new();
        assert_eq!(run(&mut n, &["INCR", "c"], 0), ":1\r\n");
        assert_eq!(run(&mut n, &["INCR", "c"], 0), ":2\r\n");
        assert_eq!(run(&mut n, &["DECR", "c"], 0), ":1\r\n");
        run(&mut n, &["SET", "s", "abc"], 0);
        assert_eq!(
            run(&mut n, &["INCR", "s"], 0),
            "-ERR value is not an integer or out of range\r\n"
        );
        run(&mut n, &["SET", "big", "9223372036854775807"], 0);
        assert_eq!(
            run(&mut n, &["INCR", "big"], 0),
            "-ERR increment or decrement would overflow\r\n"
        );
        // INCR keeps the TTL.
        run(&mut n, &["SET", "v", "5", "PX", "100"], 0);
        assert_eq!(run(&mut n, &["INCR", "v"], 10), ":6\r\n");
        assert_eq!(run(&mut n, &["PTTL", "v"], 10), ":90\r\n");

        assert_eq!(run(&mut n, &["LPUSH", "l", "a", "b", "c"], 0), ":3\r\n");
        assert_eq!(
            run(&mut n, &["GET", "l"], 0),
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
        assert_eq!(
            run(&mut n, &["INCR", "l"], 0),
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
        assert!(run(&mut n, &["LPUSH", "s", "x"], 0).starts_with("-WRONGTYPE"));
        assert_eq!(run(&mut n, &["LTRIM", "l", "0", "0"], 0), "+OK\r\n");
        assert_eq!(n.list_len(b"l", ms(0)), 1);
        assert_eq!(
            run(&mut n, &["BLPOP", "l", "1"], 0),
            "*2\r\n$1\r\nl\r\n$1\r\nc\r\n",
            "the head: last pushed"
        );
        assert_eq!(n.key_count(ms(0)), 4, "an emptied list is gone");
        run(&mut n, &["LPUSH", "l", "a", "b"], 0);
        assert_eq!(run(&mut n, &["LTRIM", "l", "5", "9"], 0), "+OK\r\n");
        assert_eq!(run(&mut n, &["PTTL", "l"], 0), ":-2\r\n");

        assert_eq!(run(&mut n, &["PEXPIRE", "s", "50"], 0), ":1\r\n");
        assert_eq!(run(&mut n, &["PEXPIRE", "s", "10", "GT"], 0), ":0\r\n");
        assert_eq!(run(&mut n, &["PEXPIRE", "s", "10", "LT"], 0), ":1\r\n");
        assert_eq!(run(&mut n, &["PEXPIRE", "s", "10", "NX"], 0), ":0\r\n");
        assert_eq!(run(&mut n, &["PEXPIRE", "nope", "10"], 0), ":0\r\n");
        assert_eq!(run(&mut n, &["PEXPIRE", "s", "0"], 0), ":1\r\n");
        assert_eq!(
            run(&mut n, &["GET", "s"], 0),
            "$-1\r\n",
            "a deadline not in the future deletes"
        );
        assert_eq!(run(&mut n, &["DEL", "c", "v", "nope"], 0), ":2\r\n");
        assert_eq!(run(&mut n, &["SELECT", "0"], 0), "+OK\r\n");
        assert_eq!(
            run(&mut n, &["SELECT", "1"], 0),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(run(&mut n, &["PING"], 0), "+PONG\r\n");
        assert!(run(&mut n, &["FLUSHALL"], 0).starts_with("-ERR unknown command 'FLUSHALL'"));
    }

    #[test]
    fn blpop_blocks_and_is_retried() {
        let mut n = ModelNode::new();
        let args: [&[u8]; 3] = [b"BLPOP", b"sig", b"0.25"];
        let Exec::Block { keys, until } = n.execute(&args, ms(100), Protocol::Resp2) else {
            panic!("must block");
        };
        assert_eq!(keys, [b"sig".to_vec()]);
        assert_eq!(until, Some(ms(350)));
        assert_eq!(n.retry_pop(&keys, until, ms(200), Protocol::Resp2), None);
        run(&mut n, &["LPUSH", "sig", "1"], 200);
        assert_eq!(
            n.retry_pop(&keys, until, ms(201), Protocol::Resp3).unwrap(),
            b"*2\r\n$3\r\nsig\r\n$1\r\n1\r\n"
        );
        assert_eq!(n.retry_pop(&keys, until, ms(349), Protocol::Resp2), None);
        assert_eq!(
            n.retry_pop(&keys, until, ms(350), Protocol::Resp2).unwrap(),
            b"*-1\r\n"
        );
        assert_eq!(
            n.retry_pop(&keys, until, ms(350), Protocol::Resp3).unwrap(),
            b"_\r\n"
        );
        // Whole seconds only before Redis 6.
        let mut old = ModelNode::with_config(ModelConfig::redis(5, 0, 14));
        assert_eq!(
            run(&mut old, &["BLPOP", "sig", "0.5"], 0),
            "-ERR timeout is not an integer or out of range\r\n"
        );
        assert_eq!(run(&mut old, &["BLPOP", "sig", "1"], 0), "<blocked>");
        assert_eq!(
            run(&mut n, &["BLPOP", "sig", "-1"], 0),
            "-ERR timeout is negative\r\n"
        );
        assert_eq!(
            run(&mut n, &["BLPOP", "sig", "x"], 0),
            "-ERR timeout is not a float or out of range\r\n"
        );
        // Forever.
        let args: [&[u8]; 3] = [b"BLPOP", b"sig", b"0"];
        assert!(matches!(
            n.execute(&args, ms(0), Protocol::Resp2),
            Exec::Block { until: None, .. }
        ));
    }

    #[test]
    fn scripts_by_sha_and_by_source_and_noscript_after_a_flush() {
        let mut n = ModelNode::new();
        let acquire = |via: &str, body: &str, token: &str| {
            vec![
                via.to_string(),
                body.to_string(),
                "3".into(),
                "L".into(),
                "F".into(),
                "H".into(),
                token.to_string(),
                "1000".into(),
                "1".into(),
                "0".into(),
            ]
        };
        let exec = |n: &mut ModelNode, words: Vec<String>, now: u64| {
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            run(n, &refs, now)
        };
        let src = script::ACQUIRE.source;
        assert_eq!(
            exec(
                &mut n,
                acquire("EVALSHA", sha(&script::ACQUIRE), "tok-a"),
                0
            ),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n"
        );
        assert_eq!(
            exec(&mut n, acquire("EVAL", src, "tok-a"), 0),
            "*2\r\n:1\r\n:1\r\n"
        );
        assert_eq!(
            exec(
                &mut n,
                acquire("EVALSHA", &sha(&script::ACQUIRE).to_uppercase(), "tok-b"),
                10
            ),
            "*2\r\n:0\r\n:990\r\n",
            "busy, with the holder's PTTL; the SHA is case-insensitive"
        );
        n.flush_scripts();
        assert!(
            exec(
                &mut n,
                acquire("EVALSHA", sha(&script::ACQUIRE), "tok-b"),
                10
            )
            .starts_with("-NOSCRIPT")
        );
        assert_eq!(
            run(&mut n, &["SCRIPT", "LOAD", src], 10),
            format!("$40\r\n{}\r\n", sha(&script::ACQUIRE))
        );
        assert_eq!(
            run(
                &mut n,
                &[
                    "SCRIPT",
                    "EXISTS",
                    sha(&script::ACQUIRE),
                    sha(&script::RELEASE)
                ],
                10
            ),
            "*2\r\n:1\r\n:0\r\n"
        );
        assert!(run(&mut n, &["EVAL", "return 1", "0"], 0).starts_with("-ERR unknown command"));
        assert!(
            run(&mut n, &["SCRIPT", "LOAD", "return 1"], 0).starts_with("-ERR unknown command")
        );
        // After the holder's key expires the fence counter goes on from where it was.
        assert_eq!(
            exec(
                &mut n,
                acquire("EVALSHA", sha(&script::ACQUIRE), "tok-b"),
                1001
            ),
            "*2\r\n:1\r\n:2\r\n"
        );

        // Release: not the holder, then the holder (pushing a signal only while a waiter's
        // mark `W` exists, or always when told).
        let release = |token: &str, signal: &str, always: &str| {
            vec![
                "EVAL".to_string(),
                script::RELEASE.source.into(),
                "4".into(),
                "L".into(),
                "H".into(),
                "S".into(),
                "W".into(),
                token.to_string(),
                "0".into(),
                signal.to_string(),
                always.to_string(),
            ]
        };
        assert_eq!(exec(&mut n, release("tok-a", "500", "0"), 1002), ":-1\r\n");
        assert_eq!(n.value(b"L", ms(1002)), Some(&b"tok-b"[..]));
        assert_eq!(exec(&mut n, release("tok-b", "500", "0"), 1002), ":0\r\n");
        assert_eq!(n.value(b"L", ms(1002)), None);
        assert_eq!(n.list_len(b"S", ms(1002)), 0, "nobody marked: no push");
        for (marked, always, pushed) in [(true, "0", true), (false, "1", true)] {
            if marked {
                run(&mut n, &["SET", "W", "1", "PX", "30000"], 1002);
            }
            run(&mut n, &["SET", "L", "tok-b"], 1002);
            assert_eq!(
                exec(&mut n, release("tok-b", "500", always), 1002),
                ":0\r\n"
            );
            assert_eq!(n.list_len(b"S", ms(1002)), usize::from(pushed));
            assert_eq!(n.expiry(b"S", ms(1002)), Some(Some(ms(1502))));
            run(&mut n, &["DEL", "S", "W"], 1002);
        }
        // The broken variants: a release that ignores the mark, a mark that is dropped.
        let mut broken = ModelNode::new();
        broken.set_faults(ModelFaults {
            release_ignores_waiting_mark: true,
            ..ModelFaults::default()
        });
        run(&mut broken, &["SET", "W", "1", "PX", "30000"], 0);
        run(&mut broken, &["SET", "L", "tok-b"], 0);
        assert_eq!(exec(&mut broken, release("tok-b", "500", "0"), 0), ":0\r\n");
        assert_eq!(broken.list_len(b"S", ms(0)), 0, "marked, yet no push");
        broken.set_faults(ModelFaults {
            waiting_mark_lost: true,
            ..ModelFaults::default()
        });
        assert_eq!(
            run(&mut broken, &["SET", "x:waiting", "1", "PX", "30000"], 0),
            "+OK\r\n"
        );
        assert_eq!(
            broken.type_of(b"x:waiting", ms(0)),
            None,
            "the mark dropped"
        );

        // Extend and raise-fence.
        run(&mut n, &["SET", "L", "tok-c", "PX", "100"], 2000);
        let extend = |token: &str| {
            vec![
                "EVAL".to_string(),
                script::EXTEND.source.into(),
                "2".into(),
                "L".into(),
                "H".into(),
                token.to_string(),
                "700".into(),
            ]
        };
        assert_eq!(exec(&mut n, extend("tok-x"), 2010), ":0\r\n");
        assert_eq!(n.expiry(b"L", ms(2010)), Some(Some(ms(2100))));
        assert_eq!(exec(&mut n, extend("tok-c"), 2010), ":1\r\n");
        assert_eq!(n.expiry(b"L", ms(2010)), Some(Some(ms(2710))));
        let raise = |to: &str| {
            vec![
                "EVAL".to_string(),
                script::RAISE_FENCE.source.into(),
                "1".into(),
                "F".into(),
                to.to_string(),
            ]
        };
        assert_eq!(exec(&mut n, raise("7"), 2010), ":7\r\n");
        assert_eq!(exec(&mut n, raise("5"), 2010), ":7\r\n");
        assert_eq!(n.value(b"F", ms(2010)), Some(&b"7"[..]));
        assert!(
            exec(&mut n, raise("x"), 2010)
                .starts_with("-ERR user_script:3: attempt to compare nil with number script: ")
        );
    }

    #[test]
    fn reentrant_acquire_and_release_count_holds() {
        let mut n = ModelNode::new();
        let words = |token: &str| {
            vec![
                "EVAL".to_string(),
                script::ACQUIRE.source.into(),
                "3".into(),
                "L".into(),
                "F".into(),
                "H".into(),
                token.to_string(),
                "1000".into(),
                "0".into(),
                "1".into(),
            ]
        };
        let exec = |n: &mut ModelNode, words: Vec<String>, now: u64| {
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            run(n, &refs, now)
        };
        assert_eq!(exec(&mut n, words("t"), 0), "*2\r\n:1\r\n:0\r\n");
        assert_eq!(exec(&mut n, words("t"), 100), "*2\r\n:2\r\n:0\r\n");
        assert_eq!(
            n.expiry(b"L", ms(100)),
            Some(Some(ms(1100))),
            "re-entry refreshes the TTL"
        );
        let release = vec![
            "EVAL".to_string(),
            script::RELEASE.source.into(),
            "3".into(),
            "L".into(),
            "H".into(),
            "S".into(),
            "t".into(),
            "1".into(),
            "0".into(),
        ];
        assert_eq!(exec(&mut n, release.clone(), 200), ":1\r\n");
        assert_eq!(exec(&mut n, release.clone(), 200), ":0\r\n");
        assert_eq!(n.key_count(ms(200)), 0);
    }

    #[test]
    fn a_failing_script_keeps_its_earlier_writes_and_names_the_error() {
        let mut n = ModelNode::new();
        run(&mut n, &["SET", "F", "not-a-number"], 0);
        let acquire = |ttl: &'static str, fenced: &'static str| {
            [
                "EVAL",
                script::ACQUIRE.source,
                "3",
                "L",
                "F",
                "H",
                "tok",
                ttl,
                fenced,
                "1",
                "tok",
            ]
        };
        let reply = run(&mut n, &acquire("1000", "1"), 0);
        assert_eq!(
            reply, "-ERR fence key: value is not an integer or out of range\r\n",
            "the script names the key it failed on, and the server adds no location"
        );
        assert_eq!(
            n.value(b"L", ms(0)),
            None,
            "the acquire script fails before its first write"
        );
        // A re-entry with a TTL that is no number fails after counting the hold.
        run(&mut n, &["SET", "L", "tok", "PX", "1000"], 0);
        run(&mut n, &["SET", "H", "1", "PX", "1000"], 0);
        let reply = run(&mut n, &acquire("soon", "0"), 0);
        assert!(
            reply.starts_with("-ERR value is not an integer or out of range script: ")
                && reply.ends_with(", on @user_script:13.\r\n"),
            "{reply}"
        );
        assert_eq!(
            n.value(b"H", ms(0)),
            Some(&b"2"[..]),
            "no rollback, as in Redis"
        );
        run(&mut n, &["LPUSH", "M", "x"], 0);
        let reply = run(
            &mut n,
            &[
                "EVAL",
                script::RELEASE.source,
                "3",
                "M",
                "H",
                "S",
                "tok",
                "0",
                "0",
            ],
            0,
        );
        assert!(
            reply.starts_with(
                "-WRONGTYPE Operation against a key holding the wrong kind of value script:"
            ),
            "{reply}"
        );
        assert!(
            run(&mut n, &["EVAL", script::EXTEND.source, "5", "L"], 0)
                .starts_with("-ERR Number of keys can't be greater")
        );
    }

    #[test]
    fn loading_and_readonly() {
        let mut n = ModelNode::new();
        run(&mut n, &["SET", "L", "other", "PX", "1000"], 0);
        n.set_loading(true);
        assert_eq!(
            run(&mut n, &["GET", "L"], 0),
            "-LOADING Redis is loading the dataset in memory\r\n"
        );
        assert!(run(&mut n, &["EVALSHA", sha(&script::RELEASE), "0"], 0).starts_with("-LOADING"));
        assert!(run(&mut n, &["HELLO", "3"], 0).starts_with('%'));
        assert!(run(&mut n, &["INFO", "server"], 0).contains("redis_version:7.2.4"));
        n.set_loading(false);
        n.set_readonly(true);
        assert_eq!(
            run(&mut n, &["SET", "x", "1"], 0),
            "-READONLY You can't write against a read only replica.\r\n"
        );
        assert!(run(&mut n, &["BLPOP", "s", "1"], 0).starts_with("-READONLY"));
        assert_eq!(run(&mut n, &["GET", "L"], 0), "$5\r\nother\r\n");
        // Inside a script, only the writes fail: a replica can still say "busy".
        let acquire = [
            "EVAL",
            script::ACQUIRE.source,
            "3",
            "L",
            "F",
            "H",
            "mine",
            "1000",
            "1",
            "0",
        ];
        assert_eq!(run(&mut n, &acquire, 10), "*2\r\n:0\r\n:990\r\n");
        assert!(
            run(&mut n, &acquire, 1001)
                .starts_with("-READONLY fence key: You can't write against a read only replica.")
        );
        assert!(run(&mut n, &["HELLO"], 0).contains("replica"));
    }

    #[test]
    fn restart_loses_volatile_keys_and_optionally_the_counters() {
        let mut n = ModelNode::new();
        for (keep, fence) in [(true, Some(&b"3"[..])), (false, None)] {
            run(&mut n, &["SET", "F", "3"], 0);
            run(&mut n, &["SET", "L", "t", "PX", "10000"], 0);
            run(
                &mut n,
                &["EVAL", script::EXTEND.source, "2", "L", "H", "t", "10"],
                0,
            );
            n.restart(keep);
            assert_eq!(n.value(b"L", ms(1)), None);
            assert_eq!(n.value(b"F", ms(1)), fence);
            assert!(
                run(&mut n, &["EVALSHA", sha(&script::EXTEND), "0"], 1).starts_with("-NOSCRIPT")
            );
        }
    }

    #[test]
    fn hello_picks_the_protocol_and_old_servers_lack_it() {
        let mut n = ModelNode::with_config(ModelConfig::valkey(8, 1, 1));
        let mut conn = ModelConnection::new();
        let mut out = Vec::new();
        conn.receive(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        n.serve(&mut conn, ms(0), &mut out);
        assert_eq!(conn.protocol(), Protocol::Resp3);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "%7\r\n$6\r\nserver\r\n$6\r\nvalkey\r\n$7\r\nversion\r\n$5\r\n8.1.1\r\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("_\r\n"), "the GET after it answers in RESP3");
        assert_eq!(
            run(&mut n, &["HELLO", "4"], 0),
            "-NOPROTO unsupported protocol version\r\n"
        );
        assert!(run(&mut n, &["HELLO", "2"], 0).starts_with("*14\r\n"));
        let mut old = ModelNode::with_config(ModelConfig::redis(5, 0, 14));
        assert!(run(&mut old, &["HELLO", "3"], 0).starts_with("-ERR unknown command 'HELLO'"));
        assert!(run_in(&mut old, &["INFO", "server"], 0, Protocol::Resp3).starts_with("="));
    }

    #[test]
    fn requests_split_anywhere_pipelined_or_inline_and_garbage_closes() {
        let mut n = ModelNode::new();
        let mut conn = ModelConnection::new();
        let mut out = Vec::new();
        let bytes = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n";
        for b in bytes {
            conn.receive(&[*b]);
            n.serve(&mut conn, ms(0), &mut out);
        }
        assert_eq!(out, b"+OK\r\n$2\r\nv1\r\n+PONG\r\n");
        assert_eq!(conn.buffered(), 0);
        out.clear();
        conn.receive(b"*1\r\n+PING\r\n");
        n.serve(&mut conn, ms(0), &mut out);
        assert_eq!(out, b"-ERR Protocol error: expected '$'\r\n");
        assert!(conn.is_closed());
        conn.receive(b"*1\r\n$4\r\nPING\r\n");
        n.serve(&mut conn, ms(0), &mut out);
        assert_eq!(
            out, b"-ERR Protocol error: expected '$'\r\n",
            "a closed connection runs nothing"
        );
        let mut conn = ModelConnection::new();
        conn.receive(b"*99999999999\r\n");
        assert_eq!(
            conn.next_command(),
            Some(Err(RequestError("invalid multibulk length")))
        );
    }

    #[test]
    fn a_blocked_connection_runs_nothing_after_the_pop_until_it_replies() {
        let mut n = ModelNode::new();
        let mut waiter = ModelConnection::new();
        let mut pusher = ModelConnection::new();
        let mut out = Vec::new();
        waiter.receive(b"*3\r\n$5\r\nBLPOP\r\n$1\r\ns\r\n$1\r\n5\r\n*1\r\n$4\r\nPING\r\n");
        n.serve(&mut waiter, ms(0), &mut out);
        assert!(out.is_empty());
        assert_eq!(waiter.blocked_until(), Some(Some(ms(5000))));
        pusher.receive(b"*3\r\n$5\r\nLPUSH\r\n$1\r\ns\r\n$1\r\n1\r\n");
        let mut pushed = Vec::new();
        n.serve(&mut pusher, ms(10), &mut pushed);
        assert_eq!(pushed, b":1\r\n");
        n.serve(&mut waiter, ms(10), &mut out);
        assert_eq!(out, b"*2\r\n$1\r\ns\r\n$1\r\n1\r\n+PONG\r\n");
        assert!(!waiter.is_blocked());
    }

    #[test]
    fn a_broken_server_ignores_the_token() {
        let mut n = ModelNode::with_config(ModelConfig::valkey(9, 0, 0));
        n.set_faults(ModelFaults {
            release_ignores_token: true,
            extend_ignores_token: true,
            ..ModelFaults::default()
        });
        run(&mut n, &["SET", "L", "owner", "PX", "100"], 0);
        assert_eq!(
            run(
                &mut n,
                &["SET", "L", "thief", "IFEQ", "thief", "PX", "900"],
                0
            ),
            "+OK\r\n"
        );
        assert_eq!(run(&mut n, &["DELIFEQ", "L", "stranger"], 0), ":1\r\n");
    }

    // ---- against the core's machines ----

    /// One client's connections to a set of model nodes, driving machines to their outcome.
    struct Cluster {
        nodes: Vec<ModelNode>,
        conns: Vec<ModelConnection>,
        infos: Vec<ServerInfo>,
    }

    impl Cluster {
        fn new(configs: &[ModelConfig], now: Instant) -> Self {
            let mut nodes: Vec<ModelNode> =
                configs.iter().map(|c| ModelNode::with_config(*c)).collect();
            let mut conns = Vec::new();
            let mut infos = Vec::new();
            for node in &mut nodes {
                let mut conn = ModelConnection::new();
                let mut hs = Handshake::new(HandshakeOptions::default(), now);
                let mut buf = vec![0u8; 4096];
                let info = loop {
                    while let Some(len) = hs.poll_transmit(&mut buf).unwrap() {
                        conn.receive(&buf[..len]);
                    }
                    let mut out = Vec::new();
                    node.serve(&mut conn, now, &mut out);
                    hs.handle_input(&out, now);
                    if let Some(outcome) = hs.poll_outcome() {
                        break outcome.unwrap();
                    }
                };
                conns.push(conn);
                infos.push(info);
            }
            Cluster {
                nodes,
                conns,
                infos,
            }
        }

        /// Drives `m` until its outcome, stepping time to its timeouts and the nodes' blocked
        /// pops; `meanwhile` runs at each step (another client's commands, say).
        fn drive<Op: Operation, const N: usize>(
            &mut self,
            m: &mut Machine<Op, N>,
            mut now: Instant,
            mut meanwhile: impl FnMut(&mut [ModelNode], Instant),
        ) -> (Op::Outcome, Instant) {
            let mut buf = vec![0u8; 4096];
            for _ in 0..10_000 {
                // Exchange bytes until nothing moves at this instant.
                loop {
                    let mut moved = false;
                    while let Some(tx) = m.poll_transmit(now, &mut buf).unwrap() {
                        self.conns[tx.node].receive(&buf[..tx.len]);
                    }
                    for (i, (node, conn)) in self.nodes.iter_mut().zip(&mut self.conns).enumerate()
                    {
                        let mut out = Vec::new();
                        node.serve(conn, now, &mut out);
                        if !out.is_empty() {
                            moved = true;
                            m.handle_input(i, &out, now);
                        }
                    }
                    if !moved {
                        break;
                    }
                }
                if self
                    .conns
                    .iter()
                    .all(|c| !c.is_blocked() && c.buffered() == 0)
                    && let Some(outcome) = m.poll_outcome()
                {
                    return (outcome, now);
                }
                meanwhile(&mut self.nodes, now);
                let blocked = self
                    .conns
                    .iter()
                    .filter_map(|c| c.blocked_until().flatten())
                    .min();
                let next = [m.poll_timeout(), blocked].into_iter().flatten().min();
                // Small steps, so `meanwhile` acts close to when it means to.
                let step = now.saturating_add(Duration::from_millis(10));
                now = next
                    .map_or(step, |t| t.min(step))
                    .max(now.saturating_add(Duration::from_millis(1)));
                m.handle_timeout(now);
            }
            panic!("no outcome");
        }
    }

    fn configs() -> [ModelConfig; 5] {
        [
            ModelConfig::redis(5, 0, 14),
            ModelConfig::redis(7, 2, 4),
            ModelConfig::redis(8, 4, 0),
            ModelConfig::valkey(8, 1, 0),
            ModelConfig::valkey(9, 0, 0),
        ]
    }

    #[test]
    fn the_handshake_learns_what_the_model_reports() {
        let c = Cluster::new(&configs(), ms(0));
        let learned: Vec<(Protocol, Flavor, Version)> = c
            .infos
            .iter()
            .map(|i| (i.protocol, i.flavor, i.version))
            .collect();
        assert_eq!(
            learned,
            [
                (Protocol::Resp2, Flavor::Redis, Version::new(5, 0, 14)),
                (Protocol::Resp3, Flavor::Redis, Version::new(7, 2, 4)),
                (Protocol::Resp3, Flavor::Redis, Version::new(8, 4, 0)),
                (Protocol::Resp3, Flavor::Valkey, Version::new(8, 1, 0)),
                (Protocol::Resp3, Flavor::Valkey, Version::new(9, 0, 0)),
            ]
        );
    }

    #[test]
    fn core_machines_acquire_extend_and_release_on_every_server_and_path() {
        for config in configs() {
            for (fenced, reentrant) in [(false, false), (true, false), (false, true), (true, true)]
            {
                for nodes in [1usize, 3] {
                    let lock = Lock::new(
                        KeyLayout::default(),
                        b"m",
                        LockOptions {
                            fenced,
                            reentrant,
                            ttl: Duration::from_millis(1000),
                            ..LockOptions::default()
                        },
                    )
                    .unwrap();
                    let mut c = Cluster::new(&vec![config; nodes], ms(0));
                    let key = b"distlock:{m}";
                    let a = Token::from_entropy([1; 16]);
                    let b = Token::from_entropy([2; 16]);
                    let ctx = format!("{config:?} fenced={fenced} reentrant={reentrant} n={nodes}");
                    let mut acq: Acquire<3> =
                        Acquire::new(&lock, a.clone(), &c.infos, Duration::ZERO, ms(0), 1).unwrap();
                    let (lease, now) = c.drive(&mut acq, ms(0), |_, _| {});
                    let lease = lease.unwrap();
                    // The key holds the winning attempt's token, which the lease reports.
                    let a = lease.token().clone();
                    assert_eq!(lease.fence(), fenced.then_some(1), "{ctx}");
                    for node in &c.nodes {
                        assert_eq!(node.value(key, now), Some(a.as_bytes()), "{ctx}");
                    }
                    // Another token: busy; its extend and release are refused and change nothing.
                    let mut other: Acquire<3> =
                        Acquire::new(&lock, b.clone(), &c.infos, Duration::ZERO, now, 2).unwrap();
                    assert!(c.drive(&mut other, now, |_, _| {}).0.is_err(), "{ctx}");
                    let mut ext: Extend<3> =
                        Extend::new(&lock, b.clone(), &c.infos, now, 3).unwrap();
                    assert_eq!(
                        c.drive(&mut ext, now, |_, _| {}).0,
                        Err(distlock_core::Error::NotHeld),
                        "{ctx}"
                    );
                    let mut rel: Release<3> =
                        Release::new(&lock, b.clone(), &c.infos, now, 4).unwrap();
                    assert_eq!(
                        c.drive(&mut rel, now, |_, _| {}).0,
                        Err(distlock_core::Error::NotHeld),
                        "{ctx}"
                    );
                    assert_eq!(c.nodes[0].value(key, now), Some(a.as_bytes()), "{ctx}");
                    // A script flush in between: NOSCRIPT, then EVAL.
                    for node in &mut c.nodes {
                        node.flush_scripts();
                    }
                    let later = now.saturating_add(Duration::from_millis(500));
                    let mut ext: Extend<3> =
                        Extend::new(&lock, a.clone(), &c.infos, later, 5).unwrap();
                    let (extended, _) = c.drive(&mut ext, later, |_, _| {});
                    assert!(extended.is_ok(), "{ctx}: {extended:?}");
                    assert_eq!(
                        c.nodes[0].expiry(key, later),
                        Some(Some(later.saturating_add(Duration::from_millis(1000)))),
                        "{ctx}"
                    );
                    let mut rel: Release<3> =
                        Release::new(&lock, a.clone(), &c.infos, later, 6).unwrap();
                    assert_eq!(
                        c.drive(&mut rel, later, |_, _| {}).0,
                        Ok(Released::Free),
                        "{ctx}"
                    );
                    for node in &c.nodes {
                        assert_eq!(node.value(key, later), None, "{ctx}");
                    }
                    // The fence goes on increasing.
                    let mut again: Acquire<3> =
                        Acquire::new(&lock, b.clone(), &c.infos, Duration::ZERO, later, 7).unwrap();
                    let (lease, _) = c.drive(&mut again, later, |_, _| {});
                    assert_eq!(lease.unwrap().fence(), fenced.then_some(2), "{ctx}");
                }
            }
        }
    }

    #[test]
    fn a_waiter_blocked_on_the_signal_is_woken_by_the_release() {
        for config in configs() {
            let lock = Lock::new(
                KeyLayout::default(),
                b"w",
                LockOptions {
                    ttl: Duration::from_secs(20),
                    ..LockOptions::default()
                },
            )
            .unwrap();
            let mut c = Cluster::new(&[config], ms(0));
            let mut acq: Acquire<1> = Acquire::new(
                &lock,
                Token::from_entropy([1; 16]),
                &c.infos,
                Duration::ZERO,
                ms(0),
                1,
            )
            .unwrap();
            // The lease's token (the winning attempt's) is what releases it.
            let holder = c
                .drive(&mut acq, ms(0), |_, _| {})
                .0
                .unwrap()
                .token()
                .clone();
            // The holder releases at 300 ms through its own connection to the node.
            let mut holder_conn = ModelConnection::new();
            let mut released = false;
            let mut waiter: Acquire<1> = Acquire::new(
                &lock,
                Token::from_entropy([2; 16]),
                &c.infos,
                Duration::from_secs(10),
                ms(0),
                2,
            )
            .unwrap();
            let info = c.infos.clone();
            let (lease, at) = c.drive(&mut waiter, ms(0), |nodes, now| {
                if !released && now >= ms(300) {
                    released = true;
                    let mut rel: Release<1> =
                        Release::new(&lock, holder.clone(), &info, now, 3).unwrap();
                    let mut buf = vec![0u8; 1024];
                    // NOSCRIPT first (nothing loaded the script yet), then EVAL.
                    for _ in 0..2 {
                        while let Some(tx) = rel.poll_transmit(now, &mut buf).unwrap() {
                            holder_conn.receive(&buf[..tx.len]);
                        }
                        let mut out = Vec::new();
                        nodes[0].serve(&mut holder_conn, now, &mut out);
                        rel.handle_input(0, &out, now);
                    }
                    assert_eq!(rel.poll_outcome(), Some(Ok(Released::Free)));
                }
            });
            assert!(lease.is_ok(), "{config:?}");
            // Woken at the release, not at the end of a retry delay or the holder's expiry.
            assert!(at <= ms(310), "{config:?}: acquired at {at:?}");
        }
    }
}
