//! Redis Cluster routing, decided once for every driver: the slot map (which primary owns
//! which hash slot, read from `CLUSTER SHARDS` or, on servers older than 7.0, `CLUSTER
//! SLOTS`), and what a redirect means (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`).
//!
//! A cluster counts as one node of a lock: every key of a lock lives in one slot
//! ([`crate::lock_slot`]), so each request goes to the one primary that owns it. A driver
//! asks [`SlotMap::owner`] where to send, and hands every cluster error reply to
//! [`Redirects::follow`], which says what to do next; it opens sockets and moves bytes, and
//! decides nothing about routing itself.
//!
//! Invariants:
//! - Fixed capacities: at most [`MAX_SHARDS`] primaries with hosts of at most
//!   [`MAX_HOST_LEN`] bytes. A reply naming more is refused whole
//!   ([`SlotMapError::TooManyShards`], [`SlotMapError::HostTooLong`]) rather than read in
//!   part, so a slot is never routed by half a map.
//! - Parsing is total: any bytes give a map or a typed [`SlotMapError`], never a panic.
//! - Redirects are bounded: at most [`MAX_REDIRECTS`] per request, each resend within the
//!   request's deadline, then a typed [`RouteError`]. A `MOVED` updates the map (one slot)
//!   and asks for a refresh; an `ASK` is followed once, with `ASKING`, and changes nothing.

use alloc::boxed::Box;
use core::fmt;

use crate::error::{ProtocolError, ServerError};
use crate::resp::{Protocol, Reply, decode, frame_len};
use crate::slot::SLOTS;
use crate::time::{Duration, Instant};

/// The most primaries a slot map holds. Clusters run a few to a few dozen primaries; a map
/// naming more is refused ([`SlotMapError::TooManyShards`]) and the cluster node counts as
/// unreachable, with that error.
pub const MAX_SHARDS: usize = 64;
/// The longest host name a slot map keeps (a DNS name is at most 253 bytes).
pub const MAX_HOST_LEN: usize = 255;
/// The most redirects one request follows before it fails with
/// [`RouteError::TooManyRedirects`]: a slot moves at most once or twice during a resharding,
/// so more means the cluster disagrees with itself.
pub const MAX_REDIRECTS: u8 = 5;
/// How long to wait before sending again after `TRYAGAIN` (a multi-key request during a
/// slot's migration) or `CLUSTERDOWN` (the cluster is re-forming).
pub const TRY_AGAIN_DELAY: Duration = Duration::from_millis(25);
/// The longest slot-map reply a driver should read: 64 primaries with replicas and long host
/// names fit well inside it.
pub const SLOT_MAP_REPLY_CAP: usize = 256 * 1024;

/// `CLUSTER SHARDS`, encoded: the slot map on Redis/Valkey 7.0 and later.
pub const CLUSTER_SHARDS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
/// `CLUSTER SLOTS`, encoded: the slot map on older servers (deprecated since 7.0).
pub const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
/// `ASKING`, encoded: sent right before a command an [`Redirect::Ask`] redirected.
pub const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// How long the slot-map reply at the front of `buf` is: `Ok(None)` while incomplete, so a
/// driver reads until it has one whole reply (and gives up past [`SLOT_MAP_REPLY_CAP`]).
///
/// # Errors
///
/// [`SlotMapError::Malformed`] when the bytes are not RESP.
pub fn slot_map_reply_len(buf: &[u8]) -> Result<Option<usize>, SlotMapError> {
    Ok(frame_len(buf)?)
}

/// A primary's address: where a slot's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Primary {
    host: heapless::String<MAX_HOST_LEN>,
    port: u16,
}

impl Primary {
    /// A primary at `host:port`; `None` for an empty host or one longer than
    /// [`MAX_HOST_LEN`]. An IPv6 host is given without brackets.
    #[must_use]
    pub fn new(host: &str, port: u16) -> Option<Self> {
        if host.is_empty() {
            return None;
        }
        Some(Primary {
            host: heapless::String::try_from(host).ok()?,
            port,
        })
    }

    /// The host name or IP address (IPv6 without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a slot-map reply was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotMapError {
    /// The server answered with an error (`ERR unknown subcommand` on a server before 7.0
    /// for `CLUSTER SHARDS`: ask `CLUSTER SLOTS`; `ERR This instance has cluster support
    /// disabled`: not a cluster).
    Refused(ServerError),
    /// Not RESP, or not the shape the command answers with.
    Malformed,
    /// More than [`MAX_SHARDS`] primaries.
    TooManyShards,
    /// A host name longer than [`MAX_HOST_LEN`].
    HostTooLong,
    /// The reply has not fully arrived.
    Incomplete,
}

impl fmt::Display for SlotMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(error) => write!(f, "the slot map was refused: {}", error.message),
            Self::Malformed => f.write_str("the slot map reply is not what the command answers"),
            Self::TooManyShards => write!(f, "the cluster has more than {MAX_SHARDS} primaries"),
            Self::HostTooLong => write!(f, "a host name is longer than {MAX_HOST_LEN} bytes"),
            Self::Incomplete => f.write_str("the slot map reply is incomplete"),
        }
    }
}

impl core::error::Error for SlotMapError {}

impl From<ProtocolError> for SlotMapError {
    fn from(_: ProtocolError) -> Self {
        SlotMapError::Malformed
    }
}

/// Which primary owns each hash slot. Slots no primary owns (a cluster still being set up,
/// or a failed primary's) are [`RouteError::Unserved`].
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    primaries: heapless::Vec<Primary, MAX_SHARDS>,
    /// Index into `primaries` per slot, [`UNSERVED`] for none.
    owners: [u8; SLOTS as usize],
}

const UNSERVED: u8 = u8::MAX;
// Owner indices must fit below UNSERVED.
const _: () = assert!(MAX_SHARDS < UNSERVED as usize);

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("primaries", &self.primaries)
            .field("served", &self.served())
            .finish()
    }
}

impl Default for SlotMap {
    fn default() -> Self {
        Self::empty()
    }
}

impl SlotMap {
    /// A map in which no slot is served.
    #[must_use]
    pub const fn empty() -> Self {
        SlotMap {
            primaries: heapless::Vec::new(),
            owners: [UNSERVED; SLOTS as usize],
        }
    }

    /// Reads a `CLUSTER SHARDS` reply (one complete frame in `protocol`). `asked` is the
    /// host the command went to: a node whose endpoint the server does not know (`?`, empty)
    /// is on it. `tls`: route to each primary's `tls-port` where it has one.
    ///
    /// # Errors
    ///
    /// See [`SlotMapError`]; an error reply is [`SlotMapError::Refused`] (ask `CLUSTER
    /// SLOTS` then).
    pub fn from_shards(
        frame: &[u8],
        protocol: Protocol,
        asked: &str,
        tls: bool,
    ) -> Result<Self, SlotMapError> {
        let shards = match decode_whole(frame, protocol)? {
            Reply::Array(shards) => shards,
            _ => return Err(SlotMapError::Malformed),
        };
        let mut map = SlotMap::empty();
        for shard in &shards {
            let Some(slots) = field(shard, b"slots") else {
                return Err(SlotMapError::Malformed);
            };
            let Reply::Array(bounds) = slots else {
                return Err(SlotMapError::Malformed);
            };
            let Some(Reply::Array(nodes)) = field(shard, b"nodes") else {
                return Err(SlotMapError::Malformed);
            };
            // The shard's primary; one that is not online serves nothing yet.
            let primary = nodes.iter().find(|node| {
                matches!(
                    field(node, b"role"),
                    Some(Reply::Bulk(b"master" | b"primary"))
                ) && !matches!(field(node, b"health"), Some(Reply::Bulk(h)) if *h != b"online")
            });
            let Some(primary) = primary else { continue };
            if bounds.is_empty() {
                continue;
            }
            if bounds.len() % 2 != 0 {
                return Err(SlotMapError::Malformed);
            }
            let host = [b"endpoint".as_slice(), b"ip"]
                .into_iter()
                .find_map(|name| match field(primary, name) {
                    Some(Reply::Bulk(h)) if !h.is_empty() && *h != b"?" => Some(*h),
                    _ => None,
                })
                .unwrap_or(asked.as_bytes());
            let port = tls
                .then(|| field(primary, b"tls-port"))
                .flatten()
                .or_else(|| field(primary, b"port"));
            let Some(port) = port.and_then(as_port) else {
                return Err(SlotMapError::Malformed);
            };
            let index = map.intern(host, port)?;
            for pair in bounds.chunks_exact(2) {
                let (Some(first), Some(last)) = (as_slot(&pair[0]), as_slot(&pair[1])) else {
                    return Err(SlotMapError::Malformed);
                };
                map.assign_range(first, last, index)?;
            }
        }
        Ok(map)
    }

    /// Reads a `CLUSTER SLOTS` reply (one complete frame in `protocol`): for each range, its
    /// first and last slot, then the primary (`host`, `port`, …), then replicas. An empty
    /// or `NULL` host is `asked`, the host the command went to. (`CLUSTER SLOTS` names the
    /// plain port only: over TLS a server sets `tls-cluster`/`tls-port` so that it is the
    /// TLS port.)
    ///
    /// # Errors
    ///
    /// See [`SlotMapError`].
    pub fn from_slots(frame: &[u8], protocol: Protocol, asked: &str) -> Result<Self, SlotMapError> {
        let ranges = match decode_whole(frame, protocol)? {
            Reply::Array(ranges) => ranges,
            _ => return Err(SlotMapError::Malformed),
        };
        let mut map = SlotMap::empty();
        for range in &ranges {
            let Reply::Array(items) = range else {
                return Err(SlotMapError::Malformed);
            };
            let [first, last, primary, ..] = items.as_slice() else {
                return Err(SlotMapError::Malformed);
            };
            let (Some(first), Some(last)) = (as_slot(first), as_slot(last)) else {
                return Err(SlotMapError::Malformed);
            };
            let Reply::Array(primary) = primary else {
                return Err(SlotMapError::Malformed);
            };
            let (host, port) = match primary.as_slice() {
                [Reply::Bulk(host), port, ..] => (*host, port),
                [Reply::Nil, port, ..] => (&b""[..], port),
                _ => return Err(SlotMapError::Malformed),
            };
            let host = if host.is_empty() || host == b"?" {
                asked.as_bytes()
            } else {
                host
            };
            let port = as_port(port).ok_or(SlotMapError::Malformed)?;
            let index = map.intern(host, port)?;
            map.assign_range(first, last, index)?;
        }
        Ok(map)
    }

    /// The primary that owns `slot`.
    ///
    /// # Errors
    ///
    /// [`RouteError::Unserved`] when no primary does.
    pub fn owner(&self, slot: u16) -> Result<&Primary, RouteError> {
        self.owners
            .get(usize::from(slot))
            .and_then(|&i| self.primaries.get(usize::from(i)))
            .ok_or(RouteError::Unserved { slot })
    }

    /// Every primary the map names, in the order first seen.
    #[must_use]
    pub fn primaries(&self) -> &[Primary] {
        &self.primaries
    }

    /// How many slots some primary serves (16384 in a healthy cluster).
    #[must_use]
    pub fn served(&self) -> usize {
        self.owners.iter().filter(|&&i| i != UNSERVED).count()
    }

    /// Records that `primary` owns `slot` (a `MOVED`). Returns false when the map cannot
    /// record it (a new primary past [`MAX_SHARDS`], or a slot out of range): the map is then
    /// unchanged and a refresh must replace it.
    pub fn moved(&mut self, slot: u16, primary: &Primary) -> bool {
        if slot >= SLOTS {
            return false;
        }
        match self.intern(primary.host.as_bytes(), primary.port) {
            Ok(index) => self.assign_range(slot, slot, index).is_ok(),
            Err(_) => false,
        }
    }

    /// The index of `host:port`, added when new.
    fn intern(&mut self, host: &[u8], port: u16) -> Result<u8, SlotMapError> {
        let host = core::str::from_utf8(host).map_err(|_| SlotMapError::Malformed)?;
        if host.is_empty() {
            return Err(SlotMapError::Malformed);
        }
        let found = self
            .primaries
            .iter()
            .position(|p| p.port == port && p.host.eq_ignore_ascii_case(host));
        let index = match found {
            Some(index) => index,
            None => {
                let primary = Primary::new(host, port).ok_or(SlotMapError::HostTooLong)?;
                self.primaries
                    .push(primary)
                    .map_err(|_| SlotMapError::TooManyShards)?;
                self.primaries.len() - 1
            }
        };
        u8::try_from(index).map_err(|_| SlotMapError::TooManyShards)
    }

    fn assign_range(&mut self, first: u16, last: u16, index: u8) -> Result<(), SlotMapError> {
        if first > last || last >= SLOTS {
            return Err(SlotMapError::Malformed);
        }
        for owner in &mut self.owners[usize::from(first)..=usize::from(last)] {
            *owner = index;
        }
        Ok(())
    }
}

/// Decodes exactly one complete frame.
fn decode_whole(frame: &[u8], protocol: Protocol) -> Result<Reply<'_>, SlotMapError> {
    match frame_len(frame)? {
        Some(len) if len == frame.len() => {}
        Some(_) => return Err(SlotMapError::Malformed),
        None => return Err(SlotMapError::Incomplete),
    }
    match decode(frame, protocol)? {
        Reply::Error(message) => Err(SlotMapError::Refused(ServerError::from_message(message))),
        reply => Ok(reply),
    }
}

/// The value of `name` in a RESP3 map or a RESP2 flat list of names and values.
fn field<'r, 'a>(reply: &'r Reply<'a>, name: &[u8]) -> Option<&'r Reply<'a>> {
    let named = |key: &Reply<'_>| matches!(key, Reply::Bulk(k) | Reply::Simple(k) if *k == name);
    match reply {
        Reply::Map(pairs) => pairs.iter().find(|(k, _)| named(k)).map(|(_, v)| v),
        Reply::Array(items) => items
            .chunks_exact(2)
            .find(|pair| named(&pair[0]))
            .map(|pair| &pair[1]),
        _ => None,
    }
}

fn as_slot(reply: &Reply<'_>) -> Option<u16> {
    match reply {
        Reply::Integer(n) => u16::try_from(*n).ok().filter(|&s| s < SLOTS),
        _ => None,
    }
}

fn as_port(reply: &Reply<'_>) -> Option<u16> {
    match reply {
        Reply::Integer(n) => u16::try_from(*n).ok().filter(|&p| p != 0),
        _ => None,
    }
}

/// A cluster error reply that tells the client where to go, or to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot lives on another primary now.
    Moved {
        /// The slot.
        slot: u16,
        /// Its owner.
        to: Box<Primary>,
    },
    /// `ASK slot host:port`: the slot is migrating and this key is already on `to`.
    Ask {
        /// The slot.
        slot: u16,
        /// Where to ask, once.
        to: Box<Primary>,
    },
    /// `TRYAGAIN` (a multi-key request mid-migration) or `CLUSTERDOWN`: wait and send again.
    TryAgain,
}

impl Redirect {
    /// Reads an error reply's message (without the `-`). `answered` is the host of the node
    /// that sent it: a redirect with an empty host (`MOVED 3999 :6380`, a server that does not
    /// know its own endpoint) means that host. `None` for any other error, and for a
    /// redirect that does not parse (the error then reaches the operation as it is).
    #[must_use]
    pub fn parse(message: &[u8], answered: &str) -> Option<Self> {
        let mut words = message.split(|&b| b == b' ');
        let kind = words.next()?;
        if kind == b"TRYAGAIN" || kind == b"CLUSTERDOWN" {
            return Some(Redirect::TryAgain);
        }
        if kind != b"MOVED" && kind != b"ASK" {
            return None;
        }
        let slot = core::str::from_utf8(words.next()?)
            .ok()?
            .parse::<u16>()
            .ok()?;
        if slot >= SLOTS {
            return None;
        }
        let address = core::str::from_utf8(words.next()?).ok()?;
        if words.next().is_some() {
            return None;
        }
        let (host, port) = address.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { answered } else { host };
        let to = Box::new(Primary::new(host, port)?);
        Some(if kind == b"MOVED" {
            Redirect::Moved { slot, to }
        } else {
            Redirect::Ask { slot, to }
        })
    }
}

/// What to do after a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextHop {
    /// Send the request again, to `to`, now; with `ASKING` first when `asking`.
    /// `refresh`: the map was stale; read a new one (in the background) before long.
    Resend {
        /// Where.
        to: Box<Primary>,
        /// `ASKING` before each command of the request.
        asking: bool,
        /// Read the slot map again.
        refresh: bool,
    },
    /// Send the request again to the slot's owner at this instant.
    ResendAt(Instant),
    /// Stop: the request fails with this error.
    GiveUp(RouteError),
}

/// Why a cluster request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// No primary serves the slot (a failed primary without a replica to promote, or a
    /// cluster not set up).
    Unserved {
        /// The slot.
        slot: u16,
    },
    /// More than [`MAX_REDIRECTS`] redirects for one request.
    TooManyRedirects,
    /// `TRYAGAIN`/`CLUSTERDOWN` lasted until the request's deadline.
    TryAgainTimedOut,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unserved { slot } => write!(f, "no cluster primary serves hash slot {slot}"),
            Self::TooManyRedirects => write!(
                f,
                "more than {MAX_REDIRECTS} cluster redirects for one request"
            ),
            Self::TryAgainTimedOut => {
                f.write_str("the cluster said TRYAGAIN/CLUSTERDOWN until the request's deadline")
            }
        }
    }
}

impl core::error::Error for RouteError {}

/// The redirect budget of one request to a cluster: how many are left and by when the
/// request must be answered (its request timeout from when it was first sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirects {
    followed: u8,
    deadline: Instant,
}

impl Redirects {
    /// The budget of a request first sent at `now`, to be answered within `request_timeout`.
    #[must_use]
    pub fn new(now: Instant, request_timeout: Duration) -> Self {
        Redirects {
            followed: 0,
            deadline: now.saturating_add(request_timeout),
        }
    }

    /// When the request must be answered by, redirects included.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What to do with `redirect`, received at `now`; a `MOVED` updates `map`.
    pub fn follow(&mut self, redirect: Redirect, map: &mut SlotMap, now: Instant) -> NextHop {
        if self.followed >= MAX_REDIRECTS {
            return NextHop::GiveUp(RouteError::TooManyRedirects);
        }
        self.followed += 1;
        match redirect {
            Redirect::Moved { slot, to } => {
                // Recorded when the map can; the refresh brings the rest of the move either way.
                map.moved(slot, &to);
                NextHop::Resend {
                    to,
                    asking: false,
                    refresh: true,
                }
            }
            Redirect::Ask { to, .. } => NextHop::Resend {
                to,
                asking: true,
                refresh: false,
            },
            Redirect::TryAgain => {
                let at = now.saturating_add(TRY_AGAIN_DELAY);
                if at >= self.deadline {
                    NextHop::GiveUp(RouteError::TryAgainTimedOut)
                } else {
                    NextHop::ResendAt(at)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(host: &str, port: u16) -> Primary {
        Primary::new(host, port).unwrap()
    }

    /// A RESP2 `CLUSTER SHARDS` reply of two shards, the second with a replica and a
    /// primary whose endpoint is unknown.
    const SHARDS_RESP2: &[u8] = b"*2\r\n\
        *4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:200\r\n:299\r\n$5\r\nnodes\r\n*1\r\n\
        *10\r\n$2\r\nid\r\n$3\r\nabc\r\n$4\r\nport\r\n:7000\r\n$8\r\nendpoint\r\n$8\r\n10.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        *4\r\n$5\r\nslots\r\n*2\r\n:100\r\n:199\r\n$5\r\nnodes\r\n*2\r\n\
        *6\r\n$4\r\nport\r\n:7002\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$8\r\nendpoint\r\n$8\r\n10.0.0.9\r\n\
        *8\r\n$4\r\nport\r\n:7001\r\n$8\r\ntls-port\r\n:8001\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n";

    #[test]
    fn shards_map_every_range_to_its_primary() {
        let map = SlotMap::from_shards(SHARDS_RESP2, Protocol::Resp2, "seed", false).unwrap();
        assert_eq!(map.owner(0), Ok(&primary("10.0.0.1", 7000)));
        assert_eq!(map.owner(250), Ok(&primary("10.0.0.1", 7000)));
        assert_eq!(map.owner(150), Ok(&primary("seed", 7001)));
        assert_eq!(map.owner(300), Err(RouteError::Unserved { slot: 300 }));
        assert_eq!(map.served(), 300);
        let tls = SlotMap::from_shards(SHARDS_RESP2, Protocol::Resp2, "seed", true).unwrap();
        assert_eq!(tls.owner(150), Ok(&primary("seed", 8001)));
    }

    #[test]
    fn slots_map_every_range_to_its_primary() {
        let reply = b"*2\r\n\
            *4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*2\r\n$9\r\n127.0.0.1\r\n:7003\r\n\
            *3\r\n:8192\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n";
        let map = SlotMap::from_slots(reply, Protocol::Resp2, "seed").unwrap();
        assert_eq!(map.owner(8191), Ok(&primary("127.0.0.1", 7000)));
        assert_eq!(map.owner(8192), Ok(&primary("seed", 7001)));
        assert_eq!(map.served(), 16384);
    }

    #[test]
    fn errors_and_bad_shapes_are_typed() {
        assert!(matches!(
            SlotMap::from_shards(b"-ERR unknown subcommand 'SHARDS'\r\n", Protocol::Resp2, "h", false),
            Err(SlotMapError::Refused(e)) if e.message.starts_with("ERR unknown subcommand")
        ));
        assert_eq!(
            SlotMap::from_slots(b"*1\r\n*2\r\n:0\r\n", Protocol::Resp2, "h"),
            Err(SlotMapError::Incomplete)
        );
        for bad in [
            &b":1\r\n"[..],
            b"*1\r\n:1\r\n",
            b"*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\na\r\n:1\r\n",
            b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n",
            b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:0\r\n",
        ] {
            assert_eq!(
                SlotMap::from_slots(bad, Protocol::Resp2, "h"),
                Err(SlotMapError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn more_primaries_than_the_capacity_are_refused_whole() {
        let mut reply = alloc::format!("*{}\r\n", MAX_SHARDS + 1);
        for i in 0..=MAX_SHARDS {
            reply += &alloc::format!("*3\r\n:{i}\r\n:{i}\r\n*2\r\n$1\r\nh\r\n:{}\r\n", 1000 + i);
        }
        assert_eq!(
            SlotMap::from_slots(reply.as_bytes(), Protocol::Resp2, "h"),
            Err(SlotMapError::TooManyShards)
        );
    }

    #[test]
    fn redirects_parse_as_redis_sends_them() {
        assert_eq!(
            Redirect::parse(b"MOVED 3999 127.0.0.1:6381", "x"),
            Some(Redirect::Moved {
                slot: 3999,
                to: Box::new(primary("127.0.0.1", 6381))
            })
        );
        assert_eq!(
            Redirect::parse(b"ASK 1 [::1]:7000", "x"),
            Some(Redirect::Ask {
                slot: 1,
                to: Box::new(primary("::1", 7000))
            })
        );
        assert_eq!(
            Redirect::parse(b"MOVED 7 :7001", "node-a"),
            Some(Redirect::Moved {
                slot: 7,
                to: Box::new(primary("node-a", 7001))
            })
        );
        assert_eq!(
            Redirect::parse(b"CLUSTERDOWN The cluster is down", "x"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            Redirect::parse(
                b"TRYAGAIN Multiple keys request during rehashing of slot",
                "x"
            ),
            Some(Redirect::TryAgain)
        );
        for bad in [
            &b"MOVED 16384 h:1"[..],
            b"MOVED 1 h:0",
            b"MOVED 1 h",
            b"MOVED x h:1",
            b"MOVED 1 h:1 extra",
            b"ERR MOVED",
            b"",
        ] {
            assert_eq!(Redirect::parse(bad, "x"), None, "{bad:?}");
        }
    }

    #[test]
    fn moved_updates_the_map_ask_does_not_and_the_budget_ends() {
        let mut map = SlotMap::from_slots(
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\na\r\n:1\r\n",
            Protocol::Resp2,
            "a",
        )
        .unwrap();
        let now = Instant::from_millis(1000);
        let mut budget = Redirects::new(now, Duration::from_millis(1000));
        let ask = Redirect::parse(b"ASK 5 b:2", "a").unwrap();
        assert_eq!(
            budget.follow(ask, &mut map, now),
            NextHop::Resend {
                to: Box::new(primary("b", 2)),
                asking: true,
                refresh: false
            }
        );
        assert_eq!(map.owner(5), Ok(&primary("a", 1)));
        let moved = Redirect::parse(b"MOVED 5 b:2", "a").unwrap();
        assert_eq!(
            budget.follow(moved.clone(), &mut map, now),
            NextHop::Resend {
                to: Box::new(primary("b", 2)),
                asking: false,
                refresh: true
            }
        );
        assert_eq!(map.owner(5), Ok(&primary("b", 2)));
        assert_eq!(map.owner(6), Ok(&primary("a", 1)));
        assert_eq!(
            budget.follow(Redirect::TryAgain, &mut map, now),
            NextHop::ResendAt(now.saturating_add(TRY_AGAIN_DELAY))
        );
        // Near the deadline, waiting would overrun it.
        let late = Instant::from_millis(1990);
        assert_eq!(
            budget.follow(Redirect::TryAgain, &mut map, late),
            NextHop::GiveUp(RouteError::TryAgainTimedOut)
        );
        let _ = budget.follow(moved.clone(), &mut map, now);
        assert_eq!(
            budget.follow(moved, &mut map, now),
            NextHop::GiveUp(RouteError::TooManyRedirects)
        );
    }
}
