//! `rediss://` with an ACL user, against a TLS-only `redis-server`: the Rust API and the
//! `distlock --tls-ca` path lock and unlock (`distlock run`'s guest too, served either way);
//! a wrong password is a clear handshake error.
//!
//! Needs `redis-server` built with TLS and the `openssl` command (to make a CA and a server
//! certificate). Without them the test fails and says why (`DISTLOCK_SKIP_REDIS=1` skips it).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use distlock_host::{Client, ConnectOptions, Error, KeyLayout, TlsSettings};
use support::{RedisServer, TlsFiles, distlock, require_redis, run_bounded, show, unique_name};

/// Runs `openssl args…` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let mut command = Command::new("openssl");
    command.current_dir(dir).args(args);
    let out = run_bounded(command, Duration::from_secs(30)).expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}:\n{}", show(&out));
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> TlsFiles {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=distlock test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// Fails the test: TLS cannot be tested here; under `DISTLOCK_SKIP_REDIS=1` says so instead
/// (the caller then returns).
fn skip(why: &str) {
    support::skip_or_fail(&format!("TLS cannot be tested: {why}"));
}

fn openssl_installed() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_acl_user_lock_and_unlock() {
    require_redis!();
    if !openssl_installed() {
        skip("the openssl command is not installed (apt-get install openssl)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let files = tokio::task::block_in_place(|| make_certificates(dir.path()));
    // An ACL user with a password, and the default user switched off: only `app` gets in.
    let started = tokio::task::block_in_place(|| {
        RedisServer::try_start_tls(
            files.clone(),
            Some(("app", "s3cret")),
            &[
                "--user", "app", "on", ">s3cret", "~*", "&*", "+@all", "--user", "default", "off",
            ],
        )
    });
    let server = match started {
        Ok(server) => server,
        // A build without TLS refuses the tls-* options (and says so in its log).
        Err(log) if log.to_ascii_lowercase().contains("tls") => {
            skip(&format!("redis-server was built without TLS:\n{log}"));
            return;
        }
        Err(log) => panic!("the TLS redis-server would not start:\n{log}"),
    };
    let port = server.port();
    let tls = TlsSettings::from_pem_files(&files.ca, None).expect("load the CA");
    let options = ConnectOptions {
        tls: Some(tls),
        ..ConnectOptions::default()
    };

    // The Rust API.
    let url = format!("rediss://app:s3cret@localhost:{port}");
    let client = Client::connect_with([&url], options.clone(), KeyLayout::default())
        .await
        .expect("connect over TLS");
    let name = unique_name("tls");
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(10))
        .fenced(true)
        .acquire()
        .await
        .expect("acquire over TLS");
    assert!(guard.is_held());
    assert_eq!(guard.fence(), Some(1));
    let status = client.status(&name).await.expect("status over TLS");
    assert_eq!(status.holder(), Some(guard.token()));
    let extended = guard
        .extend(Duration::from_secs(20))
        .await
        .expect("extend over TLS");
    assert!(extended > Duration::from_secs(10), "{extended:?}");
    guard.release().await.expect("release over TLS");
    let status = client.status(&name).await.expect("status over TLS");
    assert_eq!(status.holder(), None);

    // A wrong password: a handshake error that says authentication failed.
    let started = Instant::now();
    let wrong = format!("rediss://app:wrong@localhost:{port}");
    let err = Client::connect_with([&wrong], options.clone(), KeyLayout::default())
        .await
        .expect_err("wrong password");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            &err,
            Error::Handshake {
                source: distlock_core::HandshakeError::Auth(_),
                ..
            }
        ),
        "expected an authentication handshake error, got {err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("authentication"), "{message}");
    assert!(
        !message.contains("wrong@"),
        "the password must not be shown: {message}"
    );

    // No password at all for a server whose default user is off.
    let err = Client::connect_with(
        [format!("rediss://localhost:{port}")],
        options.clone(),
        KeyLayout::default(),
    )
    .await
    .expect_err("no credentials");
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");

    // TLS without trusting the CA: a TLS error, not a hang.
    let err = Client::connect_with([&url], ConnectOptions::default(), KeyLayout::default())
        .await
        .expect_err("untrusted certificate");
    assert!(
        matches!(err, Error::Tls { .. }),
        "expected a TLS error, got {err:?} ({err})"
    );

    // The CLI with --tls-ca.
    let ca = files.ca.display().to_string();
    let cli_name = unique_name("tls-cli");
    let run = |args: &[&str]| {
        let mut command = distlock(&url, &["--tls-ca", &ca]);
        command.args(args);
        tokio::task::block_in_place(|| {
            run_bounded(command, Duration::from_secs(30)).expect("run distlock")
        })
    };
    let acquired = run(&["acquire", "--name", &cli_name, "--ttl", "30s"]);
    assert_eq!(acquired.status.code(), Some(0), "{}", show(&acquired));
    let token = String::from_utf8_lossy(&acquired.stdout).trim().to_owned();
    let busy = run(&["acquire", "--name", &cli_name, "--no-wait"]);
    assert_eq!(busy.status.code(), Some(75), "{}", show(&busy));
    let released = run(&["release", "--name", &cli_name, "--token", &token]);
    assert_eq!(released.status.code(), Some(0), "{}", show(&released));
    let exec = run(&[
        "exec", "--name", &cli_name, "--ttl", "5s", "--", "sh", "-c", "exit 3",
    ]);
    assert_eq!(exec.status.code(), Some(3), "{}", show(&exec));

    // `distlock run`: the guest's connections trust --tls-ca too, served either way; without
    // it the server's certificate is not trusted and the guest takes no lock.
    let counter_dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = format!("{}::/data", counter_dir.path().display());
    let counted = || std::fs::read_to_string(counter_dir.path().join("counter")).ok();
    for (iteration, serve) in [&[][..], &["--native"][..]].into_iter().enumerate() {
        let mut args = vec!["run", "--example", "--dir", dir_arg.as_str()];
        args.extend_from_slice(serve);
        args.extend_from_slice(&["--", "count", &cli_name, "/data/counter", "1", "1"]);
        let untrusted = tokio::task::block_in_place(|| {
            run_bounded(distlock(&url, &args), Duration::from_secs(60)).expect("run distlock")
        });
        assert_eq!(
            untrusted.status.code(),
            Some(1),
            "{serve:?} without --tls-ca: {}",
            show(&untrusted)
        );
        let trusted = run(&args);
        assert_eq!(
            trusted.status.code(),
            Some(0),
            "{serve:?}: {}",
            show(&trusted)
        );
        assert_eq!(
            counted().as_deref().map(str::trim),
            Some((iteration + 1).to_string().as_str()),
            "{serve:?}: {}",
            show(&trusted)
        );
    }

    // The CLI with a wrong password: refused credentials (77), and the message says why.
    let mut command = distlock(&wrong, &["--tls-ca", &ca, "acquire", "--name", &cli_name]);
    command.env_remove("DISTLOCK_REDIS");
    let out = tokio::task::block_in_place(|| {
        run_bounded(command, Duration::from_secs(30)).expect("run distlock")
    });
    assert_eq!(out.status.code(), Some(77), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(
        !stderr.contains("wrong@"),
        "the password must not be shown: {stderr}"
    );
}
