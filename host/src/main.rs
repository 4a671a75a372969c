//! `distlock`: a distributed lock from the shell, and its demo.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use distlock_host::demo::{self, DemoOptions};
use distlock_host::{Client, ConnectOptions, Error, KeyLayout, TlsSettings};

/// EX_TEMPFAIL: the lock could not be had; try again later.
const EXIT_NOT_ACQUIRED: u8 = 75;
/// EX_USAGE-like: bad input or configuration.
const EXIT_USAGE: u8 = 64;
/// EX_UNAVAILABLE: the servers could not be reached or refused.
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "distlock",
    version,
    about = "A distributed lock for Redis and Valkey, on one node or by Redlock over several",
    long_about = "A distributed lock for Redis and Valkey, on one node or by Redlock over several.\n\n\
        With no --redis (and no DISTLOCK_REDIS) it uses an embedded in-process store: fine for \
        the demo, useless across processes.",
    after_help = "Examples:\n  \
        distlock demo\n  \
        distlock --redis redis://127.0.0.1:6379 exec --name backup --ttl 30s --wait 10s -- ./backup.sh\n  \
        distlock --redis redis://a:6379 --redis redis://b:6379 --redis redis://c:6379 acquire --name job --ttl 1m --json\n  \
        distlock --redis redis://127.0.0.1 release --name job --token 5f0c…"
)]
struct Cli {
    /// A Redis node: redis://[user:pass@]host:port[/db] or rediss:// for TLS. Repeat for
    /// Redlock over several nodes.
    #[arg(
        long = "redis",
        global = true,
        env = "DISTLOCK_REDIS",
        value_delimiter = ','
    )]
    redis: Vec<String>,
    /// Key prefix of every lock key.
    #[arg(long, global = true, default_value = "distlock:")]
    prefix: String,
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
    /// its exit code. Exits 75 when the lock cannot be had.
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
        /// What to do with COMMAND if the lock is lost while it runs.
        #[arg(long, value_enum, default_value_t = OnLost::Kill)]
        on_lost: OnLost,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Acquire and print the token (and fence); release it later with `release`.
    Acquire {
        #[command(flatten)]
        lock: LockArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a lock held by TOKEN.
    Release {
        /// The lock's name.
        #[arg(long)]
        name: String,
        /// The token `acquire` printed.
        #[arg(long)]
        token: String,
        /// The lock is reentrant: release one hold.
        #[arg(long)]
        reentrant: bool,
    },
    /// Extend a lock held by TOKEN to TTL from now.
    Extend {
        /// The lock's name.
        #[arg(long)]
        name: String,
        /// The token `acquire` printed.
        #[arg(long)]
        token: String,
        /// The new TTL (e.g. 30s, 2m).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Show who holds a lock, on each node.
    Status {
        /// The lock's name.
        #[arg(long)]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Force-unlock (for operators after a crash). Fencing counters are kept.
    Reset {
        /// The lock's name.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every lock under the prefix (walked with SCAN).
        #[arg(long)]
        all: bool,
        /// Confirm --all.
        #[arg(long)]
        yes: bool,
    },
    /// Measure lock latency and throughput next to the raw round-trip floor, in one run.
    ///
    /// Without --redis it starts its own redis-server(s) on free loopback ports.
    #[command(after_help = "Example:\n  distlock bench --scenario all --duration 5s --json")]
    Bench {
        /// Which scenario: a (uncontended), b (contended hand-off), c (many names), d
        /// (Redlock over 3 and 5 nodes), or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// How long each scenario runs.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Workers in scenario b.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Also print one JSON line per scenario.
        #[arg(long)]
        json: bool,
    },
    /// Run a WebAssembly guest app (a component importing distlock:lock/distlock).
    #[cfg(feature = "component")]
    Run(distlock_host::component::cli::RunArgs),
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
}

#[derive(Args)]
struct LockArgs {
    /// The lock's name.
    #[arg(long)]
    name: String,
    /// How long the lock lives without renewal.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
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
}

#[derive(Clone, Copy, ValueEnum)]
enum OnLost {
    /// Kill COMMAND (SIGKILL) and exit 75.
    Kill,
    /// Print a warning and let COMMAND run on.
    Warn,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("distlock: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("distlock: {e}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

fn exit_code_of(e: &Error) -> u8 {
    match e {
        e if e.is_not_acquired() => EXIT_NOT_ACQUIRED,
        Error::Config(_) | Error::BadUrl { .. } | Error::TooManyNodes(_) => EXIT_USAGE,
        Error::Lock(distlock_core::Error::NotHeld) => 1,
        _ => EXIT_UNAVAILABLE,
    }
}

async fn connect(cli: &Cli) -> Result<Client, Error> {
    let layout = KeyLayout::tagged(cli.prefix.as_bytes())?;
    let mut options = ConnectOptions::default();
    if let Some(ca) = &cli.tls_ca {
        let client = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
        options.tls = Some(
            TlsSettings::from_pem_files(ca, client).map_err(|why| Error::Tls {
                endpoint: "--tls-ca".into(),
                why,
            })?,
        );
    }
    let urls: Vec<&str> = cli
        .redis
        .iter()
        .map(String::as_str)
        .filter(|u| !u.is_empty())
        .collect();
    Client::connect_with(urls, options, layout).await
}

fn warn_if_embedded(client: &Client, what: &str) {
    if client.is_embedded() {
        eprintln!(
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
    } = &cli.command
    {
        return bench(&cli, scenario, *duration, *workers, *json).await;
    }
    #[cfg(feature = "component")]
    if let Command::Run(args) = cli.command {
        return Ok(distlock_host::component::cli::run(args, &cli.redis).await);
    }
    let client = connect(&cli).await?;
    match cli.command {
        Command::Exec {
            lock,
            on_lost,
            command,
        } => exec(&client, &lock, on_lost, &command).await,
        Command::Acquire { lock, json } => {
            warn_if_embedded(&client, "acquire");
            let guard = builder(&client, &lock).acquire().await?;
            let (token, fence) = (guard.token().to_owned(), guard.fence());
            let validity = guard.validity();
            // The lock outlives this process: the caller releases it with the token.
            std::mem::forget(guard);
            if json {
                let out = serde_json::json!({
                    "name": lock.name, "token": token, "fence": fence, "validity_ms": validity.as_millis() as u64,
                });
                println!("{out}");
            } else {
                println!("{token}");
                if let Some(fence) = fence {
                    println!("fence {fence}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Release {
            name,
            token,
            reentrant,
        } => {
            warn_if_embedded(&client, "release");
            match client.release(&name, &token, reentrant).await? {
                distlock_core::Released::StillHeld { holds } => {
                    println!("released one hold; {holds} left")
                }
                _ => println!("released"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Extend { name, token, ttl } => {
            warn_if_embedded(&client, "extend");
            let extended = client.extend(&name, &token, ttl).await?;
            let left = extended
                .valid_until
                .as_millis()
                .saturating_sub(extended.started.as_millis());
            println!("extended; valid for {} ms", left);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { name, json } => {
            let status = client.status(&name).await?;
            if json {
                println!("{}", status.to_json(&name));
            } else {
                print!("{}", status.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reset { name, all, yes } => {
            if all {
                if !yes {
                    eprintln!(
                        "distlock: reset --all force-unlocks every lock under '{}'; add --yes to confirm",
                        cli.prefix
                    );
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                let deleted = client.reset_all().await?;
                println!("deleted {deleted} keys under '{}'", cli.prefix);
            } else if let Some(name) = name {
                let deleted = client.reset(&name).await?;
                println!("deleted {deleted} keys of '{name}'");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { .. } => unreachable!("bench runs before connecting"),
        #[cfg(feature = "component")]
        Command::Run(_) => unreachable!("run runs before connecting"),
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
            println!("{}", report.table());
            let ok = report.overlaps == 0 && report.counter == report.acquisitions();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn bench(
    cli: &Cli,
    scenario: &str,
    duration: Duration,
    workers: usize,
    json: bool,
) -> Result<ExitCode, Error> {
    use distlock_host::bench::{self, LocalRedis};
    let want = |id: &str| scenario == "all" || scenario.eq_ignore_ascii_case(id);
    if !["all", "a", "b", "c", "d"]
        .iter()
        .any(|s| scenario.eq_ignore_ascii_case(s))
    {
        eprintln!("distlock: unknown scenario '{scenario}': use a, b, c, d or all");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let unavailable = |e: std::io::Error| Error::Connect {
        endpoint: "local redis-server".into(),
        source: e,
    };
    // Our own servers unless the user gave some; Redlock needs 5 at most.
    let mut local = Vec::new();
    let mut urls: Vec<String> = cli
        .redis
        .iter()
        .filter(|u| !u.is_empty())
        .cloned()
        .collect();
    let wanted_nodes = if want("d") { 5 } else { 1 };
    if urls.is_empty() {
        for _ in 0..wanted_nodes {
            local.push(LocalRedis::start().map_err(unavailable)?);
        }
        urls = local.iter().map(|r| r.url.clone()).collect();
    }
    let single = Client::connect([&urls[0]]).await?;
    let floor = bench::floor(&urls[0], duration).await?;
    let floor_ops = floor.ops_per_sec;
    let floor_p50 = floor.p50_us;
    let mut results = vec![floor];
    let ratio = |r: &mut bench::BenchResult| r.ratio_to_floor = Some(r.ops_per_sec / floor_ops);
    if want("a") {
        let mut r = bench::uncontended(
            &single,
            "A: uncontended acquire + release, 1 node",
            duration,
        )
        .await?;
        ratio(&mut r);
        results.push(r);
    }
    if want("b") {
        let mut r = bench::contended(&single, workers, duration).await?;
        r.note.push_str(&format!(
            "; hand-off p50 = {:.2} floor round-trip pairs",
            r.p50_us as f64 / floor_p50.max(1) as f64
        ));
        results.push(r);
    }
    if want("c") {
        let mut r = bench::many_names(&single, 16, 1024, duration).await?;
        ratio(&mut r);
        results.push(r);
    }
    if want("d") {
        for n in [3usize, 5] {
            if urls.len() < n {
                eprintln!("distlock: scenario d over {n} nodes needs {n} --redis URLs; skipped");
                continue;
            }
            let client = Client::connect(&urls[..n]).await?;
            let label = format!("D: uncontended acquire + release, Redlock over {n} nodes");
            let mut r = bench::uncontended(&client, &label, duration).await?;
            ratio(&mut r);
            results.push(r);
        }
    }
    eprintln!();
    println!("{}", bench::table(&results));
    println!(
        "floor = raw SET NX PX + EVALSHA release pairs on one connection, same run; ÷floor = ops/s over the floor's pairs/s"
    );
    if json {
        for r in &results {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn builder(client: &Client, lock: &LockArgs) -> distlock_host::LockBuilder {
    let wait = if lock.no_wait {
        Duration::ZERO
    } else {
        lock.wait
    };
    client
        .lock(&lock.name)
        .ttl(lock.ttl)
        .wait(wait)
        .fenced(lock.fenced)
}

async fn exec(
    client: &Client,
    lock: &LockArgs,
    on_lost: OnLost,
    command: &[String],
) -> Result<ExitCode, Error> {
    warn_if_embedded(client, "exec");
    let guard = builder(client, lock).auto_renew(true).acquire().await?;
    let Some((program, args)) = command.split_first() else {
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env("DISTLOCK_TOKEN", guard.token())
        .env(
            "DISTLOCK_FENCE",
            guard.fence().map(|f| f.to_string()).unwrap_or_default(),
        )
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("distlock: cannot run {program}: {e}");
            let _ = guard.release().await;
            return Ok(ExitCode::from(127));
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = guard.lost() => match on_lost {
            OnLost::Kill => {
                eprintln!("distlock: lock '{}' lost; killing {program}", lock.name);
                let _ = child.kill().await;
                let _ = child.wait().await;
                return Ok(ExitCode::from(EXIT_NOT_ACQUIRED));
            }
            OnLost::Warn => {
                eprintln!("distlock: warning: lock '{}' lost; {program} runs on unprotected", lock.name);
                child.wait().await
            }
        },
    };
    if let Err(e) = guard.release().await {
        eprintln!("distlock: releasing '{}' failed: {e}", lock.name);
    }
    let code = match status {
        Ok(status) => status
            .code()
            .map_or(128 + signal_of(&status), |c| c as u8 as i32),
        Err(e) => {
            eprintln!("distlock: waiting for {program} failed: {e}");
            EXIT_UNAVAILABLE as i32
        }
    };
    Ok(ExitCode::from(code as u8))
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> i32 {
    0
}
