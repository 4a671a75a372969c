//! `reset --all` on a Redis Cluster, as a driver: reads the slot map through the seeds, has
//! the core say which primaries to walk ([`ClusterWalk`]), walks each with the core's
//! [`Reset::all`] dry run over plain connections to the primaries (at most
//! [`crate::MAX_NODES`] at a time), hands the outcomes back to the core for the lock names,
//! then resets each name through the client's normal per-name path, so that routing and
//! redirects apply as for any operation.
//!
//! Invariants: nothing is deleted unless every primary was walked to the end (the core's
//! [`ClusterWalk::names`]); a lock that moved slots between the walk and its reset is still
//! reset where it now lives (the per-name path follows `MOVED`/`ASK`). Each primary's walk
//! is bounded as a walk is ([`distlock_core::RESET_WALK_LIMIT`] plus a request timeout), each
//! lock's reset by the request timeout.

use distlock_core::{ClusterWalk, LockOptions, Reset, ResetOutcome};

use crate::MAX_NODES;
use crate::admin::{NodeReset, ResetDone, ResetReport, run, walk_refused};
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
        let layout = self.layout();
        // A layout the walk refuses is refused before anything is sent, as on one server.
        distlock_core::walk_pattern(layout).map_err(walk_refused)?;
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
        let names = walk.names(layout, &walked).map_err(unknown)?;
        let mut done = ResetDone::default();
        let mut failed = None;
        for name in &names {
            let report = Box::pin(self.reset_report(name.as_bytes(), dry_run)).await?;
            for node in report.nodes {
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
        let outcome = match failed {
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
        };
        Ok(ResetReport {
            nodes: vec![NodeReset {
                endpoint: endpoint.to_string(),
                outcome,
            }],
            dry_run,
        })
    }
}
