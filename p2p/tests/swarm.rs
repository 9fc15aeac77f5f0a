//! Real swarms on 127.0.0.1 (port 0) exchanging real files: several peers,
//! a lying peer, a peer that does not serve, files not seeded, unreachable
//! and silent peers. No sleeps: every wait is a fetch that ends by itself,
//! bounded by a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quorum_p2p::{Error, FetchOptions, FileMeta, PeerAddress, Peers, Swarm, SwarmConfig};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// A test's end: no fetch here may take longer (a hang fails, it never waits).
const DEADLINE: Duration = Duration::from_secs(60);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn swarm(dir: &Path, name: &str, serve: bool, upload_limit: Option<u64>) -> Swarm {
    Swarm::start(SwarmConfig {
        state_dir: dir.join(name),
        listen_addr: localhost(),
        upload_cap: upload_limit.map(quorum_p2p::UploadCap::new),
        serve,
        serve_once: None,
    })
    .await
    .unwrap()
}

/// Writes `size` bytes drawn from a seeded generator and returns the path.
fn write_file(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn options() -> FetchOptions {
    FetchOptions { stall_timeout: Duration::from_secs(10), share_while_fetching: false }
}

async fn fetch(
    swarm: &Swarm,
    meta: &FileMeta,
    peers: &[PeerAddress],
    dest: &Path,
    options: FetchOptions,
) -> Result<quorum_p2p::FetchReport, Error> {
    fetch_named(swarm, meta, Peers { peers: peers.to_vec(), seeds: Vec::new() }, dest, options).await
}

/// A fetch from a fixed list of peers and seeds: the sender is dropped, so
/// none is added later.
async fn fetch_named(
    swarm: &Swarm,
    meta: &FileMeta,
    named: Peers,
    dest: &Path,
    options: FetchOptions,
) -> Result<quorum_p2p::FetchReport, Error> {
    let (_, source) = tokio::sync::watch::channel(named);
    tokio::time::timeout(DEADLINE, swarm.fetch(meta, source, dest, options))
        .await
        .expect("a fetch ends by itself, long before the test's deadline")
}

fn total(report: &quorum_p2p::FetchReport) -> u64 {
    report.bytes_from_each_peer.iter().map(|(_, bytes)| bytes).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_seeded_by_two_peers_arrives_intact_at_three_others() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 5 * MIB + 123, 1);
    let meta = FileMeta::describe(&source).unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(&source, &copy).unwrap();

    let first = swarm(dir.path(), "first", true, None).await;
    let second = swarm(dir.path(), "second", true, None).await;
    first.seed(&meta, &source).await.unwrap();
    second.seed(&meta, &copy).await.unwrap();
    let seeders = [first.address(), second.address()];

    let mut fetchers = Vec::new();
    for name in ["third", "fourth", "fifth"] {
        fetchers.push(swarm(dir.path(), name, true, None).await);
    }
    // Two fetch at once from the two seeders.
    let dest_third = dir.path().join("third.out");
    let dest_fourth = dir.path().join("fourth.out");
    let (third, fourth) = tokio::join!(
        fetch(&fetchers[0], &meta, &seeders, &dest_third, options()),
        fetch(&fetchers[1], &meta, &seeders, &dest_fourth, options()),
    );
    for (report, dest) in [(third.unwrap(), &dest_third), (fourth.unwrap(), &dest_fourth)] {
        assert_eq!(sha256(dest), sha256(&source));
        assert_eq!(total(&report), meta.size());
        assert!(report.bytes_from_each_peer.iter().all(|(peer, _)| seeders.contains(peer)));
        assert!(report.peers_dropped_for_bad_data.is_empty());
    }

    // The third seeds what it fetched; the fifth gets the file from the third alone.
    fetchers[0].seed(&meta, &dest_third).await.unwrap();
    let dest_fifth = dir.path().join("fifth.out");
    let report = fetch(&fetchers[2], &meta, &[fetchers[0].address()], &dest_fifth, options()).await.unwrap();
    assert_eq!(sha256(&dest_fifth), sha256(&source));
    assert_eq!(report.bytes_from_each_peer, vec![(fetchers[0].address(), meta.size())]);
}

#[path = "support/liar.rs"]
mod liar;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_dropped_and_the_file_still_arrives_from_an_honest_one() {
    let dir = tempfile::tempdir().unwrap();
    // 16 segments: the liar, connected within a round trip, is handed some
    // before the honest peer could have sent them all.
    let source = write_file(dir.path(), "source", 16 * MIB, 2);
    let meta = FileMeta::describe(&source).unwrap();
    let (_liar_router, liar) = liar::start(std::fs::read(&source).unwrap()).await;
    let honest = swarm(dir.path(), "honest", true, None).await;
    honest.seed(&meta, &source).await.unwrap();

    // Alone, the liar fails the fetch, and none of its bytes are kept.
    let fetcher = swarm(dir.path(), "fetcher", true, None).await;
    let dest = dir.path().join("fetched");
    let error = fetch(&fetcher, &meta, std::slice::from_ref(&liar), &dest, options()).await.unwrap_err();
    match &error {
        Error::NoPeerCompleted { missing_bytes, reason, .. } => {
            assert_eq!(*missing_bytes, meta.size(), "{error}");
            assert!(reason.contains("hash mismatch"), "{error}");
        }
        other => panic!("expected NoPeerCompleted, got {other}"),
    }
    assert!(!dest.exists());

    // With an honest peer beside it, the liar is dropped and the file arrives.
    let report = fetch(&fetcher, &meta, &[liar.clone(), honest.address()], &dest, options()).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&source));
    assert_eq!(report.peers_dropped_for_bad_data, vec![liar]);
    assert_eq!(report.bytes_from_each_peer, vec![(honest.address(), meta.size())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_file_changed_after_seeding_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 4 * MIB, 9);
    let meta = FileMeta::describe(&source).unwrap();
    let changed = dir.path().join("changed");
    std::fs::copy(&source, &changed).unwrap();
    let careless = swarm(dir.path(), "careless", true, None).await;
    careless.seed(&meta, &changed).await.unwrap();
    // The file changes in place after it was verified and seeded.
    let mut bytes = std::fs::read(&changed).unwrap();
    for byte in bytes.iter_mut().step_by(1024) {
        *byte ^= 0xff;
    }
    std::fs::write(&changed, &bytes).unwrap();

    // iroh-blobs checks what it reads before sending: nothing false leaves
    // the careless peer, the fetch fails and keeps nothing.
    let fetcher = swarm(dir.path(), "fetcher", true, None).await;
    let dest = dir.path().join("fetched");
    let error = fetch(&fetcher, &meta, &[careless.address()], &dest, options()).await.unwrap_err();
    assert!(matches!(error, Error::NoPeerCompleted { missing_bytes, .. } if missing_bytes == meta.size()), "{error}");
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_that_does_not_serve_uploads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 2 * MIB, 3);
    let meta = FileMeta::describe(&source).unwrap();
    let seeder = swarm(dir.path(), "seeder", true, None).await;
    seeder.seed(&meta, &source).await.unwrap();

    let private = swarm(dir.path(), "private", false, None).await;
    let dest = dir.path().join("private.out");
    fetch(&private, &meta, &[seeder.address()], &dest, options()).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&source));
    assert!(matches!(private.seed(&meta, &dest).await, Err(Error::NotServing)));
    assert!(!private.is_seeding(&meta));

    let other = swarm(dir.path(), "other", true, None).await;
    let error = fetch(&other, &meta, &[private.address()], &dir.path().join("other.out"), options()).await.unwrap_err();
    assert!(matches!(error, Error::NoPeerCompleted { .. }), "{error}");
    assert_eq!(private.uploaded_bytes(), 0);
    assert!(seeder.uploaded_bytes() >= meta.size());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_seeded_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", MIB + 1, 4);
    let meta = FileMeta::describe(&source).unwrap();
    let seeder = swarm(dir.path(), "seeder", true, None).await;
    seeder.seed(&meta, &source).await.unwrap();

    // The holder has the whole file in its store, verified, but has not seeded it.
    let holder = swarm(dir.path(), "holder", true, None).await;
    let held = dir.path().join("held");
    fetch(&holder, &meta, &[seeder.address()], &held, options()).await.unwrap();
    let asker = swarm(dir.path(), "asker", true, None).await;
    let check_refused = |error: Error| match error {
        Error::NoPeerCompleted { reason, .. } => assert!(reason.contains(&holder.address().to_string()), "{reason}"),
        other => panic!("expected NoPeerCompleted, got {other}"),
    };
    let dest = dir.path().join("asked");
    check_refused(fetch(&asker, &meta, &[holder.address()], &dest, options()).await.unwrap_err());

    holder.seed(&meta, &held).await.unwrap();
    assert!(holder.is_seeding(&meta));
    fetch(&asker, &meta, &[holder.address()], &dest, options()).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&source));

    holder.unseed(&meta).await.unwrap();
    assert!(!holder.is_seeding(&meta));
    let late = swarm(dir.path(), "late", true, None).await;
    check_refused(fetch(&late, &meta, &[holder.address()], &dir.path().join("late.out"), options()).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_with_no_reachable_peer_fails_within_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", MIB, 5);
    let meta = FileMeta::describe(&source).unwrap();
    let fetcher = swarm(dir.path(), "fetcher", true, None).await;

    // A peer that has stopped (nothing listens on its port any more) and a
    // socket that takes packets and never answers.
    let gone = swarm(dir.path(), "gone", true, None).await;
    let gone_address = gone.address();
    gone.shutdown().await.unwrap();
    let silent_socket = std::net::UdpSocket::bind(localhost()).unwrap();
    let silent = gone_address.with_sockets([silent_socket.local_addr().unwrap()]);

    let small = FetchOptions { stall_timeout: Duration::from_millis(300), share_while_fetching: false };
    for peers in [vec![], vec![gone_address.clone()], vec![silent.clone()], vec![gone_address, silent]] {
        let started = tokio::time::Instant::now();
        let error = fetch(&fetcher, &meta, &peers, &dir.path().join("never"), small).await.unwrap_err();
        assert!(
            matches!(error, Error::NoPeerCompleted { missing_bytes, .. } if missing_bytes == meta.size()),
            "{error}"
        );
        // Not a timing assertion on speed: a bound far above the stall timeout, against a hang.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_cap_reaches_the_provider_hook() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", MIB, 6);
    let meta = FileMeta::describe(&source).unwrap();
    let capped = swarm(dir.path(), "capped", true, Some(50 * MIB as u64)).await;
    let uncapped = swarm(dir.path(), "uncapped", true, None).await;
    assert_eq!(capped.upload_limit_bytes_per_sec(), Some(50 * MIB as u64));
    assert_eq!(uncapped.upload_limit_bytes_per_sec(), None);

    // Every chunk the capped swarm sends passes through the hook that applies the cap.
    capped.seed(&meta, &source).await.unwrap();
    let dest = dir.path().join("fetched");
    fetch(&uncapped, &meta, &[capped.address()], &dest, options()).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&source));
    assert!(capped.uploaded_bytes() >= meta.size());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_refuses_a_file_that_is_not_the_described_one() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", MIB, 7);
    let meta = FileMeta::describe(&source).unwrap();
    let other_same_size = write_file(dir.path(), "other", MIB, 8);
    let shorter = write_file(dir.path(), "shorter", MIB - 1, 7);
    let seeder = swarm(dir.path(), "seeder", true, None).await;
    for path in [&other_same_size, &shorter] {
        let error = seeder.seed(&meta, path).await.unwrap_err();
        assert!(matches!(error, Error::NotTheDescribedFile { .. }), "{error}");
        assert!(!seeder.is_seeding(&meta));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_keeps_its_address_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = swarm(dir.path(), "peer", true, None).await;
    let key = first.address().key();
    first.shutdown().await.unwrap();
    let again = swarm(dir.path(), "peer", true, None).await;
    assert_eq!(again.address().key(), key);
    assert_eq!(again.address().sockets().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_already_held_is_fetched_again_without_peers() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 3 * MIB, 10);
    let meta = FileMeta::describe(&source).unwrap();
    let seeder = swarm(dir.path(), "seeder", true, None).await;
    seeder.seed(&meta, &source).await.unwrap();
    let fetcher = swarm(dir.path(), "fetcher", true, None).await;
    let first = dir.path().join("first");
    fetch(&fetcher, &meta, &[seeder.address()], &first, options()).await.unwrap();
    let second = dir.path().join("second");
    let report = fetch(&fetcher, &meta, &[], &second, options()).await.unwrap();
    assert_eq!(report, quorum_p2p::FetchReport::default());
    assert_eq!(sha256(&first), sha256(&source));
    assert_eq!(sha256(&second), sha256(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_serve_the_parts_they_hold_while_they_fetch_and_a_seed_sends_each_part_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 16 * MIB, 12);
    let meta = FileMeta::describe(&source).unwrap();
    // A seed that sends each segment once (as the coordinator's does).
    let seed = Swarm::start(SwarmConfig {
        state_dir: dir.path().join("seed"),
        listen_addr: localhost(),
        upload_cap: Some(quorum_p2p::UploadCap::new(8 * MIB as u64)),
        serve: true,
        serve_once: Some(Duration::from_secs(3600)),
    })
    .await
    .unwrap();
    seed.seed(&meta, &source).await.unwrap();
    let a = swarm(dir.path(), "a", true, None).await;
    let b = swarm(dir.path(), "b", true, None).await;
    let sharing = FetchOptions { share_while_fetching: true, ..options() };
    // Each knows the other and the seed, and serves what it has verified as it goes.
    let named = |other: &Swarm| Peers { peers: vec![other.address()], seeds: vec![seed.address()] };
    let (a_dest, b_dest) = (dir.path().join("a.out"), dir.path().join("b.out"));
    let (a_report, b_report) = tokio::join!(
        fetch_named(&a, &meta, named(&b), &a_dest, sharing),
        fetch_named(&b, &meta, named(&a), &b_dest, sharing)
    );
    let (a_report, b_report) = (a_report.unwrap(), b_report.unwrap());
    assert_eq!(sha256(&a_dest), sha256(&source));
    assert_eq!(sha256(&b_dest), sha256(&source));
    // The seed sent each segment to one of them only: the rest each got
    // from the other, while the other was still fetching.
    assert_eq!(seed.uploaded_bytes(), meta.size());
    let from = |report: &quorum_p2p::FetchReport, peer: &Swarm| -> u64 {
        report.bytes_from_each_peer.iter().filter(|(p, _)| *p == peer.address()).map(|(_, bytes)| bytes).sum()
    };
    assert_eq!(from(&a_report, &b) + from(&b_report, &a), meta.size());
    assert_eq!(total(&a_report), meta.size());
    assert_eq!(total(&b_report), meta.size());
    for report in [&a_report, &b_report] {
        assert!(
            report.peers_dropped_for_failure.is_empty() && report.peers_dropped_for_bad_data.is_empty(),
            "{report:?}"
        );
    }
    // A sharing fetch keeps serving what it fetched until the caller seeds
    // or unseeds it.
    assert!(a.is_seeding(&meta) && b.is_seeding(&meta));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_serving_once_declines_what_it_sent_lately_and_peers_pass_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_file(dir.path(), "source", 3 * MIB + 5, 13);
    let meta = FileMeta::describe(&source).unwrap();
    let seed = Swarm::start(SwarmConfig {
        state_dir: dir.path().join("seed"),
        listen_addr: localhost(),
        upload_cap: None,
        serve: true,
        serve_once: Some(Duration::from_secs(3600)),
    })
    .await
    .unwrap();
    seed.seed(&meta, &source).await.unwrap();
    let only_seed = |peers: Vec<PeerAddress>| Peers { peers, seeds: vec![seed.address()] };

    // The first peer gets every segment from the seed, once.
    let first = swarm(dir.path(), "first", true, None).await;
    let first_dest = dir.path().join("first.out");
    fetch_named(&first, &meta, only_seed(vec![]), &first_dest, options()).await.unwrap();
    first.seed(&meta, &first_dest).await.unwrap();
    assert_eq!(seed.uploaded_bytes(), meta.size());

    // A second one that knows only the seed is declined every segment (it
    // waits, then gives up at its stall timeout, for the coordinator's path).
    let second = swarm(dir.path(), "second", true, None).await;
    let short = FetchOptions { stall_timeout: Duration::from_millis(500), share_while_fetching: false };
    let error = fetch_named(&second, &meta, only_seed(vec![]), &dir.path().join("never"), short).await.unwrap_err();
    assert!(matches!(error, Error::NoPeerCompleted { missing_bytes, .. } if missing_bytes == meta.size()), "{error}");
    // Declining is no fault: the seed is not dropped, and sent nothing more.
    assert_eq!(seed.uploaded_bytes(), meta.size());

    // Knowing the first peer, it gets the file from it.
    let dest = dir.path().join("second.out");
    let report = fetch_named(&second, &meta, only_seed(vec![first.address()]), &dest, options()).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&source));
    assert_eq!(report.bytes_from_each_peer, vec![(first.address(), meta.size())]);
    assert!(report.peers_dropped_for_failure.is_empty());
    assert_eq!(seed.uploaded_bytes(), meta.size());
}
