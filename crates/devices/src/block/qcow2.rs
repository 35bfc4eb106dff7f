//! qcow2 images through the `imago` crate: read-write, copy-on-write over a
//! backing file (raw or qcow2) that is opened read-only and never changed.

use std::io;
use std::path::Path;

use imago::file::File;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatDriverBuilder, PermissiveImplicitOpenGate};

use super::{BlockError, DiskBackend};

/// A qcow2 image (with its backing chain, if any).
pub struct Qcow2Disk {
    image: FormatAccess<File>,
    writable: bool,
}

impl Qcow2Disk {
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let err = |source| BlockError::Qcow2 {
            path: path.to_path_buf(),
            source,
        };
        let q = Qcow2::<File>::builder_path(path)
            .write(!read_only)
            .open(PermissiveImplicitOpenGate::default())
            .map_err(err)?;
        Ok(Self {
            image: FormatAccess::new(q),
            writable: !read_only,
        })
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "qcow2 image opened read-only",
            ))
        }
    }
}

impl DiskBackend for Qcow2Disk {
    fn size(&self) -> u64 {
        self.image.size()
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.image.read(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        self.image.write(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        // Write cached metadata (L2 tables, refcounts) out, then fdatasync.
        self.image.flush()?;
        self.image.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        match self.image.discard_to_any(offset, len) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
            r => r,
        }
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.image.write_zeroes(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn qemu_img() -> bool {
        let ok = Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIP: qemu-img (Debian package qemu-utils) is not installed");
        }
        ok
    }

    fn run(args: &[&str]) {
        let out = Command::new("qemu-img").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn overlay_writes_leave_the_raw_base_untouched() {
        if !qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        let overlay = dir.path().join("overlay.qcow2");
        let mut data = vec![0u8; 4 << 20];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        std::fs::write(&base, &data).unwrap();
        run(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            base.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ]);
        {
            let mut d = Qcow2Disk::open(&overlay, false).unwrap();
            assert_eq!(d.size(), 4 << 20);
            let mut b = vec![0u8; 4096];
            d.read_at(&mut b, 8192).unwrap();
            assert_eq!(b, data[8192..12288], "reads fall through to the base");
            d.write_at(&[0xee; 1000], 100_000).unwrap();
            d.write_zeroes(1 << 20, 65536).unwrap();
            d.flush().unwrap();
            let mut b = vec![0u8; 1002];
            d.read_at(&mut b, 99_999).unwrap();
            assert_eq!(b[0], data[99_999]);
            assert!(b[1..1001].iter().all(|&x| x == 0xee));
            assert_eq!(b[1001], data[101_000]);
        }
        assert_eq!(std::fs::read(&base).unwrap(), data, "base unchanged");
        run(&["check", "-q", overlay.to_str().unwrap()]);
        // qemu-img sees the guest's view.
        let flat = dir.path().join("flat.raw");
        run(&[
            "convert",
            "-O",
            "raw",
            overlay.to_str().unwrap(),
            flat.to_str().unwrap(),
        ]);
        let f = std::fs::read(&flat).unwrap();
        assert!(f[100_000..101_000].iter().all(|&x| x == 0xee));
        assert!(f[1 << 20..(1 << 20) + 65536].iter().all(|&x| x == 0));
        assert_eq!(f[..100_000], data[..100_000]);
    }

    #[test]
    fn overlay_on_a_qcow2_base_leaves_the_base_untouched() {
        if !qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let overlay = dir.path().join("top.qcow2");
        let (b, o) = (base.to_str().unwrap(), overlay.to_str().unwrap());
        run(&["create", "-q", "-f", "qcow2", b, "2M"]);
        let io = Command::new("qemu-io")
            .args(["-c", "write -P 0x11 0 128k", b])
            .output()
            .unwrap();
        assert!(
            io.status.success(),
            "{}",
            String::from_utf8_lossy(&io.stderr)
        );
        run(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", b, o]);
        let before = std::fs::read(&base).unwrap();
        {
            let mut d = Qcow2Disk::open(&overlay, false).unwrap();
            let mut buf = vec![0u8; 4096];
            d.read_at(&mut buf, 65536).unwrap();
            assert!(buf.iter().all(|&x| x == 0x11), "base data visible");
            d.write_at(&[0x22; 4096], 65536).unwrap();
            d.discard(0, 65536).unwrap();
            d.flush().unwrap();
            d.read_at(&mut buf, 65536).unwrap();
            assert!(buf.iter().all(|&x| x == 0x22));
        }
        assert_eq!(
            std::fs::read(&base).unwrap(),
            before,
            "base byte-for-byte unchanged"
        );
        run(&["check", "-q", o]);
    }

    #[test]
    fn read_only_qcow2_refuses_writes() {
        if !qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.qcow2");
        run(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "1M"]);
        let mut d = Qcow2Disk::open(&img, true).unwrap();
        assert!(d.write_at(&[1], 0).is_err());
        let mut b = [1u8; 16];
        d.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [0; 16]);
    }
}
