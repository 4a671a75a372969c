//! Servers without scripts, against a real `redis-server` (Debian's 7.0, which has neither
//! `SET … IFEQ` nor `DELIFEQ`/`DELEX`):
//! - a connect loads no script (`INFO commandstats`: no `SCRIPT LOAD`), and the first
//!   script use still works (`NOSCRIPT`, then `EVAL`);
//! - `Scripts::Never` on this server is refused before anything is sent, with the typed
//!   error naming the missing command (API and `--no-scripts` on the command line);
//! - `Scripts::Auto` for an ACL user without scripting (`-@scripting`) acquires by `SET NX`
//!   and fails its release with a typed `NOPERM`, not a hang.
//!
//!
//! And against a real `valkey-server` 9.1 (`DELIFEQ`, `SET … IFEQ`; `scripts/test.sh`
//! installs it, see `support::valkey_server_binary`), as a user whose ACL forbids every
//! script, so a script sent by mistake fails the test:
//! - `Scripts::Never` takes, refuses, extends, hands over to a blocked waiter (woken by the
//!   native release's signal) and releases, and says "not held" for a wrong token;
//! - `Scripts::Auto` releases by `DELIFEQ` and extends by `SET … IFEQ` there;
//! - `--no-scripts` on the command line.
//!
//! The decisions are also on the model (`core/tests/scriptless.rs`, the simulator's
//! `sim_budget_scriptless`).

mod support;

use std::time::Duration;

use distlock_core::{ConfigError, NativeCommand, ServerErrorKind};
use distlock_host::{Client, Error, Scripts};
use support::{
    RedisServer, blocking, bounded, command_calls, distlock, require_redis, require_valkey,
    run_bounded, show, stderr, stdout, unique_name,
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
    let url = user_without_scripting(&server);
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

/// Adds a user `app` that may run every command but no script; its URL.
fn user_without_scripting(server: &RedisServer) -> String {
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
    format!("redis://app:pw@127.0.0.1:{}", server.port())
}

/// A Valkey 9.1 server and the URL of [`user_without_scripting`] on it.
fn valkey_without_scripting() -> (RedisServer, String) {
    let server = blocking(|| RedisServer::start_valkey_with(&[]));
    let url = user_without_scripting(&server);
    (server, url)
}

fn script_calls(server: &RedisServer) -> u64 {
    let stats = commandstats(server);
    command_calls(&stats, "eval") + command_calls(&stats, "evalsha")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_on_valkey_locks_hands_over_and_releases_without_a_script() {
    require_valkey!();
    let (server, url) = valkey_without_scripting();
    let connect = || async {
        Client::connect([url.as_str()])
            .await
            .unwrap()
            .with_scripts(Scripts::Never)
    };
    let (a, b) = (connect().await, connect().await);
    let name = unique_name("valkey-never");

    let held = a.lock(&name).acquire().await.expect("SET NX PX");
    let refused = b.lock(&name).try_acquire().await.unwrap_err();
    assert!(refused.is_not_acquired(), "{refused:?}");
    held.extend(Duration::from_secs(60))
        .await
        .expect("SET … IFEQ");
    let pttl = blocking(|| {
        server
            .raw()
            .ok(&["PTTL", &support::lock_key(&name)])
            .int()
            .unwrap()
    });
    assert!(pttl > 30_000, "the extend set the new ttl: {pttl} ms");

    // A waiter blocked on the wake-up list is handed the lock when the holder releases
    // natively (DELIFEQ, then the signal): it returns holding it.
    let waiter = tokio::spawn({
        let name = name.clone();
        async move { b.lock(&name).wait(Duration::from_secs(20)).acquire().await }
    });
    blocking(|| {
        support::wait_for("the waiter blocks on the wake-up list", LIMIT, || {
            (server.blocked_clients() >= 1).then_some(())
        })
    });
    held.release().await.expect("DELIFEQ");
    let (taken, _) = bounded("the woken waiter's acquire", LIMIT, waiter).await;
    let second = taken.unwrap().expect("the waiter takes the released lock");

    // A wrong token is "not held" and leaves the holder's key alone.
    let wrong = a
        .release(&name, "0123456789abcdef0123", false)
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, Error::Lock(distlock_core::Error::NotHeld)),
        "{wrong:?}"
    );
    second.release().await.expect("released");
    let stats = commandstats(&server);
    assert!(command_calls(&stats, "delifeq") >= 3, "{stats}");
    assert_eq!(script_calls(&server), 0, "no script was sent: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_on_valkey_releases_and_extends_natively() {
    require_valkey!();
    let (server, url) = valkey_without_scripting();
    // The default: scripts where needed, and on this server none is.
    let client = Client::connect([url.as_str()]).await.unwrap();
    let name = unique_name("valkey-auto");
    let guard = client.lock(&name).acquire().await.unwrap();
    guard.extend(Duration::from_secs(60)).await.unwrap();
    guard.release().await.unwrap();
    let stats = commandstats(&server);
    assert_eq!(command_calls(&stats, "delifeq"), 1, "{stats}");
    assert_eq!(script_calls(&server), 0, "{stats}");
    assert_eq!(
        blocking(|| server
            .raw()
            .ok(&["EXISTS", &support::lock_key(&name)])
            .int()),
        Some(0)
    );
}

#[test]
fn the_command_line_without_scripts_on_valkey() {
    require_valkey!();
    let (server, url) = valkey_without_scripting();
    let name = unique_name("valkey-cli");
    let run = |args: &[&str]| run_bounded(distlock(&url, args), LIMIT).expect("run distlock");
    let acquired = run(&["--no-scripts", "acquire", "--name", &name, "--json"]);
    assert_eq!(acquired.status.code(), Some(0), "{}", show(&acquired));
    let value: serde_json::Value = serde_json::from_str(&stdout(&acquired)).expect("JSON");
    let token = value["token"].as_str().expect("token").to_owned();
    let released = run(&[
        "--no-scripts",
        "release",
        "--name",
        &name,
        "--token",
        &token,
    ]);
    assert_eq!(released.status.code(), Some(0), "{}", show(&released));
    let again = run(&[
        "--no-scripts",
        "release",
        "--name",
        &name,
        "--token",
        &token,
    ]);
    assert_ne!(
        again.status.code(),
        Some(0),
        "released twice: {}",
        show(&again)
    );
    assert_eq!(script_calls(&server), 0, "{}", commandstats(&server));
}
