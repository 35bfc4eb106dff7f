//! The SiFive CLINT: per-hart software interrupts (msip), timer compare
//! registers (mtimecmp) and the shared timer (mtime), as QEMU's virt has it.
//!
//! Layout: msip at `4 * hart`, mtimecmp at `0x4000 + 8 * hart`, mtime at
//! `0xbff8`. Registers take 32- and 64-bit accesses (a 64-bit register in
//! two 32-bit halves too); other widths read zero and are ignored on write.

use std::sync::Arc;

use vessel_machine::BusDevice;

use super::wires::{Harts, TimeBase};

const MSIP: u64 = 0x0;
const MTIMECMP: u64 = 0x4000;
const MTIME: u64 = 0xbff8;

pub struct Clint {
    harts: Harts,
    clock: Arc<dyn TimeBase>,
}

impl Clint {
    pub fn new(harts: Harts, clock: Arc<dyn TimeBase>) -> Self {
        Self { harts, clock }
    }

    /// The 64-bit register holding `offset` and the byte offset inside it.
    fn read64(&self, reg: u64) -> Option<u64> {
        if reg >= MTIMECMP && reg < MTIMECMP + 8 * self.harts.len() as u64 {
            let hart = ((reg - MTIMECMP) / 8) as usize;
            return Some(self.harts[hart].mtimecmp());
        }
        if reg == MTIME {
            return Some(self.clock.now());
        }
        None
    }
}

fn le(data: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..data.len()].copy_from_slice(data);
    u64::from_le_bytes(bytes)
}

impl BusDevice for Clint {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len();
        if len != 4 && len != 8 {
            return;
        }
        if offset < MSIP + 4 * self.harts.len() as u64 {
            if len == 4 && offset.is_multiple_of(4) {
                let v = self.harts[(offset / 4) as usize].msip() as u32;
                data.copy_from_slice(&v.to_le_bytes());
            }
            return;
        }
        let reg = offset & !7;
        let shift = (offset & 7) * 8;
        if !offset.is_multiple_of(len as u64) {
            return;
        }
        if let Some(v) = self.read64(reg) {
            let v = v >> shift;
            data.copy_from_slice(&v.to_le_bytes()[..len]);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let len = data.len();
        if (len != 4 && len != 8) || !offset.is_multiple_of(len as u64) {
            return;
        }
        let value = le(data);
        if offset < MSIP + 4 * self.harts.len() as u64 {
            if len == 4 {
                self.harts[(offset / 4) as usize].set_msip(value & 1 != 0);
            }
            return;
        }
        let reg = offset & !7;
        if reg >= MTIMECMP && reg < MTIMECMP + 8 * self.harts.len() as u64 {
            let hart = &self.harts[((reg - MTIMECMP) / 8) as usize];
            let new = if len == 8 {
                value
            } else if offset & 4 == 0 {
                (hart.mtimecmp() & !0xffff_ffff) | value
            } else {
                (hart.mtimecmp() & 0xffff_ffff) | (value << 32)
            };
            hart.set_mtimecmp(new);
        }
        // mtime is read-only here: every hart's `time` CSR shares the host
        // clock, so the guest cannot move it (QEMU allows it; OpenSBI and
        // Linux never do on this board).
    }
}

#[cfg(test)]
mod tests {
    use super::super::wires::HartLines;
    use super::super::wires::testing::{ManualClock, harts};
    use super::*;
    use std::sync::atomic::Ordering;

    fn read(c: &mut Clint, offset: u64, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        c.read(offset, &mut buf[..len]);
        le(&buf[..len])
    }

    #[test]
    fn msip_per_hart() {
        let (lines, dyns) = harts(2);
        let mut c = Clint::new(dyns, Arc::new(ManualClock::default()));
        c.write(4, &1u32.to_le_bytes());
        assert!(!lines[0].msip());
        assert!(lines[1].msip());
        assert_eq!(read(&mut c, 4, 4), 1);
        assert_eq!(read(&mut c, 0, 4), 0);
        // Only bit 0 is writable.
        c.write(4, &2u32.to_le_bytes());
        assert!(!lines[1].msip());
    }

    #[test]
    fn mtimecmp_in_64_and_32_bit_halves() {
        let (lines, dyns) = harts(2);
        let mut c = Clint::new(dyns, Arc::new(ManualClock::default()));
        c.write(0x4008, &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(lines[1].mtimecmp(), 0x1122_3344_5566_7788);
        assert_eq!(lines[0].mtimecmp(), 0);
        c.write(0x400c, &0xaabb_ccddu32.to_le_bytes());
        assert_eq!(lines[1].mtimecmp(), 0xaabb_ccdd_5566_7788);
        c.write(0x4008, &0x0102_0304u32.to_le_bytes());
        assert_eq!(lines[1].mtimecmp(), 0xaabb_ccdd_0102_0304);
        assert_eq!(read(&mut c, 0x4008, 8), 0xaabb_ccdd_0102_0304);
        assert_eq!(read(&mut c, 0x400c, 4), 0xaabb_ccdd);
        assert_eq!(read(&mut c, 0x4008, 4), 0x0102_0304);
    }

    #[test]
    fn mtime_follows_the_clock_and_ignores_writes() {
        let clock = Arc::new(ManualClock::default());
        let (_, dyns) = harts(1);
        let mut c = Clint::new(dyns, clock.clone());
        clock.0.store(0x1_0000_0002, Ordering::SeqCst);
        assert_eq!(read(&mut c, MTIME, 8), 0x1_0000_0002);
        assert_eq!(read(&mut c, MTIME, 4), 2);
        assert_eq!(read(&mut c, MTIME + 4, 4), 1);
        c.write(MTIME, &5u64.to_le_bytes());
        assert_eq!(read(&mut c, MTIME, 8), 0x1_0000_0002);
    }

    #[test]
    fn odd_widths_and_absent_harts_are_harmless() {
        let (lines, dyns) = harts(1);
        let mut c = Clint::new(dyns, Arc::new(ManualClock::default()));
        c.write(0, &[1]);
        assert!(!lines[0].msip());
        c.write(4, &1u32.to_le_bytes()); // hart 1 does not exist
        c.write(0x4008, &7u64.to_le_bytes());
        assert_eq!(read(&mut c, 0x4008, 8), 0);
        assert_eq!(read(&mut c, 0x4001, 4), 0);
        assert_eq!(read(&mut c, 0, 2), 0);
    }
}
