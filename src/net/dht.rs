//! The DHT UDP driver: one tokio task owns a UDP socket and a sans-IO `dht::Node`, moving datagrams, the
//! clock and timeouts between them, and a cloneable `DhtHandle` for the rest of the program: `bootstrap`,
//! `get_peers(infohash)` (a channel of peers as they arrive, closed when the lookup ends), `announce` (with
//! periodic re-announce by the node), routing-table export for the state file, and an event stream.

use crate::dht::{node::Config, Event, LookupId, Node, NodeId, NodeInfo};
use crate::metainfo::InfoHash;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How to start a DHT node.
#[derive(Clone, Debug)]
pub struct DhtOptions {
    pub listen: SocketAddr,
    /// Node id and routing table from a state file (a random id when `None`).
    pub state: Option<(NodeId, Vec<NodeInfo>)>,
    pub config: Config,
}

enum Command {
    Bootstrap(Vec<SocketAddr>),
    GetPeers(InfoHash, Option<u16>, mpsc::UnboundedSender<SocketAddrV4>),
    StopAnnounce(InfoHash),
    Export(oneshot::Sender<(NodeId, Vec<NodeInfo>)>),
    Shutdown,
}

/// A handle on a running DHT node; cheap to clone. The node stops when `shutdown` is called or every handle
/// is dropped.
#[derive(Clone)]
pub struct DhtHandle {
    cmd: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
    local_addr: SocketAddr,
    id: NodeId,
}

impl DhtHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Join through these nodes (plus whatever the routing table holds).
    pub fn bootstrap(&self, addrs: Vec<SocketAddr>) {
        let _ = self.cmd.send(Command::Bootstrap(addrs));
    }

    /// Look up peers for `info_hash`: the receiver yields them as they arrive and closes when the lookup ends.
    pub fn get_peers(&self, info_hash: InfoHash) -> mpsc::UnboundedReceiver<SocketAddrV4> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.cmd.send(Command::GetPeers(info_hash, None, tx));
        rx
    }

    /// Announce `port` for `info_hash` now and every 15 minutes (until `stop_announce`); the receiver yields
    /// the peers this announce's lookup met, like `get_peers`.
    pub fn announce(
        &self,
        info_hash: InfoHash,
        port: u16,
    ) -> mpsc::UnboundedReceiver<SocketAddrV4> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.cmd.send(Command::GetPeers(info_hash, Some(port), tx));
        rx
    }

    pub fn stop_announce(&self, info_hash: InfoHash) {
        let _ = self.cmd.send(Command::StopAnnounce(info_hash));
    }

    /// Our id and the routing table's nodes, for the state file (`None` if the node has stopped).
    pub async fn export(&self) -> Option<(NodeId, Vec<NodeInfo>)> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Export(tx)).ok()?;
        rx.await.ok()
    }

    /// Node events (bootstrapped, announced, lookups done, peers).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown);
    }
}

/// Bind the socket and start the node task.
pub async fn start(opts: DhtOptions) -> io::Result<(DhtHandle, JoinHandle<()>)> {
    let socket = UdpSocket::bind(opts.listen).await?;
    let local_addr = socket.local_addr()?;
    let mut rng = StdRng::from_os_rng();
    let now = Instant::now();
    let (id, nodes) = match opts.state {
        Some((id, nodes)) => (id, nodes),
        None => (NodeId::random(&mut rng), Vec::new()),
    };
    let mut node = Node::new(id, opts.config, rng, now);
    node.import_nodes(now, &nodes);
    let (cmd, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let handle = DhtHandle {
        cmd,
        events: events.clone(),
        local_addr,
        id,
    };
    let task = tokio::spawn(drive(socket, node, rx, events));
    Ok((handle, task))
}

async fn drive(
    socket: UdpSocket,
    mut node: Node,
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<Event>,
) {
    let mut buf = vec![0u8; 4096];
    let mut lookups: HashMap<LookupId, mpsc::UnboundedSender<SocketAddrV4>> = HashMap::new();
    loop {
        let wake = node
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => node.handle_datagram(Instant::now(), from, &buf[..n]),
                // ICMP port-unreachable and the like surface here on some systems: not fatal for UDP.
                Err(e) => tracing::debug!("dht recv: {e}"),
            },
            c = rx.recv() => {
                let now = Instant::now();
                match c {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Bootstrap(addrs)) => { node.bootstrap(now, &addrs); }
                    Some(Command::GetPeers(h, port, tx)) => {
                        let lid = match port {
                            Some(p) => node.announce(now, h, p),
                            None => node.get_peers(now, h),
                        };
                        if let Some(lid) = lid {
                            lookups.insert(lid, tx);
                        }
                    }
                    Some(Command::StopAnnounce(h)) => node.stop_announce(&h),
                    Some(Command::Export(tx)) => { let _ = tx.send((node.id(), node.export_nodes(now))); }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => node.handle_timeout(Instant::now()),
        }
        while let Some((to, bytes)) = node.poll_transmit() {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::debug!("dht send to {to}: {e}");
            }
        }
        while let Some(e) = node.poll_event() {
            match &e {
                Event::Peers { lookup, peers, .. } => {
                    if let Some(tx) = lookups.get(lookup) {
                        for p in peers {
                            let _ = tx.send(*p);
                        }
                    }
                }
                Event::LookupDone { lookup, .. } => {
                    lookups.remove(lookup);
                }
                _ => {}
            }
            let _ = events.send(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node() -> DhtHandle {
        let opts = DhtOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            state: None,
            config: Config::default(),
        };
        start(opts).await.unwrap().0
    }

    /// The handle API over real UDP on loopback: bootstrap, announce, get_peers as a stream, export.
    #[tokio::test]
    async fn handles_bootstrap_announce_and_stream_peers() {
        let boot = node().await;
        let mut others = Vec::new();
        for _ in 0..4 {
            let h = node().await;
            let mut ev = h.events();
            h.bootstrap(vec![boot.local_addr()]);
            let joined = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Ok(Event::Bootstrapped { nodes }) = ev.recv().await {
                        return nodes;
                    }
                }
            });
            assert!(joined.await.unwrap() >= 1);
            others.push(h);
        }
        let ih = InfoHash([0x33; 20]);
        let mut ev = others[0].events();
        let _ = others[0].announce(ih, 4242);
        let announced = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(Event::Announced { nodes, .. }) = ev.recv().await {
                    return nodes;
                }
            }
        });
        assert!(announced.await.unwrap() >= 3);
        let mut peers = others[3].get_peers(ih);
        let first = tokio::time::timeout(Duration::from_secs(10), peers.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(SocketAddrV4::new([127, 0, 0, 1].into(), 4242)));
        // The stream closes when the lookup ends.
        let rest = tokio::time::timeout(Duration::from_secs(20), async {
            while peers.recv().await.is_some() {}
        });
        assert!(rest.await.is_ok());
        let (id, nodes) = boot.export().await.unwrap();
        assert_eq!(id, boot.id());
        assert!(nodes.len() >= 4);
        boot.shutdown();
    }
}
