//! Arbitrary bytes as server replies, split at arbitrary points, into acquire, release and
//! extend over 1 to 5 nodes (Redlock over 3 most often) and the handshake, with arbitrary
//! time steps. Input format: `distlock_fuzz::records`. Invariants: `distlock_fuzz::driver`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| distlock_fuzz::records::run(data));
