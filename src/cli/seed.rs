//! `qswarm seed <FILE.torrent | PATH> [--data PATH]`: verify the data against the torrent (fast when the
//! resume state in `<data dir>/.qswarm/` vouches for it; a PATH is hashed into a torrent in memory and trusted),
//! listen on QUIC, join the DHT and announce (re-announced every 15 min), serve under the choker, show upload
//! progress, stop cleanly on Ctrl-C / SIGTERM.

use crate::cli::create::{build, parse_size, scan};
use crate::cli::events::Out;
use crate::cli::fetch::{drive, runtime, start_session};
use crate::cli::net_opts::NetOpts;
use crate::cli::{bad_input, BadInput};
use crate::metainfo::Metainfo;
use crate::net::session::{AddTorrent, TorrentSource};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// A .torrent file, or a file or directory to share (hashed into a torrent in memory).
    pub source: PathBuf,
    /// Where the torrent's data is (the file, or the directory of a multi-file torrent)
    /// [default: <NAME> next to the .torrent file].
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetOpts,
    /// Upload rate limit in bytes/s for all peers together (K/M/G suffixes, powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    pub upload_limit: Option<u64>,
}

fn is_torrent(path: &Path) -> Option<Metainfo> {
    if !path.is_file() || path.metadata().ok()?.len() > 64 << 20 {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    Metainfo::from_bytes(&bytes).ok()
}

pub fn run(args: SeedArgs) -> anyhow::Result<()> {
    let torrent = is_torrent(&args.source);
    if torrent.is_none()
        && args
            .source
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("torrent"))
    {
        let bytes = std::fs::read(&args.source)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", args.source.display())))?;
        let err = Metainfo::from_bytes(&bytes).err();
        return Err(bad_input(format!(
            "{}: not a valid torrent: {}",
            args.source.display(),
            err.map_or_else(String::new, |e| e.to_string())
        )));
    }
    let (data, source) = match &torrent {
        Some(m) => {
            let data = args
                .data
                .clone()
                .unwrap_or_else(|| args.source.parent().unwrap_or(Path::new(".")).join(&m.name));
            if !data.exists() {
                return Err(bad_input(format!(
                    "the data of {} is not at {}: give its location with --data PATH",
                    m.name,
                    data.display()
                )));
            }
            (data, None)
        }
        None => (args.source.clone(), Some(scan(&args.source)?)),
    };
    let data = std::fs::canonicalize(&data)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", data.display())))?;
    let dir = data.parent().unwrap_or(Path::new("/")).to_path_buf();
    let data_name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| bad_input(format!("{}: not a file or directory name", data.display())))?;
    let peers = args.net.peers()?;
    let mut cfg = args.net.session_config()?;
    cfg.upload_limit = args.upload_limit;
    let out = Out::new(args.net.json);
    let rt = runtime()?;
    rt.block_on(async {
        let session = start_session(cfg, &out).await?;
        let (meta, trusted) = match (torrent, source) {
            (Some(m), _) => (m, false),
            (None, Some(src)) => {
                let m = tokio::task::block_in_place(|| build(&src, None, None, false))?;
                (m, true)
            }
            (None, None) => unreachable!("either a torrent or a source"),
        };
        if !out.json {
            out.bars.println(&format!("infohash: {}", meta.info_hash));
            out.bars.println(&format!("magnet: {}", meta.magnet()));
        }
        let mut add = AddTorrent::new(TorrentSource::Metainfo(Box::new(meta)), dir);
        add.data_name = Some(data_name);
        add.peers = peers;
        add.trusted_complete = trusted;
        add.use_dht = !args.net.no_dht;
        let handle = session.add(add).await?;
        let r = drive(&out, handle, false, None).await;
        session.shutdown().await;
        r
    })
    .inspect_err(|e| {
        if e.downcast_ref::<BadInput>().is_none() {
            out.error(&format!("{e:#}"));
        }
    })
}
