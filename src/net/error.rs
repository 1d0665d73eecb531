//! Errors of the QUIC transport and the peer connection driver, each saying what failed and what to do.

use crate::metainfo::InfoHash;
use crate::wire::WireError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error(
        "cannot bind the QUIC endpoint to {addr}: {source}; pick another --listen address or port"
    )]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("no tokio runtime: start the transport inside one")]
    NoRuntime,
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("cannot make the self-signed certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write to the peer failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("read from the peer failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the peer closed the stream during the handshake: {0}")]
    ReadExact(#[from] quinn::ReadExactError),
    #[error("peer protocol error: {0}")]
    Wire(#[from] WireError),
    #[error(
        "peer answered for infohash {got}, we asked for {expected}; it does not have this torrent"
    )]
    WrongInfoHash { expected: InfoHash, got: InfoHash },
    #[error("peer asked for infohash {0}, which we do not serve; connection closed")]
    UnknownTorrent(InfoHash),
    #[error(
        "connection limit reached (global or per torrent); try again when a connection closes"
    )]
    Limit,
    #[error(
        "the peer did not complete the handshake in time; it is too slow or not a qswarm peer"
    )]
    HandshakeTimeout,
}

impl From<rustls::Error> for NetError {
    fn from(e: rustls::Error) -> Self {
        NetError::Tls(e.to_string())
    }
}
