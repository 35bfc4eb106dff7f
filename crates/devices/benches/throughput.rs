//! Device-side throughput, without a guest: how fast the transport and the
//! devices move data when a driver keeps the queue full. Run with
//! `cargo bench -p vessel-devices --bench throughput`.
//!
//! It measures the VMM's share of an I/O: the guest's own cost (the emulated
//! driver) comes on top and is measured by the guest benchmarks in bench/.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Instant;

use vessel_devices::VirtioMmio;
use vessel_devices::block::{DiskBackend, MemDisk, raw::RawDisk};
use vessel_devices::net::DatagramBackend;
use vessel_devices::virtio::block::{Block, BlockOptions};
use vessel_devices::virtio::net::Net;
use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{BusDevice, GuestMemoryMmap, IrqLine, create_guest_memory};

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _: bool) {}
}

const QSIZE: u16 = 256;
const RING: u64 = 0x10_0000;

struct Drv {
    mmio: VirtioMmio,
    mem: GuestMemoryMmap,
    avail: u16,
}

impl Drv {
    fn w(&mut self, off: u64, v: u32) {
        self.mmio.write(off, &v.to_le_bytes());
    }

    fn new(mem: GuestMemoryMmap, dev: Box<dyn vessel_devices::VirtioDevice>, nq: u32) -> Self {
        let mmio = VirtioMmio::new(mem.clone(), dev, Arc::new(NoIrq));
        let mut d = Self {
            mmio,
            mem,
            avail: 0,
        };
        d.w(0x70, 3);
        d.w(0x24, 1);
        d.w(0x20, 1);
        d.w(0x70, 0xb);
        for q in 0..nq {
            let b = RING + u64::from(q) * 0x4000;
            d.w(0x30, q);
            d.w(0x38, u32::from(QSIZE));
            d.w(0x80, b as u32);
            d.w(0x90, (b + 0x1000) as u32);
            d.w(0xa0, (b + 0x2000) as u32);
            d.w(0x44, 1);
        }
        d.w(0x70, 0xf);
        d
    }

    /// Queue a batch of chains on queue `q` and notify once.
    fn batch(&mut self, q: u32, chains: &[Vec<(u64, u32, bool)>]) {
        let b = RING + u64::from(q) * 0x4000;
        let mut next_desc = 0u16;
        for c in chains {
            let head = next_desc;
            for (k, &(addr, len, write)) in c.iter().enumerate() {
                let i = next_desc;
                next_desc += 1;
                let mut flags = if write { 2u16 } else { 0 };
                if k + 1 < c.len() {
                    flags |= 1;
                }
                let d = b + 16 * u64::from(i);
                self.mem.write_obj(addr, GuestAddress(d)).unwrap();
                self.mem.write_obj(len, GuestAddress(d + 8)).unwrap();
                self.mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
                self.mem.write_obj(i + 1, GuestAddress(d + 14)).unwrap();
            }
            let slot = u64::from(self.avail % QSIZE);
            self.mem
                .write_obj(head, GuestAddress(b + 0x1000 + 4 + 2 * slot))
                .unwrap();
            self.avail = self.avail.wrapping_add(1);
        }
        self.mem
            .write_obj(self.avail, GuestAddress(b + 0x1000 + 2))
            .unwrap();
        self.w(0x50, q);
    }
}

fn blk(name: &str, disk: Box<dyn DiskBackend>, total: u64) {
    let mem = create_guest_memory(&[(0, 64 << 20)]).unwrap();
    let mut d = Drv::new(
        mem.clone(),
        Box::new(Block::new(disk, BlockOptions::default()).unwrap()),
        1,
    );
    const REQ: u32 = 128 * 1024;
    const PER_BATCH: u64 = 64; // 3 descriptors each: 192 of 256
    for (kind, label) in [(1u32, "write"), (0u32, "read")] {
        let start = Instant::now();
        let mut sector = 0u64;
        let mut done = 0u64;
        while done < total {
            let mut chains = Vec::new();
            for i in 0..PER_BATCH {
                let hdr = 0x20_0000 + 32 * i;
                mem.write_obj(kind, GuestAddress(hdr)).unwrap();
                mem.write_obj(sector, GuestAddress(hdr + 8)).unwrap();
                let data = 0x40_0000 + u64::from(REQ) * i;
                chains.push(vec![
                    (hdr, 16, false),
                    (data, REQ, kind == 0),
                    (hdr + 16, 1, true),
                ]);
                sector += u64::from(REQ) / 512;
                done += u64::from(REQ);
            }
            d.batch(0, &chains);
            let status: u8 = mem.read_obj(GuestAddress(0x20_0010)).unwrap();
            assert_eq!(status, 0, "request failed");
            if sector * 512 >= 32 << 20 {
                sector = 0;
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "virtio-blk {name:6} {label:5}: {:7.0} MiB/s ({:.0} requests/s of 128 KiB)",
            total as f64 / s / 1048576.0,
            (total / u64::from(REQ)) as f64 / s
        );
    }
}

fn net_tx() {
    let mem = create_guest_memory(&[(0, 64 << 20)]).unwrap();
    let (a, host) = UnixDatagram::pair().unwrap();
    let backend = DatagramBackend::new(a).unwrap();
    let mut d = Drv::new(
        mem.clone(),
        Box::new(Net::new(Box::new(backend), [2, 0, 0, 0, 0, 1]).unwrap()),
        2,
    );
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        let mut bytes = 0u64;
        host.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        while let Ok(n) = host.recv(&mut buf) {
            bytes += n as u64;
        }
        bytes
    });
    let frame = 1514 + 12;
    let frames = 200_000u64;
    let start = Instant::now();
    let mut sent = 0;
    while sent < frames {
        let chains: Vec<_> = (0..128u64)
            .map(|i| vec![(0x40_0000 + 2048 * i, frame as u32, false)])
            .collect();
        d.batch(1, &chains);
        sent += 128;
    }
    let s = start.elapsed().as_secs_f64();
    let got = reader.join().unwrap();
    println!(
        "virtio-net tx (datagram socket): {:.0} frames/s, {:.0} MiB/s; {} of {} bytes arrived (the socket drops when full)",
        sent as f64 / s,
        (sent * frame) as f64 / s / 1048576.0,
        got,
        sent * frame
    );
}

fn main() {
    blk("memory", Box::new(MemDisk::new(32 << 20)), 256 << 20);
    let dir = std::env::temp_dir().join(format!("vessel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("disk.raw");
    std::fs::write(&p, vec![0u8; 32 << 20]).unwrap();
    blk(
        "raw",
        Box::new(RawDisk::open(&p, false).unwrap()),
        256 << 20,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    net_tx();
}
