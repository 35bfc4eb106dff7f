//! End to end through the public API only: transports placed on a bus at the
//! riscv64 `virt` board's addresses, driven by a minimal split-ring driver
//! the way Linux drives them, with real disk images on the host.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vessel_devices::VirtioMmio;
use vessel_devices::block::{DiskOptions, Format, open_disk};
use vessel_devices::virtio::block::{Block, BlockOptions};
use vessel_devices::virtio::rng::Rng;
use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{Bus, GuestMemoryMmap, IrqLine, create_guest_memory};

const RAM: u64 = 0x8000_0000;
const SLOT0: u64 = 0x1000_1000;

/// One PLIC source: remembers its level.
#[derive(Default)]
struct Line(AtomicU32);

impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.store(u32::from(high), Ordering::SeqCst);
    }
}

/// A minimal virtio-mmio driver with one 16-entry queue per device.
struct Drv<'a> {
    bus: &'a Bus,
    mem: &'a GuestMemoryMmap,
    base: u64,
    ring: u64,
    avail: u16,
}

impl<'a> Drv<'a> {
    fn r(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.bus.read(self.base + off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn w(&self, off: u64, v: u32) {
        self.bus.write(self.base + off, &v.to_le_bytes()).unwrap();
    }

    /// Probe and initialise like Linux's virtio_mmio: reset, ACKNOWLEDGE,
    /// DRIVER, features, FEATURES_OK, queue 0, DRIVER_OK.
    fn init(bus: &'a Bus, mem: &'a GuestMemoryMmap, slot: u64, want: u64) -> Self {
        let d = Self {
            bus,
            mem,
            base: SLOT0 + 0x1000 * slot,
            ring: RAM + 0x10_0000 * (slot + 1),
            avail: 0,
        };
        assert_eq!(d.r(0), 0x7472_6976, "magic");
        assert_eq!(d.r(4), 2, "version");
        d.w(0x70, 0);
        d.w(0x70, 1);
        d.w(0x70, 3);
        d.w(0x14, 1);
        let offered_hi = d.r(0x10);
        assert_eq!(offered_hi & 1, 1, "VERSION_1 offered");
        d.w(0x24, 0);
        d.w(0x20, want as u32);
        d.w(0x24, 1);
        d.w(0x20, 1); // VERSION_1
        d.w(0x70, 0xb);
        assert_eq!(d.r(0x70) & 8, 8, "FEATURES_OK accepted");
        d.w(0x30, 0);
        assert_eq!(d.r(0x44), 0, "queue not yet in use");
        assert!(d.r(0x34) >= 16);
        d.w(0x38, 16);
        d.w(0x80, d.ring as u32);
        d.w(0x84, (d.ring >> 32) as u32);
        d.w(0x90, (d.ring + 0x1000) as u32);
        d.w(0x94, ((d.ring + 0x1000) >> 32) as u32);
        d.w(0xa0, (d.ring + 0x2000) as u32);
        d.w(0xa4, ((d.ring + 0x2000) >> 32) as u32);
        d.w(0x44, 1);
        d.w(0x70, 0xf);
        assert_eq!(d.r(0x70), 0xf, "running, no DEVICE_NEEDS_RESET");
        d
    }

    /// Submit one chain of (addr, len, device-writable) buffers; wait for it
    /// (the devices here complete inline); returns the used length.
    fn request(&mut self, bufs: &[(u64, u32, bool)]) -> u32 {
        let head = (self.avail % 16) * 4 % 16;
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % 16;
            let mut flags = if write { 2u16 } else { 0 };
            if k + 1 < bufs.len() {
                flags |= 1;
            }
            let d = self.ring + 16 * u64::from(i);
            self.mem.write_obj(addr, GuestAddress(d)).unwrap();
            self.mem.write_obj(len, GuestAddress(d + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
            self.mem
                .write_obj((i + 1) % 16, GuestAddress(d + 14))
                .unwrap();
        }
        let avail = self.ring + 0x1000;
        self.mem
            .write_obj(
                head,
                GuestAddress(avail + 4 + 2 * u64::from(self.avail % 16)),
            )
            .unwrap();
        self.avail = self.avail.wrapping_add(1);
        self.mem
            .write_obj(self.avail, GuestAddress(avail + 2))
            .unwrap();
        self.w(0x50, 0);
        let used = self.ring + 0x2000;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        assert_eq!(idx, self.avail, "completed inline");
        let slot = u64::from(idx.wrapping_sub(1) % 16);
        let id: u32 = self
            .mem
            .read_obj(GuestAddress(used + 4 + 8 * slot))
            .unwrap();
        assert_eq!(id, u32::from(head));
        let isr = self.r(0x60);
        self.w(0x64, isr);
        self.mem
            .read_obj(GuestAddress(used + 4 + 8 * slot + 4))
            .unwrap()
    }

    /// A block request; returns the status byte.
    fn blk(&mut self, kind: u32, sector: u64, data: u64, len: u32) -> u8 {
        let hdr = RAM + 0x1000;
        let status = RAM + 0x2000;
        self.mem.write_obj(kind, GuestAddress(hdr)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(hdr + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(hdr + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        let mut bufs = vec![(hdr, 16, false)];
        if len > 0 {
            bufs.push((data, len, kind == 0 || kind == 8));
        }
        bufs.push((status, 1, true));
        self.request(&bufs);
        self.mem.read_obj(GuestAddress(status)).unwrap()
    }
}

fn qemu_img(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("qemu-img").args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!("SKIP: qemu-img (Debian package qemu-utils) is needed: {e}");
            None
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn two_disks_and_an_rng_on_board_slots() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("data.raw");
    let base = dir.path().join("base.raw");
    let overlay = dir.path().join("root.qcow2");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    let base_bytes = pattern(2 << 20, 7);
    std::fs::write(&base, &base_bytes).unwrap();
    let Some(out) = qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        base.to_str().unwrap(),
        overlay.to_str().unwrap(),
    ]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mem = create_guest_memory(&[(RAM, 64 << 20)]).unwrap();
    let mut bus = Bus::new();
    let lines: Vec<Arc<Line>> = (0..3).map(|_| Arc::new(Line::default())).collect();
    let disk = |p: &Path, format| {
        let opts = DiskOptions {
            read_only: false,
            format: Some(format),
        };
        open_disk(p, &opts).unwrap()
    };
    let root = Block::new(
        disk(&overlay, Format::Qcow2),
        BlockOptions {
            read_only: false,
            serial: Some("root".into()),
        },
    )
    .unwrap();
    let data = Block::new(disk(&raw, Format::Raw), BlockOptions::default()).unwrap();
    let devices: Vec<Box<dyn vessel_devices::VirtioDevice>> =
        vec![Box::new(root), Box::new(data), Box::new(Rng::new())];
    for (i, dev) in devices.into_iter().enumerate() {
        let mmio = VirtioMmio::new(mem.clone(), dev, lines[i].clone());
        bus.insert(
            SLOT0 + 0x1000 * i as u64,
            0x1000,
            Arc::new(Mutex::new(mmio)),
        )
        .unwrap();
    }

    let buf = RAM + 0x10_000;
    // Disk 0: qcow2 overlay. Read through to the base, write, flush.
    let mut d0 = Drv::init(&bus, &mem, 0, 1 << 9);
    assert_eq!(d0.r(0x100), 4096, "capacity in sectors");
    assert_eq!(d0.blk(0, 100, buf, 4096), 0);
    let mut got = vec![0u8; 4096];
    mem.read_slice(&mut got, GuestAddress(buf)).unwrap();
    assert_eq!(got, base_bytes[100 * 512..100 * 512 + 4096]);
    let new = pattern(64 * 1024, 99);
    mem.write_slice(&new, GuestAddress(buf)).unwrap();
    assert_eq!(d0.blk(1, 2000, buf, new.len() as u32), 0);
    assert_eq!(d0.blk(4, 0, 0, 0), 0, "flush");
    assert_eq!(d0.blk(8, 0, buf, 20), 0, "get id");
    let mut id = [0u8; 4];
    mem.read_slice(&mut id, GuestAddress(buf)).unwrap();
    assert_eq!(&id, b"root");

    // Disk 1: raw. Write, flush; the bytes are in the file.
    let mut d1 = Drv::init(&bus, &mem, 1, 1 << 9);
    assert_eq!(d1.r(0x100), 2048);
    let raw_data = pattern(8192, 3);
    mem.write_slice(&raw_data, GuestAddress(buf)).unwrap();
    assert_eq!(d1.blk(1, 8, buf, 8192), 0);
    assert_eq!(d1.blk(4, 0, 0, 0), 0);
    assert_eq!(std::fs::read(&raw).unwrap()[4096..12288], raw_data[..]);
    assert_eq!(d1.blk(0, 2048, buf, 512), 1, "beyond capacity: IOERR");

    // The rng fills 4 KiB.
    let mut d2 = Drv::init(&bus, &mem, 2, 0);
    mem.write_slice(&[0u8; 4096], GuestAddress(buf)).unwrap();
    assert_eq!(d2.request(&[(buf, 4096, true)]), 4096);
    mem.read_slice(&mut got, GuestAddress(buf)).unwrap();
    assert!(got.iter().any(|&b| b != 0));
    for l in &lines {
        assert_eq!(
            l.0.load(Ordering::SeqCst),
            0,
            "every interrupt acknowledged"
        );
    }

    // Power off: drop everything, then look at the images from the host.
    drop(bus);
    assert_eq!(std::fs::read(&base).unwrap(), base_bytes, "base unchanged");
    let flat = dir.path().join("flat.raw");
    let out = qemu_img(&[
        "convert",
        "-O",
        "raw",
        overlay.to_str().unwrap(),
        flat.to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flat = std::fs::read(&flat).unwrap();
    assert_eq!(flat[2000 * 512..2000 * 512 + new.len()], new[..]);
    assert_eq!(flat[..2000 * 512], base_bytes[..2000 * 512]);
    let check = qemu_img(&["check", "-q", overlay.to_str().unwrap()]).unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
