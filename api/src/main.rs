//! The `tally` command-line tool: a thin shim over [`api::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    api::cli::main(std::env::args_os(), &mut stdin.lock(), &mut stdout.lock(), &mut stderr.lock())
}
