//! Measures the upload cap on loopback: one swarm seeds a file with a cap,
//! another fetches it, and the achieved rate is printed beside the cap.
//! Speed belongs here, not in the tests (which only check that the cap
//! reaches the provider hook).
//!
//! `cargo run --release -p quorum-p2p --example upload_cap -- [MIB] [CAP_MIB_PER_SEC]`
//! (defaults: 32 MiB at 8 MiB/s, then the same file uncapped).

use std::time::{Duration, Instant};

use quorum_p2p::{FetchOptions, FileMeta, Peers, Swarm, SwarmConfig};

#[tokio::main]
async fn main() -> Result<(), quorum_p2p::Error> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(32, |a| a.parse().expect("MIB is a number"));
    let cap_mib: u64 = args.next().map_or(8, |a| a.parse().expect("CAP_MIB_PER_SEC is a number"));
    let dir = std::env::temp_dir().join(format!("quorum-p2p-upload-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let source = dir.join("source");
    // Seeded pseudo-random bytes: compressible data would say nothing.
    let mut state = 0x9e3779b97f4a7c15u64;
    let bytes: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&source, &bytes).expect("write the source file");
    drop(bytes);
    let meta = FileMeta::describe(&source)?;

    for cap in [Some(cap_mib << 20), None] {
        let run = dir.join(format!("{cap:?}"));
        let start = |name: &str, cap: Option<u64>, serve| {
            Swarm::start(SwarmConfig {
                state_dir: run.join(name),
                listen_addr: "127.0.0.1:0".parse().expect("a socket address"),
                upload_cap: cap.map(quorum_p2p::UploadCap::new),
                serve,
                serve_once: None,
            })
        };
        let seeder = start("seeder", cap, true).await?;
        let fetcher = start("fetcher", None, false).await?;
        seeder.seed(&meta, &source).await?;
        let began = Instant::now();
        let options = FetchOptions { stall_timeout: Duration::from_secs(30), share_while_fetching: false };
        let (_, peers) = tokio::sync::watch::channel(Peers { peers: vec![seeder.address()], seeds: Vec::new() });
        fetcher.fetch(&meta, peers, &run.join("fetched"), options).await?;
        let elapsed = began.elapsed();
        let rate = meta.size() as f64 / elapsed.as_secs_f64() / f64::from(1 << 20);
        let cap = cap.map_or("none".to_string(), |cap| format!("{} MiB/s", cap >> 20));
        println!("{mib} MiB, cap {cap}: {elapsed:.2?}, {rate:.1} MiB/s, {} bytes uploaded", seeder.uploaded_bytes());
        seeder.shutdown().await?;
        fetcher.shutdown().await?;
    }
    std::fs::remove_dir_all(&dir).expect("remove the temporary directory");
    Ok(())
}
