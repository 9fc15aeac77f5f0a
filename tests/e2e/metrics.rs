//! The Prometheus metrics endpoint (`quorum-server --metrics ADDR`), read as
//! Prometheus reads it: its text parsed by a Prometheus text-format parser
//! (`prometheus-parse`), and every number checked against what the store
//! says through `quorum status --json` and the copies listed over gRPC:
//! before any host, and after a real worker has done the whole project.

use std::collections::HashMap;

use quorum_tests::cli::{ProjectStatus, Submitted};
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, cli, http, primes};

const PROJECT: &str = "measured";

/// `quorum status PROJECT --json`.
#[derive(Debug, serde::Deserialize)]
struct Statuses {
    projects: Vec<ProjectStatus>,
}

/// One scrape, parsed.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn of(addr: &str) -> Scrape {
        let answer = http::get(addr, "/metrics", None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        let lines = answer.body.lines().map(|line| Ok(line.to_owned()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format parses"))
    }

    /// The value of the sample `metric` whose labels are exactly `labels`.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(metric, labels).unwrap_or_else(|| panic!("no sample {metric}{labels:?} in {:#?}", self.names()))
    }

    fn find(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: HashMap<&str, &str> = labels.iter().copied().collect();
        self.0.samples.iter().find_map(|sample| {
            let same_labels = sample.labels.len() == wanted.len()
                && wanted.iter().all(|(name, value)| sample.labels.get(name) == Some(*value));
            if sample.metric != metric || !same_labels {
                return None;
            }
            match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            }
        })
    }

    fn names(&self) -> Vec<String> {
        self.0.samples.iter().map(|sample| format!("{}{:?}", sample.metric, sample.labels)).collect()
    }

    /// The project's gauges equal `status`, field by field.
    fn assert_matches(&self, status: &ProjectStatus) {
        let project = status.name.as_str();
        let work_units = |state| self.value("quorum_work_units", &[("project", project), ("state", state)]) as u64;
        let results = |state| self.value("quorum_results", &[("project", project), ("state", state)]) as u64;
        let over = |outcome| self.value("quorum_results_over", &[("project", project), ("outcome", outcome)]) as u64;
        assert_eq!(
            [work_units("open"), work_units("done"), work_units("failed")],
            [status.work_units_open, status.work_units_done, status.work_units_failed],
            "work units open, done, failed"
        );
        assert_eq!(
            [results("unsent"), results("in_progress"), results("over")],
            [status.results_unsent, status.results_in_progress, status.results_over],
            "results unsent, in progress, over"
        );
        assert_eq!(
            [over("valid"), over("invalid"), over("error"), over("no_reply"), over("reported")],
            [
                status.results_valid,
                status.results_invalid,
                status.results_error,
                status.results_no_reply,
                status.results_reported
            ],
            "results over by outcome"
        );
    }
}

async fn status(url: &str) -> ProjectStatus {
    let statuses: Statuses = cli(url, ["--json", "status", PROJECT]).await.json();
    statuses.projects.into_iter().next().expect("the project's status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_parse_as_prometheus_text_and_match_the_stores_counts() {
    let dir = TestDir::new("metrics");
    let server = Server::spawn_with_args(
        dir.path(),
        &dir.join("quorum.db"),
        "127.0.0.1:0",
        &[std::ffi::OsStr::new("--metrics"), std::ffi::OsStr::new("127.0.0.1:0")],
    );
    let url = server.url();
    let metrics = server.announced_addr("metrics on http://").await;

    // Before any host: the submitted work, unsent; nothing counted yet.
    let manifest = dir.write("project.toml", primes::manifest(PROJECT, 0, 4_000, 200, "min_quorum = 1"));
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 20);
    let before = Scrape::of(&metrics).await;
    let status_before = status(&url).await;
    assert_eq!(status_before.results_unsent, 20);
    before.assert_matches(&status_before);
    assert_eq!(before.value("quorum_hosts", &[]), 0.0);
    assert_eq!(before.value("quorum_hosts_active", &[]), 0.0);
    assert_eq!(before.value("quorum_results_dispatched_total", &[]), 0.0);
    assert!(before.value("quorum_database_size_bytes", &[]) > 0.0);
    assert_eq!(before.value("quorum_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    let created = [("service", "quorum.v1.Projects"), ("method", "CreateProject"), ("code", "OK")];
    assert_eq!(before.value("quorum_rpc_duration_seconds_count", &created), 1.0);

    // A refused call is counted under its code (`submit` asked once already,
    // finding no project of that name to resume).
    let not_found = [("service", "quorum.v1.Projects"), ("method", "GetStatus"), ("code", "NotFound")];
    let refused_before = before.value("quorum_rpc_duration_seconds_count", &not_found);
    cli(&url, ["status", "no-such-project"]).await.failure();
    let refused = Scrape::of(&metrics).await.value("quorum_rpc_duration_seconds_count", &not_found);
    assert_eq!(refused, refused_before + 1.0);

    // A real worker does the whole project.
    let mut worker = Worker::spawn(&url, &dir.join("worker"), 2);
    cli(&url, ["wait", PROJECT, "--timeout", "120s"]).await.success();
    assert!(worker.terminate().await.success(), "{}", worker.log());
    let after = Scrape::of(&metrics).await;
    let status_after = status(&url).await;
    assert_eq!(status_after.work_units_done, 20, "{status_after:?}");
    after.assert_matches(&status_after);

    // The counters agree with the copies the store holds.
    let copies = Projects::connect(&url).await.results(PROJECT).await;
    let sent = copies.iter().filter(|copy| copy.server_state != "unsent").count();
    let successes = copies.iter().filter(|copy| copy.outcome == "success").count();
    assert_eq!(after.value("quorum_results_dispatched_total", &[]), sent as f64, "{copies:?}");
    assert_eq!(after.value("quorum_results_reported_total", &[("outcome", "success")]), successes as f64);
    assert!(after.find("quorum_results_reported_total", &[("outcome", "client_error")]).is_none());
    assert_eq!(after.value("quorum_hosts", &[]), 1.0);
    assert_eq!(after.value("quorum_hosts_active", &[]), 1.0);
    let registered = [("service", "quorum.v1.Scheduler"), ("method", "RegisterHost"), ("code", "OK")];
    assert_eq!(after.value("quorum_rpc_duration_seconds_count", &registered), 1.0);
    let requests = [("service", "quorum.v1.Scheduler"), ("method", "RequestWork"), ("code", "OK")];
    assert!(after.value("quorum_rpc_duration_seconds_count", &requests) >= 1.0);
    // Every report went through the writer: at least one group, each of at least one call.
    let groups = after.value("quorum_writer_group_calls_count", &[]);
    assert!(groups >= 1.0 && after.value("quorum_writer_group_calls_sum", &[]) >= groups);
    assert_eq!(after.value("quorum_writer_commit_duration_seconds_count", &[]), groups);

    // Only /metrics is served.
    let missing = http::get(&metrics, "/nope", None).await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.body.contains("this endpoint serves /metrics"), "{missing:?}");
}
