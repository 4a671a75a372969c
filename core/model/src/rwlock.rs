//! The read-write lock's three scripts ([`distlock_core::script::RW_ACQUIRE`], `RW_RELEASE`,
//! `RW_EXTEND`), call for call as their Lua does them, and broken as [`crate::ModelFaults`]
//! asks (a write beside readers, a read past a waiting writer, a count of dead readers,
//! waiting writers in fair mode's queue) so that the simulator's read-write and mixed-kind
//! properties can be seen to fail.
//!
//! Invariant kept from the Lua: every error the script returns itself comes before its first
//! write except the pruning of dead members, which is a clean-up and changes no hold.

use alloc::vec::Vec;

use distlock_core::Instant;

use super::{
    Entry, ExpireMode, Fail, ModelNode, SCRIPT_REPLY, ScriptValue, Value, cat, lua_tonumber,
};

/// A failing script call: the error and the script line it stands for.
type ScriptResult = Result<ScriptValue, (Fail, u64)>;

fn nil() -> (Fail, u64) {
    (
        Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
        1,
    )
}

fn not_integer(line: u64) -> (Fail, u64) {
    (
        Fail::new(b"ERR value is not an integer or out of range"),
        line,
    )
}

impl ModelNode {
    /// The waiting writers' set, liveness prefix and wake-up list the scripts are given, or
    /// fair mode's and the mutex's keys on a node whose writers share them (a fault).
    fn rw_writer_keys(&self, writers: &[u8], alive: &[u8], signal: &[u8]) -> [Vec<u8>; 3] {
        if !self.faults.rw_writers_share_fair_queue {
            return [writers.to_vec(), alive.to_vec(), signal.to_vec()];
        }
        [
            super::fair_twin(writers, b":writers", b":queue"),
            super::fair_twin(alive, b":writer-alive:", b":alive:"),
            super::fair_twin(signal, b":writer-signal", b":signal"),
        ]
    }

    /// `TYPE KEYS[1]` must be `hash` or `none`: a mutex's token or a semaphore's set there is
    /// a `WRONGTYPE`.
    fn rw_key_check(&mut self, marker: &[u8], now: Instant) -> Result<(), (Fail, u64)> {
        let kind: &[u8] = match self.live(marker, now).map(|e| &e.value) {
            None | Some(Value::Hash(_)) => return Ok(()),
            Some(Value::Str(_)) => b"string",
            Some(Value::List(_)) => b"list",
            Some(Value::ZSet(_)) => b"zset",
        };
        let mut message = b"WRONGTYPE lock key: the name holds a ".to_vec();
        message.extend_from_slice(kind);
        message.extend_from_slice(b", not a read-write lock");
        Err((Fail(message), SCRIPT_REPLY))
    }

    /// The scripts' `first_live`: drops members whose key (`prefix .. member`) is gone from
    /// the set's head and returns the first live one's PTTL, -2 when none is left. With
    /// `count_dead` (a broken node) a dead member counts as live.
    fn rw_first_live(
        &mut self,
        set: &[u8],
        prefix: &[u8],
        count_dead: bool,
        now: Instant,
    ) -> Result<i64, (Fail, u64)> {
        loop {
            let Some(head) = self.zset_first(set, now).map_err(|e| (e, 9))? else {
                return Ok(-2);
            };
            let left = self.pttl(&cat(prefix, &head), now);
            if left != -2 {
                return Ok(left);
            }
            if count_dead {
                return Ok(0);
            }
            self.zset_rem(set, &head, now).map_err(|e| (e, 13))?;
        }
    }

    /// Raises `key`'s expiry to `ms` when it lives shorter (`PTTL < ms`).
    fn rw_keep_alive(
        &mut self,
        key: &[u8],
        ms: i64,
        now: Instant,
        line: u64,
    ) -> Result<(), (Fail, u64)> {
        if self.pttl(key, now) < ms {
            self.pexpire(key, ms, ExpireMode::Always, now)
                .map_err(|e| (e, line))?;
        }
        Ok(())
    }

    /// `HSET marker rw 1` (a new hash has no expiry).
    fn rw_mark(&mut self, marker: &[u8], now: Instant, line: u64) -> Result<(), (Fail, u64)> {
        self.write_check().map_err(|e| (e, line))?;
        match self.live(marker, now).map(|e| &mut e.value) {
            Some(Value::Hash(fields)) => {
                fields.retain(|(f, _)| f.as_slice() != b"rw");
                fields.push((b"rw".to_vec(), b"1".to_vec()));
            }
            Some(_) => return Err((Fail::wrong_type(), line)),
            None => {
                self.keys.insert(
                    marker.to_vec(),
                    Entry {
                        value: Value::Hash(alloc::vec![(b"rw".to_vec(), b"1".to_vec())]),
                        expires_at: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// `DEL list; LPUSH list 1; PEXPIRE list ms`: one wake-up.
    fn rw_wake(
        &mut self,
        list: &[u8],
        ms: &[u8],
        now: Instant,
        line: u64,
    ) -> Result<(), (Fail, u64)> {
        let ms = lua_tonumber(ms).ok_or_else(|| not_integer(line + 2))?;
        self.write_check().map_err(|e| (e, line))?;
        self.del(list, now);
        self.lpush(list, b"1", now).map_err(|e| (e, line + 1))?;
        self.pexpire(list, ms, ExpireMode::Always, now)
            .map_err(|e| (e, line + 2))?;
        Ok(())
    }

    pub(super) fn rw_acquire(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [
            marker,
            fence,
            writer,
            readers,
            reader,
            queue,
            alive,
            read_signal,
            ..,
        ] = *keys
        else {
            return Err(nil());
        };
        let [
            me,
            ttl,
            mode,
            fenced,
            waiting,
            owner,
            liveness,
            signal_ms,
            ..,
        ] = *argv
        else {
            return Err(nil());
        };
        self.rw_key_check(marker, now)?;
        let [queue, alive, _] = self.rw_writer_keys(queue, alive, b"");
        let (queue, alive) = (queue.as_slice(), alive.as_slice());
        let ttl_ms = lua_tonumber(ttl).ok_or_else(|| not_integer(39))?;
        let mut busy = self.pttl(writer, now);
        let mut granted_fence = 0;
        if mode == b"w" {
            if busy == -2 && !self.faults.rw_write_ignores_readers {
                let count_dead = self.faults.rw_write_counts_dead_readers;
                busy = self.rw_first_live(readers, reader, count_dead, now)?;
            }
            if busy != -2 {
                if waiting == b"1" {
                    let live_ms = lua_tonumber(liveness).ok_or_else(|| not_integer(26))?;
                    self.zset_add(queue, 0, owner, now).map_err(|e| (e, 24))?;
                    self.script_set_px(&cat(alive, owner), b"1", liveness, now)
                        .map_err(|e| (e, 25))?;
                    self.rw_keep_alive(queue, live_ms, now, 26)?;
                }
                return Ok(ScriptValue::Pair(0, busy));
            }
            if fenced == b"1" {
                granted_fence = self.incr_by(fence, 1, now).map_err(|e| (e, 30))?;
            }
            self.script_set_px(writer, me, ttl, now)
                .map_err(|e| (e, 31))?;
            self.zset_rem(queue, owner, now).map_err(|e| (e, 32))?;
            self.del(&cat(alive, owner), now);
        } else {
            if busy == -2 && !self.faults.rw_read_ignores_waiting_writers {
                busy = self.rw_first_live(queue, alive, false, now)?;
            }
            if busy != -2 {
                return Ok(ScriptValue::Pair(0, busy));
            }
            if fenced == b"1" {
                granted_fence = self.incr_by(fence, 0, now).map_err(|e| (e, 37))?;
            }
            self.script_set_px(&cat(reader, me), b"1", ttl, now)
                .map_err(|e| (e, 38))?;
            self.zset_add(readers, 0, me, now).map_err(|e| (e, 39))?;
            self.rw_keep_alive(readers, ttl_ms, now, 40)?;
            if waiting == b"1" && signal_ms != b"0" {
                self.rw_wake(read_signal, signal_ms, now, 42)?;
            }
        }
        self.rw_mark(marker, now, 47)?;
        self.rw_keep_alive(marker, ttl_ms, now, 48)?;
        Ok(ScriptValue::Pair(1, granted_fence))
    }

    pub(super) fn rw_release(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [
            marker,
            writer,
            readers,
            reader,
            queue,
            alive,
            signal,
            read_signal,
            ..,
        ] = *keys
        else {
            return Err(nil());
        };
        let [me, mode, signal_ms, ..] = *argv else {
            return Err(nil());
        };
        self.rw_key_check(marker, now)?;
        let [queue, alive, signal] = self.rw_writer_keys(queue, alive, signal);
        let (queue, alive, signal) = (queue.as_slice(), alive.as_slice(), signal.as_slice());
        if mode == b"w" {
            if self.get_str(writer, now).map_err(|e| (e, 16))?.as_deref() != Some(me) {
                return Ok(ScriptValue::Int(-1));
            }
            self.write_check().map_err(|e| (e, 17))?;
            self.del(writer, now);
        } else {
            self.zset_rem(readers, me, now).map_err(|e| (e, 19))?;
            self.write_check().map_err(|e| (e, 20))?;
            if !self.del(&cat(reader, me), now) {
                return Ok(ScriptValue::Int(-1));
            }
        }
        if self.rw_first_live(readers, reader, false, now)? != -2 {
            return Ok(ScriptValue::Int(0));
        }
        if self.pttl(writer, now) == -2 {
            self.del(marker, now);
        }
        if signal_ms != b"0" {
            if self.rw_first_live(queue, alive, false, now)? != -2 {
                self.rw_wake(signal, signal_ms, now, 25)?;
            } else if mode == b"w" {
                self.rw_wake(read_signal, signal_ms, now, 25)?;
            }
        }
        Ok(ScriptValue::Int(0))
    }

    pub(super) fn rw_extend(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [marker, writer, readers, reader, ..] = *keys else {
            return Err(nil());
        };
        let [me, mode, ttl, ..] = *argv else {
            return Err(nil());
        };
        self.rw_key_check(marker, now)?;
        let ms = lua_tonumber(ttl).ok_or_else(|| not_integer(8))?;
        if mode == b"w" {
            if self.get_str(writer, now).map_err(|e| (e, 7))?.as_deref() != Some(me) {
                return Ok(ScriptValue::Int(0));
            }
            self.pexpire(writer, ms, ExpireMode::Always, now)
                .map_err(|e| (e, 8))?;
        } else {
            if self
                .zset_score(readers, me, now)
                .map_err(|e| (e, 10))?
                .is_none()
            {
                return Ok(ScriptValue::Int(0));
            }
            let key: Vec<u8> = cat(reader, me);
            if !self
                .pexpire(&key, ms, ExpireMode::Always, now)
                .map_err(|e| (e, 11))?
            {
                self.zset_rem(readers, me, now).map_err(|e| (e, 12))?;
                return Ok(ScriptValue::Int(0));
            }
            self.rw_keep_alive(readers, ms, now, 15)?;
        }
        self.rw_mark(marker, now, 17)?;
        self.rw_keep_alive(marker, ms, now, 18)?;
        Ok(ScriptValue::Int(1))
    }
}
