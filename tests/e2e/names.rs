//! Names and accounts: what a host registers with never carries a control
//! character (refused with InvalidArgument naming the field, nothing
//! created), accounts are compared in one canonical form (two spellings of
//! one account are one account, for the one-account rule too), and every
//! table for people shows control characters escaped while `--json` stays
//! exact, even for names stored before they were refused.

use quorum_proto::v1;
use quorum_tests::grpc::{self, Host, Projects, tiny_policy};
use quorum_tests::{Server, TestDir, cli, primes};
use sqlx::sqlite::SqliteConnectOptions;

/// A complete registration; tests change one field.
fn registration(name: &str, account: &str) -> v1::RegisterHostRequest {
    v1::RegisterHostRequest {
        name: name.to_owned(),
        n_cpus: 1,
        memory_bytes: 1 << 30,
        engine: "wasmtime 48.0.8".to_owned(),
        os: "linux x86_64".to_owned(),
        account: account.to_owned(),
    }
}

#[tokio::test]
async fn registration_with_control_characters_is_refused_per_field() {
    let dir = TestDir::new("names-control");
    let server = Server::spawn(dir.path());
    let mut client = grpc::scheduler_client(&server.url()).await;
    let hostile = ["ev\u{1b}[31mil", "a\u{1f}b", "line\nbreak", "c1\u{9b}"];
    type Set = fn(&mut v1::RegisterHostRequest, &str);
    let fields: [(&str, Set); 4] = [
        ("name", |r, text| r.name = text.to_owned()),
        ("account", |r, text| r.account = text.to_owned()),
        ("engine", |r, text| r.engine = text.to_owned()),
        ("os", |r, text| r.os = text.to_owned()),
    ];
    for (field, set) in fields {
        for text in hostile {
            let mut request = registration("host", "alice");
            set(&mut request, text);
            let error = client.register_host(request).await.expect_err("refused");
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{field} {text:?}: {error:?}");
            assert!(error.message().starts_with(&format!("{field}: ")), "{field}: {error:?}");
            assert!(error.message().contains("control character U+00"), "{field}: {error:?}");
        }
    }
    let projects = Projects::connect(&server.url()).await;
    assert!(projects.hosts().await.is_empty(), "a refused registration created no host");
}

#[tokio::test]
async fn two_spellings_of_one_account_are_one_account() {
    let dir = TestDir::new("names-accounts");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let projects = Projects::connect(&url).await;
    // One work unit, two copies: the account rule gives them to two accounts.
    projects
        .client()
        .create_project(v1::CreateProjectRequest {
            name: "p".to_owned(),
            app_module: grpc::TINY_APP.to_vec(),
            policy: Some(v1::ReplicationPolicy {
                min_quorum: 2,
                target_results: 2,
                max_total_results: 4,
                ..tiny_policy()
            }),
            work_units: vec![v1::WorkUnitInput { name: "only".to_owned(), input: Vec::new(), ..Default::default() }],
            ..Default::default()
        })
        .await
        .expect("CreateProject");
    let mut client = grpc::scheduler_client(&url).await;
    let mut hosts = Vec::new();
    for (name, account) in [("one", "Alice"), ("two", "  ALICE "), ("three", "bob")] {
        let registered = client.register_host(registration(name, account)).await.expect("registered").into_inner();
        hosts.push(registered);
    }
    let listed = projects.hosts().await;
    let accounts: Vec<(&str, &str)> = listed.iter().map(|h| (h.name.as_str(), h.account.as_str())).collect();
    assert_eq!(accounts, [("one", "alice"), ("two", "alice"), ("three", "bob")], "stored canonical");
    let request_work = |token: String| {
        let mut client = client.clone();
        async move {
            let request = grpc::with_token(v1::RequestWorkRequest { slots: 1, ..Default::default() }, &token);
            client.request_work(request).await.expect("RequestWork").into_inner().assignments.len()
        }
    };
    assert_eq!(request_work(hosts[0].token.clone()).await, 1, "Alice's first host gets a copy");
    assert_eq!(request_work(hosts[1].token.clone()).await, 0, "'  ALICE ' is Alice: not the other copy");
    assert_eq!(request_work(hosts[2].token.clone()).await, 1, "bob gets it");
}

#[tokio::test]
async fn hosts_and_credit_tables_escape_control_characters() {
    let dir = TestDir::new("names-escape");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write("p.toml", primes::manifest("p", 0, 10, 10, "min_quorum = 1\ntarget_results = 1"));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let host = Host::register(&url, "placeholder").await;
    // Registration refuses such names now; hosts stored before may have them.
    let db = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join("quorum.db")))
        .await
        .expect("open the coordinator's database");
    sqlx::query("UPDATE hosts SET name = ?, account = ? WHERE id = ?")
        .bind("ev\u{1b}[31mil")
        .bind("mal\u{1b}]0;pwned\u{7}")
        .bind(host.id)
        .execute(&db)
        .await
        .expect("set a hostile name");
    db.close().await;

    for command in ["hosts", "credit"] {
        let table = cli(&url, [command]).await.success();
        assert!(!table.contains('\u{1b}') && !table.contains('\u{7}'), "{command}: raw control characters:\n{table:?}");
        assert!(table.contains("mal\\x1b]0;pwned\\x07"), "{command}: the account, escaped:\n{table}");
    }
    let hosts = cli(&url, ["hosts"]).await.success();
    assert!(hosts.contains("ev\\x1b[31mil"), "the name, escaped:\n{hosts}");
    // JSON stays exact.
    let json: serde_json::Value = serde_json::from_str(&cli(&url, ["--json", "hosts"]).await.success()).expect("JSON");
    assert_eq!(json["hosts"][0]["name"], "ev\u{1b}[31mil", "{json}");
    assert_eq!(json["hosts"][0]["account"], "mal\u{1b}]0;pwned\u{7}", "{json}");
}
