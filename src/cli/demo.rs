//! `qswarm demo [--leechers N] [--size BYTES]`: a whole swarm in one process on 127.0.0.1 only — a DHT
//! bootstrap node, a seeder of a generated file and N leechers that know only the infohash (they find the
//! seeder and each other through the DHT and fetch the metadata from peers). Live bars on a terminal, then a
//! summary table (time, MB/s, downloaded/uploaded, share ratio per peer) and a byte-for-byte check of every copy.

use crate::cli::create::{build, parse_size, scan};
use crate::cli::fetch::runtime;
use crate::cli::progress::Bars;
use crate::dht::node::Config as DhtConfig;
use crate::net::dht::{start as start_dht, DhtOptions};
use crate::net::session::{
    AddTorrent, Session, SessionConfig, SessionEvent, TorrentHandle, TorrentSource,
};
use anyhow::{bail, Context};
use indicatif::HumanBytes;
use rand::{RngCore, SeedableRng};
use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of leechers.
    #[arg(long, default_value_t = 8)]
    pub leechers: usize,
    /// Size of the shared file in bytes (K/M/G suffixes).
    #[arg(long, value_parser = parse_size, default_value = "64M")]
    pub size: u64,
}

/// Longest the demo waits for every leecher.
const DEMO_TIMEOUT: Duration = Duration::from_secs(600);

struct Member {
    label: String,
    handle: TorrentHandle,
    session: Session,
    bar: crate::cli::progress::TorrentBar,
    seconds: Option<f64>,
    path: PathBuf,
}

fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0051_5741_524d);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn sha1_file(path: &Path) -> anyhow::Result<[u8; 20]> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.leechers == 0 || args.leechers > 64 {
        return Err(crate::cli::bad_input("--leechers must be between 1 and 64"));
    }
    if args.size == 0 {
        return Err(crate::cli::bad_input("--size must be at least 1 byte"));
    }
    let root = std::env::temp_dir().join(format!("qswarm-demo-{}", std::process::id()));
    std::fs::create_dir_all(root.join("seed")).context("creating the demo directory")?;
    let r = runtime()?.block_on(demo(&args, &root));
    let _ = std::fs::remove_dir_all(&root);
    r
}

async fn demo(args: &DemoArgs, root: &Path) -> anyhow::Result<()> {
    let bars = Bars::new(true);
    let file = root.join("seed").join("demo.bin");
    bars.println(&format!(
        "demo: generating {} of random data in {}",
        HumanBytes(args.size),
        root.display()
    ));
    tokio::task::block_in_place(|| generate(&file, args.size))?;
    let src = scan(&file)?;
    let meta = tokio::task::block_in_place(|| build(&src, None, None, false))?;
    let ih = meta.info_hash;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (boot, _task) = start_dht(DhtOptions {
        listen: any,
        state: None,
        config: DhtConfig::default(),
    })
    .await
    .context("starting the bootstrap DHT node")?;
    let cfg = SessionConfig {
        bootstrap: vec![boot.local_addr()],
        ..SessionConfig::loopback()
    };
    bars.println(&format!(
        "demo: DHT bootstrap node {}, 1 seeder, {} leechers on 127.0.0.1; infohash {ih}",
        boot.local_addr(),
        args.leechers
    ));
    let start = Instant::now();
    let seeder = Session::start(cfg.clone()).await?;
    let mut add = AddTorrent::new(
        TorrentSource::Metainfo(Box::new(meta.clone())),
        root.join("seed"),
    );
    add.trusted_complete = true;
    let handle = seeder.add(add).await?;
    let mut members = vec![Member {
        label: "seeder".into(),
        bar: bars.add("seeder"),
        handle,
        session: seeder,
        seconds: Some(0.0),
        path: file.clone(),
    }];
    let mut starts = Vec::new();
    for _ in 0..args.leechers {
        starts.push(tokio::spawn(Session::start(cfg.clone())));
    }
    for (i, s) in starts.into_iter().enumerate() {
        let session = s.await.context("starting a leecher")??;
        let dir = root.join(format!("leecher{}", i + 1));
        let handle = session.fetch(ih, &dir, Vec::new()).await?;
        let label = format!("leecher {}", i + 1);
        members.push(Member {
            bar: bars.add(&label),
            label,
            handle,
            session,
            seconds: None,
            path: dir.join(&meta.name),
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        for m in members.iter_mut() {
            while let Ok(e) = m.handle.events.try_recv() {
                match e {
                    SessionEvent::Complete { seconds, .. } if m.seconds.is_none() => {
                        m.seconds = Some(seconds)
                    }
                    SessionEvent::Error { message } => bail!("{}: {message}", m.label),
                    _ => {}
                }
            }
            m.bar.update(&m.handle.status.borrow());
        }
        if members.iter().all(|m| m.seconds.is_some()) {
            break;
        }
        if start.elapsed() > DEMO_TIMEOUT {
            bail!(
                "the demo did not finish within {} s",
                DEMO_TIMEOUT.as_secs()
            );
        }
    }
    let total = start.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for m in &members {
        m.handle.stop().await;
        let s = m.handle.status.borrow().clone();
        m.bar.update(&s);
        m.bar.finish();
        rows.push((m.label.clone(), m.seconds, s.downloaded, s.uploaded));
    }
    let want = tokio::task::block_in_place(|| sha1_file(&file))?;
    let mut identical = 0;
    for m in members.iter().skip(1) {
        if tokio::task::block_in_place(|| sha1_file(&m.path))? == want {
            identical += 1;
        }
    }
    for m in members {
        m.session.shutdown().await;
    }
    boot.shutdown();
    let mut table = vec![String::new()];
    table.push(format!(
        "{:<10} {:>8} {:>9} {:>12} {:>12} {:>7}",
        "peer", "time s", "MB/s", "downloaded", "uploaded", "ratio"
    ));
    let mb = args.size as f64 / 1e6;
    for (label, secs, down, up) in &rows {
        let (t, rate) = match secs {
            Some(s) if *down > 0 => (format!("{s:.2}"), format!("{:.1}", mb / s.max(1e-3))),
            _ => ("-".into(), "-".into()),
        };
        let ratio = if *down > 0 {
            format!("{:.2}", *up as f64 / *down as f64)
        } else {
            "-".into()
        };
        table.push(format!(
            "{label:<10} {t:>8} {rate:>9} {:>12} {:>12} {ratio:>7}",
            HumanBytes(*down).to_string(),
            HumanBytes(*up).to_string()
        ));
    }
    let n = rows.len() - 1;
    table.push(format!(
        "\n{n} leechers fetched {} each in {total:.2} s ({:.1} MB/s aggregate); {identical}/{n} copies byte-identical to the original",
        HumanBytes(args.size),
        mb * n as f64 / total
    ));
    bars.println(&table.join("\n"));
    if identical != n {
        bail!("{} copies differ from the original", n - identical);
    }
    Ok(())
}
