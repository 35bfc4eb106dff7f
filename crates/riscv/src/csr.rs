//! Control and status registers: storage, access checks and WARL rules.

use crate::hart::Hart;
use crate::trap::{Trap, cause};

pub(crate) mod addr {
    pub const FFLAGS: u16 = 0x001;
    pub const FRM: u16 = 0x002;
    pub const FCSR: u16 = 0x003;
    pub const SSTATUS: u16 = 0x100;
    pub const SIE: u16 = 0x104;
    pub const STVEC: u16 = 0x105;
    pub const SCOUNTEREN: u16 = 0x106;
    pub const SENVCFG: u16 = 0x10a;
    pub const SSCRATCH: u16 = 0x140;
    pub const SEPC: u16 = 0x141;
    pub const SCAUSE: u16 = 0x142;
    pub const STVAL: u16 = 0x143;
    pub const SIP: u16 = 0x144;
    pub const STIMECMP: u16 = 0x14d;
    pub const SATP: u16 = 0x180;
    pub const MSTATUS: u16 = 0x300;
    pub const MISA: u16 = 0x301;
    pub const MEDELEG: u16 = 0x302;
    pub const MIDELEG: u16 = 0x303;
    pub const MIE: u16 = 0x304;
    pub const MTVEC: u16 = 0x305;
    pub const MCOUNTEREN: u16 = 0x306;
    pub const MENVCFG: u16 = 0x30a;
    pub const MCOUNTINHIBIT: u16 = 0x320;
    pub const MSCRATCH: u16 = 0x340;
    pub const MEPC: u16 = 0x341;
    pub const MCAUSE: u16 = 0x342;
    pub const MTVAL: u16 = 0x343;
    pub const MIP: u16 = 0x344;
    pub const PMPCFG0: u16 = 0x3a0;
    pub const PMPADDR0: u16 = 0x3b0;
    pub const MCYCLE: u16 = 0xb00;
    pub const MINSTRET: u16 = 0xb02;
    pub const CYCLE: u16 = 0xc00;
    pub const TIME: u16 = 0xc01;
    pub const INSTRET: u16 = 0xc02;
    pub const MVENDORID: u16 = 0xf11;
    pub const MARCHID: u16 = 0xf12;
    pub const MIMPID: u16 = 0xf13;
    pub const MHARTID: u16 = 0xf14;
    pub const MCONFIGPTR: u16 = 0xf15;
}

/// mstatus bits.
pub(crate) mod ms {
    pub const SIE: u64 = 1 << 1;
    pub const MIE: u64 = 1 << 3;
    pub const SPIE: u64 = 1 << 5;
    pub const MPIE: u64 = 1 << 7;
    pub const SPP: u64 = 1 << 8;
    pub const MPP_SHIFT: u32 = 11;
    pub const MPP: u64 = 3 << 11;
    pub const FS: u64 = 3 << 13;
    pub const FS_DIRTY: u64 = 3 << 13;
    pub const MPRV: u64 = 1 << 17;
    pub const SUM: u64 = 1 << 18;
    pub const MXR: u64 = 1 << 19;
    pub const TVM: u64 = 1 << 20;
    pub const TW: u64 = 1 << 21;
    pub const TSR: u64 = 1 << 22;
    pub const UXL: u64 = 2 << 32;
    pub const SXL: u64 = 2 << 34;
    pub const SD: u64 = 1 << 63;
    pub const M_WRITABLE: u64 =
        SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    pub const S_READABLE: u64 = SIE | SPIE | SPP | FS | SUM | MXR | UXL | SD;
    pub const S_WRITABLE: u64 = SIE | SPIE | SPP | FS | SUM | MXR;
}

/// Interrupt bit numbers in mip/mie.
pub(crate) mod irqbit {
    pub const SSI: u64 = 1 << 1;
    pub const MSI: u64 = 1 << 3;
    pub const STI: u64 = 1 << 5;
    pub const MTI: u64 = 1 << 7;
    pub const SEI: u64 = 1 << 9;
    pub const MEI: u64 = 1 << 11;
    pub const ALL: u64 = SSI | MSI | STI | MTI | SEI | MEI;
    pub const S_ALL: u64 = SSI | STI | SEI;
}

pub(crate) const MENVCFG_STCE: u64 = 1 << 63;
const MENVCFG_FIOM: u64 = 1;
const MEDELEG_MASK: u64 = 0xb3ff;
pub(crate) const SATP_MODE_BARE: u64 = 0;
pub(crate) const SATP_MODE_SV39: u64 = 8;
pub(crate) const SATP_MODE_SV48: u64 = 9;
const SATP_PPN_MASK: u64 = (1 << 44) - 1;

/// misa: RV64 with A, C, D, F, I, M, S, U.
pub(crate) const MISA_VALUE: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);

pub(crate) const PMP_ENTRIES: usize = 16;

/// The CSR file of one hart (except fflags/frm, kept with the FPU state).
#[derive(Debug, Clone, Default)]
pub(crate) struct Csrs {
    /// Full mstatus without SD (SD is computed on read).
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable pending bits (SSIP, STIP, SEIP).
    pub mip: u64,
    pub mtvec: u64,
    pub stvec: u64,
    pub mepc: u64,
    pub sepc: u64,
    pub mcause: u64,
    pub scause: u64,
    pub mtval: u64,
    pub stval: u64,
    pub mscratch: u64,
    pub sscratch: u64,
    pub satp: u64,
    pub mcounteren: u64,
    pub scounteren: u64,
    pub menvcfg: u64,
    pub senvcfg: u64,
    pub mcountinhibit: u64,
    pub stimecmp: u64,
    pub pmpcfg: [u8; PMP_ENTRIES],
    pub pmpaddr: [u64; PMP_ENTRIES],
    /// mcycle = instret + cycle_offset; minstret = instret + instret_offset.
    pub cycle_offset: u64,
    pub instret_offset: u64,
    pub fflags: u8,
    pub frm: u8,
}

impl Csrs {
    pub fn new() -> Csrs {
        Csrs {
            mstatus: ms::UXL | ms::SXL,
            stimecmp: u64::MAX,
            ..Default::default()
        }
    }
}

fn illegal<T>(h: &Hart) -> Result<T, Trap> {
    Err(Trap::new(cause::ILLEGAL_INSTRUCTION, h.cur_raw as u64))
}

impl Hart {
    /// mstatus as software reads it (with SD).
    pub(crate) fn read_mstatus(&self) -> u64 {
        let s = self.csr.mstatus;
        if s & ms::FS == ms::FS_DIRTY {
            s | ms::SD
        } else {
            s
        }
    }

    /// Effective mip: software bits plus the wires and timers.
    pub(crate) fn read_mip(&self) -> u64 {
        let mut p = self.csr.mip;
        if self.irq.msip() {
            p |= irqbit::MSI;
        }
        if self.irq.meip() {
            p |= irqbit::MEI;
        }
        if self.irq.seip() {
            p |= irqbit::SEI;
        }
        let now = self.clock.now();
        if now >= self.irq.mtimecmp() {
            p |= irqbit::MTI;
        }
        if self.csr.menvcfg & MENVCFG_STCE != 0 {
            p &= !irqbit::STI;
            if now >= self.csr.stimecmp {
                p |= irqbit::STI;
            }
        }
        p
    }

    fn counter_allowed(&self, bit: u64) -> bool {
        match self.prv {
            3 => true,
            1 => self.csr.mcounteren & (1 << bit) != 0,
            _ => self.csr.mcounteren & self.csr.scounteren & (1 << bit) != 0,
        }
    }

    fn fs_on(&self) -> bool {
        self.csr.mstatus & ms::FS != 0
    }

    /// Read a CSR for instruction `csrr*`, checking privilege.
    pub(crate) fn csr_read(&mut self, csr: u16) -> Result<u64, Trap> {
        use addr::*;
        let min_priv = ((csr >> 8) & 3) as u8;
        if self.prv < min_priv {
            return illegal(self);
        }
        Ok(match csr {
            FFLAGS if self.fs_on() => self.csr.fflags as u64,
            FRM if self.fs_on() => self.csr.frm as u64,
            FCSR if self.fs_on() => ((self.csr.frm as u64) << 5) | self.csr.fflags as u64,
            CYCLE..=0xc1f => {
                let n = (csr - CYCLE) as u64;
                if !self.counter_allowed(n) {
                    return illegal(self);
                }
                match csr {
                    CYCLE => self.instret.wrapping_add(self.csr.cycle_offset),
                    TIME => self.clock.now(),
                    INSTRET => self.instret.wrapping_add(self.csr.instret_offset),
                    _ => 0,
                }
            }
            SSTATUS => self.read_mstatus() & ms::S_READABLE,
            SIE => self.csr.mie & self.csr.mideleg,
            STVEC => self.csr.stvec,
            SCOUNTEREN => self.csr.scounteren,
            SENVCFG => self.csr.senvcfg,
            SSCRATCH => self.csr.sscratch,
            SEPC => self.csr.sepc,
            SCAUSE => self.csr.scause,
            STVAL => self.csr.stval,
            SIP => self.read_mip() & self.csr.mideleg,
            STIMECMP => {
                if self.prv < 3
                    && (self.csr.menvcfg & MENVCFG_STCE == 0 || self.csr.mcounteren & 2 == 0)
                {
                    return illegal(self);
                }
                self.csr.stimecmp
            }
            SATP => {
                if self.prv == 1 && self.csr.mstatus & ms::TVM != 0 {
                    return illegal(self);
                }
                self.csr.satp
            }
            MSTATUS => self.read_mstatus(),
            MISA => MISA_VALUE,
            MEDELEG => self.csr.medeleg,
            MIDELEG => self.csr.mideleg,
            MIE => self.csr.mie,
            MTVEC => self.csr.mtvec,
            MCOUNTEREN => self.csr.mcounteren,
            MENVCFG => self.csr.menvcfg,
            MCOUNTINHIBIT => self.csr.mcountinhibit,
            0x323..=0x33f => 0, // mhpmevent3..31
            MSCRATCH => self.csr.mscratch,
            MEPC => self.csr.mepc,
            MCAUSE => self.csr.mcause,
            MTVAL => self.csr.mtval,
            MIP => self.read_mip(),
            0x3a0..=0x3a3 => {
                let n = (csr - PMPCFG0) as usize;
                if n % 2 == 1 {
                    return illegal(self);
                }
                let mut v = 0u64;
                for i in 0..8 {
                    v |= (self.csr.pmpcfg[n * 4 + i] as u64) << (8 * i);
                }
                v
            }
            0x3b0..=0x3bf => self.csr.pmpaddr[(csr - PMPADDR0) as usize],
            0x3c0..=0x3ef => 0, // pmpaddr16..63: not implemented, read zero
            0x3a4..=0x3af => 0, // pmpcfg4..15
            MCYCLE => self.instret.wrapping_add(self.csr.cycle_offset),
            MINSTRET => self.instret.wrapping_add(self.csr.instret_offset),
            0xb03..=0xb1f => 0, // mhpmcounter3..31
            MVENDORID | MARCHID | MIMPID | MCONFIGPTR => 0,
            MHARTID => self.config.hart_id,
            _ => return illegal(self),
        })
    }

    /// Write a CSR (after `csr_read` succeeded for the same CSR).
    pub(crate) fn csr_write(&mut self, csr: u16, v: u64) -> Result<(), Trap> {
        use addr::*;
        if csr >> 10 == 3 {
            return illegal(self); // read-only CSR
        }
        match csr {
            FFLAGS => {
                self.csr.fflags = (v & 0x1f) as u8;
                self.csr.mstatus |= ms::FS_DIRTY;
            }
            FRM => {
                self.csr.frm = (v & 7) as u8;
                self.csr.mstatus |= ms::FS_DIRTY;
            }
            FCSR => {
                self.csr.fflags = (v & 0x1f) as u8;
                self.csr.frm = ((v >> 5) & 7) as u8;
                self.csr.mstatus |= ms::FS_DIRTY;
            }
            SSTATUS => {
                let m = (self.csr.mstatus & !ms::S_WRITABLE) | (v & ms::S_WRITABLE);
                self.set_mstatus(m);
            }
            SIE => {
                let mask = self.csr.mideleg & irqbit::S_ALL;
                self.csr.mie = (self.csr.mie & !mask) | (v & mask);
            }
            STVEC => self.csr.stvec = tvec(v),
            SCOUNTEREN => self.csr.scounteren = v & 0xffff_ffff,
            SENVCFG => self.csr.senvcfg = v & MENVCFG_FIOM,
            SSCRATCH => self.csr.sscratch = v,
            SEPC => self.csr.sepc = v & !1,
            SCAUSE => self.csr.scause = v,
            STVAL => self.csr.stval = v,
            SIP => {
                let mask = self.csr.mideleg & irqbit::SSI;
                self.csr.mip = (self.csr.mip & !mask) | (v & mask);
            }
            STIMECMP => self.csr.stimecmp = v,
            SATP => {
                let mode = v >> 60;
                let ok = match mode {
                    SATP_MODE_BARE | SATP_MODE_SV39 => true,
                    SATP_MODE_SV48 => self.config.mmu == crate::MmuMode::Sv48,
                    _ => false,
                };
                if ok {
                    // ASIDLEN = 0: the ASID field reads as zero.
                    self.csr.satp = (mode << 60) | (v & SATP_PPN_MASK);
                    self.tlb_flush();
                }
            }
            MSTATUS => self.set_mstatus(v),
            MISA => {}
            MEDELEG => self.csr.medeleg = v & MEDELEG_MASK,
            MIDELEG => self.csr.mideleg = v & irqbit::S_ALL,
            MIE => self.csr.mie = v & irqbit::ALL,
            MTVEC => self.csr.mtvec = tvec(v),
            MCOUNTEREN => self.csr.mcounteren = v & 0xffff_ffff,
            MENVCFG => self.csr.menvcfg = v & (MENVCFG_STCE | MENVCFG_FIOM),
            MCOUNTINHIBIT => self.csr.mcountinhibit = v & 0xffff_fffd,
            0x323..=0x33f => {}
            MSCRATCH => self.csr.mscratch = v,
            MEPC => self.csr.mepc = v & !1,
            MCAUSE => self.csr.mcause = v,
            MTVAL => self.csr.mtval = v,
            MIP => {
                let mut mask = irqbit::SSI | irqbit::SEI;
                if self.csr.menvcfg & MENVCFG_STCE == 0 {
                    mask |= irqbit::STI;
                }
                self.csr.mip = (self.csr.mip & !mask) | (v & mask);
            }
            0x3a0..=0x3a3 => {
                let n = (csr - PMPCFG0) as usize;
                for i in 0..8 {
                    let e = n * 4 + i;
                    if self.csr.pmpcfg[e] & 0x80 != 0 {
                        continue; // locked
                    }
                    let mut b = ((v >> (8 * i)) & 0x9f) as u8;
                    if b & 3 == 2 {
                        b &= !2; // W without R is reserved
                    }
                    self.csr.pmpcfg[e] = b;
                }
            }
            0x3b0..=0x3bf => {
                let e = (csr - PMPADDR0) as usize;
                let locked = self.csr.pmpcfg[e] & 0x80 != 0
                    || (e + 1 < PMP_ENTRIES && self.csr.pmpcfg[e + 1] & 0x98 == 0x88); // next is locked TOR
                if !locked {
                    self.csr.pmpaddr[e] = v & ((1 << 54) - 1);
                }
            }
            0x3a4..=0x3af | 0x3c0..=0x3ef => {}
            MCYCLE => self.csr.cycle_offset = v.wrapping_sub(self.instret),
            // The instret count advances after this instruction retires.
            MINSTRET => self.csr.instret_offset = v.wrapping_sub(self.instret + 1),
            0xb03..=0xb1f => {}
            _ => return illegal(self),
        }
        Ok(())
    }

    pub(crate) fn set_mstatus(&mut self, v: u64) {
        let old = self.csr.mstatus;
        let mut new = (old & !ms::M_WRITABLE) | (v & ms::M_WRITABLE);
        // MPP is WARL: 2 (reserved) keeps the old value.
        if (new & ms::MPP) >> ms::MPP_SHIFT == 2 {
            new = (new & !ms::MPP) | (old & ms::MPP);
        }
        self.csr.mstatus = new | ms::UXL | ms::SXL;
        // SUM picks other data sets (`sync_mode`); MXR is rare: flush.
        self.sync_mode();
        if (old ^ new) & ms::MXR != 0 {
            self.tlb_flush();
        }
    }
}

/// xtvec WARL: modes 0 (direct) and 1 (vectored); reserved modes become direct.
fn tvec(v: u64) -> u64 {
    if v & 3 >= 2 { v & !3 } else { v }
}
