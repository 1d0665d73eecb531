//! Helpers for the end-to-end tests: run the real `qswarm` binary as child processes on 127.0.0.1, read their
//! `--json` event lines with timeouts, and kill whatever is still running when a test ends.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_qswarm");
/// Net options every peer process gets: loopback, any port.
pub const LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--dht-listen", "127.0.0.1:0"];

/// A running qswarm process; killed on drop.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
    pub seen: Vec<Value>,
}

impl Proc {
    /// `qswarm ARGS... --listen 127.0.0.1:0 --dht-listen 127.0.0.1:0`.
    pub fn spawn_local(args: &[&str]) -> Proc {
        Proc::spawn(&[args, &LOOPBACK[..]].concat())
    }

    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qswarm");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        Proc {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The next JSON event line within `secs` (non-JSON lines are skipped).
    pub fn next_event(&mut self, secs: f64) -> Option<Value> {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                self.seen.push(v.clone());
                return Some(v);
            }
        }
    }

    /// Wait for an event named `name` (others are recorded in `seen`); panics after `secs`.
    pub fn wait_event(&mut self, name: &str, secs: f64) -> Value {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
            match self.next_event(left) {
                Some(v) if v["event"] == name => return v,
                Some(_) => {}
                None => panic!(
                    "no `{name}` event within {secs} s; events: {:?}; stderr: {}",
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// The `listening` line (must be the first line): (quic, dht) addresses.
    pub fn listening(&mut self) -> (String, String) {
        let v = self.next_event(10.0).expect("a first line");
        assert_eq!(v["event"], "listening", "first line: {v}");
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        (s("quic"), s("dht"))
    }

    /// Wait for the process to exit within `secs` (killed and panics otherwise).
    pub fn wait_exit(&mut self, secs: f64) -> ExitStatus {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                while let Some(v) = self.next_event(0.05) {
                    let _ = v;
                }
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "process still running after {secs} s; events: {:?}; stderr: {}",
                    self.seen,
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, name: &str) -> Option<&Value> {
        self.seen.iter().find(|v| v["event"] == name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A standalone DHT bootstrap node; returns it with its address.
pub fn dht_node() -> (Proc, String) {
    let mut p = Proc::spawn(&[
        "dht",
        "--dht-listen",
        "127.0.0.1:0",
        "--no-bootstrap",
        "--json",
    ]);
    let (_, dht) = p.listening();
    (p, dht)
}

/// `qswarm create`; returns the infohash.
/// `len` pseudo-random bytes (`seed`) written to `DIR/NAME.bin` and a torrent of them at `DIR/NAME.torrent`
/// (`extra`: more `qswarm create` options): (data, file, torrent, infohash).
#[allow(dead_code)]
pub fn shared_file(
    dir: &Path,
    name: &str,
    len: usize,
    seed: u64,
    extra: &[&str],
) -> (Vec<u8>, std::path::PathBuf, std::path::PathBuf, String) {
    let data = bytes(len, seed);
    let file = dir.join(format!("{name}.bin"));
    std::fs::write(&file, &data).unwrap();
    let torrent = dir.join(format!("{name}.torrent"));
    let ih = create(&file, &torrent, extra);
    (data, file, torrent, ih)
}

pub fn create(path: &Path, torrent: &Path, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("create")
        .arg(path)
        .arg("-o")
        .arg(torrent)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("infohash: "))
        .expect("infohash line")
        .trim()
        .to_string()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
