//! Guest RAM as the CPU sees it: one contiguous range reached through its host pointer.

use crate::CpuError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

/// Guest RAM: one contiguous range, shared by all harts.
///
/// Accesses go through the region's host pointer after a bounds check. The
/// mapping stays alive as long as any `Ram` clone does (it holds the memory).
#[derive(Clone)]
pub struct Ram {
    mem: GuestMemoryMmap,
    host: *mut u8,
    base: u64,
    size: u64,
    resv: Arc<Reservations>,
}

impl std::fmt::Debug for Ram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ram")
            .field("base", &format_args!("{:#x}", self.base))
            .field("size", &format_args!("{:#x}", self.size))
            .finish()
    }
}

// SAFETY: the host pointer points into an mmap owned by `mem` (kept alive by
// every clone); guest memory is shared memory by design, accessed with plain
// unaligned reads/writes like any emulated RAM.
unsafe impl Send for Ram {}
// SAFETY: as above; `Ram` has no interior state besides the mapping.
unsafe impl Sync for Ram {}

impl Ram {
    /// Use the board's guest memory, which must be exactly one region.
    pub fn new(mem: &GuestMemoryMmap) -> Result<Ram, CpuError> {
        if mem.num_regions() != 1 {
            return Err(CpuError::RamRegions(mem.num_regions()));
        }
        let Some(region) = mem.iter().next() else {
            return Err(CpuError::RamRegions(0));
        };
        let base = region.start_addr().0;
        let size = region.len();
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| CpuError::RamHostAddress {
                base,
                reason: e.to_string(),
            })?;
        Ok(Ram {
            mem: mem.clone(),
            host,
            base,
            size,
            resv: Arc::new(Reservations::new()),
        })
    }

    /// Guest physical address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The guest memory this RAM was built from.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Host pointer for `len` bytes at `paddr`, if they are all inside RAM.
    #[inline(always)]
    pub(crate) fn host_ptr(&self, paddr: u64, len: u64) -> Option<*mut u8> {
        let off = paddr.wrapping_sub(self.base);
        if off < self.size && len <= self.size - off {
            // Stays inside the mapping: checked just above.
            Some(self.host.wrapping_add(off as usize))
        } else {
            None
        }
    }

    /// Read `size` bytes (1, 2, 4, 8) at `paddr`, little-endian, zero-extended.
    #[inline(always)]
    pub fn read(&self, paddr: u64, size: u8) -> Option<u64> {
        let p = self.host_ptr(paddr, size as u64)?;
        // SAFETY: `host_ptr` checked that `size` bytes at `p` are inside the
        // guest RAM mapping, which lives as long as `self`.
        unsafe { Some(read_host(p, size)) }
    }

    /// Write the low `size` bytes of `v` at `paddr`.
    #[inline(always)]
    pub fn write(&self, paddr: u64, size: u8, v: u64) -> Option<()> {
        let p = self.host_ptr(paddr, size as u64)?;
        // SAFETY: `host_ptr` checked that `size` bytes at `p` are inside the mapping.
        unsafe { write_host(p, size, v) };
        Some(())
    }

    /// Copy bytes into RAM (for loaders and tests).
    pub fn write_bytes(&self, paddr: u64, data: &[u8]) -> Option<()> {
        let p = self.host_ptr(paddr, data.len() as u64)?;
        // SAFETY: the whole destination range was bounds-checked by `host_ptr`;
        // `data` is a separate Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Some(())
    }

    /// Copy bytes out of RAM.
    pub fn read_bytes(&self, paddr: u64, out: &mut [u8]) -> Option<()> {
        let p = self.host_ptr(paddr, out.len() as u64)?;
        // SAFETY: the source range was bounds-checked; `out` does not overlap guest RAM.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
        Some(())
    }
}

/// Number of reservation slots; hart ids beyond it share slots (a spurious
/// SC failure at worst, which software retries).
const RESV_SLOTS: usize = 64;
const NO_RESV: u64 = u64::MAX;

/// LR/SC reservations of all harts sharing this RAM. A store by any hart to
/// a reserved 8-byte granule clears the reservation.
#[derive(Debug)]
pub(crate) struct Reservations {
    active: AtomicU32,
    slots: [AtomicU64; RESV_SLOTS],
}

impl Reservations {
    fn new() -> Reservations {
        Reservations {
            active: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(NO_RESV)),
        }
    }
}

impl Ram {
    /// Address of the count of active reservations (compiled stores look
    /// at it; it lives as long as any clone of this `Ram`).
    pub(crate) fn reservations_active_addr(&self) -> usize {
        &self.resv.active as *const AtomicU32 as usize
    }

    /// Address of `hart`'s reservation slot (an `AtomicU64`: the reserved
    /// granule, or `u64::MAX`), for compiled LR/SC; it lives as long as any
    /// clone of this `Ram`.
    pub(crate) fn reservation_slot_addr(&self, hart: u64) -> usize {
        &self.resv.slots[hart as usize % RESV_SLOTS] as *const AtomicU64 as usize
    }

    /// How many reservations are active, and `hart`'s (if any).
    #[cfg(test)]
    pub(crate) fn reservations(&self, hart: u64) -> (u32, Option<u64>) {
        let slot = self.resv.slots[hart as usize % RESV_SLOTS].load(Ordering::Acquire);
        (
            self.resv.active.load(Ordering::Acquire),
            (slot != NO_RESV).then_some(slot),
        )
    }

    /// Host address of RAM's first byte.
    pub(crate) fn host_addr(&self) -> usize {
        self.host as usize
    }

    /// LR: reserve the granule holding `paddr` for `hart`.
    pub(crate) fn reserve(&self, hart: u64, paddr: u64) {
        let slot = &self.resv.slots[hart as usize % RESV_SLOTS];
        if slot.swap(paddr & !7, Ordering::AcqRel) == NO_RESV {
            self.resv.active.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// SC: true if `hart` still holds a reservation on `paddr`; clears it either way.
    pub(crate) fn take_reservation(&self, hart: u64, paddr: u64) -> bool {
        let slot = &self.resv.slots[hart as usize % RESV_SLOTS];
        let old = slot.swap(NO_RESV, Ordering::AcqRel);
        if old != NO_RESV {
            self.resv.active.fetch_sub(1, Ordering::AcqRel);
        }
        old == paddr & !7
    }

    /// Drop `hart`'s reservation (traps, context switches).
    pub(crate) fn clear_reservation(&self, hart: u64) {
        let slot = &self.resv.slots[hart as usize % RESV_SLOTS];
        if slot.swap(NO_RESV, Ordering::AcqRel) != NO_RESV {
            self.resv.active.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A store to `paddr..paddr+size` clears every reservation it overlaps.
    #[inline(always)]
    pub(crate) fn store_hits_reservations(&self, paddr: u64, size: u8) {
        if self.resv.active.load(Ordering::Acquire) == 0 {
            return;
        }
        let first = paddr & !7;
        let last = (paddr + size as u64 - 1) & !7;
        for slot in &self.resv.slots {
            let r = slot.load(Ordering::Acquire);
            if (r == first || r == last)
                && slot
                    .compare_exchange(r, NO_RESV, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.resv.active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Read `size` bytes at `p`, little-endian.
///
/// # Safety
/// `p..p+size` must be readable memory.
#[inline(always)]
pub(crate) unsafe fn read_host(p: *const u8, size: u8) -> u64 {
    // SAFETY: the caller guarantees `size` readable bytes at `p`;
    // unaligned reads are allowed by `read_unaligned`.
    unsafe {
        match size {
            1 => *p as u64,
            2 => u16::from_le(std::ptr::read_unaligned(p as *const u16)) as u64,
            4 => u32::from_le(std::ptr::read_unaligned(p as *const u32)) as u64,
            _ => u64::from_le(std::ptr::read_unaligned(p as *const u64)),
        }
    }
}

/// Write the low `size` bytes of `v` at `p`, little-endian.
///
/// # Safety
/// `p..p+size` must be writable memory.
#[inline(always)]
pub(crate) unsafe fn write_host(p: *mut u8, size: u8, v: u64) {
    // SAFETY: the caller guarantees `size` writable bytes at `p`.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, (v as u16).to_le()),
            4 => std::ptr::write_unaligned(p as *mut u32, (v as u32).to_le()),
            _ => std::ptr::write_unaligned(p as *mut u64, v.to_le()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_machine::create_guest_memory;

    #[test]
    fn bounds_checked_access() {
        let mem = create_guest_memory(&[(0x8000_0000, 0x1000)]).unwrap();
        let ram = Ram::new(&mem).unwrap();
        assert_eq!(ram.base(), 0x8000_0000);
        assert_eq!(ram.size(), 0x1000);
        ram.write(0x8000_0ff8, 8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(ram.read(0x8000_0ffc, 4), Some(0x1122_3344));
        assert_eq!(ram.read(0x8000_0ffd, 4), None);
        assert_eq!(ram.read(0x7fff_ffff, 1), None);
        assert!(ram.write(0x8000_1000, 1, 0).is_none());
    }

    #[test]
    fn refuses_two_regions() {
        let mem = create_guest_memory(&[(0x8000_0000, 0x1000), (0x9000_0000, 0x1000)]).unwrap();
        assert!(matches!(Ram::new(&mem), Err(CpuError::RamRegions(2))));
    }
}
