//! [`Coordinators`]: the coordinators a test runs, on either store: one on a
//! SQLite file (the default), or a group of two over one PostgreSQL database
//! (`QUORUM_TEST_POSTGRES`), each with its own address and `--data-dir`.
//!
//! A test written against [`Coordinators::url`] spreads its clients over the
//! group (`url(0)`, `url(1)`...: the same coordinator when there is one), so
//! that the same scenario checks what two coordinators must keep: one copy
//! dispatched once, one canonical result per work unit, the same status and
//! hosts seen from either.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::postgres::Database;
use crate::server::Server;

/// Which coordinators a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// One coordinator on a SQLite file.
    Sqlite,
    /// Two coordinators over one PostgreSQL database.
    PostgresPair,
}

/// Running coordinators of one project database, killed when dropped.
#[derive(Debug)]
pub struct Coordinators {
    servers: Vec<Server>,
    /// The PostgreSQL database, for coordinators started again.
    database: Option<Database>,
    /// `--db ...` (and `--data-dir ...`) naming the database, for `quorum-server token`.
    database_args: Vec<OsString>,
    /// Where the first admin token was written.
    admin_token_file: PathBuf,
}

impl Coordinators {
    /// Starts the coordinators of `setup`, their files in `dir`.
    pub fn start(setup: Setup, dir: &Path) -> Coordinators {
        match setup {
            Setup::Sqlite => Coordinators {
                servers: vec![Server::spawn(dir)],
                database: None,
                database_args: vec!["--db".into(), dir.join("quorum.db").into()],
                admin_token_file: crate::server::admin_token_file(&dir.join("quorum.db")),
            },
            Setup::PostgresPair => {
                let database = Database::create();
                let first_dir = member_dir(dir, 0);
                let first = Server::spawn_postgres(&first_dir, &database, "127.0.0.1:0");
                let second = Server::spawn_postgres_peer(&member_dir(dir, 1), &database, "127.0.0.1:0", &first);
                Coordinators {
                    servers: vec![first, second],
                    database_args: vec![
                        "--db".into(),
                        database.url().into(),
                        "--data-dir".into(),
                        first_dir.join("data").into(),
                    ],
                    database: Some(database),
                    admin_token_file: first_dir.join("data").join("quorum.admin-token"),
                }
            }
        }
    }

    /// The URL of coordinator `i` (modulo how many there are).
    pub fn url(&self, i: usize) -> String {
        self.servers[i % self.servers.len()].url()
    }

    /// Runs `quorum-server token ARGS...` on the group's database; its stdout.
    pub async fn token_command(&self, args: &[&str]) -> String {
        let database: Vec<&std::ffi::OsStr> = self.database_args.iter().map(OsString::as_os_str).collect();
        crate::server::token_command_on(&database, args).await
    }

    /// The file where the first coordinator wrote the first admin token.
    pub fn admin_token_file(&self) -> &Path {
        &self.admin_token_file
    }

    /// Coordinator `i` (modulo how many there are).
    pub fn server(&mut self, i: usize) -> &mut Server {
        let n = self.servers.len();
        &mut self.servers[i % n]
    }

    /// Every coordinator's URL, comma-separated: a worker's `--server` for
    /// the whole group (it fails over between them).
    pub fn addresses(&self) -> String {
        self.servers.iter().map(Server::url).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs every coordinator.
    pub fn kill_all(&mut self) {
        self.servers.iter_mut().for_each(Server::kill);
    }

    /// Starts coordinator `i` again at its address (on the same database),
    /// once it was killed.
    pub fn restart(&mut self, i: usize, dir: &Path) {
        let n = self.servers.len();
        let addr = self.servers[i % n].addr().to_owned();
        let restarted = match &self.database {
            None => Server::spawn_at(dir, &dir.join("quorum.db"), &addr),
            Some(database) => {
                let other = &self.servers[(i + 1) % n];
                Server::spawn_postgres_peer(&member_dir(dir, i % n), database, &addr, other)
            }
        };
        self.servers[i % n] = restarted;
    }
}

/// Where coordinator `i` of a group keeps its files and logs.
fn member_dir(dir: &Path, i: usize) -> std::path::PathBuf {
    let member = dir.join(format!("coordinator-{i}"));
    std::fs::create_dir_all(&member).expect("create a coordinator's folder");
    member
}
