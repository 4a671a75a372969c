//! The adapter's settings ([`Limits`], [`AdapterOptions`]) and its error ([`AdapterError`]).
//!
//! The bottom layer of the adapter: every other file may use these, and this one imports
//! nothing of the adapter.

use std::time::Duration;

use crate::KeyLayout;
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
    /// TLS settings and client name for the `transport` connections and the native driver;
    /// the native driver's connect timeouts. (The lock component bounds a node's connect by
    /// the guest's request timeout, its own decision: see [`AdapterOptions::ready_timeout`].)
    pub connect: ConnectOptions,
    /// How long the native driver's connecting waits for the nodes to answer, replacing
    /// `connect.ready_timeout`; `None`: that one. Given, only natively served guests can honour
    /// it (the lock component waits for a node as long as the guest's request timeout says),
    /// so a linked guest is refused before it starts ([`AdapterError::NeedsNative`]).
    pub ready_timeout: Option<Duration>,
    /// The key layout every guest lock lives in; `None`: each client's `key-prefix` decides
    /// (`distlock:` when unset). A tagged layout's prefix is what a guest's unset
    /// `key-prefix` stands for, and a client naming another prefix is refused (`invalid`,
    /// `bad-prefix`): its locks would live under keys the runtime's other clients never look
    /// at. Another layout (a Python library's keys) is served natively only (the lock
    /// component takes a prefix, not a layout): a linked guest is refused before it starts
    /// ([`AdapterError::NeedsNative`]), and a native client naming a prefix is refused.
    pub layout: Option<KeyLayout>,
    /// Every guest lock sends no script: a client's unset `no-scripts` stands for `true`, and
    /// a client asking for scripts (`no-scripts: false`) is refused (`invalid`,
    /// `needs-scripts`). Both serves honour it.
    pub no_scripts: bool,
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
    /// A setting of the adapter that only the native driver honours was given while a guest
    /// was to be served by the lock component: refused before the guest starts, as silently
    /// dropping it would have the guest's locks live under other keys or wait otherwise than
    /// asked. Serve the guest natively ([`Serve::Native`](super::Serve::Native)).
    #[error(
        "{setting} is honoured only for a guest served natively: {why}; serve the guest natively"
    )]
    NeedsNative {
        /// The setting, as [`AdapterOptions`] names it.
        setting: &'static str,
        /// Why the lock component cannot honour it.
        why: &'static str,
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
