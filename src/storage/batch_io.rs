//! Batched disk IO for the torrent's disk thread: a run of contiguous blocks written with one `pwritev` per
//! file (not one `pwrite` per 16 KiB block), and reads into fresh buffers the kernel fills directly (no
//! zero-fill of memory that `pread` overwrites anyway).
//!
//! Same contract as [`Storage::write_block`] / [`Storage::read_block`]: positioned IO at the [`super::Layout`]'s
//! file offsets, short transfers retried, end of file on a read reported as missing data.

use super::disk::{Storage, StorageError};
use std::io;
use std::os::fd::AsRawFd;

/// Most buffers handed to one `pwritev` (under Linux's and the BSDs' `IOV_MAX` of 1024). A received block is
/// up to 3 slices at a 9000-byte MTU (13 at 1452), so a run of a piece's blocks still fits one call.
const MAX_IOV: usize = 256;

impl Storage {
    /// Write `blocks`, which follow each other from `offset` of piece `piece`, as if by one
    /// [`Storage::write_block`] of their concatenation (without concatenating them): one `pwritev` when the
    /// run lies in one file, else block by block.
    pub fn write_run(&self, piece: u32, offset: u32, blocks: &[&[u8]]) -> Result<(), StorageError> {
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        let len = u32::try_from(total).map_err(|_| StorageError::BufferSize {
            expected: 0,
            got: total,
        })?;
        let mut segs = self.layout().block_segments(piece, offset, len)?;
        let (Some(seg), None) = (segs.next(), segs.next()) else {
            // The run crosses files (or is empty): the plain path splits each block at file boundaries.
            let mut at = offset;
            for b in blocks {
                self.write_block(piece, at, b)?;
                at += b.len() as u32;
            }
            return Ok(());
        };
        let h = self.handle(seg.file, true)?;
        let fd = h.file.as_raw_fd();
        let mut iov: Vec<libc::iovec> = blocks
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let (mut first, mut pos) = (0usize, seg.offset);
        while first < iov.len() {
            let n = (iov.len() - first).min(MAX_IOV);
            // SAFETY: every iovec points into a live `&[u8]` of `blocks` (or the unwritten tail of one), which
            // pwritev only reads.
            let r =
                unsafe { libc::pwritev(fd, iov[first..].as_ptr(), n as i32, pos as libc::off_t) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.io_err(e, "writing", seg.file));
            }
            if r == 0 {
                let e = io::Error::from(io::ErrorKind::WriteZero);
                return Err(self.io_err(e, "writing", seg.file));
            }
            let mut done = r as usize;
            pos += done as u64;
            while done > 0 {
                let v = &mut iov[first];
                if done >= v.iov_len {
                    done -= v.iov_len;
                    first += 1;
                } else {
                    // SAFETY: `done < iov_len`, so the pointer stays inside the same block.
                    v.iov_base = unsafe { v.iov_base.cast::<u8>().add(done) }.cast();
                    v.iov_len -= done;
                    done = 0;
                }
            }
        }
        Ok(())
    }

    /// Read `len` bytes at `offset` of piece `piece` into a new buffer (as [`Storage::read_block`], without
    /// zero-filling the buffer first).
    pub fn read_vec(&self, piece: u32, offset: u32, len: u32) -> Result<Vec<u8>, StorageError> {
        let mut buf = Vec::new();
        self.read_into(&mut buf, piece, offset, len)?;
        Ok(buf)
    }

    /// [`Storage::read_vec`] into `buf` (its contents replaced; its allocation reused when large enough).
    pub fn read_into(
        &self,
        buf: &mut Vec<u8>,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<(), StorageError> {
        buf.clear();
        buf.reserve(len as usize);
        let mut at = 0usize;
        for seg in self.layout().block_segments(piece, offset, len)? {
            let h = self.handle(seg.file, false)?;
            let fd = h.file.as_raw_fd();
            let want = seg.len as usize;
            let mut done = 0usize;
            while done < want {
                let off = seg.offset + done as u64;
                // SAFETY: `at + want <= len <= capacity`: the kernel writes inside the allocation; nothing reads
                // the bytes before `set_len` below, after every one of them was written.
                let r = unsafe {
                    libc::pread(
                        fd,
                        buf.as_mut_ptr().add(at + done).cast(),
                        want - done,
                        off as libc::off_t,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(self.read_err(e, seg.file, seg.offset + want as u64));
                }
                if r == 0 {
                    let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(self.read_err(e, seg.file, seg.offset + want as u64));
                }
                done += r as usize;
            }
            at += want;
        }
        debug_assert_eq!(at, len as usize);
        // SAFETY: the segments cover exactly `len` bytes (block_segments checked the range) and every byte of
        // them was written by pread above.
        unsafe { buf.set_len(len as usize) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Storage;

    fn storage(dir: &std::path::Path) -> Storage {
        crate::storage::test_storage(dir, &[("a", 40_000), ("b", 0), ("c", 30_000)], 32768)
    }

    #[test]
    fn runs_write_and_read_like_single_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path());
        s.prepare().unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        // Piece 0 in one file (one pwritev of 3 blocks, one of them empty); piece 1 crosses from a to c.
        s.write_run(0, 0, &[&data[..10_000], &[], &data[10_000..32768]])
            .unwrap();
        s.write_run(1, 0, &[&data[32768..50_000], &data[50_000..65536]])
            .unwrap();
        s.write_run(2, 0, &[&data[65536..]]).unwrap();
        for p in 0..3u32 {
            let (a, b) = (p as usize * 32768, ((p as usize + 1) * 32768).min(70_000));
            assert_eq!(s.read_vec(p, 0, (b - a) as u32).unwrap(), &data[a..b]);
            assert_eq!(s.read_piece(p).unwrap(), &data[a..b]);
        }
        assert_eq!(s.read_vec(1, 5000, 10).unwrap(), &data[37768..37778]);
        assert!(
            s.read_vec(2, 0, 5000).is_err(),
            "past the end of the torrent"
        );
    }

    /// More slices than one `pwritev` takes (received blocks come as several slices each): several calls.
    #[test]
    fn runs_of_many_slices_take_several_calls() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path());
        let data: Vec<u8> = (0..32768u32).map(|i| (i * 13 + i / 97) as u8).collect();
        let slices: Vec<&[u8]> = data.chunks(50).collect();
        assert!(slices.len() > 2 * super::MAX_IOV);
        s.write_run(0, 0, &slices).unwrap();
        assert_eq!(s.read_piece(0).unwrap(), data);
    }

    #[test]
    fn short_files_read_as_missing_data() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path());
        assert!(s.read_vec(0, 0, 16384).unwrap_err().is_missing_data());
        // A file cut short by someone else (files this storage creates are preallocated to full length).
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t").join("a"), [1; 100]).unwrap();
        assert!(s.read_vec(0, 0, 16384).unwrap_err().is_missing_data());
        assert_eq!(s.read_vec(0, 0, 100).unwrap(), vec![1; 100]);
    }
}
