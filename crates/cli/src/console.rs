//! Standard output that a reader going away cannot crash.
//!
//! `println!` panics when its write fails, and it fails as soon as the reader of a pipe is gone
//! (`densenet bench | head -1`): the command would die with a panic message, a training run in
//! the middle of an epoch, its last checkpoint not written. [`out!`] prints like `println!`
//! until a write fails, and then prints nothing more: the command goes on with its work. A
//! reader that went away is no failure (the command exits 0, as `| head` expects); any other
//! write error (a full disk under a redirection) is, once the command has finished
//! ([`lost_output`]).

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set once a write to standard output has failed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The first write error other than a closed pipe.
static LOST: OnceLock<String> = OnceLock::new();

/// Writes one line to standard output, or nothing once a write there has failed.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"));
    if let Err(e) = written {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            let _ = LOST.set(e.to_string());
        }
    }
}

/// The error that lost part of the output, if a write to standard output failed for another
/// reason than its reader going away.
pub fn lost_output() -> Option<&'static str> {
    LOST.get().map(String::as_str)
}

/// `println!` that stops printing, instead of panicking, once standard output is gone (see the
/// module doc).
macro_rules! out {
    () => {
        $crate::console::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::console::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;
