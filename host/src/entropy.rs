//! The host's entropy: tokens from the operating system's CSPRNG, jitter seeds from the core's
//! per-operation seed over one draw of it. Everything that needs randomness (the client, the
//! guard, the node pool's session) takes it from here, so no module reaches into another for it.
//!
//! Tokens are read from the OS in blocks of [`TOKENS_PER_READ`] per thread, so an acquire
//! makes no `getrandom` call of its own (one was the only system call a lock pair made beyond
//! the raw round trips: BENCHMARKS.md "The native host's CPU per lock pair"). Invariants:
//! - **Every token is OS CSPRNG output, handed out once.** A block belongs to one thread
//!   (thread-local), each 16 bytes are taken once and wiped as they are taken; no userspace
//!   generator stretches them.
//! - **A forked child never hands out its parent's bytes.** A block remembers the process
//!   that read it; a draw in another process (a child forked after the parent read the
//!   block: its memory, thread-locals included, is a copy) throws the block away and reads
//!   a new one. The process id is asked on every draw, as the Python host's `entropy` forgets
//!   its parent's draws at fork: two processes holding one token would both be its holder.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes in one token's draw.
const TOKEN_BYTES: usize = 16;
/// Tokens read from the OS at once, per thread (1 KiB).
const TOKENS_PER_READ: usize = 64;

/// One thread's block of OS randomness not handed out yet.
struct Block {
    bytes: [u8; TOKEN_BYTES * TOKENS_PER_READ],
    /// Where the next token's bytes start; `bytes.len()` when the block is used up.
    next: usize,
    /// The process that read the block.
    pid: u32,
}

impl Block {
    const fn empty() -> Block {
        Block {
            bytes: [0; TOKEN_BYTES * TOKENS_PER_READ],
            next: TOKEN_BYTES * TOKENS_PER_READ,
            pid: 0,
        }
    }

    /// The next 16 bytes, reading a new block first when this one is used up or was read
    /// by another process.
    fn take(&mut self, pid: u32) -> [u8; TOKEN_BYTES] {
        if self.pid != pid || self.next >= self.bytes.len() {
            self.fill(pid);
        }
        let mut token = [0u8; TOKEN_BYTES];
        let at = self.next;
        let drawn = &mut self.bytes[at..at + TOKEN_BYTES];
        token.copy_from_slice(drawn);
        // Wiped as taken: a later look at this memory never shows a token handed out.
        drawn.fill(0);
        self.next = at + TOKEN_BYTES;
        token
    }

    fn fill(&mut self, pid: u32) {
        // The OS RNG failing is not recoverable for a lock: a predictable token is a security
        // bug.
        getrandom::fill(&mut self.bytes)
            .expect("the operating system's random number generator failed");
        self.next = 0;
        self.pid = pid;
    }
}

thread_local! {
    static BLOCK: RefCell<Block> = const { RefCell::new(Block::empty()) };
}

/// 16 bytes from the OS's CSPRNG, for tokens: never handed out twice, in this process or
/// any other (see the module doc).
pub(crate) fn random_bytes() -> [u8; TOKEN_BYTES] {
    let pid = std::process::id();
    BLOCK.with(|block| block.borrow_mut().take(pid))
}

/// A seed for retry jitter: the core's seed for this process's next operation
/// ([`distlock_core::operation_seed`]) from one draw of OS entropy, so no system call per
/// operation.
pub(crate) fn random_u64() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let b = random_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    distlock_core::operation_seed(base, NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_draw_repeats_across_blocks_and_threads() {
        let draws_per_thread = TOKENS_PER_READ * 3 + 5;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..draws_per_thread)
                        .map(|_| random_bytes())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for thread in threads {
            for draw in thread.join().expect("drawing thread") {
                assert!(seen.insert(draw), "a token's bytes were handed out twice");
            }
        }
        assert_eq!(seen.len(), 4 * draws_per_thread);
    }

    #[test]
    fn a_block_read_by_another_process_is_read_again() {
        let mut block = Block::empty();
        let parent = std::process::id();
        let first = block.take(parent);
        // What a forked child finds: the parent's block, bytes not handed out yet included.
        let mut child_copy = Block {
            bytes: block.bytes,
            next: block.next,
            pid: block.pid,
        };
        let parents_next = block.take(parent);
        let childs_next = child_copy.take(parent.wrapping_add(1));
        assert_ne!(
            childs_next, parents_next,
            "the child reused the parent's bytes"
        );
        assert_ne!(childs_next, first);
        assert_eq!(child_copy.pid, parent.wrapping_add(1));
        assert_eq!(
            child_copy.next, TOKEN_BYTES,
            "the child read a block of its own"
        );
    }

    #[test]
    fn a_taken_token_is_wiped_from_the_block() {
        let mut block = Block::empty();
        let pid = std::process::id();
        let token = block.take(pid);
        assert_ne!(token, [0; TOKEN_BYTES]);
        assert!(block.bytes[..TOKEN_BYTES].iter().all(|&b| b == 0));
        assert!(block.bytes[TOKEN_BYTES..].iter().any(|&b| b != 0));
    }
}
