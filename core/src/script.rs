//! The Lua scripts, each with its SHA-1 for `EVALSHA` (written out, and checked by a test).
//!
//! A script is sent by `EVALSHA` first; a `NOSCRIPT` reply (after a failover, a restart or
//! `SCRIPT FLUSH`) makes the machine resend it by `EVAL`, which also loads it, and use `EVAL`
//! on that node for the rest of its run.
//!
//! Invariants: every script touches only keys passed in `KEYS` (one hash tag, one slot);
//! each returns integers or a flat array of integers, so a reply never needs more than one
//! level of decoding; compare-and-act happens inside one script, so it is atomic on the node.

// Public to the fuzzer, model and simulator under `fuzzing`; crate-private otherwise.
#![cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub, dead_code))]

/// A script's name, text and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// What it does: `acquire`, `release`, `extend` or `raise-fence`.
    pub name: &'static str,
    /// The Lua source, as sent by `EVAL`.
    pub source: &'static str,
    /// Lowercase hex SHA-1 of `source`, as sent by `EVALSHA`.
    pub sha: [u8; 40],
}

impl Script {
    /// A script and its digest, written out: `every_digest_matches_its_script_text` checks
    /// each against a SHA-1 implementation, so a changed script fails that test until its
    /// digest is updated.
    const fn new(name: &'static str, source: &'static str, sha: [u8; 40]) -> Self {
        Script { name, source, sha }
    }
}

/// Acquire with fencing and/or re-entry.
///
/// `KEYS`: lock, fence, holds. `ARGV`: this attempt's token, ttl ms, fenced (`1`/`0`),
/// reentrant (`1`/`0`), the owner's token. A free lock takes the attempt's token (unique per
/// attempt, so a late rollback of another attempt cannot delete it); a reentrant lock is
/// re-entered when it holds the owner's token. Returns `{holds, fence}` when acquired (holds
/// 1: taken fresh, with the attempt's token; more: re-entered; fence 0 when not fenced), or
/// `{0, pttl}` when another token holds it.
///
/// Every call that can fail (`WRONGTYPE` on the fence or holds key, a counter that is not
/// a number) comes before the first write, and the lock key is written last: Redis does not
/// roll a failed script back, and an error reply after the lock key was set would leave the
/// lock held for its TTL by nobody (or a re-entry counted that the caller was told failed).
/// A fence raised without the lock is harmless: fences only need to grow.
///
/// Those calls go through `redis.pcall`, so an error says which of the lock's keys it is about
/// (`WRONGTYPE fence key: Operation against a key holding the wrong kind of value`): the
/// server's own message says only "a key", and a user told the lock key has the wrong type
/// when it is the fence key looks in the wrong place.
pub const ACQUIRE: Script = Script::new(
    "acquire",
    r"local function try(role, cmd, key)
 local r = redis.pcall(cmd, key)
 if type(r) == 'table' and r.err then
  return nil, redis.error_reply((string.gsub(r.err, ' ', ' '..role..' key: ', 1)))
 end
 return r
end
local holder, e = try('lock', 'GET', KEYS[1])
if e then return e end
if not holder then
 local fence = 0
 if ARGV[3] == '1' then
  fence, e = try('fence', 'INCR', KEYS[2])
  if e then return e end
 end
 if ARGV[4] == '1' then redis.call('SET', KEYS[3], 1, 'PX', ARGV[2]) end
 redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
 return {1, fence}
end
if holder == ARGV[5] and ARGV[4] == '1' then
 local fence, holds = 0
 if ARGV[3] == '1' then
  fence, e = try('fence', 'GET', KEYS[2])
  if e then return e end
  fence = tonumber(fence or '0')
 end
 holds, e = try('holds', 'INCR', KEYS[3])
 if e then return e end
 redis.call('PEXPIRE', KEYS[1], ARGV[2])
 redis.call('PEXPIRE', KEYS[3], ARGV[2])
 return {holds, fence}
end
return {0, redis.call('PTTL', KEYS[1])}
",
    *b"3c92b5284d64aae91b3cd7785b24937c86bbc3f3",
);

/// Compare-and-delete, with re-entry and the wake-up signal.
///
/// `KEYS`: lock, holds, signal. `ARGV`: token, reentrant (`1`/`0`), signal ttl ms (`0`: no
/// signal). Returns -1 when the token does not hold the lock, 0 when released, n > 0 when a
/// reentrant lock is still held n times.
pub const RELEASE: Script = Script::new(
    "release",
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[2] == '1' then
  local left = redis.call('DECR', KEYS[2])
  if left > 0 then return left end
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '0' then
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 0
",
    *b"92c8fb7aafb5fc063c45decba1674d17cf4c0c70",
);

/// Compare-and-extend.
///
/// `KEYS`: lock, holds. `ARGV`: token, ttl ms. Returns 1 when extended, 0 when the token
/// does not hold the lock.
pub const EXTEND: Script = Script::new(
    "extend",
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
",
    *b"628126630f9cabe0b036df8dd68e7a49081bba66",
);

/// Raise the fencing counter to at least a value (the second round of a fenced Redlock).
///
/// `KEYS`: fence. `ARGV`: the value. Returns the counter afterwards.
pub const RAISE_FENCE: Script = Script::new(
    "raise-fence",
    r"local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return current
",
    *b"303c7a9b869e409db36ccd3303a570fd6acc8510",
);

/// Every script the protocol runs on a server: for operators who preload them with
/// `SCRIPT LOAD` or allow-list them by digest, and for tests.
pub const SCRIPTS: [Script; 4] = [ACQUIRE, RELEASE, EXTEND, RAISE_FENCE];

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    #[test]
    fn every_digest_matches_its_script_text() {
        for script in SCRIPTS {
            let reference = Sha1::digest(script.source.as_bytes());
            let hex: alloc::string::String = reference
                .iter()
                .map(|b| alloc::format!("{b:02x}"))
                .collect();
            assert_eq!(
                core::str::from_utf8(&script.sha).unwrap(),
                hex,
                "{}",
                script.source
            );
        }
    }
}
