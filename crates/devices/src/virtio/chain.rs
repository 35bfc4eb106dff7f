//! Descriptor chains, checked: every buffer inside guest memory, the chain
//! finite and no longer than the queue allows, driver-readable buffers before
//! device-writable ones, the total length within 32 bits.
//!
//! `virtio-queue` walks the descriptor table (and indirect tables) with a
//! bound on the number of descriptors; this module turns its output into a
//! list of checked buffers and reads and writes through them.

use std::ops::Deref;

use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use virtio_queue::DescriptorChain;

/// One checked buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A chain split into its driver-readable and device-writable buffers.
#[derive(Debug, Default)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Buffer>,
    pub writable: Vec<Buffer>,
}

/// What is wrong with a chain the driver made available.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    #[error("descriptor chain {head} is empty or its head is unreadable")]
    Empty { head: u16 },
    #[error(
        "descriptor chain {head} loops, is longer than the queue, or links to an unreadable descriptor"
    )]
    Unterminated { head: u16 },
    #[error("descriptor chain {head} has a buffer {addr:#x}+{len:#x} outside guest memory")]
    OutsideMemory { head: u16, addr: u64, len: u32 },
    #[error("descriptor chain {head} has a driver-readable buffer after a device-writable one")]
    WrongOrder { head: u16 },
    #[error("descriptor chain {head} is longer than 4 GiB in total")]
    TooLong { head: u16 },
}

impl ChainError {
    /// A stable name for log-once bookkeeping.
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::Empty { .. } => "empty chain",
            ChainError::Unterminated { .. } => "unterminated chain",
            ChainError::OutsideMemory { .. } => "buffer outside guest memory",
            ChainError::WrongOrder { .. } => "readable buffer after writable one",
            ChainError::TooLong { .. } => "chain longer than 4 GiB",
        }
    }
}

/// Walk and check a chain.
pub fn parse<M>(chain: DescriptorChain<M>, mem: &GuestMemoryMmap) -> Result<Chain, ChainError>
where
    M: Deref<Target = GuestMemoryMmap>,
{
    let head = chain.head_index();
    let mut out = Chain {
        head,
        ..Chain::default()
    };
    let mut last_has_next = false;
    let mut total: u32 = 0;
    for desc in chain {
        last_has_next = desc.has_next();
        total = total
            .checked_add(desc.len())
            .ok_or(ChainError::TooLong { head })?;
        if desc.len() > 0 && !mem.check_range(desc.addr(), desc.len() as usize) {
            return Err(ChainError::OutsideMemory {
                head,
                addr: desc.addr().0,
                len: desc.len(),
            });
        }
        let buf = Buffer {
            addr: desc.addr(),
            len: desc.len(),
        };
        if desc.is_write_only() {
            out.writable.push(buf);
        } else {
            if !out.writable.is_empty() {
                return Err(ChainError::WrongOrder { head });
            }
            out.readable.push(buf);
        }
    }
    if out.readable.is_empty() && out.writable.is_empty() {
        return Err(ChainError::Empty { head });
    }
    if last_has_next {
        return Err(ChainError::Unterminated { head });
    }
    Ok(out)
}

/// Total length of a list of buffers.
pub fn total_len(bufs: &[Buffer]) -> u64 {
    bufs.iter().map(|b| u64::from(b.len)).sum()
}

/// Sequential access to a list of buffers.
pub struct Cursor<'a> {
    mem: &'a GuestMemoryMmap,
    bufs: &'a [Buffer],
    idx: usize,
    off: u32,
    done: u64,
}

/// Reading or writing past the end of a chain's buffers.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the descriptor chain's buffers are too short")]
pub struct ShortChain;

impl<'a> Cursor<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, bufs: &'a [Buffer]) -> Self {
        Self {
            mem,
            bufs,
            idx: 0,
            off: 0,
            done: 0,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> u64 {
        total_len(&self.bufs[self.idx.min(self.bufs.len())..]) - u64::from(self.off)
    }

    /// Bytes consumed so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn step<F>(&mut self, mut n: usize, mut f: F) -> Result<(), ShortChain>
    where
        F: FnMut(GuestAddress, usize, usize) -> Result<(), ShortChain>,
    {
        let mut pos = 0;
        while n > 0 {
            let buf = self.bufs.get(self.idx).ok_or(ShortChain)?;
            let avail = (buf.len - self.off) as usize;
            if avail == 0 {
                self.idx += 1;
                self.off = 0;
                continue;
            }
            let take = avail.min(n);
            // The buffer was checked to lie inside guest memory.
            f(buf.addr.unchecked_add_offset(self.off), pos, take)?;
            pos += take;
            n -= take;
            self.off += take as u32;
            self.done += take as u64;
        }
        Ok(())
    }

    /// Fill `out` from the buffers (driver → device).
    pub fn read(&mut self, out: &mut [u8]) -> Result<(), ShortChain> {
        let mem = self.mem;
        self.step(out.len(), |addr, pos, n| {
            mem.read_slice(&mut out[pos..pos + n], addr)
                .map_err(|_| ShortChain)
        })
    }

    /// Copy `data` into the buffers (device → driver).
    pub fn write(&mut self, data: &[u8]) -> Result<(), ShortChain> {
        let mem = self.mem;
        self.step(data.len(), |addr, pos, n| {
            mem.write_slice(&data[pos..pos + n], addr)
                .map_err(|_| ShortChain)
        })
    }

    /// Skip `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), ShortChain> {
        self.step(n, |_, _, _| Ok(()))
    }
}

trait UncheckedAdd {
    fn unchecked_add_offset(self, off: u32) -> GuestAddress;
}

impl UncheckedAdd for GuestAddress {
    fn unchecked_add_offset(self, off: u32) -> GuestAddress {
        GuestAddress(self.0.wrapping_add(u64::from(off)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testutil::memory;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueOwnedT};

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    fn one_chain(mem: &GuestMemoryMmap, descs: &[Descriptor]) -> Result<Chain, ChainError> {
        let vq = MockSplitQueue::new(mem, 16);
        let raw: Vec<RawDescriptor> = descs.iter().map(|d| RawDescriptor::from(*d)).collect();
        parse(vq.build_desc_chain(&raw).unwrap(), mem)
    }

    #[test]
    fn splits_readable_and_writable() {
        let mem = memory();
        let c = one_chain(
            &mem,
            &[
                Descriptor::new(0x8000, 16, NEXT, 1),
                Descriptor::new(0x9000, 512, NEXT | WRITE, 2),
                Descriptor::new(0xa000, 1, WRITE, 0),
            ],
        )
        .unwrap();
        assert_eq!(c.readable.len(), 1);
        assert_eq!(c.writable.len(), 2);
        let mut w = Cursor::new(&mem, &c.writable);
        assert_eq!(w.remaining(), 513);
        w.write(&[7u8; 513]).unwrap();
        assert_eq!(w.write(&[1]), Err(ShortChain));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), 7);
    }

    #[test]
    fn refuses_buffers_outside_memory() {
        let mem = memory();
        let e = one_chain(&mem, &[Descriptor::new(0xf_ff00, 0x200, 0, 0)]).unwrap_err();
        assert!(matches!(e, ChainError::OutsideMemory { .. }));
        let e = one_chain(&mem, &[Descriptor::new(u64::MAX - 4, 0x10, 0, 0)]).unwrap_err();
        assert!(matches!(e, ChainError::OutsideMemory { .. }));
    }

    #[test]
    fn refuses_wrong_order() {
        let mem = memory();
        let e = one_chain(
            &mem,
            &[
                Descriptor::new(0x8000, 16, NEXT | WRITE, 1),
                Descriptor::new(0x9000, 16, 0, 0),
            ],
        )
        .unwrap_err();
        assert!(matches!(e, ChainError::WrongOrder { .. }));
    }

    #[test]
    fn refuses_loops() {
        let mem = memory();
        // Build a valid chain, then point its last descriptor back at the head.
        let vq = MockSplitQueue::new(&mem, 16);
        let descs = [
            RawDescriptor::from(Descriptor::new(0x8000, 16, NEXT, 1)),
            RawDescriptor::from(Descriptor::new(0x9000, 16, 0, 0)),
        ];
        vq.build_desc_chain(&descs).unwrap();
        vq.desc_table()
            .store(1, RawDescriptor::from(Descriptor::new(0x9000, 16, NEXT, 0)))
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = q.iter(&mem).unwrap().next().unwrap();
        assert!(matches!(
            parse(chain, &mem),
            Err(ChainError::Unterminated { .. })
        ));
    }
}
