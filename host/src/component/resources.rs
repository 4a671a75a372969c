//! What a store's resource table holds for each WIT resource the host serves: a
//! `transport` [`Connection`]; a natively served `client`, `lease` and `computation`
//! ([`NativeClient`], [`NativeLease`], [`NativeComputation`]); a linked guest's `client`,
//! `lease` and `computation` ([`LinkedClient`], [`LinkedLease`], [`LinkedComputation`]),
//! which wrap the lock component's own handles.
//!
//! Data only, importing nothing of the adapter but the runtime a connection is registered
//! with (`own_runtime.rs`): the generated bindings map the WIT resources to these types
//! (`bindings.rs`), the drivers (`transport.rs`, `native.rs`, `link.rs`) give them behaviour,
//! and the store (`state.rs`) finds the leases a guest left behind.
//!
//! Invariant: a lease that still holds its lock says so — [`NativeLease::take_guard`] and
//! [`LinkedLease::take_record`] give it up once — so the host releases each lock at most
//! once; a computation that has not ended says so the same way
//! ([`NativeComputation::take`], [`LinkedComputation::take_record`]), so the host gives up
//! each at most once.

use std::sync::Arc;

use distlock_core::wit::Shape;
use distlock_core::{LockOptions, Renewal};
use wasmtime::component::ResourceAny;

use super::own_runtime::OwnRuntime;
use crate::conn::Stream;

/// The most bytes one `transport` receive returns.
pub(crate) const MAX_READ: u32 = 64 * 1024;

/// An open byte stream (`transport`'s `connection` resource).
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct Connection {
    /// Registered with `runtime`; declared first, so it is dropped before the runtime.
    pub(crate) stream: Stream,
    /// Reused across receives.
    pub(crate) buf: Vec<u8>,
    /// The store's own runtime, which drives `stream` (the same for every connection of a
    /// store).
    pub(crate) runtime: Arc<OwnRuntime>,
}

impl Connection {
    /// The stream and a buffer of `max_len` bytes (at least 1, at most [`MAX_READ`]).
    pub(crate) fn parts(&mut self, max_len: u32) -> (&mut Stream, &mut [u8]) {
        let len = max_len.clamp(1, MAX_READ) as usize;
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        (&mut self.stream, &mut self.buf[..len])
    }

    /// The runtime that drives this connection.
    pub(crate) fn runtime(&self) -> Arc<OwnRuntime> {
        Arc::clone(&self.runtime)
    }
}

/// A natively served guest's `client`.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct NativeClient {
    pub(crate) client: crate::Client,
    pub(crate) options: LockOptions,
}

/// A natively served guest's `lease`; its guard is `None` once released.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct NativeLease {
    pub(crate) guard: Option<crate::Guard>,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    /// The core's renewal schedule of the lease, driven by the guest's `renew` calls.
    pub(crate) renewal: Renewal,
}

impl NativeLease {
    /// The lock's name, as the guest gave it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The guard, if the lease still holds one.
    pub(crate) fn take_guard(&mut self) -> Option<crate::Guard> {
        self.guard.take()
    }
}

/// A natively served guest's `computation`: `None` once it ended (stored or given up).
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct NativeComputation {
    pub(crate) computation: Option<Box<crate::Computation>>,
    pub(crate) name: String,
    /// The computation lock's token (still answered after the computation ended).
    pub(crate) token: String,
    /// The core's renewal schedule of the computation's lock, driven by `renew`.
    pub(crate) renewal: Renewal,
}

impl NativeComputation {
    /// The computation, if it has not ended.
    pub(crate) fn take(&mut self) -> Option<Box<crate::Computation>> {
        self.computation.take()
    }
}

/// What a linked lock needs to be released natively.
#[derive(Debug)]
pub(crate) struct ClientSpec {
    /// As the guest gave them (empty: the adapter's).
    pub(crate) nodes: Vec<String>,
    pub(crate) prefix: Option<String>,
    /// The guest's lock options, as the lock component took its locks with them.
    pub(crate) options: LockOptions,
}

/// A linked guest's `client`: the lock component's.
pub(crate) struct LinkedClient {
    pub(crate) inner: ResourceAny,
    pub(crate) spec: Arc<ClientSpec>,
}

/// What a linked lease holds, for its native release: one name in a shape, or a set of
/// names (`acquire-many`).
#[derive(Debug, Clone)]
pub(crate) enum Held {
    /// A lock, a semaphore's permit or a read-write lock's hold of the lease's name.
    Shaped(Shape),
    /// Every name of a multi-name lock, as the guest gave them.
    Many(Vec<String>),
}

/// A linked guest's `computation`: the lock component's, and what giving it up natively
/// needs.
pub(crate) struct LinkedComputation {
    pub(crate) inner: ResourceAny,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) spec: Arc<ClientSpec>,
    /// Stored or given up through the lock component: nothing left to do.
    pub(crate) done: bool,
}

impl LinkedComputation {
    /// What is left to give up, once.
    pub(crate) fn take_record(&mut self) -> Option<ComputationRecord> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(ComputationRecord {
            name: self.name.clone(),
            token: self.token.clone(),
            nodes: self.spec.nodes.clone(),
            prefix: self.spec.prefix.clone(),
            options: self.spec.options,
        })
    }
}

/// A linked computation that did not end, as the store gives it up when the guest ends.
pub(crate) struct ComputationRecord {
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) nodes: Vec<String>,
    pub(crate) prefix: Option<String>,
    /// The options the computation's lock was taken with.
    pub(crate) options: LockOptions,
}

/// A linked lease, as the store releases it when the guest left it behind.
pub(crate) struct LeaseRecord {
    pub(crate) name: String,
    pub(crate) token: String,
    /// A lock, a semaphore's permit, a read-write lock's hold or a set: what to release.
    pub(crate) held: Held,
    pub(crate) nodes: Vec<String>,
    pub(crate) prefix: Option<String>,
    /// The options the lease was taken with: a fair lock is released with the fair release.
    pub(crate) options: LockOptions,
}

/// A linked guest's `lease`: the lock component's, and what releasing it natively needs.
pub(crate) struct LinkedLease {
    pub(crate) inner: ResourceAny,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) held: Held,
    pub(crate) spec: Arc<ClientSpec>,
    /// Released (or dropped) through the lock component: nothing left to do.
    pub(crate) done: bool,
}

impl LinkedLease {
    /// What is left to release, once.
    pub(crate) fn take_record(&mut self) -> Option<LeaseRecord> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(LeaseRecord {
            name: self.name.clone(),
            token: self.token.clone(),
            held: self.held.clone(),
            nodes: self.spec.nodes.clone(),
            prefix: self.spec.prefix.clone(),
            options: self.spec.options,
        })
    }
}
