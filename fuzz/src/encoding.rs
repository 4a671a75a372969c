//! The `command_encoding` target: arbitrary names, prefixes, tokens, options and handshake
//! credentials. Each is either refused with the typed error its documentation gives for
//! the reason it is bad, or accepted; every command then built from it decodes (with
//! `redis-protocol`) to exactly the arguments the protocol asks for — CR, LF, NUL, braces
//! and invalid UTF-8 in a name travel as data and never change a command.

use arbitrary::{Arbitrary, Unstructured};
use distlock_core::{
    ConfigError, Drift, Duration, Jitter, KeyLayout, Lock, LockOptions, MAX_NAME_LEN,
    MAX_PREFIX_LEN, MAX_TOKEN_LEN, MAX_TTL, MIN_TOKEN_LEN, RetryPolicy, Token, resp::encode_into,
};

use crate::driver::{Harness, START};
use crate::handshake::{HandshakeHarness, options_from};
use crate::replies::ReplyKind;
use crate::setup::{Setup, SetupChoice, WAITS_MS};
use crate::wire::decode_commands;

/// How the token is made.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenChoice {
    /// From 16 bytes of entropy.
    Entropy([u8; 16]),
    /// Given as bytes (from the input's tail).
    Given,
}

/// The fixed part of a `command_encoding` input; the variable bytes (name, prefix, token,
/// credentials, a raw command) follow it, cut by `lens`.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct EncodingParams {
    /// Kind, nodes and servers (the options below replace its option choices).
    pub setup: SetupChoice,
    /// TTL in ms (anything: zero and too large must be refused).
    pub ttl: u64,
    /// Drift allowance, in 20-millionths of the TTL (so both sides of 100 % come up).
    pub per_million: u16,
    /// Drift allowance, fixed ms.
    pub fixed: u16,
    /// Request timeout in ms (0 must be refused).
    pub request_timeout: u16,
    /// Wake-up signal TTL in ms (`Some(0)` must be refused).
    pub wake_signal: Option<u16>,
    /// Retry base in ms.
    pub retry_base: u16,
    /// Retry cap in ms.
    pub retry_cap: u16,
    /// Attempt limit.
    pub max_attempts: Option<u8>,
    /// Fencing.
    pub fenced: bool,
    /// Re-entry.
    pub reentrant: bool,
    /// The token.
    pub token: TokenChoice,
    /// Lengths of: name (×2), prefix, token, user, password, client name, raw argument split.
    pub lens: [u8; 7],
    /// Handshake options (see `handshake::options_from`).
    pub handshake: u8,
    /// How short the short-buffer probes are.
    pub short: u16,
    /// Replies fed to the machine, round robin over its nodes, to reach every request kind
    /// (EVAL after NOSCRIPT, scripts after "unknown command", BLPOP, raises, rollbacks).
    pub replies: [ReplyKind; 6],
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    head
}

/// The drift allowance, as `core::lock::Drift::allowance` documents it.
fn allowance(ttl: u64, per_million: u32, fixed: u64) -> u64 {
    let scaled = u128::from(ttl) * u128::from(per_million);
    u64::try_from(scaled.div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .saturating_add(fixed)
}

/// Every reason the documentation gives for refusing `name` and `options`.
fn lock_reasons(name: &[u8], o: &LockOptions) -> Vec<ConfigError> {
    let mut reasons = Vec::new();
    if name.is_empty() {
        reasons.push(ConfigError::EmptyName);
    }
    if let Some(at) = name.iter().position(u8::is_ascii_control) {
        reasons.push(ConfigError::NameControlByte { at });
    }
    if name.first() == Some(&b'}') {
        reasons.push(ConfigError::NameStartsWithBrace);
    }
    if name.len() > MAX_NAME_LEN {
        reasons.push(ConfigError::NameTooLong { len: name.len() });
    }
    let ttl = o.ttl.as_millis();
    if ttl == 0 || ttl > MAX_TTL.as_millis() {
        reasons.push(ConfigError::BadTtl);
    }
    if allowance(ttl, o.drift.per_million, o.drift.fixed.as_millis()) >= ttl {
        reasons.push(ConfigError::DriftExceedsTtl);
    }
    if o.request_timeout.is_zero()
        || o.wake_signal.is_some_and(Duration::is_zero)
        || o.retry.base.is_zero()
        || o.retry.cap < o.retry.base
        || o.retry.max_attempts == Some(0)
    {
        reasons.push(ConfigError::BadRetry);
    }
    reasons
}

/// Runs one `command_encoding` input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(p) = EncodingParams::arbitrary(&mut u) else {
        return;
    };
    let mut rest = u.take_rest();
    let name = take(&mut rest, usize::from(p.lens[0]) * 2 % 300);
    let prefix = take(&mut rest, usize::from(p.lens[1]) % 80);
    let token_bytes = take(&mut rest, usize::from(p.lens[2]) % 80);
    let user = take(&mut rest, usize::from(p.lens[3]) % 40);
    let password = take(&mut rest, usize::from(p.lens[4]) % 40);
    let client_name = take(&mut rest, usize::from(p.lens[5]) % 40);
    let raw_args = rest;

    // The key prefix.
    let prefix_ok = prefix.len() <= MAX_PREFIX_LEN
        && !prefix
            .iter()
            .any(|&b| b.is_ascii_control() || b == b'{' || b == b'}');
    let layout = match KeyLayout::tagged(prefix) {
        Ok(layout) => {
            assert!(prefix_ok, "prefix {} accepted", prefix.escape_ascii());
            assert_eq!(layout.prefix(), Some(prefix));
            layout
        }
        Err(e) => {
            assert!(
                !prefix_ok,
                "prefix {} refused: {e:?}",
                prefix.escape_ascii()
            );
            assert_eq!(e, ConfigError::BadPrefix);
            KeyLayout::default()
        }
    };

    // The lock.
    let options = LockOptions {
        ttl: Duration::from_millis(p.ttl % (MAX_TTL.as_millis() + 2)),
        fenced: p.fenced,
        reentrant: p.reentrant,
        wake_signal: p.wake_signal.map(|ms| Duration::from_millis(u64::from(ms))),
        retry: RetryPolicy {
            base: Duration::from_millis(u64::from(p.retry_base)),
            cap: Duration::from_millis(u64::from(p.retry_cap)),
            jitter: Jitter::Full,
            max_attempts: p.max_attempts.map(u32::from),
        },
        request_timeout: Duration::from_millis(u64::from(p.request_timeout)),
        drift: Drift {
            per_million: u32::from(p.per_million) * 20,
            fixed: Duration::from_millis(u64::from(p.fixed)),
        },
        fair: false,
        scripts: distlock_core::Scripts::Auto,
    };
    let reasons = lock_reasons(name, &options);
    let lock = match Lock::new(layout.clone(), name, options) {
        Ok(lock) => {
            assert!(reasons.is_empty(), "accepted despite {reasons:?}");
            assert_eq!(lock.keys().name().as_bytes(), name);
            lock
        }
        Err(e) => {
            assert!(
                reasons.contains(&e),
                "refused with {e:?}; the reasons are {reasons:?}"
            );
            crate::reach::hit(|| format!("lock refused {e:?}"));
            return check_handshake_and_raw(&p, user, password, client_name, raw_args);
        }
    };

    // The token.
    let token = match p.token {
        TokenChoice::Entropy(entropy) => {
            let token = Token::from_entropy(entropy);
            let hex: String = entropy.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(token.as_str(), hex);
            token
        }
        TokenChoice::Given => {
            let ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token_bytes.len())
                && token_bytes.iter().all(u8::is_ascii_graphic);
            match Token::new(token_bytes) {
                Ok(token) => {
                    assert!(ok, "token {} accepted", token_bytes.escape_ascii());
                    assert_eq!(token.as_bytes(), token_bytes);
                    token
                }
                Err(e) => {
                    assert!(!ok, "token {} refused", token_bytes.escape_ascii());
                    assert_eq!(e, ConfigError::BadToken);
                    return check_handshake_and_raw(&p, user, password, client_name, raw_args);
                }
            }
        }
    };

    crate::reach::hit(|| "lock and token accepted".to_string());
    // Every command of a short run, checked argument by argument in `wire`.
    let base = p.setup.machine_setup();
    let setup = Setup {
        prefix: layout.prefix().unwrap_or_default().to_vec(),
        name: name.to_vec(),
        lock,
        token,
        wait: Duration::from_millis(WAITS_MS[usize::from(p.setup.wait % 8)]),
        ..base
    };
    let nodes = setup.nodes;
    let mut h = Harness::with_short_buffer(setup, Some(usize::from(p.short)));
    for (i, reply) in p.replies.iter().enumerate() {
        h.push_reply(i % nodes, *reply);
        h.deliver(i % nodes, usize::MAX);
    }
    h.finish();

    check_handshake_and_raw(&p, user, password, client_name, raw_args);
}

fn check_handshake_and_raw(
    p: &EncodingParams,
    user: &[u8],
    password: &[u8],
    client_name: &[u8],
    raw_args: &[u8],
) {
    // The handshake's commands, HELLO and then (after "unknown command") the RESP2 pipeline.
    let options = options_from(p.handshake, user, password, client_name);
    let mut hs = HandshakeHarness::new(options, START);
    hs.push_raw(b"-ERR unknown command 'HELLO', with args beginning with: \r\n");
    hs.deliver(usize::MAX);

    // Any arguments, as one command.
    let cut = usize::from(p.lens[6]) % 16 + 1;
    let args: Vec<&[u8]> = raw_args.chunks(cut).take(64).collect();
    if args.is_empty() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    let len = encode_into(&mut buf, |s| s.command(&args)).expect("fits");
    let decoded = decode_commands(&buf[..len]);
    assert_eq!(decoded.len(), 1);
    assert_eq!(
        decoded[0],
        args.iter().map(|a| a.to_vec()).collect::<Vec<_>>()
    );
    // The same argument from parts.
    let len = encode_into(&mut buf, |s| {
        s.array(1);
        s.bulk_parts(&args);
    })
    .expect("fits");
    assert_eq!(decode_commands(&buf[..len]), vec![vec![args.concat()]]);
}
