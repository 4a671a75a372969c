//! `reset`'s clearing of a semaphore's or read-write lock's name
//! ([`distlock_core::RESET_SEMAPHORE_OR_RW`], sent by source), call for call as its Lua does
//! it: the name's kind read first (a sorted set counts as a semaphore only with a live permit
//! key among its members), then every key of the name but its fencing counter
//! deleted (a dry run: only listed), then the wake-up lists pushed.

use alloc::vec::Vec;

use distlock_core::Instant;

use super::{ExpireMode, Fail, ModelNode, Res, Value, Writer};

impl ModelNode {
    /// Runs the script with its thirteen `KEYS` and two `ARGV` and writes its reply: the keys
    /// deleted, or the name's type when it is neither kind. A read-only node refuses it
    /// unless dry (the Lua fails at its first write; nothing is written before it).
    pub(super) fn reset_semaphore_or_rw(
        &mut self,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now: Instant,
        mut w: Writer<'_>,
    ) -> Res<()> {
        let (
            [
                name,
                queue,
                wake,
                alive,
                permit,
                writer,
                readers,
                reader,
                signal,
                read_signal,
                writers,
                writer_alive,
                writer_signal,
            ],
            [dry, signal_ms],
        ) = (keys, argv)
        else {
            return Err(Fail::new(
                b"ERR wrong number of arguments for the reset script",
            ));
        };
        let dry = *dry == b"1";
        if !dry {
            self.write_check()?;
        }
        let mut gone: Vec<Vec<u8>> = Vec::new();
        let mut lists: Vec<&[u8]> = Vec::new();
        let holds_a_permit = match self.live(name, now).map(|e| &e.value) {
            Some(Value::ZSet(members)) => {
                let members: Vec<Vec<u8>> = members.iter().map(|(_, m)| m.clone()).collect();
                members
                    .iter()
                    .any(|m| self.live(&[*permit, m].concat(), now).is_some())
            }
            _ => false,
        };
        match self.live(name, now).map(|e| &e.value) {
            Some(Value::ZSet(_)) if holds_a_permit => {
                self.drop_members(name, permit, dry, &mut gone, now);
                if let Some(Value::ZSet(members)) = self.live(queue, now).map(|e| &e.value) {
                    let waiters: Vec<Vec<u8>> = members.iter().map(|(_, m)| m.clone()).collect();
                    for waiter in waiters {
                        self.drop_key(&[*alive, &waiter].concat(), dry, &mut gone, now);
                        self.drop_key(&[*wake, &waiter].concat(), dry, &mut gone, now);
                    }
                    self.drop_key(queue, dry, &mut gone, now);
                }
                lists.push(signal);
            }
            Some(Value::Hash(fields)) if fields.iter().any(|(f, v)| f == b"rw" && v == b"1") => {
                self.drop_key(writer, dry, &mut gone, now);
                self.drop_members(readers, reader, dry, &mut gone, now);
                if matches!(
                    self.live(readers, now).map(|e| &e.value),
                    Some(Value::ZSet(_))
                ) {
                    self.drop_key(readers, dry, &mut gone, now);
                }
                self.drop_members(writers, writer_alive, dry, &mut gone, now);
                if matches!(
                    self.live(writers, now).map(|e| &e.value),
                    Some(Value::ZSet(_))
                ) {
                    self.drop_key(writers, dry, &mut gone, now);
                }
                lists.extend([*writer_signal, *read_signal]);
            }
            other => {
                let kind: &[u8] = match other {
                    None => b"none",
                    Some(Value::Str(_)) => b"string",
                    Some(Value::List(_)) => b"list",
                    Some(Value::ZSet(_)) => b"zset",
                    Some(Value::Hash(_)) => b"hash",
                };
                w.bulk(kind);
                return Ok(());
            }
        }
        self.drop_key(name, dry, &mut gone, now);
        let ms = core::str::from_utf8(signal_ms)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        if !dry && ms != 0 {
            for list in lists {
                self.del(list, now);
                self.lpush(list, b"1", now)?;
                self.pexpire(list, ms, ExpireMode::Always, now)?;
            }
        }
        w.array(gone.len());
        for key in &gone {
            w.bulk(key);
        }
        Ok(())
    }

    /// `drop(key)`: a key that exists is listed, and deleted unless dry.
    fn drop_key(&mut self, key: &[u8], dry: bool, gone: &mut Vec<Vec<u8>>, now: Instant) {
        if self.live(key, now).is_some() {
            gone.push(key.to_vec());
            if !dry {
                self.del(key, now);
            }
        }
    }

    /// `members(set, prefix)`: each member's own key (`prefix .. member`) dropped.
    fn drop_members(
        &mut self,
        set: &[u8],
        prefix: &[u8],
        dry: bool,
        gone: &mut Vec<Vec<u8>>,
        now: Instant,
    ) {
        let Some(Value::ZSet(members)) = self.live(set, now).map(|e| &e.value) else {
            return;
        };
        let members: Vec<Vec<u8>> = members.iter().map(|(_, m)| m.clone()).collect();
        for member in members {
            self.drop_key(&[prefix, &member].concat(), dry, gone, now);
        }
    }
}
