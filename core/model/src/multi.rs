//! The multi-name lock's four scripts ([`distlock_core::script::MULTI_ACQUIRE`],
//! `MULTI_RELEASE`, `MULTI_EXTEND`, `MULTI_RAISE_FENCE`), call for call as their Lua does
//! them, and broken as [`crate::ModelFaults`] asks (names taken one by one, stopping at the
//! first held, as a multi-resource lock without a script does) so that the simulator's
//! "no partial hold" property can be seen to fail.
//!
//! Invariant kept from the Lua: the acquire fails (if at all) before its first write, the
//! release and the extend read every key before they write any.

use alloc::vec::Vec;

use distlock_core::Instant;

use super::{ExpireMode, Fail, ModelNode, SCRIPT_REPLY, ScriptValue, Value, lua_tonumber};

/// A failing script call: the error and the script line it stands for.
type ScriptResult = Result<ScriptValue, (Fail, u64)>;

fn not_a_number(line: u64) -> (Fail, u64) {
    (
        Fail::new(b"ERR user_script: attempt to compare nil with number"),
        line,
    )
}

impl ModelNode {
    pub(super) fn multi_acquire(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [me, ttl, fenced, ..] = *argv else {
            return Err(not_a_number(SCRIPT_REPLY));
        };
        let pairs: Vec<(&[u8], &[u8])> = keys.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        if self.faults.multi_takes_names_one_by_one {
            // Broken on purpose: `SET NX` name by name, stopping at the first held one and
            // keeping what it took before it.
            for (lock, _) in &pairs {
                if self.live(lock, now).is_some() {
                    return Ok(ScriptValue::Pair(0, self.pttl(lock, now)));
                }
                self.script_set_px(lock, me, ttl, now).map_err(|e| (e, 3))?;
            }
            return Ok(ScriptValue::Pair(1, 0));
        }
        // Every name's `TYPE` first: another kind of key anywhere is `WRONGTYPE`, before a
        // held name is reported.
        let mut held = None;
        for (lock, _) in &pairs {
            let exists_only = self.faults.multi_checks_exists_not_type;
            let kind: &[u8] = match self.live(lock, now).map(|e| &e.value) {
                None => continue,
                // Broken on purpose: any live key is a held name, whatever its type.
                Some(_) if exists_only => {
                    held = held.or(Some(*lock));
                    continue;
                }
                Some(Value::Str(_)) => {
                    held = held.or(Some(*lock));
                    continue;
                }
                Some(Value::List(_)) => b"list",
                Some(Value::ZSet(_)) => b"zset",
                Some(Value::Hash(_)) => b"hash",
            };
            let mut message = b"WRONGTYPE lock key: the name holds a ".to_vec();
            message.extend_from_slice(kind);
            message.extend_from_slice(b", not a lock");
            return Err((Fail(message), SCRIPT_REPLY));
        }
        if let Some(lock) = held {
            return Ok(ScriptValue::Pair(0, self.pttl(lock, now)));
        }
        let mut fence = 0;
        if fenced == b"1" {
            for (_, counter) in &pairs {
                let value = self.get_str(counter, now).map_err(|e| (e, 10))?;
                let value = match value {
                    None => 0,
                    Some(text) => lua_tonumber(&text).ok_or_else(|| {
                        (Fail::new(b"ERR fence key is not a number"), SCRIPT_REPLY)
                    })?,
                };
                fence = fence.max(value);
            }
            fence += 1;
            let text = alloc::string::ToString::to_string(&fence);
            for (_, counter) in &pairs {
                self.write_check().map_err(|e| (e, 15))?;
                self.set_forever(counter, text.as_bytes());
            }
        }
        for (lock, _) in &pairs {
            self.script_set_px(lock, me, ttl, now)
                .map_err(|e| (e, 17))?;
        }
        Ok(ScriptValue::Pair(1, fence))
    }

    pub(super) fn multi_release(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [me, signal_ttl, ..] = *argv else {
            return Err(not_a_number(SCRIPT_REPLY));
        };
        let pairs: Vec<(&[u8], &[u8])> = keys.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        // `MGET` of the lock keys, compared with ARGV[1]: a key of another type reads as nil,
        // not the token's.
        let mine: Vec<bool> = pairs
            .iter()
            .map(|(lock, _)| self.get_str(lock, now).ok().flatten().as_deref() == Some(me))
            .collect();
        let mut released = -1;
        for ((lock, signal), mine) in pairs.iter().zip(mine) {
            if !mine {
                continue;
            }
            released = 0;
            self.write_check().map_err(|e| (e, 10))?;
            self.del(lock, now);
            if signal_ttl != b"0" {
                self.del(signal, now);
                self.lpush(signal, b"1", now).map_err(|e| (e, 13))?;
                let ms = lua_tonumber(signal_ttl).ok_or_else(|| {
                    (
                        Fail::new(b"ERR value is not an integer or out of range"),
                        14,
                    )
                })?;
                self.pexpire(signal, ms, ExpireMode::Always, now)
                    .map_err(|e| (e, 14))?;
            }
        }
        Ok(ScriptValue::Int(released))
    }

    pub(super) fn multi_extend(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let [me, ttl, ..] = *argv else {
            return Err(not_a_number(SCRIPT_REPLY));
        };
        for lock in keys {
            if self.get_str(lock, now).ok().flatten().as_deref() != Some(me) {
                return Ok(ScriptValue::Int(0));
            }
        }
        let ms = lua_tonumber(ttl)
            .ok_or_else(|| (Fail::new(b"ERR value is not an integer or out of range"), 4))?;
        for lock in keys {
            self.pexpire(lock, ms, ExpireMode::Always, now)
                .map_err(|e| (e, 4))?;
        }
        Ok(ScriptValue::Int(1))
    }

    pub(super) fn multi_raise_fence(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
    ) -> ScriptResult {
        let wanted_text = argv.first().copied().unwrap_or_default();
        let wanted = lua_tonumber(wanted_text).ok_or_else(|| not_a_number(5))?;
        let mut least: Option<i64> = None;
        for counter in keys {
            let current = match self.get_str(counter, now).map_err(|e| (e, 4))? {
                None => 0,
                Some(text) => lua_tonumber(&text).ok_or_else(|| not_a_number(5))?,
            };
            let current = if current < wanted {
                self.write_check().map_err(|e| (e, 6))?;
                self.set_forever(counter, wanted_text);
                wanted
            } else {
                current
            };
            least = Some(least.map_or(current, |l| l.min(current)));
        }
        // `return least` with no key is `nil`: Redis replies nil, which no request accepts.
        least.map(ScriptValue::Int).ok_or_else(|| not_a_number(9))
    }
}
