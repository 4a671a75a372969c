//! Multi-name locks: several names taken all or nothing under one token, held, renewed and
//! released together.
//!
//! A multi-name lock is a [`Lock`] built by [`Lock::multi`]; the same machines drive it as a
//! mutex ([`crate::Acquire`], [`crate::Release`], [`crate::Extend`], [`crate::Renewal`]) and
//! yield one [`crate::Lease`] for the whole set. Only the scripts differ
//! ([`crate::script::MULTI_ACQUIRE`], `MULTI_RELEASE`, `MULTI_EXTEND`, `MULTI_RAISE_FENCE`).
//!
//! ## Why `Lock::multi` and not a `MultiLock` type
//! The machines, the renewal, the host's guards and every driver already take a [`Lock`];
//! a multi-name lock differs from a mutex only in which keys its scripts touch. Building it as
//! a [`Lock`] (as the semaphore and the read-write lock are) gives it Redlock, retries,
//! wake-ups, rollbacks, renewal and durability without a second copy of any of them.
//!
//! ## Design, and why
//! - **One token, every name's mutex key.** Each name `N` is held exactly as a plain mutex
//!   holds it: `<prefix>{N}` holds the token with `PX ttl`. So a multi-name lock and a plain
//!   [`Lock::new`] of one of its names exclude each other (a mutex's `SET NX` sees the key
//!   held, the multi-name script sees the mutex's key), and `status`/`reset` read it as usual.
//! - **All or nothing, on each node.** [`crate::script::MULTI_ACQUIRE`] checks every name's
//!   key before it writes any: if one is of another kind (a semaphore's or a read-write
//!   lock's name) it fails with `WRONGTYPE`, as a mutex does there; if one holds a token, it
//!   writes nothing and reports that key's PTTL;
//!   else it sets all of them with the same `PX`. Keys set with one `PX` in one script expire
//!   at the same instant, and extend renews all or none, so on a node the names hold the
//!   token all together or not at all, at every instant — the claim the simulator checks
//!   (`core/tests/multi_simulation.rs`, with a broken one-by-one script it catches).
//! - **Sorted and deduplicated before anything is sent.** The names are kept in byte order,
//!   so two clients' scripts list the same keys in the same order, and every request is the
//!   same whatever order the caller gave. A name given twice is a typed error
//!   ([`ConfigError::DuplicateName`]), not a silent merge: a caller that listed a name twice
//!   most likely meant another.
//! - **Redlock.** The quorum is over nodes, each node all-or-nothing: a node grants the whole
//!   set or none of it, so "a quorum of nodes granted" means "a quorum holds every name", and
//!   two quorums share a node, which holds every name of at most one token. A failed attempt's
//!   rollback releases every name it may have taken on every node.
//! - **Fencing: one fence for the set.** Fenced, the script takes the largest of the names'
//!   counters plus one and sets every name's counter to it: the fence is larger than every
//!   earlier holder's of each name (what a resource guarded by any one of the names checks),
//!   and each counter still only grows. Over several nodes the fence is raised on every name
//!   by [`crate::script::MULTI_RAISE_FENCE`].
//! - **Release** compares-and-deletes each name holding the token (a key of another type is
//!   not the token's, so the script never fails half-way) and pushes each released name's
//!   wake-up signal; a waiter `BLPOP`s every name's signal at once.
//!
//! ## Redis Cluster
//! A script's keys must share a slot. In the tagged layout a name is its own hash tag up to
//! its first `}`, so names share a slot exactly when their bytes before the first `}` agree:
//! `{orders}:1` and `{orders}:2` (keys `distlock:{{orders}:1}`…, tag `{orders`), or
//! `orders}1` and `orders}2` (tag `orders`). [`Lock::slot`] says which; a driver refuses the
//! lock on a cluster node with [`SpansSlots`] otherwise, before anything is sent (names
//! taken one by one in sorted order across slots, node-redlock's way, are not atomic: a
//! failure half-way leaves a partial hold that blocks others). A single server and Redlock
//! over independent servers take any names.
//!
//! ## Limits
//! 1 to [`MAX_MULTI_NAMES`] names ([`ConfigError::NoNames`], [`ConfigError::TooManyNames`]),
//! the tagged key layout, scripts on, not reentrant, not fair
//! ([`ConfigError::MultiUnsupported`], [`ConfigError::NeedsScripts`]): refused before
//! anything is sent.

use alloc::vec::Vec;

use crate::commands::{Encoder, Request};
use crate::error::{ConfigError, ScriptedFeature};
use crate::keys::{KeyLayout, Keys, LockName};
use crate::limits::MAX_MULTI_NAMES;
use crate::lock::{Lock, LockOptions, Scripts};
use crate::resp::Sink;
use crate::script;
use crate::slot::{SpansSlots, lock_slot};
use crate::time::Duration;

/// The names of a multi-name lock: their keys, sorted by name, no two alike, 1 to
/// [`MAX_MULTI_NAMES`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MultiNames(Vec<Keys>);

impl Lock {
    /// A lock of every name in `names` at once under `layout`: one token, one lease, taken all
    /// or nothing (see the `multi` module doc: each name is held as a plain mutex holds it,
    /// one fence for the set, Redlock's quorum over nodes). The names are sorted first.
    /// Refused before anything is sent: no name ([`ConfigError::NoNames`]), more than
    /// [`MAX_MULTI_NAMES`] ([`ConfigError::TooManyNames`]), a name given twice
    /// ([`ConfigError::DuplicateName`]), any name [`Lock::new`] refuses, a layout other than
    /// the tagged one, re-entry or fair mode ([`ConfigError::MultiUnsupported`]), and
    /// [`Scripts::Never`] ([`ConfigError::NeedsScripts`]).
    pub fn multi(
        layout: KeyLayout,
        names: &[&[u8]],
        options: LockOptions,
    ) -> Result<Self, ConfigError> {
        if names.is_empty() {
            return Err(ConfigError::NoNames);
        }
        if names.len() > MAX_MULTI_NAMES {
            return Err(ConfigError::TooManyNames { count: names.len() });
        }
        let mut checked: Vec<(LockName, usize)> = Vec::with_capacity(names.len());
        for (at, name) in names.iter().enumerate() {
            let name = LockName::new(name)?;
            layout.check_name(&name)?;
            checked.push((name, at));
        }
        checked.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
        if let Some(pair) = checked.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(ConfigError::DuplicateName {
                first: pair[0].1,
                second: pair[1].1,
            });
        }
        options.validate()?;
        if options.scripts == Scripts::Never {
            return Err(ConfigError::NeedsScripts(ScriptedFeature::MultiName));
        }
        if options.reentrant || options.fair || !matches!(layout, KeyLayout::Tagged { .. }) {
            return Err(ConfigError::MultiUnsupported);
        }
        let keys: Vec<Keys> = checked
            .into_iter()
            .map(|(name, _)| Keys::new(layout.clone(), name))
            .collect();
        let first = keys.first().cloned().ok_or(ConfigError::NoNames)?;
        Ok(Lock {
            keys: first,
            options,
            limit: None,
            rw: None,
            multi: Some(MultiNames(keys)),
        })
    }

    /// The keys of every name this lock takes, sorted by name: one for a single-name lock.
    #[must_use]
    pub fn every_name(&self) -> &[Keys] {
        match &self.multi {
            Some(names) => &names.0,
            None => core::slice::from_ref(&self.keys),
        }
    }

    /// Whether this is a multi-name lock ([`Lock::multi`]).
    #[must_use]
    pub fn is_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// The one Redis Cluster slot all of this lock's keys share, over every name.
    ///
    /// # Errors
    ///
    /// [`SpansSlots`] when two of them lie in different slots: a cluster would refuse its
    /// scripts (`CROSSSLOT`), so a driver refuses the lock on a cluster node.
    pub fn slot(&self) -> Result<u16, SpansSlots> {
        let first = lock_slot(&self.keys)?;
        for keys in self.every_name() {
            let other = lock_slot(keys)?;
            if other != first {
                return Err(SpansSlots { lock: first, other });
            }
        }
        Ok(first)
    }
}

impl Encoder<'_> {
    /// A multi-name lock's request (see [`Lock::multi`]): its scripts, with `token` the
    /// attempt's (acquire, rollback) or the lease's (release, extend), every name's keys in
    /// name order. The replies have the mutex's shapes, so the commands' `interpret` reads
    /// them alike.
    pub(crate) fn encode_multi(
        &self,
        request: Request,
        names: &MultiNames,
        token: &[u8],
        sink: &mut dyn Sink,
    ) {
        let options = self.lock.options();
        let names = &names.0;
        match request {
            Request::Acquire { .. } | Request::FairAcquire { .. } => {
                let keys: Vec<[&[u8]; 4]> = names
                    .iter()
                    .flat_map(|keys| [keys.lock(), keys.fence()])
                    .collect();
                self.multi_header(sink, &script::MULTI_ACQUIRE, &keys, 3);
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk(if options.fenced { b"1" } else { b"0" });
            }
            Request::Release | Request::Rollback { .. } => {
                let keys: Vec<[&[u8]; 4]> = names
                    .iter()
                    .flat_map(|keys| [keys.lock(), keys.signal()])
                    .collect();
                self.multi_header(sink, &script::MULTI_RELEASE, &keys, 2);
                sink.bulk(token);
                sink.bulk_u64(options.wake_signal.map_or(0, Duration::as_millis));
            }
            Request::Extend => {
                let keys: Vec<[&[u8]; 4]> = names.iter().map(Keys::lock).collect();
                self.multi_header(sink, &script::MULTI_EXTEND, &keys, 2);
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
            }
            Request::RaiseFence(value) => {
                let keys: Vec<[&[u8]; 4]> = names.iter().map(Keys::fence).collect();
                self.multi_header(sink, &script::MULTI_RAISE_FENCE, &keys, 1);
                sink.bulk_u64(value);
            }
            Request::Wait(timeout) => {
                sink.array(names.len().saturating_add(2));
                sink.bulk(b"BLPOP");
                for keys in names {
                    sink.bulk_parts(&keys.signal());
                }
                self.block_timeout(timeout, sink);
            }
        }
    }

    fn multi_header(
        &self,
        sink: &mut dyn Sink,
        script: &script::Script,
        keys: &[[&[u8]; 4]],
        args: usize,
    ) {
        let keys: Vec<&[&[u8]; 4]> = keys.iter().collect();
        self.script_header(sink, script, &keys, args);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::key_slot;

    fn names(lock: &Lock) -> Vec<&[u8]> {
        lock.every_name()
            .iter()
            .map(|keys| keys.name().as_bytes())
            .collect()
    }

    #[test]
    fn names_are_sorted_and_bad_sets_are_refused_before_anything_is_sent() {
        let options = LockOptions::default();
        let layout = KeyLayout::default();
        let lock = Lock::multi(layout.clone(), &[b"c", b"a", b"b"], options).unwrap();
        assert_eq!(names(&lock), [&b"a"[..], b"b", b"c"]);
        assert_eq!(lock.keys().name().as_bytes(), b"a");
        assert!(lock.is_multi());
        assert!(!Lock::new(layout.clone(), b"a", options).unwrap().is_multi());
        assert_eq!(
            Lock::multi(layout.clone(), &[], options),
            Err(ConfigError::NoNames)
        );
        assert_eq!(
            Lock::multi(layout.clone(), &[b"b", b"a", b"b"], options),
            Err(ConfigError::DuplicateName {
                first: 0,
                second: 2
            })
        );
        let many: Vec<Vec<u8>> = (0..=MAX_MULTI_NAMES)
            .map(|i| alloc::format!("n{i}").into_bytes())
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(
            Lock::multi(layout.clone(), &many, options),
            Err(ConfigError::TooManyNames {
                count: MAX_MULTI_NAMES + 1
            })
        );
        assert!(Lock::multi(layout.clone(), &many[..MAX_MULTI_NAMES], options).is_ok());
        assert_eq!(
            Lock::multi(layout.clone(), &[b"a", b""], options),
            Err(ConfigError::EmptyName)
        );
        for refused in [
            LockOptions {
                reentrant: true,
                ..options
            },
            LockOptions {
                fair: true,
                ..options
            },
        ] {
            assert_eq!(
                Lock::multi(layout.clone(), &[b"a", b"b"], refused),
                Err(ConfigError::MultiUnsupported)
            );
        }
        assert_eq!(
            Lock::multi(KeyLayout::redis_py(), &[b"a", b"b"], options),
            Err(ConfigError::MultiUnsupported)
        );
        assert_eq!(
            Lock::multi(
                layout,
                &[b"a", b"b"],
                LockOptions {
                    scripts: Scripts::Never,
                    ..options
                }
            ),
            Err(ConfigError::NeedsScripts(ScriptedFeature::MultiName))
        );
    }

    #[test]
    fn a_set_shares_a_slot_only_when_its_names_share_a_tag() {
        let options = LockOptions::default();
        let layout = KeyLayout::default();
        let tagged = Lock::multi(layout.clone(), &[b"orders}1", b"orders}2"], options).unwrap();
        assert_eq!(tagged.slot(), Ok(key_slot(b"orders")));
        let braced = Lock::multi(layout.clone(), &[b"{orders}:1", b"{orders}:2"], options).unwrap();
        assert_eq!(braced.slot(), Ok(key_slot(b"{orders")));
        let spread = Lock::multi(layout.clone(), &[b"a", b"b"], options).unwrap();
        assert_eq!(
            spread.slot(),
            Err(SpansSlots {
                lock: key_slot(b"a"),
                other: key_slot(b"b")
            })
        );
        let single = Lock::new(layout, b"a", options).unwrap();
        assert_eq!(single.slot(), Ok(key_slot(b"a")));
    }
}
