//! A small pool of equal-size byte buffers for the disk thread's read-ahead: a buffer is handed out as
//! [`Bytes`] (peers' blocks are slices of it, queued in quinn until acknowledged) and comes back to the pool
//! when the last slice is dropped, on whatever thread that happens.
//!
//! Why: a fresh 128 KiB allocation per read-ahead is at glibc's mmap threshold, and freed memory at the top of
//! a thread's arena is trimmed; either way each new buffer was fresh pages the kernel had to fault in and zero.
//! That was ~6% of a seeder's CPU in scenario 1 (`exc_page_fault`, `clear_page_erms`, `unmap_page_range`
//! under `read_vec`).

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Buffers of `size` bytes, at most `keep` of them idle.
#[derive(Debug, Clone)]
pub struct BufPool {
    size: usize,
    keep: usize,
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufPool {
    pub fn new(size: usize, keep: usize) -> BufPool {
        BufPool {
            size,
            keep,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// An empty buffer with room for the pool's size (an idle one when there is one).
    pub fn take(&self) -> Vec<u8> {
        let reused = self.lock().pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// `buf` as shared bytes; its allocation returns to the pool when the last slice of it is dropped.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Idle buffers now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.size {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.keep {
            buf.clear();
            idle.push(buf);
        }
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: BufPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_goes() {
        let pool = BufPool::new(1024, 2);
        let mut a = pool.take();
        assert!(a.capacity() >= 1024);
        a.extend_from_slice(&[7; 1000]);
        let ptr = a.as_ptr();
        let bytes = pool.share(a);
        let s1 = bytes.slice(0..10);
        let s2 = bytes.slice(500..600);
        drop(bytes);
        drop(s1);
        assert_eq!(pool.idle(), 0, "a slice still holds it");
        assert_eq!(&s2[..], &[7; 100]);
        let other = std::thread::spawn(move || drop(s2));
        other.join().unwrap();
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");
        assert!(again.is_empty());
    }

    #[test]
    fn at_most_keep_idle_and_small_buffers_are_not_kept() {
        let pool = BufPool::new(64, 2);
        let shared: Vec<Bytes> = (0..4).map(|_| pool.share(pool.take())).collect();
        drop(shared);
        assert_eq!(pool.idle(), 2);
        let _ = pool.share(Vec::with_capacity(8));
        assert_eq!(pool.idle(), 2);
        let pool = BufPool::new(64, 4);
        drop(pool.share(Vec::with_capacity(8)));
        assert_eq!(pool.idle(), 0, "smaller than the pool's size");
    }
}
