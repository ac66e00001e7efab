//! Measures what a durable commit costs on this machine, for the README's durability
//! section: sequential commits (one writer waiting on each flush) and 64 concurrent
//! committers (group commit), for each durability mode.
//!
//! `cargo run --release --example durability_probe [-- DIR]` (DIR defaults to a temp dir;
//! point it at the disk the data directory will live on).

use std::time::{Duration, Instant};

use fasthook::store::{ops, Durability, Store};

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<7} {:>14} {:>16} {:>18}",
        "mode", "sequential/s", "seq p50 (µs)", "64 concurrent/s"
    );
    for mode in [Durability::Fsync, Durability::Flush, Durability::None] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        rt.block_on(async {
            let store = Store::open(dir.path(), mode, Duration::ZERO).expect("open store");
            let body = vec![b'x'; 1024];
            let mut lat = Vec::new();
            let started = Instant::now();
            let n = 500;
            for i in 0u64..n {
                let t = Instant::now();
                store
                    .commit(vec![ops::put(format!("probe/{i}").into_bytes(), &body)])
                    .await
                    .expect("commit");
                lat.push(t.elapsed());
            }
            let seq_rate = n as f64 / started.elapsed().as_secs_f64();
            lat.sort();
            let started = Instant::now();
            let total = 20_000u64;
            let tasks: Vec<_> = (0..64u64)
                .map(|t| {
                    let store = store.clone();
                    let body = body.clone();
                    tokio::spawn(async move {
                        for i in 0..total / 64 {
                            store
                                .commit(vec![ops::put(format!("c/{t}/{i}").into_bytes(), &body)])
                                .await
                                .expect("commit");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            let conc_rate = total as f64 / started.elapsed().as_secs_f64();
            println!(
                "{:<7} {:>14.0} {:>16} {:>18.0}",
                format!("{mode:?}"),
                seq_rate,
                lat[lat.len() / 2].as_micros(),
                conc_rate
            );
            store.close().await;
        });
    }
}
