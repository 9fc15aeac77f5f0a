//! Giving work back. Two workers on batteries hold copies without computing
//! them. `quorum-worker abort ID` gives one back through the running worker;
//! `quorum-worker detach URL` gives back the rest of that worker, which
//! forgets the coordinator and stops; the second worker, stopped, detaches
//! directly. A third worker then computes every work unit at once: the
//! copies given back were sent again long before their deadline, and the
//! coordinator recorded them as given back, not as the app's errors (the
//! batch is not paused although three hosts gave copies back).

use std::path::Path;
use std::time::Duration;

use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::{ids_in_state, try_worker_command, worker_command};
use quorum_tests::{Server, TestDir, Worker, cli, primes};

/// A power supply on batteries, for workers that must hold copies without computing them.
fn on_batteries(dir: &Path) {
    std::fs::create_dir_all(dir.join("BAT0")).expect("power supply dir");
    std::fs::write(dir.join("BAT0/type"), "Battery\n").expect("write");
    std::fs::write(dir.join("BAT0/status"), "Discharging\n").expect("write");
}

/// Waits until the worker on `state_dir` holds `n` queued tasks; returns them.
async fn holding(state_dir: &Path, n: usize) -> Vec<i64> {
    poll_until(&format!("{} to hold {n} tasks", state_dir.display()), Duration::from_millis(50), || async {
        let status = try_worker_command("status", state_dir).await?;
        let queued = ids_in_state(&status, "queued");
        if queued.len() == n { Ok(queued.into_iter().collect()) } else { Err(status) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_and_abort_give_copies_back_to_other_hosts_before_their_deadline() {
    let dir = TestDir::new("detach");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let power = dir.join("power_supply");
    on_batteries(&power);
    // 10 work units, one copy each, due in an hour.
    let manifest = dir.write("project.toml", primes::manifest("p", 0, 1000, 100, "min_quorum = 1\ndeadline = \"1h\""));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let power = power.display().to_string();
    let holder = ["--power-supply-dir", &power, "--buffer-low", "4", "--buffer-high", "4"];

    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    let mut a = Worker::spawn_with(&[&url], &a_dir, 1, &holder);
    let a_held = holding(&a_dir, 4).await;
    let mut b = Worker::spawn_with(&[&url], &b_dir, 1, &holder);
    let b_held = holding(&b_dir, 4).await;
    assert!(b.terminate().await.success(), "{}", b.log());

    // One task, through the running worker.
    let said = a.command(&format!("abort {}", a_held[0])).await;
    assert!(said.contains(&format!("gave back result {}", a_held[0])) && said.contains("by the worker"), "{said}");
    let status = a.command("status").await;
    assert!(!ids_in_state(&status, "queued").contains(&a_held[0]), "{status}");
    let refused = a.try_command("abort 999999").await.expect_err("no such task");
    assert!(refused.contains("no result 999999 in this worker's journal"), "{refused}");

    // The rest of A (its buffer refilled after the abort), through the
    // running worker, which then stops.
    let said = a.command(&format!("detach {}", server.addr())).await;
    let prefix = format!("detached from {url}: ");
    let n_a: usize = said
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!((3..=4).contains(&n_a) && said.contains("tasks given back, 0 finished"), "{said}");
    assert!(a.terminate().await.success() || !a.is_running(), "{}", a.log());
    assert!(a.log().contains("detached from every coordinator: stopping"), "{}", a.log());
    let status = worker_command("status", &a_dir).await;
    assert!(status.contains("not attached to any coordinator"), "{status}");

    // B is not running: detach reports directly.
    let said = worker_command(&format!("detach {url}"), &b_dir).await;
    assert!(
        said.contains(&format!("detached from {url}: 4 tasks given back")) && !said.contains("by the worker"),
        "{said}"
    );
    let again = try_worker_command(&format!("detach {url}"), &b_dir).await.expect_err("already detached");
    assert!(again.contains(&format!("this worker is not attached to {url}")), "{again}");

    let projects = Projects::connect(&url).await;
    let given_back: Vec<_> = projects
        .results("p")
        .await
        .into_iter()
        .filter(|r| r.error_message.starts_with("given back by the volunteer"))
        .collect();
    let ids: std::collections::BTreeSet<i64> = given_back.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1 + n_a + 4, "{given_back:?}");
    assert!(a_held.iter().chain(&b_held).all(|id| ids.contains(id)), "every held copy was given back: {given_back:?}");
    assert!(given_back.iter().all(|r| r.state == "error" && r.fuel_used == 0), "{given_back:?}");

    // A third host (not on batteries) gets them at once and finishes the project.
    let mut c = Worker::spawn(&url, &dir.join("c"), 2);
    let done = projects.wait("p").await;
    assert_eq!(done.work_units_done, 10, "{done:?}");
    let status = cli(&url, ["status", "p"]).await.success();
    assert!(!status.contains("paused"), "copies given back do not pause the batch: {status}");
    assert!(c.terminate().await.success(), "{}", c.log());
}
