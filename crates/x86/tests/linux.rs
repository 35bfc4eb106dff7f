//! Debian's stock x86-64 kernel (`linux-image-cloud-amd64`, a bzImage).
//!
//! The kernel is taken from `VESSEL_X86_KERNEL`, else the newest
//! `/boot/vmlinuz-*-cloud-amd64`, else the newest `/boot/vmlinuz-*`.
//! Loading it runs wherever KVM can be opened; booting it to an initramfs
//! shell runs only where the CPU has VT-x or AMD-V (`vmx`/`svm` in
//! /proc/cpuinfo): on the nested, instruction-by-instruction KVM of hosts
//! without them the kernel's decompressor alone takes hours.

mod common;

use std::path::PathBuf;

use common::{Capture, WATCHDOG, kvm_usable};
use vessel_x86::{ExitReason, KernelFormat, Microvm, VmConfig};

fn debian_kernel(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VESSEL_X86_KERNEL") {
        return Some(PathBuf::from(p));
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    all.sort();
    let cloud = all
        .iter()
        .rev()
        .find(|p| p.to_string_lossy().ends_with("-cloud-amd64"));
    match cloud.or(all.last()) {
        Some(p) => Some(p.clone()),
        None => {
            eprintln!(
                "SKIPPED {test}: no Debian kernel: set VESSEL_X86_KERNEL to a bzImage (the \
                 vmlinuz of linux-image-cloud-amd64) or install one in /boot"
            );
            None
        }
    }
}

fn hardware_virtualization() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[test]
fn debian_kernel_loads_as_a_bzimage() {
    if !kvm_usable("debian_kernel_loads_as_a_bzimage") {
        return;
    }
    let Some(kernel) = debian_kernel("debian_kernel_loads_as_a_bzimage") else {
        return;
    };
    let mut cfg = VmConfig::new(&kernel);
    cfg.memory = 256 << 20;
    let vm = Microvm::new(cfg).expect("the kernel loads");
    let info = vm.boot_info();
    assert_eq!(info.format, KernelFormat::BzImage);
    assert_eq!(info.entry, 0x10_0000 + 0x200, "64-bit entry of a bzImage");
    assert!(info.kernel_end > info.entry);
}

/// A newc cpio archive of `(path, mode, data)` entries.
fn cpio(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        put(name, *mode, data, i as u32 + 1);
    }
    put("TRAILER!!!", 0, &[], 0);
    out
}

#[test]
fn debian_kernel_boots_to_an_initramfs_shell() {
    let test = "debian_kernel_boots_to_an_initramfs_shell";
    if !hardware_virtualization() {
        eprintln!(
            "SKIPPED {test}: this CPU has no VT-x/AMD-V (no vmx or svm in /proc/cpuinfo); \
             /dev/kvm here emulates guests instruction by instruction and Linux cannot boot \
             on it in any useful time"
        );
        return;
    }
    if !kvm_usable(test) {
        return;
    }
    let Some(kernel) = debian_kernel(test) else {
        return;
    };
    let Ok(busybox) = std::fs::read("/bin/busybox") else {
        eprintln!("SKIPPED {test}: /bin/busybox missing (install busybox-static)");
        return;
    };
    let init =
        b"#!/bin/busybox sh\n/bin/busybox echo VESSEL-INITRAMFS-SHELL\n/bin/busybox reboot -f\n";
    let archive = cpio(&[
        ("bin", 0o040755, b""),
        ("bin/busybox", 0o100755, &busybox),
        ("init", 0o100755, init),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.cpio");
    std::fs::write(&initrd, archive).unwrap();

    let capture = Capture::default();
    let mut cfg = VmConfig::new(&kernel);
    cfg.memory = 512 << 20;
    cfg.initrd = Some(initrd);
    cfg.cmdline = "console=ttyS0 reboot=k panic=1 pci=off rdinit=/init".into();
    cfg.serial_out = Box::new(capture.clone());
    let running = Microvm::new(cfg).unwrap().start().unwrap();
    let control = running.control();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(running.wait());
    });
    let reason = rx.recv_timeout(WATCHDOG).unwrap_or_else(|_| {
        control.request_exit(ExitReason::Failed("watchdog".into()));
        panic!("Linux did not finish in {WATCHDOG:?}:\n{}", capture.text())
    });
    let out = capture.text();
    assert!(
        out.contains("VESSEL-INITRAMFS-SHELL"),
        "serial output:\n{out}"
    );
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
}
