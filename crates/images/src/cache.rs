//! The image cache: `$XDG_CACHE_HOME/vessel/images/<name>/` with a
//! `manifest.json` describing what is there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::initramfs::write_atomic;

/// Errors reading or changing the image cache.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error(
        "cannot find the cache directory: neither XDG_CACHE_HOME nor HOME is set; set one of them"
    )]
    NoHome,
    #[error("image {name} is not fetched yet (no {manifest}); run `vessel image fetch {name}`")]
    NotFetched { name: String, manifest: PathBuf },
    #[error(
        "image {name}'s manifest {manifest} is unreadable ({message}); run `vessel image fetch {name}` again"
    )]
    BadManifest {
        name: String,
        manifest: PathBuf,
        message: String,
    },
    #[error("image {name} is incomplete: {file} is missing; run `vessel image fetch {name}` again")]
    Incomplete { name: String, file: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no image {name} in {dir}; `vessel image ls` lists the fetched images")]
    NoSuchImage { name: String, dir: PathBuf },
    #[error("bad image name {name:?}: use letters, digits, '-', '_' and '.' only")]
    BadName { name: String },
}

/// One package the image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// Archive-relative path, e.g. `pool/main/o/opensbi/opensbi_1.6-1_all.deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// What `manifest.json` holds. Paths are stored relative to the image
/// directory; [`load`] returns them absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file (currently 1).
    pub format: u32,
    /// Image name, e.g. `debian-riscv64`.
    pub name: String,
    /// Guest architecture, e.g. `riscv64`.
    pub arch: String,
    /// Debian suite the packages came from, e.g. `trixie`.
    pub suite: String,
    /// Kernel release (`uname -r` in the guest), e.g. `6.12.117+deb13-riscv64`.
    pub kernel_version: String,
    /// The kernel: a raw RISC-V `Image`, or an x86-64 `bzImage`.
    pub kernel: PathBuf,
    /// OpenSBI `fw_dynamic.bin`; empty for boards that start at the kernel
    /// (x86_64): see [`Manifest::firmware`].
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub firmware: PathBuf,
    /// gzip-compressed newc initramfs.
    pub initrd: PathBuf,
    /// The static busybox binary (for building other initramfs variants).
    pub busybox: PathBuf,
    /// Directory of uncompressed `.ko` files.
    pub modules_dir: PathBuf,
    /// Modules in the order `/init` loads them (dependencies first).
    pub modules: Vec<String>,
    /// Further modules in `modules_dir`, not in the initramfs, that mounting
    /// an ext4 root disk needs, in load order (after `modules`).
    #[serde(default)]
    pub disk_modules: Vec<String>,
    /// Suggested kernel command line.
    pub cmdline: String,
    /// Packages used, with their checksums from the signed index.
    pub packages: Vec<PackageRecord>,
    /// When the image was built: RFC 3339, UTC.
    pub created: String,
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

impl Manifest {
    /// Resolve relative paths against the image directory.
    pub fn absolutize(mut self, dir: &Path) -> Self {
        for p in [
            &mut self.kernel,
            &mut self.firmware,
            &mut self.initrd,
            &mut self.busybox,
            &mut self.modules_dir,
        ] {
            if !is_empty_path(p) {
                *p = dir.join(&*p);
            }
        }
        self
    }

    /// The boot firmware, if the image has one.
    pub fn firmware(&self) -> Option<&Path> {
        (!is_empty_path(&self.firmware)).then_some(self.firmware.as_path())
    }
}

/// `$XDG_CACHE_HOME/vessel/images` (default `~/.cache/vessel/images`).
pub fn images_root() -> Result<PathBuf, CacheError> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("vessel/images"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or(CacheError::NoHome)?;
    Ok(PathBuf::from(home).join(".cache/vessel/images"))
}

/// Check an image name is a plain directory name.
pub fn check_name(name: &str) -> Result<(), CacheError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CacheError::BadName {
            name: name.to_owned(),
        })
    }
}

/// Load an image's manifest from `root/<name>/manifest.json`, with absolute
/// paths, checking that the files it names exist.
pub fn load_from(root: &Path, name: &str) -> Result<Manifest, CacheError> {
    check_name(name)?;
    let dir = root.join(name);
    let path = dir.join("manifest.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CacheError::NotFetched {
                name: name.to_owned(),
                manifest: path,
            });
        }
        Err(source) => return Err(CacheError::Io { path, source }),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| CacheError::BadManifest {
        name: name.to_owned(),
        manifest: path.clone(),
        message: e.to_string(),
    })?;
    let manifest = manifest.absolutize(&dir);
    for file in [&manifest.kernel, &manifest.firmware, &manifest.initrd] {
        if !is_empty_path(file) && !file.is_file() {
            return Err(CacheError::Incomplete {
                name: name.to_owned(),
                file: file.clone(),
            });
        }
    }
    Ok(manifest)
}

/// Write `manifest` (with paths relative to `dir`) as `dir/manifest.json`.
pub fn save(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(manifest).map_err(|e| CacheError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&path, text.as_bytes()).map_err(|source| CacheError::Io { path, source })
}

/// Names of the images under `root` that have a readable manifest, sorted.
pub fn list_in(root: &Path) -> Result<Vec<Manifest>, CacheError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CacheError::Io {
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names
        .iter()
        .filter_map(|n| load_from(root, n).ok())
        .collect())
}

/// Delete `root/<name>` entirely (downloaded packages too).
pub fn remove_in(root: &Path, name: &str) -> Result<(), CacheError> {
    check_name(name)?;
    let dir = root.join(name);
    if !dir.exists() {
        return Err(CacheError::NoSuchImage {
            name: name.to_owned(),
            dir: root.to_owned(),
        });
    }
    std::fs::remove_dir_all(&dir).map_err(|source| CacheError::Io { path: dir, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: 1,
            name: "t".into(),
            arch: "riscv64".into(),
            suite: "trixie".into(),
            kernel_version: "6.12".into(),
            kernel: "Image".into(),
            firmware: "fw_dynamic.bin".into(),
            initrd: "initrd.gz".into(),
            busybox: "parts/busybox".into(),
            modules_dir: "parts/modules".into(),
            modules: vec!["virtio_mmio".into()],
            disk_modules: vec![],
            cmdline: "console=ttyS0".into(),
            packages: vec![],
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn save_load_list_remove() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t");
        assert!(matches!(
            load_from(root.path(), "t"),
            Err(CacheError::NotFetched { .. })
        ));
        save(&dir, &sample()).unwrap();
        let e = load_from(root.path(), "t").unwrap_err();
        assert!(matches!(e, CacheError::Incomplete { .. }), "{e}");
        for f in ["Image", "fw_dynamic.bin", "initrd.gz"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let m = load_from(root.path(), "t").unwrap();
        assert_eq!(m.kernel, dir.join("Image"));
        assert_eq!(m.modules, vec!["virtio_mmio"]);
        assert_eq!(list_in(root.path()).unwrap().len(), 1);
        remove_in(root.path(), "t").unwrap();
        assert!(list_in(root.path()).unwrap().is_empty());
        assert!(remove_in(root.path(), "t").is_err());
    }

    #[test]
    fn corrupt_manifest_and_bad_names_are_errors() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("t")).unwrap();
        std::fs::write(root.path().join("t/manifest.json"), b"{not json").unwrap();
        let e = load_from(root.path(), "t").unwrap_err();
        assert!(matches!(e, CacheError::BadManifest { .. }), "{e}");
        assert!(load_from(root.path(), "../etc").is_err());
        assert!(remove_in(root.path(), "..").is_err());
        assert!(remove_in(root.path(), "a/b").is_err());
    }

    #[test]
    fn an_image_without_firmware_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t");
        let mut m = sample();
        m.arch = "x86_64".into();
        m.kernel = "bzImage".into();
        m.firmware = PathBuf::new();
        save(&dir, &m).unwrap();
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert!(!text.contains("firmware"), "{text}");
        for f in ["bzImage", "initrd.gz"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let loaded = load_from(root.path(), "t").unwrap();
        assert_eq!(loaded.firmware(), None);
        assert_eq!(loaded.kernel, dir.join("bzImage"));
        let mut with = sample();
        with.firmware = "fw_dynamic.bin".into();
        let with = with.absolutize(&dir);
        assert_eq!(with.firmware(), Some(dir.join("fw_dynamic.bin").as_path()));
    }
}
