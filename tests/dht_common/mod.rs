//! Shared helpers for the DHT integration tests: spawn `qswarm dht` processes on 127.0.0.1 and read their
//! stdout lines with timeouts. Used as `mod dht_common;` by `dht_loopback.rs` and `dht_libtorrent.rs`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
    pub addr: String,
}

impl Proc {
    /// Start `qswarm dht --dht-listen 127.0.0.1:0 --json <args>` and wait for its listening line.
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_with(env!("CARGO_BIN_EXE_qswarm"), args, 60)
    }

    /// The same with another `qswarm` binary (e.g. a release build) and `--exit-after SECS`.
    pub fn start_with(bin: &str, args: &[&str], exit_after: u64) -> Proc {
        let mut child = Command::new(bin)
            .args([
                "dht",
                "--dht-listen",
                "127.0.0.1:0",
                "--json",
                "--exit-after",
            ])
            .arg(exit_after.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn qswarm");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Proc {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
        };
        let first = p
            .wait_for(|v| v["event"] == "listening", Duration::from_secs(20))
            .expect("listening line");
        p.addr = first["dht"].as_str().unwrap().to_string();
        assert!(p.addr.starts_with("127.0.0.1:"), "{}", p.addr);
        p
    }

    /// Wait for a JSON event matching `pred` (lines already seen are searched first).
    pub fn wait_for(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        for l in &self.seen {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                return None;
            };
            self.seen.push(line.clone());
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Send SIGTERM and return the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
