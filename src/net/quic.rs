//! The QUIC endpoint (DESIGN §4): one quinn endpoint per process bound to `--listen`, a self-signed
//! certificate made at start-up (rcgen), a client side that accepts any certificate (integrity comes from piece
//! hashes; TLS gives confidentiality), ALPN `qswarm/1`, rustls with the ring provider, TLS 1.3 only, and the
//! transport tuning: keep-alive 2 min, idle timeout 3 min, windows ≥ the bandwidth-delay product, Cubic,
//! path MTU discovery up to [`QuicConfig::mtu_upper_bound`].

use crate::net::limits::ConnLimits;
use crate::net::NetError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// ALPN protocol id of qswarm's peer protocol.
pub const ALPN: &[u8] = b"qswarm/1";
/// Name put in (and asked of) certificates; never checked.
pub const SERVER_NAME: &str = "qswarm";

/// Everything tunable about the transport. `Default` is what qswarm uses.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Most connections open at once (all torrents).
    pub max_connections: usize,
    /// Most connections per torrent.
    pub max_per_torrent: usize,
    /// QUIC PING on an idle connection this often.
    pub keep_alive: Duration,
    /// Close a connection that has heard nothing for this long.
    pub idle_timeout: Duration,
    /// Per-stream receive window (bytes). 8 MiB covers 670 Mbit/s at 100 ms RTT from one peer. It is also
    /// what a peer may make us buffer when we read slower than it sends, per connection: 16 MiB (with a 24 MiB
    /// connection window) let a leecher with four peers on a loaded 2-core machine grow past 48 MiB RSS
    /// (bench/swarm_bench.py scenario 2).
    pub stream_window: u32,
    /// Per-connection receive window (bytes), over all streams.
    pub conn_window: u32,
    /// Most bytes quinn buffers per connection, sent-unacknowledged plus not yet sent: 2 MiB is the
    /// bandwidth-delay product of 168 Mbit/s at 100 ms, per peer (libtorrent's per-peer send buffer is smaller
    /// still). Blocks written to quinn stay in memory until acknowledged, so this times the number of peers we
    /// upload to bounds the upload buffers (16 MiB let a seeder with 50 peers hold up to 800 MiB). 4 MiB let a
    /// scenario-2 leecher (bench/swarm_bench.py, four peers on a loaded 2-core machine) peak at 46–48 MiB RSS;
    /// 2 MiB: at most 39 MiB in 12 leecher runs, scenario 1 and 2 times unchanged within noise.
    pub send_window: u64,
    /// First datagram size (1200 is safe on any path).
    pub initial_mtu: u16,
    /// Path MTU discovery probes up to this size; a path that drops larger datagrams keeps the last one that
    /// got through, so this is safe on real links. 9000 (jumbo frames) against 4000: about a fifth less CPU per
    /// GiB on loopback (fewer packets to seal, open and acknowledge; bench/transport.sh). Larger MTUs used to
    /// stall only because a GSO batch outgrew an IP datagram (see [`MAX_GSO_BYTES`]).
    pub mtu_upper_bound: u16,
    /// UDP socket buffer sizes (SO_RCVBUF / SO_SNDBUF) asked of the kernel.
    pub socket_buffer: usize,
    /// How long the BEP 3 handshake may take after the QUIC handshake.
    pub handshake_timeout: Duration,
    /// Send each `piece` message on its own unidirectional stream instead of the control stream (no
    /// head-of-line blocking behind a lost packet). Receiving accepts both, whatever this says.
    pub piece_streams: bool,
    /// Congestion controller. Cubic (the default) is the faster one on loopback; BBR keeps a lossy link full
    /// where Cubic collapses to ~1.2 MSS/RTT/sqrt(loss) (see [`Congestion`]).
    pub congestion: Congestion,
}

/// The congestion controller of every connection. Measured (bench/netns.sh, userspace link with 50 ms one-way
/// delay, 2% random loss, 20 Mbit/s per host; 1 seed, 1 leecher, 16 MiB): Cubic ~120 KB/s (the loss-bound
/// rate of one flow), BBR ~1.9 MB/s; 64 MiB to 4 leechers: Cubic ~197 s, BBR ~41 s. On loopback (benches/
/// transport.rs `codec`, 512 MiB, a loaded 2-core machine) BBR was slower: ~405–465 vs ~590–610 MB/s.
/// quinn's BBR is BBRv1: it ignores random loss but overfills deep queues (the userspace link dropped ~20%
/// of packets at its 500 ms tail-drop queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    #[default]
    Cubic,
    Bbr,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            max_connections: 200,
            max_per_torrent: 50,
            keep_alive: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(180),
            stream_window: 8 << 20,
            conn_window: 8 << 20,
            send_window: 2 << 20,
            initial_mtu: 1200,
            mtu_upper_bound: 9000,
            socket_buffer: 4 << 20,
            handshake_timeout: Duration::from_secs(10),
            piece_streams: false,
            congestion: Congestion::default(),
        }
    }
}

impl QuicConfig {
    /// The quinn transport parameters this config stands for.
    pub fn transport(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .unwrap_or(quinn::VarInt::from_u32(180_000).into());
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .stream_receive_window(self.stream_window.into())
            .receive_window(self.conn_window.into())
            .send_window(self.send_window)
            .initial_mtu(self.initial_mtu.max(1200))
            .max_concurrent_uni_streams(1024u32.into())
            .max_concurrent_bidi_streams(4u32.into())
            .congestion_controller_factory(match self.congestion {
                Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default())
                    as Arc<dyn quinn::congestion::ControllerFactory + Send + Sync>,
                Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
            });
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound.max(self.initial_mtu).max(1200));
        t.mtu_discovery_config(Some(mtu));
        t
    }
}

/// The process's QUIC endpoint plus its connection limits.
#[derive(Debug, Clone)]
pub struct Transport {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) limits: Arc<ConnLimits>,
    pub(crate) config: Arc<QuicConfig>,
}

impl Transport {
    /// Bind the endpoint to `addr` (port 0 = any). Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, config: QuicConfig) -> Result<Transport, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let transport = Arc::new(config.transport());

        let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let server =
            QuicServerConfig::try_from(server).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport.clone());

        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN.to_vec()];
        let client =
            QuicClientConfig::try_from(client).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport);

        let socket = bind_socket(addr, config.socket_buffer)
            .map_err(|e| NetError::Bind { addr, source: e })?;
        let runtime = quinn::default_runtime().ok_or(NetError::NoRuntime)?;
        // Peers may send us datagrams up to the MTU we probe for (quinn's default, 1472, caps discovery).
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(config.mtu_upper_bound.max(1200))
            .map_err(|e| NetError::Tls(format!("bad MTU upper bound: {e}")))?;
        let socket = runtime
            .wrap_udp_socket(socket)
            .map_err(|e| NetError::Bind { addr, source: e })?;
        let socket: Arc<dyn quinn::AsyncUdpSocket> = Arc::new(GsoCapped {
            inner: socket,
            max_segments: (MAX_GSO_BYTES / usize::from(config.mtu_upper_bound.max(1200))).max(1),
        });
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            socket,
            runtime,
        )
        .map_err(|e| NetError::Bind { addr, source: e })?;
        endpoint.set_default_client_config(client);
        let limits = Arc::new(ConnLimits::new(
            config.max_connections,
            config.max_per_torrent,
        ));
        Ok(Transport {
            endpoint,
            limits,
            config: Arc::new(config),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.endpoint.local_addr().map_err(NetError::Io)
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    pub fn config(&self) -> &QuicConfig {
        &self.config
    }

    /// Close every connection and stop accepting.
    pub async fn shutdown(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        self.endpoint.wait_idle().await;
    }
}

fn bind_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Largest UDP payload one GSO send may carry: the kernel refuses (EMSGSIZE) a send whose segments add up to
/// more than an IP datagram (65535 bytes less the IP and UDP headers), and quinn-udp drops such a send silently
/// (it takes EMSGSIZE for a lost MTU probe). quinn batches up to 10 segments of the current MTU, so past an MTU
/// of ~6500 every full batch was lost: what made 8 KB MTUs slow and 16 KB ones stall on loopback.
const MAX_GSO_BYTES: usize = 65_000;

/// The UDP socket quinn uses, with the segments per GSO send capped so that a batch of datagrams of the MTU
/// discovery upper bound fits in one IP datagram ([`MAX_GSO_BYTES`]).
#[derive(Debug)]
struct GsoCapped {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    max_segments: usize,
}

impl quinn::AsyncUdpSocket for GsoCapped {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> std::io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut std::task::Context,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments().min(self.max_segments)
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Accepts any server certificate: peers are anonymous, and every piece is checked against its SHA-1.
/// Handshake signatures are still verified, so the TLS session is bound to the presented key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
