//! Event → output line: with `--json` one JSON object per line on stdout, `"event"` first (serde_json keeps
//! insertion order); otherwise short `key=value` text lines. Progress lines are JSON-only (a terminal gets bars).
//! Every line goes through [`Bars::println`] so it never tears a progress bar.

use crate::cli::progress::Bars;
use crate::net::session::{PeerState, SessionEvent, Status};
use serde_json::json;
use std::net::SocketAddr;

/// Where events go.
#[derive(Clone)]
pub struct Out {
    pub json: bool,
    pub bars: Bars,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            json,
            bars: Bars::new(!json),
        }
    }

    fn line(&self, value: serde_json::Value, text: Option<String>) {
        if self.json {
            self.bars.println(&value.to_string());
        } else if let Some(t) = text {
            self.bars.println(&t);
        }
    }

    /// The first line of every long-running command.
    pub fn listening(&self, quic: SocketAddr, dht: Option<SocketAddr>) {
        let dht_s = dht.map_or_else(|| "off".to_string(), |d| d.to_string());
        let v = match dht {
            Some(d) => {
                json!({"event": "listening", "quic": quic.to_string(), "dht": d.to_string()})
            }
            None => json!({"event": "listening", "quic": quic.to_string(), "dht": null}),
        };
        self.line(v, Some(format!("listening quic={quic} dht={dht_s}")));
    }

    pub fn event(&self, e: &SessionEvent) {
        match e {
            SessionEvent::Metadata {
                name,
                length,
                piece_length,
                pieces,
            } => self.line(
                json!({"event": "metadata", "name": name, "length": length, "piece_length": piece_length, "pieces": pieces}),
                Some(format!(
                    "metadata name={name} length={length} piece_length={piece_length} pieces={pieces}"
                )),
            ),
            SessionEvent::Checked { have, rechecked } => self.line(
                json!({"event": "checked", "have": have, "rechecked": rechecked}),
                None,
            ),
            SessionEvent::Peer { addr, state } => {
                let s = match state {
                    PeerState::Connected => "connected",
                    PeerState::Disconnected => "disconnected",
                };
                self.line(
                    json!({"event": "peer", "addr": addr.to_string(), "state": s}),
                    None,
                )
            }
            SessionEvent::PieceFailed { piece, from } => {
                let from: Vec<String> = from.iter().map(|a| a.to_string()).collect();
                self.line(
                    json!({"event": "piece_failed", "piece": piece, "from": from}),
                    Some(format!("piece_failed piece={piece} from={}", from.join(","))),
                )
            }
            SessionEvent::Complete {
                path,
                downloaded,
                uploaded,
                seconds,
            } => self.line(
                json!({"event": "complete", "path": path.display().to_string(), "downloaded": downloaded,
                       "uploaded": uploaded, "seconds": (seconds * 1000.0).round() / 1000.0}),
                Some(format!(
                    "complete path={} downloaded={downloaded} uploaded={uploaded} seconds={seconds:.1}",
                    path.display()
                )),
            ),
            SessionEvent::Error { message } => self.error(message),
        }
    }

    pub fn progress(&self, s: &Status) {
        if self.json {
            self.line(
                json!({"event": "progress", "have": s.have, "total": s.pieces, "downloaded": s.downloaded,
                       "uploaded": s.uploaded, "peers": s.peers, "rate_down": s.rate_down.round() as u64,
                       "rate_up": s.rate_up.round() as u64}),
                None,
            );
        }
    }

    /// An error as a JSON event (the one-line message on stderr is printed by `cli::run`).
    pub fn error(&self, message: &str) {
        if self.json {
            self.bars
                .println(&json!({"event": "error", "message": message}).to_string());
        }
    }
}
