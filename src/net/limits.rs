//! Connection limits: a global cap and a per-torrent cap, handed out as RAII permits (dropping the permit
//! frees the slot), shared by every connection of the endpoint; and the share of a torrent's receive-buffer
//! budget each of its connections gets as its QUIC connection receive window.

use crate::metainfo::InfoHash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes a torrent lets its peers have in flight towards it, unread, across all its connections: quinn keeps
/// up to a connection's receive window of received-but-unread data in memory, so with a fixed window the
/// memory grows with the number of peers (four peers at 8 MiB each could hold 32 MiB while this process is
/// busy hashing). The budget is shared out instead.
pub const RECV_BUDGET: u64 = 12 << 20;
/// The least receive window a connection gets, however many peers share the budget (one peer at 100 ms
/// round trip still gets ~80 Mbit/s).
pub const MIN_RECV_WINDOW: u64 = 1 << 20;

/// The connection receive window for each of `peers` connections, given the largest window configured.
pub fn recv_window_share(peers: usize, max_window: u64) -> u64 {
    let share = RECV_BUDGET / peers.max(1) as u64;
    share.clamp(MIN_RECV_WINDOW, max_window.max(MIN_RECV_WINDOW))
}

/// Counts of open connections, global and per infohash.
#[derive(Debug)]
pub struct ConnLimits {
    max_global: usize,
    max_per_torrent: usize,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    global: usize,
    torrents: HashMap<InfoHash, usize>,
}

/// A global slot; upgrade it with [`ConnLimits::for_torrent`] once the handshake names the torrent.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    torrent: Option<InfoHash>,
}

impl ConnLimits {
    pub fn new(max_global: usize, max_per_torrent: usize) -> ConnLimits {
        ConnLimits {
            max_global,
            max_per_torrent,
            state: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A global slot, or `None` when `max_global` connections are open.
    pub fn acquire(self: &Arc<Self>) -> Option<ConnPermit> {
        let mut s = self.lock();
        if s.global >= self.max_global {
            return None;
        }
        s.global += 1;
        Some(ConnPermit {
            limits: self.clone(),
            torrent: None,
        })
    }

    /// Attach `permit` to torrent `ih`; `false` (permit unchanged) when that torrent is full.
    pub fn for_torrent(&self, permit: &mut ConnPermit, ih: InfoHash) -> bool {
        if permit.torrent.is_some() {
            return permit.torrent == Some(ih);
        }
        let mut s = self.lock();
        let n = s.torrents.entry(ih).or_insert(0);
        if *n >= self.max_per_torrent {
            return false;
        }
        *n += 1;
        permit.torrent = Some(ih);
        true
    }

    /// Open connections in total.
    pub fn global(&self) -> usize {
        self.lock().global
    }

    /// Open connections in total and for `ih`.
    pub fn counts(&self, ih: &InfoHash) -> (usize, usize) {
        let s = self.lock();
        (s.global, s.torrents.get(ih).copied().unwrap_or(0))
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut s = self.limits.lock();
        s.global = s.global.saturating_sub(1);
        if let Some(ih) = self.torrent {
            if let Some(n) = s.torrents.get_mut(&ih) {
                *n -= 1;
                if *n == 0 {
                    s.torrents.remove(&ih);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_windows_share_the_budget_within_bounds() {
        let max = 8 << 20;
        assert_eq!(recv_window_share(0, max), max);
        assert_eq!(recv_window_share(1, max), max.min(RECV_BUDGET));
        assert_eq!(recv_window_share(4, max), RECV_BUDGET / 4);
        assert_eq!(recv_window_share(400, max), MIN_RECV_WINDOW);
        assert_eq!(recv_window_share(1, 2 << 20), 2 << 20);
        for n in 1..64usize {
            let w = recv_window_share(n, max);
            assert!((MIN_RECV_WINDOW..=max).contains(&w), "{n} peers");
            assert!(
                w * n as u64 <= RECV_BUDGET || w == MIN_RECV_WINDOW,
                "{n} peers"
            );
            assert!(
                w >= recv_window_share(n + 1, max),
                "more peers, no larger share"
            );
        }
    }

    #[test]
    fn permits_count_and_free() {
        let l = Arc::new(ConnLimits::new(2, 1));
        let ih = InfoHash([1; 20]);
        let mut a = l.acquire().unwrap();
        let mut b = l.acquire().unwrap();
        assert!(l.acquire().is_none());
        assert!(l.for_torrent(&mut a, ih));
        assert!(!l.for_torrent(&mut b, ih));
        assert!(l.for_torrent(&mut b, InfoHash([2; 20])));
        assert_eq!(l.counts(&ih), (2, 1));
        drop(a);
        assert_eq!(l.counts(&ih), (1, 0));
        assert!(l.acquire().is_some());
    }
}
