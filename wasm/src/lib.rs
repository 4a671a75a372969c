//! `distlock-wasm` will export the `distlock` WIT interface as a WebAssembly component built
//! from `distlock-core`. A placeholder until the component issue lands.
#![no_std]
