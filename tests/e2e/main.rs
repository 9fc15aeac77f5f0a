//! End-to-end tests of quorum: real `quorum-server`, `quorum-worker` and
//! `quorum` processes talking gRPC on loopback, one temporary directory and
//! one server per test. Built into a single test binary (`e2e`).
//!
//! Layout:
//! - `app_args`: a project's and each work unit's arguments and environment
//!   variables reach the app merged, `quorum results` shows them and
//!   `quorum-worker run` reproduces with them; the coordinator refuses bad
//!   ones itself, naming the entry, and creates nothing.
//! - `app_cache`: one worker, four projects with four apps, an app cache
//!   holding one module: every project completes, the cache ends within its
//!   budget.
//! - `app_imports`: apps and custom validators importing what the sandbox
//!   does not provide are refused at submission, naming the imports.
//! - `access`: API tokens and roles: every `Projects` RPC refuses callers
//!   without the right role and changes nothing.
//! - `fuzz_handlers`: arbitrary messages to every RPC (proptest): precise
//!   statuses, no panic, a consistent database.
//! - `full_disk`: reports refused (RESOURCE_EXHAUSTED) while the coordinator
//!   cannot write (a file-size limit below its WAL), accepted again without
//!   a restart once it can.
//! - `preferences`: a worker on batteries fetches work but computes none
//!   until the mains are back; a preference out of range refused at start.
//! - `primes`: the happy path, from `quorum submit` to `quorum results`.
//! - `malicious`: a host reporting wrong outputs never makes them canonical.
//! - `deadlines`: copies of a killed worker become "no reply" and are reissued.
//! - `late_results`: a copy reported after its work unit is done is still
//!   validated against the canonical result; copies told to abort stay retired.
//! - `canonical_stream`: `StreamCanonicalResults` sends every canonical
//!   result exactly once as workers compute them, resumes from a cursor, and
//!   refuses bad calls with precise codes.
//! - `cancel`: `quorum cancel` with copies in flight; workers abort them.
//! - `failover`: a worker given a coordinator group's addresses (`--server
//!   A,B`) finishes a project through a standby at B on the same database
//!   after A is killed, as the same host; a worker keeps its identity when an
//!   address is added, and one starting while A is down uses B at once.
//! - `coordinator_restart`: the coordinator is killed while workers report
//!   and restarted on the same database and address; nothing is lost.
//! - `migrate`: a quorum-2 project half done on SQLite, the coordinator
//!   stopped, `quorum-server migrate` to PostgreSQL, finished there by the
//!   same workers with the same host identities and their credit.
//! - `retry`: a work unit failed by a client error is retried as a new batch
//!   with a more lenient policy and completes; `quorum purge` keeps the
//!   canonical results readable.
//! - `auto_pause`: a batch whose app always fails is paused automatically;
//!   workers get no more copies of it until `quorum resume`.
//! - `blame`: an app that fails on every input beside a good project on the
//!   same workers: the good project completes, the hosts' quotas for it do not drop.
//! - `delete_and_resume`: a submission killed mid-way and run again ends
//!   with every work unit exactly once; `quorum delete` removes a project in
//!   one transaction, refused while hosts hold its copies.
//! - `detach`: `quorum-worker abort` and `detach` (through the running
//!   worker, or directly when none runs) give copies back; another host gets
//!   them at once, and the batch is not paused for it.
//! - `files`: input files (shared and per work unit) and output files
//!   through the whole platform with the C example; each host downloads a
//!   file once; a killed download resumes; bad files refused at submission;
//!   a task whose files a worker cannot hold given back.
//! - `p2p`: a worker sharing files serves one to another worker (the
//!   coordinator sends it once); a worker that does not share serves none.
//! - `errors`: an app that fails: `quorum results --all` lists every copy
//!   with its error and stderr (table, jsonl, csv; by state and batch),
//!   `quorum errors` groups them by message.
//! - `cli_outcomes`: exit codes, progress events and lines on stderr,
//!   shell completions and man pages.
//! - `holds`: "why is nothing running?": `quorum status PROJECT` names what
//!   holds its work (no host, quota used, other hosts needed, a paused batch,
//!   copies out, waiting successes) and says when every work unit ended.
//! - `bad_manifests`: `quorum submit` refuses bad input and creates nothing.
//! - `protocol_errors`: the scheduler's answers to wrong or repeated reports.
//! - `names`: control characters refused at registration, accounts compared
//!   canonical, tables escaping what hosts registered before.
//! - `metrics`: the Prometheus endpoint parsed by a Prometheus parser and
//!   checked against `quorum status --json` and the stored copies.
//! - `operations`: health checking, reflection (v1 and v1alpha), clean
//!   shutdown, one coordinator per database, private database files, JSON logs.
//! - `worker_address`: a bare HOST:PORT is an http:// coordinator; another
//!   scheme is refused at start.
//! - `worker_crash`: a worker killed (SIGKILL) with unreported and
//!   checkpointed tasks reports them once and resumes from its checkpoints.
//! - `worker_shutdown`: a worker stopped (SIGTERM) with queued work starts
//!   no task afterwards; the running one is journalled back with its
//!   checkpoint and resumed by the next start.
//! - `coordinator_outage`: a worker computes its buffer while the coordinator
//!   is down, backs off within a bound, and delivers everything afterwards.
//! - `resource_share`: one worker, two coordinators, shares 1:3.
//! - `deadline_abandon`: tasks that cannot meet their deadline at the
//!   measured speed are given up unstarted and reported as such.
//! - `hostile_apps`: apps that break each limit or snoop on the host end as
//!   the right error (or see nothing); the worker carries on.
//! - `bench_smoke`: a small run of `quorum-bench lifecycle`, so the load
//!   generator never rots (figures present, every work unit validated).
//! - `random_seeds`: seeds derive from names: the same inputs resubmitted
//!   under the same manifest seed draw the same random bytes, and
//!   `quorum-worker run` reproduces a result locally.
//! - `rate_limits`: a host flooding the scheduler is limited, another is served.
//! - `signed_apps`: workers refuse a module replaced in the coordinator's
//!   database, and a project re-created with another key.
//! - `state_dir`: a second worker on the state directory of a running one
//!   refuses to start; an empty journal is refused, naming it; without
//!   --state-dir the worker lives in the user's data directory; task threads
//!   run at idle priority (SCHED_IDLE, nice 19).
//! - `status_page`: the status page in headless Chromium shows the numbers
//!   of `quorum status --json` and follows them live, without a reload.
//! - `tls`: a coordinator served over TLS; a worker given the wrong CA
//!   refuses it and never registers.
//! - `lone_worker`: one worker with several quorum-2 projects computes one
//!   copy of every work unit, then waits for a second host.
//! - `worker_log`: `--log-file` writes the worker's lines to a file (mode
//!   0600) rotated by size, keeping `--log-keep` files; at INFO a task is one
//!   line when it starts and one when it ends, nothing more.
//! - `tidy`: source-level rules of the workspace (doc comments, a domain
//!   free of gRPC, SQL and tokio).
//!
//! Run with `cargo build --workspace --bins && cargo nextest run -p quorum-tests`.

mod access;
mod app_args;
mod app_cache;
mod app_imports;
mod auto_pause;
mod bad_manifests;
mod bench_smoke;
mod blame;
mod cancel;
mod canonical_stream;
mod cli_outcomes;
mod coordinator_outage;
mod coordinator_restart;
mod deadline_abandon;
mod deadlines;
mod delete_and_resume;
mod detach;
mod errors;
mod failover;
mod files;
mod full_disk;
mod fuzz_handlers;
mod holds;
mod hostile_apps;
mod late_results;
mod lone_worker;
mod malicious;
mod metrics;
mod migrate;
mod names;
mod operations;
mod p2p;
mod postgres;
mod preferences;
mod primes;
mod protocol_errors;
mod random_seeds;
mod rate_limits;
mod resource_share;
mod retry;
mod signed_apps;
mod state_dir;
mod status_page;
mod tidy;
mod tls;
mod validators;
mod worker_address;
mod worker_crash;
mod worker_log;
mod worker_shutdown;
