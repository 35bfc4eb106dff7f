//! An ext4 root disk with the busybox userland, for guests that boot from a
//! virtio-blk disk instead of living in the initramfs.
//!
//! The file tree is the same [`InitramfsBuilder`] tree the initramfs uses,
//! laid out in a staging directory and turned into an ext4 image by
//! `mke2fs -d` (Debian's e2fsprogs; no root, loop device or mount needed).
//! The initramfs mounts it when the kernel command line says
//! `vessel.root=/dev/vda` and switches to it; the disk's `/sbin/init` is the
//! same script as the initramfs's `/init`.
//!
//! `vessel run IMAGE --disk root.img` recognises such a disk by its ext4
//! label ([`is_root_disk`]) and boots from it with [`root_initrd`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::initramfs::{INIT_SCRIPT, InitramfsBuilder, InitramfsError, Node};
use crate::{ImageError, Manifest};

/// The ext4 volume label of every root disk `make_ext4` builds.
pub const ROOT_LABEL: &str = "vessel-root";

/// How many bytes from the start of a disk [`is_root_disk`] needs: the
/// ext4 superblock sits at 1024 and its label ends at 1024 + 136.
pub const SUPERBLOCK_END: usize = 2048;

/// The root-disk initramfs is kept beside the image's `initrd.gz` as
/// `initrd-disk-<key>.gz`, the key naming what it was built from.
pub const ROOT_INITRD_PREFIX: &str = "initrd-disk-";

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
            ROOT_LABEL,
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

/// Whether a disk that starts with `head` (at least [`SUPERBLOCK_END`]
/// bytes) is an ext2/3/4 filesystem labelled [`ROOT_LABEL`], i.e. a root
/// disk from [`make_ext4`] (or `vessel image disk`).
pub fn is_root_disk(head: &[u8]) -> bool {
    const SB: usize = 1024;
    let Some(sb) = head.get(SB..SB + 136) else {
        return false;
    };
    // s_magic at 56 (0xEF53, little-endian), s_volume_name[16] at 120.
    if sb[56..58] != [0x53, 0xef] {
        return false;
    }
    let name = &sb[120..136];
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    &name[..len] == ROOT_LABEL.as_bytes()
}

/// The initramfs that boots a root disk for `manifest`'s image: the
/// standard one plus the ext4 modules ([`crate::initramfs_for_disk`]),
/// built on first use beside the image's `initrd.gz` and rebuilt when the
/// image (a new fetch) or vessel's `/init` changes.
pub fn root_initrd(manifest: &Manifest) -> Result<PathBuf, ImageError> {
    let dir = manifest.initrd.parent().unwrap_or(Path::new("."));
    let inputs = format!(
        "{INIT_SCRIPT}\n{}\n{}\n{:?}\n{:?}",
        manifest.kernel_version, manifest.created, manifest.modules, manifest.disk_modules
    );
    let key = &crate::download::sha256_hex(inputs.as_bytes())[..16];
    let name = format!("{ROOT_INITRD_PREFIX}{key}.gz");
    let path = dir.join(&name);
    if !path.is_file() {
        let mut b = crate::initramfs_for_disk(manifest)?;
        // ext4.ko and jbd2.ko are 8 MB with their symbol tables: checking
        // their signatures (SHA-256 over every byte) takes the emulated
        // guest longer than the rest of its boot. Debian's kernel does not
        // enforce module signatures, so these load unsigned (the kernel
        // notes the taint once).
        for name in &manifest.disk_modules {
            let guest = format!("/lib/modules/{name}.ko");
            let path = manifest.modules_dir.join(format!("{name}.ko"));
            let data = std::fs::read(&path).map_err(|source| ImageError::Io { path, source })?;
            let unsigned = strip_module_signature(&data).to_vec();
            b.add_file(&guest, unsigned, 0o644)?;
        }
        // Written through a temporary file and renamed: two runs at once
        // both build it, and each rename is whole.
        b.write_gz(&path)?;
        // Older builds go (a run that already read one is not disturbed).
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(ROOT_INITRD_PREFIX) && n.ends_with(".gz") && n != name {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(path)
}

/// A kernel module without its appended signature (the module itself when
/// it has none, or when the trailer does not add up).
pub fn strip_module_signature(module: &[u8]) -> &[u8] {
    const MARKER: &[u8] = b"~Module signature appended~\n";
    // struct module_signature: algo, hash, id_type, signer_len, key_id_len,
    // 3 pad bytes, sig_len (big-endian u32).
    const INFO: usize = 12;
    let Some(body) = module.strip_suffix(MARKER) else {
        return module;
    };
    let Some(info) = body.len().checked_sub(INFO).map(|at| &body[at..]) else {
        return module;
    };
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let extra = usize::from(info[3]) + usize::from(info[4]) + sig_len;
    match (body.len() - INFO).checked_sub(extra) {
        Some(end) => &module[..end],
        None => module,
    }
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

        let head = std::fs::read(&img).unwrap();
        assert!(is_root_disk(&head[..SUPERBLOCK_END]));
    }

    #[test]
    fn the_root_initrd_is_built_once_per_image_and_init() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("parts/modules")).unwrap();
        std::fs::write(d.join("parts/busybox"), b"bb").unwrap();
        std::fs::write(d.join("initrd.gz"), b"standard").unwrap();
        std::fs::write(d.join("parts/modules/virtio_mmio.ko"), b"mmio").unwrap();
        let mut signed = b"ext4 module".to_vec();
        signed.extend_from_slice(&[7; 20]);
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 20]);
        signed.extend_from_slice(b"~Module signature appended~\n");
        std::fs::write(d.join("parts/modules/ext4.ko"), &signed).unwrap();
        let manifest = |created: &str| -> Manifest {
            let m: Manifest = serde_json::from_value(serde_json::json!({
                "format": 1, "name": "t", "arch": "riscv64", "suite": "trixie",
                "kernel_version": "6.12", "kernel": "Image", "firmware": "fw_dynamic.bin",
                "initrd": "initrd.gz", "busybox": "parts/busybox",
                "modules_dir": "parts/modules", "modules": ["virtio_mmio"],
                "disk_modules": ["ext4"], "cmdline": "console=ttyS0", "packages": [],
                "created": created,
            }))
            .unwrap();
            m.absolutize(d)
        };
        let first = root_initrd(&manifest("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(first.parent(), Some(d));
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(ROOT_INITRD_PREFIX), "{name}");
        let built = std::fs::metadata(&first).unwrap().modified().unwrap();
        let again = root_initrd(&manifest("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(again, first);
        assert_eq!(
            std::fs::metadata(&again).unwrap().modified().unwrap(),
            built
        );

        // A new fetch: a new initramfs, and the old one is gone.
        let refetched = root_initrd(&manifest("2026-02-01T00:00:00Z")).unwrap();
        assert_ne!(refetched, first);
        assert!(refetched.is_file());
        assert!(!first.exists());
        assert!(d.join("initrd.gz").is_file(), "the standard initrd stays");

        // ext4.ko went in without its signature.
        let gz = std::fs::read(&refetched).unwrap();
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut cpio).unwrap();
        let has = |needle: &[u8]| cpio.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"lib/modules/ext4.ko"));
        assert!(has(b"ext4 module"));
        assert!(!has(b"~Module signature appended~"));
        assert!(has(b"mmio"));
    }

    #[test]
    fn module_signatures_are_stripped_whole() {
        let mut m = b"\x7fELF module body".to_vec();
        let plain = m.clone();
        assert_eq!(strip_module_signature(&m), &plain[..], "unsigned stays");
        m.extend_from_slice(&[0xAB; 300]); // the PKCS#7 blob
        m.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 44]); // sig_len 300
        m.extend_from_slice(b"~Module signature appended~\n");
        assert_eq!(strip_module_signature(&m), &plain[..]);
        // A sig_len longer than the file leaves it alone.
        let n = m.len();
        m[n - 28 - 2] = 0xff;
        assert_eq!(strip_module_signature(&m).len(), m.len());
        assert_eq!(
            strip_module_signature(b"~Module signature appended~\n").len(),
            28
        );
    }

    #[test]
    fn root_disks_are_known_by_their_ext4_label() {
        let mut head = vec![0u8; SUPERBLOCK_END];
        assert!(!is_root_disk(&head), "zeros");
        assert!(!is_root_disk(&head[..1100]), "too short");
        head[1024 + 56] = 0x53;
        head[1024 + 57] = 0xef;
        assert!(!is_root_disk(&head), "ext4 without a label");
        head[1024 + 120..1024 + 120 + ROOT_LABEL.len()].copy_from_slice(ROOT_LABEL.as_bytes());
        assert!(is_root_disk(&head));
        head[1024 + 120 + ROOT_LABEL.len()] = b'2';
        assert!(!is_root_disk(&head), "another label that starts the same");
        head[1024 + 120 + ROOT_LABEL.len()] = 0;
        head[1024 + 56] = 0;
        assert!(!is_root_disk(&head), "no ext magic");
    }
}
