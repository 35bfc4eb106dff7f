//! Exceptions, interrupts, delegation and the trap-return instructions.

use crate::csr::{irqbit, ms};
use crate::hart::Hart;
use std::fmt;

/// Exception cause codes (mcause without the interrupt bit).
pub(crate) mod cause {
    pub const FETCH_ACCESS: u64 = 1;
    pub const ILLEGAL_INSTRUCTION: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const LOAD_MISALIGNED: u64 = 4;
    pub const LOAD_ACCESS: u64 = 5;
    pub const STORE_MISALIGNED: u64 = 6;
    pub const STORE_ACCESS: u64 = 7;
    pub const ECALL_U: u64 = 8;
    pub const FETCH_PAGE: u64 = 12;
    pub const LOAD_PAGE: u64 = 13;
    pub const STORE_PAGE: u64 = 15;
    pub const INTERRUPT: u64 = 1 << 63;
}

/// A synchronous exception raised by an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trap {
    pub cause: u64,
    pub tval: u64,
}

impl Trap {
    pub fn new(cause: u64, tval: u64) -> Trap {
        Trap { cause, tval }
    }
}

/// Why [`Hart::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget is used up.
    Budget,
    /// The hart executed WFI with no interrupt pending: sleep until
    /// [`Hart::next_timer_deadline`] or a [`crate::HartIrq::kick`], then run again.
    Wfi,
    /// The emulated machine cannot go on.
    Fault(CpuFault),
}

/// A fault the guest cannot recover from (e.g. a trap vector that itself faults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFault {
    pub hart_id: u64,
    pub pc: u64,
    pub cause: u64,
    pub tval: u64,
    pub reason: &'static str,
}

impl fmt::Display for CpuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hart {} stopped at pc {:#x}: {} (cause {} = {}, tval {:#x})",
            self.hart_id,
            self.pc,
            self.reason,
            self.cause & !cause::INTERRUPT,
            cause_name(self.cause),
            self.tval
        )
    }
}

impl std::error::Error for CpuFault {}

/// Human name of an mcause value.
pub fn cause_name(c: u64) -> &'static str {
    if c & cause::INTERRUPT != 0 {
        return match c & !cause::INTERRUPT {
            1 => "supervisor software interrupt",
            3 => "machine software interrupt",
            5 => "supervisor timer interrupt",
            7 => "machine timer interrupt",
            9 => "supervisor external interrupt",
            11 => "machine external interrupt",
            _ => "unknown interrupt",
        };
    }
    match c {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store/AMO address misaligned",
        7 => "store/AMO access fault",
        8 => "environment call from U-mode",
        9 => "environment call from S-mode",
        11 => "environment call from M-mode",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store/AMO page fault",
        _ => "unknown exception",
    }
}

/// Interrupts in priority order: MEI, MSI, MTI, SEI, SSI, STI.
const PRIORITY: [u64; 6] = [11, 3, 7, 9, 1, 5];

impl Hart {
    /// The interrupt to take now, if any (cause number without the interrupt bit).
    pub(crate) fn pending_interrupt(&self) -> Option<u64> {
        let pending = self.read_mip() & self.csr.mie;
        if pending == 0 {
            return None;
        }
        let mstatus = self.csr.mstatus;
        let m_enabled = self.prv < 3 || mstatus & ms::MIE != 0;
        let s_enabled = self.prv < 1 || (self.prv == 1 && mstatus & ms::SIE != 0);
        let m_pending = if m_enabled {
            pending & !self.csr.mideleg
        } else {
            0
        };
        let s_pending = if s_enabled {
            pending & self.csr.mideleg
        } else {
            0
        };
        // M-level interrupts first, then S-level, each in priority order.
        for set in [m_pending, s_pending] {
            if set != 0 {
                for &c in &PRIORITY {
                    if set & (1 << c) != 0 {
                        return Some(c);
                    }
                }
            }
        }
        None
    }

    /// Whether any enabled interrupt is pending, regardless of global enables (WFI wake-up).
    pub(crate) fn wfi_wakeup(&self) -> bool {
        self.read_mip() & self.csr.mie & irqbit::ALL != 0
    }

    /// Enter the trap handler for `cause` (with the interrupt bit for interrupts).
    pub(crate) fn take_trap(&mut self, cause: u64, tval: u64) {
        let is_int = cause & cause::INTERRUPT != 0;
        let code = cause & !cause::INTERRUPT;
        let deleg = if is_int {
            self.csr.mideleg
        } else {
            self.csr.medeleg
        };
        let epc = self.pc;
        self.reservation_clear();
        if self.prv <= 1 && code < 64 && deleg & (1 << code) != 0 {
            self.csr.scause = cause;
            self.csr.sepc = epc;
            self.csr.stval = tval;
            let mut s = self.csr.mstatus;
            s = if s & ms::SIE != 0 {
                s | ms::SPIE
            } else {
                s & !ms::SPIE
            };
            s = if self.prv == 1 {
                s | ms::SPP
            } else {
                s & !ms::SPP
            };
            s &= !ms::SIE;
            self.csr.mstatus = s;
            self.prv = 1;
            self.pc = vector(self.csr.stvec, is_int, code);
        } else {
            self.csr.mcause = cause;
            self.csr.mepc = epc;
            self.csr.mtval = tval;
            let mut s = self.csr.mstatus;
            s = if s & ms::MIE != 0 {
                s | ms::MPIE
            } else {
                s & !ms::MPIE
            };
            s = (s & !ms::MPP) | ((self.prv as u64) << ms::MPP_SHIFT);
            s &= !ms::MIE;
            self.csr.mstatus = s;
            self.prv = 3;
            self.pc = vector(self.csr.mtvec, is_int, code);
        }
        self.sync_mode();
    }

    /// `mret`: return from an M-mode trap.
    pub(crate) fn do_mret(&mut self) {
        let s = self.csr.mstatus;
        let mpp = ((s & ms::MPP) >> ms::MPP_SHIFT) as u8;
        let mut n = if s & ms::MPIE != 0 {
            s | ms::MIE
        } else {
            s & !ms::MIE
        };
        n |= ms::MPIE;
        n &= !ms::MPP; // MPP = U
        if mpp != 3 {
            n &= !ms::MPRV;
        }
        self.csr.mstatus = n;
        self.prv = mpp;
        self.pc = self.csr.mepc;
        self.sync_mode();
    }

    /// `sret`: return from an S-mode trap.
    pub(crate) fn do_sret(&mut self) {
        let s = self.csr.mstatus;
        let spp = if s & ms::SPP != 0 { 1 } else { 0 };
        let mut n = if s & ms::SPIE != 0 {
            s | ms::SIE
        } else {
            s & !ms::SIE
        };
        n |= ms::SPIE;
        n &= !ms::SPP;
        n &= !ms::MPRV;
        self.csr.mstatus = n;
        self.prv = spp;
        self.pc = self.csr.sepc;
        self.sync_mode();
    }
}

fn vector(tvec: u64, is_int: bool, code: u64) -> u64 {
    let base = tvec & !3;
    if is_int && tvec & 3 == 1 {
        base.wrapping_add(4 * code)
    } else {
        base
    }
}
