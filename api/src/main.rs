//! The `tally` command-line tool: a thin shim over [`api::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    // Standard output and error are passed unlocked (each write locks them briefly): `tally serve` logs from its
    // worker threads, which would wait forever on a lock this thread held for the whole run.
    api::cli::main(std::env::args_os(), &mut stdin.lock(), &mut std::io::stdout(), &mut std::io::stderr())
}
