//! `distlock-host` drives the `distlock-core` state machines over real connections.
//!
//! This crate is a placeholder until the host issue lands: connections, the Rust API, the
//! wasmtime adapter and the `distlock` command will live here.
