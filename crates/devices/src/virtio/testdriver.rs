//! A mock virtio driver for unit tests: programs a [`VirtioMmio`] through its
//! registers the way Linux does and builds queues with virtio-queue's
//! `MockSplitQueue`.

use std::sync::Arc;

use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{BusDevice, GuestMemoryMmap};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};

use super::mmio::{VirtioMmio, regs, status};
use super::testutil::TestIrq;
use super::{VirtioDevice, features};

pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;

pub struct Driver<'a> {
    pub mmio: VirtioMmio,
    pub mem: &'a GuestMemoryMmap,
    pub irq: Arc<TestIrq>,
    pub queues: Vec<TestQueue<'a>>,
    next_desc: Vec<u16>,
}

/// A split queue laid out by the test driver: descriptor table at its base,
/// available ring 4 KiB later, used ring 8 KiB later (sizes up to 256).
pub struct TestQueue<'a> {
    pub size: u16,
    pub desc: DescriptorTable<'a, GuestMemoryMmap>,
    pub avail: AvailRing<'a, GuestMemoryMmap>,
    pub used: UsedRing<'a, GuestMemoryMmap>,
    pub base: GuestAddress,
}

impl<'a> TestQueue<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, base: GuestAddress, size: u16) -> Self {
        Self {
            size,
            desc: DescriptorTable::new(mem, base, size),
            avail: AvailRing::new(mem, GuestAddress(base.0 + 0x1000), size),
            used: UsedRing::new(mem, GuestAddress(base.0 + 0x2000), size),
            base,
        }
    }
    pub fn desc_table_addr(&self) -> GuestAddress {
        self.base
    }
    pub fn avail_addr(&self) -> GuestAddress {
        GuestAddress(self.base.0 + 0x1000)
    }
    pub fn used_addr(&self) -> GuestAddress {
        GuestAddress(self.base.0 + 0x2000)
    }
}

pub fn queue_addr(i: usize) -> GuestAddress {
    GuestAddress(0x1_0000 + 0x4000 * i as u64)
}

impl<'a> Driver<'a> {
    /// A transport around `device`, not yet initialised.
    pub fn new(mem: &'a GuestMemoryMmap, device: Box<dyn VirtioDevice>) -> Self {
        let irq = Arc::new(TestIrq::default());
        let mmio = VirtioMmio::new(mem.clone(), device, irq.clone());
        Self {
            mmio,
            mem,
            irq,
            queues: Vec::new(),
            next_desc: Vec::new(),
        }
    }

    pub fn r(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.mmio.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn w(&mut self, off: u64, v: u32) {
        self.mmio.write(off, &v.to_le_bytes());
    }

    pub fn device_features(&mut self) -> u64 {
        self.w(regs::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(regs::DEVICE_FEATURES);
        self.w(regs::DEVICE_FEATURES_SEL, 1);
        let hi = self.r(regs::DEVICE_FEATURES);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Negotiate `feats`; returns whether FEATURES_OK stuck.
    pub fn negotiate(&mut self, feats: u64) -> bool {
        self.w(regs::STATUS, 0);
        self.w(regs::STATUS, status::ACKNOWLEDGE);
        self.w(regs::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.w(regs::DRIVER_FEATURES_SEL, 0);
        self.w(regs::DRIVER_FEATURES, feats as u32);
        self.w(regs::DRIVER_FEATURES_SEL, 1);
        self.w(regs::DRIVER_FEATURES, (feats >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.w(regs::STATUS, s);
        self.r(regs::STATUS) & status::FEATURES_OK != 0
    }

    /// Program queue `i` with `size` entries at its test address.
    pub fn setup_queue(&mut self, i: usize, size: u16) {
        let vq = TestQueue::new(self.mem, queue_addr(i), size);
        self.w(regs::QUEUE_SEL, i as u32);
        self.w(regs::QUEUE_NUM, u32::from(size));
        let d = vq.desc_table_addr().0;
        let a = vq.avail_addr().0;
        let u = vq.used_addr().0;
        self.w(regs::QUEUE_DESC_LOW, d as u32);
        self.w(regs::QUEUE_DESC_HIGH, (d >> 32) as u32);
        self.w(regs::QUEUE_DRIVER_LOW, a as u32);
        self.w(regs::QUEUE_DRIVER_HIGH, (a >> 32) as u32);
        self.w(regs::QUEUE_DEVICE_LOW, u as u32);
        self.w(regs::QUEUE_DEVICE_HIGH, (u >> 32) as u32);
        self.w(regs::QUEUE_READY, 1);
        if self.queues.len() <= i {
            self.queues.push(vq);
            self.next_desc.push(0);
        } else {
            self.queues[i] = vq;
            self.next_desc[i] = 0;
        }
    }

    /// The full Linux sequence: features (with VERSION_1 and event-idx off
    /// unless asked), every queue, DRIVER_OK.
    pub fn init(&mut self, extra: u64, queue_sizes: &[u16]) {
        assert!(self.negotiate(features::VERSION_1 | extra));
        for (i, &s) in queue_sizes.iter().enumerate() {
            self.setup_queue(i, s);
        }
        self.driver_ok();
    }

    pub fn driver_ok(&mut self) {
        let s = self.r(regs::STATUS);
        self.w(regs::STATUS, s | status::DRIVER_OK);
    }

    /// Place a chain of `(addr, len, flags)` buffers (NEXT is added) in
    /// queue `q`'s available ring without notifying. Returns the head.
    pub fn add(&mut self, q: usize, bufs: &[(u64, u32, u16)]) -> u16 {
        let size = self.queues[q].size;
        let head = self.next_desc[q];
        let mut descs = Vec::new();
        for (k, &(addr, len, flags)) in bufs.iter().enumerate() {
            let idx = (head + k as u16) % size;
            let last = k + 1 == bufs.len();
            let flags = if last { flags & !NEXT } else { flags | NEXT };
            descs.push((idx, Descriptor::new(addr, len, flags, (idx + 1) % size)));
        }
        for (idx, d) in &descs {
            self.queues[q]
                .desc
                .store(*idx, RawDescriptor::from(*d))
                .unwrap();
        }
        self.next_desc[q] = (head + bufs.len() as u16) % size;
        let avail = &self.queues[q].avail;
        let aidx = avail.idx().load();
        avail
            .ring()
            .ref_at(usize::from(aidx % size))
            .unwrap()
            .store(head);
        avail.idx().store(aidx.wrapping_add(1));
        head
    }

    pub fn notify(&mut self, q: usize) {
        self.w(regs::QUEUE_NOTIFY, q as u32);
    }

    /// add + notify.
    pub fn submit(&mut self, q: usize, bufs: &[(u64, u32, u16)]) -> u16 {
        let h = self.add(q, bufs);
        self.notify(q);
        h
    }

    pub fn used_idx(&self, q: usize) -> u16 {
        self.queues[q].used.idx().load()
    }

    /// The used element at position `n`: (id, len).
    pub fn used(&self, q: usize, n: u16) -> (u32, u32) {
        let size = self.queues[q].size;
        let e = self.queues[q]
            .used
            .ring()
            .ref_at(usize::from(n % size))
            .unwrap()
            .load();
        (e.id(), e.len())
    }

    pub fn needs_reset(&mut self) -> bool {
        self.r(regs::STATUS) & status::DEVICE_NEEDS_RESET != 0
    }

    pub fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    pub fn write_bytes(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }
}
