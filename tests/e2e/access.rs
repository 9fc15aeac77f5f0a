//! Access control over real gRPC: every `Projects` RPC called by each caller
//! that must not call it (no token, an unknown or revoked token, a volunteer
//! host's token, a submit token for another project) is refused with
//! Unauthenticated or PermissionDenied, and the coordinator's state is the
//! same afterwards; a submit token works on its own projects only; API tokens
//! do not work as host tokens; the CLI reads its token from a flag, the
//! environment or a private file.

use quorum_proto::v1;
use quorum_tests::cli::Submitted;
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::grpc::{
    Host, Projects, ProjectsApi, TINY_APP, scheduler_client, success_report, tiny_policy, with_token,
};
use quorum_tests::{TestDir, cli, cli_with_token, primes};
use tonic::{Code, Status};

/// Calls every `Projects` RPC once on `project` (creating `new_project`),
/// each with a request that an admin could make; returns each outcome by name.
async fn call_every_rpc(
    client: &ProjectsApi,
    project: &str,
    new_project: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    fn done<T>(outcome: Result<tonic::Response<T>, Status>) -> Result<(), Status> {
        outcome.map(|_| ())
    }
    let p = || project.to_owned();
    let mut c = client.clone();
    vec![
        (
            "CreateProject",
            done(
                c.create_project(v1::CreateProjectRequest {
                    name: new_project.to_owned(),
                    app_module: TINY_APP.to_vec(),
                    policy: Some(tiny_policy()),
                    work_units: vec![v1::WorkUnitInput {
                        name: String::new(),
                        input: b"x".to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "AddWorkUnits",
            done(
                c.add_work_units(v1::AddWorkUnitsRequest {
                    project: p(),
                    work_units: vec![v1::WorkUnitInput {
                        name: "extra".to_owned(),
                        input: b"0 10\n".to_vec(),
                        ..Default::default()
                    }],
                    policy: None,
                })
                .await,
            ),
        ),
        ("GetStatus", done(c.get_status(v1::GetStatusRequest { project: p() }).await)),
        (
            "ListWorkUnits",
            done(c.list_work_units(v1::ListWorkUnitsRequest { project: p(), after_id: 0, limit: 10 }).await),
        ),
        (
            "ListResults",
            done(c.list_results(v1::ListResultsRequest { project: p(), limit: 10, ..Default::default() }).await),
        ),
        (
            "GetCanonicalResults",
            done(
                c.get_canonical_results(v1::GetCanonicalResultsRequest {
                    project: p(),
                    after_work_unit_id: 0,
                    limit: 10,
                })
                .await,
            ),
        ),
        ("ListHosts", done(c.list_hosts(v1::ListHostsRequest {}).await)),
        (
            "StreamCanonicalResults",
            done(c.stream_canonical_results(v1::StreamCanonicalResultsRequest { project: p(), after_cursor: 0 }).await),
        ),
        ("WaitProject", done(c.wait_project(v1::WaitProjectRequest { project: p(), timeout_ms: 1 }).await)),
        ("ResumeBatch", done(c.resume_batch(v1::ResumeBatchRequest { project: p(), batch_id: 0 }).await)),
        (
            "CancelWorkUnits",
            done(
                c.cancel_work_units(v1::CancelWorkUnitsRequest { project: p(), batch_id: 1, work_unit_ids: vec![] })
                    .await,
            ),
        ),
        (
            "RetryWorkUnits",
            done(
                c.retry_work_units(v1::RetryWorkUnitsRequest { project: p(), work_unit_ids: vec![], policy: None })
                    .await,
            ),
        ),
        ("PurgeProject", done(c.purge_project(v1::PurgeProjectRequest { project: p() }).await)),
        ("ListErrors", done(c.list_errors(v1::ListErrorsRequest { project: p(), batch_id: 0, limit: 0 }).await)),
        ("DeleteProject", done(c.delete_project(v1::DeleteProjectRequest { project: p() }).await)),
        ("CancelProject", done(c.cancel_project(v1::CancelProjectRequest { project: p() }).await)),
    ]
}

/// Everything an admin can read, to compare before and after refused calls.
async fn snapshot(admin: &Projects) -> String {
    let mut all = admin.client();
    let statuses =
        all.get_status(v1::GetStatusRequest { project: String::new() }).await.expect("GetStatus").into_inner();
    let mut text = format!("{statuses:?}\n");
    for project in statuses.projects.iter().map(|status| status.name.clone()) {
        text += &format!("{:?}\n", admin.work_units(&project).await);
        text += &format!("{:?}\n", admin.results(&project).await);
        text += &format!("{:?}\n", admin.canonical_results(&project).await);
    }
    text += &format!("{:?}\n", admin.hosts().await);
    text
}

/// A server with projects "p" and "other" (two work units each, one copy of
/// "p" in progress on a host), the host, and the database path.
/// Coordinators of `setup` with projects "p" and "other" (submitted
/// through the first), and a host (registered with the first) holding a copy.
async fn server_with_projects(name: &str, setup: Setup) -> (TestDir, Coordinators, Host) {
    let dir = TestDir::new(name);
    let group = Coordinators::start(setup, dir.path());
    for project in ["p", "other"] {
        let manifest = dir.write(format!("{project}.toml"), primes::manifest(project, 0, 200, 100, "min_quorum = 1"));
        let submitted: Submitted =
            cli(&group.url(0), ["--json", "submit", &manifest.display().to_string()]).await.json();
        assert_eq!(submitted.n_work_units, 2);
    }
    let mut host = Host::register(&group.url(0), "volunteer").await;
    let work = host.request_work(1).await.expect("RequestWork");
    assert_eq!(work.assignments.len(), 1, "{work:?}");
    (dir, group, host)
}

#[tokio::test]
async fn every_projects_rpc_refuses_callers_without_the_right_role_and_changes_nothing() {
    refuses_callers_without_the_right_role(Setup::Sqlite).await;
}

/// Tokens made and revoked on the database hold on every coordinator of it:
/// the calls go to the second coordinator of a PostgreSQL group.
#[tokio::test]
async fn every_projects_rpc_refuses_callers_without_the_right_role_on_two_postgres_coordinators() {
    refuses_callers_without_the_right_role(Setup::PostgresPair).await;
}

async fn refuses_callers_without_the_right_role(setup: Setup) {
    let (_dir, group, host) = server_with_projects("access-refused", setup).await;
    let url = group.url(1);
    let admin = Projects::connect(&url).await;
    let other_only = group.token_command(&["create", "--role", "submit", "--project", "other"]).await;
    let revoked = group.token_command(&["create", "--role", "admin"]).await;
    let listed = group.token_command(&["list"]).await;
    let revoked_id = listed.lines().last().and_then(|line| line.split_whitespace().next()).expect("a token id");
    group.token_command(&["revoke", revoked_id]).await;
    let before = snapshot(&admin).await;

    let callers: Vec<(&str, Option<String>, Code)> = vec![
        ("no token", None, Code::Unauthenticated),
        ("an unknown token", Some("quorum_0000".to_owned()), Code::Unauthenticated),
        ("a revoked admin token", Some(revoked.trim().to_owned()), Code::Unauthenticated),
        ("a host token", Some(host.token().to_owned()), Code::PermissionDenied),
        ("a submit token for another project", Some(other_only.trim().to_owned()), Code::PermissionDenied),
    ];
    for (who, token, expected) in callers {
        let client = Projects::connect_with_token(&url, token.as_deref()).await.client();
        for (rpc, outcome) in call_every_rpc(&client, "p", "q").await {
            let error = outcome.expect_err(&format!("{rpc} with {who} succeeded"));
            assert_eq!(error.code(), expected, "{rpc} with {who}: {error:?}");
        }
        assert_eq!(snapshot(&admin).await, before, "nothing changed after the calls with {who}");
    }

    // The submit token sees only its own project in the list of all.
    let client = Projects::connect_with_token(&url, Some(other_only.trim())).await;
    let all = client.client().get_status(v1::GetStatusRequest { project: String::new() }).await.expect("GetStatus");
    let names: Vec<String> = all.into_inner().projects.into_iter().map(|status| status.name).collect();
    assert_eq!(names, ["other"]);
    assert!(listed.contains("submit") && listed.contains("other"), "{listed}");

    // The admin token may call every RPC (the requests themselves are valid).
    for (rpc, outcome) in call_every_rpc(&admin.client(), "p", "q").await {
        if let Err(error) = outcome {
            assert!(
                !matches!(error.code(), Code::Unauthenticated | Code::PermissionDenied),
                "{rpc} as admin: {error:?}"
            );
        }
    }
    assert_eq!(admin.status("q").await.work_units_total, 1, "the admin created q");
}

#[tokio::test]
async fn a_submit_token_works_on_its_projects_only() {
    submit_token_works_on_its_projects_only(Setup::Sqlite).await;
}

#[tokio::test]
async fn a_submit_token_works_on_its_projects_only_on_two_postgres_coordinators() {
    submit_token_works_on_its_projects_only(Setup::PostgresPair).await;
}

async fn submit_token_works_on_its_projects_only(setup: Setup) {
    let (dir, mut group, _host) = server_with_projects("access-submit", setup).await;
    let url = group.url(1);
    let token = group
        .token_command(&["create", "--role", "submit", "--project", "p", "--project", "mine"])
        .await
        .trim()
        .to_owned();
    let client = Projects::connect_with_token(&url, Some(&token)).await;
    let mut api = client.client();
    api.create_project(v1::CreateProjectRequest {
        name: "mine".to_owned(),
        app_module: TINY_APP.to_vec(),
        policy: Some(tiny_policy()),
        ..Default::default()
    })
    .await
    .expect("creating a project in scope");
    api.add_work_units(v1::AddWorkUnitsRequest {
        project: "p".to_owned(),
        work_units: vec![v1::WorkUnitInput {
            name: "more".to_owned(),
            input: b"200 300\n".to_vec(),
            ..Default::default()
        }],
        policy: None,
    })
    .await
    .expect("adding work units in scope");
    assert_eq!(client.status("p").await.work_units_total, 3);
    assert_eq!(client.work_units("mine").await, vec![]);

    // Through the CLI: its token from the environment, a flag or a file.
    let status = cli_with_token(&url, Some(&token), ["status", "p"]).await;
    status.success();
    let denied = cli_with_token(&url, Some(&token), ["hosts"]).await.failure();
    assert!(denied.contains("PERMISSION_DENIED") && denied.contains("admin"), "{denied}");
    let denied = cli_with_token(&url, None, ["--token", &token, "cancel", "other"]).await.failure();
    assert!(denied.contains("PERMISSION_DENIED") && denied.contains("\"other\""), "{denied}");
    let missing = cli_with_token(&url, None, ["status", "p"]).await.failure();
    assert!(missing.contains("UNAUTHENTICATED"), "{missing}");

    let file = dir.write("token", format!("{token}\n"));
    set_mode(&file, 0o644);
    let open = cli_with_token(&url, None, ["--token-file", &file.display().to_string(), "status", "p"]).await.failure();
    assert!(open.contains("accessible by group or others (mode 644)"), "{open}");
    set_mode(&file, 0o600);
    cli_with_token(&url, None, ["--token-file", &file.display().to_string(), "status", "p"]).await.success();

    // The first admin token is in a file only its owner can read.
    let admin_file = group.admin_token_file();
    assert_eq!(mode(admin_file), 0o600);
    assert_eq!(std::fs::read_to_string(admin_file).expect("read").trim(), group.server(0).admin_token());
}

#[tokio::test]
async fn api_tokens_do_not_work_as_host_tokens() {
    let (_dir, mut group, mut host) = server_with_projects("access-host", Setup::Sqlite).await;
    let url = group.url(0);
    let server = group.server(0);
    let admin = Projects::connect(&url).await;
    let before = snapshot(&admin).await;
    let mut client = scheduler_client(&url).await;
    let token = server.admin_token();

    let error = client
        .request_work(with_token(v1::RequestWorkRequest { slots: 1, ..Default::default() }, token))
        .await
        .expect_err("RequestWork with an API token");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let error = client
        .report_results(with_token(v1::ReportResultsRequest { reports: vec![success_report(1, b"25\n")] }, token))
        .await
        .expect_err("ReportResults with an API token");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let error = client.get_host(with_token(v1::GetHostRequest {}, token)).await.expect_err("GetHost");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let error = client
        .download_app(with_token(v1::DownloadAppRequest { digest: "0".repeat(64) }, token))
        .await
        .expect_err("DownloadApp with an API token");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    assert_eq!(snapshot(&admin).await, before, "nothing changed");

    // The host's own token still works.
    host.request_work(1).await.expect("the host's RequestWork");
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
