//! Pipelined release: a release written on a connection without waiting for its reply, and
//! what that connection then owes until the reply is read and checked.
//!
//! A normal [`crate::Release`] costs a round trip before the caller goes on. A pipelined
//! release writes the same compare-and-delete ([`PipelinedRelease::encode`]) and returns at
//! once; the connection carries an [`OwedRelease`]. Replies on one connection come in the
//! order of the commands, so the owed reply is the first the connection gives: the next
//! machine to use the connection takes it first ([`crate::Machine::owe_release`]) and then
//! its own, or a [`ReleaseReader`] reads it on a connection left idle — and gives it up
//! between replies to a machine that wants the connection ([`ReleaseReader::take_owed`]),
//! so the next operation still goes behind the release on it. Either way the reply
//! becomes a [`ReleaseCheck`] — the deferred confirmation — which the driver reports to the
//! caller; the operation the connection carries next never sees the owed reply.
//!
//! What the deferred confirmation means:
//! - [`ReleaseCheck::Released`]: the delete ran and the key was ours, exactly what a
//!   [`crate::Release`] would have reported.
//! - [`ReleaseCheck::NotHeld`]: when the server ran the delete the key was no longer ours
//!   (it expired, was reset, or another token holds it): the lease had been lost before the
//!   release, as a [`crate::Error::NotHeld`] release would say.
//! - [`ReleaseCheck::Unconfirmed`]: no usable reply (connection lost, reply deadline passed,
//!   a server or protocol error). The delete may or may not have run: the key is gone at its
//!   TTL at the latest. Never reported as released.
//!
//! **Safety.** The delete compares the token and deletes in one atomic step, as every release
//! does, so running it late can only delete our own key: a late delete of our own token only
//! keeps the name held longer, and a delete that finds another token's key leaves it alone
//! ([`ReleaseCheck::NotHeld`]). Until the server runs it, the key stands as if no release had
//! been sent (ours until its TTL: nobody else can take the name); once it ran, the name is
//! free as after any release. So a pipelined release never lets two holders in: the
//! simulator's exclusion and fencing properties hold with half its clients releasing this way
//! under every fault (`sim_budget_one_node_pipelined` in `core/tests/simulation.rs`).
//!
//! **What the caller may assume when a pipelined release returns**: the bytes are written,
//! nothing more. The name is not yet free; a waiter wakes when the server runs the delete
//! (after the bytes reach it); the lease must be treated as given up (no more work under it).
//!
//! Only a single-node lock of one name is released this way ([`PipelinedRelease::new`]
//! refuses the rest with [`ConfigError::PipelinedUnsupported`]): a Redlock release is a quorum
//! verdict over replies that arrive on different connections at different times and a failed
//! node's delete is retried, which a deferred check cannot do; semaphores, read-write locks
//! and multi-name locks have releases of their own, left to the normal path.
//!
//! The delete is sent with its script's source (`EVAL`, or the native command where the
//! server has it), never by digest: nobody is waiting to resend it after a `NOSCRIPT`.

use crate::commands::{Answer, Encoder, Encoding, Request, interpret_release};
use crate::error::{ConfigError, NodeFailure, ProtocolError};
use crate::keys::Token;
use crate::link::REPLY_CAP;
use crate::lock::Lock;
use crate::release::Released;
use crate::resp::{self, BufferTooSmall, Framer, Reply};
use crate::server::ServerInfo;
use crate::time::Instant;

/// The deferred confirmation of a pipelined release (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseCheck {
    /// The delete ran on our key.
    Released(Released),
    /// When the delete ran the key was no longer ours: the lease had been lost before.
    NotHeld,
    /// No usable reply: the delete may or may not have run; the key expires at its TTL.
    Unconfirmed(NodeFailure),
}

impl ReleaseCheck {
    /// The check a release's answer gives.
    fn from_answer(answer: Answer) -> Self {
        match answer {
            Answer::Released { still_held: 0 } => ReleaseCheck::Released(Released::Free),
            Answer::Released { still_held } => {
                ReleaseCheck::Released(Released::StillHeld { holds: still_held })
            }
            Answer::NotHeld => ReleaseCheck::NotHeld,
            Answer::Failed(failure) => ReleaseCheck::Unconfirmed(failure),
            _ => ReleaseCheck::Unconfirmed(NodeFailure::Protocol(ProtocolError::UnexpectedReply)),
        }
    }
}

/// A release to be written without waiting for its reply, over one node.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct PipelinedRelease<'a> {
    lock: &'a Lock,
    token: &'a Token,
    server: ServerInfo,
    encoding: Encoding,
}

impl<'a> PipelinedRelease<'a> {
    /// A pipelined release of `lock` held by `token` on the one node `servers` describes.
    /// Refuses ([`ConfigError::PipelinedUnsupported`]) several nodes, semaphores, read-write
    /// and multi-name locks (see the module doc), and a scriptless lock on a server known to
    /// lack the native delete ([`ConfigError::MissingNativeCommand`]).
    pub fn new(
        lock: &'a Lock,
        token: &'a Token,
        servers: &[ServerInfo],
    ) -> Result<Self, ConfigError> {
        let [server] = servers else {
            return Err(ConfigError::PipelinedUnsupported);
        };
        if lock.limit().is_some() || lock.rw_mode().is_some() || lock.multi.is_some() {
            return Err(ConfigError::PipelinedUnsupported);
        }
        if lock.options().scripts == crate::Scripts::Never
            && let Some(command) = server.missing_for_scriptless()
        {
            return Err(ConfigError::MissingNativeCommand { node: 0, command });
        }
        let encoding = crate::link::encoding(
            Request::Release,
            lock.options(),
            server,
            false,
            false,
            false,
        );
        Ok(PipelinedRelease {
            lock,
            token,
            server: *server,
            encoding,
        })
    }

    /// Writes the release into the front of `buf` and returns its length and what the
    /// connection owes once those bytes are written: its reply is due by `now` plus the
    /// lock's request timeout. A short buffer is left untouched and the error says the size
    /// needed.
    pub fn encode(
        &self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(usize, OwedRelease), BufferTooSmall> {
        let encoder = Encoder {
            lock: self.lock,
            token: self.token,
            server: self.server,
            use_eval: true,
        };
        let len = resp::encode_into(buf, |sink| {
            encoder.encode(Request::Release, self.encoding, sink);
        })?;
        let owed = OwedRelease {
            encoding: self.encoding,
            replies: encoder.replies(Request::Release, self.encoding),
            seen: 0,
            deadline: now.saturating_add(self.lock.options().request_timeout),
            answer: None,
        };
        Ok((len, owed))
    }
}

/// What a connection owes for a pipelined release: its replies, the first of them the answer,
/// due by [`OwedRelease::deadline`]. Hand it to the next machine on the connection
/// ([`crate::Machine::owe_release`]) or to a [`ReleaseReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an owed release that is dropped is never checked: report it as unconfirmed"]
pub struct OwedRelease {
    encoding: Encoding,
    replies: u8,
    seen: u8,
    deadline: Instant,
    answer: Option<Answer>,
}

impl OwedRelease {
    /// When the reply is due; past it the release is [`ReleaseCheck::Unconfirmed`].
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Replies still to come.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        u32::from(self.replies.saturating_sub(self.seen))
    }

    /// Takes the next reply frame on the connection (a push frame is no reply: the caller
    /// leaves those out). Returns the check once the last reply is in.
    pub(crate) fn on_reply(&mut self, reply: &Reply<'_>) -> Option<ReleaseCheck> {
        if self.seen == Request::Release.answering_reply() {
            self.answer = Some(interpret_release(self.encoding, reply));
        }
        self.seen = self.seen.saturating_add(1);
        if self.seen < self.replies {
            return None;
        }
        Some(ReleaseCheck::from_answer(self.answer.take().unwrap_or(
            Answer::Failed(NodeFailure::Protocol(ProtocolError::UnexpectedReply)),
        )))
    }
}

/// Reads an owed release's reply on a connection nothing else uses (left idle after the
/// release): the same check a machine would make, for a driver that settles its idle
/// connections. Bytes beyond the owed replies put the connection out of step
/// ([`ReleaseReader::in_step`] is false: reconnect it).
#[derive(Debug, Clone)]
pub struct ReleaseReader {
    owed: Option<OwedRelease>,
    framer: Framer<REPLY_CAP>,
    protocol: resp::Protocol,
    check: Option<ReleaseCheck>,
    desynced: bool,
}

impl ReleaseReader {
    /// Reads `owed` from a connection that speaks `protocol`.
    pub fn new(owed: OwedRelease, protocol: resp::Protocol) -> Self {
        ReleaseReader {
            owed: Some(owed),
            framer: Framer::new(),
            protocol,
            check: None,
            desynced: false,
        }
    }

    /// Bytes read from the connection (any split, any coalescing).
    pub fn handle_input(&mut self, mut bytes: &[u8]) {
        while !self.desynced {
            let taken = self.framer.push(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            loop {
                let len = match self.framer.next_frame_len() {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(error) => {
                        self.desync(error);
                        break;
                    }
                };
                let outcome = match resp::decode(self.framer.frame(len), self.protocol) {
                    Ok(Reply::Push(_)) => Ok(None),
                    Ok(reply) => match self.owed.as_mut() {
                        Some(owed) => Ok(owed.on_reply(&reply)),
                        None => Err(ProtocolError::Unsolicited),
                    },
                    Err(error) => Err(error),
                };
                self.framer.consume(len);
                match outcome {
                    Ok(Some(check)) => {
                        self.owed = None;
                        self.check = Some(check);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.desync(error);
                        break;
                    }
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
    }

    /// Time has reached [`ReleaseReader::poll_timeout`]: a reply not in by its deadline
    /// leaves the release unconfirmed (and the connection out of step).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.owed.as_ref().is_some_and(|o| o.deadline <= now) {
            self.fail(NodeFailure::Timeout);
        }
    }

    /// The connection was lost: a reply not yet read leaves the release unconfirmed.
    pub fn handle_disconnect(&mut self) {
        self.fail(NodeFailure::Disconnected);
    }

    /// When to call [`ReleaseReader::handle_timeout`]; `None` once the reply is in.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.owed.as_ref().map(OwedRelease::deadline)
    }

    /// The deferred confirmation, once decided.
    #[must_use]
    pub fn poll_check(&mut self) -> Option<ReleaseCheck> {
        self.check.take()
    }

    /// Whether the connection owes nothing more and nothing stray came: it may be reused.
    #[must_use]
    pub fn in_step(&self) -> bool {
        self.owed.is_none() && !self.desynced && self.framer.buffered() == 0
    }

    /// Stops reading and gives back what the connection still owes, for a machine that takes
    /// the connection over and reads the rest ([`crate::Machine::owe_release`]): possible
    /// only between replies — no reply half-read, no check decided, in step. `None`
    /// otherwise (nothing changed): read on until [`ReleaseReader::poll_check`] has it.
    pub fn take_owed(&mut self) -> Option<OwedRelease> {
        if self.desynced || self.framer.buffered() != 0 {
            return None;
        }
        self.owed.take()
    }

    fn desync(&mut self, error: ProtocolError) {
        self.fail(NodeFailure::Protocol(error));
        self.framer.clear();
    }

    fn fail(&mut self, failure: NodeFailure) {
        self.desynced = true;
        if self.owed.take().is_some() {
            self.check = Some(ReleaseCheck::Unconfirmed(failure));
        }
    }
}
