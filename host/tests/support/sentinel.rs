//! A real Redis Sentinel group for the sentinel tests: a primary and a replica
//! (`redis-server --replicaof`), three sentinels (`redis-server --sentinel`, the program
//! Debian's `redis-sentinel` runs) on free loopback ports with `down-after-milliseconds`
//! 500, ready once every sentinel knows the replica and the other sentinels; and what the
//! tests do to it (a forced failover, waiting until the sentinels and the servers agree on a
//! new primary). Every wait is on observed state.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{KillOnDrop, Raw, RedisServer, Reply, free_port, redis_server_binary};

/// The service the sentinels monitor.
pub(crate) const SERVICE: &str = "mymaster";
/// A second service whose primary is a port nothing listens on: the sentinels name it, and
/// it never answers.
pub(crate) const GHOST: &str = "ghost";
/// What [`SentinelGroup::start_with_a_stubborn_primary`] renames `CLIENT` to.
pub(crate) const CLIENT_RENAMED: &str = "CLIENT-RENAMED";
/// How long a group gets to form, and a failover to finish.
const SETTLE: Duration = Duration::from_secs(30);

/// One sentinel process.
pub(crate) struct Sentinel {
    pub(crate) port: u16,
    _process: KillOnDrop,
}

/// A primary, a replica and three sentinels; all killed on drop.
pub(crate) struct SentinelGroup {
    /// `[0]` is the primary at the start, `[1]` its replica.
    pub(crate) servers: Vec<RedisServer>,
    pub(crate) sentinels: Vec<Sentinel>,
    _configs: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts the group with `down-after-milliseconds` 500 and waits until it can fail
    /// over. Under load a busy primary can look down for 500 ms: failover tests must accept
    /// a failover they did not ask for.
    pub(crate) fn start() -> SentinelGroup {
        Self::start_with(500, &[])
    }

    /// A group for tests that need the primary to stay put: `down-after-milliseconds` 10 s.
    pub(crate) fn start_steady() -> SentinelGroup {
        Self::start_with(10_000, &[])
    }

    /// A steady group whose first primary cannot be turned into a replica by the sentinels:
    /// its `CLIENT` is renamed [`CLIENT_RENAMED`], so the transaction a sentinel reconfigures
    /// a server with (`MULTI`, `REPLICAOF`, `CLIENT KILL`, `EXEC`) aborts. After a failover it
    /// stays a primary nobody names — the window in which a client that only notices a
    /// failover by its connection would still write to it.
    pub(crate) fn start_with_a_stubborn_primary() -> SentinelGroup {
        Self::start_with(10_000, &["--rename-command", "CLIENT", CLIENT_RENAMED])
    }

    fn start_with(down_after_ms: u32, primary_args: &[&str]) -> SentinelGroup {
        // A replica's full sync writes an RDB file: into a directory of the test's own, never
        // the working directory.
        let configs = tempfile::tempdir().expect("temporary directory");
        let primary_dir = configs.path().join("primary");
        let replica_dir = configs.path().join("replica");
        for dir in [&primary_dir, &replica_dir] {
            std::fs::create_dir(dir).expect("server directory");
        }
        let mut args = vec!["--dir", primary_dir.to_str().expect("UTF-8")];
        args.extend_from_slice(primary_args);
        let primary = RedisServer::start_with(&args);
        let replica = RedisServer::start_with(&[
            "--dir",
            replica_dir.to_str().expect("UTF-8"),
            "--replicaof",
            "127.0.0.1",
            &primary.port().to_string(),
        ]);
        let ghost = free_port();
        let sentinels = (0..3)
            .map(|i| {
                let config = configs.path().join(format!("sentinel-{i}.conf"));
                start_sentinel(&config, primary.port(), ghost, down_after_ms, None)
            })
            .collect();
        let group = SentinelGroup {
            servers: vec![primary, replica],
            sentinels,
            _configs: configs,
        };
        group.until_ready();
        group
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/service`.
    pub(crate) fn url(&self, service: &str) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{service}", list.join(","))
    }

    /// The primary's port sentinel `i` names for [`SERVICE`].
    pub(crate) fn named_by(&self, i: usize) -> Option<u16> {
        let reply = Raw::connect(self.sentinels[i].port)
            .ok()?
            .command(&["SENTINEL", "get-master-addr-by-name", SERVICE])
            .ok()?;
        match reply {
            Reply::Array(Some(items)) => items.get(1)?.text()?.parse().ok(),
            _ => None,
        }
    }

    /// The role server `i` says it has (`master`, `slave`), when it answers.
    pub(crate) fn role(&self, i: usize) -> Option<String> {
        match Raw::connect(self.servers[i].port())
            .ok()?
            .command(&["ROLE"])
            .ok()?
        {
            Reply::Array(Some(items)) => items.first()?.text(),
            _ => None,
        }
    }

    /// Which server every sentinel names and which says `ROLE master`, once they agree.
    pub(crate) fn agreed_primary(&self) -> Option<usize> {
        let port = self.named_by(0)?;
        if (1..self.sentinels.len()).any(|i| self.named_by(i) != Some(port)) {
            return None;
        }
        let index = self.servers.iter().position(|s| s.port() == port)?;
        (self.role(index).as_deref() == Some("master")).then_some(index)
    }

    /// How many clients are subscribed on the sentinels (`sub=1` in their `CLIENT LIST`):
    /// the sentinels themselves subscribe only on the servers they watch.
    pub(crate) fn subscribers(&self) -> usize {
        self.sentinels
            .iter()
            .filter_map(|s| Raw::connect(s.port).ok()?.command(&["CLIENT", "LIST"]).ok())
            .filter_map(|reply| reply.text())
            .map(|list| list.lines().filter(|l| l.contains(" sub=1 ")).count())
            .sum()
    }

    /// Waits until every sentinel names server `index` and it says `ROLE master`.
    pub(crate) fn until_primary(&self, index: usize) {
        let started = Instant::now();
        while self.agreed_primary() != Some(index) {
            assert!(
                started.elapsed() < SETTLE,
                "the sentinels did not agree on server {index} as the primary within {SETTLE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the sentinels agree on a primary and the other server replicates it in
    /// sync; returns the primary.
    pub(crate) fn until_settled(&self) -> usize {
        let started = Instant::now();
        loop {
            if let Some(primary) = self.agreed_primary() {
                let replica = 1 - primary;
                let info = Raw::connect(self.servers[replica].port())
                    .and_then(|mut raw| raw.command(&["INFO", "replication"]))
                    .ok()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                let port = format!("master_port:{}", self.servers[primary].port());
                if info.contains(&port) && info.contains("master_link_status:up") {
                    return primary;
                }
            }
            assert!(
                started.elapsed() < SETTLE,
                "the group did not settle on a primary and an in-sync replica within {SETTLE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SENTINEL FAILOVER` through sentinel 0 (retried while a previous failover still
    /// holds the sentinels back).
    pub(crate) fn force_failover(&self) {
        let started = Instant::now();
        loop {
            let reply = Raw::connect(self.sentinels[0].port)
                .and_then(|mut raw| raw.command(&["SENTINEL", "FAILOVER", SERVICE]));
            match reply {
                Ok(Reply::Simple(_)) => return,
                other => assert!(
                    started.elapsed() < SETTLE,
                    "SENTINEL FAILOVER was refused for {SETTLE:?}: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the group can fail over: the replica is in sync, and every sentinel
    /// knows the replica and both other sentinels.
    fn until_ready(&self) {
        let started = Instant::now();
        loop {
            let synced = self.servers[1]
                .raw()
                .command(&["INFO", "replication"])
                .ok()
                .and_then(|r| r.text())
                .is_some_and(|info| info.contains("master_link_status:up"));
            let known = self.sentinels.iter().all(|s| {
                let Ok(mut raw) = Raw::connect(s.port) else {
                    return false;
                };
                let mut count = |what: &str| match raw.command(&["SENTINEL", what, SERVICE]) {
                    Ok(Reply::Array(Some(items))) => items.len(),
                    _ => 0,
                };
                count("replicas") == 1 && count("sentinels") == 2
            });
            if synced && known && self.agreed_primary() == Some(0) {
                return;
            }
            assert!(
                started.elapsed() < SETTLE,
                "the sentinel group did not form within {SETTLE:?} (synced: {synced}, sentinels know each other: {known})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One sentinel started with `requirepass` (and the primary it watches, which needs no
/// password): the sentinel login's tests. Killed on drop.
pub(crate) struct PasswordSentinel {
    pub(crate) primary: RedisServer,
    pub(crate) sentinel: Sentinel,
    _configs: tempfile::TempDir,
}

impl PasswordSentinel {
    /// A primary and one sentinel whose password is `password`.
    pub(crate) fn start(password: &str) -> PasswordSentinel {
        let configs = tempfile::tempdir().expect("temporary directory");
        let primary = RedisServer::start();
        let sentinel = start_sentinel(
            &configs.path().join("sentinel.conf"),
            primary.port(),
            free_port(),
            10_000,
            Some(password),
        );
        PasswordSentinel {
            primary,
            sentinel,
            _configs: configs,
        }
    }

    /// `redis+sentinel://127.0.0.1:P/service`, then `query` as it is.
    pub(crate) fn url(&self, query: &str) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{SERVICE}{query}",
            self.sentinel.port
        )
    }
}

/// Starts a sentinel watching the primary on `primary` (and the ghost service on `ghost`),
/// configured through `config` (a sentinel rewrites its file), on a free port; with
/// `password`, the sentinel asks for it (`requirepass`).
fn start_sentinel(
    config: &std::path::Path,
    primary: u16,
    ghost: u16,
    down_after_ms: u32,
    password: Option<&str>,
) -> Sentinel {
    for _ in 0..5 {
        let port = free_port();
        let requirepass = password.map_or(String::new(), |p| format!("requirepass {p}\n"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n\
             sentinel failover-timeout {SERVICE} 5000\n\
             sentinel parallel-syncs {SERVICE} 1\n\
             sentinel monitor {GHOST} 127.0.0.1 {ghost} 2\n\
             sentinel down-after-milliseconds {GHOST} 500\n{requirepass}"
        );
        std::fs::write(config, text).expect("write the sentinel config");
        let child = Command::new(redis_server_binary().expect("redis-server on PATH"))
            .arg(config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let mut process = KillOnDrop(child);
        let started = Instant::now();
        while started.elapsed() < super::START_TIMEOUT {
            if let Ok(Some(_)) = process.0.try_wait() {
                break;
            }
            let answers = Raw::connect(port)
                .and_then(|mut raw| {
                    if let Some(password) = password {
                        raw.command(&["AUTH", password])?;
                    }
                    raw.command(&["SENTINEL", "myid"])
                })
                .is_ok_and(|r| matches!(r, Reply::Bulk(Some(_))));
            if answers {
                return Sentinel {
                    port,
                    _process: process,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = process.0.kill();
    }
    panic!("a sentinel would not start");
}
