//! [`Net`]: the way to the lock servers, shared by every store of an adapter — the runtime
//! that runs the connections, the configured nodes, and native clients for them.
//!
//! Invariant: the parsed [`Net::endpoints`] are the only places `transport` opens
//! connections to ([`Net::allows`]) and the only nodes a natively served guest's client may
//! name ([`Net::refuse_unconfigured`]); a guest's empty node list means exactly these. Served
//! either way, a guest reaches the configured nodes and nothing else. A cluster or sentinel
//! group is the configured one when every seed the guest names is one of its configured
//! seeds, in any order: the guest then reaches those seeds and what they route to, nothing
//! more.
//!
//! Invariant: every client a guest opens, served either way, takes its locks under the
//! runtime's key settings ([`Net::settle_config`]): the runtime's layout or prefix and its
//! scripts mode fill what the guest leaves unset, and a guest naming others is refused. The
//! settings reach the lock component through the client's `config`, the one way it takes
//! them; what it cannot take (another layout, a connect wait) refuses linked serving
//! ([`Net::linked_refusal`]).

use crate::KeyLayout;
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
    /// Whether the native driver's ready timeout was set for this adapter (only natively
    /// served guests honour it).
    ready_timeout_set: bool,
    /// The layout every guest lock lives in; `None`: each client's `key-prefix`.
    layout: Option<KeyLayout>,
    /// Every guest lock sends no script.
    no_scripts: bool,
}

/// Why a client's config is refused under the runtime's key settings, as the `invalid`
/// error's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigRefusal {
    /// A `key-prefix` other than the runtime's.
    BadPrefix,
    /// Scripts asked for where the runtime sends none.
    NeedsScripts,
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
        let mut connect = options.connect;
        if let Some(wait) = options.ready_timeout {
            connect.ready_timeout = wait;
        }
        Ok(Net {
            runtime,
            nodes: options.nodes,
            endpoints,
            connect,
            ready_timeout_set: options.ready_timeout.is_some(),
            layout: options.layout,
            no_scripts: options.no_scripts,
        })
    }

    /// Why the lock component cannot serve guests under this runtime's settings, if it
    /// cannot: it takes a key prefix but no other layout, and bounds its connects by the
    /// guest's request timeout.
    pub(crate) fn linked_refusal(&self) -> Option<AdapterError> {
        if let Some(layout) = self.layout.as_ref().filter(|l| l.prefix().is_none()) {
            return Some(AdapterError::NeedsNative {
                setting: "layout",
                why: match layout {
                    KeyLayout::RedisPy => {
                        "the lock component keeps its locks in the tagged layout only, not redis-py's keys"
                    }
                    _ => {
                        "the lock component keeps its locks in the tagged layout only, not python-redis-lock's keys"
                    }
                },
            });
        }
        self.ready_timeout_set.then_some(AdapterError::NeedsNative {
            setting: "ready_timeout",
            why: "the lock component waits for a node's connect as long as the guest's request timeout",
        })
    }

    /// Puts a client's `key-prefix` and `no-scripts` under the runtime's settings: what the
    /// guest left unset becomes the runtime's, and a guest asking for another prefix (or for
    /// scripts where the runtime sends none) is refused, with the words to say so.
    pub(crate) fn settle_config(
        &self,
        key_prefix: &mut Option<String>,
        no_scripts: &mut Option<bool>,
    ) -> Result<(), (ConfigRefusal, String)> {
        if let Some(layout) = &self.layout {
            let runtime_prefix = layout
                .prefix()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            match (runtime_prefix, key_prefix.as_deref()) {
                (Some(runtime), None) => *key_prefix = Some(runtime),
                (Some(runtime), Some(asked)) if asked != runtime => {
                    return Err((
                        ConfigRefusal::BadPrefix,
                        format!(
                            "key prefix '{asked}' refused: this runtime keeps every lock under '{runtime}'"
                        ),
                    ));
                }
                (None, Some(asked)) => {
                    return Err((
                        ConfigRefusal::BadPrefix,
                        format!(
                            "key prefix '{asked}' refused: this runtime keeps every lock in the {} layout, which has no prefix",
                            layout.name()
                        ),
                    ));
                }
                _ => {}
            }
        }
        if self.no_scripts {
            match no_scripts {
                Some(false) => {
                    return Err((
                        ConfigRefusal::NeedsScripts,
                        "scripts refused: this runtime's locks send no script".to_owned(),
                    ));
                }
                _ => *no_scripts = Some(true),
            }
        }
        Ok(())
    }

    /// Why a guest may not name `nodes` (parsed as URLs; a URL that does not parse is left
    /// to the connect, which says what is wrong with it): the first that is not a configured
    /// node — the same TLS and kind (a server, a cluster, a sentinel group's service) and
    /// the same address, or for a cluster or sentinel group only seeds among the configured
    /// one's, in any order; login and database may differ — as `transport` refuses to open
    /// it for the lock component, in the same words.
    pub(crate) fn refuse_unconfigured(&self, nodes: &[String]) -> Option<String> {
        nodes.iter().find_map(|node| {
            let asked = node.parse::<Endpoint>().ok()?;
            let configured = self.endpoints.iter().any(|e| names_configured(e, &asked));
            (!configured).then(|| {
                format!(
                    "not allowed by the runtime: {asked} is not one of the nodes this runtime was given"
                )
            })
        })
    }

    /// The nodes with passwords hidden.
    pub(crate) fn shown_nodes(&self) -> Vec<String> {
        self.endpoints.iter().map(ToString::to_string).collect()
    }

    /// The first configured node that only the native driver can reach (a Redis Cluster or
    /// a Sentinel group: routed, not a fixed address), password hidden.
    pub(crate) fn routed_node(&self) -> Option<String> {
        self.endpoints
            .iter()
            .find(|e| e.cluster || e.sentinel.is_some())
            .map(ToString::to_string)
    }

    /// Whether `transport` may open a connection to `host:port` (with TLS or not).
    pub(crate) fn allows(&self, host: &str, port: u16, tls: bool) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.host == host && e.port == port && e.tls == tls)
    }

    /// A native client for `nodes` (the configured ones when empty) under `prefix` (`None`:
    /// the runtime's layout, else the default one).
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
        let layout = match (prefix, &self.layout) {
            (Some(prefix), _) => KeyLayout::tagged(prefix.as_bytes())?,
            (None, Some(layout)) => layout.clone(),
            (None, None) => KeyLayout::default(),
        };
        crate::Client::connect_with(nodes, self.connect.clone(), layout).await
    }
}

/// Whether `asked` names the configured node `configured`: the same TLS and kind, and the
/// same server — for a cluster or a sentinel group, seeds that are all among the configured
/// ones (any order, any subset): a guest naming them reaches only configured seeds and the
/// servers those route to.
fn names_configured(configured: &Endpoint, asked: &Endpoint) -> bool {
    if configured.tls != asked.tls
        || configured.cluster != asked.cluster
        || configured.sentinel != asked.sentinel
    {
        return false;
    }
    if !configured.cluster && configured.sentinel.is_none() {
        return configured.same_address(asked);
    }
    let seeds = configured.seeds();
    asked.seeds().iter().all(|(host, port)| {
        seeds
            .iter()
            .any(|(h, p)| p == port && h.eq_ignore_ascii_case(host))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        url.parse().expect("a valid URL")
    }

    #[test]
    fn a_cluster_is_named_by_its_seeds_in_any_order() {
        let configured = endpoint("redis+cluster://a:7000,b:7001,c:7002");
        for same in [
            "redis+cluster://a:7000,b:7001,c:7002",
            "redis+cluster://c:7002,A:7000,b:7001",
            "redis+cluster://b:7001",
        ] {
            assert!(names_configured(&configured, &endpoint(same)), "{same}");
        }
        for other in [
            "redis+cluster://a:7000,d:7003",
            "redis+cluster://d:7003",
            "rediss+cluster://a:7000,b:7001,c:7002",
            "redis://a:7000",
        ] {
            assert!(!names_configured(&configured, &endpoint(other)), "{other}");
        }
    }

    #[test]
    fn a_sentinel_group_is_named_by_its_sentinels_in_any_order_and_its_service() {
        let configured = endpoint("redis+sentinel://s1:26379,s2:26380/mymaster");
        assert!(names_configured(
            &configured,
            &endpoint("redis+sentinel://s2:26380,s1:26379/mymaster")
        ));
        assert!(!names_configured(
            &configured,
            &endpoint("redis+sentinel://s2:26380,s1:26379/other")
        ));
        assert!(!names_configured(
            &configured,
            &endpoint("redis+sentinel://s2:26380,s3:26379/mymaster")
        ));
    }
}
