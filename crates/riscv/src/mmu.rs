//! Address translation (Sv39/Sv48 page walks) and the software TLB, plus the
//! load/store/fetch paths that use them.
//!
//! A/D bits follow the Svade rule: an access that would need A set (or D for
//! a store) raises a page fault; the walker never writes page tables.
//!
//! The TLB is direct-mapped, one set per (effective privilege, access type,
//! and for data mstatus.SUM), so privilege and SUM changes need no flush.
//! Each entry remembers the host address of the RAM page, so a hit is a
//! compare and a host load. A flush bumps an epoch (O(1)): satp writes,
//! `sfence.vma`, and mstatus.MXR changes.

use crate::Mmio;
use crate::csr::{SATP_MODE_SV39, SATP_MODE_SV48, ms};
use crate::hart::Hart;
use crate::ram::{read_host, write_host};
use crate::trap::{Trap, cause};

/// Entries per (privilege, access) set: 256 missed often under a guest's
/// network stack (page walks were a tenth of the time), 1024 do not.
const TLB_BITS: usize = 10;
const TLB_SIZE: usize = 1 << TLB_BITS;
/// Sets: fetches per privilege (3), then loads and stores per privilege
/// and state of mstatus.SUM (3 * 2 * 2). SUM has sets of its own because
/// Linux turns it on and off around every access to user memory: a flush
/// each time would empty the TLB (and the JIT's jump cache) every few
/// hundred instructions.
const TLB_SETS: usize = 3 + 3 * 2 * 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Fetch = 0,
    Load = 1,
    Store = 2,
}

impl Access {
    fn page_fault(self) -> u64 {
        match self {
            Access::Fetch => cause::FETCH_PAGE,
            Access::Load => cause::LOAD_PAGE,
            Access::Store => cause::STORE_PAGE,
        }
    }
    fn access_fault(self) -> u64 {
        match self {
            Access::Fetch => cause::FETCH_ACCESS,
            Access::Load => cause::LOAD_ACCESS,
            Access::Store => cause::STORE_ACCESS,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct TlbEntry {
    vpn: u64,
    epoch: u64,
    /// Physical address of the 4 KiB page.
    ppage: u64,
    /// Host address of the page if it is RAM, else 0.
    host: usize,
}

const EMPTY: TlbEntry = TlbEntry {
    vpn: u64::MAX,
    epoch: 0,
    ppage: 0,
    host: 0,
};

// Compiled code indexes entries by shifting (see `Tlb::layout`).
const _: () = assert!(std::mem::size_of::<TlbEntry>() == 32);

/// Where compiled code (`jit.rs`) finds the TLB: byte offsets inside [`Tlb`]
/// and inside one entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlbLayout {
    pub epoch: usize,
    pub load_base: usize,
    pub store_base: usize,
    /// log2 of an entry's size.
    pub entry_shift: u8,
    /// Entries per set, less one (the index mask).
    pub set_mask: u32,
    pub vpn: usize,
    pub entry_epoch: usize,
    pub host: usize,
}

/// The software TLB of one hart.
#[derive(Debug)]
pub(crate) struct Tlb {
    entries: Box<[TlbEntry]>,
    epoch: u64,
    /// First entry of the set for fetches / loads / stores in the current mode
    /// (kept up to date by `Hart::sync_mode`).
    fetch_base: usize,
    load_base: usize,
    store_base: usize,
}

impl Tlb {
    pub fn new() -> Tlb {
        Tlb {
            entries: vec![EMPTY; TLB_SETS * TLB_SIZE].into_boxed_slice(),
            epoch: 1,
            fetch_base: 0,
            load_base: 0,
            store_base: 0,
        }
    }

    pub(crate) fn layout() -> TlbLayout {
        TlbLayout {
            epoch: std::mem::offset_of!(Tlb, epoch),
            load_base: std::mem::offset_of!(Tlb, load_base),
            store_base: std::mem::offset_of!(Tlb, store_base),
            entry_shift: std::mem::size_of::<TlbEntry>().trailing_zeros() as u8,
            set_mask: (TLB_SIZE - 1) as u32,
            vpn: std::mem::offset_of!(TlbEntry, vpn),
            entry_epoch: std::mem::offset_of!(TlbEntry, epoch),
            host: std::mem::offset_of!(TlbEntry, host),
        }
    }

    /// Address of the entry array (boxed: it never moves).
    pub(crate) fn entries_addr(&self) -> usize {
        self.entries.as_ptr() as usize
    }
}

/// Errors of the page-table walker, for tools that translate addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MmuError {
    #[error("page fault translating {0:#x}")]
    PageFault(u64),
    #[error("page table entry for {0:#x} is outside RAM")]
    AccessFault(u64),
}

#[inline(always)]
fn mode_index(prv: u8) -> usize {
    match prv {
        0 => 0,
        1 => 1,
        _ => 2,
    }
}

impl Hart {
    pub(crate) fn tlb_flush(&mut self) {
        self.tlb.epoch += 1;
        self.refresh_jump_tag();
    }

    /// Recompute the tag that valid jump-cache entries (`jit.rs`) carry: it
    /// changes with the fetch translation (TLB epoch), the code (link
    /// epoch) and the privilege.
    pub(crate) fn refresh_jump_tag(&mut self) {
        self.jump_tag =
            (self.tlb.epoch.wrapping_add(self.link_epoch) << 2) | u64::from(self.prv & 3);
    }

    /// Recompute the TLB sets for fetches and data accesses after a change of
    /// privilege or of mstatus.MPRV/MPP.
    pub(crate) fn sync_mode(&mut self) {
        self.tlb.fetch_base = mode_index(self.prv) << TLB_BITS;
        let sum = usize::from(self.csr.mstatus & ms::SUM != 0);
        let d = 3 + (mode_index(self.data_priv()) * 2 + sum) * 2;
        self.tlb.load_base = d << TLB_BITS;
        self.tlb.store_base = (d + 1) << TLB_BITS;
        self.refresh_jump_tag();
    }

    /// Privilege that loads and stores use (MPRV).
    #[inline(always)]
    fn data_priv(&self) -> u8 {
        if self.prv == 3 && self.csr.mstatus & ms::MPRV != 0 {
            ((self.csr.mstatus & ms::MPP) >> ms::MPP_SHIFT) as u8
        } else {
            self.prv
        }
    }

    #[inline(always)]
    fn tlb_index(&self, access: Access, vaddr: u64) -> usize {
        let base = match access {
            Access::Fetch => self.tlb.fetch_base,
            Access::Load => self.tlb.load_base,
            Access::Store => self.tlb.store_base,
        };
        base | ((vaddr >> 12) as usize & (TLB_SIZE - 1))
    }

    /// TLB lookup: the entry's (ppage, host) if it maps `vaddr`'s page.
    #[inline(always)]
    fn tlb_lookup(&self, access: Access, vaddr: u64) -> Option<(u64, usize)> {
        let e = &self.tlb.entries[self.tlb_index(access, vaddr)];
        if e.vpn == vaddr >> 12 && e.epoch == self.tlb.epoch {
            Some((e.ppage, e.host))
        } else {
            None
        }
    }

    /// Translate `vaddr` for `access` and fill the TLB.
    fn translate_fill(&mut self, vaddr: u64, access: Access) -> Result<(u64, usize), Trap> {
        let paddr = self.translate(vaddr, access)?;
        let ppage = paddr & !0xfff;
        let host = self
            .ram
            .host_ptr(ppage, 0x1000)
            .map(|p| p as usize)
            .unwrap_or(0);
        let idx = self.tlb_index(access, vaddr);
        self.tlb.entries[idx] = TlbEntry {
            vpn: vaddr >> 12,
            epoch: self.tlb.epoch,
            ppage,
            host,
        };
        Ok((ppage, host))
    }

    /// Virtual to physical for `access` at the current privilege.
    pub(crate) fn translate(&self, vaddr: u64, access: Access) -> Result<u64, Trap> {
        let prv = if access == Access::Fetch {
            self.prv
        } else {
            self.data_priv()
        };
        let levels = match self.csr.satp >> 60 {
            SATP_MODE_SV39 => 3,
            SATP_MODE_SV48 => 4,
            _ => return Ok(vaddr),
        };
        if prv == 3 {
            return Ok(vaddr);
        }
        self.walk(vaddr, access, prv, levels)
    }

    fn walk(&self, vaddr: u64, access: Access, prv: u8, levels: u32) -> Result<u64, Trap> {
        let pf = Trap::new(access.page_fault(), vaddr);
        let va_bits = 12 + 9 * levels;
        let shift = 64 - va_bits;
        if (((vaddr << shift) as i64) >> shift) as u64 != vaddr {
            return Err(pf);
        }
        let mstatus = self.csr.mstatus;
        let mut table = (self.csr.satp & ((1 << 44) - 1)) << 12;
        for level in (0..levels).rev() {
            let idx = (vaddr >> (12 + 9 * level)) & 0x1ff;
            let pte_addr = table + idx * 8;
            let Some(pte) = self.ram.read(pte_addr, 8) else {
                return Err(Trap::new(access.access_fault(), vaddr));
            };
            let (v, r, w, x, u) = (
                pte & 1 != 0,
                pte & 2 != 0,
                pte & 4 != 0,
                pte & 8 != 0,
                pte & 16 != 0,
            );
            let (a, d) = (pte & 64 != 0, pte & 128 != 0);
            // Bits 63:54 (N, PBMT, reserved) are not implemented: must be zero.
            if !v || (!r && w) || pte >> 54 != 0 {
                return Err(pf);
            }
            let ppn = (pte >> 10) & ((1 << 44) - 1);
            if !r && !x {
                table = ppn << 12;
                continue;
            }
            let allowed = match access {
                Access::Fetch => x,
                Access::Load => r || (x && mstatus & ms::MXR != 0),
                Access::Store => w,
            };
            if !allowed {
                return Err(pf);
            }
            match prv {
                0 if !u => return Err(pf),
                1 if u && (access == Access::Fetch || mstatus & ms::SUM == 0) => {
                    return Err(pf);
                }
                _ => {}
            }
            if level > 0 && ppn & ((1 << (9 * level)) - 1) != 0 {
                return Err(pf); // misaligned superpage
            }
            if !a || (access == Access::Store && !d) {
                return Err(pf);
            }
            let mask = (1u64 << (12 + 9 * level)) - 1;
            return Ok(((ppn << 12) & !mask) | (vaddr & mask));
        }
        Err(pf)
    }

    /// Load `size` bytes at virtual `vaddr`, zero-extended.
    #[inline(always)]
    pub(crate) fn load(&mut self, mmio: &mut dyn Mmio, vaddr: u64, size: u8) -> Result<u64, Trap> {
        if let Some((_, host)) = self.tlb_lookup(Access::Load, vaddr) {
            let off = vaddr & 0xfff;
            if host != 0 && off + size as u64 <= 0x1000 {
                // SAFETY: `host` is the host address of a whole 4 KiB RAM page
                // (checked when the entry was filled) and `off + size` stays in it.
                return Ok(unsafe { read_host((host + off as usize) as *const u8, size) });
            }
        }
        self.load_slow(mmio, vaddr, size)
    }

    #[inline(never)]
    fn load_slow(&mut self, mmio: &mut dyn Mmio, vaddr: u64, size: u8) -> Result<u64, Trap> {
        let off = vaddr & 0xfff;
        if off + size as u64 > 0x1000 {
            // Crosses a page: byte by byte, each translated.
            let mut v = 0u64;
            for i in 0..size as u64 {
                v |= self.load(mmio, vaddr.wrapping_add(i), 1)? << (8 * i);
            }
            return Ok(v);
        }
        let (ppage, host) = self.translate_fill(vaddr, Access::Load)?;
        if host != 0 {
            // SAFETY: as in `load`: a whole RAM page at `host`, access inside it.
            return Ok(unsafe { read_host((host + off as usize) as *const u8, size) });
        }
        mmio.load(ppage | off, size)
            .map_err(|_| Trap::new(cause::LOAD_ACCESS, vaddr))
    }

    /// Store the low `size` bytes of `v` at virtual `vaddr`.
    #[inline(always)]
    pub(crate) fn store(
        &mut self,
        mmio: &mut dyn Mmio,
        vaddr: u64,
        size: u8,
        v: u64,
    ) -> Result<(), Trap> {
        if let Some((ppage, host)) = self.tlb_lookup(Access::Store, vaddr) {
            let off = vaddr & 0xfff;
            if host != 0 && off + size as u64 <= 0x1000 {
                self.ram.store_hits_reservations(ppage | off, size);
                // SAFETY: a whole RAM page at `host` (checked at fill); access inside it.
                unsafe { write_host((host + off as usize) as *mut u8, size, v) };
                return Ok(());
            }
        }
        self.store_slow(mmio, vaddr, size, v)
    }

    #[inline(never)]
    fn store_slow(
        &mut self,
        mmio: &mut dyn Mmio,
        vaddr: u64,
        size: u8,
        v: u64,
    ) -> Result<(), Trap> {
        let off = vaddr & 0xfff;
        if off + size as u64 > 0x1000 {
            // Crosses a page: translate both pages first so a fault stores nothing.
            let second = (vaddr | 0xfff).wrapping_add(1);
            self.translate_fill(vaddr, Access::Store)?;
            self.translate_fill(second, Access::Store)?;
            for i in 0..size as u64 {
                self.store(mmio, vaddr.wrapping_add(i), 1, v >> (8 * i))?;
            }
            return Ok(());
        }
        let (ppage, host) = self.translate_fill(vaddr, Access::Store)?;
        self.ram.store_hits_reservations(ppage | off, size);
        if host != 0 {
            // SAFETY: a whole RAM page at `host` (checked at fill); access inside it.
            unsafe { write_host((host + off as usize) as *mut u8, size, v) };
            return Ok(());
        }
        mmio.store(ppage | off, size, v)
            .map_err(|_| Trap::new(cause::STORE_ACCESS, vaddr))
    }

    /// Physical address of `vaddr` for `access` (LR/SC and AMOs), through the TLB.
    pub(crate) fn data_paddr(&mut self, vaddr: u64, access: Access) -> Result<u64, Trap> {
        let (ppage, _) = match self.tlb_lookup(access, vaddr) {
            Some(e) => e,
            None => self.translate_fill(vaddr, access)?,
        };
        Ok(ppage | (vaddr & 0xfff))
    }

    /// Physical address and host address of the instruction at pc, for the
    /// block cache (the page must be RAM: fetching from devices is an access fault).
    #[inline(always)]
    pub(crate) fn fetch_host(&mut self) -> Result<(u64, usize), Trap> {
        let pc = self.pc;
        let off = pc & 0xfff;
        let (ppage, host) = match self.tlb_lookup(Access::Fetch, pc) {
            Some(e) => e,
            None => self.translate_fill(pc, Access::Fetch)?,
        };
        if host == 0 {
            return Err(Trap::new(cause::FETCH_ACCESS, pc));
        }
        Ok((ppage | off, host + off as usize))
    }

    /// Fetch the raw instruction at pc: (bits, physical address or u64::MAX
    /// when it straddles two pages and must not be cached).
    #[inline(always)]
    pub(crate) fn fetch_raw(&mut self) -> Result<(u32, u64), Trap> {
        let pc = self.pc;
        let off = pc & 0xfff;
        if let Some((ppage, host)) = self.tlb_lookup(Access::Fetch, pc)
            && host != 0
            && off <= 0xffc
        {
            // SAFETY: a whole RAM page at `host`; 4 bytes at `off <= 0xffc` fit.
            let raw = unsafe { read_host((host + off as usize) as *const u8, 4) } as u32;
            return Ok((raw, ppage | off));
        }
        self.fetch_slow()
    }

    #[inline(never)]
    fn fetch_slow(&mut self) -> Result<(u32, u64), Trap> {
        let pc = self.pc;
        let off = pc & 0xfff;
        let (ppage, host) = self.translate_fill(pc, Access::Fetch)?;
        if host == 0 {
            return Err(Trap::new(cause::FETCH_ACCESS, pc));
        }
        // SAFETY: a whole RAM page at `host`; 2 bytes at an even `off` fit.
        let lo = unsafe { read_host((host + off as usize) as *const u8, 2) } as u32;
        if lo & 3 != 3 {
            return Ok((lo, ppage | off));
        }
        if off <= 0xffc {
            // SAFETY: as above, 4 bytes fit.
            let raw = unsafe { read_host((host + off as usize) as *const u8, 4) } as u32;
            return Ok((raw, ppage | off));
        }
        // A 32-bit instruction straddling two pages.
        let next = pc.wrapping_add(2);
        let (_, host2) = self.translate_fill(next, Access::Fetch)?;
        if host2 == 0 {
            return Err(Trap::new(cause::FETCH_ACCESS, next));
        }
        // SAFETY: a whole RAM page at `host2`; 2 bytes at offset 0.
        let hi = unsafe { read_host(host2 as *const u8, 2) } as u32;
        Ok((lo | (hi << 16), u64::MAX))
    }

    /// Translate a virtual address with the current privilege and satp, for
    /// debuggers and tools (no TLB fill, no side effects).
    pub fn translate_data(&self, vaddr: u64) -> Result<u64, MmuError> {
        self.translate(vaddr, Access::Load).map_err(|t| {
            if t.cause == cause::LOAD_PAGE {
                MmuError::PageFault(vaddr)
            } else {
                MmuError::AccessFault(vaddr)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, HartConfig, HartIrq, MmuMode, Ram};
    use vessel_machine::create_guest_memory;

    const BASE: u64 = 0x8000_0000;
    const V: u64 = 1;
    const R: u64 = 2;
    const W: u64 = 4;
    const X: u64 = 8;
    const U: u64 = 16;
    const A: u64 = 64;
    const D: u64 = 128;

    fn hart(mode: MmuMode) -> (Hart, Ram) {
        let mem = create_guest_memory(&[(BASE, 1 << 22)]).unwrap();
        let ram = Ram::new(&mem).unwrap();
        let cfg = HartConfig {
            mmu: mode,
            ..HartConfig::default()
        };
        let h = Hart::new(cfg, ram.clone(), Clock::new(10_000_000), HartIrq::new());
        (h, ram)
    }

    fn pte(pa: u64, flags: u64) -> u64 {
        ((pa >> 12) << 10) | flags
    }

    /// Sv39: root at BASE+0x1000, a level-1 table at +0x2000, a level-0 table
    /// at +0x3000 mapping va 0x4000_0000.. to BASE+0x10000.., and a 2 MiB
    /// megapage at va 0x4020_0000 -> BASE+0x20_0000.
    fn sv39_tables(ram: &Ram) {
        ram.write(BASE + 0x1000 + 8, 8, pte(BASE + 0x2000, V))
            .unwrap(); // vpn2 = 1
        ram.write(BASE + 0x2000, 8, pte(BASE + 0x3000, V)).unwrap(); // vpn1 = 0
        ram.write(BASE + 0x3000, 8, pte(BASE + 0x10000, V | R | W | A | D))
            .unwrap(); // page 0: RW, A, D
        ram.write(BASE + 0x3008, 8, pte(BASE + 0x11000, V | R | A))
            .unwrap(); // page 1: R only
        ram.write(BASE + 0x3010, 8, pte(BASE + 0x12000, V | R | W | A))
            .unwrap(); // page 2: D clear
        ram.write(BASE + 0x3018, 8, pte(BASE + 0x13000, V | R | W | U | A | D))
            .unwrap(); // page 3: user
        ram.write(BASE + 0x3020, 8, pte(BASE + 0x14000, V | X | A))
            .unwrap(); // page 4: X only
        ram.write(BASE + 0x2008, 8, pte(BASE + 0x20_0000, V | R | W | A | D))
            .unwrap(); // vpn1 = 1: megapage
    }

    #[test]
    fn sv39_walk_permissions_and_ad() {
        let (mut h, ram) = hart(MmuMode::Sv39);
        sv39_tables(&ram);
        h.prv = 1;
        h.sync_mode();
        h.csr.satp = (8 << 60) | ((BASE + 0x1000) >> 12);
        let va = 0x4000_0000u64;
        assert_eq!(h.translate(va + 0x123, Access::Load), Ok(BASE + 0x10123));
        assert_eq!(h.translate(va + 0x123, Access::Store), Ok(BASE + 0x10123));
        // Read-only page: store faults with the address in tval.
        assert_eq!(
            h.translate(va + 0x1008, Access::Store),
            Err(Trap::new(cause::STORE_PAGE, va + 0x1008))
        );
        // D clear: loads work, stores fault (Svade).
        assert!(h.translate(va + 0x2000, Access::Load).is_ok());
        assert_eq!(
            h.translate(va + 0x2000, Access::Store).unwrap_err().cause,
            cause::STORE_PAGE
        );
        // User page from S without SUM faults, with SUM works; never executable from S.
        assert!(h.translate(va + 0x3000, Access::Load).is_err());
        h.csr.mstatus |= ms::SUM;
        assert_eq!(h.translate(va + 0x3000, Access::Load), Ok(BASE + 0x13000));
        assert!(h.translate(va + 0x3000, Access::Fetch).is_err());
        // Execute-only page: load faults unless MXR.
        assert!(h.translate(va + 0x4000, Access::Load).is_err());
        h.csr.mstatus |= ms::MXR;
        assert_eq!(h.translate(va + 0x4000, Access::Load), Ok(BASE + 0x14000));
        assert_eq!(h.translate(va + 0x4000, Access::Fetch), Ok(BASE + 0x14000));
        // Through the TLB: SUM picks other data sets instead of flushing,
        // and what one state cached never serves the other.
        let m = h.csr.mstatus & !(ms::SUM | ms::MXR);
        h.set_mstatus(m | ms::SUM);
        assert_eq!(h.data_paddr(va + 0x3000, Access::Load), Ok(BASE + 0x13000));
        let epoch = h.tlb.epoch;
        h.set_mstatus(m);
        assert_eq!(h.tlb.epoch, epoch, "no flush");
        assert!(h.data_paddr(va + 0x3000, Access::Load).is_err());
        assert!(h.data_paddr(va + 0x3000, Access::Store).is_err());
        h.set_mstatus(m | ms::SUM);
        assert_eq!(h.data_paddr(va + 0x3000, Access::Store), Ok(BASE + 0x13000));
        assert_eq!(h.data_paddr(va + 0x3000, Access::Load), Ok(BASE + 0x13000));
        h.set_mstatus(m | ms::SUM | ms::MXR);
        assert_ne!(h.tlb.epoch, epoch, "MXR flushes");
        // Megapage keeps the low 21 bits of the address.
        assert_eq!(
            h.translate(0x4020_0000 + 0x12_3456, Access::Load),
            Ok(BASE + 0x20_0000 + 0x12_3456)
        );
        // Unmapped and non-canonical addresses fault.
        assert_eq!(
            h.translate(0x8000_0000, Access::Fetch).unwrap_err().cause,
            cause::FETCH_PAGE
        );
        assert!(h.translate(1 << 40, Access::Load).is_err());
        // U-mode can reach the user page only.
        h.prv = 0;
        h.sync_mode();
        assert!(h.translate(va + 0x3000, Access::Store).is_ok());
        assert!(h.translate(va, Access::Load).is_err());
    }

    #[test]
    fn sv48_walk_and_tlb_flush() {
        let (mut h, ram) = hart(MmuMode::Sv48);
        // level 3 root at +0x1000 -> level 2 at +0x5000, then the Sv39 layout.
        sv39_tables(&ram);
        ram.write(BASE + 0x5000 + 8, 8, pte(BASE + 0x2000, V))
            .unwrap();
        ram.write(BASE + 0x1000 + 8, 8, pte(BASE + 0x5000, V))
            .unwrap(); // va bit 39 set
        h.prv = 1;
        h.sync_mode();
        h.csr.satp = (9 << 60) | ((BASE + 0x1000) >> 12);
        let va = (1u64 << 39) | 0x4000_0000;
        assert_eq!(h.translate(va + 8, Access::Load), Ok(BASE + 0x10008));
        let mut mmio = crate::NoMmio;
        ram.write(BASE + 0x10008, 8, 0xfeed).unwrap();
        assert_eq!(h.load(&mut mmio, va + 8, 8), Ok(0xfeed));
        // Remap the page; the TLB still answers until flushed.
        ram.write(BASE + 0x3000, 8, pte(BASE + 0x11000, V | R | A))
            .unwrap();
        ram.write(BASE + 0x11008, 8, 0xbeef).unwrap();
        assert_eq!(h.load(&mut mmio, va + 8, 8), Ok(0xfeed));
        h.tlb_flush();
        assert_eq!(h.load(&mut mmio, va + 8, 8), Ok(0xbeef));
        // Sv48 bit 47 sign extension: a non-canonical address faults.
        assert!(h.translate(1 << 47, Access::Load).is_err());
    }

    #[test]
    fn satp_is_warl() {
        let (mut h, _ram) = hart(MmuMode::Sv39);
        h.csr_write(0x180, (9 << 60) | 5).unwrap();
        assert_eq!(h.csr.satp, 0, "Sv48 refused on an Sv39 hart");
        h.csr_write(0x180, (8 << 60) | (0xffff << 44) | 5).unwrap();
        assert_eq!(h.csr.satp, (8 << 60) | 5, "ASID reads as zero");
        h.csr_write(0x180, (10 << 60) | 7).unwrap();
        assert_eq!(h.csr.satp, (8 << 60) | 5, "Sv57 leaves satp unchanged");
    }
}
