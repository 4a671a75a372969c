//! `reset --all` over nodes of which some are Redis Clusters, as a driver: for each cluster,
//! reads the slot map through its seeds, has the core say which primaries to walk
//! ([`ClusterWalk`]), walks each with the core's [`Reset::all`] dry run over plain
//! connections to the primaries (at most [`crate::MAX_NODES`] at a time), and hands the
//! outcomes back to the core for the lock names; each name is then reset through that
//! cluster's normal per-name path, so that routing and redirects apply as for any
//! operation. The plain nodes of a Redlock beside the clusters are walked and reset as on
//! any Redlock ([`Reset::all`]).
//!
//! Invariants: nothing is deleted on any node unless every primary of every cluster was
//! walked to the end (the core's [`ClusterWalk::names`]); a lock that moved slots between
//! the walk and its reset is still reset where it now lives (the per-name path follows
//! `MOVED`/`ASK`). Each primary's walk is bounded as a walk is
//! ([`distlock_core::RESET_WALK_LIMIT`] plus a request timeout), each lock's reset by the
//! request timeout. The report has one entry per node of the client, in its order.

use std::sync::Arc;

use distlock_core::{ClusterWalk, LockName, LockOptions, Reset, ResetOutcome};

use crate::MAX_NODES;
use crate::admin::{NodeReset, ResetDone, ResetReport, report_of, run, walk_refused};
use crate::client::Client;
use crate::conn::ConnectOptions;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pool::Pool;

impl Client {
    /// [`Client::reset_all_report`] for a client whose one node is the cluster `endpoint`.
    pub(crate) async fn reset_all_on_cluster(
        &self,
        endpoint: &Endpoint,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<ResetReport, Error> {
        // A layout the walk refuses is refused before anything is sent, as on one server.
        distlock_core::walk_pattern(self.layout()).map_err(walk_refused)?;
        let names = Box::pin(self.cluster_names(endpoint, options)).await?;
        let outcome = Box::pin(self.reset_names(self.pool(), &names, dry_run)).await?;
        Ok(ResetReport {
            nodes: vec![NodeReset {
                endpoint: endpoint.to_string(),
                outcome,
            }],
            dry_run,
        })
    }

    /// [`Client::reset_all_report`] for a Redlock with clusters among its nodes (`endpoints`,
    /// in node order): every cluster walked first, then the plain nodes walked and reset
    /// together, then each cluster's locks reset by name.
    pub(crate) async fn reset_all_beside_clusters(
        &self,
        endpoints: Vec<Endpoint>,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<ResetReport, Error> {
        let layout = self.layout();
        distlock_core::walk_pattern(layout).map_err(walk_refused)?;
        // Every cluster's names before anything is deleted anywhere: a cluster that cannot
        // be walked fails the whole reset, typed.
        let mut names = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            names.push(match endpoint.cluster {
                true => Some(Box::pin(self.cluster_names(endpoint, options)).await?),
                false => None,
            });
        }
        let plain: Vec<Endpoint> = endpoints.iter().filter(|e| !e.cluster).cloned().collect();
        let mut plain_nodes = if plain.is_empty() {
            Vec::new()
        } else {
            let pool = Pool::beside(plain, options.clone())?;
            let outcome = Box::pin(run(&pool, |servers, now| {
                Reset::all(layout, &LockOptions::default(), servers, dry_run, now)
            }))
            .await
            .map_err(walk_refused)?;
            report_of(outcome, pool.endpoints(), dry_run).nodes
        }
        .into_iter();
        let mut nodes = Vec::with_capacity(endpoints.len());
        for (endpoint, names) in endpoints.into_iter().zip(names) {
            let node = match names {
                Some(names) => {
                    let pool = Pool::beside(vec![endpoint.clone()], options.clone())?;
                    NodeReset {
                        endpoint: endpoint.to_string(),
                        outcome: Box::pin(self.reset_names(&pool, &names, dry_run)).await?,
                    }
                }
                // The walk answers for every node of its pool, in order.
                None => plain_nodes.next().unwrap_or_else(|| NodeReset {
                    endpoint: endpoint.to_string(),
                    outcome: Err("the walk did not answer for this node".into()),
                }),
            };
            nodes.push(node);
        }
        Ok(ResetReport { nodes, dry_run })
    }

    /// The lock names on the cluster `endpoint`: every primary of its map walked (a dry run
    /// each), the names read by the core.
    ///
    /// # Errors
    ///
    /// [`Error::ClusterWalk`] for a slot without a primary, or a primary that could not be
    /// walked to the end.
    async fn cluster_names(
        &self,
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Vec<LockName>, Error> {
        let layout = self.layout();
        let unknown = |why| Error::ClusterWalk {
            endpoint: endpoint.to_string(),
            why,
        };
        // A slot map is some 30 KB: boxed, and dropped before the next await.
        let walk = {
            let map = Box::pin(crate::cluster::read_map(endpoint, options, &self.clock())).await?;
            ClusterWalk::plan(&map).map_err(unknown)?
        };
        let mut walked = ResetOutcome { nodes: Vec::new() };
        for primaries in walk.primaries().chunks(MAX_NODES) {
            let endpoints = primaries
                .iter()
                .map(|p| endpoint.at(p.host(), p.port()))
                .collect();
            let pool = Box::pin(Pool::connect(endpoints, options.clone())).await?;
            let outcome = Box::pin(run(&pool, |servers, now| {
                Reset::all(layout, &LockOptions::default(), servers, true, now)
            }))
            .await
            .map_err(walk_refused)?;
            walked.nodes.extend(outcome.nodes);
        }
        walk.names(layout, &walked).map_err(unknown)
    }

    /// Resets each of `names` by name over `pool`'s one node (a cluster: routed as any
    /// operation), and gathers what was deleted (a dry run: what would be) and left alone;
    /// the first lock that failed makes the node's outcome an error that says how far the
    /// others got.
    async fn reset_names(
        &self,
        pool: &Arc<Pool>,
        names: &[LockName],
        dry_run: bool,
    ) -> Result<Result<ResetDone, String>, Error> {
        let mut done = ResetDone::default();
        let mut failed = None;
        for name in names {
            let lock = self.lock_spec(name.as_bytes(), LockOptions::default())?;
            let outcome = Box::pin(run(pool, |servers, now| {
                Reset::by_name(&lock, servers, dry_run, now)
            }))
            .await?;
            for node in report_of(outcome, pool.endpoints(), dry_run).nodes {
                match node.outcome {
                    Ok(part) => {
                        done.deleted.extend(part.deleted);
                        done.left_alone.extend(part.left_alone);
                    }
                    Err(why) => {
                        let name = String::from_utf8_lossy(name.as_bytes());
                        failed.get_or_insert(format!("lock '{name}': {why}"));
                    }
                }
            }
        }
        Ok(match failed {
            None => Ok(done),
            Some(why) => Err(format!(
                "{why}; {} keys of the other locks {}",
                done.deleted.len(),
                if dry_run {
                    "would be deleted"
                } else {
                    "were deleted"
                }
            )),
        })
    }
}
