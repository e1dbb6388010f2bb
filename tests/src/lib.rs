//! Helpers for tally's end-to-end tests: find the real `tally` binary and run it as a user would.
//!
//! `cargo test --workspace` (and nextest) builds every binary of the workspace before any test runs; the binary
//! sits in the target directory's profile folder, two levels above this test executable (`target/debug/deps/…`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The path of the `tally` binary built for this test run.
///
/// # Panics
/// When the binary has not been built (run the tests through `cargo test --workspace` or `cargo nextest run
/// --workspace`, which build it).
pub fn tally_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(format!("tally{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing: run `cargo test --workspace` so cargo builds it", path.display());
    path
}

/// What a run of `tally` produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    ///
    /// # Panics
    /// When the output is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `tally` with `args`, feeding `stdin`.
///
/// # Panics
/// When the process cannot be started.
pub fn tally(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(tally_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tally starts");
    // tally may exit before reading its input (a usage error): a closed pipe here is not a failure.
    match child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("cannot write tally's stdin: {e}"),
        _ => {}
    }
    let Output { status, stdout, stderr } = child.wait_with_output().expect("tally finishes");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// A file in a fresh temporary directory, removed with it.
#[derive(Debug)]
pub struct TempFile {
    dir: PathBuf,
    /// The file's path.
    pub path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a new file named `name`.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn new(name: &str, contents: &str) -> TempFile {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tally-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("temp file");
        TempFile { dir, path }
    }

    /// The path as a string argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
