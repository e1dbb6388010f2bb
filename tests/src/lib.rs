//! Helpers for tally's end-to-end tests: build the real `tally` binary and run it as a user would.
//!
//! The binary is built by the tests themselves (once per test binary), so they can never run a stale one, however
//! they are started (`cargo test -p e2e` alone builds no binary of another package). It goes to a target directory
//! of its own, `target/e2e`: the `cargo test` that runs these tests holds the lock on the main one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The path of a `tally` binary built from the current sources.
///
/// # Panics
/// When the binary cannot be built.
pub fn tally_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace");
        let target = workspace.join("target").join("e2e");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let status = Command::new(cargo)
            .current_dir(workspace)
            .args(["build", "--quiet", "--locked", "-p", "api", "--bin", "tally", "--target-dir"])
            .arg(&target)
            .status()
            .expect("cargo starts");
        assert!(status.success(), "building tally failed");
        target.join("debug").join(format!("tally{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
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
