//! `qswarm fetch <INFOHASH | MAGNET | FILE.torrent>`: find peers (DHT, `--peer`, magnet `x.pe`, PEX), fetch the
//! metadata when only the infohash is known, download and verify every piece into `-o DIR`, exit 0 when
//! complete (or go on seeding with `--seed`). Ctrl-C / SIGTERM save the resume state (in `DIR/.qswarm/`); the
//! same command again continues where it stopped. Also [`drive`], the event loop `seed` shares.

use crate::cli::create::parse_size;
use crate::cli::events::Out;
use crate::cli::net_opts::{resolve_all, NetOpts};
use crate::cli::{bad_input, BadInput};
use crate::metainfo::{InfoHash, Magnet, Metainfo};
use crate::net::session::{
    AddTorrent, Session, SessionConfig, SessionEvent, TorrentHandle, TorrentSource,
};
use anyhow::Context;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// What to fetch: a 40-hex-digit (or 32-base32) infohash, a magnet link, or a .torrent file.
    pub target: String,
    /// Directory to download into.
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    #[command(flatten)]
    pub net: NetOpts,
    /// Keep seeding after the download completes (until Ctrl-C).
    #[arg(long)]
    pub seed: bool,
    /// Give up (exit 1) when no data has arrived for SECS seconds (no peers found, or all stalled).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Upload rate limit in bytes/s for all peers together (K/M/G suffixes, powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    pub upload_limit: Option<u64>,
    /// Download rate limit in bytes/s for all peers together (K/M/G suffixes, powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    pub download_limit: Option<u64>,
}

/// Parse the target into a source and any magnet `x.pe` peers.
fn parse_target(t: &str) -> anyhow::Result<(TorrentSource, Vec<String>)> {
    if t.starts_with("magnet:") {
        let m: Magnet = t.parse().map_err(bad_input)?;
        return Ok((TorrentSource::InfoHash(m.info_hash), m.peers));
    }
    if let Ok(h) = t.parse::<InfoHash>() {
        return Ok((TorrentSource::InfoHash(h), Vec::new()));
    }
    let path = PathBuf::from(t);
    if path.is_file() {
        let bytes = std::fs::read(&path)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
        let m = Metainfo::from_bytes(&bytes)
            .map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        return Ok((TorrentSource::Metainfo(Box::new(m)), Vec::new()));
    }
    Err(bad_input(format!(
        "`{t}` is not an infohash (40 hex digits or 32 base32 characters), a magnet link or a .torrent file"
    )))
}

/// One worker thread: the reactor's tasks (quinn's drivers, the connection readers and writers, the torrent
/// task) hand work to each other many times per block, and on one thread a wake-up is a queue push instead of a
/// futex wake and a context switch on the other core; hashing and disk I/O have their own threads. Measured on
/// scenario 1 (1 GiB, medians of 3, same run): leecher + seeder CPU 4.08 -> 3.60 s per GiB against 2 workers.
/// Multi-thread rather than current-thread so that `block_in_place` keeps working.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Start the session and print the `listening` line (the bound ports), as `fetch` and `seed` both do first.
pub async fn start_session(cfg: SessionConfig, out: &Out) -> anyhow::Result<Session> {
    let session = Session::start(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    out.listening(session.quic_addr(), session.dht_addr());
    Ok(session)
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let (source, magnet_peers) = parse_target(&args.target)?;
    let mut peers = args.net.peers()?;
    peers.extend(resolve_all("magnet x.pe", &magnet_peers)?);
    let mut cfg = args.net.session_config()?;
    cfg.upload_limit = args.upload_limit;
    cfg.download_limit = args.download_limit;
    if args.output.exists() && !args.output.is_dir() {
        return Err(bad_input(format!(
            "-o {}: not a directory",
            args.output.display()
        )));
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let out = Out::new(args.net.json);
    let rt = runtime()?;
    rt.block_on(async {
        let session = start_session(cfg, &out).await?;
        let mut add = AddTorrent::new(source, &args.output);
        add.peers = peers;
        add.use_dht = !args.net.no_dht;
        let handle = session.add(add).await?;
        let r = drive(
            &out,
            handle,
            !args.seed,
            args.timeout.map(Duration::from_secs),
        )
        .await;
        session.shutdown().await;
        r
    })
    .inspect_err(|e| {
        if e.downcast_ref::<BadInput>().is_none() {
            out.error(&format!("{e:#}"));
        }
    })
}

/// Run one torrent until it completes (`exit_on_complete`), fails, times out or the user stops it; renders
/// events and progress. Ctrl-C / SIGTERM stop it cleanly (resume state saved): `Ok` for a seeder or a complete
/// torrent, an error otherwise.
pub async fn drive(
    out: &Out,
    mut handle: TorrentHandle,
    exit_on_complete: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let mut bar = out.bars.add("qswarm");
    bar.set_seeding(!exit_on_complete);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut json_tick = Instant::now();
    let mut last_data = (Instant::now(), 0u64, false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // Made once, not a `ctrl_c()` future per round: that would miss a Ctrl-C arriving while the loop body runs
    // (a seeder once ignored the SIGINT sent right after its leecher finished).
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let result = loop {
        tokio::select! {
            e = handle.events.recv() => match e {
                Some(e) => {
                    // An error ends the loop and is printed once by the caller (`run` of fetch/seed).
                    if !matches!(e, SessionEvent::Error { .. }) {
                        out.event(&e);
                    }
                    match e {
                        SessionEvent::Complete { .. } if exit_on_complete => break Ok(()),
                        SessionEvent::Error { message } => break Err(anyhow::anyhow!(message)),
                        _ => {}
                    }
                }
                None => break Err(anyhow::anyhow!("the torrent stopped unexpectedly")),
            },
            _ = tick.tick() => {
                let s = handle.status.borrow().clone();
                bar.update(&s);
                if out.json && json_tick.elapsed() >= Duration::from_secs(1) {
                    json_tick = Instant::now();
                    out.progress(&s);
                }
                if s.downloaded != last_data.1 || s.metadata != last_data.2 || s.complete {
                    last_data = (Instant::now(), s.downloaded, s.metadata);
                }
                if let Some(t) = timeout {
                    if last_data.0.elapsed() >= t {
                        let what = if s.peers == 0 {
                            format!("no peer for {} was found", handle.info_hash)
                        } else {
                            format!("{} peer(s) connected but none sent data", s.peers)
                        };
                        break Err(anyhow::anyhow!(
                            "{what} within --timeout {} s; check the infohash, --bootstrap and --peer, or try again later (resume state saved)",
                            t.as_secs()
                        ));
                    }
                }
            }
            _ = int.recv() => break Err(Interrupted.into()),
            _ = term.recv() => break Err(Interrupted.into()),
        }
    };
    handle.stop().await;
    let s = handle.status.borrow().clone();
    bar.update(&s);
    bar.finish();
    match result {
        Err(e) if e.is::<Interrupted>() && s.complete => Ok(()),
        Err(e) if e.is::<Interrupted>() => Err(anyhow::anyhow!(
            "interrupted at {}/{} pieces; resume state saved, run the same command again to continue",
            s.have,
            s.pieces
        )),
        r => r,
    }
}

/// Ctrl-C or SIGTERM.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}
