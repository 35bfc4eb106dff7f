//! Guest images for vessel.
//!
//! `debian-riscv64`: Debian trixie's own riscv64 kernel (`linux-image-riscv64`),
//! OpenSBI's `fw_dynamic.bin` (`opensbi`) and a busybox initramfs
//! (`busybox-static` plus the kernel's virtio modules). `debian-amd64`:
//! Debian trixie's x86-64 cloud kernel (`linux-image-cloud-amd64`, a bzImage)
//! and the same initramfs built from amd64 packages. Both are downloaded
//! from the Debian archive the host's apt sources name, verified against the
//! archive's signed index, and cached under `$XDG_CACHE_HOME/vessel/images/`.
//!
//! ```no_run
//! let image = vessel_images::load("debian-riscv64")?;
//! let mut initrd = vessel_images::initramfs_for(&image)?;
//! initrd.add_file("/etc/vessel/init.d/10-hello", b"#!/bin/sh\nuname -r\n".to_vec(), 0o755)?;
//! initrd.write_gz(std::path::Path::new("/tmp/initrd.gz"))?;
//! # Ok::<(), vessel_images::ImageError>(())
//! ```

pub mod cache;
pub mod deb;
pub mod disk;
pub mod download;
pub mod fetch;
pub mod index;
pub mod initramfs;
pub mod kernel;
pub mod release;
pub mod sources;

use std::path::PathBuf;

use thiserror::Error;

pub use cache::{Manifest, PackageRecord};
pub use fetch::{DEBIAN_AMD64, DEBIAN_RISCV64, FetchOptions, IMAGES, ImageSpec, fetch};
pub use initramfs::{InitramfsBuilder, READY_MARKER};
pub use kernel::Module;

/// Any error of the image library; each variant says what failed and what to do.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error(transparent)]
    Sources(#[from] sources::SourcesError),
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Download(#[from] download::DownloadError),
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error(
        "unknown image {name:?}; the images vessel can fetch: {DEBIAN_RISCV64}, {DEBIAN_AMD64}"
    )]
    Unknown { name: String },
    #[error("{url} describes suite {got}, expected {want}; the mirror is misconfigured")]
    WrongSuite {
        url: String,
        got: String,
        want: &'static str,
    },
    #[error(
        "package {package} has no {path}; Debian changed the package layout: please report this"
    )]
    MissingFile { package: String, path: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The manifest of a fetched image (absolute paths), from the default cache.
pub fn load(name: &str) -> Result<Manifest, ImageError> {
    Ok(cache::load_from(&cache::images_root()?, name)?)
}

/// The fetched images in the default cache.
pub fn list() -> Result<Vec<Manifest>, ImageError> {
    Ok(cache::list_in(&cache::images_root()?)?)
}

/// Delete a fetched image (and its downloaded packages) from the default cache.
pub fn remove(name: &str) -> Result<(), ImageError> {
    Ok(cache::remove_in(&cache::images_root()?, name)?)
}

/// An initramfs builder preloaded with the image's standard contents
/// (busybox, modules, `/init`), to which callers add their own files, e.g.
/// scripts in `/etc/vessel/init.d/` that `/init` runs in name order.
pub fn initramfs_for(manifest: &Manifest) -> Result<InitramfsBuilder, ImageError> {
    let read = |path: PathBuf| {
        std::fs::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })
    };
    let busybox = read(manifest.busybox.clone())?;
    let mut modules = Vec::new();
    for name in &manifest.modules {
        modules.push(Module {
            name: name.clone(),
            data: read(manifest.modules_dir.join(format!("{name}.ko")))?,
        });
    }
    Ok(InitramfsBuilder::busybox_base(busybox, &modules)?)
}

/// Like [`initramfs_for`], plus the modules an ext4 root disk needs
/// (`disk_modules`): with `vessel.root=/dev/vda` on the kernel command line,
/// `/init` loads them, mounts that disk and switches to it.
pub fn initramfs_for_disk(manifest: &Manifest) -> Result<InitramfsBuilder, ImageError> {
    let mut b = initramfs_for(manifest)?;
    let mut list = String::new();
    for name in &manifest.disk_modules {
        let path = manifest.modules_dir.join(format!("{name}.ko"));
        let data = std::fs::read(&path).map_err(|source| ImageError::Io { path, source })?;
        b.add_file(&format!("/lib/modules/{name}.ko"), data, 0o644)?;
        list.push_str(name);
        list.push('\n');
    }
    b.add_file("/etc/vessel/modules.disk", list.into_bytes(), 0o644)?;
    Ok(b)
}

/// The file tree of an ext4 root disk for the image (busybox userland,
/// `/sbin/init`); add files, then write it with [`disk::make_ext4`].
pub fn rootfs_for(manifest: &Manifest) -> Result<InitramfsBuilder, ImageError> {
    let busybox = std::fs::read(&manifest.busybox).map_err(|source| ImageError::Io {
        path: manifest.busybox.clone(),
        source,
    })?;
    Ok(disk::rootfs_tree(busybox)?)
}
