//! NET OPTIONS of DESIGN.md §1, shared by `seed`, `fetch` (and usable by `dht`): the QUIC and DHT listen
//! addresses, bootstrap nodes (the public mainline routers only when none is given), direct peers, `--no-dht`,
//! `--json`; and their resolution into a [`SessionConfig`].

use crate::cli::bad_input;
use crate::cli::dht::DEFAULT_ROUTERS;
use crate::net::session::SessionConfig;
use crate::net::{Congestion, QuicConfig};
use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, clap::Args)]
pub struct NetOpts {
    /// QUIC peer endpoint, UDP (port 0 = any free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// DHT node, UDP (port 0 = any free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:6882")]
    pub dht_listen: SocketAddr,
    /// DHT bootstrap node, repeatable [default: the public mainline routers].
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Connect to this peer directly, repeatable (retried until it answers).
    #[arg(long, value_name = "ADDR:PORT")]
    pub peer: Vec<String>,
    /// Do not start a DHT node (then --peer and magnet x.pe are the only ways to find peers).
    #[arg(long)]
    pub no_dht: bool,
    /// Events as JSON lines on stdout, no progress bars.
    #[arg(long)]
    pub json: bool,
    /// QUIC congestion control: `auto` is BBR (keeps lossy links full) unless --listen is a loopback address
    /// (then Cubic, faster there); `cubic` or `bbr` force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub congestion: CongestionOpt,
}

/// `--congestion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CongestionOpt {
    Auto,
    Cubic,
    Bbr,
}

impl CongestionOpt {
    /// The controller for a process whose QUIC endpoint listens on `listen`.
    pub fn resolve(self, listen: SocketAddr) -> Congestion {
        match self {
            CongestionOpt::Cubic => Congestion::Cubic,
            CongestionOpt::Bbr => Congestion::Bbr,
            CongestionOpt::Auto if listen.ip().is_loopback() => Congestion::Cubic,
            CongestionOpt::Auto => Congestion::Bbr,
        }
    }
}

/// Resolve `host:port` strings (IPv4 only, like the DHT); an unresolvable one is bad input.
pub fn resolve_all(what: &str, hosts: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for h in hosts {
        let addrs = h
            .to_socket_addrs()
            .map_err(|e| bad_input(format!("{what} `{h}`: {e} (expected HOST:PORT)")))?;
        out.extend(addrs.filter(SocketAddr::is_ipv4).take(1));
    }
    Ok(out)
}

impl NetOpts {
    /// Direct peers from `--peer` (bad input when one is not `ADDR:PORT`).
    pub fn peers(&self) -> anyhow::Result<Vec<SocketAddr>> {
        resolve_all("--peer", &self.peer)
    }

    /// The session configuration. Public routers that do not resolve are skipped with a warning.
    pub fn session_config(&self) -> anyhow::Result<SessionConfig> {
        let bootstrap = if self.no_dht {
            Vec::new()
        } else if self.bootstrap.is_empty() {
            DEFAULT_ROUTERS
                .iter()
                .filter_map(|h| match h.to_socket_addrs() {
                    Ok(mut a) => a.find(SocketAddr::is_ipv4),
                    Err(e) => {
                        eprintln!("warning: cannot resolve bootstrap node {h}: {e}");
                        None
                    }
                })
                .collect()
        } else {
            resolve_all("--bootstrap", &self.bootstrap)?
        };
        Ok(SessionConfig {
            listen: self.listen,
            dht_listen: (!self.no_dht).then_some(self.dht_listen),
            bootstrap,
            quic: QuicConfig {
                congestion: self.congestion.resolve(self.listen),
                ..QuicConfig::default()
            },
            upload_limit: None,
            download_limit: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_auto_is_cubic_on_loopback_only() {
        let cases = [
            (CongestionOpt::Auto, "127.0.0.1:0", Congestion::Cubic),
            (CongestionOpt::Auto, "0.0.0.0:6881", Congestion::Bbr),
            (CongestionOpt::Auto, "10.99.0.11:6881", Congestion::Bbr),
            (CongestionOpt::Cubic, "10.99.0.11:6881", Congestion::Cubic),
            (CongestionOpt::Bbr, "127.0.0.1:0", Congestion::Bbr),
        ];
        for (opt, listen, want) in cases {
            assert_eq!(
                opt.resolve(listen.parse().unwrap()),
                want,
                "{opt:?} {listen}"
            );
        }
    }
}
