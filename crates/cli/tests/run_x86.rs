//! End-to-end: `vessel run --arch x86_64` on KVM with the KVM engine's small
//! test guests (crates/x86/tests/guests, built here with GNU as/ld): the
//! boot-protocol guest reports its command line and initrd, the virtio-blk
//! guest reads sector 0 and writes sector 1 of a `--disk`, the probe guest
//! finds what `--disk …,ro,serial=`, `--console virtio` and `--rng` add.
//! Skipped, with the reason, when /dev/kvm cannot be opened or binutils are
//! missing.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use vessel_testkit::x86::kvm_usable;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vessel-run-x86-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn build_guest(name: &str) -> Option<PathBuf> {
    vessel_testkit::x86::build_named(&scratch(name), name)
}

fn vessel(args: &[&str]) -> Output {
    // coreutils' timeout only stops a hung guest (status 124 fails the test).
    Command::new("timeout")
        .arg("300")
        .arg(VESSEL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn hardware_assisted() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[test]
fn the_boot_protocol_guest_gets_the_command_line_and_initrd() {
    if !kvm_usable("the_boot_protocol_guest_gets_the_command_line_and_initrd") {
        return;
    }
    let Some(elf) = build_guest("bootparams") else {
        return;
    };
    let initrd = elf.with_file_name("initrd.img");
    let bytes: Vec<u8> = (0..12_345u32).map(|i| (i * 7 + i / 256) as u8).collect();
    std::fs::write(&initrd, &bytes).unwrap();
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let out = vessel(&[
        "run",
        "--arch",
        "x86_64",
        "--engine",
        "kvm",
        "--kernel",
        elf.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--append",
        "console=ttyS0 vessel.test=cli",
        "--memory",
        "64M",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- serial ---\n{text}--- stderr ---\n{err}---");
    assert_eq!(out.status.code(), Some(0), "the guest resets: exit 0");
    assert!(text.starts_with("hdrs ok\n"), "{text}");
    // The user's command line, then the power button's virtio-mmio slot
    // (every microvm has one) for kernels with virtio_mmio built in.
    assert!(
        text.contains(" console=ttyS0 vessel.test=cli virtio_mmio.device=4K@0xd0000000:5\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(" 0x3039 {sum:#x}\n")),
        "initrd size and sum"
    );
    assert!(text.ends_with("done\n"), "{text}");
    assert!(
        !err.contains("warning"),
        "--engine kvm does not warn: {err}"
    );
}

#[test]
fn the_virtio_blk_guest_reads_and_writes_a_disk() {
    if !kvm_usable("the_virtio_blk_guest_reads_and_writes_a_disk") {
        return;
    }
    let Some(elf) = build_guest("virtio_blk") else {
        return;
    };
    let mut disk = vec![0u8; 64 * 512];
    let text = b"vessel disk, sector zero";
    disk[..text.len()].copy_from_slice(text);
    for (i, b) in disk[100..512].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let path = elf.with_file_name("disk.img");
    std::fs::write(&path, &disk).unwrap();
    let sum: u64 = disk[..512].iter().map(|&b| u64::from(b)).sum();

    let out = vessel(&[
        "run",
        "--arch",
        "x86_64",
        "--kernel",
        elf.to_str().unwrap(),
        "--memory",
        "64M",
        "--disk",
        path.to_str().unwrap(),
    ]);
    let serial = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- serial ---\n{serial}--- stderr ---\n{err}---");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        serial,
        format!(
            "virtio device 0x2\nread status 0x0\nsector0 vessel disk, sector zero {sum:#x}\n\
             write status 0x0\ndone\n"
        )
    );
    let warnings = err.matches("not hardware-assisted").count();
    if hardware_assisted() {
        assert_eq!(warnings, 0, "{err}");
    } else {
        assert_eq!(warnings, 1, "--engine auto warns once here: {err}");
        assert!(err.contains("slower"), "{err}");
    }
    let after = std::fs::read(&path).unwrap();
    let message = b"written by the vessel x86 guest\0";
    assert_eq!(&after[512..512 + message.len()], message);
    assert_eq!(&after[..512], &disk[..512], "sector 0 unchanged");
}

#[test]
fn the_probe_guest_finds_the_disk_console_and_rng_the_flags_add() {
    if !kvm_usable("the_probe_guest_finds_the_disk_console_and_rng_the_flags_add") {
        return;
    }
    let Some(elf) = build_guest("virtio_probe") else {
        return;
    };
    let path = elf.with_file_name("ro.img");
    std::fs::write(&path, vec![0u8; 8 * 512]).unwrap();
    let out = vessel(&[
        "run",
        "--arch",
        "x86_64",
        "--engine",
        "kvm",
        "--kernel",
        elf.to_str().unwrap(),
        "--memory",
        "64M",
        "--disk",
        &format!("{},ro,serial=cli-disk-7", path.display()),
        "--console",
        "virtio",
        "--rng",
    ]);
    let serial = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- serial ---\n{serial}--- stderr ---\n{err}---");
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = serial.lines().collect();
    assert_eq!(lines.len(), 8, "{serial}");
    // Slot 0: the read-only disk (VIRTIO_BLK_F_RO, bit 5) and its serial;
    // then the console (id 3) and the rng (id 4), in that order.
    assert!(
        lines[0].starts_with("slot 0x0 id 0x2 features "),
        "{serial}"
    );
    let lo = u64::from_str_radix(
        lines[0]
            .split_whitespace()
            .nth(5)
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_ne!(lo & (1 << 5), 0, "read-only: {serial}");
    assert_eq!(lines[1], "serial 0x0 cli-disk-7");
    assert!(
        lines[2].starts_with("slot 0x1 id 0x3 features "),
        "{serial}"
    );
    assert!(
        lines[3].starts_with("slot 0x2 id 0x4 features "),
        "{serial}"
    );
    assert!(lines[4].starts_with("rng 0x10 ") && lines[5].starts_with("rng 0x10 "));
    assert_ne!(lines[4], lines[5], "two draws differ");
    // Last, the power button every microvm has (virtio-input, id 18).
    assert!(
        lines[6].starts_with("slot 0x3 id 0x12 features "),
        "{serial}"
    );
    assert_eq!(lines[7], "done");
}

fn assert_clear_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn x86_flags_it_cannot_honour_are_clear_errors() {
    let x86 = ["run", "--arch", "x86_64"];
    let with = |extra: &[&str]| {
        let mut a = x86.to_vec();
        a.extend_from_slice(extra);
        vessel(&a)
    };
    assert_clear_error(&with(&[]), "--kernel FILE is missing");
    assert_clear_error(
        &with(&["--kernel", "k", "--firmware", "f"]),
        "drop --firmware",
    );
    assert_clear_error(
        &with(&["--kernel", "k", "--engine", "emu"]),
        "no x86_64 emulator",
    );
}

#[test]
fn a_kernel_that_is_neither_elf_nor_bzimage() {
    if !kvm_usable("a_kernel_that_is_neither_elf_nor_bzimage") {
        return;
    }
    let dir = scratch("bad-kernel");
    let kernel = dir.join("kernel.txt");
    std::fs::write(&kernel, b"not a kernel at all, just text".repeat(100)).unwrap();
    let out = vessel(&[
        "run",
        "--arch",
        "x86_64",
        "--engine",
        "kvm",
        "--kernel",
        kernel.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kernel.txt") || err.contains("ELF"), "{err}");
}
