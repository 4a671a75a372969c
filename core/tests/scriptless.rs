//! Scriptless locks ([`Scripts::Never`]) and servers that refuse scripts, driven against the
//! model node.
//!
//! Each test connects to a [`ModelNode`] through the real [`Handshake`] (so the machines see
//! the server as a driver would report it), then runs the lock machines against it and
//! records every command the node executed. What is shown:
//! - on servers with the native commands (Valkey 9.0, Redis 8.4) and scripting absent or
//!   forbidden, a scriptless lock acquires, excludes, extends and releases (waking a waiter)
//!   with no `EVAL`, `EVALSHA` or `SCRIPT` at all, the handshake included;
//! - `Never` refuses up front, with typed errors, the options that need Lua and servers
//!   without the native commands, and never falls back to a script at run time;
//! - `Auto` (the default) on a server whose ACL forbids scripting fails with a typed
//!   `NOPERM` at the first script, not a hang.

mod common;

use common::{lock_with, ms, token};
use distlock_core::{
    Acquire, ConfigError, Duration, Error, Extend, Handshake, HandshakeOptions, Instant, KeyLayout,
    Lock, LockOptions, Machine, NativeCommand, Operation, Release, Released, ScriptedFeature,
    Scripts, ServerErrorKind, ServerInfo, Token,
};
use distlock_model::{ModelConfig, ModelConnection, ModelNode, Scripting, Stage};

/// One model server with the commands it ran, in order.
struct Server {
    node: ModelNode,
    ran: Vec<Vec<u8>>,
}

impl Server {
    fn new(config: ModelConfig) -> Self {
        Server {
            node: ModelNode::with_config(config),
            ran: Vec::new(),
        }
    }

    /// Runs what `conn` has buffered; returns the replies.
    fn serve(&mut self, conn: &mut ModelConnection, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        let ran = &mut self.ran;
        self.node
            .serve_observed(conn, now, &mut out, |stage, _, args| {
                if stage == Stage::Before {
                    ran.push(args[0].to_ascii_uppercase());
                }
            });
        out
    }

    fn ran_a_script(&self) -> bool {
        self.ran
            .iter()
            .any(|c| matches!(c.as_slice(), b"EVAL" | b"EVALSHA" | b"SCRIPT"))
    }
}

/// A connection after its handshake, and what the handshake learned.
fn connect(server: &mut Server) -> (ModelConnection, ServerInfo) {
    let mut conn = ModelConnection::new();
    let mut hs = Handshake::new(HandshakeOptions::default(), ms(0));
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(outcome) = hs.poll_outcome() {
            return (conn, outcome.expect("handshake"));
        }
        let len = hs.poll_transmit(&mut buf).unwrap().expect("a request");
        conn.receive(&buf[..len]);
        let replies = server.serve(&mut conn, ms(0));
        hs.handle_input(&replies, ms(0));
    }
}

/// Runs `m` against `servers` (node i on `conns[i]`) at `now` until it has an outcome.
fn run<Op: Operation, const N: usize>(
    m: &mut Machine<Op, N>,
    servers: &mut [Server],
    conns: &mut [ModelConnection],
    now: Instant,
) -> Op::Outcome {
    let mut buf = vec![0u8; 4096];
    for _ in 0..100 {
        if let Some(outcome) = m.poll_outcome() {
            return outcome;
        }
        let mut sent = false;
        while let Some(tx) = m.poll_transmit(now, &mut buf).unwrap() {
            conns[tx.node].receive(&buf[..tx.len]);
            let replies = servers[tx.node].serve(&mut conns[tx.node], now);
            m.handle_input(tx.node, &replies, now);
            sent = true;
        }
        if !sent {
            // Nothing to send and no outcome: only a timer can move it, and these tests
            // never need one.
            panic!("the machine waits for a timer at {:?}", m.poll_timeout());
        }
    }
    panic!("no outcome after 100 rounds");
}

fn scriptless(options: LockOptions) -> LockOptions {
    LockOptions {
        scripts: Scripts::Never,
        ..options
    }
}

fn plain_scriptless() -> Lock {
    lock_with(scriptless(LockOptions::default()))
}

fn native_servers() -> [ModelConfig; 2] {
    [ModelConfig::valkey(9, 0, 0), ModelConfig::redis(8, 4, 0)]
}

/// A cluster of `n` model servers of `config`, connected.
fn cluster(config: ModelConfig, n: usize) -> (Vec<Server>, Vec<ModelConnection>, Vec<ServerInfo>) {
    let mut servers: Vec<Server> = (0..n).map(|_| Server::new(config)).collect();
    let (conns, infos) = servers.iter_mut().map(connect).unzip();
    (servers, conns, infos)
}

fn acquire<const N: usize>(lock: &Lock, t: &Token, infos: &[ServerInfo]) -> Acquire<N> {
    Acquire::new(lock, t.clone(), infos, Duration::ZERO, ms(0), 7).unwrap()
}

#[test]
fn a_scriptless_lock_runs_on_native_commands_alone() {
    for base in native_servers() {
        for scripting in [Scripting::Absent, Scripting::Forbidden] {
            for n in [1, 3] {
                let config = base.with_scripting(scripting);
                let (mut servers, mut conns, infos) = cluster(config, n);
                let lock = plain_scriptless();
                let (a, b) = (token(1), token(2));

                let lease = run(
                    &mut acquire::<3>(&lock, &a, &infos),
                    &mut servers,
                    &mut conns,
                    ms(0),
                )
                .expect("the first acquire wins");
                // Exclusion: the second token is refused while the first holds.
                let refused = run(
                    &mut acquire::<3>(&lock, &b, &infos),
                    &mut servers,
                    &mut conns,
                    ms(1),
                );
                assert!(
                    matches!(refused, Err(Error::NotAcquired { .. })),
                    "{refused:?}"
                );

                let mut extend = Extend::<3>::new(&lock, a.clone(), &infos, ms(2), 7).unwrap();
                run(&mut extend, &mut servers, &mut conns, ms(2)).expect("extended");
                // An extend by a token that does not hold changes nothing.
                let mut stranger = Extend::<3>::new(&lock, b.clone(), &infos, ms(3), 7).unwrap();
                assert_eq!(
                    run(&mut stranger, &mut servers, &mut conns, ms(3)),
                    Err(Error::NotHeld)
                );

                let mut release = Release::<3>::new(&lock, a.clone(), &infos, ms(4), 7).unwrap();
                assert_eq!(
                    run(&mut release, &mut servers, &mut conns, ms(4)),
                    Ok(Released::Free)
                );
                let signal = lock.keys().signal().concat();
                for s in &servers {
                    assert_eq!(s.node.value(&lock.keys().lock().concat(), ms(4)), None);
                    assert_eq!(s.node.list_len(&signal, ms(4)), 1, "the waiters' wake-up");
                }
                run(
                    &mut acquire::<3>(&lock, &b, &infos),
                    &mut servers,
                    &mut conns,
                    ms(5),
                )
                .expect("free again after the release");

                for s in &servers {
                    assert!(!s.ran_a_script(), "{config:?}: {:?}", s.ran);
                    assert_eq!(s.ran[0], b"HELLO", "the handshake is one HELLO");
                    for native in [&b"SET"[..], b"LPUSH"] {
                        assert!(s.ran.iter().any(|c| c == native), "{:?}", s.ran);
                    }
                }
                assert!(lease.fence().is_none());
            }
        }
    }
}

#[test]
fn never_refuses_options_that_need_scripts() {
    let cases = [
        (
            LockOptions {
                fenced: true,
                ..LockOptions::default()
            },
            ScriptedFeature::Fencing,
        ),
        (
            LockOptions {
                reentrant: true,
                ..LockOptions::default()
            },
            ScriptedFeature::Reentry,
        ),
        (
            LockOptions {
                fair: true,
                ..LockOptions::default()
            },
            ScriptedFeature::Fair,
        ),
    ];
    for (options, feature) in cases {
        assert!(
            Lock::new(KeyLayout::default(), b"job", options).is_ok(),
            "Auto allows it"
        );
        let refused = Lock::new(KeyLayout::default(), b"job", scriptless(options));
        assert_eq!(refused, Err(ConfigError::NeedsScripts(feature)));
        let message = refused.unwrap_err().to_string();
        assert!(message.contains(feature.name()), "{message}");
    }
    // The Python libraries' layouts are plain compare-and-delete locks: no script needed.
    for layout in [KeyLayout::redis_py(), KeyLayout::python_redis_lock()] {
        let lock = Lock::new(layout, b"job", scriptless(LockOptions::default())).unwrap();
        let (mut servers, mut conns, infos) = cluster(
            ModelConfig::valkey(9, 0, 0).with_scripting(Scripting::Absent),
            1,
        );
        run(
            &mut acquire::<1>(&lock, &token(1), &infos),
            &mut servers,
            &mut conns,
            ms(0),
        )
        .expect("acquired");
        let mut release = Release::<1>::new(&lock, token(1), &infos, ms(1), 7).unwrap();
        assert_eq!(
            run(&mut release, &mut servers, &mut conns, ms(1)),
            Ok(Released::Free)
        );
        assert!(!servers[0].ran_a_script(), "{:?}", servers[0].ran);
    }
}

#[test]
fn never_on_a_server_without_the_native_commands_names_the_missing_one() {
    let lock = plain_scriptless();
    for (config, missing) in [
        (ModelConfig::redis(7, 2, 4), NativeCommand::CompareAndDelete),
        (ModelConfig::redis(8, 2, 0), NativeCommand::CompareAndDelete),
        // Valkey 8.1 has `SET … IFEQ` but not yet `DELIFEQ`.
        (
            ModelConfig::valkey(8, 1, 1),
            NativeCommand::CompareAndDelete,
        ),
    ] {
        let (_, _, info) = cluster(config, 1);
        // The third node is the old one.
        let infos = [
            connect_info(ModelConfig::valkey(9, 0, 0)),
            connect_info(ModelConfig::valkey(9, 0, 0)),
            info[0],
        ];
        let expected = ConfigError::MissingNativeCommand {
            node: 2,
            command: missing,
        };
        let acquire = Acquire::<3>::new(&lock, token(1), &infos, Duration::ZERO, ms(0), 7);
        assert_eq!(acquire.err(), Some(expected));
        assert_eq!(
            Release::<3>::new(&lock, token(1), &infos, ms(0), 7).err(),
            Some(expected)
        );
        assert_eq!(
            Extend::<3>::new(&lock, token(1), &infos, ms(0), 7).err(),
            Some(expected)
        );
        let message = expected.to_string();
        assert!(
            message.contains("DELIFEQ") && message.contains("node 2"),
            "{message}"
        );
    }
    // A server not known (its node was down when the machine was built) is asked natively:
    // `DELIFEQ`, never a script; a server without it answers `unknown command`, the error.
    let unknown = [ServerInfo::default()];
    let mut release =
        Release::<1>::new(&lock, token(1), &unknown, ms(0), 7).expect("not refused up front");
    let mut old = vec![Server::new(ModelConfig::redis(7, 2, 4))];
    let mut conns = vec![connect(&mut old[0]).0];
    match run(&mut release, &mut old, &mut conns, ms(0)) {
        Err(Error::Server { error, .. }) => {
            assert_eq!(error.kind, ServerErrorKind::UnknownCommand);
            assert!(error.message.contains("DELIFEQ"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(!old[0].ran_a_script(), "{:?}", old[0].ran);
}

fn connect_info(config: ModelConfig) -> ServerInfo {
    connect(&mut Server::new(config)).1
}

/// A server that claims the native commands but answers `unknown command` (a proxy in front
/// of an older server, say): `Auto` falls back to the script, `Never` reports the error and
/// sends no script.
#[test]
fn never_reports_an_unknown_native_command_instead_of_falling_back() {
    let claimed = [connect_info(ModelConfig::valkey(9, 0, 0))];
    for scripts in [Scripts::Auto, Scripts::Never] {
        let lock = lock_with(LockOptions {
            scripts,
            ..LockOptions::default()
        });
        let mut servers = vec![Server::new(ModelConfig::redis(7, 2, 4))];
        let mut conns = vec![connect(&mut servers[0]).0];
        run(
            &mut acquire::<1>(&lock, &token(1), &claimed),
            &mut servers,
            &mut conns,
            ms(0),
        )
        .expect("SET NX is everywhere");
        let mut release = Release::<1>::new(&lock, token(1), &claimed, ms(1), 7).unwrap();
        let outcome = run(&mut release, &mut servers, &mut conns, ms(1));
        match scripts {
            Scripts::Never => {
                match &outcome {
                    Err(Error::Server { node: 0, error }) => {
                        assert_eq!(error.kind, ServerErrorKind::UnknownCommand);
                        assert!(error.message.contains("DELIFEQ"), "{}", error.message);
                    }
                    other => panic!("{other:?}"),
                }
                assert!(!servers[0].ran_a_script(), "{:?}", servers[0].ran);
                // Nothing was deleted: the lock is still held, until its TTL.
                assert!(
                    servers[0]
                        .node
                        .value(&lock.keys().lock().concat(), ms(1))
                        .is_some()
                );
            }
            _ => {
                assert_eq!(outcome, Ok(Released::Free));
                assert!(servers[0].ran.iter().any(|c| c == b"EVALSHA"));
            }
        }
    }
}

#[test]
fn auto_on_a_server_that_forbids_scripts_fails_with_a_typed_noperm() {
    let (mut servers, mut conns, infos) = cluster(
        ModelConfig::redis(7, 2, 4).with_scripting(Scripting::Forbidden),
        1,
    );
    let lock = lock_with(LockOptions::default());
    // `SET NX PX` needs no script; the release's compare-and-delete does on Redis 7.
    run(
        &mut acquire::<1>(&lock, &token(1), &infos),
        &mut servers,
        &mut conns,
        ms(0),
    )
    .expect("acquired");
    let mut release = Release::<1>::new(&lock, token(1), &infos, ms(1), 7).unwrap();
    // `run` allows no timer: the error comes with the reply, not after a timeout.
    match run(&mut release, &mut servers, &mut conns, ms(1)) {
        Err(Error::Server { error, .. }) => assert_eq!(error.kind, ServerErrorKind::NoPerm),
        other => panic!("{other:?}"),
    }
    let fenced = lock_with(LockOptions {
        fenced: true,
        ..LockOptions::default()
    });
    match run(
        &mut acquire::<1>(&fenced, &token(2), &infos),
        &mut servers,
        &mut conns,
        ms(2),
    ) {
        Err(Error::Server { error, .. }) => assert_eq!(error.kind, ServerErrorKind::NoPerm),
        other => panic!("{other:?}"),
    }
}
