//! virtio devices of crates/devices on the microvm: a polling virtio-blk
//! driver in the guest reads sector 0 and writes sector 1 of a disk image
//! (raw, or a qcow2 overlay); a polling virtio-net driver sends a frame that
//! the host receives; a probing driver finds a read-only disk with a serial,
//! a virtio-console and a virtio-rng, and draws entropy from the rng.

mod common;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_devices::net::DatagramBackend;
use vessel_devices::virtio::console::Console;
use vessel_devices::virtio::rng::Rng;
use vessel_x86::{DiskSpec, ExitReason, Microvm, NetConfig};

#[test]
fn the_guest_reads_sector_0_and_writes_sector_1_over_virtio_blk() {
    if !kvm_usable("the_guest_reads_sector_0_and_writes_sector_1_over_virtio_blk") {
        return;
    }
    let Some(guest) = build_guest("virtio_blk") else {
        return;
    };
    let mut disk = vec![0u8; 64 * 512];
    let text = b"vessel disk, sector zero";
    disk[..text.len()].copy_from_slice(text);
    for (i, b) in disk[100..512].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let path = guest.dir.path().join("disk.img");
    std::fs::write(&path, &disk).unwrap();
    let sum: u64 = disk[..512].iter().map(|&b| u64::from(b)).sum();

    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.disks.push(DiskSpec {
        path: path.clone(),
        read_only: false,
        format: None,
        serial: None,
    });
    let vm = Microvm::new(cfg).expect("the microvm builds");
    assert!(
        vm.boot_info()
            .cmdline
            .ends_with("virtio_mmio.device=4K@0xd0000000:5"),
        "{}",
        vm.boot_info().cmdline
    );
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(
        out,
        format!(
            "virtio device 0x2\nread status 0x0\nsector0 vessel disk, sector zero {sum:#x}\n\
             write status 0x0\ndone\n"
        )
    );
    let after = std::fs::read(&path).unwrap();
    let message = b"written by the vessel x86 guest\0";
    assert_eq!(&after[512..512 + message.len()], message);
    for i in message.len()..512 {
        assert_eq!(after[512 + i], (i * 3 + 1) as u8, "sector 1 byte {i}");
    }
    assert_eq!(&after[..512], &disk[..512], "sector 0 unchanged");
    assert_eq!(&after[1024..], &disk[1024..], "other sectors unchanged");
}

#[test]
fn a_missing_disk_image_is_a_clear_error() {
    if !kvm_usable("a_missing_disk_image_is_a_clear_error") {
        return;
    }
    let Some(guest) = build_guest("virtio_blk") else {
        return;
    };
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.disks.push(DiskSpec {
        path: guest.dir.path().join("missing.img"),
        read_only: false,
        format: None,
        serial: None,
    });
    let err = Microvm::new(cfg).err().expect("no disk, no VM");
    assert!(err.to_string().contains("missing.img"), "{err}");
}

#[test]
fn the_guest_sends_a_frame_over_virtio_net() {
    if !kvm_usable("the_guest_sends_a_frame_over_virtio_net") {
        return;
    }
    let Some(guest) = build_guest("virtio_net") else {
        return;
    };
    let (host, vm_end) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.nets.push(NetConfig {
        backend: Box::new(DatagramBackend::new(vm_end).unwrap()),
        mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
    });
    let vm = Microvm::new(cfg).expect("the microvm builds");
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(out, "virtio device 0x1\nsent 0x1\ndone\n");
    host.set_nonblocking(true).unwrap();
    let mut frame = [0u8; 2048];
    let n = host.recv(&mut frame).expect("the guest's frame is waiting");
    let mut expected = vec![0u8; 12];
    expected.extend_from_slice(&[0xff; 6]);
    expected.extend_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xb5]);
    expected.extend_from_slice(b"hello from the vessel x86 guest");
    assert_eq!(&frame[..n], &expected[..]);
    assert!(host.recv(&mut frame).is_err(), "exactly one frame");
}

#[test]
fn a_read_only_disk_refuses_the_guests_write() {
    if !kvm_usable("a_read_only_disk_refuses_the_guests_write") {
        return;
    }
    let Some(guest) = build_guest("virtio_blk") else {
        return;
    };
    let mut disk = vec![0u8; 8 * 512];
    disk[..4].copy_from_slice(b"ro!\0");
    let path = guest.dir.path().join("ro.img");
    std::fs::write(&path, &disk).unwrap();
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.disks.push(DiskSpec {
        path: path.clone(),
        read_only: true,
        format: None,
        serial: None,
    });
    let reason = run_guarded(Microvm::new(cfg).unwrap(), &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    let sum: u32 = b"ro!".iter().map(|&b| u32::from(b)).sum();
    // VIRTIO_BLK_S_IOERR (1) for the write; the read works.
    assert_eq!(
        out,
        format!(
            "virtio device 0x2\nread status 0x0\nsector0 ro! {sum:#x}\nwrite status 0x1\ndone\n"
        )
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        disk,
        "the image is unchanged"
    );
}

/// A disk image with `text` (NUL-terminated) at the start of sector 0.
fn disk_with_text(path: &std::path::Path, text: &[u8]) -> Vec<u8> {
    let mut disk = vec![0u8; 64 * 512];
    disk[..text.len()].copy_from_slice(text);
    std::fs::write(path, &disk).unwrap();
    disk
}

#[test]
fn a_qcow2_overlay_is_read_and_written_and_its_base_is_untouched() {
    let test = "a_qcow2_overlay_is_read_and_written_and_its_base_is_untouched";
    if !kvm_usable(test) {
        return;
    }
    let Some(guest) = build_guest("virtio_blk") else {
        return;
    };
    let base = guest.dir.path().join("base.raw");
    let disk = disk_with_text(&base, b"qcow2 base, sector zero");
    let overlay = guest.dir.path().join("overlay.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&overlay)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("qemu-img create: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run qemu-img ({e}); install qemu-utils");
            return;
        }
    }
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    // As `vessel run --disk overlay.qcow2,format=qcow2` gives it.
    cfg.disks.push(
        format!("{},format=qcow2", overlay.display())
            .parse()
            .unwrap(),
    );
    let reason = run_guarded(Microvm::new(cfg).unwrap(), &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    let sum: u64 = disk[..512].iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        out,
        format!(
            "virtio device 0x2\nread status 0x0\nsector0 qcow2 base, sector zero {sum:#x}\n\
             write status 0x0\ndone\n"
        )
    );
    assert_eq!(std::fs::read(&base).unwrap(), disk, "the base is unchanged");
    let flat = guest.dir.path().join("flat.raw");
    let o = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&overlay)
        .arg(&flat)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read(&flat).unwrap();
    let message = b"written by the vessel x86 guest\0";
    assert_eq!(
        &after[512..512 + message.len()],
        message,
        "the write is in the overlay"
    );
    assert_eq!(&after[..512], &disk[..512]);
}

/// Fields of a `slot <n> id <id> features <lo> <hi>` line.
fn slot_line(line: &str) -> (u64, u64, u64, u64) {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (w.len(), w[0], w[2], w[4]),
        (7, "slot", "id", "features"),
        "{line}"
    );
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    (hex(w[1]), hex(w[3]), hex(w[5]), hex(w[6]))
}

#[test]
fn a_driver_finds_disk_console_and_rng_and_draws_entropy() {
    let test = "a_driver_finds_disk_console_and_rng_and_draws_entropy";
    if !kvm_usable(test) {
        return;
    }
    let Some(guest) = build_guest("virtio_probe") else {
        return;
    };
    let path = guest.dir.path().join("ro.img");
    disk_with_text(&path, b"probe");
    let capture = Capture::default();
    let hvc = Capture::default();
    let mut cfg = config(&guest, &capture);
    // As `vessel run --disk ro.img,ro,serial=vessel-ro-1 --console virtio --rng`.
    cfg.disks.push(
        format!("{},ro,serial=vessel-ro-1", path.display())
            .parse()
            .unwrap(),
    );
    cfg.virtio
        .push(Box::new(Console::new(Box::new(hvc.clone()), None).unwrap()));
    cfg.virtio.push(Box::new(Rng::new()));
    let vm = Microvm::new(cfg).expect("the microvm builds");
    assert!(
        vm.boot_info().cmdline.ends_with(
            "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 \
             virtio_mmio.device=4K@0xd0002000:7"
        ),
        "{}",
        vm.boot_info().cmdline
    );
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "serial output:\n{out}");
    const VERSION_1: u64 = 1; // bit 32: bit 0 of the high word
    const BLK_F_RO: u64 = 1 << 5;
    // The disk: read-only, and its serial through GET_ID.
    let (n, id, lo, hi) = slot_line(lines[0]);
    assert_eq!((n, id, hi & VERSION_1), (0, 2, VERSION_1), "{out}");
    assert_ne!(lo & BLK_F_RO, 0, "VIRTIO_BLK_F_RO offered: {out}");
    assert_eq!(lines[1], "serial 0x0 vessel-ro-1");
    // The console and the entropy device.
    let (n, id, _, hi) = slot_line(lines[2]);
    assert_eq!((n, id, hi & VERSION_1), (1, 3, VERSION_1), "{out}");
    let (n, id, _, hi) = slot_line(lines[3]);
    assert_eq!((n, id, hi & VERSION_1), (2, 4, VERSION_1), "{out}");
    let draws: Vec<&str> = lines[4..6]
        .iter()
        .map(|l| {
            let bytes = l
                .strip_prefix("rng 0x10 ")
                .unwrap_or_else(|| panic!("{out}"));
            assert_eq!(bytes.len(), 32, "{l}");
            bytes
        })
        .collect();
    assert_ne!(draws[0], "0".repeat(32), "the device wrote its buffer");
    assert_ne!(draws[0], draws[1], "two draws differ");
    assert_eq!(lines[6], "done");
    assert!(hvc.text().is_empty(), "the guest wrote nothing to hvc0");
}
