//! Writing to the terminal without panicking.
//!
//! `println!` panics when stdout is a closed pipe (`distlock acquire … | head -0`) and
//! `eprintln!` when stderr is: the process would die with exit 101, after an `acquire` with
//! the lock held and its token never printed. Here stdout writes return their error, for the
//! command to handle (release what it took, exit 74); stderr writes are best effort, since a
//! message nobody can read must not change what the command does.

use std::fmt::Arguments;
use std::io::{self, IsTerminal, Write};

/// Writes one line to stdout and flushes it, so a closed pipe is seen here and not later.
pub(crate) fn stdout_line(line: Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes text to stdout as it is (no newline added) and flushes it.
pub(crate) fn stdout_text(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to stderr; a failure to write is ignored (there is nowhere left to say it).
pub(crate) fn stderr_line(line: Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(line);
    let _ = err.write_all(b"\n");
    let _ = err.flush();
}

/// Writes to stderr as it is (a progress line ending in `\r`, say) and flushes it; a failure
/// to write is ignored.
pub(crate) fn stderr_text(text: Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(text);
    let _ = err.flush();
}

/// Whether stderr is a terminal (colour codes only then).
pub(crate) fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// `println!` that returns an `io::Result` instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}

/// `eprint!` (no newline) that never panics: progress lines.
macro_rules! tell_inline {
    ($($arg:tt)*) => {
        $crate::output::stderr_text(format_args!($($arg)*))
    };
}

pub(crate) use {say, tell, tell_inline};
