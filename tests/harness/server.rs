//! [`Server`]: a real `quorum-server` process on `127.0.0.1:0` (or a given
//! address, to restart one where its workers point) with its SQLite database
//! in the test directory.
//!
//! A new database makes the server create its first admin token, written to
//! `DB.admin-token`; [`Server`] reads it and records it under the server's
//! URL, so that [`crate::cli()`] and [`crate::grpc::Projects::connect`] call
//! as admin by default (tests of access control pass other tokens).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use crate::binaries;
use crate::process::Process;

/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The line the server prints once bound, followed by the address.
const LISTENING_PREFIX: &str = "quorum-server listening on ";

/// The admin token of every server a test started, by URL.
static ADMIN_TOKENS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// The admin token of the server at `url` (`http://127.0.0.1:PORT`), if the
/// harness started it.
pub fn admin_token_for(url: &str) -> Option<String> {
    let tokens = ADMIN_TOKENS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tokens.as_ref().and_then(|tokens| tokens.get(url).cloned())
}

/// The file where a server on `db` writes its first admin token.
pub fn admin_token_file(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".admin-token");
    std::path::PathBuf::from(name)
}

/// A running coordinator, killed when dropped.
#[derive(Debug)]
pub struct Server {
    process: Process,
    /// The bound address, from the server's first stdout line.
    addr: String,
    /// The database's admin token (from `DB.admin-token`).
    admin_token: String,
    /// "https" when serving TLS, else "http".
    scheme: &'static str,
}

impl Server {
    /// Starts `quorum-server --listen 127.0.0.1:0 --db DIR/quorum.db`, logging
    /// to `DIR/quorum-server.log`, and waits for its `listening on` line.
    pub fn spawn(dir: &Path) -> Server {
        Server::spawn_with_db(dir, &dir.join("quorum.db"))
    }

    /// Like [`Server::spawn`] with a given database file (e.g. to restart a
    /// server on the same database).
    pub fn spawn_with_db(dir: &Path, db: &Path) -> Server {
        Server::spawn_at(dir, db, "127.0.0.1:0")
    }

    /// Like [`Server::spawn_with_db`], listening on `listen` (`IP:PORT`):
    /// a coordinator restarted where its workers already point, e.g.
    /// `Server::spawn_at(dir, db, old.addr())` after `old` was killed.
    pub fn spawn_at(dir: &Path, db: &Path, listen: &str) -> Server {
        Server::spawn_with_args(dir, db, listen, &[])
    }

    /// Like [`Server::spawn`], serving TLS with the server certificate of `pki`.
    pub fn spawn_tls(dir: &Path, pki: &crate::tls::Pki) -> Server {
        let args = [
            std::ffi::OsStr::new("--tls-cert"),
            pki.server_cert.as_os_str(),
            std::ffi::OsStr::new("--tls-key"),
            pki.server_key.as_os_str(),
        ];
        Server::spawn_with_args(dir, &dir.join("quorum.db"), "127.0.0.1:0", &args)
    }

    /// Like [`Server::spawn_at`] with `extra` flags (`--tls-cert` and
    /// `--tls-key` make it serve https).
    pub fn spawn_with_args(dir: &Path, db: &Path, listen: &str, extra: &[&std::ffi::OsStr]) -> Server {
        Server::spawn_on(dir, db.as_os_str(), &admin_token_file(db), listen, extra)
    }

    /// Starts `quorum-server --db URL --data-dir DIR/data` on the
    /// PostgreSQL database `database` ([`crate::postgres::Database`]),
    /// listening on `listen`.
    pub fn spawn_postgres(dir: &Path, database: &crate::postgres::Database, listen: &str) -> Server {
        let data = dir.join("data");
        let extra = [std::ffi::OsStr::new("--data-dir"), data.as_os_str()];
        Server::spawn_on(dir, std::ffi::OsStr::new(database.url()), &data.join("quorum.admin-token"), listen, &extra)
    }

    /// Starts another coordinator of `first`'s PostgreSQL database
    /// `database` (`--data-dir DIR/data`, a folder of its own), listening on
    /// `listen`: the admin token is `first`'s (the database has it already).
    pub fn spawn_postgres_peer(
        dir: &Path,
        database: &crate::postgres::Database,
        listen: &str,
        first: &Server,
    ) -> Server {
        let data = dir.join("data");
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, first.admin_token()).expect("write the group's admin token");
        let extra = [std::ffi::OsStr::new("--data-dir"), data.as_os_str()];
        Server::spawn_on(dir, std::ffi::OsStr::new(database.url()), &token_file, listen, &extra)
    }

    /// Starts `quorum-server --listen LISTEN --db DB EXTRA...`, whose first
    /// admin token is in `token_file`.
    fn spawn_on(
        dir: &Path,
        db: &std::ffi::OsStr,
        token_file: &Path,
        listen: &str,
        extra: &[&std::ffi::OsStr],
    ) -> Server {
        let scheme = if extra.iter().any(|arg| *arg == "--tls-cert") { "https" } else { "http" };
        let log_path = unused_path(dir, "quorum-server", "log");
        let log = std::fs::File::create(&log_path).expect("create the server log");
        let mut child = Command::new(binaries::path(binaries::SERVER))
            .arg("--listen")
            .arg(listen)
            .arg("--db")
            .arg(db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn quorum-server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let process = Process::new("quorum-server".to_owned(), child, log_path);

        // Read the first line on a thread so that a silent server times out;
        // the thread then drains stdout until the server exits.
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = line_tx.send(read);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => panic!("read quorum-server's stdout: {error}\n{}", process.log_tail()),
            Err(_) => panic!("quorum-server printed no line within {STARTUP_TIMEOUT:?}\n{}", process.log_tail()),
        };
        let addr = line
            .trim_end()
            .strip_prefix(LISTENING_PREFIX)
            .unwrap_or_else(|| {
                panic!(
                    "quorum-server's first stdout line should be `{LISTENING_PREFIX}ADDR`, got {line:?}\n{}",
                    process.log_tail()
                )
            })
            .to_owned();
        assert!(addr.parse::<std::net::SocketAddr>().is_ok(), "quorum-server announced {addr:?}, not a socket address");
        // Written before the address is announced (or by an earlier start on this database).
        let admin_token = std::fs::read_to_string(token_file)
            .unwrap_or_else(|error| panic!("read {}: {error}\n{}", token_file.display(), process.log_tail()))
            .trim()
            .to_owned();
        let mut tokens = ADMIN_TOKENS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.get_or_insert_with(HashMap::new).insert(format!("{scheme}://{addr}"), admin_token.clone());
        drop(tokens);
        Server { process, addr, admin_token, scheme }
    }

    /// The database's admin API token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), for `--server` and gRPC clients.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The address of an HTTP endpoint the server announced in its log
    /// (`... on http://ADDR/...`, e.g. `"metrics on http://"`), once it has.
    pub async fn announced_addr(&self, announcement: &str) -> String {
        let interval = std::time::Duration::from_millis(20);
        crate::poll::poll_until(&format!("the log line `{announcement}ADDR`"), interval, || async {
            let log = self.log();
            let found = log.split(announcement).nth(1).and_then(|rest| rest.split(['/', ' ', '"']).next());
            found.map(str::to_owned).ok_or_else(|| format!("not yet; the log:\n{log}"))
        })
        .await
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's log (stderr) so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then waits for it to exit; returns its exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process.terminate().await
    }
}

/// A loopback address (`127.0.0.1:PORT`) no process listens on now: the
/// kernel gives a free port to a listener that is closed at once. For an
/// address a worker must be told before its coordinator starts there (a
/// standby that takes over the database once the first coordinator is
/// dead, `tests/e2e/failover.rs`), or one that stays down. Another process
/// could take the port meanwhile: unlikely in a test's few seconds, since
/// the kernel picks ephemeral ports at a random offset over a wide range.
pub fn unused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("the bound address");
    drop(listener);
    addr.to_string()
}

/// Runs `quorum-server token ARGS... --db DB` (beside a running server or
/// not); returns its stdout, panicking with its stderr if it fails.
pub async fn token_command(db: &Path, args: &[&str]) -> String {
    token_command_on(&[std::ffi::OsStr::new("--db"), db.as_os_str()], args).await
}

/// Runs `quorum-server token ARGS... DATABASE...` (`DATABASE`: `--db` and,
/// for PostgreSQL, `--data-dir`); returns its stdout, panicking with its
/// stderr if it fails.
pub async fn token_command_on(database: &[&std::ffi::OsStr], args: &[&str]) -> String {
    let output = tokio::process::Command::new(binaries::path(binaries::SERVER))
        .arg("token")
        .args(args)
        .args(database)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run quorum-server token");
    assert!(
        output.status.success(),
        "quorum-server token {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `DIR/STEM.EXT`, or `DIR/STEM-2.EXT`... if taken (a restarted server or a
/// second worker with the same name keeps the earlier log).
pub(crate) fn unused_path(dir: &Path, stem: &str, ext: &str) -> std::path::PathBuf {
    let mut path = dir.join(format!("{stem}.{ext}"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.{ext}"));
        n += 1;
    }
    path
}
