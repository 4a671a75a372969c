//! The semaphore's five scripts ([`distlock_core::script::SEMAPHORE_ACQUIRE`],
//! `SEMAPHORE_RELEASE`, `SEMAPHORE_EXTEND`, and the fair `SEMAPHORE_FAIR_ACQUIRE` and
//! `SEMAPHORE_FAIR_RELEASE`), call for call as their Lua does them, and broken as
//! [`crate::ModelFaults`] asks (a count without pruning, a permit taken without the count, a
//! newcomer barging past the queue, a hand-off without liveness, waiters in a fair mutex's
//! queue) so that the simulator's semaphore and mixed-kind properties can be seen to fail.
//!
//! Invariant kept from the Lua: every error the script returns itself comes before its first
//! write except the pruning of dead holders, which is a clean-up and changes no count.

use alloc::string::ToString;
use alloc::vec::Vec;

use distlock_core::Instant;

use super::{
    ExpireMode, Fail, ModelNode, Res, SCRIPT_REPLY, ScriptValue, Value, cat, lua_tonumber,
};

/// A failing script call: the error and the script line it stands for.
type ScriptResult = Result<ScriptValue, (Fail, u64)>;

/// A failing script call that returns nothing.
type ScriptResultUnit = Result<(), (Fail, u64)>;

/// The live holders as the fair scripts count them: `(live, soonest PTTL or -1, whether the
/// caller's token is one)`, or the `WRONGLIMIT` reply.
type Count = Result<(i64, i64, bool), Fail>;

/// The fair semaphore's queue, wake-list prefix and liveness prefix the scripts are given, or
/// a fair mutex's (`:queue`, `:wake:`, `:alive:`) on a node whose semaphore waiters share them
/// ([`crate::ModelFaults::semaphore_waiters_share_fair_queue`]).
fn waiter_keys(node: &ModelNode, queue: &[u8], wake: &[u8], alive: &[u8]) -> [Vec<u8>; 3] {
    if !node.faults.semaphore_waiters_share_fair_queue {
        return [queue.to_vec(), wake.to_vec(), alive.to_vec()];
    }
    [
        super::fair_twin(queue, b":permit-queue", b":queue"),
        super::fair_twin(wake, b":permit-wake:", b":wake:"),
        super::fair_twin(alive, b":permit-alive:", b":alive:"),
    ]
}

fn nil() -> (Fail, u64) {
    (
        Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
        1,
    )
}

impl ModelNode {
    /// `TYPE KEYS[1]` must be `zset` or `none`: a mutex's token there is a `WRONGTYPE`.
    fn semaphore_key_check(&mut self, holders: &[u8], now: Instant) -> Result<(), (Fail, u64)> {
        let kind: &[u8] = match self.live(holders, now).map(|e| &e.value) {
            None | Some(Value::ZSet(_)) => return Ok(()),
            Some(Value::Str(_)) => b"string",
            Some(Value::List(_)) => b"list",
            Some(Value::Hash(_)) => b"hash",
        };
        let mut message = b"WRONGTYPE lock key: the name holds a ".to_vec();
        message.extend_from_slice(kind);
        message.extend_from_slice(b", not a semaphore");
        Err((Fail(message), SCRIPT_REPLY))
    }

    /// `ZRANGE key 0 -1 WITHSCORES`, as (member, score) pairs.
    fn zset_all(&mut self, key: &[u8], now: Instant) -> Res<Vec<(Vec<u8>, i64)>> {
        Ok(self
            .zset(key, now)?
            .map(|z| z.iter().map(|(s, m)| (m.clone(), *s)).collect())
            .unwrap_or_default())
    }

    /// Raises `key`'s expiry to `ms` when it lives shorter (`PTTL < ms`, no TTL included).
    fn keep_alive_for(&mut self, key: &[u8], ms: i64, now: Instant, line: u64) -> ScriptResultUnit {
        if self.pttl(key, now) < ms {
            self.pexpire(key, ms, ExpireMode::Always, now)
                .map_err(|e| (e, line))?;
        }
        Ok(())
    }

    pub(super) fn semaphore_acquire(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [holders, fence, permits, ..] = *keys else {
            return Err(nil());
        };
        let [me, ttl, limit, fenced, ..] = *argv else {
            return Err(nil());
        };
        self.semaphore_key_check(holders, now)?;
        let arithmetic = || {
            (
                Fail::new(b"ERR user_script:5: attempt to compare nil with number"),
                5,
            )
        };
        let ttl_ms = lua_tonumber(ttl).ok_or_else(arithmetic)?;
        let limit = lua_tonumber(limit).ok_or_else(arithmetic)?;
        let mut live = 0;
        let mut soonest = -1;
        for (member, score) in self.zset_all(holders, now).map_err(|e| (e, 6))? {
            let left = self.pttl(&cat(permits, &member), now);
            if left == -2 && !self.faults.semaphore_counts_dead_holders {
                self.zset_rem(holders, &member, now).map_err(|e| (e, 11))?;
                continue;
            }
            if score != limit {
                let mut message = b"WRONGLIMIT semaphore permits were taken with limit ".to_vec();
                message.extend_from_slice(score.to_string().as_bytes());
                return Err((Fail(message), SCRIPT_REPLY));
            }
            live += 1;
            if left >= 0 && (soonest < 0 || left < soonest) {
                soonest = left;
            }
        }
        if live >= limit && !self.faults.semaphore_ignores_limit {
            return Ok(ScriptValue::Pair(0, soonest));
        }
        let fence = if fenced == b"1" {
            self.incr_by(fence, 1, now).map_err(|e| (e, 24))?
        } else {
            0
        };
        self.script_set_px(&cat(permits, me), b"1", ttl, now)
            .map_err(|e| (e, 25))?;
        self.zset_add(holders, limit, me, now)
            .map_err(|e| (e, 26))?;
        self.keep_alive_for(holders, ttl_ms, now, 27)?;
        Ok(ScriptValue::Pair(1, fence))
    }

    /// The live holders of `holders` under `permits` (dropping the dead from the set), as
    /// the fair scripts count them: `(live, soonest PTTL or -1, whether `me` is one)`, or the
    /// `WRONGLIMIT` error when a live holder took its permit under another limit.
    fn semaphore_live_holders(
        &mut self,
        (holders, permits): (&[u8], &[u8]),
        me: &[u8],
        limit: i64,
        now: Instant,
    ) -> Result<Count, (Fail, u64)> {
        let mut live = 0;
        let mut soonest = -1;
        let mut mine = false;
        for (member, score) in self.zset_all(holders, now).map_err(|e| (e, 7))? {
            let left = self.pttl(&cat(permits, &member), now);
            if left == -2 {
                self.zset_rem(holders, &member, now).map_err(|e| (e, 11))?;
                continue;
            }
            if score != limit {
                let mut message = b"WRONGLIMIT semaphore permits were taken with limit ".to_vec();
                message.extend_from_slice(score.to_string().as_bytes());
                return Ok(Err(Fail(message)));
            }
            live += 1;
            mine |= member.as_slice() == me;
            if left >= 0 && (soonest < 0 || left < soonest) {
                soonest = left;
            }
        }
        Ok(Ok((live, soonest, mine)))
    }

    /// [`distlock_core::script::SEMAPHORE_FAIR_ACQUIRE`], call for call.
    pub(super) fn semaphore_fair_acquire(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [holders, fence, permits, queue, wake, alive, ..] = *keys else {
            return Err(nil());
        };
        let [queue, wake, alive] = waiter_keys(self, queue, wake, alive);
        let (queue, wake, alive) = (queue.as_slice(), wake.as_slice(), alive.as_slice());
        let [me, ttl, extra, limit, fenced, liveness, enqueue, ..] = *argv else {
            return Err(nil());
        };
        self.semaphore_key_check(holders, now)?;
        let arithmetic = || {
            (
                Fail::new(b"ERR user_script:6: attempt to perform arithmetic on a nil value"),
                6,
            )
        };
        let limit = lua_tonumber(limit).ok_or_else(arithmetic)?;
        let px = lua_tonumber(ttl)
            .zip(lua_tonumber(extra))
            .map(|(t, e)| t.saturating_add(e))
            .ok_or_else(arithmetic)?;
        let (live, soonest, mine) =
            match self.semaphore_live_holders((holders, permits), me, limit, now)? {
                Ok(counted) => counted,
                Err(wrong_limit) => return Err((wrong_limit, SCRIPT_REPLY)),
            };
        let take = |node: &mut ModelNode| -> ScriptResult {
            node.zset_rem(queue, me, now).map_err(|e| (e, 26))?;
            let fence = if fenced == b"1" {
                node.incr_by(fence, 1, now).map_err(|e| (e, 28))?
            } else {
                0
            };
            let mut digits = [0u8; 20];
            let px_text = super::decimal(px.unsigned_abs(), &mut digits);
            node.script_set_px(&cat(permits, me), b"1", px_text, now)
                .map_err(|e| (e, 29))?;
            node.zset_add(holders, limit, me, now)
                .map_err(|e| (e, 30))?;
            node.keep_alive_for(holders, px, now, 31)?;
            node.del(&cat(wake, me), now);
            node.del(&cat(alive, me), now);
            Ok(ScriptValue::Pair(1, fence))
        };
        if mine {
            return take(self);
        }
        if live < limit {
            if self.faults.semaphore_fair_ignores_queue {
                return take(self);
            }
            loop {
                match self.zset_first(queue, now).map_err(|e| (e, 38))? {
                    None => return take(self),
                    Some(head) if head == me => return take(self),
                    Some(head) => {
                        if self.live(&cat(alive, &head), now).is_some() {
                            break;
                        }
                        self.zset_rem(queue, &head, now).map_err(|e| (e, 41))?;
                    }
                }
            }
        }
        if enqueue == b"1" {
            if self
                .zset_score(queue, me, now)
                .map_err(|e| (e, 45))?
                .is_none()
            {
                let last = self.zset_last_score(queue, now).map_err(|e| (e, 46))?;
                self.zset_add(queue, last.unwrap_or(0).saturating_add(1), me, now)
                    .map_err(|e| (e, 47))?;
            }
            self.script_set_px(&cat(alive, me), b"1", liveness, now)
                .map_err(|e| (e, 49))?;
            let live_ms = lua_tonumber(liveness).ok_or_else(arithmetic)?;
            self.keep_alive_for(queue, live_ms, now, 51)?;
        }
        Ok(ScriptValue::Pair(0, if live < limit { 0 } else { soonest }))
    }

    /// [`distlock_core::script::SEMAPHORE_FAIR_RELEASE`], call for call (and broken as
    /// [`crate::ModelFaults::semaphore_handoff_ignores_liveness`] asks).
    pub(super) fn semaphore_fair_release(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [holders, permits, queue, wake, alive, ..] = *keys else {
            return Err(nil());
        };
        let [queue, wake, alive] = waiter_keys(self, queue, wake, alive);
        let (queue, wake, alive) = (queue.as_slice(), wake.as_slice(), alive.as_slice());
        let [me, limit, cap, ..] = *argv else {
            return Err(nil());
        };
        self.semaphore_key_check(holders, now)?;
        let limit = lua_tonumber(limit).ok_or_else(|| {
            (
                Fail::new(b"ERR user_script:5: attempt to compare nil with number"),
                5,
            )
        })?;
        self.zset_rem(queue, me, now).map_err(|e| (e, 6))?;
        self.del(&cat(wake, me), now);
        self.del(&cat(alive, me), now);
        self.zset_rem(holders, me, now).map_err(|e| (e, 8))?;
        let result = if self.del(&cat(permits, me), now) {
            0
        } else {
            -1
        };
        let live = match self.semaphore_live_holders((holders, permits), me, limit, now)? {
            Ok((live, ..)) => live,
            Err(_) => return Ok(ScriptValue::Int(result)),
        };
        if live >= limit {
            return Ok(ScriptValue::Int(result));
        }
        let cap = lua_tonumber(cap).ok_or_else(|| {
            (
                Fail::new(b"ERR user_script:26: bad argument #2 to 'min'"),
                26,
            )
        })?;
        while let Some(head) = self.zset_first(queue, now).map_err(|e| (e, 22))? {
            self.zset_rem(queue, &head, now).map_err(|e| (e, 24))?;
            let liveness = self.pttl(&cat(alive, &head), now);
            let ignore_liveness = self.faults.semaphore_handoff_ignores_liveness;
            if liveness <= 0 && !ignore_liveness {
                continue;
            }
            let lease = if liveness > 0 { liveness.min(cap) } else { cap };
            let permit = cat(permits, &head);
            if ignore_liveness {
                // Broken on purpose: the handed permit never expires.
                self.write_check().map_err(|e| (e, 27))?;
                self.keys.insert(
                    permit,
                    super::Entry {
                        value: super::Value::Str(b"1".to_vec()),
                        expires_at: None,
                    },
                );
            } else {
                let mut digits = [0u8; 20];
                let text = super::decimal(lease.unsigned_abs(), &mut digits);
                self.script_set_px(&permit, b"1", text, now)
                    .map_err(|e| (e, 27))?;
            }
            self.zset_add(holders, limit, &head, now)
                .map_err(|e| (e, 28))?;
            self.keep_alive_for(holders, lease, now, 29)?;
            let wake_key = cat(wake, &head);
            self.del(&cat(alive, &head), now);
            self.del(&wake_key, now);
            self.lpush(&wake_key, b"1", now).map_err(|e| (e, 31))?;
            self.pexpire(&wake_key, lease, ExpireMode::Always, now)
                .map_err(|e| (e, 32))?;
            break;
        }
        Ok(ScriptValue::Int(result))
    }

    pub(super) fn semaphore_release(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [holders, permits, signal, ..] = *keys else {
            return Err(nil());
        };
        let [me, signal_ttl, limit, ..] = *argv else {
            return Err(nil());
        };
        let signal = self.wake_list(signal);
        let signal = signal.as_slice();
        self.semaphore_key_check(holders, now)?;
        self.zset_rem(holders, me, now).map_err(|e| (e, 5))?;
        self.write_check().map_err(|e| (e, 6))?;
        if !self.del(&cat(permits, me), now) {
            return Ok(ScriptValue::Int(-1));
        }
        if signal_ttl != b"0" {
            let limit = lua_tonumber(limit).ok_or_else(|| {
                (
                    Fail::new(b"ERR user_script:9: attempt to perform arithmetic on a nil value"),
                    9,
                )
            })?;
            let ms = lua_tonumber(signal_ttl).ok_or_else(|| {
                (
                    Fail::new(b"ERR value is not an integer or out of range"),
                    10,
                )
            })?;
            self.lpush(signal, b"1", now).map_err(|e| (e, 8))?;
            self.ltrim(signal, 0, limit - 1, now).map_err(|e| (e, 9))?;
            self.pexpire(signal, ms, ExpireMode::Always, now)
                .map_err(|e| (e, 10))?;
        }
        Ok(ScriptValue::Int(0))
    }

    pub(super) fn semaphore_extend(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [holders, permits, ..] = *keys else {
            return Err(nil());
        };
        let [me, ttl, ..] = *argv else {
            return Err(nil());
        };
        self.semaphore_key_check(holders, now)?;
        if self
            .zset_score(holders, me, now)
            .map_err(|e| (e, 5))?
            .is_none()
        {
            return Ok(ScriptValue::Int(0));
        }
        let ms = lua_tonumber(ttl)
            .ok_or_else(|| (Fail::new(b"ERR value is not an integer or out of range"), 6))?;
        if !self
            .pexpire(&cat(permits, me), ms, ExpireMode::Always, now)
            .map_err(|e| (e, 6))?
        {
            self.zset_rem(holders, me, now).map_err(|e| (e, 7))?;
            return Ok(ScriptValue::Int(0));
        }
        self.keep_alive_for(holders, ms, now, 10)?;
        Ok(ScriptValue::Int(1))
    }
}
