//! [`Net`]: the way to the lock servers, shared by every store of an adapter — the runtime
//! that runs the connections, the configured nodes, and native clients for them.
//!
//! Invariant: the parsed [`Net::endpoints`] are the only places `transport` opens
//! connections to ([`Net::allows`]), and a guest's empty node list means exactly these.

use crate::conn::ConnectOptions;
use crate::endpoint::Endpoint;

use super::options::{AdapterError, AdapterOptions};

/// The way to the servers, shared by every store of an adapter.
pub(crate) struct Net {
    /// Runs the native driver's connections and the stop watchdogs; guests block on it from
    /// their own threads. (The lock component's `transport` connections run on their store's
    /// own runtime instead: `own_runtime.rs`.)
    pub(crate) runtime: tokio::runtime::Handle,
    /// The configured nodes, as given.
    pub(crate) nodes: Vec<String>,
    /// The same, parsed: the only endpoints `transport` opens.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) connect: ConnectOptions,
}

impl Net {
    pub(crate) fn new(
        options: AdapterOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Net, AdapterError> {
        let endpoints = options
            .nodes
            .iter()
            .map(|n| n.parse::<Endpoint>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Net {
            runtime,
            nodes: options.nodes,
            endpoints,
            connect: options.connect,
        })
    }

    /// The nodes with passwords hidden.
    pub(crate) fn shown_nodes(&self) -> Vec<String> {
        self.endpoints.iter().map(ToString::to_string).collect()
    }

    /// Whether `transport` may open a connection to `host:port` (with TLS or not).
    pub(crate) fn allows(&self, host: &str, port: u16, tls: bool) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.host == host && e.port == port && e.tls == tls)
    }

    /// A native client for `nodes` (the configured ones when empty) under `prefix`.
    pub(crate) fn client(
        &self,
        nodes: &[String],
        prefix: Option<&str>,
    ) -> Result<crate::Client, crate::Error> {
        self.runtime.block_on(self.connect_client(nodes, prefix))
    }

    /// [`Net::client`], to await (for a caller that waits on it and on the guest's stop
    /// together).
    pub(crate) async fn connect_client(
        &self,
        nodes: &[String],
        prefix: Option<&str>,
    ) -> Result<crate::Client, crate::Error> {
        let nodes = if nodes.is_empty() {
            &self.nodes[..]
        } else {
            nodes
        };
        if nodes.is_empty() {
            // `Client::connect_with` would give each client an embedded store of its own: no
            // exclusion between clients at all.
            let none = distlock_core::ConfigError::BadNodeCount {
                nodes: 0,
                capacity: crate::MAX_NODES,
            };
            return Err(none.into());
        }
        let layout = match prefix {
            Some(prefix) => crate::KeyLayout::tagged(prefix.as_bytes())?,
            None => crate::KeyLayout::default(),
        };
        crate::Client::connect_with(nodes, self.connect.clone(), layout).await
    }
}
