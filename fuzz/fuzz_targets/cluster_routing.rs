//! Arbitrary slot-map replies, and a cluster link fed arbitrary commands, primary replies,
//! redirects and time steps. See `distlock_fuzz::cluster`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| distlock_fuzz::cluster::run(data));
