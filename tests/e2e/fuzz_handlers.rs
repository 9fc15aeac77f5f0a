//! Arbitrary and malformed messages to every RPC of both services over real
//! gRPC (proptest): the coordinator never panics nor fails internally, every
//! answer has a precise status code, and its database stays consistent
//! (counts by state add up). Bytes that are no protobuf message at all get
//! tonic's INTERNAL "failed to decode Protobuf message" (gRPC's code for a
//! parse error) and change nothing. CI runs `QUORUM_FUZZ_CASES` cases (default 48,
//! each a sequence of up to 8 calls); run longer by hand with e.g.
//! `QUORUM_FUZZ_CASES=5000 cargo nextest run -p quorum-tests fuzz_handlers`.

use std::ffi::OsStr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use quorum_proto::v1;
use quorum_proto::v1::scheduler_client::SchedulerClient;
use quorum_tests::grpc::{Host, Projects, ProjectsApi, TINY_APP, channel, with_token};
use quorum_tests::{Server, TestDir, cli, primes};
use tonic::Code;
use tonic::transport::Channel;

/// Longest any one call may take (a hang fails the case).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One call, with its arbitrary message.
#[derive(Debug, Clone)]
enum Call {
    /// Boxed: by far the largest message.
    CreateProject(Box<v1::CreateProjectRequest>),
    AddWorkUnits(v1::AddWorkUnitsRequest),
    GetStatus(v1::GetStatusRequest),
    ListWorkUnits(v1::ListWorkUnitsRequest),
    ListResults(v1::ListResultsRequest),
    GetCanonicalResults(v1::GetCanonicalResultsRequest),
    ListHosts,
    CancelProject(v1::CancelProjectRequest),
    WaitProject(v1::WaitProjectRequest),
    ResumeBatch(v1::ResumeBatchRequest),
    CancelWorkUnits(v1::CancelWorkUnitsRequest),
    RetryWorkUnits(v1::RetryWorkUnitsRequest),
    PurgeProject(v1::PurgeProjectRequest),
    ListErrors(v1::ListErrorsRequest),
    DeleteProject(v1::DeleteProjectRequest),
    RegisterHost(v1::RegisterHostRequest),
    RequestWork(v1::RequestWorkRequest),
    DownloadApp(v1::DownloadAppRequest),
    ReportResults(v1::ReportResultsRequest),
    GetHost,
}

/// Mostly existing project names, sometimes anything.
fn project() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("p".to_owned()), 1 => Just("q".to_owned()), 1 => "\\PC{0,70}"]
}

fn small_id() -> impl Strategy<Value = i64> {
    prop_oneof![3 => -2_i64..40, 1 => any::<i64>()]
}

/// Mostly no state or a real one, sometimes anything.
fn copy_state() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => proptest::sample::select(vec!["unsent", "in_progress", "reported", "valid", "error", "no_reply"])
            .prop_map(str::to_owned),
        1 => "\\PC{0,20}",
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn policy() -> impl Strategy<Value = Option<v1::ReplicationPolicy>> {
    proptest::option::of(
        (
            0_u32..5,
            0_u32..6,
            0_u32..5,
            0_u32..12,
            prop_oneof![0_u64..100, any::<u64>()],
            0_u32..10,
            any::<bool>(),
            any::<i32>(),
        )
            .prop_map(|(q, t, e, total, deadline, s, adaptive, priority)| v1::ReplicationPolicy {
                min_quorum: q,
                target_results: t,
                max_error_results: e,
                max_total_results: total,
                deadline_secs: deadline,
                max_success_results: s,
                adaptive_replication: adaptive,
                priority,
            }),
    )
}

fn limits() -> impl Strategy<Value = Option<v1::Limits>> {
    let files = prop_oneof![Just(0), any::<u64>()];
    proptest::option::of(
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), files.clone(), files).prop_map(
            |(fuel, memory_bytes, output_bytes, wall_time_ms, stderr_bytes, input_files_bytes, output_files_bytes)| {
                v1::Limits {
                    fuel,
                    memory_bytes,
                    output_bytes,
                    wall_time_ms,
                    stderr_bytes,
                    input_files_bytes,
                    output_files_bytes,
                }
            },
        ),
    )
}

/// Input files: names with separators, dots and controls; digests of any shape.
fn file_refs() -> impl Strategy<Value = Vec<v1::FileRef>> {
    let name = prop_oneof![Just("data".to_owned()), Just("..".to_owned()), Just("a/b".to_owned()), "\\PC{0,8}"];
    let digest = prop_oneof![Just("a".repeat(64)), "[0-9a-f]{64}", "\\PC{0,70}"];
    proptest::collection::vec(
        (name, digest, any::<u64>()).prop_map(|(name, digest, size)| v1::FileRef {
            name,
            digest,
            size,
            p2p_meta: Vec::new(),
        }),
        0..3,
    )
}

fn work_units() -> impl Strategy<Value = Vec<v1::WorkUnitInput>> {
    // Arguments and variables: mostly plain, sometimes with '=' or NUL.
    let text = || prop_oneof![Just(String::new()), "[A-Z=]{0,4}", "\\PC{0,6}", Just("a\0b".to_owned())];
    let env = proptest::collection::vec((text(), text()).prop_map(|(name, value)| v1::EnvVar { name, value }), 0..3);
    proptest::collection::vec(
        (
            prop_oneof![Just(String::new()), "\\PC{0,20}"],
            bytes(16),
            proptest::collection::vec(text(), 0..3),
            env,
            file_refs(),
        )
            .prop_map(|(name, input, args, env, files)| v1::WorkUnitInput { name, input, args, env, files }),
        0..4,
    )
}

fn report() -> impl Strategy<Value = v1::ResultReport> {
    (
        small_id(),
        -1_i32..4,
        bytes(8),
        "\\PC{0,10}",
        any::<u64>(),
        any::<u64>(),
        "\\PC{0,10}",
        "\\PC{0,10}",
        any::<bool>(),
        (
            any::<bool>(),
            proptest::collection::vec(
                ("\\PC{0,6}", bytes(8)).prop_map(|(name, data)| v1::OutputFile { name, data }),
                0..3,
            ),
        ),
    )
        .prop_map(
            |(
                result_id,
                outcome,
                output,
                stderr_tail,
                fuel_used,
                run_time_ms,
                error_message,
                engine,
                resumed,
                (given_back, output_files),
            )| {
                v1::ResultReport {
                    output_files,
                    result_id,
                    outcome,
                    output,
                    stderr_tail,
                    fuel_used,
                    run_time_ms,
                    error_message,
                    engine,
                    resumed,
                    given_back,
                }
            },
        )
}

fn call() -> impl Strategy<Value = Call> {
    let create = (
        prop_oneof![Just("q".to_owned()), project()],
        prop_oneof![Just(TINY_APP.to_vec()), bytes(64)],
        policy(),
        limits(),
        -1_i32..5,
        proptest::option::of((-1_i32..4, any::<f64>(), any::<f64>()).prop_map(|(format, relative, absolute)| {
            v1::FuzzyValidator { format, relative_tolerance: relative, absolute_tolerance: absolute }
        })),
        prop_oneof![Just(Vec::new()), Just(TINY_APP.to_vec()), bytes(32)],
        work_units(),
        bytes(70),
        bytes(40),
        any::<bool>(),
        (proptest::option::of(any::<u64>()), file_refs()),
    )
        .prop_map(
            |(
                name,
                app_module,
                policy,
                limits,
                validator,
                fuzzy,
                validator_module,
                work_units,
                sig,
                key,
                nan,
                (seed, files),
            )| {
                Call::CreateProject(Box::new(v1::CreateProjectRequest {
                    name,
                    app_module,
                    policy,
                    limits,
                    validator,
                    nan_canonicalization: nan,
                    work_units,
                    fuzzy,
                    validator_module,
                    app_signature: sig,
                    app_public_key: key,
                    seed,
                    args: Vec::new(),
                    env: Vec::new(),
                    files,
                    // Whether the app keeps checkpoints changes nothing the coordinator checks.
                    checkpointing: nan,
                }))
            },
        );
    prop_oneof![
        create,
        (project(), work_units(), policy()).prop_map(|(project, work_units, policy)| Call::AddWorkUnits(
            v1::AddWorkUnitsRequest { project, work_units, policy }
        )),
        prop_oneof![Just(String::new()), project()]
            .prop_map(|project| Call::GetStatus(v1::GetStatusRequest { project })),
        (project(), small_id(), any::<u32>()).prop_map(|(project, after_id, limit)| Call::ListWorkUnits(
            v1::ListWorkUnitsRequest { project, after_id, limit }
        )),
        (project(), small_id(), small_id(), any::<u32>(), copy_state(), small_id()).prop_map(
            |(project, work_unit_id, after_id, limit, state, batch_id)| {
                Call::ListResults(v1::ListResultsRequest { project, work_unit_id, after_id, limit, state, batch_id })
            }
        ),
        project().prop_map(|project| Call::DeleteProject(v1::DeleteProjectRequest { project })),
        (project(), small_id(), any::<u32>()).prop_map(|(project, batch_id, limit)| Call::ListErrors(
            v1::ListErrorsRequest { project, batch_id, limit }
        )),
        (project(), small_id(), any::<u32>()).prop_map(|(project, after_work_unit_id, limit)| {
            Call::GetCanonicalResults(v1::GetCanonicalResultsRequest { project, after_work_unit_id, limit })
        }),
        Just(Call::ListHosts),
        project().prop_map(|project| Call::CancelProject(v1::CancelProjectRequest { project })),
        (project(), 1_u64..20)
            .prop_map(|(project, timeout_ms)| Call::WaitProject(v1::WaitProjectRequest { project, timeout_ms })),
        (project(), small_id())
            .prop_map(|(project, batch_id)| Call::ResumeBatch(v1::ResumeBatchRequest { project, batch_id })),
        (project(), small_id(), proptest::collection::vec(small_id(), 0..4)).prop_map(|(project, batch_id, ids)| {
            Call::CancelWorkUnits(v1::CancelWorkUnitsRequest { project, batch_id, work_unit_ids: ids })
        }),
        (project(), proptest::collection::vec(small_id(), 0..4), policy()).prop_map(|(project, ids, policy)| {
            Call::RetryWorkUnits(v1::RetryWorkUnitsRequest { project, work_unit_ids: ids, policy })
        }),
        project().prop_map(|project| Call::PurgeProject(v1::PurgeProjectRequest { project })),
        ("\\PC{0,300}", any::<u32>(), any::<u64>(), "\\PC{0,300}", "\\PC{0,20}", "\\PC{0,20}").prop_map(
            |(name, n_cpus, memory_bytes, engine, os, account)| Call::RegisterHost(v1::RegisterHostRequest {
                name,
                n_cpus,
                memory_bytes,
                engine,
                os,
                account
            })
        ),
        (
            prop_oneof![0_u32..5, any::<u32>()],
            proptest::collection::vec(small_id(), 0..6),
            any::<bool>(),
            proptest::collection::vec(report(), 0..3),
            proptest::collection::vec(prop_oneof![Just("a".repeat(64)), "\\PC{0,70}"], 0..3),
        )
            .prop_map(|(slots, held, held_is_complete, reports, cached_files)| {
                Call::RequestWork(v1::RequestWorkRequest {
                    slots,
                    held,
                    held_is_complete,
                    reports,
                    cached_files,
                    peer_address: Vec::new(),
                })
            }),
        prop_oneof![Just(quorum_tests::grpc::digest(TINY_APP)), "\\PC{0,70}"]
            .prop_map(|digest| Call::DownloadApp(v1::DownloadAppRequest { digest })),
        proptest::collection::vec(report(), 0..4)
            .prop_map(|reports| Call::ReportResults(v1::ReportResultsRequest { reports })),
        Just(Call::GetHost),
    ]
}

/// Makes `call`; returns its status code (Ok when it succeeded).
async fn make(call: Call, projects: &ProjectsApi, scheduler: &SchedulerClient<Channel>, token: &str) -> Code {
    fn code<T>(outcome: Result<tonic::Response<T>, tonic::Status>) -> Code {
        outcome.map_or_else(|status| status.code(), |_| Code::Ok)
    }
    let (mut p, mut s) = (projects.clone(), scheduler.clone());
    let call = async move {
        match call {
            Call::CreateProject(m) => code(p.create_project(*m).await),
            Call::AddWorkUnits(m) => code(p.add_work_units(m).await),
            Call::GetStatus(m) => code(p.get_status(m).await),
            Call::ListWorkUnits(m) => code(p.list_work_units(m).await),
            Call::ListResults(m) => code(p.list_results(m).await),
            Call::GetCanonicalResults(m) => code(p.get_canonical_results(m).await),
            Call::ListHosts => code(p.list_hosts(v1::ListHostsRequest {}).await),
            Call::CancelProject(m) => code(p.cancel_project(m).await),
            Call::WaitProject(m) => code(p.wait_project(m).await),
            Call::ResumeBatch(m) => code(p.resume_batch(m).await),
            Call::CancelWorkUnits(m) => code(p.cancel_work_units(m).await),
            Call::RetryWorkUnits(m) => code(p.retry_work_units(m).await),
            Call::PurgeProject(m) => code(p.purge_project(m).await),
            Call::ListErrors(m) => code(p.list_errors(m).await),
            Call::DeleteProject(m) => code(p.delete_project(m).await),
            Call::RegisterHost(m) => code(s.register_host(m).await),
            Call::RequestWork(m) => code(s.request_work(with_token(m, token)).await),
            Call::DownloadApp(m) => match s.download_app(with_token(m, token)).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => break Code::Ok,
                            Err(status) => break status.code(),
                        }
                    }
                }
                Err(status) => status.code(),
            },
            Call::ReportResults(m) => code(s.report_results(with_token(m, token)).await),
            Call::GetHost => code(s.get_host(with_token(v1::GetHostRequest {}, token)).await),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or(Code::DeadlineExceeded)
}

/// The codes a request may get; anything else (Internal, Unknown, a server
/// gone Unavailable, a hang) is a bug.
fn precise(code: Code) -> bool {
    matches!(
        code,
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
    )
}

/// Counts by state add up, for every project.
async fn check_consistent(admin: &Projects) -> Result<(), String> {
    let all = admin
        .client()
        .get_status(v1::GetStatusRequest::default())
        .await
        .map_err(|status| format!("GetStatus: {status:?}"))?
        .into_inner();
    for status in all.projects {
        let work_units = admin.work_units(&status.name).await;
        let results = admin.results(&status.name).await;
        let by_state = status.work_units_open + status.work_units_done + status.work_units_failed;
        if by_state != status.work_units_total || work_units.len() as u64 != status.work_units_total {
            return Err(format!("work units do not add up ({} listed): {status:?}", work_units.len()));
        }
        let copies = status.results_unsent + status.results_in_progress + status.results_over;
        if copies != results.len() as u64 {
            return Err(format!("results do not add up ({} listed): {status:?}", results.len()));
        }
        for work_unit in &work_units {
            let open = work_unit.state == "open";
            let done = work_unit.state == "done";
            if done != (work_unit.canonical_result_id != 0) || !(open || done || work_unit.state == "failed") {
                return Err(format!("work unit in an impossible state: {work_unit:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_messages_to_every_rpc_get_precise_statuses_and_leave_the_database_consistent() {
    let cases: u32 = std::env::var("QUORUM_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = TestDir::new("fuzz-handlers");
    // Rate limits high enough that the fuzzer's own host is never limited.
    let args: Vec<&OsStr> =
        ["--host-burst", "1000000", "--register-burst", "1000000"].into_iter().map(OsStr::new).collect();
    let server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &args);
    let url = server.url();
    let (admin, scheduler, token) = runtime.block_on(async {
        let manifest =
            dir.write("project.toml", primes::manifest("p", 0, 1000, 100, "min_quorum = 2\ntarget_results = 2"));
        cli(&url, ["submit", &manifest.display().to_string()]).await.success();
        let host = Host::register(&url, "fuzzer").await;
        let admin = Projects::connect(&url).await;
        (admin, SchedulerClient::new(channel(&url).await), host.token().to_owned())
    });

    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&proptest::collection::vec(call(), 1..8), |calls| {
        runtime.block_on(async {
            for call in calls {
                let description = format!("{call:?}");
                let code = make(call, &admin.client(), &scheduler, &token).await;
                if !precise(code) {
                    return Err(TestCaseError::fail(format!("{code:?} for {description}")));
                }
            }
            check_consistent(&admin).await.map_err(TestCaseError::fail)
        })
    });
    if let Err(error) = outcome {
        panic!("{error}\n--- end of the server's log ---\n{}", tail(&server.log()));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Sends any bytes as the body of a gRPC call, and ignores the answer's body.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        let remaining = bytes::Buf::remaining(src);
        bytes::Buf::advance(src, remaining);
        Ok(Some(()))
    }
}

/// Every method of both services, and whether it streams its answer.
const METHODS: &[(&str, bool)] = &[
    ("/quorum.v1.Projects/CreateProject", false),
    ("/quorum.v1.Projects/AddWorkUnits", false),
    ("/quorum.v1.Projects/GetStatus", false),
    ("/quorum.v1.Projects/ListWorkUnits", false),
    ("/quorum.v1.Projects/ListResults", false),
    ("/quorum.v1.Projects/GetCanonicalResults", false),
    ("/quorum.v1.Projects/ListHosts", false),
    ("/quorum.v1.Projects/CancelProject", false),
    ("/quorum.v1.Projects/WaitProject", false),
    ("/quorum.v1.Projects/ResumeBatch", false),
    ("/quorum.v1.Projects/CancelWorkUnits", false),
    ("/quorum.v1.Projects/RetryWorkUnits", false),
    ("/quorum.v1.Projects/PurgeProject", false),
    ("/quorum.v1.Projects/ListErrors", false),
    ("/quorum.v1.Projects/DeleteProject", false),
    ("/quorum.v1.Projects/StreamCanonicalResults", true),
    ("/quorum.v1.Scheduler/RegisterHost", false),
    ("/quorum.v1.Scheduler/RequestWork", false),
    ("/quorum.v1.Scheduler/DownloadApp", true),
    ("/quorum.v1.Scheduler/ReportResults", false),
    ("/quorum.v1.Scheduler/GetHost", false),
];

#[test]
fn any_bytes_to_every_rpc_get_precise_statuses_and_leave_the_database_consistent() {
    let cases: u32 = std::env::var("QUORUM_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = TestDir::new("fuzz-raw");
    let args: Vec<&OsStr> =
        ["--host-burst", "1000000", "--register-burst", "1000000"].into_iter().map(OsStr::new).collect();
    let server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &args);
    let url = server.url();
    let (admin, channel, host_token) = runtime.block_on(async {
        let manifest =
            dir.write("project.toml", primes::manifest("p", 0, 1000, 100, "min_quorum = 2\ntarget_results = 2"));
        cli(&url, ["submit", &manifest.display().to_string()]).await.success();
        let host = Host::register(&url, "fuzzer").await;
        (Projects::connect(&url).await, channel(&url).await, host.token().to_owned())
    });
    let admin_token = server.admin_token().to_owned();
    let before = runtime.block_on(admin.status("p"));

    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (0..METHODS.len(), proptest::collection::vec(any::<u8>(), 0..256));
    let outcome = runner.run(&strategy, |(method, body)| {
        runtime.block_on(async {
            let (path, streaming) = METHODS[method];
            let token = if path.contains("Projects") { &admin_token } else { &host_token };
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.map_err(|error| TestCaseError::fail(format!("channel: {error}")))?;
            let request = with_token(body.clone(), token);
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            let call = async {
                if streaming {
                    match grpc.server_streaming(request, path, RawCodec).await {
                        Ok(response) => {
                            let mut stream = response.into_inner();
                            loop {
                                match stream.message().await {
                                    Ok(Some(())) => {}
                                    Ok(None) => break Ok(()),
                                    Err(status) => break Err(status),
                                }
                            }
                        }
                        Err(status) => Err(status),
                    }
                } else {
                    grpc.unary(request, path, RawCodec).await.map(|_| ())
                }
            };
            let outcome = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| TestCaseError::fail(format!("{} hung on {body:?}", METHODS[method].0)))?;
            if let Err(status) = outcome {
                let decode_error = status.code() == Code::Internal
                    && status.message().starts_with("failed to decode Protobuf message");
                if !(precise(status.code()) || decode_error) {
                    return Err(TestCaseError::fail(format!("{status:?} for {} with {body:?}", METHODS[method].0)));
                }
            }
            check_consistent(&admin).await.map_err(TestCaseError::fail)
        })
    });
    if let Err(error) = outcome {
        panic!("{error}\n--- end of the server's log ---\n{}", tail(&server.log()));
    }
    // Still serving, and the project is what it was or moved on only by
    // valid requests (random bytes can decode to a valid message).
    let after = runtime.block_on(admin.status("p"));
    assert!(after.work_units_total >= before.work_units_total, "{after:?}");
}
