//! The hasher's memory maps: a [`Window`] is a read-only mapping of part of one file, placed so that the kernel
//! can map 2 MiB page-cache folios whole (one page-table entry and one fault per 2 MiB instead of 512).

use super::WINDOW;
use std::fs::File;

/// The huge-page size (x86-64, and aarch64 with 4 KiB pages): mappings are aligned to it.
pub(super) const HUGE: u64 = 2 << 20;

/// A read-only mapping of file `file` covering its bytes `start..end`, at a virtual address congruent to the file
/// offset modulo [`HUGE`]: then page-cache folios of 2 MiB (what readahead and large writes make on recent
/// kernels) are mapped whole by one page-table entry and one fault, instead of 512 pages in 4 KiB entries.
/// Unmapped on drop.
pub(super) struct Window {
    pub(super) file: usize,
    pub(super) start: u64,
    pub(super) end: u64,
    /// Address of byte `start`.
    data: *const u8,
    map: *mut libc::c_void,
    map_len: usize,
}

impl Window {
    /// Map bytes `off..` of `file` (number `k`), up to `limit` and at most [`WINDOW`] bytes (ending on a
    /// [`HUGE`] boundary where it can); `None` if the OS refuses (then the caller reads instead).
    ///
    /// # Safety
    /// `limit` must not exceed the file's length, and the file must not be truncated while the window lives.
    #[cfg(target_os = "linux")]
    pub(super) unsafe fn map(file: &File, k: usize, off: u64, limit: u64) -> Option<Window> {
        use std::os::fd::AsRawFd;
        let page = match libc::sysconf(libc::_SC_PAGESIZE) {
            p if p > 0 => p as u64,
            _ => return None,
        };
        let map_off = off - off % page;
        let end = limit.min(map_off - map_off % HUGE + WINDOW);
        if end <= off {
            return None;
        }
        let map_len = usize::try_from(end - map_off).ok()?;
        let file_off = libc::off_t::try_from(map_off).ok()?;
        let map_at = |addr: *mut libc::c_void, extra: libc::c_int| {
            libc::mmap(
                addr,
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED | extra,
                file.as_raw_fd(),
                file_off,
            )
        };
        // Find a free range with room to align, then map there. NOREPLACE: if another thread took the range
        // meanwhile the call fails (and is tried again); in the end the mapping goes wherever the kernel puts it.
        let slack = HUGE as usize;
        let mut p = libc::MAP_FAILED;
        // Alignment only matters if the window holds a whole aligned huge page (not for small files).
        let tries = if map_off.next_multiple_of(HUGE) + HUGE <= end {
            3
        } else {
            0
        };
        for _ in 0..tries {
            let probe = libc::mmap(
                std::ptr::null_mut(),
                map_len + slack,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if probe == libc::MAP_FAILED {
                break;
            }
            let at = probe as usize;
            let want = (map_off % HUGE) as usize;
            let hint = (at + (want + slack - at % slack) % slack) as *mut libc::c_void;
            libc::munmap(probe, map_len + slack);
            p = map_at(hint, libc::MAP_FIXED_NOREPLACE);
            if p != libc::MAP_FAILED {
                break;
            }
        }
        if p == libc::MAP_FAILED {
            p = map_at(std::ptr::null_mut(), 0);
        }
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Window {
            file: k,
            start: off,
            end,
            data: (p as *const u8).add((off - map_off) as usize),
            map: p,
            map_len,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) unsafe fn map(_file: &File, _k: usize, _off: u64, _limit: u64) -> Option<Window> {
        None
    }

    /// Bytes `off..off + n` of the file; they must lie within `start..end`.
    pub(super) fn bytes(&self, off: u64, n: u64) -> &[u8] {
        assert!(
            self.start <= off && off + n <= self.end,
            "outside the window"
        );
        // SAFETY: the range is inside the live mapping (checked above); `Window::map`'s caller keeps the file
        // long enough.
        unsafe {
            std::slice::from_raw_parts(self.data.add((off - self.start) as usize), n as usize)
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly the mapping made in `Window::map`, unmapped only here.
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn windows_are_congruent_to_the_file_offset_and_hold_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(7u32 << 20) + 123).map(|i| (i % 251) as u8).collect();
        File::create(&p).unwrap().write_all(&data).unwrap();
        let f = File::open(&p).unwrap();
        let len = data.len() as u64;
        // The last window (5 MiB..7 MiB + 123) holds no whole aligned huge page: it is mapped wherever.
        for off in [0u64, 4096, (2 << 20) + 4096 + 17, 5 << 20] {
            // SAFETY: nothing truncates the file during the test; `limit` is its length.
            let w = unsafe { Window::map(&f, 0, off, len) }.expect("mmap works on a regular file");
            assert_eq!(w.start, off);
            assert!(
                w.end > off && w.end <= len && w.end - off <= WINDOW,
                "{off}: end {}",
                w.end
            );
            if off.next_multiple_of(HUGE) + HUGE <= w.end {
                let at = w.data as u64 % HUGE;
                assert_eq!(at, off % HUGE, "offset {off} not congruent");
            }
            let n = w.end - off;
            assert_eq!(w.bytes(off, n), &data[off as usize..w.end as usize]);
        }
    }
}
