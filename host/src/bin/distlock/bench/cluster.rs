//! The Redis Cluster `distlock bench --cluster` starts for itself: three primaries
//! (`redis-server --cluster-enabled yes`, no replicas, nothing saved) on free loopback ports,
//! joined by `redis-cli --cluster create`, ready once every node says `cluster_state:ok`.
//! Stopped, and its directory removed, on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Primaries the bench's cluster has: the fewest `redis-cli --cluster create` accepts.
pub(crate) const PRIMARIES: usize = 3;
/// How long the cluster gets to start and agree.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A local three-primary cluster (see the module doc).
pub(crate) struct LocalCluster {
    children: Vec<Child>,
    dir: PathBuf,
    /// Its `redis+cluster://` URL, every primary a seed.
    pub(crate) url: String,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalCluster {
    /// Starts one, or says why it could not.
    pub(crate) fn start() -> std::io::Result<LocalCluster> {
        let dir = std::env::temp_dir().join(format!(
            "distlock-bench-cluster-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = LocalCluster {
            children: Vec::new(),
            dir,
            url: String::new(),
        };
        let mut ports = Vec::new();
        for i in 0..PRIMARIES {
            let (port, bus) = (free_port()?, free_port()?);
            let config = cluster.dir.join(format!("nodes-{i}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                ])
                .args(["--cluster-port", &bus.to_string()])
                .arg("--cluster-config-file")
                .arg(&config)
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| std::io::Error::new(e.kind(), format!("redis-server: {e}")))?;
            cluster.children.push(child);
            ports.push(port);
        }
        for &port in &ports {
            cluster.until("listen", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })?;
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .map_err(|e| std::io::Error::new(e.kind(), format!("redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        for &port in &ports {
            cluster.until("agree on every slot", || {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            })?;
        }
        let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        cluster.url = format!("redis+cluster://{}", seeds.join(","));
        Ok(cluster)
    }

    /// Polls `ready` until it holds or the cluster has had [`FORM_TIMEOUT`]: a child process
    /// gives no event to wait on.
    fn until(&self, what: &str, mut ready: impl FnMut() -> bool) -> std::io::Result<()> {
        let started = Instant::now();
        while !ready() {
            if started.elapsed() > FORM_TIMEOUT {
                return Err(std::io::Error::other(format!(
                    "the bench's cluster did not {what} within {FORM_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
