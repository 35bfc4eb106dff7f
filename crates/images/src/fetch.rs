//! `vessel image fetch debian-riscv64|debian-amd64`: from the signed archive
//! index to a bootable kernel, firmware (riscv64) and initramfs in the cache.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::cache::{self, Manifest, PackageRecord};
use crate::deb::{self, DebFile};
use crate::download::{self, Downloader, Expected};
use crate::index::{self, PackageEntry};
use crate::initramfs::{InitramfsBuilder, write_atomic};
use crate::kernel::{self, ModuleTree};
use crate::release;
use crate::{ImageError, sources};

/// Debian's riscv64 kernel, OpenSBI and busybox, for the emulator.
pub const DEBIAN_RISCV64: &str = "debian-riscv64";
/// Debian's x86-64 cloud kernel and busybox, for the microvm on KVM.
pub const DEBIAN_AMD64: &str = "debian-amd64";

/// What an image is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: &'static str,
    /// Debian's name of the architecture (`binary-<arch>` in the archive).
    pub debian_arch: &'static str,
    /// vessel's name of the guest architecture (`vessel run --arch`).
    pub arch: &'static str,
    /// The kernel metapackage; the versioned package it depends on ends in
    /// `-<flavour>`.
    pub kernel_meta: &'static str,
    pub flavour: &'static str,
    /// The boot firmware's package and the paths tried in it (riscv64:
    /// OpenSBI's fw_dynamic.bin); `None` when the board needs none.
    pub firmware: Option<(&'static str, &'static [&'static str])>,
    /// The kernel's file name in the image directory.
    pub kernel_file: &'static str,
    /// Suggested kernel command line.
    pub cmdline: &'static str,
}

/// Every image vessel can fetch.
pub const IMAGES: &[ImageSpec] = &[
    ImageSpec {
        name: DEBIAN_RISCV64,
        debian_arch: "riscv64",
        arch: "riscv64",
        kernel_meta: "linux-image-riscv64",
        flavour: "riscv64",
        firmware: Some((
            "opensbi",
            &[
                "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
                "/usr/share/opensbi/lp64/generic/firmware/fw_dynamic.bin",
            ],
        )),
        kernel_file: "Image",
        cmdline: "console=ttyS0",
    },
    // The cloud flavour: the smallest Debian kernel for virtual machines. It
    // has `virtio_mmio` as a module without `virtio_mmio.device=` support
    // and no MP-table parser, so the microvm describes its CPUs and virtio
    // devices in ACPI tables (docs/kvm.md).
    ImageSpec {
        name: DEBIAN_AMD64,
        debian_arch: "amd64",
        arch: "x86_64",
        kernel_meta: "linux-image-cloud-amd64",
        flavour: "cloud-amd64",
        firmware: None,
        kernel_file: "bzImage",
        cmdline: "console=ttyS0 reboot=k panic=1 pci=off",
    },
];

/// The image called `name`.
pub fn spec(name: &str) -> Result<&'static ImageSpec, ImageError> {
    IMAGES
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ImageError::Unknown {
            name: name.to_owned(),
        })
}
/// Debian release the image is built from.
pub const SUITE: &str = "trixie";
/// Kernel modules the image loads (with their dependencies); built-in ones
/// are skipped.
pub const MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    // The power button (`vessel stop`): the virtio-input driver and the
    // evdev nodes (/dev/input/event*) that acpid reads.
    "virtio_input",
    "evdev",
];
/// Modules a root disk needs, kept in `parts/modules` but not in the
/// initramfs (`ext4` alone is 7 MB): see [`Manifest::disk_modules`].
/// `crc32c_generic` is ext4's soft dependency (it asks the crypto API for
/// "crc32c" at mount time; busybox `insmod` cannot resolve that alias).
pub const DISK_MODULES: &[&str] = &["crc32c_generic", "ext4"];

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Archive base URL; default: `VESSEL_DEBIAN_MIRROR` or the host's apt sources.
    pub mirror: Option<String>,
    /// Cache root; default: `$XDG_CACHE_HOME/vessel/images`.
    pub cache_root: Option<PathBuf>,
    /// OpenPGP keyrings trusted for InRelease; default: Debian's archive keyrings.
    pub keyrings: Option<Vec<PathBuf>>,
    /// Draw progress bars (use when stderr is a terminal).
    pub progress: bool,
    /// Print one line per step to stderr.
    pub verbose: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

fn basename(filename: &str) -> &str {
    filename.rsplit('/').next().unwrap_or(filename)
}

/// Fetch and build image `name` into the cache; returns its manifest (absolute paths).
pub fn fetch(name: &str, opts: &FetchOptions) -> Result<Manifest, ImageError> {
    let spec = spec(name)?;
    let say = |msg: &str| {
        if opts.verbose {
            eprintln!("{msg}");
        }
    };
    let mirror = match &opts.mirror {
        Some(m) => m.trim_end_matches('/').to_owned(),
        None => sources::debian_mirror()?,
    };
    let root = match &opts.cache_root {
        Some(r) => r.clone(),
        None => cache::images_root()?,
    };
    let keyrings = opts
        .keyrings
        .clone()
        .unwrap_or_else(release::default_keyrings);
    let dir = root.join(name);
    let debs_dir = dir.join("debs");
    std::fs::create_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;
    // One fetch per image at a time: a second waits for the first.
    let lock_path = dir.join(".lock");
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    if lock.try_lock().is_err() {
        say(&format!("waiting for another fetch of {name} to finish"));
        lock.lock().map_err(io_err(&lock_path))?;
    }
    sweep_partials(&dir);
    let dl = Downloader::new(opts.progress);

    // 1. The signed index.
    let inrelease_url = format!("{mirror}/dists/{SUITE}/InRelease");
    say(&format!("fetching {inrelease_url}"));
    let bytes = dl.fetch_bytes(&inrelease_url, 64 << 20)?;
    let scratch = tempfile::tempdir().map_err(io_err(&std::env::temp_dir()))?;
    let inrelease = scratch.path().join("InRelease");
    std::fs::write(&inrelease, &bytes).map_err(io_err(&inrelease))?;
    let signed = release::verify_inrelease(&inrelease, &keyrings)?;
    let rel = release::parse_release(&signed, &inrelease_url)?;
    if rel.codename != SUITE {
        return Err(ImageError::WrongSuite {
            url: inrelease_url,
            got: rel.codename,
            want: SUITE,
        });
    }
    say(&format!(
        "signature good: Debian {} ({}) {}",
        rel.version, rel.codename, rel.suite
    ));

    // 2. The package index, checked against the signed Release.
    let index_rel = format!("main/binary-{}/Packages.xz", spec.debian_arch);
    let index_rel = index_rel.as_str();
    let (size, sha256) = rel.index(index_rel)?;
    let index_expect = Expected { size, sha256 };
    let index_path = dir.join("Packages.xz");
    let index_url = format!("{mirror}/dists/{SUITE}/{index_rel}");
    if download::file_matches(&index_path, &index_expect) {
        say(&format!("reusing cached {index_rel} (sha256 ok)"));
    } else {
        say(&format!("fetching {index_url}"));
        dl.fetch_verified(&index_url, &index_path, &index_expect, "Packages.xz")?;
    }
    let reader = BufReader::new(liblzma::read::XzDecoder::new(BufReader::new(
        File::open(&index_path).map_err(io_err(&index_path))?,
    )));
    let fw_package = spec.firmware.map(|(p, _)| p);
    let packages = index::parse_packages(reader, &index_url, |n| {
        n.starts_with("linux-image-") || Some(n) == fw_package || n == "busybox-static"
    })?;
    let kernel_pkg = index::resolve_kernel(&packages, spec.kernel_meta, spec.flavour, &index_url)?;
    let firmware_pkg = match fw_package {
        Some(p) => Some(index::find(&packages, p, &index_url)?),
        None => None,
    };
    let busybox = index::find(&packages, "busybox-static", &index_url)?;
    let wanted: Vec<&PackageEntry> = [Some(kernel_pkg), firmware_pkg, Some(busybox)]
        .into_iter()
        .flatten()
        .collect();

    // 3. The packages, each checked against the index.
    let mut keep = HashSet::new();
    for pkg in &wanted {
        let file = basename(&pkg.filename);
        keep.insert(file.to_owned());
        let dest = debs_dir.join(file);
        let expect = Expected {
            size: pkg.size,
            sha256: pkg.sha256.clone(),
        };
        if download::file_matches(&dest, &expect) {
            say(&format!("reusing cached {file} (sha256 ok)"));
            continue;
        }
        let url = format!("{mirror}/{}", pkg.filename);
        say(&format!(
            "fetching {} {} ({:.1} MB)",
            pkg.name,
            pkg.version,
            pkg.size as f64 / 1e6
        ));
        dl.fetch_verified(&url, &dest, &expect, &pkg.name)?;
    }
    // Older versions' packages are no longer needed.
    if let Ok(entries) = std::fs::read_dir(&debs_dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    // 4. Unpack what the image needs.
    say("unpacking the kernel, its modules, the firmware if any, and busybox");
    let kdeb = debs_dir.join(basename(&kernel_pkg.filename));
    let kfiles = deb::extract(&kdeb, |p| {
        p.starts_with("/boot/vmlinu")
            || ((p.starts_with("/usr/lib/modules/") || p.starts_with("/lib/modules/"))
                && (p.contains(".ko") || p.ends_with("/modules.builtin")))
    })?;
    let (kpath, kdata) = kfiles
        .iter()
        .find_map(|(p, f)| match f {
            DebFile::Regular { data, .. } if p.starts_with("/boot/vmlinu") => Some((p, data)),
            _ => None,
        })
        .ok_or_else(|| ImageError::MissingFile {
            package: kernel_pkg.name.clone(),
            path: "/boot/vmlinux-* or /boot/vmlinuz-*".into(),
        })?;
    let kernel_version = kpath
        .trim_start_matches("/boot/vmlinux-")
        .trim_start_matches("/boot/vmlinuz-")
        .to_owned();
    let image = match spec.debian_arch {
        "riscv64" => kernel::to_raw_image(kdata.clone(), kpath)?,
        _ => kernel::check_bzimage(kdata.clone(), kpath)?,
    };
    let mut tree = ModuleTree {
        package: kernel_pkg.name.clone(),
        ..Default::default()
    };
    for (p, f) in kfiles {
        if let DebFile::Regular { data, .. } = f
            && !p.starts_with("/boot/")
        {
            tree.add(&p, data);
        }
    }
    let modules = tree.load_order(MODULES)?;
    let loaded: HashSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let disk_modules: Vec<kernel::Module> = tree
        .load_order(DISK_MODULES)?
        .into_iter()
        .filter(|m| !loaded.contains(m.name.as_str()))
        .collect();

    let fw = match (firmware_pkg, spec.firmware) {
        (Some(pkg), Some((_, paths))) => Some(take_file(
            &debs_dir.join(basename(&pkg.filename)),
            &pkg.name,
            paths,
        )?),
        _ => None,
    };
    let bb = take_file(
        &debs_dir.join(basename(&busybox.filename)),
        &busybox.name,
        &["/usr/bin/busybox", "/bin/busybox"],
    )?;

    // 5. Build and write: the manifest goes last, so a half-built image is never "fetched".
    say("building the initramfs");
    let initrd = InitramfsBuilder::busybox_base(bb.clone(), &modules)?;
    let records: Vec<PackageRecord> = wanted
        .iter()
        .map(|p| PackageRecord {
            name: p.name.clone(),
            version: p.version.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        })
        .collect();
    // Same packages as the image in place: every file is rewritten with the
    // same bytes (atomically), so readers of the old manifest stay right.
    // New packages: withdraw the manifest until the new files are all there.
    let manifest_path = dir.join("manifest.json");
    let same = cache::load_from(&root, name).is_ok_and(|old| old.packages == records);
    if !same {
        match std::fs::remove_file(&manifest_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&manifest_path)(e)),
        }
    }
    let mods_dir = dir.join("parts/modules");
    let mut module_files = HashSet::new();
    for m in modules.iter().chain(&disk_modules) {
        let file = format!("{}.ko", m.name);
        let p = mods_dir.join(&file);
        write_atomic(&p, &m.data).map_err(io_err(&p))?;
        module_files.insert(file);
    }
    for e in std::fs::read_dir(&mods_dir)
        .map_err(io_err(&mods_dir))?
        .flatten()
    {
        if !module_files.contains(&*e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut writes: Vec<(&str, &[u8])> = vec![("parts/busybox", &bb), (spec.kernel_file, &image)];
    if let Some(fw) = &fw {
        writes.push(("fw_dynamic.bin", fw));
    }
    for (rel_path, data) in writes {
        let p = dir.join(rel_path);
        write_atomic(&p, data).map_err(io_err(&p))?;
    }
    initrd.write_gz(&dir.join("initrd.gz"))?;
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let manifest = Manifest {
        format: 1,
        name: name.to_owned(),
        arch: spec.arch.into(),
        suite: SUITE.into(),
        kernel_version,
        kernel: spec.kernel_file.into(),
        firmware: if fw.is_some() {
            "fw_dynamic.bin".into()
        } else {
            PathBuf::new()
        },
        initrd: "initrd.gz".into(),
        busybox: "parts/busybox".into(),
        modules_dir: "parts/modules".into(),
        modules: modules.iter().map(|m| m.name.clone()).collect(),
        disk_modules: disk_modules.iter().map(|m| m.name.clone()).collect(),
        cmdline: spec.cmdline.into(),
        packages: records,
        created,
    };
    cache::save(&dir, &manifest)?;
    say(&format!("image {name} ready in {}", dir.display()));
    Ok(manifest.absolutize(&dir))
}

/// Delete `.partial-*` files that a killed fetch left behind (a download or
/// write in progress never has its final name, so nothing else is affected).
fn sweep_partials(dir: &Path) {
    for d in [
        dir.to_owned(),
        dir.join("debs"),
        dir.join("parts"),
        dir.join("parts/modules"),
    ] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".partial-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// One regular file from a package, trying paths in order.
fn take_file(deb_path: &Path, package: &str, paths: &[&str]) -> Result<Vec<u8>, ImageError> {
    let mut files = deb::extract(deb_path, |p| paths.contains(&p))?;
    for p in paths {
        if let Some(DebFile::Regular { data, .. }) = files.remove(*p)
            && !data.is_empty()
        {
            return Ok(data);
        }
    }
    Err(ImageError::MissingFile {
        package: package.to_owned(),
        path: paths.join(" or "),
    })
}
