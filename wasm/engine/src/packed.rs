//! The packed form of the session-level flat calls' byte lists (`acquire-flat-packed`,
//! `feed-flat-packed`, … in `wit/engine.wit`): bytes eight to a `u64`, little-endian, for
//! runtimes whose component API converts a list one element at a time.
//!
//! Owns the packing only; the calls themselves are the unpacked ones ([`crate::session`]).
//! Invariants: [`unpack`] never reads past the words it is given (a length beyond them is
//! `None`, for the caller to refuse); [`pack`] pads the last word with zeros; unpacking what
//! was packed gives the bytes back.

use alloc::vec::Vec;

use crate::api;

/// Bytes a word carries.
const WORD: usize = 8;

/// `bytes`, eight to a word (byte `8k + j` in bits `8j..8j + 7` of word `k`), the last word
/// zero-padded.
pub(crate) fn pack(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(WORD)
        .map(|chunk| {
            let mut word = [0u8; WORD];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect()
}

/// The first `len` bytes `words` carry; `None` when `len` is past them.
pub(crate) fn unpack(words: &[u64], len: u32) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    if len > words.len().saturating_mul(WORD) {
        return None;
    }
    let mut bytes = all_bytes(words);
    bytes.truncate(len);
    Some(bytes)
}

/// Every byte `words` carry (entropy: whole words).
pub(crate) fn all_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

/// [`unpack`] for a constructor's argument: a length past the words is an `invalid` error
/// of kind `other` (nothing is built).
pub(crate) fn unpack_arg(words: &[u64], len: u32, what: &str) -> Result<Vec<u8>, api::Error> {
    unpack(words, len).ok_or_else(|| {
        api::Error::Invalid(api::ConfigError {
            kind: api::ConfigErrorKind::Other,
            message: alloc::format!(
                "{what}: {len} bytes claimed, {} words carry {}",
                words.len(),
                words.len().saturating_mul(WORD)
            ),
        })
    })
}
