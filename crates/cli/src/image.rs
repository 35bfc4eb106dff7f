//! `vessel image`: fetch, list and remove guest images; build initramfs variants.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vessel_images::{DEBIAN_RISCV64, FetchOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Download and verify a Debian kernel (and, for riscv64, OpenSBI) and
    /// busybox, and build the image into the cache (~/.cache/vessel/images/NAME).
    #[command(
        long_about = "Download Debian trixie's riscv64 kernel (linux-image-riscv64), OpenSBI \
(opensbi) and busybox (busybox-static) for debian-riscv64, or its x86-64 cloud kernel \
(linux-image-cloud-amd64) and busybox-static for debian-amd64, from the Debian archive named in \
this host's apt sources (or VESSEL_DEBIAN_MIRROR), verify them against the archive's signed \
InRelease with gpgv, and build the kernel, fw_dynamic.bin (riscv64) and a busybox initramfs \
with the virtio modules into $XDG_CACHE_HOME/vessel/images/NAME. Packages already cached with \
the right SHA256 are reused."
    )]
    Fetch {
        /// Image to fetch: `debian-riscv64` or `debian-amd64`.
        #[arg(default_value = DEBIAN_RISCV64)]
        name: String,
        /// Debian archive base URL (overrides VESSEL_DEBIAN_MIRROR and apt's sources).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List fetched images.
    Ls {
        /// Print the manifests as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print one image's manifest (JSON, absolute paths).
    Show { name: String },
    /// Delete a fetched image and its downloaded packages.
    Rm { name: String },
    /// Build an initramfs from a fetched image plus your own files.
    #[command(
        long_about = "Build a gzip-compressed initramfs: the image's busybox, modules and /init, \
plus files you add. /init runs every executable in /etc/vessel/init.d/ in name order (instead of \
a shell) and then powers off, so `--add ./test.sh:/etc/vessel/init.d/10-test` runs a script at \
boot."
    )]
    Initramfs {
        /// Image whose busybox, modules and /init to start from.
        #[arg(long, default_value = DEBIAN_RISCV64)]
        image: String,
        /// Add a host file at a guest path (executable on the host → mode 755, else 644).
        #[arg(long = "add", value_name = "HOST:GUEST")]
        add: Vec<String>,
        /// Also carry the ext4 modules, so `vessel.root=/dev/vda` on the kernel
        /// command line boots from a disk made by `vessel image disk`.
        #[arg(long)]
        disk: bool,
        /// Where to write the initramfs (gzip-compressed newc cpio).
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
    /// Build an ext4 root disk: the image's busybox userland plus your own files.
    #[command(
        long_about = "Build an ext4 root disk image (raw) with the image's busybox userland and /sbin/init (the same init as the initramfs: it runs /etc/vessel/init.d/* or a shell, then powers off), plus files you add. Boot from it with `vessel run debian-riscv64 --disk FILE` (vessel knows the disk by its ext4 label, vessel-root, also under a qcow2 overlay), or by hand with an initramfs from `vessel image initramfs --disk` and `vessel.root=/dev/vda` on the kernel command line. Files the host adds later (debugfs -w) are there at the next boot. Needs Debian's e2fsprogs (mke2fs -d)."
    )]
    Disk {
        /// Image whose busybox to use.
        #[arg(long, default_value = DEBIAN_RISCV64)]
        image: String,
        /// Add a host file at a guest path (executable on the host → mode 755, else 644).
        #[arg(long = "add", value_name = "HOST:GUEST")]
        add: Vec<String>,
        /// Disk size in MiB.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1048576))]
        size_mib: u64,
        /// Where to write the disk image.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Add `--add HOST:GUEST` files to a tree.
fn add_files(b: &mut vessel_images::InitramfsBuilder, add: &[String]) -> anyhow::Result<()> {
    for spec in add {
        let Some((host, guest)) = spec.rsplit_once(':') else {
            bail!("--add {spec}: expected HOST:GUEST, e.g. ./test.sh:/etc/vessel/init.d/10-test");
        };
        let data =
            std::fs::read(host).with_context(|| format!("--add {spec}: cannot read {host}"))?;
        let meta = std::fs::metadata(host)?;
        let exec = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
        b.add_file(guest, data, if exec { 0o755 } else { 0o644 })
            .with_context(|| format!("--add {spec}"))?;
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Fetch {
            name,
            mirror,
            quiet,
        } => {
            let opts = FetchOptions {
                mirror,
                progress: !quiet && std::io::stderr().is_terminal(),
                verbose: !quiet,
                ..Default::default()
            };
            let m = vessel_images::fetch(&name, &opts)?;
            if !quiet {
                println!("kernel    {}", m.kernel.display());
                if let Some(fw) = m.firmware() {
                    println!("firmware  {}", fw.display());
                }
                println!("initrd    {}", m.initrd.display());
                if m.arch == "riscv64" {
                    println!("Boot it with: vessel run {name}");
                } else {
                    println!("Boot it with: vessel run {name} --arch {}", m.arch);
                }
            }
        }
        Sub::Ls { json } => {
            let images = vessel_images::list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else if images.is_empty() {
                println!("no images fetched; try `vessel image fetch {DEBIAN_RISCV64}`");
            } else {
                println!(
                    "{:<20} {:<8} {:<8} {:<28} CREATED",
                    "NAME", "ARCH", "SUITE", "KERNEL"
                );
                for m in images {
                    println!(
                        "{:<20} {:<8} {:<8} {:<28} {}",
                        m.name, m.arch, m.suite, m.kernel_version, m.created
                    );
                }
            }
        }
        Sub::Show { name } => {
            let m = vessel_images::load(&name)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        Sub::Rm { name } => {
            vessel_images::remove(&name)?;
            println!("removed {name}");
        }
        Sub::Initramfs {
            image,
            add,
            disk,
            output,
        } => {
            let m = vessel_images::load(&image)?;
            let mut b = if disk {
                vessel_images::initramfs_for_disk(&m)?
            } else {
                vessel_images::initramfs_for(&m)?
            };
            add_files(&mut b, &add)?;
            b.write_gz(&output)?;
            println!("wrote {}", output.display());
        }
        Sub::Disk {
            image,
            add,
            size_mib,
            output,
        } => {
            let m = vessel_images::load(&image)?;
            let mut b = vessel_images::rootfs_for(&m)?;
            add_files(&mut b, &add)?;
            vessel_images::disk::make_ext4(&b, &output, size_mib)?;
            println!("wrote {}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
