//! `distlock`: a distributed lock from the shell, and its demo.
//!
//! This file holds the command line and what each subcommand prints; `exec` (a job under the
//! lock) has its own module, the exit codes theirs ([`exit`]), and every write to the
//! terminal goes through [`output`], which never panics.

mod bench;
mod compute;
mod demo;
mod exec;
mod exit;
mod hold;
mod output;
#[cfg(feature = "component")]
mod run;
mod watchdog;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use demo::DemoOptions;
use distlock_host::{Client, ConnectOptions, Durability, Error, KeyLayout, Scripts, TlsSettings};

use output::{say, tell};

#[derive(Parser)]
#[command(
    name = "distlock",
    version,
    about = "A distributed lock for Redis and Valkey, on one node or by Redlock over several",
    long_about = "A distributed lock for Redis and Valkey, on one node or by Redlock over several.\n\n\
        With no --redis (and no DISTLOCK_REDIS) it uses an embedded in-process store: fine for \
        the demo, useless across processes.\n\n\
        --layout picks the keys a lock lives in. `tagged` (the default): PREFIX{NAME} and its \
        :fence, :holds and :signal siblings. `redis-py`: the key NAME itself, exactly as \
        redis-py's `redis.Redis().lock(NAME)` (our own keys under distlock-redis-py:). \
        `python-redis-lock`: lock:NAME and the wake-up list lock-signal:NAME, exactly as \
        python-redis-lock's `redis_lock.Lock(conn, NAME)` (our own keys under \
        distlock-python-redis-lock:); releases by either side wake waiters of both. With \
        either Python layout, distlock and the Python processes exclude each other on the same \
        names; `reset --all` is refused there (those keys have no prefix of their own to walk).",
    after_help = concat!("Examples:\n  \
        distlock demo\n  \
        distlock --redis redis://127.0.0.1:6379 exec --name backup --ttl 30s --wait 10s -- ./backup.sh\n  \
        distlock --redis redis://a:6379 --redis redis://b:6379 --redis redis://c:6379 acquire --name job --ttl 1m --json\n  \
        distlock --redis redis://127.0.0.1 release --name job --token 5f0c…\n  \
        distlock --layout python-redis-lock --redis redis://127.0.0.1 exec --name report --wait 1m -- ./report.sh\n\n",
        exit::table!()
    )
)]
struct Cli {
    /// A Redis node: `redis://[user:pass@]host:port[/db]` or rediss:// for TLS; a Redis
    /// Cluster (one node of the lock): redis+cluster://host:port[,host:port…] or
    /// rediss+cluster://; a primary found through Redis Sentinel (one node too):
    /// redis+sentinel://host:port[,host:port…]/service[/db] or rediss+sentinel://. Repeat
    /// for Redlock over several nodes.
    #[arg(
        long = "redis",
        global = true,
        env = "DISTLOCK_REDIS",
        value_delimiter = ','
    )]
    redis: Vec<String>,
    /// How long to wait for the servers to answer when connecting: a node silent for longer
    /// is left out (its vote lost) and the command goes on with a quorum, or fails with 69
    /// without one. A connect still under way goes on in the background [default: 1s, the
    /// lock's request timeout].
    #[arg(
        long,
        global = true,
        env = "DISTLOCK_CONNECT_TIMEOUT",
        value_parser = positive_duration
    )]
    connect_timeout: Option<Duration>,
    /// Replica-durable leases (one node: a server, a sentinel group or a cluster): after each
    /// acquire and extend, WAIT until N replicas acknowledged it, within TIMEOUT [default: 1s]
    /// and the lease's validity; a lease not confirmed is released and the command fails (69;
    /// 76 or 77 when the server refuses WAIT). Written N or N,TIMEOUT (`1,500ms`).
    #[arg(long, global = true, env = "DISTLOCK_DURABLE", value_name = "N[,TIMEOUT]", value_parser = durability)]
    durable: Option<Durability>,
    /// With --durable: WAITAOF 1 N TIMEOUT instead of WAIT (Redis 7.2+): the lease is also
    /// fsynced to the primary's and the replicas' append-only files.
    #[arg(long, global = true, requires = "durable")]
    durable_aof: bool,
    /// Which keys a lock lives in: ours, or exactly those of a Python lock library, to share
    /// locks with Python processes (see --help).
    #[arg(
        long,
        global = true,
        env = "DISTLOCK_LAYOUT",
        value_enum,
        default_value_t = Layout::Tagged
    )]
    layout: Layout,
    /// Run no Lua script: locks use SET NX PX, SET IFEQ and DELIFEQ / DELEX IFEQ only
    /// (Valkey 9.0 and later, Redis 8.4 and later), for servers that forbid EVAL. Refuses
    /// --fenced, --fair and reentrant locks, and servers without the commands.
    #[arg(long, global = true)]
    no_scripts: bool,
    /// Key prefix of every lock key (tagged layout only) [default: distlock:].
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// CA certificates (PEM) to trust for rediss:// instead of the system's.
    #[arg(long, global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for rediss://; needs --tls-key.
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for rediss://.
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command while holding the lock, like flock(1) across machines.
    ///
    /// Acquires, renews the lock while COMMAND runs, releases when it ends, and exits with
    /// its exit code. Exits 75 when the lock cannot be had. With --name repeated, every name
    /// is taken at once or none, under one token, renewed and released together.
    ///
    /// COMMAND runs in a process group of its own, and whatever stops it stops that whole
    /// group: COMMAND and everything it started that stayed in its group (pipelines, `sh -c`
    /// children, background jobs; not what moved to a session or group of its own).
    ///
    /// The lock lost (--on-lost kill, the default): when renewal keeps failing, the group gets
    /// SIGTERM up to --kill-grace before the lease's validity ends and SIGKILL shortly before
    /// it ends (the grace is at most a third of the TTL, so renewal on schedule always comes
    /// first); when the lock turns out to be someone else's (reset by an operator, say), SIGTERM
    /// and SIGKILL at once. Exits 75.
    ///
    /// Signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT to distlock are passed on to the group,
    /// which gets --kill-grace to end (the lock is renewed meanwhile) before SIGKILL; then the
    /// lock is released and distlock exits 128 + the signal (or COMMAND's own exit code if it
    /// exited by itself). SIGUSR1 and SIGUSR2 are passed on and COMMAND goes on. When COMMAND
    /// ends, what it left running in its group is stopped the same way before the lock is
    /// released. When distlock has the terminal's foreground, COMMAND's group gets it while it
    /// runs (COMMAND can read the terminal, Ctrl-C reaches it). A watchdog process stands
    /// beside COMMAND: when distlock itself is killed with SIGKILL it kills COMMAND's group at
    /// once, and when distlock is frozen (SIGSTOP) it kills it before the lease's validity ends.
    ///
    /// COMMAND finds the lock's token in DISTLOCK_TOKEN and, with --fenced, its fence in
    /// DISTLOCK_FENCE (empty without): pass the fence along with every write to the resource
    /// the lock protects, and have the resource refuse a fence smaller than one it has seen —
    /// that stops a holder that was paused past its TTL.
    #[command(
        after_help = "Example:\n  distlock --redis redis://127.0.0.1 exec --name nightly --ttl 30s --wait 5m -- ./nightly.sh --full"
    )]
    Exec {
        #[command(flatten)]
        lock: LockArgs,
        /// What to do with COMMAND's process group if the lock is lost while it runs.
        #[arg(long, value_enum, default_value_t = OnLost::Kill)]
        on_lost: OnLost,
        /// How long COMMAND's group gets to end after SIGTERM before SIGKILL (when the lock is
        /// about to be lost, at most a third of the TTL).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        kill_grace: Duration,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Print the value cached under a name, or compute it once by running a command (the
    /// dogpile helper).
    ///
    /// When the value is there, it is printed as stored and COMMAND does not run. Else one
    /// caller runs COMMAND, holding the name's lock (renewed while it runs; stopped as `exec`
    /// stops a job when the lock is lost, and on signals), and stores what it wrote to stdout
    /// (at most 1,000,000 bytes) as the value for --value-ttl; every other caller waits up to
    /// --wait for that value and prints it, without running COMMAND or taking the lock.
    ///
    /// COMMAND's stderr is distlock's. When COMMAND fails (exits non-zero, or is stopped),
    /// nothing is stored, what it wrote to stdout is passed on, distlock exits with its code,
    /// and one waiter runs COMMAND next. Exits 75 when --wait ran out while another caller
    /// computed, or the lock was lost while COMMAND ran (nothing stored); 64 when COMMAND wrote
    /// more than 1,000,000 bytes. One node only (no Redlock; the tagged layout; scripts on).
    #[command(after_help = "Example:
  distlock --redis redis://127.0.0.1 compute --name report:2026-12 --value-ttl 1h --wait 2m -- ./build-report.sh")]
    Compute {
        /// The value's name: its key and the computation's lock.
        #[arg(long)]
        name: String,
        /// How long the stored value lives (e.g. 10m, 1h).
        #[arg(long, value_parser = positive_duration)]
        value_ttl: Duration,
        /// How long the computation's lock lives without renewal.
        #[arg(long, default_value = "30s", value_parser = parse_ttl)]
        ttl: Duration,
        /// How long to wait for another caller's computation.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// What to do with COMMAND's process group if the lock is lost while it runs.
        #[arg(long, value_enum, default_value_t = OnLost::Kill)]
        on_lost: OnLost,
        /// How long COMMAND's group gets to end after SIGTERM before SIGKILL.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        kill_grace: Duration,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Acquire and print the token (and fence); release it later with `release` (with the
    /// same --name, repeated for a lock of several names).
    Acquire {
        #[command(flatten)]
        lock: LockArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a lock held by TOKEN.
    Release {
        /// The lock's name; repeated: the names `acquire` took at once (all are released).
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
        /// The token `acquire` printed.
        #[arg(long)]
        token: String,
        /// The lock is reentrant: release one hold.
        #[arg(long)]
        reentrant: bool,
        /// The lock is fair (acquired with --fair): hand it to the first live waiter.
        #[arg(long)]
        fair: bool,
        /// The token holds a permit of a semaphore of N permits (acquired with --limit N;
        /// with --fair, the permit goes to the first live waiter).
        #[arg(long, value_name = "N", conflicts_with = "reentrant")]
        limit: Option<u32>,
        /// The token holds a read hold of a read-write lock (acquired with --read).
        #[arg(long, conflicts_with_all = ["fair", "reentrant", "limit", "write"])]
        read: bool,
        /// The token holds the write hold of a read-write lock (acquired with --write).
        #[arg(long, conflicts_with_all = ["fair", "reentrant", "limit"])]
        write: bool,
    },
    /// Extend a lock held by TOKEN to TTL from now.
    Extend {
        /// The lock's name; repeated: the names `acquire` took at once (all or none are
        /// extended).
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
        /// The token `acquire` printed.
        #[arg(long)]
        token: String,
        /// The new TTL (e.g. 30s, 2m; at least 4 ms).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Duration,
        /// The token holds a permit of a semaphore of N permits (acquired with --limit N).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// The token holds a read hold of a read-write lock (acquired with --read).
        #[arg(long, conflicts_with_all = ["limit", "write"])]
        read: bool,
        /// The token holds the write hold of a read-write lock (acquired with --write).
        #[arg(long, conflicts_with = "limit")]
        write: bool,
    },
    /// Show who holds a lock, on each node.
    ///
    /// Says "held by TOKEN" when a majority of nodes has TOKEN, a semaphore's permits or a
    /// read-write lock's holds when a majority holds them, "not held" when no token can
    /// have a majority, and "unknown" when the nodes that answered cannot decide (the core's
    /// verdict, the same in the text and the JSON); a node that could not be read is listed
    /// with what failed, never as free. Exits 69 when a majority of nodes could not be read.
    /// Each node is asked within the request timeout (1 s).
    Status {
        /// The lock's name.
        #[arg(long)]
        name: String,
        /// Print JSON (`state`: held, free or unknown; each node's holder or error).
        #[arg(long)]
        json: bool,
    },
    /// Force-unlock (for operators after a crash). Fencing counters are kept.
    ///
    /// Deletes a lock's key and re-entry count only where they hold what distlock writes
    /// there (a token, a count), and a fair lock's queue; a semaphore's or read-write lock's
    /// name loses every key but its fencing counter (holders, permits, readers, writer,
    /// waiting writers, queue). Any other key of the same name is left alone and reported.
    /// Exits 69 when a majority of nodes failed.
    #[command(
        after_help = "Examples:\n  distlock --redis redis://127.0.0.1 reset --name nightly\n  distlock --redis redis://127.0.0.1 reset --all --dry-run\n  distlock --redis redis://127.0.0.1 reset --all --yes"
    )]
    Reset {
        /// The lock's name.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every lock under the prefix (walked with SCAN; tagged layout with a non-empty
        /// prefix only): only keys shaped PREFIX{NAME} (and their :holds) holding what
        /// distlock writes there are deleted.
        #[arg(long)]
        all: bool,
        /// Confirm --all.
        #[arg(long)]
        yes: bool,
        /// Delete nothing: print the keys that would be deleted, one per line.
        #[arg(long)]
        dry_run: bool,
    },
    /// Measure lock latency and throughput next to the raw round-trip floor, in one run.
    ///
    /// Without --redis it starts its own redis-server(s) on free loopback ports.
    #[command(after_help = "Example:\n  distlock bench --scenario all --duration 5s --json")]
    Bench {
        /// Which scenario: a (uncontended), b (contended hand-off), c (many names), d
        /// (Redlock over 3 and 5 nodes), s (permits of a semaphore of 4, non-fair and fair),
        /// r (readers and writers of one read-write lock), m (locks of 4 names at once), g
        /// (get-or-compute of one key), or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// How long each scenario runs.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Worker counts for scenario b, comma-separated: one set of rows each.
        #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
        workers: Vec<usize>,
        /// Also print one JSON line per scenario.
        #[arg(long)]
        json: bool,
        /// Only the native path (skip the guest app linked to the lock component).
        #[arg(long)]
        native_only: bool,
        /// Also run A and B with fair mode on, beside the non-fair rows, in the same slices.
        #[arg(long)]
        fair: bool,
        /// Also run A and C through a Redis Cluster of 3 primaries the bench starts itself,
        /// beside the single-node rows, in the same slices (the `cluster` rows).
        #[arg(long)]
        cluster: bool,
    },
    /// Run a WebAssembly guest app (a component importing distlock:lock/distlock).
    ///
    /// On a Redis Cluster or through a Sentinel group (`redis+cluster://`,
    /// `redis+sentinel://`) the guest is served natively, as with --native, and stderr says so
    /// once: only the Rust driver routes them; the lock component talks to fixed nodes.
    /// --durable is refused (64): a guest's lock sends no WAIT. --prefix, --no-scripts and
    /// the TLS options hold for every lock and connection of the guest, served either way (a
    /// guest client naming another prefix, or asking for scripts under --no-scripts, gets an
    /// `invalid` error); --layout redis-py or python-redis-lock and --connect-timeout are
    /// honoured when the guest is served natively and refused (64) otherwise: the lock
    /// component keeps the tagged layout only, and waits for a connect as long as the
    /// guest's request timeout.
    #[cfg(feature = "component")]
    Run(run::RunArgs),
    /// Workers contend on one lock; prints acquisitions, hand-off latency and overlaps (0).
    Demo {
        /// Concurrent workers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// How long to run.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time each holder spends in the critical section.
        #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// The dead man's switch `exec` starts beside its job (see `watchdog.rs`); not for
    /// people to run.
    #[command(hide = true)]
    Watchdog {
        /// The job's process group.
        #[arg(long)]
        group: i32,
    },
}

#[derive(Args)]
struct LockArgs {
    /// The lock's name. Repeat it to take several names at once, all or nothing, under one
    /// token (up to 16, none twice; renewed and released together; not with --limit,
    /// --read, --write or --fair).
    #[arg(long = "name", value_name = "NAME", required = true)]
    names: Vec<String>,
    /// How long the lock lives without renewal (at least 4 ms: the clock-drift allowance,
    /// 1% + 2 ms, must leave some validity).
    #[arg(long, default_value = "30s", value_parser = parse_ttl)]
    ttl: Duration,
    /// How long to wait for the lock.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, conflicts_with = "no_wait")]
    wait: Duration,
    /// Do not wait: fail at once if the lock is held.
    #[arg(long)]
    no_wait: bool,
    /// Hand out a fencing token.
    #[arg(long)]
    fenced: bool,
    /// Fair mode: wait in arrival order; a release hands the lock straight to the first live
    /// waiter. One node and the tagged layout only; every client of the lock should use it.
    #[arg(long)]
    fair: bool,
    /// Take one of N permits of a semaphore of this name instead of the lock: at most N
    /// holders at once (`exec --limit N` runs at most N jobs). Every client of the name must
    /// pass the same N; one node and the tagged layout only. With --fair, waiters queue in
    /// arrival order and a release hands its permit to the first live waiter.
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Take a read hold of a read-write lock of this name instead of the lock: any number of
    /// readers at once, never beside a writer, never past a waiting writer (`exec --read`).
    /// One node and the tagged layout only.
    #[arg(long, conflicts_with_all = ["fair", "limit", "write"])]
    read: bool,
    /// Take the write hold of a read-write lock of this name instead of the lock: one writer,
    /// no reader; while it waits, new readers are turned away (`exec --write`).
    #[arg(long, conflicts_with_all = ["fair", "limit"])]
    write: bool,
}

impl LockArgs {
    /// The names as one label for messages: `a`, or `a, b` for several.
    fn label(&self) -> String {
        self.names.join(", ")
    }

    /// Why these arguments make no sense together, if they do not: a semaphore's permit or
    /// a read-write lock's hold is of one name.
    fn refusal(&self) -> Option<&'static str> {
        several_names_refusal(
            self.names.len(),
            self.limit.is_some() || self.read || self.write,
        )
    }
}

/// Several `--name`s with a flag that is about one name (`--limit`, `--read`, `--write`, and
/// for `release` `--reentrant`): a usage error.
fn several_names_refusal(names: usize, one_name_flag: bool) -> Option<&'static str> {
    (names > 1 && one_name_flag).then_some(
        "several --name take the names at once as one lock: --limit, --read, --write and --reentrant are about one name",
    )
}

/// The side of a read-write lock `--read` or `--write` names; `None`: neither.
fn rw_mode(read: bool, write: bool) -> Option<distlock_host::RwMode> {
    match (read, write) {
        (true, _) => Some(distlock_host::RwMode::Read),
        (_, true) => Some(distlock_host::RwMode::Write),
        _ => None,
    }
}

/// The `--layout` choices (`distlock_host::KeyLayout`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Layout {
    /// PREFIX{NAME} and PREFIX{NAME}:fence, :holds, :signal (PREFIX: --prefix).
    Tagged,
    /// NAME, as redis-py's `Redis.lock(NAME)`.
    RedisPy,
    /// lock:NAME and lock-signal:NAME, as python-redis-lock's `Lock(conn, NAME)`.
    PythonRedisLock,
}

impl Cli {
    /// The key prefix of the tagged layout.
    fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("distlock:")
    }

    fn layout(&self) -> Result<KeyLayout, Error> {
        Ok(match self.layout {
            Layout::Tagged => KeyLayout::tagged(self.prefix().as_bytes())?,
            Layout::RedisPy => KeyLayout::redis_py(),
            Layout::PythonRedisLock => KeyLayout::python_redis_lock(),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OnLost {
    /// Stop COMMAND's process group (SIGTERM, then SIGKILL before the lease's validity ends)
    /// and exit 75.
    Kill,
    /// Print a warning and let COMMAND run on, unprotected.
    Warn,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(output::stderr_is_terminal())
        .init();
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap would exit 2; a bad argument is a usage error like a bad lock name, so it
            // gets the same code. `--help` and `--version` still succeed.
            let _ = e.print();
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::USAGE)
            };
        }
    };
    if let Command::Watchdog { group } = cli.command {
        return watchdog::watch(group);
    }
    cli.redis = join_cluster_seeds(std::mem::take(&mut cli.redis));
    let refusal = match &cli.command {
        Command::Exec { lock, .. } | Command::Acquire { lock, .. } => lock.refusal(),
        Command::Release {
            names,
            reentrant,
            limit,
            read,
            write,
            ..
        } => several_names_refusal(
            names.len(),
            *reentrant || limit.is_some() || *read || *write,
        ),
        Command::Extend {
            names,
            limit,
            read,
            write,
            ..
        } => several_names_refusal(names.len(), limit.is_some() || *read || *write),
        _ => None,
    };
    if let Some(why) = refusal {
        let _ = Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .print();
        return ExitCode::from(exit::USAGE);
    }
    if cli.prefix.is_some() && cli.layout != Layout::Tagged {
        let _ = Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--prefix applies to the tagged layout only: the redis-py and python-redis-lock layouts use exactly those libraries' keys",
            )
            .print();
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tell!("distlock: cannot start the async runtime: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tell!("distlock: {e}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

/// Exit 0 when the result was written; 74 (with a message) when stdout would not take it.
fn printed(written: std::io::Result<()>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tell!("distlock: cannot write the result: {e}");
            ExitCode::from(exit::IO_ERROR)
        }
    }
}

/// The connection settings of `--tls-ca`, `--tls-cert`, `--tls-key` (every command's) and
/// `--connect-timeout`.
fn connect_options(cli: &Cli) -> Result<ConnectOptions, Error> {
    let mut options = ConnectOptions::default();
    if let Some(wait) = cli.connect_timeout {
        options.ready_timeout = wait;
    }
    if let Some(ca) = &cli.tls_ca {
        let client = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
        options.tls = Some(
            TlsSettings::from_pem_files(ca, client).map_err(|why| Error::Tls {
                endpoint: "--tls-ca".into(),
                why,
            })?,
        );
    }
    Ok(options)
}

async fn connect(cli: &Cli) -> Result<Client, Error> {
    let layout = cli.layout()?;
    let options = connect_options(cli)?;
    let urls: Vec<&str> = cli
        .redis
        .iter()
        .map(String::as_str)
        .filter(|u| !u.is_empty())
        .collect();
    let scripts = if cli.no_scripts {
        Scripts::Never
    } else {
        Scripts::Auto
    };
    let client = Client::connect_with(urls, options, layout)
        .await?
        .with_scripts(scripts);
    match cli.durable {
        Some(durability) if cli.durable_aof => client.durable(durability.with_aof()),
        Some(durability) => client.durable(durability),
        None => Ok(client),
    }
}

/// `N` or `N,TIMEOUT`: replicas and how long to wait for them.
fn durability(text: &str) -> Result<Durability, String> {
    let (replicas, timeout) = match text.split_once(',') {
        Some((n, timeout)) => (n, Some(timeout)),
        None => (text, None),
    };
    let replicas: u32 = replicas
        .trim()
        .parse()
        .map_err(|_| format!("'{replicas}' is not a number of replicas"))?;
    let timeout = match timeout {
        Some(t) => {
            let t = positive_duration(t.trim())?;
            distlock_core::Duration::from_millis(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
        }
        None => distlock_core::DURABLE_TIMEOUT,
    };
    Durability::new(replicas, timeout).map_err(|e| e.to_string())
}

/// A duration above zero (a zero wait would give up on every node before it could answer).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn warn_if_embedded(client: &Client, what: &str) {
    if client.is_embedded() {
        tell!(
            "distlock: warning: no --redis given: `{what}` runs on the embedded in-process store, which no other process can see"
        );
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Command::Bench {
        scenario,
        duration,
        workers,
        json,
        native_only,
        fair,
        cluster,
    } = &cli.command
    {
        let workers = workers.iter().map(|&w| w.max(1)).collect();
        let paths = BenchPaths {
            guest: !*native_only,
            fair: *fair,
            cluster: *cluster,
        };
        return bench(&cli, scenario, *duration, workers, *json, paths).await;
    }
    #[cfg(feature = "component")]
    if let Command::Run(args) = &cli.command {
        if cli.durable.is_some() {
            // Silently taking plain leases would tell the user they are durable.
            tell!(
                "distlock: `run` cannot make a guest's leases durable (--durable, DISTLOCK_DURABLE): the guest's lock sends no WAIT; leave --durable out"
            );
            return Ok(ExitCode::from(exit::USAGE));
        }
        // Every other global option reaches the guest's locks, or `run` refuses (64) before
        // the guest starts (`run.rs`).
        let settings = run::Settings {
            connect: connect_options(&cli)?,
            connect_timeout: cli.connect_timeout,
            layout: match cli.layout {
                // No --prefix: each guest client's own key-prefix, as before.
                Layout::Tagged => cli.prefix.as_ref().map(|_| cli.layout()).transpose()?,
                _ => Some(cli.layout()?),
            },
            no_scripts: cli.no_scripts,
        };
        return Ok(run::run(args, &cli.redis, settings).await);
    }
    let client = connect(&cli).await?;
    match cli.command {
        Command::Exec {
            lock,
            on_lost,
            kill_grace,
            command,
        } => exec::exec(&client, &lock, on_lost, kill_grace, &command).await,
        Command::Compute {
            name,
            value_ttl,
            ttl,
            wait,
            on_lost,
            kill_grace,
            command,
        } => {
            let args = compute::ComputeArgs {
                name: &name,
                value_ttl,
                ttl,
                wait,
                on_lost,
                kill_grace,
                command: &command,
            };
            compute::compute(&client, &args).await
        }
        Command::Acquire { lock, json } => {
            warn_if_embedded(&client, "acquire");
            let guard = builder(&client, &lock).acquire().await?;
            let (token, fence) = (guard.token(), guard.fence());
            let written = if json {
                let out = serde_json::json!({
                    "name": lock.label(), "names": lock.names, "token": token, "fence": fence,
                    "validity_ms": guard.validity().as_millis() as u64,
                });
                say!("{out}")
            } else {
                let fence = fence.map(|f| format!("\nfence {f}")).unwrap_or_default();
                say!("{token}{fence}")
            };
            if let Err(e) = written {
                // Nobody learned the token, so nobody could release the lock: let it go now.
                tell!("distlock: cannot write the token ({e}); releasing the lock");
                if let Err(e) = guard.release().await {
                    tell!(
                        "distlock: releasing '{}' failed: {e}; it expires at its TTL",
                        lock.label()
                    );
                }
                return Ok(ExitCode::from(exit::IO_ERROR));
            }
            // The lock outlives this process: the caller releases it with the token.
            std::mem::forget(guard);
            Ok(ExitCode::SUCCESS)
        }
        Command::Release {
            names,
            token,
            reentrant,
            fair,
            limit,
            read,
            write,
        } => {
            warn_if_embedded(&client, "release");
            let options = distlock_core::LockOptions {
                reentrant,
                fair,
                ..distlock_core::LockOptions::default()
            };
            let released = match (names.as_slice(), limit, rw_mode(read, write)) {
                ([name], _, Some(mode)) => client.release_rw(name, &token, mode).await?,
                ([name], Some(limit), None) => {
                    client
                        .release_permit_with(name, &token, limit, options)
                        .await?
                }
                ([name], None, None) => client.release_with(name, &token, options).await?,
                (names, ..) => client.release_many_with(names, &token, options).await?,
            };
            Ok(printed(match released {
                distlock_core::Released::StillHeld { holds } => {
                    say!("released one hold; {holds} left")
                }
                _ => say!("released"),
            }))
        }
        Command::Extend {
            names,
            token,
            ttl,
            limit,
            read,
            write,
        } => {
            warn_if_embedded(&client, "extend");
            let extended = match (names.as_slice(), limit, rw_mode(read, write)) {
                ([name], _, Some(mode)) => client.extend_rw(name, &token, ttl, mode).await?,
                ([name], Some(limit), None) => {
                    client.extend_permit(name, &token, ttl, limit).await?
                }
                ([name], None, None) => client.extend(name, &token, ttl).await?,
                (names, ..) => client.extend_many(names, &token, ttl).await?,
            };
            let left = extended
                .valid_until
                .as_millis()
                .saturating_sub(extended.started.as_millis());
            Ok(printed(say!("extended; valid for {left} ms")))
        }
        Command::Status { name, json } => {
            let status = client.status(&name).await?;
            let written = printed(if json {
                say!("{}", status.to_json(&name))
            } else {
                output::stdout_text(&status.describe())
            });
            // Unknown is not free: a caller must not read "could not ask" as "free".
            Ok(if status.majority_unreadable() {
                ExitCode::from(exit::UNAVAILABLE)
            } else {
                written
            })
        }
        Command::Reset {
            name,
            all,
            yes,
            dry_run,
        } => {
            let report = if all {
                // Without a walkable prefix, the walk refuses (64) before asking for --yes.
                let prefix = client
                    .layout()
                    .prefix()
                    .filter(|p| !p.is_empty())
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                if let (false, false, Some(prefix)) = (yes, dry_run, &prefix) {
                    tell!(
                        "distlock: reset --all force-unlocks every lock under '{prefix}'; add --yes to confirm (or --dry-run to list them)"
                    );
                    return Ok(ExitCode::from(exit::USAGE));
                }
                client.reset_all_report(dry_run).await?
            } else if let Some(name) = name {
                client.reset_report(&name, dry_run).await?
            } else {
                return Ok(ExitCode::from(exit::USAGE));
            };
            let written = if dry_run {
                // One key a line, nothing else on stdout: fit for scripts; details on stderr.
                let keys = report.keys();
                output::stdout_text(&keys.iter().map(|k| format!("{k}\n")).collect::<String>())
            } else {
                output::stdout_text(&report.describe()).and_then(|()| {
                    say!(
                        "deleted {} keys; {} left alone",
                        report.deleted(),
                        report
                            .nodes
                            .iter()
                            .filter_map(|n| n.outcome.as_ref().ok())
                            .map(|d| d.left_alone.len())
                            .sum::<usize>()
                    )
                })
            };
            if dry_run {
                for line in report
                    .describe()
                    .lines()
                    .filter(|l| !l.contains("would delete"))
                {
                    tell!("distlock: {line}");
                }
            }
            Ok(if report.majority_failed() {
                ExitCode::from(exit::UNAVAILABLE)
            } else {
                printed(written)
            })
        }
        Command::Bench { .. } => unreachable!("bench runs before connecting"),
        #[cfg(feature = "component")]
        Command::Run(_) => unreachable!("run runs before connecting"),
        Command::Watchdog { .. } => unreachable!("the watchdog runs before connecting"),
        Command::Demo {
            workers,
            duration,
            hold,
        } => {
            let options = DemoOptions {
                workers: workers.max(1),
                duration,
                hold,
                ..DemoOptions::default()
            };
            let report = demo::run(&client, &options).await?;
            let ok = report.overlaps == 0 && report.counter == report.acquisitions();
            let written = printed(say!("{}", report.table()));
            Ok(if ok { written } else { ExitCode::FAILURE })
        }
    }
}

/// Which paths `distlock bench` measures beside the native one.
#[derive(Debug, Clone, Copy)]
struct BenchPaths {
    /// The guest app linked to the lock component.
    guest: bool,
    /// Fair mode (A and B).
    fair: bool,
    /// A and C through a Redis Cluster the bench starts.
    cluster: bool,
}

async fn bench(
    cli: &Cli,
    scenario: &str,
    duration: Duration,
    workers: Vec<usize>,
    json: bool,
    paths: BenchPaths,
) -> Result<ExitCode, Error> {
    use bench::{BenchOptions, LocalRedis};
    if !["all", "a", "b", "c", "d", "s", "r", "m", "g"]
        .iter()
        .any(|s| scenario.eq_ignore_ascii_case(s))
    {
        tell!("distlock: unknown scenario '{scenario}': use a, b, c, d, s, r, m, g or all");
        return Ok(ExitCode::from(exit::USAGE));
    }
    let want_d = scenario == "all" || scenario.eq_ignore_ascii_case("d");
    // Our own servers unless the user gave some; Redlock needs 5 at most.
    let mut local = Vec::new();
    let mut urls: Vec<String> = cli
        .redis
        .iter()
        .filter(|u| !u.is_empty())
        .cloned()
        .collect();
    if urls.is_empty() {
        for _ in 0..if want_d { 5 } else { 1 } {
            local.push(LocalRedis::start().map_err(|e| Error::Connect {
                endpoint: "local redis-server".into(),
                source: e,
            })?);
        }
        urls = local.iter().map(|r| r.url.clone()).collect();
    }
    let local_cluster = if paths.cluster {
        Some(
            bench::cluster::LocalCluster::start().map_err(|e| Error::Connect {
                endpoint: "local Redis Cluster".into(),
                source: e,
            })?,
        )
    } else {
        None
    };
    let options = BenchOptions {
        scenario: scenario.to_ascii_lowercase(),
        duration,
        workers,
        lock: bench::lock_options(),
        urls,
        guest: paths.guest,
        fair: paths.fair,
        slice: Duration::from_millis(500),
        cluster: local_cluster.as_ref().map(|c| c.url.clone()),
    };
    let results = match bench::run(&options).await {
        Ok(results) => results,
        Err(bench::Error::Lock(e)) => return Err(e),
        Err(e) => {
            tell!("distlock: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut text = format!(
        "{}\nfloor = raw SET NX PX + EVALSHA release pairs, one connection per node of the scenario, in slices \
         interleaved with the scenario's; ÷floor = ops/s over that floor's pairs/s",
        bench::table(&results)
    );
    if json {
        for r in &results {
            text.push('\n');
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
        }
    }
    Ok(printed(say!("{text}")))
}

/// A TTL, refused up front when the core would refuse it: below the shortest TTL the default
/// clock-drift allowance leaves validity in, or above the longest.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let options = distlock_core::LockOptions {
        ttl: distlock_core::Duration::from_millis(
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        ),
        ..distlock_core::LockOptions::default()
    };
    let min = options.drift.min_ttl().map_or(0, |m| m.as_millis());
    if ttl.subsec_nanos() % 1_000_000 != 0 {
        return Err("ttl is counted in whole milliseconds".into());
    }
    options.validate().map_err(|e| match e {
        distlock_core::ConfigError::DriftExceedsTtl | distlock_core::ConfigError::BadTtl => format!(
            "must be between {min} ms and {} ms (the clock-drift allowance, 1% + 2 ms, must leave some validity)",
            distlock_core::MAX_TTL.as_millis()
        ),
        other => other.to_string(),
    })?;
    Ok(ttl)
}

fn builder(client: &Client, lock: &LockArgs) -> distlock_host::LockBuilder {
    let wait = if lock.no_wait {
        Duration::ZERO
    } else {
        lock.wait
    };
    let builder = match lock.names.as_slice() {
        [name] => client.lock(name),
        names => client.lock_many(names),
    };
    builder
        .ttl(lock.ttl)
        .wait(wait)
        .fenced(lock.fenced)
        .fair(lock.fair)
        .limit(lock.limit)
        .rw(rw_mode(lock.read, lock.write))
}

/// Puts a cluster URL's seed list back together after the comma split of `--redis` and
/// `DISTLOCK_REDIS`: a piece without a scheme (`host:port`) continues the URL before it, so
/// `redis+cluster://a:7000,b:7001,redis://c` is a cluster and a node. A sentinel URL's
/// sentinel list is put back the same way.
fn join_cluster_seeds(pieces: Vec<String>) -> Vec<String> {
    let mut urls: Vec<String> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match urls.last_mut() {
            Some(last)
                if !piece.contains("://")
                    && (last.contains("+cluster://") || last.contains("+sentinel://")) =>
            {
                last.push(',');
                last.push_str(&piece);
            }
            _ => urls.push(piece),
        }
    }
    urls
}
