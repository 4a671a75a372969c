//! The connection handshake: authenticate, pick the RESP version, learn the server.
//!
//! Sends `HELLO 3 [AUTH user pass] [SETNAME name]` (then `SELECT db`), which answers with the
//! server's name and version. A server without `HELLO` (Redis < 6) or without RESP3 gets the
//! RESP2 path instead: `AUTH`, `CLIENT SETNAME`, `INFO server`, `SELECT`, pipelined. The
//! result, a [`ServerInfo`], tells the lock machines which commands the server has.
//!
//! Same sans-IO shape as the lock machines, for one connection: drain
//! [`Handshake::poll_transmit`], feed [`Handshake::handle_input`], honour
//! [`Handshake::poll_timeout`], read [`Handshake::poll_outcome`].
//!
//! Scripts are not loaded unless asked for ([`HandshakeOptions::load_scripts`]): a connect
//! costs one round trip of one command (`HELLO`), or of the RESP2 pipeline.
//!
//! Invariant: a wrong password or missing ACL permission ends the handshake with an error
//! that says so; the machine never retries authentication.

// Handshake errors carry the server's message; they happen once per connection, so their
// size is not worth a box.
#![allow(clippy::result_large_err)]

use alloc::vec::Vec;
use core::fmt;

use crate::error::{ProtocolError, ServerError, ServerErrorKind};
use crate::resp::{self, BufferTooSmall, Framer, Protocol, Reply, Sink};
use crate::script::SCRIPTS;
use crate::server::{Flavor, ServerInfo, Version};
use crate::time::{Duration, Instant};

/// Reply bytes the handshake buffers (`INFO server` is about 1.5 KB; `HELLO` lists modules).
const HANDSHAKE_REPLY_CAP: usize = 16 * 1024;

/// A user and password for `AUTH` (ACL user, or only a password for `requirepass`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The ACL user; `None` for the default user.
    pub username: Option<Vec<u8>>,
    /// The password.
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    // Never print the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "username",
                &self
                    .username
                    .as_ref()
                    .map(|u| alloc::string::String::from_utf8_lossy(u)),
            )
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the handshake should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeOptions {
    /// Authenticate with these.
    pub credentials: Option<Credentials>,
    /// `CLIENT SETNAME` to this (shows in `CLIENT LIST`).
    pub client_name: Option<Vec<u8>>,
    /// `SELECT` this database when not 0.
    pub database: u32,
    /// Ask for RESP3. Default on.
    pub resp3: bool,
    /// How long the whole handshake may take. Default 5 s.
    pub timeout: Duration,
    /// `SCRIPT LOAD` all of the protocol's scripts ([`crate::SCRIPTS`]) after the handshake.
    /// Refusals (an ACL without `SCRIPT`) are ignored. Default off: the script cache is the
    /// server's, not the connection's, so loading on every connection repeats work, and a
    /// lock that uses no script ([`crate::Scripts::Never`], or the native commands of a
    /// recent server) needs none. Without it, the first `EVALSHA` of a script after the
    /// server started (or flushed its cache) is answered `NOSCRIPT` and goes again as
    /// `EVAL`, which caches it for every later connection: one extra round trip per script
    /// and server, not per connection.
    pub load_scripts: bool,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        HandshakeOptions {
            credentials: None,
            client_name: None,
            database: 0,
            resp3: true,
            timeout: Duration::from_secs(5),
            load_scripts: false,
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server refused the credentials (or needs some and got none).
    Auth(ServerError),
    /// Another error reply (`SELECT` out of range, say).
    Server(ServerError),
    /// A reply that is not RESP or not what the command returns.
    Protocol(ProtocolError),
    /// No complete answer in time.
    Timeout,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Auth(e) => write!(f, "authentication failed: {e}"),
            HandshakeError::Server(e) => write!(f, "handshake failed: {e}"),
            HandshakeError::Protocol(e) => write!(f, "handshake failed: {e}"),
            HandshakeError::Timeout => {
                f.write_str("handshake timed out: is this a Redis server, and reachable?")
            }
        }
    }
}

impl core::error::Error for HandshakeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `HELLO 3 …` (+ `SELECT`) to send.
    SendHello,
    /// Waiting for the `HELLO` reply (and `SELECT`'s when sent).
    AwaitHello,
    /// The RESP2 pipeline to send.
    SendLegacy,
    /// Waiting for its replies.
    AwaitLegacy,
    /// Loading the lock scripts: one `SCRIPT LOAD` per transmit (so a 1 KiB buffer holds
    /// each); how many were sent and how many answered.
    Loading {
        sent: u8,
        answered: u8,
    },
    Done,
}

/// One connection's handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    options: HandshakeOptions,
    step: Step,
    deadline: Instant,
    framer: Framer<HANDSHAKE_REPLY_CAP>,
    /// Replies of the batch in flight already handled.
    seen: u8,
    /// Replies of the RESP2 stale from a `HELLO` that failed, to skip (its `SELECT`).
    skip: u8,
    info: ServerInfo,
    outcome: Option<Result<ServerInfo, HandshakeError>>,
}

impl Handshake {
    /// Starts a handshake at `now`.
    #[must_use]
    pub fn new(options: HandshakeOptions, now: Instant) -> Self {
        let step = if options.resp3 {
            Step::SendHello
        } else {
            Step::SendLegacy
        };
        Handshake {
            deadline: now.saturating_add(options.timeout),
            options,
            step,
            framer: Framer::new(),
            seen: 0,
            skip: 0,
            info: ServerInfo::default(),
            outcome: None,
        }
    }

    /// The next bytes to send, written to the front of `buf` (`Ok(None)`: nothing now).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<usize>, BufferTooSmall> {
        let (len, next) = match self.step {
            Step::SendHello => (
                resp::encode_into(buf, |sink| self.encode_hello(sink))?,
                Step::AwaitHello,
            ),
            Step::SendLegacy => (
                resp::encode_into(buf, |sink| self.encode_legacy(sink))?,
                Step::AwaitLegacy,
            ),
            Step::Loading { sent, answered } => {
                let Some(script) = SCRIPTS.get(usize::from(sent)) else {
                    return Ok(None);
                };
                let len = resp::encode_into(buf, |sink| {
                    sink.command(&[b"SCRIPT", b"LOAD", script.source.as_bytes()]);
                })?;
                (
                    len,
                    Step::Loading {
                        sent: sent.saturating_add(1),
                        answered,
                    },
                )
            }
            _ => return Ok(None),
        };
        self.step = next;
        self.seen = 0;
        Ok(Some(len))
    }

    fn encode_hello(&self, sink: &mut dyn Sink) {
        let mut args = 2;
        if self.options.credentials.is_some() {
            args += 3;
        }
        if self.options.client_name.is_some() {
            args += 2;
        }
        sink.array(args);
        sink.bulk(b"HELLO");
        sink.bulk(b"3");
        if let Some(c) = &self.options.credentials {
            sink.bulk(b"AUTH");
            sink.bulk(c.username.as_deref().unwrap_or(b"default"));
            sink.bulk(&c.password);
        }
        if let Some(name) = &self.options.client_name {
            sink.bulk(b"SETNAME");
            sink.bulk(name);
        }
        self.encode_select(sink);
    }

    fn encode_legacy(&self, sink: &mut dyn Sink) {
        if let Some(c) = &self.options.credentials {
            match &c.username {
                Some(user) => sink.command(&[b"AUTH", user, &c.password]),
                None => sink.command(&[b"AUTH", &c.password]),
            }
        }
        if let Some(name) = &self.options.client_name {
            sink.command(&[b"CLIENT", b"SETNAME", name]);
        }
        sink.command(&[b"INFO", b"server"]);
        self.encode_select(sink);
    }

    fn encode_select(&self, sink: &mut dyn Sink) {
        if self.options.database != 0 {
            sink.array(2);
            sink.bulk(b"SELECT");
            sink.bulk_u64(u64::from(self.options.database));
        }
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, mut bytes: &[u8], _now: Instant) {
        // The framer is lent out while replies borrowed from it are handled.
        let mut framer = core::mem::take(&mut self.framer);
        // Once the handshake is over, what follows on the connection is not its business.
        'read: while self.step != Step::Done {
            let taken = framer.push(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            loop {
                match framer.next_frame_len() {
                    Ok(Some(len)) => {
                        self.on_frame(framer.frame(len));
                        framer.consume(len);
                        if self.step == Step::Done {
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.finish(Err(HandshakeError::Protocol(e)));
                        break 'read;
                    }
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        self.framer = framer;
    }

    fn on_frame(&mut self, frame: &[u8]) {
        let protocol = match self.step {
            Step::AwaitHello => Protocol::Resp3,
            Step::Loading { .. } => self.info.protocol,
            _ => Protocol::Resp2,
        };
        let reply = match resp::decode(frame, protocol) {
            Ok(Reply::Push(_)) => return,
            Ok(reply) => reply,
            Err(e) => return self.finish(Err(HandshakeError::Protocol(e))),
        };
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        if let Step::Loading { sent, answered } = self.step {
            // Loaded, or refused: either way the machines cope.
            let answered = answered.saturating_add(1);
            if answered > sent {
                return self.finish(Err(HandshakeError::Protocol(ProtocolError::Unsolicited)));
            }
            self.step = Step::Loading { sent, answered };
            if usize::from(answered) == SCRIPTS.len() {
                let info = self.info;
                self.finish(Ok(info));
            }
            return;
        }
        let index = self.seen;
        self.seen = self.seen.saturating_add(1);
        let result = match self.step {
            Step::AwaitHello => self.on_hello_reply(index, &reply),
            Step::AwaitLegacy => self.on_legacy_reply(index, &reply),
            _ => Err(HandshakeError::Protocol(ProtocolError::Unsolicited)),
        };
        match result {
            Ok(true) if self.options.load_scripts => {
                self.step = Step::Loading {
                    sent: 0,
                    answered: 0,
                };
            }
            Ok(true) => {
                let info = self.info;
                self.finish(Ok(info));
            }
            Ok(false) => {}
            Err(e) => self.finish(Err(e)),
        }
    }

    /// `Ok(true)`: done.
    fn on_hello_reply(&mut self, index: u8, reply: &Reply<'_>) -> Result<bool, HandshakeError> {
        let selects = self.options.database != 0;
        if index == 0 {
            match reply {
                Reply::Map(pairs) => {
                    self.info = server_from_hello(pairs);
                    return Ok(!selects);
                }
                Reply::Error(message) => {
                    let error = ServerError::from_message(message);
                    return match error.kind {
                        // Redis < 6 (no HELLO) or no RESP3 (NOPROTO): the RESP2 path. The
                        // SELECT pipelined behind HELLO still answers: skip it.
                        ServerErrorKind::UnknownCommand => self.fall_back(selects),
                        _ if message.starts_with(b"NOPROTO") => self.fall_back(selects),
                        ServerErrorKind::NoAuth | ServerErrorKind::NoPerm => {
                            Err(HandshakeError::Auth(error))
                        }
                        _ => Err(HandshakeError::Server(error)),
                    };
                }
                _ => return Err(HandshakeError::Protocol(ProtocolError::UnexpectedReply)),
            }
        }
        check_ok(reply).map(|()| true)
    }

    fn fall_back(&mut self, selects: bool) -> Result<bool, HandshakeError> {
        self.step = Step::SendLegacy;
        self.skip = u8::from(selects);
        Ok(false)
    }

    fn on_legacy_reply(&mut self, index: u8, reply: &Reply<'_>) -> Result<bool, HandshakeError> {
        let mut index = index;
        if self.options.credentials.is_some() {
            if index == 0 {
                return match reply {
                    Reply::Error(message) => {
                        Err(HandshakeError::Auth(ServerError::from_message(message)))
                    }
                    _ => check_ok(reply).map(|()| false),
                };
            }
            index -= 1;
        }
        if self.options.client_name.is_some() {
            if index == 0 {
                // A server that refuses names still locks fine.
                return Ok(false);
            }
            index -= 1;
        }
        if index == 0 {
            let Reply::Bulk(text) = reply else {
                return Err(match reply {
                    Reply::Error(m) => match ServerError::from_message(m) {
                        e if matches!(
                            e.kind,
                            ServerErrorKind::NoAuth | ServerErrorKind::NoPerm
                        ) =>
                        {
                            HandshakeError::Auth(e)
                        }
                        e => HandshakeError::Server(e),
                    },
                    _ => HandshakeError::Protocol(ProtocolError::UnexpectedReply),
                });
            };
            self.info = server_from_info(text);
            return Ok(self.options.database == 0);
        }
        check_ok(reply).map(|()| true)
    }

    fn finish(&mut self, outcome: Result<ServerInfo, HandshakeError>) {
        self.step = Step::Done;
        self.outcome = Some(outcome);
    }

    /// The deadline; call [`Handshake::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.step != Step::Done).then_some(self.deadline)
    }

    /// Time has reached [`Handshake::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.step != Step::Done && now >= self.deadline {
            self.finish(Err(HandshakeError::Timeout));
        }
    }

    /// The result, once.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<ServerInfo, HandshakeError>> {
        self.outcome.take()
    }
}

fn check_ok(reply: &Reply<'_>) -> Result<(), HandshakeError> {
    match reply {
        Reply::Simple(_) => Ok(()),
        Reply::Error(message) => Err(HandshakeError::Server(ServerError::from_message(message))),
        _ => Err(HandshakeError::Protocol(ProtocolError::UnexpectedReply)),
    }
}

fn text_of<'a>(reply: &Reply<'a>) -> Option<&'a [u8]> {
    match reply {
        Reply::Bulk(b) | Reply::Simple(b) => Some(b),
        _ => None,
    }
}

/// Reads `server`, `version` and `proto` from a `HELLO` map.
fn server_from_hello(pairs: &[(Reply<'_>, Reply<'_>)]) -> ServerInfo {
    let mut info = ServerInfo {
        protocol: Protocol::Resp3,
        ..ServerInfo::default()
    };
    for (key, value) in pairs {
        match (text_of(key), text_of(value)) {
            (Some(b"server"), Some(name)) => info.flavor = flavor_of(name),
            (Some(b"version"), Some(v)) => info.version = Version::parse(v).unwrap_or_default(),
            _ => {}
        }
    }
    info
}

/// Reads the version and flavour from `INFO server` text (`key:value` lines).
fn server_from_info(text: &[u8]) -> ServerInfo {
    let mut info = ServerInfo::default();
    let mut redis_version = None;
    let mut valkey_version = None;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        match key {
            b"redis_version" => redis_version = Version::parse(value),
            b"valkey_version" => valkey_version = Version::parse(value),
            b"server_name" => info.flavor = flavor_of(value),
            _ => {}
        }
    }
    if valkey_version.is_some() {
        info.flavor = Flavor::Valkey;
    } else if info.flavor == Flavor::Unknown && redis_version.is_some() {
        info.flavor = Flavor::Redis;
    }
    info.version = valkey_version.or(redis_version).unwrap_or_default();
    info
}

fn flavor_of(name: &[u8]) -> Flavor {
    if name.eq_ignore_ascii_case(b"valkey") {
        Flavor::Valkey
    } else if name.eq_ignore_ascii_case(b"redis") {
        Flavor::Redis
    } else {
        Flavor::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Starts a handshake without the script loading step (tested on its own below).
    fn run(options: HandshakeOptions) -> (Handshake, Vec<u8>) {
        let options = HandshakeOptions {
            load_scripts: false,
            ..options
        };
        let mut h = Handshake::new(options, Instant::ZERO);
        let mut buf = vec![0u8; 1024];
        let len = h.poll_transmit(&mut buf).unwrap().unwrap();
        buf.truncate(len);
        (h, buf)
    }

    fn hello_map(server: &str, version: &str) -> Vec<u8> {
        alloc::format!(
            "%7\r\n$6\r\nserver\r\n${}\r\n{server}\r\n$7\r\nversion\r\n${}\r\n{version}\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
            server.len(),
            version.len()
        )
        .into_bytes()
    }

    #[test]
    fn hello_3_learns_the_server() {
        let options = HandshakeOptions {
            credentials: Some(Credentials {
                username: Some(b"app".to_vec()),
                password: b"s3cret".to_vec(),
            }),
            client_name: Some(b"distlock".to_vec()),
            database: 2,
            ..HandshakeOptions::default()
        };
        let (mut h, sent) = run(options);
        assert_eq!(
            sent,
            b"*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\ns3cret\r\n$7\r\nSETNAME\r\n$8\r\ndistlock\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
        );
        let mut reply = hello_map("valkey", "9.0.1");
        reply.extend_from_slice(b"+OK\r\n");
        // Byte by byte: the framer reassembles.
        for b in &reply {
            assert_eq!(h.poll_outcome(), None);
            h.handle_input(&[*b], Instant::ZERO);
        }
        let info = h.poll_outcome().unwrap().unwrap();
        assert_eq!(
            info,
            ServerInfo {
                protocol: Protocol::Resp3,
                flavor: Flavor::Valkey,
                version: Version::new(9, 0, 1)
            }
        );
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn servers_without_hello_get_the_resp2_pipeline() {
        let options = HandshakeOptions {
            credentials: Some(Credentials {
                username: None,
                password: b"pw".to_vec(),
            }),
            ..HandshakeOptions::default()
        };
        let (mut h, _) = run(options);
        h.handle_input(b"-ERR unknown command 'HELLO'\r\n", Instant::ZERO);
        assert_eq!(h.poll_outcome(), None);
        let mut buf = vec![0u8; 256];
        let len = h.poll_transmit(&mut buf).unwrap().unwrap();
        assert_eq!(
            &buf[..len],
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
        );
        let info = b"# Server\r\nredis_version:5.0.14\r\nredis_mode:standalone\r\n";
        let mut reply = b"+OK\r\n".to_vec();
        reply.extend_from_slice(alloc::format!("${}\r\n", info.len()).as_bytes());
        reply.extend_from_slice(info);
        reply.extend_from_slice(b"\r\n");
        h.handle_input(&reply, Instant::ZERO);
        let info = h.poll_outcome().unwrap().unwrap();
        assert_eq!(
            info,
            ServerInfo {
                protocol: Protocol::Resp2,
                flavor: Flavor::Redis,
                version: Version::new(5, 0, 14)
            }
        );
    }

    #[test]
    fn info_names_valkey() {
        let info = server_from_info(
            b"# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.1\r\n",
        );
        assert_eq!(info.flavor, Flavor::Valkey);
        assert_eq!(info.version, Version::new(8, 1, 1));
        let info = server_from_info(b"garbage\r\n:\r\n");
        assert_eq!(info, ServerInfo::default());
    }

    #[test]
    fn a_wrong_password_is_an_auth_error() {
        let (mut h, _) = run(HandshakeOptions {
            credentials: Some(Credentials {
                username: None,
                password: b"nope".to_vec(),
            }),
            ..HandshakeOptions::default()
        });
        h.handle_input(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            Instant::ZERO,
        );
        match h.poll_outcome() {
            Some(Err(HandshakeError::Auth(e))) => assert_eq!(e.kind, ServerErrorKind::NoAuth),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resp2_servers_that_know_hello_fall_back_on_noproto() {
        let (mut h, _) = run(HandshakeOptions {
            database: 1,
            ..HandshakeOptions::default()
        });
        // HELLO refused; the SELECT pipelined behind it still answers and is skipped.
        h.handle_input(
            b"-NOPROTO sorry, this protocol version is not supported.\r\n+OK\r\n",
            Instant::ZERO,
        );
        let mut buf = vec![0u8; 256];
        let len = h.poll_transmit(&mut buf).unwrap().unwrap();
        assert!(buf[..len].starts_with(b"*2\r\n$4\r\nINFO"));
        h.handle_input(b"$19\r\nredis_version:6.2.0\r\n+OK\r\n", Instant::ZERO);
        let info = h.poll_outcome().unwrap().unwrap();
        assert_eq!(info.version, Version::new(6, 2, 0));
        assert_eq!(info.protocol, Protocol::Resp2);
    }

    #[test]
    fn silence_times_out_and_garbage_is_refused() {
        let (mut h, _) = run(HandshakeOptions::default());
        assert_eq!(h.poll_timeout(), Some(Instant::from_millis(5000)));
        h.handle_timeout(Instant::from_millis(4999));
        assert_eq!(h.poll_outcome(), None);
        h.handle_timeout(Instant::from_millis(5000));
        assert_eq!(h.poll_outcome(), Some(Err(HandshakeError::Timeout)));

        let (mut h, _) = run(HandshakeOptions::default());
        h.handle_input(b"SSH-2.0-OpenSSH_9.2\r\n", Instant::ZERO);
        assert_eq!(
            h.poll_outcome(),
            Some(Err(HandshakeError::Protocol(ProtocolError::Malformed)))
        );
    }

    /// Every command the handshake sends to a Redis 7 that answers `HELLO` and loads
    /// whatever it is asked to load.
    fn commands_sent(options: HandshakeOptions) -> Vec<Vec<u8>> {
        let mut h = Handshake::new(options, Instant::ZERO);
        let mut buf = vec![0u8; 4096];
        let mut sent = Vec::new();
        let mut answered = false;
        while h.poll_outcome().is_none() {
            let len = h
                .poll_transmit(&mut buf)
                .unwrap()
                .expect("something to send");
            let (mut at, mut commands) = (0, 0);
            while at < len {
                // Each command the handshake sends is one RESP array of bulk strings.
                let frame = &buf[at..len];
                let mut framer: Framer<4096> = Framer::new();
                framer.push(frame);
                let n = framer.next_frame_len().unwrap().unwrap();
                sent.push(frame[..n].to_vec());
                at += n;
                commands += 1;
            }
            let replies = if answered {
                "$40\r\n0000000000000000000000000000000000000000\r\n".repeat(commands)
            } else {
                answered = true;
                alloc::string::String::from_utf8(hello_map("redis", "7.0.15")).unwrap()
            };
            h.handle_input(replies.as_bytes(), Instant::ZERO);
        }
        sent
    }

    #[test]
    fn a_connect_sends_one_command_unless_scripts_are_asked_for() {
        let by_default = commands_sent(HandshakeOptions::default());
        assert_eq!(by_default.len(), 1, "HELLO only");
        assert!(by_default[0].starts_with(b"*2\r\n$5\r\nHELLO"));
        let loading = commands_sent(HandshakeOptions {
            load_scripts: true,
            ..HandshakeOptions::default()
        });
        // Before scripts were loaded on demand, every connect cost this: HELLO + 6 loads.
        assert_eq!(loading.len(), 1 + SCRIPTS.len());
        assert!(
            loading[1..]
                .iter()
                .all(|c| c.starts_with(b"*3\r\n$6\r\nSCRIPT"))
        );
    }

    #[test]
    fn the_lock_scripts_are_loaded_after_the_handshake() {
        let mut h = Handshake::new(
            HandshakeOptions {
                load_scripts: true,
                ..HandshakeOptions::default()
            },
            Instant::ZERO,
        );
        let mut buf = vec![0u8; 4096];
        h.poll_transmit(&mut buf).unwrap().unwrap();
        h.handle_input(&hello_map("redis", "7.0.15"), Instant::ZERO);
        assert_eq!(h.poll_outcome(), None, "not before the scripts are loaded");
        let mut loaded = Vec::new();
        while let Some(len) = h.poll_transmit(&mut buf).unwrap() {
            loaded.push(buf[..len].to_vec());
        }
        assert_eq!(loaded.len(), SCRIPTS.len(), "one SCRIPT LOAD per transmit");
        for (bytes, script) in loaded.iter().zip(SCRIPTS) {
            assert!(bytes.ends_with(alloc::format!("{}\r\n", script.source).as_bytes()));
        }
        // One load refused (an ACL without SCRIPT): still a working connection.
        let sha = |s: &crate::script::Script| {
            alloc::format!("$40\r\n{}\r\n", core::str::from_utf8(&s.sha).unwrap())
        };
        let replies: alloc::string::String = SCRIPTS
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 1 {
                    "-NOPERM no\r\n".into()
                } else {
                    sha(s)
                }
            })
            .collect();
        h.handle_input(replies.as_bytes(), Instant::ZERO);
        assert_eq!(
            h.poll_outcome().unwrap().unwrap().version,
            Version::new(7, 0, 15)
        );
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: Some(b"u".to_vec()),
            password: b"hunter2".to_vec(),
        };
        assert!(!alloc::format!("{c:?}").contains("hunter2"));
    }
}
