//! Lock names, key layouts and tokens.
//!
//! A lock lives in up to four keys: the lock key (the holder's token, a plain string: `GET`
//! shows who holds it), the fencing counter (never expires), the re-entry count of a
//! reentrant lock, and the wake-up list a release pushes to and waiters `BLPOP`. Where they
//! are is the [`KeyLayout`]'s choice.
//!
//! ## Tagged (the default)
//! A lock named `N` lives in these keys, all sharing the hash tag `{N}` so that every script
//! touches one Redis Cluster slot:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>{N}` | the holder's token |
//! | `<prefix>{N}:fence` | the fencing counter |
//! | `<prefix>{N}:holds` | the re-entry count |
//! | `<prefix>{N}:signal` | the wake-up list |
//! | `<prefix>{N}:waiting` | `1` while a plain mutex's waiter may block on the wake-up list |
//!
//! Fair mode ([`crate::LockOptions::fair`], tagged layout only) adds a queue and two keys per
//! waiter, with the same tag (a fair mutex's; a fair semaphore's are its own, below):
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>{N}:queue` | the waiters' tokens in arrival order (sorted set, score = ticket) |
//! | `<prefix>{N}:alive:<token>` | exists while that waiter is live (its expiry is the deadline) |
//! | `<prefix>{N}:wake:<token>` | that waiter's own wake-up list, pushed by the hand-off to it |
//!
//! A semaphore ([`crate::Lock::semaphore`], tagged layout only) keeps its holders where a
//! mutex keeps its token, so a name is either one or the other:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>{N}` | the holders' tokens (sorted set, score = the limit they took a permit under) |
//! | `<prefix>{N}:permit:<token>` | exists while that permit is held (its expiry is the permit's) |
//! | `<prefix>{N}:permit-signal` | a plain semaphore's wake-up list: a release pushes, its waiters `BLPOP` |
//! | `<prefix>{N}:permit-queue` | a fair semaphore's waiters' tokens in arrival order (sorted set, score = ticket) |
//! | `<prefix>{N}:permit-alive:<token>` | exists while that fair-semaphore waiter is live (its expiry is the deadline) |
//! | `<prefix>{N}:permit-wake:<token>` | that fair-semaphore waiter's own wake-up list, pushed by the hand-off to it |
//!
//! A read-write lock ([`crate::Lock::rw`], tagged layout only) marks its name with a hash, so
//! a name is a mutex, a semaphore or a read-write lock, never two:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>{N}` | a hash `{rw: 1}`: the name's marker, alive as long as any hold of it |
//! | `<prefix>{N}:writer` | the write holder's token (its expiry is the write hold's) |
//! | `<prefix>{N}:readers` | the read holders' tokens (sorted set, score 0) |
//! | `<prefix>{N}:reader:<token>` | exists while that read hold lives (its expiry is the hold's) |
//! | `<prefix>{N}:writers` | the waiting writers' tokens (sorted set, score 0) |
//! | `<prefix>{N}:writer-alive:<token>` | exists while that writer waits (its expiry is the deadline) |
//! | `<prefix>{N}:writer-signal` | wakes one writer |
//! | `<prefix>{N}:read-signal` | wakes the waiting readers, one after another |
//!
//! **No queue is shared by two kinds.** A read-write lock's waiting writers live in
//! `:writers`, `:writer-alive:` and `:writer-signal`, keys only the read-write scripts touch;
//! a fair semaphore's waiters in `:permit-queue`, `:permit-alive:` and `:permit-wake:`, keys
//! only the fair semaphore scripts touch; a fair mutex's waiters in `:queue`, `:alive:` and
//! `:wake:`. The lock key says which kind holds a name, but waiters outlive holds (a
//! writer's intent lives on after the last read hold is gone, and the name may then be taken
//! by a mutex), so a shared queue would let one kind's waiters sort ahead of, block, or be
//! handed the name by another kind (a fair release handing the name to a writer's token that
//! nobody confirms, a fair semaphore's release handing a permit to a fair mutex's waiter).
//! Separate keys, rather than scripts that skip the other kind's entries, because a script
//! cannot tell a waiter's kind from its token, and separate keys need no check at all. The
//! non-fair wake-up lists are each kind's own too: a mutex's waiters `BLPOP` `:signal`, a
//! plain semaphore's `:permit-signal`, a read-write lock's `:writer-signal` and
//! `:read-signal`. A wake-up hands nothing over, but it is consumed by whoever pops it: on a
//! shared list a mutex waiter of the name (waiting since before the name passed to permits)
//! could take the one element a permit's release pushed, and the semaphore waiter it was
//! meant for would sleep out its block span (simulation K4 in
//! `core/tests/mixed_kinds_simulation.rs`). A writer's or fair-semaphore waiter's entry that an older distlock left in
//! `:queue` is read by no read-write or semaphore script, only by the fair mutex's (as
//! before), until its liveness lapses; a plain semaphore waiter of an older distlock still
//! blocks on `:signal`, which a newer release no longer pushes, so it notices a freed permit
//! at the end of its block span (the README's upgrade notes).
//!
//! Redis takes the tag between the first `{` and the first `}` after it (the whole key when
//! that is empty). The prefix has no braces, so the first `{` is ours; the first `}` after it
//! lies in the part all four keys share (at the latest, our closing `}`); and a name may not
//! start with `}`, so the tag is never empty. A property test checks this for any bytes.
//!
//! ## Layouts shared with Python libraries
//! For users who run distlock next to a Python lock library on the same locks, the lock key
//! (and the wake-up list, where the library has one) are exactly that library's; the keys
//! the library has no counterpart for are distlock's own, under a prefix no Python library
//! writes and that the default tagged prefix `distlock:` does not cover (so a tagged
//! `reset --all` never walks them).
//!
//! | key | [`KeyLayout::RedisPy`] | [`KeyLayout::PythonRedisLock`] |
//! |---|---|---|
//! | lock | `N` (redis-py's `Redis.lock(N)`) | `lock:N` (python-redis-lock's `Lock(conn, N)`) |
//! | wake-up list | `distlock-redis-py:{N}:signal` | `lock-signal:N` (python-redis-lock's own) |
//! | fencing counter | `distlock-redis-py:{N}:fence` | `distlock-python-redis-lock:N:fence` |
//! | re-entry count | `distlock-redis-py:{N}:holds` | `distlock-python-redis-lock:N:holds` |
//! | waiting mark | `distlock-redis-py:{N}:waiting` | none (every release pushes) |
//!
//! - redis-py has no wake-up list (its waiters sleep and poll), so a redis-py release wakes
//!   no distlock waiter: they notice within the retry cap. distlock's releases push to the
//!   list only distlock waiters block on.
//! - python-redis-lock's release deletes `lock:N`, deletes `lock-signal:N`, `LPUSH`es `1` to
//!   it and `PEXPIRE`s it (1 s by default), and its waiters `BLPOP` it: the same steps as
//!   [`crate::script::RELEASE`], so a release by either library wakes a waiter of either.
//!   Its waiters do not mark that they wait, so under this layout distlock's release pushes
//!   whether or not a mark exists (the layout has no [`Keys::waiting`]).
//! - Names of a redis-py lock that contain a `}` use `distlock-redis-py:raw:N:fence` (and
//!   `:holds`, `:signal`) instead: see below. Under [`KeyLayout::RedisPy`] a name may not
//!   start with `distlock-redis-py:` ([`ConfigError::ReservedName`]), so no lock key is ever
//!   one of distlock's own keys; such a name is just as reserved for redis-py users of the
//!   same server. python-redis-lock's keys start with `lock:` or `lock-signal:`, ours with
//!   `distlock-python-redis-lock:`: they never meet.
//! - Tokens cross over: redis-py's (32 hex digits) and python-redis-lock's ids (24 base64
//!   characters) are valid [`Token`]s, so a distlock release or extend with one acts on the
//!   Python lock, and the other way round.
//! - Fencing and re-entry stay distlock's: a Python holder takes no fence, so fences order
//!   distlock's holders only, and only distlock re-enters.
//!
//! **Redis Cluster.** A script touches the lock key with its siblings, so they must share a
//! slot. The lock key of a redis-py lock is `N` itself, hashed as a whole unless `N` holds a
//! hash tag (a `{`, then a `}` after it with at least one byte between). So:
//! - `N` without `}` (so without a tag): the siblings `distlock-redis-py:{N}:…` carry `N`
//!   as their tag and land in `N`'s slot.
//! - `N` with a tag `T`: the siblings `distlock-redis-py:raw:N:…` add no brace before `N`,
//!   so their tag is `T` too. (Wrapping such a name in braces would cut the tag short.)
//! - `N` with a `}` but no tag (`a}b`, `{}x`): `N` is hashed as a whole and no other key can
//!   carry a tag equal to it (a tag never contains `}`): such locks work on single nodes and
//!   by Redlock, not on a Cluster.
//!
//! python-redis-lock's own two keys, `lock:N` and `lock-signal:N`, share a slot only when `N`
//! holds a hash tag — python-redis-lock's release script touches both, so on a Cluster it
//! needs tagged names itself. For those names `distlock-python-redis-lock:N:…` share the tag
//! too; for the others nothing can. Property tests check all of this for any bytes.
//!
//! Invariants: a [`LockName`] is 1 to [`MAX_NAME_LEN`] bytes, no ASCII control byte, not
//! starting with `}`; a prefix has no control byte and no brace; a [`Token`] is 16 to 64
//! printable ASCII bytes. All are checked once, at construction (a layout's reserved names
//! by [`crate::Lock::new`]).

use crate::error::ConfigError;

use crate::limits::{MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
/// The prefix of the default layout.
pub const DEFAULT_PREFIX: &[u8] = b"distlock:";
/// Where [`KeyLayout::RedisPy`] keeps distlock's own keys (fence, holds, signal); lock names
/// under it are refused in that layout.
pub const REDIS_PY_PREFIX: &[u8] = b"distlock-redis-py:";
/// Where [`KeyLayout::PythonRedisLock`] keeps distlock's own keys (fence, holds).
pub const PYTHON_REDIS_LOCK_PREFIX: &[u8] = b"distlock-python-redis-lock:";

/// A validated lock name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockName(heapless::Vec<u8, MAX_NAME_LEN>);

impl LockName {
    /// Checks `name`: not empty, at most [`MAX_NAME_LEN`] bytes, no control byte (CR, LF, NUL
    /// and friends would make names unprintable in logs and the command line; any other byte,
    /// including invalid UTF-8, is fine because keys travel as bulk strings).
    pub fn new(name: &[u8]) -> Result<Self, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if let Some(at) = name.iter().position(|b| b.is_ascii_control()) {
            return Err(ConfigError::NameControlByte { at });
        }
        if name.first() == Some(&b'}') {
            return Err(ConfigError::NameStartsWithBrace);
        }
        heapless::Vec::from_slice(name)
            .map(LockName)
            .map_err(|_| ConfigError::NameTooLong { len: name.len() })
    }

    /// The name's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where a lock's keys live (see the module doc for every layout's keys).
///
/// ```
/// use distlock_core::{KeyLayout, Lock, LockOptions};
///
/// // Next to Python processes that lock with `redis_lock.Lock(conn, "invoices", expire=60)`:
/// let lock = Lock::new(KeyLayout::python_redis_lock(), b"invoices", LockOptions::default())?;
/// assert_eq!(lock.keys().lock().concat(), b"lock:invoices");
/// assert_eq!(lock.keys().signal().concat(), b"lock-signal:invoices");
///
/// // Next to redis-py's `redis.Redis().lock("invoices")`:
/// let lock = Lock::new(KeyLayout::redis_py(), b"invoices", LockOptions::default())?;
/// assert_eq!(lock.keys().lock().concat(), b"invoices");
/// # Ok::<(), distlock_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyLayout {
    /// `<prefix>{name}` and its `:fence`, `:holds`, `:signal` siblings (see the module doc).
    Tagged {
        /// Prepended to every key; [`DEFAULT_PREFIX`] by default.
        prefix: heapless::Vec<u8, MAX_PREFIX_LEN>,
    },
    /// The lock key of redis-py's `Lock` (`redis.Redis().lock(name)`): the key `name`
    /// itself, holding the token, taken by `SET NX PX` and released by compare-and-delete.
    /// redis-py waiters poll; distlock's own keys are under [`REDIS_PY_PREFIX`].
    RedisPy,
    /// The keys of python-redis-lock (`redis_lock.Lock(conn, name, expire=…)`): the lock key
    /// `lock:<name>` holding the holder's id and the wake-up list `lock-signal:<name>` that
    /// its waiters `BLPOP`; distlock's own keys are under [`PYTHON_REDIS_LOCK_PREFIX`].
    PythonRedisLock,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout::Tagged {
            prefix: heapless::Vec::from_slice(DEFAULT_PREFIX).unwrap_or_default(),
        }
    }
}

impl KeyLayout {
    /// The tagged layout with a custom prefix (at most [`MAX_PREFIX_LEN`] bytes, no control
    /// bytes, no `{` or `}`; may be empty).
    pub fn tagged(prefix: &[u8]) -> Result<Self, ConfigError> {
        if prefix
            .iter()
            .any(|&b| b.is_ascii_control() || b == b'{' || b == b'}')
        {
            return Err(ConfigError::BadPrefix);
        }
        heapless::Vec::from_slice(prefix)
            .map(|prefix| KeyLayout::Tagged { prefix })
            .map_err(|_| ConfigError::BadPrefix)
    }

    /// The layout of redis-py's `Lock`: [`KeyLayout::RedisPy`].
    #[must_use]
    pub const fn redis_py() -> Self {
        KeyLayout::RedisPy
    }

    /// The layout of python-redis-lock: [`KeyLayout::PythonRedisLock`].
    #[must_use]
    pub const fn python_redis_lock() -> Self {
        KeyLayout::PythonRedisLock
    }

    /// The layout's short name, as the command line spells it: `tagged`, `redis-py` or
    /// `python-redis-lock`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            KeyLayout::Tagged { .. } => "tagged",
            KeyLayout::RedisPy => "redis-py",
            KeyLayout::PythonRedisLock => "python-redis-lock",
        }
    }

    /// Whether this layout has a plain mutex's waiting mark ([`Keys::waiting`]): the tagged
    /// and redis-py layouts. The python-redis-lock layout has none: that library's waiters
    /// block on `lock-signal:<name>` without marking, so every release there pushes.
    #[must_use]
    pub fn has_waiting(&self) -> bool {
        !matches!(self, KeyLayout::PythonRedisLock)
    }

    /// The prefix every key of the layout starts with and that nothing else writes under:
    /// what a "reset every lock" may walk. `None` for the layouts whose lock keys belong to
    /// another library: a redis-py lock key is any key at all, and python-redis-lock's
    /// `lock:` is a namespace other code may share. Walking those would delete keys that are
    /// not locks.
    #[must_use]
    pub fn prefix(&self) -> Option<&[u8]> {
        match self {
            KeyLayout::Tagged { prefix } => Some(prefix),
            KeyLayout::RedisPy | KeyLayout::PythonRedisLock => None,
        }
    }

    /// Checks that `name` may be used under this layout: under [`KeyLayout::RedisPy`] the
    /// lock key is the name itself, so names under [`REDIS_PY_PREFIX`] (distlock's own keys)
    /// are refused.
    pub fn check_name(&self, name: &LockName) -> Result<(), ConfigError> {
        match self {
            KeyLayout::RedisPy if name.as_bytes().starts_with(REDIS_PY_PREFIX) => {
                Err(ConfigError::ReservedName)
            }
            _ => Ok(()),
        }
    }
}

/// Which of a lock's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Lock,
    Fence,
    Holds,
    Signal,
    Queue,
    Wake,
    Alive,
    Permit,
    Writer,
    Readers,
    Reader,
    ReadSignal,
    WriterQueue,
    WriterAlive,
    WriterSignal,
    PermitQueue,
    PermitAlive,
    PermitWake,
    PermitSignal,
    Waiting,
}

/// The keys of one lock, as parts a key is written from (concatenated, they are the key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    layout: KeyLayout,
    name: LockName,
}

impl Keys {
    /// The keys of lock `name` under `layout`.
    #[must_use]
    pub fn new(layout: KeyLayout, name: LockName) -> Self {
        Keys { layout, name }
    }

    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The layout.
    #[must_use]
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// One key, as up to four parts to concatenate.
    fn key(&self, role: Role) -> [&[u8]; 4] {
        let name = self.name.as_bytes();
        match (&self.layout, role) {
            (KeyLayout::Tagged { prefix }, role) => [prefix, b"{", name, role.closing_suffix()],
            (KeyLayout::RedisPy, Role::Lock) => [name, b"", b"", b""],
            (KeyLayout::RedisPy, role) => {
                if name.contains(&b'}') {
                    // Keeps the name's own hash tag (if it has one): see the module doc.
                    [REDIS_PY_PREFIX, b"raw:", name, role.suffix()]
                } else {
                    // `{N}` is the tag: the slot of the key `N`, which is hashed whole.
                    [REDIS_PY_PREFIX, b"{", name, role.closing_suffix()]
                }
            }
            (KeyLayout::PythonRedisLock, Role::Lock) => [b"lock:", name, b"", b""],
            (KeyLayout::PythonRedisLock, Role::Signal) => [b"lock-signal:", name, b"", b""],
            (KeyLayout::PythonRedisLock, role) => {
                [PYTHON_REDIS_LOCK_PREFIX, name, role.suffix(), b""]
            }
        }
    }

    /// The key holding the token.
    #[must_use]
    pub fn lock(&self) -> [&[u8]; 4] {
        self.key(Role::Lock)
    }

    /// The fencing counter.
    #[must_use]
    pub fn fence(&self) -> [&[u8]; 4] {
        self.key(Role::Fence)
    }

    /// The re-entry count.
    #[must_use]
    pub fn holds(&self) -> [&[u8]; 4] {
        self.key(Role::Holds)
    }

    /// A mutex's wake-up list (a plain semaphore's is [`Keys::permit_signal`], a read-write
    /// lock's [`Keys::writer_signal`] and [`Keys::read_signal`]).
    #[must_use]
    pub fn signal(&self) -> [&[u8]; 4] {
        self.key(Role::Signal)
    }

    /// A plain mutex's waiting mark: `1` while some waiter may block on [`Keys::signal`], so a
    /// release knows to push a wake-up (see the release script in `core/src/script.rs` and
    /// the `acquire` module's "Waking up"). `None` under the python-redis-lock layout: that library's
    /// waiters never mark, so a release there always pushes.
    #[must_use]
    pub fn waiting(&self) -> Option<[&[u8]; 4]> {
        self.layout.has_waiting().then(|| self.key(Role::Waiting))
    }

    /// Whether the layout has room for fair mode's keys (the tagged layout only).
    #[must_use]
    pub fn has_queue(&self) -> bool {
        matches!(self.layout, KeyLayout::Tagged { .. })
    }

    /// A fair mutex's queue of waiters (a sorted set: waiter token by arrival ticket); a fair
    /// semaphore's is [`Keys::permit_queue`].
    #[must_use]
    pub fn queue(&self) -> [&[u8]; 4] {
        self.key(Role::Queue)
    }

    /// A fair mutex's per-waiter wake-up lists: this prefix followed by the waiter's token (a
    /// fair semaphore's: [`Keys::permit_wake_prefix`]).
    #[must_use]
    pub fn wake_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::Wake)
    }

    /// A fair mutex's per-waiter liveness keys: this prefix followed by the waiter's token;
    /// the key exists while the waiter is live (a fair semaphore's:
    /// [`Keys::permit_alive_prefix`]).
    #[must_use]
    pub fn alive_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::Alive)
    }

    /// A semaphore's permit keys: this prefix followed by the permit's token; the key exists
    /// while the permit is held, and its expiry is the permit's (see [`crate::Lock::semaphore`]).
    #[must_use]
    pub fn permit_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::Permit)
    }

    /// A fair semaphore's queue of waiters (a sorted set: waiter token by arrival ticket):
    /// its own, never a fair mutex's [`Keys::queue`] (see the module doc).
    #[must_use]
    pub fn permit_queue(&self) -> [&[u8]; 4] {
        self.key(Role::PermitQueue)
    }

    /// A fair semaphore's per-waiter liveness keys: this prefix followed by the waiter's
    /// token; the key exists while the waiter is live.
    #[must_use]
    pub fn permit_alive_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::PermitAlive)
    }

    /// A fair semaphore's per-waiter wake-up lists: this prefix followed by the waiter's
    /// token, pushed by the hand-off of a permit to that waiter.
    #[must_use]
    pub fn permit_wake_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::PermitWake)
    }

    /// A plain (non-fair) semaphore's wake-up list: a release pushes to it and the
    /// semaphore's waiters `BLPOP` it. Its own, never a mutex's [`Keys::signal`]: waiters
    /// outlive holds, so on a shared list a mutex waiter of the same name could take the
    /// wake-up a permit's release meant for a semaphore waiter (see the module doc).
    #[must_use]
    pub fn permit_signal(&self) -> [&[u8]; 4] {
        self.key(Role::PermitSignal)
    }

    /// A read-write lock's write holder: a string holding its token, whose expiry is the
    /// write hold's (see [`crate::Lock::rw`]).
    #[must_use]
    pub fn writer(&self) -> [&[u8]; 4] {
        self.key(Role::Writer)
    }

    /// A read-write lock's read holders: a sorted set of their tokens, kept alive at least as
    /// long as every read hold it names.
    #[must_use]
    pub fn readers(&self) -> [&[u8]; 4] {
        self.key(Role::Readers)
    }

    /// A read-write lock's read-hold keys: this prefix followed by the reader's token; the key
    /// exists while that read hold lives, and its expiry is the hold's.
    #[must_use]
    pub fn reader_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::Reader)
    }

    /// A read-write lock's readers' wake-up list (writers wait on [`Keys::writer_signal`]).
    #[must_use]
    pub fn read_signal(&self) -> [&[u8]; 4] {
        self.key(Role::ReadSignal)
    }

    /// A read-write lock's waiting writers (a sorted set of their owner tokens, score 0):
    /// its own, never fair mode's [`Keys::queue`] (see the module doc).
    #[must_use]
    pub fn writers(&self) -> [&[u8]; 4] {
        self.key(Role::WriterQueue)
    }

    /// A read-write lock's waiting writers' liveness keys: this prefix followed by the
    /// writer's owner token; the key exists while that writer's intent lives.
    #[must_use]
    pub fn writer_alive_prefix(&self) -> [&[u8]; 4] {
        self.key(Role::WriterAlive)
    }

    /// A read-write lock's writers' wake-up list (readers wait on [`Keys::read_signal`]; a
    /// mutex's waiters on [`Keys::signal`]).
    #[must_use]
    pub fn writer_signal(&self) -> [&[u8]; 4] {
        self.key(Role::WriterSignal)
    }
}

impl Role {
    /// `:fence`, `:holds`, `:signal` (nothing for the lock key).
    fn suffix(self) -> &'static [u8] {
        match self {
            Role::Lock => b"",
            Role::Fence => b":fence",
            Role::Holds => b":holds",
            Role::Signal => b":signal",
            Role::Queue => b":queue",
            Role::Wake => b":wake:",
            Role::Alive => b":alive:",
            Role::Permit => b":permit:",
            Role::Writer => b":writer",
            Role::Readers => b":readers",
            Role::Reader => b":reader:",
            Role::ReadSignal => b":read-signal",
            Role::WriterQueue => b":writers",
            Role::WriterAlive => b":writer-alive:",
            Role::WriterSignal => b":writer-signal",
            Role::PermitQueue => b":permit-queue",
            Role::PermitAlive => b":permit-alive:",
            Role::PermitWake => b":permit-wake:",
            Role::PermitSignal => b":permit-signal",
            Role::Waiting => b":waiting",
        }
    }

    /// The suffix after a name wrapped in a hash tag: `}:fence`, ….
    fn closing_suffix(self) -> &'static [u8] {
        match self {
            Role::Lock => b"}",
            Role::Fence => b"}:fence",
            Role::Holds => b"}:holds",
            Role::Signal => b"}:signal",
            Role::Queue => b"}:queue",
            Role::Wake => b"}:wake:",
            Role::Alive => b"}:alive:",
            Role::Permit => b"}:permit:",
            Role::Writer => b"}:writer",
            Role::Readers => b"}:readers",
            Role::Reader => b"}:reader:",
            Role::ReadSignal => b"}:read-signal",
            Role::WriterQueue => b"}:writers",
            Role::WriterAlive => b"}:writer-alive:",
            Role::WriterSignal => b"}:writer-signal",
            Role::PermitQueue => b"}:permit-queue",
            Role::PermitAlive => b"}:permit-alive:",
            Role::PermitWake => b"}:permit-wake:",
            Role::PermitSignal => b"}:permit-signal",
            Role::Waiting => b"}:waiting",
        }
    }
}

/// Which of a lock's keys a key is: what [`KeyLayout::recognise`] says of a key found on a
/// server, so operator commands (`reset`) act only on keys this layout provably built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyRole {
    /// The lock key: a string holding the holder's token.
    Lock,
    /// The fencing counter: a string holding a number; never reset, so fences only grow.
    Fence,
    /// The re-entry count: a string holding a number, with the lock's TTL.
    Holds,
    /// The wake-up list: a list of `1`s, always with a short TTL (it expires on its own).
    Signal,
    /// A fair mutex's queue of waiters (tagged layout only): a sorted set, with a TTL of a
    /// request timeout that every waiter's cycle renews. Its per-waiter keys (`:alive:<token>`,
    /// `:wake:<token>`) are not recognised: they live at most a request timeout.
    Queue,
    /// A fair semaphore's queue of waiters (tagged layout only), as [`KeyRole::Queue`] is a
    /// fair mutex's. Its per-waiter keys (`:permit-alive:<token>`, `:permit-wake:<token>`) are
    /// not recognised: they live at most a request timeout.
    PermitQueue,
    /// A read-write lock's waiting writers (tagged layout only): a sorted set, with a TTL of
    /// a writer's liveness that every waiting attempt renews. Its per-writer keys
    /// (`:writer-alive:<token>`) are not recognised: they live at most that liveness.
    Writers,
    /// A plain semaphore's wake-up list (tagged layout only), as [`KeyRole::Signal`] is a
    /// mutex's: a list of `1`s with a short TTL of its own.
    PermitSignal,
    /// A plain mutex's waiting mark (tagged and redis-py layouts): the string `1`, with an
    /// expiry of [`crate::WAITING_MARK_LIFE`]; while it exists a release pushes the wake-up.
    Waiting,
}

impl KeyRole {
    const ALL: [KeyRole; 9] = [
        KeyRole::Lock,
        KeyRole::Fence,
        KeyRole::Holds,
        KeyRole::Signal,
        KeyRole::Queue,
        KeyRole::PermitQueue,
        KeyRole::Writers,
        KeyRole::PermitSignal,
        KeyRole::Waiting,
    ];

    fn role(self) -> Role {
        match self {
            KeyRole::Lock => Role::Lock,
            KeyRole::Fence => Role::Fence,
            KeyRole::Holds => Role::Holds,
            KeyRole::Signal => Role::Signal,
            KeyRole::Queue => Role::Queue,
            KeyRole::PermitQueue => Role::PermitQueue,
            KeyRole::Writers => Role::WriterQueue,
            KeyRole::PermitSignal => Role::PermitSignal,
            KeyRole::Waiting => Role::Waiting,
        }
    }

    /// Whether only the tagged layout builds keys of this role (the waiters' sets, a
    /// semaphore's wake-up list).
    const fn is_tagged_only(self) -> bool {
        self.is_waiters() || matches!(self, KeyRole::PermitSignal)
    }

    /// Whether a force-unlock (`reset`) deletes keys of this role: the lock key, the
    /// re-entry count, the waiting mark (a waiter still live marks again on its next attempt),
    /// fair mode's queues (a fair mutex's and a fair semaphore's: their waiters
    /// queue again on their next cycle) and a
    /// read-write lock's waiting writers (they register again on their next attempt).
    /// Never the fencing counter (fences must stay monotonic across a reset); the wake-up list
    /// is not deleted either: it always carries a TTL of its own, and a reset replaces it with
    /// a fresh wake-up as a release does.
    #[must_use]
    pub const fn is_reset(self) -> bool {
        matches!(
            self,
            KeyRole::Lock
                | KeyRole::Holds
                | KeyRole::Waiting
                | KeyRole::Queue
                | KeyRole::PermitQueue
                | KeyRole::Writers
        )
    }

    /// Whether keys of this role are sorted sets of waiters (fair mode's queues, a read-write
    /// lock's waiting writers): a reset deletes them only while they are sorted sets.
    #[must_use]
    pub const fn is_waiters(self) -> bool {
        matches!(
            self,
            KeyRole::Queue | KeyRole::PermitQueue | KeyRole::Writers
        )
    }

    /// Whether `value`, the string a key of this role holds, is what the lock protocol writes
    /// there: a [`Token`] in the lock key, a decimal count (1 to 10 digits) in the re-entry
    /// count or the fence. A reset deletes a key only when it is (anything else is someone
    /// else's data under a name that happens to look like ours). The wake-up list and the
    /// waiters' sets are no strings, so no string fits them.
    #[must_use]
    pub fn fits(self, value: &[u8]) -> bool {
        match self {
            KeyRole::Lock => Token::new(value).is_ok(),
            KeyRole::Holds | KeyRole::Fence => {
                (1..=10).contains(&value.len()) && value.iter().all(u8::is_ascii_digit)
            }
            KeyRole::Waiting => value == b"1",
            KeyRole::Signal
            | KeyRole::PermitSignal
            | KeyRole::Queue
            | KeyRole::PermitQueue
            | KeyRole::Writers => false,
        }
    }
}

impl KeyLayout {
    /// The lock name and role of `key` when `key` is exactly a key this layout builds for
    /// some valid lock name (and `None` for every other key): the check an operator command
    /// makes before it touches a key it found by `SCAN`. The answer is proved by rebuilding:
    /// a key is recognised only when [`Keys::new`] for the parsed name gives back the same
    /// bytes for that role. So `distlock:config`, `distlock:{x}:other` or a key of another
    /// prefix are never recognised under the default layout.
    #[must_use]
    pub fn recognise(&self, key: &[u8]) -> Option<(LockName, KeyRole)> {
        KeyRole::ALL.into_iter().find_map(|role| {
            // Only the tagged layout has waiters' sets and a semaphore's wake-up list.
            if role.is_tagged_only() && !matches!(self, KeyLayout::Tagged { .. }) {
                return None;
            }
            // The python-redis-lock layout has no waiting mark.
            if role == KeyRole::Waiting && !self.has_waiting() {
                return None;
            }
            let name = self.name_in(key, role.role())?;
            let name = LockName::new(name).ok()?;
            self.check_name(&name).ok()?;
            let keys = Keys::new(self.clone(), name);
            let built = keys.key(role.role());
            let matches = built.iter().map(|p| p.len()).sum::<usize>() == key.len()
                && built
                    .iter()
                    .flat_map(|p| p.iter())
                    .zip(key)
                    .all(|(a, b)| a == b);
            matches.then_some((keys.name, role))
        })
    }

    /// The bytes that would be the lock name if `key` were this layout's key of `role`
    /// (unchecked: [`KeyLayout::recognise`] rebuilds the key to prove it).
    fn name_in<'k>(&self, key: &'k [u8], role: Role) -> Option<&'k [u8]> {
        match (self, role) {
            (KeyLayout::Tagged { prefix }, role) => key
                .strip_prefix(prefix.as_slice())?
                .strip_prefix(b"{")?
                .strip_suffix(role.closing_suffix()),
            (KeyLayout::RedisPy, Role::Lock) => Some(key),
            (KeyLayout::RedisPy, role) => {
                let ours = key.strip_prefix(REDIS_PY_PREFIX)?;
                match ours.strip_prefix(b"raw:") {
                    Some(raw) => raw.strip_suffix(role.suffix()),
                    None => ours.strip_prefix(b"{")?.strip_suffix(role.closing_suffix()),
                }
            }
            (KeyLayout::PythonRedisLock, Role::Lock) => key.strip_prefix(b"lock:"),
            (KeyLayout::PythonRedisLock, Role::Signal) => key.strip_prefix(b"lock-signal:"),
            (KeyLayout::PythonRedisLock, role) => key
                .strip_prefix(PYTHON_REDIS_LOCK_PREFIX)?
                .strip_suffix(role.suffix()),
        }
    }
}

/// How many keys one `SCAN` call of a reset walk asks the server to look at: small enough
/// that each call is short on a large database, large enough that a walk takes few calls.
pub const RESET_SCAN_COUNT: u32 = 500;

/// The longest a reset walk of one node (`reset --all`) may run before it stops and reports
/// how far it got (each call within it is bounded by the request timeout as well).
pub const RESET_WALK_LIMIT: crate::time::Duration = crate::time::Duration::from_secs(30);

/// The secret that proves ownership of a lease: only the holder of the token releases or
/// extends it. Printable, so it can be printed by one process and handed to another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(heapless::String<MAX_TOKEN_LEN>);

impl Token {
    /// A fresh token from 16 bytes (128 bits) of caller entropy, as 32 lowercase hex digits.
    /// The core has no randomness of its own: pass bytes from the OS's CSPRNG.
    #[must_use]
    pub fn from_entropy(entropy: [u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = heapless::String::new();
        for byte in entropy {
            for nibble in [byte >> 4, byte & 0x0f] {
                // Both indices are < 16, and 32 chars fit MAX_TOKEN_LEN.
                let c = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                let _ = text.push(char::from(c));
            }
        }
        Token(text)
    }

    /// A token given by the caller (one printed by another process, say): 16 to 64 printable
    /// ASCII bytes, no spaces.
    pub fn new(token: &[u8]) -> Result<Self, ConfigError> {
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())
            || !token.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::BadToken);
        }
        let text = core::str::from_utf8(token).map_err(|_| ConfigError::BadToken)?;
        heapless::String::try_from(text)
            .map(Token)
            .map_err(|_| ConfigError::BadToken)
    }

    /// The token acquire attempt `attempt` writes: the token itself for the first attempt on
    /// a plain lock, `<token>.<attempt>` otherwise (the token cut to fit [`MAX_TOKEN_LEN`]).
    /// Distinct per attempt, so a compare-and-delete that rolls back a failed attempt can
    /// never remove what a later attempt took — even when it reaches the node late, over a
    /// connection the driver has already replaced. On a reentrant lock the owner's token is
    /// what re-enters, so no attempt writes it: a later attempt never mistakes an earlier
    /// one's key for a re-entry. The lease reports the winning attempt's token: that is the
    /// one to release, extend or re-enter with.
    #[must_use]
    pub fn for_attempt(&self, attempt: u32, reentrant: bool) -> Token {
        if attempt <= 1 && !reentrant {
            return self.clone();
        }
        let mut digits = [0u8; 20];
        let suffix = crate::resp::encode::decimal(u64::from(attempt), &mut digits);
        let keep = self
            .0
            .len()
            .min(MAX_TOKEN_LEN.saturating_sub(suffix.len() + 1));
        let mut text = heapless::String::new();
        // All ASCII, and `keep + 1 + suffix` fits MAX_TOKEN_LEN by construction.
        let _ = text.push_str(self.0.get(..keep).unwrap_or_default());
        let _ = text.push('.');
        let _ = text.push_str(core::str::from_utf8(suffix).unwrap_or_default());
        Token(text)
    }

    /// The token's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl core::fmt::Display for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::strategy::Just;

    fn joined(parts: [&[u8]; 4]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn the_reserved_name_message_quotes_the_reserved_prefix() {
        use alloc::string::ToString;
        let prefix = core::str::from_utf8(REDIS_PY_PREFIX).unwrap();
        assert!(
            ConfigError::ReservedName.to_string().contains(prefix),
            "the message must name the prefix the layout reserves"
        );
    }

    /// The slot-relevant part of a key, as Redis Cluster computes it.
    fn hash_tag(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{')
            && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(LockName::new(b""), Err(ConfigError::EmptyName));
        assert_eq!(
            LockName::new(b"a\r\nb"),
            Err(ConfigError::NameControlByte { at: 1 })
        );
        assert_eq!(
            LockName::new(b"\0"),
            Err(ConfigError::NameControlByte { at: 0 })
        );
        assert_eq!(
            LockName::new(&[b'x'; MAX_NAME_LEN + 1]),
            Err(ConfigError::NameTooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        assert!(LockName::new(&[b'x'; MAX_NAME_LEN]).is_ok());
        assert!(LockName::new(&[0xff, 0xfe, b'{', b'}']).is_ok());
        assert_eq!(LockName::new(b"}x"), Err(ConfigError::NameStartsWithBrace));
    }

    #[test]
    fn default_layout_keys() {
        let keys = Keys::new(KeyLayout::default(), LockName::new(b"jobs").unwrap());
        assert_eq!(joined(keys.lock()), b"distlock:{jobs}");
        assert_eq!(joined(keys.fence()), b"distlock:{jobs}:fence");
        assert_eq!(joined(keys.holds()), b"distlock:{jobs}:holds");
        assert_eq!(joined(keys.signal()), b"distlock:{jobs}:signal");
    }

    proptest::proptest! {
        #[test]
        fn all_keys_of_a_lock_share_one_cluster_slot(
            prefix in proptest::collection::vec(proptest::prop_oneof![Just(b'{'), Just(b'}'), 0x20u8..=0xff], 0..12),
            name in proptest::collection::vec(proptest::prop_oneof![Just(b'{'), Just(b'}'), 0x20u8..=0xff], 1..12),
        ) {
            // Whatever is accepted must keep the keys in one slot.
            let (Ok(layout), Ok(name)) = (KeyLayout::tagged(&prefix), LockName::new(&name)) else {
                return Ok(());
            };
            let keys = Keys::new(layout, name);
            let lock = joined(keys.lock());
            for other in [joined(keys.fence()), joined(keys.holds()), joined(keys.signal())] {
                proptest::prop_assert_eq!(hash_tag(&lock), hash_tag(&other));
            }
        }
    }

    #[test]
    fn redis_py_layout_keys() {
        let keys = Keys::new(KeyLayout::redis_py(), LockName::new(b"jobs").unwrap());
        assert_eq!(joined(keys.lock()), b"jobs");
        assert_eq!(joined(keys.fence()), b"distlock-redis-py:{jobs}:fence");
        assert_eq!(joined(keys.holds()), b"distlock-redis-py:{jobs}:holds");
        assert_eq!(joined(keys.signal()), b"distlock-redis-py:{jobs}:signal");
        // A name with a `}` keeps its own hash tag: no brace of ours before it.
        let keys = Keys::new(KeyLayout::redis_py(), LockName::new(b"a{b}c").unwrap());
        assert_eq!(joined(keys.lock()), b"a{b}c");
        assert_eq!(joined(keys.fence()), b"distlock-redis-py:raw:a{b}c:fence");
        assert_eq!(joined(keys.holds()), b"distlock-redis-py:raw:a{b}c:holds");
        assert_eq!(joined(keys.signal()), b"distlock-redis-py:raw:a{b}c:signal");
        // A `{` alone is no tag: the name is wrapped like any other.
        let keys = Keys::new(KeyLayout::redis_py(), LockName::new(b"a{b").unwrap());
        assert_eq!(joined(keys.fence()), b"distlock-redis-py:{a{b}:fence");
    }

    #[test]
    fn python_redis_lock_layout_keys() {
        let keys = Keys::new(
            KeyLayout::python_redis_lock(),
            LockName::new(b"jobs").unwrap(),
        );
        assert_eq!(joined(keys.lock()), b"lock:jobs");
        assert_eq!(joined(keys.signal()), b"lock-signal:jobs");
        assert_eq!(
            joined(keys.fence()),
            b"distlock-python-redis-lock:jobs:fence"
        );
        assert_eq!(
            joined(keys.holds()),
            b"distlock-python-redis-lock:jobs:holds"
        );
    }

    #[test]
    fn only_the_tagged_layout_has_a_prefix_to_walk() {
        assert_eq!(KeyLayout::default().prefix(), Some(DEFAULT_PREFIX));
        assert_eq!(KeyLayout::tagged(b"").unwrap().prefix(), Some(&b""[..]));
        assert_eq!(KeyLayout::redis_py().prefix(), None);
        assert_eq!(KeyLayout::python_redis_lock().prefix(), None);
        assert_eq!(
            [
                KeyLayout::default(),
                KeyLayout::redis_py(),
                KeyLayout::python_redis_lock()
            ]
            .map(|l| l.name()),
            ["tagged", "redis-py", "python-redis-lock"]
        );
    }

    #[test]
    fn redis_py_names_may_not_be_our_own_keys() {
        let ours = LockName::new(b"distlock-redis-py:{jobs}:fence").unwrap();
        assert_eq!(
            KeyLayout::redis_py().check_name(&ours),
            Err(ConfigError::ReservedName)
        );
        assert_eq!(KeyLayout::default().check_name(&ours), Ok(()));
        assert_eq!(KeyLayout::python_redis_lock().check_name(&ours), Ok(()));
        let plain = LockName::new(b"distlock-redis-py").unwrap();
        assert_eq!(KeyLayout::redis_py().check_name(&plain), Ok(()));
    }

    /// Names from bytes that make keys meet if anything can: braces, colons, and the letters
    /// of the prefixes.
    fn tricky_name() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::prop_oneof![
                Just(b'{'),
                Just(b'}'),
                Just(b':'),
                Just(b'-'),
                proptest::sample::select(b"distlockredispyfencholdsgnaw".to_vec()),
                0x20u8..=0xff
            ],
            1..14,
        )
    }

    fn every_key(keys: &Keys) -> [Vec<u8>; 4] {
        [keys.lock(), keys.fence(), keys.holds(), keys.signal()].map(joined)
    }

    fn has_hash_tag(name: &[u8]) -> bool {
        hash_tag(name).len() < name.len()
    }

    proptest::proptest! {
        #[test]
        fn redis_py_keys_share_the_lock_keys_slot_unless_no_key_can(name in tricky_name()) {
            let Ok(name) = LockName::new(&name) else {
                return Ok(());
            };
            let can = !name.as_bytes().contains(&b'}') || has_hash_tag(name.as_bytes());
            let keys = Keys::new(KeyLayout::redis_py(), name);
            let lock = joined(keys.lock());
            // The lock key is the name itself: hashed on its tag, or whole.
            proptest::prop_assert_eq!(&lock, keys.name().as_bytes());
            for other in [joined(keys.fence()), joined(keys.holds()), joined(keys.signal())] {
                // Exactly the names with a `}` and no tag are out of reach (module doc).
                proptest::prop_assert_eq!(hash_tag(&lock) == hash_tag(&other), can);
            }
        }

        #[test]
        fn python_redis_lock_keys_share_a_slot_when_its_own_keys_do(name in tricky_name()) {
            let Ok(name) = LockName::new(&name) else {
                return Ok(());
            };
            let tagged = has_hash_tag(name.as_bytes());
            let keys = Keys::new(KeyLayout::python_redis_lock(), name);
            let lock = joined(keys.lock());
            // python-redis-lock's own two keys: one slot only for a tagged name.
            proptest::prop_assert_eq!(hash_tag(&lock) == hash_tag(&joined(keys.signal())), tagged);
            for other in [joined(keys.fence()), joined(keys.holds())] {
                proptest::prop_assert_eq!(hash_tag(&lock) == hash_tag(&other), tagged);
            }
        }

        #[test]
        fn no_two_locks_share_a_key(
            a in tricky_name(),
            other in tricky_name(),
            relation in 0usize..5,
            la in 0usize..3,
            lb in 0usize..3,
        ) {
            let layouts = [KeyLayout::default(), KeyLayout::redis_py(), KeyLayout::python_redis_lock()];
            // The second name is often made from the first: that is how keys would meet.
            let b: Vec<u8> = match relation {
                0 => other,
                1 => [&b"{"[..], &a, b"}"].concat(),
                2 => [&a[..], &other].concat(),
                3 => [&other[..], &a].concat(),
                _ => a.clone(),
            };
            let (Ok(a), Ok(b)) = (LockName::new(&a), LockName::new(&b)) else {
                return Ok(());
            };
            let keys_a = Keys::new(layouts[la].clone(), a);
            let keys_b = Keys::new(layouts[lb].clone(), b);
            if layouts[la].check_name(keys_a.name()).is_err()
                || layouts[lb].check_name(keys_b.name()).is_err()
            {
                return Ok(());
            }
            let (all_a, all_b) = (every_key(&keys_a), every_key(&keys_b));
            // A lock's four keys are four keys.
            for (i, x) in all_a.iter().enumerate() {
                for y in &all_a[i + 1..] {
                    proptest::prop_assert_ne!(x, y);
                }
            }
            if keys_a == keys_b {
                return Ok(());
            }
            for (i, x) in all_a.iter().enumerate() {
                for (j, y) in all_b.iter().enumerate() {
                    // A redis-py lock key is whatever name the user picked, so it may be any
                    // other library's or layout's key by choice; never one of our own keys
                    // of its layout, though (reserved names).
                    let user_picked = (la == 1 && i == 0) || (lb == 1 && j == 0);
                    let same_layout_own = la == 1 && lb == 1;
                    if user_picked && !same_layout_own {
                        continue;
                    }
                    proptest::prop_assert_ne!(x, y, "{} of {:?} and {} of {:?}", i, keys_a, j, keys_b);
                }
            }
        }
    }

    #[test]
    fn only_keys_the_layout_builds_are_recognised() {
        let layout = KeyLayout::default();
        let name = |n: &[u8]| LockName::new(n).unwrap();
        assert_eq!(
            layout.recognise(b"distlock:{jobs}"),
            Some((name(b"jobs"), KeyRole::Lock))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:fence"),
            Some((name(b"jobs"), KeyRole::Fence))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:holds"),
            Some((name(b"jobs"), KeyRole::Holds))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:signal"),
            Some((name(b"jobs"), KeyRole::Signal))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:queue"),
            Some((name(b"jobs"), KeyRole::Queue))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:writers"),
            Some((name(b"jobs"), KeyRole::Writers))
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:permit-queue"),
            Some((name(b"jobs"), KeyRole::PermitQueue))
        );
        // A waiter's own keys are not recognised: they end with its token.
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:alive:0123456789abcdef0123456789abcdef"),
            None
        );
        assert_eq!(
            layout.recognise(b"distlock:{jobs}:writer-alive:0123456789abcdef0123456789abcdef"),
            None
        );
        assert_eq!(layout.recognise(b"distlock:{jobs}:writer-signal"), None);
        for waiter_key in [&b"permit-alive:"[..], b"permit-wake:"] {
            let key = [
                &b"distlock:{jobs}:"[..],
                waiter_key,
                b"0123456789abcdef0123456789abcdef",
            ];
            assert_eq!(layout.recognise(&key.concat()), None);
        }
        // The Python layouts have no queue.
        assert_eq!(
            KeyLayout::redis_py().recognise(b"distlock-redis-py:{jobs}:queue"),
            None
        );
        assert_eq!(
            KeyLayout::redis_py().recognise(b"distlock-redis-py:{jobs}:writers"),
            None
        );
        // A name may hold a `}`: the role is the suffix after the last brace.
        assert_eq!(
            layout.recognise(b"distlock:{a}:fence}"),
            Some((name(b"a}:fence"), KeyRole::Lock))
        );
        for foreign in [
            &b"distlock:config"[..],
            b"distlock:{x}:other",
            b"distlock:{}",
            b"distlock:{}x}",
            b"distlock:{x",
            b"distlock:x}",
            b"other:{x}",
            b"{x}",
            b"user:1",
            b"distlock:{a\nb}",
        ] {
            assert_eq!(layout.recognise(foreign), None, "{foreign:?}");
        }
        let empty = KeyLayout::tagged(b"").unwrap();
        assert_eq!(empty.recognise(b"{x}"), Some((name(b"x"), KeyRole::Lock)));
        assert_eq!(empty.recognise(b"user:1"), None);
        assert_eq!(
            KeyLayout::python_redis_lock().recognise(b"lock-signal:jobs"),
            Some((name(b"jobs"), KeyRole::Signal))
        );
        assert_eq!(KeyLayout::python_redis_lock().recognise(b"user:1"), None);
        assert_eq!(
            KeyLayout::redis_py().recognise(b"distlock-redis-py:raw:a{b}c:holds"),
            Some((name(b"a{b}c"), KeyRole::Holds))
        );
        // The raw form is only for names with a `}`, the braced form only without.
        assert_eq!(
            KeyLayout::redis_py().recognise(b"distlock-redis-py:raw:abc:holds"),
            None
        );
    }

    #[test]
    fn reset_deletes_only_what_the_protocol_wrote() {
        assert!(KeyRole::Lock.fits(b"0123456789abcdef0123456789abcdef"));
        assert!(KeyRole::Lock.fits(b"0123456789abcdef.2"));
        assert!(!KeyRole::Lock.fits(b"alice"));
        assert!(!KeyRole::Lock.fits(b"a value with spaces, long enough"));
        assert!(KeyRole::Holds.fits(b"3"));
        assert!(!KeyRole::Holds.fits(b""));
        assert!(!KeyRole::Holds.fits(b"-1"));
        assert!(!KeyRole::Holds.fits(b"12345678901"));
        assert!(!KeyRole::Signal.fits(b"1"));
        assert!(!KeyRole::Queue.fits(b"1"));
        assert!(!KeyRole::Writers.fits(b"1"));
        assert!(!KeyRole::PermitQueue.fits(b"1"));
        assert!(KeyRole::PermitQueue.is_reset() && KeyRole::PermitQueue.is_waiters());
        assert!(KeyRole::Lock.is_reset() && KeyRole::Holds.is_reset() && KeyRole::Queue.is_reset());
        assert!(KeyRole::Writers.is_reset() && KeyRole::Writers.is_waiters());
        assert!(!KeyRole::Fence.is_reset() && !KeyRole::Signal.is_reset());
        assert!(!KeyRole::PermitSignal.is_reset() && !KeyRole::PermitSignal.fits(b"1"));
    }

    proptest::proptest! {
        #[test]
        fn every_built_key_is_recognised_as_itself(
            name in tricky_name(),
            prefix in proptest::collection::vec(proptest::prop_oneof![Just(b':'), Just(b'*'), 0x20u8..=0x7e], 0..10),
            which in 0usize..3,
        ) {
            let layout = match which {
                0 => match KeyLayout::tagged(&prefix) { Ok(l) => l, Err(_) => return Ok(()) },
                1 => KeyLayout::redis_py(),
                _ => KeyLayout::python_redis_lock(),
            };
            let Ok(name) = LockName::new(&name) else { return Ok(()) };
            if layout.check_name(&name).is_err() {
                return Ok(());
            }
            let keys = Keys::new(layout.clone(), name.clone());
            for (key, role) in [
                (joined(keys.lock()), KeyRole::Lock),
                (joined(keys.fence()), KeyRole::Fence),
                (joined(keys.holds()), KeyRole::Holds),
                (joined(keys.signal()), KeyRole::Signal),
            ] {
                proptest::prop_assert_eq!(layout.recognise(&key), Some((name.clone(), role)));
            }
            for (key, role) in [
                (joined(keys.queue()), KeyRole::Queue),
                (joined(keys.writers()), KeyRole::Writers),
                (joined(keys.permit_queue()), KeyRole::PermitQueue),
                (joined(keys.permit_signal()), KeyRole::PermitSignal),
            ] {
                let found = layout.recognise(&key);
                if keys.has_queue() {
                    proptest::prop_assert_eq!(found, Some((name.clone(), role)));
                } else {
                    proptest::prop_assert_eq!(found, None);
                }
            }
        }

        #[test]
        fn a_recognised_key_is_one_the_layout_builds(
            key in proptest::collection::vec(
                proptest::prop_oneof![
                    Just(b'{'), Just(b'}'), Just(b':'),
                    proptest::sample::select(b"distlock:fenceholdssignalqueuewriterspermit-".to_vec()),
                    0x00u8..=0xff
                ],
                0..24,
            ),
            with_prefix in proptest::bool::ANY,
            which in 0usize..3,
        ) {
            let layout = [KeyLayout::default(), KeyLayout::redis_py(), KeyLayout::python_redis_lock()][which].clone();
            // Random keys, often starting like the layout's own.
            let key = if with_prefix { [&b"distlock:{"[..], &key].concat() } else { key };
            if let Some((name, role)) = layout.recognise(&key) {
                let keys = Keys::new(layout, name);
                proptest::prop_assert_eq!(joined(keys.key(role.role())), key);
            }
        }
    }

    #[test]
    fn tokens() {
        let t = Token::from_entropy([0xab; 16]);
        assert_eq!(t.as_str(), "abababababababababababababababab");
        assert_eq!(Token::new(b"short"), Err(ConfigError::BadToken));
        assert_eq!(
            Token::new(b"0123456789abcdef with space"),
            Err(ConfigError::BadToken)
        );
        assert_eq!(
            Token::new(b"0123456789abcdef\r\n"),
            Err(ConfigError::BadToken)
        );
        assert_eq!(Token::new(&[b'a'; 65]), Err(ConfigError::BadToken));
        assert_eq!(Token::new(t.as_bytes()), Ok(t));
    }

    #[test]
    fn every_attempt_has_its_own_token() {
        let t = Token::from_entropy([0x11; 16]);
        assert_eq!(t.for_attempt(1, false), t);
        assert_eq!(
            t.for_attempt(1, true).as_str(),
            alloc::format!("{}.1", t.as_str())
        );
        assert_eq!(
            t.for_attempt(2, false).as_str(),
            alloc::format!("{}.2", t.as_str())
        );
        let long = Token::new(&[b'z'; MAX_TOKEN_LEN]).unwrap();
        let fourth = long.for_attempt(4_000_000_000, false);
        assert_eq!(fourth.as_str().len(), MAX_TOKEN_LEN);
        assert!(fourth.as_str().ends_with(".4000000000"));
        assert_ne!(long.for_attempt(5, false), long.for_attempt(6, false));
        assert_eq!(Token::new(fourth.as_bytes()), Ok(fourth));
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(
            KeyLayout::tagged(&[b'p'; MAX_PREFIX_LEN + 1]),
            Err(ConfigError::BadPrefix)
        );
        assert_eq!(KeyLayout::tagged(b"a\nb"), Err(ConfigError::BadPrefix));
        assert_eq!(KeyLayout::tagged(b"a{}:"), Err(ConfigError::BadPrefix));
        assert!(KeyLayout::tagged(b"").is_ok());
    }
}
