//! Get-or-compute's two scripts ([`distlock_core::script::GET_OR_LOCK`] and
//! [`distlock_core::script::FINISH_COMPUTE`]), call for call as their Lua does them, and
//! broken as [`crate::ModelFaults::compute_lock_ignores_holder`] (the lock taken whatever
//! holds it) or [`crate::ModelFaults::compute_value_from_lock_key`] (the value read from the
//! lock key) asks, so that the simulator's get-or-compute properties can be seen to fail.

use distlock_core::Instant;

use super::{ExpireMode, Fail, ModelNode, ScriptValue, lua_tonumber};

/// A failing script call: the error and the script line it stands for.
type ScriptResult = Result<ScriptValue, (Fail, u64)>;

fn nil(line: u64) -> (Fail, u64) {
    (
        Fail::new(b"ERR Lua redis lib command arguments must be strings or integers"),
        line,
    )
}

fn arithmetic(line: u64) -> (Fail, u64) {
    (
        Fail::new(b"ERR user_script: attempt to perform arithmetic on a nil value"),
        line,
    )
}

impl ModelNode {
    pub(super) fn get_or_lock(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [value, lock, waiters, ..] = *keys else {
            return Err(nil(1));
        };
        let [token, ttl, allowance, ..] = *argv else {
            return Err(nil(3));
        };
        let read = if self.faults.compute_value_from_lock_key {
            lock
        } else {
            value
        };
        if let Some(v) = self.get_str(read, now).map_err(|e| (e, 1))? {
            return Ok(ScriptValue::Tagged(2, v));
        }
        if self.live(lock, now).is_none() || self.faults.compute_lock_ignores_holder {
            self.script_set_px(lock, token, ttl, now)
                .map_err(|e| (e, 3))?;
            return Ok(ScriptValue::Pair(1, 0));
        }
        let left = self.pttl(lock, now);
        self.write_check().map_err(|e| (e, 5))?;
        self.incr_by(waiters, 1, now).map_err(|e| (e, 5))?;
        let keep = if left < 0 {
            lua_tonumber(ttl).ok_or_else(|| arithmetic(7))?
        } else {
            left
        };
        let allowance = lua_tonumber(allowance).ok_or_else(|| arithmetic(8))?;
        self.pexpire(
            waiters,
            keep.saturating_add(allowance),
            ExpireMode::Always,
            now,
        )
        .map_err(|e| (e, 8))?;
        Ok(ScriptValue::Pair(0, left))
    }

    pub(super) fn finish_compute(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [lock, value_key, waiters, wake, ..] = *keys else {
            return Err(nil(1));
        };
        let [token, store, value, ttl, cap, wake_ttl, ..] = *argv else {
            return Err(nil(1));
        };
        let holder = self.get_str(lock, now).map_err(|e| (e, 1))?;
        let holds = holder.as_deref() == Some(token);
        if !holds {
            return Ok(ScriptValue::Int(-1));
        }
        if store == b"1" {
            self.script_set_px(value_key, value, ttl, now)
                .map_err(|e| (e, 2))?;
        }
        self.write_check().map_err(|e| (e, 3))?;
        self.del(lock, now);
        let waiting = self
            .get_str(waiters, now)
            .map_err(|e| (e, 4))?
            .and_then(|v| lua_tonumber(&v))
            .unwrap_or(0);
        let cap = lua_tonumber(cap).ok_or_else(|| arithmetic(5))?;
        let mut wake_count = waiting.min(cap);
        if store == b"1" {
            self.write_check().map_err(|e| (e, 7))?;
            self.del(waiters, now);
        } else {
            wake_count = wake_count.min(1);
        }
        for _ in 0..wake_count.max(0) {
            self.lpush(wake, b"1", now).map_err(|e| (e, 11))?;
        }
        if wake_count > 0 {
            let ms = lua_tonumber(wake_ttl).ok_or_else(|| arithmetic(12))?;
            self.pexpire(wake, ms, ExpireMode::Always, now)
                .map_err(|e| (e, 12))?;
        }
        Ok(ScriptValue::Int(wake_count))
    }
}
