//! Raw transport benchmark (issue 4): one QUIC connection on loopback, `QSWARM_BENCH_BYTES` (default 1 GiB) of
//! 16 KiB `piece` messages from one peer to another through the real codec and connection driver, beside a bare
//! quinn stream (no codec) on the same kind of connection, and one uni stream per piece message (the
//! alternative DESIGN §4 asks us to measure: "codec-uni" through the driver with `piece_streams`, "uni" by hand
//! without channels). Modes alternate; `QSWARM_BENCH_RUNS` rounds (default 3); medians.
//! `QSWARM_BENCH_MTU` overrides the MTU discovery upper bound, `QSWARM_BENCH_MODES` picks modes
//! (comma-separated: bare,codec,codec-uni,uni), `QSWARM_BENCH_WORKERS` the tokio worker threads (default 2: one per
//! end, as two clients with one worker each).

use bytes::{Bytes, BytesMut};
use qswarm::metainfo::InfoHash;
use qswarm::net::{PeerConn, QuicConfig, Transport};
use qswarm::wire::codec::piece_header;
use qswarm::wire::{Decoder, Handshake, Limits, Message, PeerId, BLOCK_SIZE};
use std::time::{Duration, Instant};

const IH: InfoHash = InfoHash([0x42; 20]);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn pair(a: &Transport, b: &Transport) -> (PeerConn, PeerConn) {
    let addr = a.local_addr().unwrap();
    let accept = async {
        let inc = a.accept().await.unwrap();
        inc.handshake(
            |h| Some(Handshake::new(h.info_hash, PeerId([1; 20]))),
            Limits::default(),
        )
        .await
        .unwrap()
    };
    let connect = async {
        b.connect(addr, Handshake::new(IH, PeerId([2; 20])), Limits::default())
            .await
            .unwrap()
    };
    let (server, client) = tokio::join!(accept, connect);
    (client, server)
}

/// Seconds to move `total` payload bytes in 16 KiB blocks from `tx` to `rx` with `mode`.
async fn run(mode: &str, tx: PeerConn, rx: PeerConn, total: u64) -> Duration {
    let block = Bytes::from(vec![0x5au8; BLOCK_SIZE as usize]);
    let blocks = total / u64::from(BLOCK_SIZE);
    // bare / uni use the QUIC connection by hand: stop both drivers first (they would accept our streams).
    let raw = (tx.connection.clone(), rx.connection.clone());
    let (mut tx, mut rx) = if mode == "bare" || mode == "uni" {
        drop((tx, rx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        (None, None)
    } else {
        (Some(tx), Some(rx))
    };
    let start = Instant::now();
    match mode {
        "bare" => {
            let c = raw.0.clone();
            let sender = tokio::spawn(async move {
                let mut s = c.open_uni().await.unwrap();
                for _ in 0..blocks / 16 {
                    let mut chunks: Vec<Bytes> = (0..16).map(|_| block.clone()).collect();
                    s.write_all_chunks(&mut chunks).await.unwrap();
                }
                s.finish().unwrap();
                s.stopped().await.ok();
            });
            let mut r = raw.1.accept_uni().await.unwrap();
            let mut got = 0u64;
            while let Some(chunk) = r.read_chunk(usize::MAX, true).await.unwrap() {
                got += chunk.bytes.len() as u64;
            }
            assert_eq!(got, blocks / 16 * 16 * u64::from(BLOCK_SIZE));
            sender.await.unwrap();
        }
        "codec" | "codec-uni" => {
            let (tx, rx) = (tx.take().unwrap(), rx.as_mut().unwrap());
            let sender = tokio::spawn(async move {
                for i in 0..blocks {
                    let msg = Message::Piece {
                        piece: (i / 64) as u32,
                        offset: (i % 64) as u32 * BLOCK_SIZE,
                        data: block.clone().into(),
                    };
                    tx.tx.send(msg).await.unwrap();
                }
                tx
            });
            let mut got = 0u64;
            while got < blocks * u64::from(BLOCK_SIZE) {
                match rx.rx.recv().await.unwrap().unwrap() {
                    Message::Piece { data, .. } => got += data.len() as u64,
                    Message::KeepAlive => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            drop(sender.await.unwrap());
        }
        "uni" => {
            let c = raw.0.clone();
            let sender = tokio::spawn(async move {
                for i in 0..blocks {
                    let mut s = c.open_uni().await.unwrap();
                    let hdr =
                        Bytes::copy_from_slice(&piece_header((i / 64) as u32, 0, block.len()));
                    s.write_all_chunks(&mut [hdr, block.clone()]).await.unwrap();
                    s.finish().unwrap();
                }
            });
            let dec = Decoder::default();
            let mut got = 0u64;
            for _ in 0..blocks {
                let mut r = raw.1.accept_uni().await.unwrap();
                let mut buf = BytesMut::new();
                while let Some(chunk) = r.read_chunk(usize::MAX, true).await.unwrap() {
                    buf.extend_from_slice(&chunk.bytes);
                }
                if let Some(Message::Piece { data, .. }) = dec.decode(&mut buf).unwrap() {
                    got += data.len() as u64;
                }
            }
            assert_eq!(got, blocks * u64::from(BLOCK_SIZE));
            sender.await.unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    let elapsed = start.elapsed();
    drop(rx);
    elapsed
}

/// CPU seconds (user + system, all threads) this process has used so far, from /proc/self/stat
/// (Linux; clock ticks of 10 ms). Under a loaded machine, CPU per GiB is steadier than wall-clock MB/s.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // After the name: state (not numeric, dropped), then ppid = field 4; utime and stime are fields 14 and 15.
    match (f.get(10), f.get(11)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let total: u64 = env("QSWARM_BENCH_BYTES", 1u64 << 30);
    let runs: usize = env("QSWARM_BENCH_RUNS", 3);
    let modes: String = env("QSWARM_BENCH_MODES", "bare,codec,codec-uni,uni".to_string());
    let modes: Vec<&str> = modes.split(',').collect();
    let mut config = QuicConfig::default();
    config.mtu_upper_bound = env("QSWARM_BENCH_MTU", config.mtu_upper_bound);
    config.send_window = env("QSWARM_BENCH_SEND_WINDOW", config.send_window);
    // Both ends live in this process: two workers stand for two clients with one each (src/cli/fetch.rs).
    // With one worker both ends share a core: about half the MB/s at the same CPU per GiB.
    let workers: usize = env("QSWARM_BENCH_WORKERS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = Transport::bind("127.0.0.1:0".parse().unwrap(), config.clone()).unwrap();
        let b = Transport::bind("127.0.0.1:0".parse().unwrap(), config.clone()).unwrap();
        // The same driver with `piece_streams` on: each piece message on its own uni stream.
        let uni_config = QuicConfig { piece_streams: true, ..config.clone() };
        let a_uni = Transport::bind("127.0.0.1:0".parse().unwrap(), uni_config.clone()).unwrap();
        let b_uni = Transport::bind("127.0.0.1:0".parse().unwrap(), uni_config).unwrap();
        println!(
            "transport bench: {} MiB per run, {runs} rounds, {workers} worker(s), mtu_upper_bound {}, send_window {} MiB, modes {modes:?}",
            total >> 20,
            config.mtu_upper_bound,
            config.send_window >> 20
        );
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for round in 0..runs {
            for (i, mode) in modes.iter().enumerate() {
                let (tx, rx) = if *mode == "codec-uni" { pair(&a_uni, &b_uni).await } else { pair(&a, &b).await };
                // quinn sends MTU probes only when it has nothing else to send: give discovery a moment on the
                // idle connection, as a real peer gets while handshakes and bitfields cross.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let conn = tx.connection.clone();
                let cpu0 = cpu_seconds();
                let secs = run(mode, tx, rx, total).await.as_secs_f64();
                let cpu = (cpu_seconds() - cpu0) / (total as f64 / (1u64 << 30) as f64);
                let mbs = total as f64 / secs / 1e6;
                let path = conn.stats().path;
                let mtu = format!("{} ({} probes, {} lost)", path.current_mtu, path.sent_plpmtud_probes, path.lost_plpmtud_probes);
                println!("round {round} {mode:>5}: {mbs:8.1} MB/s ({secs:.2} s, {cpu:.2} CPU-s/GiB both ends, MTU {mtu})");
                results[i].push(mbs);
                cpus[i].push(cpu);
            }
        }
        let mut med = Vec::new();
        for ((mode, r), c) in modes.iter().zip(results.iter_mut()).zip(cpus.iter_mut()) {
            let m = median(r);
            println!("median {mode:>5}: {m:8.1} MB/s, {:.2} CPU-s/GiB", median(c));
            med.push((*mode, m));
        }
        let get = |name: &str| med.iter().find(|(m, _)| *m == name).map(|(_, v)| *v);
        if let (Some(bare), Some(codec)) = (get("bare"), get("codec")) {
            println!("codec/bare: {:.1}% (target >= 90%)", codec / bare * 100.0);
        }
        for other in ["codec-uni", "uni"] {
            if let (Some(bare), Some(x)) = (get("bare"), get(other)) {
                println!("{other}/bare: {:.1}%", x / bare * 100.0);
            }
        }
    });
}
