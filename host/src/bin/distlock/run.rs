//! `distlock run APP.wasm [--redis URL…] [-- ARGS…]`: runs a guest app.
//!
//! Owns the command's signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT stop the guest (wherever
//! it is: computing, waiting for a lock, sleeping), the host releases every lease it still
//! held, and the command exits 128 + the signal's number. A guest that runs on after the
//! command is gone would hold its locks to their TTL with nobody to release them.
//!
//! A Redis Cluster or Sentinel group among the nodes is reached only by the native driver
//! (the lock component talks to fixed nodes: `component/mod.rs` says why), so the guest is
//! then served natively even without `--native`, and stderr says so once.
//!
//! Every global option either reaches the guest's locks and connections or is refused (64)
//! before the guest starts: `--prefix`, `--no-scripts` and TLS on both serves; `--layout`
//! (a Python library's) and `--connect-timeout` natively only (the lock component keeps the
//! tagged layout and bounds its connects by the guest's request timeout); `--durable` never
//! (`main.rs`). Ignoring one would put the guest's locks where the user's other clients do
//! not look.
//!
//! Messages go to stderr without ever panicking (a closed stderr must not turn a release
//! into a crash); each says one thing that is true.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use distlock_host::component::{
    Adapter, AdapterError, AdapterOptions, COUNTER_WASM, Ended, Limits, RunOptions, Serve, Stopper,
};
use distlock_host::{ConnectOptions, KeyLayout};

use crate::exit;
use crate::output::tell;

/// Run a WebAssembly guest app: a component targeting the `app` world of
/// `wit/distlock.wit` (a WASI command that imports `distlock:lock/distlock`).
///
/// The guest reaches only the `--redis` nodes, through the lock; it gets no network, no
/// environment and no files unless given (`--dir`, `--env`). A Redis Cluster
/// (`redis+cluster://`) or a Sentinel group (`redis+sentinel://`) among them is routed by the
/// native driver: the guest is then served natively, as with `--native` (said once on
/// stderr). Exits with the guest's exit code;
/// 70 when it traps or is stopped by a limit (`--time-limit` holds whatever it is doing:
/// computing, waiting for a lock, sleeping); 128+N when distlock gets signal N (TERM, INT,
/// HUP, QUIT): the guest is stopped. Whatever leases it still held are released first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    distlock --redis redis://127.0.0.1 run app.wasm -- --jobs 10\n  \
    distlock --redis redis://127.0.0.1 run --example --dir /tmp/n::/data -- count jobs /data/counter 100")]
pub(crate) struct RunArgs {
    /// The guest app (a `.wasm` component).
    #[arg(required_unless_present = "example", conflicts_with = "example")]
    app: Option<PathBuf>,
    /// Run the built-in example instead: a counter file incremented under a lock
    /// (`count NAME FILE ITERATIONS [HOLD_MS]`).
    #[arg(long)]
    example: bool,
    /// A host directory the guest may read and write: `HOST[::GUEST]` (GUEST defaults to HOST).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// An environment variable for the guest: KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Serve `distlock` from the Rust driver instead of a linked lock component (always so
    /// when a node is a Redis Cluster or Sentinel group: only the Rust driver routes them).
    #[arg(long)]
    native: bool,
    /// Stop the guest after this long, wall clock (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    time_limit: Option<Duration>,
    /// The most memory each of the guest's linear memories may grow to, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_limit_mib: usize,
    /// Arguments for the guest.
    #[arg(last = true)]
    args: Vec<String>,
}

/// The global options `run` applies to the guest's locks and connections (`--durable` is
/// refused before these are read).
pub(crate) struct Settings {
    /// TLS (`--tls-ca`, `--tls-cert`, `--tls-key`): the guest's connections, either serve.
    pub(crate) connect: ConnectOptions,
    /// `--connect-timeout`: natively served guests only.
    pub(crate) connect_timeout: Option<Duration>,
    /// `--layout` (and `--prefix`); `None`: neither given, each guest client's key-prefix.
    pub(crate) layout: Option<KeyLayout>,
    /// `--no-scripts`.
    pub(crate) no_scripts: bool,
}

/// Runs `args` against the nodes `redis` under `settings`; the process's exit code.
pub(crate) async fn run(args: &RunArgs, redis: &[String], settings: Settings) -> ExitCode {
    let nodes: Vec<String> = redis.iter().filter(|u| !u.is_empty()).cloned().collect();
    if nodes.is_empty() {
        tell!(
            "distlock: `run` needs --redis (or DISTLOCK_REDIS): a guest reaches only the nodes given here"
        );
        return ExitCode::from(exit::USAGE);
    }
    let (wasm, program) = match &args.app {
        Some(path) => match std::fs::read(path) {
            Ok(wasm) => (wasm, path.display().to_string()),
            Err(e) => {
                tell!("distlock: cannot read {}: {e}", path.display());
                return ExitCode::from(exit::NO_INPUT);
            }
        },
        None => (COUNTER_WASM.to_vec(), "distlock-counter".to_owned()),
    };
    let mut options = RunOptions::args(std::iter::once(program).chain(args.args.iter().cloned()));
    options.serve = if args.native {
        Serve::Native
    } else {
        Serve::Linked
    };
    options.limits = Limits {
        memory: args.memory_limit_mib.saturating_mul(1 << 20),
        time: args.time_limit,
    };
    for dir in &args.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
        options.dirs.push((PathBuf::from(host), guest.to_owned()));
    }
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            tell!("distlock: --env wants KEY=VALUE, not {pair}");
            return ExitCode::from(exit::USAGE);
        };
        options.env.push((key.to_owned(), value.to_owned()));
    }
    // Listening from before the guest is compiled: a signal at any moment stops it.
    let stopper = Stopper::new();
    let signalled = Arc::new(AtomicI32::new(0));
    let listening = match listen_for_signals(stopper.clone(), Arc::clone(&signalled)) {
        Ok(task) => task,
        Err(e) => {
            tell!("distlock: cannot listen for signals: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    options.stopper = Some(stopper);
    let runtime = tokio::runtime::Handle::current();
    // Compiling and running block: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || {
        // A bad URL is refused here, before anything is compiled or sent.
        let adapter = Adapter::new(
            AdapterOptions {
                nodes,
                connect: settings.connect,
                ready_timeout: settings.connect_timeout,
                layout: settings.layout,
                no_scripts: settings.no_scripts,
            },
            runtime,
        )?;
        if options.serve == Serve::Linked
            && let Some(node) = adapter.routed_node()
        {
            tell!(
                "distlock: serving the guest natively, as with --native: {node} needs routing that only the native driver does (the lock component talks to fixed nodes)"
            );
            options.serve = Serve::Native;
        }
        let guest = adapter.load(&wasm)?;
        adapter.run(&guest, &options)
    })
    .await;
    listening.abort();
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(AdapterError::Config(e))) => {
            tell!("distlock: {e}");
            return ExitCode::from(exit::code_of(&e));
        }
        Ok(Err(AdapterError::NeedsNative { setting, why })) => {
            // Run linked, the guest's locks would live under other keys (or its connects
            // wait otherwise) than the option says: refused before the guest starts.
            let option = match setting {
                "layout" => "--layout",
                "ready_timeout" => "--connect-timeout",
                other => other,
            };
            tell!(
                "distlock: `run` honours {option} only for a guest served natively: {why}; add --native, or leave {option} out"
            );
            return ExitCode::from(exit::USAGE);
        }
        Ok(Err(e)) => {
            tell!("distlock: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
        Err(e) => {
            tell!("distlock: the guest's thread failed: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    if report.leases_released > 0 {
        tell!(
            "distlock: released {} lease(s) the guest still held",
            report.leases_released
        );
    }
    for lease in &report.leases_not_released {
        tell!("distlock: a lease the guest still held was not released: {lease}");
    }
    match report.ended {
        Ended::Exited(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ended::Stopped => {
            let signal = signalled.load(Ordering::Acquire);
            tell!("distlock: the guest was stopped by signal {signal}");
            ExitCode::from(
                u8::try_from(i32::from(exit::SIGNALLED) + signal).unwrap_or(exit::GUEST_FAILED),
            )
        }
        ended => {
            tell!("distlock: the guest {ended}");
            ExitCode::from(exit::GUEST_FAILED)
        }
    }
}

/// Stops the guest on the first of SIGTERM, SIGINT, SIGHUP, SIGQUIT, noting which (later ones
/// are caught too, so a second Ctrl-C cannot kill the command while it releases).
#[cfg(unix)]
fn listen_for_signals(
    stopper: Stopper,
    signalled: Arc<AtomicI32>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ];
    let mut streams = Vec::with_capacity(kinds.len());
    for kind in kinds {
        streams.push((kind.as_raw_value(), signal(kind)?));
    }
    Ok(tokio::spawn(async move {
        loop {
            let received = std::future::poll_fn(|cx| {
                for (number, stream) in &mut streams {
                    if let std::task::Poll::Ready(Some(())) = stream.poll_recv(cx) {
                        return std::task::Poll::Ready(*number);
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            // The first signal is the one the exit code tells.
            let _ = signalled.compare_exchange(0, received, Ordering::AcqRel, Ordering::Acquire);
            stopper.stop();
        }
    }))
}

#[cfg(not(unix))]
fn listen_for_signals(
    stopper: Stopper,
    signalled: Arc<AtomicI32>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            // SIGINT's number, as a shell would report Ctrl-C.
            signalled.store(2, Ordering::Release);
            stopper.stop();
        }
    }))
}
