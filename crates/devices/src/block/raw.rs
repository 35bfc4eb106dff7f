//! Raw disk images: the file's bytes are the disk's bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{BlockError, DiskBackend};

/// A raw image file or a host block device.
pub struct RawDisk {
    file: File,
    size: u64,
}

impl RawDisk {
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let err = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        // Seeking to the end also sizes block devices, unlike metadata().
        let size = file.seek(SeekFrom::End(0)).map_err(err)?;
        Ok(Self { file, size })
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn write_zero_bytes(&self, mut offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl DiskBackend for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self
            .fallocate(
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
            .is_ok()
            || self
                .fallocate(
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset,
                    len,
                )
                .is_ok()
        {
            return Ok(());
        }
        self.write_zero_bytes(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_zeroes_and_punches_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![0xabu8; 1 << 20]).unwrap();
        let mut d = RawDisk::open(&p, false).unwrap();
        assert_eq!(d.size(), 1 << 20);
        d.write_at(&[1, 2, 3], 4096).unwrap();
        let mut b = [0u8; 4];
        d.read_at(&mut b, 4095).unwrap();
        assert_eq!(b, [0xab, 1, 2, 3]);
        d.write_zeroes(8192, 8192).unwrap();
        d.discard(65536, 65536).unwrap();
        d.flush().unwrap();
        let data = std::fs::read(&p).unwrap();
        assert!(data[8192..16384].iter().all(|&x| x == 0));
        assert!(data[65536..131072].iter().all(|&x| x == 0));
        assert_eq!(data[16384], 0xab);
        assert_eq!(data[131072], 0xab);
        assert!(d.read_at(&mut b, (1 << 20) - 2).is_err(), "past the end");
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let mut d = RawDisk::open(&p, true).unwrap();
        assert!(d.write_at(&[1], 0).is_err());
    }
}
