//! One lock node that is a Redis Cluster, as a byte pipe: the lock machines write commands
//! to "node i" and read its replies, exactly as for a single server; this link routes each
//! command to the primary that owns its key's slot, follows `MOVED`, `ASK` and `TRYAGAIN` as
//! [`Redirects`] says, and hands the replies back in the order the commands were written,
//! redirects removed. A driver only opens the connections it is told to and moves bytes.
//!
//! Invariants:
//! - Every command written gets exactly one reply, in write order: the primary's answer, or
//!   (when routing gives up) a `CLUSTERDOWN` error reply that names why, which the lock
//!   machines treat as a transient server error and retry within their deadline.
//! - A command goes to one primary at a time; it is sent again only after that primary
//!   answered it with a redirect, so a command is never executed twice.
//! - Replies from a primary are matched to what was sent to that primary, in order (an
//!   `ASKING` sent before a command has its own reply, which is consumed here).
//! - Bytes that are not RESP, from the writer or a primary, end the link
//!   ([`ClusterLinkError`]): the driver drops it and the machine sees a disconnect.
//! - A slot the map says nobody serves (a primary that failed, before its replica was
//!   promoted) fails its command at once and has the map read again through the seed, so
//!   the operation's next attempt routes to the promoted replica. A primary that is gone
//!   altogether fails its connection, which ends the link: the driver connects again
//!   through the seeds still answering.
//!
//! A command's slot is that of its first key: the key after `numkeys` for
//! `EVAL`/`EVALSHA`/`FCALL` (and their `_RO` forms), the first argument otherwise; commands
//! without keys (`HELLO`, `AUTH`, `SCRIPT`, `CLIENT`, `PING`, …) go to the seed the link was
//! opened on. Every command distlock sends for one lock names only keys of that lock's one
//! slot ([`crate::lock_slot`]).
//!
//! `WAIT` and `WAITAOF` ask about what *this connection* wrote, so they have no slot of their
//! own: each waits until every command written before it is answered, then goes to the
//! primary that answered the last command with a key (the seed when none did). A durable
//! lease's `WAIT` thus reaches the primary that holds the lock, on the connection that wrote
//! it, after any redirect the write followed.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

use crate::cluster::{
    ASKING, CLUSTER_SHARDS, CLUSTER_SLOTS, NextHop, Primary, Redirect, Redirects,
    SLOT_MAP_REPLY_CAP, SlotMap, SlotMapError,
};
use crate::error::ServerErrorKind;
use crate::resp::{Protocol, Reply, decode, frame_len};
use crate::slot::key_slot;
use crate::time::{Duration, Instant};

/// The link cannot go on: the driver drops it (the machine sees a disconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterLinkError {
    /// The writer's bytes are not RESP commands.
    BadCommand,
    /// A primary's bytes are not RESP, or answer nothing sent to it.
    BadReply,
}

impl core::fmt::Display for ClusterLinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadCommand => "a command written to the cluster link is not RESP",
            Self::BadReply => "a cluster primary sent bytes that are not a reply to anything sent",
        })
    }
}

impl core::error::Error for ClusterLinkError {}

/// Where a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No key: the seed.
    Seed,
    /// The owner of this slot.
    Slot(u16),
    /// Where the last command with a key was answered, once everything before it is
    /// (`WAIT`, `WAITAOF`).
    AfterPrevious,
}

/// One command written, until its reply is handed back.
#[derive(Debug)]
struct Command {
    bytes: Vec<u8>,
    target: Target,
    /// Written, but not sent yet: an [`Target::AfterPrevious`] command waiting for the
    /// replies before it.
    held: bool,
    redirects: Option<Redirects>,
    resend_at: Option<Instant>,
    reply: Option<Vec<u8>>,
}

/// What a primary owes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// The reply to an `ASKING`.
    Asking,
    /// The reply to command `id`.
    Command(u64),
    /// A slot map: `CLUSTER SHARDS` (true) or `CLUSTER SLOTS`.
    Map { shards: bool },
}

#[derive(Debug)]
struct PrimaryState {
    primary: Primary,
    owed: VecDeque<Owed>,
    input: Vec<u8>,
}

/// A Redis Cluster as one lock node. See the module doc.
#[derive(Debug)]
pub struct ClusterLink {
    map: Box<SlotMap>,
    seed: Primary,
    protocol: Protocol,
    request_timeout: Duration,
    written: Vec<u8>,
    /// Commands not yet handed back; `first_id` is the id of the front one.
    commands: VecDeque<Command>,
    first_id: u64,
    primaries: Vec<PrimaryState>,
    transmits: VecDeque<(Primary, Vec<u8>)>,
    replies: Vec<u8>,
    tls: bool,
    /// A slot-map read is under way (one at a time).
    refreshing: bool,
    /// The primary that answered the last command with a key: where `WAIT` goes.
    last_keyed: Option<Primary>,
}

impl ClusterLink {
    /// A link over the cluster `map` describes, opened on `seed` (where keyless commands
    /// go), reading replies in `protocol`; each command's redirects must end within
    /// `request_timeout` of when it was written. `tls`: a map read again routes to the
    /// primaries' TLS ports.
    #[must_use]
    pub fn new(
        map: SlotMap,
        seed: Primary,
        protocol: Protocol,
        request_timeout: Duration,
        tls: bool,
    ) -> Self {
        ClusterLink {
            map: Box::new(map),
            seed,
            protocol,
            request_timeout,
            written: Vec::new(),
            commands: VecDeque::new(),
            first_id: 0,
            primaries: Vec::new(),
            transmits: VecDeque::new(),
            replies: Vec::new(),
            tls,
            refreshing: false,
            last_keyed: None,
        }
    }

    /// The slot map as the link knows it: updated for one slot by a `MOVED`, which also has
    /// the link read the whole map again (`CLUSTER SHARDS`, else `CLUSTER SLOTS`) from the
    /// slot's new owner; a map that cannot be read leaves the one it has.
    #[must_use]
    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// Bytes the lock machine wrote to this node (any split). Complete commands are routed
    /// at once.
    ///
    /// # Errors
    ///
    /// [`ClusterLinkError::BadCommand`] when they are not RESP.
    pub fn write(&mut self, bytes: &[u8], now: Instant) -> Result<(), ClusterLinkError> {
        if self.written.is_empty() {
            // The usual case: whole commands, routed straight from the writer's bytes
            // without passing through the buffer.
            let mut rest = bytes;
            loop {
                match frame_len(rest) {
                    Ok(Some(len)) => {
                        let (command, after) = rest.split_at(len);
                        self.push_command(command.to_vec(), now)?;
                        rest = after;
                    }
                    Ok(None) => break,
                    Err(_) => return Err(ClusterLinkError::BadCommand),
                }
            }
            self.written.extend_from_slice(rest);
        } else {
            self.written.extend_from_slice(bytes);
            loop {
                let len = match frame_len(&self.written) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => return Err(ClusterLinkError::BadCommand),
                };
                let command: Vec<u8> = self.written.drain(..len).collect();
                self.push_command(command, now)?;
            }
        }
        // A command routing gave up on at once (an unserved slot) is answered already.
        self.hand_back();
        Ok(())
    }

    /// Queues one whole command written at `now`, and routes it unless it waits for the
    /// commands before it.
    fn push_command(&mut self, bytes: Vec<u8>, now: Instant) -> Result<(), ClusterLinkError> {
        let target = command_target(&bytes).ok_or(ClusterLinkError::BadCommand)?;
        let id = self.first_id + self.commands.len() as u64;
        self.commands.push_back(Command {
            bytes,
            target,
            held: target == Target::AfterPrevious,
            redirects: Some(Redirects::new(now, self.request_timeout)),
            resend_at: None,
            reply: None,
        });
        if target != Target::AfterPrevious {
            self.route(id, None);
        }
        Ok(())
    }

    /// The next bytes to send, and to which primary (open a connection to it when there is
    /// none: what the link sends a primary goes in order on one connection).
    pub fn poll_transmit(&mut self) -> Option<(Primary, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Bytes read from `primary`'s connection.
    ///
    /// # Errors
    ///
    /// [`ClusterLinkError::BadReply`] when they are not RESP or answer nothing sent.
    pub fn handle_input(
        &mut self,
        primary: &Primary,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), ClusterLinkError> {
        let index = self
            .primaries
            .iter()
            .position(|p| &p.primary == primary)
            .ok_or(ClusterLinkError::BadReply)?;
        if self.primaries[index].input.is_empty() {
            // The usual case: whole replies, taken straight from the primary's bytes
            // without passing through the buffer.
            let mut rest = bytes;
            loop {
                match frame_len(rest) {
                    Ok(Some(len)) => {
                        let (frame, after) = rest.split_at(len);
                        self.take_reply(index, primary, frame, now)?;
                        rest = after;
                    }
                    Ok(None) => break,
                    Err(_) => return Err(ClusterLinkError::BadReply),
                }
            }
            self.primaries[index].input.extend_from_slice(rest);
        } else {
            self.primaries[index].input.extend_from_slice(bytes);
            loop {
                let state = &mut self.primaries[index];
                let len = match frame_len(&state.input) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => return Err(ClusterLinkError::BadReply),
                };
                let frame: Vec<u8> = state.input.drain(..len).collect();
                self.take_reply(index, primary, &frame, now)?;
            }
        }
        if self.primaries[index].input.len() > SLOT_MAP_REPLY_CAP {
            // No reply to anything the link sends is this long: a bounded buffer.
            return Err(ClusterLinkError::BadReply);
        }
        self.hand_back();
        Ok(())
    }

    /// One whole reply `frame` from `primary` (the link's `index`th): the answer to what
    /// that primary owes first.
    fn take_reply(
        &mut self,
        index: usize,
        primary: &Primary,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), ClusterLinkError> {
        // RESP3 push frames answer nothing.
        if frame.first() == Some(&b'>') {
            return Ok(());
        }
        match self.primaries[index]
            .owed
            .pop_front()
            .ok_or(ClusterLinkError::BadReply)?
        {
            Owed::Command(id) => self.answer(id, frame, primary, now),
            Owed::Map { shards } => self.read_map(frame, shards, primary),
            // `ASKING` says `+OK`; were it refused, the command after it says why.
            Owed::Asking => {}
        }
        Ok(())
    }

    /// `primary`'s connection is gone: what it owed will never come. The driver ends the
    /// link (its machine sees a disconnect): this only says whether anything was owed.
    #[must_use]
    pub fn owes(&self, primary: &Primary) -> bool {
        self.primaries
            .iter()
            .any(|p| &p.primary == primary && !p.owed.is_empty())
    }

    /// Time has reached [`ClusterLink::poll_timeout`]: commands waiting out a `TRYAGAIN` go
    /// again.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .commands
            .iter()
            .enumerate()
            .filter(|(_, c)| c.resend_at.is_some_and(|at| at <= now))
            .map(|(i, _)| self.first_id + i as u64)
            .collect();
        for id in due {
            if let Some(command) = self.command(id) {
                command.resend_at = None;
            }
            self.route(id, None);
        }
        self.hand_back();
    }

    /// When to call [`ClusterLink::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.commands.iter().filter_map(|c| c.resend_at).min()
    }

    /// Reply bytes for the lock machine, in command order; returns how many were copied.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.replies.len());
        buf[..n].copy_from_slice(&self.replies[..n]);
        self.replies.drain(..n);
        n
    }

    /// Reply bytes waiting for [`ClusterLink::read`].
    #[must_use]
    pub fn readable(&self) -> usize {
        self.replies.len()
    }

    /// Whether every command written has been answered and read: the link may be pooled.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.commands.is_empty()
            && self.replies.is_empty()
            && self.written.is_empty()
            && self.primaries.iter().all(|p| p.owed.is_empty())
    }

    fn command(&mut self, id: u64) -> Option<&mut Command> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        self.commands.get_mut(index)
    }

    /// Sends command `id` to its slot's owner, or to `to` (a redirect) with `ASKING` first
    /// when `asking`.
    fn route(&mut self, id: u64, to: Option<(Primary, bool)>) {
        let Some(command) = self.command(id) else {
            return;
        };
        let target = command.target;
        let (target, asking) = match to {
            Some(to) => to,
            None => match target {
                Target::Seed => (self.seed.clone(), false),
                Target::AfterPrevious => (
                    self.last_keyed.clone().unwrap_or_else(|| self.seed.clone()),
                    false,
                ),
                Target::Slot(slot) => match self.map.owner(slot) {
                    Ok(owner) => (owner.clone(), false),
                    Err(unserved) => {
                        self.give_up(id, &format!("{unserved}"));
                        // A failed primary's slots come back on its promoted replica: the
                        // map the next attempt routes by is read again, through the seed.
                        if !self.refreshing {
                            self.request_map(self.seed.clone(), true);
                        }
                        return;
                    }
                },
            },
        };
        let Some(command) = self.command(id) else {
            return;
        };
        let mut bytes = Vec::with_capacity(command.bytes.len() + ASKING.len());
        if asking {
            bytes.extend_from_slice(ASKING);
        }
        bytes.extend_from_slice(&command.bytes);
        let state = self.state(&target);
        if asking {
            state.owed.push_back(Owed::Asking);
        }
        state.owed.push_back(Owed::Command(id));
        self.transmits.push_back((target, bytes));
    }

    /// What the link knows of `primary`'s connection, made when new.
    fn state(&mut self, primary: &Primary) -> &mut PrimaryState {
        let index = match self.primaries.iter().position(|p| &p.primary == primary) {
            Some(index) => index,
            None => {
                self.primaries.push(PrimaryState {
                    primary: primary.clone(),
                    owed: VecDeque::new(),
                    input: Vec::new(),
                });
                self.primaries.len() - 1
            }
        };
        &mut self.primaries[index]
    }

    /// Asks `from` for the slot map.
    fn request_map(&mut self, from: Primary, shards: bool) {
        self.refreshing = true;
        self.state(&from).owed.push_back(Owed::Map { shards });
        let command = if shards {
            CLUSTER_SHARDS
        } else {
            CLUSTER_SLOTS
        };
        self.transmits.push_back((from, command.to_vec()));
    }

    /// A slot-map reply from `from`: the new map, or `CLUSTER SLOTS` after a server too old
    /// for `CLUSTER SHARDS`; anything else keeps the map the link has.
    fn read_map(&mut self, frame: &[u8], shards: bool, from: &Primary) {
        self.refreshing = false;
        let read = if shards {
            SlotMap::from_shards(frame, self.protocol, from.host(), self.tls)
        } else {
            SlotMap::from_slots(frame, self.protocol, from.host())
        };
        match read {
            Ok(map) if map.served() > 0 => *self.map = map,
            Err(SlotMapError::Refused(e))
                if shards && e.kind == ServerErrorKind::UnknownCommand =>
            {
                self.request_map(from.clone(), false);
            }
            _ => {}
        }
    }

    /// `frame` answers command `id`, from `from`.
    fn answer(&mut self, id: u64, frame: &[u8], from: &Primary, now: Instant) {
        // Only an error reply (`-` in RESP2, `!` a RESP3 blob error) can be a redirect: the
        // rest are handed back without being decoded.
        let redirect = match frame.first() {
            Some(b'-' | b'!') => match decode(frame, self.protocol) {
                Ok(Reply::Error(message)) => Redirect::parse(message, from.host()),
                _ => None,
            },
            _ => None,
        };
        let Some(redirect) = redirect else {
            if let Some(command) = self.command(id) {
                let keyed = matches!(command.target, Target::Slot(_));
                command.reply = Some(frame.to_vec());
                // Compared before copied: a primary is some 260 bytes, and it is nearly
                // always the same one.
                if keyed && self.last_keyed.as_ref() != Some(from) {
                    self.last_keyed = Some(from.clone());
                }
            }
            return;
        };
        let map = &mut *self.map;
        let Some(command) = self
            .commands
            .get_mut(usize::try_from(id.wrapping_sub(self.first_id)).unwrap_or(usize::MAX))
        else {
            return;
        };
        let Some(redirects) = command.redirects.as_mut() else {
            return;
        };
        match redirects.follow(redirect, map, now) {
            NextHop::Resend {
                to,
                asking,
                refresh,
            } => {
                let owner = (*to).clone();
                self.route(id, Some((*to, asking)));
                if refresh && !self.refreshing {
                    self.request_map(owner, true);
                }
            }
            NextHop::ResendAt(at) => command.resend_at = Some(at),
            NextHop::GiveUp(why) => self.give_up(id, &format!("{why}")),
        }
    }

    /// Command `id` ends with a `CLUSTERDOWN` error reply saying `why`.
    fn give_up(&mut self, id: u64, why: &str) {
        let clean: alloc::string::String = why
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        if let Some(command) = self.command(id) {
            command.reply = Some(format!("-CLUSTERDOWN {clean}\r\n").into_bytes());
        }
    }

    /// Moves the answered commands at the front to the reply bytes, and sends a held
    /// command once every command before it is answered.
    fn hand_back(&mut self) {
        loop {
            let ready = self
                .commands
                .iter()
                .position(|c| c.reply.is_none())
                .filter(|&i| self.commands[i].held);
            let Some(index) = ready else { break };
            self.commands[index].held = false;
            self.route(self.first_id + index as u64, None);
        }
        while self.commands.front().is_some_and(|c| c.reply.is_some()) {
            if let Some(command) = self.commands.pop_front() {
                self.replies
                    .extend_from_slice(command.reply.as_deref().unwrap_or_default());
                self.first_id += 1;
            }
        }
    }
}

/// Where a command goes: by its first key's slot, to the seed without keys, or after the
/// commands before it (`WAIT`, `WAITAOF`); `None` when the bytes are not a command.
fn command_target(frame: &[u8]) -> Option<Target> {
    // Only the first four arguments decide, read in place: this runs for every command.
    let mut args = CommandArgs::new(frame)?;
    let mut first = [None::<&[u8]>; 4];
    for slot in &mut first {
        *slot = args.next();
    }
    let [name, arg1, arg2, arg3] = first;
    let name = name?;
    let upper = |name: &[u8], of: &[u8]| name.eq_ignore_ascii_case(of);
    const KEYLESS: [&[u8]; 14] = [
        b"HELLO",
        b"AUTH",
        b"PING",
        b"SCRIPT",
        b"CLIENT",
        b"SELECT",
        b"ASKING",
        b"READONLY",
        b"CLUSTER",
        b"INFO",
        b"COMMAND",
        b"ECHO",
        b"FUNCTION",
        b"QUIT",
    ];
    if KEYLESS.iter().any(|k| upper(name, k)) {
        return Some(Target::Seed);
    }
    if upper(name, b"WAIT") || upper(name, b"WAITAOF") {
        return Some(Target::AfterPrevious);
    }
    const SCRIPTED: [&[u8]; 6] = [
        b"EVAL",
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ];
    if SCRIPTED.iter().any(|k| upper(name, k)) {
        let keys = core::str::from_utf8(arg2?).ok()?.parse::<u64>().ok()?;
        return Some(if keys == 0 {
            Target::Seed
        } else {
            Target::Slot(key_slot(arg3?))
        });
    }
    Some(arg1.map_or(Target::Seed, |key| Target::Slot(key_slot(key))))
}

/// The arguments of one command frame as the lock machines write it — a RESP array of bulk
/// strings — read in place, one at a time. Total: anything else ends the arguments early
/// (`None` from [`CommandArgs::new`] when the frame is not an array at all).
struct CommandArgs<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> CommandArgs<'a> {
    fn new(frame: &'a [u8]) -> Option<Self> {
        let (header, rest) = line(frame.strip_prefix(b"*")?)?;
        Some(CommandArgs {
            rest,
            left: decimal(header)?,
        })
    }
}

impl<'a> Iterator for CommandArgs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.left = self.left.checked_sub(1)?;
        let parsed = (|| {
            let (header, rest) = line(self.rest.strip_prefix(b"$")?)?;
            let len = decimal(header)?;
            let bytes = rest.get(..len)?;
            let after = rest.get(len..)?.strip_prefix(b"\r\n")?;
            Some((bytes, after))
        })();
        match parsed {
            Some((bytes, after)) => {
                self.rest = after;
                Some(bytes)
            }
            None => {
                self.left = 0;
                None
            }
        }
    }
}

/// The bytes up to the first CRLF, and those after it.
fn line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    Some((bytes.get(..end)?, bytes.get(end + 2..)?))
}

/// A non-negative decimal of at most 9 digits (a length in a frame of bounded size).
fn decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(port: u16) -> Primary {
        Primary::new("h", port).unwrap()
    }

    /// All slots on port 1.
    fn one_primary() -> SlotMap {
        SlotMap::from_slots(
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            Protocol::Resp2,
            "h",
        )
        .unwrap()
    }

    fn link() -> ClusterLink {
        ClusterLink::new(
            one_primary(),
            primary(9),
            Protocol::Resp2,
            Duration::from_millis(1000),
            false,
        )
    }

    const GET_FOO: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const NOW: Instant = Instant::from_millis(0);

    fn read_all(link: &mut ClusterLink) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = link.read(&mut buf);
        buf[..n].to_vec()
    }

    #[test]
    fn commands_go_to_the_slot_owner_and_keyless_ones_to_the_seed() {
        let mut link = link();
        // Split anywhere: routed once whole.
        link.write(&GET_FOO[..5], NOW).unwrap();
        assert_eq!(link.poll_transmit(), None);
        link.write(&GET_FOO[5..], NOW).unwrap();
        link.write(PING, NOW).unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(1), GET_FOO.to_vec())));
        assert_eq!(link.poll_transmit(), Some((primary(9), PING.to_vec())));
        // The seed answers first; the reply waits for the one written before it.
        link.handle_input(&primary(9), b"+PONG\r\n", NOW).unwrap();
        assert_eq!(read_all(&mut link), b"");
        link.handle_input(&primary(1), b"$1\r\nx\r\n", NOW).unwrap();
        assert_eq!(read_all(&mut link), b"$1\r\nx\r\n+PONG\r\n");
        assert!(link.is_idle());
    }

    #[test]
    fn moved_resends_to_the_new_owner_and_updates_the_map() {
        let mut link = link();
        link.write(GET_FOO, NOW).unwrap();
        let _ = link.poll_transmit();
        link.handle_input(&primary(1), b"-MOVED 12182 h:2\r\n", NOW)
            .unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(2), GET_FOO.to_vec())));
        assert_eq!(link.map().owner(12182), Ok(&primary(2)));
        // The whole map is read again from the new owner; before 7.0 by CLUSTER SLOTS.
        assert_eq!(
            link.poll_transmit(),
            Some((primary(2), CLUSTER_SHARDS.to_vec()))
        );
        link.handle_input(&primary(2), b"$-1\r\n", NOW).unwrap();
        assert_eq!(read_all(&mut link), b"$-1\r\n");
        assert!(!link.is_idle(), "the map is still owed");
        link.handle_input(&primary(2), b"-ERR unknown subcommand 'SHARDS'\r\n", NOW)
            .unwrap();
        assert_eq!(
            link.poll_transmit(),
            Some((primary(2), CLUSTER_SLOTS.to_vec()))
        );
        link.handle_input(
            &primary(2),
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\nh\r\n:3\r\n",
            NOW,
        )
        .unwrap();
        assert!(link.is_idle());
        assert_eq!(link.map().owner(0), Ok(&primary(3)));
        // What is not a map keeps the map the link has.
        link.write(GET_FOO, NOW).unwrap();
        let _ = link.poll_transmit();
        link.handle_input(&primary(3), b"-MOVED 12182 h:4\r\n", NOW)
            .unwrap();
        let _ = link.poll_transmit();
        let _ = link.poll_transmit();
        link.handle_input(&primary(4), b":1\r\n+OK\r\n", NOW)
            .unwrap();
        assert_eq!(link.map().owner(12182), Ok(&primary(4)));
        assert_eq!(link.map().owner(0), Ok(&primary(3)));
    }

    #[test]
    fn ask_sends_asking_once_and_leaves_the_map() {
        let mut link = link();
        link.write(GET_FOO, NOW).unwrap();
        let _ = link.poll_transmit();
        link.handle_input(&primary(1), b"-ASK 12182 h:2\r\n", NOW)
            .unwrap();
        let (to, bytes) = link.poll_transmit().unwrap();
        assert_eq!(to, primary(2));
        assert_eq!(bytes, [ASKING, GET_FOO].concat());
        assert_eq!(link.map().owner(12182), Ok(&primary(1)));
        link.handle_input(&primary(2), b"+OK\r\n$1\r\ny\r\n", NOW)
            .unwrap();
        assert_eq!(read_all(&mut link), b"$1\r\ny\r\n");
        // The next command goes to the map's owner again.
        link.write(GET_FOO, NOW).unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(1), GET_FOO.to_vec())));
    }

    #[test]
    fn tryagain_waits_then_resends_and_endless_redirects_end_in_an_error_reply() {
        let mut link = link();
        link.write(GET_FOO, NOW).unwrap();
        let _ = link.poll_transmit();
        link.handle_input(&primary(1), b"-TRYAGAIN Multiple keys\r\n", NOW)
            .unwrap();
        assert_eq!(link.poll_transmit(), None);
        let at = link.poll_timeout().unwrap();
        link.handle_timeout(at);
        assert_eq!(link.poll_transmit(), Some((primary(1), GET_FOO.to_vec())));
        // A cluster that keeps bouncing the command: it ends with an error reply.
        for i in 0..10u16 {
            let (to, _) = match link.poll_transmit() {
                Some(t) => t,
                None => (primary(1 + (i % 2)), Vec::new()),
            };
            let other = if to == primary(1) { 2 } else { 1 };
            let moved = format!("-MOVED 12182 h:{other}\r\n");
            link.handle_input(&to, moved.as_bytes(), at).unwrap();
            if link.readable() > 0 {
                break;
            }
        }
        let reply = read_all(&mut link);
        assert!(reply.starts_with(b"-CLUSTERDOWN more than 5"), "{reply:?}");
        assert!(link.is_idle());
    }

    #[test]
    fn an_unserved_slot_is_an_error_reply_and_garbage_ends_the_link() {
        let mut link = ClusterLink::new(
            SlotMap::empty(),
            primary(9),
            Protocol::Resp2,
            Duration::from_millis(1000),
            false,
        );
        link.write(GET_FOO, NOW).unwrap();
        assert!(
            read_all(&mut link)
                .starts_with(b"-CLUSTERDOWN no cluster primary serves hash slot 12182")
        );
        // The map is read again through the seed (once at a time), and the next command
        // goes to the owner it names: a promoted replica.
        assert_eq!(
            link.poll_transmit(),
            Some((primary(9), CLUSTER_SHARDS.to_vec()))
        );
        link.write(GET_FOO, NOW).unwrap();
        assert_eq!(link.poll_transmit(), None, "one map read at a time");
        let _ = read_all(&mut link);
        link.handle_input(&primary(9), b"-ERR unknown subcommand 'SHARDS'\r\n", NOW)
            .unwrap();
        let _ = link.poll_transmit();
        link.handle_input(
            &primary(9),
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\nh\r\n:7\r\n",
            NOW,
        )
        .unwrap();
        link.write(GET_FOO, NOW).unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(7), GET_FOO.to_vec())));
        assert_eq!(
            link.write(b"!garbage\r\n", NOW),
            Err(ClusterLinkError::BadCommand)
        );
        let mut link = self::link();
        assert_eq!(
            link.handle_input(&primary(1), b"+OK\r\n", NOW),
            Err(ClusterLinkError::BadReply)
        );
    }

    #[test]
    fn wait_follows_the_write_it_asks_about() {
        const WAIT: &[u8] = b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n100\r\n";
        let mut link = link();
        // Nothing with a key answered yet: the seed.
        link.write(WAIT, NOW).unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(9), WAIT.to_vec())));
        link.handle_input(&primary(9), b":0\r\n", NOW).unwrap();
        assert_eq!(read_all(&mut link), b":0\r\n");
        // Written with the write still unanswered, it is held; the write is redirected, so
        // the WAIT goes where the write was answered, not by the slot of its "1".
        link.write(GET_FOO, NOW).unwrap();
        link.write(WAIT, NOW).unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(1), GET_FOO.to_vec())));
        assert_eq!(link.poll_transmit(), None, "the WAIT waits for the write");
        link.handle_input(&primary(1), b"-ASK 12182 h:2\r\n", NOW)
            .unwrap();
        assert_eq!(
            link.poll_transmit(),
            Some((primary(2), [ASKING, GET_FOO].concat()))
        );
        assert_eq!(link.poll_transmit(), None);
        link.handle_input(&primary(2), b"+OK\r\n+OK\r\n", NOW)
            .unwrap();
        assert_eq!(link.poll_transmit(), Some((primary(2), WAIT.to_vec())));
        link.handle_input(&primary(2), b":1\r\n", NOW).unwrap();
        assert_eq!(read_all(&mut link), b"+OK\r\n:1\r\n");
        assert!(link.is_idle());
    }

    #[test]
    fn scripts_route_by_their_first_key() {
        let eval = b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$3\r\nfoo\r\n$1\r\nx\r\n";
        assert_eq!(command_target(eval), Some(Target::Slot(12182)));
        let none = b"*3\r\n$4\r\nEVAL\r\n$2\r\nab\r\n$1\r\n0\r\n";
        assert_eq!(command_target(none), Some(Target::Seed));
        assert_eq!(
            command_target(b"*2\r\n$4\r\nPTTL\r\n$3\r\nbar\r\n"),
            Some(Target::Slot(5061))
        );
        assert_eq!(command_target(b"+OK\r\n"), None);
        // Arguments are read by their length: a key may hold CRLF.
        assert_eq!(
            command_target(b"*2\r\n$4\r\nPTTL\r\n$5\r\na\r\nbc\r\n"),
            Some(Target::Slot(key_slot(b"a\r\nbc")))
        );
        // A short or non-bulk first argument is no command.
        assert_eq!(command_target(b"*1\r\n:5\r\n"), None);
        assert_eq!(command_target(b"*2\r\n$9\r\nPTTL\r\n"), None);
        assert_eq!(command_target(b"*-1\r\n"), None);
    }

    /// RESP arrays of bulk strings, as the lock machines write commands.
    fn encoded(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest::proptest! {
        /// The in-place argument reader agrees with the full RESP decoder on every command
        /// (any bytes in any argument).
        #[test]
        fn arguments_read_in_place_are_the_decoded_ones(
            args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..12), 0..6)
        ) {
            let frame = encoded(&args);
            let read: Vec<&[u8]> = CommandArgs::new(&frame).unwrap().collect();
            let Ok(Reply::Array(decoded)) = decode(&frame, Protocol::Resp2) else {
                panic!("not an array");
            };
            let decoded: Vec<&[u8]> = decoded
                .iter()
                .map(|r| match r {
                    Reply::Bulk(b) => *b,
                    _ => panic!("not bulk"),
                })
                .collect();
            proptest::prop_assert_eq!(read, decoded);
        }

        /// Commands and replies split anywhere give the same routing and the same reply bytes
        /// as whole ones: the buffered path and the in-place one agree.
        #[test]
        fn splits_anywhere_route_and_answer_alike(cut in 0usize..64, cut2 in 0usize..64) {
            let commands = [GET_FOO, PING, GET_FOO].concat();
            let cut = cut.min(commands.len());
            let mut link = link();
            link.write(&commands[..cut], NOW).unwrap();
            link.write(&commands[cut..], NOW).unwrap();
            let mut sent: Vec<(Primary, Vec<u8>)> = Vec::new();
            while let Some(tx) = link.poll_transmit() {
                sent.push(tx);
            }
            proptest::prop_assert_eq!(
                sent,
                [
                    (primary(1), GET_FOO.to_vec()),
                    (primary(9), PING.to_vec()),
                    (primary(1), GET_FOO.to_vec()),
                ]
            );
            let replies = b"$1\r\nx\r\n$-1\r\n";
            let cut2 = cut2.min(replies.len());
            link.handle_input(&primary(9), b"+PONG\r\n", NOW).unwrap();
            link.handle_input(&primary(1), &replies[..cut2], NOW).unwrap();
            link.handle_input(&primary(1), &replies[cut2..], NOW).unwrap();
            proptest::prop_assert_eq!(read_all(&mut link), b"$1\r\nx\r\n+PONG\r\n$-1\r\n".to_vec());
            proptest::prop_assert!(link.is_idle());
        }
    }
}
