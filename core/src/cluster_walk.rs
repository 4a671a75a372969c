//! `reset --all` on a Redis Cluster: which primaries a walk must read, and what their walks
//! together say. A `SCAN` sees one server's keys, so a cluster's walk is one [`Reset::all`]
//! dry run per primary of its slot map (a driver runs them, over plain connections to each
//! primary); the lock names they found are then reset one by one through the cluster's
//! normal routing, redirects included. The driver loops; the decisions are here.
//!
//! Invariants:
//! - **Unknown is not "no locks".** A map that leaves any slot unserved (a failed primary
//!   not yet replaced) is refused before anything is scanned: that slot's keys live on a
//!   server no walk reads. A primary whose walk failed or stopped at its limit makes the
//!   whole walk fail, naming it ([`ClusterWalkError`]), never a shorter list.
//! - Only names the layout recognises come back ([`KeyLayout::recognise`]), each once, in
//!   byte order.
//!
//! [`Reset::all`]: crate::Reset::all

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::cluster::{Primary, SlotMap};
use crate::keys::{KeyLayout, LockName};
use crate::reset::ResetOutcome;
use crate::slot::SLOTS;

/// Why a cluster's walk says nothing (the whole `reset --all` fails with it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterWalkError {
    /// The slot map leaves slots unserved: their keys cannot be read.
    Unserved {
        /// How many of the 16384 slots no primary serves.
        slots: usize,
    },
    /// A primary could not be walked (unreachable, timed out, refused, or its walk stopped
    /// at its limit): its locks are unknown.
    Unread {
        /// The primary.
        primary: Box<Primary>,
        /// What failed.
        why: String,
    },
    /// The walks' outcome does not name one result per primary (a driver's mistake).
    Mismatched,
}

impl fmt::Display for ClusterWalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unserved { slots } => write!(
                f,
                "{slots} hash slots have no primary in the cluster's map: their locks cannot be read"
            ),
            Self::Unread { primary, why } => {
                write!(f, "cluster primary {primary} could not be walked: {why}")
            }
            Self::Mismatched => f.write_str("the walks do not answer for every primary"),
        }
    }
}

impl core::error::Error for ClusterWalkError {}

/// A walk over every primary of one slot map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterWalk {
    primaries: Vec<Primary>,
}

impl ClusterWalk {
    /// The walk `map` calls for: every primary it names.
    ///
    /// # Errors
    ///
    /// [`ClusterWalkError::Unserved`] when some slot has no primary.
    pub fn plan(map: &SlotMap) -> Result<Self, ClusterWalkError> {
        let served = map.served();
        if served < usize::from(SLOTS) {
            return Err(ClusterWalkError::Unserved {
                slots: usize::from(SLOTS) - served,
            });
        }
        Ok(ClusterWalk {
            primaries: map.primaries().to_vec(),
        })
    }

    /// The primaries to walk, each with a [`crate::Reset::all`] dry run; their outcomes go
    /// to [`ClusterWalk::names`] in this order.
    #[must_use]
    pub fn primaries(&self) -> &[Primary] {
        &self.primaries
    }

    /// The lock names the walks found (`outcome.nodes` in [`ClusterWalk::primaries`]
    /// order), each once, sorted.
    ///
    /// # Errors
    ///
    /// [`ClusterWalkError::Unread`] for the first primary whose walk failed or did not
    /// finish; [`ClusterWalkError::Mismatched`] when the outcome has another node count.
    pub fn names(
        &self,
        layout: &KeyLayout,
        outcome: &ResetOutcome,
    ) -> Result<Vec<LockName>, ClusterWalkError> {
        if outcome.nodes.len() != self.primaries.len() {
            return Err(ClusterWalkError::Mismatched);
        }
        let mut names: Vec<LockName> = Vec::new();
        for (primary, walked) in self.primaries.iter().zip(&outcome.nodes) {
            let unread = |why: String| ClusterWalkError::Unread {
                primary: Box::new(primary.clone()),
                why,
            };
            let walked = walked.as_ref().map_err(|e| unread(e.to_string()))?;
            if let Some(how_far) = &walked.unfinished {
                return Err(unread(how_far.to_string()));
            }
            // Keys left alone name their lock too: its reset by name reports them again.
            let keys = walked
                .deleted
                .iter()
                .chain(walked.left_alone.iter().map(|(key, _)| key));
            names.extend(keys.filter_map(|key| layout.recognise(key).map(|(name, _)| name)));
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::dialogue::NodeError;
    use crate::reset::{LeftAlone, NodeReset, Unfinished};
    use crate::resp::Protocol;
    use crate::time::Duration;

    fn map(reply: &[u8]) -> SlotMap {
        SlotMap::from_slots(reply, Protocol::Resp2, "h").unwrap()
    }

    /// Slots 0-8191 on port 1, the rest on port 2.
    fn two_primaries() -> SlotMap {
        map(b"*2\r\n*3\r\n:0\r\n:8191\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:8192\r\n:16383\r\n*2\r\n$1\r\nh\r\n:2\r\n")
    }

    fn found(keys: &[&[u8]]) -> Result<NodeReset, NodeError> {
        Ok(NodeReset {
            deleted: keys.iter().map(|k| k.to_vec()).collect(),
            ..NodeReset::default()
        })
    }

    #[test]
    fn every_primary_is_walked_and_a_slot_without_one_is_unknown() {
        let walk = ClusterWalk::plan(&two_primaries()).unwrap();
        assert_eq!(
            walk.primaries(),
            [Primary::new("h", 1).unwrap(), Primary::new("h", 2).unwrap()]
        );
        let half = map(b"*1\r\n*3\r\n:0\r\n:8191\r\n*2\r\n$1\r\nh\r\n:1\r\n");
        assert_eq!(
            ClusterWalk::plan(&half),
            Err(ClusterWalkError::Unserved { slots: 8192 })
        );
        assert_eq!(
            ClusterWalk::plan(&SlotMap::empty()),
            Err(ClusterWalkError::Unserved { slots: 16384 })
        );
    }

    #[test]
    fn names_come_from_every_primary_once_and_a_failed_one_fails_all() {
        let walk = ClusterWalk::plan(&two_primaries()).unwrap();
        let layout = KeyLayout::default();
        let outcome = ResetOutcome {
            nodes: vec![
                found(&[b"distlock:{b}", b"distlock:{b}:holds", b"not-a-lock"]),
                Ok(NodeReset {
                    deleted: vec![b"distlock:{a}".to_vec()],
                    left_alone: vec![(
                        b"distlock:{c}".to_vec(),
                        LeftAlone::NotAString { kind: None },
                    )],
                    unfinished: None,
                }),
            ],
        };
        let names = walk.names(&layout, &outcome).unwrap();
        let names: Vec<&[u8]> = names.iter().map(LockName::as_bytes).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"c"]);

        // One primary unread: no list at all, whatever the other found.
        let failed = ResetOutcome {
            nodes: vec![found(&[b"distlock:{b}"]), Err(NodeError::Disconnected)],
        };
        assert!(matches!(
            walk.names(&layout, &failed),
            Err(ClusterWalkError::Unread { primary, .. }) if primary.port() == 2
        ));
        let unfinished = ResetOutcome {
            nodes: vec![
                Ok(NodeReset {
                    unfinished: Some(Unfinished {
                        scans: 3,
                        cursor: b"17".to_vec(),
                        limit: Duration::from_secs(60),
                    }),
                    ..NodeReset::default()
                }),
                found(&[]),
            ],
        };
        assert!(matches!(
            walk.names(&layout, &unfinished),
            Err(ClusterWalkError::Unread { primary, .. }) if primary.port() == 1
        ));
        let short = ResetOutcome {
            nodes: vec![found(&[])],
        };
        assert_eq!(
            walk.names(&layout, &short),
            Err(ClusterWalkError::Mismatched)
        );
    }
}
