//! `qswarm dht`: a standalone DHT node (a bootstrap node for others). Prints the `listening` line first,
//! reloads and saves its routing table (`--state`), serves until Ctrl-C / SIGTERM (then saves and exits 0).
//! For scripts and tests it can also announce (`--announce INFOHASH:PORT`) and look up (`--get-peers
//! INFOHASH`, printing each new peer as a `peer` line/event), and stop by itself (`--exit-after SECS`).

use crate::cli::bad_input;
use crate::dht::node::{decode_state, encode_state, Config};
use crate::dht::Event;
use crate::metainfo::InfoHash;
use crate::net::dht::{start, DhtHandle, DhtOptions};
use anyhow::Context;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public mainline routers, used only when none of `--bootstrap`, `--no-bootstrap`, `--state` is given.
pub const DEFAULT_ROUTERS: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
];

#[derive(Debug, clap::Args)]
pub struct DhtArgs {
    /// UDP address of the DHT node (port 0 = any free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:6882")]
    pub dht_listen: SocketAddr,
    /// DHT bootstrap node, repeatable. Default: the public mainline routers, but only when none of
    /// --bootstrap, --no-bootstrap and --state is given (with --state, the saved nodes are the way in).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Start alone (the first node of a network): contact no bootstrap node.
    #[arg(long)]
    pub no_bootstrap: bool,
    /// Routing-table state file: loaded at start if present, saved every minute and at exit.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Announce that INFOHASH is served on PORT (re-announced periodically), repeatable.
    #[arg(long, value_name = "INFOHASH:PORT")]
    pub announce: Vec<String>,
    /// Look up peers for INFOHASH every 5 s, printing each new one as a `peer` event, repeatable.
    #[arg(long, value_name = "INFOHASH")]
    pub get_peers: Vec<String>,
    /// Re-announce interval in seconds (default 900 = 15 min).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub reannounce: u64,
    /// Exit (saving state) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub exit_after: Option<u64>,
}

fn parse_announce(s: &str) -> anyhow::Result<(InfoHash, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| bad_input(format!("--announce `{s}`: expected INFOHASH:PORT")))?;
    let h: InfoHash = h.parse().map_err(bad_input)?;
    let p: u16 = p
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad_input(format!("--announce `{s}`: bad port")))?;
    Ok((h, p))
}

fn emit(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub fn run(args: DhtArgs) -> anyhow::Result<()> {
    let announces = args
        .announce
        .iter()
        .map(|s| parse_announce(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lookups = args
        .get_peers
        .iter()
        .map(|s| s.parse::<InfoHash>().map_err(bad_input))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state = match &args.state {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading DHT state {}", path.display()))?;
            Some(decode_state(&bytes).map_err(|e| bad_input(format!("{}: {e}", path.display())))?)
        }
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, state, announces, lookups))
}

async fn resolve(hosts: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for h in hosts {
        match tokio::net::lookup_host(h.as_str()).await {
            Ok(addrs) => out.extend(addrs.filter(SocketAddr::is_ipv4)),
            Err(e) => eprintln!("warning: cannot resolve bootstrap node {h}: {e}"),
        }
    }
    out
}

async fn save(handle: &DhtHandle, path: &Path) -> anyhow::Result<()> {
    let Some((id, nodes)) = handle.export().await else {
        return Ok(());
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, encode_state(id, &nodes))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("saving DHT state to {}", path.display()))?;
    Ok(())
}

async fn serve(
    args: DhtArgs,
    state: Option<(crate::dht::NodeId, Vec<crate::dht::NodeInfo>)>,
    announces: Vec<(InfoHash, u16)>,
    lookups: Vec<InfoHash>,
) -> anyhow::Result<()> {
    let had_nodes = state.as_ref().is_some_and(|(_, n)| !n.is_empty());
    let config = Config {
        reannounce: Duration::from_secs(args.reannounce.max(1)),
        ..Config::default()
    };
    let opts = DhtOptions {
        listen: args.dht_listen,
        state,
        config,
    };
    let (handle, _task) = start(opts)
        .await
        .with_context(|| format!("binding the DHT to {}", args.dht_listen))?;
    let json = args.json;
    let addr = handle.local_addr();
    emit(
        json,
        serde_json::json!({"event": "listening", "dht": addr.to_string()}),
        format!("listening dht={addr}"),
    );

    let mut events = handle.events();
    let hosts: Vec<String> = if !args.bootstrap.is_empty() {
        args.bootstrap.clone()
    } else if args.no_bootstrap || args.state.is_some() {
        Vec::new()
    } else {
        DEFAULT_ROUTERS.iter().map(|s| s.to_string()).collect()
    };
    let boot = resolve(&hosts).await;
    let bootstrapping = !boot.is_empty() || had_nodes;
    if bootstrapping {
        handle.bootstrap(boot);
    }
    let mut started = !bootstrapping;
    let mut seen: HashSet<(InfoHash, std::net::SocketAddrV4)> = HashSet::new();
    let (peer_tx, mut peer_rx) = tokio::sync::mpsc::unbounded_channel();
    let start_ops = |handle: &DhtHandle| {
        for (h, p) in &announces {
            let mut rx = handle.announce(*h, *p);
            let tx = peer_tx.clone();
            let h = *h;
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let _ = tx.send((h, p));
                }
            });
        }
    };
    if started {
        start_ops(&handle);
    }
    let mut lookup_tick = tokio::time::interval(Duration::from_secs(5));
    let mut save_tick = tokio::time::interval(Duration::from_secs(60));
    let exit_after = async {
        match args.exit_after {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit_after);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    // Listening from here on: a `ctrl_c()` future made anew in each round of the loop would miss a Ctrl-C that
    // arrives while the loop body runs.
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing SIGINT handler")?;
    loop {
        #[cfg(unix)]
        let (sigterm, sigint) = (term.recv(), int.recv());
        #[cfg(not(unix))]
        let (sigterm, sigint) = (
            std::future::pending::<Option<()>>(),
            tokio::signal::ctrl_c(),
        );
        tokio::select! {
            _ = sigint => break,
            _ = sigterm => break,
            _ = &mut exit_after => break,
            _ = lookup_tick.tick(), if started => {
                for h in &lookups {
                    let mut rx = handle.get_peers(*h);
                    let tx = peer_tx.clone();
                    let h = *h;
                    tokio::spawn(async move {
                        while let Some(p) = rx.recv().await {
                            let _ = tx.send((h, p));
                        }
                    });
                }
            }
            _ = save_tick.tick() => {
                if let Some(path) = &args.state {
                    if let Err(e) = save(&handle, path).await {
                        eprintln!("warning: {e:#}");
                    }
                }
            }
            Some((h, p)) = peer_rx.recv() => {
                if seen.insert((h, p)) {
                    emit(json, serde_json::json!({"event": "peer", "info_hash": h.to_hex(), "addr": p.to_string()}),
                        format!("peer info_hash={h} addr={p}"));
                }
            }
            ev = events.recv() => match ev {
                Ok(Event::Bootstrapped { nodes }) => {
                    emit(json, serde_json::json!({"event": "bootstrapped", "nodes": nodes}), format!("bootstrapped nodes={nodes}"));
                    if !started {
                        started = true;
                        start_ops(&handle);
                        lookup_tick.reset_immediately();
                    }
                }
                Ok(Event::Announced { info_hash, port, nodes }) => emit(
                    json,
                    serde_json::json!({"event": "announced", "info_hash": info_hash.to_hex(), "port": port, "nodes": nodes}),
                    format!("announced info_hash={info_hash} port={port} nodes={nodes}"),
                ),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Some(path) = &args.state {
        save(&handle, path).await?;
    }
    handle.shutdown();
    Ok(())
}
