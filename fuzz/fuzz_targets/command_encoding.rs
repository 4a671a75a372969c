//! Arbitrary names, prefixes, tokens, options and credentials: refused with the right
//! typed error, or encoded into commands that decode to exactly the arguments given.
//! See `distlock_fuzz::encoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| distlock_fuzz::encoding::run(data));
