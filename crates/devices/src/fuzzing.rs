//! Fuzzing harness shared by the cargo-fuzz targets in `crates/devices/fuzz`
//! and by the unit tests below: a hostile driver whose guest memory (rings,
//! descriptors, buffers) and register traffic come from the fuzzer's bytes.
//!
//! Input layout: byte 0 flags (bit 0 read-only disk, bit 1 event-idx,
//! bit 2 indirect descriptors, bits 3-5 log2 queue size), bytes 1-2 the
//! length L of a memory image, L bytes copied to guest address 0, then
//! 6-byte operations (op, arg, u32 value); op 4 feeds the net device a
//! frame and presses the input device's button.

#![doc(hidden)]

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{BusDevice, IrqLine};

use crate::block::MemDisk;
use crate::input::PowerButton;
use crate::net::DatagramBackend;
use crate::virtio::block::{Block, BlockOptions};
use crate::virtio::console::Console;
use crate::virtio::mmio::{VirtioMmio, regs, status};
use crate::virtio::net::Net;
use crate::virtio::rng::Rng;
use crate::virtio::{VirtioDevice, features};

/// Which device to fuzz.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Block,
    Net,
    Console,
    Rng,
    Input,
}

struct NullIrq;

impl IrqLine for NullIrq {
    fn set_level(&self, _high: bool) {}
}

const MEM_SIZE: u64 = 0x4_0000;

fn queue_base(i: u32) -> u64 {
    u64::from(i) * 0x3000
}

fn w(m: &mut VirtioMmio, off: u64, v: u32) {
    m.write(off, &v.to_le_bytes());
}

fn setup(m: &mut VirtioMmio, flags: u8, nqueues: u32) {
    w(m, regs::STATUS, 0);
    w(m, regs::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let mut r = [0u8; 4];
    w(m, regs::DEVICE_FEATURES_SEL, 0);
    m.read(regs::DEVICE_FEATURES, &mut r);
    let mut feats = u64::from(u32::from_le_bytes(r)) | features::VERSION_1;
    if flags & 2 != 0 {
        feats |= features::RING_EVENT_IDX;
    }
    if flags & 4 != 0 {
        feats |= features::RING_INDIRECT_DESC;
    }
    w(m, regs::DRIVER_FEATURES_SEL, 0);
    w(m, regs::DRIVER_FEATURES, feats as u32);
    w(m, regs::DRIVER_FEATURES_SEL, 1);
    w(m, regs::DRIVER_FEATURES, (feats >> 32) as u32);
    w(
        m,
        regs::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    let size = 1u32 << ((flags >> 3) & 7).min(8);
    for q in 0..nqueues {
        let b = queue_base(q);
        w(m, regs::QUEUE_SEL, q);
        w(m, regs::QUEUE_NUM, size);
        w(m, regs::QUEUE_DESC_LOW, b as u32);
        w(m, regs::QUEUE_DRIVER_LOW, (b + 0x1000) as u32);
        w(m, regs::QUEUE_DEVICE_LOW, (b + 0x2000) as u32);
        w(m, regs::QUEUE_READY, 1);
    }
    w(
        m,
        regs::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
}

/// Run one fuzz input against `target`; returns queue 0's used index at
/// the end (for tests). Never panics unless a device does.
pub fn run(target: Target, data: &[u8]) -> u16 {
    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let mem = match vessel_machine::create_guest_memory(&[(0, MEM_SIZE)]) {
        Ok(m) => m,
        Err(_) => return 0,
    };
    let (image, ops) = match rest {
        [a, b, tail @ ..] => {
            let l = (usize::from(u16::from_le_bytes([*a, *b]))).min(tail.len());
            tail.split_at(l)
        }
        _ => (&[][..], rest),
    };
    let _ = mem.write_slice(image, GuestAddress(0));
    let mut host_end = None;
    let mut button = None;
    let (device, nqueues): (Box<dyn VirtioDevice>, u32) = match target {
        Target::Block => {
            let opts = BlockOptions {
                read_only: flags & 1 != 0,
                serial: Some("fuzz".into()),
            };
            match Block::new(Box::new(MemDisk::new(64 * 1024)), opts) {
                Ok(b) => (Box::new(b), 1),
                Err(_) => return 0,
            }
        }
        Target::Net => {
            let Ok((a, b)) = UnixDatagram::pair() else {
                return 0;
            };
            let Ok(backend) = DatagramBackend::new(a) else {
                return 0;
            };
            let _ = b.set_nonblocking(true);
            host_end = Some(b);
            match Net::new(Box::new(backend), [2, 0, 0, 0, 0, 1]) {
                Ok(n) => (Box::new(n), 2),
                Err(_) => return 0,
            }
        }
        Target::Console => match Console::new(Box::new(std::io::sink()), None) {
            Ok(c) => (Box::new(c), 2),
            Err(_) => return 0,
        },
        Target::Rng => (Box::new(Rng::new()), 1),
        Target::Input => {
            let (dev, handle) = PowerButton::new();
            button = Some(handle);
            (Box::new(dev), 2)
        }
    };
    let mut m = VirtioMmio::new(mem.clone(), device, Arc::new(NullIrq));
    setup(&mut m, flags, nqueues);
    for op in ops.chunks_exact(6) {
        let arg = op[1];
        let val = u32::from_le_bytes([op[2], op[3], op[4], op[5]]);
        match op[0] % 6 {
            0 => w(&mut m, regs::QUEUE_NOTIFY, u32::from(arg) % (nqueues + 1)),
            1 => w(&mut m, u64::from(arg) * 4 % 0x200, val),
            2 => {
                let mut r = [0u8; 4];
                m.read(u64::from(arg) * 4 % 0x200, &mut r);
            }
            3 => {
                let _ = mem.write_obj(val, GuestAddress(u64::from(arg) * 4 % MEM_SIZE));
            }
            4 => {
                if let Some(h) = &host_end {
                    let frame = vec![arg; (val % 2048) as usize];
                    let _ = h.send(&frame);
                }
                if let Some(b) = &button {
                    let _ = b.press();
                }
            }
            _ => setup(&mut m, flags ^ (arg & 0x3e), nqueues),
        }
    }
    let used = mem
        .read_obj::<u16>(GuestAddress(queue_base(0) + 0x2002))
        .unwrap_or(0);
    // Reset (and then drop) the transport: any worker thread stops.
    w(&mut m, regs::STATUS, 0);
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random inputs: every device survives them.
    #[test]
    fn devices_survive_random_inputs() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for target in [
            Target::Block,
            Target::Net,
            Target::Console,
            Target::Rng,
            Target::Input,
        ] {
            for _ in 0..150 {
                let len = (next() % 4096) as usize;
                let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if data.len() > 3 {
                    // Small images so that the operations get a turn.
                    data[1] = (next() % 512) as u8;
                    data[2] = 0;
                }
                run(target, &data);
            }
        }
    }

    /// A well-formed block request built by hand goes through the harness:
    /// the harness really reaches the device.
    #[test]
    fn harness_reaches_the_device() {
        // flags: queue size 2^4 = 16.
        let flags = 4 << 3;
        let mut image = vec![0u8; 0x8000];
        let desc = |i: usize, addr: u64, len: u32, fl: u16, next: u16, img: &mut Vec<u8>| {
            let o = i * 16;
            img[o..o + 8].copy_from_slice(&addr.to_le_bytes());
            img[o + 8..o + 12].copy_from_slice(&len.to_le_bytes());
            img[o + 12..o + 14].copy_from_slice(&fl.to_le_bytes());
            img[o + 14..o + 16].copy_from_slice(&next.to_le_bytes());
        };
        desc(0, 0x6000, 16, 1, 1, &mut image);
        desc(1, 0x7000, 1, 2, 0, &mut image);
        // GET_ID header at 0x6000, status at 0x7000 (pre-set to 0xff).
        image[0x6000..0x6004].copy_from_slice(&8u32.to_le_bytes());
        image[0x7000] = 0xff;
        // avail ring at 0x1000: idx 1, ring[0] = 0.
        image[0x1002] = 1;
        let mut data = vec![flags];
        data.extend_from_slice(&(image.len() as u16).to_le_bytes());
        data.extend_from_slice(&image);
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // notify queue 0
        assert_eq!(run(Target::Block, &data), 1, "the GET_ID request completed");
    }
}
