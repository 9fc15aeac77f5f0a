//! The status page (`quorum-server --status-page ADDR`) in a real browser:
//! headless Chromium opens it while a project waits for hosts, the numbers
//! it shows equal `quorum status --json`; a real worker then does the
//! project and the same page, never reloaded, shows the new numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use quorum_tests::browser::Browser;
use quorum_tests::cli::Submitted;
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, cli, http, primes};

const PROJECT: &str = "shown";
/// How often the test reads the page again (paces questions only).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The numbers the page shows for [`PROJECT`], by field (`data-field`),
/// with the thousands separators taken out.
const READ_NUMBERS: &str = r#"(() => {
  const numbers = {};
  for (const node of document.querySelectorAll('.project[data-project="shown"] b[data-field]')) {
    numbers[node.dataset.field] = Number(node.textContent.replace(/[,%]/g, ""));
  }
  return JSON.stringify(numbers);
})()"#;

/// The project of `quorum status PROJECT --json`, as JSON (its fields by name).
async fn status(url: &str) -> serde_json::Value {
    let statuses: serde_json::Value = cli(url, ["--json", "status", PROJECT]).await.json();
    assert_eq!(statuses["projects"][0]["name"], PROJECT, "{statuses}");
    statuses["projects"][0].clone()
}

fn shown(browser: &mut Browser) -> BTreeMap<String, f64> {
    let text = browser.evaluate(READ_NUMBERS);
    serde_json::from_str(text.as_str().expect("a JSON string")).expect("the numbers as JSON")
}

/// Every count the page shows equals the field of the same name in `status`.
fn assert_same(shown: &BTreeMap<String, f64>, status: &serde_json::Value) {
    let counts: Vec<&String> = shown.keys().filter(|field| *field != "percent_done").collect();
    assert!(counts.len() >= 8, "the page shows the work units' and copies' counts: {shown:?}");
    for field in counts {
        assert_eq!(Some(shown[field]), status[field].as_f64(), "{field}: page {shown:?}, status {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_shows_the_status_numbers_and_follows_them_live() {
    let dir = TestDir::new("status-page");
    let server = Server::spawn_with_args(
        dir.path(),
        &dir.join("quorum.db"),
        "127.0.0.1:0",
        &[std::ffi::OsStr::new("--status-page"), std::ffi::OsStr::new("127.0.0.1:0")],
    );
    let url = server.url();
    let page = server.announced_addr("status page on http://").await;
    let manifest = dir.write("project.toml", primes::manifest(PROJECT, 0, 4_000, 200, "min_quorum = 1"));
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 20);

    // The JSON behind the page carries the same projects.
    let json = http::get(&page, "/status.json", None).await;
    assert_eq!(json.status, 200, "{json:?}");
    let snapshot: serde_json::Value = serde_json::from_str(&json.body).expect("status.json parses");
    assert_eq!(snapshot["projects"][0]["work_units_total"], 20);

    // Before any host: what the page shows is what `quorum status` says.
    let mut browser = Browser::open(dir.path(), &format!("http://{page}/"));
    let before = status(&url).await;
    let first = poll_until("the page to show the project", POLL_INTERVAL, || {
        let numbers = shown(&mut browser);
        async move { if numbers.is_empty() { Err("no project shown yet".to_owned()) } else { Ok(numbers) } }
    })
    .await;
    assert_same(&first, &before);
    assert_eq!(first["work_units_total"], 20.0);
    assert_eq!(first["percent_done"], 0.0);
    // A mark in the page's own state: still there later means it was never reloaded.
    browser.evaluate("window.quorumTestMark = 'unchanged'");

    // A worker does the whole project; the open page follows.
    let mut worker = Worker::spawn(&url, &dir.join("worker"), 2);
    cli(&url, ["wait", PROJECT, "--timeout", "120s"]).await.success();
    assert!(worker.terminate().await.success(), "{}", worker.log());
    let after = status(&url).await;
    assert_eq!(after["work_units_done"], 20, "{after}");
    let last =
        poll_until("the page to show the project done", POLL_INTERVAL, || {
            let numbers = shown(&mut browser);
            async move {
                if numbers.get("work_units_done") == Some(&20.0) { Ok(numbers) } else { Err(format!("{numbers:?}")) }
            }
        })
        .await;
    assert_same(&last, &after);
    assert_eq!(last["percent_done"], 100.0);
    assert_eq!(browser.evaluate("window.quorumTestMark"), "unchanged", "the page was reloaded");
    let polls = browser.evaluate("Number(document.getElementById('live').dataset.polls)");
    assert!(polls.as_f64().is_some_and(|polls| polls >= 1.0), "the page polled status.json: {polls}");
    let badge = browser.evaluate(r#"document.querySelector('.project[data-project="shown"] .badge').textContent"#);
    assert_eq!(badge, "ended", "a project whose work units all ended shows as ended");

    // A look at it, kept with the test's files when it fails.
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    dir.write("status-page.png", png);
}
