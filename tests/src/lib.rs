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

/// A running `tally serve` on a free port, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The database it serves.
    pub database: String,
    /// Its log so far (standard error), for failure messages.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The admin token the test servers are started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

impl Server {
    /// Starts `tally serve --listen 127.0.0.1:0 --database DATABASE` and waits until it listens.
    ///
    /// # Panics
    /// When it does not start within 60 seconds.
    pub fn start(database: &str) -> Server {
        Server::start_with(database, &[], &[])
    }

    /// [`Server::start`] with more arguments and environment variables.
    ///
    /// # Panics
    /// When it does not start within 60 seconds.
    pub fn start_with(database: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(tally_path())
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(args)
            .envs(envs.iter().copied())
            .env("TALLY_ADMIN_TOKEN", ADMIN_TOKEN)
            // Request logs on: a log line written from a worker thread is a path that once hung the server.
            .env("TALLY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tally serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("tally listening on ") {
                    let _ = tx.send(url.to_owned());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let url = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("tally serve did not start: {}", log.lock().map(|l| l.clone()).unwrap_or_default())
        });
        Server { child, url, database: database.to_owned(), log }
    }

    /// Sends SIGTERM and waits for the exit code.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn terminate(&mut self) -> Option<i32> {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Kills it with SIGKILL (no shutdown: whatever it was doing stops mid-way) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request with the admin token.
    pub fn admin(&self, method: &str, path: &str) -> ureq::Request {
        self.request(method, path, ADMIN_TOKEN)
    }

    /// A request with a bearer token. Every request gives up after 60 seconds: a server that hangs fails the test
    /// instead of stalling the run.
    pub fn request(&self, method: &str, path: &str, token: &str) -> ureq::Request {
        ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .request(method, &format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {token}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A status and JSON body from a ureq result, whatever the status.
///
/// # Panics
/// On a transport error or a body that is not JSON.
pub fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    (status, response.into_json().expect("a JSON body"))
}

/// The databases an end-to-end test runs on: a fresh SQLite file always; a fresh PostgreSQL database when
/// `TALLY_TEST_POSTGRES_URL` is set (created with `psql`, dropped with the guard).
pub fn databases() -> Vec<(String, DbGuard)> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tally-e2e-db-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut out = vec![(format!("sqlite://{}/tally.db?mode=rwc", dir.display()), DbGuard::Dir(dir))];
    if let Ok(url) = std::env::var("TALLY_TEST_POSTGRES_URL") {
        let name = format!("tally_e2e_{}_{n}", std::process::id());
        let status =
            Command::new("psql").args([url.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "TALLY_TEST_POSTGRES_URL is set but PostgreSQL cannot be reached"
        );
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b).to_owned();
        out.push((format!("{base}/{name}"), DbGuard::Postgres { admin: url, name }));
    }
    out
}

/// Removes a test database when dropped.
#[derive(Debug)]
pub enum DbGuard {
    /// A SQLite file's directory.
    Dir(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// URL to connect to for dropping it.
        admin: String,
        /// Its name.
        name: String,
    },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            DbGuard::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            DbGuard::Postgres { admin, name } => {
                let _ = Command::new("psql")
                    .args([admin.as_str(), "-qAtc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                    .status();
            }
        }
    }
}
