//! The two tasks each connection of a torrent runs beside the torrent task: the reader, which forwards the
//! connection's messages (and how it ended) into the torrent task's inbox, and the outbox, which forwards the
//! torrent task's messages to the connection's writer, pacing pieces by the writer's room.

use super::Inbound;
use crate::net::PeerRx;
use crate::swarm::PeerKey;
use crate::wire::Message;
use tokio::sync::mpsc;

/// A piece is handed to the connection's writer only when its queue has this much room (of 256), which
/// bounds the bytes buffered per connection outside quinn.
const WRITER_ROOM: usize = 240;

pub(super) async fn reader(mut rx: PeerRx, key: PeerKey, inbox: mpsc::Sender<Inbound>) {
    while let Some(r) = rx.recv().await {
        match r {
            Ok(m) => {
                if inbox.send(Inbound::Msg(key, m)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let m = if matches!(e, crate::net::NetError::Wire(_)) {
                    Inbound::Violation(key, e.to_string())
                } else {
                    Inbound::Closed(key, Some(e.to_string()))
                };
                let _ = inbox.send(m).await;
                return;
            }
        }
    }
    let _ = inbox.send(Inbound::Closed(key, None)).await;
}

/// Forward messages to the connection's writer; a piece waits until the writer's queue has room, then tells
/// the machine it was sent (so the next block is read only as fast as the connection drains).
pub(super) async fn outbox(
    mut rx: mpsc::Receiver<Message>,
    tx: mpsc::Sender<Message>,
    key: PeerKey,
    inbox: mpsc::Sender<Inbound>,
) {
    while let Some(m) = rx.recv().await {
        if matches!(m, Message::Piece { .. }) {
            let room = WRITER_ROOM.min(tx.max_capacity());
            let Ok(mut permits) = tx.reserve_many(room).await else {
                return;
            };
            if let Some(p) = permits.next() {
                p.send(m);
            }
            drop(permits);
            if inbox.send(Inbound::Sent(key)).await.is_err() {
                return;
            }
        } else if tx.send(m).await.is_err() {
            return;
        }
    }
}
