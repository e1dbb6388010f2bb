//! The `tally` command-line tool: a thin shim over [`api::cli`].

use std::process::ExitCode;

/// The service allocates per request and per event (JSON trees, rows); glibc's allocator spent ~15 % of an ingest
/// profile in malloc/free. mimalloc's thread-local free lists cut that (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    // Standard output and error are passed unlocked (each write locks them briefly): `tally serve` logs from its
    // worker threads, which would wait forever on a lock this thread held for the whole run.
    api::cli::main(std::env::args_os(), &mut stdin.lock(), &mut std::io::stdout(), &mut std::io::stderr())
}
