//! The reference host's packed session-level flat calls (`acquire-flat-packed`,
//! `feed-flat-packed`, … in `wit/engine.wit`): the slotted calls with every byte list packed
//! eight bytes to a `u64`, the path of the Python host. Driven by the same loop as the
//! unpacked ones ([`super::slotted`]), so the conformance tests hold both to one outcome.
//!
//! Every answer is checked against the packing the WIT promises: the slotted layout's bytes,
//! little-endian, its padding less than one word and all zeros.

use super::slotted::Form;
use super::{Host, api, entropy, flat};

/// `bytes` packed (byte `8k + j` in bits `8j..8j + 7` of word `k`, the last word
/// zero-padded), and their length for the call's `…-len` argument.
pub(crate) fn pack(bytes: &[u8]) -> (Vec<u64>, u32) {
    let words = bytes
        .chunks(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    (words, u32::try_from(bytes.len()).expect("a short list"))
}

/// A packed answer as the unpacked call's bytes: the slotted step it carries (empty for an
/// empty answer), after checking that only zeros, less than a word of them, follow it.
pub(crate) fn unpacked(words: &[u64]) -> Vec<u8> {
    let mut bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    if bytes.is_empty() {
        return bytes;
    }
    let used = flat::slotted_len(&bytes);
    assert!(
        bytes.len() - used < 8,
        "at most one word's padding: {} bytes after a {used}-byte step",
        bytes.len() - used
    );
    assert!(
        bytes[used..].iter().all(|&b| b == 0),
        "the padding is zeros"
    );
    bytes.truncate(used);
    bytes
}

impl Host {
    /// `acquire-flat-packed` (wait in ms; 0: one attempt), run to its outcome.
    pub(crate) fn acquire_packed(
        &mut self,
        name: &str,
        wait_ms: u32,
    ) -> Result<api::Lease, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_acquire_flat_packed(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                wait_ms,
                now,
                &pack(&entropy()).0,
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(unpacked(&first), Form::Packed)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("acquire ended with {other:?}"),
        }
    }

    /// `release-flat-packed` with `token` packed and `token_len` claimed, run to its
    /// outcome: the holds left.
    pub(crate) fn release_packed_claiming(
        &mut self,
        name: &str,
        token: &[u8],
        token_len: u32,
    ) -> Result<u32, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_release_flat_packed(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                &pack(token).0,
                token_len,
                now,
                &pack(&entropy()).0,
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(unpacked(&first), Form::Packed)? {
            api::Outcome::Released(holds) => Ok(holds),
            other => panic!("release ended with {other:?}"),
        }
    }

    /// `release-flat-packed`, run to its outcome: the holds left.
    pub(crate) fn release_packed(&mut self, name: &str, token: &str) -> Result<u32, api::Error> {
        self.release_packed_claiming(name, token.as_bytes(), pack(token.as_bytes()).1)
    }

    /// `extend-flat-packed` with `token` packed and `token_len` claimed, run to its outcome.
    pub(crate) fn extend_packed_claiming(
        &mut self,
        name: &str,
        token: &[u8],
        token_len: u32,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_extend_flat_packed(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                &pack(token).0,
                token_len,
                ttl_ms,
                now,
                &pack(&entropy()).0,
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(unpacked(&first), Form::Packed)? {
            api::Outcome::Extended(extended) => Ok(extended),
            other => panic!("extend ended with {other:?}"),
        }
    }

    /// `extend-flat-packed`, run to its outcome.
    pub(crate) fn extend_packed(
        &mut self,
        name: &str,
        token: &str,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        let len = pack(token.as_bytes()).1;
        self.extend_packed_claiming(name, token.as_bytes(), len, ttl_ms)
    }

    /// `feed-flat-packed` on `slot` with `bytes` packed and `bytes_len` claimed, as the
    /// engine answers it (unpacked).
    pub(crate) fn feed_packed_claiming(&self, slot: u32, bytes: &[u8], bytes_len: u32) -> Vec<u8> {
        let now = self.now();
        let answer = self
            .sessions()
            .call_feed_flat_packed(
                &mut *self.store.borrow_mut(),
                self.session,
                slot,
                now,
                0,
                &pack(bytes).0,
                bytes_len,
            )
            .expect("no trap");
        unpacked(&answer)
    }
}
