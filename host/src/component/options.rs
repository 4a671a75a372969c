//! The adapter's settings ([`Limits`], [`AdapterOptions`]) and its error ([`AdapterError`]).
//!
//! The bottom layer of the adapter: every other file may use these, and this one imports
//! nothing of the adapter.

use std::time::Duration;

use crate::conn::ConnectOptions;

/// What a guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes each linear memory may grow to. Default 64 MiB.
    pub memory: usize,
    /// The longest a guest may run, wall clock, whatever it does (computing, waiting for a
    /// lock, sleeping); `None`: no limit. Default none.
    pub time: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            time: None,
        }
    }
}

/// How an [`Adapter`](super::Adapter) reaches the lock servers.
#[derive(Debug, Clone, Default)]
pub struct AdapterOptions {
    /// The Redis nodes (`redis://…`), what a guest's empty `config.nodes` stands for. Guests
    /// reach these and nothing else (with none, they can take no lock).
    pub nodes: Vec<String>,
    /// Connect timeout, TLS settings and client name for the `transport` connections and the
    /// native driver.
    pub connect: ConnectOptions,
}

/// Why the adapter could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A node URL is not usable.
    #[error(transparent)]
    Config(#[from] crate::Error),
    /// The lock component was asked to serve while a configured node is a Redis Cluster or
    /// a Sentinel group (`node`, password hidden): reaching one takes routing (a slot map and
    /// its redirects, a discovered and followed primary) that only the native driver does;
    /// the lock component talks to fixed nodes. Serve the guest natively
    /// ([`Serve::Native`](super::Serve::Native)).
    #[error(
        "{node} needs routing the lock component does not do (it talks to fixed nodes): serve the guest natively"
    )]
    Routed {
        /// The node, as a URL without its password.
        node: String,
    },
    /// A component could not be compiled or instantiated (not a component, or it imports what
    /// the adapter does not supply).
    #[error("{what}: {error:#}")]
    Wasm {
        /// What was being done.
        what: String,
        /// Wasmtime's explanation.
        error: wasmtime::Error,
    },
}

impl AdapterError {
    /// Wraps a wasmtime error, saying what was being done.
    pub(crate) fn wasm(what: impl Into<String>) -> impl FnOnce(wasmtime::Error) -> AdapterError {
        let what = what.into();
        move |error| AdapterError::Wasm { what, error }
    }
}
