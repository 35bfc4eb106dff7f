//! Disk image back ends for virtio-blk: raw files (and block devices) and
//! qcow2 images (through the `imago` crate), behind one [`DiskBackend`] trait.

pub mod qcow2;
pub mod raw;
pub mod spec;

pub use spec::{DiskSpec, DiskSpecError};

use std::io;
use std::path::{Path, PathBuf};

/// A disk as virtio-blk sees it: a byte array of `size()` bytes.
///
/// Every method takes offsets already checked against `size()` by the
/// device; back ends still return errors (never panic) for anything else.
pub trait DiskBackend: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every completed write durable on the host's disk (fdatasync).
    fn flush(&mut self) -> io::Result<()>;
    /// The guest no longer needs `[offset, offset+len)`: free it if possible.
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Make `[offset, offset+len)` read as zeros.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()>;
}

/// A disk in host memory: for tests, fuzzing and scratch disks.
pub struct MemDisk {
    data: Vec<u8>,
}

impl MemDisk {
    pub fn new(size: usize) -> Self {
        Self {
            data: vec![0; size],
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.data.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        Ok(offset as usize..end as usize)
    }
}

impl DiskBackend for MemDisk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64)?;
        self.data[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.range(offset, len)?;
        self.data[r].fill(0);
        Ok(())
    }
}

/// Image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl std::str::FromStr for Format {
    type Err = BlockError;
    fn from_str(s: &str) -> Result<Self, BlockError> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            _ => Err(BlockError::UnknownFormat(s.to_string())),
        }
    }
}

/// How to open a disk image.
#[derive(Clone, Debug, Default)]
pub struct DiskOptions {
    pub read_only: bool,
    /// `None`: raw, unless the file starts with the qcow2 magic, in which
    /// case the user must say which format they mean.
    pub format: Option<Format>,
}

/// Errors opening or using a disk image.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot open disk image {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "disk image {0} looks like qcow2: say format=qcow2 to use it as qcow2, or format=raw to expose its bytes"
    )]
    AmbiguousFormat(PathBuf),
    #[error("unknown disk image format {0:?}: use raw or qcow2")]
    UnknownFormat(String),
    #[error("cannot open qcow2 image {path}: {source}")]
    Qcow2 {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk serial {0:?} is longer than 20 bytes")]
    SerialTooLong(String),
}

/// The first four bytes of a qcow2 image.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Open the disk image at `path`.
pub fn open_disk(path: &Path, opts: &DiskOptions) -> Result<Box<dyn DiskBackend>, BlockError> {
    let format = match opts.format {
        Some(f) => f,
        None => {
            let mut magic = [0u8; 4];
            let f = std::fs::File::open(path).map_err(|source| BlockError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            use std::os::unix::fs::FileExt;
            match f.read_exact_at(&mut magic, 0) {
                Ok(()) if magic == QCOW2_MAGIC => {
                    return Err(BlockError::AmbiguousFormat(path.to_path_buf()));
                }
                _ => Format::Raw,
            }
        }
    };
    Ok(match format {
        Format::Raw => Box::new(raw::RawDisk::open(path, opts.read_only)?),
        Format::Qcow2 => Box::new(qcow2::Qcow2Disk::open(path, opts.read_only)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_magic_without_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.img");
        let mut data = QCOW2_MAGIC.to_vec();
        data.resize(4096, 0);
        std::fs::write(&p, data).unwrap();
        let e = open_disk(&p, &DiskOptions::default()).err().unwrap();
        assert!(matches!(e, BlockError::AmbiguousFormat(_)), "{e}");
        // Explicit raw is fine.
        let opts = DiskOptions {
            format: Some(Format::Raw),
            ..DiskOptions::default()
        };
        assert_eq!(open_disk(&p, &opts).unwrap().size(), 4096);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = open_disk(Path::new("/nonexistent/disk.img"), &DiskOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/disk.img"), "{e}");
        assert!("vmdk".parse::<Format>().is_err());
    }
}
