//! The session-level flat calls' tables (`session.register`, `acquire-flat`, `feed-flat`, …
//! in `wit/engine.wit`): lock names registered once and addressed by a `u32` name id, and
//! operations in flight addressed by a `u32` slot, so a runtime drives an acquire and its
//! release with scalars and bytes only, and never drops a resource.
//!
//! Owns the bookkeeping only: a slot holds an [`Operation`] built by the session, which runs
//! it exactly as `operation.feed` would.
//!
//! Invariants:
//! - an id is an index (low 16 bits) and that entry's generation (high 16 bits): an id whose
//!   entry was freed and reused is unknown, never another name's or another operation's;
//! - at most [`MAX_NAMES`] names and [`MAX_SLOTS`] operations at once; past them, a call is
//!   refused with an `invalid` error (kind `other`) and changes nothing;
//! - a slot is freed exactly when its outcome has been handed out: with the flat answer that
//!   carries it, by `outcome-flat` for one the layout does not carry, or by `abandon`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use distlock_core::Lock;

use crate::api;
use crate::operation::Operation;

/// The most names one session keeps registered (`forget-names` clears them).
pub(crate) const MAX_NAMES: usize = 4096;
/// The most flat operations one session runs at once.
pub(crate) const MAX_SLOTS: usize = 4096;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

/// A table of values addressed by generation-checked ids.
struct Table<T> {
    entries: Vec<(u16, Option<T>)>,
    free: Vec<u16>,
    used: usize,
    limit: usize,
}

impl<T> Table<T> {
    const fn new(limit: usize) -> Table<T> {
        Table {
            entries: Vec::new(),
            free: Vec::new(),
            used: 0,
            limit,
        }
    }

    /// Stores `value`; `None` when the table is full (nothing changed).
    fn insert(&mut self, value: T) -> Option<u32> {
        if self.used >= self.limit {
            return None;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u16::try_from(self.entries.len()).ok()?;
                self.entries.push((0, None));
                index
            }
        };
        let entry = self.entries.get_mut(usize::from(index))?;
        entry.1 = Some(value);
        self.used += 1;
        Some(u32::from(entry.0) << INDEX_BITS | u32::from(index))
    }

    fn entry(&self, id: u32) -> Option<&T> {
        let (generation, value) = self.entries.get((id & INDEX_MASK) as usize)?;
        (u32::from(*generation) == id >> INDEX_BITS)
            .then_some(value.as_ref())
            .flatten()
    }

    /// Takes the value out and retires its id.
    fn remove(&mut self, id: u32) -> Option<T> {
        let index = id & INDEX_MASK;
        let (generation, value) = self.entries.get_mut(index as usize)?;
        if u32::from(*generation) != id >> INDEX_BITS || value.is_none() {
            return None;
        }
        *generation = generation.wrapping_add(1);
        self.used -= 1;
        self.free.push(u16::try_from(index).ok()?);
        value.take()
    }

    fn clear(&mut self) {
        for index in 0..self.entries.len() {
            let id = u32::from(self.entries[index].0) << INDEX_BITS | index as u32;
            self.remove(id);
        }
    }
}

/// A session's registered names and its flat operations in flight.
pub(crate) struct Slots {
    names: Table<Lock>,
    ids: BTreeMap<String, u32>,
    ops: Table<Operation>,
}

impl Slots {
    pub(crate) const fn new() -> Slots {
        Slots {
            names: Table::new(MAX_NAMES),
            ids: BTreeMap::new(),
            ops: Table::new(MAX_SLOTS),
        }
    }

    /// The id of `name`, registered as `lock` unless it already is.
    pub(crate) fn register(&mut self, name: &str, lock: Lock) -> Result<u32, api::Error> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        let id = self
            .names
            .insert(lock)
            .ok_or_else(|| full("names registered", MAX_NAMES, "call forget-names"))?;
        self.ids.insert(name.into(), id);
        Ok(id)
    }

    /// Forgets every name: their ids become unknown (operations in flight keep theirs).
    pub(crate) fn forget_names(&mut self) {
        self.names.clear();
        self.ids.clear();
    }

    /// The lock a name id stands for.
    pub(crate) fn lock(&self, id: u32) -> Result<&Lock, api::Error> {
        self.names.entry(id).ok_or_else(|| {
            api::Error::Invalid(api::ConfigError {
                kind: api::ConfigErrorKind::Other,
                message: format!("unknown name id {id} (never registered, or forgotten)"),
            })
        })
    }

    /// A slot for `op`.
    pub(crate) fn insert(&mut self, op: Operation) -> Result<u32, api::Error> {
        self.ops
            .insert(op)
            .ok_or_else(|| full("operations in flight", MAX_SLOTS, "finish one first"))
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&Operation> {
        self.ops.entry(slot)
    }

    /// Frees `slot`, handing back its operation (dropped by the caller, outside any borrow of
    /// this table: dropping an extend tells its renewal).
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Operation> {
        self.ops.remove(slot)
    }
}

fn full(what: &str, limit: usize, remedy: &str) -> api::Error {
    api::Error::Invalid(api::ConfigError {
        kind: api::ConfigErrorKind::Other,
        message: format!("too many {what}: at most {limit} per session ({remedy})"),
    })
}
