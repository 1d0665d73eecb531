//! DHT abuse (issue 8): a real `qswarm dht` process on 127.0.0.1 takes a flood of malformed and hostile KRPC
//! datagrams (garbage, wrong types, huge and truncated strings, deep nesting, unknown methods, oversized
//! datagrams, spoofed responses, announce floods with bad tokens and with a valid token, ping floods with fresh
//! node ids) from many source ports, while a legitimate client keeps asking it `get_peers` for an infohash that
//! a third process announced, and pings it. We measure how often the client is answered, the longest gap
//! without an answer, and the node's peak RSS (`VmHWM`).
//!
//! The CI test sends 20,000 packets; `bench/dht_abuse.sh` runs the ignored 100,000-packet version against a
//! release build and prints the figures. Environment (both): `QSWARM_BIN` (binary to test, default the one
//! cargo built), `QSWARM_ABUSE_PACKETS`, `QSWARM_ABUSE_SOCKETS`, `QSWARM_ABUSE_RATE` (packets/s, 0 = as fast
//! as possible).
mod dht_common;

use dht_common::Proc;
use qswarm::dht::krpc::{Body, Message, Method, Query};
use qswarm::dht::NodeId;
use qswarm::metainfo::InfoHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IH: &str = "5c8e0f2b7a1d4e3c9b6a5f4e3d2c1b0a99887766";
const PEER_PORT: u16 = 5555;
/// The node's peak RSS must stay under this.
const MAX_HWM_KIB: u64 = 64 * 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Start `qswarm dht` on 127.0.0.1 with `args`, waiting for its listening line.
fn spawn(args: &[&str], exit_after: u64) -> Proc {
    let bin = std::env::var("QSWARM_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_qswarm").into());
    Proc::start_with(&bin, args, exit_after)
}

/// `key: value kB` from /proc/PID/status.
fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Datagrams the kernel dropped on a UDP port's socket (receive buffer full), from /proc/net/udp.
fn kernel_drops(port: u16) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    s.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1)?.ends_with(&want)).then(|| f.last()?.parse().ok())?
    })
}

/// Raise the open-files soft limit to the hard limit (we bind thousands of sockets).
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    r.rlim_cur
}

fn query(tid: &[u8], id: NodeId, method: Method) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        body: Body::Query(Query { id, method }),
    }
    .encode()
}

/// A KRPC client on its own socket: one query, the answer with the same transaction id (or `None` on timeout).
struct Client {
    sock: UdpSocket,
    to: SocketAddr,
    id: NodeId,
    tid: u32,
}

impl Client {
    fn new(to: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Client {
            sock,
            to,
            id: NodeId([0x17; 20]),
            tid: 0,
        }
    }

    fn ask(&mut self, method: Method, timeout: Duration) -> Option<Message> {
        self.tid = self.tid.wrapping_add(1);
        let tid = self.tid.to_be_bytes();
        self.sock
            .send_to(&query(&tid, self.id, method), self.to)
            .ok()?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                return None;
            };
            if from != self.to {
                continue;
            }
            if let Ok(m) = Message::decode(&buf[..n]) {
                if m.tid == tid {
                    return Some(m);
                }
            }
        }
        None
    }

    /// get_peers for IH: `(answered, the announced peer was in the answer, the token)`.
    fn get_peers(&mut self, timeout: Duration) -> (bool, bool, Option<Vec<u8>>) {
        let info_hash: InfoHash = IH.parse().unwrap();
        match self.ask(Method::GetPeers { info_hash }, timeout) {
            Some(Message {
                body: Body::Response(r),
                ..
            }) => {
                let want = SocketAddrV4::new([127, 0, 0, 1].into(), PEER_PORT);
                (true, r.values.contains(&want), r.token)
            }
            _ => (false, false, None),
        }
    }

    fn ping(&mut self, timeout: Duration) -> bool {
        matches!(
            self.ask(Method::Ping, timeout),
            Some(Message {
                body: Body::Response(_),
                ..
            })
        )
    }
}

/// One hostile datagram of kind `i % 14`.
fn hostile(i: usize, rng: &mut StdRng, token: &[u8]) -> Vec<u8> {
    let id = NodeId(rng.random());
    let tid: [u8; 2] = rng.random();
    let good_ih: InfoHash = IH.parse().unwrap();
    match i % 14 {
        0 => (0..rng.random_range(1..1500))
            .map(|_| rng.random())
            .collect(),
        // Oversized datagrams (the limit is 1500 bytes).
        1 => vec![b'd'; rng.random_range(1501..9000)],
        // A string length far past the end of the datagram.
        2 => b"d1:ad2:id999999999:abcdefe1:q4:ping1:t2:aa1:y1:qe".to_vec(),
        // A valid query cut short.
        3 => {
            let q = query(&tid, id, Method::FindNode { target: id });
            q[..rng.random_range(1..q.len())].to_vec()
        }
        // Wrong types for `y`, `t`, `a`, `id`, `q`.
        4 => [
            &b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:yi1ee"[..],
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:td1:xi1ee1:y1:qe",
            b"d1:ali1ee1:q4:ping1:t2:aa1:y1:qe",
            b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
            b"d1:ad2:id20:abcdefghij0123456789e1:qi4e1:t2:aa1:y1:qe",
            b"li1ei2ee",
        ][rng.random_range(0..6)]
        .to_vec(),
        // Unknown methods (answered with 204).
        5 => format!(
            "d1:ad2:id20:abcdefghij0123456789e1:q{}:{}1:t2:zz1:y1:qe",
            9,
            ["vote_peer", "sample_in", "put_stuff"][rng.random_range(0..3)]
        )
        .into_bytes(),
        // announce_peer with a bad token, for the real infohash or random ones.
        6 => {
            let info_hash = if rng.random_bool(0.5) {
                good_ih
            } else {
                InfoHash(rng.random())
            };
            let method = Method::AnnouncePeer {
                info_hash,
                port: rng.random_range(1..u16::MAX),
                implied_port: rng.random_bool(0.2),
                token: (0..8).map(|_| rng.random()).collect(),
            };
            query(&tid, id, method)
        }
        // announce_peer with a valid token (tokens are per IP: every 127.0.0.1 port shares it) for random
        // infohashes: fills the peer store up to its caps.
        7 => {
            let method = Method::AnnouncePeer {
                info_hash: InfoHash(rng.random()),
                port: rng.random_range(1..u16::MAX),
                implied_port: false,
                token: token.to_vec(),
            };
            query(&tid, id, method)
        }
        // Valid get_peers / find_node for random targets: real work for the node.
        8 => query(
            &tid,
            id,
            Method::GetPeers {
                info_hash: InfoHash(rng.random()),
            },
        ),
        9 => query(&tid, id, Method::FindNode { target: id }),
        // Pings with fresh node ids: each unknown querier costs a verification ping (capped).
        10 => query(&tid, id, Method::Ping),
        // Spoofed responses and errors for transactions the node never started.
        11 => {
            let tid: [u8; 4] = rng.random();
            let body = if rng.random_bool(0.5) {
                Body::Error {
                    code: 201,
                    message: "x".repeat(rng.random_range(0..400)),
                }
            } else {
                Body::Response(qswarm::dht::krpc::Response {
                    id,
                    ..Default::default()
                })
            };
            Message {
                tid: tid.to_vec(),
                body,
            }
            .encode()
        }
        // Deep nesting.
        12 => {
            let n = rng.random_range(60..700);
            let mut v = b"l".repeat(n);
            v.extend(b"e".repeat(n));
            v
        }
        // Huge (1,400-byte) strings and transaction ids over the limit.
        _ => {
            let mut v = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t300:".to_vec();
            v.extend(std::iter::repeat_n(b'x', 300));
            v.extend(b"1:v1100:");
            v.extend(std::iter::repeat_n(b'y', 1100));
            v.extend(b"1:y1:qe");
            v
        }
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    asked: u64,
    answered: u64,
    with_peer: u64,
    pings: u64,
    pongs: u64,
}

struct Figures {
    packets: usize,
    sockets: usize,
    flood_secs: f64,
    before: Tally,
    during: Tally,
    after: Tally,
    max_gap: Duration,
    hwm_kib: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    cpu_secs: f64,
    kernel_drops: u64,
}

/// The whole scenario; returns the measured figures (the callers assert on them).
fn abuse(packets: usize, sockets_wanted: usize, rate: u64) -> Figures {
    let limit = raise_nofile();
    let target = spawn(&["--no-bootstrap"], 600);
    let pid = target.child.id();
    let to: SocketAddr = target.addr.parse().unwrap();
    // A third process announces IH to the target.
    let mut announcer = spawn(
        &[
            "--bootstrap",
            &target.addr,
            "--announce",
            &format!("{IH}:{PEER_PORT}"),
        ],
        600,
    );
    announcer
        .wait_for(|v| v["event"] == "announced", Duration::from_secs(30))
        .expect("the announcer announced");
    // The client sees the peer before the flood.
    let mut probe = Client::new(to);
    let token = (0..20)
        .find_map(|_| match probe.get_peers(Duration::from_millis(500)) {
            (true, true, Some(t)) => Some(t),
            _ => None,
        })
        .expect("get_peers finds the announced peer before the flood");

    // Sockets for the attack (as many as the open-files limit allows).
    let want = sockets_wanted
        .min(limit.saturating_sub(200) as usize)
        .max(1);
    let socks: Vec<UdpSocket> = (0..want)
        .map_while(|_| UdpSocket::bind("127.0.0.1:0").ok())
        .collect();
    let sockets = socks.len();
    let mut rng = StdRng::seed_from_u64(0x0bad_c0de);
    let datagrams: Vec<Vec<u8>> = (0..packets).map(|i| hostile(i, &mut rng, &token)).collect();

    // The legitimate client: get_peers every 20 ms (and a ping every 5th round), tallied per phase.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = Arc::new(Mutex::new([Tally::default(); 3]));
    let max_gap = Arc::new(Mutex::new(Duration::ZERO));
    let legit = {
        let (phase, stop, tallies, max_gap) = (
            phase.clone(),
            stop.clone(),
            tallies.clone(),
            max_gap.clone(),
        );
        std::thread::spawn(move || {
            let mut c = Client::new(to);
            let mut last_ok: Option<Instant> = None;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = usize::from(phase.load(Ordering::Relaxed));
                let (answered, with_peer, _) = c.get_peers(Duration::from_millis(250));
                let now = Instant::now();
                if p == 1 {
                    let since = last_ok.map_or(Duration::ZERO, |t| now - t);
                    let mut g = max_gap.lock().unwrap();
                    *g = (*g).max(since);
                }
                if answered && with_peer {
                    last_ok = Some(now);
                }
                let pong = (round % 5 == 0).then(|| c.ping(Duration::from_millis(250)));
                let mut t = tallies.lock().unwrap();
                t[p].asked += 1;
                t[p].answered += u64::from(answered);
                t[p].with_peer += u64::from(with_peer);
                if let Some(pong) = pong {
                    t[p].pings += 1;
                    t[p].pongs += u64::from(pong);
                }
                drop(t);
                round += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let rss_before_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let drops0 = kernel_drops(to.port()).unwrap_or(0);

    // The flood: two sender threads, datagram i from socket i % sockets, paced at `rate` per second.
    phase.store(1, Ordering::Relaxed);
    let started = Instant::now();
    let datagrams = Arc::new(datagrams);
    let socks = Arc::new(socks);
    let senders: Vec<_> = (0..2)
        .map(|k| {
            let (datagrams, socks) = (datagrams.clone(), socks.clone());
            std::thread::spawn(move || {
                for i in (k..datagrams.len()).step_by(2) {
                    if rate > 0 && i % 64 < 2 {
                        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let _ = socks[i % socks.len()].send_to(&datagrams[i], to);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let flood_secs = started.elapsed().as_secs_f64();
    // Let the node work through its socket buffer before the "after" phase starts.
    std::thread::sleep(Duration::from_millis(1000));
    phase.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    legit.join().unwrap();
    let cpu_secs = cpu_secs(pid).unwrap_or(0.0) - cpu0;
    let kernel_drops = kernel_drops(to.port()).unwrap_or(0) - drops0;
    let hwm_kib = proc_kib(pid, "VmHWM").unwrap_or(u64::MAX);
    let rss_after_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let [before, during, after] = *tallies.lock().unwrap();
    let max_gap = *max_gap.lock().unwrap();
    let mut target = target;
    assert!(
        target.child.try_wait().unwrap().is_none(),
        "the node died under the flood"
    );
    Figures {
        packets,
        sockets,
        flood_secs,
        before,
        during,
        after,
        max_gap,
        hwm_kib,
        rss_before_kib,
        rss_after_kib,
        cpu_secs,
        kernel_drops,
    }
}

fn report(f: &Figures) {
    // Everything that reached the socket, the client's queries included.
    let handled =
        (f.packets as u64 + f.during.asked + f.during.pings).saturating_sub(f.kernel_drops);
    let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "dht abuse: {} hostile packets from {} source ports in {:.1} s ({:.0}/s)",
        f.packets,
        f.sockets,
        f.flood_secs,
        f.packets as f64 / f.flood_secs
    );
    for (name, t) in [
        ("before", f.before),
        ("during", f.during),
        ("after ", f.after),
    ] {
        println!(
            "  {name}: get_peers answered {}/{} ({:.1}%), with the announced peer {}/{}; pings answered {}/{}",
            t.answered,
            t.asked,
            pct(t.answered, t.asked),
            t.with_peer,
            t.asked,
            t.pongs,
            t.pings
        );
    }
    println!(
        "  longest gap without a successful get_peers during the flood: {} ms",
        f.max_gap.as_millis()
    );
    println!(
        "  node: peak RSS (VmHWM) {:.1} MiB (limit 64 MiB); RSS {:.1} MiB before, {:.1} MiB after; \
         {:.2} CPU s during the flood; the kernel dropped {} datagrams (receive buffer full), the node handled \
         the other {} ({:.0} per CPU s)",
        f.hwm_kib as f64 / 1024.0,
        f.rss_before_kib as f64 / 1024.0,
        f.rss_after_kib as f64 / 1024.0,
        f.cpu_secs,
        f.kernel_drops,
        handled,
        handled as f64 / f.cpu_secs.max(0.001),
    );
}

fn check(f: &Figures) {
    assert!(
        f.hwm_kib < MAX_HWM_KIB,
        "peak RSS {} KiB over 64 MiB",
        f.hwm_kib
    );
    assert!(f.during.asked >= 5, "the client barely ran: {:?}", f.during);
    assert!(
        f.during.with_peer * 2 >= f.during.asked,
        "during the flood under half of the get_peers succeeded: {:?}",
        f.during
    );
    assert!(
        f.max_gap < Duration::from_secs(3),
        "get_peers failed for {:?} in a row during the flood",
        f.max_gap
    );
    // After the flood (a 250 ms timeout per query; a few slack for a busy machine).
    assert!(
        f.after.asked >= 5
            && f.after.with_peer * 10 >= f.after.asked * 9
            && f.after.pongs * 10 >= f.after.pings * 9,
        "after the flood the node answers again: {:?}",
        f.after
    );
}

#[test]
fn node_survives_20k_hostile_packets() {
    let f = abuse(
        env_or("QSWARM_ABUSE_PACKETS", 20_000) as usize,
        env_or("QSWARM_ABUSE_SOCKETS", 1_000) as usize,
        env_or("QSWARM_ABUSE_RATE", 5_000),
    );
    report(&f);
    check(&f);
}

/// The full-size run: `bash bench/dht_abuse.sh` (release build, figures printed).
#[test]
#[ignore]
fn node_survives_100k_hostile_packets() {
    let f = abuse(
        env_or("QSWARM_ABUSE_PACKETS", 100_000) as usize,
        env_or("QSWARM_ABUSE_SOCKETS", 5_000) as usize,
        env_or("QSWARM_ABUSE_RATE", 10_000),
    );
    report(&f);
    check(&f);
}
