//! A Redis Sentinel group as one lock node: which sentinel to ask, what its answer and the
//! primary's `ROLE` mean, when to ask again and when to give up, and which reply from a
//! connected primary means a failover happened — one answer for every driver.
//!
//! A driver finds the primary with a [`Discovery`]: it asks the sentinel [`Discovery::next`]
//! names ([`get_master_addr_command`], read by [`parse_primary_address`]), connects to the
//! primary named, checks it with [`ROLE`] ([`parse_role`]) and reports each answer back.
//! Once a primary is verified, its connection is used like any single server's, and a
//! [`FailoverWatch`] over the replies read from it says when that connection must go (a
//! `READONLY` reply: the primary was demoted); the next connect discovers again.
//!
//! Invariants (unit and property tests below and in `tests/sentinel.rs`):
//! - a primary is reported only after its own `ROLE` said `master`: a lock is never written
//!   to a replica a stale sentinel still names;
//! - every sentinel is asked in turn, starting with the one that last named a verified
//!   primary; rounds of asks are at most [`SENTINEL_ROUNDS`], paused [`SENTINEL_ROUND_PAUSE`]
//!   apart, and no step lies past the deadline the discovery was started with;
//! - no reply bytes, however broken, panic anything here: they are a typed
//!   [`SentinelReplyError`];
//! - sentinels that need a password are sent [`sentinel_auth_command`] first, on the same
//!   connection, and the question only after [`parse_auth_reply`] said `OK`. A refused login
//!   (`WRONGPASS`, `NOAUTH`: no password given to a sentinel that needs one, `NOPERM`) ends
//!   the discovery at once ([`DiscoveryError::SentinelAuthRefused`]): one group's sentinels
//!   share their credentials, so asking the others would only be refused again.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::cluster::{MAX_HOST_LEN, Primary};
use crate::error::{ProtocolError, ServerError, ServerErrorKind};
use crate::handshake::Credentials;
use crate::resp::{Protocol, Reply, decode, frame_len};
use crate::time::{Duration, Instant};

/// The port a sentinel listens on when the URL names none.
pub const SENTINEL_PORT: u16 = 26379;
/// The most sentinels one group may list.
pub const MAX_SENTINELS: usize = 16;
/// The longest reply a sentinel or `ROLE` may give (a `ROLE` lists the replicas).
pub const SENTINEL_REPLY_CAP: usize = 64 * 1024;
/// The most rounds of asking every sentinel one discovery makes.
pub const SENTINEL_ROUNDS: u32 = 3;
/// The pause between two rounds: a failover promotes a replica within about a second, and
/// the sentinels name it as soon as it has; asking at once again would only repeat the
/// answer that just failed.
pub const SENTINEL_ROUND_PAUSE: Duration = Duration::from_millis(100);
/// `ROLE`: what a server is (`master`, `slave`, `sentinel`), asked of every primary a
/// sentinel names before a lock command reaches it.
pub const ROLE: &[u8] = b"*1\r\n$4\r\nROLE\r\n";

/// `SENTINEL get-master-addr-by-name <service>`.
#[must_use]
pub fn get_master_addr_command(service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + service.len());
    out.extend_from_slice(b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$");
    out.extend_from_slice(alloc::format!("{}", service.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(service.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// `AUTH [username] password`, sent to a sentinel before anything else on its connection.
#[must_use]
pub fn sentinel_auth_command(credentials: &Credentials) -> Vec<u8> {
    let mut args: Vec<&[u8]> = Vec::with_capacity(3);
    args.push(b"AUTH");
    if let Some(user) = &credentials.username {
        args.push(user);
    }
    args.push(&credentials.password);
    let mut out = alloc::format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(alloc::format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads the reply to [`sentinel_auth_command`] (one complete frame in `protocol`).
///
/// # Errors
///
/// [`SentinelReplyError::Refused`] when the sentinel refused the login (see
/// [`Asked::after_refusal`]); [`SentinelReplyError::Malformed`] for anything but `OK`.
pub fn parse_auth_reply(frame: &[u8], protocol: Protocol) -> Result<(), SentinelReplyError> {
    match decode_whole(frame, protocol)? {
        Reply::Simple(b"OK") => Ok(()),
        _ => Err(SentinelReplyError::Malformed),
    }
}

/// Why a sentinel's or a primary's reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SentinelReplyError {
    /// Not all of the reply has arrived yet: read more.
    Incomplete,
    /// Not RESP, more than one reply, longer than [`SENTINEL_REPLY_CAP`], or not the shape
    /// the command answers with.
    Malformed,
    /// The server answered with an error (`NOPERM`, an unknown command: not a sentinel).
    Refused(ServerError),
}

impl From<ProtocolError> for SentinelReplyError {
    fn from(_: ProtocolError) -> Self {
        SentinelReplyError::Malformed
    }
}

impl core::fmt::Display for SentinelReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Incomplete => f.write_str("the reply is incomplete"),
            Self::Malformed => f.write_str("the reply is not what the command answers"),
            Self::Refused(e) => write!(f, "refused: {e}"),
        }
    }
}

impl core::error::Error for SentinelReplyError {}

/// What a sentinel said about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SentinelAnswer {
    /// The service's primary, as the sentinel knows it.
    Primary(Box<Primary>),
    /// The sentinel monitors no service of that name (a nil reply).
    UnknownService,
}

/// The length of the one reply at the start of `buf`: `Ok(None)` until it is complete.
///
/// # Errors
///
/// [`SentinelReplyError::Malformed`] for bytes that are not RESP or a reply past the cap.
pub fn sentinel_reply_len(buf: &[u8]) -> Result<Option<usize>, SentinelReplyError> {
    match frame_len(buf)? {
        Some(len) if len <= SENTINEL_REPLY_CAP => Ok(Some(len)),
        None if buf.len() <= SENTINEL_REPLY_CAP => Ok(None),
        _ => Err(SentinelReplyError::Malformed),
    }
}

fn decode_whole(frame: &[u8], protocol: Protocol) -> Result<Reply<'_>, SentinelReplyError> {
    match sentinel_reply_len(frame)? {
        Some(len) if len == frame.len() => {}
        Some(_) => return Err(SentinelReplyError::Malformed),
        None => return Err(SentinelReplyError::Incomplete),
    }
    match decode(frame, protocol)? {
        Reply::Error(message) => Err(SentinelReplyError::Refused(ServerError::from_message(
            message,
        ))),
        reply => Ok(reply),
    }
}

/// Reads a sentinel's reply to [`get_master_addr_command`]: `[host, port]`, or nil for a
/// service it does not monitor.
///
/// # Errors
///
/// See [`SentinelReplyError`]; a host longer than [`MAX_HOST_LEN`], an empty one or a port
/// that is not 1..=65535 is `Malformed`.
pub fn parse_primary_address(
    frame: &[u8],
    protocol: Protocol,
) -> Result<SentinelAnswer, SentinelReplyError> {
    let items = match decode_whole(frame, protocol)? {
        Reply::Nil => return Ok(SentinelAnswer::UnknownService),
        Reply::Array(items) => items,
        _ => return Err(SentinelReplyError::Malformed),
    };
    let [Reply::Bulk(host), Reply::Bulk(port)] = items.as_slice() else {
        return Err(SentinelReplyError::Malformed);
    };
    let host = core::str::from_utf8(host).map_err(|_| SentinelReplyError::Malformed)?;
    let port = core::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p != 0)
        .ok_or(SentinelReplyError::Malformed)?;
    if host.len() > MAX_HOST_LEN {
        return Err(SentinelReplyError::Malformed);
    }
    Primary::new(host, port)
        .map(|p| SentinelAnswer::Primary(Box::new(p)))
        .ok_or(SentinelReplyError::Malformed)
}

/// What a server said it is, by `ROLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// `master`: locks may be written to it.
    Primary,
    /// `slave`: a replica — a sentinel's answer from before a failover finished.
    Replica,
    /// `sentinel`, or a role this version does not know.
    Other,
}

/// Reads a reply to [`ROLE`]: an array whose first element names the role.
///
/// # Errors
///
/// See [`SentinelReplyError`].
pub fn parse_role(frame: &[u8], protocol: Protocol) -> Result<Role, SentinelReplyError> {
    let Reply::Array(items) = decode_whole(frame, protocol)? else {
        return Err(SentinelReplyError::Malformed);
    };
    match items.first() {
        Some(Reply::Bulk(b"master") | Reply::Simple(b"master")) => Ok(Role::Primary),
        Some(Reply::Bulk(b"slave") | Reply::Simple(b"slave")) => Ok(Role::Replica),
        Some(Reply::Bulk(_) | Reply::Simple(_)) => Ok(Role::Other),
        _ => Err(SentinelReplyError::Malformed),
    }
}

/// How asking one sentinel, and checking the primary it named, ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Asked {
    /// The sentinel could not be reached, did not answer in time, or answered garbage.
    NoAnswer,
    /// The sentinel refused the command (not a sentinel).
    Refused,
    /// The sentinel refused the login, or wants one that was not given (`WRONGPASS`,
    /// `NOAUTH`, `NOPERM`): discovery stops.
    AuthRefused,
    /// The sentinel monitors no such service.
    UnknownService,
    /// The primary named could not be reached, or its `ROLE` did not arrive.
    PrimaryUnreachable,
    /// The primary named says it is not one ([`Role::Replica`] or other): a failover under
    /// way, or a stale sentinel.
    NotPrimary,
    /// The primary named refused `ROLE` (`NOPERM`: the user may not run it). A lock cannot
    /// be written where the role cannot be checked, so discovery stops.
    RoleRefused,
    /// The primary named answered `ROLE` with `master`: use it.
    Verified,
}

impl Asked {
    /// What a sentinel's refusal (of `AUTH` or of the question) means: a login refused or
    /// missing ([`ServerErrorKind::NoAuth`], [`ServerErrorKind::NoPerm`]) is
    /// [`Asked::AuthRefused`], anything else [`Asked::Refused`].
    #[must_use]
    pub fn after_refusal(error: &ServerError) -> Asked {
        match error.kind {
            ServerErrorKind::NoAuth | ServerErrorKind::NoPerm => Asked::AuthRefused,
            _ => Asked::Refused,
        }
    }
}

/// What to do next in a discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryStep {
    /// Ask sentinel `i` (in the order given), then report with [`Discovery::asked`].
    Ask(usize),
    /// Nothing to do before this instant; then call [`Discovery::next`] again.
    Pause(Instant),
    /// A primary was verified: use the connection.
    Done,
    /// Discovery failed.
    GiveUp(DiscoveryError),
}

/// Why no primary was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Every sentinel that answered monitors no service of that name.
    UnknownService,
    /// No sentinel answered (unreachable, silent, refused, garbage).
    NoSentinel,
    /// Sentinels answered, but no primary they named was reachable and said `master`
    /// (a failover under way, every candidate down).
    NoPrimary,
    /// A primary refused `ROLE`, so whether it is one cannot be checked.
    RoleRefused,
    /// A sentinel refused the sentinel login, or wants one that was not given.
    SentinelAuthRefused,
}

impl core::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::UnknownService => "no sentinel monitors a service of that name",
            Self::NoSentinel => "no sentinel answered",
            Self::NoPrimary => {
                "no sentinel named a reachable primary (ROLE master): a failover may be under way"
            }
            Self::RoleRefused => {
                "the primary refused ROLE, so it cannot be checked to be a primary (allow +role for this user)"
            }
            Self::SentinelAuthRefused => {
                "a sentinel refused the login, or needs one (give it with ?sentinel_password=)"
            }
        })
    }
}

impl core::error::Error for DiscoveryError {}

/// One discovery of a sentinel group's primary. See the module doc.
#[derive(Debug, Clone)]
pub struct Discovery {
    sentinels: usize,
    /// The sentinel a round starts with.
    first: usize,
    /// Asks made in this round.
    asked_in_round: usize,
    round: u32,
    deadline: Instant,
    resume_at: Option<Instant>,
    waiting: Option<usize>,
    done: bool,
    gave_up: Option<DiscoveryError>,
    answered: bool,
    known_service: bool,
    primary_named: bool,
}

impl Discovery {
    /// A discovery over `sentinels` sentinels (at most [`MAX_SENTINELS`] are used),
    /// starting with sentinel `preferred` (the one that last named a verified primary; 0 at
    /// first), which must end by `deadline`.
    #[must_use]
    pub fn new(sentinels: usize, preferred: usize, deadline: Instant) -> Self {
        let sentinels = sentinels.min(MAX_SENTINELS);
        Discovery {
            sentinels,
            first: if sentinels == 0 {
                0
            } else {
                preferred % sentinels
            },
            asked_in_round: 0,
            round: 0,
            deadline,
            resume_at: None,
            waiting: None,
            done: false,
            gave_up: None,
            answered: false,
            known_service: false,
            primary_named: false,
        }
    }

    /// The deadline every step ends by: a driver bounds each ask with it.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What to do now. An [`DiscoveryStep::Ask`] must be answered by [`Discovery::asked`]
    /// before the next call; calling again without that asks the same sentinel.
    pub fn next(&mut self, now: Instant) -> DiscoveryStep {
        if self.done {
            return DiscoveryStep::Done;
        }
        if let Some(error) = self.gave_up {
            return DiscoveryStep::GiveUp(error);
        }
        if let Some(sentinel) = self.waiting {
            return DiscoveryStep::Ask(sentinel);
        }
        if self.sentinels == 0 {
            return self.give_up(DiscoveryError::NoSentinel);
        }
        if now >= self.deadline {
            return self.give_up(self.failure());
        }
        if self.asked_in_round == self.sentinels {
            let last_round = self.round + 1 >= SENTINEL_ROUNDS;
            // Every sentinel that answered said the service is unknown: asking again will
            // not change that within a discovery.
            if last_round || (self.answered && !self.known_service) {
                return self.give_up(self.failure());
            }
            let resume = *self
                .resume_at
                .get_or_insert(now.saturating_add(SENTINEL_ROUND_PAUSE));
            if resume >= self.deadline {
                return self.give_up(self.failure());
            }
            if now < resume {
                return DiscoveryStep::Pause(resume);
            }
            self.resume_at = None;
            self.round += 1;
            self.asked_in_round = 0;
        }
        let sentinel = (self.first + self.asked_in_round) % self.sentinels;
        self.waiting = Some(sentinel);
        DiscoveryStep::Ask(sentinel)
    }

    /// How asking `sentinel` (the one [`Discovery::next`] named) ended. Any other sentinel's
    /// report is ignored.
    pub fn asked(&mut self, sentinel: usize, how: Asked) {
        if self.waiting != Some(sentinel) {
            return;
        }
        self.waiting = None;
        self.asked_in_round += 1;
        match how {
            Asked::NoAnswer | Asked::Refused => {}
            Asked::UnknownService => self.answered = true,
            Asked::PrimaryUnreachable | Asked::NotPrimary => {
                self.answered = true;
                self.known_service = true;
                self.primary_named = true;
            }
            Asked::RoleRefused => {
                self.gave_up = Some(DiscoveryError::RoleRefused);
            }
            Asked::AuthRefused => {
                self.gave_up = Some(DiscoveryError::SentinelAuthRefused);
            }
            Asked::Verified => {
                self.first = sentinel;
                self.done = true;
            }
        }
    }

    /// The sentinel a round starts with: after [`DiscoveryStep::Done`], the one that named
    /// the verified primary (pass it to the next discovery as `preferred`).
    #[must_use]
    pub fn preferred(&self) -> usize {
        self.first
    }

    fn failure(&self) -> DiscoveryError {
        if self.primary_named {
            DiscoveryError::NoPrimary
        } else if self.answered {
            DiscoveryError::UnknownService
        } else {
            DiscoveryError::NoSentinel
        }
    }

    fn give_up(&mut self, error: DiscoveryError) -> DiscoveryStep {
        self.gave_up = Some(error);
        DiscoveryStep::GiveUp(error)
    }
}

/// Watches the replies read from a sentinel-discovered primary for a sign that it is no
/// longer the primary: a `READONLY` error (it was demoted and now replicates the new one).
/// The replies still reach the lock machine, which counts the vote as failed; the driver
/// drops the connection once [`FailoverWatch::tripped`], so the next connect discovers the
/// new primary. Bytes that do not frame trip it too: that connection is out of step anyway.
#[derive(Debug, Clone)]
pub struct FailoverWatch {
    partial: Vec<u8>,
    tripped: bool,
}

impl Default for FailoverWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl FailoverWatch {
    /// A watch over a fresh connection.
    #[must_use]
    pub fn new() -> Self {
        FailoverWatch {
            partial: Vec::new(),
            tripped: false,
        }
    }

    /// Whether the connection must be dropped and the primary discovered again.
    #[must_use]
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// Bytes read from the primary (any split). Whole replies in `bytes` are scanned in
    /// place; only a reply split across reads is copied.
    pub fn observe(&mut self, bytes: &[u8]) {
        if self.tripped {
            return;
        }
        if self.partial.is_empty() {
            let rest = self.scan(bytes);
            self.partial.extend_from_slice(rest);
        } else {
            let mut buf = core::mem::take(&mut self.partial);
            buf.extend_from_slice(bytes);
            let rest = self.scan(&buf).to_vec();
            self.partial = rest;
        }
        if self.partial.len() > SENTINEL_REPLY_CAP {
            self.tripped = true;
            self.partial.clear();
        }
    }

    /// Scans the whole replies at the start of `bytes`; returns what is left.
    fn scan<'b>(&mut self, mut bytes: &'b [u8]) -> &'b [u8] {
        while !bytes.is_empty() {
            match frame_len(bytes) {
                Ok(Some(len)) => {
                    if bytes.starts_with(b"-READONLY") {
                        self.tripped = true;
                    }
                    bytes = &bytes[len..];
                }
                Ok(None) => return bytes,
                Err(_) => {
                    self.tripped = true;
                    return &[];
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn the_command_names_the_service() {
        assert_eq!(
            get_master_addr_command("mymaster"),
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"
        );
    }

    #[test]
    fn sentinel_answers_are_read() {
        let named =
            parse_primary_address(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", Protocol::Resp2);
        assert_eq!(
            named,
            Ok(SentinelAnswer::Primary(Box::new(
                Primary::new("127.0.0.1", 6380).unwrap()
            )))
        );
        assert_eq!(
            parse_primary_address(b"*-1\r\n", Protocol::Resp2),
            Ok(SentinelAnswer::UnknownService)
        );
        assert_eq!(
            parse_primary_address(b"_\r\n", Protocol::Resp3),
            Ok(SentinelAnswer::UnknownService)
        );
        for bad in [
            &b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n"[..],
            b"*2\r\n$0\r\n\r\n$4\r\n6380\r\n",
            b"*1\r\n$9\r\n127.0.0.1\r\n",
            b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n70000\r\n",
            b"+OK\r\n",
        ] {
            assert_eq!(
                parse_primary_address(bad, Protocol::Resp2),
                Err(SentinelReplyError::Malformed)
            );
        }
        assert!(matches!(
            parse_primary_address(b"-ERR unknown command 'SENTINEL'\r\n", Protocol::Resp2),
            Err(SentinelReplyError::Refused(_))
        ));
        assert_eq!(
            parse_primary_address(b"*2\r\n$9\r\n127", Protocol::Resp2),
            Err(SentinelReplyError::Incomplete)
        );
    }

    #[test]
    fn roles_are_read() {
        let master = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
        assert_eq!(parse_role(master, Protocol::Resp2), Ok(Role::Primary));
        let replica = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n";
        assert_eq!(parse_role(replica, Protocol::Resp2), Ok(Role::Replica));
        let sentinel = b"*2\r\n$8\r\nsentinel\r\n*0\r\n";
        assert_eq!(parse_role(sentinel, Protocol::Resp2), Ok(Role::Other));
        assert!(matches!(
            parse_role(b"-NOPERM no\r\n", Protocol::Resp2),
            Err(SentinelReplyError::Refused(_))
        ));
        assert_eq!(
            parse_role(b":1\r\n", Protocol::Resp2),
            Err(SentinelReplyError::Malformed)
        );
    }

    #[test]
    fn discovery_asks_each_sentinel_then_pauses_then_gives_up() {
        let mut d = Discovery::new(3, 1, t(1_000));
        let mut asked = Vec::new();
        let mut now = t(0);
        loop {
            match d.next(now) {
                DiscoveryStep::Ask(i) => {
                    asked.push(i);
                    d.asked(i, Asked::NotPrimary);
                }
                DiscoveryStep::Pause(until) => {
                    assert!(until > now && until < t(1_000));
                    now = until;
                }
                DiscoveryStep::GiveUp(e) => {
                    assert_eq!(e, DiscoveryError::NoPrimary);
                    break;
                }
                DiscoveryStep::Done => panic!("nothing was verified"),
            }
        }
        assert_eq!(asked, [1, 2, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(now, t(200));
    }

    #[test]
    fn discovery_stops_at_the_first_verified_primary_and_remembers_its_sentinel() {
        let mut d = Discovery::new(3, 0, t(1_000));
        assert_eq!(d.next(t(0)), DiscoveryStep::Ask(0));
        d.asked(0, Asked::NoAnswer);
        assert_eq!(d.next(t(0)), DiscoveryStep::Ask(1));
        d.asked(1, Asked::Verified);
        assert_eq!(d.next(t(0)), DiscoveryStep::Done);
        assert_eq!(d.preferred(), 1);
    }

    #[test]
    fn unknown_services_and_silent_sentinels_are_told_apart() {
        let mut d = Discovery::new(2, 0, t(1_000));
        while let DiscoveryStep::Ask(i) = d.next(t(0)) {
            d.asked(i, Asked::UnknownService);
        }
        assert_eq!(
            d.next(t(0)),
            DiscoveryStep::GiveUp(DiscoveryError::UnknownService)
        );
        let mut d = Discovery::new(2, 0, t(300));
        let mut now = t(0);
        loop {
            match d.next(now) {
                DiscoveryStep::Ask(i) => d.asked(i, Asked::NoAnswer),
                DiscoveryStep::Pause(until) => now = until,
                step => {
                    assert_eq!(step, DiscoveryStep::GiveUp(DiscoveryError::NoSentinel));
                    break;
                }
            }
        }
        assert_eq!(
            Discovery::new(0, 0, t(1)).next(t(0)),
            DiscoveryStep::GiveUp(DiscoveryError::NoSentinel)
        );
    }

    #[test]
    fn a_refused_role_stops_discovery() {
        let mut d = Discovery::new(3, 0, t(1_000));
        assert_eq!(d.next(t(0)), DiscoveryStep::Ask(0));
        d.asked(0, Asked::RoleRefused);
        assert_eq!(
            d.next(t(0)),
            DiscoveryStep::GiveUp(DiscoveryError::RoleRefused)
        );
    }

    #[test]
    fn the_watch_trips_on_readonly_in_any_split() {
        let stream: &[u8] =
            b"+OK\r\n:1\r\n-READONLY You can't write against a read only replica.\r\n";
        for split in 0..stream.len() {
            let mut watch = FailoverWatch::new();
            watch.observe(&stream[..split]);
            watch.observe(&stream[split..]);
            assert!(watch.tripped(), "split at {split}");
        }
        let mut watch = FailoverWatch::new();
        watch.observe(b"+OK\r\n$8\r\nREADONLY\r\n-ERR x\r\n");
        assert!(!watch.tripped());
        watch.observe(b"garbage\r\n");
        assert!(watch.tripped());
    }
}
