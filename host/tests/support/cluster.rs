//! A real Redis Cluster for the cluster tests: `redis-server` processes with
//! `--cluster-enabled yes` on free loopback ports (client and bus ports), joined by
//! `redis-cli --cluster create`, ready once every node says `cluster_state:ok` (and, with
//! replicas, every replica's link to its primary is up); and what the tests do to it (look
//! up a slot's owner, migrate a slot, kill a primary and wait for its replica to take over).
//!
//! Without replicas the node timeout stays at 5 s (a loaded machine never fails a node by
//! mistake); with replicas it is 1 s, so a killed primary is replaced within seconds.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{RedisServer, free_port, redis_cli_binary, run_bounded, unique_name};

/// How long a cluster gets to form (`redis-cli --cluster create`, then every node agreeing).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster; its servers are killed on drop.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<RedisServer>,
    _configs: tempfile::TempDir,
}

impl Cluster {
    /// Starts `primaries` (at least 3: `redis-cli --cluster create` needs them) cluster
    /// nodes and joins them, each owning an equal share of the slots.
    pub(crate) fn start(primaries: usize) -> Cluster {
        Self::launch(primaries, 0)
    }

    /// [`Cluster::start`] with one replica per primary (nodes `primaries..`, in an order
    /// `redis-cli` picks: see [`Cluster::replica_of`]).
    pub(crate) fn start_with_replicas(primaries: usize) -> Cluster {
        Self::launch(primaries, 1)
    }

    fn launch(primaries: usize, replicas: usize) -> Cluster {
        let configs = tempfile::tempdir().expect("temporary directory");
        let node_timeout = if replicas == 0 { "5000" } else { "1000" };
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|i| {
                let config = configs.path().join(format!("nodes-{i}.conf"));
                // A replica's full sync writes an RDB file: into a directory of the test's
                // own, never the working directory.
                let dir = configs.path().join(format!("node-{i}"));
                std::fs::create_dir(&dir).expect("node directory");
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().expect("UTF-8 path"),
                    "--dir",
                    dir.to_str().expect("UTF-8 path"),
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    node_timeout,
                    // A killed primary's slots fail; the others keep being served.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let cli = redis_cli_binary().expect("redis-cli (Debian: redis-tools) is needed");
        let mut create = Command::new(cli);
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let replicas = replicas.to_string();
        create.args(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let out = run_bounded(create, FORM_TIMEOUT).expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            nodes,
            _configs: configs,
        };
        let all: Vec<usize> = (0..cluster.nodes.len()).collect();
        cluster.until_ok(&all);
        cluster.until_replicated();
        cluster
    }

    /// Waits until every running replica's link to its primary is up and every running
    /// primary that has a replica counts it as connected (`INFO replication`).
    pub(crate) fn until_replicated(&self) {
        let started = Instant::now();
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                let info = node
                    .raw()
                    .command(&["INFO", "replication"])
                    .ok()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                let field = |name| super::info_field(&info, name).unwrap_or_default();
                match field("role").as_str() {
                    "slave" => field("master_link_status") == "up",
                    "master" => {
                        let has_replica = self.replica_port_of(node.port()).is_some();
                        !has_replica || field("connected_slaves") != "0"
                    }
                    _ => false,
                }
            });
            if ok {
                return;
            }
            assert!(
                started.elapsed() < FORM_TIMEOUT,
                "the replicas did not catch up within {FORM_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of a running replica of the primary on `port`, as a running node sees it
    /// (`CLUSTER NODES`: a replica's line names its primary's id).
    fn replica_port_of(&self, port: u16) -> Option<u16> {
        let asked = self.nodes.iter().find(|n| n.is_running())?;
        let nodes = asked.raw().ok(&["CLUSTER", "NODES"]).text()?;
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|line| line.split(' ').collect())
            .collect();
        let node_port = |fields: &[&str]| {
            fields
                .get(1)?
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse::<u16>().ok())
        };
        let id = lines
            .iter()
            .find(|f| node_port(f) == Some(port))?
            .first()?
            .to_string();
        lines
            .iter()
            .filter(|f| f.get(3) == Some(&id.as_str()) && !f[2].contains("fail"))
            .find_map(|f| node_port(f))
            .filter(|&p| self.nodes.iter().any(|n| n.port() == p && n.is_running()))
    }

    /// The index of the replica of the primary `primary`.
    pub(crate) fn replica_of(&self, primary: usize) -> usize {
        let port = self
            .replica_port_of(self.nodes[primary].port())
            .unwrap_or_else(|| panic!("node {primary} has no running replica"));
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("a node of this cluster")
    }

    /// SIGKILLs the primary `primary`, waits until its replica was promoted and every
    /// running node says `cluster_state:ok`, then starts the killed node again (same port,
    /// same cluster config), which rejoins as the new primary's replica, and waits until it
    /// replicates. Returns the promoted node.
    pub(crate) fn kill_and_replace(&mut self, primary: usize) -> usize {
        let replica = self.replica_of(primary);
        self.nodes[primary].stop();
        let started = Instant::now();
        loop {
            let role = self.nodes[replica]
                .raw()
                .command(&["ROLE"])
                .ok()
                .and_then(|r| match r {
                    super::Reply::Array(Some(items)) => items.first().and_then(super::Reply::text),
                    _ => None,
                })
                .unwrap_or_default();
            if role == "master" {
                break;
            }
            assert!(
                started.elapsed() < FORM_TIMEOUT,
                "node {replica} was not promoted within {FORM_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        self.until_ok(&running);
        self.nodes[primary].restart();
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.until_ok(&all);
        self.until_replicated();
        replica
    }

    /// Waits until each of `nodes` says `cluster_state:ok` and knows every slot's owner.
    pub(crate) fn until_ok(&self, nodes: &[usize]) {
        let started = Instant::now();
        loop {
            let ok = nodes.iter().all(|&i| {
                let info = self.nodes[i]
                    .raw()
                    .command(&["CLUSTER", "INFO"])
                    .ok()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            assert!(
                started.elapsed() < FORM_TIMEOUT,
                "the cluster did not reach cluster_state:ok within {FORM_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis+cluster://` with `seeds` (node indices) as the seed list.
    pub(crate) fn url(&self, seeds: &[usize]) -> String {
        let seeds: Vec<String> = seeds
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.nodes[i].port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// A node's cluster id.
    pub(crate) fn id(&self, node: usize) -> String {
        self.nodes[node]
            .raw()
            .ok(&["CLUSTER", "MYID"])
            .text()
            .expect("CLUSTER MYID")
    }

    /// The slot of `key`, as the server computes it.
    pub(crate) fn slot(&self, key: &str) -> u16 {
        let slot = self.nodes[0]
            .raw()
            .ok(&["CLUSTER", "KEYSLOT", key])
            .int()
            .expect("CLUSTER KEYSLOT");
        u16::try_from(slot).expect("a slot")
    }

    /// A lock name (from [`unique_name`]) whose slot node `node` owns.
    pub(crate) fn name_on(&self, node: usize, what: &str) -> String {
        loop {
            let name = unique_name(what);
            if self.owner(self.slot(&name), 0) == node {
                return name;
            }
        }
    }

    /// The index of the node that owns `slot`, as node `asked` sees it (`CLUSTER NODES`).
    pub(crate) fn owner(&self, slot: u16, asked: usize) -> usize {
        let nodes = self.nodes[asked]
            .raw()
            .ok(&["CLUSTER", "NODES"])
            .text()
            .expect("CLUSTER NODES");
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let owns = fields.iter().skip(8).any(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                matches!(
                    (first.parse::<u16>(), last.parse::<u16>()),
                    (Ok(f), Ok(l)) if (f..=l).contains(&slot)
                )
            });
            if owns {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("host:port@bus");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port() == port)
                    .expect("a node of this cluster");
            }
        }
        panic!("no node owns slot {slot}:\n{nodes}");
    }

    /// Starts moving `slot` from node `from` to node `to`: `IMPORTING` on the target,
    /// `MIGRATING` on the source (from now on a missing key is answered with `ASK`).
    pub(crate) fn begin_migration(&self, slot: u16, from: usize, to: usize) {
        let slot = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.nodes[to]
            .raw()
            .ok(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        self.nodes[from]
            .raw()
            .ok(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    }

    /// Moves the keys of `slot` still on `from` to `to` (`MIGRATE … KEYS …`); returns how
    /// many it moved.
    pub(crate) fn migrate_keys(&self, slot: u16, from: usize, to: usize) -> usize {
        let Some(super::Reply::Array(Some(keys))) = self.nodes[from]
            .raw()
            .command(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"])
            .ok()
        else {
            panic!("CLUSTER GETKEYSINSLOT failed");
        };
        let keys: Vec<String> = keys.iter().filter_map(super::Reply::text).collect();
        if keys.is_empty() {
            return 0;
        }
        let port = self.nodes[to].port().to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        let reply = self.nodes[from].raw().command(&args).expect("MIGRATE");
        assert!(
            !matches!(reply, super::Reply::Error(_)),
            "MIGRATE failed: {reply:?}"
        );
        keys.len()
    }

    /// Ends a migration: `to` owns `slot`, and every node is told so.
    pub(crate) fn end_migration(&self, slot: u16, to: usize) {
        let (slot, to_id) = (slot.to_string(), self.id(to));
        for (i, node) in self.nodes.iter().enumerate() {
            if node.is_running() {
                let reply = node
                    .raw()
                    .command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
                    .expect("CLUSTER SETSLOT NODE");
                assert!(
                    !matches!(reply, super::Reply::Error(_)),
                    "node {i}: {reply:?}"
                );
            }
        }
    }
}
