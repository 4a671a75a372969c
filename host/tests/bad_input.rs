//! Bad input, case by case: lock names, TTLs, waits, tokens, keys of the wrong type, and
//! hostile servers. Each case ends in a typed error with a clear message — or, where the input
//! is legal, in exactly the asked-for effect — and changes nothing it should not.
//!
//! "Changes nothing" is checked on a real `redis-server` from the side: the dataset digest
//! (`DEBUG DIGEST`) is the same before and after, and `INFO commandstats` shows that no lock
//! command reached the server. Hostile replies come from the scripted fake server in
//! `support/fake.rs`; every one of those cases must end within its request timeout.

mod support;

use std::time::{Duration, Instant};

use distlock_core::{
    ConfigError, HandshakeError, MAX_TTL, NodeFailure, ProtocolError, Released, ServerErrorKind,
};
use distlock_host::{Client, Error};
use support::fake::{FakeServer, Step};
use support::{
    RedisServer, Reply, blocking, distlock, require_redis, run_bounded, show, unique_name, until,
    wait_for,
};
use tokio::time::timeout;

/// Every operation against a hostile server ends within this (the request timeout is 1 s).
const BOUND: Duration = Duration::from_secs(5);

/// A server that answers `DEBUG DIGEST`.
fn server() -> RedisServer {
    RedisServer::start_with(&["--enable-debug-command", "local"])
}

/// Keys that must survive every bad input: a string, a list, and another lock.
fn seed(server: &RedisServer) {
    let mut raw = server.raw();
    raw.ok(&["SET", "bystander", "still here"]);
    raw.ok(&["RPUSH", "bystander:list", "a", "b"]);
    raw.ok(&[
        "SET",
        "distlock:{other}",
        "0123456789abcdef0123456789abcdef",
    ]);
}

/// The dataset as it was, before a bad input.
struct Before {
    digest: String,
    keys: i64,
}

/// Records the dataset and zeroes the command counters.
fn before(server: &RedisServer) -> Before {
    let mut raw = server.raw();
    let digest = raw.ok(&["DEBUG", "DIGEST"]).text().expect("digest");
    let keys = raw.ok(&["DBSIZE"]).int().expect("dbsize");
    raw.ok(&["CONFIG", "RESETSTAT"]);
    Before { digest, keys }
}

/// Commands the server ran since [`before`], but for `allowed` and the checks' own.
fn commands_run(server: &RedisServer, allowed: &[&str]) -> Vec<String> {
    let stats = server
        .raw()
        .ok(&["INFO", "commandstats"])
        .text()
        .unwrap_or_default();
    stats
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split(':').next())
        .filter(|c| {
            let command = c.split('|').next().unwrap_or(c);
            !matches!(command, "info" | "config") && !allowed.contains(&command)
        })
        .map(str::to_owned)
        .collect()
}

/// Nothing was sent (beyond `allowed`: a CLI's connection handshake) and nothing changed.
fn assert_untouched(server: &RedisServer, before: &Before, allowed: &[&str], what: &str) {
    let ran = commands_run(server, allowed);
    assert!(ran.is_empty(), "{what}: the server ran {ran:?}");
    let mut raw = server.raw();
    assert_eq!(
        raw.ok(&["DEBUG", "DIGEST"]).text().expect("digest"),
        before.digest,
        "{what}: the dataset changed"
    );
    assert_eq!(raw.ok(&["DBSIZE"]).int(), Some(before.keys), "{what}");
    assert_eq!(
        raw.ok(&["GET", "bystander"]).text().as_deref(),
        Some("still here")
    );
}

/// `result` is `Error::Config(want)`, shown as `message`.
#[track_caller]
fn assert_config<T: std::fmt::Debug>(result: Result<T, Error>, want: ConfigError, message: &str) {
    match result {
        Err(Error::Config(got)) => {
            assert_eq!(got, want);
            assert_eq!(
                Error::Config(got).to_string(),
                format!("invalid lock settings: {message}")
            );
        }
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

/// The core's lock error inside `result`.
#[track_caller]
fn lock_error<T: std::fmt::Debug>(result: Result<T, Error>) -> (distlock_core::Error, String) {
    match result {
        Err(Error::Lock(e)) => {
            let shown = e.to_string();
            (e, shown)
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
}

/// A well-formed token nobody holds.
const FOREIGN_TOKEN: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

// ---- names ----

/// An empty name is refused by every entry point before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_name_is_refused_and_nothing_is_sent() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let before = blocking(|| before(&server));
    let message = "lock name is empty";
    assert_config(
        client.lock("").acquire().await,
        ConfigError::EmptyName,
        message,
    );
    assert_config(
        client.lock(b"").try_acquire().await,
        ConfigError::EmptyName,
        message,
    );
    assert_config(
        client.release("", FOREIGN_TOKEN, false).await,
        ConfigError::EmptyName,
        message,
    );
    assert_config(
        client
            .extend("", FOREIGN_TOKEN, Duration::from_secs(1))
            .await,
        ConfigError::EmptyName,
        message,
    );
    assert_config(client.status("").await, ConfigError::EmptyName, message);
    assert_config(client.reset("").await, ConfigError::EmptyName, message);
    blocking(|| assert_untouched(&server, &before, &[], "empty name"));
}

/// A 1 MiB name is refused by length (not copied into a command); 256 bytes is the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_name_is_refused_and_the_longest_allowed_round_trips() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let before = blocking(|| before(&server));
    let huge = vec![b'x'; 1 << 20];
    let message = "lock name is 1048576 bytes; at most 256 are allowed";
    let too_long = ConfigError::NameTooLong { len: 1 << 20 };
    assert_config(client.lock(&huge).acquire().await, too_long, message);
    assert_config(
        client.release(&huge, FOREIGN_TOKEN, false).await,
        too_long,
        message,
    );
    assert_config(
        client
            .extend(&huge, FOREIGN_TOKEN, Duration::from_secs(1))
            .await,
        too_long,
        message,
    );
    assert_config(
        client.lock(vec![b'y'; 257]).acquire().await,
        ConfigError::NameTooLong { len: 257 },
        "lock name is 257 bytes; at most 256 are allowed",
    );
    blocking(|| assert_untouched(&server, &before, &[], "huge name"));

    let longest = "z".repeat(256);
    let guard = client.lock(&longest).acquire().await.expect("256 bytes");
    let key = format!("distlock:{{{longest}}}");
    let holder = blocking(|| server.raw().ok(&["GET", &key]).text());
    assert_eq!(holder.as_deref(), Some(guard.token()));
    guard.release().await.expect("release");
}

/// CR, LF and NUL are refused wherever they are, so a name can never smuggle a command into
/// the stream: `x\r\n*1\r\n$8\r\nFLUSHALL\r\n` runs nothing and every other key survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_bytes_are_refused_and_inject_nothing() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let before = blocking(|| before(&server));
    let cases: &[(&[u8], usize)] = &[
        (b"a\r\nb", 1),
        (b"x\r\n*1\r\n$8\r\nFLUSHALL\r\n", 1),
        (b"\r\nFLUSHALL\r\n", 0),
        (b"a\0b", 1),
        (b"\0", 0),
        (b"tab\there", 3),
        (b"del\x7f", 3),
    ];
    for &(name, at) in cases {
        let want = ConfigError::NameControlByte { at };
        let message = format!("lock name has a control byte (CR, LF, NUL, …) at offset {at}");
        assert_config(client.lock(name).acquire().await, want, &message);
        assert_config(
            client.lock(name).fenced(true).try_acquire().await,
            want,
            &message,
        );
        assert_config(
            client.release(name, FOREIGN_TOKEN, false).await,
            want,
            &message,
        );
        assert_config(
            client
                .extend(name, FOREIGN_TOKEN, Duration::from_secs(1))
                .await,
            want,
            &message,
        );
        assert_config(client.reset(name).await, want, &message);
    }
    blocking(|| assert_untouched(&server, &before, &[], "control bytes"));
    let stats = blocking(|| server.raw().ok(&["INFO", "commandstats"]).text());
    assert_eq!(
        support::command_calls(&stats.unwrap_or_default(), "flushall"),
        0
    );
}

/// A name starting with `}` would give its keys an empty hash tag: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_starting_with_a_closing_brace_is_refused() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let before = blocking(|| before(&server));
    assert_config(
        client.lock("}x").acquire().await,
        ConfigError::NameStartsWithBrace,
        "lock name may not start with '}' (it would break the keys' hash tag)",
    );
    blocking(|| assert_untouched(&server, &before, &[], "brace"));
}

/// Names are bytes: invalid UTF-8, RESP-looking text, braces, quotes and the key prefix
/// itself are all legal, and each lands in exactly the key `distlock:{<name>}` — no other
/// key is written, no other key disappears, and release removes exactly that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_names_round_trip_exactly() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let names: &[&[u8]] = &[
        &[0xff, 0xfe, b'x', 0x80],
        &[0xc3, 0x28],
        "ünï©ødé 🔒".as_bytes(),
        b"*1 $8 FLUSHALL",
        b"$-1",
        b"{inner}",
        b"a}b{c",
        b"quote\"and'and\\",
        b" ",
        distlock_core::DEFAULT_PREFIX,
        b"distlock:{other}",
    ];
    let keys_before = blocking(|| server.raw().ok(&["DBSIZE"]).int());
    for &name in names {
        let guard = client
            .lock(name)
            .fenced(true)
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", name.escape_ascii().to_string()));
        let key = [b"distlock:{".as_slice(), name, b"}"].concat();
        let fence_key = [key.as_slice(), b":fence"].concat();
        let (holder, fence, size) = blocking(|| {
            let mut raw = server.raw();
            (
                raw.command_bytes(&[b"GET", &key]).expect("GET"),
                raw.command_bytes(&[b"GET", &fence_key]).expect("GET"),
                raw.ok(&["DBSIZE"]).int(),
            )
        });
        let shown = name.escape_ascii().to_string();
        assert_eq!(
            holder,
            Reply::Bulk(Some(guard.token().as_bytes().to_vec())),
            "{shown}"
        );
        assert_eq!(fence, Reply::Bulk(Some(b"1".to_vec())), "{shown}");
        assert_eq!(guard.name(), name, "{shown}");
        // The lock key and its fence key, nothing else.
        assert_eq!(size, keys_before.map(|k| k + 2), "{shown}");
        guard.release().await.expect("release");
        let signal_key = [key.as_slice(), b":signal"].concat();
        let (gone, signal, size) = blocking(|| {
            let mut raw = server.raw();
            let gone = raw.command_bytes(&[b"EXISTS", &key]).expect("EXISTS");
            let signal = raw
                .command_bytes(&[b"EXISTS", &signal_key])
                .expect("EXISTS");
            // The fence stays (fences never go back): drop it so the count is exact again
            // (and the wake-up list, were one pushed).
            raw.command_bytes(&[b"DEL", &fence_key, &signal_key])
                .expect("DEL");
            (gone, signal, raw.ok(&["DBSIZE"]).int())
        });
        assert_eq!(gone, Reply::Int(0), "{shown}");
        assert_eq!(
            signal,
            Reply::Int(0),
            "{shown}: nobody waited, so the release pushed no wake-up"
        );
        assert_eq!(size, keys_before, "{shown}");
    }
    // The lock named like the key of the lock `other` did not touch that key.
    let other = blocking(|| server.raw().ok(&["GET", "distlock:{other}"]).text());
    assert_eq!(other.as_deref(), Some("0123456789abcdef0123456789abcdef"));
    let bystander = blocking(|| server.raw().ok(&["LRANGE", "bystander:list", "0", "-1"]));
    assert_eq!(
        bystander,
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"a".to_vec())),
            Reply::Bulk(Some(b"b".to_vec()))
        ]))
    );
}

// ---- TTL and wait ----

/// TTL 0, below a millisecond (it rounds to 0), above `MAX_TTL`, `Duration::MAX`, and too
/// short for the drift allowance: refused by acquire, `Client::extend` and `Guard::extend`,
/// and the held lock's key keeps its token and TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ttls_are_refused_and_change_nothing() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("ttl");
    let key = support::lock_key(&name);
    let guard = client
        .lock(&name)
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .expect("acquire");
    let before = blocking(|| before(&server));
    let bad_ttl = format!(
        "ttl must be between 4 ms (with the default clock-drift allowance) and {} ms",
        MAX_TTL.as_millis()
    );
    assert_eq!(MAX_TTL.as_millis(), 1 << 44);
    for ttl in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_millis(MAX_TTL.as_millis() + 1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let other = unique_name("ttl-other");
        assert_config(
            client.lock(&other).ttl(ttl).acquire().await,
            ConfigError::BadTtl,
            &bad_ttl,
        );
        assert_config(
            client.extend(&name, guard.token(), ttl).await,
            ConfigError::BadTtl,
            &bad_ttl,
        );
        assert_config(guard.extend(ttl).await, ConfigError::BadTtl, &bad_ttl);
    }
    // 1 or 2 ms leave nothing after the default drift allowance (1% + 2 ms).
    for ms in [1, 2] {
        let drift = "the clock-drift allowance is as long as the ttl: no validity would remain \
                     (with the default allowance, 1% of the ttl + 2 ms, the ttl must be at least 4 ms)";
        let ttl = Duration::from_millis(ms);
        assert_config(
            client
                .lock(unique_name("ttl-drift"))
                .ttl(ttl)
                .acquire()
                .await,
            ConfigError::DriftExceedsTtl,
            drift,
        );
        assert_config(guard.extend(ttl).await, ConfigError::DriftExceedsTtl, drift);
    }
    blocking(|| assert_untouched(&server, &before, &[], "bad ttl"));
    assert!(guard.is_held(), "a refused extend does not lose the lease");
    let (holder, pttl) = blocking(|| {
        let mut raw = server.raw();
        (raw.ok(&["GET", &key]).text(), raw.ok(&["PTTL", &key]).int())
    });
    assert_eq!(holder.as_deref(), Some(guard.token()));
    assert!(
        pttl.is_some_and(|ms| ms > 50_000 && ms <= 60_000),
        "PTTL {pttl:?}"
    );
    guard.release().await.expect("release");
}

/// The largest TTL the core accepts, 2^44 ms (~557 years), is far inside what `PX` takes:
/// the server keeps it as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_ttl_is_accepted_by_the_server() {
    require_redis!();
    let server = blocking(server);
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("ttl-max");
    let ttl = Duration::from_millis(MAX_TTL.as_millis());
    let guard = client
        .lock(&name)
        .ttl(ttl)
        .acquire()
        .await
        .expect("max ttl");
    let pttl = blocking(|| server.raw().ok(&["PTTL", &support::lock_key(&name)]).int());
    let max = i64::try_from(MAX_TTL.as_millis()).expect("fits");
    assert!(
        pttl.is_some_and(|ms| ms > max - 10_000 && ms <= max),
        "PTTL {pttl:?}"
    );
    guard.extend(ttl).await.expect("extend by the max ttl");
    guard.release().await.expect("release");
}

/// The wait is not bounded: `Duration::MAX` saturates (no overflow, no panic) and simply
/// means "until the holder lets go". A negative wait cannot be written at all —
/// `std::time::Duration` has no negative values — so the API needs no check for it; the CLI
/// refuses `--wait -1s` as a usage error (`cli_refuses_bad_durations_as_usage_errors`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_wait_saturates_and_still_acquires() {
    require_redis!();
    let server = blocking(server);
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("wait-max");
    let free = timeout(BOUND, client.lock(&name).wait(Duration::MAX).acquire())
        .await
        .expect("a free lock is had at once")
        .expect("acquire");
    let waiter = {
        let (client, name) = (client.clone(), name.clone());
        tokio::spawn(async move { client.lock(&name).wait(Duration::MAX).acquire().await })
    };
    // It tried, found the lock held and blocked on the wake-up signal (or, wrongly, gave up).
    until("the waiter to block on the wake-up signal", BOUND, || {
        waiter.is_finished() || blocking(|| server.blocked_clients()) == 1
    })
    .await;
    assert!(
        !waiter.is_finished(),
        "the waiter waits while the lock is held"
    );
    free.release().await.expect("release");
    let second = timeout(BOUND, waiter)
        .await
        .expect("the waiter gets the lock once it is released")
        .expect("no panic")
        .expect("acquire");
    second.release().await.expect("release");
}

// ---- tokens ----

/// Tokens of the wrong length or with bytes outside printable ASCII are refused by release,
/// extend and acquire-with-token before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_are_refused_and_nothing_is_sent() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("token");
    let guard = client.lock(&name).acquire().await.expect("acquire");
    let before = blocking(|| before(&server));
    let message = "token must be 16 to 64 printable ASCII bytes";
    let long = "a".repeat(65);
    for token in [
        "",
        "0123456789abcde",
        long.as_str(),
        "0123456789abcdef with space",
        "0123456789abcdef\r\nFLUSHALL\r\n",
        "0123456789abcdef\0",
        "0123456789abcdéf",
    ] {
        assert_config(
            client.release(&name, token, false).await,
            ConfigError::BadToken,
            message,
        );
        assert_config(
            client.extend(&name, token, Duration::from_secs(5)).await,
            ConfigError::BadToken,
            message,
        );
        assert_config(
            client.lock(&name).token(token).try_acquire().await,
            ConfigError::BadToken,
            message,
        );
    }
    blocking(|| assert_untouched(&server, &before, &[], "bad token"));
    assert!(guard.is_held());
    guard.release().await.expect("release");
}

/// Another holder's token (well formed, just not the holder's): release and extend say
/// `NotHeld`, and the holder's key keeps its token and TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_token_releases_and_extends_nothing() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("foreign");
    let key = support::lock_key(&name);
    let holder = client
        .lock(&name)
        .ttl(Duration::from_secs(20))
        .acquire()
        .await
        .expect("acquire");
    // A token another holder of a *different* lock really holds is foreign here too.
    let elsewhere = client
        .lock(unique_name("elsewhere"))
        .acquire()
        .await
        .expect("acquire");
    let before = blocking(|| before(&server));
    for token in [FOREIGN_TOKEN, elsewhere.token()] {
        let (e, shown) = lock_error(client.release(&name, token, false).await);
        assert_eq!(e, distlock_core::Error::NotHeld);
        assert!(
            shown.starts_with("this token does not hold the lock"),
            "{shown}"
        );
        let (e, _) = lock_error(client.extend(&name, token, Duration::from_secs(600)).await);
        assert_eq!(e, distlock_core::Error::NotHeld);
    }
    // The attempts ran (a compare that failed), and wrote nothing.
    let ran = blocking(|| commands_run(&server, &[]));
    assert!(ran.iter().any(|c| c == "evalsha"), "{ran:?}");
    let (token, pttl, digest) = blocking(|| {
        let mut raw = server.raw();
        (
            raw.ok(&["GET", &key]).text(),
            raw.ok(&["PTTL", &key]).int(),
            raw.ok(&["DEBUG", "DIGEST"]).text(),
        )
    });
    assert_eq!(token.as_deref(), Some(holder.token()));
    assert!(
        pttl.is_some_and(|ms| ms <= 20_000),
        "PTTL {pttl:?}: extended by a foreign token"
    );
    assert_eq!(digest.as_deref(), Some(before.digest.as_str()));
    holder.release().await.expect("the holder still releases");
    elsewhere.release().await.expect("release");
}

/// A's lease expired and B holds the lock now: A's old token — by `Client::release`,
/// `Client::extend` and A's guard — changes nothing of B's, and A's guard reports the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_cannot_touch_the_next_holder() {
    require_redis!();
    let server = blocking(server);
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("expired");
    let key = support::lock_key(&name);
    let a = client
        .lock(&name)
        .ttl(Duration::from_millis(200))
        .acquire()
        .await
        .expect("A acquires");
    let old = a.token().to_owned();
    blocking(|| {
        wait_for("A's key to expire", Duration::from_secs(5), || {
            (server.raw().ok(&["EXISTS", &key]).int() == Some(0)).then_some(())
        })
    });
    let b = client
        .lock(&name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("B acquires");
    let before = blocking(|| before(&server));

    let (e, _) = lock_error(client.release(&name, &old, false).await);
    assert_eq!(e, distlock_core::Error::NotHeld);
    let (e, _) = lock_error(client.extend(&name, &old, Duration::from_secs(60)).await);
    assert_eq!(e, distlock_core::Error::NotHeld);
    let (e, _) = lock_error(a.extend(Duration::from_secs(60)).await);
    assert_eq!(e, distlock_core::Error::NotHeld);
    timeout(BOUND, a.lost())
        .await
        .expect("A's guard reports the loss");
    assert!(!a.is_held());
    let (e, shown) = lock_error(a.release().await);
    assert_eq!(e, distlock_core::Error::NotHeld);
    assert!(shown.contains("stop the work it protected"), "{shown}");

    let (holder, pttl, digest) = blocking(|| {
        let mut raw = server.raw();
        (
            raw.ok(&["GET", &key]).text(),
            raw.ok(&["PTTL", &key]).int(),
            raw.ok(&["DEBUG", "DIGEST"]).text(),
        )
    });
    assert_eq!(holder.as_deref(), Some(b.token()));
    assert!(
        pttl.is_some_and(|ms| ms <= 30_000 && ms > 20_000),
        "PTTL {pttl:?}"
    );
    assert_eq!(digest.as_deref(), Some(before.digest.as_str()));
    assert!(b.is_held());
    b.release().await.expect("B releases");
}

// ---- keys of the wrong type ----

/// A list or hash under the exact lock key: release, extend and a scripted (fenced) acquire
/// get the server's `WRONGTYPE`, typed and with a hint; a plain acquire (`SET NX`, which only
/// asks whether the key exists) sees the key as taken. Nothing is written in any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_key_of_the_wrong_type_is_a_typed_server_error() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    for kind in ["list", "hash"] {
        let name = unique_name(kind);
        let key = support::lock_key(&name);
        blocking(|| {
            let mut raw = server.raw();
            match kind {
                "list" => raw.ok(&["RPUSH", &key, "x", "y"]),
                _ => raw.ok(&["HSET", &key, "field", "value"]),
            };
        });
        let before = blocking(|| before(&server));
        let wrong_type = |result: Result<_, Error>, what: &str| {
            let (e, shown) = lock_error(result);
            let distlock_core::Error::Server { node: 0, error } = &e else {
                panic!("{kind} {what}: expected WRONGTYPE, got {e:?}")
            };
            assert_eq!(error.kind, ServerErrorKind::WrongType, "{kind} {what}");
            assert!(
                shown.starts_with("node 0: server error: WRONGTYPE")
                    && shown.ends_with("pick another name or key prefix, or remove that key"),
                "{kind} {what}: {shown}"
            );
        };
        let started = Instant::now();
        wrong_type(
            client
                .lock(&name)
                .fenced(true)
                .wait(Duration::from_secs(3))
                .acquire()
                .await
                .map(|_| ()),
            "fenced acquire",
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waiting cannot fix WRONGTYPE: no retries"
        );
        wrong_type(
            client
                .lock(&name)
                .reentrant(true)
                .token(FOREIGN_TOKEN)
                .try_acquire()
                .await
                .map(|_| ()),
            "reentrant acquire",
        );
        wrong_type(
            client
                .release(&name, FOREIGN_TOKEN, false)
                .await
                .map(|_| ()),
            "release",
        );
        wrong_type(
            client.release(&name, FOREIGN_TOKEN, true).await.map(|_| ()),
            "reentrant release",
        );
        wrong_type(
            client
                .extend(&name, FOREIGN_TOKEN, Duration::from_secs(5))
                .await
                .map(|_| ()),
            "extend",
        );
        // A plain try-lock's `SET NX PX GET` (Redis ≥ 7.0) says `WRONGTYPE` itself.
        wrong_type(
            client.lock(&name).try_acquire().await.map(|_| ()),
            "plain acquire",
        );
        // The scripts' `GET` ran (and failed); so did the plain acquire's `SET NX GET`.
        // Scripts load on first use: `NOSCRIPT` to an `EVALSHA`, then `EVAL`.
        blocking(|| assert_untouched(&server, &before, &["evalsha", "eval", "get", "set"], kind));
        let kept = blocking(|| server.raw().ok(&["TYPE", &key]).text());
        assert_eq!(kept.as_deref(), Some(kind));
    }
}

/// The fencing counter's key holding a list: the fenced acquire fails with `WRONGTYPE` and
/// leaves no lock key behind (which would otherwise hold the lock for its TTL, for nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_key_of_the_wrong_type_leaves_no_lock_behind() {
    require_redis!();
    let server = blocking(server);
    blocking(|| seed(&server));
    let client = Client::connect([server.url()]).await.expect("connect");
    let name = unique_name("fence-type");
    let key = support::lock_key(&name);
    let fence_key = format!("{key}:fence");
    blocking(|| server.raw().ok(&["RPUSH", &fence_key, "x"]));
    let before = blocking(|| before(&server));
    let (e, shown) = lock_error(client.lock(&name).fenced(true).try_acquire().await);
    assert!(
        matches!(&e, distlock_core::Error::Server { error, .. } if error.kind == ServerErrorKind::WrongType),
        "{e:?}"
    );
    assert!(shown.contains("WRONGTYPE"), "{shown}");
    let (exists, digest) = blocking(|| {
        let mut raw = server.raw();
        (
            raw.ok(&["EXISTS", &key]).int(),
            raw.ok(&["DEBUG", "DIGEST"]).text(),
        )
    });
    assert_eq!(exists, Some(0), "the failed acquire left the lock key set");
    assert_eq!(digest.as_deref(), Some(before.digest.as_str()));
    // Unfenced, the lock is free to take.
    let guard = client.lock(&name).try_acquire().await.expect("acquire");
    guard.release().await.expect("release");
}

// ---- the command line ----

/// Every CLI run here finishes within this.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The usage exit code (`EX_USAGE`).
const EXIT_USAGE: i32 = 64;

fn cli(url: &str, args: &[&str]) -> std::process::Output {
    run_bounded(distlock(url, args), CLI_TIMEOUT).expect("run distlock")
}

/// Bad names through `acquire`, `release`, `extend`, `status` and `reset`: the message says
/// what is wrong, the exit code is the usage code, and no lock command reaches the server.
#[test]
fn cli_refuses_bad_names_as_usage_errors() {
    require_redis!();
    let server = server();
    seed(&server);
    let url = server.url();
    let huge = "n".repeat(100 * 1024);
    let cases: &[(&str, &str)] = &[
        ("", "lock name is empty"),
        (&huge, "lock name is 102400 bytes; at most 256 are allowed"),
        ("a\r\nFLUSHALL\r\n", "lock name has a control byte"),
        ("}x", "lock name may not start with '}'"),
    ];
    let before = before(&server);
    let token = FOREIGN_TOKEN;
    for &(name, message) in cases {
        for args in [
            vec!["acquire", "--name", name],
            vec!["release", "--name", name, "--token", token],
            vec!["extend", "--name", name, "--token", token, "--ttl", "5s"],
            vec!["status", "--name", name],
            vec!["reset", "--name", name],
        ] {
            let out = cli(&url, &args);
            let shown = format!("{:?} {}", &args[0], show(&out));
            assert_eq!(out.status.code(), Some(EXIT_USAGE), "{shown}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with("distlock: invalid lock settings: ") && stderr.contains(message),
                "{shown}"
            );
            assert!(out.stdout.is_empty(), "{shown}");
        }
    }
    // The CLI connects (handshake) before it looks at the name; nothing else ran.
    assert_untouched(
        &server,
        &before,
        &["hello", "client", "script"],
        "cli names",
    );
}

/// A name that is not UTF-8 cannot be given on the command line: clap refuses it as a usage
/// error.
#[cfg(unix)]
#[test]
fn cli_refuses_a_non_utf8_name_as_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let mut command = distlock("redis://127.0.0.1:1", &[]);
    command
        .arg("acquire")
        .arg("--name")
        .arg(std::ffi::OsStr::from_bytes(&[0xff, 0xfe]));
    let out = run_bounded(command, CLI_TIMEOUT).expect("run distlock");
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid UTF-8"),
        "{}",
        show(&out)
    );
}

/// `--wait -1s` (a negative wait), `--wait=-1s`, garbage durations and `--ttl 0s`: usage
/// errors with a message, refused before any lock command.
#[test]
fn cli_refuses_bad_durations_as_usage_errors() {
    require_redis!();
    let server = server();
    seed(&server);
    let url = server.url();
    let before = before(&server);
    let name = unique_name("cli-duration");
    let name = name.as_str();
    let cases: &[(&[&str], &str)] = &[
        (&["acquire", "--name", name, "--wait", "-1s"], "-1"),
        (&["acquire", "--name", name, "--wait=-1s"], "--wait"),
        (&["acquire", "--name", name, "--wait", "soon"], "--wait"),
        (&["acquire", "--name", name, "--ttl", "-5s"], "-5"),
        (
            &["acquire", "--name", name, "--ttl", "0s"],
            "must be between 4 ms and",
        ),
        (
            &["acquire", "--name", name, "--ttl", "1ms"],
            "clock-drift allowance",
        ),
        (
            &[
                "extend",
                "--name",
                name,
                "--token",
                FOREIGN_TOKEN,
                "--ttl",
                "0s",
            ],
            "must be between 4 ms and",
        ),
        (
            &["release", "--name", name, "--token", ""],
            "token must be 16 to 64",
        ),
    ];
    for (args, message) in cases {
        let out = cli(&url, args);
        let shown = format!("{args:?}: {}", show(&out));
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{shown}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{shown}"
        );
    }
    assert_untouched(
        &server,
        &before,
        &["hello", "client", "script"],
        "cli durations",
    );
}

// ---- hostile servers ----

/// A client on `fake` with the default options.
async fn fake_client(fake: &FakeServer) -> Client {
    timeout(BOUND, Client::connect([fake.url()]))
        .await
        .expect("bounded connect")
        .expect("the fake server handshakes")
}

/// Runs `op` bounded by [`BOUND`]; returns its result and how long it took.
async fn bounded<T>(op: impl std::future::Future<Output = T>, what: &str) -> (T, Duration) {
    support::bounded(what, BOUND, op).await
}

/// The node failure a single-node operation ended with.
#[track_caller]
fn node_failure<T: std::fmt::Debug>(result: Result<T, Error>) -> (NodeFailure, String) {
    let (e, shown) = lock_error(result);
    match e {
        distlock_core::Error::QuorumLost {
            granted: 0,
            needed: 1,
            nodes: 1,
            last_failure: Some(failure),
        } => (failure, shown),
        other => panic!("expected a lost node, got {other:?}"),
    }
}

/// A reply that is not RESP at all.
#[tokio::test]
async fn a_garbage_reply_is_a_protocol_error() {
    let fake = FakeServer::start(vec![Step::send(b"HTTP/1.1 400 Bad Request\r\n\r\n")]);
    let client = fake_client(&fake).await;
    let (result, _) = bounded(client.lock("job").try_acquire(), "garbage").await;
    let (failure, shown) = node_failure(result);
    assert_eq!(failure, NodeFailure::Protocol(ProtocolError::Malformed));
    assert!(
        shown.contains("reply is not valid RESP; is this a Redis server?"),
        "{shown}"
    );
}

/// Something that is not a Redis server answers the handshake: connecting fails, typed.
#[tokio::test]
async fn a_garbage_handshake_reply_fails_the_connect() {
    let fake = FakeServer::start_with_hello(b"SSH-2.0-OpenSSH_9.6\r\n", vec![]);
    let (result, _) = bounded(Client::connect([fake.url()]), "garbage handshake").await;
    match result {
        Err(
            ref e @ Error::Handshake {
                source: HandshakeError::Protocol(ProtocolError::Malformed),
                ..
            },
        ) => assert!(
            e.to_string()
                .contains("handshake failed: reply is not valid RESP"),
            "{e}"
        ),
        other => panic!("expected a handshake protocol error, got {other:?}"),
    }
}

/// The server closes the connection in the middle of a reply (`$10\r\nabc`, then EOF):
/// acquire, release and extend each report a lost connection, without waiting for the
/// request timeout.
#[tokio::test]
async fn a_server_closing_mid_reply_is_a_lost_connection() {
    // Every command, the acquire's rollback on a new connection included.
    let fake = FakeServer::start(vec![Step::Repeat(Box::new(Step::SendAndClose(
        b"$10\r\nabc".to_vec(),
    )))]);
    let client = fake_client(&fake).await;
    let (acquired, took) = bounded(client.lock("job").try_acquire(), "acquire").await;
    let (failure, shown) = node_failure(acquired);
    assert_eq!(failure, NodeFailure::Disconnected);
    assert!(shown.contains("connection lost"), "{shown}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (released, took) = bounded(client.release("job", FOREIGN_TOKEN, false), "release").await;
    assert_eq!(node_failure(released).0, NodeFailure::Disconnected);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (extended, _) = bounded(
        client.extend("job", FOREIGN_TOKEN, Duration::from_secs(5)),
        "extend",
    )
    .await;
    assert_eq!(node_failure(extended).0, NodeFailure::Disconnected);
}

/// RESP3 push frames (client-side caching invalidations) before and between replies, whole
/// or split a byte at a time, are not replies: every operation still succeeds. (The fake is
/// a Redis 7.2: the acquire is `SET NX PX GET`, whose RESP3 null — no old value — grants.)
#[tokio::test]
async fn push_frames_between_replies_are_ignored() {
    const PUSH: &[u8] = b">2\r\n$10\r\ninvalidate\r\n*0\r\n";
    let with_push = |reply: &[u8]| [PUSH, PUSH, reply].concat();
    let fake = FakeServer::start(vec![
        Step::Send(with_push(b"_\r\n")),
        Step::Trickle(with_push(b":1\r\n"), 1),
        Step::Trickle(with_push(b":0\r\n"), 3),
    ]);
    let client = fake_client(&fake).await;
    let (guard, _) = bounded(client.lock("job").try_acquire(), "acquire").await;
    let guard = guard.expect("the push frames are skipped and the null grants");
    let (extended, _) = bounded(guard.extend(Duration::from_secs(30)), "extend").await;
    extended.expect("the push frames are skipped and :1 extends");
    let (released, _) = bounded(guard.release(), "release").await;
    assert_eq!(released.expect("release"), Released::Free);
    assert_eq!(fake.command_names(), ["SET", "EVALSHA", "EVALSHA"]);
}

/// A declared length no lock reply can have — a 10 GB bulk string, a 2^31-element array,
/// a map of 2^62 pairs — is refused as too large as soon as its header arrives: nothing is
/// allocated for it and the client does not sit out the request timeout waiting for the
/// rest.
#[tokio::test]
async fn a_huge_declared_length_is_refused_at_once() {
    for header in [
        &b"$9999999999\r\n"[..],
        b"*2147483647\r\n",
        b"%4611686018427387903\r\n",
        b"*1\r\n$99999999\r\nabc",
    ] {
        let shown_header = header.escape_ascii().to_string();
        let fake = FakeServer::start(vec![Step::send(header)]);
        let client = fake_client(&fake).await;
        // A request timeout far above a loaded machine's round trip to a local fake, so
        // "refused at once" and "sat out the request timeout" cannot be confused.
        let options = distlock_host::LockOptions {
            request_timeout: distlock_core::Duration::from_secs(4),
            ..distlock_host::LockOptions::default()
        };
        let (result, took) = bounded(
            client.lock("job").options(options).try_acquire(),
            &shown_header,
        )
        .await;
        let (failure, shown) = node_failure(result);
        assert_eq!(
            failure,
            NodeFailure::Protocol(ProtocolError::FrameTooLarge {
                capacity: distlock_core::REPLY_CAP
            }),
            "{shown_header}"
        );
        assert!(
            shown.contains("reply is longer than the 512 bytes a lock reply can take"),
            "{shown}"
        );
        assert!(
            took < Duration::from_secs(2),
            "{shown_header}: took {took:?}, as if waiting for the rest (a 4 s request timeout)"
        );
    }
}

/// Well-formed RESP3 of a type the command never returns, where nil or a bulk string (the
/// acquire's `SET NX PX GET`: the fake is a Redis 7.2) or an integer (release, extend) is
/// expected: a typed protocol error. RESP3 null (`_`) is a legal nil, and a bulk string the
/// holder's token: "held".
#[tokio::test]
async fn unexpected_resp3_types_are_protocol_errors() {
    let unexpected = NodeFailure::Protocol(ProtocolError::UnexpectedReply);
    let replies: &[&[u8]] = &[
        b",1.5\r\n",
        b"#t\r\n",
        b"%1\r\n+a\r\n+b\r\n",
        b"(12345678901234567890\r\n",
        b"~1\r\n+OK\r\n",
        b":1\r\n",
        b"=7\r\ntxt:yes\r\n",
        b"+OK\r\n",
    ];
    for reply in replies {
        let shown_reply = reply.escape_ascii().to_string();
        let fake = FakeServer::start(vec![Step::send(reply); 3]);
        let client = fake_client(&fake).await;
        let (acquired, _) = bounded(client.lock("job").try_acquire(), &shown_reply).await;
        if reply.starts_with(b"=") {
            // A verbatim string decodes as a bulk string: to `SET NX GET` a holder's token,
            // a refusal — never a grant.
            let (e, _) = lock_error(acquired);
            assert!(
                matches!(e, distlock_core::Error::NotAcquired { .. }),
                "acquire {shown_reply}: {e:?}"
            );
        } else {
            let (failure, shown) = node_failure(acquired);
            assert_eq!(failure, unexpected, "acquire {shown_reply}");
            assert!(
                shown.contains("reply has a type or value this command never returns"),
                "{shown}"
            );
        }
        // `:1` is a legal release or extend answer; the rest are not.
        if *reply != b":1\r\n" {
            let (released, _) =
                bounded(client.release("job", FOREIGN_TOKEN, false), &shown_reply).await;
            assert_eq!(
                node_failure(released).0,
                unexpected,
                "release {shown_reply}"
            );
            let (extended, _) = bounded(
                client.extend("job", FOREIGN_TOKEN, Duration::from_secs(5)),
                &shown_reply,
            )
            .await;
            assert_eq!(node_failure(extended).0, unexpected, "extend {shown_reply}");
        }
    }

    let fake = FakeServer::start(vec![Step::send(b"$6\r\nholder\r\n"), Step::send(b"_\r\n")]);
    let client = fake_client(&fake).await;
    let (acquired, _) = bounded(client.lock("job").try_acquire(), "held").await;
    let (e, _) = lock_error(acquired);
    assert!(
        matches!(e, distlock_core::Error::NotAcquired { attempts: 1, .. }),
        "{e:?}"
    );
    let (released, _) = bounded(client.release("job", FOREIGN_TOKEN, false), "null").await;
    assert_eq!(node_failure(released).0, unexpected);
}

/// Server error replies, each mapped to its kind: the ones waiting cannot fix (`NOAUTH`,
/// `MOVED`, `WRONGTYPE`, `NOPERM`, `OOM`) end the operation at once as a server error with a
/// hint; the transient ones (`READONLY`, `LOADING`) are retried until the deadline and then
/// reported as the node's failure.
#[tokio::test]
async fn server_error_replies_map_to_their_kinds() {
    let fatal: &[(&[u8], ServerErrorKind, &str)] = &[
        (
            b"-NOAUTH Authentication required.\r\n",
            ServerErrorKind::NoAuth,
            "give the right user and password",
        ),
        (
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            ServerErrorKind::Moved,
            "connect to the node that owns the key",
        ),
        (
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            ServerErrorKind::WrongType,
            "pick another name or key prefix",
        ),
        (
            b"-NOPERM User distlock has no permissions to run the 'set' command\r\n",
            ServerErrorKind::NoPerm,
            "the ACL user needs the lock's keys and commands",
        ),
        (
            b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
            ServerErrorKind::OutOfMemory,
            "the server hit maxmemory",
        ),
    ];
    for &(reply, kind, hint) in fatal {
        let fake = FakeServer::start(vec![Step::always(reply)]);
        let client = fake_client(&fake).await;
        let checks: [(&str, Result<(), Error>, Duration); 3] = [
            {
                let (r, took) = bounded(
                    client.lock("job").wait(Duration::from_secs(3)).acquire(),
                    "acquire",
                )
                .await;
                ("acquire", r.map(|_| ()), took)
            },
            {
                let (r, took) =
                    bounded(client.release("job", FOREIGN_TOKEN, false), "release").await;
                ("release", r.map(|_| ()), took)
            },
            {
                let (r, took) = bounded(
                    client.extend("job", FOREIGN_TOKEN, Duration::from_secs(5)),
                    "extend",
                )
                .await;
                ("extend", r.map(|_| ()), took)
            },
        ];
        for (what, result, took) in checks {
            let (e, shown) = lock_error(result);
            let distlock_core::Error::Server { node: 0, error } = &e else {
                panic!("{what} {kind:?}: expected a server error, got {e:?}")
            };
            assert_eq!(error.kind, kind, "{what}");
            assert!(shown.contains(hint), "{what}: {shown}");
            assert!(
                took < Duration::from_millis(900),
                "{what} {kind:?}: waiting cannot fix it, yet it took {took:?}"
            );
        }
    }

    let transient: &[(&[u8], ServerErrorKind)] = &[
        (
            b"-READONLY You can't write against a read only replica.\r\n",
            ServerErrorKind::ReadOnly,
        ),
        (
            b"-LOADING Redis is loading the dataset in memory\r\n",
            ServerErrorKind::Loading,
        ),
    ];
    for &(reply, kind) in transient {
        let fake = FakeServer::start(vec![Step::always(reply)]);
        let client = fake_client(&fake).await;
        let (acquired, took) = bounded(
            client
                .lock("job")
                .wait(Duration::from_millis(400))
                .acquire(),
            "acquire",
        )
        .await;
        let (failure, shown) = node_failure(acquired);
        assert!(
            matches!(&failure, NodeFailure::Server(e) if e.kind == kind),
            "{failure:?}"
        );
        assert!(
            shown.contains(std::str::from_utf8(&reply[1..9]).unwrap_or("?")),
            "{shown}"
        );
        assert!(
            took < Duration::from_secs(3),
            "acquire {kind:?} took {took:?}"
        );
        let sets = fake.command_names().iter().filter(|c| *c == "SET").count();
        assert!(
            sets > 1,
            "a transient error is retried within the wait: {sets} SETs"
        );

        let (released, took) =
            bounded(client.release("job", FOREIGN_TOKEN, false), "release").await;
        let (failure, _) = node_failure(released);
        assert!(
            matches!(&failure, NodeFailure::Server(e) if e.kind == kind),
            "{failure:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "release {kind:?} took {took:?}"
        );
    }
}
