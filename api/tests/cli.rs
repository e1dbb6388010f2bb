//! The CLI run in-process through `api::cli::main`, with in-memory streams; plus one run of the real binary.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{self, Write};
use std::process::{Command, ExitCode, Stdio};

fn run(args: &[&str], stdin: &str) -> (ExitCode, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("tally").chain(args.iter().copied());
    let code = api::cli::main(argv, &mut stdin.as_bytes(), &mut out, &mut err);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn a_quote_prints_the_bill_as_json() {
    let (code, out, err) = run(&["quote"], r#"{"usage": {"recordings": 150000}}"#);
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let bill: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bill["total"], "372.50");
}

#[test]
fn bad_input_is_exit_code_2_and_one_line() {
    let (code, out, err) = run(&["quote"], r#"{"usage": {"recordings": "lots"}}"#);
    assert_eq!(code, ExitCode::from(2));
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("usage.recordings") && err.contains("`lots` is not a decimal number"), "{err}");
}

/// A writer whose reader has gone away, as when the output is piped into `head`.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A writer that fails for another reason, such as a full disk.
struct FullDisk;

impl Write for FullDisk {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("no space left on device"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_pipe_is_not_an_error_and_a_failed_write_is_exit_code_1() {
    let request = r#"{"usage": {"events": 5}}"#;
    let mut err = Vec::new();
    let code = api::cli::main(["tally", "quote"], &mut request.as_bytes(), &mut ClosedPipe, &mut err);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(err.is_empty());
    let code = api::cli::main(["tally", "quote"], &mut request.as_bytes(), &mut FullDisk, &mut err);
    assert_eq!(code, ExitCode::from(1));
    assert!(String::from_utf8(err).unwrap().contains("no space left on device"));
}

#[test]
fn the_real_binary_answers_on_its_streams() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["quote", "--format", "table"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(br#"{"usage": {"events": 2000000}}"#).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8(output.stdout).unwrap().contains("50.00"));
}
