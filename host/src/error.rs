//! The host's one error type: the core's lock errors plus what connections can go through.

use distlock_core::{ConfigError, HandshakeError};

/// Anything a lock operation or a connection can fail with. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock operation failed (held by another, not held, quorum lost, server error…).
    #[error(transparent)]
    Lock(#[from] distlock_core::Error),
    /// The lock's name or options are not usable.
    #[error("invalid lock settings: {0}")]
    Config(#[from] ConfigError),
    /// A node URL could not be parsed.
    #[error(
        "bad Redis URL {url}: {why} (expected redis://[user:pass@]host:port[/db], rediss://…, redis+cluster://host:port[,host:port…], or redis+sentinel://host:port[,host:port…]/service[/db])"
    )]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A node could not be reached.
    #[error("cannot connect to {endpoint}: {source}; is redis-server running there?")]
    Connect {
        /// The node.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node answered the handshake with an error (a wrong password, say).
    #[error("{endpoint}: {source}")]
    Handshake {
        /// The node.
        endpoint: String,
        /// Why.
        source: HandshakeError,
    },
    /// TLS could not be set up.
    #[error("TLS to {endpoint}: {why}")]
    Tls {
        /// The node.
        endpoint: String,
        /// Why.
        why: String,
    },
    /// Fewer nodes are reachable than a quorum needs.
    #[error(
        "only {reachable} of {nodes} Redis nodes are reachable; a quorum needs {needed} (last error: {last})"
    )]
    TooFewNodes {
        /// Nodes that answered.
        reachable: usize,
        /// Nodes configured.
        nodes: usize,
        /// Nodes a quorum needs.
        needed: usize,
        /// The last connection error.
        last: Box<Error>,
    },
    /// `reset --all` ([`crate::Client::reset_all`]) under a key layout whose keys have no
    /// private prefix to walk: its lock keys are another library's names (any key for
    /// redis-py, `lock:*` for python-redis-lock), so walking them could delete keys that are
    /// not locks. Nothing was sent.
    #[error(
        "resetting every lock needs a key layout with a private prefix; under the {layout} layout the lock keys are another library's names, so a SCAN could reach keys that are not locks: reset the locks one by one by name"
    )]
    NoPrefixToWalk {
        /// The layout's name ([`distlock_core::KeyLayout::name`]).
        layout: &'static str,
    },
    /// `reset --all` ([`crate::Client::reset_all`]) under the tagged layout with an empty
    /// prefix: the walk would cover the whole database, where other programs' keys can look
    /// like lock keys. Nothing was sent.
    #[error(
        "resetting every lock needs a non-empty --prefix: with an empty one the walk covers every key of the database, not only locks; reset the locks one by one by name"
    )]
    EmptyPrefix,
    /// The same server given twice (two URLs that reach one address, such as `localhost` and
    /// `127.0.0.1` on one port): its vote would count twice, so nothing is sent.
    #[error("{first} and {second} are the same server ({address}): give each node once")]
    DuplicateNode {
        /// The first URL (password hidden).
        first: String,
        /// The second URL that reaches the same server.
        second: String,
        /// The address both reach.
        address: String,
    },
    /// A Redis Cluster's seed node gave no usable slot map (not a cluster, or a reply the
    /// core refused: see [`distlock_core::SlotMapError`]).
    #[error("{endpoint}: cannot read the cluster's slot map: {why}")]
    ClusterMap {
        /// The seed node.
        endpoint: String,
        /// Why.
        why: distlock_core::SlotMapError,
    },
    /// A lock whose keys span hash slots, on a Redis Cluster node: its scripts could not run
    /// there (`CROSSSLOT`), so nothing is sent. python-redis-lock's layout does this unless
    /// the name has a `{tag}` of its own.
    #[error("{0}")]
    SpansSlots(#[from] distlock_core::SpansSlots),
    /// `reset --all` on a Redis Cluster could not read every primary's keys (a slot without
    /// a primary in the map, or a primary unreachable, timed out or whose walk did not
    /// finish): its locks are unknown, so nothing was reset. Exit 69.
    #[error("{endpoint}: reset --all cannot walk the cluster: {why}")]
    ClusterWalk {
        /// The cluster's URL (password hidden).
        endpoint: String,
        /// Why.
        why: distlock_core::ClusterWalkError,
    },
    /// Something a Redis Cluster node cannot do yet (a pipelined release). Nothing was sent.
    #[error("{0} is not supported on a Redis Cluster node yet")]
    NotOnCluster(&'static str),
    /// No primary of a Redis Sentinel group could be found and checked (`redis+sentinel://`):
    /// the sentinels do not know the service, none answered, or none named a primary that
    /// answered `ROLE` with `master` within the request timeout (see
    /// [`distlock_core::DiscoveryError`]). The node counts as unreachable.
    #[error("{endpoint}: {why} (last: {last})")]
    Sentinel {
        /// The sentinel group's URL (password hidden).
        endpoint: String,
        /// Why.
        why: distlock_core::DiscoveryError,
        /// The last thing a sentinel or a primary said or did, for the operator.
        last: String,
    },
    /// A durable client's lease ([`crate::Client::durable`]) was not confirmed by enough
    /// replicas in time, or the server refused to wait for them (`WAIT` unknown, `NOPERM`, a
    /// managed service): an acquire's lease was released, an extend's validity was not
    /// moved. Never a silent downgrade.
    #[error("{endpoint}: lease not confirmed durable: {why}")]
    NotDurable {
        /// The node.
        endpoint: String,
        /// Why.
        why: distlock_core::DurableError,
    },
    /// More nodes than the lock machines support.
    #[error("{0} nodes given; at most {max} are supported", max = crate::MAX_NODES)]
    TooManyNodes(usize),
}

impl Error {
    /// The core's lock error, when that is what this is.
    #[must_use]
    pub fn lock_error(&self) -> Option<&distlock_core::Error> {
        match self {
            Error::Lock(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the lock is simply held by someone else (a try-lock or wait that ran out).
    #[must_use]
    pub fn is_not_acquired(&self) -> bool {
        matches!(self, Error::Lock(distlock_core::Error::NotAcquired { .. }))
    }
}
