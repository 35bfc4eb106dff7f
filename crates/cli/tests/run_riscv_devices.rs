//! End-to-end: `vessel run --arch riscv64` with virtio devices.
//!
//! - Bad `--disk`, `--net`, `--console` values and too many devices: one
//!   clear error line each, before anything runs.
//! - Debian's riscv64 kernel (the cached `debian-riscv64` image, fetched when
//!   missing, skipped loudly when the archive is unreachable) boots once with
//!   two disks and `--rng`: the guest checksums the first MiB of `vda`,
//!   writes a known block into it, syncs, reads `/dev/hwrng`, and powers
//!   off; the host then checks the checksum and finds the block in the file.

mod common;

use common::{image_or_skip, pattern};

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use vessel_images::READY_MARKER;
use vessel_images::download::sha256_hex;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vessel-run-riscv-devices-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vessel(args: &[&str]) -> Output {
    Command::new(VESSEL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_clear_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn bad_device_flags_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--disk", "a.img,rw"], "\"rw\" is not one of ro"),
        (
            &["--disk", "a.img,format=vmdk"],
            "\"vmdk\" is not raw or qcow2",
        ),
        (&["--disk", ",ro"], "--disk needs a path"),
        (&["--disk", "a.img,serial=has space"], "serial"),
        (&["--net", "mac=52:54:00:12:34:56"], "--net needs tap=NAME"),
        (&["--net", "tap=vm0,mac=zz"], "six hex bytes"),
        (&["--net", "tap=a/b"], "tap name"),
        (&["--console", "tty"], "--console"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["run", "--firmware", "fw.bin"];
        args.extend_from_slice(flags);
        let out = vessel(&args);
        assert_clear_error(&out, 2, needle);
    }
}

#[test]
fn more_devices_than_slots_is_an_error() {
    let mut args = vec!["run", "--firmware", "fw.bin", "--rng"];
    for _ in 0..8 {
        args.extend_from_slice(&["--disk", "d.img"]);
    }
    let out = vessel(&args);
    assert_clear_error(
        &out,
        1,
        "too many virtio devices: 8 --disk, 0 --net, --rng make 9",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 virtio-mmio slots"));
}

#[test]
fn unusable_disks_are_clear_errors() {
    let dir = scratch("bad-disks");
    let missing = dir.join("missing.img");
    let out = vessel(&[
        "run",
        "--firmware",
        "fw.bin",
        "--disk",
        missing.to_str().unwrap(),
    ]);
    assert_clear_error(&out, 1, "missing.img");
    assert_clear_error(&out, 1, "cannot open disk image");

    let qcow = dir.join("looks.qcow2");
    std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03 rest of a header").unwrap();
    let out = vessel(&[
        "run",
        "--firmware",
        "fw.bin",
        "--disk",
        qcow.to_str().unwrap(),
    ]);
    assert_clear_error(&out, 1, "say format=qcow2");

    let out = vessel(&["run", "--firmware", "fw.bin", "--engine", "kvm"]);
    assert_clear_error(&out, 1, "riscv64 guests run on the emulator");
}

/// Run vessel to completion (coreutils' timeout only stops a hung guest:
/// status 124 fails the test), returning status, stdout and stderr.
fn boot(args: &[String]) -> (std::process::ExitStatus, String, String) {
    let start = Instant::now();
    let mut child = Command::new("timeout")
        .arg("1200")
        .arg(VESSEL)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    stdout.read_to_string(&mut out).unwrap();
    let err = err_thread.join().unwrap();
    let status = child.wait().unwrap();
    eprintln!("--- guest console ---\n{out}\n--- stderr ---\n{err}---");
    eprintln!(
        "boot to poweroff took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    (status, out, err)
}

const SCRIPT: &str = r#"#!/bin/sh
echo "dev-sum=$(dd if=/dev/vda bs=65536 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "dev-vda-serial=$(cat /sys/block/vda/serial)"
echo "dev-vdb-serial=$(cat /sys/block/vdb/serial) ro=$(cat /sys/block/vdb/ro)"
dd if=/etc/vessel/block of=/dev/vda bs=4096 seek=300 2>/dev/null && echo dev-write-ok
sync
echo "dev-hwrng=$(dd if=/dev/hwrng bs=4096 count=1 2>/dev/null | wc -c | tr -d " ") $(cat /sys/class/misc/hw_random/rng_current)"
echo dev-done
"#;

#[test]
fn debian_linux_uses_virtio_disks_and_rng() {
    let Some(m) = image_or_skip() else { return };
    let dir = scratch("linux");

    let data = pattern(4 << 20, 0x5eed_1234_abcd_0001);
    let vda = dir.join("data.img");
    std::fs::write(&vda, &data).unwrap();
    let ro_data = pattern(1 << 20, 0x0bad_cafe_0000_0002);
    let vdb = dir.join("ro.img");
    std::fs::write(&vdb, &ro_data).unwrap();
    let block = b"vessel wrote this block\n".repeat(4096 / 24 + 1)[..4096].to_vec();

    let mut initrd = vessel_images::initramfs_for(&m).unwrap();
    initrd
        .add_file(
            "/etc/vessel/init.d/10-devices",
            SCRIPT.as_bytes().to_vec(),
            0o755,
        )
        .unwrap();
    initrd
        .add_file("/etc/vessel/block", block.clone(), 0o644)
        .unwrap();
    let initrd_path = dir.join("initrd.gz");
    initrd.write_gz(&initrd_path).unwrap();

    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let args: Vec<String> = vec![
        "run".into(),
        "--arch".into(),
        "riscv64".into(),
        "--memory".into(),
        "512M".into(),
        "--firmware".into(),
        s(&m.firmware),
        "--kernel".into(),
        s(&m.kernel),
        "--initrd".into(),
        s(&initrd_path),
        "--append".into(),
        "console=ttyS0 panic=-1".into(),
        "--disk".into(),
        format!("{},serial=vessel-data", s(&vda)),
        "--disk".into(),
        format!("{},ro,format=raw,serial=vessel-ro", s(&vdb)),
        "--rng".into(),
    ];
    let (status, out, _err) = boot(&args);

    assert!(status.success(), "vessel exited with {status}");
    assert!(out.contains(READY_MARKER), "no {READY_MARKER:?} line");
    let sum = sha256_hex(&data[..1 << 20]);
    assert!(
        out.contains(&format!("dev-sum={sum}")),
        "the guest's checksum of vda's first MiB is not the host's {sum}"
    );
    assert!(
        out.contains("dev-vda-serial=vessel-data"),
        "vda is the first --disk"
    );
    assert!(
        out.contains("dev-vdb-serial=vessel-ro ro=1"),
        "vdb is read-only"
    );
    assert!(out.contains("dev-write-ok"), "the guest's write failed");
    assert!(
        out.contains("dev-hwrng=4096 virtio_rng"),
        "4 KiB from /dev/hwrng (virtio_rng)"
    );
    assert!(out.contains("dev-done"));

    let after = std::fs::read(&vda).unwrap();
    let at = 300 * 4096;
    assert_eq!(after.len(), data.len(), "disk size unchanged");
    assert!(
        after[at..at + 4096] == block[..],
        "the written block is not in the file"
    );
    assert!(after[..at] == data[..at], "bytes before the block changed");
    assert!(
        after[at + 4096..] == data[at + 4096..],
        "bytes after the block changed"
    );
    assert_eq!(
        std::fs::read(&vdb).unwrap(),
        ro_data,
        "the read-only disk changed"
    );
}
