//! What the CLI tells scripts besides its data: exit codes (0 ok, 1 what
//! was asked about failed or timed out, 2 usage or connection errors),
//! progress on stderr (JSON Lines events, or plain lines off a terminal),
//! and the shell completions and man pages it generates from its flags.

use quorum_tests::cli::Submitted;
use quorum_tests::{Server, TestDir, cli};

const NOOP_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_progress_for_scripts() {
    let dir = TestDir::new("cli-outcomes");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("noop.wat", NOOP_WAT);
    let manifest = dir
        .write("p.toml", "name = \"p\"\napp = \"noop.wat\"\n[work_units]\nrange = { start = 0, end = 3, chunk = 1 }\n");
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 3);

    // No host: the wait times out, exit 1, with JSON progress events on stderr.
    let timed_out = cli(&url, ["--progress", "json", "wait", "p", "--timeout", "1s"]).await;
    assert_eq!(timed_out.code(), Some(1), "{}", timed_out.stderr());
    let stderr = timed_out.stderr();
    assert!(stderr.contains(r#"{"event":"progress","command":"wait","project":"p","done":0,"total":3,"#), "{stderr}");
    assert!(stderr.contains(r#"{"event":"finished","command":"wait","project":"p","done":0,"total":3,"#), "{stderr}");
    assert!(stderr.contains("timed out after") && stderr.contains("3 open work units"), "{stderr}");
    // Off a terminal, without --json: plain lines.
    let lines = cli(&url, ["wait", "p", "--timeout", "1s"]).await;
    assert_eq!(lines.code(), Some(1));
    assert!(lines.stderr().contains("p: 0/3 work units ended, 0 results in progress"), "{}", lines.stderr());
    // --json alone: events too (scripts read stderr apart from the data).
    assert!(cli(&url, ["--json", "wait", "p", "--timeout", "1s"]).await.stderr().contains(r#""event":"progress""#));
    let quiet = cli(&url, ["--progress", "off", "wait", "p", "--timeout", "1s"]).await;
    assert!(!quiet.stderr().contains("work units ended"), "{}", quiet.stderr());

    // A project that ended with failed work units: its status, and exit 1.
    cli(&url, ["cancel", "p"]).await.success();
    let ended = cli(&url, ["wait", "p"]).await;
    assert_eq!(ended.code(), Some(1), "{}", ended.stderr());
    assert!(ended.stdout().contains("cancelled"), "the status is printed: {}", ended.stdout());
    assert!(
        ended.stderr().contains("ended with 3 failed work units of 3 (see `quorum errors p`)"),
        "{}",
        ended.stderr()
    );

    // Usage and connection errors: exit 2.
    assert_eq!(cli(&url, ["status", "--no-such-flag"]).await.code(), Some(2));
    let unreachable = cli("http://127.0.0.1:1", ["status"]).await;
    assert_eq!(unreachable.code(), Some(2), "{}", unreachable.stderr());
    let missing = cli(&url, ["status", "nothing-here"]).await;
    assert_eq!(missing.code(), Some(2), "{}", missing.stderr());
}

#[tokio::test]
async fn completions_and_man_pages_come_from_the_flags() {
    let bash = cli("http://127.0.0.1:1", ["completions", "bash"]).await.success();
    assert!(bash.contains("_quorum()") && bash.contains("--progress") && bash.contains("results"), "{bash}");
    let zsh = cli("http://127.0.0.1:1", ["completions", "zsh"]).await.success();
    assert!(zsh.starts_with("#compdef quorum"), "{zsh}");
    let dir = TestDir::new("man-pages");
    let man = dir.join("man1");
    cli("http://127.0.0.1:1", ["man-pages", &man.display().to_string()]).await.success();
    let page = std::fs::read_to_string(man.join("quorum-status.1")).expect("quorum-status.1");
    assert!(page.contains(".TH quorum-status") && page.contains("PROJECT"), "{page}");
    let main = std::fs::read_to_string(man.join("quorum.1")).expect("quorum.1");
    assert!(main.contains("Exit codes"), "{main}");
}
