//! virtio devices of crates/devices on the microvm: a polling virtio-blk
//! driver in the guest reads sector 0 and writes sector 1 of a disk image;
//! a polling virtio-net driver sends a frame that the host receives.

mod common;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_devices::net::DatagramBackend;
use vessel_x86::{DiskConfig, ExitReason, Microvm, NetConfig};

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
    cfg.disks.push(DiskConfig {
        path: path.clone(),
        read_only: false,
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
    cfg.disks.push(DiskConfig {
        path: guest.dir.path().join("missing.img"),
        read_only: false,
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
    cfg.disks.push(DiskConfig {
        path: path.clone(),
        read_only: true,
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
