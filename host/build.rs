//! Builds the WebAssembly side (`wasm/`, its own workspace) for `wasm32-wasip2`, so that a
//! plain `cargo build` or `cargo test` on a clean clone has the lock component and the
//! example guests to embed.
//!
//! The nested cargo gets a clean environment (no `RUSTFLAGS`, no wrapper, none of the
//! `CARGO_*` variables cargo sets for build scripts) and its own target directory,
//! `<target>/wasm`, shared by every profile of the host, so a debug build, a release build and
//! `cargo clippy` reuse one set of wasm artifacts and never wait on the outer build's lock.
//! The jobserver (`CARGO_MAKEFLAGS`) is passed on, so both together stay within `-j`.
//!
//! Without the `component` feature nothing is built.
//!
//! A toolchain that rustup installed before this checkout existed lacks the `wasm32-wasip2`
//! target (rustup adds `rust-toolchain.toml` targets only when it installs the toolchain), so
//! the script adds it through rustup when the active sysroot has no standard library for it:
//! `cargo run` and `cargo test` then work on a fresh clone with nothing added by hand.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm artifacts the host embeds: (file cargo produces, name in `OUT_DIR`).
const ARTIFACTS: &[(&str, &str)] = &[
    ("distlock_wasm.wasm", "distlock_provider.wasm"),
    ("distlock_engine.wasm", "distlock_engine.wasm"),
    ("distlock-counter.wasm", "distlock_counter.wasm"),
    ("distlock_passthrough.wasm", "distlock_passthrough.wasm"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    for watched in [
        "wit",
        "wasm/src",
        "wasm/engine/src",
        "wasm/engine/Cargo.toml",
        "wasm/examples",
        "wasm/Cargo.toml",
        "wasm/Cargo.lock",
        "core/src",
        "core/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    if env::var_os("CARGO_FEATURE_COMPONENT").is_none() {
        return;
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = wasm_target_dir(&out_dir);
    ensure_wasm_target();
    build_wasm(&root, &target_dir);
    let built = target_dir.join(WASM_TARGET).join("release");
    for (from, to) in ARTIFACTS {
        let from = built.join(from);
        let to = out_dir.join(to);
        if let Err(e) = std::fs::copy(&from, &to) {
            panic!("copying {} to {}: {e}", from.display(), to.display());
        }
    }
}

/// `<target>/wasm`, found from `OUT_DIR` (`<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`).
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    let target = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        // No CACHEDIR.TAG (an unusual layout): a directory of this build's own.
        .unwrap_or_else(|| out_dir.to_path_buf());
    target.join("wasm")
}

/// The target the wasm crates are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Adds [`WASM_TARGET`] to the active toolchain through rustup when its standard library is
/// missing from the sysroot of the `rustc` this build uses.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let Some(sysroot) = sysroot else {
        // The nested build reports a missing target itself, with the hint below.
        return;
    };
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return;
    }
    eprintln!("distlock-host build: the toolchain lacks {WASM_TARGET}; adding it with rustup");
    let mut command = Command::new("rustup");
    command.args(["target", "add", WASM_TARGET]);
    // rustup's proxies name the toolchain in use; pin the install to that one.
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        command.arg("--toolchain").arg(toolchain);
    }
    let status = command
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`rustup target add {WASM_TARGET}` failed ({status}); the error is above. Add the \
             target to the toolchain that builds this workspace, then build again."
        ),
        Err(e) => panic!(
            "the toolchain lacks the {WASM_TARGET} target and rustup cannot be run ({e}): \
             install the target for {}, then build again.",
            sysroot.display()
        ),
    }
}

fn build_wasm(root: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("wasm"))
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir)
        // Its progress goes to stderr; a build script's stdout is for cargo directives.
        .stdout(std::process::Stdio::from(std::io::stderr()));
    // What cargo sets for a build script (or a user for the host build) must not steer the
    // nested build: flags for the host target, clippy's wrapper, the package's own metadata.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(
            key,
            "CARGO_HOME" | "CARGO_MAKEFLAGS" | "CARGO_NET_OFFLINE" | "CARGO_TERM_COLOR"
        );
        let drop = (key.starts_with("CARGO_") && !keep)
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if drop {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the wasm crates: {e}"));
    if !status.success() {
        panic!(
            "building the wasm crates failed ({status}); the error is above. They need the \
             {WASM_TARGET} target (`rustup target add {WASM_TARGET}`)."
        );
    }
}
