//! End-to-end: Debian's own riscv64 OpenSBI, kernel and a busybox initramfs
//! boot on `vessel run --cpus 2` to a scripted init that reports the kernel
//! version, the number of CPUs and a checksum, then powers off.
//!
//! The image comes from the user's cache (`vessel image fetch
//! debian-riscv64`); when it is not there the test fetches it, and skips
//! loudly when the Debian archive cannot be reached.

mod common;

use common::image_or_skip;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use vessel_images::READY_MARKER;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

#[test]
fn debian_linux_boots_on_two_harts_and_powers_off() {
    let Some(m) = image_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("vessel-run-riscv-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut initrd = vessel_images::initramfs_for(&m).unwrap();
    initrd
        .add_file(
            "/etc/vessel/init.d/10-report",
            b"#!/bin/sh\necho \"report-kernel=$(uname -r)\"\necho \"report-cpus=$(nproc)\"\n\
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
    let initrd_path = dir.join("initrd.gz");
    initrd.write_gz(&initrd_path).unwrap();

    let start = Instant::now();
    // coreutils' timeout only stops a hung guest (status 124 fails the test).
    let mut child = Command::new("timeout")
        .arg("1200")
        .arg(VESSEL)
        .args([
            "run", "--arch", "riscv64", "--cpus", "2", "--memory", "512M",
        ])
        .arg("--firmware")
        .arg(&m.firmware)
        .arg("--kernel")
        .arg(&m.kernel)
        .arg("--initrd")
        .arg(&initrd_path)
        .args(["--append", "console=ttyS0 panic=-1"])
        .env("VESSEL_STATS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
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
    eprintln!(
        "boot to poweroff took {:.1} s",
        start.elapsed().as_secs_f64()
    );

    assert!(status.success(), "vessel exited with {status}");
    assert!(out.contains(READY_MARKER), "no {READY_MARKER:?} line");
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
    assert!(out.contains("report-done"));
    assert!(
        err.contains("guest instructions"),
        "VESSEL_STATS=1 printed no stats"
    );
}
