//! Debian's stock x86-64 kernel (`linux-image-cloud-amd64`, fetched as the
//! `debian-amd64` image) on the KVM microvm, the way a user runs it:
//! `vessel image fetch debian-amd64`, then `vessel run debian-amd64 --arch
//! x86_64 --disk root.img`.
//!
//! The cloud kernel has `virtio_mmio` only as a module, without
//! `virtio_mmio.device=` support, and no MP-table parser: it finds its
//! vCPUs in the MADT and its disk in the DSDT (`LNRO0005` devices).
//!
//! Loading the kernel runs wherever /dev/kvm opens. Booting it runs only
//! where the CPU has VT-x or AMD-V (`vmx`/`svm` in /proc/cpuinfo): on a
//! nested KVM that emulates the guest instruction by instruction (PVM, as
//! on the machines vessel is built on) Linux's decompressor alone takes
//! hours, so the test says so and skips.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vessel_images::{Manifest, READY_MARKER};

mod common;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vessel-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[test]
fn the_fetched_debian_amd64_image_loads_as_a_bzimage() {
    let test = "the_fetched_debian_amd64_image_loads_as_a_bzimage";
    let Some(m) = common::named_image_or_skip(vessel_images::DEBIAN_AMD64) else {
        return;
    };
    assert_eq!(m.arch, "x86_64");
    assert_eq!(m.firmware(), None);
    assert!(
        m.kernel_version.ends_with("-cloud-amd64"),
        "{}",
        m.kernel_version
    );
    for module in ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng"] {
        assert!(
            m.modules.iter().any(|n| n == module),
            "{module}: {:?}",
            m.modules
        );
    }
    if !vessel_testkit::x86::kvm_usable(test) {
        return;
    }
    let dir = Scratch::new(test);
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let mut cfg = vessel_x86::VmConfig::new(&m.kernel);
    cfg.memory = 256 << 20;
    cfg.vcpus = 2;
    cfg.initrd = Some(m.initrd.clone());
    cfg.cmdline = m.cmdline.clone();
    cfg.disks
        .push(format!("{}", disk.display()).parse().unwrap());
    let vm = vessel_x86::Microvm::new(cfg).expect("the stock kernel and its initramfs load");
    let info = vm.boot_info();
    assert_eq!(info.format, vessel_x86::KernelFormat::BzImage);
    assert_eq!(info.entry, 0x10_0000 + 0x200, "64-bit entry of a bzImage");
}

/// The root disk: busybox userland whose init runs `10-report` (facts the
/// test checks), then a shell on the console that the test types into.
fn root_disk(m: &Manifest, dir: &Path) -> PathBuf {
    let mut tree = vessel_images::rootfs_for(m).unwrap();
    tree.add_file(
        "/etc/vessel/init.d/10-report",
        b"#!/bin/sh\n\
          echo \"report-kernel=$(uname -r)\"\n\
          echo \"report-cpus=$(nproc)\"\n\
          echo \"report-root=$(awk '$2 == \"/\" { r = $1 } END { print r }' /proc/mounts)\"\n\
          echo \"report-disk-file=$(cat /etc/vessel/on-disk)\"\n\
          echo \"report-virtio=$(ls /sys/bus/virtio/devices | wc -l)\"\n\
          echo \"report-hwrng=$(head -c 64 /dev/hwrng | wc -c)\"\n\
          echo report-shell\n\
          setsid cttyhack sh\n"
            .to_vec(),
        0o755,
    )
    .unwrap();
    tree.add_file("/etc/vessel/on-disk", b"from-vda\n".to_vec(), 0o644)
        .unwrap();
    let disk = dir.join("root.img");
    vessel_images::disk::make_ext4(&tree, &disk, 32).unwrap();
    disk
}

#[test]
fn debian_kernel_boots_to_a_shell_with_root_on_virtio_blk() {
    let test = "debian_kernel_boots_to_a_shell_with_root_on_virtio_blk";
    let Some(m) = common::named_image_or_skip(vessel_images::DEBIAN_AMD64) else {
        return;
    };
    if !hardware_virtualization() {
        eprintln!(
            "SKIPPED {test}: this CPU has no VT-x/AMD-V (no vmx or svm in /proc/cpuinfo); \
             /dev/kvm here emulates guests instruction by instruction (about 1.5 M \
             instructions/s) and Linux cannot boot on it in any useful time"
        );
        return;
    }
    if !vessel_testkit::x86::kvm_usable(test) {
        return;
    }
    let dir = Scratch::new(test);
    let disk = root_disk(&m, dir.path());
    let initrd = dir.path().join("initrd.gz");
    vessel_images::initramfs_for_disk(&m)
        .unwrap()
        .write_gz(&initrd)
        .unwrap();

    // coreutils' timeout only stops a hung guest (status 124 fails the test).
    let mut child = Command::new("timeout")
        .arg("600")
        .arg(VESSEL)
        .args(["run", "debian-amd64", "--arch", "x86_64", "--engine", "kvm"])
        .args(["--cpus", "2", "--memory", "512M", "--rng"])
        .arg("--initrd")
        .arg(&initrd)
        .arg("--disk")
        .arg(format!("{},serial=root", disk.display()))
        .arg("--append")
        .arg(format!("{} vessel.root=/dev/vda", m.cmdline))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Typed ahead: the serial port holds it until the shell reads it.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo shell-$((6 * 7))\nexit\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("--- guest console ---\n{out}\n--- stderr ---\n{err}---");

    assert!(status.success(), "vessel exited with {status}");
    assert!(out.contains(READY_MARKER), "no {READY_MARKER:?} line");
    assert!(out.contains(&format!("report-kernel={}", m.kernel_version)));
    assert!(out.contains("report-cpus=2"), "the MADT's two vCPUs");
    assert!(
        out.contains("report-root=/dev/vda"),
        "root is not the virtio disk"
    );
    assert!(out.contains("report-disk-file=from-vda"));
    assert!(out.contains("report-virtio=2"), "virtio-blk and virtio-rng");
    assert!(out.contains("report-hwrng=64"));
    assert!(
        out.contains("shell-42"),
        "the shell did not run what was typed"
    );
}
