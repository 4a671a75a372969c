//! Framing and decoding replies.
//!
//! Owns the path from bytes read off a connection to a [`Reply`]:
//!
//! * [`Framer`] reassembles replies from arbitrary read boundaries in a fixed buffer;
//! * [`frame_len`] finds where the first reply ends, without decoding it;
//! * [`decode`] turns exactly one framed reply into a [`Reply`] borrowing from its bytes.
//!
//! Invariants:
//!
//! * [`frame_len`] is iterative, allocation-free and never panics: nesting is tracked in a
//!   fixed array of [`MAX_DEPTH`] counters, every loop step consumes input, and declared
//!   lengths are only compared with the bytes present, never allocated or looped over. A
//!   hostile server can make it return an error, never exhaust memory or the stack.
//! * A [`Framer`] refuses a header that declares more than its buffer can hold as soon as the
//!   header arrives ([`ProtocolError::FrameTooLarge`]), so a 10 GB length costs no timeout.
//! * `redis-protocol` (recursive, allocating) only ever sees a frame [`frame_len`] accepted
//!   whole, so its recursion is bounded by [`MAX_DEPTH`] and its allocations by the frame's
//!   size (which the [`Framer`] bounds).
//! * Streamed RESP3 types are refused ([`ProtocolError::Streamed`]): no lock command returns
//!   one, and refusing them keeps every reply a single bounded frame.

use alloc::vec::Vec;

use redis_protocol::{resp2, resp3};

use super::Protocol;
use crate::error::ProtocolError;

/// How deeply aggregates may nest in a reply. Lock replies nest at most 2 deep (a `HELLO` map
/// holding an array); more is refused as [`ProtocolError::TooDeep`] before any recursive
/// decoder sees it.
///
/// Every aggregate counts, empty or not, including RESP3 attributes (`|`): a top-level array
/// is at depth 1, an array inside it at depth 2.
pub const MAX_DEPTH: usize = 8;

/// One decoded reply, borrowing from the frame's bytes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply<'a> {
    /// `+OK` and other simple strings.
    Simple(&'a [u8]),
    /// `-ERR …` simple errors and RESP3 blob errors: the message without the `-`.
    Error(&'a [u8]),
    /// `:n`.
    Integer(i64),
    /// Bulk strings; RESP3 verbatim strings (payload without the `txt:` format).
    Bulk(&'a [u8]),
    /// `$-1`, `*-1`, `_`.
    Nil,
    /// RESP3 `#t`/`#f`.
    Boolean(bool),
    /// Arrays and RESP3 sets.
    ///
    /// A set keeps wire order when all its members are strings (the decoder hands sets over
    /// as hash sets; string members carry their position, so the order is restored). Sets of
    /// numbers, booleans or nulls come in an unspecified order, with duplicates merged.
    Array(Vec<Reply<'a>>),
    /// RESP3 maps, as key-value pairs.
    ///
    /// The decoder hands maps over as hash maps. When every key is a string (blob, simple,
    /// verbatim, error or big number: the keys Redis sends), the pairs are restored to wire
    /// order, since those keys carry their position. Other keys (numbers, booleans, doubles,
    /// null) come first, in an unspecified order, and duplicates of them are merged.
    Map(Vec<(Reply<'a>, Reply<'a>)>),
    /// RESP3 push frames (out-of-band: they answer no request).
    Push(Vec<Reply<'a>>),
    /// Doubles, big numbers and other types no lock command returns.
    Other,
}

/// Length of the first complete frame in `buf`: `Ok(None)` while incomplete.
///
/// Accepts RESP2 and RESP3 replies; a RESP3 attribute (`|`) belongs to the frame it precedes.
///
/// # Errors
///
/// * [`ProtocolError::Streamed`] for streamed RESP3 types (`$?`, `*?`, `%?`, `~?`, `;`, `.`);
/// * [`ProtocolError::TooDeep`] for aggregates nested deeper than [`MAX_DEPTH`];
/// * [`ProtocolError::Malformed`] for anything else that is not RESP: an unknown type byte, a
///   length that is not decimal digits (only `$` and `*` may be `-1`), a bare CR or LF in a
///   line, a bulk payload not followed by CRLF, a length overflowing 64 bits, a verbatim
///   string too short for its format, a `_` null with content.
///
/// Errors are reported as soon as the bytes that prove them arrive, so a prefix of a bad
/// reply may be `Ok(None)` and the full reply an error; a prefix of a good reply is always
/// `Ok(None)`. A declared length larger than the buffer is simply incomplete.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    scan(buf, None)
}

/// The fewest bytes a frame takes: a type byte and CRLF (`_\r\n`, `+\r\n`).
const MIN_FRAME_LEN: u64 = 3;

/// [`frame_len`]; with `cap`, also [`ProtocolError::FrameTooLarge`] as soon as a header
/// declares more than `cap` bytes can hold: a bulk string whose payload would end past `cap`,
/// or an aggregate with more children than `cap` has room for at [`MIN_FRAME_LEN`] each.
/// Such a frame could never complete in a `cap`-byte buffer, so waiting for its bytes would
/// only sit out a timeout.
fn scan(buf: &[u8], cap: Option<usize>) -> Result<Option<usize>, ProtocolError> {
    // Children each open aggregate still needs. Fixed size: nesting beyond it is refused.
    let mut open = [Open {
        remaining: 0,
        attribute: false,
    }; MAX_DEPTH];
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let Some(header) = read_header(buf, pos)? else {
            return Ok(None);
        };
        match header {
            Header::Scalar { end } => pos = end,
            Header::Blob { end } => {
                if let Some(cap) = cap
                    && end > cap as u64
                {
                    return Err(ProtocolError::FrameTooLarge { capacity: cap });
                }
                match blob_end(buf, end)? {
                    Some(end) => pos = end,
                    None => return Ok(None),
                }
            }
            Header::Aggregate {
                end,
                children,
                attribute,
            } => {
                if let Some(cap) = cap {
                    let least = children
                        .checked_mul(MIN_FRAME_LEN)
                        .and_then(|n| n.checked_add(end as u64));
                    if least.is_none_or(|least| least > cap as u64) {
                        return Err(ProtocolError::FrameTooLarge { capacity: cap });
                    }
                }
                pos = end;
                if depth >= MAX_DEPTH {
                    return Err(ProtocolError::TooDeep);
                }
                if children > 0 {
                    let slot = open.get_mut(depth).ok_or(ProtocolError::TooDeep)?;
                    *slot = Open {
                        remaining: children,
                        attribute,
                    };
                    depth = depth.saturating_add(1);
                    continue;
                }
                if attribute {
                    // An empty attribute: the frame it annotates follows and is the child.
                    continue;
                }
                // An empty aggregate is complete at once.
            }
        }
        // One child frame just ended at `pos`: count it against the open aggregates,
        // closing every one it completes.
        loop {
            let Some(top_index) = depth.checked_sub(1) else {
                return Ok(Some(pos));
            };
            let top = open.get_mut(top_index).ok_or(ProtocolError::Malformed)?;
            top.remaining = top.remaining.saturating_sub(1);
            if top.remaining > 0 {
                break;
            }
            depth = top_index;
            if top.attribute {
                // An attribute's pairs are done; the frame it annotates comes next and is the
                // child that counts for the enclosing aggregate.
                break;
            }
        }
    }
}

/// An aggregate still being scanned.
#[derive(Clone, Copy)]
struct Open {
    /// Child frames still to come.
    remaining: u64,
    /// It is a RESP3 attribute, which annotates the next frame rather than being one.
    attribute: bool,
}

/// What one frame header at a position amounts to.
enum Header {
    /// A whole scalar frame, ending at `end`.
    Scalar { end: usize },
    /// A length-prefixed frame whose payload and CRLF end at `end` (which may lie past the
    /// bytes read so far, or past any buffer).
    Blob { end: u64 },
    /// An aggregate header ending at `end`, opening `children` child frames.
    Aggregate {
        end: usize,
        children: u64,
        attribute: bool,
    },
}

/// Reads the frame header at `pos` (and, for scalars, the whole frame).
fn read_header(buf: &[u8], pos: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let start = pos.checked_add(1).ok_or(ProtocolError::Malformed)?;
    let header = match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' => match line_end(buf, start)? {
            Some((_, end)) => Header::Scalar { end },
            None => return Ok(None),
        },
        b'_' => match line_end(buf, start)? {
            // RESP3 null is exactly `_\r\n`.
            Some((cr, end)) if cr == start => Header::Scalar { end },
            Some(_) => return Err(ProtocolError::Malformed),
            None => return Ok(None),
        },
        b'$' | b'!' | b'=' => {
            if kind == b'$' && buf.get(start) == Some(&b'?') {
                return Err(ProtocolError::Streamed);
            }
            let Some((len, payload)) = read_len(buf, start, kind == b'$')? else {
                return Ok(None);
            };
            match len {
                Len::Null => Header::Scalar { end: payload },
                Len::Count(len) => {
                    if kind == b'=' {
                        check_verbatim(buf, payload, len)?;
                    }
                    // The CRLF must fit too; a length that overflows with it is not RESP.
                    let end = (payload as u64)
                        .checked_add(len)
                        .and_then(|end| end.checked_add(2))
                        .ok_or(ProtocolError::Malformed)?;
                    Header::Blob { end }
                }
            }
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            if matches!(kind, b'*' | b'%' | b'~') && buf.get(start) == Some(&b'?') {
                return Err(ProtocolError::Streamed);
            }
            let Some((len, end)) = read_len(buf, start, kind == b'*')? else {
                return Ok(None);
            };
            match len {
                Len::Null => Header::Scalar { end },
                Len::Count(n) => {
                    // Maps and attributes hold key-value pairs: two frames per entry.
                    let children = if matches!(kind, b'%' | b'|') {
                        n.checked_mul(2).ok_or(ProtocolError::Malformed)?
                    } else {
                        n
                    };
                    Header::Aggregate {
                        end,
                        children,
                        attribute: kind == b'|',
                    }
                }
            }
        }
        b';' | b'.' => return Err(ProtocolError::Streamed),
        _ => return Err(ProtocolError::Malformed),
    };
    Ok(Some(header))
}

/// A length prefix.
enum Len {
    /// `-1`: a RESP2 null.
    Null,
    /// A count of bytes or child frames.
    Count(u64),
}

/// Reads `<digits>\r\n` at `start` (or `-1\r\n` when `null_ok`); returns the length and the
/// position after the CRLF. Checks each byte as it arrives, so junk is refused early.
fn read_len(
    buf: &[u8],
    start: usize,
    null_ok: bool,
) -> Result<Option<(Len, usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    if rest.first() == Some(&b'-') {
        if !null_ok {
            return Err(ProtocolError::Malformed);
        }
        return match expect_prefix(rest, b"-1\r\n")? {
            Some(taken) => Ok(Some((
                Len::Null,
                start.checked_add(taken).ok_or(ProtocolError::Malformed)?,
            ))),
            None => Ok(None),
        };
    }
    let mut n = 0u64;
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b.wrapping_sub(b'0'))))
                    .ok_or(ProtocolError::Malformed)?;
            }
            b'\r' if i > 0 => {
                let after_digits = rest.get(i..).unwrap_or_default();
                return match expect_prefix(after_digits, b"\r\n")? {
                    Some(_) => {
                        let end = start
                            .checked_add(i)
                            .and_then(|p| p.checked_add(2))
                            .ok_or(ProtocolError::Malformed)?;
                        Ok(Some((Len::Count(n), end)))
                    }
                    None => Ok(None),
                };
            }
            _ => return Err(ProtocolError::Malformed),
        }
    }
    Ok(None)
}

/// Whether `bytes` starts with `expected`: `Some(len)` if so, `None` if it is a prefix of it,
/// `Malformed` if they differ where both have bytes.
fn expect_prefix(bytes: &[u8], expected: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let common = bytes.len().min(expected.len());
    if bytes.get(..common) != expected.get(..common) {
        return Err(ProtocolError::Malformed);
    }
    Ok((common == expected.len()).then_some(common))
}

/// Finds the CRLF ending the line that starts at `start`: `(index of CR, index after LF)`.
/// A bare CR or LF inside the line is not RESP.
fn line_end(buf: &[u8], start: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    let Some(offset) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return Ok(None);
    };
    let after = rest.get(offset..).unwrap_or_default();
    match expect_prefix(after, b"\r\n")? {
        Some(_) => {
            let cr = start.checked_add(offset).ok_or(ProtocolError::Malformed)?;
            let end = cr.checked_add(2).ok_or(ProtocolError::Malformed)?;
            Ok(Some((cr, end)))
        }
        None => Ok(None),
    }
}

/// Where a length-prefixed frame ending at `end` (payload and CRLF) ends in `buf`: `None`
/// while incomplete, `Malformed` when the payload is not followed by CRLF.
fn blob_end(buf: &[u8], end: u64) -> Result<Option<usize>, ProtocolError> {
    let Ok(end) = usize::try_from(end) else {
        // Longer than any buffer this machine can hold: incomplete, never allocated.
        return Ok(None);
    };
    let payload_end = end.checked_sub(2).ok_or(ProtocolError::Malformed)?;
    if payload_end > buf.len() {
        return Ok(None);
    }
    let after = buf.get(payload_end..).unwrap_or_default();
    match expect_prefix(after, b"\r\n")? {
        Some(_) => Ok(Some(end)),
        None => Ok(None),
    }
}

/// A verbatim string's payload is `xxx:` then the text, so it is at least 4 bytes long.
fn check_verbatim(buf: &[u8], payload: usize, len: u64) -> Result<(), ProtocolError> {
    if len < 4 {
        return Err(ProtocolError::Malformed);
    }
    let colon = payload.checked_add(3).ok_or(ProtocolError::Malformed)?;
    match buf.get(colon) {
        Some(&b) if b != b':' => Err(ProtocolError::Malformed),
        _ => Ok(()),
    }
}

/// Decodes exactly one complete frame (as delimited by [`frame_len`]).
///
/// The frame is checked with [`frame_len`] first and must span all of `frame`. Then
/// `redis-protocol` decodes it: its RESP2 decoder for [`Protocol::Resp2`], its RESP3 decoder
/// for [`Protocol::Resp3`].
///
/// RESP3 details: attributes are dropped (the frame they annotate is returned); verbatim
/// strings become [`Reply::Bulk`] of the text without its format; sets become
/// [`Reply::Array`]; doubles and big numbers become [`Reply::Other`]. RESP2 nulls (`$-1`,
/// `*-1`) are [`Reply::Nil`] under either protocol, nested ones included.
///
/// # Errors
///
/// * [`frame_len`]'s errors, as they are ([`ProtocolError::TooDeep`],
///   [`ProtocolError::Streamed`], [`ProtocolError::Malformed`]);
/// * [`ProtocolError::Malformed`] if `frame` is incomplete or holds more than one frame, or
///   if `redis-protocol` refuses it. Under RESP2 that includes every RESP3-only type. Under
///   RESP3 it includes a verbatim format other than `txt`/`mkd`, a map key or set member that
///   is an aggregate, an attribute on a `_` null, and a RESP2 null (`$-1`, `*-1`) nested in
///   a frame that also uses RESP3-only types.
pub fn decode(frame: &[u8], protocol: Protocol) -> Result<Reply<'_>, ProtocolError> {
    // Bounds the decoders' recursion and guarantees they see one whole frame.
    if frame_len(frame)? != Some(frame.len()) {
        return Err(ProtocolError::Malformed);
    }
    match protocol {
        Protocol::Resp2 => decode_resp2(frame),
        Protocol::Resp3 => {
            // The RESP3 decoder reads a `-1` length as a streamed prefix and fails.
            if frame == b"$-1\r\n" || frame == b"*-1\r\n" {
                return Ok(Reply::Nil);
            }
            match resp3::decode::complete::decode_range(frame) {
                Ok(Some((decoded, used))) if used == frame.len() => from_resp3(frame, decoded),
                Ok(_) => Err(ProtocolError::Malformed),
                // A RESP2 null nested in an array trips the RESP3 decoder the same way. RESP2
                // types are a subset of RESP3 with the same meaning, so a frame the RESP2
                // decoder accepts is read right by it.
                Err(_) => decode_resp2(frame),
            }
        }
    }
}

fn decode_resp2(frame: &[u8]) -> Result<Reply<'_>, ProtocolError> {
    match resp2::decode::decode_range(frame) {
        Ok(Some((decoded, used))) if used == frame.len() => from_resp2(frame, decoded),
        _ => Err(ProtocolError::Malformed),
    }
}

/// The bytes a decoder's range points at.
fn bytes_at(frame: &[u8], (start, end): (usize, usize)) -> Result<&[u8], ProtocolError> {
    frame.get(start..end).ok_or(ProtocolError::Malformed)
}

/// Converts a RESP2 range frame. Recursion is bounded by [`MAX_DEPTH`] (checked beforehand).
fn from_resp2(frame: &[u8], decoded: resp2::types::RangeFrame) -> Result<Reply<'_>, ProtocolError> {
    use resp2::types::RangeFrame as F;
    Ok(match decoded {
        F::SimpleString(range) => Reply::Simple(bytes_at(frame, range)?),
        F::Error(range) => Reply::Error(bytes_at(frame, range)?),
        F::Integer(n) => Reply::Integer(n),
        F::BulkString(range) => Reply::Bulk(bytes_at(frame, range)?),
        F::Array(items) => Reply::Array(
            items
                .into_iter()
                .map(|item| from_resp2(frame, item))
                .collect::<Result<_, _>>()?,
        ),
        F::Null => Reply::Nil,
    })
}

/// Converts a RESP3 range frame, dropping attributes. Recursion is bounded by [`MAX_DEPTH`].
fn from_resp3(frame: &[u8], decoded: resp3::types::RangeFrame) -> Result<Reply<'_>, ProtocolError> {
    use resp3::types::RangeFrame as F;
    Ok(match decoded {
        // A verbatim string's range already skips the `txt:` format.
        F::BlobString { data, .. } | F::VerbatimString { data, .. } => {
            Reply::Bulk(bytes_at(frame, data)?)
        }
        F::BlobError { data, .. } | F::SimpleError { data, .. } => {
            Reply::Error(bytes_at(frame, data)?)
        }
        F::SimpleString { data, .. } => Reply::Simple(bytes_at(frame, data)?),
        F::Boolean { data, .. } => Reply::Boolean(data),
        F::Null => Reply::Nil,
        F::Number { data, .. } => Reply::Integer(data),
        F::Double { .. } | F::BigNumber { .. } => Reply::Other,
        F::Array { data, .. } => Reply::Array(from_resp3_all(frame, data)?),
        F::Push { data, .. } => Reply::Push(from_resp3_all(frame, data)?),
        F::Set { data, .. } => {
            let mut members = data
                .into_iter()
                .map(|member| Ok((wire_position(&member), from_resp3(frame, member)?)))
                .collect::<Result<Vec<_>, ProtocolError>>()?;
            // Hash order is arbitrary; string members know where they were on the wire.
            members.sort_by_key(|(position, _)| *position);
            Reply::Array(members.into_iter().map(|(_, member)| member).collect())
        }
        F::Map { data, .. } => {
            let mut pairs = data
                .into_iter()
                .map(|(key, value)| {
                    Ok((
                        wire_position(&key),
                        (from_resp3(frame, key)?, from_resp3(frame, value)?),
                    ))
                })
                .collect::<Result<Vec<_>, ProtocolError>>()?;
            pairs.sort_by_key(|(position, _)| *position);
            Reply::Map(pairs.into_iter().map(|(_, pair)| pair).collect())
        }
        // `frame_len` refuses both (`H` is no reply type; chunks are streamed).
        F::Hello { .. } => return Err(ProtocolError::Malformed),
        F::ChunkedString(_) => return Err(ProtocolError::Streamed),
    })
}

fn from_resp3_all(
    frame: &[u8],
    items: Vec<resp3::types::RangeFrame>,
) -> Result<Vec<Reply<'_>>, ProtocolError> {
    items
        .into_iter()
        .map(|item| from_resp3(frame, item))
        .collect()
}

/// Where a hashable RESP3 frame's data starts in the frame, for the string kinds that carry a
/// range; `None` for numbers, booleans, doubles and null, which carry only their value.
fn wire_position(decoded: &resp3::types::RangeFrame) -> Option<usize> {
    use resp3::types::RangeFrame as F;
    match decoded {
        F::BlobString { data, .. }
        | F::BlobError { data, .. }
        | F::SimpleString { data, .. }
        | F::SimpleError { data, .. }
        | F::BigNumber { data, .. }
        | F::VerbatimString { data, .. } => Some(data.0),
        _ => None,
    }
}

/// Per-connection reassembly of replies from arbitrary read boundaries, in `CAP` bytes.
///
/// Invariant: holds at most `CAP` bytes; a reply longer than that is reported as
/// [`ProtocolError::FrameTooLarge`] rather than buffered without bound.
#[derive(Debug, Clone)]
pub struct Framer<const CAP: usize> {
    buf: heapless::Vec<u8, CAP>,
}

impl<const CAP: usize> Default for Framer<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> Framer<CAP> {
    /// An empty framer.
    #[must_use]
    pub const fn new() -> Self {
        Framer {
            buf: heapless::Vec::new(),
        }
    }

    /// Appends as much of `bytes` as fits; returns how many bytes were taken.
    ///
    /// The caller keeps the rest and pushes it again after consuming a frame.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = CAP.saturating_sub(self.buf.len());
        let taken = bytes.get(..room).unwrap_or(bytes);
        match self.buf.extend_from_slice(taken) {
            Ok(()) => taken.len(),
            // Unreachable: `taken` fits in the room left.
            Err(_) => 0,
        }
    }

    /// The length of the complete frame at the front, if there is one.
    /// `Err(FrameTooLarge)` when the frame cannot fit the buffer: as soon as a header
    /// declares more than `CAP` bytes (a 10 GB bulk string, a 2^31-element array), else when
    /// the buffer is full without holding a complete frame.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::FrameTooLarge`] as above; otherwise [`frame_len`]'s errors, which take
    /// precedence over a full buffer. After any error the connection's byte stream can no
    /// longer be trusted, so the caller should drop the connection and [`Framer::clear`].
    pub fn next_frame_len(&self) -> Result<Option<usize>, ProtocolError> {
        match scan(&self.buf, Some(CAP))? {
            None if self.buf.len() >= CAP => Err(ProtocolError::FrameTooLarge { capacity: CAP }),
            found => Ok(found),
        }
    }

    /// The first `len` buffered bytes (a frame whose length [`Framer::next_frame_len`] gave).
    ///
    /// Empty if fewer than `len` bytes are buffered.
    #[must_use]
    pub fn frame(&self, len: usize) -> &[u8] {
        self.buf.get(..len).unwrap_or_default()
    }

    /// Drops the first `len` buffered bytes (all of them if fewer are buffered).
    pub fn consume(&mut self, len: usize) {
        let len = len.min(self.buf.len());
        let kept = self.buf.len().saturating_sub(len);
        // `len <= self.buf.len()`, so the range is in bounds.
        self.buf.copy_within(len.., 0);
        self.buf.truncate(kept);
    }

    /// Drops everything buffered (the connection was reset).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes buffered.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use alloc::{
        string::{String, ToString as _},
        vec,
        vec::Vec,
    };

    use proptest::{collection::vec as vec_of, prelude::*};
    use redis_protocol::{
        resp2::types::{OwnedFrame as Owned2, Resp2Frame as _},
        resp3::types::{FrameMap, OwnedFrame as Owned3, Resp3Frame as _, VerbatimStringFormat},
    };

    use super::*;

    // ---- frame_len ----

    /// One of every reply type, each exactly one frame.
    const FRAMES: &[&[u8]] = &[
        b"+OK\r\n",
        b"+\r\n",
        b"-ERR unknown command\r\n",
        b":0\r\n",
        b":-9223372036854775808\r\n",
        b"$5\r\nhello\r\n",
        b"$0\r\n\r\n",
        b"$4\r\na\r\nb\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n:1\r\n$1\r\nx\r\n",
        b"*2\r\n*1\r\n+a\r\n*0\r\n",
        b"_\r\n",
        b",3.14\r\n",
        b",inf\r\n",
        b"#t\r\n",
        b"#f\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"%0\r\n",
        b"~3\r\n+a\r\n+b\r\n+c\r\n",
        b">3\r\n+message\r\n+chan\r\n$5\r\nhello\r\n",
        b"|1\r\n+ttl\r\n:3600\r\n+OK\r\n",
        b"|0\r\n:1\r\n",
        b"|1\r\n+a\r\n+b\r\n*2\r\n:1\r\n:2\r\n",
        b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",
        b"%1\r\n+proto\r\n*2\r\n:2\r\n:3\r\n",
    ];

    #[test]
    fn frame_len_of_every_type() {
        for frame in FRAMES {
            assert_eq!(frame_len(frame), Ok(Some(frame.len())), "{}", show(frame));
        }
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        for frame in FRAMES {
            for cut in 0..frame.len() {
                assert_eq!(
                    frame_len(&frame[..cut]),
                    Ok(None),
                    "{} cut at {cut}",
                    show(frame)
                );
            }
        }
    }

    #[test]
    fn coalesced_frames_yield_the_first() {
        for first in FRAMES {
            for second in FRAMES {
                let both = [*first, *second].concat();
                assert_eq!(frame_len(&both), Ok(Some(first.len())), "{}", show(&both));
                assert_eq!(frame_len(&both[first.len()..]), Ok(Some(second.len())));
            }
        }
        // A partial second frame does not disturb the first.
        assert_eq!(frame_len(b"+OK\r\n$5\r\nhel"), Ok(Some(5)));
    }

    #[test]
    fn nulls_are_whole_frames() {
        assert_eq!(frame_len(b"$-1\r\n"), Ok(Some(5)));
        assert_eq!(frame_len(b"*-1\r\n"), Ok(Some(5)));
        assert_eq!(frame_len(b"_\r\n"), Ok(Some(3)));
        assert_eq!(frame_len(b"*3\r\n$-1\r\n*-1\r\n_\r\n"), Ok(Some(17)));
    }

    #[test]
    fn nested_arrays_and_maps_count_children() {
        let nested = b"*2\r\n*2\r\n*1\r\n:1\r\n:2\r\n*0\r\n+tail\r\n";
        assert_eq!(frame_len(nested), Ok(Some(nested.len() - 7)));
        // A map needs two frames per entry: one key-value pair short is incomplete.
        assert_eq!(frame_len(b"%2\r\n+a\r\n:1\r\n+b\r\n"), Ok(None));
        assert_eq!(
            frame_len(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n+next\r\n"),
            Ok(Some(20))
        );
    }

    #[test]
    fn attribute_belongs_to_the_frame_it_annotates() {
        // The attribute alone is not a frame.
        assert_eq!(frame_len(b"|1\r\n+key\r\n+value\r\n"), Ok(None));
        let with_reply = b"|1\r\n+key\r\n+value\r\n:42\r\n";
        assert_eq!(frame_len(with_reply), Ok(Some(with_reply.len())));
        // Nested: the attribute and its frame are one child of the array.
        let nested = b"*2\r\n|1\r\n+k\r\n+v\r\n+a\r\n+b\r\n";
        assert_eq!(frame_len(nested), Ok(Some(nested.len())));
        assert_eq!(frame_len(&nested[..nested.len() - 4]), Ok(None));
        // An attribute whose value is an aggregate, then an aggregate reply.
        let deep = b"|1\r\n+k\r\n*1\r\n:1\r\n*1\r\n:2\r\n";
        assert_eq!(frame_len(deep), Ok(Some(deep.len())));
    }

    #[test]
    fn streamed_types_are_refused() {
        for streamed in [
            &b"$?\r\n;4\r\nHell\r\n;0\r\n"[..],
            b"$?",
            b"*?\r\n:1\r\n.\r\n",
            b"%?\r\n",
            b"~?\r\n",
            b";4\r\nHell\r\n",
            b".\r\n",
            b"*2\r\n:1\r\n$?\r\n",
        ] {
            assert_eq!(
                frame_len(streamed),
                Err(ProtocolError::Streamed),
                "{}",
                show(streamed)
            );
        }
    }

    /// `levels` arrays of one element each around `:1`.
    fn nested(levels: usize) -> Vec<u8> {
        let mut out = b"*1\r\n".repeat(levels);
        out.extend_from_slice(b":1\r\n");
        out
    }

    #[test]
    fn nesting_beyond_max_depth_is_refused() {
        let ok = nested(MAX_DEPTH);
        assert_eq!(frame_len(&ok), Ok(Some(ok.len())));
        assert_eq!(
            frame_len(&nested(MAX_DEPTH + 1)),
            Err(ProtocolError::TooDeep)
        );
        // Refused as soon as the header arrives, before the frame is complete.
        assert_eq!(
            frame_len(&b"*1\r\n".repeat(MAX_DEPTH + 1)),
            Err(ProtocolError::TooDeep)
        );
        // An empty aggregate at the next level counts too.
        let mut empty = b"*1\r\n".repeat(MAX_DEPTH);
        empty.extend_from_slice(b"*0\r\n");
        assert_eq!(frame_len(&empty), Err(ProtocolError::TooDeep));
        // So does an attribute.
        let mut attr = b"*1\r\n".repeat(MAX_DEPTH);
        attr.extend_from_slice(b"|1\r\n+k\r\n+v\r\n:1\r\n");
        assert_eq!(frame_len(&attr), Err(ProtocolError::TooDeep));
        // A very deep input costs nothing but the scan.
        assert_eq!(frame_len(&nested(100_000)), Err(ProtocolError::TooDeep));
        // Siblings do not add up: depth is nesting, not count.
        let wide = [
            &b"*3\r\n"[..],
            &nested(MAX_DEPTH - 1),
            &nested(MAX_DEPTH - 1),
            &nested(MAX_DEPTH - 1),
        ]
        .concat();
        assert_eq!(frame_len(&wide), Ok(Some(wide.len())));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"x",
            b"\r\n",
            b"$abc\r\n",
            b"$\r\n",
            b"$1x",
            b"$-2\r\n",
            b"$-1x",
            b"$-\r",
            b"*-2\r\n",
            b"%-1\r\n",
            b"~-1\r\n",
            b">-1\r\n",
            b"|-1\r\n",
            b"!-1\r\n",
            b"=-1\r\n",
            b"$+5\r\nhello\r\n",
            b"$ 5\r\nhello\r\n",
            b"$5\r\nhelloXX",
            b"$5\r\nhello\rX",
            b"$5\r\nhello\n",
            b"$5\rX",
            b"+OK\rX",
            b"+OK\n",
            b"+O\nK\r\n",
            b":1\n",
            b"_x\r\n",
            b"=3\r\ntxt\r\n",
            b"=8\r\ntxt;abcd\r\n",
            b"*1\r\nQ",
            b"$99999999999999999999\r\n",
            b"*99999999999999999999\r\n",
            b"%9223372036854775808\r\n",
            b"$18446744073709551615\r\n",
        ] {
            assert_eq!(
                frame_len(bad),
                Err(ProtocolError::Malformed),
                "{}",
                show(bad)
            );
        }
    }

    #[test]
    fn huge_declared_lengths_are_just_incomplete() {
        for huge in [
            &b"$999999999999\r\n"[..],
            b"$999999999999\r\nabc",
            b"*4000000000\r\n",
            b"*4000000000\r\n:1\r\n:2\r\n",
            b"%4000000000\r\n+a\r\n",
            b"~18446744073709551615\r\n",
            b"!4294967296\r\n",
            b"=4294967296\r\ntxt:",
            b"|9223372036854775807\r\n",
            b"*1\r\n$18446744073709551000\r\n",
        ] {
            assert_eq!(frame_len(huge), Ok(None), "{}", show(huge));
        }
    }

    #[test]
    fn empty_input_is_incomplete() {
        assert_eq!(frame_len(b""), Ok(None));
    }

    // ---- decode ----

    fn d2(frame: &[u8]) -> Result<Reply<'_>, ProtocolError> {
        decode(frame, Protocol::Resp2)
    }

    fn d3(frame: &[u8]) -> Result<Reply<'_>, ProtocolError> {
        decode(frame, Protocol::Resp3)
    }

    #[test]
    fn decodes_resp2_types_under_both_protocols() {
        let cases: &[(&[u8], Reply<'_>)] = &[
            (b"+OK\r\n", Reply::Simple(b"OK")),
            (b"-ERR no\r\n", Reply::Error(b"ERR no")),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$5\r\nhe\r\no\r\n", Reply::Bulk(b"he\r\no")),
            (b"$0\r\n\r\n", Reply::Bulk(b"")),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (b"*0\r\n", Reply::Array(vec![])),
            (
                b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*-1\r\n",
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Array(vec![Reply::Bulk(b"a"), Reply::Nil]),
                    Reply::Nil,
                ]),
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(d2(frame).as_ref(), Ok(want), "RESP2 {}", show(frame));
            assert_eq!(d3(frame).as_ref(), Ok(want), "RESP3 {}", show(frame));
        }
    }

    #[test]
    fn decodes_resp3_types() {
        let cases: &[(&[u8], Reply<'_>)] = &[
            (b"_\r\n", Reply::Nil),
            (b"#t\r\n", Reply::Boolean(true)),
            (b"#f\r\n", Reply::Boolean(false)),
            (b",1.5\r\n", Reply::Other),
            (b"(12345678901234567890123\r\n", Reply::Other),
            (b"!11\r\nERR a\r\nbcde\r\n", Reply::Error(b"ERR a\r\nbcde")),
            (b"=15\r\ntxt:Some string\r\n", Reply::Bulk(b"Some string")),
            (b"=4\r\nmkd:\r\n", Reply::Bulk(b"")),
            (
                b"~2\r\n+a\r\n$1\r\nb\r\n",
                Reply::Array(vec![Reply::Simple(b"a"), Reply::Bulk(b"b")]),
            ),
            (
                b">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$2\r\nhi\r\n",
                Reply::Push(vec![
                    Reply::Bulk(b"message"),
                    Reply::Bulk(b"chan"),
                    Reply::Bulk(b"hi"),
                ]),
            ),
            (
                b"*2\r\n_\r\n#t\r\n",
                Reply::Array(vec![Reply::Nil, Reply::Boolean(true)]),
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(d3(frame).as_ref(), Ok(want), "{}", show(frame));
        }
    }

    #[test]
    fn map_keeps_wire_order_for_string_keys() {
        let hello = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n\
            $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
            $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        let want = Reply::Map(vec![
            (Reply::Bulk(b"server"), Reply::Bulk(b"redis")),
            (Reply::Bulk(b"version"), Reply::Bulk(b"7.2.4")),
            (Reply::Bulk(b"proto"), Reply::Integer(3)),
            (Reply::Bulk(b"id"), Reply::Integer(5)),
            (Reply::Bulk(b"mode"), Reply::Bulk(b"standalone")),
            (Reply::Bulk(b"role"), Reply::Bulk(b"master")),
            (Reply::Bulk(b"modules"), Reply::Array(vec![])),
        ]);
        assert_eq!(d3(hello), Ok(want));
        // Equal string keys at different places stay distinct.
        assert_eq!(
            d3(b"%2\r\n+k\r\n:1\r\n+k\r\n:2\r\n"),
            Ok(Reply::Map(vec![
                (Reply::Simple(b"k"), Reply::Integer(1)),
                (Reply::Simple(b"k"), Reply::Integer(2))
            ]))
        );
        // Value-only keys merge (the decoder's hash map); the earliest one wins.
        assert_eq!(
            d3(b"%2\r\n:7\r\n+a\r\n:7\r\n+b\r\n"),
            Ok(Reply::Map(vec![(Reply::Integer(7), Reply::Simple(b"a"))]))
        );
    }

    #[test]
    fn attributes_are_dropped() {
        assert_eq!(
            d3(b"|1\r\n+ttl\r\n:3600\r\n+OK\r\n"),
            Ok(Reply::Simple(b"OK"))
        );
        assert_eq!(d3(b"|0\r\n:1\r\n"), Ok(Reply::Integer(1)));
        assert_eq!(
            d3(b"*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n"),
            Ok(Reply::Array(vec![Reply::Integer(1), Reply::Integer(2)]))
        );
        // The decoder refuses an attribute on a null.
        assert_eq!(
            d3(b"|1\r\n+k\r\n+v\r\n_\r\n"),
            Err(ProtocolError::Malformed)
        );
    }

    #[test]
    fn resp3_types_are_malformed_under_resp2() {
        for frame in [
            &b"_\r\n"[..],
            b"#t\r\n",
            b"%0\r\n",
            b"~0\r\n",
            b">0\r\n",
            b"|0\r\n:1\r\n",
            b"*1\r\n_\r\n",
        ] {
            assert_eq!(d2(frame), Err(ProtocolError::Malformed), "{}", show(frame));
        }
    }

    #[test]
    fn decode_refuses_what_is_not_one_whole_frame() {
        assert_eq!(d2(b""), Err(ProtocolError::Malformed));
        assert_eq!(d2(b"+OK\r"), Err(ProtocolError::Malformed));
        assert_eq!(d3(b"+OK\r\n+OK\r\n"), Err(ProtocolError::Malformed));
        assert_eq!(d3(b"$3\r\nab\r\n"), Err(ProtocolError::Malformed));
        assert_eq!(d3(&nested(MAX_DEPTH + 1)), Err(ProtocolError::TooDeep));
        assert_eq!(d3(&nested(100_000)), Err(ProtocolError::TooDeep));
        assert_eq!(d3(b"$?\r\n;1\r\na\r\n;0\r\n"), Err(ProtocolError::Streamed));
        assert_eq!(d3(b"HELLO 3\r\n"), Err(ProtocolError::Malformed));
    }

    #[test]
    fn decode_refuses_bad_contents() {
        for frame in [
            &b":abc\r\n"[..],
            b":99999999999999999999\r\n",
            b"#x\r\n",
            b",abc\r\n",
            b"=7\r\nfoo:bar\r\n",
            b"%1\r\n*0\r\n:1\r\n",
            b"~1\r\n*0\r\n",
        ] {
            assert_eq!(d3(frame), Err(ProtocolError::Malformed), "{}", show(frame));
        }
        assert_eq!(d2(b":1.5\r\n"), Err(ProtocolError::Malformed));
    }

    // ---- Framer ----

    #[test]
    fn framer_reassembles_split_and_coalesced_frames() {
        let stream = b"+OK\r\n$5\r\nhello\r\n*2\r\n:1\r\n:2\r\n";
        let want: [&[u8]; 3] = [b"+OK\r\n", b"$5\r\nhello\r\n", b"*2\r\n:1\r\n:2\r\n"];
        for chunk in 1..=stream.len() {
            let mut framer = Framer::<64>::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                assert_eq!(framer.push(piece), piece.len());
                while let Some(len) = framer.next_frame_len().unwrap() {
                    got.push(framer.frame(len).to_vec());
                    framer.consume(len);
                }
            }
            assert_eq!(got, want, "chunk size {chunk}");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn framer_reports_a_frame_larger_than_its_buffer() {
        let mut framer = Framer::<8>::new();
        assert_eq!(framer.push(b"$20\r\n0123456789"), 8);
        assert_eq!(framer.buffered(), 8);
        assert_eq!(
            framer.next_frame_len(),
            Err(ProtocolError::FrameTooLarge { capacity: 8 })
        );
        // Room left for what the header declares: just incomplete.
        framer.clear();
        assert_eq!(framer.push(b"$1\r\n"), 4);
        assert_eq!(framer.next_frame_len(), Ok(None));
        // A header declaring more than the buffer holds: refused at once, room or not.
        framer.clear();
        assert_eq!(framer.push(b"$20\r\n"), 5);
        assert_eq!(
            framer.next_frame_len(),
            Err(ProtocolError::FrameTooLarge { capacity: 8 })
        );
        // Full, but holding a complete frame: the frame comes first.
        let mut framer = Framer::<8>::new();
        assert_eq!(framer.push(b"+OK\r\n+OK\r\n"), 8);
        assert_eq!(framer.next_frame_len(), Ok(Some(5)));
        // Protocol errors win over fullness.
        let mut framer = Framer::<4>::new();
        framer.push(b"junk");
        assert_eq!(framer.next_frame_len(), Err(ProtocolError::Malformed));
    }

    #[test]
    fn framer_refuses_declared_lengths_beyond_its_buffer_at_once() {
        // What `huge_declared_lengths_are_just_incomplete` lets `frame_len` wait for, a
        // framer knows can never fit: refused from the header alone, nothing allocated.
        for huge in [
            &b"$9999999999\r\n"[..],
            b"$999999999999\r\nabc",
            b"*2147483647\r\n",
            b"*4000000000\r\n:1\r\n:2\r\n",
            b"%4611686018427387903\r\n",
            b"%9223372036854775807\r\n",
            b"~18446744073709551615\r\n",
            b"!4294967296\r\n",
            b"=4294967296\r\ntxt:",
            b"|9223372036854775807\r\n",
            b">1000\r\n",
            b"*1\r\n$18446744073709551000\r\n",
            b"*1\r\n*1\r\n$513\r\n",
        ] {
            let mut framer = Framer::<512>::new();
            assert_eq!(framer.push(huge), huge.len());
            assert_eq!(
                framer.next_frame_len(),
                Err(ProtocolError::FrameTooLarge { capacity: 512 }),
                "{}",
                show(huge)
            );
        }
        // Exactly what fits is waited for.
        let mut framer = Framer::<10>::new();
        framer.push(b"$3\r\n");
        assert_eq!(framer.next_frame_len(), Ok(None));
        framer.push(b"abc\r\n");
        assert_eq!(framer.next_frame_len(), Ok(Some(9)));
        let mut framer = Framer::<10>::new();
        framer.push(b"*2\r\n");
        assert_eq!(framer.next_frame_len(), Ok(None));
        framer.push(b"_\r\n_\r\n");
        assert_eq!(framer.next_frame_len(), Ok(Some(10)));
        let mut framer = Framer::<10>::new();
        framer.push(b"*3\r\n");
        assert_eq!(
            framer.next_frame_len(),
            Err(ProtocolError::FrameTooLarge { capacity: 10 })
        );
        // Malformed input is still reported as such.
        let mut framer = Framer::<10>::new();
        framer.push(b"$3\r\nabcd");
        assert_eq!(framer.next_frame_len(), Err(ProtocolError::Malformed));
    }

    #[test]
    fn framer_push_takes_only_what_fits() {
        let mut framer = Framer::<6>::new();
        let input = b"+OK\r\n:1\r\n";
        assert_eq!(framer.push(input), 6);
        assert_eq!(framer.push(&input[6..]), 0);
        assert_eq!(framer.next_frame_len(), Ok(Some(5)));
        framer.consume(5);
        assert_eq!(framer.frame(1), b":");
        assert_eq!(framer.push(&input[6..]), 3);
        assert_eq!(framer.next_frame_len(), Ok(Some(4)));
        assert_eq!(framer.frame(4), b":1\r\n");
    }

    #[test]
    fn framer_frame_and_consume_clamp() {
        let mut framer = Framer::<16>::default();
        framer.push(b"+OK\r\n");
        assert_eq!(framer.frame(99), b"");
        assert_eq!(framer.frame(0), b"");
        framer.consume(99);
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.next_frame_len(), Ok(None));
        let mut empty = Framer::<0>::new();
        assert_eq!(empty.push(b"+OK\r\n"), 0);
        assert_eq!(
            empty.next_frame_len(),
            Err(ProtocolError::FrameTooLarge { capacity: 0 })
        );
    }

    // ---- property tests ----

    /// Bytes a simple string or error may hold.
    fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
        vec_of(
            any::<u8>().prop_filter("no CR or LF", |b| *b != b'\r' && *b != b'\n'),
            0..12,
        )
    }

    fn resp2_frame() -> impl Strategy<Value = Owned2> {
        let leaf = prop_oneof![
            line_bytes().prop_map(Owned2::SimpleString),
            "[ -~]{0,12}".prop_map(Owned2::Error),
            any::<i64>().prop_map(Owned2::Integer),
            vec_of(any::<u8>(), 0..16).prop_map(Owned2::BulkString),
            Just(Owned2::Null),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            vec_of(inner, 0..4).prop_map(Owned2::Array)
        })
    }

    /// RESP3 scalars that may be map keys or set members.
    fn resp3_hashable() -> impl Strategy<Value = Owned3> {
        prop_oneof![
            vec_of(any::<u8>(), 0..16).prop_map(|data| Owned3::BlobString {
                data,
                attributes: None
            }),
            vec_of(any::<u8>(), 0..16).prop_map(|data| Owned3::BlobError {
                data,
                attributes: None
            }),
            line_bytes().prop_map(|data| Owned3::SimpleString {
                data,
                attributes: None
            }),
            "[ -~]{0,12}".prop_map(|data| Owned3::SimpleError {
                data,
                attributes: None
            }),
            any::<bool>().prop_map(|data| Owned3::Boolean {
                data,
                attributes: None
            }),
            Just(Owned3::Null),
            any::<i64>().prop_map(|data| Owned3::Number {
                data,
                attributes: None
            }),
            any::<f64>().prop_map(|data| Owned3::Double {
                data,
                attributes: None
            }),
            "-?[0-9]{1,40}".prop_map(|s| Owned3::BigNumber {
                data: s.into_bytes(),
                attributes: None
            }),
            (
                vec_of(any::<u8>(), 0..16),
                prop_oneof![
                    Just(VerbatimStringFormat::Text),
                    Just(VerbatimStringFormat::Markdown)
                ]
            )
                .prop_map(|(data, format)| Owned3::VerbatimString {
                    data,
                    format,
                    attributes: None
                }),
        ]
    }

    /// RESP3 strings, which keep their wire position through the decoder's hash maps.
    fn resp3_string() -> impl Strategy<Value = Owned3> {
        prop_oneof![
            vec_of(any::<u8>(), 0..16).prop_map(|data| Owned3::BlobString {
                data,
                attributes: None
            }),
            line_bytes().prop_map(|data| Owned3::SimpleString {
                data,
                attributes: None
            }),
        ]
    }

    fn attributes() -> impl Strategy<Value = Option<FrameMap<Owned3, Owned3>>> {
        proptest::option::weighted(0.2, vec_of((resp3_hashable(), resp3_hashable()), 0..3))
            .prop_map(|pairs| pairs.map(|pairs| pairs.into_iter().collect()))
    }

    /// Puts `attrs` on `frame` (a null cannot carry attributes).
    fn with_attributes(mut frame: Owned3, attrs: Option<FrameMap<Owned3, Owned3>>) -> Owned3 {
        match &mut frame {
            Owned3::BlobString { attributes, .. }
            | Owned3::BlobError { attributes, .. }
            | Owned3::SimpleString { attributes, .. }
            | Owned3::SimpleError { attributes, .. }
            | Owned3::Boolean { attributes, .. }
            | Owned3::Number { attributes, .. }
            | Owned3::Double { attributes, .. }
            | Owned3::BigNumber { attributes, .. }
            | Owned3::VerbatimString { attributes, .. }
            | Owned3::Array { attributes, .. }
            | Owned3::Map { attributes, .. }
            | Owned3::Set { attributes, .. }
            | Owned3::Push { attributes, .. } => *attributes = attrs,
            _ => {}
        }
        frame
    }

    /// RESP3 trees of depth at most 3, attributes included, no streamed types. Map keys and
    /// set members are `keys`.
    fn resp3_frame_with<K>(keys: fn() -> K) -> impl Strategy<Value = Owned3>
    where
        K: Strategy<Value = Owned3> + 'static,
    {
        let leaf = (resp3_hashable(), attributes()).prop_map(|(f, a)| with_attributes(f, a));
        leaf.prop_recursive(3, 32, 4, move |inner| {
            let aggregate = prop_oneof![
                vec_of(inner.clone(), 0..4).prop_map(|data| Owned3::Array {
                    data,
                    attributes: None
                }),
                vec_of(inner.clone(), 0..4).prop_map(|data| Owned3::Push {
                    data,
                    attributes: None
                }),
                vec_of(keys(), 0..4).prop_map(|data| Owned3::Set {
                    data: data.into_iter().collect(),
                    attributes: None
                }),
                vec_of((keys(), inner), 0..4).prop_map(|data| Owned3::Map {
                    data: data.into_iter().collect(),
                    attributes: None
                }),
            ];
            (aggregate, attributes()).prop_map(|(f, a)| with_attributes(f, a))
        })
    }

    fn resp3_frame() -> impl Strategy<Value = Owned3> {
        resp3_frame_with(resp3_hashable)
    }

    fn encode2(frame: &Owned2) -> Vec<u8> {
        let mut buf = vec![0; frame.encode_len(false)];
        let len = redis_protocol::resp2::encode::encode(&mut buf, frame, false).expect("encodes");
        buf.truncate(len);
        buf
    }

    fn encode3(frame: &Owned3) -> Vec<u8> {
        let mut buf = vec![0; frame.encode_len(false)];
        let len = redis_protocol::resp3::encode::complete::encode(&mut buf, frame, false)
            .expect("encodes");
        buf.truncate(len);
        buf
    }

    /// A valid frame of either protocol, encoded.
    fn encoded_frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            resp2_frame().prop_map(|f| encode2(&f)),
            resp3_frame().prop_map(|f| encode3(&f))
        ]
    }

    /// An owned copy of a reply, for comparing with what was encoded.
    #[derive(Debug, Clone, PartialEq)]
    enum Want {
        Simple(Vec<u8>),
        Error(Vec<u8>),
        Integer(i64),
        Bulk(Vec<u8>),
        Nil,
        Boolean(bool),
        Array(Vec<Want>),
        Map(Vec<(Want, Want)>),
        Push(Vec<Want>),
        Other,
    }

    fn have(reply: &Reply<'_>) -> Want {
        match reply {
            Reply::Simple(b) => Want::Simple(b.to_vec()),
            Reply::Error(b) => Want::Error(b.to_vec()),
            Reply::Integer(n) => Want::Integer(*n),
            Reply::Bulk(b) => Want::Bulk(b.to_vec()),
            Reply::Nil => Want::Nil,
            Reply::Boolean(b) => Want::Boolean(*b),
            Reply::Array(items) => Want::Array(items.iter().map(have).collect()),
            Reply::Map(pairs) => Want::Map(pairs.iter().map(|(k, v)| (have(k), have(v))).collect()),
            Reply::Push(items) => Want::Push(items.iter().map(have).collect()),
            Reply::Other => Want::Other,
        }
    }

    fn want2(frame: &Owned2) -> Want {
        match frame {
            Owned2::SimpleString(b) => Want::Simple(b.clone()),
            Owned2::Error(s) => Want::Error(s.clone().into_bytes()),
            Owned2::Integer(n) => Want::Integer(*n),
            Owned2::BulkString(b) => Want::Bulk(b.clone()),
            Owned2::Array(items) => Want::Array(items.iter().map(want2).collect()),
            Owned2::Null => Want::Nil,
        }
    }

    /// What decoding `frame`'s encoding should give. Maps and sets iterate in the order the
    /// encoder wrote them.
    fn want3(frame: &Owned3) -> Want {
        match frame {
            Owned3::BlobString { data, .. } | Owned3::VerbatimString { data, .. } => {
                Want::Bulk(data.clone())
            }
            Owned3::BlobError { data, .. } => Want::Error(data.clone()),
            Owned3::SimpleString { data, .. } => Want::Simple(data.clone()),
            Owned3::SimpleError { data, .. } => Want::Error(data.clone().into_bytes()),
            Owned3::Boolean { data, .. } => Want::Boolean(*data),
            Owned3::Null => Want::Nil,
            Owned3::Number { data, .. } => Want::Integer(*data),
            Owned3::Double { .. } | Owned3::BigNumber { .. } => Want::Other,
            Owned3::Array { data, .. } => Want::Array(data.iter().map(want3).collect()),
            Owned3::Push { data, .. } => Want::Push(data.iter().map(want3).collect()),
            Owned3::Set { data, .. } => Want::Array(data.iter().map(want3).collect()),
            Owned3::Map { data, .. } => {
                Want::Map(data.iter().map(|(k, v)| (want3(k), want3(v))).collect())
            }
            other => panic!("not generated: {other:?}"),
        }
    }

    /// Bytes biased towards RESP syntax, to reach past the first type byte.
    fn resp_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            3 => proptest::sample::select(b"*$%~|>+-:_,#(!=;.?\r\n0123456789".to_vec()),
            1 => any::<u8>(),
        ];
        vec_of(byte, 0..64)
    }

    /// `frame_len` and `decode` must not panic, and agree on what they accept.
    fn check_no_panic(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(Some(n)) = frame_len(bytes) {
            prop_assert!(n > 0 && n <= bytes.len());
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let _ = decode(&bytes[..n], protocol);
            }
        }
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let _ = decode(bytes, protocol);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn prop_frame_len_is_the_resp2_encoded_length(frame in resp2_frame()) {
            let bytes = encode2(&frame);
            prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
            for cut in 0..bytes.len() {
                prop_assert_eq!(frame_len(&bytes[..cut]), Ok(None), "cut at {}", cut);
            }
        }

        #[test]
        fn prop_frame_len_is_the_resp3_encoded_length(frame in resp3_frame()) {
            let bytes = encode3(&frame);
            prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())), "{}", show(&bytes));
            for cut in 0..bytes.len() {
                prop_assert_eq!(frame_len(&bytes[..cut]), Ok(None), "cut at {}", cut);
            }
        }

        #[test]
        fn prop_resp2_frames_decode_to_what_was_encoded(frame in resp2_frame()) {
            let bytes = encode2(&frame);
            let want = want2(&frame);
            // RESP2 frames read the same under RESP3, nested `$-1` included.
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let reply = decode(&bytes, protocol);
                prop_assert!(reply.is_ok(), "{:?} {}: {:?}", protocol, show(&bytes), reply);
                prop_assert_eq!(reply.as_ref().map(have), Ok(want.clone()));
            }
        }

        #[test]
        fn prop_resp3_frames_decode_to_what_was_encoded(frame in resp3_frame_with(resp3_string)) {
            let bytes = encode3(&frame);
            let reply = decode(&bytes, Protocol::Resp3);
            // The decoder refuses attributes on a null; the generator avoids them.
            prop_assert!(reply.is_ok(), "{}: {:?}", show(&bytes), reply);
            prop_assert_eq!(reply.as_ref().map(have), Ok(want3(&frame)));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in vec_of(any::<u8>(), 0..64)) {
            check_no_panic(&bytes)?;
        }

        #[test]
        fn prop_resp_ish_bytes_never_panic(bytes in resp_ish_bytes()) {
            check_no_panic(&bytes)?;
        }

        #[test]
        fn prop_mutated_frames_never_panic(
            frame in encoded_frame(),
            edits in vec_of((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = frame;
            for (at, byte) in edits {
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
            }
            check_no_panic(&bytes)?;
            let cut = cut.index(bytes.len() + 1);
            check_no_panic(&bytes[..cut])?;
        }

        #[test]
        fn prop_framer_yields_the_frames_in_order(
            frames in vec_of(encoded_frame(), 1..6),
            splits in vec_of(1usize..40, 1..64),
        ) {
            const CAP: usize = 16 * 1024;
            prop_assume!(frames.iter().all(|f| f.len() <= CAP));
            let stream = frames.concat();
            let mut framer = Framer::<CAP>::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut rest = &stream[..];
            let mut split = splits.iter().cycle();
            while !rest.is_empty() {
                let size = (*split.next().unwrap()).min(rest.len());
                let mut piece = &rest[..size];
                rest = &rest[size..];
                while !piece.is_empty() {
                    let taken = framer.push(piece);
                    piece = &piece[taken..];
                    while let Some(len) = framer.next_frame_len().map_err(|e| TestCaseError::fail(alloc::format!("{e:?}")))? {
                        got.push(framer.frame(len).to_vec());
                        framer.consume(len);
                    }
                    prop_assert!(taken > 0 || framer.buffered() < CAP, "no progress");
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(framer.buffered(), 0);
        }
    }

    fn show(bytes: &[u8]) -> String {
        bytes.escape_ascii().to_string()
    }
}
