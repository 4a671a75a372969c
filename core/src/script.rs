//! The Lua scripts, each with its SHA-1 for `EVALSHA` (written out, and checked by a test).
//!
//! A script is sent by `EVALSHA` first; a `NOSCRIPT` reply (after a failover, a restart or
//! `SCRIPT FLUSH`) makes the machine resend it by `EVAL`, which also loads it, and use `EVAL`
//! on that node for the rest of its run.
//!
//! Invariants: every script touches only keys passed in `KEYS` (one hash tag, one slot) — with
//! one exception, fair mode's per-waiter keys: [`FAIR_ACQUIRE`] and [`FAIR_RELEASE`] build
//! `<prefix>{N}:wake:<token>` and `<prefix>{N}:alive:<token>` by appending a waiter's token to
//! a prefix passed in `KEYS`. The prefix carries the lock's hash tag, so those keys are in the
//! same slot and a Cluster routes the script right — and the semaphore's permit keys,
//! `<prefix>{N}:permit:<token>`, built the same way by [`SEMAPHORE_ACQUIRE`],
//! [`SEMAPHORE_RELEASE`], [`SEMAPHORE_EXTEND`], and the fair semaphore's
//! [`SEMAPHORE_FAIR_ACQUIRE`] and [`SEMAPHORE_FAIR_RELEASE`], which also build a fair
//! semaphore's per-waiter keys (`<prefix>{N}:permit-wake:<token>`,
//! `<prefix>{N}:permit-alive:<token>`: the encoder passes the fair semaphore's own prefixes,
//! so its waiters never meet a fair mutex's);
//! each returns integers or a flat array of integers (get-or-compute's [`GET_OR_LOCK`] also
//! `{2, value}`, an integer and the value's bytes), so a reply never needs more than one
//! level of decoding; compare-and-act happens inside one script, so it is atomic on the node.

// Public to the fuzzer, model and simulator under `fuzzing`; crate-private otherwise.
#![cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub, dead_code))]

/// A script's name, text and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// What it does: `acquire`, `release`, `extend`, `raise-fence`, `fair-acquire`,
    /// `fair-release`, `semaphore-acquire`, `semaphore-release`, `semaphore-extend`, `rw-acquire`,
    /// `rw-release`, `rw-extend`, `multi-acquire`, `multi-release`, `multi-extend`,
    /// `multi-raise-fence`, `semaphore-fair-acquire`, `semaphore-fair-release`, `get-or-lock` or
    /// `finish-compute`.
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
/// `KEYS`: lock, holds, signal, waiting mark. `ARGV`: token, reentrant (`1`/`0`), signal ttl
/// ms (`0`: no signal), always push (`1`: push whether or not a waiter marked, for layouts
/// whose waiters never mark and for a reset; `0`: push only while the waiting mark exists).
/// Returns -1 when the token does not hold the lock, 0 when released, n > 0 when a reentrant
/// lock is still held n times.
///
/// A release nobody waits for pushes nothing: the three signal commands cost the server more
/// than the compare-and-delete itself. Lua cannot see who is blocked in `BLPOP`, so waiters
/// say so: each attempt that may be followed by a wait sets the mark first (see the
/// `acquire` module's "Waking up" for why no wake-up is lost).
pub const RELEASE: Script = Script::new(
    "release",
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[2] == '1' then
  local left = redis.call('DECR', KEYS[2])
  if left > 0 then return left end
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '0' and (ARGV[4] == '1' or redis.call('EXISTS', KEYS[4]) == 1) then
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 0
",
    *b"74d3829e663194476edc5e9f78a2f049a55c7ec8",
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

/// Fair acquire: one waiter's cycle, run after its `BLPOP` on its own wake-up list (see
/// [`crate::Acquire`], "Fair mode").
///
/// `KEYS`: lock, fence, holds, queue, wake-list prefix, liveness prefix. `ARGV`: this attempt's
/// token, ttl ms, extra ms (the batch's `BLPOP` span, added to the key's life so that waiting
/// costs the lease no validity), fenced (`1`/`0`), reentrant (`1`/`0`), the owner's token,
/// liveness ms (how long this waiter counts as live without another cycle), enqueue (`1`/`0`).
///
/// In order: a re-entry by the owner's token; the lock holding this token (a release handed it
/// over) is confirmed; a free lock is taken when the queue is empty or this token is at its
/// head, after dropping dead waiters (no liveness key) from the head — O(dead), not O(queue);
/// otherwise, with enqueue `1`, the token joins the queue behind the last ticket (or keeps its
/// place) and its liveness key is set. A take or confirm sets the lock for ttl + extra,
/// increments the fence when fenced, and drops the token from the queue. Returns
/// `{holds, fence}` like [`ACQUIRE`], or `{0, pttl}` (0 when the lock is free but a live
/// waiter is ahead). A try-lock (enqueue `0`) never takes a lock live waiters queue for and
/// never joins the queue. The queue's own expiry is raised to the liveness on every enqueue, so
/// an abandoned queue disappears. The failing calls (`WRONGTYPE`) come before the lock key is
/// written; errors are the server's own.
pub const FAIR_ACQUIRE: Script = Script::new(
    "fair-acquire",
    r"local px = tonumber(ARGV[2]) + tonumber(ARGV[3])
local fenced, reentrant, me = ARGV[4] == '1', ARGV[5] == '1', ARGV[1]
local holder = redis.call('GET', KEYS[1])
if holder and holder == ARGV[6] and reentrant then
 local fence = 0
 if fenced then fence = tonumber(redis.call('GET', KEYS[2]) or '0') end
 local holds = redis.call('INCR', KEYS[3])
 redis.call('PEXPIRE', KEYS[1], px)
 redis.call('PEXPIRE', KEYS[3], px)
 return {holds, fence}
end
local function take()
 redis.call('ZREM', KEYS[4], me)
 local fence = 0
 if fenced then fence = redis.call('INCR', KEYS[2]) end
 if reentrant then redis.call('SET', KEYS[3], 1, 'PX', px) end
 redis.call('SET', KEYS[1], me, 'PX', px)
 redis.call('DEL', KEYS[5] .. me, KEYS[6] .. me)
 return {1, fence}
end
if holder == me then return take() end
if not holder then
 while true do
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not head or head == me then return take() end
  if redis.call('EXISTS', KEYS[6] .. head) == 1 then break end
  redis.call('ZREM', KEYS[4], head)
 end
end
if ARGV[8] == '1' then
 if not redis.call('ZSCORE', KEYS[4], me) then
  local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2]
  redis.call('ZADD', KEYS[4], (tonumber(last) or 0) + 1, me)
 end
 redis.call('SET', KEYS[6] .. me, 1, 'PX', ARGV[7])
 if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[7]) then
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
 end
end
if not holder then return {0, 0} end
return {0, redis.call('PTTL', KEYS[1])}
",
    *b"c03587cd914c006e7ead9145eb10df391ed6cd03",
);

/// Fair release: compare-and-delete that hands the lock to the first live waiter.
///
/// `KEYS`: lock, holds, queue, wake-list prefix, liveness prefix. `ARGV`: token, reentrant
/// (`1`/`0`), hand-off cap ms. First drops the token from the queue (with its liveness key and
/// wake-up list: a waiter giving up, or a rolled-back cycle, leaves the queue here). Then
/// compare-and-delete as [`RELEASE`] (re-entry holds count down first). If the lock is then
/// free, dead waiters are dropped from the queue's head and the first live one, `H`, gets the
/// lock: the lock key is set to `H`'s token for `min(H's remaining liveness, cap)`, `H` leaves
/// the queue, and `1` is pushed to `H`'s own wake-up list (with the same expiry). Only `H` is
/// woken. `H` confirms with [`FAIR_ACQUIRE`] within its cycle; if it died, the short lease
/// runs out and the next waiter's cycle takes the lock. Returns -1 when the token did not hold
/// the lock (a free lock is still handed on), 0 when released, n > 0 when a reentrant lock is
/// still held n times.
pub const FAIR_RELEASE: Script = Script::new(
    "fair-release",
    r"local me = ARGV[1]
redis.call('ZREM', KEYS[3], me)
redis.call('DEL', KEYS[4] .. me, KEYS[5] .. me)
local holder = redis.call('GET', KEYS[1])
local result = -1
if holder == me then
 if ARGV[2] == '1' then
  local left = redis.call('DECR', KEYS[2])
  if left > 0 then return left end
  redis.call('DEL', KEYS[2])
 end
 redis.call('DEL', KEYS[1])
 holder = false
 result = 0
end
if not holder then
 while true do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not head then break end
  redis.call('ZREM', KEYS[3], head)
  local lease = redis.call('PTTL', KEYS[5] .. head)
  if lease > 0 then
   lease = math.min(lease, tonumber(ARGV[3]))
   redis.call('SET', KEYS[1], head, 'PX', lease)
   redis.call('DEL', KEYS[5] .. head, KEYS[4] .. head)
   redis.call('LPUSH', KEYS[4] .. head, 1)
   redis.call('PEXPIRE', KEYS[4] .. head, lease)
   break
  end
 end
end
return result
",
    *b"2f86e761e7de7dc938e68693f174fa896165a09f",
);

/// Semaphore acquire: take one of `limit` permits (see [`crate::Lock::semaphore`]).
///
/// `KEYS`: holders (the name's own key, a sorted set), fence, permit prefix. `ARGV`: this
/// attempt's token, ttl ms, limit, fenced (`1`/`0`).
///
/// Refuses a name whose key is no sorted set (a mutex holds it) with `WRONGTYPE`. Then reads
/// every holder's permit key: a holder whose key is gone (released, or expired: a dead holder)
/// leaves the set here, so a permit is reclaimed the moment its key expires, with no server
/// clock; a live holder that took its permit under another limit refuses the call with
/// `WRONGLIMIT`. With fewer than `limit` live holders the token takes a permit: its permit key
/// is set for ttl, it joins the set (score: the limit), and the set lives at least as long as
/// every permit key (so no live permit ever goes uncounted). Returns `{1, fence}` when taken
/// (fence 0 when not fenced), or `{0, pttl}` with the soonest-expiring live permit's PTTL.
/// The set holds at most `limit` tokens after any acquire, so a call is O(limit).
pub const SEMAPHORE_ACQUIRE: Script = Script::new(
    "semaphore-acquire",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a semaphore')
end
local ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local live, soonest = 0, -1
for i = 1, #members, 2 do
 local left = redis.call('PTTL', KEYS[3] .. members[i])
 if left == -2 then
  redis.call('ZREM', KEYS[1], members[i])
 else
  if tonumber(members[i + 1]) ~= limit then
   return redis.error_reply('WRONGLIMIT semaphore permits were taken with limit ' .. members[i + 1])
  end
  live = live + 1
  if left >= 0 and (soonest < 0 or left < soonest) then soonest = left end
 end
end
if live >= limit then return {0, soonest} end
local fence = 0
if ARGV[4] == '1' then fence = redis.call('INCR', KEYS[2]) end
redis.call('SET', KEYS[3] .. ARGV[1], 1, 'PX', ttl)
redis.call('ZADD', KEYS[1], limit, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, fence}
",
    *b"6b211205ee7e67a859888560432e5f61d24a4aa7",
);

/// Semaphore release: give one permit back and wake one waiter.
///
/// `KEYS`: holders, permit prefix, the semaphore's own wake-up list (`:permit-signal`, never
/// a mutex's `:signal`: see [`crate::keys`]). `ARGV`: token, signal ttl ms (`0`: no signal),
/// limit. The token leaves the set and its permit key is deleted; when the key existed, one
/// `1` is pushed to the wake-up list, which is kept at most `limit` long: each release wakes
/// one waiter (not a herd), and releases that come faster than waiters wake are not lost.
/// Returns -1 when the token held no permit, 0 when released. `WRONGTYPE` on a mutex name.
pub const SEMAPHORE_RELEASE: Script = Script::new(
    "semaphore-release",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a semaphore')
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('DEL', KEYS[2] .. ARGV[1]) == 0 then return -1 end
if ARGV[2] ~= '0' then
 redis.call('LPUSH', KEYS[3], 1)
 redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
 redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return 0
",
    *b"e00310fa320d3306f6624d5457d2706c3cbb3243",
);

/// Semaphore extend: compare-and-extend of one permit.
///
/// `KEYS`: holders, permit prefix. `ARGV`: token, ttl ms. Extends the token's permit key to
/// ttl when the token is a holder and its key exists, and keeps the set alive at least as
/// long. Returns 1 when extended, 0 when the token holds no permit. `WRONGTYPE` on a mutex
/// name.
pub const SEMAPHORE_EXTEND: Script = Script::new(
    "semaphore-extend",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a semaphore')
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('PEXPIRE', KEYS[2] .. ARGV[1], ARGV[2]) == 0 then
 redis.call('ZREM', KEYS[1], ARGV[1])
 return 0
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
",
    *b"61c4cb2c34db782dc616f7b0ace99eca3c011fcb",
);

/// Fair semaphore acquire: one waiter's cycle for a permit, run after its `BLPOP` on its own
/// wake-up list (see [`crate::fair`] and [`crate::Lock::semaphore`]).
///
/// `KEYS`: holders, fence, permit prefix, the fair semaphore's queue (`:permit-queue`),
/// wake-list prefix (`:permit-wake:`), liveness prefix (`:permit-alive:`). `ARGV`:
/// this attempt's token, ttl ms, extra ms (the batch's `BLPOP` span, added to the permit's
/// life as in [`FAIR_ACQUIRE`]), limit, fenced (`1`/`0`), liveness ms, enqueue (`1`/`0`).
///
/// Refuses a mutex's name (`WRONGTYPE`) and, as [`SEMAPHORE_ACQUIRE`], counts the live
/// holders (dropping the dead, refusing another limit with `WRONGLIMIT`). Then, in order: a
/// token that is a live holder (a release handed it a permit) confirms it; with fewer than
/// `limit` live holders, a permit is taken when the queue is empty or this token is at its
/// head, after dropping dead waiters (no liveness key) from the head — O(dead); otherwise,
/// with enqueue `1`, the token joins the queue behind the last ticket (or keeps its place) and
/// its liveness key is set. A take or confirm sets the permit key for ttl + extra, adds the
/// token to the holders (kept alive at least as long), increments the fence when fenced and
/// drops the token from the queue. Returns `{1, fence}`, or `{0, pttl}` with the soonest
/// permit's PTTL (0 when a permit is free but a live waiter is ahead). A try-lock (enqueue
/// `0`) never takes a permit a live waiter queues for. O(limit + dead waiters).
pub const SEMAPHORE_FAIR_ACQUIRE: Script = Script::new(
    "semaphore-fair-acquire",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a semaphore')
end
local me, limit = ARGV[1], tonumber(ARGV[4])
local px = tonumber(ARGV[2]) + tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local live, soonest, mine = 0, -1, false
for i = 1, #members, 2 do
 local left = redis.call('PTTL', KEYS[3] .. members[i])
 if left == -2 then
  redis.call('ZREM', KEYS[1], members[i])
 else
  if tonumber(members[i + 1]) ~= limit then
   return redis.error_reply('WRONGLIMIT semaphore permits were taken with limit ' .. members[i + 1])
  end
  live = live + 1
  if members[i] == me then mine = true end
  if left >= 0 and (soonest < 0 or left < soonest) then soonest = left end
 end
end
local function take()
 redis.call('ZREM', KEYS[4], me)
 local fence = 0
 if ARGV[5] == '1' then fence = redis.call('INCR', KEYS[2]) end
 redis.call('SET', KEYS[3] .. me, 1, 'PX', px)
 redis.call('ZADD', KEYS[1], limit, me)
 if redis.call('PTTL', KEYS[1]) < px then redis.call('PEXPIRE', KEYS[1], px) end
 redis.call('DEL', KEYS[5] .. me, KEYS[6] .. me)
 return {1, fence}
end
if mine then return take() end
if live < limit then
 while true do
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not head or head == me then return take() end
  if redis.call('EXISTS', KEYS[6] .. head) == 1 then break end
  redis.call('ZREM', KEYS[4], head)
 end
end
if ARGV[7] == '1' then
 if not redis.call('ZSCORE', KEYS[4], me) then
  local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2]
  redis.call('ZADD', KEYS[4], (tonumber(last) or 0) + 1, me)
 end
 redis.call('SET', KEYS[6] .. me, 1, 'PX', ARGV[6])
 if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[6]) then
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
 end
end
if live < limit then return {0, 0} end
return {0, soonest}
",
    *b"8cb089b3d410cf8523427e0c5cc194a80a53e061",
);

/// Fair semaphore release: give one permit back and hand a free permit to the first live
/// waiter.
///
/// `KEYS`: holders, permit prefix, the fair semaphore's queue (`:permit-queue`), wake-list
/// prefix (`:permit-wake:`), liveness prefix (`:permit-alive:`). `ARGV`: token,
/// limit, hand-off cap ms. First drops the token from the queue (with its liveness key and
/// wake-up list: a waiter giving up, or a rolled-back cycle, leaves the queue here), then
/// from the holders, deleting its permit key. Then counts the live holders (dropping the
/// dead); when fewer than `limit` live under this limit, dead waiters are dropped from the
/// queue's head and the first live one, `H`, is handed a permit: `H`'s permit key is set for
/// `min(H's remaining liveness, cap)`, `H` joins the holders (kept alive as long) and leaves
/// the queue, and `1` is pushed to `H`'s own wake-up list (with the same expiry). Only `H` is
/// woken; it confirms with [`SEMAPHORE_FAIR_ACQUIRE`] within its cycle, or the short permit
/// runs out. Returns -1 when the token held no permit (a free permit is still handed on), 0
/// when released. `WRONGTYPE` on a mutex name. O(limit + dead waiters).
pub const SEMAPHORE_FAIR_RELEASE: Script = Script::new(
    "semaphore-fair-release",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a semaphore')
end
local me, limit = ARGV[1], tonumber(ARGV[2])
redis.call('ZREM', KEYS[3], me)
redis.call('DEL', KEYS[4] .. me, KEYS[5] .. me)
redis.call('ZREM', KEYS[1], me)
local result = -1
if redis.call('DEL', KEYS[2] .. me) == 1 then result = 0 end
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local live = 0
for i = 1, #members, 2 do
 if redis.call('EXISTS', KEYS[2] .. members[i]) == 0 then
  redis.call('ZREM', KEYS[1], members[i])
 elseif tonumber(members[i + 1]) ~= limit then
  return result
 else
  live = live + 1
 end
end
if live >= limit then return result end
while true do
 local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
 if not head then break end
 redis.call('ZREM', KEYS[3], head)
 local lease = redis.call('PTTL', KEYS[5] .. head)
 if lease > 0 then
  lease = math.min(lease, tonumber(ARGV[3]))
  redis.call('SET', KEYS[2] .. head, 1, 'PX', lease)
  redis.call('ZADD', KEYS[1], limit, head)
  if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  redis.call('DEL', KEYS[5] .. head, KEYS[4] .. head)
  redis.call('LPUSH', KEYS[4] .. head, 1)
  redis.call('PEXPIRE', KEYS[4] .. head, lease)
  break
 end
end
return result
",
    *b"5290f506c4314df4702e7a3a3996a3489e0e05ee",
);

/// Read-write acquire: one read or write hold (see [`crate::Lock::rw`]).
///
/// `KEYS`: marker (the name's own key, a hash), fence, writer, readers, reader prefix, waiting
/// writers (`:writers`, never fair mode's queue), their liveness prefix, readers' signal. `ARGV`: this attempt's token, ttl ms,
/// mode (`r`/`w`), fenced (`1`/`0`), waiting (`1`/`0`: the caller was refused before and
/// waits on), the owner's token, liveness ms (how long a waiting writer's intent lives
/// without another attempt), signal ttl ms (`0`: no signal).
///
/// Refuses a name whose key is no hash (a mutex or a semaphore holds it) with `WRONGTYPE`,
/// before anything is written: a refused writer leaves no intent behind.
/// `first_live` drops dead members (no key under the prefix) from a set's head and returns
/// the first live one's PTTL (-2: none), so each call is O(dead members) + 1.
/// - Write: busy while the writer key lives or a live reader remains; a waiting writer then
///   registers its intent (its owner token in the queue, its liveness key set), so that new
///   readers are refused. Taken: the fence is incremented (when fenced), the writer key set to
///   the attempt's token for ttl, and the owner's intent dropped.
/// - Read: busy while the writer key lives or a live writer waits. Taken: the reader key is
///   set for ttl and the token joins the readers; the fence is the counter as it stands
///   (`INCRBY 0`: the last write's, 0 before any); a reader that had waited pushes the readers' signal on, so
///   the next waiting reader wakes (a chain: a writer's release wakes one reader, each woken
///   reader wakes the next).
///
/// The marker and the readers' set live at least as long as every hold. Returns `{1, fence}`
/// when taken, or `{0, pttl}` of what refused it (the writer key, the first live reader or
/// the first live waiting writer's liveness key).
pub const RW_ACQUIRE: Script = Script::new(
    "rw-acquire",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a read-write lock')
end
local me, ttl, owner = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local fenced, waiting = ARGV[4] == '1', ARGV[5] == '1'
local function first_live(set, prefix)
 while true do
  local head = redis.call('ZRANGE', set, 0, 0)[1]
  if not head then return -2 end
  local left = redis.call('PTTL', prefix .. head)
  if left ~= -2 then return left end
  redis.call('ZREM', set, head)
 end
end
local busy = redis.call('PTTL', KEYS[3])
local fence = 0
if ARGV[3] == 'w' then
 if busy == -2 then busy = first_live(KEYS[4], KEYS[5]) end
 if busy ~= -2 then
  if waiting then
   redis.call('ZADD', KEYS[6], 0, owner)
   redis.call('SET', KEYS[7] .. owner, 1, 'PX', ARGV[7])
   if redis.call('PTTL', KEYS[6]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[6], ARGV[7]) end
  end
  return {0, busy}
 end
 if fenced then fence = redis.call('INCR', KEYS[2]) end
 redis.call('SET', KEYS[3], me, 'PX', ttl)
 redis.call('ZREM', KEYS[6], owner)
 redis.call('DEL', KEYS[7] .. owner)
else
 if busy == -2 then busy = first_live(KEYS[6], KEYS[7]) end
 if busy ~= -2 then return {0, busy} end
 if fenced then fence = redis.call('INCRBY', KEYS[2], 0) end
 redis.call('SET', KEYS[5] .. me, 1, 'PX', ttl)
 redis.call('ZADD', KEYS[4], 0, me)
 if redis.call('PTTL', KEYS[4]) < ttl then redis.call('PEXPIRE', KEYS[4], ttl) end
 if waiting and ARGV[8] ~= '0' then
  redis.call('DEL', KEYS[8])
  redis.call('LPUSH', KEYS[8], 1)
  redis.call('PEXPIRE', KEYS[8], ARGV[8])
 end
end
redis.call('HSET', KEYS[1], 'rw', 1)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, fence}
",
    *b"963bd65dbcdbf64658c5c19bfb97ed4d02c56919",
);

/// Read-write release: give one hold back and wake whoever can proceed.
///
/// `KEYS`: marker, writer, readers, reader prefix, waiting writers, their liveness prefix,
/// writers' signal, readers' signal. `ARGV`: token, mode (`r`/`w`), signal ttl ms (`0`: no signal).
///
/// A write release deletes the writer key when it holds the token; a read release drops the
/// token from the readers and deletes its key. A read release that leaves a live reader wakes
/// nobody (no one waits for readers but writers). Otherwise: with nothing held any more the
/// marker goes; then, with signals on, one writer is woken when a live writer waits (writer
/// preference: the readers wait on), else — after a write release — one reader, who wakes
/// the next (see [`RW_ACQUIRE`]). Returns -1 when the token held nothing, 0 when released.
/// `WRONGTYPE` on a name that is a mutex or a semaphore.
pub const RW_RELEASE: Script = Script::new(
    "rw-release",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a read-write lock')
end
local function first_live(set, prefix)
 while true do
  local head = redis.call('ZRANGE', set, 0, 0)[1]
  if not head then return -2 end
  local left = redis.call('PTTL', prefix .. head)
  if left ~= -2 then return left end
  redis.call('ZREM', set, head)
 end
end
local me = ARGV[1]
if ARGV[2] == 'w' then
 if redis.call('GET', KEYS[2]) ~= me then return -1 end
 redis.call('DEL', KEYS[2])
else
 redis.call('ZREM', KEYS[3], me)
 if redis.call('DEL', KEYS[4] .. me) == 0 then return -1 end
end
if first_live(KEYS[3], KEYS[4]) ~= -2 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) end
local function wake(list)
 redis.call('DEL', list)
 redis.call('LPUSH', list, 1)
 redis.call('PEXPIRE', list, ARGV[3])
end
if ARGV[3] ~= '0' then
 if first_live(KEYS[5], KEYS[6]) ~= -2 then
  wake(KEYS[7])
 elseif ARGV[2] == 'w' then
  wake(KEYS[8])
 end
end
return 0
",
    *b"8e83c5d1897e4061d50a7db06df287bd979a84e2",
);

/// Read-write extend: compare-and-extend of one hold, never another's.
///
/// `KEYS`: marker, writer, readers, reader prefix. `ARGV`: token, mode (`r`/`w`), ttl ms. A
/// write hold is extended when the writer key holds the token; a read hold when the token is
/// a reader and its own key exists (only that key: a read hold's expiry never moves another
/// reader's). The readers' set and the marker are kept alive at least as long. Returns 1
/// when extended, 0 when the token holds nothing. `WRONGTYPE` on a mutex's or semaphore's
/// name.
pub const RW_EXTEND: Script = Script::new(
    "rw-extend",
    r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' and t ~= 'none' then
 return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a read-write lock')
end
local me, ttl = ARGV[1], tonumber(ARGV[3])
if ARGV[2] == 'w' then
 if redis.call('GET', KEYS[2]) ~= me then return 0 end
 redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
 if not redis.call('ZSCORE', KEYS[3], me) then return 0 end
 if redis.call('PEXPIRE', KEYS[4] .. me, ARGV[3]) == 0 then
  redis.call('ZREM', KEYS[3], me)
  return 0
 end
 if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
end
redis.call('HSET', KEYS[1], 'rw', 1)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
",
    *b"7fc6156cfda7ead395c3a73e74dd8988f03cc1af",
);

/// Multi-name acquire: every name or none, in one step on the node (see [`crate::Lock::multi`]).
///
/// `KEYS`: each name's lock and fence, in name order (`lock1, fence1, lock2, fence2, …`).
/// `ARGV`: this attempt's token, ttl ms, fenced (`1`/`0`). When no lock key exists, sets
/// every one to the token with the same `PX` and returns `{1, fence}`; when any holds a
/// token, writes nothing and returns `{0, pttl}` of the first held one. A name whose key is
/// of another kind (a semaphore's set, a read-write lock's hash) is `WRONGTYPE`, whatever
/// the other names hold, and writes nothing: waiting would not make it a lock (`EXISTS`
/// alone read it as held, and the set waited out its deadline). One `EXISTS` over every lock
/// key comes first: when none exists (the common, free case) no name can be held or of
/// another kind, and the per-name `TYPE` reads are skipped (each `redis.call` costs the
/// server about a microsecond: 4 names took 8 calls, now 5). Fenced, the one fence is one
/// more than the largest of the names' counters, and every counter is set to it, so it is
/// larger than every earlier holder's of each name. Every call that can fail (a fence key of
/// another type, or not a number) comes before the first write.
pub const MULTI_ACQUIRE: Script = Script::new(
    "multi-acquire",
    r"local n = #KEYS / 2
local locks = {}
for i = 1, n do locks[i] = KEYS[2 * i - 1] end
if redis.call('EXISTS', unpack(locks)) > 0 then
 local held
 for i = 1, n do
  local t = redis.call('TYPE', locks[i]).ok
  if t == 'string' then
   held = held or i
  elseif t ~= 'none' then
   return redis.error_reply('WRONGTYPE lock key: the name holds a ' .. t .. ', not a lock')
  end
 end
 if held then return {0, redis.call('PTTL', locks[held])} end
end
local fence = 0
if ARGV[3] == '1' then
 for i = 1, n do
  local f = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if not f then return redis.error_reply('ERR fence key is not a number') end
  if f > fence then fence = f end
 end
 fence = fence + 1
 for i = 1, n do redis.call('SET', KEYS[2 * i], fence) end
end
for i = 1, n do redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2]) end
return {1, fence}
",
    *b"117b0ef2e38582a27a6f896322890aa04b26e152",
);

/// Multi-name compare-and-delete, with each released name's wake-up signal.
///
/// `KEYS`: each name's lock and wake-up list, in name order. `ARGV`: token, signal ttl ms
/// (`0`: no signal). Reads every lock key first, in one `MGET` (which reads a key of another
/// type as nil: it is not the token's, and the script never fails half-way), then deletes
/// the lock keys holding the token and their old signals in one `DEL`, and pushes a fresh
/// signal for each released name. Returns -1 when the token holds none of them, else 0.
/// Batched so that a release of n names costs 2 + 2n calls, not 5n (20 for 4 names).
pub const MULTI_RELEASE: Script = Script::new(
    "multi-release",
    r"local n = #KEYS / 2
local locks = {}
for i = 1, n do locks[i] = KEYS[2 * i - 1] end
local held = redis.call('MGET', unpack(locks))
local mine, gone = {}, {}
for i = 1, n do
 if held[i] == ARGV[1] then
  mine[#mine + 1] = i
  gone[#gone + 1] = KEYS[2 * i - 1]
  if ARGV[2] ~= '0' then gone[#gone + 1] = KEYS[2 * i] end
 end
end
if #mine == 0 then return -1 end
redis.call('DEL', unpack(gone))
if ARGV[2] ~= '0' then
 for _, i in ipairs(mine) do
  redis.call('LPUSH', KEYS[2 * i], 1)
  redis.call('PEXPIRE', KEYS[2 * i], ARGV[2])
 end
end
return 0
",
    *b"b7f1924dfe6c470f09e5f47151c8481c8d7b8308",
);

/// Multi-name compare-and-extend: all or none.
///
/// `KEYS`: each name's lock key, in name order. `ARGV`: token, ttl ms. Returns 1 when every
/// key held the token and each was extended, 0 (nothing changed) otherwise.
pub const MULTI_EXTEND: Script = Script::new(
    "multi-extend",
    r"for i = 1, #KEYS do
 if redis.pcall('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
",
    *b"c150dd6a14ed80a7c5c3ba461b3bac38e225040d",
);

/// Raise every name's fencing counter to at least a value (the second round of a fenced
/// multi-name Redlock).
///
/// `KEYS`: each name's fence. `ARGV`: the value. Returns the smallest counter afterwards.
pub const MULTI_RAISE_FENCE: Script = Script::new(
    "multi-raise-fence",
    r"local wanted = tonumber(ARGV[1])
local least = nil
for i = 1, #KEYS do
 local current = tonumber(redis.call('GET', KEYS[i]) or '0')
 if current < wanted then
  redis.call('SET', KEYS[i], ARGV[1])
  current = wanted
 end
 if not least or current < least then least = current end
end
return least
",
    *b"1f5c32120474a77182e05837614928b8341fc34b",
);

/// Get-or-compute's first step ([`crate::GetOrLock`]): the cached value, else the
/// computation's lock, else a registration as a waiter.
///
/// `KEYS`: value, lock, waiters. `ARGV`: the caller's token, the lock's ttl ms, how long a
/// waiter's registration outlives the holder's key (ms). Returns `{2, value}` when the value
/// is there (nothing written), `{1, 0}` when the caller took the lock (`SET NX PX`, as a
/// mutex's acquire: the same key, so renewal and status see a plain lock), or `{0, pttl}`
/// when another computes: the caller is counted among the waiters (`INCR`), and the count
/// lives until the holder's key expires plus the allowance, so a store can wake every
/// registered waiter. The one reply that is not integers only: the value's bytes.
pub const GET_OR_LOCK: Script = Script::new(
    "get-or-lock",
    r"local v = redis.call('GET', KEYS[1])
if v then return {2, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
local left = redis.call('PTTL', KEYS[2])
redis.call('INCR', KEYS[3])
local keep = left
if keep < 0 then keep = tonumber(ARGV[2]) end
redis.call('PEXPIRE', KEYS[3], keep + tonumber(ARGV[3]))
return {0, left}
",
    *b"0e8580d73a101161bdb92547ce3fafce41b0f1ee",
);

/// Get-or-compute's last step ([`crate::FinishCompute`]): store the value and wake the
/// waiters, or give the computation up and wake one of them — only while the caller's token
/// still holds the lock.
///
/// `KEYS`: lock, value, waiters, wake-up list. `ARGV`: the caller's token, store (`1`/`0`),
/// the value, its ttl ms, the most wake-ups to push, the wake-up list's ttl ms. Returns `-1`
/// when the token does not hold the lock (nothing written: a computer that lost its lock
/// stores nothing), else the wake-ups pushed: on a store, one per registered waiter (capped;
/// the count is reset), on giving up, at most one (the count is kept, so the next computer's
/// store still wakes everyone).
pub const FINISH_COMPUTE: Script = Script::new(
    "finish-compute",
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) end
redis.call('DEL', KEYS[1])
local waiting = tonumber(redis.call('GET', KEYS[3])) or 0
local wake = math.min(waiting, tonumber(ARGV[5]))
if ARGV[2] == '1' then
 redis.call('DEL', KEYS[3])
else
 wake = math.min(wake, 1)
end
for i = 1, wake do redis.call('LPUSH', KEYS[4], '1') end
if wake > 0 then redis.call('PEXPIRE', KEYS[4], ARGV[6]) end
return wake
",
    *b"dcfb06bddc438efd3a5cb998902de5a19f1f1e6f",
);

/// Deletes `KEYS[1]` only while it is a sorted set (fair mode's queue), for `reset`: `1`
/// deleted, `0` no such key, else the key's type (left alone). One script, so the check and
/// the delete are one step on the node. Sent by source (`EVAL`): an operator command, not a
/// lock operation, so it is not among [`SCRIPTS`].
pub const DELETE_QUEUE: &str = "local t = redis.call('TYPE', KEYS[1]).ok
if t == 'zset' then return redis.call('DEL', KEYS[1]) end
if t == 'none' then return 0 end
return t";

/// Clears a semaphore's or a read-write lock's name, for `reset`: every key of the name
/// except its fencing counter. Sent by source (`EVAL`), like [`DELETE_QUEUE`]: an operator
/// command, not among [`SCRIPTS`]. One script, so what it reads (the name's kind, the tokens
/// in its sets) and what it deletes are one step on the node: a hold taken meanwhile is not
/// half-deleted.
///
/// `KEYS`: the name's own key, the fair semaphore's queue, wake-list prefix and liveness
/// prefix (`:permit-queue`, `:permit-wake:`, `:permit-alive:`), permit prefix,
/// writer, readers, reader prefix, the semaphore's wake-up list (`:permit-signal`), readers'
/// signal, waiting writers, their liveness
/// prefix, writers' signal. `ARGV`: dry run (`1`/`0`), signal ttl ms (`0`: no signal).
///
/// A sorted set with a live permit key among its members is a semaphore's holders: each
/// holder's permit key goes, then the set (a set with none is a user's, or a semaphore with
/// nothing left to hold that expires by itself: left alone), and the fair semaphore's queue
/// with its waiters' liveness keys and wake-up lists. A hash with `rw = 1`
/// is a read-write lock's marker: the writer key, each reader's key and the readers' set go,
/// then the waiting writers' liveness keys (their intent turns readers away) and their set,
/// then the marker; the fair semaphore's queue is no read-write lock's and is left alone. With a signal
/// ttl, the kind's wake-up lists (the semaphore's `:permit-signal`; the read-write lock's writers' and
/// readers' signals) are emptied and one wake-up pushed to each, as a release does, so
/// waiters retry at once and get in. Returns the keys deleted (a dry run: the keys that would be, and nothing is
/// written), or the name's type when it is neither (left alone; `none`: no such name).
pub const RESET_SEMAPHORE_OR_RW: &str = "local t = redis.call('TYPE', KEYS[1]).ok
local dry, gone = ARGV[1] == '1', {}
local function drop(key)
 if redis.call('EXISTS', key) == 1 then
  gone[#gone + 1] = key
  if not dry then redis.call('DEL', key) end
 end
end
local function members(set, prefix)
 if redis.call('TYPE', set).ok ~= 'zset' then return end
 for _, m in ipairs(redis.call('ZRANGE', set, 0, -1)) do drop(prefix .. m) end
end
local lists
local function holds_a_permit()
 for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', KEYS[5] .. m) == 1 then return true end
 end
 return false
end
if t == 'zset' and holds_a_permit() then
 members(KEYS[1], KEYS[5])
 if redis.call('TYPE', KEYS[2]).ok == 'zset' then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
   drop(KEYS[4] .. m)
   drop(KEYS[3] .. m)
  end
  drop(KEYS[2])
 end
 lists = {KEYS[9]}
elseif t == 'hash' and redis.call('HGET', KEYS[1], 'rw') == '1' then
 drop(KEYS[6])
 members(KEYS[7], KEYS[8])
 if redis.call('TYPE', KEYS[7]).ok == 'zset' then drop(KEYS[7]) end
 members(KEYS[11], KEYS[12])
 if redis.call('TYPE', KEYS[11]).ok == 'zset' then drop(KEYS[11]) end
 lists = {KEYS[13], KEYS[10]}
else
 return t
end
drop(KEYS[1])
if not dry and ARGV[2] ~= '0' then
 for _, list in ipairs(lists) do
  redis.call('DEL', list)
  redis.call('LPUSH', list, 1)
  redis.call('PEXPIRE', list, ARGV[2])
 end
end
return gone";

/// Every script the protocol runs on a server: for operators who preload them with
/// `SCRIPT LOAD` or allow-list them by digest, and for tests.
pub const SCRIPTS: [Script; 20] = [
    ACQUIRE,
    RELEASE,
    EXTEND,
    RAISE_FENCE,
    FAIR_ACQUIRE,
    FAIR_RELEASE,
    SEMAPHORE_ACQUIRE,
    SEMAPHORE_RELEASE,
    SEMAPHORE_EXTEND,
    RW_ACQUIRE,
    RW_RELEASE,
    RW_EXTEND,
    MULTI_ACQUIRE,
    MULTI_RELEASE,
    MULTI_EXTEND,
    MULTI_RAISE_FENCE,
    SEMAPHORE_FAIR_ACQUIRE,
    SEMAPHORE_FAIR_RELEASE,
    GET_OR_LOCK,
    FINISH_COMPUTE,
];

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
