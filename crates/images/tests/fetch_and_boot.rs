//! End to end: fetch the real `debian-riscv64` image from the Debian archive
//! the host's apt sources name (skipped loudly when unreachable), check what
//! it contains, and boot it under QEMU as an independent reference.
//!
//! The image is cached in the user's cache (`~/.cache/vessel/images`), so a
//! second run reuses the verified packages instead of downloading again.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vessel_images::download::DownloadError;
use vessel_images::sources::SourcesError;
use vessel_images::{FetchOptions, ImageError, Manifest, READY_MARKER};

/// Only stops a hung QEMU; a run that needs it fails.
const QEMU_KILL_AFTER: Duration = Duration::from_secs(600);

/// Fetch once per test binary (the tests run in parallel threads).
fn fetch_or_skip() -> Option<Manifest> {
    static ONCE: std::sync::OnceLock<Option<Manifest>> = std::sync::OnceLock::new();
    ONCE.get_or_init(fetch_once).clone()
}

fn fetch_once() -> Option<Manifest> {
    let opts = FetchOptions {
        verbose: true,
        ..Default::default()
    };
    match vessel_images::fetch(vessel_images::DEBIAN_RISCV64, &opts) {
        Ok(m) => Some(m),
        Err(e @ ImageError::Sources(SourcesError::NotFound { .. }))
        | Err(e @ ImageError::Download(DownloadError::Unreachable { .. })) => {
            eprintln!("SKIP: the Debian archive is not reachable from this host: {e}");
            None
        }
        Err(e) => panic!("fetch failed: {e}"),
    }
}

fn cpio_names(gz: &[u8]) -> Vec<String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .unwrap();
    let mut names = Vec::new();
    let mut rest = &raw[..];
    loop {
        let r = cpio::NewcReader::new(rest).unwrap();
        if r.entry().is_trailer() {
            break;
        }
        names.push(r.entry().name().to_owned());
        rest = r.finish().unwrap();
    }
    names
}

#[test]
fn fetch_check_and_boot_under_qemu() {
    let Some(m) = fetch_or_skip() else { return };

    // What the board needs.
    let image = std::fs::read(&m.kernel).unwrap();
    assert!(
        vessel_images::kernel::is_riscv_image(&image),
        "{} lacks the RISC-V Image magic",
        m.kernel.display()
    );
    let fw = std::fs::metadata(&m.firmware).unwrap();
    assert!(fw.len() > 0, "{} is empty", m.firmware.display());
    assert!(m.kernel_version.starts_with("6."), "{}", m.kernel_version);
    let names = cpio_names(&std::fs::read(&m.initrd).unwrap());
    for want in [
        "init",
        "bin/busybox",
        "dev/console",
        "lib/modules/virtio_mmio.ko",
        "lib/modules/virtio_blk.ko",
        "lib/modules/virtio_net.ko",
        "lib/modules/virtio_rng.ko",
    ] {
        assert!(names.iter().any(|n| n == want), "initramfs lacks {want}");
    }
    // Loaded by /etc/vessel/modules order: dependencies before users.
    let pos = |n: &str| m.modules.iter().position(|x| x == n);
    if let (Some(dep), Some(user)) = (pos("net_failover"), pos("virtio_net")) {
        assert!(dep < user, "{:?}", m.modules);
    }

    assert!(
        m.disk_modules.iter().any(|x| x == "ext4"),
        "{:?}",
        m.disk_modules
    );
    assert!(m.modules_dir.join("ext4.ko").is_file());

    // The loaded manifest equals what fetch returned.
    let loaded = vessel_images::load(vessel_images::DEBIAN_RISCV64).unwrap();
    assert_eq!(loaded, m);

    // A second fetch reuses every package.
    let again = vessel_images::fetch(vessel_images::DEBIAN_RISCV64, &FetchOptions::default())
        .expect("second fetch");
    assert_eq!(again.packages, m.packages);

    boot_under_qemu(&m);
}

fn have_qemu() -> bool {
    if Command::new("qemu-system-riscv64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-riscv64 not installed (Debian's qemu-system-misc)");
        return false;
    }
    true
}

/// Boot under `qemu-system-riscv64 -M virt` until the guest powers off;
/// returns the console output. Fails the test when QEMU exits non-zero or has
/// to be killed.
fn run_qemu(m: &Manifest, initrd: &Path, append: &str, extra: &[&str]) -> String {
    // One guest at a time: two would share 2 host cores and blur the timings.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut child = Command::new("qemu-system-riscv64")
        .args(["-M", "virt", "-m", "512M", "-smp", "2"])
        .args(["-nographic", "-no-reboot"])
        .arg("-bios")
        .arg(&m.firmware)
        .arg("-kernel")
        .arg(&m.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-riscv64");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > QEMU_KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = start.elapsed();
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let _ = std::io::stderr().write_all(format!("--- guest console ---\n{out}\n---\n").as_bytes());
    let status = status.unwrap_or_else(|| {
        panic!("QEMU did not power off within {QEMU_KILL_AFTER:?}; console above")
    });
    eprintln!("QEMU boot to poweroff took {:.2} s", elapsed.as_secs_f64());
    assert!(status.success(), "qemu exited with {status}; stderr: {err}");
    assert!(out.contains(READY_MARKER), "no {READY_MARKER:?} line");
    assert!(!out.contains("insmod"), "a module failed to load");
    out
}

fn boot_under_qemu(m: &Manifest) {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut initrd = vessel_images::initramfs_for(m).unwrap();
    initrd
        .add_file(
            "/etc/vessel/init.d/10-report",
            b"#!/bin/sh\necho \"report-kernel=$(uname -r)\"\necho \"report-cpus=$(nproc)\"\n\
              echo \"report-modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ,)\"\n\
              echo \"report-sum=$(sha256sum /etc/vessel/known | cut -d' ' -f1)\"\n\
              echo report-done\n"
                .to_vec(),
            0o755,
        )
        .unwrap();
    let known = b"vessel known file\n".repeat(100);
    initrd
        .add_file("/etc/vessel/known", known.clone(), 0o644)
        .unwrap();
    let initrd_path = dir.path().join("initrd.gz");
    initrd.write_gz(&initrd_path).unwrap();

    let out = run_qemu(m, &initrd_path, "console=ttyS0 panic=-1", &[]);
    assert!(
        out.contains(&format!("report-kernel={}", m.kernel_version)),
        "kernel version line missing"
    );
    assert!(out.contains("report-cpus=2"), "nproc did not say 2");
    let sum = vessel_images::download::sha256_hex(&known);
    assert!(
        out.contains(&format!("report-sum={sum}")),
        "checksum line wrong"
    );
    let modules_line = out
        .lines()
        .find(|l| l.starts_with("report-modules="))
        .expect("modules line");
    for want in ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng"] {
        assert!(
            modules_line.contains(want),
            "{want} not loaded: {modules_line}"
        );
    }
    assert!(out.contains("report-done"));
}

#[test]
fn boot_from_an_ext4_root_disk_under_qemu() {
    let Some(m) = fetch_or_skip() else { return };
    if !have_qemu() {
        return;
    }
    if Command::new("mke2fs").arg("-V").output().is_err() {
        eprintln!("SKIP: mke2fs not installed (Debian's e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut root = vessel_images::rootfs_for(&m).unwrap();
    root.add_file(
        "/etc/vessel/init.d/10-disk",
        b"#!/bin/sh\necho \"disk-root=$(grep ' / ' /proc/mounts | cut -d' ' -f1,3)\"\n\
          echo disk-hello > /root/written && sync && echo \"disk-write=$(cat /root/written)\"\n"
            .to_vec(),
        0o755,
    )
    .unwrap();
    let disk = dir.path().join("root.ext4");
    vessel_images::disk::make_ext4(&root, &disk, 64).unwrap();
    let initrd_path = dir.path().join("initrd-disk.gz");
    vessel_images::initramfs_for_disk(&m)
        .unwrap()
        .write_gz(&initrd_path)
        .unwrap();
    let drive = format!("file={},if=none,format=raw,id=root", disk.display());
    let out = run_qemu(
        &m,
        &initrd_path,
        "console=ttyS0 panic=-1 vessel.root=/dev/vda",
        &["-drive", &drive, "-device", "virtio-blk-device,drive=root"],
    );
    assert!(
        out.contains("disk-root=/dev/vda ext4"),
        "root is not the disk"
    );
    assert!(out.contains("disk-write=disk-hello"), "disk not writable");
}
