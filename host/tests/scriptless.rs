//! Servers without scripts, against a real `redis-server` (Debian's 7.0, which has neither
//! `SET … IFEQ` nor `DELIFEQ`/`DELEX`):
//! - a connect loads no script (`INFO commandstats`: no `SCRIPT LOAD`), and the first
//!   script use still works (`NOSCRIPT`, then `EVAL`);
//! - `Scripts::Never` on this server is refused before anything is sent, with the typed
//!   error naming the missing command (API and `--no-scripts` on the command line);
//! - `Scripts::Auto` for an ACL user without scripting (`-@scripting`) acquires by `SET NX`
//!   and fails its release with a typed `NOPERM`, not a hang.
//!
//! The native path itself (a server with the commands) is shown on the model only
//! (`core/tests/scriptless.rs`, the simulator's `sim_budget_scriptless`).

mod support;

use std::time::Duration;

use distlock_core::{ConfigError, NativeCommand, ServerErrorKind};
use distlock_host::{Client, Error, Scripts};
use support::{
    RedisServer, blocking, bounded, command_calls, distlock, require_redis, run_bounded, show,
    stderr, unique_name,
};

/// Generous: "ended, not hung", never a speed claim.
const LIMIT: Duration = Duration::from_secs(10);

fn commandstats(server: &RedisServer) -> String {
    blocking(|| server.raw().ok(&["INFO", "commandstats"]).text().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_loads_no_script_and_the_first_use_still_works() {
    require_redis!();
    let server = blocking(RedisServer::start);
    let client = Client::connect([server.url()]).await.unwrap();
    let stats = commandstats(&server);
    assert_eq!(command_calls(&stats, "script|load"), 0, "{stats}");
    assert_eq!(command_calls(&stats, "hello"), 1, "{stats}");

    // Redis 7.0 has no native compare-and-delete: the release is the script, by EVALSHA
    // (NOSCRIPT on a fresh server), then by EVAL, which caches it for everyone.
    let name = unique_name("lazy");
    let guard = client.lock(&name).acquire().await.unwrap();
    guard.release().await.unwrap();
    let guard = client.lock(&name).acquire().await.unwrap();
    guard.release().await.unwrap();
    let stats = commandstats(&server);
    assert_eq!(command_calls(&stats, "eval"), 1, "loaded once: {stats}");
    assert_eq!(command_calls(&stats, "evalsha"), 2, "{stats}");
    assert_eq!(command_calls(&stats, "script|load"), 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_on_a_server_without_the_native_commands_is_refused_up_front() {
    require_redis!();
    let server = blocking(RedisServer::start);
    blocking(|| {
        server.raw().ok(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-@scripting",
        ])
    });
    let url = format!("redis://app:pw@127.0.0.1:{}", server.port());
    let client = Client::connect([url.as_str()])
        .await
        .unwrap()
        .with_scripts(Scripts::Never);
    let before = command_calls(&commandstats(&server), "set");
    let name = unique_name("never");
    let missing = ConfigError::MissingNativeCommand {
        node: 0,
        command: NativeCommand::CompareAndDelete,
    };
    match client.lock(&name).acquire().await {
        Err(Error::Config(e)) => assert_eq!(e, missing),
        other => panic!("{other:?}"),
    }
    match client.release(&name, "0123456789abcdef0123", false).await {
        Err(Error::Config(e)) => assert_eq!(e, missing),
        other => panic!("{other:?}"),
    }
    let stats = commandstats(&server);
    assert_eq!(command_calls(&stats, "set"), before, "nothing was sent");
    assert_eq!(
        command_calls(&stats, "eval") + command_calls(&stats, "evalsha"),
        0
    );

    // The command line: the same refusal, as a usage error naming the command.
    let out = blocking(|| {
        run_bounded(
            distlock(&url, &["--no-scripts", "acquire", "--name", &name]),
            LIMIT,
        )
        .expect("run distlock")
    });
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(stderr(&out).contains("DELIFEQ"), "{}", show(&out));
    let out = blocking(|| {
        run_bounded(
            distlock(
                &url,
                &["--no-scripts", "acquire", "--name", &name, "--fenced"],
            ),
            LIMIT,
        )
        .expect("run distlock")
    });
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(stderr(&out).contains("fenced"), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_under_an_acl_without_scripting_fails_with_a_typed_noperm() {
    require_redis!();
    let server = blocking(RedisServer::start);
    blocking(|| {
        server.raw().ok(&[
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-eval", "-evalsha", "-script",
        ])
    });
    let url = format!("redis://app:pw@127.0.0.1:{}", server.port());
    // The connect loads no script, so the ACL does not get in its way.
    let client = Client::connect([url.as_str()]).await.unwrap();
    let name = unique_name("noperm");
    let guard = client
        .lock(&name)
        .acquire()
        .await
        .expect("SET NX needs no script");
    let (released, _) = bounded("a release refused by the ACL", LIMIT, guard.release()).await;
    match released {
        Err(Error::Lock(distlock_core::Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::NoPerm, "{error}")
        }
        other => panic!("{other:?}"),
    }
    let (fenced, _) = bounded(
        "a fenced acquire refused by the ACL",
        LIMIT,
        client.lock(unique_name("fenced")).fenced(true).acquire(),
    )
    .await;
    match fenced {
        Err(Error::Lock(distlock_core::Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::NoPerm, "{error}")
        }
        other => panic!("{other:?}"),
    }
}
