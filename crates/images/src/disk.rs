//! An ext4 root disk with the busybox userland, for guests that boot from a
//! virtio-blk disk instead of living in the initramfs.
//!
//! The file tree is the same [`InitramfsBuilder`] tree the initramfs uses,
//! laid out in a staging directory and turned into an ext4 image by
//! `mke2fs -d` (Debian's e2fsprogs; no root, loop device or mount needed).
//! The initramfs mounts it when the kernel command line says
//! `vessel.root=/dev/vda` and switches to it; the disk's `/sbin/init` is the
//! same script as the initramfs's `/init`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::initramfs::{INIT_SCRIPT, InitramfsBuilder, InitramfsError, Node};

/// Errors building a root disk.
#[derive(Debug, Error)]
pub enum DiskError {
    #[error("cannot run mke2fs to build {out}: {source}; install Debian's e2fsprogs package")]
    Mke2fsMissing {
        out: PathBuf,
        source: std::io::Error,
    },
    #[error("mke2fs failed to build {out}: {stderr}")]
    Mke2fs { out: PathBuf, stderr: String },
    #[error("staging the root disk in {path}: {source}")]
    Stage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "a root disk of {size_mib} MiB is too small for these files: give it at least {needed_mib} MiB"
    )]
    TooSmall { size_mib: u64, needed_mib: u64 },
    #[error(transparent)]
    Tree(#[from] InitramfsError),
}

/// The root disk's tree: busybox with applet links and `/sbin/init`, no
/// modules (the initramfs loaded them) and no device nodes (devtmpfs).
pub fn rootfs_tree(busybox: Vec<u8>) -> Result<InitramfsBuilder, DiskError> {
    let mut b = InitramfsBuilder::busybox_base(busybox, &[])?;
    b.remove("/init")?;
    b.remove("/etc/vessel/modules")?;
    b.remove("/etc/vessel/in-initramfs")?;
    b.add_file("/sbin/init", INIT_SCRIPT.as_bytes().to_vec(), 0o755)?;
    Ok(b)
}

/// Lay `tree` out under `dir` (character devices are skipped).
pub fn write_tree(tree: &InitramfsBuilder, dir: &Path) -> Result<u64, DiskError> {
    let mut bytes = 0u64;
    for (path, node) in tree.nodes() {
        let p = dir.join(path);
        let err = |source| DiskError::Stage {
            path: p.clone(),
            source,
        };
        match node {
            Node::Dir { mode } => {
                std::fs::create_dir_all(&p).map_err(err)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                    .map_err(err)?;
            }
            Node::File { data, mode } => {
                std::fs::write(&p, data).map_err(err)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                    .map_err(err)?;
                bytes += data.len() as u64;
            }
            Node::Symlink { target } => std::os::unix::fs::symlink(target, &p).map_err(err)?,
            Node::CharDev { .. } => {}
        }
    }
    Ok(bytes)
}

/// Build an ext4 image of `size_mib` MiB at `out` holding `tree`. The image
/// is written under a temporary name and renamed when complete.
pub fn make_ext4(tree: &InitramfsBuilder, out: &Path, size_mib: u64) -> Result<(), DiskError> {
    let stage = tempfile::tempdir().map_err(|source| DiskError::Stage {
        path: std::env::temp_dir(),
        source,
    })?;
    let bytes = write_tree(tree, stage.path())?;
    // ext4 metadata (journal, inode tables) needs room beyond the files.
    let needed_mib = bytes.div_ceil(1 << 20) * 5 / 4 + 8;
    if size_mib < needed_mib {
        return Err(DiskError::TooSmall {
            size_mib,
            needed_mib,
        });
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    let stage_err = |source| DiskError::Stage {
        path: out.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(stage_err)?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(stage_err)?;
    let output = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "vessel-root",
            "-E",
            "root_owner=0:0",
        ])
        .arg("-d")
        .arg(stage.path())
        .arg(tmp.path())
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(|source| DiskError::Mke2fsMissing {
            out: out.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(DiskError::Mke2fs {
            out: out.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(stage_err)?;
    tmp.persist(out).map_err(|e| stage_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_tree_has_sbin_init_and_no_initramfs_marker() {
        let t = rootfs_tree(b"bb".to_vec()).unwrap();
        let paths: Vec<&str> = t.paths().collect();
        assert!(paths.contains(&"sbin/init"));
        assert!(paths.contains(&"bin/sh"));
        assert!(!paths.contains(&"init"));
        assert!(!paths.contains(&"etc/vessel/in-initramfs"));
        assert!(!paths.contains(&"etc/vessel/modules"));
    }

    #[test]
    fn ext4_image_holds_the_tree() {
        if Command::new("debugfs").arg("-V").output().is_err() {
            eprintln!("SKIP: e2fsprogs (mke2fs, debugfs) is not installed");
            return;
        }
        let mut t = rootfs_tree(b"busybox bytes".to_vec()).unwrap();
        t.add_file(
            "/etc/vessel/init.d/10-x",
            b"#!/bin/sh\necho x\n".to_vec(),
            0o755,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("root.ext4");
        assert!(matches!(
            make_ext4(&t, &img, 1),
            Err(DiskError::TooSmall { .. })
        ));
        make_ext4(&t, &img, 16).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 16 << 20);
        let out = Command::new("debugfs")
            .args(["-R", "cat /etc/vessel/init.d/10-x"])
            .arg(&img)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "#!/bin/sh\necho x\n");
        let out = Command::new("debugfs")
            .args(["-R", "stat /sbin/init"])
            .arg(&img)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&out.stdout);
        assert!(stat.contains("Mode:  0755"), "{stat}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
