//! Output to a reader that went away (`| head`): both binaries end quietly instead of panicking.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`, and `println!`,
//! `eprintln!` and tracing's writer (which reports its own failure with `eprintln!`) panic on
//! it: exit 101 and "failed printing to stderr: Broken pipe". Restoring SIGPIPE's default
//! would kill `run` mid-frame with its pins as they were; unwinding instead runs every `Drop`,
//! the pins' safe state included, and then exits with the code a shell shows for SIGPIPE.

use std::any::Any;
use std::io::Write;
use std::panic::{self, UnwindSafe};

/// 128 + SIGPIPE (13): what a shell reports for a program that SIGPIPE ended.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// The message std panics with when stdout or stderr is a closed pipe.
fn is_broken_pipe(payload: &(dyn Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

/// Runs `main_body` (a binary's whole `main`), turning a closed stdout or stderr into a quiet
/// exit with [`BROKEN_PIPE_EXIT`]; any other panic keeps its message and exit code.
pub fn exit_code_of(main_body: impl FnOnce() -> i32 + UnwindSafe) -> i32 {
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        // Nobody is left to read the message, and on a closed stdout it would land on the
        // terminal as if something had gone wrong.
        if !is_broken_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    match panic::catch_unwind(main_body) {
        Ok(code) => code,
        Err(payload) if is_broken_pipe(payload.as_ref()) => BROKEN_PIPE_EXIT,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// `eprintln!` that never panics: a line nobody can read any more is dropped.
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_std_broken_pipe_panic_is_recognised() {
        let closed: Box<dyn Any + Send> =
            Box::new("failed printing to stderr: Broken pipe (os error 32)".to_string());
        assert!(is_broken_pipe(closed.as_ref()));
        let other: Box<dyn Any + Send> = Box::new("index out of bounds");
        assert!(!is_broken_pipe(other.as_ref()));
    }

    #[test]
    fn a_normal_return_keeps_its_code() {
        assert_eq!(exit_code_of(|| 7), 7);
    }
}
