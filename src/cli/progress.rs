//! Progress bars (indicatif) on stderr, only when stderr is a terminal and `--json` is off: one bar per torrent
//! showing verified bytes, rates down/up, peers connected/unchoking, ETA. Log and event lines go through
//! [`Bars::println`] (`MultiProgress::suspend`) so they never tear a bar. Without a terminal nothing is drawn.

use crate::net::session::Status;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};

/// The bars of one process (cheap to clone).
#[derive(Clone)]
pub struct Bars {
    mp: Option<MultiProgress>,
}

/// One torrent's bar (hidden when there is no terminal).
#[derive(Clone)]
pub struct TorrentBar {
    bar: ProgressBar,
    label: String,
    /// The process goes on serving the torrent once it is complete (`seed`, `fetch --seed`): a complete
    /// torrent reads "seeding", else "complete".
    seeding: bool,
}

impl Bars {
    /// Bars when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Bars {
        let mp = (wanted && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Bars { mp }
    }

    pub fn enabled(&self) -> bool {
        self.mp.is_some()
    }

    /// A line on stdout that does not tear the bars. Write errors (a reader that went away) are ignored: the
    /// command goes on (a seeder keeps seeding) rather than panicking.
    pub fn println(&self, line: &str) {
        let out = || {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}").and_then(|()| o.flush());
        };
        match &self.mp {
            Some(mp) => mp.suspend(out),
            None => out(),
        }
    }

    /// A line on stderr (warnings) that does not tear the bars.
    pub fn eprintln(&self, line: &str) {
        let out = || {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        };
        match &self.mp {
            Some(mp) => mp.suspend(out),
            None => out(),
        }
    }

    pub fn add(&self, label: &str) -> TorrentBar {
        let bar = match &self.mp {
            Some(mp) => {
                let b = mp.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>9} [{bar:28.cyan/blue}] {bytes:>10}/{total_bytes:<10} {msg}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b.set_prefix(label.to_string());
                b
            }
            None => ProgressBar::hidden(),
        };
        TorrentBar {
            bar,
            label: label.to_string(),
            seeding: true,
        }
    }
}

/// Seconds as `1m05s` / `12s`.
pub fn eta(secs: f64) -> String {
    if !secs.is_finite() || secs > 99.0 * 3600.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl TorrentBar {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the process keeps seeding a complete torrent (default true; `fetch` without `--seed`: false).
    pub fn set_seeding(&mut self, seeding: bool) {
        self.seeding = seeding;
    }

    pub fn update(&self, s: &Status) {
        if s.bytes_total > 0 {
            self.bar.set_length(s.bytes_total);
            self.bar.set_position(s.bytes_have);
        }
        let state = state(s, self.seeding);
        self.bar.set_message(format!(
            "↓{}/s ↑{}/s peers {}/{} {state}",
            HumanBytes(s.rate_down as u64),
            HumanBytes(s.rate_up as u64),
            s.peers,
            if s.complete {
                s.unchoked
            } else {
                s.unchoking_us
            },
        ));
    }

    pub fn finish(&self) {
        self.bar.abandon();
    }
}

/// The last words of a bar: failed, fetching metadata, the ETA, or once complete "seeding" when the process
/// goes on serving (`seeding`), else "complete".
fn state(s: &Status, seeding: bool) -> String {
    if s.failed.is_some() {
        "failed".to_string()
    } else if !s.metadata {
        "fetching metadata".to_string()
    } else if s.complete {
        if seeding { "seeding" } else { "complete" }.to_string()
    } else {
        let left = s.bytes_total.saturating_sub(s.bytes_have) as f64;
        format!("eta {}", eta(left / s.rate_down.max(1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_fetch_reads_complete_unless_it_seeds() {
        let st = |metadata, complete, failed: bool| Status {
            metadata,
            complete,
            failed: failed.then(|| "disk full".to_string()),
            bytes_total: 100,
            bytes_have: 50,
            rate_down: 10.0,
            ..Status::default()
        };
        // (status, seeding, label)
        let cases = [
            (st(true, true, false), false, "complete"),
            (st(true, true, false), true, "seeding"),
            (st(true, false, false), false, "eta 5s"),
            (st(false, false, false), true, "fetching metadata"),
            (st(true, true, true), true, "failed"),
        ];
        for (s, seeding, want) in cases {
            assert_eq!(state(&s, seeding), want, "{s:?} seeding {seeding}");
        }
    }
}
